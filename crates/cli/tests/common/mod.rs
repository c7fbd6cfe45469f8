//! The test harness: the real server (the same `start_demo` the binary runs) on a random port
//! over real HTTPS, with a fresh database seeded with the synthetic demo data, and a client that
//! talks to it like a phone app would.
#![allow(dead_code)] // each test file uses a different part of the harness

use repeatrx::startup::Server;
use repeatrx_app::demo::{DEMO_PASSWORD, DEMO_TOTP_SECRET};
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, COOKIE, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tempfile::TempDir;

pub const API: &str = "/api/v1";

pub struct TestApp {
    /// The running server; `server.app` reaches the store (e.g. the email outbox).
    pub server: Server,
    /// The last TOTP step whose code each account has used: a code works once, so the harness
    /// hands out each step's code at most once per account.
    used_steps: std::sync::Mutex<std::collections::HashMap<String, i64>>,
    /// Authenticator secrets of accounts enrolled during the test (demo staff use the demo's).
    secrets: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// "https://127.0.0.1:PORT"
    pub address: String,
    pub client: reqwest::Client,
    /// Holds the database and certificate; deleted when the test ends.
    _dir: TempDir,
}

/// An answer: status, headers and the body parsed as JSON (`Value::Null` when it is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub async fn read(resp: reqwest::Response) -> Reply {
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("response body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, headers, body }
    }

    /// Asserts the status and hands back the body.
    #[track_caller]
    pub fn expect(self, status: StatusCode) -> Value {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.body);
        self.body
    }

    /// Asserts the status and that the body is the API's JSON error; returns the whole body.
    #[track_caller]
    pub fn expect_error_body(self, status: StatusCode) -> Value {
        let body = self.body.clone();
        self.expect_error(status);
        body
    }

    /// Asserts the status and that the body is the API's JSON error; returns its message.
    #[track_caller]
    pub fn expect_error(self, status: StatusCode) -> String {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.body);
        let error = &self.body["error"];
        assert_eq!(error["status"], json!(status.as_u16()), "not a JSON error: {}", self.body);
        let message = error["message"].as_str().expect("error message").to_string();
        assert!(!message.is_empty());
        message
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(repeatrx::startup::DemoOptions::default()).await
    }

    /// The demo server with the given options (e.g. a separate admin listener).
    /// With `REPEATRX_TEST_DATABASE=postgres` the server runs on a fresh PostgreSQL database.
    pub async fn spawn_with(mut options: repeatrx::startup::DemoOptions) -> TestApp {
        // Continuous backup is SQLite's own: a test of it keeps the SQLite demo.
        if std::env::var("REPEATRX_TEST_DATABASE").as_deref() == Ok("postgres")
            && options.database_url.is_none()
            && options.backup_dir.is_none()
        {
            let url = repeatrx_store::testdb::fresh_postgres_database().await.expect("a PostgreSQL test database");
            options.database_url = Some(url);
        }
        let dir = tempfile::tempdir().expect("temporary folder");
        let server =
            repeatrx::startup::start_demo_with(dir.path(), "127.0.0.1:0".parse().expect("address"), None, options)
                .await
                .expect("the demo server starts");
        let address = server.url();
        let client = reqwest::Client::builder()
            // The demo certificate is self-signed.
            .danger_accept_invalid_certs(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("HTTP client");
        TestApp { server, address, client, used_steps: Default::default(), secrets: Default::default(), _dir: dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// The demo's data folder (its database, key file and erasure ledger).
    pub fn data_dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// Signs in with the demo password and returns the bearer token.
    pub async fn sign_in(&self, email: &str) -> String {
        self.sign_in_with(email, DEMO_PASSWORD).await
    }

    /// Signs in through the API, finishing with a TOTP code of `secret` when the account asks
    /// for one (demo staff share [`DEMO_TOTP_SECRET`]).
    pub async fn sign_in_with(&self, email: &str, password: &str) -> String {
        let body = self
            .post_json_anon(&format!("{API}/sessions"), &json!({"email": email, "password": password}))
            .await
            .expect(StatusCode::CREATED);
        let token = body["token"].as_str().expect("a token").to_string();
        match body["stage"].as_str() {
            Some("full") => token,
            Some("second_factor") => {
                let code = self.next_code(email, &self.secret_of(email)).await;
                let full = self
                    .post_json(&format!("{API}/sessions/second-factor"), &token, &json!({"code": code}))
                    .await
                    .expect(StatusCode::CREATED);
                assert_eq!(full["stage"], "full");
                full["token"].as_str().expect("a token").to_string()
            }
            Some("enrol") => {
                let setup =
                    self.post_json(&format!("{API}/sessions/totp"), &token, &json!({})).await.expect(StatusCode::OK);
                let secret = setup["secret"].as_str().expect("a secret").to_string();
                self.secrets.lock().expect("lock").insert(email.to_string(), secret.clone());
                let code = self.next_code(email, &secret).await;
                let done = self
                    .post_json(&format!("{API}/sessions/totp/confirm"), &token, &json!({"code": code}))
                    .await
                    .expect(StatusCode::OK);
                assert_eq!(done["recovery_codes"].as_array().map(Vec::len), Some(10));
                done["session"]["token"].as_str().expect("a full token").to_string()
            }
            other => panic!("unexpected sign-in stage {other:?}: {body}"),
        }
    }

    /// The authenticator secret of an account: its own if it enrolled in this test, else the
    /// demo staff's.
    pub fn secret_of(&self, account: &str) -> String {
        self.secrets.lock().expect("lock").get(account).cloned().unwrap_or_else(|| DEMO_TOTP_SECRET.to_string())
    }

    /// A TOTP code for `account` that it has not used yet: the current step's, else the next
    /// step's (accepted thanks to the one-step skew), else it waits for the next step.
    pub async fn next_code(&self, account: &str, secret: &str) -> String {
        loop {
            let now = jiff::Timestamp::now().as_second();
            let step = repeatrx_app::totp::step_of(now);
            let chosen = {
                let mut used = self.used_steps.lock().expect("lock");
                let last = used.get(account).copied().unwrap_or(i64::MIN);
                let candidate = step.max(last.saturating_add(1));
                if candidate <= step + 1 {
                    used.insert(account.to_string(), candidate);
                    Some(candidate)
                } else {
                    None
                }
            };
            if let Some(step) = chosen {
                return repeatrx_app::totp::code_at_step(secret, step).expect("a code");
            }
            let wait = 30 - now.rem_euclid(30);
            tokio::time::sleep(std::time::Duration::from_millis(wait as u64 * 1000 + 200)).await;
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        let resp = self.client.get(self.url(path)).bearer_auth(token).send().await.expect("request sent");
        Reply::read(resp).await
    }

    pub async fn get_anon(&self, path: &str) -> Reply {
        Reply::read(self.client.get(self.url(path)).send().await.expect("request sent")).await
    }

    pub async fn post_json(&self, path: &str, token: &str, body: &Value) -> Reply {
        let resp = self.client.post(self.url(path)).bearer_auth(token).json(body).send().await.expect("request sent");
        Reply::read(resp).await
    }

    pub async fn patch_json(&self, path: &str, token: &str, body: &Value) -> Reply {
        let resp = self.client.patch(self.url(path)).bearer_auth(token).json(body).send().await.expect("request sent");
        Reply::read(resp).await
    }

    pub async fn post_json_anon(&self, path: &str, body: &Value) -> Reply {
        Reply::read(self.client.post(self.url(path)).json(body).send().await.expect("request sent")).await
    }

    /// POSTs raw bytes with the given content type.
    pub async fn post_raw(&self, path: &str, token: &str, content_type: &str, body: impl Into<reqwest::Body>) -> Reply {
        let resp = self
            .client
            .post(self.url(path))
            .bearer_auth(token)
            .header(CONTENT_TYPE, HeaderValue::from_str(content_type).expect("content type"))
            .body(body)
            .send()
            .await
            .expect("request sent");
        Reply::read(resp).await
    }

    /// The signed-in patient's own patient id (from GET /me).
    pub async fn my_patient_id(&self, token: &str) -> String {
        let me = self.get(&format!("{API}/me"), token).await.expect(StatusCode::OK);
        me["patient_id"].as_str().expect("a patient account").to_string()
    }

    pub async fn repeat_items(&self, patient: &str, token: &str) -> Vec<Value> {
        let v = self.get(&format!("{API}/patients/{patient}/repeat-items"), token).await.expect(StatusCode::OK);
        v.as_array().expect("a list").clone()
    }

    pub async fn order(&self, order: &str, token: &str) -> Value {
        self.get(&format!("{API}/orders/{order}"), token).await.expect(StatusCode::OK)
    }

    pub async fn orders_of(&self, patient: &str, token: &str) -> Vec<Value> {
        let v = self.get(&format!("{API}/patients/{patient}/orders"), token).await.expect(StatusCode::OK);
        v.as_array().expect("a list").clone()
    }

    /// Places an order for collection; the raw reply, so refusals can be checked.
    pub async fn place_order(&self, patient: &str, token: &str, items: &[&str]) -> Reply {
        self.post_json(
            &format!("{API}/patients/{patient}/orders"),
            token,
            &json!({"items": items, "fulfilment": "collection"}),
        )
        .await
    }

    /// A patient of the signed-in pharmacy who has an item that can be ordered now, with that
    /// item's id.
    pub async fn patient_with_orderable_item(&self, staff: &str) -> (String, String) {
        let patients = self.get(&format!("{API}/pharmacy/patients"), staff).await.expect(StatusCode::OK);
        for p in patients.as_array().expect("a list") {
            let id = p["id"].as_str().expect("id");
            if let Some(item) = self.repeat_items(id, staff).await.into_iter().find(|i| i["orderable"] == json!(true)) {
                return (id.to_string(), item["id"].as_str().expect("id").to_string());
            }
        }
        panic!("no patient of this pharmacy has an orderable item")
    }
}

/// An answer to a browser-like request: status, the session cookie it set (if any), Location
/// and body.
pub struct Answer {
    pub status: StatusCode,
    pub cookie: Option<String>,
    pub location: Option<String>,
    pub body: String,
}

impl Answer {
    pub async fn read(resp: reqwest::Response) -> Answer {
        let status = resp.status();
        let cookie = resp
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("__Host-rrx_session=") && !v.contains("Max-Age=0"))
            .and_then(|v| v.split(';').next())
            .map(str::to_string);
        let location = resp.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = resp.text().await.unwrap_or_default();
        Answer { status, cookie, location, body }
    }
}

/// The value of the first hidden `_csrf` field on a page.
pub fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"_csrf\" value=\"").expect("a CSRF field") + "name=\"_csrf\" value=\"".len();
    html[at..].chars().take_while(|c| *c != '"').collect()
}

