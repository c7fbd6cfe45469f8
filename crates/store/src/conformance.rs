//! The shared test suite every [`Store`] backend must pass. Each check builds its own data with
//! fresh random ids and email addresses, so the checks can share one database, run in any order,
//! be run again on the same database, or be called one at a time.
//!
//! Contract points pinned here beyond the trait's doc comments:
//! - timestamps round-trip at microsecond precision;
//! - a new order is stored at version 1 and every successful `save_order` adds 1;
//! - `pharmacy_open_stage_counts` lists every open stage in [`OrderStage::ALL`] order, zeros included,
//!   and always agrees with the open orders `pharmacy_orders` lists (inserts, saves, erasures);
//! - `record_reminder` is idempotent: a second call for the same due date changes nothing and
//!   does not queue its email;
//! - an `OrderFilter` with `patients: Some(vec![])` matches no order.
//!
//! This is test-kit code: it panics (through `assert!`) on the first broken expectation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::records::*;
use crate::{Store, StoreError};
use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp, ToSpan};
use repeatrx_domain::access::Role;
use repeatrx_domain::audit::AuditRecord;
use repeatrx_domain::catalogue::Catalogue;
use repeatrx_domain::erasure::ErasureBy;
use repeatrx_domain::ids::*;
use repeatrx_domain::order::{By, Decision, ItemEvent, NewOrder, Order, OrderStage, RejectionCode, Transition};
use repeatrx_domain::patient::{DateOfBirth, Fulfilment, NhsNumber, Patient};
use repeatrx_domain::repeat::{RepeatItem, RepeatTerms, RepeatTermsInput};
use repeatrx_domain::security::{LockState, SecurityEventKind, SessionStage};
use repeatrx_domain::text::{Email, PersonName};
use std::collections::HashSet;

/// Runs every check, one after the other.
pub async fn run_all(store: &dyn Store) {
    health(store).await;
    meta_round_trip(store).await;
    pharmacy_and_manager_are_inserted_together(store).await;
    practice_with_and_without_manager(store).await;
    users_are_found_by_email_case_insensitively(store).await;
    sessions_lifecycle(store).await;
    session_account_is_read_whole(store).await;
    sessions_listed_rotated_and_ended_but_one(store).await;
    email_change_and_account_lists(store).await;
    account_security_counts_and_locks(store).await;
    totp_enrolment_and_recovery_codes(store).await;
    account_tokens_are_single_use(store).await;
    invitations_roles_and_suspension(store).await;
    break_glass_grants(store).await;
    address_failures_are_counted_per_window(store).await;
    security_events_newest_first(store).await;
    audit_entries_form_one_chain(store).await;
    audit_search_by_organisation_and_criteria(store).await;
    patient_and_account_are_inserted_together(store).await;
    a_pharmacy_registers_an_nhs_number_once(store).await;
    patient_update(store).await;
    erasure_deletes_the_patient_and_everything_of_theirs(store).await;
    a_leaving_pharmacy_locks_its_staff_and_its_accounts_go_when_it_has_left(store).await;
    search_patients_by_whole_name(store).await;
    search_patients_by_dob_nhs_and_combination(store).await;
    search_patients_is_confined_to_the_pharmacy(store).await;
    repeat_items_round_trip(store).await;
    a_stop_and_an_issue_made_from_one_reading_both_stand(store).await;
    listed_orders_come_with_their_patients_as_they_are_now(store).await;
    repeat_items_are_held_until_the_order_finishes(store).await;
    order_round_trip(store).await;
    orders_written_at_once_each_stand_or_fail_alone(store).await;
    save_order_with_a_stale_version_changes_nothing(store).await;
    save_order_bumps_version_and_appends_transitions(store).await;
    orders_of_patient_newest_first(store).await;
    finished_orders_are_purged_with_their_history(store).await;
    writes_that_can_make_history_purgeable_mark_the_patient_due(store).await;
    one_settlement_treats_each_patient_as_the_job_decided(store).await;
    pharmacy_orders_filters_and_pages(store).await;
    pharmacy_open_stage_counts(store).await;
    practice_orders(store).await;
    outbox_claim_and_lease(store).await;
    outbox_sent_and_failed(store).await;
    finished_emails_are_purged_and_pending_ones_stay(store).await;
    recent_emails_newest_first(store).await;
    claim_job_is_exclusive(store).await;
    reminders_needing_and_recorded(store).await;
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// Now, at the microsecond precision that stores keep.
pub fn now() -> Timestamp {
    micros(Timestamp::now())
}

fn micros(ts: Timestamp) -> Timestamp {
    Timestamp::from_microsecond(ts.as_microsecond()).unwrap()
}

fn secs(n: i64) -> SignedDuration {
    SignedDuration::from_secs(n)
}

fn date(s: &str) -> Date {
    s.parse().unwrap()
}

/// A short random tag that keeps names and addresses unique between checks and runs.
fn tag() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

fn random_u32() -> u32 {
    (uuid::Uuid::new_v4().as_u128() & 0xffff_ffff) as u32
}

fn test_email(prefix: &str) -> Email {
    Email::parse(&format!("{prefix}.{}@example.org", tag())).unwrap()
}

fn nhs_number() -> NhsNumber {
    loop {
        if let Some(n) = NhsNumber::from_prefix(random_u32()) {
            return n;
        }
    }
}

fn new_pharmacy() -> Pharmacy {
    Pharmacy {
        id: PharmacyId::new(),
        name: format!("Pharmacy {}", tag()),
        ods_code: "FA123".into(),
        address: "1 High Street, Town".into(),
        email: Some(test_email("pharmacy")),
        created_at: now(),
    }
}

fn new_practice() -> Practice {
    Practice {
        id: PracticeId::new(),
        name: format!("Surgery {}", tag()),
        ods_code: "B81001".into(),
        address: "2 Low Road, Town".into(),
        email: None,
        on_repeatrx: true,
        created_at: now(),
    }
}

fn account(
    role: Role,
    pharmacy: Option<PharmacyId>,
    practice: Option<PracticeId>,
    patient: Option<PatientId>,
) -> UserAccount {
    UserAccount {
        id: UserId::new(),
        email: test_email(role.as_str()),
        display_name: format!("{} {}", role.label(), tag()),
        role,
        pharmacy_id: pharmacy,
        practice_id: practice,
        patient_id: patient,
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        active: true,
        created_at: now(),
    }
}

fn new_patient(pharmacy: &Pharmacy, practice: &Practice, given: &str, family: &str, dob: &str) -> Patient {
    Patient {
        id: PatientId::new(),
        pharmacy_id: pharmacy.id,
        practice_id: practice.id,
        given_name: PersonName::parse("given_name", given).unwrap(),
        family_name: PersonName::parse("family_name", family).unwrap(),
        date_of_birth: DateOfBirth::new(date(dob), date("2026-01-01")).unwrap(),
        nhs_number: nhs_number(),
        email: Some(test_email("patient")),
        phone: Some("07700 900123".into()),
        address: Some("3 Mill Lane\nTown".into()),
    }
}

fn terms(drug: &str) -> RepeatTerms {
    RepeatTerms::new(
        &RepeatTermsInput {
            medicine_code: None,
            drug_name: drug.into(),
            strength: "20mg".into(),
            form: "tablets".into(),
            quantity: 28,
            directions: "One at night".into(),
            cycle_days: 28,
            issues: 6,
            review_date: "2026-12-01".into(),
        },
        date("2026-01-01"),
    )
    .unwrap()
}

/// A pharmacy with its manager, stored.
pub struct PharmacySetup {
    pub pharmacy: Pharmacy,
    pub manager: UserAccount,
}

pub async fn session_account_is_read_whole(store: &dyn Store) {
    let w = world(store).await;
    let t = now();
    let session = |user: UserId| SessionRecord {
        token_hash: format!("{}{}", tag(), tag()),
        user_id: user,
        kind: SessionKind::Browser,
        csrf_token: tag(),
        created_at: t,
        last_seen_at: t + secs(5),
        expires_at: t + secs(3600),
        user_agent: "Conformance/1.0".into(),
        stage: SessionStage::Enrol,
        address: "127.0.0.2".into(),
    };
    let (patient, staff) = (session(w.pa.user.id), session(w.ph.manager.id));
    store.insert_session(&patient).await.unwrap();
    store.insert_session(&staff).await.unwrap();

    let found = store.session_account(&patient.token_hash).await.unwrap().expect("the patient's session");
    assert_eq!(found.session, patient);
    assert_eq!(found.user, w.pa.user, "the account, its sealed email opened");
    assert_eq!(found.patient_orgs, Some((w.ph.pharmacy.id, w.pr.practice.id)));
    let found = store.session_account(&staff.token_hash).await.unwrap().expect("the manager's session");
    assert_eq!((found.session, found.user, found.patient_orgs), (staff, w.ph.manager.clone(), None));
    assert!(store.session_account("no-such-token").await.unwrap().is_none());

    // Where a patient belongs is read from the patient record, which a move changes.
    let (ph2, pr2) = (setup_pharmacy(store).await, setup_practice(store).await);
    let moved = Patient { pharmacy_id: ph2.pharmacy.id, practice_id: pr2.practice.id, ..w.pa.patient.clone() };
    store.update_patient(&moved).await.unwrap();
    let found = store.session_account(&patient.token_hash).await.unwrap().expect("still signed in");
    assert_eq!(found.patient_orgs, Some((ph2.pharmacy.id, pr2.practice.id)));
}

async fn setup_pharmacy(store: &dyn Store) -> PharmacySetup {
    let pharmacy = new_pharmacy();
    let manager = account(Role::PharmacyManager, Some(pharmacy.id), None, None);
    store.insert_pharmacy(&pharmacy, &manager).await.unwrap();
    PharmacySetup { pharmacy, manager }
}

/// A practice with a prescriber as its first user, stored.
pub struct PracticeSetup {
    pub practice: Practice,
    pub prescriber: UserAccount,
}

async fn setup_practice(store: &dyn Store) -> PracticeSetup {
    let practice = new_practice();
    let prescriber = account(Role::Prescriber, None, Some(practice.id), None);
    store.insert_practice(&practice, Some(&prescriber)).await.unwrap();
    PracticeSetup { practice, prescriber }
}

/// A patient with a sign-in account and repeat items, stored.
pub struct PatientSetup {
    pub patient: Patient,
    pub user: UserAccount,
    pub items: Vec<RepeatItem>,
}

async fn setup_patient(store: &dyn Store, ph: &PharmacySetup, pr: &PracticeSetup, items: usize) -> PatientSetup {
    let patient = new_patient(&ph.pharmacy, &pr.practice, "Ann", &format!("Jones{}", tag()), "1970-05-01");
    let user = account(Role::Patient, None, None, Some(patient.id));
    store.insert_patient(&patient, Some(&user)).await.unwrap();
    let mut list = Vec::new();
    for n in 0..items {
        let item = RepeatItem::new(patient.id, terms(&format!("Drug{n}")));
        store.insert_repeat_item(&item).await.unwrap();
        list.push(item);
    }
    PatientSetup { patient, user, items: list }
}

/// Everything an order needs: pharmacy, practice, patient with two repeat items.
pub struct World {
    pub ph: PharmacySetup,
    pub pr: PracticeSetup,
    pub pa: PatientSetup,
}

pub async fn world(store: &dyn Store) -> World {
    let ph = setup_pharmacy(store).await;
    let pr = setup_practice(store).await;
    let pa = setup_patient(store, &ph, &pr, 2).await;
    World { ph, pr, pa }
}

fn by(user: &UserAccount, at: Timestamp) -> By {
    By { user: user.id, role: user.role, at }
}

fn submit(pa: &PatientSetup, items: &[RepeatItem], at: Timestamp) -> (Order, Transition) {
    let new = NewOrder {
        patient_id: pa.patient.id,
        pharmacy_id: pa.patient.pharmacy_id,
        practice_id: pa.patient.practice_id,
        fulfilment: Fulfilment::Collection,
        note: None,
        on_behalf: false,
        items: items.iter().map(|i| (i.id, i.terms.description())).collect(),
    };
    Order::submit(new, by(&pa.user, at)).unwrap()
}

/// Submits and stores an order of all the patient's items at `at`; or, while any of them is on
/// an open order (the store refuses a line on two), of fresh lines with the same terms, added to
/// the patient's list first.
async fn place(store: &dyn Store, pa: &PatientSetup, at: Timestamp) -> Order {
    let (_, lines) = store.patient_with_lines_held(pa.patient.id, WhichLines::All).await.unwrap().unwrap();
    let free = pa.items.iter().all(|item| lines.iter().any(|(line, held)| line.id == item.id && !held));
    let mut items = pa.items.clone();
    if !free {
        for item in &mut items {
            *item = RepeatItem::new(pa.patient.id, item.terms.clone());
            store.insert_repeat_item(item).await.unwrap();
        }
    }
    let (order, t) = submit(pa, &items, at);
    store.insert_order(&order, &[t], &[]).await.unwrap();
    order
}

/// Accepts a stored order (one save).
async fn accept(store: &dyn Store, order: &mut Order, actor: &UserAccount) {
    let version = store.order(order.id).await.unwrap().unwrap().version;
    let t = order.accept(by(actor, order.created_at + secs(1))).unwrap();
    store.save_order(order, version, &t, &[], &[]).await.unwrap();
}

/// Cancels a stored order (one save).
async fn cancel(store: &dyn Store, order: &mut Order, actor: &UserAccount) {
    let version = store.order(order.id).await.unwrap().unwrap().version;
    let t = order.cancel(by(actor, order.created_at + secs(1)), Some("changed my mind".into())).unwrap();
    store.save_order(order, version, &t, &[], &[]).await.unwrap();
}

/// Finds an email by id among every stored email.
async fn email_by_id(store: &dyn Store, id: EmailId) -> Option<OutgoingEmail> {
    store.recent_emails(1_000_000).await.unwrap().into_iter().find(|e| e.id == id)
}

fn ids<T, I: Eq + std::hash::Hash + Copy>(items: &[T], id: impl Fn(&T) -> I) -> Vec<I> {
    items.iter().map(id).collect()
}

fn orders_of(listed: Vec<ListedOrder>) -> Vec<Order> {
    listed.into_iter().map(|l| l.order).collect()
}

fn is_conflict<T: std::fmt::Debug>(r: Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::Conflict(_)))
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

pub async fn health(store: &dyn Store) {
    store.health().await.unwrap();
}

