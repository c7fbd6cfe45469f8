//! Rebuilding a database as it was at a given moment: the newest snapshot taken by then, then the
//! journal's transactions in order, each only if it had committed by then. A transaction is never
//! applied in part.
use super::object::open_object;
use super::{map_err, Destination, JournalRow, SegmentObject, SnapshotObject};
use crate::sealing::Sealer;
use crate::{StoreError, StoreResult};
use jiff::Timestamp;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{ConnectOptions, Connection, SqliteConnection};
use std::path::Path;

async fn connect(file: &Path) -> StoreResult<SqliteConnection> {
    SqliteConnectOptions::new()
        .filename(file)
        .create_if_missing(false)
        .foreign_keys(false)
        .journal_mode(SqliteJournalMode::Delete)
        // The replay is one transaction over the whole journal: with SQLite's 2 MiB cache its
        // changed pages spill into the file (their originals into the rollback journal) long
        // before it commits.
        .pragma("cache_size", "-262144")
        .connect()
        .await
        .map_err(map_err)
}

/// Makes a fresh `VACUUM INTO` copy a self-contained snapshot: its journal rows are already in
/// its tables, so they go, journaling is off in it (a restored copy starts its own history), and
/// it is one file. Returns the last journal number it holds.
pub(crate) async fn seal_off_copy(file: &Path) -> StoreResult<i64> {
    let mut conn = connect(file).await?;
    let seq: i64 =
        sqlx::query_scalar("SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'backup_journal'), 0)")
            .fetch_one(&mut conn)
            .await
            .map_err(map_err)?;
    sqlx::query("DELETE FROM backup_journal").execute(&mut conn).await.map_err(map_err)?;
    sqlx::query(
        "UPDATE backup_state SET enabled = 0, generation = '', snapshot_at = NULL, last_error = NULL WHERE id = 1",
    )
    .execute(&mut conn)
    .await
    .map_err(map_err)?;
    conn.close().await.map_err(map_err)?;
    Ok(seq)
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    pub generation: String,
    pub snapshot_taken: Timestamp,
    pub transactions: u64,
    pub statements: u64,
    /// The commit time of the newest change restored (the snapshot's time if none).
    pub restored_to: Timestamp,
    /// Whether the history shipped so far reaches `to` (false: the newest shipped change is
    /// older than `to`, and the copy is as of that change).
    pub reaches_target: bool,
}

/// The snapshot and segments that rebuild `to`, from one destination's catalogue.
pub struct Plan {
    pub snapshot: SnapshotObject,
    pub segments: Vec<SegmentObject>,
}

pub async fn plan(dest: &Destination, to: Timestamp) -> StoreResult<Plan> {
    let cat = dest.catalogue().await?;
    let oldest = cat.generations.values().flat_map(|g| g.snapshots.iter()).map(|s| s.taken).min();
    // The history that was live at `to`: the newest generation with a snapshot taken by then.
    let (generation, snapshot) = cat
        .generations
        .iter()
        .rev()
        .find_map(|(name, g)| g.snapshots.iter().filter(|s| s.taken <= to).max_by_key(|s| s.seq).map(|s| (name, s)))
        .ok_or_else(|| {
            StoreError::Database(match oldest {
                Some(t) => format!("the {} holds nothing as old as {to}: its oldest snapshot is of {t}", dest.label()),
                None => format!("the {} holds no RepeatRx backup", dest.label()),
            })
        })?;
    let g = &cat.generations[generation];
    // Walk the segments from just after the snapshot; a re-shipped segment may overlap another.
    let mut cursor = snapshot.seq + 1;
    let mut segments = Vec::new();
    loop {
        let next = g.segments.iter().filter(|s| s.from <= cursor && s.to >= cursor).max_by_key(|s| s.to);
        match next {
            Some(s) => {
                cursor = s.to + 1;
                let done = s.last_at > to;
                segments.push(s.clone());
                if done {
                    break;
                }
            }
            None => {
                if let Some(after) = g.segments.iter().filter(|s| s.from > cursor).map(|s| s.from).min() {
                    return Err(StoreError::Corrupt(format!(
                        "the {} is missing journal entries {cursor} to {} of history {generation}",
                        dest.label(),
                        after - 1
                    )));
                }
                break;
            }
        }
    }
    Ok(Plan { snapshot: snapshot.clone(), segments })
}

