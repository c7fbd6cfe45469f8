//! Platform operators: list organisations and onboard pharmacies and practices with their first
//! manager. Nothing here returns patient data.
use super::patient::timestamp;
use super::{created, ApiJson, ApiResult, Created};
use crate::error::ErrorBody;
use crate::session::ApiCaller;
use crate::WebState;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use repeatrx_app::admin::{NewOrganisationInput, Onboarded};
use repeatrx_store::{Pharmacy, Practice};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/admin/organisations", get(organisations))
        .route("/admin/pharmacies", post(create_pharmacy))
        .route("/admin/practices", post(create_practice))
        .route("/admin/departures", get(departures).post(mark_leaving))
}

#[derive(OpenApi)]
#[openapi(
    paths(organisations, create_pharmacy, create_practice, departures, mark_leaving),
    components(schemas(
        OrganisationDto,
        OrganisationsDto,
        NewOrganisationRequest,
        OnboardedDto,
        DepartureDto,
        LeavingRequest
    ))
)]
pub struct AdminApi;

/// A pharmacy or practice.
#[derive(Serialize, ToSchema)]
pub struct OrganisationDto {
    pub id: String,
    pub name: String,
    pub ods_code: String,
    pub address: String,
    pub email: Option<String>,
    /// Practices only: whether its prescribers authorise on RepeatRx.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_repeatrx: Option<bool>,
    /// RFC 3339, UTC.
    pub created_at: String,
}

impl From<&Pharmacy> for OrganisationDto {
    fn from(p: &Pharmacy) -> Self {
        Self {
            id: p.id.to_string(),
            name: p.name.clone(),
            ods_code: p.ods_code.clone(),
            address: p.address.clone(),
            email: p.email.as_ref().map(|e| e.as_str().to_string()),
            on_repeatrx: None,
            created_at: timestamp(p.created_at),
        }
    }
}

impl From<&Practice> for OrganisationDto {
    fn from(p: &Practice) -> Self {
        Self {
            id: p.id.to_string(),
            name: p.name.clone(),
            ods_code: p.ods_code.clone(),
            address: p.address.clone(),
            email: p.email.as_ref().map(|e| e.as_str().to_string()),
            on_repeatrx: Some(p.on_repeatrx),
            created_at: timestamp(p.created_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct OrganisationsDto {
    pub pharmacies: Vec<OrganisationDto>,
    pub practices: Vec<OrganisationDto>,
}

/// A pharmacy or practice to create, with its first manager.
#[derive(Deserialize, ToSchema)]
pub struct NewOrganisationRequest {
    pub name: String,
    /// The NHS ODS code, 3 to 10 letters and digits.
    pub ods_code: String,
    #[serde(default)]
    pub address: Option<String>,
    /// The organisation's own email address.
    #[serde(default)]
    pub email: Option<String>,
    pub manager_name: String,
    pub manager_email: String,
    /// Practices only: whether its prescribers authorise on RepeatRx.
    #[serde(default)]
    pub on_repeatrx: bool,
}

impl From<NewOrganisationRequest> for NewOrganisationInput {
    fn from(r: NewOrganisationRequest) -> Self {
        NewOrganisationInput {
            name: r.name,
            ods_code: r.ods_code,
            address: r.address.unwrap_or_default(),
            email: r.email.unwrap_or_default(),
            manager_name: r.manager_name,
            manager_email: r.manager_email,
            on_repeatrx: r.on_repeatrx,
        }
    }
}

/// The new organisation; its first manager has been emailed an invitation to choose a password.
#[derive(Serialize, ToSchema)]
pub struct OnboardedDto {
    pub organisation: OrganisationDto,
    pub manager_email: String,
    /// RFC 3339, UTC: when the invitation link stops working.
    pub invitation_expires_at: String,
}

impl<'a, T> From<&'a Onboarded<T>> for OnboardedDto
where
    OrganisationDto: From<&'a T>,
{
    fn from(o: &'a Onboarded<T>) -> Self {
        Self {
            organisation: OrganisationDto::from(&o.organisation),
            manager_email: o.manager_email.as_str().to_string(),
            invitation_expires_at: timestamp(o.invitation_expires_at),
        }
    }
}

/// A pharmacy leaving RepeatRx (P12) and its countdown.
#[derive(Serialize, ToSchema)]
pub struct DepartureDto {
    pub pharmacy_id: String,
    pub pharmacy_name: String,
    /// RFC 3339, UTC.
    pub marked_at: String,
    /// When every patient's data is deleted at the latest (RFC 3339, UTC).
    pub delete_after: String,
    /// Whole hours left before deletion (0 when due or done).
    pub hours_left: i64,
    /// When the deletion was done, if it was.
    pub deleted_at: Option<String>,
}

/// Mark a pharmacy as leaving.
#[derive(Deserialize, ToSchema)]
pub struct LeavingRequest {
    pub pharmacy_id: String,
    /// Days before its patients' data is deleted: 0 to 7 (default 7).
    #[serde(default = "seven")]
    pub grace_days: u8,
    /// Must be true: its staff are locked out at once.
    #[serde(default)]
    pub confirm: bool,
}

fn seven() -> u8 {
    repeatrx_domain::departure::MAX_GRACE_DAYS
}

/// Pharmacies leaving or gone, oldest first, with the time left before their patients' data is deleted.
#[utoipa::path(get, path = "/admin/departures", tag = "admin", security(("bearer" = [])),
    responses(
        (status = 200, body = [DepartureDto]),
        (status = 401, body = ErrorBody, description = "Not signed in"),
        (status = 403, body = ErrorBody, description = "Not a platform operator"),
    ))]
async fn departures(State(state): State<WebState>, ApiCaller(s): ApiCaller) -> ApiResult<Vec<DepartureDto>> {
    let now = state.app.clock.now();
    let list = state.app.departures(&s.actor).await?;
    Ok(Json(list.iter().map(|(p, d)| departure_dto(p, d, now)).collect()))
}

fn departure_dto(p: &Pharmacy, d: &repeatrx_store::PharmacyDeparture, now: jiff::Timestamp) -> DepartureDto {
    DepartureDto {
        pharmacy_id: p.id.to_string(),
        pharmacy_name: p.name.clone(),
        marked_at: timestamp(d.marked_at),
        delete_after: timestamp(d.delete_after),
        hours_left: if d.deleted_at.is_some() {
            0
        } else {
            repeatrx_domain::departure::hours_left(now, d.delete_after)
        },
        deleted_at: d.deleted_at.map(timestamp),
    }
}

/// Marks a pharmacy as leaving (P12): its staff are locked out at once, its patients are emailed,
/// it takes no new orders, and all its patients' data is deleted after the grace (at most 7 days).
#[utoipa::path(post, path = "/admin/departures", tag = "admin", security(("bearer" = [])),
    request_body = LeavingRequest,
    responses(
        (status = 201, body = DepartureDto),
        (status = 401, body = ErrorBody, description = "Not signed in"),
        (status = 403, body = ErrorBody, description = "Not a platform operator"),
        (status = 404, body = ErrorBody, description = "No such pharmacy"),
        (status = 409, body = ErrorBody, description = "The pharmacy is already leaving"),
        (status = 422, body = ErrorBody, description = "Not confirmed, or a grace of more than 7 days"),
    ))]
