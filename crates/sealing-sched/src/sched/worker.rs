//! A worker as the scheduler sees it: its pools, scheduling windows, per-task counts and GPU
//! cards, and the window bookkeeping (compaction, labels).

use super::{TaskState, WorkerSpec};
use crate::pool::Pool;
use crate::queue::QueueKey;
use crate::tasks::TaskTable;
use crate::{TaskRequest, SCHED_WINDOWS};
use rustc_hash::FxHashMap as HashMap;
use sealing_types::gpu::{self, CardLease, GpuCards};
use sealing_types::{RegisteredSealProof, Resources, SchedId, TaskType, WorkerId};
use std::collections::{BTreeMap, BTreeSet};

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
    pub(super) task_mask: u32,
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
pub(super) const TASK_TYPE_SLOTS: usize = 32;

/// A set of task types as bits, `1 << task as usize` (every task type is below
/// `TASK_TYPE_SLOTS`, 32, by a test).
pub(super) fn task_mask(types: &BTreeSet<TaskType>) -> u32 {
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
    pub(super) fn can_start(&self, spec: &Resources) -> bool {
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
    pub(super) fn prep_spec_of(&self, req: &TaskRequest) -> Resources {
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
    pub(super) fn utilization(&self) -> f64 {
        let res = &self.spec.info.resources;
        self.active.utilization(res)
            + self.preparing.utilization(res)
            + self.windows.iter().map(|w| w.allocated.utilization(res)).sum::<f64>()
    }
    /// Tasks assigned to, preparing on, waiting on, or running on this worker.
    pub(super) fn held_tasks(&self) -> u64 {
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

/// Move tasks from later windows into earlier ones where they fit, drop empty windows
/// (`workerCompactWindows`, reference §3.7).
pub(super) fn compact_windows(w: &mut Worker, tasks: &mut TaskTable, id: WorkerId) {
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
pub(super) fn label_windows(w: &Worker, tasks: &mut TaskTable, id: WorkerId, from: usize) {
    for (i, win) in w.windows.iter().enumerate().skip(from) {
        for (key, _) in &win.todo {
            tasks.by_key_mut(key).state = TaskState::Assigned { worker: id, window: i };
        }
    }
}

#[cfg(test)]
mod tests {
    //! `TestWindowCompact` cases of the original.
    use super::*;
    use crate::sched::Task;
    use crate::Selector;
    use sealing_types::resources::default_table;
    use sealing_types::{SectorId, SectorRef, WorkerInfo, WorkerResources};
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