pub async fn meta_round_trip(store: &dyn Store) {
    let key = format!("conformance.{}", tag());
    assert_eq!(store.get_meta(&key).await.unwrap(), None);
    store.set_meta(&key, "one").await.unwrap();
    assert_eq!(store.get_meta(&key).await.unwrap().as_deref(), Some("one"));
    store.set_meta(&key, "two ✓").await.unwrap();
    assert_eq!(store.get_meta(&key).await.unwrap().as_deref(), Some("two ✓"));
}

pub async fn pharmacy_and_manager_are_inserted_together(store: &dyn Store) {
    let ph = setup_pharmacy(store).await;
    assert_eq!(store.pharmacy(ph.pharmacy.id).await.unwrap(), Some(ph.pharmacy.clone()));
    assert_eq!(store.user(ph.manager.id).await.unwrap(), Some(ph.manager.clone()));
    assert!(store.list_pharmacies().await.unwrap().contains(&ph.pharmacy));

    // A second pharmacy whose manager's email is taken (written in capitals): nothing is stored.
    let second = Pharmacy { email: None, ..new_pharmacy() };
    let mut manager = account(Role::PharmacyManager, Some(second.id), None, None);
    manager.email = Email::parse(&ph.manager.email.as_str().to_uppercase()).unwrap();
    let result = store.insert_pharmacy(&second, &manager).await;
    assert!(is_conflict(result), "a taken manager email must be a conflict");
    assert_eq!(store.pharmacy(second.id).await.unwrap(), None, "the pharmacy must not be half-inserted");
    assert_eq!(store.user(manager.id).await.unwrap(), None);
    assert!(!store.list_pharmacies().await.unwrap().iter().any(|p| p.id == second.id));

    // The same pharmacy id twice is a conflict too.
    let again = account(Role::PharmacyManager, Some(ph.pharmacy.id), None, None);
    assert!(is_conflict(store.insert_pharmacy(&ph.pharmacy, &again).await));
    assert_eq!(store.user(again.id).await.unwrap(), None);
}

pub async fn practice_with_and_without_manager(store: &dyn Store) {
    let pr = setup_practice(store).await;
    assert_eq!(store.practice(pr.practice.id).await.unwrap(), Some(pr.practice.clone()));
    assert_eq!(store.user(pr.prescriber.id).await.unwrap(), Some(pr.prescriber.clone()));

    let lone = Practice { on_repeatrx: false, email: Some(test_email("practice")), ..new_practice() };
    store.insert_practice(&lone, None).await.unwrap();
    assert_eq!(store.practice(lone.id).await.unwrap(), Some(lone.clone()));
    let all = store.list_practices().await.unwrap();
    assert!(all.contains(&pr.practice) && all.contains(&lone));

    let clash = new_practice();
    let mut manager = account(Role::PracticeManager, None, Some(clash.id), None);
    manager.email = pr.prescriber.email.clone();
    assert!(is_conflict(store.insert_practice(&clash, Some(&manager)).await));
    assert_eq!(store.practice(clash.id).await.unwrap(), None, "the practice must not be half-inserted");
    assert_eq!(store.practice(PracticeId::new()).await.unwrap(), None);
}

pub async fn users_are_found_by_email_case_insensitively(store: &dyn Store) {
    let ph = setup_pharmacy(store).await;
    let mut user = account(Role::Pharmacist, Some(ph.pharmacy.id), None, None);
    user.email = Email::parse(&format!("Mixed.Case.{}@Example.ORG", tag())).unwrap();
    user.active = false;
    store.insert_user(&user).await.unwrap();
    let shouted = Email::parse(&user.email.as_str().to_uppercase()).unwrap();
    assert_eq!(store.user_by_email(&shouted).await.unwrap(), Some(user.clone()));
    assert_eq!(store.user(user.id).await.unwrap(), Some(user.clone()));
    assert_eq!(store.user_by_email(&test_email("nobody")).await.unwrap(), None);
    assert_eq!(store.user(UserId::new()).await.unwrap(), None);

    let mut twin = account(Role::Dispenser, Some(ph.pharmacy.id), None, None);
    twin.email = shouted;
    let err = store.insert_user(&twin).await;
    assert!(is_conflict(err), "an email that already has an account must be a conflict");
    assert_eq!(store.user(twin.id).await.unwrap(), None);

    store.set_password_hash(user.id, "$argon2id$new").await.unwrap();
    assert_eq!(store.user(user.id).await.unwrap().unwrap().password_hash, "$argon2id$new");
}

pub async fn sessions_lifecycle(store: &dyn Store) {
    let ph = setup_pharmacy(store).await;
    let other = account(Role::Dispenser, Some(ph.pharmacy.id), None, None);
    store.insert_user(&other).await.unwrap();
    let t = now();
    let session = |user: UserId, kind: SessionKind| SessionRecord {
        token_hash: format!("{}{}", tag(), tag()),
        user_id: user,
        kind,
        csrf_token: tag(),
        created_at: t,
        last_seen_at: t,
        expires_at: t + secs(3600),
        user_agent: "Conformance/1.0".into(),
        stage: SessionStage::Full,
        address: "127.0.0.1".into(),
    };
    let a = session(ph.manager.id, SessionKind::Browser);
    let b = session(ph.manager.id, SessionKind::Api);
    let c = session(other.id, SessionKind::Browser);
    for s in [&a, &b, &c] {
        store.insert_session(s).await.unwrap();
    }
    assert_eq!(store.session(&a.token_hash).await.unwrap(), Some(a.clone()));
    assert_eq!(store.session(&b.token_hash).await.unwrap(), Some(b.clone()));
    assert_eq!(store.session("no-such-token").await.unwrap(), None);

    let later = t + secs(60);
    store.touch_session(&a.token_hash, later).await.unwrap();
    let touched = store.session(&a.token_hash).await.unwrap().unwrap();
    assert_eq!(touched, SessionRecord { last_seen_at: later, ..a.clone() });

    store.delete_session(&a.token_hash).await.unwrap();
    assert_eq!(store.session(&a.token_hash).await.unwrap(), None);
    store.delete_session(&a.token_hash).await.unwrap();

    store.insert_session(&session(ph.manager.id, SessionKind::Browser)).await.unwrap();
    assert_eq!(store.delete_sessions_of_user(ph.manager.id).await.unwrap(), 2);
    assert_eq!(store.session(&b.token_hash).await.unwrap(), None);
    assert_eq!(store.session(&c.token_hash).await.unwrap(), Some(c.clone()), "other users' sessions stay");
    assert_eq!(store.delete_sessions_of_user(ph.manager.id).await.unwrap(), 0);
}

pub async fn patient_and_account_are_inserted_together(store: &dyn Store) {
    let ph = setup_pharmacy(store).await;
    let pr = setup_practice(store).await;
    let pa = setup_patient(store, &ph, &pr, 0).await;
    assert_eq!(store.patient(pa.patient.id).await.unwrap(), Some(pa.patient.clone()));
    assert_eq!(store.user_for_patient(pa.patient.id).await.unwrap(), Some(pa.user.clone()));

    // No account: a patient who does not use the web.
    let offline = Patient {
        email: None,
        phone: None,
        address: None,
        ..new_patient(&ph.pharmacy, &pr.practice, "Bob", "Offline", "1950-02-28")
    };
    store.insert_patient(&offline, None).await.unwrap();
    assert_eq!(store.patient(offline.id).await.unwrap(), Some(offline.clone()));
    assert_eq!(store.user_for_patient(offline.id).await.unwrap(), None);

    // An account whose email is taken: neither the patient nor the account is stored.
    let clash = new_patient(&ph.pharmacy, &pr.practice, "Cat", "Clash", "1980-01-01");
    let mut clash_user = account(Role::Patient, None, None, Some(clash.id));
    clash_user.email = pa.user.email.clone();
    assert!(is_conflict(store.insert_patient(&clash, Some(&clash_user)).await));
    assert_eq!(store.patient(clash.id).await.unwrap(), None, "the patient must not be half-inserted");
    assert_eq!(store.user(clash_user.id).await.unwrap(), None);
    assert_eq!(store.patient(PatientId::new()).await.unwrap(), None);
}

/// The check is made in the write: of two registrations of one NHS number sent at once, one is
/// stored; another pharmacy keeps its own record of the patient.
pub async fn a_pharmacy_registers_an_nhs_number_once(store: &dyn Store) {
    let w = world(store).await;
    let elsewhere = setup_pharmacy(store).await;
    let again = Patient { id: PatientId::new(), email: None, ..w.pa.patient.clone() };
    let account = account(Role::Patient, None, None, Some(again.id));
    let refused = store.insert_patient(&again, Some(&account)).await;
    assert!(matches!(refused, Err(StoreError::NhsNumberRegistered)), "{refused:?}");
    assert_eq!(store.patient(again.id).await.unwrap(), None);
    assert_eq!(store.user(account.id).await.unwrap(), None, "nor its account");
    let theirs = Patient { id: PatientId::new(), pharmacy_id: elsewhere.pharmacy.id, ..again.clone() };
    store.insert_patient(&theirs, None).await.unwrap();

    let first = new_patient(&w.ph.pharmacy, &w.pr.practice, "Twice", &format!("Sent{}", tag()), "1980-01-01");
    let second = Patient { id: PatientId::new(), ..first.clone() };
    let (a, b) = futures::future::join(store.insert_patient(&first, None), store.insert_patient(&second, None)).await;
    assert!(a.is_ok() != b.is_ok(), "one of the two is stored: {a:?} {b:?}");
    let found = store
        .search_patients(
            w.ph.pharmacy.id,
            &PatientQuery { nhs_number: Some(first.nhs_number.as_str().to_string()), ..Default::default() },
            10,
        )
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
}

pub async fn patient_update(store: &dyn Store) {
    let ph = setup_pharmacy(store).await;
    let pr = setup_practice(store).await;
    let pr2 = setup_practice(store).await;
    let pa = setup_patient(store, &ph, &pr, 0).await;
    let family = format!("Renamed{}", tag());
    let changed = Patient {
        given_name: PersonName::parse("given_name", "Annabel").unwrap(),
        family_name: PersonName::parse("family_name", &family).unwrap(),
        practice_id: pr2.practice.id,
        date_of_birth: DateOfBirth::new(date("1971-06-02"), date("2026-01-01")).unwrap(),
        email: None,
        phone: Some("+44 7700 900456".into()),
        address: None,
        ..pa.patient.clone()
    };
    store.update_patient(&changed).await.unwrap();
    assert_eq!(store.patient(pa.patient.id).await.unwrap(), Some(changed.clone()));
    let q = PatientQuery { name: Some(family.to_lowercase()), ..Default::default() };
    assert_eq!(store.search_patients(ph.pharmacy.id, &q, 10).await.unwrap(), vec![changed]);
}

/// P13: erasure deletes the patient's record, lines, orders, account and queued emails to them
/// in one go, keeps who was erased and when (the id only), and touches no other patient.
pub async fn erasure_deletes_the_patient_and_everything_of_theirs(store: &dyn Store) {
    let w = world(store).await;
    let other = world(store).await;
    let pa = &w.pa;
    let mut order = place(store, pa, now()).await;
    accept(store, &mut order, &w.ph.manager).await;
    place(store, &other.pa, now()).await;
    let to_patient = OutgoingEmail::new(pa.user.email.clone(), "Your order", "Ready", now());
    let to_someone_else = OutgoingEmail::new(other.pa.user.email.clone(), "Your order", "Ready", now());
    store.enqueue_emails(&[to_patient.clone(), to_someone_else.clone()]).await.unwrap();
    store.insert_session(&session_for(pa.user.id, now(), SessionStage::Full)).await.unwrap();
    let audit = store
        .append_audit(&AuditRecord {
            at: now(),
            actor: Some(w.ph.manager.id),
            actor_role: Some(Role::PharmacyManager),
            organisation: format!("pharmacy:{}", w.ph.pharmacy.id),
            action: "patient.viewed".into(),
            patient: Some(pa.patient.id),
            address: "192.0.2.7".into(),
            purpose: None,
            detail: String::new(),
        })
        .await
        .unwrap();
    let at = now();
    assert_eq!(store.erased_at(pa.patient.id).await.unwrap(), None);

    let addresses = [pa.user.email.clone()];
    assert!(store.erase_patient(pa.patient.id, ErasureBy::Patient, at, &addresses).await.unwrap());
    assert_eq!(store.patient(pa.patient.id).await.unwrap(), None);
    assert!(store.repeat_items(pa.patient.id).await.unwrap().is_empty());
    assert!(store.orders_of_patient(pa.patient.id).await.unwrap().is_empty());
    assert_eq!(store.order(order.id).await.unwrap(), None);
    assert!(store.order_transitions(order.id).await.unwrap().is_empty());
    assert_eq!(store.user_for_patient(pa.patient.id).await.unwrap(), None);
    assert_eq!(store.user(pa.user.id).await.unwrap(), None);
    assert_eq!(store.user_by_email(&pa.user.email).await.unwrap(), None);
    assert!(store.sessions_of_user(pa.user.id, now()).await.unwrap().is_empty());
    assert_eq!(email_by_id(store, to_patient.id).await, None, "queued email to the patient is gone");
    assert!(email_by_id(store, to_someone_else.id).await.is_some());
    assert_eq!(store.erased_at(pa.patient.id).await.unwrap(), Some(at));
    let kept = store.audit_entries_for_patient(pa.patient.id, 10).await.unwrap();
    assert!(kept.iter().any(|e| e.seq == audit.seq), "the trail keeps the pseudonymous id");

    // Again (a ledger re-applied after a restore): nothing left, nothing changed.
    assert!(!store.erase_patient(pa.patient.id, ErasureBy::Ledger, now(), &[]).await.unwrap());
    assert_eq!(store.erased_at(pa.patient.id).await.unwrap(), Some(at), "the first erasure's record stays");
    // Everyone else is untouched.
    assert_eq!(store.patient(other.pa.patient.id).await.unwrap(), Some(other.pa.patient.clone()));
    assert_eq!(store.repeat_items(other.pa.patient.id).await.unwrap().len(), 2);
    assert_eq!(store.orders_of_patient(other.pa.patient.id).await.unwrap().len(), 1);
    assert!(store.user(w.ph.manager.id).await.unwrap().is_some(), "staff who acted on the orders stay");
}

