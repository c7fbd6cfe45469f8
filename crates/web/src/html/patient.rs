//! The patient's pages: "My medicines" (the repeat list with the order form), their orders, and
//! one order with its history. The second half of this file holds the view helpers that the
//! staff dashboards share (form parsing, fixed notices, error summaries, order and repeat-list
//! views), so that every audience sees an order and a repeat line described the same way.
use super::{render, Nav, PageResult};
use crate::error::PageError;
use crate::session::Signed;
use crate::WebState;
use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use jiff::Timestamp;
use repeatrx_app::auth::CurrentSession;
use repeatrx_app::orders::{OrderView, SubmitOrderInput};
use repeatrx_app::patients::RepeatLine;
use repeatrx_app::AppError;
use repeatrx_domain::access::OrgKind;
use repeatrx_domain::catalogue::Catalogue;
use repeatrx_domain::ids::{OrderId, RepeatItemId};
use repeatrx_domain::order::{Decision, ItemEvent, ItemState, Order, OrderStage, RejectionCode};
use repeatrx_domain::patient::{Fulfilment, Patient};
use repeatrx_domain::repeat::RepeatTermsInput;
use repeatrx_domain::timefmt::{display_date, display_timestamp};
use std::str::FromStr;

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/patient", get(home))
        .route("/patient/orders", get(orders).post(submit))
        .route("/patient/orders/{id}", get(order))
        .route("/patient/orders/{id}/cancel", post(cancel))
        .route("/patient/access", get(access))
}

struct AccessView {
    when: String,
    who: String,
    role: &'static str,
    organisation: String,
    what: &'static str,
    why: Option<String>,
}

#[derive(Template)]
#[template(path = "patient_access.html")]
struct AccessPage {
    nav: Option<Nav>,
    flash: Option<String>,
    lines: Vec<AccessView>,
}

/// Who among staff has reached the patient's record (from the audit trail).
async fn access(State(state): State<WebState>, Signed(s): Signed) -> PageResult {
    require(&s, OrgKind::Patient)?;
    let me = state.app.resolve_patient(&s.actor, None)?;
    let lines = state
        .app
        .patient_access_log(&s.actor, me)
        .await?
        .into_iter()
        .map(|l| AccessView {
            when: repeatrx_domain::timefmt::display_timestamp(l.at),
            who: l.who,
            role: l.role,
            organisation: l.organisation,
            what: l.what,
            why: l.purpose,
        })
        .collect();
    render(&AccessPage { nav: Nav::of(&s), flash: None, lines })
}

// ---------------------------------------------------------------------------------------------
// Patient pages
// ---------------------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "patient_home.html")]
struct HomePage {
    nav: Option<Nav>,
    flash: Option<String>,
    csrf: String,
    given_name: String,
    lines: Vec<LineView>,
    stopped: Vec<LineView>,
    any_orderable: bool,
    order: OrderInput,
    problems: Vec<Problem>,
}

async fn home(State(state): State<WebState>, Signed(s): Signed, RawQuery(q): RawQuery) -> PageResult {
    let flash = notice(&FormData::from_query(q));
    home_page(&state, &s, flash, OrderInput::default(), Vec::new()).await
}

async fn home_page(
    state: &WebState,
    s: &CurrentSession,
    flash: Option<String>,
    order: OrderInput,
    problems: Vec<Problem>,
) -> PageResult {
    require(s, OrgKind::Patient)?;
    let me = state.app.resolve_patient(&s.actor, None)?;
    let (patient, lines) = state.app.repeat_list(&s.actor, me).await?;
    let (lines, stopped) = split_lines(&lines, &order.items);
    let failed = !problems.is_empty();
    let page = HomePage {
        nav: Nav::of(s),
        flash,
        csrf: s.session.csrf_token.clone(),
        given_name: patient.given_name.to_string(),
        any_orderable: lines.iter().any(|l| l.orderable),
        lines,
        stopped,
        order,
        problems,
    };
    render_form(&page, failed)
}

