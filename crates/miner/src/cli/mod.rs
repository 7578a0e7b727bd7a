//! The `lotus-miner` command line (also answers to its old name, `lotus-storage-miner`): the
//! top-level commands and their dispatch. The command groups live in the leaves (`proving`,
//! `sectors`), which share the RPC client helpers of `client` and do not use this module.

pub mod actor;
mod client;
pub mod fullnode;
pub mod onchain;
pub mod proving;
pub mod sectors;

pub use client::{client, endpoint, explain, print_json};
pub use sectors::{SectorsCmd, StorageCmd};

use crate::daemon::{self, Metadata};
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use lotus_api::types::WorkerStats;
use lotus_api::{JwtSecret, Permission};
use lotus_node::repo::{self, Repo, RepoKind};
use lotus_node::MinerConfig;
use sealing_types::{SectorSize, WorkerId};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "lotus-miner", version = crate::VERSION, about = "Filecoin storage miner: sealing pipeline, seal workers, storage paths")]
pub struct Cli {
    /// Miner repo [env: LOTUS_MINER_PATH, LOTUS_STORAGE_PATH] [default: ~/.lotusminer; ~/.lotusstorage as lotus-storage-miner]
    #[arg(long = "miner-repo", visible_alias = "repo", alias = "storagerepo", global = true)]
    pub repo: Option<PathBuf>,
    /// Read commands print the API's answer as JSON instead of a table
    #[arg(long, global = true)]
    pub json: bool,
    /// specify other actor to query / manipulate (Lotus's `-a` short form is left out: it
    /// would clash with `proving deadlines -a`)
    #[arg(long, global = true)]
    pub actor: Option<String>,
    /// use color in display output (this CLI prints no colors; accepted for Lotus's scripts)
    #[arg(long, global = true)]
    pub color: bool,
    /// enables very verbose mode, useful for debugging the CLI (debug logs)
    #[arg(long, global = true)]
    pub vv: bool,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Initialise a miner repo (`init restore BACKUP`: from a backup)
    Init {
        #[command(subcommand)]
        restore: Option<InitCmd>,
        /// Sector size: 2KiB, 8MiB, 512MiB, 32GiB or 64GiB
        #[arg(long, default_value = "32GiB")]
        sector_size: String,
        /// Do not use the repo itself as a storage path
        #[arg(long)]
        no_local_storage: bool,
        /// specify the address of an already created miner actor
        #[arg(long)]
        actor: Option<String>,
        /// owner key to use (default: the node's default wallet address)
        #[arg(long)]
        owner: Option<String>,
        /// worker key to use (default: the owner)
        #[arg(long)]
        worker: Option<String>,
        /// create separate worker key
        #[arg(long)]
        create_worker_key: bool,
        /// number of block confirmations to wait for
        #[arg(long, default_value_t = 5)]
        confidence: u64,
        /// don't check full-node sync status
        #[arg(long)]
        nosync: bool,
        /// set gas premium for initialization messages in AttoFIL
        #[arg(long, default_value = "0")]
        gas_premium: String,
        /// select which address to send actor creation message from
        #[arg(long)]
        from: Option<String>,
        /// Multiplier (>=1.0) to scale the suggested deposit for on-chain variance (e.g. 1.01 adds 1%)
        #[arg(long, default_value_t = 1.01)]
        deposit_margin_factor: f64,
    },
    /// Start the miner daemon
    Run {
        /// the API port (listens on 127.0.0.1:PORT instead of `[API] ListenAddress`)
        #[arg(long)]
        miner_api: Option<u16>,
        /// enable use of GPU for mining operations
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
        enable_gpu_proving: bool,
        /// don't check full-node sync status (this miner does not wait for sync)
        #[arg(long)]
        nosync: bool,
        /// manage open file limit (the limit is raised to the hard limit at start)
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
        manage_fdlimit: bool,
    },
    /// Print a link to the web dashboard that logs in with a new read-only token (not in
    /// Lotus, which has no dashboard)
    UiUrl,
    /// Create node metadata backup. For security reasons, the daemon must have
    /// LOTUS_BACKUP_BASE_PATH env var set to a path where backup files are supposed to be saved,
    /// and the backup file path must be in that directory.
    Backup {
        /// create backup without the node running
        #[arg(long)]
        offline: bool,
        /// [backup file path]
        path: PathBuf,
    },
    /// Make sure proof parameters for a sector size are in FIL_PROOFS_PARAMETER_CACHE
    /// (2KiB and 8MiB are generated locally: devnet only)
    FetchParams {
        /// 2KiB or 8MiB
        size: String,
    },
    /// Stop a running miner daemon
    Stop,
    /// Print miner information (`info all`: everything, for a support request)
    Info {
        #[command(subcommand)]
        cmd: Option<InfoCmd>,
        /// hide sectors info
        #[arg(long)]
        hide_sectors_info: bool,
    },
    /// Print version
    Version,
    /// Manage logging
    Log {
        #[command(subcommand)]
        cmd: LogCmd,
    },
    /// Manage node config
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Wait for the miner API to come online
    WaitApi {
        /// duration to wait till fail, e.g. 30s (default: wait for ever)
        #[arg(long)]
        timeout: Option<String>,
    },
    /// Manage API tokens
    Auth {
        #[command(subcommand)]
        cmd: AuthCmd,
    },
    /// Sealing workers, jobs and the scheduler
    Sealing {
        #[command(subcommand)]
        cmd: SealingCmd,
    },
    /// Old name of `sealing workers` (`lotus-storage-miner workers list`)
    Workers {
        #[command(subcommand)]
        cmd: WorkersCmd,
    },
    /// Pledge sectors, show their state, unseal them
    Sectors {
        #[command(subcommand)]
        cmd: SectorsCmd,
    },
    /// Storage paths: attach, list, find a sector
    Storage {
        #[command(subcommand)]
        cmd: StorageCmd,
    },
    /// WindowPoSt deadlines, faults and PoSt workers
    Proving {
        #[command(subcommand)]
        cmd: proving::ProvingCmd,
    },
    /// manipulate the miner actor
    Actor {
        #[command(subcommand)]
        cmd: actor::ActorCmd,
    },
}

