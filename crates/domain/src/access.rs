//! Who may do what, to whose data. One table of role -> actions, and one tenant rule; the app
//! layer calls [`authorise`] before every read or change, so the rule lives in exactly one place.
use crate::ids::{PatientId, PharmacyId, PracticeId, UserId};
use crate::DomainError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Patient,
    PharmacyManager,
    Pharmacist,
    Dispenser,
    CounterAssistant,
    Prescriber,
    PracticeManager,
    Receptionist,
    Operator,
    Custodian,
}

impl Role {
    pub const ALL: [Role; 10] = [
        Role::Patient,
        Role::PharmacyManager,
        Role::Pharmacist,
        Role::Dispenser,
        Role::CounterAssistant,
        Role::Prescriber,
        Role::PracticeManager,
        Role::Receptionist,
        Role::Operator,
        Role::Custodian,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::PharmacyManager => "pharmacy_manager",
            Role::Pharmacist => "pharmacist",
            Role::Dispenser => "dispenser",
            Role::CounterAssistant => "counter_assistant",
            Role::Prescriber => "prescriber",
            Role::PracticeManager => "practice_manager",
            Role::Receptionist => "receptionist",
            Role::Operator => "operator",
            Role::Custodian => "custodian",
        }
    }

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| DomainError::invalid("role", format!("'{}' is not a role", crate::text::clip(s, 30))))
    }

    pub fn label(self) -> &'static str {
        match self {
            Role::Patient => "Patient",
            Role::PharmacyManager => "Pharmacy manager",
            Role::Pharmacist => "Pharmacist",
            Role::Dispenser => "Dispenser",
            Role::CounterAssistant => "Counter assistant",
            Role::Prescriber => "Prescriber",
            Role::PracticeManager => "Practice manager",
            Role::Receptionist => "Receptionist",
            Role::Operator => "Platform operator",
            Role::Custodian => "Live-data custodian",
        }
    }

    pub fn kind(self) -> OrgKind {
        match self {
            Role::Patient => OrgKind::Patient,
            Role::PharmacyManager | Role::Pharmacist | Role::Dispenser | Role::CounterAssistant => OrgKind::Pharmacy,
            Role::Prescriber | Role::PracticeManager | Role::Receptionist => OrgKind::Practice,
            Role::Operator | Role::Custodian => OrgKind::Platform,
        }
    }

    pub fn is_staff(self) -> bool {
        self != Role::Patient
    }
}

/// Which side of the service a role belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrgKind {
    Patient,
    Pharmacy,
    Practice,
    Platform,
}

/// What an actor belongs to: the tenant their data access is confined to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    Patient { patient: PatientId, pharmacy: PharmacyId, practice: PracticeId },
    Pharmacy(PharmacyId),
    Practice(PracticeId),
    Platform,
}

/// The signed-in person making a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    pub user_id: UserId,
    pub role: Role,
    pub membership: Membership,
    /// Where the request comes from, for the audit trail (`None` for the console and jobs).
    pub address: Option<std::net::IpAddr>,
}

/// Everything a request can ask to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// See a patient's repeat list, orders and details.
    ViewPatient,
    /// Place an order for a patient (the patient, or pharmacy staff on their behalf).
    PlaceOrder,
    /// Cancel an order the pharmacy has not started.
    CancelOrder,
    /// See the pharmacy's order queue and patient list.
    ViewPharmacyQueue,
    /// Register a patient at the pharmacy and edit their details.
    RegisterPatient,
    /// Add, change or stop items on a repeat list.
    EditRepeatList,
    /// Accept an order, send it to the practice, record dispensing progress.
    ProcessOrder,
    /// Record the decision of a prescriber whose practice is not on RepeatRx.
    RecordPrescriberDecision,
    /// See the practice's authorisation requests.
    ViewPracticeRequests,
    /// Approve, change or reject an item; issue a repeat authorisation.
    AuthoriseMedication,
    /// Create pharmacies, practices and their first manager.
    ManageOrganisations,
    /// Search the medication catalogue.
    SearchCatalogue,
    /// See the organisation's staff accounts and lift their sign-in locks.
    ManageStaffAccounts,
    /// Lift a patient's identity lock after checking their identity in person.
    LiftIdentityLock,
    /// Ask for, hold and end break-glass access to live patient data (custodians only).
    BreakGlass,
    /// Search the organisation's audit trail (its managers; operators: the platform's).
    SearchAuditTrail,
    /// Delete a patient's record and account for good (the patient, or their pharmacy's
    /// pharmacists and managers acting on a request made at the counter).
    ErasePatient,
}

