//! The scheduler state machine.

use crate::pool::Pool;
use crate::queue::QueueKey;
use crate::tasks::TaskTable;
use crate::{Selector, TaskRequest, SCHED_WINDOWS};
use rustc_hash::FxHashMap as HashMap;
use sealing_types::gpu::{self, CardLease, GpuCards};
use sealing_types::{
    FileTypes, PathType, RegisteredSealProof, Resources, SchedId, SectorId, TaskType, WorkerId, WorkerInfo,
};
use smallvec::SmallVec;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

/// How a task is placed among the workers that can take it (`[Storage] Assigner`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Assigner {
    /// The least utilised worker (the original's default).
    #[default]
    Utilization,
    /// The worker holding the fewest tasks (assigned, preparing, running), counting those given
    /// in this pass. The original's plain `spread` counts only the current pass, which piles
    /// tasks that arrive one at a time onto one worker; this is its `experiment-spread-qcount`.
    Spread,
}

impl std::str::FromStr for Assigner {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "" | "utilization" => Ok(Assigner::Utilization),
            "spread" | "experiment-spread-qcount" => Ok(Assigner::Spread),
            other => Err(format!("unknown assigner {other:?}: expected \"utilization\" or \"spread\"")),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Config {
    pub assigner: Assigner,
}

/// What the scheduler knows about a worker.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerSpec {
    pub info: WorkerInfo,
    pub task_types: BTreeSet<TaskType>,
    /// Bytes free on the worker's best sealing path (0 if it has none).
    pub seal_space: u64,
    /// Bytes free on the worker's best long-term storage path (0 if it has none).
    pub store_space: u64,
}

/// Inputs to the scheduler.
#[derive(Clone, Debug)]
pub enum Event {
    WorkerAdded {
        id: WorkerId,
        spec: WorkerSpec,
    },
    /// The worker's accepted task types changed (`lotus-worker tasks enable|disable`).
    WorkerTaskTypes {
        id: WorkerId,
        task_types: BTreeSet<TaskType>,
    },
    /// Free space on the worker's paths changed.
    WorkerSpace {
        id: WorkerId,
        seal_space: u64,
        store_space: u64,
    },
    /// Heartbeats answer again (or the operator enabled it).
    WorkerEnabled(WorkerId),
    /// Heartbeats fail: its windowed tasks go back to the queue; started tasks keep running.
    WorkerDisabled(WorkerId),
    /// The worker is gone: every task it held that is not finished goes back to the queue.
    WorkerRemoved(WorkerId),
    /// The worker now holds these files of the sector (after a task or a fetch).
    SectorFiles {
        sector: SectorId,
        worker: WorkerId,
        types: FileTypes,
    },
    /// The worker no longer holds these files of the sector.
    SectorFilesGone {
        sector: SectorId,
        worker: WorkerId,
        types: FileTypes,
    },
    Push(TaskRequest),
    /// Remove a request that has not started (`sealing abort --sched`).
    Cancel(SchedId),
    /// The preparation step of a task finished on `worker`.
    Prepared {
        task: SchedId,
        worker: WorkerId,
    },
    /// The preparation step failed; the task is dropped (the requester retries).
    PrepareFailed {
        task: SchedId,
        worker: WorkerId,
    },
    /// The task finished (successfully or not) on `worker`; its resources are freed.
    Done {
        task: SchedId,
        worker: WorkerId,
    },
}

/// Outputs of the scheduler, for the daemon to carry out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Run the task's preparation step (fetch its files) on the worker.
    Prepare { task: SchedId, worker: WorkerId },
    /// Start the task's work on the worker.
    Start { task: SchedId, worker: WorkerId },
    /// The task left `from` and is back in the queue (worker disabled or removed).
    Requeued { task: SchedId, from: WorkerId },
    /// A queued request was removed on request.
    Cancelled { task: SchedId },
    /// A request was refused (for example its ID is already queued).
    Rejected { task: SchedId, reason: String },
}

/// Where a task is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskState {
    Queued,
    /// Assigned to a scheduling window of the worker (`assigned(N)` in `sealing jobs`).
    Assigned {
        worker: WorkerId,
        window: usize,
    },
    Preparing {
        worker: WorkerId,
    },
    /// Prepared, waiting for room in the active pool.
    Prepared {
        worker: WorkerId,
    },
    Running {
        worker: WorkerId,
    },
}

