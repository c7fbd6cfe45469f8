//! The data generator: a realistic data set written through the store's own statements and
//! sealing (so every patient value is encrypted under its own data key, as in production), many
//! records to a transaction. Ids are random, as the service's are, but handed out in ascending
//! order ([`ascending_id`]), so the indexes are built by appending, as a rebuilt database's are:
//! with ids at random the 1,000,000-patient set took hours to write.
//!
//! Shape: `pharmacies` pharmacies, each with a practice, a manager, a pharmacist and a
//! prescriber; `patients` patients spread evenly over them, each with a sign-in account and
//! repeat lines: some due now, so that they can be ordered three to an order, and one issued
//! recently; `history` finished orders spread over the patients (one line each, with every
//! transition a real order goes through); and [`OPEN_ORDERS`] open orders at every stage in the
//! first pharmacy, whose queue the queue scenario reads.
//!
//! The patients of the first pharmacy (the queue patients) have [`QUEUE_DUE_LINES`] due lines,
//! a heavy but real repeat list, some of it on the open orders; their repeat lists are what
//! scenario 2 reads. The others are who the order scenarios order as, each half of them
//! [`ORDER_CAPACITY`] orders: in a set with few patients that takes more due lines each than a
//! real patient has (72 in the small set). An order reads only the lines it orders, so the
//! length of the list does not change what an order costs.
//!
//! The data is what a service in its steady state holds: each line's last order is the one
//! finished order it has (older ones the retention job has purged), and the reminder for each
//! line's due date has been sent; so neither job has a backlog to work through while the load
//! runs. Writing the orders marks their patients due for the retention job, as the service's
//! writes do, so the generator ends with one pass of that job ([`crate::retention::pass`]), which
//! looks at every patient once and settles when each is next due. (With more history than lines,
//! the extra orders are a cycle older each, and that pass purges them.)
//!
//! Patient number `n` (from 0) belongs to pharmacy `n % pharmacies`; the patients of pharmacy 0
//! carry the open orders, the others are who the scenarios order and sign in as.
use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use jiff::{SignedDuration, Timestamp, ToSpan};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use repeatrx_app::demo::{terms, COMMON, FAMILY, GIVEN, STREETS};
use repeatrx_app::jobs::RetentionPass;
use repeatrx_domain::access::Role;
use repeatrx_domain::ids::{OrderId, OrderItemId, PatientId, PharmacyId, PracticeId, RepeatItemId, UserId};
use repeatrx_domain::order::{Decision, ItemEvent, NewOrder, Order, Transition};
use repeatrx_domain::patient::{DateOfBirth, Fulfilment, NhsNumber, Patient};
use repeatrx_domain::repeat::RepeatItem;
use repeatrx_domain::text::{Email, PersonName};
use repeatrx_store::sql::SqlStore;
use repeatrx_store::{Pharmacy, Practice, Store, UserAccount};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use uuid::Uuid;

/// Every generated account's password.
pub const BENCH_PASSWORD: &str = "bench-password-2026";
/// The email domain of every generated account (reserved for examples, never a real one).
pub const BENCH_DOMAIN: &str = "bench.example";
/// The meta key that records what was generated: `pharmacies,patients,history,layout`.
pub const DATASET_KEY: &str = "bench_dataset";
/// The version of the generator's layout (which patient has which lines, and what the
/// background jobs are left to do); a set of another layout is refused, not measured as if it
/// were this one. (Sets of layout 3 left every patient due for the retention job, whose first
/// pass then ran beside the first scenario.)
const LAYOUT: usize = 4;
/// Due lines (issued 25 days ago on a 28-day cycle) of each queue patient; every patient also
/// has one line issued 10 days ago.
pub const QUEUE_DUE_LINES: usize = 9;
/// Orders each half of the ordering patients can place: enough to keep 64 clients busy for a
/// warm-up and a 30 s window at 3,000 orders a second. (A run that wants more runs out, and
/// its report says so.)
pub const ORDER_CAPACITY: usize = 108_000;
/// The most due lines an ordering patient gets: what the small set needs for [`ORDER_CAPACITY`].
/// The tiny set, which only proves that the benchmark works, takes fewer orders.
const MAX_DUE_LINES: usize = 72;
/// Open orders in pharmacy 0's queue.
pub const OPEN_ORDERS: usize = 5_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub pharmacies: usize,
    pub patients: usize,
    pub history: usize,
}

