//! `lotus-miner run`: open the repo, start the API, register the miner's own worker, serve
//! until `lotus-miner stop` or a signal.

use crate::chain::ChainClient;
use crate::daemon_ctx::Ctx;
use crate::manager::{LocalIndex, LocalReturner, Manager, ManagerConfig};
use crate::sealing::{Db, Sealing, SealingConfig};
use anyhow::{Context, Result};
use axum::Router;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use lotus_api::methods::MINER_API_VERSION;
use lotus_api::rpc::{self, Authenticator, RpcError, RpcServer};
use lotus_api::types::Version;
use lotus_api::{JwtSecret, Permission};
use lotus_node::hw;
use lotus_node::repo::Repo;
use lotus_node::MinerConfig;
use sealing_types::{SchedId, TaskType, WorkerInfo};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::Notify;
use uuid::Uuid;

/// `<repo>/metadata.json`: what `init` decided.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Metadata {
    #[serde(rename = "ActorID")]
    pub actor_id: u64,
    #[serde(rename = "SectorSize")]
    pub sector_size: sealing_types::SectorSize,
}

impl Metadata {
    pub fn load(repo: &Repo) -> Result<Metadata> {
        let text = repo.read_string("metadata.json")?;
        serde_json::from_str(&text).with_context(|| format!("{} is malformed", repo.file("metadata.json").display()))
    }
}

struct MinerAuth(JwtSecret);

impl Authenticator for MinerAuth {
    fn verify(&self, token: &str) -> BoxFuture<'_, Result<lotus_api::Caller, String>> {
        let r = self.0.verify_caller(token).map_err(|e| e.to_string());
        async move { r }.boxed()
    }
}

/// What `run` says when the chain is not named.
pub const FULLNODE_MISSING: &str =
    "FULLNODE_API_INFO is not set: the miner reaches the chain through a full node's API. \
Point it at a Lotus or Forest node (FULLNODE_API_INFO=TOKEN:/ip4/HOST/tcp/1234/http), or start the devnet node \
(`lotus-devnet daemon &`, then `export $(lotus-devnet auth api-info --perm admin)`)";

/// The task types the miner's own worker accepts, from `[Storage] Allow*` (reference §4).
pub fn local_task_types(cfg: &MinerConfig) -> BTreeSet<TaskType> {
    use TaskType::*;
    let s = &cfg.storage;
    let mut t: BTreeSet<TaskType> =
        [Fetch, Commit1, ProveReplicaUpdate1, Finalize, FinalizeUnsealed, FinalizeReplicaUpdate].into();
    let flags = [
        (s.allow_sector_download, &[DownloadSector][..]),
        (s.allow_add_piece, &[AddPiece, DataCid][..]),
        (s.allow_pre_commit1, &[PreCommit1][..]),
        (s.allow_pre_commit2, &[PreCommit2][..]),
        (s.allow_commit, &[Commit2][..]),
        (s.allow_unseal, &[Unseal][..]),
        (s.allow_replica_update, &[ReplicaUpdate][..]),
        (s.allow_prove_replica_update2, &[ProveReplicaUpdate2][..]),
        (s.allow_regen_sector_key, &[RegenSectorKey][..]),
    ];
    for (on, types) in flags {
        if on {
            t.extend(types.iter().copied());
        }
    }
    t
}

