//! `repeatrx`: the one binary. `demo` runs everything on synthetic data; `serve` runs production
//! from a configuration file; `migrate` prepares a database; `admin` onboards organisations.
#![forbid(unsafe_code)]

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use repeatrx::config::ServeConfig;
use repeatrx::startup::{self, ServerOptions};
use repeatrx_app::admin::NewOrganisationInput;
use repeatrx_app::mail::MailTransport;
use repeatrx_app::{App, Settings};
use repeatrx_domain::clock::{Clock, SystemClock};
use repeatrx_store::crypto::{KeyFile, KeySource};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// mimalloc instead of glibc's allocator. Profiles of the repeat list and queue pages spent about
/// a sixth of the server's time in glibc's `malloc`/`free` (sqlx copies every column value it
/// reads, SQLite builds a temporary b-tree for each `IN (...)` list), much of it consolidating
/// and locking arenas shared by the connection threads; mimalloc keeps a heap per thread.
/// Measured A/B in BENCHMARKS.md: queue page about a fifth faster, its p99 down about 40%, for
/// about 30 MB more resident memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "repeatrx",
    version,
    about = "RepeatRx: secure online repeat prescriptions for pharmacies, practices and patients"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole service on an embedded database with synthetic data and a self-signed certificate.
    Demo {
        /// Folder for the demo database and certificate (created if missing).
        #[arg(long, default_value = "repeatrx-data")]
        data_dir: PathBuf,
        /// Address for HTTPS.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        /// Also listen for plain HTTP here, only to redirect to HTTPS.
        #[arg(long)]
        http_redirect: Option<SocketAddr>,
        /// Send the demo's emails to this SMTP server on this machine (e.g. a mail catcher on
        /// 127.0.0.1:1025) instead of keeping them on the /demo/outbox page.
        #[arg(long)]
        smtp: Option<SocketAddr>,
        /// Minutes without activity before a patient is signed out (default 30).
        #[arg(long)]
        patient_idle_minutes: Option<u32>,
        /// Minutes without activity before staff are signed out (default 15).
        #[arg(long)]
        staff_idle_minutes: Option<u32>,
        /// Serve the platform team's pages (/admin, /custody) only on this address, as
        /// production's `admin_listen` does; the main address then answers "not found" there.
        #[arg(long)]
        admin_listen: Option<SocketAddr>,
        /// Run on this PostgreSQL database (postgres://..., created if missing) instead of the
        /// SQLite file in the data folder.
        #[arg(long)]
        database_url: Option<String>,
        /// Back the demo's database up continuously to this folder, to try `repeatrx restore`.
        #[arg(long)]
        backup_dir: Option<PathBuf>,
    },
    /// Run in production from a configuration file (environment variables override it).
    Serve {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Create or upgrade a database's tables, then exit.
    Migrate {
        #[arg(long, env = "REPEATRX_DATABASE_URL")]
        database_url: String,
        #[command(flatten)]
        keys: KeyFileArg,
    },
    /// Make or rotate the encryption keys of patient data.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Onboard organisations and operators (platform operators only; no patient data).
    Admin(AdminArgs),
    /// Check the audit trail.
    Audit(AuditArgs),
    /// Rebuild the database as it was at a moment, from its continuous backup (SQLite), into a
    /// new folder; then point the server's database_url at the copy.
    Restore(RestoreArgs),
    /// Continuous backup of a SQLite database.
    Backup {
        #[command(subcommand)]
        action: BackupAction,
    },
}

/// Where the backups are: the server's configuration, or a backup folder with a key file.
#[derive(Args)]
struct BackupSource {
    /// The server's configuration file (backup destinations, key file, erasure ledger).
    #[arg(long, short, conflicts_with = "backup_dir")]
    config: Option<PathBuf>,
    /// Or: the backup folder (as `[backup] folder`, or the demo's --backup-dir).
    #[arg(long)]
    backup_dir: Option<PathBuf>,
    /// With --backup-dir: the key file the database was made with.
    #[arg(long, env = "REPEATRX_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// With --backup-dir: the erasure ledger, whose erasures are applied to the restored copy.
    #[arg(long)]
    erasure_ledger: Option<PathBuf>,
}

