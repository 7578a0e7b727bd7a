//! `lotus-worker run`: serve the worker API, register with the miner, stay registered.

use anyhow::{bail, Context, Result};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use lotus_api::methods::{MINER_API_VERSION, WORKER_API_VERSION};
use lotus_api::rpc::{self, Authenticator, Params, RpcError, RpcServer};
use lotus_api::types::Version;
use lotus_api::{ApiInfo, Caller, Permission, RpcClient, SharedToken};
use lotus_node::hw;
use lotus_node::repo::{self, Repo};
use sealing_exec::post::PoStKind;
use sealing_types::{TaskType, WorkerInfo};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use uuid::Uuid;

/// How often the worker checks that the miner it registered with is still the same process.
pub const MINER_CHECK_INTERVAL: Duration = Duration::from_secs(10);

pub struct Settings {
    pub parallel_fetch_limit: usize,
    /// `--post-parallel-reads`: vanilla proofs read at once by a PoSt worker.
    pub post_parallel_reads: usize,
    /// `--post-read-timeout`: limit on one sector's PoSt read; `None`: no limit.
    pub post_read_timeout: Option<Duration>,
    /// `--http-server-timeout`: how long a request's headers may take to arrive.
    pub http_server_timeout: Duration,
    /// `--sealing-nice`: niceness of sealing proof processes.
    pub sealing_nice: i32,
    /// `--no-gpu`: report no GPUs, prove on the CPU.
    pub no_gpu: bool,
    pub repo: Repo,
    pub miner: ApiInfo,
    pub listen: String,
    pub name: Option<String>,
    pub no_local_storage: bool,
    pub no_swap: bool,
    pub task_types: BTreeSet<TaskType>,
    pub connect_timeout: Duration,
    /// `--mock-proofs` with its task durations: no proof work (tests and benchmarks).
    pub mock: Option<sealing_types::MockDurations>,
}

/// Where the worker is in its life: one value, so no reader sees a mix of two (the flags it
/// replaces could be read as "enabled" and "closed" at once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    /// Taking tasks.
    Enabled,
    /// `lotus-worker set --enabled=false`: registered, taking no task.
    Disabled,
    /// `lotus-worker stop`: no new tasks; it exits once the running ones are done and delivered.
    Draining,
    /// Shutting down: its session reads as closed.
    Closed,
}

impl Life {
    /// Why a new task is refused, if it is.
    fn refuses_tasks(self) -> Option<&'static str> {
        match self {
            Life::Enabled => None,
            Life::Disabled => Some("worker disabled (lotus-worker set --enabled=false): not taking tasks"),
            Life::Draining | Life::Closed => Some("worker is stopping (lotus-worker stop): not taking tasks"),
        }
    }
}

/// State shared by the API handlers and the registration loop.
struct Worker {
    session: Uuid,
    hostname: String,
    no_swap: bool,
    no_gpu: bool,
    mock_proofs: bool,
    life: Mutex<Life>,
    /// When the miner last checked this worker's session: a miner that stops checking has
    /// removed it (lost), and the worker registers again.
    last_checked: Mutex<std::time::Instant>,
    task_types: Mutex<BTreeSet<TaskType>>,
    /// `Shutdown` (now, or once drained).
    shutdown: Arc<Notify>,
}

impl Worker {
    fn info(&self) -> Result<WorkerInfo, RpcError> {
        let env = |k: &str| std::env::var(k).ok();
        let mut res = hw::probe(&hw::ProbeOptions { no_swap: self.no_swap, no_gpu: self.no_gpu }, &env);
        // Re-read on every call, like the original: overrides apply at the next (re)connect.
        res.resources = sealing_types::resources::table_from_env(&env).map_err(|e| RpcError::method(e.to_string()))?;
        Ok(WorkerInfo {
            hostname: self.hostname.clone(),
            ignore_resources: false,
            resources: res,
            mock_proofs: self.mock_proofs,
        })
    }

