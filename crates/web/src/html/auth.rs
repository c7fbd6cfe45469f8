//! Sign in (password, then the second factor or its enrolment), sign out, and the home page that
//! sends each user to their dashboard.
use super::{home_of, render, Nav, PageResult};
use crate::session::{clear_session_cookie, credential, session_cookie, ClientInfo, MaybeSigned, PendingSignIn};
use crate::WebState;
use askama::Template;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use repeatrx_app::auth::NewSession;
use repeatrx_app::AppError;
use repeatrx_domain::security::SessionStage;
use repeatrx_store::SessionKind;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/", get(home))
        .route("/sign-in", get(sign_in_page).post(sign_in))
        .route("/sign-in/code", get(code_page).post(code))
        .route("/sign-in/enrol", get(enrol_page).post(enrol))
        .route("/sign-out", post(sign_out))
}

async fn home(MaybeSigned(s): MaybeSigned) -> Redirect {
    match s {
        Some(s) => Redirect::to(home_of(s.actor.role)),
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

fn page(state: &WebState, error: Option<String>, email: String, flash: Option<String>) -> SignInPage {
    SignInPage {
        nav: None,
        flash,
        error,
        email,
        demo: state.app.settings.demo,
        demo_password: repeatrx_app::demo::DEMO_PASSWORD,
        demo_accounts: repeatrx_app::demo::DEMO_ACCOUNTS.to_vec(),
    }
}

#[derive(Deserialize)]
struct SignInQuery {
    #[serde(default)]
    notice: String,
}

fn sign_in_notice(notice: &str) -> Option<String> {
    match notice {
        "expired" => Some("You were signed out because you were inactive for a while. Please sign in again.".into()),
        "signed-out" => Some("You are signed out.".into()),
        "erased" => Some("Your account and everything RepeatRx held about you have been deleted for good.".into()),
        "locked" => Some("Too many wrong codes: the account is locked. Use the unlock link below.".into()),
        _ => None,
    }
}

async fn sign_in_page(
    State(state): State<WebState>,
    MaybeSigned(s): MaybeSigned,
    axum::extract::Query(q): axum::extract::Query<SignInQuery>,
) -> PageResult {
    if let Some(s) = s {
        return Ok(Redirect::to(home_of(s.actor.role)).into_response());
    }
    render(&page(&state, None, String::new(), sign_in_notice(&q.notice)))
}

#[derive(Deserialize)]
struct SignInForm {
    email: String,
    password: String,
}

/// The session cookie for a new session, and where its stage leads.
fn start(state: &WebState, new: &NewSession) -> Response {
    let secs = new.expires_at.duration_since(state.app.clock.now()).as_secs();
    let cookie = session_cookie(new.token.expose_secret(), secs);
    let to = match new.stage {
        SessionStage::Full => home_of(new.actor.role),
        SessionStage::SecondFactor => "/sign-in/code",
        SessionStage::Enrol => "/sign-in/enrol",
    };
    ([(header::SET_COOKIE, cookie)], Redirect::to(to)).into_response()
}

async fn sign_in(
    State(state): State<WebState>,
    ClientInfo(client): ClientInfo,
    Form(form): Form<SignInForm>,
) -> PageResult {
    match state.app.sign_in(&form.email, SecretString::from(form.password), SessionKind::Browser, &client).await {
        Ok(new) => Ok(start(&state, &new)),
        Err(e @ (AppError::BadCredentials | AppError::TooManyAttempts)) => {
            let status = crate::error::status_of(&e).0;
            let mut resp = render(&page(
                &state,
                Some(crate::error::sentence(&e.to_string())),
                form.email.chars().take(254).collect(),
                None,
            ))?;
            *resp.status_mut() = status;
            Ok(resp)
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "sign_in_code.html")]
struct CodePage {
    nav: Option<Nav>,
    flash: Option<String>,
    csrf: String,
    error: Option<String>,
    demo: bool,
    demo_code: Option<String>,
}

async fn code_form(
    state: &WebState,
    s: &repeatrx_app::auth::CurrentSession,
    error: Option<String>,
) -> Result<CodePage, crate::error::PageError> {
    Ok(CodePage {
        nav: None,
        flash: None,
        csrf: s.session.csrf_token.clone(),
        error,
        demo: state.app.settings.demo,
        demo_code: state.app.demo_code_for(s.user.id).await?,
    })
}

async fn code_page(State(state): State<WebState>, PendingSignIn(s): PendingSignIn) -> PageResult {
    if s.session.stage == SessionStage::Enrol {
        return Ok(Redirect::to("/sign-in/enrol").into_response());
    }
    render(&code_form(&state, &s, None).await?)
}

#[derive(Deserialize)]
struct CodeForm {
    #[serde(default)]
    code: String,
}

async fn code(
    State(state): State<WebState>,
    PendingSignIn(s): PendingSignIn,
    ClientInfo(client): ClientInfo,
    Form(form): Form<CodeForm>,
) -> PageResult {
    match state.app.complete_second_factor(&s, &form.code, &client).await {
        Ok(new) => Ok(start(&state, &new)),
        Err(AppError::WrongCode) => {
            let message = crate::error::sentence(&AppError::WrongCode.to_string());
            let mut resp = render(&code_form(&state, &s, Some(message)).await?)?;
            *resp.status_mut() = StatusCode::UNAUTHORIZED;
            Ok(resp)
        }
        Err(AppError::BadCredentials | AppError::Unauthenticated) => {
            Ok(([(header::SET_COOKIE, clear_session_cookie())], Redirect::to("/sign-in?notice=locked")).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "sign_in_enrol.html")]
struct EnrolPage {
    nav: Option<Nav>,
    flash: Option<String>,
    csrf: String,
    error: Option<String>,
    action: &'static str,
    qr_svg: String,
    secret: String,
    url: String,
    required: bool,
}

/// The authenticator set-up page; shared with the patients' opt-in on the account page.
pub(super) async fn enrol_form(
    state: &WebState,
    s: &repeatrx_app::auth::CurrentSession,
    error: Option<String>,
    action: &'static str,
) -> PageResult {
    let setup = state.app.totp_setup(s).await?;
    let page = EnrolPage {
        nav: if s.is_full() { Nav::of(s) } else { None },
        flash: None,
        csrf: s.session.csrf_token.clone(),
        error: error.clone(),
        action,
        qr_svg: setup.qr_svg,
        secret: setup.secret_grouped,
        url: setup.url,
        required: !s.is_full(),
    };
    let resp = render(&page)?;
    Ok(if error.is_some() { super::patient::with_status(resp, StatusCode::UNPROCESSABLE_ENTITY) } else { resp })
}

async fn enrol_page(State(state): State<WebState>, PendingSignIn(s): PendingSignIn) -> PageResult {
    if s.session.stage != SessionStage::Enrol {
        return Ok(Redirect::to("/sign-in/code").into_response());
    }
    enrol_form(&state, &s, None, "/sign-in/enrol").await
}

#[derive(Template)]
#[template(path = "recovery_codes.html")]
pub(super) struct RecoveryCodesPage {
    pub nav: Option<Nav>,
    pub flash: Option<String>,
    pub codes: Vec<String>,
    pub next: &'static str,
}

async fn enrol(
    State(state): State<WebState>,
    PendingSignIn(s): PendingSignIn,
    ClientInfo(client): ClientInfo,
    Form(form): Form<CodeForm>,
) -> PageResult {
    if s.session.stage != SessionStage::Enrol {
        return Ok(Redirect::to("/sign-in/code").into_response());
    }
    match state.app.confirm_totp(&s, &form.code, &client).await {
        Ok(done) => {
            let Some(new) = done.session else { return Err(AppError::Unauthenticated.into()) };
            let secs = new.expires_at.duration_since(state.app.clock.now()).as_secs();
            let cookie = session_cookie(new.token.expose_secret(), secs);
            let page = RecoveryCodesPage {
                nav: None,
                flash: Some("Your authenticator app is set up.".into()),
                codes: done.recovery_codes,
                next: home_of(new.actor.role),
            };
            Ok(([(header::SET_COOKIE, cookie)], render(&page)?).into_response())
        }
        Err(e @ (AppError::InvalidFields(_) | AppError::Conflict(_))) => {
            let message = match &e {
                AppError::InvalidFields(m) => m.join(" ").trim_start_matches("code: ").to_string(),
                other => other.to_string(),
            };
            enrol_form(&state, &s, Some(crate::error::sentence(&message)), "/sign-in/enrol").await
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
    ([(header::SET_COOKIE, clear_session_cookie())], Redirect::to("/sign-in?notice=signed-out")).into_response()
}
