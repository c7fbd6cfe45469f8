//! Durability (#6): what the server acknowledged survives `kill -9` at any moment. A patient
//! orders and cancels, over and over, against the real binary, which is killed with SIGKILL at
//! random moments and started again on the same data; after every restart each acknowledged order
//! is there, with its items, and each acknowledged cancellation holds.
mod common;

use rand::Rng;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Starts `repeatrx demo` on `dir` and waits until it answers.
async fn start(dir: &Path) -> (Child, String) {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_repeatrx"))
        .args(["demo", "--data-dir", dir.to_str().expect("path"), "--listen", &format!("127.0.0.1:{port}")])
        .env("REPEATRX_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the server starts");
    let url = format!("https://127.0.0.1:{port}");
    for _ in 0..200 {
        if client().get(format!("{url}/healthz")).send().await.is_ok_and(|r| r.status() == StatusCode::OK) {
            return (child, url);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the server did not come up at {url}");
}

#[derive(Default)]
struct Acknowledged {
    placed: Vec<String>,
    cancelled: Vec<String>,
}

/// Cancels the patient's orders that the pharmacy has not started: a kill between an order's
/// commit and its cancellation's acknowledgement leaves it open, holding its items. Returns false
/// when a request fails (the server was killed).
async fn cancel_open_orders(
    c: &reqwest::Client,
    url: &str,
    token: &str,
    patient: &str,
    done: &Mutex<Acknowledged>,
) -> bool {
    let Ok(resp) = c.get(format!("{url}/api/v1/patients/{patient}/orders")).bearer_auth(token).send().await else {
        return false;
    };
    let Ok(orders) = resp.json::<Value>().await else { return false };
    let open = orders
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["stage"] == json!("submitted") && o["accepted"] == json!(false))
        .filter_map(|o| o["id"].as_str().map(String::from));
    for id in open {
        let Ok(resp) =
            c.post(format!("{url}/api/v1/orders/{id}/cancel")).bearer_auth(token).json(&json!({})).send().await
        else {
            return false;
        };
        if resp.status() == StatusCode::OK {
            done.lock().expect("lock").cancelled.push(id);
        }
    }
    true
}

/// Orders and cancels until a request fails (the server was killed).
async fn workload(url: String, token: String, patient: String, done: Arc<Mutex<Acknowledged>>) {
    let c = client();
    if !cancel_open_orders(&c, &url, &token, &patient, &done).await {
        return;
    }
    loop {
        let Ok(resp) = c.get(format!("{url}/api/v1/patients/{patient}/repeat-items")).bearer_auth(&token).send().await
        else {
            return;
        };
        let Ok(items) = resp.json::<Value>().await else { return };
        let Some(item) = items
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["orderable"] == json!(true))
            .and_then(|i| i["id"].as_str().map(String::from))
        else {
            panic!("nothing left to order: cancelled orders free their items again");
        };
        let Ok(resp) = c
            .post(format!("{url}/api/v1/patients/{patient}/orders"))
            .bearer_auth(&token)
            .json(&json!({"items": [item], "fulfilment": "collection"}))
            .send()
            .await
        else {
            return;
        };
        if resp.status() != StatusCode::CREATED {
            return;
        }
        let Ok(order) = resp.json::<Value>().await else { return };
        let id = order["id"].as_str().expect("an order id").to_string();
        done.lock().expect("lock").placed.push(id.clone());
        let Ok(resp) =
            c.post(format!("{url}/api/v1/orders/{id}/cancel")).bearer_auth(&token).json(&json!({})).send().await
        else {
            return;
        };
        if resp.status() != StatusCode::OK {
            return;
        }
        done.lock().expect("lock").cancelled.push(id);
    }
}

#[tokio::test]
async fn acknowledged_orders_survive_sigkill_at_random_moments() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let (mut child, url) = start(dir.path()).await;
    let signed_in = common::RemotePatient::sign_in(&url, "patient@demo.example").await;
    let (token, patient) = (signed_in.token, signed_in.patient);
    let done = Arc::new(Mutex::new(Acknowledged::default()));
    let mut url = url;

    for round in 0..8 {
        let work = tokio::spawn(workload(url.clone(), token.clone(), patient.clone(), done.clone()));
        let pause = rand::thread_rng().gen_range(150..900);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        work.await.expect("the workload ends with the server");

        let (next, next_url) = start(dir.path()).await;
        child = next;
        url = next_url;
        let (placed, cancelled) = {
            let ack = done.lock().expect("lock");
            (ack.placed.clone(), ack.cancelled.clone())
        };
        for id in &placed {
            let resp =
                client().get(format!("{url}/api/v1/orders/{id}")).bearer_auth(&token).send().await.expect("sent");
            assert_eq!(resp.status(), StatusCode::OK, "round {round}: acknowledged order {id} is missing");
            let order: Value = resp.json().await.expect("json");
            assert!(order["items"].as_array().is_some_and(|i| !i.is_empty()), "round {round}: {order}");
            if cancelled.contains(id) {
                assert_eq!(order["stage"], "cancelled", "round {round}: acknowledged cancellation of {id} lost");
            }
        }
    }
    let placed = done.lock().expect("lock").placed.len();
    assert!(placed >= 8, "the workload ran ({placed} orders acknowledged)");
    child.kill().expect("stopped");
    let _ = child.wait();
}
