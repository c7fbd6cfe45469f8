//! Break-glass grants of live-data custodians: list, open (with a fresh authenticator code),
//! end. While a grant is live, its holder reads what it covers through the ordinary patient
//! endpoints (`GET /patients/{id}`, its repeat items and orders), each read audited with the
//! grant's reason.
use super::patient::timestamp;
use super::{created, path_id, ApiJson, ApiPath, ApiResult, Created};
use crate::error::ErrorBody;
use crate::session::{ApiCaller, ClientInfo};
use crate::WebState;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use repeatrx_app::custody::GrantRequest;
use repeatrx_app::AppError;
use repeatrx_domain::custody::{Grant, GrantScope};
use repeatrx_domain::ids::GrantId;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

pub fn routes() -> Router<WebState> {
    Router::new().route("/custody/grants", get(list).post(open)).route("/custody/grants/{id}/end", post(end))
}

#[derive(OpenApi)]
#[openapi(paths(list, open, end), components(schemas(GrantDto, GrantRequestDto)))]
pub struct CustodyApi;

/// A break-glass grant.
#[derive(Serialize, ToSchema)]
pub struct GrantDto {
    pub id: String,
    /// `patient` or `pharmacy`.
    pub scope: String,
    pub patient_id: Option<String>,
    pub pharmacy_id: Option<String>,
    pub reason: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub expires_at: String,
    pub ended_at: Option<String>,
}

impl From<&Grant> for GrantDto {
    fn from(g: &Grant) -> Self {
        let (patient_id, pharmacy_id) = match g.scope {
            GrantScope::Patient(p) => (Some(p.to_string()), None),
            GrantScope::Pharmacy(p) => (None, Some(p.to_string())),
        };
        Self {
            id: g.id.to_string(),
            scope: g.scope.kind().into(),
            patient_id,
            pharmacy_id,
            reason: g.reason.clone(),
            created_at: timestamp(g.created_at),
            expires_at: timestamp(g.expires_at),
            ended_at: g.ended_at.map(timestamp),
        }
    }
}

/// Exactly one of `patient_id` and `pharmacy_id`; a reason of at least 15 characters; minutes
/// between 5 and 60 (default 60); the current authenticator code.
#[derive(Deserialize, ToSchema)]
pub struct GrantRequestDto {
    #[serde(default)]
    pub patient_id: Option<String>,
    #[serde(default)]
    pub pharmacy_id: Option<String>,
    pub reason: String,
    #[serde(default)]
    pub minutes: Option<i64>,
    pub code: String,
}

/// The caller's grants, newest first.
#[utoipa::path(get, path = "/custody/grants", tag = "custody", security(("bearer" = [])),
    responses(
        (status = 200, body = Vec<GrantDto>),
        (status = 401, body = ErrorBody, description = "Not signed in"),
        (status = 403, body = ErrorBody, description = "Not a live-data custodian"),
    ))]
async fn list(State(state): State<WebState>, ApiCaller(s): ApiCaller) -> ApiResult<Vec<GrantDto>> {
    let grants = state.app.grants_of(&s.actor).await?;
    Ok(Json(grants.iter().map(GrantDto::from).collect()))
}

/// Opens break-glass access; the other custodians and the pharmacy's managers are emailed.
#[utoipa::path(post, path = "/custody/grants", tag = "custody", security(("bearer" = [])),
    request_body = GrantRequestDto,
    responses(
        (status = 201, body = GrantDto),
        (status = 401, body = ErrorBody, description = "Not signed in, or the code is wrong"),
        (status = 403, body = ErrorBody, description = "Not a live-data custodian"),
        (status = 422, body = ErrorBody, description = "No such patient or pharmacy, a reason too short, a bad length"),
    ))]
async fn open(
    State(state): State<WebState>,
    ApiCaller(s): ApiCaller,
    ClientInfo(client): ClientInfo,
    ApiJson(body): ApiJson<GrantRequestDto>,
) -> Created<GrantDto> {
    let scope = match (body.patient_id.as_deref(), body.pharmacy_id.as_deref()) {
        (Some(p), None) => GrantScope::Patient(
            p.parse().map_err(|_| AppError::InvalidFields(vec!["patient_id: not a RepeatRx id".into()]))?,
        ),
        (None, Some(p)) => GrantScope::Pharmacy(
            p.parse().map_err(|_| AppError::InvalidFields(vec!["pharmacy_id: not a RepeatRx id".into()]))?,
        ),
        _ => {
            return Err(AppError::InvalidFields(vec![
                "patient_id: give exactly one of patient_id and pharmacy_id".into()
            ])
            .into())
        }
    };
    let request = GrantRequest { scope, reason: body.reason, minutes: body.minutes, code: body.code };
    let grant = state.app.open_grant(&s.actor, &request, &client).await?;
    created(GrantDto::from(&grant))
}

/// Ends a live grant before it expires.
#[utoipa::path(post, path = "/custody/grants/{id}/end", tag = "custody", security(("bearer" = [])),
    params(("id" = String, Path, description = "Grant id")),
    responses(
        (status = 204, description = "Ended"),
        (status = 401, body = ErrorBody, description = "Not signed in"),
        (status = 403, body = ErrorBody, description = "Not a live-data custodian"),
        (status = 404, body = ErrorBody, description = "No live grant of the caller's with this id"),
    ))]
async fn end(
    State(state): State<WebState>,
    ApiCaller(s): ApiCaller,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::http::StatusCode, crate::error::ApiError> {
    let id: GrantId = path_id(&id, "live grant")?;
    state.app.end_grant(&s.actor, id).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
