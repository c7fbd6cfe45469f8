//! P5 on the server side: RepeatRx calls out to nothing but its database and its SMTP relay.
//! Two checks: the shipped binary is built without any HTTP client, DNS resolver, telemetry or
//! error-reporting crate but through `object_store`, which continuous backup uses for the S3
//! bucket an operator may configure (so no other code exists that could call a third party); and
//! a running server,
//! working through sign-ins, an order and its background jobs, holds no socket to any address but
//! the loopback ones the test itself uses.
mod common;

use common::{TestApp, API};
use reqwest::StatusCode;
use serde_json::json;
use std::collections::BTreeSet;
use std::process::Command;

/// Crates whose presence would mean the server can talk to someone other than its database and
/// SMTP relay.
const CALLING_OUT: &[&str] = &[
    "reqwest",
    "ureq",
    "isahc",
    "attohttpc",
    "curl",
    "surf",
    "hyper-rustls",
    "hyper-tls",
    "hickory-resolver",
    "trust-dns-resolver",
    "opentelemetry-otlp",
    "sentry",
    "posthog-rs",
    "segment",
];

fn cargo_tree(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO"))
        .args(["tree", "--edges", "normal,build", "--package", "repeatrx", "--locked", "--offline"])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(out.status.success(), "cargo tree {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The one crate allowed to bring an HTTP client: `object_store`, which the continuous backup of
/// a SQLite database uses to reach the S3 bucket the operator configures (and nothing else).
const BACKUP_BUCKET_CLIENT: &str = "object_store";

#[test]
fn the_binary_is_built_without_any_crate_that_calls_out() {
    let tree = cargo_tree(&["--prefix", "none"]);
    let crates: BTreeSet<&str> = tree.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert!(crates.contains("sqlx") && crates.contains("lettre"), "the tree was read: {crates:?}");
    for c in CALLING_OUT.iter().filter(|c| crates.contains(**c)) {
        // Who depends on it directly (depth 1 of the inverted tree), in every version present.
        let versions: BTreeSet<String> = tree
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some(c)).then(|| w.next().map(|v| format!("{c}@{}", v.trim_start_matches('v'))))?
            })
            .collect();
        for spec in versions {
            let inverted = cargo_tree(&["--invert", &spec, "--prefix", "depth"]);
            let dependents: BTreeSet<&str> = inverted
                .lines()
                .filter_map(|l| l.strip_prefix('1'))
                .filter_map(|l| l.split_whitespace().next())
                .collect();
            let stray: Vec<&&str> =
                dependents.iter().filter(|d| **d != BACKUP_BUCKET_CLIENT && !CALLING_OUT.contains(d)).collect();
            assert!(stray.is_empty(), "{spec} is brought in by {stray:?}: the server could call out through it");
        }
    }
    let bucket_users: BTreeSet<String> = cargo_tree(&["--invert", BACKUP_BUCKET_CLIENT, "--prefix", "depth"])
        .lines()
        .filter_map(|l| l.strip_prefix('1'))
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect();
    assert_eq!(
        bucket_users,
        BTreeSet::from(["repeatrx-store".to_string()]),
        "only the store's backup uses object_store"
    );
}

/// The remote ends of this process's TCP sockets, from /proc (Linux).
fn remote_addresses() -> BTreeSet<String> {
    let mut inodes = BTreeSet::new();
    for fd in std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd").flatten() {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let t = target.to_string_lossy().into_owned();
            if let Some(inode) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                inodes.insert(inode.to_string());
            }
        }
    }
    let mut remotes = BTreeSet::new();
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() > 9
                && inodes.contains(cols[9])
                && cols[2] != "00000000:0000"
                && !cols[2].starts_with("00000000000000000000000000000000:")
            {
                remotes.insert(cols[2].to_string());
            }
        }
    }
    remotes
}

/// Whether a /proc address (hex, host byte order per 32-bit word) is loopback.
fn is_loopback(hex: &str) -> bool {
    let addr = hex.split(':').next().unwrap_or("");
    match addr.len() {
        // 127.x.x.x: the first byte in memory is the lowest of the little-endian word.
        8 => addr.ends_with("7F"),
        // ::1, or ::ffff:127.x.x.x
        32 => {
            addr == "00000000000000000000000001000000"
                || (addr.starts_with("0000000000000000FFFF0000") && addr.ends_with("7F"))
        }
        _ => false,
    }
}

#[tokio::test]
async fn a_working_server_holds_sockets_to_loopback_only() {
    assert!(is_loopback("0100007F:1F90") && !is_loopback("0101A8C0:0050"), "the address reading works");
    let app = TestApp::spawn().await;
    let mut seen = BTreeSet::new();
    seen.extend(remote_addresses());
    for email in ["patient@demo.example", "pharmacist@demo.example", "prescriber@demo.example"] {
        let token = app.sign_in(email).await;
        seen.extend(remote_addresses());
        let me = app.client.get(app.url(&format!("{API}/me"))).bearer_auth(&token).send().await.expect("sent");
        assert_eq!(me.status(), StatusCode::OK);
        seen.extend(remote_addresses());
    }
    let token = app.sign_in("patient@demo.example").await;
    let patient = app.my_patient_id(&token).await;
    let items = app.repeat_items(&patient, &token).await;
    let orderable = items.iter().find(|i| i["orderable"] == json!(true)).and_then(|i| i["id"].as_str()).expect("one");
    app.place_order(&patient, &token, &[orderable]).await.expect(StatusCode::CREATED);
    // Background jobs (mail delivery, reminders, retention, checkpoints) run every few seconds.
    for _ in 0..30 {
        seen.extend(remote_addresses());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!seen.is_empty(), "sockets were seen");
    let elsewhere: Vec<&String> = seen.iter().filter(|a| !is_loopback(a)).collect();
    assert!(elsewhere.is_empty(), "sockets to other hosts: {elsewhere:?}");
}
