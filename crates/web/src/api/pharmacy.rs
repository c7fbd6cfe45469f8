//! The Pharmacy Dashboard's actions as JSON: the order queue, working an order (accept, send to
//! the prescriber, dispensing steps), finding and registering patients, stopping repeat items,
//! and the catalogue and practice lists staff choose from.
use super::patient::{OrderDto, PatientDto, PatientSummaryDto, RepeatItemDto};
use super::{created, path_id, ApiJson, ApiPath, ApiQuery, ApiResult, Created};
use crate::error::ErrorBody;
use crate::session::ApiCaller;
use crate::WebState;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use repeatrx_app::patients::{PatientSearch, RegisterPatientInput};
use repeatrx_app::queue::{QueueQuery, QueueRow, QUEUE_PAGE};
use repeatrx_app::AppError;
use repeatrx_domain::catalogue::Medicine;
use repeatrx_domain::ids::{OrderId, OrderItemId, RepeatItemId};
use repeatrx_domain::order::{ItemEvent, OrderStage};
use repeatrx_store::Practice;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/orders/{id}/accept", post(accept))
        .route("/orders/{id}/send-to-prescriber", post(send_to_prescriber))
        .route("/orders/{id}/items/{item_id}/steps", post(step))
        .route("/pharmacy/queue", get(queue))
        .route("/pharmacy/patients", get(find_patients).post(register_patient))
        .route("/repeat-items/{id}/stop", post(stop_repeat_item))
        .route("/catalogue", get(catalogue))
        .route("/practices", get(practices))
}

#[derive(OpenApi)]
#[openapi(
    paths(
        accept,
        send_to_prescriber,
        step,
        queue,
        find_patients,
        register_patient,
        stop_repeat_item,
        catalogue,
        practices
    ),
    components(schemas(
        QueueDto,
        QueueRowDto,
        StageCountDto,
        StepRequest,
        RegisterPatientRequest,
        RegisteredDto,
        MedicineDto,
        PracticeDto
    ))
)]
pub struct PharmacyApi;

// ---------------------------------------------------------------------------------------------
// DTOs
// ---------------------------------------------------------------------------------------------

/// One queue row: the order, who it is for, and whether it has sat too long in its stage.
#[derive(Serialize, ToSchema)]
pub struct QueueRowDto {
    pub order: OrderDto,
    pub patient: PatientSummaryDto,
    /// Longer in its stage than the deployment's target.
    pub overdue: bool,
}

impl From<&QueueRow> for QueueRowDto {
    fn from(r: &QueueRow) -> Self {
        Self { order: OrderDto::from(&r.order), patient: PatientSummaryDto::from(&r.patient), overdue: r.overdue }
    }
}

#[derive(Serialize, ToSchema)]
pub struct StageCountDto {
    pub stage: String,
    pub label: String,
    pub count: i64,
}

