//! The worker manager: registered workers, their heartbeats, and the scheduler they feed.
//!
//! This is the shell around the pure core in `jobs.rs`: one short-held mutex guards the core
//! (the scheduler and every task's record), the worker table and the sector index; no lock is
//! ever held across an `.await`, and nothing under it touches the disk (the work tracker
//! writes on its own thread). Heartbeat tasks, `Return*` calls and the ends of started calls
//! become the core's inputs; its outputs (start a call, answer a task) run after the lock.

use crate::index::IndexError;
use crate::index::{origin, Index};
use crate::jobs::{CallResult, Fate, Input, JobState, Jobs, Output, Phase, Record};
use futures_util::future::BoxFuture;
use lotus_api::methods::WORKER_API_VERSION;
use lotus_api::types::{seal_task_key, CallError, FsStat, SectorStorageInfo, StorageInfo, WorkerStats};
use lotus_api::{ClientError, JwtSecret, Permission, RpcClient, SharedToken};
use sealing_exec::index::IndexResult;
use sealing_exec::{Executor, TaskCall};
use sealing_sched::{Event, Scheduler, Selector, TaskRequest, WorkerSpec};
use sealing_types::{CallId, FileTypes, PathType, SchedId, SectorId, SectorRef, TaskType, WorkerId, WorkerInfo};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// The manager's timings, resolved once from the configuration (tests shorten them).
#[derive(Clone, Debug)]
pub struct Timings {
    /// How often the miner checks each worker's session (reference §3.1: 10 s).
    pub heartbeat_interval: Duration,
    /// Timeout of one session check (HeartbeatInterval / 2).
    pub heartbeat_timeout: Duration,
    /// `[Storage] WorkerLostTimeout`: a worker that does not answer for this long is removed,
    /// so its running tasks run again elsewhere (none: never).
    pub worker_lost_timeout: Option<Duration>,
    /// How long a restarted miner waits for a call it tracked as running, when no connected
    /// worker says it still runs it or holds its result, before scheduling the work again.
    pub tracked_call_grace: Duration,
    /// How often it asks the workers about such a call meanwhile.
    pub tracked_call_poll: Duration,
    /// `[API] Timeout`: how long one call to a worker may take.
    pub api_timeout: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            heartbeat_interval: Duration::from_secs(10),
            heartbeat_timeout: Duration::from_secs(5),
            worker_lost_timeout: None,
            tracked_call_grace: Duration::from_secs(60),
            tracked_call_poll: Duration::from_secs(5),
            api_timeout: Duration::from_secs(30),
        }
    }
}

/// What the manager is built from.
pub struct ManagerConfig {
    pub secret: JwtSecret,
    /// The miner's own admin token, which its calls to workers carry (shared with its file
    /// fetcher and PoSt reader, so that `auth rotate` replaces it everywhere at once).
    pub token: SharedToken,
    pub sched: Scheduler,
    /// The miner's own worker: its report, task types and `/remote` origin (`http://host:port`).
    pub local_info: WorkerInfo,
    pub local_task_types: BTreeSet<TaskType>,
    pub local_origin: String,
    /// `[Storage] DisallowRemoteFinalize`.
    pub disallow_remote_finalize: bool,
    pub timings: Timings,
    /// Work tracking in the miner's database (none in unit tests).
    pub calls: Option<Arc<crate::calls::CallStore>>,
}

/// Why a call to a worker got no answer, by what the manager does about it.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The worker could not be reached (down, cut off, too slow to answer): what it runs is
    /// unknown, not gone. Its heartbeat decides whether it is lost; until then nothing it may
    /// run is started elsewhere.
    #[error("worker {worker} cannot be reached: {why}")]
    Unreachable { worker: String, why: String },
    /// The worker answered, with an error.
    #[error("worker {worker} answered with an error: {why}")]
    Refused { worker: String, why: String },
}

impl LinkError {
    fn of(worker: WorkerId, e: lotus_api::client::ClientError) -> LinkError {
        let (worker, why) = (worker.to_string(), e.to_string());
        if e.is_unreachable() {
            LinkError::Unreachable { worker, why }
        } else {
            LinkError::Refused { worker, why }
        }
    }
}

/// How the manager reaches a worker: over RPC ([`RpcLink`]), the miner's own executor in this
/// process ([`LocalLink`]), or, in tests and benchmarks, anything that starts calls and
/// answers them through [`Manager::on_return`]. Results always come back through `on_return`.
pub trait WorkerLink: Send + Sync {
    /// Start a task call: its ID at once, its result later.
    fn start(&self, call: TaskCall) -> BoxFuture<'_, Result<CallId, CallError>>;
    /// Stop a running call (its proof process is killed); whether the worker still ran it.
    fn abort(&self, call: CallId) -> BoxFuture<'_, Result<bool, LinkError>>;
    /// The calls the worker runs or holds an undelivered result of.
    fn calls(&self) -> BoxFuture<'_, Result<Vec<CallId>, LinkError>>;
    /// The client of a remote worker (PoSt workers are called directly).
    fn rpc(&self) -> Option<Arc<RpcClient>> {
        None
    }
}

/// A worker process, called back at the URL it registered.
pub struct RpcLink {
    pub worker: WorkerId,
    pub client: Arc<RpcClient>,
}

impl WorkerLink for RpcLink {
    fn start(&self, call: TaskCall) -> BoxFuture<'_, Result<CallId, CallError>> {
        Box::pin(async move {
            let (method, params) = call.to_rpc();
            self.client.call::<CallId>(method, serde_json::Value::Array(params)).await.map_err(|e| {
                CallError::new(CallError::TEMP_UNKNOWN, format!("calling {method} on worker {}: {e}", self.worker))
            })
        })
    }
    fn abort(&self, call: CallId) -> BoxFuture<'_, Result<bool, LinkError>> {
        Box::pin(async move {
            let r = self.client.request::<lotus_api::contract::worker::AbortCall>((call,)).await;
            r.map_err(|e| LinkError::of(self.worker, e))
        })
    }
    fn calls(&self) -> BoxFuture<'_, Result<Vec<CallId>, LinkError>> {
        Box::pin(async move {
            let r = self.client.request_timeout::<lotus_api::contract::worker::Calls>((), Duration::from_secs(5)).await;
            r.map_err(|e| LinkError::of(self.worker, e))
        })
    }
    fn rpc(&self) -> Option<Arc<RpcClient>> {
        Some(self.client.clone())
    }
}

/// The miner's own executor, in this process.
pub struct LocalLink(pub Arc<Executor>);

impl WorkerLink for LocalLink {
    fn start(&self, call: TaskCall) -> BoxFuture<'_, Result<CallId, CallError>> {
        Box::pin(async move { Ok(self.0.start(call)) })
    }
    fn abort(&self, call: CallId) -> BoxFuture<'_, Result<bool, LinkError>> {
        Box::pin(async move { Ok(self.0.abort(call)) })
    }
    fn calls(&self) -> BoxFuture<'_, Result<Vec<CallId>, LinkError>> {
        Box::pin(async move { Ok(self.0.running_calls()) })
    }
}