    fn life(&self) -> Life {
        *self.life.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Move to `to` if the worker is in one of `from`; whether it moved.
    fn change_life(&self, from: &[Life], to: Life) -> bool {
        let mut l = self.life.lock().unwrap_or_else(|e| e.into_inner());
        let moved = from.contains(&l);
        if moved {
            *l = to;
        }
        moved
    }

    fn close(&self) {
        *self.life.lock().unwrap_or_else(|e| e.into_inner()) = Life::Closed;
    }

    fn types(&self) -> BTreeSet<TaskType> {
        self.task_types.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Checks tokens with the miner's `AuthVerify`, remembering answers for a while (refusals
/// too), so that garbage tokens cost the miner at most one call per distinct token per
/// [`TokenCache::REFUSED_FOR`]; a string that is not even a JWT is refused here.
struct MinerAuth {
    /// The miner, called without a token (`AuthVerify` is a read method): the check keeps
    /// working while this worker's own token is being rotated.
    miner: RpcClient,
    cache: Mutex<TokenCache>,
    /// Questions to the miner in flight, by token: concurrent requests with one unknown token
    /// wait for the one answer instead of each asking (a flood of one forged token would
    /// otherwise cost the miner a call per request until the first answer came back).
    asking: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Asked>>>>,
}

/// The miner's answer about a token, and whether it is to be remembered.
type Asked = (Result<Caller, String>, bool);

/// The miner's answers about tokens: bounded in count (the oldest go first) and in time.
#[derive(Default)]
struct TokenCache {
    entries: HashMap<String, (std::time::Instant, Result<Caller, String>)>,
    order: std::collections::VecDeque<String>,
}

impl TokenCache {
    /// How long a valid token's permissions are trusted before the miner is asked again (a
    /// rotated secret takes effect within this).
    const VALID_FOR: Duration = Duration::from_secs(60);
    const REFUSED_FOR: Duration = Duration::from_secs(60);
    const MAX: usize = 4096;

    fn get(&self, token: &str, now: std::time::Instant) -> Option<Result<Caller, String>> {
        let (at, r) = self.entries.get(token)?;
        let ttl = if r.is_ok() { Self::VALID_FOR } else { Self::REFUSED_FOR };
        (now.duration_since(*at) < ttl).then(|| r.clone())
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    fn put(&mut self, token: String, r: Result<Caller, String>, now: std::time::Instant) {
        if self.entries.insert(token.clone(), (now, r)).is_none() {
            self.order.push_back(token);
        }
        while self.order.len() > Self::MAX {
            if let Some(old) = self.order.pop_front() {
                self.entries.remove(&old);
            }
        }
    }
}

/// Whether a string has a JWT's shape (three base64url parts): anything else is refused
/// without asking the miner.
fn jwt_shaped(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts[..2].iter().all(|p| !p.is_empty())
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='))
        && token.len() <= 4096
        && lotus_api::auth::plausible_token(token).is_ok()
}

impl Authenticator for MinerAuth {
    fn verify(&self, token: &str) -> BoxFuture<'_, Result<Caller, String>> {
        let token = token.to_string();
        async move {
            if !jwt_shaped(&token) {
                let why = lotus_api::auth::plausible_token(&token).err();
                return Err(why.unwrap_or_else(|| "the token is not a JWT".into()));
            }
            let now = std::time::Instant::now();
            if let Some(r) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(&token, now) {
                return r;
            }
            let cell = self.asking.lock().unwrap_or_else(|e| e.into_inner()).entry(token.clone()).or_default().clone();
            let (r, remember) = cell
                .get_or_init(|| async {
                    match self.miner.call::<Vec<Permission>>("AuthVerify", serde_json::json!([token])).await {
                        // The miner checked the signature: the worker the token names can be read.
                        Ok(perms) => (Ok(Caller::worker(perms, lotus_api::auth::token_worker(&token))), true),
                        // The miner answered: it refused the token. Remembered, like a valid one.
                        Err(e @ lotus_api::ClientError::Rpc { .. }) => {
                            (Err(format!("the miner refused the token: {e}")), true)
                        }
                        // The miner could not be asked: nothing learnt, nothing remembered.
                        Err(e) => (Err(format!("the token cannot be checked now: {e}")), false),
                    }
                })
                .await
                .clone();
            if remember {
                self.cache.lock().unwrap_or_else(|e| e.into_inner()).put(token.clone(), r.clone(), now);
            }
            self.asking.lock().unwrap_or_else(|e| e.into_inner()).remove(&token);
            r
        }
        .boxed()
    }
}

#[cfg(test)]
mod auth_tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn answers_are_remembered_for_a_while_and_the_oldest_go_first() {
        let mut c = TokenCache::default();
        let t0 = Instant::now();
        c.put("good".into(), Ok(Caller::operator(vec![Permission::Read])), t0);
        c.put("bad".into(), Err("refused".into()), t0);
        assert_eq!(c.get("good", t0 + Duration::from_secs(59)), Some(Ok(Caller::operator(vec![Permission::Read]))));
        assert_eq!(c.get("bad", t0 + Duration::from_secs(59)), Some(Err("refused".into())));
        assert_eq!(c.get("bad", t0 + TokenCache::REFUSED_FOR), None, "asked again after a minute");
        assert_eq!(c.get("good", t0 + TokenCache::VALID_FOR), None);
        for i in 0..TokenCache::MAX {
            c.put(format!("t{i}"), Err("refused".into()), t0);
        }
        assert_eq!(c.entries.len(), TokenCache::MAX);
        assert!(c.get("good", t0).is_none(), "the oldest entry made room");
        assert!(c.get(&format!("t{}", TokenCache::MAX - 1), t0).is_some());
    }

    /// Many requests at once with one unknown token cost the miner one `AuthVerify`, and the
    /// answer is remembered after.
    #[tokio::test]
    async fn concurrent_requests_with_one_token_ask_the_miner_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let asked = Arc::new(AtomicUsize::new(0));
        let mut server = RpcServer::new(lotus_api::methods::MINER);
        server.method::<lotus_api::contract::miner::AuthVerify, _, _, _>(asked.clone(), |n, (_token,)| async move {
            n.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            Err::<Vec<Permission>, _>(RpcError::method("forged"))
        });
        struct Anyone;
        impl Authenticator for Anyone {
            fn verify(&self, _: &str) -> BoxFuture<'_, Result<Caller, String>> {
                async { Ok(Caller::anonymous()) }.boxed()
            }
        }
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let app = rpc::router(Arc::new(server), Arc::new(Anyone));
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        let auth = Arc::new(MinerAuth {
            miner: RpcClient::new(format!("http://{addr}/rpc/v0"), None, Duration::from_secs(5)),
            cache: Mutex::new(TokenCache::default()),
            asking: Default::default(),
        });
        let token = "eyJhbGciOiJIUzI1NiJ9.eyJBbGxvdyI6WyJhZG1pbiJdfQ.forged";
        let all: Vec<_> = (0..50)
            .map(|_| {
                let a = auth.clone();
                tokio::spawn(async move { a.verify(token).await })
            })
            .collect();
        for h in all {
            assert!(h.await.unwrap().unwrap_err().contains("refused"));
        }
        assert!(auth.verify(token).await.is_err());
        assert_eq!(asked.load(Ordering::SeqCst), 1, "one question for 51 requests");
        assert!(auth.asking.lock().unwrap().is_empty(), "nothing left in flight");
    }