/// Rebuilds into `into` (a file that must not exist yet) the database as it was at `to`, from
/// `dest`, reporting (done, total) steps to `progress`.
pub async fn restore(
    dest: &Destination,
    sealer: &Sealer,
    to: Timestamp,
    into: &Path,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> StoreResult<RestoreReport> {
    if into.exists() {
        return Err(StoreError::Database(format!("{} exists already; restore into a new file", into.display())));
    }
    let plan = plan(dest, to).await?;
    let total = 1 + plan.segments.len() as u64;
    progress(0, total);
    let name = plan.snapshot.name();
    if let Err(e) = dest.get_opened_into(sealer, &name, into).await {
        let _ = std::fs::remove_file(into);
        return Err(e);
    }
    progress(1, total);

    let mut conn = connect(into).await?;
    let mut last_committed: i64 =
        sqlx::query_scalar("SELECT txn FROM backup_state WHERE id = 1").fetch_one(&mut conn).await.map_err(map_err)?;
    let mut report = RestoreReport {
        generation: plan.snapshot.generation.clone(),
        snapshot_taken: plan.snapshot.taken,
        transactions: 0,
        statements: 0,
        restored_to: plan.snapshot.taken,
        reaches_target: false,
    };
    let mut tx = conn.begin().await.map_err(map_err)?;
    let mut pending: Vec<String> = Vec::new();
    let mut next_seq = plan.snapshot.seq + 1;
    'segments: for (i, segment) in plan.segments.iter().enumerate() {
        let name = segment.name();
        let body = open_object(sealer, &name, &dest.get(&name).await?)?;
        let rows: Vec<JournalRow> = serde_json::from_slice(&body)
            .map_err(|e| StoreError::Corrupt(format!("the backup object {name} is not a journal: {e}")))?;
        for row in rows {
            if row.seq < next_seq {
                continue;
            }
            next_seq = row.seq + 1;
            let at = Timestamp::from_microsecond(row.at)
                .map_err(|e| StoreError::Corrupt(format!("a time in {name}: {e}")))?;
            if at > to {
                report.reaches_target = true;
                if row.op == "commit" || row.txn <= last_committed {
                    break 'segments;
                }
            }
            match (row.op.as_str(), row.stmt) {
                ("commit", _) => {
                    run_all(&mut tx, &pending).await?;
                    report.statements += pending.len() as u64;
                    pending.clear();
                    last_committed = row.txn;
                    report.transactions += 1;
                    report.restored_to = at;
                }
                ("row", Some(stmt)) if row.txn > last_committed => pending.push(stmt),
                // A single statement outside a write transaction: its own transaction.
                ("row", Some(stmt)) => {
                    run_all(&mut tx, std::slice::from_ref(&stmt)).await?;
                    report.statements += 1;
                    report.transactions += 1;
                    report.restored_to = at;
                }
                _ => return Err(StoreError::Corrupt(format!("the backup object {name} holds an unknown entry"))),
            }
        }
        progress(2 + i as u64, total);
    }
    sqlx::query("UPDATE backup_state SET txn = $1 WHERE id = 1")
        .bind(last_committed)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    tx.commit().await.map_err(map_err)?;
    let problems: Vec<String> = sqlx::query_scalar("SELECT DISTINCT \"table\" FROM pragma_foreign_key_check")
        .fetch_all(&mut conn)
        .await
        .map_err(map_err)?;
    conn.close().await.map_err(map_err)?;
    if !problems.is_empty() {
        return Err(StoreError::Corrupt(format!(
            "the restored copy {} breaks references in {}: the backup is incomplete",
            into.display(),
            problems.join(", ")
        )));
    }
    progress(total, total);
    Ok(report)
}

/// A transaction's statements in one call: each statement sent on its own was a round trip to the
/// driver's thread, and a journal holds one statement per row changed. The statements are whole
/// ones the journal's triggers wrote (values as `quote()` literals), from an object whose seal
/// was checked, so they are joined as they are.
async fn run_all(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, stmts: &[String]) -> StoreResult<()> {
    if stmts.is_empty() {
        return Ok(());
    }
    sqlx::raw_sql(&stmts.join(";\n")).execute(&mut **tx).await.map_err(map_err)?;
    Ok(())
}
