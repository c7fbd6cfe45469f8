//! Erasure on request (P13): a patient's record, repeat lines, orders and account are deleted for
//! good and their data key destroyed, so copies of the sealed rows elsewhere stay unreadable. The
//! patient asks from their dashboard (confirming with their password), or their pharmacy acts on a
//! request made at the counter (with the request's circumstances as the reason). The audit trail
//! keeps only the patient's pseudonymous id.
//!
//! Because a database restored from an older backup would bring the patient back, each erasure is
//! also written to the erasure ledger, which lives outside the database (beside the key file) and
//! is re-applied whenever a server starts. The ledger holds ids and times only.
use crate::access::Role;
use crate::ids::PatientId;
use crate::DomainError;
use jiff::Timestamp;

/// A reason given by staff must say something: at least this many characters.
pub const MIN_STAFF_REASON_CHARS: usize = 10;

/// Who asked for an erasure (kept with the erasure's record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErasureBy {
    /// The patient, from their dashboard.
    Patient,
    /// Their pharmacy, on a request made at the counter.
    Pharmacy,
    /// Re-applied from the erasure ledger after a restore.
    Ledger,
    /// Their pharmacy left RepeatRx (P12).
    PharmacyLeft,
}

impl ErasureBy {
    pub fn as_str(self) -> &'static str {
        match self {
            ErasureBy::Patient => "patient",
            ErasureBy::Pharmacy => "pharmacy",
            ErasureBy::Ledger => "ledger",
            ErasureBy::PharmacyLeft => "pharmacy_left",
        }
    }
}

/// Checks a request to erase: it must be confirmed, and staff must say why (who asked, how they
/// were identified). Returns who asked and the trimmed reason, if any; or every problem at once.
pub fn check_request(
    role: Role,
    confirmed: bool,
    reason: &str,
) -> Result<(ErasureBy, Option<String>), Vec<DomainError>> {
    let mut problems = Vec::new();
    let reason = reason.trim();
    if role != Role::Patient && reason.chars().count() < MIN_STAFF_REASON_CHARS {
        problems.push(DomainError::invalid(
            "reason",
            format!("say who asked and how you checked it was them (at least {MIN_STAFF_REASON_CHARS} characters)"),
        ));
    }
    if !confirmed {
        problems.push(DomainError::invalid(
            "confirm",
            "tick the box to confirm that everything should be deleted for good",
        ));
    }
    match (problems.is_empty(), role) {
        (false, _) => Err(problems),
        (true, Role::Patient) => Ok((ErasureBy::Patient, None)),
        (true, _) => Ok((ErasureBy::Pharmacy, Some(reason.to_string()))),
    }
}

/// One line of the erasure ledger: the patient's id and when they were erased (RFC 3339, UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerEntry {
    pub patient: PatientId,
    pub at: Timestamp,
}

impl LedgerEntry {
    pub fn to_line(&self) -> String {
        format!("{} {}\n", self.patient, self.at)
    }

    /// Parses one line; blank lines are `None`.
    pub fn parse_line(line: &str) -> Result<Option<LedgerEntry>, DomainError> {
        let line = line.trim();
        if line.is_empty() {
            return Ok(None);
        }
        let (id, at) = line
            .split_once(' ')
            .ok_or_else(|| DomainError::invalid("ledger", format!("'{line}' is not `PATIENT-ID TIME`")))?;
        let patient = id.parse::<PatientId>()?;
        let at = at
            .trim()
            .parse::<Timestamp>()
            .map_err(|e| DomainError::invalid("ledger", format!("'{at}' is not a time: {e}")))?;
        Ok(Some(LedgerEntry { patient, at }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_erasure_must_be_confirmed_and_staff_must_say_why() {
        assert!(check_request(Role::Patient, false, "").is_err());
        assert_eq!(check_request(Role::Patient, true, "").unwrap(), (ErasureBy::Patient, None));
        for role in [Role::Pharmacist, Role::PharmacyManager] {
            assert!(check_request(role, false, "asked in person, photo ID seen").is_err());
            let short = check_request(role, true, " asked ").unwrap_err();
            assert!(short.len() == 1 && short[0].to_string().starts_with("reason:"), "{short:?}");
            let both: Vec<String> = check_request(role, false, "").unwrap_err().iter().map(|e| e.to_string()).collect();
            assert!(
                both[0].starts_with("reason:") && both[1].starts_with("confirm:"),
                "every problem at once: {both:?}"
            );
            assert_eq!(
                check_request(role, true, "  asked in person, photo ID seen ").unwrap(),
                (ErasureBy::Pharmacy, Some("asked in person, photo ID seen".into()))
            );
        }
    }

    #[test]
    fn ledger_lines_round_trip_and_bad_lines_are_named() {
        let entry = LedgerEntry { patient: PatientId::new(), at: "2026-11-23T10:00:00Z".parse().unwrap() };
        let line = entry.to_line();
        assert!(line.ends_with('\n') && line.contains("2026-11-23T10:00:00Z"), "{line}");
        assert_eq!(LedgerEntry::parse_line(&line).unwrap(), Some(entry));
        assert_eq!(LedgerEntry::parse_line("   ").unwrap(), None);
        assert!(LedgerEntry::parse_line("nonsense").unwrap_err().to_string().contains("PATIENT-ID TIME"));
        assert!(LedgerEntry::parse_line(&format!("{} yesterday", entry.patient)).is_err());
        assert!(LedgerEntry::parse_line("not-an-id 2026-11-23T10:00:00Z").is_err());
    }
}