impl TaskState {
    pub fn worker(&self) -> Option<WorkerId> {
        match *self {
            TaskState::Queued => None,
            TaskState::Assigned { worker, .. }
            | TaskState::Preparing { worker }
            | TaskState::Prepared { worker }
            | TaskState::Running { worker } => Some(worker),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Task {
    pub(crate) req: TaskRequest,
    pub(crate) key: QueueKey,
    pub(crate) class: usize,
    pub(crate) state: TaskState,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Window {
    pub(crate) allocated: Pool,
    /// Its tasks, in queue order (the key names the task's slot in the task table).
    pub(crate) todo: Vec<(QueueKey, SchedId)>,
}

#[derive(Clone, Debug)]
pub(crate) struct Worker {
    pub(crate) spec: WorkerSpec,
    pub(crate) enabled: bool,
    pub(crate) windows: Vec<Window>,
    /// Tasks preparing or prepared hold their preparation spec here until they enter `active`.
    pub(crate) preparing: Pool,
    pub(crate) active: Pool,
    /// Tasks whose preparation finished, waiting for `active`, in queue order.
    pub(crate) prepared: BTreeSet<(QueueKey, SchedId)>,
    /// Per (task type, proof): tasks preparing (fetching) and tasks running, for MaxConcurrent.
    pub(crate) preparing_count: HashMap<(TaskType, RegisteredSealProof), usize>,
    pub(crate) running_count: HashMap<(TaskType, RegisteredSealProof), usize>,
    /// The worker's resource table flattened by (task type, proof): `spec_of` is the hottest
    /// lookup of a pass, and two B-tree searches per call were a tenth of a cold fill.
    /// Shared by every worker with the same table (usually all of them), so the lookups of a
    /// pass stay in cache.
    specs: std::sync::Arc<[Resources]>,
    /// `spec.task_types` as bits (`1 << task as usize`): a pass asks every window of every
    /// class, and the set's B-tree, one allocation per worker, was a cache miss each time.
    task_mask: u32,
    /// Per GPU, what the running tasks hold, by the rule the worker leases cards with
    /// (`sealing_types::gpu`): a task starts only when a card (or enough idle cards) has room,
    /// not when the sum of utilisations fits, so the scheduler never starts a task the worker
    /// would hold back.
    pub(crate) cards: GpuCards,
    /// The cards each running GPU task holds (only tasks that hold some).
    pub(crate) card_leases: HashMap<SchedId, CardLease>,
}

const PROOF_SLOTS: usize = 16;
/// More than there are task types (checked by a test).
const TASK_TYPE_SLOTS: usize = 32;

/// A set of task types as bits, `1 << task as usize` (every task type is below
/// `TASK_TYPE_SLOTS`, 32, by a test).
fn task_mask(types: &BTreeSet<TaskType>) -> u32 {
    types.iter().fold(0, |m, t| m | 1 << (*t as usize))
}

fn spec_gpus(spec: &WorkerSpec) -> usize {
    spec.info.resources.gpus.len()
}

fn spec_slot(task: TaskType, proof: RegisteredSealProof) -> Option<usize> {
    let p = usize::try_from(proof.as_i64()).ok().filter(|&p| p < PROOF_SLOTS)?;
    Some(task as usize * PROOF_SLOTS + p)
}

impl Worker {
    /// `tables`: the flattened tables of workers seen so far, to share an equal one.
    pub(crate) fn new(spec: WorkerSpec, tables: &mut Vec<std::sync::Arc<[Resources]>>) -> Worker {
        let table = &spec.info.resources.resources;
        let tasks = TaskType::ALL.iter().map(|t| *t as usize + 1).max().unwrap_or(0);
        let mut specs = vec![Resources::default(); tasks * PROOF_SLOTS];
        for &task in TaskType::ALL.iter() {
            for p in 0..PROOF_SLOTS as i64 {
                let Some(proof) = RegisteredSealProof::from_i64(p) else { continue };
                if let Some(r) = spec_slot(task, proof).and_then(|i| specs.get_mut(i)) {
                    *r = table.spec(proof, task);
                }
            }
        }
        let specs = match tables.iter().find(|t| t[..] == specs[..]) {
            Some(t) => t.clone(),
            None => {
                let t: std::sync::Arc<[Resources]> = specs.into();
                tables.push(t.clone());
                t
            }
        };
        Worker {
            task_mask: task_mask(&spec.task_types),
            enabled: true,
            windows: Vec::new(),
            preparing: Pool::default(),
            active: Pool::default(),
            prepared: BTreeSet::new(),
            preparing_count: HashMap::default(),
            running_count: HashMap::default(),
            specs,
            cards: GpuCards::new(spec_gpus(&spec)),
            card_leases: HashMap::default(),
            spec,
        }
    }

    /// The cards a task of `spec` would get if it started now (none for a CPU task or on a
    /// worker that ignores resources); `None`: no card has room.
    pub(crate) fn cards_for(&self, spec: &Resources) -> Option<CardLease> {
        if self.ignore() {
            return Some(CardLease::default());
        }
        self.cards.choose(gpu::milli(spec.gpu_utilization))
    }

    /// Whether a task of `spec` could enter the active pool now: room in the pool and a card.
    fn can_start(&self, spec: &Resources) -> bool {
        self.active.can_handle(spec, &self.spec.info.resources, self.ignore()).is_ok() && self.cards_for(spec).is_some()
    }

    fn spec_for(&self, proof: RegisteredSealProof, task: TaskType) -> Resources {
        match spec_slot(task, proof).and_then(|i| self.specs.get(i)) {
            Some(r) => *r,
            None => self.spec.info.resources.resources.spec(proof, task),
        }
    }

    pub(crate) fn spec_of(&self, req: &TaskRequest) -> Resources {
        self.spec_for(req.sector.proof_type, req.task)
    }
    /// The spec held while the task prepares: its own, with the preparing task type's
    /// MaxConcurrent (as `ResourceTable::prep_spec`).
    fn prep_spec_of(&self, req: &TaskRequest) -> Resources {
        let mut r = self.spec_for(req.sector.proof_type, req.task);
        if let Some(prep) = req.prepare.filter(|p| *p != req.task) {
            r.max_concurrent = self.spec_for(req.sector.proof_type, prep).max_concurrent;
        }
        r
    }
    pub(crate) fn offers(&self, task: TaskType) -> bool {
        self.task_mask & 1 << (task as usize) != 0
    }
    fn ignore(&self) -> bool {
        self.spec.info.ignore_resources
    }
    /// Whether the task could run on this worker if it were idle.
    pub(crate) fn fits_empty(&self, req: &TaskRequest) -> Result<(), sealing_types::Shortfall> {
        Pool::default().can_handle(&self.spec_of(req), &self.spec.info.resources, self.ignore())
    }
    fn utilization(&self) -> f64 {
        let res = &self.spec.info.resources;
        self.active.utilization(res)
            + self.preparing.utilization(res)
            + self.windows.iter().map(|w| w.allocated.utilization(res)).sum::<f64>()
    }
    /// Tasks assigned to, preparing on, waiting on, or running on this worker.
    fn held_tasks(&self) -> u64 {
        let windowed: usize = self.windows.iter().map(|w| w.todo.len()).sum();
        let counted: usize = self.preparing_count.values().sum::<usize>() + self.running_count.values().sum::<usize>();
        (windowed + self.prepared.len() + counted) as u64
    }

    pub(crate) fn open_windows(&self) -> usize {
        if self.enabled {
            SCHED_WINDOWS.saturating_sub(self.windows.len())
        } else {
            0
        }
    }
}

/// The part of a request that decides which workers may take it, independent of the sector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ClassKey {
    task: TaskType,
    proof: RegisteredSealProof,
    selector: Selector,
    prepare: Option<TaskType>,
}

#[derive(Clone, Debug)]
pub(crate) struct ClassQueue {
    pub(crate) tasks: BTreeSet<(QueueKey, SchedId)>,
    /// A request of this class. Everything a pass reads from a request of a class without
    /// data locality is in its class key, so the pass reads this instead of each task (with
    /// 100,000 queued tasks those lookups were cache misses, a third of a cold fill).
    sample: TaskRequest,
    /// Whether the selector prefers workers holding the sector's files (per-task lookups).
    locality: bool,
}

/// A read-only view of one worker, for stats and diagnostics.
#[derive(Clone, Debug)]
pub struct WorkerView<'a> {
    pub id: WorkerId,
    pub spec: &'a WorkerSpec,
    pub enabled: bool,
    pub active: Pool,
    pub preparing: Pool,
    /// Per GPU, thousandths held by running tasks.
    pub gpu_loads: Vec<u32>,
    /// Tasks on the worker (assigned, preparing, prepared, running) per (proof, task type).
    pub task_counts: BTreeMap<(RegisteredSealProof, TaskType), usize>,
}

/// The scheduler. See the crate docs.
#[derive(Clone, Debug, Default)]
pub struct Scheduler {
    pub(crate) cfg: Config,
    pub(crate) workers: BTreeMap<WorkerId, Worker>,
    /// Distinct flattened resource tables (see `Worker::specs`).
    spec_tables: Vec<std::sync::Arc<[Resources]>>,
    pub(crate) tasks: TaskTable,
    pub(crate) classes: Vec<(ClassKey, ClassQueue)>,
    class_index: HashMap<ClassKey, usize>,
    /// Which workers hold which files of each sector, and the reverse index.
    pub(crate) locations: HashMap<SectorId, BTreeMap<WorkerId, FileTypes>>,
    held_by: HashMap<WorkerId, BTreeSet<SectorId>>,
    /// Every task the scheduler holds, by sector (for locality lookups).
    /// Slots in the task table, inline: one heap allocation per pushed sector scattered the
    /// queues' tree nodes through memory, and a pass walks those.
    by_sector: HashMap<SectorId, SmallVec<[u32; 4]>>,
    seq: u64,
    queued: usize,
    /// Workers whose pools changed since the last dispatch.
    dirty: BTreeSet<WorkerId>,
    /// Workers a dispatch left with nothing assigned or prepared: the thieves of the next
    /// steal attempt. Only events at a worker put it here, so an idle worker with nothing to
    /// steal costs nothing per event.
    newly_idle: BTreeSet<WorkerId>,
}

/// One scheduling window opened for a pass.
struct Scratch {
    worker: WorkerId,
    /// The worker's position in `self.workers` (its id order): the index of the pass's
    /// per-worker vectors, so the hot loop hashes no worker IDs.
    wi: usize,
    alloc: Pool,
    /// `alloc.utilization(..)`, kept up to date (it was computed twice per placement).
    util: f64,
    /// Tasks of each type (by `TaskType as usize`) this pass put in the window.
    counts: [u32; TASK_TYPE_SLOTS],
    /// Tasks this pass put in the window (they are listed in `assigned`).
    placed: usize,
}

/// Where a pass reads a class's queued tasks from.
enum ClassSource<'a> {
    All(std::collections::btree_set::Iter<'a, (QueueKey, SchedId)>),
    Local(std::vec::IntoIter<(QueueKey, SchedId)>),
}

impl Iterator for ClassSource<'_> {
    type Item = (QueueKey, SchedId);
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            ClassSource::All(it) => it.next().copied(),
            ClassSource::Local(it) => it.next(),
        }
    }
}