pub fn env_lookup(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

/// `lotus-miner run`'s flags.
#[derive(Clone, Debug, Default)]
pub struct RunFlags {
    /// `--miner-api PORT`: listen on 127.0.0.1:PORT instead of `[API] ListenAddress`.
    pub miner_api: Option<u16>,
}

/// `lotus-miner run`: lock the repo, load its config, bind `[API] ListenAddress`, and
/// [`serve`].
pub async fn run(repo: Repo, flags: RunFlags) -> Result<()> {
    start(repo, flags, None, Arc::new(Notify::new())).await
}

/// [`run`] on `listener` when one is given (else on `[API] ListenAddress`), until `shutdown`
/// is notified.
pub async fn start(
    repo: Repo,
    flags: RunFlags,
    listener: Option<tokio::net::TcpListener>,
    shutdown: Arc<Notify>,
) -> Result<()> {
    repo.require_initialised()?;
    let _lock = repo.lock()?;
    let (mut cfg, warnings) = MinerConfig::load(&repo.file("config.toml"), &env_lookup)?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    if let Some(port) = flags.miner_api {
        cfg.api.listen_address = format!("/ip4/127.0.0.1/tcp/{port}/http");
    }
    let listener = match listener {
        Some(l) => l,
        None => {
            let listen = lotus_api::apiinfo::listen_addr(&cfg.api.listen_address)?;
            lotus_node::daemon::bind(listen, || {
                format!(
                    "[API] ListenAddress in {}: is another lotus-miner running? Change the address or stop the other process",
                    repo.file("config.toml").display()
                )
            })
            .await?
        }
    };
    serve(repo, cfg, listener, shutdown).await
}

/// The miner daemon on a locked, initialised repo with its loaded config, serving on
/// `listener` (any address, port 0 included: the `api` file says which it got) until
/// `shutdown` is notified, the API's `Shutdown` is called, or a signal comes.
pub async fn serve(
    repo: Repo,
    cfg: MinerConfig,
    listener: tokio::net::TcpListener,
    shutdown: Arc<Notify>,
) -> Result<()> {
    let meta = Metadata::load(&repo)?;
    let secret = repo.jwt_secret()?;
    let background = lotus_node::daemon::Background::new();
    lotus_node::daemon::trim_memory_every(&background, std::time::Duration::from_secs(10));
    let bound = listener.local_addr()?;

    // The URL other nodes fetch this miner's sector files from. Lotus takes it from
    // RemoteListenAddress alone; when that key is left at its default we use the address the
    // API is actually bound to, so a miner moved to another port still serves its files.
    let remote_host = if cfg.api.remote_listen_address != lotus_node::config::ApiConfig::default().remote_listen_address
    {
        cfg.api.remote_listen_address.clone()
    } else if bound.ip().is_unspecified() {
        format!("127.0.0.1:{}", bound.port())
    } else {
        bound.to_string()
    };
    let local_origin = format!("http://{remote_host}");

    // The mock proof backend: announced loudly, since nothing this miner proves is real.
    let mock_durations = if cfg.devnet.mock_proofs {
        let d =
            lotus_node::config::parse_mock_durations(&cfg.devnet.mock_task_durations).map_err(anyhow::Error::msg)?;
        tracing::warn!(
            durations = %cfg.devnet.mock_task_durations,
            "MOCK PROOFS ([Devnet] MockProofs = true): no proof is computed, the devnet accepts only mock proofs; \
             for tests and benchmarks only"
        );
        Some(d)
    } else {
        None
    };
    let backend = if mock_durations.is_some() { sealing_proofs::Backend::Mock } else { sealing_proofs::Backend::Real };

    let assigner = cfg.assigner().map_err(anyhow::Error::msg)?;
    let sched = sealing_sched::Scheduler::new(sealing_sched::Config { assigner });
    // `--enable-gpu-proving=false` sets it (before the runtime starts); the proofs library
    // reads it too.
    let no_gpu = env_lookup("BELLMAN_NO_GPU").is_some_and(|v| v == "1");
    let mut res = hw::probe(&hw::ProbeOptions { no_gpu, ..Default::default() }, &env_lookup);
    res.resources = sealing_types::resources::table_from_env(&env_lookup)?;
    // `[Proving] ReservedCPUs`: the scheduler sees fewer cores on the miner's own worker and its
    // sealing processes size their thread pools to match; PoSt keeps the rest.
    let reserved = cfg.proving.reserved_cpus.min(res.cpus.saturating_sub(1));
    res.cpus -= reserved;
    let sealing_threads = (reserved > 0).then_some(res.cpus as usize);
    let hostname = if cfg.storage.local_worker_name.is_empty() {
        hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "localhost".into())
    } else {
        cfg.storage.local_worker_name.clone()
    };
    let executor_hostname = hostname.clone();
    let info = WorkerInfo {
        hostname,
        ignore_resources: cfg.storage.resource_filtering == "disabled",
        resources: res,
        mock_proofs: cfg.devnet.mock_proofs,
    };
    let timings = crate::manager::Timings {
        worker_lost_timeout: Some(
            lotus_node::config::parse_duration(&cfg.storage.worker_lost_timeout).map_err(anyhow::Error::msg)?,
        )
        .filter(|d| !d.is_zero()),
        api_timeout: lotus_node::config::parse_duration(&cfg.api.timeout).map_err(anyhow::Error::msg)?,
        ..Default::default()
    };
    let calls = Arc::new(
        crate::calls::CallStore::open(&repo.file("sealing.db")).context("opening the work tracker in sealing.db")?,
    );

    // The miner's own storage paths and executor (its built-in worker).
    let store = Arc::new(sealing_exec::LocalStore::new(format!("{local_origin}/remote")));
    for p in repo.storage_config()?.storage_paths {
        store
            .open_path(&p.path)
            .with_context(|| format!("opening storage path {} (from storage.json)", p.path.display()))?;
    }
    // The miner's own admin token for its calls to workers and their files: one shared
    // value, so `auth rotate` replaces it everywhere at once.
    let admin = lotus_api::SharedToken::new(secret.create_token(&Permission::Admin.with_lower()));
    let fetcher = sealing_exec::remote::Fetcher::new(admin.clone(), cfg.storage.parallel_fetch_limit as usize);
    let manager = Manager::new(
        ManagerConfig {
            secret: secret.clone(),
            token: admin.clone(),
            sched,
            local_info: info,
            local_task_types: local_task_types(&cfg),
            local_origin: local_origin.clone(),
            disallow_remote_finalize: cfg.storage.disallow_remote_finalize,
            timings,
            calls: Some(calls),
        },
        |me| {
            let index: Arc<dyn sealing_exec::SectorIndex> = Arc::new(LocalIndex(me.clone()));
            sealing_exec::Executor::new(store.clone(), index, fetcher, Arc::new(LocalReturner(me))).map(Some)
        },
    )
    .context("locating this executable (for proof processes)")?;
    let index: Arc<dyn sealing_exec::SectorIndex> = Arc::new(LocalIndex(Arc::downgrade(&manager)));
    let executor = manager.local_executor().expect("the miner's executor was built with its manager").clone();
    if let Some(d) = &mock_durations {
        executor.set_mock_proofs(d.clone());
    }
    executor.set_sealing_limits(cfg.proving.sealing_nice as i32, sealing_threads);
    if no_gpu {
        executor.set_no_gpu();
        tracing::info!("GPU proving disabled (--enable-gpu-proving=false or BELLMAN_NO_GPU=1): proofs run on the CPU");
    }
    executor.declare_all().await.context("attaching the miner's storage paths")?;
    let ex = executor.clone();
    background.spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(10)).await;
            ex.report_health().await;
        }
    });

    // The chain: the full node named by FULLNODE_API_INFO, as Lotus's miner reaches its node.
    let db = Db::open(&repo.file("sealing.db"))?;
    let api_info = std::env::var("FULLNODE_API_INFO").map_err(|_| anyhow::anyhow!(FULLNODE_MISSING))?;
    let api_timeout = lotus_node::config::parse_duration(&cfg.api.timeout).map_err(anyhow::Error::msg)?;
    let chain = Arc::new(
        ChainClient::connect(&api_info, meta.actor_id, cfg.chain.message_confidence, api_timeout).await.with_context(
            || format!("connecting to the full node of FULLNODE_API_INFO (miner actor f0{})", meta.actor_id),
        )?,
    );
    // Mock proofs only against a devnet that accepts only them, and real ones never there.
    let mock_chain = chain.network_name.contains("mockproofs");
    if backend == sealing_proofs::Backend::Mock && !mock_chain {
        anyhow::bail!(
            "[Devnet] MockProofs is set, but the chain ({}) verifies real proofs: mock proofs are for a \
             `lotus-devnet daemon --mock-proofs` only",
            chain.network_name
        );
    }
    if backend == sealing_proofs::Backend::Real && mock_chain {
        anyhow::bail!(
            "the chain ({}) accepts only mock proofs: set [Devnet] MockProofs = true, or use a devnet without --mock-proofs",
            chain.network_name
        );
    }
    tracing::info!(
        network = %chain.network_name,
        miner = %chain.miner,
        worker = %chain.worker,
        "connected to the full node"
    );
    let proof = sealing_types::RegisteredSealProof::v1_1_for(meta.sector_size);
    let (precommit_batch, commit_batch) = cfg.batching().map_err(anyhow::Error::msg)?;
    let batches = crate::sealing::Batches::new(
        chain.clone(),
        backend,
        meta.actor_id,
        proof,
        precommit_batch,
        commit_batch,
        cfg.sealing.min_commit_batch as usize,
    );
    let terminator = crate::terminate::Terminator::new(
        chain.clone(),
        crate::terminate::TerminateConfig {
            max: cfg.sealing.terminate_batch_max.max(1) as usize,
            min: cfg.sealing.terminate_batch_min as usize,
            wait: lotus_node::config::parse_duration(&cfg.sealing.terminate_batch_wait).map_err(anyhow::Error::msg)?,
        },
    );
    background.spawn(terminator.clone().run());
    let sealing = Arc::new(Sealing {
        db: std::sync::Mutex::new(db),
        drives: Default::default(),
        chain,
        manager: manager.clone(),
        miner: meta.actor_id,
        proof,
        backend,
        cfg: SealingConfig {
            max_sealing_sectors: cfg.sealing.max_sealing_sectors,
            max_sealing_sectors_for_deals: cfg.sealing.max_sealing_sectors_for_deals,
            retry_wait: lotus_node::config::parse_duration(&cfg.sealing.min_retry_time).map_err(anyhow::Error::msg)?,
            max_retries: 10,
            keep_unsealed: cfg.sealing.always_keep_unsealed_copy,
            batch_pre_commits: cfg.sealing.batch_pre_commits,
            aggregate_commits: cfg.sealing.aggregate_commits,
            cc_lifetime: lotus_node::config::parse_duration(&cfg.sealing.committed_capacity_sector_lifetime)
                .map_err(anyhow::Error::msg)?,
            max_upgrading_sectors: cfg.sealing.max_upgrading_sectors,
            prefer_new_sectors_for_deals: cfg.sealing.prefer_new_sectors_for_deals,
            min_upgrade_sector_expiration: cfg.sealing.min_upgrade_sector_expiration,
        },
        clock: Default::default(),
        batches,
        terminator,
        write_errors: Default::default(),
    });
    sealing.batches.start(&background);
    sealing.resume_all()?;

    let session = Uuid::new_v4();
    let post_prover = sealing_exec::post::PoStProver::new(
        store.clone(),
        index.clone(),
        admin.clone(),
        executor_hostname.clone(),
        cfg.proving.parallel_check_limit.max(1) as usize,
        // The miner's own reads are bounded by each deadline only, as the original's are.
        None,
        backend,
    )
    .context("locating this executable (for proof processes)")?;
    let proving = crate::proving::Proving::new(
        sealing.chain.clone(),
        manager.clone(),
        meta.actor_id,
        post_prover,
        cfg.proving.disable_builtin_window_post,
        cfg.proving.disable_builtin_winning_post,
        crate::proving::PreChecks::from_config(&cfg.proving).map_err(anyhow::Error::msg)?,
    );
    background.spawn(sealing.chain.clone().follow_heads());
    proving.start(&background);
    let ctx = Ctx {
        m: manager.clone(),
        sealing,
        store: store.clone(),
        repo: repo.clone(),
        proving,
        alerts: Default::default(),
    };
    background.spawn(watch_alerts(ctx.clone()));
    executor.metrics.register(&manager.metrics.registry).context("registering the executor's metrics")?;
    let metrics = {
        let (ctx, m) = (ctx.clone(), manager.metrics.clone());
        lotus_node::metrics::router(manager.metrics.registry.clone(), move || {
            m.refresh(&crate::metrics::snapshot(&ctx))
        })
    };
    let server = Arc::new(api(ctx.clone(), secret.clone(), session, meta, shutdown.clone()));
    let auth: Arc<dyn Authenticator> = Arc::new(MinerAuth(secret));
    let remote = sealing_exec::remote::router(sealing_exec::remote::RemoteState {
        store,
        index,
        auth: auth.clone(),
        missing: "write",
        backend,
    });
    // Data a client pushes with a call (`sealing data-cid`'s file), as on a worker.
    let push = sealing_exec::push::PushStreams::new(repo.path.join("push"));
    executor.set_push_streams(push.clone());
    let dashboard = crate::dashboard::router(ctx.clone(), auth.clone());
    let app: Router =
        rpc::router(server, auth).merge(remote).merge(sealing_exec::push::router(push)).merge(metrics).merge(dashboard);

    let api_addr = lotus_api::apiinfo::to_multiaddr(&bound.to_string());
    repo.write_file("api", api_addr.as_bytes(), 0o644)?;
    tracing::info!(%bound, session = %session, "miner API listening; workers connect with MINER_API_INFO=<token>:{api_addr}");
    println!("lotus-miner: API listening on {bound} ({api_addr})");

    lotus_node::daemon::serve(listener, lotus_node::daemon::HEADER_TIMEOUT, app, &repo, shutdown, || {}, &background)
        .await?;
    // Committed before the process goes: a result taken from a worker is never lost.
    if let Some(calls) = manager.call_store() {
        calls.close();
    }
    tracing::info!("miner stopped");
    Ok(())
}

