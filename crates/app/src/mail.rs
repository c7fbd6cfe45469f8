//! Email delivery from the transactional outbox.
//!
//! Services never send email themselves: they write [`OutgoingEmail`] rows in the same
//! transaction as the change that causes them, and [`Mailer::deliver_due`] later claims the due
//! rows (with a lease, so two servers on one database do not both send), hands each to the SMTP
//! relay and records the outcome. Delivery is at-least-once: if the server dies between the relay
//! accepting a message and the row being marked sent, the lease expires and the message is sent
//! again, with the same `Message-ID` so that mail clients can fold the duplicate.
//!
//! Logs carry counts and email ids only, never addresses, subjects or bodies (they are patient
//! data), and never the SMTP password.
use jiff::{SignedDuration, Timestamp};
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use repeatrx_domain::clock::Clock;
use repeatrx_domain::ids::EmailId;
use repeatrx_store::{OutgoingEmail, Store, StoreError};
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use std::time::Duration;

/// How the connection to the SMTP relay is protected.
#[derive(Clone, Debug, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    /// Plain SMTP. Only acceptable to a relay on the same machine (the configuration check
    /// refuses it for any other host).
    None,
    /// Connect in plain text, then upgrade with STARTTLS; refuses to continue if the relay does
    /// not offer it (usually port 587).
    StartTls,
    /// TLS from the first byte, "SMTPS" (usually port 465).
    Tls,
}

/// The SMTP relay that delivers RepeatRx's email.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    /// Never logged: `SecretString`'s `Debug` prints `[REDACTED]`.
    pub password: Option<SecretString>,
    /// The sender, e.g. `RepeatRx <no-reply@example.org>`.
    pub from: String,
}

/// Where email goes.
#[derive(Clone, Debug)]
pub enum MailTransport {
    Smtp(SmtpSettings),
    /// demo: emails stay in the outbox, shown on a demo-only page, and are marked sent without
    /// leaving the machine
    DemoOutbox,
}

/// What one delivery pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    pub sent: u32,
    pub failed: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("mail settings: {0}")]
    Settings(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How long a claimed email is reserved for this server.
pub const CLAIM_LEASE: SignedDuration = SignedDuration::from_secs(60);
/// Failed attempts after which an email is given up.
pub const MAX_ATTEMPTS: u32 = 6;
/// Timeout of each SMTP command (connect, EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA...).
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on one whole email, so that a claimed batch always finishes within its lease:
/// `SMTP_BATCH` × `SEND_DEADLINE` (54 s) < `CLAIM_LEASE` (60 s).
const SEND_DEADLINE: Duration = Duration::from_secs(18);
const SMTP_BATCH: u32 = 3;
/// At most this many emails per pass, so one pass never runs for long; the next pass continues.
const MAX_PER_PASS: u32 = 60;
const DEMO_BATCH: u32 = 100;
/// Stored error texts are cut to this many characters.
const MAX_ERROR_CHARS: usize = 300;

/// When to try again after the `attempt`-th failed attempt (1-based), or `None` to give up.
/// 1 min, 5 min, 15 min, then hourly; the sixth failure is final.
pub fn retry_delay(attempt: u32) -> Option<SignedDuration> {
    match attempt {
        a if a >= MAX_ATTEMPTS => None,
        0 | 1 => Some(SignedDuration::from_mins(1)),
        2 => Some(SignedDuration::from_mins(5)),
        3 => Some(SignedDuration::from_mins(15)),
        _ => Some(SignedDuration::from_mins(60)),
    }
}

/// Sends the outbox. Cheap to clone (the SMTP transport is shared).
#[derive(Clone)]
pub struct Mailer {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Smtp(Box<SmtpMailer>),
    DemoOutbox,
}

#[derive(Clone)]
struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    host: String,
    port: u16,
    security: SmtpSecurity,
}

impl fmt::Debug for Mailer {
    // Hand-written so that the transport's credentials can never reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Smtp(s) => f
                .debug_struct("Mailer")
                .field("host", &s.host)
                .field("port", &s.port)
                .field("security", &s.security)
                .finish_non_exhaustive(),
            Inner::DemoOutbox => f.debug_struct("Mailer").field("transport", &"demo outbox").finish(),
        }
    }
}

/// Why one email could not be sent.
struct SendFailure {
    /// Short, address-free description for the log.
    kind: &'static str,
    /// Stored with the email (cut to [`MAX_ERROR_CHARS`]).
    detail: String,
    /// The message itself is unusable (e.g. the address is not one SMTP accepts): retrying
    /// cannot help.
    permanent: bool,
    /// The relay could not be reached at all: the rest of this pass would fail the same way.
    unreachable: bool,
}