#[derive(Args)]
struct RestoreArgs {
    /// The moment to go back to, in UTC: e.g. 2026-11-22T10:15:30Z. Nothing after it is restored.
    #[arg(long, value_parser = parse_moment)]
    to: jiff::Timestamp,
    /// A new (or empty) folder for the restored database (repeatrx.db).
    #[arg(long)]
    into: PathBuf,
    #[command(flatten)]
    source: BackupSource,
}

fn parse_moment(s: &str) -> Result<jiff::Timestamp, String> {
    s.trim().parse().map_err(|_| format!("\"{s}\" is not a moment in UTC such as 2026-11-22T10:15:30Z"))
}

#[derive(Subcommand)]
enum BackupAction {
    /// Show the last change shipped, how far behind shipping is, and what each destination holds.
    Status {
        #[command(flatten)]
        source: BackupSource,
        /// With --backup-dir: the database (sqlite://PATH).
        #[arg(long, env = "REPEATRX_DATABASE_URL")]
        database_url: Option<String>,
    },
}

#[derive(Args)]
struct KeyFileArg {
    /// The key file (made by `repeatrx keys init`; readable by the service only).
    #[arg(long, env = "REPEATRX_KEY_FILE")]
    key_file: PathBuf,
}

#[derive(Subcommand)]
enum KeysAction {
    /// Make a new key file (master key and index key), readable by this user only. Do it once,
    /// before the first `migrate`, and keep a copy somewhere safe apart from database backups:
    /// without it no patient data can be read.
    Init {
        #[command(flatten)]
        keys: KeyFileArg,
    },
    /// Replace the master key while the service runs: every patient's data key is re-wrapped
    /// under a new master key (patient data itself is not rewritten). The old master key stays
    /// in the file, below the new one, to read backups taken before today.
    Rotate {
        #[arg(long, env = "REPEATRX_DATABASE_URL")]
        database_url: String,
        #[command(flatten)]
        keys: KeyFileArg,
    },
}

#[derive(Args)]
struct AuditArgs {
    #[arg(long, env = "REPEATRX_DATABASE_URL")]
    database_url: String,
    #[command(flatten)]
    keys: KeyFileArg,
    #[command(subcommand)]
    action: AuditAction,
}

#[derive(Subcommand)]
enum AuditAction {
    /// Check that no entry was changed, removed or reordered; names the first broken entry, and
    /// prints a checkpoint to keep outside the database.
    Verify {
        /// A checkpoint printed by an earlier check (or logged by the server), NUMBER:HASH: the
        /// check also proves that entry is still there, unchanged, so nothing after it was cut off.
        #[arg(long, value_parser = parse_checkpoint)]
        checkpoint: Option<repeatrx_app::audit::Checkpoint>,
    },
}

fn parse_checkpoint(s: &str) -> Result<repeatrx_app::audit::Checkpoint, String> {
    s.parse()
}

#[derive(Args)]
struct AdminArgs {
    #[arg(long, env = "REPEATRX_DATABASE_URL")]
    database_url: String,
    #[command(flatten)]
    keys: KeyFileArg,
    /// The service's public address (https://...): invitation emails link to it.
    #[arg(long, env = "REPEATRX_PUBLIC_URL")]
    public_url: Option<String>,
    #[command(subcommand)]
    action: AdminAction,
}

#[derive(Args)]
struct OrgArgs {
    #[arg(long)]
    name: String,
    /// The NHS ODS code.
    #[arg(long)]
    ods_code: String,
    #[arg(long, default_value = "")]
    address: String,
    /// The organisation's own email address (optional).
    #[arg(long, default_value = "")]
    email: String,
    #[arg(long)]
    manager_name: String,
    #[arg(long)]
    manager_email: String,
}

