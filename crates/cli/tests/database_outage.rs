//! The database going away (#6): requests get a clear 503 ("temporarily unavailable"), nothing
//! is half-written, and the server recovers by itself when the database is back. The server
//! reaches PostgreSQL through a proxy the test can cut and restore.
mod common;

use repeatrx::startup::{start_demo_with, DemoOptions};
use reqwest::StatusCode;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A TCP proxy to PostgreSQL that can refuse new connections and drop the open ones.
struct Proxy {
    port: u16,
    open: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy listens");
        let port = listener.local_addr().expect("address").port();
        let open = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (o, l) = (open.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !o.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is closed at once
                }
                let target = target.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                l.lock().expect("lock").push(link);
            }
        });
        Proxy { port, open, links }
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for link in self.links.lock().expect("lock").drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

#[tokio::test]
async fn an_outage_gives_503_and_the_server_recovers_by_itself() {
    let _ = tracing_subscriber::fmt().with_env_filter("error").with_test_writer().try_init();
    let direct = repeatrx_store::testdb::fresh_postgres_database().await.expect("a PostgreSQL test database");
    let target = url::Url::parse(&direct).expect("url");
    let proxy = Proxy::start(format!("{}:{}", target.host_str().expect("host"), target.port().unwrap_or(5432))).await;
    let mut proxied = target.clone();
    proxied.set_port(Some(proxy.port)).expect("port");
    let dir = tempfile::tempdir().expect("temporary folder");
    let options = DemoOptions { database_url: Some(proxied.to_string()), ..Default::default() };
    let server = start_demo_with(dir.path(), "127.0.0.1:0".parse().expect("address"), None, options)
        .await
        .expect("the server starts through the proxy");
    let url = server.url();
    let token = common::RemotePatient::sign_in(&url, "patient@demo.example").await.token;
    let me = || client().get(format!("{url}/api/v1/me")).bearer_auth(&token).send();
    assert_eq!(me().await.expect("sent").status(), StatusCode::OK);

    proxy.cut();
    let down = me().await.expect("an answer, not a hang");
    assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = down.json().await.expect("json");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("temporarily unavailable")), "{body}");
    let page = client().get(format!("{url}/sign-in")).send().await.expect("sent");
    assert!(page.status().is_success() || page.status() == StatusCode::SERVICE_UNAVAILABLE, "{}", page.status());

    proxy.restore();
    let mut recovered = false;
    for _ in 0..60 {
        if me().await.is_ok_and(|r| r.status() == StatusCode::OK) {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(recovered, "the server recovers by itself once the database is back");
    server.stop().await;
}
