//! Production configuration: a TOML file (see `deploy/repeatrx.example.toml`) with environment
//! overrides, validated once at start. Every problem is collected and reported together, so an
//! operator fixes them all in one go instead of one per restart. Whatever would weaken the
//! service's security (plain HTTP, a world-readable key, unencrypted mail to a remote relay...)
//! is refused rather than warned about.
//!
//! Environment variables override the file: `REPEATRX_DATABASE_URL`, `REPEATRX_LISTEN`,
//! `REPEATRX_HTTP_REDIRECT_LISTEN`, `REPEATRX_PUBLIC_URL`, `REPEATRX_TLS_CERT`,
//! `REPEATRX_TLS_KEY`, `REPEATRX_SMTP_HOST`, `REPEATRX_SMTP_PORT`, `REPEATRX_SMTP_SECURITY`,
//! `REPEATRX_SMTP_USERNAME`, `REPEATRX_SMTP_PASSWORD`, `REPEATRX_SMTP_FROM`. An empty variable
//! counts as unset. Relative paths in the file are relative to the file's folder; relative paths
//! in the environment are relative to the working directory.
use repeatrx_app::mail::{MailTransport, Mailer, SmtpSecurity, SmtpSettings};
use repeatrx_domain::order::StageTargets;
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The configuration file as written. Unknown keys are refused (a typo must not silently drop a
/// setting).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub database_url: Option<String>,
    pub listen: Option<String>,
    pub http_redirect_listen: Option<String>,
    pub admin_listen: Option<String>,
    pub public_url: Option<String>,
    pub tls: Option<TlsFiles>,
    /// The encryption keys (P2): made once with `repeatrx keys init`, readable by the service only.
    pub key_file: Option<PathBuf>,
    /// The erasure ledger (P13); by default `repeatrx.erasures` beside the key file.
    pub erasure_ledger: Option<PathBuf>,
    pub smtp: Option<SmtpSettings>,
    pub session: Option<SessionSettings>,
    pub ordering: Option<OrderingSettings>,
    pub stage_targets_hours: Option<StageTargetHours>,
    pub backup: Option<BackupFile>,
}

/// `[backup]`: continuous backup of a SQLite database (P3, P4).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupFile {
    /// A folder on another disk (or a mounted share from another machine).
    pub folder: Option<PathBuf>,
    pub s3: Option<S3File>,
    /// How far back a restore can go (default 24).
    pub history_hours: Option<u32>,
    /// How often a whole snapshot is taken (default 6).
    pub snapshot_every_hours: Option<u32>,
}

/// `[backup.s3]`: a bucket of an S3-compatible store. The secret key is best given in
/// `REPEATRX_BACKUP_S3_SECRET_ACCESS_KEY`.
#[derive(Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3File {
    pub bucket: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub prefix: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<SecretString>,
}

impl fmt::Debug for S3File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3File").field("bucket", &self.bucket).field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

