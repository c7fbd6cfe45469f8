//! Getting back into an account: unlock by date of birth (patients), unlock by a manager or an
//! operator (staff), lifting an identity lock at the pharmacy, password reset by email, and email
//! changes confirmed from both addresses. Emailed links carry a random 256-bit token of which only
//! the SHA-256 is stored; each works once and for a short time.
//!
//! The requests that take an email address (unlock, reset) answer the same whatever the address:
//! the web layer returns at once and runs them in the background, so neither the answer nor its
//! timing says whether an account exists.
use crate::access::check;
use crate::auth::{hash_password, random_token, token_hash, verify_password, Client, CurrentSession};
use crate::error::{AppError, AppResult};
use crate::App;
use jiff::SignedDuration;
use repeatrx_domain::access::{Action, Actor, Scope};
use repeatrx_domain::ids::{PatientId, UserId};
use repeatrx_domain::patient::DateOfBirth;
use repeatrx_domain::security::{
    self, LockState, SecurityEventKind, Unlocker, EMAIL_CHANGE_LINK_LIFETIME, LINK_RESEND_INTERVAL, MAX_DOB_FAILURES,
    RESET_LINK_LIFETIME, UNLOCK_LINK_LIFETIME,
};
use repeatrx_domain::text::Email;
use repeatrx_store::{
    AccountScope, AccountSecurity, AccountToken, OutgoingEmail, SecurityEvent, TokenPurpose, UserAccount,
};
use secrecy::SecretString;

/// What a date of birth on the unlock page achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnlockOutcome {
    Unlocked,
    /// Wrong; this many tries are left on this account.
    WrongDateOfBirth {
        tries_left: u32,
    },
    /// The fourth wrong date: only the pharmacy can open the account now.
    IdentityLocked,
}

/// Where an email change stands after one of its two links was used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailChangeProgress {
    /// The other address has not confirmed yet.
    WaitingForOther,
    Changed(Email),
}

/// An account as its manager (or an operator) sees it.
#[derive(Debug, Clone)]
pub struct ManagedAccount {
    pub user: UserAccount,
    pub security: AccountSecurity,
    /// Whether this viewer may lift the account's lock.
    pub can_unlock: bool,
    /// The role changes, suspension or reinstatement this viewer may make.
    pub changes: crate::staff::AllowedChanges,
}

const SIGN_OFF: &str = "RepeatRx";

impl App {
    pub(crate) fn link(&self, path: &str, token: &str) -> String {
        format!("{}/{path}/{token}", self.settings.public_url.trim_end_matches('/'))
    }

    fn security_event(&self, kind: SecurityEventKind, user: Option<UserId>, client: &Client) -> SecurityEvent {
        SecurityEvent::new(kind, user, &client.address, self.clock.now())
    }

    async fn issue_link(
        &self,
        user: &UserAccount,
        purpose: TokenPurpose,
        lifetime: SignedDuration,
        payload: Option<String>,
        grouping: Option<String>,
        email: impl FnOnce(&str) -> OutgoingEmail,
    ) -> AppResult<()> {
        let now = self.clock.now();
        let token = random_token();
        let record = AccountToken {
            token_hash: token_hash(&token),
            user_id: user.id,
            purpose,
            payload,
            grouping,
            created_at: now,
            expires_at: now + lifetime,
            used_at: None,
        };
        let message = email(&token);
        self.store.insert_account_token(&record, &[message]).await?;
        Ok(())
    }

    /// A link of the given purpose that can still be used.
    pub(crate) async fn live_link(&self, token: &str, purpose: TokenPurpose) -> AppResult<AccountToken> {
        let found = self.store.account_token(&token_hash(token)).await?;
        match found {
            Some(t) if t.purpose == purpose && t.used_at.is_none() && self.clock.now() < t.expires_at => Ok(t),
            _ => Err(AppError::LinkExpired),
        }
    }

