//! The live-data custodian's pages: ask for break-glass access (patient or pharmacy, reason,
//! length, authenticator code), see and end grants, and read what a live grant covers. Reads go
//! through the same `App` methods as the pharmacy's, so the tenant gate checks the grant and
//! audits each one with its reason.
use super::account::field_problems;
use super::patient::{
    is_form_error, order_rows, parse_id, patient_summary, render_form, require, see_other, split_lines, FormData,
    LineView, OrderRow, PatientSummary, Problem,
};
use super::{render, Nav, PageResult};
use crate::session::{ClientInfo, Signed};
use crate::WebState;
use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::routing::{get, post};
use axum::Router;
use repeatrx_app::auth::CurrentSession;
use repeatrx_app::custody::GrantRequest;
use repeatrx_domain::access::OrgKind;
use repeatrx_domain::custody::{Grant, GrantScope};
use repeatrx_domain::ids::{GrantId, PatientId, PharmacyId};
use repeatrx_domain::timefmt::display_timestamp;
use repeatrx_store::Pharmacy;

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/custody", get(home))
        .route("/custody/grants", post(open))
        .route("/custody/grants/{id}/end", post(end))
        .route("/custody/patients/{id}", get(patient))
        .route("/custody/pharmacies/{id}", get(pharmacy))
}

struct GrantView {
    id: String,
    what: String,
    link: String,
    reason: String,
    created: String,
    until: String,
    live: bool,
    ended: bool,
}

#[derive(Default)]
struct GrantForm {
    kind: String,
    patient: String,
    pharmacy: String,
    reason: String,
    minutes: String,
}

#[derive(Template)]
#[template(path = "custody.html")]
struct CustodyPage {
    nav: Option<Nav>,
    flash: Option<String>,
    csrf: String,
    live: Vec<GrantView>,
    past: Vec<GrantView>,
    pharmacies: Vec<(String, String)>,
    form: GrantForm,
    problems: Vec<Problem>,
}

fn scope_link(scope: GrantScope) -> String {
    match scope {
        GrantScope::Patient(p) => format!("/custody/patients/{p}"),
        GrantScope::Pharmacy(p) => format!("/custody/pharmacies/{p}"),
    }
}

fn grant_view(g: &Grant, pharmacies: &[Pharmacy], now: jiff::Timestamp) -> GrantView {
    let what = match g.scope {
        GrantScope::Patient(p) => format!("Patient {p}"),
        GrantScope::Pharmacy(p) => {
            let name = pharmacies.iter().find(|ph| ph.id == p).map(|ph| ph.name.clone());
            format!("Pharmacy: {}", name.unwrap_or_else(|| p.to_string()))
        }
    };
    GrantView {
        id: g.id.to_string(),
        what,
        link: scope_link(g.scope),
        reason: g.reason.clone(),
        created: display_timestamp(g.created_at),
        until: display_timestamp(g.ended_at.unwrap_or(g.expires_at)),
        live: g.is_live(now),
        ended: g.ended_at.is_some(),
    }
}

fn notice(q: &FormData) -> Option<String> {
    match q.get("notice") {
        "ended" => Some("The grant has ended: its data is closed to you again.".into()),
        _ => None,
    }
}

async fn page(
    state: &WebState,
    s: &CurrentSession,
    flash: Option<String>,
    form: GrantForm,
    problems: Vec<Problem>,
) -> PageResult {
    require(s, OrgKind::Platform)?;
    let grants = state.app.grants_of(&s.actor).await?;
    let known = state.app.custody_pharmacies(&s.actor).await?;
    let now = state.app.clock.now();
    let (live, past): (Vec<GrantView>, Vec<GrantView>) =
        grants.iter().map(|g| grant_view(g, &known, now)).partition(|g| g.live);
    let pharmacies = known.iter().map(|p| (p.id.to_string(), format!("{} ({})", p.name, p.ods_code))).collect();
    let failed = !problems.is_empty();
    let page = CustodyPage {
        nav: Nav::of(s),
        flash,
        csrf: s.session.csrf_token.clone(),
        live,
        past,
        pharmacies,
        form,
        problems,
    };
    render_form(&page, failed)
}

async fn home(State(state): State<WebState>, Signed(s): Signed, RawQuery(q): RawQuery) -> PageResult {
    page(&state, &s, notice(&FormData::from_query(q)), GrantForm::default(), vec![]).await
}

