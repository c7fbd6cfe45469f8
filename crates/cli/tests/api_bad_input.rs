//! What the API does with bad input, strangers' ids, missing credentials and cross-site requests:
//! a JSON error with the right status every time, and nothing changed.
mod common;

use common::{TestApp, API};
use repeatrx_web::session::SESSION_COOKIE;
use reqwest::header::{AUTHORIZATION, COOKIE, ORIGIN, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use serde_json::{json, Value};

const UNKNOWN_ID: &str = "8a6e0f0e-6a8f-4b5e-9d6c-3c2b1a000000";

#[tokio::test]
async fn malformed_bodies_get_json_errors_with_the_right_status() {
    let app = TestApp::spawn().await;
    let patient = app.sign_in("patient@demo.example").await;
    let pid = app.my_patient_id(&patient).await;
    let orders = format!("{API}/patients/{pid}/orders");
    let before = app.orders_of(&pid, &patient).await.len();

    let message = app
        .post_raw(&orders, &patient, "application/json", r#"{"items": ["#)
        .await
        .expect_error(StatusCode::BAD_REQUEST);
    assert!(!message.is_empty());
    app.post_raw(&orders, &patient, "text/plain", r#"{"items": [], "fulfilment": "collection"}"#)
        .await
        .expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let message =
        app.post_json(&orders, &patient, &json!({"items": []})).await.expect_error(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(message.contains("fulfilment"), "names the missing field: {message}");
    app.post_json(&orders, &patient, &json!({"items": [], "fulfilment": "teleport"}))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY);
    let message = app
        .post_json(&orders, &patient, &json!({"items": [], "fulfilment": "delivery"}))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(message.contains("choose at least one item"), "{message}");

    // Over 64 KiB is refused before any handler runs.
    let huge = json!({"items": [], "fulfilment": "collection", "note": "x".repeat(70 * 1024)}).to_string();
    app.post_raw(&orders, &patient, "application/json", huge).await.expect_error(StatusCode::PAYLOAD_TOO_LARGE);

    // Unknown query values and stages are 422 with a sentence.
    let pharmacist = app.sign_in("pharmacist@demo.example").await;
    let message = app
        .get(&format!("{API}/pharmacy/queue?stage=lost"), &pharmacist)
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(message.contains("'lost' is not an order status"), "{message}");
    app.get(&format!("{API}/pharmacy/queue?page=first"), &pharmacist)
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY);
    app.get(&format!("{API}/pharmacy/patients?dob=yesterday"), &pharmacist)
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY);

    // A step that does not exist, and a decision without its reason.
    let queue =
        app.get(&format!("{API}/pharmacy/queue?stage=with_prescriber"), &pharmacist).await.expect(StatusCode::OK);
    let row = &queue["rows"][0]["order"];
    let (order, item) =
        (row["id"].as_str().expect("a demo order with the prescriber"), row["items"][0]["id"].as_str().expect("item"));
    let message = app
        .post_json(&format!("{API}/orders/{order}/items/{item}/steps"), &pharmacist, &json!({"step": "teleport"}))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(message.contains("not a known step"), "{message}");
    let prescriber = app.sign_in("prescriber@demo.example").await;
    let decide = format!("{API}/orders/{order}/items/{item}/decision");
    let message = app
        .post_json(&decide, &prescriber, &json!({"decision": "reject"}))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(message.contains("reason"), "{message}");
    app.post_json(&decide, &prescriber, &json!({"decision": "maybe"}))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY);

    assert_eq!(app.orders_of(&pid, &patient).await.len(), before, "no bad request created an order");
    let unknown = app.get(&format!("{API}/no/such/endpoint"), &patient).await.expect_error(StatusCode::NOT_FOUND);
    assert!(unknown.contains("no such API endpoint"));
}

