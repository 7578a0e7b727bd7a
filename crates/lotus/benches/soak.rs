//! Soak: mock-proof sectors through one miner and ten workers while the cluster is abused. A
//! random worker is SIGKILLed (and started again a few seconds later) or SIGSTOPped (and
//! continued) every ~20 s; the miner is SIGKILLed and started again every ~2 minutes. Prints
//! sectors proving, sectors lost, tasks that ran twice at once (both must be 0), throughput
//! and the miner's RSS per fifth of the run.
//!
//! `cargo bench -p lotus --bench soak` (SOAK_SECTORS=1000, SOAK_WORKERS=10,
//! SOAK_CHAOS_SECS=20, SOAK_MINER_SECS=120, SOAK_MAX_SECS=3600). Mock proofs: the subject is
//! the pipeline's bookkeeping, not the proofs. "Ran twice at once" is sampled every 100 ms
//! from the proof processes' command lines (`proof-task Commit2 s-t01000-12`): two processes
//! of one sector's task alive at the same time anywhere in the cluster.

mod common;

use common::rss_mib;
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MINER: &str = env!("CARGO_BIN_EXE_lotus-miner");
const WORKER: &str = env!("CARGO_BIN_EXE_lotus-worker");
const DURATIONS: &str = "AP=200ms,PC1=2s,PC2=1s,C1=200ms,C2=3s,FIN=200ms";

fn env_or<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a child of ours.
    unsafe { libc::kill(pid as i32, sig) };
}

/// Sealing proof processes alive now: (task, sector) for each.
fn proof_processes() -> Vec<(String, String)> {
    let mut out = vec![];
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        let args: Vec<String> = cmd.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        // A zombie's cmdline is empty; a PoSt proof process proves many sectors.
        if args.get(1).map(String::as_str) == Some("proof-task") && args.len() >= 4 && !args[2].ends_with("PoSt") {
            out.push((args[2].clone(), args[3].clone()));
        }
    }
    out
}

