//! Property test: under random workers, tasks and events,
//! - no worker is ever oversubscribed in CPU, RAM, VMEM or GPU (active and preparing pools);
//! - the pools always equal the sum of the tasks they hold (no drift);
//! - every task is in exactly one place, never started twice at once, never lost;
//! - the scheduler's own bookkeeping agrees with itself (`check_invariants`);
//! - once the events stop and work completes, every task that some enabled worker can run has
//!   run.

mod common;

use common::*;
use proptest::prelude::*;
use sealing_sched::{Effect, Event, Pool, Scheduler, Selector, TaskRequest, TaskState};
use sealing_types::{FileType, FileTypes, PathType, SectorId, TaskType, WorkerId};
use std::collections::{HashMap, HashSet};

#[derive(Clone, Debug)]
enum Op {
    AddWorker {
        cpus: u64,
        ram_gib: u64,
        swap_gib: u64,
        gpus: usize,
        types: Vec<TaskType>,
        ignore: bool,
        seal_gib: u64,
    },
    Push {
        task: TaskType,
        big: bool,
        deal: bool,
        sel: u8,
        sector: u64,
    },
    Disable(usize),
    Enable(usize),
    Remove(usize),
    /// Finish the n-th preparing task (mod count).
    Prepared(usize),
    /// Finish the n-th running task (mod count).
    Done(usize),
    Cancel(usize),
    Files {
        sector: u64,
        worker: usize,
    },
}

const TASKS: [TaskType; 8] = [
    TaskType::AddPiece,
    TaskType::PreCommit1,
    TaskType::PreCommit2,
    TaskType::Commit1,
    TaskType::Commit2,
    TaskType::Finalize,
    TaskType::Fetch,
    TaskType::Unseal,
];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (1u64..=64, prop_oneof![Just(1u64), Just(16), Just(64), Just(256), Just(1024)], 0u64..=128, 0usize..=2,
              proptest::sample::subsequence(TASKS.to_vec(), 1..=8), proptest::bool::weighted(0.1), prop_oneof![Just(0u64), Just(1), Just(10_000)])
            .prop_map(|(cpus, ram_gib, swap_gib, gpus, types, ignore, seal_gib)| Op::AddWorker { cpus, ram_gib, swap_gib, gpus, types, ignore, seal_gib }),
        6 => (proptest::sample::select(TASKS.to_vec()), any::<bool>(), proptest::bool::weighted(0.2), 0u8..4, 0u64..20)
            .prop_map(|(task, big, deal, sel, sector)| Op::Push { task, big, deal, sel, sector }),
        1 => any::<usize>().prop_map(Op::Disable),
        1 => any::<usize>().prop_map(Op::Enable),
        1 => any::<usize>().prop_map(Op::Remove),
        4 => any::<usize>().prop_map(Op::Prepared),
        4 => any::<usize>().prop_map(Op::Done),
        1 => any::<usize>().prop_map(Op::Cancel),
        1 => (0u64..20, any::<usize>()).prop_map(|(sector, worker)| Op::Files { sector, worker }),
    ]
}

struct World {
    sched: Scheduler,
    workers: Vec<WorkerId>,
    next_worker: u128,
    next_task: u128,
    /// Task → worker, from the effects: where it was told to run and has not finished.
    running: HashMap<sealing_types::SchedId, WorkerId>,
    preparing: HashMap<sealing_types::SchedId, WorkerId>,
    live: HashSet<sealing_types::SchedId>,
    finished: HashSet<sealing_types::SchedId>,
    /// Sector number → workers holding its cache+sealed files.
    files: HashMap<u64, HashSet<WorkerId>>,
}

