//! Deterministic simulation scenarios: the guides' examples, the original's scheduler tests
//! (`sched_test.go`: `TestSched`, `TestWindowCompact`), starvation, priorities, disconnects and
//! the diagnostics.

mod common;

use common::*;
use sealing_sched::sim::Sim;
use sealing_sched::{Effect, Event, TaskState};
use sealing_types::{FileType, FileTypes, SectorId, TaskType};

/// Tasks last forever unless a test finishes them by hand; preparation is instant.
fn held_sim() -> Sim {
    Sim::new(new_sched(), Box::new(|_, _| (0, u64::MAX)))
}

fn started(effects: &[Effect]) -> Vec<u128> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Start { task, .. } => Some(task.0.as_u128()),
            _ => None,
        })
        .collect()
}

fn running_on(sim: &Sim, id: u128) -> Option<sealing_types::WorkerId> {
    match sim.sched.task_state(sid(id)) {
        Some(TaskState::Running { worker }) => Some(worker),
        _ => None,
    }
}

/// The first guide: "a single worker on a 8-core CPU with a single GPU will run at most:
/// 2 PreCommit1, 1 PreCommit2, 1 Commit, 2 Unseal" (32GiB sectors; 128 GiB RAM and 64 GiB
/// swap as the guide's flag help says).
#[test]
fn guide_example_8_core_1_gpu_worker() {
    let cases = [(TaskType::PreCommit1, 2), (TaskType::PreCommit2, 1), (TaskType::Commit2, 1), (TaskType::Unseal, 2)];
    for (task, want) in cases {
        let mut sim = Sim::new(new_sched(), Box::new(|_, _| (0, 1000)));
        let w = wid(1);
        sim.apply(
            worker("computer")
                .cpus(8)
                .gpus(1)
                .ram_gib(128)
                .swap_gib(64)
                .tasks(&[TaskType::PreCommit1, TaskType::PreCommit2, TaskType::Commit2, TaskType::Unseal])
                .add(w),
        );
        for i in 0..6 {
            sim.apply(Event::Push(req(i, i as u64, task, P32)));
        }
        sim.run();
        assert_eq!(sim.max_concurrent(w, |r| r.task == task), want, "{task}");
        assert_eq!(sim.history.len(), 6, "all six {task} ran");
    }
}

/// "If the worker process has only 1 available CPU-core ... it will only be able to run 1
/// PreCommit1 task."
#[test]
fn guide_example_one_core_pc1_worker() {
    let mut sim = Sim::new(new_sched(), Box::new(|_, _| (0, 1000)));
    let w = wid(1);
    sim.apply(worker("pc1").cpus(1).ram_gib(512).tasks(&[TaskType::PreCommit1]).add(w));
    for i in 0..4 {
        sim.apply(Event::Push(req(i, i as u64, TaskType::PreCommit1, P32)));
    }
    sim.run();
    assert_eq!(sim.max_concurrent(w, |_| true), 1);
    assert_eq!(sim.now, 4000);
}

/// A PC2 needing 92% of the cores must start under a constant flood of single-core PC1s.
#[test]
fn pc2_is_not_starved_by_a_flood_of_pc1() {
    // PC1s finish staggered, as real ones do (never all at one instant).
    let mut sim = Sim::new(
        new_sched(),
        Box::new(|r, _| {
            (10, if r.task == TaskType::PreCommit1 { 1000 + (r.sector.id.number * 37) % 400 } else { 500 })
        }),
    );
    let w = wid(1);
    sim.apply(worker("big").cpus(16).ram_gib(4096).tasks(&[TaskType::PreCommit1, TaskType::PreCommit2]).add(w));
    let mut next = 0u128;
    let mut push_pc1 = |sim: &mut Sim| {
        next += 1;
        sim.apply(Event::Push(step(next, next as u64, TaskType::PreCommit1, P32)));
    };
    for _ in 0..64 {
        push_pc1(&mut sim);
    }
    // Let the flood settle, then ask for a PC2 while PC1s keep coming.
    while sim.now < 5000 {
        if let Some(Some(_)) = sim.step() {
            push_pc1(&mut sim);
        }
    }
    let pushed_at = sim.now;
    sim.apply(Event::Push(req(1_000_000, 999_999, TaskType::PreCommit2, P32)));
    while sim.starts_of(sid(1_000_000)).is_empty() {
        assert!(sim.now < pushed_at + 20_000, "PC2 still not started after 20 PC1 durations: starved");
        if let Some(Some(_)) = sim.step() {
            push_pc1(&mut sim);
        }
    }
    let waited = sim.starts_of(sid(1_000_000))[0].0 - pushed_at;
    assert!(waited <= 4_000, "PC2 waited {waited} ms, expected at most ~3 PC1 durations");
}

