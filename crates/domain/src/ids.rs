//! Typed identifiers, one type per entity so that a pharmacy id can never be passed where a
//! patient id is expected. Random (UUID v4), so that ids reveal neither counts nor order; except
//! the ids of orders and their items, see [`OrderId::dated`].
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

const SECONDS_PER_DAY: i64 = 24 * 60 * 60;

/// A UUID v7 whose timestamp is the start of `at`'s UTC day, the other 74 bits random.
///
/// Why not v4: an order adds entries to the indexes of orders, items and transitions keyed by
/// order and item id. With random ids each lands on a random page of indexes that, with years of
/// orders, outgrow memory, and is read from disk inside the write; with the day in front, a day's
/// orders share a small, hot region of each index. Why only the day (RFC 9562, 6.1 lets a
/// timestamp be coarsened): the id then tells no more than the order's own date, which everyone
/// who may see the order sees beside it, and neither how many orders there are nor which came
/// first that day.
fn day_stamped(at: jiff::Timestamp) -> Uuid {
    let day = at.as_second().div_euclid(SECONDS_PER_DAY) * SECONDS_PER_DAY;
    // Before 1970 (never, for an order) the day clamps to the epoch: still a valid, random id.
    let seconds = u64::try_from(day).unwrap_or(0);
    Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, seconds, 0))
}

impl OrderId {
    /// A new order's id, made at `at`: see [`day_stamped`].
    pub fn dated(at: jiff::Timestamp) -> Self {
        Self(day_stamped(at))
    }
}

impl OrderItemId {
    /// A new order item's id, made with its order at `at`: see [`day_stamped`].
    pub fn dated(at: jiff::Timestamp) -> Self {
        Self(day_stamped(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_text() {
        let id = OrderId::new();
        assert_eq!(id.to_string().parse::<OrderId>(), Ok(id));
    }

    #[test]
    fn dated_ids_share_their_day_and_nothing_else() {
        let morning: jiff::Timestamp = "2026-12-06T00:00:01Z".parse().unwrap();
        let evening: jiff::Timestamp = "2026-12-06T23:59:59Z".parse().unwrap();
        let next_day: jiff::Timestamp = "2026-12-07T00:00:00Z".parse().unwrap();
        let (a, b) = (OrderId::dated(evening), OrderItemId::dated(morning));
        let (a, b) = (a.as_uuid(), b.as_uuid());
        assert_eq!(a.get_version(), Some(uuid::Version::SortRand));
        assert_eq!(a.as_bytes()[..6], b.as_bytes()[..6], "the same day, whatever the hour");
        let day_ms = u64::try_from(next_day.as_millisecond() - 86_400_000).unwrap();
        assert_eq!(a.get_timestamp().map(|t| t.to_unix()), Some((day_ms / 1000, 0)));
        assert!(OrderId::dated(next_day).as_uuid() > a, "a later day sorts after");
        // The rest is random: ids made the same instant differ, in no order.
        let same: Vec<Uuid> = (0..64).map(|_| OrderId::dated(evening).as_uuid()).collect();
        assert_eq!(same.iter().collect::<std::collections::HashSet<_>>().len(), 64);
        assert!(!same.windows(2).all(|w| w[0] < w[1]) && !same.windows(2).all(|w| w[0] > w[1]));
    }

    #[test]
    fn garbage_is_refused_with_a_sentence() {
        let err = "1; DROP TABLE".parse::<PatientId>().unwrap_err();
        assert!(err.to_string().contains("not a valid identifier"));
    }
}
