//! The account page of every signed-in user: who they are, their second factor and recovery
//! codes, the forms to change their password and email address, their open sessions (with
//! "sign out everywhere") and their recent sign-in activity. Also the keep-alive that the idle
//! warning calls.
use super::auth::{enrol_form, RecoveryCodesPage};
use super::patient::{see_other, with_status, FormData, Problem};
use super::{render, Nav, PageResult};
use crate::error::ApiError;
use crate::session::{clear_session_cookie, ApiCaller, ClientInfo, Signed};
use crate::WebState;
use askama::Template;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::{Json, Router};
use jiff::{SignedDuration, Timestamp};
use repeatrx_app::auth::CurrentSession;
use repeatrx_app::AppError;
use repeatrx_domain::security::{second_factor_required, SessionStage};
use repeatrx_domain::timefmt::display_timestamp;
use repeatrx_store::{SessionKind, SessionRecord};
use secrecy::SecretString;
use serde::Serialize;

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/account", get(account))
        .route("/account/totp", get(totp_page).post(totp_confirm))
        .route("/account/totp/disable", post(totp_disable))
        .route("/account/recovery-codes", post(renew_recovery_codes))
        .route("/account/password", post(change_password))
        .route("/account/email", post(change_email))
        .route("/account/sessions/others", post(end_other_sessions))
        .route("/account/sessions/all", post(end_all_sessions))
        .route("/session/keepalive", post(keep_alive))
}

// ---------------------------------------------------------------------------------------------
// Helpers shared with the recovery pages
// ---------------------------------------------------------------------------------------------

/// Turns an application error into error-summary lines for a form whose fields are given as
/// (the app's name for the field, its label, its element id). Messages of the form "field: what
/// is wrong" name the field by its label and link to it; others are shown as a sentence.
pub(super) fn field_problems(e: &AppError, fields: &[(&str, &str, &str)]) -> Vec<Problem> {
    let one = |msg: &str| {
        if let Some((key, rest)) = msg.split_once(": ") {
            if let Some((_, label, id)) = fields.iter().find(|(k, _, _)| *k == key) {
                // A domain message inside an app message names its own field again ("new email:
                // email: must be ..."): the label says it already.
                let rest = match rest.split_once(": ") {
                    Some((inner, tail))
                        if !inner.is_empty() && inner.chars().all(|c| c.is_ascii_lowercase() || c == '_') =>
                    {
                        tail
                    }
                    _ => rest,
                };
                return Problem::new(format!("{label}: {rest}"), Some((*id).to_string()));
            }
        }
        Problem::new(crate::error::sentence(msg), None)
    };
    match e {
        AppError::InvalidFields(messages) | AppError::NotOrderable(messages) => {
            messages.iter().map(|m| one(m)).collect()
        }
        other => vec![one(&other.to_string())],
    }
}

/// A short description of the device behind a session, from its user agent: "Firefox on
/// Windows". Unknown agents are shown as they are (cut short).
pub(super) fn device_of(user_agent: &str, kind: SessionKind) -> String {
    let ua = user_agent.trim();
    if ua.is_empty() {
        return match kind {
            SessionKind::Api => "An app or integration".into(),
            SessionKind::Browser => "An unknown browser".into(),
        };
    }
    let has = |s: &str| ua.contains(s);
    let browser = if has("Edg/") || has("EdgA/") || has("EdgiOS/") {
        Some("Edge")
    } else if has("OPR/") {
        Some("Opera")
    } else if has("SamsungBrowser/") {
        Some("Samsung Internet")
    } else if has("Firefox/") || has("FxiOS/") {
        Some("Firefox")
    } else if has("Chrome/") || has("CriOS/") || has("Chromium/") {
        Some("Chrome")
    } else if has("Safari/") {
        Some("Safari")
    } else {
        None
    };
    let system = if has("iPhone") {
        Some("iPhone")
    } else if has("iPad") {
        Some("iPad")
    } else if has("Android") {
        Some("Android")
    } else if has("Windows") {
        Some("Windows")
    } else if has("CrOS") {
        Some("ChromeOS")
    } else if has("Macintosh") || has("Mac OS X") {
        Some("macOS")
    } else if has("Linux") {
        Some("Linux")
    } else {
        None
    };
    match (browser, system) {
        (Some(b), Some(s)) => format!("{b} on {s}"),
        (Some(b), None) => b.to_string(),
        (None, Some(s)) => format!("A browser on {s}"),
        (None, None) => ua.chars().take(60).collect(),
    }
}

