//! Platform operators create pharmacies and practices with their first manager, and nothing
//! more: no use case here returns patient data.
use crate::auth::{hash_password, initial_password};
use crate::error::{AppError, AppResult};
use crate::App;
use repeatrx_domain::access::{Action, Actor, Membership, Role, Scope};
use repeatrx_domain::ids::{PharmacyId, PracticeId, UserId};
use repeatrx_domain::text::{optional_text, required_line, Email};
use repeatrx_store::{Pharmacy, Practice, UserAccount};
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct NewOrganisationInput {
    pub name: String,
    pub ods_code: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub email: String,
    pub manager_name: String,
    pub manager_email: String,
    /// Practices only: whether its prescribers authorise on RepeatRx.
    #[serde(default)]
    pub on_repeatrx: bool,
}

/// A new organisation: its first manager has been emailed an invitation to choose their own
/// password, so nobody else ever knows it.
pub struct Onboarded<T> {
    pub organisation: T,
    pub manager_email: Email,
    /// When the invitation link stops working (the manager can then use "forgot password").
    pub invitation_expires_at: jiff::Timestamp,
}

fn ods_code(s: &str) -> AppResult<String> {
    let t = s.trim().to_uppercase();
    if !(3..=10).contains(&t.len()) || !t.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(AppError::Invalid(
            "ods_code: must be the organisation's ODS code, 3 to 10 letters and digits".into(),
        ));
    }
    Ok(t)
}

impl App {
    /// The actor the `repeatrx admin` console acts as: whoever can run it already holds the
    /// server's configuration, so it acts as a platform operator.
    pub fn console_actor() -> Actor {
        Actor {
            user_id: UserId::from_uuid(uuid::Uuid::nil()),
            role: Role::Operator,
            membership: Membership::Platform,
            address: None,
        }
    }

    /// The first manager's account, which cannot sign in until they choose a password.
    fn first_manager(
        &self,
        input: &NewOrganisationInput,
        role: Role,
        pharmacy: Option<PharmacyId>,
        practice: Option<PracticeId>,
    ) -> AppResult<UserAccount> {
        let email = Email::parse(&input.manager_email)
            .map_err(|_| AppError::Invalid("manager_email: must be an email address".into()))?;
        let name = required_line("manager_name", &input.manager_name, 100)?;
        Ok(UserAccount {
            id: UserId::new(),
            email,
            display_name: name,
            role,
            pharmacy_id: pharmacy,
            practice_id: practice,
            patient_id: None,
            password_hash: crate::staff::INVITED.into(),
            active: true,
            created_at: self.clock.now(),
        })
    }

    /// Emails the first manager their invitation. Should this fail after the organisation was
    /// stored, the manager can still get in with "forgot password" (their account is active).
    async fn invite_first_manager(&self, manager: &UserAccount, organisation: &str) -> AppResult<jiff::Timestamp> {
        let lead =
            format!("You have been invited to RepeatRx as {} at {organisation}.", manager.role.label().to_lowercase());
        let (link, email) = self.invitation_for(manager, &lead);
        self.store.insert_account_token(&link, &[email]).await?;
        Ok(link.expires_at)
    }

    fn taken(e: repeatrx_store::StoreError) -> AppError {
        match e {
            repeatrx_store::StoreError::Conflict(_) => {
                AppError::Conflict("manager_email: that email address already has an account".into())
            }
            other => other.into(),
        }
    }

    fn org_email(s: &str) -> AppResult<Option<Email>> {
        match s.trim() {
            "" => Ok(None),
            e => Ok(Some(Email::parse(e)?)),
        }
    }

    pub async fn create_pharmacy(&self, actor: &Actor, input: &NewOrganisationInput) -> AppResult<Onboarded<Pharmacy>> {
        crate::access::check(actor, Action::ManageOrganisations, Scope::Platform, "organisation")?;
        let pharmacy = Pharmacy {
            id: PharmacyId::new(),
            name: required_line("name", &input.name, 120)?,
            ods_code: ods_code(&input.ods_code)?,
            address: optional_text("address", &input.address, 300)?.unwrap_or_default(),
            email: Self::org_email(&input.email)?,
            created_at: self.clock.now(),
        };
        let manager = self.first_manager(input, Role::PharmacyManager, Some(pharmacy.id), None)?;
        self.store.insert_pharmacy(&pharmacy, &manager).await.map_err(Self::taken)?;
        let invitation_expires_at = self.invite_first_manager(&manager, &pharmacy.name).await?;
        tracing::info!(pharmacy = %pharmacy.id, by = %actor.user_id, "pharmacy created");
        self.audit_act(
            actor,
            "admin.create_pharmacy",
            None,
            format!("pharmacy {} with manager {}", pharmacy.id, manager.id),
        )
        .await?;
        Ok(Onboarded { organisation: pharmacy, manager_email: manager.email, invitation_expires_at })
    }

    pub async fn create_practice(&self, actor: &Actor, input: &NewOrganisationInput) -> AppResult<Onboarded<Practice>> {
        crate::access::check(actor, Action::ManageOrganisations, Scope::Platform, "organisation")?;
        let practice = Practice {
            id: PracticeId::new(),
            name: required_line("name", &input.name, 120)?,
            ods_code: ods_code(&input.ods_code)?,
            address: optional_text("address", &input.address, 300)?.unwrap_or_default(),
            email: Self::org_email(&input.email)?,
            on_repeatrx: input.on_repeatrx,
            created_at: self.clock.now(),
        };
        let manager = self.first_manager(input, Role::PracticeManager, None, Some(practice.id))?;
        self.store.insert_practice(&practice, Some(&manager)).await.map_err(Self::taken)?;
        let invitation_expires_at = self.invite_first_manager(&manager, &practice.name).await?;
        tracing::info!(practice = %practice.id, by = %actor.user_id, "practice created");
        self.audit_act(
            actor,
            "admin.create_practice",
            None,
            format!("practice {} with manager {}", practice.id, manager.id),
        )
        .await?;
        Ok(Onboarded { organisation: practice, manager_email: manager.email, invitation_expires_at })
    }

    /// Organisations for the operator's page (no patient data).
    pub async fn organisations(&self, actor: &Actor) -> AppResult<(Vec<Pharmacy>, Vec<Practice>)> {
        crate::access::check(actor, Action::ManageOrganisations, Scope::Platform, "organisation")?;
        Ok((self.store.list_pharmacies().await?, self.store.list_practices().await?))
    }

    /// Practices a pharmacy can link a patient to (names only).
    pub async fn practices_for_staff(&self, actor: &Actor) -> AppResult<Vec<Practice>> {
        if !actor.role.is_staff() {
            return Err(AppError::Forbidden);
        }
        Ok(self.store.list_practices().await?)
    }

    /// Creates a platform operator account (console only: the first operator has nobody to
    /// create them on the web).
    pub async fn create_operator(&self, email: &str, name: &str) -> AppResult<(UserAccount, String)> {
        let input =
            NewOrganisationInput { manager_email: email.into(), manager_name: name.into(), ..Default::default() };
        let password = initial_password();
        let account = UserAccount {
            password_hash: hash_password(&self.password_for(&password, Role::Operator, &[])?).await?,
            ..self.first_manager(&input, Role::Operator, None, None)?
        };
        self.store.insert_user(&account).await.map_err(Self::taken)?;
        self.audit_act(&Self::console_actor(), "admin.create_operator", None, format!("operator {}", account.id))
            .await?;
        Ok((account, password))
    }
}
