//! Account security through the real server over HTTPS, by HTML form and by JSON API alike:
//! lockout, the second factor on every staff route, a new session id after the second factor,
//! identical answers for existing and unknown accounts, and the emailed links.
mod common;

use common::{csrf_of, link_path, sign_in_form, TestApp, API};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const PATIENT: &str = "patient@demo.example";
const PHARMACIST: &str = "pharmacist@demo.example";
const PASSWORD: &str = repeatrx_app::demo::DEMO_PASSWORD;

#[tokio::test]
async fn the_seventh_attempt_is_refused_by_form_and_by_api_alike() {
    let app = TestApp::spawn().await;
    let wrong = app.post_form("/sign-in", None, &sign_in_form(PATIENT, "not the password")).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    for _ in 0..2 {
        app.post_form("/sign-in", None, &sign_in_form(PATIENT, "not the password")).await;
    }
    for _ in 0..3 {
        app.post_json_anon(&format!("{API}/sessions"), &json!({"email": PATIENT, "password": "nope nope nope"}))
            .await
            .expect_error(StatusCode::UNAUTHORIZED);
    }
    // Six failures, mixed between the form and the API: the right password is now refused by both,
    // with the same answer as a wrong one, and the page points to the unlock procedure.
    let html = app.post_form("/sign-in", None, &sign_in_form(PATIENT, PASSWORD)).await;
    assert_eq!(html.status, StatusCode::UNAUTHORIZED);
    assert!(html.cookie.is_none());
    assert!(html.body.contains("href=\"/unlock\""), "a link to the unlock procedure");
    assert_eq!(strip_email(&html.body), strip_email(&wrong.body), "same page as a wrong password");
    let api = app
        .post_json_anon(&format!("{API}/sessions"), &json!({"email": PATIENT, "password": PASSWORD}))
        .await
        .expect_error(StatusCode::UNAUTHORIZED);
    let unknown = app
        .post_json_anon(&format!("{API}/sessions"), &json!({"email": "nobody@demo.example", "password": PASSWORD}))
        .await
        .expect_error(StatusCode::UNAUTHORIZED);
    assert_eq!(api, unknown);
}

fn strip_email(html: &str) -> String {
    html.replace(PATIENT, "")
}

#[tokio::test]
async fn staff_reach_no_dashboard_page_and_no_api_route_without_the_second_factor() {
    let app = TestApp::spawn().await;
    // API: the half-way token reaches nothing but the sign-in steps.
    let half = app
        .post_json_anon(&format!("{API}/sessions"), &json!({"email": PHARMACIST, "password": PASSWORD}))
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(half["stage"], "second_factor");
    let token = half["token"].as_str().expect("token");
    let doc = app.get_anon(&format!("{API}/openapi.json")).await.expect(StatusCode::OK);
    let some_id = uuid::Uuid::new_v4().to_string();
    let mut probed = 0;
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        let path = path.strip_prefix(API).expect("every documented path is under /api/v1");
        if path.starts_with("/sessions") || path == "/openapi.json" || path == "/password-strength" {
            continue;
        }
        let concrete = path
            .split('/')
            .map(|seg| if seg.starts_with('{') { some_id.as_str() } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        for method in ops.as_object().expect("operations").keys() {
            let url = app.url(&format!("{API}{concrete}"));
            let req = match method.as_str() {
                "get" => app.client.get(&url),
                "post" => app.client.post(&url).json(&json!({})),
                "put" => app.client.put(&url).json(&json!({})),
                "patch" => app.client.patch(&url).json(&json!({})),
                "delete" => app.client.delete(&url),
                other => panic!("unexpected method {other}"),
            };
            let status = req.bearer_auth(token).send().await.expect("sent").status();
            if matches!(path, "/password-resets" | "/unlock-requests") {
                continue; // open to anyone, signed in or not
            }
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} must need the second factor");
            probed += 1;
        }
    }
    assert!(probed >= 20, "every API route was probed ({probed})");

    // HTML: the half-way cookie session is sent back to sign in from every dashboard page.
    let started = app.post_form("/sign-in", None, &sign_in_form(PHARMACIST, PASSWORD)).await;
    assert_eq!(started.location.as_deref(), Some("/sign-in/code"));
    let cookie = started.cookie.expect("a half-way session");
    for page in ["/pharmacy", "/pharmacy/patients", "/practice", "/admin", "/patient", "/account", "/pharmacy/staff"] {
        let r = app.get_page(page, Some(&cookie)).await;
        assert_eq!(r.location.as_deref(), Some("/sign-in"), "{page} needs the second factor ({})", r.status);
    }

    // The code page finishes sign-in with a new session id; the old one stops working.
    let code_page = app.get_page("/sign-in/code", Some(&cookie)).await;
    assert_eq!(code_page.status, StatusCode::OK);
    let csrf = csrf_of(&code_page.body);
    let wrong = app.post_form("/sign-in/code", Some(&cookie), &[("_csrf", &csrf), ("code", "000000")]).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let code = app.next_code(PHARMACIST, &app.secret_of(PHARMACIST)).await;
    let done = app.post_form("/sign-in/code", Some(&cookie), &[("_csrf", &csrf), ("code", &code)]).await;
    assert_eq!(done.location.as_deref(), Some("/pharmacy"));
    let full = done.cookie.expect("a new session cookie");
    assert_ne!(full, cookie, "a new session id after the second factor");
    assert_eq!(app.get_page("/pharmacy", Some(&full)).await.status, StatusCode::OK);
    assert_eq!(app.get_page("/pharmacy", Some(&cookie)).await.location.as_deref(), Some("/sign-in"));

    // The same code again is refused (a code works once).
    let again = app.post_form("/sign-in", None, &sign_in_form(PHARMACIST, PASSWORD)).await;
    let again_cookie = again.cookie.expect("a half-way session");
    let page = app.get_page("/sign-in/code", Some(&again_cookie)).await;
    let replay =
        app.post_form("/sign-in/code", Some(&again_cookie), &[("_csrf", &csrf_of(&page.body)), ("code", &code)]).await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED, "a replayed code is refused");
}

