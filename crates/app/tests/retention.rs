//! Order history retention (P10) with an injected clock: a finished order goes once a whole cycle
//! of its lines has passed and a newer order of each line exists; open orders, the newest order of
//! each line, repeat lines and the audit trail stay. The job is idempotent.
mod common;

use common::{actor, harness};
use jiff::SignedDuration;
use repeatrx_app::jobs::RetentionPass;
use repeatrx_app::orders::SubmitOrderInput;
use repeatrx_domain::patient::Fulfilment;

#[tokio::test]
async fn superseded_finished_orders_go_after_a_cycle_and_nothing_else_does() {
    let h = harness().await;
    let app = &h.app;
    let ann = actor(app, "patient@demo.example").await;
    let me = repeatrx_app::access::own_patient(&ann).unwrap();
    let lines = app.store.repeat_items(me).await.unwrap();
    let statin = lines.iter().find(|l| l.terms.description().starts_with("Atorvastatin")).unwrap();
    let order = SubmitOrderInput { items: vec![statin.id], fulfilment: Fulfilment::Collection, note: String::new() };

    let first = app.submit_order(&ann, me, &order).await.unwrap();
    app.cancel_order(&ann, first.id).await.unwrap();
    h.clock.advance(SignedDuration::from_hours(24));
    let second = app.submit_order(&ann, me, &order).await.unwrap();
    app.cancel_order(&ann, second.id).await.unwrap();
    let orders_before = app.store.orders_of_patient(me).await.unwrap().len();
    let trail_before = app.store.audit_entries(0, 100_000).await.unwrap().len();

    // Within the cycle nothing goes.
    let pass = app.purge_order_history().await.unwrap();
    assert_eq!(pass.purged, 0);
    assert!(pass.patients >= 1, "the patient who ordered was looked at");
    // Until the cycle has passed or someone writes, nobody is looked at again.
    assert_eq!(app.purge_order_history().await.unwrap(), RetentionPass { patients: 0, purged: 0 });
    h.clock.advance(SignedDuration::from_hours(24 * 26));
    assert_eq!(app.purge_order_history().await.unwrap(), RetentionPass { patients: 0, purged: 0 });

    // A cycle (28 days) after the first order: it is superseded by the second, so it goes.
    h.clock.advance(SignedDuration::from_hours(24 * 2));
    let pass = app.purge_order_history().await.unwrap();
    assert_eq!(pass.purged, 1);
    assert!(pass.patients >= 1);
    let left = app.store.orders_of_patient(me).await.unwrap();
    assert_eq!(left.len(), orders_before - 1);
    assert!(left.iter().all(|o| o.id != first.id));
    assert!(left.iter().any(|o| o.id == second.id), "the newest order of the line stays");
    assert!(app.store.order_transitions(first.id).await.unwrap().is_empty());
    assert_eq!(app.store.repeat_items(me).await.unwrap().len(), lines.len(), "repeat lines stay");
    assert!(app.store.audit_entries(0, 100_000).await.unwrap().len() >= trail_before, "the audit trail stays");
    assert!(app.verify_audit(|_| {}).await.unwrap().first_broken.is_none());

    // Again: nothing more to do, and nobody to look at until a write or a cycle's end.
    assert_eq!(app.purge_order_history().await.unwrap(), RetentionPass { patients: 0, purged: 0 });

    // A new order marks the patient again: the second order, now superseded, goes a cycle
    // after it was placed.
    let third = app.submit_order(&ann, me, &order).await.unwrap();
    let pass = app.purge_order_history().await.unwrap();
    assert_eq!(pass, RetentionPass { patients: 1, purged: 1 }, "the second order was placed 28 days ago");
    let left: Vec<_> = app.store.orders_of_patient(me).await.unwrap().into_iter().map(|o| o.id).collect();
    assert!(left.contains(&third.id) && !left.contains(&second.id));
}

#[tokio::test]
async fn sent_emails_go_after_thirty_days_and_pending_ones_stay() {
    let h = harness().await;
    let app = &h.app;
    let queued = app.store.recent_emails(1000).await.unwrap();
    assert!(queued.len() >= 2, "the demo queued emails");
    let (sent, pending) = (queued[0].id, queued[1].id);
    app.store.mark_email_sent(sent, repeatrx_domain::clock::Clock::now(h.clock.as_ref())).await.unwrap();
    assert_eq!(app.purge_sent_emails().await.unwrap(), 0, "not before thirty days");
    h.clock.advance(SignedDuration::from_hours(24 * 31));
    assert_eq!(app.purge_sent_emails().await.unwrap(), 1);
    let left: Vec<_> = app.store.recent_emails(1000).await.unwrap().into_iter().map(|e| e.id).collect();
    assert!(!left.contains(&sent) && left.contains(&pending), "pending emails are never purged");
}