impl Shape {
    pub fn named(name: &str) -> anyhow::Result<Shape> {
        Ok(match name {
            // The smallest set the scenarios run on: a check that the whole benchmark works (its
            // test), too small to measure anything by.
            "tiny" => Shape { pharmacies: 2, patients: 1_200, history: 1_200 },
            "small" => Shape { pharmacies: 10, patients: 10_000, history: 100_000 },
            // Ten times small, with as many patients to a pharmacy as large has: a step towards
            // large that a session can generate (13 minutes on SQLite here).
            "medium" => Shape { pharmacies: 10, patients: 100_000, history: 1_000_000 },
            "large" => Shape { pharmacies: 100, patients: 1_000_000, history: 10_000_000 },
            other => bail!("the data set size must be tiny, small, medium or large (got {other})"),
        })
    }

    fn to_meta(self) -> String {
        format!("{},{},{},{LAYOUT}", self.pharmacies, self.patients, self.history)
    }

    pub fn from_meta(meta: &str) -> anyhow::Result<Shape> {
        let n: Vec<usize> = meta.split(',').map(str::parse).collect::<Result<_, _>>().context("dataset record")?;
        match n[..] {
            [pharmacies, patients, history, LAYOUT] => Ok(Shape { pharmacies, patients, history }),
            [_, _, _] | [_, _, _, _] => {
                bail!("this data set was made by an earlier repeatrx-bench, to another layout; generate it again")
            }
            _ => bail!("the dataset record {meta:?} is not pharmacies,patients,history,layout"),
        }
    }

    /// Patients of pharmacy 0 (who hold the open orders) are not ordered for by the scenarios.
    pub fn is_queue_patient(self, n: usize) -> bool {
        n.is_multiple_of(self.pharmacies)
    }

    /// Patients the order scenarios can order as: all but the queue patients.
    pub fn ordering_patients(self) -> usize {
        self.patients - self.patients.div_ceil(self.pharmacies)
    }

    /// Due lines of each ordering patient: three to an order, enough for [`ORDER_CAPACITY`]
    /// orders from each half (up to [`MAX_DUE_LINES`]), and never fewer than a queue patient has.
    pub fn ordering_due_lines(self) -> usize {
        let half = (self.ordering_patients() / 2).max(1);
        (ORDER_CAPACITY.div_ceil(half) * 3).clamp(QUEUE_DUE_LINES, MAX_DUE_LINES)
    }

    /// Due lines of patient `n`.
    pub fn due_lines_of(self, n: usize) -> usize {
        if self.is_queue_patient(n) {
            QUEUE_DUE_LINES
        } else {
            self.ordering_due_lines()
        }
    }

    /// The most lines any patient has (due lines and the one issued recently): the stride of
    /// the generator's line ids.
    fn max_lines(self) -> usize {
        self.ordering_due_lines().max(QUEUE_DUE_LINES) + 1
    }

    fn validate(self) -> anyhow::Result<()> {
        if self.pharmacies == 0 || self.patients < self.pharmacies * 2 {
            bail!("a data set needs at least one pharmacy and two patients per pharmacy");
        }
        let queue_patients = self.patients.div_ceil(self.pharmacies);
        if queue_patients * QUEUE_DUE_LINES < OPEN_ORDERS {
            bail!("pharmacy 0 needs more patients to hold {OPEN_ORDERS} open orders");
        }
        Ok(())
    }
}

/// The sign-in address of patient `n`.
pub fn patient_email(n: usize) -> String {
    format!("patient{n}@{BENCH_DOMAIN}")
}

