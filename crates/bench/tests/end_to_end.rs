//! The benchmark from end to end, as BENCHMARKS.md tells people to run it: `generate` a data set,
//! then `run` every baseline and scenario against the real `repeatrx serve` built beside this
//! binary, on both engines. The set is the tiny one and the windows a second long: this proves
//! that the benchmark works (every scenario's requests succeed, nothing is left unmeasured), not
//! how fast anything is.
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn bench_output(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_repeatrx-bench"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("repeatrx-bench starts")
}

/// Runs `repeatrx-bench` and returns what it printed, failing the test if it failed.
fn bench(dir: &Path, args: &[&str]) -> String {
    let out = bench_output(dir, args);
    assert!(
        out.status.success(),
        "repeatrx-bench {} failed ({}):\n{}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Generates the tiny set at `url`, runs everything on it from `dir` (the key file, work folder
/// and report given relative to it, as a person at a prompt would), and checks the JSON report.
fn generate_and_run(url: &str, dir: &Path, engine: &str) {
    let (keys, work) = ("bench.keys", "run");
    let generated = bench(dir, &["generate", "--database-url", url, "--key-file", keys, "--size", "tiny"]);
    // Writing the orders marked every patient due for the retention job; the generator runs
    // the job's first pass, so no backlog of it runs beside the scenarios.
    assert!(generated.contains("retention pass: looked at 1200 patients"), "{generated}");
    bench(
        dir,
        &[
            "run",
            "--database-url",
            url,
            "--key-file",
            keys,
            "--work-dir",
            work,
            "--clients",
            "4",
            "--sign-in-clients",
            "2",
            "--warmup-seconds",
            "1",
            "--seconds",
            "2",
            "--report",
            "report.md",
        ],
    );
    let report = dir.join("report.md");

    let markdown = std::fs::read_to_string(&report).expect("the Markdown report");
    assert!(
        markdown.contains("1200 patients")
            && markdown.contains("| queue page")
            && markdown.contains("signing in during scenario 4"),
        "the Markdown report:\n{markdown}"
    );
    let json: Value = serde_json::from_str(&std::fs::read_to_string(report.with_extension("json")).unwrap()).unwrap();
    assert_eq!(json["engine"], engine);
    assert_eq!(json["patients"], 1_200);
    for baseline in ["raw_commits", "trivial"] {
        assert!(json[baseline]["ok"].as_u64().unwrap() > 0, "{baseline} measured nothing: {json:#}");
        assert_eq!(json[baseline]["failed"], 0, "{baseline}: {json:#}");
    }
    assert!(json["argon2_all_cores"].as_f64().unwrap() > 0.0, "{json:#}");
    let positive = |v: &Value| v.as_f64().is_some_and(|ms| ms > 0.0);
    assert!(positive(&json["trivial_server_cpu_ms_per_request"]), "the trivial server's CPU was not read: {json:#}");
    assert!(json["server_rss_peak_kib"].as_u64().unwrap() > 0, "the server's memory was not read: {json:#}");

    let scenarios: Vec<&str> =
        json["scenarios"].as_array().unwrap().iter().map(|s| s["scenario"].as_str().unwrap()).collect();
    assert_eq!(scenarios, ["order submission", "repeat list", "queue page", "sign-in with orders"]);
    for scenario in json["scenarios"].as_array().unwrap() {
        let kinds = scenario["kinds"].as_object().unwrap();
        assert!(!kinds.is_empty(), "{scenario:#}");
        assert!(positive(&scenario["server_cpu_ms_per_request"]), "the server's CPU was not read: {scenario:#}");
        for (kind, m) in kinds {
            assert!(
                m["ok"].as_u64().unwrap() > 0,
                "{} / {kind}: no request succeeded: {scenario:#}",
                scenario["scenario"]
            );
            assert_eq!(m["failed"], 0, "{} / {kind}: requests failed: {scenario:#}", scenario["scenario"]);
            assert_eq!(
                m["reconnects"], 0,
                "{} / {kind}: the server closed keep-alive connections",
                scenario["scenario"]
            );
        }
    }
    assert!(!json["verdicts"].as_array().unwrap().is_empty(), "the report judges the targets: {json:#}");

    // Scenarios 1-3 again at half the rate each reached (the default `--paced 50`).
    let paced: Vec<&str> = json["paced"].as_array().unwrap().iter().map(|s| s["scenario"].as_str().unwrap()).collect();
    assert_eq!(paced, ["order submission", "repeat list", "queue page"], "{json:#}");
    for run in json["paced"].as_array().unwrap() {
        assert_eq!(run["share"], 0.5, "{run:#}");
        assert!(positive(&run["offered_per_second"]), "{run:#}");
        for (kind, m) in run["kinds"].as_object().unwrap() {
            assert!(m["ok"].as_u64().unwrap() > 0, "paced {} / {kind}: no request succeeded: {run:#}", run["scenario"]);
            assert_eq!(m["failed"], 0, "paced {} / {kind}: requests failed: {run:#}", run["scenario"]);
        }
    }
    assert!(markdown.contains("| queue page: queue page at 50% |"), "the Markdown report:\n{markdown}");

    // The retention job's pass on the set (the run wrote to a copy): after the generator's pass,
    // nobody is due (nothing was written, no cycle ended in between).
    let again = bench(dir, &["retention", "--database-url", url, "--key-file", keys]);
    assert!(again.contains("retention pass: looked at 0 patients, purged 0 orders"), "{again}");
}

#[test]
fn the_benchmark_generates_and_runs_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    generate_and_run("sqlite://tiny.db", dir.path(), "SQLite");
}

#[test]
fn the_benchmark_generates_and_runs_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = runtime.block_on(repeatrx_store::testdb::fresh_postgres_database()).unwrap();
    generate_and_run(&url, dir.path(), "PostgreSQL");

    // A set too big to copy is run on in place; later runs order as patients who have not yet, and
    // are refused once too few are left. How many runs the tiny set takes depends on the machine's
    // rate (a run wants orders for its windows at the raw commit rate it measures): one on a quick
    // machine, more on a loaded one.
    let in_place = |extra: &[&str]| {
        let mut args = vec!["run", "--database-url", &url, "--key-file", "bench.keys", "--work-dir", "run"];
        args.extend([
            "--clients",
            "4",
            "--warmup-seconds",
            "1",
            "--seconds",
            "1",
            "--scenarios",
            "orders",
            "--paced",
            "none",
        ]);
        args.extend(extra);
        bench_output(dir.path(), &args)
    };
    let first = in_place(&["--in-place", "--report", "in-place.md"]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("in-place.json")).unwrap()).unwrap();
    assert_eq!(json["in_place"], true, "{json:#}");
    assert_eq!(json["paced"].as_array().unwrap().len(), 0, "--paced none: {json:#}");
    let markdown = std::fs::read_to_string(dir.path().join("in-place.md")).unwrap();
    assert!(!markdown.contains("signing in"), "no sign-in scenario was run:\n{markdown}");
    let orders = &json["scenarios"][0]["kinds"]["order submission"];
    assert!(orders["ok"].as_u64().unwrap() > 0 && orders["failed"] == 0, "{json:#}");
    // Each later run orders lines nobody has ordered (a line ordered twice would fail), until one
    // is refused.
    let mut runs = 1;
    let refused = loop {
        let again = in_place(&["--in-place", "--report", "again.md"]);
        let said = String::from_utf8_lossy(&again.stderr).into_owned();
        if !again.status.success() {
            break said;
        }
        let json: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("again.json")).unwrap()).unwrap();
        let orders = &json["scenarios"][0]["kinds"]["order submission"];
        assert!(orders["ok"].as_u64().unwrap() > 0 && orders["failed"] == 0, "run {runs} in place: {json:#}");
        runs += 1;
        assert!(runs < 20, "{runs} runs in place, and the tiny set not used up");
    };
    assert!(refused.contains("earlier runs in place have used this data set's patients"), "run {runs}: {refused}");
}
