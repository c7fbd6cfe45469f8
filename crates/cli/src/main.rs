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
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

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
    },
    /// Onboard organisations and operators (platform operators only; no patient data).
    Admin(AdminArgs),
    /// Check the audit trail.
    Audit(AuditArgs),
}

#[derive(Args)]
struct AuditArgs {
    #[arg(long, env = "REPEATRX_DATABASE_URL")]
    database_url: String,
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
        } => {
            let options = startup::DemoOptions { smtp, patient_idle_minutes, staff_idle_minutes, admin_listen };
            demo(data_dir, listen, http_redirect, options).await
        }
        Command::Serve { config } => serve(config).await,
        Command::Migrate { database_url } => {
            startup::open_store(&database_url).await?;
            println!("The database is up to date.");
            Ok(())
        }
        Command::Admin(args) => admin(args).await,
        Command::Audit(args) => audit(args).await,
    }
}

async fn audit(args: AuditArgs) -> anyhow::Result<()> {
    let store = startup::open_store(&args.database_url).await?;
    let mut settings = startup::demo_settings(String::new());
    settings.demo = false;
    let app = App::new(store, Arc::new(SystemClock), settings);
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
    let store = startup::open_store(&config.database_url).await?;
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
    };
    App::new(store.clone(), Arc::new(SystemClock), settings.clone())
        .claim_environment(repeatrx_app::environment::Environment::Production)
        .await?;
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

async fn admin(args: AdminArgs) -> anyhow::Result<()> {
    let store = startup::open_store(&args.database_url).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut settings = startup::demo_settings(String::new());
    settings.demo = false;
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