#[test]
fn deal_sectors_before_cc() {
    let mut sim = held_sim();
    for i in 1..=5 {
        sim.apply(Event::Push(req(i, i as u64, TaskType::PreCommit1, P32)));
    }
    sim.apply(Event::Push(deal(req(10, 10, TaskType::PreCommit1, P32))));
    let effects = sim.apply(worker("w").cpus(1).ram_gib(512).tasks(&[TaskType::PreCommit1]).add(wid(1)));
    assert_eq!(started(&effects), vec![10], "the deal sector goes first");
    let effects = sim.finish(sid(10));
    assert_eq!(started(&effects), vec![1], "then CC sectors by number");
}

// ---- The original's TestSched scenarios -------------------------------------------------

#[test]
fn sched_one_pc1() {
    let mut sim = held_sim();
    sim.apply(worker("fred").tasks(&[TaskType::PreCommit1]).add(wid(1)));
    let effects = sim.apply(Event::Push(req(1, 8, TaskType::PreCommit1, P2K)));
    assert_eq!(started(&effects), vec![1]);
    assert_eq!(running_on(&sim, 1), Some(wid(1)));
}

#[test]
fn sched_pc1_2workers_routes_by_task_type() {
    for order in [[1u128, 2], [2, 1]] {
        let mut sim = held_sim();
        for n in order {
            let t = if n == 1 { TaskType::PreCommit1 } else { TaskType::PreCommit2 };
            sim.apply(worker(&format!("fred{n}")).tasks(&[t]).add(wid(n)));
        }
        sim.apply(Event::Push(req(1, 8, TaskType::PreCommit1, P2K)));
        assert_eq!(running_on(&sim, 1), Some(wid(1)), "PC1 runs on the PC1 worker");
    }
}

/// One worker whose RAM (64 GiB) holds a 32GiB PC1 (56 GiB) or a PC2 (15 GiB), not both.
fn exclusive_worker() -> common::WorkerB {
    worker("fred").ram_gib(64).swap_gib(128).tasks(&[TaskType::PreCommit1, TaskType::PreCommit2])
}

#[test]
fn sched_pc1_block_pc2() {
    let mut sim = held_sim();
    sim.apply(exclusive_worker().add(wid(1)));
    assert_eq!(started(&sim.apply(Event::Push(req(1, 8, TaskType::PreCommit1, P32)))), vec![1]);
    assert!(started(&sim.apply(Event::Push(req(2, 9, TaskType::PreCommit2, P32)))).is_empty(), "PC2 waits");
    assert_eq!(started(&sim.finish(sid(1))), vec![2], "PC2 starts once PC1 is done");
}

#[test]
fn sched_pc2_block_pc1() {
    let mut sim = held_sim();
    sim.apply(exclusive_worker().add(wid(1)));
    assert_eq!(started(&sim.apply(Event::Push(req(1, 8, TaskType::PreCommit2, P32)))), vec![1]);
    assert!(started(&sim.apply(Event::Push(req(2, 9, TaskType::PreCommit1, P32)))).is_empty(), "PC1 waits");
    assert_eq!(started(&sim.finish(sid(1))), vec![2]);
}

