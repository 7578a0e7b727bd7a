//! Start real `lotus-devnet`, `lotus-miner` and `lotus-worker` processes on loopback.
#![allow(dead_code)]

pub mod snap;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A devnet fast enough for tests: 500 ms epochs, a 4-epoch seed delay, 3 deadlines of 16
/// epochs, no elections. The last section of a config, so a test may add its own keys below.
pub const QUICK_DEVNET: &str = "[Devnet]
  BlockDelay = \"500ms\"
  SeedDelayEpochs = 4
  WPoStPeriodDeadlines = 3
  WPoStChallengeWindow = 16
  WPoStChallengeLookback = 2
  WinRate = 0.0
";

pub const MINER: &str = env!("CARGO_BIN_EXE_lotus-miner");
pub const WORKER: &str = env!("CARGO_BIN_EXE_lotus-worker");
pub const DEVNET: &str = env!("CARGO_BIN_EXE_lotus-devnet");

/// The devnet node a cluster's miner reaches the chain through, and the flags of its chain.
pub struct Devnet {
    pub proc: Proc,
    pub flags: Vec<String>,
    /// `FULLNODE_API_INFO` for it.
    pub api_info: String,
}

/// The chain keys the tests' configs carry in `[Devnet]` (the miner's config had them when it
/// carried its chain), as `lotus-devnet daemon` flags.
const CHAIN_KEYS: &[(&str, &str)] = &[
    ("BlockDelay", "--block-delay"),
    ("SeedDelayEpochs", "--pre-commit-challenge-delay"),
    ("WPoStPeriodDeadlines", "--wpost-period-deadlines"),
    ("WPoStChallengeWindow", "--wpost-challenge-window"),
    ("WPoStChallengeLookback", "--wpost-challenge-lookback"),
    ("WinRate", "--win-rate"),
    ("WorkerKeyChangeDelay", "--worker-key-change-delay"),
];