/// Continuous backup as configured.
#[derive(Debug, Clone)]
pub struct BackupSettings {
    pub targets: Vec<repeatrx_store::backup::Target>,
    pub policy: repeatrx_store::backup::BackupPolicy,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSettings {
    pub patient_idle_minutes: Option<u32>,
    pub staff_idle_minutes: Option<u32>,
    pub absolute_hours: Option<u32>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderingSettings {
    pub due_window_days: Option<i64>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageTargetHours {
    pub submitted: Option<i64>,
    pub in_review: Option<i64>,
    pub with_prescriber: Option<i64>,
    pub preparing: Option<i64>,
    pub ready: Option<i64>,
}

/// Everything `repeatrx serve` needs, validated.
#[derive(Clone)]
pub struct ServeConfig {
    pub database_url: String,
    pub listen: SocketAddr,
    pub http_redirect_listen: Option<SocketAddr>,
    /// The platform team's pages only here (e.g. loopback, reached over SSH or a VPN).
    pub admin_listen: Option<SocketAddr>,
    pub public_url: url::Url,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub key_file: PathBuf,
    pub erasure_ledger: PathBuf,
    pub smtp: SmtpSettings,
    pub patient_idle_minutes: u32,
    pub staff_idle_minutes: u32,
    pub absolute_hours: u32,
    pub due_window_days: i64,
    pub stage_targets: StageTargets,
    /// Continuous backup of the SQLite database (required with SQLite; PostgreSQL has its own).
    pub backup: Option<BackupSettings>,
}

impl fmt::Debug for ServeConfig {
    // Hand-written: a PostgreSQL URL may carry a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeConfig")
            .field("database_url", &redact_url(&self.database_url))
            .field("listen", &self.listen)
            .field("http_redirect_listen", &self.http_redirect_listen)
            .field("admin_listen", &self.admin_listen)
            .field("public_url", &self.public_url.as_str())
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("smtp", &self.smtp)
            .field("patient_idle_minutes", &self.patient_idle_minutes)
            .field("staff_idle_minutes", &self.staff_idle_minutes)
            .field("absolute_hours", &self.absolute_hours)
            .field("due_window_days", &self.due_window_days)
            .field("stage_targets", &self.stage_targets)
            .finish()
    }
}

/// Every problem found, one sentence each.
#[derive(Debug, thiserror::Error)]
#[error("the configuration has {} problem(s):\n{}", .0.len(), .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError(pub Vec<String>);

pub const DEFAULT_PATIENT_IDLE_MINUTES: u32 = 30;
pub const DEFAULT_STAFF_IDLE_MINUTES: u32 = 15;
pub const DEFAULT_ABSOLUTE_HOURS: u32 = 12;
pub const DEFAULT_DUE_WINDOW_DAYS: i64 = 7;
const MAX_IDLE_MINUTES: u32 = 120;
const MAX_ABSOLUTE_HOURS: u32 = 24;
const MAX_DUE_WINDOW_DAYS: i64 = 28;

impl ServeConfig {
    /// Reads `path`, applies the environment (`env("REPEATRX_...")`) on top, and validates the
    /// result, reporting every problem at once.
    pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<ServeConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(vec![format!("the configuration file {} cannot be read: {e}", path.display())]))?;
        let file: ConfigFile = toml::from_str(&text).map_err(|e| {
            ConfigError(vec![format!(
                "the configuration file {} is not valid: {}",
                path.display(),
                e.to_string().trim_end()
            )])
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut problems = Vec::new();
        if file.smtp.as_ref().is_some_and(|s| s.password.is_some()) {
            if let Ok(meta) = std::fs::metadata(path) {
                let mode = meta.permissions().mode();
                if mode & 0o007 != 0 {
                    problems.push(format!(
                        "the configuration file {0} holds the SMTP password but anyone on the machine can read it (mode {1:04o}): run chmod 640 {0}, or move the password to REPEATRX_SMTP_PASSWORD",
                        path.display(),
                        mode & 0o777
                    ));
                }
            }
        }
        let config = Self::validate(file, base, env, &mut problems);
        match config {
            Some(config) if problems.is_empty() => Ok(config),
            _ => Err(ConfigError(problems)),
        }
    }

    /// Merges and checks; pushes every problem. Returns a config only when every required value
    /// is present (the caller still refuses it if any problem was pushed).
    fn validate(
        file: ConfigFile,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
        problems: &mut Vec<String>,
    ) -> Option<ServeConfig> {
        let env = |key: &str| env(key).filter(|v| !v.trim().is_empty());

        let database_url = env("REPEATRX_DATABASE_URL").or(file.database_url);
        let database_url = match database_url {
            None => {
                problems.push("database_url is not set (in the file or REPEATRX_DATABASE_URL)".into());
                None
            }
            Some(url) => {
                let sqlite_path = url.strip_prefix("sqlite://");
                let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
                if postgres {
                    if let Some(problem) = postgres_transport_problem(&url) {
                        problems.push(problem);
                    }
                    Some(url)
                } else if sqlite_path.is_some_and(|p| !p.is_empty()) {
                    Some(url)
                } else {
                    // The value is not echoed: a database URL may contain a password.
                    problems.push("database_url must start with sqlite:// (followed by the database file's path) or postgres:// / postgresql://".into());
                    None
                }
            }
        };

        let listen = match env("REPEATRX_LISTEN").or(file.listen) {
            None => {
                problems
                    .push("listen is not set (in the file or REPEATRX_LISTEN), e.g. listen = \"0.0.0.0:8443\"".into());
                None
            }
            Some(s) => parse_addr("listen", &s, problems),
        };
        let http_redirect_listen = env("REPEATRX_HTTP_REDIRECT_LISTEN")
            .or(file.http_redirect_listen)
            .and_then(|s| parse_addr("http_redirect_listen", &s, problems));
        if let (Some(https), Some(http)) = (listen, http_redirect_listen) {
            if https == http {
                problems.push(format!("http_redirect_listen must differ from listen (both are {https})"));
            }
        }
        let admin_listen =
            env("REPEATRX_ADMIN_LISTEN").or(file.admin_listen).and_then(|s| parse_addr("admin_listen", &s, problems));
        if let Some(admin) = admin_listen {
            if Some(admin) == listen || Some(admin) == http_redirect_listen {
                problems.push(format!("admin_listen must differ from listen and http_redirect_listen ({admin})"));
            }
            if admin.ip().is_unspecified() {
                problems.push(format!(
                    "admin_listen must name one interface, not every one ({admin}): e.g. 127.0.0.1:9443, reached over SSH or a VPN"
                ));
            }
        }

        let public_url = match env("REPEATRX_PUBLIC_URL").or(file.public_url) {
            None => {
                problems.push("public_url is not set (in the file or REPEATRX_PUBLIC_URL), e.g. public_url = \"https://repeats.example.org\"".into());
                None
            }
            Some(s) => match url::Url::parse(&s) {
                Ok(u) if u.scheme() == "https" && u.host_str().is_some_and(|h| !h.is_empty()) => Some(u),
                Ok(u) if u.scheme() != "https" => {
                    problems.push(format!(
                        "public_url must be an https:// address (got {}://...): RepeatRx is only served over HTTPS",
                        u.scheme()
                    ));
                    None
                }
                _ => {
                    problems.push(format!(
                        "public_url must be an address such as https://repeats.example.org (got \"{s}\")"
                    ));
                    None
                }
            },
        };

        let (file_cert, file_key) = match file.tls {
            Some(t) => (Some(base.join(t.cert)), Some(base.join(t.key))),
            None => (None, None),
        };
        let tls_cert = env("REPEATRX_TLS_CERT").map(PathBuf::from).or(file_cert);
        let tls_key = env("REPEATRX_TLS_KEY").map(PathBuf::from).or(file_key);
        let cert_ok = check_tls_file("certificate", tls_cert.as_deref(), "cert", "REPEATRX_TLS_CERT", problems);
        let key_ok = check_tls_file("private key", tls_key.as_deref(), "key", "REPEATRX_TLS_KEY", problems);
        if let Some(key) = tls_key.as_deref().filter(|_| key_ok) {
            if let Ok(meta) = std::fs::metadata(key) {
                let mode = meta.permissions().mode();
                if mode & 0o077 != 0 {
                    problems.push(format!(
                        "the TLS private key {0} can be read by other users (mode {1:04o}): run chmod 600 {0}",
                        key.display(),
                        mode & 0o777
                    ));
                }
            }
        }
        if let (Some(cert), Some(key), true, true) = (tls_cert.as_deref(), tls_key.as_deref(), cert_ok, key_ok) {
            if let Err(e) = repeatrx_web::tls::load_server_config(cert, key) {
                problems.push(e.to_string());
            }
        }

        let key_file = env("REPEATRX_KEY_FILE").map(PathBuf::from).or(file.key_file.map(|k| base.join(k)));
        let key_file = match key_file {
            None => {
                problems.push("key_file is not set (in the file or REPEATRX_KEY_FILE): the encryption keys of patient data; make them once with `repeatrx keys init --key-file PATH`".into());
                None
            }
            Some(path) => {
                if let Err(e) = repeatrx_store::crypto::KeyFile::load(&path) {
                    problems.push(e.to_string());
                }
                let db_dir = database_url
                    .as_deref()
                    .and_then(|u| u.strip_prefix("sqlite://"))
                    .and_then(|p| Path::new(p).parent().map(Path::to_path_buf));
                if let (Some(db_dir), Some(key_dir)) = (db_dir, path.parent()) {
                    if same_dir(&db_dir, key_dir) {
                        problems.push(format!(
                            "key_file {} is in the database's folder: a copy of that folder would carry the keys with the data they protect; keep the key file elsewhere (e.g. /etc/repeatrx)",
                            path.display()
                        ));
                    }
                }
                Some(path)
            }
        };

        let erasure_ledger = env("REPEATRX_ERASURE_LEDGER")
            .map(PathBuf::from)
            .or(file.erasure_ledger.map(|l| base.join(l)))
            .or_else(|| key_file.as_ref().map(|k| k.with_file_name("repeatrx.erasures")));
        if let Some(ledger) = &erasure_ledger {
            match ledger.parent().filter(|d| !d.as_os_str().is_empty()) {
                Some(dir) if !dir.is_dir() => problems.push(format!(
                    "erasure_ledger {}: the folder {} does not exist",
                    ledger.display(),
                    dir.display()
                )),
                _ => {}
            }
        }

        let smtp = smtp_settings(file.smtp, &env, problems);

        let session = file.session.unwrap_or_default();
        let patient_idle_minutes = session.patient_idle_minutes.unwrap_or(DEFAULT_PATIENT_IDLE_MINUTES);
        let staff_idle_minutes = session.staff_idle_minutes.unwrap_or(DEFAULT_STAFF_IDLE_MINUTES);
        let absolute_hours = session.absolute_hours.unwrap_or(DEFAULT_ABSOLUTE_HOURS);
        for (name, value) in
            [("patient_idle_minutes", patient_idle_minutes), ("staff_idle_minutes", staff_idle_minutes)]
        {
            if value == 0 || value > MAX_IDLE_MINUTES {
                problems.push(format!("session.{name} must be between 1 and {MAX_IDLE_MINUTES} (got {value})"));
            }
        }
        if absolute_hours == 0 || absolute_hours > MAX_ABSOLUTE_HOURS {
            problems.push(format!(
                "session.absolute_hours must be between 1 and {MAX_ABSOLUTE_HOURS} (got {absolute_hours})"
            ));
        }

        let due_window_days = file.ordering.and_then(|o| o.due_window_days).unwrap_or(DEFAULT_DUE_WINDOW_DAYS);
        if !(0..=MAX_DUE_WINDOW_DAYS).contains(&due_window_days) {
            problems.push(format!(
                "ordering.due_window_days must be between 0 and {MAX_DUE_WINDOW_DAYS} (got {due_window_days})"
            ));
        }

        let targets = file.stage_targets_hours.unwrap_or_default();
        let defaults = StageTargets::default();
        let stage_targets = StageTargets {
            submitted_hours: targets.submitted.unwrap_or(defaults.submitted_hours),
            in_review_hours: targets.in_review.unwrap_or(defaults.in_review_hours),
            with_prescriber_hours: targets.with_prescriber.unwrap_or(defaults.with_prescriber_hours),
            preparing_hours: targets.preparing.unwrap_or(defaults.preparing_hours),
            ready_hours: targets.ready.unwrap_or(defaults.ready_hours),
        };
        for (name, hours) in [
            ("submitted", stage_targets.submitted_hours),
            ("in_review", stage_targets.in_review_hours),
            ("with_prescriber", stage_targets.with_prescriber_hours),
            ("preparing", stage_targets.preparing_hours),
            ("ready", stage_targets.ready_hours),
        ] {
            if !(1..=24 * 365).contains(&hours) {
                problems.push(format!("stage_targets_hours.{name} must be between 1 and 8760 hours (got {hours})"));
            }
        }

        let backup = backup_settings(file.backup, base, database_url.as_deref(), &env, problems);

        Some(ServeConfig {
            database_url: database_url?,
            listen: listen?,
            http_redirect_listen,
            admin_listen,
            public_url: public_url?,
            tls_cert: tls_cert?,
            tls_key: tls_key?,
            key_file: key_file?,
            erasure_ledger: erasure_ledger?,
            smtp: smtp?,
            patient_idle_minutes,
            staff_idle_minutes,
            absolute_hours,
            due_window_days,
            stage_targets,
            backup,
        })
    }
}

const MAX_HISTORY_HOURS: u32 = 24 * 30;

/// `[backup]`, checked against the database: SQLite in production must be backed up
/// continuously; PostgreSQL is backed up by its own archive (deploy/postgres), not by this.
fn backup_settings(
    file: Option<BackupFile>,
    base: &Path,
    database_url: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> Option<BackupSettings> {
    use repeatrx_store::backup::{BackupPolicy, S3Target, Target};
    let sqlite_path = database_url.and_then(|u| u.strip_prefix("sqlite://")).map(Path::new);
    let Some(file) = file else {
        if sqlite_path.is_some() {
            problems.push("a SQLite database needs continuous backup in production: add a [backup] section with a folder on another disk and/or an [backup.s3] bucket (see deploy/repeatrx.example.toml)".into());
        }
        return None;
    };
    if database_url.is_some() && sqlite_path.is_none() {
        problems.push("[backup] is for SQLite databases; PostgreSQL is backed up by its own WAL archive and standby (deploy/postgres/README.md): remove [backup]".into());
        return None;
    }
    let mut targets = Vec::new();
    if let Some(folder) = file.folder.map(|f| base.join(f)) {
        if let Some(db_dir) = sqlite_path.and_then(Path::parent) {
            if same_dir(db_dir, &folder) || folder.starts_with(db_dir) && !db_dir.as_os_str().is_empty() {
                problems.push(format!(
                    "backup.folder {} is inside the database's folder: a backup must survive the loss of the database's disk; use a folder on another disk or machine",
                    folder.display()
                ));
            }
        }
        targets.push(Target::Folder(folder));
    }
    if let Some(s3) = file.s3 {
        let secret =
            env("REPEATRX_BACKUP_S3_SECRET_ACCESS_KEY").or(s3.secret_access_key.map(|s| s.expose_secret().to_string()));
        let key_id = env("REPEATRX_BACKUP_S3_ACCESS_KEY_ID").or(s3.access_key_id);
        let mut allow_http = false;
        if let Some(endpoint) = &s3.endpoint {
            match url::Url::parse(endpoint) {
                Ok(u) if u.scheme() == "https" => {}
                Ok(u) if u.scheme() == "http" && u.host_str().is_some_and(is_local_host) => allow_http = true,
                _ => problems.push(format!(
                    "backup.s3.endpoint must be an https:// address (plain http only to this machine); got \"{endpoint}\""
                )),
            }
        }
        if s3.bucket.trim().is_empty() {
            problems.push("backup.s3.bucket is empty".into());
        }
        match (key_id, secret) {
            (Some(access_key_id), Some(secret_access_key)) => targets.push(Target::S3(S3Target {
                bucket: s3.bucket,
                endpoint: s3.endpoint,
                region: s3.region.unwrap_or_else(|| "us-east-1".into()),
                access_key_id,
                secret_access_key,
                prefix: s3.prefix,
                allow_http,
            })),
            _ => problems.push("backup.s3 needs access_key_id and secret_access_key (or REPEATRX_BACKUP_S3_ACCESS_KEY_ID and REPEATRX_BACKUP_S3_SECRET_ACCESS_KEY)".into()),
        }
    }
    if targets.is_empty() && !problems.iter().any(|p| p.starts_with("backup.s3")) {
        problems.push("[backup] names no destination: set folder and/or [backup.s3]".into());
    }
    let history = file.history_hours.unwrap_or(24);
    let every = file.snapshot_every_hours.unwrap_or(6);
    if history == 0 || history > MAX_HISTORY_HOURS {
        problems.push(format!("backup.history_hours must be between 1 and {MAX_HISTORY_HOURS} (got {history})"));
    }
    if every == 0 || every > history.max(1) {
        problems
            .push(format!("backup.snapshot_every_hours must be between 1 and history_hours ({history}) (got {every})"));
    }
    Some(BackupSettings {
        targets,
        policy: BackupPolicy {
            history: jiff::SignedDuration::from_hours(i64::from(history)),
            snapshot_every: jiff::SignedDuration::from_hours(i64::from(every)),
            ..BackupPolicy::default()
        },
    })
}

/// Patient data travels to a PostgreSQL server on another machine only over TLS that is
/// required (`sslmode=require`, `verify-ca` or `verify-full`); a server on this machine (loopback
/// or a Unix socket) may be reached without. The URL is never echoed (it may hold a password).
fn postgres_transport_problem(url: &str) -> Option<String> {
    let Ok(parsed) = url::Url::parse(url) else {
        return Some("database_url is not a valid postgres:// address".into());
    };
    let host = parsed.host_str().unwrap_or("").trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    let socket = parsed.query_pairs().any(|(k, v)| k == "host" && v.starts_with('/'));
    if host.is_empty() || socket || is_local_host(&host) {
        return None;
    }
    let mode = parsed.query_pairs().find(|(k, _)| k == "sslmode").map(|(_, v)| v.to_ascii_lowercase());
    match mode.as_deref() {
        Some("require" | "verify-ca" | "verify-full") => None,
        _ => Some(format!(
            "database_url names a PostgreSQL server on another machine ({host}) without requiring TLS: add sslmode=verify-full (with sslrootcert=...) or sslmode=require to the URL"
        )),
    }
}

/// Whether two folders are the same, following links where they exist.
fn same_dir(a: &Path, b: &Path) -> bool {
    let real = |p: &Path| std::fs::canonicalize(if p.as_os_str().is_empty() { Path::new(".") } else { p }).ok();
    match (real(a), real(b)) {
        (Some(a), Some(b)) => a == b,
        _ => a == b,
    }
}

fn parse_addr(name: &str, value: &str, problems: &mut Vec<String>) -> Option<SocketAddr> {
    match value.trim().parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            problems.push(format!(
                "{name} must be an IP address and port such as 0.0.0.0:8443 or [::]:8443 (got \"{value}\")"
            ));
            None
        }
    }
}

/// Pushes a problem unless `path` is set and is an existing file; says whether it is.
fn check_tls_file(what: &str, path: Option<&Path>, key: &str, var: &str, problems: &mut Vec<String>) -> bool {
    match path {
        None => {
            problems.push(format!(
                "no TLS {what} is configured: set tls.{key} in the file or {var} (RepeatRx serves HTTPS only)"
            ));
            false
        }
        Some(p) if !p.exists() => {
            problems.push(format!("the TLS {what} file {} does not exist", p.display()));
            false
        }
        Some(p) if !p.is_file() => {
            problems.push(format!("the TLS {what} path {} is not a file", p.display()));
            false
        }
        Some(_) => true,
    }
}

/// The file's `[smtp]` with the environment on top, checked.
fn smtp_settings(
    file: Option<SmtpSettings>,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> Option<SmtpSettings> {
    let before = problems.len();
    let (mut host, mut port, mut security, mut username, mut password, mut from) = match file {
        Some(s) => (Some(s.host), Some(s.port), Some(s.security), s.username, s.password, Some(s.from)),
        None => (None, None, None, None, None, None),
    };
    if let Some(v) = env("REPEATRX_SMTP_HOST") {
        host = Some(v);
    }
    if let Some(v) = env("REPEATRX_SMTP_PORT") {
        match v.trim().parse::<u16>() {
            Ok(p) => port = Some(p),
            Err(_) => problems.push(format!("REPEATRX_SMTP_PORT must be a port number (got \"{v}\")")),
        }
    }
    if let Some(v) = env("REPEATRX_SMTP_SECURITY") {
        match v.trim() {
            "none" => security = Some(SmtpSecurity::None),
            "start_tls" => security = Some(SmtpSecurity::StartTls),
            "tls" => security = Some(SmtpSecurity::Tls),
            other => problems.push(format!("REPEATRX_SMTP_SECURITY must be start_tls, tls or none (got \"{other}\")")),
        }
    }
    if let Some(v) = env("REPEATRX_SMTP_USERNAME") {
        username = Some(v);
    }
    if let Some(v) = env("REPEATRX_SMTP_PASSWORD") {
        password = Some(SecretString::from(v));
    }
    if let Some(v) = env("REPEATRX_SMTP_FROM") {
        from = Some(v);
    }
    for (missing, name, var) in [
        (host.is_none(), "host", "REPEATRX_SMTP_HOST"),
        (port.is_none(), "port", "REPEATRX_SMTP_PORT"),
        (security.is_none(), "security", "REPEATRX_SMTP_SECURITY"),
        (from.is_none(), "from", "REPEATRX_SMTP_FROM"),
    ] {
        if missing {
            problems
                .push(format!("smtp.{name} is not set (in the [smtp] section or {var}); RepeatRx needs a mail relay"));
        }
    }
    if let (Some(SmtpSecurity::None), Some(h)) = (&security, &host) {
        if !is_local_host(h) {
            problems.push(format!(
                "smtp.security = \"none\" would send patient email unencrypted to {h}; it is only allowed to a relay on localhost, 127.0.0.1 or ::1: use start_tls or tls"
            ));
        }
    }
    if password.as_ref().is_some_and(|p| p.expose_secret().is_empty()) {
        password = None;
    }
    let settings = SmtpSettings { host: host?, port: port?, security: security?, username, password, from: from? };
    if problems.len() == before {
        // The mailer's own checks: the sender parses as a mailbox, credentials come in pairs, the
        // host can be a TLS name. No connection is made.
        if let Err(e) = Mailer::new(MailTransport::Smtp(settings.clone())) {
            problems.push(e.to_string());
        }
    }
    Some(settings)
}

fn is_local_host(host: &str) -> bool {
    let h = host.trim().trim_start_matches('[').trim_end_matches(']');
    matches!(h.to_ascii_lowercase().as_str(), "localhost" | "127.0.0.1" | "::1")
}

/// The URL with any password replaced, for logs.
fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            // Only fails for URLs that cannot have a password, which this one has.
            let _ = u.set_password(Some("REDACTED"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "<not a URL>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::fs;

    const TOP: &str = r#"
database_url = "sqlite:///var/lib/repeatrx/repeatrx.db"
listen = "0.0.0.0:8443"
http_redirect_listen = "0.0.0.0:8080"
public_url = "https://repeats.example.org"
"#;

    const BACKUP: &str = "\n[backup]\nfolder = \"/srv/backup/repeatrx\"\n";

    const SMTP: &str = r#"
[smtp]
host = "smtp.example.org"
port = 587
security = "start_tls"
username = "repeatrx"
password = "file-password"
from = "RepeatRx <no-reply@example.org>"
"#;

    /// A folder with a valid certificate pair, and a configuration file in it.
    struct Fixture {
        dir: tempfile::TempDir,
        cert: PathBuf,
        key: PathBuf,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let (cert, key) = crate::demo_cert::ensure_demo_certificate(&dir.path().join("tls")).unwrap();
            fs::create_dir(dir.path().join("keys")).unwrap();
            repeatrx_store::crypto::KeyFile::create(&dir.path().join("keys/repeatrx.keys")).unwrap();
            Self { dir, cert, key }
        }

        fn good_toml(&self) -> String {
            format!("{}key_file = \"keys/repeatrx.keys\"\n{}{}{}", TOP, self.tls_section(), SMTP, BACKUP)
        }

        fn tls_section(&self) -> String {
            format!("\n[tls]\ncert = \"{}\"\nkey = \"tls/demo-key.pem\"\n", self.cert.display())
        }

        fn write(&self, text: &str) -> PathBuf {
            let path = self.dir.path().join("repeatrx.toml");
            fs::write(&path, text).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
            path
        }

        fn load(&self, text: &str, vars: &[(&str, &str)]) -> Result<ServeConfig, ConfigError> {
            let path = self.write(text);
            let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            ServeConfig::load(&path, &|k| vars.get(k).cloned())
        }

        fn problems(&self, text: &str, vars: &[(&str, &str)]) -> Vec<String> {
            self.load(text, vars).expect_err("the configuration should be refused").0
        }
    }

    fn has(problems: &[String], needle: &str) -> bool {
        problems.iter().any(|p| p.contains(needle))
    }

    #[test]
    fn a_remote_postgresql_server_must_be_reached_over_tls() {
        assert!(postgres_transport_problem("postgres://rx@127.0.0.1/repeatrx").is_none());
        assert!(postgres_transport_problem("postgres://rx@localhost:5432/repeatrx").is_none());
        assert!(postgres_transport_problem("postgres://rx@[::1]/repeatrx").is_none());
        assert!(postgres_transport_problem("postgres:///repeatrx?host=/var/run/postgresql").is_none());
        let refused = postgres_transport_problem("postgres://rx:secret@db.internal/repeatrx").expect("refused");
        assert!(refused.contains("without requiring TLS") && !refused.contains("secret"), "{refused}");
        assert!(postgres_transport_problem("postgres://rx@db.internal/repeatrx?sslmode=prefer").is_some());
        assert!(postgres_transport_problem("postgres://rx@db.internal/repeatrx?sslmode=verify-full").is_none());
        assert!(postgres_transport_problem("postgresql://rx@10.0.0.5/repeatrx?sslmode=require").is_none());
    }

    #[test]
    fn the_key_file_must_be_set_private_and_apart_from_the_database() {
        let f = Fixture::new();
        let c = f.load(&f.good_toml(), &[]).unwrap();
        assert_eq!(c.key_file, f.dir.path().join("keys/repeatrx.keys"));
        assert_eq!(c.erasure_ledger, f.dir.path().join("keys/repeatrx.erasures"), "beside the key file by default");

        let without = f.good_toml().replace("key_file = \"keys/repeatrx.keys\"\n", "");
        assert!(has(&f.problems(&without, &[]), "key_file is not set"));
        assert!(has(&f.problems(&without, &[("REPEATRX_KEY_FILE", "keys/nothing-here")]), "cannot be read"));

        let path = f.dir.path().join("keys/repeatrx.keys");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(has(&f.problems(&f.good_toml(), &[]), "readable by others (mode 644)"));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();

        let beside = f.dir.path().join("keys/repeatrx.db");
        let url = format!("sqlite://{}", beside.display());
        assert!(has(&f.problems(&f.good_toml(), &[("REPEATRX_DATABASE_URL", &url)]), "is in the database's folder"));
    }

    #[test]
    fn a_complete_file_loads_with_defaults() {
        let f = Fixture::new();
        let c = f.load(&f.good_toml(), &[]).unwrap();
        assert_eq!(c.database_url, "sqlite:///var/lib/repeatrx/repeatrx.db");
        assert_eq!(c.listen, "0.0.0.0:8443".parse().unwrap());
        assert_eq!(c.http_redirect_listen, Some("0.0.0.0:8080".parse().unwrap()));
        assert_eq!(c.public_url.as_str(), "https://repeats.example.org/");
        assert_eq!(c.tls_cert, f.cert);
        // Relative to the configuration file's folder.
        assert_eq!(c.tls_key, f.dir.path().join("tls/demo-key.pem"));
        assert_eq!(c.smtp.security, SmtpSecurity::StartTls);
        assert_eq!(c.smtp.password.as_ref().map(|p| p.expose_secret().to_string()), Some("file-password".into()));
        assert_eq!((c.patient_idle_minutes, c.staff_idle_minutes, c.absolute_hours), (30, 15, 12));
        assert_eq!(c.due_window_days, 7);
        assert_eq!(c.stage_targets, StageTargets::default());
    }

    #[test]
    fn optional_sections_override_defaults() {
        let f = Fixture::new();
        let text = format!(
            "{}\n[session]\npatient_idle_minutes = 20\nstaff_idle_minutes = 10\nabsolute_hours = 8\n[ordering]\ndue_window_days = 10\n[stage_targets_hours]\nsubmitted = 12\nready = 168\n",
            f.good_toml()
        );
        let c = f.load(&text, &[]).unwrap();
        assert_eq!(
            (c.patient_idle_minutes, c.staff_idle_minutes, c.absolute_hours, c.due_window_days),
            (20, 10, 8, 10)
        );
        assert_eq!(c.stage_targets.submitted_hours, 12);
        assert_eq!(c.stage_targets.ready_hours, 168);
        assert_eq!(c.stage_targets.in_review_hours, StageTargets::default().in_review_hours);
    }

    #[test]
    fn the_admin_pages_can_have_a_listener_of_their_own() {
        let f = Fixture::new();
        let c = f.load(&f.good_toml(), &[]).unwrap();
        assert_eq!(c.admin_listen, None, "by default one listener serves everything");
        let c = f.load(&f.good_toml(), &[("REPEATRX_ADMIN_LISTEN", "127.0.0.1:9443")]).unwrap();
        assert_eq!(c.admin_listen, Some("127.0.0.1:9443".parse().unwrap()));
        let text = format!("admin_listen = \"10.0.0.5:9443\"\n{}", f.good_toml());
        assert_eq!(f.load(&text, &[]).unwrap().admin_listen, Some("10.0.0.5:9443".parse().unwrap()));
        let p = f.problems(&f.good_toml(), &[("REPEATRX_ADMIN_LISTEN", "0.0.0.0:8443")]);
        assert!(has(&p, "admin_listen must differ from listen"), "{p:?}");
        assert!(has(&p, "admin_listen must name one interface"), "{p:?}");
        let p = f.problems(&f.good_toml(), &[("REPEATRX_ADMIN_LISTEN", "loopback")]);
        assert!(has(&p, "admin_listen"), "{p:?}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let f = Fixture::new();
        let c = f
            .load(
                &f.good_toml().replace(BACKUP, ""),
                &[
                    ("REPEATRX_DATABASE_URL", "postgres://rx:pw@db.internal/repeatrx?sslmode=verify-full"),
                    ("REPEATRX_LISTEN", "127.0.0.1:9443"),
                    ("REPEATRX_HTTP_REDIRECT_LISTEN", "127.0.0.1:9080"),
                    ("REPEATRX_PUBLIC_URL", "https://rx.example.net"),
                    ("REPEATRX_TLS_KEY", f.key.to_str().unwrap()),
                    ("REPEATRX_SMTP_HOST", "relay.example.net"),
                    ("REPEATRX_SMTP_PORT", "465"),
                    ("REPEATRX_SMTP_SECURITY", "tls"),
                    ("REPEATRX_SMTP_USERNAME", "env-user"),
                    ("REPEATRX_SMTP_PASSWORD", "env-password"),
                    ("REPEATRX_SMTP_FROM", "Rx <rx@example.net>"),
                    ("REPEATRX_TLS_CERT", ""), // empty counts as unset: the file's value stays
                ],
            )
            .unwrap();
        assert_eq!(c.database_url, "postgres://rx:pw@db.internal/repeatrx?sslmode=verify-full");
        assert_eq!(c.listen, "127.0.0.1:9443".parse().unwrap());
        assert_eq!(c.http_redirect_listen, Some("127.0.0.1:9080".parse().unwrap()));
        assert_eq!(c.public_url.as_str(), "https://rx.example.net/");
        assert_eq!(c.tls_cert, f.cert);
        assert_eq!(c.tls_key, f.key);
        assert_eq!(
            (c.smtp.host.as_str(), c.smtp.port, &c.smtp.security),
            ("relay.example.net", 465, &SmtpSecurity::Tls)
        );
        assert_eq!(c.smtp.username.as_deref(), Some("env-user"));
        assert_eq!(c.smtp.password.as_ref().map(|p| p.expose_secret().to_string()), Some("env-password".into()));
        assert_eq!(c.smtp.from, "Rx <rx@example.net>");
        // Secrets stay out of Debug output.
        let shown = format!("{c:?}");
        assert!(!shown.contains("env-password") && !shown.contains(":pw@"), "{shown}");
    }

    #[test]
    fn the_environment_alone_can_supply_tls_and_smtp() {
        let f = Fixture::new();
        let text =
            "database_url = \"sqlite://rx.db\"\nlisten = \"0.0.0.0:8443\"\npublic_url = \"https://rx.example.org\"\n[backup]\nfolder = \"/srv/backup\"\n";
        let c = f
            .load(
                text,
                &[
                    ("REPEATRX_TLS_CERT", f.cert.to_str().unwrap()),
                    ("REPEATRX_TLS_KEY", f.key.to_str().unwrap()),
                    ("REPEATRX_SMTP_HOST", "localhost"),
                    ("REPEATRX_SMTP_PORT", "25"),
                    ("REPEATRX_SMTP_SECURITY", "none"),
                    ("REPEATRX_SMTP_FROM", "no-reply@example.org"),
                    ("REPEATRX_KEY_FILE", f.dir.path().join("keys/repeatrx.keys").to_str().unwrap()),
                ],
            )
            .unwrap();
        assert_eq!(c.smtp.security, SmtpSecurity::None);
        assert_eq!(c.http_redirect_listen, None);
    }

    #[test]
    fn missing_tls_is_refused() {
        let f = Fixture::new();
        let p = f.problems(&format!("{TOP}{SMTP}"), &[]);
        assert!(has(&p, "no TLS certificate is configured"), "{p:?}");
        assert!(has(&p, "no TLS private key is configured"), "{p:?}");
    }

    #[test]
    fn missing_tls_files_are_refused() {
        let f = Fixture::new();
        let p = f.problems(
            &f.good_toml(),
            &[("REPEATRX_TLS_CERT", "/nonexistent/cert.pem"), ("REPEATRX_TLS_KEY", "/nonexistent/key.pem")],
        );
        assert!(has(&p, "certificate file /nonexistent/cert.pem does not exist"), "{p:?}");
        assert!(has(&p, "private key file /nonexistent/key.pem does not exist"), "{p:?}");
    }

    #[test]
    fn a_key_readable_by_others_is_refused() {
        let f = Fixture::new();
        for mode in [0o640, 0o604, 0o644] {
            fs::set_permissions(&f.key, fs::Permissions::from_mode(mode)).unwrap();
            let p = f.problems(&f.good_toml(), &[]);
            assert!(has(&p, &format!("chmod 600 {}", f.key.display())), "{mode:o}: {p:?}");
        }
        fs::set_permissions(&f.key, fs::Permissions::from_mode(0o400)).unwrap();
        assert!(f.load(&f.good_toml(), &[]).is_ok());
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_refused() {
        let f = Fixture::new();
        let other = crate::demo_cert::ensure_demo_certificate(&f.dir.path().join("other")).unwrap();
        let p = f.problems(&f.good_toml(), &[("REPEATRX_TLS_KEY", other.1.to_str().unwrap())]);
        assert!(has(&p, "does not match"), "{p:?}");
    }

    #[test]
    fn plain_http_public_url_is_refused() {
        let f = Fixture::new();
        let p = f.problems(&f.good_toml(), &[("REPEATRX_PUBLIC_URL", "http://repeats.example.org")]);
        assert!(has(&p, "public_url must be an https:// address"), "{p:?}");
        let p = f.problems(&f.good_toml(), &[("REPEATRX_PUBLIC_URL", "repeats.example.org")]);
        assert!(has(&p, "public_url must be"), "{p:?}");
    }

    #[test]
    fn unencrypted_smtp_is_only_allowed_to_this_machine() {
        let f = Fixture::new();
        let p = f.problems(&f.good_toml(), &[("REPEATRX_SMTP_SECURITY", "none")]);
        assert!(has(&p, "unencrypted to smtp.example.org"), "{p:?}");
        for local in ["localhost", "127.0.0.1", "::1", "[::1]"] {
            let c = f.load(&f.good_toml(), &[("REPEATRX_SMTP_SECURITY", "none"), ("REPEATRX_SMTP_HOST", local)]);
            assert!(c.is_ok(), "{local}: {c:?}");
        }
    }

    #[test]
    fn sqlite_needs_a_backup_elsewhere_and_postgresql_none() {
        let f = Fixture::new();
        let p = f.problems(&f.good_toml().replace(BACKUP, ""), &[]);
        assert!(has(&p, "a SQLite database needs continuous backup"), "{p:?}");
        let p = f.problems(&f.good_toml(), &[("REPEATRX_DATABASE_URL", "postgresql://localhost/rx")]);
        assert!(has(&p, "[backup] is for SQLite databases"), "{p:?}");
        let inside = f.good_toml().replace(BACKUP, "\n[backup]\nfolder = \"/var/lib/repeatrx/backup\"\n");
        assert!(has(&f.problems(&inside, &[]), "inside the database's folder"));
        let s3 = |extra: &str| {
            f.good_toml().replace(
                BACKUP,
                &format!("\n[backup]\nhistory_hours = 48\nsnapshot_every_hours = 12\n[backup.s3]\nbucket = \"rx\"\nregion = \"eu-west-2\"\naccess_key_id = \"AKIA\"\n{extra}"),
            )
        };
        let p = f.problems(&s3("endpoint = \"http://backup.example.org\"\n"), &[]);
        assert!(has(&p, "backup.s3.endpoint must be an https://"), "{p:?}");
        assert!(has(&p, "backup.s3 needs access_key_id and secret_access_key"), "{p:?}");
        let c = f
            .load(&s3("endpoint = \"http://127.0.0.1:9000\"\n"), &[("REPEATRX_BACKUP_S3_SECRET_ACCESS_KEY", "s3cr3t")])
            .unwrap();
        let backup = c.backup.expect("backup settings");
        assert_eq!(backup.policy.history, jiff::SignedDuration::from_hours(48));
        assert_eq!(backup.policy.snapshot_every, jiff::SignedDuration::from_hours(12));
        assert!(
            matches!(&backup.targets[..], [repeatrx_store::backup::Target::S3(s)] if s.allow_http && s.secret_access_key == "s3cr3t")
        );
        assert!(!format!("{:?}", backup.targets).contains("s3cr3t"), "the secret is not shown");
        let p = f.problems(
            &f.good_toml().replace(BACKUP, "\n[backup]\nfolder = \"/srv/b\"\nsnapshot_every_hours = 30\n"),
            &[],
        );
        assert!(has(&p, "backup.snapshot_every_hours must be between 1 and history_hours"), "{p:?}");
    }

    #[test]
    fn only_sqlite_and_postgres_urls_are_accepted() {
        let f = Fixture::new();
        for bad in ["mysql://rx:secretpw@db/rx", "sqlite:rx.db", "sqlite://", "/var/lib/rx.db"] {
            let p = f.problems(&f.good_toml(), &[("REPEATRX_DATABASE_URL", bad)]);
            assert!(has(&p, "database_url must start with sqlite://"), "{bad}: {p:?}");
            assert!(!p.iter().any(|x| x.contains("secretpw")), "the URL is not echoed: {p:?}");
        }
        for good in ["sqlite://rx.db", "postgres://db/rx?sslmode=require", "postgresql://localhost/rx"] {
            let text = if good.starts_with("sqlite") { f.good_toml() } else { f.good_toml().replace(BACKUP, "") };
            assert!(f.load(&text, &[("REPEATRX_DATABASE_URL", good)]).is_ok(), "{good}");
        }
    }

    #[test]
    fn session_limits_are_enforced() {
        let f = Fixture::new();
        for (section, needle) in [
            ("patient_idle_minutes = 0", "session.patient_idle_minutes must be between 1 and 120"),
            ("patient_idle_minutes = 121", "session.patient_idle_minutes must be between 1 and 120"),
            ("staff_idle_minutes = 0", "session.staff_idle_minutes must be between 1 and 120"),
            ("staff_idle_minutes = 500", "session.staff_idle_minutes must be between 1 and 120"),
            ("absolute_hours = 0", "session.absolute_hours must be between 1 and 24"),
            ("absolute_hours = 25", "session.absolute_hours must be between 1 and 24"),
        ] {
            let p = f.problems(&format!("{}\n[session]\n{section}\n", f.good_toml()), &[]);
            assert!(has(&p, needle), "{section}: {p:?}");
        }
        let edges = "[session]\npatient_idle_minutes = 120\nstaff_idle_minutes = 1\nabsolute_hours = 24\n";
        assert!(f.load(&format!("{}\n{edges}", f.good_toml()), &[]).is_ok());
    }

    #[test]
    fn due_window_must_be_0_to_28_days() {
        let f = Fixture::new();
        for bad in [-1, 29, 365] {
            let p = f.problems(&format!("{}\n[ordering]\ndue_window_days = {bad}\n", f.good_toml()), &[]);
            assert!(has(&p, "ordering.due_window_days must be between 0 and 28"), "{bad}: {p:?}");
        }
        for good in [0, 28] {
            assert!(f.load(&format!("{}\n[ordering]\ndue_window_days = {good}\n", f.good_toml()), &[]).is_ok());
        }
    }

    #[test]
    fn every_problem_is_reported_together() {
        let f = Fixture::new();
        let text = "database_url = \"mysql://db\"\nlisten = \"nowhere\"\npublic_url = \"http://rx.example.org\"\n\
                    [session]\npatient_idle_minutes = 0\nabsolute_hours = 48\n[ordering]\ndue_window_days = 60\n";
        let err = f.load(text, &[("REPEATRX_SMTP_PORT", "lots")]).unwrap_err();
        let p = &err.0;
        for needle in [
            "database_url must start with",
            "listen must be an IP address and port",
            "public_url must be an https:// address",
            "no TLS certificate is configured",
            "no TLS private key is configured",
            "REPEATRX_SMTP_PORT must be a port number",
            "smtp.host is not set",
            "smtp.security is not set",
            "smtp.from is not set",
            "session.patient_idle_minutes",
            "session.absolute_hours",
            "ordering.due_window_days",
        ] {
            assert!(has(p, needle), "missing {needle:?} in {p:?}");
        }
        let shown = err.to_string();
        assert!(shown.starts_with(&format!("the configuration has {} problem(s):\n  - ", p.len())), "{shown}");
        assert_eq!(shown.lines().filter(|l| l.starts_with("  - ")).count(), p.len(), "{shown}");
    }

    #[test]
    fn file_level_errors() {
        let f = Fixture::new();
        let missing = ServeConfig::load(&f.dir.path().join("absent.toml"), &|_| None).unwrap_err();
        assert!(has(&missing.0, "cannot be read"), "{missing}");
        let p = f.problems(&format!("{}\nlisten_adress = \"x\"\n", f.good_toml()), &[]);
        assert!(has(&p, "listen_adress"), "unknown keys are refused: {p:?}");
        let p = f.problems(&f.good_toml().replace("password = ", "pasword = "), &[]);
        assert!(has(&p, "pasword"), "unknown smtp keys are refused: {p:?}");
        let p = f.problems("listen = [", &[]);
        assert!(has(&p, "is not valid"), "{p:?}");
    }

    #[test]
    fn smtp_settings_are_checked_by_the_mailer() {
        let f = Fixture::new();
        let p = f.problems(&f.good_toml(), &[("REPEATRX_SMTP_FROM", "not a mailbox")]);
        assert!(has(&p, "smtp from must be a mailbox"), "{p:?}");
        let p = f.problems(&f.good_toml().replace("password = \"file-password\"", ""), &[]);
        assert!(has(&p, "username and password must be given together"), "{p:?}");
        let p = f.problems(&f.good_toml(), &[("REPEATRX_SMTP_SECURITY", "starttls")]);
        assert!(has(&p, "REPEATRX_SMTP_SECURITY must be start_tls, tls or none"), "{p:?}");
    }

    #[test]
    fn a_world_readable_file_must_not_hold_the_smtp_password() {
        let f = Fixture::new();
        let path = f.write(&f.good_toml());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = ServeConfig::load(&path, &|_| None).unwrap_err();
        assert!(has(&err.0, "REPEATRX_SMTP_PASSWORD"), "{err}");
        // Without a password in it, the file may be world-readable.
        let path =
            f.write(&f.good_toml().replace("username = \"repeatrx\"", "").replace("password = \"file-password\"", ""));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(ServeConfig::load(&path, &|_| None).is_ok());
    }

    #[test]
    fn the_example_file_is_valid_apart_from_its_certificate_paths() {
        let f = Fixture::new();
        let example =
            fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/repeatrx.example.toml")).unwrap();
        let p = f.problems(&example, &[]);
        assert!(!p.is_empty());
        assert!(
            p.iter().all(|x| x.contains("TLS certificate file")
                || x.contains("TLS private key file")
                || x.contains("the key file /etc/repeatrx/repeatrx.keys")
                || x.contains(
                    "erasure_ledger /etc/repeatrx/repeatrx.erasures: the folder /etc/repeatrx does not exist"
                )),
            "{p:?}"
        );
        let keys = f.dir.path().join("keys/repeatrx.keys");
        let c = f
            .load(
                &example,
                &[
                    ("REPEATRX_TLS_CERT", f.cert.to_str().unwrap()),
                    ("REPEATRX_TLS_KEY", f.key.to_str().unwrap()),
                    ("REPEATRX_KEY_FILE", keys.to_str().unwrap()),
                ],
            )
            .unwrap();
        assert_eq!(c.public_url.scheme(), "https");
    }
}