#[test]
fn sched_pc1_batching() {
    let mut sim = held_sim();
    sim.apply(worker("fred").ram_gib(128).swap_gib(128).tasks(&[TaskType::PreCommit1]).add(wid(1)));
    let mut effects = Vec::new();
    for i in 1..=4 {
        effects.extend(sim.apply(Event::Push(req(i, i as u64, TaskType::PreCommit1, P32))));
    }
    assert_eq!(started(&effects), vec![1, 2], "two 56 GiB PC1s fit 128 GiB");
    assert_eq!(started(&sim.finish(sid(2))), vec![3]);
    assert_eq!(started(&sim.finish(sid(1))), vec![4]);
}

#[test]
fn sched_pc1_pc2_prio() {
    let mut sim = held_sim();
    sim.apply(Event::Push(req(1, 1, TaskType::PreCommit1, P32)));
    sim.apply(Event::Push(req(2, 2, TaskType::PreCommit2, P32)));
    let effects = sim.apply(exclusive_worker().add(wid(1)));
    assert_eq!(started(&effects), vec![2], "PC2 (order 4) before PC1 (order 5)");
    assert_eq!(started(&sim.finish(sid(2))), vec![1]);
}

#[test]
fn sched_constrained_resources_ignore_resources_worker_wins() {
    let mut sim = held_sim();
    sim.apply(worker("fred1").cpus(1).ram_gib(1).tasks(&[TaskType::PreCommit1]).add(wid(1)));
    sim.apply(worker("fred2").cpus(1).ram_gib(1).tasks(&[TaskType::PreCommit1]).ignore_resources().add(wid(2)));
    sim.apply(Event::Push(req(1, 8, TaskType::PreCommit1, P32)));
    assert_eq!(running_on(&sim, 1), Some(wid(2)));
}

#[test]
fn max_concurrent_limits_a_task_type_per_worker() {
    let mut sim = held_sim();
    let mut w = worker("fred").tasks(&[TaskType::PreCommit1]);
    w.spec.info.resources.resources =
        sealing_types::resources::table_from_env(&|k: &str| (k == "PC1_32G_MAX_CONCURRENT").then(|| "2".to_string()))
            .unwrap();
    sim.apply(w.ram_gib(4096).add(wid(1)));
    let mut effects = Vec::new();
    for i in 1..=5 {
        effects.extend(sim.apply(Event::Push(req(i, i as u64, TaskType::PreCommit1, P32))));
    }
    assert_eq!(started(&effects).len(), 2);
    assert_eq!(started(&sim.finish(sid(1))), vec![3]);
}

#[test]
fn get_max_concurrent_limits_fetch_stages() {
    // GET_2K_MAX_CONCURRENT=1: at most one PC1 prepares (fetches) at a time (§2.5).
    let mut sim = Sim::new(new_sched(), Box::new(|_, _| (u64::MAX, u64::MAX)));
    let mut w = worker("fred").tasks(&[TaskType::PreCommit1]);
    w.spec.info.resources.resources =
        sealing_types::resources::table_from_env(&|k: &str| (k == "GET_2K_MAX_CONCURRENT").then(|| "1".to_string()))
            .unwrap();
    sim.apply(w.add(wid(1)));
    let mut prepares = 0;
    for i in 1..=3 {
        for e in sim.apply(Event::Push(step(i, i as u64, TaskType::PreCommit1, P2K))) {
            prepares += matches!(e, Effect::Prepare { .. }) as usize;
        }
    }
    assert_eq!(prepares, 1);
    let effects = sim.apply(Event::Prepared { task: sid(1), worker: wid(1) });
    assert!(effects.contains(&Effect::Start { task: sid(1), worker: wid(1) }));
    assert!(effects.contains(&Effect::Prepare { task: sid(2), worker: wid(1) }), "{effects:?}");
}

// ---- Data locality --------------------------------------------------------------------------

