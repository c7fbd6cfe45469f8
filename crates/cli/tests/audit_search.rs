//! Managers search their organisation's audit trail over HTTPS (P9): their staff's reads of a
//! patient's record, a custodian's break-glass reads of their patients with the reason given,
//! nothing of other organisations; bad criteria are named; every search is itself recorded.
mod common;

use common::{TestApp, API};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn a_manager_finds_who_read_a_patients_record_and_why() {
    let app = TestApp::spawn().await;
    let patient = app.sign_in("patient@demo.example").await;
    let ann = app.my_patient_id(&patient).await;
    let pharmacist = app.sign_in("pharmacist@demo.example").await;
    app.get(&format!("{API}/patients/{ann}"), &pharmacist).await.expect(StatusCode::OK);

    // A custodian's break-glass read of the same patient.
    let custodian = app.sign_in("custodian@demo.example").await;
    let code = app.next_code("custodian@demo.example", &app.secret_of("custodian@demo.example")).await;
    let reason = "Support ticket 77: an order went missing";
    app.post_json(
        &format!("{API}/custody/grants"),
        &custodian,
        &json!({"patient_id": ann, "reason": reason, "code": code}),
    )
    .await
    .expect(StatusCode::CREATED);
    app.get(&format!("{API}/patients/{ann}"), &custodian).await.expect(StatusCode::OK);

    let manager = app.sign_in("manager@demo.example").await;
    let found = app.get(&format!("{API}/audit?patient={ann}&kind=patient"), &manager).await.expect(StatusCode::OK);
    let entries = found["entries"].as_array().expect("entries");
    assert!(entries
        .iter()
        .all(|e| e["patient_id"] == json!(ann) && e["action"].as_str().unwrap().starts_with("patient.")));
    let by_pharmacist = entries.iter().find(|e| e["who"] == "Dev Mistry").expect("the pharmacist's read");
    assert_eq!(by_pharmacist["action"], "patient.view_patient");
    assert_eq!(by_pharmacist["address"], "127.0.0.1");
    let by_custodian = entries.iter().find(|e| e["who"] == "Casey Quinn").expect("the custodian's read");
    assert_eq!(by_custodian["purpose"], reason);
    assert_eq!(by_custodian["role"], "Live-data custodian");

    // Narrowed to one member of staff.
    let dev = by_pharmacist["actor_id"].as_str().expect("actor id");
    let only_dev = app.get(&format!("{API}/audit?actor={dev}"), &manager).await.expect(StatusCode::OK);
    assert!(only_dev["entries"].as_array().expect("entries").iter().all(|e| e["who"] == "Dev Mistry"));

    // Another pharmacy's manager finds nothing about Riverside's patient; staff cannot search.
    let hilltop = app.sign_in("hilltop.manager@demo.example").await;
    let none = app.get(&format!("{API}/audit?patient={ann}"), &hilltop).await.expect(StatusCode::OK);
    assert_eq!(none["entries"], json!([]));
    app.get(&format!("{API}/audit"), &pharmacist).await.expect_error(StatusCode::FORBIDDEN);

    // Bad criteria are named.
    let bad = app
        .get(&format!("{API}/audit?from=yesterday&patient=nobody"), &manager)
        .await
        .expect_error_body(StatusCode::UNPROCESSABLE_ENTITY);
    let text = bad.to_string();
    assert!(text.contains("from: must be a date") && text.contains("patient: not a RepeatRx patient id"), "{text}");

    // Searches are recorded, and show up in the next search.
    let searches = app.get(&format!("{API}/audit?kind=audit"), &manager).await.expect(StatusCode::OK);
    assert!(searches["entries"].as_array().expect("entries").iter().any(|e| e["action"] == "audit.search"));

    // The page: a form, a table, and problems named by field.
    let cookie = app.browser_sign_in("manager@demo.example").await;
    let page = app.get_page(&format!("/pharmacy/audit?patient={ann}"), Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Casey Quinn") && page.body.contains(reason));
    assert!(page.body.contains(&format!("href=\"/pharmacy/patients/{ann}\"")));
    let wrong = app.get_page("/pharmacy/audit?to=31%2F02%2F2026", Some(&cookie)).await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong.body.contains("href=\"#trail-to\""));
}