/// Whether a session can still be used now (the store lists sessions within their absolute
/// lifetime; one idle for longer than the timeout ends the next time it is presented).
pub(crate) fn still_open(r: &SessionRecord, idle: SignedDuration, now: Timestamp) -> bool {
    now.duration_since(r.last_seen_at) <= idle && now < r.expires_at
}

/// When a session ends if it is not used again: idle timeout or absolute lifetime, the earlier.
pub(crate) fn ends_at(r: &SessionRecord, idle: SignedDuration) -> Timestamp {
    (r.last_seen_at + idle).min(r.expires_at)
}

// ---------------------------------------------------------------------------------------------
// The account page
// ---------------------------------------------------------------------------------------------

struct SecondFactor {
    enrolled: bool,
    since: Option<String>,
    codes_left: u32,
    required: bool,
}

struct SessionRow {
    device: String,
    user_agent: String,
    app: bool,
    signing_in: bool,
    started: String,
    last_active: String,
    address: String,
    current: bool,
}

struct EventRow {
    at: String,
    what: &'static str,
    address: String,
    detail: String,
}

/// The forms of the page, with what was typed and what was wrong when one is shown again.
#[derive(Default)]
struct Forms {
    totp_off: Vec<Problem>,
    codes: Vec<Problem>,
    password: Vec<Problem>,
    email: Vec<Problem>,
    new_email: String,
}

impl Forms {
    fn failed(&self) -> bool {
        !(self.totp_off.is_empty() && self.codes.is_empty() && self.password.is_empty() && self.email.is_empty())
    }
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    nav: Option<Nav>,
    flash: Option<String>,
    csrf: String,
    name: String,
    email: String,
    role: &'static str,
    /// "patient" or "staff", for the password strength meter.
    strength_role: &'static str,
    min_password: usize,
    second: SecondFactor,
    sessions: Vec<SessionRow>,
    other_sessions: usize,
    events: Vec<EventRow>,
    forms: Forms,
}

const PASSWORD_FIELDS: &[(&str, &str, &str)] = &[
    ("current password", "Current password", "pw-current"),
    ("password", "New password", "pw-new"),
    ("confirm", "Confirm new password", "pw-confirm"),
];
const EMAIL_FIELDS: &[(&str, &str, &str)] =
    &[("new email", "New email address", "em-new"), ("current password", "Current password", "em-password")];
const TOTP_OFF_FIELDS: &[(&str, &str, &str)] = &[("code", "Security code", "off-code")];
const CODES_FIELDS: &[(&str, &str, &str)] = &[("code", "Security code", "rc-code")];

/// The sentence for a `?notice=` key of this page; the query text itself is never echoed (only
/// a count, read as a number).
fn account_notice(q: &FormData) -> Option<String> {
    let text = match q.get("notice") {
        "password-changed" => {
            "Your password has been changed. Any other sessions of your account have been signed out.".to_string()
        }
        "email-requested" => {
            "We have sent links to both addresses; the change happens when both are confirmed.".to_string()
        }
        "totp-off" => "Two-step sign-in is turned off. Your recovery codes no longer work.".to_string(),
        "others-signed-out" => match q.get("ended").parse::<u64>() {
            Ok(1) => "1 other session has been signed out.".to_string(),
            Ok(n) => format!("{n} other sessions have been signed out."),
            Err(_) => "Your other sessions have been signed out.".to_string(),
        },
        _ => return None,
    };
    Some(text)
}

async fn account(State(state): State<WebState>, Signed(s): Signed, RawQuery(q): RawQuery) -> PageResult {
    let flash = account_notice(&FormData::from_query(q));
    account_page(&state, &s, flash, Forms::default()).await
}

