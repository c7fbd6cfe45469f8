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

/// The whole service: dashboards, API, static files and health check, behind the security
/// layers (headers, origin/CSRF checks, body limit) that apply to every route.
pub fn router(state: WebState) -> Router {
    Router::new()
        .merge(html::routes())
        .nest("/api/v1", api::routes())
        .merge(headers::static_routes())
        .route("/healthz", axum::routing::get(health))
        .route_layer(axum::middleware::from_fn(guard::guard))
        .layer(axum::middleware::from_fn_with_state(state.clone(), csrf::verify))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(headers::security_headers))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

async fn health(axum::extract::State(state): axum::extract::State<WebState>) -> (axum::http::StatusCode, &'static str) {
    match state.app.health().await {
        Ok(()) => (axum::http::StatusCode::OK, "ok"),
        Err(_) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, "database unavailable"),
    }
}
