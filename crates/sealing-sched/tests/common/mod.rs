//! Builders for scheduler tests.
#![allow(dead_code)]

use sealing_sched::{Config, Event, Scheduler, Selector, TaskRequest, WorkerSpec};
use sealing_types::resources::default_table;
use sealing_types::{
    FileType, FileTypes, PathType, RegisteredSealProof, SchedId, SectorId, SectorRef, TaskType, WorkerId, WorkerInfo,
    WorkerResources,
};
use std::collections::BTreeSet;
use uuid::Uuid;

pub const GIB: u64 = 1 << 30;
pub const P32: RegisteredSealProof = RegisteredSealProof::STACKED_DRG_32GIB_V1_1;
pub const P2K: RegisteredSealProof = RegisteredSealProof::STACKED_DRG_2KIB_V1_1;

pub fn wid(n: u128) -> WorkerId {
    WorkerId(Uuid::from_u128(n))
}

pub fn sid(n: u128) -> SchedId {
    SchedId::from_u128(n)
}

/// Base task types every sealing worker has (GET, C1, FIN, FUS, FRU) plus `extra`.
pub fn task_types(extra: &[TaskType]) -> BTreeSet<TaskType> {
    let mut s: BTreeSet<TaskType> = [
        TaskType::Fetch,
        TaskType::Commit1,
        TaskType::Finalize,
        TaskType::FinalizeUnsealed,
        TaskType::FinalizeReplicaUpdate,
    ]
    .into();
    s.extend(extra.iter().copied());
    s
}

pub struct WorkerB {
    pub spec: WorkerSpec,
}

pub fn worker(host: &str) -> WorkerB {
    WorkerB {
        spec: WorkerSpec {
            info: WorkerInfo {
                hostname: host.into(),
                ignore_resources: false,
                mock_proofs: false,
                resources: WorkerResources {
                    mem_physical: 256 * GIB,
                    mem_used: 0,
                    mem_swap: 0,
                    mem_swap_used: 0,
                    cpus: 32,
                    gpus: vec![],
                    resources: default_table().clone(),
                },
            },
            task_types: task_types(&[]),
            seal_space: 100_000 * GIB,
            store_space: 100_000 * GIB,
        },
    }
}

impl WorkerB {
    pub fn cpus(mut self, n: u64) -> Self {
        self.spec.info.resources.cpus = n;
        self
    }
    pub fn ram_gib(mut self, n: u64) -> Self {
        self.spec.info.resources.mem_physical = n * GIB;
        self
    }
    pub fn swap_gib(mut self, n: u64) -> Self {
        self.spec.info.resources.mem_swap = n * GIB;
        self
    }
    pub fn gpus(mut self, n: usize) -> Self {
        self.spec.info.resources.gpus = vec!["NVIDIA GeForce RTX 3090".into(); n];
        self
    }
    pub fn tasks(mut self, t: &[TaskType]) -> Self {
        self.spec.task_types = task_types(t);
        self
    }
    pub fn only(mut self, t: &[TaskType]) -> Self {
        self.spec.task_types = t.iter().copied().collect();
        self
    }
    pub fn ignore_resources(mut self) -> Self {
        self.spec.info.ignore_resources = true;
        self
    }
    pub fn seal_space(mut self, bytes: u64) -> Self {
        self.spec.seal_space = bytes;
        self
    }
    pub fn add(self, id: WorkerId) -> Event {
        Event::WorkerAdded { id, spec: self.spec }
    }
}

pub fn req(id: u128, sector: u64, task: TaskType, proof: RegisteredSealProof) -> TaskRequest {
    TaskRequest {
        id: sid(id),
        sector: SectorRef { id: SectorId { miner: 1000, number: sector }, proof_type: proof },
        task,
        priority: 0,
        selector: Selector::Task,
        prepare: None,
    }
}

/// The request the miner would make for a sealing step (selector and prepare per §4).
pub fn step(id: u128, sector: u64, task: TaskType, proof: RegisteredSealProof) -> TaskRequest {
    let mut r = req(id, sector, task, proof);
    let cs = FileTypes::of(&[FileType::Cache, FileType::Sealed]);
    let (sel, prep) = match task {
        TaskType::AddPiece => {
            (Selector::Alloc { types: FileTypes::of(&[FileType::Unsealed]), path: PathType::Sealing }, None)
        }
        TaskType::PreCommit1 => (Selector::Alloc { types: cs, path: PathType::Sealing }, Some(TaskType::Fetch)),
        TaskType::PreCommit2 => (Selector::Existing { types: cs, allow_fetch: true }, Some(TaskType::Fetch)),
        TaskType::Commit1 => (Selector::Existing { types: cs, allow_fetch: false }, Some(TaskType::Fetch)),
        TaskType::Commit2 => (Selector::Task, None),
        TaskType::Finalize => {
            (Selector::Existing { types: FileTypes::of(&[FileType::Cache]), allow_fetch: false }, Some(TaskType::Fetch))
        }
        _ => (Selector::Task, None),
    };
    r.selector = sel;
    r.prepare = prep;
    r
}

pub fn deal(mut r: TaskRequest) -> TaskRequest {
    r.priority = sealing_sched::DEAL_SECTOR_PRIORITY;
    r
}

pub fn new_sched() -> Scheduler {
    Scheduler::new(Config::default())
}
