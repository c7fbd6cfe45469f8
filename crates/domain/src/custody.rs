//! Break-glass access for live-data custodians (P8). Platform staff never reach patient data by
//! their role; a custodian reaches it only through a grant they ask for: a named patient or a
//! named pharmacy, a stated reason, a fresh authenticator code, for a limited time. While a grant
//! is live its holder may *read* what it covers; every read is audited with the grant's reason as
//! the purpose, and the other custodians and the pharmacy's managers are told by email.
use crate::access::{Action, Actor, Role, Scope};
use crate::ids::{GrantId, PatientId, PharmacyId, UserId};
use crate::DomainError;
use jiff::{SignedDuration, Timestamp};

/// How long a grant lasts unless the custodian asks for less.
pub const DEFAULT_GRANT: SignedDuration = SignedDuration::from_mins(60);
/// The shortest and longest grant that can be asked for.
pub const SHORTEST_GRANT: SignedDuration = SignedDuration::from_mins(5);
pub const LONGEST_GRANT: SignedDuration = SignedDuration::from_mins(60);
/// A reason must say something: at least this many characters.
pub const MIN_REASON_CHARS: usize = 15;

/// What a grant opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrantScope {
    Patient(PatientId),
    Pharmacy(PharmacyId),
}

impl GrantScope {
    /// Whether data of `scope` falls under this grant.
    pub fn covers(self, scope: Scope) -> bool {
        match (self, scope) {
            (GrantScope::Patient(granted), Scope::Patient { patient, .. }) => granted == patient,
            (GrantScope::Pharmacy(granted), Scope::Patient { pharmacy, .. }) => granted == pharmacy,
            (GrantScope::Pharmacy(granted), Scope::Pharmacy(pharmacy)) => granted == pharmacy,
            _ => false,
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            GrantScope::Patient(_) => "patient",
            GrantScope::Pharmacy(_) => "pharmacy",
        }
    }
}

/// One break-glass grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub id: GrantId,
    pub custodian: UserId,
    pub scope: GrantScope,
    pub reason: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// Set when the custodian ended it early.
    pub ended_at: Option<Timestamp>,
}

impl Grant {
    /// A new grant, checked: a custodian, a reason that says something, a length within bounds.
    pub fn new(
        custodian: &Actor,
        scope: GrantScope,
        reason: &str,
        length: Option<SignedDuration>,
        now: Timestamp,
    ) -> Result<Grant, DomainError> {
        if custodian.role != Role::Custodian {
            return Err(DomainError::Forbidden);
        }
        let reason = reason.trim();
        if reason.chars().count() < MIN_REASON_CHARS {
            return Err(DomainError::invalid(
                "reason",
                format!("say why you need this patient data (at least {MIN_REASON_CHARS} characters): it is recorded and sent to the pharmacy"),
            ));
        }
        if reason.chars().count() > 500 {
            return Err(DomainError::invalid("reason", "must be at most 500 characters"));
        }
        let length = length.unwrap_or(DEFAULT_GRANT);
        if length < SHORTEST_GRANT || length > LONGEST_GRANT {
            return Err(DomainError::invalid(
                "minutes",
                format!("must be between {} and {}", SHORTEST_GRANT.as_mins(), LONGEST_GRANT.as_mins()),
            ));
        }
        Ok(Grant {
            id: GrantId::new(),
            custodian: custodian.user_id,
            scope,
            reason: reason.to_string(),
            created_at: now,
            expires_at: now + length,
            ended_at: None,
        })
    }

    pub fn is_live(&self, now: Timestamp) -> bool {
        self.ended_at.is_none() && now < self.expires_at
    }
}

/// What a grant lets its holder do: read, nothing else.
pub fn grant_permits(action: Action) -> bool {
    matches!(action, Action::ViewPatient)
}

/// The custodian's check: the action is one a grant permits, and a live grant of theirs covers
/// the data. Returns the grant that does, for the audit trail's purpose.
pub fn authorise_by_grant<'g>(
    actor: &Actor,
    action: Action,
    scope: Scope,
    grants: &'g [Grant],
    now: Timestamp,
) -> Result<&'g Grant, DomainError> {
    if actor.role != Role::Custodian || !grant_permits(action) {
        return Err(DomainError::Forbidden);
    }
    grants
        .iter()
        .find(|g| g.custodian == actor.user_id && g.is_live(now) && g.scope.covers(scope))
        .ok_or(DomainError::Forbidden)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Membership;
    use crate::ids::PracticeId;

    fn custodian() -> Actor {
        Actor { user_id: UserId::new(), role: Role::Custodian, membership: Membership::Platform, address: None }
    }

    fn now() -> Timestamp {
        "2026-11-23T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_grant_needs_a_custodian_a_reason_and_a_sane_length() {
        let who = custodian();
        let scope = GrantScope::Patient(PatientId::new());
        let reason = "pharmacy ticket 4411: order lost after migration";
        let g = Grant::new(&who, scope, reason, None, now()).unwrap();
        assert_eq!(g.expires_at, now() + DEFAULT_GRANT);
        assert!(Grant::new(&who, scope, "because", None, now()).is_err());
        assert!(Grant::new(&who, scope, reason, Some(SignedDuration::from_mins(61)), now()).is_err());
        assert!(Grant::new(&who, scope, reason, Some(SignedDuration::from_mins(4)), now()).is_err());
        let operator = Actor { role: Role::Operator, ..who };
        assert_eq!(Grant::new(&operator, scope, reason, None, now()), Err(DomainError::Forbidden));
    }

    #[test]
    fn a_live_grant_opens_reading_what_it_covers_and_nothing_else() {
        let who = custodian();
        let (pharmacy, practice) = (PharmacyId::new(), PracticeId::new());
        let patient = PatientId::new();
        let covered = Scope::Patient { patient, pharmacy, practice };
        let neighbour = Scope::Patient { patient: PatientId::new(), pharmacy, practice };
        let reason = "support case 17: the patient cannot see their order";
        let by_patient = Grant::new(&who, GrantScope::Patient(patient), reason, None, now()).unwrap();
        let grants = [by_patient.clone()];
        assert!(authorise_by_grant(&who, Action::ViewPatient, covered, &grants, now()).is_ok());
        assert!(authorise_by_grant(&who, Action::ViewPatient, neighbour, &grants, now()).is_err());
        assert!(authorise_by_grant(&who, Action::PlaceOrder, covered, &grants, now()).is_err(), "read only");
        let later = now() + DEFAULT_GRANT;
        assert!(authorise_by_grant(&who, Action::ViewPatient, covered, &grants, later).is_err(), "expired");
        let ended = [Grant { ended_at: Some(now()), ..by_patient }];
        assert!(authorise_by_grant(&who, Action::ViewPatient, covered, &ended, now()).is_err(), "ended early");

        let by_pharmacy = [Grant::new(&who, GrantScope::Pharmacy(pharmacy), reason, None, now()).unwrap()];
        assert!(authorise_by_grant(&who, Action::ViewPatient, neighbour, &by_pharmacy, now()).is_ok());
        let elsewhere = Scope::Patient { patient, pharmacy: PharmacyId::new(), practice };
        assert!(authorise_by_grant(&who, Action::ViewPatient, elsewhere, &by_pharmacy, now()).is_err());

        let someone_else = custodian();
        assert!(
            authorise_by_grant(&someone_else, Action::ViewPatient, covered, &grants, now()).is_err(),
            "grants are personal"
        );
    }
}
