//! One pass of the order-retention job (P10) on a data set itself, timed: what the job costs at
//! the set's scale. It deletes what the job deletes.
use repeatrx_app::jobs::RetentionPass;
use repeatrx_app::{App, Settings};
use repeatrx_domain::clock::SystemClock;
use repeatrx_store::sql::SqlStore;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs the pass the server's job runs, through the same `App` method.
pub async fn pass(store: SqlStore) -> anyhow::Result<(RetentionPass, Duration)> {
    let app = App::new(Arc::new(store), Arc::new(SystemClock), Settings::defaults_for("https://bench.invalid"));
    let started = Instant::now();
    let pass = app.purge_order_history().await?;
    Ok((pass, started.elapsed()))
}

/// What a pass did, as `generate` and `retention` print it.
pub fn summary(pass: &RetentionPass, took: Duration) -> String {
    format!(
        "retention pass: looked at {} patients, purged {} orders in {:.1} s",
        pass.patients,
        pass.purged,
        took.as_secs_f64()
    )
}