#[tokio::test]
async fn unknown_and_garbage_ids_are_not_found() {
    let app = TestApp::spawn().await;
    let pharmacist = app.sign_in("pharmacist@demo.example").await;
    for id in [UNKNOWN_ID, "not-an-id", "1;%20DROP%20TABLE%20orders"] {
        let message = app.get(&format!("{API}/orders/{id}"), &pharmacist).await.expect_error(StatusCode::NOT_FOUND);
        assert_eq!(message, "order not found");
        app.post_json(&format!("{API}/orders/{id}/accept"), &pharmacist, &json!({}))
            .await
            .expect_error(StatusCode::NOT_FOUND);
        let message = app.get(&format!("{API}/patients/{id}"), &pharmacist).await.expect_error(StatusCode::NOT_FOUND);
        assert_eq!(message, "patient not found");
        app.get(&format!("{API}/patients/{id}/repeat-items"), &pharmacist).await.expect_error(StatusCode::NOT_FOUND);
        let message = app
            .post_json(&format!("{API}/repeat-items/{id}/stop"), &pharmacist, &json!({}))
            .await
            .expect_error(StatusCode::NOT_FOUND);
        assert_eq!(message, "repeat item not found");
    }
    // Not even UTF-8.
    app.get(&format!("{API}/orders/%FF%FE"), &pharmacist).await.expect_error(StatusCode::NOT_FOUND);
    app.post_json(&format!("{API}/patients/%C0/orders"), &pharmacist, &json!({}))
        .await
        .expect_error(StatusCode::NOT_FOUND);
    // A real order with an item that is not on it.
    let queue = app.get(&format!("{API}/pharmacy/queue?stage=preparing"), &pharmacist).await.expect(StatusCode::OK);
    let order = queue["rows"][0]["order"]["id"].as_str().expect("a demo order being prepared").to_string();
    let message = app
        .post_json(
            &format!("{API}/orders/{order}/items/garbage/steps"),
            &pharmacist,
            &json!({"step": "ready_to_collect"}),
        )
        .await
        .expect_error(StatusCode::NOT_FOUND);
    assert_eq!(message, "order item not found");
    // An item id that is well formed but not on the order is refused and changes nothing.
    let before = app.order(&order, &pharmacist).await;
    app.post_json(
        &format!("{API}/orders/{order}/items/{UNKNOWN_ID}/steps"),
        &pharmacist,
        &json!({"step": "ready_to_collect"}),
    )
    .await
    .expect_error(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.order(&order, &pharmacist).await, before);
}

/// Finds (creating if need be) an order of the demo's second pharmacy, Hilltop Chemist.
async fn hilltop_order(app: &TestApp, manager: &str) -> (String, String, String) {
    let (patient, item) = app.patient_with_orderable_item(manager).await;
    let order = app.place_order(&patient, manager, &[&item]).await.expect(StatusCode::CREATED);
    (patient, item, order["id"].as_str().expect("id").to_string())
}

