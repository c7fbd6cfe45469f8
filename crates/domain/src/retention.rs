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

/// The orders of one patient that may be purged at `now`, given each repeat line's cycle in days.
pub fn purgeable(orders: &[Order], cycle_days: &HashMap<RepeatItemId, i64>, now: Timestamp) -> Vec<OrderId> {
    let mut newest: HashMap<RepeatItemId, (Timestamp, OrderId)> = HashMap::new();
    for o in orders {
        for item in &o.items {
            let entry = newest.entry(item.repeat_item_id).or_insert((o.created_at, o.id));
            if (o.created_at, o.id) > *entry {
                *entry = (o.created_at, o.id);
            }
        }
    }
    orders
        .iter()
        .filter(|o| !o.stage.is_open())
        .filter(|o| {
            o.items.iter().all(|item| {
                let line = item.repeat_item_id;
                let newest_of_line = newest.get(&line).is_some_and(|(_, id)| *id == o.id);
                let days = cycle_days.get(&line).copied().unwrap_or(DEFAULT_CYCLE_DAYS);
                let cycle_over = now >= o.created_at + SignedDuration::from_hours(24 * days);
                !newest_of_line && cycle_over
            })
        })
        .map(|o| o.id)
        .collect()
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
        let gone = purgeable(&orders, &cycles, at(40));
        assert!(gone.contains(&old.id), "a closed order a cycle old, superseded");
        assert!(!gone.contains(&newer.id), "the newest order of its line stays");
        assert!(!gone.contains(&open_old.id), "open orders stay");
        assert!(!gone.contains(&both.id), "the newest order of the inhaler stays");

        // Before a whole cycle has passed nothing goes, superseded or not.
        assert!(purgeable(&orders, &cycles, at(20)).is_empty());

        // An unknown line uses the default cycle.
        let gone_line = RepeatItemId::new();
        let a = order(0, &[gone_line], true);
        let b = order(1, &[gone_line], true);
        let found = purgeable(&[a.clone(), b.clone()], &HashMap::new(), at(DEFAULT_CYCLE_DAYS));
        assert_eq!(found, vec![a.id]);
    }
}
