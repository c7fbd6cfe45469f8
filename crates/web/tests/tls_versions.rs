//! Real handshakes against [`repeatrx_web::tls::server_config`]: TLS 1.2 and 1.3 with AEAD suites
//! succeed (256-bit suites chosen), while CBC suites and TLS 1.0/1.1 are refused. rustls cannot
//! speak the refused protocols, so those clients are a hand-built ClientHello and, as an
//! independent implementation, `openssl s_client` (required: the test fails without it).
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{
    CipherSuite, ClientConfig, ProtocolVersion, RootCertStore, SupportedCipherSuite, SupportedProtocolVersion,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// What the server saw of one connection: the negotiated version and suite, or why it failed.
type Outcome = Result<(ProtocolVersion, CipherSuite, Option<Vec<u8>>), String>;

struct Server {
    addr: SocketAddr,
    cert: CertificateDer<'static>,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
}

impl Server {
    /// Waits for the server's view of the next connection.
    async fn next_outcome(&mut self) -> Outcome {
        tokio::time::timeout(Duration::from_secs(20), self.outcomes.recv())
            .await
            .expect("the server saw no connection within 20 s")
            .expect("the server task ended")
    }
}

async fn start_server() -> Server {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let config = repeatrx_web::tls::server_config(
        generated.cert.pem().as_bytes(),
        generated.key_pair.serialize_pem().as_bytes(),
    )
    .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, outcomes) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let outcome = match acceptor.accept(stream).await {
                    Ok(mut tls) => {
                        let (_, conn) = tls.get_ref();
                        let result = Ok((
                            conn.protocol_version().unwrap(),
                            conn.negotiated_cipher_suite().unwrap().suite(),
                            conn.alpn_protocol().map(<[u8]>::to_vec),
                        ));
                        let _ = tls.write_all(b"hello").await;
                        let _ = tls.shutdown().await;
                        result
                    }
                    Err(e) => Err(e.to_string()),
                };
                let _ = tx.send(outcome);
            });
        }
    });
    Server { addr, cert: generated.cert.der().clone(), outcomes }
}

