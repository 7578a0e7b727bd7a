//! The worker manager: registered workers, their heartbeats, and the scheduler they feed.
//!
//! One short-held mutex guards the scheduler and the worker table; no lock is ever held across
//! an `.await`. Heartbeat tasks turn what they observe into scheduler events.

use crate::index::{origin, Index};
use futures_util::future::BoxFuture;
use lotus_api::methods::WORKER_API_VERSION;
use lotus_api::types::{seal_task_key, CallError, FsStat, SectorStorageInfo, StorageInfo, Version, WorkerStats};
use lotus_api::{ClientError, JwtSecret, Permission, RpcClient};
use sealing_exec::{Executor, TaskCall};
use sealing_sched::{Effect, Event, Scheduler, Selector, TaskRequest, WorkerSpec};
use sealing_types::{CallId, FileTypes, PathType, SchedId, SectorId, SectorRef, TaskType, WorkerId, WorkerInfo};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, SystemTime};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// How often the miner checks each worker's session (reference §3.1).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// Timeout of one session check (HeartbeatInterval / 2).
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(5);

/// How the manager reaches a worker: over RPC ([`RpcLink`]), the miner's own executor in this
/// process ([`LocalLink`]), or, in tests and benchmarks, anything that starts calls and
/// answers them through [`Manager::on_return`]. Results always come back through `on_return`.
pub trait WorkerLink: Send + Sync {
    /// Start a task call: its ID at once, its result later.
    fn start(&self, call: TaskCall) -> BoxFuture<'_, Result<CallId, CallError>>;
    /// Stop a running call (its proof process is killed); whether the worker still ran it.
    fn abort(&self, call: CallId) -> BoxFuture<'_, Result<bool, String>>;
    /// The calls the worker runs or holds an undelivered result of.
    fn calls(&self) -> BoxFuture<'_, Result<Vec<CallId>, String>>;
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
            self.client.call::<CallId>(&method, params).await.map_err(|e| {
                CallError::new(CallError::TEMP_UNKNOWN, format!("calling {method} on worker {}: {e}", self.worker))
            })
        })
    }
    fn abort(&self, call: CallId) -> BoxFuture<'_, Result<bool, String>> {
        Box::pin(async move {
            self.client.call::<bool>("AbortCall", serde_json::json!([call])).await.map_err(|e| e.to_string())
        })
    }
    fn calls(&self) -> BoxFuture<'_, Result<Vec<CallId>, String>> {
        Box::pin(async move {
            self.client
                .call_timeout::<Vec<CallId>>("Calls", serde_json::json!([]), Duration::from_secs(5))
                .await
                .map_err(|e| e.to_string())
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
    fn abort(&self, call: CallId) -> BoxFuture<'_, Result<bool, String>> {
        Box::pin(async move { Ok(self.0.abort(call)) })
    }
    fn calls(&self) -> BoxFuture<'_, Result<Vec<CallId>, String>> {
        Box::pin(async move { Ok(self.0.running_calls()) })
    }
}

/// The miner's own worker before its executor is set up.
struct NotStarted;

impl WorkerLink for NotStarted {
    fn start(&self, _: TaskCall) -> BoxFuture<'_, Result<CallId, CallError>> {
        Box::pin(async { Err(CallError::unknown("the miner's executor is not started")) })
    }
    fn abort(&self, _: CallId) -> BoxFuture<'_, Result<bool, String>> {
        Box::pin(async { Ok(false) })
    }
    fn calls(&self) -> BoxFuture<'_, Result<Vec<CallId>, String>> {
        Box::pin(async { Ok(vec![]) })
    }
}

/// At most this many results per sector wait for a start still in flight.
const EARLY_PER_SECTOR: usize = 16;

/// Results that came back before the start of their call did (a fast task). A result can only
/// be early for a sector with a start in flight, so only those are kept, at most
/// `EARLY_PER_SECTOR` each, newest kept: a flood of late or unknown answers cannot grow the
/// miner's memory, and a live result is lost only if that many newer answers for its sector
/// arrive within its start's round trip. A sector's entries go when its last start returns.
#[derive(Default)]
struct EarlyResults {
    inflight: HashMap<SectorId, usize>,
    held: HashMap<SectorId, std::collections::VecDeque<(CallId, CallResult)>>,
}

/// What a `Return*` carries.
type CallResult = Result<serde_json::Value, CallError>;

impl EarlyResults {
    fn begin(&mut self, sector: SectorId) {
        *self.inflight.entry(sector).or_insert(0) += 1;
    }

