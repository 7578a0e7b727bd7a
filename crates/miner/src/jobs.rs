//! The manager's core: every scheduled task from push to result, as one record with an
//! explicit state, and the scheduler it feeds. Pure: it is driven by [`Input`]s and answers
//! with [`Output`]s for the shell (`manager.rs`) to carry out, with no I/O, no clock, no
//! locks and no async, so the races of a cluster (a late answer from a worker that lost its
//! task, a result that arrives before its call's ID, a requeue while a start is in flight)
//! are tested here as plain sequences of events.
//!
//! A job's life:
//!
//! ```text
//! Submit ──► Scheduled ──(sched: Prepare)──► Starting(Prepare) ──► Running(Prepare) ──┐
//!   │            ▲  ▲                                                                  │ Prepared
//!   │            │  └─────────────────────────────────────────────────────────────────┘
//!   │            │ Requeued (worker disabled or gone: a new placement)
//!   │            └──(sched: Start)──► Starting(Work) ──► Running(Work) ──Returned──► delivered
//!   └─(a call tracked before a restart)──► Adopted ──Returned──► delivered
//!                                             └──Unadopt (nobody has it)──► Scheduled
//! ```
//!
//! Each placement gets a number; what comes back for an older placement (a start that
//! returns after its task was requeued, the `Return*` of a worker that lost the task) is
//! ignored, so a task never completes twice.

use lotus_api::types::CallError;
use sealing_exec::TaskCall;
use sealing_sched::{Effect, Event, Scheduler, TaskRequest};
use sealing_types::{CallId, SchedId, SectorId, WorkerId};
use std::collections::{HashMap, VecDeque};
use std::time::SystemTime;

/// What a `Return*` carries.
pub type CallResult = Result<serde_json::Value, CallError>;

/// At most this many results per sector wait for a start still in flight.
pub const EARLY_PER_SECTOR: usize = 16;

/// Which of a task's two calls is on the worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The preparation step (a `Fetch` of the sector's files to the chosen worker).
    Prepare,
    /// The task's work.
    Work,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    /// In the scheduler: queued, in a worker's window, or placed and waiting for its turn.
    Scheduled,
    /// A call is being started on `worker`; its ID is not known yet.
    Starting { phase: Phase, worker: WorkerId, placement: u64 },
    /// The worker accepted the call; its `Return*` is awaited.
    Running { phase: Phase, worker: WorkerId, call: CallId, placement: u64 },
    /// A call tracked as running before the miner restarted: its result is awaited, nothing is
    /// scheduled unless nobody has it any more ([`Input::Unadopt`]).
    Adopted { call: CallId },
}

/// One scheduled task: the manager's only record of it.
pub struct Job<R> {
    pub req: TaskRequest,
    pub prepare: Option<TaskCall>,
    pub work: TaskCall,
    /// The ID under which the work is tracked in the database (`calls.rs`).
    pub work_id: String,
    pub state: JobState,
    /// When the work call was started (`sealing jobs`).
    pub started: Option<SystemTime>,
    /// When it was pushed (the queue wait's start).
    pub submitted: SystemTime,
    /// The number of the job's current placement.
    placement: u64,
    reply: R,
}

/// What the core reacts to.
// An input is handled as soon as it is made, never stored in bulk: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Input<R> {
    /// A new task. With `adopt`, the work was running before a restart as that call: wait for
    /// it first.
    Submit {
        id: SchedId,
        req: TaskRequest,
        prepare: Option<TaskCall>,
        work: TaskCall,
        work_id: String,
        adopt: Option<CallId>,
        reply: R,
    },
    /// Workers and storage, straight to the scheduler.
    Sched(Event),
    /// A batch of scheduler events (storage changes touching several workers).
    SchedBatch(Vec<Event>),
    /// The start of a call came back: its ID, or why the worker did not take it.
    Started { id: SchedId, placement: u64, result: Result<CallId, CallError> },
    /// A `Return*` (or the operator's abort, as an error).
    Returned { call: CallId, result: CallResult },
    /// No connected worker runs an adopted call or holds its result: schedule its work anew.
    Unadopt { call: CallId },
}

/// A change to the work tracker, written by the shell after the lock (in this order).
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// The worker accepted the work as `call`.
    Running { work_id: String, call: CallId, worker: WorkerId },
    /// The call's result came (held early, now consumed).
    Returned { call: CallId, result: CallResult },
    /// The adopted call is given up.
    Forget { work_id: String },
}

