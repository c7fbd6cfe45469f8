//! Who a patient is: NHS number, date of birth, contact details; and the password rules for
//! everyone who signs in.
use crate::ids::{PatientId, PharmacyId, PracticeId};
use crate::text::{Email, PersonName};
use crate::DomainError;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::LazyLock;

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

    /// Checks length, that the password does not contain the user's own name or email, is not one
    /// character repeated and is not one of the most common (breached) passwords; no composition
    /// rules (NIST SP 800-63B 5.1.1.2).
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
        if is_common_password(candidate) {
            return Err(DomainError::invalid("password", COMMON_PASSWORD_MESSAGE));
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

const COMMON_PASSWORD_MESSAGE: &str = "is one of the most commonly used passwords; choose another";

/// The most common and breached passwords of at least 10 characters, lower-cased, one per line in
/// byte order under a `#` header; where they come from: `data/build-common-passwords.py`.
const COMMON_PASSWORDS_FILE: &str = include_str!("../data/common-passwords.txt");

/// The list above as a sorted slice for binary search, built on first use.
static COMMON_PASSWORDS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let mut list: Vec<&'static str> =
        COMMON_PASSWORDS_FILE.lines().filter(|line| !line.is_empty() && !line.starts_with('#')).collect();
    // The file is sorted already (a test checks it); sorting again keeps the binary search right
    // even if someone edits the file by hand.
    list.sort_unstable();
    list.dedup();
    list
});

/// Whether the password, compared lower-cased, is on the list of the most common (breached)
/// passwords. Only entries of 10 characters or more are listed: shorter ones fail the length rule.
pub fn is_common_password(candidate: &str) -> bool {
    let lower = candidate.to_lowercase();
    COMMON_PASSWORDS.binary_search(&lower.as_str()).is_ok()
}

/// A strength estimate for a password being chosen, for a meter beside the field. Only
/// `acceptable` decides anything: it is exactly whether [`Password::new`] accepts the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PasswordStrength {
    /// zxcvbn's score: 0 (guessable in about 10^3 tries) to 4 (more than 10^10).
    pub score: u8,
    /// "very weak", "weak", "fair", "strong" or "very strong", for the score.
    pub label: &'static str,
    /// zxcvbn's advice (a warning and suggestions), when it has any.
    pub feedback: Option<String>,
    /// Whether [`Password::new`] would accept this password.
    pub acceptable: bool,
    /// Why [`Password::new`] would refuse it, when it would.
    pub problem: Option<String>,
}

impl PasswordStrength {
    pub fn label_for(score: u8) -> &'static str {
        match score {
            0 => "very weak",
            1 => "weak",
            2 => "fair",
            3 => "strong",
            _ => "very strong",
        }
    }
}

