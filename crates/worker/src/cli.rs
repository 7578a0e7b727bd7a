//! The `lotus-worker` command line (also answers to its old name, `lotus-seal-worker`).

use crate::daemon::{self, Settings};
use crate::tasks::{self, TaskFlags};
use anyhow::{bail, Context, Result};
use clap::{ArgAction, Args, Parser, Subcommand};
use lotus_api::{ApiInfo, RpcClient};
use lotus_node::repo::{self, Repo, RepoKind};
use sealing_types::resources::{list_env, ListMode};
use sealing_types::{TaskType, WorkerInfo};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "lotus-worker", version = crate::VERSION, about = "Filecoin seal worker: runs sealing phases for a lotus-miner")]
pub struct Cli {
    /// Worker repo [env: LOTUS_WORKER_PATH, WORKER_PATH] [default: ~/.lotusworker]
    #[arg(long = "worker-repo", alias = "workerrepo", global = true)]
    pub worker_repo: Option<PathBuf>,
    /// Miner repo, to take the miner's address and token from when MINER_API_INFO is not set
    /// [env: LOTUS_MINER_PATH, LOTUS_STORAGE_PATH] [default: ~/.lotusminer; ~/.lotusstorage as lotus-storage-miner]
    #[arg(long = "miner-repo", alias = "storagerepo", global = true)]
    pub miner_repo: Option<PathBuf>,
    /// Prove on GPUs when present; false sets BELLMAN_NO_GPU for the proofs library
    #[arg(long, env = "LOTUS_WORKER_ENABLE_GPU_PROVING", default_value_t = true, action = ArgAction::Set, global = true)]
    pub enable_gpu_proving: bool,
    /// `info` prints the worker's answers as JSON instead of text
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Start the worker
    Run(RunArgs),
    /// Print information about the running worker
    Info,
    /// Print the resource table this worker would report (KEY=VALUE)
    Resources {
        /// Defaults overlaid with the variables set in this environment
        #[arg(long)]
        all: bool,
        /// Only the defaults
        #[arg(long)]
        default: bool,
    },
    /// Enable or disable task types on the running worker
    Tasks {
        #[command(subcommand)]
        cmd: TasksCmd,
    },
    /// Stop the running worker: it takes no new tasks, finishes the running ones, delivers their
    /// results, then exits (the miner requeues what was assigned but not started)
    Stop {
        /// Exit at once; the miner runs the interrupted tasks again elsewhere
        #[arg(long)]
        now: bool,
    },
    /// Make sure proof parameters for a sector size are in FIL_PROOFS_PARAMETER_CACHE
    /// (2KiB and 8MiB are generated locally: devnet only)
    FetchParams {
        /// 2KiB or 8MiB
        size: String,
    },
    /// Storage paths of this worker
    Storage {
        #[command(subcommand)]
        cmd: StorageCmd,
    },
    /// Change settings of the running worker
    Set {
        /// false makes the miner stop giving it work (its heartbeat reports disabled)
        #[arg(long, action = ArgAction::Set)]
        enabled: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum StorageCmd {
    /// Attach a storage path to this worker (sealing scratch space, or long-term storage)
    Attach(lotus_node::attach::AttachArgs),
    /// detach local storage path
    Detach(lotus_node::attach::DetachArgs),
    /// redeclare sectors in a local storage path
    Redeclare(lotus_node::attach::RedeclareArgs),
}

#[derive(Subcommand, Debug)]
pub enum TasksCmd {
    Enable {
        #[arg(long)]
        all: bool,
        /// UNS, C2, PC2, PC1, PR2, RU, AP, DC, GSK
        types: Vec<String>,
    },
    Disable {
        #[arg(long)]
        all: bool,
        types: Vec<String>,
    },
}

#[derive(Args, Debug)]
/// Task switches take `--flag` or `--flag=true|false`, as the guides write them.
pub struct RunArgs {
    /// host:port to listen on
    #[arg(long, env = "LOTUS_WORKER_LISTEN", alias = "address", default_value = "0.0.0.0:3456")]
    pub listen: String,
    /// Do not use the worker repo as a storage path
    #[arg(long, env = "LOTUS_WORKER_NO_LOCAL_STORAGE")]
    pub no_local_storage: bool,
    /// Report no swap to the scheduler
    #[arg(long, env = "LOTUS_WORKER_NO_SWAP")]
    pub no_swap: bool,
    /// Worker name shown by `sealing workers` [default: hostname]
    #[arg(long, env = "LOTUS_WORKER_NAME")]
    pub name: Option<String>,
    /// enable addpiece (default: true)
    #[arg(long, alias = "add-piece", env = "LOTUS_WORKER_ADDPIECE", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub addpiece: Option<bool>,
    /// enable datacid (default: same as --addpiece)
    #[arg(long = "data-cid", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub datacid: Option<bool>,
    /// enable precommit1 (32G sectors: 1 core, 128GiB Memory) (default: true)
    #[arg(long, env = "LOTUS_WORKER_PRECOMMIT1", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub precommit1: Option<bool>,
    /// enable unsealing (32G sectors: 1 core, 128GiB Memory) (default: true)
    #[arg(long, env = "LOTUS_WORKER_UNSEAL", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub unseal: Option<bool>,
    /// enable precommit2 (32G sectors: all cores, 96GiB Memory) (default: true)
    #[arg(long, env = "LOTUS_WORKER_PRECOMMIT2", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub precommit2: Option<bool>,
    /// enable commit (32G sectors: all cores or GPUs, 128GiB Memory + 64GiB swap) (default: true)
    #[arg(long, env = "LOTUS_WORKER_COMMIT", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub commit: Option<bool>,
    /// enable replica update (default: true)
    #[arg(long, env = "LOTUS_WORKER_REPLICA_UPDATE", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub replica_update: Option<bool>,
    /// enable prove replica update 2 (default: true)
    #[arg(long, env = "LOTUS_WORKER_PROVE_REPLICA_UPDATE2", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub prove_replica_update2: Option<bool>,
    /// enable regen sector key (default: true)
    #[arg(long, env = "LOTUS_WORKER_REGEN_SECTOR_KEY", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub regen_sector_key: Option<bool>,
    /// enable external sector data download (default: false)
    #[arg(long, env = "LOTUS_WORKER_SECTOR_DOWNLOAD", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub sector_download: Option<bool>,
    /// enable window post (a PoSt-only worker) (default: false)
    #[arg(long, env = "LOTUS_WORKER_WINDOWPOST", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub windowpost: Option<bool>,
    /// enable winning post (a PoSt-only worker) (default: false)
    #[arg(long, env = "LOTUS_WORKER_WINNINGPOST", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub winningpost: Option<bool>,
    /// Only enable the task types given explicitly
    #[arg(long, env = "LOTUS_WORKER_NO_DEFAULT")]
    pub no_default: bool,
    /// Maximum fetches at once
    #[arg(long, env = "LOTUS_WORKER_PARALLEL_FETCH_LIMIT", default_value_t = 5)]
    pub parallel_fetch_limit: u64,
    /// Maximum parallel challenge reads for PoSt
    #[arg(long, env = "LOTUS_WORKER_POST_PARALLEL_READS", default_value_t = 32)]
    pub post_parallel_reads: u64,
    /// Time limit for reading one sector's PoSt challenges (e.g. "30s"); a sector over it is
    /// skipped as faulty in a WindowPoSt instead of holding up its partition. 0 = no limit
    /// (the deadline still bounds the whole proof)
    #[arg(long, env = "LOTUS_WORKER_POST_READ_TIMEOUT", default_value = "0s")]
    pub post_read_timeout: String,
    /// Prove on the CPU even with GPUs (also: LOTUS_WORKER_ENABLE_GPU_PROVING=false); the worker
    /// then reports no GPUs
    #[arg(long, env = "LOTUS_WORKER_NO_GPU")]
    pub no_gpu: bool,
    /// Niceness (0-19) of this worker's sealing proof processes, so that a WindowPoSt on the same
    /// machine gets the CPU first; 0 runs them at normal priority
    #[arg(long, env = "LOTUS_WORKER_SEALING_NICE", default_value_t = 10, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub sealing_nice: i32,
    /// How long to wait for the miner API at start
    #[arg(long, env = "LOTUS_WORKER_TIMEOUT", default_value = "30m")]
    pub timeout: String,
    /// How long a request's headers may take to arrive, from its first byte (Lotus's
    /// ReadHeaderTimeout); a slower client's connection is closed
    #[arg(long, env = "LOTUS_WORKER_HTTP_SERVER_TIMEOUT", default_value = "30s")]
    pub http_server_timeout: String,
    /// TESTS ONLY: compute no proofs (the mock backend); only a miner with
    /// `[Devnet] MockProofs = true` takes this worker
    #[arg(long, env = "LOTUS_WORKER_MOCK_PROOFS")]
    pub mock_proofs: bool,
    /// With --mock-proofs: how long each mock task takes, e.g. "PC1=2s,C2=30s"
    #[arg(long, env = "LOTUS_WORKER_MOCK_TASK_DURATIONS", default_value = "", requires = "mock_proofs")]
    pub mock_task_durations: String,
}

/// The worker's repo and the miner's a command line names (flags, else the environment,
/// else the guides' defaults).
fn repos_of(cli: &Cli) -> (Repo, Repo) {
    let worker_repo = Repo::new(
        repo::resolve_path(cli.worker_repo.as_deref(), &["LOTUS_WORKER_PATH", "WORKER_PATH"], &[".lotusworker"]),
        RepoKind::Worker,
    );
    let miner_repo = Repo::new(
        repo::resolve_path(
            cli.miner_repo.as_deref(),
            &["LOTUS_MINER_PATH", "LOTUS_STORAGE_PATH"],
            repo::miner_repo_defaults(),
        ),
        RepoKind::Miner,
    );
    (worker_repo, miner_repo)
}

/// `lotus-worker run …` (`args[0]` is the program's name), parsed as the binary parses it,
/// to run in this process: tests start a whole cluster in one process with it. It serves on
/// the host's listener when it gives one (else on `--listen`) until the host's shutdown
/// fires. Unlike the binary it sets no environment (`--enable-gpu-proving=false`): the process's environment is
/// the caller's. A bad command line, or another command, fails here, before anything runs.
pub fn in_process(args: &[&str], host: lotus_node::daemon::Host) -> Result<lotus_node::daemon::Running> {
    let cli = Cli::try_parse_from(args)?;
    let (worker_repo, miner_repo) = repos_of(&cli);
    let Cmd::Run(a) = cli.cmd else { bail!("in_process runs `lotus-worker run`") };
    Ok(Box::pin(run(a, worker_repo, miner_repo, host.listener, host.shutdown)))
}

pub fn main() -> Result<()> {
    let cli = Cli::parse();
    if !cli.enable_gpu_proving {
        // SAFETY: set before any thread is started.
        unsafe { std::env::set_var("BELLMAN_NO_GPU", "true") };
    }
    let (worker_repo, miner_repo) = repos_of(&cli);
    if let Cmd::FetchParams { size } = &cli.cmd {
        // Before the runtime starts: it points the proofs library at a temporary directory.
        return lotus_node::params::fetch(size).map_err(|e| anyhow::anyhow!(e));
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(dispatch(cli.cmd, worker_repo, miner_repo, cli.json))
}

async fn dispatch(cmd: Cmd, worker_repo: Repo, miner_repo: Repo, json: bool) -> Result<()> {
    match cmd {
        Cmd::Run(a) => run(a, worker_repo, miner_repo, None, std::sync::Arc::default()).await,
        Cmd::Info => info(&worker_repo, json).await,
        Cmd::Resources { all, default } => {
            let mode = match (all, default) {
                (true, true) => bail!("--all and --default cannot be combined"),
                (true, false) => ListMode::All,
                (false, true) => ListMode::Default,
                (false, false) => ListMode::Set,
            };
            for line in list_env(mode, &|k| std::env::var(k).ok())? {
                println!("{line}");
            }
            Ok(())
        }
        Cmd::Tasks { cmd } => {
            let (method, all, types) = match cmd {
                TasksCmd::Enable { all, types } => ("TaskEnable", all, types),
                TasksCmd::Disable { all, types } => ("TaskDisable", all, types),
            };
            let allowed = ["UNS", "C2", "PC2", "PC1", "PR2", "RU", "AP", "DC", "GSK"];
            let types: Vec<TaskType> = if all {
                allowed.iter().filter_map(|s| TaskType::from_short(s)).collect()
            } else {
                if types.is_empty() {
                    bail!("name at least one task type ({}), or pass --all", allowed.join(", "));
                }
                types
                    .iter()
                    .map(|s| match TaskType::from_short(s) {
                        Some(t) if allowed.contains(&t.short()) => Ok(t),
                        _ => bail!("{s:?} cannot be enabled or disabled: expected one of {}", allowed.join(", ")),
                    })
                    .collect::<Result<_>>()?
            };
            let c = worker_client(&worker_repo)?;
            for t in types {
                c.call::<()>(method, json!([t.as_str()])).await?;
            }
            Ok(())
        }
        Cmd::FetchParams { .. } => unreachable!("handled before the runtime starts"),
        Cmd::Stop { now } => {
            let c = worker_client(&worker_repo)?;
            c.call::<()>("Shutdown", json!([now])).await?;
            // Return once the process is gone (its repo lock released), so that a `run` right
            // after `stop` finds the repo free. Draining lasts as long as the running tasks.
            let started = std::time::Instant::now();
            let mut said = Duration::ZERO;
            loop {
                if !worker_repo.is_locked() {
                    println!("worker stopped");
                    return Ok(());
                }
                if now && started.elapsed() > Duration::from_secs(30) {
                    bail!("the worker accepted the stop request but is still running after 30 s");
                }
                if !now && started.elapsed() >= said {
                    if let Ok(calls) = c.call::<Vec<sealing_types::CallId>>("Calls", json!([])).await {
                        let what: Vec<String> = calls
                            .iter()
                            .map(|c| format!("sector {} (call {})", c.sector.number, &c.id.to_string()[..8]))
                            .collect();
                        println!(
                            "worker draining, {:.0} s: waiting for {} task(s) running or awaiting delivery: {}; it exits when they are done (Ctrl-C leaves it draining; `lotus-worker stop --now` stops it at once)",
                            started.elapsed().as_secs_f64(),
                            calls.len(),
                            what.join(", ")
                        );
                    }
                    said += Duration::from_secs(10);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Cmd::Storage { cmd: StorageCmd::Attach(a) } => {
            let path = lotus_node::attach::prepare_attach(&a)?;
            worker_client(&worker_repo)?.call::<()>("StorageAddLocal", json!([path])).await?;
            println!("attached {}", path.display());
            Ok(())
        }
        Cmd::Storage { cmd: StorageCmd::Detach(a) } => {
            let path = a.checked()?;
            worker_client(&worker_repo)?.request::<lotus_api::contract::worker::StorageDetachLocal>((path,)).await?;
            Ok(())
        }
        Cmd::Storage { cmd: StorageCmd::Redeclare(a) } => {
            let params = a.params()?;
            worker_client(&worker_repo)?.request::<lotus_api::contract::worker::StorageRedeclareLocal>(params).await?;
            Ok(())
        }
        Cmd::Set { enabled } => {
            worker_client(&worker_repo)?.call::<()>("SetEnabled", json!([enabled])).await?;
            Ok(())
        }
    }
}

/// `MINER_API_INFO` (or the old `STORAGE_API_INFO`), else the local miner repo's api+token,
/// as the oldest guide promises for a worker on the miner's machine.
fn miner_api_info(miner_repo: &Repo) -> Result<ApiInfo> {
    for var in ["MINER_API_INFO", "STORAGE_API_INFO"] {
        if let Ok(v) = std::env::var(var) {
            if !v.trim().is_empty() {
                let info = ApiInfo::parse(&v).with_context(|| format!("in ${var}"))?;
                if info.token.is_empty() {
                    bail!("${var} has no token: it must be TOKEN:ADDRESS as printed by `lotus-miner auth api-info --perm admin`");
                }
                return Ok(info);
            }
        }
    }
    let (Ok(token), Ok(addr)) = (miner_repo.token(), miner_repo.api_addr()) else {
        bail!(
            "MINER_API_INFO is not set, and no running miner was found in {}.\n\
             On the miner run `lotus-miner auth api-info --perm admin` and export its output on this machine, e.g.\n  export MINER_API_INFO=<token>:/ip4/<miner-ip>/tcp/2345/http",
            miner_repo.path.display()
        );
    };
    Ok(ApiInfo::parse(&format!("{token}:{addr}"))?)
}

async fn run(
    a: RunArgs,
    worker_repo: Repo,
    miner_repo: Repo,
    listener: Option<tokio::net::TcpListener>,
    shutdown: std::sync::Arc<tokio::sync::Notify>,
) -> Result<()> {
    let flags = TaskFlags {
        addpiece: a.addpiece,
        datacid: a.datacid,
        precommit1: a.precommit1,
        unseal: a.unseal,
        precommit2: a.precommit2,
        commit: a.commit,
        replica_update: a.replica_update,
        prove_replica_update2: a.prove_replica_update2,
        regen_sector_key: a.regen_sector_key,
        sector_download: a.sector_download,
        windowpost: a.windowpost,
        winningpost: a.winningpost,
    };
    let task_types = tasks::task_types(&flags, a.no_default)?;
    let miner = miner_api_info(&miner_repo)?;
    let connect_timeout =
        lotus_node::config::parse_duration(&a.timeout).map_err(anyhow::Error::msg).context("--timeout")?;
    let post_read_timeout = lotus_node::config::parse_duration(&a.post_read_timeout)
        .map_err(anyhow::Error::msg)
        .context("--post-read-timeout")?;
    let http_server_timeout = lotus_node::config::parse_duration(&a.http_server_timeout)
        .map_err(anyhow::Error::msg)
        .context("--http-server-timeout")?;
    if http_server_timeout.is_zero() {
        anyhow::bail!(
            "--http-server-timeout 0: a request's headers need some time to arrive; give a duration such as 30s"
        );
    }
    let mock = match a.mock_proofs {
        true => Some(
            lotus_node::config::parse_mock_durations(&a.mock_task_durations)
                .map_err(anyhow::Error::msg)
                .context("--mock-task-durations")?,
        ),
        false => None,
    };
    let settings = Settings {
        mock,
        parallel_fetch_limit: a.parallel_fetch_limit as usize,
        post_parallel_reads: a.post_parallel_reads as usize,
        post_read_timeout: (!post_read_timeout.is_zero()).then_some(post_read_timeout),
        http_server_timeout,
        sealing_nice: a.sealing_nice,
        no_gpu: a.no_gpu
            || std::env::var("LOTUS_WORKER_ENABLE_GPU_PROVING")
                .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "false" | "0" | "no")),
        repo: worker_repo,
        miner,
        listen: a.listen,
        name: a.name,
        no_local_storage: a.no_local_storage,
        no_swap: a.no_swap,
        task_types,
        connect_timeout,
    };
    daemon::start(settings, listener, shutdown).await
}

/// A client for this machine's running worker (its repo's `api` and `token`).
fn worker_client(repo: &Repo) -> Result<RpcClient> {
    let addr = repo.api_addr().map_err(|_| {
        anyhow::anyhow!(
            "no running worker found in {} (its api file is missing); start one with `lotus-worker run`, or point LOTUS_WORKER_PATH at its repo",
            repo.path.display()
        )
    })?;
    let info = ApiInfo::parse(&format!("{}:{addr}", repo.token()?))?;
    Ok(RpcClient::new(info.rpc_url(), Some(info.token), Duration::from_secs(30)))
}

async fn info(repo: &Repo, json: bool) -> Result<()> {
    let c = worker_client(repo)?;
    use lotus_api::contract::worker as w;
    let v = c.request::<w::Version>(()).await?;
    let session = c.request::<w::Session>(()).await.unwrap_or_default();
    let enabled = c.request::<w::Enabled>(()).await?;
    let info: WorkerInfo = c.request::<w::Info>(()).await?;
    let mut types: Vec<TaskType> = c.request::<w::TaskTypes>(()).await?.into_keys().collect();
    TaskType::sort_by_order(&mut types);
    let paths = c.request::<w::Paths>(()).await?;
    if json {
        let v = serde_json::json!({
            "Version": v, "CLIVersion": crate::VERSION, "Session": session, "Enabled": enabled,
            "Info": info, "TaskTypes": types.iter().map(|t| t.as_str()).collect::<Vec<_>>(), "Paths": paths,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    use sealing_types::size::size_str;
    let r = &info.resources;
    println!("Worker version:  {}", lotus_api::methods::version_string(v));
    println!("CLI version: {}", crate::VERSION);
    println!("Session: {session}");
    println!("Enabled: {enabled}");
    println!("Hostname: {}", info.hostname);
    println!("CPUs: {}; GPUs: {:?}", r.cpus, r.gpus);
    println!(
        "RAM: {}/{}; Swap: {}/{}",
        size_str(r.mem_used),
        size_str(r.mem_physical),
        size_str(r.mem_swap_used),
        size_str(r.mem_swap)
    );
    let shorts: Vec<&str> = types.iter().map(|t| t.short()).collect();
    println!("Task types: {} ", shorts.join(" "));
    println!();
    for p in paths {
        let uses: Vec<&str> =
            [(p.can_seal, "Seal"), (p.can_store, "Store")].iter().filter(|u| u.0).map(|u| u.1).collect();
        println!("{}:", p.id);
        println!("\tWeight: {}; Use: {}", p.weight, uses.join(" "));
        println!("\tLocal: {}", p.local_path);
    }
    Ok(())
}
