//! P2 on real files: after a demo run the SQLite files, and the PostgreSQL tables (every cell, and
//! the raw heap, TOAST and index files under them), hold no patient's name, NHS number, date of
//! birth, email address or medicine in the clear; and the master key is rotated online, while
//! another server keeps writing, without losing anything.
use repeatrx_domain::patient::Patient;
use repeatrx_domain::repeat::RepeatItem;
use repeatrx_store::crypto::{FixedKeys, KeyFile, KeySource};
use repeatrx_store::{DynStore, PatientQuery};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

/// Every file SQLite keeps for the database (the main file and, if present, its write-ahead log).
fn raw_bytes(db: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(db).expect("the database file");
    for suffix in ["-wal", "-journal"] {
        if let Ok(more) = std::fs::read(format!("{}{suffix}", db.display())) {
            bytes.extend(more);
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn is_base64_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

/// Shorter than this, a value can turn up by chance inside the megabytes of base64 ciphertext the
/// files hold (a four-letter name about once per 17 million characters); from here on the chance
/// is negligible (64^-8 per position).
const CHANCE_FREE_LEN: usize = 8;

/// Whether `needle` is in the raw bytes in a way chance cannot explain: anywhere if it is long, and
/// for a short value, standing apart from base64 text (not inside a ciphertext). A short value in
/// the clear right beside a ciphertext in the same row is caught by [`clear_cells`] instead.
fn in_the_clear(haystack: &[u8], needle: &str) -> bool {
    let n = needle.as_bytes();
    if n.is_empty() {
        return false;
    }
    if n.len() >= CHANCE_FREE_LEN {
        return contains(haystack, needle);
    }
    haystack.windows(n.len()).enumerate().any(|(at, w)| {
        w == n
            && !at.checked_sub(1).and_then(|i| haystack.get(i)).is_some_and(|&b| is_base64_char(b))
            && !haystack.get(at + n.len()).is_some_and(|&b| is_base64_char(b))
    })
}

/// Every stored cell, read through SQLite, that is not a ciphertext, blind index or wrapped key
/// (which are base64 or hex, and far longer than any name) and contains one of `secrets`.
async fn clear_cells(db: &Path, secrets: &BTreeSet<String>) -> Vec<String> {
    use sqlx::{Connection, Row};
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", db.display())).await.expect("db");
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
            .fetch_all(&mut conn)
            .await
            .expect("tables");
    let mut found = Vec::new();
    for table in tables {
        let columns: Vec<String> = sqlx::query(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .fetch_all(&mut conn)
            .await
            .expect("columns")
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect();
        for column in columns {
            let cells: Vec<Option<Vec<u8>>> =
                sqlx::query_scalar(&format!("SELECT CAST(\"{column}\" AS BLOB) FROM \"{table}\""))
                    .fetch_all(&mut conn)
                    .await
                    .expect("cells");
            for cell in cells.into_iter().flatten() {
                if cell.len() >= 40 && cell.iter().all(|&b| is_base64_char(b)) {
                    continue;
                }
                for s in secrets.iter().filter(|s| contains(&cell, s)) {
                    found.push(format!("{table}.{column}: {s}"));
                }
            }
        }
    }
    found
}

/// What an attacker holding only the files must not read: every patient's identifying values and
/// every medicine on a repeat list or an order, as the store gives them back (decrypted).
async fn patient_secrets(store: &DynStore) -> BTreeSet<String> {
    let mut secrets = BTreeSet::new();
    for pharmacy in store.list_pharmacies().await.expect("pharmacies") {
        let patients = store.search_patients(pharmacy.id, &PatientQuery::default(), 10_000).await.expect("patients");
        for p in patients {
            secrets.insert(p.given_name.as_str().to_string());
            secrets.insert(p.family_name.as_str().to_string());
            secrets.insert(p.nhs_number.as_str().to_string());
            secrets.insert(p.date_of_birth.date().to_string());
            secrets.extend(p.email.as_ref().map(|e| e.as_str().to_string()));
            secrets.extend(p.phone.clone());
            secrets.extend(p.address.clone());
            if let Some(account) = store.user_for_patient(p.id).await.expect("account") {
                secrets.insert(account.email.as_str().to_string());
                secrets.insert(account.display_name.clone());
            }
            for item in store.repeat_items(p.id).await.expect("repeat items") {
                secrets.insert(item.terms.drug_name.clone());
                secrets.insert(item.terms.directions.clone());
            }
            for order in store.orders_of_patient(p.id).await.expect("orders") {
                secrets.extend(order.note.clone());
                secrets.extend(order.items.iter().map(|i| i.description.clone()));
            }
        }
    }
    // Very short values (a two-letter given name) would match random bytes; they are still sealed.
    secrets.retain(|s| s.len() >= 4);
    secrets
}

#[tokio::test]
async fn after_a_demo_run_the_database_files_hold_no_patient_data_in_the_clear() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let server =
        repeatrx::startup::start_demo(dir.path(), "127.0.0.1:0".parse().expect("address"), None).await.expect("demo");
    server.stop().await;

    let db = dir.path().join("repeatrx-demo.db");
    let keys = Arc::new(KeyFile::load(&dir.path().join("repeatrx-demo.keys")).expect("the demo's key file"));
    let store = repeatrx::startup::open_store(&format!("sqlite://{}", db.display()), keys).await.expect("store");
    let secrets = patient_secrets(&store).await;
    assert!(secrets.contains("Jones") && secrets.contains("patient@demo.example"), "{secrets:?}");
    assert!(secrets.len() > 40, "the demo's patients and medicines were read back: {secrets:?}");
    assert_eq!(clear_cells(&db, &secrets).await, Vec::<String>::new(), "patient values stored in the clear");
    let bytes = raw_bytes(&db);
    let clear: Vec<&String> = secrets.iter().filter(|s| in_the_clear(&bytes, s)).collect();
    assert!(clear.is_empty(), "in the clear in the database files: {clear:?}");
    assert!(in_the_clear(b"..\x02Rhys\x1f..", "Rhys") && !in_the_clear(b"AQxRhysq9", "Rhys"), "the chance rule");
    // The check itself can fail: what is not patient data is still there to be found.
    assert!(contains(&bytes, "Riverside Pharmacy"), "organisation names are not sealed");
    assert!(contains(&bytes, "pharmacist@demo.example"), "staff sign-in addresses are not sealed");
    let not_patient_data: BTreeSet<String> = ["Riverside Pharmacy".to_string()].into();
    assert!(!clear_cells(&db, &not_patient_data).await.is_empty(), "the cell check reads the cells");

    // Without the key file the same database opens nothing: other keys are refused at start.
    let other = Arc::new(FixedKeys::new(repeatrx_store::crypto::Keys::generate()));
    let refused = repeatrx::startup::open_store(&format!("sqlite://{}", db.display()), other).await;
    assert!(format!("{:#}", refused.err().expect("refused")).contains("does not hold master key"));
}

/// Every cell of every table of the PostgreSQL database at `url` (as text) that is not a
/// ciphertext, blind index or wrapped key and contains one of `secrets`; and the raw bytes of
/// every table, TOAST table and index file of the database, read after a checkpoint so that the
/// files hold what the server has.
async fn postgres_clear_cells_and_files(url: &str, secrets: &BTreeSet<String>) -> (Vec<String>, Vec<u8>) {
    use sqlx::{Connection, Row};
    let mut conn = sqlx::PgConnection::connect(url).await.expect("PostgreSQL");
    let columns = sqlx::query(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = 'public' ORDER BY table_name, ordinal_position",
    )
    .fetch_all(&mut conn)
    .await
    .expect("columns");
    let mut found = Vec::new();
    for row in &columns {
        let (table, column): (String, String) = (row.get(0), row.get(1));
        let cells: Vec<Option<String>> = sqlx::query_scalar(&format!("SELECT \"{column}\"::text FROM \"{table}\""))
            .fetch_all(&mut conn)
            .await
            .expect("cells");
        for cell in cells.into_iter().flatten() {
            let bytes = cell.as_bytes();
            if bytes.len() >= 40 && bytes.iter().all(|&b| is_base64_char(b) || b == b'=') {
                continue;
            }
            for s in secrets.iter().filter(|s| contains(bytes, s)) {
                found.push(format!("{table}.{column}: {s}"));
            }
        }
    }
    assert!(columns.len() > 50, "the tables were read: {} columns", columns.len());
    sqlx::query("CHECKPOINT").execute(&mut conn).await.expect("a checkpoint (the test role is a superuser)");
    let files: Vec<String> = sqlx::query_scalar(
        "SELECT pg_relation_filepath(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname IN ('public', 'pg_toast') AND c.relkind IN ('r', 't', 'i') \
         AND pg_relation_filepath(c.oid) IS NOT NULL",
    )
    .fetch_all(&mut conn)
    .await
    .expect("relation files");
    let mut raw = Vec::new();
    for file in &files {
        // A relation with no rows yet may have no file.
        let bytes: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT pg_read_binary_file($1, 0, (pg_stat_file($1, true)).size, true)")
                .bind(file)
                .fetch_one(&mut conn)
                .await
                .expect("the relation's file");
        raw.extend(bytes.unwrap_or_default());
    }
    (found, raw)
}

#[tokio::test]
async fn after_a_demo_run_on_postgresql_the_tables_hold_no_patient_data_in_the_clear() {
    let url = repeatrx_store::testdb::fresh_postgres_database().await.expect("a PostgreSQL test database");
    let dir = tempfile::tempdir().expect("temporary folder");
    let options = repeatrx::startup::DemoOptions { database_url: Some(url.clone()), ..Default::default() };
    let server = repeatrx::startup::start_demo_with(dir.path(), "127.0.0.1:0".parse().expect("address"), None, options)
        .await
        .expect("demo on PostgreSQL");
    server.stop().await;

    let keys = Arc::new(KeyFile::load(&dir.path().join("repeatrx-demo.keys")).expect("the demo's key file"));
    let store = repeatrx::startup::open_store(&url, keys).await.expect("store");
    let secrets = patient_secrets(&store).await;
    assert!(secrets.contains("Jones") && secrets.contains("patient@demo.example"), "{secrets:?}");
    assert!(secrets.len() > 40, "the demo's patients and medicines were read back: {secrets:?}");
    let (cells, raw) = postgres_clear_cells_and_files(&url, &secrets).await;
    assert_eq!(cells, Vec::<String>::new(), "patient values stored in the clear");
    let clear: Vec<&String> = secrets.iter().filter(|s| in_the_clear(&raw, s)).collect();
    assert!(clear.is_empty(), "in the clear in the database's files: {clear:?}");
    // The check itself can fail: what is not patient data is there to be found, in cells and files.
    assert!(contains(&raw, "Riverside Pharmacy"), "organisation names are not sealed");
    assert!(contains(&raw, "pharmacist@demo.example"), "staff sign-in addresses are not sealed");
    let not_patient_data: BTreeSet<String> = ["Riverside Pharmacy".to_string()].into();
    assert!(
        !postgres_clear_cells_and_files(&url, &not_patient_data).await.0.is_empty(),
        "the cell check reads the cells"
    );
}

/// `n` patients like `template` (new ids, numbered names, their own NHS numbers, below the demo's
/// range), each with a copy of `line`.
async fn add_patients(store: &DynStore, template: &Patient, line: &RepeatItem, n: usize) -> Vec<Patient> {
    let mut added = Vec::new();
    for i in 0..n {
        let mut patient = template.clone();
        patient.id = repeatrx_domain::ids::PatientId::new();
        patient.family_name =
            repeatrx_domain::text::PersonName::parse("family_name", &format!("Rotation{i}")).expect("name");
        // A pharmacy registers an NHS number once: each call's patients take the next numbers.
        static ADDED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let prefix = 300_000_000 + 16 * ADDED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        patient.nhs_number = (prefix..prefix + 16)
            .find_map(repeatrx_domain::patient::NhsNumber::from_prefix)
            .expect("one of 16 prefixes makes a valid NHS number");
        store.insert_patient(&patient, None).await.expect("patient stored");
        let mut item = line.clone();
        item.id = repeatrx_domain::ids::RepeatItemId::new();
        item.patient_id = patient.id;
        store.insert_repeat_item(&item).await.expect("repeat item stored");
        added.push(patient);
    }
    added
}

#[tokio::test]
async fn the_master_key_is_rotated_online_while_another_server_writes_and_nothing_is_lost() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let key_path = dir.path().join("repeatrx.keys");
    KeyFile::create(&key_path).expect("key file");
    let url = format!("sqlite://{}", dir.path().join("repeatrx.db").display());
    // Two processes' worth: a server with the key file as it was at its start, and the console
    // that rotates (each with its own copy of the keys in memory).
    let server_keys = Arc::new(KeyFile::load(&key_path).expect("keys"));
    let server = repeatrx::startup::open_store(&url, server_keys.clone()).await.expect("server store");
    let console_keys = Arc::new(KeyFile::load(&key_path).expect("keys"));
    let console = repeatrx::startup::open_store(&url, console_keys.clone()).await.expect("console store");

    let world = repeatrx_store::conformance::world(&*server).await;
    let (template, line) = (world.pa.patient.clone(), world.pa.items[0].clone());
    let before = add_patients(&server, &template, &line, 60).await;
    let old_master = console_keys.keys().master().id().to_string();

    let writer = {
        let server = server.clone();
        tokio::spawn(async move { add_patients(&server, &template, &line, 80).await })
    };
    let mut reports = Vec::new();
    let rotation =
        repeatrx::startup::rotate_master_key(&console_keys, &console, |done, total| reports.push((done, total)))
            .await
            .expect("rotation");
    let during = writer.await.expect("the writer finished");

    assert_ne!(rotation.master_id, old_master);
    assert!(rotation.rewrapped >= 60, "{rotation:?}");
    assert_eq!(reports.first().map(|r| r.0), Some(0));
    assert!(reports.windows(2).all(|w| w[0].0 <= w[1].0), "progress only goes forward: {reports:?}");
    assert_eq!(console.data_keys_to_rewrap().await.expect("count"), 0, "no key is left under the old master key");

    // Everything opens: through the server that wrote during the rotation, and through a store
    // holding only the new master key (so no key still needs the old one).
    let only_new = Arc::new(FixedKeys::new(KeyFile::load(&key_path).expect("keys").keys().without_previous()));
    assert_eq!(only_new.keys().previous().len(), 0);
    let fresh = repeatrx::startup::open_store(&url, only_new).await.expect("fresh store");
    for p in before.iter().chain(&during) {
        for store in [&server, &fresh] {
            assert_eq!(store.patient(p.id).await.expect("readable").as_ref(), Some(p));
            assert_eq!(store.repeat_items(p.id).await.expect("readable").len(), 1);
        }
    }
    assert_eq!(during.len(), 80);

    // The key file on disk: the new master first, the old one kept for older backups, private.
    let on_disk = KeyFile::load(&key_path).expect("keys");
    assert_eq!(on_disk.keys().master().id(), rotation.master_id);
    assert_eq!(on_disk.keys().previous().iter().map(|m| m.id().to_string()).collect::<Vec<_>>(), [old_master]);
}
