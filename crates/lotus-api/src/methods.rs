//! Every API method and the permission it needs: the one place permissions are declared
//! (reference §6.2: worker-facing methods and everything that changes state need `admin`).

use crate::Permission::{self, *};

/// Methods served by `lotus-miner` on `/rpc/v0`.
pub const MINER: &[(&str, Permission)] = &[
    ("Version", Read),
    ("Session", Read),
    ("ActorAddress", Read),
    ("ActorSectorSize", Read),
    ("AuthVerify", Read),
    ("AuthNew", Admin),
    ("WorkerConnect", Admin),
    ("WorkerStats", Admin),
    ("WorkerJobs", Admin),
    ("SealingSchedDiag", Admin),
    ("SealingRemoveRequest", Admin),
    ("SealingAbort", Admin),
    ("Shutdown", Admin),
    // sector index (workers call these)
    ("StorageAttach", Admin),
    ("StorageReportHealth", Admin),
    ("StorageDeclareSector", Admin),
    ("StorageDropSector", Admin),
    ("StorageFindSector", Admin),
    ("StorageList", Admin),
    ("StorageListDetail", Admin),
    ("StorageInfo", Admin),
    ("StorageLocal", Admin),
    ("StorageAddLocal", Admin),
    // results of worker calls
    ("ReturnAddPiece", Admin),
    ("ReturnSealPreCommit1", Admin),
    ("ReturnSealPreCommit2", Admin),
    ("ReturnSealCommit1", Admin),
    ("ReturnSealCommit2", Admin),
    ("ReturnFinalizeSector", Admin),
    ("ReturnMoveStorage", Admin),
    ("ReturnFetch", Admin),
    ("ReturnUnsealPiece", Admin),
    // sectors
    ("PledgeSector", Write),
    ("SectorsAddPieceFile", Admin),
    ("SectorsStatus", Read),
    ("SectorsList", Read),
    ("SectorsSummary", Read),
    ("SectorsUnsealPiece", Admin),
    // proving
    ("ProvingInfo", Read),
];

/// Methods served by `lotus-worker` on `/rpc/v0`. All need admin, as in Lotus.
pub const WORKER: &[(&str, Permission)] = &[
    ("Version", Admin),
    ("Session", Admin),
    ("ProcessSession", Admin),
    ("Info", Admin),
    ("TaskTypes", Admin),
    ("Paths", Admin),
    ("Enabled", Admin),
    ("SetEnabled", Admin),
    ("TaskEnable", Admin),
    ("TaskDisable", Admin),
    ("Shutdown", Admin),
    ("StorageAddLocal", Admin),
    ("StorageLocal", Admin),
    // asynchronous task calls: each returns a CallID, the result comes back via Return*
    ("AddPiece", Admin),
    ("SealPreCommit1", Admin),
    ("SealPreCommit2", Admin),
    ("SealCommit1", Admin),
    ("SealCommit2", Admin),
    ("FinalizeSector", Admin),
    ("MoveStorage", Admin),
    ("Fetch", Admin),
    ("UnsealPiece", Admin),
    // ours: stop a running call (kills its proof process)
    ("AbortCall", Admin),
    ("Calls", Admin),
    // PoSt workers (synchronous: the proof is the answer)
    ("GenerateWindowPoSt", Admin),
    ("GenerateWinningPoSt", Admin),
];

pub fn permission(table: &[(&str, Permission)], name: &str) -> Option<Permission> {
    table.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
}

/// API versions, encoded like Lotus (`major<<16 | minor<<8 | patch`).
pub const MINER_API_VERSION: u32 = (1 << 16) | (5 << 8);
pub const WORKER_API_VERSION: u32 = (1 << 16) | (7 << 8);

pub fn version_string(v: u32) -> String {
    format!("{}.{}.{}", v >> 16, (v >> 8) & 0xff, v & 0xff)
}