#[tokio::test]
async fn another_pharmacys_orders_and_patients_are_not_found_and_stay_unchanged() {
    let app = TestApp::spawn().await;
    let hilltop = app.sign_in("hilltop.manager@demo.example").await;
    let (patient, item, order) = hilltop_order(&app, &hilltop).await;
    let order_before = app.order(&order, &hilltop).await;
    let list_before = app.repeat_items(&patient, &hilltop).await;
    let details_before = app.get(&format!("{API}/patients/{patient}"), &hilltop).await.expect(StatusCode::OK);

    let riverside = app.sign_in("pharmacist@demo.example").await;
    let queue = app.get(&format!("{API}/pharmacy/queue"), &riverside).await.expect(StatusCode::OK);
    assert!(
        queue["rows"].as_array().expect("rows").iter().all(|r| r["order"]["id"] != json!(order)),
        "not in another pharmacy's queue"
    );
    let search = app.get(&format!("{API}/pharmacy/patients"), &riverside).await.expect(StatusCode::OK);
    assert!(search.as_array().expect("list").iter().all(|p| p["id"] != json!(patient)));

    let order_item = order_before["items"][0]["id"].as_str().expect("item");
    let empty = json!({});
    let terms = json!({"drug_name": "X", "strength": "1mg", "form": "tablets", "quantity": 1, "directions": "d", "cycle_days": 28, "issues": 1, "review_date": "2099-01-01"});
    let get_paths = [
        format!("{API}/orders/{order}"),
        format!("{API}/patients/{patient}"),
        format!("{API}/patients/{patient}/repeat-items"),
        format!("{API}/patients/{patient}/orders"),
    ];
    for path in &get_paths {
        app.get(path, &riverside).await.expect_error(StatusCode::NOT_FOUND);
    }
    let posts: [(String, Value); 8] = [
        (format!("{API}/orders/{order}/accept"), empty.clone()),
        (format!("{API}/orders/{order}/cancel"), empty.clone()),
        (format!("{API}/orders/{order}/send-to-prescriber"), empty.clone()),
        (format!("{API}/orders/{order}/items/{order_item}/steps"), json!({"step": "ready_to_collect"})),
        (format!("{API}/orders/{order}/items/{order_item}/decision"), json!({"decision": "approve"})),
        (format!("{API}/patients/{patient}/orders"), json!({"items": [item], "fulfilment": "collection"})),
        (format!("{API}/patients/{patient}/repeat-items"), terms),
        (format!("{API}/repeat-items/{item}/stop"), empty.clone()),
    ];
    for (path, body) in &posts {
        app.post_json(path, &riverside, body).await.expect_error(StatusCode::NOT_FOUND);
    }
    // Riverside's prescriber cannot reach it either.
    let prescriber = app.sign_in("prescriber@demo.example").await;
    app.get(&format!("{API}/orders/{order}"), &prescriber).await.expect_error(StatusCode::NOT_FOUND);

    // Re-read as its owner: nothing changed.
    assert_eq!(app.order(&order, &hilltop).await, order_before);
    assert_eq!(app.repeat_items(&patient, &hilltop).await, list_before);
    assert_eq!(app.get(&format!("{API}/patients/{patient}"), &hilltop).await.expect(StatusCode::OK), details_before);
    assert_eq!(order_before["stage"], "submitted");
    assert_eq!(order_before["transitions"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_patient_reaches_only_their_own_record() {
    let app = TestApp::spawn().await;
    let pharmacist = app.sign_in("pharmacist@demo.example").await;
    let (other, item) = app.patient_with_orderable_item(&pharmacist).await;
    let patient = app.sign_in("patient@demo.example").await;
    let me = app.my_patient_id(&patient).await;
    let (other, item) = if other == me {
        // Use a different neighbour: anyone else at the pharmacy.
        let all = app.get(&format!("{API}/pharmacy/patients"), &pharmacist).await.expect(StatusCode::OK);
        let id = all
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|p| p["id"].as_str())
            .find(|id| *id != me)
            .expect("another patient")
            .to_string();
        (id, item)
    } else {
        (other, item)
    };
    let their_order =
        app.orders_of(&other, &pharmacist).await.first().map(|o| o["id"].as_str().unwrap_or_default().to_string());
    let before = app.orders_of(&other, &pharmacist).await;

    for path in [
        format!("{API}/patients/{other}"),
        format!("{API}/patients/{other}/repeat-items"),
        format!("{API}/patients/{other}/orders"),
    ] {
        let message = app.get(&path, &patient).await.expect_error(StatusCode::NOT_FOUND);
        assert_eq!(message, "patient not found");
    }
    app.post_json(
        &format!("{API}/patients/{other}/orders"),
        &patient,
        &json!({"items": [item], "fulfilment": "collection"}),
    )
    .await
    .expect_error(StatusCode::NOT_FOUND);
    if let Some(order) = their_order {
        app.get(&format!("{API}/orders/{order}"), &patient).await.expect_error(StatusCode::NOT_FOUND);
        app.post_json(&format!("{API}/orders/{order}/cancel"), &patient, &json!({}))
            .await
            .expect_error(StatusCode::NOT_FOUND);
    }
    assert_eq!(app.orders_of(&other, &pharmacist).await, before, "nothing changed");

    // Staff-only endpoints refuse patients outright.
    app.get(&format!("{API}/catalogue?q=atorvastatin"), &patient).await.expect_error(StatusCode::FORBIDDEN);
    app.get(&format!("{API}/pharmacy/queue"), &patient).await.expect_error(StatusCode::FORBIDDEN);
    app.get(&format!("{API}/practices"), &patient).await.expect_error(StatusCode::FORBIDDEN);
    app.get(&format!("{API}/admin/organisations"), &patient).await.expect_error(StatusCode::FORBIDDEN);
    app.get(&format!("{API}/admin/organisations"), &pharmacist).await.expect_error(StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_receptionist_cannot_decide_and_a_pharmacy_cannot_decide_for_a_practice_on_repeatrx() {
    let app = TestApp::spawn().await;
    let receptionist = app.sign_in("receptionist@demo.example").await;
    let requests = app.get(&format!("{API}/practice/requests"), &receptionist).await.expect(StatusCode::OK);
    let row = requests
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["order"]["stage"] == "with_prescriber")
        .expect("a demo request")
        .clone();
    let order = row["order"]["id"].as_str().expect("id");
    let item = row["order"]["items"][0]["id"].as_str().expect("item");
    let decide = format!("{API}/orders/{order}/items/{item}/decision");
    let practice = row["order"]["practice_id"].clone();

    app.post_json(&decide, &receptionist, &json!({"decision": "approve"})).await.expect_error(StatusCode::FORBIDDEN);
    let pharmacist = app.sign_in("pharmacist@demo.example").await;
    let before = app.order(order, &pharmacist).await;
    let practices = app.get(&format!("{API}/practices"), &pharmacist).await.expect(StatusCode::OK);
    let on_repeatrx =
        practices.as_array().expect("list").iter().find(|p| p["id"] == practice).map(|p| p["on_repeatrx"] == true);
    if on_repeatrx == Some(true) {
        let message = app
            .post_json(&decide, &pharmacist, &json!({"decision": "approve"}))
            .await
            .expect_error(StatusCode::CONFLICT);
        assert!(message.contains("prescriber records the decision"), "{message}");
    }
    assert_eq!(app.order(order, &pharmacist).await, before, "nothing changed");
    assert_eq!(before["items"][0]["state"], "with_prescriber");
}

#[tokio::test]
async fn credentials_are_required_and_cross_site_or_unprotected_cookie_posts_are_refused() {
    let app = TestApp::spawn().await;

    // No token, or a made-up one: 401 with a JSON body.
    let reply = app.get_anon(&format!("{API}/me")).await;
    assert_eq!(reply.headers.get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()), Some("Bearer"));
    assert_eq!(reply.expect_error(StatusCode::UNAUTHORIZED), "please sign in");
    app.get(&format!("{API}/pharmacy/queue"), "made-up-token").await.expect_error(StatusCode::UNAUTHORIZED);
    app.post_json_anon(&format!("{API}/orders/{UNKNOWN_ID}/cancel"), &json!({}))
        .await
        .expect_error(StatusCode::UNAUTHORIZED);
    let message = app
        .post_json_anon(
            &format!("{API}/sessions"),
            &json!({"email": "patient@demo.example", "password": "wrong password!"}),
        )
        .await
        .expect_error(StatusCode::UNAUTHORIZED);
    assert_eq!(message, "the email address or password is not right, or the account is locked");

    let patient = app.sign_in("patient@demo.example").await;
    let pid = app.my_patient_id(&patient).await;
    let orderable = common::with_status(&app.repeat_items(&pid, &patient).await, "orderable")
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>();
    let body = json!({"items": [orderable[0]], "fulfilment": "collection"});
    let orders = format!("{API}/patients/{pid}/orders");
    let before = app.orders_of(&pid, &patient).await.len();

    // The same session as a browser cookie: a POST without the CSRF token is refused.
    let cookie = format!("{SESSION_COOKIE}={patient}");
    let resp = app.client.post(app.url(&orders)).header(COOKIE, &cookie).json(&body).send().await.expect("sent");
    let message = common::Reply::read(resp).await.expect_error(StatusCode::FORBIDDEN);
    assert!(message.contains("expired"), "{message}");
    // ...while reading with the cookie works.
    let resp = app.client.get(app.url(&format!("{API}/me"))).header(COOKIE, &cookie).send().await.expect("sent");
    common::Reply::read(resp).await.expect(StatusCode::OK);

    // A POST from another site is refused even with a valid bearer token.
    let resp = app
        .client
        .post(app.url(&orders))
        .header(AUTHORIZATION, format!("Bearer {patient}"))
        .header(ORIGIN, "https://evil.example")
        .json(&body)
        .send()
        .await
        .expect("sent");
    let message = common::Reply::read(resp).await.expect_error(StatusCode::FORBIDDEN);
    assert!(message.contains("cross-site"), "{message}");
    let resp = app
        .client
        .post(app.url(&orders))
        .bearer_auth(&patient)
        .header("sec-fetch-site", "cross-site")
        .json(&body)
        .send()
        .await
        .expect("sent");
    common::Reply::read(resp).await.expect_error(StatusCode::FORBIDDEN);
    assert_eq!(app.orders_of(&pid, &patient).await.len(), before, "no refused request ordered anything");

    // Signing out ends the token at once.
    let resp = app.client.delete(app.url(&format!("{API}/sessions"))).bearer_auth(&patient).send().await.expect("sent");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    app.get(&format!("{API}/me"), &patient).await.expect_error(StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn health_check_and_security_headers_on_api_and_html() {
    let app = TestApp::spawn().await;
    let resp = app.client.get(app.url("/healthz")).send().await.expect("sent");
    assert_eq!(resp.status(), StatusCode::OK);

    let token = app.sign_in("pharmacist@demo.example").await;
    let api = app.get(&format!("{API}/pharmacy/queue"), &token).await;
    let anon = app.get_anon(&format!("{API}/me")).await;
    let html = app.client.get(app.url("/sign-in")).send().await.expect("sent");
    assert!(html
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/html")));
    for headers in [&api.headers, &anon.headers, html.headers()] {
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        assert!(get("content-security-policy").contains("frame-ancestors 'none'"), "CSP: {headers:?}");
        assert!(get("content-security-policy").contains("default-src 'self'"));
        assert!(get("strict-transport-security").contains("max-age="), "HSTS");
        assert_eq!(get("x-content-type-options"), "nosniff");
        assert_eq!(get("cache-control"), "no-store");
    }
    assert!(api
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json")));
}