impl Mailer {
    /// Checks the settings and prepares the transport (no connection is made yet).
    pub fn new(transport: MailTransport) -> Result<Mailer, MailError> {
        let settings = match transport {
            MailTransport::DemoOutbox => return Ok(Mailer { inner: Inner::DemoOutbox }),
            MailTransport::Smtp(s) => s,
        };
        let mut problems = Vec::new();
        let host = settings.host.trim().to_string();
        if host.is_empty() {
            problems.push("smtp host is empty".to_string());
        }
        if settings.port == 0 {
            problems.push("smtp port must not be 0".to_string());
        }
        let from = match settings.from.parse::<Mailbox>() {
            Ok(m) => Some(m),
            Err(_) => {
                problems.push("smtp from must be a mailbox such as \"RepeatRx <no-reply@example.org>\"".to_string());
                None
            }
        };
        let credentials = match (&settings.username, &settings.password) {
            (Some(user), Some(password)) => Some(Credentials::new(user.clone(), password.expose_secret().to_string())),
            (None, None) => None,
            _ => {
                problems.push("smtp username and password must be given together".to_string());
                None
            }
        };
        let (Some(from), true) = (from, problems.is_empty()) else {
            return Err(MailError::Settings(problems.join("; ")));
        };
        let builder = match settings.security {
            SmtpSecurity::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str()),
            SmtpSecurity::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&host)
                .map_err(|e| MailError::Settings(format!("smtp host cannot be used for STARTTLS: {e}")))?,
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&host)
                .map_err(|e| MailError::Settings(format!("smtp host cannot be used for TLS: {e}")))?,
        };
        let mut builder = builder.port(settings.port).timeout(Some(SMTP_TIMEOUT));
        if let Some(credentials) = credentials {
            builder = builder.credentials(credentials);
        }
        Ok(Mailer {
            inner: Inner::Smtp(Box::new(SmtpMailer {
                transport: builder.build(),
                from,
                host,
                port: settings.port,
                security: settings.security,
            })),
        })
    }

    /// Whether this mailer keeps email on the machine (the demo).
    pub fn is_demo_outbox(&self) -> bool {
        matches!(self.inner, Inner::DemoOutbox)
    }

    /// Claims due emails (lease 60 s), sends each, marks sent; on failure marks failed with
    /// retry after 1, 5, 15, 60 min (attempt-based) and gives up after 6 attempts. Logs counts
    /// and email ids, never addresses or bodies.
    pub async fn deliver_due(&self, store: &dyn Store, clock: &dyn Clock) -> Result<DeliveryReport, MailError> {
        let report = match &self.inner {
            Inner::DemoOutbox => demo_pass(store, clock).await?,
            Inner::Smtp(smtp) => smtp.pass(store, clock).await?,
        };
        if report.sent > 0 || report.failed > 0 {
            tracing::info!(sent = report.sent, failed = report.failed, "mail delivery pass");
        }
        Ok(report)
    }
}

async fn demo_pass(store: &dyn Store, clock: &dyn Clock) -> Result<DeliveryReport, MailError> {
    let mut report = DeliveryReport::default();
    // One bounded batch per pass, like the SMTP pass; whatever is left goes on the next pass.
    let now = clock.now();
    for email in store.claim_emails(now, now + CLAIM_LEASE, DEMO_BATCH).await? {
        store.mark_email_sent(email.id, clock.now()).await?;
        tracing::debug!(email_id = %email.id, "demo outbox: email kept on this machine, marked sent");
        report.sent += 1;
    }
    Ok(report)
}

impl SmtpMailer {
    async fn pass(&self, store: &dyn Store, clock: &dyn Clock) -> Result<DeliveryReport, MailError> {
        let mut report = DeliveryReport::default();
        let mut handled = 0;
        while handled < MAX_PER_PASS {
            let now = clock.now();
            let batch = store.claim_emails(now, now + CLAIM_LEASE, SMTP_BATCH).await?;
            if batch.is_empty() {
                break;
            }
            let mut unreachable = false;
            for email in &batch {
                handled += 1;
                match self.send(email).await {
                    Ok(()) => {
                        store.mark_email_sent(email.id, clock.now()).await?;
                        tracing::debug!(email_id = %email.id, "email sent");
                        report.sent += 1;
                    }
                    Err(failure) => {
                        unreachable |= failure.unreachable;
                        record_failure(store, clock, email, &failure).await?;
                        report.failed += 1;
                    }
                }
            }
            if unreachable {
                // The relay is down: the other due emails would only fail the same way and use
                // up their attempts; leave them for the next pass.
                break;
            }
        }
        Ok(report)
    }

    async fn send(&self, email: &OutgoingEmail) -> Result<(), SendFailure> {
        let message = self.message(email)?;
        match tokio::time::timeout(SEND_DEADLINE, self.transport.send(message)).await {
            Ok(Ok(_response)) => Ok(()),
            Ok(Err(e)) => Err(classify(&e)),
            Err(_elapsed) => Err(SendFailure {
                kind: "timeout",
                detail: format!("the SMTP exchange took longer than {} s", SEND_DEADLINE.as_secs()),
                permanent: false,
                unreachable: true,
            }),
        }
    }

