//! Running task calls (reference §1.3, §5.3): a call returns its [`CallId`] at once; the work
//! runs in the background and its result goes back through the [`Returner`].

use crate::child::{self, Job, Paths, ProofJob};
use crate::index::SectorIndex;
use crate::remote::{fetch_paths, Fetcher};
use crate::store::{LocalPath, LocalStore, StoreError};
use futures_util::future::BoxFuture;
use lotus_api::contract::{worker as w, Method, ParamList};
use lotus_api::rpc::RpcError;
use lotus_api::types::{CallError, SectorStorageInfo};
use lotus_api::wire::{AcquireMode, Data};
use sealing_types::storage::is_no_space;
use sealing_types::{CallId, FileType, FileTypes, PathType, SectorId, SectorRef};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Why work on this node's own storage paths (attach, declare, remove, detach, redeclare)
/// failed, by what the caller must do: ask again once the miner answers (an unavailable
/// index), fix the request (a path that is not this node's), or fix the disk.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// The miner's index could not be asked, or refused the call (`source` says which).
    #[error("{doing}: {source}")]
    Index { doing: String, source: crate::index::IndexError },
    /// This node's disk or store failed (a path that cannot be read, a file that cannot be
    /// removed).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The operator named no local path of this node.
    #[error("{0}")]
    NotLocal(String),
}

/// The asynchronous task methods of the worker API: each variant holds the method's params
/// exactly as the contract ([`lotus_api::contract::worker`]) declares them, so what the miner
/// sends and what a worker decodes are Lotus's shapes by construction. Each entry names the
/// method and how to get the sector its call is filed under.
macro_rules! task_calls {
    ($($name:ident: |$p:pat_param| $sector:expr),* $(,)?) => {
        #[derive(Clone, Debug)]
        pub enum TaskCall {
            $($name(P<w::$name>),)*
        }

        pub const TASK_METHODS: &[&str] = &[$(w::$name::NAME,)*];

        impl TaskCall {
            pub fn sector(&self) -> SectorRef {
                match self {
                    $(TaskCall::$name($p) => $sector,)*
                }
            }

            /// Method name and positional params.
            pub fn to_rpc(&self) -> (&'static str, Vec<serde_json::Value>) {
                match self {
                    $(TaskCall::$name(p) => (w::$name::NAME, p.to_values()),)*
                }
            }

            /// Decode a task method's params (the worker's side).
            pub fn from_rpc(method: &str, values: Vec<serde_json::Value>) -> Result<TaskCall, RpcError> {
                $(if method == w::$name::NAME {
                    return Ok(TaskCall::$name(P::<w::$name>::from_values(w::$name::NAME, w::$name::PARAM_NAMES, values)?));
                })*
                Err(RpcError::new(lotus_api::rpc::METHOD_NOT_FOUND, format!("{method} is not a task method")))
            }

            /// The method name, without serialising the params (a Commit1 output is megabytes).
            pub fn method(&self) -> String {
                match self {
                    $(TaskCall::$name(..) => w::$name::NAME,)*
                }
                .to_string()
            }
        }
    };
}

task_calls! {
    AddPiece: |p| p.0,
    SealPreCommit1: |p| p.0,
    SealPreCommit2: |p| p.0,
    SealCommit1: |p| p.0,
    SealCommit2: |p| p.0,
    FinalizeSector: |p| p.0,
    MoveStorage: |p| p.0,
    Fetch: |p| p.0,
    UnsealPiece: |p| p.0,
    DataCid: |_| NO_SECTOR,
    ReleaseUnsealed: |p| p.0,
    ReplicaUpdate: |p| p.0,
    ProveReplicaUpdate1: |p| p.0,
    ProveReplicaUpdate2: |p| p.0,
    GenerateSectorKeyFromData: |p| p.0,
    FinalizeReplicaUpdate: |p| p.0,
    DownloadSectorData: |p| p.0,
}

type P<M> = <M as Method>::Params;

/// The sector a call without one (`DataCid`) is filed under, as Lotus's `NoSectorRef`.
const NO_SECTOR: SectorRef = SectorRef {
    id: SectorId { miner: 0, number: 0 },
    proof_type: sealing_types::RegisteredSealProof::STACKED_DRG_2KIB_V1_1,
};

/// Delivers a call's result to the miner (`Return<Method>`): retried until the miner takes it.
pub trait Returner: Send + Sync {
    fn ret(&self, method: String, call: CallId, result: Result<serde_json::Value, CallError>) -> BoxFuture<'_, ()>;
}

pub struct Executor {
    pub store: Arc<LocalStore>,
    pub index: Arc<dyn SectorIndex>,
    pub fetcher: Fetcher,
    returner: Arc<dyn Returner>,
    /// The binary that runs `proof-task`: this process's own executable, or
    /// `LOTUS_PROOF_TASK_BINARY` (a daemon started as a library inside another program, such
    /// as a test, names `lotus-worker` or `lotus-miner` there).
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
    /// Where data pushed for AddPiece arrives (`/rpc/streams/v0/push`); `None`: not served.
    push: Mutex<Option<Arc<crate::push::PushStreams>>>,
    /// What it ran (`/debug/metrics`).
    pub metrics: Arc<crate::metrics::ExecMetrics>,
}

