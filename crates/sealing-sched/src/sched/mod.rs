//! The scheduler state machine: its state, the entry points that feed it events, and the
//! public queries. The concerns live in the child modules: `events` (inputs, outputs, task
//! states), `worker` (a worker's pools and windows), `apply` (the event handler), `pass` (which
//! window takes which queued task), `dispatch` (window to preparing to active), `steal` (idle
//! workers taking waiting tasks) and `invariants` (the bookkeeping self-check).

mod apply;
mod dispatch;
mod events;
mod invariants;
mod pass;
mod steal;
mod worker;

pub use events::{Assigner, Config, Effect, Event, TaskState, WorkerSpec};
pub use worker::WorkerView;

use crate::queue::QueueKey;
use crate::tasks::TaskTable;
use crate::{Selector, TaskRequest};
use rustc_hash::FxHashMap as HashMap;
use sealing_types::{FileTypes, RegisteredSealProof, Resources, SchedId, SectorId, TaskType, WorkerId};
use smallvec::SmallVec;
use std::collections::{BTreeMap, BTreeSet};
use worker::Worker;

#[derive(Clone, Debug)]
pub(crate) struct Task {
    pub(crate) req: TaskRequest,
    pub(crate) key: QueueKey,
    pub(crate) class: usize,
    pub(crate) state: TaskState,
}

/// The part of a request that decides which workers may take it, independent of the sector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ClassKey {
    pub(crate) task: TaskType,
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

    pub fn worker(&self, id: WorkerId) -> Option<WorkerView<'_>> {
        let mut task_counts = BTreeMap::new();
        for t in self.tasks.values() {
            if t.state.worker() == Some(id) {
                *task_counts.entry((t.req.sector.proof_type, t.req.task)).or_insert(0) += 1;
            }
        }
        self.view(id, task_counts)
    }

    /// Every worker's view, its task counts from one pass over the tasks (with 1,000
    /// workers and 10,000 tasks, a pass per worker made `sealing workers`, the metrics scrape
    /// and the dashboard cost 10 million steps each).
    pub fn workers(&self) -> Vec<WorkerView<'_>> {
        type Counts = BTreeMap<(RegisteredSealProof, TaskType), usize>;
        let mut counts: HashMap<WorkerId, Counts> = HashMap::default();
        for t in self.tasks.values() {
            if let Some(w) = t.state.worker() {
                *counts.entry(w).or_default().entry((t.req.sector.proof_type, t.req.task)).or_insert(0) += 1;
            }
        }
        self.workers.keys().filter_map(|id| self.view(*id, counts.remove(id).unwrap_or_default())).collect()
    }

    fn view(
        &self,
        id: WorkerId,
        task_counts: BTreeMap<(RegisteredSealProof, TaskType), usize>,
    ) -> Option<WorkerView<'_>> {
        let w = self.workers.get(&id)?;
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
}
