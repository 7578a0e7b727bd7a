//! The worker manager: registered workers, their heartbeats, and the scheduler they feed.
//!
//! One short-held mutex guards the scheduler and the worker table; no lock is ever held across
//! an `.await`. Heartbeat tasks turn what they observe into scheduler events.

use lotus_api::methods::WORKER_API_VERSION;
use lotus_api::types::{seal_task_key, Version, WorkerStats};
use lotus_api::{ClientError, JwtSecret, Permission, RpcClient};
use sealing_sched::{Event, Scheduler, WorkerSpec};
use sealing_types::{TaskType, WorkerId, WorkerInfo};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// How often the miner checks each worker's session (reference §3.1).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// Timeout of one session check (HeartbeatInterval / 2).
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes of sealing and storage space the scheduler assumes a worker has until the sector
/// index reports real free space (the storage issue wires it).
const UNREPORTED_SPACE: u64 = u64::MAX / 4;

struct WorkerEntry {
    /// `None` for the miner's own worker.
    url: Option<String>,
    info: WorkerInfo,
    task_types: BTreeSet<TaskType>,
    enabled: bool,
    heartbeat: Option<JoinHandle<()>>,
}

impl Drop for WorkerEntry {
    fn drop(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }
}

struct State {
    sched: Scheduler,
    workers: BTreeMap<WorkerId, WorkerEntry>,
}

pub struct Manager {
    secret: JwtSecret,
    state: Mutex<State>,
    /// The local worker's ID, if the miner runs one.
    pub local_worker: Option<WorkerId>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot call back the worker at {url}: {source}. The worker must be reachable from the miner at the address it advertises (check its --listen address and firewalls)")]
    Unreachable { url: String, source: ClientError },
    #[error("worker at {url} speaks API {theirs}, this miner needs {ours}.x; run the same release on both")]
    Version { url: String, theirs: String, ours: String },
    #[error("worker at {url} has already shut down (its session is closed)")]
    Closed { url: String },
}

impl Manager {
    pub fn new(secret: JwtSecret, sched: Scheduler) -> Arc<Self> {
        Arc::new(Manager { secret, state: Mutex::new(State { sched, workers: BTreeMap::new() }), local_worker: None })
    }

    /// Register the miner's own worker (no heartbeat: it lives in this process).
    pub fn with_local_worker(
        secret: JwtSecret,
        sched: Scheduler,
        info: WorkerInfo,
        types: BTreeSet<TaskType>,
    ) -> Arc<Self> {
        let id = WorkerId::new_random();
        let mut st = State { sched, workers: BTreeMap::new() };
        st.sched.handle(Event::WorkerAdded { id, spec: spec(&info, &types) });
        st.workers.insert(id, WorkerEntry { url: None, info, task_types: types, enabled: true, heartbeat: None });
        Arc::new(Manager { secret, state: Mutex::new(st), local_worker: Some(id) })
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
        let info: WorkerInfo = client.call("Info", serde_json::json!([])).await.map_err(unreachable)?;
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
            for old in stale {
                tracing::info!(worker = %old, %url, "worker restarted with a new session; removing the old entry");
                st.workers.remove(&old);
                st.sched.handle(Event::WorkerRemoved(old));
            }
            st.sched.handle(Event::WorkerAdded { id, spec: spec(&info, &task_types) });
            st.workers.insert(
                id,
                WorkerEntry { url: Some(url.clone()), info: info.clone(), task_types, enabled: true, heartbeat: None },
            );
        }
        let me = Arc::downgrade(self);
        let hb = tokio::spawn(async move { heartbeat(me, id, client).await });
        if let Some(w) = self.lock().workers.get_mut(&id) {
            w.heartbeat = Some(hb);
        }
        tracing::info!(worker = %id, host = %info.hostname, %url, "worker connected");
        Ok(id)
    }

    fn set_enabled(&self, id: WorkerId, enabled: bool) {
        let mut st = self.lock();
        let Some(w) = st.workers.get_mut(&id) else { return };
        if w.enabled == enabled {
            return;
        }
        w.enabled = enabled;
        tracing::warn!(worker = %id, host = %w.info.hostname, enabled, "worker {}", if enabled { "answers again: enabled" } else { "not answering: disabled" });
        st.sched.handle(if enabled { Event::WorkerEnabled(id) } else { Event::WorkerDisabled(id) });
    }

    fn remove(&self, id: WorkerId, why: &str) {
        let mut st = self.lock();
        if let Some(w) = st.workers.remove(&id) {
            tracing::warn!(worker = %id, host = %w.info.hostname, "removing worker: {why}");
            st.sched.handle(Event::WorkerRemoved(id));
        }
    }

    fn set_task_types(&self, id: WorkerId, types: BTreeSet<TaskType>) {
        let mut st = self.lock();
        let Some(w) = st.workers.get_mut(&id) else { return };
        if w.task_types != types {
            w.task_types = types.clone();
            st.sched.handle(Event::WorkerTaskTypes { id, task_types: types });
        }
    }

    /// `WorkerStats`: per worker, its snapshot and the scheduler's accounting of its active pool.
    pub fn stats(&self) -> BTreeMap<WorkerId, WorkerStats> {
        let st = self.lock();
        st.workers
            .iter()
            .map(|(id, w)| {
                let view = st.sched.worker(*id);
                let (active, counts) = view.map(|v| (v.active, v.task_counts)).unwrap_or_default();
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
                        cpu_use: active.cpu_use,
                        task_counts: counts.into_iter().map(|((p, t), n)| (seal_task_key(p, t), n)).collect(),
                    },
                )
            })
            .collect()
    }

    pub fn sched_diag(&self) -> sealing_sched::SchedDiag {
        self.lock().sched.diag(1000)
    }

    pub fn remove_request(&self, id: sealing_types::SchedId) -> bool {
        let effects = self.lock().sched.handle(Event::Cancel(id));
        effects.iter().any(|e| matches!(e, sealing_sched::Effect::Cancelled { .. }))
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
            out.entry(worker).or_default().push(lotus_api::types::WorkerJob {
                id: sealing_types::CallId { sector: req.sector.id, id: Uuid::nil() },
                sector: req.sector.id,
                task: req.task,
                run_wait,
                start: String::new(),
                hostname: host,
            });
        }
        out
    }
}

fn spec(info: &WorkerInfo, types: &BTreeSet<TaskType>) -> WorkerSpec {
    WorkerSpec {
        info: info.clone(),
        task_types: types.clone(),
        seal_space: UNREPORTED_SPACE,
        store_space: UNREPORTED_SPACE,
    }
}

/// Check the worker's session every `HEARTBEAT_INTERVAL` (reference §3.7, §3.8):
/// - same session: enabled (again);
/// - another or the all-zero session: the worker restarted or shut down, so remove it;
/// - connection refused: the process is gone, remove it (a restarted worker registers anew);
/// - timeout or error: disable it (its assigned tasks go back to the queue) and keep checking.
async fn heartbeat(manager: std::sync::Weak<Manager>, id: WorkerId, client: Arc<RpcClient>) {
    let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
    tick.tick().await; // the first tick fires at once; the worker was just checked
    loop {
        tick.tick().await;
        let Some(m) = manager.upgrade() else { return };
        match client.call_timeout::<Uuid>("Session", serde_json::json!([]), HEARTBEAT_TIMEOUT).await {
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
