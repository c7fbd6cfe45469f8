//! Managers look after their organisation's accounts: they invite colleagues (who get an emailed
//! link to choose their own password, so nobody else ever knows it), change roles, suspend and
//! reinstate. Operators do the same for the platform team, including the live-data custodians, of
//! whom at most two may exist (P8), and suspend or reinstate organisations' managers. Every act
//! goes to the audit trail. Which change is allowed is decided by
//! [`repeatrx_domain::access::may_change_account`].
use crate::auth::{hash_password, random_token, token_hash, Client};
use crate::error::{AppError, AppResult};
use crate::App;
use repeatrx_domain::access::{
    assignable_roles, may_change_account, role_cap, role_permits, Action, Actor, Membership, Role, StaffChange,
    MAX_CUSTODIANS,
};
use repeatrx_domain::ids::UserId;
use repeatrx_domain::security::INVITATION_LINK_LIFETIME;
use repeatrx_domain::text::{required_line, Email};
use repeatrx_store::{AccountToken, OutgoingEmail, StoreError, TokenPurpose, UserAccount};
use serde::Deserialize;

/// The password hash of an invited account that has not chosen its password yet: not a PHC
/// string, so no password ever matches it.
pub const INVITED: &str = "!invited";

/// A manager's invitation form.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct InviteInput {
    pub name: String,
    pub email: String,
    pub role: String,
}

/// What a manager may do to one of the accounts they look after.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedChanges {
    /// The roles the account can be moved to.
    pub roles: Vec<Role>,
    pub suspend: bool,
    pub reinstate: bool,
}

/// The membership a staff account's organisation gives it.
fn membership_of(user: &UserAccount) -> Option<Membership> {
    match (user.role.kind(), user.pharmacy_id, user.practice_id) {
        (repeatrx_domain::access::OrgKind::Pharmacy, Some(id), _) => Some(Membership::Pharmacy(id)),
        (repeatrx_domain::access::OrgKind::Practice, _, Some(id)) => Some(Membership::Practice(id)),
        (repeatrx_domain::access::OrgKind::Platform, _, _) => Some(Membership::Platform),
        _ => None,
    }
}

/// Whether the account is one the actor looks after at all (and so may learn exists).
pub(crate) fn looks_after(actor: &Actor, user: &UserAccount) -> bool {
    let Some(membership) = membership_of(user) else { return false };
    match (actor.role, actor.membership, membership) {
        (Role::PharmacyManager, Membership::Pharmacy(a), Membership::Pharmacy(b)) => a == b,
        (Role::PracticeManager, Membership::Practice(a), Membership::Practice(b)) => a == b,
        (Role::Operator, Membership::Platform, _) => {
            membership == Membership::Platform || matches!(user.role, Role::PharmacyManager | Role::PracticeManager)
        }
        _ => false,
    }
}

/// The changes the actor may make to an account.
pub fn allowed_changes(actor: &Actor, user: &UserAccount) -> AllowedChanges {
    let Some(membership) = membership_of(user) else { return AllowedChanges::default() };
    let may = |change| may_change_account(actor, user.id, user.role, membership, change);
    AllowedChanges {
        roles: assignable_roles(actor.role).iter().copied().filter(|r| may(StaffChange::Role(*r))).collect(),
        suspend: user.active && may(StaffChange::Suspend),
        reinstate: !user.active && may(StaffChange::Reinstate),
    }
}

fn cap_reached(role: Role) -> AppError {
    if role == Role::Custodian {
        AppError::Conflict(format!(
            "at most {MAX_CUSTODIANS} live-data custodian accounts may exist, and there are {MAX_CUSTODIANS} already"
        ))
    } else {
        AppError::Conflict(format!("no more {} accounts may be made", role.label().to_lowercase()))
    }
}