/// A page of the pharmacy's queue, oldest first, with the count of orders in each open stage.
#[derive(Serialize, ToSchema)]
pub struct QueueDto {
    pub rows: Vec<QueueRowDto>,
    /// Every open stage in workflow order, zero counts included.
    pub counts: Vec<StageCountDto>,
    /// How many rows on this page are overdue.
    pub overdue: usize,
    pub page: u32,
    pub page_size: u32,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QueueParams {
    /// One stage (submitted, in_review, with_prescriber, preparing, ready, ...); every open stage
    /// when absent.
    #[serde(default)]
    pub stage: Option<String>,
    /// Whole words of the patient's given or family name (any case); parts of words match nothing,
    /// as names are stored encrypted and compared by keyed hash.
    #[serde(default)]
    pub name: Option<String>,
    /// Patient's date of birth, YYYY-MM-DD.
    #[serde(default)]
    pub dob: Option<String>,
    /// Patient's NHS number.
    #[serde(default)]
    pub nhs: Option<String>,
    /// Page number, from 0.
    #[serde(default)]
    pub page: Option<u32>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PatientSearchParams {
    /// Whole words of the given or family name (any case); parts of words match nothing, as names
    /// are stored encrypted and compared by keyed hash.
    #[serde(default)]
    pub name: Option<String>,
    /// Date of birth, YYYY-MM-DD.
    #[serde(default)]
    pub dob: Option<String>,
    /// NHS number.
    #[serde(default)]
    pub nhs: Option<String>,
}

fn search(name: Option<String>, dob: Option<String>, nhs: Option<String>) -> PatientSearch {
    PatientSearch { name: name.unwrap_or_default(), dob: dob.unwrap_or_default(), nhs: nhs.unwrap_or_default() }
}

/// Parses an optional stage filter; an unknown stage is refused with a sentence (422).
pub fn stage_filter(stage: Option<&str>) -> Result<Option<OrderStage>, AppError> {
    match stage.map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => Ok(Some(OrderStage::parse(s)?)),
    }
}

/// A dispensing step on one item.
#[derive(Deserialize, ToSchema)]
pub struct StepRequest {
    /// start_preparing, ready_to_collect, ready_to_collect_owing, ready_to_dispatch,
    /// ready_to_dispatch_owing, collected, dispatched, not_dispensed or uncollected.
    pub step: String,
}

/// A patient to register at the caller's pharmacy.
#[derive(Deserialize, ToSchema)]
pub struct RegisterPatientRequest {
    pub given_name: String,
    pub family_name: String,
    /// YYYY-MM-DD.
    pub date_of_birth: String,
    /// Ten digits with a valid check digit.
    pub nhs_number: String,
    /// The patient's practice (from GET /practices).
    pub practice_id: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    /// Create an online account for the patient (needs an email address).
    #[serde(default)]
    pub create_account: bool,
}

impl From<RegisterPatientRequest> for RegisterPatientInput {
    fn from(r: RegisterPatientRequest) -> Self {
        RegisterPatientInput {
            given_name: r.given_name,
            family_name: r.family_name,
            date_of_birth: r.date_of_birth,
            nhs_number: r.nhs_number,
            practice_id: r.practice_id,
            email: r.email.unwrap_or_default(),
            phone: r.phone.unwrap_or_default(),
            address: r.address.unwrap_or_default(),
            create_account: r.create_account,
        }
    }
}

/// The registered patient; with `create_account`, the address their invitation (a link to choose
/// a password) was emailed to.
#[derive(Serialize, ToSchema)]
pub struct RegisteredDto {
    pub patient: PatientDto,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invitation_sent_to: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CatalogueParams {
    /// Words that must all occur in the name, strength or form.
    #[serde(default)]
    pub q: Option<String>,
    /// At most this many results (1 to 50, default 20).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// A medicine from the catalogue.
#[derive(Serialize, ToSchema)]
pub struct MedicineDto {
    pub code: String,
    /// "Atorvastatin 20mg tablets".
    pub display_name: String,
    pub name: String,
    pub strength: String,
    pub form: String,
    pub pack_size: u32,
    /// Controlled-drug schedule: 0 when not controlled, else 2 to 5.
    pub controlled_schedule: u8,
    pub controlled_label: String,
    /// False for Schedule 2 and 3 controlled drugs, which cannot be ordered online.
    pub orderable_online: bool,
}

impl From<&Medicine> for MedicineDto {
    fn from(m: &Medicine) -> Self {
        Self {
            code: m.code.clone(),
            display_name: m.display_name(),
            name: m.name.clone(),
            strength: m.strength.clone(),
            form: m.form.clone(),
            pack_size: m.pack_size,
            controlled_schedule: m.schedule.number(),
            controlled_label: m.schedule.label().into(),
            orderable_online: !m.schedule.blocks_online_ordering(),
        }
    }
}

/// A practice a patient can be registered with.
#[derive(Serialize, ToSchema)]
pub struct PracticeDto {
    pub id: String,
    pub name: String,
    pub ods_code: String,
    /// Its prescribers authorise on RepeatRx; otherwise the pharmacy records their decisions.
    pub on_repeatrx: bool,
}

impl From<&Practice> for PracticeDto {
    fn from(p: &Practice) -> Self {
        Self { id: p.id.to_string(), name: p.name.clone(), ods_code: p.ods_code.clone(), on_repeatrx: p.on_repeatrx }
    }
}

// ---------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------

/// The pharmacy starts work on a submitted order; from now on the patient cannot cancel it.
#[utoipa::path(post, path = "/orders/{id}/accept", tag = "pharmacy", security(("bearer" = [])),
    params(("id" = String, Path, description = "Order id")),
    responses(
        (status = 200, body = OrderDto, description = "The order, stage in_review"),
        (status = 401, body = ErrorBody, description = "Not signed in"),
        (status = 403, body = ErrorBody, description = "The role may not process orders"),
        (status = 404, body = ErrorBody, description = "No such order at the caller's pharmacy"),
        (status = 409, body = ErrorBody, description = "The order is not submitted, or was changed meanwhile"),
    ))]
async fn accept(
    State(state): State<WebState>,
    ApiCaller(s): ApiCaller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<OrderDto> {
    let id: OrderId = path_id(&id, "order")?;
    let order = state.app.accept_order(&s.actor, id).await?;
    Ok(Json(OrderDto::from(&order)))
}

/// Sends every requested item of an accepted order to the prescriber.
#[utoipa::path(post, path = "/orders/{id}/send-to-prescriber", tag = "pharmacy", security(("bearer" = [])),
    params(("id" = String, Path, description = "Order id")),
    responses(
        (status = 200, body = OrderDto, description = "The order, stage with_prescriber"),
        (status = 401, body = ErrorBody, description = "Not signed in"),
        (status = 403, body = ErrorBody, description = "The role may not process orders"),
        (status = 404, body = ErrorBody, description = "No such order at the caller's pharmacy"),
        (status = 409, body = ErrorBody, description = "Not an accepted order with requested items"),
    ))]