pub fn sign_in_form<'a>(email: &'a str, password: &'a str) -> [(&'static str, &'a str); 2] {
    [("email", email), ("password", password)]
}

/// The path of the first link to `/{path}/...` in an email.
pub fn link_path(email: &repeatrx_store::OutgoingEmail, path: &str) -> String {
    let marker = format!("/{path}/");
    let at = email.body.find(&marker).expect("a link");
    email.body[at..].chars().take_while(|c| !c.is_whitespace()).collect()
}

impl TestApp {
    /// A form post, with a session cookie if given.
    pub async fn post_form(&self, path: &str, cookie: Option<&str>, form: &[(&str, &str)]) -> Answer {
        let mut req = self.client.post(self.url(path)).form(form);
        if let Some(c) = cookie {
            req = req.header(COOKIE, c);
        }
        Answer::read(req.send().await.expect("request sent")).await
    }

    /// A page, with a session cookie if given.
    pub async fn get_page(&self, path: &str, cookie: Option<&str>) -> Answer {
        let mut req = self.client.get(self.url(path));
        if let Some(c) = cookie {
            req = req.header(COOKIE, c);
        }
        Answer::read(req.send().await.expect("request sent")).await
    }

    /// Waits for the email (queued by a request or its background task) to `to` whose subject
    /// contains `subject`.
    pub async fn wait_for_email(&self, to: &str, subject: &str) -> repeatrx_store::OutgoingEmail {
        for _ in 0..100 {
            let found = self
                .server
                .app
                .store
                .recent_emails(200)
                .await
                .expect("outbox")
                .into_iter()
                .find(|e| e.to.as_str() == to && e.subject.contains(subject));
            if let Some(e) = found {
                return e;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("no email '{subject}' to {to}")
    }

    /// Accepts the invitation emailed to `email` by choosing `password` on its page.
    pub async fn accept_invitation(&self, email: &str, password: &str) {
        let mail = self.wait_for_email(email, "invited").await;
        let link = link_path(&mail, "invitation");
        let done = self.post_form(&link, None, &[("password", password), ("confirm", password)]).await;
        assert_eq!(done.status, StatusCode::OK, "the invitation is accepted: {}", done.body);
    }

    /// Signs in through the forms with the demo password (then the code page) and returns the
    /// session cookie.
    pub async fn browser_sign_in(&self, email: &str) -> String {
        self.browser_sign_in_with(email, DEMO_PASSWORD).await
    }

    pub async fn browser_sign_in_with(&self, email: &str, password: &str) -> String {
        let started = self.post_form("/sign-in", None, &sign_in_form(email, password)).await;
        let cookie = started.cookie.expect("a session cookie");
        if started.location.as_deref() != Some("/sign-in/code") {
            return cookie;
        }
        let page = self.get_page("/sign-in/code", Some(&cookie)).await;
        let code = self.next_code(email, &self.secret_of(email)).await;
        let done =
            self.post_form("/sign-in/code", Some(&cookie), &[("_csrf", &csrf_of(&page.body)), ("code", &code)]).await;
        done.cookie.expect("a full session cookie")
    }
}

/// The ids of the items whose `status` is `status`.
pub fn with_status<'a>(items: &'a [Value], status: &str) -> Vec<&'a str> {
    items.iter().filter(|i| i["status"] == json!(status)).filter_map(|i| i["id"].as_str()).collect()
}

