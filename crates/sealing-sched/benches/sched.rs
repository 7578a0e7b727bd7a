//! Scheduler benchmark. Prints its figures; asserts nothing about speed.
//!
//!   cargo bench -p sealing-sched --bench sched
//!
//! 1. Pass cost with 1,000 workers and 100,000 queued tasks: the cold pass that fills every
//!    window, and the steady-state cost of one task completion (dispatch + pass) while the
//!    queue stays at ~100,000.
//! 2. A simulated cluster sealing 1,000 32GiB sectors (AP → PC1 → PC2 → C1 → C2 → FIN) on
//!    PC1, PC2 and C2 workers with realistic phase durations; makespan against the ideal bound
//!    (total work of the bottleneck phase / its capacity).

use sealing_sched::sim::Sim;
use sealing_sched::{Config, Event, Scheduler, Selector, TaskRequest, WorkerSpec};
use sealing_types::resources::default_table;
use sealing_types::{
    FileType, FileTypes, PathType, RegisteredSealProof, SchedId, SectorId, SectorRef, TaskType, WorkerId, WorkerInfo,
    WorkerResources,
};
use std::collections::BTreeSet;
use std::time::Instant;

const GIB: u64 = 1 << 30;
const P32: RegisteredSealProof = RegisteredSealProof::STACKED_DRG_32GIB_V1_1;

fn spec(host: String, cpus: u64, ram_gib: u64, gpus: usize, extra: &[TaskType]) -> WorkerSpec {
    let mut types: BTreeSet<TaskType> =
        [TaskType::Fetch, TaskType::Commit1, TaskType::Finalize, TaskType::FinalizeUnsealed].into();
    types.extend(extra.iter().copied());
    WorkerSpec {
        info: WorkerInfo {
            hostname: host,
            ignore_resources: false,
            mock_proofs: false,
            resources: WorkerResources {
                mem_physical: ram_gib * GIB,
                mem_used: 2 * GIB,
                mem_swap: 0,
                mem_swap_used: 0,
                cpus,
                gpus: vec!["NVIDIA RTX A6000".into(); gpus],
                resources: default_table().clone(),
            },
        },
        task_types: types,
        seal_space: 100_000 * GIB,
        store_space: 1_000_000 * GIB,
    }
}

fn request(id: u128, sector: u64, task: TaskType) -> TaskRequest {
    let cs = FileTypes::of(&[FileType::Cache, FileType::Sealed]);
    let (selector, prepare) = match task {
        TaskType::AddPiece => {
            (Selector::Alloc { types: FileTypes::of(&[FileType::Unsealed]), path: PathType::Sealing }, None)
        }
        TaskType::PreCommit1 => (Selector::Alloc { types: cs, path: PathType::Sealing }, Some(TaskType::Fetch)),
        TaskType::PreCommit2 => (Selector::Existing { types: cs, allow_fetch: true }, Some(TaskType::Fetch)),
        TaskType::Commit1 => (Selector::Existing { types: cs, allow_fetch: false }, Some(TaskType::Fetch)),
        TaskType::Finalize => {
            (Selector::Existing { types: FileTypes::of(&[FileType::Cache]), allow_fetch: false }, Some(TaskType::Fetch))
        }
        _ => (Selector::Task, None),
    };
    TaskRequest {
        id: SchedId::from_u128(id),
        sector: SectorRef { id: SectorId { miner: 1000, number: sector }, proof_type: P32 },
        task,
        priority: 0,
        selector,
        prepare,
    }
}

fn wid(n: u128) -> WorkerId {
    WorkerId(uuid_from(n))
}

