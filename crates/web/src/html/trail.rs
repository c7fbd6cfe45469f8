//! A manager's search of the organisation's audit trail (operators: the platform's): who did
//! what, to which patient's record, when, from where, and why where a reason was required.
use super::account::field_problems;
use super::patient::{is_form_error, render_form, require, FormData, Problem};
use super::{Nav, PageResult};
use crate::session::Signed;
use crate::WebState;
use askama::Template;
use axum::extract::{RawQuery, State};
use axum::routing::get;
use axum::Router;
use repeatrx_app::audit::{TrailQuery, TRAIL_KINDS};
use repeatrx_app::auth::CurrentSession;
use repeatrx_domain::access::OrgKind;
use repeatrx_domain::timefmt::display_timestamp;

pub fn routes() -> Router<WebState> {
    let page = |kind: OrgKind| {
        get(move |State(state): State<WebState>, Signed(s): Signed, RawQuery(q): RawQuery| async move {
            search(&state, &s, q, kind).await
        })
    };
    Router::new()
        .route("/pharmacy/audit", page(OrgKind::Pharmacy))
        .route("/practice/audit", page(OrgKind::Practice))
        .route("/admin/audit", page(OrgKind::Platform))
}

struct LineView {
    when: String,
    who: String,
    role: String,
    organisation: String,
    action: String,
    patient: Option<String>,
    patient_link: Option<String>,
    address: String,
    purpose: Option<String>,
    detail: String,
}

#[derive(Template)]
#[template(path = "audit_trail.html")]
struct TrailPage {
    nav: Option<Nav>,
    flash: Option<String>,
    action: &'static str,
    kinds: Vec<(&'static str, &'static str)>,
    staff: Vec<(String, String)>,
    query: TrailQuery,
    lines: Vec<LineView>,
    older: Option<String>,
    problems: Vec<Problem>,
}

fn base(kind: OrgKind) -> &'static str {
    match kind {
        OrgKind::Pharmacy => "/pharmacy/audit",
        OrgKind::Practice => "/practice/audit",
        _ => "/admin/audit",
    }
}

async fn search(state: &WebState, s: &CurrentSession, q: Option<String>, kind: OrgKind) -> PageResult {
    require(s, kind)?;
    let f = FormData::from_query(q);
    let text = |name: &str| Some(f.kept(name, 60)).filter(|v| !v.trim().is_empty());
    let query = TrailQuery {
        actor: text("actor"),
        patient: text("patient"),
        kind: text("kind"),
        from: text("from"),
        to: text("to"),
        before: f.get("before").parse().ok(),
    };
    let staff = state
        .app
        .managed_accounts(&s.actor)
        .await?
        .into_iter()
        .map(|a| (a.user.id.to_string(), format!("{} ({})", a.user.display_name, a.user.role.label())))
        .collect();
    let (lines, older, problems) = match state.app.search_trail(&s.actor, &query).await {
        Ok(page) => (page.lines, page.older, vec![]),
        Err(e) if is_form_error(&e) => {
            let fields = [
                ("actor", "Who", "trail-actor"),
                ("patient", "Patient", "trail-patient"),
                ("kind", "What", "trail-kind"),
                ("from", "From", "trail-from"),
                ("to", "To", "trail-to"),
            ];
            (vec![], None, field_problems(&e, &fields))
        }
        Err(e) => return Err(e.into()),
    };
    let older = older.map(|seq| {
        let mut pairs = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("actor", &query.actor),
            ("patient", &query.patient),
            ("kind", &query.kind),
            ("from", &query.from),
            ("to", &query.to),
        ] {
            if let Some(v) = value {
                pairs.append_pair(name, v);
            }
        }
        pairs.append_pair("before", &seq.to_string());
        format!("{}?{}", base(kind), pairs.finish())
    });
    let lines = lines
        .into_iter()
        .map(|l| LineView {
            when: display_timestamp(l.record.at),
            who: l.who,
            role: l.record.actor_role.map(|r| r.label()).unwrap_or("").to_string(),
            organisation: l.organisation,
            patient_link: l
                .record
                .patient
                .filter(|_| kind == OrgKind::Pharmacy)
                .map(|p| format!("/pharmacy/patients/{p}")),
            patient: l.record.patient.map(|p| p.to_string()),
            action: l.record.action,
            address: l.record.address,
            purpose: l.record.purpose,
            detail: l.record.detail,
        })
        .collect();
    let failed = !problems.is_empty();
    let page = TrailPage {
        nav: Nav::of(s),
        flash: None,
        action: base(kind),
        kinds: TRAIL_KINDS.to_vec(),
        staff,
        query,
        lines,
        older,
        problems,
    };
    render_form(&page, failed)
}
