//! Flood: a miner and a worker under unauthenticated abuse for a while, as an attacker on the
//! LAN could do it without any credential: idle and slow connections (half of them to each
//! daemon, reopened as soon as they are closed; one in ten trickles a byte every 5 s), JSON-RPC
//! bodies of every shape up to the body limit, and requests carrying forged JWT-shaped tokens
//! (a fixed set of distinct ones, cycled) to both. Meanwhile an authenticated `Session` is
//! asked of each daemon every 100 ms.
//!
//! It prints, per fifth of the run, the authenticated `Session`'s p50/p99/max latency and its
//! failures, the daemons' RSS, the attack rates achieved, and the miner's `AuthVerify` calls
//! per distinct forged token per minute (the worker asks the miner about a token at most once
//! a minute); at the end whether both daemons are still running.
//!
//! `cargo bench -p lotus --bench flood` (FLOOD_SECS=600, FLOOD_IDLE=10000, FLOOD_TOKENS=2000).
//! The bench process needs a file-descriptor limit above FLOOD_IDLE (`ulimit -n`).

mod common;

use common::{rss_mib, start_devnet, Kids, Miner};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WORKER: &str = env!("CARGO_BIN_EXE_lotus-worker");

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[derive(Default)]
struct Counts {
    idle_opened: AtomicU64,
    idle_refused: AtomicU64,
    bodies: AtomicU64,
    forged: AtomicU64,
    forged_accepted: AtomicU64,
}