/// What the shell must do.
#[allow(clippy::large_enum_variant)] // carried out at once, like an input
pub enum Output<R> {
    /// Start `call` on `worker`, and answer with [`Input::Started`] for `(id, placement)`.
    Start {
        id: SchedId,
        placement: u64,
        worker: WorkerId,
        phase: Phase,
        call: TaskCall,
    },
    /// The task is over: answer whoever submitted it. `worker` ran it (none for an adopted call).
    Deliver {
        reply: R,
        worker: Option<WorkerId>,
        call: Option<CallId>,
        result: CallResult,
        task: sealing_types::TaskType,
        /// When its work call started (none: it never started, or was adopted).
        started: Option<SystemTime>,
    },
    Record(Record),
    /// The scheduler moved a task back to the queue (for the log).
    Requeued {
        id: SchedId,
        from: WorkerId,
    },
}

/// What became of a `Return*` (for the log and the tests).
#[derive(Debug, PartialEq, Eq)]
pub enum Fate {
    /// A job took it.
    Taken,
    /// Held for a start still in flight on its sector.
    Early,
    /// Late (its task was requeued and runs elsewhere) or unknown: dropped.
    Dropped,
}

pub struct Jobs<R> {
    pub sched: Scheduler,
    jobs: HashMap<SchedId, Job<R>>,
    /// Running and adopted calls.
    by_call: HashMap<CallId, SchedId>,
    /// Per sector, how many jobs are starting a call, and the results that came first.
    starting: HashMap<SectorId, (usize, VecDeque<(CallId, CallResult)>)>,
    next_placement: u64,
}

impl<R> Jobs<R> {
    pub fn new(sched: Scheduler) -> Self {
        Jobs { sched, jobs: HashMap::new(), by_call: HashMap::new(), starting: HashMap::new(), next_placement: 1 }
    }

    pub fn job(&self, id: SchedId) -> Option<&Job<R>> {
        self.jobs.get(&id)
    }