    fn message(&self, email: &OutgoingEmail) -> Result<Message, SendFailure> {
        let unusable =
            |detail: String| SendFailure { kind: "unusable message", detail, permanent: true, unreachable: false };
        let to = email
            .to
            .as_str()
            .parse::<Address>()
            .map_err(|_| unusable("the recipient address is not one SMTP accepts".to_string()))?;
        Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to))
            // The same id on every attempt, so a duplicate after a crash can be recognised.
            .message_id(Some(format!("<{}@{}>", email.id, self.from.email.domain())))
            .subject(email.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            .body(email.body.clone())
            .map_err(|e| unusable(format!("the message could not be built: {e}")))
    }
}

fn classify(e: &lettre::transport::smtp::Error) -> SendFailure {
    let code = e.status().map(|c| c.to_string());
    let (kind, unreachable) = if e.is_permanent() {
        ("rejected by the relay (permanent)", false)
    } else if e.is_transient() {
        ("rejected by the relay (transient)", false)
    } else if e.is_timeout() {
        ("timeout", true)
    } else if e.is_tls() {
        ("tls", true)
    } else if e.is_response() {
        ("unexpected response", false)
    } else {
        ("connection", true)
    };
    let detail = match code {
        Some(code) => format!("{kind} {code}: {e}"),
        None => format!("{kind}: {e}"),
    };
    // Even a permanent SMTP rejection is retried on the normal schedule: it is as likely to be a
    // relay or credentials problem that an operator fixes as a bad mailbox.
    SendFailure { kind, detail, permanent: false, unreachable }
}

async fn record_failure(
    store: &dyn Store,
    clock: &dyn Clock,
    email: &OutgoingEmail,
    failure: &SendFailure,
) -> Result<(), StoreError> {
    let attempt = email.attempts.saturating_add(1);
    let retry_at = if failure.permanent { None } else { retry_delay(attempt).map(|d| clock.now() + d) };
    let detail: String = failure.detail.chars().take(MAX_ERROR_CHARS).collect();
    store.mark_email_failed(email.id, &detail, retry_at).await?;
    log_failure(email.id, attempt, failure.kind, retry_at);
    Ok(())
}

fn log_failure(id: EmailId, attempt: u32, kind: &str, retry_at: Option<Timestamp>) {
    match retry_at {
        Some(at) => {
            tracing::warn!(email_id = %id, attempt, error_kind = kind, retry_at = %at, "email not sent; will retry")
        }
        None => tracing::error!(email_id = %id, attempt, error_kind = kind, "email not sent; giving up"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SmtpSettings {
        SmtpSettings {
            host: "smtp.example.org".into(),
            port: 587,
            security: SmtpSecurity::StartTls,
            username: Some("relay-user".into()),
            password: Some(SecretString::from("hunter2-secret".to_string())),
            from: "RepeatRx <no-reply@example.org>".into(),
        }
    }

    #[test]
    fn retry_schedule_is_attempt_based_and_gives_up_after_six() {
        let mins = |n| Some(SignedDuration::from_mins(n));
        assert_eq!(retry_delay(1), mins(1));
        assert_eq!(retry_delay(2), mins(5));
        assert_eq!(retry_delay(3), mins(15));
        assert_eq!(retry_delay(4), mins(60));
        assert_eq!(retry_delay(5), mins(60));
        assert_eq!(retry_delay(6), None);
        assert_eq!(retry_delay(7), None);
    }

    #[test]
    fn builds_for_every_security_mode() {
        for security in [SmtpSecurity::None, SmtpSecurity::StartTls, SmtpSecurity::Tls] {
            let mailer = Mailer::new(MailTransport::Smtp(SmtpSettings { security, ..settings() }));
            assert!(mailer.is_ok(), "{mailer:?}");
        }
        assert!(Mailer::new(MailTransport::DemoOutbox).is_ok_and(|m| m.is_demo_outbox()));
    }

    #[test]
    fn refuses_bad_settings_naming_each_problem() {
        let err = Mailer::new(MailTransport::Smtp(SmtpSettings {
            host: " ".into(),
            port: 0,
            password: None,
            from: "not a mailbox".into(),
            ..settings()
        }))
        .unwrap_err()
        .to_string();
        assert!(err.contains("host is empty"), "{err}");
        assert!(err.contains("port"), "{err}");
        assert!(err.contains("from"), "{err}");
        assert!(err.contains("username and password"), "{err}");
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let s = settings();
        assert!(!format!("{s:?}").contains("hunter2"));
        let mailer = Mailer::new(MailTransport::Smtp(s)).unwrap();
        let shown = format!("{mailer:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("relay-user"), "{shown}");
    }

    #[test]
    fn security_reads_from_snake_case() {
        #[derive(serde::Deserialize)]
        struct W {
            s: SmtpSecurity,
        }
        let parse = |v: &str| serde_json::from_str::<W>(&format!("{{\"s\":\"{v}\"}}")).map(|w| w.s).ok();
        assert_eq!(parse("none"), Some(SmtpSecurity::None));
        assert_eq!(parse("start_tls"), Some(SmtpSecurity::StartTls));
        assert_eq!(parse("tls"), Some(SmtpSecurity::Tls));
        assert_eq!(parse("StartTls"), None);
    }
}
