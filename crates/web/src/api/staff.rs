//! The accounts a manager looks after (an operator: the platform team and organisations'
//! managers): list, invite, change role, suspend, reinstate, unlock. Same rules as the staff pages.
use super::{created, path_id, ApiJson, ApiPath, ApiResult, Created};
use crate::error::ErrorBody;
use crate::session::{ApiCaller, ClientInfo};
use crate::WebState;
use axum::extract::State;
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use repeatrx_app::recovery::ManagedAccount;
use repeatrx_app::staff::{InviteInput, INVITED};
use repeatrx_app::AppError;
use repeatrx_domain::ids::UserId;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/staff", get(list).post(invite))
        .route("/staff/{id}", patch(change))
        .route("/staff/{id}/unlock", post(unlock))
}

#[derive(OpenApi)]
#[openapi(
    paths(list, invite, change, unlock),
    components(schemas(StaffAccountDto, InviteRequest, ChangeRequest, UnlockRequest))
)]
pub struct StaffApi;

/// An account its manager looks after.
#[derive(Serialize, ToSchema)]
pub struct StaffAccountDto {
    pub id: String,
    pub name: String,
    pub email: String,
    /// e.g. `pharmacist`, `custodian`.
    pub role: String,
    /// False while suspended.
    pub active: bool,
    /// Invited and has not chosen a password yet.
    pub invited: bool,
    /// `open`, `locked` or `identity_locked`.
    pub lock: String,
    pub failed_sign_ins: u32,
    pub second_factor: bool,
    /// What the caller may do to it: roles it can be given, and whether it can be unlocked,
    /// suspended or reinstated.
    pub roles_allowed: Vec<String>,
    pub can_unlock: bool,
    pub can_suspend: bool,
    pub can_reinstate: bool,
}

impl From<&ManagedAccount> for StaffAccountDto {
    fn from(a: &ManagedAccount) -> Self {
        Self {
            id: a.user.id.to_string(),
            name: a.user.display_name.clone(),
            email: a.user.email.to_string(),
            role: a.user.role.as_str().into(),
            active: a.user.active,
            invited: a.user.password_hash == INVITED,
            lock: a.security.lock_state.as_str().into(),
            failed_sign_ins: a.security.failed_sign_ins,
            second_factor: a.security.totp_secret.is_some(),
            roles_allowed: a.changes.roles.iter().map(|r| r.as_str().to_string()).collect(),
            can_unlock: a.security.lock_state.is_locked() && a.can_unlock,
            can_suspend: a.changes.suspend,
            can_reinstate: a.changes.reinstate,
        }
    }
}

/// A colleague to invite: they get an emailed link (72 hours) to choose their password.
#[derive(Deserialize, ToSchema)]
pub struct InviteRequest {
    pub name: String,
    pub email: String,
    /// One of the roles the caller may give, e.g. `dispenser`.
    pub role: String,
}

/// A change to an account: a new role, and/or `active: false` (suspend, with a `reason`) or
/// `active: true` (reinstate).
#[derive(Deserialize, ToSchema)]
pub struct ChangeRequest {
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub active: Option<bool>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// How the manager confirmed who is asking for the unlock (recorded).
#[derive(Deserialize, ToSchema)]
pub struct UnlockRequest {
    pub reason: String,
}

async fn one(
    state: &WebState,
    s: &repeatrx_app::auth::CurrentSession,
    id: UserId,
) -> Result<StaffAccountDto, AppError> {
    let accounts = state.app.managed_accounts(&s.actor).await?;
    accounts.iter().find(|a| a.user.id == id).map(StaffAccountDto::from).ok_or(AppError::NotFound("account"))
}

/// The accounts the caller looks after.
#[utoipa::path(get, path = "/staff", tag = "staff", security(("bearer" = [])),
    responses(
        (status = 200, body = Vec<StaffAccountDto>),
        (status = 401, body = ErrorBody, description = "Not signed in"),
        (status = 403, body = ErrorBody, description = "Not a manager or operator"),
    ))]