async fn account_page(state: &WebState, s: &CurrentSession, flash: Option<String>, forms: Forms) -> PageResult {
    let security = state.app.account_security_of(s).await?;
    let now = state.app.clock.now();
    let sessions: Vec<SessionRow> = state
        .app
        .sessions_of(s)
        .await?
        .iter()
        .filter(|r| still_open(r, s.idle, now))
        .map(|r| SessionRow {
            device: device_of(&r.user_agent, r.kind),
            user_agent: r.user_agent.clone(),
            app: r.kind == SessionKind::Api,
            signing_in: r.stage != SessionStage::Full,
            started: display_timestamp(r.created_at),
            last_active: display_timestamp(r.last_seen_at),
            address: r.address.clone(),
            current: r.token_hash == s.session.token_hash,
        })
        .collect();
    let events = state
        .app
        .events_of(s)
        .await?
        .into_iter()
        .map(|e| EventRow { at: display_timestamp(e.at), what: e.kind.label(), address: e.address, detail: e.detail })
        .collect();
    let staff = s.actor.role.is_staff();
    let failed = forms.failed();
    let page = AccountPage {
        nav: Nav::of(s),
        flash,
        csrf: s.session.csrf_token.clone(),
        name: s.user.display_name.clone(),
        email: s.user.email.to_string(),
        role: s.actor.role.label(),
        strength_role: if staff { "staff" } else { "patient" },
        min_password: repeatrx_domain::patient::Password::min_len(if staff {
            repeatrx_domain::patient::PasswordOwner::Staff
        } else {
            repeatrx_domain::patient::PasswordOwner::Patient
        }),
        second: SecondFactor {
            enrolled: security.totp_secret.is_some(),
            since: security.totp_enrolled_at.map(display_timestamp),
            codes_left: security.recovery_codes_left,
            required: second_factor_required(s.actor.role),
        },
        other_sessions: sessions.iter().filter(|r| !r.current).count(),
        sessions,
        events,
        forms,
    };
    let resp = render(&page)?;
    Ok(if failed { with_status(resp, StatusCode::UNPROCESSABLE_ENTITY) } else { resp })
}

/// A sign-in refused because too many wrong codes locked the account: its sessions are gone.
fn locked_out() -> PageResult {
    Ok(([(header::SET_COOKIE, clear_session_cookie())], Redirect::to("/sign-in?notice=locked")).into_response())
}

fn is_field_error(e: &AppError) -> bool {
    matches!(e, AppError::Invalid(_) | AppError::InvalidFields(_))
}

// --- second factor ------------------------------------------------------------------------------

async fn totp_page(State(state): State<WebState>, Signed(s): Signed) -> PageResult {
    if state.app.account_security_of(&s).await?.totp_secret.is_some() {
        return Ok(see_other("/account"));
    }
    enrol_form(&state, &s, None, "/account/totp").await
}

async fn totp_confirm(
    State(state): State<WebState>,
    Signed(s): Signed,
    ClientInfo(client): ClientInfo,
    body: Bytes,
) -> PageResult {
    let form = FormData::parse(&body);
    match state.app.confirm_totp(&s, form.get("code"), &client).await {
        Ok(done) => render(&RecoveryCodesPage {
            nav: Nav::of(&s),
            flash: Some("Two-step sign-in is on: from now on RepeatRx asks for a code from your app.".into()),
            codes: done.recovery_codes,
            next: "/account",
        }),
        Err(e @ (AppError::InvalidFields(_) | AppError::Conflict(_))) => {
            let message = match &e {
                AppError::InvalidFields(m) => m.join(" ").trim_start_matches("code: ").to_string(),
                other => other.to_string(),
            };
            enrol_form(&state, &s, Some(crate::error::sentence(&message)), "/account/totp").await
        }
        Err(e) => Err(e.into()),
    }
}

fn missing_code(fields: &[(&str, &str, &str)]) -> Vec<Problem> {
    field_problems(
        &AppError::InvalidFields(vec!["code: enter the 6-digit code your authenticator app shows now".into()]),
        fields,
    )
}

async fn totp_disable(
    State(state): State<WebState>,
    Signed(s): Signed,
    ClientInfo(client): ClientInfo,
    body: Bytes,
) -> PageResult {
    let form = FormData::parse(&body);
    let code = form.get("code").trim();
    if code.is_empty() {
        return account_page(&state, &s, None, Forms { totp_off: missing_code(TOTP_OFF_FIELDS), ..Default::default() })
            .await;
    }
    match state.app.disable_totp(&s, code, &client).await {
        Ok(()) => Ok(see_other("/account?notice=totp-off")),
        Err(AppError::Unauthenticated) => locked_out(),
        Err(e) if is_field_error(&e) => {
            let forms = Forms { totp_off: field_problems(&e, TOTP_OFF_FIELDS), ..Default::default() };
            account_page(&state, &s, None, forms).await
        }
        Err(e) => Err(e.into()),
    }
}

