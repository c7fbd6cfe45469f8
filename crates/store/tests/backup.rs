//! Continuous backup and point-in-time restore of the SQLite database (#6, P3/P4). A random
//! sequence of real workloads (the conformance scenarios: accounts, patients, orders and their
//! history, erasures, emails, sessions...) runs against a file database whose journal is shipped
//! to a backup folder at random moments, with a snapshot taken part-way; then the database is
//! restored to several moments and each copy must hold exactly what the live database held then,
//! table by table and row by row.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use jiff::Timestamp;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use repeatrx_crypto::{FixedKeys, KeySource, Keys};
use repeatrx_store::backup::restore::restore;
use repeatrx_store::backup::{backup_state, BackupPolicy, Destination, Shipper, Target};
use repeatrx_store::conformance as c;
use repeatrx_store::sealing::Sealer;
use repeatrx_store::sql::SqlStore;
use repeatrx_store::Store;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

async fn scenario(store: &dyn Store, n: usize) {
    match n {
        0 => c::patient_and_account_are_inserted_together(store).await,
        1 => c::patient_update(store).await,
        2 => c::erasure_deletes_the_patient_and_everything_of_theirs(store).await,
        3 => c::repeat_items_round_trip(store).await,
        4 => c::order_round_trip(store).await,
        5 => c::save_order_bumps_version_and_appends_transitions(store).await,
        6 => c::finished_orders_are_purged_with_their_history(store).await,
        7 => c::outbox_sent_and_failed(store).await,
        8 => c::sessions_lifecycle(store).await,
        9 => c::account_tokens_are_single_use(store).await,
        10 => c::break_glass_grants(store).await,
        11 => c::meta_round_trip(store).await,
        12 => c::audit_entries_form_one_chain(store).await,
        13 => c::a_leaving_pharmacy_locks_its_staff_and_its_accounts_go_when_it_has_left(store).await,
        _ => c::totp_enrolment_and_recovery_codes(store).await,
    }
}

const SCENARIOS: usize = 15;

