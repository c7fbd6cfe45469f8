//! Account security rules: when an account locks, how it is unlocked, who needs a second factor,
//! and the sign-in events kept for the audit trail. Pure rules; the app layer applies them and the
//! store keeps the counters (in the database, so they hold across servers and restarts).
use crate::access::Role;
use crate::DomainError;
use jiff::SignedDuration;

/// Consecutive failed sign-ins (wrong password or wrong second-factor code) that lock an account.
pub const MAX_FAILED_SIGN_INS: u32 = 6;
/// Wrong dates of birth on the unlock page that turn a lock into an identity lock.
pub const MAX_DOB_FAILURES: u32 = 4;
/// How long an emailed unlock link works.
pub const UNLOCK_LINK_LIFETIME: SignedDuration = SignedDuration::from_mins(30);
/// How long an emailed password-reset link works.
pub const RESET_LINK_LIFETIME: SignedDuration = SignedDuration::from_mins(30);
/// How long a new colleague has to accept an invitation and choose a password.
pub const INVITATION_LINK_LIFETIME: SignedDuration = SignedDuration::from_hours(72);
/// How long the links that confirm an email change work.
pub const EMAIL_CHANGE_LINK_LIFETIME: SignedDuration = SignedDuration::from_hours(24);
/// The shortest time between two emailed links of one kind to one account: asking again sooner
/// sends nothing (the answer is the same), so nobody can flood a mailbox.
pub const LINK_RESEND_INTERVAL: SignedDuration = SignedDuration::from_mins(1);
/// How long a half-finished sign-in (password given, second factor not yet) may wait.
pub const SECOND_FACTOR_WINDOW: SignedDuration = SignedDuration::from_mins(10);
/// Recovery codes issued at TOTP enrolment.
pub const RECOVERY_CODES: usize = 10;

/// Failed sign-ins from one client address within [`ADDRESS_WINDOW`] after which that address is
/// slowed down (refused for the rest of the window) without locking anyone's account.
pub const ADDRESS_FAILURE_LIMIT: u64 = 30;
pub const ADDRESS_WINDOW: SignedDuration = SignedDuration::from_mins(15);

/// Whether an account can sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockState {
    Open,
    /// Too many failed sign-ins: the unlock procedure (date of birth for patients, their manager
    /// for staff) opens it again.
    Locked,
    /// Too many wrong dates of birth: only the patient's pharmacy can open it, after checking
    /// identity in person.
    IdentityLocked,
}

impl LockState {
    pub fn as_str(self) -> &'static str {
        match self {
            LockState::Open => "open",
            LockState::Locked => "locked",
            LockState::IdentityLocked => "identity_locked",
        }
    }

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        match s {
            "open" => Ok(LockState::Open),
            "locked" => Ok(LockState::Locked),
            "identity_locked" => Ok(LockState::IdentityLocked),
            other => Err(DomainError::invalid(
                "lock state",
                format!("'{}' is not a lock state", crate::text::clip(other, 30)),
            )),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            LockState::Open => "Open",
            LockState::Locked => "Locked after failed sign-ins",
            LockState::IdentityLocked => "Locked until identity is checked",
        }
    }

    pub fn is_locked(self) -> bool {
        self != LockState::Open
    }
}

/// The lock state after a failed attempt brought the count of consecutive failures to `failures`.
pub fn after_failed_sign_in(current: LockState, failures: u32) -> LockState {
    match current {
        LockState::Open if failures >= MAX_FAILED_SIGN_INS => LockState::Locked,
        other => other,
    }
}

/// The lock state after a wrong date of birth brought the count of DOB failures to `failures`.
pub fn after_wrong_date_of_birth(current: LockState, failures: u32) -> LockState {
    match current {
        LockState::IdentityLocked => LockState::IdentityLocked,
        _ if failures >= MAX_DOB_FAILURES => LockState::IdentityLocked,
        other => other,
    }
}

/// Who may lift a lock on an account of `role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unlocker {
    /// The patient, by date of birth; after an identity lock, their pharmacy's staff.
    PatientByDateOfBirth,
    /// The manager of the account's organisation.
    OrganisationManager,
    /// A platform operator (for managers and platform accounts).
    PlatformOperator,
}

