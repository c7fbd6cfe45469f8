//! Typed identifiers. Random (UUID v4) so that ids reveal neither counts nor order, and one type
//! per entity so that a pharmacy id can never be passed where a patient id is expected.
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

macro_rules! typed_id {
    ($($(#[$meta:meta])* $name:ident),* $(,)?) => {$(
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub fn new() -> Self { Self(Uuid::new_v4()) }
            pub fn from_uuid(uuid: Uuid) -> Self { Self(uuid) }
            pub fn as_uuid(&self) -> Uuid { self.0 }
        }
        impl Default for $name { fn default() -> Self { Self::new() } }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { self.0.hyphenated().fmt(f) }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0.hyphenated())
            }
        }
        impl FromStr for $name {
            type Err = crate::DomainError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s.trim()).map(Self).map_err(|_| {
                    crate::DomainError::invalid("id", format!("'{}' is not a valid identifier", crate::text::clip(s, 40)))
                })
            }
        }
    )*};
}

typed_id!(
    /// A patient record, held by exactly one pharmacy.
    PatientId,
    PharmacyId,
    PracticeId,
    /// A person who can sign in: patient, pharmacy or practice staff, platform operator.
    UserId,
    OrderId,
    OrderItemId,
    /// One authorised repeat medication line on a patient's repeat list.
    RepeatItemId,
    EmailId,
    /// A sign-in event kept for the audit trail.
    SecurityEventId,
    /// A live-data custodian's time-limited break-glass access.
    GrantId,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_text() {
        let id = OrderId::new();
        assert_eq!(id.to_string().parse::<OrderId>(), Ok(id));
    }

    #[test]
    fn garbage_is_refused_with_a_sentence() {
        let err = "1; DROP TABLE".parse::<PatientId>().unwrap_err();
        assert!(err.to_string().contains("not a valid identifier"));
    }
}
