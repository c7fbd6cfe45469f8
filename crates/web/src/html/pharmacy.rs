//! The Pharmacy Dashboard: the order queue, one order with the actions valid now, patient
//! search and registration, and a patient's record with their repeat list, the forms to add a
//! repeat item and to order on their behalf, and their orders.
use super::patient::{
    age, is_form_error, notice, order_detail, order_rows, parse_id, patient_summary, problems_of, read_order,
    read_terms, render_form, require, see_other, split_lines, stage_tag, terms_form, DecisionInput, FormData, LineView,
    OrderDetail, OrderInput, OrderRow, PatientSummary, Problem, TermsForm, DECISION_FIELDS, ORDER_FIELDS, TERMS_FIELDS,
};
use super::{render, Nav, PageResult};
use crate::error::PageError;
use crate::session::{ClientInfo, Signed};
use crate::WebState;
use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::routing::{get, post};
use axum::Router;
use repeatrx_app::auth::CurrentSession;
use repeatrx_app::patients::{PatientSearch, RegisterPatientInput};
use repeatrx_app::queue::{QueueQuery, QUEUE_PAGE};
use repeatrx_app::AppError;
use repeatrx_domain::access::{role_permits, Action, OrgKind};
use repeatrx_domain::ids::{OrderId, OrderItemId, PatientId, RepeatItemId};
use repeatrx_domain::order::{ItemEvent, OrderStage};
use repeatrx_domain::patient::Fulfilment;
use repeatrx_domain::timefmt::display_timestamp;

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/pharmacy", get(queue))
        .route("/pharmacy/orders/{id}", get(order))
        .route("/pharmacy/orders/{id}/accept", post(accept))
        .route("/pharmacy/orders/{id}/cancel", post(cancel))
        .route("/pharmacy/orders/{id}/send", post(send))
        .route("/pharmacy/orders/{id}/items/{item}/decision", post(decide))
        .route("/pharmacy/orders/{id}/items/{item}/step", post(step))
        .route("/pharmacy/patients", get(patients).post(register))
        .route("/pharmacy/patients/new", get(new_patient))
        .route("/pharmacy/patients/{id}", get(patient))
        .route("/pharmacy/patients/{id}/repeat-items", post(add_item))
        .route("/pharmacy/patients/{id}/orders", post(order_for_patient))
        .route("/pharmacy/patients/{id}/unlock", post(unlock_patient_account))
        .route("/pharmacy/patients/{id}/erase", post(erase_patient))
        .route("/pharmacy/repeat-items/{id}/stop", post(stop_item))
}

fn csrf(s: &CurrentSession) -> String {
    s.session.csrf_token.clone()
}

// ---------------------------------------------------------------------------------------------
// The queue
// ---------------------------------------------------------------------------------------------

struct StageCard {
    value: &'static str,
    label: &'static str,
    count: i64,
    current: bool,
}

struct QueueRowView {
    id: String,
    received: String,
    age: String,
    patient: PatientSummary,
    items: usize,
    fulfilment: &'static str,
    stage: &'static str,
    stage_tag: &'static str,
    overdue: bool,
}

#[derive(Template)]
#[template(path = "pharmacy_queue.html")]
struct QueuePage {
    nav: Option<Nav>,
    flash: Option<String>,
    cards: Vec<StageCard>,
    total: i64,
    all_current: bool,
    overdue: usize,
    name: String,
    dob: String,
    nhs: String,
    rows: Vec<QueueRowView>,
    page: u32,
    previous: Option<String>,
    next: Option<String>,
    filtered: bool,
    problems: Vec<Problem>,
}

const SEARCH_FIELDS: &[(&str, &str)] = &[("name", "Name"), ("dob", "Date of birth"), ("nhs", "NHS number")];

/// "Collection" / "Delivery": the short words staff use.
fn fulfilment_word(f: Fulfilment) -> &'static str {
    match f {
        Fulfilment::Collection => "Collection",
        Fulfilment::Delivery => "Delivery",
    }
}

fn queue_link(stage: Option<OrderStage>, search: &PatientSearch, page: u32) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    if let Some(s) = stage {
        q.append_pair("stage", s.as_str());
    }
    for (k, v) in [("name", &search.name), ("dob", &search.dob), ("nhs", &search.nhs)] {
        if !v.trim().is_empty() {
            q.append_pair(k, v);
        }
    }
    if page > 1 {
        q.append_pair("page", &page.to_string());
    }
    let q = q.finish();
    if q.is_empty() {
        "/pharmacy".into()
    } else {
        format!("/pharmacy?{q}")
    }
}

