//! Everything RepeatRx holds about a patient, for the patient to take away (C10): their details,
//! their pharmacy and practice, every repeat line (stopped ones too), every order with each item's
//! outcome and the full history of who did what, their account's sign-in activity, and who among
//! staff reached their record. One structure, serialised as JSON (a stable, versioned format) or
//! rendered as a readable page by the web layer. Staff may export for a patient at the counter:
//! that goes through the tenant gate and into the audit trail like any read.
use crate::error::{AppError, AppResult};
use crate::App;
use jiff::Timestamp;
use repeatrx_domain::access::{Action, Actor};
use repeatrx_domain::ids::PatientId;
use repeatrx_domain::order::Decision;
use serde::Serialize;

/// The format's name and version, so a reader knows what it holds.
pub const EXPORT_FORMAT: &str = "repeatrx-patient-export/1";

#[derive(Debug, Clone, Serialize)]
pub struct PatientExport {
    pub format: &'static str,
    /// RFC 3339, UTC.
    pub exported_at: String,
    pub patient: ExportedPatient,
    pub repeat_items: Vec<ExportedRepeatItem>,
    pub orders: Vec<ExportedOrder>,
    /// The online account, if the patient has one.
    pub account: Option<ExportedAccount>,
    /// Staff who reached the record, newest first (the last 100 times).
    pub access_log: Vec<ExportedAccess>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExportedPatient {
    pub id: String,
    pub given_name: String,
    pub family_name: String,
    /// YYYY-MM-DD.
    pub date_of_birth: String,
    pub nhs_number: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub pharmacy: String,
    pub practice: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExportedRepeatItem {
    pub id: String,
    pub description: String,
    pub quantity: u32,
    pub directions: String,
    pub cycle_days: i64,
    pub issues_authorised: u32,
    pub issues_remaining: u32,
    /// YYYY-MM-DD, if issued before.
    pub next_due: Option<String>,
    pub review_date: String,
    pub controlled_drug_schedule: Option<u8>,
    pub active: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExportedOrder {
    pub id: String,
    pub created_at: String,
    pub status: String,
    /// `collection` or `delivery`.
    pub fulfilment: String,
    pub note: Option<String>,
    pub placed_by_pharmacy: bool,
    pub items: Vec<ExportedOrderItem>,
    pub history: Vec<ExportedStep>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExportedOrderItem {
    pub id: String,
    pub description: String,
    pub status: String,
    /// The prescriber's decision, in words, once made.
    pub decision: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExportedStep {
    pub at: String,
    /// The item, when the step was about one item.
    pub item_id: Option<String>,
    pub from: String,
    pub to: String,
    pub by_role: String,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExportedAccount {
    pub email: String,
    pub created_at: String,
    pub authenticator_app: bool,
    /// Recent sign-in activity, newest first.
    pub events: Vec<ExportedEvent>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExportedEvent {
    pub at: String,
    pub what: String,
    pub address: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExportedAccess {
    pub at: String,
    pub who: String,
    pub role: String,
    pub organisation: String,
    pub what: String,
    pub reason: Option<String>,
}

fn rfc3339(t: Timestamp) -> String {
    t.to_string()
}

fn decision_words(d: &Decision) -> String {
    match d {
        Decision::Approve => "Approved".into(),
        Decision::Change { note } => format!("Approved with a change: {note}"),
        Decision::Reject { code, note, next_step } => {
            let mut s = format!("Not approved: {}. {next_step}", code.label());
            if let Some(n) = note {
                s.push_str(&format!(" ({n})"));
            }
            s
        }
    }
}

impl App {
    /// Everything held about the patient. The patient themselves, or their pharmacy's staff.
    pub async fn export_patient(&self, actor: &Actor, id: PatientId) -> AppResult<PatientExport> {
        let patient = self.patient_for(actor, Action::ViewPatient, id).await?;
        let pharmacy = self.store.pharmacy(patient.pharmacy_id).await?.map(|p| p.name).unwrap_or_default();
        let practice = self.store.practice(patient.practice_id).await?.map(|p| p.name).unwrap_or_default();
        let repeat_items = self
            .store
            .repeat_items(patient.id)
            .await?
            .into_iter()
            .map(|i| ExportedRepeatItem {
                id: i.id.to_string(),
                description: i.terms.description(),
                quantity: i.terms.quantity,
                directions: i.terms.directions.clone(),
                cycle_days: i.terms.cycle_days.get(),
                issues_authorised: i.terms.issues_authorised,
                issues_remaining: i.issues_remaining,
                next_due: i.next_due.map(|d| d.to_string()),
                review_date: i.terms.review_date.to_string(),
                controlled_drug_schedule: i.terms.schedule.is_controlled().then(|| i.terms.schedule.number()),
                active: i.active,
            })
            .collect();
        let mut orders = Vec::new();
        for o in self.store.orders_of_patient(patient.id).await? {
            let history = self
                .store
                .order_transitions(o.id)
                .await?
                .into_iter()
                .map(|t| ExportedStep {
                    at: rfc3339(t.at),
                    item_id: t.item_id.map(|i| i.to_string()),
                    from: t.from,
                    to: t.to,
                    by_role: t.actor_role.label().into(),
                    reason: t.reason,
                })
                .collect();
            orders.push(ExportedOrder {
                id: o.id.to_string(),
                created_at: rfc3339(o.created_at),
                status: o.stage.label().into(),
                fulfilment: o.fulfilment.as_str().into(),
                note: o.note.clone(),
                placed_by_pharmacy: o.on_behalf,
                items: o
                    .items
                    .iter()
                    .map(|i| ExportedOrderItem {
                        id: i.id.to_string(),
                        description: i.description.clone(),
                        status: i.state.label().into(),
                        decision: i.decision.as_ref().map(decision_words),
                    })
                    .collect(),
                history,
            });
        }
        let account = match self.store.user_for_patient(patient.id).await? {
            Some(user) => {
                let security = self.store.account_security(user.id).await?.ok_or(AppError::NotFound("account"))?;
                let events = self
                    .store
                    .security_events_of_user(user.id, 100)
                    .await?
                    .into_iter()
                    .map(|e| ExportedEvent { at: rfc3339(e.at), what: e.kind.label().into(), address: e.address })
                    .collect();
                Some(ExportedAccount {
                    email: user.email.to_string(),
                    created_at: rfc3339(user.created_at),
                    authenticator_app: security.totp_secret.is_some(),
                    events,
                })
            }
            None => None,
        };
        let access_log = self
            .access_lines(patient.id)
            .await?
            .into_iter()
            .map(|l| ExportedAccess {
                at: rfc3339(l.at),
                who: l.who,
                role: l.role.into(),
                organisation: l.organisation,
                what: l.what.into(),
                reason: l.purpose,
            })
            .collect();
        Ok(PatientExport {
            format: EXPORT_FORMAT,
            exported_at: rfc3339(self.clock.now()),
            patient: ExportedPatient {
                id: patient.id.to_string(),
                given_name: patient.given_name.to_string(),
                family_name: patient.family_name.to_string(),
                date_of_birth: patient.date_of_birth.date().to_string(),
                nhs_number: patient.nhs_number.formatted(),
                email: patient.email.as_ref().map(|e| e.to_string()),
                phone: patient.phone.clone(),
                address: patient.address.clone(),
                pharmacy,
                practice,
            },
            repeat_items,
            orders,
            account,
            access_log,
        })
    }
}
