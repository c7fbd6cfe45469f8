//! Orders through their life: submission by the patient (or staff on their behalf), cancellation,
//! acceptance, authorisation, dispensing. Each change is computed by the domain state machine and
//! stored with its transition records and emails in one atomic, version-checked write.
use crate::access::{own_patient, patient_scope};
use crate::error::{AppError, AppResult};
use crate::notify::order_emails;
use crate::App;
use repeatrx_domain::access::{Action, Actor, Role};
use repeatrx_domain::ids::{OrderId, OrderItemId, PatientId, RepeatItemId};
use repeatrx_domain::order::{By, Decision, ItemEvent, NewOrder, Order, Transition};
use repeatrx_domain::patient::{Fulfilment, Patient};
use repeatrx_domain::repeat::{order_note, Orderability, RepeatItem};
use repeatrx_store::{StoreError, StoredOrder, WhichLines};
use serde::Deserialize;

/// What a patient (or staff on their behalf) submits.
#[derive(Debug, Clone, Deserialize)]
pub struct SubmitOrderInput {
    pub items: Vec<RepeatItemId>,
    pub fulfilment: Fulfilment,
    #[serde(default)]
    pub note: String,
}

/// An order with its history, for the order pages.
#[derive(Debug, Clone)]
pub struct OrderView {
    pub order: Order,
    pub version: i64,
    pub patient: Patient,
    /// The patient's practice (whether it authorises on RepeatRx decides who records decisions).
    pub practice: Option<repeatrx_store::Practice>,
    pub transitions: Vec<Transition>,
}

impl App {
    fn by(&self, actor: &Actor) -> By {
        By { user: actor.user_id, role: actor.role, at: self.clock.now() }
    }

    /// Places an order. Every chosen item must be orderable today; otherwise nothing is ordered
    /// and each refused item is listed with its reason. A pharmacy that is leaving takes none (the
    /// store refuses it inside the write).
    pub async fn submit_order(&self, actor: &Actor, patient: PatientId, input: &SubmitOrderInput) -> AppResult<Order> {
        let chosen = WhichLines::Only(&input.items);
        let (patient, held) = self.patient_lines_for(actor, Action::PlaceOrder, patient, chosen).await?;
        let lines = self.repeat_lines(held);
        let mut refused = Vec::new();
        let mut chosen = Vec::new();
        for id in &input.items {
            match lines.iter().find(|l| l.item.id == *id) {
                None => return Err(AppError::NotFound("repeat item")),
                Some(l) if !l.orderability.is_orderable() => {
                    refused.push(format!("{}: {}", l.item.terms.description(), l.orderability.reason()))
                }
                Some(l) => {
                    chosen.push((l.item.id, format!("{} × {}", l.item.terms.description(), l.item.terms.quantity)))
                }
            }
        }
        if !refused.is_empty() {
            return Err(AppError::NotOrderable(refused));
        }
        let new = NewOrder {
            patient_id: patient.id,
            pharmacy_id: patient.pharmacy_id,
            practice_id: patient.practice_id,
            fulfilment: input.fulfilment,
            note: order_note(&input.note)?,
            on_behalf: own_patient(actor).is_none(),
            items: chosen,
        };
        let (order, transition) = Order::submit(new, self.by(actor))?;
        self.store.insert_order(&order, &[transition], &[]).await.map_err(|e| match e {
            // Another request ordered some of these lines since they were read above.
            StoreError::LinesOnOpenOrder(taken) => {
                let reason = Orderability::OnOpenOrder.reason();
                AppError::NotOrderable(
                    taken
                        .iter()
                        .map(|id| match lines.iter().find(|l| l.item.id == *id) {
                            Some(l) => format!("{}: {reason}", l.item.terms.description()),
                            None => reason.clone(),
                        })
                        .collect(),
                )
            }
            other => other.into(),
        })?;
        tracing::debug!(order = %order.id, items = order.items.len(), on_behalf = order.on_behalf, "order submitted");
        Ok(order)
    }

    /// A patient's orders, newest first.
    pub async fn orders_of(&self, actor: &Actor, patient: PatientId) -> AppResult<Vec<Order>> {
        let patient = self.patient_for(actor, Action::ViewPatient, patient).await?;
        Ok(self.store.orders_of_patient(patient.id).await?)
    }

    pub async fn order_view(&self, actor: &Actor, order: OrderId) -> AppResult<OrderView> {
        let (stored, patient) = self.order_for(actor, Action::ViewPatient, order).await?;
        let transitions = self.store.order_transitions(order).await?;
        let practice = self.store.practice(stored.order.practice_id).await?;
        Ok(OrderView { order: stored.order, version: stored.version, patient, practice, transitions })
    }

    /// Applies a state-machine change and stores it with its transitions and emails.
    async fn change_order<F>(&self, actor: &Actor, action: Action, id: OrderId, change: F) -> AppResult<Order>
    where
        F: FnOnce(&mut Order, By) -> Result<(Vec<Transition>, Vec<RepeatItem>), AppError>,
    {
        let (stored, patient) = self.order_for(actor, action, id).await?;
        self.apply_and_save(actor, stored, &patient, change).await
    }