async fn open(
    State(state): State<WebState>,
    Signed(s): Signed,
    ClientInfo(client): ClientInfo,
    body: Bytes,
) -> PageResult {
    require(&s, OrgKind::Platform)?;
    let f = FormData::parse(&body);
    let form = GrantForm {
        kind: f.kept("kind", 10),
        patient: f.kept("patient", 60),
        pharmacy: f.kept("pharmacy", 60),
        reason: f.kept("reason", 500),
        minutes: f.kept("minutes", 4),
    };
    let scope = match form.kind.as_str() {
        "pharmacy" => form
            .pharmacy
            .trim()
            .parse::<PharmacyId>()
            .map(GrantScope::Pharmacy)
            .map_err(|_| "pharmacy: choose a pharmacy"),
        _ => form
            .patient
            .trim()
            .parse::<PatientId>()
            .map(GrantScope::Patient)
            .map_err(|_| "patient: enter the patient's RepeatRx id (from the support request)"),
    };
    let fields = [
        ("patient", "Patient", "grant-patient"),
        ("pharmacy", "Pharmacy", "grant-pharmacy"),
        ("reason", "Reason", "grant-reason"),
        ("minutes", "For how long", "grant-minutes"),
        ("code", "Code", "grant-code"),
    ];
    let scope = match scope {
        Ok(scope) => scope,
        Err(message) => {
            let e = repeatrx_app::AppError::InvalidFields(vec![message.into()]);
            return page(&state, &s, None, form, field_problems(&e, &fields)).await;
        }
    };
    let minutes = form.minutes.trim().parse::<i64>().ok();
    let request = GrantRequest { scope, reason: form.reason.clone(), minutes, code: f.get("code").to_string() };
    match state.app.open_grant(&s.actor, &request, &client).await {
        Ok(grant) => Ok(see_other(&scope_link(grant.scope))),
        Err(e) if is_form_error(&e) || matches!(e, repeatrx_app::AppError::WrongCode) => {
            page(&state, &s, None, form, field_problems(&e, &fields)).await
        }
        Err(e) => Err(e.into()),
    }
}

async fn end(State(state): State<WebState>, Signed(s): Signed, Path(id): Path<String>) -> PageResult {
    require(&s, OrgKind::Platform)?;
    let id: GrantId = parse_id(&id, "grant")?;
    state.app.end_grant(&s.actor, id).await?;
    Ok(see_other("/custody?notice=ended"))
}

#[derive(Template)]
#[template(path = "custody_patient.html")]
struct PatientPage {
    nav: Option<Nav>,
    flash: Option<String>,
    patient: PatientSummary,
    email: Option<String>,
    phone: Option<String>,
    address: Option<String>,
    lines: Vec<LineView>,
    stopped: Vec<LineView>,
    orders: Vec<OrderRow>,
}

async fn patient(State(state): State<WebState>, Signed(s): Signed, Path(id): Path<String>) -> PageResult {
    require(&s, OrgKind::Platform)?;
    let id: PatientId = parse_id(&id, "patient")?;
    let (patient, lines) = state.app.repeat_list(&s.actor, id).await?;
    let orders = state.app.orders_of(&s.actor, id).await?;
    let (lines, stopped) = split_lines(&lines, &[]);
    render(&PatientPage {
        nav: Nav::of(&s),
        flash: None,
        patient: patient_summary(&patient),
        email: patient.email.as_ref().map(|e| e.to_string()),
        phone: patient.phone.clone(),
        address: patient.address.clone(),
        lines,
        stopped,
        orders: order_rows(orders),
    })
}

#[derive(Template)]
#[template(path = "custody_pharmacy.html")]
struct PharmacyPage {
    nav: Option<Nav>,
    flash: Option<String>,
    name: String,
    action: String,
    q: String,
    patients: Vec<PatientSummary>,
}

async fn pharmacy(
    State(state): State<WebState>,
    Signed(s): Signed,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> PageResult {
    require(&s, OrgKind::Platform)?;
    let id: PharmacyId = parse_id(&id, "pharmacy")?;
    let q = FormData::from_query(q).kept("q", 100);
    let (name, patients) = state.app.custody_patients(&s.actor, id, &q).await?;
    render(&PharmacyPage {
        nav: Nav::of(&s),
        flash: None,
        name,
        action: format!("/custody/pharmacies/{id}"),
        q,
        patients: patients.iter().map(patient_summary).collect(),
    })
}