#[test]
fn existing_selector_prefers_the_worker_holding_the_sector() {
    let mut sim = held_sim();
    let cs = FileTypes::of(&[FileType::Cache, FileType::Sealed]);
    for n in 1..=3 {
        sim.apply(worker(&format!("w{n}")).tasks(&[TaskType::PreCommit2]).add(wid(n)));
    }
    sim.apply(Event::SectorFiles { sector: SectorId { miner: 1000, number: 7 }, worker: wid(3), types: cs });
    sim.apply(Event::Push(step(1, 7, TaskType::PreCommit2, P2K)));
    assert_eq!(sim.sched.task_state(sid(1)), Some(TaskState::Preparing { worker: wid(3) }));
}

#[test]
fn locality_waits_for_a_busy_holder_instead_of_moving_data() {
    let cs = FileTypes::of(&[FileType::Cache, FileType::Sealed]);
    let mut sim = held_sim();
    sim.apply(worker("holder").ram_gib(20).swap_gib(20).tasks(&[TaskType::PreCommit2]).add(wid(1)));
    sim.apply(worker("idle").tasks(&[TaskType::PreCommit2]).add(wid(2)));
    for n in [1u64, 2] {
        sim.apply(Event::SectorFiles { sector: SectorId { miner: 1000, number: n }, worker: wid(1), types: cs });
    }
    sim.apply(Event::Push(step(1, 1, TaskType::PreCommit2, P32)));
    sim.apply(Event::Push(step(2, 2, TaskType::PreCommit2, P32)));
    sim.run();
    assert_eq!(running_on(&sim, 1), Some(wid(1)));
    assert_ne!(sim.sched.task_state(sid(2)).and_then(|s| s.worker()), Some(wid(2)), "never moved to the idle worker");
    assert!(
        sim.sched.explain(sid(2)).iter().any(|l| l.contains("idle") && l.contains("waits for")),
        "{:?}",
        sim.sched.explain(sid(2))
    );
}

// ---- Disconnects ----------------------------------------------------------------------------

#[test]
fn disabled_worker_requeues_windowed_tasks_exactly_once() {
    let mut sim = held_sim();
    sim.apply(worker("a").cpus(1).tasks(&[TaskType::PreCommit1]).add(wid(1)));
    for i in 1..=4 {
        sim.apply(Event::Push(req(i, i as u64, TaskType::PreCommit1, P2K)));
    }
    // 1 running, 1 prepared, 2 in windows.
    assert_eq!(running_on(&sim, 1), Some(wid(1)));
    let effects = sim.apply(Event::WorkerDisabled(wid(1)));
    let requeued: Vec<_> = effects.iter().filter(|e| matches!(e, Effect::Requeued { .. })).collect();
    assert_eq!(requeued.len(), 2, "{effects:?}");
    let effects = sim.apply(worker("b").cpus(1).tasks(&[TaskType::PreCommit1]).add(wid(2)));
    assert_eq!(started(&effects), vec![3], "b takes a requeued task");
    assert_eq!(running_on(&sim, 1), Some(wid(1)), "the started task keeps running on a");
    assert_eq!(sim.sched.task_state(sid(2)), Some(TaskState::Prepared { worker: wid(1) }));
}

#[test]
fn removed_worker_requeues_everything_it_held() {
    let mut sim = held_sim();
    sim.apply(worker("a").cpus(1).tasks(&[TaskType::PreCommit1]).add(wid(1)));
    for i in 1..=3 {
        sim.apply(Event::Push(req(i, i as u64, TaskType::PreCommit1, P2K)));
    }
    let effects = sim.apply(Event::WorkerRemoved(wid(1)));
    assert_eq!(effects.iter().filter(|e| matches!(e, Effect::Requeued { .. })).count(), 3);
    assert_eq!(sim.sched.queued_len(), 3);
    // A late Done from the removed worker is ignored.
    sim.sched.handle(Event::Done { task: sid(1), worker: wid(1) });
    assert_eq!(sim.sched.task_state(sid(1)), Some(TaskState::Queued));
}