    #[test]
    fn only_jwt_shaped_tokens_are_sent_to_the_miner() {
        assert!(jwt_shaped("eyJhbGciOiJIUzI1NiJ9.eyJBbGxvdyI6WyJyZWFkIl19.sig-_x"));
        // Checked here, without the miner: the header's algorithm and the claims' shape.
        // Base64url of {"alg":"HS256","typ":"JWT"} . {"Allow":["read","admin"],"Worker":"w1"}
        assert!(jwt_shaped(
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJBbGxvdyI6WyJyZWFkIiwiYWRtaW4iXSwiV29ya2VyIjoidzEifQ.x"
        ));
        // {"alg":"none"} . {"Allow":["admin"]}
        let none = "eyJhbGciOiJub25lIn0.eyJBbGxvdyI6WyJhZG1pbiJdfQ.x";
        // {"alg":"HS256"} . {"sub":"me"}
        let no_allow = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJtZSJ9.x";
        // {"alg":"HS256"} . {"Allow":["root"]}
        let unknown = "eyJhbGciOiJIUzI1NiJ9.eyJBbGxvdyI6WyJyb290Il19.x";
        // {"alg":"HS256"} . Allow
        let not_json = "eyJhbGciOiJIUzI1NiJ9.QWxsb3c.x";
        for bad in [none, no_allow, unknown, not_json] {
            assert!(!jwt_shaped(bad), "{bad:?}");
        }
        for bad in ["", "garbage", "a.b", "a..c", "a.b.c.d", "a b.c.d", "ä.b.c", "a.b.c"] {
            assert!(!jwt_shaped(bad), "{bad:?}");
        }
    }
}

/// `lotus-worker run`: create and lock the repo, wait for the miner, bind `listener` when one
/// is given (else `--listen`), and [`serve`] until `shutdown` is notified.
pub async fn start(mut s: Settings, listener: Option<tokio::net::TcpListener>, shutdown: Arc<Notify>) -> Result<()> {
    // The repo: created on first start, locked for the life of the process.
    s.repo.create_dir()?;
    let _lock = s.repo.lock()?;
    if !s.repo.is_initialised() {
        let mut storage = s.repo.storage_config()?;
        if !s.no_local_storage {
            sealing_exec::store::init_storage_path(&s.repo.path, 10, true, false)?;
            storage.storage_paths.push(repo::LocalPath { path: std::fs::canonicalize(&s.repo.path)? });
        }
        s.repo.write_storage_config(&storage)?;
        tracing::info!(repo = %s.repo.path.display(), "initialised worker repo");
    }

    let mut miner = RpcClient::new(s.miner.rpc_url(), Some(s.miner.token.clone()), Duration::from_secs(30));
    if let Err(e) = wait_for_miner(&miner, s.connect_timeout).await {
        // After `lotus-miner auth rotate` the environment's token is refused, and the one the
        // miner handed this worker is in the repo: carry on with it.
        let refused = e
            .downcast_ref::<lotus_api::ClientError>()
            .is_some_and(|c| matches!(c, lotus_api::ClientError::Unauthorized { .. }));
        let stored = s.repo.token().ok().filter(|t| *t != s.miner.token);
        let Some(stored) = stored.filter(|_| refused) else { return Err(e) };
        if lotus_api::auth::token_worker(&stored) != lotus_api::auth::token_worker(&s.miner.token) {
            return Err(e);
        }
        tracing::warn!(
            "MINER_API_INFO's token is refused (the miner's secret was rotated); using the rotated token stored in \
             the repo. Update MINER_API_INFO to silence this"
        );
        miner = RpcClient::new(s.miner.rpc_url(), Some(stored.clone()), Duration::from_secs(30));
        wait_for_miner(&miner, s.connect_timeout).await.context("with the rotated token stored in the repo")?;
        s.miner.token = stored;
    }
    let miner = Arc::new(miner);

    let listener = match listener {
        Some(l) => l,
        None => {
            let listen: SocketAddr = s
                .listen
                .parse()
                .with_context(|| format!("--listen {:?} is not an address like 0.0.0.0:3456", s.listen))?;
            lotus_node::daemon::bind(listen, || {
                "another worker (or process) uses that port; give each worker on this host its own --listen port".into()
            })
            .await?
        }
    };
    serve(s, miner, listener, shutdown).await
}

