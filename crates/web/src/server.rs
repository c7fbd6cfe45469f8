//! Serving: HTTPS only (rustls, see [`crate::tls`]); an optional plain-HTTP listener that does
//! nothing but redirect to HTTPS.
use axum::extract::Request;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use axum_server::Handle;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

/// A running server: its address and a handle to stop it.
pub struct Running {
    pub https_addr: SocketAddr,
    pub http_addr: Option<SocketAddr>,
    pub handle: Handle,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    pub async fn stop(self) {
        self.handle.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
        let _ = self.task.await;
    }
}

/// Binds the listeners (port 0 picks a free port) and starts serving in the background.
pub fn start(
    router: Router,
    tls: rustls::ServerConfig,
    https: SocketAddr,
    http_redirect: Option<SocketAddr>,
) -> std::io::Result<Running> {
    let listener = TcpListener::bind(https)?;
    listener.set_nonblocking(true)?;
    let https_addr = listener.local_addr()?;
    let handle = Handle::new();
    let config = RustlsConfig::from_config(Arc::new(tls));
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    let server = axum_server::from_tcp_rustls(listener, config).handle(handle.clone());
    let task = tokio::spawn(async move { server.serve(service).await });
    let http_addr = match http_redirect {
        Some(addr) => Some(start_redirect(addr, https_addr.port(), handle.clone())?),
        None => None,
    };
    Ok(Running { https_addr, http_addr, handle, task })
}

fn start_redirect(addr: SocketAddr, https_port: u16, handle: Handle) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .fallback(move |req: Request| async move { redirect_to_https(req.uri(), req.headers(), https_port) });
    let server = axum_server::from_tcp(listener).handle(handle);
    tokio::spawn(async move { server.serve(app.into_make_service()).await });
    Ok(bound)
}

/// 308 to the same path on HTTPS; plain HTTP never serves content.
pub fn redirect_to_https(uri: &Uri, headers: &axum::http::HeaderMap, https_port: u16) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.rsplit_once(':').map(|(name, _)| name).unwrap_or(h).to_string())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || ".-[]:".contains(c)))
        .unwrap_or_else(|| "localhost".into());
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let port = if https_port == 443 { String::new() } else { format!(":{https_port}") };
    (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, format!("https://{host}{port}{path}"))]).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_keep_host_and_path() {
        let mut h = axum::http::HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        let r = redirect_to_https(&"/patient?x=1".parse().unwrap(), &h, 8443);
        assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(r.headers()[header::LOCATION], "https://127.0.0.1:8443/patient?x=1");
        h.insert(header::HOST, "evil\"host".parse().unwrap());
        let r = redirect_to_https(&"/".parse().unwrap(), &h, 443);
        assert_eq!(r.headers()[header::LOCATION], "https://localhost/");
    }
}
