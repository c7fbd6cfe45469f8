//! Erasure on request (P13; rules in `domain::erasure`). The patient confirms with their
//! password; their pharmacy's pharmacists and managers act on a request made at the counter and
//! say how they checked it. The erasure is written to the ledger outside the database first, so
//! that once the patient has been told it is done, no restore can bring them back; then everything
//! is deleted in one transaction, the data key with it, and the act is audited by id only.
use crate::auth::{verify_password, Client};
use crate::error::{AppError, AppResult};
use crate::App;
use jiff::Timestamp;
use repeatrx_domain::access::{Action, Actor, Role};
use repeatrx_domain::erasure::{check_request, ErasureBy, LedgerEntry};
use repeatrx_domain::ids::PatientId;
use repeatrx_domain::security::SecurityEventKind;
use repeatrx_domain::text::Email;
use secrecy::SecretString;

/// What the erasure form and API carry.
#[derive(Debug, Clone, Default)]
pub struct EraseRequest {
    /// The box "delete everything for good" is ticked.
    pub confirm: bool,
    /// The patient's own password (patients only).
    pub password: SecretString,
    /// Who asked and how they were identified (staff only).
    pub reason: String,
}

impl App {
    /// Erases a patient for good; returns when. Another tenant's patient is "not found".
    pub async fn erase_patient(&self, actor: &Actor, id: PatientId, request: &EraseRequest) -> AppResult<Timestamp> {
        let patient = self.patient_for(actor, Action::ErasePatient, id).await?;
        let (by, reason) = check_request(actor.role, request.confirm, &request.reason)
            .map_err(|problems| AppError::InvalidFields(problems.iter().map(|e| e.to_string()).collect()))?;
        let account = self.store.user_for_patient(patient.id).await?;
        if actor.role == Role::Patient {
            let account = account.as_ref().ok_or(AppError::Forbidden)?;
            if secrecy::ExposeSecret::expose_secret(&request.password).is_empty() {
                return Err(AppError::InvalidFields(vec!["password: enter your password to confirm".into()]));
            }
            if !verify_password(account.password_hash.clone(), request.password.clone()).await {
                // Counted like a failed sign-in, so a stolen session cannot guess the password.
                let client = Client::new(actor.address.map(|a| a.to_string()).unwrap_or_default(), "");
                if self.count_failure(account.id, SecurityEventKind::SignInFailed, &client).await? {
                    return Err(AppError::Unauthenticated);
                }
                return Err(AppError::InvalidFields(vec!["password: that is not your password".into()]));
            }
        }
        let at = self.clock.now();
        if let Some(ledger) = &self.settings.erasure_ledger {
            ledger.append(&LedgerEntry { patient: patient.id, at })?;
        }
        let addresses: Vec<Email> = patient.email.iter().cloned().chain(account.map(|a| a.email)).collect();
        self.store.erase_patient(patient.id, by, at, &addresses).await?;
        let detail = format!(
            "requested by the {}",
            if by == ErasureBy::Patient { "patient" } else { "patient at the pharmacy" }
        );
        self.audit_act_for(actor, "patient.erased", Some(patient.id), detail, reason).await?;
        tracing::info!(patient = %patient.id, by = by.as_str(), "patient erased");
        Ok(at)
    }

    /// Re-applies every erasure in the ledger that the database does not show done (a database
    /// restored from a backup taken before it); returns how many patients were erased again.
    /// Servers call it at start, before serving anyone.
    pub async fn reapply_erasures(&self) -> AppResult<u64> {
        let Some(ledger) = &self.settings.erasure_ledger else { return Ok(0) };
        let mut again = 0;
        for entry in ledger.entries()? {
            // Usually done already: a read, instead of a write transaction per entry at every start.
            if self.store.erased_at(entry.patient).await?.is_some() {
                continue;
            }
            if self.store.erase_patient(entry.patient, ErasureBy::Ledger, entry.at, &[]).await? {
                again += 1;
                tracing::warn!(
                    patient = %entry.patient,
                    erased_at = %entry.at,
                    "erased again from the erasure ledger: the database held a patient erased before (restored from an older backup?)"
                );
                self.audit_act(
                    &App::console_actor(),
                    "patient.erasure_reapplied",
                    Some(entry.patient),
                    format!("erased at {}", entry.at),
                )
                .await?;
            }
        }
        Ok(again)
    }
}
