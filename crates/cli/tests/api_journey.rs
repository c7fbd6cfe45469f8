//! The repeat-prescription journey through the JSON API, on the real server over HTTPS: a patient
//! orders, the pharmacy works the order, the prescriber decides, the patient collects; with the
//! refusals, cancellations, emails and onboarding along the way.
mod common;

use common::{reasons, with_status, TestApp, API};
use repeatrx_app::demo::DEMO_TOTP_SECRET;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn item_of<'a>(order: &'a Value, order_item_id: &str) -> &'a Value {
    order["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["id"] == json!(order_item_id))
        .expect("the item is on the order")
}

fn line<'a>(items: &'a [Value], id: &str) -> &'a Value {
    items.iter().find(|i| i["id"] == json!(id)).expect("the repeat item is listed")
}

#[tokio::test]
async fn a_repeat_order_goes_from_patient_to_pharmacy_to_prescriber_and_back() {
    let app = TestApp::spawn().await;
    let patient = app.sign_in("patient@demo.example").await;
    let pid = app.my_patient_id(&patient).await;

    // The repeat list says what can be ordered now, and why not.
    let items = app.repeat_items(&pid, &patient).await;
    let orderable = with_status(&items, "orderable");
    assert!(orderable.len() >= 2, "the demo patient has two items to order: {items:?}");
    for i in &items {
        assert_eq!(i["orderable"] == json!(true), i["status"] == json!("orderable"));
        assert!(!i["reason"].as_str().unwrap_or("").is_empty());
        assert!(i["review_date"].as_str().is_some_and(|d| d.len() == 10));
        assert!(i["free_text"].is_boolean() && i["controlled_schedule"].is_u64() && i["issues_remaining"].is_u64());
    }
    let too_early = with_status(&items, "too_early");
    assert!(line(&items, too_early[0])["opens_on"].as_str().is_some(), "a too-early item says when it opens");
    let (first, second) = (orderable[0].to_string(), orderable[1].to_string());
    let before = line(&items, &first).clone();
    let orders_before = app.orders_of(&pid, &patient).await.len();

    // Refused items: too early, review due, controlled. Nothing is ordered, each reason is given.
    for status in ["too_early", "review_due", "controlled"] {
        let refused = with_status(&items, status);
        assert!(!refused.is_empty(), "the demo list has an item that is {status}");
        let reply = app.place_order(&pid, &patient, &[refused[0], &first]).await;
        let body = reply.body.clone();
        reply.expect_error(StatusCode::CONFLICT);
        let why = reasons(&body);
        assert_eq!(why.len(), 1, "{body}");
        let description = line(&items, refused[0])["description"].as_str().unwrap_or_default();
        assert!(why[0].contains(description), "the reason names the item: {why:?}");
    }
    // An item that is not on the patient's list is not found (the order reads only the lines it
    // names); nothing is ordered.
    let unknown = repeatrx_domain::ids::RepeatItemId::new().to_string();
    app.place_order(&pid, &patient, &[&first, &unknown]).await.expect_error(StatusCode::NOT_FOUND);
    assert_eq!(app.orders_of(&pid, &patient).await.len(), orders_before, "a refused order creates nothing");

    // The patient orders two items for collection.
    let order = app.place_order(&pid, &patient, &[&first, &second]).await.expect(StatusCode::CREATED);
    let order_id = order["id"].as_str().expect("id").to_string();
    assert_eq!(order["stage"], "submitted");
    assert_eq!(order["fulfilment"], "collection");
    assert_eq!(order["on_behalf"], false);
    assert_eq!(order["items"].as_array().map(Vec::len), Some(2));
    let created_at = order["created_at"].as_str().expect("created_at");
    assert!(created_at.parse::<jiff::Timestamp>().is_ok() && created_at.ends_with('Z'), "RFC 3339 UTC: {created_at}");

    // An item already on an open order cannot be ordered again.
    let reply = app.place_order(&pid, &patient, &[&first]).await;
    let body = reply.body.clone();
    reply.expect_error(StatusCode::CONFLICT);
    assert!(reasons(&body)[0].contains("Already on an order"), "{body}");
    assert_eq!(app.orders_of(&pid, &patient).await.len(), orders_before + 1);
    let listed = app.repeat_items(&pid, &patient).await;
    assert_eq!(line(&listed, &first)["status"], "on_open_order");

    // The pharmacist sees it in the queue, accepts it and sends it to the prescriber.
    let pharmacist = app.sign_in("pharmacist@demo.example").await;
    let queue = app.get(&format!("{API}/pharmacy/queue?stage=submitted"), &pharmacist).await.expect(StatusCode::OK);
    let row = queue["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["order"]["id"] == json!(order_id))
        .expect("the order is queued")
        .clone();
    assert_eq!(row["order"]["stage"], "submitted");
    assert_eq!(row["patient"]["name"], "Ann Jones");
    assert_eq!(row["patient"]["nhs_number"].as_str().map(str::len), Some(10));
    assert!(row["overdue"].is_boolean());
    let submitted = queue["counts"]
        .as_array()
        .expect("counts")
        .iter()
        .find(|c| c["stage"] == "submitted")
        .expect("a count per stage");
    assert!(submitted["count"].as_i64() >= Some(1));
    let by_name = app.get(&format!("{API}/pharmacy/queue?name=Ann"), &pharmacist).await.expect(StatusCode::OK);
    assert!(by_name["rows"].as_array().expect("rows").iter().any(|r| r["order"]["id"] == json!(order_id)));

    let accepted =
        app.post_json(&format!("{API}/orders/{order_id}/accept"), &pharmacist, &json!({})).await.expect(StatusCode::OK);
    assert_eq!(accepted["stage"], "in_review");
    let sent = app
        .post_json(&format!("{API}/orders/{order_id}/send-to-prescriber"), &pharmacist, &json!({}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(sent["stage"], "with_prescriber");
    let approve_item = sent["items"][0]["id"].as_str().expect("id").to_string();
    let reject_item = sent["items"][1]["id"].as_str().expect("id").to_string();
    let approve_line = sent["items"][0]["repeat_item_id"].as_str().expect("id").to_string();
    let reject_line = sent["items"][1]["repeat_item_id"].as_str().expect("id").to_string();
    let approve_before = if approve_line == first { before.clone() } else { line(&items, &approve_line).clone() };

    // The prescriber (the practice is on RepeatRx) approves one item and rejects the other.
    let prescriber = app.sign_in("prescriber@demo.example").await;
    let requests = app.get(&format!("{API}/practice/requests"), &prescriber).await.expect(StatusCode::OK);
    assert!(
        requests.as_array().expect("rows").iter().any(|r| r["order"]["id"] == json!(order_id)),
        "the request reaches the practice"
    );
    let decide = |item: &str| format!("{API}/orders/{order_id}/items/{item}/decision");
    // Approving is signing: without a fresh one-time code it is refused and nothing changes.
    let unsigned = app.post_json(&decide(&approve_item), &prescriber, &json!({"decision": "approve"})).await;
    assert!(reasons(&unsigned.expect_error_body(StatusCode::UNPROCESSABLE_ENTITY))
        .iter()
        .any(|r| r.starts_with("code:")));
    let code = app.next_code("prescriber@demo.example", DEMO_TOTP_SECRET).await;
    app.post_json(&decide(&approve_item), &prescriber, &json!({"decision": "approve", "code": code}))
        .await
        .expect(StatusCode::OK);
    let decided = app
        .post_json(
            &decide(&reject_item),
            &prescriber,
            &json!({"decision": "reject", "reason": "medication_review_needed"}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(decided["stage"], "preparing");

    // The patient sees the rejection, its reason and what to do next.
    let seen = app.order(&order_id, &patient).await;
    let rejected = item_of(&seen, &reject_item);
    assert_eq!(rejected["state"], "rejected");
    assert_eq!(rejected["decision"]["decision"], "reject");
    assert_eq!(rejected["decision"]["reason"], "medication_review_needed");
    assert_eq!(rejected["decision"]["reason_label"], "Medication review needed");
    assert!(rejected["decision"]["next_step"].as_str().is_some_and(|s| s.contains("medication review")));
    assert_eq!(item_of(&seen, &approve_item)["state"], "approved");

    // The approved line used one issue and is next due a cycle from today.
    let after = app.repeat_items(&pid, &patient).await;
    let approved_line = line(&after, &approve_line);
    assert_eq!(approved_line["issues_remaining"].as_u64(), approve_before["issues_remaining"].as_u64().map(|n| n - 1));
    let cycle = approved_line["cycle_days"].as_i64().expect("cycle");
    let due = app.server.app.clock.today().saturating_add(jiff::Span::new().days(cycle)).to_string();
    assert_eq!(approved_line["next_due"], json!(due));
    assert_eq!(approved_line["status"], "on_open_order", "held by the order until it is supplied");
    assert_eq!(line(&after, &reject_line)["status"], "orderable", "a rejected line is free to order again");

    // The pharmacist marks it ready, then collected: the order is complete.
    let step = format!("{API}/orders/{order_id}/items/{approve_item}/steps");
    let ready = app.post_json(&step, &pharmacist, &json!({"step": "ready_to_collect"})).await.expect(StatusCode::OK);
    assert_eq!(ready["stage"], "ready");
    let done = app.post_json(&step, &pharmacist, &json!({"step": "collected"})).await.expect(StatusCode::OK);
    assert_eq!(done["stage"], "completed");
    let finished = app.order(&order_id, &patient).await;
    assert_eq!(finished["stage"], "completed");
    let stages: Vec<&str> = finished["transitions"]
        .as_array()
        .expect("transitions")
        .iter()
        .filter(|t| t["item_id"].is_null())
        .filter_map(|t| t["to"].as_str())
        .collect();
    assert_eq!(stages, ["submitted", "in_review", "with_prescriber", "preparing", "ready", "completed"]);
    let supplied = app.repeat_items(&pid, &patient).await;
    assert_eq!(line(&supplied, &approve_line)["status"], "too_early", "next orderable a week before it is due");

    // A fresh order can be cancelled by the patient...
    let fresh = app.place_order(&pid, &patient, &[&reject_line]).await.expect(StatusCode::CREATED);
    let fresh_id = fresh["id"].as_str().expect("id");
    let cancelled =
        app.post_json(&format!("{API}/orders/{fresh_id}/cancel"), &patient, &json!({})).await.expect(StatusCode::OK);
    assert_eq!(cancelled["stage"], "cancelled");
    assert!(cancelled["items"].as_array().expect("items").iter().all(|i| i["state"] == "cancelled"));

    // ...but not once the pharmacy has accepted it.
    let again = app.place_order(&pid, &patient, &[&reject_line]).await.expect(StatusCode::CREATED);
    let again_id = again["id"].as_str().expect("id");
    app.post_json(&format!("{API}/orders/{again_id}/accept"), &pharmacist, &json!({})).await.expect(StatusCode::OK);
    let message = app
        .post_json(&format!("{API}/orders/{again_id}/cancel"), &patient, &json!({}))
        .await
        .expect_error(StatusCode::CONFLICT);
    assert!(message.contains("contact your pharmacy"), "{message}");
    assert_eq!(app.order(again_id, &patient).await["stage"], "in_review");

    // An order the pharmacist places for a patient is marked as placed on their behalf.
    let (other, item) = app.patient_with_orderable_item(&pharmacist).await;
    let for_them = app.place_order(&other, &pharmacist, &[&item]).await.expect(StatusCode::CREATED);
    assert_eq!(for_them["on_behalf"], true);
    let history = app.order(for_them["id"].as_str().expect("id"), &pharmacist).await;
    assert!(history["transitions"][0]["reason"].as_str().is_some_and(|r| r.contains("on the patient's behalf")));

    // The patient was emailed at each step that needs them: accepted, not approved, ready.
    let emails = app.server.app.store.recent_emails(500).await.expect("the outbox");
    let subjects: Vec<&str> = emails
        .iter()
        .filter(|e| e.to.as_str() == "patient@demo.example" && e.body.contains(&order_id))
        .map(|e| e.subject.as_str())
        .collect();
    for expected in [
        "Your repeat prescription order has been accepted",
        "An item on your order was not approved",
        "Your medicine is ready",
    ] {
        assert!(subjects.contains(&expected), "missing '{expected}' in {subjects:?}");
    }
    let rejection = emails
        .iter()
        .find(|e| e.body.contains(&order_id) && e.subject.contains("not approved"))
        .expect("rejection email");
    assert!(rejection.body.contains("Medication review needed"));
}

/// A double tap, or the app and the website at once: the same line ordered by requests in flight
/// together is placed once. The others are refused as already on an order, whether their own
/// reading of the list or the write itself found it taken.
#[tokio::test]
async fn a_line_ordered_by_several_requests_at_once_is_ordered_once() {
    let app = TestApp::spawn().await;
    let patient = app.sign_in("patient@demo.example").await;
    let pid = app.my_patient_id(&patient).await;
    let items = app.repeat_items(&pid, &patient).await;
    let first = with_status(&items, "orderable")[0].to_string();
    let description = line(&items, &first)["description"].as_str().unwrap_or_default().to_string();
    let orders_before = app.orders_of(&pid, &patient).await.len();
    let chosen = [first.as_str()];
    let order = || app.place_order(&pid, &patient, &chosen);
    let (a, b, c, d, e, f) = tokio::join!(order(), order(), order(), order(), order(), order());
    let replies = [a, b, c, d, e, f];
    let placed = replies.iter().filter(|r| r.status == StatusCode::CREATED).count();
    assert_eq!(placed, 1, "{:?}", replies.iter().map(|r| (r.status, &r.body)).collect::<Vec<_>>());
    for refused in replies.iter().filter(|r| r.status != StatusCode::CREATED) {
        assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
        let why = reasons(&refused.body);
        assert!(why.len() == 1 && why[0].contains("Already on an order"), "{why:?}");
        assert!(why[0].contains(&description), "the reason names the item: {why:?}");
    }
    assert_eq!(app.orders_of(&pid, &patient).await.len(), orders_before + 1);
}

#[tokio::test]
async fn staff_onboard_organisations_register_patients_and_keep_repeat_lists() {
    let app = TestApp::spawn().await;

    // The operator onboards a pharmacy and a practice; each manager's password is shown once.
    let operator = app.sign_in("operator@demo.example").await;
    let orgs = app.get(&format!("{API}/admin/organisations"), &operator).await.expect(StatusCode::OK);
    assert!(orgs["pharmacies"].as_array().expect("list").iter().any(|p| p["name"] == "Hilltop Chemist"));
    assert!(orgs["practices"]
        .as_array()
        .expect("list")
        .iter()
        .any(|p| p["ods_code"] == "Y03003" && p["on_repeatrx"] == false));
    let pharmacy = app
        .post_json(
            &format!("{API}/admin/pharmacies"),
            &operator,
            &json!({"name": "Canal Side Pharmacy", "ods_code": "fc303", "manager_name": "Ola Berg", "manager_email": "ola@canal.example"}),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(pharmacy["organisation"]["ods_code"], "FC303");
    assert!(pharmacy.get("initial_password").is_none(), "nobody but the manager ever knows their password");
    assert!(pharmacy["invitation_expires_at"].as_str().is_some());
    let manager_password = "heron window marble 42".to_string();
    app.accept_invitation("ola@canal.example", &manager_password).await;
    let practice = app
        .post_json(
            &format!("{API}/admin/practices"),
            &operator,
            &json!({"name": "Canal Surgery", "ods_code": "Y04004", "manager_name": "Ian Moss", "manager_email": "ian@canal.example", "on_repeatrx": true}),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(practice["organisation"]["on_repeatrx"], true);
    app.wait_for_email("ian@canal.example", "invited").await;
    let taken = app
        .post_json(
            &format!("{API}/admin/practices"),
            &operator,
            &json!({"name": "Again", "ods_code": "Y05005", "manager_name": "Ian Moss", "manager_email": "ian@canal.example"}),
        )
        .await;
    taken.expect_error(StatusCode::CONFLICT);
    let manager = app.sign_in_with("ola@canal.example", &manager_password).await;
    let me = app.get(&format!("{API}/me"), &manager).await.expect(StatusCode::OK);
    assert_eq!(me["role"], "pharmacy_manager");

    // The Riverside pharmacist registers a patient with an online account.
    let pharmacist = app.sign_in("pharmacist@demo.example").await;
    let practices = app.get(&format!("{API}/practices"), &pharmacist).await.expect(StatusCode::OK);
    let surgery = practices
        .as_array()
        .expect("list")
        .iter()
        .find(|p| p["name"] == "Riverside Surgery")
        .expect("the demo practice");
    let surgery_id = surgery["id"].as_str().expect("id");
    let registered = app
        .post_json(
            &format!("{API}/pharmacy/patients"),
            &pharmacist,
            &json!({
                "given_name": "Nia", "family_name": "Owen", "date_of_birth": "1961-04-09",
                "nhs_number": "943 476 5919", "practice_id": surgery_id,
                "email": "nia.owen@demo.example", "create_account": true
            }),
        )
        .await
        .expect(StatusCode::CREATED);
    let nia = registered["patient"]["id"].as_str().expect("id").to_string();
    assert_eq!(registered["patient"]["nhs_number"], "9434765919");
    assert_eq!(registered["patient"]["date_of_birth"], "1961-04-09");
    assert!(registered.get("initial_password").is_none(), "nobody at the pharmacy knows the patient's password");
    assert_eq!(registered["invitation_sent_to"], "nia.owen@demo.example");
    let nia_password = "kettle orchard violet 3".to_string();
    app.accept_invitation("nia.owen@demo.example", &nia_password).await;
    let without_account = app
        .post_json(
            &format!("{API}/pharmacy/patients"),
            &pharmacist,
            &json!({"given_name": "Bo", "family_name": "Ng", "date_of_birth": "1970-01-01", "nhs_number": "4010232137", "practice_id": surgery_id}),
        )
        .await
        .expect(StatusCode::CREATED);
    assert!(without_account.get("invitation_sent_to").is_none(), "no account, no invitation");
    let found = app.get(&format!("{API}/pharmacy/patients?name=nia"), &pharmacist).await.expect(StatusCode::OK);
    assert!(found.as_array().expect("list").iter().any(|p| p["id"] == json!(nia)));
    let invalid = app
        .post_json(
            &format!("{API}/pharmacy/patients"),
            &pharmacist,
            &json!({"given_name": "X", "family_name": "Y", "date_of_birth": "1970-01-01", "nhs_number": "9434765918", "practice_id": surgery_id}),
        )
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(invalid.contains("nhs_number"), "{invalid}");

    // Staff search the catalogue; controlled drugs are flagged as not orderable online.
    let found = app.get(&format!("{API}/catalogue?q=atorvastatin&limit=5"), &pharmacist).await.expect(StatusCode::OK);
    let medicines = found.as_array().expect("list");
    assert!(!medicines.is_empty() && medicines.len() <= 5);
    let code = medicines[0]["code"].as_str().expect("code").to_string();
    assert_eq!(medicines[0]["orderable_online"], true);
    assert!(medicines[0]["pack_size"].as_u64() > Some(0));
    let cds = app.get(&format!("{API}/catalogue?q=temazepam"), &pharmacist).await.expect(StatusCode::OK);
    assert!(cds
        .as_array()
        .expect("list")
        .iter()
        .all(|m| m["orderable_online"] == false && m["controlled_schedule"] == 3));

    // The pharmacist records a repeat line from the catalogue; the prescriber issues a free-text one.
    let review = app.server.app.clock.today().saturating_add(jiff::Span::new().days(180)).to_string();
    let terms = json!({"medicine_code": code, "quantity": 28, "directions": "One at night", "cycle_days": 28, "issues": 6, "review_date": review});
    let kept = app
        .post_json(&format!("{API}/patients/{nia}/repeat-items"), &pharmacist, &terms)
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(kept["free_text"], false);
    assert_eq!(kept["issues_remaining"], 6);
    let prescriber = app.sign_in("prescriber@demo.example").await;
    let code = app.next_code("prescriber@demo.example", DEMO_TOTP_SECRET).await;
    let free = json!({"drug_name": "Hydroxocobalamin", "strength": "1mg/1ml", "form": "injection", "quantity": 1, "directions": "Every 12 weeks", "cycle_days": 84, "issues": 4, "review_date": review, "code": code});
    let issued = app
        .post_json(&format!("{API}/patients/{nia}/repeat-items"), &prescriber, &free)
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(issued["free_text"], true);
    let receptionist = app.sign_in("receptionist@demo.example").await;
    app.post_json(&format!("{API}/patients/{nia}/repeat-items"), &receptionist, &free)
        .await
        .expect_error(StatusCode::FORBIDDEN);
    let bad_terms = json!({"drug_name": "X", "strength": "1mg", "form": "tablets", "quantity": 1, "directions": "d", "cycle_days": 3, "issues": 4, "review_date": review});
    let message = app
        .post_json(&format!("{API}/patients/{nia}/repeat-items"), &pharmacist, &bad_terms)
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(message.contains("cycle_days"), "{message}");

    // Stopping a line keeps it on the list, marked stopped.
    let stopped_id = issued["id"].as_str().expect("id");
    let stopped = app
        .post_json(&format!("{API}/repeat-items/{stopped_id}/stop"), &pharmacist, &json!({}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(stopped["active"], false);
    app.post_json(&format!("{API}/repeat-items/{stopped_id}/stop"), &pharmacist, &json!({}))
        .await
        .expect_error(StatusCode::CONFLICT);

    // The new patient signs in with the password they chose and sees their list.
    let nia_token = app.sign_in_with("nia.owen@demo.example", &nia_password).await;
    assert_eq!(app.my_patient_id(&nia_token).await, nia);
    let details = app.get(&format!("{API}/patients/{nia}"), &nia_token).await.expect(StatusCode::OK);
    assert_eq!(details["name"], "Nia Owen");
    let list = app.repeat_items(&nia, &nia_token).await;
    assert_eq!(list.len(), 2);
    assert_eq!(with_status(&list, "orderable"), [kept["id"].as_str().expect("id")]);
    assert_eq!(with_status(&list, "stopped"), [stopped_id]);
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let app = TestApp::spawn().await;
    let reply = app.get_anon(&format!("{API}/openapi.json")).await;
    let doc = reply.expect(StatusCode::OK);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{doc}");
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let expected = [
        ("post", "/sessions"),
        ("delete", "/sessions"),
        ("get", "/me"),
        ("get", "/patients/{id}"),
        ("get", "/patients/{id}/repeat-items"),
        ("post", "/patients/{id}/repeat-items"),
        ("get", "/patients/{id}/orders"),
        ("post", "/patients/{id}/orders"),
        ("get", "/orders/{id}"),
        ("post", "/orders/{id}/cancel"),
        ("post", "/orders/{id}/accept"),
        ("post", "/orders/{id}/send-to-prescriber"),
        ("post", "/orders/{id}/items/{item_id}/decision"),
        ("post", "/orders/{id}/items/{item_id}/steps"),
        ("get", "/pharmacy/queue"),
        ("get", "/pharmacy/patients"),
        ("post", "/pharmacy/patients"),
        ("post", "/repeat-items/{id}/stop"),
        ("get", "/catalogue"),
        ("get", "/practices"),
        ("get", "/practice/requests"),
        ("get", "/admin/organisations"),
        ("post", "/admin/pharmacies"),
        ("post", "/admin/practices"),
        ("get", "/patients/{id}/access-log"),
        ("get", "/account/sessions"),
        ("delete", "/account/sessions"),
        ("get", "/account/events"),
        ("post", "/account/password"),
        ("post", "/sessions/second-factor"),
        ("post", "/sessions/totp"),
    ];
    for (method, path) in expected {
        let op = &doc["paths"][format!("{API}{path}")][method];
        assert!(op.is_object(), "{} {API}{path} is missing from the OpenAPI document", method.to_uppercase());
        assert!(op["tags"].as_array().is_some_and(|t| !t.is_empty()), "{method} {path} has no tag");
        let path_params = path.matches('{').count();
        let documented =
            op["parameters"].as_array().map(|ps| ps.iter().filter(|p| p["in"] == "path").count()).unwrap_or(0);
        assert_eq!(documented, path_params, "{method} {path} documents each path parameter once");
        if path != "/sessions" {
            assert!(
                op["responses"].as_object().is_some_and(|r| r.len() >= 2 && r.contains_key("401")),
                "{method} {path} documents its errors"
            );
            assert!(op["security"][0]["bearer"].is_array(), "{method} {path} needs a bearer token");
        }
    }
    assert!(doc["paths"][format!("{API}/patients/{{id}}/orders")]["post"]["requestBody"].is_object());
    assert!(doc["paths"][format!("{API}/patients/{{id}}/orders")]["post"]["responses"]["409"].is_object());
}
