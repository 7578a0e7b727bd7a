//! A devnet node, a miner and a worker started as libraries in this one process, each from a
//! listener the test bound, its command line parsed as its binary parses it, and a shutdown
//! signal the test holds: a mock-proof CC sector, sealed on the worker, reaches Proving; then
//! each daemon stops when told, lets go of its port, its `api` file and its repo lock, and
//! leaves no task of its own running in the runtime. (Proof tasks, mock ones included, still
//! run in child processes of the `lotus-worker` binary, as they do under any daemon.)

use lotus_api::contract::miner as m;
use lotus_node::repo::{Repo, RepoKind};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// A port on loopback, bound before the daemon that serves it exists.
fn listener() -> (std::net::TcpListener, u16) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

fn text(p: &Path) -> &str {
    p.to_str().unwrap()
}

struct Daemon {
    name: &'static str,
    port: u16,
    repo: Repo,
    stop: Arc<Notify>,
    running: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Daemon {
    /// Tell it to stop; it must return cleanly and give back what it held.
    async fn stop(self) {
        self.stop.notify_one();
        let ended = tokio::time::timeout(Duration::from_secs(30), self.running).await;
        let ended = ended.unwrap_or_else(|_| panic!("the {} did not stop within 30 s", self.name));
        ended.unwrap().unwrap_or_else(|e| panic!("the {} stopped with an error: {e:#}", self.name));
        assert!(
            tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err(),
            "the {} still accepts connections after it stopped",
            self.name
        );
        assert!(!self.repo.file("api").exists(), "the {}'s api file outlived it", self.name);
        self.repo.lock().unwrap_or_else(|e| panic!("the {}'s repo is still locked: {e}", self.name));
    }
}

async fn until<T>(what: &str, timeout: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn a_cluster_in_one_process_seals_a_sector_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (devnet_repo, miner_repo, worker_repo) =
        (dir.path().join("devnet"), dir.path().join("miner"), dir.path().join("worker"));
    // The devnet's secret made first, so that the miner's FULLNODE_API_INFO is known, and the
    // environment set, before any thread starts.
    let devnet = Repo::new(devnet_repo.clone(), RepoKind::Devnet);
    devnet.create_dir().unwrap();
    let secret = lotus_api::JwtSecret::generate();
    devnet.write_jwt_secret(&secret).unwrap();
    let token = secret.create_token(&lotus_api::Permission::Admin.with_lower());
    let (devnet_l, devnet_port) = listener();
    let (miner_l, miner_port) = listener();
    let (worker_l, worker_port) = listener();
    std::env::set_var("FULLNODE_API_INFO", format!("{token}:/ip4/127.0.0.1/tcp/{devnet_port}/http"));
    // Proof tasks stay in child processes (an abort kills one); this test binary cannot run
    // them, the worker's binary can.
    std::env::set_var("LOTUS_PROOF_TASK_BINARY", env!("CARGO_BIN_EXE_lotus-worker"));
    for var in ["MINER_API_INFO", "STORAGE_API_INFO", "LOTUS_MINER_PATH", "LOTUS_WORKER_PATH"] {
        std::env::remove_var(var);
    }

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let host = |l, stop: &Arc<Notify>| lotus_node::daemon::Host {
            listener: Some(tokio::net::TcpListener::from_std(l).unwrap()),
            shutdown: stop.clone(),
        };
        let stop = Arc::new(Notify::new());
        let run = lotus_devnet::cli::in_process(
            &[
                "lotus-devnet",
                "--repo",
                text(&devnet_repo),
                "daemon",
                "--mock-proofs",
                "--block-delay",
                "200ms",
                "--pre-commit-challenge-delay",
                "2",
            ],
            host(devnet_l, &stop),
        )
        .unwrap();
        let devnet = Daemon { name: "devnet", port: devnet_port, repo: devnet, stop, running: tokio::spawn(run) };
        let api_file = devnet.repo.file("api");
        until("the devnet's api file", Duration::from_secs(20), async || api_file.exists().then_some(())).await;

        let init =
            ["lotus-miner", "--miner-repo", text(&miner_repo), "init", "--sector-size", "2KiB", "--confidence", "1"];
        miner::cli::command_in_process(&init).await.expect("lotus-miner init");
        // The miner's own worker seals nothing: every sealing task goes to the worker below.
        let off = ["AllowAddPiece", "AllowPreCommit1", "AllowPreCommit2", "AllowCommit", "AllowUnseal"];
        let storage: String = off.iter().map(|k| format!("  {k} = false\n")).collect();
        let devnet_keys = "[Devnet]\n  MockProofs = true\n  MockTaskDurations = \"\"\n";
        let config = format!("[Storage]\n{storage}[Chain]\n  MessageConfidence = 1\n{devnet_keys}");
        std::fs::write(miner_repo.join("config.toml"), config).unwrap();
        let stop = Arc::new(Notify::new());
        let run =
            miner::cli::in_process(&["lotus-miner", "--miner-repo", text(&miner_repo), "run"], host(miner_l, &stop))
                .unwrap();
        let miner_daemon = Daemon {
            name: "miner",
            port: miner_port,
            repo: Repo::new(miner_repo.clone(), RepoKind::Miner),
            stop,
            running: tokio::spawn(run),
        };
        let miner_token = std::fs::read_to_string(miner_repo.join("token")).unwrap();
        let api = lotus_api::RpcClient::new(
            format!("http://127.0.0.1:{miner_port}/rpc/v0"),
            Some(miner_token.trim().to_string()),
            Duration::from_secs(10),
        );
        until("the miner's API", Duration::from_secs(30), async || api.request::<m::Version>(()).await.ok()).await;

        let stop = Arc::new(Notify::new());
        let args = [
            "lotus-worker",
            "--worker-repo",
            text(&worker_repo),
            "--miner-repo",
            text(&miner_repo),
            "run",
            "--name",
            "in-process-w",
            "--mock-proofs",
            "--mock-task-durations=",
        ];
        let run = worker::cli::in_process(&args, host(worker_l, &stop)).unwrap();
        let worker_daemon = Daemon {
            name: "worker",
            port: worker_port,
            repo: Repo::new(worker_repo.clone(), RepoKind::Worker),
            stop,
            running: tokio::spawn(run),
        };
        until("the worker's registration and its path", Duration::from_secs(30), async || {
            let workers = api.request::<m::WorkerStats>(()).await.ok()?;
            let ours = workers.values().find(|w| w.info.hostname == "in-process-w")?;
            assert!(ours.info.mock_proofs, "the worker announces its mock proofs: {:?}", ours.info);
            let paths = api.request::<m::StorageList>(()).await.ok()?;
            (paths.len() == 2).then_some(())
        })
        .await;

        let sector = api.request::<m::PledgeSector>(()).await.unwrap();
        let status = until("the pledged sector to reach Proving", Duration::from_secs(90), async || {
            let s = api.request::<m::SectorsStatus>((sector.number, Some(false))).await.ok()?;
            assert!(!s.state.contains("Failed"), "the sector failed: {} ({})", s.state, s.last_err);
            (s.state == "Proving").then_some(s)
        })
        .await;
        let log: Vec<&str> = status.log.iter().map(|l| l.message.as_str()).collect();
        assert!(log.iter().any(|l| l.contains("PC1 on in-process-w")), "PreCommit1 ran on the worker: {log:#?}");

        worker_daemon.stop().await;
        miner_daemon.stop().await;
        devnet.stop().await;
        drop(api);
        // Every task a daemon spawned was tracked and awaited when it stopped (the client's
        // pooled connections end once their servers closed them).
        let metrics = tokio::runtime::Handle::current().metrics();
        let deadline = Instant::now() + Duration::from_secs(10);
        while metrics.num_alive_tasks() > 0 {
            let n = metrics.num_alive_tasks();
            assert!(Instant::now() < deadline, "{n} tasks still run 10 s after every daemon stopped");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}