pub fn unlocker_of(role: Role) -> Unlocker {
    match role {
        Role::Patient => Unlocker::PatientByDateOfBirth,
        Role::PharmacyManager | Role::PracticeManager | Role::Operator | Role::Custodian => Unlocker::PlatformOperator,
        Role::Pharmacist | Role::Dispenser | Role::CounterAssistant | Role::Prescriber | Role::Receptionist => {
            Unlocker::OrganisationManager
        }
    }
}

/// Every pharmacy, practice and platform account must use a second factor; patients may opt in.
pub fn second_factor_required(role: Role) -> bool {
    role.is_staff()
}

/// How far a session has got through sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStage {
    /// Password and (where needed) second factor done: the session may reach its dashboard.
    Full,
    /// Password right; waiting for a one-time code or recovery code.
    SecondFactor,
    /// Password right; the account must enrol TOTP before anything else.
    Enrol,
}

impl SessionStage {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStage::Full => "full",
            SessionStage::SecondFactor => "second_factor",
            SessionStage::Enrol => "enrol",
        }
    }

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        match s {
            "full" => Ok(SessionStage::Full),
            "second_factor" => Ok(SessionStage::SecondFactor),
            "enrol" => Ok(SessionStage::Enrol),
            other => {
                Err(DomainError::invalid("session stage", format!("'{}' is not a stage", crate::text::clip(other, 30))))
            }
        }
    }
}

/// Sign-in events recorded for the audit trail (never with passwords or codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityEventKind {
    SignedIn,
    SignInFailed,
    SecondFactorFailed,
    Locked,
    UnlockRequested,
    Unlocked,
    DateOfBirthFailed,
    IdentityLocked,
    IdentityLockLifted,
    UnlockedByManager,
    ResetRequested,
    PasswordReset,
    PasswordChanged,
    PasswordRehashed,
    TotpEnrolled,
    TotpDisabled,
    RecoveryCodeUsed,
    RecoveryCodesRenewed,
    SignedOut,
    SignedOutEverywhere,
    SessionExpired,
    EmailChangeRequested,
    EmailChanged,
    AddressThrottled,
}

impl SecurityEventKind {
    pub const ALL: [SecurityEventKind; 24] = [
        SecurityEventKind::SignedIn,
        SecurityEventKind::SignInFailed,
        SecurityEventKind::SecondFactorFailed,
        SecurityEventKind::Locked,
        SecurityEventKind::UnlockRequested,
        SecurityEventKind::Unlocked,
        SecurityEventKind::DateOfBirthFailed,
        SecurityEventKind::IdentityLocked,
        SecurityEventKind::IdentityLockLifted,
        SecurityEventKind::UnlockedByManager,
        SecurityEventKind::ResetRequested,
        SecurityEventKind::PasswordReset,
        SecurityEventKind::PasswordChanged,
        SecurityEventKind::PasswordRehashed,
        SecurityEventKind::TotpEnrolled,
        SecurityEventKind::TotpDisabled,
        SecurityEventKind::RecoveryCodeUsed,
        SecurityEventKind::RecoveryCodesRenewed,
        SecurityEventKind::SignedOut,
        SecurityEventKind::SignedOutEverywhere,
        SecurityEventKind::SessionExpired,
        SecurityEventKind::EmailChangeRequested,
        SecurityEventKind::EmailChanged,
        SecurityEventKind::AddressThrottled,
    ];

