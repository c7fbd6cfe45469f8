//! Helpers shared by the store's integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use repeatrx_store::conformance;
use repeatrx_store::sql::SqlStore;
use repeatrx_store::{Store, StoreError};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, Row};
use std::collections::BTreeMap;
use std::path::Path;

/// Every row of every table (but the backup bookkeeping and SQLite's counters), as SQLite quotes it.
pub async fn content(db: &Path) -> BTreeMap<String, Vec<String>> {
    let mut conn = SqliteConnectOptions::new().filename(db).read_only(true).connect().await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'backup_%'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut out = BTreeMap::new();
    for table in tables {
        let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info($1) ORDER BY cid")
            .bind(&table)
            .fetch_all(&mut conn)
            .await
            .unwrap();
        let select = columns.iter().map(|c| format!("quote(\"{c}\")")).collect::<Vec<_>>().join(" || ',' || ");
        let mut rows: Vec<String> = sqlx::query(&format!("SELECT {select} FROM \"{table}\""))
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect();
        rows.sort();
        out.insert(table, rows);
    }
    conn.close().await.unwrap();
    out
}

/// P2, on either engine: what the database holds is ciphertext bound to its place. A value changed, or copied from
/// another row or column, is reported as corrupt and never shown as someone's data.
pub async fn sealed_values_changed_or_moved_are_reported_not_opened(store: &SqlStore) {
    let a = conformance::world(store).await.pa;
    let b = conformance::world(store).await.pa;
    assert_eq!(store.patient(b.patient.id).await.unwrap().unwrap(), b.patient, "intact rows open");

    let raw = |column: &str, id: String| {
        let sql = format!("SELECT {column} FROM patients WHERE id = $1");
        let pool = store.pool().clone();
        async move { sqlx::query_scalar::<_, String>(&sql).bind(id).fetch_one(&pool).await.unwrap() }
    };
    let family_a = raw("family_name", a.patient.id.to_string()).await;
    let family_b = raw("family_name", b.patient.id.to_string()).await;
    assert!(!family_a.contains(b.patient.family_name.as_str()) && !family_a.contains("Jones"), "{family_a}");
    let set = |column: &str, value: String, id: String| {
        let sql = format!("UPDATE patients SET {column} = $1 WHERE id = $2");
        let pool = store.pool().clone();
        async move { sqlx::query(&sql).bind(value).bind(id).execute(&pool).await.unwrap() }
    };
    let refused = |what: &str, r: Result<Option<repeatrx_domain::patient::Patient>, StoreError>| match r {
        Err(StoreError::Corrupt(m)) => assert!(m.contains("does not open"), "{what}: {m}"),
        other => panic!("{what}: expected Corrupt, got {other:?}"),
    };

    // Another patient's family name copied over B's.
    set("family_name", family_a.clone(), b.patient.id.to_string()).await;
    refused("moved between rows", store.patient(b.patient.id).await);
    // B's own family name put in the given-name column.
    set("family_name", family_b.clone(), b.patient.id.to_string()).await;
    let given_b = raw("given_name", b.patient.id.to_string()).await;
    set("given_name", family_b.clone(), b.patient.id.to_string()).await;
    refused("moved between columns", store.patient(b.patient.id).await);
    set("given_name", given_b, b.patient.id.to_string()).await;
    assert_eq!(store.patient(b.patient.id).await.unwrap().unwrap(), b.patient, "put back, it opens again");
    // One character of the ciphertext changed.
    let mut chars: Vec<char> = family_b.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    set("family_name", chars.into_iter().collect(), b.patient.id.to_string()).await;
    refused("changed", store.patient(b.patient.id).await);
    // Someone else's data key put in place of B's.
    set("family_name", family_b, b.patient.id.to_string()).await;
    sqlx::query(
        "UPDATE data_keys SET key_wrapped = (SELECT key_wrapped FROM data_keys WHERE key_owner = $1) WHERE key_owner = $2",
    )
    .bind(a.patient.id.to_string())
    .bind(b.patient.id.to_string())
    .execute(store.pool())
    .await
    .unwrap();
    match store.patient(b.patient.id).await {
        Err(StoreError::Corrupt(m)) => assert!(m.contains("data key"), "{m}"),
        other => panic!("a swapped data key: expected Corrupt, got {other:?}"),
    }
    assert_eq!(store.patient(a.patient.id).await.unwrap().unwrap(), a.patient, "A is untouched");
}

