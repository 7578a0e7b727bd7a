//! The sector state machine (reference §1.5): Packing → GetTicket → PreCommit1 → PreCommit2 →
//! PreCommitting → PreCommitWait → WaitSeed → Committing → SubmitCommit → CommitWait →
//! FinalizeSector → Proving, with failure states that retry. PreCommitting and SubmitCommit
//! push a message to the chain (through the full node) and record its CID; the Wait states
//! wait for it, so a restarted miner waits for the message it sent instead of sending again.
//!
//! Every sector lives in an embedded SQLite database in the miner repo (`sealing.db`). A
//! state is written before the work of that state starts, so a restarted miner resumes each
//! sector at the state it was in.

use crate::batch::{BatchConfig, Batcher};
use crate::chain::{ChainClient, ChainError, CommitProof, Epoch, PreCommitSpec};
use crate::manager::{Manager, TaskSpec};
use crate::numbers::Numbers;
use lotus_api::chain::policy;
use lotus_api::types::CallError;
use lotus_api::wire::Bytes;
use rusqlite::{params, Connection, OptionalExtension};
use sealing_proofs::{Commitment, PieceInfo};
use sealing_sched::{Selector, DEAL_SECTOR_PRIORITY};
use sealing_types::{FileType, FileTypes, PathType, RegisteredSealProof, SectorId, SectorRef, TaskType};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// The enum and its list of every variant, from one list.
macro_rules! sector_states {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// Sector states with Lotus's names.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
        pub enum SectorState {
            $($(#[$doc])* $name,)*
        }

        impl SectorState {
            pub const ALL: &[SectorState] = &[$(SectorState::$name,)*];
        }
    };
}

sector_states! {
    Packing,
    GetTicket,
    PreCommit1,
    PreCommit2,
    PreCommitting,
    /// The PreCommitSectorBatch2 message is pushed: waiting for it to land.
    PreCommitWait,
    /// Waiting in the pre-commit batch (`sectors batching precommit`) for its message.
    SubmitPreCommitBatch,
    /// The batch's PreCommitSectorBatch2 is pushed: waiting for it to land.
    PreCommitBatchWait,
    WaitSeed,
    Committing,
    /// The proof is computed: pushing the ProveCommitSectors3 message.
    SubmitCommit,
    /// The ProveCommitSectors3 message is pushed: waiting for it to land.
    CommitWait,
    /// Waiting in the commit batch (`sectors batching commit`) for its message.
    SubmitCommitAggregate,
    /// The batch's ProveCommitSectors3 is pushed: waiting for it to land.
    CommitAggregateWait,
    FinalizeSector,
    Proving,
    AddPieceFailed,
    SealPreCommit1Failed,
    SealPreCommit2Failed,
    PreCommitFailed,
    ComputeProofFailed,
    CommitFailed,
    FinalizeFailed,
    FailedUnrecoverable,
    /// `sectors terminate`: queued in the termination batch until its message is sent.
    Terminating,
    /// The TerminateSectors message is pushed: waiting for it to land.
    TerminateWait,
    /// Terminated on chain: waiting for the termination to be final before deleting files.
    TerminateFinality,
    TerminateFailed,
    /// `sectors snap-up`: a proving CC sector waiting for data to be upgraded with.
    Available,
    /// Snap deals (Lotus's upgrade states): data assigned, waiting to be added.
    SnapDealsWaitDeals,
    SnapDealsAddPiece,
    SnapDealsPacking,
    /// ReplicaUpdate: the data encoded over the sector key.
    UpdateReplica,
    /// ProveReplicaUpdate1 and 2: the update proof.
    ProveReplicaUpdate,
    /// The update's files trimmed and moved to long-term storage before the message is sent.
    FinalizeReplicaUpdate,
    /// Sending ProveReplicaUpdates3.
    SubmitReplicaUpdate,
    /// The sector's deadline is open or opens next: waiting until it may be changed.
    WaitMutable,
    /// The ProveReplicaUpdates3 message is pushed: waiting for it to land.
    ReplicaUpdateWait,
    /// Landed: waiting until no PoSt may still pick the old replica.
    UpdateActivating,
    /// The sector key (the old sealed file) deleted.
    ReleaseSectorKey,
    SnapDealsAddPieceFailed,
    SnapDealsDealsExpired,
    SnapDealsRecoverDealIDs,
    ReplicaUpdateFailed,
    FinalizeReplicaUpdateFailed,
    ReleaseSectorKeyFailed,
    /// `sectors abort-upgrade`: the update's files removed, the sector back to Proving as it was.
    AbortUpgrade,
    /// `sectors remove`: the sector's files are being deleted from every storage path.
    Removing,
    RemoveFailed,
    Removed,
}

impl SectorState {
    pub fn name(self) -> String {
        format!("{self:?}")
    }

    pub fn from_name(name: &str) -> Option<SectorState> {
        SectorState::ALL.iter().copied().find(|s| s.name() == name)
    }

    /// What a sector must hold to be in this state (a failure state needs what the state it
    /// retries needs): `update-state` refuses a state whose data the sector lacks, where Lotus
    /// would run the state on zeros.
    fn missing(self, s: &SectorInfo) -> Option<&'static str> {
        use SectorState::*;
        let state = self.retry_target().unwrap_or(self);
        let need: &[(&'static str, bool)] = match state {
            PreCommit1 => &[("a ticket", s.ticket.is_some())],
            PreCommit2 => &[("a PreCommit1 output", s.pc1.is_some())],
            PreCommitting | SubmitPreCommitBatch => &[("CommR and CommD", s.comm_r.is_some() && s.comm_d.is_some())],
            PreCommitWait | PreCommitBatchWait => &[("a pre-commit message", s.precommit_message.is_some())],
            WaitSeed => &[("a pre-commit on chain", s.precommit_epoch.is_some() && s.comm_r.is_some())],
            SubmitCommit => &[("a proof", s.proof_bytes.is_some())],
            SubmitCommitAggregate => &[
                ("a proof", s.proof_bytes.is_some()),
                ("a seed", s.seed.is_some()),
                ("a ticket", s.ticket.is_some()),
                ("CommR and CommD", s.comm_r.is_some() && s.comm_d.is_some()),
            ],
            CommitWait | CommitAggregateWait => &[("a commit message", s.commit_message.is_some())],
            TerminateWait => &[("a terminate message", s.termination.as_ref().is_some_and(|t| t.message.is_some()))],
            TerminateFinality => &[("a termination epoch", s.termination.as_ref().is_some_and(|t| t.at.is_some()))],
            Committing => {
                &[("a seed", s.seed.is_some()), ("a ticket", s.ticket.is_some()), ("CommR", s.comm_r.is_some())]
            }
            FinalizeSector | Proving | Available => &[("a proof", s.proof_bytes.is_some())],
            SnapDealsWaitDeals
            | SnapDealsAddPiece
            | SnapDealsPacking
            | UpdateReplica
            | AbortUpgrade
            | SnapDealsDealsExpired
            | SnapDealsRecoverDealIDs => &[("an upgrade", s.upgrade.is_some())],
            ProveReplicaUpdate => &[(
                "the update's CommR and CommD",
                s.upgrade.as_ref().is_some_and(|u| u.comm_r.is_some() && u.comm_d.is_some()),
            )],
            FinalizeReplicaUpdate | SubmitReplicaUpdate | WaitMutable => {
                &[("an update proof", s.upgrade.as_ref().is_some_and(|u| u.proof.is_some()))]
            }
            ReplicaUpdateWait => {
                &[("a replica update message", s.upgrade.as_ref().is_some_and(|u| u.message.is_some()))]
            }
            UpdateActivating | ReleaseSectorKey => {
                &[("a landed replica update", s.upgrade.as_ref().is_some_and(|u| u.landed.is_some()))]
            }
            _ => &[],
        };
        need.iter().find(|(_, ok)| !ok).map(|(what, _)| *what)
    }
    /// The state a failure state retries.
    fn retry_target(self) -> Option<SectorState> {
        use SectorState::*;
        Some(match self {
            AddPieceFailed => Packing,
            SealPreCommit1Failed => PreCommit1,
            SealPreCommit2Failed => PreCommit2,
            PreCommitFailed => PreCommitting,
            ComputeProofFailed | CommitFailed => Committing,
            FinalizeFailed => FinalizeSector,
            RemoveFailed => Removing,
            TerminateFailed => Terminating,
            SnapDealsAddPieceFailed => SnapDealsWaitDeals,
            // Its least step; [`SectorInfo::retry`] picks the step by what the sector holds.
            ReplicaUpdateFailed => UpdateReplica,
            FinalizeReplicaUpdateFailed => FinalizeReplicaUpdate,
            ReleaseSectorKeyFailed => ReleaseSectorKey,
            _ => return None,
        })
    }
    fn failure(self) -> SectorState {
        use SectorState::*;
        match self {
            Packing => AddPieceFailed,
            GetTicket | PreCommit1 => SealPreCommit1Failed,
            PreCommit2 => SealPreCommit2Failed,
            PreCommitting | PreCommitWait | SubmitPreCommitBatch | PreCommitBatchWait | WaitSeed => PreCommitFailed,
            Committing => ComputeProofFailed,
            SubmitCommit | CommitWait | SubmitCommitAggregate | CommitAggregateWait => CommitFailed,
            FinalizeSector => FinalizeFailed,
            Removing => RemoveFailed,
            Terminating | TerminateWait | TerminateFinality => TerminateFailed,
            SnapDealsWaitDeals | SnapDealsAddPiece | SnapDealsPacking => SnapDealsAddPieceFailed,
            UpdateReplica | ProveReplicaUpdate | SubmitReplicaUpdate | WaitMutable | ReplicaUpdateWait
            | UpdateActivating => ReplicaUpdateFailed,
            FinalizeReplicaUpdate => FinalizeReplicaUpdateFailed,
            ReleaseSectorKey => ReleaseSectorKeyFailed,
            s => s,
        }
    }
    /// Counted as "sealing" for MaxSealingSectors (staging + sealing + failed).
    pub fn is_sealing(self) -> bool {
        use SectorState::*;
        // Lotus counts an upgrade's last states (and Available) as proving.
        !matches!(self, Proving | FailedUnrecoverable | Available | UpdateActivating | ReleaseSectorKey)
            && !self.is_removal()
    }

    /// A snap-deal state: the sector is proving on chain all along.
    pub fn is_upgrade(self) -> bool {
        use SectorState::*;
        matches!(
            self,
            SnapDealsWaitDeals
                | SnapDealsAddPiece
                | SnapDealsPacking
                | UpdateReplica
                | ProveReplicaUpdate
                | FinalizeReplicaUpdate
                | SubmitReplicaUpdate
                | WaitMutable
                | ReplicaUpdateWait
                | UpdateActivating
                | ReleaseSectorKey
                | SnapDealsAddPieceFailed
                | SnapDealsDealsExpired
                | SnapDealsRecoverDealIDs
                | ReplicaUpdateFailed
                | FinalizeReplicaUpdateFailed
                | ReleaseSectorKeyFailed
                | AbortUpgrade
        )
    }

    /// Where `sectors abort-upgrade` is accepted (Lotus's: up to ProveReplicaUpdate, and while
    /// waiting; not once the update's files are final or its message is being sent).
    pub fn can_abort_upgrade(self) -> bool {
        use SectorState::*;
        self.is_upgrade()
            && !matches!(
                self,
                FinalizeReplicaUpdate
                    | FinalizeReplicaUpdateFailed
                    | SubmitReplicaUpdate
                    | UpdateActivating
                    | ReleaseSectorKey
                    | ReleaseSectorKeyFailed
                    | AbortUpgrade
            )
    }

    fn is_removal(self) -> bool {
        matches!(self, SectorState::Removing | SectorState::RemoveFailed | SectorState::Removed)
    }

    /// On its way off the chain (`sectors terminate`).
    fn is_termination(self) -> bool {
        use SectorState::*;
        matches!(self, Terminating | TerminateWait | TerminateFinality | TerminateFailed)
    }

    /// No state machine runs in this state.
    fn is_final(self) -> bool {
        use SectorState::*;
        matches!(self, Proving | FailedUnrecoverable | Removed | Available)
    }

    /// Where a state's own work may lead when it succeeds (failures, retries, removal and
    /// giving up are the rules of [`SectorState::can_become`]).
    fn successors(self) -> &'static [SectorState] {
        use SectorState::*;
        match self {
            Packing => &[GetTicket],
            GetTicket => &[PreCommit1],
            PreCommit1 => &[PreCommit2],
            PreCommit2 => &[PreCommitting],
            // The message sent (or the sector queued for a batch), or an earlier one found on chain.
            PreCommitting => &[PreCommitWait, SubmitPreCommitBatch, WaitSeed],
            PreCommitWait | PreCommitBatchWait => &[WaitSeed],
            SubmitPreCommitBatch => &[PreCommitBatchWait, WaitSeed],
            WaitSeed => &[Committing],
            Committing => &[SubmitCommit, SubmitCommitAggregate],
            SubmitCommit => &[CommitWait, FinalizeSector],
            SubmitCommitAggregate => &[CommitAggregateWait, FinalizeSector],
            CommitWait | CommitAggregateWait => &[FinalizeSector],
            FinalizeSector => &[Proving],
            // Not on chain (never proven): removed instead.
            Terminating => &[TerminateWait, TerminateFinality, Removing],
            TerminateWait => &[TerminateFinality],
            TerminateFinality => &[Removing],
            Removing => &[Removed],
            SnapDealsWaitDeals => &[SnapDealsAddPiece],
            SnapDealsAddPiece => &[SnapDealsPacking],
            SnapDealsPacking => &[UpdateReplica],
            UpdateReplica => &[ProveReplicaUpdate],
            ProveReplicaUpdate => &[FinalizeReplicaUpdate],
            FinalizeReplicaUpdate => &[SubmitReplicaUpdate],
            // Sent, or its deadline is immutable, or an earlier run's message landed.
            SubmitReplicaUpdate => &[ReplicaUpdateWait, WaitMutable, UpdateActivating],
            WaitMutable => &[SubmitReplicaUpdate],
            ReplicaUpdateWait => &[UpdateActivating],
            UpdateActivating => &[ReleaseSectorKey],
            ReleaseSectorKey => &[Proving],
            // No deals here to expire or recover: both give the upgrade up.
            SnapDealsDealsExpired | SnapDealsRecoverDealIDs => &[AbortUpgrade],
            AbortUpgrade => &[Proving],
            _ => &[],
        }
    }

    /// The transition table: whether the state machine may move a sector from `self` to `to`.
    /// A step's success goes to one of its successors, its failure to its failure state; a
    /// failure state retries the state it failed in; any state but a removal may be removed;
    /// a sector that failed too often is given up. (`sectors update-state` is the operator's
    /// override and is not bound by it, as in Lotus.)
    pub fn can_become(self, to: SectorState) -> bool {
        use SectorState::*;
        if self.successors().contains(&to) {
            return true;
        }
        if self.is_removal() {
            return (self, to) == (Removing, RemoveFailed) || (self, to) == (RemoveFailed, Removing);
        }
        if to == Removing {
            return true;
        }
        // `sectors terminate`, from any state but a termination (Lotus's global event).
        if to == Terminating && !self.is_termination() {
            return true;
        }
        // The operator's snap-deal edges: `snap-up`, data for an Available sector, and
        // `abort-upgrade` (which the state machine also takes when an upgrade cannot go on).
        match (self, to) {
            (Proving, Available) | (Available, SnapDealsWaitDeals) | (Available, Proving) => return true,
            (s, AbortUpgrade) if s.can_abort_upgrade() => return true,
            (ReplicaUpdateFailed, ProveReplicaUpdate | SubmitReplicaUpdate | ReplicaUpdateWait) => return true,
            _ => {}
        }
        if self.is_final() {
            return false;
        }
        // An upgrading sector is proving on chain: it is never given up (it retries, or its
        // upgrade is aborted).
        if self.is_upgrade() && to == FailedUnrecoverable {
            return false;
        }
        (self.failure() == to && to != self)
            || self.retry_target() == Some(to)
            || (self, to) == (SealPreCommit2Failed, PreCommit1)
            || to == FailedUnrecoverable
    }
}

