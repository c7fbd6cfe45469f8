//! Getting back into an account without being signed in: "my account is locked" (then the emailed
//! unlock link, which asks for the date of birth), "forgotten password" (then the emailed reset
//! link), and the two links that confirm a change of email address.
//!
//! The pages that take an email address answer at once, with the same page whatever the address,
//! and do the work in the background: neither the answer nor its timing says whether an account
//! exists.
use super::account::field_problems;
use super::patient::{render_form, with_status, FormData, Problem};
use super::{render, Nav, PageResult};
use crate::session::{ClientInfo, MaybeSigned, ResolvedSession};
use crate::WebState;
use askama::Template;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use repeatrx_app::auth::{Client, CurrentSession};
use repeatrx_app::recovery::{EmailChangeProgress, UnlockOutcome};
use repeatrx_app::{App, AppError};

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/unlock", get(unlock_page).post(unlock_request))
        .route("/unlock/{token}", get(unlock_link).post(unlock_with_date_of_birth))
        .route("/forgot-password", get(forgot_page).post(forgot_request))
        .route("/reset-password/{token}", get(reset_link).post(reset_password))
        .route("/email-change/{token}", get(email_change_link).post(confirm_email_change))
        .route("/invitation/{token}", get(invitation_link).post(accept_invitation))
}

/// The CSRF token of the request's session, of any stage (a sign-in half way through is a cookie
/// session too, and the CSRF layer wants its token on every form post).
pub(super) struct SessionCsrf(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for SessionCsrf {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(SessionCsrf(parts.extensions.get::<ResolvedSession>().map(|s| s.0.session.csrf_token.clone())))
    }
}

fn nav_of(s: &Option<CurrentSession>) -> Option<Nav> {
    s.as_ref().and_then(Nav::of)
}

/// An address typed into a form, cut to the longest an email address can be.
fn typed_email(raw: &str) -> String {
    raw.trim().chars().take(254).collect()
}

/// Asks for an unlock email in the background; the caller answers at once, the same whatever the
/// address. Failures are logged without the address.
pub(crate) fn request_unlock_in_background(app: &App, email: &str, client: Client) {
    let app = app.clone();
    let email = typed_email(email);
    tokio::spawn(async move {
        if let Err(e) = app.request_unlock(&email, &client).await {
            tracing::warn!(error = %e, "unlock request failed");
        }
    });
}