impl World {
    fn absorb(&mut self, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Prepare { task, worker } => {
                    assert!(self.preparing.insert(task, worker).is_none(), "prepared twice: {task}");
                }
                Effect::Start { task, worker } => {
                    assert!(!self.running.contains_key(&task), "task {task} started twice at once");
                    assert!(!self.preparing.contains_key(&task), "task {task} started before its preparation finished");
                    self.running.insert(task, worker);
                }
                Effect::Requeued { task, .. } => {
                    self.running.remove(&task);
                    self.preparing.remove(&task);
                }
                Effect::Cancelled { task } => {
                    assert!(self.live.remove(&task));
                }
                Effect::Rejected { .. } => panic!("fresh IDs are never rejected"),
            }
        }
    }

    fn nth<T: Copy + Ord>(m: impl Iterator<Item = T>, n: usize) -> Option<T> {
        let mut v: Vec<T> = m.collect();
        v.sort();
        (!v.is_empty()).then(|| v[n % v.len()])
    }

    fn apply(&mut self, op: Op) {
        let effects = match op {
            Op::AddWorker { cpus, ram_gib, swap_gib, gpus, types, ignore, seal_gib } => {
                self.next_worker += 1;
                let id = wid(self.next_worker);
                self.workers.push(id);
                let mut b = worker(&format!("w{}", self.next_worker))
                    .cpus(cpus)
                    .ram_gib(ram_gib)
                    .swap_gib(swap_gib)
                    .gpus(gpus)
                    .only(&types)
                    .seal_space(seal_gib * GIB);
                if ignore {
                    b = b.ignore_resources();
                }
                self.sched.handle(b.add(id))
            }
            Op::Push { task, big, deal, sel, sector } => {
                self.next_task += 1;
                let proof = if big { P32 } else { P2K };
                let cs = FileTypes::of(&[FileType::Cache, FileType::Sealed]);
                let mut r: TaskRequest = req(self.next_task, sector, task, proof);
                r.selector = match sel {
                    0 => Selector::Task,
                    1 => Selector::Alloc { types: cs, path: PathType::Sealing },
                    2 => Selector::Existing { types: cs, allow_fetch: true },
                    _ => Selector::Existing { types: cs, allow_fetch: false },
                };
                r.prepare = (!self.next_task.is_multiple_of(3)).then_some(TaskType::Fetch);
                if deal {
                    r.priority = 1024;
                }
                self.live.insert(r.id);
                self.sched.handle(Event::Push(r))
            }
            Op::Disable(n) => match Self::nth(self.workers.iter().copied(), n) {
                Some(w) => self.sched.handle(Event::WorkerDisabled(w)),
                None => vec![],
            },
            Op::Enable(n) => match Self::nth(self.workers.iter().copied(), n) {
                Some(w) => self.sched.handle(Event::WorkerEnabled(w)),
                None => vec![],
            },
            Op::Remove(n) => match Self::nth(self.workers.iter().copied(), n) {
                Some(w) => {
                    self.workers.retain(|x| *x != w);
                    for h in self.files.values_mut() {
                        h.remove(&w);
                    }
                    self.sched.handle(Event::WorkerRemoved(w))
                }
                None => vec![],
            },
            Op::Prepared(n) => match Self::nth(self.preparing.keys().copied(), n) {
                Some(t) => {
                    let w = self.preparing.remove(&t).unwrap();
                    self.sched.handle(Event::Prepared { task: t, worker: w })
                }
                None => vec![],
            },
            Op::Done(n) => match Self::nth(self.running.keys().copied(), n) {
                Some(t) => {
                    let w = self.running.remove(&t).unwrap();
                    self.live.remove(&t);
                    self.finished.insert(t);
                    self.sched.handle(Event::Done { task: t, worker: w })
                }
                None => vec![],
            },
            Op::Cancel(n) => match Self::nth(self.live.iter().copied(), n) {
                Some(t) => self.sched.handle(Event::Cancel(t)),
                None => vec![],
            },
            Op::Files { sector, worker } => match Self::nth(self.workers.iter().copied(), worker) {
                Some(w) => {
                    self.files.entry(sector).or_default().insert(w);
                    self.sched.handle(Event::SectorFiles {
                        sector: SectorId { miner: 1000, number: sector },
                        worker: w,
                        types: FileTypes::of(&[FileType::Cache, FileType::Sealed]),
                    })
                }
                None => vec![],
            },
        };
        self.absorb(effects);
        self.check();
    }

    fn check(&self) {
        if let Err(e) = self.sched.check_invariants() {
            panic!("scheduler bookkeeping: {e}");
        }
        // Every live task is known to the scheduler exactly once, finished ones are gone.
        let states: HashMap<_, _> = self.sched.tasks().map(|(r, s)| (r.id, (r.clone(), s))).collect();
        assert_eq!(states.len(), self.live.len(), "tasks lost or invented");
        for t in &self.live {
            assert!(states.contains_key(t), "task {t} lost");
        }
        for t in &self.finished {
            assert!(!states.contains_key(t), "finished task {t} still held");
        }
        let queued = states.values().filter(|(_, s)| *s == TaskState::Queued).count();
        assert_eq!(queued, self.sched.queued_len());
        // Effects and scheduler agree on what runs where.
        for (t, w) in &self.running {
            assert_eq!(states[t].1, TaskState::Running { worker: *w });
        }
        // Pools never oversubscribed and equal to the sum of their tasks.
        for id in &self.workers {
            let v = self.sched.worker(*id).unwrap();
            let res = &v.spec.info.resources;
            let (mut active, mut preparing) = (Pool::default(), Pool::default());
            for (r, s) in states.values() {
                let spec = res.resources.spec(r.sector.proof_type, r.task);
                let prep = res.resources.prep_spec(r.sector.proof_type, r.task, r.prepare.unwrap_or(r.task));
                match s {
                    TaskState::Running { worker } if worker == id => active.add(&spec, res),
                    TaskState::Preparing { worker } | TaskState::Prepared { worker } if worker == id => {
                        preparing.add(&prep, res)
                    }
                    _ => {}
                }
            }
            assert_eq!(v.active, active, "active pool drifted on {id}");
            assert_eq!(v.preparing, preparing, "preparing pool drifted on {id}");
            if !v.spec.info.ignore_resources {
                for (name, p) in [("active", v.active), ("preparing", v.preparing)] {
                    assert!(p.cpu_use <= res.cpus, "{name} CPU oversubscribed on {id}: {p:?}");
                    assert!(p.mem_used_min <= res.mem_physical, "{name} RAM oversubscribed on {id}");
                    assert!(p.mem_used_max <= res.mem_physical + res.mem_swap, "{name} VMEM oversubscribed on {id}");
                    if !res.gpus.is_empty() {
                        assert!(p.gpu_milli <= res.gpus.len() as u64 * 1000, "{name} GPU oversubscribed on {id}");
                    }
                }
            }
        }
    }

    /// Enable every worker and complete all work; return what is still queued.
    fn drain(&mut self) -> Vec<TaskRequest> {
        for w in self.workers.clone() {
            let e = self.sched.handle(Event::WorkerEnabled(w));
            self.absorb(e);
        }
        for _ in 0..100_000 {
            if let Some(t) = self.preparing.keys().min().copied() {
                let w = self.preparing.remove(&t).unwrap();
                assert_eq!(
                    self.sched.task_state(t),
                    Some(TaskState::Preparing { worker: w }),
                    "effects and scheduler disagree on {t}"
                );
                let e = self.sched.handle(Event::Prepared { task: t, worker: w });
                self.absorb(e);
                assert_ne!(self.sched.task_state(t), Some(TaskState::Preparing { worker: w }));
            } else if let Some(t) = self.running.keys().min().copied() {
                let w = self.running.remove(&t).unwrap();
                self.live.remove(&t);
                self.finished.insert(t);
                let e = self.sched.handle(Event::Done { task: t, worker: w });
                self.absorb(e);
            } else {
                break;
            }
            self.check();
        }
        self.sched.tasks().map(|(r, _)| r.clone()).collect()
    }
}