/// Candidate window key: tier, score, worker order, window. Smaller is better.
///
/// Packed into one integer, highest field first, so that comparing two keys is one integer
/// comparison: a cold fill compares these a few hundred thousand times in its heaps, and the
/// four-field tuple this replaced was a fifth of its time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct CandKey(u128);

impl CandKey {
    const SCORE_MAX: u64 = (1 << 56) - 1;

    /// `tier` below 256 (task types a worker offers), `score` saturated at 2^56 (utilisation
    /// in billionths, or a task count), positions below 2^32.
    fn new(tier: u64, score: u64, wi: usize, si: usize) -> CandKey {
        debug_assert!(tier < 256 && wi < 1 << 32 && si < 1 << 32);
        CandKey(
            (u128::from(tier.min(255)) << 120)
                | (u128::from(score.min(Self::SCORE_MAX)) << 64)
                | ((wi as u128) << 32)
                | si as u128,
        )
    }
    fn score(self) -> u64 {
        (self.0 >> 64) as u64 & Self::SCORE_MAX
    }
    fn si(self) -> usize {
        (self.0 as u32) as usize
    }
    /// The same window at another score (saturated as in `new`).
    fn with_score(self, score: u64) -> CandKey {
        let cleared = self.0 & !(u128::from(Self::SCORE_MAX) << 64);
        CandKey(cleared | (u128::from(score.min(Self::SCORE_MAX)) << 64))
    }
}

impl Scheduler {
    pub fn new(cfg: Config) -> Self {
        Scheduler { cfg, ..Default::default() }
    }

    /// Apply one event and return what the daemon must do.
    pub fn handle(&mut self, ev: Event) -> Vec<Effect> {
        let mut out = Vec::new();
        self.apply(ev, &mut out);
        self.schedule(&mut out);
        out
    }

    /// Apply several events, then schedule once. Cheaper than `handle` per event.
    pub fn handle_batch(&mut self, evs: impl IntoIterator<Item = Event>) -> Vec<Effect> {
        let mut out = Vec::new();
        for ev in evs {
            self.apply(ev, &mut out);
        }
        self.schedule(&mut out);
        out
    }

    pub fn queued_len(&self) -> usize {
        self.queued
    }

    pub fn task_state(&self, id: SchedId) -> Option<TaskState> {
        self.tasks.get(&id).map(|t| t.state)
    }

    pub fn task_request(&self, id: SchedId) -> Option<&TaskRequest> {
        self.tasks.get(&id).map(|t| &t.req)
    }

    /// Every task the scheduler holds, with its state. Unordered.
    pub fn tasks(&self) -> impl Iterator<Item = (&TaskRequest, TaskState)> {
        self.tasks.values().map(|t| (&t.req, t.state))
    }