/// A bulk load writes each record exactly as the one-at-a-time methods do: patients (with their
/// accounts), repeat lines, orders with their transitions, sessions and sent reminders all read
/// back as given, whether a batch was committed or is committed by `finish`.
pub async fn bulk_loaded_records_read_back_as_written(store: &SqlStore) {
    use repeatrx_domain::ids::{PatientId, RepeatItemId, UserId};
    use repeatrx_domain::order::{By, NewOrder, Order};
    use repeatrx_domain::patient::Fulfilment;
    use repeatrx_store::{SessionKind, SessionRecord};
    let w = conformance::world(store).await;
    let counted_before = store.pharmacy_open_stage_counts(w.pa.patient.pharmacy_id).await.unwrap();
    let mut load = store.bulk_load(4);
    let mut stray = w.pa.items[0].clone();
    stray.id = RepeatItemId::new();
    stray.patient_id = PatientId::new();
    let refused = load.patient(&w.pa.patient, None, &[(stray, None)]).await;
    assert!(matches!(refused, Err(StoreError::Conflict(_))), "another patient's line: {refused:?}");
    let mut written = Vec::new();
    for n in 0..7 {
        let mut patient = w.pa.patient.clone();
        patient.id = PatientId::new();
        patient.email =
            Some(repeatrx_domain::text::Email::parse(&format!("bulk{n}-{}@example.org", patient.id)).unwrap());
        let account = repeatrx_store::UserAccount {
            id: UserId::new(),
            email: patient.email.clone().unwrap(),
            patient_id: Some(patient.id),
            ..w.pa.user.clone()
        };
        let mut lines = Vec::new();
        for line in &w.pa.items {
            let mut line = line.clone();
            line.id = RepeatItemId::new();
            line.patient_id = patient.id;
            lines.push(line);
        }
        let due = jiff::civil::date(2026, 12, 24);
        let reminded: Vec<_> = lines
            .iter()
            .zip([Some(due)].into_iter().chain(std::iter::repeat(None)))
            .map(|(l, r)| (l.clone(), r))
            .collect();
        load.patient(&patient, Some(&account), &reminded).await.unwrap();
        let new = NewOrder {
            patient_id: patient.id,
            pharmacy_id: patient.pharmacy_id,
            practice_id: patient.practice_id,
            fulfilment: Fulfilment::Delivery,
            note: Some(format!("note {n}")),
            on_behalf: false,
            items: lines.iter().map(|l| (l.id, l.terms.description())).collect(),
        };
        let at = jiff::Timestamp::from_second(1_780_000_000 + n).unwrap();
        let (mut order, first) = Order::submit(new, By { user: account.id, role: account.role, at }).unwrap();
        let mut transitions = vec![first];
        transitions.extend(order.accept(By { user: w.ph.manager.id, role: w.ph.manager.role, at }).unwrap());
        load.order(order.clone(), transitions.clone()).await.unwrap();
        let session = SessionRecord {
            token_hash: format!("{:064x}", n),
            user_id: account.id,
            kind: SessionKind::Api,
            csrf_token: "csrf".into(),
            created_at: at,
            last_seen_at: at,
            expires_at: at + jiff::SignedDuration::from_hours(1),
            user_agent: "bulk".into(),
            stage: repeatrx_domain::security::SessionStage::Full,
            address: "127.0.0.1".into(),
        };
        load.session(&session).await.unwrap();
        written.push((patient, account, lines, order, transitions, session));
    }
    // An order for a patient loaded earlier: the loader reads that patient's key back.
    let (first, first_account, first_lines) = (&written[0].0, &written[0].1, &written[0].2);
    let later = NewOrder {
        patient_id: first.id,
        pharmacy_id: first.pharmacy_id,
        practice_id: first.practice_id,
        fulfilment: Fulfilment::Collection,
        note: Some("a later order".into()),
        on_behalf: false,
        items: first_lines.iter().map(|l| (l.id, l.terms.description())).collect(),
    };
    let at = jiff::Timestamp::from_second(1_790_000_000).unwrap();
    let (later, later_first) =
        Order::submit(later, By { user: first_account.id, role: first_account.role, at }).unwrap();
    load.order(later.clone(), vec![later_first.clone()]).await.unwrap();
    let first_patient = first.id;
    load.finish().await.unwrap();
    let in_review = |counts: &[(repeatrx_domain::order::OrderStage, i64)]| {
        counts.iter().filter(|(s, _)| *s == repeatrx_domain::order::OrderStage::InReview).map(|(_, n)| n).sum::<i64>()
    };
    assert_eq!(
        in_review(&store.pharmacy_open_stage_counts(first.pharmacy_id).await.unwrap()),
        in_review(&counted_before) + 7,
        "the queue counts the loaded orders still in review"
    );
    let of_first = store.orders_of_patient(first_patient).await.unwrap();
    assert!(of_first.contains(&later) && of_first.len() == 2, "{of_first:?}");
    assert_eq!(store.order_transitions(later.id).await.unwrap(), vec![later_first]);
    for (patient, ..) in &written {
        let due = conformance::retention_due_of(store, patient.id, conformance::now()).await;
        assert!(due.is_some(), "a loaded order marks its patient due for the retention job");
    }
    for (patient, account, lines, order, transitions, session) in written {
        assert_eq!(store.patient(patient.id).await.unwrap().as_ref(), Some(&patient));
        assert_eq!(store.user_for_patient(patient.id).await.unwrap().map(|u| u.id), Some(account.id));
        assert_eq!(store.repeat_items(patient.id).await.unwrap(), lines);
        let orders = store.orders_of_patient(patient.id).await.unwrap();
        assert!(orders.contains(&order) && orders.len() == 1 + usize::from(patient.id == first_patient), "{orders:?}");
        assert_eq!(store.order_transitions(order.id).await.unwrap(), transitions);
        assert_eq!(store.session(&session.token_hash).await.unwrap().map(|s| s.user_id), Some(account.id));
        let needing = store.repeat_items_needing_reminder(jiff::civil::date(2027, 12, 31), 10_000).await.unwrap();
        assert!(!needing.iter().any(|l| l.id == lines[0].id), "the reminder is recorded as sent");
    }
}
