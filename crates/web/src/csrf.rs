//! The session and cross-site request forgery layer, applied to every route.
//! 1. Any state-changing request from another site is refused (Origin / Sec-Fetch-Site).
//! 2. The session token is resolved once and stored for the extractors.
//! 3. A state-changing request authenticated by the session cookie must carry the session's CSRF
//!    token, in the `X-CSRF-Token` header or a `_csrf` form field (compared in constant time).
//!    Bearer-token calls carry no ambient credential and need none.
use crate::error::{error_page, json_error};
use crate::session::{clear_session_cookie, credential, Credential, ResolvedSession};
use crate::{WebState, MAX_BODY_BYTES};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use repeatrx_app::auth::tokens_equal;
use repeatrx_app::AppError;

pub const CSRF_HEADER: &str = "x-csrf-token";
pub const CSRF_FIELD: &str = "_csrf";

fn is_api(req: &Request) -> bool {
    req.uri().path().starts_with("/api/")
}

fn refuse(api: bool, status: StatusCode, message: &str) -> Response {
    if api {
        json_error(status, message.to_string(), vec![])
    } else {
        error_page(status, message.to_string(), vec![])
    }
}

/// Whether a state-changing request comes from this site. Browsers send `Sec-Fetch-Site`, which
/// pages cannot forge: only `same-origin` (or `none`, typed by the user) passes. Otherwise the
/// Origin, when sent, must be this server: its authority comes from the Host header (HTTP/1.1) or
/// the URI's `:authority` (HTTP/2). Clients that send neither are not browsers and carry no
/// ambient cookie to abuse.
fn same_origin(headers: &HeaderMap, uri: &axum::http::Uri) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return matches!(site, "same-origin" | "none");
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.as_str().to_string()));
    match (headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()), host) {
        (Some(origin), Some(host)) => origin == format!("https://{host}"),
        (Some(_), None) => false,
        (None, _) => true,
    }
}

fn form_field(body: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(body).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

pub async fn verify(State(state): State<WebState>, mut req: Request, next: Next) -> Response {
    let api = is_api(&req);
    let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if unsafe_method && !same_origin(req.headers(), req.uri()) {
        return refuse(api, StatusCode::FORBIDDEN, "cross-site requests are not allowed");
    }
    let Some((token, source)) = credential(req.headers()) else {
        return next.run(req).await;
    };
    let address = req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    let current = match state.app.session_from(&token, address).await {
        Ok(s) => s,
        Err(AppError::Unauthenticated) => {
            // An expired or unknown token: carry on signed out, and drop a stale cookie.
            let mut resp = next.run(req).await;
            if source == Credential::Cookie {
                if let Ok(v) = clear_session_cookie().parse() {
                    resp.headers_mut().append(header::SET_COOKIE, v);
                }
            }
            return resp;
        }
        Err(e) => {
            let (status, message) = crate::error::status_of(&e);
            return refuse(api, status, &message);
        }
    };
    if unsafe_method && source == Credential::Cookie {
        let expected = current.session.csrf_token.clone();
        let header_token = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
        let presented = match header_token {
            Some(t) => Some(t),
            None => {
                let (parts, body) = req.into_parts();
                let bytes: Bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
                    Ok(b) => b,
                    Err(_) => return refuse(api, StatusCode::PAYLOAD_TOO_LARGE, "the request is too large"),
                };
                let field = form_field(&bytes, CSRF_FIELD);
                req = Request::from_parts(parts, Body::from(bytes));
                field
            }
        };
        if !presented.is_some_and(|p| tokens_equal(&p, &expected)) {
            return refuse(api, StatusCode::FORBIDDEN, "this form has expired; go back, reload the page and try again")
                .into_response();
        }
    }
    req.extensions_mut().insert(ResolvedSession(current));
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_rules() {
        let path: axum::http::Uri = "/sign-in".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:8443".parse().unwrap());
        assert!(same_origin(&h, &path));
        h.insert(header::ORIGIN, "https://127.0.0.1:8443".parse().unwrap());
        assert!(same_origin(&h, &path));
        h.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(!same_origin(&h, &path));
        for (site, ok) in [("cross-site", false), ("same-site", false), ("same-origin", true), ("none", true)] {
            let mut h2 = HeaderMap::new();
            h2.insert("sec-fetch-site", site.parse().unwrap());
            // Chromium sends `Origin: null` on same-origin form posts under a strict referrer policy.
            h2.insert(header::ORIGIN, "null".parse().unwrap());
            assert_eq!(same_origin(&h2, &path), ok, "{site}");
        }
        let mut null_only = HeaderMap::new();
        null_only.insert(header::ORIGIN, "null".parse().unwrap());
        null_only.insert(header::HOST, "127.0.0.1:8443".parse().unwrap());
        assert!(!same_origin(&null_only, &path), "an opaque origin without Sec-Fetch-Site is refused");
    }

    #[test]
    fn http2_requests_carry_their_authority_in_the_uri() {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, "https://127.0.0.1:8443".parse().unwrap());
        let h2_uri: axum::http::Uri = "https://127.0.0.1:8443/sign-in".parse().unwrap();
        assert!(same_origin(&h, &h2_uri));
        let other: axum::http::Uri = "https://127.0.0.1:9999/sign-in".parse().unwrap();
        assert!(!same_origin(&h, &other));
        assert!(!same_origin(&h, &"/sign-in".parse().unwrap()), "no authority at all is refused when Origin is sent");
    }

    #[test]
    fn finds_the_csrf_field_in_a_form() {
        assert_eq!(form_field(b"a=1&_csrf=abc%2Bd&b=2", CSRF_FIELD).as_deref(), Some("abc+d"));
        assert_eq!(form_field(b"a=1", CSRF_FIELD), None);
    }
}