/// Asks for a password-reset email in the background, like [`request_unlock_in_background`].
pub(crate) fn request_reset_in_background(app: &App, email: &str, client: Client) {
    let app = app.clone();
    let email = typed_email(email);
    tokio::spawn(async move {
        if let Err(e) = app.request_password_reset(&email, &client).await {
            tracing::warn!(error = %e, "password reset request failed");
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Pages that only say something
// ---------------------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "recovery_message.html")]
struct MessagePage {
    nav: Option<Nav>,
    flash: Option<String>,
    title: String,
    /// Shown as an alert (a dead link, a refusal) rather than as plain text.
    alert: bool,
    paragraphs: Vec<String>,
    links: Vec<(&'static str, &'static str)>,
}

fn message(
    nav: Option<Nav>,
    status: StatusCode,
    title: &str,
    alert: bool,
    paragraphs: &[&str],
    links: &[(&'static str, &'static str)],
) -> PageResult {
    let page = MessagePage {
        nav,
        flash: None,
        title: title.to_string(),
        alert,
        paragraphs: paragraphs.iter().map(|p| p.to_string()).collect(),
        links: links.to_vec(),
    };
    Ok(with_status(render(&page)?, status))
}

/// The 410 page of a link that has expired, been used, or never existed.
fn dead_link(nav: Option<Nav>, again: (&'static str, &'static str)) -> PageResult {
    let sentence = crate::error::sentence(&AppError::LinkExpired.to_string());
    message(nav, StatusCode::GONE, "This link no longer works", true, &[&sentence], &[again])
}

// ---------------------------------------------------------------------------------------------
// Asking for an email: unlock and forgotten password
// ---------------------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "recovery_request.html")]
struct RequestPage {
    nav: Option<Nav>,
    flash: Option<String>,
    csrf: Option<String>,
    title: &'static str,
    intro: &'static str,
    action: &'static str,
    button: &'static str,
    /// The request went: say what happens next instead of showing the form.
    sent: Option<&'static str>,
}

const UNLOCK_INTRO: &str = "After several failed sign-ins an account is locked to keep it safe. Enter the email \
     address you sign in with and we will email you what to do next.";
const UNLOCK_SENT: &str = "If that address has a locked account, we have emailed what to do next. Patients get a \
     link that works for 30 minutes; staff are told who can unlock their account.";
const FORGOT_INTRO: &str = "Enter the email address you sign in with and we will email you a link to choose a new \
     password.";
const FORGOT_SENT: &str = "If that address has an account, we have emailed a link to choose a new password. The link \
     works once, for 30 minutes.";

fn unlock_form(s: &Option<CurrentSession>, csrf: Option<String>, sent: bool) -> RequestPage {
    RequestPage {
        nav: nav_of(s),
        flash: None,
        csrf,
        title: "Unlock your account",
        intro: UNLOCK_INTRO,
        action: "/unlock",
        button: "Email me what to do",
        sent: sent.then_some(UNLOCK_SENT),
    }
}

fn forgot_form(s: &Option<CurrentSession>, csrf: Option<String>, sent: bool) -> RequestPage {
    RequestPage {
        nav: nav_of(s),
        flash: None,
        csrf,
        title: "Reset your password",
        intro: FORGOT_INTRO,
        action: "/forgot-password",
        button: "Email me a reset link",
        sent: sent.then_some(FORGOT_SENT),
    }
}

async fn unlock_page(MaybeSigned(s): MaybeSigned, SessionCsrf(csrf): SessionCsrf) -> PageResult {
    render(&unlock_form(&s, csrf, false))
}

async fn unlock_request(
    State(state): State<WebState>,
    MaybeSigned(s): MaybeSigned,
    SessionCsrf(csrf): SessionCsrf,
    ClientInfo(client): ClientInfo,
    body: Bytes,
) -> PageResult {
    let form = FormData::parse(&body);
    request_unlock_in_background(&state.app, form.get("email"), client);
    render(&unlock_form(&s, csrf, true))
}

async fn forgot_page(MaybeSigned(s): MaybeSigned, SessionCsrf(csrf): SessionCsrf) -> PageResult {
    render(&forgot_form(&s, csrf, false))
}

async fn forgot_request(
    State(state): State<WebState>,
    MaybeSigned(s): MaybeSigned,
    SessionCsrf(csrf): SessionCsrf,
    ClientInfo(client): ClientInfo,
    body: Bytes,
) -> PageResult {
    let form = FormData::parse(&body);
    request_reset_in_background(&state.app, form.get("email"), client);
    render(&forgot_form(&s, csrf, true))
}

// ---------------------------------------------------------------------------------------------
// The unlock link: date of birth
// ---------------------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "unlock_date_of_birth.html")]
struct DateOfBirthPage {
    nav: Option<Nav>,
    flash: Option<String>,
    csrf: Option<String>,
    action: String,
    error: Option<String>,
    value: String,
}

const NEW_UNLOCK_LINK: (&str, &str) = ("/unlock", "Ask for a new unlock link");

fn dob_form(
    s: &Option<CurrentSession>,
    csrf: Option<String>,
    token: &str,
    error: Option<String>,
    value: &str,
) -> PageResult {
    let failed = error.is_some();
    let page = DateOfBirthPage {
        nav: nav_of(s),
        flash: None,
        csrf,
        action: format!("/unlock/{}", url_segment(token)),
        error,
        value: value.chars().take(20).collect(),
    };
    let resp = render(&page)?;
    Ok(if failed { with_status(resp, StatusCode::UNPROCESSABLE_ENTITY) } else { resp })
}

async fn unlock_link(
    State(state): State<WebState>,
    MaybeSigned(s): MaybeSigned,
    SessionCsrf(csrf): SessionCsrf,
    Path(token): Path<String>,
) -> PageResult {
    match state.app.check_unlock_link(&token).await {
        Ok(()) => dob_form(&s, csrf, &token, None, ""),
        Err(AppError::LinkExpired) => dead_link(nav_of(&s), NEW_UNLOCK_LINK),
        Err(e) => Err(e.into()),
    }
}

async fn unlock_with_date_of_birth(
    State(state): State<WebState>,
    MaybeSigned(s): MaybeSigned,
    SessionCsrf(csrf): SessionCsrf,
    ClientInfo(client): ClientInfo,
    Path(token): Path<String>,
    body: Bytes,
) -> PageResult {
    let form = FormData::parse(&body);
    let typed = form.get("date_of_birth");
    let iso = match read_date_of_birth(typed) {
        Ok(iso) => iso,
        Err(problem) => {
            // Check the link first: a dead link is the 410 page whatever was typed.
            return match state.app.check_unlock_link(&token).await {
                Ok(()) => dob_form(&s, csrf, &token, Some(problem.to_string()), typed),
                Err(AppError::LinkExpired) => dead_link(nav_of(&s), NEW_UNLOCK_LINK),
                Err(e) => Err(e.into()),
            };
        }
    };
    match state.app.unlock_with_date_of_birth(&token, &iso, &client).await {
        Ok(UnlockOutcome::Unlocked) => message(
            nav_of(&s),
            StatusCode::OK,
            "Your account is unlocked",
            false,
            &[
                "You can sign in now.",
                "If you think someone else tried your password, reset it: choosing a new password signs \
                 you out everywhere.",
            ],
            &[("/sign-in", "Sign in"), ("/forgot-password", "Reset your password")],
        ),
        Ok(UnlockOutcome::WrongDateOfBirth { tries_left }) => {
            dob_form(&s, csrf, &token, Some(wrong_date_sentence(tries_left)), typed)
        }
        Ok(UnlockOutcome::IdentityLocked) => message(
            nav_of(&s),
            StatusCode::FORBIDDEN,
            "Your pharmacy needs to unlock your account",
            true,
            &[
                "The date of birth was wrong too many times, so your account can now only be unlocked by your \
                 pharmacy after checking your identity.",
                "Please visit or call your pharmacy with a photo ID. We have emailed you the same advice.",
            ],
            &[],
        ),
        Err(AppError::LinkExpired) => dead_link(nav_of(&s), NEW_UNLOCK_LINK),
        Err(AppError::Invalid(m)) => dob_form(&s, csrf, &token, Some(date_problem(&m)), typed),
        Err(e) => Err(e.into()),
    }
}

/// What to say after a wrong date of birth.
fn wrong_date_sentence(tries_left: u32) -> String {
    let tries = if tries_left == 1 { "1 more try".to_string() } else { format!("{tries_left} more tries") };
    format!(
        "That date of birth does not match our records. You have {tries} before your account can only be \
         unlocked by your pharmacy."
    )
}

/// Why a typed date of birth cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DateProblem {
    Missing,
    Unreadable,
}

impl std::fmt::Display for DateProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DateProblem::Missing => "Enter your date of birth, for example 31/03/1980.",
            DateProblem::Unreadable => {
                "Enter your date of birth as day, month and year with a 4-digit year, for example 31/03/1980."
            }
        })
    }
}