/// P12: marking a pharmacy as leaving suspends its staff at once (sessions ended) and queues the
/// patients' emails in the same transaction; it takes no new orders from then; finishing deletes
/// its staff accounts.
pub async fn a_leaving_pharmacy_locks_its_staff_and_its_accounts_go_when_it_has_left(store: &dyn Store) {
    let w = world(store).await;
    let other = world(store).await;
    let pharmacist = account(Role::Pharmacist, Some(w.ph.pharmacy.id), None, None);
    store.insert_user(&pharmacist).await.unwrap();
    // A patient's account may carry their pharmacy too: it is not a staff account.
    let patient = new_patient(&w.ph.pharmacy, &w.pr.practice, "Pat", &format!("Held{}", tag()), "1950-01-01");
    let patient_account = account(Role::Patient, Some(w.ph.pharmacy.id), None, Some(patient.id));
    store.insert_patient(&patient, Some(&patient_account)).await.unwrap();
    store.insert_session(&session_for(pharmacist.id, now(), SessionStage::Full)).await.unwrap();
    let notice = OutgoingEmail::new(w.pa.user.email.clone(), "Your pharmacy is leaving RepeatRx", "Body", now());
    let departure = PharmacyDeparture {
        pharmacy_id: w.ph.pharmacy.id,
        marked_at: now(),
        marked_by: other.ph.manager.id,
        delete_after: now() + secs(7 * 24 * 3600),
        deleted_at: None,
    };
    assert!(store.mark_pharmacy_leaving(&departure, std::slice::from_ref(&notice)).await.unwrap());
    assert!(!store.user(pharmacist.id).await.unwrap().unwrap().active, "staff are locked out at once");
    assert!(!store.user(w.ph.manager.id).await.unwrap().unwrap().active);
    assert!(store.sessions_of_user(pharmacist.id, now()).await.unwrap().is_empty());
    assert!(store.user(w.pa.user.id).await.unwrap().unwrap().active, "patients can still sign in to take their data");
    assert!(
        store.user(patient_account.id).await.unwrap().unwrap().active,
        "patients can still sign in to take their data"
    );
    assert!(store.user(other.ph.manager.id).await.unwrap().unwrap().active, "other pharmacies are untouched");
    assert_eq!(email_by_id(store, notice.id).await.map(|e| e.subject), Some(notice.subject.clone()));
    let again = PharmacyDeparture { delete_after: now(), ..departure.clone() };
    assert!(!store.mark_pharmacy_leaving(&again, &[]).await.unwrap(), "marked once");
    let listed = store.pharmacy_departures().await.unwrap();
    assert!(listed.contains(&departure), "the first marking stands: {listed:?}");
    assert_eq!(store.pharmacy_departure(w.ph.pharmacy.id).await.unwrap(), Some(departure.clone()));
    assert_eq!(store.pharmacy_departure(other.ph.pharmacy.id).await.unwrap(), None);

    // No new order reaches the leaving pharmacy, whether it is written alone or in one group
    // commit with another pharmacy's.
    let (mine, mine_t) = submit(&w.pa, &w.pa.items, now());
    let (theirs, theirs_t) = submit(&other.pa, &other.pa.items, now());
    let writes = [(&mine, &mine_t), (&theirs, &theirs_t)]
        .map(|(o, t)| async move { store.insert_order(o, std::slice::from_ref(t), &[]).await });
    let outcomes = futures::future::join_all(writes).await;
    assert!(matches!(outcomes[0], Err(StoreError::PharmacyLeaving)), "{outcomes:?}");
    assert!(outcomes[1].is_ok(), "{outcomes:?}");
    assert!(store.order(mine.id).await.unwrap().is_none());
    assert!(store.order(theirs.id).await.unwrap().is_some());
    assert_eq!(store.pharmacy_open_stage_counts(w.ph.pharmacy.id).await.unwrap()[0], (OrderStage::Submitted, 0));
    let (alone, alone_t) = submit(&w.pa, &w.pa.items, now());
    assert!(matches!(store.insert_order(&alone, &[alone_t], &[]).await, Err(StoreError::PharmacyLeaving)));

    store.erase_patient(w.pa.patient.id, ErasureBy::PharmacyLeft, now(), &[]).await.unwrap();
    store.erase_patient(patient.id, ErasureBy::PharmacyLeft, now(), &[]).await.unwrap();
    let done_at = now();
    assert_eq!(store.finish_pharmacy_departure(w.ph.pharmacy.id, done_at).await.unwrap(), 2);
    assert_eq!(store.user(pharmacist.id).await.unwrap(), None);
    assert_eq!(store.user(w.ph.manager.id).await.unwrap(), None);
    let done = store.pharmacy_departures().await.unwrap().into_iter().find(|d| d.pharmacy_id == w.ph.pharmacy.id);
    assert_eq!(done.and_then(|d| d.deleted_at), Some(done_at));
    assert!(store.pharmacy(w.ph.pharmacy.id).await.unwrap().is_some(), "the organisation's record stays");
    assert!(store.user(other.ph.manager.id).await.unwrap().is_some());
}

/// Names are sealed (P2): a search compares blind indexes of whole, case-folded names.
pub async fn search_patients_by_whole_name(store: &dyn Store) {
    let ph = setup_pharmacy(store).await;
    let pr = setup_practice(store).await;
    let add = |given: &str, family: &str| new_patient(&ph.pharmacy, &pr.practice, given, family, "1960-03-04");
    let smith = add("Ann", "Smith");
    let brown = add("anne", "Brown");
    let annis = add("Bob", "Annis");
    let joann = add("Joann", "Carter");
    let percy = add("Per%cy", "Under_wood");
    let perky = add("Perky", "Unders");
    let zoe = add("Zoë", "Ünal");
    let dyke = add("Anne-Marie", "van Dyke");
    let all = [&smith, &brown, &annis, &joann, &percy, &perky, &zoe, &dyke];
    for p in all {
        store.insert_patient(p, None).await.unwrap();
    }
    let search = |name: &str| {
        let q = PatientQuery { name: Some(name.to_string()), ..Default::default() };
        let pharmacy = ph.pharmacy.id;
        async move { store.search_patients(pharmacy, &q, 50).await.unwrap() }
    };
    let names = |found: Vec<Patient>| found.into_iter().map(|p| p.full_name()).collect::<Vec<_>>();

    // A whole given or family name, any case, sorted by family then given name. Names are sealed,
    // so only whole (case-folded) names can be compared: a part of a name finds nobody.
    assert_eq!(names(search("ann").await), ["Ann Smith"]);
    assert_eq!(names(search("  ANNE ").await), ["anne Brown", "Anne-Marie van Dyke"]);
    assert_eq!(names(search("annis").await), ["Bob Annis"]);
    assert!(search("smi").await.is_empty(), "part of a name matches nothing");
    assert!(search("oann").await.is_empty());
    // What would be wildcards elsewhere are plain characters.
    assert_eq!(names(search("per%cy").await), ["Per%cy Under_wood"]);
    assert_eq!(names(search("under_wood").await), ["Per%cy Under_wood"]);
    assert!(search("%").await.is_empty());
    assert!(search("_").await.is_empty());
    assert!(search("\\").await.is_empty());
    // A full name, in either order: every word is the given or the family name.
    assert_eq!(names(search("Ann Smith").await), ["Ann Smith"]);
    assert_eq!(names(search("smith  ann").await), ["Ann Smith"]);
    assert!(search("ann brown").await.is_empty());
    assert!(search("ann carter").await.is_empty());
    // Non-ASCII names fold too.
    assert_eq!(names(search("zoë").await), ["Zoë Ünal"]);
    assert_eq!(names(search("ÜNAL").await), ["Zoë Ünal"]);
    // Names of several words: any whole word of them.
    assert_eq!(names(search("dyke").await), ["Anne-Marie van Dyke"]);
    assert_eq!(names(search("Van Dyke").await), ["Anne-Marie van Dyke"]);
    assert_eq!(names(search("marie dyke").await), ["Anne-Marie van Dyke"]);
    assert_eq!(names(search("anne-marie").await), ["Anne-Marie van Dyke"]);
    assert_eq!(names(search("anne").await), ["anne Brown", "Anne-Marie van Dyke"]);

    // No criteria: every patient of the pharmacy, sorted; the limit is respected.
    let everyone = store.search_patients(ph.pharmacy.id, &PatientQuery::default(), 50).await.unwrap();
    assert_eq!(
        names(everyone),
        [
            "Bob Annis",
            "anne Brown",
            "Joann Carter",
            "Ann Smith",
            "Per%cy Under_wood",
            "Perky Unders",
            "Anne-Marie van Dyke",
            "Zoë Ünal"
        ]
    );
    let blank = PatientQuery { name: Some("   ".into()), ..Default::default() };
    assert_eq!(store.search_patients(ph.pharmacy.id, &blank, 50).await.unwrap().len(), all.len());
    assert_eq!(store.search_patients(ph.pharmacy.id, &PatientQuery::default(), 2).await.unwrap().len(), 2);
}

pub async fn search_patients_by_dob_nhs_and_combination(store: &dyn Store) {
    let ph = setup_pharmacy(store).await;
    let pr = setup_practice(store).await;
    let a = new_patient(&ph.pharmacy, &pr.practice, "Ann", "Able", "1970-01-01");
    let b = new_patient(&ph.pharmacy, &pr.practice, "Ann", "Baker", "1980-01-01");
    let c = new_patient(&ph.pharmacy, &pr.practice, "Cid", "Cole", "1970-01-01");
    for p in [&a, &b, &c] {
        store.insert_patient(p, None).await.unwrap();
    }
    let run = |q: PatientQuery| {
        let pharmacy = ph.pharmacy.id;
        async move { store.search_patients(pharmacy, &q, 50).await.unwrap().into_iter().map(|p| p.id).collect::<Vec<_>>() }
    };
    let dob = |s: &str| Some(date(s));
    assert_eq!(run(PatientQuery { date_of_birth: dob("1970-01-01"), ..Default::default() }).await, [a.id, c.id]);
    assert!(run(PatientQuery { date_of_birth: dob("1999-09-09"), ..Default::default() }).await.is_empty());
    assert_eq!(
        run(PatientQuery { nhs_number: Some(b.nhs_number.as_str().into()), ..Default::default() }).await,
        [b.id]
    );
    assert!(run(PatientQuery { nhs_number: Some(nhs_number().as_str().into()), ..Default::default() })
        .await
        .is_empty());
    // All given criteria must match.
    let both = PatientQuery { name: Some("ann".into()), date_of_birth: dob("1970-01-01"), nhs_number: None };
    assert_eq!(run(both).await, [a.id]);
    let all_three = PatientQuery {
        name: Some("ann".into()),
        date_of_birth: dob("1970-01-01"),
        nhs_number: Some(b.nhs_number.as_str().into()),
    };
    assert!(run(all_three).await.is_empty());
    let full = PatientQuery {
        name: Some("COLE".into()),
        date_of_birth: dob("1970-01-01"),
        nhs_number: Some(c.nhs_number.as_str().into()),
    };
    assert_eq!(run(full).await, [c.id]);
}

pub async fn search_patients_is_confined_to_the_pharmacy(store: &dyn Store) {
    let mine = setup_pharmacy(store).await;
    let theirs = setup_pharmacy(store).await;
    let pr = setup_practice(store).await;
    let family = format!("Same{}", tag());
    let own = new_patient(&mine.pharmacy, &pr.practice, "Ann", &family, "1970-01-01");
    let mut foreign = new_patient(&theirs.pharmacy, &pr.practice, "Ann", &family, "1970-01-01");
    foreign.nhs_number = own.nhs_number.clone();
    store.insert_patient(&own, None).await.unwrap();
    store.insert_patient(&foreign, None).await.unwrap();
    for q in [
        PatientQuery::default(),
        PatientQuery { name: Some(family.clone()), ..Default::default() },
        PatientQuery { date_of_birth: Some(date("1970-01-01")), ..Default::default() },
        PatientQuery { nhs_number: Some(own.nhs_number.as_str().into()), ..Default::default() },
    ] {
        let found = store.search_patients(mine.pharmacy.id, &q, 50).await.unwrap();
        assert_eq!(ids(&found, |p| p.id), [own.id], "{q:?}");
    }
    assert!(store.search_patients(PharmacyId::new(), &PatientQuery::default(), 50).await.unwrap().is_empty());
}

pub async fn repeat_items_round_trip(store: &dyn Store) {
    let ph = setup_pharmacy(store).await;
    let pr = setup_practice(store).await;
    let pa = setup_patient(store, &ph, &pr, 5).await;
    let mut expected = pa.items.clone();
    assert_eq!(store.repeat_items(pa.patient.id).await.unwrap(), expected, "in the order they were added");
    assert!(expected.iter().all(|i| i.next_due.is_none()));

    // next_due set, an item stopped, terms changed: all kept, stopped items still listed.
    expected[1].record_issue(date("2026-02-01")).unwrap();
    expected[2].active = false;
    expected[3].terms.quantity = 56;
    expected[3].terms.directions = "Two at night".into();
    for item in &expected[1..4] {
        store.update_repeat_item(item).await.unwrap();
    }
    assert_eq!(store.repeat_items(pa.patient.id).await.unwrap(), expected);
    assert_eq!(store.repeat_item(expected[1].id).await.unwrap(), Some(expected[1].clone()));
    assert_eq!(store.repeat_item(expected[1].id).await.unwrap().unwrap().next_due, Some(date("2026-03-01")));
    assert_eq!(store.repeat_item(RepeatItemId::new()).await.unwrap(), None);

    // A catalogue item keeps its code and controlled-drug schedule.
    let controlled = Catalogue::builtin().all().iter().find(|m| m.schedule.is_controlled());
    if let Some(m) = controlled {
        let input = RepeatTermsInput {
            medicine_code: Some(m.code.clone()),
            quantity: 56,
            directions: "One twice a day".into(),
            cycle_days: 28,
            issues: 3,
            review_date: "2026-06-01".into(),
            ..Default::default()
        };
        let item = RepeatItem::new(pa.patient.id, RepeatTerms::new(&input, date("2026-01-01")).unwrap());
        store.insert_repeat_item(&item).await.unwrap();
        assert_eq!(store.repeat_item(item.id).await.unwrap(), Some(item.clone()));
        expected.push(item);
    }
    assert_eq!(store.repeat_items(pa.patient.id).await.unwrap(), expected);
    assert!(store.repeat_items(PatientId::new()).await.unwrap().is_empty());
}

