//! Dispatch: a worker's tasks move from its windows to its preparing pool and from there to
//! its active pool, strictly in queue order.

use super::worker::{compact_windows, label_windows, Worker};
use super::{Effect, Scheduler, TaskState};
use crate::pool::Pool;
use rustc_hash::FxHashMap as HashMap;
use sealing_types::{RegisteredSealProof, Resources, TaskType, WorkerId};

impl Scheduler {
    /// Move the worker's tasks forward: window → preparing, prepared → active, strictly in
    /// order, then compact the windows.
    pub(super) fn dispatch(&mut self, id: WorkerId, out: &mut Vec<Effect>) {
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
