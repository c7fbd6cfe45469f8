//! Sign-in for API clients: a bearer token with the same lifetimes as a browser session.
use super::{ApiJson, ApiResult};
use crate::error::ApiError;
use crate::session::{credential, ApiCaller};
use crate::WebState;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use repeatrx_store::SessionKind;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

pub fn routes() -> Router<WebState> {
    Router::new().route("/sessions", post(create).delete(delete)).route("/me", axum::routing::get(me))
}

#[derive(OpenApi)]
#[openapi(paths(create, delete, me), components(schemas(SignInRequest, SessionResponse, Me)))]
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
}

/// Sign in and receive a bearer token.
#[utoipa::path(post, path = "/sessions", request_body = SignInRequest, tag = "sessions",
    responses((status = 201, body = SessionResponse), (status = 401, body = crate::error::ErrorBody, description = "Wrong email or password")))]
async fn create(
    State(state): State<WebState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<SignInRequest>,
) -> Result<(StatusCode, Json<SessionResponse>), ApiError> {
    let agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let new = state.app.sign_in(&req.email, SecretString::from(req.password), SessionKind::Api, agent).await?;
    Ok((
        StatusCode::CREATED,
        Json(SessionResponse {
            token: new.token.expose_secret().to_string(),
            expires_at: new.expires_at.to_string(),
            role: new.actor.role.as_str().into(),
        }),
    ))
}

/// Sign out: the token stops working at once.
#[utoipa::path(delete, path = "/sessions", tag = "sessions", security(("bearer" = [])), responses((status = 204)))]
async fn delete(State(state): State<WebState>, _caller: ApiCaller, headers: HeaderMap) -> Result<StatusCode, ApiError> {
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