/// The worker daemon on a locked repo, its miner answering, serving on `listener` (port 0
/// included: the `api` file and the registration say which it got) until `shutdown` is
/// notified, the API's `Shutdown` asks, or a signal comes.
pub async fn serve(
    s: Settings,
    miner: Arc<RpcClient>,
    listener: tokio::net::TcpListener,
    shutdown: Arc<Notify>,
) -> Result<()> {
    let background = lotus_node::daemon::Background::new();
    lotus_node::daemon::trim_memory_every(&background, Duration::from_secs(10));
    let bound = listener.local_addr()?;
    let advertised = advertised_addr(bound, &s.miner.host_port)?;
    let url = format!("http://{advertised}/rpc/v0");
    s.repo.write_file("api", lotus_api::apiinfo::to_multiaddr(&advertised.to_string()).as_bytes(), 0o644)?;
    s.repo.write_file("token", s.miner.token.as_bytes(), 0o600)?;
    // One token for every call out of this worker (the miner, other nodes' files, PoSt
    // reads): `UpdateMinerToken` replaces it for all of them at once.
    let token = miner.token().cloned().unwrap_or_else(|| SharedToken::new(s.miner.token.clone()));
    let identity = lotus_api::auth::token_worker(&s.miner.token);
    if let Some(name) = &identity {
        tracing::info!(worker = %name, "the miner token names this worker: it reaches only this worker's paths and calls");
    }

    let hostname = s.name.clone().unwrap_or_else(|| {
        hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "localhost".into())
    });
    let worker = Arc::new(Worker {
        session: Uuid::new_v4(),
        hostname,
        no_swap: s.no_swap,
        no_gpu: s.no_gpu,
        mock_proofs: s.mock.is_some(),
        life: Mutex::new(Life::Enabled),
        last_checked: Mutex::new(std::time::Instant::now()),
        task_types: Mutex::new(s.task_types.clone()),
        shutdown,
    });
    // Storage paths and the executor that runs the miner's task calls.
    let store = Arc::new(sealing_exec::LocalStore::new(format!("http://{advertised}/remote")));
    for p in s.repo.storage_config()?.storage_paths {
        store
            .open_path(&p.path)
            .with_context(|| format!("opening storage path {} (from storage.json)", p.path.display()))?;
    }
    let index: Arc<dyn sealing_exec::SectorIndex> = Arc::new(sealing_exec::index::RpcIndex(miner.clone()));
    let results = s.repo.file("results");
    std::fs::create_dir_all(&results).with_context(|| format!("creating {}", results.display()))?;
    let returner = Arc::new(RpcReturner { miner: miner.clone(), dir: results, miner_back: tokio::sync::Notify::new() });
    let executor = sealing_exec::Executor::new(
        store.clone(),
        index.clone(),
        sealing_exec::remote::Fetcher::new(token.clone(), s.parallel_fetch_limit),
        returner.clone(),
    )
    .context("locating this executable (for proof processes)")?;
    executor.set_sealing_limits(s.sealing_nice, None);
    let backend = match &s.mock {
        Some(d) => {
            tracing::warn!(
                "MOCK PROOFS (--mock-proofs): no proof is computed; only a miner with [Devnet] MockProofs takes this \
                 worker. For tests and benchmarks only"
            );
            executor.set_mock_proofs(d.clone());
            sealing_exec::Backend::Mock
        }
        None => sealing_exec::Backend::Real,
    };
    let env = |k: &str| std::env::var(k).ok();
    if s.no_gpu {
        executor.set_no_gpu();
        tracing::info!("--no-gpu: proofs run on the CPU (BELLMAN_NO_GPU=1)");
    } else {
        let gpus = hw::gpu_devices(&env);
        if !gpus.is_empty() {
            let names: Vec<&str> = gpus.iter().map(|g| g.name.as_str()).collect();
            tracing::info!(gpus = %names.join(", "), "each GPU task gets its own card(s)");
            let table = sealing_types::resources::table_from_env(&env)?;
            let slots = sealing_exec::gpu::GpuSlots::new(gpus.into_iter().map(|g| g.uuid).collect());
            executor.set_gpus(slots.clone(), table);
            if !backend.is_mock() {
                warm_up_gpus(&executor);
            }
        }
    }
    let post = sealing_exec::post::PoStProver::new(
        store.clone(),
        index.clone(),
        token.clone(),
        worker.hostname.clone(),
        s.post_parallel_reads,
        s.post_read_timeout,
        backend,
    )
    .context("locating this executable (for proof processes)")?;
    // Results finished before a restart (or whose delivery a restart interrupted) go out again.
    returner.redeliver_stored();

    let auth = Arc::new(MinerAuth {
        miner: RpcClient::new(s.miner.rpc_url(), None, Duration::from_secs(30)),
        cache: Mutex::new(TokenCache::default()),
        asking: Default::default(),
    });
    let rotation = Rotation { token, identity: identity.clone(), auth: auth.clone(), repo: s.repo.clone() };
    let mut server = api(worker.clone(), executor.clone(), s.repo.clone(), returner.clone(), post, rotation);
    // Another worker's token may call nothing here (every worker method needs admin): it
    // fetches files through `/remote` only.
    server.restrict_worker_tokens(&[], identity);
    let server = Arc::new(server);
    let auth: Arc<dyn Authenticator> = auth;
    let remote = sealing_exec::remote::router(sealing_exec::remote::RemoteState {
        store: store.clone(),
        index,
        auth: auth.clone(),
        missing: "admin",
        backend,
    });
    // Deal data a Lotus miner pushes for AddPiece (io.Reader params, reference §6.1).
    let push = sealing_exec::push::PushStreams::new(s.repo.path.join("push"));
    executor.set_push_streams(push.clone());
    let registry = lotus_node::metrics::registry();
    executor.metrics.register(&registry).context("registering the executor's metrics")?;
    let undelivered = executor.metrics.undelivered.clone();
    let ret = returner.clone();
    let metrics = lotus_node::metrics::router(registry, move || undelivered.set(ret.stored_calls().len() as i64));
    let app = rpc::router(server, auth).merge(remote).merge(sealing_exec::push::router(push)).merge(metrics);

    let mut types: Vec<TaskType> = s.task_types.iter().copied().collect();
    TaskType::sort_by_order(&mut types);
    let shorts: Vec<&str> = types.iter().map(|t| t.short()).collect();
    tracing::info!(session = %worker.session, %url, tasks = %shorts.join(" "), "worker API listening");
    println!("lotus-worker: listening on {bound}, advertised as {url}; tasks: {}", shorts.join(" "));

    background.spawn(keep_registered(miner.clone(), url, worker.clone(), executor.clone(), returner.clone()));
    let w = worker.clone();
    lotus_node::daemon::serve(
        listener,
        s.http_server_timeout,
        app,
        &s.repo,
        worker.shutdown.clone(),
        move || w.close(),
        &background,
    )
    .await?;
    tracing::info!("worker stopped");
    Ok(())
}

