//! Scale: a real `lotus-miner` process on the mock proof backend with 1,000 workers
//! registered over real RPC and 10,000 sectors in flight. The workers are light stand-ins
//! served by this process (one HTTP listener each, answering the worker API calls a miner
//! makes: Version, Session, Info, TaskTypes, Calls, and any task call, which they accept and
//! hold). Prints the push-to-worker-call latency (the `PledgeSector` call sent → the
//! sector's AddPiece call received by its worker; p50, p99), the miner's CPU and RSS while
//! pushing and while holding everything in flight with every worker's heartbeat running.
//!
//! `cargo bench --workspace --bench scale` (SCALE_WORKERS=1000, SCALE_SECTORS=10000,
//! SCALE_HOLD_SECS=30). The pure scheduler's own figures are `cargo bench -p sealing-sched
//! --bench sched` (README, Benchmarks).

mod common;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use lotus_api::types::{FsStat, StorageInfo};
use lotus_api::RpcClient;
use sealing_types::resources::default_table;
use sealing_types::{CallId, SectorRef, TaskType, WorkerInfo, WorkerResources};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MINER: &str = env!("CARGO_BIN_EXE_lotus-miner");
const GIB: u64 = 1 << 30;

fn env_or<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

/// (utime + stime) in seconds and RSS in MiB of a process.
fn usage(pid: u32) -> (f64, u64) {
    (common::cpu_secs(pid), common::rss_mib(pid))
}

/// When each sector's AddPiece reached a worker.
type Arrivals = Arc<Mutex<HashMap<u64, Instant>>>;

struct Fake {
    session: uuid::Uuid,
    info: WorkerInfo,
    arrivals: Arrivals,
}