    /// Applies a change to an order already loaded (and authorised) and saves it if nobody changed
    /// it in the meantime.
    async fn apply_and_save<F>(
        &self,
        actor: &Actor,
        stored: StoredOrder,
        patient: &Patient,
        change: F,
    ) -> AppResult<Order>
    where
        F: FnOnce(&mut Order, By) -> Result<(Vec<Transition>, Vec<RepeatItem>), AppError>,
    {
        let StoredOrder { mut order, version } = stored;
        let (transitions, repeat_updates) = change(&mut order, self.by(actor))?;
        let emails = order_emails(&order, patient, &transitions, &self.settings.public_url, self.clock.now());
        self.store.save_order(&order, version, &transitions, &repeat_updates, &emails).await.map_err(|e| match e {
            repeatrx_store::StoreError::Conflict(_) => AppError::Conflict(
                "this order was changed by someone else a moment ago; reload it and try again".into(),
            ),
            other => other.into(),
        })?;
        tracing::debug!(order = %order.id, stage = order.stage.as_str(), changes = transitions.len(), "order changed");
        Ok(order)
    }

    pub async fn cancel_order(&self, actor: &Actor, id: OrderId) -> AppResult<Order> {
        let reason = if actor.role == Role::Patient {
            None
        } else {
            Some("cancelled by the pharmacy at the patient's request".into())
        };
        self.change_order(actor, Action::CancelOrder, id, |o, by| Ok((o.cancel(by, reason)?, vec![]))).await
    }

    pub async fn accept_order(&self, actor: &Actor, id: OrderId) -> AppResult<Order> {
        self.change_order(actor, Action::ProcessOrder, id, |o, by| Ok((o.accept(by)?, vec![]))).await
    }

    pub async fn send_to_prescriber(&self, actor: &Actor, id: OrderId) -> AppResult<Order> {
        self.change_order(actor, Action::ProcessOrder, id, |o, by| Ok((o.send_to_prescriber(by)?, vec![]))).await
    }

    /// A prescriber's decision on an item, made by the prescriber (practice on RepeatRx) or
    /// recorded by the pharmacy (practice not on RepeatRx). A prescriber signs an approval or a
    /// change with a fresh one-time code from their authenticator app; a rejection needs none.
    pub async fn decide_item(
        &self,
        actor: &Actor,
        id: OrderId,
        item: OrderItemId,
        decision: Decision,
        code: Option<&str>,
        client: &crate::auth::Client,
    ) -> AppResult<Order> {
        if actor.role == Role::Prescriber && !matches!(decision, Decision::Reject { .. }) {
            let code = code.map(str::trim).filter(|c| !c.is_empty()).ok_or_else(|| {
                AppError::InvalidFields(vec!["code: enter the current code from your authenticator app to sign".into()])
            })?;
            // Checked before anything else so a wrong code changes nothing.
            self.order_for(actor, Action::AuthoriseMedication, id).await?;
            self.verify_fresh_code(actor, code, client).await?;
        }
        self.record_decision(actor, id, item, decision).await
    }

    /// Applies a decision (approval uses one issue of the repeat line and sets its next due
    /// date). Callers outside this crate go through [`App::decide_item`], which asks for the code.
    pub(crate) async fn record_decision(
        &self,
        actor: &Actor,
        id: OrderId,
        item: OrderItemId,
        decision: Decision,
    ) -> AppResult<Order> {
        let action =
            if actor.role == Role::Prescriber { Action::AuthoriseMedication } else { Action::RecordPrescriberDecision };
        let (stored, patient) = self.order_for(actor, action, id).await?;
        if action == Action::RecordPrescriberDecision {
            let practice =
                self.store.practice(stored.order.practice_id).await?.ok_or(AppError::NotFound("practice"))?;
            if practice.on_repeatrx {
                return Err(AppError::IllegalTransition(
                    "this patient's practice authorises on RepeatRx; the prescriber records the decision".into(),
                ));
            }
        }
        let repeat_line = match stored.order.items.iter().find(|i| i.id == item) {
            Some(i) => self.store.repeat_item(i.repeat_item_id).await?,
            None => None,
        };
        let today = self.clock.today();
        self.apply_and_save(actor, stored, &patient, move |o, by| {
            let approves = !matches!(decision, Decision::Reject { .. });
            let transitions = o.decide(item, decision, by)?;
            let mut updates = Vec::new();
            if approves {
                if let Some(mut line) = repeat_line {
                    line.record_issue(today)?;
                    updates.push(line);
                }
            }
            Ok((transitions, updates))
        })
        .await
    }

    pub async fn dispense_step(
        &self,
        actor: &Actor,
        id: OrderId,
        item: OrderItemId,
        event: ItemEvent,
    ) -> AppResult<Order> {
        self.change_order(actor, Action::ProcessOrder, id, |o, by| Ok((o.dispense_step(item, event, by)?, vec![])))
            .await
    }

    /// The patient of an order, for staff pages that link to the record.
    pub fn order_scope(patient: &Patient) -> repeatrx_domain::access::Scope {
        patient_scope(patient)
    }
}
