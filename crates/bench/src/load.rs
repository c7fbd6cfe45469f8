//! The load driver: `clients` tasks, each with its own keep-alive HTTPS connection
//! ([`Connection`]), repeat their job through a warm-up, then for the measured window; every
//! request's latency goes into an HDR histogram of its kind. The load is offered either closed
//! loop (each client sends again as soon as it has its answer: the scenarios, whose rate
//! is the server's capacity) or paced (requests due at a fixed rate: latency at a given load).
//!
//! Written here rather than with a load-testing framework (goose, oha): the benchmark compares
//! each scenario with baselines measured in the same run and mixes scenarios (sign-ins while
//! orders go on) with per-kind latencies, and each client needs its own patients and tokens;
//! that is a loop around hyper and hdrhistogram, which do the real work.
use crate::connection::Connection;
use crate::watch::ProcessWatch;
use hdrhistogram::Histogram;
use hyper::Method;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What one client does, request after request.
pub enum Job {
    /// Places orders of three items, one patient after another.
    Order { orders: Vec<PlannedOrder>, next: usize },
    /// A patient's repeat list: the page, then the API call, in turn.
    RepeatList { patient: String, cookie: String, authorization: String, page_next: bool },
    /// The first page of the pharmacy queue.
    Queue { cookie: String },
    /// Signs in (password only: patients), one account after another.
    SignIn { emails: Vec<String>, password: String, next: usize },
    /// The trivial handler's one route.
    Trivial,
}

/// An order one patient can place now: three repeat lines due, and the `Authorization` header of its API session.
#[derive(Clone)]
pub struct PlannedOrder {
    pub patient: String,
    pub authorization: String,
    pub items: Vec<String>,
}

/// How [`drive`] offers its load.
#[derive(Clone, Copy, Debug)]
pub enum Offered {
    /// Each client sends its next request as soon as its last is answered, so the rate is what
    /// the server can take and the latency follows from it (with `c` clients, mean latency is
    /// `c` / rate: Little's law).
    ClosedLoop,
    /// Requests fall due at this many a second over all clients, each sent by whichever client is
    /// free, and its latency counts from when it fell due, not from when a client got to it: a
    /// server that stalls is charged for every request that waited, as users arriving at a steady
    /// rate would see it (no coordinated omission, as in wrk2). Tokio's timer wakes a client up to a
    /// millisecond after a request falls due; that wait counts too.
    Paced(f64),
}

impl Offered {
    /// When request number `slot` of a paced load falls due; `None` past any window (or at a
    /// rate of nothing).
    fn due(per_second: f64, start: Instant, slot: u64) -> Option<Instant> {
        Duration::try_from_secs_f64(slot as f64 / per_second).ok().and_then(|after| start.checked_add(after))
    }
}

/// A request's result: its kind, and the failure if it failed.
type Done = (&'static str, Result<(), String>);

impl Job {
    /// Sends the next request; `None` when the job has nothing left to do.
    async fn next(&mut self, http: &mut Connection) -> Option<Done> {
        match self {
            Job::Order { orders, next } => {
                let order = orders.get(*next)?;
                *next += 1;
                let body = json!({"items": order.items, "fulfilment": "collection"}).to_string().into_bytes();
                let sent = http
                    .send(
                        Method::POST,
                        &format!("/api/v1/patients/{}/orders", order.patient),
                        &[("authorization", &order.authorization)],
                        Some(body),
                    )
                    .await;
                Some(("order submission", expect(sent, hyper::StatusCode::CREATED)))
            }
            Job::RepeatList { patient, cookie, authorization, page_next } => {
                *page_next = !*page_next;
                if *page_next {
                    let sent = http.send(Method::GET, "/patient", &[("cookie", cookie)], None).await;
                    Some(("repeat list page", expect(sent, hyper::StatusCode::OK)))
                } else {
                    let path = format!("/api/v1/patients/{patient}/repeat-items");
                    let sent = http.send(Method::GET, &path, &[("authorization", authorization)], None).await;
                    Some(("repeat list API", expect(sent, hyper::StatusCode::OK)))
                }
            }
            Job::Queue { cookie } => {
                let sent = http.send(Method::GET, "/pharmacy", &[("cookie", cookie)], None).await;
                Some(("queue page", expect(sent, hyper::StatusCode::OK)))
            }
            Job::SignIn { emails, password, next } => {
                let email = &emails[*next % emails.len()];
                *next += 1;
                let body = json!({"email": email, "password": password}).to_string().into_bytes();
                let sent = http.send(Method::POST, "/api/v1/sessions", &[], Some(body)).await;
                Some(("sign-in", expect(sent, hyper::StatusCode::CREATED)))
            }
            Job::Trivial => {
                let sent = http.send(Method::GET, "/", &[], None).await;
                Some(("trivial handler", expect(sent, hyper::StatusCode::OK)))
            }
        }
    }
}

/// The whole body has been read either way: a page is not served until it is.
fn expect(sent: anyhow::Result<(hyper::StatusCode, bytes::Bytes)>, status: hyper::StatusCode) -> Result<(), String> {
    let (got, body) = sent.map_err(|e| format!("request failed: {e:#}"))?;
    if got != status {
        let text = String::from_utf8_lossy(&body);
        return Err(format!("{got}: {}", text.chars().take(200).collect::<String>()));
    }
    Ok(())
}

/// The results of one kind of request over the measured window.
#[derive(Clone)]
pub struct Measured {
    pub ok: u64,
    pub failed: u64,
    /// Connections opened again because the server had closed the one in use.
    pub reconnects: u64,
    pub first_failures: Vec<String>,
    /// Microseconds, successful requests only.
    pub latency: Histogram<u64>,
    pub window: Duration,
}

impl Measured {
    fn new() -> Measured {
        Measured {
            ok: 0,
            failed: 0,
            reconnects: 0,
            first_failures: Vec::new(),
            latency: Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds"),
            window: Duration::ZERO,
        }
    }

    /// Measurements of work timed elsewhere (the raw commit loop).
    pub fn of_latencies(latencies: &[Duration], window: Duration) -> Measured {
        let mut m = Measured::new();
        for l in latencies {
            m.ok += 1;
            m.latency.saturating_record(u64::try_from(l.as_micros()).unwrap_or(u64::MAX).max(1));
        }
        m.window = window;
        m
    }

    pub fn per_second(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64().max(1e-9)
    }

    pub fn ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }

    fn merge(&mut self, other: &Measured) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.reconnects += other.reconnects;
        for f in &other.first_failures {
            if self.first_failures.len() < 5 {
                self.first_failures.push(f.clone());
            }
        }
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
    }
}

