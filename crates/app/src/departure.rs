//! A pharmacy leaving RepeatRx (P12; rules in `domain::departure`). An operator marks it as
//! leaving: its staff are locked out at once, each patient with an email address is told when
//! their data will be deleted and how to take a copy, and no new orders are taken. The
//! `pharmacy-departures` job erases every patient of the pharmacy (data keys destroyed, each
//! erasure in the ledger like any other) once the grace is over, then deletes the staff accounts.
use crate::error::{AppError, AppResult};
use crate::App;
use repeatrx_domain::access::{Action, Actor, Scope};
use repeatrx_domain::departure;
use repeatrx_domain::erasure::{ErasureBy, LedgerEntry};
use repeatrx_domain::ids::PharmacyId;
use repeatrx_domain::timefmt::display_timestamp;
use repeatrx_store::{OutgoingEmail, PatientQuery, Pharmacy, PharmacyDeparture};

/// The claimed job that finishes departures whose grace is over.
pub const DEPARTURE_JOB: &str = "pharmacy-departures";
pub const DEPARTURE_EVERY: jiff::SignedDuration = jiff::SignedDuration::from_mins(10);

impl App {
    /// Marks the pharmacy as leaving, its patients' data to be deleted after `grace_days` (at
    /// most seven).
    pub async fn mark_pharmacy_leaving(
        &self,
        actor: &Actor,
        pharmacy: PharmacyId,
        grace_days: u8,
        confirmed: bool,
    ) -> AppResult<PharmacyDeparture> {
        crate::access::check(actor, Action::ManageOrganisations, Scope::Platform, "organisation")?;
        let org = self.store.pharmacy(pharmacy).await?.ok_or(AppError::NotFound("pharmacy"))?;
        let now = self.clock.now();
        let mut problems = Vec::new();
        let delete_after = departure::delete_after(now, grace_days).map_err(|e| problems.push(e.to_string())).ok();
        if !confirmed {
            problems.push(format!("confirm: tick the box to confirm that {} is leaving", org.name));
        }
        let Some(delete_after) = delete_after.filter(|_| problems.is_empty()) else {
            return Err(AppError::InvalidFields(problems));
        };
        let record = PharmacyDeparture {
            pharmacy_id: pharmacy,
            marked_at: now,
            marked_by: actor.user_id,
            delete_after,
            deleted_at: None,
        };
        let patients = self.store.search_patients(pharmacy, &PatientQuery::default(), u32::MAX).await?;
        let when = display_timestamp(delete_after);
        let export = format!("{}/patient/export", self.settings.public_url);
        let mut emails = Vec::new();
        for p in &patients {
            let (to, online) = match (self.store.user_for_patient(p.id).await?, &p.email) {
                (Some(account), _) => (
                    account.email,
                    format!("Until then you can sign in and download everything held about you from \"My data\": {export}\n\n"),
                ),
                (None, Some(e)) => (e.clone(), String::new()),
                (None, None) => continue,
            };
            emails.push(OutgoingEmail::new(
                to,
                format!("{} is leaving RepeatRx", org.name),
                format!(
                    "Dear {},\n\n{} is leaving RepeatRx, so you can no longer order your repeat medicines from it here. \
                     Everything RepeatRx holds about you (your details, repeat medicines and orders) will be deleted for \
                     good on {when}.\n\n{online}Please ask the pharmacy how to order your repeats from now on.\n\nRepeatRx",
                    p.given_name, org.name
                ),
                now,
            ));
        }
        if !self.store.mark_pharmacy_leaving(&record, &emails).await? {
            return Err(AppError::Conflict(format!("{} is already leaving RepeatRx", org.name)));
        }
        let detail =
            format!("pharmacy {pharmacy} leaving; data deleted after {delete_after}; {} patients told", emails.len());
        self.audit_act(actor, "pharmacy.leaving", None, detail).await?;
        tracing::info!(%pharmacy, %delete_after, patients = patients.len(), "pharmacy marked as leaving");
        Ok(record)
    }

    /// Every pharmacy that is leaving or has left, with its departure (operators).
    pub async fn departures(&self, actor: &Actor) -> AppResult<Vec<(Pharmacy, PharmacyDeparture)>> {
        crate::access::check(actor, Action::ManageOrganisations, Scope::Platform, "organisation")?;
        let mut out = Vec::new();
        for d in self.store.pharmacy_departures().await? {
            if let Some(p) = self.store.pharmacy(d.pharmacy_id).await? {
                out.push((p, d));
            }
        }
        Ok(out)
    }

    /// Finishes every departure whose grace is over: erases each of the pharmacy's patients
    /// (ledger first, as any erasure), then deletes its staff accounts. Returns how many patients
    /// were erased. Logs counts only.
    pub async fn finish_departures(&self) -> AppResult<u64> {
        let now = self.clock.now();
        let mut erased = 0;
        for d in self.store.pharmacy_departures().await? {
            if d.deleted_at.is_some() || d.delete_after > now {
                continue;
            }
            let patients = self.store.search_patients(d.pharmacy_id, &PatientQuery::default(), u32::MAX).await?;
            for p in &patients {
                if let Some(ledger) = &self.settings.erasure_ledger {
                    ledger.append(&LedgerEntry { patient: p.id, at: now })?;
                }
                // Queued emails are kept: the notice of the departure may not have gone yet.
                self.store.erase_patient(p.id, ErasureBy::PharmacyLeft, now, &[]).await?;
                erased += 1;
            }
            let accounts = self.store.finish_pharmacy_departure(d.pharmacy_id, now).await?;
            let detail = format!(
                "pharmacy {} left: {} patients erased, {accounts} staff accounts deleted",
                d.pharmacy_id,
                patients.len()
            );
            self.audit_act(&App::console_actor(), "pharmacy.left", None, detail).await?;
            tracing::info!(pharmacy = %d.pharmacy_id, patients = patients.len(), accounts, "pharmacy departure finished");
        }
        Ok(erased)
    }
}