    fn end(&mut self, sector: SectorId) {
        if let Some(n) = self.inflight.get_mut(&sector) {
            *n -= 1;
            if *n == 0 {
                self.inflight.remove(&sector);
                self.held.remove(&sector);
            }
        }
    }

    /// Keep a result no call waits for yet; false when it cannot be early (dropped).
    fn offer(&mut self, call: CallId, result: CallResult) -> bool {
        if !self.inflight.contains_key(&call.sector) {
            return false;
        }
        let q = self.held.entry(call.sector).or_default();
        q.push_back((call, result));
        if q.len() > EARLY_PER_SECTOR {
            q.pop_front();
        }
        true
    }

    fn take(&mut self, call: CallId) -> Option<CallResult> {
        let q = self.held.get_mut(&call.sector)?;
        let i = q.iter().position(|(c, _)| *c == call)?;
        q.remove(i).map(|(_, r)| r)
    }

    /// Results held (what a test checks the bound with).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.held.values().map(|q| q.len()).sum()
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

/// A request the scheduler holds, with what to run when it places it.
struct Pending {
    prepare: Option<TaskCall>,
    work: TaskCall,
    /// The worker the work was started on; cleared when the task is requeued, so a late
    /// answer from the old worker is ignored.
    running_on: Option<WorkerId>,
    started: Option<SystemTime>,
    call: Option<CallId>,
    /// The work ID under which the call is tracked in the database.
    work_id: String,
    done: Option<oneshot::Sender<Result<Ran, CallError>>>,
}

/// A start in flight for a sector; ended when the start returns, or when the waiting future is
/// dropped (so a cancelled start cannot leave its sector counted forever).
struct Inflight<'a> {
    manager: &'a Manager,
    sector: SectorId,
    ended: bool,
}

impl<'a> Inflight<'a> {
    fn begin(manager: &'a Manager, sector: SectorId) -> Self {
        manager.lock().early.begin(sector);
        Inflight { manager, sector, ended: false }
    }

    fn end(mut self, st: &mut State) {
        st.early.end(self.sector);
        self.ended = true;
    }
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.manager.lock().early.end(self.sector);
        }
    }
}

/// A task's result and the hostname of the worker that ran it.
#[derive(Debug)]
pub struct Ran {
    pub value: serde_json::Value,
    pub host: String,
}

impl Pending {
    /// The task went back to the queue: its old placement's answer no longer counts.
    fn unplace(&mut self) {
        self.running_on = None;
        self.call = None;
        self.started = None;
    }
}

/// A call a worker accepted and whose `Return*` has not come yet.
struct Waiting {
    worker: WorkerId,
    tx: oneshot::Sender<Result<serde_json::Value, CallError>>,
}

struct State {
    sched: Scheduler,
    workers: BTreeMap<WorkerId, WorkerEntry>,
    index: Index,
    pending: HashMap<SchedId, Pending>,
    waiting: HashMap<CallId, Waiting>,
    /// Results that arrived before the call's ID was recorded (a fast task).
    early: EarlyResults,
}

pub struct Manager {
    secret: JwtSecret,
    state: Mutex<State>,
    /// The local worker's ID, if the miner runs one.
    pub local_worker: Option<WorkerId>,
    /// The miner's own executor (its storage paths and its built-in worker's tasks).
    local: OnceLock<Arc<Executor>>,
    /// `[Storage] DisallowRemoteFinalize`.
    pub disallow_remote_finalize: bool,
    /// `[Devnet] MockProofs` (the miner's own worker reports it): only mock-proof workers join.
    mock_proofs: bool,
    /// `[Storage] WorkerLostTimeout`: a worker that does not answer for this long is removed,
    /// so its running tasks run again elsewhere (zero: never).
    worker_lost_timeout: std::sync::atomic::AtomicU64,
    /// Work tracking in the miner's database (none in unit tests).
    calls: OnceLock<Arc<crate::calls::CallStore>>,
}

/// How long a restarted miner waits for a call it tracked as running, when no connected worker
/// says it still runs it or holds its result, before scheduling the work again.
pub const TRACKED_CALL_GRACE: Duration = Duration::from_secs(60);

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
}