#[test]
fn cancel_removes_a_queued_request() {
    let mut sim = held_sim();
    sim.apply(Event::Push(req(1, 1, TaskType::PreCommit2, P2K)));
    let effects = sim.apply(Event::Cancel(sid(1)));
    assert_eq!(effects, vec![Effect::Cancelled { task: sid(1) }]);
    assert_eq!(sim.sched.queued_len(), 0);
    let dup = sim.apply(Event::Push(req(2, 1, TaskType::PreCommit2, P2K)));
    assert!(dup.is_empty());
    let dup = sim.apply(Event::Push(req(2, 1, TaskType::PreCommit2, P2K)));
    assert!(matches!(dup[0], Effect::Rejected { .. }));
}

#[test]
fn cancelling_an_assigned_task_renumbers_the_windows_behind_it() {
    let mut sim = held_sim();
    sim.apply(worker("a").cpus(1).tasks(&[TaskType::PreCommit1]).add(wid(1)));
    for i in 1..=4 {
        sim.apply(Event::Push(req(i, i as u64, TaskType::PreCommit1, P2K)));
    }
    // One core: 1 runs, 2 waits prepared, 3 and 4 wait in the two windows.
    assert_eq!(sim.sched.task_state(sid(2)), Some(TaskState::Prepared { worker: wid(1) }));
    assert_eq!(sim.sched.task_state(sid(3)), Some(TaskState::Assigned { worker: wid(1), window: 0 }));
    assert_eq!(sim.sched.task_state(sid(4)), Some(TaskState::Assigned { worker: wid(1), window: 1 }));
    let effects = sim.apply(Event::Cancel(sid(3)));
    assert_eq!(effects, vec![Effect::Cancelled { task: sid(3) }]);
    assert_eq!(sim.sched.task_state(sid(4)), Some(TaskState::Assigned { worker: wid(1), window: 0 }));
    // The freed window takes the next request.
    sim.apply(Event::Push(req(5, 5, TaskType::PreCommit1, P2K)));
    assert_eq!(sim.sched.task_state(sid(5)), Some(TaskState::Assigned { worker: wid(1), window: 1 }));
}

#[test]
fn a_worker_takes_a_task_type_once_it_offers_it() {
    let mut sim = held_sim();
    sim.apply(worker("a").only(&[TaskType::AddPiece]).add(wid(1)));
    sim.apply(Event::Push(req(1, 1, TaskType::PreCommit1, P2K)));
    assert_eq!(sim.sched.task_state(sid(1)), Some(TaskState::Queued));
    let types = [TaskType::AddPiece, TaskType::PreCommit1].into_iter().collect();
    let effects = sim.apply(Event::WorkerTaskTypes { id: wid(1), task_types: types });
    assert_eq!(started(&effects), vec![1]);
    // And stops taking one it no longer offers.
    let types = [TaskType::AddPiece].into_iter().collect();
    sim.apply(Event::WorkerTaskTypes { id: wid(1), task_types: types });
    sim.apply(Event::Push(req(2, 2, TaskType::PreCommit1, P2K)));
    assert_eq!(sim.sched.task_state(sid(2)), Some(TaskState::Queued));
}

// ---- Assigners ------------------------------------------------------------------------------

#[test]
fn utilization_assigner_balances_and_spread_counts_tasks() {
    for assigner in [sealing_sched::Assigner::Utilization, sealing_sched::Assigner::Spread] {
        let mut sim =
            Sim::new(sealing_sched::Scheduler::new(sealing_sched::Config { assigner }), Box::new(|_, _| (0, u64::MAX)));
        for n in 1..=4 {
            sim.apply(worker(&format!("w{n}")).cpus(8).ram_gib(512).tasks(&[TaskType::PreCommit1]).add(wid(n)));
        }
        for i in 1..=8 {
            sim.apply(Event::Push(req(i, i as u64, TaskType::PreCommit1, P32)));
        }
        for n in 1..=4 {
            assert_eq!(sim.max_concurrent(wid(n), |_| true), 2, "{assigner:?}: 8 PC1 over 4 workers");
        }
    }
}

// ---- Diagnostics ----------------------------------------------------------------------------