async fn renew_recovery_codes(
    State(state): State<WebState>,
    Signed(s): Signed,
    ClientInfo(client): ClientInfo,
    body: Bytes,
) -> PageResult {
    let form = FormData::parse(&body);
    let code = form.get("code").trim();
    if code.is_empty() {
        return account_page(&state, &s, None, Forms { codes: missing_code(CODES_FIELDS), ..Default::default() }).await;
    }
    match state.app.renew_recovery_codes(&s, code, &client).await {
        Ok(codes) => render(&RecoveryCodesPage {
            nav: Nav::of(&s),
            flash: Some("You have new recovery codes: the old ones no longer work.".into()),
            codes,
            next: "/account",
        }),
        Err(AppError::Unauthenticated) => locked_out(),
        Err(e) if is_field_error(&e) => {
            account_page(&state, &s, None, Forms { codes: field_problems(&e, CODES_FIELDS), ..Default::default() })
                .await
        }
        Err(e) => Err(e.into()),
    }
}

// --- password and email -------------------------------------------------------------------------

async fn change_password(
    State(state): State<WebState>,
    Signed(s): Signed,
    ClientInfo(client): ClientInfo,
    body: Bytes,
) -> PageResult {
    let form = FormData::parse(&body);
    let (current, new, confirm) = (form.get("current_password"), form.get("new_password"), form.get("confirm"));
    let mut typed = Vec::new();
    if current.is_empty() {
        typed.push("current password: enter your current password".to_string());
    }
    if new != confirm {
        typed.push("confirm: the two new passwords are not the same".to_string());
    }
    let result = if typed.is_empty() {
        state.app.change_password(&s, SecretString::from(current.to_string()), new, &client).await
    } else {
        Err(AppError::InvalidFields(typed))
    };
    match result {
        Ok(()) => Ok(see_other("/account?notice=password-changed")),
        Err(e) if is_field_error(&e) => {
            let forms = Forms { password: field_problems(&e, PASSWORD_FIELDS), ..Default::default() };
            account_page(&state, &s, None, forms).await
        }
        Err(e) => Err(e.into()),
    }
}

async fn change_email(
    State(state): State<WebState>,
    Signed(s): Signed,
    ClientInfo(client): ClientInfo,
    body: Bytes,
) -> PageResult {
    let form = FormData::parse(&body);
    let new_email = form.kept("new_email", 254);
    let password = SecretString::from(form.get("current_password").to_string());
    match state.app.request_email_change(&s, new_email.trim(), password, &client).await {
        Ok(()) => Ok(see_other("/account?notice=email-requested")),
        Err(e) if is_field_error(&e) => {
            let forms = Forms { email: field_problems(&e, EMAIL_FIELDS), new_email, ..Default::default() };
            account_page(&state, &s, None, forms).await
        }
        Err(e) => Err(e.into()),
    }
}

// --- sessions -----------------------------------------------------------------------------------

async fn end_other_sessions(
    State(state): State<WebState>,
    Signed(s): Signed,
    ClientInfo(client): ClientInfo,
) -> PageResult {
    let ended = state.app.sign_out_everywhere(&s, true, &client).await?;
    Ok(see_other(&format!("/account?notice=others-signed-out&ended={ended}")))
}

async fn end_all_sessions(
    State(state): State<WebState>,
    Signed(s): Signed,
    ClientInfo(client): ClientInfo,
) -> PageResult {
    state.app.sign_out_everywhere(&s, false, &client).await?;
    Ok(([(header::SET_COOKIE, clear_session_cookie())], Redirect::to("/sign-in?notice=signed-out")).into_response())
}

#[derive(Serialize)]
struct KeptAlive {
    idle_expires_at: String,
}