#[derive(Subcommand)]
enum AdminAction {
    /// Create a pharmacy and its first manager; prints the manager's one-time password.
    CreatePharmacy(OrgArgs),
    /// Create a practice and its first manager; prints the manager's one-time password.
    CreatePractice {
        #[command(flatten)]
        org: OrgArgs,
        /// The practice's prescribers authorise on RepeatRx.
        #[arg(long)]
        on_repeatrx: bool,
    },
    /// Create a platform operator account; prints its one-time password.
    CreateOperator {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
    },
    /// List pharmacies and practices.
    ListOrganisations,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("REPEATRX_LOG").unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Demo {
            data_dir,
            listen,
            http_redirect,
            smtp,
            patient_idle_minutes,
            staff_idle_minutes,
            admin_listen,
            database_url,
            backup_dir,
        } => {
            let options = startup::DemoOptions {
                smtp,
                patient_idle_minutes,
                staff_idle_minutes,
                admin_listen,
                database_url,
                backup_dir,
            };
            demo(data_dir, listen, http_redirect, options).await
        }
        Command::Serve { config } => serve(config).await,
        Command::Migrate { database_url, keys } => {
            startup::open_store(&database_url, startup::load_keys(&keys.key_file)?).await?;
            println!("The database is up to date.");
            Ok(())
        }
        Command::Keys { action } => keys(action).await,
        Command::Admin(args) => admin(args).await,
        Command::Audit(args) => audit(args).await,
        Command::Restore(args) => restore(args).await,
        Command::Backup { action: BackupAction::Status { source, database_url } } => {
            backup_status(source, database_url).await
        }
    }
}

/// The backup targets, keys, erasure ledger and database URL named by `--config` or by
/// `--backup-dir` with `--key-file`.
struct Resolved {
    source: repeatrx::recovery::RestoreSource,
    database_url: Option<String>,
}

fn resolve(source: BackupSource) -> anyhow::Result<Resolved> {
    use repeatrx_store::backup::Target;
    if let Some(config) = source.config {
        let config = ServeConfig::load(&config, &|k| std::env::var(k).ok())?;
        let Some(backup) = config.backup else {
            bail!("the configuration has no [backup] section: this database is not backed up continuously");
        };
        return Ok(Resolved {
            source: repeatrx::recovery::RestoreSource {
                targets: backup.targets,
                keys: startup::load_keys(&config.key_file)?,
                erasure_ledger: Some(config.erasure_ledger),
            },
            database_url: Some(config.database_url),
        });
    }
    let Some(dir) = source.backup_dir else {
        bail!("say where the backups are: --config FILE (the server's), or --backup-dir FOLDER with --key-file");
    };
    let Some(key_file) = source.key_file else {
        bail!("--backup-dir needs --key-file (or REPEATRX_KEY_FILE): the backups are encrypted with it");
    };
    Ok(Resolved {
        source: repeatrx::recovery::RestoreSource {
            targets: vec![Target::Folder(dir)],
            keys: startup::load_keys(&key_file)?,
            erasure_ledger: source.erasure_ledger,
        },
        database_url: None,
    })
}

async fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    use repeatrx::recovery::local;
    let resolved = resolve(args.source)?;
    if resolved.source.erasure_ledger.is_none() {
        eprintln!(
            "warning: no erasure ledger given (--erasure-ledger): patients erased after {} come back in the copy \
             until a server with the ledger starts on it",
            args.to
        );
    }
    let bar = indicatif::ProgressBar::new(1);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} objects")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message("restoring");
    let restored = repeatrx::recovery::restore_into(&resolved.source, args.to, &args.into, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .await?;
    bar.finish_and_clear();
    let r = &restored.report;
    println!(
        "Restored {} as it was at {} ({}), from {}: the snapshot of {} and {} transactions after it; the newest change restored was committed at {}.",
        restored.database.display(),
        args.to,
        local(args.to),
        restored.destination,
        local(r.snapshot_taken),
        r.transactions,
        local(r.restored_to)
    );
    if !r.reaches_target {
        println!(
            "Note: the backup holds no change after {}: nothing changed since, or it was not shipped yet (see `repeatrx backup status`).",
            local(r.restored_to)
        );
    }
    if restored.erased_again > 0 {
        println!("{} patients erased since then were erased again from the erasure ledger.", restored.erased_again);
    }
    println!(
        "To use it: stop the server, set database_url = \"sqlite://{}\", and start it; it begins a new backup history.",
        restored.database.display()
    );
    Ok(())
}

