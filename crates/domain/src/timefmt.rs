//! Times are stored in UTC and shown in Europe/London.
use jiff::{civil::Date, tz::TimeZone, Timestamp};

fn london() -> TimeZone {
    // The tz database is bundled into the binary (jiff feature tzdb-bundle-always), so this lookup
    // cannot fail at run time; UTC is a defensive fallback only.
    TimeZone::get("Europe/London").unwrap_or(TimeZone::UTC)
}

pub fn london_date(ts: Timestamp) -> Date {
    ts.to_zoned(london()).date()
}

/// The moment a London day starts (midnight, or 01:00 on the rare days that skip it).
pub fn london_day_start(date: Date) -> Timestamp {
    date.to_zoned(london()).map(|z| z.timestamp()).unwrap_or_else(|_| {
        // Only for dates outside jiff's range, which a validated form never gives.
        Timestamp::UNIX_EPOCH
    })
}

/// "23 Nov 2026, 14:05"
pub fn display_timestamp(ts: Timestamp) -> String {
    ts.to_zoned(london()).strftime("%-d %b %Y, %H:%M").to_string()
}

/// "23 Nov 2026"
pub fn display_date(date: Date) -> String {
    date.strftime("%-d %b %Y").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summer_time_is_shown_in_london_time() {
        let ts: Timestamp = "2026-07-01T12:00:00Z".parse().unwrap();
        assert_eq!(display_timestamp(ts), "1 Jul 2026, 13:00");
        let winter: Timestamp = "2026-11-23T23:30:00Z".parse().unwrap();
        assert_eq!(display_timestamp(winter), "23 Nov 2026, 23:30");
    }

    #[test]
    fn london_days_start_at_london_midnight() {
        let summer: Date = "2026-07-01".parse().unwrap();
        assert_eq!(london_day_start(summer).to_string(), "2026-06-30T23:00:00Z");
        let winter: Date = "2026-11-23".parse().unwrap();
        assert_eq!(london_day_start(winter).to_string(), "2026-11-23T00:00:00Z");
    }

    #[test]
    fn the_london_date_changes_at_london_midnight() {
        let ts: Timestamp = "2026-06-30T23:30:00Z".parse().unwrap();
        assert_eq!(london_date(ts).to_string(), "2026-07-01");
    }
}
