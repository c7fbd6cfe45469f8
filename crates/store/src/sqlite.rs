//! The embedded SQLite adapter: one database file, written in WAL mode with `synchronous=FULL`
//! so that an acknowledged write survives a crash or power cut.
//!
//! The schema (see `migrations/sqlite`) keeps to types PostgreSQL shares: ids are hyphenated UUID
//! text, timestamps unix microseconds, civil dates ISO text, enums their `as_str` text, booleans
//! 0/1. Values therefore round-trip at microsecond precision.
//!
//! Every write that touches several tables runs in one `BEGIN IMMEDIATE` transaction: the write
//! lock is taken up front, so concurrent writers wait (up to the busy timeout) instead of failing
//! half-way with `SQLITE_BUSY`.
use crate::records::*;
use crate::{Store, StoreError, StoreResult};
use async_trait::async_trait;
use jiff::civil::Date;
use jiff::Timestamp;
use repeatrx_domain::access::Role;
use repeatrx_domain::audit::{AuditEntry, AuditRecord};
use repeatrx_domain::catalogue::ControlledSchedule;
use repeatrx_domain::custody::{Grant, GrantScope};
use repeatrx_domain::ids::*;
use repeatrx_domain::order::{Decision, ItemState, Order, OrderItem, OrderStage, Transition};
use repeatrx_domain::patient::{DateOfBirth, Fulfilment, NhsNumber, Patient};
use repeatrx_domain::repeat::{CycleDays, RepeatItem, RepeatTerms};
use repeatrx_domain::security::{LockState, SecurityEventKind, SessionStage};
use repeatrx_domain::text::{Email, PersonName};
use repeatrx_domain::DomainError;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Row, SqliteConnection, SqlitePool};
use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// How long a statement waits for another connection's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a caller waits for a free pooled connection before the store reports `Unavailable`.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CONNECTIONS: u32 = 8;
/// Ids bound per `IN (...)` list when loading order items in bulk.
const ID_CHUNK: usize = 500;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The SQLite implementation of [`Store`]. Cheap to clone (it shares one pool).
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                return Err(StoreError::Unavailable(format!(
                    "cannot open the database {}: the directory {} does not exist",
                    path.display(),
                    dir.display()
                )));
            }
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| match map_err(e) {
                StoreError::Unavailable(m) => {
                    StoreError::Unavailable(format!("cannot open the database {}: {m}", path.display()))
                }
                other => other,
            })?;
        MIGRATOR.run(&pool).await.map_err(map_migrate_err)?;
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn conn(&self) -> StoreResult<sqlx::pool::PoolConnection<sqlx::Sqlite>> {
        self.pool.acquire().await.map_err(map_err)
    }

    /// A write transaction that holds the write lock from its start.
    async fn write_tx(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

// SQLite primary result codes (the low byte of an extended code).
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_NOMEM: i32 = 7;
const SQLITE_IOERR: i32 = 10;
const SQLITE_CORRUPT: i32 = 11;
const SQLITE_FULL: i32 = 13;
const SQLITE_CANTOPEN: i32 = 14;
const SQLITE_NOTADB: i32 = 26;

/// The one place where database errors become [`StoreError`]s.
fn map_err(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(db) => {
            if db.is_unique_violation() {
                return StoreError::Conflict(conflict_sentence(db.message()));
            }
            let primary = db.code().and_then(|c| c.parse::<i32>().ok()).map(|c| c & 0xff);
            match primary {
                Some(SQLITE_BUSY | SQLITE_LOCKED | SQLITE_NOMEM | SQLITE_IOERR | SQLITE_FULL | SQLITE_CANTOPEN) => {
                    StoreError::Unavailable(db.message().to_string())
                }
                Some(SQLITE_CORRUPT | SQLITE_NOTADB) => {
                    StoreError::Corrupt(format!("the database file is damaged: {}", db.message()))
                }
                _ => StoreError::Database(db.message().to_string()),
            }
        }
        sqlx::Error::PoolTimedOut => StoreError::Unavailable("no database connection became free in time".into()),
        sqlx::Error::PoolClosed => StoreError::Unavailable("the database connection pool is closed".into()),
        sqlx::Error::WorkerCrashed => StoreError::Unavailable("the database worker stopped".into()),
        sqlx::Error::Io(io) => StoreError::Unavailable(format!("input/output error: {io}")),
        e @ (sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_)) => StoreError::Corrupt(e.to_string()),
        other => StoreError::Database(other.to_string()),
    }
}

fn map_migrate_err(e: sqlx::migrate::MigrateError) -> StoreError {
    match e {
        sqlx::migrate::MigrateError::Execute(inner) => match map_err(inner) {
            StoreError::Unavailable(m) => StoreError::Unavailable(m),
            other => StoreError::Database(format!("the database schema could not be updated: {other}")),
        },
        other => StoreError::Database(format!("the database schema could not be updated: {other}")),
    }
}

/// A sentence for a unique-constraint failure, without echoing the offending value.
fn conflict_sentence(message: &str) -> String {
    let m = message.to_lowercase();
    if m.contains("users.email") || m.contains("users_email") {
        "that email address already has an account".into()
    } else if m.contains("users.patient_id") || m.contains("users_patient_id") {
        "that patient already has an account".into()
    } else {
        "a record with the same identifier already exists".into()
    }
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Value conversions
// ---------------------------------------------------------------------------------------------

fn us(ts: Timestamp) -> i64 {
    ts.as_microsecond()
}

fn opt_us(ts: Option<Timestamp>) -> Option<i64> {
    ts.map(us)
}

fn flag(b: bool) -> i64 {
    i64::from(b)
}

fn col<'r, T>(row: &'r SqliteRow, name: &str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(name).map_err(map_err)
}

fn ts_col(row: &SqliteRow, name: &str) -> StoreResult<Timestamp> {
    let v: i64 = col(row, name)?;
    Timestamp::from_microsecond(v).map_err(|e| corrupt(name, e))
}

fn opt_ts_col(row: &SqliteRow, name: &str) -> StoreResult<Option<Timestamp>> {
    let v: Option<i64> = col(row, name)?;
    v.map(|v| Timestamp::from_microsecond(v).map_err(|e| corrupt(name, e))).transpose()
}

fn parse_date(name: &str, s: &str) -> StoreResult<Date> {
    s.parse::<Date>().map_err(|e| corrupt(name, e))
}

fn date_col(row: &SqliteRow, name: &str) -> StoreResult<Date> {
    let s: String = col(row, name)?;
    parse_date(name, &s)
}

fn opt_date_col(row: &SqliteRow, name: &str) -> StoreResult<Option<Date>> {
    let s: Option<String> = col(row, name)?;
    s.map(|s| parse_date(name, &s)).transpose()
}

fn bool_col(row: &SqliteRow, name: &str) -> StoreResult<bool> {
    match col::<i64>(row, name)? {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(corrupt(name, format!("{v} is not 0 or 1"))),
    }
}

fn u32_col(row: &SqliteRow, name: &str) -> StoreResult<u32> {
    let v: i64 = col(row, name)?;
    u32::try_from(v).map_err(|e| corrupt(name, e))
}

fn id_col<T: FromStr<Err = DomainError>>(row: &SqliteRow, name: &str) -> StoreResult<T> {
    let s: String = col(row, name)?;
    s.parse().map_err(|e| corrupt(name, e))
}

fn opt_id_col<T: FromStr<Err = DomainError>>(row: &SqliteRow, name: &str) -> StoreResult<Option<T>> {
    let s: Option<String> = col(row, name)?;
    s.map(|s| s.parse().map_err(|e| corrupt(name, e))).transpose()
}

fn email_col(row: &SqliteRow, name: &str) -> StoreResult<Email> {
    let s: String = col(row, name)?;
    Email::parse(&s).map_err(|e| corrupt(name, e))
}

fn opt_email_col(row: &SqliteRow, name: &str) -> StoreResult<Option<Email>> {
    let s: Option<String> = col(row, name)?;
    s.map(|s| Email::parse(&s).map_err(|e| corrupt(name, e))).transpose()
}

fn name_col(row: &SqliteRow, name: &'static str) -> StoreResult<PersonName> {
    let s: String = col(row, name)?;
    PersonName::parse(name, &s).map_err(|e| corrupt(name, e))
}

fn role_col(row: &SqliteRow, name: &str) -> StoreResult<Role> {
    let s: String = col(row, name)?;
    Role::parse(&s).map_err(|e| corrupt(name, e))
}

fn session_kind(s: &str) -> StoreResult<SessionKind> {
    [SessionKind::Browser, SessionKind::Api]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| corrupt("kind", format!("'{s}' is not a session kind")))
}