async fn backup_status(source: BackupSource, database_url: Option<String>) -> anyhow::Result<()> {
    use repeatrx::recovery::local;
    let resolved = resolve(source)?;
    let Some(url) = resolved.database_url.or(database_url) else {
        bail!("--backup-dir needs --database-url (sqlite://PATH) to read what is still to ship");
    };
    let status = repeatrx::recovery::status(&url, resolved.source.keys.clone(), &resolved.source.targets).await?;
    let s = &status.state;
    let now = jiff::Timestamp::now();
    if !s.enabled {
        println!("Continuous backup is off for this database (no server with [backup] has started on it).");
    } else {
        println!("Continuous backup is on (history {}).", s.generation);
    }
    match s.shipped_change_at {
        Some(at) => println!(
            "Last change shipped: committed {}, shipped {}.",
            local(at),
            s.shipped_at.map(local).unwrap_or_default()
        ),
        None => println!("No change has been shipped yet."),
    }
    let lag = status.lag(now);
    println!("Waiting to ship: {} journal entries; lag {:.1} s.", s.pending, lag.as_secs_f64());
    if let Some(at) = s.snapshot_at {
        println!("Last snapshot: {}.", local(at));
    }
    if let Some(e) = &s.last_error {
        println!("Last shipping problem: {e}");
    }
    for d in &status.destinations {
        match &d.problem {
            Some(p) => println!("{}: cannot be read: {p}", d.label),
            None => println!(
                "{}: {} snapshots (oldest {}, newest {}), {} journal segments, newest change {}.",
                d.label,
                d.snapshots,
                d.oldest_snapshot.map(local).unwrap_or_else(|| "none".into()),
                d.newest_snapshot.map(local).unwrap_or_else(|| "none".into()),
                d.segments,
                d.newest_change.map(local).unwrap_or_else(|| "none".into())
            ),
        }
    }
    if s.enabled && (s.last_error.is_some() || lag > jiff::SignedDuration::from_secs(60)) {
        bail!("backup is behind or failing: see above");
    }
    Ok(())
}

async fn audit(args: AuditArgs) -> anyhow::Result<()> {
    let store = startup::open_store(&args.database_url, startup::load_keys(&args.keys.key_file)?).await?;
    let app = App::new(store, Arc::new(SystemClock), startup::console_settings());
    match args.action {
        AuditAction::Verify { checkpoint } => {
            use repeatrx_app::audit::CheckpointOutcome;
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_message("checking the audit trail");
            let report = app
                .verify_audit_against(checkpoint.as_ref(), |n| bar.set_message(format!("{n} entries checked")))
                .await?;
            bar.finish_and_clear();
            if let Some((seq, why)) = report.first_broken {
                anyhow::bail!(
                    "the audit trail is broken at entry #{seq}: {why}. The {} entries before it are intact.",
                    report.checked
                );
            }
            match (report.checkpoint, &checkpoint) {
                (Some(CheckpointOutcome::Missing { last }), Some(cp)) => anyhow::bail!(
                    "the audit trail ends at entry #{last}, but the checkpoint names entry #{}: the newest entries \
                     were removed",
                    cp.seq
                ),
                (Some(CheckpointOutcome::Differs), Some(cp)) => anyhow::bail!(
                    "entry #{} is not the one the checkpoint recorded: the audit trail was rewritten",
                    cp.seq
                ),
                (Some(CheckpointOutcome::Holds), Some(cp)) => println!("Checkpoint {} holds.", cp.seq),
                _ => {}
            }
            println!("The audit trail is intact: {} entries, last hash {}.", report.checked, report.head);
            if report.head_seq > 0 {
                println!(
                    "Checkpoint: {}:{}  (keep it outside this database; check with --checkpoint later)",
                    report.head_seq, report.head
                );
            }
            Ok(())
        }
    }
}

