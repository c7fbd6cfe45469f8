//! The same conformance suite as SQLite, on PostgreSQL (a fresh database per test on the local
//! server; see `repeatrx_store::testdb`), plus what is PostgreSQL's own: the append-only trail and
//! several stores (servers) sharing one database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use repeatrx_crypto::{FixedKeys, KeySource, Keys};
use repeatrx_store::conformance;
use repeatrx_store::sql::SqlStore;
use repeatrx_store::testdb::fresh_postgres_database;
use repeatrx_store::{Store, StoreError};
use std::sync::Arc;

async fn store_with(keys: Arc<dyn KeySource>) -> (String, SqlStore) {
    let url = fresh_postgres_database().await.expect("a PostgreSQL test database");
    let store = SqlStore::connect_postgres(&url, keys).await.expect("the store connects and migrates");
    (url, store)
}

fn keys() -> Arc<dyn KeySource> {
    Arc::new(FixedKeys::new(Keys::generate()))
}

#[tokio::test]
async fn conformance_suite() {
    let (_, store) = store_with(keys()).await;
    conformance::run_all(&store).await;
    conformance::run_all(&store).await;
}

#[tokio::test]
async fn checks_can_run_concurrently_on_one_database() {
    let (_, store) = store_with(keys()).await;
    let s: &dyn Store = &store;
    tokio::join!(
        conformance::order_round_trip(s),
        conformance::save_order_bumps_version_and_appends_transitions(s),
        conformance::pharmacy_orders_filters_and_pages(s),
        conformance::outbox_claim_and_lease(s),
        conformance::reminders_needing_and_recorded(s),
        conformance::search_patients_by_whole_name(s),
    );
}

/// Two servers on one database: each has its own pool; what one writes the other reads, and
/// their writes queue behind one lock.
#[tokio::test]
async fn two_stores_share_one_database() {
    let shared = keys();
    let (url, first) = store_with(shared.clone()).await;
    let second = SqlStore::connect_postgres(&url, shared).await.expect("a second server connects");
    conformance::audit_entries_form_one_chain(&first).await;
    conformance::audit_entries_form_one_chain(&second).await;
    let w = conformance::world(&first).await;
    assert_eq!(second.patient(w.pa.patient.id).await.unwrap(), Some(w.pa.patient.clone()));
    conformance::invitations_roles_and_suspension(&second).await;
}

#[tokio::test]
async fn the_audit_trail_refuses_changes_through_sql() {
    let (_, store) = store_with(keys()).await;
    conformance::audit_entries_form_one_chain(&store).await;
    for sql in [
        "UPDATE audit_log SET detail = 'edited' WHERE seq = 1",
        "DELETE FROM audit_log WHERE seq = 1",
        "TRUNCATE audit_log",
    ] {
        let err = sqlx::query(sql).execute(store.pool()).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
}

/// P2 on PostgreSQL: a sealed value changed, or moved to another row or column, and a data key
/// swapped for another patient's, are reported as corrupt and never opened.
#[tokio::test]
async fn sealed_values_changed_or_moved_are_reported_not_opened() {
    let (_, store) = store_with(keys()).await;
    common::sealed_values_changed_or_moved_are_reported_not_opened(&store).await;
}

/// A server started with another key file is refused at start, not on its first read.
#[tokio::test]
async fn a_database_refuses_keys_it_was_not_made_with() {
    let (url, store) = store_with(keys()).await;
    conformance::world(&store).await;
    match SqlStore::connect_postgres(&url, keys()).await {
        Err(StoreError::Unavailable(m)) => assert!(m.contains("does not hold master key"), "{m}"),
        other => panic!("expected Unavailable, got {:?}", other.map(|_| ())),
    }
}

/// The data generator's bulk load writes what the one-at-a-time methods write.
#[tokio::test]
async fn bulk_loaded_records_read_back_as_written() {
    let (_, store) = store_with(keys()).await;
    common::bulk_loaded_records_read_back_as_written(&store).await;
}