async fn submit(State(state): State<WebState>, Signed(s): Signed, body: Bytes) -> PageResult {
    require(&s, OrgKind::Patient)?;
    let form = FormData::parse(&body);
    let (input, parsed) = read_order(&form);
    let result = match parsed {
        Ok(order) => {
            let me = state.app.resolve_patient(&s.actor, None)?;
            state.app.submit_order(&s.actor, me, &order).await
        }
        Err(problems) => return home_page(&state, &s, None, input, problems).await,
    };
    match result {
        Ok(order) => Ok(see_other(&format!("/patient/orders/{}?notice=submitted", order.id))),
        Err(e) if is_form_error(&e) => home_page(&state, &s, None, input, problems_of(&e, ORDER_FIELDS, "")).await,
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "patient_orders.html")]
struct OrdersPage {
    nav: Option<Nav>,
    flash: Option<String>,
    orders: Vec<OrderRow>,
}

async fn orders(State(state): State<WebState>, Signed(s): Signed) -> PageResult {
    require(&s, OrgKind::Patient)?;
    let me = state.app.resolve_patient(&s.actor, None)?;
    let orders = state.app.orders_of(&s.actor, me).await?;
    render(&OrdersPage { nav: Nav::of(&s), flash: None, orders: order_rows(orders) })
}

#[derive(Template)]
#[template(path = "patient_order.html")]
struct OrderPage {
    nav: Option<Nav>,
    flash: Option<String>,
    csrf: String,
    order: OrderDetail,
}

async fn order(
    State(state): State<WebState>,
    Signed(s): Signed,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> PageResult {
    require(&s, OrgKind::Patient)?;
    let id: OrderId = parse_id(&id, "order")?;
    let view = state.app.order_view(&s.actor, id).await?;
    render(&OrderPage {
        nav: Nav::of(&s),
        flash: notice(&FormData::from_query(q)),
        csrf: s.session.csrf_token.clone(),
        order: order_detail(&view, None),
    })
}

async fn cancel(State(state): State<WebState>, Signed(s): Signed, Path(id): Path<String>) -> PageResult {
    require(&s, OrgKind::Patient)?;
    let id: OrderId = parse_id(&id, "order")?;
    let order = state.app.cancel_order(&s.actor, id).await?;
    Ok(see_other(&format!("/patient/orders/{}?notice=cancelled", order.id)))
}

// ---------------------------------------------------------------------------------------------
// Shared with the staff dashboards
// ---------------------------------------------------------------------------------------------

/// The fields of an urlencoded form or query string, in order; repeated names are kept (the
/// order form sends one `items` field per ticked box).
pub(super) struct FormData(Vec<(String, String)>);

impl FormData {
    pub(super) fn parse(body: &[u8]) -> Self {
        Self(url::form_urlencoded::parse(body).into_owned().collect())
    }

    pub(super) fn from_query(raw: Option<String>) -> Self {
        Self::parse(raw.unwrap_or_default().as_bytes())
    }

    /// The first value of a field, or "" when it is absent.
    pub(super) fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("")
    }

    /// A field's value cut to `max` characters, for echoing back into a form.
    pub(super) fn kept(&self, name: &str, max: usize) -> String {
        self.get(name).chars().take(max).collect()
    }

    pub(super) fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }

    pub(super) fn has(&self, name: &str) -> bool {
        !self.get(name).is_empty()
    }
}

/// The sentence for a `?notice=` key. Only these fixed sentences are ever shown: the query text
/// itself is never echoed.
pub(super) fn notice(q: &FormData) -> Option<String> {
    let text = match q.get("notice") {
        "submitted" => "Your order has been sent to your pharmacy.",
        "placed" => "The order has been placed on the patient's behalf.",
        "cancelled" => "The order has been cancelled.",
        "accepted" => "The order has been accepted.",
        "sent" => "The order has been sent to the prescriber.",
        "decided" => "The decision has been recorded.",
        "updated" => "The item has been updated.",
        "stopped" => "The repeat item has been stopped.",
        "item_added" => "The repeat item has been added.",
        "authorised" => "The repeat authorisation has been issued.",
        _ => return None,
    };
    Some(text.to_string())
}

/// A 303 to a GET page.
pub(super) fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

pub(super) fn with_status(mut resp: Response, status: StatusCode) -> Response {
    *resp.status_mut() = status;
    resp
}

