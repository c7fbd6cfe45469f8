//! Durability (#6) on a disk that fills up: the demo runs with its data on a small filesystem of
//! its own (a tmpfs this test mounts: it runs as root, as CI does), a patient orders and cancels
//! while a filler file takes every free byte. Once a write cannot be made, the order gets a clear
//! 503, reads keep working, the server stays up, and exactly the acknowledged changes are there;
//! when room is made again, ordering works again by itself.
mod common;

use common::RemotePatient;
use reqwest::StatusCode;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn client() -> reqwest::Client {
    RemotePatient::client()
}

/// A small tmpfs, unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    fn mount(path: &Path, size: &str) -> SmallDisk {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", path.to_str().expect("path")])
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs and needs root (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { path: path.to_path_buf() }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Writes zeros into `file` until the filesystem refuses another byte.
fn fill(file: &Path) {
    let mut f = std::fs::File::create(file).expect("filler");
    let block = vec![0u8; 64 * 1024];
    loop {
        if f.write_all(&block).and_then(|_| f.sync_all()).is_err() {
            break;
        }
    }
    let small = [0u8; 512];
    while f.write_all(&small).and_then(|_| f.sync_all()).is_ok() {}
}

#[tokio::test]
async fn a_full_disk_gives_503_loses_nothing_and_passes() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let disk = SmallDisk::mount(dir.path(), "24m");
    let data = disk.path.join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let server = Server(
        Command::new(env!("CARGO_BIN_EXE_repeatrx"))
            .args(["demo", "--data-dir", data.to_str().expect("path"), "--listen", &format!("127.0.0.1:{port}")])
            .env("REPEATRX_LOG", "off")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the server starts"),
    );
    let url = format!("https://127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..400 {
        if client().get(format!("{url}/healthz")).send().await.is_ok_and(|r| r.status() == StatusCode::OK) {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "the server came up");

    let patient = RemotePatient::sign_in(&url, "patient@demo.example").await;
    // Orders one item, then cancels the order (freeing the item again): the last status, its
    // body, and the order's id when it was placed.
    let order_and_cancel = || async {
        let item = patient.orderable_item().await.expect("an answer").expect("something to order");
        let placed = patient.place(&item).await.expect("an answer");
        if placed.status() != StatusCode::CREATED {
            return (placed.status(), placed.json::<Value>().await.unwrap_or_default(), None);
        }
        let id = placed.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_string();
        let cancelled = patient.cancel(&id).await.expect("an answer");
        let status = cancelled.status();
        (status, cancelled.json::<Value>().await.unwrap_or_default(), Some(id))
    };
    let before = patient.orders().await.len();

    let filler = disk.path.join("filler");
    fill(&filler);
    let mut acknowledged = 0;
    let mut refusal = None;
    for _ in 0..300 {
        let (status, body, placed) = order_and_cancel().await;
        if placed.is_some() {
            acknowledged += 1;
        }
        if status != StatusCode::OK {
            refusal = Some((status, body));
            break;
        }
    }
    let (status, body) = refusal.expect("the full disk refused a write");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("temporarily unavailable")), "{body}");
    let now = patient.orders().await;
    assert_eq!(now.len(), before + acknowledged, "exactly the acknowledged orders: nothing half-written");
    let mut server = server;
    assert!(server.0.try_wait().expect("status").is_none(), "the server is still running");

    std::fs::remove_file(&filler).expect("room made");
    let mut recovered = false;
    for _ in 0..40 {
        let (status, _, _) = order_and_cancel().await;
        if status == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(recovered, "ordering works again once there is room");
    drop(server);
}
