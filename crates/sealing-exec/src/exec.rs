//! Running task calls (reference §1.3, §5.3): a call returns its [`CallId`] at once; the work
//! runs in the background and its result goes back through the [`Returner`].

use crate::child::{self, Job, Paths, ProofJob};
use crate::index::SectorIndex;
use crate::remote::{fetch_paths, Fetcher};
use crate::store::{LocalPath, LocalStore, StoreError};
use futures_util::future::BoxFuture;
use lotus_api::types::CallError;
use sealing_proofs::{Commitment, PieceInfo};
use sealing_types::{CallId, FileType, FileTypes, PathType, SectorId, SectorRef};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// The asynchronous task methods of the worker API, with Lotus's names and positional
/// parameters. Serde's external tagging of tuple variants is exactly the JSON-RPC shape
/// (`{"SealPreCommit1": [sector, ticket, pieces]}` ↔ method + params), so the wire mapping is
/// derived, not hand-written. Every variant has at least two fields so its params are an array.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum TaskCall {
    /// (sector, has piece data): the piece is the sector's `piece` file, else zeros (CC).
    AddPiece(SectorRef, bool),
    SealPreCommit1(SectorRef, [u8; 32], Vec<PieceInfo>),
    SealPreCommit2(SectorRef, sealing_proofs::SealPreCommitPhase1Output),
    /// (sector, ticket, seed, pieces, CommR, CommD)
    SealCommit1(SectorRef, [u8; 32], [u8; 32], Vec<PieceInfo>, Commitment, Commitment),
    SealCommit2(SectorRef, sealing_proofs::SealCommitPhase1Output),
    /// (sector, keep unsealed)
    FinalizeSector(SectorRef, bool),
    /// Move these files into a long-term storage path of this node.
    MoveStorage(SectorRef, FileTypes),
    /// Bring these files into a path of this kind on this node (the preparation step).
    Fetch(SectorRef, FileTypes, PathType),
    /// (sector, ticket, CommD): rebuild the unsealed file from sealed + cache.
    UnsealPiece(SectorRef, [u8; 32], Commitment),
}

pub const TASK_METHODS: &[&str] = &[
    "AddPiece",
    "SealPreCommit1",
    "SealPreCommit2",
    "SealCommit1",
    "SealCommit2",
    "FinalizeSector",
    "MoveStorage",
    "Fetch",
    "UnsealPiece",
];

impl TaskCall {
    pub fn sector(&self) -> SectorRef {
        match self {
            TaskCall::AddPiece(s, ..)
            | TaskCall::SealPreCommit1(s, ..)
            | TaskCall::SealPreCommit2(s, ..)
            | TaskCall::SealCommit1(s, ..)
            | TaskCall::SealCommit2(s, ..)
            | TaskCall::FinalizeSector(s, ..)
            | TaskCall::MoveStorage(s, ..)
            | TaskCall::Fetch(s, ..)
            | TaskCall::UnsealPiece(s, ..) => *s,
        }
    }

    /// Method name and positional params.
    pub fn to_rpc(&self) -> (String, serde_json::Value) {
        match serde_json::to_value(self).expect("serialises") {
            serde_json::Value::Object(m) => m.into_iter().next().expect("one variant"),
            _ => unreachable!("tuple variants serialise as objects"),
        }
    }

    pub fn from_rpc(method: &str, params: serde_json::Value) -> Result<TaskCall, String> {
        serde_json::from_value(serde_json::json!({ method: params }))
            .map_err(|e| format!("bad params for {method}: {e}"))
    }

    /// The method name, without serialising the params (a Commit1 output is megabytes).
    pub fn method(&self) -> String {
        match self {
            TaskCall::AddPiece(..) => "AddPiece",
            TaskCall::SealPreCommit1(..) => "SealPreCommit1",
            TaskCall::SealPreCommit2(..) => "SealPreCommit2",
            TaskCall::SealCommit1(..) => "SealCommit1",
            TaskCall::SealCommit2(..) => "SealCommit2",
            TaskCall::FinalizeSector(..) => "FinalizeSector",
            TaskCall::MoveStorage(..) => "MoveStorage",
            TaskCall::Fetch(..) => "Fetch",
            TaskCall::UnsealPiece(..) => "UnsealPiece",
        }
        .to_string()
    }
}

/// Delivers a call's result to the miner (`Return<Method>`): retried until the miner takes it.
pub trait Returner: Send + Sync {
    fn ret(&self, method: String, call: CallId, result: Result<serde_json::Value, CallError>) -> BoxFuture<'_, ()>;
}