impl SectorInfo {
    /// A new sector, in Packing, knowing nothing yet.
    pub fn new(number: u64, proof: RegisteredSealProof, has_data: bool) -> SectorInfo {
        SectorInfo {
            number,
            state: SectorState::Packing,
            proof,
            has_data,
            data_len: 0,
            pieces: vec![],
            ticket: None,
            ticket_epoch: None,
            pc1: None,
            comm_r: None,
            comm_d: None,
            precommit_epoch: None,
            seed: None,
            seed_epoch: None,
            proof_bytes: None,
            precommit_message: None,
            commit_message: None,
            termination: None,
            upgrade: None,
            retries: 0,
            last_error: String::new(),
            pc2_fails: 0,
        }
    }
}

/// A sector's way off the chain.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Termination {
    /// The CID of the TerminateSectors message that carries the sector.
    pub message: Option<String>,
    /// The epoch its termination landed at.
    pub at: Option<Epoch>,
}

/// A snap deal: what the sector held before (restored by an abort) and what the update made
/// (Lotus's CCPieces, UpdateSealed, UpdateUnsealed, ReplicaUpdateProof, ReplicaUpdateMessage).
/// The sector's own `comm_r`/`comm_d` stay the original ones (the sector key's).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Upgrade {
    pub cc_pieces: Vec<PieceInfo>,
    /// The updated replica's CommR and the new data's CommD.
    pub comm_r: Option<Commitment>,
    pub comm_d: Option<Commitment>,
    /// The update proof (ProveReplicaUpdate2), base64.
    pub proof: Option<String>,
    /// The CID of the ProveReplicaUpdates3 message.
    pub message: Option<String>,
    /// The epoch it landed at: from then on the sector is proven from its update.
    pub landed: Option<Epoch>,
}

impl Upgrade {
    fn proof_bytes(&self) -> Result<Vec<u8>, CallError> {
        let b64 = self.proof.as_deref().ok_or_else(|| CallError::unknown("no update proof recorded"))?;
        Bytes::from_base64(b64).map(|b| b.0).map_err(|e| CallError::unknown(format!("the recorded update proof: {e}")))
    }
}

/// Everything the miner knows about a sector; stored as JSON in `sealing.db`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SectorInfo {
    pub number: u64,
    pub state: SectorState,
    pub proof: RegisteredSealProof,
    /// Sealed with the bytes of a piece file (a "deal" sector) rather than zeros (CC).
    pub has_data: bool,
    /// Bytes of piece data (the rest of the sector is zeros).
    #[serde(default)]
    pub data_len: u64,
    pub pieces: Vec<PieceInfo>,
    pub ticket: Option<[u8; 32]>,
    pub ticket_epoch: Option<Epoch>,
    /// Boxed: held only between PreCommit1 and PreCommit2, while every record is carried by its
    /// sector's state machine for its whole life.
    pub pc1: Option<Box<serde_json::Value>>,
    pub comm_r: Option<Commitment>,
    pub comm_d: Option<Commitment>,
    pub precommit_epoch: Option<Epoch>,
    pub seed: Option<[u8; 32]>,
    pub seed_epoch: Option<Epoch>,
    /// The Commit2 proof, base64.
    pub proof_bytes: Option<String>,
    /// The CID of the PreCommitSectorBatch2 message that carries the sector.
    #[serde(default)]
    pub precommit_message: Option<String>,
    /// The CID of the ProveCommitSectors3 message.
    #[serde(default)]
    pub commit_message: Option<String>,
    /// Its termination (`sectors terminate`): boxed, so that every other sector's record
    /// (held by its state machine for its whole life) stays small.
    #[serde(default)]
    pub termination: Option<Box<Termination>>,
    /// Its snap deal (`sectors snap-up`), in progress or done: boxed as `termination` is.
    #[serde(default)]
    pub upgrade: Option<Box<Upgrade>>,
    /// Failures in a row, reset on success.
    pub retries: u32,
    pub last_error: String,
    /// PreCommit2 failures since the sector's last PreCommit1: past [`PC2_FALLBACK`], it seals
    /// again from PreCommit1 (Lotus's rule: a PreCommit1 output that keeps failing PC2 is bad).
    #[serde(default)]
    pub pc2_fails: u32,
}

/// PreCommit2 failures after which the sector goes back to PreCommit1 (Lotus: more than 3).
pub const PC2_FALLBACK: u32 = 3;