async fn rpc(State(w): State<Arc<Fake>>, Json(req): Json<Value>) -> Json<Value> {
    let method = req["method"].as_str().unwrap_or("").trim_start_matches("Filecoin.");
    let id = req["id"].clone();
    let result = match method {
        "Version" => json!(lotus_api::methods::WORKER_API_VERSION),
        "Session" => json!(w.session),
        "Info" => json!(w.info),
        "TaskTypes" => json!({ TaskType::AddPiece.as_str(): {}, TaskType::Fetch.as_str(): {} }),
        "Calls" => json!([]),
        _ => match serde_json::from_value::<SectorRef>(req["params"][0].clone()) {
            // A task call: accepted and held (its result never comes).
            Ok(s) => {
                w.arrivals.lock().unwrap().entry(s.id.number).or_insert_with(Instant::now);
                json!(CallId { sector: s.id, id: uuid::Uuid::new_v4() })
            }
            Err(_) => {
                return Json(json!({"jsonrpc": "2.0", "id": id, "error": {"code": 1, "message": "no such method"}}))
            }
        },
    };
    Json(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let workers: usize = env_or("SCALE_WORKERS", 1000);
    let sectors: u64 = env_or("SCALE_SECTORS", 10_000);
    let hold = Duration::from_secs(env_or("SCALE_HOLD_SECS", 30));
    let tmp = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let chain = common::start_devnet(tmp.path(), &["--win-rate", "0", "--mock-proofs"]);
    let miner_cmd = || {
        let mut c = Command::new(MINER);
        c.env("LOTUS_MINER_PATH", tmp.path().join("miner"))
            .env("FULLNODE_API_INFO", &chain.api_info)
            .env("LOTUS_CHAIN_MESSAGECONFIDENCE", "1")
            .env("LOTUS_API_LISTENADDRESS", format!("/ip4/127.0.0.1/tcp/{port}/http"))
            .env("RUST_LOG", "warn")
            .env_remove("MINER_API_INFO");
        c
    };
    assert!(miner_cmd()
        .args(["init", "--sector-size", "2KiB", "--confidence", "1"])
        .output()
        .unwrap()
        .status
        .success());
    std::fs::write(
        tmp.path().join("miner/config.toml"),
        "[Storage]\n  AllowAddPiece = false\n  AllowPreCommit1 = false\n  AllowPreCommit2 = false\n  AllowCommit = false\n  AllowUnseal = false\n[Devnet]\n  MockProofs = true\n",
    )
    .unwrap();
    let mut miner = miner_cmd().arg("run").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let pid = miner.id();
    while !miner_cmd().arg("info").output().unwrap().status.success() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = miner_cmd().args(["auth", "api-info", "--perm", "admin"]).output().unwrap();
    let info = String::from_utf8(out.stdout).unwrap();
    let token = info.trim().trim_start_matches("MINER_API_INFO=").split(':').next().unwrap().to_string();
    let m = Arc::new(RpcClient::new(format!("http://127.0.0.1:{port}/rpc/v0"), Some(token), Duration::from_secs(60)));
    let (cpu0, rss_idle) = usage(pid);

    // The workers: one listener each, registered and with a sealing path attached.
    let arrivals: Arrivals = Default::default();
    let t = Instant::now();
    let mut joins = vec![];
    for i in 0..workers {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = Arc::new(Fake {
            session: uuid::Uuid::new_v4(),
            info: WorkerInfo {
                hostname: format!("fake-{i}"),
                ignore_resources: false,
                resources: WorkerResources {
                    mem_physical: 1024 * GIB,
                    mem_used: 0,
                    mem_swap: 0,
                    mem_swap_used: 0,
                    cpus: 64,
                    gpus: vec![],
                    resources: default_table().clone(),
                },
                mock_proofs: true,
            },
            arrivals: arrivals.clone(),
        });
        let app = Router::new().route("/rpc/v0", post(rpc)).with_state(fake);
        tokio::spawn(async move { axum::serve(listener, app).await });
        let m = m.clone();
        joins.push(tokio::spawn(async move {
            let path = StorageInfo {
                id: uuid::Uuid::new_v4(),
                urls: vec![format!("http://{addr}/remote")],
                weight: 10,
                max_storage: 0,
                can_seal: true,
                can_store: false,
                groups: vec![],
                allow_to: vec![],
                ..Default::default()
            };
            let stat = FsStat { capacity: 1 << 50, available: 1 << 50, fs_available: 1 << 50, ..Default::default() };
            m.call::<Value>("StorageAttach", json!([path, stat])).await.unwrap();
            m.call::<Value>("WorkerConnect", json!([format!("http://{addr}/rpc/v0")])).await.unwrap();
        }));
        if joins.len() >= 50 {
            for j in joins.drain(..) {
                j.await.unwrap();
            }
        }
    }
    for j in joins {
        j.await.unwrap();
    }
    let stats: HashMap<String, Value> = m.call("WorkerStats", json!([])).await.unwrap();
    println!("scale: {} workers registered over RPC in {:.1} s", stats.len() - 1, t.elapsed().as_secs_f64());

    // Push the sectors, SCALE_CONCURRENCY (64) calls at a time: a burst measures throughput
    // (latency is then the queue: in flight / pledges per second), a few at a time the
    // latency of one push with everything else in flight.
    let concurrency: usize = env_or("SCALE_CONCURRENCY", 64);
    let sent: Arc<Mutex<HashMap<u64, Instant>>> = Default::default();
    let (cpu1, _) = usage(pid);
    let t = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut joins = vec![];
    for _ in 0..sectors {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let (m, sent) = (m.clone(), sent.clone());
        joins.push(tokio::spawn(async move {
            let at = Instant::now();
            let id: sealing_types::SectorId = m.call("PledgeSector", json!([])).await.unwrap();
            sent.lock().unwrap().insert(id.number, at);
            drop(permit);
        }));
    }
    for j in joins {
        j.await.unwrap();
    }
    let pushed = t.elapsed();
    while (arrivals.lock().unwrap().len() as u64) < sectors && t.elapsed() < Duration::from_secs(600) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all_there = t.elapsed();
    let (cpu2, rss_push) = usage(pid);
    let mut lat: Vec<f64> = {
        let (a, s) = (arrivals.lock().unwrap(), sent.lock().unwrap());
        s.iter().filter_map(|(n, at)| a.get(n).map(|got| got.duration_since(*at).as_secs_f64() * 1000.0)).collect()
    };
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "scale: {sectors} sectors pushed ({concurrency} at a time) in {:.1} s, {} AddPiece calls at workers after {:.1} s",
        pushed.as_secs_f64(),
        lat.len(),
        all_there.as_secs_f64()
    );
    if !lat.is_empty() {
        println!(
            "scale: push-to-worker-call latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (target p99 <= 20 ms)",
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            lat[lat.len() - 1]
        );
    }
    println!(
        "scale: miner while pushing: {:.0}% of a core, RSS {rss_push} MiB (idle before the workers: {rss_idle} MiB; target <= 300 MiB)",
        (cpu2 - cpu1) / all_there.as_secs_f64() * 100.0
    );

    // Everything in flight, every worker's heartbeat running.
    tokio::time::sleep(hold).await;
    let (cpu3, rss_hold) = usage(pid);
    println!(
        "scale: miner holding {sectors} tasks on {workers} workers for {} s: {:.1}% of a core, RSS {rss_hold} MiB; {:.1} CPU-s since start",
        hold.as_secs(),
        (cpu3 - cpu2) / hold.as_secs_f64() * 100.0,
        cpu3 - cpu0
    );

    // What watching costs at this size: Prometheus scrapes, and the dashboard's live updates
    // (one `/ui/state` every 2 s, as the page asks) against the holding figure above.
    let http = reqwest::Client::new();
    let mut scrape_ms = vec![];
    let mut size = 0;
    for _ in 0..20 {
        let t = Instant::now();
        let body =
            http.get(format!("http://127.0.0.1:{port}/debug/metrics")).send().await.unwrap().text().await.unwrap();
        scrape_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        size = body.len();
    }
    scrape_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "scale: /debug/metrics scrape p50 {:.1} ms, max {:.1} ms, {} KiB (target <= 100 ms)",
        percentile(&scrape_ms, 0.5),
        scrape_ms[scrape_ms.len() - 1],
        size / 1024
    );
    let read: String = m.call("AuthNew", json!([["read"]])).await.unwrap();
    use base64::Engine;
    let read = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(read).unwrap()).unwrap();
    let (cpu4, _) = usage(pid);
    let t = Instant::now();
    let mut state_ms = vec![];
    while t.elapsed() < hold {
        let at = Instant::now();
        let r = http.get(format!("http://127.0.0.1:{port}/ui/state")).bearer_auth(&read).send().await.unwrap();
        assert!(r.status().is_success(), "/ui/state: {}", r.status());
        let _ = r.bytes().await.unwrap();
        state_ms.push(at.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_secs(2).saturating_sub(at.elapsed())).await;
    }
    let (cpu5, _) = usage(pid);
    state_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let watched = (cpu5 - cpu4) / t.elapsed().as_secs_f64() * 100.0;
    let idle = (cpu3 - cpu2) / hold.as_secs_f64() * 100.0;
    println!(
        "scale: dashboard live for {} s: miner {watched:.1}% of a core against {idle:.1}% holding unwatched, +{:.1} points (target <= 5); /ui/state p50 {:.1} ms, max {:.1} ms",
        hold.as_secs(),
        watched - idle,
        percentile(&state_ms, 0.5),
        state_ms[state_ms.len() - 1]
    );
    let _ = miner.kill();
    let _ = miner.wait();
}
