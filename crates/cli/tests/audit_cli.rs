//! `repeatrx audit verify` on a real database file: an intact trail passes; an entry edited or
//! deleted behind the database's back (its append-only triggers dropped) is named.
use repeatrx_domain::audit::AuditRecord;
use repeatrx_domain::ids::{PatientId, UserId};
use repeatrx_store::sql::SqlStore;
use repeatrx_store::Store;
use std::path::Path;
use std::process::{Command, Output};

fn verify(db: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_repeatrx"))
        .args(["audit", "--database-url", &format!("sqlite://{}", db.display()), "verify"])
        .env("REPEATRX_LOG", "warn")
        .env("REPEATRX_KEY_FILE", keys_of(db))
        .output()
        .expect("the binary runs")
}

fn keys_of(db: &Path) -> std::path::PathBuf {
    db.with_extension("keys")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

async fn trail_of(db: &Path, n: usize) -> SqlStore {
    let keys = repeatrx_store::crypto::KeyFile::open_or_create(&keys_of(db)).expect("keys");
    let store = SqlStore::open(db, std::sync::Arc::new(keys)).await.expect("database");
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

fn verify_with(db: &Path, checkpoint: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_repeatrx"))
        .args(["audit", "--database-url", &format!("sqlite://{}", db.display()), "verify", "--checkpoint", checkpoint])
        .env("REPEATRX_LOG", "warn")
        .env("REPEATRX_KEY_FILE", keys_of(db))
        .output()
        .expect("the binary runs")
}

#[tokio::test]
async fn a_checkpoint_kept_outside_shows_newest_entries_cut_off() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("audit.db");
    let store = trail_of(&db, 5).await;
    let first = verify(&db);
    let printed = text(&first);
    let checkpoint = printed
        .lines()
        .find_map(|l| l.strip_prefix("Checkpoint: "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("a checkpoint is printed")
        .to_string();
    assert!(checkpoint.starts_with("5:"), "{checkpoint}");

    // More entries later: the checkpoint still holds.
    drop(store);
    let store = trail_of(&db, 2).await;
    let later = verify_with(&db, &checkpoint);
    assert!(later.status.success(), "{}", text(&later));
    assert!(text(&later).contains("Checkpoint 5 holds."), "{}", text(&later));

    // Cutting off the newest entries leaves a valid chain, which only the checkpoint exposes.
    sqlx::query("DROP TRIGGER audit_log_no_delete").execute(store.pool()).await.expect("dropped");
    sqlx::query("DELETE FROM audit_log WHERE seq > 4").execute(store.pool()).await.expect("cut off");
    assert!(verify(&db).status.success(), "the shortened chain on its own looks intact");
    let cut = verify_with(&db, &checkpoint);
    assert!(!cut.status.success());
    assert!(
        text(&cut).contains(
            "the audit trail ends at entry #4, but the checkpoint names entry #5: the newest entries were removed"
        ),
        "{}",
        text(&cut)
    );

    // A checkpoint that does not match the entry: the trail was rewritten.
    let other = format!("3:{}", "ab".repeat(32));
    let rewritten = verify_with(&db, &other);
    assert!(!rewritten.status.success());
    assert!(text(&rewritten).contains("entry #3 is not the one the checkpoint recorded"), "{}", text(&rewritten));

    let nonsense = verify_with(&db, "yesterday");
    assert!(!nonsense.status.success());
    assert!(text(&nonsense).contains("a checkpoint is written NUMBER:HASH"), "{}", text(&nonsense));
}
