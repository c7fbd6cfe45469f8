//! The practice's pages: requests waiting for a prescriber's decision, one order with a decision
//! form per item, and a patient's repeat list with the form to issue a repeat authorisation.
use super::patient::{
    age, is_form_error, notice, order_detail, parse_id, patient_summary, problems_of, read_terms, render_form, require,
    see_other, split_lines, terms_form, DecisionInput, FormData, LineView, OrderDetail, PatientSummary, Problem,
    TermsForm, DECISION_FIELDS, TERMS_FIELDS,
};
use super::{Nav, PageResult};
use crate::session::{ClientInfo, Signed};
use crate::WebState;
use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::routing::{get, post};
use axum::Router;
use repeatrx_app::auth::CurrentSession;
use repeatrx_domain::access::{role_permits, Action, OrgKind};
use repeatrx_domain::ids::{OrderId, OrderItemId, PatientId};
use repeatrx_domain::order::ItemState;
use repeatrx_domain::timefmt::display_timestamp;

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/practice", get(requests))
        .route("/practice/orders/{id}", get(order))
        .route("/practice/orders/{id}/items/{item}/decision", post(decide))
        .route("/practice/patients/{id}", get(patient))
        .route("/practice/patients/{id}/authorisations", post(authorise))
}

struct RequestRow {
    id: String,
    waiting_since: String,
    age: String,
    patient: PatientSummary,
    items: Vec<String>,
    overdue: bool,
}

#[derive(Template)]
#[template(path = "practice_requests.html")]
struct RequestsPage {
    nav: Option<Nav>,
    flash: Option<String>,
    rows: Vec<RequestRow>,
}

async fn requests(State(state): State<WebState>, Signed(s): Signed) -> PageResult {
    require(&s, OrgKind::Practice)?;
    let mut rows = state.app.practice_requests(&s.actor, None).await?;
    rows.sort_by_key(|r| r.order.stage_entered_at);
    let now = state.app.clock.now();
    let rows = rows
        .iter()
        .map(|r| RequestRow {
            id: r.order.id.to_string(),
            waiting_since: display_timestamp(r.order.stage_entered_at),
            age: age(now, r.order.stage_entered_at),
            patient: patient_summary(&r.patient),
            items: r
                .order
                .items
                .iter()
                .filter(|i| i.state == ItemState::WithPrescriber)
                .map(|i| i.description.clone())
                .collect(),
            overdue: r.overdue,
        })
        .collect();
    super::render(&RequestsPage { nav: Nav::of(&s), flash: None, rows })
}

#[derive(Template)]
#[template(path = "practice_order.html")]
struct OrderPage {
    nav: Option<Nav>,
    flash: Option<String>,
    csrf: String,
    order: OrderDetail,
    can_decide: bool,
}

async fn order(
    State(state): State<WebState>,
    Signed(s): Signed,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> PageResult {
    let id: OrderId = parse_id(&id, "order")?;
    order_page(&state, &s, id, notice(&FormData::from_query(q)), None).await
}

async fn order_page(
    state: &WebState,
    s: &CurrentSession,
    id: OrderId,
    flash: Option<String>,
    failed: Option<(OrderItemId, DecisionInput, Vec<Problem>)>,
) -> PageResult {
    require(s, OrgKind::Practice)?;
    let view = state.app.order_view(&s.actor, id).await?;
    let is_failed = failed.is_some();
    let detail = match failed {
        Some((item, input, problems)) => order_detail(&view, Some((item.to_string().as_str(), &input, problems))),
        None => order_detail(&view, None),
    };
    let page = OrderPage {
        nav: Nav::of(s),
        flash,
        csrf: s.session.csrf_token.clone(),
        order: detail,
        can_decide: role_permits(s.actor.role, Action::AuthoriseMedication),
    };
    render_form(&page, is_failed)
}

async fn decide(
    State(state): State<WebState>,
    Signed(s): Signed,
    ClientInfo(client): ClientInfo,
    Path((id, item)): Path<(String, String)>,
    body: Bytes,
) -> PageResult {
    require(&s, OrgKind::Practice)?;
    let id: OrderId = parse_id(&id, "order")?;
    let item: OrderItemId = parse_id(&item, "order item")?;
    let input = DecisionInput::read(&FormData::parse(&body));
    let result = match input.decision() {
        Ok(decision) => state.app.decide_item(&s.actor, id, item, decision, Some(&input.code), &client).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Ok(see_other(&format!("/practice/orders/{id}?notice=decided"))),
        Err(e) if is_form_error(&e) => {
            let problems = problems_of(&e, DECISION_FIELDS, &format!("d-{item}-"));
            order_page(&state, &s, id, None, Some((item, input, problems))).await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "practice_patient.html")]
struct PatientPage {
    nav: Option<Nav>,
    flash: Option<String>,
    csrf: String,
    patient: PatientSummary,
    lines: Vec<LineView>,
    stopped: Vec<LineView>,
    terms: TermsForm,
    search_action: String,
    terms_action: String,
    can_authorise: bool,
}

async fn patient(
    State(state): State<WebState>,
    Signed(s): Signed,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> PageResult {
    let id: PatientId = parse_id(&id, "patient")?;
    let f = FormData::from_query(q);
    patient_page(&state, &s, id, f.get("q"), notice(&f), None, Vec::new()).await
}

async fn patient_page(
    state: &WebState,
    s: &CurrentSession,
    id: PatientId,
    q: &str,
    flash: Option<String>,
    typed: Option<&FormData>,
    problems: Vec<Problem>,
) -> PageResult {
    require(s, OrgKind::Practice)?;
    let (patient, lines) = state.app.repeat_list(&s.actor, id).await?;
    let (lines, stopped) = split_lines(&lines, &[]);
    let failed = !problems.is_empty();
    let page = PatientPage {
        nav: Nav::of(s),
        flash,
        csrf: s.session.csrf_token.clone(),
        patient: patient_summary(&patient),
        lines,
        stopped,
        terms: TermsForm { signing: true, ..terms_form(q, typed, problems) },
        search_action: format!("/practice/patients/{id}#add-item"),
        terms_action: format!("/practice/patients/{id}/authorisations"),
        can_authorise: role_permits(s.actor.role, Action::AuthoriseMedication),
    };
    render_form(&page, failed)
}

async fn authorise(
    State(state): State<WebState>,
    Signed(s): Signed,
    ClientInfo(client): ClientInfo,
    Path(id): Path<String>,
    body: Bytes,
) -> PageResult {
    require(&s, OrgKind::Practice)?;
    let id: PatientId = parse_id(&id, "patient")?;
    let form = FormData::parse(&body);
    let problems = match read_terms(&form) {
        Ok(input) => match state.app.issue_authorisation(&s.actor, id, &input, form.get("code"), &client).await {
            Ok(_) => return Ok(see_other(&format!("/practice/patients/{id}?notice=authorised"))),
            Err(e) if is_form_error(&e) => problems_of(&e, TERMS_FIELDS, "rt-"),
            Err(e) => return Err(e.into()),
        },
        Err(problems) => problems,
    };
    let q = form.kept("q", 60);
    patient_page(&state, &s, id, &q, None, Some(&form), problems).await
}
