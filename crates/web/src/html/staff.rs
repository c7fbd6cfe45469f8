//! The accounts a manager looks after: a pharmacy or practice manager's staff, and for platform
//! operators the managers and platform accounts. Shows each account's sign-in protection and
//! lets the manager lift a lock after confirming who is asking, with the reason recorded.
use super::account::field_problems;
use super::patient::{parse_id, require, see_other, with_status, FormData, Problem};
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
use repeatrx_app::AppError;
use repeatrx_domain::access::OrgKind;
use repeatrx_domain::ids::UserId;

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/pharmacy/staff", get(pharmacy_list))
        .route("/pharmacy/staff/accounts/{id}/unlock", post(pharmacy_unlock))
        .route("/practice/staff", get(practice_list))
        .route("/practice/staff/accounts/{id}/unlock", post(practice_unlock))
        .route("/admin/accounts", get(platform_list))
        .route("/admin/accounts/{id}/unlock", post(platform_unlock))
}

async fn pharmacy_list(State(state): State<WebState>, Signed(s): Signed, RawQuery(q): RawQuery) -> PageResult {
    list(&state, &s, q, Area::Pharmacy).await
}

async fn practice_list(State(state): State<WebState>, Signed(s): Signed, RawQuery(q): RawQuery) -> PageResult {
    list(&state, &s, q, Area::Practice).await
}

async fn platform_list(State(state): State<WebState>, Signed(s): Signed, RawQuery(q): RawQuery) -> PageResult {
    list(&state, &s, q, Area::Platform).await
}

async fn pharmacy_unlock(
    State(state): State<WebState>,
    Signed(s): Signed,
    ClientInfo(client): ClientInfo,
    Path(id): Path<String>,
    body: Bytes,
) -> PageResult {
    unlock(&state, &s, &client, &id, &body, Area::Pharmacy).await
}

async fn practice_unlock(
    State(state): State<WebState>,
    Signed(s): Signed,
    ClientInfo(client): ClientInfo,
    Path(id): Path<String>,
    body: Bytes,
) -> PageResult {
    unlock(&state, &s, &client, &id, &body, Area::Practice).await
}

async fn platform_unlock(
    State(state): State<WebState>,
    Signed(s): Signed,
    ClientInfo(client): ClientInfo,
    Path(id): Path<String>,
    body: Bytes,
) -> PageResult {
    unlock(&state, &s, &client, &id, &body, Area::Platform).await
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

    fn unlock_path(self, id: UserId) -> String {
        match self {
            Area::Platform => format!("/admin/accounts/{id}/unlock"),
            _ => format!("{}/accounts/{id}/unlock", self.base()),
        }
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
    failed_sign_ins: u32,
    second_factor: bool,
    unlock_action: Option<String>,
    reason: String,
    invalid: bool,
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
}

/// A failed unlock form: the account, what was typed and what was wrong.
struct Failed {
    id: UserId,
    reason: String,
    problems: Vec<Problem>,
}

fn row(area: Area, a: &ManagedAccount, failed: Option<&Failed>) -> AccountRow {
    let locked = a.security.lock_state.is_locked();
    let this = failed.filter(|f| f.id == a.user.id);
    AccountRow {
        id: a.user.id.to_string(),
        name: a.user.display_name.clone(),
        email: a.user.email.to_string(),
        role: a.user.role.label(),
        lock: a.security.lock_state.label(),
        locked,
        active: a.user.active,
        failed_sign_ins: a.security.failed_sign_ins,
        second_factor: a.security.totp_secret.is_some(),
        unlock_action: (locked && a.can_unlock).then(|| area.unlock_path(a.user.id)),
        reason: this.map(|f| f.reason.clone()).unwrap_or_default(),
        invalid: this.is_some(),
    }
}

/// The sentence for a `?notice=` key of this page (never the query text itself).
fn staff_notice(q: &FormData) -> Option<String> {
    match q.get("notice") {
        "unlocked" => Some("The account is unlocked: its owner can sign in again.".into()),
        _ => None,
    }
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
    let page = StaffPage {
        nav: Nav::of(s),
        flash,
        csrf: s.session.csrf_token.clone(),
        title: area.title(),
        intro: area.intro(),
        accounts: accounts.iter().map(|a| row(area, a, failed.as_ref())).collect(),
        problems: failed.map(|f| f.problems).unwrap_or_default(),
    };
    render(&page)
}

async fn unlock(
    state: &WebState,
    s: &CurrentSession,
    client: &Client,
    id: &str,
    body: &[u8],
    area: Area,
) -> PageResult {
    require(s, area.kind())?;
    let id: UserId = parse_id(id, "account")?;
    let form = FormData::parse(body);
    let reason = form.kept("reason", 500);
    match state.app.unlock_account(&s.actor, id, &reason, client).await {
        Ok(()) => Ok(see_other(&format!("{}?notice=unlocked", area.base()))),
        Err(e @ (AppError::Invalid(_) | AppError::InvalidFields(_) | AppError::Conflict(_))) => {
            let status = status_of(&e).0;
            let fields = [("reason", "Reason", format!("reason-{id}"))];
            let fields: Vec<(&str, &str, &str)> = fields.iter().map(|(k, l, i)| (*k, *l, i.as_str())).collect();
            let failed = Failed { id, reason, problems: field_problems(&e, &fields) };
            Ok(with_status(page(state, s, area, None, Some(failed)).await?, status))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_area_unlocks_under_its_own_page() {
        let id = UserId::new();
        assert_eq!(Area::Pharmacy.unlock_path(id), format!("/pharmacy/staff/accounts/{id}/unlock"));
        assert_eq!(Area::Practice.unlock_path(id), format!("/practice/staff/accounts/{id}/unlock"));
        assert_eq!(Area::Platform.unlock_path(id), format!("/admin/accounts/{id}/unlock"));
        assert_eq!(Area::Platform.kind(), OrgKind::Platform);
    }

    #[test]
    fn only_the_fixed_notice_is_shown() {
        let n = |q: &str| staff_notice(&FormData::from_query(Some(q.into())));
        assert!(n("notice=unlocked").is_some());
        assert_eq!(n("notice=%3Cscript%3E"), None);
    }
}
