//! Demo deployments only: the outbox of emails the demo has "sent", so that people trying the
//! demo can see what patients would receive. Every other deployment answers 404 here.
use super::{render, Nav, PageResult};
use crate::session::MaybeSigned;
use crate::WebState;
use askama::Template;
use axum::extract::State;
use axum::routing::get;
use axum::Router;
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
    let emails = state
        .app
        .demo_outbox(50)
        .await?
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
