//! Who a patient is: NHS number, date of birth, contact details; and the password rules for
//! everyone who signs in.
use crate::ids::{PatientId, PharmacyId, PracticeId};
use crate::text::{Email, PersonName};
use crate::DomainError;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A 10-digit NHS number whose last digit is the modulus-11 check digit.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NhsNumber(String);

impl NhsNumber {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let digits: String = s.chars().filter(|c| !c.is_whitespace() && *c != '-').collect();
        if digits.len() != 10 || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(DomainError::invalid("nhs_number", "must be 10 digits, for example 943 476 5919"));
        }
        let d: Vec<u32> = digits.chars().filter_map(|c| c.to_digit(10)).collect();
        let sum: u32 = d[..9].iter().enumerate().map(|(i, v)| v * (10 - i as u32)).sum();
        let check = match 11 - (sum % 11) {
            11 => 0,
            10 => return Err(DomainError::invalid("nhs_number", "is not a valid NHS number (check digit)")),
            c => c,
        };
        if check != d[9] {
            return Err(DomainError::invalid("nhs_number", "is not a valid NHS number (check digit)"));
        }
        Ok(Self(digits))
    }

    /// Builds a valid NHS number from 9 leading digits (used by the demo data generator);
    /// `None` when those digits have no valid check digit.
    pub fn from_prefix(nine_digits: u32) -> Option<Self> {
        let prefix = format!("{:09}", nine_digits % 1_000_000_000);
        (0..10).find_map(|c| Self::parse(&format!("{prefix}{c}")).ok())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// "943 476 5919", the way NHS numbers are written.
    pub fn formatted(&self) -> String {
        format!("{} {} {}", &self.0[..3], &self.0[3..6], &self.0[6..])
    }
}
impl TryFrom<String> for NhsNumber {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, DomainError> {
        Self::parse(&s)
    }
}
impl From<NhsNumber> for String {
    fn from(n: NhsNumber) -> String {
        n.0
    }
}
impl fmt::Debug for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NhsNumber(<redacted>)")
    }
}

/// A date of birth: not in the future and not more than 130 years ago.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DateOfBirth(Date);

impl DateOfBirth {
    pub fn parse(s: &str, today: Date) -> Result<Self, DomainError> {
        let date: Date = s
            .trim()
            .parse()
            .map_err(|_| DomainError::invalid("date_of_birth", "must be a date written as YYYY-MM-DD"))?;
        Self::new(date, today)
    }
    pub fn new(date: Date, today: Date) -> Result<Self, DomainError> {
        if date > today {
            return Err(DomainError::invalid("date_of_birth", "cannot be in the future"));
        }
        if date.year() < today.year() - 130 {
            return Err(DomainError::invalid("date_of_birth", "is more than 130 years ago"));
        }
        Ok(Self(date))
    }
    /// For values read back from storage, which were validated when written.
    pub fn from_stored(date: Date) -> Self {
        Self(date)
    }
    pub fn date(&self) -> Date {
        self.0
    }
}
impl fmt::Debug for DateOfBirth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DateOfBirth(<redacted>)")
    }
}

/// UK phone number: digits, spaces and a leading +, 10 to 15 digits.
pub fn parse_phone(s: &str) -> Result<Option<String>, DomainError> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let digits = t.chars().filter(|c| c.is_ascii_digit()).count();
    let allowed = t.chars().enumerate().all(|(i, c)| c.is_ascii_digit() || c == ' ' || (c == '+' && i == 0));
    if !allowed || !(10..=15).contains(&digits) {
        return Err(DomainError::invalid("phone", "must be a phone number such as 07700 900123"));
    }
    Ok(Some(t.to_string()))
}

/// Whose password: the rules are stricter for staff (NIST SP 800-63B lengths).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordOwner {
    Patient,
    Staff,
}

/// A password that meets the policy. Never printed, never serialised.
pub struct Password(String);

impl Password {
    pub const MAX: usize = 128;

    pub fn min_len(owner: PasswordOwner) -> usize {
        match owner {
            PasswordOwner::Patient => 10,
            PasswordOwner::Staff => 12,
        }
    }

