//! C10: a patient takes away everything RepeatRx holds about them, as JSON (API and download)
//! and as a readable page; nobody else's, and staff exports are audited like any read.
mod common;

use common::{TestApp, API};
use reqwest::StatusCode;

#[tokio::test]
async fn a_patient_downloads_everything_held_about_them() {
    let app = TestApp::spawn().await;
    let pharmacist = app.sign_in("pharmacist@demo.example").await;
    let patient = app.sign_in("patient@demo.example").await;
    let me = app.my_patient_id(&patient).await;
    app.get(&format!("{API}/patients/{me}"), &pharmacist).await.expect(StatusCode::OK);

    let data = app.get(&format!("{API}/patients/{me}/export"), &patient).await.expect(StatusCode::OK);
    assert_eq!(data["format"], "repeatrx-patient-export/1");
    assert_eq!(data["patient"]["id"], me.as_str());
    assert_eq!(data["patient"]["given_name"], "Ann");
    assert_eq!(data["patient"]["pharmacy"], "Riverside Pharmacy");
    assert_eq!(data["patient"]["practice"], "Riverside Surgery");
    assert!(data["patient"]["nhs_number"]
        .as_str()
        .is_some_and(|n| n.chars().filter(char::is_ascii_digit).count() == 10));
    let items = app.repeat_items(&me, &patient).await;
    assert_eq!(data["repeat_items"].as_array().map(Vec::len), Some(items.len()), "every repeat line");
    let orders = app.orders_of(&me, &patient).await;
    let exported = data["orders"].as_array().expect("orders");
    assert_eq!(exported.len(), orders.len(), "every order");
    assert!(exported.iter().all(|o| !o["history"].as_array().expect("history").is_empty()), "with its history");
    let finished = exported.iter().find(|o| o["status"] == "Completed").expect("Ann's finished order");
    assert!(finished["items"][0]["decision"].as_str().is_some_and(|d| d.starts_with("Approved")));
    assert_eq!(data["account"]["email"], "patient@demo.example");
    assert!(!data["account"]["events"].as_array().expect("events").is_empty(), "sign-in activity");
    assert!(data["access_log"].as_array().expect("log").iter().any(|l| l["who"] == "Dev Mistry"));

    // Nobody else's data; staff of the patient's own pharmacy may export, and it is audited.
    let neighbour = app.sign_in("hilltop.manager@demo.example").await;
    app.get(&format!("{API}/patients/{me}/export"), &neighbour).await.expect_error(StatusCode::NOT_FOUND);
    let before =
        app.server.app.store.audit_entries_for_patient(me.parse().expect("id"), 500).await.expect("trail").len();
    app.get(&format!("{API}/patients/{me}/export"), &pharmacist).await.expect(StatusCode::OK);
    let after =
        app.server.app.store.audit_entries_for_patient(me.parse().expect("id"), 500).await.expect("trail").len();
    assert!(after > before, "the staff export is in the audit trail");

    // The page and the download.
    let cookie = app.browser_sign_in("patient@demo.example").await;
    let page = app.get_page("/patient/export", Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Riverside Surgery") && page.body.contains("href=\"/patient/export.json\""));
    let file = app
        .client
        .get(app.url("/patient/export.json"))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .expect("sent");
    assert_eq!(file.status(), StatusCode::OK);
    let disposition = file.headers()["content-disposition"].to_str().expect("header").to_string();
    assert!(disposition.starts_with("attachment; filename=\"repeatrx-my-data-"), "{disposition}");
    let json: serde_json::Value = file.json().await.expect("JSON");
    assert_eq!(json["patient"]["id"], me.as_str());
    let staff = app.browser_sign_in("pharmacist@demo.example").await;
    assert_eq!(app.get_page("/patient/export", Some(&staff)).await.status, StatusCode::FORBIDDEN);
}
