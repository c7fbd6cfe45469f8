//! One benchmark run: a fresh copy of a generated data set, the baselines, the real server on
//! the copy, the four scenarios one after another, and the report.
use crate::baseline;
use crate::dataset::{patient_email, Shape, BENCH_PASSWORD, DATASET_KEY};
use crate::load::{drive, Job, Measured, Offered, PlannedOrder};
use crate::report::Report;
use crate::server::{self, Certificate, Process};
use crate::watch::ProcessWatch;
use anyhow::{bail, Context};
use jiff::{SignedDuration, Timestamp};
use repeatrx_domain::access::Role;
use repeatrx_domain::security::SessionStage;
use repeatrx_domain::text::Email;
use repeatrx_store::crypto::{KeyFile, KeySource};
use repeatrx_store::sql::{Engine, SqlStore};
use repeatrx_store::{SessionKind, SessionRecord, Store};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct RunOptions {
    pub database_url: String,
    pub key_file: PathBuf,
    pub work_dir: PathBuf,
    pub clients: usize,
    pub warmup: Duration,
    pub window: Duration,
    /// Clients signing in during the sign-in scenario (besides the ordering clients).
    pub sign_in_clients: usize,
    /// Which scenarios to drive (all four unless narrowed, e.g. to profile one).
    pub scenarios: Vec<Scenario>,
    /// Run on the data set itself instead of a copy of it (for a set too big to copy on the
    /// machine's disk): it then holds the orders and sessions of the run, and later runs on it
    /// order as patients who have not ordered yet.
    pub in_place: bool,
    /// Shares of each scenario's closed-loop rate (0.5: half) at which it is driven again,
    /// paced, for its latency at a steady load; none for none.
    pub paced: Vec<f64>,
}

/// The meta key runs in place leave on their data set: how many patients from the start of each
/// half of the ordering patients have ordered their due lines (see [`ordering_window`]).
pub const RUN_IN_PLACE_KEY: &str = "bench_run_in_place";

/// The four scenarios of issue #7, by the names `--scenarios` takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    Orders,
    List,
    Queue,
    SignIn,
}

