//! Load: many light workers on one miner for a while. Prints whether every heartbeat kept the
//! workers enabled, and the miner's memory at the start and the end.
//!
//! `cargo bench -p lotus --bench load` (LOAD_WORKERS=200, LOAD_SECS=600). The workers only
//! register and answer heartbeats: no sealing, so no proof backend is involved.

mod common;

use common::{rss_mib, start_devnet, Kids, Miner};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WORKER: &str = env!("CARGO_BIN_EXE_lotus-worker");

fn main() {
    let n: usize = std::env::var("LOAD_WORKERS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let secs: u64 = std::env::var("LOAD_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(600);
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let chain = start_devnet(base, &[]);
    let miner = Miner::start(base, &chain);
    let cli = |args: &[&str]| miner.cli(args);
    let miner_pid = miner.child.id();
    let mut kids = Kids(vec![]);
    let info = miner.api_info.clone();
    let rss_idle = rss_mib(miner_pid);
    let t0 = Instant::now();
    for i in 0..n {
        let mut w = Command::new(WORKER);
        w.env("LOTUS_WORKER_PATH", base.join(format!("w{i}")))
            .env("MINER_API_INFO", &info)
            .env("RUST_LOG", "warn")
            .args(["run", "--listen", "127.0.0.1:0", "--name", &format!("load-{i}"), "--no-local-storage"]);
        kids.0.push(w.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    }
    let count = |what: &str| -> (usize, usize) {
        let out = String::from_utf8_lossy(&cli(&["sealing", "workers"]).stdout).to_string();
        let total = out.lines().filter(|l| l.starts_with("Worker ")).count();
        let disabled = out.lines().filter(|l| l.starts_with("Worker ") && l.contains("(disabled)")).count();
        let _ = what;
        (total, disabled)
    };
    loop {
        let (total, _) = count("registration");
        if total > n {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "only {total} of {} workers registered after 2 minutes",
            n + 1
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let registered = t0.elapsed().as_secs_f64();
    let rss_start = rss_mib(miner_pid);
    println!(
        "{n} workers registered in {registered:.1} s; miner RSS idle {rss_idle} MiB, with the workers {rss_start} MiB"
    );
    let start = Instant::now();
    let (mut min_enabled, mut samples, mut worst_disabled) = (usize::MAX, 0, 0);
    let mut rss_max = rss_start;
    // RSS per fifth of the run: a leak grows in every fifth, warm-up only in the first.
    let mut fifths: Vec<(u64, u64)> = vec![(u64::MAX, 0); 5];
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(10));
        let (total, disabled) = count("sample");
        min_enabled = min_enabled.min(total - disabled);
        worst_disabled = worst_disabled.max(disabled);
        let rss = rss_mib(miner_pid);
        rss_max = rss_max.max(rss);
        let f = ((start.elapsed().as_secs() * 5 / secs.max(1)) as usize).min(4);
        fifths[f] = (fifths[f].0.min(rss), fifths[f].1.max(rss));
        samples += 1;
    }
    let shown: Vec<String> = fifths
        .iter()
        .enumerate()
        .filter(|(_, (lo, _))| *lo != u64::MAX)
        .map(|(i, (lo, hi))| format!("{}: {lo}-{hi}", i + 1))
        .collect();
    println!("miner RSS per fifth of the run (min-max MiB): {}", shown.join(", "));
    let rss_end = rss_mib(miner_pid);
    println!(
        "over {secs} s ({samples} samples every 10 s): at least {min_enabled} of {} workers enabled at every sample, \
         at most {worst_disabled} disabled (a missed heartbeat disables a worker)",
        n + 1
    );
    println!("miner RSS: start {rss_start} MiB, end {rss_end} MiB, max {rss_max} MiB");
}
