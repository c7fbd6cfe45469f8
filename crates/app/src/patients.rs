//! Patients and their repeat lists: registration by pharmacy staff, the repeat list with what can
//! be ordered and why not, and repeat authorisations issued by prescribers or kept by pharmacies.
use crate::access::own_patient;
use crate::error::{AppError, AppResult};
use crate::App;
use jiff::civil::Date;
use repeatrx_domain::access::{Action, Actor, Membership, Role};
use repeatrx_domain::catalogue::{Catalogue, Medicine};
use repeatrx_domain::ids::{PatientId, PharmacyId, PracticeId, RepeatItemId, UserId};
use repeatrx_domain::patient::{parse_phone, DateOfBirth, NhsNumber, Patient};
use repeatrx_domain::repeat::{Orderability, RepeatItem, RepeatTerms, RepeatTermsInput};
use repeatrx_domain::text::{optional_text, Email, PersonName};
use repeatrx_domain::DomainError;
use repeatrx_store::{PatientQuery, UserAccount, WhichLines};
use serde::Deserialize;

/// One line of the repeat list as shown to patient and staff.
#[derive(Debug, Clone)]
pub struct RepeatLine {
    pub item: RepeatItem,
    pub orderability: Orderability,
}

/// Staff input to register a patient.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RegisterPatientInput {
    pub given_name: String,
    pub family_name: String,
    pub date_of_birth: String,
    pub nhs_number: String,
    pub practice_id: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub phone: String,
    #[serde(default)]
    pub address: String,
    /// Create an online account for the patient (needs an email address).
    #[serde(default)]
    pub create_account: bool,
}

/// A newly registered patient and, when an online account was opened, the address its
/// invitation (a link to choose a password) went to.
#[derive(Debug)]
pub struct Registered {
    pub patient: Patient,
    pub invited: Option<Email>,
}

/// Search criteria typed by staff.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PatientSearch {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub dob: String,
    #[serde(default)]
    pub nhs: String,
}

impl PatientSearch {
    pub fn is_empty(&self) -> bool {
        self.name.trim().is_empty() && self.dob.trim().is_empty() && self.nhs.trim().is_empty()
    }

    pub fn to_query(&self) -> AppResult<PatientQuery> {
        let name = self.name.trim();
        let dob = self.dob.trim();
        let nhs: String = self.nhs.chars().filter(|c| c.is_ascii_digit()).collect();
        if !self.nhs.trim().is_empty() && nhs.is_empty() {
            return Err(AppError::Invalid("nhs: use the digits of the NHS number".into()));
        }
        Ok(PatientQuery {
            name: (!name.is_empty()).then(|| name.chars().take(50).collect()),
            date_of_birth: if dob.is_empty() {
                None
            } else {
                Some(
                    dob.parse::<Date>()
                        .map_err(|_| AppError::Invalid("dob: write the date of birth as YYYY-MM-DD".into()))?,
                )
            },
            nhs_number: (!nhs.is_empty()).then_some(nhs),
        })
    }
}

impl App {
    /// The patient id a request is about: a patient may only mean themselves.
    pub fn resolve_patient(&self, actor: &Actor, requested: Option<PatientId>) -> AppResult<PatientId> {
        match (own_patient(actor), requested) {
            (Some(me), None) => Ok(me),
            (Some(me), Some(p)) if p == me => Ok(me),
            (Some(_), Some(_)) => Err(AppError::NotFound("patient")),
            (None, Some(p)) => Ok(p),
            (None, None) => Err(AppError::Invalid("patient: say which patient".into())),
        }
    }

    pub async fn patient_details(&self, actor: &Actor, patient: PatientId) -> AppResult<Patient> {
        self.patient_for(actor, Action::ViewPatient, patient).await
    }

    /// The whole repeat list, stopped items last, each with whether it can be ordered today.
    pub async fn repeat_list(&self, actor: &Actor, patient: PatientId) -> AppResult<(Patient, Vec<RepeatLine>)> {
        let (patient, held) = self.patient_lines_for(actor, Action::ViewPatient, patient, WhichLines::All).await?;
        Ok((patient, self.repeat_lines(held)))
    }