    pub fn worker_ids(&self) -> impl Iterator<Item = WorkerId> + '_ {
        self.workers.keys().copied()
    }

    /// Checks the scheduler's internal bookkeeping against itself: every queued, windowed and
    /// prepared entry names its task (key and slot) and that task's state says where it is;
    /// every task whose state says it is queued or windowed is there; window allocations hold at
    /// least their tasks; the queued count is right. For tests: the property test calls it after
    /// every event. Costs a walk over everything.
    pub fn check_invariants(&self) -> Result<(), String> {
        let named = |key: &QueueKey, id: &SchedId| -> Result<&Task, String> {
            let t = self.tasks.get(id).ok_or_else(|| format!("entry for unknown task {id}"))?;
            if t.key != *key {
                return Err(format!("entry for task {id} carries key {key:?}, the task has {:?}", t.key));
            }
            Ok(t)
        };
        let mut queued = 0;
        for (ci, (_, q)) in self.classes.iter().enumerate() {
            for (key, id) in &q.tasks {
                let t = named(key, id)?;
                if t.state != TaskState::Queued || t.class != ci {
                    return Err(format!("task {id} in class queue {ci} is {:?} of class {}", t.state, t.class));
                }
                queued += 1;
            }
        }
        if queued != self.queued {
            return Err(format!("{queued} tasks in the class queues, the count says {}", self.queued));
        }
        let mut windowed = 0;
        for (wid, w) in &self.workers {
            for (i, win) in w.windows.iter().enumerate() {
                let mut alloc = Pool::default();
                for (key, id) in &win.todo {
                    let t = named(key, id)?;
                    if t.state != (TaskState::Assigned { worker: *wid, window: i }) {
                        return Err(format!("task {id} in window {i} of worker {wid} is labelled {:?}", t.state));
                    }
                    alloc.add(&w.spec_of(&t.req), &w.spec.info.resources);
                    windowed += 1;
                }
                // At least its tasks; more while tasks that left it still prepare or run.
                let a = &win.allocated;
                if a.mem_used_min < alloc.mem_used_min
                    || a.mem_used_max < alloc.mem_used_max
                    || a.cpu_use < alloc.cpu_use
                    || a.gpu_milli < alloc.gpu_milli
                {
                    return Err(format!("window {i} of worker {wid} holds {a:?}, less than its tasks' {alloc:?}"));
                }
            }
            for (key, id) in &w.prepared {
                if named(key, id)?.state != (TaskState::Prepared { worker: *wid }) {
                    return Err(format!("task {id} in the prepared set of worker {wid} is not prepared there"));
                }
            }
            // Card loads are exactly the leases of tasks running there.
            let mut loads = GpuCards::new(w.cards.len());
            for (id, lease) in &w.card_leases {
                if self.tasks.get(id).map(|t| t.state) != Some(TaskState::Running { worker: *wid }) {
                    return Err(format!("task {id} holds cards of worker {wid} and is not running there"));
                }
                for &c in &lease.cards {
                    if c >= loads.len() {
                        return Err(format!("task {id} holds card {c} of a worker with {} cards", loads.len()));
                    }
                }
                loads.take_exact(lease);
            }
            if loads != w.cards || w.cards.loads().iter().any(|&l| l > 1000) {
                return Err(format!(
                    "worker {wid}: card loads {:?}, its leases make {:?}",
                    w.cards.loads(),
                    loads.loads()
                ));
            }
        }
        let labelled = self.tasks.values().filter(|t| matches!(t.state, TaskState::Assigned { .. })).count();
        let queued_states = self.tasks.values().filter(|t| t.state == TaskState::Queued).count();
        if labelled != windowed || queued_states != queued {
            return Err(format!(
                "{labelled} tasks labelled assigned for {windowed} window entries, {queued_states} labelled queued for {queued} queue entries"
            ));
        }
        Ok(())
    }

    pub fn worker(&self, id: WorkerId) -> Option<WorkerView<'_>> {
        let w = self.workers.get(&id)?;
        let mut task_counts = BTreeMap::new();
        for t in self.tasks.values() {
            if t.state.worker() == Some(id) {
                *task_counts.entry((t.req.sector.proof_type, t.req.task)).or_insert(0) += 1;
            }
        }
        Some(WorkerView {
            id,
            spec: &w.spec,
            enabled: w.enabled,
            active: w.active,
            preparing: w.preparing,
            gpu_loads: w.cards.loads().to_vec(),
            task_counts,
        })
    }

    fn class_of(&mut self, req: &TaskRequest) -> usize {
        let key =
            ClassKey { task: req.task, proof: req.sector.proof_type, selector: req.selector, prepare: req.prepare };
        if let Some(&i) = self.class_index.get(&key) {
            return i;
        }
        let locality = matches!(req.selector, Selector::Existing { .. } | Selector::Move { .. });
        self.classes.push((key, ClassQueue { tasks: BTreeSet::new(), sample: req.clone(), locality }));
        self.class_index.insert(key, self.classes.len() - 1);
        self.classes.len() - 1
    }

    fn enqueue(&mut self, id: SchedId) {
        let t = self.tasks.get_mut(&id).expect("task exists");
        t.state = TaskState::Queued;
        self.classes[t.class].1.tasks.insert((t.key, id));
        self.queued += 1;
    }

    fn dequeue(&mut self, id: SchedId) {
        let t = &self.tasks[&id];
        if self.classes[t.class].1.tasks.remove(&(t.key, id)) {
            self.queued -= 1;
        }
    }

    fn forget(&mut self, id: SchedId) -> Option<Task> {
        let t = self.tasks.remove(&id)?;
        if let Some(v) = self.by_sector.get_mut(&t.req.sector.id) {
            v.retain(|x| *x != t.key.slot);
            if v.is_empty() {
                self.by_sector.remove(&t.req.sector.id);
            }
        }
        Some(t)
    }

    fn apply(&mut self, ev: Event, out: &mut Vec<Effect>) {
        match ev {
            Event::WorkerAdded { id, spec } => {
                if self.workers.contains_key(&id) {
                    return; // duplicate registration of the same session is ignored (§3.7)
                }
                let w = Worker::new(spec, &mut self.spec_tables);
                self.workers.insert(id, w);
                self.dirty.insert(id);
            }
            Event::WorkerTaskTypes { id, task_types } => {
                if let Some(w) = self.workers.get_mut(&id) {
                    w.task_mask = task_mask(&task_types);
                    w.spec.task_types = task_types;
                }
            }
            Event::WorkerSpace { id, seal_space, store_space } => {
                if let Some(w) = self.workers.get_mut(&id) {
                    w.spec.seal_space = seal_space;
                    w.spec.store_space = store_space;
                }
            }
            Event::WorkerEnabled(id) => {
                if let Some(w) = self.workers.get_mut(&id) {
                    w.enabled = true;
                    self.dirty.insert(id);
                }
            }
            Event::WorkerDisabled(id) => {
                let Some(w) = self.workers.get_mut(&id) else {
                    return;
                };
                w.enabled = false;
                let windows = std::mem::take(&mut w.windows);
                for (_, task) in windows.into_iter().flat_map(|w| w.todo) {
                    self.enqueue(task);
                    out.push(Effect::Requeued { task, from: id });
                }
            }
            Event::WorkerRemoved(id) => {
                let Some(w) = self.workers.remove(&id) else {
                    return;
                };
                let mut held: Vec<(QueueKey, SchedId)> =
                    self.tasks.values().filter(|t| t.state.worker() == Some(id)).map(|t| (t.key, t.req.id)).collect();
                held.sort();
                drop(w);
                for (_, task) in held {
                    self.enqueue(task);
                    out.push(Effect::Requeued { task, from: id });
                }
                for sector in self.held_by.remove(&id).unwrap_or_default() {
                    if let Some(holders) = self.locations.get_mut(&sector) {
                        holders.remove(&id);
                        if holders.is_empty() {
                            self.locations.remove(&sector);
                        }
                    }
                }
            }
            Event::SectorFiles { sector, worker, types } => {
                let e = self.locations.entry(sector).or_default().entry(worker).or_default();
                e.0 |= types.0;
                self.held_by.entry(worker).or_default().insert(sector);
            }
            Event::SectorFilesGone { sector, worker, types } => {
                if let Some(holders) = self.locations.get_mut(&sector) {
                    if let Some(t) = holders.get_mut(&worker) {
                        t.0 &= !types.0;
                        if t.is_empty() {
                            holders.remove(&worker);
                            if let Some(h) = self.held_by.get_mut(&worker) {
                                h.remove(&sector);
                            }
                        }
                    }
                    if holders.is_empty() {
                        self.locations.remove(&sector);
                    }
                }
            }
            Event::Push(req) => {
                let id = req.id;
                if self.tasks.contains_key(&id) {
                    out.push(Effect::Rejected { task: id, reason: format!("request {id} is already scheduled") });
                    return;
                }
                self.seq += 1;
                let key = QueueKey::new(&req, self.seq);
                let class = self.class_of(&req);
                let sector = req.sector.id;
                let slot = self.tasks.insert(id, Task { req, key, class, state: TaskState::Queued });
                self.by_sector.entry(sector).or_default().push(slot);
                self.enqueue(id);
            }
            Event::Cancel(id) => {
                let Some(t) = self.tasks.get(&id) else { return };
                match t.state {
                    TaskState::Queued => self.dequeue(id),
                    TaskState::Assigned { worker, window } => {
                        if let Some(w) = self.workers.get_mut(&worker) {
                            let spec = w.spec_of(&t.req);
                            let res = &w.spec.info.resources;
                            if let Some(win) = w.windows.get_mut(window) {
                                win.todo.retain(|(_, t)| *t != id);
                                win.allocated.free(&spec, res);
                            }
                            if w.windows.get(window).is_some_and(|win| win.todo.is_empty()) {
                                // The windows behind it move up one: their tasks' labels follow.
                                w.windows.remove(window);
                                label_windows(w, &mut self.tasks, worker, window);
                            }
                        }
                        self.dirty.insert(worker);
                    }
                    // Started work is stopped by the daemon, which then reports Done.
                    _ => return,
                }
                self.forget(id);
                out.push(Effect::Cancelled { task: id });
            }
            Event::Prepared { task, worker } => {
                let Some(t) = self.tasks.get_mut(&task) else {
                    return;
                };
                if t.state != (TaskState::Preparing { worker }) {
                    return; // stale report (the task was requeued meanwhile)
                }
                t.state = TaskState::Prepared { worker };
                let key = t.key;
                let ct = (t.req.task, t.req.sector.proof_type);
                if let Some(w) = self.workers.get_mut(&worker) {
                    dec(&mut w.preparing_count, ct);
                    w.prepared.insert((key, task));
                    self.dirty.insert(worker);
                }
            }
            Event::PrepareFailed { task, worker } => {
                let Some(t) = self.tasks.get(&task) else {
                    return;
                };
                if !matches!(t.state, TaskState::Preparing { worker: w } if w == worker) {
                    return;
                }
                let t = self.forget(task).expect("present");
                if let Some(w) = self.workers.get_mut(&worker) {
                    let prep = w.prep_spec_of(&t.req);
                    w.preparing.free(&prep, &w.spec.info.resources);
                    dec(&mut w.preparing_count, (t.req.task, t.req.sector.proof_type));
                    self.dirty.insert(worker);
                }
            }
            Event::Done { task, worker } => {
                let Some(t) = self.tasks.get(&task) else {
                    return;
                };
                if t.state != (TaskState::Running { worker }) {
                    return;
                }
                let t = self.forget(task).expect("present");
                if let Some(w) = self.workers.get_mut(&worker) {
                    let spec = w.spec_of(&t.req);
                    w.active.free(&spec, &w.spec.info.resources);
                    if let Some(lease) = w.card_leases.remove(&task) {
                        w.cards.release(&lease);
                    }
                    dec(&mut w.running_count, (t.req.task, t.req.sector.proof_type));
                    self.dirty.insert(worker);
                }
            }
        }
    }

    /// Pass, dispatch, and again while a pass places something (a dispatch can open windows).
    fn schedule(&mut self, out: &mut Vec<Effect>) {
        for id in std::mem::take(&mut self.dirty) {
            self.dispatch(id, out);
        }
        // Terminates: every pass that touches a worker moved at least one task out of the
        // queue, and a task is only stolen towards a worker with fewer tasks than its holder.
        for _ in 0..=self.workers.len() {
            for id in std::mem::take(&mut self.dirty) {
                self.dispatch(id, out);
            }
            loop {
                let touched = self.pass();
                if touched.is_empty() {
                    break;
                }
                for id in touched {
                    self.dispatch(id, out);
                }
            }
            if self.steal(out) == 0 {
                break;
            }
        }
    }

    /// Work stealing, beyond the original: a worker with nothing assigned takes back tasks that
    /// wait, not started, in the last window of another worker, or prepared there but unable to
    /// start because that worker's active pool is full (when they can start on the thief now). Without it, tasks
    /// committed to a busy worker's window wait there while other workers sit idle once the
    /// queue is empty (the tail of every batch). Tasks pinned by data locality stay. Returns
    /// how many tasks moved. They go straight into a window of the thief, never back through the
    /// queue, so a task cannot bounce between two workers.
    fn steal(&mut self, out: &mut Vec<Effect>) -> usize {
        const SCAN_LIMIT: usize = 4096;
        let idle: Vec<WorkerId> = std::mem::take(&mut self.newly_idle)
            .into_iter()
            .filter(|id| {
                self.workers.get(id).is_some_and(|w| w.enabled && w.windows.is_empty() && w.prepared.is_empty())
            })
            .collect();
        if idle.is_empty() {
            return 0;
        }
        let victims: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| w.windows.len() >= 2 || !w.prepared.is_empty())
            .map(|(id, _)| *id)
            .collect();
        let mut scanned = 0;
        let mut taken: rustc_hash::FxHashSet<SchedId> = Default::default();
        let mut stolen: Vec<(WorkerId, SchedId)> = Vec::new();
        let mut windows: Vec<(WorkerId, Window)> = Vec::new();
        for thief in idle {
            let t = &self.workers[&thief];
            let mut alloc = Pool::default();
            let mut active = t.active;
            let mut todo: Vec<(QueueKey, SchedId)> = Vec::new();
            'victims: for vid in &victims {
                let v = &self.workers[vid];
                if *vid == thief {
                    continue;
                }
                // Tasks in a second window wait behind a first; prepared tasks that do not fit
                // their worker's active pool wait for running tasks to end. Lowest priority first.
                let windowed = (v.windows.len() >= 2).then(|| v.windows.last().expect("two windows").todo.iter().rev());
                let prepared = v.prepared.iter().rev().filter(|(key, _)| {
                    let spec = v.spec_of(&self.tasks.by_key(key).req);
                    !v.can_start(&spec)
                });
                for (key, tid) in windowed.into_iter().flatten().chain(prepared) {
                    scanned += 1;
                    if scanned > SCAN_LIMIT {
                        break 'victims;
                    }
                    if taken.contains(tid) {
                        continue;
                    }
                    let task = self.tasks.by_key(key);
                    let req = &task.req;
                    let pinned = self.preferred_holders(req).is_some_and(|h| !h.contains(&thief));
                    let spec = t.spec_of(req);
                    let res = &t.spec.info.resources;
                    let ignore = t.spec.info.ignore_resources;
                    if pinned
                        || !t.offers(req.task)
                        || self.selector_allows_remote(req, t).is_err()
                        || alloc.can_handle(&spec, res, ignore).is_err()
                    {
                        continue;
                    }
                    // A prepared task is only worth re-preparing elsewhere if it can run there now.
                    let prepared = matches!(task.state, TaskState::Prepared { .. });
                    if prepared && (active.can_handle(&spec, res, ignore).is_err() || t.cards_for(&spec).is_none()) {
                        continue;
                    }
                    alloc.add(&spec, res);
                    if prepared {
                        active.add(&spec, res);
                    }
                    stolen.push((*vid, *tid));
                    taken.insert(*tid);
                    todo.push((*key, *tid));
                }
            }
            if !todo.is_empty() {
                windows.push((thief, Window { allocated: alloc, todo: std::mem::take(&mut todo) }));
            }
        }
        for (vid, tid) in &stolen {
            let v = self.workers.get_mut(vid).expect("victim");
            let task = &self.tasks[tid];
            let spec = v.spec_of(&task.req);
            if let TaskState::Prepared { .. } = task.state {
                v.prepared.remove(&(task.key, *tid));
                let prep = v.prep_spec_of(&task.req);
                v.preparing.free(&prep, &v.spec.info.resources);
                self.dirty.insert(*vid);
            } else {
                for win in &mut v.windows {
                    if let Some(pos) = win.todo.iter().position(|(_, x)| x == tid) {
                        win.todo.remove(pos);
                        win.allocated.free(&spec, &v.spec.info.resources);
                    }
                }
                v.windows.retain(|w| !w.todo.is_empty());
                label_windows(v, &mut self.tasks, *vid, 0);
            }
            out.push(Effect::Requeued { task: *tid, from: *vid });
        }
        for (thief, mut win) in windows {
            win.todo.sort_unstable();
            let w = self.workers.get_mut(&thief).expect("thief");
            let index = w.windows.len();
            for (key, _) in &win.todo {
                self.tasks.by_key_mut(key).state = TaskState::Assigned { worker: thief, window: index };
            }
            w.windows.push(win);
            self.dirty.insert(thief);
        }
        stolen.len()
    }

    /// Workers allowed to run the task that hold its files, if its selector prefers locality.
    pub(crate) fn preferred_holders(&self, req: &TaskRequest) -> Option<Vec<WorkerId>> {
        let types = match req.selector {
            Selector::Existing { types, .. } | Selector::Move { types, .. } => types,
            _ => return None,
        };
        let holders = self.locations.get(&req.sector.id)?;
        let ok: Vec<WorkerId> = holders
            .iter()
            .filter(|(_, t)| t.intersects(types))
            .map(|(w, _)| *w)
            .filter(|w| {
                self.workers.get(w).is_some_and(|wk| {
                    // A move's target must be a storage path: a holder that has none (a
                    // sealing worker) is no place to finalize into (Lotus: the preferred path
                    // comes from BestAlloc(storage)).
                    let store_ok = match req.selector {
                        Selector::Move { types, .. } => {
                            wk.spec.store_space
                                >= types.space_use(req.sector.proof_type.sector_size().0, PathType::Storage)
                        }
                        _ => true,
                    };
                    store_ok && wk.enabled && wk.offers(req.task) && wk.fits_empty(req).is_ok()
                })
            })
            .collect();
        (!ok.is_empty()).then_some(ok)
    }

    /// Whether a non-holder worker passes the selector (space on its paths).
    pub(crate) fn selector_allows_remote(&self, req: &TaskRequest, w: &Worker) -> Result<(), String> {
        let ssize = req.sector.proof_type.sector_size().0;
        let need_space = |types: FileTypes, kind: PathType, have: u64| {
            let need = types.space_use(ssize, kind);
            if have >= need {
                Ok(())
            } else {
                let what = match kind {
                    PathType::Sealing => "sealing",
                    PathType::Storage => "storage",
                };
                Err(format!(
                    "no {what} path with room for {types}: need {}, {} free",
                    sealing_types::size::size_str(need),
                    sealing_types::size::size_str(have)
                ))
            }
        };
        match req.selector {
            Selector::Task => Ok(()),
            Selector::Alloc { types, path } => {
                let have = if path == PathType::Sealing { w.spec.seal_space } else { w.spec.store_space };
                need_space(types, path, have)
            }
            Selector::Existing { types, allow_fetch: true } => need_space(types, PathType::Sealing, w.spec.seal_space),
            Selector::Existing { types, allow_fetch: false } => {
                Err(format!("does not hold the sector's {types} files, and this task does not fetch"))
            }
            Selector::Move { types, allow_remote: true } => need_space(types, PathType::Storage, w.spec.store_space),
            Selector::Move { types, allow_remote: false } => {
                Err(format!("does not hold the sector's {types} files, and DisallowRemoteFinalize forbids moving them"))
            }
        }
    }

    /// `pass_util[wi]`: the worker's utilisation including this pass's assignments, once it has
    /// one; `pass_count[wi]`: tasks this pass gave it.
    fn score(&self, w: &Worker, wi: usize, pass_util: &[Option<f64>], pass_count: &[u64]) -> u64 {
        match self.cfg.assigner {
            Assigner::Utilization => {
                let u = pass_util[wi].unwrap_or_else(|| w.utilization());
                (u * 1e9) as u64
            }
            Assigner::Spread => w.held_tasks() + pass_count[wi],
        }
    }

    /// Open windows that may take tasks of the request's class, best first.
    fn class_candidates(
        &self,
        req: &TaskRequest,
        scratch: &[Scratch],
        wrefs: &[&Worker],
        pass_util: &[Option<f64>],
        pass_count: &[u64],
    ) -> BinaryHeap<Reverse<CandKey>> {
        // Collected, then heapified in one go (linear, rather than a sift per push).
        let mut h = Vec::new();
        for (si, s) in scratch.iter().enumerate() {
            let w = wrefs[s.wi];
            if !w.offers(req.task) || self.selector_allows_remote(req, w).is_err() || w.fits_empty(req).is_err() {
                continue;
            }
            let tier = if req.selector == Selector::Task { u64::from(w.task_mask.count_ones()) } else { 0 };
            h.push(Reverse(CandKey::new(tier, self.score(w, s.wi, pass_util, pass_count), s.wi, si)));
        }
        BinaryHeap::from(h)
    }

    /// Queued tasks of class `ci` (after `after`, in queue order) whose sector's files sit on a
    /// worker with an open window: all a locality class can still place once no other worker
    /// can take it.
    fn local_tasks(
        &self,
        ci: usize,
        open: &HashMap<WorkerId, usize>,
        after: Option<QueueKey>,
    ) -> Vec<(QueueKey, SchedId)> {
        let mut local: Vec<(QueueKey, SchedId)> = Vec::new();
        for w in open.keys() {
            for sector in self.held_by.get(w).into_iter().flatten() {
                for &slot in self.by_sector.get(sector).into_iter().flatten() {
                    let t = self.tasks.at(slot);
                    if t.class == ci && t.state == TaskState::Queued && after.is_none_or(|a| t.key > a) {
                        local.push((t.key, t.req.id));
                    }
                }
            }
        }
        local.sort_unstable();
        local.dedup();
        local
    }

    /// One scheduling pass: fill open windows from the queue. Returns the workers that got
    /// tasks.
    fn pass(&mut self) -> Vec<WorkerId> {
        let mut scratch: Vec<Scratch> = Vec::new();
        let mut first_scratch: HashMap<WorkerId, usize> = HashMap::default();
        let wrefs: Vec<&Worker> = self.workers.values().collect();
        for (wi, (id, w)) in self.workers.iter().enumerate() {
            for _ in 0..w.open_windows() {
                first_scratch.entry(*id).or_insert(scratch.len());
                scratch.push(Scratch {
                    worker: *id,
                    wi,
                    alloc: Pool::default(),
                    util: Pool::default().utilization(&w.spec.info.resources),
                    counts: [0; TASK_TYPE_SLOTS],
                    placed: 0,
                });
            }
        }
        if scratch.is_empty() || self.queued == 0 {
            return Vec::new();
        }
        let mut pass_util: Vec<Option<f64>> = vec![None; wrefs.len()];
        let mut pass_count: Vec<u64> = vec![0; wrefs.len()];
        // Per class: candidate windows (lazily built), and whether it can take no more.
        let mut cands: Vec<Option<BinaryHeap<Reverse<CandKey>>>> = vec![None; self.classes.len()];
        // (task slot, class, scratch window), in queue order. Small and sized up front: a cold
        // fill places tens of thousands of tasks, and a list of full keys, grown by doubling,
        // was megabytes of fresh memory to copy and fault in.
        let mut assigned: Vec<(u32, u32, u32)> = Vec::with_capacity(self.queued);

        // Merge the per-class queues in global queue order. A class whose candidates are used
        // up drops out, so a pass costs O(assignments · log) rather than O(queue × windows).
        let mut iters: Vec<ClassSource> = Vec::with_capacity(self.classes.len());
        for (ci, (key, q)) in self.classes.iter().enumerate() {
            let locality = matches!(key.selector, Selector::Existing { .. } | Selector::Move { .. });
            let Some((sample, _)) = q.tasks.first().filter(|_| locality) else {
                iters.push(ClassSource::All(q.tasks.iter()));
                continue;
            };
            let heap = self.class_candidates(&self.tasks.by_key(sample).req, &scratch, &wrefs, &pass_util, &pass_count);
            if !heap.is_empty() {
                cands[ci] = Some(heap);
                iters.push(ClassSource::All(q.tasks.iter()));
                continue;
            }
            // No remote candidate: only tasks whose sector sits on a worker with an open window.
            cands[ci] = Some(heap);
            iters.push(ClassSource::Local(self.local_tasks(ci, &first_scratch, None).into_iter()));
        }
        // The next queued task of each class, by queue key (unique: it ends in a sequence number).
        let mut heads: BinaryHeap<Reverse<(QueueKey, usize)>> = BinaryHeap::new();
        for (ci, it) in iters.iter_mut().enumerate() {
            if let Some((k, _)) = it.next() {
                heads.push(Reverse((k, ci)));
            }
        }
        while let Some(Reverse((key, ci))) = heads.pop() {
            let req =
                if self.classes[ci].1.locality { &self.tasks.by_key(&key).req } else { &self.classes[ci].1.sample };
            let mut class_exhausted = false;
            let mut repush: Option<CandKey> = None;
            let chosen: Option<usize> = if let Some(holders) = self.preferred_holders(req) {
                // Data locality: only the holders, even if busy (never move a sector that a
                // local worker can process).
                let mut best: Option<(CandKey, usize)> = None;
                for h in holders {
                    let Some(&first) = first_scratch.get(&h) else {
                        continue;
                    };
                    let wi = scratch[first].wi;
                    let w = wrefs[wi];
                    let spec = w.spec_of(req);
                    for (si, s) in scratch.iter().enumerate().skip(first).take_while(|(_, s)| s.wi == wi) {
                        if !fits_scratch(s, &spec, w, req) {
                            continue;
                        }
                        let key = CandKey::new(0, self.score(w, wi, &pass_util, &pass_count), wi, si);
                        if best.is_none_or(|(b, _)| key < b) {
                            best = Some((key, si));
                        }
                    }
                }
                best.map(|(_, si)| si)
            } else {
                let heap = cands[ci]
                    .get_or_insert_with(|| self.class_candidates(req, &scratch, &wrefs, &pass_util, &pass_count));
                let mut chosen = None;
                while let Some(Reverse(cand)) = heap.pop() {
                    let si = cand.si();
                    let s = &scratch[si];
                    let w = wrefs[s.wi];
                    if !fits_scratch(s, &w.spec_of(req), w, req) {
                        continue; // allocations only grow within a pass: drop for this class
                    }
                    let now = self.score(w, s.wi, &pass_util, &pass_count);
                    if now.min(CandKey::SCORE_MAX) != cand.score() {
                        heap.push(Reverse(cand.with_score(now)));
                        continue;
                    }
                    chosen = Some(si);
                    // Stays a candidate for the next task of the class: pushed back below, at
                    // the score this placement gives it.
                    repush = Some(cand);
                    break;
                }
                if chosen.is_none() {
                    if self.classes[ci].1.locality {
                        // No remote window left for the class: from here on only its tasks whose
                        // sector sits on a worker with an open window can be placed.
                        if matches!(iters[ci], ClassSource::All(_)) {
                            iters[ci] = ClassSource::Local(self.local_tasks(ci, &first_scratch, Some(key)).into_iter());
                        }
                    } else {
                        class_exhausted = true;
                    }
                }
                chosen
            };
            if let Some(si) = chosen {
                let s = &mut scratch[si];
                let w = wrefs[s.wi];
                let res = &w.spec.info.resources;
                let spec = w.spec_of(req);
                s.alloc.add(&spec, res);
                let util = s.alloc.utilization(res);
                let delta = util - s.util;
                s.util = util;
                s.counts[req.task as usize] += 1;
                s.placed += 1;
                *pass_util[s.wi].get_or_insert_with(|| w.utilization()) += delta;
                pass_count[s.wi] += 1;
                assigned.push((key.slot, ci as u32, si as u32));
                if let Some(cand) = repush {
                    let score = self.score(w, s.wi, &pass_util, &pass_count);
                    if let Some(h) = cands[ci].as_mut() {
                        h.push(Reverse(cand.with_score(score)));
                    }
                }
            }
            if !class_exhausted {
                if let Some((k, _)) = iters[ci].next() {
                    heads.push(Reverse((k, ci)));
                }
            }
        }
        drop(iters);
        drop(wrefs);

        let mut touched = Vec::new();
        // The window index each used scratch window will get.
        let mut window_of: Vec<usize> = vec![0; scratch.len()];
        let mut next_window: HashMap<WorkerId, usize> = HashMap::default();
        for (si, s) in scratch.iter().enumerate().filter(|(_, s)| s.placed > 0) {
            let next = next_window.entry(s.worker).or_insert_with(|| self.workers[&s.worker].windows.len());
            window_of[si] = *next;
            *next += 1;
        }
        // One walk over the placements, in queue order: the task table is in arrival order, so
        // this reads it nearly sequentially (window by window it was a cache miss per task).
        // Each window's list is allocated once at its final size. A class without locality is
        // placed strictly in queue order until it is exhausted, so what it placed is a prefix of
        // its queue: it is cut off in one go below instead of searched for task by task.
        let mut todos: Vec<Vec<(QueueKey, SchedId)>> = scratch.iter().map(|s| Vec::with_capacity(s.placed)).collect();
        let mut last_of_class: Vec<Option<(QueueKey, SchedId)>> = vec![None; self.classes.len()];
        for &(slot, ci, si) in &assigned {
            let (ci, si) = (ci as usize, si as usize);
            let t = self.tasks.at_mut(slot);
            let (key, id) = (t.key, t.req.id);
            t.state = TaskState::Assigned { worker: scratch[si].worker, window: window_of[si] };
            todos[si].push((key, id));
            if self.classes[ci].1.locality {
                if self.classes[ci].1.tasks.remove(&(key, id)) {
                    self.queued -= 1;
                }
            } else {
                last_of_class[ci] = Some((key, id));
            }
        }
        for (ci, last) in last_of_class.into_iter().enumerate().filter_map(|(ci, l)| Some((ci, l?))) {
            let q = &mut self.classes[ci].1.tasks;
            let mut rest = q.split_off(&last);
            rest.remove(&last);
            self.queued -= q.len() + 1;
            *q = rest;
        }
        for (s, todo) in scratch.into_iter().zip(todos).filter(|(s, _)| s.placed > 0) {
            let w = self.workers.get_mut(&s.worker).expect("worker exists");
            w.windows.push(Window { allocated: s.alloc, todo });
            if touched.last() != Some(&s.worker) {
                touched.push(s.worker);
            }
        }
        touched
    }

    /// Move the worker's tasks forward: window → preparing, prepared → active, strictly in
    /// order, then compact the windows.
    fn dispatch(&mut self, id: WorkerId, out: &mut Vec<Effect>) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        let res = &w.spec.info.resources;
        loop {
            let mut progressed = false;
            // Window → preparing: the head of the first window, in order. Never bypass the
            // head: a large task waiting for room must not be overtaken by small ones.
            // The tasks that leave a window are cut from its list in one go (one at a time
            // shifted the rest of the list for each).
            while !w.windows.is_empty() {
                let mut taken = 0;
                while let Some(&(head_key, head)) = w.windows[0].todo.get(taken) {
                    let t = self.tasks.by_key_mut(&head_key);
                    let prep = w.prep_spec_of(&t.req);
                    let ct = (t.req.task, t.req.sector.proof_type);
                    if !admits(w, &w.preparing, &w.preparing_count, ct, &prep) {
                        break;
                    }
                    // The window's allocation keeps it, as the original's does (reference §3.7):
                    // compaction must not pack the window again while the task still runs.
                    w.preparing.add(&prep, res);
                    if t.req.prepare.is_some() {
                        t.state = TaskState::Preparing { worker: id };
                        *w.preparing_count.entry(ct).or_insert(0) += 1;
                        out.push(Effect::Prepare { task: head, worker: id });
                    } else {
                        t.state = TaskState::Prepared { worker: id };
                        w.prepared.insert((t.key, head));
                    }
                    taken += 1;
                    progressed = true;
                }
                let first = &mut w.windows[0].todo;
                first.drain(..taken);
                if !first.is_empty() {
                    break; // its head waits for room
                }
                w.windows.remove(0);
                label_windows(w, &mut self.tasks, id, 0);
            }
            // Prepared → active, in queue order, strictly.
            while let Some(&(key, head)) = w.prepared.first() {
                let t = self.tasks.by_key_mut(&key);
                let spec = w.spec_of(&t.req);
                let ct = (t.req.task, t.req.sector.proof_type);
                if !admits(w, &w.active, &w.running_count, ct, &spec) {
                    break;
                }
                // Strictly in order here too: a GPU task waiting for a card holds back the
                // prepared tasks behind it.
                let Some(lease) = w.cards_for(&spec) else {
                    break;
                };
                if !lease.is_empty() {
                    w.cards.take_exact(&lease);
                    w.card_leases.insert(head, lease);
                }
                w.prepared.remove(&(key, head));
                w.active.add(&spec, res);
                let prep = w.prep_spec_of(&t.req);
                w.preparing.free(&prep, res);
                *w.running_count.entry(ct).or_insert(0) += 1;
                t.state = TaskState::Running { worker: id };
                out.push(Effect::Start { task: head, worker: id });
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
        compact_windows(w, &mut self.tasks, id);
        if w.enabled && w.windows.is_empty() && w.prepared.is_empty() {
            self.newly_idle.insert(id);
        }
    }
}