#[derive(Subcommand, Debug)]
pub enum InitCmd {
    /// Initialize a lotus miner repo from a backup
    Restore {
        /// config file (config.toml)
        #[arg(long)]
        config: Option<PathBuf>,
        /// storage paths config (storage.json)
        #[arg(long)]
        storage_config: Option<PathBuf>,
        /// don't check full-node sync status (a restore works offline: nothing to wait for)
        #[arg(long)]
        nosync: bool,
        /// [backupFile]
        backup: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum InfoCmd {
    /// dump all related miner info
    All,
}

#[derive(Subcommand, Debug)]
pub enum LogCmd {
    /// List log systems
    List,
    /// Get alert states
    Alerts {
        /// get all (active and inactive) alerts
        #[arg(long)]
        all: bool,
    },
    /// Set log level (debug, info, warn, error), for every log system or those named with
    /// --system
    SetLevel {
        /// limit to log system
        #[arg(long)]
        system: Vec<String>,
        level: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Print default node config
    Default {
        /// don't comment default values
        #[arg(long)]
        no_comment: bool,
    },
    /// Print updated node config
    Updated {
        /// don't comment default values
        #[arg(long)]
        no_comment: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuthCmd {
    /// Create a token
    CreateToken {
        /// read, write, sign or admin (grants the lower ones too)
        #[arg(long)]
        perm: String,
        /// Mint the token for one worker (ours): it may call only what a worker calls, on the
        /// storage paths it attaches and the tasks it was given
        #[arg(long)]
        worker: Option<String>,
    },
    /// Print MINER_API_INFO=<token>:<address> for workers and scripts
    ApiInfo {
        #[arg(long)]
        perm: String,
        /// Mint the token for one worker (ours; see `create-token --worker`)
        #[arg(long)]
        worker: Option<String>,
    },
    /// Replace the API secret (ours): every token minted before is refused; connected workers
    /// of this release are handed new tokens and keep their running tasks
    Rotate {
        /// Required: holders of the old tokens elsewhere (scripts, Lotus workers) need new ones
        #[arg(long)]
        really_do_it: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum SealingCmd {
    /// List workers and their resources
    Workers {
        /// Use colours
        #[arg(long)]
        color: bool,
    },
    /// List running, prepared and assigned jobs
    Jobs {
        #[arg(long)]
        show_ret_done: bool,
    },
    /// Dump the scheduler's state, and why each queued request waits
    SchedDiag {
        #[arg(long)]
        force_sched: bool,
    },
    /// Compute data CID using workers
    DataCid {
        /// real file size
        #[arg(long)]
        file_size: Option<u64>,
        /// [file/url]
        input: String,
        /// <padded piece size>, e.g. 2KiB (default: the smallest piece that holds the file)
        piece_size: Option<String>,
    },
    /// Stop a running job (its proof process on the worker is killed), or with --sched remove a
    /// queued request
    Abort {
        /// The job's ID, or a prefix of it (the ID column of `sealing jobs`)
        #[arg(required_unless_present = "sched")]
        call: Option<String>,
        /// A queued request's SchedId (see `sealing sched-diag`)
        #[arg(long = "sched", conflicts_with = "call")]
        sched: Option<uuid::Uuid>,
    },
}

#[derive(Subcommand, Debug)]
pub enum WorkersCmd {
    /// List workers
    List {
        #[arg(long)]
        color: bool,
    },
}

/// The repo a command line names (`--miner-repo`, else the environment, else the guides'
/// defaults), with the output flags every command reads set.
fn repo_of(cli: &Cli) -> Repo {
    let repo_path = repo::resolve_path(
        cli.repo.as_deref(),
        &["LOTUS_MINER_PATH", "LOTUS_STORAGE_PATH"],
        repo::miner_repo_defaults(),
    );
    client::set_json(cli.json);
    client::set_actor(cli.actor.clone());
    Repo::new(repo_path, RepoKind::Miner)
}

/// `lotus-miner run …` (`args[0]` is the program's name), parsed as the binary parses it, to
/// run in this process: tests start a whole cluster in one process with it. It serves on
/// the host's listener when it gives one (else on `[API] ListenAddress`) until the host's
/// shutdown fires. Unlike the binary it sets no environment (`-vv`, `--enable-gpu-proving=false`): the
/// process's environment is the caller's. A bad command line, or another command, fails here,
/// before anything runs.
pub fn in_process(args: &[&str], host: lotus_node::daemon::Host) -> Result<lotus_node::daemon::Running> {
    let cli = Cli::try_parse_from(args)?;
    let repo = repo_of(&cli);
    let Cmd::Run { miner_api, .. } = cli.cmd else {
        bail!("in_process runs `lotus-miner run`; give other commands to command_in_process");
    };
    Ok(Box::pin(daemon::start(repo, daemon::RunFlags { miner_api }, host.listener, host.shutdown)))
}

/// Any other `lotus-miner` command line, run in this process as the binary runs it (its
/// output goes to this process's stdout).
pub async fn command_in_process(args: &[&str]) -> Result<()> {
    let cli = Cli::try_parse_from(args)?;
    let repo = repo_of(&cli);
    if let Cmd::Run { .. } | Cmd::FetchParams { .. } = cli.cmd {
        bail!("command_in_process runs client commands; start the daemon with in_process");
    }
    dispatch(cli.cmd, repo).await
}

pub fn main() -> Result<()> {
    let cli = Cli::parse();
    let repo = repo_of(&cli);
    if cli.vv && std::env::var_os("RUST_LOG").is_none() {
        // Before any thread starts.
        std::env::set_var("RUST_LOG", "debug");
    }
    if let Cmd::Run { enable_gpu_proving: false, .. } = &cli.cmd {
        // Before any thread starts: the daemon and the proofs library read it.
        std::env::set_var("BELLMAN_NO_GPU", "1");
    }
    if let Cmd::FetchParams { size } = &cli.cmd {
        // Before the runtime starts: it points the proofs library at a temporary directory.
        return lotus_node::params::fetch(size).map_err(|e| anyhow::anyhow!(e));
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(dispatch(cli.cmd, repo))
}

/// `info all`: the sections of Lotus's, in its order, each from the command that shows it
/// (an error is printed in its place and the dump goes on). Lotus's libp2p and message-batch
/// sections have nothing to show here and are left out.
async fn info_all(repo: &Repo) -> Result<()> {
    use crate::cli::proving::ProvingCmd;
    use sectors::{SectorsCmd, StorageCmd, StorageListCmd};
    let sections: Vec<(&str, Cmd)> = vec![
        ("Version", Cmd::Version),
        ("Miner Info", Cmd::Info { cmd: None, hide_sectors_info: false }),
        ("Storage List", Cmd::Storage { cmd: StorageCmd::List { cmd: None } }),
        ("Sealing Worker List", Cmd::Sealing { cmd: SealingCmd::Workers { color: false } }),
        ("Proving Worker List", Cmd::Proving { cmd: ProvingCmd::Workers }),
        ("Proving Info", Cmd::Proving { cmd: ProvingCmd::Info }),
        ("Proving Deadlines", Cmd::Proving { cmd: ProvingCmd::Deadlines { all: false } }),
        ("Sealing Jobs", Cmd::Sealing { cmd: SealingCmd::Jobs { show_ret_done: false } }),
        ("Storage Locks", Cmd::Storage { cmd: StorageCmd::Locks }),
        ("Sched Diag", Cmd::Sealing { cmd: SealingCmd::SchedDiag { force_sched: false } }),
        (
            "Sector List",
            Cmd::Sectors {
                cmd: SectorsCmd::List {
                    show_removed: false,
                    states: vec![],
                    unproven: false,
                    fast: false,
                    events: false,
                    initial_pledge: false,
                    seal_time: false,
                    check_parallelism: 300,
                    cmd: None,
                },
            },
        ),
        ("Storage Sector List", Cmd::Storage { cmd: StorageCmd::List { cmd: Some(StorageListCmd::Sectors) } }),
    ];
    for (i, (title, cmd)) in sections.into_iter().enumerate() {
        println!("{}#: {title}", if i == 0 { "" } else { "\n" });
        if let Err(e) = Box::pin(dispatch(cmd, repo.clone())).await {
            println!("ERROR:  {e:#}");
        }
    }
    Ok(())
}

async fn dispatch(cmd: Cmd, repo: Repo) -> Result<()> {
    match cmd {
        Cmd::Init { restore: Some(InitCmd::Restore { config, storage_config, nosync: _, backup }), .. } => {
            restore(&repo, &backup, config.as_deref(), storage_config.as_deref())
        }
        Cmd::Init {
            restore: None,
            sector_size,
            no_local_storage,
            actor,
            owner,
            worker,
            create_worker_key,
            confidence,
            nosync: _,
            gas_premium,
            from,
            deposit_margin_factor,
        } => {
            if deposit_margin_factor.is_nan() || deposit_margin_factor < 1.0 {
                bail!("--deposit-margin-factor must be at least 1.0, got {deposit_margin_factor}");
            }
            let gas_premium = lotus_api::chain::BigInt(
                gas_premium
                    .parse()
                    .map_err(|_| anyhow::anyhow!("--gas-premium {gas_premium:?} is not an amount of attoFIL"))?,
            );
            let from = match from {
                Some(a) => Some(a.parse().map_err(|e| anyhow::anyhow!("--from {a:?}: {e}"))?),
                None => None,
            };
            let send = crate::chain::CreateMinerSend { from, gas_premium, deposit_margin: deposit_margin_factor };
            let chain = InitChain { actor, owner, worker, create_worker_key, confidence, send };
            init(&repo, &sector_size, no_local_storage, chain).await
        }
        Cmd::Backup { offline: false, path } => {
            let path = std::path::absolute(&path)?;
            let dest = path.display().to_string();
            client(&repo)?.request::<lotus_api::contract::miner::CreateBackup>((dest,)).await.map_err(|e| {
                anyhow::anyhow!("{} (if the node isn't running you can use the --offline flag)", explain(e))
            })?;
            println!("Success");
            Ok(())
        }
        Cmd::Backup { offline: true, path } => {
            repo.require_initialised()?;
            let _lock =
                repo.lock().context("locking repo (is the miner running? then back it up without --offline)")?;
            let db = crate::sealing::Db::open(&repo.file("sealing.db"))?;
            crate::backup::write(&db, &repo, &std::path::absolute(&path)?)?;
            println!("Success");
            Ok(())
        }
        Cmd::Run { miner_api, enable_gpu_proving, nosync: _, manage_fdlimit } => {
            if manage_fdlimit {
                raise_fd_limit();
            }
            let _ = enable_gpu_proving; // read before the runtime started (`main`)
            daemon::run(repo, daemon::RunFlags { miner_api }).await
        }
        Cmd::FetchParams { .. } => unreachable!("handled before the runtime starts"),
        Cmd::Stop => {
            let c = client(&repo)?;
            c.call::<()>("Shutdown", json!([])).await?;
            // Wait until it has let go of its port and, when its repo is on this machine, of the
            // repo lock too: a `run` right after `stop` must not find the repo still locked.
            for _ in 0..300 {
                if c.call::<uuid::Uuid>("Session", json!([])).await.is_err() && !repo.is_locked() {
                    println!("miner stopped");
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            bail!("the miner accepted the stop request but is still running after 30 s")
        }
        Cmd::Info { cmd: None, hide_sectors_info } => info(&repo, hide_sectors_info).await,
        Cmd::Info { cmd: Some(InfoCmd::All), .. } => info_all(&repo).await,
        Cmd::Log { cmd: LogCmd::List } => {
            let systems = client(&repo)?.request::<lotus_api::contract::miner::LogList>(()).await.map_err(explain)?;
            if !print_json(&systems)? {
                for s in systems {
                    println!("{s}");
                }
            }
            Ok(())
        }
        Cmd::Log { cmd: LogCmd::Alerts { all } } => {
            let alerts = client(&repo)?.request::<lotus_api::contract::miner::LogAlerts>(()).await.map_err(explain)?;
            let shown: Vec<_> = alerts.into_iter().filter(|a| all || a.active).collect();
            if !print_json(&shown)? {
                print!("{}", crate::render::alerts(&shown));
            }
            Ok(())
        }
        Cmd::Log { cmd: LogCmd::SetLevel { system, level } } => {
            let Some(level) = level else { bail!("level is required") };
            let c = client(&repo)?;
            let systems = if system.is_empty() {
                c.request::<lotus_api::contract::miner::LogList>(()).await.map_err(explain)?
            } else {
                system
            };
            for s in systems {
                c.request::<lotus_api::contract::miner::LogSetLevel>((s.clone(), level.clone()))
                    .await
                    .map_err(|e| anyhow::anyhow!("setting log level on {s}: {}", explain(e)))?;
            }
            Ok(())
        }
        Cmd::Config { cmd: ConfigCmd::Default { no_comment } } => {
            print!("{}", MinerConfig::default().render(!no_comment, false));
            Ok(())
        }
        Cmd::Config { cmd: ConfigCmd::Updated { no_comment } } => {
            let (cfg, _) = MinerConfig::load(&repo.file("config.toml"), &daemon::env_lookup)?;
            print!("{}", cfg.render(!no_comment, false));
            Ok(())
        }
        Cmd::Version => {
            let v = client(&repo)?.request::<lotus_api::contract::miner::Version>(()).await.map_err(explain)?;
            if print_json(&v)? {
                return Ok(());
            }
            println!("Daemon:  {}+api{}", v.version, lotus_api::methods::version_string(v.api_version));
            println!("Local: lotus-miner version {}", crate::VERSION);
            Ok(())
        }
        Cmd::WaitApi { timeout } => {
            let limit = timeout
                .map(|t| {
                    humantime::parse_duration(&t)
                        .with_context(|| format!("--timeout {t:?} is not a duration (30s, 5m)"))
                })
                .transpose()?;
            let start = std::time::Instant::now();
            loop {
                let up = match client(&repo) {
                    Ok(c) => c.request::<lotus_api::contract::miner::Version>(()).await.is_ok(),
                    Err(_) => false,
                };
                if up {
                    return Ok(());
                }
                if limit.is_some_and(|l| start.elapsed() >= l) {
                    bail!("timed out waiting for api to come online");
                }
                println!("Not online yet... ");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        Cmd::Proving { cmd } => {
            use crate::cli::proving::{render_deadlines, render_info, ProvingCmd};
            // One call: printed as it came with --json, else rendered.
            let view = || async {
                let raw: serde_json::Value = client(&repo)?.call("ProvingInfo", json!([])).await.map_err(explain)?;
                if print_json(&raw)? {
                    return Ok(None);
                }
                anyhow::Ok(Some(serde_json::from_value::<proving::ProvingView>(raw)?))
            };
            match cmd {
                ProvingCmd::Info => {
                    if let Some(v) = view().await? {
                        print!("{}", render_info(&v));
                    }
                }
                ProvingCmd::Deadlines { all } => {
                    if let Some(v) = view().await? {
                        print!("{}", render_deadlines(&v, all));
                    }
                }
                ProvingCmd::Faults => print!("{}", proving::faults(&client(&repo)?).await?),
                ProvingCmd::Check { only_bad, slow: _, storage_id, faulty, deadline } => {
                    print!("{}", onchain::check(&client(&repo)?, deadline, only_bad, faulty, storage_id).await?)
                }
                ProvingCmd::Compute { cmd: proving::ComputeCmd::WindowedPost { deadline } } => {
                    let c = client(&repo)?;
                    let started = std::time::Instant::now();
                    let r = c
                        .request::<lotus_api::contract::miner::ComputeWindowPoSt>((
                            deadline,
                            lotus_api::chain::TipSetKey::head(),
                        ))
                        .await;
                    println!("Took {:?}", started.elapsed());
                    let posts = r.map_err(explain)?;
                    println!("{}", serde_json::to_string_pretty(&posts)?);
                }
                ProvingCmd::RecoverFaults { confidence, sectors } => {
                    onchain::recover_faults(&client(&repo)?, sectors, confidence).await?
                }
                ProvingCmd::Deadline { sector_nums, bitfield, index } => {
                    print!("{}", proving::deadline(&client(&repo)?, index, sector_nums, bitfield).await?)
                }
                ProvingCmd::Workers => {
                    let post: BTreeMap<WorkerId, WorkerStats> = stats(&repo)
                        .await?
                        .into_iter()
                        .filter(|(_, s)| {
                            s.tasks.iter().any(|t| {
                                matches!(
                                    t,
                                    sealing_types::TaskType::GenerateWindowPoSt
                                        | sealing_types::TaskType::GenerateWinningPoSt
                                )
                            })
                        })
                        .collect();
                    if print_json(&post)? {
                        return Ok(());
                    }
                    if post.is_empty() {
                        println!("no PoSt workers connected (start one with `lotus-worker run --windowpost` or `--winningpost`); the miner proves itself unless [Proving] DisableBuiltinWindowPoSt is set");
                    }
                    print!("{}", crate::render::post_workers(&post));
                }
            }
            Ok(())
        }
        Cmd::Auth { cmd } => auth(&repo, cmd).await,
        Cmd::UiUrl => {
            let (url, _) = endpoint(&repo)?;
            let b64: String = client(&repo)?.call("AuthNew", json!([["read"]])).await.map_err(explain)?;
            use base64::Engine;
            let token = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64)?)?;
            println!("{}/ui/?token={token}", url.trim_end_matches("/rpc/v0"));
            Ok(())
        }
        Cmd::Sealing { cmd } => match cmd {
            SealingCmd::Workers { color } => workers(&repo, color).await,
            SealingCmd::Jobs { show_ret_done } => {
                let jobs: BTreeMap<WorkerId, Vec<lotus_api::types::WorkerJob>> =
                    client(&repo)?.call("WorkerJobs", json!([])).await?;
                if !print_json(&jobs)? {
                    print!("{}", crate::render::sealing_jobs(&jobs, show_ret_done));
                }
                Ok(())
            }
            SealingCmd::SchedDiag { force_sched } => {
                let v: serde_json::Value = client(&repo)?.call("SealingSchedDiag", json!([force_sched])).await?;
                println!("{}", serde_json::to_string_pretty(&v)?);
                Ok(())
            }
            SealingCmd::DataCid { file_size, input, piece_size } => {
                data_cid(&repo, file_size, &input, piece_size).await
            }
            SealingCmd::Abort { sched: Some(sched), .. } => {
                client(&repo)?.call::<()>("SealingRemoveRequest", json!([sched])).await?;
                println!("removed scheduling request {sched}");
                Ok(())
            }
            SealingCmd::Abort { call, .. } => {
                let prefix = call.unwrap_or_default().to_lowercase();
                let c = client(&repo)?;
                let jobs: BTreeMap<WorkerId, Vec<lotus_api::types::WorkerJob>> =
                    c.call("WorkerJobs", json!([])).await?;
                let matching: Vec<&lotus_api::types::WorkerJob> = jobs
                    .values()
                    .flatten()
                    .filter(|j| !j.id.id.is_nil() && j.id.id.simple().to_string().starts_with(&prefix))
                    .collect();
                let job = match matching.as_slice() {
                    [j] => *j,
                    [] => bail!("no running job with ID {prefix:?}: see `lotus-miner sealing jobs`"),
                    _ => bail!("{} jobs match {prefix:?}: give more of the ID", matching.len()),
                };
                println!(
                    "aborting job {}, task {}, sector {}, running on host {}",
                    job.id.id,
                    job.task.short(),
                    job.sector.number,
                    job.hostname
                );
                c.call::<()>("SealingAbort", json!([job.id])).await?;
                Ok(())
            }
        },
        Cmd::Workers { cmd: WorkersCmd::List { color } } => workers(&repo, color).await,
        Cmd::Sectors { cmd } => sectors::sectors(&repo, cmd).await,
        Cmd::Actor { cmd } => actor::run(&client(&repo)?, client::actor(), cmd).await,
        Cmd::Storage { cmd } => sectors::storage(&repo, cmd).await,
    }
}

/// `init`'s chain flags (Lotus's).
struct InitChain {
    actor: Option<String>,
    owner: Option<String>,
    worker: Option<String>,
    create_worker_key: bool,
    confidence: u64,
    send: crate::chain::CreateMinerSend,
}

/// Lotus's `--manage-fdlimit`: raise the soft open-file limit to the hard one (a miner holds
/// a file per sector read, a socket per worker).
fn raise_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit the call fills or reads.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                tracing::warn!("could not raise the open file limit to {}", lim.rlim_max);
            }
        }
    }
}

/// Lotus's `lib/tablewriter`: a header of the columns some row has a value in, every cell
/// padded to its column's width plus two, and the "new line" columns (`(name, true)`) printed
/// under their row as `  Name: value`.
pub(crate) fn lotus_table(cols: &[(&str, bool)], rows: &[BTreeMap<&str, String>]) -> String {
    let used: Vec<(&str, bool)> =
        cols.iter().copied().filter(|(c, _)| rows.iter().any(|r| r.contains_key(c))).collect();
    let width =
        |c: &str| rows.iter().filter_map(|r| r.get(c)).map(|v| v.chars().count()).max().unwrap_or(0).max(c.len());
    let mut o = String::new();
    for (c, newline) in &used {
        if !newline {
            o.push_str(&format!("{c:<w$}", w = width(c) + 2));
        }
    }
    o.push('\n');
    for r in rows {
        for (c, newline) in &used {
            if !newline {
                o.push_str(&format!("{:<w$}", r.get(c).map(String::as_str).unwrap_or(""), w = width(c) + 2));
            }
        }
        o.push('\n');
        for (c, newline) in &used {
            if let (true, Some(v)) = (newline, r.get(c)) {
                o.push_str(&format!("  {c}: {v}\n"));
            }
        }
    }
    o
}

/// Go's `tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)`, as Lotus's tables use it: each column as
/// wide as its widest cell plus two spaces, the last one unpadded.
pub(crate) fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..cols).map(|c| rows.iter().filter_map(|r| r.get(c)).map(|x| x.len()).max().unwrap_or(0).max(2)).collect();
    let mut o = String::new();
    for r in rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        o.push_str(line.join("  ").trim_end());
        o.push('\n');
    }
    o
}

/// The full node(s) `FULLNODE_API_INFO` names, for the commands that read or write the chain
/// themselves (`init`, `proving faults|deadline`), as Lotus's do.
pub(crate) fn fullnode_from_env() -> Result<Vec<(String, lotus_api::RpcClient)>> {
    let api_info = std::env::var("FULLNODE_API_INFO").map_err(|_| anyhow::anyhow!(crate::daemon::FULLNODE_MISSING))?;
    crate::chain::nodes(&api_info, std::time::Duration::from_secs(30)).map_err(anyhow::Error::msg)
}

/// The miner actor `init` uses: the one `--actor` names (its sector size checked), or a new
/// one created on chain with a CreateMiner message from the owner.
async fn init_actor(size: SectorSize, c: &InitChain) -> Result<u64> {
    let nodes = fullnode_from_env()?;
    if let Some(a) = &c.actor {
        let addr: lotus_api::chain::Address = a.parse().map_err(anyhow::Error::msg)?;
        let id = addr.as_id().ok_or_else(|| anyhow::anyhow!("--actor {a}: give the miner's ID address (f0…)"))?;
        let have = crate::chain::miner_sector_size(&nodes, addr).await.with_context(|| format!("reading miner {a}"))?;
        if have != size.0 {
            bail!("miner {a} has {} sectors, --sector-size is {size}", SectorSize(have));
        }
        return Ok(id);
    }
    let (owner, worker) =
        crate::chain::init_addresses(&nodes, c.owner.as_deref(), c.worker.as_deref(), c.create_worker_key).await?;
    println!("Creating a miner actor: owner {owner}, worker {worker}, sector size {size}");
    let id = crate::chain::create_miner(&nodes, owner, worker, size.0, c.confidence, &c.send)
        .await
        .context("creating the miner actor (CreateMiner)")?;
    println!("Created new miner: f0{id}");
    Ok(id)
}

async fn init(repo: &Repo, sector_size: &str, no_local_storage: bool, chain: InitChain) -> Result<()> {
    let size: SectorSize = sector_size.parse()?;
    if repo.is_initialised() {
        return Err(repo::RepoError::AlreadyExists { path: repo.path.clone(), env: "LOTUS_MINER_PATH" }.into());
    }
    // The chain first: a failure there leaves no half-made repo.
    let actor_id = init_actor(size, &chain).await?;
    repo.create_dir()?;
    let _lock = repo.lock()?;
    let config = repo.file("config.toml");
    if !config.exists() {
        repo.write_file("config.toml", MinerConfig::default_file().as_bytes(), 0o644)?;
    }
    repo.write_file(
        "metadata.json",
        serde_json::to_string_pretty(&Metadata { actor_id, sector_size: size })?.as_bytes(),
        0o644,
    )?;
    let mut storage = repo.storage_config()?;
    if !no_local_storage {
        sealing_exec::store::init_storage_path(&repo.path, 10, true, true)?;
        storage.storage_paths.push(repo::LocalPath { path: std::fs::canonicalize(&repo.path)? });
    }
    repo.write_storage_config(&storage)?;
    finish_init(repo)?;
    println!("Initialised miner repo {} (actor f0{actor_id}, sector size {size})", repo.path.display());
    println!("Start it with: lotus-miner run");
    Ok(())
}

/// `init restore`: a new repo with a backup's metadata, and the given (or default) config and
/// storage config. The storage paths themselves are not in a backup: the restored config
/// names them.
fn restore(
    repo: &Repo,
    backup: &std::path::Path,
    config: Option<&std::path::Path>,
    storage: Option<&std::path::Path>,
) -> Result<()> {
    if repo.is_initialised() {
        return Err(repo::RepoError::AlreadyExists { path: repo.path.clone(), env: "LOTUS_MINER_PATH" }.into());
    }
    repo.create_dir()?;
    let _lock = repo.lock()?;
    let read = |p: &std::path::Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let config = match config {
        Some(p) => read(p)?,
        None => MinerConfig::default_file().into_bytes(),
    };
    repo.write_file("config.toml", &config, 0o644)?;
    if let Some(p) = storage {
        repo.write_file("storage.json", &read(p)?, 0o644)?;
    }
    crate::backup::restore(repo, backup)?;
    let meta = Metadata::load(repo)?;
    finish_init(repo)?;
    println!("Restored miner repo {} from {} (actor t0{})", repo.path.display(), backup.display(), meta.actor_id);
    Ok(())
}

/// A new API secret and admin token; the secret last, as its presence marks the repo
/// initialised.
fn finish_init(repo: &Repo) -> Result<()> {
    let secret = JwtSecret::generate();
    repo.write_file("token", secret.create_token(&Permission::Admin.with_lower()).as_bytes(), 0o600)?;
    repo.write_jwt_secret(&secret)?;
    Ok(())
}

async fn auth(repo: &Repo, cmd: AuthCmd) -> Result<()> {
    let (perm, worker, api_info) = match cmd {
        AuthCmd::CreateToken { perm, worker } => (perm, worker, false),
        AuthCmd::ApiInfo { perm, worker } => (perm, worker, true),
        AuthCmd::Rotate { really_do_it } => return rotate(repo, really_do_it).await,
    };
    let perm: Permission = perm.parse()?;
    let perms = perm.with_lower();
    if let Some(w) = &worker {
        lotus_api::auth::valid_worker_name(w).map_err(anyhow::Error::msg).context("--worker")?;
    }
    let local = || -> Result<String> {
        let secret = repo.jwt_secret()?;
        Ok(match &worker {
            Some(w) => secret.create_worker_token(&perms, w),
            None => secret.create_token(&perms),
        })
    };
    let asked = match client(repo) {
        Ok(c) => Some(match &worker {
            Some(w) => c.call::<String>("AuthNewWorker", json!([perms, w])).await,
            None => c.call::<String>("AuthNew", json!([perms])).await,
        }),
        Err(_) => None,
    };
    let token = match asked {
        Some(Ok(b64)) => {
            use base64::Engine;
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64)?)?
        }
        // The daemon is not running: sign locally with the repo's secret.
        Some(Err(e)) if e.is_unreachable() => local()?,
        Some(Err(e)) => return Err(e.into()),
        None => local()?,
    };
    if !api_info {
        println!("{token}");
        return Ok(());
    }
    let addr = match repo.api_addr() {
        Ok(a) => a,
        Err(_) => {
            let (cfg, _) = MinerConfig::load(&repo.file("config.toml"), &daemon::env_lookup)?;
            cfg.api.listen_address
        }
    };
    println!("MINER_API_INFO={token}:{addr}");
    Ok(())
}

/// `auth rotate`: a new API secret in the running daemon, which hands connected workers their
/// new tokens; the operator's token file is renewed by the daemon.
async fn rotate(repo: &Repo, really_do_it: bool) -> Result<()> {
    if !really_do_it {
        bail!(
            "auth rotate refuses every token minted so far: scripts and Lotus workers holding one need a new \
             MINER_API_INFO afterwards. Pass --really-do-it to rotate"
        );
    }
    let c = client(repo)?;
    let r = c
        .request::<lotus_api::contract::miner::AuthRotate>(())
        .await
        .context("rotating the API secret (the miner must be running)")?;
    let addr = repo.api_addr().unwrap_or_default();
    println!("New API secret in force: tokens minted before are refused from now on.");
    for w in &r.workers {
        let who = w.identity.as_deref().map(|i| format!(" (worker {i})")).unwrap_or_default();
        if w.err.is_empty() {
            println!("  {} {}{who}: took its new token", w.hostname, w.url);
        } else {
            println!("  {} {}{who}: FAILED: {}", w.hostname, w.url, w.err);
        }
    }
    println!("MINER_API_INFO={}:{addr}", r.token);
    Ok(())
}

/// `sealing data-cid`: the file (or a URL's body) pushed to the miner with the
/// `ComputeDataCid` call, as Lotus's client sends an io.Reader.
async fn data_cid(repo: &Repo, file_size: Option<u64>, input: &str, piece_size: Option<String>) -> Result<()> {
    use lotus_api::contract::miner as m;
    let (body, size) = if input.starts_with("http://") || input.starts_with("https://") {
        let resp = reqwest::get(input).await.with_context(|| format!("fetching {input}"))?.error_for_status()?;
        let size = match file_size.or(resp.content_length()) {
            Some(s) => s,
            None => bail!("head response didn't contain content length; specify --file-size"),
        };
        (reqwest::Body::wrap_stream(resp.bytes_stream()), size)
    } else {
        let f = tokio::fs::File::open(input).await.with_context(|| format!("opening source file {input}"))?;
        let size = match file_size {
            Some(s) => s,
            None => f.metadata().await.with_context(|| format!("stat {input}"))?.len(),
        };
        (reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(f)), size)
    };
    let padded = match piece_size {
        Some(p) => {
            let p = sealing_types::size::parse_size(&p).with_context(|| format!("parsing piece size {p:?}"))?;
            if !p.is_power_of_two() || p < 128 {
                bail!("checking piece size: {p} is not a padded piece size (a power of two, at least 128)");
            }
            if size > lotus_api::wire::unpadded(p) {
                bail!("file larger than the piece");
            }
            p
        }
        None => {
            let mut p = 128u64;
            while lotus_api::wire::unpadded(p) < size {
                p *= 2;
            }
            p
        }
    };
    let (url, token) = endpoint(repo)?;
    let c = client(repo)?;
    let id = uuid::Uuid::new_v4();
    let push_url = url.replace("/rpc/v0", &format!("/rpc/streams/v0/push/{id}"));
    let reader = lotus_api::wire::Data::Push(id);
    let http = reqwest::Client::new();
    let (piece, pushed) = tokio::join!(
        c.request_timeout::<m::ComputeDataCid>((lotus_api::wire::unpadded(padded), reader), Duration::from_secs(3600)),
        async {
            http.head(&push_url).bearer_auth(&token).send().await?.error_for_status()?;
            http.post(&push_url).bearer_auth(&token).body(body).send().await?.error_for_status()
        }
    );
    pushed.with_context(|| format!("sending {input} to the miner"))?;
    let piece = piece.map_err(|e| anyhow::anyhow!("computing data CID: {}", explain(e)))?;
    if !print_json(&piece)? {
        println!("{}   {}", piece.piece_cid, piece.size);
    }
    Ok(())
}