    /// Each line with whether it can be ordered today, stopped lines last.
    pub(crate) fn repeat_lines(&self, held: Vec<(RepeatItem, bool)>) -> Vec<RepeatLine> {
        let today = self.clock.today();
        let mut lines: Vec<RepeatLine> = held
            .into_iter()
            .map(|(item, held)| {
                let orderability = item.orderability(today, held, &self.settings.ordering);
                RepeatLine { item, orderability }
            })
            .collect();
        lines.sort_by_key(|l| !l.item.active);
        lines
    }

    /// Pharmacy staff register a patient of their pharmacy, optionally with an online account.
    pub async fn register_patient(&self, actor: &Actor, input: &RegisterPatientInput) -> AppResult<Registered> {
        let pharmacy_id = match actor.membership {
            Membership::Pharmacy(p) if repeatrx_domain::access::role_permits(actor.role, Action::RegisterPatient) => p,
            _ => return Err(AppError::Forbidden),
        };
        // Every field is checked before any is refused, so the form can list all problems at once.
        let mut problems = Vec::new();
        fn keep<T>(r: Result<T, DomainError>, problems: &mut Vec<String>) -> Option<T> {
            r.map_err(|e| problems.push(e.to_string())).ok()
        }
        let today = self.clock.today();
        let practice_id = match input.practice_id.parse::<PracticeId>() {
            Ok(id) if self.store.practice(id).await?.is_some() => Some(id),
            _ => {
                problems.push("practice: choose the patient's practice".to_string());
                None
            }
        };
        let given_name = keep(PersonName::parse("given_name", &input.given_name), &mut problems);
        let family_name = keep(PersonName::parse("family_name", &input.family_name), &mut problems);
        let date_of_birth = keep(DateOfBirth::parse(&input.date_of_birth, today), &mut problems);
        let nhs_number = keep(NhsNumber::parse(&input.nhs_number), &mut problems);
        let email = match input.email.trim() {
            "" => None,
            e => keep(Email::parse(e), &mut problems),
        };
        if input.create_account && input.email.trim().is_empty() {
            problems.push("email: an online account needs the patient's email address".to_string());
        }
        let phone = keep(parse_phone(&input.phone), &mut problems).flatten();
        let address = keep(optional_text("address", &input.address, 300), &mut problems).flatten();
        let (Some(practice_id), Some(given_name), Some(family_name), Some(date_of_birth), Some(nhs_number), true) =
            (practice_id, given_name, family_name, date_of_birth, nhs_number, problems.is_empty())
        else {
            return Err(AppError::InvalidFields(problems));
        };
        let patient = Patient {
            id: PatientId::new(),
            pharmacy_id,
            practice_id,
            given_name,
            family_name,
            date_of_birth,
            nhs_number,
            email: email.clone(),
            phone,
            address,
        };
        let account = if input.create_account {
            let email = email.ok_or_else(|| {
                AppError::Invalid("email: an online account needs the patient's email address".into())
            })?;
            Some(UserAccount {
                id: UserId::new(),
                email,
                display_name: patient.full_name(),
                role: Role::Patient,
                pharmacy_id: Some(pharmacy_id),
                practice_id: Some(practice_id),
                patient_id: Some(patient.id),
                password_hash: crate::staff::INVITED.into(),
                active: true,
                created_at: self.clock.now(),
            })
        } else {
            None
        };
        self.store.insert_patient(&patient, account.as_ref()).await.map_err(|e| match e {
            repeatrx_store::StoreError::Conflict(_) => {
                AppError::Conflict("email: that email address already has an account".into())
            }
            other => other.into(),
        })?;
        let invited = match &account {
            Some(user) => {
                // Nobody at the pharmacy ever knows the patient's password: they choose it from the
                // emailed link (or, should this email fail, through "forgot password").
                let pharmacy = self.store.pharmacy(pharmacy_id).await?.map(|p| p.name).unwrap_or_default();
                let lead = format!(
                    "{pharmacy} has opened a RepeatRx account for you, to order your repeat prescriptions online."
                );
                let (link, email) = self.invitation_for(user, &lead);
                self.store.insert_account_token(&link, &[email]).await?;
                Some(user.email.clone())
            }
            None => None,
        };
        tracing::info!(patient = %patient.id, by = %actor.user_id, "patient registered");
        Ok(Registered { patient, invited })
    }