fn uuid_from(n: u128) -> uuid::Uuid {
    uuid::Uuid::from_u128(n)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// 600 PC1 workers, 200 PC2 workers with a GPU, 200 C2 workers with a GPU, all disabled, and
/// 100,000 queued tasks: enabling the workers is the cold fill.
fn loaded_scheduler() -> (Scheduler, Vec<WorkerId>) {
    let mut s = Scheduler::new(Config::default());
    for n in 0..1000u128 {
        let sp = match n {
            0..600 => spec(format!("pc1-{n}"), 64, 1024, 0, &[TaskType::AddPiece, TaskType::PreCommit1]),
            600..800 => spec(format!("pc2-{n}"), 32, 256, 1, &[TaskType::PreCommit2]),
            _ => spec(format!("c2-{n}"), 32, 512, 1, &[TaskType::Commit2]),
        };
        s.handle_batch([Event::WorkerAdded { id: wid(n + 1), spec: sp }]);
    }
    // Queue the tasks while no window is open yet: push them as one batch with every worker
    // disabled; the caller enables all workers at once and times that single pass.
    let all: Vec<WorkerId> = s.worker_ids().collect();
    s.handle_batch(all.iter().map(|w| Event::WorkerDisabled(*w)));
    let evs: Vec<Event> = (0..100_000u128)
        .map(|i| {
            let task = match i % 20 {
                0..14 => TaskType::PreCommit1,
                14..17 => TaskType::PreCommit2,
                _ => TaskType::Commit2,
            };
            Event::Push(request(i + 1, i as u64, task))
        })
        .collect();
    s.handle_batch(evs);
    (s, all)
}

fn pass_cost() {
    println!("== Scheduling pass: 1,000 workers, 100,000 queued tasks ==");
    let mut cold = Vec::new();
    let mut steady = Vec::new();
    for round in 0..5 {
        let (mut s, all) = loaded_scheduler();
        let t = Instant::now();
        let effects = cold_pass(&mut s, &all);
        let dt = t.elapsed().as_secs_f64() * 1e3;
        cold.push(dt);
        if round == 0 {
            let starts = effects.iter().filter(|e| matches!(e, sealing_sched::Effect::Start { .. })).count();
            let prepares = effects.iter().filter(|e| matches!(e, sealing_sched::Effect::Prepare { .. })).count();
            println!(
                "cold pass (all 2,000 windows open): {} prepares + {} starts issued, {} tasks still queued",
                prepares,
                starts,
                s.queued_len()
            );
        }
        // Steady state: finish running tasks one at a time; each Done frees room, triggers a
        // dispatch and a pass over the ~100,000-task queue.
        let running: Vec<(SchedId, WorkerId)> = s
            .tasks()
            .filter_map(|(r, st)| match st {
                sealing_sched::TaskState::Running { worker } => Some((r.id, worker)),
                _ => None,
            })
            .take(2000)
            .collect();
        let t = Instant::now();
        for (task, worker) in &running {
            s.handle(Event::Done { task: *task, worker: *worker });
        }
        steady.push(t.elapsed().as_secs_f64() * 1e6 / running.len() as f64);
    }
    println!("cold pass, median of 5:                         {:8.2} ms   (target ≤ 10 ms)", median(cold));
    println!("one completion + dispatch + pass, median of 5:  {:8.1} µs", median(steady));
}

/// Slots one worker offers for a task, by the resource table alone (CPU, RAM, VMEM, GPU).
fn slots(sp: &WorkerSpec, task: TaskType) -> u64 {
    let r = &sp.info.resources;
    let s = r.resources.spec(P32, task);
    let mut n = u64::MAX;
    let th = s.threads(r.cpus, r.gpus.len());
    if let Some(by_cpu) = r.cpus.checked_div(th) {
        n = n.min(by_cpu);
    }
    n = n.min(r.mem_physical / (s.min_memory + s.base_min_memory).max(1));
    let vmem_free = (r.mem_physical + r.mem_swap).saturating_sub(r.mem_used + r.mem_swap_used);
    n = n.min(vmem_free / (s.max_memory + s.base_min_memory).max(1));
    if !r.gpus.is_empty() && s.gpu_utilization > 0.0 {
        n = n.min((r.gpus.len() as f64 / s.gpu_utilization) as u64);
    }
    n
}

/// The request `r` as another task type (same sector).
fn probe_of(r: &TaskRequest, task: TaskType) -> TaskRequest {
    let mut r = r.clone();
    r.task = task;
    r
}

/// `jitter`: whether PC1 varies between sectors. Without it the instance has no last-wave
/// imbalance, and the makespan shows what the scheduler itself loses.
fn cluster(jitter: bool) {
    if jitter {
        println!("\n== Simulated cluster: 1,000 32GiB sectors, PC1 195–225 min (varies by sector) ==");
    } else {
        println!("\n== Simulated cluster: 1,000 32GiB sectors, PC1 210 min for every sector ==");
    }
    const MIN: u64 = 60;
    // Virtual seconds: (prepare, work).
    let duration = move |r: &TaskRequest, _w: WorkerId| -> (u64, u64) {
        // PC1 varies by up to half an hour between sectors, as real SDR does; the constant
        // variant takes the mean.
        let jitter = if jitter { (r.sector.id.number * 7919) % 1800 } else { 15 * MIN };
        match r.task {
            TaskType::AddPiece => (0, 10 * MIN),
            TaskType::PreCommit1 => (MIN, 195 * MIN + jitter), // fetch unsealed 32 GiB, ~3.5 h SDR
            TaskType::PreCommit2 => (6 * MIN, 12 * MIN),       // fetch sealed+cache over 10 GbE
            TaskType::Commit1 => (0, MIN),
            TaskType::Commit2 => (0, 18 * MIN),
            TaskType::Finalize => (0, 2 * MIN),
            _ => (0, MIN),
        }
    };
    let mut sim = Sim::new(Scheduler::new(Config::default()), Box::new(duration));
    // 650 GiB of RAM: ten 32GiB PC1s (64 GiB VMEM each) per machine.
    let pc1 = spec("pc1".into(), 64, 650, 0, &[TaskType::AddPiece, TaskType::PreCommit1]);
    let pc2 = spec("pc2".into(), 32, 256, 1, &[TaskType::PreCommit2]);
    let c2 = spec("c2".into(), 32, 512, 1, &[TaskType::Commit2]);
    let (n_pc1, n_pc2, n_c2) = (10u128, 12u128, 16u128);
    for n in 0..n_pc1 {
        sim.apply(Event::WorkerAdded { id: wid(100 + n), spec: pc1.clone() });
    }
    for n in 0..n_pc2 {
        sim.apply(Event::WorkerAdded { id: wid(200 + n), spec: pc2.clone() });
    }
    for n in 0..n_c2 {
        sim.apply(Event::WorkerAdded { id: wid(300 + n), spec: c2.clone() });
    }
    let sectors = 1000u64;
    let mut next_id = 0u128;
    let mut id = || {
        next_id += 1;
        next_id
    };
    let t = Instant::now();
    sim.sched.handle_batch(Vec::<Event>::new());
    let pushes: Vec<Event> = (0..sectors).map(|s| Event::Push(request(id(), s, TaskType::AddPiece))).collect();
    for p in pushes {
        sim.apply(p);
    }
    let mut done_sectors = 0;
    let mut busy = std::collections::HashMap::<TaskType, u64>::new();
    while let Some(step) = sim.step() {
        let Some((req, worker)) = step else { continue };
        let (_, work) = duration(&req, worker);
        *busy.entry(req.task).or_insert(0) += work;
        let s = req.sector.id;
        let produced = match req.task {
            TaskType::AddPiece => Some((FileTypes::of(&[FileType::Unsealed]), TaskType::PreCommit1)),
            TaskType::PreCommit1 => Some((FileTypes::of(&[FileType::Cache, FileType::Sealed]), TaskType::PreCommit2)),
            TaskType::PreCommit2 => Some((FileTypes::of(&[FileType::Cache, FileType::Sealed]), TaskType::Commit1)),
            TaskType::Commit1 => Some((FileTypes::NONE, TaskType::Commit2)),
            TaskType::Commit2 => Some((FileTypes::NONE, TaskType::Finalize)),
            _ => None,
        };
        match produced {
            Some((files, next)) => {
                if !files.is_empty() {
                    // The task's outputs (and fetched inputs) now live on the worker that ran it.
                    sim.apply(Event::SectorFiles { sector: s, worker, types: files });
                }
                sim.apply(Event::Push(request(id(), s.number, next)));
            }
            None => done_sectors += 1,
        }
    }
    let wall = t.elapsed();
    assert_eq!(done_sectors, sectors, "every sector sealed");
    let makespan_h = sim.now as f64 / 3600.0;
    let cap = |sp: &WorkerSpec, n: u128, t: TaskType| slots(sp, t) * n as u64;
    let bound = |t: TaskType, cap: u64| busy[&t] as f64 / cap as f64 / 3600.0;
    let rows = [
        (
            "PC1",
            bound(TaskType::PreCommit1, cap(&pc1, n_pc1, TaskType::PreCommit1)),
            cap(&pc1, n_pc1, TaskType::PreCommit1),
        ),
        (
            "PC2",
            bound(TaskType::PreCommit2, cap(&pc2, n_pc2, TaskType::PreCommit2)),
            cap(&pc2, n_pc2, TaskType::PreCommit2),
        ),
        ("C2", bound(TaskType::Commit2, cap(&c2, n_c2, TaskType::Commit2)), cap(&c2, n_c2, TaskType::Commit2)),
    ];
    println!("workers: {n_pc1} PC1 (64 cores, 650 GiB), {n_pc2} PC2 (1 GPU), {n_c2} C2 (1 GPU)");
    for (name, b, c) in rows {
        println!("  {name:<4} capacity {c:>4} slots, total work / capacity = {b:7.2} h");
    }
    let ideal = rows.iter().map(|r| r.1).fold(0.0, f64::max);
    // Sector n's (prepare, work) for task type t, and sector 0's in hours.
    let work = |t: TaskType, n: u64| duration(&probe_of(&request(0, n, TaskType::AddPiece), t), wid(0));
    let h = |t: TaskType| {
        let (p, w) = work(t, 0);
        (p as f64 / 3600.0, w as f64 / 3600.0)
    };
    let lat = |t: TaskType| h(t).0 + h(t).1;
    // No PC1 starts before an AddPiece and a PC1 fetch; after the last PC1, its sector still
    // needs PC2 (with its fetch), C1, C2 and Finalize.
    let fill = lat(TaskType::AddPiece) + h(TaskType::PreCommit1).0;
    let drain: f64 =
        [TaskType::PreCommit2, TaskType::Commit1, TaskType::Commit2, TaskType::Finalize].into_iter().map(lat).sum();
    // The last wave: with S PC1 slots, the (N−S+1)-th PC1 completion needs some slot to have
    // run ceil((N−S+1)/S) PC1s, so at least S sectors leave PC1 no earlier than fill + that
    // many of the shortest PC1. Those S sectors then queue for the PC2 and C2 slots. Valid for
    // any schedule; for equal PC1s it is what the pipeline's drain costs.
    let min_pc1 = (0..sectors).map(|n| work(TaskType::PreCommit1, n).1).min().unwrap_or(0) as f64 / 3600.0;
    let s_pc1 = cap(&pc1, n_pc1, TaskType::PreCommit1);
    let burst = s_pc1.min(sectors);
    let last_wave = fill + (sectors - burst + 1).div_ceil(s_pc1) as f64 * min_pc1;
    let ((pc2_prep, d_pc2), (_, d_c1), (_, d_c2), (_, d_fin)) =
        (h(TaskType::PreCommit2), h(TaskType::Commit1), h(TaskType::Commit2), h(TaskType::Finalize));
    let rounds = |slots: u64| burst.div_ceil(slots) as f64;
    let through_pc2 =
        last_wave + pc2_prep + rounds(cap(&pc2, n_pc2, TaskType::PreCommit2)) * d_pc2 + d_c1 + d_c2 + d_fin;
    let through_c2 = last_wave + pc2_prep + d_pc2 + d_c1 + rounds(cap(&c2, n_c2, TaskType::Commit2)) * d_c2 + d_fin;
    let wave_bound = through_pc2.max(through_c2);
    let best = (ideal + fill + drain).max(wave_bound);
    println!("simulated makespan:                         {makespan_h:8.2} h");
    println!(
        "ideal bound, bottleneck work / capacity:    {ideal:8.2} h   ratio {:.3} (target ≤ 1.05)",
        makespan_h / ideal
    );
    println!(
        "lower bound, + one sector's fill and drain: {:8.2} h   ratio {:.3}",
        ideal + fill + drain,
        makespan_h / (ideal + fill + drain)
    );
    println!("lower bound, last PC1 wave through PC2/C2:  {wave_bound:8.2} h   ratio {:.3}", makespan_h / wave_bound);
    println!("makespan / best lower bound:                             ratio {:.3}", makespan_h / best);
    // Where the time beyond the bound goes: PC1 slots idle between the first PC1 start and the
    // last PC1 end, and the drain after it.
    let pc1_runs: Vec<_> = sim
        .history
        .iter()
        .filter(|iv| sim.requests[&iv.task].task == TaskType::PreCommit1 && iv.end.is_some())
        .collect();
    let first = pc1_runs.iter().map(|iv| iv.start).min().unwrap_or(0);
    let last = pc1_runs.iter().filter_map(|iv| iv.end).max().unwrap_or(0);
    let busy_pc1: u64 = pc1_runs.iter().map(|iv| iv.end.unwrap() - iv.start).sum();
    let mut starts: Vec<u64> = pc1_runs.iter().map(|iv| iv.start).collect();
    starts.sort_unstable();
    let ends: Vec<u64> = {
        let mut e: Vec<u64> = pc1_runs.iter().filter_map(|iv| iv.end).collect();
        e.sort_unstable();
        e
    };
    println!(
        "PC1: the 100th start at {:.2} h; the 900th end at {:.2} h (the last at {:.2} h)",
        starts[(s_pc1 as usize).min(starts.len()) - 1] as f64 / 3600.0,
        ends[ends.len() - (s_pc1 as usize).min(ends.len())] as f64 / 3600.0,
        last as f64 / 3600.0
    );
    println!(
        "PC1: first start {:.2} h, last end {:.2} h, slots busy {:.1}% in between; drain after it {:.2} h",
        first as f64 / 3600.0,
        last as f64 / 3600.0,
        busy_pc1 as f64 * 100.0 / (s_pc1 as f64 * (last - first).max(1) as f64),
        (sim.now - last) as f64 / 3600.0
    );
    println!("simulation wall time:      {:8.2} s", wall.as_secs_f64());
}

/// The cold pass alone, on `SCHED_BENCH_CLONES` (30) clones of one prepared scheduler
/// (SCHED_BENCH=cold: for a profiler, which then sees little else).
fn cold_only() {
    let (s, all) = loaded_scheduler();
    // Every scheduler first, so that a profiler started late (`perf record -D`) sees only the
    // passes. Clones are quick to make, but their trees are laid out better than those built
    // push by push (SCHED_BENCH_FRESH=1 builds each the slow way, as the pass figure does).
    let setup = Instant::now();
    let n: usize = std::env::var("SCHED_BENCH_CLONES").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let fresh = std::env::var("SCHED_BENCH_FRESH").is_ok_and(|v| v == "1");
    let mut clones: Vec<Scheduler> = (0..n).map(|_| if fresh { loaded_scheduler().0 } else { s.clone() }).collect();
    eprintln!("setup done after {:.1} s", setup.elapsed().as_secs_f64());
    // A pause after setup, so that `perf record -D` can start exactly at the passes.
    if let Some(ms) = std::env::var("SCHED_BENCH_PAUSE_MS").ok().and_then(|v| v.parse().ok()) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    let mut times = vec![];
    for c in &mut clones {
        let t = Instant::now();
        std::hint::black_box(cold_pass(c, &all));
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!("cold pass alone, median of {n}: {:.2} ms", median(times));
    std::mem::forget(clones); // dropping them would show in a profile too
}

/// One cold pass, in a function of its own so that callgrind can count it alone:
/// `valgrind --tool=callgrind --toggle-collect='*cold_pass*' --cache-sim=yes`.
#[inline(never)]
fn cold_pass(s: &mut Scheduler, all: &[WorkerId]) -> Vec<sealing_sched::Effect> {
    s.handle_batch(all.iter().map(|w| Event::WorkerEnabled(*w)))
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful. Run both parts.
    // SCHED_BENCH=pass or SCHED_BENCH=cluster runs one part (for profiling); SCHED_BENCH=cold
    // repeats the cold pass alone.
    let only = std::env::var("SCHED_BENCH").unwrap_or_default();
    if only == "cold" {
        return cold_only();
    }
    if only != "cluster" {
        pass_cost();
    }
    if only != "pass" {
        cluster(false);
        cluster(true);
    }
}