/// A prescriber approves an item (its line read, an issue recorded on it) while the pharmacy
/// stops the line: neither write undoes the other.
pub async fn a_stop_and_an_issue_made_from_one_reading_both_stand(store: &dyn Store) {
    let w = world(store).await;
    let mut order = place(store, &w.pa, now()).await;
    let mut issued = store.repeat_item(w.pa.items[0].id).await.unwrap().unwrap();
    assert!(store.stop_repeat_item(issued.id).await.unwrap());
    assert!(!store.stop_repeat_item(issued.id).await.unwrap(), "a line is stopped once");
    assert!(!store.stop_repeat_item(RepeatItemId::new()).await.unwrap());
    issued.record_issue(date("2026-03-02")).unwrap();
    let t = order.accept(by(&w.ph.manager, order.created_at + secs(1))).unwrap();
    store.save_order(&order, 1, &t, std::slice::from_ref(&issued), &[]).await.unwrap();
    let line = store.repeat_item(issued.id).await.unwrap().unwrap();
    assert!(!line.active, "the stop stands");
    assert_eq!((line.issues_remaining, line.next_due), (issued.issues_remaining, issued.next_due), "so does the issue");
    assert_eq!(line.terms, w.pa.items[0].terms);
    let other = store.repeat_item(w.pa.items[1].id).await.unwrap().unwrap();
    assert_eq!(other, w.pa.items[1], "the order's other line is untouched");
    // A save can only record issues on its own patient's lines.
    let foreign = setup_patient(store, &w.ph, &w.pr, 1).await;
    let mut theirs = foreign.items[0].clone();
    theirs.record_issue(date("2026-03-02")).unwrap();
    let t = order.send_to_prescriber(by(&w.ph.manager, order.created_at + secs(2))).unwrap();
    assert!(store.save_order(&order, 2, &t, &[theirs], &[]).await.is_err());
    assert_eq!(store.repeat_item(foreign.items[0].id).await.unwrap().as_ref(), Some(&foreign.items[0]));
}

pub async fn order_round_trip(store: &dyn Store) {
    let w = world(store).await;
    let t0 = now();
    let new = NewOrder {
        patient_id: w.pa.patient.id,
        pharmacy_id: w.ph.pharmacy.id,
        practice_id: w.pr.practice.id,
        fulfilment: Fulfilment::Delivery,
        note: Some("Please leave with\nthe neighbour".into()),
        on_behalf: true,
        items: w.pa.items.iter().map(|i| (i.id, format!("{} × 28", i.terms.description()))).collect(),
    };
    let (mut order, first) = Order::submit(new, by(&w.ph.manager, t0)).unwrap();
    let mut transitions = vec![first];
    transitions.extend(order.accept(by(&w.ph.manager, t0 + secs(1))).unwrap());
    transitions.extend(order.send_to_prescriber(by(&w.ph.manager, t0 + secs(2))).unwrap());
    let (i0, i1) = (order.items[0].id, order.items[1].id);
    let change = Decision::Change { note: "28 → 56 tablets".into() };
    transitions.extend(order.decide(i0, change, by(&w.pr.prescriber, t0 + secs(3))).unwrap());
    let reject = Decision::Reject {
        code: RejectionCode::MedicationReviewNeeded,
        note: Some("Due a review".into()),
        next_step: RejectionCode::MedicationReviewNeeded.default_next_step().into(),
    };
    transitions.extend(order.decide(i1, reject, by(&w.pr.prescriber, t0 + secs(3))).unwrap());
    assert_eq!(order.stage, OrderStage::Preparing);

    let email = OutgoingEmail::new(w.pa.patient.email.clone().unwrap(), "Your order", "Body", t0);
    store.insert_order(&order, &transitions, std::slice::from_ref(&email)).await.unwrap();
    let stored = store.order(order.id).await.unwrap().unwrap();
    assert_eq!(stored.order, order);
    assert_eq!(stored.version, 1, "a new order is at version 1");
    assert_eq!(store.order_transitions(order.id).await.unwrap(), transitions);
    assert_eq!(email_by_id(store, email.id).await, Some(email));
    assert_eq!(store.order(OrderId::new()).await.unwrap(), None);
    assert!(store.order_transitions(OrderId::new()).await.unwrap().is_empty());

    // Items come back in their original order, whatever their ids.
    let ph = &w.ph;
    let many = setup_patient(store, ph, &w.pr, 6).await;
    let big = place(store, &many, now()).await;
    let back = store.order(big.id).await.unwrap().unwrap().order;
    assert_eq!(ids(&back.items, |i| i.repeat_item_id), ids(&many.items, |i| i.id));
}

pub async fn finished_orders_are_purged_with_their_history(store: &dyn Store) {
    let w = world(store).await;
    let t = now();
    let mut finished = place(store, &w.pa, t - secs(86_400 * 60)).await;
    cancel(store, &mut finished, &w.pa.user).await;
    let open = place(store, &w.pa, t - secs(86_400 * 50)).await;
    assert!(store.order_transitions(finished.id).await.unwrap().len() >= 2, "submitted, then cancelled");

    // Placing and saving them marked the patient due for the retention job, at once.
    let due = retention_due_of(store, w.pa.patient.id, t).await.expect("a patient with new orders is due");
    assert_eq!(due.due, Timestamp::UNIX_EPOCH);

    // Open orders are never purged, whatever is asked.
    let settled = RetentionSettled { due, purge: vec![finished.id, open.id, OrderId::new()], next: None };
    assert_eq!(store.settle_retention(&[settled]).await.unwrap(), 1);
    assert!(store.order(finished.id).await.unwrap().is_none());
    assert!(store.order_transitions(finished.id).await.unwrap().is_empty(), "its history goes with it");
    assert!(store.order(open.id).await.unwrap().is_some());
    let left: Vec<OrderId> = store.orders_of_patient(w.pa.patient.id).await.unwrap().iter().map(|o| o.id).collect();
    assert_eq!(left, vec![open.id]);
    assert_eq!(store.repeat_items(w.pa.patient.id).await.unwrap().len(), w.pa.items.len(), "repeat lines stay");
    let far = t + secs(86_400 * 400);
    assert_eq!(retention_due_of(store, w.pa.patient.id, far).await, None, "settled with nothing to wait for");
}

/// Two new patients: one with a finished order, one with only an open one (to check how an
/// upgrade marks patients due for the retention job).
pub async fn a_finished_and_an_open_patient(store: &dyn Store) -> (PatientId, PatientId) {
    let w = world(store).await;
    let mut finished = place(store, &w.pa, now() - secs(86_400 * 60)).await;
    cancel(store, &mut finished, &w.pa.user).await;
    let open = setup_patient(store, &w.ph, &w.pr, 1).await;
    place(store, &open, now()).await;
    (w.pa.patient.id, open.patient.id)
}

/// The patient's row among those due for retention at `now`, read page by page as the job does.
pub async fn retention_due_of(store: &dyn Store, patient: PatientId, now: Timestamp) -> Option<RetentionDue> {
    let mut after = None;
    loop {
        let page = store.patients_due_for_retention(now, after.as_ref(), 50).await.unwrap();
        let last = *page.last()?;
        if let Some(found) = page.into_iter().find(|d| d.patient == patient) {
            return Some(found);
        }
        after = Some(last);
    }
}

pub async fn writes_that_can_make_history_purgeable_mark_the_patient_due(store: &dyn Store) {
    let w = world(store).await;
    let pa = w.pa.patient.id;
    let far = now() + secs(86_400 * 400);
    assert_eq!(retention_due_of(store, pa, far).await, None, "no orders, nothing to look at");

    let mut order = place(store, &w.pa, now()).await;
    let mut kept_open = place(store, &w.pa, now() + secs(1)).await;
    let placed = retention_due_of(store, pa, now()).await.expect("a new order marks its patient");

    // Settled with a moment to look again: not due before it, due from it.
    let later = now() + secs(86_400 * 28);
    store.settle_retention(&[RetentionSettled { due: placed, purge: vec![], next: Some(later) }]).await.unwrap();
    assert_eq!(retention_due_of(store, pa, later - secs(1)).await, None);
    let waiting = retention_due_of(store, pa, later).await.expect("due again at the moment set");
    assert_eq!((waiting.due, waiting.marks), (later, placed.marks));

    // A save that leaves its order open and changes no repeat line cannot make any order
    // purgeable: it leaves the mark as it was.
    accept(store, &mut kept_open, &w.ph.manager).await;
    assert_eq!(retention_due_of(store, pa, later).await, Some(waiting), "an accepted order marks nobody");

    // A write while the job is looking: the job's settlement, read before it, does not hide it.
    cancel(store, &mut order, &w.pa.user).await;
    let saved = retention_due_of(store, pa, now()).await.expect("a save that finishes an order marks its patient");
    assert!(saved.marks > waiting.marks);
    store.settle_retention(&[RetentionSettled { due: waiting, purge: vec![], next: None }]).await.unwrap();
    assert_eq!(retention_due_of(store, pa, now()).await, Some(saved), "a stale settlement changes nothing");
    store.settle_retention(&[RetentionSettled { due: saved, purge: vec![], next: None }]).await.unwrap();
    assert_eq!(retention_due_of(store, pa, far).await, None);

    // An open order's save that changes one of its repeat lines (a line's cycle decides when
    // its orders may go).
    let version = store.order(kept_open.id).await.unwrap().unwrap().version;
    store.save_order(&kept_open, version, &[], std::slice::from_ref(&w.pa.items[0]), &[]).await.unwrap();
    let line_saved =
        retention_due_of(store, pa, now()).await.expect("an order's changed repeat line marks its patient");
    store.settle_retention(&[RetentionSettled { due: line_saved, purge: vec![], next: None }]).await.unwrap();

    store.update_repeat_item(&w.pa.items[0]).await.unwrap();
    assert!(retention_due_of(store, pa, now()).await.is_some(), "a changed repeat line marks its patient");

    // Pages follow each other in (due, patient) order, each row once.
    let all = store.patients_due_for_retention(far, None, 100_000).await.unwrap();
    assert!(all.windows(2).all(|p| (p[0].due, p[0].patient) < (p[1].due, p[1].patient)), "{all:?}");
    let rest = store.patients_due_for_retention(far, Some(&all[0]), 100_000).await.unwrap();
    assert_eq!(rest, all[1..]);

    store.erase_patient(pa, ErasureBy::Patient, now(), &[]).await.unwrap();
    assert_eq!(retention_due_of(store, pa, far).await, None, "erasure takes the mark too");
}

pub async fn one_settlement_treats_each_patient_as_the_job_decided(store: &dyn Store) {
    let w = world(store).await;
    let (done, stale) = (setup_patient(store, &w.ph, &w.pr, 1).await, setup_patient(store, &w.ph, &w.pr, 1).await);
    let t = now();
    let setups = [&w.pa, &done, &stale];
    let mut read = Vec::new();
    for setup in setups {
        place(store, setup, t).await;
        read.push(retention_due_of(store, setup.patient.id, t).await.expect("a new order marks its patient"));
    }
    place(store, &stale, t + secs(1)).await;
    let later = t + secs(86_400);
    let far = t + secs(86_400 * 400);
    let decided = [(read[0], Some(later)), (read[1], None), (read[2], None)];
    let settled: Vec<RetentionSettled> =
        decided.iter().map(|(due, next)| RetentionSettled { due: *due, purge: vec![], next: *next }).collect();
    store.settle_retention(&settled).await.unwrap();

    assert_eq!(retention_due_of(store, w.pa.patient.id, later - secs(1)).await, None);
    let again = retention_due_of(store, w.pa.patient.id, later).await.map(|d| (d.due, d.marks));
    assert_eq!(again, Some((later, read[0].marks)), "looked at again when the job said");
    assert_eq!(retention_due_of(store, done.patient.id, far).await, None, "nothing left to look at");
    let marked_since = retention_due_of(store, stale.patient.id, t).await.expect("marked after the job read it");
    assert!(marked_since.marks > read[2].marks, "{marked_since:?}");
}

pub async fn save_order_with_a_stale_version_changes_nothing(store: &dyn Store) {
    let w = world(store).await;
    let mut order = place(store, &w.pa, now()).await;
    accept(store, &mut order, &w.ph.manager).await;
    let current = store.order(order.id).await.unwrap().unwrap();
    assert_eq!(current.version, 2);
    let transitions_before = store.order_transitions(order.id).await.unwrap();
    let items_before = store.repeat_items(w.pa.patient.id).await.unwrap();

    // Someone works from version 1 (before the accept was saved).
    let mut stale = order.clone();
    let t = stale.send_to_prescriber(by(&w.ph.manager, now())).unwrap();
    let mut line = w.pa.items[0].clone();
    line.record_issue(date("2026-03-01")).unwrap();
    let email = OutgoingEmail::new(test_email("stale"), "Stale", "Should never be sent", now());
    let result = store.save_order(&stale, 1, &t, std::slice::from_ref(&line), std::slice::from_ref(&email)).await;
    assert!(is_conflict(result), "a stale version must be a conflict");

    assert_eq!(store.order(order.id).await.unwrap().unwrap(), current, "order and items unchanged");
    assert_eq!(store.order_transitions(order.id).await.unwrap(), transitions_before);
    assert_eq!(store.repeat_items(w.pa.patient.id).await.unwrap(), items_before);
    assert_eq!(email_by_id(store, email.id).await, None);

    // An order that does not exist is a conflict too.
    let (ghost, _) = submit(&w.pa, &w.pa.items, now());
    assert!(is_conflict(store.save_order(&ghost, 1, &[], &[], &[]).await));
}

