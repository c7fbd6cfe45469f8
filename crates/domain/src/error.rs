//! The domain's one error type. Every variant carries a sentence a user can act on.
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainError {
    /// A value failed validation; `field` names the input, `message` says what is wrong.
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    /// An order or item transition that the state machine does not allow.
    #[error("{0}")]
    IllegalTransition(String),
    /// An item cannot be ordered now; the reason is shown to patient and pharmacy.
    #[error("{0}")]
    NotOrderable(String),
    /// The actor's role does not allow the action, or the data belongs to another tenant.
    #[error("you do not have permission to do that")]
    Forbidden,
}

impl DomainError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        DomainError::Invalid { field, message: message.into() }
    }
}
