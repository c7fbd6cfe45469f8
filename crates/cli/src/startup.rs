//! Assembling a running RepeatRx: open the store (running migrations), build the services, start
//! the background jobs and the HTTPS server.
use anyhow::{bail, Context};
use repeatrx_app::auth::SessionPolicy;
use repeatrx_app::mail::{MailTransport, Mailer};
use repeatrx_app::{App, Settings};
use repeatrx_domain::clock::{Clock, SystemClock};
use repeatrx_store::crypto::{KeyFile, KeySource};
use repeatrx_store::sql::SqlStore;
use repeatrx_store::DynStore;
use repeatrx_web::server::Running;
use repeatrx_web::WebState;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Loads the key file (which must exist, readable by this user only).
pub fn load_keys(key_file: &Path) -> anyhow::Result<Arc<dyn KeySource>> {
    let keys = KeyFile::load(key_file).with_context(|| {
        format!(
            "the encryption keys could not be loaded (create them once with `repeatrx keys init --key-file {}`)",
            key_file.display()
        )
    })?;
    Ok(Arc::new(keys))
}

/// Opens the database named by a URL (`sqlite://PATH` or `postgres://...`) with its encryption
/// keys, running migrations.
pub async fn open_store(database_url: &str, keys: Arc<dyn KeySource>) -> anyhow::Result<DynStore> {
    Ok(Arc::new(open_sql_store(database_url, keys).await?))
}

/// [`open_store`], keeping the SQL store's own type (for what only it does: backup).
pub async fn open_sql_store(database_url: &str, keys: Arc<dyn KeySource>) -> anyhow::Result<SqlStore> {
    if let Some(path) = sqlite_path(database_url) {
        return SqlStore::open(path, keys)
            .await
            .with_context(|| format!("could not open the SQLite database at {}", path.display()));
    }
    if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        // The URL is not echoed: it may hold a password.
        return SqlStore::connect_postgres(database_url, keys).await.context("could not use the PostgreSQL database");
    }
    bail!("the database URL must start with sqlite:// or postgres:// (got something else)")
}

fn sqlite_path(database_url: &str) -> Option<&Path> {
    database_url.strip_prefix("sqlite://").or_else(|| database_url.strip_prefix("sqlite:")).map(Path::new)
}

/// Starts continuous backup of a SQLite database to `backup` (journaling on, destinations
/// reachable), or, with none configured, stops a journal an earlier run left on.
pub async fn start_backup(
    store: &SqlStore,
    database_url: &str,
    backup: Option<&crate::config::BackupSettings>,
) -> anyhow::Result<Option<repeatrx_store::backup::Shipper>> {
    let Some(path) = sqlite_path(database_url) else { return Ok(None) };
    let Some(backup) = backup else {
        repeatrx_store::backup::disable(store).await?;
        return Ok(None);
    };
    let work_dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let shipper = repeatrx_store::backup::Shipper::start(store, work_dir, &backup.targets, backup.policy)
        .await
        .context("could not start continuous backup")?;
    tracing::info!(
        destinations = %backup.targets.iter().map(|t| t.label()).collect::<Vec<_>>().join(", "),
        generation = shipper.generation(),
        "continuous backup on"
    );
    Ok(Some(shipper))
}

/// What a master-key rotation did.
#[derive(Debug)]
pub struct Rotation {
    pub master_id: String,
    pub rewrapped: u64,
}

/// Data keys re-wrapped per transaction: small enough not to hold the write lock for long.
const REWRAP_BATCH: u32 = 200;

/// Rotates the master key online: the key file gets a new master key (the old one kept below
/// it), the database is told it is current (so servers reload the file before wrapping another
/// key), and every data key is re-wrapped in small transactions, reporting (done, total) as it
/// goes. Servers keep working throughout: a key they meet under the new master key makes them
/// reload the file.
pub async fn rotate_master_key(
    file: &KeyFile,
    store: &DynStore,
    mut progress: impl FnMut(u64, u64),
) -> anyhow::Result<Rotation> {
    let rotated = file.keys().rotated();
    let master_id = rotated.master().id().to_string();
    file.replace(rotated).context("could not write the rotated key file")?;
    store.adopt_current_master_key().await?;
    let mut total = store.data_keys_to_rewrap().await?;
    let mut rewrapped = 0;
    progress(0, total);
    loop {
        let n = store.rewrap_data_keys(REWRAP_BATCH).await?;
        if n == 0 {
            break;
        }
        rewrapped += n;
        total = total.max(rewrapped);
        progress(rewrapped, total);
    }
    Ok(Rotation { master_id, rewrapped })
}