/// Median time of `n` runs of `f`.
async fn median<F, Fut>(n: usize, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        f().await;
        times.push(start.elapsed());
    }
    times.sort();
    times[n / 2]
}

#[tokio::test]
async fn existing_and_unknown_accounts_get_the_same_answer_in_similar_time() {
    let app = TestApp::spawn().await;
    let sessions = format!("{API}/sessions");
    let body = |email: &str| json!({"email": email, "password": "wrong but long enough"});
    let known = app.post_json_anon(&sessions, &body(PATIENT)).await;
    let unknown = app.post_json_anon(&sessions, &body("nobody@demo.example")).await;
    assert_eq!((known.status, &known.body), (unknown.status, &unknown.body));
    // Two more failures each, timed (below the lockout: 1 + 2 = 3 for the real account).
    let t_known =
        median(3, || async { drop(app.post_json_anon(&sessions, &body("manager@demo.example")).await) }).await;
    let t_unknown =
        median(3, || async { drop(app.post_json_anon(&sessions, &body("ghost@demo.example")).await) }).await;
    let (slow, fast) = if t_known > t_unknown { (t_known, t_unknown) } else { (t_unknown, t_known) };
    assert!(
        slow.saturating_sub(fast) < Duration::from_millis(250) || slow.as_secs_f64() < fast.as_secs_f64() * 1.5,
        "sign-in refusals take similar time: known {t_known:?}, unknown {t_unknown:?}"
    );

    for (path, key) in [("/password-resets", "email"), ("/unlock-requests", "email")] {
        let url = format!("{API}{path}");
        let a = app.post_json_anon(&url, &json!({key: PATIENT})).await;
        let b = app.post_json_anon(&url, &json!({key: "nobody@demo.example"})).await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{path}: {}", a.body);
        assert_eq!((a.status, &a.body), (b.status, &b.body), "{path} answers the same");
        let t_a = median(3, || async { drop(app.post_json_anon(&url, &json!({key: PATIENT})).await) }).await;
        let t_b =
            median(3, || async { drop(app.post_json_anon(&url, &json!({key: "nobody@demo.example"})).await) }).await;
        let (slow, fast) = if t_a > t_b { (t_a, t_b) } else { (t_b, t_a) };
        assert!(slow.saturating_sub(fast) < Duration::from_millis(100), "{path}: {t_a:?} vs {t_b:?}");
    }
    for path in ["/forgot-password", "/unlock"] {
        let a = app.post_form(path, None, &[("email", PATIENT)]).await;
        let b = app.post_form(path, None, &[("email", "nobody@demo.example")]).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        assert_eq!((a.status, a.body.replace(PATIENT, "")), (b.status, b.body.replace("nobody@demo.example", "")));
    }
}

