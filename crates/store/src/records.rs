//! Records that exist only because they are stored: organisations, accounts, sessions, emails.
use jiff::civil::Date;
use jiff::Timestamp;
use repeatrx_domain::access::Role;
use repeatrx_domain::ids::*;
use repeatrx_domain::order::{Order, OrderStage};
use repeatrx_domain::text::Email;
use std::fmt;

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
}

impl fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionRecord")
            .field("user_id", &self.user_id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
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