impl App {
    /// Invites a colleague: creates their account (which cannot sign in until they choose a
    /// password) and emails them a link valid for 72 hours.
    pub async fn invite_staff(&self, actor: &Actor, input: &InviteInput) -> AppResult<UserAccount> {
        if !role_permits(actor.role, Action::ManageStaffAccounts) {
            return Err(AppError::Forbidden);
        }
        let assignable = assignable_roles(actor.role);
        let mut problems = Vec::new();
        let name = required_line("name", &input.name, 100).map_err(|e| problems.push(e.to_string())).ok();
        let email = Email::parse(&input.email).map_err(|e| problems.push(format!("email: {e}"))).ok();
        let role = match Role::parse(input.role.trim()) {
            Ok(r) if assignable.contains(&r) => Some(r),
            _ => {
                let names: Vec<_> = assignable.iter().map(|r| r.label().to_lowercase()).collect();
                problems.push(format!("role: choose one of: {}", names.join(", ")));
                None
            }
        };
        let (Some(name), Some(email), Some(role)) = (name, email, role) else {
            return Err(AppError::InvalidFields(problems));
        };
        let (pharmacy_id, practice_id, organisation) = match actor.membership {
            Membership::Pharmacy(id) => {
                (Some(id), None, self.store.pharmacy(id).await?.map(|p| p.name).unwrap_or_default())
            }
            Membership::Practice(id) => {
                (None, Some(id), self.store.practice(id).await?.map(|p| p.name).unwrap_or_default())
            }
            Membership::Platform => (None, None, "the RepeatRx platform team".to_string()),
            Membership::Patient { .. } => return Err(AppError::Forbidden),
        };
        let now = self.clock.now();
        let user = UserAccount {
            id: UserId::new(),
            email: email.clone(),
            display_name: name.clone(),
            role,
            pharmacy_id,
            practice_id,
            patient_id: None,
            password_hash: INVITED.into(),
            active: true,
            created_at: now,
        };
        let inviter = self.store.user(actor.user_id).await?.map(|u| u.display_name).unwrap_or_default();
        let lead =
            format!("{inviter} has invited you to RepeatRx as {} at {organisation}.", role.label().to_lowercase());
        let (link, message) = self.invitation_for(&user, &lead);
        match self.store.invite_user(&user, &link, &[message], role_cap(role)).await {
            Ok(true) => {}
            Ok(false) => return Err(cap_reached(role)),
            Err(StoreError::Conflict(_)) => {
                return Err(AppError::InvalidFields(vec!["email: this address already has a RepeatRx account".into()]))
            }
            Err(e) => return Err(e.into()),
        }
        self.audit_act(actor, "account.invite", None, format!("{} invited as {}", user.id, role.as_str())).await?;
        Ok(user)
    }

    /// An invitation link for a new account and the email that carries it, valid for 72 hours;
    /// `lead` is the email's first sentence (who invites them, to do what).
    pub(crate) fn invitation_for(&self, user: &UserAccount, lead: &str) -> (AccountToken, OutgoingEmail) {
        let now = self.clock.now();
        let token = random_token();
        let link = AccountToken {
            token_hash: token_hash(&token),
            user_id: user.id,
            purpose: TokenPurpose::Invitation,
            payload: None,
            grouping: None,
            created_at: now,
            expires_at: now + INVITATION_LINK_LIFETIME,
            used_at: None,
        };
        let message = OutgoingEmail::new(
            user.email.clone(),
            "You are invited to RepeatRx",
            format!(
                "Dear {},\n\n{lead} To choose your password, open this link within 72 hours:\n\n{}\n\nThe link works \
                 once.{} If you did not expect this, ignore this email.\n\nRepeatRx",
                user.display_name,
                self.link("invitation", &token),
                if user.role.is_staff() {
                    " When you first sign in you will set up an authenticator app on your phone."
                } else {
                    ""
                }
            ),
            now,
        );
        (link, message)
    }