async fn send_to_prescriber(
    State(state): State<WebState>,
    ApiCaller(s): ApiCaller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<OrderDto> {
    let id: OrderId = path_id(&id, "order")?;
    let order = state.app.send_to_prescriber(&s.actor, id).await?;
    Ok(Json(OrderDto::from(&order)))
}

/// Records a dispensing step on one item (ready to collect, collected, ...).
#[utoipa::path(post, path = "/orders/{id}/items/{item_id}/steps", tag = "pharmacy", security(("bearer" = [])),
    params(("id" = String, Path, description = "Order id"), ("item_id" = String, Path, description = "Order item id")),
    request_body = StepRequest,
    responses(
        (status = 200, body = OrderDto),
        (status = 400, body = ErrorBody, description = "Malformed JSON"),
        (status = 401, body = ErrorBody, description = "Not signed in"),
        (status = 403, body = ErrorBody, description = "The role may not process orders"),
        (status = 404, body = ErrorBody, description = "No such order at the caller's pharmacy"),
        (status = 409, body = ErrorBody, description = "The item's state does not allow this step"),
        (status = 415, body = ErrorBody, description = "Not application/json"),
        (status = 422, body = ErrorBody, description = "Unknown step, or not an item of this order"),
    ))]
async fn step(
    State(state): State<WebState>,
    ApiCaller(s): ApiCaller,
    ApiPath((id, item)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<StepRequest>,
) -> ApiResult<OrderDto> {
    let id: OrderId = path_id(&id, "order")?;
    let item: OrderItemId = path_id(&item, "order item")?;
    let event = ItemEvent::parse(body.step.trim()).map_err(AppError::from)?;
    let order = state.app.dispense_step(&s.actor, id, item, event).await?;
    Ok(Json(OrderDto::from(&order)))
}

/// The pharmacy's queue, oldest first, filtered by stage and patient, 50 rows a page.
#[utoipa::path(get, path = "/pharmacy/queue", tag = "pharmacy", security(("bearer" = [])),
    params(QueueParams),
    responses(
        (status = 200, body = QueueDto),
        (status = 401, body = ErrorBody, description = "Not signed in"),
        (status = 403, body = ErrorBody, description = "Not pharmacy staff"),
        (status = 422, body = ErrorBody, description = "Unknown stage, or a search value in the wrong form"),
    ))]
async fn queue(
    State(state): State<WebState>,
    ApiCaller(s): ApiCaller,
    ApiQuery(p): ApiQuery<QueueParams>,
) -> ApiResult<QueueDto> {
    let query = QueueQuery {
        stage: stage_filter(p.stage.as_deref())?,
        search: search(p.name, p.dob, p.nhs),
        page: p.page.unwrap_or(0),
    };
    let view = state.app.pharmacy_queue(&s.actor, &query).await?;
    Ok(Json(QueueDto {
        rows: view.rows.iter().map(QueueRowDto::from).collect(),
        counts: view
            .counts
            .iter()
            .map(|(stage, n)| StageCountDto { stage: stage.as_str().into(), label: stage.label().into(), count: *n })
            .collect(),
        overdue: view.overdue,
        page: query.page,
        page_size: QUEUE_PAGE,
    }))
}

/// The pharmacy's patients matching the search (all of them, alphabetically, when empty).
#[utoipa::path(get, path = "/pharmacy/patients", tag = "pharmacy", security(("bearer" = [])),
    params(PatientSearchParams),
    responses(
        (status = 200, body = Vec<PatientDto>),
        (status = 401, body = ErrorBody, description = "Not signed in"),
        (status = 403, body = ErrorBody, description = "Not pharmacy staff"),
        (status = 422, body = ErrorBody, description = "A search value in the wrong form"),
    ))]