    /// The practice a patient is registered with (organisation details, not patient data).
    pub async fn practice_of(&self, actor: &Actor, patient: &Patient) -> AppResult<Option<repeatrx_store::Practice>> {
        crate::access::check(actor, Action::ViewPatient, crate::access::patient_scope(patient), "patient")?;
        Ok(self.store.practice(patient.practice_id).await?)
    }

    /// The demo's outbox page: what the demo would have emailed (demo deployments only).
    pub async fn demo_outbox(&self, limit: u32) -> AppResult<Vec<repeatrx_store::OutgoingEmail>> {
        if !self.settings.demo {
            return Err(AppError::NotFound("page"));
        }
        let mut emails = self.store.recent_emails(limit).await?;
        emails.sort_by_key(|e| std::cmp::Reverse(e.created_at));
        Ok(emails)
    }

    /// A pharmacy's patients matching the search (all of them, alphabetically, when empty).
    pub async fn find_patients(&self, actor: &Actor, search: &PatientSearch) -> AppResult<Vec<Patient>> {
        let pharmacy = self.my_pharmacy(actor, Action::ViewPharmacyQueue)?;
        Ok(self.store.search_patients(pharmacy, &search.to_query()?, 100).await?)
    }

    pub(crate) fn my_pharmacy(&self, actor: &Actor, action: Action) -> AppResult<PharmacyId> {
        match actor.membership {
            Membership::Pharmacy(p) if repeatrx_domain::access::role_permits(actor.role, action) => Ok(p),
            _ => Err(AppError::Forbidden),
        }
    }

    /// Adds a repeat authorisation to a patient's list (prescriber of the patient's practice, or
    /// pharmacy staff keeping the list the practice sent them).
    pub async fn add_repeat_item(
        &self,
        actor: &Actor,
        patient: PatientId,
        input: &RepeatTermsInput,
    ) -> AppResult<RepeatItem> {
        let patient = self.patient_for(actor, Action::EditRepeatList, patient).await?;
        let terms = RepeatTerms::new(input, self.clock.today())?;
        let item = RepeatItem::new(patient.id, terms);
        self.store.insert_repeat_item(&item).await?;
        tracing::info!(item = %item.id, by = %actor.user_id, "repeat item added");
        Ok(item)
    }

    /// Staff search the medication catalogue (to add a repeat item); patients may not.
    pub fn search_catalogue(&self, actor: &Actor, query: &str, limit: usize) -> AppResult<Vec<&'static Medicine>> {
        if !repeatrx_domain::access::role_permits(actor.role, Action::SearchCatalogue) {
            return Err(AppError::Forbidden);
        }
        Ok(Catalogue::builtin().search(query, limit))
    }

    /// Stops a repeat item; it stays on the list, marked stopped.
    pub async fn stop_repeat_item(&self, actor: &Actor, item: RepeatItemId) -> AppResult<RepeatItem> {
        let mut found = self.store.repeat_item(item).await?.ok_or(AppError::NotFound("repeat item"))?;
        self.patient_for(actor, Action::EditRepeatList, found.patient_id).await.map_err(|e| match e {
            AppError::NotFound(_) => AppError::NotFound("repeat item"),
            other => other,
        })?;
        // Whether it is still active is decided in the write: a stop racing another is refused.
        if !found.active || !self.store.stop_repeat_item(item).await? {
            return Err(AppError::IllegalTransition("that item is already stopped".into()));
        }
        found.active = false;
        Ok(found)
    }
}