/// How often the alert rules look at the miner.
const ALERT_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Apply the alert rules every [`ALERT_EVERY`]; each alert raised or resolved is logged too.
async fn watch_alerts(ctx: Ctx) {
    loop {
        tokio::time::sleep(ALERT_EVERY).await;
        let c = ctx.clone();
        let Ok(observed) = tokio::task::spawn_blocking(move || observed(&c)).await else { continue };
        let changed =
            ctx.alerts.lock().unwrap_or_else(|e| e.into_inner()).observe(&observed, std::time::SystemTime::now());
        for a in changed {
            match (&a.last_active, a.active) {
                (Some(e), true) => {
                    tracing::warn!(alert = %format!("{}:{}", a.system, a.subsystem), "ALERT: {}", e.message)
                }
                _ => tracing::info!(alert = %format!("{}:{}", a.system, a.subsystem), "alert resolved"),
            }
        }
    }
}

/// What the alert rules read: the scrape's snapshot, the missed deadline, failing tasks.
fn observed(ctx: &Ctx) -> crate::alerts::Observed {
    let s = crate::metrics::snapshot(ctx);
    crate::alerts::Observed {
        workers: s.workers.iter().map(|w| (w.id.clone(), w.hostname.clone(), w.enabled)).collect(),
        paths: s.paths.iter().map(|p| (p.id.clone(), p.stat.capacity, p.stat.available)).collect(),
        deadlines: s
            .deadlines
            .iter()
            .map(|d| (d.deadline, d.margin_seconds, d.window_seconds, d.faulty, d.accepted))
            .collect(),
        missed: ctx.proving.missed(),
        failing: ctx.m.metrics.failing(),
        overdue: ctx.sealing.clock.lock().unwrap_or_else(|e| e.into_inner()).overdue(std::time::SystemTime::now()),
    }
}