/// Runs everything and returns the report.
pub async fn run(opts: &RunOptions) -> anyhow::Result<Report> {
    std::fs::create_dir_all(&opts.work_dir)?;
    let keys: Arc<dyn KeySource> = Arc::new(KeyFile::load(&opts.key_file).context("the data set's key file")?);
    let run_url = if opts.in_place {
        eprintln!("==> running on the data set itself: no run can be made on it afterwards");
        opts.database_url.clone()
    } else {
        eprintln!("==> copying the data set (each run starts from the data set as generated)");
        fresh_copy(&opts.database_url, &opts.work_dir).await?
    };
    let store = open(&run_url, keys.clone()).await?;
    let ordered_before = match store.get_meta(RUN_IN_PLACE_KEY).await? {
        None => 0,
        Some(used) => used.parse::<usize>().map_err(|_| {
            anyhow::anyhow!(
                "this data set was run on in place by an older repeatrx-bench ({used}), which did not note whose \
                 lines were ordered; generate it again"
            )
        })?,
    };
    if store.engine() == Engine::Sqlite {
        // Fold the generator's log into the file first: otherwise the first commit of the
        // baseline does it, holding the write lock past the busy timeout on a large set.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(store.pool()).await.context("checkpointing the copy")?;
    }
    let shape = Shape::from_meta(
        &store
            .get_meta(DATASET_KEY)
            .await?
            .context("this database holds no generated data set (repeatrx-bench generate)")?,
    )?;
    let mut report = Report::new(store.engine(), shape, opts);
    let cert = Certificate::make(&opts.work_dir)?;

    eprintln!("==> baselines: raw durable commits, argon2id, trivial handler");
    report.raw_commits = Some(baseline::raw_commits(&store, opts.clients, opts.window).await?);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    report.cores = cores;
    report.argon2_all_cores = baseline::argon2_rate(cores, Duration::from_secs(10)).await?;
    let trivial = server::start_trivial(&cert, &opts.work_dir)?;
    let mut trivial = trivial;
    server::wait_healthy(&mut trivial, &cert.cert_pem, Duration::from_secs(30)).await?;
    let (measured, cpu) =
        baseline::trivial_handler(&trivial, &cert.cert_pem, opts.clients, opts.warmup, opts.window).await?;
    report.trivial = Some(measured);
    report.trivial_cpu = cpu;
    trivial.stop()?;

    eprintln!("==> planning: patients, their orderable lines and sessions");
    let raw_rate = report.raw_commits.as_ref().map(Measured::per_second).unwrap_or(1000.0);
    // The paced runs of scenario 1 order as what scenario 1 and scenario 4 left of their halves.
    let windows = 1.0 + opts.paced.iter().sum::<f64>();
    let want_orders = ((raw_rate * (opts.warmup + opts.window).as_secs_f64()) * 1.2 * windows) as usize + opts.clients;
    let plan = Plan::make(&store, shape, want_orders, ordered_before).await?;
    if opts.in_place {
        store.set_meta(RUN_IN_PLACE_KEY, &plan.ordered_upto.to_string()).await?;
    }

    let backup_dir = (store.engine() == Engine::Sqlite).then(|| opts.work_dir.join("backup"));
    if let Some(dir) = &backup_dir {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
    }
    let serve_dir = opts.work_dir.join("serve");
    std::fs::create_dir_all(&serve_dir)?;
    let setup = server::ServeSetup {
        dir: &serve_dir,
        database_url: &run_url,
        key_file: &opts.key_file,
        cert: &cert,
        backup_dir: backup_dir.as_deref(),
        smtp_port: server::free_port()?,
    };
    eprintln!("==> starting repeatrx serve");
    let mut process = server::start_repeatrx(&setup)?;
    server::wait_healthy(&mut process, &cert.cert_pem, Duration::from_secs(600)).await?;
    if store.engine() == Engine::Sqlite {
        eprintln!("==> waiting for continuous backup's first snapshot");
        wait_for_snapshot(&store, &mut process, Duration::from_secs(1800)).await?;
    }
    let sessions = plan.open_sessions(&store).await?;
    let watch = ProcessWatch::start(process.pid())?;
    let url = process.url.as_str();

    let ca = cert.cert_pem.clone();
    let load = Load { opts, base: url, server: &watch, ca: &ca };
    let wanted = |s: Scenario| opts.scenarios.contains(&s);
    // The closed-loop scenarios first, as the issue defines them, then the paced runs, so that
    // the closed-loop figures are measured as they were before there were paced runs.
    let mut paced_orders = None;
    let mut to_pace: Vec<(&'static str, f64, Vec<Job>)> = Vec::new();
    if wanted(Scenario::Orders) {
        eprintln!("==> scenario 1: order submission");
        let order_jobs = sessions.order_jobs(&plan.orders_alone, opts.clients);
        paced_orders = Some(load.closed(&mut report, "order submission", order_jobs).await?);
    }
    if wanted(Scenario::List) {
        eprintln!("==> scenario 2: repeat list (page and API)");
        let (rate, jobs) = load.closed(&mut report, "repeat list", sessions.repeat_list_jobs(opts.clients)).await?;
        to_pace.push(("repeat list", rate, jobs));
    }
    if wanted(Scenario::Queue) {
        eprintln!("==> scenario 3: pharmacy queue page");
        let queue_jobs = (0..opts.clients).map(|_| Job::Queue { cookie: sessions.pharmacist_cookie.clone() }).collect();
        let (rate, jobs) = load.closed(&mut report, "queue page", queue_jobs).await?;
        to_pace.push(("queue page", rate, jobs));
    }
    // Scenario 4 orders as the second half's patients.
    let mut second_half = sessions.order_jobs(&plan.orders_with_sign_ins, opts.clients);
    if wanted(Scenario::SignIn) {
        second_half = sign_ins_with_orders(&load, &mut report, second_half, &plan.sign_in_emails).await?;
    }
    if let Some((rate, first_half_left)) = paced_orders {
        // What scenario 1 left of the first half, then what scenario 4 left of the second.
        load.paced(&mut report, "order submission", rate, orders_left_then(first_half_left, second_half)).await?;
    }
    for (scenario, rate, jobs) in to_pace {
        load.paced(&mut report, scenario, rate, jobs).await?;
    }

    let (rss_max, hwm) = watch.memory_kib();
    drop(watch);
    report.server_rss_max_kib = rss_max;
    report.server_rss_peak_kib = hwm;
    report.server_log = process.log.clone();
    process.stop()?;
    Ok(report)
}

/// Where and how the scenarios' load goes.
struct Load<'a> {
    opts: &'a RunOptions,
    base: &'a str,
    server: &'a ProcessWatch,
    ca: &'a [u8],
}