pub async fn save_order_bumps_version_and_appends_transitions(store: &dyn Store) {
    let w = world(store).await;
    let t0 = now();
    let (mut order, first) = submit(&w.pa, &w.pa.items, t0);
    store.insert_order(&order, std::slice::from_ref(&first), &[]).await.unwrap();
    let mut all = vec![first];

    let t = order.accept(by(&w.ph.manager, t0 + secs(1))).unwrap();
    store.save_order(&order, 1, &t, &[], &[]).await.unwrap();
    all.extend(t);
    let t = order.send_to_prescriber(by(&w.ph.manager, t0 + secs(2))).unwrap();
    store.save_order(&order, 2, &t, &[], &[]).await.unwrap();
    all.extend(t);

    // The prescriber approves one item: the repeat line uses an issue; the patient is told.
    let at = t0 + secs(3);
    let t = order.decide(order.items[0].id, Decision::Approve, by(&w.pr.prescriber, at)).unwrap();
    let mut line = w.pa.items[0].clone();
    line.record_issue(date("2026-03-01")).unwrap();
    let email = OutgoingEmail::new(w.pa.user.email.clone(), "Approved", "Your item was approved", at);
    store.save_order(&order, 3, &t, std::slice::from_ref(&line), std::slice::from_ref(&email)).await.unwrap();
    all.extend(t);
    // Several transitions at the same instant keep their order.
    let t = order
        .decide(
            order.items[1].id,
            Decision::Reject { code: RejectionCode::Other, note: Some("See me".into()), next_step: "Call us".into() },
            by(&w.pr.prescriber, at),
        )
        .unwrap();
    store.save_order(&order, 4, &t, &[], &[]).await.unwrap();
    all.extend(t);
    let t = order.dispense_step(order.items[0].id, ItemEvent::ReadyToCollect, by(&w.ph.manager, at)).unwrap();
    assert!(t.len() >= 2, "item and stage transitions");
    store.save_order(&order, 5, &t, &[], &[]).await.unwrap();
    all.extend(t);

    let stored = store.order(order.id).await.unwrap().unwrap();
    assert_eq!(stored.version, 6);
    assert_eq!(stored.order, order);
    assert_eq!(stored.order.stage, OrderStage::Ready);
    assert_eq!(store.order_transitions(order.id).await.unwrap(), all);
    assert_eq!(store.repeat_item(line.id).await.unwrap(), Some(line));
    assert_eq!(email_by_id(store, email.id).await, Some(email));
    assert!(is_conflict(store.save_order(&order, 5, &[], &[], &[]).await));
}

/// Many orders at once (which the store may commit as one group): each that is sound is stored
/// whole, and one that cannot be stored is refused without taking the others with it.
pub async fn orders_written_at_once_each_stand_or_fail_alone(store: &dyn Store) {
    let w = world(store).await;
    // Of two pharmacies, so that a group commit changes the counts of both.
    let other = setup_pharmacy(store).await;
    let mut patients = Vec::new();
    for n in 0..12 {
        patients.push(setup_patient(store, if n % 2 == 0 { &w.ph } else { &other }, &w.pr, 1).await);
    }
    let at = now();
    let sound: Vec<(Order, Transition)> = patients.iter().map(|pa| submit(pa, &pa.items, at)).collect();
    // An order of a patient who is not stored: the database refuses it.
    let ghost = PatientSetup {
        patient: new_patient(&w.ph.pharmacy, &w.pr.practice, "No", "Body", "1970-01-01"),
        user: w.pa.user.clone(),
        items: w.pa.items.clone(),
    };
    let (orphan, orphan_t) = submit(&ghost, &ghost.items, at);
    let (half, half_t) = sound.split_at(6);
    let writes = half
        .iter()
        .map(|(o, t)| (o, t))
        .chain(std::iter::once((&orphan, &orphan_t)))
        .chain(half_t.iter().map(|(o, t)| (o, t)))
        .map(|(o, t)| async move { store.insert_order(o, std::slice::from_ref(t), &[]).await });
    let outcomes = futures::future::join_all(writes).await;
    assert_eq!(outcomes.iter().filter(|r| r.is_err()).count(), 1, "{outcomes:?}");
    assert!(outcomes[6].is_err(), "the orphan order is the one refused");
    assert!(store.order(orphan.id).await.unwrap().is_none());
    for (order, _) in &sound {
        let stored = store.order(order.id).await.unwrap().expect("every sound order is stored");
        assert_eq!(&stored.order, order);
        assert_eq!(store.order_transitions(order.id).await.unwrap().len(), 1);
    }
    for pharmacy in [w.ph.pharmacy.id, other.pharmacy.id] {
        let counts = store.pharmacy_open_stage_counts(pharmacy).await.unwrap();
        assert_eq!(counts, listed_open_stage_counts(store, pharmacy).await, "the refused order is not counted");
        assert_eq!(counts[0], (OrderStage::Submitted, 6), "{counts:?}");
    }
}

pub async fn listed_orders_come_with_their_patients_as_they_are_now(store: &dyn Store) {
    let w = world(store).await;
    let second = setup_patient(store, &w.ph, &w.pr, 1).await;
    let (elsewhere, other_practice) = (setup_pharmacy(store).await, setup_practice(store).await);
    let t0 = now();
    let first_order = place(store, &w.pa, t0).await;
    let second_order = place(store, &second, t0 + secs(1)).await;
    // The patient moves after ordering: the order stays where it was placed, and the listing
    // shows the patient's own pharmacy, practice and details, not the order's.
    let mut moved = second.patient.clone();
    moved.pharmacy_id = elsewhere.pharmacy.id;
    moved.practice_id = other_practice.practice.id;
    moved.phone = Some("07700 900123".into());
    store.update_patient(&moved).await.unwrap();
    assert_eq!(store.patient(moved.id).await.unwrap().as_ref(), Some(&moved));

    let filter = OrderFilter { limit: 100, ..Default::default() };
    let expected = vec![
        ListedOrder { order: first_order, patient: w.pa.patient.clone() },
        ListedOrder { order: second_order, patient: moved },
    ];
    assert_eq!(store.pharmacy_orders(w.ph.pharmacy.id, &filter).await.unwrap(), expected);
    assert_eq!(store.practice_orders(w.pr.practice.id, &filter).await.unwrap(), expected);
    assert!(store.pharmacy_orders(elsewhere.pharmacy.id, &filter).await.unwrap().is_empty());
    assert!(store.practice_orders(other_practice.practice.id, &filter).await.unwrap().is_empty());

    // An erased patient's orders are no longer listed.
    assert!(store.erase_patient(second.patient.id, ErasureBy::Patient, now(), &[]).await.unwrap());
    assert_eq!(store.pharmacy_orders(w.ph.pharmacy.id, &filter).await.unwrap(), expected[..1]);
}

pub async fn repeat_items_are_held_until_the_order_finishes(store: &dyn Store) {
    let w = world(store).await;
    let other = setup_patient(store, &w.ph, &w.pr, 1).await;
    let held = async |patient: PatientId| -> Vec<(RepeatItemId, bool)> {
        let (read, lines) = store.patient_with_lines_held(patient, WhichLines::All).await.unwrap().unwrap();
        assert_eq!(read.id, patient);
        lines.into_iter().map(|(item, held)| (item.id, held)).collect()
    };
    let lines: Vec<RepeatItemId> = store.repeat_items(w.pa.patient.id).await.unwrap().iter().map(|i| i.id).collect();
    let none_held: Vec<(RepeatItemId, bool)> = lines.iter().map(|id| (*id, false)).collect();
    assert_eq!(held(w.pa.patient.id).await, none_held, "every line, in order, none held");
    let (first, t) = submit(&w.pa, &w.pa.items[..1], now());
    store.insert_order(&first, &[t], &[]).await.unwrap();
    let mut again = first.clone();
    // A line is on one open order at a time: a second order naming it is refused in the write,
    // whatever it read before, and nothing of it is stored.
    let (second, t) = submit(&w.pa, &w.pa.items, now() + secs(1));
    let refused = store.insert_order(&second, &[t], &[]).await;
    assert!(
        matches!(&refused, Err(StoreError::LinesOnOpenOrder(taken)) if *taken == [w.pa.items[0].id]),
        "{refused:?}"
    );
    assert!(store.order(second.id).await.unwrap().is_none());
    place(store, &other, now()).await;
    let first_held: Vec<(RepeatItemId, bool)> = lines.iter().map(|id| (*id, *id == w.pa.items[0].id)).collect();
    assert_eq!(held(w.pa.patient.id).await, first_held, "each line once, held only by this patient's orders");
    let only = async |ids: &[RepeatItemId]| -> Vec<(RepeatItemId, bool)> {
        let (_, lines) = store.patient_with_lines_held(w.pa.patient.id, WhichLines::Only(ids)).await.unwrap().unwrap();
        let mut lines: Vec<(RepeatItemId, bool)> = lines.into_iter().map(|(item, held)| (item.id, held)).collect();
        lines.sort();
        lines
    };
    let mut both = vec![(w.pa.items[1].id, false), (w.pa.items[0].id, true)];
    both.sort();
    assert_eq!(only(&[w.pa.items[1].id, w.pa.items[0].id]).await, both);
    assert_eq!(
        only(&[w.pa.items[0].id, other.items[0].id]).await,
        vec![(w.pa.items[0].id, true)],
        "another's line is left out"
    );
    assert_eq!(only(&[]).await, vec![]);
    let mut many: Vec<RepeatItemId> = (0..1_200).map(|_| RepeatItemId::new()).collect();
    many[1_100] = w.pa.items[1].id;
    assert_eq!(only(&many).await, vec![(w.pa.items[1].id, false)], "more ids than one statement binds");
    cancel(store, &mut again, &w.pa.user).await;
    assert_eq!(held(w.pa.patient.id).await, none_held, "a finished order holds nothing");
    // Two orders naming one free line in one group commit: the first is written, the second
    // refused; a line of a finished order can be ordered again.
    let (racing, racing_t) = submit(&w.pa, &w.pa.items[..1], now() + secs(2));
    let (raced, raced_t) = submit(&w.pa, &w.pa.items, now() + secs(2));
    let writes =
        [(&racing, &racing_t), (&raced, &raced_t)].map(|(o, t)| store.insert_order(o, std::slice::from_ref(t), &[]));
    let outcomes = futures::future::join_all(writes).await;
    let written: Vec<bool> = outcomes.iter().map(Result::is_ok).collect();
    assert!(written == [true, false] || written == [false, true], "one of the two is written: {outcomes:?}");
    let (winner, loser) = if written[0] { (&racing, &raced) } else { (&raced, &racing) };
    assert!(store.order(winner.id).await.unwrap().is_some());
    assert!(store.order(loser.id).await.unwrap().is_none());
    let lost = outcomes.iter().find_map(|o| o.as_ref().err());
    assert!(matches!(lost, Some(StoreError::LinesOnOpenOrder(taken)) if *taken == [w.pa.items[0].id]), "{outcomes:?}");
    assert_eq!(store.patient_with_lines_held(PatientId::new(), WhichLines::All).await.unwrap(), None);
    assert_eq!(store.patient_with_lines_held(PatientId::new(), WhichLines::Only(&[])).await.unwrap(), None);
    let listless = setup_patient(store, &w.ph, &w.pr, 0).await;
    let read = store.patient_with_lines_held(listless.patient.id, WhichLines::All).await.unwrap();
    assert_eq!(read, Some((listless.patient, vec![])), "a patient without lines is still found");
    let (patient, _) = store.patient_with_lines_held(w.pa.patient.id, WhichLines::All).await.unwrap().unwrap();
    assert_eq!(patient, w.pa.patient, "the whole patient, opened");
}

pub async fn orders_of_patient_newest_first(store: &dyn Store) {
    let w = world(store).await;
    let other = setup_patient(store, &w.ph, &w.pr, 1).await;
    let t0 = now();
    let a = place(store, &w.pa, t0).await;
    let b = place(store, &w.pa, t0 + secs(10)).await;
    let c = place(store, &w.pa, t0 + secs(20)).await;
    place(store, &other, t0 + secs(30)).await;
    let found = store.orders_of_patient(w.pa.patient.id).await.unwrap();
    assert_eq!(found, vec![c, b, a]);
    assert!(store.orders_of_patient(PatientId::new()).await.unwrap().is_empty());
}

pub async fn pharmacy_orders_filters_and_pages(store: &dyn Store) {
    let w = world(store).await;
    let second = setup_patient(store, &w.ph, &w.pr, 1).await;
    let elsewhere = setup_pharmacy(store).await;
    let foreign = setup_patient(store, &elsewhere, &w.pr, 1).await;
    let t0 = now();
    let o0 = place(store, &w.pa, t0).await;
    let mut o1 = place(store, &second, t0 + secs(1)).await;
    let o2 = place(store, &w.pa, t0 + secs(2)).await;
    let mut o3 = place(store, &second, t0 + secs(3)).await;
    let o4 = place(store, &w.pa, t0 + secs(4)).await;
    place(store, &foreign, t0 + secs(5)).await;
    accept(store, &mut o1, &w.ph.manager).await;
    cancel(store, &mut o3, &second.user).await;

    let list = |stages: Vec<OrderStage>, patients: Option<Vec<PatientId>>, limit: u32, offset: u32| {
        let filter = OrderFilter { stages, patients, limit, offset };
        let pharmacy = w.ph.pharmacy.id;
        async move { orders_of(store.pharmacy_orders(pharmacy, &filter).await.unwrap()) }
    };
    let all = list(vec![], None, 100, 0).await;
    assert_eq!(all, vec![o0.clone(), o1.clone(), o2.clone(), o3.clone(), o4.clone()], "oldest first, with items");

    let submitted = list(vec![OrderStage::Submitted], None, 100, 0).await;
    assert_eq!(ids(&submitted, |o| o.id), [o0.id, o2.id, o4.id]);
    let open = list(vec![OrderStage::InReview, OrderStage::Cancelled], None, 100, 0).await;
    assert_eq!(ids(&open, |o| o.id), [o1.id, o3.id]);
    assert!(list(vec![OrderStage::Completed], None, 100, 0).await.is_empty());
    let every_open: Vec<OrderStage> = OrderStage::ALL.into_iter().filter(|s| s.is_open()).collect();
    let queue = list(every_open.clone(), None, 100, 0).await;
    assert_eq!(queue, vec![o0.clone(), o1.clone(), o2.clone(), o4.clone()], "the queue: open orders, oldest first");
    assert_eq!(ids(&list(every_open.clone(), None, 2, 2).await, |o| o.id), [o2.id, o4.id]);
    let some_open = list(vec![OrderStage::InReview, OrderStage::WithPrescriber], None, 100, 0).await;
    assert_eq!(ids(&some_open, |o| o.id), [o1.id]);
    let of_second_open = list(every_open, Some(vec![second.patient.id]), 100, 0).await;
    assert_eq!(ids(&of_second_open, |o| o.id), [o1.id]);

    let of_second = list(vec![], Some(vec![second.patient.id]), 100, 0).await;
    assert_eq!(ids(&of_second, |o| o.id), [o1.id, o3.id]);
    let both = list(vec![OrderStage::Submitted], Some(vec![w.pa.patient.id, second.patient.id]), 100, 0).await;
    assert_eq!(ids(&both, |o| o.id), [o0.id, o2.id, o4.id]);
    assert!(list(vec![], Some(vec![]), 100, 0).await.is_empty(), "an empty patient list matches nothing");
    assert!(list(vec![], Some(vec![foreign.patient.id]), 100, 0).await.is_empty(), "never another pharmacy's");

    let page = |offset| list(vec![], None, 2, offset);
    assert_eq!(ids(&page(0).await, |o| o.id), [o0.id, o1.id]);
    assert_eq!(ids(&page(2).await, |o| o.id), [o2.id, o3.id]);
    assert_eq!(ids(&page(4).await, |o| o.id), [o4.id]);
    assert!(page(6).await.is_empty());

    let theirs =
        store.pharmacy_orders(elsewhere.pharmacy.id, &OrderFilter { limit: 100, ..Default::default() }).await.unwrap();
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].order.patient_id, foreign.patient.id);
    assert_eq!(theirs[0].patient, foreign.patient);
}

