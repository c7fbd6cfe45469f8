//! Managers look after their organisation's accounts, through the real server over HTTPS: an
//! invitation by email that the colleague accepts by choosing a password, role changes that apply
//! at once, suspension that ends sessions, reinstatement; operators and the custodian cap. Every
//! act is in the audit trail.
mod common;

use common::{csrf_of, link_path, TestApp, API};
use reqwest::StatusCode;
use serde_json::json;

const NEW_PASSWORD: &str = "otter lantern quietly 42";

async fn audit_actions(app: &TestApp) -> Vec<String> {
    let entries = app.server.app.store.audit_entries(0, 10_000).await.expect("audit");
    entries.into_iter().map(|e| e.record.action).collect()
}

#[tokio::test]
async fn a_manager_invites_a_colleague_who_chooses_a_password_and_signs_in() {
    let app = TestApp::spawn().await;
    let manager = app.sign_in("manager@demo.example").await;

    // Refusals first: a role this manager cannot give, a bad address, a taken address.
    let wrong_role = app
        .post_json(
            &format!("{API}/staff"),
            &manager,
            &json!({"name": "Pat Lee", "email": "pat@demo.example", "role": "prescriber"}),
        )
        .await
        .expect_error_body(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong_role.to_string().contains("role: choose one of"), "{wrong_role}");
    let taken = app
        .post_json(
            &format!("{API}/staff"),
            &manager,
            &json!({"name": "Pat Lee", "email": "pharmacist@demo.example", "role": "dispenser"}),
        )
        .await
        .expect_error_body(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(taken.to_string().contains("already has a RepeatRx account"), "{taken}");

    let invited = app
        .post_json(
            &format!("{API}/staff"),
            &manager,
            &json!({"name": "Pat Lee", "email": "pat.lee@demo.example", "role": "dispenser"}),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(invited["role"], "dispenser");
    assert_eq!(invited["invited"], true);
    let id = invited["id"].as_str().expect("id").to_string();

    // Before choosing a password the account cannot sign in with anything.
    app.post_json_anon(&format!("{API}/sessions"), &json!({"email": "pat.lee@demo.example", "password": "!invited"}))
        .await
        .expect_error(StatusCode::UNAUTHORIZED);

    let email = app.wait_for_email("pat.lee@demo.example", "invited").await;
    assert!(
        email.body.contains("Sam Okafor has invited you to RepeatRx as dispenser at Riverside Pharmacy"),
        "{}",
        email.body
    );
    let link = link_path(&email, "invitation");
    let page = app.get_page(&link, None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Welcome to RepeatRx, Pat Lee"));
    assert!(page.body.contains("data-strength=\"staff\""));

    let short = app.post_form(&link, None, &[("password", "short"), ("confirm", "short")]).await;
    assert_eq!(short.status, StatusCode::UNPROCESSABLE_ENTITY);
    let differ = app.post_form(&link, None, &[("password", NEW_PASSWORD), ("confirm", "something else")]).await;
    assert_eq!(differ.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(differ.body.contains("not the same"));
    let done = app.post_form(&link, None, &[("password", NEW_PASSWORD), ("confirm", NEW_PASSWORD)]).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.body.contains("Your password is set"));
    assert_eq!(app.get_page(&link, None).await.status, StatusCode::GONE, "the link works once");

    // First sign-in: staff must set up an authenticator app (the harness does it).
    let started = app
        .post_json_anon(&format!("{API}/sessions"), &json!({"email": "pat.lee@demo.example", "password": NEW_PASSWORD}))
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(started["stage"], "enrol");
    let pat = app.sign_in_with("pat.lee@demo.example", NEW_PASSWORD).await;
    let me = app.get(&format!("{API}/me"), &pat).await.expect(StatusCode::OK);
    assert_eq!(me["role"], "dispenser");
    let listed = app.get(&format!("{API}/staff"), &manager).await.expect(StatusCode::OK);
    let row = listed.as_array().expect("list").iter().find(|a| a["id"] == json!(id)).expect("listed").clone();
    assert_eq!(row["invited"], false);
    assert_eq!(row["second_factor"], true);

    let actions = audit_actions(&app).await;
    assert!(actions.contains(&"account.invite".to_string()));
    assert!(actions.contains(&"account.invitation_accepted".to_string()));
}

#[tokio::test]
async fn roles_change_at_once_and_suspension_ends_sessions_until_reinstated() {
    let app = TestApp::spawn().await;
    let manager = app.sign_in("manager@demo.example").await;
    let counter = app.sign_in("counter@demo.example").await;
    let staff = app.get(&format!("{API}/staff"), &manager).await.expect(StatusCode::OK);
    let find = |email: &str| {
        staff.as_array().expect("list").iter().find(|a| a["email"] == json!(email)).expect("listed")["id"]
            .as_str()
            .expect("id")
            .to_string()
    };
    let counter_id = find("counter@demo.example");
    let manager_id = find("manager@demo.example");
    let path = format!("{API}/staff/{counter_id}");

    // A counter assistant cannot accept orders; made a dispenser, the same session can.
    let me = app.get(&format!("{API}/me"), &counter).await.expect(StatusCode::OK);
    assert_eq!(me["role"], "counter_assistant");
    let changed = app.patch_json(&path, &manager, &json!({"role": "dispenser"})).await.expect(StatusCode::OK);
    assert_eq!(changed["role"], "dispenser");
    let me = app.get(&format!("{API}/me"), &counter).await.expect(StatusCode::OK);
    assert_eq!(me["role"], "dispenser");

    // Nobody changes their own account; the other pharmacy's manager cannot even see this one.
    app.patch_json(&format!("{API}/staff/{manager_id}"), &manager, &json!({"role": "pharmacist"}))
        .await
        .expect_error(StatusCode::CONFLICT);
    let hilltop = app.sign_in("hilltop.manager@demo.example").await;
    app.patch_json(&path, &hilltop, &json!({"active": false, "reason": "not mine"}))
        .await
        .expect_error(StatusCode::NOT_FOUND);
    let pharmacist = app.sign_in("pharmacist@demo.example").await;
    app.patch_json(&path, &pharmacist, &json!({"role": "pharmacist"})).await.expect_error(StatusCode::FORBIDDEN);

    // Suspension needs a reason, ends the session at once and refuses sign-in.
    app.patch_json(&path, &manager, &json!({"active": false})).await.expect_error(StatusCode::UNPROCESSABLE_ENTITY);
    let suspended = app
        .patch_json(&path, &manager, &json!({"active": false, "reason": "left the pharmacy"}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(suspended["active"], false);
    assert_eq!(suspended["can_reinstate"], true);
    app.get(&format!("{API}/me"), &counter).await.expect_error(StatusCode::UNAUTHORIZED);
    app.post_json_anon(
        &format!("{API}/sessions"),
        &json!({"email": "counter@demo.example", "password": repeatrx_app::demo::DEMO_PASSWORD}),
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED);

    let back = app.patch_json(&path, &manager, &json!({"active": true})).await.expect(StatusCode::OK);
    assert_eq!(back["active"], true);
    let again = app.sign_in("counter@demo.example").await;
    app.get(&format!("{API}/me"), &again).await.expect(StatusCode::OK);

    let actions = audit_actions(&app).await;
    for action in ["account.role", "account.suspend", "account.reinstate"] {
        assert!(actions.contains(&action.to_string()), "{action} is audited");
    }
}

#[tokio::test]
async fn at_most_two_custodians_can_exist() {
    let app = TestApp::spawn().await;
    let operator = app.sign_in("operator@demo.example").await;
    let invite = |n: u32, role: &str| json!({"name": format!("Platform person {n}"), "email": format!("platform{n}@demo.example"), "role": role});
    let count = || async {
        app.server.app.store.count_users_with_role(repeatrx_domain::access::Role::Custodian).await.expect("count")
    };
    assert_eq!(count().await, 2, "the demo has its two custodians");
    let third = app.post_json(&format!("{API}/staff"), &operator, &invite(1, "custodian")).await;
    let message = third.expect_error(StatusCode::CONFLICT);
    assert!(message.contains("at most 2 live-data custodian"), "{message}");

    // Nor can an operator be turned into a third.
    let op =
        app.post_json(&format!("{API}/staff"), &operator, &invite(2, "operator")).await.expect(StatusCode::CREATED);
    let op_id = op["id"].as_str().expect("id").to_string();
    app.patch_json(&format!("{API}/staff/{op_id}"), &operator, &json!({"role": "custodian"}))
        .await
        .expect_error(StatusCode::CONFLICT);
    assert_eq!(count().await, 2);

    // Once one custodian becomes an operator, there is room for one more.
    let staff = app.get(&format!("{API}/staff"), &operator).await.expect(StatusCode::OK);
    let casey =
        staff.as_array().expect("list").iter().find(|a| a["email"] == "custodian@demo.example").expect("listed");
    let casey_id = casey["id"].as_str().expect("id");
    app.patch_json(&format!("{API}/staff/{casey_id}"), &operator, &json!({"role": "operator"}))
        .await
        .expect(StatusCode::OK);
    app.patch_json(&format!("{API}/staff/{op_id}"), &operator, &json!({"role": "custodian"}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(count().await, 2);
    app.post_json(&format!("{API}/staff"), &operator, &invite(3, "custodian")).await.expect_error(StatusCode::CONFLICT);

    // Operators give no organisation roles.
    app.post_json(&format!("{API}/staff"), &operator, &invite(4, "pharmacist"))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn the_staff_page_invites_changes_roles_and_suspends_by_form() {
    let app = TestApp::spawn().await;
    let manager = app.browser_sign_in("practice.manager@demo.example").await;
    let page = app.get_page("/practice/staff", Some(&manager)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Invite a colleague"));
    assert!(page.body.contains("<option value=\"receptionist\""));
    assert!(!page.body.contains("<option value=\"pharmacist\""), "only the practice's roles are offered");
    let csrf = csrf_of(&page.body);

    let bad = app
        .post_form(
            "/practice/staff",
            Some(&manager),
            &[("_csrf", &csrf), ("name", ""), ("email", "nope"), ("role", "receptionist")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("href=\"#invite-name\""), "problems link to their fields");
    assert!(bad.body.contains("value=\"nope\""), "what was typed is kept");

    let sent = app
        .post_form(
            "/practice/staff",
            Some(&manager),
            &[("_csrf", &csrf), ("name", "Ria Shah"), ("email", "ria.shah@demo.example"), ("role", "receptionist")],
        )
        .await;
    assert_eq!(sent.location.as_deref(), Some("/practice/staff?notice=invited"), "{}", sent.body);
    let email = app.wait_for_email("ria.shah@demo.example", "invited").await;
    assert!(email.body.contains("as receptionist at Riverside Surgery"));

    let receptionist = app
        .server
        .app
        .store
        .user_by_email(&repeatrx_domain::text::Email::parse("receptionist@demo.example").expect("email"))
        .await
        .expect("db")
        .expect("user");
    let role_path = format!("/practice/staff/accounts/{}/role", receptionist.id);
    let page = app.get_page("/practice/staff", Some(&manager)).await;
    assert!(page.body.contains(&role_path));
    let moved = app.post_form(&role_path, Some(&manager), &[("_csrf", &csrf), ("role", "prescriber")]).await;
    assert_eq!(moved.location.as_deref(), Some("/practice/staff?notice=role"));
    let user = app.server.app.store.user(receptionist.id).await.expect("db").expect("user");
    assert_eq!(user.role, repeatrx_domain::access::Role::Prescriber);

    let suspend_path = format!("/practice/staff/accounts/{}/suspend", receptionist.id);
    let no_reason = app.post_form(&suspend_path, Some(&manager), &[("_csrf", &csrf), ("reason", "")]).await;
    assert_eq!(no_reason.status, StatusCode::UNPROCESSABLE_ENTITY);
    let suspended =
        app.post_form(&suspend_path, Some(&manager), &[("_csrf", &csrf), ("reason", "on long leave")]).await;
    assert_eq!(suspended.location.as_deref(), Some("/practice/staff?notice=suspended"));
    let page = app.get_page("/practice/staff?notice=suspended", Some(&manager)).await;
    assert!(page.body.contains("The account is suspended"));
    assert!(page.body.contains(&format!("/practice/staff/accounts/{}/reinstate", receptionist.id)));

    // A pharmacy manager's session cannot use the practice's page at all.
    let pharmacy_manager = app.browser_sign_in("manager@demo.example").await;
    assert_eq!(app.get_page("/practice/staff", Some(&pharmacy_manager)).await.status, StatusCode::FORBIDDEN);
}