/// Everything needed to run a server.
pub struct ServerOptions {
    pub store: DynStore,
    pub clock: Arc<dyn Clock>,
    pub settings: Settings,
    pub tls: rustls::ServerConfig,
    pub listen: SocketAddr,
    pub http_redirect: Option<SocketAddr>,
    /// A listener of its own for the platform team's pages (C4); the public one then hides them.
    pub admin_listen: Option<SocketAddr>,
    pub mail: MailTransport,
    pub jobs_every: Duration,
    /// Continuous backup, shipped for as long as the server runs.
    pub backup: Option<repeatrx_store::backup::Shipper>,
}

/// A running server with its background jobs.
pub struct Server {
    pub app: App,
    pub running: Running,
    /// The admin listener, when one is configured.
    pub admin: Option<Running>,
    pub jobs: tokio::task::JoinHandle<()>,
    pub backup: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    pub fn url(&self) -> String {
        format!("https://{}", self.running.https_addr)
    }

    /// "https://ADDR" of the admin listener, if any.
    pub fn admin_url(&self) -> Option<String> {
        self.admin.as_ref().map(|a| format!("https://{}", a.https_addr))
    }

    pub async fn stop(self) {
        self.jobs.abort();
        if let Some(backup) = self.backup {
            backup.abort();
        }
        if let Some(admin) = self.admin {
            admin.stop().await;
        }
        self.running.stop().await;
    }
}

pub fn start(opts: ServerOptions) -> anyhow::Result<Server> {
    let app = App::new(opts.store, opts.clock, opts.settings);
    let mailer = Mailer::new(opts.mail).context("the mail settings are not usable")?;
    let jobs = app.spawn_jobs(mailer, opts.jobs_every);
    let backup = opts.backup.map(|b| b.spawn());
    let state = WebState { app: app.clone() };
    let admin = match opts.admin_listen {
        Some(addr) => {
            let router = repeatrx_web::router_for(state.clone(), repeatrx_web::Exposure::Everything);
            let running = repeatrx_web::server::start(router, opts.tls.clone(), addr, None)
                .with_context(|| format!("could not listen on {addr} (admin_listen)"))?;
            Some(running)
        }
        None => None,
    };
    let exposure =
        if admin.is_some() { repeatrx_web::Exposure::PublicOnly } else { repeatrx_web::Exposure::Everything };
    let router = repeatrx_web::router_for(state, exposure);
    let running = repeatrx_web::server::start(router, opts.tls, opts.listen, opts.http_redirect)
        .with_context(|| format!("could not listen on {}", opts.listen))?;
    Ok(Server { app, running, admin, jobs, backup })
}

/// Settings for a demo server on `public_url`.
pub fn demo_settings(public_url: String) -> Settings {
    Settings {
        ordering: Default::default(),
        stage_targets: Default::default(),
        sessions: SessionPolicy::default(),
        public_url,
        demo: true,
        erasure_ledger: None,
    }
}

/// Settings for a console command (`admin`, `audit`, `restore`) working on a production
/// database: not the demo, and no public address unless the command is given one.
pub fn console_settings() -> Settings {
    Settings { demo: false, ..demo_settings(String::new()) }
}

/// Choices for a demo run beyond where it listens.
#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    /// Deliver the demo's emails to this SMTP server (plain, loopback only: e.g. a mail catcher)
    /// instead of keeping them in the outbox page.
    pub smtp: Option<SocketAddr>,
    /// Override the idle timeouts (minutes), e.g. to try the inactivity warning quickly.
    pub patient_idle_minutes: Option<u32>,
    pub staff_idle_minutes: Option<u32>,
    /// Serve the platform team's pages on this address only (as production's `admin_listen`).
    pub admin_listen: Option<SocketAddr>,
    /// Run the demo on this PostgreSQL database (created if missing) instead of the SQLite file in
    /// the data folder: the same demo, on the engine production scales on.
    pub database_url: Option<String>,
    /// Back the demo's SQLite database up continuously to this folder (as production's
    /// `[backup] folder`), to try `repeatrx restore`.
    pub backup_dir: Option<PathBuf>,
}

