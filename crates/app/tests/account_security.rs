//! Account security rules (issue #3) on a real SQLite file with an injected clock: lockout after
//! six failures, unlock by date of birth, identity lock, TOTP (enrolment, replay, skew, recovery
//! codes), reset links, email changes, manager unlocks, address throttling, password rehash and
//! the sign-in events kept for the audit trail.
mod common;

use common::{actor, client, harness, password, Harness};
use jiff::SignedDuration;
use repeatrx_app::auth::{Client, CurrentSession, NewSession};
use repeatrx_app::recovery::{EmailChangeProgress, UnlockOutcome};
use repeatrx_app::AppError;
use repeatrx_domain::clock::Clock;
use repeatrx_domain::security::{LockState, SecurityEventKind, SessionStage};
use repeatrx_domain::text::Email;
use repeatrx_store::{OutgoingEmail, SessionKind, UserAccount};
use secrecy::{ExposeSecret, SecretString};

const PATIENT: &str = "patient@demo.example";
const PHARMACIST: &str = "pharmacist@demo.example";

fn wrong() -> SecretString {
    SecretString::from("not the right password")
}

async fn user(h: &Harness, email: &str) -> UserAccount {
    h.app.store.user_by_email(&Email::parse(email).unwrap()).await.unwrap().unwrap()
}

async fn lock_state(h: &Harness, email: &str) -> LockState {
    let u = user(h, email).await;
    h.app.store.account_security(u.id).await.unwrap().unwrap().lock_state
}

async fn current(h: &Harness, new: &NewSession) -> CurrentSession {
    h.app.session(new.token.expose_secret()).await.unwrap()
}

async fn events(h: &Harness, email: &str) -> Vec<SecurityEventKind> {
    let u = user(h, email).await;
    h.app.store.security_events_of_user(u.id, 100).await.unwrap().into_iter().map(|e| e.kind).collect()
}

/// The newest email to `to` whose subject contains `subject`.
async fn email_to(h: &Harness, to: &str, subject: &str) -> Option<OutgoingEmail> {
    h.app
        .store
        .recent_emails(500)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.to.as_str() == to && e.subject.contains(subject))
}

