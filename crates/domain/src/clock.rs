//! Time is injected so that due dates, timeouts and retention are tested without sleeping.
use jiff::Timestamp;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
    /// Today's date where the service operates (Europe/London).
    fn today(&self) -> jiff::civil::Date {
        crate::timefmt::london_date(self.now())
    }
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}