fn api(ctx: Ctx, secret: JwtSecret, session: Uuid, meta: Metadata, shutdown: Arc<Notify>) -> RpcServer {
    let m = ctx.m.clone();
    let alerts = ctx.alerts.clone();
    let mut s = RpcServer::new(lotus_api::methods::MINER);
    // A token minted for a worker (`auth create-token --worker`) reaches what a worker calls.
    s.restrict_worker_tokens(lotus_api::contract::miner::WORKER_CALLS, None);
    let repo = ctx.repo.clone();
    crate::api::register(&mut s, ctx);
    use lotus_api::contract::miner as c;
    s.method::<c::Version, _, _, _>((), |(), ()| async move {
        Ok(Version {
            version: crate::VERSION.into(),
            api_version: MINER_API_VERSION,
            block_delay: 30,
            agent: "lotus-miner".into(),
        })
    });
    s.method::<c::Session, _, _, _>(session, |session, ()| async move { Ok(session) });
    let actor = meta.actor_id;
    s.method::<c::ActorAddress, _, _, _>(actor, |actor, ()| async move { Ok(format!("t0{actor}")) });
    s.method::<c::ActorSectorSize, _, _, _>(meta.sector_size, |ssize, (_addr,)| async move { Ok(ssize.0) });
    s.method::<c::AuthVerify, _, _, _>((secret.clone(), m.clone()), |(sec, mm), (token,)| async move {
        mm.metrics.auth_verified();
        sec.verify(&token).map_err(|e| RpcError::method(e.to_string()))
    });
    // What a Lotus worker's `/remote` asks before serving a file to another node.
    s.method::<c::StorageAuthVerify, _, _, _>((secret.clone(), m.clone()), |(sec, mm), (token,)| async move {
        mm.metrics.auth_verified();
        sec.verify(&token).map_err(|e| RpcError::method(e.to_string()))
    });
    s.method::<c::AuthNew, _, _, _>(secret.clone(), |sec, (perms,)| async move {
        // Lotus returns the token as []byte, which JSON carries as base64.
        Ok(lotus_api::wire::Bytes(sec.create_token(&perms).into_bytes()))
    });
    s.method::<c::AuthNewWorker, _, _, _>(secret.clone(), |sec, (perms, worker)| async move {
        lotus_api::auth::valid_worker_name(&worker).map_err(RpcError::invalid_params)?;
        Ok(lotus_api::wire::Bytes(sec.create_worker_token(&perms, &worker).into_bytes()))
    });
    s.method::<c::AuthRotate, _, _, _>((secret.clone(), repo, m.clone()), |(sec, repo, mm), ()| async move {
        let new = JwtSecret::generate();
        // The keystore first: if writing it fails, nothing changed.
        repo.write_jwt_secret(&new).map_err(|e| {
            RpcError::method(format!("storing the new secret failed ({e}); the old one stays in force"))
        })?;
        sec.replace(&new);
        let token = sec.create_token(&Permission::Admin.with_lower());
        if let Err(e) = repo.write_file("token", token.as_bytes(), 0o600) {
            tracing::warn!("the new admin token could not be written to the repo's token file: {e}");
        }
        tracing::warn!("API secret rotated: every token minted before is refused from now on");
        let workers = mm.rotate_tokens().await;
        Ok(c::RotateResult { token, workers })
    });
    s.method::<c::WorkerConnect, _, _, _>(m.clone(), |mm, (url,)| async move {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(RpcError::invalid_params(format!("worker URL {url:?} must start with http:// or https://")));
        }
        mm.connect(url, lotus_api::rpc::calling_worker()).await.map(|_| ()).map_err(|e| RpcError::method(e.to_string()))
    });
    s.method::<c::WorkerStats, _, _, _>(m.clone(), |mm, ()| async move {
        Ok(mm.stats().into_iter().map(|(id, st)| (id.0, st)).collect())
    });
    s.method::<c::WorkerJobs, _, _, _>(m.clone(), |mm, ()| async move {
        Ok(mm.jobs().into_iter().map(|(id, jobs)| (id.0, jobs)).collect())
    });
    s.method::<c::SealingSchedDiag, _, _, _>(m.clone(), |mm, (do_sched,)| async move {
        if do_sched {
            mm.schedule_now();
        }
        let d = mm.sched_diag();
        Ok(serde_json::json!({
            "SchedInfo": d,
            "ReturnedWork": [],
            "Waiting": [],
            "CallToWork": {},
            "EarlyRet": [],
        }))
    });
    s.method::<c::SealingRemoveRequest, _, _, _>(m.clone(), |mm, (id,)| async move {
        if mm.remove_request(SchedId(id)) {
            Ok(())
        } else {
            Err(RpcError::method(format!("no queued request {id}: it has started, finished, or never existed")))
        }
    });
    s.method::<c::Shutdown, _, _, _>(shutdown, |shutdown, ()| async move {
        shutdown.notify_one();
        Ok(())
    });
    let started = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    s.method::<c::StartTime, _, _, _>(started, |started, ()| async move { Ok(started) });
    s.method::<c::LogList, _, _, _>((), |(), ()| async move {
        Ok(lotus_node::logging::SYSTEMS.iter().map(|s| s.to_string()).collect())
    });
    s.method::<c::LogSetLevel, _, _, _>((), |(), (system, level)| async move {
        lotus_node::logging::set_level(&system, &level).map_err(|e| RpcError::invalid_params(e.to_string()))
    });
    s.method::<c::LogAlerts, _, _, _>(alerts, |alerts, ()| async move {
        let list = alerts.lock().unwrap_or_else(|e| e.into_inner()).list();
        Ok(list.iter().map(crate::alerts::to_wire).collect())
    });
    s.method::<c::RuntimeSubsystems, _, _, _>((), |(), ()| async move {
        Ok(vec!["Mining".to_string(), "Sealing".to_string(), "SectorStorage".to_string()])
    });
    lotus_api::contract::miner::refuse_unserved(&mut s);
    s
}
