//! Wire shapes of API results (Lotus JSON field names).

use sealing_types::worker::null_as_default;
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
    /// The user agent (`lotus-miner` etc.); Lotus fills it from the build.
    #[serde(rename = "Agent", default)]
    pub agent: String,
}

/// One worker in `Filecoin.WorkerStats` (a map keyed by worker UUID).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerStats {
    #[serde(rename = "Info")]
    pub info: WorkerInfo,
    #[serde(rename = "Tasks", deserialize_with = "null_as_default")]
    pub tasks: Vec<TaskType>,
    #[serde(rename = "Enabled")]
    pub enabled: bool,
    #[serde(rename = "MemUsedMin")]
    pub mem_used_min: u64,
    #[serde(rename = "MemUsedMax")]
    pub mem_used_max: u64,
    #[serde(rename = "GpuUsed")]
    pub gpu_used: f64,
    /// Not in Lotus's type (its decoder ignores it): per card, the share running tasks hold,
    /// as the scheduler leases cards.
    #[serde(rename = "GpuCardsUsed", default, skip_serializing_if = "Vec::is_empty")]
    pub gpu_cards_used: Vec<f64>,
    #[serde(rename = "CpuUse")]
    pub cpu_use: u64,
    /// `"<proof>:<task type>"` → tasks on the worker (assigned, preparing or running).
    #[serde(rename = "TaskCounts", deserialize_with = "null_as_default")]
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

/// A storage path as the sector index knows it (`storiface.StorageInfo`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StorageInfo {
    #[serde(rename = "ID")]
    pub id: uuid::Uuid,
    /// `http://<host:port>/remote` of every node that serves this path.
    #[serde(rename = "URLs")]
    pub urls: Vec<String>,
    #[serde(rename = "Weight")]
    pub weight: u64,
    #[serde(rename = "MaxStorage")]
    pub max_storage: u64,
    #[serde(rename = "CanSeal")]
    pub can_seal: bool,
    #[serde(rename = "CanStore")]
    pub can_store: bool,
    #[serde(rename = "Groups", default, deserialize_with = "null_as_default")]
    pub groups: Vec<String>,
    #[serde(rename = "AllowTo", default, deserialize_with = "null_as_default")]
    pub allow_to: Vec<String>,
    #[serde(rename = "AllowTypes", default, deserialize_with = "null_as_default")]
    pub allow_types: Vec<String>,
    #[serde(rename = "DenyTypes", default, deserialize_with = "null_as_default")]
    pub deny_types: Vec<String>,
    /// Miner actor addresses allowed to (not) use this path; empty = any.
    #[serde(rename = "AllowMiners", default, deserialize_with = "null_as_default")]
    pub allow_miners: Vec<String>,
    #[serde(rename = "DenyMiners", default, deserialize_with = "null_as_default")]
    pub deny_miners: Vec<String>,
}

/// Space on a storage path (`fsutil.FsStat`), in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsStat {
    #[serde(rename = "Capacity")]
    pub capacity: u64,
    /// Free for new sectors: filesystem free space, capped by MaxStorage.
    #[serde(rename = "Available")]
    pub available: u64,
    #[serde(rename = "FSAvailable")]
    pub fs_available: u64,
    #[serde(rename = "Reserved")]
    pub reserved: u64,
    #[serde(rename = "Max")]
    pub max: u64,
    /// Bytes used by sector files in this path.
    #[serde(rename = "Used")]
    pub used: u64,
}

/// One place a sector's files are, or could be fetched to (`storiface.SectorStorageInfo`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SectorStorageInfo {
    #[serde(rename = "ID")]
    pub id: uuid::Uuid,
    /// `<base url>/<file type>/<sector name>` per URL of the path.
    #[serde(rename = "URLs")]
    pub urls: Vec<String>,
    #[serde(rename = "BaseURLs")]
    pub base_urls: Vec<String>,
    #[serde(rename = "Weight")]
    pub weight: u64,
    #[serde(rename = "CanSeal")]
    pub can_seal: bool,
    #[serde(rename = "CanStore")]
    pub can_store: bool,
    #[serde(rename = "Primary")]
    pub primary: bool,
    #[serde(rename = "AllowTypes", default, deserialize_with = "null_as_default")]
    pub allow_types: Vec<String>,
    #[serde(rename = "DenyTypes", default, deserialize_with = "null_as_default")]
    pub deny_types: Vec<String>,
    #[serde(rename = "AllowMiners", default, deserialize_with = "null_as_default")]
    pub allow_miners: Vec<String>,
    #[serde(rename = "DenyMiners", default, deserialize_with = "null_as_default")]
    pub deny_miners: Vec<String>,
}

/// The error half of a `Return*` call (`storiface.CallError`). Codes as Lotus: 0 unknown,
/// 1 the worker restarted, 100 temporary, 101 temporary (resources), 102 no space to allocate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallError {
    #[serde(rename = "Code")]
    pub code: u64,
    #[serde(rename = "Message")]
    pub message: String,
}

impl CallError {
    pub const UNKNOWN: u64 = 0;
    pub const RESTARTED: u64 = 1;
    pub const TEMP_UNKNOWN: u64 = 100;
    pub const TEMP_WORKER_RESTART: u64 = 101;
    pub const TEMP_ALLOCATE_SPACE: u64 = 102;

    /// A temporary condition (no space yet, a worker restarting): retrying later can succeed,
    /// so it never counts towards giving a sector up.
    pub fn is_temporary(&self) -> bool {
        (Self::TEMP_UNKNOWN..=Self::TEMP_ALLOCATE_SPACE).contains(&self.code)
    }

    pub fn new(code: u64, message: impl Into<String>) -> Self {
        CallError { code, message: message.into() }
    }
    pub fn unknown(message: impl Into<String>) -> Self {
        CallError::new(Self::UNKNOWN, message)
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (code {})", self.message, self.code)
    }
}

impl std::error::Error for CallError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// `GpuCardsUsed` is our addition to Lotus's `WorkerStats`: absent for a worker without
    /// GPUs (Lotus's keys exactly), and a Lotus `WorkerStats` without it decodes.
    #[test]
    fn gpu_cards_used_is_on_the_wire_only_for_gpu_workers() {
        let mut st = WorkerStats {
            info: WorkerInfo::default(),
            tasks: vec![],
            enabled: true,
            mem_used_min: 0,
            mem_used_max: 0,
            gpu_used: 0.0,
            gpu_cards_used: vec![],
            cpu_use: 0,
            task_counts: Default::default(),
        };
        let v = serde_json::to_value(&st).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["CpuUse", "Enabled", "GpuUsed", "Info", "MemUsedMax", "MemUsedMin", "TaskCounts", "Tasks"]);
        assert!(serde_json::from_value::<WorkerStats>(v).unwrap().gpu_cards_used.is_empty());
        st.gpu_cards_used = vec![0.6, 0.0];
        assert_eq!(serde_json::to_value(&st).unwrap()["GpuCardsUsed"], serde_json::json!([0.6, 0.0]));
    }
}
