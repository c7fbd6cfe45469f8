//! Synthetic data for `repeatrx demo` and for tests: two pharmacies, three practices, staff of
//! every kind, patients with realistic repeat lists, and orders in every stage. Every name,
//! NHS number and address is made up; emails use the reserved `example` domain.
use crate::auth::hash_password;
use crate::error::{AppError, AppResult};
use crate::orders::SubmitOrderInput;
use crate::App;
use jiff::{SignedDuration, Timestamp, ToSpan};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use repeatrx_domain::access::{Actor, Membership, Role};
use repeatrx_domain::catalogue::Catalogue;
use repeatrx_domain::clock::Clock;
use repeatrx_domain::ids::{PatientId, PharmacyId, PracticeId, UserId};
use repeatrx_domain::order::{Decision, ItemEvent, RejectionCode};
use repeatrx_domain::patient::{DateOfBirth, Fulfilment, NhsNumber, Password, PasswordOwner, Patient};
use repeatrx_domain::repeat::{RepeatItem, RepeatTerms, RepeatTermsInput};
use repeatrx_domain::text::{Email, PersonName};
use repeatrx_store::{Pharmacy, Practice, UserAccount};
use std::sync::Arc;

/// Every demo account's password (demo databases only).
pub const DEMO_PASSWORD: &str = "demo-password-2026";

/// The sign-ins printed by `repeatrx demo` and shown on the demo's sign-in page.
pub const DEMO_ACCOUNTS: [(&str, &str); 7] = [
    ("patient@demo.example", "Patient: Ann Jones"),
    ("pharmacist@demo.example", "Pharmacist at Riverside Pharmacy"),
    ("manager@demo.example", "Manager of Riverside Pharmacy"),
    ("prescriber@demo.example", "Prescriber at Riverside Surgery"),
    ("receptionist@demo.example", "Receptionist at Riverside Surgery"),
    ("operator@demo.example", "Platform operator"),
    ("custodian@demo.example", "Live-data custodian (break-glass access)"),
];

/// The authenticator secret of every demo staff account (demo databases only; printed at start
/// and the demo's code page shows the current code, so the demo needs no phone). Real staff
/// accounts get their own random secret when they enrol.
pub const DEMO_TOTP_SECRET: &str = "OJSXAZLBORZHQLLEMVWW6LLUN52HAIJB";

/// The current code of the demo staff accounts.
pub fn demo_code(now: jiff::Timestamp) -> String {
    crate::totp::code_at_step(DEMO_TOTP_SECRET, crate::totp::step_of(now.as_second())).unwrap_or_default()
}

impl App {
    /// For the demo's code page: a code this demo account has not used yet (this step's or the
    /// next one's), or `None` when both are used and the next step must be waited for. Only for
    /// accounts on the shared demo secret, and only in demo deployments.
    pub async fn demo_code_for(&self, user: repeatrx_domain::ids::UserId) -> AppResult<Option<String>> {
        if !self.settings.demo {
            return Ok(None);
        }
        let Some(security) = self.store.account_security(user).await? else { return Ok(None) };
        if security.totp_secret.as_deref() != Some(DEMO_TOTP_SECRET) {
            return Ok(None);
        }
        let now = crate::totp::step_of(self.clock.now().as_second());
        let step = now.max(security.totp_last_step + 1);
        if step > now + 1 {
            return Ok(None);
        }
        Ok(Some(crate::totp::code_at_step(DEMO_TOTP_SECRET, step)?))
    }
}

/// Every staff account of the demo data uses [`DEMO_TOTP_SECRET`], with no recovery codes.
async fn enrol_demo_staff(app: &App) -> AppResult<()> {
    use repeatrx_store::AccountScope;
    let mut scopes = vec![AccountScope::ManagersAndPlatform];
    scopes.extend(app.store.list_pharmacies().await?.into_iter().map(|p| AccountScope::Pharmacy(p.id)));
    scopes.extend(app.store.list_practices().await?.into_iter().map(|p| AccountScope::Practice(p.id)));
    let now = app.clock.now();
    for scope in scopes {
        for (user, _) in app.store.list_accounts(scope).await? {
            if !user.role.is_staff() {
                continue;
            }
            app.store
                .update_account_security(user.id, &mut |s| {
                    s.totp_secret = Some(DEMO_TOTP_SECRET.to_string());
                    s.totp_enrolled_at = Some(now);
                    true
                })
                .await?;
        }
    }
    Ok(())
}

