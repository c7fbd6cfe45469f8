//! Several servers on one PostgreSQL database work as one (#6): a session opened on one is good
//! on the other and ends on both; failed sign-ins on both count towards one lockout; an order
//! placed through one is seen and worked through the other.
use repeatrx::startup::{start_demo_with, DemoOptions, Server};
use repeatrx_app::demo::DEMO_PASSWORD;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn client() -> reqwest::Client {
    reqwest::Client::builder().danger_accept_invalid_certs(true).build().expect("client")
}

async fn server(dir: &std::path::Path, url: &str) -> Server {
    let options = DemoOptions { database_url: Some(url.to_string()), ..Default::default() };
    start_demo_with(dir, "127.0.0.1:0".parse().expect("address"), None, options).await.expect("a server starts")
}

async fn sign_in(server: &Server, email: &str, password: &str) -> (StatusCode, Value) {
    let resp = client()
        .post(format!("{}/api/v1/sessions", server.url()))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("sent");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn get(server: &Server, path: &str, token: &str) -> (StatusCode, Value) {
    let resp = client().get(format!("{}/api/v1{path}", server.url())).bearer_auth(token).send().await.expect("sent");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn two_servers_on_one_database_share_sessions_lockouts_and_orders() {
    let url = repeatrx_store::testdb::fresh_postgres_database().await.expect("a PostgreSQL test database");
    let dir = tempfile::tempdir().expect("temporary folder");
    let a = server(dir.path(), &url).await;
    let b = server(dir.path(), &url).await;
    assert_ne!(a.url(), b.url());

    // A session opened on A works on B, and signing out on B ends it on A.
    let (status, session) = sign_in(&a, "patient@demo.example", DEMO_PASSWORD).await;
    assert_eq!(status, StatusCode::CREATED);
    let token = session["token"].as_str().expect("token").to_string();
    let (status, me) = get(&b, "/me", &token).await;
    assert_eq!(status, StatusCode::OK);
    let patient = me["patient_id"].as_str().expect("a patient").to_string();

    // An order placed through A is on B's list.
    let (_, items) = get(&b, &format!("/patients/{patient}/repeat-items"), &token).await;
    let item = items
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["orderable"] == json!(true))
        .and_then(|i| i["id"].as_str())
        .expect("an orderable item")
        .to_string();
    let placed = client()
        .post(format!("{}/api/v1/patients/{patient}/orders", a.url()))
        .bearer_auth(&token)
        .json(&json!({"items": [item], "fulfilment": "collection"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(placed.status(), StatusCode::CREATED);
    let order: Value = placed.json().await.expect("json");
    let (status, seen) = get(&b, &format!("/orders/{}", order["id"].as_str().expect("id")), &token).await;
    assert_eq!(status, StatusCode::OK, "{seen}");

    let out = client().delete(format!("{}/api/v1/sessions", b.url())).bearer_auth(&token).send().await;
    assert!(out.expect("sent").status().is_success());
    assert_eq!(get(&a, "/me", &token).await.0, StatusCode::UNAUTHORIZED, "signed out on every server");

    // Three wrong passwords on each server lock the account: the seventh try, right or not, fails.
    for n in 0..6 {
        let on = if n % 2 == 0 { &a } else { &b };
        assert_eq!(sign_in(on, "receptionist@demo.example", "not the password").await.0, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(sign_in(&a, "receptionist@demo.example", DEMO_PASSWORD).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(sign_in(&b, "receptionist@demo.example", DEMO_PASSWORD).await.0, StatusCode::UNAUTHORIZED);

    a.stop().await;
    b.stop().await;
}