fn fits_scratch(s: &Scratch, spec: &Resources, w: &Worker, req: &TaskRequest) -> bool {
    if spec.max_concurrent > 0 && s.counts[req.task as usize] as i64 >= spec.max_concurrent {
        return false;
    }
    s.alloc.can_handle(spec, &w.spec.info.resources, w.spec.info.ignore_resources).is_ok()
}

fn dec(m: &mut HashMap<(TaskType, RegisteredSealProof), usize>, k: (TaskType, RegisteredSealProof)) {
    if let Some(c) = m.get_mut(&k) {
        *c = c.saturating_sub(1);
        if *c == 0 {
            m.remove(&k);
        }
    }
}

/// Move tasks from later windows into earlier ones where they fit, drop empty windows
/// (`workerCompactWindows`, reference §3.7).
fn compact_windows(w: &mut Worker, tasks: &mut TaskTable, id: WorkerId) {
    if w.windows.len() < 2 {
        return;
    }
    let res = &w.spec.info.resources;
    let ignore = w.spec.info.ignore_resources;
    let mut moved = false;
    for later in 1..w.windows.len() {
        let mut i = 0;
        while i < w.windows[later].todo.len() {
            let (key, tid) = w.windows[later].todo[i];
            let spec = w.spec_of(&tasks.by_key(&key).req);
            let target = (0..later).find(|&e| w.windows[e].allocated.can_handle(&spec, res, ignore).is_ok());
            if let Some(e) = target {
                w.windows[later].todo.remove(i);
                w.windows[later].allocated.free(&spec, res);
                w.windows[e].allocated.add(&spec, res);
                // Keep each window's todo in queue order.
                let pos = w.windows[e].todo.partition_point(|x| x.0 < key);
                w.windows[e].todo.insert(pos, (key, tid));
                moved = true;
            } else {
                i += 1;
            }
        }
    }
    let before = w.windows.len();
    w.windows.retain(|win| !win.todo.is_empty());
    if !moved && w.windows.len() == before {
        return; // every task is where its label says
    }
    label_windows(w, tasks, id, 0);
}