/// A config text without its chain keys, and those keys as devnet flags.
pub fn split_chain_keys(config: &str) -> (String, Vec<String>) {
    let mut flags = vec![];
    let mut out = String::new();
    for line in config.lines() {
        let t = line.trim();
        let key = t.split('=').next().unwrap_or("").trim();
        if let Some((_, flag)) = CHAIN_KEYS.iter().find(|(k, _)| *k == key) {
            let value = t.split_once('=').map(|(_, v)| v.trim().trim_matches('"')).unwrap_or("");
            flags.push(format!("{flag}={value}"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    flags.sort();
    (out, flags)
}

/// A config with `[Chain] MessageConfidence = 1` (unless it sets it): the devnet never forks,
/// so one epoch on top of a message is enough, and the tests' sectors do not wait five.
pub fn with_confidence(config: &str) -> String {
    if config.contains("MessageConfidence =") && !config.contains("#MessageConfidence =") {
        return config.to_string();
    }
    if config.contains("[Chain]\n") {
        config.replacen("[Chain]\n", "[Chain]\n  MessageConfidence = 1\n", 1)
    } else {
        format!("{config}\n[Chain]\n  MessageConfidence = 1\n")
    }
}

/// Start a devnet node in `dir` with `flags` and wait for its API.
pub fn start_devnet(dir: &Path, flags: &[String], mock: bool) -> Devnet {
    std::fs::create_dir_all(dir).unwrap();
    let log = dir.join(format!("devnet-{}.log", nanos()));
    let f = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new(DEVNET);
    cmd.env("LOTUS_DEVNET_PATH", dir.join("repo"))
        .env("RUST_LOG", "info")
        .args(["daemon", "--listen", "127.0.0.1:0"])
        .args(flags)
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .stdin(Stdio::null());
    if mock {
        cmd.arg("--mock-proofs");
    }
    let _ = std::fs::remove_file(dir.join("repo/api"));
    let proc = Proc { child: cmd.spawn().unwrap(), log };
    wait_or_show(Duration::from_secs(20), "the devnet's api file", || proc.log(), || dir.join("repo/api").exists());
    let out = Command::new(DEVNET)
        .env("LOTUS_DEVNET_PATH", dir.join("repo"))
        .args(["auth", "api-info", "--perm", "admin"])
        .output()
        .unwrap();
    assert!(out.status.success(), "lotus-devnet auth api-info: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let api_info = text.trim().strip_prefix("FULLNODE_API_INFO=").expect("api-info output").to_string();
    Devnet { proc, flags: flags.to_vec(), api_info }
}

/// A child process killed when dropped.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `host:port` from a repo's `api` file (`/ip4/127.0.0.1/tcp/2345/http`), once the daemon
/// wrote it: daemons bind port 0 in tests and say which port they got there.
pub fn api_addr(repo: &Path) -> String {
    let file = repo.join("api");
    let mut text = String::new();
    wait_until(Duration::from_secs(20), &format!("{} to be written", file.display()), || {
        text = std::fs::read_to_string(&file).unwrap_or_default();
        text.split('/').nth(4).is_some_and(|p| p.parse::<u16>().is_ok())
    });
    let parts: Vec<&str> = text.trim().split('/').collect();
    format!("{}:{}", parts[2], parts[4])
}

/// A miner `config.toml` whose own worker seals nothing (every sealing task goes to the
/// workers), then `rest`: more `[Storage]` keys and the other sections.
pub fn seals_nothing_config(rest: &str) -> String {
    let off = [
        "AllowSectorDownload",
        "AllowAddPiece",
        "AllowPreCommit1",
        "AllowPreCommit2",
        "AllowCommit",
        "AllowUnseal",
        "AllowReplicaUpdate",
        "AllowProveReplicaUpdate2",
        "AllowRegenSectorKey",
    ];
    let storage: String = off.iter().map(|k| format!("  {k} = false\n")).collect();
    format!("[Storage]\n{storage}{rest}")
}

/// A mock-proof miner whose own worker seals nothing (`rest`: the other sections, with a
/// `[Devnet]` one), and one worker, `host-w`, registered with its path attached.
pub fn mock_miner_and_host_w(rest: &str) -> (Cluster, Proc, Proc) {
    let c = Cluster::mock("");
    c.write_config(&seals_nothing_config(rest));
    let miner = c.start_miner();
    let w = c.start_worker("worker", &["run", "--listen", "127.0.0.1:0", "--name", "host-w"]);
    let urls = || c.miner_ok(&["storage", "list"]).matches("URL: ").count();
    wait_or_show(Duration::from_secs(30), "the worker's path attached", || miner.log(), || urls() == 2);
    (c, miner, w)
}

/// A miner repo and the environment to reach it.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    /// The miner's API port: 0 until it first starts (it binds port 0 and the port it got is
    /// read back from its `api` file), then kept, so workers find a restarted miner again.
    port: std::sync::atomic::AtomicU16,
    /// The mock proof backend's task durations (`"C2=10s"`), or `None` for real proofs.
    pub mock: Option<String>,
    /// The chain, and the `init` args the miner repo was made with (to make it again on a
    /// new chain when a config asks for another chain shape).
    pub devnet: std::sync::Mutex<Option<Devnet>>,
    init_args: Vec<String>,
}

impl Cluster {
    /// A cluster that computes real proofs.
    pub fn new() -> Cluster {
        Self::init(None)
    }

    /// A cluster on the mock proof backend (no proof work), each task taking `durations`
    /// (`"PC1=1s,C2=10s"`): for tests whose subject is not the proof. Its config (through
    /// [`Cluster::write_config`]) and its workers (through [`Cluster::start_worker`]) are set
    /// up for it.
    pub fn mock(durations: &str) -> Cluster {
        Self::init(Some(durations.to_string()))
    }

    /// A mock-proof cluster whose miner has no storage path of its own (`init
    /// --no-local-storage`): every file stays on the workers.
    pub fn mock_without_miner_storage(durations: &str) -> Cluster {
        Self::init_with(Some(durations.to_string()), &["--no-local-storage"])
    }

    fn init(mock: Option<String>) -> Cluster {
        Self::init_with(mock, &[])
    }

    /// A mock-proof cluster whose miner was initialised with these extra `init` args.
    pub fn mock_with_init(durations: &str, args: &[&str]) -> Cluster {
        Self::init_with(Some(durations.to_string()), args)
    }

    /// The devnet's repo.
    pub fn devnet_repo(&self) -> PathBuf {
        self.devnet.lock().unwrap().as_ref().expect("a devnet").proc.log.parent().unwrap().join("repo")
    }

    /// The devnet's chain state, as it saved it (`chain.json`).
    pub fn chain_state(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.devnet_repo().join("chain.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// How many messages calling `method` the devnet took in (pending or executed).
    pub fn messages_with_method(&self, method: u64) -> usize {
        let st = self.chain_state();
        let executed = st["executed"].as_object().unwrap().values().map(|e| &e["message"]);
        let pending = st["pending"].as_array().unwrap().iter().map(|p| &p["message"]);
        executed.chain(pending).filter(|m| m["Message"]["Method"] == method).count()
    }

    /// `lotus-devnet` with this cluster's devnet repo.
    pub fn devnet_cmd(&self, args: &[&str]) -> Output {
        Command::new(DEVNET).env("LOTUS_DEVNET_PATH", self.devnet_repo()).args(args).output().unwrap()
    }

    fn init_with(mock: Option<String>, args: &[&str]) -> Cluster {
        let c = Cluster {
            dir: tempfile::tempdir().unwrap(),
            port: 0.into(),
            mock,
            devnet: Default::default(),
            init_args: args.iter().map(|a| a.to_string()).collect(),
        };
        c.new_chain(&[]);
        c
    }

    /// A new devnet with these flags, and a new miner repo initialised against it.
    fn new_chain(&self, flags: &[String]) {
        let old = self.devnet.lock().unwrap().take();
        drop(old);
        let n = nanos();
        let dn = start_devnet(&self.path(&format!("devnet-{n}")), flags, self.mock.is_some());
        *self.devnet.lock().unwrap() = Some(dn);
        let _ = std::fs::remove_dir_all(self.path("miner"));
        let args: Vec<&str> = self.init_args.iter().map(String::as_str).collect();
        let out = self.miner_cmd(&[&["init", "--sector-size", "2KiB", "--confidence", "1"][..], &args].concat());
        assert!(out.status.success(), "init failed: {}", String::from_utf8_lossy(&out.stderr));
        let config = self.path("miner/config.toml");
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(&config, with_confidence(&text)).unwrap();
    }

    /// `FULLNODE_API_INFO` of the cluster's devnet.
    pub fn full_node(&self) -> String {
        self.devnet.lock().unwrap().as_ref().map(|d| d.api_info.clone()).unwrap_or_default()
    }

    /// Write the miner's `config.toml`; a mock cluster's gets `[Devnet] MockProofs` and its
    /// durations added (the text must have a `[Devnet]` section). Chain keys in `[Devnet]`
    /// (`BlockDelay`, …) are the devnet's: when they differ from the running devnet's, the
    /// cluster starts a devnet with them and makes its miner repo again on it.
    pub fn write_config(&self, config: &str) {
        let (config, flags) = split_chain_keys(config);
        let current = self.devnet.lock().unwrap().as_ref().map(|d| d.flags.clone()).unwrap_or_default();
        let shape = |f: &[String]| f.iter().filter(|x| !x.starts_with("--win-rate")).cloned().collect::<Vec<_>>();
        if shape(&flags) != shape(&current) {
            self.new_chain(&flags);
        } else if flags != current {
            // Only the election's win rate changed: the same chain, restarted with it.
            let mut dn = self.devnet.lock().unwrap();
            let dir = dn.as_ref().unwrap().proc.log.parent().unwrap().to_path_buf();
            *dn = None;
            *dn = Some(start_devnet(&dir, &flags, self.mock.is_some()));
        }
        let config = with_confidence(&config);
        let config = config.as_str();
        let text = match &self.mock {
            None => config.to_string(),
            Some(d) => {
                assert!(config.contains("[Devnet]\n"), "a mock cluster's config needs a [Devnet] section");
                config.replacen(
                    "[Devnet]\n",
                    &format!("[Devnet]\n  MockProofs = true\n  MockTaskDurations = \"{d}\"\n"),
                    1,
                )
            }
        };
        std::fs::write(self.path("miner/config.toml"), text).unwrap();
    }

    /// The miner's API port (after [`Cluster::start_miner`]).
    pub fn port(&self) -> u16 {
        let p = self.port.load(std::sync::atomic::Ordering::SeqCst);
        assert_ne!(p, 0, "the miner has not started yet");
        p
    }

    /// The address a worker started with `--listen 127.0.0.1:0` got (from its repo's `api`).
    pub fn worker_addr(&self, repo: &str) -> String {
        api_addr(&self.path(repo))
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn miner_env(&self, cmd: &mut Command) {
        cmd.env("LOTUS_MINER_PATH", self.path("miner"))
            .env(
                "LOTUS_API_LISTENADDRESS",
                format!("/ip4/127.0.0.1/tcp/{}/http", self.port.load(std::sync::atomic::Ordering::SeqCst)),
            )
            .env_remove("MINER_API_INFO")
            .env("FULLNODE_API_INFO", self.full_node())
            .env_remove("STORAGE_API_INFO")
            .env("LOTUS_BACKUP_BASE_PATH", self.path("backups"))
            .env("RUST_LOG", "info");
    }

    pub fn miner_cmd(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(MINER);
        self.miner_env(&mut cmd);
        cmd.args(args).output().unwrap()
    }

    /// A miner command with some of its environment replaced.
    pub fn miner_cmd_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(MINER);
        self.miner_env(&mut cmd);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.args(args).output().unwrap()
    }

    /// Run a miner CLI command, return stdout; panic with stderr on failure.
    pub fn miner_ok(&self, args: &[&str]) -> String {
        let out = self.miner_cmd(args);
        assert!(out.status.success(), "lotus-miner {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn start_miner(&self) -> Proc {
        self.start_miner_with(&[])
    }

    /// [`Cluster::start_miner`] with some of its environment replaced.
    pub fn start_miner_with(&self, env: &[(&str, &str)]) -> Proc {
        let log = self.path(&format!("miner-{}.log", nanos()));
        let mut cmd = Command::new(MINER);
        self.miner_env(&mut cmd);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let f = std::fs::File::create(&log).unwrap();
        cmd.arg("run").stdout(f.try_clone().unwrap()).stderr(f).stdin(Stdio::null());
        // A killed miner leaves its `api` file behind: only the new one's counts.
        let _ = std::fs::remove_file(self.path("miner/api"));
        let p = Proc { child: cmd.spawn().unwrap(), log };
        let addr = wait_or_show_value(
            Duration::from_secs(20),
            "the miner's api file",
            || p.log(),
            || std::fs::read_to_string(self.path("miner/api")).ok().filter(|t| t.split('/').nth(4).is_some()),
        );
        let port: u16 = addr.trim().split('/').nth(4).and_then(|p| p.parse().ok()).expect("a port in the api file");
        self.port.store(port, std::sync::atomic::Ordering::SeqCst);
        wait_until(Duration::from_secs(20), "the miner API to answer", || self.miner_cmd(&["info"]).status.success());
        p
    }

    pub fn api_info(&self) -> String {
        let out = self.miner_ok(&["auth", "api-info", "--perm", "admin"]);
        out.trim().strip_prefix("MINER_API_INFO=").expect("api-info output").to_string()
    }

    pub fn worker_command(&self, repo: &str, args: &[&str]) -> Command {
        self.worker_command_on(repo, args, self.mock.is_some())
    }

    /// A `lotus-worker` command on the mock proof backend (`--mock-proofs` and the cluster's
    /// durations added to `run`) or not, whatever the cluster's backend.
    pub fn worker_command_on(&self, repo: &str, args: &[&str], mock: bool) -> Command {
        let mut cmd = Command::new(WORKER);
        cmd.env("LOTUS_WORKER_PATH", self.path(repo))
            .env("MINER_API_INFO", self.api_info())
            .env("RUST_LOG", "info")
            .env("LOTUS_MINER_PATH", self.path("no-such-miner-repo"))
            .args(args);
        if mock && args.first() == Some(&"run") {
            let d = self.mock.as_deref().unwrap_or("");
            cmd.arg("--mock-proofs").arg(format!("--mock-task-durations={d}"));
        }
        cmd
    }

    pub fn start_worker(&self, repo: &str, args: &[&str]) -> Proc {
        self.start_worker_on(repo, args, self.mock.is_some())
    }

    /// [`Cluster::start_worker`] on the mock proof backend or not (see
    /// [`Cluster::worker_command_on`]).
    pub fn start_worker_on(&self, repo: &str, args: &[&str], mock: bool) -> Proc {
        self.spawn_worker(repo, self.worker_command_on(repo, args, mock))
    }

    /// [`Cluster::start_worker`] with its own `MINER_API_INFO` (a token minted for it).
    pub fn start_worker_as(&self, repo: &str, args: &[&str], api_info: &str) -> Proc {
        let mut cmd = self.worker_command(repo, args);
        cmd.env("MINER_API_INFO", api_info);
        self.spawn_worker(repo, cmd)
    }

    fn spawn_worker(&self, repo: &str, mut cmd: Command) -> Proc {
        let log = self.path(&format!("{repo}-{}.log", nanos()));
        let f = std::fs::File::create(&log).unwrap();
        cmd.stdout(f.try_clone().unwrap()).stderr(f).stdin(Stdio::null());
        Proc { child: cmd.spawn().unwrap(), log }
    }

    /// `sealing workers`, split into one block per worker: (hostname, block text).
    pub fn workers(&self) -> Vec<(String, String)> {
        let out = self.miner_cmd(&["sealing", "workers"]);
        if !out.status.success() {
            return vec![];
        }
        split_workers(&String::from_utf8(out.stdout).unwrap())
    }
}

pub fn split_workers(text: &str) -> Vec<(String, String)> {
    let mut blocks: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Worker ") {
            // "Worker <id>, host <name>[ (disabled)][ (mock proofs)]": names hold no spaces.
            let host = rest.split(", host ").nth(1).and_then(|r| r.split(' ').next()).unwrap_or("").to_string();
            blocks.push((host, format!("{line}\n")));
        } else if let Some(b) = blocks.last_mut() {
            b.1.push_str(line);
            b.1.push('\n');
        }
    }
    blocks
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

/// Poll `cond` every 200 ms; panic after `timeout`. Returns the time it took.
pub fn wait_until(timeout: Duration, what: &str, cond: impl FnMut() -> bool) -> Duration {
    wait_or_show(timeout, what, String::new, cond)
}

/// [`wait_until`], and on a timeout the panic also shows `context()` (a log tail, a CLI view).
pub fn wait_or_show(
    timeout: Duration,
    what: &str,
    context: impl Fn() -> String,
    mut cond: impl FnMut() -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        if cond() {
            return start.elapsed();
        }
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for {what}\n{}", context().trim_end());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Poll `get` every 50 ms until it gives a value; panic (with `context()`) after `timeout`.
pub fn wait_or_show_value<T>(
    timeout: Duration,
    what: &str,
    context: impl Fn() -> String,
    mut get: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = get() {
            return v;
        }
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for {what}\n{}", context().trim_end());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn symlink(target: &str, dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::os::unix::fs::symlink(target, &p).unwrap();
    p
}

/// A sector's state, from `sectors status --json` (empty if it cannot be read).
pub fn sector_state(c: &Cluster, sector: u64) -> String {
    let out = c.miner_cmd(&["sectors", "status", "--json", &sector.to_string()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["State"].as_str().unwrap_or_default().to_string()
}

/// The last `n` lines of a log.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// PIDs of the proof processes (`<binary> proof-task`) whose parent is `parent`.
pub fn proof_children(parent: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            let is_proof = std::fs::read(e.path().join("cmdline"))
                .map(|c| c.split(|b| *b == 0).any(|a| a == b"proof-task"))
                .unwrap_or(false);
            // /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces.
            let ppid = std::fs::read_to_string(e.path().join("stat")).ok().and_then(|st| {
                st.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1)).and_then(|p| p.parse::<u32>().ok())
            });
            is_proof && ppid == Some(parent)
        })
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect()
}

/// Tests that run real Commit2 (which takes both cores) hold this, so they run one at a time
/// within a test binary and each one's timeouts hold on a 2-core machine.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The devnet's full-node API, from the test.
pub struct Chain {
    pub rt: tokio::runtime::Runtime,
    pub client: lotus_api::RpcClient,
}

impl Chain {
    pub fn new(api_info: &str) -> Chain {
        let info = lotus_api::ApiInfo::parse(api_info).unwrap();
        let client = lotus_api::RpcClient::new(
            info.rpc_url().replace("/rpc/v0", "/rpc/v1"),
            Some(info.token.clone()),
            Duration::from_secs(30),
        );
        Chain { rt: tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap(), client }
    }

    pub fn call<M: lotus_api::contract::Method>(&self, p: M::Params) -> M::Result {
        self.rt.block_on(self.client.request::<M>(p)).unwrap_or_else(|e| panic!("{}: {e}", M::NAME))
    }

    pub fn info(&self) -> lotus_api::chain::MinerInfo {
        self.call::<lotus_api::contract::full::StateMinerInfo>((
            lotus_api::chain::Address::id(1000),
            lotus_api::chain::TipSetKey::head(),
        ))
    }

    pub fn head(&self) -> i64 {
        self.call::<lotus_api::contract::full::ChainHead>(()).height
    }

    pub fn new_key(&self) -> lotus_api::chain::Address {
        self.call::<lotus_api::contract::full::WalletNew>(("secp256k1".into(),))
    }

    pub fn id_of(&self, a: lotus_api::chain::Address) -> lotus_api::chain::Address {
        self.call::<lotus_api::contract::full::StateLookupID>((a, lotus_api::chain::TipSetKey::head()))
    }
}

/// Run `lotus-miner args`, which must fail; its stderr.
pub fn miner_fails(c: &Cluster, args: &[&str]) -> String {
    let out = c.miner_cmd(args);
    assert!(!out.status.success(), "lotus-miner {args:?} should fail: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// A tmpfs of `size` bytes mounted on `dir` (created), unmounted when dropped: a small
/// filesystem a test fills up. Needs root.
pub struct Mounted(PathBuf);

impl Mounted {
    pub fn tmpfs(dir: &Path, size: u64) -> Mounted {
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(dir).status();
        assert!(st.is_ok_and(|s| s.success()), "mount -t tmpfs on {}", dir.display());
        Mounted(dir.to_path_buf())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// `/debug/metrics` of the daemon at `addr`, parsed as Prometheus scrapes it (no token).
pub fn scrape(addr: &str) -> prometheus_parse::Scrape {
    let url = format!("http://{addr}/debug/metrics");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (status, kind, body) = rt.block_on(async {
        // No token: a Prometheus scraper carries none, and Lotus asks for none here.
        let r = reqwest::Client::new().get(&url).timeout(Duration::from_secs(10)).send().await.unwrap();
        let kind = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        (r.status().as_u16(), kind, r.text().await.unwrap())
    });
    assert_eq!(status, 200, "{url}: {body}");
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{url}: content type {kind}");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("{url}: {e}\n{body}"))
}

pub fn number(v: &prometheus_parse::Value) -> f64 {
    use prometheus_parse::Value::*;
    match v {
        Counter(x) | Gauge(x) | Untyped(x) => *x,
        Histogram(b) => b.last().map(|c| c.count).unwrap_or(0.0),
        Summary(_) => f64::NAN,
    }
}

/// The sum of a metric's samples whose labels include `labels`; `None` if it has none.
pub fn sum(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let hits: Vec<f64> = s
        .samples
        .iter()
        .filter(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| number(&x.value))
        .collect();
    (!hits.is_empty()).then(|| hits.iter().sum())
}

/// How many tasks of the worker API `method` (`SealCommit2`) the worker in `repo` has started
/// in its current process, from its own metrics (`lotus_worker_tasks_started`).
pub fn tasks_started(c: &Cluster, repo: &str, method: &str) -> u64 {
    let s = scrape(&c.worker_addr(repo));
    sum(&s, "lotus_worker_tasks_started", &[("method", method)]).unwrap_or(0.0) as u64
}

/// The same for tasks that finished with a result (`lotus_worker_tasks_finished`, outcome
/// `ok`), counted before the result is delivered.
pub fn tasks_done(c: &Cluster, repo: &str, method: &str) -> u64 {
    let s = scrape(&c.worker_addr(repo));
    sum(&s, "lotus_worker_tasks_finished", &[("method", method), ("outcome", "ok")]).unwrap_or(0.0) as u64
}
