//! The accounts a manager looks after: a pharmacy or practice manager's staff, and for platform
//! operators the managers and platform accounts. Shows each account's sign-in protection and
//! lets the manager lift a lock after confirming who is asking, with the reason recorded.
use super::account::field_problems;
use super::patient::{is_form_error, parse_id, require, see_other, with_status, FormData, Problem};
use super::{render, Nav, PageResult};
use crate::error::status_of;
use crate::session::{ClientInfo, Signed};
use crate::WebState;
use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::routing::{get, post};
use axum::Router;
use repeatrx_app::auth::{Client, CurrentSession};
use repeatrx_app::recovery::ManagedAccount;
use repeatrx_app::staff::InviteInput;
use repeatrx_domain::access::{assignable_roles, OrgKind};
use repeatrx_domain::ids::UserId;

pub fn routes() -> Router<WebState> {
    Router::new()
        .merge(area_routes(Area::Pharmacy))
        .merge(area_routes(Area::Practice))
        .merge(area_routes(Area::Platform))
}

/// The list and invitation form at the area's base, and one POST per change of an account.
fn area_routes(area: Area) -> Router<WebState> {
    let change = move |verb: Verb| {
        post(
            move |State(state): State<WebState>,
                  Signed(s): Signed,
                  ClientInfo(client): ClientInfo,
                  Path(id): Path<String>,
                  body: Bytes| async move { act(&state, &s, &client, &id, &body, area, verb).await },
        )
    };
    Router::new()
        .route(
            area.base(),
            get(move |State(state): State<WebState>, Signed(s): Signed, RawQuery(q): RawQuery| async move {
                list(&state, &s, q, area).await
            })
            .post(move |State(state): State<WebState>, Signed(s): Signed, body: Bytes| async move {
                invite(&state, &s, &body, area).await
            }),
        )
        .route(&format!("{}/{{id}}/unlock", area.accounts()), change(Verb::Unlock))
        .route(&format!("{}/{{id}}/role", area.accounts()), change(Verb::Role))
        .route(&format!("{}/{{id}}/suspend", area.accounts()), change(Verb::Suspend))
        .route(&format!("{}/{{id}}/reinstate", area.accounts()), change(Verb::Reinstate))
}

/// What a form on a row of the list does to its account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Unlock,
    Role,
    Suspend,
    Reinstate,
}

impl Verb {
    fn as_str(self) -> &'static str {
        match self {
            Verb::Unlock => "unlock",
            Verb::Role => "role",
            Verb::Suspend => "suspend",
            Verb::Reinstate => "reinstate",
        }
    }
}

/// Which dashboard the page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Area {
    Pharmacy,
    Practice,
    Platform,
}

impl Area {
    fn base(self) -> &'static str {
        match self {
            Area::Pharmacy => "/pharmacy/staff",
            Area::Practice => "/practice/staff",
            Area::Platform => "/admin/accounts",
        }
    }

    fn kind(self) -> OrgKind {
        match self {
            Area::Pharmacy => OrgKind::Pharmacy,
            Area::Practice => OrgKind::Practice,
            Area::Platform => OrgKind::Platform,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Area::Pharmacy | Area::Practice => "Staff accounts",
            Area::Platform => "Manager and platform accounts",
        }
    }

    fn intro(self) -> &'static str {
        match self {
            Area::Pharmacy => {
                "The accounts of your pharmacy's staff. An account locks after six failed sign-ins in a \
                 row; only you can unlock it, after making sure it is really them asking."
            }
            Area::Practice => {
                "The accounts of your practice's staff. An account locks after six failed sign-ins in a \
                 row; only you can unlock it, after making sure it is really them asking."
            }
            Area::Platform => {
                "The accounts of pharmacy and practice managers and of the platform team. An account \
                 locks after six failed sign-ins in a row; a platform operator unlocks it, after making sure it is \
                 really them asking."
            }
        }
    }

    /// Where the accounts' own paths start.
    fn accounts(self) -> &'static str {
        match self {
            Area::Pharmacy => "/pharmacy/staff/accounts",
            Area::Practice => "/practice/staff/accounts",
            Area::Platform => "/admin/accounts",
        }
    }

    fn path(self, id: UserId, verb: Verb) -> String {
        format!("{}/{id}/{}", self.accounts(), verb.as_str())
    }
}

