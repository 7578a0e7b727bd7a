//! The event handler: how each `Event` changes the scheduler's state.

use super::worker::{label_windows, task_mask, Worker};
use super::{Effect, Event, Scheduler, Task, TaskState};
use crate::queue::QueueKey;
use rustc_hash::FxHashMap as HashMap;
use sealing_types::{RegisteredSealProof, SchedId, TaskType};

impl Scheduler {
    pub(super) fn apply(&mut self, ev: Event, out: &mut Vec<Effect>) {
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
}

fn dec(m: &mut HashMap<(TaskType, RegisteredSealProof), usize>, k: (TaskType, RegisteredSealProof)) {
    if let Some(c) = m.get_mut(&k) {
        *c = c.saturating_sub(1);
        if *c == 0 {
            m.remove(&k);
        }
    }
}
