//! Proof work in a child process: `<lotus-worker|lotus-miner> proof-task` reads one [`ProofJob`]
//! as JSON on stdin and writes its result as JSON on stdout.
//!
//! Why a process and not a thread: the proofs library cannot be interrupted, so aborting a task
//! (`sealing abort`) must kill something; and a crash or an out-of-memory kill in the library
//! then takes down one task, not the worker and every other task with it.

use lotus_api::types::CallError;
use sealing_proofs::post::{PoStKind, Prover};
use sealing_proofs::{
    Backend, Commitment, PieceInfo, SealCommitPhase1Output, SealPreCommitPhase1Output, Sealer, SectorPaths,
    UpdatePaths, Updated,
};
use sealing_types::RegisteredSealProof;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

/// The hidden subcommand both binaries answer.
pub const SUBCOMMAND: &str = "proof-task";

/// A job's files; those it does not use are empty.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Paths {
    pub unsealed: PathBuf,
    pub sealed: PathBuf,
    pub cache: PathBuf,
    #[serde(default)]
    pub update: PathBuf,
    #[serde(default)]
    pub update_cache: PathBuf,
}

impl Paths {
    /// The files of `have` (what an acquisition found or allocated), by type.
    pub fn of(have: &std::collections::HashMap<sealing_types::FileType, PathBuf>) -> Paths {
        use sealing_types::FileType::*;
        let get = |t| have.get(&t).cloned().unwrap_or_default();
        Paths {
            unsealed: get(Unsealed),
            sealed: get(Sealed),
            cache: get(Cache),
            update: get(Update),
            update_cache: get(UpdateCache),
        }
    }
}

impl From<&Paths> for UpdatePaths {
    fn from(p: &Paths) -> Self {
        UpdatePaths {
            unsealed: p.unsealed.clone(),
            sealed: p.sealed.clone(),
            cache: p.cache.clone(),
            update: p.update.clone(),
            update_cache: p.update_cache.clone(),
        }
    }
}

