//! A pharmacy leaving RepeatRx (P12) with an injected clock: an operator marks it; its staff are
//! locked out at once, its patients are emailed and can still take their data but not order;
//! every patient's data is deleted when the grace (at most seven days) is up, and not before.
mod common;

use common::{actor, client, harness, password};
use jiff::SignedDuration;
use repeatrx_app::orders::SubmitOrderInput;
use repeatrx_app::AppError;
use repeatrx_domain::access::Membership;
use repeatrx_domain::clock::Clock;
use repeatrx_domain::patient::Fulfilment;
use repeatrx_store::{PatientQuery, SessionKind};

#[tokio::test]
async fn a_leaving_pharmacy_locks_out_its_staff_tells_its_patients_and_is_deleted_after_the_grace() {
    let h = harness().await;
    let app = &h.app;
    let operator = actor(app, "operator@demo.example").await;
    let manager = actor(app, "manager@demo.example").await;
    let Membership::Pharmacy(riverside) = manager.membership else { panic!("a pharmacy manager") };
    let hilltop_manager = actor(app, "hilltop.manager@demo.example").await;
    let Membership::Pharmacy(hilltop) = hilltop_manager.membership else { panic!("a pharmacy manager") };
    let ann = actor(app, "patient@demo.example").await;
    let ann_id = repeatrx_app::access::own_patient(&ann).unwrap();
    let riverside_patients = app.store.search_patients(riverside, &PatientQuery::default(), 10_000).await.unwrap();
    let hilltop_patients = app.store.search_patients(hilltop, &PatientQuery::default(), 10_000).await.unwrap();
    assert!(riverside_patients.len() > 5 && !hilltop_patients.is_empty());

    // Only operators; at most seven days; confirmed.
    assert!(matches!(app.mark_pharmacy_leaving(&manager, riverside, 7, true).await, Err(AppError::Forbidden)));
    match app.mark_pharmacy_leaving(&operator, riverside, 8, false).await {
        Err(AppError::InvalidFields(p)) => {
            assert!(p[0].starts_with("grace_days: at most 7 days") && p[1].starts_with("confirm:"), "{p:?}")
        }
        other => panic!("expected form errors, got {other:?}"),
    }
    let marked_at = h.clock.now();
    let departure = app.mark_pharmacy_leaving(&operator, riverside, 7, true).await.unwrap();
    assert_eq!(departure.delete_after, marked_at + SignedDuration::from_hours(24 * 7));
    assert!(matches!(app.mark_pharmacy_leaving(&operator, riverside, 3, true).await, Err(AppError::Conflict(_))));

    // Staff are locked out at once; patients are told, can still sign in, but cannot order.
    for staff in ["pharmacist@demo.example", "manager@demo.example"] {
        assert!(matches!(
            app.sign_in(staff, password(), SessionKind::Browser, &client()).await,
            Err(AppError::BadCredentials)
        ));
    }
    let told = app.store.recent_emails(500).await.unwrap();
    let to_ann = told
        .iter()
        .find(|e| e.to.as_str() == "patient@demo.example" && e.subject == "Riverside Pharmacy is leaving RepeatRx")
        .expect("Ann is told");
    assert!(to_ann.body.contains("/patient/export") && to_ann.body.contains("deleted for good on"), "{}", to_ann.body);
    assert!(app.sign_in("patient@demo.example", password(), SessionKind::Browser, &client()).await.is_ok());
    assert!(app.export_patient(&ann, ann_id).await.is_ok(), "patients can still take their data");
    let lines = app.repeat_list(&ann, ann_id).await.unwrap().1;
    let input =
        SubmitOrderInput { items: vec![lines[0].item.id], fulfilment: Fulfilment::Collection, note: String::new() };
    assert!(
        matches!(app.submit_order(&ann, ann_id, &input).await, Err(AppError::Conflict(m)) if m.contains("leaving"))
    );

    // Nothing is deleted before the grace is up.
    h.clock.advance(SignedDuration::from_hours(24 * 7 - 1));
    assert_eq!(app.finish_departures().await.unwrap(), 0);
    assert!(app.store.patient(ann_id).await.unwrap().is_some());
    let listed = app.departures(&operator).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(repeatrx_domain::departure::hours_left(h.clock.now(), listed[0].1.delete_after), 1, "the countdown");

    h.clock.advance(SignedDuration::from_hours(1));
    assert_eq!(app.finish_departures().await.unwrap(), riverside_patients.len() as u64);
    for p in &riverside_patients {
        assert_eq!(app.store.patient(p.id).await.unwrap(), None, "{} is deleted", p.id);
        assert!(app.store.erased_at(p.id).await.unwrap().is_some());
    }
    let ledger = app.settings.erasure_ledger.as_ref().unwrap().entries().unwrap();
    assert!(riverside_patients.iter().all(|p| ledger.iter().any(|e| e.patient == p.id)), "each in the ledger");
    assert_eq!(app.store.user(manager.user_id).await.unwrap(), None, "staff accounts are deleted");
    assert!(app.departures(&operator).await.unwrap()[0].1.deleted_at.is_some());
    assert_eq!(app.finish_departures().await.unwrap(), 0, "done once");
    for p in &hilltop_patients {
        assert!(app.store.patient(p.id).await.unwrap().is_some(), "another pharmacy's patients stay");
    }
}