impl Load<'_> {
    async fn drive(&self, jobs: Vec<Job>, offered: Offered) -> anyhow::Result<crate::load::Driven> {
        drive(jobs, self.base, self.server, self.ca, (self.opts.warmup, self.opts.window), offered).await
    }

    /// Drives a scenario closed loop (the measure); returns the rate it reached and the
    /// jobs as far as they got.
    async fn closed(
        &self,
        report: &mut Report,
        scenario: &'static str,
        jobs: Vec<Job>,
    ) -> anyhow::Result<(f64, Vec<Job>)> {
        let mut driven = self.drive(jobs, Offered::ClosedLoop).await?;
        let (rate, jobs) = (driven.rate(), std::mem::take(&mut driven.jobs));
        report.add_scenario(scenario, driven);
        Ok((rate, jobs))
    }

    /// Drives a scenario again at each `--paced` share of its closed-loop `rate`, with `jobs`
    /// going on from one pace to the next.
    async fn paced(
        &self,
        report: &mut Report,
        scenario: &'static str,
        rate: f64,
        mut jobs: Vec<Job>,
    ) -> anyhow::Result<()> {
        for &share in &self.opts.paced {
            let offered = share * rate;
            if offered <= 0.0 {
                eprintln!("==> {scenario}: nothing answered closed loop, so nothing to pace");
                break;
            }
            eprintln!("==> {scenario}, paced at {:.0}% of its rate: {offered:.0} requests/s", share * 100.0);
            let mut driven = self.drive(jobs, Offered::Paced(offered)).await?;
            jobs = std::mem::take(&mut driven.jobs);
            report.add_paced(scenario, share, offered, driven);
        }
        Ok(())
    }
}

/// Each client's orders left in `earlier`, then its orders in `later`.
fn orders_left_then(earlier: Vec<Job>, later: Vec<Job>) -> Vec<Job> {
    let mut earlier = earlier.into_iter();
    later
        .into_iter()
        .map(|later| match (earlier.next(), later) {
            (Some(Job::Order { orders: mut left, next }), Job::Order { orders, next: later_next }) => {
                left.drain(..next.min(left.len()));
                left.extend(orders.into_iter().skip(later_next));
                Job::Order { orders: left, next: 0 }
            }
            (_, later) => later,
        })
        .collect()
}

/// Scenario 4: sign-ins while orders are submitted (`orders`: the ordering clients' jobs).
/// Returns the ordering jobs as far as they got.
async fn sign_ins_with_orders(
    load: &Load<'_>,
    report: &mut Report,
    mut orders: Vec<Job>,
    emails: &[String],
) -> anyhow::Result<Vec<Job>> {
    eprintln!("==> scenario 4: sign-ins while orders are submitted");
    let signing_in = load.opts.sign_in_clients;
    for c in 0..signing_in {
        let mine: Vec<String> = emails.iter().skip(c).step_by(signing_in.max(1)).cloned().collect();
        orders.push(Job::SignIn { emails: mine, password: BENCH_PASSWORD.to_string(), next: 0 });
    }
    let mut driven = load.drive(orders, Offered::ClosedLoop).await?;
    let jobs = std::mem::take(&mut driven.jobs);
    report.add_scenario("sign-in with orders", driven);
    Ok(jobs.into_iter().filter(|j| matches!(j, Job::Order { .. })).collect())
}

