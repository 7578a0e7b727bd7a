//! The core alone: sequences of inputs, no runtime, no clock. Every step checks the core's
//! invariants.

use super::*;
use sealing_exec::TaskCall;
use sealing_sched::{Assigner, Config, Selector, WorkerSpec};
use sealing_types::resources::default_table;
use sealing_types::{FileTypes, PathType, RegisteredSealProof, SectorRef, TaskType, WorkerInfo, WorkerResources};
use serde_json::json;
use uuid::Uuid;

const GIB: u64 = 1 << 30;
const T0: SystemTime = SystemTime::UNIX_EPOCH;

/// The replies are numbers: a delivered task says which it was.
type Core = Jobs<u32>;

fn core() -> Core {
    Jobs::new(Scheduler::new(Config { assigner: Assigner::Utilization }))
}

fn wid(n: u128) -> WorkerId {
    WorkerId(Uuid::from_u128(n))
}

fn sector(n: u64) -> SectorRef {
    SectorRef { id: SectorId { miner: 1000, number: n }, proof_type: RegisteredSealProof::STACKED_DRG_2KIB_V1_1 }
}

/// A worker with one core and 64 GiB: one 2KiB AddPiece (or its fetch) at a time. The
/// manager's tests use it too.
pub(crate) fn one_core_worker(hostname: &str) -> WorkerInfo {
    WorkerInfo {
        hostname: hostname.into(),
        ignore_resources: false,
        resources: WorkerResources {
            mem_physical: 64 * GIB,
            mem_used: 0,
            mem_swap: 0,
            mem_swap_used: 0,
            cpus: 1,
            gpus: vec![],
            resources: default_table().clone(),
        },
        mock_proofs: false,
    }
}

/// A one-core AddPiece worker joins.
fn worker_added(n: u128) -> Input<u32> {
    let spec = WorkerSpec {
        info: one_core_worker(&format!("w{n}")),
        task_types: [TaskType::AddPiece, TaskType::Fetch].into(),
        seal_space: 1 << 40,
        store_space: 1 << 40,
    };
    Input::Sched(Event::WorkerAdded { id: wid(n), spec })
}

fn submit(n: u64, fetch: bool, adopt: Option<CallId>) -> (SchedId, Input<u32>) {
    let id = SchedId(Uuid::from_u128(n as u128 + 1_000));
    let req = TaskRequest {
        id,
        sector: sector(n),
        task: TaskType::AddPiece,
        priority: 0,
        selector: Selector::Task,
        prepare: fetch.then_some(TaskType::Fetch),
    };
    let input = Input::Submit {
        id,
        req,
        prepare: fetch.then(|| {
            TaskCall::Fetch((sector(n), FileTypes::default(), PathType::Sealing, lotus_api::wire::AcquireMode::Move))
        }),
        work: TaskCall::AddPiece((sector(n), vec![], 2032, lotus_api::wire::Data::Null(2032))),
        work_id: format!("AP({n})"),
        adopt,
        reply: n as u32,
    };
    (id, input)
}

fn call(n: u64) -> CallId {
    CallId { sector: sector(n).id, id: Uuid::new_v4() }
}

/// Feed one input; the invariants must hold after it.
fn feed(c: &mut Core, input: Input<u32>) -> (Vec<Output<u32>>, Option<Fate>) {
    let r = c.handle(input, T0);
    c.check_invariants().unwrap();
    r
}

/// The starts an output list asks for: (job, placement, worker, phase).
fn starts(out: &[Output<u32>]) -> Vec<(SchedId, u64, WorkerId, Phase)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Start { id, placement, worker, phase, .. } => Some((*id, *placement, *worker, *phase)),
            _ => None,
        })
        .collect()
}

