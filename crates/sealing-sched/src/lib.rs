//! The sealing scheduler: which worker runs which task, never more than a worker's CPU, RAM,
//! swap and GPU allow (reference §3, §4).
//!
//! This crate is a pure, deterministic state machine. It does no I/O, reads no clock and runs
//! no async runtime: the daemon feeds it [`Event`]s and carries out the [`Effect`]s it returns.
//! The same inputs always give the same outputs, which is what lets the simulation tests and
//! the property test drive thousands of workers in milliseconds.
//!
//! Model (after the original, with two deliberate changes, see `ARCHITECTURE.md`):
//! - a global queue ordered as §3.2;
//! - per worker, up to two *scheduling windows*, each filled with at most one empty worker's
//!   worth of tasks; a *preparing* pool (fetching sector data) and an *active* pool (computing),
//!   so that the next task's fetch overlaps the current task's compute;
//! - tasks leave a window for the preparing pool and the preparing pool for the active pool in
//!   queue order, strictly (a big task at the head is never overtaken by small ones, so it cannot
//!   starve);
//! - selectors decide which workers may run a task; data locality is a hard preference.

mod diag;
mod pool;
mod queue;
mod sched;
pub mod sim;
mod tasks;

pub use diag::{RequestDiag, SchedDiag};
pub use pool::Pool;
pub use queue::QueueKey;
pub use sched::{Assigner, Config, Effect, Event, Scheduler, TaskState, WorkerSpec, WorkerView};

use sealing_types::{FileTypes, PathType, SchedId, SectorRef, TaskType};

/// Which workers may run a task (reference §4). Locality-aware selectors prefer the workers
/// that already hold the sector's files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Selector {
    /// Any worker that supports the task type; prefers workers with fewer task types.
    Task,
    /// Workers with a path of `path` kind that has room for `types`.
    Alloc { types: FileTypes, path: PathType },
    /// Workers holding any of `types` for the sector; with `allow_fetch`, also workers with
    /// sealing space to fetch them (only when no holder can run the task).
    Existing { types: FileTypes, allow_fetch: bool },
    /// Finalize's move to long-term storage: holders preferred; others with storage space
    /// only when `allow_remote`.
    Move { types: FileTypes, allow_remote: bool },
}

/// One request for the scheduler's queue.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskRequest {
    pub id: SchedId,
    pub sector: SectorRef,
    pub task: TaskType,
    /// Larger is more important; deal sectors use [`DEAL_SECTOR_PRIORITY`].
    pub priority: i32,
    pub selector: Selector,
    /// The task type of the preparation step (normally `Fetch`), or `None` when the task needs
    /// no preparation and may start as soon as it fits.
    pub prepare: Option<TaskType>,
}

/// Scheduler priority of sectors that hold deals (reference §1.5).
pub const DEAL_SECTOR_PRIORITY: i32 = 1024;

/// How many scheduling windows each worker holds (reference §3.1).
pub const SCHED_WINDOWS: usize = 2;
