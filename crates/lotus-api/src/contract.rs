//! The API contract: every method of the worker API and of the miner API this project serves,
//! each with its positional params, its result and the permission it needs, declared once.
//! The server registration ([`crate::RpcServer::method`]), the client calls
//! ([`crate::RpcClient::request`]), the permission tables and the golden tests against
//! Lotus's generated API documents (`tests/golden.rs`) all come from these declarations, so a
//! param or field that drifts from Lotus's shape fails a test instead of compiling.

use crate::rpc::RpcError;
use crate::Permission;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One API method.
pub trait Method: 'static {
    /// The name after `Filecoin.`.
    const NAME: &'static str;
    const PERM: Permission;
    /// The names of the params, for errors.
    const PARAM_NAMES: &'static [&'static str];
    /// The positional params, as a tuple.
    type Params: ParamList + Send + 'static;
    type Result: Serialize + DeserializeOwned + Send + 'static;
}

/// Positional params: a tuple whose elements encode one JSON value each. Trailing params that
/// decode from `null` (an `Option`) may be left out by the caller.
pub trait ParamList: Sized {
    const LEN: usize;
    fn to_values(&self) -> Vec<Value>;
    /// Decode, saying which param (by position and `names`) is wrong.
    fn from_values(method: &str, names: &[&str], values: Vec<Value>) -> Result<Self, RpcError>;
}

fn param<T: DeserializeOwned>(method: &str, names: &[&str], values: &mut [Value], i: usize) -> Result<T, RpcError> {
    let v = values.get_mut(i).map(Value::take).unwrap_or(Value::Null);
    let missing = v.is_null();
    serde_json::from_value(v).map_err(|e| {
        let name = names.get(i).copied().unwrap_or("param");
        RpcError::invalid_params(if missing && i >= values.len() {
            format!("{method}: param {i} ({name}) is missing: {method} takes {} param(s)", names.len())
        } else {
            format!("{method}: param {i} ({name}) is invalid: {e}")
        })
    })
}

macro_rules! tuple_params {
    ($len:expr; $($t:ident $i:tt),*) => {
        impl<$($t: Serialize + DeserializeOwned),*> ParamList for ($($t,)*) {
            const LEN: usize = $len;
            fn to_values(&self) -> Vec<Value> {
                vec![$(serde_json::to_value(&self.$i).expect("a param serialises")),*]
            }
            #[allow(unused_mut, unused_variables)]
            fn from_values(method: &str, names: &[&str], mut values: Vec<Value>) -> Result<Self, RpcError> {
                if values.len() > $len {
                    return Err(RpcError::invalid_params(format!(
                        "{method} takes {} param(s), got {}", $len, values.len()
                    )));
                }
                Ok(($(param::<$t>(method, names, &mut values, $i)?,)*))
            }
        }
    };
}

tuple_params!(0;);
tuple_params!(1; A 0);
tuple_params!(2; A 0, B 1);
tuple_params!(3; A 0, B 1, C 2);
tuple_params!(4; A 0, B 1, C 2, D 3);
tuple_params!(5; A 0, B 1, C 2, D 3, E 4);
tuple_params!(6; A 0, B 1, C 2, D 3, E 4, F 5);

/// Something that walks every method of a contract (the golden tests, tables).
pub trait Visitor {
    fn visit<M: Method>(&mut self);
}

/// `{}`: the value of a map used as a set (`TaskTypes`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

