//! The platform operator's page: the pharmacies and practices on the platform, and the forms
//! that add one with its first manager (whose one-time password is shown once).
use super::patient::{is_form_error, problems_of, render_form, require, FormData, Problem};
use super::{render, Nav, PageResult};
use crate::session::Signed;
use crate::WebState;
use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
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
}

struct OrgRow {
    name: String,
    ods_code: String,
    created: String,
    on_repeatrx: bool,
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
}

const ORG_FIELDS: &[(&str, &str)] = &[
    ("name", "Name"),
    ("ods_code", "ODS code"),
    ("address", "Address"),
    ("email", "Organisation email"),
    ("manager_name", "Manager's name"),
    ("manager_email", "Manager's email address"),
];

async fn home(State(state): State<WebState>, Signed(s): Signed) -> PageResult {
    admin_page(&state, &s, OrgForm::default(), OrgForm::default()).await
}

async fn admin_page(
    state: &WebState,
    s: &CurrentSession,
    pharmacy_form: OrgForm,
    practice_form: OrgForm,
) -> PageResult {
    require(s, OrgKind::Platform)?;
    let (pharmacies, practices) = state.app.organisations(&s.actor).await?;
    let failed = !pharmacy_form.problems.is_empty() || !practice_form.problems.is_empty();
    let page = AdminPage {
        nav: Nav::of(s),
        flash: None,
        csrf: s.session.csrf_token.clone(),
        pharmacies: pharmacies
            .iter()
            .map(|p| OrgRow {
                name: p.name.clone(),
                ods_code: p.ods_code.clone(),
                created: display_timestamp(p.created_at),
                on_repeatrx: false,
            })
            .collect(),
        practices: practices
            .iter()
            .map(|p| OrgRow {
                name: p.name.clone(),
                ods_code: p.ods_code.clone(),
                created: display_timestamp(p.created_at),
                on_repeatrx: p.on_repeatrx,
            })
            .collect(),
        pharmacy_form,
        practice_form,
    };
    render_form(&page, failed)
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
            admin_page(&state, &s, OrgForm::typed(&form, problems), OrgForm::default()).await
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
            admin_page(&state, &s, OrgForm::default(), OrgForm::typed(&form, problems)).await
        }
        Err(e) => Err(e.into()),
    }
}
