//! The SQLite adapter against the shared conformance suite, plus what only a file database has:
//! durability settings, reopening, and opening errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use repeatrx_crypto::{FixedKeys, KeyFile, KeySource, Keys};
use repeatrx_store::conformance;
use repeatrx_store::sql::SqlStore;
use repeatrx_store::{Store, StoreError};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repeatrx.sqlite3");
    (dir, path)
}

/// The key file beside the database (created on first use), or keys in memory when the folder
/// does not exist.
fn keys_for(path: &Path) -> Arc<dyn KeySource> {
    match path.parent().filter(|d| d.is_dir()) {
        Some(dir) => Arc::new(KeyFile::open_or_create(&dir.join("repeatrx.keys")).unwrap()),
        None => Arc::new(FixedKeys::new(Keys::generate())),
    }
}

async fn open(path: &Path) -> Result<SqlStore, StoreError> {
    SqlStore::open(path, keys_for(path)).await
}

#[tokio::test]
async fn conformance_suite() {
    let (_dir, path) = temp_db();
    let store = open(&path).await.unwrap();
    conformance::run_all(&store).await;
    // Every check tolerates the data of earlier runs: run the whole suite again on the same file.
    conformance::run_all(&store).await;
}

#[tokio::test]
async fn checks_can_run_concurrently_on_one_database() {
    let (_dir, path) = temp_db();
    let store = open(&path).await.unwrap();
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

#[tokio::test]
async fn data_survives_closing_and_reopening() {
    let (_dir, path) = temp_db();
    let store = open(&path).await.unwrap();
    store.set_meta("seeded", "yes").await.unwrap();
    store.pool().close().await;
    drop(store);

    let again = open(&path).await.unwrap();
    assert_eq!(again.get_meta("seeded").await.unwrap().as_deref(), Some("yes"));
    conformance::health(&again).await;
}

#[tokio::test]
async fn durability_settings_are_applied() {
    let (_dir, path) = temp_db();
    let store = open(&path).await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(store.pool()).await.unwrap();
    assert_eq!(mode.to_lowercase(), "wal");
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(store.pool()).await.unwrap();
    assert_eq!(sync, 2, "synchronous=FULL");
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys").fetch_one(store.pool()).await.unwrap();
    assert_eq!(fk, 1);
    let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout").fetch_one(store.pool()).await.unwrap();
    assert_eq!(busy, 5000);
    let checkpoint_at: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint").fetch_one(store.pool()).await.unwrap();
    assert_eq!(checkpoint_at, 10_000, "the WAL is folded in every 10,000 pages, not SQLite's 1,000");
}

/// The WAL is folded into the database file beside the writers, not only by the commit that takes
/// it past 10,000 pages: a few megabytes written, and no commit after them, reach the file.
#[tokio::test]
async fn the_wal_is_checkpointed_beside_the_writers() {
    let (_dir, path) = temp_db();
    let store = open(&path).await.unwrap();
    let before = std::fs::metadata(&path).unwrap().len();
    let filler = "x".repeat(1 << 20);
    for n in 0..4 {
        store.set_meta(&format!("filler {n}"), &filler).await.unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut after = before;
    while after < before + (4 << 20) && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        after = std::fs::metadata(&path).unwrap().len();
    }
    assert!(after >= before + (4 << 20), "the database file grew from {before} to {after} bytes in 10 s");
}

/// The store's background tasks (group commits, checkpoints) end with the last copy of the store,
/// and with them the pool: nothing of this process holds the database file open after it.
#[tokio::test]
async fn a_dropped_store_lets_go_of_its_database_file() {
    let (_dir, path) = temp_db();
    let store = open(&path).await.unwrap();
    store.set_meta("written", "before the store is dropped").await.unwrap();
    assert!(!handles_on(&path).is_empty(), "the open store holds the file (or the check sees nothing)");
    drop(store);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut open_on = handles_on(&path);
    while !open_on.is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        open_on = handles_on(&path);
    }
    assert!(open_on.is_empty(), "10 s after the store was dropped, still open: {open_on:?}");
}

/// This process's open file descriptors on the database file, its WAL or its shared memory.
fn handles_on(db: &Path) -> Vec<PathBuf> {
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    let shm = PathBuf::from(format!("{}-shm", db.display()));
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| *target == db || *target == wal || *target == shm)
        .collect()
}