/// The marker the demo leaves in the database, so it is seeded only once.
pub const SEEDED_KEY: &str = "demo_seeded_at";

/// Synthetic given names (the demo's, and the benchmark's data generator's).
pub const GIVEN: &[&str] = &[
    "Olivia", "Amelia", "Isla", "Ava", "Mia", "Grace", "Freya", "Lily", "Harry", "George", "Noah", "Oliver", "Arthur",
    "Leo", "Oscar", "Jack", "Priya", "Aisha", "Mohammed", "Fatima", "Wei", "Siobhan", "Rhys", "Eilidh", "Tomasz",
    "Zofia",
];
/// Synthetic family names.
pub const FAMILY: &[&str] = &[
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel", "Robinson", "Wright",
    "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Khan", "Lewis", "Clarke", "Hughes", "Murphy",
    "Nowak",
];
/// Synthetic street names.
pub const STREETS: &[&str] =
    &["Mill Lane", "Church Road", "Station Street", "Park Avenue", "Victoria Road", "High Street"];

/// Medicines commonly on demo repeat lists (searched in the catalogue by these words).
pub const COMMON: &[&str] = &[
    "atorvastatin 20",
    "amlodipine 5",
    "ramipril 5",
    "metformin 500",
    "levothyroxine 50",
    "omeprazole 20",
    "salbutamol",
    "sertraline 50",
    "lansoprazole 30",
    "bisoprolol 2.5",
    "simvastatin 40",
    "losartan 50",
];

/// A clock fixed at a moment, so that demo history can be written in the past.
struct AtClock(Timestamp);
impl Clock for AtClock {
    fn now(&self) -> Timestamp {
        self.0
    }
}

/// Repeat terms for the first catalogue medicine matching `query` (or a free-text one), with
/// a review date `review_in_days` from `today`.
pub fn terms(
    query: &str,
    cycle: i64,
    issues: i64,
    review_in_days: i64,
    today: jiff::civil::Date,
) -> AppResult<RepeatTerms> {
    let found = Catalogue::builtin().search(query, 1).into_iter().next();
    let input = match found {
        Some(m) => RepeatTermsInput {
            medicine_code: Some(m.code.clone()),
            quantity: i64::from(m.pack_size.max(1)),
            directions: directions(&m.form),
            cycle_days: cycle,
            issues,
            review_date: today.saturating_add(review_in_days.days()).to_string(),
            ..Default::default()
        },
        None => RepeatTermsInput {
            drug_name: query.to_string(),
            strength: "as prescribed".into(),
            form: "tablets".into(),
            quantity: 28,
            directions: "As directed".into(),
            cycle_days: cycle,
            issues,
            review_date: today.saturating_add(review_in_days.days()).to_string(),
            ..Default::default()
        },
    };
    Ok(RepeatTerms::new(&input, today)?)
}

fn directions(form: &str) -> String {
    let f = form.to_lowercase();
    if f.contains("inhaler") {
        "Two puffs when required".into()
    } else if f.contains("cream") || f.contains("ointment") || f.contains("emollient") {
        "Apply twice a day".into()
    } else if f.contains("drops") {
        "One drop in each eye at night".into()
    } else {
        "One to be taken each day".into()
    }
}

struct Seeder {
    app: App,
    hash: String,
    rng: StdRng,
}

impl Seeder {
    fn at(&self, ago: SignedDuration) -> App {
        let mut app = self.app.clone();
        app.clock = Arc::new(AtClock(self.app.clock.now() - ago));
        app
    }

