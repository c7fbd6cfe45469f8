//! Prescriber use cases that are not order decisions: issuing repeat authorisations, signed with
//! a fresh one-time code.
use crate::error::{AppError, AppResult};
use crate::App;
use repeatrx_domain::access::{Action, Actor};
use repeatrx_domain::ids::PatientId;
use repeatrx_domain::repeat::{RepeatItem, RepeatTermsInput};

impl App {
    /// A prescriber issues a new repeat authorisation for a patient of their practice.
    pub async fn issue_authorisation(
        &self,
        actor: &Actor,
        patient: PatientId,
        input: &RepeatTermsInput,
        code: &str,
        client: &crate::auth::Client,
    ) -> AppResult<RepeatItem> {
        if !repeatrx_domain::access::role_permits(actor.role, Action::AuthoriseMedication) {
            return Err(AppError::Forbidden);
        }
        self.patient_for(actor, Action::AuthoriseMedication, patient).await?;
        if code.trim().is_empty() {
            return Err(AppError::InvalidFields(vec![
                "code: enter the current code from your authenticator app to sign".into(),
            ]));
        }
        // Validate the terms first, so a mistake in them does not use up the code.
        repeatrx_domain::repeat::RepeatTerms::new(input, self.clock.today())?;
        self.verify_fresh_code(actor, code, client).await?;
        self.add_repeat_item(actor, patient, input).await
    }
}
