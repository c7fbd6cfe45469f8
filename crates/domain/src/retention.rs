//! How long order history is kept (P10): an order is kept while it is open, while it is the
//! newest order of any of its repeat lines (the current cycle's), and until a whole cycle of each
//! of its lines has passed since it was placed. After that it is purged. The repeat lines
//! themselves, the patient's record and the (pseudonymous) audit trail are not order history.
use crate::ids::{OrderId, RepeatItemId};
use crate::order::Order;
use jiff::{SignedDuration, Timestamp};
use std::collections::HashMap;

/// The cycle assumed for an item whose repeat line no longer exists.
pub const DEFAULT_CYCLE_DAYS: i64 = 28;

/// How long an email that was sent (or given up on) stays in the outbox: long enough to answer
/// "did you email me?", short enough that names and medicines in old emails do not pile up.
pub const SENT_EMAIL_DAYS: i64 = 30;

/// Emails sent or given up on before this time may be deleted.
pub fn sent_emails_kept_from(now: Timestamp) -> Timestamp {
    now - SignedDuration::from_hours(24 * SENT_EMAIL_DAYS)
}

/// What the retention rule decides for one patient's orders at a moment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verdict {
    /// The orders that may be purged now.
    pub purge: Vec<OrderId>,
    /// The first moment after now at which one of the orders kept becomes purgeable by time
    /// alone: a finished order already superseded on every line, whose cycles have yet to pass.
    /// `None` when only a new order, a finished one or a changed repeat line can make any go.
    pub next: Option<Timestamp>,
}

/// Applies the retention rule to all of one patient's orders at `now`, given each repeat
/// line's cycle in days.
pub fn verdict(orders: &[Order], cycle_days: &HashMap<RepeatItemId, i64>, now: Timestamp) -> Verdict {
    let mut newest: HashMap<RepeatItemId, (Timestamp, OrderId)> = HashMap::new();
    for o in orders {
        for item in &o.items {
            let entry = newest.entry(item.repeat_item_id).or_insert((o.created_at, o.id));
            if (o.created_at, o.id) > *entry {
                *entry = (o.created_at, o.id);
            }
        }
    }
    let mut verdict = Verdict::default();
    for o in orders.iter().filter(|o| !o.stage.is_open()) {
        let superseded = o.items.iter().all(|item| newest.get(&item.repeat_item_id).is_none_or(|(_, id)| *id != o.id));
        if !superseded {
            continue;
        }
        // Purgeable once a whole cycle of each of its lines has passed.
        let purgeable_from = o
            .items
            .iter()
            .map(|item| {
                let days = cycle_days.get(&item.repeat_item_id).copied().unwrap_or(DEFAULT_CYCLE_DAYS);
                o.created_at + SignedDuration::from_hours(24 * days)
            })
            .max()
            .unwrap_or(o.created_at);
        if now >= purgeable_from {
            verdict.purge.push(o.id);
        } else if verdict.next.is_none_or(|next| purgeable_from < next) {
            verdict.next = Some(purgeable_from);
        }
    }
    verdict
}