async fn find_patients(
    State(state): State<WebState>,
    ApiCaller(s): ApiCaller,
    ApiQuery(p): ApiQuery<PatientSearchParams>,
) -> ApiResult<Vec<PatientDto>> {
    let patients = state.app.find_patients(&s.actor, &search(p.name, p.dob, p.nhs)).await?;
    Ok(Json(patients.iter().map(PatientDto::from).collect()))
}

/// Registers a patient at the caller's pharmacy, optionally with an online account.
#[utoipa::path(post, path = "/pharmacy/patients", tag = "pharmacy", security(("bearer" = [])),
    request_body = RegisterPatientRequest,
    responses(
        (status = 201, body = RegisteredDto, description = "The patient, and the account's one-time password if one was made"),
        (status = 400, body = ErrorBody, description = "Malformed JSON"),
        (status = 401, body = ErrorBody, description = "Not signed in"),
        (status = 403, body = ErrorBody, description = "Not pharmacy staff"),
        (status = 409, body = ErrorBody, description = "The email address already has an account"),
        (status = 415, body = ErrorBody, description = "Not application/json"),
        (status = 422, body = ErrorBody, description = "A field is missing or invalid"),
    ))]
async fn register_patient(
    State(state): State<WebState>,
    ApiCaller(s): ApiCaller,
    ApiJson(body): ApiJson<RegisterPatientRequest>,
) -> Created<RegisteredDto> {
    let registered = state.app.register_patient(&s.actor, &body.into()).await?;
    created(RegisteredDto {
        patient: PatientDto::from(&registered.patient),
        invitation_sent_to: registered.invited.as_ref().map(|e| e.to_string()),
    })
}

/// Stops a repeat item; it stays on the list, marked stopped.
#[utoipa::path(post, path = "/repeat-items/{id}/stop", tag = "pharmacy", security(("bearer" = [])),
    params(("id" = String, Path, description = "Repeat item id")),
    responses(
        (status = 200, body = RepeatItemDto),
        (status = 401, body = ErrorBody, description = "Not signed in"),
        (status = 403, body = ErrorBody, description = "The role may not edit repeat lists"),
        (status = 404, body = ErrorBody, description = "No such repeat item in the caller's reach"),
        (status = 409, body = ErrorBody, description = "Already stopped"),
    ))]
async fn stop_repeat_item(
    State(state): State<WebState>,
    ApiCaller(s): ApiCaller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<RepeatItemDto> {
    let id: RepeatItemId = path_id(&id, "repeat item")?;
    let item = state.app.stop_repeat_item(&s.actor, id).await?;
    Ok(Json(RepeatItemDto::from(&item)))
}

/// Searches the medication catalogue (staff only).
#[utoipa::path(get, path = "/catalogue", tag = "pharmacy", security(("bearer" = [])),
    params(CatalogueParams),
    responses(
        (status = 200, body = Vec<MedicineDto>),
        (status = 401, body = ErrorBody, description = "Not signed in"),
        (status = 403, body = ErrorBody, description = "Patients cannot search the catalogue"),
        (status = 422, body = ErrorBody, description = "limit is not a number"),
    ))]
async fn catalogue(
    State(state): State<WebState>,
    ApiCaller(s): ApiCaller,
    ApiQuery(p): ApiQuery<CatalogueParams>,
) -> ApiResult<Vec<MedicineDto>> {
    let limit = p.limit.unwrap_or(20).clamp(1, 50) as usize;
    let found = state.app.search_catalogue(&s.actor, p.q.as_deref().unwrap_or(""), limit)?;
    Ok(Json(found.into_iter().map(MedicineDto::from).collect()))
}

/// Practices a patient can be registered with (staff only).
#[utoipa::path(get, path = "/practices", tag = "pharmacy", security(("bearer" = [])),
    responses(
        (status = 200, body = Vec<PracticeDto>),
        (status = 401, body = ErrorBody, description = "Not signed in"),
        (status = 403, body = ErrorBody, description = "Not staff"),
    ))]
async fn practices(State(state): State<WebState>, ApiCaller(s): ApiCaller) -> ApiResult<Vec<PracticeDto>> {
    let practices = state.app.practices_for_staff(&s.actor).await?;
    Ok(Json(practices.iter().map(PracticeDto::from).collect()))
}
