//! A pharmacy leaving RepeatRx (P12): once an operator marks it as leaving, its staff are locked
//! out at once and its patients are told; every patient's data is deleted (and their data keys
//! destroyed) no later than seven days after. A shorter grace may be chosen, never a longer one.
use crate::DomainError;
use jiff::{SignedDuration, Timestamp};

/// The longest grace between marking a pharmacy as leaving and deleting its patients' data.
pub const MAX_GRACE_DAYS: u8 = 7;

/// When the data of a pharmacy marked as leaving `at` with `grace_days` must be gone.
pub fn delete_after(at: Timestamp, grace_days: u8) -> Result<Timestamp, DomainError> {
    if grace_days > MAX_GRACE_DAYS {
        return Err(DomainError::invalid(
            "grace_days",
            format!(
                "at most {MAX_GRACE_DAYS} days: patients' data must be deleted within a week of the pharmacy leaving"
            ),
        ));
    }
    Ok(at + SignedDuration::from_hours(24 * i64::from(grace_days)))
}

/// What is left of the grace at `now`, in whole hours rounded up (0 once it is over).
pub fn hours_left(now: Timestamp, delete_after: Timestamp) -> i64 {
    let left = delete_after.duration_since(now).as_secs();
    if left <= 0 {
        0
    } else {
        (left + 3599) / 3600
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grace_is_at_most_seven_days_and_counts_down() {
        let at: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        assert_eq!(delete_after(at, 7).unwrap(), "2026-11-30T10:00:00Z".parse().unwrap());
        assert_eq!(delete_after(at, 0).unwrap(), at, "at once, if the operator chooses");
        assert!(delete_after(at, 8).unwrap_err().to_string().starts_with("grace_days: at most 7 days"));
        let end = delete_after(at, 2).unwrap();
        assert_eq!(hours_left(at, end), 48);
        assert_eq!(hours_left(at + SignedDuration::from_mins(1), end), 48, "rounded up");
        assert_eq!(hours_left(end, end), 0);
        assert_eq!(hours_left(end + SignedDuration::from_hours(5), end), 0);
    }
}