    fn user(
        &self,
        email: &str,
        name: &str,
        role: Role,
        pharmacy: Option<PharmacyId>,
        practice: Option<PracticeId>,
    ) -> AppResult<UserAccount> {
        Ok(UserAccount {
            id: UserId::new(),
            email: Email::parse(email)?,
            display_name: name.into(),
            role,
            pharmacy_id: pharmacy,
            practice_id: practice,
            patient_id: None,
            password_hash: self.hash.clone(),
            active: true,
            created_at: self.app.clock.now(),
        })
    }

    fn nhs(&mut self) -> NhsNumber {
        loop {
            if let Some(n) = NhsNumber::from_prefix(self.rng.gen_range(400_000_000..=999_999_999)) {
                return n;
            }
        }
    }

    async fn patient(
        &mut self,
        given: &str,
        family: &str,
        pharmacy: PharmacyId,
        practice: PracticeId,
        email: Option<&str>,
    ) -> AppResult<Patient> {
        let today = self.app.clock.today();
        let age_days = self.rng.gen_range(20 * 365..90 * 365);
        let patient = Patient {
            id: PatientId::new(),
            pharmacy_id: pharmacy,
            practice_id: practice,
            given_name: PersonName::parse("given_name", given)?,
            family_name: PersonName::parse("family_name", family)?,
            date_of_birth: DateOfBirth::new(today.saturating_sub(age_days.days()), today)?,
            nhs_number: self.nhs(),
            email: email.map(Email::parse).transpose()?,
            phone: Some(format!("07700 900{:03}", self.rng.gen_range(0..1000))),
            address: Some(format!(
                "{} {}, Exampleton, EX{} {}AB",
                self.rng.gen_range(1..200),
                STREETS[self.rng.gen_range(0..STREETS.len())],
                self.rng.gen_range(1..20),
                self.rng.gen_range(1..10)
            )),
        };
        let account = match &patient.email {
            Some(e) => Some(UserAccount {
                patient_id: Some(patient.id),
                ..self.user(e.as_str(), &patient.full_name(), Role::Patient, Some(pharmacy), Some(practice))?
            }),
            None => None,
        };
        self.app.store.insert_patient(&patient, account.as_ref()).await?;
        Ok(patient)
    }

    async fn item(&self, patient: &Patient, t: RepeatTerms) -> AppResult<RepeatItem> {
        let item = RepeatItem::new(patient.id, t);
        self.app.store.insert_repeat_item(&item).await?;
        Ok(item)
    }
}

fn actor(user: &UserAccount, membership: Membership) -> Actor {
    Actor { user_id: user.id, role: user.role, membership, address: None }
}

