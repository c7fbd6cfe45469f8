//! C4: the platform team's pages can have a listener of their own (e.g. loopback only). The
//! public listener then answers "not found" for them, HTML and API alike, whoever asks, while
//! the admin listener serves them; everything else is unchanged on the public listener.
mod common;

use common::{TestApp, API};
use reqwest::StatusCode;

#[tokio::test]
async fn the_public_listener_hides_the_admin_pages_that_the_admin_listener_serves() {
    let options = repeatrx::startup::DemoOptions {
        admin_listen: Some("127.0.0.1:0".parse().expect("address")),
        ..Default::default()
    };
    let app = TestApp::spawn_with(options).await;
    let admin = app.server.admin_url().expect("an admin listener");
    assert_ne!(admin, app.address);
    let operator = app.sign_in("operator@demo.example").await;
    let custodian = app.sign_in("custodian@demo.example").await;

    let get = |base: String, path: &'static str, token: String| {
        let client = app.client.clone();
        async move { client.get(format!("{base}{path}")).bearer_auth(token).send().await.expect("sent") }
    };
    for path in ["/admin", "/admin/accounts", "/custody"] {
        let public = get(app.address.clone(), path, operator.clone()).await;
        assert_eq!(public.status(), StatusCode::NOT_FOUND, "{path} on the public listener");
        assert!(public.headers().contains_key("strict-transport-security"), "security headers still apply");
    }
    let public_api = get(app.address.clone(), "/api/v1/admin/organisations", operator.clone()).await;
    assert_eq!(public_api.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value = public_api.json().await.expect("JSON");
    assert_eq!(body["error"]["status"], 404);
    let custody_api = get(app.address.clone(), "/api/v1/custody/grants", custodian.clone()).await;
    assert_eq!(custody_api.status(), StatusCode::NOT_FOUND);

    // The admin listener serves them (same sessions, same rules).
    let served = get(admin.clone(), "/api/v1/admin/organisations", operator.clone()).await;
    assert_eq!(served.status(), StatusCode::OK);
    let grants = get(admin.clone(), "/api/v1/custody/grants", custodian.clone()).await;
    assert_eq!(grants.status(), StatusCode::OK);
    let page = get(admin.clone(), "/admin", operator.clone()).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(get(admin, "/api/v1/admin/organisations", custodian).await.status(), StatusCode::FORBIDDEN);

    // Platform accounts reach nothing else on the public listener either, not even their own
    // account pages or the staff API; on the admin listener they do.
    for path in ["/api/v1/staff", "/api/v1/me", "/account"] {
        let public = get(app.address.clone(), path, operator.clone()).await;
        assert_eq!(public.status(), StatusCode::NOT_FOUND, "{path} for an operator on the public listener");
    }
    assert_eq!(
        get(app.server.admin_url().expect("admin"), "/api/v1/staff", operator.clone()).await.status(),
        StatusCode::OK
    );

    // The rest of the service is where it was.
    let patient = app.sign_in("patient@demo.example").await;
    app.get(&format!("{API}/me"), &patient).await.expect(StatusCode::OK);
    let manager = app.sign_in("manager@demo.example").await;
    app.get(&format!("{API}/staff"), &manager).await.expect(StatusCode::OK);
    assert_eq!(app.get_page("/sign-in", None).await.status, StatusCode::OK);
}
