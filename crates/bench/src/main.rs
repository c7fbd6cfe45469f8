//! `repeatrx-bench`: RepeatRx's load benchmark (issue #7). `generate` builds a data set;
//! `run` measures the scenarios on a fresh copy of it against the real `repeatrx serve`, with the
//! machine's baselines in the same run, and writes the report. Loopback only, bounded in time.
#![forbid(unsafe_code)]

mod baseline;
mod connection;
mod dataset;
mod load;
mod report;
mod retention;
mod run;
mod server;
mod watch;

use anyhow::Context;
use clap::{Parser, Subcommand};
use repeatrx_store::crypto::{KeyFile, KeySource};
use repeatrx_store::sql::SqlStore;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "repeatrx-bench",
    about = "RepeatRx's load benchmark: generate a data set, then run the scenarios on it"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Builds a data set in a new database (its key file is created if missing), and leaves it as
    /// a service in its steady state would: with the retention job's first pass run.
    Generate {
        /// sqlite:///path/file.db or postgres://user@host/database (created if missing).
        #[arg(long)]
        database_url: String,
        #[arg(long)]
        key_file: PathBuf,
        /// tiny: 2 pharmacies, 1,200 patients (a check that the benchmark runs, not a measurement);
        /// small: 10 pharmacies, 10,000 patients, 100,000 finished orders; medium: 10 pharmacies,
        /// 100,000 patients, 1,000,000 finished orders; large: 100 pharmacies, 1,000,000 patients,
        /// 10,000,000 finished orders.
        #[arg(long, default_value = "small")]
        size: String,
        /// Writers at once (PostgreSQL takes several; SQLite writes one at a time anyway).
        #[arg(long, default_value_t = 2)]
        parallel: usize,
        /// SQLite only: the loading connection's page cache, in MiB (SQLite's own is 2 MiB).
        #[arg(long, default_value_t = 1024)]
        page_cache_mib: u64,
        /// Records written to a transaction: the more, the fewer times each index page is
        /// written to the log again (a batch touches pages all over the random-id indexes).
        #[arg(long, default_value_t = 20_000)]
        batch: usize,
    },
    /// Runs the baselines and the four scenarios on a fresh copy of a generated data set (or on
    /// the set itself, `--in-place`).
    Run {
        #[arg(long)]
        database_url: String,
        #[arg(long)]
        key_file: PathBuf,
        /// Where the copy, the server's configuration, its log and its backups go.
        #[arg(long, default_value = "target/bench-run")]
        work_dir: PathBuf,
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Clients signing in during scenario 4, besides the ordering ones.
        #[arg(long, default_value_t = 8)]
        sign_in_clients: usize,
        #[arg(long, default_value_t = 5)]
        warmup_seconds: u64,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Also write the report here (Markdown; JSON beside it).
        #[arg(long)]
        report: Option<PathBuf>,
        /// Only these scenarios (comma-separated), e.g. to profile one; all four by default.
        #[arg(long, value_enum, value_delimiter = ',', default_value = "orders,list,queue,sign-in")]
        scenarios: Vec<run::Scenario>,
        /// Run on the data set itself, not on a copy: for a set the disk cannot hold twice. The
        /// set then holds the run's orders; later runs order as patients this one did not use.
        #[arg(long)]
        in_place: bool,
        /// After each of scenarios 1-3, drive it again at these percentages of the rate it
        /// reached (comma-separated, 1 to 100), for its latency at a steady load; `none` for none.
        #[arg(long, default_value = "50", value_parser = parse_paced)]
        paced: Paced,
    },
    /// Runs one pass of the order-retention job on the data set itself (it deletes what the job
    /// deletes) and prints how many patients it looked at, how many orders it purged and how
    /// long it took.
    Retention {
        #[arg(long)]
        database_url: String,
        #[arg(long)]
        key_file: PathBuf,
    },
    /// A trivial handler behind RepeatRx's TLS and HTTPS server (the run starts it itself).
    #[command(hide = true)]
    TrivialServer {
        #[arg(long)]
        listen: std::net::SocketAddr,
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Generate { database_url, key_file, size, parallel, page_cache_mib, batch } => {
            let shape = dataset::Shape::named(&size)?;
            let keys: Arc<dyn KeySource> =
                Arc::new(KeyFile::open_or_create(&key_file).context("the key file (created if missing)")?);
            let store = open_new(&database_url, keys).await?;
            let started = std::time::Instant::now();
            let (first_pass, took) =
                dataset::generate(&store, shape, dataset::Loading { parallel, page_cache_mib, batch }).await?;
            println!(
                "generated {} patients and {} finished orders in {:.0} s into {}",
                shape.patients,
                shape.history,
                started.elapsed().as_secs_f64(),
                redact(&database_url)
            );
            println!("{}", retention::summary(&first_pass, took));
            Ok(())
        }
        Command::Run {
            database_url,
            key_file,
            work_dir,
            clients,
            sign_in_clients,
            warmup_seconds,
            seconds,
            report,
            scenarios,
            in_place,
            paced,
        } => {
            // The server's configuration names these files, and it reads paths from its own
            // folder: relative ones would point elsewhere.
            let key_file = std::path::absolute(&key_file).context("the key file's path")?;
            let work_dir = std::path::absolute(&work_dir).context("the work folder's path")?;
            let opts = run::RunOptions {
                database_url,
                key_file,
                work_dir,
                clients,
                warmup: Duration::from_secs(warmup_seconds),
                window: Duration::from_secs(seconds),
                sign_in_clients,
                scenarios,
                in_place,
                paced: paced.0,
            };
            let result = run::run(&opts).await?;
            let md = result.markdown();
            println!("{md}");
            if let Some(path) = report {
                std::fs::write(&path, &md).with_context(|| format!("writing {}", path.display()))?;
                std::fs::write(path.with_extension("json"), serde_json::to_string_pretty(&result.json())?)?;
            }
            Ok(())
        }
        Command::Retention { database_url, key_file } => {
            let keys: Arc<dyn KeySource> = Arc::new(KeyFile::load(&key_file).context("the data set's key file")?);
            let store = run::open(&database_url, keys).await?;
            let (pass, took) = retention::pass(store).await?;
            println!("{}", retention::summary(&pass, took));
            Ok(())
        }
        Command::TrivialServer { listen, cert, key } => {
            let (cert, key) = (std::fs::read(&cert)?, std::fs::read(&key)?);
            baseline::serve_trivial(listen, &cert, &key).await
        }
    }
}