async fn queue(State(state): State<WebState>, Signed(s): Signed, RawQuery(q): RawQuery) -> PageResult {
    require(&s, OrgKind::Pharmacy)?;
    let f = FormData::from_query(q);
    let stage = OrderStage::parse(f.get("stage")).ok().filter(|st| st.is_open());
    let typed = PatientSearch { name: f.kept("name", 50), dob: f.kept("dob", 10), nhs: f.kept("nhs", 20) };
    let mut problems = Vec::new();
    let search = match typed.to_query() {
        Ok(_) => typed.clone(),
        Err(e) => {
            problems = problems_of(&e, SEARCH_FIELDS, "q-");
            PatientSearch::default()
        }
    };
    let page: u32 = f.get("page").parse().ok().filter(|p| (1..=10_000).contains(p)).unwrap_or(1);
    let view =
        state.app.pharmacy_queue(&s.actor, &QueueQuery { stage, search: search.clone(), page: page - 1 }).await?;
    let now = state.app.clock.now();
    let mut rows = view.rows;
    rows.sort_by_key(|r| r.order.created_at);
    let rows: Vec<QueueRowView> = rows
        .iter()
        .map(|r| QueueRowView {
            id: r.order.id.to_string(),
            received: display_timestamp(r.order.created_at),
            age: age(now, r.order.created_at),
            patient: patient_summary(&r.patient),
            items: r.order.items.len(),
            fulfilment: fulfilment_word(r.order.fulfilment),
            stage: r.order.stage.label(),
            stage_tag: stage_tag(r.order.stage),
            overdue: r.overdue,
        })
        .collect();
    let full = rows.len() as u32 >= QUEUE_PAGE;
    let failed = !problems.is_empty();
    let page_view = QueuePage {
        nav: Nav::of(&s),
        flash: None,
        cards: view
            .counts
            .iter()
            .map(|(st, n)| StageCard { value: st.as_str(), label: st.label(), count: *n, current: Some(*st) == stage })
            .collect(),
        total: view.counts.iter().map(|(_, n)| *n).sum(),
        all_current: stage.is_none(),
        overdue: view.overdue,
        filtered: stage.is_some()
            || !search.name.trim().is_empty()
            || !search.dob.trim().is_empty()
            || !search.nhs.trim().is_empty(),
        name: typed.name,
        dob: typed.dob,
        nhs: typed.nhs,
        rows,
        page,
        previous: (page > 1).then(|| queue_link(stage, &search, page - 1)),
        next: full.then(|| queue_link(stage, &search, page + 1)),
        problems,
    };
    render_form(&page_view, failed)
}

// ---------------------------------------------------------------------------------------------
// One order
// ---------------------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "pharmacy_order.html")]
struct OrderPage {
    nav: Option<Nav>,
    flash: Option<String>,
    csrf: String,
    order: OrderDetail,
    practice_name: String,
    practice_on_repeatrx: bool,
    can_process: bool,
    can_cancel: bool,
    can_record_decision: bool,
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
    require(s, OrgKind::Pharmacy)?;
    let view = state.app.order_view(&s.actor, id).await?;
    let (practice_name, practice_on_repeatrx) = match &view.practice {
        Some(p) => (p.name.clone(), p.on_repeatrx),
        None => ("Unknown practice".to_string(), true),
    };
    let is_failed = failed.is_some();
    let detail = match failed {
        Some((item, input, problems)) => order_detail(&view, Some((item.to_string().as_str(), &input, problems))),
        None => order_detail(&view, None),
    };
    let page = OrderPage {
        nav: Nav::of(s),
        flash,
        csrf: csrf(s),
        order: detail,
        practice_name,
        practice_on_repeatrx,
        can_process: role_permits(s.actor.role, Action::ProcessOrder),
        can_cancel: role_permits(s.actor.role, Action::CancelOrder),
        can_record_decision: role_permits(s.actor.role, Action::RecordPrescriberDecision),
    };
    render_form(&page, is_failed)
}

async fn accept(State(state): State<WebState>, Signed(s): Signed, Path(id): Path<String>) -> PageResult {
    require(&s, OrgKind::Pharmacy)?;
    let id: OrderId = parse_id(&id, "order")?;
    state.app.accept_order(&s.actor, id).await?;
    Ok(see_other(&format!("/pharmacy/orders/{id}?notice=accepted")))
}

