//! The platform operator's page: the pharmacies and practices on the platform, and the forms
//! that add one with its first manager (whose one-time password is shown once).
use super::patient::{is_form_error, problems_of, render_form, require, FormData, Problem};
use super::{render, Nav, PageResult};
use crate::session::Signed;
use crate::WebState;
use askama::Template;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::routing::{get, post};
use axum::Router;
use repeatrx_app::admin::NewOrganisationInput;
use repeatrx_app::auth::CurrentSession;
use repeatrx_domain::access::OrgKind;
use repeatrx_domain::timefmt::display_timestamp;

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/admin", get(home))
        .route("/admin/pharmacies", post(add_pharmacy))
        .route("/admin/practices", post(add_practice))
        .route("/admin/departures", post(mark_leaving))
}

struct OrgRow {
    id: String,
    name: String,
    ods_code: String,
    created: String,
    on_repeatrx: bool,
    /// Pharmacies: "Leaving: ..." or "Left: ..." (empty while active).
    status: String,
}

/// The "a pharmacy leaves" form, as typed.
#[derive(Default)]
struct LeavingForm {
    pharmacy: String,
    grace_days: String,
    problems: Vec<Problem>,
}

/// An organisation form, filled with what was typed last time.
#[derive(Default)]
struct OrgForm {
    name: String,
    ods_code: String,
    address: String,
    email: String,
    manager_name: String,
    manager_email: String,
    on_repeatrx: bool,
    problems: Vec<Problem>,
}

impl OrgForm {
    fn typed(f: &FormData, problems: Vec<Problem>) -> Self {
        OrgForm {
            name: f.kept("name", 120),
            ods_code: f.kept("ods_code", 10),
            address: f.kept("address", 300),
            email: f.kept("email", 254),
            manager_name: f.kept("manager_name", 100),
            manager_email: f.kept("manager_email", 254),
            on_repeatrx: f.has("on_repeatrx"),
            problems,
        }
    }
}

#[derive(Template)]
#[template(path = "admin.html")]
struct AdminPage {
    nav: Option<Nav>,
    flash: Option<String>,
    csrf: String,
    pharmacies: Vec<OrgRow>,
    practices: Vec<OrgRow>,
    pharmacy_form: OrgForm,
    practice_form: OrgForm,
    leaving: LeavingForm,
    grace_choices: Vec<u8>,
}

const ORG_FIELDS: &[(&str, &str)] = &[
    ("name", "Name"),
    ("ods_code", "ODS code"),
    ("address", "Address"),
    ("email", "Organisation email"),
    ("manager_name", "Manager's name"),
    ("manager_email", "Manager's email address"),
];

async fn home(State(state): State<WebState>, Signed(s): Signed, RawQuery(q): RawQuery) -> PageResult {
    // A fixed sentence, never the query's text.
    let flash = (FormData::from_query(q).get("notice") == "leaving").then(|| {
        "The pharmacy is marked as leaving: its staff are locked out and its patients are being emailed.".to_string()
    });
    admin_page(&state, &s, flash, OrgForm::default(), OrgForm::default(), LeavingForm::default()).await
}

/// "Leaving: data deleted on 30 Nov 2026, 10:00 (in 3 days 4 hours)" or "Left: data deleted on ...".
fn departure_status(d: &repeatrx_store::PharmacyDeparture, now: jiff::Timestamp) -> String {
    match d.deleted_at {
        Some(at) => format!("Left: its patients' data was deleted on {}", display_timestamp(at)),
        None => {
            let hours = repeatrx_domain::departure::hours_left(now, d.delete_after);
            let left = match (hours / 24, hours % 24) {
                (0, 0) => "due now".to_string(),
                (0, h) => format!("in {h} hours"),
                (d, 0) => format!("in {d} days"),
                (d, h) => format!("in {d} days {h} hours"),
            };
            format!("Leaving: its patients' data is deleted on {} ({left})", display_timestamp(d.delete_after))
        }
    }
}

async fn admin_page(
    state: &WebState,
    s: &CurrentSession,
    flash: Option<String>,
    pharmacy_form: OrgForm,
    practice_form: OrgForm,
    leaving: LeavingForm,
) -> PageResult {
    require(s, OrgKind::Platform)?;
    let (pharmacies, practices) = state.app.organisations(&s.actor).await?;
    let departures = state.app.departures(&s.actor).await?;
    let now = state.app.clock.now();
    let failed =
        !pharmacy_form.problems.is_empty() || !practice_form.problems.is_empty() || !leaving.problems.is_empty();
    let page = AdminPage {
        nav: Nav::of(s),
        flash,
        csrf: s.session.csrf_token.clone(),
        pharmacies: pharmacies
            .iter()
            .map(|p| OrgRow {
                id: p.id.to_string(),
                name: p.name.clone(),
                ods_code: p.ods_code.clone(),
                created: display_timestamp(p.created_at),
                on_repeatrx: false,
                status: departures
                    .iter()
                    .find(|(_, d)| d.pharmacy_id == p.id)
                    .map(|(_, d)| departure_status(d, now))
                    .unwrap_or_default(),
            })
            .collect(),
        practices: practices
            .iter()
            .map(|p| OrgRow {
                id: p.id.to_string(),
                name: p.name.clone(),
                ods_code: p.ods_code.clone(),
                created: display_timestamp(p.created_at),
                on_repeatrx: p.on_repeatrx,
                status: String::new(),
            })
            .collect(),
        pharmacy_form,
        practice_form,
        leaving,
        grace_choices: (0..=repeatrx_domain::departure::MAX_GRACE_DAYS).rev().collect(),
    };
    render_form(&page, failed)
}

