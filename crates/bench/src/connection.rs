//! One keep-alive HTTPS connection per virtual user, made with hyper's connection API.
//!
//! Not reqwest (hyper-util's pooled client): when a request finds no idle connection at that very
//! moment, that client opens a new one and races it against the pooled one coming back
//! (hyperium/hyper#4134, with no setting to turn it off). The previous response's connection goes
//! back to the pool from a background task, so under load about one request in three opened a new
//! connection and made the server pay a full TLS handshake for it (seen on the server: 600 accepts
//! a second, each a client's close_notify after a complete response). A browser or a phone app
//! keeps its connection; so does this client, and it opens another only when the server has
//! closed the one it had, which it counts.
use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A client's TLS settings: the benchmark's certificate trusted, and nothing else.
pub fn tls_config(ca_pem: &[u8]) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &ca_pem[..]) {
        roots.add(cert.context("reading the benchmark's certificate")?)?;
    }
    if roots.is_empty() {
        bail!("the benchmark's certificate file holds no certificate");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A virtual user's connection to `https://host:port`, opened at its first request.
pub struct Connection {
    tls: TlsConnector,
    addr: SocketAddr,
    name: ServerName<'static>,
    authority: String,
    sender: Option<SendRequest<Full<Bytes>>>,
    opened: u64,
}

impl Connection {
    pub fn new(base: &str, tls: Arc<rustls::ClientConfig>) -> anyhow::Result<Connection> {
        let uri: Uri = base.parse().with_context(|| format!("the server address {base}"))?;
        let (Some(host), Some(port)) = (uri.host(), uri.port_u16()) else {
            bail!("the server address {base} needs a host and a port");
        };
        let ip: std::net::IpAddr = host.parse().with_context(|| format!("{host} is not an IP address"))?;
        Ok(Connection {
            tls: TlsConnector::from(tls),
            addr: SocketAddr::new(ip, port),
            name: ServerName::IpAddress(ip.into()),
            authority: format!("{host}:{port}"),
            sender: None,
            opened: 0,
        })
    }

    /// How many connections this user has opened so far (1 while the first one lasts).
    pub fn opened(&self) -> u64 {
        self.opened
    }

    async fn open(&mut self) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let tcp = TcpStream::connect(self.addr).await.context("connecting")?;
        tcp.set_nodelay(true)?;
        let tls = self.tls.connect(self.name.clone(), tcp).await.context("the TLS handshake")?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        // Ends when the connection closes; a broken connection shows as the next request's error.
        tokio::spawn(connection);
        self.opened += 1;
        Ok(sender)
    }

    /// Sends `method path` with `headers` and `body` (JSON), and reads the whole response. A
    /// request the server's closing kept from going out is sent again on a new connection.
    pub async fn send(
        &mut self,
        method: hyper::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let mut request = Request::builder().method(method).uri(path).header(hyper::header::HOST, &self.authority);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if body.is_some() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = request.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let mut sender = match self.sender.take() {
            Some(open) if !open.is_closed() => open,
            _ => self.open().await?,
        };
        let response = match Self::try_send(&mut sender, request).await {
            Ok(response) => response,
            Err(mut unsent) => match unsent.take_message() {
                Some(request) => {
                    sender = self.open().await?;
                    Self::try_send(&mut sender, request).await.map_err(|e| e.into_error())?
                }
                None => return Err(unsent.into_error().into()),
            },
        };
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        // Kept only after a complete exchange: after an error the next request opens a new one.
        self.sender = Some(sender);
        Ok((status, body))
    }

    async fn try_send(
        sender: &mut SendRequest<Full<Bytes>>,
        request: Request<Full<Bytes>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, hyper::client::conn::TrySendError<Request<Full<Bytes>>>> {
        // Waiting for readiness first: a connection the server has just closed then fails the
        // send with the request handed back, not lost.
        let _ = sender.ready().await;
        sender.try_send_request(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// An HTTPS server (RepeatRx's own TLS configuration and server) whose `/` answers 10 kB and
    /// whose `/last` answers and closes the connection; it records each request's client port.
    async fn server() -> (String, Arc<rustls::ClientConfig>, Arc<Mutex<Vec<u16>>>, repeatrx_web::server::Running) {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let (cert_pem, key_pem) = (cert.cert.pem(), cert.key_pair.serialize_pem());
        let ports = Arc::new(Mutex::new(Vec::new()));
        let seen = ports.clone();
        let router = axum::Router::new()
            .route("/", axum::routing::get(|| async { "ok".repeat(5_000) }))
            .route("/last", axum::routing::get(|| async { ([(hyper::header::CONNECTION, "close")], "bye") }))
            .layer(axum::middleware::from_fn(move |req: axum::extract::Request, next: axum::middleware::Next| {
                let peer = req.extensions().get::<axum::extract::ConnectInfo<SocketAddr>>().map(|c| c.0.port());
                seen.lock().unwrap().extend(peer);
                next.run(req)
            }));
        let tls = repeatrx_web::tls::server_config(cert_pem.as_bytes(), key_pem.as_bytes()).unwrap();
        let running = repeatrx_web::server::start(router, tls, "127.0.0.1:0".parse().unwrap(), None).unwrap();
        (format!("https://{}", running.https_addr), tls_config(cert_pem.as_bytes()).unwrap(), ports, running)
    }

    #[tokio::test]
    async fn one_connection_carries_every_request() {
        let (base, tls, ports, _running) = server().await;
        let mut connection = Connection::new(&base, tls).unwrap();
        for _ in 0..50 {
            let (status, body) = connection.send(hyper::Method::GET, "/", &[], None).await.unwrap();
            assert_eq!(status, StatusCode::OK);
            assert_eq!(body.len(), 10_000);
        }
        assert_eq!(connection.opened(), 1);
        let ports = ports.lock().unwrap();
        assert_eq!(ports.len(), 50);
        assert!(ports.iter().all(|p| *p == ports[0]), "every request came over one connection");
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_replaced_and_counted() {
        let (base, tls, ports, _running) = server().await;
        let mut connection = Connection::new(&base, tls).unwrap();
        connection.send(hyper::Method::GET, "/last", &[], None).await.unwrap();
        let (status, _) = connection.send(hyper::Method::GET, "/", &[], None).await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(connection.opened(), 2);
        let ports = ports.lock().unwrap();
        assert_ne!(ports[0], ports[1]);
    }
}