async fn list(State(state): State<WebState>, ApiCaller(s): ApiCaller) -> ApiResult<Vec<StaffAccountDto>> {
    let accounts = state.app.managed_accounts(&s.actor).await?;
    Ok(Json(accounts.iter().map(StaffAccountDto::from).collect()))
}

/// Invites a colleague; the invitation is emailed.
#[utoipa::path(post, path = "/staff", tag = "staff", security(("bearer" = [])),
    request_body = InviteRequest,
    responses(
        (status = 201, body = StaffAccountDto),
        (status = 401, body = ErrorBody, description = "Not signed in"),
        (status = 403, body = ErrorBody, description = "Not a manager or operator"),
        (status = 409, body = ErrorBody, description = "Two live-data custodians exist already"),
        (status = 422, body = ErrorBody, description = "A field is missing or invalid, or the role cannot be given"),
    ))]
async fn invite(
    State(state): State<WebState>,
    ApiCaller(s): ApiCaller,
    ApiJson(body): ApiJson<InviteRequest>,
) -> Created<StaffAccountDto> {
    let input = InviteInput { name: body.name, email: body.email, role: body.role };
    let user = state.app.invite_staff(&s.actor, &input).await?;
    created(one(&state, &s, user.id).await?)
}

/// Changes an account's role, suspends or reinstates it.
#[utoipa::path(patch, path = "/staff/{id}", tag = "staff", security(("bearer" = [])),
    request_body = ChangeRequest,
    params(("id" = String, Path, description = "Account id")),
    responses(
        (status = 200, body = StaffAccountDto),
        (status = 401, body = ErrorBody, description = "Not signed in"),
        (status = 403, body = ErrorBody, description = "Not a manager or operator"),
        (status = 404, body = ErrorBody, description = "Not an account the caller looks after"),
        (status = 409, body = ErrorBody, description = "Own account, already in that state, or custodian cap"),
        (status = 422, body = ErrorBody, description = "Nothing to change, or a role that cannot be given"),
    ))]
async fn change(
    State(state): State<WebState>,
    ApiCaller(s): ApiCaller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ChangeRequest>,
) -> ApiResult<StaffAccountDto> {
    let id: UserId = path_id(&id, "account")?;
    if body.role.is_none() && body.active.is_none() {
        return Err(AppError::InvalidFields(vec!["role: give a new role, or active: true or false".into()]).into());
    }
    if let Some(role) = &body.role {
        state.app.change_account_role(&s.actor, id, role).await?;
    }
    match body.active {
        Some(false) => state.app.suspend_account(&s.actor, id, body.reason.as_deref().unwrap_or("")).await?,
        Some(true) => state.app.reinstate_account(&s.actor, id).await?,
        None => {}
    }
    Ok(Json(one(&state, &s, id).await?))
}

/// Lifts a sign-in lock after confirming who is asking.
#[utoipa::path(post, path = "/staff/{id}/unlock", tag = "staff", security(("bearer" = [])),
    request_body = UnlockRequest,
    params(("id" = String, Path, description = "Account id")),
    responses(
        (status = 200, body = StaffAccountDto),
        (status = 401, body = ErrorBody, description = "Not signed in"),
        (status = 404, body = ErrorBody, description = "Not an account the caller may unlock"),
        (status = 422, body = ErrorBody, description = "No reason given"),
    ))]
async fn unlock(
    State(state): State<WebState>,
    ApiCaller(s): ApiCaller,
    ClientInfo(client): ClientInfo,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UnlockRequest>,
) -> ApiResult<StaffAccountDto> {
    let id: UserId = path_id(&id, "account")?;
    state.app.unlock_account(&s.actor, id, &body.reason, &client).await?;
    Ok(Json(one(&state, &s, id).await?))
}