pub async fn pharmacy_open_stage_counts(store: &dyn Store) {
    let w = world(store).await;
    let elsewhere = setup_pharmacy(store).await;
    let foreign = setup_patient(store, &elsewhere, &w.pr, 1).await;
    let t0 = now();
    for n in 0..3 {
        place(store, &w.pa, t0 + secs(n)).await;
    }
    let mut accepted = place(store, &w.pa, t0 + secs(3)).await;
    accept(store, &mut accepted, &w.ph.manager).await;
    let mut cancelled = place(store, &w.pa, t0 + secs(4)).await;
    cancel(store, &mut cancelled, &w.pa.user).await;
    place(store, &foreign, t0).await;

    let counts = store.pharmacy_open_stage_counts(w.ph.pharmacy.id).await.unwrap();
    let expected: Vec<(OrderStage, i64)> = OrderStage::ALL
        .into_iter()
        .filter(|s| s.is_open())
        .map(|s| {
            let n = match s {
                OrderStage::Submitted => 3,
                OrderStage::InReview => 1,
                _ => 0,
            };
            (s, n)
        })
        .collect();
    assert_eq!(counts, expected);
    assert_eq!(counts, listed_open_stage_counts(store, w.ph.pharmacy.id).await);
    let none = store.pharmacy_open_stage_counts(PharmacyId::new()).await.unwrap();
    assert!(none.iter().all(|(_, n)| *n == 0));
    assert_eq!(none.len(), expected.len(), "every open stage, zeros included");

    // A save that loses to another changes no count.
    let stored = store.order(accepted.id).await.unwrap().unwrap();
    let mut stale = accepted.clone();
    let t = stale.send_to_prescriber(by(&w.ph.manager, now())).unwrap();
    assert!(is_conflict(store.save_order(&stale, stored.version - 1, &t, &[], &[]).await));
    assert_eq!(store.pharmacy_open_stage_counts(w.ph.pharmacy.id).await.unwrap(), expected);

    // A save that keeps the stage changes no count either.
    let version = store.order(accepted.id).await.unwrap().unwrap().version;
    store.save_order(&accepted, version, &[], &[], &[]).await.unwrap();
    assert_eq!(store.pharmacy_open_stage_counts(w.ph.pharmacy.id).await.unwrap(), expected);

    // Erasing a patient takes their open orders out of the counts; others' stay.
    let second = setup_patient(store, &w.ph, &w.pr, 1).await;
    let mut theirs = place(store, &second, t0).await;
    place(store, &second, t0 + secs(1)).await;
    accept(store, &mut theirs, &w.ph.manager).await;
    let counts = store.pharmacy_open_stage_counts(w.ph.pharmacy.id).await.unwrap();
    assert_eq!(counts[0], (OrderStage::Submitted, 4));
    assert_eq!(counts[1], (OrderStage::InReview, 2));
    assert!(store.erase_patient(second.patient.id, ErasureBy::Patient, now(), &[]).await.unwrap());
    assert_eq!(store.pharmacy_open_stage_counts(w.ph.pharmacy.id).await.unwrap(), expected);
    assert_eq!(expected, listed_open_stage_counts(store, w.ph.pharmacy.id).await);
    let foreign_counts = store.pharmacy_open_stage_counts(elsewhere.pharmacy.id).await.unwrap();
    assert_eq!(foreign_counts, listed_open_stage_counts(store, elsewhere.pharmacy.id).await);
    assert_eq!(foreign_counts[0], (OrderStage::Submitted, 1));
}

/// The pharmacy's open orders counted by stage from its listed orders, to compare with the
/// counts the store keeps.
async fn listed_open_stage_counts(store: &dyn Store, pharmacy: PharmacyId) -> Vec<(OrderStage, i64)> {
    let open: Vec<OrderStage> = OrderStage::ALL.into_iter().filter(|s| s.is_open()).collect();
    let filter = OrderFilter { stages: open.clone(), limit: 10_000, ..Default::default() };
    let orders = orders_of(store.pharmacy_orders(pharmacy, &filter).await.unwrap());
    open.into_iter().map(|s| (s, orders.iter().filter(|o| o.stage == s).count() as i64)).collect()
}

pub async fn practice_orders(store: &dyn Store) {
    let w = world(store).await;
    let other_pharmacy = setup_pharmacy(store).await;
    let same_practice = setup_patient(store, &other_pharmacy, &w.pr, 1).await;
    let other_practice = setup_practice(store).await;
    let elsewhere = setup_patient(store, &w.ph, &other_practice, 1).await;
    let t0 = now();
    let mut a = place(store, &w.pa, t0).await;
    let b = place(store, &same_practice, t0 + secs(1)).await;
    place(store, &elsewhere, t0 + secs(2)).await;
    accept(store, &mut a, &w.ph.manager).await;

    let list = |stages: Vec<OrderStage>| {
        let filter = OrderFilter { stages, patients: None, limit: 100, offset: 0 };
        let practice = w.pr.practice.id;
        async move { orders_of(store.practice_orders(practice, &filter).await.unwrap()) }
    };
    assert_eq!(
        list(vec![]).await,
        vec![a.clone(), b.clone()],
        "every pharmacy's orders for the practice, oldest first"
    );
    assert_eq!(list(vec![OrderStage::InReview]).await, vec![a.clone()]);
    assert_eq!(list(vec![OrderStage::WithPrescriber]).await, vec![]);
    let only_b = OrderFilter { stages: vec![], patients: Some(vec![same_practice.patient.id]), limit: 100, offset: 0 };
    assert_eq!(orders_of(store.practice_orders(w.pr.practice.id, &only_b).await.unwrap()), vec![b]);
    let paged = OrderFilter { limit: 1, offset: 1, ..Default::default() };
    assert_eq!(store.practice_orders(w.pr.practice.id, &paged).await.unwrap().len(), 1);
}

/// A random instant in the early 2000s: far from the emails other checks create "now", so the
/// outbox checks see only their own emails as due.
fn virtual_past() -> Timestamp {
    let base = date("2001-01-01").to_zoned(jiff::tz::TimeZone::UTC).unwrap().timestamp();
    micros(base + secs(i64::from(random_u32() % (10 * 365 * 86_400))))
}

async fn claim_mine(store: &dyn Store, at: Timestamp, lease: SignedDuration, mine: &[EmailId]) -> Vec<OutgoingEmail> {
    let claimed = store.claim_emails(at, at + lease, 100_000).await.unwrap();
    claimed.into_iter().filter(|e| mine.contains(&e.id)).collect()
}

pub async fn outbox_claim_and_lease(store: &dyn Store) {
    let t = virtual_past();
    let mk = |not_before: Timestamp| OutgoingEmail {
        not_before,
        created_at: t - secs(60),
        ..OutgoingEmail::new(test_email("outbox"), "Subject", "Body", t)
    };
    let e1 = mk(t - secs(10));
    let e2 = mk(t - secs(5));
    let later = mk(t + secs(3600));
    store.enqueue_emails(&[later.clone(), e2.clone(), e1.clone()]).await.unwrap();
    let mine = [e1.id, e2.id, later.id];
    let lease = secs(60);

    let first = claim_mine(store, t, lease, &mine).await;
    assert_eq!(first, vec![e1.clone(), e2.clone()], "due emails, oldest first; not_before respected");
    assert!(claim_mine(store, t + secs(30), lease, &mine).await.is_empty(), "leased emails are not claimed again");
    let again = claim_mine(store, t + secs(61), lease, &mine).await;
    assert_eq!(ids(&again, |e| e.id), [e1.id, e2.id], "claimable again once the lease ends");

    // The limit is respected.
    let one = store.claim_emails(t + secs(200), t + secs(260), 1).await.unwrap();
    assert_eq!(one.len(), 1);

    let at_due = claim_mine(store, t + secs(3600), lease, &mine).await;
    assert!(at_due.iter().any(|e| e.id == later.id), "a future email becomes due at its not_before");
    for id in mine {
        store.mark_email_sent(id, t + secs(3601)).await.unwrap();
    }
    assert!(claim_mine(store, t + secs(100_000), lease, &mine).await.is_empty(), "sent emails are never claimed");
}

/// Sent and given-up emails go after their retention; pending ones never do.
pub async fn finished_emails_are_purged_and_pending_ones_stay(store: &dyn Store) {
    // Before every other check's virtual past (2001 on), so no other check's email is touched.
    let t = date("1990-01-01").to_zoned(jiff::tz::TimeZone::UTC).unwrap().timestamp();
    let at = |s: i64| OutgoingEmail::new(test_email("retention"), "Subject", "Body", t + secs(s));
    let (sent, failed, pending, young) = (at(0), at(1), at(2), at(7200));
    store.enqueue_emails(&[sent.clone(), failed.clone(), pending.clone(), young.clone()]).await.unwrap();
    store.mark_email_sent(sent.id, t + secs(5)).await.unwrap();
    store.mark_email_failed(failed.id, "550 no such user", None).await.unwrap();
    store.mark_email_sent(young.id, t + secs(7205)).await.unwrap();
    assert_eq!(store.purge_finished_emails(t + secs(3600)).await.unwrap(), 2);
    assert_eq!(email_by_id(store, sent.id).await, None);
    assert_eq!(email_by_id(store, failed.id).await, None);
    assert!(email_by_id(store, pending.id).await.is_some(), "a pending email is never purged");
    assert!(email_by_id(store, young.id).await.is_some(), "a recent one stays");
}

pub async fn outbox_sent_and_failed(store: &dyn Store) {
    let t = virtual_past();
    let mk = || OutgoingEmail::new(test_email("delivery"), "Subject", "Body", t);
    let (sent, retried, given_up) = (mk(), mk(), mk());
    store.enqueue_emails(&[sent.clone(), retried.clone(), given_up.clone()]).await.unwrap();
    let mine = [sent.id, retried.id, given_up.id];
    assert_eq!(claim_mine(store, t, secs(60), &mine).await.len(), 3);

    store.mark_email_sent(sent.id, t + secs(1)).await.unwrap();
    let done = email_by_id(store, sent.id).await.unwrap();
    assert_eq!(done.status, EmailStatus::Sent);
    assert_eq!(done.sent_at, Some(t + secs(1)));

    // A failure with a retry time: still pending, due again from the retry time (even though the
    // lease it was claimed under has not ended).
    store.mark_email_failed(retried.id, "421 try later", Some(t + secs(30))).await.unwrap();
    let r = email_by_id(store, retried.id).await.unwrap();
    assert_eq!((r.status, r.attempts, r.last_error.as_deref()), (EmailStatus::Pending, 1, Some("421 try later")));
    assert_eq!(r.not_before, t + secs(30));
    assert!(claim_mine(store, t + secs(29), secs(60), &mine).await.is_empty());
    let again = claim_mine(store, t + secs(31), secs(60), &mine).await;
    assert_eq!(ids(&again, |e| e.id), [retried.id]);
    assert_eq!(again[0].attempts, 1);

    // No retry time: given up.
    store.mark_email_failed(retried.id, "550 no such user", None).await.unwrap();
    store.mark_email_failed(given_up.id, "550 no such user", None).await.unwrap();
    let r = email_by_id(store, retried.id).await.unwrap();
    assert_eq!((r.status, r.attempts, r.last_error.as_deref()), (EmailStatus::Failed, 2, Some("550 no such user")));
    let g = email_by_id(store, given_up.id).await.unwrap();
    assert_eq!((g.status, g.attempts), (EmailStatus::Failed, 1));
    assert!(claim_mine(store, t + secs(100_000), secs(60), &mine).await.is_empty(), "failed emails stay failed");
}

pub async fn recent_emails_newest_first(store: &dyn Store) {
    // Created in the far future, so that they are the newest in the database whatever else it holds.
    let base = now() + SignedDuration::from_hours(24 * 365 * 200);
    let mk = |n: i64| {
        OutgoingEmail::new(
            test_email("recent"),
            format!("Recent {n}"),
            "Body\nline 2",
            base + SignedDuration::from_micros(n),
        )
    };
    let emails = [mk(0), mk(1), mk(2)];
    store.enqueue_emails(&emails).await.unwrap();
    let recent = store.recent_emails(3).await.unwrap();
    assert_eq!(recent, vec![emails[2].clone(), emails[1].clone(), emails[0].clone()]);
    assert_eq!(store.recent_emails(1).await.unwrap().len(), 1);
    // Enqueuing the same email twice is a conflict.
    assert!(is_conflict(store.enqueue_emails(&emails[..1]).await));
}

pub async fn claim_job_is_exclusive(store: &dyn Store) {
    let job = format!("conformance-job-{}", tag());
    let (a, b) = ("server-a", "server-b");
    let t = now();
    assert!(store.claim_job(&job, a, t, t + secs(30)).await.unwrap(), "a free job is claimed");
    assert!(!store.claim_job(&job, b, t + secs(10), t + secs(40)).await.unwrap(), "held by another owner");
    assert!(store.claim_job(&job, a, t + secs(10), t + secs(40)).await.unwrap(), "the owner renews its lease");
    assert!(!store.claim_job(&job, b, t + secs(35), t + secs(65)).await.unwrap(), "the renewed lease holds");
    assert!(store.claim_job(&job, b, t + secs(41), t + secs(71)).await.unwrap(), "claimable once the lease ends");
    assert!(!store.claim_job(&job, a, t + secs(42), t + secs(72)).await.unwrap());
    let other = format!("conformance-job-{}", tag());
    assert!(store.claim_job(&other, a, t + secs(42), t + secs(72)).await.unwrap(), "jobs are independent");
}