impl From<&Paths> for SectorPaths {
    fn from(p: &Paths) -> Self {
        SectorPaths { unsealed: p.unsealed.clone(), sealed: p.sealed.clone(), cache: p.cache.clone() }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    pub proof: RegisteredSealProof,
    pub miner: u64,
    pub sector: u64,
    pub paths: Paths,
    pub op: ProofJob,
    /// Real proofs unless the node runs the mock backend. A mock job still runs in a proof
    /// process, so that aborts, kills and orphaned processes behave as with real proofs.
    #[serde(default)]
    pub backend: Backend,
    /// How long a mock job takes (it sleeps, using no CPU): a "long Commit2" for tests.
    #[serde(default, with = "millis")]
    pub mock_duration: std::time::Duration,
}

/// A duration as whole milliseconds on the child's stdin.
mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ProofJob {
    /// A piece of `size` unpadded bytes: the piece file's bytes (zero-filled to `size`), or
    /// zeros (CC) when `piece` is None. The rest of the sector is left to be filled.
    AddPiece {
        piece: Option<PathBuf>,
        size: u64,
    },
    PreCommit1 {
        ticket: [u8; 32],
        pieces: Vec<PieceInfo>,
    },
    PreCommit2 {
        pc1: SealPreCommitPhase1Output,
    },
    Commit1 {
        ticket: [u8; 32],
        seed: [u8; 32],
        comm_r: Commitment,
        comm_d: Commitment,
        pieces: Vec<PieceInfo>,
    },
    Commit2 {
        c1: SealCommitPhase1Output,
    },
    Finalize,
    /// Rebuild the unsealed file from the sealed file and cache.
    Unseal {
        ticket: [u8; 32],
        comm_d: Commitment,
    },
    /// Rebuild the unsealed file of an updated (snap-deal) sector: decoded from the update
    /// with the sector key (`paths.sealed`), which, when `regenerate`, is first rebuilt at
    /// that path from zeros and the ticket, and checked against the sector's cache.
    UnsealUpdate {
        ticket: [u8; 32],
        comm_d: Commitment,
        regenerate: bool,
    },
    /// Snap deals: the new data (`paths.unsealed`) encoded over the sector key into
    /// `paths.update`/`update_cache`.
    ReplicaUpdate {
        pieces: Vec<PieceInfo>,
    },
    ProveReplicaUpdate1 {
        comm_r_old: Commitment,
        comm_r_new: Commitment,
        comm_d_new: Commitment,
    },
    /// The update SNARK; no files.
    ProveReplicaUpdate2 {
        comm_r_old: Commitment,
        comm_r_new: Commitment,
        comm_d_new: Commitment,
        vanilla: Vec<Vec<u8>>,
    },
    /// The sector key (`paths.sealed`) back from the update and its data.
    GenerateSectorKey {
        comm_d_new: Commitment,
    },
    FinalizeReplicaUpdate,
    /// The SNARK of a WindowPoSt partition or a WinningPoSt over (sector, vanilla proof in
    /// base64) pairs. `sector` and `paths` of the job are unused.
    PoStSnark {
        kind: PoStKind,
        randomness: [u8; 32],
        vanilla: Vec<(u64, String)>,
    },
    /// Seal a 2KiB sector in `dir` and prove a WindowPoSt over it: the first GPU proof of a
    /// process compiles or loads the GPU kernels (needs the 2KiB parameters).
    WarmUp {
        dir: PathBuf,
    },
}

impl ProofJob {
    /// The task type a job is (what the mock backend's durations are keyed by).
    pub fn task_type(&self) -> Option<sealing_types::TaskType> {
        use sealing_types::TaskType as T;
        Some(match self {
            ProofJob::AddPiece { .. } => T::AddPiece,
            ProofJob::PreCommit1 { .. } => T::PreCommit1,
            ProofJob::PreCommit2 { .. } => T::PreCommit2,
            ProofJob::Commit1 { .. } => T::Commit1,
            ProofJob::Commit2 { .. } => T::Commit2,
            ProofJob::Finalize => T::Finalize,
            ProofJob::Unseal { .. } | ProofJob::UnsealUpdate { .. } => T::Unseal,
            ProofJob::ReplicaUpdate { .. } => T::ReplicaUpdate,
            ProofJob::ProveReplicaUpdate1 { .. } => T::ProveReplicaUpdate1,
            ProofJob::ProveReplicaUpdate2 { .. } => T::ProveReplicaUpdate2,
            ProofJob::GenerateSectorKey { .. } => T::RegenSectorKey,
            ProofJob::FinalizeReplicaUpdate => T::FinalizeReplicaUpdate,
            ProofJob::PoStSnark { kind: PoStKind::Window, .. } => T::GenerateWindowPoSt,
            ProofJob::PoStSnark { kind: PoStKind::Winning, .. } => T::GenerateWinningPoSt,
            ProofJob::WarmUp { .. } => return None,
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            ProofJob::AddPiece { .. } => "AddPiece",
            ProofJob::PreCommit1 { .. } => "PreCommit1",
            ProofJob::PreCommit2 { .. } => "PreCommit2",
            ProofJob::Commit1 { .. } => "Commit1",
            ProofJob::Commit2 { .. } => "Commit2",
            ProofJob::Finalize => "FinalizeSector",
            ProofJob::Unseal { .. } | ProofJob::UnsealUpdate { .. } => "Unseal",
            ProofJob::ReplicaUpdate { .. } => "ReplicaUpdate",
            ProofJob::ProveReplicaUpdate1 { .. } => "ProveReplicaUpdate1",
            ProofJob::ProveReplicaUpdate2 { .. } => "ProveReplicaUpdate2",
            ProofJob::GenerateSectorKey { .. } => "GenerateSectorKeyFromData",
            ProofJob::FinalizeReplicaUpdate => "FinalizeReplicaUpdate",
            ProofJob::PoStSnark { kind: PoStKind::Window, .. } => "WindowPoSt",
            ProofJob::PoStSnark { kind: PoStKind::Winning, .. } => "WinningPoSt",
            ProofJob::WarmUp { .. } => "GPU warm-up",
        }
    }
}

/// How a proof process is held back: `nice` > 0 lowers its CPU priority (sealing runs niced,
/// so a PoSt on the same machine, never niced, gets the cores it needs to meet its deadline);
/// `threads` caps its thread pools (cores reserved for PoSt).
/// `gpus`: the cards it may use (`CUDA_VISIBLE_DEVICES`, see [`crate::gpu`]); `no_gpu`: prove
/// on the CPU (`BELLMAN_NO_GPU=1`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub nice: i32,
    pub threads: Option<usize>,
    pub gpus: Option<String>,
    pub no_gpu: bool,
}

impl Limits {
    /// The environment these limits add to the proof process (the operator's own `RAYON_*` /
    /// `BELLMAN_NUM_CPUS` win over the thread cap).
    pub fn env(&self, has: &dyn Fn(&str) -> bool) -> Vec<(&'static str, String)> {
        let mut out = vec![];
        if let Some(n) = self.threads {
            for var in ["RAYON_NUM_THREADS", "BELLMAN_NUM_CPUS"] {
                if !has(var) {
                    out.push((var, n.to_string()));
                }
            }
        }
        if self.no_gpu {
            out.push(("BELLMAN_NO_GPU", "1".into()));
        } else if let Some(g) = &self.gpus {
            out.push(("CUDA_VISIBLE_DEVICES", g.clone()));
        }
        out
    }
}

/// Why a proof job failed, typed by what the caller must do: a full disk is temporary (code
/// 102: the task resumes once space is freed, as a failed allocation does), anything else
/// fails the task. It crosses the process boundary as Lotus's `CallError` shape.
#[derive(Debug, Serialize, Deserialize)]
pub struct Failure(pub CallError);

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure(CallError::unknown(message))
    }
}

