//! Sign in, sign out, and the home page that sends each user to their dashboard.
use super::{home_of, render, Nav, PageResult};
use crate::session::{clear_session_cookie, credential, session_cookie, MaybeSigned};
use crate::WebState;
use askama::Template;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use repeatrx_app::AppError;
use repeatrx_store::SessionKind;
use secrecy::SecretString;
use serde::Deserialize;

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/", get(home))
        .route("/sign-in", get(sign_in_page).post(sign_in))
        .route("/sign-out", post(sign_out))
}

async fn home(MaybeSigned(s): MaybeSigned) -> Redirect {
    match s {
        Some(s) => Redirect::to(home_of(s.actor.role.kind())),
        None => Redirect::to("/sign-in"),
    }
}

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    nav: Option<Nav>,
    flash: Option<String>,
    error: Option<String>,
    email: String,
    demo: bool,
    demo_password: &'static str,
    demo_accounts: Vec<(&'static str, &'static str)>,
}

fn page(state: &WebState, error: Option<String>, email: String) -> SignInPage {
    SignInPage {
        nav: None,
        flash: None,
        error,
        email,
        demo: state.app.settings.demo,
        demo_password: repeatrx_app::demo::DEMO_PASSWORD,
        demo_accounts: repeatrx_app::demo::DEMO_ACCOUNTS.to_vec(),
    }
}

async fn sign_in_page(State(state): State<WebState>, MaybeSigned(s): MaybeSigned) -> PageResult {
    if let Some(s) = s {
        return Ok(Redirect::to(home_of(s.actor.role.kind())).into_response());
    }
    render(&page(&state, None, String::new()))
}

#[derive(Deserialize)]
struct SignInForm {
    email: String,
    password: String,
}

async fn sign_in(State(state): State<WebState>, headers: HeaderMap, Form(form): Form<SignInForm>) -> PageResult {
    let agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    match state.app.sign_in(&form.email, SecretString::from(form.password), SessionKind::Browser, agent).await {
        Ok(new) => {
            let secs = new.expires_at.duration_since(state.app.clock.now()).as_secs();
            let cookie = session_cookie(secrecy::ExposeSecret::expose_secret(&new.token), secs);
            Ok(([(header::SET_COOKIE, cookie)], Redirect::to(home_of(new.actor.role.kind()))).into_response())
        }
        Err(AppError::BadCredentials) => {
            let mut resp = render(&page(
                &state,
                Some(crate::error::sentence(&AppError::BadCredentials.to_string())),
                form.email.chars().take(254).collect(),
            ))?;
            *resp.status_mut() = axum::http::StatusCode::UNAUTHORIZED;
            Ok(resp)
        }
        Err(e) => Err(e.into()),
    }
}

async fn sign_out(State(state): State<WebState>, headers: HeaderMap) -> Response {
    if let Some((token, _)) = credential(&headers) {
        if let Err(e) = state.app.sign_out(&token).await {
            tracing::warn!(error = %e, "sign-out could not delete the session");
        }
    }
    ([(header::SET_COOKIE, clear_session_cookie())], Redirect::to("/sign-in")).into_response()
}