const LEAVING_FIELDS: &[(&str, &str)] =
    &[("pharmacy", "Pharmacy"), ("grace_days", "Delete its data after"), ("confirm", "Confirm")];

/// An operator marks a pharmacy as leaving (P12).
async fn mark_leaving(State(state): State<WebState>, Signed(s): Signed, body: Bytes) -> PageResult {
    require(&s, OrgKind::Platform)?;
    let form = FormData::parse(&body);
    let typed = |problems| LeavingForm {
        pharmacy: form.kept("pharmacy", 40),
        grace_days: form.kept("grace_days", 2),
        problems,
    };
    let pharmacy = form.get("pharmacy").parse::<repeatrx_domain::ids::PharmacyId>();
    let grace = form.get("grace_days").parse::<u8>();
    let result = match (pharmacy, grace) {
        (Ok(p), Ok(g)) => state.app.mark_pharmacy_leaving(&s.actor, p, g, form.get("confirm") == "yes").await,
        (Err(_), _) => {
            Err(repeatrx_app::AppError::InvalidFields(vec!["pharmacy: choose the pharmacy that is leaving".into()]))
        }
        (_, Err(_)) => {
            Err(repeatrx_app::AppError::InvalidFields(vec!["grace_days: choose how many days, 0 to 7".into()]))
        }
    };
    match result {
        Ok(_) => Ok(super::patient::see_other("/admin?notice=leaving#pharmacies-h")),
        Err(e) if is_form_error(&e) || matches!(e, repeatrx_app::AppError::Conflict(_)) => {
            let problems = match &e {
                repeatrx_app::AppError::Conflict(m) => vec![Problem::new(m.clone(), Some("leaving-pharmacy".into()))],
                _ => problems_of(&e, LEAVING_FIELDS, "leaving-"),
            };
            admin_page(&state, &s, None, OrgForm::default(), OrgForm::default(), typed(problems)).await
        }
        Err(e) => Err(e.into()),
    }
}

fn input_of(f: &FormData) -> NewOrganisationInput {
    NewOrganisationInput {
        name: f.get("name").into(),
        ods_code: f.get("ods_code").into(),
        address: f.get("address").into(),
        email: f.get("email").into(),
        manager_name: f.get("manager_name").into(),
        manager_email: f.get("manager_email").into(),
        on_repeatrx: f.has("on_repeatrx"),
    }
}

#[derive(Template)]
#[template(path = "admin_created.html")]
struct CreatedPage {
    nav: Option<Nav>,
    flash: Option<String>,
    kind: &'static str,
    name: String,
    ods_code: String,
    manager_email: String,
    invitation_until: String,
}

async fn add_pharmacy(State(state): State<WebState>, Signed(s): Signed, body: Bytes) -> PageResult {
    require(&s, OrgKind::Platform)?;
    let form = FormData::parse(&body);
    match state.app.create_pharmacy(&s.actor, &input_of(&form)).await {
        Ok(done) => render(&CreatedPage {
            nav: Nav::of(&s),
            flash: None,
            kind: "Pharmacy",
            name: done.organisation.name.clone(),
            ods_code: done.organisation.ods_code.clone(),
            manager_email: done.manager_email.to_string(),
            invitation_until: repeatrx_domain::timefmt::display_timestamp(done.invitation_expires_at),
        }),
        Err(e) if is_form_error(&e) => {
            let problems = problems_of(&e, ORG_FIELDS, "ph-");
            admin_page(&state, &s, None, OrgForm::typed(&form, problems), OrgForm::default(), LeavingForm::default())
                .await
        }
        Err(e) => Err(e.into()),
    }
}

async fn add_practice(State(state): State<WebState>, Signed(s): Signed, body: Bytes) -> PageResult {
    require(&s, OrgKind::Platform)?;
    let form = FormData::parse(&body);
    match state.app.create_practice(&s.actor, &input_of(&form)).await {
        Ok(done) => render(&CreatedPage {
            nav: Nav::of(&s),
            flash: None,
            kind: "Practice",
            name: done.organisation.name.clone(),
            ods_code: done.organisation.ods_code.clone(),
            manager_email: done.manager_email.to_string(),
            invitation_until: repeatrx_domain::timefmt::display_timestamp(done.invitation_expires_at),
        }),
        Err(e) if is_form_error(&e) => {
            let problems = problems_of(&e, ORG_FIELDS, "pr-");
            admin_page(&state, &s, None, OrgForm::default(), OrgForm::typed(&form, problems), LeavingForm::default())
                .await
        }
        Err(e) => Err(e.into()),
    }
}
