//! The caller's own account: open sessions (and signing them out), sign-in activity, password,
//! recovery codes and email address; and, open to anyone, the requests for a password-reset or
//! unlock email and the password strength estimate behind the strength meter.
//!
//! The reset and unlock requests answer 202 with the same body whatever the address, at once: the
//! work happens in the background, so neither the answer nor its timing says whether an account
//! exists.
use super::sessions::CodeRequest;
use super::{ApiJson, ApiQuery, ApiResult};
use crate::error::{ApiError, ErrorBody};
use crate::html::account::{ends_at, still_open};
use crate::html::recovery::{request_reset_in_background, request_unlock_in_background};
use crate::session::{credential, ApiCaller, ClientInfo, Credential, MaybeSigned};
use crate::WebState;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use repeatrx_app::AppError;
use repeatrx_domain::patient::{password_strength, PasswordOwner};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/password-resets", post(password_reset))
        .route("/unlock-requests", post(unlock_request))
        .route("/password-strength", post(strength))
        .route("/account/sessions", get(sessions).delete(end_sessions))
        .route("/account/events", get(events))
        .route("/account/password", post(change_password))
        .route("/account/recovery-codes", post(renew_recovery_codes))
        .route("/account/email", post(change_email))
}

#[derive(OpenApi)]
#[openapi(
    paths(
        password_reset,
        unlock_request,
        strength,
        sessions,
        end_sessions,
        events,
        change_password,
        renew_recovery_codes,
        change_email
    ),
    components(schemas(
        EmailRequest,
        Accepted,
        PasswordStrengthRequest,
        PasswordStrengthResponse,
        AccountSession,
        SessionsEnded,
        AccountEvent,
        PasswordChangeRequest,
        RecoveryCodes,
        EmailChangeRequest
    ))
)]
pub struct AccountApi;

// --- anyone -------------------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
pub struct EmailRequest {
    /// The address the account signs in with.
    pub email: String,
}

#[derive(Serialize, ToSchema)]
pub struct Accepted {
    pub message: String,
}

const RESET_ACCEPTED: &str = "If that address has an account, we have emailed a link to choose a new password. The \
     link works once, for 30 minutes.";
const UNLOCK_ACCEPTED: &str = "If that address has a locked account, we have emailed what to do next.";
const EMAIL_CHANGE_ACCEPTED: &str = "We have sent links to both addresses; the change happens when both are confirmed.";

fn accepted(message: &str) -> (StatusCode, Json<Accepted>) {
    (StatusCode::ACCEPTED, Json(Accepted { message: message.to_string() }))
}

/// Ask for a password-reset email. The answer is the same whether or not the address has an
/// account.
#[utoipa::path(post, path = "/password-resets", request_body = EmailRequest, tag = "account",
    responses((status = 202, body = Accepted, description = "Always, whatever the address"),
        (status = 422, body = ErrorBody, description = "The body is not {\"email\": \"...\"}")))]
async fn password_reset(
    State(state): State<WebState>,
    ClientInfo(client): ClientInfo,
    ApiJson(req): ApiJson<EmailRequest>,
) -> (StatusCode, Json<Accepted>) {
    request_reset_in_background(&state.app, &req.email, client);
    accepted(RESET_ACCEPTED)
}

/// Ask for an unlock email for an account locked after failed sign-ins. The answer is the same
/// whether or not the address has a (locked) account.
#[utoipa::path(post, path = "/unlock-requests", request_body = EmailRequest, tag = "account",
    responses((status = 202, body = Accepted, description = "Always, whatever the address"),
        (status = 422, body = ErrorBody, description = "The body is not {\"email\": \"...\"}")))]
async fn unlock_request(
    State(state): State<WebState>,
    ClientInfo(client): ClientInfo,
    ApiJson(req): ApiJson<EmailRequest>,
) -> (StatusCode, Json<Accepted>) {
    request_unlock_in_background(&state.app, &req.email, client);
    accepted(UNLOCK_ACCEPTED)
}

#[derive(Deserialize, ToSchema)]
pub struct PasswordStrengthRequest {
    pub password: String,
    /// Whose password: `patient` (at least 10 characters) or `staff` (at least 12). The signed-in
    /// caller's own when absent, else `patient`.
    #[serde(default)]
    pub role: Option<String>,
    /// The account owner's name: passwords containing it are refused and score lower.
    #[serde(default)]
    pub name: Option<String>,
    /// The account's email address, used like `name`.
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PasswordStrengthResponse {
    /// 0 (guessed in about a thousand tries) to 4 (more than ten billion).
    pub score: u8,
    /// "very weak", "weak", "fair", "strong" or "very strong".
    pub label: String,
    /// Advice on making it stronger, when there is any.
    pub feedback: Option<String>,
    /// Whether the password policy accepts it. Only this decides: the score is advice.
    pub acceptable: bool,
    /// Why the policy refuses it, when it does.
    pub problem: Option<String>,
}

/// Whose password a strength request is about.
fn owner_of(role: Option<&str>, caller_is_staff: Option<bool>) -> Result<PasswordOwner, ApiError> {
    match role.map(str::trim) {
        Some("staff") => Ok(PasswordOwner::Staff),
        Some("patient") => Ok(PasswordOwner::Patient),
        Some(_) => Err(ApiError(AppError::InvalidFields(vec!["role: must be \"patient\" or \"staff\"".into()]))),
        None if caller_is_staff == Some(true) => Ok(PasswordOwner::Staff),
        None => Ok(PasswordOwner::Patient),
    }
}

/// How strong a password is, and whether the policy accepts it; for the strength meter beside a
/// new-password field. Anyone may ask; for a signed-in caller their own name and email count too.
/// Nothing is stored or logged.
#[utoipa::path(post, path = "/password-strength", request_body = PasswordStrengthRequest, tag = "account",
    responses((status = 200, body = PasswordStrengthResponse),
        (status = 422, body = ErrorBody, description = "Unknown role")))]
