//! The report of a run: every measurement, each target of issue #7 with the figure it is judged
//! on, as Markdown for BENCHMARKS.md and as JSON to compare runs.
use crate::dataset::Shape;
use crate::load::{Driven, Measured};
use crate::run::RunOptions;
use repeatrx_store::sql::Engine;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::PathBuf;
use std::time::Duration;

pub struct Report {
    pub engine: Engine,
    pub shape: Shape,
    pub clients: usize,
    pub sign_in_clients: usize,
    pub window_s: f64,
    pub warmup_s: f64,
    pub cores: usize,
    /// Run on the data set itself rather than a copy (`--in-place`).
    pub in_place: bool,
    pub raw_commits: Option<Measured>,
    pub argon2_all_cores: f64,
    /// Threads the server gives to password hashing (its `hashing_threads`).
    pub hashing_threads: usize,
    pub trivial: Option<Measured>,
    /// The CPU time the trivial handler's server spent in its window.
    pub trivial_cpu: Option<Duration>,
    pub scenarios: Vec<(&'static str, BTreeMap<&'static str, Measured>, usize)>,
    /// The CPU time the server spent in each scenario's window.
    pub server_cpu: BTreeMap<&'static str, Duration>,
    /// The scenarios again at a steady offered load (`--paced`).
    pub paced: Vec<PacedRun>,
    pub server_rss_max_kib: u64,
    pub server_rss_peak_kib: u64,
    pub server_log: PathBuf,
}

/// A scenario driven at a steady rate: a share of the rate it reached closed loop.
pub struct PacedRun {
    pub scenario: &'static str,
    /// The share of the closed-loop rate offered (0.5: half).
    pub share: f64,
    /// Requests a second offered (due).
    pub offered: f64,
    pub kinds: BTreeMap<&'static str, Measured>,
    pub exhausted: usize,
    pub server_cpu: Option<Duration>,
}

impl PacedRun {
    fn cpu_ms_per_request(&self) -> Option<f64> {
        per_request_ms(self.server_cpu?, self.kinds.values().map(|m| m.ok).sum())
    }
}

/// The p99 latency issue #7 asks of a kind of request, in ms.
fn p99_target_ms(kind: &str) -> Option<f64> {
    match kind {
        "order submission" => Some(25.0),
        "repeat list page" | "repeat list API" => Some(10.0),
        "queue page" => Some(20.0),
        _ => None,
    }
}

fn per_request_ms(cpu: Duration, requests: u64) -> Option<f64> {
    (requests > 0).then(|| cpu.as_secs_f64() * 1000.0 / requests as f64)
}

fn ms_cell(ms: Option<f64>) -> String {
    ms.map_or_else(|| "–".to_string(), |ms| format!("{ms:.3}"))
}

/// One target: what it asks, the figure, and whether it is met.
pub struct Verdict {
    pub target: String,
    pub measured: String,
    pub met: bool,
}

/// A kind's closed-loop p99 against its target (kinds without one are never asked).
fn p99_verdict(kind: &str, m: &Measured) -> Verdict {
    let target = p99_target_ms(kind).unwrap_or(f64::INFINITY);
    Verdict {
        target: format!("{kind} p99 <= {target:.0} ms"),
        measured: format!("{:.1} ms", m.ms(0.99)),
        met: m.ms(0.99) <= target,
    }
}

impl Report {
    pub fn new(engine: Engine, shape: Shape, opts: &RunOptions) -> Report {
        Report {
            engine,
            shape,
            clients: opts.clients,
            sign_in_clients: opts.sign_in_clients,
            window_s: opts.window.as_secs_f64(),
            warmup_s: opts.warmup.as_secs_f64(),
            cores: 1,
            in_place: opts.in_place,
            raw_commits: None,
            argon2_all_cores: 0.0,
            hashing_threads: repeatrx_app::auth::hashing_threads(),
            trivial: None,
            trivial_cpu: None,
            scenarios: Vec::new(),
            server_cpu: BTreeMap::new(),
            paced: Vec::new(),
            server_rss_max_kib: 0,
            server_rss_peak_kib: 0,
            server_log: PathBuf::new(),
        }
    }

