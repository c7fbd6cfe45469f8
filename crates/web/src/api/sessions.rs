//! Sign-in for API clients: a bearer token with the same lifetimes and the same two-factor rule
//! as a browser session. Accounts with a second factor get a short-lived token that can only
//! finish signing in (`POST /sessions/second-factor`, or for staff without an authenticator app
//! yet, `POST /sessions/totp` then `POST /sessions/totp/confirm`); the full token replaces it.
use super::{ApiJson, ApiResult};
use crate::error::ApiError;
use crate::session::{credential, ApiAnySession, ApiCaller, ApiPendingSignIn, ClientInfo};
use crate::WebState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use repeatrx_app::auth::NewSession;
use repeatrx_store::SessionKind;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/sessions", post(create).delete(delete))
        .route("/sessions/second-factor", post(second_factor))
        .route("/sessions/totp", post(totp_setup))
        .route("/sessions/totp/confirm", post(totp_confirm))
        .route("/me", axum::routing::get(me))
}

#[derive(OpenApi)]
#[openapi(
    paths(create, delete, second_factor, totp_setup, totp_confirm, me),
    components(schemas(SignInRequest, SessionResponse, CodeRequest, TotpSetupResponse, TotpConfirmResponse, Me))
)]
pub struct SessionsApi;

#[derive(Deserialize, ToSchema)]
pub struct SignInRequest {
    pub email: String,
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct SessionResponse {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    pub expires_at: String,
    pub role: String,
    /// `full`: signed in. `second_factor`: send a code to /sessions/second-factor with this
    /// token. `enrol`: set up an authenticator app through /sessions/totp first.
    pub stage: String,
}

fn session_response(new: &NewSession) -> SessionResponse {
    SessionResponse {
        token: new.token.expose_secret().to_string(),
        expires_at: new.expires_at.to_string(),
        role: new.actor.role.as_str().into(),
        stage: new.stage.as_str().into(),
    }
}

/// Sign in and receive a bearer token (full, or limited to finishing the sign-in).
#[utoipa::path(post, path = "/sessions", request_body = SignInRequest, tag = "sessions",
    responses((status = 201, body = SessionResponse),
        (status = 401, body = crate::error::ErrorBody, description = "Wrong email or password, or the account is locked"),
        (status = 429, body = crate::error::ErrorBody, description = "Too many failed sign-ins from this address")))]
async fn create(
    State(state): State<WebState>,
    ClientInfo(client): ClientInfo,
    ApiJson(req): ApiJson<SignInRequest>,
) -> Result<(StatusCode, Json<SessionResponse>), ApiError> {
    let new = state.app.sign_in(&req.email, SecretString::from(req.password), SessionKind::Api, &client).await?;
    Ok((StatusCode::CREATED, Json(session_response(&new))))
}

#[derive(Deserialize, ToSchema)]
pub struct CodeRequest {
    /// The 6-digit code of the authenticator app, or a recovery code.
    pub code: String,
}

/// Finish signing in with a one-time code or a recovery code; returns the full token (the
/// limited one stops working).
#[utoipa::path(post, path = "/sessions/second-factor", request_body = CodeRequest, tag = "sessions", security(("bearer" = [])),
    responses((status = 201, body = SessionResponse),
        (status = 401, body = crate::error::ErrorBody, description = "Wrong or reused code, or the sign-in has ended")))]
async fn second_factor(
    State(state): State<WebState>,
    ApiPendingSignIn(s): ApiPendingSignIn,
    ClientInfo(client): ClientInfo,
    ApiJson(req): ApiJson<CodeRequest>,
) -> Result<(StatusCode, Json<SessionResponse>), ApiError> {
    let new = state.app.complete_second_factor(&s, &req.code, &client).await?;
    Ok((StatusCode::CREATED, Json(session_response(&new))))
}

#[derive(Serialize, ToSchema)]
pub struct TotpSetupResponse {
    /// Base32 secret for the authenticator app.
    pub secret: String,
    /// The `otpauth://` URL (what the QR code holds).
    pub url: String,
}

/// Start setting up an authenticator app (staff signing in for the first time, or a patient who
/// opts in); the same secret is returned until it is confirmed.
#[utoipa::path(post, path = "/sessions/totp", tag = "sessions", security(("bearer" = [])),
    responses((status = 200, body = TotpSetupResponse),
        (status = 401, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody, description = "Already set up")))]
async fn totp_setup(State(state): State<WebState>, ApiAnySession(s): ApiAnySession) -> ApiResult<TotpSetupResponse> {
    let setup = state.app.totp_setup(&s).await?;
    Ok(Json(TotpSetupResponse { secret: setup.secret, url: setup.url }))
}

#[derive(Serialize, ToSchema)]
pub struct TotpConfirmResponse {
    /// Shown once: each signs in once instead of a code.
    pub recovery_codes: Vec<String>,
    /// The full session, when this finished a sign-in that was waiting for enrolment.
    pub session: Option<SessionResponse>,
}

/// Confirm the authenticator app with its first code; returns the recovery codes.
#[utoipa::path(post, path = "/sessions/totp/confirm", request_body = CodeRequest, tag = "sessions", security(("bearer" = [])),
    responses((status = 200, body = TotpConfirmResponse),
        (status = 401, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody, description = "Wrong code")))]
async fn totp_confirm(
    State(state): State<WebState>,
    ApiAnySession(s): ApiAnySession,
    ClientInfo(client): ClientInfo,
    ApiJson(req): ApiJson<CodeRequest>,
) -> ApiResult<TotpConfirmResponse> {
    let done = state.app.confirm_totp(&s, &req.code, &client).await?;
    Ok(Json(TotpConfirmResponse {
        recovery_codes: done.recovery_codes,
        session: done.session.as_ref().map(session_response),
    }))
}

/// Sign out: the token stops working at once.
#[utoipa::path(delete, path = "/sessions", tag = "sessions", security(("bearer" = [])), responses((status = 204)))]
async fn delete(
    State(state): State<WebState>,
    _caller: ApiAnySession,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    if let Some((token, _)) = credential(&headers) {
        state.app.sign_out(&token).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    pub user_id: String,
    pub name: String,
    pub role: String,
    /// The patient id, for patients.
    pub patient_id: Option<String>,
    pub pharmacy_id: Option<String>,
    pub practice_id: Option<String>,
}

/// Who the token belongs to.
#[utoipa::path(get, path = "/me", tag = "sessions", security(("bearer" = [])), responses((status = 200, body = Me), (status = 401, body = crate::error::ErrorBody)))]
async fn me(ApiCaller(s): ApiCaller) -> ApiResult<Me> {
    Ok(Json(Me {
        user_id: s.user.id.to_string(),
        name: s.user.display_name.clone(),
        role: s.actor.role.as_str().into(),
        patient_id: s.user.patient_id.map(|p| p.to_string()),
        pharmacy_id: s.user.pharmacy_id.map(|p| p.to_string()),
        practice_id: s.user.practice_id.map(|p| p.to_string()),
    }))
}
