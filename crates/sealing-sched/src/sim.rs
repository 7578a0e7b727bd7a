//! A discrete-event simulator around the scheduler: virtual time, task durations from a
//! function, effects carried out as a daemon would. Used by the scenario tests, the property
//! test and the benchmark. Deterministic: same inputs, same timeline.

use crate::{Effect, Event, Scheduler, TaskRequest};
use sealing_types::{SchedId, WorkerId};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// Durations (milliseconds of virtual time) of a task's preparation and work.
/// `u64::MAX` means "until the test finishes it by hand".
pub type DurationFn = Box<dyn Fn(&TaskRequest, WorkerId) -> (u64, u64)>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Pending {
    Prepared(SchedId, WorkerId),
    Done(SchedId, WorkerId),
}

/// What happened, in order, with its virtual time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub at: u64,
    pub effect: Effect,
}

pub struct Sim {
    pub sched: Scheduler,
    pub now: u64,
    durations: DurationFn,
    pending: BinaryHeap<Reverse<(u64, u64, Pending)>>,
    seq: u64,
    pub log: Vec<Record>,
    /// Tasks started and not yet done, with the worker and start time.
    pub running: HashMap<SchedId, (WorkerId, u64)>,
    /// Every request ever pushed.
    pub requests: HashMap<SchedId, TaskRequest>,
    /// Every start, with its end once known.
    pub history: Vec<Interval>,
}

impl Sim {
    pub fn new(sched: Scheduler, durations: DurationFn) -> Self {
        Sim {
            sched,
            now: 0,
            durations,
            pending: BinaryHeap::new(),
            seq: 0,
            log: Vec::new(),
            running: HashMap::new(),
            requests: HashMap::new(),
            history: Vec::new(),
        }
    }

    /// Feed one event to the scheduler and carry out its effects.
    pub fn apply(&mut self, ev: Event) -> Vec<Effect> {
        if let Event::Push(req) = &ev {
            self.requests.insert(req.id, req.clone());
        }
        if let Event::Done { task, .. } = ev {
            self.end(task);
        }
        let effects = self.sched.handle(ev);
        self.carry_out(&effects);
        effects
    }

    fn carry_out(&mut self, effects: &[Effect]) {
        for e in effects {
            self.log.push(Record { at: self.now, effect: e.clone() });
            match *e {
                Effect::Prepare { task, worker } => {
                    let req = self.sched.task_request(task).expect("task");
                    let (prep, _) = (self.durations)(req, worker);
                    self.at(prep, Pending::Prepared(task, worker));
                }
                Effect::Start { task, worker } => {
                    let req = self.sched.task_request(task).expect("task");
                    let (_, work) = (self.durations)(req, worker);
                    let prev = self.running.insert(task, (worker, self.now));
                    assert!(prev.is_none(), "task {task} started twice at once");
                    self.history.push(Interval { task, worker, start: self.now, end: None });
                    self.at(work, Pending::Done(task, worker));
                }
                Effect::Requeued { task, .. } => {
                    if self.running.remove(&task).is_some() {
                        self.end(task);
                    }
                }
                Effect::Cancelled { .. } | Effect::Rejected { .. } => {}
            }
        }
    }

    fn end(&mut self, task: SchedId) {
        if let Some(iv) = self.history.iter_mut().rev().find(|iv| iv.task == task && iv.end.is_none()) {
            iv.end = Some(self.now);
        }
    }

    fn at(&mut self, after: u64, p: Pending) {
        if after == u64::MAX {
            return;
        }
        self.seq += 1;
        self.pending.push(Reverse((self.now.saturating_add(after), self.seq, p)));
    }

    /// Finish a running task by hand (for tasks with an unbounded duration).
    pub fn finish(&mut self, task: SchedId) -> Vec<Effect> {
        let (worker, _) = self.running.remove(&task).expect("task is running");
        self.apply(Event::Done { task, worker })
    }

    /// Advance to the next timed event and apply it. Returns the finished task's request when
    /// that event completed a task, `None` when nothing is pending.
    pub fn step(&mut self) -> Option<Option<(TaskRequest, WorkerId)>> {
        let Reverse((at, _, p)) = self.pending.pop()?;
        self.now = at;
        Some(match p {
            Pending::Prepared(task, worker) => {
                self.apply(Event::Prepared { task, worker });
                None
            }
            Pending::Done(task, worker) => {
                // A task requeued meanwhile is no longer running there: the report is stale.
                if self.running.get(&task).map(|r| r.0) != Some(worker) {
                    return Some(None);
                }
                self.running.remove(&task);
                let req = self.sched.task_request(task).cloned();
                self.apply(Event::Done { task, worker });
                req.map(|r| (r, worker))
            }
        })
    }

    /// Run until nothing is pending.
    pub fn run(&mut self) {
        while self.step().is_some() {}
    }

    /// Start times of a task, in order.
    pub fn starts_of(&self, task: SchedId) -> Vec<(u64, WorkerId)> {
        self.log
            .iter()
            .filter_map(|r| match r.effect {
                Effect::Start { task: t, worker } if t == task => Some((r.at, worker)),
                _ => None,
            })
            .collect()
    }

    /// The most tasks running at once on `worker` over the whole run, counting the tasks for
    /// which `filter` holds.
    pub fn max_concurrent(&self, worker: WorkerId, filter: impl Fn(&TaskRequest) -> bool) -> usize {
        let mut edges: Vec<(u64, i64)> = Vec::new();
        for iv in self.history.iter().filter(|iv| iv.worker == worker && filter(&self.requests[&iv.task])) {
            edges.push((iv.start, 1));
            edges.push((iv.end.unwrap_or(u64::MAX), -1));
        }
        edges.sort(); // at one instant an end (-1) sorts before a start (+1)
        let (mut cur, mut best) = (0i64, 0i64);
        for (_, d) in edges {
            cur += d;
            best = best.max(cur);
        }
        best as usize
    }
}

/// One run of a task on a worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interval {
    pub task: SchedId,
    pub worker: WorkerId,
    pub start: u64,
    /// `None` while running.
    pub end: Option<u64>,
}
