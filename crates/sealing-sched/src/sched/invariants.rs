//! The scheduler's self-check of its bookkeeping, for tests.

use super::{Scheduler, Task, TaskState};
use crate::pool::Pool;
use crate::queue::QueueKey;
use sealing_types::gpu::GpuCards;
use sealing_types::SchedId;

impl Scheduler {
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
}