impl From<sealing_proofs::ProofError> for Failure {
    fn from(e: sealing_proofs::ProofError) -> Self {
        Failure(crate::exec::write_failed(e.is_no_space(), CallError::UNKNOWN, e.to_string()))
    }
}

/// Run a job in this process (the child's side).
pub fn run(job: Job) -> Result<serde_json::Value, Failure> {
    if job.backend.is_mock() {
        std::thread::sleep(job.mock_duration);
    }
    let s = Sealer::new(job.proof, job.miner, job.sector).with_backend(job.backend);
    let paths = SectorPaths::from(&job.paths);
    let e = Failure::from;
    let json = |v: serde_json::Result<serde_json::Value>| v.map_err(|e| Failure::from(e.to_string()));
    match job.op {
        ProofJob::AddPiece { piece, size } => {
            let info = match piece {
                Some(f) => {
                    let file =
                        std::fs::File::open(&f).map_err(|err| format!("opening piece {}: {err}", f.display()))?;
                    let len = file.metadata().map_err(|err| err.to_string())?.len();
                    if len > size {
                        return Err(
                            format!("piece {} has {len} bytes, more than the {size} announced", f.display()).into()
                        );
                    }
                    // A shorter stream is zero-filled, as Lotus's worker does.
                    let data = file.take(size).chain(std::io::repeat(0)).take(size);
                    s.add_piece(data, size, &paths.unsealed).map_err(e)?
                }
                None => s.add_piece(std::io::repeat(0).take(size), size, &paths.unsealed).map_err(e)?,
            };
            json(serde_json::to_value(crate::wire::piece_to_wire(&info)))
        }
        ProofJob::PreCommit1 { ticket, pieces } => {
            let out = s.pre_commit1(&paths, ticket, &pieces).map_err(e)?;
            json(serde_json::to_value(crate::wire::pc1_to_wire(&out, &ticket)?))
        }
        ProofJob::PreCommit2 { pc1 } => {
            let out = s.pre_commit2(pc1, &paths).map_err(e)?;
            json(serde_json::to_value(crate::wire::cids(&out.comm_r, &out.comm_d)))
        }
        ProofJob::Commit1 { ticket, seed, comm_r, comm_d, pieces } => {
            let pc2 = sealing_proofs::SealPreCommitPhase2Output {
                registered_proof: sealing_proofs::api_proof(job.proof),
                comm_r,
                comm_d,
            };
            let out = s.commit1(&paths, ticket, seed, pc2, &pieces).map_err(e)?;
            json(serde_json::to_value(crate::wire::c1_to_wire(&out)?))
        }
        ProofJob::Commit2 { c1 } => {
            let proof = s.commit2(c1).map_err(e)?;
            json(serde_json::to_value(lotus_api::wire::Bytes(proof)))
        }
        ProofJob::Finalize => {
            s.finalize(&paths.cache).map_err(e)?;
            Ok(serde_json::Value::Null)
        }
        ProofJob::Unseal { ticket, comm_d } => {
            // Decoded straight into AddPiece through a pipe: never the whole sector in memory.
            let size = sealing_proofs::max_unpadded(job.proof.sector_size());
            let (r, w) = std::io::pipe().map_err(|err| format!("creating a pipe for unsealing: {err}"))?;
            let (sealer, p) = (&s, &paths);
            std::thread::scope(|sc| {
                let decoding = sc.spawn(move || sealer.unseal_into(p, ticket, comm_d, w));
                let added = s.add_piece(r, size, &paths.unsealed);
                // The decoder's error first: it is the cause when AddPiece saw the data end early.
                decoding.join().map_err(|_| "the unseal thread panicked".to_string())?.map_err(e)?;
                added.map_err(e)
            })?;
            Ok(serde_json::Value::Null)
        }
        ProofJob::UnsealUpdate { ticket, comm_d, regenerate } => {
            let paths = UpdatePaths::from(&job.paths);
            if regenerate {
                // Its own cache beside the key: the sector's cache stays as it is.
                let key_cache = paths.sealed.with_extension("key-cache");
                let r = s.regenerate_sector_key(&paths.sealed, &key_cache, ticket).map_err(e).and_then(|_| {
                    let read = |d: &std::path::Path| {
                        let p = d.join("p_aux");
                        std::fs::read(&p).map_err(|err| format!("reading {}: {err}", p.display()))
                    };
                    if read(&key_cache)? != read(&paths.cache)? {
                        return Err(Failure::from(format!(
                            "sector {}: the regenerated sector key is not the one the sector was sealed with (its \
                             cache's p_aux differs): the ticket given is not the sector's",
                            job.sector
                        )));
                    }
                    Ok(())
                });
                let _ = std::fs::remove_dir_all(&key_cache);
                r?;
            }
            s.decode_update(&paths, comm_d).map_err(e)?;
            Ok(serde_json::Value::Null)
        }
        ProofJob::ReplicaUpdate { pieces } => {
            let new = s.replica_update(&UpdatePaths::from(&job.paths), &pieces).map_err(e)?;
            json(serde_json::to_value(crate::wire::replica_update_out(&new)))
        }
        ProofJob::ProveReplicaUpdate1 { comm_r_old, comm_r_new, comm_d_new } => {
            let new = Updated { comm_r_new, comm_d_new };
            let vanilla = s.prove_replica_update1(&UpdatePaths::from(&job.paths), comm_r_old, new).map_err(e)?;
            json(serde_json::to_value(vanilla.into_iter().map(lotus_api::wire::Bytes).collect::<Vec<_>>()))
        }
        ProofJob::ProveReplicaUpdate2 { comm_r_old, comm_r_new, comm_d_new, vanilla } => {
            let proof = s.prove_replica_update2(comm_r_old, Updated { comm_r_new, comm_d_new }, vanilla).map_err(e)?;
            json(serde_json::to_value(lotus_api::wire::Bytes(proof)))
        }
        ProofJob::GenerateSectorKey { comm_d_new } => {
            s.generate_sector_key(&UpdatePaths::from(&job.paths), comm_d_new).map_err(e)?;
            Ok(serde_json::Value::Null)
        }
        ProofJob::FinalizeReplicaUpdate => {
            s.finalize_replica_update(&UpdatePaths::from(&job.paths)).map_err(e)?;
            Ok(serde_json::Value::Null)
        }
        ProofJob::PoStSnark { kind, randomness, vanilla } => {
            use base64::Engine;
            let b64 = base64::engine::general_purpose::STANDARD;
            let vanilla: Vec<(u64, Vec<u8>)> = vanilla
                .iter()
                .map(|(n, v)| {
                    b64.decode(v).map(|v| (*n, v)).map_err(|err| format!("bad vanilla proof encoding: {err}"))
                })
                .collect::<Result<_, _>>()?;
            let p =
                Prover::new(kind, job.proof.sector_size(), job.miner, randomness).map_err(e)?.with_backend(job.backend);
            Ok(serde_json::Value::String(b64.encode(p.snark(&vanilla).map_err(e)?)))
        }
        ProofJob::WarmUp { dir } => {
            let proof = RegisteredSealProof::STACKED_DRG_2KIB_V1_1;
            let s = Sealer::new(proof, 1000, 1);
            let paths = SectorPaths::in_dir(&dir);
            let size = sealing_proofs::max_unpadded(proof.sector_size());
            let piece = s.add_piece(std::io::repeat(0).take(size), size, &paths.unsealed).map_err(e)?;
            let pc1 = s.pre_commit1(&paths, [1; 32], &[piece]).map_err(e)?;
            let pc2 = s.pre_commit2(pc1, &paths).map_err(e)?;
            let p = Prover::new(PoStKind::Window, proof.sector_size(), 1000, [2; 32]).map_err(e)?;
            let ch = p.challenges(&[1]).map_err(e)?;
            let v = p.vanilla(1, pc2.comm_r, &paths.sealed, &paths.cache, &ch[&1]).map_err(e)?;
            p.snark(&[(1, v)]).map_err(e)?;
            Ok(serde_json::Value::Null)
        }
    }
}