/// Reads a date of birth as people write it in the UK: day first (31/03/1980, also with `-`, `.`
/// or spaces between the parts), or as YYYY-MM-DD. Returns it as YYYY-MM-DD, the form
/// `DateOfBirth::parse` takes; whether the date exists is left to it.
fn read_date_of_birth(typed: &str) -> Result<String, DateProblem> {
    let typed = typed.trim();
    if typed.is_empty() {
        return Err(DateProblem::Missing);
    }
    let parts: Vec<&str> = typed.split(['/', '-', '.', ' ']).filter(|p| !p.is_empty()).collect();
    let numeric = |p: &str| !p.is_empty() && p.len() <= 4 && p.chars().all(|c| c.is_ascii_digit());
    let [a, b, c] = parts[..] else { return Err(DateProblem::Unreadable) };
    if ![a, b, c].into_iter().all(numeric) {
        return Err(DateProblem::Unreadable);
    }
    let (year, month, day) = match (a.len(), c.len()) {
        (4, 1..=2) => (a, b, c),
        (1..=2, 4) => (c, b, a),
        _ => return Err(DateProblem::Unreadable),
    };
    if month.len() > 2 || day.len() > 2 {
        return Err(DateProblem::Unreadable);
    }
    Ok(format!("{year}-{month:0>2}-{day:0>2}"))
}