async fn cancel(State(state): State<WebState>, Signed(s): Signed, Path(id): Path<String>) -> PageResult {
    require(&s, OrgKind::Pharmacy)?;
    let id: OrderId = parse_id(&id, "order")?;
    state.app.cancel_order(&s.actor, id).await?;
    Ok(see_other(&format!("/pharmacy/orders/{id}?notice=cancelled")))
}

async fn send(State(state): State<WebState>, Signed(s): Signed, Path(id): Path<String>) -> PageResult {
    require(&s, OrgKind::Pharmacy)?;
    let id: OrderId = parse_id(&id, "order")?;
    state.app.send_to_prescriber(&s.actor, id).await?;
    Ok(see_other(&format!("/pharmacy/orders/{id}?notice=sent")))
}

async fn decide(
    State(state): State<WebState>,
    Signed(s): Signed,
    ClientInfo(client): ClientInfo,
    Path((id, item)): Path<(String, String)>,
    body: Bytes,
) -> PageResult {
    require(&s, OrgKind::Pharmacy)?;
    let id: OrderId = parse_id(&id, "order")?;
    let item: OrderItemId = parse_id(&item, "order item")?;
    let input = DecisionInput::read(&FormData::parse(&body));
    let result = match input.decision() {
        Ok(decision) => state.app.decide_item(&s.actor, id, item, decision, None, &client).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Ok(see_other(&format!("/pharmacy/orders/{id}?notice=decided"))),
        Err(e) if is_form_error(&e) => {
            let problems = problems_of(&e, DECISION_FIELDS, &format!("d-{item}-"));
            order_page(&state, &s, id, None, Some((item, input, problems))).await
        }
        Err(e) => Err(e.into()),
    }
}

async fn step(
    State(state): State<WebState>,
    Signed(s): Signed,
    Path((id, item)): Path<(String, String)>,
    body: Bytes,
) -> PageResult {
    require(&s, OrgKind::Pharmacy)?;
    let id: OrderId = parse_id(&id, "order")?;
    let item: OrderItemId = parse_id(&item, "order item")?;
    let form = FormData::parse(&body);
    let event = ItemEvent::parse(form.get("step")).map_err(AppError::from)?;
    state.app.dispense_step(&s.actor, id, item, event).await?;
    Ok(see_other(&format!("/pharmacy/orders/{id}?notice=updated")))
}

// ---------------------------------------------------------------------------------------------
// Patients: search and registration
// ---------------------------------------------------------------------------------------------

struct PatientRow {
    summary: PatientSummary,
}

#[derive(Template)]
#[template(path = "pharmacy_patients.html")]
struct PatientsPage {
    nav: Option<Nav>,
    flash: Option<String>,
    name: String,
    dob: String,
    nhs: String,
    searched: bool,
    patients: Vec<PatientRow>,
    problems: Vec<Problem>,
}

async fn patients(State(state): State<WebState>, Signed(s): Signed, RawQuery(q): RawQuery) -> PageResult {
    require(&s, OrgKind::Pharmacy)?;
    let f = FormData::from_query(q);
    let search = PatientSearch { name: f.kept("name", 50), dob: f.kept("dob", 10), nhs: f.kept("nhs", 20) };
    let (found, problems) = match state.app.find_patients(&s.actor, &search).await {
        Ok(found) => (found, Vec::new()),
        Err(e @ AppError::Invalid(_)) => (Vec::new(), problems_of(&e, SEARCH_FIELDS, "q-")),
        Err(e) => return Err(e.into()),
    };
    let failed = !problems.is_empty();
    let page = PatientsPage {
        nav: Nav::of(&s),
        // A fixed sentence, never the query's text.
        flash: (f.get("notice") == "erased")
            .then(|| "The patient's record, orders and online account were deleted for good.".to_string()),
        searched: !search.is_empty(),
        name: search.name,
        dob: search.dob,
        nhs: search.nhs,
        patients: found.iter().map(|p| PatientRow { summary: patient_summary(p) }).collect(),
        problems,
    };
    render_form(&page, failed)
}

struct PracticeChoice {
    id: String,
    name: String,
    selected: bool,
}

#[derive(Template)]
#[template(path = "pharmacy_patient_new.html")]
struct NewPatientPage {
    nav: Option<Nav>,
    flash: Option<String>,
    csrf: String,
    practices: Vec<PracticeChoice>,
    given_name: String,
    family_name: String,
    date_of_birth: String,
    nhs_number: String,
    email: String,
    phone: String,
    address: String,
    create_account: bool,
    problems: Vec<Problem>,
}