async fn demo(
    data_dir: PathBuf,
    listen: SocketAddr,
    http_redirect: Option<SocketAddr>,
    options: startup::DemoOptions,
) -> anyhow::Result<()> {
    let smtp = options.smtp;
    let server = startup::start_demo_with(&data_dir, listen, http_redirect, options).await?;
    println!("RepeatRx demo running at {}", server.url());
    if let Some(http) = server.running.http_addr {
        println!("Plain HTTP on http://{http} redirects to HTTPS.");
    }
    if let Some(admin) = server.admin_url() {
        println!("The platform team's pages (/admin, /custody) are served only at {admin}.");
    }
    println!("The certificate is self-signed: your browser will ask you to accept it.");
    println!("Demo sign-ins (password for all: {}):", repeatrx_app::demo::DEMO_PASSWORD);
    for (email, who) in repeatrx_app::demo::DEMO_ACCOUNTS {
        println!("  {email:<28} {who}");
    }
    println!(
        "Staff accounts then ask for a security code: the demo's code page shows one (authenticator secret {}).",
        repeatrx_app::demo::DEMO_TOTP_SECRET
    );
    match smtp {
        Some(addr) => println!("Emails the demo sends go to the SMTP server at {addr}."),
        None => println!("Emails the demo sends: {}/demo/outbox", server.url()),
    }
    println!("Press Ctrl+C to stop.");
    tokio::signal::ctrl_c().await.context("could not wait for Ctrl+C")?;
    server.stop().await;
    Ok(())
}

async fn serve(config_path: PathBuf) -> anyhow::Result<()> {
    let config = ServeConfig::load(&config_path, &|k| std::env::var(k).ok())?;
    let sql = startup::open_sql_store(&config.database_url, startup::load_keys(&config.key_file)?).await?;
    let backup = startup::start_backup(&sql, &config.database_url, config.backup.as_ref()).await?;
    let store: repeatrx_store::DynStore = Arc::new(sql);
    let tls = repeatrx_web::tls::load_server_config(&config.tls_cert, &config.tls_key)?;
    let settings = Settings {
        ordering: repeatrx_domain::repeat::OrderingPolicy { due_window_days: config.due_window_days },
        stage_targets: config.stage_targets,
        sessions: repeatrx_app::auth::SessionPolicy {
            patient_idle: jiff::SignedDuration::from_mins(i64::from(config.patient_idle_minutes)),
            staff_idle: jiff::SignedDuration::from_mins(i64::from(config.staff_idle_minutes)),
            absolute: jiff::SignedDuration::from_hours(i64::from(config.absolute_hours)),
        },
        public_url: config.public_url.as_str().trim_end_matches('/').to_string(),
        demo: false,
        erasure_ledger: Some(repeatrx_store::ledger::ErasureLedger::new(config.erasure_ledger.clone())),
    };
    let app = App::new(store.clone(), Arc::new(SystemClock), settings.clone());
    app.claim_environment(repeatrx_app::environment::Environment::Production).await?;
    let again = app.reapply_erasures().await.context("could not re-apply the erasure ledger")?;
    if again > 0 {
        tracing::warn!(patients = again, "patients erased before were erased again from the erasure ledger");
    }
    let server = startup::start(ServerOptions {
        store,
        clock: Arc::new(SystemClock),
        settings,
        tls,
        listen: config.listen,
        http_redirect: config.http_redirect_listen,
        admin_listen: config.admin_listen,
        mail: MailTransport::Smtp(config.smtp.clone()),
        jobs_every: Duration::from_secs(10),
        backup,
    })?;
    tracing::info!(url = %server.url(), "RepeatRx serving");
    tokio::signal::ctrl_c().await.context("could not wait for Ctrl+C")?;
    server.stop().await;
    Ok(())
}