/// A GPU build compiles (OpenCL) or loads (CUDA) its proving kernels at the first GPU proof:
/// with OpenCL the first 2KiB Commit2 on an H100 took 197 s instead of 6.5 s. Doing one small
/// proof at start moves that cost out of the first real task. CPU builds have nothing to warm.
fn warm_up_gpus(ex: &Arc<sealing_exec::Executor>) {
    if !cfg!(any(feature = "opencl", feature = "cuda")) {
        tracing::info!("this build proves on the CPU only (build with --features opencl or cuda to use the GPUs)");
        return;
    }
    let ex = ex.clone();
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        match ex.warm_up().await {
            Ok(()) => tracing::info!("GPU kernels ready in {:.1} s", started.elapsed().as_secs_f64()),
            Err(e) => tracing::warn!("GPU warm-up failed (the first GPU proof will be slow): {e}"),
        }
    });
}

/// "Connecting to miner API...": poll `Version` every second; the miner's API version must
/// match ours exactly (reference §6.1).
async fn wait_for_miner(miner: &RpcClient, timeout: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut said = false;
    loop {
        match miner.call_timeout::<Version>("Version", serde_json::json!([]), Duration::from_secs(5)).await {
            Ok(v) if v.api_version == MINER_API_VERSION => return Ok(()),
            Ok(v) => bail!(
                "the miner at {} speaks API {}, this worker needs {}; run the same release on both",
                miner.url(),
                lotus_api::methods::version_string(v.api_version),
                lotus_api::methods::version_string(MINER_API_VERSION)
            ),
            Err(e) if e.is_unreachable() && tokio::time::Instant::now() < deadline => {
                if !said {
                    tracing::info!("Connecting to miner API... ({e})");
                    said = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e).context("connecting to the miner API (MINER_API_INFO)"),
        }
    }
}

/// The address the miner should call back. With an unspecified listen IP (0.0.0.0) it is the
/// local address this host uses to reach the miner (no packet is sent to find it).
fn advertised_addr(bound: SocketAddr, miner_host_port: &str) -> Result<SocketAddr> {
    if !bound.ip().is_unspecified() {
        return Ok(bound);
    }
    use std::net::ToSocketAddrs;
    let target = miner_host_port
        .to_socket_addrs()
        .with_context(|| format!("resolving the miner address {miner_host_port}"))?
        .next()
        .with_context(|| format!("the miner address {miner_host_port} resolves to nothing"))?;
    let probe = std::net::UdpSocket::bind(if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
    probe.connect(target).with_context(|| format!("finding the route to the miner at {target}"))?;
    Ok(SocketAddr::new(probe.local_addr()?.ip(), bound.port()))
}

/// Register, then watch the miner's session. When it changes (miner restarted) register again
/// at once, keeping running tasks: the original waits until the worker is idle (lotus #4979).
async fn keep_registered(
    miner: Arc<RpcClient>,
    url: String,
    w: Arc<Worker>,
    ex: Arc<sealing_exec::Executor>,
    returner: Arc<RpcReturner>,
) {
    let mut registered: Option<Uuid> = None;
    // Retries start at one second and double up to the check interval, so a miner that is
    // down (or refuses us) costs one log line per attempt at most every 10 s.
    let mut retry = Duration::from_secs(1);
    loop {
        if w.life() == Life::Closed {
            return;
        }
        let unchecked = w.last_checked.lock().unwrap_or_else(|e| e.into_inner()).elapsed();
        if registered.is_some() && unchecked > MINER_CHECK_INTERVAL * 4 {
            tracing::warn!(
                "the miner has not checked this worker for {} s (it may have removed it as lost); registering again",
                unchecked.as_secs()
            );
            registered = None;
        }
        let failed = match miner.call_timeout::<Uuid>("Session", serde_json::json!([]), Duration::from_secs(5)).await {
            Ok(s) if Some(s) == registered => None,
            Ok(s) => {
                if registered.is_some() {
                    tracing::warn!(
                        "LOTUS-MINER CONNECTION LOST: the miner restarted (new session {s}); registering again now"
                    );
                }
                match miner.call::<()>("WorkerConnect", serde_json::json!([url])).await {
                    // The miner's index lives in memory: attach the paths and declare the
                    // sectors after every (re)registration.
                    Ok(()) => match ex.declare_all().await {
                        Ok(()) => {
                            registered = Some(s);
                            *w.last_checked.lock().unwrap_or_else(|e| e.into_inner()) = std::time::Instant::now();
                            tracing::info!("Worker registered successfully, waiting for tasks");
                            returner.miner_back.notify_waiters();
                            None
                        }
                        Err(e) => Some(format!("attaching storage paths to the miner failed: {e}")),
                    },
                    Err(e) => Some(format!("registering with the miner failed: {e}")),
                }
            }
            Err(e) => Some(format!("the miner is unreachable ({e})")),
        };
        let pause = match failed {
            None => {
                ex.report_health().await;
                retry = Duration::from_secs(1);
                MINER_CHECK_INTERVAL
            }
            Some(why) => {
                tracing::warn!("{why}; retrying in {} s", retry.as_secs());
                let p = retry;
                retry = (retry * 2).min(MINER_CHECK_INTERVAL);
                p
            }
        };
        tokio::time::sleep(pause).await;
    }
}

/// Delivers results with `Return<Method>`, retrying (1 s doubling to 30 s, and at once when the
/// worker registers again: a miner back from a restart gets its results without waiting out
/// the backoff) until the miner takes them. Each result is first written to `<repo>/results/<call>.json` and removed only
/// once delivered, so neither a miner restart nor a worker restart loses finished work (Lotus
/// reports "worker restarted" and the phase is computed again, lotus #3453).
struct RpcReturner {
    miner: Arc<RpcClient>,
    dir: std::path::PathBuf,
    /// Woken by each (re)registration with the miner.
    miner_back: tokio::sync::Notify,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredResult {
    #[serde(rename = "Method")]
    method: String,
    #[serde(rename = "Call")]
    call: sealing_types::CallId,
    #[serde(rename = "Value")]
    value: serde_json::Value,
    #[serde(rename = "Err")]
    err: Option<lotus_api::types::CallError>,
}

impl RpcReturner {
    fn file(&self, call: &sealing_types::CallId) -> std::path::PathBuf {
        self.dir.join(format!("{}.json", call.id))
    }

    /// Calls whose results wait here for delivery.
    fn stored_calls(&self) -> Vec<sealing_types::CallId> {
        std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice::<StoredResult>(&b).ok())
            .map(|r| r.call)
            .collect()
    }

    fn redeliver_stored(self: &Arc<Self>) {
        for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let Some(r) = std::fs::read(e.path()).ok().and_then(|b| serde_json::from_slice::<StoredResult>(&b).ok())
            else {
                continue;
            };
            tracing::info!(call = %r.call.id, sector = %r.call.sector, method = %r.method, "delivering a result stored before the restart");
            let me = self.clone();
            tokio::spawn(async move { me.deliver(r).await });
        }
    }

    async fn deliver(&self, r: StoredResult) {
        // Lotus's Return<Method>: (callID, result, err) for methods with a result, (callID,
        // err) for the others; a failed call's result is null.
        let params = if lotus_api::contract::returns_value(&r.method) {
            serde_json::json!([r.call, r.value, r.err])
        } else {
            serde_json::json!([r.call, r.err])
        };
        let name = lotus_api::contract::return_method(&r.method);
        let mut wait = Duration::from_secs(1);
        loop {
            // Listening before the attempt: a registration during a failing call still wakes us.
            let back = self.miner_back.notified();
            tokio::pin!(back);
            back.as_mut().enable();
            match self.miner.call::<()>(&name, params.clone()).await {
                Ok(()) => {
                    let _ = std::fs::remove_file(self.file(&r.call));
                    return;
                }
                Err(e) => {
                    tracing::warn!(call = %r.call.id, "{name} failed ({e}); retrying in {} s", wait.as_secs());
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = back => tracing::info!(call = %r.call.id, "registered with the miner again: delivering now"),
                    }
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

impl sealing_exec::Returner for RpcReturner {
    fn ret(
        &self,
        method: String,
        call: sealing_types::CallId,
        result: Result<serde_json::Value, lotus_api::types::CallError>,
    ) -> BoxFuture<'_, ()> {
        async move {
            let (value, err) = match result {
                Ok(v) => (v, None),
                Err(e) => (serde_json::Value::Null, Some(e)),
            };
            let r = StoredResult { method, call, value, err };
            let path = self.file(&call);
            if let Err(e) = lotus_node::repo::write_atomic(&path, &serde_json::to_vec(&r).expect("serialises"), 0o600) {
                tracing::warn!(call = %call.id, "could not store the result in {} ({e}); delivering it from memory only", path.display());
            }
            self.deliver(r).await
        }
        .boxed()
    }
}

/// What `UpdateMinerToken` (the miner's `auth rotate`) changes on this worker.
struct Rotation {
    /// The token every call out of this worker carries.
    token: SharedToken,
    /// The worker the current token names: a new token must name the same one.
    identity: Option<String>,
    auth: Arc<MinerAuth>,
    repo: Repo,
}

impl Rotation {
    /// Take the miner's new token once the miner confirms it, for every call out of this
    /// worker; forget the tokens checked before (the old secret's are refused from now on).
    async fn update(&self, new: String) -> Result<(), RpcError> {
        if !jwt_shaped(&new) {
            return Err(RpcError::invalid_params("UpdateMinerToken: param 0 (token) is not a JWT"));
        }
        let perms: Vec<Permission> =
            self.auth.miner.call("AuthVerify", serde_json::json!([new])).await.map_err(|e| {
                RpcError::method(format!("the miner does not confirm the new token ({e}); the old one stays"))
            })?;
        if !perms.contains(&Permission::Admin) {
            return Err(RpcError::method(
                "the new token lacks admin permission, which a worker needs; the old one stays",
            ));
        }
        let named = lotus_api::auth::token_worker(&new);
        if named != self.identity {
            return Err(RpcError::method(format!(
                "the new token names worker {named:?} but this worker is {:?}: a rotation keeps a worker's identity; \
                 the old token stays",
                self.identity
            )));
        }
        self.token.set(new.clone());
        if let Err(e) = self.repo.write_file("token", new.as_bytes(), 0o600) {
            tracing::warn!("took the rotated miner token but could not store it in the repo: {e}");
        }
        self.auth.cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
        tracing::info!("the miner rotated its API secret: calls out of this worker carry the new token");
        Ok(())
    }
}

fn api(
    w: Arc<Worker>,
    ex: Arc<sealing_exec::Executor>,
    repo: Repo,
    ret: Arc<RpcReturner>,
    post: Arc<sealing_exec::post::PoStProver>,
    rotation: Rotation,
) -> RpcServer {
    use lotus_api::contract::worker as c;
    let mut s = RpcServer::new(lotus_api::methods::WORKER);
    let rotation = Arc::new(rotation);
    s.method::<c::UpdateMinerToken, _, _, _>(rotation, |r, (token,)| async move { r.update(token).await });
    // PoSt (only on a PoSt worker), with Lotus's params: the proof type, the miner, the
    // sectors with their challenges, (WindowPoSt) the partition, the randomness. Answered when
    // the proof is done; sectors that cannot be read are skipped (WindowPoSt) and listed.
    fn post_params(
        w: &Worker,
        tt: TaskType,
        sectors: &[c::PostSectorChallenge],
        randomness: &lotus_api::wire::Bytes,
    ) -> Result<(Vec<sealing_exec::post::PoStSector>, sealing_exec::wire::Challenges, [u8; 32]), RpcError> {
        if !w.task_types.lock().unwrap_or_else(|e| e.into_inner()).contains(&tt) {
            return Err(RpcError::method(format!(
                "this worker does not run {} (start it with --{})",
                tt.short(),
                if tt == TaskType::GenerateWindowPoSt { "windowpost" } else { "winningpost" }
            )));
        }
        let (sectors, challenges) = sealing_exec::wire::post_sectors(sectors).map_err(RpcError::invalid_params)?;
        let randomness = randomness.to_32("the randomness").map_err(RpcError::invalid_params)?;
        Ok((sectors, challenges, randomness))
    }
    s.method::<c::GenerateWindowPoSt, _, _, _>(
        (w.clone(), post.clone()),
        |(w, post), (ppt, miner, sectors, _partition, randomness)| async move {
            let (sectors, challenges, randomness) =
                post_params(&w, TaskType::GenerateWindowPoSt, &sectors, &randomness)?;
            let out = post
                .prove(PoStKind::Window, miner, randomness, sectors, Some(challenges))
                .await
                .map_err(RpcError::method)?;
            sealing_exec::wire::window_result(ppt, miner, out).map_err(RpcError::method)
        },
    );
    s.method::<c::GenerateWinningPoSt, _, _, _>(
        (w.clone(), post.clone()),
        |(w, post), (ppt, miner, sectors, randomness)| async move {
            let (sectors, challenges, randomness) =
                post_params(&w, TaskType::GenerateWinningPoSt, &sectors, &randomness)?;
            let out = post
                .prove(PoStKind::Winning, miner, randomness, sectors, Some(challenges))
                .await
                .map_err(RpcError::method)?;
            sealing_exec::wire::winning_result(ppt, out).map_err(RpcError::method)
        },
    );
    // Calls this worker runs or holds an undelivered result of (a restarted miner asks).
    s.method::<c::Calls, _, _, _>((ex.clone(), ret.clone()), |(ex, ret), ()| async move {
        let mut calls = ex.running_calls();
        calls.extend(ret.stored_calls());
        Ok(calls)
    });
    for &name in sealing_exec::exec::TASK_METHODS {
        s.register_with(name, (w.clone(), ex.clone()), move |(w, ex), p: Params| async move {
            let call = sealing_exec::TaskCall::from_rpc(name, p.into_values())?;
            if let Some(why) = w.life().refuses_tasks() {
                return Err(RpcError::method(why));
            }
            Ok(ex.start(call))
        });
    }
    s.method::<c::StorageAddLocal, _, _, _>((ex.clone(), repo.clone()), |(ex, repo), (path,)| async move {
        let lp = ex.store.open_path(std::path::Path::new(&path)).map_err(|e| RpcError::method(e.to_string()))?;
        let mut cfg = repo.storage_config().map_err(|e| RpcError::method(e.to_string()))?;
        if !cfg.storage_paths.iter().any(|p| p.path == lp.root) {
            cfg.storage_paths.push(repo::LocalPath { path: lp.root.clone() });
            repo.write_storage_config(&cfg).map_err(|e| RpcError::method(e.to_string()))?;
        }
        ex.attach_path(&lp).await.map_err(|e| RpcError::method(e.to_string()))
    });
    s.method::<c::AbortCall, _, _, _>(ex.clone(), |ex, (call,)| async move { Ok(ex.abort(call)) });
    s.method::<c::StorageLocal, _, _, _>(ex.clone(), |ex, ()| async move {
        Ok(ex.store.paths().into_iter().map(|lp| (lp.id(), lp.root.display().to_string())).collect())
    });
    s.method::<c::Version, _, _, _>((), |(), ()| async move { Ok(WORKER_API_VERSION) });
    s.method::<c::Session, _, _, _>(w.clone(), |w, ()| async move {
        *w.last_checked.lock().unwrap_or_else(|e| e.into_inner()) = std::time::Instant::now();
        match w.life() {
            Life::Enabled => Ok(w.session),
            Life::Closed => Ok(Uuid::nil()),
            // Answering with an error keeps it registered but disabled: nothing new is
            // assigned, running calls are still awaited.
            Life::Draining => {
                Err(RpcError::method("worker is stopping (lotus-worker stop): finishing its running tasks"))
            }
            // The miner treats a failing session as "disabled" (reference §7.4).
            Life::Disabled => Err(RpcError::method("worker disabled (lotus-worker set --enabled=false)")),
        }
    });
    s.method::<c::ProcessSession, _, _, _>(w.clone(), |w, ()| async move { Ok(w.session) });
    s.method::<c::Info, _, _, _>(w.clone(), |w, ()| async move { w.info() });
    s.method::<c::TaskTypes, _, _, _>(w.clone(), |w, ()| async move {
        Ok(w.types().into_iter().map(|t| (t, lotus_api::contract::Empty {})).collect())
    });
    s.method::<c::Paths, _, _, _>(ex.clone(), |ex, ()| async move {
        Ok(ex
            .store
            .paths()
            .iter()
            .map(|lp| lotus_api::wire::StoragePath {
                id: lp.id(),
                weight: lp.meta.weight,
                local_path: lp.root.display().to_string(),
                can_seal: lp.meta.can_seal,
                can_store: lp.meta.can_store,
            })
            .collect())
    });
    s.method::<c::Enabled, _, _, _>(w.clone(), |w, ()| async move { Ok(w.life() == Life::Enabled) });
    s.method::<c::SetEnabled, _, _, _>(w.clone(), |w, (enabled,)| async move {
        let (from, to) = if enabled { (Life::Disabled, Life::Enabled) } else { (Life::Enabled, Life::Disabled) };
        // A stopping worker stays stopping.
        w.change_life(&[from, to], to);
        Ok(())
    });
    s.method::<c::TaskEnable, _, _, _>(w.clone(), |w, (t,)| async move {
        w.task_types.lock().unwrap_or_else(|e| e.into_inner()).insert(t);
        Ok(())
    });
    s.method::<c::TaskDisable, _, _, _>(w.clone(), |w, (t,)| async move {
        w.task_types.lock().unwrap_or_else(|e| e.into_inner()).remove(&t);
        Ok(())
    });
    s.method::<c::Remove, _, _, _>(ex.clone(), |ex, (sector,)| async move {
        ex.remove_sector(sector).await.map_err(|e| RpcError::method(e.to_string()))
    });
    s.method::<c::StorageRedeclareLocal, _, _, _>(ex.clone(), |ex, (id, drop_missing)| async move {
        ex.redeclare(id, drop_missing).await.map_err(|e| RpcError::method(e.to_string()))
    });
    // Detaching also takes the path out of storage.json, so a restart does not attach it again.
    async fn detach(ex: &sealing_exec::Executor, repo: &Repo, root: &std::path::Path) -> Result<(), RpcError> {
        let p = ex.detach_path(root).await.map_err(|e| RpcError::method(e.to_string()))?;
        let mut cfg = repo.storage_config().map_err(|e| RpcError::method(e.to_string()))?;
        cfg.storage_paths.retain(|lp| lp.path != p.root);
        repo.write_storage_config(&cfg).map_err(|e| RpcError::method(e.to_string()))
    }
    s.method::<c::StorageDetachLocal, _, _, _>((ex.clone(), repo.clone()), |(ex, repo), (path,)| async move {
        detach(&ex, &repo, std::path::Path::new(&path)).await
    });
    s.method::<c::StorageDetachAll, _, _, _>((ex.clone(), repo.clone()), |(ex, repo), ()| async move {
        for p in ex.store.paths() {
            detach(&ex, &repo, &p.root).await?;
        }
        Ok(())
    });
    // Wait until no task runs (Lotus's `WaitQuiet`).
    s.method::<c::WaitQuiet, _, _, _>(ex.clone(), |ex, ()| async move {
        while !ex.running_calls().is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    });
    // `Shutdown` drains: no new tasks, the running ones finish and their results are delivered
    // (or stored, if the miner is away), then the worker exits. `Shutdown [true]` exits now;
    // its running tasks are then rescheduled by the miner.
    s.method::<c::Shutdown, _, _, _>((w.clone(), ex.clone(), ret.clone()), |(w, ex, ret), (now,)| async move {
        if now == Some(true) {
            w.close();
            w.shutdown.notify_one();
            return Ok(());
        }
        if !w.change_life(&[Life::Enabled, Life::Disabled], Life::Draining) {
            return Ok(()); // already draining or closed
        }
        tracing::info!("stop requested: draining ({} task(s) running)", ex.running_calls().len());
        tokio::spawn(async move {
            let mut undelivered_since: Option<std::time::Instant> = None;
            loop {
                if ex.running_calls().is_empty() {
                    // Results are on disk; give the miner a while to take them, then go (they
                    // are delivered at the next start otherwise).
                    let since = *undelivered_since.get_or_insert_with(std::time::Instant::now);
                    if ret.stored_calls().is_empty() || since.elapsed() > Duration::from_secs(30) {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            tracing::info!("drained: no task running, results delivered; stopping");
            w.close();
            w.shutdown.notify_one();
        });
        Ok(())
    });
    s.refuse_unimplemented(|r| c::visit(r), "worker");
    s
}
