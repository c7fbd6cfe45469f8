//! Continuous backup to two destinations at once, one of them an S3-compatible bucket: a real S3
//! server on this machine (moto's, which test.sh installs; `REPEATRX_TEST_S3_SERVER` names its
//! `moto_server`), reached through `object_store` over HTTP on loopback. The copy restored from
//! the bucket equals the live database and the copy restored from the folder.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use repeatrx_crypto::{FixedKeys, KeySource, Keys};
use repeatrx_store::backup::restore::restore;
use repeatrx_store::backup::{BackupPolicy, Destination, S3Target, Shipper, Target};
use repeatrx_store::conformance as c;
use repeatrx_store::sealing::Sealer;
use repeatrx_store::sql::SqlStore;
use repeatrx_store::Store;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

struct S3Server {
    child: Child,
    endpoint: String,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_s3() -> S3Server {
    let program = std::env::var("REPEATRX_TEST_S3_SERVER").unwrap_or_else(|_| "moto_server".into());
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).unwrap().port();
    let child = Command::new(&program)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("the S3 test server `{program}` could not start ({e}); test.sh installs it (pip: moto[server]) and sets REPEATRX_TEST_S3_SERVER")
        });
    let server = S3Server { child, endpoint: format!("http://127.0.0.1:{port}") };
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the S3 test server did not answer on {}", server.endpoint);
}

/// Creates a bucket (object_store does not; moto takes an unsigned request).
async fn create_bucket(endpoint: &str, bucket: &str) {
    let stream = tokio::net::TcpStream::connect(endpoint.trim_start_matches("http://")).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = endpoint.trim_start_matches("http://");
    write
        .write_all(
            format!("PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = String::new();
    read.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "bucket created: {answer}");
}

/// A bucket on the test server, reached over plain HTTP on loopback.
fn bucket_on(s3: &S3Server, bucket: &str, prefix: Option<&str>) -> Target {
    Target::S3(S3Target {
        bucket: bucket.into(),
        endpoint: Some(s3.endpoint.clone()),
        region: "eu-west-2".into(),
        access_key_id: "test".into(),
        secret_access_key: "test".into(),
        prefix: prefix.map(str::to_string),
        allow_http: true,
    })
}

#[tokio::test]
async fn a_bucket_and_a_folder_both_restore_the_live_database() {
    let s3 = start_s3().await;
    create_bucket(&s3.endpoint, "repeatrx-backup").await;
    let bucket = bucket_on(&s3, "repeatrx-backup", Some("pharmacy-group"));
    let dir = tempfile::tempdir().unwrap();
    let folder = Target::Folder(dir.path().join("backup"));
    let db = dir.path().join("live.db");
    let keys: Arc<dyn KeySource> = Arc::new(FixedKeys::new(Keys::generate()));
    let store = SqlStore::open(&db, keys.clone()).await.unwrap();
    let shipper =
        Shipper::start(&store, dir.path(), &[bucket.clone(), folder.clone()], BackupPolicy::default()).await.unwrap();
    c::world(&store).await;
    shipper.snapshot().await.unwrap();
    c::order_round_trip(&store).await;
    c::erasure_deletes_the_patient_and_everything_of_theirs(&store).await;
    shipper.ship_once().await.unwrap();
    c::save_order_bumps_version_and_appends_transitions(&store).await;
    while shipper.ship_once().await.unwrap() > 0 {}
    let live = common::content(&db).await;

    let sealer = Sealer::new(keys);
    let now = jiff::Timestamp::now();
    for (target, file) in [(&bucket, "from-bucket.db"), (&folder, "from-folder.db")] {
        let dest = Destination::open(target).unwrap();
        let cat = dest.catalogue().await.unwrap();
        assert_eq!(cat.generations.len(), 1, "{}", dest.label());
        let into = dir.path().join(file);
        restore(&dest, &sealer, now, &into, &mut |_, _| {}).await.unwrap();
        assert_eq!(common::content(&into).await, live, "restored from {}", dest.label());
    }

    // A bucket that cannot be reached keeps the journal until it can.
    drop(s3);
    c::patient_update(&store).await;
    assert!(shipper.ship_once().await.is_err(), "the bucket is gone");
    let state = repeatrx_store::backup::backup_state(&store).await.unwrap();
    assert!(state.pending > 0 && state.last_error.is_some(), "kept, and the problem recorded: {state:?}");
}

/// A snapshot bigger than one multipart part (8 MiB) goes up in parts, to the bucket and the
/// folder, and restores whole from each.
#[tokio::test]
async fn a_snapshot_larger_than_one_upload_part_restores_from_a_bucket_and_a_folder() {
    let s3 = start_s3().await;
    create_bucket(&s3.endpoint, "repeatrx-big").await;
    let bucket = bucket_on(&s3, "repeatrx-big", None);
    let dir = tempfile::tempdir().unwrap();
    let folder = Target::Folder(dir.path().join("backup"));
    let db = dir.path().join("live.db");
    let keys: Arc<dyn KeySource> = Arc::new(FixedKeys::new(Keys::generate()));
    let store = SqlStore::open(&db, keys.clone()).await.unwrap();
    c::world(&store).await;
    // About 20 MiB that does not repeat, so no layer could shrink it below one part.
    for n in 0..20 {
        let filler: String = (0..(1 << 20) / 36).map(|_| uuid::Uuid::new_v4().to_string()).collect();
        store.set_meta(&format!("filler-{n}"), &filler).await.unwrap();
    }
    // Its size as SQLite counts it: much of it may still be in the WAL, not yet in the file.
    let pages: i64 = sqlx::query_scalar("PRAGMA page_count").fetch_one(store.pool()).await.unwrap();
    let page_size: i64 = sqlx::query_scalar("PRAGMA page_size").fetch_one(store.pool()).await.unwrap();
    assert!(pages * page_size > 16 << 20, "the database outgrew two parts");
    let shipper =
        Shipper::start(&store, dir.path(), &[bucket.clone(), folder.clone()], BackupPolicy::default()).await.unwrap();
    shipper.snapshot().await.unwrap();
    c::order_round_trip(&store).await;
    while shipper.ship_once().await.unwrap() > 0 {}
    let live = common::content(&db).await;

    let sealer = Sealer::new(keys);
    for (target, file) in [(&bucket, "from-bucket.db"), (&folder, "from-folder.db")] {
        let dest = Destination::open(target).unwrap();
        let into = dir.path().join(file);
        restore(&dest, &sealer, jiff::Timestamp::now(), &into, &mut |_, _| {}).await.unwrap();
        assert_eq!(common::content(&into).await, live, "restored from {}", dest.label());
    }
}
