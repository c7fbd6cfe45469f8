//! Test support: a fresh, empty PostgreSQL database for each test, on the server named by
//! `REPEATRX_TEST_POSTGRES` (default: the local one, `postgres://postgres@127.0.0.1:5432/postgres`,
//! as CI starts it). A test that needs PostgreSQL fails when the server cannot be reached: it is
//! never skipped.

/// The server tests create their databases on.
pub fn postgres_server_url() -> String {
    std::env::var("REPEATRX_TEST_POSTGRES")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// Creates a new database and returns its URL. Databases are named `repeatrx_test_<random>` and
/// left behind for inspection; `DROP DATABASE` them at will.
pub async fn fresh_postgres_database() -> Result<String, String> {
    let server = postgres_server_url();
    let (base, _) = server.rsplit_once('/').ok_or_else(|| format!("{server} names no database"))?;
    let url = format!("{base}/repeatrx_test_{}", uuid::Uuid::new_v4().simple());
    crate::sql::SqlStore::create_postgres_database(&url)
        .await
        .map_err(|e| format!("PostgreSQL is needed for this test; a database could not be made on {server}: {e}"))?;
    Ok(url)
}