macro_rules! contract {
    ($( $(#[$m:meta])* $name:ident ( $($p:ident : $t:ty),* $(,)? ) -> $r:ty, $perm:ident; )*) => {
        $(
            $(#[$m])*
            #[derive(Debug, Clone, Copy)]
            pub struct $name;
            impl $crate::contract::Method for $name {
                const NAME: &'static str = stringify!($name);
                const PERM: $crate::Permission = $crate::Permission::$perm;
                const PARAM_NAMES: &'static [&'static str] = &[$(stringify!($p)),*];
                type Params = ($($t,)*);
                type Result = $r;
            }
        )*
        /// Every method and its permission.
        pub const TABLE: &[(&str, $crate::Permission)] = &[$((stringify!($name), $crate::Permission::$perm)),*];
        /// Visit every method.
        pub fn visit(v: &mut impl $crate::contract::Visitor) {
            $( v.visit::<$name>(); )*
        }
    };
}

/// The worker API (Lotus's `api.Worker`, served by `lotus-worker` on `/rpc/v0`; Worker API
/// 1.7.0). All methods need admin, as in Lotus.
pub mod worker {
    use super::Empty;
    use crate::wire::*;
    use sealing_types::{CallId, FileTypes, PathType, SectorId, SectorRef, TaskType, WorkerInfo};
    use std::collections::BTreeMap;
    use uuid::Uuid;

    /// What `GenerateWindowPoSt`/`GenerateWinningPoSt` prove for one sector (`storiface.PostSectorChallenge`).
    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct PostSectorChallenge {
        #[serde(rename = "SealProof")]
        pub seal_proof: sealing_types::RegisteredSealProof,
        #[serde(rename = "SectorNumber")]
        pub sector_number: u64,
        #[serde(rename = "SealedCID")]
        pub sealed_cid: Cid,
        #[serde(rename = "Challenge")]
        pub challenge: Vec<u64>,
        #[serde(rename = "Update")]
        pub update: bool,
    }

    /// `proof.PoStProof`.
    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct PoStProof {
        #[serde(rename = "PoStProof")]
        pub post_proof: i64,
        #[serde(rename = "ProofBytes")]
        pub proof_bytes: Bytes,
    }

    /// `storiface.WindowPoStResult`, and (ours, which Lotus's decoder ignores) what was
    /// proven, why each skipped sector was skipped, and who proved it how fast.
    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct WindowPoStResult {
        #[serde(rename = "PoStProofs")]
        pub post_proofs: PoStProof,
        #[serde(rename = "Skipped", deserialize_with = "sealing_types::worker::null_as_default")]
        pub skipped: Vec<SectorId>,
        #[serde(rename = "Details", default, skip_serializing_if = "Option::is_none")]
        pub details: Option<PoStDetails>,
    }

    /// Ours: the details of a PoSt a worker computed.
    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    pub struct PoStDetails {
        pub proven: Vec<u64>,
        pub skipped_reasons: Vec<PoStSkip>,
        /// The node that computed the SNARK.
        pub prover: String,
        pub seconds: f64,
    }

    /// A sector a WindowPoSt skipped, and why.
    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    pub struct PoStSkip {
        pub number: u64,
        pub reason: String,
    }

    /// One header of a `SectorLocation`.
    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct Header {
        #[serde(rename = "Key")]
        pub key: String,
        #[serde(rename = "Value")]
        pub value: String,
    }

    /// Where `DownloadSectorData` takes a file from (`storiface.SectorLocation`).
    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct SectorLocation {
        #[serde(rename = "Local")]
        pub local: bool,
        #[serde(rename = "URL")]
        pub url: String,
        #[serde(rename = "Headers")]
        pub headers: Option<Vec<Header>>,
    }

    contract! {
        /// The worker API version (a number: `major<<16 | minor<<8 | patch`).
        Version() -> u32, Admin;
        /// The worker's session UUID (its ID on the miner); an error while disabled.
        Session() -> Uuid, Admin;
        /// The session UUID, also while disabled.
        ProcessSession() -> Uuid, Admin;
        Info() -> WorkerInfo, Admin;
        /// The task types the worker accepts, as a set.
        TaskTypes() -> BTreeMap<TaskType, Empty>, Admin;
        Paths() -> Vec<StoragePath>, Admin;
        Enabled() -> bool, Admin;
        SetEnabled(enabled: bool) -> (), Admin;
        TaskEnable(task_type: TaskType) -> (), Admin;
        TaskDisable(task_type: TaskType) -> (), Admin;
        /// Ours beyond Lotus: `Shutdown [true]` exits at once instead of draining.
        Shutdown(now: Option<bool>) -> (), Admin;
        /// Remove the sector's files from this worker's paths.
        Remove(sector: SectorId) -> (), Admin;
        /// Wait until no task runs.
        WaitQuiet() -> (), Admin;
        StorageAddLocal(path: String) -> (), Admin;
        StorageDetachLocal(path: String) -> (), Admin;
        StorageDetachAll() -> (), Admin;
        StorageLocal() -> BTreeMap<Uuid, String>, Admin;
        StorageRedeclareLocal(id: Option<Uuid>, drop_missing: bool) -> (), Admin;
        // asynchronous task calls: each returns its CallID, the result comes back via Return*
        AddPiece(sector: SectorRef, piece_sizes: Vec<u64>, new_piece_size: u64, piece_data: Data) -> CallId, Admin;
        DataCid(piece_size: u64, piece_data: Data) -> CallId, Admin;
        SealPreCommit1(sector: SectorRef, ticket: Bytes, pieces: Vec<PieceInfo>) -> CallId, Admin;
        SealPreCommit2(sector: SectorRef, pc1o: Bytes) -> CallId, Admin;
        SealCommit1(sector: SectorRef, ticket: Bytes, seed: Bytes, pieces: Vec<PieceInfo>, cids: SectorCids) -> CallId, Admin;
        SealCommit2(sector: SectorRef, c1o: Bytes) -> CallId, Admin;
        FinalizeSector(sector: SectorRef) -> CallId, Admin;
        FinalizeReplicaUpdate(sector: SectorRef) -> CallId, Admin;
        ReleaseUnsealed(sector: SectorRef, keep_unsealed: Vec<Range>) -> CallId, Admin;
        MoveStorage(sector: SectorRef, types: FileTypes) -> CallId, Admin;
        Fetch(sector: SectorRef, file_type: FileTypes, path_type: PathType, mode: AcquireMode) -> CallId, Admin;
        UnsealPiece(sector: SectorRef, offset: u64, size: u64, randomness: Bytes, comm_d: Cid) -> CallId, Admin;
        ReplicaUpdate(sector: SectorRef, pieces: Vec<PieceInfo>) -> CallId, Admin;
        ProveReplicaUpdate1(sector: SectorRef, sector_key: Cid, new_sealed: Cid, new_unsealed: Cid) -> CallId, Admin;
        ProveReplicaUpdate2(sector: SectorRef, sector_key: Cid, new_sealed: Cid, new_unsealed: Cid, vanilla_proofs: Vec<Bytes>) -> CallId, Admin;
        GenerateSectorKeyFromData(sector: SectorRef, comm_d: Cid) -> CallId, Admin;
        DownloadSectorData(sector: SectorRef, finalized: bool, src: BTreeMap<FileTypes, SectorLocation>) -> CallId, Admin;
        // PoSt (synchronous: the proof is the answer)
        GenerateWindowPoSt(post_proof: i64, miner: u64, sectors: Vec<PostSectorChallenge>, partition: i64, randomness: Bytes) -> WindowPoStResult, Admin;
        GenerateWinningPoSt(post_proof: i64, miner: u64, sectors: Vec<PostSectorChallenge>, randomness: Bytes) -> Vec<PoStProof>, Admin;
        // ours: stop a running call (its proof process is killed); the calls a restarted
        // miner asks about (running, or holding an undelivered result)
        AbortCall(call: CallId) -> bool, Admin;
        Calls() -> Vec<CallId>, Admin;
        // ours: the miner's `auth rotate` hands the worker its token under the new secret
        UpdateMinerToken(token: String) -> (), Admin;
    }

    /// The methods of the worker contract that are ours, not Lotus's.
    pub const EXTRAS: &[&str] = &["AbortCall", "Calls", "UpdateMinerToken"];
}

/// The miner method a worker delivers a task's result through: `Return<Method>`, but for
/// `DownloadSectorData`, whose result goes to `ReturnDownloadSector` (Lotus's return type).
pub fn return_method(method: &str) -> String {
    match method {
        "DownloadSectorData" => "ReturnDownloadSector".into(),
        m => format!("Return{m}"),
    }
}

/// Whether `Return<method>` carries a result (Lotus's take `(callID, result, err)` for the
/// methods that produce one, `(callID, err)` for the others), as the miner contract declares.
pub fn returns_value(method: &str) -> bool {
    struct Find {
        name: String,
        result: bool,
    }
    impl Visitor for Find {
        fn visit<M: Method>(&mut self) {
            if M::NAME == self.name {
                self.result = <M::Params as ParamList>::LEN == 3;
            }
        }
    }
    let mut f = Find { name: return_method(method), result: false };
    miner::visit(&mut f);
    f.result
}

/// The miner API (Lotus's `api.StorageMiner` on `/rpc/v0`; Miner API 1.5.0): the methods
/// workers call (registration, the sector index, `Return*`) and the operator methods this
/// miner serves.
pub mod miner {
    use crate::types::{self, CallError, FsStat, SectorStorageInfo, WorkerJob};
    use crate::wire::*;
    use crate::Permission;
    use sealing_types::{CallId, FileTypes, PathType, SectorId, SectorRef};
    use serde_json::Value;
    use std::collections::BTreeMap;
    use uuid::Uuid;

    /// `storiface.HealthReport`.
    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct HealthReport {
        #[serde(rename = "Stat")]
        pub stat: FsStat,
        /// Empty when healthy.
        #[serde(rename = "Err", default)]
        pub err: String,
    }

    /// One sector file a path holds (`storiface.Decl`, as `StorageList` lists it).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    pub struct Decl {
        #[serde(rename = "Miner")]
        pub miner: u64,
        #[serde(rename = "Number")]
        pub number: u64,
        #[serde(rename = "SectorFileType")]
        pub file_type: FileTypes,
    }

    /// `storiface.ReplicaUpdateOut`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    pub struct ReplicaUpdateOut {
        #[serde(rename = "NewSealed")]
        pub new_sealed: Cid,
        #[serde(rename = "NewUnsealed")]
        pub new_unsealed: Cid,
    }

    /// `api.SealTicket` / `api.SealSeed`.
    #[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct SealRandomness {
        #[serde(rename = "Value")]
        pub value: Bytes,
        #[serde(rename = "Epoch")]
        pub epoch: i64,
    }

    /// One entry of a sector's event log (`api.SectorLog`).
    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct SectorLog {
        #[serde(rename = "Kind")]
        pub kind: String,
        /// Unix seconds.
        #[serde(rename = "Timestamp")]
        pub timestamp: u64,
        #[serde(rename = "Trace", default)]
        pub trace: String,
        #[serde(rename = "Message")]
        pub message: String,
    }

    /// A piece of a sector (`api.SectorPiece`).
    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct SectorPiece {
        #[serde(rename = "Piece")]
        pub piece: PieceInfo,
        /// A deal's piece: the deal's proposal and schedule (deals are not made here yet; kept
        /// as Lotus sends it).
        #[serde(rename = "DealInfo", default)]
        pub deal_info: Option<Value>,
    }

    /// `SectorsStatus` (`api.SectorInfo`), and what this miner adds (`HasData`, `DataLen`,
    /// `PreCommitEpoch`, `Files`), which Lotus's decoder ignores.
    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct SectorInfo {
        #[serde(rename = "SectorID")]
        pub sector_id: u64,
        #[serde(rename = "State")]
        pub state: String,
        #[serde(rename = "CommD")]
        pub comm_d: Option<Cid>,
        #[serde(rename = "CommR")]
        pub comm_r: Option<Cid>,
        #[serde(rename = "Proof")]
        pub proof: Bytes,
        #[serde(rename = "Deals", deserialize_with = "sealing_types::worker::null_as_default")]
        pub deals: Vec<u64>,
        #[serde(rename = "Pieces", deserialize_with = "sealing_types::worker::null_as_default")]
        pub pieces: Vec<SectorPiece>,
        #[serde(rename = "Ticket")]
        pub ticket: SealRandomness,
        #[serde(rename = "Seed")]
        pub seed: SealRandomness,
        #[serde(rename = "PreCommitMsg")]
        pub precommit_msg: Option<Cid>,
        #[serde(rename = "CommitMsg")]
        pub commit_msg: Option<Cid>,
        #[serde(rename = "Retries")]
        pub retries: u64,
        #[serde(rename = "ToUpgrade")]
        pub to_upgrade: bool,
        #[serde(rename = "ReplicaUpdateMessage")]
        pub replica_update_message: Option<Cid>,
        #[serde(rename = "LastErr")]
        pub last_err: String,
        #[serde(rename = "Log", deserialize_with = "sealing_types::worker::null_as_default")]
        pub log: Vec<SectorLog>,
        #[serde(rename = "SealProof")]
        pub seal_proof: sealing_types::RegisteredSealProof,
        #[serde(rename = "Activation")]
        pub activation: i64,
        #[serde(rename = "Expiration")]
        pub expiration: i64,
        #[serde(rename = "DealWeight")]
        pub deal_weight: String,
        #[serde(rename = "VerifiedDealWeight")]
        pub verified_deal_weight: String,
        #[serde(rename = "InitialPledge")]
        pub initial_pledge: String,
        #[serde(rename = "OnTime")]
        pub on_time: i64,
        #[serde(rename = "Early")]
        pub early: i64,
        #[serde(rename = "HasData", default)]
        pub has_data: bool,
        #[serde(rename = "DataLen", default)]
        pub data_len: u64,
        #[serde(rename = "PreCommitEpoch", default)]
        pub precommit_epoch: Option<i64>,
        #[serde(rename = "Files", default)]
        pub files: Vec<SectorStorageInfo>,
    }

    /// One sector's locks in `StorageGetLocks`: per file type, writers and readers.
    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct SectorLock {
        #[serde(rename = "Sector")]
        pub sector: SectorId,
        #[serde(rename = "Write")]
        pub write: [u32; 6],
        #[serde(rename = "Read")]
        pub read: [u32; 6],
    }

    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct SectorLocks {
        #[serde(rename = "Locks")]
        pub locks: Vec<SectorLock>,
    }

    /// `api.NumAssignerMeta`: the sector number assigner's state.
    #[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct NumAssignerMeta {
        #[serde(rename = "Reserved")]
        pub reserved: BitField,
        #[serde(rename = "Allocated")]
        pub allocated: BitField,
        #[serde(rename = "InUse")]
        pub in_use: BitField,
        #[serde(rename = "Next")]
        pub next: u64,
    }

    /// `api.SealedRef`: where a deal's piece is in a sector.
    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct SealedRef {
        #[serde(rename = "SectorID")]
        pub sector_id: u64,
        #[serde(rename = "Offset")]
        pub offset: u64,
        #[serde(rename = "Size")]
        pub size: u64,
    }

    /// `sealiface.PreCommitBatchRes`: one PreCommitSectorBatch2 message a flush sent (or
    /// failed to send).
    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct PreCommitBatchRes {
        #[serde(rename = "Sectors", deserialize_with = "crate::chain::null_as_default")]
        pub sectors: Vec<u64>,
        #[serde(rename = "Msg")]
        pub msg: Option<Cid>,
        /// Empty when the message was sent.
        #[serde(rename = "Error")]
        pub error: String,
    }

    /// `sealiface.CommitBatchRes`: one ProveCommitSectors3 message a flush sent, with the
    /// sectors left out of it and why.
    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct CommitBatchRes {
        #[serde(rename = "Sectors", deserialize_with = "crate::chain::null_as_default")]
        pub sectors: Vec<u64>,
        #[serde(rename = "FailedSectors", deserialize_with = "crate::chain::null_as_default")]
        pub failed_sectors: BTreeMap<u64, String>,
        #[serde(rename = "Msg")]
        pub msg: Option<Cid>,
        #[serde(rename = "Error")]
        pub error: String,
    }

    /// `alerting.AlertType`.
    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct AlertType {
        #[serde(rename = "System")]
        pub system: String,
        #[serde(rename = "Subsystem")]
        pub subsystem: String,
    }

    /// `alerting.AlertEvent`: `Message` is a `json.RawMessage` (any JSON; ours are strings),
    /// `Time` an RFC 3339 time.
    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct AlertEvent {
        #[serde(rename = "Type")]
        pub kind: String,
        #[serde(rename = "Message")]
        pub message: Value,
        #[serde(rename = "Time")]
        pub time: String,
    }

    /// `alerting.Alert`.
    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct Alert {
        #[serde(rename = "Type")]
        pub kind: AlertType,
        #[serde(rename = "Active")]
        pub active: bool,
        #[serde(rename = "LastActive")]
        pub last_active: Option<AlertEvent>,
        #[serde(rename = "LastResolved")]
        pub last_resolved: Option<AlertEvent>,
    }

    type Err = Option<CallError>;
    type Ret<T> = ReturnValue<T>;

    contract! {
        Version() -> types::Version, Read;
        Session() -> Uuid, Read;
        ActorAddress() -> String, Read;
        ActorSectorSize(miner: String) -> u64, Read;
        AuthVerify(token: String) -> Vec<Permission>, Read;
        /// The permissions of a token, for a node's `/remote` (Lotus's worker asks this).
        StorageAuthVerify(token: String) -> Vec<Permission>, Read;
        /// RFC 3339.
        StartTime() -> String, Read;
        RuntimeSubsystems() -> Vec<String>, Read;
        LogList() -> Vec<String>, Write;
        LogSetLevel(system: String, level: String) -> (), Write;
        LogAlerts() -> Vec<Alert>, Admin;
        /// The token as bytes (base64 on the wire, as Go encodes `[]byte`).
        AuthNew(perms: Vec<Permission>) -> Bytes, Admin;
        Shutdown() -> (), Admin;
        // workers
        WorkerConnect(url: String) -> (), Admin;
        WorkerStats() -> BTreeMap<Uuid, types::WorkerStats>, Admin;
        WorkerJobs() -> BTreeMap<Uuid, Vec<WorkerJob>>, Admin;
        SealingSchedDiag(do_sched: bool) -> Value, Admin;
        SealingRemoveRequest(sched_id: Uuid) -> (), Admin;
        SealingAbort(call: CallId) -> (), Admin;
        // the sector index (workers call these)
        StorageAttach(info: types::StorageInfo, stat: FsStat) -> (), Admin;
        StorageReportHealth(id: Uuid, report: HealthReport) -> (), Admin;
        StorageDeclareSector(id: Uuid, sector: SectorId, types: FileTypes, primary: bool) -> (), Admin;
        StorageDropSector(id: Uuid, sector: SectorId, types: FileTypes) -> (), Admin;
        StorageFindSector(sector: SectorId, types: FileTypes, sector_size: u64, allow_fetch: bool) -> Vec<SectorStorageInfo>, Admin;
        StorageBestAlloc(types: FileTypes, sector_size: u64, path_type: PathType, miner: u64) -> Vec<types::StorageInfo>, Admin;
        StorageInfo(id: Uuid) -> types::StorageInfo, Admin;
        StorageStat(id: Uuid) -> FsStat, Admin;
        StorageList() -> BTreeMap<Uuid, Vec<Decl>>, Admin;
        StorageLocal() -> BTreeMap<Uuid, String>, Admin;
        StorageAddLocal(path: String) -> (), Admin;
        /// The node at `url` no longer serves the path.
        StorageDetach(id: Uuid, url: String) -> (), Admin;
        StorageDetachLocal(path: String) -> (), Admin;
        StorageRedeclareLocal(id: Option<Uuid>, drop_missing: bool) -> (), Admin;
        /// Wait until the sector's files can be locked (for the call: see the miner's locks.rs).
        StorageLock(sector: SectorId, read: FileTypes, write: FileTypes) -> (), Admin;
        StorageTryLock(sector: SectorId, read: FileTypes, write: FileTypes) -> bool, Admin;
        StorageGetLocks() -> SectorLocks, Admin;
        // results of worker calls
        ReturnAddPiece(call: CallId, piece: Ret<PieceInfo>, err: Err) -> (), Admin;
        ReturnDataCid(call: CallId, piece: Ret<PieceInfo>, err: Err) -> (), Admin;
        ReturnSealPreCommit1(call: CallId, p1o: Ret<Bytes>, err: Err) -> (), Admin;
        ReturnSealPreCommit2(call: CallId, cids: Ret<SectorCids>, err: Err) -> (), Admin;
        ReturnSealCommit1(call: CallId, c1o: Ret<Bytes>, err: Err) -> (), Admin;
        ReturnSealCommit2(call: CallId, proof: Ret<Bytes>, err: Err) -> (), Admin;
        ReturnFinalizeSector(call: CallId, err: Err) -> (), Admin;
        ReturnFinalizeReplicaUpdate(call: CallId, err: Err) -> (), Admin;
        ReturnReleaseUnsealed(call: CallId, err: Err) -> (), Admin;
        ReturnMoveStorage(call: CallId, err: Err) -> (), Admin;
        ReturnFetch(call: CallId, err: Err) -> (), Admin;
        ReturnUnsealPiece(call: CallId, err: Err) -> (), Admin;
        ReturnReplicaUpdate(call: CallId, out: Ret<ReplicaUpdateOut>, err: Err) -> (), Admin;
        ReturnProveReplicaUpdate1(call: CallId, vanilla_proofs: Ret<Vec<Bytes>>, err: Err) -> (), Admin;
        ReturnProveReplicaUpdate2(call: CallId, proof: Ret<Bytes>, err: Err) -> (), Admin;
        ReturnGenerateSectorKeyFromData(call: CallId, err: Err) -> (), Admin;
        ReturnDownloadSector(call: CallId, err: Err) -> (), Admin;
        ReturnReadPiece(call: CallId, ok: Ret<bool>, err: Err) -> (), Admin;
        // sectors
        PledgeSector() -> SectorId, Write;
        SectorsList() -> Vec<u64>, Read;
        SectorRemove(number: u64) -> (), Admin;
        SectorTerminate(number: u64) -> (), Admin;
        SectorMarkForUpgrade(number: u64, snap: bool) -> (), Admin;
        SectorAbortUpgrade(number: u64) -> (), Admin;
        /// The TerminateSectors message sent, or `null` when nothing could be sent.
        SectorTerminateFlush() -> Option<Cid>, Admin;
        SectorTerminatePending() -> Vec<SectorId>, Admin;
        /// Each sector that cannot be proven, with why (sector number → reason).
        CheckProvable(post_proof: i64, sectors: Vec<SectorRef>) -> BTreeMap<u64, String>, Admin;
        /// DeclareFaultsRecovered for the sectors (grouped by partition); the message CIDs.
        RecoverFault(sectors: Vec<u64>) -> Vec<Cid>, Admin;
        /// A WindowPoSt of the deadline's latest instance, computed and not sent.
        ComputeWindowPoSt(deadline: u64, key: crate::chain::TipSetKey) -> Vec<crate::chain::WindowPoStParams>, Admin;
        ComputeDataCid(piece_size: u64, data: Data) -> PieceInfo, Admin;
        CreateBackup(path: String) -> (), Admin;
        SectorsUpdate(number: u64, state: String) -> (), Admin;
        SectorsRefs() -> BTreeMap<String, Vec<SealedRef>>, Read;
        SectorsListInStates(states: Vec<String>) -> Vec<u64>, Read;
        SectorsSummary() -> BTreeMap<String, u64>, Read;
        SectorNumAssignerMeta() -> NumAssignerMeta, Read;
        SectorNumReservations() -> BTreeMap<String, BitField>, Read;
        SectorNumReserve(name: String, sectors: BitField, force: bool) -> (), Admin;
        SectorNumReserveCount(name: String, count: u64) -> BitField, Admin;
        SectorNumFree(name: String) -> (), Admin;
        SectorsStatus(sector: u64, show_on_chain: Option<bool>) -> SectorInfo, Read;
        SectorsUnsealPiece(sector: SectorRef, offset: u64, size: u64, randomness: Bytes, comm_d: Option<Cid>) -> (), Admin;
        // batches (`sectors batching`): the sectors queued, and a send now (null: nothing to send)
        SectorPreCommitPending() -> Vec<SectorId>, Admin;
        SectorPreCommitFlush() -> Option<Vec<PreCommitBatchRes>>, Admin;
        SectorCommitPending() -> Vec<SectorId>, Admin;
        SectorCommitFlush() -> Option<Vec<CommitBatchRes>>, Admin;
        // ours: the index with every path's stat and health, a piece file into a new
        // sector, the proving state
        StorageListDetail() -> Value, Admin;
        SectorsListDetail() -> Value, Read;
        SectorsAddPieceFile(path: String) -> Value, Admin;
        ProvingInfo() -> Value, Read;
        // ours: a token naming one worker; a new API secret, handed to the workers
        AuthNewWorker(perms: Vec<Permission>, worker: String) -> Bytes, Admin;
        AuthRotate() -> RotateResult, Admin;
    }

    /// The methods of the miner contract that are ours, not Lotus's.
    pub const EXTRAS: &[&str] = &[
        "StorageListDetail",
        "SectorsListDetail",
        "SectorsAddPieceFile",
        "ProvingInfo",
        "AuthNewWorker",
        "AuthRotate",
    ];

    /// What a token minted for a worker (`AuthNewWorker`) may call beyond read methods: what
    /// a worker calls on its miner (registration, results, the sector index for its own
    /// paths), never the operator's methods.
    pub const WORKER_CALLS: &[&str] = &[
        "WorkerConnect",
        "StorageAttach",
        "StorageDetach",
        "StorageReportHealth",
        "StorageDeclareSector",
        "StorageDropSector",
        "StorageFindSector",
        "StorageBestAlloc",
        "StorageInfo",
        "StorageStat",
        "StorageList",
        "StorageLock",
        "StorageTryLock",
        "StorageGetLocks",
        "ReturnAddPiece",
        "ReturnDataCid",
        "ReturnSealPreCommit1",
        "ReturnSealPreCommit2",
        "ReturnSealCommit1",
        "ReturnSealCommit2",
        "ReturnFinalizeSector",
        "ReturnFinalizeReplicaUpdate",
        "ReturnReleaseUnsealed",
        "ReturnMoveStorage",
        "ReturnFetch",
        "ReturnUnsealPiece",
        "ReturnReplicaUpdate",
        "ReturnProveReplicaUpdate1",
        "ReturnProveReplicaUpdate2",
        "ReturnGenerateSectorKeyFromData",
        "ReturnDownloadSector",
        "ReturnReadPiece",
    ];

    /// `AuthRotate`'s answer: the operator's new admin token, and what became of each
    /// connected worker's new token.
    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct RotateResult {
        #[serde(rename = "Token")]
        pub token: String,
        #[serde(rename = "Workers")]
        pub workers: Vec<RotatedWorker>,
    }

    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct RotatedWorker {
        #[serde(rename = "Hostname")]
        pub hostname: String,
        #[serde(rename = "Url")]
        pub url: String,
        /// The worker the new token names (none: the operator's kind of token).
        #[serde(rename = "Identity")]
        pub identity: Option<String>,
        /// Empty when the worker took its new token.
        #[serde(rename = "Err")]
        pub err: String,
    }
    /// Methods whose result is not typed yet (`serde_json::Value`): the golden tests cannot
    /// hold their shape, so they are not counted as conforming.
    pub const UNTYPED: &[&str] = &["SealingSchedDiag"];

    const CHAIN: &str =
        "this chain operation (actor, terminate, fault and upgrade commands) is not built yet: the miner sends only the sealing, batching and PoSt messages";
    const DEALS: &str =
        "deal intake (Boost's side of the miner API) is not served yet; `lotus-miner sectors add-piece` seals a file";

    /// Lotus miner methods this miner does not serve, with Lotus's permission and the reason.
    /// They are answered with that reason, never "method not found" (see [`refuse_unserved`]),
    /// and the README lists them.
    pub const LEFT_OUT: &[(&str, Permission, &str)] = &[
        ("ActorAddressConfig", Permission::Read, CHAIN),
        ("ActorWithdrawBalance", Permission::Admin, CHAIN),
        ("BeneficiaryWithdrawBalance", Permission::Admin, CHAIN),
        ("Closing", Permission::Read, "a closing-notification channel is not served"),
        ("ComputeProof", Permission::Read, CHAIN),
        ("Discover", Permission::Read, "the OpenRPC document is not served"),
        ("MarketListDeals", Permission::Read, DEALS),
        ("MiningBase", Permission::Read, CHAIN),
        ("SectorAddPieceToAny", Permission::Admin, DEALS),
        ("SectorGetExpectedSealDuration", Permission::Read, DEALS),
        ("SectorGetSealDelay", Permission::Read, DEALS),
        ("SectorMatchPendingPiecesToOpenSectors", Permission::Admin, DEALS),
        ("SectorReceive", Permission::Admin, "sector import is not served yet"),
        ("SectorSetExpectedSealDuration", Permission::Write, DEALS),
        ("SectorSetSealDelay", Permission::Write, DEALS),
        ("SectorStartSealing", Permission::Write, DEALS),
        (
            "SectorUnseal",
            Permission::Admin,
            "unsealing on request is not served yet; `lotus-miner sectors unseal SECTOR -o FILE` unseals",
        ),
    ];

    /// Answer every miner method without a handler: declared ones with "not implemented yet"
    /// (after their params are checked), the left-out ones with their reason.
    pub fn refuse_unserved(s: &mut crate::RpcServer) {
        s.refuse_unimplemented(|r| visit(r), "miner");
        s.refuse_left_out(LEFT_OUT, "miner");
    }
}