/// A TLS client of its own for one virtual user: one keep-alive connection, the benchmark's
/// certificate trusted (and nothing else).
pub fn client(ca_pem: &[u8]) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem)?)
        .tls_built_in_root_certs(false)
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(60))
        .build()?)
}

/// Runs every job on its own connection to `base` for `warmup` (not measured), then for
/// `window`, offering the load as `offered` says, and returns the measurements by kind and the
/// jobs (an order job then goes on where it stopped). A job that runs out of work stops early;
/// the window is then the time until the last job stopped, and `exhausted` says how many did.
///
/// Closed loop, a request counts when it was sent and answered inside the window; paced, when it
/// fell due inside it, however late its answer came.
pub async fn drive(
    jobs: Vec<Job>,
    base: &str,
    server: &ProcessWatch,
    ca_pem: &[u8],
    (warmup, window): (Duration, Duration),
    offered: Offered,
) -> anyhow::Result<Driven> {
    let start = Instant::now() + Duration::from_millis(200);
    let measure_from = start + warmup;
    let end = measure_from + window;
    let tls = crate::connection::tls_config(ca_pem)?;
    let slots = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let paced = matches!(offered, Offered::Paced(_));
    let mut tasks = tokio::task::JoinSet::new();
    for mut job in jobs {
        let mut http = Connection::new(base, tls.clone())?;
        let slots = slots.clone();
        tasks.spawn(async move {
            tokio::time::sleep_until(start.into()).await;
            let mut mine: BTreeMap<&'static str, Measured> = BTreeMap::new();
            let mut stopped = None;
            loop {
                let due = match offered {
                    Offered::ClosedLoop => Some(Instant::now()),
                    Offered::Paced(per_second) => {
                        Offered::due(per_second, start, slots.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                    }
                };
                let Some(due) = due.filter(|due| *due < end) else { break };
                if paced {
                    tokio::time::sleep_until(due.into()).await;
                }
                let opened = http.opened();
                let Some((kind, result)) = job.next(&mut http).await else {
                    stopped = Some(Instant::now());
                    break;
                };
                let done = Instant::now();
                let answered_in_time = paced || done <= end;
                if due < measure_from || !answered_in_time {
                    continue;
                }
                let m = mine.entry(kind).or_insert_with(Measured::new);
                if opened > 0 && http.opened() > opened {
                    m.reconnects += 1;
                }
                match result {
                    Ok(()) => {
                        m.ok += 1;
                        let us = u64::try_from(done.duration_since(due).as_micros()).unwrap_or(u64::MAX);
                        m.latency.saturating_record(us.max(1));
                    }
                    Err(e) => {
                        m.failed += 1;
                        if m.first_failures.len() < 5 {
                            m.first_failures.push(e);
                        }
                    }
                }
            }
            (mine, stopped, job)
        });
    }
    let jobs = tasks.len();
    let mut all: BTreeMap<&'static str, Measured> = BTreeMap::new();
    let mut exhausted = 0;
    let mut last_stop = measure_from;
    let mut returned = Vec::with_capacity(jobs);
    while let Some(joined) = tasks.join_next().await {
        let (mine, stopped, job) = joined?;
        returned.push(job);
        if let Some(at) = stopped {
            exhausted += 1;
            last_stop = last_stop.max(at);
        }
        for (kind, m) in mine {
            all.entry(kind).or_insert_with(Measured::new).merge(&m);
        }
    }
    // Only when every client ran out of work did the load end before the window did.
    let measured_until = if exhausted == jobs { last_stop.min(end) } else { end };
    let window = measured_until.saturating_duration_since(measure_from);
    for m in all.values_mut() {
        m.window = window;
    }
    let server_cpu = server.cpu_between(measure_from, measured_until);
    Ok(Driven { kinds: all, exhausted, server_cpu, jobs: returned })
}

/// What [`drive`] measured.
pub struct Driven {
    pub kinds: BTreeMap<&'static str, Measured>,
    /// Clients that ran out of work before the window ended.
    pub exhausted: usize,
    /// The CPU time the server spent over the measured window.
    pub server_cpu: Option<Duration>,
    /// The jobs, as far as they got.
    pub jobs: Vec<Job>,
}

impl Driven {
    /// Requests a second over the window, all kinds together.
    pub fn rate(&self) -> f64 {
        self.kinds.values().map(Measured::per_second).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::{drive, Job, Measured, Offered};
    use crate::watch::ProcessWatch;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// An HTTPS server on 127.0.0.1 whose one route (the trivial job's) answers the first request
    /// that comes 0.6 s or more after it started only after `stall`: inside the measured window of
    /// [`one_client`], begun at once.
    async fn stalling_server(dir: &std::path::Path, stall: Duration) -> (repeatrx_web::server::Running, Vec<u8>) {
        let cert = crate::server::Certificate::make(dir).unwrap();
        let key = std::fs::read(&cert.key_path).unwrap();
        let stall_at = Instant::now() + Duration::from_millis(600);
        let stalled = Arc::new(AtomicBool::new(false));
        let route = axum::routing::get(move || {
            let stalled = stalled.clone();
            async move {
                if Instant::now() >= stall_at && !stalled.swap(true, Ordering::Relaxed) {
                    tokio::time::sleep(stall).await;
                }
                "ok"
            }
        });
        let tls = repeatrx_web::tls::server_config(&cert.cert_pem, &key).unwrap();
        let running = repeatrx_web::server::start(
            axum::Router::new().route("/", route),
            tls,
            "127.0.0.1:0".parse().unwrap(),
            None,
        )
        .unwrap();
        (running, cert.cert_pem)
    }

    /// One client's trivial requests for 0.2 s of warm-up and a 1 s window (so from 0.4 s to 1.4 s).
    async fn one_client(server: &repeatrx_web::server::Running, ca: &[u8], offered: Offered) -> Measured {
        let base = format!("https://{}", server.https_addr);
        let watch = ProcessWatch::start(std::process::id()).unwrap();
        let times = (Duration::from_millis(200), Duration::from_secs(1));
        let mut driven = drive(vec![Job::Trivial], &base, &watch, ca, times, offered).await.unwrap();
        assert_eq!(driven.jobs.len(), 1, "the job comes back");
        driven.kinds.remove("trivial handler").expect("trivial requests answered")
    }

    fn waited_100_ms_or_more(m: &Measured) -> u64 {
        m.latency.count_between(100_000, u64::MAX)
    }

    #[tokio::test]
    async fn a_paced_load_sends_every_request_due_in_its_window() {
        let dir = tempfile::tempdir().unwrap();
        let (server, ca) = stalling_server(dir.path(), Duration::ZERO).await;
        let m = one_client(&server, &ca, Offered::Paced(100.0)).await;
        assert!((99..=101).contains(&m.ok), "100 requests fall due in 1 s at 100/s, answered: {}", m.ok);
        assert_eq!(m.failed, 0);
    }

    #[tokio::test]
    async fn a_paced_load_charges_a_stall_to_every_request_that_waited_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let (server, ca) = stalling_server(dir.path(), Duration::from_millis(300)).await;
        let paced = one_client(&server, &ca, Offered::Paced(100.0)).await;
        // The 20 due in the stall's first 200 ms waited at least 100 ms for the one client.
        assert!(waited_100_ms_or_more(&paced) >= 15, "paced: {} waited", waited_100_ms_or_more(&paced));

        // Closed loop, the client waits out the stall without sending, so one request shows it.
        let (server, ca) = stalling_server(dir.path(), Duration::from_millis(300)).await;
        let closed = one_client(&server, &ca, Offered::ClosedLoop).await;
        assert_eq!(waited_100_ms_or_more(&closed), 1, "closed loop: the stalled request alone");
    }

    #[test]
    fn nothing_falls_due_at_a_rate_of_nothing() {
        let start = std::time::Instant::now();
        assert_eq!(Offered::due(50.0, start, 25), Some(start + Duration::from_millis(500)));
        assert_eq!(Offered::due(0.0, start, 1), None);
        assert_eq!(Offered::due(-1.0, start, 1), None);
    }
}
