//! The change journal of an SQLite database: triggers on every table write, in the same
//! transaction as the change, the statement that repeats it (`INSERT`, `UPDATE` or `DELETE` by
//! primary key, values as SQLite's own `quote()` literals) into `backup_journal`. Transactions are
//! told apart by a counter the store's write transactions raise at their start and a `commit` row
//! they add just before committing, stamped with the commit time; a single statement outside a
//! write transaction is its own transaction, stamped by its trigger.
//!
//! Triggers write only while `backup_state.enabled` is set (a server with a backup destination
//! sets it), so a database without backups keeps no journal.
use crate::{StoreError, StoreResult};
use sqlx::{AnyConnection, AnyPool};
use std::collections::BTreeMap;

/// Raised at the start of every write transaction (see module docs).
pub const BEGIN_TXN: &str = "UPDATE backup_state SET txn = txn + 1 WHERE enabled = 1";
/// Added just before a write transaction commits; `$1` is the commit time (unix microseconds).
pub const MARK_COMMIT: &str =
    "INSERT INTO backup_journal (txn, at, op) SELECT txn, $1, 'commit' FROM backup_state WHERE enabled = 1";

/// Tables whose changes are not journaled: the journal itself and SQLite's and sqlx's own.
fn journaled(table: &str) -> bool {
    !(table.starts_with("sqlite_") || table.starts_with("backup_") || table.starts_with("_sqlx"))
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'"col"=' || quote(ROW."col")` joined by `sep`, for a WHERE or SET clause.
fn assignments(columns: &[String], row: &str, sep: &str) -> String {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let lead = if i == 0 { String::new() } else { sep.to_string() };
            format!("'{}{}=' || quote({row}.{})", lead.replace('\'', "''"), ident(c).replace('\'', "''"), ident(c))
        })
        .collect::<Vec<_>>()
        .join(" || ")
}

/// The three triggers of one table.
fn triggers_for(table: &str, columns: &[String], keys: &[String]) -> [String; 3] {
    let t = ident(table);
    let tq = t.replace('\'', "''");
    let now = "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)";
    let record = |stmt: String| {
        format!(
            "INSERT INTO backup_journal (txn, at, op, stmt) SELECT txn, {now}, 'row', {stmt} FROM backup_state WHERE enabled = 1;"
        )
    };
    let column_list = columns.iter().map(|c| ident(c).replace('\'', "''")).collect::<Vec<_>>().join(",");
    let values = columns.iter().map(|c| format!("quote(NEW.{})", ident(c))).collect::<Vec<_>>().join(" || ',' || ");
    let insert = record(format!("'INSERT INTO {tq} ({column_list}) VALUES (' || {values} || ')'"));
    let update = record(format!(
        "'UPDATE {tq} SET ' || {} || ' WHERE ' || {}",
        assignments(columns, "NEW", ","),
        assignments(keys, "OLD", " AND ")
    ));
    let delete = record(format!("'DELETE FROM {tq} WHERE ' || {}", assignments(keys, "OLD", " AND ")));
    let name = |op: &str| ident(&format!("backup_journal_{table}_{op}"));
    [
        format!("CREATE TRIGGER {} AFTER INSERT ON {t} BEGIN {insert} END", name("insert")),
        format!("CREATE TRIGGER {} AFTER UPDATE ON {t} BEGIN {update} END", name("update")),
        format!("CREATE TRIGGER {} AFTER DELETE ON {t} BEGIN {delete} END", name("delete")),
    ]
}

/// Makes the journal triggers of every table match its columns, after migrations. Usually they
/// already do (the schema did not change), and nothing is written; otherwise all are made again
/// in one transaction.
pub async fn install_triggers(pool: &AnyPool) -> StoreResult<()> {
    let mut conn = pool.acquire().await.map_err(super::map_err)?;
    let wanted = wanted_triggers(&mut conn).await?;
    if existing_triggers(&mut conn).await? == wanted {
        return Ok(());
    }
    drop(conn);
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(super::map_err)?;
    // Read again under the write lock: another process may have just made them.
    let wanted = wanted_triggers(&mut tx).await?;
    let existing = existing_triggers(&mut tx).await?;
    if existing == wanted {
        return Ok(());
    }
    for name in existing.keys() {
        sqlx::query(&format!("DROP TRIGGER {}", ident(name))).execute(&mut *tx).await.map_err(super::map_err)?;
    }
    for sql in wanted.values() {
        sqlx::query(sql).execute(&mut *tx).await.map_err(super::map_err)?;
    }
    tx.commit().await.map_err(super::map_err)
}

/// The journal triggers the tables need, by name, as SQLite stores their SQL.
async fn wanted_triggers(conn: &mut AnyConnection) -> StoreResult<BTreeMap<String, String>> {
    let mut wanted = BTreeMap::new();
    for (table, columns, keys) in tables(conn).await? {
        if keys.is_empty() {
            return Err(StoreError::Database(format!(
                "table {table} has no primary key, so its changes cannot be journaled for backup"
            )));
        }
        for (op, sql) in ["insert", "update", "delete"].into_iter().zip(triggers_for(&table, &columns, &keys)) {
            wanted.insert(format!("backup_journal_{table}_{op}"), sql);
        }
    }
    Ok(wanted)
}

async fn existing_triggers(conn: &mut AnyConnection) -> StoreResult<BTreeMap<String, String>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'backup\\_journal\\_%' ESCAPE '\\'",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(super::map_err)?;
    Ok(rows.into_iter().collect())
}

/// Every journaled table with its columns and primary-key columns.
async fn tables(conn: &mut AnyConnection) -> StoreResult<Vec<(String, Vec<String>, Vec<String>)>> {
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .fetch_all(&mut *conn)
        .await
        .map_err(super::map_err)?;
    let mut out = Vec::new();
    for table in names.into_iter().filter(|t| journaled(t)) {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT name, CAST(pk AS BIGINT) FROM pragma_table_info($1) ORDER BY cid")
                .bind(&table)
                .fetch_all(&mut *conn)
                .await
                .map_err(super::map_err)?;
        let columns = rows.iter().map(|(c, _)| c.clone()).collect();
        let mut keys: Vec<(i64, String)> = rows.into_iter().filter(|(_, pk)| *pk > 0).map(|(c, pk)| (pk, c)).collect();
        keys.sort();
        out.push((table, columns, keys.into_iter().map(|(_, c)| c).collect()));
    }
    Ok(out)
}