/// Renders a page that holds a form; 422 when it is shown again because of errors.
pub(super) fn render_form<T: Template>(page: &T, failed: bool) -> PageResult {
    let resp = render(page)?;
    Ok(if failed { with_status(resp, StatusCode::UNPROCESSABLE_ENTITY) } else { resp })
}

/// Pages of one area refuse users of another with the 403 page, before any data is read.
pub(super) fn require(s: &CurrentSession, kind: OrgKind) -> Result<(), PageError> {
    if s.actor.role.kind() == kind {
        Ok(())
    } else {
        Err(PageError(AppError::Forbidden))
    }
}

/// A typed id from a path segment; a malformed one is the 404 page.
pub(super) fn parse_id<T: FromStr>(raw: &str, what: &'static str) -> Result<T, PageError> {
    raw.parse().map_err(|_| PageError(AppError::NotFound(what)))
}

/// One line of an error summary, linked to the field it is about when known.
pub(super) struct Problem {
    pub message: String,
    pub href: Option<String>,
}

impl Problem {
    pub(super) fn new(message: impl Into<String>, field_id: Option<String>) -> Self {
        Problem { message: message.into(), href: field_id.map(|id| format!("#{id}")) }
    }
}

/// Errors that send the user back to the form they filled in.
pub(super) fn is_form_error(e: &AppError) -> bool {
    matches!(e, AppError::Invalid(_) | AppError::InvalidFields(_) | AppError::NotOrderable(_) | AppError::Conflict(_))
}

use crate::error::sentence as capitalise;

/// Turns an application error into error-summary lines. Messages of the form "field: what is
/// wrong" name the field by its label and link to it (element id = `id_prefix` + field name).
pub(super) fn problems_of(e: &AppError, fields: &[(&str, &str)], id_prefix: &str) -> Vec<Problem> {
    match e {
        AppError::NotOrderable(reasons) => reasons.iter().map(|r| Problem::new(r.clone(), None)).collect(),
        AppError::InvalidFields(messages) => messages.iter().map(|m| field_problem(m, fields, id_prefix)).collect(),
        other => vec![field_problem(&other.to_string(), fields, id_prefix)],
    }
}

fn field_problem(msg: &str, fields: &[(&str, &str)], id_prefix: &str) -> Problem {
    if let Some((field, rest)) = msg.split_once(": ") {
        if let Some((name, label)) = fields.iter().find(|(f, _)| *f == field) {
            return Problem::new(format!("{label}: {rest}"), Some(format!("{id_prefix}{name}")));
        }
    }
    Problem::new(capitalise(msg), None)
}

/// The order form's fields and their labels.
pub(super) const ORDER_FIELDS: &[(&str, &str)] =
    &[("items", "Medicines to order"), ("fulfilment", "How to get the medicines"), ("note", "Note for the pharmacy")];

/// What was typed into an order form, kept to show it again.
#[derive(Default)]
pub(super) struct OrderInput {
    pub items: Vec<String>,
    pub delivery: bool,
    pub note: String,
}

/// Reads the order form: ticked `items`, `fulfilment` and `note`.
pub(super) fn read_order(form: &FormData) -> (OrderInput, Result<SubmitOrderInput, Vec<Problem>>) {
    let input = OrderInput {
        items: form.all("items").into_iter().map(|s| s.chars().take(40).collect()).collect(),
        delivery: form.get("fulfilment") == "delivery",
        note: form.kept("note", 600),
    };
    let mut problems = Vec::new();
    let items: Result<Vec<RepeatItemId>, _> = input.items.iter().map(|s| s.parse::<RepeatItemId>()).collect();
    let items = match items {
        Ok(ids) if ids.is_empty() => {
            problems.push(Problem::new("Choose at least one item to order", Some("items".into())));
            Vec::new()
        }
        Ok(ids) => ids,
        Err(_) => {
            problems.push(Problem::new(
                "One of the chosen items was not recognised; please choose again",
                Some("items".into()),
            ));
            Vec::new()
        }
    };
    let fulfilment = match Fulfilment::parse(form.get("fulfilment")) {
        Ok(f) => Some(f),
        Err(_) => {
            problems.push(Problem::new(
                "Choose how to get the medicines: collection or delivery",
                Some("fulfilment".into()),
            ));
            None
        }
    };
    match fulfilment {
        Some(fulfilment) if problems.is_empty() => {
            let note = input.note.clone();
            (input, Ok(SubmitOrderInput { items, fulfilment, note }))
        }
        _ => (input, Err(problems)),
    }
}