#[tokio::test]
async fn locked_patient_unlocks_by_form_with_the_emailed_link_and_reset_ends_sessions() {
    let app = TestApp::spawn().await;
    let other_session = app.sign_in(PATIENT).await;
    let me = app.get(&format!("{API}/me"), &other_session).await.expect(StatusCode::OK);
    let patient = app.get(&format!("{API}/patients/{}", me["patient_id"].as_str().expect("id")), &other_session).await;
    let dob = patient.body["date_of_birth"].as_str().expect("a date of birth").to_string();
    for _ in 0..6 {
        app.post_form("/sign-in", None, &sign_in_form(PATIENT, "not the password")).await;
    }
    assert_eq!(
        app.post_form("/sign-in", None, &sign_in_form(PATIENT, PASSWORD)).await.status,
        StatusCode::UNAUTHORIZED
    );
    app.post_form("/unlock", None, &[("email", PATIENT)]).await;
    let email = app.wait_for_email(PATIENT, "Unlock").await;
    let path = link_path(&email, "unlock");
    let form = app.get_page(&path, None).await;
    assert_eq!(form.status, StatusCode::OK);
    let wrong = app.post_form(&path, None, &[("date_of_birth", "1901-01-01")]).await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong.body.contains("3"), "tries left are given");
    app.get(&format!("{API}/me"), &other_session).await.expect_error(StatusCode::UNAUTHORIZED);
    let right = app.post_form(&path, None, &[("date_of_birth", &dob)]).await;
    assert_eq!(right.status, StatusCode::OK, "{}", right.body);
    assert_eq!(app.get_page(&path, None).await.status, StatusCode::GONE, "the link works once");
    let back = app.post_form("/sign-in", None, &sign_in_form(PATIENT, PASSWORD)).await;
    assert_eq!(back.location.as_deref(), Some("/patient"));

    // Reset by email: the link sets a new password and ends every other session.
    let other_session = app.sign_in(PATIENT).await;
    app.post_form("/forgot-password", None, &[("email", PATIENT)]).await;
    let reset = app.wait_for_email(PATIENT, "Reset your").await;
    let path = link_path(&reset, "reset-password");
    assert_eq!(app.get_page(&path, None).await.status, StatusCode::OK);
    let new_password = "a completely new passphrase";
    let done = app.post_form(&path, None, &[("password", new_password), ("confirm", new_password)]).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    app.get(&format!("{API}/me"), &other_session).await.expect_error(StatusCode::UNAUTHORIZED);
    let reused = app
        .post_form(&path, None, &[("password", "yet another passphrase"), ("confirm", "yet another passphrase")])
        .await;
    assert_eq!(reused.status, StatusCode::GONE);
    app.sign_in_with(PATIENT, new_password).await;
}

#[tokio::test]
async fn the_account_api_lists_sessions_and_signs_out_everywhere() {
    let app = TestApp::spawn().await;
    let a = app.sign_in(PATIENT).await;
    let b = app.sign_in(PATIENT).await;
    let listed: Value = app.get(&format!("{API}/account/sessions"), &a).await.expect(StatusCode::OK);
    let rows = listed.as_array().expect("a list");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows.iter().filter(|r| r["current"] == json!(true)).count(), 1);
    let events = app.get(&format!("{API}/account/events"), &a).await.expect(StatusCode::OK);
    assert!(events.as_array().expect("a list").iter().any(|e| e["kind"] == "signed_in"));
    let ended = app
        .client
        .delete(app.url(&format!("{API}/account/sessions?keep_current=true")))
        .bearer_auth(&a)
        .send()
        .await
        .expect("sent");
    assert_eq!(ended.status(), StatusCode::OK);
    app.get(&format!("{API}/me"), &b).await.expect_error(StatusCode::UNAUTHORIZED);
    app.get(&format!("{API}/me"), &a).await.expect(StatusCode::OK);
}

