//! `repeatrx restore` and `repeatrx backup status`: the console side of continuous backup.
use crate::startup;
use anyhow::{bail, Context};
use jiff::Timestamp;
use repeatrx_app::App;
use repeatrx_domain::clock::SystemClock;
use repeatrx_store::backup::restore::{restore, RestoreReport};
use repeatrx_store::backup::{backup_state, BackupState, Destination, Target};
use repeatrx_store::crypto::KeySource;
use repeatrx_store::sealing::Sealer;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a restore needs besides the moment: where the backups are, the keys, and the erasure
/// ledger to apply to the copy.
pub struct RestoreSource {
    pub targets: Vec<Target>,
    pub keys: Arc<dyn KeySource>,
    pub erasure_ledger: Option<PathBuf>,
}

/// What `restore_into` made.
pub struct Restored {
    pub database: PathBuf,
    pub report: RestoreReport,
    pub destination: String,
    pub erased_again: u64,
}

/// The file a restore writes in its folder.
pub const RESTORED_FILE: &str = "repeatrx.db";

/// Rebuilds the database as of `to` in the new folder `into`, from the first destination that
/// answers, then erases again everyone the erasure ledger names (erasure survives restore).
pub async fn restore_into(
    source: &RestoreSource,
    to: Timestamp,
    into: &Path,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> anyhow::Result<Restored> {
    if to > Timestamp::now() {
        bail!("{to} is in the future; give a moment in the past (UTC), e.g. 2026-11-22T10:15:30Z");
    }
    if into.exists() && std::fs::read_dir(into).map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!("{} is not empty: restore into a new folder, then point the server at it", into.display());
    }
    std::fs::create_dir_all(into).with_context(|| format!("could not create {}", into.display()))?;
    let database = into.join(RESTORED_FILE);
    let sealer = Sealer::new(source.keys.clone());
    let mut failures = Vec::new();
    let mut done = None;
    for target in &source.targets {
        let dest = Destination::open(target)?;
        match restore(&dest, &sealer, to, &database, progress).await {
            Ok(report) => {
                done = Some((report, dest.label().to_string()));
                break;
            }
            // Nothing usable there: try the other destination, from scratch.
            Err(e) => {
                let _ = std::fs::remove_file(&database);
                failures.push(format!("{}: {e}", dest.label()));
            }
        }
    }
    let Some((report, destination)) = done else {
        bail!("could not restore: {}", failures.join("; "));
    };
    let mut erased_again = 0;
    if let Some(ledger) = &source.erasure_ledger {
        let store = startup::open_store(&format!("sqlite://{}", database.display()), source.keys.clone()).await?;
        let mut settings = startup::console_settings();
        settings.erasure_ledger = Some(repeatrx_store::ledger::ErasureLedger::new(ledger.clone()));
        erased_again = App::new(store, Arc::new(SystemClock), settings)
            .reapply_erasures()
            .await
            .context("could not re-apply the erasure ledger to the restored copy")?;
    }
    Ok(Restored { database, report, destination, erased_again })
}

/// One destination as `backup status` shows it.
pub struct DestinationStatus {
    pub label: String,
    pub problem: Option<String>,
    pub snapshots: usize,
    pub newest_snapshot: Option<Timestamp>,
    pub oldest_snapshot: Option<Timestamp>,
    pub segments: usize,
    pub newest_change: Option<Timestamp>,
}

pub struct BackupStatus {
    pub state: BackupState,
    pub destinations: Vec<DestinationStatus>,
}

impl BackupStatus {
    /// How far the newest shipped change lags behind the oldest change waiting to go.
    pub fn lag(&self, now: Timestamp) -> jiff::SignedDuration {
        self.state.oldest_pending_at.map(|t| now.duration_since(t)).unwrap_or_default()
    }
}

pub async fn status(database_url: &str, keys: Arc<dyn KeySource>, targets: &[Target]) -> anyhow::Result<BackupStatus> {
    let store = startup::open_sql_store(database_url, keys).await?;
    let state = backup_state(&store).await?;
    let mut destinations = Vec::new();
    for target in targets {
        let mut d = DestinationStatus {
            label: target.label(),
            problem: None,
            snapshots: 0,
            newest_snapshot: None,
            oldest_snapshot: None,
            segments: 0,
            newest_change: None,
        };
        match Destination::open(target) {
            Err(e) => d.problem = Some(e.to_string()),
            Ok(dest) => match dest.catalogue().await {
                Err(e) => d.problem = Some(e.to_string()),
                Ok(cat) => {
                    let snapshots = cat.generations.values().flat_map(|g| g.snapshots.iter());
                    d.snapshots = snapshots.clone().count();
                    d.newest_snapshot = snapshots.clone().map(|s| s.taken).max();
                    d.oldest_snapshot = snapshots.map(|s| s.taken).min();
                    let segments = cat.generations.values().flat_map(|g| g.segments.iter());
                    d.segments = segments.clone().count();
                    d.newest_change = segments.map(|s| s.last_at).max();
                }
            },
        }
        destinations.push(d);
    }
    Ok(BackupStatus { state, destinations })
}

/// A time as operators read it: Europe/London, to the millisecond.
pub fn local(t: Timestamp) -> String {
    t.in_tz("Europe/London")
        .map(|z| z.strftime("%Y-%m-%d %H:%M:%S%.3f %Z").to_string())
        .unwrap_or_else(|_| t.to_string())
}