async fn strength(
    MaybeSigned(s): MaybeSigned,
    ApiJson(req): ApiJson<PasswordStrengthRequest>,
) -> ApiResult<PasswordStrengthResponse> {
    let owner = owner_of(req.role.as_deref(), s.as_ref().map(|s| s.actor.role.is_staff()))?;
    let mut personal: Vec<String> =
        [req.name, req.email].into_iter().flatten().map(|p| p.chars().take(254).collect()).collect();
    if let Some(s) = &s {
        personal.push(s.user.display_name.clone());
        personal.push(s.user.email.to_string());
    }
    let password = SecretString::from(req.password);
    // zxcvbn takes a few milliseconds on long inputs: keep it off the async workers.
    let estimate = tokio::task::spawn_blocking(move || {
        use secrecy::ExposeSecret;
        let refs: Vec<&str> = personal.iter().map(String::as_str).filter(|p| !p.trim().is_empty()).collect();
        password_strength(password.expose_secret(), owner, &refs)
    })
    .await
    .map_err(|e| ApiError(AppError::Internal(format!("strength task failed: {e}"))))?;
    Ok(Json(PasswordStrengthResponse {
        score: estimate.score,
        label: estimate.label.to_string(),
        feedback: estimate.feedback,
        acceptable: estimate.acceptable,
        problem: estimate.problem,
    }))
}

// --- the caller's account -----------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct AccountSession {
    pub started_at: String,
    pub last_seen_at: String,
    /// When the session ends if it is not used again: the idle timeout or the absolute lifetime,
    /// whichever comes first.
    pub expires_at: String,
    pub user_agent: String,
    /// The network address it was opened from.
    pub address: String,
    /// `browser` (a cookie session) or `api` (a bearer token).
    pub kind: String,
    /// Whether this is the session making the request.
    pub current: bool,
}

/// The account's open sessions, newest first.
#[utoipa::path(get, path = "/account/sessions", tag = "account", security(("bearer" = [])),
    responses((status = 200, body = Vec<AccountSession>), (status = 401, body = ErrorBody, description = "Not signed in")))]