/// Labels the tasks of the worker's windows from `from` on with their window's position.
fn label_windows(w: &Worker, tasks: &mut TaskTable, id: WorkerId, from: usize) {
    for (i, win) in w.windows.iter().enumerate().skip(from) {
        for (key, _) in &win.todo {
            tasks.by_key_mut(key).state = TaskState::Assigned { worker: id, window: i };
        }
    }
}

/// Whether one more task with `spec` may enter `pool` on worker `w`: below the spec's
/// MaxConcurrent for its (task type, proof) in `count`, and with room for its resources.
fn admits(
    w: &Worker,
    pool: &Pool,
    count: &HashMap<(TaskType, RegisteredSealProof), usize>,
    ct: (TaskType, RegisteredSealProof),
    spec: &Resources,
) -> bool {
    let below_limit = spec.max_concurrent <= 0 || count.get(&ct).copied().unwrap_or(0) < spec.max_concurrent as usize;
    below_limit && pool.can_handle(spec, &w.spec.info.resources, w.spec.info.ignore_resources).is_ok()
}

#[cfg(test)]
mod tests {
    //! `TestWindowCompact` cases of the original.
    use super::*;
    use sealing_types::resources::default_table;
    use sealing_types::{SectorRef, WorkerResources};
    use uuid::Uuid;

