//! Transport security: the rustls server configuration every RepeatRx listener uses.
//!
//! TLS 1.2 and 1.3 only (rustls cannot speak anything older), AEAD cipher suites with forward
//! secrecy only, 256-bit suites preferred, and the *ring* provider chosen explicitly so that the
//! result never depends on which providers other crates happen to enable.
use rustls::crypto::ring::{self as ring_provider, cipher_suite};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, SupportedCipherSuite};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the TLS {what} file {} does not exist", .path.display())]
    Missing { what: &'static str, path: PathBuf },
    #[error("the TLS {what} file {} cannot be read: {source}", .path.display())]
    Unreadable {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: no PEM certificate in it (expected \"-----BEGIN CERTIFICATE-----\")", .0.display())]
    NoCertificate(PathBuf),
    #[error("{}: no PEM private key in it (expected PKCS#8, PKCS#1 or SEC1)", .0.display())]
    NoPrivateKey(PathBuf),
    #[error("{}: not valid PEM: {}", .0.display(), .1)]
    BadPem(PathBuf, String),
    #[error("the private key in {} does not match the certificate in {}", .key.display(), .cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("the certificate or private key cannot be used: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The suites offered, most preferred first: 256-bit strength (AES-256-GCM, ChaCha20-Poly1305)
/// before AES-128-GCM. Every one is an AEAD; every TLS 1.2 one uses ECDHE (forward secrecy).
/// TLS 1.3 suites always use (EC)DHE.
pub static CIPHER_SUITES: &[SupportedCipherSuite] = &[
    cipher_suite::TLS13_AES_256_GCM_SHA384,
    cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    cipher_suite::TLS13_AES_128_GCM_SHA256,
    cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
];

/// The *ring* provider restricted to [`CIPHER_SUITES`] (key exchange: X25519, P-256, P-384).
pub fn crypto_provider() -> CryptoProvider {
    CryptoProvider { cipher_suites: CIPHER_SUITES.to_vec(), ..ring_provider::default_provider() }
}

/// rustls server config: TLS 1.2 and 1.3 only, AEAD suites with forward secrecy only (TLS1.3:
/// AES-256-GCM, CHACHA20-POLY1305, AES-128-GCM; TLS1.2: ECDHE-ECDSA/RSA with AES-256-GCM,
/// CHACHA20, AES-128-GCM), using the ring provider explicitly (rustls::crypto::ring), ALPN h2 +
/// http/1.1. The server's suite order wins over the client's, so 256-bit suites are chosen
/// whenever the client supports one.
pub fn server_config(cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<ServerConfig, TlsError> {
    build(cert_chain_pem, key_pem, Path::new("<certificate>"), Path::new("<private key>"))
}

/// [`server_config`] from files, with errors that name the file at fault: missing, unreadable,
/// no certificate in it, no private key in it, key does not match.
pub fn load_server_config(cert_path: &Path, key_path: &Path) -> Result<ServerConfig, TlsError> {
    let cert = read("certificate", cert_path)?;
    let key = read("private key", key_path)?;
    build(&cert, &key, cert_path, key_path)
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => TlsError::Missing { what, path: path.to_path_buf() },
        _ => TlsError::Unreadable { what, path: path.to_path_buf(), source },
    })
}

fn build(cert_pem: &[u8], key_pem: &[u8], cert_path: &Path, key_path: &Path) -> Result<ServerConfig, TlsError> {
    let chain = parse_certificates(cert_pem, cert_path)?;
    let key = parse_private_key(key_pem, key_path)?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(crypto_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                TlsError::KeyMismatch { cert: cert_path.to_path_buf(), key: key_path.to_path_buf() }
            }
            other => TlsError::Rustls(other),
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ignore_client_order = true;
    Ok(config)
}