/// Opens an existing data set.
pub async fn open(url: &str, keys: Arc<dyn KeySource>) -> anyhow::Result<SqlStore> {
    Ok(match url.strip_prefix("sqlite://") {
        Some(path) => SqlStore::open(Path::new(path), keys).await?,
        None => SqlStore::connect_postgres(url, keys).await?,
    })
}

/// A copy of the data set to run on: the SQLite file copied into the work folder, or a
/// PostgreSQL database made from the data set's as a template.
async fn fresh_copy(url: &str, work_dir: &Path) -> anyhow::Result<String> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        // Its own folder: production refuses a backup folder inside the database's.
        let db_dir = work_dir.join("db");
        std::fs::create_dir_all(&db_dir)?;
        let target = db_dir.join("run.db");
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", target.display()));
            let from = format!("{path}{suffix}");
            if Path::new(&from).exists() {
                std::fs::copy(&from, format!("{}{suffix}", target.display()))
                    .with_context(|| format!("copying {from}"))?;
            }
        }
        return Ok(format!("sqlite://{}", target.display()));
    }
    let (server, name) = url.rsplit_once('/').context("the PostgreSQL URL names no database")?;
    let name = name.split('?').next().unwrap_or(name);
    let copy = format!("{name}_run");
    let admin = format!("{server}/postgres");
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await.context("PostgreSQL")?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{copy}\" WITH (FORCE)")).execute(&mut conn).await?;
    sqlx::query(&format!("CREATE DATABASE \"{copy}\" TEMPLATE \"{name}\""))
        .execute(&mut conn)
        .await
        .context("copying the data set (no one may be connected to it)")?;
    Ok(format!("{server}/{copy}"))
}

async fn wait_for_snapshot(store: &SqlStore, process: &mut Process, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = process.child.try_wait()? {
            bail!("the server exited ({status}); its log: {}", process.log.display());
        }
        let state = repeatrx_store::backup::backup_state(store).await?;
        if state.snapshot_at.is_some() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("continuous backup took no snapshot within {within:?}")
}

/// Who the scenarios act as.
struct Plan {
    /// Patients (number, email) whose orders scenario 1 places, and scenario 4's.
    orders_alone: Vec<PlannedPatient>,
    orders_with_sign_ins: Vec<PlannedPatient>,
    sign_in_emails: Vec<String>,
    /// Patients whose repeat list scenario 2 reads.
    readers: Vec<Account>,
    pharmacist: repeatrx_domain::ids::UserId,
    /// Where the next run in place starts in each half (its [`RUN_IN_PLACE_KEY`]).
    ordered_upto: usize,
}

/// Which patients of each half of the ordering patients a run orders as: those after the
/// `ordered_before` that earlier runs in place used, as many as it wants. A set too small for the
/// rates a first run wants simply runs out of orders (the report says so); a later run that
/// cannot have all it wants is refused, since it would measure a set already partly used up.
fn ordering_window(half: usize, ordered_before: usize, wanted: usize) -> anyhow::Result<std::ops::Range<usize>> {
    let fresh = half.saturating_sub(ordered_before);
    if ordered_before > 0 && fresh < wanted {
        bail!(
            "earlier runs in place have used this data set's patients: {fresh} have lines left to order, and this \
             run wants {wanted}; generate it again"
        );
    }
    Ok(ordered_before..ordered_before + wanted.min(fresh))
}

/// A generated patient and their account.
#[derive(Clone, Copy)]
struct Account {
    patient: repeatrx_domain::ids::PatientId,
    user: repeatrx_domain::ids::UserId,
}

struct PlannedPatient {
    account: Account,
    /// Orderable lines, three to an order.
    orders: Vec<Vec<String>>,
}

