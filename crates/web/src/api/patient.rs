//! The patient's side of the API, also used by staff for a patient of their tenant: the patient's
//! details, their repeat list with what can be ordered today and why not (and, for prescribers and
//! pharmacy staff, adding to it), placing and cancelling orders, and reading an order with its
//! history. Also the order and repeat-item DTOs the other
//! API modules share: every response is an explicit DTO, never a serialised domain type.
use super::{created, path_id, ApiJson, ApiPath, ApiResult, Created};
use crate::error::ErrorBody;
use crate::session::{ApiCaller, ClientInfo};
use crate::WebState;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use jiff::Timestamp;
use repeatrx_app::orders::{OrderView, SubmitOrderInput};
use repeatrx_app::patients::RepeatLine;
use repeatrx_app::AppError;
use repeatrx_domain::access::Role;
use repeatrx_domain::ids::{OrderId, PatientId, RepeatItemId};
use repeatrx_domain::order::{Decision, Order, OrderItem, Transition};
use repeatrx_domain::patient::{Fulfilment, Patient};
use repeatrx_domain::repeat::{Orderability, OrderingPolicy, RepeatItem, RepeatTermsInput};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/patients/{id}", get(patient_details))
        .route("/patients/{id}/repeat-items", get(repeat_items).post(add_repeat_item))
        .route("/patients/{id}/orders", get(orders_of).post(place_order))
        .route("/orders/{id}", get(order))
        .route("/orders/{id}/cancel", post(cancel))
        .route("/patients/{id}/access-log", get(access_log))
        .route("/patients/{id}/export", get(export))
        .route("/patients/{id}/erasure", post(erase))
}

#[derive(OpenApi)]
#[openapi(
    paths(
        patient_details,
        repeat_items,
        add_repeat_item,
        orders_of,
        place_order,
        order,
        cancel,
        access_log,
        export,
        erase
    ),
    components(schemas(
        PatientDto,
        AccessLineDto,
        PatientSummaryDto,
        RepeatItemDto,
        RepeatLineDto,
        OrderDto,
        OrderItemDto,
        DecisionDto,
        OrderDetailDto,
        TransitionDto,
        PlaceOrderRequest,
        FulfilmentDto,
        RepeatTermsRequest
    ))
)]
pub struct PatientApi;

// ---------------------------------------------------------------------------------------------
// DTOs
// ---------------------------------------------------------------------------------------------

/// RFC 3339, UTC ("2026-11-23T14:05:00Z").
pub fn timestamp(ts: Timestamp) -> String {
    ts.to_string()
}

/// A patient's record, for the patient and their pharmacy or practice.
#[derive(Serialize, ToSchema)]
pub struct PatientDto {
    pub id: String,
    pub given_name: String,
    pub family_name: String,
    /// Given and family name.
    pub name: String,
    /// YYYY-MM-DD.
    pub date_of_birth: String,
    /// Ten digits, no spaces.
    pub nhs_number: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub pharmacy_id: String,
    pub practice_id: String,
}

impl From<&Patient> for PatientDto {
    fn from(p: &Patient) -> Self {
        Self {
            id: p.id.to_string(),
            given_name: p.given_name.as_str().to_string(),
            family_name: p.family_name.as_str().to_string(),
            name: p.full_name(),
            date_of_birth: p.date_of_birth.date().to_string(),
            nhs_number: p.nhs_number.as_str().to_string(),
            email: p.email.as_ref().map(|e| e.as_str().to_string()),
            phone: p.phone.clone(),
            address: p.address.clone(),
            pharmacy_id: p.pharmacy_id.to_string(),
            practice_id: p.practice_id.to_string(),
        }
    }
}

/// Who an order is for, as the queues show it.
#[derive(Serialize, ToSchema)]
pub struct PatientSummaryDto {
    pub id: String,
    pub name: String,
    /// YYYY-MM-DD.
    pub date_of_birth: String,
    /// Ten digits, no spaces.
    pub nhs_number: String,
}

impl From<&Patient> for PatientSummaryDto {
    fn from(p: &Patient) -> Self {
        Self {
            id: p.id.to_string(),
            name: p.full_name(),
            date_of_birth: p.date_of_birth.date().to_string(),
            nhs_number: p.nhs_number.as_str().to_string(),
        }
    }
}

