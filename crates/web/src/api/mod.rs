//! The versioned JSON API (`/api/v1`) for phone apps and integrations. Same services, same rules
//! as the dashboards; callers authenticate with a bearer token from `POST /api/v1/sessions` (or a
//! browser session cookie plus the `X-CSRF-Token` header). The OpenAPI document is generated from
//! the handlers' annotations and served at `/api/v1/openapi.json`.
pub mod account;
pub mod admin;
pub mod audit;
pub mod custody;
pub mod patient;
pub mod pharmacy;
pub mod practice;
pub mod sessions;
pub mod staff;

use crate::error::{json_error, ApiError};
use crate::WebState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/openapi.json", get(openapi))
        .merge(sessions::routes())
        .merge(patient::routes())
        .merge(pharmacy::routes())
        .merge(practice::routes())
        .merge(admin::routes())
        .merge(account::routes())
        .merge(staff::routes())
        .merge(custody::routes())
        .merge(audit::routes())
        .fallback(|| async { json_error(StatusCode::NOT_FOUND, "no such API endpoint".into(), vec![]) })
}

/// JSON body extractor whose rejections (malformed JSON, wrong content type, missing fields) are
/// answered as the API's JSON errors with a sentence saying what was wrong.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = Response;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => {
                let status = match &rejection {
                    JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    JsonRejection::JsonDataError(_) => StatusCode::UNPROCESSABLE_ENTITY,
                    JsonRejection::BytesRejection(_) => StatusCode::PAYLOAD_TOO_LARGE,
                    _ => StatusCode::BAD_REQUEST,
                };
                Err(json_error(status, rejection.body_text(), vec![]))
            }
        }
    }
}

/// Query-string extractor whose rejections are answered as the API's JSON errors (422).
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(ApiQuery(v)),
            Err(rejection) => Err(json_error(StatusCode::UNPROCESSABLE_ENTITY, rejection.body_text(), vec![])),
        }
    }
}

/// Path extractor whose rejections (e.g. an id that is not valid UTF-8) are answered as a JSON 404:
/// a path that cannot name anything names nothing.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(_) => Err(json_error(StatusCode::NOT_FOUND, "not found".into(), vec![])),
        }
    }
}

/// Parses an id from the path; an id that cannot exist is simply not found (`what not found`).
pub fn path_id<T: std::str::FromStr>(raw: &str, what: &'static str) -> Result<T, ApiError> {
    raw.parse().map_err(|_| ApiError(repeatrx_app::AppError::NotFound(what)))
}

pub type ApiResult<T> = Result<Json<T>, ApiError>;

/// A 201 Created answer with its JSON body.
pub type Created<T> = Result<(StatusCode, Json<T>), ApiError>;

/// Answers 201 Created with `body`.
pub fn created<T>(body: T) -> Created<T> {
    Ok((StatusCode::CREATED, Json(body)))
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "RepeatRx API", version = "1", description = "Repeat prescription ordering for patients, pharmacies and prescribers."),
    modifiers(&BearerAuth),
    nest(
        (path = "/api/v1", api = sessions::SessionsApi),
        (path = "/api/v1", api = patient::PatientApi),
        (path = "/api/v1", api = pharmacy::PharmacyApi),
        (path = "/api/v1", api = practice::PracticeApi),
        (path = "/api/v1", api = admin::AdminApi),
        (path = "/api/v1", api = account::AccountApi),
        (path = "/api/v1", api = staff::StaffApi),
        (path = "/api/v1", api = custody::CustodyApi),
        (path = "/api/v1", api = audit::AuditApi),
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorDetail))
)]
pub struct ApiDoc;

async fn openapi() -> Response {
    Json(ApiDoc::openapi()).into_response()
}
