//! Demo deployments only: the outbox of emails the demo has "sent", so that people trying the
//! demo can see what patients would receive. Every other deployment answers 404 here.
use super::{render, Nav, PageResult};
use crate::error::PageError;
use crate::session::MaybeSigned;
use crate::WebState;
use askama::Template;
use axum::extract::State;
use axum::routing::get;
use axum::Router;
use repeatrx_app::AppError;
use repeatrx_domain::timefmt::display_timestamp;

pub fn routes() -> Router<WebState> {
    Router::new().route("/demo/outbox", get(outbox))
}

struct EmailView {
    at: String,
    to: String,
    subject: String,
    status: &'static str,
    body: String,
}

#[derive(Template)]
#[template(path = "demo_outbox.html")]
struct OutboxPage {
    nav: Option<Nav>,
    flash: Option<String>,
    emails: Vec<EmailView>,
}

async fn outbox(State(state): State<WebState>, MaybeSigned(s): MaybeSigned) -> PageResult {
    if !state.app.settings.demo {
        return Err(PageError(AppError::NotFound("page")));
    }
    let mut emails = state.app.store.recent_emails(50).await.map_err(AppError::from)?;
    emails.sort_by_key(|e| std::cmp::Reverse(e.created_at));
    let emails = emails
        .into_iter()
        .map(|e| EmailView {
            at: display_timestamp(e.created_at),
            to: e.to.to_string(),
            subject: e.subject,
            status: match e.status.as_str() {
                "sent" => "Sent",
                "failed" => "Failed",
                _ => "Waiting to send",
            },
            body: e.body,
        })
        .collect();
    render(&OutboxPage { nav: s.as_ref().and_then(Nav::of), flash: None, emails })
}