/// One line of a repeat list as every audience sees it.
pub(super) struct LineView {
    pub id: String,
    pub description: String,
    pub quantity: u32,
    pub directions: String,
    pub next_due: String,
    pub issues_remaining: u32,
    pub review_date: String,
    pub orderable: bool,
    pub reason: String,
    pub active: bool,
    pub free_text: bool,
    pub controlled: Option<String>,
    pub checked: bool,
}

pub(super) fn line_view(line: &RepeatLine, checked: &[String]) -> LineView {
    let item = &line.item;
    let orderable = line.orderability.is_orderable();
    let id = item.id.to_string();
    LineView {
        checked: orderable && checked.contains(&id),
        id,
        description: item.terms.description(),
        quantity: item.terms.quantity,
        directions: item.terms.directions.clone(),
        next_due: match item.next_due {
            Some(d) => display_date(d),
            None if orderable => "Can be ordered now".into(),
            None => "Not issued yet".into(),
        },
        issues_remaining: item.issues_remaining,
        review_date: display_date(item.terms.review_date),
        orderable,
        reason: line.orderability.reason(),
        active: item.active,
        free_text: item.terms.medicine_code.is_none(),
        controlled: item.terms.schedule.is_controlled().then(|| controlled_tag(item.terms.schedule)),
    }
}

/// "Controlled drug – Schedule 2"
pub(super) fn controlled_tag(schedule: repeatrx_domain::catalogue::ControlledSchedule) -> String {
    format!("Controlled drug – Schedule {}", schedule.number())
}

/// Active lines first (as the app orders them), and stopped lines apart.
pub(super) fn split_lines(lines: &[RepeatLine], checked: &[String]) -> (Vec<LineView>, Vec<LineView>) {
    let (active, stopped): (Vec<LineView>, Vec<LineView>) =
        lines.iter().map(|l| line_view(l, checked)).partition(|l| l.active);
    (active, stopped)
}

/// One order in a list.
pub(super) struct OrderRow {
    pub id: String,
    pub created: String,
    pub items: usize,
    pub stage: &'static str,
    pub stage_tag: &'static str,
}

pub(super) fn order_rows(mut orders: Vec<Order>) -> Vec<OrderRow> {
    orders.sort_by_key(|o| std::cmp::Reverse(o.created_at));
    orders
        .iter()
        .map(|o| OrderRow {
            id: o.id.to_string(),
            created: display_timestamp(o.created_at),
            items: o.items.len(),
            stage: o.stage.label(),
            stage_tag: stage_tag(o.stage),
        })
        .collect()
}

pub(super) fn stage_tag(stage: OrderStage) -> &'static str {
    match stage {
        OrderStage::Ready | OrderStage::Completed => "ok",
        OrderStage::Closed | OrderStage::Cancelled => "",
        _ => "warn",
    }
}

fn item_tag(state: ItemState) -> &'static str {
    match state {
        ItemState::Rejected | ItemState::NotDispensed | ItemState::Uncollected => "bad",
        ItemState::Cancelled => "",
        ItemState::Requested | ItemState::WithPrescriber => "warn",
        _ => "ok",
    }
}

/// Who a patient is, in the summary at the top of staff pages.
pub(super) struct PatientSummary {
    pub id: String,
    pub name: String,
    pub date_of_birth: String,
    pub nhs_number: String,
}

pub(super) fn patient_summary(p: &Patient) -> PatientSummary {
    PatientSummary {
        id: p.id.to_string(),
        name: p.full_name(),
        date_of_birth: display_date(p.date_of_birth.date()),
        nhs_number: p.nhs_number.formatted(),
    }
}

/// A select option.
pub(super) struct Choice {
    pub value: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

/// What was typed into a decision form, and what was wrong with it.
#[derive(Default)]
pub(super) struct DecisionInput {
    pub decision: String,
    pub reason: String,
    pub note: String,
    pub next_step: String,
    /// The prescriber's one-time code that signs an approval.
    pub code: String,
}

impl DecisionInput {
    pub(super) fn read(form: &FormData) -> Self {
        DecisionInput {
            decision: form.kept("decision", 20),
            reason: form.kept("reason", 40),
            note: form.kept("note", 600),
            next_step: form.kept("next_step", 400),
            code: form.kept("code", 12),
        }
    }

