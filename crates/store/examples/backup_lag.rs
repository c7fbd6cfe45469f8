//! How long a committed change waits before it is in the backup (the data-loss window of
//! continuous backup, P4): a SQLite store with a backup folder and the real shipper runs a steady
//! workload (the conformance suite's order round trips, back to back: the single writer is busy
//! all the time) while a marker is committed every 20 ms; each marker's lag is the time from its
//! commit until the backup holds it (seen by a reader that never waits for the write lock).
//!
//!     cargo run --release -p repeatrx-store --example backup_lag [SECONDS]
//!
//! Results go to BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use repeatrx_crypto::{FixedKeys, Keys};
use repeatrx_store::backup::{backup_state, BackupPolicy, Shipper, Target};
use repeatrx_store::conformance as c;
use repeatrx_store::sql::SqlStore;
use repeatrx_store::Store;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::open(&dir.path().join("live.db"), Arc::new(FixedKeys::new(Keys::generate()))).await.unwrap();
    c::world(&store).await;
    let target = Target::Folder(dir.path().join("backup"));
    let shipper = Shipper::start(&store, dir.path(), &[target], BackupPolicy::default()).await.unwrap();
    let task = shipper.spawn();

    let until = Instant::now() + Duration::from_secs(seconds);
    let load = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut rounds = 0u64;
            while Instant::now() < until {
                c::order_round_trip(&store).await;
                rounds += 1;
            }
            rounds
        })
    };
    // The writer commits a marker every 20 ms and notes the journal position it reached; the
    // observer, which takes no write lock, sees when the backup holds that position.
    let markers: Arc<std::sync::Mutex<Vec<(i64, Instant)>>> = Arc::default();
    let writer = {
        let (store, markers) = (store.clone(), markers.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < until {
                store.set_meta("backup-lag-marker", &n.to_string()).await.unwrap();
                let seq: i64 = sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'backup_journal'")
                    .fetch_one(store.pool())
                    .await
                    .unwrap();
                markers.lock().unwrap().push((seq, Instant::now()));
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let mut lags: Vec<f64> = Vec::new();
    let mut measured = 0usize;
    while Instant::now() < until + Duration::from_secs(3) {
        let shipped = backup_state(&store).await.unwrap().shipped_seq;
        let seen = Instant::now();
        {
            let markers = markers.lock().unwrap();
            while measured < markers.len() && markers[measured].0 <= shipped {
                lags.push(seen.duration_since(markers[measured].1).as_secs_f64() * 1000.0);
                measured += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    writer.await.unwrap();
    let rounds = load.await.unwrap();
    task.abort();
    lags.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| lags[((lags.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{} s, {} order round trips alongside, {} markers measured: lag p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        seconds,
        rounds,
        lags.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
}