/// The ids of the organisations and the staff, in pharmacy order.
pub struct Organisations {
    pub pharmacies: Vec<PharmacyId>,
    pub practices: Vec<PracticeId>,
    pub pharmacists: Vec<UserId>,
    pub prescribers: Vec<UserId>,
}

/// How the generator writes: `parallel` writers (PostgreSQL only), `batch` records to a
/// transaction, and on SQLite a page cache of `page_cache_mib` for the writer.
pub struct Loading {
    pub parallel: usize,
    pub page_cache_mib: u64,
    pub batch: usize,
}

/// Generates the set, then runs the retention job's first pass on it (see the module's doc); the
/// pass is returned with how long it took.
pub async fn generate(
    store: &SqlStore,
    shape: Shape,
    loading: Loading,
) -> anyhow::Result<(RetentionPass, std::time::Duration)> {
    shape.validate()?;
    if store.get_meta(DATASET_KEY).await?.is_some() {
        bail!("this database already holds a generated data set; generate into a new one");
    }
    let hash = repeatrx_app::auth::hash_password(
        &repeatrx_domain::patient::Password::new(BENCH_PASSWORD, repeatrx_domain::patient::PasswordOwner::Staff, &[])
            .context("the bench password")?,
    )
    .await?;
    let orgs = Arc::new(organisations(store, shape, &hash).await?);
    let total = (0..shape.patients).map(|n| records_of(shape, n)).sum::<usize>() as u64;
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} records, {per_sec}, {eta} left")
            .context("progress style")?,
    );
    bar.set_message("generating");
    let done = Arc::new(AtomicU64::new(0));
    // SQLite has one writer: a second would only wait for the first's batch.
    let parallel = if store.engine() == repeatrx_store::sql::Engine::Sqlite { 1 } else { loading.parallel.max(1) };
    let Loading { page_cache_mib, batch, .. } = loading;
    // Each worker writes every `parallel`-th pharmacy's patients, history included.
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..parallel {
        let (store, orgs, hash, bar, done) = (store.clone(), orgs.clone(), hash.clone(), bar.clone(), done.clone());
        workers.spawn(async move {
            let mut rng = StdRng::seed_from_u64(w as u64);
            let mut load = store.bulk_load(batch).with_page_cache(page_cache_mib);
            let today = jiff::Zoned::now().date();
            let now = Timestamp::now();
            for n in (0..shape.patients).filter(|n| (n % shape.pharmacies) % parallel == w) {
                let written = write_patient(&mut load, &orgs, shape, n, &hash, today, now, &mut rng).await?;
                bar.inc(written);
                done.fetch_add(written, Ordering::Relaxed);
            }
            load.finish().await?;
            anyhow::Ok(())
        });
    }
    while let Some(joined) = workers.join_next().await {
        joined.context("a generator worker")??;
    }
    bar.set_message("refreshing the planner's statistics");
    store.refresh_statistics().await?;
    bar.set_message("the retention job's first pass");
    let first_pass = crate::retention::pass(store.clone()).await?;
    // Recorded last, so that a set whose generation stopped part way is refused by `run`.
    store.set_meta(DATASET_KEY, &shape.to_meta()).await?;
    store.set_meta(repeatrx_app::environment::ENVIRONMENT_KEY, "production").await?;
    bar.finish_with_message("generated");
    Ok(first_pass)
}