    /// Whether a link of this kind went to the account less than [`LINK_RESEND_INTERVAL`] ago.
    async fn sent_lately(&self, user: &UserAccount, purpose: TokenPurpose) -> AppResult<bool> {
        let last = self.store.latest_account_token_at(user.id, purpose).await?;
        Ok(last.is_some_and(|at| self.clock.now().duration_since(at) < LINK_RESEND_INTERVAL))
    }

    async fn user_by_address(&self, email: &str) -> AppResult<Option<UserAccount>> {
        match Email::parse(email) {
            Ok(e) => Ok(self.store.user_by_email(&e).await?),
            Err(_) => Ok(None),
        }
    }

    // --- unlock ---------------------------------------------------------------------------

    /// "My account is locked": emails a patient an unlock link (or, for staff and identity locks,
    /// who can open it). Nothing is sent for an account that is not locked or does not exist.
    pub async fn request_unlock(&self, email: &str, client: &Client) -> AppResult<()> {
        let Some(user) = self.user_by_address(email).await? else { return Ok(()) };
        let Some(sec) = self.store.account_security(user.id).await? else { return Ok(()) };
        if !sec.lock_state.is_locked() || !user.active {
            return Ok(());
        }
        // Whatever the email says, at most one per interval: nobody can flood a mailbox.
        let now = self.clock.now();
        let recent = self.store.security_events_of_user(user.id, 20).await?;
        if recent
            .iter()
            .any(|e| e.kind == SecurityEventKind::UnlockRequested && now.duration_since(e.at) < LINK_RESEND_INTERVAL)
        {
            return Ok(());
        }
        self.record_event(self.security_event(SecurityEventKind::UnlockRequested, Some(user.id), client)).await?;
        let greeting = format!("Dear {},", user.display_name);
        match (security::unlocker_of(user.role), sec.lock_state) {
            (Unlocker::PatientByDateOfBirth, LockState::Locked) => {
                self.store.void_account_tokens(user.id, TokenPurpose::Unlock, now).await?;
                let to = user.email.clone();
                self.issue_link(&user, TokenPurpose::Unlock, UNLOCK_LINK_LIFETIME, None, None, |token| {
                    OutgoingEmail::new(
                        to,
                        "Unlock your RepeatRx account",
                        format!(
                            "{greeting}\n\nYour account was locked after several failed sign-ins. To unlock it, open \
                             this link within 30 minutes and confirm your date of birth:\n\n{}\n\nIf you did not \
                             ask for this, you can ignore this email; your account stays locked.\n\n{SIGN_OFF}",
                            self.link("unlock", token)
                        ),
                        now,
                    )
                })
                .await
            }
            (Unlocker::PatientByDateOfBirth, _) => {
                let email = OutgoingEmail::new(
                    user.email.clone(),
                    "Your RepeatRx account needs your pharmacy",
                    format!(
                        "{greeting}\n\nYour account is locked until your pharmacy has checked your identity. Please \
                         visit or call your pharmacy with a photo ID; they can unlock it for you.\n\n{SIGN_OFF}"
                    ),
                    now,
                );
                Ok(self.store.enqueue_emails(&[email]).await?)
            }
            (who, _) => {
                let by = if who == Unlocker::OrganisationManager {
                    "the manager of your pharmacy or practice"
                } else {
                    "a RepeatRx platform operator"
                };
                let email = OutgoingEmail::new(
                    user.email.clone(),
                    "Your RepeatRx staff account is locked",
                    format!(
                        "{greeting}\n\nYour staff account was locked after several failed sign-ins. For your \
                         patients' safety it can only be unlocked by {by}: please ask them to unlock it from their \
                         dashboard.\n\n{SIGN_OFF}"
                    ),
                    now,
                );
                Ok(self.store.enqueue_emails(&[email]).await?)
            }
        }
    }

    /// Checks that an unlock link can still be used (before asking for the date of birth).
    pub async fn check_unlock_link(&self, token: &str) -> AppResult<()> {
        self.live_link(token, TokenPurpose::Unlock).await.map(|_| ())
    }