pub struct Executor {
    pub store: Arc<LocalStore>,
    pub index: Arc<dyn SectorIndex>,
    pub fetcher: Fetcher,
    returner: Arc<dyn Returner>,
    /// The binary that runs `proof-task` (this process's own executable).
    exe: PathBuf,
    running: Mutex<HashMap<CallId, JoinHandle<()>>>,
    /// One acquisition (fetch or move) per sector at a time on this node.
    sector_locks: Mutex<HashMap<SectorId, Arc<tokio::sync::Mutex<()>>>>,
    /// How sealing proof processes are held back (niceness, threads); see [`child::Limits`].
    sealing_limits: Mutex<child::Limits>,
    /// This node's GPUs and the resource table that says how much of one each task uses.
    gpus: Mutex<Option<(Arc<crate::gpu::GpuSlots>, sealing_types::resources::ResourceTable)>>,
    /// The mock proof backend and how long each of its tasks takes; `None`: real proofs.
    mock: Mutex<Option<sealing_types::MockDurations>>,
}

impl Executor {
    pub fn new(
        store: Arc<LocalStore>,
        index: Arc<dyn SectorIndex>,
        fetcher: Fetcher,
        returner: Arc<dyn Returner>,
    ) -> std::io::Result<Arc<Self>> {
        Ok(Arc::new(Executor {
            store,
            index,
            fetcher,
            returner,
            exe: std::env::current_exe()?,
            running: Mutex::new(HashMap::new()),
            sector_locks: Mutex::new(HashMap::new()),
            sealing_limits: Mutex::new(child::Limits::default()),
            gpus: Mutex::new(None),
            mock: Mutex::new(None),
        }))
    }

    /// Run sealing proof processes at this niceness (0–19) and with at most `threads` threads,
    /// below PoSt on the same machine.
    pub fn set_sealing_limits(&self, nice: i32, threads: Option<usize>) {
        let mut l = self.sealing_limits.lock().unwrap_or_else(|e| e.into_inner());
        l.nice = nice.clamp(0, 19);
        l.threads = threads;
    }

    /// Give GPU tasks cards of `slots`, as much of one as `table` says the task uses.
    pub fn set_gpus(&self, slots: Arc<crate::gpu::GpuSlots>, table: sealing_types::resources::ResourceTable) {
        *self.gpus.lock().unwrap_or_else(|e| e.into_inner()) = Some((slots, table));
    }