/// Estimates a password's strength with zxcvbn, the user's name and email (`personal`) counting as
/// words an attacker would try first, and says whether the password policy accepts it. Only the
/// first [`Password::MAX`] characters are scored, as zxcvbn slows down on long inputs.
pub fn password_strength(candidate: &str, owner: PasswordOwner, personal: &[&str]) -> PasswordStrength {
    let capped = match candidate.char_indices().nth(Password::MAX) {
        Some((end, _)) => &candidate[..end],
        None => candidate,
    };
    let words: Vec<&str> = personal
        .iter()
        .copied()
        .chain(personal.iter().flat_map(|p| p.split(|c: char| !c.is_alphanumeric())))
        .filter(|w| !w.is_empty())
        .collect();
    let estimate = zxcvbn::zxcvbn(capped, &words);
    let score = u8::from(estimate.score()).min(4);
    let feedback = estimate.feedback().map(|f| f.to_string().trim().to_string()).filter(|f| !f.is_empty());
    let problem = Password::new(candidate, owner, personal).err().map(|e| match e {
        DomainError::Invalid { message, .. } => message,
        other => other.to_string(),
    });
    PasswordStrength {
        score,
        label: PasswordStrength::label_for(score),
        feedback,
        acceptable: problem.is_none(),
        problem,
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

    fn refusal(p: &str, owner: PasswordOwner) -> Option<DomainError> {
        Password::new(p, owner, &[]).err()
    }

    fn listed() -> Vec<&'static str> {
        COMMON_PASSWORDS_FILE.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn common_passwords_are_refused_whatever_their_case() {
        for p in ["1234567890", "qwertyuiop", "password123", "QwertyUIOP", "PASSWORD123", "Football123", "1q2w3e4r5t"] {
            assert!(is_common_password(p), "{p}");
            assert_eq!(
                refusal(p, PasswordOwner::Patient),
                Some(DomainError::invalid("password", COMMON_PASSWORD_MESSAGE)),
                "{p}"
            );
        }
        for p in ["123456789012", "qwertyuiopasdfghjkl", "PasswordPassword", "1qaz2wsx3edc"] {
            assert_eq!(
                refusal(p, PasswordOwner::Staff),
                Some(DomainError::invalid("password", COMMON_PASSWORD_MESSAGE)),
                "{p}"
            );
        }
        // Too short to be listed: the length rule speaks first.
        assert_eq!(
            refusal("password", PasswordOwner::Patient),
            Some(DomainError::invalid("password", "must be at least 10 characters"))
        );
    }

    #[test]
    fn uncommon_passphrases_and_the_passwords_used_elsewhere_are_accepted() {
        for p in ["violet-quartz-harbor-57", "tangerine oboe glacier minted", "Wq8#zLp2!vRt"] {
            assert!(!is_common_password(p), "{p}");
            assert!(Password::new(p, PasswordOwner::Staff, &[]).is_ok(), "{p}");
        }
        // The demo accounts' password and the ones other crates' tests use.
        assert!(Password::new("demo-password-2026", PasswordOwner::Staff, &[]).is_ok());
        assert!(Password::new("correct horse battery", PasswordOwner::Patient, &[]).is_ok());
        assert!(!is_common_password(""));
    }

    #[test]
    fn the_common_password_list_is_sorted_lower_case_and_a_plausible_size() {
        let list = listed();
        assert!((2_000..200_000).contains(&list.len()), "{} entries", list.len());
        assert!(list.windows(2).all(|w| w[0] < w[1]), "sorted by byte order, no duplicates");
        assert!(list.iter().all(|p| p.chars().count() >= 10 && *p == p.to_lowercase() && *p == p.trim()));
        let declared = COMMON_PASSWORDS_FILE
            .lines()
            .find_map(|l| l.strip_prefix("# Entries: "))
            .and_then(|n| n.trim().parse::<usize>().ok());
        assert_eq!(declared, Some(list.len()), "the header's count");
        assert_eq!(COMMON_PASSWORDS.len(), list.len());
        assert!(list.iter().all(|p| is_common_password(p)));
    }

    #[test]
    fn strength_rises_with_obviously_stronger_passwords() {
        let s = |p: &str| password_strength(p, PasswordOwner::Patient, &[]);
        let scores: Vec<u8> = ["password123", "monkey-1987", "purple giraffe", "violet-quartz-harbor-57 glacier"]
            .iter()
            .map(|p| s(p).score)
            .collect();
        assert!(scores.windows(2).all(|w| w[0] <= w[1]), "{scores:?}");
        assert!(scores[0] <= 1 && scores[3] == 4, "{scores:?}");

        let weak = s("password123");
        assert_eq!(weak.label, PasswordStrength::label_for(weak.score));
        assert!(!weak.acceptable);
        assert_eq!(weak.problem.as_deref(), Some(COMMON_PASSWORD_MESSAGE));
        assert!(weak.feedback.is_some());

        let strong = s("violet-quartz-harbor-57 glacier");
        assert_eq!((strong.label, strong.acceptable, strong.problem), ("very strong", true, None));

        let short = password_strength("Xq7!mZ2#", PasswordOwner::Staff, &[]);
        assert_eq!(short.problem.as_deref(), Some("must be at least 12 characters"));
    }

    #[test]
    fn strength_counts_the_users_own_name_and_email_against_the_password() {
        let personal = ["Quillon Drabwick", "quillon.drabwick@example.org"];
        for p in ["drabwick-quillon", "quillondrabwick"] {
            let without = password_strength(p, PasswordOwner::Patient, &[]);
            let with = password_strength(p, PasswordOwner::Patient, &personal);
            assert!(with.score < without.score, "{p}: {} vs {}", with.score, without.score);
            assert!(without.acceptable && !with.acceptable, "{p}");
            assert_eq!(with.problem.as_deref(), Some("must not contain your name or email address"));
        }
    }

    #[test]
    fn strength_of_a_very_long_input_is_capped_and_quick() {
        let long = "correct horse battery staple ".repeat(400);
        let started = std::time::Instant::now();
        let estimate = password_strength(&long, PasswordOwner::Staff, &[]);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert!(!estimate.acceptable);
        assert_eq!(estimate.problem.as_deref(), Some("must be at most 128 characters"));
        // Multi-byte characters are cut on a character boundary.
        assert!(password_strength(&"é".repeat(500), PasswordOwner::Patient, &[]).problem.is_some());
    }

    #[test]
    fn phone_numbers() {
        assert_eq!(parse_phone("07700 900123").unwrap().as_deref(), Some("07700 900123"));
        assert_eq!(parse_phone("").unwrap(), None);
        assert!(parse_phone("call me").is_err());
    }
}