impl Manager {
    /// The manager with the miner's own worker registered (no heartbeat: it lives in this
    /// process). `local_origin` is the miner's `/remote` origin, `http://host:port`.
    pub fn with_local_worker(
        secret: JwtSecret,
        sched: Scheduler,
        info: WorkerInfo,
        types: BTreeSet<TaskType>,
        local_origin: String,
        disallow_remote_finalize: bool,
    ) -> Arc<Self> {
        let id = WorkerId::new_random();
        let mock_proofs = info.mock_proofs;
        let mut st = State {
            sched,
            workers: BTreeMap::new(),
            index: Index::default(),
            pending: HashMap::new(),
            waiting: HashMap::new(),
            early: EarlyResults::default(),
        };
        let ws = spec(&st.index, &info, &types, &local_origin);
        st.sched.handle(Event::WorkerAdded { id, spec: ws });
        st.workers.insert(
            id,
            WorkerEntry {
                url: None,
                origin: local_origin,
                link: Arc::new(NotStarted),
                info,
                task_types: types,
                enabled: true,
                heartbeat: None,
                post: false,
            },
        );
        Arc::new(Manager {
            secret,
            state: Mutex::new(st),
            local_worker: Some(id),
            local: OnceLock::new(),
            disallow_remote_finalize,
            mock_proofs,
            worker_lost_timeout: std::sync::atomic::AtomicU64::new(0),
            calls: OnceLock::new(),
        })
    }

    pub fn set_worker_lost_timeout(&self, d: Duration) {
        self.worker_lost_timeout.store(d.as_millis() as u64, Ordering::Relaxed);
    }