fn invitation_queued(to: &repeatrx_domain::text::Email) -> String {
    format!(
        "An invitation to choose a password is queued for {to}: the running server emails it (the link works for 72 hours)."
    )
}

async fn keys(action: KeysAction) -> anyhow::Result<()> {
    match action {
        KeysAction::Init { keys } => {
            let made = KeyFile::create(&keys.key_file)?;
            println!(
                "Made the key file {} (master key {}), readable by you only. Keep a copy apart from database backups: without it no patient data can be read.",
                keys.key_file.display(),
                made.keys().master().id()
            );
            Ok(())
        }
        KeysAction::Rotate { database_url, keys } => {
            let file = Arc::new(KeyFile::load(&keys.key_file)?);
            let store = startup::open_store(&database_url, file.clone()).await?;
            let old = file.keys().master().id().to_string();
            let bar = indicatif::ProgressBar::new(0);
            let report = startup::rotate_master_key(&file, &store, |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            })
            .await?;
            bar.finish_and_clear();
            println!(
                "Master key {old} replaced by {}: {} data keys re-wrapped. The old key stays in {} to read backups taken before now; copy the file to every server.",
                report.master_id,
                report.rewrapped,
                keys.key_file.display()
            );
            Ok(())
        }
    }
}

async fn admin(args: AdminArgs) -> anyhow::Result<()> {
    let store = startup::open_store(&args.database_url, startup::load_keys(&args.keys.key_file)?).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut settings = startup::console_settings();
    let invites = matches!(args.action, AdminAction::CreatePharmacy(_) | AdminAction::CreatePractice { .. });
    match args.public_url.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
        Some(url) if url.starts_with("https://") => settings.public_url = url.trim_end_matches('/').to_string(),
        Some(_) => bail!("--public-url must start with https:// (the invitation email links to it)"),
        None if invites => bail!(
            "--public-url (or REPEATRX_PUBLIC_URL) is needed: the new manager's invitation email links to the service"
        ),
        None => {}
    }
    let app = App::new(store, clock, settings);
    let console = App::console_actor();
    let org = |o: OrgArgs, on_repeatrx: bool| NewOrganisationInput {
        name: o.name,
        ods_code: o.ods_code,
        address: o.address,
        email: o.email,
        manager_name: o.manager_name,
        manager_email: o.manager_email,
        on_repeatrx,
    };
    match args.action {
        AdminAction::CreatePharmacy(o) => {
            let done = app.create_pharmacy(&console, &org(o, false)).await?;
            println!(
                "Created pharmacy {} ({}), id {}",
                done.organisation.name, done.organisation.ods_code, done.organisation.id
            );
            println!("{}", invitation_queued(&done.manager_email));
        }
        AdminAction::CreatePractice { org: o, on_repeatrx } => {
            let done = app.create_practice(&console, &org(o, on_repeatrx)).await?;
            println!(
                "Created practice {} ({}), id {}",
                done.organisation.name, done.organisation.ods_code, done.organisation.id
            );
            println!("{}", invitation_queued(&done.manager_email));
        }
        AdminAction::CreateOperator { email, name } => {
            let (account, password) = app.create_operator(&email, &name).await?;
            println!("Created operator {}  one-time password: {password}", account.email);
        }
        AdminAction::ListOrganisations => {
            let (pharmacies, practices) = app.organisations(&console).await?;
            println!("Pharmacies:");
            for p in pharmacies {
                println!("  {}  {:<8} {}", p.id, p.ods_code, p.name);
            }
            println!("Practices:");
            for p in practices {
                println!(
                    "  {}  {:<8} {}{}",
                    p.id,
                    p.ods_code,
                    p.name,
                    if p.on_repeatrx { "" } else { " (not on RepeatRx)" }
                );
            }
        }
    }
    Ok(())
}
