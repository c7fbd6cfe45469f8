//! Encryption at rest (P2), as every backend applies it: which columns are sealed under whose
//! data key, and the blind indexes that stand in for them in `WHERE` clauses.
//!
//! - A patient's identifying and clinical columns (`patients`, `repeat_items`, an order's note,
//!   its items' descriptions and decisions, transition reasons, and the patient's sign-in email
//!   and name in `users`) are sealed under that **patient's data key** (owner = the patient's id),
//!   so destroying the key makes every copy of them unreadable.
//! - Account secrets (TOTP secrets, the new address an email-change link carries) are sealed under
//!   the `service/accounts` key, and queued emails (address, subject, body) under `service/outbox`.
//! - Data keys are stored wrapped by the master key in `data_keys`; the master key never touches
//!   the database. Equality lookups use keyed HMAC blind indexes of the normalised value.
//! - Each ciphertext's associated data names its table, column and row: a value copied to another
//!   row or column does not open, and the store reports it as corrupt instead of showing it.
use crate::{StoreError, StoreResult};
use repeatrx_crypto::{CryptoError, DataKey, Field, KeySource, WrappedKey};
use std::sync::Arc;

/// The data key of account secrets (TOTP secrets, email-change addresses).
pub const ACCOUNTS_KEY: &str = "service/accounts";
/// The data key of queued emails.
pub const OUTBOX_KEY: &str = "service/outbox";

/// What a blind index is for: equal values of one purpose give equal indexes, and indexes of
/// different purposes never match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blind {
    /// A given or family name, case-folded: one purpose for both, so a word typed into a search
    /// finds either.
    Name,
    Email,
    NhsNumber,
    DateOfBirth,
}

impl Blind {
    fn purpose(self) -> &'static str {
        match self {
            Blind::Name => "name",
            Blind::Email => "email",
            Blind::NhsNumber => "nhs_number",
            Blind::DateOfBirth => "date_of_birth",
        }
    }
}

/// Lower-cased (Unicode-aware) and trimmed, as names are compared.
pub fn fold(s: &str) -> String {
    s.trim().to_lowercase()
}

/// The words of a name as search compares them: folded, split at spaces and hyphens.
pub fn name_words(name: &str) -> Vec<String> {
    let mut words: Vec<String> =
        fold(name).split(|c: char| c.is_whitespace() || c == '-').filter(|w| !w.is_empty()).map(String::from).collect();
    words.sort();
    words.dedup();
    words
}

/// The keys a store seals with. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Sealer {
    source: Arc<dyn KeySource>,
}

impl Sealer {
    pub fn new(source: Arc<dyn KeySource>) -> Self {
        Sealer { source }
    }

    /// The blind index of a value (normalised here: names folded, others trimmed).
    pub fn index(&self, kind: Blind, value: &str) -> String {
        let normalised = match kind {
            Blind::Name => fold(value),
            _ => value.trim().to_string(),
        };
        self.source.keys().index().blind_index(kind.purpose(), &normalised)
    }

    /// A fresh data key for `owner` and its wrapped form, to store.
    pub fn new_data_key(&self, owner: &str) -> (DataKey, WrappedKey) {
        let key = DataKey::generate();
        let wrapped = self.source.keys().master().wrap(&key, owner);
        (key, wrapped)
    }

    /// The id of the master key new data keys are wrapped with.
    pub fn current_master_id(&self) -> String {
        self.source.keys().master().id().to_string()
    }

    /// Whether the key file holds this master key (current or previous).
    pub fn knows_master(&self, id: &str) -> bool {
        self.source.keys().master_by_id(id).is_some()
    }

    /// Reads the key file again (another process rotated the master key).
    pub fn reload(&self) -> StoreResult<()> {
        self.source.reload().map(|_| ()).map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    /// Unwraps a stored data key. A key wrapped by a master key this server has not loaded yet
    /// (another process rotated it) makes it read the key file again, once.
    pub fn unwrap(&self, owner: &str, wrapped: &WrappedKey) -> StoreResult<DataKey> {
        match self.source.keys().unwrap(wrapped, owner) {
            Err(CryptoError::UnknownMaster) => {
                self.source.reload().map_err(|e| StoreError::Unavailable(e.to_string()))?;
                self.source.keys().unwrap(wrapped, owner).map_err(|e| key_problem(owner, e))
            }
            other => other.map_err(|e| key_problem(owner, e)),
        }
    }

    /// Re-wraps a data key under the current master key (master-key rotation).
    pub fn rewrap(&self, owner: &str, wrapped: &WrappedKey) -> StoreResult<WrappedKey> {
        let key = self.unwrap(owner, wrapped)?;
        Ok(self.source.keys().master().wrap(&key, owner))
    }
}

fn key_problem(owner: &str, e: CryptoError) -> StoreError {
    match e {
        CryptoError::UnknownMaster => StoreError::Unavailable(format!(
            "the data key of {owner} was wrapped by a master key missing from the key file; \
             restore that key file (a backup from before a rotation needs the keys of its time)"
        )),
        other => StoreError::Corrupt(format!("the data key of {owner}: {other}")),
    }
}

/// Seals a column's value for its row.
pub fn seal(key: &DataKey, table: &str, column: &str, row: &str, plain: &str) -> String {
    key.seal(Field { table, column, row }, plain)
}

pub fn seal_opt(key: &DataKey, table: &str, column: &str, row: &str, plain: Option<&str>) -> Option<String> {
    plain.map(|p| seal(key, table, column, row, p))
}

/// Opens a column's value sealed for exactly this row; anything else is reported as corrupt.
pub fn open(key: &DataKey, table: &str, column: &str, row: &str, sealed: &str) -> StoreResult<String> {
    key.open(Field { table, column, row }, sealed)
        .map_err(|e| StoreError::Corrupt(format!("{table}.{column} of {row} does not open ({e}); it is not shown")))
}

pub fn open_opt(
    key: &DataKey,
    table: &str,
    column: &str,
    row: &str,
    sealed: Option<&str>,
) -> StoreResult<Option<String>> {
    sealed.map(|s| open(key, table, column, row, s)).transpose()
}