struct AccountRow {
    id: String,
    name: String,
    email: String,
    role: &'static str,
    lock: &'static str,
    locked: bool,
    active: bool,
    /// Invited, and has not chosen a password yet.
    invited: bool,
    failed_sign_ins: u32,
    second_factor: bool,
    unlock_action: Option<String>,
    /// (value, label, selected) of the roles the account can be given, its own first.
    role_options: Vec<(&'static str, &'static str, bool)>,
    role_action: Option<String>,
    suspend_action: Option<String>,
    reinstate_action: Option<String>,
    reason: String,
    invalid: bool,
}

/// The invitation form: what was typed.
#[derive(Default)]
struct InviteForm {
    name: String,
    email: String,
    role: String,
}

#[derive(Template)]
#[template(path = "staff_accounts.html")]
struct StaffPage {
    nav: Option<Nav>,
    flash: Option<String>,
    csrf: String,
    title: &'static str,
    intro: &'static str,
    accounts: Vec<AccountRow>,
    problems: Vec<Problem>,
    invite_action: &'static str,
    invite_roles: Vec<(&'static str, &'static str)>,
    invite: InviteForm,
}

/// A failed form: the account (none for the invitation), what was typed and what was wrong.
#[derive(Default)]
struct Failed {
    id: Option<UserId>,
    reason: String,
    invite: InviteForm,
    problems: Vec<Problem>,
}

fn row(area: Area, a: &ManagedAccount, failed: Option<&Failed>) -> AccountRow {
    let locked = a.security.lock_state.is_locked();
    let this = failed.filter(|f| f.id == Some(a.user.id));
    let id = a.user.id;
    let mut role_options = vec![(a.user.role.as_str(), a.user.role.label(), true)];
    role_options.extend(a.changes.roles.iter().map(|r| (r.as_str(), r.label(), false)));
    AccountRow {
        id: id.to_string(),
        name: a.user.display_name.clone(),
        email: a.user.email.to_string(),
        role: a.user.role.label(),
        lock: a.security.lock_state.label(),
        locked,
        active: a.user.active,
        invited: a.user.password_hash == repeatrx_app::staff::INVITED,
        failed_sign_ins: a.security.failed_sign_ins,
        second_factor: a.security.totp_secret.is_some(),
        unlock_action: (locked && a.can_unlock).then(|| area.path(id, Verb::Unlock)),
        role_options,
        role_action: (!a.changes.roles.is_empty()).then(|| area.path(id, Verb::Role)),
        suspend_action: a.changes.suspend.then(|| area.path(id, Verb::Suspend)),
        reinstate_action: a.changes.reinstate.then(|| area.path(id, Verb::Reinstate)),
        reason: this.map(|f| f.reason.clone()).unwrap_or_default(),
        invalid: this.is_some(),
    }
}

/// The sentence for a `?notice=` key of this page (never the query text itself).
fn staff_notice(q: &FormData) -> Option<String> {
    let text = match q.get("notice") {
        "unlocked" => "The account is unlocked: its owner can sign in again.",
        "invited" => "The invitation has been emailed. Its link works for 72 hours.",
        "role" => "The role has been changed. It applies from their next click.",
        "suspended" => "The account is suspended: it cannot sign in, and its sessions have ended.",
        "reinstated" => "The account is reinstated: its owner can sign in again.",
        _ => return None,
    };
    Some(text.into())
}

async fn list(state: &WebState, s: &CurrentSession, q: Option<String>, area: Area) -> PageResult {
    page(state, s, area, staff_notice(&FormData::from_query(q)), None).await
}

