//! What a server process spends while the load runs, read from `/proc` by one sampling thread:
//! its CPU time (user and system, all threads) and its resident memory.
//!
//! CPU time per request varies much less between runs than the rate does (the rate also depends
//! on the share of the two cores the load client gets), so it tells a 10% change in a page's cost
//! where rates cannot.
use anyhow::Context;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const EVERY: Duration = Duration::from_millis(50);

#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    cpu_ticks: u64,
    rss_kib: u64,
}

/// Samples one process every 50 ms from its start until it is dropped.
pub struct ProcessWatch {
    pid: u32,
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    ticks_per_second: f64,
}

impl ProcessWatch {
    pub fn start(pid: u32) -> anyhow::Result<ProcessWatch> {
        let ticks_per_second = clock_ticks_per_second()?;
        sample(pid).with_context(|| format!("the CPU time and memory of process {pid} are not readable in /proc"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (stopped, kept) = (stop.clone(), samples.clone());
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                if let Some(s) = sample(pid) {
                    kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(s);
                }
                std::thread::sleep(EVERY);
            }
        });
        Ok(ProcessWatch { pid, stop, samples, ticks_per_second })
    }

    fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// The CPU time spent from `from` to `until` (both past): between the first and last samples
    /// inside that span, scaled to its whole length. `None` with fewer than two samples in it.
    pub fn cpu_between(&self, from: Instant, until: Instant) -> Option<Duration> {
        let samples = self.samples();
        let inside: Vec<&Sample> = samples.iter().filter(|s| s.at >= from && s.at <= until).collect();
        let (first, last) = (inside.first()?, inside.last()?);
        let sampled = last.at.duration_since(first.at).as_secs_f64();
        if sampled <= 0.0 {
            return None;
        }
        let cpu = last.cpu_ticks.saturating_sub(first.cpu_ticks) as f64 / self.ticks_per_second;
        Some(Duration::from_secs_f64(cpu * until.duration_since(from).as_secs_f64() / sampled))
    }

    /// (the largest resident size sampled, the kernel's own peak `VmHWM`) in KiB, so far.
    pub fn memory_kib(&self) -> (u64, u64) {
        let sampled = self.samples().iter().map(|s| s.rss_kib).max().unwrap_or(0);
        let peak = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .ok()
            .and_then(|status| status_kib(&status, "VmHWM:"))
            .unwrap_or(0);
        (sampled, peak.max(sampled))
    }
}

impl Drop for ProcessWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn sample(pid: u32) -> Option<Sample> {
    let at = Instant::now();
    let cpu_ticks = cpu_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    let rss_kib = status_kib(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?, "VmRSS:")?;
    Some(Sample { at, cpu_ticks, rss_kib })
}

/// User and system time of all the process's threads, in clock ticks (`/proc/<pid>/stat`
/// fields 14 and 15).
fn cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses; the fields after its last
    // closing parenthesis are plain, starting with field 3.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A `/proc/<pid>/status` line's value in KiB (`VmRSS:   123 kB`).
fn status_kib(status: &str, name: &str) -> Option<u64> {
    status.lines().find(|l| l.starts_with(name))?.split_whitespace().nth(1)?.parse().ok()
}

/// The kernel's clock ticks per second (USER_HZ) that `/proc` counts in, as `getconf` reports it
/// (`sysconf` itself would take unsafe code).
fn clock_ticks_per_second() -> anyhow::Result<f64> {
    let out = std::process::Command::new("getconf").arg("CLK_TCK").output().context("running getconf CLK_TCK")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let ticks: f64 = text.trim().parse().with_context(|| format!("getconf CLK_TCK printed {text:?}"))?;
    anyhow::ensure!(ticks > 0.0, "getconf CLK_TCK printed {ticks}");
    Ok(ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_cpu_time_and_memory_are_read_from_proc_and_grow_with_work() {
        let watch = ProcessWatch::start(std::process::id()).unwrap();
        let before = watch.memory_kib();
        let from = Instant::now();
        let mut x: u64 = 1;
        while from.elapsed() < Duration::from_millis(400) {
            x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
        }
        let until = Instant::now();
        // 64 MiB, touched so that it is resident, kept until sampled.
        let held = std::hint::black_box(vec![1u8; 64 << 20]);
        std::thread::sleep(EVERY * 3);
        let spent = watch.cpu_between(from, until).expect("samples inside the span");
        // Some of the busy thread's time, and no more than every core for the span could give
        // (how much it got depends on what else the machine runs).
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        assert!(spent > Duration::ZERO && spent <= until.duration_since(from) * cores, "{spent:?}");
        let (sampled, peak) = watch.memory_kib();
        assert!(sampled >= before.0 + 60 * 1024, "{before:?} then {sampled} KiB sampled");
        assert!(peak >= sampled, "{peak} {sampled}");
        drop(held);
    }

    #[test]
    fn proc_fields_are_read_past_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (repeat rx) (x)) S 1 2 3 4 5 6 7 8 9 10 170 30 0 0 20 0 9";
        assert_eq!(cpu_ticks(stat), Some(200));
        assert_eq!(status_kib("Name:\trepeatrx\nVmHWM:\t  1234 kB\nVmRSS:\t  1000 kB\n", "VmRSS:"), Some(1000));
        assert_eq!(status_kib("Name:\trepeatrx\n", "VmRSS:"), None);
    }
}
