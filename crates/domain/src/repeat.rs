//! A repeat authorisation (one line of a patient's repeat list) and the rules that say whether
//! it can be ordered today.
use crate::catalogue::ControlledSchedule;
use crate::ids::{PatientId, RepeatItemId};
use crate::text::{optional_text, required_line};
use crate::timefmt::display_date;
use crate::DomainError;
use jiff::civil::Date;
use jiff::ToSpan;
use serde::{Deserialize, Serialize};

/// Days between issues of a repeat item (7 to 365).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CycleDays(u16);

impl CycleDays {
    pub fn new(days: i64) -> Result<Self, DomainError> {
        if !(7..=365).contains(&days) {
            return Err(DomainError::invalid("cycle_days", "must be between 7 and 365 days"));
        }
        Ok(Self(days as u16))
    }
    pub fn get(self) -> i64 {
        i64::from(self.0)
    }
}

/// How ordering windows are set for a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderingPolicy {
    /// An item can be ordered this many days before its next due date.
    pub due_window_days: i64,
}

impl Default for OrderingPolicy {
    fn default() -> Self {
        Self { due_window_days: 7 }
    }
}

/// The prescriber-authorised details of a repeat line, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepeatTerms {
    /// The catalogue code, or `None` for a free-text item (shown as such).
    pub medicine_code: Option<String>,
    pub drug_name: String,
    pub strength: String,
    pub form: String,
    pub quantity: u32,
    pub directions: String,
    pub cycle_days: CycleDays,
    pub issues_authorised: u32,
    pub review_date: Date,
    pub schedule: ControlledSchedule,
}

/// Raw input for [`RepeatTerms::new`], as typed by a prescriber or pharmacist.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RepeatTermsInput {
    pub medicine_code: Option<String>,
    pub drug_name: String,
    pub strength: String,
    pub form: String,
    pub quantity: i64,
    pub directions: String,
    pub cycle_days: i64,
    pub issues: i64,
    pub review_date: String,
}

impl RepeatTerms {
    /// Validates input; a catalogue code fills name, strength, form and controlled status from
    /// the catalogue so they cannot disagree with it.
    pub fn new(input: &RepeatTermsInput, today: Date) -> Result<Self, DomainError> {
        let code = input.medicine_code.as_deref().map(str::trim).filter(|c| !c.is_empty());
        let (medicine_code, drug_name, strength, form, schedule) = match code {
            Some(code) => {
                let m = crate::catalogue::Catalogue::builtin()
                    .get(code)
                    .ok_or_else(|| DomainError::invalid("medicine_code", "is not in the medication catalogue"))?;
                (Some(m.code.clone()), m.name.clone(), m.strength.clone(), m.form.clone(), m.schedule)
            }
            None => (
                None,
                required_line("drug_name", &input.drug_name, 120)?,
                required_line("strength", &input.strength, 60)?,
                required_line("form", &input.form, 60)?,
                ControlledSchedule::None,
            ),
        };
        if !(1..=10_000).contains(&input.quantity) {
            return Err(DomainError::invalid("quantity", "must be between 1 and 10000"));
        }
        if !(1..=52).contains(&input.issues) {
            return Err(DomainError::invalid("issues", "must be between 1 and 52"));
        }
        let review_date: Date = input
            .review_date
            .trim()
            .parse()
            .map_err(|_| DomainError::invalid("review_date", "must be a date written as YYYY-MM-DD"))?;
        if review_date <= today {
            return Err(DomainError::invalid("review_date", "must be in the future"));
        }
        if review_date > today.saturating_add(2.years()) {
            return Err(DomainError::invalid("review_date", "must be within two years"));
        }
        Ok(Self {
            medicine_code,
            drug_name,
            strength,
            form,
            quantity: input.quantity as u32,
            directions: required_line("directions", &input.directions, 300)?,
            cycle_days: CycleDays::new(input.cycle_days)?,
            issues_authorised: input.issues as u32,
            review_date,
            schedule,
        })
    }

    /// "Atorvastatin 20mg tablets"
    pub fn description(&self) -> String {
        format!("{} {} {}", self.drug_name, self.strength, self.form)
    }
}

/// Whether an item can go on an order today, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Orderability {
    Orderable,
    TooEarly { opens_on: Date },
    ReviewDue { review_date: Date },
    NoIssuesLeft,
    Controlled { schedule: ControlledSchedule },
    OnOpenOrder,
    Stopped,
}

impl Orderability {
    pub fn is_orderable(&self) -> bool {
        matches!(self, Orderability::Orderable)
    }

