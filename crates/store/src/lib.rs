//! RepeatRx storage. [`Store`] is the one interface the application talks to; [`sql::SqlStore`]
//! implements it on SQLite (embedded) and on PostgreSQL, both held to the same [`conformance`] suite.
//! Each method is one atomic unit of work: a use case that changes several tables (an order, its
//! transition records and the emails it causes) is one method, hence one transaction, so nothing
//! is ever half-written.
#![forbid(unsafe_code)]

pub mod backup;
pub mod conformance;
pub mod ledger;
pub mod records;
pub mod sealing;
pub mod sql;
pub mod testdb;

/// The encryption crate, for callers that open a store (they supply its keys).
pub use repeatrx_crypto as crypto;

use async_trait::async_trait;
use jiff::civil::Date;
use jiff::Timestamp;
use repeatrx_domain::access::Role;
use repeatrx_domain::audit::{AuditEntry, AuditRecord};
use repeatrx_domain::custody::Grant;
use repeatrx_domain::erasure::ErasureBy;
use repeatrx_domain::ids::*;
use repeatrx_domain::order::{Order, OrderStage, Transition};
use repeatrx_domain::patient::Patient;
use repeatrx_domain::repeat::RepeatItem;
use repeatrx_domain::text::Email;
use std::sync::Arc;

pub use records::*;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A unique value is taken (e.g. an email already has an account) or an optimistic version
    /// check failed because someone else changed the row first.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database cannot be reached or is out of space; the caller should answer 503.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// Stored data failed to parse back into domain types.
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(String),
    /// A new order for a pharmacy that is leaving RepeatRx (or has left), which takes none.
    #[error("the pharmacy is leaving RepeatRx and takes no new orders")]
    PharmacyLeaving,
    /// A new order names repeat lines that are already on an open order (these ones): two
    /// requests raced to order the same medicine, and the other one was written first.
    #[error("repeat lines already on an open order: {0:?}")]
    LinesOnOpenOrder(Vec<RepeatItemId>),
    /// A new patient whose NHS number the pharmacy has already registered.
    #[error("a patient with this NHS number is already registered at the pharmacy")]
    NhsNumberRegistered,
}