impl Action {
    /// The name the audit trail uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ViewPatient => "view_patient",
            Action::PlaceOrder => "place_order",
            Action::CancelOrder => "cancel_order",
            Action::ViewPharmacyQueue => "view_pharmacy_queue",
            Action::RegisterPatient => "register_patient",
            Action::EditRepeatList => "edit_repeat_list",
            Action::ProcessOrder => "process_order",
            Action::RecordPrescriberDecision => "record_prescriber_decision",
            Action::ViewPracticeRequests => "view_practice_requests",
            Action::AuthoriseMedication => "authorise_medication",
            Action::ManageOrganisations => "manage_organisations",
            Action::SearchCatalogue => "search_catalogue",
            Action::ManageStaffAccounts => "manage_staff_accounts",
            Action::LiftIdentityLock => "lift_identity_lock",
            Action::BreakGlass => "break_glass",
            Action::SearchAuditTrail => "search_audit_trail",
            Action::ErasePatient => "erase_patient",
        }
    }
}

/// The permission table: which roles may take which action at all (the tenant is checked apart).
pub fn role_permits(role: Role, action: Action) -> bool {
    use Action::*;
    use Role::*;
    match action {
        // Custodians only under a live break-glass grant (`custody::authorise_by_grant`).
        ViewPatient => matches!(
            role,
            Patient
                | PharmacyManager
                | Pharmacist
                | Dispenser
                | CounterAssistant
                | Prescriber
                | PracticeManager
                | Receptionist
                | Custodian
        ),
        PlaceOrder => matches!(role, Patient | PharmacyManager | Pharmacist | Dispenser | CounterAssistant),
        CancelOrder => matches!(role, Patient | PharmacyManager | Pharmacist | Dispenser | CounterAssistant),
        ViewPharmacyQueue | RegisterPatient => {
            matches!(role, PharmacyManager | Pharmacist | Dispenser | CounterAssistant)
        }
        EditRepeatList => matches!(role, PharmacyManager | Pharmacist | Dispenser | Prescriber),
        ProcessOrder => matches!(role, PharmacyManager | Pharmacist | Dispenser),
        RecordPrescriberDecision => matches!(role, PharmacyManager | Pharmacist),
        ViewPracticeRequests => matches!(role, Prescriber | PracticeManager | Receptionist),
        AuthoriseMedication => matches!(role, Prescriber),
        ManageOrganisations => matches!(role, Operator),
        SearchCatalogue => role != Patient,
        ManageStaffAccounts => matches!(role, PharmacyManager | PracticeManager | Operator),
        LiftIdentityLock => matches!(role, PharmacyManager | Pharmacist | Dispenser | CounterAssistant),
        BreakGlass => matches!(role, Custodian),
        SearchAuditTrail => matches!(role, PharmacyManager | PracticeManager | Operator),
        ErasePatient => matches!(role, Patient | PharmacyManager | Pharmacist),
    }
}

/// At most this many live-data custodian accounts may exist at once (P8); a third is refused.
pub const MAX_CUSTODIANS: u32 = 2;

/// How many accounts of a role may exist at most, if the role is capped.
pub fn role_cap(role: Role) -> Option<u32> {
    (role == Role::Custodian).then_some(MAX_CUSTODIANS)
}

/// The roles a manager gives to the accounts they invite, and between which they move them
/// (least powerful first: the invitation form offers the first by default).
pub fn assignable_roles(manager: Role) -> &'static [Role] {
    use Role::*;
    match manager {
        PharmacyManager => &[CounterAssistant, Dispenser, Pharmacist, PharmacyManager],
        PracticeManager => &[Receptionist, Prescriber, PracticeManager],
        Operator => &[Operator, Custodian],
        _ => &[],
    }
}