impl SectorInfo {
    /// Where a sector in a failure state retries, and the log line saying so.
    pub fn retry(&self) -> Option<(SectorState, String)> {
        let mut target = self.state.retry_target()?;
        if self.state == SectorState::ReplicaUpdateFailed {
            // Lotus's handleSubmitReplicaUpdateFailed: from the furthest step the sector has
            // the data for.
            let u = self.upgrade.as_deref().cloned().unwrap_or_default();
            target = if u.message.is_some() {
                SectorState::ReplicaUpdateWait
            } else if u.proof.is_some() {
                SectorState::SubmitReplicaUpdate
            } else if u.comm_r.is_some() && u.comm_d.is_some() {
                SectorState::ProveReplicaUpdate
            } else {
                SectorState::UpdateReplica
            };
        }
        if self.state == SectorState::SealPreCommit2Failed && self.pc2_fails > PC2_FALLBACK {
            return Some((
                SectorState::PreCommit1,
                format!("PreCommit2 failed {} times: sealing again from PreCommit1", self.pc2_fails),
            ));
        }
        Some((target, format!("retrying {}", target.name())))
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct LogEntry {
    #[serde(rename = "Kind")]
    pub kind: String,
    #[serde(rename = "Timestamp")]
    pub timestamp: u64,
    #[serde(rename = "Message")]
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SealingError {
    #[error("sector database {path}: {source}")]
    Db { path: String, source: rusqlite::Error },
    #[error("too many sectors sealing (curSealing: {cur}, max: {max})")]
    TooMany { cur: u64, max: u64 },
    #[error("sector {0} not found")]
    NotFound(u64),
    #[error("sector {0} is not in Proving: unseal it once it is sealed")]
    NotSealed(u64),
    #[error("sector database {path}: the {what} record cannot be read ({message}); restore it from a backup")]
    Corrupt { path: String, what: &'static str, message: String },
    #[error(transparent)]
    Numbers(#[from] crate::numbers::NumberError),
    #[error("sector {number} cannot go to {state}: it has no {what} yet")]
    MissingForState { number: u64, state: String, what: &'static str },
    #[error("{0:?} is not a sector state; the states are: {1}")]
    NoSuchState(String, String),
    #[error("sector database {path} has schema version {found}, written by a newer lotus-miner (this one reads up to version {supported}): run the newer lotus-miner, or restore a backup made by this one")]
    NewerSchema { path: String, found: i64, supported: i64 },
    #[error("sector {number}'s record in {path} cannot be read ({message}); it is quarantined (kept in the database's quarantine table, not resumed): restore it from a backup, or remove it with `sectors remove`")]
    Quarantined { path: String, number: u64, message: String },
    #[error("sector {0} already exists: a new sector never overwrites one")]
    Exists(u64),
}

/// A chain error as the sector's error: a node that cannot be reached is temporary (the
/// sector retries without counting it); anything else counts.
fn chain_err(e: ChainError) -> CallError {
    if e.is_unreachable() {
        return CallError::new(CallError::TEMP_UNKNOWN, e.to_string());
    }
    CallError::unknown(e.to_string())
}

fn message_cid(cid: &Option<String>) -> Result<lotus_api::wire::Cid, CallError> {
    let text = cid.as_deref().ok_or_else(|| CallError::unknown("no message CID recorded for this state"))?;
    text.parse().map_err(|e: String| CallError::unknown(format!("the recorded message CID: {e}")))
}

/// Where the sector number assigner's state is kept (the `meta` table).
const NUMBERS_KEY: &str = "sector_numbers";

/// The schema, one migration per version (`PRAGMA user_version` holds the last one applied).
/// Version 1 is the schema of every miner before versions existed (hence `IF NOT EXISTS`).
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS sectors (number INTEGER PRIMARY KEY, state TEXT NOT NULL, info TEXT NOT NULL);
     CREATE TABLE IF NOT EXISTS sector_log (id INTEGER PRIMARY KEY AUTOINCREMENT, number INTEGER NOT NULL,
         ts INTEGER NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL);
     CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
     -- Counting sectors per state (each metrics scrape) reads this index, not every row's JSON.
     CREATE INDEX IF NOT EXISTS sectors_by_state ON sectors (state);",
    // Rows that cannot be read, kept with the reason instead of vanishing.
    "CREATE TABLE quarantine (number INTEGER PRIMARY KEY, state TEXT NOT NULL, info TEXT NOT NULL,
         error TEXT NOT NULL, ts INTEGER NOT NULL);",
];
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub struct Db {
    conn: Connection,
    path: String,
}

impl Db {
    pub fn open(path: &Path) -> Result<Db, SealingError> {
        let p = path.display().to_string();
        let err = |source| SealingError::Db { path: p.clone(), source };
        let conn = Connection::open(path).map_err(err)?;
        // WAL with synchronous=NORMAL: a commit is in the log (the OS has it) before `put`
        // returns, so a killed or crashed miner loses no state change; only a power cut can
        // lose the last ones, whose steps are then run again. FULL (an fsync per commit) cost
        // about 8 ms per state change, and queued 64 concurrent pledges for half a second
        // (the scale benchmark). Lotus's own sector store does not sync its writes either.
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;").map_err(err)?;
        let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(err)?;
        if found > SCHEMA_VERSION {
            return Err(SealingError::NewerSchema { path: p, found, supported: SCHEMA_VERSION });
        }
        // Each migration runs once, in order, in one transaction with its version bump.
        for (i, sql) in MIGRATIONS.iter().enumerate() {
            let version = i as i64 + 1;
            if version <= found {
                continue;
            }
            let tx = conn.unchecked_transaction().map_err(err)?;
            tx.execute_batch(sql).map_err(err)?;
            tx.execute_batch(&format!("PRAGMA user_version = {version}")).map_err(err)?;
            tx.commit().map_err(err)?;
        }
        Ok(Db { conn, path: p })
    }

    /// Move every sector row that cannot be read into the quarantine table (with the reason
    /// and a log line), so that it is reported instead of vanishing; returns their numbers
    /// and reasons.
    pub fn quarantine_unreadable(&self) -> Result<Vec<(u64, String)>, SealingError> {
        let mut q = self.conn.prepare("SELECT number, state, info FROM sectors ORDER BY number").map_err(self.err())?;
        let rows = q
            .query_map([], |r| Ok((r.get::<_, u64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
            .map_err(self.err())?;
        let bad: Vec<(u64, String, String, String)> = rows
            .flatten()
            .filter_map(|(n, state, info)| {
                serde_json::from_str::<SectorInfo>(&info).err().map(|e| (n, state, info, e.to_string()))
            })
            .collect();
        drop(q);
        for (n, state, info, why) in &bad {
            let tx = self.conn.unchecked_transaction().map_err(self.err())?;
            tx.execute(
                "INSERT OR REPLACE INTO quarantine (number, state, info, error, ts) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![n, state, info, why, now_secs()],
            )
            .map_err(self.err())?;
            tx.execute("DELETE FROM sectors WHERE number = ?1", [n]).map_err(self.err())?;
            tx.execute(
                "INSERT INTO sector_log (number, ts, kind, message) VALUES (?1, ?2, 'error', ?3)",
                params![n, now_secs(), format!("quarantined: the record (in {state}) cannot be read: {why}")],
            )
            .map_err(self.err())?;
            tx.commit().map_err(self.err())?;
        }
        Ok(bad.into_iter().map(|(n, _, _, why)| (n, why)).collect())
    }

    /// The quarantined sectors: (number, the state its row was in, why it cannot be read).
    pub fn quarantined(&self) -> Result<Vec<(u64, String, String)>, SealingError> {
        let mut q =
            self.conn.prepare("SELECT number, state, error FROM quarantine ORDER BY number").map_err(self.err())?;
        let rows = q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).map_err(self.err())?;
        Ok(rows.flatten().collect())
    }

    fn quarantine_reason(&self, number: u64) -> Result<Option<String>, SealingError> {
        self.conn
            .prepare_cached("SELECT error FROM quarantine WHERE number = ?1")
            .and_then(|mut q| q.query_row([number], |r| r.get(0)).optional())
            .map_err(self.err())
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> SealingError + '_ {
        move |source| SealingError::Db { path: self.path.clone(), source }
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>, SealingError> {
        self.conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")
            .and_then(|mut q| q.query_row([key], |r| r.get(0)).optional())
            .map_err(self.err())
    }

    // Statements on the per-sector path are prepared once per connection (`prepare_cached`):
    // parsing the SQL was a tenth of a pledge's cost.

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), SealingError> {
        self.conn
            .prepare_cached("INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = ?2")
            .and_then(|mut q| q.execute([key, value]))
            .map(|_| ())
            .map_err(self.err())
    }

    /// The sector number assigner's state. A miner from before reservations had only a
    /// counter: its numbers below the counter, and every number in its sector table, are
    /// allocated.
    pub fn numbers(&self) -> Result<Numbers, SealingError> {
        if let Some(text) = self.meta(NUMBERS_KEY)? {
            return serde_json::from_str(&text).map_err(|e| SealingError::Corrupt {
                path: self.path.clone(),
                what: NUMBERS_KEY,
                message: e.to_string(),
            });
        }
        let next: u64 = self.meta("next_sector")?.and_then(|v| v.parse().ok()).unwrap_or(1);
        let mut q =
            self.conn.prepare("SELECT number FROM sectors UNION SELECT number FROM quarantine").map_err(self.err())?;
        let in_table: Vec<u64> = q.query_map([], |r| r.get(0)).map_err(self.err())?.flatten().collect();
        Ok(Numbers::from_counter(next, in_table))
    }

    pub fn set_numbers(&self, n: &Numbers) -> Result<(), SealingError> {
        self.set_meta(NUMBERS_KEY, &serde_json::to_string(n).expect("serialises"))
    }

    /// Allocate the next sector number: never reused, never reserved, never one the sector
    /// table already holds.
    fn next_number(&self) -> Result<u64, SealingError> {
        let mut numbers = self.numbers()?;
        let n = loop {
            let n = numbers.allocate();
            if self.get_raw(n)?.is_none() && self.quarantine_reason(n)?.is_none() {
                break n;
            }
            tracing::warn!(sector = n, "sector number {n} was free in the assigner but its row exists; skipping it");
        };
        self.set_numbers(&numbers)?;
        Ok(n)
    }

    fn get_raw(&self, number: u64) -> Result<Option<String>, SealingError> {
        self.conn
            .prepare_cached("SELECT info FROM sectors WHERE number = ?1")
            .and_then(|mut q| q.query_row([number], |r| r.get(0)).optional())
            .map_err(self.err())
    }

    pub fn put(&self, s: &SectorInfo, log_kind: &str, message: &str) -> Result<(), SealingError> {
        let tx = self.conn.unchecked_transaction().map_err(self.err())?;
        tx.prepare_cached(
            "INSERT INTO sectors (number, state, info) VALUES (?1, ?2, ?3)
             ON CONFLICT(number) DO UPDATE SET state = ?2, info = ?3",
        )
        .and_then(|mut q| q.execute(params![s.number, s.state.name(), serde_json::to_string(s).expect("serialises")]))
        .map_err(self.err())?;
        tx.prepare_cached("INSERT INTO sector_log (number, ts, kind, message) VALUES (?1, ?2, ?3, ?4)")
            .and_then(|mut q| q.execute(params![s.number, now_secs(), log_kind, message]))
            .map_err(self.err())?;
        tx.commit().map_err(self.err())
    }

    /// A consistent copy of the whole database at `dest` (`VACUUM INTO`), for backups.
    pub fn snapshot(&self, dest: &Path) -> Result<(), SealingError> {
        let dest = dest.to_str().ok_or_else(|| SealingError::Corrupt {
            path: dest.display().to_string(),
            what: "backup path",
            message: "not UTF-8".into(),
        })?;
        self.conn.execute("VACUUM INTO ?1", [dest]).map(|_| ()).map_err(self.err())
    }

    /// Write a state machine's transition, unless a removal was requested while its step ran
    /// (the row is in Removing): then nothing is written and `false` returned.
    pub fn put_transition(&self, s: &SectorInfo, kind: &str, message: &str) -> Result<bool, SealingError> {
        if !s.state.is_removal() {
            let state: Option<String> = self
                .conn
                .prepare_cached("SELECT state FROM sectors WHERE number = ?1")
                .and_then(|mut q| q.query_row([s.number], |r| r.get(0)).optional())
                .map_err(self.err())?;
            if state.as_deref() == Some("Removing") {
                return Ok(false);
            }
        }
        self.put(s, kind, message).map(|()| true)
    }

    /// A sector's record; a quarantined one (or one that cannot be read) is an error that
    /// says so, never "not found".
    pub fn get(&self, number: u64) -> Result<Option<SectorInfo>, SealingError> {
        let quarantined = |message| SealingError::Quarantined { path: self.path.clone(), number, message };
        match self.get_raw(number)? {
            Some(t) => serde_json::from_str(&t).map(Some).map_err(|e| quarantined(e.to_string())),
            None => match self.quarantine_reason(number)? {
                Some(why) => Err(quarantined(why)),
                None => Ok(None),
            },
        }
    }

    /// Write a new sector's first record: refused if the number already has one.
    pub fn create(&self, s: &SectorInfo, message: &str) -> Result<(), SealingError> {
        if self.get_raw(s.number)?.is_some() || self.quarantine_reason(s.number)?.is_some() {
            return Err(SealingError::Exists(s.number));
        }
        self.put(s, "event", message)
    }

    pub fn list(&self) -> Result<Vec<SectorInfo>, SealingError> {
        let mut q = self.conn.prepare("SELECT info FROM sectors ORDER BY number").map_err(self.err())?;
        let rows = q.query_map([], |r| r.get::<_, String>(0)).map_err(self.err())?;
        Ok(rows.flatten().filter_map(|t| serde_json::from_str(&t).ok()).collect())
    }

    /// The `limit` newest sectors' numbers and states, newest first (the dashboard).
    pub fn recent(&self, limit: usize) -> Result<Vec<(u64, String)>, SealingError> {
        let mut q = self
            .conn
            .prepare_cached("SELECT number, state FROM sectors ORDER BY number DESC LIMIT ?1")
            .map_err(self.err())?;
        let rows = q.query_map([limit as i64], |r| Ok((r.get(0)?, r.get(1)?))).map_err(self.err())?;
        Ok(rows.flatten().collect())
    }

    /// How many sectors are in each state (`lotus_sealing_states`), from the state column.
    pub fn count_by_state(&self) -> Result<Vec<(String, i64)>, SealingError> {
        let mut q =
            self.conn.prepare_cached("SELECT state, COUNT(*) FROM sectors GROUP BY state").map_err(self.err())?;
        let rows = q.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(self.err())?;
        Ok(rows.flatten().collect())
    }

    pub fn log(&self, number: u64) -> Result<Vec<LogEntry>, SealingError> {
        let mut q = self
            .conn
            .prepare("SELECT kind, ts, message FROM sector_log WHERE number = ?1 ORDER BY id")
            .map_err(self.err())?;
        let rows = q
            .query_map([number], |r| Ok(LogEntry { kind: r.get(0)?, timestamp: r.get(1)?, message: r.get(2)? }))
            .map_err(self.err())?;
        Ok(rows.flatten().collect())
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs()
}

pub struct SealingConfig {
    pub max_sealing_sectors: u64,
    pub max_sealing_sectors_for_deals: u64,
    /// Wait before a failed state retries.
    pub retry_wait: Duration,
    /// Failures in a row before a sector is given up (FailedUnrecoverable).
    pub max_retries: u32,
    /// `[Sealing] AlwaysKeepUnsealedCopy`: a deal sector's unsealed copy goes to long-term
    /// storage with its sealed copy instead of being deleted.
    pub keep_unsealed: bool,
    /// `[Sealing] BatchPreCommits`: sectors wait in the pre-commit batch.
    pub batch_pre_commits: bool,
    /// `[Sealing] AggregateCommits`: sectors wait in the commit batch.
    pub aggregate_commits: bool,
    /// `[Sealing] CommittedCapacitySectorLifetime`: how long a sector is committed for.
    pub cc_lifetime: Duration,
    /// `[Sealing] MaxUpgradingSectors`: snap deals at once (0: MaxSealingSectorsForDeals).
    pub max_upgrading_sectors: u64,
    /// `[Sealing] PreferNewSectorsForDeals`: data goes to a new sector, not an Available one.
    pub prefer_new_sectors_for_deals: bool,
    /// `[Sealing] MinUpgradeSectorExpiration`: epochs an upgraded sector must still have.
    pub min_upgrade_sector_expiration: u64,
}

/// The shortest deal (the market actor's DealMinDuration, 180 days of 30 s epochs): a sector
/// expiring sooner cannot hold one (Lotus's `snap-up` check).
pub const DEAL_MIN_DURATION: Epoch = 180 * 2880;

#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("non-snap sector upgrades are not supported: use `sectors snap-up`")]
    NotSnap,
    #[error("sector {number} is in {state}: only a proving sector can be marked for upgrade")]
    NotProving { number: u64, state: String },
    #[error("sector {0} holds data already: only committed-capacity sectors are upgraded")]
    HasData(u64),
    #[error("sector {0} is not active on chain")]
    NotOnChain(u64),
    #[error("sector {0} is faulty: recover it before upgrading it")]
    Faulty(u64),
    #[error("sector {number} expires at epoch {expiration}, sooner than the shortest deal ({min} epochs from now at {head}): extend it first (`sectors extend`)")]
    ExpiresTooSoon { number: u64, expiration: Epoch, head: Epoch, min: Epoch },
    #[error("sector {number} is in {state}: its upgrade can be aborted only until its proof is computed or while its message waits (Lotus's rule); nothing was changed")]
    CannotAbort { number: u64, state: String },
    #[error("sector {number} is in {state}: it is not being upgraded")]
    NotUpgrading { number: u64, state: String },
    #[error(transparent)]
    Sealing(#[from] SealingError),
    #[error("{0}")]
    Chain(String),
}

pub struct Sealing {
    pub db: Mutex<Db>,
    /// Each running sector state machine, so that `SectorRemove` can stop it.
    /// (run, handle): a run number, so that a finished run never removes a later one's entry.
    pub drives: Mutex<std::collections::HashMap<u64, (u64, tokio::task::AbortHandle)>>,
    pub chain: Arc<ChainClient>,
    pub manager: Arc<Manager>,
    pub miner: u64,
    pub proof: RegisteredSealProof,
    /// Real proofs, or the mock backend (`[Devnet] MockProofs`) for tests.
    pub backend: sealing_proofs::Backend,
    pub cfg: SealingConfig,
    /// How long sectors stay in each state (the `sectors:<state>` alerts).
    pub clock: Mutex<crate::alerts::StateClock>,
    /// The pre-commit and commit batches.
    pub batches: Batches,
    /// The termination batch (`sectors terminate`).
    pub terminator: Arc<crate::terminate::Terminator>,
    /// Sectors whose last transition could not be written yet (retried), with the error.
    pub write_errors: Mutex<std::collections::HashMap<u64, String>>,
}

/// What a sector brings to the commit batch: its proof, and what the proof commits to (for
/// an aggregate).
pub struct CommitEntry {
    pub proof: Vec<u8>,
    pub sealed: sealing_proofs::aggregate::SealedSector,
}

pub struct Batches {
    pub precommit: Arc<Batcher<PreCommitSpec>>,
    pub commit: Arc<Batcher<CommitEntry>>,
}

impl Batches {
    /// The two batches, sending through `chain`; a commit batch of `min_aggregate` sectors or
    /// more carries one aggregate proof.
    pub fn new(
        chain: Arc<ChainClient>,
        backend: sealing_proofs::Backend,
        miner: u64,
        proof: RegisteredSealProof,
        precommit: BatchConfig,
        commit: BatchConfig,
        min_aggregate: usize,
    ) -> Batches {
        let pc_chain = chain.clone();
        let precommit = Batcher::new(
            "pre-commit",
            precommit,
            Arc::new(move |batch: Vec<(u64, PreCommitSpec)>| {
                let chain = pc_chain.clone();
                Box::pin(async move {
                    let specs: Vec<PreCommitSpec> = batch.into_iter().map(|(_, s)| s).collect();
                    chain.push_pre_commit(&specs).await.map_err(chain_err)
                })
            }),
        );
        let commit = Batcher::new(
            "commit",
            commit,
            Arc::new(move |batch: Vec<(u64, CommitEntry)>| {
                let chain = chain.clone();
                Box::pin(async move {
                    let numbers: Vec<u64> = batch.iter().map(|(n, _)| *n).collect();
                    let proof = commit_proof(backend, miner, proof, batch, min_aggregate).await;
                    chain.push_prove_commit(&numbers, proof).await.map_err(chain_err)
                })
            }),
        );
        Batches { precommit, commit }
    }

    pub fn start(&self, background: &lotus_node::daemon::Background) {
        background.spawn(self.precommit.clone().run());
        background.spawn(self.commit.clone().run());
    }
}

/// The batch's proofs: one aggregate from `min_aggregate` sectors on (and within the actor's
/// bounds), else one per sector. An aggregation that fails (the real one needs the
/// inner-product SRS in the parameter cache) falls back to one proof per sector.
async fn commit_proof(
    backend: sealing_proofs::Backend,
    miner: u64,
    proof: RegisteredSealProof,
    batch: Vec<(u64, CommitEntry)>,
    min_aggregate: usize,
) -> CommitProof {
    let n = batch.len();
    let (proofs, sealed): (Vec<Vec<u8>>, Vec<_>) = batch.into_iter().map(|(_, e)| (e.proof, e.sealed)).unzip();
    let bounds = min_aggregate.max(policy::MIN_AGGREGATED_SECTORS)..=policy::MAX_AGGREGATED_SECTORS;
    if !bounds.contains(&n) {
        return CommitProof::PerSector(proofs);
    }
    let per_sector = proofs.clone();
    let r = tokio::task::spawn_blocking(move || {
        sealing_proofs::aggregate::aggregate(backend, proof, miner, &sealed, &proofs)
    })
    .await;
    match r {
        Ok(Ok(agg)) => {
            tracing::info!(sectors = n, bytes = agg.len(), "aggregated the batch's seal proofs");
            CommitProof::Aggregate(agg)
        }
        Ok(Err(e)) => {
            tracing::warn!(sectors = n, "aggregating the seal proofs failed, sending one proof per sector: {e}");
            CommitProof::PerSector(per_sector)
        }
        Err(e) => {
            tracing::warn!(sectors = n, "the aggregation task failed, sending one proof per sector: {e}");
            CommitProof::PerSector(per_sector)
        }
    }
}

impl Sealing {
    fn db(&self) -> std::sync::MutexGuard<'_, Db> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn sector_ref(&self, s: &SectorInfo) -> SectorRef {
        SectorRef { id: SectorId { miner: self.miner, number: s.number }, proof_type: s.proof }
    }

    /// Resume every sector that is not done (after a restart).
    pub fn resume_all(self: &Arc<Self>) -> Result<(), SealingError> {
        for (n, why) in self.db().quarantine_unreadable()? {
            tracing::error!(
                sector = n,
                "the sector's record cannot be read, so it is quarantined and not resumed: {why}; restore it from a backup, or remove it with `sectors remove`"
            );
        }
        for (n, state, _) in self.db().quarantined()? {
            tracing::warn!(sector = n, state = %state, "sector quarantined (its record cannot be read): not resumed");
        }
        for s in self.db().list()? {
            if !s.state.is_final() {
                tracing::info!(sector = s.number, state = %s.state.name(), "resuming sector");
                self.start(s.number);
            }
        }
        Ok(())
    }

    /// `CreateBackup`: the miner's metadata into `dest` (see [`crate::backup`]).
    pub fn backup(&self, repo: &lotus_node::repo::Repo, dest: &Path) -> Result<(), crate::backup::BackupError> {
        crate::backup::write(&self.db(), repo, dest)
    }

    /// Read and change the sector number assigner under the database lock (`sectors numbers`).
    pub fn with_numbers<T>(
        &self,
        f: impl FnOnce(&mut Numbers) -> Result<T, crate::numbers::NumberError>,
    ) -> Result<T, SealingError> {
        let db = self.db();
        let mut n = db.numbers()?;
        let before = n.clone();
        let out = f(&mut n)?;
        if n != before {
            db.set_numbers(&n)?;
        }
        Ok(out)
    }

    /// `PledgeSector`: a new committed-capacity sector, or with `piece` a sector holding that
    /// file's bytes (sealed at deal priority).
    /// A sector for `len` bytes of piece data (the caller places the piece file).
    pub fn pledge_data(self: &Arc<Self>, len: u64) -> Result<u64, SealingError> {
        let n = self.pledge(true)?;
        let db = self.db();
        if let Some(mut s) = db.get(n)? {
            s.data_len = len;
            db.put(&s, "event", &format!("piece of {len} bytes"))?;
        }
        Ok(n)
    }

    pub fn pledge(self: &Arc<Self>, has_data: bool) -> Result<u64, SealingError> {
        let db = self.db();
        let max = if has_data { self.cfg.max_sealing_sectors_for_deals } else { self.cfg.max_sealing_sectors };
        // Counting reads every sector row: only when there is a limit (it made 10,000 pledges
        // quadratic, the scale benchmark's first finding).
        if max > 0 {
            let cur = db.list()?.iter().filter(|s| s.state.is_sealing()).count() as u64;
            if cur >= max {
                return Err(SealingError::TooMany { cur, max });
            }
        }
        let number = db.next_number()?;
        let s = SectorInfo::new(number, self.proof, has_data);
        db.create(&s, if has_data { "created with a piece (deal sector)" } else { "pledged (CC)" })?;
        drop(db);
        Ok(number)
    }

    /// Run a sector's state machine until it is proving (or given up).
    pub fn start(self: &Arc<Self>, number: u64) {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let run = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let me = self.clone();
        // Inserted under the lock the task takes to remove itself, so a task that ends at once
        // still finds its entry; `run` keeps it from removing a later run of the same sector.
        let mut drives = self.drives.lock().unwrap_or_else(|e| e.into_inner());
        let h = tokio::spawn(async move {
            me.clone().drive(number).await;
            let mut drives = me.drives.lock().unwrap_or_else(|e| e.into_inner());
            if drives.get(&number).is_some_and(|(r, _)| *r == run) {
                drives.remove(&number);
            }
        });
        drives.insert(number, (run, h.abort_handle()));
    }

    /// Stop the sector's state machine wherever it waits, and run it again from its stored
    /// state.
    fn restart(self: &Arc<Self>, number: u64) {
        if let Some((_, h)) = self.drives.lock().unwrap_or_else(|e| e.into_inner()).remove(&number) {
            h.abort();
        }
        self.start(number);
    }

    /// `SectorsUpdate` (`sectors update-state`): put the sector in `state` and run it from there,
    /// stopping its state machine wherever it waits.
    pub fn force_state(self: &Arc<Self>, number: u64, state: &str) -> Result<(), SealingError> {
        let to = SectorState::from_name(state).ok_or_else(|| {
            let all: Vec<String> = SectorState::ALL.iter().map(|s| s.name()).collect();
            SealingError::NoSuchState(state.into(), all.join(", "))
        })?;
        {
            let db = self.db();
            let mut s = db.get(number)?.ok_or(SealingError::NotFound(number))?;
            if let Some(what) = to.missing(&s) {
                return Err(SealingError::MissingForState { number, state: to.name(), what });
            }
            let from = s.state;
            s.state = to;
            s.retries = 0;
            db.put(&s, "event", &format!("state forced to {} (was {})", to.name(), from.name()))?;
        }
        // A final state runs nothing: the restarted state machine returns at once.
        self.restart(number);
        Ok(())
    }

    /// `SectorTerminate`: the sector leaves the chain (queued for a TerminateSectors message),
    /// then its files are removed. From any state, as Lotus's global event.
    pub fn terminate(self: &Arc<Self>, number: u64) -> Result<(), SealingError> {
        {
            let db = self.db();
            let mut s = db.get(number)?.ok_or(SealingError::NotFound(number))?;
            if !s.state.can_become(SectorState::Terminating) {
                return Ok(()); // already on its way
            }
            let from = s.state;
            s.state = SectorState::Terminating;
            db.put(&s, "event", &format!("termination requested (in {})", from.name()))?;
        }
        self.restart(number);
        Ok(())
    }

    /// `SectorMarkForUpgrade` (`sectors snap-up`): a proving CC sector becomes Available for
    /// data, with Lotus's checks (on chain, active, expiring after the shortest deal).
    pub async fn mark_for_upgrade(self: &Arc<Self>, number: u64, snap: bool) -> Result<(), UpgradeError> {
        if !snap {
            return Err(UpgradeError::NotSnap);
        }
        let s = self.db().get(number)?.ok_or(SealingError::NotFound(number))?;
        if s.state != SectorState::Proving {
            return Err(UpgradeError::NotProving { number, state: s.state.name() });
        }
        if s.has_data || s.upgrade.is_some() {
            return Err(UpgradeError::HasData(number));
        }
        let chain = |e: ChainError| UpgradeError::Chain(e.to_string());
        let info = self.chain.sector_on_chain(number).await.map_err(chain)?.ok_or(UpgradeError::NotOnChain(number))?;
        if self.chain.is_faulty(number).await.map_err(chain)? {
            return Err(UpgradeError::Faulty(number));
        }
        let head = self.chain.head().await.map_err(chain)?;
        let min = DEAL_MIN_DURATION.max(self.cfg.min_upgrade_sector_expiration as Epoch);
        if info.expiration < head + min {
            return Err(UpgradeError::ExpiresTooSoon { number, expiration: info.expiration, head, min });
        }
        let db = self.db();
        let mut s = db.get(number)?.ok_or(SealingError::NotFound(number))?;
        if s.state != SectorState::Proving {
            return Err(UpgradeError::NotProving { number, state: s.state.name() });
        }
        s.state = SectorState::Available;
        db.put(&s, "event", "marked for upgrade (snap deals): Proving → Available")?;
        Ok(())
    }

    /// `SectorAbortUpgrade`: an Available sector goes back to Proving; an upgrade in progress
    /// goes to AbortUpgrade (its files removed, then Proving as it was).
    pub fn abort_upgrade(self: &Arc<Self>, number: u64) -> Result<(), UpgradeError> {
        {
            let db = self.db();
            let mut s = db.get(number)?.ok_or(SealingError::NotFound(number))?;
            let from = s.state;
            s.state = match from {
                SectorState::Available => SectorState::Proving,
                st if st.can_abort_upgrade() => SectorState::AbortUpgrade,
                st if st.is_upgrade() => return Err(UpgradeError::CannotAbort { number, state: st.name() }),
                st => return Err(UpgradeError::NotUpgrading { number, state: st.name() }),
            };
            db.put(&s, "event", &format!("upgrade aborted (in {})", from.name()))?;
        }
        self.restart(number);
        Ok(())
    }

    /// An Available sector to put `len` bytes of data into, by Lotus's rule: unless new
    /// sectors are preferred, and while fewer than MaxUpgradingSectors are upgrading; among the
    /// candidates, the lowest number. It is moved to SnapDealsWaitDeals (not started: the
    /// caller places the piece file first, then starts it).
    pub fn take_upgrade_candidate(&self, len: u64) -> Result<Option<u64>, SealingError> {
        if self.cfg.prefer_new_sectors_for_deals {
            return Ok(None);
        }
        let db = self.db();
        let list = db.list()?;
        let max = match self.cfg.max_upgrading_sectors {
            0 => self.cfg.max_sealing_sectors_for_deals,
            n => n,
        };
        let upgrading = list.iter().filter(|s| s.state.is_upgrade()).count() as u64;
        if max > 0 && upgrading >= max {
            return Ok(None);
        }
        let Some(mut s) = list.into_iter().find(|s| s.state == SectorState::Available) else { return Ok(None) };
        s.upgrade = Some(Box::new(Upgrade { cc_pieces: std::mem::take(&mut s.pieces), ..Upgrade::default() }));
        s.has_data = true;
        s.data_len = len;
        s.state = SectorState::SnapDealsWaitDeals;
        db.put(&s, "event", &format!("upgrading with a piece of {len} bytes: Available → SnapDealsWaitDeals"))?;
        Ok(Some(s.number))
    }

    /// `SectorRemove`: stop the sector's state machine wherever it waits (a task it started
    /// still runs on its worker; what it writes is removed as well, or left to
    /// `storage cleanup`), then delete its files from every storage path.
    pub fn remove(self: &Arc<Self>, number: u64) -> Result<(), SealingError> {
        {
            let db = self.db();
            let mut s = match db.get(number) {
                Ok(s) => s.ok_or(SealingError::NotFound(number))?,
                // Its record is lost, not its files: a fresh record of the miner's proof type
                // lets the removal find and delete them.
                Err(SealingError::Quarantined { .. }) => SectorInfo::new(number, self.proof, false),
                Err(e) => return Err(e),
            };
            if s.state == SectorState::Removing {
                return Ok(());
            }
            let from = s.state;
            s.state = SectorState::Removing;
            db.put(&s, "event", &format!("removal requested (in {})", from.name()))?;
        }
        self.restart(number);
        Ok(())
    }

    async fn drive(self: Arc<Self>, number: u64) {
        loop {
            let s = match self.db().get(number) {
                Ok(Some(s)) => s,
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(sector = number, "reading the sector failed, stopping its state machine: {e}");
                    return;
                }
            };
            {
                let mut clock = self.clock.lock().unwrap_or_else(|e| e.into_inner());
                if s.state.is_final() {
                    clock.leave(number, SystemTime::now());
                    return;
                }
                clock.enter(number, &s.state.name(), SystemTime::now());
            }
            if let Some((target, why)) = s.retry() {
                debug_assert!(s.state.can_become(target));
                tokio::time::sleep(self.cfg.retry_wait).await;
                let mut next = s.clone();
                next.state = target;
                if target == SectorState::PreCommit1 {
                    next.pc2_fails = 0;
                }
                self.write_transition(next, "retry", why).await;
                continue;
            }
            let from = s.state;
            let result = match self.step(s.clone()).await {
                // A step that would leave the transition table is a bug: the sector fails
                // (and retries) instead of going where it must not.
                Ok((n, _)) if !from.can_become(n.state) => Err(CallError::unknown(format!(
                    "{} → {} is not a transition of the sector state machine (a bug: please report it)",
                    from.name(),
                    n.state.name()
                ))),
                // Nor may it enter a state without the data that state needs (a ticket, a
                // seed, the commitments): the one place every transition passes checks it.
                Ok((n, _)) if n.state.missing(&n).is_some() => Err(CallError::unknown(format!(
                    "{} → {} without {} (a bug: please report it)",
                    from.name(),
                    n.state.name(),
                    n.state.missing(&n).unwrap_or_default()
                ))),
                r => r,
            };
            let (next, kind, msg) = match result {
                Ok((mut n, ran)) => {
                    n.retries = 0;
                    if n.state == SectorState::Proving {
                        // Sealed: an error it recovered from no longer describes it (the log keeps it).
                        n.last_error.clear();
                    }
                    let mut msg = format!("{} → {}", from.name(), n.state.name());
                    if !ran.is_empty() {
                        msg += &format!(" ({})", ran.join(", "));
                    }
                    (n, "transition", msg)
                }
                Err(e) => {
                    // The retry recomputes: a stored result the failed step used is dropped.
                    if let Some(c) = self.manager.call_store() {
                        let dropped = c.forget_done(SectorId { miner: self.miner, number });
                        if dropped > 0 {
                            tracing::info!(sector = number, dropped, "dropped the stored results the failed step used");
                        }
                    }
                    let n = after_failure(&s, &e, self.cfg.max_retries);
                    tracing::warn!(sector = number, state = %from.name(), "sealing step failed: {e}");
                    (n, "error", format!("{}: {e}", from.name()))
                }
            };
            let next_state = next.state;
            if self.write_transition(next, kind, msg.clone()).await {
                tracing::info!(sector = number, "{msg}");
            } else {
                tracing::info!(sector = number, "removal requested while {} ran: its result is dropped", from.name());
                continue;
            }
            if next_state.is_final() {
                // Its tracked work will never be asked for again.
                if let Some(c) = self.manager.call_store() {
                    c.forget_sector(SectorId { miner: self.miner, number });
                }
            }
        }
    }

    /// Write a transition (off the async threads), retrying a failed write with backoff until
    /// it lands: the sector waits in its state, and `sectors status` shows why, instead of
    /// stopping until a restart. `false`: a removal was requested meanwhile, nothing written.
    async fn write_transition(self: &Arc<Self>, next: SectorInfo, kind: &'static str, msg: String) -> bool {
        let number = next.number;
        let next = Arc::new(next);
        let mut backoff = Duration::from_millis(500);
        loop {
            let (me, n, m) = (self.clone(), next.clone(), msg.clone());
            let r = tokio::task::spawn_blocking(move || me.db().put_transition(&n, kind, &m)).await;
            let e = match r {
                Ok(Ok(written)) => {
                    self.write_errors.lock().unwrap_or_else(|e| e.into_inner()).remove(&number);
                    return written;
                }
                Ok(Err(e)) => e.to_string(),
                Err(e) => format!("the database task failed: {e}"),
            };
            let shown = format!(
                "the miner cannot write this sector's state ({msg}), retrying in {}: {e}",
                humantime::format_duration(backoff)
            );
            tracing::error!(sector = number, "{shown}");
            self.write_errors.lock().unwrap_or_else(|e| e.into_inner()).insert(number, shown);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(60));
        }
    }

    /// Why the sector's last state could not be written, while the miner retries it.
    pub fn write_error(&self, number: u64) -> Option<String> {
        self.write_errors.lock().unwrap_or_else(|e| e.into_inner()).get(&number).cloned()
    }

    /// A failed message's error, with the worker's balance when funds were the reason.
    async fn explain(&self, e: ChainError) -> CallError {
        if let ChainError::Failed { exit_code: 6 | 19, .. } = &e {
            let worker = self.chain.worker;
            let balance = match self.chain.balance(worker).await {
                Ok(b) => format!("{b} attoFIL"),
                Err(e) => format!("an unknown balance ({e})"),
            };
            // Not the sector's fault: it retries (without counting it) until the funds arrive,
            // as Lotus's PreCommitFailed does.
            return CallError::new(
                CallError::TEMP_UNKNOWN,
                format!("{e}; the worker address {worker} holds {balance}: send it funds and the sector retries"),
            );
        }
        chain_err(e)
    }

    fn priority(s: &SectorInfo) -> i32 {
        if s.has_data {
            DEAL_SECTOR_PRIORITY
        } else {
            0
        }
    }

    /// One state's work; returns the sector in its next state.
    async fn step(&self, s: SectorInfo) -> Result<(SectorInfo, Vec<String>), CallError> {
        let mut ran = vec![];
        let next = self.step_inner(s, &mut ran).await?;
        Ok((next, ran))
    }

    /// The states whose work is on the chain: read the ticket, send the pre-commit and the
    /// commit and wait for them, wait for the seed.
    async fn chain_step(&self, mut s: SectorInfo, ran: &mut Vec<String>) -> Result<SectorInfo, CallError> {
        use SectorState::*;
        match s.state {
            GetTicket => {
                // Lotus takes the ticket from a finalized epoch (head - 900) on mainnet; a
                // devnet does not fork, and its pre-commit must land within the ticket's
                // lifetime, so the epoch before the head will do.
                let epoch = (self.chain.head().await.map_err(chain_err)? - 1).max(0);
                s.ticket = Some(self.chain.ticket(epoch).await.map_err(chain_err)?);
                s.ticket_epoch = Some(epoch);
                s.state = PreCommit1;
            }
            PreCommitting | SubmitPreCommitBatch => {
                let comm_r = s.comm_r.ok_or_else(|| CallError::unknown("no CommR"))?;
                let comm_d = s.comm_d.ok_or_else(|| CallError::unknown("no CommD"))?;
                // Already on chain (a message of an earlier run landed): do not send again.
                if let Some(pc) = self.chain.pre_commit_info(s.number).await.map_err(chain_err)? {
                    if pc.comm_r != comm_r {
                        return Err(CallError::unknown(format!(
                            "sector number {} is pre-committed on chain with another CommR: the number is taken",
                            s.number
                        )));
                    }
                    s.precommit_epoch = Some(pc.epoch);
                    s.seed_epoch = Some(pc.epoch + self.chain.seed_delay());
                    s.state = WaitSeed;
                    return Ok(s);
                }
                let ticket_epoch = s.ticket_epoch.ok_or_else(|| CallError::unknown("no ticket epoch"))?;
                // The lifetime in epochs of this chain (540 days are 1,555,200 epochs of 30 s),
                // at most the actor's MaxSectorExpirationExtension (1278 days of 30 s epochs: a
                // devnet's short epochs would ask for more than the actor allows).
                let lifetime = ((self.cfg.cc_lifetime.as_millis() / self.chain.block_delay().as_millis().max(1))
                    as Epoch)
                    .min(1278 * 2880);
                let spec = PreCommitSpec { number: s.number, proof: s.proof, comm_r, comm_d, ticket_epoch, lifetime };
                if s.state == PreCommitting && self.cfg.batch_pre_commits {
                    // Written before it waits, so that `sectors list` shows where it is.
                    s.state = SubmitPreCommitBatch;
                } else if s.state == PreCommitting {
                    let cid = self.chain.push_pre_commit(&[spec]).await.map_err(chain_err)?;
                    ran.push(format!("PreCommitSectorBatch2 {cid}"));
                    s.precommit_message = Some(cid.to_string());
                    s.state = PreCommitWait;
                } else {
                    // The pre-commit must land before its ticket is too old.
                    let cutoff = self.chain.epoch_time(ticket_epoch + policy::MAX_PRE_COMMIT_RANDOMNESS_LOOKBACK);
                    let (cid, n) = self.batches.precommit.submit(s.number, spec, Some(cutoff)).await?;
                    ran.push(format!("PreCommitSectorBatch2 {cid}, {n} sector(s)"));
                    s.precommit_message = Some(cid.to_string());
                    s.state = PreCommitBatchWait;
                }
            }
            PreCommitWait | PreCommitBatchWait => {
                let cid = message_cid(&s.precommit_message)?;
                if let Err(e) = self.chain.wait("PreCommitSectorBatch2", cid).await {
                    return Err(self.explain(e).await);
                }
                let pc = self.chain.pre_commit_info(s.number).await.map_err(chain_err)?.ok_or_else(|| {
                    CallError::unknown(format!(
                        "the pre-commit message {cid} landed, but sector {} has no pre-commit on chain",
                        s.number
                    ))
                })?;
                s.precommit_epoch = Some(pc.epoch);
                s.seed_epoch = Some(pc.epoch + self.chain.seed_delay());
                s.state = WaitSeed;
            }
            WaitSeed => {
                let at = s.seed_epoch.unwrap_or(0);
                loop {
                    let seen = self.chain.latest_head();
                    if let Some(seed) = self.chain.seed(at).await.map_err(chain_err)? {
                        s.seed = Some(seed);
                        break;
                    }
                    // Woken by the next head (ChainNotify); the fallback bounds a missed one.
                    self.chain.next_head(seen, self.chain.block_delay()).await;
                }
                s.state = Committing;
            }
            SubmitCommit | SubmitCommitAggregate => {
                if self.chain.is_active(s.number).await.map_err(chain_err)? {
                    s.state = FinalizeSector; // an earlier run's message landed
                    return Ok(s);
                }
                let b64 = s.proof_bytes.as_deref().ok_or_else(|| CallError::unknown("no proof"))?;
                let proof =
                    Bytes::from_base64(b64).map_err(|e| CallError::unknown(format!("the recorded proof: {e}")))?;
                // The chain verifies the proof (real Groth16 verification) when it executes it.
                if s.state == SubmitCommit {
                    let cid = self
                        .chain
                        .push_prove_commit(&[s.number], CommitProof::PerSector(vec![proof.0]))
                        .await
                        .map_err(chain_err)?;
                    ran.push(format!("ProveCommitSectors3 {cid}"));
                    s.commit_message = Some(cid.to_string());
                    s.state = CommitWait;
                } else {
                    let missing = || CallError::unknown("the sector lacks its ticket, seed or commitments");
                    let sealed = sealing_proofs::aggregate::SealedSector {
                        sector: s.number,
                        comm_r: s.comm_r.ok_or_else(missing)?,
                        comm_d: s.comm_d.ok_or_else(missing)?,
                        ticket: s.ticket.ok_or_else(missing)?,
                        seed: s.seed.ok_or_else(missing)?,
                    };
                    // The commit must land before the pre-commit expires.
                    let cutoff =
                        s.precommit_epoch.map(|e| self.chain.epoch_time(e + policy::MAX_PROVE_COMMIT_DURATION));
                    let entry = CommitEntry { proof: proof.0, sealed };
                    let (cid, n) = self.batches.commit.submit(s.number, entry, cutoff).await?;
                    ran.push(format!("ProveCommitSectors3 {cid}, {n} sector(s)"));
                    s.commit_message = Some(cid.to_string());
                    s.state = CommitAggregateWait;
                }
            }
            CommitWait | CommitAggregateWait => {
                let cid = message_cid(&s.commit_message)?;
                if let Err(e) = self.chain.wait("ProveCommitSectors3", cid).await {
                    return Err(self.explain(e).await);
                }
                if !self.chain.is_active(s.number).await.map_err(chain_err)? {
                    return Err(CallError::unknown(format!(
                        "the commit message {cid} landed, but sector {} is not active on chain",
                        s.number
                    )));
                }
                s.state = FinalizeSector;
            }
            Terminating => {
                if !self.chain.is_active(s.number).await.map_err(chain_err)? {
                    if self.chain.pre_commit_info(s.number).await.map_err(chain_err)?.is_some() {
                        return Err(CallError::unknown(
                            "sector was precommitted but not proven, remove instead of terminating",
                        ));
                    }
                    // Never on chain (or off it already): only its files are left to remove.
                    s.state = Removing;
                    return Ok(s);
                }
                match self.terminator.add(s.number).await.map_err(chain_err)? {
                    Some(cid) => {
                        ran.push(format!("TerminateSectors {cid}"));
                        s.termination = Some(Box::new(Termination { message: Some(cid.to_string()), at: None }));
                        s.state = TerminateWait;
                    }
                    None => {
                        let at = self.chain.head().await.map_err(chain_err)?;
                        s.termination = Some(Box::new(Termination { message: None, at: Some(at) }));
                        s.state = TerminateFinality;
                    }
                }
            }
            TerminateWait => {
                let t = s.termination.get_or_insert_with(Default::default);
                let cid = message_cid(&t.message)?;
                let epoch = self.chain.wait("TerminateSectors", cid).await.map_err(chain_err)?;
                t.at = Some(epoch);
                s.state = TerminateFinality;
            }
            TerminateFinality => {
                // Lotus waits a finality (900 epochs) before deleting the files; this miner
                // waits its own message confidence (`[Chain] MessageConfidence`), the depth at
                // which it trusts every other message of its.
                let at =
                    s.termination.as_ref().and_then(|t| t.at).unwrap_or_default() + self.chain.confidence() as Epoch;
                while self.chain.head().await.map_err(chain_err)? < at {
                    self.chain.next_head(self.chain.latest_head(), self.chain.block_delay()).await;
                }
                s.state = Removing;
            }
            other => return Err(CallError::unknown(format!("{} is not a chain state", other.name()))),
        }
        Ok(s)
    }

    /// `ran` collects "<task> on <host>" for the sector's log.
    async fn step_inner(&self, mut s: SectorInfo, ran: &mut Vec<String>) -> Result<SectorInfo, CallError> {
        use sealing_exec::TaskCall;
        use FileType::*;
        use SectorState::*;
        let sector = self.sector_ref(&s);
        let prio = Self::priority(&s);
        let run = |t: TaskSpec| {
            let task = t.task;
            let m = self.manager.clone();
            async move {
                let r = m.run_task(t).await?;
                Ok::<_, CallError>((task, r))
            }
        };
        let mut note = |(task, r): (TaskType, crate::manager::Ran)| {
            ran.push(format!("{} on {}", task.short(), r.host));
            r.value
        };
        let m = &self.manager;
        let fetch = |types: FileTypes| {
            Some(TaskCall::Fetch((sector, types, PathType::Sealing, lotus_api::wire::AcquireMode::Move)))
        };
        let bad = |e: String| CallError::unknown(format!("bad result from the worker: {e}"));
        let sealed_cache = FileTypes::of(&[Sealed, Cache]);
        let json = |e: serde_json::Error| CallError::unknown(format!("bad result from the worker: {e}"));
        let pieces: Vec<lotus_api::wire::PieceInfo> = s.pieces.iter().map(sealing_exec::wire::piece_to_wire).collect();
        match s.state {
            Packing => {
                // One piece fills the sector (zero-filled past the data): CC sectors get a null
                // reader, data sectors the URL of their piece file, which the worker fetches.
                let size = sealing_proofs::max_unpadded(s.proof.sector_size());
                let data = if s.has_data {
                    lotus_api::wire::Data::Http(self.piece_url(sector.id)?)
                } else {
                    lotus_api::wire::Data::Null(size)
                };
                let r = note(
                    run(TaskSpec {
                        sector,
                        task: TaskType::AddPiece,
                        priority: prio,
                        selector: Selector::Alloc { types: FileTypes::of(&[Unsealed]), path: PathType::Sealing },
                        prepare: None,
                        work: TaskCall::AddPiece((sector, vec![], size, data)),
                    })
                    .await?,
                );
                let piece: lotus_api::wire::PieceInfo = serde_json::from_value(r).map_err(json)?;
                s.pieces = vec![sealing_exec::wire::piece_from_wire(&piece).map_err(bad)?];
                s.state = GetTicket;
            }
            PreCommit1 => {
                let ticket = s.ticket.ok_or_else(|| CallError::unknown("no ticket"))?;
                let r = note(
                    run(TaskSpec {
                        sector,
                        task: TaskType::PreCommit1,
                        priority: prio,
                        selector: Selector::Alloc { types: sealed_cache, path: PathType::Sealing },
                        prepare: fetch(FileTypes::of(&[Unsealed])),
                        work: TaskCall::SealPreCommit1((sector, Bytes(ticket.to_vec()), pieces)),
                    })
                    .await?,
                );
                s.pc1 = Some(Box::new(r));
                s.state = PreCommit2;
            }
            PreCommit2 => {
                let pc1 = pc1_bytes(*s.pc1.clone().ok_or_else(|| CallError::unknown("no PC1 output"))?, s.ticket)
                    .map_err(bad)?;
                let done = run(TaskSpec {
                    sector,
                    task: TaskType::PreCommit2,
                    priority: prio,
                    selector: Selector::Existing { types: sealed_cache, allow_fetch: true },
                    prepare: fetch(sealed_cache),
                    work: TaskCall::SealPreCommit2((sector, pc1)),
                })
                .await?;
                // Only the PC2 node's sealed file and cache (with p_aux and tree R) are the
                // sector's now. Another copy (the PC1 node's, or one a failed PC1 left and its
                // node declared again on re-attaching) would draw C1 there by locality, where
                // it fails for ever on the missing p_aux (found by the soak benchmark).
                self.remove_copies(sector.id, sealed_cache, Some(&done.1.host)).await;
                let r = note(done);
                let cids: lotus_api::wire::SectorCids = serde_json::from_value(r).map_err(json)?;
                let (comm_r, comm_d) = sealing_exec::wire::commitments(&cids).map_err(bad)?;
                let sealer = sealing_proofs::Sealer::new(s.proof, self.miner, s.number).with_backend(self.backend);
                let want = sealer.comm_d(&s.pieces).map_err(|e| CallError::unknown(e.to_string()))?;
                if want != comm_d {
                    return Err(CallError::unknown(
                        "PreCommit2 returned a CommD that does not match the sector's pieces",
                    ));
                }
                s.comm_r = Some(comm_r);
                s.comm_d = Some(comm_d);
                s.pc1 = None; // large and no longer needed
                s.pc2_fails = 0;
                s.state = PreCommitting;
            }
            Committing => {
                // Never zeros for a missing value (Lotus would run Commit1 on them).
                let lacks = |what: &str| CallError::unknown(format!("Committing without {what}"));
                let (ticket, seed) =
                    (s.ticket.ok_or_else(|| lacks("a ticket"))?, s.seed.ok_or_else(|| lacks("a seed"))?);
                let comm_r = s.comm_r.ok_or_else(|| lacks("CommR"))?;
                let comm_d = s.comm_d.ok_or_else(|| lacks("CommD"))?;
                let c1 = note(
                    run(TaskSpec {
                        sector,
                        task: TaskType::Commit1,
                        priority: prio,
                        selector: Selector::Existing { types: sealed_cache, allow_fetch: false },
                        prepare: fetch(sealed_cache),
                        work: TaskCall::SealCommit1((
                            sector,
                            Bytes(ticket.to_vec()),
                            Bytes(seed.to_vec()),
                            pieces,
                            sealing_exec::wire::cids(&comm_r, &comm_d),
                        )),
                    })
                    .await?,
                );
                let c1: Bytes = serde_json::from_value(c1).map_err(json)?;
                let proof = note(
                    run(TaskSpec {
                        sector,
                        task: TaskType::Commit2,
                        priority: prio,
                        selector: Selector::Task,
                        prepare: None,
                        work: TaskCall::SealCommit2((sector, c1)),
                    })
                    .await?,
                );
                let proof: Bytes = serde_json::from_value(proof).map_err(json)?;
                s.proof_bytes = Some(proof.to_base64());
                s.state = if self.cfg.aggregate_commits { SubmitCommitAggregate } else { SubmitCommit };
            }
            GetTicket
            | PreCommitting
            | PreCommitWait
            | SubmitPreCommitBatch
            | PreCommitBatchWait
            | WaitSeed
            | SubmitCommit
            | CommitWait
            | SubmitCommitAggregate
            | CommitAggregateWait
            | Terminating
            | TerminateWait
            | TerminateFinality => {
                // Boxed: the chain's RPC futures would otherwise grow every sector's drive future.
                return Box::pin(self.chain_step(s, ran)).await;
            }
            st if st.is_upgrade() => return Box::pin(self.snap_step(s, ran)).await,
            FinalizeSector => {
                let cache = FileTypes::of(&[Cache]);
                note(
                    run(TaskSpec {
                        sector,
                        task: TaskType::Finalize,
                        priority: prio,
                        selector: Selector::Existing { types: cache, allow_fetch: false },
                        prepare: None,
                        work: TaskCall::FinalizeSector((sector,)),
                    })
                    .await?,
                );
                // A deal sector's unsealed copy goes along when it is kept
                // (`AlwaysKeepUnsealedCopy`); a CC sector's never (zeros, unsealed for free).
                let keep_unsealed = self.cfg.keep_unsealed && s.has_data;
                let moved = if keep_unsealed { FileTypes::of(&[Sealed, Cache, Unsealed]) } else { sealed_cache };
                note(
                    run(TaskSpec {
                        sector,
                        task: TaskType::Fetch,
                        priority: prio,
                        selector: Selector::Move { types: moved, allow_remote: !m.disallow_remote_finalize },
                        prepare: None,
                        work: TaskCall::MoveStorage((sector, moved)),
                    })
                    .await?,
                );
                let dropped = if keep_unsealed { FileTypes::of(&[Piece]) } else { FileTypes::of(&[Unsealed, Piece]) };
                self.remove_copies(sector.id, dropped, None).await;
                s.state = Proving;
            }
            Removing => {
                let all = FileTypes::of(&FileType::ALL);
                self.remove_copies(sector.id, all, None).await;
                let left = self.manager.storage_find(sector.id, all);
                if !left.is_empty() {
                    let at: Vec<String> = left.iter().flat_map(|si| si.urls.clone()).collect();
                    return Err(CallError::unknown(format!(
                        "{} storage path(s) still hold files of the sector ({}); it retries",
                        left.len(),
                        at.join(", ")
                    )));
                }
                s.state = Removed;
            }
            st => return Err(CallError::unknown(format!("no work for state {}", st.name()))),
        }
        Ok(s)
    }

    /// A snap-deal state's work (Lotus's `states_replica_update.go`): the RU, PR1, PR2 and FRU
    /// tasks on workers, the ProveReplicaUpdates3 message, the key's release, an abort.
    async fn snap_step(&self, mut s: SectorInfo, ran: &mut Vec<String>) -> Result<SectorInfo, CallError> {
        use sealing_exec::TaskCall;
        use FileType::*;
        use SectorState::*;
        let sector = self.sector_ref(&s);
        let prio = DEAL_SECTOR_PRIORITY;
        let m = &self.manager;
        let mut note = |task: TaskType, r: crate::manager::Ran| {
            ran.push(format!("{} on {}", task.short(), r.host));
            r.value
        };
        let json = |e: serde_json::Error| CallError::unknown(format!("bad result from the worker: {e}"));
        let bad = |e: String| CallError::unknown(format!("bad result from the worker: {e}"));
        let lacks = |what: &str| CallError::unknown(format!("{} without {what}", s.state.name()));
        let comm_r_old = s.comm_r.ok_or_else(|| lacks("the sector's CommR"))?;
        let mut up = s.upgrade.as_deref().cloned().ok_or_else(|| lacks("an upgrade record"))?;
        let updates = FileTypes::of(&[Update, UpdateCache]);
        let commitments =
            |up: &Upgrade| -> Result<(lotus_api::wire::Cid, lotus_api::wire::Cid, lotus_api::wire::Cid), CallError> {
                let (r, d) = (
                    up.comm_r.ok_or_else(|| lacks("the update's CommR"))?,
                    up.comm_d.ok_or_else(|| lacks("the update's CommD"))?,
                );
                use lotus_api::wire::Commitment as C;
                Ok((C::Sealed.to_cid(&comm_r_old), C::Sealed.to_cid(&r), C::Unsealed.to_cid(&d)))
            };
        match s.state {
            // The data is assigned when the sector is chosen (`sectors add-piece`): nothing to
            // wait for, and one piece fills the sector, so packing adds no filler.
            SnapDealsWaitDeals => s.state = SnapDealsAddPiece,
            SnapDealsPacking => s.state = UpdateReplica,
            SnapDealsDealsExpired | SnapDealsRecoverDealIDs => s.state = AbortUpgrade,
            SnapDealsAddPiece => {
                let size = sealing_proofs::max_unpadded(s.proof.sector_size());
                let url = self.piece_url(sector.id)?;
                let r = m
                    .run_task(TaskSpec {
                        sector,
                        task: TaskType::AddPiece,
                        priority: prio,
                        selector: Selector::Alloc { types: FileTypes::of(&[Unsealed]), path: PathType::Sealing },
                        prepare: None,
                        work: TaskCall::AddPiece((sector, vec![], size, lotus_api::wire::Data::Http(url))),
                    })
                    .await?;
                let piece: lotus_api::wire::PieceInfo =
                    serde_json::from_value(note(TaskType::AddPiece, r)).map_err(json)?;
                s.pieces = vec![sealing_exec::wire::piece_from_wire(&piece).map_err(bad)?];
                s.state = SnapDealsPacking;
            }
            UpdateReplica => {
                if !s.has_data || s.pieces.is_empty() {
                    ran.push("no data to upgrade with".into());
                    s.state = AbortUpgrade;
                    return Ok(s);
                }
                let pieces = s.pieces.iter().map(sealing_exec::wire::piece_to_wire).collect();
                let r = m
                    .run_task(TaskSpec {
                        sector,
                        task: TaskType::ReplicaUpdate,
                        priority: prio,
                        selector: Selector::Alloc { types: updates, path: PathType::Sealing },
                        prepare: None,
                        work: TaskCall::ReplicaUpdate((sector, pieces)),
                    })
                    .await?;
                let out: lotus_api::contract::miner::ReplicaUpdateOut =
                    serde_json::from_value(note(TaskType::ReplicaUpdate, r)).map_err(json)?;
                use lotus_api::wire::Commitment as C;
                let comm_r = C::Sealed.from_cid(&out.new_sealed).map_err(bad)?;
                let comm_d = C::Unsealed.from_cid(&out.new_unsealed).map_err(bad)?;
                let sealer = sealing_proofs::Sealer::new(s.proof, self.miner, s.number).with_backend(self.backend);
                if sealer.comm_d(&s.pieces).map_err(|e| CallError::unknown(e.to_string()))? != comm_d {
                    return Err(CallError::unknown(
                        "ReplicaUpdate returned a CommD that does not match the sector's pieces",
                    ));
                }
                up.comm_r = Some(comm_r);
                up.comm_d = Some(comm_d);
                s.state = ProveReplicaUpdate;
            }
            ProveReplicaUpdate => {
                // Lotus checks the sector is still active before proving: a terminated or expired
                // sector cannot be updated.
                if self.chain.sector_on_chain(s.number).await.map_err(chain_err)?.is_none() {
                    ran.push("the sector is no longer active on chain".into());
                    s.state = AbortUpgrade;
                    return Ok(s);
                }
                let (key, new_sealed, new_unsealed) = commitments(&up)?;
                let r = m
                    .run_task(TaskSpec {
                        sector,
                        task: TaskType::ProveReplicaUpdate1,
                        priority: prio,
                        selector: Selector::Existing { types: updates, allow_fetch: true },
                        prepare: None,
                        work: TaskCall::ProveReplicaUpdate1((sector, key, new_sealed, new_unsealed)),
                    })
                    .await?;
                let vanilla: Vec<Bytes> =
                    serde_json::from_value(note(TaskType::ProveReplicaUpdate1, r)).map_err(json)?;
                let r = m
                    .run_task(TaskSpec {
                        sector,
                        task: TaskType::ProveReplicaUpdate2,
                        priority: prio,
                        selector: Selector::Task,
                        prepare: None,
                        work: TaskCall::ProveReplicaUpdate2((sector, key, new_sealed, new_unsealed, vanilla)),
                    })
                    .await?;
                let proof: Bytes = serde_json::from_value(note(TaskType::ProveReplicaUpdate2, r)).map_err(json)?;
                up.proof = Some(proof.to_base64());
                s.state = FinalizeReplicaUpdate;
            }
            FinalizeReplicaUpdate => {
                let r = m
                    .run_task(TaskSpec {
                        sector,
                        task: TaskType::FinalizeReplicaUpdate,
                        priority: prio,
                        selector: Selector::Existing { types: FileTypes::of(&[UpdateCache]), allow_fetch: false },
                        prepare: None,
                        work: TaskCall::FinalizeReplicaUpdate((sector,)),
                    })
                    .await?;
                note(TaskType::FinalizeReplicaUpdate, r);
                // Both replicas are in long-term storage before the chain switches to the new
                // one (Lotus finalizes before sending, so PoSt never finds a file missing).
                let keep_unsealed = self.cfg.keep_unsealed;
                let moved = if keep_unsealed { FileTypes::of(&[Update, UpdateCache, Unsealed]) } else { updates };
                let r = m
                    .run_task(TaskSpec {
                        sector,
                        task: TaskType::Fetch,
                        priority: prio,
                        selector: Selector::Move { types: moved, allow_remote: !m.disallow_remote_finalize },
                        prepare: None,
                        work: TaskCall::MoveStorage((sector, moved)),
                    })
                    .await?;
                note(TaskType::Fetch, r);
                // The copies of the key and its cache the update was computed from.
                self.remove_sealing_copies(sector.id, FileTypes::of(&[Sealed, Cache])).await;
                let dropped = if keep_unsealed { FileTypes::of(&[Piece]) } else { FileTypes::of(&[Unsealed, Piece]) };
                self.remove_copies(sector.id, dropped, None).await;
                s.state = SubmitReplicaUpdate;
            }
            SubmitReplicaUpdate | WaitMutable => return Box::pin(self.submit_replica_update(s, up, ran)).await,
            ReplicaUpdateWait => {
                let cid = message_cid(&up.message)?;
                let epoch = match self.chain.wait("ProveReplicaUpdates3", cid).await {
                    Ok(e) => e,
                    Err(e) => return Err(self.explain(e).await),
                };
                let (_, new_sealed, _) = commitments(&up)?;
                let info = self.chain.sector_on_chain(s.number).await.map_err(chain_err)?;
                if info.as_ref().map(|i| i.sealed_cid) != Some(new_sealed) {
                    return Err(CallError::unknown(format!(
                        "the replica update message {cid} landed, but sector {}'s sealed CID on chain is not the update's",
                        s.number
                    )));
                }
                up.landed = Some(epoch);
                s.state = UpdateActivating;
            }
            UpdateActivating => {
                // Lotus waits for the WinningPoSt sector-set lookback (a finality on mainnet) before
                // deleting the key; this devnet proves from its current state, so the miner's own
                // message confidence is the depth it trusts.
                let at = up.landed.unwrap_or_default() + self.chain.confidence() as Epoch;
                while self.chain.head().await.map_err(chain_err)? < at {
                    self.chain.next_head(self.chain.latest_head(), self.chain.block_delay()).await;
                }
                s.state = ReleaseSectorKey;
            }
            ReleaseSectorKey => {
                self.remove_copies(sector.id, FileTypes::of(&[Sealed]), None).await;
                let left = m.storage_find(sector.id, FileTypes::of(&[Sealed]));
                if !left.is_empty() {
                    return Err(CallError::unknown(format!(
                        "{} storage path(s) still hold the sector key; it retries",
                        left.len()
                    )));
                }
                s.state = Proving;
            }
            AbortUpgrade => {
                self.remove_copies(sector.id, FileTypes::of(&[Update, UpdateCache, Unsealed, Piece]), None).await;
                self.remove_sealing_copies(sector.id, FileTypes::of(&[Sealed, Cache])).await;
                s.pieces = std::mem::take(&mut up.cc_pieces);
                s.has_data = false;
                s.data_len = 0;
                s.upgrade = None;
                s.state = Proving;
                return Ok(s);
            }
            other => return Err(CallError::unknown(format!("{} is not a snap-deal state", other.name()))),
        }
        s.upgrade = Some(Box::new(up));
        Ok(s)
    }

    /// SubmitReplicaUpdate and WaitMutable: send ProveReplicaUpdates3 once the sector's deadline
    /// may be changed (not while it or the next one is open), unless an earlier run's landed.
    async fn submit_replica_update(
        &self,
        mut s: SectorInfo,
        mut up: Upgrade,
        ran: &mut Vec<String>,
    ) -> Result<SectorInfo, CallError> {
        use SectorState::*;
        let lacks = |what: &str| CallError::unknown(format!("{} without {what}", s.state.name()));
        let comm_r = up.comm_r.ok_or_else(|| lacks("the update's CommR"))?;
        let info = self
            .chain
            .sector_on_chain(s.number)
            .await
            .map_err(chain_err)?
            .ok_or_else(|| CallError::unknown(format!("sector {} is not active on chain", s.number)))?;
        if info.sealed_cid == lotus_api::wire::Commitment::Sealed.to_cid(&comm_r) {
            up.landed = Some(self.chain.head().await.map_err(chain_err)?);
            s.state = UpdateActivating;
            s.upgrade = Some(Box::new(up));
            return Ok(s);
        }
        let loc = self
            .chain
            .sector_location(s.number)
            .await
            .map_err(chain_err)?
            .ok_or_else(|| CallError::unknown(format!("sector {} has no deadline on chain", s.number)))?;
        let mut head = self.chain.head().await.map_err(chain_err)?;
        if !self.chain.deadline_mutable(loc.deadline, head) {
            if s.state == SubmitReplicaUpdate {
                // Written before it waits, so that `sectors list` shows why.
                ran.push(format!("deadline {} is open or opens next", loc.deadline));
                s.state = WaitMutable;
                s.upgrade = Some(Box::new(up));
                return Ok(s);
            }
            while !self.chain.deadline_mutable(loc.deadline, head) {
                self.chain.next_head(self.chain.latest_head(), self.chain.block_delay()).await;
                head = self.chain.head().await.map_err(chain_err)?;
            }
            s.state = SubmitReplicaUpdate;
            s.upgrade = Some(Box::new(up));
            return Ok(s);
        }
        let spec = crate::chain::ReplicaUpdateSpec {
            number: s.number,
            seal_proof: s.proof,
            deadline: loc.deadline,
            partition: loc.partition,
            comm_r,
            pieces: s.pieces.iter().map(|p| (p.commitment, p.size.0 / 127 * 128)).collect(),
            proof: up.proof_bytes()?,
        };
        let cid = self.chain.push_replica_update(&spec, &info).await.map_err(chain_err)?;
        ran.push(format!("ProveReplicaUpdates3 {cid}"));
        up.message = Some(cid.to_string());
        s.state = ReplicaUpdateWait;
        s.upgrade = Some(Box::new(up));
        Ok(s)
    }

    /// Remove the copies of `types` that sit in sealing-only paths (a task's working copies),
    /// keeping every copy in a long-term storage path.
    async fn remove_sealing_copies(&self, sector: SectorId, types: FileTypes) {
        self.remove_where(sector, types, |si| !si.can_store).await
    }

    /// The URL of the sector's piece file (a data sector's bytes, from `sectors add-piece`).
    fn piece_url(&self, sector: SectorId) -> Result<String, CallError> {
        self.manager
            .storage_find(sector, FileTypes::of(&[FileType::Piece]))
            .into_iter()
            .flat_map(|si| si.urls)
            .next()
            .ok_or_else(|| CallError::unknown(format!("the piece file of {sector} is in no storage path")))
    }

    /// Delete every copy of these files in the cluster (through each holder's /remote).
    /// Remove the sector's `types` files from every node, or from every node but `keep`'s
    /// (a hostname).
    async fn remove_copies(&self, sector: SectorId, types: FileTypes, keep: Option<&str>) {
        let kept = |si: &lotus_api::types::SectorStorageInfo| {
            keep.is_some_and(|host| self.manager.path_hosts(si.id).iter().any(|h| h == host))
        };
        self.remove_where(sector, types, |si| !kept(si)).await
    }

    /// Delete the copies of `types` in the paths `chosen` picks.
    async fn remove_where(
        &self,
        sector: SectorId,
        types: FileTypes,
        chosen: impl Fn(&lotus_api::types::SectorStorageInfo) -> bool,
    ) {
        let Some(ex) = self.manager.local_executor() else { return };
        for si in self.manager.storage_find(sector, types) {
            if !chosen(&si) {
                continue;
            }
            for url in &si.urls {
                match ex.fetcher.delete(url, &[]).await {
                    Ok(()) => tracing::info!(%url, "removed {types} of {sector}"),
                    Err(e) => tracing::warn!(%url, "removing {types} of {sector} failed: {e}"),
                }
            }
        }
    }

    /// `SectorsUnsealPiece`: rebuild the unsealed file of a proving sector from its sealed
    /// file on a worker that can unseal.
    pub async fn unseal(&self, number: u64) -> Result<(), String> {
        let s = self.db().get(number).map_err(|e| e.to_string())?.ok_or(SealingError::NotFound(number).to_string())?;
        if s.state != SectorState::Proving {
            return Err(SealingError::NotSealed(number).to_string());
        }
        let sector = self.sector_ref(&s);
        // An updated sector's data is in its update (decoded with the sector key), under the
        // update's CommD.
        let updated = s.upgrade.as_ref().filter(|u| u.landed.is_some());
        let (replica, comm_d) = match updated {
            Some(u) => (FileTypes::of(&[FileType::Update, FileType::Cache]), u.comm_d),
            None => (FileTypes::of(&[FileType::Sealed, FileType::Cache]), s.comm_d),
        };
        self.manager
            .run_task(TaskSpec {
                sector,
                task: TaskType::Unseal,
                priority: Self::priority(&s),
                selector: Selector::Existing { types: replica, allow_fetch: true },
                prepare: None,
                work: sealing_exec::TaskCall::UnsealPiece((
                    sector,
                    0,
                    sealing_proofs::max_unpadded(s.proof.sector_size()),
                    Bytes(s.ticket.ok_or("the sector has no ticket")?.to_vec()),
                    lotus_api::wire::Commitment::Unsealed.to_cid(&comm_d.ok_or("the sector has no CommD")?),
                )),
            })
            .await
            .map(|r| tracing::info!(sector = number, host = %r.host, "unsealed"))
            .map_err(|e| e.to_string())
    }

    pub fn get(&self, number: u64) -> Result<Option<SectorInfo>, SealingError> {
        self.db().get(number)
    }
    pub fn list(&self) -> Result<Vec<SectorInfo>, SealingError> {
        self.db().list()
    }

    pub fn quarantined(&self) -> Result<Vec<(u64, String, String)>, SealingError> {
        self.db().quarantined()
    }
    pub fn log(&self, number: u64) -> Result<Vec<LogEntry>, SealingError> {
        self.db().log(number)
    }
    pub fn count_by_state(&self) -> Result<Vec<(String, i64)>, SealingError> {
        self.db().count_by_state()
    }
    pub fn recent(&self, limit: usize) -> Result<Vec<(u64, String)>, SealingError> {
        self.db().recent(limit)
    }
}

/// The sector after its state's work failed: to the failure state (which retries), or given up
/// after `max_retries` failures in a row. A temporary error (a full disk, a restarting worker)
/// is waited out however long it lasts: it never counts.
fn after_failure(s: &SectorInfo, e: &CallError, max_retries: u32) -> SectorInfo {
    let mut n = s.clone();
    if !e.is_temporary() {
        n.retries += 1;
    }
    n.last_error = e.to_string();
    n.state = if n.retries <= max_retries {
        s.state.failure()
    } else if s.state.can_abort_upgrade() {
        // An upgrade that keeps failing is given up, not the sector (it still proves).
        n.retries = 0;
        SectorState::AbortUpgrade
    } else if s.state.is_upgrade() {
        s.state.failure()
    } else {
        SectorState::FailedUnrecoverable
    };
    if n.state == SectorState::SealPreCommit2Failed {
        n.pc2_fails += 1;
    }
    n
}

/// The PreCommit1 output kept in the sector record, as PreCommit2's param: Lotus's bytes, or
/// (a record written before this miner spoke Lotus's encoding) the library's JSON object.
fn pc1_bytes(v: serde_json::Value, ticket: Option<[u8; 32]>) -> Result<Bytes, String> {
    if v.is_object() {
        let out: sealing_proofs::SealPreCommitPhase1Output =
            serde_json::from_value(v).map_err(|e| format!("the stored PreCommit1 output does not decode: {e}"))?;
        return sealing_exec::wire::pc1_to_wire(&out, &ticket.ok_or("the sector has no ticket")?);
    }
    serde_json::from_value(v).map_err(|e| format!("the stored PreCommit1 output does not decode: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sector record from before the miner spoke Lotus's encoding keeps the PreCommit1
    /// output as the library's JSON object: PreCommit2 still gets Lotus's bytes for it.
    #[test]
    fn a_stored_pc1_output_of_either_form_becomes_lotuss_bytes() {
        use std::io::Read;
        let dir = tempfile::tempdir().unwrap();
        let s = sealing_proofs::Sealer::new(RegisteredSealProof::STACKED_DRG_2KIB_V1_1, 1000, 1)
            .with_backend(sealing_proofs::Backend::Mock);
        let paths = sealing_proofs::SectorPaths::in_dir(dir.path());
        let piece = s.add_piece(std::io::repeat(0).take(2032), 2032, &paths.unsealed).unwrap();
        let out = s.pre_commit1(&paths, [5; 32], &[piece]).unwrap();
        let lotus = sealing_exec::wire::pc1_to_wire(&out, &[5; 32]).unwrap();
        let old_record = serde_json::to_value(&out).unwrap();
        assert_eq!(pc1_bytes(old_record.clone(), Some([5; 32])).unwrap(), lotus);
        assert_eq!(pc1_bytes(serde_json::to_value(&lotus).unwrap(), None).unwrap(), lotus);
        assert!(pc1_bytes(old_record, None).unwrap_err().contains("no ticket"));
    }

    #[test]
    fn db_keeps_sectors_and_their_log_across_reopen() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sealing.db");
        {
            let db = Db::open(&p).unwrap();
            assert_eq!(db.next_number().unwrap(), 1);
            assert_eq!(db.next_number().unwrap(), 2);
            let s = SectorInfo {
                state: SectorState::PreCommit1,
                ticket: Some([1; 32]),
                ticket_epoch: Some(3),
                ..SectorInfo::new(1, RegisteredSealProof::STACKED_DRG_2KIB_V1_1, false)
            };
            db.put(&s, "transition", "GetTicket → PreCommit1").unwrap();
        }
        let db = Db::open(&p).unwrap();
        assert_eq!(db.next_number().unwrap(), 3, "numbers are never reused");
        let s = db.get(1).unwrap().unwrap();
        assert_eq!(s.state, SectorState::PreCommit1);
        assert_eq!(s.ticket, Some([1; 32]));
        assert_eq!(db.log(1).unwrap()[0].message, "GetTicket → PreCommit1");
    }

    /// PreCommit2 retries itself three times; the fourth failure sends the sector back to
    /// PreCommit1, and a success of PreCommit2 forgets the count.
    #[test]
    fn precommit2_failing_more_than_three_times_seals_again_from_precommit1() {
        let e = CallError::unknown("PC2 failed");
        let mut s = SectorInfo {
            state: SectorState::PreCommit2,
            ..SectorInfo::new(3, RegisteredSealProof::STACKED_DRG_2KIB_V1_1, false)
        };
        for n in 1..=PC2_FALLBACK + 1 {
            s = after_failure(&s, &e, 10);
            assert_eq!((s.state, s.pc2_fails), (SectorState::SealPreCommit2Failed, n));
            let (to, why) = s.retry().unwrap();
            if n <= PC2_FALLBACK {
                assert_eq!((to, why.as_str()), (SectorState::PreCommit2, "retrying PreCommit2"));
                s.state = to;
            } else {
                assert_eq!(to, SectorState::PreCommit1);
                assert!(why.contains("failed 4 times"), "{why}");
                assert!(SectorState::SealPreCommit2Failed.can_become(to));
            }
        }
    }

    #[test]
    fn an_unreadable_row_is_quarantined_reported_and_its_number_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sealing.db");
        let db = Db::open(&path).unwrap();
        let p = RegisteredSealProof::STACKED_DRG_2KIB_V1_1;
        for n in [1, 2] {
            db.create(&SectorInfo::new(n, p, false), "pledged (CC)").unwrap();
        }
        assert!(matches!(db.create(&SectorInfo::new(2, p, false), "again"), Err(SealingError::Exists(2))));
        // A record this miner cannot read (a newer miner's state, a hand edit).
        db.conn
            .execute("UPDATE sectors SET info = '{\"number\": 2, \"state\": \"Hovering\"}' WHERE number = 2", [])
            .unwrap();
        assert_eq!(db.quarantine_unreadable().unwrap().len(), 1);
        assert_eq!(db.list().unwrap().iter().map(|s| s.number).collect::<Vec<_>>(), vec![1]);
        let q = db.quarantined().unwrap();
        assert_eq!((q[0].0, q[0].1.as_str()), (2, "Packing"), "listed in the state its row was in");
        let e = db.get(2).unwrap_err().to_string();
        assert!(e.contains("quarantined") && e.contains("Hovering"), "{e}");
        assert!(db.log(2).unwrap().last().unwrap().message.starts_with("quarantined"));
        assert!(matches!(db.create(&SectorInfo::new(2, p, false), "again"), Err(SealingError::Exists(2))));
        // The number assigner, even rebuilt from the table alone, skips it.
        db.conn.execute("DELETE FROM meta", []).unwrap();
        assert_eq!(db.next_number().unwrap(), 3);
        drop(db);
        // Reopened: nothing left to quarantine, the quarantined row kept.
        let db = Db::open(&path).unwrap();
        assert!(db.quarantine_unreadable().unwrap().is_empty());
        assert_eq!(db.quarantined().unwrap().len(), 1);
    }

    #[test]
    fn the_schema_is_migrated_in_order_and_a_newer_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sealing.db");
        // A database from before versions: the tables, user_version 0.
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(MIGRATIONS[0]).unwrap();
            c.execute("INSERT INTO sectors (number, state, info) VALUES (1, 'Packing', '{}')", []).unwrap();
        }
        let db = Db::open(&path).unwrap();
        let v: i64 = db.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        assert_eq!(db.quarantine_unreadable().unwrap().len(), 1, "the migration made the quarantine table");
        drop(db);
        Connection::open(&path)
            .unwrap()
            .execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
            .unwrap();
        let e = Db::open(&path).err().unwrap().to_string();
        assert!(e.contains("newer lotus-miner") && e.contains(&format!("version {}", SCHEMA_VERSION + 1)), "{e}");
    }

    #[test]
    fn a_state_is_forced_only_with_the_data_it_needs() {
        let mut s: SectorInfo = serde_json::from_value(serde_json::json!({
            "number": 7, "state": "PreCommit2", "proof": 5, "has_data": false, "pieces": [], "ticket": vec![1u8; 32],
            "ticket_epoch": 3, "pc1": {}, "comm_r": null, "comm_d": null, "precommit_epoch": null, "seed": null,
            "seed_epoch": null, "proof_bytes": null, "retries": 0, "last_error": "",
        }))
        .unwrap();
        assert_eq!(SectorState::PreCommit1.missing(&s), None);
        assert_eq!(SectorState::Committing.missing(&s), Some("a seed"));
        assert_eq!(
            SectorState::ComputeProofFailed.missing(&s),
            Some("a seed"),
            "a failure state needs what it retries"
        );
        assert_eq!(SectorState::Proving.missing(&s), Some("a proof"));
        s.seed = Some([2; 32]);
        assert_eq!(SectorState::Committing.missing(&s), Some("CommR"));
        assert_eq!(SectorState::Removed.missing(&s), None);
        for &st in SectorState::ALL {
            assert_eq!(SectorState::from_name(&st.name()), Some(st));
        }
    }

    /// The transition table, edge by edge: every legal transition is listed here, and every
    /// other pair of states is refused.
    #[test]
    fn the_transition_table_is_exactly_these_edges() {
        use SectorState::*;
        let forward = [
            (Packing, GetTicket),
            (GetTicket, PreCommit1),
            (PreCommit1, PreCommit2),
            (PreCommit2, PreCommitting),
            (PreCommitting, PreCommitWait),
            (PreCommitting, SubmitPreCommitBatch),
            (PreCommitting, WaitSeed),
            (PreCommitWait, WaitSeed),
            (SubmitPreCommitBatch, PreCommitBatchWait),
            (SubmitPreCommitBatch, WaitSeed),
            (PreCommitBatchWait, WaitSeed),
            (WaitSeed, Committing),
            (Committing, SubmitCommit),
            (Committing, SubmitCommitAggregate),
            (SubmitCommit, CommitWait),
            (SubmitCommit, FinalizeSector),
            (CommitWait, FinalizeSector),
            (SubmitCommitAggregate, CommitAggregateWait),
            (SubmitCommitAggregate, FinalizeSector),
            (CommitAggregateWait, FinalizeSector),
            (FinalizeSector, Proving),
            (Terminating, TerminateWait),
            (Terminating, TerminateFinality),
            (TerminateWait, TerminateFinality),
            // Snap deals: the operator's edges, then Lotus's upgrade states in order.
            (Proving, Available),
            (Available, SnapDealsWaitDeals),
            (Available, Proving),
            (SnapDealsWaitDeals, SnapDealsAddPiece),
            (SnapDealsAddPiece, SnapDealsPacking),
            (SnapDealsPacking, UpdateReplica),
            (UpdateReplica, ProveReplicaUpdate),
            (ProveReplicaUpdate, FinalizeReplicaUpdate),
            (FinalizeReplicaUpdate, SubmitReplicaUpdate),
            (SubmitReplicaUpdate, ReplicaUpdateWait),
            (SubmitReplicaUpdate, WaitMutable),
            (SubmitReplicaUpdate, UpdateActivating),
            (WaitMutable, SubmitReplicaUpdate),
            (ReplicaUpdateWait, UpdateActivating),
            (UpdateActivating, ReleaseSectorKey),
            (ReleaseSectorKey, Proving),
            (SnapDealsDealsExpired, AbortUpgrade),
            (SnapDealsRecoverDealIDs, AbortUpgrade),
            (AbortUpgrade, Proving),
        ];
        let failures = [
            (SnapDealsWaitDeals, SnapDealsAddPieceFailed),
            (SnapDealsAddPiece, SnapDealsAddPieceFailed),
            (SnapDealsPacking, SnapDealsAddPieceFailed),
            (UpdateReplica, ReplicaUpdateFailed),
            (ProveReplicaUpdate, ReplicaUpdateFailed),
            (SubmitReplicaUpdate, ReplicaUpdateFailed),
            (WaitMutable, ReplicaUpdateFailed),
            (ReplicaUpdateWait, ReplicaUpdateFailed),
            (UpdateActivating, ReplicaUpdateFailed),
            (FinalizeReplicaUpdate, FinalizeReplicaUpdateFailed),
            (ReleaseSectorKey, ReleaseSectorKeyFailed),
            (Terminating, TerminateFailed),
            (TerminateWait, TerminateFailed),
            (TerminateFinality, TerminateFailed),
            (Packing, AddPieceFailed),
            (GetTicket, SealPreCommit1Failed),
            (PreCommit1, SealPreCommit1Failed),
            (PreCommit2, SealPreCommit2Failed),
            (PreCommitting, PreCommitFailed),
            (PreCommitWait, PreCommitFailed),
            (SubmitPreCommitBatch, PreCommitFailed),
            (PreCommitBatchWait, PreCommitFailed),
            (WaitSeed, PreCommitFailed),
            (Committing, ComputeProofFailed),
            (SubmitCommit, CommitFailed),
            (CommitWait, CommitFailed),
            (SubmitCommitAggregate, CommitFailed),
            (CommitAggregateWait, CommitFailed),
            (FinalizeSector, FinalizeFailed),
        ];
        let retries = [
            (AddPieceFailed, Packing),
            (SealPreCommit1Failed, PreCommit1),
            (SealPreCommit2Failed, PreCommit2),
            // After more than PC2_FALLBACK PreCommit2 failures (Lotus's rule).
            (SealPreCommit2Failed, PreCommit1),
            (PreCommitFailed, PreCommitting),
            (ComputeProofFailed, Committing),
            (CommitFailed, Committing),
            (FinalizeFailed, FinalizeSector),
            (TerminateFailed, Terminating),
            (SnapDealsAddPieceFailed, SnapDealsWaitDeals),
            // From the furthest step the sector has the data for (Lotus's rule).
            (ReplicaUpdateFailed, UpdateReplica),
            (ReplicaUpdateFailed, ProveReplicaUpdate),
            (ReplicaUpdateFailed, SubmitReplicaUpdate),
            (ReplicaUpdateFailed, ReplicaUpdateWait),
            (FinalizeReplicaUpdateFailed, FinalizeReplicaUpdate),
            (ReleaseSectorKeyFailed, ReleaseSectorKey),
        ];
        // `sectors abort-upgrade` (and an upgrade given up): until the proof, and while waiting.
        let aborts = [
            SnapDealsWaitDeals,
            SnapDealsAddPiece,
            SnapDealsPacking,
            UpdateReplica,
            ProveReplicaUpdate,
            WaitMutable,
            ReplicaUpdateWait,
            SnapDealsAddPieceFailed,
            SnapDealsDealsExpired,
            SnapDealsRecoverDealIDs,
            ReplicaUpdateFailed,
        ]
        .map(|s| (s, AbortUpgrade));
        let removal = [(Removing, Removed), (Removing, RemoveFailed), (RemoveFailed, Removing)];
        let mut legal: Vec<(SectorState, SectorState)> =
            forward.into_iter().chain(failures).chain(retries).chain(removal).chain(aborts).collect();
        for &s in SectorState::ALL {
            if !matches!(s, Removing | RemoveFailed | Removed) {
                legal.push((s, Removing));
            }
            // `sectors terminate`, from anywhere but a removal or a termination.
            if !matches!(
                s,
                Removing | RemoveFailed | Removed | Terminating | TerminateWait | TerminateFinality | TerminateFailed
            ) {
                legal.push((s, Terminating));
            }
            // Never a sector proving on chain: Available and the upgrade states.
            if !matches!(s, Proving | FailedUnrecoverable | Removing | RemoveFailed | Removed | Available)
                && !s.is_upgrade()
            {
                legal.push((s, FailedUnrecoverable));
            }
        }
        let mut wrong = vec![];
        for &a in SectorState::ALL {
            for &b in SectorState::ALL {
                let want = legal.contains(&(a, b));
                if a.can_become(b) != want {
                    wrong.push(format!("{a:?} → {b:?}: table says {}, the list {}", a.can_become(b), want));
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        // Every state but the final ones has somewhere to go, and Proving only off the chain or
        // to removal.
        assert!(SectorState::ALL
            .iter()
            .all(|s| s.is_final() || !s.successors().is_empty() || s.retry_target().is_some()));
        assert_eq!(
            SectorState::ALL.iter().filter(|b| Proving.can_become(**b)).collect::<Vec<_>>(),
            vec![&Terminating, &Available, &Removing]
        );
    }

    fn sealing(dir: &Path, max: u64, max_deals: u64) -> Arc<Sealing> {
        let sched =
            sealing_sched::Scheduler::new(sealing_sched::Config { assigner: sealing_sched::Assigner::Utilization });
        let manager = Manager::without_executor(sched, Default::default(), None, Default::default());
        let chain = Arc::new(crate::chain::ChainClient::unreachable_for_tests());
        let cfg = BatchConfig { max: 4, wait: Duration::from_secs(60), slack: Duration::ZERO };
        Arc::new(Sealing {
            db: Mutex::new(Db::open(&dir.join("sealing.db")).unwrap()),
            drives: Default::default(),
            chain: chain.clone(),
            manager,
            miner: 1000,
            proof: RegisteredSealProof::STACKED_DRG_2KIB_V1_1,
            backend: sealing_proofs::Backend::Real,
            cfg: SealingConfig {
                max_sealing_sectors: max,
                max_sealing_sectors_for_deals: max_deals,
                retry_wait: Duration::from_secs(1),
                max_retries: 1,
                keep_unsealed: true,
                batch_pre_commits: true,
                aggregate_commits: true,
                cc_lifetime: Duration::from_secs(540 * 86400),
                max_upgrading_sectors: 0,
                prefer_new_sectors_for_deals: false,
                min_upgrade_sector_expiration: 0,
            },
            clock: Default::default(),
            write_errors: Default::default(),
            terminator: crate::terminate::Terminator::new(
                chain.clone(),
                crate::terminate::TerminateConfig { max: 100, min: 1, wait: Duration::from_secs(300) },
            ),
            batches: Batches::new(
                chain.clone(),
                sealing_proofs::Backend::Real,
                1000,
                RegisteredSealProof::STACKED_DRG_2KIB_V1_1,
                cfg.clone(),
                cfg,
                4,
            ),
        })
    }

    /// Every sector in flight holds one `drive` future for its whole life: its size is the
    /// miner's memory per sector (10,000 in flight in the scale benchmark; about 3 KiB today,
    /// so 30 MiB for those). A step that grows it (a large value held across an `.await`)
    /// fails here rather than multiply by every sector.
    #[test]
    fn a_sector_in_flight_costs_little_memory() {
        let dir = tempfile::tempdir().unwrap();
        let s = sealing(dir.path(), 0, 0);
        let drive = s.clone().drive(1);
        let size = std::mem::size_of_val(&drive);
        println!("drive future: {size} bytes");
        assert!(size <= 4096, "a sector's drive future is {size} bytes");
    }

    /// `[Sealing] MaxSealingSectors` / `MaxSealingSectorsForDeals` (issue 3, §1.5): a pledge
    /// past the limit is refused with the counts.
    #[test]
    fn pledges_past_the_sealing_limit_are_refused_with_the_counts() {
        let d = tempfile::tempdir().unwrap();
        let s = sealing(d.path(), 2, 1);
        assert_eq!(s.pledge(false).unwrap(), 1);
        assert_eq!(s.pledge(true).unwrap_err().to_string(), "too many sectors sealing (curSealing: 1, max: 1)");
        assert_eq!(s.pledge(false).unwrap(), 2);
        assert_eq!(s.pledge(false).unwrap_err().to_string(), "too many sectors sealing (curSealing: 2, max: 2)");
        // A sector that is proving no longer counts.
        let db = s.db();
        let mut first = db.get(1).unwrap().unwrap();
        first.state = SectorState::Proving;
        db.put(&first, "transition", "test").unwrap();
        drop(db);
        assert_eq!(s.pledge(false).unwrap(), 3);
        let d2 = tempfile::tempdir().unwrap();
        let unlimited = sealing(d2.path(), 0, 0);
        for n in 1..=5 {
            assert_eq!(unlimited.pledge(n % 2 == 0).unwrap(), n);
        }
    }

    #[test]
    fn temporary_errors_never_give_a_sector_up() {
        let d = tempfile::tempdir().unwrap();
        let s = sealing(d.path(), 0, 0);
        let n = s.pledge(false).unwrap();
        let mut sector = s.db().get(n).unwrap().unwrap();
        sector.state = SectorState::PreCommit1;
        let full = CallError::new(CallError::TEMP_ALLOCATE_SPACE, "no room");
        for _ in 0..20 {
            sector = after_failure(&sector, &full, 1);
            assert_eq!(sector.state, SectorState::SealPreCommit1Failed);
            sector.state = SectorState::PreCommit1;
        }
        let bug = CallError::unknown("library error");
        sector = after_failure(&sector, &bug, 1);
        assert_eq!(sector.state, SectorState::SealPreCommit1Failed);
        sector.state = SectorState::PreCommit1;
        assert_eq!(after_failure(&sector, &bug, 1).state, SectorState::FailedUnrecoverable);
    }

    #[test]
    fn failures_retry_the_state_they_came_from() {
        use SectorState::*;
        for s in [Packing, PreCommit1, PreCommit2, PreCommitting, Committing, FinalizeSector] {
            let f = s.failure();
            assert_ne!(f, s);
            let back = f.retry_target().unwrap();
            assert!(back == s || (s == GetTicket && back == PreCommit1), "{s:?} → {f:?} → {back:?}");
        }
    }
}