#[cfg(test)]
mod tests {
    /// `AuthRotate`'s answer is ours (no Lotus document holds it): its keys are held here, so
    /// a renamed field fails instead of reaching `auth rotate` as an empty value.
    #[test]
    fn the_rotation_answer_keeps_its_keys() {
        use super::miner::{RotateResult, RotatedWorker};
        let r = RotateResult {
            token: "t".into(),
            workers: vec![RotatedWorker {
                hostname: "h".into(),
                url: "http://h/rpc/v0".into(),
                identity: Some("pc1".into()),
                err: String::new(),
            }],
        };
        let v = serde_json::json!({"Token": "t", "Workers": [{"Hostname": "h", "Url": "http://h/rpc/v0", "Identity": "pc1", "Err": ""}]});
        assert_eq!(serde_json::to_value(&r).unwrap(), v);
        assert_eq!(serde_json::from_value::<RotateResult>(v).unwrap(), r);
        let missing = serde_json::json!({"Token": "t"});
        assert!(serde_json::from_value::<RotateResult>(missing).is_err(), "no field defaults silently");
    }

    #[test]
    fn which_returns_carry_a_result_follows_the_miner_contract() {
        for m in
            ["AddPiece", "DataCid", "SealPreCommit1", "SealPreCommit2", "SealCommit1", "SealCommit2", "ReplicaUpdate"]
        {
            assert!(super::returns_value(m), "{m}");
        }
        for m in ["FinalizeSector", "MoveStorage", "Fetch", "UnsealPiece", "ReleaseUnsealed", "NoSuchMethod"] {
            assert!(!super::returns_value(m), "{m}");
        }
    }
}