    /// The unlock page's answer: the right date of birth opens the account; the fourth wrong one
    /// (across all links) hands it to the pharmacy.
    pub async fn unlock_with_date_of_birth(&self, token: &str, dob: &str, client: &Client) -> AppResult<UnlockOutcome> {
        let link = self.live_link(token, TokenPurpose::Unlock).await?;
        let given = DateOfBirth::parse(dob, self.clock.today())?;
        let user = self.store.user(link.user_id).await?.ok_or(AppError::LinkExpired)?;
        let patient = match user.patient_id {
            Some(pid) => self.store.patient(pid).await?.ok_or(AppError::LinkExpired)?,
            None => return Err(AppError::LinkExpired),
        };
        let right = patient.date_of_birth == given;
        let mut outcome = UnlockOutcome::Unlocked;
        let updated = self
            .store
            .update_account_security(user.id, &mut |s| {
                if s.lock_state == LockState::IdentityLocked {
                    outcome = UnlockOutcome::IdentityLocked;
                    return false;
                }
                if right {
                    s.lock_state = LockState::Open;
                    s.locked_at = None;
                    s.failed_sign_ins = 0;
                    s.dob_failures = 0;
                    outcome = UnlockOutcome::Unlocked;
                } else {
                    s.dob_failures = s.dob_failures.saturating_add(1);
                    s.lock_state = security::after_wrong_date_of_birth(s.lock_state, s.dob_failures);
                    outcome = if s.lock_state == LockState::IdentityLocked {
                        UnlockOutcome::IdentityLocked
                    } else {
                        UnlockOutcome::WrongDateOfBirth { tries_left: MAX_DOB_FAILURES.saturating_sub(s.dob_failures) }
                    };
                }
                true
            })
            .await?;
        if updated.is_none() {
            return Err(AppError::LinkExpired);
        }
        let now = self.clock.now();
        match &outcome {
            UnlockOutcome::Unlocked => {
                if !self.store.use_account_token(&link.token_hash, now).await? {
                    return Err(AppError::LinkExpired);
                }
                self.store.void_account_tokens(user.id, TokenPurpose::Unlock, now).await?;
                self.record_event(self.security_event(SecurityEventKind::Unlocked, Some(user.id), client)).await?;
            }
            UnlockOutcome::WrongDateOfBirth { .. } => {
                self.record_event(self.security_event(SecurityEventKind::DateOfBirthFailed, Some(user.id), client))
                    .await?;
            }
            UnlockOutcome::IdentityLocked => {
                self.store.void_account_tokens(user.id, TokenPurpose::Unlock, now).await?;
                self.record_event(self.security_event(SecurityEventKind::DateOfBirthFailed, Some(user.id), client))
                    .await?;
                self.record_event(
                    self.security_event(SecurityEventKind::IdentityLocked, Some(user.id), client)
                        .detail(format!("{MAX_DOB_FAILURES} wrong dates of birth")),
                )
                .await?;
                let email = OutgoingEmail::new(
                    user.email.clone(),
                    "Your RepeatRx account needs your pharmacy",
                    format!(
                        "Dear {},\n\nThe date of birth given to unlock your account was wrong {MAX_DOB_FAILURES} \
                         times, so the account stays locked until your pharmacy has checked your identity. Please \
                         visit or call your pharmacy with a photo ID.\n\n{SIGN_OFF}",
                        user.display_name
                    ),
                    now,
                );
                self.store.enqueue_emails(&[email]).await?;
            }
        }
        Ok(outcome)
    }

    /// The sign-in protection of a patient's account, for their pharmacy (`None`: no account).
    pub async fn patient_account_lock(&self, actor: &Actor, patient: PatientId) -> AppResult<Option<LockState>> {
        let p = self.patient_for(actor, Action::ViewPatient, patient).await?;
        let Some(user) = self.store.user_for_patient(p.id).await? else { return Ok(None) };
        Ok(self.store.account_security(user.id).await?.map(|s| s.lock_state))
    }