async fn organisations(store: &SqlStore, shape: Shape, hash: &str) -> anyhow::Result<Organisations> {
    let now = Timestamp::now();
    let mut orgs = Organisations { pharmacies: vec![], practices: vec![], pharmacists: vec![], prescribers: vec![] };
    for p in 0..shape.pharmacies {
        let staff = |email: String, name: &str, role: Role, pharmacy, practice| -> anyhow::Result<UserAccount> {
            Ok(UserAccount {
                id: UserId::new(),
                email: Email::parse(&email)?,
                display_name: name.to_string(),
                role,
                pharmacy_id: pharmacy,
                practice_id: practice,
                patient_id: None,
                password_hash: hash.to_string(),
                active: true,
                created_at: now,
            })
        };
        let pharmacy = Pharmacy {
            id: PharmacyId::new(),
            name: format!("Bench Pharmacy {p:03}"),
            ods_code: format!("FB{p:03}"),
            address: format!("{} High Street, Benchton", p + 1),
            email: Some(Email::parse(&format!("pharmacy{p}@{BENCH_DOMAIN}"))?),
            created_at: now,
        };
        let manager = staff(
            format!("manager{p}@{BENCH_DOMAIN}"),
            "Bench Manager",
            Role::PharmacyManager,
            Some(pharmacy.id),
            None,
        )?;
        store.insert_pharmacy(&pharmacy, &manager).await?;
        let pharmacist = staff(
            format!("pharmacist{p}@{BENCH_DOMAIN}"),
            "Bench Pharmacist",
            Role::Pharmacist,
            Some(pharmacy.id),
            None,
        )?;
        store.insert_user(&pharmacist).await?;
        let practice = Practice {
            id: PracticeId::new(),
            name: format!("Bench Surgery {p:03}"),
            ods_code: format!("B{p:05}"),
            address: format!("{} Station Road, Benchton", p + 1),
            email: None,
            on_repeatrx: true,
            created_at: now,
        };
        store.insert_practice(&practice, None).await?;
        let prescriber =
            staff(format!("prescriber{p}@{BENCH_DOMAIN}"), "Dr Bench", Role::Prescriber, None, Some(practice.id))?;
        store.insert_user(&prescriber).await?;
        orgs.pharmacies.push(pharmacy.id);
        orgs.practices.push(practice.id);
        orgs.pharmacists.push(pharmacist.id);
        orgs.prescribers.push(prescriber.id);
    }
    Ok(orgs)
}

/// How many finished orders patient `n` has: `history` spread as evenly as it goes.
fn history_of(shape: Shape, n: usize) -> usize {
    shape.history / shape.patients + usize::from(n < shape.history % shape.patients)
}

/// How many open orders queue patient `n` holds, so that pharmacy 0 holds [`OPEN_ORDERS`].
fn open_orders_of(shape: Shape, n: usize) -> usize {
    if !shape.is_queue_patient(n) {
        return 0;
    }
    let k = n / shape.pharmacies;
    let queue_patients = shape.patients.div_ceil(shape.pharmacies);
    OPEN_ORDERS / queue_patients + usize::from(k < OPEN_ORDERS % queue_patients)
}

/// What the generator writes for patient `n`: the patient and their account, their lines, a
/// reminder for each due line, and their finished and open orders.
fn records_of(shape: Shape, n: usize) -> usize {
    let due = shape.due_lines_of(n);
    2 + (due + 1) + due + history_of(shape, n) + open_orders_of(shape, n)
}