/// What a manager does to an account they look after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaffChange {
    /// Give the account another role.
    Role(Role),
    /// Stop the account signing in (its sessions end); it stays, with its history.
    Suspend,
    /// Let a suspended account sign in again.
    Reinstate,
}

/// Whether `actor` may make `change` to the account `target` (its id, role and membership).
/// Managers look after the accounts of their own organisation, operators the platform team's
/// and (to suspend or reinstate) the organisations' managers. Nobody changes their own account
/// here, so an organisation never loses its last manager by accident.
pub fn may_change_account(
    actor: &Actor,
    target: UserId,
    target_role: Role,
    target_membership: Membership,
    change: StaffChange,
) -> bool {
    if actor.user_id == target || !role_permits(actor.role, Action::ManageStaffAccounts) {
        return false;
    }
    let same_tenant = match (actor.membership, target_membership) {
        (Membership::Pharmacy(a), Membership::Pharmacy(b)) => a == b,
        (Membership::Practice(a), Membership::Practice(b)) => a == b,
        (Membership::Platform, Membership::Platform) => true,
        _ => false,
    };
    let assignable = assignable_roles(actor.role);
    let looks_after = same_tenant && assignable.contains(&target_role);
    match change {
        StaffChange::Role(new) => looks_after && assignable.contains(&new) && new != target_role,
        StaffChange::Suspend | StaffChange::Reinstate => {
            looks_after
                || (actor.role == Role::Operator
                    && matches!(target_role, Role::PharmacyManager | Role::PracticeManager))
        }
    }
}

/// Whose data an action touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Platform,
    Pharmacy(PharmacyId),
    Practice(PracticeId),
    Patient { patient: PatientId, pharmacy: PharmacyId, practice: PracticeId },
}

fn tenant_matches(membership: Membership, scope: Scope) -> bool {
    match (membership, scope) {
        (Membership::Patient { patient, .. }, Scope::Patient { patient: p, .. }) => patient == p,
        (Membership::Pharmacy(mine), Scope::Pharmacy(theirs)) => mine == theirs,
        (Membership::Pharmacy(mine), Scope::Patient { pharmacy, .. }) => mine == pharmacy,
        (Membership::Practice(mine), Scope::Practice(theirs)) => mine == theirs,
        (Membership::Practice(mine), Scope::Patient { practice, .. }) => mine == practice,
        // Operators run the platform; they never reach patient, pharmacy or practice data.
        (Membership::Platform, Scope::Platform) => true,
        _ => false,
    }
}