#[test]
fn sched_diag_explains_why_a_pc2_does_not_start() {
    let mut sim = held_sim();
    sim.apply(worker("pc1box").tasks(&[TaskType::PreCommit1]).add(wid(1)));
    sim.apply(worker("tiny").ram_gib(8).tasks(&[TaskType::PreCommit2]).add(wid(2)));
    sim.apply(worker("busy").ram_gib(16).swap_gib(64).tasks(&[TaskType::PreCommit2]).add(wid(3)));
    for i in 1..=5 {
        sim.apply(Event::Push(req(i, i as u64, TaskType::PreCommit2, P32)));
    }
    let diag = sim.sched.diag(100);
    let queued: Vec<_> = diag.requests.iter().map(|r| r.sched_id).collect();
    assert!(!queued.is_empty(), "some PC2s stay queued");
    let reasons = &diag.requests[0].reasons;
    let find = |host: &str| reasons.iter().find(|l| l.contains(&format!("({host})"))).unwrap().clone();
    assert!(find("pc1box").ends_with("PC2 disabled"), "{reasons:?}");
    assert!(find("tiny").contains("can never run it, even idle: RAM: need 15 GiB + 1 GiB, 8 GiB free"), "{reasons:?}");
    assert!(find("busy").contains("both scheduling windows are full"), "{reasons:?}");
    let json = serde_json::to_value(&diag).unwrap();
    assert!(json["Requests"][0]["TaskType"] == "seal/v0/precommit/2");
    assert!(json["Requests"][0]["Sector"]["Miner"] == 1000);
}

#[test]
fn open_windows_are_listed_twice_per_idle_worker() {
    let mut sim = held_sim();
    sim.apply(worker("a").add(wid(1)));
    sim.apply(worker("b").add(wid(2)));
    assert_eq!(sim.sched.diag(10).open_windows, vec![wid(1), wid(1), wid(2), wid(2)]);
}

/// One GPU model on both sides: three Commit2s of 0.6 GPU each (`C2_32G_GPU_UTILIZATION=0.6`)
/// on a two-card worker. The utilisations sum to 1.8 of 2 cards, but no card has room for a
/// third 0.6 once two run: the third waits in the scheduler, prepared, not on the worker; the
/// cards are shown in use, one task each; when one ends the third takes its card.
#[test]
fn three_six_tenths_gpu_tasks_on_two_cards_run_two_and_queue_the_third() {
    let table =
        sealing_types::resources::table_from_env(&|k: &str| (k == "C2_32G_GPU_UTILIZATION").then(|| "0.6".to_string()))
            .unwrap();
    let mut w = worker("two-cards").cpus(64).ram_gib(1024).gpus(2).only(&[TaskType::Commit2]);
    w.spec.info.resources.resources = table;
    let mut s = new_sched();
    let id = wid(1);
    s.handle(w.add(id));
    let mut started = vec![];
    for i in 0..3 {
        for e in s.handle(Event::Push(req(i, i as u64, TaskType::Commit2, P32))) {
            if let sealing_sched::Effect::Start { task, .. } = e {
                started.push(task);
            }
        }
    }
    assert_eq!(started, vec![sid(0), sid(1)], "two start, one per card");
    let states: std::collections::BTreeMap<_, _> = s.tasks().map(|(r, st)| (r.id, st)).collect();
    assert_eq!(states[&sid(2)], sealing_sched::TaskState::Prepared { worker: id }, "the third waits in the scheduler");
    let view = s.worker(id).unwrap();
    assert_eq!(view.gpu_loads, vec![600, 600], "both cards in use");
    assert_eq!(view.active.gpu_milli, 1200);
    s.check_invariants().unwrap();

    let fx = s.handle(Event::Done { task: sid(0), worker: id });
    assert!(fx.iter().any(|e| matches!(e, sealing_sched::Effect::Start { task, .. } if *task == sid(2))), "{fx:?}");
    assert_eq!(s.worker(id).unwrap().gpu_loads, vec![600, 600], "the third took the freed card");
    s.check_invariants().unwrap();
}