pub type StoreResult<T> = Result<T, StoreError>;
pub type DynStore = Arc<dyn Store>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Succeeds when the database answers a trivial query.
    async fn health(&self) -> StoreResult<()>;

    // --- deployment metadata (key/value) ---
    async fn get_meta(&self, key: &str) -> StoreResult<Option<String>>;
    async fn set_meta(&self, key: &str, value: &str) -> StoreResult<()>;

    // --- organisations ---
    async fn insert_pharmacy(&self, pharmacy: &Pharmacy, first_manager: &UserAccount) -> StoreResult<()>;
    async fn pharmacy(&self, id: PharmacyId) -> StoreResult<Option<Pharmacy>>;
    async fn list_pharmacies(&self) -> StoreResult<Vec<Pharmacy>>;
    async fn insert_practice(&self, practice: &Practice, first_manager: Option<&UserAccount>) -> StoreResult<()>;
    async fn practice(&self, id: PracticeId) -> StoreResult<Option<Practice>>;
    async fn list_practices(&self) -> StoreResult<Vec<Practice>>;

    // --- accounts and sessions ---
    /// Fails with `Conflict` if the email already has an account.
    async fn insert_user(&self, user: &UserAccount) -> StoreResult<()>;
    async fn user(&self, id: UserId) -> StoreResult<Option<UserAccount>>;
    async fn user_by_email(&self, email: &Email) -> StoreResult<Option<UserAccount>>;
    async fn user_for_patient(&self, patient: PatientId) -> StoreResult<Option<UserAccount>>;
    async fn set_password_hash(&self, user: UserId, hash: &str) -> StoreResult<()>;
    /// How many accounts have this role (suspended ones included).
    async fn count_users_with_role(&self, role: Role) -> StoreResult<u64>;
    /// Creates an invited account with its invitation link and email, atomically. With a `cap`,
    /// refuses (returns false, storing nothing) when that many accounts of the role exist already;
    /// the count and the insert happen under one write lock, so concurrent invitations cannot
    /// exceed it. Fails with `Conflict` if the email already has an account.
    async fn invite_user(
        &self,
        user: &UserAccount,
        link: &AccountToken,
        emails: &[OutgoingEmail],
        cap: Option<u32>,
    ) -> StoreResult<bool>;
    /// Gives an account another role; with a `cap`, refuses (false) when that many accounts of
    /// the new role exist already (counted under the same write lock).
    async fn set_user_role(&self, user: UserId, role: Role, cap: Option<u32>) -> StoreResult<bool>;
    /// Suspends (ending every session, in the same transaction) or reinstates an account.
    async fn set_user_active(&self, user: UserId, active: bool) -> StoreResult<()>;
    /// How many accounts have an email address at this domain.
    async fn count_users_with_email_domain(&self, domain: &str) -> StoreResult<u64>;
    /// Every account with this role, oldest first.
    async fn users_with_role(&self, role: Role) -> StoreResult<Vec<UserAccount>>;

    // --- pharmacies leaving (P12) ---
    /// Marks the pharmacy as leaving: records the departure, suspends every staff account of the
    /// pharmacy (ending their sessions) and queues `emails`, in one transaction. False (nothing
    /// changed) if it is leaving or has left already.
    async fn mark_pharmacy_leaving(&self, departure: &PharmacyDeparture, emails: &[OutgoingEmail])
        -> StoreResult<bool>;
    /// The departure of one pharmacy, if it is leaving or has left.
    async fn pharmacy_departure(&self, pharmacy: PharmacyId) -> StoreResult<Option<PharmacyDeparture>>;
    /// Every departure, oldest first.
    async fn pharmacy_departures(&self) -> StoreResult<Vec<PharmacyDeparture>>;
    /// Deletes the staff accounts of a departed pharmacy (its patients must be erased first) and
    /// records the departure as done at `at`; returns how many accounts were deleted.
    async fn finish_pharmacy_departure(&self, pharmacy: PharmacyId, at: Timestamp) -> StoreResult<u64>;

    // --- break-glass grants ---
    /// Stores a grant with the emails that announce it, atomically.
    async fn insert_grant(&self, grant: &Grant, emails: &[OutgoingEmail]) -> StoreResult<()>;
    /// A custodian's grants, newest first.
    async fn grants_of(&self, custodian: UserId, limit: u32) -> StoreResult<Vec<Grant>>;
    /// A custodian's grants that have neither expired nor been ended as of `now`.
    async fn live_grants(&self, custodian: UserId, now: Timestamp) -> StoreResult<Vec<Grant>>;
    /// Ends a live grant of this custodian early; false if there is none such.
    async fn end_grant(&self, id: GrantId, custodian: UserId, now: Timestamp) -> StoreResult<bool>;
    async fn insert_session(&self, session: &SessionRecord) -> StoreResult<()>;
    async fn session(&self, token_hash: &str) -> StoreResult<Option<SessionRecord>>;
    /// The session, its account and (for a patient) the patient's organisations, in one read.
    async fn session_account(&self, token_hash: &str) -> StoreResult<Option<SessionAccount>>;
    async fn touch_session(&self, token_hash: &str, last_seen_at: Timestamp) -> StoreResult<()>;
    async fn delete_session(&self, token_hash: &str) -> StoreResult<()>;
    async fn delete_sessions_of_user(&self, user: UserId) -> StoreResult<u64>;
    /// Every unexpired session of the account, newest first.
    async fn sessions_of_user(&self, user: UserId, now: Timestamp) -> StoreResult<Vec<SessionRecord>>;
    /// Ends every session of the account but `keep`.
    async fn delete_other_sessions(&self, user: UserId, keep: &str) -> StoreResult<u64>;
    /// Replaces a session by a new one (a new id on privilege change), atomically.
    async fn rotate_session(&self, old_token_hash: &str, new: &SessionRecord) -> StoreResult<()>;
    /// Fails with `Conflict` if the address already has an account.
    async fn set_user_email(&self, user: UserId, email: &Email) -> StoreResult<()>;
    /// The accounts a manager or operator looks after, with their sign-in protection, by name.
    async fn list_accounts(&self, scope: AccountScope) -> StoreResult<Vec<(UserAccount, AccountSecurity)>>;

    // --- account security (lockout, second factor, emailed links, throttling, events) ---
    async fn account_security(&self, user: UserId) -> StoreResult<Option<AccountSecurity>>;
    /// Reads the account's protection, lets `change` modify it, and writes it back if `change`
    /// returns true, all under the write lock, so that concurrent attempts on several servers
    /// each see the previous one's count. Returns the (possibly changed) state and whether it
    /// was written; `None` if there is no such account. Recovery codes are not touched.
    async fn update_account_security(
        &self,
        user: UserId,
        change: &mut (dyn for<'s> FnMut(&'s mut AccountSecurity) -> bool + Send),
    ) -> StoreResult<Option<(AccountSecurity, bool)>>;
    /// Confirms TOTP enrolment: the pending secret becomes the secret, and the recovery codes
    /// are replaced by these hashes, atomically. Fails with `Conflict` if `secret` is not the
    /// pending secret any more.
    async fn enable_totp(
        &self,
        user: UserId,
        secret: &str,
        step: i64,
        recovery_hashes: &[String],
        now: Timestamp,
    ) -> StoreResult<()>;
    async fn replace_recovery_codes(&self, user: UserId, recovery_hashes: &[String]) -> StoreResult<()>;
    /// Marks an unused recovery code used; false if it is unknown or already used.
    async fn use_recovery_code(&self, user: UserId, code_hash: &str, now: Timestamp) -> StoreResult<bool>;
    /// Stores an emailed link together with the email that carries it, atomically.
    async fn insert_account_token(&self, token: &AccountToken, emails: &[OutgoingEmail]) -> StoreResult<()>;
    async fn account_token(&self, token_hash: &str) -> StoreResult<Option<AccountToken>>;
    /// Marks an unused, unexpired link used; false if it was used already or has expired (so two
    /// servers can never both accept it).
    async fn use_account_token(&self, token_hash: &str, now: Timestamp) -> StoreResult<bool>;
    /// Every link sharing a grouping (the two confirmations of an email change).
    async fn grouped_tokens(&self, grouping: &str) -> StoreResult<Vec<AccountToken>>;
    /// When the newest link of this purpose was issued to the account, if ever.
    async fn latest_account_token_at(&self, user: UserId, purpose: TokenPurpose) -> StoreResult<Option<Timestamp>>;
    /// Marks every unused link of this purpose for the account used (superseded).
    async fn void_account_tokens(&self, user: UserId, purpose: TokenPurpose, now: Timestamp) -> StoreResult<u64>;
    /// Counts a failed sign-in from `address` in the bucket starting at `bucket` (unix minutes),
    /// forgets buckets older than `forget_before`, and returns the failures since `since`.
    async fn record_address_failure(
        &self,
        address: &str,
        bucket: i64,
        since: i64,
        forget_before: i64,
    ) -> StoreResult<u64>;
    async fn address_failures_since(&self, address: &str, since: i64) -> StoreResult<u64>;
    /// Stores a sign-in event and appends its audit-trail entry (as [`Store::append_audit`]), in
    /// one transaction: both or neither.
    async fn insert_security_event(&self, event: &SecurityEvent, audit: &AuditRecord) -> StoreResult<AuditEntry>;
    /// Newest first.
    async fn security_events_of_user(&self, user: UserId, limit: u32) -> StoreResult<Vec<SecurityEvent>>;

    // --- patients and repeat lists ---
    /// Creates the patient and, when given, their sign-in account, atomically. Refused with
    /// [`StoreError::NhsNumberRegistered`] when the pharmacy already has a patient with this NHS
    /// number, decided inside the write, so that a registration sent twice at once makes one.
    async fn insert_patient(&self, patient: &Patient, account: Option<&UserAccount>) -> StoreResult<()>;
    async fn update_patient(&self, patient: &Patient) -> StoreResult<()>;
    /// Deletes the patient for good, in one transaction: their record, repeat lines, orders with
    /// their items and history, break-glass grants over them, their account with its sessions,
    /// links and sign-in events, queued emails to any of `addresses`, and their data key; and
    /// records the erasure (id, time, who asked). Returns false if there was nothing left to
    /// delete (already erased, or never there); the record is kept either way.
    async fn erase_patient(
        &self,
        patient: PatientId,
        by: ErasureBy,
        at: Timestamp,
        addresses: &[Email],
    ) -> StoreResult<bool>;
    /// When the patient was erased, if they were.
    async fn erased_at(&self, patient: PatientId) -> StoreResult<Option<Timestamp>>;
    async fn patient(&self, id: PatientId) -> StoreResult<Option<Patient>>;
    /// A pharmacy's patients, matching every given criterion, sorted by family then given name.
    async fn search_patients(
        &self,
        pharmacy: PharmacyId,
        query: &PatientQuery,
        limit: u32,
    ) -> StoreResult<Vec<Patient>>;
    async fn insert_repeat_item(&self, item: &RepeatItem) -> StoreResult<()>;
    /// Replaces a line whole: its terms and its progress.
    async fn update_repeat_item(&self, item: &RepeatItem) -> StoreResult<()>;
    /// Stops a line (it stays on the list), changing nothing else of it, so that an issue
    /// recorded meanwhile stands; `false` if it was stopped already or does not exist.
    async fn stop_repeat_item(&self, id: RepeatItemId) -> StoreResult<bool>;
    async fn repeat_item(&self, id: RepeatItemId) -> StoreResult<Option<RepeatItem>>;
    /// Every item, active or stopped, in the order they were added.
    async fn repeat_items(&self, patient: PatientId) -> StoreResult<Vec<RepeatItem>>;
    /// A patient with the repeat lines `which` names (all of them as [`Store::repeat_items`]
    /// lists them, or only some), each with whether an open order item holds it (then it cannot
    /// be ordered again until that order finishes); `None` for an unknown patient. Read in one
    /// statement (more only for thousands of chosen ids): ordering and the repeat list need both,
    /// and every round trip, and every connection taken from the pool, costs a wake-up of the
    /// database.
    async fn patient_with_lines_held(
        &self,
        id: PatientId,
        which: WhichLines<'_>,
    ) -> StoreResult<Option<(Patient, Vec<(RepeatItem, bool)>)>>;

    // --- orders ---
    /// Stores a new order with its first transitions and the emails it causes, atomically.
    /// Refused with [`StoreError::PharmacyLeaving`] when its pharmacy is leaving or has left,
    /// decided inside the write, so that no order reaches a pharmacy once it is marked; and with
    /// [`StoreError::LinesOnOpenOrder`] when any of its lines is already on an open order (one
    /// written before it, or earlier in the same group commit), decided inside the write too, so
    /// that two requests racing cannot both order the same medicine.
    async fn insert_order(
        &self,
        order: &Order,
        transitions: &[Transition],
        emails: &[OutgoingEmail],
    ) -> StoreResult<()>;
    async fn order(&self, id: OrderId) -> StoreResult<Option<StoredOrder>>;
    /// Saves a changed order if nobody changed it since `expected_version` (else `Conflict`),
    /// together with its transitions, the issues it recorded on its repeat lines and the emails
    /// it causes. Of each line in `issued` only what an issue changes is written (the issues left
    /// and the next due date): the line was read before the write, and a stop made since then
    /// must stand.
    async fn save_order(
        &self,
        order: &Order,
        expected_version: i64,
        transitions: &[Transition],
        issued: &[RepeatItem],
        emails: &[OutgoingEmail],
    ) -> StoreResult<()>;
    /// Newest first.
    async fn orders_of_patient(&self, patient: PatientId) -> StoreResult<Vec<Order>>;
    /// Patients the order-retention job is due to look at (`now` at or past their due time), in
    /// order of due time then id, after `after` (to page through them). A patient is marked due,
    /// in the same transaction, by every write that can make one of their orders purgeable: a new
    /// order (also through [`sql::BulkLoad`]), a saved order that is finished or changes repeat
    /// lines, a changed repeat line.
    async fn patients_due_for_retention(
        &self,
        now: Timestamp,
        after: Option<&RetentionDue>,
        limit: u32,
    ) -> StoreResult<Vec<RetentionDue>>;
    /// Records what the retention job decided, in one transaction: deletes the finished orders
    /// named, with their items and transitions (an open order, or one that is gone, is left
    /// alone), and sets when to look at each patient again, unless a write marked them due after
    /// they were read (then they stay due). Returns how many orders were deleted.
    async fn settle_retention(&self, settled: &[RetentionSettled]) -> StoreResult<u64>;
    /// Oldest first.
    async fn order_transitions(&self, order: OrderId) -> StoreResult<Vec<Transition>>;
    /// A pharmacy's orders with their patients, oldest first (the queue is worked by age).
    async fn pharmacy_orders(&self, pharmacy: PharmacyId, filter: &OrderFilter) -> StoreResult<Vec<ListedOrder>>;
    /// How many of the pharmacy's orders are in each open stage, in [`OrderStage::ALL`] order,
    /// zeros included. Finished orders are not counted: there are ever more of them.
    async fn pharmacy_open_stage_counts(&self, pharmacy: PharmacyId) -> StoreResult<Vec<(OrderStage, i64)>>;
    /// A practice's orders with their patients, oldest first.
    async fn practice_orders(&self, practice: PracticeId, filter: &OrderFilter) -> StoreResult<Vec<ListedOrder>>;

    // --- audit trail ---
    /// Appends a record at the end of the chain (numbered and hashed under the write lock, so
    /// concurrent appends from several servers still form one chain) and returns the entry.
    async fn append_audit(&self, record: &AuditRecord) -> StoreResult<AuditEntry>;
    /// Entries with `seq` greater than `after`, in order, at most `limit`.
    async fn audit_entries(&self, after: i64, limit: u32) -> StoreResult<Vec<AuditEntry>>;
    /// The newest entry, if any.
    async fn audit_head(&self) -> StoreResult<Option<AuditEntry>>;
    /// The newest entries about one patient, newest first.
    /// Entries matching the filter, newest first.
    async fn search_audit(&self, filter: &AuditFilter, limit: u32) -> StoreResult<Vec<AuditEntry>>;
    async fn audit_entries_for_patient(&self, patient: PatientId, limit: u32) -> StoreResult<Vec<AuditEntry>>;

    // --- email outbox ---
    async fn enqueue_emails(&self, emails: &[OutgoingEmail]) -> StoreResult<()>;
    /// Claims up to `limit` pending emails whose `not_before` has passed, leasing them until
    /// `lease_until` so that another server does not send them too.
    async fn claim_emails(&self, now: Timestamp, lease_until: Timestamp, limit: u32)
        -> StoreResult<Vec<OutgoingEmail>>;
    async fn mark_email_sent(&self, id: EmailId, at: Timestamp) -> StoreResult<()>;
    /// Records a failed attempt; the email is retried from `retry_at`, or given up when `None`.
    async fn mark_email_failed(&self, id: EmailId, error: &str, retry_at: Option<Timestamp>) -> StoreResult<()>;
    /// Deletes emails sent or given up on that were queued before `before` (pending ones stay);
    /// returns how many.
    async fn purge_finished_emails(&self, before: Timestamp) -> StoreResult<u64>;
    /// Newest first (the demo outbox page).
    async fn recent_emails(&self, limit: u32) -> StoreResult<Vec<OutgoingEmail>>;

    // --- encryption keys ---
    /// How many data keys are wrapped by a master key other than the current one.
    async fn data_keys_to_rewrap(&self) -> StoreResult<u64>;
    /// Records that the key file's current master key is the one new data keys must be wrapped
    /// with from now on: a server whose key file is older reloads it (or refuses to write) before
    /// it wraps another key, so a rotation's sweep can finish.
    async fn adopt_current_master_key(&self) -> StoreResult<()>;
    /// Re-wraps up to `limit` data keys still wrapped by an older master key under the current
    /// one, in one transaction; returns how many. Patient data is not rewritten.
    async fn rewrap_data_keys(&self, limit: u32) -> StoreResult<u64>;

    // --- background jobs ---
    /// Claims the named job until `lease_until` if no other owner holds an unexpired lease.
    async fn claim_job(&self, job: &str, owner: &str, now: Timestamp, lease_until: Timestamp) -> StoreResult<bool>;
    /// Active repeat lines with a next due date on or before `due_on_or_before` whose reminder
    /// for that due date has not been sent.
    async fn repeat_items_needing_reminder(&self, due_on_or_before: Date, limit: u32) -> StoreResult<Vec<RepeatItem>>;
    /// Records that the reminder for `due` was sent (with the email that carries it), atomically.
    async fn record_reminder(&self, item: RepeatItemId, due: Date, email: Option<&OutgoingEmail>) -> StoreResult<()>;
}