    /// The job a running or adopted call belongs to.
    pub fn job_of_call(&self, call: CallId) -> Option<&Job<R>> {
        self.jobs.get(self.by_call.get(&call)?)
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// The workers a call of `sector` is being started on: a result that comes before its
    /// start is answered is held for one of them.
    pub fn starting_on(&self, sector: SectorId) -> Vec<WorkerId> {
        if !self.starting.contains_key(&sector) {
            return vec![];
        }
        self.jobs
            .values()
            .filter(|j| j.req.sector.id == sector)
            .filter_map(|j| match j.state {
                JobState::Starting { worker, .. } => Some(worker),
                _ => None,
            })
            .collect()
    }

    /// Results held for starts in flight (bounded by `EARLY_PER_SECTOR` per sector).
    pub fn early_len(&self) -> usize {
        self.starting.values().map(|(_, q)| q.len()).sum()
    }

    pub fn handle(&mut self, input: Input<R>, now: SystemTime) -> (Vec<Output<R>>, Option<Fate>) {
        let mut out = vec![];
        let mut fate = None;
        match input {
            Input::Submit { id, req, prepare, work, work_id, adopt, reply } => {
                let state = match adopt {
                    Some(call) => JobState::Adopted { call },
                    None => JobState::Scheduled,
                };
                let job = Job {
                    req: req.clone(),
                    prepare,
                    work,
                    work_id,
                    state,
                    started: None,
                    submitted: now,
                    placement: 0,
                    reply,
                };
                if self.jobs.contains_key(&id) {
                    out.push(Output::Deliver {
                        reply: job.reply,
                        worker: None,
                        call: None,
                        result: Err(CallError::unknown(format!("request {id} is already scheduled"))),
                        task: job.req.task,
                        started: None,
                    });
                    return (out, None);
                }
                self.jobs.insert(id, job);
                match adopt {
                    Some(call) => {
                        self.by_call.insert(call, id);
                    }
                    None => self.sched_event(Event::Push(req), now, &mut out),
                }
            }
            Input::Sched(ev) => {
                let removed = match &ev {
                    Event::WorkerRemoved(w) => Some(*w),
                    _ => None,
                };
                self.sched_event(ev, now, &mut out);
                if let Some(w) = removed {
                    self.fail_left_on(w, &mut out);
                }
            }
            Input::SchedBatch(evs) => {
                let fx = self.sched.handle_batch(evs);
                self.effects(fx, now, &mut out);
            }
            Input::Started { id, placement, result } => self.started(id, placement, result, now, &mut out),
            Input::Returned { call, result } => fate = Some(self.returned(call, result, now, &mut out)),
            Input::Unadopt { call } => {
                if let Some(id) = self.by_call.get(&call).copied() {
                    if let Some(job) = self.jobs.get_mut(&id).filter(|j| j.state == JobState::Adopted { call }) {
                        self.by_call.remove(&call);
                        job.state = JobState::Scheduled;
                        out.push(Output::Record(Record::Forget { work_id: job.work_id.clone() }));
                        let req = job.req.clone();
                        self.sched_event(Event::Push(req), now, &mut out);
                    }
                }
            }
        }
        (out, fate)
    }

    fn sched_event(&mut self, ev: Event, now: SystemTime, out: &mut Vec<Output<R>>) {
        let fx = self.sched.handle(ev);
        self.effects(fx, now, out);
    }

    /// Carry the scheduler's effects into the job table, and the scheduler's answers to them
    /// back (a task with nothing to prepare is prepared at once).
    fn effects(&mut self, fx: Vec<Effect>, now: SystemTime, out: &mut Vec<Output<R>>) {
        for e in fx {
            match e {
                Effect::Prepare { task, worker } => {
                    let Some(job) = self.jobs.get(&task) else { continue };
                    match job.prepare.clone() {
                        Some(call) => self.start(task, worker, Phase::Prepare, call, out),
                        None => self.sched_event(Event::Prepared { task, worker }, now, out),
                    }
                }
                Effect::Start { task, worker } => {
                    let Some(job) = self.jobs.get_mut(&task) else { continue };
                    job.started = Some(now);
                    let call = job.work.clone();
                    self.start(task, worker, Phase::Work, call, out);
                }
                Effect::Requeued { task, from } => {
                    self.unplace(task);
                    out.push(Output::Requeued { id: task, from });
                }
                Effect::Cancelled { task } => self.finish(
                    task,
                    None,
                    Err(CallError::unknown("the request was removed (sealing abort --sched)")),
                    out,
                ),
                Effect::Rejected { task, reason } => self.finish(
                    task,
                    None,
                    Err(CallError::unknown(format!("the scheduler refused the request: {reason}"))),
                    out,
                ),
            }
        }
    }

    fn start(&mut self, id: SchedId, worker: WorkerId, phase: Phase, call: TaskCall, out: &mut Vec<Output<R>>) {
        let placement = self.next_placement;
        self.next_placement += 1;
        let Some(job) = self.jobs.get_mut(&id) else { return };
        job.placement = placement;
        self.set_state(id, JobState::Starting { phase, worker, placement });
        out.push(Output::Start { id, placement, worker, phase, call });
    }

    /// Move a job to `state`, keeping the per-sector count of starts in flight (and with it
    /// the early results' lifetime) and the call index right.
    fn set_state(&mut self, id: SchedId, state: JobState) {
        let Some(job) = self.jobs.get_mut(&id) else { return };
        let sector = job.req.sector.id;
        let old = std::mem::replace(&mut job.state, state);
        match old {
            JobState::Starting { .. } => {
                if let Some((n, _)) = self.starting.get_mut(&sector) {
                    *n -= 1;
                    if *n == 0 {
                        self.starting.remove(&sector);
                    }
                }
            }
            JobState::Running { call, .. } | JobState::Adopted { call } => {
                self.by_call.remove(&call);
            }
            JobState::Scheduled => {}
        }
        match state {
            JobState::Starting { .. } => self.starting.entry(sector).or_default().0 += 1,
            JobState::Running { call, .. } | JobState::Adopted { call } => {
                self.by_call.insert(call, id);
            }
            JobState::Scheduled => {}
        }
    }

    /// The task is back in the queue: whatever its old placement answers no longer counts.
    fn unplace(&mut self, id: SchedId) {
        if let Some(job) = self.jobs.get_mut(&id) {
            job.started = None;
            job.placement = 0;
            self.set_state(id, JobState::Scheduled);
        }
    }

    /// Remove the job and answer its submitter.
    fn finish(&mut self, id: SchedId, worker: Option<WorkerId>, result: CallResult, out: &mut Vec<Output<R>>) {
        let call = match self.jobs.get(&id).map(|j| j.state) {
            Some(JobState::Running { call, .. } | JobState::Adopted { call }) => Some(call),
            Some(_) => None,
            None => return,
        };
        self.set_state(id, JobState::Scheduled);
        let job = self.jobs.remove(&id).expect("checked above");
        out.push(Output::Deliver { reply: job.reply, worker, call, result, task: job.req.task, started: job.started });
    }

    fn started(
        &mut self,
        id: SchedId,
        placement: u64,
        result: Result<CallId, CallError>,
        now: SystemTime,
        out: &mut Vec<Output<R>>,
    ) {
        let Some(job) = self.jobs.get(&id) else { return };
        let JobState::Starting { phase, worker, placement: p } = job.state else { return };
        if p != placement {
            return; // an older placement's start: the task was requeued meanwhile
        }
        let sector = job.req.sector.id;
        let early = match &result {
            Ok(call) => self.starting.get_mut(&sector).and_then(|(_, q)| {
                let i = q.iter().position(|(c, _)| c == call)?;
                q.remove(i).map(|(_, r)| r)
            }),
            Err(_) => None,
        };
        match result {
            Err(e) => {
                self.set_state(id, JobState::Scheduled);
                self.call_failed(id, phase, worker, e, now, out);
            }
            Ok(call) => {
                let work_id = job.work_id.clone();
                self.set_state(id, JobState::Running { phase, worker, call, placement });
                if phase == Phase::Work {
                    out.push(Output::Record(Record::Running { work_id, call, worker }));
                }
                if let Some(r) = early {
                    out.push(Output::Record(Record::Returned { call, result: r.clone() }));
                    self.returned(call, r, now, out);
                }
            }
        }
    }

    /// A call of the job failed: a failed preparation drops the task (its sector retries), a
    /// failed work call frees the worker's resources.
    fn call_failed(
        &mut self,
        id: SchedId,
        phase: Phase,
        worker: WorkerId,
        e: CallError,
        now: SystemTime,
        out: &mut Vec<Output<R>>,
    ) {
        match phase {
            Phase::Prepare => {
                self.sched_event(Event::PrepareFailed { task: id, worker }, now, out);
                let e = CallError::new(e.code, format!("preparing (fetch): {}", e.message));
                self.finish(id, Some(worker), Err(e), out);
            }
            Phase::Work => {
                self.finish(id, Some(worker), Err(e), out);
                self.sched_event(Event::Done { task: id, worker }, now, out);
            }
        }
    }

    fn returned(&mut self, call: CallId, result: CallResult, now: SystemTime, out: &mut Vec<Output<R>>) -> Fate {
        let Some(id) = self.by_call.get(&call).copied() else {
            let Some((_, q)) = self.starting.get_mut(&call.sector) else { return Fate::Dropped };
            q.push_back((call, result));
            if q.len() > EARLY_PER_SECTOR {
                q.pop_front();
            }
            return Fate::Early;
        };
        match self.jobs.get(&id).map(|j| j.state) {
            Some(JobState::Adopted { .. }) => self.finish(id, None, result, out),
            Some(JobState::Running { phase: Phase::Prepare, worker, .. }) => match result {
                Ok(_) => {
                    self.set_state(id, JobState::Scheduled);
                    self.sched_event(Event::Prepared { task: id, worker }, now, out);
                }
                Err(e) => {
                    self.set_state(id, JobState::Scheduled);
                    self.call_failed(id, Phase::Prepare, worker, e, now, out);
                }
            },
            Some(JobState::Running { phase: Phase::Work, worker, .. }) => {
                self.finish(id, Some(worker), result, out);
                self.sched_event(Event::Done { task: id, worker }, now, out);
            }
            _ => return Fate::Dropped,
        }
        Fate::Taken
    }

    /// After the scheduler requeued what a removed worker held, a job still on it (none
    /// should be) fails as "worker gone" rather than wait forever.
    fn fail_left_on(&mut self, worker: WorkerId, out: &mut Vec<Output<R>>) {
        let left: Vec<SchedId> = self
            .jobs
            .iter()
            .filter(|(_, j)| {
                matches!(j.state, JobState::Starting { worker: w, .. } | JobState::Running { worker: w, .. } if w == worker)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in left {
            let e = CallError::new(CallError::TEMP_WORKER_RESTART, format!("worker {worker} is gone"));
            self.finish(id, Some(worker), Err(e), out);
        }
    }

    /// The checks a test runs after every step: the call index and the start counts agree with
    /// the jobs' states, and the scheduler's own invariants hold.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (call, id) in &self.by_call {
            match self.jobs.get(id).map(|j| j.state) {
                Some(JobState::Running { call: c, .. } | JobState::Adopted { call: c }) if c == *call => {}
                other => return Err(format!("call {} indexes job {id} in state {other:?}", call.id)),
            }
        }
        let mut counts: HashMap<SectorId, usize> = HashMap::new();
        for j in self.jobs.values() {
            match j.state {
                JobState::Starting { .. } => *counts.entry(j.req.sector.id).or_default() += 1,
                JobState::Running { call, .. } | JobState::Adopted { call } if !self.by_call.contains_key(&call) => {
                    return Err(format!("call {} of a job is not indexed", call.id))
                }
                _ => {}
            }
        }
        for (sector, (n, q)) in &self.starting {
            if counts.get(sector) != Some(n) || q.len() > EARLY_PER_SECTOR {
                return Err(format!("sector {sector}: {n} starts counted, {:?} in flight", counts.get(sector)));
            }
        }
        if counts.len() != self.starting.len() {
            return Err("a sector with starts in flight is not counted".into());
        }
        self.sched.check_invariants()
    }
}

#[cfg(test)]
#[path = "jobs_tests.rs"]
pub(crate) mod tests;