#[tokio::test]
async fn restored_copies_equal_the_live_database_at_each_chosen_moment() {
    let seed: u64 = std::env::var("REPEATRX_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("seed {seed} (REPEATRX_TEST_SEED={seed} repeats this run)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.db");
    let keys: Arc<dyn KeySource> = Arc::new(FixedKeys::new(Keys::generate()));
    let store = SqlStore::open(&db, keys.clone()).await.unwrap();
    let target = Target::Folder(dir.path().join("backup"));
    let shipper =
        Shipper::start(&store, dir.path(), std::slice::from_ref(&target), BackupPolicy::default()).await.unwrap();
    c::world(&store).await;
    shipper.snapshot().await.unwrap();

    // (moment, content then) between steps: nothing commits from just before a step returns
    // until the next one starts.
    let mut moments: Vec<(Timestamp, BTreeMap<String, Vec<String>>)> = Vec::new();
    let mut order: Vec<usize> = (0..SCENARIOS).chain(0..SCENARIOS).collect();
    order.shuffle(&mut rng);
    let snapshot_after = rng.gen_range(5..order.len() - 5);
    for (i, n) in order.iter().enumerate() {
        scenario(&store, *n).await;
        let at = Timestamp::now();
        moments.push((at, common::content(&db).await));
        tokio::time::sleep(Duration::from_millis(3)).await;
        if rng.gen_bool(0.4) {
            shipper.ship_once().await.unwrap();
        }
        if i == snapshot_after {
            shipper.ship_once().await.unwrap();
            shipper.snapshot().await.unwrap();
        }
    }
    while shipper.ship_once().await.unwrap() > 0 {}
    let state = backup_state(&store).await.unwrap();
    assert_eq!(state.pending, 0, "everything shipped");
    assert!(state.shipped_change_at.is_some() && state.last_error.is_none(), "{state:?}");

    let dest = Destination::open(&target).unwrap();
    let sealer = Sealer::new(keys.clone());
    let mut picks: Vec<usize> = (0..moments.len()).collect();
    picks.shuffle(&mut rng);
    picks.truncate(6);
    picks.push(moments.len() - 1);
    picks.sort();
    picks.dedup();
    for pick in picks {
        let (at, expected) = &moments[pick];
        let into = dir.path().join(format!("restored-{pick}.db"));
        let mut steps = Vec::new();
        let report = restore(&dest, &sealer, *at, &into, &mut |done, total| steps.push((done, total))).await.unwrap();
        assert!(report.restored_to <= *at, "nothing after the moment: {report:?} for {at}");
        assert_eq!(steps.last().map(|(d, t)| d == t), Some(true), "progress reaches the end: {steps:?}");
        let got = common::content(&into).await;
        for (table, rows) in expected {
            assert_eq!(got.get(table), Some(rows), "table {table} restored to step {pick} at {at} (seed {seed})");
        }
        assert_eq!(got.len(), expected.len(), "the same tables");
    }

    // A moment before the first snapshot cannot be restored, and says so.
    let too_early =
        restore(&dest, &sealer, "2020-01-01T00:00:00Z".parse().unwrap(), &dir.path().join("x.db"), &mut |_, _| {})
            .await
            .expect_err("nothing that old");
    assert!(too_early.to_string().contains("holds nothing as old as"), "{too_early}");
    // Without the keys, the backup opens nothing.
    let other = Sealer::new(Arc::new(FixedKeys::new(Keys::generate())));
    let refused = restore(&dest, &other, Timestamp::now(), &dir.path().join("y.db"), &mut |_, _| {}).await;
    assert!(refused.is_err(), "other keys open nothing");
}

#[tokio::test]
async fn the_backup_folder_holds_no_statement_in_the_clear_and_the_journal_stays_empty_without_backup() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.db");
    let keys: Arc<dyn KeySource> = Arc::new(FixedKeys::new(Keys::generate()));
    let store = SqlStore::open(&db, keys).await.unwrap();
    c::world(&store).await;
    let state = backup_state(&store).await.unwrap();
    assert!(!state.enabled && state.pending == 0, "no journal without a backup: {state:?}");
    // Opening the database again (every console command does) leaves matching triggers alone.
    let schema_version =
        || async { sqlx::query_scalar::<_, i64>("PRAGMA schema_version").fetch_one(store.pool()).await.unwrap() };
    let before = schema_version().await;
    let _again = SqlStore::open(&db, Arc::new(FixedKeys::new(Keys::generate()))).await.map(|_| ());
    assert_eq!(schema_version().await, before, "the triggers were not written again");

    let target = Target::Folder(dir.path().join("backup"));
    let shipper =
        Shipper::start(&store, dir.path(), std::slice::from_ref(&target), BackupPolicy::default()).await.unwrap();
    c::patient_update(&store).await;
    assert!(backup_state(&store).await.unwrap().pending > 0, "changes are journaled");
    shipper.ship_once().await.unwrap();
    shipper.snapshot().await.unwrap();
    let mut seen = 0;
    for entry in walk(&dir.path().join("backup")) {
        let bytes = std::fs::read(&entry).unwrap();
        seen += 1;
        for clear in ["INSERT INTO", "UPDATE ", "SQLite format 3", "pharmacy"] {
            assert!(!bytes.windows(clear.len()).any(|w| w == clear.as_bytes()), "{clear} in {}", entry.display());
        }
    }
    assert!(seen >= 2, "a segment and a snapshot were written");

    // A server started without backup stops the journal, and the next start begins a new history.
    let generation = shipper.generation().to_string();
    repeatrx_store::backup::disable(&store).await.unwrap();
    c::patient_update(&store).await;
    assert_eq!(backup_state(&store).await.unwrap().pending, 0);
    let again =
        Shipper::start(&store, dir.path(), std::slice::from_ref(&target), BackupPolicy::default()).await.unwrap();
    assert_ne!(again.generation(), generation, "a gap in the journal starts a new history");
    let same =
        Shipper::start(&store, dir.path(), std::slice::from_ref(&target), BackupPolicy::default()).await.unwrap();
    assert_eq!(same.generation(), again.generation(), "a restart goes on with the same history");

    // After an upgrade changed the tables, what the journal held goes to its own history, and a
    // new history starts (its statements would not fit the older snapshots).
    c::patient_update(&store).await;
    let pending = backup_state(&store).await.unwrap().pending;
    assert!(pending > 0);
    sqlx::query("UPDATE backup_state SET schema_version = schema_version - 1").execute(store.pool()).await.unwrap();
    let upgraded =
        Shipper::start(&store, dir.path(), std::slice::from_ref(&target), BackupPolicy::default()).await.unwrap();
    assert_ne!(upgraded.generation(), again.generation(), "a new history after a schema change");
    assert_eq!(backup_state(&store).await.unwrap().pending, 0);
    let cat = Destination::open(&target).unwrap().catalogue().await.unwrap();
    let shipped: i64 = cat.generations[again.generation()].segments.iter().map(|s| s.to - s.from + 1).sum();
    assert!(shipped >= pending, "the journal went to the history it belongs to");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// P4 and P13 together: the history kept reaches back `history` and no further. Older snapshots
/// and the journal before the oldest snapshot still needed are deleted, so copies of erased
/// patients' data in backups are purged on schedule, while any moment inside the history can
/// still be restored.
#[tokio::test]
async fn pruning_keeps_exactly_the_history_needed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.db");
    let keys: Arc<dyn KeySource> = Arc::new(FixedKeys::new(Keys::generate()));
    let store = SqlStore::open(&db, keys.clone()).await.unwrap();
    let target = Target::Folder(dir.path().join("backup"));
    let history = jiff::SignedDuration::from_hours(1);
    let policy = BackupPolicy { history, ..BackupPolicy::default() };
    let shipper = Shipper::start(&store, dir.path(), std::slice::from_ref(&target), policy).await.unwrap();
    c::world(&store).await;
    let first = shipper.snapshot().await.unwrap();
    c::patient_update(&store).await;
    shipper.ship_once().await.unwrap();
    let between = Timestamp::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    c::order_round_trip(&store).await;
    shipper.ship_once().await.unwrap();
    let second = shipper.snapshot().await.unwrap();
    c::patient_update(&store).await;
    shipper.ship_once().await.unwrap();
    let dest = Destination::open(&target).unwrap();
    let sealer = Sealer::new(keys);
    let count = |cat: &repeatrx_store::backup::Catalogue| {
        let g = &cat.generations[shipper.generation()];
        (g.snapshots.len(), g.segments.len())
    };
    let all = count(&dest.catalogue().await.unwrap());
    assert_eq!(all.0, 2);

    // An hour after `between`: the first snapshot is still the base of the oldest moment kept.
    shipper.prune(between + history).await.unwrap();
    assert_eq!(count(&dest.catalogue().await.unwrap()), all, "nothing the history needs goes");
    let into = dir.path().join("at-between.db");
    restore(&dest, &sealer, between, &into, &mut |_, _| {}).await.unwrap();

    // An hour after the second snapshot: the first snapshot and the journal it needed go.
    shipper.prune(second.taken + history).await.unwrap();
    let cat = dest.catalogue().await.unwrap();
    let g = &cat.generations[shipper.generation()];
    assert_eq!(g.snapshots, vec![second.clone()], "only the snapshot the history starts from");
    assert!(g.segments.iter().all(|s| s.to > second.seq) && !g.segments.is_empty(), "{:?}", g.segments);
    assert!(first.seq < second.seq);
    let gone = restore(&dest, &sealer, between, &dir.path().join("gone.db"), &mut |_, _| {}).await;
    assert!(gone.is_err(), "a moment before the history kept cannot be restored any more");
    restore(&dest, &sealer, Timestamp::now(), &dir.path().join("now.db"), &mut |_, _| {}).await.unwrap();
    assert_eq!(common::content(&dir.path().join("now.db")).await, common::content(&db).await);
}