    /// Pharmacy staff open a patient's locked account after checking their identity in person;
    /// who did it and why is recorded.
    pub async fn lift_identity_lock(
        &self,
        actor: &Actor,
        patient: PatientId,
        reason: &str,
        client: &Client,
    ) -> AppResult<()> {
        let p = self.patient_for(actor, Action::LiftIdentityLock, patient).await?;
        let reason = reason.trim();
        if reason.chars().count() < 5 {
            return Err(AppError::InvalidFields(vec![
                "reason: say how you checked the patient's identity (e.g. \"photo ID seen at the counter\")".into(),
            ]));
        }
        let user = self.store.user_for_patient(p.id).await?.ok_or(AppError::NotFound("patient account"))?;
        self.open_account(&user).await?;
        self.record_event(
            self.security_event(SecurityEventKind::IdentityLockLifted, Some(user.id), client)
                .by(actor.user_id)
                .detail(reason.to_string()),
        )
        .await
    }

    async fn open_account(&self, user: &UserAccount) -> AppResult<()> {
        let done = self
            .store
            .update_account_security(user.id, &mut |s| {
                if !s.lock_state.is_locked() {
                    return false;
                }
                s.lock_state = LockState::Open;
                s.locked_at = None;
                s.failed_sign_ins = 0;
                s.dob_failures = 0;
                true
            })
            .await?;
        match done {
            Some((_, true)) => Ok(()),
            Some((_, false)) => Err(AppError::Conflict("that account is not locked".into())),
            None => Err(AppError::NotFound("account")),
        }
    }

    fn may_unlock(actor: &Actor, target: &UserAccount) -> bool {
        let scope = match security::unlocker_of(target.role) {
            Unlocker::OrganisationManager => match (target.pharmacy_id, target.practice_id) {
                (Some(ph), _) => Scope::Pharmacy(ph),
                (None, Some(pr)) => Scope::Practice(pr),
                _ => return false,
            },
            Unlocker::PlatformOperator => Scope::Platform,
            Unlocker::PatientByDateOfBirth => return false,
        };
        check(actor, Action::ManageStaffAccounts, scope, "account").is_ok() && actor.user_id != target.id
    }

    /// The accounts a manager (their organisation's staff) or an operator (managers and
    /// platform accounts) looks after.
    pub async fn managed_accounts(&self, actor: &Actor) -> AppResult<Vec<ManagedAccount>> {
        use repeatrx_domain::access::Membership;
        if !repeatrx_domain::access::role_permits(actor.role, Action::ManageStaffAccounts) {
            return Err(AppError::Forbidden);
        }
        let scope = match actor.membership {
            Membership::Pharmacy(id) => AccountScope::Pharmacy(id),
            Membership::Practice(id) => AccountScope::Practice(id),
            Membership::Platform => AccountScope::ManagersAndPlatform,
            Membership::Patient { .. } => return Err(AppError::Forbidden),
        };
        let rows = self.store.list_accounts(scope).await?;
        Ok(rows
            .into_iter()
            .filter(|(u, _)| u.role.is_staff())
            .map(|(user, security)| {
                let can_unlock = Self::may_unlock(actor, &user);
                let changes = crate::staff::allowed_changes(actor, &user);
                ManagedAccount { user, security, can_unlock, changes }
            })
            .collect())
    }

    /// A manager unlocks a staff account of their organisation (an operator: a manager's or a
    /// platform account), stating why.
    pub async fn unlock_account(&self, actor: &Actor, target: UserId, reason: &str, client: &Client) -> AppResult<()> {
        if !repeatrx_domain::access::role_permits(actor.role, Action::ManageStaffAccounts) {
            return Err(AppError::Forbidden);
        }
        let user = self.store.user(target).await?.ok_or(AppError::NotFound("account"))?;
        if !Self::may_unlock(actor, &user) {
            return Err(AppError::NotFound("account"));
        }
        let reason = reason.trim();
        if reason.chars().count() < 5 {
            return Err(AppError::InvalidFields(vec![
                "reason: say how you confirmed it is really them (e.g. \"spoke to them in person\")".into(),
            ]));
        }
        self.open_account(&user).await?;
        self.record_event(
            self.security_event(SecurityEventKind::UnlockedByManager, Some(user.id), client)
                .by(actor.user_id)
                .detail(reason.to_string()),
        )
        .await
    }

