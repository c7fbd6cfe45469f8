//! Application services against a real SQLite file, with an injected clock so that due-window
//! reminders and session timeouts are tested without sleeping.
mod common;

use common::{actor, client, harness, password};
use jiff::{SignedDuration, Timestamp};
use repeatrx_app::AppError;
use repeatrx_domain::access::Action;
use repeatrx_domain::clock::Clock;
use repeatrx_domain::order::Decision;
use repeatrx_store::SessionKind;
use secrecy::SecretString;

#[tokio::test]
async fn due_window_reminders_are_sent_once_per_cycle() {
    let h = harness().await;
    let ann = actor(&h.app, "patient@demo.example").await;
    let me = h.app.resolve_patient(&ann, None).unwrap();
    let (_, lines) = h.app.repeat_list(&ann, me).await.unwrap();
    let amlodipine =
        lines.iter().find(|l| l.item.terms.drug_name.to_lowercase().contains("amlodipine")).unwrap().item.clone();
    let opens = amlodipine.opens_on(&h.app.settings.ordering).unwrap();
    let reminders_for = |emails: &[repeatrx_store::OutgoingEmail]| {
        emails
            .iter()
            .filter(|e| e.subject.contains("Time to order") && e.body.to_lowercase().contains("amlodipine"))
            .count()
    };

    h.app.send_due_reminders().await.unwrap();
    assert_eq!(reminders_for(&h.app.store.recent_emails(500).await.unwrap()), 0, "not yet in the window");

    let today = h.clock.today();
    h.clock.advance(SignedDuration::from_hours(24 * today.until(opens).unwrap().get_days() as i64));
    h.app.send_due_reminders().await.unwrap();
    h.app.send_due_reminders().await.unwrap();
    assert_eq!(
        reminders_for(&h.app.store.recent_emails(500).await.unwrap()),
        1,
        "one reminder when the window opens, not two"
    );

    // The next cycle: the item is issued again, and its next window brings one more reminder.
    let mut item = h.app.store.repeat_item(amlodipine.id).await.unwrap().unwrap();
    item.record_issue(h.clock.today()).unwrap();
    h.app.store.update_repeat_item(&item).await.unwrap();
    h.app.send_due_reminders().await.unwrap();
    assert_eq!(reminders_for(&h.app.store.recent_emails(500).await.unwrap()), 1);
    h.clock.advance(SignedDuration::from_hours(24 * 28));
    h.app.send_due_reminders().await.unwrap();
    assert_eq!(reminders_for(&h.app.store.recent_emails(500).await.unwrap()), 2);
}

#[tokio::test]
async fn sessions_end_after_idle_time_and_absolute_lifetime() {
    let h = harness().await;
    let patient = h.app.sign_in("patient@demo.example", password(), SessionKind::Browser, &client()).await.unwrap();
    let token = secrecy::ExposeSecret::expose_secret(&patient.token).to_string();
    h.clock.advance(SignedDuration::from_mins(29));
    assert!(h.app.session(&token).await.is_ok(), "29 idle minutes are fine for a patient");
    h.clock.advance(SignedDuration::from_mins(31));
    assert!(matches!(h.app.session(&token).await, Err(AppError::Unauthenticated)), "31 idle minutes end it");

    let half = h.app.sign_in("pharmacist@demo.example", password(), SessionKind::Browser, &client()).await.unwrap();
    let half_token = secrecy::ExposeSecret::expose_secret(&half.token).to_string();
    let pending = h.app.session(&half_token).await.unwrap();
    let code = repeatrx_app::demo::demo_code(h.clock.now());
    let staff = h.app.complete_second_factor(&pending, &code, &client()).await.unwrap();
    let staff_token = secrecy::ExposeSecret::expose_secret(&staff.token).to_string();
    h.clock.advance(SignedDuration::from_mins(14));
    assert!(h.app.session(&staff_token).await.is_ok(), "14 idle minutes are fine for staff");
    h.clock.advance(SignedDuration::from_mins(2));
    assert!(h.app.session(&staff_token).await.is_ok(), "the last request restarted the idle timer");
    h.clock.advance(SignedDuration::from_mins(16));
    assert!(
        matches!(h.app.session(&staff_token).await, Err(AppError::Unauthenticated)),
        "staff idle limit is 15 minutes"
    );

    let busy = h.app.sign_in("patient@demo.example", password(), SessionKind::Api, &client()).await.unwrap();
    let busy_token = secrecy::ExposeSecret::expose_secret(&busy.token).to_string();
    for _ in 0..71 {
        h.clock.advance(SignedDuration::from_mins(10));
        assert!(h.app.session(&busy_token).await.is_ok());
    }
    h.clock.advance(SignedDuration::from_mins(10));
    assert!(
        matches!(h.app.session(&busy_token).await, Err(AppError::Unauthenticated)),
        "12 hours is the absolute limit"
    );
}