pub async fn reminders_needing_and_recorded(store: &dyn Store) {
    let ph = setup_pharmacy(store).await;
    let pr = setup_practice(store).await;
    let pa = setup_patient(store, &ph, &pr, 5).await;
    // Dates in the early 2000s, far from the due dates other checks use.
    let d = date("2001-01-01").saturating_add(i64::from(random_u32() % 3650).days());
    let mut items = pa.items.clone();
    items[0].next_due = Some(d.saturating_sub(3.days()));
    items[1].next_due = Some(d);
    items[2].next_due = Some(d.saturating_add(1.days()));
    items[3].next_due = Some(d.saturating_sub(1.days()));
    items[3].active = false;
    // items[4] has never been issued: no due date.
    for item in &items {
        store.update_repeat_item(item).await.unwrap();
    }
    let mine: HashSet<RepeatItemId> = items.iter().map(|i| i.id).collect();
    let mine = &mine;
    let needing = move || async move {
        let found = store.repeat_items_needing_reminder(d, 100_000).await.unwrap();
        found.into_iter().filter(|i| mine.contains(&i.id)).collect::<Vec<_>>()
    };
    assert_eq!(needing().await, vec![items[0].clone(), items[1].clone()], "active, due on or before, soonest first");
    let limited = store.repeat_items_needing_reminder(d, 1).await.unwrap();
    assert_eq!(limited.len(), 1);

    let to = pa.patient.email.clone().unwrap();
    let first = OutgoingEmail::new(to.clone(), "Time to order", "Body", now());
    store.record_reminder(items[0].id, items[0].next_due.unwrap(), Some(&first)).await.unwrap();
    assert_eq!(needing().await, vec![items[1].clone()]);
    assert_eq!(email_by_id(store, first.id).await, Some(first.clone()));

    // Recording the same reminder again changes nothing and queues no second email.
    let duplicate = OutgoingEmail::new(to, "Time to order", "Body", now());
    store.record_reminder(items[0].id, items[0].next_due.unwrap(), Some(&duplicate)).await.unwrap();
    assert_eq!(email_by_id(store, duplicate.id).await, None);
    assert_eq!(needing().await, vec![items[1].clone()]);

    // Without an email (the patient has none) the reminder is still recorded.
    store.record_reminder(items[1].id, d, None).await.unwrap();
    assert!(needing().await.is_empty());

    // A new due date re-arms the reminder; the repeat line itself is unchanged by reminders.
    items[0].next_due = Some(d.saturating_sub(1.days()));
    store.update_repeat_item(&items[0]).await.unwrap();
    assert_eq!(needing().await, vec![items[0].clone()]);
    assert_eq!(store.repeat_items(pa.patient.id).await.unwrap(), items);
}

// ---------------------------------------------------------------------------------------------
// Account security
// ---------------------------------------------------------------------------------------------

fn session_for(user: UserId, created_at: Timestamp, stage: SessionStage) -> SessionRecord {
    SessionRecord {
        token_hash: format!("{}{}", tag(), tag()),
        user_id: user,
        kind: SessionKind::Browser,
        csrf_token: tag(),
        created_at,
        last_seen_at: created_at,
        expires_at: created_at + secs(3600),
        user_agent: "Conformance/1.0".into(),
        stage,
        address: "192.0.2.1".into(),
    }
}

pub async fn sessions_listed_rotated_and_ended_but_one(store: &dyn Store) {
    let ph = setup_pharmacy(store).await;
    let user = ph.manager.id;
    let t = now();
    let older = session_for(user, t - secs(60), SessionStage::Full);
    let newer = session_for(user, t, SessionStage::SecondFactor);
    let expired = SessionRecord { expires_at: t - secs(1), ..session_for(user, t - secs(7200), SessionStage::Full) };
    for s in [&older, &newer, &expired] {
        store.insert_session(s).await.unwrap();
    }
    let listed = store.sessions_of_user(user, t).await.unwrap();
    assert_eq!(listed, vec![newer.clone(), older.clone()], "unexpired sessions, newest first");

    let rotated = SessionRecord { stage: SessionStage::Full, ..session_for(user, t, SessionStage::Full) };
    store.rotate_session(&newer.token_hash, &rotated).await.unwrap();
    assert_eq!(store.session(&newer.token_hash).await.unwrap(), None, "the old id stops working");
    assert_eq!(store.session(&rotated.token_hash).await.unwrap(), Some(rotated.clone()));
    let again = store.rotate_session(&newer.token_hash, &session_for(user, t, SessionStage::Full)).await;
    assert!(matches!(again, Err(StoreError::Database(_) | StoreError::Conflict(_))), "{again:?}");

    assert_eq!(store.delete_other_sessions(user, &rotated.token_hash).await.unwrap(), 2);
    assert_eq!(store.sessions_of_user(user, t).await.unwrap(), vec![rotated]);
}

pub async fn email_change_and_account_lists(store: &dyn Store) {
    let ph = setup_pharmacy(store).await;
    let staff = account(Role::Dispenser, Some(ph.pharmacy.id), None, None);
    store.insert_user(&staff).await.unwrap();
    let fresh = Email::parse(&format!("moved-{}@example.org", tag())).unwrap();
    store.set_user_email(staff.id, &fresh).await.unwrap();
    assert_eq!(store.user_by_email(&fresh).await.unwrap().map(|u| u.id), Some(staff.id));
    assert_eq!(store.user_by_email(&staff.email).await.unwrap(), None);
    let taken = store.set_user_email(staff.id, &ph.manager.email).await;
    assert!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");

    let listed = store.list_accounts(AccountScope::Pharmacy(ph.pharmacy.id)).await.unwrap();
    let ids: HashSet<UserId> = listed.iter().map(|(u, _)| u.id).collect();
    assert_eq!(ids, HashSet::from([ph.manager.id, staff.id]), "only this pharmacy's accounts");
    assert!(listed.iter().all(|(u, s)| u.id == s.user_id && s.lock_state == LockState::Open));
    let managers = store.list_accounts(AccountScope::ManagersAndPlatform).await.unwrap();
    assert!(managers.iter().any(|(u, _)| u.id == ph.manager.id));
    assert!(managers.iter().all(|(u, _)| u.id != staff.id), "staff are their manager's to look after");
}

pub async fn account_security_counts_and_locks(store: &dyn Store) {
    let ph = setup_pharmacy(store).await;
    let user = ph.manager.id;
    let fresh = store.account_security(user).await.unwrap().unwrap();
    assert_eq!(
        (
            fresh.failed_sign_ins,
            fresh.lock_state,
            fresh.dob_failures,
            fresh.totp_secret.clone(),
            fresh.recovery_codes_left
        ),
        (0, LockState::Open, 0, None, 0)
    );
    assert_eq!(store.account_security(UserId::new()).await.unwrap(), None);
    assert!(store.update_account_security(UserId::new(), &mut |_| true).await.unwrap().is_none());

    // Concurrent increments all count: each sees the previous one's write.
    let bump = || async move {
        store
            .update_account_security(user, &mut |s| {
                s.failed_sign_ins += 1;
                true
            })
            .await
            .unwrap()
            .unwrap()
    };
    let _ = tokio::join!(bump(), bump(), bump(), bump());
    let t = now();
    let (after, written) = store
        .update_account_security(user, &mut |s| {
            s.failed_sign_ins += 1;
            s.lock_state = LockState::Locked;
            s.locked_at = Some(t);
            true
        })
        .await
        .unwrap()
        .unwrap();
    assert!(written);
    assert_eq!((after.failed_sign_ins, after.lock_state, after.locked_at), (5, LockState::Locked, Some(t)));
    assert_eq!(store.account_security(user).await.unwrap().unwrap(), after);

    let (unchanged, written) = store
        .update_account_security(user, &mut |s| {
            s.failed_sign_ins = 0;
            false
        })
        .await
        .unwrap()
        .unwrap();
    assert!(!written);
    assert_eq!(store.account_security(user).await.unwrap().unwrap().failed_sign_ins, 5, "{unchanged:?}");
}

pub async fn totp_enrolment_and_recovery_codes(store: &dyn Store) {
    let ph = setup_pharmacy(store).await;
    let user = ph.manager.id;
    let t = now();
    store
        .update_account_security(user, &mut |s| {
            s.totp_pending_secret = Some("PENDINGSECRET".into());
            true
        })
        .await
        .unwrap();
    let wrong = store.enable_totp(user, "OTHERSECRET", 1, &[], t).await;
    assert!(matches!(wrong, Err(StoreError::Conflict(_))), "{wrong:?}");
    let hashes: Vec<String> = (0..10).map(|i| format!("hash-{i}-{}", tag())).collect();
    store.enable_totp(user, "PENDINGSECRET", 42, &hashes, t).await.unwrap();
    let s = store.account_security(user).await.unwrap().unwrap();
    assert_eq!(s.totp_secret.as_deref(), Some("PENDINGSECRET"));
    assert_eq!((s.totp_pending_secret, s.totp_enrolled_at, s.totp_last_step), (None, Some(t), 42));
    assert_eq!(s.recovery_codes_left, 10);

    assert!(store.use_recovery_code(user, &hashes[3], t).await.unwrap());
    assert!(!store.use_recovery_code(user, &hashes[3], t).await.unwrap(), "a recovery code works once");
    assert!(!store.use_recovery_code(user, "unknown", t).await.unwrap());
    let other = account(Role::Dispenser, Some(ph.pharmacy.id), None, None);
    store.insert_user(&other).await.unwrap();
    assert!(!store.use_recovery_code(other.id, &hashes[4], t).await.unwrap(), "codes belong to one account");
    assert_eq!(store.account_security(user).await.unwrap().unwrap().recovery_codes_left, 9);

    let renewed: Vec<String> = (0..10).map(|i| format!("renewed-{i}-{}", tag())).collect();
    store.replace_recovery_codes(user, &renewed).await.unwrap();
    assert!(!store.use_recovery_code(user, &hashes[5], t).await.unwrap(), "old codes stop working");
    assert!(store.use_recovery_code(user, &renewed[0], t).await.unwrap());
}

pub async fn account_tokens_are_single_use(store: &dyn Store) {
    let ph = setup_pharmacy(store).await;
    let user = ph.manager.id;
    let t = now();
    let token = |purpose: TokenPurpose, expires_at: Timestamp, grouping: Option<String>| AccountToken {
        token_hash: format!("{}{}", tag(), tag()),
        user_id: user,
        purpose,
        payload: Some("new@example.org".into()),
        grouping,
        created_at: t,
        expires_at,
        used_at: None,
    };
    assert_eq!(store.latest_account_token_at(user, TokenPurpose::PasswordReset).await.unwrap(), None);
    let reset = token(TokenPurpose::PasswordReset, t + secs(1800), None);
    let email = OutgoingEmail::new(ph.manager.email.clone(), "Reset your password", "link", t);
    store.insert_account_token(&reset, std::slice::from_ref(&email)).await.unwrap();
    assert_eq!(store.account_token(&reset.token_hash).await.unwrap(), Some(reset.clone()));
    let newer = AccountToken { created_at: t + secs(5), ..token(TokenPurpose::PasswordReset, t + secs(1800), None) };
    store.insert_account_token(&newer, &[]).await.unwrap();
    assert_eq!(store.latest_account_token_at(user, TokenPurpose::PasswordReset).await.unwrap(), Some(t + secs(5)));
    assert_eq!(store.latest_account_token_at(user, TokenPurpose::Unlock).await.unwrap(), None);
    assert!(store.recent_emails(50).await.unwrap().iter().any(|e| e.id == email.id), "the email goes with it");

    assert!(store.use_account_token(&reset.token_hash, t + secs(10)).await.unwrap());
    assert!(!store.use_account_token(&reset.token_hash, t + secs(11)).await.unwrap(), "single use");
    assert_eq!(store.account_token(&reset.token_hash).await.unwrap().unwrap().used_at, Some(t + secs(10)));
    assert!(!store.use_account_token("unknown", t).await.unwrap());

    let expired = token(TokenPurpose::Unlock, t + secs(5), None);
    store.insert_account_token(&expired, &[]).await.unwrap();
    assert!(!store.use_account_token(&expired.token_hash, t + secs(5)).await.unwrap(), "expired links fail");

    let (a, b) = (token(TokenPurpose::Unlock, t + secs(60), None), token(TokenPurpose::Unlock, t + secs(60), None));
    let c = token(TokenPurpose::PasswordReset, t + secs(60), None);
    for x in [&a, &b, &c] {
        store.insert_account_token(x, &[]).await.unwrap();
    }
    assert_eq!(store.void_account_tokens(user, TokenPurpose::Unlock, t).await.unwrap(), 3, "expired ones too");
    assert!(!store.use_account_token(&a.token_hash, t).await.unwrap());
    assert!(store.use_account_token(&c.token_hash, t).await.unwrap(), "other purposes are untouched");

    let group = tag();
    let old = token(TokenPurpose::EmailChangeOld, t + secs(60), Some(group.clone()));
    let new = token(TokenPurpose::EmailChangeNew, t + secs(60), Some(group.clone()));
    store.insert_account_token(&old, &[]).await.unwrap();
    store.insert_account_token(&new, &[]).await.unwrap();
    let grouped = store.grouped_tokens(&group).await.unwrap();
    assert_eq!(grouped.len(), 2);
    assert!(grouped.contains(&old) && grouped.contains(&new));
}