/// The sentence for a date the domain refused (a date that does not exist, or is in the future).
fn date_problem(message: &str) -> String {
    match message.split_once(": ") {
        Some(("date_of_birth", "must be a date written as YYYY-MM-DD")) => {
            "That date does not exist. Enter your date of birth, for example 31/03/1980.".into()
        }
        Some(("date_of_birth", rest)) => format!("Your date of birth {rest}."),
        _ => crate::error::sentence(message),
    }
}

/// A token from an emailed link put back into a form's action. Tokens are URL-safe base64, so
/// anything else is dropped rather than escaped: such a link cannot work anyway.
fn url_segment(token: &str) -> String {
    token.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')).take(100).collect()
}

// ---------------------------------------------------------------------------------------------
// The reset link: a new password
// ---------------------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "reset_password.html")]
struct ResetPage {
    nav: Option<Nav>,
    flash: Option<String>,
    csrf: Option<String>,
    action: String,
    problems: Vec<Problem>,
    heading: String,
    intro: &'static str,
    button: &'static str,
    /// Which password rule the strength meter rates for (`patient` or `staff`).
    strength: &'static str,
}

const NEW_RESET_LINK: (&str, &str) = ("/forgot-password", "Ask for a new reset link");

/// The reset form's fields: the app's name for each, its label, and its element id.
const RESET_FIELDS: &[(&str, &str, &str)] =
    &[("password", "New password", "password"), ("confirm", "Confirm new password", "confirm")];

fn reset_form(s: &Option<CurrentSession>, csrf: Option<String>, token: &str, problems: Vec<Problem>) -> PageResult {
    let failed = !problems.is_empty();
    let page = ResetPage {
        nav: nav_of(s),
        flash: None,
        csrf,
        action: format!("/reset-password/{}", url_segment(token)),
        problems,
        heading: "Choose a new password".into(),
        intro: "A few unrelated words make a strong password that is easy to remember. Choosing a new password \
                signs you out everywhere.",
        button: "Change my password",
        strength: "patient",
    };
    render_form(&page, failed)
}

async fn reset_link(
    State(state): State<WebState>,
    MaybeSigned(s): MaybeSigned,
    SessionCsrf(csrf): SessionCsrf,
    Path(token): Path<String>,
) -> PageResult {
    match state.app.check_reset_link(&token).await {
        Ok(()) => reset_form(&s, csrf, &token, vec![]),
        Err(AppError::LinkExpired) => dead_link(nav_of(&s), NEW_RESET_LINK),
        Err(e) => Err(e.into()),
    }
}