/// The miner's own worker before its executor is set up.
struct NotStarted;

impl WorkerLink for NotStarted {
    fn start(&self, _: TaskCall) -> BoxFuture<'_, Result<CallId, CallError>> {
        Box::pin(async { Err(CallError::unknown("the miner's executor is not started")) })
    }
    fn abort(&self, _: CallId) -> BoxFuture<'_, Result<bool, LinkError>> {
        Box::pin(async { Ok(false) })
    }
    fn calls(&self) -> BoxFuture<'_, Result<Vec<CallId>, LinkError>> {
        Box::pin(async { Ok(vec![]) })
    }
}

struct WorkerEntry {
    /// `None` for the miner's own worker.
    url: Option<String>,
    /// `http://host:port`: the node its storage paths' URLs point at.
    origin: String,
    link: Arc<dyn WorkerLink>,
    info: WorkerInfo,
    task_types: BTreeSet<TaskType>,
    enabled: bool,
    heartbeat: Option<JoinHandle<()>>,
    /// A PoSt worker: it goes to the PoSt scheduler, never to the sealing scheduler (§3.11).
    post: bool,
    /// The worker its registration's token names (none: the operator's token, or the
    /// miner's own worker): only that token may answer its calls.
    owner: Option<String>,
}

fn is_post_worker(types: &BTreeSet<TaskType>) -> bool {
    types.contains(&TaskType::GenerateWindowPoSt) || types.contains(&TaskType::GenerateWinningPoSt)
}

impl Drop for WorkerEntry {
    fn drop(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }
}

/// A task's result and the hostname of the worker that ran it.
#[derive(Debug)]
pub struct Ran {
    pub value: serde_json::Value,
    pub host: String,
}

/// Whoever waits for a task's result.
type Reply = oneshot::Sender<Result<Ran, CallError>>;

struct State {
    /// The scheduler and every task's record.
    jobs: Jobs<Reply>,
    workers: BTreeMap<WorkerId, WorkerEntry>,
    index: Index,
}

/// What is left to do once the lock is released.
#[allow(clippy::large_enum_variant)] // carried out at once, never stored in bulk
enum Todo {
    Start { id: SchedId, placement: u64, worker: WorkerId, link: Option<Arc<dyn WorkerLink>>, call: TaskCall },
    Deliver { reply: Reply, result: Result<Ran, CallError> },
}

pub struct Manager {
    secret: JwtSecret,
    token: SharedToken,
    state: Mutex<State>,
    /// The local worker's ID, if the miner runs one.
    pub local_worker: Option<WorkerId>,
    /// The miner's own executor (its storage paths and its built-in worker's tasks).
    local: Option<Arc<Executor>>,
    /// `[Storage] DisallowRemoteFinalize`.
    pub disallow_remote_finalize: bool,
    /// `[Devnet] MockProofs` (the miner's own worker reports it): only mock-proof workers join.
    mock_proofs: bool,
    timings: Timings,
    calls: Option<Arc<crate::calls::CallStore>>,
    /// Calls started and returned, scheduling passes (`/debug/metrics`).
    pub metrics: Arc<crate::metrics::MinerMetrics>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot call back the worker at {url}: {source}. The worker must be reachable from the miner at the address it advertises (check its --listen address and firewalls)")]
    Unreachable { url: String, source: ClientError },
    #[error("worker at {url} speaks API {theirs}, this miner needs {ours}.x; run the same release on both")]
    Version { url: String, theirs: String, ours: String },
    #[error("worker at {url} has already shut down (its session is closed)")]
    Closed { url: String },
    #[error("worker at {url} runs {theirs} proofs and this miner {ours} ones: start the worker {fix}")]
    Backend { url: String, theirs: &'static str, ours: &'static str, fix: &'static str },
    #[error("the worker session at {url} is registered with the token of {registered}, not of {caller}: each worker registers with its own token")]
    Identity { url: String, registered: String, caller: String },
}

/// Why a worker's `Return*` is refused, by what the worker must do: keep the result and
/// deliver it again once its host has registered, or stop offering it here.
#[derive(Debug, thiserror::Error)]
pub enum ReturnRefused {
    #[error("call {} of sector {} is not a call of worker {worker:?}: refused", call.id, call.sector)]
    NotItsCall { call: CallId, worker: String },
    #[error("call {} ran on {host}, which has not registered again since the miner started; retry once it has", call.id)]
    HostNotBack { call: CallId, host: String },
}

fn who(owner: &Option<String>) -> String {
    match owner {
        Some(w) => format!("worker {w:?}"),
        None => "the operator".into(),
    }
}

impl Manager {
    /// The manager with the miner's own worker registered (no heartbeat: it lives in this
    /// process). `executor` builds that worker's executor from the manager it reports to
    /// (its index and its results go straight to it); none leaves the miner's own worker
    /// unable to start anything (unit tests).
    pub fn new<E>(
        cfg: ManagerConfig,
        executor: impl FnOnce(Weak<Manager>) -> Result<Option<Arc<Executor>>, E>,
    ) -> Result<Arc<Self>, E> {
        let id = WorkerId::new_random();
        let mock_proofs = cfg.local_info.mock_proofs;
        let mut st = State { jobs: Jobs::new(cfg.sched), workers: BTreeMap::new(), index: Index::default() };
        let ws = spec(&st.index, &cfg.local_info, &cfg.local_task_types, &cfg.local_origin);
        st.jobs.sched.handle(Event::WorkerAdded { id, spec: ws });
        let mut failed = None;
        let m = Arc::new_cyclic(|me| {
            let local = executor(me.clone()).unwrap_or_else(|e| {
                failed = Some(e);
                None
            });
            let link: Arc<dyn WorkerLink> = match &local {
                Some(ex) => Arc::new(LocalLink(ex.clone())),
                None => Arc::new(NotStarted),
            };
            st.workers.insert(
                id,
                WorkerEntry {
                    url: None,
                    origin: cfg.local_origin,
                    link,
                    info: cfg.local_info,
                    task_types: cfg.local_task_types,
                    enabled: true,
                    heartbeat: None,
                    post: false,
                    owner: None,
                },
            );
            Manager {
                secret: cfg.secret,
                token: cfg.token,
                state: Mutex::new(st),
                local_worker: Some(id),
                local,
                disallow_remote_finalize: cfg.disallow_remote_finalize,
                mock_proofs,
                timings: cfg.timings,
                calls: cfg.calls,
                metrics: Arc::new(crate::metrics::MinerMetrics::new()),
            }
        });
        match failed {
            Some(e) => Err(e),
            None => Ok(m),
        }
    }

