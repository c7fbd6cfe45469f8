//! Who is asking. The [`crate::csrf::verify`] layer resolves the session token (bearer header or
//! cookie) once per request and leaves the result in the request's extensions; the extractors
//! here hand it to handlers, refusing requests without one.
use crate::error::{ApiError, PageError};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use repeatrx_app::auth::{Client, CurrentSession};
use repeatrx_app::AppError;

/// `__Host-` pins the cookie to this exact origin over HTTPS with Path=/.
pub const SESSION_COOKIE: &str = "__Host-rrx_session";

/// Where the request's credentials came from; only cookie sessions need CSRF tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    Bearer,
    Cookie,
}

/// The token and its source, if the request carries one.
pub fn credential(headers: &HeaderMap) -> Option<(String, Credential)> {
    if let Some(auth) = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        if let Some(token) = auth.strip_prefix("Bearer ") {
            return Some((token.trim().to_string(), Credential::Bearer));
        }
    }
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| (v.to_string(), Credential::Cookie))
}

/// The verified session of this request, put in the extensions by the session layer.
#[derive(Clone)]
pub struct ResolvedSession(pub CurrentSession);

fn resolved(parts: &Parts) -> Option<CurrentSession> {
    parts.extensions.get::<ResolvedSession>().map(|s| s.0.clone())
}

/// The fully signed-in session (password and, where needed, second factor done). Sessions half
/// way through sign-in are not this: they reach only the sign-in steps.
fn full(parts: &Parts) -> Option<CurrentSession> {
    resolved(parts).filter(CurrentSession::is_full)
}

/// A signed-in user on an HTML page; anyone else is sent to the sign-in page.
pub struct Signed(pub CurrentSession);

impl<S: Send + Sync> FromRequestParts<S> for Signed {
    type Rejection = PageError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        full(parts).map(Signed).ok_or(PageError(AppError::Unauthenticated))
    }
}

/// A signed-in caller of the JSON API; anyone else gets 401.
pub struct ApiCaller(pub CurrentSession);

impl<S: Send + Sync> FromRequestParts<S> for ApiCaller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        full(parts).map(ApiCaller).ok_or(ApiError(AppError::Unauthenticated))
    }
}

/// The fully signed-in session, if any (for pages that anyone may see, such as the home page).
pub struct MaybeSigned(pub Option<CurrentSession>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeSigned {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(MaybeSigned(full(parts)))
    }
}

/// A sign-in half way through: password given, second factor (or its enrolment) still to do.
/// Only the sign-in step pages and endpoints take this.
pub struct PendingSignIn(pub CurrentSession);

impl<S: Send + Sync> FromRequestParts<S> for PendingSignIn {
    type Rejection = PageError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        resolved(parts).filter(|s| !s.is_full()).map(PendingSignIn).ok_or(PageError(AppError::Unauthenticated))
    }
}

/// The same for API callers (401 otherwise).
pub struct ApiPendingSignIn(pub CurrentSession);

impl<S: Send + Sync> FromRequestParts<S> for ApiPendingSignIn {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        resolved(parts).filter(|s| !s.is_full()).map(ApiPendingSignIn).ok_or(ApiError(AppError::Unauthenticated))
    }
}

/// Any session, full or half way through sign-in (for TOTP enrolment, which both use).
pub struct AnySession(pub CurrentSession);

impl<S: Send + Sync> FromRequestParts<S> for AnySession {
    type Rejection = PageError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        resolved(parts).map(AnySession).ok_or(PageError(AppError::Unauthenticated))
    }
}

/// Any session, for API callers.
pub struct ApiAnySession(pub CurrentSession);

impl<S: Send + Sync> FromRequestParts<S> for ApiAnySession {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        resolved(parts).map(ApiAnySession).ok_or(ApiError(AppError::Unauthenticated))
    }
}

/// The client's address (the TCP peer) and user agent, for sessions, throttling and events.
pub struct ClientInfo(pub Client);

impl<S: Send + Sync> FromRequestParts<S> for ClientInfo {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let address = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_else(|| "unknown".into());
        let agent = parts.headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
        Ok(ClientInfo(Client::new(address, agent)))
    }
}

/// The `Set-Cookie` value that stores a session token in the browser.
pub fn session_cookie(token: &str, max_age_secs: i64) -> String {
    format!("{SESSION_COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}")
}

/// The `Set-Cookie` value that removes it.
pub fn clear_session_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
}