#[allow(clippy::too_many_arguments)]
async fn write_patient(
    load: &mut repeatrx_store::sql::BulkLoad,
    orgs: &Organisations,
    shape: Shape,
    n: usize,
    hash: &str,
    today: jiff::civil::Date,
    now: Timestamp,
    rng: &mut StdRng,
) -> anyhow::Result<u64> {
    let p = n % shape.pharmacies;
    let (pharmacy, practice) = (orgs.pharmacies[p], orgs.practices[p]);
    let given = GIVEN[rng.gen_range(0..GIVEN.len())];
    let family = FAMILY[rng.gen_range(0..FAMILY.len())];
    let patient = Patient {
        id: PatientId::from_uuid(ascending_id(rng, n, shape.patients)),
        pharmacy_id: pharmacy,
        practice_id: practice,
        given_name: PersonName::parse("given_name", given)?,
        family_name: PersonName::parse("family_name", family)?,
        date_of_birth: DateOfBirth::new(today.saturating_sub(rng.gen_range(20 * 365..90 * 365_i64).days()), today)?,
        nhs_number: nhs(rng),
        email: Some(Email::parse(&patient_email(n))?),
        phone: Some(format!("07700 9{:05}", rng.gen_range(0..100_000))),
        address: Some(format!(
            "{} {}, Benchton, BX{} {}AB",
            rng.gen_range(1..300),
            STREETS[rng.gen_range(0..STREETS.len())],
            rng.gen_range(1..30),
            rng.gen_range(1..10)
        )),
    };
    let account = UserAccount {
        id: UserId::from_uuid(ascending_id(rng, n, shape.patients)),
        email: Email::parse(&patient_email(n))?,
        display_name: patient.full_name(),
        role: Role::Patient,
        pharmacy_id: Some(pharmacy),
        practice_id: Some(practice),
        patient_id: Some(patient.id),
        password_hash: hash.to_string(),
        active: true,
        created_at: now,
    };
    let finished = history_of(shape, n);
    let open = open_orders_of(shape, n);
    let due = shape.due_lines_of(n);
    let stride = shape.max_lines();
    let issued_days_ago = |k: usize| if k < due { 25 } else { 10 };
    let mut lines = Vec::with_capacity(due + 1);
    for k in 0..=due {
        let query = COMMON[(n + k * 5) % COMMON.len()];
        let mut line = RepeatItem::new(patient.id, terms(query, 28, 13, 300, today)?);
        line.id = RepeatItemId::from_uuid(ascending_id(rng, n * stride + k, shape.patients * stride));
        line.record_issue(today.saturating_sub(issued_days_ago(k).days()))?;
        let reminded = line.next_due.filter(|_| k < due);
        lines.push((line, reminded));
    }
    load.patient(&patient, Some(&account), &lines).await?;
    let who = |user: UserId, role: Role, at: Timestamp| repeatrx_domain::order::By { user, role, at };
    let staff = (orgs.pharmacists[p], orgs.prescribers[p]);
    let orders_each = history_of(shape, 0) + QUEUE_DUE_LINES;
    let mut order_slot = n * orders_each;
    for h in 0..finished {
        let line = &lines[h % lines.len()].0;
        let cycles_back = (h / lines.len()) as i64;
        let placed = now - SignedDuration::from_hours(24 * (issued_days_ago(h % lines.len()) + 28 * cycles_back) + 30);
        let (mut order, mut transitions) = finished_order(&patient, line, account.id, staff, placed, who)?;
        renumber(&mut order, &mut transitions, rng, order_slot, shape.patients * orders_each);
        load.order(order, transitions).await?;
        order_slot += 1;
    }
    for (k, (line, _)) in lines.iter().enumerate().take(open) {
        let placed = now - SignedDuration::from_mins(rng.gen_range(5..60 * 72));
        let (mut order, mut transitions) = open_order(&patient, line, account.id, staff, placed, k, who)?;
        renumber(&mut order, &mut transitions, rng, order_slot, shape.patients * orders_each);
        load.order(order, transitions).await?;
        order_slot += 1;
    }
    Ok(records_of(shape, n) as u64)
}