/// The miner's `lotus_miner_auth_verify_total`.
async fn auth_verifies(http: &reqwest::Client, miner: &str) -> u64 {
    let text = match http.get(format!("http://{miner}/debug/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => return 0,
    };
    text.lines()
        .find_map(|l| l.strip_prefix("lotus_miner_auth_verify_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

/// JSON-RPC bodies of every shape, the last near the 16 MiB body limit and one past it.
fn bodies() -> Vec<Vec<u8>> {
    let call = |m: &str| format!(r#"{{"jsonrpc":"2.0","id":1,"method":"Filecoin.{m}","params":[]}}"#);
    let batch = |m: &str, n: usize| format!("[{}]", vec![call(m); n].join(","));
    let padded = format!(
        "[{}]",
        vec![
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"Filecoin.Version","params":["{}"]}}"#, "x".repeat(160 << 10));
            100
        ]
        .join(",")
    );
    let mut out: Vec<Vec<u8>> = [
        "[]".to_string(),
        "{}".into(),
        "[1,2,3]".into(),
        "[[[[[[[[[[]]]]]]]]]]".into(),
        "\"x\"".into(),
        "{not json".into(),
        r#"{"method":"Filecoin.Version"}"#.into(),
        r#"{"id":1,"method":"Filecoin.Version","params":{"a":1}}"#.into(),
        call("Version"),
        call("NoSuchMethod"),
        call("Shutdown"),
        batch("Version", 100),
        batch("Version", 101),
        batch("SectorsList", 100),
        batch("StorageList", 100),
        batch("NoSuchMethod", 100),
        padded,
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect();
    out.push(vec![b' '; (16 << 20) + 1]);
    out
}

fn main() {
    let secs = env_or("FLOOD_SECS", 600);
    let idle = env_or("FLOOD_IDLE", 10_000) as usize;
    let distinct = env_or("FLOOD_TOKENS", 2000) as usize;
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let chain = start_devnet(base, &[]);
    let mut daemon = Miner::start(base, &chain);
    let (miner_pid, port) = (daemon.child.id(), daemon.port);
    let mut kids = Kids(vec![]);
    let info = daemon.api_info.clone();
    let admin = info.split(':').next().unwrap().to_string();
    let wrepo = base.join("worker");
    let mut w = Command::new(WORKER);
    w.env("LOTUS_WORKER_PATH", &wrepo).env("MINER_API_INFO", &info).env("RUST_LOG", "warn").args([
        "run",
        "--listen",
        "127.0.0.1:0",
        "--name",
        "flooded",
        "--no-local-storage",
    ]);
    kids.0.push(w.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    let worker_pid = kids.0[0].id();
    let t = Instant::now();
    let worker = loop {
        let text = std::fs::read_to_string(wrepo.join("api")).unwrap_or_default();
        let parts: Vec<&str> = text.trim().split('/').collect();
        if parts.len() > 4 && parts[4].parse::<u16>().is_ok() {
            break format!("{}:{}", parts[2], parts[4]);
        }
        assert!(t.elapsed() < Duration::from_secs(30), "the worker did not come up");
        std::thread::sleep(Duration::from_millis(100));
    };
    let miner = format!("127.0.0.1:{port}");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(flood(miner, worker, admin, secs, idle, distinct, (miner_pid, worker_pid)));
    let running = |k: &mut Child| k.try_wait().unwrap().is_none();
    println!("still running at the end: miner {}, worker {}", running(&mut daemon.child), running(&mut kids.0[0]));
    rt.shutdown_timeout(Duration::from_secs(1));
}

async fn flood(
    miner: String,
    worker: String,
    admin: String,
    secs: u64,
    idle: usize,
    distinct: usize,
    (miner_pid, worker_pid): (u32, u32),
) {
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let targets = [miner.clone(), worker.clone()];

    // Idle and slow connections, reopened as soon as the daemon closes them.
    for i in 0..idle {
        let (addr, stop, counts) = (targets[i % 2].clone(), stop.clone(), counts.clone());
        tokio::spawn(async move {
            while !stop.load(Relaxed) {
                match tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(&addr)).await {
                    Ok(Ok(mut s)) => {
                        counts.idle_opened.fetch_add(1, Relaxed);
                        if i % 10 == 0 {
                            // Slow: a byte of a request's headers every 5 s.
                            while !stop.load(Relaxed) && s.write_all(b"G").await.is_ok() {
                                tokio::time::sleep(Duration::from_secs(5)).await;
                            }
                        } else {
                            let mut b = [0u8; 64];
                            while !stop.load(Relaxed) {
                                if let Ok(Ok(0) | Err(_)) =
                                    tokio::time::timeout(Duration::from_secs(1), s.read(&mut b)).await
                                {
                                    break;
                                }
                            }
                        }
                    }
                    _ => {
                        counts.idle_refused.fetch_add(1, Relaxed);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }
    // Bodies of every shape, without a token.
    let shapes = Arc::new(bodies());
    for k in 0..4 {
        let (stop, counts, shapes, targets) = (stop.clone(), counts.clone(), shapes.clone(), targets.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
            let mut n = k;
            while !stop.load(Relaxed) {
                let body = shapes[n % shapes.len()].clone();
                let url = format!("http://{}/rpc/v0", targets[n % 2]);
                let _ = http.post(url).header("content-type", "application/json").body(body).send().await;
                counts.bodies.fetch_add(1, Relaxed);
                n += 1;
            }
        });
    }
    // Forged tokens: JWT-shaped, signed by no one, `distinct` of them cycled.
    let forged: Arc<Vec<String>> = Arc::new(
        (0..distinct)
            .map(|i| format!("eyJhbGciOiJIUzI1NiJ9.eyJBbGxvdyI6WyJhZG1pbiJdfQ.forged{i:08}abcdefghijklmnopqrstuv"))
            .collect(),
    );
    for k in 0..32 {
        let (stop, counts, forged, targets) = (stop.clone(), counts.clone(), forged.clone(), targets.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
            let body = r#"{"jsonrpc":"2.0","id":1,"method":"Filecoin.Version","params":[]}"#;
            let mut n = k * 7919;
            while !stop.load(Relaxed) {
                let url = format!("http://{}/rpc/v0", targets[n % 2]);
                let r = http.post(url).bearer_auth(&forged[n % forged.len()]).body(body).send().await;
                counts.forged.fetch_add(1, Relaxed);
                if r.is_ok_and(|r| r.status().is_success()) {
                    counts.forged_accepted.fetch_add(1, Relaxed);
                }
                n += 1;
            }
        });
    }

    // The authenticated probe, and the samples per fifth of the run.
    let probe = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"Filecoin.Session","params":[]}"#;
    let fifths: Arc<Mutex<Vec<Fifth>>> = Arc::new(Mutex::new((0..5).map(|_| Fifth::default()).collect()));
    let start = Instant::now();
    let verifies0 = auth_verifies(&probe, &miner).await;
    let mut last_rss = Instant::now() - Duration::from_secs(60);
    let (rss0_m, rss0_w) = (rss_mib(miner_pid), rss_mib(worker_pid));
    let mut sent_before = (0u64, 0u64, 0u64);
    let mut fifth_started = Instant::now();
    let mut verifies_before = verifies0;
    let mut current = 0usize;
    while start.elapsed() < Duration::from_secs(secs) {
        let f = ((start.elapsed().as_secs_f64() * 5.0 / secs as f64) as usize).min(4);
        if f != current {
            let verifies = auth_verifies(&probe, &miner).await;
            close_fifth(&fifths, current, &counts, &mut sent_before, fifth_started, verifies - verifies_before);
            (current, fifth_started, verifies_before) = (f, Instant::now(), verifies);
        }
        for target in [&miner, &worker] {
            let t = Instant::now();
            let r = probe.post(format!("http://{target}/rpc/v0")).bearer_auth(&admin).body(body).send().await;
            let ok = match r {
                Ok(r) if r.status().is_success() => r.text().await.is_ok_and(|t| t.contains("\"result\"")),
                _ => false,
            };
            let mut all = fifths.lock().unwrap();
            if ok {
                all[f].latency_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            } else {
                all[f].failed += 1;
            }
        }
        if last_rss.elapsed() >= Duration::from_secs(10) {
            let mut all = fifths.lock().unwrap();
            let (m, w) = (rss_mib(miner_pid), rss_mib(worker_pid));
            all[f].rss = (all[f].rss.0.max(m), all[f].rss.1.max(w));
            last_rss = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let verifies = auth_verifies(&probe, &miner).await;
    close_fifth(&fifths, current, &counts, &mut sent_before, fifth_started, verifies - verifies_before);
    stop.store(true, Relaxed);

    println!(
        "flood for {secs} s: {idle} idle/slow connections (1 in 10 slow), 4 senders of 18 body shapes, 32 senders of \
         {distinct} distinct forged tokens; miner RSS at start {rss0_m} MiB, worker {rss0_w} MiB"
    );
    println!("fifth  Session p50/p99/max ms (failed)   RSS miner/worker MiB   conns opened/s  bodies/s  forged/s  AuthVerify calls");
    for (i, f) in fifths.lock().unwrap().iter_mut().enumerate() {
        f.latency_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let q = |p: f64| {
            f.latency_ms
                .get(((f.latency_ms.len() as f64 * p) as usize).min(f.latency_ms.len().saturating_sub(1)))
                .copied()
                .unwrap_or(f64::NAN)
        };
        println!(
            "  {}    {:6.1} / {:6.1} / {:7.1} ({})      {:4} / {:4}            {:8.0}   {:7.0}  {:8.0}  {}",
            i + 1,
            q(0.5),
            q(0.99),
            f.latency_ms.last().copied().unwrap_or(f64::NAN),
            f.failed,
            f.rss.0,
            f.rss.1,
            f.rates.0,
            f.rates.1,
            f.rates.2,
            f.verifies
        );
    }
    println!(
        "totals: {} connections opened ({} refused or timed out), {} bodies, {} forged-token requests ({} answered 2xx), \
         {} AuthVerify calls on the miner",
        counts.idle_opened.load(Relaxed),
        counts.idle_refused.load(Relaxed),
        counts.bodies.load(Relaxed),
        counts.forged.load(Relaxed),
        counts.forged_accepted.load(Relaxed),
        verifies - verifies0
    );
    // Forged tokens go to the worker on odd turns: half of them reach it.
    let minutes = (secs as f64 / 60.0).ceil().max(1.0);
    println!(
        "AuthVerify calls per forged token the worker saw, per started minute: {:.2} (at most 1 wanted; {} calls, {} \
         tokens, {minutes} minutes; the probe's and the miner's own tokens add a few)",
        (verifies - verifies0) as f64 / (distinct / 2).max(1) as f64 / minutes,
        verifies - verifies0,
        distinct / 2
    );
    let growth = |now: u32, before: u64| rss_mib(now).saturating_sub(before);
    println!(
        "RSS growth over the run: miner {} MiB, worker {} MiB (target < 256 MiB)",
        growth(miner_pid, rss0_m),
        growth(worker_pid, rss0_w)
    );
}

#[derive(Default)]
struct Fifth {
    latency_ms: Vec<f64>,
    failed: usize,
    rss: (u64, u64),
    /// Connections opened, bodies and forged-token requests per second.
    rates: (f64, f64, f64),
    /// `AuthVerify` calls the miner answered in it.
    verifies: u64,
}

fn close_fifth(
    fifths: &Mutex<Vec<Fifth>>,
    i: usize,
    counts: &Counts,
    before: &mut (u64, u64, u64),
    started: Instant,
    verifies: u64,
) {
    let now = (counts.idle_opened.load(Relaxed), counts.bodies.load(Relaxed), counts.forged.load(Relaxed));
    let secs = started.elapsed().as_secs_f64().max(0.001);
    let mut all = fifths.lock().unwrap();
    all[i].rates =
        ((now.0 - before.0) as f64 / secs, (now.1 - before.1) as f64 / secs, (now.2 - before.2) as f64 / secs);
    all[i].verifies = verifies;
    *before = now;
}
