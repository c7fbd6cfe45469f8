//! The machine's limits each scenario is compared with, measured in the same run:
//! - the raw durable commit rate of the same database through the same driver and pool (a tight
//!   loop of transactions, each inserting what an order inserts: one order row, three item rows
//!   and four transition rows of ciphertext-sized text, one statement per table as the store
//!   writes them, committed durably), with as many concurrent writers as the load has clients,
//!   taking turns on SQLite as the store's writers do;
//! - argon2id hashes per second with the server's parameters on every core;
//! - the rate of a trivial axum handler behind the same rustls configuration and HTTPS server,
//!   under the same load driver (`repeatrx-bench trivial-server`, a process of its own).
use crate::load::{drive, Job, Measured, Offered};
use crate::server::Process;
use crate::watch::ProcessWatch;
use anyhow::Context;
use rand::distributions::Alphanumeric;
use rand::Rng;
use repeatrx_store::sql::{Engine, SqlStore};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RAW_TABLES: [&str; 3] = [
    "CREATE TABLE IF NOT EXISTS bench_raw_orders (id TEXT PRIMARY KEY, patient_id TEXT NOT NULL, note TEXT, \
     stage TEXT NOT NULL, created_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS bench_raw_items (id TEXT PRIMARY KEY, order_id TEXT NOT NULL, description TEXT NOT NULL, \
     state TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS bench_raw_transitions (id TEXT PRIMARY KEY, order_id TEXT NOT NULL, to_state TEXT NOT NULL, \
     at BIGINT NOT NULL, reason TEXT)",
];

/// Durable commits per second (and their latency) with `writers` concurrent writers for `window`.
pub async fn raw_commits(store: &SqlStore, writers: usize, window: Duration) -> anyhow::Result<Measured> {
    for sql in RAW_TABLES {
        sqlx::query(sql).execute(store.pool()).await.context("creating the raw-commit tables")?;
    }
    let end = Instant::now() + window;
    // SQLite has one writer at a time; writers left to its busy handler sleep past the moment the
    // lock is free and, past its timeout, fail with "database is locked". The store's writers
    // queue in the process instead (`SqlStore::write_turn`), and so do these.
    let turn = Arc::new(tokio::sync::Mutex::new(()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..writers {
        let (store, turn) = (store.clone(), turn.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < end {
                let started = Instant::now();
                let _turn = match store.engine() {
                    Engine::Sqlite => Some(turn.lock().await),
                    Engine::Postgres => None,
                };
                one_raw_commit(&store).await?;
                latencies.push(started.elapsed());
            }
            anyhow::Ok(latencies)
        });
    }
    let mut all = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        all.extend(joined??);
    }
    for table in ["bench_raw_transitions", "bench_raw_items", "bench_raw_orders"] {
        sqlx::query(&format!("DROP TABLE {table}")).execute(store.pool()).await?;
    }
    Ok(Measured::of_latencies(&all, window))
}

fn text(len: usize) -> String {
    rand::thread_rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

async fn one_raw_commit(store: &SqlStore) -> anyhow::Result<()> {
    let mut tx = match store.engine() {
        Engine::Sqlite => store.pool().begin_with("BEGIN IMMEDIATE").await?,
        Engine::Postgres => store.pool().begin().await?,
    };
    let order = uuid::Uuid::new_v4().to_string();
    let now = jiff::Timestamp::now().as_microsecond();
    sqlx::query("INSERT INTO bench_raw_orders (id, patient_id, note, stage, created_at) VALUES ($1, $2, NULL, $3, $4)")
        .bind(&order)
        .bind(uuid::Uuid::new_v4().to_string())
        .bind("submitted")
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let mut items = sqlx::query(
        "INSERT INTO bench_raw_items (id, order_id, description, state) \
         VALUES ($1, $2, $3, $4), ($5, $6, $7, $8), ($9, $10, $11, $12)",
    );
    for _ in 0..3 {
        items = items.bind(uuid::Uuid::new_v4().to_string()).bind(&order).bind(text(96)).bind("requested");
    }
    items.execute(&mut *tx).await?;
    let mut transitions = sqlx::query(
        "INSERT INTO bench_raw_transitions (id, order_id, to_state, at, reason) \
         VALUES ($1, $2, $3, $4, NULL), ($5, $6, $7, $8, NULL), ($9, $10, $11, $12, NULL), ($13, $14, $15, $16, NULL)",
    );
    for _ in 0..4 {
        transitions = transitions.bind(uuid::Uuid::new_v4().to_string()).bind(&order).bind("requested").bind(now);
    }
    transitions.execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// argon2id hashes per second on `threads` threads at once (the server's parameters).
pub async fn argon2_rate(threads: usize, window: Duration) -> anyhow::Result<f64> {
    tokio::task::spawn_blocking(move || {
        let done = AtomicU64::new(0);
        let started = Instant::now();
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut memory = repeatrx_app::auth::HashMemory::default();
                        while started.elapsed() < window {
                            repeatrx_app::auth::hash_now(&mut memory, b"a bench password of ordinary length")?;
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        anyhow::Ok(())
                    })
                })
                .collect();
            for w in workers {
                w.join().map_err(|_| anyhow::anyhow!("a hashing thread panicked"))??;
            }
            anyhow::Ok(())
        })?;
        Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
    })
    .await?
}

/// The trivial handler's rate and latency under `clients` clients.
/// Also gives the CPU time the handler's server spent meanwhile.
pub async fn trivial_handler(
    server: &Process,
    ca_pem: &[u8],
    clients: usize,
    warmup: Duration,
    window: Duration,
) -> anyhow::Result<(Measured, Option<Duration>)> {
    let jobs = (0..clients).map(|_| Job::Trivial).collect();
    let watch = ProcessWatch::start(server.pid())?;
    let mut driven = drive(jobs, &server.url, &watch, ca_pem, (warmup, window), Offered::ClosedLoop).await?;
    let measured = driven.kinds.remove("trivial handler").context("the trivial handler answered nothing")?;
    Ok((measured, driven.server_cpu))
}

/// `repeatrx-bench trivial-server`: one route answering "ok", behind RepeatRx's own rustls
/// configuration and HTTPS server, until killed.
pub async fn serve_trivial(listen: std::net::SocketAddr, cert: &[u8], key: &[u8]) -> anyhow::Result<()> {
    let router = axum::Router::new()
        .route("/", axum::routing::get(|| async { "ok" }))
        .route("/healthz", axum::routing::get(|| async { "ok" }));
    let tls = repeatrx_web::tls::server_config(cert, key)?;
    let running = repeatrx_web::server::start(router, tls, listen, None)?;
    println!("listening on {}", running.https_addr);
    std::future::pending::<()>().await;
    Ok(())
}
