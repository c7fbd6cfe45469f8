//! "My data" (C10): everything RepeatRx holds about the signed-in patient, as a readable page
//! (printable) and as a JSON download.
use super::patient::{is_form_error, problems_of, render_form, require, FormData, Problem};
use super::{render, Nav, PageResult};
use crate::session::clear_session_cookie;
use crate::session::Signed;
use crate::WebState;
use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use axum::Router;
use repeatrx_app::erasure::EraseRequest;
use repeatrx_app::export::PatientExport;
use repeatrx_domain::access::OrgKind;
use repeatrx_domain::timefmt::{display_date, display_timestamp};

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/patient/export", get(page))
        .route("/patient/export.json", get(download))
        .route("/patient/erase", get(erase_page).post(erase))
}

/// "Delete my account and data" (P13): what goes, a last chance to take the export, then the
/// password and a ticked box.
#[derive(Template)]
#[template(path = "patient_erase.html")]
struct ErasePage {
    nav: Option<Nav>,
    flash: Option<String>,
    csrf: String,
    problems: Vec<Problem>,
}

const ERASE_FIELDS: &[(&str, &str)] = &[("password", "Your password"), ("confirm", "Confirm")];

async fn erase_page(Signed(s): Signed) -> PageResult {
    require(&s, OrgKind::Patient)?;
    render(&ErasePage { nav: Nav::of(&s), flash: None, csrf: s.session.csrf_token.clone(), problems: Vec::new() })
}

async fn erase(State(state): State<WebState>, Signed(s): Signed, body: Bytes) -> PageResult {
    require(&s, OrgKind::Patient)?;
    let me = state.app.resolve_patient(&s.actor, None)?;
    let form = FormData::parse(&body);
    let request = EraseRequest {
        confirm: form.get("confirm") == "yes",
        password: form.get("password").to_string().into(),
        reason: String::new(),
    };
    match state.app.erase_patient(&s.actor, me, &request).await {
        Ok(_) => {
            Ok(([(header::SET_COOKIE, clear_session_cookie())], Redirect::to("/sign-in?notice=erased")).into_response())
        }
        Err(e) if is_form_error(&e) => {
            let problems = problems_of(&e, ERASE_FIELDS, "erase-");
            let page = ErasePage { nav: Nav::of(&s), flash: None, csrf: s.session.csrf_token.clone(), problems };
            render_form(&page, true)
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "patient_export.html")]
struct ExportPage {
    nav: Option<Nav>,
    flash: Option<String>,
    data: PatientExport,
}

async fn page(State(state): State<WebState>, Signed(s): Signed) -> PageResult {
    require(&s, OrgKind::Patient)?;
    let me = state.app.resolve_patient(&s.actor, None)?;
    let data = state.app.export_patient(&s.actor, me).await?;
    render(&ExportPage { nav: Nav::of(&s), flash: None, data: for_reading(data) })
}

/// The export with its times in London time and its dates written out, for the page (the JSON
/// keeps RFC 3339 UTC and ISO dates, which programs read).
fn for_reading(mut d: PatientExport) -> PatientExport {
    fn time(s: &mut String) {
        if let Ok(t) = s.parse::<jiff::Timestamp>() {
            *s = display_timestamp(t);
        }
    }
    fn date(s: &mut String) {
        if let Ok(day) = s.parse::<jiff::civil::Date>() {
            *s = display_date(day);
        }
    }
    time(&mut d.exported_at);
    date(&mut d.patient.date_of_birth);
    for i in &mut d.repeat_items {
        date(&mut i.review_date);
        if let Some(n) = i.next_due.as_mut() {
            date(n);
        }
    }
    for o in &mut d.orders {
        time(&mut o.created_at);
        for h in &mut o.history {
            time(&mut h.at);
        }
    }
    if let Some(a) = d.account.as_mut() {
        time(&mut a.created_at);
        for e in &mut a.events {
            time(&mut e.at);
        }
    }
    for l in &mut d.access_log {
        time(&mut l.at);
    }
    d
}

async fn download(State(state): State<WebState>, Signed(s): Signed) -> PageResult {
    require(&s, OrgKind::Patient)?;
    let me = state.app.resolve_patient(&s.actor, None)?;
    let data = state.app.export_patient(&s.actor, me).await?;
    let body = serde_json::to_vec_pretty(&data)
        .map_err(|e| repeatrx_app::AppError::Internal(format!("export did not serialise: {e}")))?;
    let day = repeatrx_domain::timefmt::london_date(state.app.clock.now());
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"repeatrx-my-data-{day}.json\"")),
        ],
        body,
    )
        .into_response())
}
