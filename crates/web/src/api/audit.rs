//! A manager's search of the organisation's audit trail (operators: the platform's).
use super::patient::timestamp;
use super::{ApiQuery, ApiResult};
use crate::error::ErrorBody;
use crate::session::ApiCaller;
use crate::WebState;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use repeatrx_app::audit::TrailQuery;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

pub fn routes() -> Router<WebState> {
    Router::new().route("/audit", get(search))
}

#[derive(OpenApi)]
#[openapi(paths(search), components(schemas(TrailEntryDto, TrailPageDto)))]
pub struct AuditApi;

/// One entry of the trail.
#[derive(Serialize, ToSchema)]
pub struct TrailEntryDto {
    /// Its number in the hash chain.
    pub seq: i64,
    /// RFC 3339, UTC.
    pub at: String,
    pub actor_id: Option<String>,
    pub who: String,
    pub role: Option<String>,
    pub organisation: String,
    pub action: String,
    pub patient_id: Option<String>,
    pub address: String,
    /// The reason given, where one was required.
    pub purpose: Option<String>,
    pub detail: String,
}

/// A page of entries, newest first.
#[derive(Serialize, ToSchema)]
pub struct TrailPageDto {
    pub entries: Vec<TrailEntryDto>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub older: Option<i64>,
}

/// Searches the caller's organisation's trail, and every entry about its patients.
#[utoipa::path(get, path = "/audit", tag = "audit", security(("bearer" = [])),
    params(
        ("actor" = Option<String>, Query, description = "A member of staff's account id"),
        ("patient" = Option<String>, Query, description = "A patient's RepeatRx id"),
        ("kind" = Option<String>, Query, description = "patient, sign_in, account, custody, admin or audit"),
        ("from" = Option<String>, Query, description = "First day (London), YYYY-MM-DD"),
        ("to" = Option<String>, Query, description = "Last day, inclusive"),
        ("before" = Option<i64>, Query, description = "Only entries older than this number (the previous page's `older`)"),
    ),
    responses(
        (status = 200, body = TrailPageDto),
        (status = 401, body = ErrorBody, description = "Not signed in"),
        (status = 403, body = ErrorBody, description = "Not a manager or operator"),
        (status = 422, body = ErrorBody, description = "A criterion is not valid"),
    ))]
async fn search(
    State(state): State<WebState>,
    ApiCaller(s): ApiCaller,
    ApiQuery(query): ApiQuery<TrailQuery>,
) -> ApiResult<TrailPageDto> {
    let page = state.app.search_trail(&s.actor, &query).await?;
    Ok(Json(TrailPageDto {
        entries: page
            .lines
            .into_iter()
            .map(|l| TrailEntryDto {
                seq: l.seq,
                at: timestamp(l.record.at),
                actor_id: l.record.actor.map(|a| a.to_string()),
                who: l.who,
                role: l.record.actor_role.map(|r| r.label().to_string()),
                organisation: l.organisation,
                action: l.record.action,
                patient_id: l.record.patient.map(|p| p.to_string()),
                address: l.record.address,
                purpose: l.record.purpose,
                detail: l.record.detail,
            })
            .collect(),
        older: page.older,
    }))
}