async fn reset_password(
    State(state): State<WebState>,
    MaybeSigned(s): MaybeSigned,
    SessionCsrf(csrf): SessionCsrf,
    ClientInfo(client): ClientInfo,
    Path(token): Path<String>,
    body: Bytes,
) -> PageResult {
    let form = FormData::parse(&body);
    let (password, confirm) = (form.get("password"), form.get("confirm"));
    let result = if password != confirm {
        match state.app.check_reset_link(&token).await {
            Ok(()) => Err(AppError::InvalidFields(vec!["confirm: the two passwords are not the same".into()])),
            Err(e) => Err(e),
        }
    } else {
        state.app.reset_password(&token, password, &client).await
    };
    match result {
        Ok(()) => message(
            None,
            StatusCode::OK,
            "Your password has been changed",
            false,
            &[
                "Your password has been changed and you have been signed out everywhere.",
                "We have emailed you to say so. Sign in with your new password.",
            ],
            &[("/sign-in", "Sign in")],
        ),
        Err(AppError::LinkExpired) => dead_link(nav_of(&s), NEW_RESET_LINK),
        Err(e @ (AppError::Invalid(_) | AppError::InvalidFields(_))) => {
            reset_form(&s, csrf, &token, field_problems(&e, RESET_FIELDS))
        }
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------------------------
// A manager's invitation
// ---------------------------------------------------------------------------------------------

const INVITATION_FIELDS: &[(&str, &str, &str)] =
    &[("password", "Password", "password"), ("confirm", "Confirm password", "confirm")];

fn invitation_form(
    csrf: Option<String>,
    token: &str,
    invited: &repeatrx_store::UserAccount,
    problems: Vec<Problem>,
) -> PageResult {
    let failed = !problems.is_empty();
    let staff = invited.role.is_staff();
    let name = &invited.display_name;
    let page = ResetPage {
        nav: None,
        flash: None,
        csrf,
        action: format!("/invitation/{}", url_segment(token)),
        problems,
        heading: format!("Welcome to RepeatRx, {name}"),
        intro: if staff {
            "Choose the password you will sign in with: at least 12 characters. A few unrelated words make a \
             strong password that is easy to remember. Then you will sign in and set up an authenticator app."
        } else {
            "Choose the password you will sign in with: at least 10 characters. A few unrelated words make a \
             strong password that is easy to remember."
        },
        button: "Choose this password",
        strength: if staff { "staff" } else { "patient" },
    };
    render_form(&page, failed)
}

const NO_INVITATION: (&str, &str) = ("/", "Go to the start page");

async fn invitation_link(
    State(state): State<WebState>,
    SessionCsrf(csrf): SessionCsrf,
    Path(token): Path<String>,
) -> PageResult {
    match state.app.invitation(&token).await {
        Ok(user) => invitation_form(csrf, &token, &user, vec![]),
        Err(AppError::LinkExpired) => dead_link(None, NO_INVITATION),
        Err(e) => Err(e.into()),
    }
}

async fn accept_invitation(
    State(state): State<WebState>,
    SessionCsrf(csrf): SessionCsrf,
    ClientInfo(client): ClientInfo,
    Path(token): Path<String>,
    body: Bytes,
) -> PageResult {
    let form = FormData::parse(&body);
    let (password, confirm) = (form.get("password"), form.get("confirm"));
    let invited = match state.app.invitation(&token).await {
        Ok(user) => user,
        Err(AppError::LinkExpired) => return dead_link(None, NO_INVITATION),
        Err(e) => return Err(e.into()),
    };
    let result = if password != confirm {
        Err(AppError::InvalidFields(vec!["confirm: the two passwords are not the same".into()]))
    } else {
        state.app.accept_invitation(&token, password, &client).await
    };
    match result {
        Ok(user) => {
            let ready = "Your account is ready. Sign in with your email address and the password you chose.";
            let lines: &[&str] = if user.role.is_staff() {
                &[ready, "Have your phone ready: the first time, you will set up an authenticator app."]
            } else {
                &[ready]
            };
            message(None, StatusCode::OK, "Your password is set", false, lines, &[("/sign-in", "Sign in")])
        }
        Err(AppError::LinkExpired) => dead_link(None, NO_INVITATION),
        Err(e @ (AppError::Invalid(_) | AppError::InvalidFields(_))) => {
            invitation_form(csrf, &token, &invited, field_problems(&e, INVITATION_FIELDS))
        }
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------------------------
// The email-change links
// ---------------------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "email_change.html")]
struct EmailChangePage {
    nav: Option<Nav>,
    flash: Option<String>,
    csrf: Option<String>,
    action: String,
    new_email: String,
}

fn new_email_link(s: &Option<CurrentSession>) -> (&'static str, &'static str) {
    if s.is_some() {
        ("/account", "Go to your account page to start again")
    } else {
        ("/sign-in", "Sign in to start again from your account page")
    }
}

async fn email_change_link(
    State(state): State<WebState>,
    MaybeSigned(s): MaybeSigned,
    SessionCsrf(csrf): SessionCsrf,
    Path(token): Path<String>,
) -> PageResult {
    match state.app.check_email_change_link(&token).await {
        Ok(new_email) => render(&EmailChangePage {
            nav: nav_of(&s),
            flash: None,
            csrf,
            action: format!("/email-change/{}", url_segment(&token)),
            new_email,
        }),
        Err(AppError::LinkExpired) => dead_link(nav_of(&s), new_email_link(&s)),
        Err(e) => Err(e.into()),
    }
}

async fn confirm_email_change(
    State(state): State<WebState>,
    MaybeSigned(s): MaybeSigned,
    ClientInfo(client): ClientInfo,
    Path(token): Path<String>,
) -> PageResult {
    match state.app.confirm_email_change(&token, &client).await {
        Ok(EmailChangeProgress::WaitingForOther) => message(
            nav_of(&s),
            StatusCode::OK,
            "Confirmed from this address",
            false,
            &[
                "The change of email address is confirmed from this address.",
                "Now open the link we sent to the other address (the old one if you are reading this at the new \
                 one, or the other way round). The change happens when both are confirmed.",
            ],
            &[],
        ),
        Ok(EmailChangeProgress::Changed(email)) => {
            let sign_in_with = format!("From now on, sign in with {email}.");
            let next = if s.is_some() { ("/account", "Go to your account") } else { ("/sign-in", "Sign in") };
            message(
                nav_of(&s),
                StatusCode::OK,
                "Your email address has been changed",
                false,
                &["Both addresses have confirmed the change.", &sign_in_with],
                &[next],
            )
        }
        Err(AppError::LinkExpired) => dead_link(nav_of(&s), new_email_link(&s)),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_of_birth_are_read_day_first_or_as_iso() {
        assert_eq!(read_date_of_birth("31/03/1980"), Ok("1980-03-31".into()));
        assert_eq!(read_date_of_birth(" 1/3/1980 "), Ok("1980-03-01".into()));
        assert_eq!(read_date_of_birth("31-03-1980"), Ok("1980-03-31".into()));
        assert_eq!(read_date_of_birth("31.03.1980"), Ok("1980-03-31".into()));
        assert_eq!(read_date_of_birth("31 03 1980"), Ok("1980-03-31".into()));
        assert_eq!(read_date_of_birth("1980-03-31"), Ok("1980-03-31".into()));
        assert_eq!(read_date_of_birth("1901-01-01"), Ok("1901-01-01".into()));
        assert_eq!(read_date_of_birth(""), Err(DateProblem::Missing));
        for bad in ["31/03/80", "March 1980", "31/03", "1980/3/31/1", "311/03/1980", "31/003/1980", "a/b/cdef"] {
            assert_eq!(read_date_of_birth(bad), Err(DateProblem::Unreadable), "{bad}");
        }
        // Whether the date exists is for the domain to say.
        assert_eq!(read_date_of_birth("31/02/1980"), Ok("1980-02-31".into()));
    }

    #[test]
    fn refused_dates_and_wrong_dates_read_as_sentences() {
        assert_eq!(
            date_problem("date_of_birth: must be a date written as YYYY-MM-DD"),
            "That date does not exist. Enter your date of birth, for example 31/03/1980."
        );
        assert_eq!(
            date_problem("date_of_birth: cannot be in the future"),
            "Your date of birth cannot be in the future."
        );
        assert_eq!(date_problem("something else"), "Something else");
        assert!(wrong_date_sentence(3).contains("3 more tries"));
        assert!(wrong_date_sentence(1).contains("1 more try "));
    }

    #[test]
    fn tokens_go_back_into_forms_only_as_url_safe_characters() {
        assert_eq!(url_segment("abc-DEF_123"), "abc-DEF_123");
        assert_eq!(url_segment("a\"><script>b"), "ascriptb");
        assert_eq!(url_segment("../x"), "x");
    }

    #[test]
    fn typed_addresses_are_trimmed_and_cut() {
        assert_eq!(typed_email("  ann@example.org "), "ann@example.org");
        assert_eq!(typed_email(&"a".repeat(400)).len(), 254);
    }
}