/// The deliveries: (reply, worker, result).
fn delivered(out: &[Output<u32>]) -> Vec<(u32, Option<WorkerId>, CallResult)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Deliver { reply, worker, result, .. } => Some((*reply, *worker, result.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_start_that_returns_after_its_task_was_requeued_is_ignored_and_the_new_placement_completes() {
    let mut c = core();
    feed(&mut c, worker_added(1));
    let (id, sub) = submit(1, false, None);
    let (out, _) = feed(&mut c, sub);
    let [(_, first, w, Phase::Work)] = starts(&out)[..] else { panic!("one start: {:?}", starts(&out)) };
    assert_eq!(w, wid(1));

    let (out, _) = feed(&mut c, Input::Sched(Event::WorkerRemoved(wid(1))));
    assert!(out.iter().any(|o| matches!(o, Output::Requeued { id: r, .. } if *r == id)));
    assert!(delivered(&out).is_empty(), "requeued, not failed");
    let (out, _) = feed(&mut c, worker_added(2));
    let [(_, second, w, Phase::Work)] = starts(&out)[..] else { panic!("started again: {:?}", starts(&out)) };
    assert_eq!(w, wid(2));

    // The old placement's start and result come back late: nothing happens.
    let old = call(1);
    let (out, _) = feed(&mut c, Input::Started { id, placement: first, result: Ok(old) });
    assert!(out.is_empty(), "a stale start changes nothing");
    let (out, fate) = feed(&mut c, Input::Returned { call: old, result: Ok(json!("stale")) });
    assert!(out.is_empty());
    assert_eq!(fate, Some(Fate::Early), "held only while the new start is in flight");

    let new = call(1);
    let (out, _) = feed(&mut c, Input::Started { id, placement: second, result: Ok(new) });
    assert!(
        matches!(&out[..], [Output::Record(Record::Running { call, worker, .. })] if *call == new && *worker == wid(2))
    );
    assert_eq!(c.early_len(), 0, "the stale result went with the sector's last start");
    let (out, fate) = feed(&mut c, Input::Returned { call: new, result: Ok(json!("fresh")) });
    assert_eq!(fate, Some(Fate::Taken));
    assert_eq!(delivered(&out), vec![(1, Some(wid(2)), Ok(json!("fresh")))]);
    assert!(c.is_empty());
    assert_eq!(c.sched.tasks().count(), 0, "the worker's resources are free");
}

#[test]
fn results_before_the_start_returns_are_bounded_per_sector_and_the_live_one_is_taken() {
    let mut c = core();
    feed(&mut c, worker_added(1));
    let (id, sub) = submit(7, false, None);
    let (out, _) = feed(&mut c, sub);
    let [(_, placement, _, _)] = starts(&out)[..] else { panic!() };
    assert_eq!(feed(&mut c, Input::Returned { call: call(8), result: Ok(json!(0)) }).1, Some(Fate::Dropped));

    let live = call(7);
    feed(&mut c, Input::Returned { call: live, result: Ok(json!("live")) });
    for _ in 0..EARLY_PER_SECTOR - 1 {
        assert_eq!(feed(&mut c, Input::Returned { call: call(7), result: Ok(json!(1)) }).1, Some(Fate::Early));
    }
    assert_eq!(c.early_len(), EARLY_PER_SECTOR);
    let (out, _) = feed(&mut c, Input::Started { id, placement, result: Ok(live) });
    assert_eq!(delivered(&out), vec![(7, Some(wid(1)), Ok(json!("live")))]);
    assert!(out.iter().any(|o| matches!(o, Output::Record(Record::Returned { call, .. }) if *call == live)));
    assert_eq!(c.early_len(), 0);

    // A flood while a start is in flight keeps the newest EARLY_PER_SECTOR only.
    let (id, sub) = submit(9, false, None);
    let (out, _) = feed(&mut c, sub);
    let [(_, placement, _, _)] = starts(&out)[..] else { panic!() };
    for _ in 0..1000 {
        feed(&mut c, Input::Returned { call: call(9), result: Ok(json!(1)) });
    }
    assert_eq!(c.early_len(), EARLY_PER_SECTOR);
    feed(&mut c, Input::Started { id, placement, result: Err(CallError::unknown("refused")) });
    assert_eq!(c.early_len(), 0);
}

#[test]
fn a_failed_fetch_fails_the_task_and_frees_the_worker() {
    let mut c = core();
    feed(&mut c, worker_added(1));
    let (id, sub) = submit(1, true, None);
    let (out, _) = feed(&mut c, sub);
    let [(_, placement, _, Phase::Prepare)] = starts(&out)[..] else { panic!("{:?}", starts(&out)) };
    let fetch = call(1);
    feed(&mut c, Input::Started { id, placement, result: Ok(fetch) });
    let (out, _) = feed(&mut c, Input::Returned { call: fetch, result: Err(CallError::unknown("disk gone")) });
    let d = delivered(&out);
    assert!(matches!(&d[..], [(1, _, Err(e))] if e.message == "preparing (fetch): disk gone"), "{d:?}");
    assert!(c.is_empty());
    assert_eq!(c.sched.tasks().count(), 0);
}

#[test]
fn a_fetch_that_succeeds_leads_to_the_work_on_the_same_worker() {
    let mut c = core();
    feed(&mut c, worker_added(1));
    feed(&mut c, worker_added(2));
    let (id, sub) = submit(1, true, None);
    let (out, _) = feed(&mut c, sub);
    let [(_, placement, w, Phase::Prepare)] = starts(&out)[..] else { panic!() };
    let fetch = call(1);
    feed(&mut c, Input::Started { id, placement, result: Ok(fetch) });
    let (out, _) = feed(&mut c, Input::Returned { call: fetch, result: Ok(json!(null)) });
    let [(_, _, w2, Phase::Work)] = starts(&out)[..] else { panic!("{:?}", starts(&out)) };
    assert_eq!(w, w2, "the work runs where its files were fetched");
    assert!(c.job(id).unwrap().started.is_some());
}

#[test]
fn an_adopted_call_is_delivered_when_its_result_comes_and_scheduled_when_given_up() {
    let mut c = core();
    feed(&mut c, worker_added(1));
    let before = call(1);
    let (_, sub) = submit(1, false, Some(before));
    let (out, _) = feed(&mut c, sub);
    assert!(out.is_empty(), "an adopted call is not scheduled");
    let (out, _) = feed(&mut c, Input::Returned { call: before, result: Ok(json!("once")) });
    assert_eq!(delivered(&out), vec![(1, None, Ok(json!("once")))]);
    assert!(c.is_empty());

    let lost = call(2);
    let (_, sub) = submit(2, false, Some(lost));
    feed(&mut c, sub);
    let (out, _) = feed(&mut c, Input::Unadopt { call: lost });
    assert!(out.iter().any(|o| matches!(o, Output::Record(Record::Forget { work_id }) if work_id == "AP(2)")));
    assert_eq!(starts(&out).len(), 1, "given up: the work is scheduled");
    assert_eq!(feed(&mut c, Input::Returned { call: lost, result: Ok(json!(1)) }).1, Some(Fate::Early));
}

#[test]
fn a_cancelled_request_is_answered_and_an_id_submitted_twice_is_refused() {
    let mut c = core();
    let (id, sub) = submit(1, false, None);
    feed(&mut c, sub); // no worker: it stays queued
    let (_, again) = submit(1, false, None);
    let (out, _) = feed(&mut c, again);
    assert!(matches!(&delivered(&out)[..], [(1, None, Err(e))] if e.message.contains("already scheduled")));
    let (out, _) = feed(&mut c, Input::Sched(Event::Cancel(id)));
    assert!(matches!(&delivered(&out)[..], [(1, None, Err(e))] if e.message.contains("sealing abort --sched")));
    assert!(c.is_empty());
}

/// Random interleavings of submissions, starts, results (current, late and unknown), worker
/// loss and return: every task is delivered exactly once, with the result of its current
/// placement, and the invariants hold after every step.
#[test]
fn random_interleavings_deliver_every_task_once() {
    for seed in 1..=40u64 {
        let mut rng = seed;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut c = core();
        for w in 1..=3 {
            feed(&mut c, worker_added(w));
        }
        let mut pending_starts: Vec<(SchedId, u64, u64)> = vec![]; // (job, placement, sector)
        let mut running: Vec<(CallId, u64)> = vec![]; // (call, sector)
        let mut done: std::collections::HashMap<u32, usize> = Default::default();
        let mut submitted = 0u64;
        let collect = |out: Vec<Output<u32>>,
                       ps: &mut Vec<(SchedId, u64, u64)>,
                       done: &mut std::collections::HashMap<u32, usize>| {
            for o in out {
                match o {
                    Output::Start { id, placement, call, .. } => ps.push((id, placement, call.sector().id.number)),
                    Output::Deliver { reply, .. } => *done.entry(reply).or_default() += 1,
                    _ => {}
                }
            }
        };
        for _ in 0..400 {
            let out = match next(6) {
                0 if submitted < 30 => {
                    submitted += 1;
                    feed(&mut c, submit(submitted, next(2) == 0, None).1).0
                }
                1 if !pending_starts.is_empty() => {
                    let (id, placement, s) = pending_starts.remove(next(pending_starts.len() as u64) as usize);
                    let cid = call(s);
                    running.push((cid, s));
                    feed(&mut c, Input::Started { id, placement, result: Ok(cid) }).0
                }
                2 | 3 if !running.is_empty() => {
                    let (cid, _) = running.remove(next(running.len() as u64) as usize);
                    feed(&mut c, Input::Returned { call: cid, result: Ok(json!(null)) }).0
                }
                4 => {
                    let w = 1 + next(3) as u128;
                    let mut out = feed(&mut c, Input::Sched(Event::WorkerRemoved(wid(w)))).0;
                    out.extend(feed(&mut c, worker_added(w)).0);
                    out
                }
                _ => feed(&mut c, Input::Returned { call: call(1 + next(30)), result: Ok(json!("junk")) }).0,
            };
            collect(out, &mut pending_starts, &mut done);
        }
        // Drain: start and answer everything still asked for.
        for _ in 0..10_000 {
            if let Some((id, placement, s)) = pending_starts.pop() {
                let cid = call(s);
                running.push((cid, s));
                let out = feed(&mut c, Input::Started { id, placement, result: Ok(cid) }).0;
                collect(out, &mut pending_starts, &mut done);
            } else if let Some((cid, _)) = running.pop() {
                let out = feed(&mut c, Input::Returned { call: cid, result: Ok(json!(null)) }).0;
                collect(out, &mut pending_starts, &mut done);
            } else {
                break;
            }
        }
        assert!(c.is_empty(), "seed {seed}: {} tasks never delivered", c.len());
        assert_eq!(done.len() as u64, submitted, "seed {seed}");
        assert!(done.values().all(|&n| n == 1), "seed {seed}: a task delivered twice: {done:?}");
    }
}