    /// One small GPU proof in a proof process (see [`ProofJob::WarmUp`]), in a scratch directory.
    pub async fn warm_up(&self) -> Result<(), String> {
        let dir = std::env::temp_dir().join(format!("lotus-gpu-warm-up-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let job = Job {
            proof: sealing_types::RegisteredSealProof::STACKED_DRG_2KIB_V1_1,
            miner: 1000,
            sector: 1,
            paths: Paths { unsealed: PathBuf::new(), sealed: PathBuf::new(), cache: PathBuf::new() },
            op: ProofJob::WarmUp { dir: dir.clone() },
            backend: sealing_proofs::Backend::Real,
            mock_duration: std::time::Duration::ZERO,
        };
        let r = child::spawn(&self.exe, &job, child::Limits::default()).await;
        let _ = std::fs::remove_dir_all(&dir);
        r.map(|_| ())
    }

    /// Run every task on the mock proof backend (no proof work), each taking `durations`.
    pub fn set_mock_proofs(&self, durations: sealing_types::MockDurations) {
        *self.mock.lock().unwrap_or_else(|e| e.into_inner()) = Some(durations);
    }

    /// `--no-gpu`: every proof process proves on the CPU.
    pub fn set_no_gpu(&self) {
        self.sealing_limits.lock().unwrap_or_else(|e| e.into_inner()).no_gpu = true;
    }

    /// Attach every local path to the index and declare the sectors in it (at start and after
    /// a miner restart, whose index lives in memory).
    pub async fn declare_all(&self) -> Result<(), String> {
        for p in self.store.paths() {
            self.attach_path(&p).await?;
        }
        Ok(())
    }

    pub async fn attach_path(&self, p: &LocalPath) -> Result<(), String> {
        let stat = self.store.stat(p).map_err(|e| e.to_string())?;
        self.index.attach(self.store.info(p), stat).await.map_err(|e| e.to_string())?;
        let mut by_sector: HashMap<SectorId, FileTypes> = HashMap::new();
        for (s, t) in self.store.sectors(p) {
            by_sector.entry(s).or_default().0 |= t.bit();
        }
        for (s, types) in by_sector {
            self.index.declare(p.id(), s, types, p.meta.can_store).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Report every path's free space (StorageReportHealth), as Lotus does every 10 s.
    pub async fn report_health(&self) {
        for p in self.store.paths() {
            match self.store.stat(&p) {
                Ok(st) => {
                    if let Err(e) = self.index.report_health(p.id(), st).await {
                        tracing::debug!(path = %p.root.display(), "health report failed: {e}");
                    }
                }
                Err(e) => tracing::warn!(path = %p.root.display(), "cannot stat storage path: {e}"),
            }
        }
    }

    pub fn running_calls(&self) -> Vec<CallId> {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).keys().copied().collect()
    }

    /// Start a call; its result is delivered through the returner.
    pub fn start(self: &Arc<Self>, call: TaskCall) -> CallId {
        let id = CallId { sector: call.sector().id, id: Uuid::new_v4() };
        let me = self.clone();
        let method = call.method();
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let h = tokio::spawn(async move {
            tracing::info!(call = %id.id, sector = %id.sector, %method, "task started");
            let t0 = std::time::Instant::now();
            let result = me.run(call).await;
            match &result {
                Ok(_) => {
                    tracing::info!(call = %id.id, sector = %id.sector, %method, secs = t0.elapsed().as_secs_f64(), "task done")
                }
                Err(e) => tracing::warn!(call = %id.id, sector = %id.sector, %method, "task failed: {e}"),
            }
            me.running.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            me.returner.ret(method, id, result).await;
        });
        running.insert(id, h);
        id
    }

    /// Stop a running call: its proof process is killed (the task future owns it).
    pub fn abort(&self, id: CallId) -> bool {
        match self.running.lock().unwrap_or_else(|e| e.into_inner()).remove(&id) {
            Some(h) => {
                h.abort();
                true
            }
            None => false,
        }
    }

    fn sector_lock(&self, s: SectorId) -> Arc<tokio::sync::Mutex<()>> {
        self.sector_locks.lock().unwrap_or_else(|e| e.into_inner()).entry(s).or_default().clone()
    }

    async fn run(&self, call: TaskCall) -> Result<serde_json::Value, CallError> {
        let sector = call.sector();
        use FileType::*;
        let (unsealed, sealed) = (FileTypes::of(&[Unsealed]), FileTypes::of(&[Sealed, Cache]));
        match call {
            TaskCall::AddPiece(_, has_data) => {
                let piece = if has_data {
                    let f = self.acquire(sector, FileTypes::of(&[Piece]), PathType::Sealing, false).await?;
                    Some(f[&Piece].clone())
                } else {
                    None
                };
                let p = self.alloc(sector, unsealed, PathType::Sealing)?;
                let paths = self.paths_in(&p, sector);
                let r = self.proof(sector, paths, ProofJob::AddPiece { piece }).await?;
                self.declare(&p, sector, unsealed).await?;
                Ok(r)
            }
            TaskCall::SealPreCommit1(_, ticket, pieces) => {
                let have = self.acquire(sector, unsealed, PathType::Sealing, true).await?;
                let p = self.alloc(sector, sealed, PathType::Sealing)?;
                let mut paths = self.paths_in(&p, sector);
                paths.unsealed = have[&Unsealed].clone();
                let r = self.proof(sector, paths, ProofJob::PreCommit1 { ticket, pieces }).await?;
                self.declare(&p, sector, sealed).await?;
                Ok(r)
            }
            TaskCall::SealPreCommit2(_, pc1) => {
                let have = self.acquire(sector, sealed, PathType::Sealing, true).await?;
                let paths =
                    Paths { unsealed: PathBuf::new(), sealed: have[&Sealed].clone(), cache: have[&Cache].clone() };
                self.proof(sector, paths, ProofJob::PreCommit2 { pc1 }).await
            }
            TaskCall::SealCommit1(_, ticket, seed, pieces, comm_r, comm_d) => {
                let have = self.acquire(sector, sealed, PathType::Sealing, true).await?;
                let paths =
                    Paths { unsealed: PathBuf::new(), sealed: have[&Sealed].clone(), cache: have[&Cache].clone() };
                self.proof(sector, paths, ProofJob::Commit1 { ticket, seed, comm_r, comm_d, pieces }).await
            }
            TaskCall::SealCommit2(_, c1) => {
                let paths = Paths { unsealed: PathBuf::new(), sealed: PathBuf::new(), cache: PathBuf::new() };
                self.proof(sector, paths, ProofJob::Commit2 { c1 }).await
            }
            TaskCall::FinalizeSector(_, _keep_unsealed) => {
                let (_, cache_dir) = self.store.find(sector.id, Cache).ok_or_else(|| {
                    CallError::unknown(format!("finalize: sector {} has no cache directory on this node", sector.id))
                })?;
                let paths = Paths { unsealed: PathBuf::new(), sealed: PathBuf::new(), cache: cache_dir };
                self.proof(sector, paths, ProofJob::Finalize).await
            }
            TaskCall::MoveStorage(_, types) => {
                self.acquire(sector, types, PathType::Storage, true).await?;
                Ok(serde_json::Value::Null)
            }
            TaskCall::Fetch(_, types, kind) => {
                self.acquire(sector, types, kind, true).await?;
                Ok(serde_json::Value::Null)
            }
            TaskCall::UnsealPiece(_, ticket, comm_d) => {
                // Copy, not move: the long-term copy of sealed + cache stays where it is.
                let have = self.acquire(sector, sealed, PathType::Sealing, false).await?;
                let p = self.alloc(sector, unsealed, PathType::Sealing)?;
                let paths = Paths {
                    unsealed: p.file(Unsealed, sector.id),
                    sealed: have[&Sealed].clone(),
                    cache: have[&Cache].clone(),
                };
                let r = self.proof(sector, paths, ProofJob::Unseal { ticket, comm_d }).await?;
                self.declare(&p, sector, unsealed).await?;
                Ok(r)
            }
        }
    }

    fn paths_in(&self, p: &LocalPath, s: SectorRef) -> Paths {
        Paths {
            unsealed: p.file(FileType::Unsealed, s.id),
            sealed: p.file(FileType::Sealed, s.id),
            cache: p.file(FileType::Cache, s.id),
        }
    }

    fn alloc(&self, s: SectorRef, types: FileTypes, kind: PathType) -> Result<LocalPath, CallError> {
        self.store.alloc(s.id, types, kind, s.proof_type.sector_size().0).map_err(store_err)
    }

    async fn declare(&self, p: &LocalPath, s: SectorRef, types: FileTypes) -> Result<(), CallError> {
        self.index
            .declare(p.id(), s.id, types, true)
            .await
            .map_err(|e| e.in_task(format_args!("declaring {types} of {} to the miner", s.id)))
    }

    async fn proof(&self, s: SectorRef, paths: Paths, op: ProofJob) -> Result<serde_json::Value, CallError> {
        let mock = self.mock.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let backend = if mock.is_some() { sealing_proofs::Backend::Mock } else { sealing_proofs::Backend::Real };
        let mock_duration = match (&mock, op.task_type()) {
            (Some(d), Some(t)) => d.of(t),
            _ => std::time::Duration::ZERO,
        };
        let job =
            Job { proof: s.proof_type, miner: s.id.miner, sector: s.id.number, paths, op, backend, mock_duration };
        let mut limits = self.sealing_limits.lock().unwrap_or_else(|e| e.into_inner()).clone();
        // GPU tasks hold their cards while they run (a mock one too, so that a test sees the
        // cards in use); dropping the lease frees them. A mock job runs in a proof process as
        // a real one does, sleeping for its configured duration.
        use sealing_types::TaskType::{Commit2, PreCommit2};
        let task = job.op.task_type().filter(|t| matches!(t, PreCommit2 | Commit2));
        let gpus = self.gpus.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let _lease = match (task, gpus, limits.no_gpu) {
            (Some(task), Some((slots, table)), false) => {
                let lease = slots.take(table.spec(s.proof_type, task).gpu_utilization).await;
                limits.gpus = lease.visible_devices();
                Some(lease)
            }
            _ => None,
        };
        child::spawn(&self.exe, &job, limits).await.map_err(CallError::unknown)
    }

    /// Make the sector's files of `types` present in a local path of `kind` (reference §5.5
    /// AcquireSector): local copies in a suitable path are used as they are; others are
    /// fetched from the nodes the index names, and with `mv` the source copies are deleted.
    pub async fn acquire(
        &self,
        s: SectorRef,
        types: FileTypes,
        kind: PathType,
        mv: bool,
    ) -> Result<HashMap<FileType, PathBuf>, CallError> {
        let lock = self.sector_lock(s.id);
        let _held = lock.lock().await;
        let mut out = HashMap::new();
        for t in types.iter() {
            if let Some((p, f)) = self.store.find(s.id, t) {
                let suitable = match kind {
                    PathType::Sealing => true, // any local copy can be sealed from
                    PathType::Storage => p.meta.can_store,
                };
                if suitable {
                    out.insert(t, f);
                    continue;
                }
                // Local but in a sealing-only path: move it into a store path here.
                let dest = self.alloc(s, FileTypes::of(&[t]), kind)?;
                let target = dest.file(t, s.id);
                move_local(&f, &target)
                    .await
                    .map_err(|e| CallError::unknown(format!("moving {} to {}: {e}", f.display(), target.display())))?;
                let _ = self.index.drop_sector(p.id(), s.id, FileTypes::of(&[t])).await;
                self.declare(&dest, s, FileTypes::of(&[t])).await?;
                out.insert(t, target);
                continue;
            }
            let sources = self
                .index
                .find(s.id, FileTypes::of(&[t]))
                .await
                .map_err(|e| e.in_task(format_args!("asking the miner where {} of {} is", t.name(), s.id)))?;
            let local: Vec<Uuid> = self.store.paths().iter().map(|p| p.id()).collect();
            let mut sources: Vec<_> = sources.into_iter().filter(|si| !local.contains(&si.id)).collect();
            // Lotus tries sources by ascending weight; prefer primaries first, then weight.
            sources.sort_by_key(|si| (!si.primary, si.weight));
            if sources.is_empty() {
                return Err(CallError::unknown(format!(
                    "sector {} has no {} file anywhere in the cluster (the index knows no copy)",
                    s.id,
                    t.name()
                )));
            }
            let dest = self.alloc(s, FileTypes::of(&[t]), kind)?;
            let (tmp, target) = fetch_paths(&dest, t, s.id);
            let mut last = String::new();
            let mut done = false;
            for si in &sources {
                for url in &si.urls {
                    let t0 = std::time::Instant::now();
                    match self.fetcher.fetch(url, &tmp, &target).await {
                        Ok(bytes) => {
                            tracing::info!(sector = %s.id, %url, bytes, secs = t0.elapsed().as_secs_f64(), "fetched {}", t.name());
                            self.declare(&dest, s, FileTypes::of(&[t])).await?;
                            if mv {
                                if let Err(e) = self.fetcher.delete(url, &[dest.id()]).await {
                                    tracing::warn!(%url, "could not remove the source copy after moving it: {e}");
                                }
                            }
                            done = true;
                            break;
                        }
                        Err(e) => last = e.to_string(),
                    }
                }
                if done {
                    break;
                }
            }
            if !done {
                return Err(CallError::new(
                    CallError::TEMP_UNKNOWN,
                    format!("fetching {} of {}: {last}", t.name(), s.id),
                ));
            }
            out.insert(t, target);
        }
        Ok(out)
    }
}

fn store_err(e: StoreError) -> CallError {
    match e {
        StoreError::NoSpace { .. } => CallError::new(CallError::TEMP_ALLOCATE_SPACE, e.to_string()),
        _ => CallError::unknown(e.to_string()),
    }
}

async fn move_local(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    crate::remote::remove_any(to).await?;
    tokio::fs::rename(from, to).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealing_types::{RegisteredSealProof, SectorId};

    #[test]
    fn method_names_match_the_wire_and_round_trip() {
        let s = SectorRef {
            id: SectorId { miner: 1000, number: 3 },
            proof_type: RegisteredSealProof::STACKED_DRG_2KIB_V1_1,
        };
        let calls = [
            TaskCall::AddPiece(s, true),
            TaskCall::SealPreCommit1(s, [1; 32], vec![]),
            TaskCall::SealCommit1(s, [1; 32], [2; 32], vec![], [3; 32], [4; 32]),
            TaskCall::FinalizeSector(s, false),
            TaskCall::MoveStorage(s, FileTypes::of(&[FileType::Sealed])),
            TaskCall::Fetch(s, FileTypes::of(&[FileType::Cache]), PathType::Sealing),
            TaskCall::UnsealPiece(s, [1; 32], [2; 32]),
        ];
        for c in calls {
            let (name, params) = c.to_rpc();
            assert_eq!(name, c.method());
            assert!(TASK_METHODS.contains(&name.as_str()));
            assert!(params.is_array(), "{name}: positional params");
            let back = TaskCall::from_rpc(&name, params.clone()).unwrap();
            assert_eq!(back.to_rpc().1, params);
        }
        assert!(TaskCall::from_rpc("SealPreCommit1", serde_json::json!([1])).unwrap_err().contains("bad params"));
    }
}
