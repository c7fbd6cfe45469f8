//! The server-rendered dashboards. One module per audience; each page handler extracts the
//! session and typed input, calls one `App` method, and renders an askama template.
pub mod account;
pub mod admin;
pub mod auth;
pub mod custody;
pub mod demo;
pub mod export;
pub mod patient;
pub mod pharmacy;
pub mod practice;
pub mod recovery;
pub mod staff;
pub mod trail;

use crate::error::PageError;
use crate::WebState;
use askama::Template;
use axum::response::{Html, IntoResponse, Response};
use axum::Router;
use repeatrx_app::auth::CurrentSession;
use repeatrx_app::AppError;
use repeatrx_domain::access::OrgKind;

pub fn routes() -> Router<WebState> {
    Router::new()
        .merge(auth::routes())
        .merge(patient::routes())
        .merge(pharmacy::routes())
        .merge(practice::routes())
        .merge(admin::routes())
        .merge(demo::routes())
        .merge(account::routes())
        .merge(recovery::routes())
        .merge(staff::routes())
        .merge(custody::routes())
        .merge(trail::routes())
        .merge(export::routes())
}

/// The header of every signed-in page: who is signed in, their links, and the CSRF token that
/// every form on the page must send back.
pub struct Nav {
    pub name: String,
    pub role: &'static str,
    pub csrf: String,
    pub links: Vec<(&'static str, &'static str)>,
    /// The idle timeout in seconds (how long each use keeps the session open).
    pub idle_secs: i64,
    /// Seconds until the session ends unless it is used again (the page warns before then).
    pub left_secs: i64,
}

impl Nav {
    pub fn of(s: &CurrentSession) -> Option<Nav> {
        let links = match s.actor.role.kind() {
            _ if s.actor.role == repeatrx_domain::access::Role::Custodian => {
                vec![("/custody", "Break-glass access")]
            }
            OrgKind::Patient => vec![
                ("/patient", "My medicines"),
                ("/patient/orders", "My orders"),
                ("/patient/access", "Who has seen my record"),
                ("/patient/export", "My data"),
            ],
            OrgKind::Pharmacy => vec![("/pharmacy", "Order queue"), ("/pharmacy/patients", "Patients")],
            OrgKind::Practice => vec![("/practice", "Requests")],
            OrgKind::Platform => vec![("/admin", "Organisations")],
        };
        let mut links = links;
        if s.actor.role == repeatrx_domain::access::Role::PharmacyManager {
            links.push(("/pharmacy/staff", "Staff"));
            links.push(("/pharmacy/audit", "Audit trail"));
        } else if s.actor.role == repeatrx_domain::access::Role::PracticeManager {
            links.push(("/practice/staff", "Staff"));
            links.push(("/practice/audit", "Audit trail"));
        } else if s.actor.role == repeatrx_domain::access::Role::Operator {
            links.push(("/admin/accounts", "Accounts"));
            links.push(("/admin/audit", "Audit trail"));
        }
        links.push(("/account", "Account"));
        Some(Nav {
            name: s.user.display_name.clone(),
            role: s.actor.role.label(),
            csrf: s.session.csrf_token.clone(),
            links,
            idle_secs: s.idle.as_secs(),
            left_secs: s.ends_in.as_secs().max(0),
        })
    }
}

/// Where each user starts: their side's dashboard (custodians: their break-glass page).
pub fn home_of(role: repeatrx_domain::access::Role) -> &'static str {
    if role == repeatrx_domain::access::Role::Custodian {
        return "/custody";
    }
    match role.kind() {
        OrgKind::Patient => "/patient",
        OrgKind::Pharmacy => "/pharmacy",
        OrgKind::Practice => "/practice",
        OrgKind::Platform => "/admin",
    }
}

/// Renders a template, turning a template failure into a logged 500.
pub fn render<T: Template>(t: &T) -> Result<Response, PageError> {
    t.render()
        .map(|body| Html(body).into_response())
        .map_err(|e| PageError(AppError::Internal(format!("template failed: {e}"))))
}

pub type PageResult = Result<Response, PageError>;
