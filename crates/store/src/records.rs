//! Records that exist only because they are stored: organisations, accounts, sessions, emails.
use jiff::civil::Date;
use jiff::Timestamp;
use repeatrx_domain::access::Role;
use repeatrx_domain::ids::*;
use repeatrx_domain::order::{Order, OrderStage};
use repeatrx_domain::patient::Patient;
use repeatrx_domain::security::{LockState, SecurityEventKind, SessionStage};
use repeatrx_domain::text::Email;
use std::fmt;

/// Which of a patient's repeat lines [`crate::Store::patient_with_lines_held`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhichLines<'a> {
    /// The whole repeat list, in list order (the repeat list page).
    All,
    /// Only these of the patient's lines, in no promised order; ids that are not the patient's
    /// lines are left out (an order reads just the lines it orders).
    Only(&'a [RepeatItemId]),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pharmacy {
    pub id: PharmacyId,
    pub name: String,
    /// The NHS ODS code, e.g. "FA123".
    pub ods_code: String,
    pub address: String,
    pub email: Option<Email>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Practice {
    pub id: PracticeId,
    pub name: String,
    pub ods_code: String,
    pub address: String,
    pub email: Option<Email>,
    /// Whether the practice's prescribers use RepeatRx; if not, the pharmacy records decisions.
    pub on_repeatrx: bool,
    pub created_at: Timestamp,
}

#[derive(Clone, PartialEq, Eq)]
pub struct UserAccount {
    pub id: UserId,
    /// The login id.
    pub email: Email,
    pub display_name: String,
    pub role: Role,
    pub pharmacy_id: Option<PharmacyId>,
    pub practice_id: Option<PracticeId>,
    pub patient_id: Option<PatientId>,
    /// PHC string (argon2id).
    pub password_hash: String,
    pub active: bool,
    pub created_at: Timestamp,
}

impl fmt::Debug for UserAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserAccount").field("id", &self.id).field("role", &self.role).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// Cookie session of a browser; state-changing requests need the CSRF token.
    Browser,
    /// Bearer token of a phone app or integration.
    Api,
}

impl SessionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::Browser => "browser",
            SessionKind::Api => "api",
        }
    }
}

/// A signed-in session. Only the SHA-256 of the token is stored, so a database leak yields no
/// usable session.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub token_hash: String,
    pub user_id: UserId,
    pub kind: SessionKind,
    pub csrf_token: String,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub expires_at: Timestamp,
    pub user_agent: String,
    /// How far through sign-in the session is; only `Full` sessions reach dashboards.
    pub stage: SessionStage,
    /// The client address the session was opened from.
    pub address: String,
}

impl fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionRecord")
            .field("user_id", &self.user_id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// A session with its account, read together because every signed-in request needs both.
#[derive(Debug, Clone)]
pub struct SessionAccount {
    pub session: SessionRecord,
    pub user: UserAccount,
    /// For a patient's account, the pharmacy and practice of the patient record now (the record,
    /// not the account, says where a patient belongs).
    pub patient_orgs: Option<(PharmacyId, PracticeId)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailStatus {
    Pending,
    Sent,
    Failed,
}

impl EmailStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EmailStatus::Pending => "pending",
            EmailStatus::Sent => "sent",
            EmailStatus::Failed => "failed",
        }
    }
}

/// An email in the transactional outbox: written in the same transaction as the change that
/// causes it, delivered afterwards by the mail job.
#[derive(Clone, PartialEq, Eq)]
pub struct OutgoingEmail {
    pub id: EmailId,
    pub to: Email,
    pub subject: String,
    pub body: String,
    pub status: EmailStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub not_before: Timestamp,
    pub sent_at: Option<Timestamp>,
}

impl OutgoingEmail {
    pub fn new(to: Email, subject: impl Into<String>, body: impl Into<String>, now: Timestamp) -> Self {
        Self {
            id: EmailId::new(),
            to,
            subject: subject.into(),
            body: body.into(),
            status: EmailStatus::Pending,
            attempts: 0,
            last_error: None,
            created_at: now,
            not_before: now,
            sent_at: None,
        }
    }
}

impl fmt::Debug for OutgoingEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutgoingEmail").field("id", &self.id).field("status", &self.status).finish_non_exhaustive()
    }
}

/// An order as stored, with the version used for optimistic concurrency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOrder {
    pub order: Order,
    pub version: i64,
}

/// A patient the order-retention job is due to look at, and how many times writes had marked
/// them due when it was read (see [`crate::Store::settle_retention`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionDue {
    pub patient: PatientId,
    /// The Unix epoch for a patient marked by a write: due at once.
    pub due: Timestamp,
    pub marks: i64,
}

/// What the retention job decided for a patient it was due to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionSettled {
    pub due: RetentionDue,
    /// Orders to delete with their items and transitions (finished ones only).
    pub purge: Vec<OrderId>,
    /// When to look again; `None` when only a write can make another order purgeable.
    pub next: Option<Timestamp>,
}

/// Criteria for finding a pharmacy's patients; all given criteria must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatientQuery {
    /// Each whitespace-separated word must match the start of the given or the family name,
    /// case-insensitively (so "Ann Jones" and "jones a" both find Ann Jones).
    pub name: Option<String>,
    pub date_of_birth: Option<Date>,
    /// Exact, digits only.
    pub nhs_number: Option<String>,
}

