//! Work stealing: idle workers take tasks that wait, not started, on busy workers.

use super::worker::{label_windows, Window};
use super::{Effect, Scheduler, TaskState};
use crate::pool::Pool;
use crate::queue::QueueKey;
use sealing_types::{SchedId, WorkerId};

impl Scheduler {
    /// Work stealing, beyond the original: a worker with nothing assigned takes back tasks that
    /// wait, not started, in the last window of another worker, or prepared there but unable to
    /// start because that worker's active pool is full (when they can start on the thief now). Without it, tasks
    /// committed to a busy worker's window wait there while other workers sit idle once the
    /// queue is empty (the tail of every batch). Tasks pinned by data locality stay. Returns
    /// how many tasks moved. They go straight into a window of the thief, never back through the
    /// queue, so a task cannot bounce between two workers.
    pub(super) fn steal(&mut self, out: &mut Vec<Effect>) -> usize {
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
                        || !Self::selector_fits(super::pass::SpaceNeed::of(req), t)
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
}