/// One line of a repeat list: what the prescriber authorised and how much of it is left.
#[derive(Serialize, ToSchema)]
pub struct RepeatItemDto {
    pub id: String,
    pub patient_id: String,
    /// "Atorvastatin 20mg tablets".
    pub description: String,
    /// The catalogue code; absent for a free-text item.
    pub medicine_code: Option<String>,
    /// Typed in by hand rather than chosen from the catalogue.
    pub free_text: bool,
    pub drug_name: String,
    pub strength: String,
    pub form: String,
    pub quantity: u32,
    pub directions: String,
    pub cycle_days: i64,
    pub issues_authorised: u32,
    pub issues_remaining: u32,
    /// YYYY-MM-DD; absent before the first issue.
    pub next_due: Option<String>,
    /// YYYY-MM-DD.
    pub review_date: String,
    /// Controlled-drug schedule: 0 when not controlled, else 2 to 5.
    pub controlled_schedule: u8,
    /// "Not controlled", "Schedule 2 controlled drug", ...
    pub controlled_label: String,
    /// False once stopped.
    pub active: bool,
}

impl From<&RepeatItem> for RepeatItemDto {
    fn from(i: &RepeatItem) -> Self {
        let t = &i.terms;
        Self {
            id: i.id.to_string(),
            patient_id: i.patient_id.to_string(),
            description: t.description(),
            medicine_code: t.medicine_code.clone(),
            free_text: t.medicine_code.is_none(),
            drug_name: t.drug_name.clone(),
            strength: t.strength.clone(),
            form: t.form.clone(),
            quantity: t.quantity,
            directions: t.directions.clone(),
            cycle_days: t.cycle_days.get(),
            issues_authorised: t.issues_authorised,
            issues_remaining: i.issues_remaining,
            next_due: i.next_due.map(|d| d.to_string()),
            review_date: t.review_date.to_string(),
            controlled_schedule: t.schedule.number(),
            controlled_label: t.schedule.label().to_string(),
            active: i.active,
        }
    }
}

/// A repeat line with whether it can be ordered today, and if not, why.
#[derive(Serialize, ToSchema)]
pub struct RepeatLineDto {
    #[serde(flatten)]
    pub item: RepeatItemDto,
    pub orderable: bool,
    /// orderable, too_early, review_due, no_issues_left, controlled, on_open_order or stopped.
    pub status: String,
    /// The reason in words ("Too early to order: you can order this from 3 Dec 2026").
    pub reason: String,
    /// YYYY-MM-DD: the first day it may be ordered this cycle; absent before the first issue.
    pub opens_on: Option<String>,
}

fn status_of(o: &Orderability) -> &'static str {
    match o {
        Orderability::Orderable => "orderable",
        Orderability::TooEarly { .. } => "too_early",
        Orderability::ReviewDue { .. } => "review_due",
        Orderability::NoIssuesLeft => "no_issues_left",
        Orderability::Controlled { .. } => "controlled",
        Orderability::OnOpenOrder => "on_open_order",
        Orderability::Stopped => "stopped",
    }
}

impl RepeatLineDto {
    fn new(line: &RepeatLine, policy: &OrderingPolicy) -> Self {
        Self {
            item: RepeatItemDto::from(&line.item),
            orderable: line.orderability.is_orderable(),
            status: status_of(&line.orderability).into(),
            reason: line.orderability.reason(),
            opens_on: line.item.opens_on(policy).map(|d| d.to_string()),
        }
    }
}

/// A prescriber's decision on an item.
#[derive(Serialize, ToSchema)]
pub struct DecisionDto {
    /// approve, change or reject.
    pub decision: String,
    /// For a rejection: the reason code, e.g. `medication_review_needed`.
    pub reason: Option<String>,
    /// For a rejection: the reason in words.
    pub reason_label: Option<String>,
    /// What changed (change), or the prescriber's explanation (reject).
    pub note: Option<String>,
    /// For a rejection: what the patient should do next.
    pub next_step: Option<String>,
}

impl From<&Decision> for DecisionDto {
    fn from(d: &Decision) -> Self {
        let none = |decision: &str| DecisionDto {
            decision: decision.into(),
            reason: None,
            reason_label: None,
            note: None,
            next_step: None,
        };
        match d {
            Decision::Approve => none("approve"),
            Decision::Change { note } => DecisionDto { note: Some(note.clone()), ..none("change") },
            Decision::Reject { code, note, next_step } => DecisionDto {
                decision: "reject".into(),
                reason: Some(code.as_str().into()),
                reason_label: Some(code.label().into()),
                note: note.clone(),
                next_step: Some(next_step.clone()),
            },
        }
    }
}