    /// The invited person's name, for the page behind a live invitation link.
    pub async fn invitation(&self, token: &str) -> AppResult<UserAccount> {
        let link = self.live_link(token, TokenPurpose::Invitation).await?;
        self.store.user(link.user_id).await?.filter(|u| u.active).ok_or(AppError::LinkExpired)
    }

    /// The invited colleague chooses their password; the link is used up.
    pub async fn accept_invitation(&self, token: &str, new_password: &str, client: &Client) -> AppResult<UserAccount> {
        let link = self.live_link(token, TokenPurpose::Invitation).await?;
        let user = self.store.user(link.user_id).await?.filter(|u| u.active).ok_or(AppError::LinkExpired)?;
        let password = self.password_for_user(&user, new_password).await?;
        let hash = hash_password(&password).await?;
        if !self.store.use_account_token(&link.token_hash, self.clock.now()).await? {
            return Err(AppError::LinkExpired);
        }
        self.store.set_password_hash(user.id, &hash).await?;
        let mut actor = self.actor_of(&user).await?;
        actor.address = client.address.parse().ok();
        self.audit_act(&actor, "account.invitation_accepted", None, "").await?;
        Ok(user)
    }

    /// Loads an account the actor looks after; any other is not found.
    async fn looked_after(&self, actor: &Actor, target: UserId) -> AppResult<UserAccount> {
        if !role_permits(actor.role, Action::ManageStaffAccounts) {
            return Err(AppError::Forbidden);
        }
        self.store.user(target).await?.filter(|u| looks_after(actor, u)).ok_or(AppError::NotFound("account"))
    }

    /// Gives an account another role. A third custodian is refused.
    pub async fn change_account_role(&self, actor: &Actor, target: UserId, role: &str) -> AppResult<()> {
        let user = self.looked_after(actor, target).await?;
        let role = Role::parse(role.trim()).map_err(|_| AppError::InvalidFields(vec!["role: choose a role".into()]))?;
        if user.id == actor.user_id {
            return Err(AppError::Conflict("you cannot change your own role; ask another manager".into()));
        }
        if !allowed_changes(actor, &user).roles.contains(&role) {
            return Err(AppError::InvalidFields(vec![format!(
                "role: you cannot make this account a {}",
                role.label().to_lowercase()
            )]));
        }
        if !self.store.set_user_role(user.id, role, role_cap(role)).await? {
            return Err(cap_reached(role));
        }
        self.audit_act(actor, "account.role", None, format!("{}: {} -> {}", user.id, user.role.as_str(), role.as_str()))
            .await
    }

    /// Suspends an account: it cannot sign in and its sessions end at once. The reason is recorded.
    pub async fn suspend_account(&self, actor: &Actor, target: UserId, reason: &str) -> AppResult<()> {
        let user = self.looked_after(actor, target).await?;
        if user.id == actor.user_id {
            return Err(AppError::Conflict("you cannot suspend your own account".into()));
        }
        if !user.active {
            return Err(AppError::Conflict("this account is suspended already".into()));
        }
        if !allowed_changes(actor, &user).suspend {
            return Err(AppError::Forbidden);
        }
        let reason = reason.trim();
        if reason.chars().count() < 5 {
            return Err(AppError::InvalidFields(vec!["reason: say why the account is suspended".into()]));
        }
        self.store.set_user_active(user.id, false).await?;
        self.audit_act(actor, "account.suspend", None, format!("{}: {reason}", user.id)).await
    }

    /// Lets a suspended account sign in again.
    pub async fn reinstate_account(&self, actor: &Actor, target: UserId) -> AppResult<()> {
        let user = self.looked_after(actor, target).await?;
        if user.active {
            return Err(AppError::Conflict("this account is not suspended".into()));
        }
        if !allowed_changes(actor, &user).reinstate {
            return Err(AppError::Forbidden);
        }
        self.store.set_user_active(user.id, true).await?;
        self.audit_act(actor, "account.reinstate", None, user.id.to_string()).await
    }
}
