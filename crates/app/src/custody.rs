//! Break-glass access for live-data custodians (P8). A custodian names one patient or one
//! pharmacy, states why, re-enters an authenticator code, and gets read access for up to an hour.
//! The other custodians and the pharmacy's managers are emailed in the same write; everything the
//! custodian reads is audited with the reason as its purpose (the tenant gate in `access.rs` does
//! that, so no read can skip it). The rules live in `repeatrx_domain::custody`.
use crate::auth::Client;
use crate::error::{AppError, AppResult};
use crate::App;
use jiff::SignedDuration;
use repeatrx_domain::access::{role_permits, Action, Actor, Role};
use repeatrx_domain::custody::{Grant, GrantScope};
use repeatrx_domain::ids::{GrantId, PharmacyId};
use repeatrx_domain::patient::Patient;
use repeatrx_domain::timefmt::display_timestamp;
use repeatrx_store::{AccountScope, OutgoingEmail, PatientQuery};

/// What a custodian asks for.
#[derive(Debug, Clone)]
pub struct GrantRequest {
    pub scope: GrantScope,
    pub reason: String,
    /// How long, in minutes (default 60).
    pub minutes: Option<i64>,
    /// A fresh code from the custodian's authenticator app.
    pub code: String,
}

impl App {
    fn custodian(actor: &Actor) -> AppResult<()> {
        if role_permits(actor.role, Action::BreakGlass) {
            Ok(())
        } else {
            Err(AppError::Forbidden)
        }
    }

    /// Opens a grant: checks the request, then the code (so a refused request uses no code),
    /// then stores it with its announcement emails.
    pub async fn open_grant(&self, actor: &Actor, request: &GrantRequest, client: &Client) -> AppResult<Grant> {
        Self::custodian(actor)?;
        let now = self.clock.now();
        let (pharmacy_id, subject) = match request.scope {
            GrantScope::Patient(id) => {
                let p = self.store.patient(id).await?.ok_or_else(|| {
                    AppError::InvalidFields(vec!["patient: there is no patient with this RepeatRx id".into()])
                })?;
                (p.pharmacy_id, format!("the record of one of your patients (RepeatRx id {id})"))
            }
            GrantScope::Pharmacy(id) => {
                self.store.pharmacy(id).await?.ok_or_else(|| {
                    AppError::InvalidFields(vec!["pharmacy: there is no pharmacy with this RepeatRx id".into()])
                })?;
                (id, "the records of all your pharmacy's patients".to_string())
            }
        };
        let length = request.minutes.map(SignedDuration::from_mins);
        let grant = Grant::new(actor, request.scope, &request.reason, length, now)?;
        let code = request.code.trim();
        if code.is_empty() {
            return Err(AppError::InvalidFields(vec![
                "code: enter the current code from your authenticator app".into()
            ]));
        }
        self.verify_fresh_code(actor, code, client).await?;

        let custodian = self.store.user(actor.user_id).await?.ok_or(AppError::Unauthenticated)?;
        let pharmacy = self.store.pharmacy(pharmacy_id).await?.map(|p| p.name).unwrap_or_default();
        let until = display_timestamp(grant.expires_at);
        let mut recipients: Vec<(repeatrx_domain::text::Email, String, String)> = Vec::new();
        for (manager, _) in self.store.list_accounts(AccountScope::Pharmacy(pharmacy_id)).await? {
            if manager.role == Role::PharmacyManager && manager.active {
                recipients.push((manager.email, manager.display_name, format!("{subject} at {pharmacy}")));
            }
        }
        for other in self.store.users_with_role(Role::Custodian).await? {
            if other.id != custodian.id && other.active {
                recipients.push((other.email, other.display_name, format!("{subject} at {pharmacy}")));
            }
        }
        let emails: Vec<OutgoingEmail> = recipients
            .into_iter()
            .map(|(to, name, what)| {
                OutgoingEmail::new(
                    to,
                    "Break-glass access to live patient data",
                    format!(
                        "Dear {name},\n\n{}, a RepeatRx live-data custodian, has opened break-glass access to {what}, \
                         until {until}.\n\nThe reason they gave: {}\n\nThey can read, not change, what this covers, \
                         and every record they open is in the audit trail with this reason. If you did not expect \
                         this, tell the RepeatRx platform team at once.\n\nRepeatRx",
                        custodian.display_name, grant.reason
                    ),
                    now,
                )
            })
            .collect();
        self.store.insert_grant(&grant, &emails).await?;
        let patient = match grant.scope {
            GrantScope::Patient(p) => Some(p),
            GrantScope::Pharmacy(_) => None,
        };
        let detail = format!("grant {} over {} until {}", grant.id, describe(grant.scope), grant.expires_at);
        self.audit_act_for(actor, "custody.grant", patient, detail, Some(grant.reason.clone())).await?;
        Ok(grant)
    }

    /// The pharmacies a custodian can name in a request (names and ids only: no patient data).
    pub async fn custody_pharmacies(&self, actor: &Actor) -> AppResult<Vec<repeatrx_store::Pharmacy>> {
        Self::custodian(actor)?;
        Ok(self.store.list_pharmacies().await?)
    }

    /// The custodian's grants, newest first.
    pub async fn grants_of(&self, actor: &Actor) -> AppResult<Vec<Grant>> {
        Self::custodian(actor)?;
        Ok(self.store.grants_of(actor.user_id, 50).await?)
    }

    /// Ends one of the custodian's live grants before it expires.
    pub async fn end_grant(&self, actor: &Actor, id: GrantId) -> AppResult<()> {
        Self::custodian(actor)?;
        if !self.store.end_grant(id, actor.user_id, self.clock.now()).await? {
            return Err(AppError::NotFound("live grant"));
        }
        self.audit_act(actor, "custody.end", None, format!("grant {id}")).await
    }

    /// A pharmacy's name and its patients, for a custodian holding a live grant over it (audited).
    pub async fn custody_patients(
        &self,
        actor: &Actor,
        pharmacy: PharmacyId,
        name: &str,
    ) -> AppResult<(String, Vec<Patient>)> {
        Self::custodian(actor)?;
        let now = self.clock.now();
        let grants = self.store.live_grants(actor.user_id, now).await?;
        let grant =
            grants.iter().find(|g| g.scope == GrantScope::Pharmacy(pharmacy)).ok_or(AppError::NotFound("pharmacy"))?;
        let query =
            PatientQuery { name: Some(name.trim().to_string()).filter(|n| !n.is_empty()), ..Default::default() };
        let found = self.store.search_patients(pharmacy, &query, 100).await?;
        let detail = format!("grant {} over pharmacy {pharmacy}", grant.id);
        self.audit_act_for(actor, "custody.list_patients", None, detail, Some(grant.reason.clone())).await?;
        let pharmacy_name = self.store.pharmacy(pharmacy).await?.map(|p| p.name).unwrap_or_default();
        Ok((pharmacy_name, found))
    }
}

fn describe(scope: GrantScope) -> String {
    match scope {
        GrantScope::Patient(p) => format!("patient {p}"),
        GrantScope::Pharmacy(p) => format!("pharmacy {p}"),
    }
}
