//! Break-glass access of live-data custodians (P8), with an injected clock: no patient data
//! without a grant; a grant needs a reason and a fresh code, is announced by email to the other
//! custodian and the pharmacy's managers, opens reading (only) of what it covers, is audited with
//! its reason as the purpose, and ends when it expires or is ended.
mod common;

use common::{actor, client, harness};
use jiff::SignedDuration;
use repeatrx_app::custody::GrantRequest;
use repeatrx_app::orders::SubmitOrderInput;
use repeatrx_app::AppError;
use repeatrx_domain::custody::GrantScope;
use repeatrx_domain::patient::Fulfilment;

const REASON: &str = "Support ticket 5120: Riverside says this patient's order vanished";

fn pharmacy_of(a: &repeatrx_domain::access::Actor) -> repeatrx_domain::ids::PharmacyId {
    match a.membership {
        repeatrx_domain::access::Membership::Pharmacy(p) => p,
        other => panic!("not pharmacy staff: {other:?}"),
    }
}

fn code_now(h: &common::Harness) -> String {
    use repeatrx_domain::clock::Clock;
    let step = repeatrx_app::totp::step_of(h.clock.now().as_second());
    repeatrx_app::totp::code_at_step(repeatrx_app::demo::DEMO_TOTP_SECRET, step).unwrap()
}

#[tokio::test]
async fn a_grant_opens_reading_one_patient_for_an_hour_and_is_audited_and_announced() {
    let h = harness().await;
    let app = &h.app;
    let casey = actor(app, "custodian@demo.example").await;
    let ann = actor(app, "patient@demo.example").await;
    let ann_id = repeatrx_app::access::own_patient(&ann).unwrap();

    // Nothing without a grant; operators cannot ask for one.
    assert!(matches!(app.repeat_list(&casey, ann_id).await, Err(AppError::NotFound(_))));
    let operator = actor(app, "operator@demo.example").await;
    let request =
        |code: String| GrantRequest { scope: GrantScope::Patient(ann_id), reason: REASON.into(), minutes: None, code };
    assert!(matches!(app.open_grant(&operator, &request(code_now(&h)), &client()).await, Err(AppError::Forbidden)));

    // A short reason or a wrong code opens nothing.
    let short = GrantRequest { reason: "curious".into(), ..request(code_now(&h)) };
    assert!(matches!(
        app.open_grant(&casey, &short, &client()).await,
        Err(AppError::Invalid(_) | AppError::InvalidFields(_))
    ));
    assert!(app.open_grant(&casey, &request("000000".into()), &client()).await.is_err());
    assert!(app.grants_of(&casey).await.unwrap().is_empty());

    let grant = app.open_grant(&casey, &request(code_now(&h)), &client()).await.unwrap();
    assert_eq!(grant.expires_at, grant.created_at + SignedDuration::from_mins(60));
    let outbox = app.store.recent_emails(50).await.unwrap();
    let told: Vec<&str> = outbox
        .iter()
        .filter(|e| e.subject == "Break-glass access to live patient data")
        .map(|e| e.to.as_str())
        .collect();
    assert!(told.contains(&"manager@demo.example"), "the pharmacy's manager is told: {told:?}");
    assert!(told.contains(&"custodian2@demo.example"), "the other custodian is told: {told:?}");
    assert!(!told.contains(&"custodian@demo.example"), "not the custodian who asked");
    assert!(!told.contains(&"hilltop.manager@demo.example"), "not another pharmacy");
    let to_manager = outbox.iter().find(|e| e.to.as_str() == "manager@demo.example").unwrap();
    assert!(to_manager.body.contains(REASON) && to_manager.body.contains("Casey Quinn"));
    assert!(!to_manager.body.contains("Ann Jones"), "no patient name in the email");

    // Reading works; changing does not; other patients stay closed.
    let (patient, _) = app.repeat_list(&casey, ann_id).await.unwrap();
    assert_eq!(patient.id, ann_id);
    assert!(!app.orders_of(&casey, ann_id).await.unwrap().is_empty());
    let items = app.store.repeat_items(ann_id).await.unwrap();
    let order = SubmitOrderInput { items: vec![items[0].id], fulfilment: Fulfilment::Collection, note: String::new() };
    assert!(matches!(app.submit_order(&casey, ann_id, &order).await, Err(AppError::Forbidden)));
    let hilltop_patient = app
        .store
        .search_patients(pharmacy_of(&actor(app, "hilltop.manager@demo.example").await), &Default::default(), 1)
        .await
        .unwrap()[0]
        .id;
    assert!(matches!(app.repeat_list(&casey, hilltop_patient).await, Err(AppError::NotFound(_))));

    // The trail has each read with the reason; the patient sees it.
    let entries = app.store.audit_entries_for_patient(ann_id, 50).await.unwrap();
    let reads: Vec<_> = entries.iter().filter(|e| e.record.actor == Some(casey.user_id)).collect();
    assert!(reads.iter().any(|e| e.record.action == "custody.grant"));
    assert!(reads.iter().any(|e| e.record.action == "patient.view_patient"));
    assert!(reads.iter().all(|e| e.record.purpose.as_deref() == Some(REASON)), "{reads:?}");
    let seen = app.patient_access_log(&ann, ann_id).await.unwrap();
    let line = seen.iter().find(|l| l.who == "Casey Quinn").expect("the patient sees the custodian");
    assert_eq!(line.role, "Live-data custodian");
    assert_eq!(line.purpose.as_deref(), Some(REASON));

    // An hour later the grant has expired by itself.
    h.clock.advance(SignedDuration::from_mins(60));
    assert!(matches!(app.repeat_list(&casey, ann_id).await, Err(AppError::NotFound(_))));
    assert!(app.verify_audit(|_| {}).await.unwrap().first_broken.is_none());
}

#[tokio::test]
async fn a_pharmacy_grant_covers_its_patients_until_it_is_ended() {
    let h = harness().await;
    let app = &h.app;
    let casey = actor(app, "custodian@demo.example").await;
    let manager = actor(app, "manager@demo.example").await;
    let riverside = pharmacy_of(&manager);
    let request = GrantRequest {
        scope: GrantScope::Pharmacy(riverside),
        reason: REASON.into(),
        minutes: Some(15),
        code: code_now(&h),
    };
    let grant = app.open_grant(&casey, &request, &client()).await.unwrap();
    assert_eq!(grant.expires_at, grant.created_at + SignedDuration::from_mins(15));
    let (name, patients) = app.custody_patients(&casey, riverside, "").await.unwrap();
    assert_eq!(name, "Riverside Pharmacy");
    assert!(patients.len() > 5 && patients.iter().all(|p| p.pharmacy_id == riverside));
    app.repeat_list(&casey, patients[0].id).await.unwrap();

    let hilltop = pharmacy_of(&actor(app, "hilltop.manager@demo.example").await);
    assert!(matches!(app.custody_patients(&casey, hilltop, "").await, Err(AppError::NotFound(_))));

    app.end_grant(&casey, grant.id).await.unwrap();
    assert!(matches!(app.end_grant(&casey, grant.id).await, Err(AppError::NotFound(_))));
    assert!(matches!(app.repeat_list(&casey, patients[0].id).await, Err(AppError::NotFound(_))));
    assert!(matches!(app.custody_patients(&casey, riverside, "").await, Err(AppError::NotFound(_))));

    // A grant is personal: the other custodian has none.
    let robin = actor(app, "custodian2@demo.example").await;
    assert!(app.grants_of(&robin).await.unwrap().is_empty());
}
