//! P13 across a restore: a patient erases themselves over the API; the database is then restored
//! from a backup taken before; the next start re-applies the erasure ledger kept outside the
//! database, so the patient is erased again before anyone is served.
use repeatrx_app::demo::DEMO_PASSWORD;
use repeatrx_domain::text::Email;
use repeatrx_store::crypto::KeyFile;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;

const PATIENT: &str = "patient@demo.example";

fn client() -> reqwest::Client {
    reqwest::Client::builder().danger_accept_invalid_certs(true).build().expect("client")
}

async fn sign_in(url: &str, email: &str) -> reqwest::Response {
    client()
        .post(format!("{url}/api/v1/sessions"))
        .json(&json!({"email": email, "password": DEMO_PASSWORD}))
        .send()
        .await
        .expect("sent")
}

/// A consistent copy of the live database, as a backup tool would take it.
async fn backup(db: &Path, to: &Path) {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await.expect("database");
    sqlx::query(&format!("VACUUM INTO '{}'", to.display())).execute(&pool).await.expect("backup");
    pool.close().await;
}

#[tokio::test]
async fn an_erased_patient_stays_erased_after_a_restore_from_an_older_backup() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let db = dir.path().join("repeatrx-demo.db");
    let saved = dir.path().join("backup-before-erasure.db");
    let listen = "127.0.0.1:0".parse().expect("address");

    let server = repeatrx::startup::start_demo(dir.path(), listen, None).await.expect("demo");
    let url = server.url();
    let email = Email::parse(PATIENT).expect("email");
    let ann = server.app.store.user_by_email(&email).await.expect("store").expect("Ann").patient_id.expect("patient");
    backup(&db, &saved).await;

    let session: Value = sign_in(&url, PATIENT).await.json().await.expect("json");
    let token = session["token"].as_str().expect("token").to_string();
    let refused = client()
        .post(format!("{url}/api/v1/patients/{ann}/erasure"))
        .bearer_auth(&token)
        .json(&json!({"password": DEMO_PASSWORD}))
        .send()
        .await
        .expect("sent");
    assert_eq!(refused.status(), 422, "not confirmed: nothing happens");
    let erased = client()
        .post(format!("{url}/api/v1/patients/{ann}/erasure"))
        .bearer_auth(&token)
        .json(&json!({"confirm": true, "password": DEMO_PASSWORD}))
        .send()
        .await
        .expect("sent");
    assert_eq!(erased.status(), 200);
    let body: Value = erased.json().await.expect("json");
    assert!(body["erased_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{body}");
    let me = client().get(format!("{url}/api/v1/me")).bearer_auth(&token).send().await.expect("sent");
    assert_eq!(me.status(), 401, "the patient's sessions ended with the account");
    assert_eq!(sign_in(&url, PATIENT).await.status(), 401);
    server.stop().await;

    // The database is restored from the backup taken before the erasure.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    std::fs::copy(&saved, &db).expect("restored");
    {
        let keys = Arc::new(KeyFile::load(&dir.path().join("repeatrx-demo.keys")).expect("keys"));
        let store = repeatrx::startup::open_store(&format!("sqlite://{}", db.display()), keys).await.expect("store");
        assert!(store.patient(ann).await.expect("read").is_some(), "the restore brought Ann back");
    }

    // The next start re-applies the ledger before serving.
    let server = repeatrx::startup::start_demo(dir.path(), listen, None).await.expect("demo again");
    assert_eq!(server.app.store.patient(ann).await.expect("read"), None, "erased again");
    assert!(server.app.store.erased_at(ann).await.expect("read").is_some());
    assert_eq!(server.app.store.user_by_email(&email).await.expect("read"), None);
    assert_eq!(sign_in(&server.url(), PATIENT).await.status(), 401);
    server.stop().await;
}