async fn page(
    state: &WebState,
    s: &CurrentSession,
    area: Area,
    flash: Option<String>,
    failed: Option<Failed>,
) -> PageResult {
    require(s, area.kind())?;
    let accounts = state.app.managed_accounts(&s.actor).await?;
    let failed = failed.unwrap_or_default();
    let page = StaffPage {
        nav: Nav::of(s),
        flash,
        csrf: s.session.csrf_token.clone(),
        title: area.title(),
        intro: area.intro(),
        accounts: accounts.iter().map(|a| row(area, a, Some(&failed))).collect(),
        invite_action: area.base(),
        invite_roles: assignable_roles(s.actor.role).iter().map(|r| (r.as_str(), r.label())).collect(),
        invite: failed.invite,
        problems: failed.problems,
    };
    render(&page)
}

async fn invite(state: &WebState, s: &CurrentSession, body: &[u8], area: Area) -> PageResult {
    require(s, area.kind())?;
    let form = FormData::parse(body);
    let input =
        InviteInput { name: form.kept("name", 100), email: form.kept("email", 254), role: form.kept("role", 40) };
    match state.app.invite_staff(&s.actor, &input).await {
        Ok(_) => Ok(see_other(&format!("{}?notice=invited", area.base()))),
        Err(e) if is_form_error(&e) => {
            let status = status_of(&e).0;
            let fields = [
                ("name", "Name", "invite-name"),
                ("email", "Email address", "invite-email"),
                ("role", "Role", "invite-role"),
            ];
            let failed = Failed {
                problems: field_problems(&e, &fields),
                invite: InviteForm { name: input.name, email: input.email, role: input.role },
                ..Failed::default()
            };
            Ok(with_status(page(state, s, area, None, Some(failed)).await?, status))
        }
        Err(e) => Err(e.into()),
    }
}

async fn act(
    state: &WebState,
    s: &CurrentSession,
    client: &Client,
    id: &str,
    body: &[u8],
    area: Area,
    verb: Verb,
) -> PageResult {
    require(s, area.kind())?;
    let id: UserId = parse_id(id, "account")?;
    let form = FormData::parse(body);
    let reason = form.kept("reason", 500);
    let (done, notice) = match verb {
        Verb::Unlock => (state.app.unlock_account(&s.actor, id, &reason, client).await, "unlocked"),
        Verb::Role => (state.app.change_account_role(&s.actor, id, form.get("role")).await, "role"),
        Verb::Suspend => (state.app.suspend_account(&s.actor, id, &reason).await, "suspended"),
        Verb::Reinstate => (state.app.reinstate_account(&s.actor, id).await, "reinstated"),
    };
    match done {
        Ok(()) => Ok(see_other(&format!("{}?notice={notice}", area.base()))),
        Err(e) if is_form_error(&e) => {
            let status = status_of(&e).0;
            let reason_id = format!("{}-reason-{id}", verb.as_str());
            let role_id = format!("role-{id}");
            let fields = [("reason", "Reason", reason_id.as_str()), ("role", "Role", role_id.as_str())];
            let failed = Failed { id: Some(id), reason, problems: field_problems(&e, &fields), ..Failed::default() };
            Ok(with_status(page(state, s, area, None, Some(failed)).await?, status))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_area_changes_accounts_under_its_own_page() {
        let id = UserId::new();
        assert_eq!(Area::Pharmacy.path(id, Verb::Unlock), format!("/pharmacy/staff/accounts/{id}/unlock"));
        assert_eq!(Area::Practice.path(id, Verb::Role), format!("/practice/staff/accounts/{id}/role"));
        assert_eq!(Area::Platform.path(id, Verb::Suspend), format!("/admin/accounts/{id}/suspend"));
        assert_eq!(Area::Platform.kind(), OrgKind::Platform);
    }

    #[test]
    fn only_the_fixed_notices_are_shown() {
        let n = |q: &str| staff_notice(&FormData::from_query(Some(q.into())));
        for key in ["unlocked", "invited", "role", "suspended", "reinstated"] {
            assert!(n(&format!("notice={key}")).is_some(), "{key}");
        }
        assert_eq!(n("notice=%3Cscript%3E"), None);
    }
}