fn email_status(s: &str) -> StoreResult<EmailStatus> {
    [EmailStatus::Pending, EmailStatus::Sent, EmailStatus::Failed]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| corrupt("status", format!("'{s}' is not an email status")))
}

/// Lower-cases a name for case-insensitive search (Unicode-aware, done here so that SQLite and
/// PostgreSQL behave alike).
fn fold(s: &str) -> String {
    s.to_lowercase()
}

/// A `LIKE` pattern matching values that start with `prefix`, with the user's `%`, `_` and `\`
/// taken literally (used with `ESCAPE '\'`).
fn like_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// `$from, $from+1, ...` for `n` values.
fn placeholders(from: usize, n: usize) -> String {
    (from..from + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

// ---------------------------------------------------------------------------------------------
// Row mapping
// ---------------------------------------------------------------------------------------------

const PHARMACY_COLS: &str = "id, name, ods_code, address, email, created_at";
const PRACTICE_COLS: &str = "id, name, ods_code, address, email, on_repeatrx, created_at";
const USER_COLS: &str =
    "id, email, display_name, role, pharmacy_id, practice_id, patient_id, password_hash, active, created_at";
const SESSION_COLS: &str =
    "token_hash, user_id, kind, csrf_token, created_at, last_seen_at, expires_at, user_agent, stage, address";
const SECURITY_COLS: &str = "id AS user_id, failed_sign_ins, lock_state, locked_at, dob_failures, totp_secret, \
     totp_pending_secret, totp_enrolled_at, totp_last_step, \
     (SELECT COUNT(*) FROM recovery_codes r WHERE r.user_id = users.id AND r.used_at IS NULL) AS recovery_codes_left";
const TOKEN_COLS: &str = "token_hash, user_id, purpose, payload, grouping, created_at, expires_at, used_at";
const AUDIT_COLS: &str = "seq, at, actor_user_id, actor_role, organisation, action, patient_id, address, purpose, \
     detail, prev_hash, hash";
const EVENT_COLS: &str = "id, at, user_id, actor_id, kind, address, detail";
const PATIENT_COLS: &str =
    "id, pharmacy_id, practice_id, given_name, family_name, date_of_birth, nhs_number, email, phone, address";
const REPEAT_COLS: &str =
    "id, patient_id, medicine_code, drug_name, strength, form, quantity, directions, cycle_days, \
     issues_authorised, review_date, schedule, issues_remaining, next_due, active";
const ORDER_COLS: &str = "id, patient_id, pharmacy_id, practice_id, fulfilment, note, placed_by, on_behalf, accepted, \
     stage, created_at, stage_entered_at, version";
const ITEM_COLS: &str = "id, order_id, position, repeat_item_id, description, state, decision";
const TRANSITION_COLS: &str = "order_id, item_id, from_state, to_state, actor_user_id, actor_role, at, reason";
const EMAIL_COLS: &str = "id, to_address, subject, body, status, attempts, last_error, created_at, not_before, sent_at";

fn pharmacy_from(row: &SqliteRow) -> StoreResult<Pharmacy> {
    Ok(Pharmacy {
        id: id_col(row, "id")?,
        name: col(row, "name")?,
        ods_code: col(row, "ods_code")?,
        address: col(row, "address")?,
        email: opt_email_col(row, "email")?,
        created_at: ts_col(row, "created_at")?,
    })
}

fn practice_from(row: &SqliteRow) -> StoreResult<Practice> {
    Ok(Practice {
        id: id_col(row, "id")?,
        name: col(row, "name")?,
        ods_code: col(row, "ods_code")?,
        address: col(row, "address")?,
        email: opt_email_col(row, "email")?,
        on_repeatrx: bool_col(row, "on_repeatrx")?,
        created_at: ts_col(row, "created_at")?,
    })
}

fn user_from(row: &SqliteRow) -> StoreResult<UserAccount> {
    Ok(UserAccount {
        id: id_col(row, "id")?,
        email: email_col(row, "email")?,
        display_name: col(row, "display_name")?,
        role: role_col(row, "role")?,
        pharmacy_id: opt_id_col(row, "pharmacy_id")?,
        practice_id: opt_id_col(row, "practice_id")?,
        patient_id: opt_id_col(row, "patient_id")?,
        password_hash: col(row, "password_hash")?,
        active: bool_col(row, "active")?,
        created_at: ts_col(row, "created_at")?,
    })
}

fn session_from(row: &SqliteRow) -> StoreResult<SessionRecord> {
    let kind: String = col(row, "kind")?;
    Ok(SessionRecord {
        token_hash: col(row, "token_hash")?,
        user_id: id_col(row, "user_id")?,
        kind: session_kind(&kind)?,
        csrf_token: col(row, "csrf_token")?,
        created_at: ts_col(row, "created_at")?,
        last_seen_at: ts_col(row, "last_seen_at")?,
        expires_at: ts_col(row, "expires_at")?,
        user_agent: col(row, "user_agent")?,
        stage: SessionStage::parse(&col::<String>(row, "stage")?).map_err(|e| corrupt("stage", e))?,
        address: col(row, "address")?,
    })
}

fn security_from(row: &SqliteRow) -> StoreResult<AccountSecurity> {
    Ok(AccountSecurity {
        user_id: id_col(row, "user_id")?,
        failed_sign_ins: u32_col(row, "failed_sign_ins")?,
        lock_state: LockState::parse(&col::<String>(row, "lock_state")?).map_err(|e| corrupt("lock_state", e))?,
        locked_at: opt_ts_col(row, "locked_at")?,
        dob_failures: u32_col(row, "dob_failures")?,
        totp_secret: col(row, "totp_secret")?,
        totp_pending_secret: col(row, "totp_pending_secret")?,
        totp_enrolled_at: opt_ts_col(row, "totp_enrolled_at")?,
        totp_last_step: col(row, "totp_last_step")?,
        recovery_codes_left: u32_col(row, "recovery_codes_left")?,
    })
}

fn token_from(row: &SqliteRow) -> StoreResult<AccountToken> {
    let purpose: String = col(row, "purpose")?;
    Ok(AccountToken {
        token_hash: col(row, "token_hash")?,
        user_id: id_col(row, "user_id")?,
        purpose: TokenPurpose::parse(&purpose)
            .ok_or_else(|| corrupt("purpose", format!("'{purpose}' is not a link purpose")))?,
        payload: col(row, "payload")?,
        grouping: col(row, "grouping")?,
        created_at: ts_col(row, "created_at")?,
        expires_at: ts_col(row, "expires_at")?,
        used_at: opt_ts_col(row, "used_at")?,
    })
}

const GRANT_COLS: &str =
    "id, custodian_id, scope_kind, patient_id, pharmacy_id, reason, created_at, expires_at, ended_at";

fn grant_from(row: &SqliteRow) -> StoreResult<Grant> {
    let kind: String = col(row, "scope_kind")?;
    let scope = match kind.as_str() {
        "patient" => GrantScope::Patient(
            opt_id_col(row, "patient_id")?.ok_or_else(|| corrupt("patient_id", "a patient grant names no patient"))?,
        ),
        "pharmacy" => GrantScope::Pharmacy(
            opt_id_col(row, "pharmacy_id")?
                .ok_or_else(|| corrupt("pharmacy_id", "a pharmacy grant names no pharmacy"))?,
        ),
        other => return Err(corrupt("scope_kind", format!("'{other}' is not a grant scope"))),
    };
    Ok(Grant {
        id: id_col(row, "id")?,
        custodian: id_col(row, "custodian_id")?,
        scope,
        reason: col(row, "reason")?,
        created_at: ts_col(row, "created_at")?,
        expires_at: ts_col(row, "expires_at")?,
        ended_at: opt_ts_col(row, "ended_at")?,
    })
}

fn audit_from(row: &SqliteRow) -> StoreResult<AuditEntry> {
    let role: Option<String> = col(row, "actor_role")?;
    Ok(AuditEntry {
        seq: col(row, "seq")?,
        record: AuditRecord {
            at: ts_col(row, "at")?,
            actor: opt_id_col(row, "actor_user_id")?,
            actor_role: role.map(|r| Role::parse(&r).map_err(|e| corrupt("actor_role", e))).transpose()?,
            organisation: col(row, "organisation")?,
            action: col(row, "action")?,
            patient: opt_id_col(row, "patient_id")?,
            address: col(row, "address")?,
            purpose: col(row, "purpose")?,
            detail: col(row, "detail")?,
        },
        prev_hash: col(row, "prev_hash")?,
        hash: col(row, "hash")?,
    })
}

fn event_from(row: &SqliteRow) -> StoreResult<SecurityEvent> {
    Ok(SecurityEvent {
        id: id_col(row, "id")?,
        at: ts_col(row, "at")?,
        user_id: opt_id_col(row, "user_id")?,
        actor_id: opt_id_col(row, "actor_id")?,
        kind: SecurityEventKind::parse(&col::<String>(row, "kind")?).map_err(|e| corrupt("kind", e))?,
        address: col(row, "address")?,
        detail: col(row, "detail")?,
    })
}

fn patient_from(row: &SqliteRow) -> StoreResult<Patient> {
    let nhs: String = col(row, "nhs_number")?;
    Ok(Patient {
        id: id_col(row, "id")?,
        pharmacy_id: id_col(row, "pharmacy_id")?,
        practice_id: id_col(row, "practice_id")?,
        given_name: name_col(row, "given_name")?,
        family_name: name_col(row, "family_name")?,
        date_of_birth: DateOfBirth::from_stored(date_col(row, "date_of_birth")?),
        nhs_number: NhsNumber::parse(&nhs).map_err(|e| corrupt("nhs_number", e))?,
        email: opt_email_col(row, "email")?,
        phone: col(row, "phone")?,
        address: col(row, "address")?,
    })
}

fn repeat_item_from(row: &SqliteRow) -> StoreResult<RepeatItem> {
    let cycle: i64 = col(row, "cycle_days")?;
    let schedule: i64 = col(row, "schedule")?;
    let schedule = u8::try_from(schedule)
        .ok()
        .and_then(ControlledSchedule::from_number)
        .ok_or_else(|| corrupt("schedule", format!("{schedule} is not a controlled-drug schedule")))?;
    Ok(RepeatItem {
        id: id_col(row, "id")?,
        patient_id: id_col(row, "patient_id")?,
        terms: RepeatTerms {
            medicine_code: col(row, "medicine_code")?,
            drug_name: col(row, "drug_name")?,
            strength: col(row, "strength")?,
            form: col(row, "form")?,
            quantity: u32_col(row, "quantity")?,
            directions: col(row, "directions")?,
            cycle_days: CycleDays::new(cycle).map_err(|e| corrupt("cycle_days", e))?,
            issues_authorised: u32_col(row, "issues_authorised")?,
            review_date: date_col(row, "review_date")?,
            schedule,
        },
        issues_remaining: u32_col(row, "issues_remaining")?,
        next_due: opt_date_col(row, "next_due")?,
        active: bool_col(row, "active")?,
    })
}

/// An order row without its items, and its version.
fn order_from(row: &SqliteRow) -> StoreResult<(Order, i64)> {
    let fulfilment: String = col(row, "fulfilment")?;
    let stage: String = col(row, "stage")?;
    let order = Order {
        id: id_col(row, "id")?,
        patient_id: id_col(row, "patient_id")?,
        pharmacy_id: id_col(row, "pharmacy_id")?,
        practice_id: id_col(row, "practice_id")?,
        fulfilment: Fulfilment::parse(&fulfilment).map_err(|e| corrupt("fulfilment", e))?,
        note: col(row, "note")?,
        placed_by: id_col(row, "placed_by")?,
        on_behalf: bool_col(row, "on_behalf")?,
        accepted: bool_col(row, "accepted")?,
        stage: OrderStage::parse(&stage).map_err(|e| corrupt("stage", e))?,
        created_at: ts_col(row, "created_at")?,
        stage_entered_at: ts_col(row, "stage_entered_at")?,
        items: Vec::new(),
    };
    Ok((order, col(row, "version")?))
}

fn item_from(row: &SqliteRow) -> StoreResult<(OrderId, OrderItem)> {
    let state: String = col(row, "state")?;
    let decision: Option<String> = col(row, "decision")?;
    let decision =
        decision.map(|d| serde_json::from_str::<Decision>(&d).map_err(|e| corrupt("decision", e))).transpose()?;
    let item = OrderItem {
        id: id_col(row, "id")?,
        repeat_item_id: id_col(row, "repeat_item_id")?,
        description: col(row, "description")?,
        state: ItemState::parse(&state).map_err(|e| corrupt("state", e))?,
        decision,
    };
    Ok((id_col(row, "order_id")?, item))
}

fn transition_from(row: &SqliteRow) -> StoreResult<Transition> {
    Ok(Transition {
        order_id: id_col(row, "order_id")?,
        item_id: opt_id_col(row, "item_id")?,
        from: col(row, "from_state")?,
        to: col(row, "to_state")?,
        actor: id_col(row, "actor_user_id")?,
        actor_role: role_col(row, "actor_role")?,
        at: ts_col(row, "at")?,
        reason: col(row, "reason")?,
    })
}

fn email_from(row: &SqliteRow) -> StoreResult<OutgoingEmail> {
    let status: String = col(row, "status")?;
    Ok(OutgoingEmail {
        id: id_col(row, "id")?,
        to: email_col(row, "to_address")?,
        subject: col(row, "subject")?,
        body: col(row, "body")?,
        status: email_status(&status)?,
        attempts: u32_col(row, "attempts")?,
        last_error: col(row, "last_error")?,
        created_at: ts_col(row, "created_at")?,
        not_before: ts_col(row, "not_before")?,
        sent_at: opt_ts_col(row, "sent_at")?,
    })
}

fn decision_json(d: &Option<Decision>) -> StoreResult<Option<String>> {
    d.as_ref()
        .map(|d| serde_json::to_string(d).map_err(|e| StoreError::Database(format!("cannot encode a decision: {e}"))))
        .transpose()
}

// ---------------------------------------------------------------------------------------------
// Statements shared by several methods (all run on a connection or transaction)
// ---------------------------------------------------------------------------------------------

async fn insert_user_on(conn: &mut SqliteConnection, u: &UserAccount) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO users (id, email, display_name, role, pharmacy_id, practice_id, patient_id, password_hash, \
         active, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(u.id.to_string())
    .bind(u.email.as_str())
    .bind(&u.display_name)
    .bind(u.role.as_str())
    .bind(u.pharmacy_id.map(|i| i.to_string()))
    .bind(u.practice_id.map(|i| i.to_string()))
    .bind(u.patient_id.map(|i| i.to_string()))
    .bind(&u.password_hash)
    .bind(flag(u.active))
    .bind(us(u.created_at))
    .execute(conn)
    .await
    .map_err(map_err)?;
    Ok(())
}

async fn insert_token_on(conn: &mut SqliteConnection, token: &AccountToken) -> StoreResult<()> {
    sqlx::query(&format!("INSERT INTO account_tokens ({TOKEN_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"))
        .bind(&token.token_hash)
        .bind(token.user_id.to_string())
        .bind(token.purpose.as_str())
        .bind(&token.payload)
        .bind(&token.grouping)
        .bind(us(token.created_at))
        .bind(us(token.expires_at))
        .bind(opt_us(token.used_at))
        .execute(conn)
        .await
        .map_err(map_err)?;
    Ok(())
}

async fn users_with_role_on(conn: &mut SqliteConnection, role: Role) -> StoreResult<u64> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = $1")
        .bind(role.as_str())
        .fetch_one(conn)
        .await
        .map_err(map_err)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

async fn insert_session_on(conn: &mut SqliteConnection, session: &SessionRecord) -> StoreResult<()> {
    sqlx::query(&format!("INSERT INTO sessions ({SESSION_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"))
        .bind(&session.token_hash)
        .bind(session.user_id.to_string())
        .bind(session.kind.as_str())
        .bind(&session.csrf_token)
        .bind(us(session.created_at))
        .bind(us(session.last_seen_at))
        .bind(us(session.expires_at))
        .bind(&session.user_agent)
        .bind(session.stage.as_str())
        .bind(&session.address)
        .execute(conn)
        .await
        .map_err(map_err)?;
    Ok(())
}

async fn replace_recovery_codes_on(conn: &mut SqliteConnection, user: UserId, hashes: &[String]) -> StoreResult<()> {
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(user.to_string())
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
    for h in hashes {
        sqlx::query("INSERT INTO recovery_codes (user_id, code_hash, used_at) VALUES ($1, $2, NULL)")
            .bind(user.to_string())
            .bind(h)
            .execute(&mut *conn)
            .await
            .map_err(map_err)?;
    }
    Ok(())
}

async fn insert_emails_on(conn: &mut SqliteConnection, emails: &[OutgoingEmail]) -> StoreResult<()> {
    for e in emails {
        sqlx::query(
            "INSERT INTO outbox_emails (id, to_address, subject, body, status, attempts, last_error, created_at, \
             not_before, lease_until, sent_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, $10)",
        )
        .bind(e.id.to_string())
        .bind(e.to.as_str())
        .bind(&e.subject)
        .bind(&e.body)
        .bind(e.status.as_str())
        .bind(i64::from(e.attempts))
        .bind(e.last_error.as_deref())
        .bind(us(e.created_at))
        .bind(us(e.not_before))
        .bind(opt_us(e.sent_at))
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
    }
    Ok(())
}

async fn insert_transitions_on(conn: &mut SqliteConnection, transitions: &[Transition]) -> StoreResult<()> {
    for t in transitions {
        sqlx::query(
            "INSERT INTO order_transitions (order_id, item_id, from_state, to_state, actor_user_id, actor_role, at, \
             reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(t.order_id.to_string())
        .bind(t.item_id.map(|i| i.to_string()))
        .bind(&t.from)
        .bind(&t.to)
        .bind(t.actor.to_string())
        .bind(t.actor_role.as_str())
        .bind(us(t.at))
        .bind(t.reason.as_deref())
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
    }
    Ok(())
}

/// Updates a repeat line's terms and progress; `reminded_for` is kept (a new `next_due` re-arms
/// the reminder by itself). Returns whether the line exists.
async fn update_repeat_item_on(conn: &mut SqliteConnection, item: &RepeatItem) -> StoreResult<bool> {
    let t = &item.terms;
    let done = sqlx::query(
        "UPDATE repeat_items SET medicine_code = $2, drug_name = $3, strength = $4, form = $5, quantity = $6, \
         directions = $7, cycle_days = $8, issues_authorised = $9, review_date = $10, schedule = $11, \
         issues_remaining = $12, next_due = $13, active = $14 WHERE id = $1 AND patient_id = $15",
    )
    .bind(item.id.to_string())
    .bind(t.medicine_code.as_deref())
    .bind(&t.drug_name)
    .bind(&t.strength)
    .bind(&t.form)
    .bind(i64::from(t.quantity))
    .bind(&t.directions)
    .bind(t.cycle_days.get())
    .bind(i64::from(t.issues_authorised))
    .bind(t.review_date.to_string())
    .bind(i64::from(t.schedule.number()))
    .bind(i64::from(item.issues_remaining))
    .bind(item.next_due.map(|d| d.to_string()))
    .bind(flag(item.active))
    .bind(item.patient_id.to_string())
    .execute(conn)
    .await
    .map_err(map_err)?;
    Ok(done.rows_affected() == 1)
}

fn not_found(what: &str) -> StoreError {
    StoreError::Database(format!("{what} to update was not found"))
}

/// Loads the items of the given orders, each list in its original order.
async fn attach_items(conn: &mut SqliteConnection, orders: &mut [Order]) -> StoreResult<()> {
    let mut by_order: HashMap<OrderId, Vec<OrderItem>> = HashMap::new();
    let ids: Vec<String> = orders.iter().map(|o| o.id.to_string()).collect();
    for chunk in ids.chunks(ID_CHUNK) {
        let sql = format!(
            "SELECT {ITEM_COLS} FROM order_items WHERE order_id IN ({}) ORDER BY order_id, position",
            placeholders(1, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(id);
        }
        for row in q.fetch_all(&mut *conn).await.map_err(map_err)? {
            let (order_id, item) = item_from(&row)?;
            by_order.entry(order_id).or_default().push(item);
        }
    }
    for order in orders.iter_mut() {
        order.items = by_order.remove(&order.id).unwrap_or_default();
        if order.items.is_empty() {
            return Err(StoreError::Corrupt(format!("order {} has no items", order.id)));
        }
    }
    Ok(())
}

async fn orders_with_items(conn: &mut SqliteConnection, rows: Vec<SqliteRow>) -> StoreResult<Vec<Order>> {
    let mut orders = rows.iter().map(|r| order_from(r).map(|(o, _)| o)).collect::<StoreResult<Vec<_>>>()?;
    attach_items(conn, &mut orders).await?;
    Ok(orders)
}

enum OrgColumn {
    Pharmacy,
    Practice,
}

impl SqliteStore {
    /// The shared body of `pharmacy_orders` and `practice_orders`: oldest first.
    async fn org_orders(&self, org: OrgColumn, org_id: String, filter: &OrderFilter) -> StoreResult<Vec<Order>> {
        if matches!(&filter.patients, Some(p) if p.is_empty()) {
            return Ok(Vec::new());
        }
        let column = match org {
            OrgColumn::Pharmacy => "pharmacy_id",
            OrgColumn::Practice => "practice_id",
        };
        let mut binds: Vec<String> = vec![org_id];
        let mut sql = format!("SELECT {ORDER_COLS} FROM orders WHERE {column} = $1");
        if !filter.stages.is_empty() {
            sql.push_str(&format!(" AND stage IN ({})", placeholders(binds.len() + 1, filter.stages.len())));
            binds.extend(filter.stages.iter().map(|s| s.as_str().to_string()));
        }
        if let Some(patients) = &filter.patients {
            sql.push_str(&format!(" AND patient_id IN ({})", placeholders(binds.len() + 1, patients.len())));
            binds.extend(patients.iter().map(|p| p.to_string()));
        }
        let n = binds.len();
        sql.push_str(&format!(" ORDER BY created_at ASC, id ASC LIMIT ${} OFFSET ${}", n + 1, n + 2));
        let mut q = sqlx::query(&sql);
        for b in &binds {
            q = q.bind(b);
        }
        q = q.bind(i64::from(filter.limit)).bind(i64::from(filter.offset));
        let mut conn = self.conn().await?;
        let rows = q.fetch_all(&mut *conn).await.map_err(map_err)?;
        orders_with_items(&mut conn, rows).await
    }
}

// ---------------------------------------------------------------------------------------------
// The Store implementation
// ---------------------------------------------------------------------------------------------

#[async_trait]
impl Store for SqliteStore {
    async fn health(&self) -> StoreResult<()> {
        let one: i64 = sqlx::query_scalar("SELECT 1").fetch_one(&self.pool).await.map_err(map_err)?;
        if one == 1 {
            Ok(())
        } else {
            Err(StoreError::Database("the health query gave an unexpected answer".into()))
        }
    }

    // --- deployment metadata ---

    async fn get_meta(&self, key: &str) -> StoreResult<Option<String>> {
        sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)
    }

    async fn set_meta(&self, key: &str, value: &str) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    // --- organisations ---

    async fn insert_pharmacy(&self, pharmacy: &Pharmacy, first_manager: &UserAccount) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(&format!("INSERT INTO pharmacies ({PHARMACY_COLS}) VALUES ($1, $2, $3, $4, $5, $6)"))
            .bind(pharmacy.id.to_string())
            .bind(&pharmacy.name)
            .bind(&pharmacy.ods_code)
            .bind(&pharmacy.address)
            .bind(pharmacy.email.as_ref().map(Email::as_str))
            .bind(us(pharmacy.created_at))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        insert_user_on(&mut tx, first_manager).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn pharmacy(&self, id: PharmacyId) -> StoreResult<Option<Pharmacy>> {
        let row = sqlx::query(&format!("SELECT {PHARMACY_COLS} FROM pharmacies WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(pharmacy_from).transpose()
    }

    async fn list_pharmacies(&self) -> StoreResult<Vec<Pharmacy>> {
        let rows = sqlx::query(&format!("SELECT {PHARMACY_COLS} FROM pharmacies ORDER BY name, id"))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(pharmacy_from).collect()
    }

    async fn insert_practice(&self, practice: &Practice, first_manager: Option<&UserAccount>) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(&format!("INSERT INTO practices ({PRACTICE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"))
            .bind(practice.id.to_string())
            .bind(&practice.name)
            .bind(&practice.ods_code)
            .bind(&practice.address)
            .bind(practice.email.as_ref().map(Email::as_str))
            .bind(flag(practice.on_repeatrx))
            .bind(us(practice.created_at))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        if let Some(manager) = first_manager {
            insert_user_on(&mut tx, manager).await?;
        }
        tx.commit().await.map_err(map_err)
    }

    async fn practice(&self, id: PracticeId) -> StoreResult<Option<Practice>> {
        let row = sqlx::query(&format!("SELECT {PRACTICE_COLS} FROM practices WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(practice_from).transpose()
    }

    async fn list_practices(&self) -> StoreResult<Vec<Practice>> {
        let rows = sqlx::query(&format!("SELECT {PRACTICE_COLS} FROM practices ORDER BY name, id"))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(practice_from).collect()
    }

    // --- accounts and sessions ---

    async fn insert_user(&self, user: &UserAccount) -> StoreResult<()> {
        let mut conn = self.conn().await?;
        insert_user_on(&mut conn, user).await
    }

    async fn user(&self, id: UserId) -> StoreResult<Option<UserAccount>> {
        let row = sqlx::query(&format!("SELECT {USER_COLS} FROM users WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(user_from).transpose()
    }

    async fn user_by_email(&self, email: &Email) -> StoreResult<Option<UserAccount>> {
        let row = sqlx::query(&format!("SELECT {USER_COLS} FROM users WHERE email = $1"))
            .bind(email.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(user_from).transpose()
    }

    async fn user_for_patient(&self, patient: PatientId) -> StoreResult<Option<UserAccount>> {
        let row = sqlx::query(&format!("SELECT {USER_COLS} FROM users WHERE patient_id = $1"))
            .bind(patient.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(user_from).transpose()
    }

    async fn set_password_hash(&self, user: UserId, hash: &str) -> StoreResult<()> {
        let done = sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
            .bind(user.to_string())
            .bind(hash)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Err(not_found("the account"));
        }
        Ok(())
    }

    async fn insert_session(&self, session: &SessionRecord) -> StoreResult<()> {
        let mut conn = self.conn().await?;
        insert_session_on(&mut conn, session).await
    }

    async fn session(&self, token_hash: &str) -> StoreResult<Option<SessionRecord>> {
        let row = sqlx::query(&format!("SELECT {SESSION_COLS} FROM sessions WHERE token_hash = $1"))
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(session_from).transpose()
    }

    async fn touch_session(&self, token_hash: &str, last_seen_at: Timestamp) -> StoreResult<()> {
        sqlx::query("UPDATE sessions SET last_seen_at = $2 WHERE token_hash = $1")
            .bind(token_hash)
            .bind(us(last_seen_at))
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn delete_session(&self, token_hash: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn count_users_with_role(&self, role: Role) -> StoreResult<u64> {
        let mut conn = self.conn().await?;
        users_with_role_on(&mut conn, role).await
    }

    async fn invite_user(
        &self,
        user: &UserAccount,
        link: &AccountToken,
        emails: &[OutgoingEmail],
        cap: Option<u32>,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        if let Some(cap) = cap {
            if users_with_role_on(&mut tx, user.role).await? >= u64::from(cap) {
                return Ok(false);
            }
        }
        insert_user_on(&mut tx, user).await?;
        insert_token_on(&mut tx, link).await?;
        insert_emails_on(&mut tx, emails).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(true)
    }

    async fn set_user_role(&self, user: UserId, role: Role, cap: Option<u32>) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        if let Some(cap) = cap {
            if users_with_role_on(&mut tx, role).await? >= u64::from(cap) {
                return Ok(false);
            }
        }
        let done = sqlx::query("UPDATE users SET role = $2 WHERE id = $1")
            .bind(user.to_string())
            .bind(role.as_str())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Err(not_found("the account"));
        }
        tx.commit().await.map_err(map_err)?;
        Ok(true)
    }

    async fn set_user_active(&self, user: UserId, active: bool) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("UPDATE users SET active = $2 WHERE id = $1")
            .bind(user.to_string())
            .bind(flag(active))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Err(not_found("the account"));
        }
        if !active {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(user.to_string())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)
    }

    async fn count_users_with_email_domain(&self, domain: &str) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE email LIKE '%@' || $1")
            .bind(domain.to_lowercase())
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn users_with_role(&self, role: Role) -> StoreResult<Vec<UserAccount>> {
        let rows = sqlx::query(&format!("SELECT {USER_COLS} FROM users WHERE role = $1 ORDER BY created_at, id"))
            .bind(role.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(user_from).collect()
    }

    async fn insert_grant(&self, grant: &Grant, emails: &[OutgoingEmail]) -> StoreResult<()> {
        let (patient, pharmacy) = match grant.scope {
            GrantScope::Patient(p) => (Some(p.to_string()), None),
            GrantScope::Pharmacy(p) => (None, Some(p.to_string())),
        };
        let mut tx = self.write_tx().await?;
        sqlx::query(&format!("INSERT INTO custody_grants ({GRANT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"))
            .bind(grant.id.to_string())
            .bind(grant.custodian.to_string())
            .bind(grant.scope.kind())
            .bind(patient)
            .bind(pharmacy)
            .bind(&grant.reason)
            .bind(us(grant.created_at))
            .bind(us(grant.expires_at))
            .bind(opt_us(grant.ended_at))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        insert_emails_on(&mut tx, emails).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn grants_of(&self, custodian: UserId, limit: u32) -> StoreResult<Vec<Grant>> {
        let rows = sqlx::query(&format!(
            "SELECT {GRANT_COLS} FROM custody_grants WHERE custodian_id = $1 ORDER BY created_at DESC, id LIMIT $2"
        ))
        .bind(custodian.to_string())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(grant_from).collect()
    }

    async fn live_grants(&self, custodian: UserId, now: Timestamp) -> StoreResult<Vec<Grant>> {
        let rows = sqlx::query(&format!(
            "SELECT {GRANT_COLS} FROM custody_grants WHERE custodian_id = $1 AND ended_at IS NULL AND expires_at > $2 \
             ORDER BY created_at DESC, id"
        ))
        .bind(custodian.to_string())
        .bind(us(now))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(grant_from).collect()
    }

    async fn end_grant(&self, id: GrantId, custodian: UserId, now: Timestamp) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE custody_grants SET ended_at = $3 WHERE id = $1 AND custodian_id = $2 AND ended_at IS NULL \
             AND expires_at > $3",
        )
        .bind(id.to_string())
        .bind(custodian.to_string())
        .bind(us(now))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_sessions_of_user(&self, user: UserId) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user.to_string())
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected())
    }

    async fn sessions_of_user(&self, user: UserId, now: Timestamp) -> StoreResult<Vec<SessionRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {SESSION_COLS} FROM sessions WHERE user_id = $1 AND expires_at > $2 \
             ORDER BY created_at DESC, token_hash"
        ))
        .bind(user.to_string())
        .bind(us(now))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(session_from).collect()
    }

    async fn delete_other_sessions(&self, user: UserId, keep: &str) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2")
            .bind(user.to_string())
            .bind(keep)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected())
    }

    async fn rotate_session(&self, old_token_hash: &str, new: &SessionRecord) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let gone = sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(old_token_hash)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        if gone.rows_affected() == 0 {
            return Err(not_found("the session"));
        }
        insert_session_on(&mut tx, new).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn set_user_email(&self, user: UserId, email: &Email) -> StoreResult<()> {
        let done = sqlx::query("UPDATE users SET email = $2 WHERE id = $1")
            .bind(user.to_string())
            .bind(email.as_str())
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Err(not_found("the account"));
        }
        Ok(())
    }

    async fn list_accounts(&self, scope: AccountScope) -> StoreResult<Vec<(UserAccount, AccountSecurity)>> {
        let (condition, bound) = match scope {
            AccountScope::Pharmacy(id) => ("pharmacy_id = $1", Some(id.to_string())),
            AccountScope::Practice(id) => ("practice_id = $1", Some(id.to_string())),
            AccountScope::ManagersAndPlatform => {
                ("role IN ('pharmacy_manager', 'practice_manager', 'operator', 'custodian')", None)
            }
        };
        let sql = format!(
            "SELECT {USER_COLS}, {SECURITY_COLS} FROM users WHERE {condition} ORDER BY display_name, email LIMIT 1000"
        );
        let mut q = sqlx::query(&sql);
        if let Some(b) = bound {
            q = q.bind(b);
        }
        let rows = q.fetch_all(&self.pool).await.map_err(map_err)?;
        rows.iter().map(|r| Ok((user_from(r)?, security_from(r)?))).collect()
    }

    // --- account security ---

    async fn account_security(&self, user: UserId) -> StoreResult<Option<AccountSecurity>> {
        let row = sqlx::query(&format!("SELECT {SECURITY_COLS} FROM users WHERE id = $1"))
            .bind(user.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(security_from).transpose()
    }

    async fn update_account_security(
        &self,
        user: UserId,
        change: &mut (dyn for<'s> FnMut(&'s mut AccountSecurity) -> bool + Send),
    ) -> StoreResult<Option<(AccountSecurity, bool)>> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(&format!("SELECT {SECURITY_COLS} FROM users WHERE id = $1"))
            .bind(user.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?;
        let Some(mut state) = row.as_ref().map(security_from).transpose()? else {
            return Ok(None);
        };
        if !change(&mut state) {
            return Ok(Some((state, false)));
        }
        sqlx::query(
            "UPDATE users SET failed_sign_ins = $2, lock_state = $3, locked_at = $4, dob_failures = $5, \
             totp_secret = $6, totp_pending_secret = $7, totp_enrolled_at = $8, totp_last_step = $9 WHERE id = $1",
        )
        .bind(user.to_string())
        .bind(i64::from(state.failed_sign_ins))
        .bind(state.lock_state.as_str())
        .bind(opt_us(state.locked_at))
        .bind(i64::from(state.dob_failures))
        .bind(&state.totp_secret)
        .bind(&state.totp_pending_secret)
        .bind(opt_us(state.totp_enrolled_at))
        .bind(state.totp_last_step)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(Some((state, true)))
    }

    async fn enable_totp(
        &self,
        user: UserId,
        secret: &str,
        step: i64,
        recovery_hashes: &[String],
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE users SET totp_secret = totp_pending_secret, totp_pending_secret = NULL, totp_enrolled_at = $3, \
             totp_last_step = $4 WHERE id = $1 AND totp_pending_secret = $2",
        )
        .bind(user.to_string())
        .bind(secret)
        .bind(us(now))
        .bind(step)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict("the set-up of the authenticator app has changed; start again".into()));
        }
        replace_recovery_codes_on(&mut tx, user, recovery_hashes).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn replace_recovery_codes(&self, user: UserId, recovery_hashes: &[String]) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        replace_recovery_codes_on(&mut tx, user, recovery_hashes).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn use_recovery_code(&self, user: UserId, code_hash: &str, now: Timestamp) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE recovery_codes SET used_at = $3 WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
        )
        .bind(user.to_string())
        .bind(code_hash)
        .bind(us(now))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_account_token(&self, token: &AccountToken, emails: &[OutgoingEmail]) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        insert_token_on(&mut tx, token).await?;
        insert_emails_on(&mut tx, emails).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn account_token(&self, token_hash: &str) -> StoreResult<Option<AccountToken>> {
        let row = sqlx::query(&format!("SELECT {TOKEN_COLS} FROM account_tokens WHERE token_hash = $1"))
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(token_from).transpose()
    }

    async fn use_account_token(&self, token_hash: &str, now: Timestamp) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE account_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(us(now))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn grouped_tokens(&self, grouping: &str) -> StoreResult<Vec<AccountToken>> {
        let rows =
            sqlx::query(&format!("SELECT {TOKEN_COLS} FROM account_tokens WHERE grouping = $1 ORDER BY purpose"))
                .bind(grouping)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
        rows.iter().map(token_from).collect()
    }

    async fn latest_account_token_at(&self, user: UserId, purpose: TokenPurpose) -> StoreResult<Option<Timestamp>> {
        let at: Option<i64> =
            sqlx::query_scalar("SELECT MAX(created_at) FROM account_tokens WHERE user_id = $1 AND purpose = $2")
                .bind(user.to_string())
                .bind(purpose.as_str())
                .fetch_one(&self.pool)
                .await
                .map_err(map_err)?;
        at.map(|v| Timestamp::from_microsecond(v).map_err(|e| corrupt("created_at", e))).transpose()
    }

    async fn void_account_tokens(&self, user: UserId, purpose: TokenPurpose, now: Timestamp) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE account_tokens SET used_at = $3 WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL",
        )
        .bind(user.to_string())
        .bind(purpose.as_str())
        .bind(us(now))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected())
    }

    async fn record_address_failure(
        &self,
        address: &str,
        bucket: i64,
        since: i64,
        forget_before: i64,
    ) -> StoreResult<u64> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO address_failures (address, bucket, failures) VALUES ($1, $2, 1) \
             ON CONFLICT (address, bucket) DO UPDATE SET failures = address_failures.failures + 1",
        )
        .bind(address)
        .bind(bucket)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        sqlx::query("DELETE FROM address_failures WHERE bucket < $1")
            .bind(forget_before)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        let total: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(failures), 0) FROM address_failures WHERE address = $1 AND bucket >= $2",
        )
        .bind(address)
        .bind(since)
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(u64::try_from(total).unwrap_or(0))
    }

    async fn address_failures_since(&self, address: &str, since: i64) -> StoreResult<u64> {
        let total: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(failures), 0) FROM address_failures WHERE address = $1 AND bucket >= $2",
        )
        .bind(address)
        .bind(since)
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(u64::try_from(total).unwrap_or(0))
    }

    async fn insert_security_event(&self, event: &SecurityEvent) -> StoreResult<()> {
        sqlx::query(&format!("INSERT INTO security_events ({EVENT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"))
            .bind(event.id.to_string())
            .bind(us(event.at))
            .bind(event.user_id.map(|u| u.to_string()))
            .bind(event.actor_id.map(|u| u.to_string()))
            .bind(event.kind.as_str())
            .bind(&event.address)
            .bind(&event.detail)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn security_events_of_user(&self, user: UserId, limit: u32) -> StoreResult<Vec<SecurityEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLS} FROM security_events WHERE user_id = $1 ORDER BY seq DESC LIMIT $2"
        ))
        .bind(user.to_string())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(event_from).collect()
    }

    // --- patients and repeat lists ---

    async fn insert_patient(&self, patient: &Patient, account: Option<&UserAccount>) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO patients (id, pharmacy_id, practice_id, given_name, family_name, given_folded, family_folded, \
             date_of_birth, nhs_number, email, phone, address) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(patient.id.to_string())
        .bind(patient.pharmacy_id.to_string())
        .bind(patient.practice_id.to_string())
        .bind(patient.given_name.as_str())
        .bind(patient.family_name.as_str())
        .bind(fold(patient.given_name.as_str()))
        .bind(fold(patient.family_name.as_str()))
        .bind(patient.date_of_birth.date().to_string())
        .bind(patient.nhs_number.as_str())
        .bind(patient.email.as_ref().map(Email::as_str))
        .bind(patient.phone.as_deref())
        .bind(patient.address.as_deref())
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if let Some(account) = account {
            insert_user_on(&mut tx, account).await?;
        }
        tx.commit().await.map_err(map_err)
    }

    async fn update_patient(&self, patient: &Patient) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE patients SET pharmacy_id = $2, practice_id = $3, given_name = $4, family_name = $5, \
             given_folded = $6, family_folded = $7, date_of_birth = $8, nhs_number = $9, email = $10, phone = $11, \
             address = $12 WHERE id = $1",
        )
        .bind(patient.id.to_string())
        .bind(patient.pharmacy_id.to_string())
        .bind(patient.practice_id.to_string())
        .bind(patient.given_name.as_str())
        .bind(patient.family_name.as_str())
        .bind(fold(patient.given_name.as_str()))
        .bind(fold(patient.family_name.as_str()))
        .bind(patient.date_of_birth.date().to_string())
        .bind(patient.nhs_number.as_str())
        .bind(patient.email.as_ref().map(Email::as_str))
        .bind(patient.phone.as_deref())
        .bind(patient.address.as_deref())
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Err(not_found("the patient"));
        }
        Ok(())
    }

    async fn patient(&self, id: PatientId) -> StoreResult<Option<Patient>> {
        let row = sqlx::query(&format!("SELECT {PATIENT_COLS} FROM patients WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(patient_from).transpose()
    }

    async fn search_patients(
        &self,
        pharmacy: PharmacyId,
        query: &PatientQuery,
        limit: u32,
    ) -> StoreResult<Vec<Patient>> {
        let mut binds: Vec<String> = vec![pharmacy.to_string()];
        let mut sql = format!("SELECT {PATIENT_COLS} FROM patients WHERE pharmacy_id = $1");
        // Each word typed ("ann jones", "jones a") must start the given or the family name.
        for word in query.name.as_deref().unwrap_or("").split_whitespace().take(4) {
            let p = binds.len() + 1;
            sql.push_str(&format!(" AND (given_folded LIKE ${p} ESCAPE '\\' OR family_folded LIKE ${p} ESCAPE '\\')"));
            binds.push(like_prefix(&fold(word)));
        }
        if let Some(dob) = query.date_of_birth {
            sql.push_str(&format!(" AND date_of_birth = ${}", binds.len() + 1));
            binds.push(dob.to_string());
        }
        if let Some(nhs) = query.nhs_number.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
            sql.push_str(&format!(" AND nhs_number = ${}", binds.len() + 1));
            binds.push(nhs.to_string());
        }
        sql.push_str(&format!(" ORDER BY family_folded, given_folded, id LIMIT ${}", binds.len() + 1));
        let mut q = sqlx::query(&sql);
        for b in &binds {
            q = q.bind(b);
        }
        let rows = q.bind(i64::from(limit)).fetch_all(&self.pool).await.map_err(map_err)?;
        rows.iter().map(patient_from).collect()
    }

    async fn insert_repeat_item(&self, item: &RepeatItem) -> StoreResult<()> {
        let t = &item.terms;
        sqlx::query(
            "INSERT INTO repeat_items (id, patient_id, medicine_code, drug_name, strength, form, quantity, directions, \
             cycle_days, issues_authorised, review_date, schedule, issues_remaining, next_due, active, reminded_for, \
             created_at, created_seq) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, NULL, $16, \
             (SELECT COALESCE(MAX(created_seq), 0) + 1 FROM repeat_items WHERE patient_id = $2))",
        )
        .bind(item.id.to_string())
        .bind(item.patient_id.to_string())
        .bind(t.medicine_code.as_deref())
        .bind(&t.drug_name)
        .bind(&t.strength)
        .bind(&t.form)
        .bind(i64::from(t.quantity))
        .bind(&t.directions)
        .bind(t.cycle_days.get())
        .bind(i64::from(t.issues_authorised))
        .bind(t.review_date.to_string())
        .bind(i64::from(t.schedule.number()))
        .bind(i64::from(item.issues_remaining))
        .bind(item.next_due.map(|d| d.to_string()))
        .bind(flag(item.active))
        .bind(us(Timestamp::now()))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn update_repeat_item(&self, item: &RepeatItem) -> StoreResult<()> {
        let mut conn = self.conn().await?;
        if !update_repeat_item_on(&mut conn, item).await? {
            return Err(not_found("the repeat item"));
        }
        Ok(())
    }

    async fn repeat_item(&self, id: RepeatItemId) -> StoreResult<Option<RepeatItem>> {
        let row = sqlx::query(&format!("SELECT {REPEAT_COLS} FROM repeat_items WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(repeat_item_from).transpose()
    }

    async fn repeat_items(&self, patient: PatientId) -> StoreResult<Vec<RepeatItem>> {
        let rows = sqlx::query(&format!(
            "SELECT {REPEAT_COLS} FROM repeat_items WHERE patient_id = $1 ORDER BY created_seq, created_at, id"
        ))
        .bind(patient.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(repeat_item_from).collect()
    }

    // --- orders ---

    async fn insert_order(
        &self,
        order: &Order,
        transitions: &[Transition],
        emails: &[OutgoingEmail],
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(&format!(
            "INSERT INTO orders ({ORDER_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 1)"
        ))
        .bind(order.id.to_string())
        .bind(order.patient_id.to_string())
        .bind(order.pharmacy_id.to_string())
        .bind(order.practice_id.to_string())
        .bind(order.fulfilment.as_str())
        .bind(order.note.as_deref())
        .bind(order.placed_by.to_string())
        .bind(flag(order.on_behalf))
        .bind(flag(order.accepted))
        .bind(order.stage.as_str())
        .bind(us(order.created_at))
        .bind(us(order.stage_entered_at))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        for (position, item) in order.items.iter().enumerate() {
            let position = i64::try_from(position).map_err(|e| StoreError::Database(e.to_string()))?;
            sqlx::query(&format!("INSERT INTO order_items ({ITEM_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"))
                .bind(item.id.to_string())
                .bind(order.id.to_string())
                .bind(position)
                .bind(item.repeat_item_id.to_string())
                .bind(&item.description)
                .bind(item.state.as_str())
                .bind(decision_json(&item.decision)?)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        insert_transitions_on(&mut tx, transitions).await?;
        insert_emails_on(&mut tx, emails).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn order(&self, id: OrderId) -> StoreResult<Option<StoredOrder>> {
        let mut conn = self.conn().await?;
        let Some(row) = sqlx::query(&format!("SELECT {ORDER_COLS} FROM orders WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&mut *conn)
            .await
            .map_err(map_err)?
        else {
            return Ok(None);
        };
        let (order, version) = order_from(&row)?;
        let mut orders = [order];
        attach_items(&mut conn, &mut orders).await?;
        let [order] = orders;
        Ok(Some(StoredOrder { order, version }))
    }

    async fn save_order(
        &self,
        order: &Order,
        expected_version: i64,
        transitions: &[Transition],
        repeat_items: &[RepeatItem],
        emails: &[OutgoingEmail],
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE orders SET fulfilment = $3, note = $4, accepted = $5, stage = $6, stage_entered_at = $7, \
             version = version + 1 WHERE id = $1 AND version = $2",
        )
        .bind(order.id.to_string())
        .bind(expected_version)
        .bind(order.fulfilment.as_str())
        .bind(order.note.as_deref())
        .bind(flag(order.accepted))
        .bind(order.stage.as_str())
        .bind(us(order.stage_entered_at))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if done.rows_affected() != 1 {
            // Dropping the transaction rolls it back.
            return Err(StoreError::Conflict(
                "this order was changed by someone else in the meantime; reload it and try again".into(),
            ));
        }
        for item in &order.items {
            let done = sqlx::query("UPDATE order_items SET state = $3, decision = $4 WHERE id = $1 AND order_id = $2")
                .bind(item.id.to_string())
                .bind(order.id.to_string())
                .bind(item.state.as_str())
                .bind(decision_json(&item.decision)?)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            if done.rows_affected() != 1 {
                return Err(not_found("an item of the order"));
            }
        }
        insert_transitions_on(&mut tx, transitions).await?;
        for item in repeat_items {
            if !update_repeat_item_on(&mut tx, item).await? {
                return Err(not_found("a repeat item of the order"));
            }
        }
        insert_emails_on(&mut tx, emails).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn orders_of_patient(&self, patient: PatientId) -> StoreResult<Vec<Order>> {
        let mut conn = self.conn().await?;
        let rows = sqlx::query(&format!(
            "SELECT {ORDER_COLS} FROM orders WHERE patient_id = $1 ORDER BY created_at DESC, id DESC"
        ))
        .bind(patient.to_string())
        .fetch_all(&mut *conn)
        .await
        .map_err(map_err)?;
        orders_with_items(&mut conn, rows).await
    }

    async fn order_transitions(&self, order: OrderId) -> StoreResult<Vec<Transition>> {
        let rows =
            sqlx::query(&format!("SELECT {TRANSITION_COLS} FROM order_transitions WHERE order_id = $1 ORDER BY seq"))
                .bind(order.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
        rows.iter().map(transition_from).collect()
    }

    async fn pharmacy_orders(&self, pharmacy: PharmacyId, filter: &OrderFilter) -> StoreResult<Vec<Order>> {
        self.org_orders(OrgColumn::Pharmacy, pharmacy.to_string(), filter).await
    }

    /// Every stage in [`OrderStage::ALL`] order, zero counts included.
    async fn pharmacy_stage_counts(&self, pharmacy: PharmacyId) -> StoreResult<Vec<(OrderStage, i64)>> {
        let rows = sqlx::query("SELECT stage, COUNT(*) AS n FROM orders WHERE pharmacy_id = $1 GROUP BY stage")
            .bind(pharmacy.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        let mut counts: HashMap<OrderStage, i64> = HashMap::new();
        for row in &rows {
            let stage: String = col(row, "stage")?;
            let stage = OrderStage::parse(&stage).map_err(|e| corrupt("stage", e))?;
            counts.insert(stage, col(row, "n")?);
        }
        Ok(OrderStage::ALL.into_iter().map(|s| (s, counts.get(&s).copied().unwrap_or(0))).collect())
    }

    async fn practice_orders(&self, practice: PracticeId, filter: &OrderFilter) -> StoreResult<Vec<Order>> {
        self.org_orders(OrgColumn::Practice, practice.to_string(), filter).await
    }

    // --- email outbox ---

    async fn append_audit(&self, record: &AuditRecord) -> StoreResult<AuditEntry> {
        let mut tx = self.write_tx().await?;
        let last: Option<(i64, String)> = sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?;
        let (seq, prev_hash) = match last {
            Some((seq, hash)) => (seq + 1, hash),
            None => (1, repeatrx_domain::audit::GENESIS.to_string()),
        };
        let hash = repeatrx_domain::audit::chain_hash(&prev_hash, seq, record);
        sqlx::query(&format!(
            "INSERT INTO audit_log ({AUDIT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(seq)
        .bind(us(record.at))
        .bind(record.actor.map(|u| u.to_string()))
        .bind(record.actor_role.map(|r| r.as_str()))
        .bind(&record.organisation)
        .bind(&record.action)
        .bind(record.patient.map(|p| p.to_string()))
        .bind(&record.address)
        .bind(&record.purpose)
        .bind(&record.detail)
        .bind(&prev_hash)
        .bind(&hash)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(AuditEntry { seq, record: record.clone(), prev_hash, hash })
    }

    async fn audit_entries(&self, after: i64, limit: u32) -> StoreResult<Vec<AuditEntry>> {
        let rows = sqlx::query(&format!("SELECT {AUDIT_COLS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"))
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(audit_from).collect()
    }

    async fn patients_with_finished_orders_before(
        &self,
        before: Timestamp,
        after: Option<PatientId>,
        limit: u32,
    ) -> StoreResult<Vec<PatientId>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT patient_id FROM orders WHERE stage IN ('completed', 'closed', 'cancelled') \
             AND created_at < $1 AND patient_id > $2 ORDER BY patient_id LIMIT $3",
        )
        .bind(us(before))
        .bind(after.map(|p| p.to_string()).unwrap_or_default())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        ids.iter().map(|id| id.parse().map_err(|e| corrupt("patient_id", e))).collect()
    }

    async fn purge_orders(&self, orders: &[OrderId]) -> StoreResult<u64> {
        let mut tx = self.write_tx().await?;
        let mut purged = 0;
        for id in orders {
            let finished: Option<String> = sqlx::query_scalar(
                "SELECT id FROM orders WHERE id = $1 AND stage IN ('completed', 'closed', 'cancelled')",
            )
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?;
            if finished.is_none() {
                continue;
            }
            for sql in [
                "DELETE FROM order_transitions WHERE order_id = $1",
                "DELETE FROM order_items WHERE order_id = $1",
                "DELETE FROM orders WHERE id = $1",
            ] {
                sqlx::query(sql).bind(id.to_string()).execute(&mut *tx).await.map_err(map_err)?;
            }
            purged += 1;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(purged)
    }

    async fn audit_head(&self) -> StoreResult<Option<AuditEntry>> {
        let row = sqlx::query(&format!("SELECT {AUDIT_COLS} FROM audit_log ORDER BY seq DESC LIMIT 1"))
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(audit_from).transpose()
    }

    async fn search_audit(&self, filter: &AuditFilter, limit: u32) -> StoreResult<Vec<AuditEntry>> {
        // Built from fixed fragments; every value is bound.
        let mut binds: Vec<String> = vec![filter.organisation.clone()];
        let mut scope = vec!["organisation = $1".to_string()];
        if let Some(p) = filter.patients_of_pharmacy {
            binds.push(p.to_string());
            scope.push(format!("patient_id IN (SELECT id FROM patients WHERE pharmacy_id = ${})", binds.len()));
        }
        if let Some(p) = filter.patients_of_practice {
            binds.push(p.to_string());
            scope.push(format!("patient_id IN (SELECT id FROM patients WHERE practice_id = ${})", binds.len()));
        }
        let mut sql = format!("SELECT {AUDIT_COLS} FROM audit_log WHERE ({})", scope.join(" OR "));
        let mut ints: Vec<i64> = Vec::new();
        if let Some(a) = filter.actor {
            binds.push(a.to_string());
            sql.push_str(&format!(" AND actor_user_id = ${}", binds.len()));
        }
        if let Some(p) = filter.patient {
            binds.push(p.to_string());
            sql.push_str(&format!(" AND patient_id = ${}", binds.len()));
        }
        if let Some(prefix) = &filter.action_prefix {
            binds.push(like_prefix(prefix));
            sql.push_str(&format!(" AND action LIKE ${} ESCAPE '\\'", binds.len()));
        }
        let mut n = binds.len();
        for (column, op, value) in
            [("at", ">=", filter.from.map(us)), ("at", "<", filter.until.map(us)), ("seq", "<", filter.before_seq)]
        {
            if let Some(v) = value {
                n += 1;
                ints.push(v);
                sql.push_str(&format!(" AND {column} {op} ${n}"));
            }
        }
        sql.push_str(&format!(" ORDER BY seq DESC LIMIT ${}", n + 1));
        // Text binds come first ($1..), then the numbers in order, then the limit.
        let mut query = sqlx::query(&sql);
        for b in &binds {
            query = query.bind(b);
        }
        for v in &ints {
            query = query.bind(*v);
        }
        let rows = query.bind(i64::from(limit)).fetch_all(&self.pool).await.map_err(map_err)?;
        rows.iter().map(audit_from).collect()
    }

    async fn audit_entries_for_patient(&self, patient: PatientId, limit: u32) -> StoreResult<Vec<AuditEntry>> {
        let rows = sqlx::query(&format!(
            "SELECT {AUDIT_COLS} FROM audit_log WHERE patient_id = $1 ORDER BY seq DESC LIMIT $2"
        ))
        .bind(patient.to_string())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(audit_from).collect()
    }

    async fn enqueue_emails(&self, emails: &[OutgoingEmail]) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        insert_emails_on(&mut tx, emails).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn claim_emails(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<OutgoingEmail>> {
        // One statement, so SQLite's write lock makes the claim atomic: two servers can never
        // lease the same email.
        let rows = sqlx::query(&format!(
            "UPDATE outbox_emails SET lease_until = $2 WHERE id IN ( \
                 SELECT id FROM outbox_emails \
                 WHERE status = 'pending' AND not_before <= $1 AND (lease_until IS NULL OR lease_until < $1) \
                 ORDER BY not_before, created_at, id LIMIT $3) \
             RETURNING {EMAIL_COLS}"
        ))
        .bind(us(now))
        .bind(us(lease_until))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        let mut emails = rows.iter().map(email_from).collect::<StoreResult<Vec<_>>>()?;
        emails.sort_by_key(|e| (e.not_before, e.created_at, e.id));
        Ok(emails)
    }

    async fn mark_email_sent(&self, id: EmailId, at: Timestamp) -> StoreResult<()> {
        sqlx::query("UPDATE outbox_emails SET status = 'sent', sent_at = $2, lease_until = NULL WHERE id = $1")
            .bind(id.to_string())
            .bind(us(at))
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn mark_email_failed(&self, id: EmailId, error: &str, retry_at: Option<Timestamp>) -> StoreResult<()> {
        let q = match retry_at {
            Some(retry_at) => sqlx::query(
                "UPDATE outbox_emails SET attempts = attempts + 1, last_error = $2, not_before = $3, \
                 lease_until = NULL WHERE id = $1",
            )
            .bind(id.to_string())
            .bind(error)
            .bind(us(retry_at)),
            None => sqlx::query(
                "UPDATE outbox_emails SET attempts = attempts + 1, last_error = $2, status = 'failed', \
                 lease_until = NULL WHERE id = $1",
            )
            .bind(id.to_string())
            .bind(error),
        };
        q.execute(&self.pool).await.map_err(map_err)?;
        Ok(())
    }

    async fn recent_emails(&self, limit: u32) -> StoreResult<Vec<OutgoingEmail>> {
        let rows =
            sqlx::query(&format!("SELECT {EMAIL_COLS} FROM outbox_emails ORDER BY created_at DESC, id DESC LIMIT $1"))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
        rows.iter().map(email_from).collect()
    }

    // --- background jobs ---

    async fn claim_job(&self, job: &str, owner: &str, now: Timestamp, lease_until: Timestamp) -> StoreResult<bool> {
        let row = sqlx::query(
            "INSERT INTO jobs (name, owner, lease_until) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until \
             WHERE jobs.lease_until < $4 OR jobs.owner = excluded.owner \
             RETURNING owner",
        )
        .bind(job)
        .bind(owner)
        .bind(us(lease_until))
        .bind(us(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        match row {
            Some(row) => Ok(col::<String>(&row, "owner")? == owner),
            None => Ok(false),
        }
    }

    async fn repeat_items_needing_reminder(&self, due_on_or_before: Date, limit: u32) -> StoreResult<Vec<RepeatItem>> {
        let rows = sqlx::query(&format!(
            "SELECT {REPEAT_COLS} FROM repeat_items \
             WHERE active = 1 AND next_due IS NOT NULL AND next_due <= $1 \
               AND (reminded_for IS NULL OR reminded_for <> next_due) \
             ORDER BY next_due, created_at, id LIMIT $2"
        ))
        .bind(due_on_or_before.to_string())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(repeat_item_from).collect()
    }

    /// Idempotent: when the reminder for `due` is already recorded, nothing changes and the email
    /// is not queued a second time.
    async fn record_reminder(&self, item: RepeatItemId, due: Date, email: Option<&OutgoingEmail>) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let due = due.to_string();
        let done = sqlx::query(
            "UPDATE repeat_items SET reminded_for = $2 WHERE id = $1 AND (reminded_for IS NULL OR reminded_for <> $2)",
        )
        .bind(item.to_string())
        .bind(&due)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if done.rows_affected() == 1 {
            if let Some(email) = email {
                insert_emails_on(&mut tx, std::slice::from_ref(email)).await?;
            }
        }
        tx.commit().await.map_err(map_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_take_wildcards_literally() {
        assert_eq!(like_prefix("o'b"), "o'b%");
        assert_eq!(like_prefix("50%_x\\"), "50\\%\\_x\\\\%");
    }

    #[test]
    fn placeholders_are_numbered() {
        assert_eq!(placeholders(3, 2), "$3, $4");
        assert_eq!(placeholders(1, 0), "");
    }

    #[test]
    fn conflicts_never_echo_values() {
        let s = conflict_sentence("UNIQUE constraint failed: users.email");
        assert_eq!(s, "that email address already has an account");
    }
}
