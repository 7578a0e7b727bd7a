//! The scheduler's vocabulary: its configuration, what it knows about a worker, the events it
//! takes, the effects it returns, and where a task is.

use crate::TaskRequest;
use sealing_types::{FileTypes, SchedId, SectorId, TaskType, WorkerId, WorkerInfo};
use std::collections::BTreeSet;

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
