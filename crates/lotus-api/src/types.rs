//! Wire shapes of API results (Lotus JSON field names).

use sealing_types::{RegisteredSealProof, TaskType, WorkerInfo};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `Filecoin.Version`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Version {
    #[serde(rename = "Version")]
    pub version: String,
    #[serde(rename = "APIVersion")]
    pub api_version: u32,
    #[serde(rename = "BlockDelay")]
    pub block_delay: u64,
}

/// One worker in `Filecoin.WorkerStats` (a map keyed by worker UUID).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerStats {
    #[serde(rename = "Info")]
    pub info: WorkerInfo,
    #[serde(rename = "Tasks")]
    pub tasks: Vec<TaskType>,
    #[serde(rename = "Enabled")]
    pub enabled: bool,
    #[serde(rename = "MemUsedMin")]
    pub mem_used_min: u64,
    #[serde(rename = "MemUsedMax")]
    pub mem_used_max: u64,
    #[serde(rename = "GpuUsed")]
    pub gpu_used: f64,
    #[serde(rename = "CpuUse")]
    pub cpu_use: u64,
    /// `"<proof>:<task type>"` → tasks on the worker (assigned, preparing or running).
    #[serde(rename = "TaskCounts")]
    pub task_counts: BTreeMap<String, usize>,
}

/// The key of `TaskCounts`: `"3:seal/v0/precommit/1"`.
pub fn seal_task_key(proof: RegisteredSealProof, task: TaskType) -> String {
    format!("{}:{}", proof.as_i64(), task.as_str())
}

/// One row of `Filecoin.WorkerJobs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerJob {
    #[serde(rename = "ID")]
    pub id: sealing_types::CallId,
    #[serde(rename = "Sector")]
    pub sector: sealing_types::SectorId,
    #[serde(rename = "Task")]
    pub task: TaskType,
    /// 0 running, 1 prepared, ≥2 assigned(N-1), -1 ret-wait, -2 returned, -3 ret-done.
    #[serde(rename = "RunWait")]
    pub run_wait: i64,
    /// RFC 3339 start time.
    #[serde(rename = "Start")]
    pub start: String,
    #[serde(rename = "Hostname")]
    pub hostname: String,
}