/// The FullNode v1 API (`/rpc/v1`, FullNode API 2.3.0): the subset of Lotus's full-node
/// methods a storage miner calls for sealing, WindowPoSt, WinningPoSt and `init`, which the
/// devnet node serves and the miner's chain client calls. Permissions are Lotus's.
pub mod full {
    use crate::chain::*;
    use crate::wire::{BitField, Bytes, Cid};
    use crate::Permission;

    contract! {
        /// `api.APIVersion` (v1: 2.3.0; `/rpc/v0` answers 1.5.0).
        Version() -> ApiVersion, Read;
        ChainHead() -> TipSet, Read;
        /// A channel (over WebSocket only): each value is the head changes since the last one;
        /// the first is the head as `current`.
        ChainNotify() -> Vec<HeadChange>, Read;
        ChainGetGenesis() -> TipSet, Read;
        ChainGetTipSet(key: TipSetKey) -> TipSet, Read;
        /// The tipset at a height, or the first after it when that round was null.
        ChainGetTipSetByHeight(height: ChainEpoch, key: TipSetKey) -> TipSet, Read;
        StateGetNetworkParams() -> NetworkParams, Read;
        StateNetworkName() -> String, Read;
        StateNetworkVersion(key: TipSetKey) -> u64, Read;
        StateGetRandomnessFromTickets(tag: i64, epoch: ChainEpoch, entropy: Option<Bytes>, key: TipSetKey) -> Bytes, Read;
        StateGetRandomnessFromBeacon(tag: i64, epoch: ChainEpoch, entropy: Option<Bytes>, key: TipSetKey) -> Bytes, Read;
        StateMinerInfo(miner: Address, key: TipSetKey) -> MinerInfo, Read;
        StateMinerProvingDeadline(miner: Address, key: TipSetKey) -> DeadlineInfo, Read;
        StateMinerDeadlines(miner: Address, key: TipSetKey) -> Vec<Deadline>, Read;
        StateMinerPartitions(miner: Address, deadline: u64, key: TipSetKey) -> Vec<Partition>, Read;
        /// `null` as the filter means every sector.
        StateMinerSectors(miner: Address, filter: Option<BitField>, key: TipSetKey) -> Vec<SectorOnChainInfo>, Read;
        StateMinerActiveSectors(miner: Address, key: TipSetKey) -> Vec<SectorOnChainInfo>, Read;
        StateMinerSectorCount(miner: Address, key: TipSetKey) -> MinerSectors, Read;
        StateMinerFaults(miner: Address, key: TipSetKey) -> BitField, Read;
        StateMinerRecoveries(miner: Address, key: TipSetKey) -> BitField, Read;
        StateSectorPreCommitInfo(miner: Address, sector: u64, key: TipSetKey) -> Option<SectorPreCommitOnChainInfo>, Read;
        StateSectorGetInfo(miner: Address, sector: u64, key: TipSetKey) -> Option<SectorOnChainInfo>, Read;
        StateSectorPartition(miner: Address, sector: u64, key: TipSetKey) -> Option<SectorLocation>, Read;
        StateMinerSectorAllocated(miner: Address, sector: u64, key: TipSetKey) -> bool, Read;
        StateMinerPreCommitDepositForPower(miner: Address, info: SectorPreCommitInfo, key: TipSetKey) -> BigInt, Read;
        StateMinerInitialPledgeForSector(duration: ChainEpoch, sector_size: u64, verified_size: u64, key: TipSetKey) -> BigInt, Read;
        StateMinerInitialPledgeCollateral(miner: Address, info: SectorPreCommitInfo, key: TipSetKey) -> BigInt, Read;
        StateMinerCreationDeposit(key: TipSetKey) -> BigInt, Read;
        StateMinerAvailableBalance(miner: Address, key: TipSetKey) -> BigInt, Read;
        StateMinerPower(miner: Address, key: TipSetKey) -> MinerPower, Read;
        StateLookupID(address: Address, key: TipSetKey) -> Address, Read;
        StateAccountKey(address: Address, key: TipSetKey) -> Address, Read;
        /// Waits until the message has `confidence` epochs on top of its execution.
        StateWaitMsg(message: Cid, confidence: u64, limit: ChainEpoch, allow_replaced: bool) -> MsgLookup, Read;
        /// `null` when the message is not on chain (yet).
        StateSearchMsg(from: TipSetKey, message: Cid, limit: ChainEpoch, allow_replaced: bool) -> Option<MsgLookup>, Read;
        GasEstimateMessageGas(message: Message, spec: Option<MessageSendSpec>, key: TipSetKey) -> Message, Read;
        /// Fills the nonce and gas, signs with the sender's key in the node's wallet, pushes.
        MpoolPushMessage(message: Message, spec: Option<MessageSendSpec>) -> SignedMessage, Sign;
        MpoolGetNonce(address: Address) -> u64, Read;
        WalletBalance(address: Address) -> BigInt, Read;
        WalletHas(address: Address) -> bool, Write;
        WalletDefaultAddress() -> Address, Write;
        /// `"bls"` or `"secp256k1"`.
        WalletNew(kind: String) -> Address, Write;
        /// `null` when the miner cannot mine at the round.
        MinerGetBaseInfo(miner: Address, round: ChainEpoch, key: TipSetKey) -> Option<MiningBaseInfo>, Read;
        MinerCreateBlock(template: BlockTemplate) -> BlockMsg, Write;
        SyncSubmitBlock(block: BlockMsg) -> (), Write;
        SyncState() -> crate::chain::SyncState, Read;
        AuthVerify(token: String) -> Vec<Permission>, Read;
        AuthNew(perms: Vec<Permission>) -> Bytes, Admin;
    }
}
