//! Selection: the scheduling loop, and the pass that fills open windows from the queue (which
//! workers a request's selector allows, how candidate windows are scored and ordered).

use super::worker::{Window, Worker, TASK_TYPE_SLOTS};
use super::{Assigner, Effect, Scheduler, TaskState};
use crate::pool::Pool;
use crate::queue::QueueKey;
use crate::{Selector, TaskRequest};
use rustc_hash::FxHashMap as HashMap;
use sealing_types::{FileTypes, PathType, Resources, SchedId, WorkerId};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

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
    /// Pass, dispatch, and again while a pass places something (a dispatch can open windows).
    pub(super) fn schedule(&mut self, out: &mut Vec<Effect>) {
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
    /// Whether the selector lets `w` run the request when `w` does not hold the sector's files,
    /// and why not (the message `sealing sched-diag` shows).
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

    /// [`Self::selector_allows_remote`] as a yes or no, with the space the request needs worked
    /// out once (`SpaceNeed::of`) rather than for every worker a pass looks at: with a
    /// thousand workers that was most of a push's cost.
    pub(crate) fn selector_fits(need: SpaceNeed, w: &Worker) -> bool {
        match need {
            SpaceNeed::None => true,
            SpaceNeed::Never => false,
            SpaceNeed::Sealing(n) => w.spec.seal_space >= n,
            SpaceNeed::Storage(n) => w.spec.store_space >= n,
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
        let need = SpaceNeed::of(req);
        for (si, s) in scratch.iter().enumerate() {
            let w = wrefs[s.wi];
            if !w.offers(req.task) || !Self::selector_fits(need, w) || w.fits_empty(req).is_err() {
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
}

fn fits_scratch(s: &Scratch, spec: &Resources, w: &Worker, req: &TaskRequest) -> bool {
    if spec.max_concurrent > 0 && s.counts[req.task as usize] as i64 >= spec.max_concurrent {
        return false;
    }
    s.alloc.can_handle(spec, &w.spec.info.resources, w.spec.info.ignore_resources).is_ok()
}

#[cfg(test)]
mod tests {
    use super::CandKey;

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
}

/// The room a request needs on a worker that does not hold its files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SpaceNeed {
    /// Any worker (the task selector).
    None,
    /// Room on the worker's sealing paths.
    Sealing(u64),
    /// Room on its storage paths.
    Storage(u64),
    /// Only workers that hold the files.
    Never,
}

impl SpaceNeed {
    pub(crate) fn of(req: &TaskRequest) -> SpaceNeed {
        let ssize = req.sector.proof_type.sector_size().0;
        match req.selector {
            Selector::Task => SpaceNeed::None,
            Selector::Alloc { types, path: PathType::Sealing } => {
                SpaceNeed::Sealing(types.space_use(ssize, PathType::Sealing))
            }
            Selector::Alloc { types, path: PathType::Storage } => {
                SpaceNeed::Storage(types.space_use(ssize, PathType::Storage))
            }
            Selector::Existing { types, allow_fetch: true } => {
                SpaceNeed::Sealing(types.space_use(ssize, PathType::Sealing))
            }
            Selector::Move { types, allow_remote: true } => {
                SpaceNeed::Storage(types.space_use(ssize, PathType::Storage))
            }
            Selector::Existing { allow_fetch: false, .. } | Selector::Move { allow_remote: false, .. } => {
                SpaceNeed::Never
            }
        }
    }
}
