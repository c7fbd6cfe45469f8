//! Prescriber use cases that are not order decisions: issuing repeat authorisations.
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
    ) -> AppResult<RepeatItem> {
        if !repeatrx_domain::access::role_permits(actor.role, Action::AuthoriseMedication) {
            return Err(AppError::Forbidden);
        }
        self.patient_for(actor, Action::AuthoriseMedication, patient).await?;
        self.add_repeat_item(actor, patient, input).await
    }
}