    const GIB: u64 = 1 << 30;

    fn worker(ram_gib: u64) -> Worker {
        Worker::new(
            WorkerSpec {
                info: WorkerInfo {
                    hostname: "fred".into(),
                    ignore_resources: false,
                    mock_proofs: false,
                    resources: WorkerResources {
                        mem_physical: ram_gib * GIB,
                        mem_swap: 512 * GIB,
                        cpus: 32,
                        resources: default_table().clone(),
                        ..Default::default()
                    },
                },
                task_types: Default::default(),
                seal_space: 0,
                store_space: 0,
            },
            &mut vec![],
        )
    }

    #[test]
    fn candidate_keys_order_as_the_tuple_they_pack() {
        let keys = [(0, 5, 9, 9), (0, 6, 0, 0), (1, 0, 0, 0), (0, 5, 10, 0), (0, 5, 9, 10), (0, u64::MAX, 0, 1)];
        let mut packed: Vec<CandKey> = keys.iter().map(|&(t, s, w, i)| CandKey::new(t, s, w, i)).collect();
        packed.sort();
        let mut tuples = keys.to_vec();
        tuples.sort();
        let unpacked: Vec<usize> = packed.iter().map(|k| k.si()).collect();
        assert_eq!(unpacked, tuples.iter().map(|k| k.3).collect::<Vec<_>>());
        let k = CandKey::new(3, 7, 2, 4).with_score(1 << 60);
        assert_eq!((k.score(), k.si()), (CandKey::SCORE_MAX, 4), "a huge score saturates, the rest stays");
        assert!(CandKey::new(3, 7, 2, 4).with_score(8) > CandKey::new(3, 7, 2, 4));
    }

