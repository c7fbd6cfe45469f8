//! Maps application errors to HTTP in one place: [`status_of`] decides the status and the
//! sentence the user sees; [`ApiError`] renders it as JSON, [`PageError`] as an HTML page.
use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Json;
use repeatrx_app::AppError;
use serde::Serialize;

/// The status and user-facing sentence for an application error; causes of 5xx go to the log.
pub fn status_of(e: &AppError) -> (StatusCode, String) {
    let status = match e {
        AppError::Invalid(_) | AppError::InvalidFields(_) => StatusCode::UNPROCESSABLE_ENTITY,
        AppError::NotOrderable(_) | AppError::IllegalTransition(_) | AppError::Conflict(_) => StatusCode::CONFLICT,
        AppError::Unauthenticated | AppError::BadCredentials | AppError::WrongCode => StatusCode::UNAUTHORIZED,
        AppError::TooManyAttempts => StatusCode::TOO_MANY_REQUESTS,
        AppError::LinkExpired => StatusCode::GONE,
        AppError::Forbidden => StatusCode::FORBIDDEN,
        AppError::NotFound(_) => StatusCode::NOT_FOUND,
        AppError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        AppError::Internal(cause) => {
            tracing::error!(%cause, "internal error");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    (status, e.to_string())
}

/// A message as a sentence for a page: first letter upper case.
pub fn sentence(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub status: u16,
    pub message: String,
    /// One line per item that cannot be ordered, or per invalid field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

/// An error answered as JSON: `{"error": {"status": 404, "message": "order not found"}}`.
#[derive(Debug)]
pub struct ApiError(pub AppError);

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        ApiError(e)
    }
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Response {
        json_error(StatusCode::BAD_REQUEST, message.into(), vec![])
    }
}

pub fn json_error(status: StatusCode, message: String, reasons: Vec<String>) -> Response {
    (status, Json(ErrorBody { error: ErrorDetail { status: status.as_u16(), message, reasons } })).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = status_of(&self.0);
        let reasons = match self.0 {
            AppError::NotOrderable(r) | AppError::InvalidFields(r) => r,
            _ => vec![],
        };
        let mut resp = json_error(status, message, reasons);
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    status: u16,
    title: String,
    message: String,
    reasons: Vec<String>,
}

/// An error answered as an HTML page (or, when not signed in, a redirect to the sign-in page).
#[derive(Debug)]
pub struct PageError(pub AppError);

impl From<AppError> for PageError {
    fn from(e: AppError) -> Self {
        PageError(e)
    }
}

pub fn error_page(status: StatusCode, message: String, reasons: Vec<String>) -> Response {
    let page = ErrorPage {
        status: status.as_u16(),
        title: status.canonical_reason().unwrap_or("Error").to_string(),
        message: sentence(&message),
        reasons,
    };
    match page.render() {
        Ok(body) => (status, Html(body)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "error page failed to render");
            (status, page.message).into_response()
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if matches!(self.0, AppError::Unauthenticated) {
            return Redirect::to("/sign-in").into_response();
        }
        let (status, message) = status_of(&self.0);
        let reasons = match self.0 {
            AppError::NotOrderable(r) | AppError::InvalidFields(r) => r,
            _ => vec![],
        };
        error_page(status, message, reasons)
    }
}
