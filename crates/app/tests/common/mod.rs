//! The shared harness of the application tests: a real SQLite file seeded with the demo data,
//! and an injected clock so that timeouts and link lifetimes are tested without sleeping.
#![allow(dead_code)] // each test file uses a different part of the harness

use jiff::{SignedDuration, Timestamp};
use repeatrx_app::{App, Settings};
use repeatrx_domain::access::Actor;
use repeatrx_domain::clock::Clock;
use repeatrx_domain::text::Email;
use repeatrx_store::sql::SqlStore;
use secrecy::SecretString;
use std::sync::{Arc, Mutex};

pub struct TestClock(Mutex<Timestamp>);

impl TestClock {
    pub fn advance(&self, by: SignedDuration) {
        let mut t = self.0.lock().unwrap();
        *t += by;
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }
}

pub struct Harness {
    pub app: App,
    pub clock: Arc<TestClock>,
    pub _dir: tempfile::TempDir,
}

pub async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let keys = Arc::new(repeatrx_store::crypto::KeyFile::create(&dir.path().join("test.keys")).unwrap());
    // REPEATRX_TEST_DATABASE=postgres runs the same tests on a fresh PostgreSQL database.
    let store = if std::env::var("REPEATRX_TEST_DATABASE").as_deref() == Ok("postgres") {
        let url = repeatrx_store::testdb::fresh_postgres_database().await.expect("a PostgreSQL test database");
        SqlStore::connect_postgres(&url, keys).await.unwrap()
    } else {
        SqlStore::open(&dir.path().join("test.db"), keys).await.unwrap()
    };
    let clock = Arc::new(TestClock(Mutex::new("2026-11-23T10:00:00Z".parse().unwrap())));
    let settings = Settings {
        demo: true,
        erasure_ledger: Some(repeatrx_store::ledger::ErasureLedger::new(dir.path().join("test.erasures"))),
        ..Settings::defaults_for("https://repeats.example")
    };
    let app = App::new(Arc::new(store), clock.clone(), settings);
    repeatrx_app::demo::seed(&app).await.unwrap();
    Harness { app, clock, _dir: dir }
}

pub fn client() -> repeatrx_app::auth::Client {
    repeatrx_app::auth::Client::new("192.0.2.10", "services-test")
}

pub fn password() -> SecretString {
    SecretString::from(repeatrx_app::demo::DEMO_PASSWORD)
}

pub async fn actor(app: &App, email: &str) -> Actor {
    let user = app.store.user_by_email(&Email::parse(email).unwrap()).await.unwrap().unwrap();
    app.actor_of(&user).await.unwrap()
}

/// Accepts the invitation emailed to `email` (read from the outbox) by choosing `password`.
pub async fn accept_invitation(app: &App, email: &str, password: &str) {
    let mail = app
        .store
        .recent_emails(200)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.to.as_str() == email && e.subject.contains("invited"))
        .expect("an invitation email");
    let token = mail.body.split("/invitation/").nth(1).and_then(|t| t.split_whitespace().next()).expect("a link");
    app.accept_invitation(token, password, &client()).await.unwrap();
}
