//! Assembling a running RepeatRx: open the store (running migrations), build the services, start
//! the background jobs and the HTTPS server.
use anyhow::{bail, Context};
use repeatrx_app::auth::SessionPolicy;
use repeatrx_app::mail::{MailTransport, Mailer};
use repeatrx_app::{App, Settings};
use repeatrx_domain::clock::{Clock, SystemClock};
use repeatrx_store::sqlite::SqliteStore;
use repeatrx_store::DynStore;
use repeatrx_web::server::Running;
use repeatrx_web::WebState;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Opens the database named by a URL (`sqlite://PATH`), running migrations.
pub async fn open_store(database_url: &str) -> anyhow::Result<DynStore> {
    if let Some(path) = database_url.strip_prefix("sqlite://").or_else(|| database_url.strip_prefix("sqlite:")) {
        let store = SqliteStore::open(Path::new(path))
            .await
            .with_context(|| format!("could not open the SQLite database at {path}"))?;
        return Ok(Arc::new(store));
    }
    if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        bail!("PostgreSQL support is not in this build yet; use a sqlite:// database URL");
    }
    bail!("the database URL must start with sqlite:// (got something else)")
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
}

/// A running server with its background jobs.
pub struct Server {
    pub app: App,
    pub running: Running,
    /// The admin listener, when one is configured.
    pub admin: Option<Running>,
    pub jobs: tokio::task::JoinHandle<()>,
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
    Ok(Server { app, running, admin, jobs })
}

/// Settings for a demo server on `public_url`.
pub fn demo_settings(public_url: String) -> Settings {
    Settings {
        ordering: Default::default(),
        stage_targets: Default::default(),
        sessions: SessionPolicy::default(),
        public_url,
        demo: true,
    }
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
    let store = open_store(&format!("sqlite://{}", db.display())).await?;
    let (cert, key) = crate::demo_cert::ensure_demo_certificate(data_dir)?;
    let tls = repeatrx_web::tls::load_server_config(&cert, &key)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // The public URL is known only after binding (the port may be 0), so seed with a placeholder
    // first and bind to learn the port.
    let probe = std::net::TcpListener::bind(listen).with_context(|| format!("could not listen on {listen}"))?;
    let bound = probe.local_addr()?;
    drop(probe);
    let mut settings = demo_settings(format!("https://{bound}"));
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
        .with_context(|| format!("{} cannot be used", db.display()))?;
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
    })
}