/// Criteria for searching the audit trail. Entries match when they were made in `organisation`
/// or (with `patients_of_pharmacy` / `patients_of_practice`) concern a patient of that pharmacy or
/// practice, whoever made them (a custodian's break-glass reads, say); and every other given
/// criterion holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// As the trail names it: `pharmacy:<id>`, `practice:<id>` or `platform`.
    pub organisation: String,
    pub patients_of_pharmacy: Option<PharmacyId>,
    pub patients_of_practice: Option<PracticeId>,
    pub actor: Option<UserId>,
    pub patient: Option<PatientId>,
    /// Actions starting with this (e.g. `patient.` or `sign_in.`).
    pub action_prefix: Option<String>,
    pub from: Option<Timestamp>,
    /// Exclusive.
    pub until: Option<Timestamp>,
    /// Only entries older than this one (paging backwards).
    pub before_seq: Option<i64>,
}

/// Criteria for listing orders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderFilter {
    /// Only orders in these stages (empty: all).
    pub stages: Vec<OrderStage>,
    /// Only orders of these patients (`None`: any patient).
    pub patients: Option<Vec<PatientId>>,
    pub limit: u32,
    pub offset: u32,
}

/// An order as a queue lists it: with its patient, read in the same statement (a queue page's
/// patients cost a second query and a second unwrap of each patient's data key otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedOrder {
    pub order: Order,
    pub patient: Patient,
}

/// An account's sign-in protection: lockout counters and second factor.
#[derive(Clone, PartialEq, Eq)]
pub struct AccountSecurity {
    pub user_id: UserId,
    pub failed_sign_ins: u32,
    pub lock_state: LockState,
    pub locked_at: Option<Timestamp>,
    pub dob_failures: u32,
    /// Base32 TOTP secret, once enrolment is confirmed.
    pub totp_secret: Option<String>,
    /// The secret shown during enrolment, before the first code confirms it.
    pub totp_pending_secret: Option<String>,
    pub totp_enrolled_at: Option<Timestamp>,
    /// The last 30-second step whose code was accepted.
    pub totp_last_step: i64,
    pub recovery_codes_left: u32,
}

impl fmt::Debug for AccountSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountSecurity")
            .field("user_id", &self.user_id)
            .field("failed_sign_ins", &self.failed_sign_ins)
            .field("lock_state", &self.lock_state)
            .field("dob_failures", &self.dob_failures)
            .field("totp", &self.totp_secret.is_some())
            .finish_non_exhaustive()
    }
}

/// What an emailed single-use link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    Unlock,
    PasswordReset,
    /// Confirms an email change from the old address.
    EmailChangeOld,
    /// Confirms an email change from the new address.
    EmailChangeNew,
    /// A manager's invitation: the new colleague chooses their password.
    Invitation,
}

impl TokenPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenPurpose::Unlock => "unlock",
            TokenPurpose::PasswordReset => "password_reset",
            TokenPurpose::EmailChangeOld => "email_change_old",
            TokenPurpose::EmailChangeNew => "email_change_new",
            TokenPurpose::Invitation => "invitation",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            TokenPurpose::Unlock,
            TokenPurpose::PasswordReset,
            TokenPurpose::EmailChangeOld,
            TokenPurpose::EmailChangeNew,
            TokenPurpose::Invitation,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }
}

/// An emailed single-use link. Only the SHA-256 of its token is stored.
#[derive(Clone, PartialEq, Eq)]
pub struct AccountToken {
    pub token_hash: String,
    pub user_id: UserId,
    pub purpose: TokenPurpose,
    /// For email changes: the new address.
    pub payload: Option<String>,
    /// Links that must all be used for the change to happen (the two of an email change).
    pub grouping: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
}

impl fmt::Debug for AccountToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountToken")
            .field("user_id", &self.user_id)
            .field("purpose", &self.purpose)
            .finish_non_exhaustive()
    }
}

/// A sign-in event for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityEvent {
    pub id: SecurityEventId,
    pub at: Timestamp,
    /// The account the event is about, when known.
    pub user_id: Option<UserId>,
    /// Who did it, when someone else acted on the account (a manager unlocking it).
    pub actor_id: Option<UserId>,
    pub kind: SecurityEventKind,
    pub address: String,
    /// Free text without secrets: e.g. the reason a lock was lifted.
    pub detail: String,
}

impl SecurityEvent {
    pub fn new(kind: SecurityEventKind, user: Option<UserId>, address: &str, at: Timestamp) -> Self {
        Self {
            id: SecurityEventId::new(),
            at,
            user_id: user,
            actor_id: None,
            kind,
            address: address.chars().take(64).collect(),
            detail: String::new(),
        }
    }

    pub fn by(mut self, actor: UserId) -> Self {
        self.actor_id = Some(actor);
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into().chars().take(500).collect();
        self
    }
}

/// Which accounts to list for a manager or operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountScope {
    Pharmacy(PharmacyId),
    Practice(PracticeId),
    /// Organisation managers and platform accounts (what operators look after).
    ManagersAndPlatform,
}

/// A pharmacy leaving RepeatRx (P12): marked by an operator, its patients' data due for deletion
/// by `delete_after`, done at `deleted_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PharmacyDeparture {
    pub pharmacy_id: PharmacyId,
    pub marked_at: Timestamp,
    pub marked_by: UserId,
    pub delete_after: Timestamp,
    pub deleted_at: Option<Timestamp>,
}
