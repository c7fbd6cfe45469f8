//! The load driver: `clients` tasks, each with its own keep-alive HTTPS connection
//! ([`Connection`]), repeat their job back to back (closed loop) through a warm-up, then for the
//! measured window; every request's latency goes into an HDR histogram of its kind.
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
/// `window`, and returns the measurements by kind. A job that runs out of work stops early; the window is then the time
/// until the last job stopped, and `exhausted` says how many did.
pub async fn drive(
    jobs: Vec<Job>,
    base: &str,
    server: &ProcessWatch,
    ca_pem: &[u8],
    warmup: Duration,
    window: Duration,
) -> anyhow::Result<Driven> {
    let start = Instant::now() + Duration::from_millis(200);
    let measure_from = start + warmup;
    let end = measure_from + window;
    let tls = crate::connection::tls_config(ca_pem)?;
    let mut tasks = tokio::task::JoinSet::new();
    for mut job in jobs {
        let mut http = Connection::new(base, tls.clone())?;
        tasks.spawn(async move {
            tokio::time::sleep_until(start.into()).await;
            let mut mine: BTreeMap<&'static str, Measured> = BTreeMap::new();
            let mut stopped = None;
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let opened = http.opened();
                let Some((kind, result)) = job.next(&mut http).await else {
                    stopped = Some(Instant::now());
                    break;
                };
                let done = Instant::now();
                if now < measure_from || done > end {
                    continue;
                }
                let m = mine.entry(kind).or_insert_with(Measured::new);
                if opened > 0 && http.opened() > opened {
                    m.reconnects += 1;
                }
                match result {
                    Ok(()) => {
                        m.ok += 1;
                        let us = u64::try_from(done.duration_since(now).as_micros()).unwrap_or(u64::MAX);
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
            (mine, stopped)
        });
    }
    let jobs = tasks.len();
    let mut all: BTreeMap<&'static str, Measured> = BTreeMap::new();
    let mut exhausted = 0;
    let mut last_stop = measure_from;
    while let Some(joined) = tasks.join_next().await {
        let (mine, stopped) = joined?;
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
    Ok(Driven { kinds: all, exhausted, server_cpu })
}

/// What [`drive`] measured.
pub struct Driven {
    pub kinds: BTreeMap<&'static str, Measured>,
    /// Clients that ran out of work before the window ended.
    pub exhausted: usize,
    /// The CPU time the server spent over the measured window.
    pub server_cpu: Option<Duration>,
}