async fn sessions(State(state): State<WebState>, ApiCaller(s): ApiCaller) -> ApiResult<Vec<AccountSession>> {
    let now = state.app.clock.now();
    let rows = state.app.sessions_of(&s).await?;
    Ok(Json(
        rows.iter()
            .filter(|r| still_open(r, s.idle, now))
            .map(|r| AccountSession {
                started_at: r.created_at.to_string(),
                last_seen_at: r.last_seen_at.to_string(),
                expires_at: ends_at(r, s.idle).to_string(),
                user_agent: r.user_agent.clone(),
                address: r.address.clone(),
                kind: r.kind.as_str().into(),
                current: r.token_hash == s.session.token_hash,
            })
            .collect(),
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EndSessionsParams {
    /// `true`: end every session but this one. `false` (the default): end them all, this one too.
    #[serde(default)]
    pub keep_current: bool,
}

#[derive(Serialize, ToSchema)]
pub struct SessionsEnded {
    /// How many sessions ended.
    pub ended: u64,
}

/// Sign out everywhere: every session of the account ends (or every other one, with
/// `keep_current=true`).
#[utoipa::path(delete, path = "/account/sessions", tag = "account", security(("bearer" = [])), params(EndSessionsParams),
    responses((status = 200, body = SessionsEnded), (status = 401, body = ErrorBody, description = "Not signed in"),
        (status = 422, body = ErrorBody, description = "keep_current is not true or false")))]
async fn end_sessions(
    State(state): State<WebState>,
    ApiCaller(s): ApiCaller,
    ClientInfo(client): ClientInfo,
    ApiQuery(q): ApiQuery<EndSessionsParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let ended = state.app.sign_out_everywhere(&s, q.keep_current, &client).await?;
    let mut resp = Json(SessionsEnded { ended }).into_response();
    let by_cookie = matches!(credential(&headers), Some((_, Credential::Cookie)));
    if !q.keep_current && by_cookie {
        if let Ok(v) = crate::session::clear_session_cookie().parse() {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(resp)
}

#[derive(Serialize, ToSchema)]
pub struct AccountEvent {
    pub at: String,
    /// e.g. `signed_in`, `sign_in_failed`, `locked`, `password_changed`.
    pub kind: String,
    /// The same in words: "Signed in".
    pub label: String,
    /// The network address it came from.
    pub address: String,
    /// More about it, e.g. why a lock was lifted; may be empty.
    pub detail: String,
}

/// The account's recent sign-in activity, newest first (at most 50 events).
#[utoipa::path(get, path = "/account/events", tag = "account", security(("bearer" = [])),
    responses((status = 200, body = Vec<AccountEvent>), (status = 401, body = ErrorBody, description = "Not signed in")))]
async fn events(State(state): State<WebState>, ApiCaller(s): ApiCaller) -> ApiResult<Vec<AccountEvent>> {
    let events = state.app.events_of(&s).await?;
    Ok(Json(
        events
            .into_iter()
            .map(|e| AccountEvent {
                at: e.at.to_string(),
                kind: e.kind.as_str().into(),
                label: e.kind.label().into(),
                address: e.address,
                detail: e.detail,
            })
            .collect(),
    ))
}

#[derive(Deserialize, ToSchema)]
pub struct PasswordChangeRequest {
    pub current_password: String,
    pub new_password: String,
}

/// Change the password. Every other session of the account ends; this one stays. A wrong current
/// password counts towards the lockout like a failed sign-in.
#[utoipa::path(post, path = "/account/password", request_body = PasswordChangeRequest, tag = "account", security(("bearer" = [])),
    responses((status = 204, description = "Changed"),
        (status = 401, body = ErrorBody, description = "Not signed in, or the account locked after too many wrong passwords"),
        (status = 422, body = ErrorBody, description = "Wrong current password, or the new one breaks the password policy")))]
async fn change_password(
    State(state): State<WebState>,
    ApiCaller(s): ApiCaller,
    ClientInfo(client): ClientInfo,
    ApiJson(req): ApiJson<PasswordChangeRequest>,
) -> Result<StatusCode, ApiError> {
    state.app.change_password(&s, SecretString::from(req.current_password), &req.new_password, &client).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct RecoveryCodes {
    /// Shown once: each signs in once instead of a security code. The old codes stop working.
    pub recovery_codes: Vec<String>,
}

/// Get ten new recovery codes, confirming with a current code from the authenticator app.
#[utoipa::path(post, path = "/account/recovery-codes", request_body = CodeRequest, tag = "account", security(("bearer" = [])),
    responses((status = 200, body = RecoveryCodes),
        (status = 401, body = ErrorBody, description = "Not signed in, or the account locked after too many wrong codes"),
        (status = 422, body = ErrorBody, description = "Wrong or reused code")))]
async fn renew_recovery_codes(
    State(state): State<WebState>,
    ApiCaller(s): ApiCaller,
    ClientInfo(client): ClientInfo,
    ApiJson(req): ApiJson<CodeRequest>,
) -> ApiResult<RecoveryCodes> {
    let recovery_codes = state.app.renew_recovery_codes(&s, &req.code, &client).await?;
    Ok(Json(RecoveryCodes { recovery_codes }))
}

#[derive(Deserialize, ToSchema)]
pub struct EmailChangeRequest {
    pub new_email: String,
    pub current_password: String,
}

/// Start changing the sign-in email address: links go to the old and the new address, and the
/// change happens when both have been opened.
#[utoipa::path(post, path = "/account/email", request_body = EmailChangeRequest, tag = "account", security(("bearer" = [])),
    responses((status = 202, body = Accepted),
        (status = 401, body = ErrorBody, description = "Not signed in"),
        (status = 422, body = ErrorBody, description = "Not an email address, the same address, or a wrong current password")))]
async fn change_email(
    State(state): State<WebState>,
    ApiCaller(s): ApiCaller,
    ClientInfo(client): ClientInfo,
    ApiJson(req): ApiJson<EmailChangeRequest>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let password = SecretString::from(req.current_password);
    state.app.request_email_change(&s, req.new_email.trim(), password, &client).await?;
    Ok(accepted(EMAIL_CHANGE_ACCEPTED))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_strength_owner_comes_from_the_request_or_the_caller() {
        assert_eq!(owner_of(Some("staff"), None).ok(), Some(PasswordOwner::Staff));
        assert_eq!(owner_of(Some(" patient "), Some(true)).ok(), Some(PasswordOwner::Patient));
        assert_eq!(owner_of(None, Some(true)).ok(), Some(PasswordOwner::Staff));
        assert_eq!(owner_of(None, Some(false)).ok(), Some(PasswordOwner::Patient));
        assert_eq!(owner_of(None, None).ok(), Some(PasswordOwner::Patient));
        assert!(owner_of(Some("admin"), None).is_err());
    }
}