async fn stats(repo: &Repo) -> Result<BTreeMap<WorkerId, WorkerStats>> {
    client(repo)?.call("WorkerStats", json!([])).await.map_err(explain)
}

async fn workers(repo: &Repo, color: bool) -> Result<()> {
    let st = stats(repo).await?;
    if !print_json(&st)? {
        print!("{}", crate::render::sealing_workers(&st, color));
    }
    Ok(())
}

async fn info(repo: &Repo, hide_sectors: bool) -> Result<()> {
    let c = client(repo)?;
    let addr: String = c.call("ActorAddress", json!([])).await.map_err(explain)?;
    let size: u64 = c.call("ActorSectorSize", json!([addr])).await?;
    let st = stats(repo).await?;
    let (mut seal, mut wd, mut win) = (0, 0, 0);
    for s in st.values().filter(|s| s.enabled) {
        match s.tasks.first().map(|t| t.worker_type()) {
            Some(sealing_types::WorkerType::WdPoSt) => wd += 1,
            Some(sealing_types::WorkerType::WinPost) => win += 1,
            _ => seal += 1,
        }
    }
    if print_json(&json!({"Miner": addr, "SectorSize": size, "Workers": {"Seal": seal, "WdPoSt": wd, "WinPoSt": win}}))?
    {
        return Ok(());
    }
    match onchain::info(&c).await {
        Ok(text) => print!("{text}"),
        // The miner's own lines still print when the full node cannot be read.
        Err(e) => {
            println!("Miner: {addr} ({} sectors)", sealing_types::size::size_str(size));
            println!("ERROR: reading the chain: {e:#}\n");
        }
    }
    if !hide_sectors {
        let summary = c.request::<lotus_api::contract::miner::SectorsSummary>(()).await.map_err(explain)?;
        println!("Sectors:");
        println!("\tTotal: {}", summary.values().sum::<u64>());
        for (state, n) in &summary {
            println!("\t{state}: {n}");
        }
        println!();
    }
    println!("Workers: Seal({seal}) WdPoSt({wd}) WinPoSt({win})");
    if st.values().any(|s| s.info.mock_proofs) {
        println!("Proofs: MOCK ([Devnet] MockProofs): nothing is proven for real; for tests and benchmarks only");
    }
    print!("{}", proving::render_health(&proving::fetch(&c).await?));
    Ok(())
}