    /// The reason in words, for patient and pharmacy alike.
    pub fn reason(&self) -> String {
        match self {
            Orderability::Orderable => "Can be ordered now".into(),
            Orderability::TooEarly { opens_on } => {
                format!("Too early to order: you can order this from {}", display_date(*opens_on))
            }
            Orderability::ReviewDue { review_date } => format!(
                "Medication review needed: the review date ({}) has passed. Contact your practice",
                display_date(*review_date)
            ),
            Orderability::NoIssuesLeft => {
                "No issues left on this repeat: your practice needs to authorise it again".into()
            }
            Orderability::Controlled { schedule } => {
                format!("{} – cannot be ordered online. Please speak to your pharmacy", schedule.label())
            }
            Orderability::OnOpenOrder => "Already on an order that is in progress".into(),
            Orderability::Stopped => "Stopped: this item is no longer on your repeat prescription".into(),
        }
    }
}

/// One line of a patient's repeat list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepeatItem {
    pub id: RepeatItemId,
    pub patient_id: PatientId,
    pub terms: RepeatTerms,
    pub issues_remaining: u32,
    /// The date the next supply is due; `None` before the first issue (orderable at once).
    pub next_due: Option<Date>,
    pub active: bool,
}

impl RepeatItem {
    pub fn new(patient_id: PatientId, terms: RepeatTerms) -> Self {
        Self {
            id: RepeatItemId::new(),
            patient_id,
            issues_remaining: terms.issues_authorised,
            terms,
            next_due: None,
            active: true,
        }
    }

    /// The first day it may be ordered in the current cycle.
    pub fn opens_on(&self, policy: &OrderingPolicy) -> Option<Date> {
        self.next_due.map(|d| d.saturating_sub(policy.due_window_days.days()))
    }

    /// The rules, in the order a patient would want to hear them.
    pub fn orderability(&self, today: Date, on_open_order: bool, policy: &OrderingPolicy) -> Orderability {
        if !self.active {
            return Orderability::Stopped;
        }
        if self.terms.schedule.blocks_online_ordering() {
            return Orderability::Controlled { schedule: self.terms.schedule };
        }
        if on_open_order {
            return Orderability::OnOpenOrder;
        }
        if self.issues_remaining == 0 {
            return Orderability::NoIssuesLeft;
        }
        if today > self.terms.review_date {
            return Orderability::ReviewDue { review_date: self.terms.review_date };
        }
        match self.opens_on(policy) {
            Some(opens_on) if today < opens_on => Orderability::TooEarly { opens_on },
            _ => Orderability::Orderable,
        }
    }

    /// Records one issue approved by a prescriber on `approved_on`: one fewer issue left, and the
    /// next supply due one cycle later.
    pub fn record_issue(&mut self, approved_on: Date) -> Result<(), DomainError> {
        if self.issues_remaining == 0 {
            return Err(DomainError::NotOrderable(Orderability::NoIssuesLeft.reason()));
        }
        self.issues_remaining -= 1;
        self.next_due = Some(approved_on.saturating_add(self.terms.cycle_days.get().days()));
        Ok(())
    }

    /// Whether a due-window reminder is owed today for this cycle.
    pub fn reminder_due(&self, today: Date, policy: &OrderingPolicy) -> bool {
        self.next_due.is_some() && self.orderability(today, false, policy).is_orderable()
    }
}