async fn mark_leaving(
    State(state): State<WebState>,
    ApiCaller(s): ApiCaller,
    ApiJson(body): ApiJson<LeavingRequest>,
) -> Created<DepartureDto> {
    let id = super::path_id(&body.pharmacy_id, "pharmacy")?;
    let d = state.app.mark_pharmacy_leaving(&s.actor, id, body.grace_days, body.confirm).await?;
    let pharmacy = state.app.store.pharmacy(id).await.map_err(repeatrx_app::AppError::from)?;
    let pharmacy = pharmacy.ok_or(repeatrx_app::AppError::NotFound("pharmacy"))?;
    created(departure_dto(&pharmacy, &d, state.app.clock.now()))
}

/// Every pharmacy and practice on the platform.
#[utoipa::path(get, path = "/admin/organisations", tag = "admin", security(("bearer" = [])),
    responses(
        (status = 200, body = OrganisationsDto),
        (status = 401, body = ErrorBody, description = "Not signed in"),
        (status = 403, body = ErrorBody, description = "Not a platform operator"),
    ))]
async fn organisations(State(state): State<WebState>, ApiCaller(s): ApiCaller) -> ApiResult<OrganisationsDto> {
    let (pharmacies, practices) = state.app.organisations(&s.actor).await?;
    Ok(Json(OrganisationsDto {
        pharmacies: pharmacies.iter().map(OrganisationDto::from).collect(),
        practices: practices.iter().map(OrganisationDto::from).collect(),
    }))
}

/// Creates a pharmacy and its first manager.
#[utoipa::path(post, path = "/admin/pharmacies", tag = "admin", security(("bearer" = [])),
    request_body = NewOrganisationRequest,
    responses(
        (status = 201, body = OnboardedDto, description = "The manager is emailed an invitation"),
        (status = 400, body = ErrorBody, description = "Malformed JSON"),
        (status = 401, body = ErrorBody, description = "Not signed in"),
        (status = 403, body = ErrorBody, description = "Not a platform operator"),
        (status = 409, body = ErrorBody, description = "The manager's email address already has an account"),
        (status = 415, body = ErrorBody, description = "Not application/json"),
        (status = 422, body = ErrorBody, description = "A field is missing or invalid"),
    ))]
async fn create_pharmacy(
    State(state): State<WebState>,
    ApiCaller(s): ApiCaller,
    ApiJson(body): ApiJson<NewOrganisationRequest>,
) -> Created<OnboardedDto> {
    let onboarded = state.app.create_pharmacy(&s.actor, &body.into()).await?;
    created(OnboardedDto::from(&onboarded))
}

/// Creates a practice and its first manager.
#[utoipa::path(post, path = "/admin/practices", tag = "admin", security(("bearer" = [])),
    request_body = NewOrganisationRequest,
    responses(
        (status = 201, body = OnboardedDto, description = "The manager is emailed an invitation"),
        (status = 400, body = ErrorBody, description = "Malformed JSON"),
        (status = 401, body = ErrorBody, description = "Not signed in"),
        (status = 403, body = ErrorBody, description = "Not a platform operator"),
        (status = 409, body = ErrorBody, description = "The manager's email address already has an account"),
        (status = 415, body = ErrorBody, description = "Not application/json"),
        (status = 422, body = ErrorBody, description = "A field is missing or invalid"),
    ))]
async fn create_practice(
    State(state): State<WebState>,
    ApiCaller(s): ApiCaller,
    ApiJson(body): ApiJson<NewOrganisationRequest>,
) -> Created<OnboardedDto> {
    let onboarded = state.app.create_practice(&s.actor, &body.into()).await?;
    created(OnboardedDto::from(&onboarded))
}