/// A random version-4 id from the `slot`-th of `slots` equal ranges of the first 48 bits (the
/// other bits random as well). The generator gives each table's records ascending slots in the
/// order it writes them, so every index keyed by an id (and each patient's, order's and line's
/// records are keyed by the ids of their owners) grows at its end, as an index does when a
/// database is rebuilt, instead of at random pages all over it. The ids are as random as the
/// service's own (`Uuid::new_v4`), spread evenly over all ids.
fn ascending_id(rng: &mut StdRng, slot: usize, slots: usize) -> Uuid {
    let width = (1_u64 << 48) / (slots.max(1) as u64);
    let top = (slot as u64).saturating_mul(width) + rng.gen_range(0..width.max(1));
    let mut bytes: [u8; 16] = rng.gen();
    bytes[..6].copy_from_slice(&top.to_be_bytes()[2..]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// Gives a generated order (and its items, and its transitions) ascending ids: the order's and
/// its items' from `slot` of `slots`.
fn renumber(order: &mut Order, transitions: &mut [Transition], rng: &mut StdRng, slot: usize, slots: usize) {
    order.id = OrderId::from_uuid(ascending_id(rng, slot, slots));
    let mut items = Vec::with_capacity(order.items.len());
    for item in &mut order.items {
        let new = OrderItemId::from_uuid(ascending_id(rng, slot, slots));
        items.push((item.id, new));
        item.id = new;
    }
    for t in transitions {
        t.order_id = order.id;
        if let Some((_, new)) = items.iter().find(|(old, _)| Some(*old) == t.item_id) {
            t.item_id = Some(*new);
        }
    }
}

type ByOf = fn(UserId, Role, Timestamp) -> repeatrx_domain::order::By;

fn submitted(
    patient: &Patient,
    line: &RepeatItem,
    by: repeatrx_domain::order::By,
) -> anyhow::Result<(Order, Transition)> {
    let new = NewOrder {
        patient_id: patient.id,
        pharmacy_id: patient.pharmacy_id,
        practice_id: patient.practice_id,
        fulfilment: Fulfilment::Collection,
        note: None,
        on_behalf: false,
        items: vec![(line.id, format!("{} × {}", line.terms.description(), line.terms.quantity))],
    };
    Ok(Order::submit(new, by)?)
}

/// An order collected a day after it was placed, with every transition on the way.
fn finished_order(
    patient: &Patient,
    line: &RepeatItem,
    placed_by: UserId,
    (pharmacist, prescriber): (UserId, UserId),
    placed: Timestamp,
    who: ByOf,
) -> anyhow::Result<(Order, Vec<Transition>)> {
    let (mut order, first) = submitted(patient, line, who(placed_by, Role::Patient, placed))?;
    let item = order.items[0].id;
    let later = |hours: i64| placed + SignedDuration::from_hours(hours);
    let mut all = vec![first];
    all.extend(order.accept(who(pharmacist, Role::Pharmacist, later(1)))?);
    all.extend(order.send_to_prescriber(who(pharmacist, Role::Pharmacist, later(2)))?);
    all.extend(order.decide(item, Decision::Approve, who(prescriber, Role::Prescriber, later(6)))?);
    all.extend(order.dispense_step(item, ItemEvent::ReadyToCollect, who(pharmacist, Role::Pharmacist, later(20)))?);
    all.extend(order.dispense_step(item, ItemEvent::Collected, who(pharmacist, Role::Pharmacist, later(26)))?);
    Ok((order, all))
}

/// An open order at one of the queue's stages (by `k`): submitted, in review, with the
/// prescriber, preparing or ready.
fn open_order(
    patient: &Patient,
    line: &RepeatItem,
    placed_by: UserId,
    (pharmacist, prescriber): (UserId, UserId),
    placed: Timestamp,
    k: usize,
    who: ByOf,
) -> anyhow::Result<(Order, Vec<Transition>)> {
    let (mut order, first) = submitted(patient, line, who(placed_by, Role::Patient, placed))?;
    let item = order.items[0].id;
    let later = |mins: i64| placed + SignedDuration::from_mins(mins);
    let mut all = vec![first];
    let stage = k % 5;
    if stage >= 1 {
        all.extend(order.accept(who(pharmacist, Role::Pharmacist, later(1)))?);
    }
    if stage >= 2 {
        all.extend(order.send_to_prescriber(who(pharmacist, Role::Pharmacist, later(2)))?);
    }
    if stage >= 3 {
        all.extend(order.decide(item, Decision::Approve, who(prescriber, Role::Prescriber, later(3)))?);
    }
    if stage >= 4 {
        all.extend(order.dispense_step(
            item,
            ItemEvent::ReadyToCollect,
            who(pharmacist, Role::Pharmacist, later(4)),
        )?);
    }
    Ok((order, all))
}

fn nhs(rng: &mut StdRng) -> NhsNumber {
    loop {
        if let Some(n) = NhsNumber::from_prefix(rng.gen_range(400_000_000..=999_999_999)) {
            return n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascending_ids_are_random_version_4_ids_in_slot_order() {
        let mut rng = StdRng::seed_from_u64(7);
        let ids: Vec<Uuid> = (0..10_000).map(|slot| ascending_id(&mut rng, slot, 10_000)).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1] && w[0].to_string() < w[1].to_string()));
        assert!(ids.iter().all(|id| id.get_version_num() == 4 && id.get_variant() == uuid::Variant::RFC4122));
        assert_eq!((ids[0].as_u128() >> 120, ids[9_999].as_u128() >> 120), (0, 0xff), "spread over all ids");
    }

    #[test]
    fn a_renumbered_order_and_its_transitions_agree() {
        let mut rng = StdRng::seed_from_u64(7);
        let today = jiff::civil::date(2026, 12, 6);
        let patient = Patient {
            id: PatientId::new(),
            pharmacy_id: PharmacyId::new(),
            practice_id: PracticeId::new(),
            given_name: PersonName::parse("given_name", "Ada").unwrap(),
            family_name: PersonName::parse("family_name", "Lovelace").unwrap(),
            date_of_birth: DateOfBirth::new(jiff::civil::date(1970, 1, 1), today).unwrap(),
            nhs_number: nhs(&mut rng),
            email: None,
            phone: None,
            address: None,
        };
        let line = RepeatItem::new(patient.id, terms(COMMON[0], 28, 13, 300, today).unwrap());
        let who = |user: UserId, role: Role, at: Timestamp| repeatrx_domain::order::By { user, role, at };
        let staff = (UserId::new(), UserId::new());
        let (mut order, mut transitions) =
            finished_order(&patient, &line, UserId::new(), staff, Timestamp::now(), who).unwrap();
        let (old_order, old_item) = (order.id, order.items[0].id);
        renumber(&mut order, &mut transitions, &mut rng, 3, 10);
        assert!(order.id != old_order && order.items[0].id != old_item);
        assert!(transitions.len() > 2 && transitions.iter().all(|t| t.order_id == order.id));
        assert!(transitions.iter().all(|t| t.item_id.is_none() || t.item_id == Some(order.items[0].id)));
        assert!(transitions.iter().any(|t| t.item_id.is_some()));
    }

    #[test]
    fn history_and_open_orders_add_up() {
        for shape in [
            Shape::named("tiny").unwrap(),
            Shape::named("small").unwrap(),
            Shape { pharmacies: 3, patients: 3_001, history: 7_777 },
        ] {
            shape.validate().unwrap();
            let history: usize = (0..shape.patients).map(|n| history_of(shape, n)).sum();
            let open: usize = (0..shape.patients).map(|n| open_orders_of(shape, n)).sum();
            assert_eq!(history, shape.history);
            assert_eq!(open, OPEN_ORDERS);
            assert!((0..shape.patients).all(|n| open_orders_of(shape, n) <= QUEUE_DUE_LINES));
            assert!(shape.max_lines() > shape.ordering_due_lines() && shape.max_lines() > QUEUE_DUE_LINES);
        }
        let capacity = |shape: Shape| shape.ordering_patients() / 2 * (shape.ordering_due_lines() / 3);
        for size in ["small", "medium", "large"] {
            assert!(capacity(Shape::named(size).unwrap()) >= ORDER_CAPACITY, "{size}");
        }
        assert_eq!(Shape::named("small").unwrap().ordering_due_lines(), 72, "as the module's comment says");
        assert_eq!(Shape::named("tiny").unwrap().ordering_due_lines(), MAX_DUE_LINES);
        assert_eq!(Shape::named("large").unwrap().ordering_due_lines(), 9, "a large set needs no more than real lists");
        assert_eq!(Shape::from_meta(&Shape::named("large").unwrap().to_meta()).unwrap().patients, 1_000_000);
        let earlier = Shape::from_meta("10,10000,100000").unwrap_err().to_string();
        assert!(earlier.contains("generate it again"), "{earlier}");
        assert!(Shape { pharmacies: 10, patients: 1_000, history: 0 }.validate().is_err(), "too few queue patients");
    }
}