    /// Checks length and that the password does not contain the user's own name or email; no
    /// composition rules (NIST SP 800-63B).
    pub fn new(candidate: &str, owner: PasswordOwner, personal: &[&str]) -> Result<Self, DomainError> {
        let len = candidate.chars().count();
        let min = Self::min_len(owner);
        if len < min {
            return Err(DomainError::invalid("password", format!("must be at least {min} characters")));
        }
        if len > Self::MAX {
            return Err(DomainError::invalid("password", format!("must be at most {} characters", Self::MAX)));
        }
        let lower = candidate.to_lowercase();
        for word in personal.iter().flat_map(|p| p.split(|c: char| !c.is_alphanumeric())) {
            if word.chars().count() >= 3 && lower.contains(&word.to_lowercase()) {
                return Err(DomainError::invalid("password", "must not contain your name or email address"));
            }
        }
        if candidate.chars().all(|c| c == candidate.chars().next().unwrap_or(' ')) {
            return Err(DomainError::invalid("password", "must not be one character repeated"));
        }
        Ok(Self(candidate.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}
impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// How the patient wants their medicines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fulfilment {
    Collection,
    Delivery,
}
impl Fulfilment {
    pub fn as_str(self) -> &'static str {
        match self {
            Fulfilment::Collection => "collection",
            Fulfilment::Delivery => "delivery",
        }
    }
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        match s.trim() {
            "collection" => Ok(Self::Collection),
            "delivery" => Ok(Self::Delivery),
            _ => Err(DomainError::invalid("fulfilment", "must be 'collection' or 'delivery'")),
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Fulfilment::Collection => "Collect from the pharmacy",
            Fulfilment::Delivery => "Deliver to my address",
        }
    }
}

/// A patient as held by their pharmacy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Patient {
    pub id: PatientId,
    pub pharmacy_id: PharmacyId,
    pub practice_id: PracticeId,
    pub given_name: PersonName,
    pub family_name: PersonName,
    pub date_of_birth: DateOfBirth,
    pub nhs_number: NhsNumber,
    pub email: Option<Email>,
    pub phone: Option<String>,
    pub address: Option<String>,
}

impl Patient {
    pub fn full_name(&self) -> String {
        format!("{} {}", self.given_name, self.family_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn today() -> Date {
        "2026-11-23".parse().unwrap()
    }

    #[test]
    fn known_valid_nhs_numbers_are_accepted() {
        for ok in ["9434765919", "943 476 5919", "943-476-5919", "4010232137"] {
            assert!(NhsNumber::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(NhsNumber::parse("9434765919").unwrap().formatted(), "943 476 5919");
    }

    #[test]
    fn bad_check_digits_and_shapes_are_refused() {
        for bad in ["9434765918", "943476591", "94347659199", "94347659a9", ""] {
            assert!(NhsNumber::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn every_generated_nhs_number_parses(prefix in 0u32..1_000_000_000) {
            if let Some(n) = NhsNumber::from_prefix(prefix) {
                prop_assert_eq!(NhsNumber::parse(n.as_str()), Ok(n));
            }
        }

        #[test]
        fn changing_one_digit_breaks_the_check(prefix in 0u32..1_000_000_000, pos in 0usize..10, delta in 1u32..10) {
            if let Some(n) = NhsNumber::from_prefix(prefix) {
                let mut digits: Vec<u32> = n.as_str().chars().filter_map(|c| c.to_digit(10)).collect();
                digits[pos] = (digits[pos] + delta) % 10;
                let changed: String = digits.iter().map(|d| char::from_digit(*d, 10).unwrap_or('0')).collect();
                prop_assert!(NhsNumber::parse(&changed).is_err());
            }
        }
    }

    #[test]
    fn date_of_birth_cannot_be_in_the_future() {
        assert!(DateOfBirth::parse("2026-11-24", today()).is_err());
        assert!(DateOfBirth::parse("2026-11-23", today()).is_ok());
        assert!(DateOfBirth::parse("1890-01-01", today()).is_err());
        assert!(DateOfBirth::parse("23/11/1970", today()).is_err());
    }

    #[test]
    fn password_policy_by_owner() {
        assert!(Password::new("short-pass", PasswordOwner::Patient, &[]).is_ok());
        assert!(Password::new("short-pass", PasswordOwner::Staff, &[]).is_err());
        assert!(Password::new("aaaaaaaaaaaaaa", PasswordOwner::Staff, &[]).is_err());
        let err = Password::new("ann-smith-rules", PasswordOwner::Patient, &["Ann Smith", "ann@example.org"]);
        assert!(err.is_err());
        assert!(
            !format!("{:?}", Password::new("a long enough one", PasswordOwner::Patient, &[]).unwrap()).contains("long")
        );
    }

    #[test]
    fn phone_numbers() {
        assert_eq!(parse_phone("07700 900123").unwrap().as_deref(), Some("07700 900123"));
        assert_eq!(parse_phone("").unwrap(), None);
        assert!(parse_phone("call me").is_err());
    }
}