pub async fn invitations_roles_and_suspension(store: &dyn Store) {
    let ph = setup_pharmacy(store).await;
    let t = now();
    let invite = |role: Role| {
        let user = UserAccount { password_hash: "!invited".into(), ..account(role, Some(ph.pharmacy.id), None, None) };
        let link = AccountToken {
            token_hash: format!("{}{}", tag(), tag()),
            user_id: user.id,
            purpose: TokenPurpose::Invitation,
            payload: None,
            grouping: None,
            created_at: t,
            expires_at: t + secs(3600),
            used_at: None,
        };
        let email = OutgoingEmail::new(user.email.clone(), "You are invited", "link", t);
        (user, link, email)
    };
    let (user, link, email) = invite(Role::Dispenser);
    assert!(store.invite_user(&user, &link, std::slice::from_ref(&email), None).await.unwrap());
    assert_eq!(store.user(user.id).await.unwrap().map(|u| u.role), Some(Role::Dispenser));
    assert_eq!(store.account_token(&link.token_hash).await.unwrap(), Some(link.clone()));
    assert!(store.recent_emails(50).await.unwrap().iter().any(|e| e.id == email.id));
    let again = UserAccount { id: UserId::new(), ..user.clone() };
    let (_, other_link, _) = invite(Role::Dispenser);
    assert!(matches!(store.invite_user(&again, &other_link, &[], None).await, Err(StoreError::Conflict(_))));
    assert_eq!(store.account_token(&other_link.token_hash).await.unwrap(), None, "nothing half-stored");

    // A capped role: concurrent invitations never exceed the cap.
    let before = store.count_users_with_role(Role::Custodian).await.unwrap();
    let cap = u32::try_from(before).unwrap() + 2;
    let attempts: Vec<_> = (0..5).map(|_| invite(Role::Custodian)).collect();
    let try_invite = |n: usize| {
        let (user, link, email) = &attempts[n];
        store.invite_user(user, link, std::slice::from_ref(email), Some(cap))
    };
    let (a, b, c, d, e) = tokio::join!(try_invite(0), try_invite(1), try_invite(2), try_invite(3), try_invite(4));
    let results = [a, b, c, d, e];
    assert_eq!(results.iter().filter(|r| matches!(r, Ok(true))).count(), 2, "{results:?}");
    assert_eq!(results.iter().filter(|r| matches!(r, Ok(false))).count(), 3, "{results:?}");
    assert_eq!(store.count_users_with_role(Role::Custodian).await.unwrap(), before + 2);
    assert!(!store.set_user_role(user.id, Role::Custodian, Some(cap)).await.unwrap(), "the cap holds for changes");
    assert_eq!(store.user(user.id).await.unwrap().map(|u| u.role), Some(Role::Dispenser));

    assert!(store.set_user_role(user.id, Role::Pharmacist, None).await.unwrap());
    assert_eq!(store.user(user.id).await.unwrap().map(|u| u.role), Some(Role::Pharmacist));
    assert!(matches!(store.set_user_role(UserId::new(), Role::Pharmacist, None).await, Err(StoreError::Database(_))));

    let session = session_for(user.id, t, SessionStage::Full);
    store.insert_session(&session).await.unwrap();
    store.set_user_active(user.id, false).await.unwrap();
    assert_eq!(store.user(user.id).await.unwrap().map(|u| u.active), Some(false));
    assert_eq!(store.session(&session.token_hash).await.unwrap(), None, "suspension ends every session");
    store.set_user_active(user.id, true).await.unwrap();
    assert_eq!(store.user(user.id).await.unwrap().map(|u| u.active), Some(true));
}

pub async fn break_glass_grants(store: &dyn Store) {
    use repeatrx_domain::custody::{Grant, GrantScope};
    let w = world(store).await;
    let domain = format!("{}.example.org", tag());
    let custodian = UserAccount {
        email: Email::parse(&format!("custodian@{domain}")).unwrap(),
        ..account(Role::Custodian, None, None, None)
    };
    store.insert_user(&custodian).await.unwrap();
    assert_eq!(store.count_users_with_email_domain(&domain).await.unwrap(), 1);
    assert_eq!(store.count_users_with_email_domain("nowhere.invalid").await.unwrap(), 0);
    assert!(store.users_with_role(Role::Custodian).await.unwrap().iter().any(|u| u.id == custodian.id));
    let t = now();
    let grant = |scope, created_at: Timestamp, minutes: i64| Grant {
        id: GrantId::new(),
        custodian: custodian.id,
        scope,
        reason: "support case: order missing after migration".into(),
        created_at,
        expires_at: created_at + SignedDuration::from_mins(minutes),
        ended_at: None,
    };
    let by_patient = grant(GrantScope::Patient(w.pa.patient.id), t, 60);
    let by_pharmacy = grant(GrantScope::Pharmacy(w.ph.pharmacy.id), t + secs(1), 60);
    let old = grant(GrantScope::Patient(w.pa.patient.id), t - secs(7200), 60);
    let email = OutgoingEmail::new(w.ph.manager.email.clone(), "Break-glass access", "body", t);
    store.insert_grant(&by_patient, std::slice::from_ref(&email)).await.unwrap();
    store.insert_grant(&by_pharmacy, &[]).await.unwrap();
    store.insert_grant(&old, &[]).await.unwrap();
    assert!(store.recent_emails(50).await.unwrap().iter().any(|e| e.id == email.id), "announced in the same write");

    let all = store.grants_of(custodian.id, 10).await.unwrap();
    assert_eq!(all, vec![by_pharmacy.clone(), by_patient.clone(), old.clone()], "newest first, round-tripped");
    let live = store.live_grants(custodian.id, t + secs(2)).await.unwrap();
    assert_eq!(live, vec![by_pharmacy.clone(), by_patient.clone()], "the expired one is not live");

    assert!(store.end_grant(by_patient.id, custodian.id, t + secs(3)).await.unwrap());
    assert!(!store.end_grant(by_patient.id, custodian.id, t + secs(4)).await.unwrap(), "ends once");
    assert!(!store.end_grant(by_pharmacy.id, UserId::new(), t + secs(4)).await.unwrap(), "only its holder ends it");
    assert!(!store.end_grant(old.id, custodian.id, t + secs(4)).await.unwrap(), "an expired grant has ended");
    let live = store.live_grants(custodian.id, t + secs(5)).await.unwrap();
    assert_eq!(live, vec![by_pharmacy.clone()]);
    let ended = store.grants_of(custodian.id, 10).await.unwrap().into_iter().find(|g| g.id == by_patient.id).unwrap();
    assert_eq!(ended.ended_at, Some(t + secs(3)));
    assert!(store.live_grants(custodian.id, t + SignedDuration::from_mins(61)).await.unwrap().is_empty());
}

pub async fn address_failures_are_counted_per_window(store: &dyn Store) {
    let address = format!("198.51.100.{}", tag());
    let base = now().as_second() / 60;
    assert_eq!(store.address_failures_since(&address, base - 15).await.unwrap(), 0);
    assert_eq!(store.record_address_failure(&address, base - 20, base - 35, base - 60).await.unwrap(), 1);
    assert_eq!(store.record_address_failure(&address, base - 1, base - 15, base - 60).await.unwrap(), 1);
    assert_eq!(store.record_address_failure(&address, base, base - 15, base - 60).await.unwrap(), 2);
    assert_eq!(store.record_address_failure(&address, base, base - 15, base - 60).await.unwrap(), 3);
    assert_eq!(store.address_failures_since(&address, base - 15).await.unwrap(), 3);
    assert_eq!(store.address_failures_since(&address, base - 30).await.unwrap(), 4);
    // Old buckets are forgotten.
    store.record_address_failure(&address, base, base - 15, base - 10).await.unwrap();
    assert_eq!(store.address_failures_since(&address, base - 30).await.unwrap(), 5 - 1);
    assert_eq!(store.address_failures_since("203.0.113.9-unused", base - 30).await.unwrap(), 0);
}

pub async fn security_events_newest_first(store: &dyn Store) {
    let ph = setup_pharmacy(store).await;
    let t = now();
    let first = SecurityEvent::new(SecurityEventKind::SignInFailed, Some(ph.manager.id), "192.0.2.7", t);
    let second = SecurityEvent::new(SecurityEventKind::Locked, Some(ph.manager.id), "192.0.2.7", t + secs(1))
        .detail("6 failures");
    let by_other =
        SecurityEvent::new(SecurityEventKind::UnlockedByManager, Some(ph.manager.id), "192.0.2.8", t + secs(2))
            .by(ph.manager.id)
            .detail("phoned and confirmed");
    let anonymous = SecurityEvent::new(SecurityEventKind::AddressThrottled, None, "192.0.2.9", t);
    for e in [&first, &second, &by_other, &anonymous] {
        let record = AuditRecord {
            at: e.at,
            actor: e.actor_id.or(e.user_id),
            actor_role: None,
            organisation: "unknown".into(),
            action: format!("sign_in.{}", e.kind.as_str()),
            patient: None,
            address: e.address.clone(),
            purpose: None,
            detail: e.detail.clone(),
        };
        let entry = store.insert_security_event(e, &record).await.unwrap();
        assert_eq!(entry.record, record);
        assert_eq!(store.audit_head().await.unwrap(), Some(entry), "the event's entry ends the chain");
    }
    assert_eq!(
        store.security_events_of_user(ph.manager.id, 10).await.unwrap(),
        vec![by_other.clone(), second.clone(), first]
    );
    assert_eq!(store.security_events_of_user(ph.manager.id, 1).await.unwrap(), vec![by_other]);
}

pub async fn audit_search_by_organisation_and_criteria(store: &dyn Store) {
    let w = world(store).await;
    let org = format!("pharmacy:{}", w.ph.pharmacy.id);
    let (alice, bob) = (UserId::new(), UserId::new());
    let t = now();
    let record =
        |at: Timestamp, actor: UserId, organisation: &str, action: &str, patient: Option<PatientId>| AuditRecord {
            at,
            actor: Some(actor),
            actor_role: Some(Role::Pharmacist),
            organisation: organisation.to_string(),
            action: action.into(),
            patient,
            address: "192.0.2.9".into(),
            purpose: None,
            detail: String::new(),
        };
    let p = Some(w.pa.patient.id);
    let mut seqs = Vec::new();
    for r in [
        record(t, alice, &org, "patient.view_patient", p),
        record(t + secs(10), bob, &org, "patient.process_order", p),
        record(t + secs(20), alice, &org, "sign_in.signed_in", None),
        // Another organisation, but about this pharmacy's patient (a custodian's read).
        record(t + secs(30), UserId::new(), "platform", "patient.view_patient", p),
        // Another organisation about someone else: never this pharmacy's business.
        record(t + secs(40), UserId::new(), "platform", "patient.view_patient", Some(PatientId::new())),
        // A literal % in an action must not act as a wildcard.
        record(t + secs(50), alice, &org, "patient%odd", None),
    ] {
        seqs.push(store.append_audit(&r).await.unwrap().seq);
    }
    let base = AuditFilter { organisation: org.clone(), ..Default::default() };
    let found = |f: AuditFilter| async move {
        store.search_audit(&f, 100).await.unwrap().into_iter().map(|e| e.seq).collect::<Vec<_>>()
    };
    assert_eq!(found(base.clone()).await, vec![seqs[5], seqs[2], seqs[1], seqs[0]], "own organisation, newest first");
    let with_patients = AuditFilter { patients_of_pharmacy: Some(w.ph.pharmacy.id), ..base.clone() };
    assert_eq!(found(with_patients.clone()).await, vec![seqs[5], seqs[3], seqs[2], seqs[1], seqs[0]]);
    assert_eq!(found(AuditFilter { actor: Some(bob), ..base.clone() }).await, vec![seqs[1]]);
    assert_eq!(
        found(AuditFilter { patient: Some(w.pa.patient.id), ..with_patients.clone() }).await,
        vec![seqs[3], seqs[1], seqs[0]]
    );
    assert_eq!(
        found(AuditFilter { action_prefix: Some("patient.".into()), ..base.clone() }).await,
        vec![seqs[1], seqs[0]],
        "prefix, with % and _ taken literally"
    );
    assert_eq!(found(AuditFilter { action_prefix: Some("patient%".into()), ..base.clone() }).await, vec![seqs[5]]);
    assert_eq!(
        found(AuditFilter { from: Some(t + secs(10)), until: Some(t + secs(50)), ..base.clone() }).await,
        vec![seqs[2], seqs[1]],
        "from inclusive, until exclusive"
    );
    assert_eq!(found(AuditFilter { before_seq: Some(seqs[2]), ..base.clone() }).await, vec![seqs[1], seqs[0]]);
    assert_eq!(store.search_audit(&base, 2).await.unwrap().len(), 2, "the limit holds");
    let practice = AuditFilter {
        organisation: format!("practice:{}", w.pr.practice.id),
        patients_of_practice: Some(w.pr.practice.id),
        ..Default::default()
    };
    assert_eq!(found(practice).await, vec![seqs[3], seqs[1], seqs[0]], "the practice sees its patient's entries");
}

pub async fn audit_entries_form_one_chain(store: &dyn Store) {
    use repeatrx_domain::audit::{check_link, AuditRecord};
    let record = |action: String| AuditRecord {
        at: now(),
        actor: Some(UserId::new()),
        actor_role: Some(Role::Pharmacist),
        organisation: format!("pharmacy:{}", tag()),
        action,
        patient: Some(PatientId::new()),
        address: "192.0.2.5".into(),
        purpose: Some("checking an order".into()),
        detail: "conformance".into(),
    };
    let first = store.append_audit(&record(format!("conformance.{}", tag()))).await.unwrap();
    // Concurrent appends still make one chain.
    let records: Vec<AuditRecord> = (0..4).map(|_| record(format!("conformance.{}", tag()))).collect();
    let (a, b, c, d) = tokio::join!(
        store.append_audit(&records[0]),
        store.append_audit(&records[1]),
        store.append_audit(&records[2]),
        store.append_audit(&records[3]),
    );
    let mut seqs: Vec<i64> = [a, b, c, d].into_iter().map(|e| e.unwrap().seq).collect();
    seqs.sort();
    assert_eq!(seqs, (first.seq + 1..=first.seq + 4).collect::<Vec<_>>(), "numbered without gaps or repeats");
    let stored = store.audit_entries(first.seq - 1, 10).await.unwrap();
    assert!(stored.len() >= 5);
    assert_eq!(stored[0], first, "round-trips exactly");
    for w in stored.windows(2) {
        assert_eq!(check_link(Some(&w[0]), &w[1]), Ok(()), "entry {} chains to {}", w[1].seq, w[0].seq);
    }
    let all = store.audit_entries(0, 100_000).await.unwrap();
    assert_eq!(check_link(None, &all[0]), Ok(()));
    assert_eq!(store.audit_entries(first.seq, 2).await.unwrap().len(), 2, "the limit holds");
    let patient = records[2].patient.unwrap();
    let mine = store.audit_entries_for_patient(patient, 10).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].record, records[2]);
    let again =
        store.append_audit(&AuditRecord { action: "conformance.again".into(), ..records[2].clone() }).await.unwrap();
    assert!(store.audit_head().await.unwrap().is_some_and(|head| head.seq >= again.seq), "the head is the newest");
    let mine = store.audit_entries_for_patient(patient, 10).await.unwrap();
    assert_eq!(mine.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![again.seq, mine[1].seq], "newest first");
    assert_eq!(store.audit_entries_for_patient(patient, 1).await.unwrap().len(), 1);
    assert!(store.audit_entries_for_patient(PatientId::new(), 10).await.unwrap().is_empty());
}
