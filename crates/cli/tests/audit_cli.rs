//! `repeatrx audit verify` on a real database file: an intact trail passes; an entry edited or
//! deleted behind the database's back (its append-only triggers dropped) is named.
use repeatrx_domain::audit::AuditRecord;
use repeatrx_domain::ids::{PatientId, UserId};
use repeatrx_store::sqlite::SqliteStore;
use repeatrx_store::Store;
use std::path::Path;
use std::process::{Command, Output};

fn verify(db: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_repeatrx"))
        .args(["audit", "--database-url", &format!("sqlite://{}", db.display()), "verify"])
        .env("REPEATRX_LOG", "warn")
        .output()
        .expect("the binary runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

async fn trail_of(db: &Path, n: usize) -> SqliteStore {
    let store = SqliteStore::open(db).await.expect("database");
    for i in 0..n {
        store
            .append_audit(&AuditRecord {
                at: jiff::Timestamp::now(),
                actor: Some(UserId::new()),
                actor_role: Some(repeatrx_domain::access::Role::Pharmacist),
                organisation: "pharmacy:riverside".into(),
                action: "patient.viewed".into(),
                patient: Some(PatientId::new()),
                address: "192.0.2.1".into(),
                purpose: None,
                detail: format!("entry {i}"),
            })
            .await
            .expect("appended");
    }
    store
}

#[tokio::test]
async fn an_intact_trail_verifies_and_a_tampered_one_names_the_first_broken_entry() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("audit.db");
    let store = trail_of(&db, 5).await;
    let ok = verify(&db);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("The audit trail is intact: 5 entries"), "{}", text(&ok));

    sqlx::query("DROP TRIGGER audit_log_no_update").execute(store.pool()).await.expect("dropped");
    sqlx::query("UPDATE audit_log SET detail = 'nothing to see' WHERE seq = 3")
        .execute(store.pool())
        .await
        .expect("edited");
    let broken = verify(&db);
    assert!(!broken.status.success());
    assert!(text(&broken).contains("error: the audit trail is broken at entry #3"), "{}", text(&broken));
    assert!(text(&broken).contains("was changed"), "{}", text(&broken));
}

#[tokio::test]
async fn a_deleted_entry_is_found() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("audit.db");
    let store = trail_of(&db, 5).await;
    sqlx::query("DROP TRIGGER audit_log_no_delete").execute(store.pool()).await.expect("dropped");
    sqlx::query("DELETE FROM audit_log WHERE seq = 2").execute(store.pool()).await.expect("deleted");
    let broken = verify(&db);
    assert!(!broken.status.success());
    assert!(text(&broken).contains("broken at entry #3: entry #2 is missing before it"), "{}", text(&broken));
}
