//! The server under test: the real `repeatrx serve` binary (built beside this one), as a process
//! of its own so that its memory is its own, configured as production would be: TLS with a
//! certificate made for the run, the key file, SQLite with continuous backup to a folder (as
//! production requires) or PostgreSQL, an SMTP relay on this machine.
use anyhow::{bail, Context};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A self-signed certificate for 127.0.0.1, for the server under test and the trivial handler.
pub struct Certificate {
    pub cert_pem: Vec<u8>,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl Certificate {
    pub fn make(dir: &Path) -> anyhow::Result<Certificate> {
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
        let cert_pem = made.cert.pem().into_bytes();
        let key_pem = made.key_pair.serialize_pem().into_bytes();
        let cert_path = dir.join("bench-cert.pem");
        let key_path = dir.join("bench-key.pem");
        std::fs::write(&cert_path, &cert_pem)?;
        write_private(&key_path, &key_pem)?;
        Ok(Certificate { cert_pem, cert_path, key_path })
    }
}

/// Writes a file only its owner can read (keys).
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(bytes)?;
    Ok(())
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A binary built beside this one (`repeatrx`, or this one for the trivial server).
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let path = me.with_file_name(name);
    if !path.is_file() {
        bail!("{} is not built; run `cargo build --release -p repeatrx` first", path.display());
    }
    Ok(path)
}

/// A process under test, killed when dropped.
pub struct Process {
    pub child: Child,
    pub url: String,
    pub log: PathBuf,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks the process to stop (SIGTERM, as a service manager does) and waits for it.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `url/healthz` answers 200 (the process is up and its database answers).
pub async fn wait_healthy(process: &mut Process, ca_pem: &[u8], within: Duration) -> anyhow::Result<()> {
    let http = crate::load::client(ca_pem)?;
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = process.child.try_wait()? {
            bail!("the server exited ({status}) before it answered; its log: {}", process.log.display());
        }
        if let Ok(resp) = http.get(format!("{}/healthz", process.url)).send().await {
            if resp.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("the server did not answer within {within:?}; its log: {}", process.log.display())
}

/// What the server under test runs on.
pub struct ServeSetup<'a> {
    pub dir: &'a Path,
    pub database_url: &'a str,
    pub key_file: &'a Path,
    pub cert: &'a Certificate,
    /// SQLite only: the continuous-backup folder.
    pub backup_dir: Option<&'a Path>,
    pub smtp_port: u16,
}

/// Starts `repeatrx serve` with a production configuration written for the run.
pub fn start_repeatrx(setup: &ServeSetup<'_>) -> anyhow::Result<Process> {
    let port = free_port()?;
    let url = format!("https://127.0.0.1:{port}");
    let mut toml = format!(
        "database_url = {db:?}\nlisten = \"127.0.0.1:{port}\"\npublic_url = {url:?}\nkey_file = {keys:?}\n\
         erasure_ledger = {ledger:?}\n\n[tls]\ncert = {cert:?}\nkey = {key:?}\n\n\
         [smtp]\nhost = \"127.0.0.1\"\nport = {smtp}\nsecurity = \"none\"\nfrom = \"RepeatRx bench <bench@bench.example>\"\n",
        db = setup.database_url,
        keys = setup.key_file.display().to_string(),
        ledger = setup.dir.join("repeatrx.erasures").display().to_string(),
        cert = setup.cert.cert_path.display().to_string(),
        key = setup.cert.key_path.display().to_string(),
        smtp = setup.smtp_port,
    );
    if let Some(backup) = setup.backup_dir {
        toml.push_str(&format!("\n[backup]\nfolder = {:?}\n", backup.display().to_string()));
    }
    let config = setup.dir.join("repeatrx-bench.toml");
    std::fs::write(&config, toml)?;
    let log = setup.dir.join("repeatrx-serve.log");
    let child = Command::new(sibling_binary("repeatrx")?)
        .args(["serve", "--config"])
        .arg(&config)
        .env("REPEATRX_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("starting repeatrx serve")?;
    Ok(Process { child, url, log })
}

/// Starts `repeatrx-bench trivial-server` with the run's certificate.
pub fn start_trivial(cert: &Certificate, dir: &Path) -> anyhow::Result<Process> {
    let port = free_port()?;
    let log = dir.join("trivial-server.log");
    let child = Command::new(std::env::current_exe()?)
        .args(["trivial-server", "--listen", &format!("127.0.0.1:{port}"), "--cert"])
        .arg(&cert.cert_path)
        .arg("--key")
        .arg(&cert.key_path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("starting the trivial server")?;
    Ok(Process { child, url: format!("https://127.0.0.1:{port}"), log })
}