/// One item on an order.
#[derive(Serialize, ToSchema)]
pub struct OrderItemDto {
    pub id: String,
    pub repeat_item_id: String,
    /// "Atorvastatin 20mg tablets × 28", fixed when ordered.
    pub description: String,
    /// requested, with_prescriber, approved, changed, rejected, preparing, ready_to_collect, ...
    pub state: String,
    pub state_label: String,
    pub decision: Option<DecisionDto>,
}

impl From<&OrderItem> for OrderItemDto {
    fn from(i: &OrderItem) -> Self {
        Self {
            id: i.id.to_string(),
            repeat_item_id: i.repeat_item_id.to_string(),
            description: i.description.clone(),
            state: i.state.as_str().into(),
            state_label: i.state.label().into(),
            decision: i.decision.as_ref().map(DecisionDto::from),
        }
    }
}

/// An order and its items.
#[derive(Serialize, ToSchema)]
pub struct OrderDto {
    pub id: String,
    pub patient_id: String,
    pub pharmacy_id: String,
    pub practice_id: String,
    /// submitted, in_review, with_prescriber, preparing, ready, completed, closed or cancelled.
    pub stage: String,
    pub stage_label: String,
    /// collection or delivery.
    pub fulfilment: String,
    pub note: Option<String>,
    /// Placed by pharmacy staff on the patient's behalf.
    pub on_behalf: bool,
    /// The pharmacy has started work on it (the patient can no longer cancel).
    pub accepted: bool,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// RFC 3339, UTC: when the order entered its current stage.
    pub stage_entered_at: String,
    pub items: Vec<OrderItemDto>,
}

impl From<&Order> for OrderDto {
    fn from(o: &Order) -> Self {
        Self {
            id: o.id.to_string(),
            patient_id: o.patient_id.to_string(),
            pharmacy_id: o.pharmacy_id.to_string(),
            practice_id: o.practice_id.to_string(),
            stage: o.stage.as_str().into(),
            stage_label: o.stage.label().into(),
            fulfilment: o.fulfilment.as_str().into(),
            note: o.note.clone(),
            on_behalf: o.on_behalf,
            accepted: o.accepted,
            created_at: timestamp(o.created_at),
            stage_entered_at: timestamp(o.stage_entered_at),
            items: o.items.iter().map(OrderItemDto::from).collect(),
        }
    }
}

/// A recorded change: who (by role), when, from, to and why.
#[derive(Serialize, ToSchema)]
pub struct TransitionDto {
    /// The item it concerns; absent for a change of the whole order.
    pub item_id: Option<String>,
    pub from: String,
    pub to: String,
    pub by_role: String,
    /// RFC 3339, UTC.
    pub at: String,
    pub reason: Option<String>,
}

impl From<&Transition> for TransitionDto {
    fn from(t: &Transition) -> Self {
        Self {
            item_id: t.item_id.map(|i| i.to_string()),
            from: t.from.clone(),
            to: t.to.clone(),
            by_role: t.actor_role.as_str().into(),
            at: timestamp(t.at),
            reason: t.reason.clone(),
        }
    }
}

/// An order with its items, decisions, patient and history.
#[derive(Serialize, ToSchema)]
pub struct OrderDetailDto {
    #[serde(flatten)]
    pub order: OrderDto,
    pub patient: PatientSummaryDto,
    /// Oldest first.
    pub transitions: Vec<TransitionDto>,
}

impl From<&OrderView> for OrderDetailDto {
    fn from(v: &OrderView) -> Self {
        Self {
            order: OrderDto::from(&v.order),
            patient: PatientSummaryDto::from(&v.patient),
            transitions: v.transitions.iter().map(TransitionDto::from).collect(),
        }
    }
}

#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum FulfilmentDto {
    Collection,
    Delivery,
}

/// An order to place.
#[derive(Deserialize, ToSchema)]
pub struct PlaceOrderRequest {
    /// Ids of repeat items from the patient's repeat list.
    pub items: Vec<String>,
    pub fulfilment: FulfilmentDto,
    /// A note for the pharmacy (at most 500 characters).
    #[serde(default)]
    pub note: Option<String>,
}

impl PlaceOrderRequest {
    fn into_input(self) -> Result<SubmitOrderInput, AppError> {
        let items = self
            .items
            .iter()
            .map(|s| s.parse::<RepeatItemId>().map_err(|_| AppError::NotFound("repeat item")))
            .collect::<Result<Vec<_>, _>>()?;
        let fulfilment = match self.fulfilment {
            FulfilmentDto::Collection => Fulfilment::Collection,
            FulfilmentDto::Delivery => Fulfilment::Delivery,
        };
        Ok(SubmitOrderInput { items, fulfilment, note: self.note.unwrap_or_default() })
    }
}

