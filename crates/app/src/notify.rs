//! The emails patients receive. Built from the transitions a change produced, and stored in the
//! outbox in the same transaction as the change; no patient data beyond what they need to act.
use jiff::Timestamp;
use repeatrx_domain::ids::OrderItemId;
use repeatrx_domain::order::{Decision, Order, OrderStage, Transition};
use repeatrx_domain::patient::Patient;
use repeatrx_domain::repeat::RepeatItem;
use repeatrx_domain::timefmt::display_date;
use repeatrx_store::OutgoingEmail;

fn item_desc(order: &Order, id: Option<OrderItemId>) -> String {
    id.and_then(|id| order.items.iter().find(|i| i.id == id)).map(|i| i.description.clone()).unwrap_or_default()
}

/// The emails the given transitions of `order` cause for its patient (none if the patient has no
/// email address).
pub fn order_emails(
    order: &Order,
    patient: &Patient,
    transitions: &[Transition],
    public_url: &str,
    now: Timestamp,
) -> Vec<OutgoingEmail> {
    let Some(to) = patient.email.clone() else { return Vec::new() };
    let link = format!("{public_url}/patient/orders/{}", order.id);
    let greeting = format!("Dear {},", patient.given_name);
    let sign_off = "RepeatRx, on behalf of your pharmacy";
    let mut out = Vec::new();
    for t in transitions {
        let (subject, body) = match (t.item_id, t.to.as_str()) {
            (None, "in_review") => (
                "Your repeat prescription order has been accepted".to_string(),
                format!("{greeting}\n\nYour pharmacy has accepted your order and is working on it.\n\nFollow it here: {link}\n\n{sign_off}"),
            ),
            (Some(id), "rejected") => {
                let item = order.items.iter().find(|i| i.id == id);
                let (reason, next) = match item.and_then(|i| i.decision.as_ref()) {
                    Some(Decision::Reject { code, note, next_step }) => (
                        match note {
                            Some(n) => format!("{} – {n}", code.label()),
                            None => code.label().to_string(),
                        },
                        next_step.clone(),
                    ),
                    _ => ("Not approved".to_string(), "Please contact your practice.".to_string()),
                };
                (
                    "An item on your order was not approved".to_string(),
                    format!(
                        "{greeting}\n\nYour prescriber did not approve: {}\nReason: {reason}\nWhat to do next: {next}\n\nDetails: {link}\n\n{sign_off}",
                        item_desc(order, Some(id))
                    ),
                )
            }
            (None, "ready") => {
                let what = if order.items.iter().any(|i| {
                    matches!(
                        i.state,
                        repeatrx_domain::order::ItemState::ReadyToDispatch | repeatrx_domain::order::ItemState::ReadyToDispatchOwing
                    )
                }) {
                    "is ready and will be delivered soon"
                } else {
                    "is ready to collect from your pharmacy"
                };
                (
                    "Your medicine is ready".to_string(),
                    format!("{greeting}\n\nYour order {what}.\n\nDetails: {link}\n\n{sign_off}"),
                )
            }
            (Some(id), "ready_to_collect" | "ready_to_collect_owing") if order.stage != OrderStage::Ready => (
                "Part of your order is ready to collect".to_string(),
                format!("{greeting}\n\n{} is ready to collect.\n\nDetails: {link}\n\n{sign_off}", item_desc(order, Some(id))),
            ),
            (Some(id), "dispatched") => (
                "Your medicine is out for delivery".to_string(),
                format!("{greeting}\n\n{} is out for delivery.\n\nDetails: {link}\n\n{sign_off}", item_desc(order, Some(id))),
            ),
            _ => continue,
        };
        out.push(OutgoingEmail::new(to.clone(), subject, body, now));
    }
    out
}

/// The reminder sent when an item comes into its ordering window.
pub fn reminder_email(patient: &Patient, item: &RepeatItem, public_url: &str, now: Timestamp) -> Option<OutgoingEmail> {
    let to = patient.email.clone()?;
    let due = item.next_due.map(display_date).unwrap_or_default();
    Some(OutgoingEmail::new(
        to,
        "Time to order your repeat medicine",
        format!(
            "Dear {},\n\n{} is due on {due}. You can order it now: {public_url}/patient\n\nRepeatRx, on behalf of your pharmacy",
            patient.given_name,
            item.terms.description()
        ),
        now,
    ))
}