const REGISTER_FIELDS: &[(&str, &str)] = &[
    ("given_name", "Given name"),
    ("family_name", "Family name"),
    ("date_of_birth", "Date of birth"),
    ("nhs_number", "NHS number"),
    ("practice", "GP practice"),
    ("email", "Email address"),
    ("phone", "Phone number"),
    ("address", "Address"),
];

async fn new_patient_page(
    state: &WebState,
    s: &CurrentSession,
    typed: Option<&FormData>,
    problems: Vec<Problem>,
) -> PageResult {
    require(s, OrgKind::Pharmacy)?;
    if !role_permits(s.actor.role, Action::RegisterPatient) {
        return Err(PageError(AppError::Forbidden));
    }
    let practices = state.app.practices_for_staff(&s.actor).await?;
    let get = |name: &str, max: usize| typed.map(|f| f.kept(name, max)).unwrap_or_default();
    let chosen = get("practice_id", 40);
    let failed = !problems.is_empty();
    let page = NewPatientPage {
        nav: Nav::of(s),
        flash: None,
        csrf: csrf(s),
        practices: practices
            .iter()
            .map(|p| {
                let id = p.id.to_string();
                PracticeChoice { selected: id == chosen, id, name: format!("{} ({})", p.name, p.ods_code) }
            })
            .collect(),
        given_name: get("given_name", 100),
        family_name: get("family_name", 100),
        date_of_birth: get("date_of_birth", 10),
        nhs_number: get("nhs_number", 20),
        email: get("email", 254),
        phone: get("phone", 30),
        address: get("address", 300),
        create_account: typed.is_some_and(|f| f.has("create_account")),
        problems,
    };
    render_form(&page, failed)
}

async fn new_patient(State(state): State<WebState>, Signed(s): Signed) -> PageResult {
    new_patient_page(&state, &s, None, Vec::new()).await
}

#[derive(Template)]
#[template(path = "pharmacy_registered.html")]
struct RegisteredPage {
    nav: Option<Nav>,
    flash: Option<String>,
    patient: PatientSummary,
    /// Where the online account's invitation went, when one was opened.
    invited: Option<String>,
}

