//! The audit trail (P9) on a real SQLite file: staff access to a patient's record is recorded
//! with who, role, organisation, what, which patient and from where; a patient's own reads are
//! not; operators' acts are; and the whole trail verifies.
mod common;

use common::{actor, harness};
use repeatrx_app::AppError;
use repeatrx_domain::access::{Action, Actor};

fn from(mut a: Actor, ip: &str) -> Actor {
    a.address = Some(ip.parse().unwrap());
    a
}

#[tokio::test]
async fn staff_reads_and_changes_of_a_record_are_recorded_and_the_trail_verifies() {
    let h = harness().await;
    let before = h.app.store.audit_entries(0, 100_000).await.unwrap().len();
    let pharmacist = from(actor(&h.app, "pharmacist@demo.example").await, "198.51.100.7");
    let patient = actor(&h.app, "patient@demo.example").await;
    let patient_id = repeatrx_app::access::own_patient(&patient).unwrap();

    h.app.patient_details(&pharmacist, patient_id).await.unwrap();
    h.app.repeat_list(&patient, patient_id).await.unwrap();
    let elsewhere = from(actor(&h.app, "hilltop.manager@demo.example").await, "203.0.113.9");
    assert!(matches!(h.app.patient_details(&elsewhere, patient_id).await, Err(AppError::NotFound(_))));

    let entries = h.app.store.audit_entries(0, 100_000).await.unwrap();
    let new: Vec<_> = entries[before..].iter().collect();
    assert_eq!(new.len(), 1, "one staff read; the patient's own read and a refused probe add nothing: {new:?}");
    let e = &new[0].record;
    assert_eq!(e.actor, Some(pharmacist.user_id));
    assert_eq!(e.actor_role, Some(repeatrx_domain::access::Role::Pharmacist));
    assert!(e.organisation.starts_with("pharmacy:"));
    assert_eq!(e.action, format!("patient.{}", Action::ViewPatient.as_str()));
    assert_eq!(e.patient, Some(patient_id));
    assert_eq!(e.address, "198.51.100.7");

    let report = h.app.verify_audit(|_| {}).await.unwrap();
    assert_eq!(report.first_broken, None);
    assert_eq!(report.checked as usize, entries.len());

    // The patient sees who looked, newest first, in plain words.
    let log = h.app.patient_access_log(&patient, patient_id).await.unwrap();
    let newest = &log[0];
    assert_eq!((newest.role, newest.what), ("Pharmacist", "Looked at your record"));
    assert_eq!(newest.who, h.app.store.user(pharmacist.user_id).await.unwrap().unwrap().display_name);
    assert!(!newest.organisation.is_empty() && newest.organisation != "RepeatRx");
    let neighbour = actor(&h.app, "hilltop.manager@demo.example").await;
    assert!(h.app.patient_access_log(&neighbour, patient_id).await.is_err(), "not another pharmacy's business");
}

#[tokio::test]
async fn operators_acts_are_recorded() {
    let h = harness().await;
    let operator = from(actor(&h.app, "operator@demo.example").await, "192.0.2.44");
    let done = h
        .app
        .create_practice(
            &operator,
            &repeatrx_app::admin::NewOrganisationInput {
                name: "Canal Surgery".into(),
                ods_code: "C81099".into(),
                manager_name: "Pat Lee".into(),
                manager_email: "pat@canal-surgery.example".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let last = h.app.store.audit_entries(0, 100_000).await.unwrap().pop().unwrap();
    assert_eq!(last.record.action, "admin.create_practice");
    assert_eq!((last.record.actor, last.record.organisation.as_str()), (Some(operator.user_id), "platform"));
    assert!(last.record.detail.contains(&done.organisation.id.to_string()));
    assert_eq!(last.record.patient, None, "no patient data");
}

#[tokio::test]
async fn the_checkpoint_is_the_newest_entry_and_holds_until_the_trail_is_cut() {
    use repeatrx_app::audit::CheckpointOutcome;
    let h = harness().await;
    let checkpoint = h.app.audit_checkpoint().await.unwrap().expect("the demo seeding left entries");
    let report = h.app.verify_audit_against(Some(&checkpoint), |_| {}).await.unwrap();
    assert_eq!((report.head_seq, report.head.as_str()), (checkpoint.seq, checkpoint.hash.as_str()));
    assert_eq!(report.checkpoint, Some(CheckpointOutcome::Holds));
    assert_eq!(checkpoint.to_string().parse::<repeatrx_app::audit::Checkpoint>(), Ok(checkpoint.clone()));

    let ahead = repeatrx_app::audit::Checkpoint { seq: checkpoint.seq + 10, ..checkpoint.clone() };
    let report = h.app.verify_audit_against(Some(&ahead), |_| {}).await.unwrap();
    assert_eq!(report.checkpoint, Some(CheckpointOutcome::Missing { last: checkpoint.seq }));
    let forged = repeatrx_app::audit::Checkpoint { hash: "0".repeat(64), ..checkpoint };
    let report = h.app.verify_audit_against(Some(&forged), |_| {}).await.unwrap();
    assert_eq!(report.checkpoint, Some(CheckpointOutcome::Differs));
}