/// A repeat authorisation: a catalogue code, or drug name, strength and form typed in.
#[derive(Deserialize, ToSchema)]
pub struct RepeatTermsRequest {
    /// A catalogue code (GET /catalogue); name, strength, form and schedule then come from it.
    #[serde(default)]
    pub medicine_code: Option<String>,
    #[serde(default)]
    pub drug_name: String,
    #[serde(default)]
    pub strength: String,
    #[serde(default)]
    pub form: String,
    pub quantity: i64,
    pub directions: String,
    /// Days between issues, 7 to 365.
    pub cycle_days: i64,
    /// Issues authorised, 1 to 52.
    pub issues: i64,
    /// YYYY-MM-DD, in the future and within two years.
    pub review_date: String,
    /// Prescribers sign a new authorisation with the current one-time code of their
    /// authenticator app; pharmacy staff recording one leave it out.
    #[serde(default)]
    pub code: Option<String>,
}

impl From<RepeatTermsRequest> for RepeatTermsInput {
    fn from(r: RepeatTermsRequest) -> Self {
        RepeatTermsInput {
            medicine_code: r.medicine_code,
            drug_name: r.drug_name,
            strength: r.strength,
            form: r.form,
            quantity: r.quantity,
            directions: r.directions,
            cycle_days: r.cycle_days,
            issues: r.issues,
            review_date: r.review_date,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------

/// A patient's details (the patient themselves, or staff of their pharmacy or practice).
#[utoipa::path(get, path = "/patients/{id}", tag = "patients", security(("bearer" = [])),
    params(("id" = String, Path, description = "Patient id (a patient finds their own in GET /me)")),
    responses(
        (status = 200, body = PatientDto),
        (status = 401, body = ErrorBody, description = "Not signed in"),
        (status = 403, body = ErrorBody, description = "The role may not see patients"),
        (status = 404, body = ErrorBody, description = "No such patient in the caller's reach"),
    ))]
async fn patient_details(
    State(state): State<WebState>,
    ApiCaller(s): ApiCaller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<PatientDto> {
    let id: PatientId = path_id(&id, "patient")?;
    let patient = state.app.patient_details(&s.actor, id).await?;
    Ok(Json(PatientDto::from(&patient)))
}

/// One time a member of staff reached the patient's record.
#[derive(Serialize, ToSchema)]
pub struct AccessLineDto {
    pub at: String,
    pub who: String,
    pub role: String,
    pub organisation: String,
    pub what: String,
    /// The reason given, where one was required (a custodian's break-glass access).
    pub purpose: Option<String>,
}

/// Everything RepeatRx holds about the patient (format `repeatrx-patient-export/1`): details,
/// pharmacy and practice, every repeat line, every order with its items and history, the online
/// account's sign-in activity, and who among staff reached the record. For the patient (C10), or
/// their pharmacy's staff at the counter (audited).
#[utoipa::path(get, path = "/patients/{id}/export", tag = "patients", security(("bearer" = [])),
    params(("id" = String, Path, description = "Patient id")),
    responses(
        (status = 200, description = "The patient's data", content_type = "application/json"),
        (status = 401, body = ErrorBody, description = "Not signed in"),
        (status = 404, body = ErrorBody, description = "No such patient in the caller's reach"),
    ))]
async fn export(
    State(state): State<WebState>,
    ApiCaller(s): ApiCaller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<repeatrx_app::export::PatientExport> {
    let id: PatientId = path_id(&id, "patient")?;
    Ok(Json(state.app.export_patient(&s.actor, id).await?))
}

/// A request to erase a patient for good.
#[derive(Deserialize, ToSchema)]
pub struct EraseBody {
    /// Must be true: everything is deleted for good.
    #[serde(default)]
    pub confirm: bool,
    /// The patient's own password (when the patient asks).
    #[serde(default)]
    pub password: Option<String>,
    /// Staff: who asked and how they were identified (at least 10 characters).
    #[serde(default)]
    pub reason: Option<String>,
}

/// When the erasure was done (RFC 3339, UTC).
#[derive(Serialize, ToSchema)]
pub struct ErasedDto {
    pub erased_at: String,
}

/// Erases the patient for good (P13): record, repeat lines, orders, online account and its
/// sessions, and the patient's data key, so copies elsewhere stay unreadable. The patient asks
/// with their password; their pharmacy's pharmacists and managers with a reason. Download the
/// export first: nothing can be recovered afterwards.
#[utoipa::path(post, path = "/patients/{id}/erasure", tag = "patients", security(("bearer" = [])),
    params(("id" = String, Path, description = "Patient id")),
    request_body = EraseBody,
    responses(
        (status = 200, body = ErasedDto, description = "Erased; the patient's sessions have ended"),
        (status = 422, body = ErrorBody, description = "Not confirmed, or the password or reason is missing or wrong"),
        (status = 401, body = ErrorBody, description = "Not signed in"),
        (status = 403, body = ErrorBody, description = "The role may not erase patients"),
        (status = 404, body = ErrorBody, description = "No such patient in the caller's reach"),
    ))]