    // --- password reset -------------------------------------------------------------------

    /// "Forgot password": emails a reset link if the address has an account; nothing otherwise.
    pub async fn request_password_reset(&self, email: &str, client: &Client) -> AppResult<()> {
        let Some(user) = self.user_by_address(email).await? else { return Ok(()) };
        if !user.active || self.sent_lately(&user, TokenPurpose::PasswordReset).await? {
            return Ok(());
        }
        let now = self.clock.now();
        self.store.void_account_tokens(user.id, TokenPurpose::PasswordReset, now).await?;
        let to = user.email.clone();
        let greeting = format!("Dear {},", user.display_name);
        self.issue_link(&user, TokenPurpose::PasswordReset, RESET_LINK_LIFETIME, None, None, |token| {
            OutgoingEmail::new(
                to,
                "Reset your RepeatRx password",
                format!(
                    "{greeting}\n\nTo choose a new password, open this link within 30 minutes:\n\n{}\n\nThe link works \
                     once. Choosing a new password signs you out everywhere else. If you did not ask for this, \
                     ignore this email: your password stays as it is.\n\n{SIGN_OFF}",
                    self.link("reset-password", token)
                ),
                now,
            )
        })
        .await?;
        self.record_event(self.security_event(SecurityEventKind::ResetRequested, Some(user.id), client)).await
    }

    /// Checks that a reset link can still be used (before showing the form).
    pub async fn check_reset_link(&self, token: &str) -> AppResult<()> {
        self.live_link(token, TokenPurpose::PasswordReset).await.map(|_| ())
    }

    /// Sets a new password through a reset link. The link is used up, and every session of the
    /// account ends. A lock stays: only the unlock procedure opens a locked account.
    pub async fn reset_password(&self, token: &str, new_password: &str, client: &Client) -> AppResult<()> {
        let link = self.live_link(token, TokenPurpose::PasswordReset).await?;
        let user = self.store.user(link.user_id).await?.ok_or(AppError::LinkExpired)?;
        let password = self.password_for_user(&user, new_password).await?;
        let hash = hash_password(&password).await?;
        if !self.store.use_account_token(&link.token_hash, self.clock.now()).await? {
            return Err(AppError::LinkExpired);
        }
        self.store.set_password_hash(user.id, &hash).await?;
        self.store.delete_sessions_of_user(user.id).await?;
        self.record_event(self.security_event(SecurityEventKind::PasswordReset, Some(user.id), client)).await?;
        self.notify_password_changed(&user).await
    }

    pub(crate) async fn notify_password_changed(&self, user: &UserAccount) -> AppResult<()> {
        let email = OutgoingEmail::new(
            user.email.clone(),
            "Your RepeatRx password was changed",
            format!(
                "Dear {},\n\nThe password of your RepeatRx account was just changed, and you were signed out \
                 everywhere else. If this was not you, reset your password at once and tell your pharmacy.\n\n{SIGN_OFF}",
                user.display_name
            ),
            self.clock.now(),
        );
        Ok(self.store.enqueue_emails(&[email]).await?)
    }

    // --- email change ---------------------------------------------------------------------