    #[test]
    fn task_types_fit_the_per_window_counters() {
        assert!(TaskType::ALL.iter().all(|t| (*t as usize) < TASK_TYPE_SLOTS));
    }

    /// Windows given as lists of task types; returns the task types per window after compaction.
    fn compact(ram_gib: u64, windows: &[&[TaskType]]) -> Vec<Vec<TaskType>> {
        let mut w = worker(ram_gib);
        let mut tasks = TaskTable::default();
        let mut n = 0u128;
        for types in windows {
            let mut win = Window::default();
            for t in *types {
                n += 1;
                let req = TaskRequest {
                    id: SchedId::from_u128(n),
                    sector: SectorRef {
                        id: SectorId { miner: 1000, number: n as u64 },
                        proof_type: RegisteredSealProof::STACKED_DRG_32GIB_V1_1,
                    },
                    task: *t,
                    priority: 0,
                    selector: Selector::Task,
                    prepare: None,
                };
                win.allocated.add(&w.spec_of(&req), &w.spec.info.resources);
                let id = req.id;
                let key = QueueKey::new(&req, n as u64);
                tasks.insert(id, Task { req, key, class: 0, state: TaskState::Queued });
                win.todo.push((tasks[&id].key, id));
            }
            w.windows.push(win);
        }
        compact_windows(&mut w, &mut tasks, WorkerId(Uuid::nil()));
        w.windows.iter().map(|win| win.todo.iter().map(|(_, id)| tasks[id].req.task).collect()).collect()
    }

    use TaskType::{AddPiece as AP, PreCommit1 as PC1};

    #[test]
    fn compact_2_pc1_windows() {
        // Room for two PC1s (2 × 56 GiB): the second window's PC1 moves into the first.
        assert_eq!(compact(128, &[&[PC1], &[PC1]]), vec![vec![PC1, PC1]]);
    }

    #[test]
    fn compact_1_window() {
        assert_eq!(compact(128, &[&[PC1, PC1]]), vec![vec![PC1, PC1]]);
    }

    #[test]
    fn compact_2pc1_pc1ap() {
        // The first window is full of PC1s but still has room for the 4 GiB AddPiece.
        assert_eq!(compact(128, &[&[PC1, PC1], &[PC1, AP]]), vec![vec![PC1, PC1, AP], vec![PC1]]);
    }

    #[test]
    fn compact_nothing_fits() {
        assert_eq!(compact(64, &[&[PC1], &[PC1]]), vec![vec![PC1], vec![PC1]]);
    }
}
