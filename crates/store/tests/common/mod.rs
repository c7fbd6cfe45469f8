//! Helpers shared by the store's integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, Row};
use std::collections::BTreeMap;
use std::path::Path;

/// Every row of every table (but the backup bookkeeping and SQLite's counters), as SQLite quotes it.
pub async fn content(db: &Path) -> BTreeMap<String, Vec<String>> {
    let mut conn = SqliteConnectOptions::new().filename(db).read_only(true).connect().await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'backup_%'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut out = BTreeMap::new();
    for table in tables {
        let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info($1) ORDER BY cid")
            .bind(&table)
            .fetch_all(&mut conn)
            .await
            .unwrap();
        let select = columns.iter().map(|c| format!("quote(\"{c}\")")).collect::<Vec<_>>().join(" || ',' || ");
        let mut rows: Vec<String> = sqlx::query(&format!("SELECT {select} FROM \"{table}\""))
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect();
        rows.sort();
        out.insert(table, rows);
    }
    conn.close().await.unwrap();
    out
}