#[tokio::test]
async fn sign_in_refusals_are_identical_for_unknown_and_known_accounts() {
    let h = harness().await;
    let unknown =
        h.app.sign_in("nobody@demo.example", password(), SessionKind::Browser, &client()).await.err().unwrap();
    let wrong = h
        .app
        .sign_in("patient@demo.example", SecretString::from("wrong password!"), SessionKind::Browser, &client())
        .await
        .err()
        .unwrap();
    let garbage = h.app.sign_in("not an email", password(), SessionKind::Browser, &client()).await.err().unwrap();
    assert_eq!(unknown.to_string(), wrong.to_string());
    assert_eq!(garbage.to_string(), wrong.to_string());
    assert!(matches!(unknown, AppError::BadCredentials));
}

#[tokio::test]
async fn the_tenant_gate_hides_other_tenants_and_refuses_operators() {
    let h = harness().await;
    let ann = actor(&h.app, "patient@demo.example").await;
    let ann_id = h.app.resolve_patient(&ann, None).unwrap();
    let other_pharmacy = actor(&h.app, "hilltop.manager@demo.example").await;
    let operator = actor(&h.app, "operator@demo.example").await;
    let own_pharmacy = actor(&h.app, "pharmacist@demo.example").await;
    assert!(matches!(
        h.app.patient_for(&other_pharmacy, Action::ViewPatient, ann_id).await,
        Err(AppError::NotFound(_))
    ));
    assert!(matches!(h.app.patient_for(&operator, Action::ViewPatient, ann_id).await, Err(AppError::Forbidden)));
    assert!(h.app.patient_for(&own_pharmacy, Action::ViewPatient, ann_id).await.is_ok());
    let orders = h.app.orders_of(&ann, ann_id).await.unwrap();
    assert!(matches!(h.app.order_view(&other_pharmacy, orders[0].id).await, Err(AppError::NotFound(_))));
}

