//! The prescriber's side: the practice's list of requests and the decision on each item. A
//! pharmacy records the decision itself when the patient's practice is not on RepeatRx; the app
//! decides which applies.
use super::patient::OrderDto;
use super::pharmacy::{stage_filter, QueueRowDto};
use super::{path_id, ApiJson, ApiPath, ApiQuery, ApiResult};
use crate::error::ErrorBody;
use crate::session::{ApiCaller, ClientInfo};
use crate::WebState;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use repeatrx_app::AppError;
use repeatrx_domain::ids::{OrderId, OrderItemId};
use repeatrx_domain::order::Decision;
use serde::Deserialize;
use utoipa::{IntoParams, OpenApi, ToSchema};

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/practice/requests", get(requests))
        .route("/orders/{id}/items/{item_id}/decision", post(decide))
}

#[derive(OpenApi)]
#[openapi(paths(requests, decide), components(schemas(DecisionRequest, DecisionKind)))]
pub struct PracticeApi;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RequestParams {
    /// Orders in this stage; those waiting for a prescriber (with_prescriber) when absent.
    #[serde(default)]
    pub stage: Option<String>,
}

#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    Approve,
    /// Approve with a change; `note` says what changed.
    Change,
    Reject,
}

impl DecisionKind {
    fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Approve => "approve",
            DecisionKind::Change => "change",
            DecisionKind::Reject => "reject",
        }
    }
}

/// A prescriber's decision on one item.
#[derive(Deserialize, ToSchema)]
pub struct DecisionRequest {
    pub decision: DecisionKind,
    /// For a rejection: medication_review_needed, appointment_needed, too_early,
    /// no_longer_prescribed, alternative_prescribed, tests_needed or other.
    #[serde(default)]
    pub reason: Option<String>,
    /// What changed (required for change), or an explanation for the patient (required for
    /// reason `other`).
    #[serde(default)]
    pub note: Option<String>,
    /// For a rejection: what the patient should do next; a sensible default follows the reason.
    #[serde(default)]
    pub next_step: Option<String>,
    /// Prescribers sign an approval or change with the current one-time code of their
    /// authenticator app (each code signs once); not needed to reject.
    #[serde(default)]
    pub code: Option<String>,
}

/// Requests waiting for the practice's prescribers, oldest first.
#[utoipa::path(get, path = "/practice/requests", tag = "practice", security(("bearer" = [])),
    params(RequestParams),
    responses(
        (status = 200, body = Vec<QueueRowDto>),
        (status = 401, body = ErrorBody, description = "Not signed in"),
        (status = 403, body = ErrorBody, description = "Not practice staff"),
        (status = 422, body = ErrorBody, description = "Unknown stage"),
    ))]
async fn requests(
    State(state): State<WebState>,
    ApiCaller(s): ApiCaller,
    ApiQuery(p): ApiQuery<RequestParams>,
) -> ApiResult<Vec<QueueRowDto>> {
    let rows = state.app.practice_requests(&s.actor, stage_filter(p.stage.as_deref())?).await?;
    Ok(Json(rows.iter().map(QueueRowDto::from).collect()))
}

/// Approves, changes or rejects one item: the prescriber of a practice on RepeatRx, or the
/// pharmacy on the prescriber's behalf when the practice is not on RepeatRx.
#[utoipa::path(post, path = "/orders/{id}/items/{item_id}/decision", tag = "practice", security(("bearer" = [])),
    params(("id" = String, Path, description = "Order id"), ("item_id" = String, Path, description = "Order item id")),
    request_body = DecisionRequest,
    responses(
        (status = 200, body = OrderDto),
        (status = 400, body = ErrorBody, description = "Malformed JSON"),
        (status = 401, body = ErrorBody, description = "Not signed in"),
        (status = 403, body = ErrorBody, description = "The role may not decide (e.g. a receptionist)"),
        (status = 404, body = ErrorBody, description = "No such order in the caller's reach"),
        (status = 409, body = ErrorBody, description = "The item is not with the prescriber, or the practice decides itself"),
        (status = 415, body = ErrorBody, description = "Not application/json"),
        (status = 422, body = ErrorBody, description = "Missing reason or note, or not an item of this order"),
    ))]
async fn decide(
    State(state): State<WebState>,
    ApiCaller(s): ApiCaller,
    ClientInfo(client): ClientInfo,
    ApiPath((id, item)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<DecisionRequest>,
) -> ApiResult<OrderDto> {
    let id: OrderId = path_id(&id, "order")?;
    let item: OrderItemId = path_id(&item, "order item")?;
    let decision = Decision::parse(
        body.decision.as_str(),
        body.reason.as_deref(),
        body.note.as_deref(),
        body.next_step.as_deref(),
    )
    .map_err(AppError::from)?;
    let order = state.app.decide_item(&s.actor, id, item, decision, body.code.as_deref(), &client).await?;
    Ok(Json(OrderDto::from(&order)))
}
