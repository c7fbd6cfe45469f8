//! The one gate to tenant data. Every service loads patient data through these functions, which
//! apply [`repeatrx_domain::access::authorise`]; data of another tenant is reported as not found,
//! so ids cannot be probed. This is also the single place where staff reads and changes of
//! patient data are recorded in the audit trail.
use crate::error::{AppError, AppResult};
use crate::App;
use repeatrx_domain::access::{authorise, Action, Actor, Membership, Role, Scope};
use repeatrx_domain::custody::authorise_by_grant;
use repeatrx_domain::ids::{OrderId, PatientId};
use repeatrx_domain::patient::Patient;
use repeatrx_domain::repeat::RepeatItem;
use repeatrx_domain::DomainError;
use repeatrx_store::{StoredOrder, WhichLines};

pub fn patient_scope(p: &Patient) -> Scope {
    Scope::Patient { patient: p.id, pharmacy: p.pharmacy_id, practice: p.practice_id }
}

fn deny_as(e: DomainError, what: &'static str, actor: &Actor, action: Action, scope: Scope) -> AppError {
    // A role that may take the action but hit another tenant's data learns nothing about it.
    let role_could = repeatrx_domain::access::role_permits(actor.role, action);
    match (e, role_could) {
        (DomainError::Forbidden, true) => AppError::NotFound(what),
        (DomainError::Forbidden, false) => {
            let _ = scope;
            AppError::Forbidden
        }
        (other, _) => other.into(),
    }
}

/// Checks an action on data with a known scope.
pub fn check(actor: &Actor, action: Action, scope: Scope, what: &'static str) -> AppResult<()> {
    authorise(actor, action, scope).map_err(|e| deny_as(e, what, actor, action, scope))
}

impl App {
    /// Loads a patient the actor may take `action` on.
    pub async fn patient_for(&self, actor: &Actor, action: Action, id: PatientId) -> AppResult<Patient> {
        if !repeatrx_domain::access::role_permits(actor.role, action) {
            return Err(AppError::Forbidden);
        }
        let patient = self.store.patient(id).await?.ok_or(AppError::NotFound("patient"))?;
        self.admit_to_patient(actor, action, &patient).await?;
        Ok(patient)
    }

    /// As [`App::patient_for`], with the patient's repeat lines that `which` names (each with
    /// whether an open order holds it), read together; nothing of them is returned unless the
    /// actor is admitted.
    pub async fn patient_lines_for(
        &self,
        actor: &Actor,
        action: Action,
        id: PatientId,
        which: WhichLines<'_>,
    ) -> AppResult<(Patient, Vec<(RepeatItem, bool)>)> {
        if !repeatrx_domain::access::role_permits(actor.role, action) {
            return Err(AppError::Forbidden);
        }
        let (patient, lines) =
            self.store.patient_with_lines_held(id, which).await?.ok_or(AppError::NotFound("patient"))?;
        self.admit_to_patient(actor, action, &patient).await?;
        Ok((patient, lines))
    }

    /// The tenant check on a loaded patient, and the audit record of a staff member's access.
    async fn admit_to_patient(&self, actor: &Actor, action: Action, patient: &Patient) -> AppResult<()> {
        let purpose = self.check_tenant(actor, action, patient_scope(patient), "patient").await?;
        self.audit_access(actor, action, patient.id, "", purpose).await
    }

    /// Loads an order (and its patient) the actor may take `action` on.
    pub async fn order_for(&self, actor: &Actor, action: Action, id: OrderId) -> AppResult<(StoredOrder, Patient)> {
        if !repeatrx_domain::access::role_permits(actor.role, action) {
            return Err(AppError::Forbidden);
        }
        let stored = self.store.order(id).await?.ok_or(AppError::NotFound("order"))?;
        let o = &stored.order;
        let scope = Scope::Patient { patient: o.patient_id, pharmacy: o.pharmacy_id, practice: o.practice_id };
        let purpose = self.check_tenant(actor, action, scope, "order").await?;
        let patient = self.store.patient(o.patient_id).await?.ok_or(AppError::NotFound("order"))?;
        self.audit_access(actor, action, patient.id, &format!("order {}", o.id), purpose).await?;
        Ok((stored, patient))
    }

    /// The tenant check. A custodian passes only under a live break-glass grant covering the data
    /// (`custody::authorise_by_grant`), whose reason is returned as the purpose of the access.
    async fn check_tenant(
        &self,
        actor: &Actor,
        action: Action,
        scope: Scope,
        what: &'static str,
    ) -> AppResult<Option<String>> {
        if actor.role != Role::Custodian {
            return check(actor, action, scope, what).map(|()| None);
        }
        let grants = self.store.live_grants(actor.user_id, self.clock.now()).await?;
        match authorise_by_grant(actor, action, scope, &grants, self.clock.now()) {
            Ok(grant) => Ok(Some(grant.reason.clone())),
            Err(_) => Err(AppError::NotFound(what)),
        }
    }

    /// Staff access to a patient's record goes to the audit trail (P9); a patient's own does not.
    async fn audit_access(
        &self,
        actor: &Actor,
        action: Action,
        patient: PatientId,
        detail: &str,
        purpose: Option<String>,
    ) -> AppResult<()> {
        if actor.role.is_staff() {
            self.audit_act_for(actor, &format!("patient.{}", action.as_str()), Some(patient), detail, purpose).await?;
        }
        Ok(())
    }
}

/// The patient a patient-actor is, if any.
pub fn own_patient(actor: &Actor) -> Option<PatientId> {
    match actor.membership {
        Membership::Patient { patient, .. } => Some(patient),
        _ => None,
    }
}