/// Validates an optional order note.
pub fn order_note(s: &str) -> Result<Option<String>, DomainError> {
    optional_text("note", s, 500)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn date(s: &str) -> Date {
        s.parse().unwrap()
    }

    fn terms(cycle: i64, issues: i64, review: &str) -> RepeatTerms {
        RepeatTerms::new(
            &RepeatTermsInput {
                medicine_code: None,
                drug_name: "Atorvastatin".into(),
                strength: "20mg".into(),
                form: "tablets".into(),
                quantity: 28,
                directions: "One at night".into(),
                cycle_days: cycle,
                issues,
                review_date: review.into(),
            },
            date("2026-01-01"),
        )
        .unwrap()
    }

    #[test]
    fn a_new_item_is_orderable_at_once() {
        let item = RepeatItem::new(PatientId::new(), terms(28, 6, "2027-06-01"));
        assert_eq!(item.orderability(date("2026-03-01"), false, &OrderingPolicy::default()), Orderability::Orderable);
    }

    #[test]
    fn approval_sets_the_next_due_date_and_uses_an_issue() {
        let mut item = RepeatItem::new(PatientId::new(), terms(28, 2, "2027-06-01"));
        item.record_issue(date("2026-03-01")).unwrap();
        assert_eq!(item.next_due, Some(date("2026-03-29")));
        assert_eq!(item.issues_remaining, 1);
        let policy = OrderingPolicy::default();
        assert_eq!(
            item.orderability(date("2026-03-21"), false, &policy),
            Orderability::TooEarly { opens_on: date("2026-03-22") }
        );
        assert!(item.orderability(date("2026-03-22"), false, &policy).is_orderable());
        item.record_issue(date("2026-03-29")).unwrap();
        assert_eq!(item.orderability(date("2026-05-01"), false, &policy), Orderability::NoIssuesLeft);
        assert!(item.record_issue(date("2026-05-01")).is_err());
    }

    #[test]
    fn refusals_carry_reasons() {
        let policy = OrderingPolicy::default();
        let item = RepeatItem::new(PatientId::new(), terms(28, 6, "2026-02-01"));
        let r = item.orderability(date("2026-02-02"), false, &policy);
        assert!(matches!(r, Orderability::ReviewDue { .. }));
        assert!(r.reason().contains("review"));
        assert_eq!(item.orderability(date("2026-01-15"), true, &policy), Orderability::OnOpenOrder);
        let mut stopped = item.clone();
        stopped.active = false;
        assert_eq!(stopped.orderability(date("2026-01-15"), false, &policy), Orderability::Stopped);
    }

    #[test]
    fn controlled_catalogue_items_cannot_be_ordered_online() {
        let catalogue = crate::catalogue::Catalogue::builtin();
        let cd = catalogue
            .all()
            .iter()
            .find(|m| m.schedule.blocks_online_ordering())
            .expect("catalogue has a Schedule 2/3 drug");
        let input = RepeatTermsInput {
            medicine_code: Some(cd.code.clone()),
            quantity: 28,
            directions: "As directed".into(),
            cycle_days: 28,
            issues: 3,
            review_date: "2026-12-01".into(),
            ..Default::default()
        };
        let item = RepeatItem::new(PatientId::new(), RepeatTerms::new(&input, date("2026-01-01")).unwrap());
        let r = item.orderability(date("2026-01-02"), false, &OrderingPolicy::default());
        assert!(matches!(r, Orderability::Controlled { .. }), "{r:?}");
        assert!(r.reason().contains("cannot be ordered online"));
    }

    #[test]
    fn terms_are_validated() {
        let today = date("2026-01-01");
        let ok = RepeatTermsInput {
            drug_name: "X".into(),
            strength: "1mg".into(),
            form: "tablets".into(),
            quantity: 28,
            directions: "d".into(),
            cycle_days: 28,
            issues: 6,
            review_date: "2026-06-01".into(),
            ..Default::default()
        };
        assert!(RepeatTerms::new(&ok, today).is_ok());
        for (field, bad) in [
            ("cycle", RepeatTermsInput { cycle_days: 3, ..ok.clone() }),
            ("issues", RepeatTermsInput { issues: 0, ..ok.clone() }),
            ("quantity", RepeatTermsInput { quantity: 0, ..ok.clone() }),
            ("review past", RepeatTermsInput { review_date: "2025-12-01".into(), ..ok.clone() }),
            ("review text", RepeatTermsInput { review_date: "soon".into(), ..ok.clone() }),
            ("unknown code", RepeatTermsInput { medicine_code: Some("nope".into()), ..ok.clone() }),
        ] {
            assert!(RepeatTerms::new(&bad, today).is_err(), "{field}");
        }
    }

    proptest! {
        /// Whatever the dates, an item is never orderable before its window opens, always
        /// orderable inside it (while issues and review allow), and each issue moves the due date
        /// forward by exactly one cycle.
        #[test]
        fn due_window_rules_hold(cycle in 7i64..=365, start in 0i64..3000, offset in -400i64..400, window in 0i64..14) {
            let policy = OrderingPolicy { due_window_days: window };
            let base = date("2020-01-01").saturating_add(start.days());
            let mut item = RepeatItem::new(PatientId::new(), terms(cycle, 5, "2027-06-01"));
            item.terms.review_date = date("2040-01-01");
            item.record_issue(base).unwrap();
            let due = item.next_due.unwrap();
            prop_assert_eq!(due, base.saturating_add(cycle.days()));
            let today = due.saturating_add(offset.days());
            let verdict = item.orderability(today, false, &policy);
            if offset < -window {
                prop_assert!(matches!(verdict, Orderability::TooEarly { .. }), "{:?}", verdict);
            } else {
                prop_assert_eq!(verdict, Orderability::Orderable);
            }
        }
    }
}