    pub fn as_str(self) -> &'static str {
        use SecurityEventKind::*;
        match self {
            SignedIn => "signed_in",
            SignInFailed => "sign_in_failed",
            SecondFactorFailed => "second_factor_failed",
            Locked => "locked",
            UnlockRequested => "unlock_requested",
            Unlocked => "unlocked",
            DateOfBirthFailed => "date_of_birth_failed",
            IdentityLocked => "identity_locked",
            IdentityLockLifted => "identity_lock_lifted",
            UnlockedByManager => "unlocked_by_manager",
            ResetRequested => "reset_requested",
            PasswordReset => "password_reset",
            PasswordChanged => "password_changed",
            PasswordRehashed => "password_rehashed",
            TotpEnrolled => "totp_enrolled",
            TotpDisabled => "totp_disabled",
            RecoveryCodeUsed => "recovery_code_used",
            RecoveryCodesRenewed => "recovery_codes_renewed",
            SignedOut => "signed_out",
            SignedOutEverywhere => "signed_out_everywhere",
            SessionExpired => "session_expired",
            EmailChangeRequested => "email_change_requested",
            EmailChanged => "email_changed",
            AddressThrottled => "address_throttled",
        }
    }

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| DomainError::invalid("event", format!("'{}' is not an event", crate::text::clip(s, 30))))
    }

    pub fn label(self) -> &'static str {
        use SecurityEventKind::*;
        match self {
            SignedIn => "Signed in",
            SignInFailed => "Sign-in failed",
            SecondFactorFailed => "Wrong security code",
            Locked => "Account locked",
            UnlockRequested => "Unlock requested",
            Unlocked => "Unlocked with date of birth",
            DateOfBirthFailed => "Wrong date of birth",
            IdentityLocked => "Locked until identity is checked",
            IdentityLockLifted => "Identity lock lifted by the pharmacy",
            UnlockedByManager => "Unlocked by a manager",
            ResetRequested => "Password reset requested",
            PasswordReset => "Password reset by email",
            PasswordChanged => "Password changed",
            PasswordRehashed => "Password hash upgraded",
            TotpEnrolled => "Authenticator app set up",
            TotpDisabled => "Authenticator app removed",
            RecoveryCodeUsed => "Recovery code used",
            RecoveryCodesRenewed => "New recovery codes issued",
            SignedOut => "Signed out",
            SignedOutEverywhere => "Signed out everywhere",
            SessionExpired => "Session expired",
            EmailChangeRequested => "Email change requested",
            EmailChanged => "Email address changed",
            AddressThrottled => "Sign-ins slowed for a network address",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sixth_consecutive_failure_locks() {
        for n in 0..MAX_FAILED_SIGN_INS {
            assert_eq!(after_failed_sign_in(LockState::Open, n), LockState::Open, "{n}");
        }
        assert_eq!(after_failed_sign_in(LockState::Open, 6), LockState::Locked);
        assert_eq!(after_failed_sign_in(LockState::IdentityLocked, 9), LockState::IdentityLocked);
    }

    #[test]
    fn the_fourth_wrong_date_of_birth_needs_the_pharmacy() {
        assert_eq!(after_wrong_date_of_birth(LockState::Locked, 3), LockState::Locked);
        assert_eq!(after_wrong_date_of_birth(LockState::Locked, 4), LockState::IdentityLocked);
        assert_eq!(after_wrong_date_of_birth(LockState::IdentityLocked, 1), LockState::IdentityLocked);
    }

    #[test]
    fn staff_need_a_second_factor_and_unlock_through_their_line() {
        for role in Role::ALL {
            assert_eq!(second_factor_required(role), role != Role::Patient, "{role:?}");
        }
        assert_eq!(unlocker_of(Role::Patient), Unlocker::PatientByDateOfBirth);
        assert_eq!(unlocker_of(Role::Pharmacist), Unlocker::OrganisationManager);
        assert_eq!(unlocker_of(Role::Receptionist), Unlocker::OrganisationManager);
        assert_eq!(unlocker_of(Role::PharmacyManager), Unlocker::PlatformOperator);
        assert_eq!(unlocker_of(Role::Operator), Unlocker::PlatformOperator);
    }

    #[test]
    fn names_round_trip() {
        for k in SecurityEventKind::ALL {
            assert_eq!(SecurityEventKind::parse(k.as_str()), Ok(k));
        }
        for s in [LockState::Open, LockState::Locked, LockState::IdentityLocked] {
            assert_eq!(LockState::parse(s.as_str()), Ok(s));
        }
        for s in [SessionStage::Full, SessionStage::SecondFactor, SessionStage::Enrol] {
            assert_eq!(SessionStage::parse(s.as_str()), Ok(s));
        }
    }
}
