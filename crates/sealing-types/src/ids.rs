//! Newtype identifiers. Never pass bare UUIDs or integers where one of these is meant.

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// A worker's identity: the random session UUID the worker process generated at start
/// (reference §2.6). A restarted worker is a new `WorkerId`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkerId(pub Uuid);

impl WorkerId {
    pub fn new_random() -> Self {
        WorkerId(Uuid::new_v4())
    }
    /// The all-zero session a worker reports once it has shut down ("closed").
    pub const CLOSED: WorkerId = WorkerId(Uuid::nil());

    /// First 4 bytes in hex, as `sealing jobs` prints worker IDs.
    pub fn short(&self) -> String {
        self.0.simple().to_string()[..8].to_string()
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Identity of one scheduling request in the miner's queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SchedId(pub Uuid);

impl SchedId {
    pub fn new_random() -> Self {
        SchedId(Uuid::new_v4())
    }
    /// A deterministic ID, for simulations and tests.
    pub fn from_u128(n: u128) -> Self {
        SchedId(Uuid::from_u128(n))
    }
}

impl fmt::Display for SchedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A sector: miner actor ID and sector number. JSON `{"Miner":1000,"Number":9}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SectorId {
    #[serde(rename = "Miner")]
    pub miner: u64,
    #[serde(rename = "Number")]
    pub number: u64,
}

impl SectorId {
    /// The on-disk name of the sector's files, `s-t0<miner>-<number>`.
    pub fn file_name(&self) -> String {
        format!("s-t0{}-{}", self.miner, self.number)
    }

    /// Parse `s-t0<miner>-<number>` strictly (digits only), so that a name from the network
    /// can never name anything but a sector file.
    pub fn parse_file_name(name: &str) -> Option<SectorId> {
        let rest = name.strip_prefix("s-t0")?;
        let (m, n) = rest.split_once('-')?;
        let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(m) || !digits(n) {
            return None;
        }
        Some(SectorId { miner: m.parse().ok()?, number: n.parse().ok()? })
    }
}

impl fmt::Display for SectorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file_name())
    }
}

/// A sector together with its seal proof type: `{"ID":{...},"ProofType":8}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SectorRef {
    #[serde(rename = "ID")]
    pub id: SectorId,
    #[serde(rename = "ProofType")]
    pub proof_type: crate::RegisteredSealProof,
}

/// Identity of one asynchronous call on a worker: `{"Sector":{...},"ID":"<uuid>"}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CallId {
    #[serde(rename = "Sector")]
    pub sector: SectorId,
    #[serde(rename = "ID")]
    pub id: Uuid,
}