/// The child's `main`: one job from stdin, `{"Ok":…}` or `{"Err":"…"}` on stdout.
pub fn main() -> ! {
    let mut input = String::new();
    let result = match std::io::stdin().read_to_string(&mut input) {
        Err(e) => Err(format!("reading the job from stdin: {e}").into()),
        Ok(_) => match serde_json::from_str::<Job>(&input) {
            Err(e) => Err(format!("malformed job: {e}").into()),
            Ok(job) => run(job),
        },
    };
    let out: Result<serde_json::Value, Failure> = result;
    println!("{}", serde_json::to_string(&out).expect("serialises"));
    std::process::exit(if out.is_ok() { 0 } else { 1 })
}

/// Run a job in a child process of `exe`, killing it when the returned future is dropped
/// (an aborted task), with the parent's environment (FIL_PROOFS_*, BELLMAN_*, TMPDIR...).
/// `limits` keep sealing out of PoSt's way on a shared machine.
pub async fn spawn(exe: &std::path::Path, job: &Job, limits: Limits) -> Result<serde_json::Value, CallError> {
    let nice = limits.nice;
    let mut cmd = tokio::process::Command::new(exe);
    for (k, v) in limits.env(&|var| std::env::var_os(var).is_some()) {
        cmd.env(k, v);
    }
    // Proof processes compute; they call no API: the cluster's tokens stay out of their
    // environment (and of what `/proc/PID/environ` shows).
    for (k, _) in std::env::vars_os() {
        if k.to_str().is_some_and(|k| k.ends_with("_API_INFO")) {
            cmd.env_remove(k);
        }
    }
    // What the process works on, for `ps` (the job itself comes on stdin): "proof-task
    // Commit2 s-t01000-12".
    cmd.arg(SUBCOMMAND).arg(job.op.name()).arg(format!("s-t0{}-{}", job.miner, job.sector));
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).kill_on_drop(true);
    // The proof process dies with its parent, even one killed with SIGKILL: a task must never
    // keep computing for a worker that no longer exists (its work is requeued elsewhere).
    // PDEATHSIG follows the spawning thread: this runs on a runtime worker thread, which lives
    // as long as the process.
    // SAFETY: prctl is async-signal-safe and touches only the calling (child) process.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if nice > 0 && libc::setpriority(libc::PRIO_PROCESS, 0, nice) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let failed = |m: String| CallError::unknown(m);
    let mut child = cmd.spawn().map_err(|e| failed(format!("starting the proof process {}: {e}", exe.display())))?;
    let input = serde_json::to_vec(job).expect("serialises");
    let mut stdin = child.stdin.take().expect("piped");
    stdin.write_all(&input).await.map_err(|e| failed(format!("sending the job to the proof process: {e}")))?;
    drop(stdin);
    let out = child.wait_with_output().await.map_err(|e| failed(format!("waiting for the proof process: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.lines().last().map(serde_json::from_str::<Result<serde_json::Value, Failure>>) {
        Some(Ok(r)) => r.map_err(|f| f.0),
        _ => Err(failed(format!(
            "the proof process for {} died without a result ({}); see the worker's log for its output",
            job.op.name(),
            out.status
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_become_the_proof_process_environment() {
        let none = |_: &str| false;
        assert!(Limits::default().env(&none).is_empty());
        let l = Limits { nice: 10, threads: Some(3), gpus: Some("GPU-aaaa".into()), no_gpu: false };
        assert_eq!(
            l.env(&none),
            vec![
                ("RAYON_NUM_THREADS", "3".to_string()),
                ("BELLMAN_NUM_CPUS", "3".to_string()),
                ("CUDA_VISIBLE_DEVICES", "GPU-aaaa".to_string())
            ]
        );
        let operator_set = |v: &str| v == "RAYON_NUM_THREADS";
        assert_eq!(l.env(&operator_set)[0], ("BELLMAN_NUM_CPUS", "3".to_string()));
        let cpu = Limits { no_gpu: true, ..l };
        assert!(cpu.env(&none).contains(&("BELLMAN_NO_GPU", "1".to_string())));
        assert!(!cpu.env(&none).iter().any(|(k, _)| *k == "CUDA_VISIBLE_DEVICES"));
    }
}