impl Plan {
    async fn make(store: &SqlStore, shape: Shape, want_orders: usize, ordered_before: usize) -> anyhow::Result<Plan> {
        let orders_per_patient = shape.ordering_due_lines() / 3;
        let patients_wanted = want_orders.div_ceil(orders_per_patient);
        let candidates: Vec<usize> = (0..shape.patients).filter(|n| !shape.is_queue_patient(*n)).collect();
        let half = candidates.len() / 2;
        let window = ordering_window(half, ordered_before, patients_wanted)?;
        let take = window.len();
        let mut orders_alone = Vec::new();
        let mut orders_with_sign_ins = Vec::new();
        let first_half = candidates.iter().skip(window.start).take(take);
        let second_half = candidates.iter().skip(half + window.start).take(take);
        for (i, n) in first_half.chain(second_half).enumerate() {
            let planned = planned_patient(store, *n).await?;
            if i < take {
                orders_alone.push(planned);
            } else {
                orders_with_sign_ins.push(planned);
            }
        }
        // The queue patients' lists are real ones, some lines on their open orders.
        let mut readers = Vec::new();
        for n in (0..shape.patients).filter(|n| shape.is_queue_patient(*n)).take(64) {
            readers.push(account_of(store, n).await?);
        }
        let sign_in_emails = candidates.iter().rev().take(1000).map(|n| patient_email(*n)).collect();
        let pharmacist = store
            .user_by_email(&Email::parse(&format!("pharmacist0@{}", crate::dataset::BENCH_DOMAIN))?)
            .await?
            .context("pharmacy 0's pharmacist")?
            .id;
        Ok(Plan { orders_alone, orders_with_sign_ins, sign_in_emails, readers, pharmacist, ordered_upto: window.end })
    }

    /// Opens a full session for every planned patient (a bearer session, and for readers also a
    /// browser one) and for the pharmacist, straight in the store: signing in is scenario 4's
    /// subject, and tens of thousands of argon2 checks first would only make the run longer.
    async fn open_sessions(&self, store: &SqlStore) -> anyhow::Result<Sessions> {
        let mut load = store.bulk_load(2_000);
        let mut bearer = BTreeMap::new();
        let mut cookie = BTreeMap::new();
        let now = Timestamp::now();
        let mut open = async |user, kind| -> anyhow::Result<String> {
            let token = repeatrx_app::auth::random_token();
            load.session(&SessionRecord {
                token_hash: repeatrx_app::auth::token_hash(&token),
                user_id: user,
                kind,
                csrf_token: repeatrx_app::auth::random_token(),
                created_at: now,
                last_seen_at: now,
                expires_at: now + SignedDuration::from_hours(12),
                user_agent: "repeatrx-bench".into(),
                stage: SessionStage::Full,
                address: "127.0.0.1".into(),
            })
            .await?;
            Ok(token)
        };
        let orderers = self.orders_alone.iter().chain(&self.orders_with_sign_ins).map(|p| &p.account);
        for p in orderers.chain(&self.readers) {
            bearer.insert(p.patient, open(p.user, SessionKind::Api).await?);
        }
        for p in &self.readers {
            cookie.insert(p.patient, open(p.user, SessionKind::Browser).await?);
        }
        let pharmacist = open(self.pharmacist, SessionKind::Browser).await?;
        load.finish().await?;
        let readers = self.readers.clone();
        Ok(Sessions { bearer, cookie, readers, pharmacist_cookie: cookie_header(&pharmacist) })
    }
}

/// Made once per client, not per request: the load client's own work is on the measured path.
fn authorization_header(token: &str) -> String {
    format!("Bearer {token}")
}

fn cookie_header(token: &str) -> String {
    format!("{}={token}", repeatrx_web::session::SESSION_COOKIE)
}

async fn account_of(store: &SqlStore, n: usize) -> anyhow::Result<Account> {
    let user = store.user_by_email(&Email::parse(&patient_email(n))?).await?.context("a generated patient")?;
    if user.role != Role::Patient {
        bail!("{} is not a patient account", patient_email(n));
    }
    let patient = user.patient_id.context("a patient account without a patient")?;
    Ok(Account { patient, user: user.id })
}

