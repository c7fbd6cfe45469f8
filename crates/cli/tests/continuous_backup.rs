//! Continuous backup of the SQLite database, end to end (#6, P3/P4): a demo server backs up to a
//! folder while a patient orders and then erases themselves; `repeatrx restore` (the real
//! binary) rebuilds the database at moments before and after, and `repeatrx backup status`
//! reports what was shipped. An erased patient stays erased in a restored copy when the erasure
//! ledger is given (P13).
mod common;

use common::{TestApp, API};
use repeatrx::startup::DemoOptions;
use repeatrx_app::demo::DEMO_PASSWORD;
use repeatrx_domain::ids::PatientId;
use repeatrx_store::crypto::KeyFile;
use reqwest::StatusCode;
use serde_json::json;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

const PATIENT: &str = "patient@demo.example";

fn repeatrx(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_repeatrx")).args(args).env("REPEATRX_LOG", "error").output().expect("runs")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

async fn orders_in(db: &Path, keys: &Path, patient: PatientId) -> Option<usize> {
    let keys = Arc::new(KeyFile::load(keys).expect("keys"));
    let store = repeatrx::startup::open_store(&format!("sqlite://{}", db.display()), keys).await.expect("store");
    store.patient(patient).await.expect("read")?;
    Some(store.orders_of_patient(patient).await.expect("orders").len())
}

#[tokio::test]
async fn restore_rebuilds_each_moment_and_keeps_erasures() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let backup = dir.path().join("backup");
    let app = TestApp::spawn_with(DemoOptions { backup_dir: Some(backup.clone()), ..Default::default() }).await;
    let data = app.data_dir().to_path_buf();
    let keys = data.join("repeatrx-demo.keys");
    let ledger = data.join("repeatrx-demo.erasures");
    let db_url = format!("sqlite://{}", data.join("repeatrx-demo.db").display());

    let token = app.sign_in(PATIENT).await;
    let patient_id = app.my_patient_id(&token).await;
    let patient: PatientId = patient_id.parse().expect("id");
    let orders_at_start = app.orders_of(&patient_id, &token).await.len();

    let pause = || tokio::time::sleep(Duration::from_millis(1100));
    pause().await;
    let before_order = jiff::Timestamp::now();
    pause().await;
    let items = app.repeat_items(&patient_id, &token).await;
    let item = items.iter().find(|i| i["orderable"] == json!(true)).and_then(|i| i["id"].as_str()).expect("one");
    app.place_order(&patient_id, &token, &[item]).await.expect(StatusCode::CREATED);
    pause().await;
    let before_erasure = jiff::Timestamp::now();
    pause().await;
    app.post_json(
        &format!("{API}/patients/{patient_id}/erasure"),
        &token,
        &json!({"confirm": true, "password": DEMO_PASSWORD}),
    )
    .await
    .expect(StatusCode::OK);
    let erased_at = jiff::Timestamp::now();

    // The server ships by itself, within about a second.
    let mut shipped = false;
    for _ in 0..100 {
        let out = repeatrx(&[
            "backup",
            "status",
            "--backup-dir",
            backup.to_str().expect("path"),
            "--key-file",
            keys.to_str().expect("path"),
            "--database-url",
            &db_url,
        ]);
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        assert!(t.contains("Continuous backup is on") && t.contains("1 snapshots"), "{t}");
        let state = repeatrx_store::backup::backup_state(
            &repeatrx::startup::open_sql_store(&db_url, Arc::new(KeyFile::load(&keys).expect("keys")))
                .await
                .expect("store"),
        )
        .await
        .expect("state");
        if state.shipped_change_at.is_some_and(|at| at >= erased_at - jiff::SignedDuration::from_millis(500))
            || state.pending == 0 && state.shipped_change_at.is_some_and(|at| at > before_erasure)
        {
            assert!(t.contains("Last change shipped"), "{t}");
            shipped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(shipped, "the erasure was shipped");
    app.server.stop().await;

    let restore = |to: jiff::Timestamp, into: &Path, with_ledger: bool| {
        let mut args = vec![
            "restore".to_string(),
            "--to".into(),
            to.to_string(),
            "--into".into(),
            into.display().to_string(),
            "--backup-dir".into(),
            backup.display().to_string(),
            "--key-file".into(),
            keys.display().to_string(),
        ];
        if with_ledger {
            args.extend(["--erasure-ledger".into(), ledger.display().to_string()]);
        }
        repeatrx(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // Before the order: the patient, without it.
    let r1 = dir.path().join("r1");
    let out = restore(before_order, &r1, true);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Restored") && text(&out).contains("erased again"), "{}", text(&out));
    // With the ledger, the patient erased since is erased in the copy too.
    assert_eq!(orders_in(&r1.join("repeatrx.db"), &keys, patient).await, None, "erased again");

    let r2 = dir.path().join("r2");
    let out = restore(before_order, &r2, false);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("no erasure ledger given"), "the operator is warned: {}", text(&out));
    assert_eq!(orders_in(&r2.join("repeatrx.db"), &keys, patient).await, Some(orders_at_start), "before the order");

    let r3 = dir.path().join("r3");
    let out = restore(before_erasure, &r3, false);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(orders_in(&r3.join("repeatrx.db"), &keys, patient).await, Some(orders_at_start + 1), "with the order");

    let r4 = dir.path().join("r4");
    let out = restore(jiff::Timestamp::now(), &r4, false);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(orders_in(&r4.join("repeatrx.db"), &keys, patient).await, None, "after the erasure");

    // Mistakes are sentences and a failing exit, and touch nothing.
    let again = restore(before_order, &r1, false);
    assert!(!again.status.success() && text(&again).contains("is not empty"), "{}", text(&again));
    let future = restore(jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1), &dir.path().join("r5"), false);
    assert!(!future.status.success() && text(&future).contains("is in the future"), "{}", text(&future));
    let garbage = repeatrx(&["restore", "--to", "yesterday", "--into", "x", "--backup-dir", "y"]);
    assert!(!garbage.status.success() && text(&garbage).contains("is not a moment in UTC"), "{}", text(&garbage));
    let early = restore("2020-01-01T00:00:00Z".parse().expect("time"), &dir.path().join("r6"), false);
    assert!(!early.status.success() && text(&early).contains("holds nothing as old as"), "{}", text(&early));
}
