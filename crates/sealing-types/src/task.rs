//! Task types with the original's strings, short names and scheduling order (reference §2.1).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// One kind of work the scheduler hands to a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaskType {
    DataCid,
    AddPiece,
    PreCommit1,
    PreCommit2,
    Commit1,
    Commit2,
    Finalize,
    FinalizeUnsealed,
    Fetch,
    Unseal,
    ReplicaUpdate,
    ProveReplicaUpdate1,
    ProveReplicaUpdate2,
    RegenSectorKey,
    FinalizeReplicaUpdate,
    DownloadSector,
    GenerateWindowPoSt,
    GenerateWinningPoSt,
}

/// Which scheduler a worker belongs to, decided by its task types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WorkerType {
    Sealing,
    WdPoSt,
    WinPost,
}

impl TaskType {
    pub const ALL: [TaskType; 18] = [
        TaskType::DataCid,
        TaskType::AddPiece,
        TaskType::PreCommit1,
        TaskType::PreCommit2,
        TaskType::Commit1,
        TaskType::Commit2,
        TaskType::Finalize,
        TaskType::FinalizeUnsealed,
        TaskType::Fetch,
        TaskType::Unseal,
        TaskType::ReplicaUpdate,
        TaskType::ProveReplicaUpdate1,
        TaskType::ProveReplicaUpdate2,
        TaskType::RegenSectorKey,
        TaskType::FinalizeReplicaUpdate,
        TaskType::DownloadSector,
        TaskType::GenerateWindowPoSt,
        TaskType::GenerateWinningPoSt,
    ];

    /// The wire string, e.g. `seal/v0/precommit/1`.
    pub fn as_str(self) -> &'static str {
        use TaskType::*;
        match self {
            DataCid => "seal/v0/datacid",
            AddPiece => "seal/v0/addpiece",
            PreCommit1 => "seal/v0/precommit/1",
            PreCommit2 => "seal/v0/precommit/2",
            Commit1 => "seal/v0/commit/1",
            Commit2 => "seal/v0/commit/2",
            Finalize => "seal/v0/finalize",
            FinalizeUnsealed => "seal/v0/finalizeunsealed",
            Fetch => "seal/v0/fetch",
            Unseal => "seal/v0/unseal",
            ReplicaUpdate => "seal/v0/replicaupdate",
            ProveReplicaUpdate1 => "seal/v0/provereplicaupdate/1",
            ProveReplicaUpdate2 => "seal/v0/provereplicaupdate/2",
            RegenSectorKey => "seal/v0/regensectorkey",
            FinalizeReplicaUpdate => "seal/v0/finalize/replicaupdate",
            DownloadSector => "seal/v0/download/sector",
            GenerateWindowPoSt => "post/v0/windowproof",
            GenerateWinningPoSt => "post/v0/winningproof",
        }
    }

    /// The short name used in env overrides and CLI output, e.g. `PC1`.
    pub fn short(self) -> &'static str {
        use TaskType::*;
        match self {
            DataCid => "DC",
            AddPiece => "AP",
            PreCommit1 => "PC1",
            PreCommit2 => "PC2",
            Commit1 => "C1",
            Commit2 => "C2",
            Finalize => "FIN",
            FinalizeUnsealed => "FUS",
            Fetch => "GET",
            Unseal => "UNS",
            ReplicaUpdate => "RU",
            ProveReplicaUpdate1 => "PR1",
            ProveReplicaUpdate2 => "PR2",
            RegenSectorKey => "GSK",
            FinalizeReplicaUpdate => "FRU",
            DownloadSector => "DL",
            GenerateWindowPoSt => "WDP",
            GenerateWinningPoSt => "WNP",
        }
    }

    /// Scheduling order: lower runs earlier; negative orders always beat positive ones
    /// regardless of priority (reference §3.2).
    pub fn order(self) -> i32 {
        use TaskType::*;
        match self {
            DataCid => 10,
            AddPiece => 9,
            PreCommit1 => 5,
            PreCommit2 => 4,
            Commit1 => 2,
            Commit2 => 3,
            Finalize => -3,
            FinalizeUnsealed => -4,
            Fetch => -1,
            Unseal => 1,
            ReplicaUpdate => 8,
            ProveReplicaUpdate1 => 6,
            ProveReplicaUpdate2 => 7,
            RegenSectorKey => 11,
            FinalizeReplicaUpdate => 0,
            DownloadSector => -2,
            GenerateWindowPoSt => -5,
            GenerateWinningPoSt => -6,
        }
    }

    pub fn worker_type(self) -> WorkerType {
        match self {
            TaskType::GenerateWindowPoSt => WorkerType::WdPoSt,
            TaskType::GenerateWinningPoSt => WorkerType::WinPost,
            _ => WorkerType::Sealing,
        }
    }

    /// False only for DataCid, whose resources do not depend on the sector size.
    pub fn sector_sized(self) -> bool {
        self != TaskType::DataCid
    }

    pub fn from_short(s: &str) -> Option<TaskType> {
        TaskType::ALL.into_iter().find(|t| t.short().eq_ignore_ascii_case(s))
    }

    /// Sort task types the way the CLI lists them: by scheduling order, then by name.
    pub fn sort_by_order(types: &mut [TaskType]) {
        types.sort_by_key(|t| (t.order(), t.as_str()));
    }
}

impl fmt::Display for TaskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown task type {0:?}: expected one of {list}", list = TaskType::ALL.iter().map(|t| t.short()).collect::<Vec<_>>().join(", "))]
pub struct UnknownTaskType(pub String);

impl FromStr for TaskType {
    type Err = UnknownTaskType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .or_else(|| TaskType::from_short(s))
            .ok_or_else(|| UnknownTaskType(s.to_string()))
    }
}

impl Serialize for TaskType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TaskType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for t in TaskType::ALL {
            assert!(seen.insert(t.as_str()));
            assert_eq!(t.as_str().parse::<TaskType>().unwrap(), t);
            assert_eq!(TaskType::from_short(t.short()), Some(t));
        }
        assert!("seal/v0/nope".parse::<TaskType>().is_err());
    }

    #[test]
    fn positive_orders_match_reference() {
        let mut pos: Vec<TaskType> = TaskType::ALL.into_iter().filter(|t| t.order() > 0).collect();
        TaskType::sort_by_order(&mut pos);
        let shorts: Vec<_> = pos.iter().map(|t| t.short()).collect();
        assert_eq!(shorts, ["UNS", "C1", "C2", "PC2", "PC1", "PR1", "PR2", "RU", "AP", "DC", "GSK"]);
    }
}

/// How long each task type takes under the mock proof backend (tests and benchmarks: a "long
/// Commit2" without the CPU it would cost). Task types not listed take no time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MockDurations(pub std::collections::BTreeMap<TaskType, std::time::Duration>);

impl MockDurations {
    pub fn of(&self, task: TaskType) -> std::time::Duration {
        self.0.get(&task).copied().unwrap_or_default()
    }
}