    pub fn add_scenario(&mut self, name: &'static str, driven: Driven) {
        if let Some(cpu) = driven.server_cpu {
            self.server_cpu.insert(name, cpu);
        }
        self.scenarios.push((name, driven.kinds, driven.exhausted));
    }

    pub fn add_paced(&mut self, scenario: &'static str, share: f64, offered: f64, driven: Driven) {
        self.paced.push(PacedRun {
            scenario,
            share,
            offered,
            kinds: driven.kinds,
            exhausted: driven.exhausted,
            server_cpu: driven.server_cpu,
        });
    }

    /// The server's CPU time per request answered in a scenario's window (all its kinds), in ms.
    fn cpu_ms_per_request(&self, scenario: &str) -> Option<f64> {
        let cpu = self.server_cpu.get(scenario)?;
        let (_, kinds, _) = self.scenarios.iter().find(|(s, _, _)| *s == scenario)?;
        per_request_ms(*cpu, kinds.values().map(|m| m.ok).sum())
    }

    fn trivial_cpu_ms_per_request(&self) -> Option<f64> {
        per_request_ms(self.trivial_cpu?, self.trivial.as_ref()?.ok)
    }

    /// What the run measured of `scenario`, by kind of request; `None` when it did not run it.
    fn scenario(&self, scenario: &str) -> Option<&BTreeMap<&'static str, Measured>> {
        self.scenarios.iter().find(|(s, _, _)| *s == scenario).map(|(_, m, _)| m)
    }

    fn kind(&self, scenario: &str, kind: &str) -> Option<&Measured> {
        self.scenario(scenario)?.get(kind)
    }

    fn scenario_rate(&self, scenario: &str) -> f64 {
        self.scenario(scenario).map(|m| m.values().map(Measured::per_second).sum()).unwrap_or(0.0)
    }

    pub fn engine_name(&self) -> &'static str {
        match self.engine {
            Engine::Sqlite => "SQLite",
            Engine::Postgres => "PostgreSQL",
        }
    }

    /// Each target of issue #7 that one run can judge (scale and restore compare runs).
    pub fn verdicts(&self) -> Vec<Verdict> {
        let mut out = Vec::new();
        let raw = self.raw_commits.as_ref().map(Measured::per_second).unwrap_or(0.0);
        let trivial = self.trivial.as_ref().map(Measured::per_second).unwrap_or(0.0);
        if let Some(orders) = self.kind("order submission", "order submission") {
            let share = orders.per_second() / raw.max(1e-9);
            out.push(Verdict {
                target: "order submission >= 50% of raw durable commits".into(),
                measured: format!("{:.0}/s of {:.0}/s = {:.0}%", orders.per_second(), raw, share * 100.0),
                met: share >= 0.5,
            });
            out.push(p99_verdict("order submission", orders));
        }
        if self.scenario("repeat list").is_some() {
            let list_rate = self.scenario_rate("repeat list");
            out.push(Verdict {
                target: "repeat list >= 25% of the trivial handler".into(),
                measured: format!(
                    "{:.0}/s of {:.0}/s = {:.0}%",
                    list_rate,
                    trivial,
                    list_rate / trivial.max(1e-9) * 100.0
                ),
                met: list_rate >= 0.25 * trivial,
            });
        }
        for kind in ["repeat list page", "repeat list API"] {
            if let Some(m) = self.kind("repeat list", kind) {
                out.push(p99_verdict(kind, m));
            }
        }
        if let Some(q) = self.kind("queue page", "queue page") {
            out.push(Verdict {
                target: "queue page >= 25% of the trivial handler".into(),
                measured: format!(
                    "{:.0}/s of {:.0}/s = {:.0}%",
                    q.per_second(),
                    trivial,
                    q.per_second() / trivial.max(1e-9) * 100.0
                ),
                met: q.per_second() >= 0.25 * trivial,
            });
            out.push(p99_verdict("queue page", q));
        }
        if let Some(s) = self.kind("sign-in with orders", "sign-in") {
            let per_core = self.argon2_all_cores / self.cores.max(1) as f64;
            let bound = per_core * self.hashing_threads as f64;
            out.push(Verdict {
                target: format!("sign-in >= 90% of argon2id on the {} hashing core(s)", self.hashing_threads),
                measured: format!(
                    "{:.1}/s of {:.1}/s = {:.0}%",
                    s.per_second(),
                    bound,
                    s.per_second() / bound.max(1e-9) * 100.0
                ),
                met: s.per_second() >= 0.9 * bound,
            });
        }
        if let (Some(alone), Some(with)) =
            (self.kind("order submission", "order submission"), self.kind("sign-in with orders", "order submission"))
        {
            out.push(Verdict {
                target: "order p99 with sign-ins <= 2x without".into(),
                measured: format!("{:.1} ms vs {:.1} ms", with.ms(0.99), alone.ms(0.99)),
                met: with.ms(0.99) <= 2.0 * alone.ms(0.99),
            });
        }
        out.push(Verdict {
            target: "server resident memory <= 256 MB".into(),
            measured: format!("{:.0} MB peak", self.server_rss_peak_kib as f64 / 1024.0),
            met: self.server_rss_peak_kib <= 256 * 1024,
        });
        out
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let signing_in = if self.scenario("sign-in with orders").is_some() {
            format!(" ({} signing in during scenario 4)", self.sign_in_clients)
        } else {
            String::new()
        };
        let _ = writeln!(
            md,
            "**{}**, {} pharmacies, {} patients, {} finished orders; {} clients{signing_in}, \
             {:.0} s measured after {:.0} s of warm-up; {} cores{}.\n",
            self.engine_name(),
            self.shape.pharmacies,
            self.shape.patients,
            self.shape.history,
            self.clients,
            self.window_s,
            self.warmup_s,
            self.cores,
            if self.in_place { "; run on the data set itself, not a copy" } else { "" }
        );
        let _ = writeln!(
            md,
            "| measured | requests/s | p50 ms | p99 ms | max ms | failed | reconnects | server CPU ms a request |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
        let mut row = |name: &str, m: &Measured, cpu_ms: Option<f64>| {
            let _ = writeln!(
                md,
                "| {name} | {:.0} | {:.1} | {:.1} | {:.1} | {} | {} | {} |",
                m.per_second(),
                m.ms(0.5),
                m.ms(0.99),
                m.ms(1.0),
                m.failed,
                m.reconnects,
                ms_cell(cpu_ms)
            );
        };
        if let Some(m) = &self.raw_commits {
            row("baseline: raw durable commits", m, None);
        }
        if let Some(m) = &self.trivial {
            row("baseline: trivial handler", m, self.trivial_cpu_ms_per_request());
        }
        for (scenario, kinds, _) in &self.scenarios {
            for (kind, m) in kinds {
                row(&format!("{scenario}: {kind}"), m, self.cpu_ms_per_request(scenario));
            }
        }
        let _ = writeln!(
            md,
            "\nargon2id: {:.1} hashes/s on {} cores ({:.1} per core); the server hashes on {} thread(s). \
             Server memory: {:.0} MB peak resident. Server CPU a request: the server process's user and \
             system time over the window (all its threads) over the requests it answered in it.\n",
            self.argon2_all_cores,
            self.cores,
            self.argon2_all_cores / self.cores.max(1) as f64,
            self.hashing_threads,
            self.server_rss_peak_kib as f64 / 1024.0
        );
        let _ = writeln!(md, "| target | measured | met |");
        let _ = writeln!(md, "|---|---|---|");
        for v in self.verdicts() {
            let _ = writeln!(md, "| {} | {} | {} |", v.target, v.measured, if v.met { "yes" } else { "**no**" });
        }
        if !self.paced.is_empty() {
            let _ = writeln!(
                md,
                "\nPaced: each scenario again with requests falling due at a steady rate, a share of the rate \
                 it reached above, sent by whichever of the {} clients is free; latency counts from when a \
                 request fell due (the issue's p99 targets, met at this load or not).\n",
                self.clients
            );
            let _ = writeln!(
                md,
                "| paced | offered/s (all its kinds) | answered/s | p50 ms | p99 ms | max ms | failed | p99 target | server CPU ms a request |"
            );
            let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
            for run in &self.paced {
                for (kind, m) in &run.kinds {
                    let target = p99_target_ms(kind).map_or_else(
                        || "–".to_string(),
                        |t| format!("{t:.0} ms: {}", if p99_verdict(kind, m).met { "met" } else { "**not met**" }),
                    );
                    let _ = writeln!(
                        md,
                        "| {}: {kind} at {:.0}% | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {} | {target} | {} |",
                        run.scenario,
                        run.share * 100.0,
                        run.offered,
                        m.per_second(),
                        m.ms(0.5),
                        m.ms(0.99),
                        m.ms(1.0),
                        m.failed,
                        ms_cell(run.cpu_ms_per_request())
                    );
                }
            }
        }
        let closed = self.scenarios.iter().map(|(s, k, e)| (s.to_string(), k, *e));
        let paced = self
            .paced
            .iter()
            .map(|p| (format!("{} paced at {:.0}%", p.scenario, p.share * 100.0), &p.kinds, p.exhausted));
        for (scenario, kinds, exhausted) in closed.chain(paced) {
            if exhausted > 0 {
                let _ = writeln!(
                    md,
                    "\n{scenario}: {exhausted} clients ran out of patients to order for before the window ended."
                );
            }
            for (kind, m) in kinds {
                for f in &m.first_failures {
                    let _ = writeln!(md, "\n{scenario} / {kind} failure: {f}");
                }
            }
        }
        md
    }

    pub fn json(&self) -> Value {
        let m = |m: &Measured| {
            json!({"per_second": m.per_second(), "p50_ms": m.ms(0.5), "p99_ms": m.ms(0.99), "max_ms": m.ms(1.0),
                   "ok": m.ok, "failed": m.failed, "reconnects": m.reconnects, "window_s": m.window.as_secs_f64()})
        };
        json!({
            "engine": self.engine_name(),
            "pharmacies": self.shape.pharmacies,
            "patients": self.shape.patients,
            "history": self.shape.history,
            "clients": self.clients,
            "cores": self.cores,
            "in_place": self.in_place,
            "raw_commits": self.raw_commits.as_ref().map(m),
            "trivial": self.trivial.as_ref().map(m),
            "trivial_server_cpu_ms_per_request": self.trivial_cpu_ms_per_request(),
            "argon2_all_cores": self.argon2_all_cores,
            "hashing_threads": self.hashing_threads,
            "scenarios": self.scenarios.iter().map(|(s, kinds, exhausted)| json!({
                "scenario": s,
                "exhausted_clients": exhausted,
                "server_cpu_ms_per_request": self.cpu_ms_per_request(s),
                "kinds": kinds.iter().map(|(k, v)| (k.to_string(), m(v))).collect::<serde_json::Map<_, _>>(),
            })).collect::<Vec<_>>(),
            "paced": self.paced.iter().map(|p| json!({
                "scenario": p.scenario,
                "share": p.share,
                "offered_per_second": p.offered,
                "exhausted_clients": p.exhausted,
                "server_cpu_ms_per_request": p.cpu_ms_per_request(),
                "kinds": p.kinds.iter().map(|(k, v)| (k.to_string(), m(v))).collect::<serde_json::Map<_, _>>(),
            })).collect::<Vec<_>>(),
            "server_rss_peak_kib": self.server_rss_peak_kib,
            "verdicts": self.verdicts().iter().map(|v| json!({"target": v.target, "measured": v.measured, "met": v.met})).collect::<Vec<_>>(),
        })
    }
}