/// The one authorisation check: role allows the action and the data is in the actor's tenant.
pub fn authorise(actor: &Actor, action: Action, scope: Scope) -> Result<(), DomainError> {
    if role_permits(actor.role, action) && tenant_matches(actor.membership, scope) {
        Ok(())
    } else {
        Err(DomainError::Forbidden)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patient_scope(pharmacy: PharmacyId, practice: PracticeId) -> (PatientId, Scope) {
        let patient = PatientId::new();
        (patient, Scope::Patient { patient, pharmacy, practice })
    }

    #[test]
    fn pharmacy_staff_reach_only_their_own_pharmacys_patients() {
        let (mine, other, practice) = (PharmacyId::new(), PharmacyId::new(), PracticeId::new());
        let actor = Actor {
            user_id: UserId::new(),
            role: Role::Pharmacist,
            membership: Membership::Pharmacy(mine),
            address: None,
        };
        let (_, own_patient) = patient_scope(mine, practice);
        let (_, foreign_patient) = patient_scope(other, practice);
        assert!(authorise(&actor, Action::ViewPatient, own_patient).is_ok());
        assert_eq!(authorise(&actor, Action::ViewPatient, foreign_patient), Err(DomainError::Forbidden));
        assert!(authorise(&actor, Action::AuthoriseMedication, own_patient).is_err());
    }

    #[test]
    fn a_patient_reaches_only_their_own_record() {
        let (pharmacy, practice) = (PharmacyId::new(), PracticeId::new());
        let (me, my_scope) = patient_scope(pharmacy, practice);
        let (_, neighbour) = patient_scope(pharmacy, practice);
        let actor = Actor {
            user_id: UserId::new(),
            role: Role::Patient,
            membership: Membership::Patient { patient: me, pharmacy, practice },
            address: None,
        };
        assert!(authorise(&actor, Action::PlaceOrder, my_scope).is_ok());
        assert!(authorise(&actor, Action::PlaceOrder, neighbour).is_err());
        assert!(authorise(&actor, Action::ViewPharmacyQueue, Scope::Pharmacy(pharmacy)).is_err());
    }

    #[test]
    fn operators_never_reach_patient_data() {
        let actor =
            Actor { user_id: UserId::new(), role: Role::Operator, membership: Membership::Platform, address: None };
        let (_, scope) = patient_scope(PharmacyId::new(), PracticeId::new());
        for action in [Action::ViewPatient, Action::PlaceOrder, Action::ProcessOrder] {
            assert!(authorise(&actor, action, scope).is_err());
        }
        assert!(authorise(&actor, Action::ManageOrganisations, Scope::Platform).is_ok());
    }

    #[test]
    fn only_prescribers_authorise_and_receptionists_cannot() {
        let practice = PracticeId::new();
        let (_, scope) = patient_scope(PharmacyId::new(), practice);
        for role in Role::ALL {
            let actor =
                Actor { user_id: UserId::new(), role, membership: Membership::Practice(practice), address: None };
            assert_eq!(
                authorise(&actor, Action::AuthoriseMedication, scope).is_ok(),
                role == Role::Prescriber,
                "{role:?}"
            );
        }
    }

    #[test]
    fn managers_change_only_their_own_organisations_staff_and_never_themselves() {
        let (mine, other) = (PharmacyId::new(), PharmacyId::new());
        let manager = Actor {
            user_id: UserId::new(),
            role: Role::PharmacyManager,
            membership: Membership::Pharmacy(mine),
            address: None,
        };
        let colleague = UserId::new();
        let change = |target, role, membership, change| may_change_account(&manager, target, role, membership, change);
        assert!(change(colleague, Role::Dispenser, Membership::Pharmacy(mine), StaffChange::Role(Role::Pharmacist)));
        assert!(change(colleague, Role::Dispenser, Membership::Pharmacy(mine), StaffChange::Suspend));
        assert!(!change(colleague, Role::Dispenser, Membership::Pharmacy(other), StaffChange::Suspend));
        assert!(!change(colleague, Role::Dispenser, Membership::Pharmacy(mine), StaffChange::Role(Role::Prescriber)));
        assert!(!change(colleague, Role::Dispenser, Membership::Pharmacy(mine), StaffChange::Role(Role::Custodian)));
        assert!(!change(manager.user_id, Role::PharmacyManager, Membership::Pharmacy(mine), StaffChange::Suspend));
        assert!(!change(colleague, Role::Dispenser, Membership::Pharmacy(mine), StaffChange::Role(Role::Dispenser)));

        let pharmacist = Actor { role: Role::Pharmacist, ..manager };
        assert!(!may_change_account(
            &pharmacist,
            colleague,
            Role::Dispenser,
            Membership::Pharmacy(mine),
            StaffChange::Suspend
        ));
    }

    #[test]
    fn operators_make_custodians_and_suspend_managers_but_give_them_no_role() {
        let operator =
            Actor { user_id: UserId::new(), role: Role::Operator, membership: Membership::Platform, address: None };
        let someone = UserId::new();
        assert!(may_change_account(
            &operator,
            someone,
            Role::Operator,
            Membership::Platform,
            StaffChange::Role(Role::Custodian)
        ));
        let manager_of = Membership::Pharmacy(PharmacyId::new());
        assert!(may_change_account(&operator, someone, Role::PharmacyManager, manager_of, StaffChange::Suspend));
        assert!(!may_change_account(
            &operator,
            someone,
            Role::PharmacyManager,
            manager_of,
            StaffChange::Role(Role::Custodian)
        ));
        assert!(!may_change_account(&operator, someone, Role::Pharmacist, manager_of, StaffChange::Suspend));
        assert_eq!(role_cap(Role::Custodian), Some(2));
        assert_eq!(role_cap(Role::Operator), None);
    }

    #[test]
    fn roles_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Ok(role));
        }
        assert!(Role::parse("admin").is_err());
    }
}
