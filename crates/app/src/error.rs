//! The application layer's one error type; the web layer maps each variant to an HTTP status in
//! one place.
use repeatrx_domain::repeat::Orderability;
use repeatrx_domain::DomainError;
use repeatrx_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Input failed validation; the message names the field and what to do.
    #[error("{0}")]
    Invalid(String),
    /// Several inputs failed validation; each entry is "field: what is wrong", so a form can list
    /// every problem at once.
    #[error("{}", .0.join("; "))]
    InvalidFields(Vec<String>),
    /// Items that cannot be ordered, each with its reason.
    #[error("some items cannot be ordered: {}", .0.join("; "))]
    NotOrderable(Vec<String>),
    /// A state change the order state machine does not allow.
    #[error("{0}")]
    IllegalTransition(String),
    /// Not signed in, or the session has ended.
    #[error("please sign in")]
    Unauthenticated,
    /// Sign-in refused; always the same message whatever the cause, so accounts cannot be probed.
    #[error("the email address or password is not right, or the account is locked")]
    BadCredentials,
    /// Too many failed sign-ins from this client address lately.
    #[error("too many failed sign-ins from your network; please wait 15 minutes and try again")]
    TooManyAttempts,
    /// A one-time or recovery code was wrong or already used.
    #[error("that code is not right or has been used already; enter the next code from your app")]
    WrongCode,
    /// An emailed link that has expired, been used, or never existed.
    #[error("this link has expired or has already been used; please ask for a new one")]
    LinkExpired,
    /// Signed in, but the role may not do this.
    #[error("you do not have permission to do that")]
    Forbidden,
    /// Missing, or belonging to another tenant (the two are indistinguishable on purpose).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Someone else changed it first, or a unique value is taken.
    #[error("{0}")]
    Conflict(String),
    /// The database is unreachable or full; try again shortly.
    #[error("the service is temporarily unavailable; please try again shortly")]
    Unavailable,
    /// A bug or corrupt data; the cause goes to the log, not the user.
    #[error("something went wrong on our side")]
    Internal(String),
}

impl From<DomainError> for AppError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Invalid { .. } => AppError::Invalid(e.to_string()),
            DomainError::IllegalTransition(m) => AppError::IllegalTransition(m),
            DomainError::NotOrderable(m) => AppError::NotOrderable(vec![m]),
            DomainError::Forbidden => AppError::Forbidden,
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => AppError::Conflict(m),
            StoreError::PharmacyLeaving => AppError::Conflict(
                "your pharmacy is leaving RepeatRx and takes no new orders here; please ask it how to order".into(),
            ),
            StoreError::NhsNumberRegistered => AppError::Conflict(
                "nhs_number: a patient with this NHS number is already registered at your pharmacy".into(),
            ),
            StoreError::LinesOnOpenOrder(_) => AppError::NotOrderable(vec![Orderability::OnOpenOrder.reason()]),
            StoreError::Unavailable(m) => {
                tracing::warn!(cause = %m, "database unavailable");
                AppError::Unavailable
            }
            StoreError::Corrupt(m) | StoreError::Database(m) => AppError::Internal(m),
        }
    }
}

pub type AppResult<T> = Result<T, AppError>;
