//! Background work: delivering the email outbox, sending due-window reminders, purging order
//! history past its retention and logging the audit trail's checkpoint. Each run first
//! claims its job in the database with a lease, so several servers on one database never do the
//! same work twice; timers only decide how often to try.
use crate::error::AppResult;
use crate::mail::Mailer;
use crate::notify::reminder_email;
use crate::App;
use jiff::{SignedDuration, ToSpan};
use repeatrx_store::RetentionSettled;
use std::time::Duration;

pub const MAIL_JOB: &str = "mail-delivery";
pub const RETENTION_JOB: &str = "order-retention";
/// How often finished order history past its retention is purged.
pub const RETENTION_EVERY: SignedDuration = SignedDuration::from_hours(6);
/// Patients looked at per batch of the retention job (one transaction settles a batch).
const RETENTION_BATCH: u32 = 200;
pub const REMINDER_JOB: &str = "due-reminders";
/// How often the due-window reminder scan runs (reminders are per day, so this is plenty).
pub const REMINDER_EVERY: SignedDuration = SignedDuration::from_mins(5);

/// What one pass of the retention job did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionPass {
    /// Patients looked at: those due.
    pub patients: u64,
    /// Orders purged.
    pub purged: u64,
}

impl App {
    /// Sends one reminder per repeat line per cycle, when it comes into its ordering window.
    /// Returns how many reminders were recorded (emails are queued in the outbox).
    pub async fn send_due_reminders(&self) -> AppResult<u32> {
        let today = self.clock.today();
        let horizon = today.saturating_add(self.settings.ordering.due_window_days.days());
        let now = self.clock.now();
        let mut sent = 0;
        for item in self.store.repeat_items_needing_reminder(horizon, 500).await? {
            let Some(due) = item.next_due else { continue };
            if !item.reminder_due(today, &self.settings.ordering) {
                continue;
            }
            let Some(patient) = self.store.patient(item.patient_id).await? else { continue };
            let email = reminder_email(&patient, &item, &self.settings.public_url, now);
            self.store.record_reminder(item.id, due, email.as_ref()).await?;
            sent += 1;
        }
        if sent > 0 {
            tracing::info!(reminders = sent, "due-window reminders queued");
        }
        Ok(sent)
    }

    /// Purges finished orders past their retention (P10; the rule is
    /// `repeatrx_domain::retention::verdict`). Looks only at the patients due: those a write has
    /// marked since they were last looked at, and those with an order whose cycles have now
    /// passed, so a pass costs what has changed, not what is kept. Logs counts only, never
    /// patient data.
    pub async fn purge_order_history(&self) -> AppResult<RetentionPass> {
        let now = self.clock.now();
        let started = std::time::Instant::now();
        let mut pass = RetentionPass::default();
        let mut after = None;
        loop {
            let due = self.store.patients_due_for_retention(now, after.as_ref(), RETENTION_BATCH).await?;
            let Some(last) = due.last().copied() else { break };
            let mut settled = Vec::with_capacity(due.len());
            for due in due {
                let orders = self.store.orders_of_patient(due.patient).await?;
                let cycles = self
                    .store
                    .repeat_items(due.patient)
                    .await?
                    .into_iter()
                    .map(|i| (i.id, i.terms.cycle_days.get()))
                    .collect();
                let verdict = repeatrx_domain::retention::verdict(&orders, &cycles, now);
                settled.push(RetentionSettled { due, purge: verdict.purge, next: verdict.next });
            }
            pass.patients += settled.len() as u64;
            pass.purged += self.store.settle_retention(&settled).await?;
            after = Some(last);
        }
        if pass.patients > 0 {
            let elapsed_ms = started.elapsed().as_millis();
            tracing::info!(orders = pass.purged, patients = pass.patients, elapsed_ms, "order history retention pass");
        }
        Ok(pass)
    }

    /// Deletes emails sent (or given up on) more than `SENT_EMAIL_DAYS` ago; pending ones stay.
    /// Logs the count only.
    pub async fn purge_sent_emails(&self) -> AppResult<u64> {
        let before = repeatrx_domain::retention::sent_emails_kept_from(self.clock.now());
        let gone = self.store.purge_finished_emails(before).await?;
        if gone > 0 {
            tracing::info!(emails = gone, "sent emails past their retention deleted");
        }
        Ok(gone)
    }

    /// One pass of every background job this server can claim.
    pub async fn run_jobs_once(&self, mailer: &Mailer, owner: &str) -> AppResult<()> {
        let now = self.clock.now();
        // A fresh owner for each attempt: the claim succeeds only once the last lease has lapsed,
        // even for the server that holds it, so the reminder scan runs at most once per
        // REMINDER_EVERY across all servers instead of on every tick.
        let attempt = format!("{owner}/{}", now.as_millisecond());
        if self.store.claim_job(REMINDER_JOB, &attempt, now, now + REMINDER_EVERY).await? {
            self.send_due_reminders().await?;
        }
        if self.store.claim_job(RETENTION_JOB, &attempt, now, now + RETENTION_EVERY).await? {
            self.purge_order_history().await?;
            self.purge_sent_emails().await?;
        }
        let every = crate::departure::DEPARTURE_EVERY;
        if self.store.claim_job(crate::departure::DEPARTURE_JOB, &attempt, now, now + every).await? {
            self.finish_departures().await?;
        }
        let every = crate::audit::CHECKPOINT_EVERY;
        if self.store.claim_job(crate::audit::CHECKPOINT_JOB, &attempt, now, now + every).await? {
            // The log is shipped and kept apart from the database: its checkpoints let
            // `repeatrx audit verify --checkpoint` show entries cut off the end of the trail.
            if let Some(checkpoint) = self.audit_checkpoint().await? {
                tracing::info!(%checkpoint, "audit trail checkpoint");
            }
        }
        if self.store.claim_job(MAIL_JOB, owner, now, now + SignedDuration::from_secs(30)).await? {
            if let Err(e) = mailer.deliver_due(self.store.as_ref(), self.clock.as_ref()).await {
                tracing::warn!(error = %e, "mail delivery pass failed");
            }
        }
        Ok(())
    }

    /// Runs the background jobs every `every` until the process ends.
    pub fn spawn_jobs(&self, mailer: Mailer, every: Duration) -> tokio::task::JoinHandle<()> {
        let app = self.clone();
        let owner = format!("server-{}", uuid::Uuid::new_v4());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = app.run_jobs_once(&mailer, &owner).await {
                    tracing::warn!(error = %e, "background jobs failed; will retry");
                }
            }
        })
    }
}