/// "Stay signed in": restarts the idle timer. JSON, for the idle warning's script; 401 when the
/// session has ended already.
async fn keep_alive(State(state): State<WebState>, ApiCaller(s): ApiCaller) -> Result<Json<KeptAlive>, ApiError> {
    let until = state.app.keep_alive(&s).await?;
    Ok(Json(KeptAlive { idle_expires_at: until.to_string() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_errors_use_the_label_and_link_to_the_element() {
        let e = AppError::InvalidFields(vec![
            "current password: that is not your current password".into(),
            "something: odd".into(),
        ]);
        let p = field_problems(&e, PASSWORD_FIELDS);
        assert_eq!(p[0].message, "Current password: that is not your current password");
        assert_eq!(p[0].href.as_deref(), Some("#pw-current"));
        assert_eq!(p[1].message, "Something: odd");
        assert!(p[1].href.is_none());
        let policy =
            field_problems(&AppError::Invalid("password: must be at least 10 characters".into()), PASSWORD_FIELDS);
        assert_eq!(policy[0].message, "New password: must be at least 10 characters");
        assert_eq!(policy[0].href.as_deref(), Some("#pw-new"));
        let nested = AppError::InvalidFields(vec!["new email: email: must be an email address".into()]);
        assert_eq!(field_problems(&nested, EMAIL_FIELDS)[0].message, "New email address: must be an email address");
        let plain = field_problems(&AppError::LinkExpired, PASSWORD_FIELDS);
        assert!(plain[0].message.starts_with("This link has expired"));
    }

    #[test]
    fn devices_are_described_briefly() {
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
        assert_eq!(device_of(firefox, SessionKind::Browser), "Firefox on Linux");
        let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
                      Chrome/126.0.0.0 Safari/537.36";
        assert_eq!(device_of(chrome, SessionKind::Browser), "Chrome on Windows");
        let edge = format!("{chrome} Edg/126.0.0.0");
        assert_eq!(device_of(&edge, SessionKind::Browser), "Edge on Windows");
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like \
                      Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
        assert_eq!(device_of(iphone, SessionKind::Browser), "Safari on iPhone");
        let android = "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/126.0 Mobile Safari/537.36";
        assert_eq!(device_of(android, SessionKind::Browser), "Chrome on Android");
        assert_eq!(device_of("reqwest/0.12", SessionKind::Api), "reqwest/0.12");
        assert_eq!(device_of("", SessionKind::Api), "An app or integration");
        assert_eq!(device_of("  ", SessionKind::Browser), "An unknown browser");
        assert_eq!(device_of(&"x".repeat(100), SessionKind::Browser).len(), 60);
    }

    #[test]
    fn sessions_idle_for_too_long_are_no_longer_open() {
        let start: Timestamp = "2026-03-10T12:00:00Z".parse().unwrap_or(Timestamp::UNIX_EPOCH);
        let r = SessionRecord {
            token_hash: "h".into(),
            user_id: repeatrx_domain::ids::UserId::new(),
            kind: SessionKind::Browser,
            csrf_token: "c".into(),
            created_at: start,
            last_seen_at: start,
            expires_at: start + SignedDuration::from_hours(12),
            user_agent: String::new(),
            stage: SessionStage::Full,
            address: "127.0.0.1".into(),
        };
        let idle = SignedDuration::from_mins(30);
        assert!(still_open(&r, idle, start + SignedDuration::from_mins(30)));
        assert!(!still_open(&r, idle, start + SignedDuration::from_mins(31)));
        assert_eq!(ends_at(&r, idle), start + idle);
        let late = SessionRecord { last_seen_at: start + SignedDuration::from_hours(12), ..r.clone() };
        assert_eq!(ends_at(&late, idle), r.expires_at, "the absolute lifetime still applies");
        assert!(!still_open(&late, idle, r.expires_at));
    }

    #[test]
    fn notices_are_fixed_sentences_with_at_most_a_number() {
        let n = |q: &str| account_notice(&FormData::from_query(Some(q.into())));
        assert_eq!(n("notice=others-signed-out&ended=2").as_deref(), Some("2 other sessions have been signed out."));
        assert_eq!(n("notice=others-signed-out&ended=1").as_deref(), Some("1 other session has been signed out."));
        assert_eq!(
            n("notice=others-signed-out&ended=%3Cb%3E").as_deref(),
            Some("Your other sessions have been signed out.")
        );
        assert!(n("notice=email-requested").is_some_and(|t| t.contains("both addresses")));
        assert_eq!(n("notice=%3Cscript%3E"), None);
        assert_eq!(account_notice(&FormData::from_query(None)), None);
    }
}