/// Opens (creating and seeding if new) the demo database in `data_dir` and starts the server.
pub async fn start_demo(
    data_dir: &Path,
    listen: SocketAddr,
    http_redirect: Option<SocketAddr>,
) -> anyhow::Result<Server> {
    start_demo_with(data_dir, listen, http_redirect, DemoOptions::default()).await
}

/// [`start_demo`] with [`DemoOptions`].
pub async fn start_demo_with(
    data_dir: &Path,
    listen: SocketAddr,
    http_redirect: Option<SocketAddr>,
    options: DemoOptions,
) -> anyhow::Result<Server> {
    let mail = match options.smtp {
        Some(addr) if addr.ip().is_loopback() => MailTransport::Smtp(repeatrx_app::mail::SmtpSettings {
            host: addr.ip().to_string(),
            port: addr.port(),
            security: repeatrx_app::mail::SmtpSecurity::None,
            username: None,
            password: None,
            from: "RepeatRx demo <demo@repeatrx.example>".into(),
        }),
        Some(addr) => bail!("--smtp must be a loopback address (the demo sends mail without TLS); got {addr}"),
        None => MailTransport::DemoOutbox,
    };
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("could not create the data folder {}", data_dir.display()))?;
    let db: PathBuf = data_dir.join("repeatrx-demo.db");
    // The demo keeps its keys beside its database: fine for synthetic data, and the reason
    // production refuses a key file inside its data folder is spelled out in the README.
    let key_file = data_dir.join("repeatrx-demo.keys");
    let keys = KeyFile::open_or_create(&key_file)
        .with_context(|| format!("the demo's encryption keys {} cannot be used", key_file.display()))?;
    let (url, db) = match &options.database_url {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            if options.backup_dir.is_some() {
                bail!("--backup-dir is for the demo's SQLite database; PostgreSQL keeps its own archive (deploy/postgres)");
            }
            SqlStore::create_postgres_database(url).await.context("could not create the demo's PostgreSQL database")?;
            (url.clone(), "the demo's PostgreSQL database".to_string())
        }
        Some(_) => bail!("--database-url must be a postgres:// address (the demo's own database is SQLite)"),
        None => (format!("sqlite://{}", db.display()), db.display().to_string()),
    };
    let sql = open_sql_store(&url, Arc::new(keys)).await?;
    let backup_settings = options.backup_dir.as_ref().map(|dir| crate::config::BackupSettings {
        targets: vec![repeatrx_store::backup::Target::Folder(dir.clone())],
        policy: repeatrx_store::backup::BackupPolicy::default(),
    });
    let backup = start_backup(&sql, &url, backup_settings.as_ref()).await?;
    let store: DynStore = Arc::new(sql);
    let (cert, key) = crate::demo_cert::ensure_demo_certificate(data_dir)?;
    let tls = repeatrx_web::tls::load_server_config(&cert, &key)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // The public URL is known only after binding (the port may be 0), so seed with a placeholder
    // first and bind to learn the port.
    let probe = std::net::TcpListener::bind(listen).with_context(|| format!("could not listen on {listen}"))?;
    let bound = probe.local_addr()?;
    drop(probe);
    let mut settings = demo_settings(format!("https://{bound}"));
    settings.erasure_ledger = Some(repeatrx_store::ledger::ErasureLedger::new(data_dir.join("repeatrx-demo.erasures")));
    for (minutes, slot) in [
        (options.patient_idle_minutes, &mut settings.sessions.patient_idle),
        (options.staff_idle_minutes, &mut settings.sessions.staff_idle),
    ] {
        if let Some(m) = minutes {
            if !(1..=120).contains(&m) {
                bail!("idle timeouts must be between 1 and 120 minutes (got {m})");
            }
            *slot = jiff::SignedDuration::from_mins(i64::from(m));
        }
    }
    let seeding_app = App::new(store.clone(), clock.clone(), settings.clone());
    seeding_app
        .claim_environment(repeatrx_app::environment::Environment::Demo)
        .await
        .with_context(|| format!("{db} cannot be used"))?;
    seeding_app.reapply_erasures().await.context("could not re-apply the erasure ledger")?;
    repeatrx_app::demo::seed(&seeding_app).await.context("could not create the demo data")?;
    start(ServerOptions {
        store,
        clock,
        settings,
        tls,
        listen: bound,
        http_redirect,
        admin_listen: options.admin_listen,
        mail,
        jobs_every: Duration::from_secs(2),
        backup,
    })
}
