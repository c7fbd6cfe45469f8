//! RepeatRx web layer: axum routers for the server-rendered dashboards (`html`) and the versioned
//! JSON API (`api`, OpenAPI at /api/v1/openapi.json). Handlers only translate HTTP into calls on
//! [`repeatrx_app::App`] and render the result; every rule lives below this crate.
#![forbid(unsafe_code)]

pub mod api;
pub mod csrf;
pub mod error;
pub mod guard;
pub mod headers;
pub mod html;
pub mod server;
pub mod session;
pub mod tls;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use repeatrx_app::App;

/// Request bodies larger than this are refused with 413 before any handler runs.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct WebState {
    pub app: App,
}

/// Which routes a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// Every route (one listener for everything, or the separate admin listener).
    Everything,
    /// All but the platform team's routes ([`guard::admin_only`]), which answer "not found": the
    /// public listener when the admin pages have a listener of their own (C4).
    PublicOnly,
}

/// The whole service: dashboards, API, static files and health check, behind the security
/// layers (headers, origin/CSRF checks, body limit) that apply to every route.
pub fn router(state: WebState) -> Router {
    router_for(state, Exposure::Everything)
}

/// [`router`] for a listener that serves only part of the routes.
pub fn router_for(state: WebState, exposure: Exposure) -> Router {
    let mut routes = Router::new()
        .merge(html::routes())
        .nest("/api/v1", api::routes())
        .merge(headers::static_routes())
        .route("/healthz", axum::routing::get(health))
        .route_layer(axum::middleware::from_fn(guard::guard));
    if exposure == Exposure::PublicOnly {
        routes = routes.layer(axum::middleware::from_fn(hide_admin_routes));
    }
    routes
        .layer(axum::middleware::from_fn_with_state(state.clone(), csrf::verify))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(headers::security_headers))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// The public listener when the platform team has its own: their routes do not exist here, and
/// a platform account's session reaches nothing here but signing in and out.
async fn hide_admin_routes(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = req.uri().path();
    let platform_session = req
        .extensions()
        .get::<session::ResolvedSession>()
        .is_some_and(|s| s.0.actor.role.kind() == repeatrx_domain::access::OrgKind::Platform);
    let sign_in_or_out = path.starts_with("/sign-in")
        || path == "/sign-out"
        || path.starts_with("/api/v1/sessions")
        || path.starts_with("/static/")
        || path == "/favicon.ico";
    let hidden = guard::admin_only(path) || (platform_session && !sign_in_or_out);
    if !hidden {
        return next.run(req).await;
    }
    let not_found = repeatrx_app::AppError::NotFound("page");
    if req.uri().path().starts_with("/api/") {
        error::ApiError(not_found).into_response()
    } else {
        error::PageError(not_found).into_response()
    }
}

async fn health(axum::extract::State(state): axum::extract::State<WebState>) -> (axum::http::StatusCode, &'static str) {
    match state.app.health().await {
        Ok(()) => (axum::http::StatusCode::OK, "ok"),
        Err(_) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, "database unavailable"),
    }
}