/// Counts a task as ended when it is dropped: a task aborted (`SealingAbort`, a shutdown)
/// never reaches its last line, and must not stay counted as running.
struct TaskEnd {
    metrics: Arc<crate::metrics::ExecMetrics>,
    method: String,
    t0: std::time::Instant,
    ok: bool,
}

impl Drop for TaskEnd {
    fn drop(&mut self) {
        self.metrics.finished(&self.method, self.ok, self.t0.elapsed());
    }
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
            exe: match std::env::var_os("LOTUS_PROOF_TASK_BINARY") {
                Some(exe) => PathBuf::from(exe),
                None => std::env::current_exe()?,
            },
            running: Mutex::new(HashMap::new()),
            sector_locks: Mutex::new(HashMap::new()),
            sealing_limits: Mutex::new(child::Limits::default()),
            gpus: Mutex::new(None),
            mock: Mutex::new(None),
            push: Mutex::new(None),
            metrics: Default::default(),
        }))
    }

    /// Run sealing proof processes at this niceness (0–19) and with at most `threads` threads,
    /// below PoSt on the same machine.
    pub fn set_sealing_limits(&self, nice: i32, threads: Option<usize>) {
        let mut l = self.sealing_limits.lock().unwrap_or_else(|e| e.into_inner());
        l.nice = nice.clamp(0, 19);
        l.threads = threads;
    }

    /// Take AddPiece data pushed to this node's `/rpc/streams/v0/push` route.
    pub fn set_push_streams(&self, streams: Arc<crate::push::PushStreams>) {
        *self.push.lock().unwrap_or_else(|e| e.into_inner()) = Some(streams);
    }

    /// Give GPU tasks cards of `slots`, as much of one as `table` says the task uses.
    pub fn set_gpus(&self, slots: Arc<crate::gpu::GpuSlots>, table: sealing_types::resources::ResourceTable) {
        *self.gpus.lock().unwrap_or_else(|e| e.into_inner()) = Some((slots, table));
    }

    /// One small GPU proof in a proof process (see [`ProofJob::WarmUp`]), in a scratch directory.
    pub async fn warm_up(&self) -> Result<(), CallError> {
        let dir = std::env::temp_dir().join(format!("lotus-gpu-warm-up-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).map_err(|e| CallError::unknown(format!("creating {}: {e}", dir.display())))?;
        let job = Job {
            proof: sealing_types::RegisteredSealProof::STACKED_DRG_2KIB_V1_1,
            miner: 1000,
            sector: 1,
            paths: Paths::default(),
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
    pub async fn declare_all(&self) -> Result<(), PathError> {
        for p in self.store.paths() {
            self.attach_path(&p).await?;
        }
        Ok(())
    }

    pub async fn attach_path(&self, p: &LocalPath) -> Result<(), PathError> {
        let stat = self.store.stat(p)?;
        let index = |doing: String| move |source| PathError::Index { doing, source };
        self.index.attach(self.store.info(p), stat).await.map_err(index(format!("attaching {}", p.root.display())))?;
        let mut by_sector: HashMap<SectorId, FileTypes> = HashMap::new();
        for (s, t) in self.store.sectors(p) {
            by_sector.entry(s).or_default().0 |= t.bit();
        }
        for (s, types) in by_sector {
            let declaring = format!("declaring {types} of {s} in {}", p.root.display());
            self.index.declare(p.id(), s, types, p.meta.can_store).await.map_err(index(declaring))?;
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
            me.metrics.started(&method);
            let mut end = TaskEnd { metrics: me.metrics.clone(), method: method.clone(), t0, ok: false };
            let result = me.run(call).await;
            end.ok = result.is_ok();
            drop(end);
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
        let bad = |e: String| CallError::unknown(format!("{}: {e}", sector.id));
        match call {
            TaskCall::AddPiece((_, existing, size, data)) => {
                if !existing.is_empty() {
                    return Err(bad(
                        "AddPiece into a sector that has pieces is not supported: one piece per sector".into()
                    ));
                }
                let max = sealing_proofs::max_unpadded(sector.proof_type.sector_size());
                if size == 0 || size > max {
                    return Err(bad(format!("piece size {size}: the sector holds 1 to {max} unpadded bytes")));
                }
                let piece = self.piece_data(sector, data, size).await?;
                let p = self.alloc(sector, unsealed, PathType::Sealing)?;
                let paths = self.paths_in(&p, sector);
                let r = self.proof(sector, paths, ProofJob::AddPiece { piece: piece.clone(), size }).await;
                if let Some(f) = piece {
                    let _ = std::fs::remove_file(f);
                }
                let r = r?;
                self.declare(&p, sector, unsealed).await?;
                Ok(r)
            }
            TaskCall::SealPreCommit1((_, ticket, pieces)) => {
                let ticket = ticket.to_32("the ticket").map_err(bad)?;
                let pieces = crate::wire::pieces_from_wire(&pieces).map_err(bad)?;
                let have = self.acquire(sector, unsealed, PathType::Sealing, true).await?;
                let p = self.alloc(sector, sealed, PathType::Sealing)?;
                let mut paths = self.paths_in(&p, sector);
                paths.unsealed = have[&Unsealed].clone();
                let r = self.proof(sector, paths, ProofJob::PreCommit1 { ticket, pieces }).await?;
                self.declare(&p, sector, sealed).await?;
                Ok(r)
            }
            TaskCall::SealPreCommit2((_, pc1)) => {
                let pc1 = crate::wire::pc1_from_wire(&pc1).map_err(bad)?;
                let have = self.acquire(sector, sealed, PathType::Sealing, true).await?;
                let paths = Paths::of(&have);
                self.proof(sector, paths, ProofJob::PreCommit2 { pc1 }).await
            }
            TaskCall::SealCommit1((_, ticket, seed, pieces, cids)) => {
                let ticket = ticket.to_32("the ticket").map_err(bad)?;
                let seed = seed.to_32("the seed").map_err(bad)?;
                let pieces = crate::wire::pieces_from_wire(&pieces).map_err(bad)?;
                let (comm_r, comm_d) = crate::wire::commitments(&cids).map_err(bad)?;
                let have = self.acquire(sector, sealed, PathType::Sealing, true).await?;
                let paths = Paths::of(&have);
                self.proof(sector, paths, ProofJob::Commit1 { ticket, seed, comm_r, comm_d, pieces }).await
            }
            TaskCall::SealCommit2((_, c1)) => {
                let c1 = crate::wire::c1_from_wire(&c1).map_err(bad)?;
                let paths = Paths::default();
                self.proof(sector, paths, ProofJob::Commit2 { c1 }).await
            }
            TaskCall::FinalizeSector(_) => {
                let (_, cache_dir) = self.store.find(sector.id, Cache).ok_or_else(|| {
                    CallError::unknown(format!("finalize: sector {} has no cache directory on this node", sector.id))
                })?;
                let paths = Paths { cache: cache_dir, ..Paths::default() };
                self.proof(sector, paths, ProofJob::Finalize).await
            }
            TaskCall::MoveStorage((_, types)) => {
                self.acquire(sector, types, PathType::Storage, true).await?;
                Ok(serde_json::Value::Null)
            }
            TaskCall::Fetch((_, types, kind, mode)) => {
                self.acquire(sector, types, kind, mode == AcquireMode::Move).await?;
                Ok(serde_json::Value::Null)
            }
            TaskCall::UnsealPiece((_, offset, size, randomness, comm_d)) => {
                let ticket = randomness.to_32("the randomness (ticket)").map_err(bad)?;
                let comm_d = lotus_api::wire::Commitment::Unsealed.from_cid(&comm_d).map_err(bad)?;
                let max = sealing_proofs::max_unpadded(sector.proof_type.sector_size());
                if offset != 0 || size != max {
                    return Err(bad(format!(
                        "unsealing {size} bytes at {offset}: only whole sectors (0, {max}) are unsealed"
                    )));
                }
                let p = self.alloc(sector, unsealed, PathType::Sealing)?;
                if self.has_anywhere(sector, Update).await? {
                    // A snap-deal sector: its data is in the update, decoded with the sector key,
                    // which is rebuilt from the ticket when it was released (as Lotus does).
                    let mut have =
                        self.acquire(sector, FileTypes::of(&[Update, Cache]), PathType::Sealing, false).await?;
                    let regenerate = !self.has_anywhere(sector, Sealed).await?;
                    let scratch = p.file(Unsealed, sector.id).with_extension("sector-key");
                    if regenerate {
                        have.insert(Sealed, scratch.clone());
                    } else {
                        have.extend(self.acquire(sector, FileTypes::of(&[Sealed]), PathType::Sealing, false).await?);
                    }
                    let paths = Paths { unsealed: p.file(Unsealed, sector.id), ..Paths::of(&have) };
                    let r = self.proof(sector, paths, ProofJob::UnsealUpdate { ticket, comm_d, regenerate }).await;
                    if regenerate {
                        let _ = std::fs::remove_file(&scratch);
                    }
                    r?;
                } else {
                    // Copy, not move: the long-term copy of sealed + cache stays where it is.
                    let have = self.acquire(sector, sealed, PathType::Sealing, false).await?;
                    let paths = Paths { unsealed: p.file(Unsealed, sector.id), ..Paths::of(&have) };
                    self.proof(sector, paths, ProofJob::Unseal { ticket, comm_d }).await?;
                }
                self.declare(&p, sector, unsealed).await?;
                Ok(serde_json::Value::Null)
            }
            TaskCall::DataCid((size, data)) => self.data_cid(size, data).await,
            TaskCall::ReleaseUnsealed((_, keep)) => {
                let max = sealing_proofs::max_unpadded(sector.proof_type.sector_size());
                if keep.iter().any(|r| !(r.offset == 0 && r.size >= max)) && !keep.is_empty() {
                    return Err(bad(
                        "keeping part of the unsealed copy is not supported: keep all of it or none".into()
                    ));
                }
                if keep.is_empty() {
                    for path in self.store.remove(sector.id, Unsealed, &[]).map_err(store_err)? {
                        self.index
                            .drop_sector(path, sector.id, unsealed)
                            .await
                            .map_err(|e| e.in_task(format_args!("dropping the unsealed copy of {}", sector.id)))?;
                    }
                }
                Ok(serde_json::Value::Null)
            }
            TaskCall::ReplicaUpdate((_, pieces)) => {
                let pieces = crate::wire::pieces_from_wire(&pieces).map_err(bad)?;
                // Copies: the sector key and its cache stay where the sector is proven from
                // until the update is on chain.
                let inputs = FileTypes::of(&[Unsealed, Sealed, Cache]);
                let mut have = self.acquire(sector, inputs, PathType::Sealing, false).await?;
                let updates = FileTypes::of(&[Update, UpdateCache]);
                let p = self.alloc(sector, updates, PathType::Sealing)?;
                have.extend([(Update, p.file(Update, sector.id)), (UpdateCache, p.file(UpdateCache, sector.id))]);
                let r = self.proof(sector, Paths::of(&have), ProofJob::ReplicaUpdate { pieces }).await?;
                self.declare(&p, sector, updates).await?;
                Ok(r)
            }
            TaskCall::ProveReplicaUpdate1((_, key, new_sealed, new_unsealed)) => {
                let (comm_r_old, comm_r_new, comm_d_new) =
                    crate::wire::update_commitments(&key, &new_sealed, &new_unsealed).map_err(bad)?;
                let inputs = FileTypes::of(&[Sealed, Cache, Update, UpdateCache]);
                let have = self.acquire(sector, inputs, PathType::Sealing, false).await?;
                let job = ProofJob::ProveReplicaUpdate1 { comm_r_old, comm_r_new, comm_d_new };
                self.proof(sector, Paths::of(&have), job).await
            }
            TaskCall::ProveReplicaUpdate2((_, key, new_sealed, new_unsealed, vanilla)) => {
                let (comm_r_old, comm_r_new, comm_d_new) =
                    crate::wire::update_commitments(&key, &new_sealed, &new_unsealed).map_err(bad)?;
                if vanilla.is_empty() {
                    return Err(bad("no vanilla proofs: pass ProveReplicaUpdate1's result".into()));
                }
                let vanilla = vanilla.into_iter().map(|b| b.0).collect();
                let job = ProofJob::ProveReplicaUpdate2 { comm_r_old, comm_r_new, comm_d_new, vanilla };
                self.proof(sector, Paths::default(), job).await
            }
            TaskCall::GenerateSectorKeyFromData((_, comm_d)) => {
                let comm_d_new = lotus_api::wire::Commitment::Unsealed.from_cid(&comm_d).map_err(bad)?;
                if let Some((_, f)) = self.store.find(sector.id, Sealed) {
                    return Err(bad(format!(
                        "the sector key is already here ({}); it is regenerated only once released",
                        f.display()
                    )));
                }
                let inputs = FileTypes::of(&[Unsealed, Cache, Update, UpdateCache]);
                let mut have = self.acquire(sector, inputs, PathType::Sealing, false).await?;
                let key = FileTypes::of(&[Sealed]);
                let p = self.alloc(sector, key, PathType::Sealing)?;
                // Written under another name and renamed once checked: a failed or killed run
                // leaves no half-written key where the sector's files are looked for.
                let target = p.file(Sealed, sector.id);
                let partial = target.with_extension("regenerating");
                have.insert(Sealed, partial.clone());
                self.proof(sector, Paths::of(&have), ProofJob::GenerateSectorKey { comm_d_new }).await?;
                std::fs::rename(&partial, &target)
                    .map_err(|e| bad(format!("moving the sector key into place at {}: {e}", target.display())))?;
                self.declare(&p, sector, key).await?;
                Ok(serde_json::Value::Null)
            }
            TaskCall::DownloadSectorData((_, finalized, src)) => {
                let kind = if finalized { PathType::Storage } else { PathType::Sealing };
                let mut todo = vec![];
                for (types, loc) in src {
                    let t = match types.iter().collect::<Vec<_>>()[..] {
                        [t] => t,
                        _ => return Err(bad(format!("the source {types} names more or less than one file type"))),
                    };
                    if loc.local {
                        return Err(bad(format!(
                            "the {} file is marked local: DownloadSectorData only downloads",
                            t.name()
                        )));
                    }
                    let headers: Vec<(String, String)> =
                        loc.headers.unwrap_or_default().into_iter().map(|h| (h.key, h.value)).collect();
                    todo.push((t, loc.url, headers));
                }
                let types = FileTypes::of(&todo.iter().map(|(t, _, _)| *t).collect::<Vec<_>>());
                let p = self.alloc(sector, types, kind)?;
                for (t, url, headers) in todo {
                    let (tmp, dest) = fetch_paths(&p, t, sector.id);
                    // Only the caller's headers go to a source outside the cluster, never this
                    // node's token.
                    let max = t.max_transfer(sector.proof_type.sector_size().0);
                    self.fetcher.fetch_with_headers(&url, &tmp, &dest, &headers, max).await.map_err(|e| {
                        let what = format!("downloading {} of {}: {e}", t.name(), sector.id);
                        write_failed(e.is_no_space(), CallError::TEMP_UNKNOWN, what)
                    })?;
                }
                self.declare(&p, sector, types).await?;
                Ok(serde_json::Value::Null)
            }
            TaskCall::FinalizeReplicaUpdate(_) => {
                let find = |t| self.store.find(sector.id, t).map(|(_, f)| f);
                let update_cache = find(UpdateCache).ok_or_else(|| {
                    CallError::unknown(format!(
                        "finalize replica update: sector {} has no update cache on this node",
                        sector.id
                    ))
                })?;
                let paths = Paths { cache: find(Cache).unwrap_or_default(), update_cache, ..Paths::default() };
                self.proof(sector, paths, ProofJob::FinalizeReplicaUpdate).await
            }
        }
    }

    /// The piece commitment of `size` unpadded bytes (`DataCid`; the miner's
    /// `ComputeDataCid`), computed in a proof process.
    pub async fn data_cid(&self, size: u64, data: Data) -> Result<serde_json::Value, CallError> {
        let bad = |e: String| CallError::unknown(format!("DataCid: {e}"));
        // The smallest sector that holds the piece: its commitment is the same in any.
        let proof = sealing_types::RegisteredSealProof::all()
            .filter(|p| !p.is_synthetic() && p.as_i64() >= 5)
            .find(|p| sealing_proofs::max_unpadded(p.sector_size()) >= size)
            .ok_or_else(|| bad(format!("a piece of {size} bytes is larger than any sector")))?;
        let s = SectorRef { proof_type: proof, ..NO_SECTOR };
        let piece = self.piece_data(s, data, size).await?;
        let scratch = tempfile::tempdir().map_err(|e| bad(format!("a scratch directory: {e}")))?;
        let paths = Paths { unsealed: scratch.path().join("piece"), ..Paths::default() };
        let r = self.proof(s, paths, ProofJob::AddPiece { piece: piece.clone(), size }).await;
        if let Some(f) = piece {
            let _ = std::fs::remove_file(f);
        }
        r
    }

    /// The bytes of an io.Reader param: `None` for zeros, else a staging file the caller
    /// removes.
    async fn piece_data(&self, sector: SectorRef, data: Data, size: u64) -> Result<Option<PathBuf>, CallError> {
        let bad = |e: String| CallError::unknown(format!("{}: {e}", sector.id));
        Ok(match data {
            Data::Null(n) if n == size => None,
            Data::Null(n) => return Err(bad(format!("a null reader of {n} bytes for a piece of {size}"))),
            Data::Http(url) => Some(self.fetch_piece(sector, &url).await?),
            Data::Push(id) => {
                let streams = self.push.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let streams = streams.ok_or_else(|| {
                    bad("this node takes no pushed data (no /rpc/streams/v0/push route): send a null or http reader".into())
                })?;
                Some(streams.take(id, size).await.map_err(bad)?)
            }
        })
    }

    /// Remove every local file of a sector and drop them from the index (`Remove`).
    pub async fn remove_sector(&self, sector: SectorId) -> Result<(), PathError> {
        for t in FileType::ALL {
            let removed = self.store.remove(sector, t, &[])?;
            for path in removed {
                self.index.drop_sector(path, sector, FileTypes::of(&[t])).await.map_err(|source| PathError::Index {
                    doing: format!("dropping {} of {sector} from the miner's index", t.name()),
                    source,
                })?;
            }
        }
        Ok(())
    }

    /// Stop serving a local path (`StorageDetachLocal`): the miner's index forgets this node
    /// for it, and no task allocates in it any more. Its files stay on disk.
    pub async fn detach_path(&self, root: &std::path::Path) -> Result<LocalPath, PathError> {
        let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        let p = self.store.paths().into_iter().find(|p| p.root == root).ok_or_else(|| {
            PathError::NotLocal(format!("{} is not a local storage path of this node", root.display()))
        })?;
        self.index
            .detach(p.id(), self.store.url.clone())
            .await
            .map_err(|source| PathError::Index { doing: format!("detaching {}", p.root.display()), source })?;
        self.store.detach(p.id());
        Ok(p)
    }

    /// Declare again what a path (or every path) holds (`StorageRedeclareLocal`); with
    /// `drop_missing`, files the index lists there but that are gone are dropped from it.
    pub async fn redeclare(&self, id: Option<Uuid>, drop_missing: bool) -> Result<(), PathError> {
        let paths: Vec<LocalPath> =
            self.store.paths().into_iter().filter(|p| id.is_none_or(|id| p.id() == id)).collect();
        if let (Some(id), true) = (id, paths.is_empty()) {
            return Err(PathError::NotLocal(format!(
                "no local storage path has ID {id}: `lotus-worker storage list` shows them"
            )));
        }
        for p in &paths {
            self.attach_path(p).await?;
        }
        if drop_missing {
            let listed = self
                .index
                .list()
                .await
                .map_err(|source| PathError::Index { doing: "listing the miner's index".into(), source })?;
            for p in &paths {
                let present: Vec<(SectorId, FileType)> = self.store.sectors(p);
                for d in listed.get(&p.id()).into_iter().flatten() {
                    let sector = SectorId { miner: d.miner, number: d.number };
                    for t in d.file_type.iter() {
                        if !present.contains(&(sector, t)) {
                            tracing::info!(path = %p.id(), "{} of {sector} is gone from {}; dropping it from the index", t.name(), p.root.display());
                            self.index.drop_sector(p.id(), sector, FileTypes::of(&[t])).await.map_err(|source| {
                                PathError::Index { doing: format!("dropping {} of {sector}", t.name()), source }
                            })?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Download an http reader's piece into this node's scratch space (with this node's
    /// token: the miner's `/remote` wants one), for AddPiece to read.
    async fn fetch_piece(&self, sector: SectorRef, url: &str) -> Result<PathBuf, CallError> {
        let p = self.alloc(sector, FileTypes::of(&[FileType::Piece]), PathType::Sealing)?;
        let (tmp, dest) = fetch_paths(&p, FileType::Piece, sector.id);
        self.fetcher
            .fetch(url, &tmp, &dest, FileType::Piece.max_transfer(sector.proof_type.sector_size().0))
            .await
            .map_err(|e| CallError::unknown(format!("fetching the piece of {} from {url}: {e}", sector.id)))?;
        Ok(dest)
    }

    fn paths_in(&self, p: &LocalPath, s: SectorRef) -> Paths {
        Paths {
            unsealed: p.file(FileType::Unsealed, s.id),
            sealed: p.file(FileType::Sealed, s.id),
            cache: p.file(FileType::Cache, s.id),
            update: p.file(FileType::Update, s.id),
            update_cache: p.file(FileType::UpdateCache, s.id),
        }
    }

    fn alloc(&self, s: SectorRef, types: FileTypes, kind: PathType) -> Result<crate::store::Allocated, CallError> {
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
        use sealing_types::TaskType::{Commit2, PreCommit2, ProveReplicaUpdate2};
        let task = job.op.task_type().filter(|t| matches!(t, PreCommit2 | Commit2 | ProveReplicaUpdate2));
        let gpus = self.gpus.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let _lease = match (task, gpus, limits.no_gpu) {
            (Some(task), Some((slots, table)), false) => {
                let lease = slots.take(table.spec(s.proof_type, task).gpu_utilization).await;
                limits.gpus = lease.visible_devices();
                Some(lease)
            }
            _ => None,
        };
        child::spawn(&self.exe, &job, limits).await
    }

    /// Whether a copy of the sector's `t` file exists here or anywhere in the cluster.
    async fn has_anywhere(&self, s: SectorRef, t: FileType) -> Result<bool, CallError> {
        if self.store.find(s.id, t).is_some() {
            return Ok(true);
        }
        let found = self
            .index
            .find(s.id, FileTypes::of(&[t]))
            .await
            .map_err(|e| e.in_task(format_args!("asking the miner where {} of {} is", t.name(), s.id)))?;
        Ok(!found.is_empty())
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
        let mut remote = vec![];
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
                move_local(&f, &target).await.map_err(|e| {
                    let what = format!("moving {} to {}: {e}", f.display(), target.display());
                    write_failed(is_no_space(&e), CallError::UNKNOWN, what)
                })?;
                // Declared at its new place before the old one is dropped: the index never
                // forgets a copy that exists.
                self.declare(&dest, s, FileTypes::of(&[t])).await?;
                let _ = self.index.drop_sector(p.id(), s.id, FileTypes::of(&[t])).await;
                out.insert(t, target);
                continue;
            }
            remote.push(t);
        }
        if remote.len() > 1 {
            if let Some(got) = self.fetch_bundle(s, &remote, kind, mv).await? {
                out.extend(got);
                return Ok(out);
            }
        }
        for t in remote {
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
            let (mut done, mut full) = (false, false);
            'sources: for si in &sources {
                for url in &si.urls {
                    let t0 = std::time::Instant::now();
                    match self.fetcher.fetch(url, &tmp, &target, t.max_transfer(s.proof_type.sector_size().0)).await {
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
                        Err(e) => {
                            last = e.to_string();
                            // This node's disk is full: another source would not help.
                            if e.is_no_space() {
                                full = true;
                                break 'sources;
                            }
                        }
                    }
                }
                if done {
                    break;
                }
            }
            if !done {
                let what = format!("fetching {} of {} into {}: {last}", t.name(), s.id, dest.root.display());
                return Err(write_failed(full, CallError::TEMP_UNKNOWN, what));
            }
            out.insert(t, target);
        }
        Ok(out)
    }

    /// The sector's files of `types` (none of them here) from one node in one request, when
    /// one node holds them all and serves bundles: one `StorageFindSector` and one GET for the
    /// sector instead of one of each per type. `None` when that cannot be done (a Lotus miner,
    /// whose answer for several types does not say which path holds which; the types spread
    /// over nodes; a node without the bundle route; a failed transfer): the caller then
    /// fetches type by type, as Lotus does. A full disk here is final, as in the per-type path.
    async fn fetch_bundle(
        &self,
        s: SectorRef,
        types: &[FileType],
        kind: PathType,
        mv: bool,
    ) -> Result<Option<HashMap<FileType, PathBuf>>, CallError> {
        let wanted = FileTypes::of(types);
        let found =
            self.index.find(s.id, wanted).await.map_err(|e| {
                e.in_task(format_args!("asking the miner where the {} files of {} are", types.len(), s.id))
            })?;
        let local: Vec<Uuid> = self.store.paths().iter().map(|p| p.id()).collect();
        let mut sources: Vec<_> =
            found.into_iter().filter(|si| !local.contains(&si.id) && held_types(si, s.id) == wanted).collect();
        sources.sort_by_key(|si| (!si.primary, si.weight));
        let Some(si) = sources.first() else { return Ok(None) };
        // No one path may take them all (its type filters, its free space): type by type,
        // each may go to a path of its own, and the errors are that path's.
        let Ok(dest) = self.alloc(s, wanted, kind) else { return Ok(None) };
        let landings: Vec<_> = types
            .iter()
            .map(|t| {
                let (tmp, target) = fetch_paths(&dest, *t, s.id);
                (*t, tmp, target)
            })
            .collect();
        let max = types.iter().map(|t| t.max_transfer(s.proof_type.sector_size().0)).sum();
        for base in &si.base_urls {
            let t0 = std::time::Instant::now();
            match self.fetcher.fetch_bundle(base, s.id, &landings, max).await {
                Ok(bytes) => {
                    let names: Vec<&str> = types.iter().map(|t| t.name()).collect();
                    tracing::info!(sector = %s.id, %base, bytes, secs = t0.elapsed().as_secs_f64(), "fetched {} in one request", names.join(", "));
                    self.declare(&dest, s, wanted).await?;
                    if mv {
                        for t in types {
                            let url = format!("{}/{}/{}", base.trim_end_matches('/'), t.name(), s.id.file_name());
                            if let Err(e) = self.fetcher.delete(&url, &[dest.id()]).await {
                                tracing::warn!(%url, "could not remove the source copy after moving it: {e}");
                            }
                        }
                    }
                    return Ok(Some(landings.into_iter().map(|(t, _, target)| (t, target)).collect()));
                }
                Err(e) if e.is_no_space() => {
                    let what = format!("fetching the files of {} into {}: {e}", s.id, dest.root.display());
                    return Err(write_failed(true, CallError::TEMP_UNKNOWN, what));
                }
                Err(e) => tracing::info!(sector = %s.id, %base, "no bundle from this node, fetching type by type: {e}"),
            }
        }
        Ok(None)
    }
}

/// The file types a path holds according to its `StorageFindSector` entry: our miner names
/// each in a URL of its own (`<base>/<type>/<sector>`); Lotus's answer for several types
/// names none, and then this is empty.
fn held_types(si: &SectorStorageInfo, sector: SectorId) -> FileTypes {
    let name = sector.file_name();
    let mut held = FileTypes::NONE;
    for u in &si.urls {
        let mut tail = u.rsplit('/');
        if let (Some(n), Some(t)) = (tail.next(), tail.next()) {
            if let (true, Some(t)) = (n == name, FileType::from_name(t)) {
                held.0 |= t.bit();
            }
        }
    }
    held
}

/// A task error for a write that failed: `full` (the disk filled up midway) is temporary, code
/// 102 as for a failed allocation, and says what to do (the source is never removed before its
/// copy is complete); anything else fails with `otherwise`.
pub fn write_failed(full: bool, otherwise: u64, what: String) -> CallError {
    if full {
        CallError::new(CallError::TEMP_ALLOCATE_SPACE, format!("{what}; free space there and the task retries"))
    } else {
        CallError::new(otherwise, what)
    }
}

fn store_err(e: StoreError) -> CallError {
    match e {
        StoreError::NoSpace { .. } => CallError::new(CallError::TEMP_ALLOCATE_SPACE, e.to_string()),
        _ => CallError::unknown(e.to_string()),
    }
}

/// Move a sector file or cache directory between local paths: a rename on one filesystem;
/// across filesystems (EXDEV: NVMe seal paths, HDD store paths) a copy to a temporary name,
/// fsynced, renamed into place, and only then the source removed, so that a crash or a full
/// disk midway leaves the source whole.
async fn move_local(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    crate::remote::remove_any(to).await?;
    match tokio::fs::rename(from, to).await {
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
            let (from, to) = (from.to_path_buf(), to.to_path_buf());
            let t0 = std::time::Instant::now();
            let (f, t) = (from.clone(), to.clone());
            tokio::task::spawn_blocking(move || copy_across(&f, &t))
                .await
                .map_err(|e| std::io::Error::other(format!("the copy task failed: {e}")))??;
            tracing::info!(
                from = %from.display(),
                to = %to.display(),
                secs = t0.elapsed().as_secs_f64(),
                "moved across filesystems: copied, synced, then the source removed"
            );
            Ok(())
        }
        r => r,
    }
}

fn copy_across(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    let parent = to.parent().ok_or_else(|| std::io::Error::other("the destination has no parent directory"))?;
    let name = to.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = parent.join(format!(".{name}.moving-{}", uuid::Uuid::new_v4()));
    let copied = (|| {
        if from.is_dir() {
            std::fs::create_dir(&tmp)?;
            for e in std::fs::read_dir(from)? {
                let e = e?;
                if !e.file_type()?.is_file() {
                    return Err(std::io::Error::other(format!(
                        "{} is not a regular file: a sector's cache holds only files",
                        e.path().display()
                    )));
                }
                copy_synced(&e.path(), &tmp.join(e.file_name()))?;
            }
            std::fs::File::open(&tmp)?.sync_all()?;
        } else {
            copy_synced(from, &tmp)?;
        }
        std::fs::rename(&tmp, to)?;
        std::fs::File::open(parent)?.sync_all()
    })();
    if let Err(e) = copied {
        let _ = if tmp.is_dir() { std::fs::remove_dir_all(&tmp) } else { std::fs::remove_file(&tmp) };
        return Err(e);
    }
    if from.is_dir() {
        std::fs::remove_dir_all(from)
    } else {
        std::fs::remove_file(from)
    }
}

/// Copy one file and its length, then fsync it; a short copy is an error.
fn copy_synced(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    let want = std::fs::metadata(from)?.len();
    let got = std::fs::copy(from, to)?;
    if got != want {
        return Err(std::io::Error::other(format!("copied {got} of {want} bytes of {}", from.display())));
    }
    std::fs::OpenOptions::new().write(true).open(to)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A move from tmpfs (`/dev/shm`) to the disk crosses filesystems: rename fails with
    /// EXDEV, the copy lands whole and only then is the source gone; a cache directory too.
    #[tokio::test]
    async fn a_move_across_filesystems_copies_then_removes_the_source() {
        use std::os::unix::fs::MetadataExt;
        let Ok(shm) = tempfile::tempdir_in("/dev/shm") else {
            eprintln!("no /dev/shm here: nothing to cross");
            return;
        };
        let disk = tempfile::tempdir().unwrap();
        let crosses = std::fs::metadata(shm.path()).unwrap().dev() != std::fs::metadata(disk.path()).unwrap().dev();
        let sealed = shm.path().join("s-t01000-1");
        std::fs::write(&sealed, vec![7u8; 4096]).unwrap();
        let cache = shm.path().join("cache-s-t01000-1");
        std::fs::create_dir(&cache).unwrap();
        std::fs::write(cache.join("p_aux"), b"aux").unwrap();
        std::fs::write(cache.join("t_aux"), b"t").unwrap();
        let (to_sealed, to_cache) = (disk.path().join("s-t01000-1"), disk.path().join("cache-s-t01000-1"));
        move_local(&sealed, &to_sealed).await.unwrap();
        move_local(&cache, &to_cache).await.unwrap();
        assert_eq!(std::fs::read(&to_sealed).unwrap(), vec![7u8; 4096]);
        assert_eq!(std::fs::read(to_cache.join("p_aux")).unwrap(), b"aux");
        assert!(!sealed.exists() && !cache.exists(), "the sources are gone once the copies are in place");
        let left: Vec<_> = std::fs::read_dir(disk.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left.len(), 2, "no temporary copy left behind: {left:?}");
        if crosses {
            // A cache holding something else than files is refused, and its source kept.
            let bad = shm.path().join("cache-s-t01000-2");
            std::fs::create_dir_all(bad.join("nested")).unwrap();
            let e = move_local(&bad, &disk.path().join("cache-s-t01000-2")).await.unwrap_err();
            assert!(e.to_string().contains("not a regular file"), "{e}");
            assert!(bad.exists());
            assert_eq!(std::fs::read_dir(disk.path()).unwrap().count(), 2);
        }
    }
    use lotus_api::wire::{Bytes, Commitment};
    use sealing_types::{RegisteredSealProof, SectorId};

    #[test]
    fn method_names_match_the_wire_and_round_trip() {
        let s = SectorRef {
            id: SectorId { miner: 1000, number: 3 },
            proof_type: RegisteredSealProof::STACKED_DRG_2KIB_V1_1,
        };
        let commd = Commitment::Unsealed.to_cid(&[4; 32]);
        let calls = [
            TaskCall::AddPiece((s, vec![], 2032, Data::Null(2032))),
            TaskCall::SealPreCommit1((s, Bytes(vec![1; 32]), vec![])),
            TaskCall::SealCommit1((
                s,
                Bytes(vec![1; 32]),
                Bytes(vec![2; 32]),
                vec![],
                crate::wire::cids(&[3; 32], &[4; 32]),
            )),
            TaskCall::FinalizeSector((s,)),
            TaskCall::MoveStorage((s, FileTypes::of(&[FileType::Sealed]))),
            TaskCall::Fetch((s, FileTypes::of(&[FileType::Cache]), PathType::Sealing, AcquireMode::Move)),
            TaskCall::UnsealPiece((s, 0, 2032, Bytes(vec![1; 32]), commd)),
        ];
        for c in calls {
            let (name, params) = c.to_rpc();
            assert_eq!(name, c.method());
            assert!(TASK_METHODS.contains(&name));
            let back = TaskCall::from_rpc(name, params.clone()).unwrap();
            assert_eq!(back.to_rpc().1, params);
        }
        let (_, fetch) = TaskCall::Fetch((s, FileTypes(4), PathType::Sealing, AcquireMode::Copy)).to_rpc();
        assert_eq!(fetch[2..], [serde_json::json!("sealing"), serde_json::json!("copy")], "Lotus's lowercase words");
        let e = TaskCall::from_rpc("SealPreCommit1", vec![serde_json::json!(1)]).unwrap_err().to_string();
        assert!(e.contains("SealPreCommit1: param 0 (sector) is invalid"), "{e}");
    }
}