#[tokio::test]
async fn pharmacies_record_decisions_only_for_practices_not_on_repeatrx() {
    let h = harness().await;
    let pharmacist = actor(&h.app, "pharmacist@demo.example").await;
    let queue = h
        .app
        .pharmacy_queue(
            &pharmacist,
            &repeatrx_app::queue::QueueQuery {
                stage: Some(repeatrx_domain::order::OrderStage::WithPrescriber),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!queue.rows.is_empty());
    let mut saw_on = false;
    let mut saw_off = false;
    for row in &queue.rows {
        let practice = h.app.store.practice(row.order.practice_id).await.unwrap().unwrap();
        let item =
            row.order.items.iter().find(|i| i.state == repeatrx_domain::order::ItemState::WithPrescriber).unwrap();
        let result = h.app.decide_item(&pharmacist, row.order.id, item.id, Decision::Approve, None, &client()).await;
        if practice.on_repeatrx {
            saw_on = true;
            assert!(matches!(result, Err(AppError::IllegalTransition(_))), "{result:?}");
        } else {
            saw_off = true;
            assert!(result.is_ok(), "{result:?}");
        }
    }
    assert!(saw_on && saw_off, "the demo data has both kinds of practice with requests");
}

#[tokio::test]
async fn a_patient_is_registered_once_per_pharmacy() {
    let h = harness().await;
    let pharmacist = actor(&h.app, "pharmacist@demo.example").await;
    let practice = h.app.practices_for_staff(&pharmacist).await.unwrap()[0].id;
    let input = repeatrx_app::patients::RegisterPatientInput {
        given_name: "Jo".into(),
        family_name: "Bloggs".into(),
        date_of_birth: "1960-02-29".into(),
        nhs_number: "943 476 5919".into(),
        practice_id: practice.to_string(),
        email: "jo.bloggs@demo.example".into(),
        create_account: true,
        ..Default::default()
    };
    let registered = h.app.register_patient(&pharmacist, &input).await.unwrap();
    assert_eq!(registered.invited.as_ref().map(|e| e.as_str()), Some("jo.bloggs@demo.example"));
    let again = h
        .app
        .register_patient(
            &pharmacist,
            &repeatrx_app::patients::RegisterPatientInput {
                email: String::new(),
                create_account: false,
                ..input.clone()
            },
        )
        .await;
    assert!(matches!(&again, Err(AppError::Conflict(m)) if m.contains("NHS number")), "{again:?}");
    let other = actor(&h.app, "hilltop.manager@demo.example").await;
    let elsewhere = h
        .app
        .register_patient(
            &other,
            &repeatrx_app::patients::RegisterPatientInput {
                email: String::new(),
                create_account: false,
                ..input.clone()
            },
        )
        .await;
    assert!(elsewhere.is_ok(), "another pharmacy may hold its own record: {elsewhere:?}");
    // The register button pressed twice: both requests in flight at once make one patient.
    let twice = repeatrx_app::patients::RegisterPatientInput {
        nhs_number: "943 476 5927".into(),
        email: String::new(),
        create_account: false,
        ..input.clone()
    };
    let (a, b) = tokio::join!(h.app.register_patient(&pharmacist, &twice), h.app.register_patient(&pharmacist, &twice));
    assert!(a.is_ok() != b.is_ok(), "one registration: {a:?} {b:?}");
    let refused = if a.is_ok() { b } else { a };
    assert!(matches!(&refused, Err(AppError::Conflict(m)) if m.starts_with("nhs_number:")), "{refused:?}");
    // Nothing signs in until the patient chooses a password from the emailed invitation.
    let guess = SecretString::from(repeatrx_app::staff::INVITED);
    assert!(h.app.sign_in("jo.bloggs@demo.example", guess, SessionKind::Browser, &client()).await.is_err());
    common::accept_invitation(&h.app, "jo.bloggs@demo.example", "kettle orchard violet 3").await;
    let pw = SecretString::from("kettle orchard violet 3");
    assert!(h.app.sign_in("jo.bloggs@demo.example", pw, SessionKind::Browser, &client()).await.is_ok());
}

#[tokio::test]
async fn registration_lists_every_problem_at_once() {
    let h = harness().await;
    let pharmacist = actor(&h.app, "pharmacist@demo.example").await;
    let input = repeatrx_app::patients::RegisterPatientInput {
        given_name: "Jo".into(),
        nhs_number: "1234567890".into(),
        date_of_birth: "2999-01-01".into(),
        create_account: true,
        ..Default::default()
    };
    let Err(AppError::InvalidFields(problems)) = h.app.register_patient(&pharmacist, &input).await else {
        panic!("expected every problem listed")
    };
    let fields: Vec<&str> = problems.iter().filter_map(|p| p.split_once(": ").map(|(f, _)| f)).collect();
    assert_eq!(fields, ["practice", "family_name", "date_of_birth", "nhs_number", "email"], "{problems:?}");
}

#[tokio::test]
async fn the_reminder_scan_runs_at_most_once_per_interval_across_servers() {
    use repeatrx_app::jobs::{REMINDER_EVERY, REMINDER_JOB};
    let h = harness().await;
    let mailer = repeatrx_app::mail::Mailer::new(repeatrx_app::mail::MailTransport::DemoOutbox).unwrap();
    let started = h.clock.now();
    h.app.run_jobs_once(&mailer, "server-a").await.unwrap();
    // The same server ticking again a minute later must not renew the lease.
    h.clock.advance(SignedDuration::from_mins(1));
    h.app.run_jobs_once(&mailer, "server-a").await.unwrap();
    let probe = |at: Timestamp| {
        let store = h.app.store.clone();
        async move { store.claim_job(REMINDER_JOB, "probe", at, at + REMINDER_EVERY).await.unwrap() }
    };
    assert!(!probe(started + SignedDuration::from_mins(4)).await, "the first run's lease still holds");
    assert!(
        probe(started + REMINDER_EVERY + SignedDuration::from_secs(1)).await,
        "the lease was not renewed by re-ticking"
    );
}