    /// The validated decision, or the errors to show.
    pub(super) fn decision(&self) -> Result<Decision, AppError> {
        if self.decision.is_empty() {
            return Err(AppError::Invalid("decision: choose approve, approve with changes or reject".into()));
        }
        Ok(Decision::parse(&self.decision, Some(&self.reason), Some(&self.note), Some(&self.next_step))?)
    }
}

pub(super) const DECISION_FIELDS: &[(&str, &str)] = &[
    ("decision", "Decision"),
    ("note", "Note"),
    ("reason", "Reason for not approving"),
    ("next_step", "What the patient should do next"),
    ("code", "Security code"),
];

/// A decision form for one item, filled with what was typed last time.
pub(super) struct DecisionForm {
    pub approve: bool,
    pub change: bool,
    pub reject: bool,
    pub note: String,
    pub next_step: String,
    pub reasons: Vec<Choice>,
    pub problems: Vec<Problem>,
}

fn decision_form(input: Option<&DecisionInput>, problems: Vec<Problem>) -> DecisionForm {
    let empty = DecisionInput::default();
    let i = input.unwrap_or(&empty);
    DecisionForm {
        approve: i.decision == "approve",
        change: i.decision == "change",
        reject: i.decision == "reject",
        note: i.note.clone(),
        next_step: i.next_step.clone(),
        reasons: RejectionCode::ALL
            .into_iter()
            .map(|c| Choice { value: c.as_str(), label: c.label(), selected: c.as_str() == i.reason })
            .collect(),
        problems,
    }
}

/// A dispensing step button.
pub(super) struct StepButton {
    pub value: &'static str,
    pub label: &'static str,
    pub confirm: Option<&'static str>,
}

/// The dispensing steps the item's state accepts now, for this kind of order.
fn steps_for(state: ItemState, fulfilment: Fulfilment) -> Vec<StepButton> {
    ItemEvent::DISPENSING
        .into_iter()
        .filter(|ev| state.next(*ev).is_ok())
        .filter(|ev| match ev {
            ItemEvent::ReadyToCollect
            | ItemEvent::ReadyToCollectOwing
            | ItemEvent::Collected
            | ItemEvent::Uncollected => fulfilment == Fulfilment::Collection,
            ItemEvent::ReadyToDispatch | ItemEvent::ReadyToDispatchOwing | ItemEvent::Dispatched => {
                fulfilment == Fulfilment::Delivery
            }
            _ => true,
        })
        .map(|ev| StepButton {
            value: ev.as_str(),
            label: ev.label(),
            confirm: match ev {
                ItemEvent::NotDispensed => Some("Mark this item as not dispensed? This cannot be undone."),
                ItemEvent::Uncollected => Some("Mark this item as not collected? This cannot be undone."),
                _ => None,
            },
        })
        .collect()
}

/// One item of an order with its decision, as every audience sees it.
pub(super) struct ItemDetail {
    pub id: String,
    pub description: String,
    pub state: &'static str,
    pub state_tag: &'static str,
    pub reject_reason: Option<String>,
    pub reject_note: Option<String>,
    pub next_step: Option<String>,
    pub change_note: Option<String>,
    pub awaiting_decision: bool,
    pub steps: Vec<StepButton>,
    pub form: DecisionForm,
}

/// One recorded change in the history timeline.
pub(super) struct HistoryLine {
    pub at: String,
    pub subject: String,
    pub from: String,
    pub to: String,
    pub by: &'static str,
    pub reason: Option<String>,
}

/// An order with its items and history.
pub(super) struct OrderDetail {
    pub id: String,
    pub created: String,
    pub stage: &'static str,
    pub stage_tag: &'static str,
    /// As the patient reads it ("Deliver to my address").
    pub fulfilment: &'static str,
    /// As staff read it ("Deliver to the patient's address").
    pub fulfilment_staff: &'static str,
    pub note: Option<String>,
    pub on_behalf: bool,
    pub submitted: bool,
    pub in_review: bool,
    pub with_prescriber: bool,
    pub items: Vec<ItemDetail>,
    pub history: Vec<HistoryLine>,
    pub patient: PatientSummary,
}

fn state_label(is_item: bool, s: &str) -> String {
    if s == "new" {
        return "New".into();
    }
    let label = if is_item { ItemState::parse(s).map(|x| x.label()) } else { OrderStage::parse(s).map(|x| x.label()) };
    label.map(str::to_string).unwrap_or_else(|_| s.replace('_', " "))
}

/// Builds the order's view; `failed` carries the input and errors of a decision form that is
/// shown again for one item.
pub(super) fn order_detail(view: &OrderView, failed: Option<(&str, &DecisionInput, Vec<Problem>)>) -> OrderDetail {
    let order = &view.order;
    let mut failed = failed;
    let items = order
        .items
        .iter()
        .map(|item| {
            let id = item.id.to_string();
            let (input, problems) = match failed.take_if(|(fid, _, _)| *fid == id) {
                Some((_, input, problems)) => (Some(input), problems),
                None => (None, Vec::new()),
            };
            let (mut reject_reason, mut reject_note, mut next_step, mut change_note) = (None, None, None, None);
            match &item.decision {
                Some(Decision::Reject { code, note, next_step: next }) => {
                    reject_reason = Some(code.label().to_string());
                    reject_note = note.clone();
                    next_step = Some(next.clone());
                }
                Some(Decision::Change { note }) => change_note = Some(note.clone()),
                Some(Decision::Approve) | None => {}
            }
            ItemDetail {
                description: item.description.clone(),
                state: item.state.label(),
                state_tag: item_tag(item.state),
                reject_reason,
                reject_note,
                next_step,
                change_note,
                awaiting_decision: item.state == ItemState::WithPrescriber,
                steps: steps_for(item.state, order.fulfilment),
                form: decision_form(input, problems),
                id,
            }
        })
        .collect();
    let mut transitions = view.transitions.clone();
    transitions.sort_by_key(|t| t.at);
    let history = transitions
        .iter()
        .map(|t| HistoryLine {
            at: display_timestamp(t.at),
            subject: match t.item_id {
                Some(id) => order
                    .items
                    .iter()
                    .find(|i| i.id == id)
                    .map(|i| i.description.clone())
                    .unwrap_or_else(|| "An item".into()),
                None => "Order".into(),
            },
            from: state_label(t.item_id.is_some(), &t.from),
            to: state_label(t.item_id.is_some(), &t.to),
            by: t.actor_role.label(),
            reason: t.reason.clone(),
        })
        .collect();
    OrderDetail {
        id: order.id.to_string(),
        created: display_timestamp(order.created_at),
        stage: order.stage.label(),
        stage_tag: stage_tag(order.stage),
        fulfilment: order.fulfilment.label(),
        fulfilment_staff: match order.fulfilment {
            Fulfilment::Collection => "Collect from the pharmacy",
            Fulfilment::Delivery => "Deliver to the patient's address",
        },
        note: order.note.clone(),
        on_behalf: order.on_behalf,
        submitted: order.stage == OrderStage::Submitted,
        in_review: order.stage == OrderStage::InReview,
        with_prescriber: order.stage == OrderStage::WithPrescriber,
        items,
        history,
        patient: patient_summary(&view.patient),
    }
}

/// "45 min", "3 h", "2 days": how long ago, for the queues.
pub(super) fn age(now: Timestamp, then: Timestamp) -> String {
    let mins = (now.duration_since(then).as_secs() / 60).max(0);
    if mins < 60 {
        format!("{mins} min")
    } else if mins < 48 * 60 {
        format!("{} h", mins / 60)
    } else {
        format!("{} days", mins / (24 * 60))
    }
}

/// A catalogue entry offered as a radio button.
pub(super) struct MedicineChoice {
    pub code: String,
    pub name: String,
    pub pack: String,
    pub controlled: Option<String>,
    pub checked: bool,
}

/// The "add a repeat item" / "issue a repeat authorisation" form, with the catalogue search
/// results and whatever was typed last time.
pub(super) struct TermsForm {
    pub q: String,
    pub searched: bool,
    pub results: Vec<MedicineChoice>,
    pub free_text: bool,
    pub drug_name: String,
    pub strength: String,
    pub form: String,
    pub quantity: String,
    pub directions: String,
    pub cycle_days: String,
    pub issues: String,
    pub review_date: String,
    pub problems: Vec<Problem>,
    /// Whether the form signs an authorisation (prescribers), so asks for a one-time code.
    pub signing: bool,
}

/// The terms form's fields; element ids are "rt-" + field name.
pub(super) const TERMS_FIELDS: &[(&str, &str)] = &[
    ("medicine_code", "Medicine"),
    ("drug_name", "Drug name"),
    ("strength", "Strength"),
    ("form", "Form"),
    ("quantity", "Quantity"),
    ("directions", "Directions"),
    ("cycle_days", "Days between issues"),
    ("issues", "Number of issues"),
    ("review_date", "Medication review date"),
    ("code", "Security code"),
];

/// Builds the terms form for catalogue search `q`; `typed` is the submitted form when it is
/// shown again with errors.
pub(super) fn terms_form(q: &str, typed: Option<&FormData>, problems: Vec<Problem>) -> TermsForm {
    let q: String = q.trim().chars().take(60).collect();
    let chosen = typed.map(|f| f.get("medicine_code").trim().to_string()).unwrap_or_default();
    let catalogue = Catalogue::builtin();
    let mut found: Vec<_> = if q.is_empty() { Vec::new() } else { catalogue.search(&q, 20) };
    if !chosen.is_empty() && !found.iter().any(|m| m.code == chosen) {
        if let Some(m) = catalogue.get(&chosen) {
            found.insert(0, m);
        }
    }
    let results = found
        .into_iter()
        .map(|m| MedicineChoice {
            checked: m.code == chosen,
            code: m.code.clone(),
            name: m.display_name(),
            pack: format!("pack of {}", m.pack_size),
            controlled: m.schedule.is_controlled().then(|| controlled_tag(m.schedule)),
        })
        .collect::<Vec<_>>();
    let get = |name: &str, default: &str, max: usize| match typed {
        Some(f) => f.kept(name, max),
        None => default.to_string(),
    };
    TermsForm {
        searched: !q.is_empty(),
        free_text: !results.iter().any(|r| r.checked),
        q,
        results,
        drug_name: get("drug_name", "", 150),
        strength: get("strength", "", 80),
        form: get("form", "", 80),
        quantity: get("quantity", "", 10),
        directions: get("directions", "", 350),
        cycle_days: get("cycle_days", "28", 10),
        issues: get("issues", "6", 10),
        review_date: get("review_date", "", 20),
        problems,
        signing: false,
    }
}

/// Reads the terms form into the app's input; numbers that are not numbers are reported here.
pub(super) fn read_terms(form: &FormData) -> Result<RepeatTermsInput, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut number = |name: &'static str, label: &str, example: &str| -> i64 {
        match form.get(name).trim().parse::<i64>() {
            Ok(n) => n,
            Err(_) => {
                problems.push(Problem::new(
                    format!("{label}: enter a whole number, for example {example}"),
                    Some(format!("rt-{name}")),
                ));
                0
            }
        }
    };
    let quantity = number("quantity", "Quantity", "28");
    let cycle_days = number("cycle_days", "Days between issues", "28");
    let issues = number("issues", "Number of issues", "6");
    let code = form.get("medicine_code").trim();
    if code.is_empty() && form.get("drug_name").trim().is_empty() {
        problems.insert(
            0,
            Problem::new(
                "Medicine: choose a medicine from the catalogue search results, or type its name, strength and form",
                Some("rt-medicine_code".into()),
            ),
        );
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(RepeatTermsInput {
        medicine_code: (!code.is_empty()).then(|| code.to_string()),
        drug_name: form.get("drug_name").to_string(),
        strength: form.get("strength").to_string(),
        form: form.get("form").to_string(),
        quantity,
        directions: form.get("directions").to_string(),
        cycle_days,
        issues,
        review_date: form.get("review_date").to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;

    #[test]
    fn forms_keep_repeated_fields_and_first_values() {
        let f = FormData::parse(b"items=a&items=b&note=hi%20there&_csrf=x&note=second");
        assert_eq!(f.all("items"), vec!["a", "b"]);
        assert_eq!(f.get("note"), "hi there");
        assert_eq!(f.get("missing"), "");
        assert!(!f.has("missing"));
        assert_eq!(f.kept("note", 2), "hi");
    }

    #[test]
    fn notices_are_fixed_sentences_and_never_echo_the_query() {
        assert_eq!(
            notice(&FormData::from_query(Some("notice=submitted".into()))).as_deref(),
            Some("Your order has been sent to your pharmacy.")
        );
        assert_eq!(notice(&FormData::from_query(Some("notice=%3Cscript%3E".into()))), None);
        assert_eq!(notice(&FormData::from_query(None)), None);
    }

    #[test]
    fn field_errors_name_the_field_and_link_to_it() {
        let e = AppError::Invalid("quantity: must be between 1 and 10000".into());
        let p = problems_of(&e, TERMS_FIELDS, "rt-");
        assert_eq!(p[0].message, "Quantity: must be between 1 and 10000");
        assert_eq!(p[0].href.as_deref(), Some("#rt-quantity"));
        let other = problems_of(&AppError::Invalid("something odd".into()), TERMS_FIELDS, "rt-");
        assert_eq!(other[0].message, "Something odd");
        assert!(other[0].href.is_none());
        let refused =
            problems_of(&AppError::NotOrderable(vec!["A: too early".into(), "B: stopped".into()]), ORDER_FIELDS, "");
        assert_eq!(refused.len(), 2);
    }

    #[test]
    fn an_order_needs_an_item_and_a_fulfilment() {
        let (_, r) = read_order(&FormData::parse(b"fulfilment=collection&note=x"));
        let problems = r.err().unwrap_or_default();
        assert_eq!(problems[0].message, "Choose at least one item to order");
        let id = RepeatItemId::new();
        let body = format!("items={id}&fulfilment=delivery&note=ring+the+bell");
        let (kept, r) = read_order(&FormData::parse(body.as_bytes()));
        let input = r.ok().unwrap_or_else(|| panic!("valid order refused"));
        assert_eq!(input.items, vec![id]);
        assert_eq!(input.fulfilment, Fulfilment::Delivery);
        assert!(kept.delivery);
        assert_eq!(kept.note, "ring the bell");
        let (_, r) = read_order(&FormData::parse(b"items=not-an-id&fulfilment=collection"));
        assert!(r.is_err());
    }

    #[test]
    fn ages_read_naturally() {
        let now: Timestamp = "2026-03-10T12:00:00Z".parse().unwrap_or(Timestamp::UNIX_EPOCH);
        assert_eq!(age(now, now - SignedDuration::from_mins(5)), "5 min");
        assert_eq!(age(now, now - SignedDuration::from_hours(3)), "3 h");
        assert_eq!(age(now, now - SignedDuration::from_hours(50)), "2 days");
        assert_eq!(age(now, now + SignedDuration::from_hours(1)), "0 min");
    }

    #[test]
    fn dispensing_steps_follow_the_fulfilment() {
        let collect: Vec<&str> =
            steps_for(ItemState::Approved, Fulfilment::Collection).iter().map(|s| s.value).collect();
        assert!(collect.contains(&"ready_to_collect") && !collect.contains(&"ready_to_dispatch"));
        assert!(collect.contains(&"start_preparing") && collect.contains(&"not_dispensed"));
        let deliver: Vec<&str> =
            steps_for(ItemState::ReadyToDispatch, Fulfilment::Delivery).iter().map(|s| s.value).collect();
        assert_eq!(deliver, vec!["dispatched"]);
        assert!(steps_for(ItemState::WithPrescriber, Fulfilment::Collection).is_empty());
        assert!(steps_for(ItemState::Collected, Fulfilment::Collection).is_empty());
    }

    #[test]
    fn empty_or_unknown_decisions_are_refused_with_a_sentence() {
        let none = DecisionInput::default();
        assert!(matches!(none.decision(), Err(AppError::Invalid(m)) if m.starts_with("decision:")));
        let reject = DecisionInput { decision: "reject".into(), reason: "too_early".into(), ..Default::default() };
        assert!(matches!(reject.decision(), Ok(Decision::Reject { code: RejectionCode::TooEarly, .. })));
        let change = DecisionInput { decision: "change".into(), ..Default::default() };
        assert!(change.decision().is_err());
    }
}