/// The bundled SQLite is built by the flags in `.cargo/config.toml`: without memory statistics
/// and without one page-cache pool for all connections, each of which takes a process-wide lock
/// that the server's connection threads queued for under load.
#[tokio::test]
async fn sqlite_is_built_without_process_wide_locks() {
    let options = compile_options().await;
    assert!(options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"), "{options:?}");
    assert!(!options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"), "{options:?}");
    assert!(options.iter().any(|o| o == "THREADSAFE=1"), "{options:?}");
}

/// Also by `.cargo/config.toml`: a write's sub-journal (the pages its savepoints and statements
/// may have to undo) stays in memory up to 8 MiB instead of spilling to a temporary file past
/// 64 KiB, which every group commit of orders did.
#[tokio::test]
async fn sqlite_keeps_sub_journals_in_memory() {
    let options = compile_options().await;
    assert!(options.iter().any(|o| o == "STMTJRNL_SPILL=8388608"), "{options:?}");
}

/// The options the bundled SQLite was compiled with, as a store's connection reports them.
async fn compile_options() -> Vec<String> {
    let (_dir, path) = temp_db();
    let store = open(&path).await.unwrap();
    sqlx::query_scalar("PRAGMA compile_options").fetch_all(store.pool()).await.unwrap()
}

/// A server's writers take turns before SQLite's lock: one that cannot have its turn within the
/// busy timeout is told the database is busy (it does not wait for ever), and once the writer
/// holding the turn commits, the next one goes ahead.
#[tokio::test]
async fn a_writer_waits_its_turn_no_longer_than_the_busy_timeout() {
    let (_dir, path) = temp_db();
    let store = open(&path).await.unwrap();
    let w = conformance::world(&store).await;
    let t = jiff::Timestamp::now();
    let session = |n: u32| repeatrx_store::SessionRecord {
        token_hash: format!("{n:064x}"),
        user_id: w.pa.user.id,
        kind: repeatrx_store::SessionKind::Api,
        csrf_token: "csrf".into(),
        created_at: t,
        last_seen_at: t,
        expires_at: t + jiff::SignedDuration::from_hours(1),
        user_agent: "turns".into(),
        stage: repeatrx_domain::security::SessionStage::Full,
        address: "127.0.0.1".into(),
    };
    // A bulk load keeps its write transaction, and so its turn, open until it finishes.
    let mut load = store.bulk_load(100);
    load.session(&session(1)).await.unwrap();
    let started = std::time::Instant::now();
    match store.insert_session(&session(2)).await {
        Err(StoreError::Unavailable(m)) => assert!(m.contains("busy"), "{m}"),
        other => panic!("expected busy, got {other:?}"),
    }
    assert!(started.elapsed() >= std::time::Duration::from_secs(4), "it waited for the busy timeout first");

    let waiting = tokio::spawn({
        let store = store.clone();
        let next = session(3);
        async move { store.insert_session(&next).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    load.finish().await.unwrap();
    waiting.await.unwrap().unwrap();
    for (n, stored) in [(1, true), (2, false), (3, true)] {
        assert_eq!(store.session(&session(n).token_hash).await.unwrap().is_some(), stored, "session {n}");
    }
}

#[tokio::test]
async fn opening_twice_runs_migrations_once() {
    let (_dir, path) = temp_db();
    let first = open(&path).await.unwrap();
    let second = open(&path).await.unwrap();
    conformance::meta_round_trip(&second).await;
    conformance::health(&first).await;
    let applied: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations").fetch_one(second.pool()).await.unwrap();
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite")).unwrap().count();
    assert_eq!(applied, i64::try_from(files).unwrap(), "each migration once");
}

#[tokio::test]
async fn foreign_keys_are_enforced() {
    let (_dir, path) = temp_db();
    let store = open(&path).await.unwrap();
    let result = sqlx::query("INSERT INTO sessions (token_hash, user_id, kind, csrf_token, created_at, last_seen_at, expires_at, user_agent) VALUES ('t', 'no-such-user', 'browser', 'c', 0, 0, 0, '')")
        .execute(store.pool())
        .await;
    assert!(result.is_err(), "a session of an unknown user must be refused");
}

#[tokio::test]
async fn a_missing_directory_is_a_clear_error() {
    let (dir, _) = temp_db();
    let path = dir.path().join("no").join("such").join("dir").join("db.sqlite3");
    match open(&path).await {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.contains("does not exist"), "{message}");
            assert!(message.contains("dir"), "{message}");
        }
        other => panic!("expected Unavailable, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_an_error_not_a_panic() {
    let (_dir, path) = temp_db();
    std::fs::write(&path, b"this is not an SQLite database, just some text that is long enough ......").unwrap();
    match open(&path).await {
        Err(StoreError::Corrupt(message)) => assert!(message.contains("damaged"), "{message}"),
        other => panic!("expected Corrupt, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn corrupt_rows_are_reported_not_panicked_on() {
    let (_dir, path) = temp_db();
    let store = open(&path).await.unwrap();
    sqlx::query("INSERT INTO pharmacies (id, name, ods_code, address, email, created_at) VALUES ('not-a-uuid', 'X', 'FA1', 'A', NULL, 0)")
        .execute(store.pool())
        .await
        .unwrap();
    assert!(matches!(store.list_pharmacies().await, Err(StoreError::Corrupt(_))));
}

#[tokio::test]
async fn the_audit_trail_refuses_changes_through_sql() {
    let (_dir, path) = temp_db();
    let store = open(&path).await.unwrap();
    conformance::audit_entries_form_one_chain(&store).await;
    for sql in ["UPDATE audit_log SET detail = 'edited' WHERE seq = 1", "DELETE FROM audit_log WHERE seq = 1"] {
        let err = sqlx::query(sql).execute(store.pool()).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
}

/// P2: what the file holds is ciphertext bound to its place (the shared check in `common`).
#[tokio::test]
async fn sealed_values_changed_or_moved_are_reported_not_opened() {
    let (_dir, path) = temp_db();
    common::sealed_values_changed_or_moved_are_reported_not_opened(&open(&path).await.unwrap()).await;
}

/// The key file is the only way in: the same database with other keys opens nothing, and says so
/// at start rather than on the first read.
#[tokio::test]
async fn a_database_refuses_a_key_file_it_was_not_made_with() {
    let (dir, path) = temp_db();
    let store = open(&path).await.unwrap();
    conformance::world(&store).await;
    store.pool().close().await;
    drop(store);
    let other = Arc::new(KeyFile::create(&dir.path().join("other.keys")).unwrap());
    match SqlStore::open(&path, other).await {
        Err(StoreError::Unavailable(m)) => assert!(m.contains("does not hold master key"), "{m}"),
        other => panic!("expected Unavailable, got {:?}", other.map(|_| ())),
    }
}

/// The data generator's bulk load writes what the one-at-a-time methods write.
#[tokio::test]
async fn bulk_loaded_records_read_back_as_written() {
    let (_dir, path) = temp_db();
    common::bulk_loaded_records_read_back_as_written(&open(&path).await.unwrap()).await;
}