    /// A manager with no executor of its own (its own worker takes `local_task_types` but
    /// cannot start them): what unit tests drive, with workers behind fake links.
    pub fn without_executor(
        sched: Scheduler,
        local_task_types: BTreeSet<TaskType>,
        calls: Option<Arc<crate::calls::CallStore>>,
        timings: Timings,
    ) -> Arc<Self> {
        let secret = JwtSecret::generate();
        let cfg = ManagerConfig {
            token: SharedToken::new(secret.create_token(&Permission::Admin.with_lower())),
            secret,
            sched,
            local_info: WorkerInfo::default(),
            local_task_types,
            local_origin: "http://127.0.0.1:1".into(),
            disallow_remote_finalize: false,
            timings,
            calls,
        };
        match Manager::new(cfg, |_| Ok::<_, std::convert::Infallible>(None)) {
            Ok(m) => m,
            Err(never) => match never {},
        }
    }

    pub fn call_store(&self) -> Option<&Arc<crate::calls::CallStore>> {
        self.calls.as_ref()
    }

    pub fn local_executor(&self) -> Option<&Arc<Executor>> {
        self.local.as_ref()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock must not take every later RPC down with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `WorkerConnect(url)`: call the worker back, check it, and start its heartbeat.
    /// `owner` is the worker the caller's token names.
    pub async fn connect(self: &Arc<Self>, url: String, owner: Option<String>) -> Result<WorkerId, ConnectError> {
        let client = Arc::new(RpcClient::with_token(url.clone(), Some(self.token.clone()), self.timings.api_timeout));
        let unreachable = |source| ConnectError::Unreachable { url: url.clone(), source };
        use lotus_api::contract::worker as w;
        // Lotus's rule: the worker's API major.minor must be ours (patch may differ).
        let v = client.request::<w::Version>(()).await.map_err(unreachable)?;
        if v >> 8 != WORKER_API_VERSION >> 8 {
            return Err(ConnectError::Version {
                url,
                theirs: lotus_api::methods::version_string(v),
                ours: lotus_api::methods::version_string(WORKER_API_VERSION)[..3].to_string(),
            });
        }
        let session = client.request::<w::Session>(()).await.map_err(unreachable)?;
        if session.is_nil() {
            return Err(ConnectError::Closed { url });
        }
        // Workers call again every check, to come back after being removed (lost): a known
        // session costs nothing more.
        if let Some(w) = self.lock().workers.get(&WorkerId(session)) {
            if w.owner != owner {
                return Err(ConnectError::Identity { url, registered: who(&w.owner), caller: who(&owner) });
            }
            return Ok(WorkerId(session));
        }
        let info = client.request::<w::Info>(()).await.map_err(unreachable)?;
        if info.mock_proofs != self.mock_proofs {
            let name = |mock: bool| if mock { "mock" } else { "real" };
            return Err(ConnectError::Backend {
                url,
                theirs: name(info.mock_proofs),
                ours: name(self.mock_proofs),
                fix: if self.mock_proofs { "with --mock-proofs" } else { "without --mock-proofs" },
            });
        }
        let types = client.request::<w::TaskTypes>(()).await.map_err(unreachable)?;
        let id = WorkerId(session);
        let task_types: BTreeSet<TaskType> = types.into_keys().collect();
        {
            let mut st = self.lock();
            if st.workers.contains_key(&id) {
                return Ok(id); // the same session registering again: nothing to do
            }
            // A new session at a known URL is the same worker restarted: drop the old entry.
            let stale: Vec<WorkerId> =
                st.workers.iter().filter(|(_, w)| w.url.as_deref() == Some(url.as_str())).map(|(id, _)| *id).collect();
            let mut todo = vec![];
            for old in stale {
                tracing::info!(worker = %old, %url, "worker restarted with a new session; removing the old entry");
                todo.extend(self.remove_locked(&mut st, old));
            }
            let node = origin(&url).to_string();
            let post = is_post_worker(&task_types);
            if !post {
                let ws = spec(&st.index, &info, &task_types, &node);
                todo.extend(self.step(&mut st, Input::Sched(Event::WorkerAdded { id, spec: ws })).0);
            }
            st.workers.insert(
                id,
                WorkerEntry {
                    url: Some(url.clone()),
                    origin: node,
                    link: Arc::new(RpcLink { worker: id, client: client.clone() }),
                    info: info.clone(),
                    task_types,
                    enabled: true,
                    heartbeat: None,
                    post,
                    owner: owner.clone(),
                },
            );
            drop(st);
            self.carry(todo);
        }
        let me = Arc::downgrade(self);
        let timings = self.timings.clone();
        let hb = tokio::spawn(async move { heartbeat(me, id, client, timings).await });
        if let Some(w) = self.lock().workers.get_mut(&id) {
            w.heartbeat = Some(hb);
        }
        tracing::info!(worker = %id, host = %info.hostname, %url, "worker connected");
        let me = self.clone();
        tokio::spawn(async move { me.stop_orphan_calls(id).await });
        Ok(id)
    }

    /// A worker that joins (or comes back after it was removed as lost) may still run calls
    /// nobody here waits for: its tasks were requeued and run elsewhere, or a miner restart
    /// lost the record of them. Those are stopped, so no task runs twice at once; a call the
    /// work tracker knows (a restarted miner will wait for it) is left alone.
    async fn stop_orphan_calls(self: Arc<Self>, id: WorkerId) {
        let Some(link) = self.lock().workers.get(&id).map(|w| w.link.clone()) else { return };
        let Ok(calls) = link.calls().await else { return };
        for call in calls {
            let known = self.lock().jobs.job_of_call(call).is_some()
                || self.calls.as_ref().is_some_and(|c| c.host_of(call).is_some());
            if known {
                continue;
            }
            match link.abort(call).await {
                Ok(true) => {
                    tracing::warn!(worker = %id, call = %call.id, sector = %call.sector, "stopped a call no task waits for (its task runs elsewhere)")
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(worker = %id, call = %call.id, "could not stop a call no task waits for: {e}"),
            }
        }
    }

    /// Register a sealing worker reached through `link` without calling it back or checking
    /// its heartbeat: an in-process worker (tests, benchmarks). `origin` is the node its
    /// storage paths' URLs point at.
    pub fn register_link(
        self: &Arc<Self>,
        id: WorkerId,
        info: WorkerInfo,
        task_types: BTreeSet<TaskType>,
        origin: String,
        link: Arc<dyn WorkerLink>,
    ) {
        let todo = {
            let mut st = self.lock();
            let ws = spec(&st.index, &info, &task_types, &origin);
            let entry = WorkerEntry {
                url: None,
                origin,
                link,
                info,
                task_types,
                enabled: true,
                heartbeat: None,
                post: false,
                owner: None,
            };
            st.workers.insert(id, entry);
            self.step(&mut st, Input::Sched(Event::WorkerAdded { id, spec: ws })).0
        };
        self.carry(todo);
    }

    fn set_enabled(self: &Arc<Self>, id: WorkerId, enabled: bool) {
        let mut st = self.lock();
        let Some(w) = st.workers.get_mut(&id) else { return };
        if w.enabled == enabled {
            return;
        }
        w.enabled = enabled;
        tracing::warn!(worker = %id, host = %w.info.hostname, enabled, "worker {}", if enabled { "answers again: enabled" } else { "not answering: disabled" });
        if w.post {
            return;
        }
        let ev = if enabled { Event::WorkerEnabled(id) } else { Event::WorkerDisabled(id) };
        let todo = self.step(&mut st, Input::Sched(ev)).0;
        drop(st);
        self.carry(todo);
    }

    fn remove(self: &Arc<Self>, id: WorkerId, why: &str) {
        let mut st = self.lock();
        if let Some(w) = st.workers.get(&id) {
            tracing::warn!(worker = %id, host = %w.info.hostname, "removing worker: {why}");
        }
        let todo = self.remove_locked(&mut st, id);
        drop(st);
        self.carry(todo);
    }

    fn set_task_types(self: &Arc<Self>, id: WorkerId, types: BTreeSet<TaskType>) {
        let mut st = self.lock();
        let Some(w) = st.workers.get_mut(&id) else { return };
        if w.task_types != types && !w.post {
            w.task_types = types.clone();
            let todo = self.step(&mut st, Input::Sched(Event::WorkerTaskTypes { id, task_types: types })).0;
            drop(st);
            self.carry(todo);
        }
    }

    /// Each worker with the scheduler's view of it (task counts from one pass over the tasks)
    /// and its task types in Lotus's order, mapped by `f`.
    fn each_worker<T>(
        &self,
        f: impl Fn(WorkerId, &WorkerEntry, Option<sealing_sched::WorkerView<'_>>, Vec<TaskType>) -> T,
    ) -> Vec<T> {
        let st = self.lock();
        let mut views: BTreeMap<WorkerId, sealing_sched::WorkerView<'_>> =
            st.jobs.sched.workers().into_iter().map(|v| (v.id, v)).collect();
        st.workers
            .iter()
            .map(|(id, w)| {
                let mut tasks: Vec<TaskType> = w.task_types.iter().copied().collect();
                TaskType::sort_by_order(&mut tasks);
                f(*id, w, views.remove(id), tasks)
            })
            .collect()
    }

    /// `WorkerStats`: per worker, its snapshot and the scheduler's accounting of its active pool.
    pub fn stats(&self) -> BTreeMap<WorkerId, WorkerStats> {
        self.each_worker(|id, w, view, tasks| {
            let (active, counts, cards) = view.map(|v| (v.active, v.task_counts, v.gpu_loads)).unwrap_or_default();
            (
                id,
                WorkerStats {
                    info: w.info.clone(),
                    tasks,
                    enabled: w.enabled,
                    mem_used_min: active.mem_used_min,
                    mem_used_max: active.mem_used_max,
                    gpu_used: active.gpu_milli as f64 / 1000.0,
                    gpu_cards_used: cards.iter().map(|&m| m as f64 / 1000.0).collect(),
                    cpu_use: active.cpu_use,
                    task_counts: counts.into_iter().map(|((p, t), n)| (seal_task_key(p, t), n)).collect(),
                },
            )
        })
        .into_iter()
        .collect()
    }

    /// Each worker's use as the scheduler accounts it, without the rest of its report (a
    /// metrics scrape and the dashboard read this for every worker every few seconds; the
    /// full `WorkerStats` copies each worker's resource table).
    pub fn worker_usage(&self) -> Vec<WorkerUsage> {
        self.each_worker(|id, w, view, tasks| {
            let (active, cards) = view.map(|v| (v.active, v.gpu_loads)).unwrap_or_default();
            let r = &w.info.resources;
            WorkerUsage {
                id,
                hostname: w.info.hostname.clone(),
                enabled: w.enabled,
                local: Some(id) == self.local_worker,
                tasks,
                cpus: r.cpus,
                mem_physical: r.mem_physical,
                gpus: r.gpus.clone(),
                cpu_use: active.cpu_use,
                mem_used: active.mem_used_max,
                gpu_cards: cards.iter().map(|&m| m as f64 / 1000.0).collect(),
            }
        })
    }

    /// Enabled PoSt workers of this kind (`WDP` or `WNP`): host name and client.
    /// After `auth rotate` replaced the secret: the miner's calls to workers carry a token of
    /// the new one from now on, and each connected worker is handed its own new token
    /// (naming it again, if its old one did) through `UpdateMinerToken`. A worker that cannot
    /// take it (a Lotus worker, one unreachable now) is listed with why.
    pub async fn rotate_tokens(&self) -> Vec<lotus_api::contract::miner::RotatedWorker> {
        let admin = Permission::Admin.with_lower();
        self.token.set(self.secret.create_token(&admin));
        let remote: Vec<_> = self
            .lock()
            .workers
            .values()
            .filter_map(|w| Some((w.url.clone()?, w.info.hostname.clone(), w.owner.clone(), w.link.rpc()?)))
            .collect();
        let mut out = vec![];
        for (url, hostname, identity, client) in remote {
            let token = match &identity {
                Some(w) => self.secret.create_worker_token(&admin, w),
                None => self.secret.create_token(&admin),
            };
            let err = match client.request::<lotus_api::contract::worker::UpdateMinerToken>((token,)).await {
                Ok(()) => String::new(),
                Err(e) => {
                    tracing::warn!(%url, "the worker did not take its rotated token: {e}");
                    format!(
                        "{e}; give it a new MINER_API_INFO (`lotus-miner auth api-info --perm admin`) and restart it"
                    )
                }
            };
            out.push(lotus_api::contract::miner::RotatedWorker { hostname, url, identity, err });
        }
        out
    }

    pub fn post_workers(&self, task: TaskType) -> Vec<(WorkerId, String, Arc<RpcClient>)> {
        self.lock()
            .workers
            .iter()
            .filter(|(_, w)| w.post && w.enabled && w.task_types.contains(&task))
            .filter_map(|(id, w)| Some((*id, w.info.hostname.clone(), w.link.rpc()?)))
            .collect()
    }

    pub fn sched_diag(&self) -> sealing_sched::SchedDiag {
        self.sched_diag_first(1000)
    }

    /// [`Manager::sched_diag`] for the first `n` queued requests.
    pub fn sched_diag_first(&self, n: usize) -> sealing_sched::SchedDiag {
        self.lock().jobs.sched.diag(n)
    }

    /// Run a scheduling pass now (`SealingSchedDiag` with `doSched`, as Lotus's).
    /// The scheduler's queue per task type and its open windows (a metrics scrape).
    pub fn sched_gauges(&self) -> (BTreeMap<TaskType, usize>, usize) {
        let st = self.lock();
        (st.jobs.sched.queued_by_task(), st.jobs.sched.open_window_count())
    }

    pub fn schedule_now(self: &Arc<Self>) {
        let todo = {
            let mut st = self.lock();
            self.step(&mut st, Input::SchedBatch(vec![])).0
        };
        self.carry(todo);
    }

    /// `sealing abort --sched`: remove a request that has not started; whether it was there.
    pub fn remove_request(self: &Arc<Self>, id: sealing_types::SchedId) -> bool {
        let (todo, removed) = {
            let mut st = self.lock();
            let known = st.jobs.job(id).is_some();
            let todo = self.step(&mut st, Input::Sched(Event::Cancel(id))).0;
            (todo, known && st.jobs.job(id).is_none())
        };
        self.carry(todo);
        removed
    }

    /// Remove a worker: the scheduler requeues its tasks, its paths leave the index, and a
    /// call still on it fails (its request runs again elsewhere).
    fn remove_locked(&self, st: &mut State, id: WorkerId) -> Vec<Todo> {
        let Some(w) = st.workers.remove(&id) else { return vec![] };
        if w.url.is_some() {
            for path in st.index.detach_origin(&w.origin) {
                tracing::info!(worker = %id, %path, "storage path detached with its worker");
            }
        }
        if w.post {
            return vec![];
        }
        self.step(st, Input::Sched(Event::WorkerRemoved(id))).0
    }

    pub fn jobs(&self) -> BTreeMap<WorkerId, Vec<lotus_api::types::WorkerJob>> {
        use sealing_sched::TaskState;
        let st = self.lock();
        let mut out: BTreeMap<WorkerId, Vec<_>> = st.workers.keys().map(|id| (*id, vec![])).collect();
        for (req, state) in st.jobs.sched.tasks() {
            let (worker, run_wait) = match state {
                TaskState::Queued => continue,
                TaskState::Running { worker } => (worker, 0),
                TaskState::Preparing { worker } | TaskState::Prepared { worker } => (worker, 1),
                TaskState::Assigned { worker, window } => (worker, 2 + window as i64),
            };
            let host = st.workers.get(&worker).map(|w| w.info.hostname.clone()).unwrap_or_default();
            let job = st.jobs.job(req.id);
            let call = job.and_then(|j| match j.state {
                JobState::Running { phase: Phase::Work, call, .. } => Some(call),
                _ => None,
            });
            out.entry(worker).or_default().push(lotus_api::types::WorkerJob {
                id: call.unwrap_or(CallId { sector: req.sector.id, id: Uuid::nil() }),
                sector: req.sector.id,
                task: req.task,
                run_wait,
                start: job
                    .and_then(|j| j.started)
                    .map(|t| humantime::format_rfc3339_seconds(t).to_string())
                    .unwrap_or_default(),
                hostname: host,
            });
        }
        out
    }
}

/// What the scheduler knows of a worker: its report, task types and the room its node's paths
/// have in the sector index (none until it attaches them).
fn spec(index: &Index, info: &WorkerInfo, types: &BTreeSet<TaskType>, node: &str) -> WorkerSpec {
    WorkerSpec {
        info: info.clone(),
        task_types: types.clone(),
        seal_space: index.node_space(node, PathType::Sealing),
        store_space: index.node_space(node, PathType::Storage),
    }
}

/// Check the worker's session every `heartbeat_interval` (reference §3.7, §3.8):
/// - same session: enabled (again);
/// - another or the all-zero session: the worker restarted or shut down, so remove it;
/// - connection refused: the process is gone, remove it (a restarted worker registers anew);
/// - timeout or error: disable it (its assigned tasks go back to the queue) and keep checking;
/// - no answer at all for `[Storage] WorkerLostTimeout`: remove it, so its running tasks run
///   again elsewhere (a worker that answers with an error, disabled or draining, is not lost).
async fn heartbeat(manager: std::sync::Weak<Manager>, id: WorkerId, client: Arc<RpcClient>, t: Timings) {
    let mut tick = tokio::time::interval(t.heartbeat_interval);
    tick.tick().await; // the first tick fires at once; the worker was just checked
    let mut silent_since: Option<tokio::time::Instant> = None;
    loop {
        tick.tick().await;
        let Some(m) = manager.upgrade() else { return };
        let r = client.request_timeout::<lotus_api::contract::worker::Session>((), t.heartbeat_timeout).await;
        match &r {
            Err(e) if e.is_unreachable() => {
                let since = *silent_since.get_or_insert_with(tokio::time::Instant::now);
                if let Some(limit) = t.worker_lost_timeout.filter(|l| since.elapsed() >= *l) {
                    return m.remove(
                        id,
                        &format!(
                            "no answer for {} s (WorkerLostTimeout): its running tasks run again elsewhere",
                            limit.as_secs()
                        ),
                    );
                }
            }
            _ => silent_since = None,
        }
        match r {
            Ok(s) if s == id.0 => {
                m.set_enabled(id, true);
                if let Ok(types) = client.request::<lotus_api::contract::worker::TaskTypes>(()).await {
                    let types = types.into_keys();
                    m.set_task_types(id, types.into_iter().collect());
                }
            }
            Ok(s) if s.is_nil() => return m.remove(id, "it shut down"),
            Ok(_) => return m.remove(id, "it restarted (new session)"),
            Err(ClientError::Refused { why, .. }) => {
                return m.remove(id, &format!("its API refuses connections ({why})"))
            }
            Err(e) => {
                tracing::warn!(worker = %id, "heartbeat failed: {e}");
                m.set_enabled(id, false);
            }
        }
    }
}

/// One worker as [`Manager::worker_usage`] reports it.
#[derive(Clone, Debug)]
pub struct WorkerUsage {
    pub id: WorkerId,
    pub hostname: String,
    pub enabled: bool,
    /// The miner's own worker.
    pub local: bool,
    pub tasks: Vec<TaskType>,
    pub cpus: u64,
    pub mem_physical: u64,
    pub gpus: Vec<String>,
    pub cpu_use: u64,
    pub mem_used: u64,
    /// Per card, the share the scheduler has leased.
    pub gpu_cards: Vec<f64>,
}

/// What the sealing pipeline asks of the cluster: one scheduled task.
pub struct TaskSpec {
    pub sector: SectorRef,
    pub task: TaskType,
    pub priority: i32,
    pub selector: Selector,
    /// The preparation step (a `Fetch` call), run on the chosen worker before the work.
    pub prepare: Option<TaskCall>,
    pub work: TaskCall,
}

impl Manager {
    /// Queue a task and wait for its result (reference §1.3): the scheduler picks a worker,
    /// the preparation call runs there, then the work call, whose result comes back through
    /// `Return*`. Work tracked before a restart is not computed again: a stored result is
    /// used as is, a call still running is waited for.
    pub async fn run_task(self: &Arc<Self>, t: TaskSpec) -> Result<Ran, CallError> {
        let work_id = crate::calls::work_id(t.task, &t.work.to_rpc().1);
        let id = SchedId::new_random();
        let (tx, rx) = oneshot::channel();
        let req = TaskRequest {
            id,
            sector: t.sector,
            task: t.task,
            priority: t.priority,
            selector: t.selector,
            prepare: t.prepare.as_ref().map(|_| TaskType::Fetch),
        };
        let (todo, adopted) = {
            // The tracker is read under the lock a `Return*` is handled under: a result
            // cannot slip between the look and the submission.
            let mut st = self.lock();
            let adopt = match self.calls.as_ref().and_then(|c| c.get(&work_id)) {
                Some(crate::calls::Tracked::Done { value, host }) => {
                    tracing::info!(%work_id, %host, "using the stored result of work done before a restart");
                    return Ok(Ran { value, host });
                }
                Some(crate::calls::Tracked::Running(call)) => Some(call),
                None => None,
            };
            let input = Input::Submit { id, req, prepare: t.prepare, work: t.work, work_id, adopt, reply: tx };
            (self.step(&mut st, input).0, adopt)
        };
        self.carry(todo);
        if let Some(call) = adopted {
            tracing::info!(call = %call.id, sector = %call.sector, "waiting for the result of a call that was running before the restart");
            let me = self.clone();
            tokio::spawn(async move { me.watch_adopted(call).await });
        }
        rx.await.unwrap_or_else(|_| Err(CallError::unknown("the scheduler dropped the request")))
    }

    /// While a call tracked before a restart is awaited, its worker re-registers and keeps
    /// delivering the result. Give up (schedule the work anew) when, for
    /// `tracked_call_grace`, no connected worker runs it or holds its result. A connected
    /// worker that cannot be reached may still run it: the grace waits for its answer (or for
    /// its removal as lost), so a worker cut off for a while never gets its call duplicated.
    async fn watch_adopted(self: Arc<Self>, call: CallId) {
        let mut last_seen = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.timings.tracked_call_poll).await;
            let adopted = |m: &Manager| {
                m.lock().jobs.job_of_call(call).is_some_and(|j| matches!(j.state, JobState::Adopted { .. }))
            };
            if !adopted(&self) {
                return;
            }
            if self.someone_may_have(call).await {
                last_seen = tokio::time::Instant::now();
            } else if last_seen.elapsed() > self.timings.tracked_call_grace {
                tracing::warn!(call = %call.id, sector = %call.sector, "no worker has this call any more; scheduling it again");
                self.feed(Input::Unadopt { call });
                return;
            }
        }
    }

    /// Whether a connected worker runs the call or holds its undelivered result, or may: one
    /// that cannot be reached is not known not to. A worker that answers with an error
    /// (refusing the miner's token, say) cannot run calls for it.
    async fn someone_may_have(&self, call: CallId) -> bool {
        let links: Vec<Arc<dyn WorkerLink>> = self.lock().workers.values().map(|w| w.link.clone()).collect();
        for link in links {
            match link.calls().await {
                Ok(calls) if calls.contains(&call) => return true,
                Ok(_) | Err(LinkError::Refused { .. }) => {}
                Err(e @ LinkError::Unreachable { .. }) => {
                    tracing::debug!(call = %call.id, "{e}; waiting for it before scheduling the call again");
                    return true;
                }
            }
        }
        false
    }

    fn hostname(st: &State, worker: WorkerId) -> String {
        st.workers.get(&worker).map(|w| w.info.hostname.clone()).unwrap_or_default()
    }

    /// Feed the core under the lock. Its records go to the work tracker's queue here, in their
    /// order (the tracker writes to disk on its own thread); the rest is left for after the
    /// lock.
    fn step(&self, st: &mut State, input: Input<Reply>) -> (Vec<Todo>, Option<Fate>) {
        let now = SystemTime::now();
        let t0 = std::time::Instant::now();
        let (outputs, fate) = st.jobs.handle(input, now);
        self.metrics.cycle(t0.elapsed(), st.jobs.sched.queued_len(), st.jobs.sched.open_window_count());
        let mut todo = vec![];
        for o in outputs {
            match o {
                Output::Start { id, placement, worker, phase, call } => {
                    if let Some(job) = st.jobs.job(id) {
                        let task = job.req.task.as_str();
                        // A task's first call leaves the queue: its prepare step, or its work.
                        if phase == Phase::Prepare || job.prepare.is_none() {
                            self.metrics.queue_wait(task, now.duration_since(job.submitted).unwrap_or_default());
                        }
                        if phase == Phase::Work {
                            self.metrics.call_started(task, &Self::hostname(st, worker));
                        }
                    }
                    let link = st.workers.get(&worker).map(|w| w.link.clone());
                    todo.push(Todo::Start { id, placement, worker, link, call });
                }
                Output::Deliver { reply, worker, call, result, task, started } => {
                    let host = match (worker, call) {
                        (Some(w), _) => Self::hostname(st, w),
                        (None, Some(c)) => self.calls.as_ref().and_then(|s| s.host_of(c)).unwrap_or_default(),
                        (None, None) => String::new(),
                    };
                    if call.is_some() {
                        let took = started.and_then(|t| now.duration_since(t).ok());
                        self.metrics.call_returned(task.as_str(), &host, took);
                    }
                    if worker.is_some() || call.is_some() {
                        self.metrics.call_outcome(task.as_str(), &host, result.is_ok());
                    }
                    todo.push(Todo::Deliver { reply, result: result.map(|value| Ran { value, host }) });
                }
                Output::Record(r) => {
                    let Some(store) = &self.calls else { continue };
                    match r {
                        Record::Running { work_id, call, worker } => {
                            store.running(&work_id, call.sector, call, &Self::hostname(st, worker))
                        }
                        Record::Returned { call, result } => {
                            store.returned(call, &result);
                        }
                        Record::Forget { work_id } => store.forget(&work_id),
                    }
                }
                Output::Requeued { id, from } => tracing::info!(task = %id, worker = %from, "task requeued"),
            }
        }
        (todo, fate)
    }

    fn feed(self: &Arc<Self>, input: Input<Reply>) -> Option<Fate> {
        let (todo, fate) = {
            let mut st = self.lock();
            self.step(&mut st, input)
        };
        self.carry(todo);
        fate
    }

    /// Carry out what the core decided. Never called with the lock held.
    fn carry(self: &Arc<Self>, todo: Vec<Todo>) {
        for t in todo {
            match t {
                Todo::Deliver { reply, result } => {
                    let _ = reply.send(result);
                }
                Todo::Start { id, placement, worker, link, call } => {
                    let me = self.clone();
                    tokio::spawn(async move {
                        let result = match link {
                            Some(l) => l.start(call).await,
                            None => {
                                Err(CallError::new(CallError::TEMP_WORKER_RESTART, format!("worker {worker} is gone")))
                            }
                        };
                        me.feed(Input::Started { id, placement, result });
                    });
                }
            }
        }
    }

    /// `SealingAbort`: stop a running call on its worker (its proof process is killed) and fail
    /// the request, which sends the sector to its failure state (it retries later). Lotus
    /// only forgets the call and leaves the worker computing (lotus #5262, #9191).
    pub async fn abort_call(self: &Arc<Self>, call: CallId) {
        let (worker, link) = {
            let st = self.lock();
            // An unknown call is aborted too, as Lotus does: its aborted result is recorded, so
            // whatever waits for the call (after a restart, a tracked one) stops waiting.
            match st.jobs.job_of_call(call).map(|j| j.state) {
                Some(JobState::Running { worker, .. }) => {
                    (Some(worker), st.workers.get(&worker).map(|e| e.link.clone()))
                }
                _ => (None, None),
            }
        };
        let stopped = match link {
            Some(l) => l.abort(call).await.unwrap_or_else(|e| {
                tracing::warn!(worker = ?worker, "could not reach the worker to stop call {}: {e}", call.id);
                false
            }),
            None => false,
        };
        let what = if stopped { "its computation was stopped" } else { "the worker no longer ran it" };
        // As a failed `Return*`: the call is over, so the tracker forgets it, and a retry of
        // its work starts anew rather than wait for this call as one still running.
        self.on_return(call, Err(CallError::unknown(format!("aborted by the operator ({what})"))));
    }

    /// `Return<Method>(callID, result, error)` from a worker (or the local executor). The
    /// tracker's sequence number of the result: [`Manager::on_return_synced`] waits for it.
    pub fn on_return(self: &Arc<Self>, call: CallId, result: CallResult) -> u64 {
        let (todo, fate, seq) = {
            let mut st = self.lock();
            // Recorded even when no task waits for it: after a restart the result of a
            // tracked call can come before the sector asks for that work again.
            let seq = self.calls.as_ref().map(|c| c.returned(call, &result).1).unwrap_or(0);
            let (todo, fate) = self.step(&mut st, Input::Returned { call, result });
            (todo, fate, seq)
        };
        self.carry(todo);
        if fate == Some(Fate::Dropped) {
            self.metrics.untracked_returned();
            // Late (its task was requeued and runs elsewhere) or unknown; the tracker kept it
            // if the work is tracked.
            tracing::debug!(call = %call.id, sector = %call.sector, "a result no task waits for: dropped");
        }
        seq
    }

    /// [`Manager::on_return`], answered only once the result is on disk: the worker drops a
    /// result the miner took.
    pub async fn on_return_synced(self: &Arc<Self>, call: CallId, result: CallResult) {
        let seq = self.on_return(call, result);
        if let Some(store) = &self.calls {
            store.synced(seq).await;
        }
    }

    // ---- the sector index, with the scheduler told where files are and how much room
    // each worker has

    fn owners(st: &State, path: Uuid) -> Vec<WorkerId> {
        let nodes = st.index.nodes_of(path);
        st.workers.iter().filter(|(_, w)| nodes.contains(&w.origin)).map(|(id, _)| *id).collect()
    }

    fn space_events(st: &State, workers: &[WorkerId]) -> Vec<Event> {
        workers
            .iter()
            .filter_map(|id| {
                let w = st.workers.get(id)?;
                Some(Event::WorkerSpace {
                    id: *id,
                    seal_space: st.index.node_space(&w.origin, PathType::Sealing),
                    store_space: st.index.node_space(&w.origin, PathType::Storage),
                })
            })
            .collect()
    }

    /// `StorageAttach` by the worker `owner` names (none: the operator or the miner itself).
    pub fn storage_attach(
        self: &Arc<Self>,
        info: StorageInfo,
        stat: FsStat,
        owner: Option<&str>,
    ) -> Result<(), IndexError> {
        let effects = {
            let mut st = self.lock();
            let id = info.id;
            st.index.attach_by(info, stat, owner)?;
            let owners = Self::owners(&st, id);
            let evs = Self::space_events(&st, &owners);
            self.step(&mut st, Input::SchedBatch(evs)).0
        };
        self.carry(effects);
        Ok(())
    }

    /// Whether the worker a token names may change the path (declare, drop, report, detach).
    pub fn check_path(&self, id: Uuid, worker: &str) -> Result<(), IndexError> {
        self.lock().index.check_owner(id, Some(worker))
    }

    /// Whether the worker a token names may deliver `call`'s result: the call must have been
    /// started on that worker (or, after a restart, recorded as running on its host). A result
    /// nothing is known about is taken and dropped as usual, unless a call of its sector is
    /// being started on another worker (the result would be held for that start).
    pub fn check_return(&self, call: CallId, worker: &str) -> Result<(), ReturnRefused> {
        let st = self.lock();
        let mine = |id: &WorkerId| st.workers.get(id).is_some_and(|w| w.owner.as_deref() == Some(worker));
        let refused = || ReturnRefused::NotItsCall { call, worker: worker.to_string() };
        let running_on = st.jobs.job_of_call(call).and_then(|j| match j.state {
            JobState::Running { worker, .. } => Some(worker),
            _ => None,
        });
        if let Some(id) = running_on {
            return if mine(&id) { Ok(()) } else { Err(refused()) };
        }
        if let Some(host) = self.calls.as_ref().and_then(|c| c.host_of(call)) {
            let on_host: Vec<&WorkerId> =
                st.workers.iter().filter(|(_, w)| w.info.hostname == host).map(|(id, _)| id).collect();
            if on_host.iter().any(|id| mine(id)) {
                return Ok(());
            }
            if on_host.is_empty() {
                return Err(ReturnRefused::HostNotBack { call, host });
            }
            return Err(refused());
        }
        let starting = st.jobs.starting_on(call.sector);
        if starting.is_empty() || starting.iter().any(mine) {
            Ok(())
        } else {
            Err(refused())
        }
    }

    /// The worker a registered worker's token names (tests).
    #[cfg(test)]
    pub fn set_owner(&self, id: WorkerId, owner: Option<String>) {
        if let Some(w) = self.lock().workers.get_mut(&id) {
            w.owner = owner;
        }
    }

    pub fn storage_health(self: &Arc<Self>, id: Uuid, stat: FsStat, err: String) -> Result<(), IndexError> {
        let effects = {
            let mut st = self.lock();
            st.index.health(id, stat, err)?;
            let owners = Self::owners(&st, id);
            let evs = Self::space_events(&st, &owners);
            self.step(&mut st, Input::SchedBatch(evs)).0
        };
        self.carry(effects);
        Ok(())
    }

    pub fn storage_declare(
        self: &Arc<Self>,
        id: Uuid,
        sector: SectorId,
        types: FileTypes,
        primary: bool,
    ) -> Result<(), IndexError> {
        let effects = {
            let mut st = self.lock();
            st.index.declare(id, sector, types, primary)?;
            let owners = Self::owners(&st, id);
            let evs: Vec<Event> = owners.iter().map(|w| Event::SectorFiles { sector, worker: *w, types }).collect();
            self.step(&mut st, Input::SchedBatch(evs)).0
        };
        self.carry(effects);
        Ok(())
    }

    /// `StorageDetach(id, url)`: the node at `url` no longer serves the path. When no node
    /// does, its sector files are gone for the scheduler too.
    pub fn storage_detach(self: &Arc<Self>, id: Uuid, url: &str) -> Result<(), IndexError> {
        let effects = {
            let mut st = self.lock();
            let owners = Self::owners(&st, id);
            let urls = st.index.paths().find(|(p, _)| **p == id).map(|(_, e)| e.info.urls.clone());
            let urls = urls.ok_or(IndexError::UnknownPath(id))?;
            if !urls.iter().any(|u| u == url) {
                return Err(IndexError::NotServedAt { id, url: url.to_string(), urls });
            }
            let mut evs = vec![];
            if urls.len() == 1 {
                // The last node leaves: the path's sector files are gone for the scheduler.
                for d in st.index.list().remove(&id).unwrap_or_default() {
                    let sector = SectorId { miner: d.miner, number: d.number };
                    evs.extend(Self::drop_locked(&mut st, id, sector, d.file_type));
                }
            }
            st.index.detach(id, url)?;
            evs.extend(Self::space_events(&st, &owners));
            self.step(&mut st, Input::SchedBatch(evs)).0
        };
        self.carry(effects);
        Ok(())
    }

    pub fn storage_drop(self: &Arc<Self>, id: Uuid, sector: SectorId, types: FileTypes) {
        let effects = {
            let mut st = self.lock();
            let evs = Self::drop_locked(&mut st, id, sector, types);
            self.step(&mut st, Input::SchedBatch(evs)).0
        };
        self.carry(effects);
    }

    /// Drop declarations from the index; the events for the workers that no longer hold the
    /// files anywhere.
    fn drop_locked(st: &mut State, id: Uuid, sector: SectorId, types: FileTypes) -> Vec<Event> {
        {
            st.index.drop_sector(id, sector, types);
            let mut evs = vec![];
            for w in Self::owners(st, id) {
                // The worker may still hold the type in another of its paths.
                let node = st.workers[&w].origin.clone();
                let still: u8 = st
                    .index
                    .paths()
                    .filter(|(_, e)| e.info.urls.iter().any(|u| origin(u) == node))
                    .map(|(pid, _)| st.index.types_in(sector, *pid).0)
                    .fold(0, |a, b| a | b);
                let gone = FileTypes(types.0 & !still);
                if !gone.is_empty() {
                    evs.push(Event::SectorFilesGone { sector, worker: w, types: gone });
                }
            }
            evs
        }
    }

    pub fn storage_find(&self, sector: SectorId, types: FileTypes) -> Vec<SectorStorageInfo> {
        self.lock().index.find(sector, types)
    }

    pub fn storage_list(&self) -> BTreeMap<Uuid, Vec<crate::index::Decl>> {
        self.lock().index.list()
    }

    /// Every attached path with its space, health and the hostnames of the nodes serving it.
    /// The hostnames of the workers whose node serves the storage path.
    pub fn path_hosts(&self, path: Uuid) -> Vec<String> {
        let st = self.lock();
        Self::owners(&st, path)
            .into_iter()
            .filter_map(|w| st.workers.get(&w).map(|e| e.info.hostname.clone()))
            .collect()
    }

    pub fn storage_paths(&self) -> Vec<(StorageInfo, FsStat, String, Vec<String>)> {
        let st = self.lock();
        // One map, not a scan of every worker per URL (1,000 paths × 1,000 workers).
        let hosts: std::collections::HashMap<&str, &str> =
            st.workers.values().map(|w| (w.origin.as_str(), w.info.hostname.as_str())).collect();
        st.index
            .paths()
            .map(|(_, e)| {
                let nodes: Vec<String> = e
                    .info
                    .urls
                    .iter()
                    .map(|u| {
                        let o = origin(u);
                        hosts.get(o).map(|h| h.to_string()).unwrap_or(o.to_string())
                    })
                    .collect();
                (e.info.clone(), e.stat, e.err.clone(), nodes)
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "manager_tests.rs"]
mod tests;

/// The index as the miner's own executor reaches it: direct calls, no RPC.
pub struct LocalIndex(pub Weak<Manager>);

impl LocalIndex {
    fn manager(&self) -> Result<Arc<Manager>, sealing_exec::IndexError> {
        self.0.upgrade().ok_or_else(|| sealing_exec::IndexError::Unavailable("the miner is stopping".into()))
    }
}

impl sealing_exec::SectorIndex for LocalIndex {
    fn attach(&self, info: StorageInfo, stat: FsStat) -> BoxFuture<'_, IndexResult<()>> {
        Box::pin(async move {
            self.manager()?.storage_attach(info, stat, None)?;
            Ok(())
        })
    }
    fn report_health(&self, id: Uuid, stat: FsStat) -> BoxFuture<'_, IndexResult<()>> {
        Box::pin(async move { Ok(self.manager()?.storage_health(id, stat, String::new())?) })
    }
    fn declare(&self, id: Uuid, sector: SectorId, types: FileTypes, primary: bool) -> BoxFuture<'_, IndexResult<()>> {
        Box::pin(async move { Ok(self.manager()?.storage_declare(id, sector, types, primary)?) })
    }
    fn drop_sector(&self, id: Uuid, sector: SectorId, types: FileTypes) -> BoxFuture<'_, IndexResult<()>> {
        Box::pin(async move {
            self.manager()?.storage_drop(id, sector, types);
            Ok(())
        })
    }
    fn find(&self, sector: SectorId, types: FileTypes) -> BoxFuture<'_, IndexResult<Vec<SectorStorageInfo>>> {
        Box::pin(async move { Ok(self.manager()?.storage_find(sector, types)) })
    }
    fn list(&self) -> BoxFuture<'_, IndexResult<BTreeMap<Uuid, Vec<crate::index::Decl>>>> {
        Box::pin(async move { Ok(self.manager()?.storage_list()) })
    }
    fn detach(&self, id: Uuid, url: String) -> BoxFuture<'_, IndexResult<()>> {
        Box::pin(async move { Ok(self.manager()?.storage_detach(id, &url)?) })
    }
}

/// Results of the miner's own executor go straight to the manager.
pub struct LocalReturner(pub Weak<Manager>);

impl sealing_exec::Returner for LocalReturner {
    fn ret(&self, _method: String, call: CallId, result: Result<serde_json::Value, CallError>) -> BoxFuture<'_, ()> {
        if let Some(m) = self.0.upgrade() {
            m.on_return(call, result);
        }
        Box::pin(async {})
    }
}