fn parse_certificates(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem(path.to_path_buf(), e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(chain)
}

fn parse_private_key(pem: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    rustls_pemfile::private_key(&mut &pem[..])
        .map_err(|e| TlsError::BadPem(path.to_path_buf(), e.to_string()))?
        .ok_or_else(|| TlsError::NoPrivateKey(path.to_path_buf()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generated() -> (String, String) {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        (ck.cert.pem(), ck.key_pair.serialize_pem())
    }

    #[test]
    fn builds_from_a_generated_certificate() {
        let (cert, key) = generated();
        let config = server_config(cert.as_bytes(), key.as_bytes()).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert!(config.ignore_client_order);
        let suites: Vec<_> = config.crypto_provider().cipher_suites.iter().map(|s| s.suite()).collect();
        assert_eq!(suites, CIPHER_SUITES.iter().map(|s| s.suite()).collect::<Vec<_>>());
    }

    #[test]
    fn only_aead_forward_secret_suites_256_bit_first() {
        use rustls::CipherSuite::*;
        let names: Vec<String> = CIPHER_SUITES.iter().map(|s| format!("{:?}", s.suite())).collect();
        for name in &names {
            assert!(name.contains("GCM") || name.contains("CHACHA20_POLY1305"), "{name} is not an AEAD suite");
            assert!(name.starts_with("TLS13_") || name.starts_with("TLS_ECDHE_"), "{name} lacks forward secrecy");
            assert!(!name.contains("CBC") && !name.contains("SHA1"), "{name}");
        }
        assert_eq!(CIPHER_SUITES[0].suite(), TLS13_AES_256_GCM_SHA384);
        assert_eq!(CIPHER_SUITES[1].suite(), TLS13_CHACHA20_POLY1305_SHA256);
        // Within each protocol version, every 256-bit-strength suite comes before any AES-128.
        for tls13 in [true, false] {
            let group: Vec<_> = names.iter().filter(|n| n.starts_with("TLS13_") == tls13).collect();
            let first_128 = group.iter().position(|n| n.contains("AES_128")).unwrap();
            assert!(group[..first_128].iter().all(|n| n.contains("AES_256") || n.contains("CHACHA20")), "{group:?}");
            assert!(group[first_128..].iter().all(|n| n.contains("AES_128")), "{group:?}");
        }
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = generated();
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        std::fs::write(&cert_path, &cert).unwrap();
        std::fs::write(&key_path, &key).unwrap();
        assert!(load_server_config(&cert_path, &key_path).is_ok());

        let missing = dir.path().join("nope.pem");
        let e = load_server_config(&missing, &key_path).unwrap_err();
        assert!(matches!(e, TlsError::Missing { what: "certificate", .. }), "{e}");
        assert!(e.to_string().contains("nope.pem"), "{e}");

        let e = load_server_config(&cert_path, &missing).unwrap_err();
        assert!(matches!(e, TlsError::Missing { what: "private key", .. }), "{e}");

        // A directory cannot be read as a file.
        let e = load_server_config(dir.path(), &key_path).unwrap_err();
        assert!(matches!(e, TlsError::Unreadable { .. }), "{e}");

        // Certificate and key swapped: neither file holds what it should.
        let e = load_server_config(&key_path, &key_path).unwrap_err();
        assert!(matches!(e, TlsError::NoCertificate(ref p) if p == &key_path), "{e}");
        assert!(e.to_string().contains("key.pem"), "{e}");
        let e = load_server_config(&cert_path, &cert_path).unwrap_err();
        assert!(matches!(e, TlsError::NoPrivateKey(ref p) if p == &cert_path), "{e}");

        // A key from another certificate.
        let other_key = dir.path().join("other-key.pem");
        std::fs::write(&other_key, generated().1).unwrap();
        let e = load_server_config(&cert_path, &other_key).unwrap_err();
        assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e}");
        let shown = e.to_string();
        assert!(shown.contains("other-key.pem") && shown.contains("cert.pem"), "{shown}");
    }

    #[test]
    fn errors_never_echo_key_material() {
        let (_, key) = generated();
        let e = server_config(key.as_bytes(), key.as_bytes()).unwrap_err();
        assert!(!format!("{e} {e:?}").contains("PRIVATE KEY-----"), "{e:?}");
    }
}