async fn erase(
    State(state): State<WebState>,
    ApiCaller(s): ApiCaller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<EraseBody>,
) -> ApiResult<ErasedDto> {
    let id: PatientId = path_id(&id, "patient")?;
    let request = repeatrx_app::erasure::EraseRequest {
        confirm: body.confirm,
        password: body.password.unwrap_or_default().into(),
        reason: body.reason.unwrap_or_default(),
    };
    let at = state.app.erase_patient(&s.actor, id, &request).await?;
    Ok(Json(ErasedDto { erased_at: at.to_string() }))
}

/// Who among staff has reached the patient's record, newest first (last 100), from the audit trail.
#[utoipa::path(get, path = "/patients/{id}/access-log", tag = "patients", security(("bearer" = [])),
    params(("id" = String, Path, description = "Patient id")),
    responses(
        (status = 200, body = [AccessLineDto]),
        (status = 401, body = ErrorBody, description = "Not signed in"),
        (status = 404, body = ErrorBody, description = "No such patient in the caller's reach"),
    ))]
async fn access_log(
    State(state): State<WebState>,
    ApiCaller(s): ApiCaller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Vec<AccessLineDto>> {
    let id: PatientId = path_id(&id, "patient")?;
    let lines = state.app.patient_access_log(&s.actor, id).await?;
    Ok(Json(
        lines
            .into_iter()
            .map(|l| AccessLineDto {
                at: l.at.to_string(),
                who: l.who,
                role: l.role.into(),
                organisation: l.organisation,
                what: l.what.into(),
                purpose: l.purpose,
            })
            .collect(),
    ))
}

/// The patient's repeat list, active items first, each with whether it can be ordered today.
#[utoipa::path(get, path = "/patients/{id}/repeat-items", tag = "patients", security(("bearer" = [])),
    params(("id" = String, Path, description = "Patient id")),
    responses(
        (status = 200, body = Vec<RepeatLineDto>),
        (status = 401, body = ErrorBody, description = "Not signed in"),
        (status = 403, body = ErrorBody, description = "The role may not see patients"),
        (status = 404, body = ErrorBody, description = "No such patient in the caller's reach"),
    ))]
async fn repeat_items(
    State(state): State<WebState>,
    ApiCaller(s): ApiCaller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Vec<RepeatLineDto>> {
    let id: PatientId = path_id(&id, "patient")?;
    let (_, lines) = state.app.repeat_list(&s.actor, id).await?;
    let policy = &state.app.settings.ordering;
    Ok(Json(lines.iter().map(|l| RepeatLineDto::new(l, policy)).collect()))
}

/// The patient's orders, newest first.
#[utoipa::path(get, path = "/patients/{id}/orders", tag = "orders", security(("bearer" = [])),
    params(("id" = String, Path, description = "Patient id")),
    responses(
        (status = 200, body = Vec<OrderDto>),
        (status = 401, body = ErrorBody, description = "Not signed in"),
        (status = 403, body = ErrorBody, description = "The role may not see patients"),
        (status = 404, body = ErrorBody, description = "No such patient in the caller's reach"),
    ))]