    fn worker_lost_timeout(&self) -> Option<Duration> {
        match self.worker_lost_timeout.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    pub fn set_call_store(&self, c: Arc<crate::calls::CallStore>) {
        let _ = self.calls.set(c);
    }

    pub fn call_store(&self) -> Option<&Arc<crate::calls::CallStore>> {
        self.calls.get()
    }

    pub fn set_local_executor(&self, ex: Arc<Executor>) {
        if let Some(id) = self.local_worker {
            if let Some(w) = self.lock().workers.get_mut(&id) {
                w.link = Arc::new(LocalLink(ex.clone()));
            }
        }
        let _ = self.local.set(ex);
    }

    pub fn local_executor(&self) -> Option<&Arc<Executor>> {
        self.local.get()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock must not take every later RPC down with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `WorkerConnect(url)`: call the worker back, check it, and start its heartbeat.
    pub async fn connect(self: &Arc<Self>, url: String) -> Result<WorkerId, ConnectError> {
        let token = self.secret.create_token(&Permission::Admin.with_lower());
        let client = Arc::new(RpcClient::new(url.clone(), Some(token), Duration::from_secs(30)));
        let unreachable = |source| ConnectError::Unreachable { url: url.clone(), source };
        let v: Version = client.call("Version", serde_json::json!([])).await.map_err(unreachable)?;
        if v.api_version >> 8 != WORKER_API_VERSION >> 8 {
            return Err(ConnectError::Version {
                url,
                theirs: lotus_api::methods::version_string(v.api_version),
                ours: lotus_api::methods::version_string(WORKER_API_VERSION)[..3].to_string(),
            });
        }
        let session: Uuid = client.call("Session", serde_json::json!([])).await.map_err(unreachable)?;
        if session.is_nil() {
            return Err(ConnectError::Closed { url });
        }
        // Workers call again every check, to come back after being removed (lost): a known
        // session costs nothing more.
        if self.lock().workers.contains_key(&WorkerId(session)) {
            return Ok(WorkerId(session));
        }
        let info: WorkerInfo = client.call("Info", serde_json::json!([])).await.map_err(unreachable)?;
        if info.mock_proofs != self.mock_proofs {
            let name = |mock: bool| if mock { "mock" } else { "real" };
            return Err(ConnectError::Backend {
                url,
                theirs: name(info.mock_proofs),
                ours: name(self.mock_proofs),
                fix: if self.mock_proofs { "with --mock-proofs" } else { "without --mock-proofs" },
            });
        }
        let types: Vec<TaskType> = client.call("TaskTypes", serde_json::json!([])).await.map_err(unreachable)?;
        let id = WorkerId(session);
        let task_types: BTreeSet<TaskType> = types.into_iter().collect();
        {
            let mut st = self.lock();
            if st.workers.contains_key(&id) {
                return Ok(id); // the same session registering again: nothing to do
            }
            // A new session at a known URL is the same worker restarted: drop the old entry.
            let stale: Vec<WorkerId> =
                st.workers.iter().filter(|(_, w)| w.url.as_deref() == Some(url.as_str())).map(|(id, _)| *id).collect();
            let mut effects = vec![];
            for old in stale {
                tracing::info!(worker = %old, %url, "worker restarted with a new session; removing the old entry");
                effects.extend(remove_locked(&mut st, old));
            }
            let node = origin(&url).to_string();
            let post = is_post_worker(&task_types);
            if !post {
                let ws = spec(&st.index, &info, &task_types, &node);
                effects.extend(st.sched.handle(Event::WorkerAdded { id, spec: ws }));
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
                },
            );
            drop(st);
            self.apply(effects);
        }
        let me = Arc::downgrade(self);
        let hb = tokio::spawn(async move { heartbeat(me, id, client).await });
        if let Some(w) = self.lock().workers.get_mut(&id) {
            w.heartbeat = Some(hb);
        }
        tracing::info!(worker = %id, host = %info.hostname, %url, "worker connected");
        Ok(id)
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
        let effects = {
            let mut st = self.lock();
            let ws = spec(&st.index, &info, &task_types, &origin);
            let fx = st.sched.handle(Event::WorkerAdded { id, spec: ws });
            let entry =
                WorkerEntry { url: None, origin, link, info, task_types, enabled: true, heartbeat: None, post: false };
            st.workers.insert(id, entry);
            fx
        };
        self.apply(effects);
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
        let effects = st.sched.handle(if enabled { Event::WorkerEnabled(id) } else { Event::WorkerDisabled(id) });
        drop(st);
        self.apply(effects);
    }

    fn remove(self: &Arc<Self>, id: WorkerId, why: &str) {
        let mut st = self.lock();
        if let Some(w) = st.workers.get(&id) {
            tracing::warn!(worker = %id, host = %w.info.hostname, "removing worker: {why}");
        }
        let effects = remove_locked(&mut st, id);
        drop(st);
        self.apply(effects);
    }

    fn set_task_types(self: &Arc<Self>, id: WorkerId, types: BTreeSet<TaskType>) {
        let mut st = self.lock();
        let Some(w) = st.workers.get_mut(&id) else { return };
        if w.task_types != types && !w.post {
            w.task_types = types.clone();
            let effects = st.sched.handle(Event::WorkerTaskTypes { id, task_types: types });
            drop(st);
            self.apply(effects);
        }
    }

    /// `WorkerStats`: per worker, its snapshot and the scheduler's accounting of its active pool.
    pub fn stats(&self) -> BTreeMap<WorkerId, WorkerStats> {
        let st = self.lock();
        st.workers
            .iter()
            .map(|(id, w)| {
                let view = st.sched.worker(*id);
                let (active, counts, cards) = view.map(|v| (v.active, v.task_counts, v.gpu_loads)).unwrap_or_default();
                let mut tasks: Vec<TaskType> = w.task_types.iter().copied().collect();
                TaskType::sort_by_order(&mut tasks);
                (
                    *id,
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
            .collect()
    }

    /// Enabled PoSt workers of this kind (`WDP` or `WNP`): host name and client.
    pub fn post_workers(&self, task: TaskType) -> Vec<(WorkerId, String, Arc<RpcClient>)> {
        self.lock()
            .workers
            .iter()
            .filter(|(_, w)| w.post && w.enabled && w.task_types.contains(&task))
            .filter_map(|(id, w)| Some((*id, w.info.hostname.clone(), w.link.rpc()?)))
            .collect()
    }

    pub fn sched_diag(&self) -> sealing_sched::SchedDiag {
        self.lock().sched.diag(1000)
    }

    pub fn remove_request(self: &Arc<Self>, id: sealing_types::SchedId) -> bool {
        let effects = self.lock().sched.handle(Event::Cancel(id));
        let cancelled = effects.iter().any(|e| matches!(e, Effect::Cancelled { .. }));
        self.apply(effects);
        cancelled
    }

    pub fn jobs(&self) -> BTreeMap<WorkerId, Vec<lotus_api::types::WorkerJob>> {
        use sealing_sched::TaskState;
        let st = self.lock();
        let mut out: BTreeMap<WorkerId, Vec<_>> = st.workers.keys().map(|id| (*id, vec![])).collect();
        for (req, state) in st.sched.tasks() {
            let (worker, run_wait) = match state {
                TaskState::Queued => continue,
                TaskState::Running { worker } => (worker, 0),
                TaskState::Preparing { worker } | TaskState::Prepared { worker } => (worker, 1),
                TaskState::Assigned { worker, window } => (worker, 2 + window as i64),
            };
            let host = st.workers.get(&worker).map(|w| w.info.hostname.clone()).unwrap_or_default();
            let p = st.pending.get(&req.id);
            out.entry(worker).or_default().push(lotus_api::types::WorkerJob {
                id: p.and_then(|p| p.call).unwrap_or(CallId { sector: req.sector.id, id: Uuid::nil() }),
                sector: req.sector.id,
                task: req.task,
                run_wait,
                start: p
                    .and_then(|p| p.started)
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

/// Remove a worker: the scheduler requeues its tasks, its paths leave the index, and calls
/// waiting on it fail (their requests run again elsewhere).
fn remove_locked(st: &mut State, id: WorkerId) -> Vec<Effect> {
    let Some(w) = st.workers.remove(&id) else { return vec![] };
    let effects = if w.post { vec![] } else { st.sched.handle(Event::WorkerRemoved(id)) };
    // Forget the placements now, under the lock: the calls failed below must find their
    // request requeued, not completed.
    for e in &effects {
        if let Effect::Requeued { task, .. } = e {
            if let Some(p) = st.pending.get_mut(task) {
                p.unplace();
            }
        }
    }
    if w.url.is_some() {
        for path in st.index.detach_origin(&w.origin) {
            tracing::info!(worker = %id, %path, "storage path detached with its worker");
        }
    }
    let gone: Vec<CallId> = st.waiting.iter().filter(|(_, c)| c.worker == id).map(|(k, _)| *k).collect();
    for c in gone {
        if let Some(wt) = st.waiting.remove(&c) {
            let _ = wt.tx.send(Err(CallError::new(CallError::TEMP_WORKER_RESTART, format!("worker {id} is gone"))));
        }
    }
    effects
}

/// Check the worker's session every `HEARTBEAT_INTERVAL` (reference §3.7, §3.8):
/// - same session: enabled (again);
/// - another or the all-zero session: the worker restarted or shut down, so remove it;
/// - connection refused: the process is gone, remove it (a restarted worker registers anew);
/// - timeout or error: disable it (its assigned tasks go back to the queue) and keep checking;
/// - no answer at all for `[Storage] WorkerLostTimeout`: remove it, so its running tasks run
///   again elsewhere (a worker that answers with an error, disabled or draining, is not lost).
async fn heartbeat(manager: std::sync::Weak<Manager>, id: WorkerId, client: Arc<RpcClient>) {
    let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
    tick.tick().await; // the first tick fires at once; the worker was just checked
    let mut silent_since: Option<std::time::Instant> = None;
    loop {
        tick.tick().await;
        let Some(m) = manager.upgrade() else { return };
        let r = client.call_timeout::<Uuid>("Session", serde_json::json!([]), HEARTBEAT_TIMEOUT).await;
        match &r {
            Err(e) if e.is_unreachable() => {
                let since = *silent_since.get_or_insert_with(std::time::Instant::now);
                if let Some(limit) = m.worker_lost_timeout().filter(|l| since.elapsed() >= *l) {
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
                if let Ok(types) = client.call::<Vec<TaskType>>("TaskTypes", serde_json::json!([])).await {
                    m.set_task_types(id, types.into_iter().collect());
                }
            }
            Ok(s) if s.is_nil() => return m.remove(id, "it shut down"),
            Ok(_) => return m.remove(id, "it restarted (new session)"),
            Err(ClientError::Unreachable { why, .. }) if why.contains("refused") => {
                return m.remove(id, &format!("its API refuses connections ({why})"))
            }
            Err(e) => {
                tracing::warn!(worker = %id, "heartbeat failed: {e}");
                m.set_enabled(id, false);
            }
        }
    }
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
    /// `Return*`.
    pub async fn run_task(self: &Arc<Self>, t: TaskSpec) -> Result<Ran, CallError> {
        let work_id = crate::calls::work_id(t.task, &t.work.to_rpc().1);
        if let Some(store) = self.calls.get() {
            match store.get(&work_id) {
                Some(crate::calls::Tracked::Done { value, host }) => {
                    tracing::info!(%work_id, %host, "using the stored result of work done before a restart");
                    return Ok(Ran { value, host });
                }
                Some(crate::calls::Tracked::Running(call)) => {
                    if let Some(r) = self.wait_tracked(call, &work_id).await {
                        return r;
                    }
                    tracing::warn!(%work_id, call = %call.id, "no worker has this call any more; scheduling it again");
                    store.forget(&work_id);
                }
                None => {}
            }
        }
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
        let effects = {
            let mut st = self.lock();
            st.pending.insert(
                id,
                Pending {
                    prepare: t.prepare,
                    work: t.work,
                    running_on: None,
                    started: None,
                    call: None,
                    work_id,
                    done: Some(tx),
                },
            );
            st.sched.handle(Event::Push(req))
        };
        self.apply(effects);
        rx.await.unwrap_or_else(|_| Err(CallError::unknown("the scheduler dropped the request")))
    }

    /// Wait for a call tracked as running before a restart. Its worker re-registers and keeps
    /// delivering the result; give up when, for `TRACKED_CALL_GRACE`, no connected worker
    /// runs it or holds its result.
    async fn wait_tracked(self: &Arc<Self>, call: CallId, work_id: &str) -> Option<Result<Ran, CallError>> {
        let (tx, mut rx) = oneshot::channel();
        {
            let mut st = self.lock();
            st.waiting.insert(call, Waiting { worker: WorkerId::CLOSED, tx });
        }
        // A result that came in between the caller's look at the store and the line above
        // found nobody waiting; the store has it.
        if let Some(crate::calls::Tracked::Done { value, host }) = self.calls.get().and_then(|c| c.get(work_id)) {
            self.lock().waiting.remove(&call);
            return Some(Ok(Ran { value, host }));
        }
        tracing::info!(call = %call.id, sector = %call.sector, "waiting for the result of a call that was running before the restart");
        let mut last_seen = tokio::time::Instant::now();
        loop {
            match tokio::time::timeout(Duration::from_secs(5), &mut rx).await {
                Ok(Ok(r)) => {
                    let host = self.calls.get().and_then(|c| c.host_of(call)).unwrap_or_default();
                    return Some(r.map(|value| Ran { value, host }));
                }
                Ok(Err(_)) => return None,
                Err(_) => {}
            }
            if self.someone_has(call).await {
                last_seen = tokio::time::Instant::now();
            } else if last_seen.elapsed() > TRACKED_CALL_GRACE {
                self.lock().waiting.remove(&call);
                return None;
            }
        }
    }

    /// Whether a connected worker runs the call or holds its undelivered result.
    async fn someone_has(&self, call: CallId) -> bool {
        let links: Vec<Arc<dyn WorkerLink>> = self.lock().workers.values().map(|w| w.link.clone()).collect();
        for link in links {
            if link.calls().await.is_ok_and(|calls| calls.contains(&call)) {
                return true;
            }
        }
        false
    }

    /// Carry out the scheduler's effects. Never called with the lock held.
    fn apply(self: &Arc<Self>, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Prepare { task, worker } => {
                    let call = self.lock().pending.get(&task).and_then(|p| p.prepare.clone());
                    let me = self.clone();
                    tokio::spawn(async move {
                        let r = match call {
                            Some(c) => me.call_worker(worker, c).await.map(|_| ()),
                            None => Ok(()),
                        };
                        let (effects, failed) = {
                            let mut st = me.lock();
                            match r {
                                Ok(()) => (st.sched.handle(Event::Prepared { task, worker }), None),
                                Err(e) => {
                                    let fx = st.sched.handle(Event::PrepareFailed { task, worker });
                                    (fx, st.pending.remove(&task).and_then(|mut p| p.done.take()).map(|d| (d, e)))
                                }
                            }
                        };
                        if let Some((done, e)) = failed {
                            let _ = done.send(Err(CallError::new(e.code, format!("preparing (fetch): {}", e.message))));
                        }
                        me.apply(effects);
                    });
                }
                Effect::Start { task, worker } => {
                    let call = {
                        let mut st = self.lock();
                        st.pending.get_mut(&task).map(|p| {
                            p.running_on = Some(worker);
                            p.started = Some(SystemTime::now());
                            p.work.clone()
                        })
                    };
                    let Some(call) = call else { continue };
                    let me = self.clone();
                    tokio::spawn(async move {
                        let r = me.call_worker_tracked(worker, call, Some(task)).await;
                        let (effects, done) = {
                            let mut st = me.lock();
                            let current = st.pending.get(&task).is_some_and(|p| p.running_on == Some(worker));
                            if !current {
                                return; // requeued meanwhile: the new placement answers
                            }
                            let done = st.pending.remove(&task).and_then(|mut p| p.done.take());
                            let host = st.workers.get(&worker).map(|w| w.info.hostname.clone()).unwrap_or_default();
                            (st.sched.handle(Event::Done { task, worker }), done.map(|d| (d, host)))
                        };
                        if let Some((d, host)) = done {
                            let _ = d.send(r.map(|value| Ran { value, host }));
                        }
                        me.apply(effects);
                    });
                }
                Effect::Requeued { task, from } => {
                    tracing::info!(%task, worker = %from, "task requeued");
                    if let Some(p) = self.lock().pending.get_mut(&task) {
                        p.unplace();
                    }
                }
                Effect::Cancelled { task } => {
                    if let Some(d) = self.lock().pending.remove(&task).and_then(|mut p| p.done.take()) {
                        let _ = d.send(Err(CallError::unknown("the request was removed (sealing abort --sched)")));
                    }
                }
                Effect::Rejected { task, reason } => {
                    if let Some(d) = self.lock().pending.remove(&task).and_then(|mut p| p.done.take()) {
                        let _ = d.send(Err(CallError::unknown(format!("the scheduler refused the request: {reason}"))));
                    }
                }
            }
        }
    }

    async fn call_worker(self: &Arc<Self>, worker: WorkerId, call: TaskCall) -> Result<serde_json::Value, CallError> {
        self.call_worker_tracked(worker, call, None).await
    }

    /// Start a call on a worker and wait for its `Return*`.
    async fn call_worker_tracked(
        self: &Arc<Self>,
        worker: WorkerId,
        call: TaskCall,
        task: Option<SchedId>,
    ) -> Result<serde_json::Value, CallError> {
        let link = self.lock().workers.get(&worker).map(|w| w.link.clone());
        let gone = || CallError::new(CallError::TEMP_WORKER_RESTART, format!("worker {worker} is gone"));
        let link = link.ok_or_else(gone)?;
        let sector = call.sector().id;
        // While the start is in flight its result may come first (a fast task).
        let inflight = Inflight::begin(self, sector);
        let started = link.start(call).await;
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.lock();
            let early = started.as_ref().ok().and_then(|id| st.early.take(*id));
            inflight.end(&mut st);
            let call_id = started?;
            if let Some(t) = task {
                let host = st.workers.get(&worker).map(|w| w.info.hostname.clone()).unwrap_or_default();
                if let Some(p) = st.pending.get_mut(&t) {
                    p.call = Some(call_id);
                    if let Some(store) = self.calls.get() {
                        store.running(&p.work_id, call_id.sector, call_id, &host);
                    }
                }
            }
            if let Some(r) = early {
                return r;
            }
            st.waiting.insert(call_id, Waiting { worker, tx });
        }
        rx.await.unwrap_or_else(|_| Err(gone()))
    }

    /// `SealingAbort`: stop a running call on its worker (its proof process is killed) and fail
    /// the request, which sends the sector to its failure state (it retries later). Lotus
    /// only forgets the call and leaves the worker computing (lotus #5262, #9191).
    pub async fn abort_call(self: &Arc<Self>, call: CallId) -> Result<(), String> {
        let (worker, link) = {
            let st = self.lock();
            let w = st.waiting.get(&call).ok_or_else(|| format!("no running job {}", call.id))?.worker;
            (w, st.workers.get(&w).map(|e| e.link.clone()))
        };
        let stopped = match link {
            Some(l) => l.abort(call).await.unwrap_or_else(|e| {
                tracing::warn!(%worker, "could not reach the worker to stop call {}: {e}", call.id);
                false
            }),
            None => false,
        };
        let what = if stopped { "its computation was stopped" } else { "the worker no longer ran it" };
        let result = Err(CallError::unknown(format!("aborted by the operator ({what})")));
        // The call is over: a retry of its work must start anew, not wait for this call as
        // one still running (it would wait out TRACKED_CALL_GRACE first).
        if let Some(store) = self.calls.get() {
            store.returned(call, &result);
        }
        if let Some(w) = self.lock().waiting.remove(&call) {
            let _ = w.tx.send(result);
        }
        Ok(())
    }

    /// `Return<Method>(callID, result, error)` from a worker (or the local executor).
    pub fn on_return(&self, call: CallId, result: Result<serde_json::Value, CallError>) {
        if let Some(store) = self.calls.get() {
            store.returned(call, &result);
        }
        let mut st = self.lock();
        match st.waiting.remove(&call) {
            Some(w) => {
                let _ = w.tx.send(result);
            }
            None => {
                if !st.early.offer(call, result) {
                    // Late (its task was requeued and runs elsewhere) or unknown; the call
                    // store kept it if the work is tracked.
                    tracing::debug!(call = %call.id, sector = %call.sector, "a result no task waits for: dropped");
                }
            }
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

    pub fn storage_attach(self: &Arc<Self>, info: StorageInfo, stat: FsStat) {
        let effects = {
            let mut st = self.lock();
            let id = info.id;
            st.index.attach(info, stat);
            let owners = Self::owners(&st, id);
            let evs = Self::space_events(&st, &owners);
            st.sched.handle_batch(evs)
        };
        self.apply(effects);
    }

    pub fn storage_health(self: &Arc<Self>, id: Uuid, stat: FsStat, err: String) -> Result<(), String> {
        let effects = {
            let mut st = self.lock();
            st.index.health(id, stat, err).map_err(|e| e.to_string())?;
            let owners = Self::owners(&st, id);
            let evs = Self::space_events(&st, &owners);
            st.sched.handle_batch(evs)
        };
        self.apply(effects);
        Ok(())
    }

    pub fn storage_declare(
        self: &Arc<Self>,
        id: Uuid,
        sector: SectorId,
        types: FileTypes,
        primary: bool,
    ) -> Result<(), String> {
        let effects = {
            let mut st = self.lock();
            st.index.declare(id, sector, types, primary).map_err(|e| e.to_string())?;
            let owners = Self::owners(&st, id);
            let evs: Vec<Event> = owners.iter().map(|w| Event::SectorFiles { sector, worker: *w, types }).collect();
            st.sched.handle_batch(evs)
        };
        self.apply(effects);
        Ok(())
    }

    pub fn storage_drop(self: &Arc<Self>, id: Uuid, sector: SectorId, types: FileTypes) {
        let effects = {
            let mut st = self.lock();
            st.index.drop_sector(id, sector, types);
            let mut evs = vec![];
            for w in Self::owners(&st, id) {
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
            st.sched.handle_batch(evs)
        };
        self.apply(effects);
    }

    pub fn storage_find(&self, sector: SectorId, types: FileTypes) -> Vec<SectorStorageInfo> {
        self.lock().index.find(sector, types)
    }

    pub fn storage_list(&self) -> BTreeMap<Uuid, Vec<crate::index::Decl>> {
        self.lock().index.list()
    }

    /// Every attached path with its space, health and the hostnames of the nodes serving it.
    pub fn storage_paths(&self) -> Vec<(StorageInfo, FsStat, String, Vec<String>)> {
        let st = self.lock();
        st.index
            .paths()
            .map(|(_, e)| {
                let nodes: Vec<String> = e
                    .info
                    .urls
                    .iter()
                    .map(|u| {
                        let o = origin(u);
                        st.workers
                            .values()
                            .find(|w| w.origin == o)
                            .map(|w| w.info.hostname.clone())
                            .unwrap_or(o.to_string())
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

impl sealing_exec::SectorIndex for LocalIndex {
    fn attach(&self, info: StorageInfo, stat: FsStat) -> BoxFuture<'_, Result<(), String>> {
        let m = self.0.upgrade();
        Box::pin(async move {
            m.ok_or("miner stopping")?.storage_attach(info, stat);
            Ok(())
        })
    }
    fn report_health(&self, id: Uuid, stat: FsStat) -> BoxFuture<'_, Result<(), String>> {
        let m = self.0.upgrade();
        Box::pin(async move { m.ok_or("miner stopping")?.storage_health(id, stat, String::new()) })
    }
    fn declare(
        &self,
        id: Uuid,
        sector: SectorId,
        types: FileTypes,
        primary: bool,
    ) -> BoxFuture<'_, Result<(), String>> {
        let m = self.0.upgrade();
        Box::pin(async move { m.ok_or("miner stopping")?.storage_declare(id, sector, types, primary) })
    }
    fn drop_sector(&self, id: Uuid, sector: SectorId, types: FileTypes) -> BoxFuture<'_, Result<(), String>> {
        let m = self.0.upgrade();
        Box::pin(async move {
            m.ok_or("miner stopping")?.storage_drop(id, sector, types);
            Ok(())
        })
    }
    fn find(&self, sector: SectorId, types: FileTypes) -> BoxFuture<'_, Result<Vec<SectorStorageInfo>, String>> {
        let m = self.0.upgrade();
        Box::pin(async move { Ok(m.ok_or("miner stopping")?.storage_find(sector, types)) })
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