/// The text of an error's `reasons`.
pub fn reasons(body: &Value) -> Vec<String> {
    body["error"]["reasons"]
        .as_array()
        .map(|r| r.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// A patient working over the API of a server the harness did not start (the real binary, run
/// as a child process so it can be killed or starved): the calls the durability tests repeat.
/// Transport failures come back as errors, since those tests take the server away on purpose.
pub struct RemotePatient {
    pub address: String,
    pub client: reqwest::Client,
    pub token: String,
    pub patient: String,
}

impl RemotePatient {
    pub fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .timeout(std::time::Duration::from_secs(20))
            .build()
            .expect("client")
    }

    /// Signs `email` in with the demo password and finds their patient record.
    pub async fn sign_in(address: &str, email: &str) -> RemotePatient {
        let client = Self::client();
        let session: Value = client
            .post(format!("{address}{API}/sessions"))
            .json(&json!({"email": email, "password": DEMO_PASSWORD}))
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        let token = session["token"].as_str().expect("token").to_string();
        let me: Value = client
            .get(format!("{address}{API}/me"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        let patient = me["patient_id"].as_str().expect("a patient account").to_string();
        RemotePatient { address: address.to_string(), client, token, patient }
    }

    /// The id of a repeat item that can be ordered now, if any.
    pub async fn orderable_item(&self) -> Result<Option<String>, reqwest::Error> {
        let items: Value = self
            .client
            .get(format!("{}{API}/patients/{}/repeat-items", self.address, self.patient))
            .bearer_auth(&self.token)
            .send()
            .await?
            .json()
            .await?;
        Ok(items
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["orderable"] == json!(true))
            .and_then(|i| i["id"].as_str().map(String::from)))
    }

    /// Orders `item` for collection.
    pub async fn place(&self, item: &str) -> Result<reqwest::Response, reqwest::Error> {
        self.client
            .post(format!("{}{API}/patients/{}/orders", self.address, self.patient))
            .bearer_auth(&self.token)
            .json(&json!({"items": [item], "fulfilment": "collection"}))
            .send()
            .await
    }

    pub async fn cancel(&self, order: &str) -> Result<reqwest::Response, reqwest::Error> {
        self.client
            .post(format!("{}{API}/orders/{order}/cancel", self.address))
            .bearer_auth(&self.token)
            .json(&json!({}))
            .send()
            .await
    }

    /// The patient's orders (every state).
    pub async fn orders(&self) -> Vec<Value> {
        let body: Value = self
            .client
            .get(format!("{}{API}/patients/{}/orders", self.address, self.patient))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        body.as_array().cloned().expect("a list of orders")
    }
}