    /// Starts changing the sign-in email: the current password is checked, and both the old and
    /// the new address get a link; the change happens when both are used.
    pub async fn request_email_change(
        &self,
        current: &CurrentSession,
        new_email: &str,
        password: SecretString,
        client: &Client,
    ) -> AppResult<()> {
        let new = Email::parse(new_email).map_err(|e| AppError::InvalidFields(vec![format!("new email: {e}")]))?;
        if new == current.user.email {
            return Err(AppError::InvalidFields(vec!["new email: that is already your email address".into()]));
        }
        if !verify_password(current.user.password_hash.clone(), password).await {
            return Err(AppError::InvalidFields(vec!["current password: that is not your current password".into()]));
        }
        let now = self.clock.now();
        self.store.void_account_tokens(current.user.id, TokenPurpose::EmailChangeOld, now).await?;
        self.store.void_account_tokens(current.user.id, TokenPurpose::EmailChangeNew, now).await?;
        let group = random_token();
        let greeting = format!("Dear {},", current.user.display_name);
        let old_to = current.user.email.clone();
        self.issue_link(
            &current.user,
            TokenPurpose::EmailChangeOld,
            EMAIL_CHANGE_LINK_LIFETIME,
            Some(new.as_str().to_string()),
            Some(group.clone()),
            |token| {
                OutgoingEmail::new(
                    old_to,
                    "Confirm the change of your RepeatRx email address",
                    format!(
                        "{greeting}\n\nSomeone signed in to your account asked to change its email address to {}. \
                         If it was you, confirm here (the new address must confirm too):\n\n{}\n\nIf it was not \
                         you, do not open the link; change your password at once.\n\n{SIGN_OFF}",
                        new.as_str(),
                        self.link("email-change", token)
                    ),
                    now,
                )
            },
        )
        .await?;
        let new_to = new.clone();
        self.issue_link(
            &current.user,
            TokenPurpose::EmailChangeNew,
            EMAIL_CHANGE_LINK_LIFETIME,
            Some(new.as_str().to_string()),
            Some(group),
            |token| {
                OutgoingEmail::new(
                    new_to,
                    "Confirm your new RepeatRx email address",
                    format!(
                        "{greeting}\n\nConfirm that this is the new email address of your RepeatRx account (the old \
                         address must confirm too):\n\n{}\n\n{SIGN_OFF}",
                        self.link("email-change", token)
                    ),
                    now,
                )
            },
        )
        .await?;
        self.record_event(self.security_event(SecurityEventKind::EmailChangeRequested, Some(current.user.id), client))
            .await
    }

    /// Checks that an email-change link can still be used.
    pub async fn check_email_change_link(&self, token: &str) -> AppResult<String> {
        let hash = token_hash(token);
        let t = self.store.account_token(&hash).await?.ok_or(AppError::LinkExpired)?;
        if !matches!(t.purpose, TokenPurpose::EmailChangeOld | TokenPurpose::EmailChangeNew) {
            return Err(AppError::LinkExpired);
        }
        let t = self.live_link(token, t.purpose).await?;
        Ok(t.payload.unwrap_or_default())
    }

    /// Uses one of the two links of an email change; the second one makes the change.
    pub async fn confirm_email_change(&self, token: &str, client: &Client) -> AppResult<EmailChangeProgress> {
        self.check_email_change_link(token).await?;
        let hash = token_hash(token);
        let now = self.clock.now();
        let link = self.store.account_token(&hash).await?.ok_or(AppError::LinkExpired)?;
        if !self.store.use_account_token(&hash, now).await? {
            return Err(AppError::LinkExpired);
        }
        let group = link.grouping.clone().unwrap_or_default();
        let all = self.store.grouped_tokens(&group).await?;
        if all.len() != 2 || all.iter().any(|t| t.used_at.is_none()) {
            return Ok(EmailChangeProgress::WaitingForOther);
        }
        if all.iter().any(|t| t.expires_at <= now && t.token_hash != hash && t.used_at.is_none()) {
            return Err(AppError::LinkExpired);
        }
        let new = Email::parse(link.payload.as_deref().unwrap_or_default()).map_err(|_| AppError::LinkExpired)?;
        let user = self.store.user(link.user_id).await?.ok_or(AppError::LinkExpired)?;
        self.store.set_user_email(user.id, &new).await.map_err(|e| match e {
            repeatrx_store::StoreError::Conflict(_) => {
                AppError::Conflict("that email address cannot be used for this account".into())
            }
            other => other.into(),
        })?;
        self.record_event(
            self.security_event(SecurityEventKind::EmailChanged, Some(user.id), client)
                .detail("confirmed from the old and the new address"),
        )
        .await?;
        Ok(EmailChangeProgress::Changed(new))
    }
}