/// Patient `n`'s account and the orders their due lines make.
async fn planned_patient(store: &SqlStore, n: usize) -> anyhow::Result<PlannedPatient> {
    let account = account_of(store, n).await?;
    let today = jiff::Zoned::now().date();
    let policy = repeatrx_domain::repeat::OrderingPolicy::default();
    let orderable: Vec<String> = store
        .repeat_items(account.patient)
        .await?
        .iter()
        .filter(|l| l.orderability(today, false, &policy).is_orderable())
        .map(|l| l.id.to_string())
        .collect();
    let orders = orderable.chunks_exact(3).map(<[String]>::to_vec).collect();
    Ok(PlannedPatient { account, orders })
}

struct Sessions {
    bearer: BTreeMap<repeatrx_domain::ids::PatientId, String>,
    cookie: BTreeMap<repeatrx_domain::ids::PatientId, String>,
    readers: Vec<Account>,
    pharmacist_cookie: String,
}

impl Sessions {
    /// The patients' orders dealt out to `clients` clients, a patient's orders to one client.
    fn order_jobs(&self, patients: &[PlannedPatient], clients: usize) -> Vec<Job> {
        let mut per_client: Vec<Vec<PlannedOrder>> = vec![Vec::new(); clients];
        for (i, p) in patients.iter().enumerate() {
            let Some(bearer) = self.bearer.get(&p.account.patient) else { continue };
            for items in &p.orders {
                per_client[i % clients].push(PlannedOrder {
                    patient: p.account.patient.to_string(),
                    authorization: authorization_header(bearer),
                    items: items.clone(),
                });
            }
        }
        per_client.into_iter().map(|orders| Job::Order { orders, next: 0 }).collect()
    }

    fn repeat_list_jobs(&self, clients: usize) -> Vec<Job> {
        (0..clients)
            .filter_map(|c| {
                let p = self.readers.get(c % self.readers.len().max(1))?;
                Some(Job::RepeatList {
                    patient: p.patient.to_string(),
                    cookie: cookie_header(self.cookie.get(&p.patient)?),
                    authorization: authorization_header(self.bearer.get(&p.patient)?),
                    page_next: c % 2 == 0,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{ordering_window, orders_left_then};
    use crate::load::{Job, PlannedOrder};

    fn orders(of: &str, n: usize) -> Vec<PlannedOrder> {
        (0..n)
            .map(|i| PlannedOrder { patient: format!("{of}{i}"), authorization: String::new(), items: Vec::new() })
            .collect()
    }

    fn patients(job: &Job) -> Vec<String> {
        match job {
            Job::Order { orders, next } => orders[*next..].iter().map(|o| o.patient.clone()).collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn paced_orders_take_what_the_closed_loop_left_first() {
        let earlier =
            vec![Job::Order { orders: orders("a", 3), next: 2 }, Job::Order { orders: orders("b", 2), next: 2 }];
        // Scenario 4 has placed c0 and d0 already.
        let later =
            vec![Job::Order { orders: orders("c", 3), next: 1 }, Job::Order { orders: orders("d", 2), next: 1 }];
        let joined = orders_left_then(earlier, later);
        assert_eq!(patients(&joined[0]), ["a2", "c1", "c2"]);
        assert_eq!(patients(&joined[1]), ["d1"], "a client that used up its first half goes on to its second");
    }

    #[test]
    fn runs_in_place_order_as_patients_no_earlier_run_used() {
        assert_eq!(ordering_window(1_000, 0, 300).unwrap(), 0..300);
        assert_eq!(ordering_window(1_000, 300, 300).unwrap(), 300..600);
        assert_eq!(ordering_window(1_000, 600, 400).unwrap(), 600..1_000, "up to the half's end");
    }

    #[test]
    fn a_first_run_takes_what_there_is_and_a_later_one_is_refused_short() {
        assert_eq!(ordering_window(500, 0, 10_000).unwrap(), 0..500);
        let refused = ordering_window(1_000, 600, 401).unwrap_err().to_string();
        assert!(refused.contains("400 have lines left") && refused.contains("generate it again"), "{refused}");
    }
}