/// A rustls client limited to the given versions and suites, trusting the test certificate.
async fn rustls_client(
    server: &Server,
    versions: &[&'static SupportedProtocolVersion],
    suites: &[SupportedCipherSuite],
) -> Result<(ProtocolVersion, CipherSuite, Option<Vec<u8>>), String> {
    let provider = CryptoProvider { cipher_suites: suites.to_vec(), ..ring::default_provider() };
    let mut roots = RootCertStore::empty();
    roots.add(server.cert.clone()).unwrap();
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let mut greeting = Vec::new();
    tls.read_to_end(&mut greeting).await.map_err(|e| e.to_string())?;
    assert_eq!(greeting, b"hello");
    let (_, conn) = tls.get_ref();
    Ok((
        conn.protocol_version().unwrap(),
        conn.negotiated_cipher_suite().unwrap().suite(),
        conn.alpn_protocol().map(<[u8]>::to_vec),
    ))
}

#[tokio::test]
async fn tls13_client_succeeds_with_a_256_bit_suite_and_h2() {
    let mut server = start_server().await;
    // The client prefers AES-128, but the server's order wins.
    let suites = [
        ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
        ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
    ];
    let client = rustls_client(&server, &[&rustls::version::TLS13], &suites).await.unwrap();
    assert_eq!(client, (ProtocolVersion::TLSv1_3, CipherSuite::TLS13_AES_256_GCM_SHA384, Some(b"h2".to_vec())));
    assert_eq!(server.next_outcome().await.unwrap(), client);
}

#[tokio::test]
async fn tls12_client_succeeds_with_a_256_bit_ecdhe_aead_suite() {
    let mut server = start_server().await;
    let suites = [
        ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ];
    let client = rustls_client(&server, &[&rustls::version::TLS12], &suites).await.unwrap();
    assert_eq!(client.0, ProtocolVersion::TLSv1_2);
    assert_eq!(client.1, CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384);
    assert_eq!(client.2.as_deref(), Some(&b"h2"[..]));
    assert_eq!(server.next_outcome().await.unwrap(), client);
}

#[tokio::test]
async fn tls12_client_with_only_chacha_or_aes128_still_connects() {
    let mut server = start_server().await;
    for suite in [
        ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ] {
        let client = rustls_client(&server, &[&rustls::version::TLS12], &[suite]).await.unwrap();
        assert_eq!((client.0, client.1), (ProtocolVersion::TLSv1_2, suite.suite()));
        server.next_outcome().await.unwrap();
    }
}

// --- clients rustls cannot be: a ClientHello built by hand ---

const CBC_SUITES: &[u16] = &[
    0xc009, // TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA
    0xc00a, // TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA
    0xc023, // TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256
    0xc024, // TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384
    0xc013, // TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA
    0xc014, // TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA
    0xc027, // TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256
    0x002f, // TLS_RSA_WITH_AES_128_CBC_SHA
    0x0035, // TLS_RSA_WITH_AES_256_CBC_SHA
    0x000a, // TLS_RSA_WITH_3DES_EDE_CBC_SHA
];
const ECDHE_ECDSA_AES_256_GCM: u16 = 0xc02c;

fn with_len16(body: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

fn extension(kind: u16, body: &[u8]) -> Vec<u8> {
    let mut out = kind.to_be_bytes().to_vec();
    out.extend(with_len16(body));
    out
}

/// A TLS 1.0–1.2 style ClientHello (no supported_versions extension) with the given
/// `client_version` and suites, offering the usual curves and signature schemes.
fn client_hello(client_version: u16, suites: &[u16]) -> Vec<u8> {
    let mut body = client_version.to_be_bytes().to_vec();
    body.extend([0x42; 32]); // random
    body.push(0); // no session id
    body.extend(with_len16(&suites.iter().flat_map(|s| s.to_be_bytes()).collect::<Vec<_>>()));
    body.extend([1, 0]); // compression: null only
    let mut extensions = Vec::new();
    let mut sni = vec![0u8]; // host_name
    sni.extend(with_len16(b"localhost"));
    extensions.extend(extension(0x0000, &with_len16(&sni)));
    extensions.extend(extension(0x000a, &with_len16(&[0x00, 0x1d, 0x00, 0x17, 0x00, 0x18]))); // x25519, P-256, P-384
    extensions.extend(extension(0x000b, &[1, 0])); // ec_point_formats: uncompressed
    let schemes: [u16; 7] = [0x0403, 0x0503, 0x0804, 0x0805, 0x0401, 0x0501, 0x0201];
    extensions
        .extend(extension(0x000d, &with_len16(&schemes.iter().flat_map(|s| s.to_be_bytes()).collect::<Vec<_>>())));
    extensions.extend(extension(0xff01, &[0])); // renegotiation_info (empty)
    body.extend(with_len16(&extensions));

    let mut handshake = vec![1u8]; // client_hello
    handshake.extend(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend(with_len16(&handshake));
    record
}

/// Sends a hand-built ClientHello and returns the first record the server answers with.
async fn raw_hello(server: &Server, hello: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(hello).await.unwrap();
    let mut header = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(10), tcp.read_exact(&mut header)).await.unwrap().unwrap();
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    let mut payload = vec![0u8; len];
    tokio::time::timeout(Duration::from_secs(10), tcp.read_exact(&mut payload)).await.unwrap().unwrap();
    let mut record = header.to_vec();
    record.extend(payload);
    record
}

const ALERT: u8 = 0x15;
const HANDSHAKE: u8 = 0x16;
const FATAL: u8 = 2;
const HANDSHAKE_FAILURE: u8 = 40;
const PROTOCOL_VERSION: u8 = 70;

#[tokio::test]
async fn hand_built_tls12_hello_with_an_aead_suite_gets_a_server_hello() {
    // Control: proves the hand-built hello is well formed, so the refusals below are about the
    // suites and versions offered and nothing else.
    let mut server = start_server().await;
    let answer = raw_hello(&server, &client_hello(0x0303, &[ECDHE_ECDSA_AES_256_GCM])).await;
    assert_eq!(answer[0], HANDSHAKE, "{answer:?}");
    assert_eq!(answer[5], 2, "expected ServerHello: {answer:?}");
    assert_eq!(&answer[9..11], &[0x03, 0x03], "TLS 1.2 chosen: {answer:?}");
    let _ = server.next_outcome().await; // the connection is dropped mid-handshake
}

#[tokio::test]
async fn tls12_client_offering_only_cbc_suites_is_refused() {
    let mut server = start_server().await;
    let answer = raw_hello(&server, &client_hello(0x0303, CBC_SUITES)).await;
    assert_eq!((answer[0], answer[5], answer[6]), (ALERT, FATAL, HANDSHAKE_FAILURE), "{answer:?}");
    let seen = server.next_outcome().await.unwrap_err();
    assert!(seen.contains("NoCipherSuitesInCommon"), "{seen}");
}

#[tokio::test]
async fn tls10_and_tls11_hellos_are_refused_even_with_aead_suites() {
    let mut server = start_server().await;
    for version in [0x0301u16, 0x0302] {
        let answer = raw_hello(&server, &client_hello(version, &[ECDHE_ECDSA_AES_256_GCM, 0xc00a, 0xc009])).await;
        assert_eq!(
            (answer[0], answer[5], answer[6]),
            (ALERT, FATAL, PROTOCOL_VERSION),
            "version {version:#x}: {answer:?}"
        );
        let seen = server.next_outcome().await.unwrap_err();
        assert!(seen.contains("Tls12NotOffered"), "{seen}");
    }
}

// --- an independent client: openssl s_client ---

struct OpensslRun {
    success: bool,
    output: String,
}

/// Runs `openssl s_client` against the server. Fails the test (never skips) without openssl.
async fn openssl(server: &Server, args: &[&str]) -> OpensslRun {
    let found = std::process::Command::new("sh")
        .args(["-c", "command -v openssl"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "openssl is required for the TLS 1.0/1.1 and CBC refusal checks (rustls cannot act as such a client); \
         install it (e.g. apt-get install openssl) and run the tests again"
    );
    let connect = server.addr.to_string();
    let mut cmd = tokio::process::Command::new("openssl");
    cmd.args(["s_client", "-connect", &connect, "-servername", "localhost"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out =
        tokio::time::timeout(Duration::from_secs(30), cmd.output()).await.expect("openssl s_client hung").unwrap();
    OpensslRun {
        success: out.status.success(),
        output: format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    }
}

#[tokio::test]
async fn openssl_tls12_and_tls13_clients_connect() {
    // Control for the refusals below: the same tool, pointed at the same server, succeeds.
    let mut server = start_server().await;
    let run = openssl(&server, &["-tls1_3"]).await;
    assert!(run.success, "{}", run.output);
    assert!(run.output.contains("TLSv1.3") && run.output.contains("TLS_AES_256_GCM_SHA384"), "{}", run.output);
    assert_eq!(server.next_outcome().await.unwrap().0, ProtocolVersion::TLSv1_3);

    let run = openssl(&server, &["-tls1_2"]).await;
    assert!(run.success, "{}", run.output);
    assert!(run.output.contains("ECDHE-ECDSA-AES256-GCM-SHA384"), "{}", run.output);
    assert_eq!(server.next_outcome().await.unwrap().0, ProtocolVersion::TLSv1_2);
}

#[tokio::test]
async fn openssl_tls10_and_tls11_clients_are_refused() {
    let mut server = start_server().await;
    // SECLEVEL=0 lets OpenSSL 3 actually offer these old versions, so the refusal we see is the
    // server's and not the client's own policy.
    for flag in ["-tls1", "-tls1_1"] {
        let run = openssl(&server, &[flag, "-cipher", "DEFAULT:@SECLEVEL=0"]).await;
        assert!(!run.success, "{flag} handshake must fail:\n{}", run.output);
        let seen = server.next_outcome().await.unwrap_err();
        // A pre-1.2 hello either names its old version or lacks the signature_algorithms
        // extension that only TLS 1.2+ clients send; rustls refuses both before choosing anything.
        assert!(
            seen.contains("Tls12NotOffered") || seen.contains("SignatureAlgorithmsExtensionRequired"),
            "{flag}: server saw {seen}\n{}",
            run.output
        );
        assert!(run.output.contains("protocol version") || run.output.contains("alert"), "{flag}:\n{}", run.output);
    }
}

#[tokio::test]
async fn openssl_tls12_client_offering_only_cbc_suites_is_refused() {
    let mut server = start_server().await;
    let cbc = "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384:\
               ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA:AES128-SHA:AES256-SHA";
    let run = openssl(&server, &["-tls1_2", "-cipher", cbc]).await;
    assert!(!run.success, "a CBC-only handshake must fail:\n{}", run.output);
    let seen = server.next_outcome().await.unwrap_err();
    assert!(seen.contains("NoCipherSuitesInCommon"), "server saw {seen}\n{}", run.output);
}