/// `--paced`: shares of a scenario's closed-loop rate (0.5 for 50%).
#[derive(Clone, Debug)]
struct Paced(Vec<f64>);

fn parse_paced(given: &str) -> Result<Paced, String> {
    if given.trim() == "none" {
        return Ok(Paced(Vec::new()));
    }
    given
        .split(',')
        .map(|p| match p.trim().parse::<u8>() {
            Ok(percent @ 1..=100) => Ok(f64::from(percent) / 100.0),
            _ => Err(format!("{p:?} is not a percentage from 1 to 100 (e.g. --paced 25,50,75, or --paced none)")),
        })
        .collect::<Result<_, _>>()
        .map(Paced)
}

/// Opens the database a data set is generated into, creating it if needed.
async fn open_new(url: &str, keys: Arc<dyn KeySource>) -> anyhow::Result<SqlStore> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        return Ok(SqlStore::open(Path::new(path), keys).await?);
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        SqlStore::create_postgres_database(url).await?;
        return Ok(SqlStore::connect_postgres(url, keys).await?);
    }
    anyhow::bail!("the database URL must start with sqlite:// or postgres://")
}

/// The URL without a password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://…{}", &url[..scheme], &url[at..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_paced;

    #[test]
    fn paced_takes_percentages_or_none() {
        assert_eq!(parse_paced("50").unwrap().0, [0.5]);
        assert_eq!(parse_paced("25, 50,100").unwrap().0, [0.25, 0.5, 1.0]);
        assert!(parse_paced("none").unwrap().0.is_empty());
        for bad in ["0", "101", "half", "50,", ""] {
            let said = parse_paced(bad).unwrap_err();
            assert!(said.contains("is not a percentage from 1 to 100"), "{bad}: {said}");
        }
    }
}
