//! Small validated text types shared by several entities.
use crate::DomainError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Shortens untrusted text before it is echoed in an error message.
pub fn clip(s: &str, max_chars: usize) -> String {
    let mut out: String = s.chars().take(max_chars).collect();
    if s.chars().count() > max_chars {
        out.push('…');
    }
    out
}

fn no_control_chars(field: &'static str, s: &str, allow_newlines: bool) -> Result<(), DomainError> {
    let bad = s.chars().any(|c| c.is_control() && !(allow_newlines && (c == '\n' || c == '\r' || c == '\t')));
    if bad {
        return Err(DomainError::invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// Trimmed, non-empty, single-line text of bounded length (names, drug names, directions).
pub fn required_line(field: &'static str, s: &str, max_chars: usize) -> Result<String, DomainError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(DomainError::invalid(field, "is required"));
    }
    if t.chars().count() > max_chars {
        return Err(DomainError::invalid(field, format!("must be at most {max_chars} characters")));
    }
    no_control_chars(field, t, false)?;
    Ok(t.to_string())
}

/// Optional free text (notes), bounded; empty input becomes `None`.
pub fn optional_text(field: &'static str, s: &str, max_chars: usize) -> Result<Option<String>, DomainError> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(None);
    }
    if t.chars().count() > max_chars {
        return Err(DomainError::invalid(field, format!("must be at most {max_chars} characters")));
    }
    no_control_chars(field, t, true)?;
    Ok(Some(t.to_string()))
}

/// A person's name as they wish it written. Debug output is redacted: it is patient data.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PersonName(String);

impl PersonName {
    pub const MAX: usize = 100;
    pub fn parse(field: &'static str, s: &str) -> Result<Self, DomainError> {
        required_line(field, s, Self::MAX).map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for PersonName {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, DomainError> {
        Self::parse("name", &s)
    }
}
impl From<PersonName> for String {
    fn from(n: PersonName) -> String {
        n.0
    }
}
impl fmt::Debug for PersonName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PersonName(<redacted>)")
    }
}
impl fmt::Display for PersonName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An email address: one `@`, a dotted domain, no spaces, at most 254 characters; stored lower-cased
/// so that sign-in is case-insensitive. Deliberately not a full RFC 5322 parser: the address is
/// proven by sending mail to it.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let t = s.trim().to_lowercase();
        let invalid = || DomainError::invalid("email", "must be an email address such as name@example.org");
        if t.is_empty() || t.len() > 254 || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = t.split_once('@').ok_or_else(invalid)?;
        if local.is_empty()
            || domain.contains('@')
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || domain.contains("..")
        {
            return Err(invalid());
        }
        Ok(Self(t))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for Email {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, DomainError> {
        Self::parse(&s)
    }
}
impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0
    }
}
impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Email(<redacted>)")
    }
}
impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(Email::parse("  Ann.Smith@Example.ORG ").unwrap().as_str(), "ann.smith@example.org");
        for bad in ["", "ann", "ann@", "@x.org", "ann@x", "a b@x.org", "a@x..org", "a@@x.org"] {
            assert!(Email::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn debug_never_prints_patient_data() {
        let n = PersonName::parse("name", "Ann Smith").unwrap();
        assert!(!format!("{n:?}").contains("Ann"));
        let e = Email::parse("ann@example.org").unwrap();
        assert!(!format!("{e:?}").contains("ann"));
    }

    #[test]
    fn text_limits_and_control_characters() {
        assert!(required_line("name", "   ", 10).is_err());
        assert!(required_line("name", "abcdefghijk", 10).is_err());
        assert!(required_line("name", "a\u{0}b", 10).is_err());
        assert_eq!(optional_text("note", "  ", 10).unwrap(), None);
        assert_eq!(optional_text("note", "line1\nline2", 20).unwrap().as_deref(), Some("line1\nline2"));
    }
}