async fn orders_of(
    State(state): State<WebState>,
    ApiCaller(s): ApiCaller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Vec<OrderDto>> {
    let id: PatientId = path_id(&id, "patient")?;
    let orders = state.app.orders_of(&s.actor, id).await?;
    Ok(Json(orders.iter().map(OrderDto::from).collect()))
}

/// Places an order (the patient, or pharmacy staff on the patient's behalf). Every chosen item
/// must be orderable today; otherwise nothing is ordered and each refused item is listed.
#[utoipa::path(post, path = "/patients/{id}/orders", tag = "orders", security(("bearer" = [])),
    params(("id" = String, Path, description = "Patient id")),
    request_body = PlaceOrderRequest,
    responses(
        (status = 201, body = OrderDto, description = "The order, stage submitted"),
        (status = 400, body = ErrorBody, description = "Malformed JSON"),
        (status = 401, body = ErrorBody, description = "Not signed in"),
        (status = 403, body = ErrorBody, description = "The role may not place orders"),
        (status = 404, body = ErrorBody, description = "No such patient, or an item not on their list"),
        (status = 409, body = ErrorBody, description = "Some items cannot be ordered now; `reasons` lists each"),
        (status = 413, body = ErrorBody, description = "Body over 64 KiB"),
        (status = 415, body = ErrorBody, description = "Not application/json"),
        (status = 422, body = ErrorBody, description = "A field is missing or invalid"),
    ))]
async fn place_order(
    State(state): State<WebState>,
    ApiCaller(s): ApiCaller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PlaceOrderRequest>,
) -> Created<OrderDto> {
    let id: PatientId = path_id(&id, "patient")?;
    let input = body.into_input()?;
    let order = state.app.submit_order(&s.actor, id, &input).await?;
    created(OrderDto::from(&order))
}

/// An order with its items, decisions and history.
#[utoipa::path(get, path = "/orders/{id}", tag = "orders", security(("bearer" = [])),
    params(("id" = String, Path, description = "Order id")),
    responses(
        (status = 200, body = OrderDetailDto),
        (status = 401, body = ErrorBody, description = "Not signed in"),
        (status = 403, body = ErrorBody, description = "The role may not see orders"),
        (status = 404, body = ErrorBody, description = "No such order in the caller's reach"),
    ))]
async fn order(
    State(state): State<WebState>,
    ApiCaller(s): ApiCaller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<OrderDetailDto> {
    let id: OrderId = path_id(&id, "order")?;
    let view = state.app.order_view(&s.actor, id).await?;
    Ok(Json(OrderDetailDto::from(&view)))
}

/// Cancels an order the pharmacy has not started yet.
#[utoipa::path(post, path = "/orders/{id}/cancel", tag = "orders", security(("bearer" = [])),
    params(("id" = String, Path, description = "Order id")),
    responses(
        (status = 200, body = OrderDto, description = "The order, stage cancelled"),
        (status = 401, body = ErrorBody, description = "Not signed in"),
        (status = 403, body = ErrorBody, description = "The role may not cancel orders"),
        (status = 404, body = ErrorBody, description = "No such order in the caller's reach"),
        (status = 409, body = ErrorBody, description = "The pharmacy has started the order; contact the pharmacy"),
    ))]
async fn cancel(
    State(state): State<WebState>,
    ApiCaller(s): ApiCaller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<OrderDto> {
    let id: OrderId = path_id(&id, "order")?;
    let order = state.app.cancel_order(&s.actor, id).await?;
    Ok(Json(OrderDto::from(&order)))
}

/// Adds an item to a patient's repeat list: a prescriber issues an authorisation; pharmacy staff
/// record one the practice sent them.
#[utoipa::path(post, path = "/patients/{id}/repeat-items", tag = "patients", security(("bearer" = [])),
    params(("id" = String, Path, description = "Patient id")),
    request_body = RepeatTermsRequest,
    responses(
        (status = 201, body = RepeatItemDto),
        (status = 400, body = ErrorBody, description = "Malformed JSON"),
        (status = 401, body = ErrorBody, description = "Not signed in"),
        (status = 403, body = ErrorBody, description = "The role may not edit repeat lists"),
        (status = 404, body = ErrorBody, description = "No such patient in the caller's reach"),
        (status = 415, body = ErrorBody, description = "Not application/json"),
        (status = 422, body = ErrorBody, description = "A field is missing or invalid"),
    ))]
async fn add_repeat_item(
    State(state): State<WebState>,
    ApiCaller(s): ApiCaller,
    ApiPath(id): ApiPath<String>,
    ClientInfo(client): ClientInfo,
    ApiJson(body): ApiJson<RepeatTermsRequest>,
) -> Created<RepeatItemDto> {
    let id: PatientId = path_id(&id, "patient")?;
    let body_code = body.code.clone();
    let input = RepeatTermsInput::from(body);
    let item = if s.actor.role == Role::Prescriber {
        state.app.issue_authorisation(&s.actor, id, &input, body_code.as_deref().unwrap_or(""), &client).await?
    } else {
        state.app.add_repeat_item(&s.actor, id, &input).await?
    };
    created(RepeatItemDto::from(&item))
}