#[tokio::test]
async fn a_manager_unlocks_staff_and_the_pharmacy_lifts_an_identity_lock_by_form() {
    let app = TestApp::spawn().await;
    let pharmacist = app
        .server
        .app
        .store
        .user_by_email(&repeatrx_domain::text::Email::parse(PHARMACIST).expect("email"))
        .await
        .expect("db")
        .expect("user");
    for _ in 0..6 {
        app.post_form("/sign-in", None, &sign_in_form(PHARMACIST, "not the password")).await;
    }
    let manager = app.browser_sign_in("manager@demo.example").await;
    let page = app.get_page("/pharmacy/staff", Some(&manager)).await;
    assert_eq!(page.status, StatusCode::OK);
    let action = format!("/pharmacy/staff/accounts/{}/unlock", pharmacist.id);
    assert!(page.body.contains(&action), "a locked pharmacist has an unlock form");
    let csrf = csrf_of(&page.body);
    let no_reason = app.post_form(&action, Some(&manager), &[("_csrf", &csrf), ("reason", "")]).await;
    assert_eq!(no_reason.status, StatusCode::UNPROCESSABLE_ENTITY);
    let done = app.post_form(&action, Some(&manager), &[("_csrf", &csrf), ("reason", "spoke to Dev in person")]).await;
    assert!(done.status.is_redirection(), "{} {}", done.status, done.body);
    app.browser_sign_in(PHARMACIST).await;

    // A pharmacist cannot see the staff page; another pharmacy's manager cannot unlock Riverside's staff.
    let pharmacist_cookie = app.browser_sign_in(PHARMACIST).await;
    assert_eq!(app.get_page("/pharmacy/staff", Some(&pharmacist_cookie)).await.status, StatusCode::FORBIDDEN);
    let hilltop = app.browser_sign_in("hilltop.manager@demo.example").await;
    let hilltop_page = app.get_page("/pharmacy/staff", Some(&hilltop)).await;
    assert!(!hilltop_page.body.contains(&pharmacist.id.to_string()), "only their own staff are listed");
    let probe = app
        .post_form(&action, Some(&hilltop), &[("_csrf", &csrf_of(&hilltop_page.body)), ("reason", "trying it on")])
        .await;
    assert_eq!(probe.status, StatusCode::NOT_FOUND);

    // The patient locks themselves out for good with four wrong dates of birth.
    let patient_session = app.sign_in(PATIENT).await;
    let me = app.get(&format!("{API}/me"), &patient_session).await.expect(StatusCode::OK);
    let patient_id = me["patient_id"].as_str().expect("id").to_string();
    for _ in 0..6 {
        app.post_form("/sign-in", None, &sign_in_form(PATIENT, "not the password")).await;
    }
    app.post_form("/unlock", None, &[("email", PATIENT)]).await;
    let path = link_path(&app.wait_for_email(PATIENT, "Unlock").await, "unlock");
    for _ in 0..3 {
        assert_eq!(
            app.post_form(&path, None, &[("date_of_birth", "01/01/1901")]).await.status,
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
    assert_eq!(app.post_form(&path, None, &[("date_of_birth", "01/01/1901")]).await.status, StatusCode::FORBIDDEN);

    // The pharmacist sees it on the patient's page and lifts it, saying how identity was checked.
    let patient_page = format!("/pharmacy/patients/{patient_id}");
    let page = app.get_page(&patient_page, Some(&pharmacist_cookie)).await;
    assert!(page.body.contains("Unlock after checking identity"), "the lift form is shown");
    let lift = format!("{patient_page}/unlock");
    let csrf = csrf_of(&page.body);
    assert_eq!(
        app.post_form(&lift, Some(&pharmacist_cookie), &[("_csrf", &csrf), ("reason", "")]).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let other =
        app.post_form(&lift, Some(&hilltop), &[("_csrf", &csrf_of(&hilltop_page.body)), ("reason", "photo ID")]).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND, "another pharmacy cannot");
    let done = app
        .post_form(&lift, Some(&pharmacist_cookie), &[("_csrf", &csrf), ("reason", "photo ID seen at the counter")])
        .await;
    assert!(done.status.is_redirection(), "{} {}", done.status, done.body);
    assert_eq!(
        app.post_form("/sign-in", None, &sign_in_form(PATIENT, PASSWORD)).await.location.as_deref(),
        Some("/patient")
    );
}

#[tokio::test]
async fn a_staff_read_over_https_is_audited_with_its_address() {
    let app = TestApp::spawn().await;
    let patient = app.sign_in(PATIENT).await;
    let me = app.get(&format!("{API}/me"), &patient).await.expect(StatusCode::OK);
    let id = me["patient_id"].as_str().expect("id").to_string();
    let staff = app.sign_in(PHARMACIST).await;
    app.get(&format!("{API}/patients/{id}"), &staff).await.expect(StatusCode::OK);
    let trail = app.server.app.store.audit_entries(0, 100_000).await.expect("trail");
    let read = trail.iter().rev().find(|e| e.record.action == "patient.view_patient").expect("the read is recorded");
    assert_eq!(read.record.patient.map(|p| p.to_string()), Some(id.clone()));
    assert_eq!(read.record.address, "127.0.0.1");
    assert_eq!(read.record.actor_role, Some(repeatrx_domain::access::Role::Pharmacist));
    assert_eq!(app.server.app.verify_audit(|_| {}).await.expect("verified").first_broken, None);

    // The patient sees who it was; staff cannot read the patient's own log (403 at the route).
    let log = app.get(&format!("{API}/patients/{id}/access-log"), &patient).await.expect(StatusCode::OK);
    let first = &log.as_array().expect("a list")[0];
    assert_eq!(first["who"], "Dev Mistry");
    assert_eq!(first["role"], "Pharmacist");
    assert_eq!(first["organisation"], "Riverside Pharmacy");
    assert_eq!(first["what"], "Looked at your record");
    let other = app.sign_in("hilltop.manager@demo.example").await;
    app.get(&format!("{API}/patients/{id}/access-log"), &other).await.expect_error(StatusCode::FORBIDDEN);
}