/// Whether some enabled worker could ever run the request (same rules as the selectors,
/// written out independently).
fn runnable_somewhere(world: &World, r: &TaskRequest) -> bool {
    let sched = &world.sched;
    let holders = world.files.get(&r.sector.id.number).cloned().unwrap_or_default();
    let capable = |id: WorkerId| {
        let v = sched.worker(id).unwrap();
        let spec = v.spec.info.resources.resources.spec(r.sector.proof_type, r.task);
        v.enabled
            && v.spec.task_types.contains(&r.task)
            && Pool::default().can_handle(&spec, &v.spec.info.resources, v.spec.info.ignore_resources).is_ok()
    };
    let capable_holder = holders.iter().any(|h| world.workers.contains(h) && capable(*h));
    let ssize = r.sector.proof_type.sector_size().0;
    sched.worker_ids().filter(|id| capable(*id)).any(|id| {
        let v = sched.worker(id).unwrap();
        match r.selector {
            Selector::Task => true,
            Selector::Alloc { types, path } => v.spec.seal_space >= types.space_use(ssize, path),
            Selector::Existing { allow_fetch, types } => {
                holders.contains(&id)
                    || (allow_fetch
                        && !capable_holder
                        && v.spec.seal_space >= types.space_use(ssize, PathType::Sealing))
            }
            Selector::Move { .. } => true,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn scheduler_invariants(ops in proptest::collection::vec(op(), 1..150)) {
        let mut world = World {
            sched: new_sched(),
            workers: vec![],
            next_worker: 0,
            next_task: 0,
            running: HashMap::new(),
            preparing: HashMap::new(),
            live: HashSet::new(),
            finished: HashSet::new(),
            files: HashMap::new(),
        };
        for o in ops {
            world.apply(o);
        }
        let left = world.drain();
        for r in &left {
            prop_assert_eq!(world.sched.task_state(r.id), Some(TaskState::Queued), "{:?} left half-done", r.id);
            prop_assert!(!runnable_somewhere(&world, r),
                "task {} ({:?}, {:?}) is runnable but was never scheduled: {:#?}", r.id, r.task, r.selector, world.sched.explain(r.id));
        }
    }
}