/// Seeds the demo data set once; a database that already has it is left alone.
pub async fn seed(app: &App) -> AppResult<bool> {
    if app.store.get_meta(SEEDED_KEY).await?.is_some() {
        return Ok(false);
    }
    let password = Password::new(DEMO_PASSWORD, PasswordOwner::Staff, &[])?;
    let mut s = Seeder { app: app.clone(), hash: hash_password(&password).await?, rng: StdRng::seed_from_u64(2026) };
    let now = app.clock.now();
    let today = app.clock.today();

    let riverside = Pharmacy {
        id: PharmacyId::new(),
        name: "Riverside Pharmacy".into(),
        ods_code: "FA101".into(),
        address: "2 Quay Street, Exampleton, EX1 1AA".into(),
        email: Some(Email::parse("riverside.pharmacy@demo.example")?),
        created_at: now,
    };
    let hilltop = Pharmacy {
        id: PharmacyId::new(),
        name: "Hilltop Chemist".into(),
        ods_code: "FB202".into(),
        address: "14 Hill Road, Exampleton, EX4 2BB".into(),
        email: None,
        created_at: now,
    };
    let manager = s.user("manager@demo.example", "Sam Okafor", Role::PharmacyManager, Some(riverside.id), None)?;
    app.store.insert_pharmacy(&riverside, &manager).await?;
    let hill_manager =
        s.user("hilltop.manager@demo.example", "Rosa Lind", Role::PharmacyManager, Some(hilltop.id), None)?;
    app.store.insert_pharmacy(&hilltop, &hill_manager).await?;
    let pharmacist = s.user("pharmacist@demo.example", "Dev Mistry", Role::Pharmacist, Some(riverside.id), None)?;
    app.store.insert_user(&pharmacist).await?;
    app.store
        .insert_user(&s.user("dispenser@demo.example", "Kim Hale", Role::Dispenser, Some(riverside.id), None)?)
        .await?;
    app.store
        .insert_user(&s.user("counter@demo.example", "Lee Marsh", Role::CounterAssistant, Some(riverside.id), None)?)
        .await?;

    let mk_practice = |name: &str, ods: &str, on: bool| Practice {
        id: PracticeId::new(),
        name: name.into(),
        ods_code: ods.into(),
        address: "Exampleton".into(),
        email: None,
        on_repeatrx: on,
        created_at: now,
    };
    let surgery = mk_practice("Riverside Surgery", "Y01001", true);
    let medical = mk_practice("Hilltop Medical Centre", "Y02002", true);
    let old_mill = mk_practice("Old Mill Practice", "Y03003", false);
    let prescriber = s.user("prescriber@demo.example", "Dr Nadia Hussain", Role::Prescriber, None, Some(surgery.id))?;
    app.store
        .insert_practice(
            &surgery,
            Some(&s.user(
                "practice.manager@demo.example",
                "Beth Cole",
                Role::PracticeManager,
                None,
                Some(surgery.id),
            )?),
        )
        .await?;
    app.store.insert_user(&prescriber).await?;
    app.store
        .insert_user(&s.user("receptionist@demo.example", "Tom Reid", Role::Receptionist, None, Some(surgery.id))?)
        .await?;
    app.store
        .insert_practice(
            &medical,
            Some(&s.user(
                "hilltop.prescriber@demo.example",
                "Dr Owen Price",
                Role::Prescriber,
                None,
                Some(medical.id),
            )?),
        )
        .await?;
    app.store.insert_practice(&old_mill, None).await?;
    app.store.insert_user(&s.user("operator@demo.example", "Platform Operator", Role::Operator, None, None)?).await?;
    // The two live-data custodians the platform may have (P8): each is told when the other
    // opens break-glass access.
    for (email, name) in [("custodian@demo.example", "Casey Quinn"), ("custodian2@demo.example", "Robin Vale")] {
        app.store.insert_user(&s.user(email, name, Role::Custodian, None, None)?).await?;
    }

    let pharmacist_actor = actor(&pharmacist, Membership::Pharmacy(riverside.id));
    let prescriber_actor = actor(&prescriber, Membership::Practice(surgery.id));

    // Ann Jones, the demo patient: something to order now, and an example of each refusal.
    let ann = s.patient("Ann", "Jones", riverside.id, surgery.id, Some("patient@demo.example")).await?;
    s.item(&ann, terms("atorvastatin 20", 28, 6, 200, today)?).await?;
    s.item(&ann, terms("salbutamol", 56, 4, 200, today)?).await?;
    let mut early = RepeatItem::new(ann.id, terms("amlodipine 5", 28, 6, 200, today)?);
    early.record_issue(today.saturating_sub(8.days()))?;
    app.store.insert_repeat_item(&early).await?;
    let mut review = RepeatItem::new(ann.id, terms("levothyroxine 50", 28, 6, 200, today)?);
    review.terms.review_date = today.saturating_sub(3.days());
    app.store.insert_repeat_item(&review).await?;
    if let Some(cd) = Catalogue::builtin().all().iter().find(|m| m.schedule.blocks_online_ordering()) {
        let input = RepeatTermsInput {
            medicine_code: Some(cd.code.clone()),
            quantity: 56,
            directions: "One twice a day".into(),
            cycle_days: 28,
            issues: 3,
            review_date: today.saturating_add(90.days()).to_string(),
            ..Default::default()
        };
        s.item(&ann, RepeatTerms::new(&input, today)?).await?;
    }
    let ann_actor = Actor {
        user_id: app
            .store
            .user_for_patient(ann.id)
            .await?
            .map(|u| u.id)
            .ok_or_else(|| AppError::Internal("demo patient account".into()))?,
        role: Role::Patient,
        membership: Membership::Patient { patient: ann.id, pharmacy: ann.pharmacy_id, practice: ann.practice_id },
        address: None,
    };
    // A finished order from last month, so Ann has history.
    let omeprazole = s.item(&ann, terms("omeprazole 20", 28, 6, 200, today)?).await?;
    let past = s.at(SignedDuration::from_hours(24 * 30));
    let o = past
        .submit_order(
            &ann_actor,
            ann.id,
            &SubmitOrderInput { items: vec![omeprazole.id], fulfilment: Fulfilment::Collection, note: String::new() },
        )
        .await?;
    past.accept_order(&pharmacist_actor, o.id).await?;
    past.send_to_prescriber(&pharmacist_actor, o.id).await?;
    past.record_decision(&prescriber_actor, o.id, o.items[0].id, Decision::Approve).await?;
    past.dispense_step(&pharmacist_actor, o.id, o.items[0].id, ItemEvent::ReadyToCollect).await?;
    past.dispense_step(&pharmacist_actor, o.id, o.items[0].id, ItemEvent::Collected).await?;

    // Other patients with orders at every stage, some of them overdue.
    let practices = [surgery.id, surgery.id, old_mill.id];
    for n in 0..24 {
        let given = GIVEN[n % GIVEN.len()];
        let family = FAMILY[(n * 7 + 3) % FAMILY.len()];
        let (pharmacy, practice) = if n % 6 == 5 { (hilltop.id, medical.id) } else { (riverside.id, practices[n % 3]) };
        let email =
            (n % 4 != 3).then(|| format!("{}.{}{}@demo.example", given.to_lowercase(), family.to_lowercase(), n));
        let p = s.patient(given, family, pharmacy, practice, email.as_deref()).await?;
        let mut items = Vec::new();
        for k in 0..s.rng.gen_range(1..4) {
            items.push(s.item(&p, terms(COMMON[(n + k * 5) % COMMON.len()], 28, 6, 180, today)?).await?);
        }
        if pharmacy != riverside.id {
            continue;
        }
        let stage = n % 7;
        if stage == 6 {
            continue;
        }
        let age = SignedDuration::from_hours(s.rng.gen_range(1..60));
        let at = s.at(age);
        let who = Actor {
            user_id: pharmacist.id,
            role: Role::Pharmacist,
            membership: Membership::Pharmacy(riverside.id),
            address: None,
        };
        let fulfilment = if n % 2 == 0 { Fulfilment::Collection } else { Fulfilment::Delivery };
        let order = at
            .submit_order(
                &who,
                p.id,
                &SubmitOrderInput { items: items.iter().map(|i| i.id).collect(), fulfilment, note: String::new() },
            )
            .await?;
        if stage >= 1 {
            at.accept_order(&who, order.id).await?;
        }
        if stage >= 2 {
            at.send_to_prescriber(&who, order.id).await?;
        }
        if stage >= 3 {
            for (k, item) in order.items.iter().enumerate() {
                let decision = if k == 1 && stage == 3 {
                    Decision::Reject {
                        code: RejectionCode::MedicationReviewNeeded,
                        note: None,
                        next_step: RejectionCode::MedicationReviewNeeded.default_next_step().into(),
                    }
                } else {
                    Decision::Approve
                };
                if practice == surgery.id {
                    at.record_decision(&prescriber_actor, order.id, item.id, decision).await?;
                } else {
                    at.record_decision(&who, order.id, item.id, decision).await?;
                }
            }
        }
        if stage >= 4 {
            let step = if fulfilment == Fulfilment::Collection {
                ItemEvent::ReadyToCollect
            } else {
                ItemEvent::ReadyToDispatch
            };
            for item in &order.items {
                at.dispense_step(&who, order.id, item.id, step).await?;
            }
        }
        if stage == 5 {
            let step = if fulfilment == Fulfilment::Collection { ItemEvent::Collected } else { ItemEvent::Dispatched };
            for item in &order.items {
                at.dispense_step(&who, order.id, item.id, step).await?;
            }
        }
    }
    enrol_demo_staff(app).await?;
    app.store.set_meta(SEEDED_KEY, &now.to_string()).await?;
    tracing::info!("demo data seeded");
    Ok(true)
}