async fn register(State(state): State<WebState>, Signed(s): Signed, body: Bytes) -> PageResult {
    require(&s, OrgKind::Pharmacy)?;
    let form = FormData::parse(&body);
    let input = RegisterPatientInput {
        given_name: form.get("given_name").into(),
        family_name: form.get("family_name").into(),
        date_of_birth: form.get("date_of_birth").into(),
        nhs_number: form.get("nhs_number").into(),
        practice_id: form.get("practice_id").into(),
        email: form.get("email").into(),
        phone: form.get("phone").into(),
        address: form.get("address").into(),
        create_account: form.has("create_account"),
    };
    match state.app.register_patient(&s.actor, &input).await {
        Ok(done) => render(&RegisteredPage {
            nav: Nav::of(&s),
            flash: None,
            patient: patient_summary(&done.patient),
            invited: done.invited.as_ref().map(|e| e.to_string()),
        }),
        Err(e) if is_form_error(&e) => {
            let problems = problems_of(&e, REGISTER_FIELDS, "rp-");
            new_patient_page(&state, &s, Some(&form), problems).await
        }
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------------------------
// One patient
// ---------------------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "pharmacy_patient.html")]
struct PatientPage {
    nav: Option<Nav>,
    flash: Option<String>,
    csrf: String,
    patient: PatientSummary,
    practice: String,
    email: Option<String>,
    phone: Option<String>,
    address: Option<String>,
    lines: Vec<LineView>,
    stopped: Vec<LineView>,
    any_orderable: bool,
    order: OrderInput,
    order_problems: Vec<Problem>,
    terms: TermsForm,
    search_action: String,
    terms_action: String,
    orders: Vec<OrderRow>,
    can_edit: bool,
    can_order: bool,
    /// The sign-in protection of the patient's online account (`None`: no online account).
    account_lock: Option<&'static str>,
    account_locked: bool,
    can_lift_lock: bool,
    lock_problems: Vec<Problem>,
    lock_reason: String,
    can_erase: bool,
    erase_problems: Vec<Problem>,
    erase_reason: String,
}

/// What a re-shown patient page carries besides the record.
#[derive(Default)]
struct PatientExtras {
    flash: Option<String>,
    order: OrderInput,
    order_problems: Vec<Problem>,
    terms_typed: Option<FormData>,
    terms_problems: Vec<Problem>,
    lock_problems: Vec<Problem>,
    lock_reason: String,
    erase_problems: Vec<Problem>,
    erase_reason: String,
}

async fn patient(
    State(state): State<WebState>,
    Signed(s): Signed,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> PageResult {
    let id: PatientId = parse_id(&id, "patient")?;
    let f = FormData::from_query(q);
    let extras = PatientExtras { flash: notice(&f).or_else(|| lock_notice(&f)), ..Default::default() };
    patient_page(&state, &s, id, f.get("q"), extras).await
}

async fn patient_page(
    state: &WebState,
    s: &CurrentSession,
    id: PatientId,
    q: &str,
    extras: PatientExtras,
) -> PageResult {
    require(s, OrgKind::Pharmacy)?;
    let (patient, lines) = state.app.repeat_list(&s.actor, id).await?;
    let orders = state.app.orders_of(&s.actor, id).await?;
    let practice = state.app.practice_of(&s.actor, &patient).await?;
    let practice = match practice {
        Some(p) if p.on_repeatrx => format!("{} ({}), authorises on RepeatRx", p.name, p.ods_code),
        Some(p) => format!("{} ({}), not on RepeatRx: the pharmacy records its decisions", p.name, p.ods_code),
        None => "Unknown practice".into(),
    };
    let lock = state.app.patient_account_lock(&s.actor, id).await?;
    let failed = !extras.order_problems.is_empty()
        || !extras.terms_problems.is_empty()
        || !extras.lock_problems.is_empty()
        || !extras.erase_problems.is_empty();
    let (active, stopped) = split_lines(&lines, &extras.order.items);
    let page = PatientPage {
        nav: Nav::of(s),
        flash: extras.flash,
        csrf: csrf(s),
        patient: patient_summary(&patient),
        practice,
        email: patient.email.as_ref().map(|e| e.to_string()),
        phone: patient.phone.clone(),
        address: patient.address.clone(),
        any_orderable: active.iter().any(|l| l.orderable),
        lines: active,
        stopped,
        order: extras.order,
        order_problems: extras.order_problems,
        terms: terms_form(q, extras.terms_typed.as_ref(), extras.terms_problems),
        search_action: format!("/pharmacy/patients/{id}#add-item"),
        terms_action: format!("/pharmacy/patients/{id}/repeat-items"),
        orders: order_rows(orders),
        can_edit: role_permits(s.actor.role, Action::EditRepeatList),
        can_order: role_permits(s.actor.role, Action::PlaceOrder),
        account_lock: lock.map(|l| l.label()),
        account_locked: lock.is_some_and(|l| l.is_locked()),
        can_lift_lock: role_permits(s.actor.role, Action::LiftIdentityLock),
        lock_problems: extras.lock_problems,
        lock_reason: extras.lock_reason,
        can_erase: role_permits(s.actor.role, Action::ErasePatient),
        erase_problems: extras.erase_problems,
        erase_reason: extras.erase_reason,
    };
    render_form(&page, failed)
}

async fn add_item(State(state): State<WebState>, Signed(s): Signed, Path(id): Path<String>, body: Bytes) -> PageResult {
    require(&s, OrgKind::Pharmacy)?;
    let id: PatientId = parse_id(&id, "patient")?;
    let form = FormData::parse(&body);
    let result = match read_terms(&form) {
        Ok(input) => {
            state.app.add_repeat_item(&s.actor, id, &input).await.map_err(|e| problems_or(e, TERMS_FIELDS, "rt-"))
        }
        Err(problems) => Err(Ok(problems)),
    };
    match result {
        Ok(_) => Ok(see_other(&format!("/pharmacy/patients/{id}?notice=item_added"))),
        Err(Ok(problems)) => {
            let q = form.kept("q", 60);
            let extras = PatientExtras { terms_typed: Some(form), terms_problems: problems, ..Default::default() };
            patient_page(&state, &s, id, &q, extras).await
        }
        Err(Err(e)) => Err(e),
    }
}

/// Form errors become the lines of an error summary; anything else stays an error page.
fn problems_or(e: AppError, fields: &[(&str, &str)], prefix: &str) -> Result<Vec<Problem>, PageError> {
    if is_form_error(&e) {
        Ok(problems_of(&e, fields, prefix))
    } else {
        Err(e.into())
    }
}

async fn order_for_patient(
    State(state): State<WebState>,
    Signed(s): Signed,
    Path(id): Path<String>,
    body: Bytes,
) -> PageResult {
    require(&s, OrgKind::Pharmacy)?;
    let id: PatientId = parse_id(&id, "patient")?;
    let form = FormData::parse(&body);
    let (input, parsed) = read_order(&form);
    let result = match parsed {
        Ok(order) => state.app.submit_order(&s.actor, id, &order).await.map_err(|e| problems_or(e, ORDER_FIELDS, "")),
        Err(problems) => Err(Ok(problems)),
    };
    match result {
        Ok(order) => Ok(see_other(&format!("/pharmacy/orders/{}?notice=placed", order.id))),
        Err(Ok(problems)) => {
            let extras = PatientExtras { order: input, order_problems: problems, ..Default::default() };
            patient_page(&state, &s, id, "", extras).await
        }
        Err(Err(e)) => Err(e),
    }
}

async fn stop_item(State(state): State<WebState>, Signed(s): Signed, Path(id): Path<String>) -> PageResult {
    require(&s, OrgKind::Pharmacy)?;
    let id: RepeatItemId = parse_id(&id, "repeat item")?;
    let item = state.app.stop_repeat_item(&s.actor, id).await?;
    Ok(see_other(&format!("/pharmacy/patients/{}?notice=stopped", item.patient_id)))
}

/// The fixed sentence after a patient's account was unlocked (never the query text itself).
fn lock_notice(q: &FormData) -> Option<String> {
    (q.get("notice") == "account_unlocked")
        .then(|| "The patient's online account is unlocked: they can sign in again.".to_string())
}

/// After checking the patient's identity in person, staff open their locked online account; how
/// they checked is recorded.
async fn unlock_patient_account(
    State(state): State<WebState>,
    Signed(s): Signed,
    ClientInfo(client): ClientInfo,
    Path(id): Path<String>,
    body: Bytes,
) -> PageResult {
    require(&s, OrgKind::Pharmacy)?;
    let id: PatientId = parse_id(&id, "patient")?;
    let form = FormData::parse(&body);
    let reason = form.kept("reason", 500);
    match state.app.lift_identity_lock(&s.actor, id, &reason, &client).await {
        Ok(()) => Ok(see_other(&format!("/pharmacy/patients/{id}?notice=account_unlocked"))),
        Err(e) if is_form_error(&e) => {
            let extras = PatientExtras {
                lock_problems: problems_of(&e, LOCK_FIELDS, "lock-"),
                lock_reason: reason,
                ..Default::default()
            };
            patient_page(&state, &s, id, "", extras).await
        }
        Err(e) => Err(e.into()),
    }
}

const LOCK_FIELDS: &[(&str, &str)] = &[("reason", "Reason")];

/// A request to be forgotten made at the counter (P13).
async fn erase_patient(
    State(state): State<WebState>,
    Signed(s): Signed,
    Path(id): Path<String>,
    body: Bytes,
) -> PageResult {
    require(&s, OrgKind::Pharmacy)?;
    let id: PatientId = parse_id(&id, "patient")?;
    let form = FormData::parse(&body);
    let request = repeatrx_app::erasure::EraseRequest {
        confirm: form.get("confirm") == "yes",
        password: Default::default(),
        reason: form.kept("reason", 500),
    };
    match state.app.erase_patient(&s.actor, id, &request).await {
        Ok(_) => Ok(see_other("/pharmacy/patients?notice=erased")),
        Err(e) if is_form_error(&e) => {
            let extras = PatientExtras {
                erase_problems: problems_of(&e, ERASE_FIELDS, "erase-"),
                erase_reason: request.reason,
                ..Default::default()
            };
            patient_page(&state, &s, id, "", extras).await
        }
        Err(e) => Err(e.into()),
    }
}

const ERASE_FIELDS: &[(&str, &str)] = &[("reason", "Who asked"), ("confirm", "Confirm")];

#[cfg(test)]
mod lock_tests {
    use super::*;

    #[test]
    fn the_unlock_notice_is_a_fixed_sentence() {
        let n = |q: &str| lock_notice(&FormData::from_query(Some(q.into())));
        assert!(n("notice=account_unlocked").is_some_and(|t| t.contains("unlocked")));
        assert_eq!(n("notice=%3Cscript%3E"), None);
        assert_eq!(n(""), None);
    }
}