/// The token at the end of the first link in an email with this path.
fn link_token(email: &OutgoingEmail, path: &str) -> String {
    let marker = format!("/{path}/");
    let start = email.body.find(&marker).expect("a link") + marker.len();
    email.body[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect()
}

async fn fail_times(h: &Harness, email: &str, n: usize) {
    for _ in 0..n {
        let e = h.app.sign_in(email, wrong(), SessionKind::Browser, &client()).await.err().unwrap();
        assert!(matches!(e, AppError::BadCredentials), "{e:?}");
    }
}

async fn patient_dob(h: &Harness) -> String {
    let u = user(h, PATIENT).await;
    h.app.store.patient(u.patient_id.unwrap()).await.unwrap().unwrap().date_of_birth.date().to_string()
}

async fn request_unlock_token(h: &Harness) -> String {
    h.app.request_unlock(PATIENT, &client()).await.unwrap();
    link_token(&email_to(h, PATIENT, "Unlock").await.expect("an unlock email"), "unlock")
}

#[tokio::test]
async fn the_seventh_attempt_with_the_right_password_is_refused_like_a_wrong_one() {
    let h = harness().await;
    fail_times(&h, PATIENT, 5).await;
    assert_eq!(lock_state(&h, PATIENT).await, LockState::Open, "five failures do not lock");
    fail_times(&h, PATIENT, 1).await;
    assert_eq!(lock_state(&h, PATIENT).await, LockState::Locked, "the sixth does");
    let right = h.app.sign_in(PATIENT, password(), SessionKind::Browser, &client()).await.err().unwrap();
    let unknown = h.app.sign_in("nobody@demo.example", wrong(), SessionKind::Browser, &client()).await.err().unwrap();
    assert!(matches!(right, AppError::BadCredentials));
    assert_eq!(right.to_string(), unknown.to_string(), "a locked account answers like a wrong password");
    let kinds = events(&h, PATIENT).await;
    assert_eq!(kinds.iter().filter(|k| **k == SecurityEventKind::SignInFailed).count(), 7);
    assert!(kinds.contains(&SecurityEventKind::Locked));
}

#[tokio::test]
async fn a_successful_sign_in_resets_the_count() {
    let h = harness().await;
    fail_times(&h, PATIENT, 5).await;
    h.app.sign_in(PATIENT, password(), SessionKind::Browser, &client()).await.unwrap();
    fail_times(&h, PATIENT, 5).await;
    assert_eq!(lock_state(&h, PATIENT).await, LockState::Open, "5 + success + 5 is not 6 in a row");
    assert!(h.app.sign_in(PATIENT, password(), SessionKind::Browser, &client()).await.is_ok());
}

#[tokio::test]
async fn a_patient_unlocks_with_their_date_of_birth_through_a_single_use_link() {
    let h = harness().await;
    fail_times(&h, PATIENT, 6).await;
    let token = request_unlock_token(&h).await;
    assert!(token.len() >= 43, "at least 256 bits: {token}");
    h.app.check_unlock_link(&token).await.unwrap();
    let dob = patient_dob(&h).await;
    assert_eq!(h.app.unlock_with_date_of_birth(&token, &dob, &client()).await.unwrap(), UnlockOutcome::Unlocked);
    assert_eq!(lock_state(&h, PATIENT).await, LockState::Open);
    assert!(h.app.sign_in(PATIENT, password(), SessionKind::Browser, &client()).await.is_ok());
    let reuse = h.app.unlock_with_date_of_birth(&token, &dob, &client()).await;
    assert!(matches!(reuse, Err(AppError::LinkExpired)), "single use: {reuse:?}");
    assert!(events(&h, PATIENT).await.contains(&SecurityEventKind::Unlocked));
}

#[tokio::test]
async fn unlock_links_expire_after_30_minutes_and_open_accounts_get_none() {
    let h = harness().await;
    h.app.request_unlock(PATIENT, &client()).await.unwrap();
    assert!(email_to(&h, PATIENT, "Unlock").await.is_none(), "an open account gets no unlock email");
    h.app.request_unlock("nobody@demo.example", &client()).await.unwrap();
    fail_times(&h, PATIENT, 6).await;
    let token = request_unlock_token(&h).await;
    h.clock.advance(SignedDuration::from_mins(31));
    let late = h.app.unlock_with_date_of_birth(&token, &patient_dob(&h).await, &client()).await;
    assert!(matches!(late, Err(AppError::LinkExpired)), "{late:?}");
    assert_eq!(lock_state(&h, PATIENT).await, LockState::Locked);
}

#[tokio::test]
async fn four_wrong_dates_of_birth_leave_it_to_the_pharmacy() {
    let h = harness().await;
    fail_times(&h, PATIENT, 6).await;
    let token = request_unlock_token(&h).await;
    for left in [3, 2, 1] {
        let outcome = h.app.unlock_with_date_of_birth(&token, "1901-01-01", &client()).await.unwrap();
        assert_eq!(outcome, UnlockOutcome::WrongDateOfBirth { tries_left: left });
    }
    let outcome = h.app.unlock_with_date_of_birth(&token, "1901-01-01", &client()).await.unwrap();
    assert_eq!(outcome, UnlockOutcome::IdentityLocked);
    assert_eq!(lock_state(&h, PATIENT).await, LockState::IdentityLocked);
    // The right date now changes nothing, through this link or a new one.
    let dob = patient_dob(&h).await;
    assert!(h.app.unlock_with_date_of_birth(&token, &dob, &client()).await.is_err());
    h.app.request_unlock(PATIENT, &client()).await.unwrap();
    assert!(email_to(&h, PATIENT, "needs your pharmacy").await.is_some(), "told to see the pharmacy");
    assert_eq!(lock_state(&h, PATIENT).await, LockState::IdentityLocked);
    assert!(h.app.sign_in(PATIENT, password(), SessionKind::Browser, &client()).await.is_err());

    // The pharmacy lifts it after checking identity; who and why are recorded.
    let patient_id = user(&h, PATIENT).await.patient_id.unwrap();
    let other_pharmacy = actor(&h.app, "hilltop.manager@demo.example").await;
    let elsewhere = h.app.lift_identity_lock(&other_pharmacy, patient_id, "photo ID seen", &client()).await;
    assert!(matches!(elsewhere, Err(AppError::NotFound(_))), "another pharmacy cannot: {elsewhere:?}");
    let pharmacist = actor(&h.app, PHARMACIST).await;
    let no_reason = h.app.lift_identity_lock(&pharmacist, patient_id, " ", &client()).await;
    assert!(matches!(no_reason, Err(AppError::InvalidFields(_))));
    assert_eq!(h.app.patient_account_lock(&pharmacist, patient_id).await.unwrap(), Some(LockState::IdentityLocked));
    h.app.lift_identity_lock(&pharmacist, patient_id, "photo ID seen at the counter", &client()).await.unwrap();
    assert_eq!(lock_state(&h, PATIENT).await, LockState::Open);
    let u = user(&h, PATIENT).await;
    let lifted = h.app.store.security_events_of_user(u.id, 1).await.unwrap().remove(0);
    assert_eq!(lifted.kind, SecurityEventKind::IdentityLockLifted);
    assert_eq!((lifted.actor_id, lifted.detail.as_str()), (Some(pharmacist.user_id), "photo ID seen at the counter"));
    assert!(h.app.sign_in(PATIENT, password(), SessionKind::Browser, &client()).await.is_ok());
}

#[tokio::test]
async fn staff_unlock_through_their_manager_and_managers_through_an_operator() {
    let h = harness().await;
    fail_times(&h, PHARMACIST, 6).await;
    h.app.request_unlock(PHARMACIST, &client()).await.unwrap();
    let told = email_to(&h, PHARMACIST, "staff account is locked").await.expect("told who unlocks");
    assert!(told.body.contains("manager") && !told.body.contains("/unlock/"), "no date-of-birth link for staff");
    let target = user(&h, PHARMACIST).await.id;

    let elsewhere = actor(&h.app, "hilltop.manager@demo.example").await;
    let refused = h.app.unlock_account(&elsewhere, target, "spoke to them", &client()).await;
    assert!(matches!(refused, Err(AppError::NotFound(_))), "{refused:?}");
    let operator = actor(&h.app, "operator@demo.example").await;
    assert!(h.app.unlock_account(&operator, target, "spoke to them", &client()).await.is_err(), "not the operator's");
    let manager = actor(&h.app, "manager@demo.example").await;
    let listed = h.app.managed_accounts(&manager).await.unwrap();
    let row = listed.iter().find(|a| a.user.id == target).expect("the manager sees their staff");
    assert!(row.can_unlock && row.security.lock_state == LockState::Locked);
    h.app.unlock_account(&manager, target, "spoke to them in person", &client()).await.unwrap();
    assert_eq!(lock_state(&h, PHARMACIST).await, LockState::Open);
    let again = h.app.unlock_account(&manager, target, "spoke to them in person", &client()).await;
    assert!(matches!(again, Err(AppError::Conflict(_))), "not locked any more");

    fail_times(&h, "manager@demo.example", 6).await;
    let manager_id = user(&h, "manager@demo.example").await.id;
    let pharmacist = actor(&h.app, PHARMACIST).await;
    assert!(matches!(h.app.managed_accounts(&pharmacist).await, Err(AppError::Forbidden)));
    assert!(h.app.managed_accounts(&operator).await.unwrap().iter().any(|a| a.user.id == manager_id && a.can_unlock));
    h.app.unlock_account(&operator, manager_id, "confirmed by phone call-back", &client()).await.unwrap();
    assert_eq!(lock_state(&h, "manager@demo.example").await, LockState::Open);
}

async fn staff_half_session(h: &Harness, email: &str) -> CurrentSession {
    let new = h.app.sign_in(email, password(), SessionKind::Browser, &client()).await.unwrap();
    assert_eq!(new.stage, SessionStage::SecondFactor, "demo staff have an authenticator app");
    current(h, &new).await
}

fn code_now(h: &Harness) -> String {
    repeatrx_app::demo::demo_code(h.clock.now())
}

#[tokio::test]
async fn staff_need_a_code_and_a_code_works_once() {
    let h = harness().await;
    let started = h.app.sign_in(PHARMACIST, password(), SessionKind::Browser, &client()).await.unwrap();
    let half = current(&h, &started).await;
    assert!(!half.is_full());
    let code = code_now(&h);
    let full = h.app.complete_second_factor(&half, &code, &client()).await.unwrap();
    assert_eq!(full.stage, SessionStage::Full);
    assert!(h.app.session(full.token.expose_secret()).await.unwrap().is_full());
    let old = h.app.session(started.token.expose_secret()).await;
    assert!(old.is_err(), "the half-finished session id stops working (a new id on privilege change)");

    // The same code again, within its window, is refused.
    let second = staff_half_session(&h, PHARMACIST).await;
    let replay = h.app.complete_second_factor(&second, &code, &client()).await;
    assert!(matches!(replay, Err(AppError::WrongCode)), "{replay:?}");
    // The next step's code is accepted (one step of skew), the one two steps ahead is not.
    let secret = repeatrx_app::demo::DEMO_TOTP_SECRET;
    let step = repeatrx_app::totp::step_of(h.clock.now().as_second());
    let far = repeatrx_app::totp::code_at_step(secret, step + 2).unwrap();
    assert!(matches!(h.app.complete_second_factor(&second, &far, &client()).await, Err(AppError::WrongCode)));
    let next = repeatrx_app::totp::code_at_step(secret, step + 1).unwrap();
    assert!(h.app.complete_second_factor(&second, &next, &client()).await.is_ok());
}

#[tokio::test]
async fn wrong_codes_count_towards_the_lockout() {
    let h = harness().await;
    let half = staff_half_session(&h, PHARMACIST).await;
    for _ in 0..5 {
        let e = h.app.complete_second_factor(&half, "000000", &client()).await.err().unwrap();
        assert!(matches!(e, AppError::WrongCode), "{e:?}");
    }
    let e = h.app.complete_second_factor(&half, "000001", &client()).await.err().unwrap();
    assert!(matches!(e, AppError::BadCredentials), "the sixth wrong code locks: {e:?}");
    assert_eq!(lock_state(&h, PHARMACIST).await, LockState::Locked);
    let e = h.app.sign_in(PHARMACIST, password(), SessionKind::Browser, &client()).await.err().unwrap();
    assert!(matches!(e, AppError::BadCredentials));
}

#[tokio::test]
async fn a_new_staff_account_enrols_then_recovery_codes_work_once() {
    let h = harness().await;
    let operator = actor(&h.app, "operator@demo.example").await;
    let done = h
        .app
        .create_pharmacy(
            &operator,
            &repeatrx_app::admin::NewOrganisationInput {
                name: "Canal Street Pharmacy".into(),
                ods_code: "FQ123".into(),
                address: "1 Canal Street".into(),
                manager_name: "Cara Lee".into(),
                manager_email: "cara@canal.example".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(done.manager_email.as_str(), "cara@canal.example");
    common::accept_invitation(&h.app, "cara@canal.example", "otter lantern quietly 42").await;
    let pw = SecretString::from("otter lantern quietly 42");
    let new = h.app.sign_in("cara@canal.example", pw.clone(), SessionKind::Browser, &client()).await.unwrap();
    assert_eq!(new.stage, SessionStage::Enrol, "staff must enrol before anything else");
    let half = current(&h, &new).await;
    let setup = h.app.totp_setup(&half).await.unwrap();
    assert_eq!(h.app.totp_setup(&half).await.unwrap().secret, setup.secret, "the same secret until confirmed");
    assert!(setup.url.starts_with("otpauth://totp/") && setup.qr_svg.contains("<svg"));
    let bad = h.app.confirm_totp(&half, "123456", &client()).await;
    assert!(matches!(bad, Err(AppError::InvalidFields(_))) || bad.is_ok());
    let step = repeatrx_app::totp::step_of(h.clock.now().as_second());
    let code = repeatrx_app::totp::code_at_step(&setup.secret, step).unwrap();
    let confirmed = h.app.confirm_totp(&half, &code, &client()).await.unwrap();
    assert_eq!(confirmed.recovery_codes.len(), 10);
    let full = confirmed.session.expect("the sign-in is complete");
    assert_eq!(full.stage, SessionStage::Full);
    assert!(events(&h, "cara@canal.example").await.contains(&SecurityEventKind::TotpEnrolled));

    // Next sign-in: a recovery code instead of a code, once.
    let recovery = confirmed.recovery_codes[0].clone();
    let half =
        current(&h, &h.app.sign_in("cara@canal.example", pw.clone(), SessionKind::Api, &client()).await.unwrap()).await;
    assert_eq!(half.session.stage, SessionStage::SecondFactor);
    h.app.complete_second_factor(&half, &recovery.to_uppercase(), &client()).await.unwrap();
    let half = current(&h, &h.app.sign_in("cara@canal.example", pw, SessionKind::Api, &client()).await.unwrap()).await;
    let reused = h.app.complete_second_factor(&half, &recovery, &client()).await;
    assert!(matches!(reused, Err(AppError::WrongCode)), "{reused:?}");
    assert!(events(&h, "cara@canal.example").await.contains(&SecurityEventKind::RecoveryCodeUsed));
    let left = h.app.store.account_security(half.user.id).await.unwrap().unwrap().recovery_codes_left;
    assert_eq!(left, 9);
}

#[tokio::test]
async fn patients_may_opt_in_to_a_second_factor_and_out_again() {
    let h = harness().await;
    let full = h.app.sign_in(PATIENT, password(), SessionKind::Browser, &client()).await.unwrap();
    assert_eq!(full.stage, SessionStage::Full, "patients sign in with a password alone by default");
    let s = current(&h, &full).await;
    let setup = h.app.totp_setup(&s).await.unwrap();
    let step = repeatrx_app::totp::step_of(h.clock.now().as_second());
    let code = |st: i64| repeatrx_app::totp::code_at_step(&setup.secret, st).unwrap();
    let confirmed = h.app.confirm_totp(&s, &code(step), &client()).await.unwrap();
    assert!(confirmed.session.is_none(), "already fully signed in");
    let next = h.app.sign_in(PATIENT, password(), SessionKind::Browser, &client()).await.unwrap();
    assert_eq!(next.stage, SessionStage::SecondFactor, "now the patient is asked for a code");
    h.app.disable_totp(&s, &code(step + 1), &client()).await.unwrap();
    let after = h.app.sign_in(PATIENT, password(), SessionKind::Browser, &client()).await.unwrap();
    assert_eq!(after.stage, SessionStage::Full);
    // Staff cannot turn it off.
    let staff = staff_half_session(&h, PHARMACIST).await;
    let staff = current(&h, &h.app.complete_second_factor(&staff, &code_now(&h), &client()).await.unwrap()).await;
    assert!(matches!(h.app.disable_totp(&staff, &code_now(&h), &client()).await, Err(AppError::Invalid(_))));
}

#[tokio::test]
async fn a_prescriber_signs_approvals_with_a_fresh_code() {
    let h = harness().await;
    let prescriber = actor(&h.app, "prescriber@demo.example").await;
    let requests = h.app.practice_requests(&prescriber, None).await.unwrap();
    let row = requests.iter().find(|r| r.order.stage == repeatrx_domain::order::OrderStage::WithPrescriber);
    let order = row.expect("a demo request").order.clone();
    let items: Vec<_> = order
        .items
        .iter()
        .filter(|i| i.state == repeatrx_domain::order::ItemState::WithPrescriber)
        .map(|i| i.id)
        .collect();
    let approve = repeatrx_domain::order::Decision::Approve;
    let unsigned = h.app.decide_item(&prescriber, order.id, items[0], approve.clone(), None, &client()).await;
    assert!(matches!(unsigned, Err(AppError::InvalidFields(_))), "{unsigned:?}");
    let wrong = h.app.decide_item(&prescriber, order.id, items[0], approve.clone(), Some("000000"), &client()).await;
    assert!(matches!(wrong, Err(AppError::InvalidFields(_))), "{wrong:?}");
    let code = code_now(&h);
    h.app.decide_item(&prescriber, order.id, items[0], approve.clone(), Some(&code), &client()).await.unwrap();
    if let Some(second) = items.get(1) {
        let replay = h.app.decide_item(&prescriber, order.id, *second, approve, Some(&code), &client()).await;
        assert!(matches!(replay, Err(AppError::InvalidFields(_))), "a code signs once: {replay:?}");
    }
}

#[tokio::test]
async fn reset_links_work_once_for_30_minutes_and_end_every_session() {
    let h = harness().await;
    let elsewhere = h.app.sign_in(PATIENT, password(), SessionKind::Api, &client()).await.unwrap();
    h.app.request_password_reset("nobody@demo.example", &client()).await.unwrap();
    h.app.request_password_reset(PATIENT, &client()).await.unwrap();
    let email = email_to(&h, PATIENT, "Reset your").await.expect("a reset email");
    let token = link_token(&email, "reset-password");
    assert!(token.len() >= 43);
    assert!(h.app.store.account_token(&token).await.unwrap().is_none(), "only the hash of the token is stored");
    h.app.check_reset_link(&token).await.unwrap();
    let weak = h.app.reset_password(&token, "1234567890", &client()).await;
    assert!(matches!(weak, Err(AppError::Invalid(_) | AppError::InvalidFields(_))), "{weak:?}");
    h.app.reset_password(&token, "a brand new passphrase", &client()).await.unwrap();
    assert!(h.app.session(elsewhere.token.expose_secret()).await.is_err(), "every other session ends");
    let reuse = h.app.reset_password(&token, "another new passphrase", &client()).await;
    assert!(matches!(reuse, Err(AppError::LinkExpired)));
    assert!(h
        .app
        .sign_in(PATIENT, SecretString::from("a brand new passphrase"), SessionKind::Api, &client())
        .await
        .is_ok());
    assert!(email_to(&h, PATIENT, "password was changed").await.is_some());

    h.clock.advance(SignedDuration::from_mins(2));
    h.app.request_password_reset(PATIENT, &client()).await.unwrap();
    let late = link_token(&email_to(&h, PATIENT, "Reset your").await.unwrap(), "reset-password");
    assert_ne!(late, token, "a new link");
    h.app.check_reset_link(&late).await.unwrap();
    h.clock.advance(SignedDuration::from_mins(30));
    assert!(matches!(
        h.app.reset_password(&late, "yet another passphrase", &client()).await,
        Err(AppError::LinkExpired)
    ));
    let kinds = events(&h, PATIENT).await;
    assert!(kinds.contains(&SecurityEventKind::ResetRequested) && kinds.contains(&SecurityEventKind::PasswordReset));
}

#[tokio::test]
async fn asking_again_within_a_minute_sends_no_second_email() {
    let h = harness().await;
    let count = |subject: &'static str| {
        let store = h.app.store.clone();
        async move {
            let all = store.recent_emails(500).await.unwrap();
            all.iter().filter(|e| e.to.as_str() == PATIENT && e.subject.contains(subject)).count()
        }
    };
    for _ in 0..5 {
        h.app.request_password_reset(PATIENT, &client()).await.unwrap();
    }
    assert_eq!(count("Reset your").await, 1, "one reset email per minute");
    fail_times(&h, PATIENT, 6).await;
    for _ in 0..5 {
        h.app.request_unlock(PATIENT, &client()).await.unwrap();
    }
    assert_eq!(count("Unlock").await, 1, "one unlock email per minute");
    h.clock.advance(SignedDuration::from_secs(61));
    h.app.request_password_reset(PATIENT, &client()).await.unwrap();
    h.app.request_unlock(PATIENT, &client()).await.unwrap();
    assert_eq!((count("Reset your").await, count("Unlock").await), (2, 2));
}

#[tokio::test]
async fn an_email_change_needs_both_addresses() {
    let h = harness().await;
    let s = current(&h, &h.app.sign_in(PATIENT, password(), SessionKind::Browser, &client()).await.unwrap()).await;
    let bad = h.app.request_email_change(&s, "ann.new@example.org", wrong(), &client()).await;
    assert!(matches!(bad, Err(AppError::InvalidFields(_))), "the current password is checked");
    h.app.request_email_change(&s, "ann.new@example.org", password(), &client()).await.unwrap();
    let old = link_token(&email_to(&h, PATIENT, "Confirm the change").await.unwrap(), "email-change");
    let new = link_token(&email_to(&h, "ann.new@example.org", "Confirm your new").await.unwrap(), "email-change");
    assert_eq!(h.app.confirm_email_change(&new, &client()).await.unwrap(), EmailChangeProgress::WaitingForOther);
    assert_eq!(user(&h, PATIENT).await.email.as_str(), PATIENT, "nothing changes on one confirmation");
    let done = h.app.confirm_email_change(&old, &client()).await.unwrap();
    assert_eq!(done, EmailChangeProgress::Changed(Email::parse("ann.new@example.org").unwrap()));
    assert!(h.app.sign_in("ann.new@example.org", password(), SessionKind::Api, &client()).await.is_ok());
    assert!(matches!(h.app.confirm_email_change(&old, &client()).await, Err(AppError::LinkExpired)));
}

#[tokio::test]
async fn an_address_that_fails_too_often_is_slowed_without_locking_others() {
    let h = harness().await;
    let sprayer = Client::new("203.0.113.66", "spray");
    for i in 0..30 {
        let e =
            h.app.sign_in(&format!("user{i}@demo.example"), wrong(), SessionKind::Api, &sprayer).await.err().unwrap();
        assert!(matches!(e, AppError::BadCredentials), "{e:?}");
    }
    let slowed = h.app.sign_in(PATIENT, password(), SessionKind::Api, &sprayer).await.err().unwrap();
    assert!(matches!(slowed, AppError::TooManyAttempts), "{slowed:?}");
    assert_eq!(lock_state(&h, PATIENT).await, LockState::Open, "nobody's account was locked");
    assert!(h.app.sign_in(PATIENT, password(), SessionKind::Api, &client()).await.is_ok(), "other addresses carry on");
    h.clock.advance(SignedDuration::from_mins(16));
    assert!(h.app.sign_in(PATIENT, password(), SessionKind::Api, &sprayer).await.is_ok(), "the window passes");
}

#[tokio::test]
async fn old_hashes_are_upgraded_at_sign_in() {
    let h = harness().await;
    let u = user(&h, PATIENT).await;
    // A hash made with weaker parameters, as an older release might have stored.
    let weak = {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let params = argon2::Params::new(8 * 1024, 1, 1, None).unwrap();
        let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        a.hash_password(repeatrx_app::demo::DEMO_PASSWORD.as_bytes(), &salt).unwrap().to_string()
    };
    assert!(repeatrx_app::auth::needs_rehash(&weak));
    h.app.store.set_password_hash(u.id, &weak).await.unwrap();
    h.app.sign_in(PATIENT, password(), SessionKind::Api, &client()).await.unwrap();
    let stored = user(&h, PATIENT).await.password_hash;
    assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{stored}");
    assert!(!repeatrx_app::auth::needs_rehash(&stored));
    assert!(events(&h, PATIENT).await.contains(&SecurityEventKind::PasswordRehashed));
}

#[tokio::test]
async fn sessions_are_listed_and_signed_out_everywhere() {
    let h = harness().await;
    let a = h.app.sign_in(PATIENT, password(), SessionKind::Browser, &client()).await.unwrap();
    let b = h.app.sign_in(PATIENT, password(), SessionKind::Api, &Client::new("198.51.100.2", "Phone")).await.unwrap();
    let c = h.app.sign_in(PATIENT, password(), SessionKind::Browser, &client()).await.unwrap();
    let s = current(&h, &a).await;
    let listed = h.app.sessions_of(&s).await.unwrap();
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().any(|r| r.user_agent == "Phone" && r.address == "198.51.100.2"));
    assert_eq!(h.app.sign_out_everywhere(&s, true, &client()).await.unwrap(), 2);
    assert!(
        h.app.session(b.token.expose_secret()).await.is_err() && h.app.session(c.token.expose_secret()).await.is_err()
    );
    assert!(h.app.session(a.token.expose_secret()).await.is_ok(), "this one stays");
    assert_eq!(h.app.sign_out_everywhere(&s, false, &client()).await.unwrap(), 1);
    assert!(h.app.session(a.token.expose_secret()).await.is_err());
}

#[tokio::test]
async fn a_session_knows_how_long_it_has_left() {
    let h = harness().await;
    let new = h.app.sign_in(PATIENT, password(), SessionKind::Browser, &client()).await.unwrap();
    assert_eq!(current(&h, &new).await.ends_in, SignedDuration::from_mins(30));
    // Activity is noted at most once a minute, so 40 seconds later 29m20s are left...
    h.clock.advance(SignedDuration::from_secs(40));
    assert_eq!(current(&h, &new).await.ends_in, SignedDuration::from_secs(29 * 60 + 20));
    // ...and after more than a minute the use is noted and a full period is left again.
    h.clock.advance(SignedDuration::from_secs(30));
    assert_eq!(current(&h, &new).await.ends_in, SignedDuration::from_mins(30));
    // Near the absolute lifetime, that is what is left.
    for _ in 0..28 {
        h.clock.advance(SignedDuration::from_mins(25));
        current(&h, &new).await;
    }
    let s = current(&h, &new).await;
    assert!(s.ends_in < SignedDuration::from_mins(30) && s.ends_in > SignedDuration::ZERO, "{:?}", s.ends_in);
}

#[tokio::test]
async fn half_finished_sign_ins_expire_after_ten_minutes_and_reach_nothing() {
    let h = harness().await;
    let new = h.app.sign_in(PHARMACIST, password(), SessionKind::Browser, &client()).await.unwrap();
    assert_eq!(new.expires_at, h.clock.now() + SignedDuration::from_mins(10));
    h.clock.advance(SignedDuration::from_mins(11));
    assert!(h.app.session(new.token.expose_secret()).await.is_err());
}

#[tokio::test]
async fn events_never_hold_passwords_or_codes() {
    let h = harness().await;
    fail_times(&h, PATIENT, 2).await;
    let half = staff_half_session(&h, PHARMACIST).await;
    let _ = h.app.complete_second_factor(&half, "654321", &client()).await;
    let code = code_now(&h);
    h.app.complete_second_factor(&half, &code, &client()).await.unwrap();
    for email in [PATIENT, PHARMACIST] {
        let u = user(&h, email).await;
        for e in h.app.store.security_events_of_user(u.id, 100).await.unwrap() {
            for secret in [repeatrx_app::demo::DEMO_PASSWORD, "not the right password", "654321", code.as_str()] {
                assert!(!e.detail.contains(secret), "{e:?}");
            }
        }
    }
}

#[tokio::test]
async fn sign_in_events_join_a_verifiable_audit_trail() {
    let h = harness().await;
    fail_times(&h, PATIENT, 1).await;
    h.app.sign_in(PATIENT, password(), SessionKind::Browser, &client()).await.unwrap();
    fail_times(&h, PHARMACIST, 6).await;
    let manager = actor(&h.app, "manager@demo.example").await;
    let pharmacist = user(&h, PHARMACIST).await;
    h.app.unlock_account(&manager, pharmacist.id, "spoke to them in person", &client()).await.unwrap();

    let entries = h.app.store.audit_entries(0, 1000).await.unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.record.action.as_str()).collect();
    for expected in ["sign_in.sign_in_failed", "sign_in.signed_in", "sign_in.locked", "sign_in.unlocked_by_manager"] {
        assert!(actions.contains(&expected), "{expected} in {actions:?}");
    }
    let unlock = entries.iter().find(|e| e.record.action == "sign_in.unlocked_by_manager").unwrap();
    assert_eq!(unlock.record.actor, Some(manager.user_id), "the manager is the actor");
    assert_eq!(unlock.record.actor_role, Some(repeatrx_domain::access::Role::PharmacyManager));
    assert!(unlock.record.organisation.starts_with("pharmacy:"));
    assert!(unlock.record.detail.contains(&pharmacist.id.to_string()) && unlock.record.detail.contains("in person"));
    let signed_in = entries.iter().find(|e| e.record.action == "sign_in.signed_in").unwrap();
    assert_eq!((signed_in.record.organisation.as_str(), signed_in.record.address.as_str()), ("patient", "192.0.2.10"));
    assert!(signed_in.record.patient.is_some(), "a patient's own sign-in names their record");

    let mut seen = 0;
    let report = h.app.verify_audit(|n| seen = n).await.unwrap();
    assert_eq!(report.first_broken, None);
    assert_eq!(report.checked as usize, entries.len());
    assert_eq!(seen as usize, entries.len());
    assert_eq!(report.head, entries.last().unwrap().hash);
}
