//! Erasure on request (P13): the patient with their password, or their pharmacy with a reason;
//! everything goes at once, the account can no longer sign in, the ledger outside the database
//! records it, the trail keeps the id only, and a ledger re-applied erases again.
mod common;

use common::{actor, client, harness, password};
use repeatrx_app::erasure::EraseRequest;
use repeatrx_app::patients::PatientSearch;
use repeatrx_app::AppError;
use repeatrx_domain::clock::Clock;
use repeatrx_domain::erasure::LedgerEntry;
use repeatrx_store::SessionKind;

fn asked(confirm: bool, password: &str, reason: &str) -> EraseRequest {
    EraseRequest { confirm, password: password.to_string().into(), reason: reason.into() }
}

fn field_error(r: Result<jiff::Timestamp, AppError>) -> String {
    match r {
        Err(AppError::InvalidFields(m)) => m.join("; "),
        other => panic!("expected a form error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_patient_erases_themselves_with_their_password_and_is_gone() {
    let h = harness().await;
    let app = &h.app;
    let ann = actor(app, "patient@demo.example").await;
    let ann_id = repeatrx_app::access::own_patient(&ann).unwrap();
    let pharmacist = actor(app, "pharmacist@demo.example").await;
    let pw = repeatrx_app::demo::DEMO_PASSWORD;

    assert!(field_error(app.erase_patient(&ann, ann_id, &asked(false, pw, "")).await).starts_with("confirm:"));
    assert!(field_error(app.erase_patient(&ann, ann_id, &asked(true, "", "")).await).contains("enter your password"));
    assert!(field_error(app.erase_patient(&ann, ann_id, &asked(true, "not-my-password", "")).await)
        .contains("not your password"));
    let security = app.store.account_security(ann.user_id).await.unwrap().unwrap();
    assert_eq!(security.failed_sign_ins, 1, "a wrong password counts like a failed sign-in");
    assert!(app.store.patient(ann_id).await.unwrap().is_some(), "nothing deleted yet");

    let at = app.erase_patient(&ann, ann_id, &asked(true, pw, "")).await.unwrap();
    assert_eq!(at, h.clock.now());
    assert_eq!(app.store.patient(ann_id).await.unwrap(), None);
    assert!(app.store.repeat_items(ann_id).await.unwrap().is_empty());
    assert!(app.store.orders_of_patient(ann_id).await.unwrap().is_empty());
    assert!(matches!(
        app.sign_in("patient@demo.example", password(), SessionKind::Browser, &client()).await,
        Err(AppError::BadCredentials)
    ));
    assert!(matches!(app.repeat_list(&pharmacist, ann_id).await, Err(AppError::NotFound(_))));
    let search = PatientSearch { name: "Jones".into(), ..Default::default() };
    assert!(app.find_patients(&pharmacist, &search).await.unwrap().iter().all(|p| p.id != ann_id));

    let ledger = app.settings.erasure_ledger.as_ref().unwrap().entries().unwrap();
    assert_eq!(ledger, [LedgerEntry { patient: ann_id, at }], "recorded outside the database");
    let trail = app.store.audit_entries_for_patient(ann_id, 500).await.unwrap();
    assert!(trail.iter().any(|e| e.record.action == "patient.erased"));
    let text = format!("{trail:?}");
    assert!(!text.contains("Jones") && !text.contains("patient@demo.example"), "the trail keeps the id only");
}

#[tokio::test]
async fn the_pharmacy_erases_at_the_counter_with_a_reason_and_no_one_else_can() {
    let h = harness().await;
    let app = &h.app;
    let pharmacist = actor(app, "pharmacist@demo.example").await;
    let patients = app.find_patients(&pharmacist, &PatientSearch::default()).await.unwrap();
    let ann = actor(app, "patient@demo.example").await;
    let ann_id = repeatrx_app::access::own_patient(&ann).unwrap();
    let target = patients.iter().find(|p| p.id != ann_id).expect("another Riverside patient").clone();
    let reason = "asked in person at the counter, photo ID seen";

    let counter = actor(app, "counter@demo.example").await;
    assert!(matches!(app.erase_patient(&counter, target.id, &asked(true, "", reason)).await, Err(AppError::Forbidden)));
    let prescriber = actor(app, "prescriber@demo.example").await;
    assert!(matches!(
        app.erase_patient(&prescriber, target.id, &asked(true, "", reason)).await,
        Err(AppError::Forbidden)
    ));
    let elsewhere = actor(app, "hilltop.manager@demo.example").await;
    assert!(matches!(
        app.erase_patient(&elsewhere, target.id, &asked(true, "", reason)).await,
        Err(AppError::NotFound(_))
    ));
    assert!(matches!(app.erase_patient(&ann, target.id, &asked(true, "", reason)).await, Err(AppError::NotFound(_))));
    assert!(
        field_error(app.erase_patient(&pharmacist, target.id, &asked(true, "", "asked")).await).starts_with("reason:")
    );
    assert!(app.store.patient(target.id).await.unwrap().is_some());

    app.erase_patient(&pharmacist, target.id, &asked(true, "", reason)).await.unwrap();
    assert_eq!(app.store.patient(target.id).await.unwrap(), None);
    let trail = app.store.audit_entries_for_patient(target.id, 500).await.unwrap();
    let erased = trail.iter().find(|e| e.record.action == "patient.erased").expect("audited");
    assert_eq!(erased.record.actor, Some(pharmacist.user_id));
    assert_eq!(erased.record.purpose.as_deref(), Some(reason));
    assert!(app.store.patient(ann_id).await.unwrap().is_some(), "nobody else was touched");
}

#[tokio::test]
async fn the_ledger_is_re_applied_to_a_database_that_still_holds_an_erased_patient() {
    let h = harness().await;
    let app = &h.app;
    let ann = actor(app, "patient@demo.example").await;
    let ann_id = repeatrx_app::access::own_patient(&ann).unwrap();
    assert_eq!(app.reapply_erasures().await.unwrap(), 0, "an empty ledger changes nothing");

    // As after a restore from a backup taken before Ann was erased: the ledger names her, the
    // database still holds her.
    let at = h.clock.now();
    app.settings.erasure_ledger.as_ref().unwrap().append(&LedgerEntry { patient: ann_id, at }).unwrap();
    assert_eq!(app.reapply_erasures().await.unwrap(), 1);
    assert_eq!(app.store.patient(ann_id).await.unwrap(), None);
    assert_eq!(app.store.erased_at(ann_id).await.unwrap(), Some(at));
    assert_eq!(app.reapply_erasures().await.unwrap(), 0, "done once, nothing left");
    let trail = app.store.audit_entries_for_patient(ann_id, 500).await.unwrap();
    assert!(trail.iter().any(|e| e.record.action == "patient.erasure_reapplied"));
}