struct Node {
    child: Option<Child>,
    stopped: bool,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            signal(c.id(), libc::SIGCONT);
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Cluster {
    dir: PathBuf,
    port: u16,
    /// `FULLNODE_API_INFO` of the devnet the miner reaches the chain through.
    chain: String,
}

impl Cluster {
    fn miner_cmd(&self) -> Command {
        let mut c = Command::new(MINER);
        c.env("LOTUS_MINER_PATH", self.dir.join("miner"))
            .env("FULLNODE_API_INFO", &self.chain)
            .env("LOTUS_CHAIN_MESSAGECONFIDENCE", "1")
            .env("LOTUS_API_LISTENADDRESS", format!("/ip4/127.0.0.1/tcp/{}/http", self.port))
            .env("RUST_LOG", "warn")
            .env_remove("MINER_API_INFO");
        c
    }
    fn cli(&self, args: &[&str]) -> String {
        let out = self.miner_cmd().args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    fn start_miner(&self) -> Child {
        let log = std::fs::File::create(self.dir.join("miner.log")).unwrap();
        let c = self.miner_cmd().arg("run").stdout(Stdio::null()).stderr(log).spawn().unwrap();
        let t = Instant::now();
        while !self.miner_cmd().arg("info").output().unwrap().status.success() {
            assert!(t.elapsed() < Duration::from_secs(60), "the miner did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }
    fn start_worker(&self, i: usize, port: u16, api_info: &str) -> Child {
        Command::new(WORKER)
            .env("LOTUS_WORKER_PATH", self.dir.join(format!("w{i}")))
            .env("MINER_API_INFO", api_info)
            .env("RUST_LOG", "warn")
            .args(["run", "--listen", &format!("127.0.0.1:{port}"), "--name", &format!("w{i}"), "--mock-proofs"])
            .arg(format!("--mock-task-durations={DURATIONS}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }
    /// State → sectors, from `SectorsSummary` through the CLI's list.
    fn states(&self) -> BTreeMap<u64, String> {
        self.cli(&["sectors", "list"])
            .lines()
            .skip(1)
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                Some((f.next()?.parse().ok()?, f.next()?.to_string()))
            })
            .collect()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn main() {
    let sectors: u64 = env_or("SOAK_SECTORS", 1000);
    let workers: usize = env_or("SOAK_WORKERS", 10);
    let chaos = Duration::from_secs(env_or("SOAK_CHAOS_SECS", 20));
    let miner_every = Duration::from_secs(env_or("SOAK_MINER_SECS", 120));
    let max = Duration::from_secs(env_or("SOAK_MAX_SECS", 3600));
    let tmp = tempfile::tempdir().unwrap();
    let devnet = common::start_devnet(
        tmp.path(),
        &["--block-delay", "200ms", "--pre-commit-challenge-delay", "3", "--win-rate", "0", "--mock-proofs"],
    );
    let c = Cluster { dir: tmp.path().to_path_buf(), port: free_port(), chain: devnet.api_info.clone() };
    assert!(c
        .miner_cmd()
        .args(["init", "--sector-size", "2KiB", "--confidence", "1"])
        .output()
        .unwrap()
        .status
        .success());
    std::fs::write(
        c.dir.join("miner/config.toml"),
        format!(
            r#"
[Storage]
  AllowAddPiece = false
  AllowPreCommit1 = false
  AllowPreCommit2 = false
  AllowCommit = false
  AllowUnseal = false
  WorkerLostTimeout = "30s"
[Sealing]
  MinRetryTime = "2s"
[Devnet]
  MockProofs = true
  MockTaskDurations = "{DURATIONS}"
"#
        ),
    )
    .unwrap();
    let mut miner = Node { child: Some(c.start_miner()), stopped: false };
    let api_info =
        c.cli(&["auth", "api-info", "--perm", "admin"]).trim().trim_start_matches("MINER_API_INFO=").to_string();
    let ports: Vec<u16> = (0..workers).map(|_| free_port()).collect();
    let mut nodes: Vec<Node> =
        (0..workers).map(|i| Node { child: Some(c.start_worker(i, ports[i], &api_info)), stopped: false }).collect();
    let t = Instant::now();
    while c.cli(&["sealing", "workers"]).matches("Worker ").count() < workers + 1 {
        assert!(t.elapsed() < Duration::from_secs(60), "workers did not register");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Watch for a task of one sector in two proof processes at once.
    let stop = Arc::new(AtomicBool::new(false));
    let twice = Arc::new(AtomicUsize::new(0));
    let seen_twice: Arc<std::sync::Mutex<BTreeSet<(String, String)>>> = Default::default();
    let watcher = {
        let (stop, twice, seen) = (stop.clone(), twice.clone(), seen_twice.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let mut alive = proof_processes();
                alive.sort();
                for w in alive.windows(2) {
                    if w[0] == w[1] && seen.lock().unwrap().insert(w[0].clone()) {
                        twice.fetch_add(1, Ordering::Relaxed);
                        eprintln!("RAN TWICE AT ONCE: {} of {}", w[0].0, w[0].1);
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    let started = Instant::now();
    for _ in 0..sectors {
        let out = c.miner_cmd().args(["sectors", "pledge"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    println!("soak: {sectors} sectors pledged in {:.1} s, {workers} workers", started.elapsed().as_secs_f64());
    let mut rng = rand::rng();
    let (mut next_chaos, mut next_miner) = (Instant::now() + chaos, Instant::now() + miner_every);
    let mut samples: Vec<(f64, u64, usize)> = vec![]; // (secs, miner RSS MiB, proving)
    let (mut kills, mut stops, mut miner_kills) = (0, 0, 0);
    let mut revive: Vec<(Instant, usize)> = vec![];
    let proving = loop {
        let states = c.states();
        let proving = states.values().filter(|s| *s == "Proving").count();
        let rss = miner.child.as_ref().map(|m| rss_mib(m.id())).unwrap_or(0);
        samples.push((started.elapsed().as_secs_f64(), rss, proving));
        if proving as u64 == sectors || started.elapsed() > max {
            break proving;
        }
        let now = Instant::now();
        for (when, i) in std::mem::take(&mut revive) {
            if when > now {
                revive.push((when, i));
                continue;
            }
            let n = &mut nodes[i];
            if n.stopped {
                signal(n.child.as_ref().unwrap().id(), libc::SIGCONT);
                n.stopped = false;
            } else {
                n.child = Some(c.start_worker(i, ports[i], &api_info));
            }
        }
        if now >= next_chaos {
            let i = rng.random_range(0..workers);
            if !revive.iter().any(|(_, j)| *j == i) {
                let n = &mut nodes[i];
                let pid = n.child.as_ref().unwrap().id();
                if rng.random_bool(0.5) {
                    let mut ch = n.child.take().unwrap();
                    let _ = ch.kill();
                    let _ = ch.wait();
                    kills += 1;
                    revive.push((now + Duration::from_secs(5), i));
                } else {
                    signal(pid, libc::SIGSTOP);
                    n.stopped = true;
                    stops += 1;
                    revive.push((now + Duration::from_secs(rng.random_range(5..40)), i));
                }
            }
            next_chaos = now + chaos.mul_f64(rng.random_range(0.5..1.5));
        }
        if now >= next_miner {
            let mut m = miner.child.take().unwrap();
            let _ = m.kill();
            let _ = m.wait();
            miner.child = Some(c.start_miner());
            miner_kills += 1;
            next_miner = Instant::now() + miner_every;
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    let secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let states = c.states();
    let lost = (1..=sectors).filter(|n| states.get(n).is_none_or(|s| s.starts_with("Fail"))).count();
    let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
    for s in states.values() {
        *by_state.entry(s.as_str()).or_default() += 1;
    }
    println!("soak: {secs:.0} s; {kills} worker kills, {stops} worker stops, {miner_kills} miner kills");
    println!(
        "soak: sectors proving {proving} of {sectors}; lost {lost}; tasks that ran twice at once {}",
        twice.load(Ordering::Relaxed)
    );
    println!("soak: states at the end {by_state:?}");
    println!("soak: throughput {:.1} sectors/min", proving as f64 / secs * 60.0);
    let fifth = secs / 5.0;
    for k in 0..5 {
        let part: Vec<&(f64, u64, usize)> =
            samples.iter().filter(|(t, _, _)| *t >= k as f64 * fifth && *t < (k + 1) as f64 * fifth).collect();
        let rss: Vec<u64> = part.iter().map(|s| s.1).filter(|r| *r > 0).collect();
        let done = part.last().map(|s| s.2).unwrap_or(0);
        println!(
            "soak: fifth {}: miner RSS {}–{} MiB, proving {done}",
            k + 1,
            rss.iter().min().unwrap_or(&0),
            rss.iter().max().unwrap_or(&0)
        );
    }
    drop(nodes);
    drop(miner);
}