/// Whether a save of an existing order can change the [`verdict`] on its patient's orders, so
/// that the patient must be looked at again: only an order that is finished, or a repeat line
/// whose cycle the same save changed, can make an order purgeable. A save that leaves the order
/// open (accepted, authorised, an item decided) changes nothing the rule reads. A new order can
/// always supersede older ones, so every insert counts.
pub fn save_can_make_orders_purgeable(saved: &Order, repeat_lines_changed: bool) -> bool {
    !saved.stage.is_open() || repeat_lines_changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Role;
    use crate::ids::{PatientId, PharmacyId, PracticeId, UserId};
    use crate::order::{By, NewOrder};
    use crate::patient::Fulfilment;

    fn at(day: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + day * 86_400).unwrap()
    }

    fn order(day: i64, lines: &[RepeatItemId], finished: bool) -> Order {
        let by = By { user: UserId::new(), role: Role::Pharmacist, at: at(day) };
        let new = NewOrder {
            patient_id: PatientId::new(),
            pharmacy_id: PharmacyId::new(),
            practice_id: PracticeId::new(),
            fulfilment: Fulfilment::Collection,
            note: None,
            on_behalf: false,
            items: lines.iter().map(|l| (*l, "Atorvastatin 20mg tablets".to_string())).collect(),
        };
        let (mut o, _) = Order::submit(new, by).unwrap();
        if finished {
            o.cancel(by, Some("patient asked".into())).unwrap();
        }
        o
    }

    #[test]
    fn only_closed_orders_past_a_whole_cycle_and_not_the_newest_of_a_line_go() {
        let (statin, inhaler) = (RepeatItemId::new(), RepeatItemId::new());
        let cycles = HashMap::from([(statin, 28), (inhaler, 56)]);
        let old = order(0, &[statin], true);
        let newer = order(30, &[statin], true);
        let open_old = order(1, &[inhaler], false);
        let both = order(2, &[statin, inhaler], true);
        let orders = vec![old.clone(), newer.clone(), open_old.clone(), both.clone()];

        // Day 40: `old` is a cycle old and superseded by `newer`; `both` is the inhaler's newest
        // order (day 2, after the open one of day 1), so it stays although the statin moved on.
        let gone = verdict(&orders, &cycles, at(40)).purge;
        assert!(gone.contains(&old.id), "a closed order a cycle old, superseded");
        assert!(!gone.contains(&newer.id), "the newest order of its line stays");
        assert!(!gone.contains(&open_old.id), "open orders stay");
        assert!(!gone.contains(&both.id), "the newest order of the inhaler stays");

        // Before a whole cycle has passed nothing goes, superseded or not.
        assert!(verdict(&orders, &cycles, at(20)).purge.is_empty());

        // An unknown line uses the default cycle.
        let gone_line = RepeatItemId::new();
        let a = order(0, &[gone_line], true);
        let b = order(1, &[gone_line], true);
        let found = verdict(&[a.clone(), b.clone()], &HashMap::new(), at(DEFAULT_CYCLE_DAYS));
        assert_eq!(found.purge, vec![a.id]);
    }

    #[test]
    fn the_next_look_is_when_the_first_superseded_order_outlives_its_cycles() {
        let (statin, inhaler) = (RepeatItemId::new(), RepeatItemId::new());
        let cycles = HashMap::from([(statin, 28), (inhaler, 56)]);
        let both = order(0, &[statin, inhaler], true);
        let statin_again = order(10, &[statin], true);
        let inhaler_again = order(12, &[inhaler], false);
        let orders = vec![both.clone(), statin_again.clone(), inhaler_again.clone()];

        // `both` is superseded on each line; it goes when the longer of its cycles has passed
        // (56 days), not the shorter. Nothing else can go by time alone: `statin_again` is its
        // line's newest, `inhaler_again` is open.
        let v = verdict(&orders, &cycles, at(20));
        assert!(v.purge.is_empty());
        assert_eq!(v.next, Some(at(56)));
        let v = verdict(&orders, &cycles, at(56));
        assert_eq!(v.purge, vec![both.id]);
        assert_eq!(v.next, None, "what is left waits for a new order, not for time");

        // Of several waiting, the earliest is named.
        let early = order(1, &[statin], true);
        let v = verdict(&[early.clone(), statin_again.clone()], &cycles, at(5));
        assert_eq!(v.next, Some(at(29)));
        assert_eq!(verdict(&[early.clone(), statin_again], &cycles, at(29)).purge, vec![early.id]);
    }

    #[test]
    fn only_a_save_that_finishes_an_order_or_changes_a_line_can_change_the_verdict() {
        let statin = RepeatItemId::new();
        let by = By { user: UserId::new(), role: Role::Pharmacist, at: at(2) };
        let mut first = order(0, &[statin], false);
        let second = order(1, &[statin], true);
        let judged = |first: &Order, cycle: i64| {
            verdict(&[first.clone(), second.clone()], &HashMap::from([(statin, cycle)]), at(40))
        };
        let before = judged(&first, 28);
        assert!(before.purge.is_empty(), "the first is open, the second its line's newest");

        let mut accepted = first.clone();
        accepted.accept(by).unwrap();
        assert!(!save_can_make_orders_purgeable(&accepted, false), "accepted, still open");
        assert_eq!(judged(&accepted, 28), before);

        first.cancel(by, None).unwrap();
        assert!(save_can_make_orders_purgeable(&first, false), "finished");
        assert_eq!(judged(&first, 28).purge, vec![first.id], "finished, superseded, a cycle old");

        // The line's cycle lengthened by the same save keeps it a while longer: the verdict moved.
        assert!(save_can_make_orders_purgeable(&order(3, &[statin], false), true));
        assert_eq!(judged(&first, 56).next, Some(at(56)));
    }
}
