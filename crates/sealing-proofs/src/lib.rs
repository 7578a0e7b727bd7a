//! Real Filecoin proofs for the sealing phases, through `filecoin-proofs-api` (the Filecoin
//! proofs library). CPU-only by default; `opencl`, `cuda` and `multicore-sdr` are opt-in
//! features.
//!
//! This crate is the only one that links the proofs library. The worker will call it from a
//! child process per task (so an abort really stops the computation and a crash in the library
//! cannot take the worker down); that wiring belongs to the real-sealing issue.
//!
//! Phase costs at 2KiB on 2 cores (measured by the proofs probe): AddPiece, PreCommit1,
//! PreCommit2 and Commit1 take milliseconds; Commit2 takes about a minute and needs Groth16
//! parameters in `FIL_PROOFS_PARAMETER_CACHE`.

pub mod aggregate;
pub mod mock;
pub mod params;
pub mod post;
pub mod update;

pub use mock::Backend;
pub use update::{update_proof, UpdatePaths, Updated};

use filecoin_proofs_api as api;
use sealing_types::{RegisteredSealProof, SectorSize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub use api::seal::{SealCommitPhase1Output, SealPreCommitPhase1Output, SealPreCommitPhase2Output};
pub use api::{Commitment, PieceInfo, Ticket, UnpaddedBytesAmount};

#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error("{phase} of sector {sector} failed in the proofs library: {message}")]
    Library { phase: &'static str, sector: u64, message: String },
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    /// The library failed writing to a full filesystem (an I/O error with ENOSPC in its chain).
    #[error("{phase} of sector {sector} ran out of disk space: {message}")]
    NoSpace { phase: &'static str, sector: u64, message: String },
    #[error("piece of {got} bytes does not fit a {size} sector: at most {max} unpadded bytes")]
    PieceTooLarge { got: u64, max: u64, size: SectorSize },
}

/// The proofs library's name for a seal proof (the integers match Lotus's `abi` values 0–14).
pub fn api_proof(p: RegisteredSealProof) -> api::RegisteredSealProof {
    use api::RegisteredSealProof::*;
    const TABLE: [api::RegisteredSealProof; 15] = [
        StackedDrg2KiBV1,
        StackedDrg8MiBV1,
        StackedDrg512MiBV1,
        StackedDrg32GiBV1,
        StackedDrg64GiBV1,
        StackedDrg2KiBV1_1,
        StackedDrg8MiBV1_1,
        StackedDrg512MiBV1_1,
        StackedDrg32GiBV1_1,
        StackedDrg64GiBV1_1,
        StackedDrg2KiBV1_1_Feat_SyntheticPoRep,
        StackedDrg8MiBV1_1_Feat_SyntheticPoRep,
        StackedDrg512MiBV1_1_Feat_SyntheticPoRep,
        StackedDrg32GiBV1_1_Feat_SyntheticPoRep,
        StackedDrg64GiBV1_1_Feat_SyntheticPoRep,
    ];
    TABLE[p.as_i64() as usize]
}

impl ProofError {
    /// A full disk: the task can succeed once space is freed.
    pub fn is_no_space(&self) -> bool {
        match self {
            ProofError::NoSpace { .. } => true,
            ProofError::Io { source, .. } => sealing_types::storage::is_no_space(source),
            _ => false,
        }
    }

    /// The one place the library's `anyhow` errors become ours: a full disk anywhere in the
    /// chain is kept as such (the library wraps the I/O error in its own context).
    pub(crate) fn library(phase: &'static str, sector: u64, e: anyhow::Error) -> ProofError {
        let message = format!("{e:#}");
        let full =
            e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(sealing_types::storage::is_no_space));
        if full {
            ProofError::NoSpace { phase, sector, message }
        } else {
            ProofError::Library { phase, sector, message }
        }
    }
}

/// The prover ID of a miner actor: the payload of its ID address (LEB128 of the actor ID),
/// zero-padded to 32 bytes, as Lotus computes it.
pub fn prover_id(actor_id: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut v = actor_id;
    let mut i = 0;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out[i] = byte;
            break;
        }
        out[i] = byte | 0x80;
        i += 1;
    }
    out
}

/// The most piece data a sector holds before fr32 padding (127/128 of its size).
pub fn max_unpadded(size: SectorSize) -> u64 {
    size.0 / 128 * 127
}

/// The first `len` data bytes of an fr32-padded unsealed file's contents (what AddPiece
/// wrote): the inverse of the padding the proofs library applies.
pub fn unpad(padded: &[u8], len: usize) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(len);
    fr32::write_unpadded(padded, &mut out, 0, len)?;
    Ok(out)
}

/// The three files of a sector being sealed.
#[derive(Clone, Debug)]
pub struct SectorPaths {
    pub unsealed: PathBuf,
    pub sealed: PathBuf,
    pub cache: PathBuf,
}

impl SectorPaths {
    /// `unsealed`, `sealed` and `cache` in one directory (scratch sectors, tests).
    pub fn in_dir(dir: &Path) -> Self {
        SectorPaths { unsealed: dir.join("unsealed"), sealed: dir.join("sealed"), cache: dir.join("cache") }
    }
}

/// Seals one sector of one miner.
#[derive(Clone, Copy, Debug)]
pub struct Sealer {
    pub proof: RegisteredSealProof,
    pub prover_id: [u8; 32],
    pub sector: u64,
    /// Real proofs unless a test or benchmark asked for the mock backend.
    pub backend: Backend,
}

impl Sealer {
    pub fn new(proof: RegisteredSealProof, actor_id: u64, sector: u64) -> Self {
        Sealer { proof, prover_id: prover_id(actor_id), sector, backend: Backend::Real }
    }

    pub fn with_backend(self, backend: Backend) -> Self {
        Sealer { backend, ..self }
    }

    fn mock(&self) -> bool {
        self.backend.is_mock()
    }

    fn lib<T>(&self, phase: &'static str, r: anyhow::Result<T>) -> Result<T, ProofError> {
        r.map_err(|e| ProofError::library(phase, self.sector, e))
    }

    /// AddPiece: write the first piece (`size` unpadded bytes) into a new unsealed file.
    pub fn add_piece(&self, data: impl Read, size: u64, unsealed: &Path) -> Result<PieceInfo, ProofError> {
        let ssize = self.proof.sector_size();
        if size > max_unpadded(ssize) {
            return Err(ProofError::PieceTooLarge { got: size, max: max_unpadded(ssize), size: ssize });
        }
        if self.mock() {
            return mock::add_piece(data, size, unsealed);
        }
        let mut f =
            OpenOptions::new().read(true).write(true).create(true).truncate(true).open(unsealed).map_err(|source| {
                ProofError::Io { what: "creating the unsealed file", path: unsealed.into(), source }
            })?;
        let r = api::seal::add_piece(api_proof(self.proof), data, &mut f, api::UnpaddedBytesAmount(size), &[]);
        let (piece, written) = self.lib("AddPiece", r)?;
        if written.0 != size {
            return Err(ProofError::Library {
                phase: "AddPiece",
                sector: self.sector,
                message: format!("wrote {} bytes, expected {size}", written.0),
            });
        }
        Ok(piece)
    }

    /// The data commitment the pieces must produce.
    pub fn comm_d(&self, pieces: &[PieceInfo]) -> Result<Commitment, ProofError> {
        if self.mock() {
            return Ok(mock::comm_d(self.proof.sector_size(), pieces));
        }
        self.lib("ComputeCommD", api::seal::compute_comm_d(api_proof(self.proof), pieces))
    }

    /// The CommD of a committed-capacity sector (zeros): what tells a CC sector from one
    /// sealed with data.
    pub fn cc_comm_d(&self) -> Result<Commitment, ProofError> {
        if self.mock() {
            return Ok(mock::cc_comm_d(self.proof.sector_size()));
        }
        self.comm_d(&[])
    }

    /// PreCommit1 (SDR labelling): creates the sealed file and fills the cache directory.
    pub fn pre_commit1(
        &self,
        paths: &SectorPaths,
        ticket: Ticket,
        pieces: &[PieceInfo],
    ) -> Result<SealPreCommitPhase1Output, ProofError> {
        if self.mock() {
            return mock::pre_commit1(self.proof, paths, &ticket, pieces);
        }
        std::fs::create_dir_all(&paths.cache).map_err(|source| ProofError::Io {
            what: "creating the cache directory",
            path: paths.cache.clone(),
            source,
        })?;
        // The library requires the output file to exist.
        File::create(&paths.sealed).map_err(|source| ProofError::Io {
            what: "creating the sealed file",
            path: paths.sealed.clone(),
            source,
        })?;
        let r = api::seal::seal_pre_commit_phase1(
            api_proof(self.proof),
            &paths.cache,
            &paths.unsealed,
            &paths.sealed,
            self.prover_id,
            api::SectorId::from(self.sector),
            ticket,
            pieces,
        );
        self.lib("PreCommit1", r)
    }

    /// PreCommit2: the column and replica trees; yields CommR and CommD.
    pub fn pre_commit2(
        &self,
        pc1: SealPreCommitPhase1Output,
        paths: &SectorPaths,
    ) -> Result<SealPreCommitPhase2Output, ProofError> {
        if self.mock() {
            return mock::pre_commit2(&pc1, &self.prover_id, self.sector, paths);
        }
        self.lib("PreCommit2", api::seal::seal_pre_commit_phase2(pc1, &paths.cache, &paths.sealed))
    }

    /// Commit1: the vanilla proofs for the chain's seed.
    pub fn commit1(
        &self,
        paths: &SectorPaths,
        ticket: Ticket,
        seed: Ticket,
        pc2: SealPreCommitPhase2Output,
        pieces: &[PieceInfo],
    ) -> Result<SealCommitPhase1Output, ProofError> {
        if self.mock() {
            return mock::commit1(self.proof, paths, ticket, seed, pc2.comm_r, pc2.comm_d);
        }
        let r = api::seal::seal_commit_phase1(
            &paths.cache,
            &paths.sealed,
            self.prover_id,
            api::SectorId::from(self.sector),
            ticket,
            seed,
            pc2,
            pieces,
        );
        self.lib("Commit1", r)
    }

    /// Commit2: the Groth16 SNARK (needs parameters in `FIL_PROOFS_PARAMETER_CACHE`).
    pub fn commit2(&self, c1: SealCommitPhase1Output) -> Result<Vec<u8>, ProofError> {
        if self.mock() {
            let mut proof =
                mock::seal_proof(&self.prover_id, self.sector, &c1.comm_r, &c1.comm_d, &c1.ticket, &c1.seed);
            // Tests only: one invalid proof, as a faulty GPU computes it.
            if mock::take_fault("LOTUS_MOCK_FAULTY_COMMIT2") {
                proof[0] ^= 0xff;
            }
            return Ok(proof);
        }
        let r = api::seal::seal_commit_phase2(c1, self.prover_id, api::SectorId::from(self.sector));
        Ok(self.lib("Commit2", r)?.proof)
    }

    /// FinalizeSector: drop the cache files only sealing needs (layers, tree C, tree D),
    /// keeping what proving reads (tree R last, p_aux, t_aux).
    pub fn finalize(&self, cache: &Path) -> Result<(), ProofError> {
        if self.mock() {
            return mock::finalize(cache);
        }
        self.lib("FinalizeSector", api::seal::clear_cache(cache))
    }

    /// Unseal the whole sector from its sealed file and cache: returns the sector's data
    /// bytes (unpadded, `max_unpadded(size)` of them). For tests and small sectors: see
    /// [`Sealer::unseal_into`].
    pub fn unseal(&self, paths: &SectorPaths, ticket: Ticket, comm_d: Commitment) -> Result<Vec<u8>, ProofError> {
        let mut out = Vec::new();
        self.unseal_into(paths, ticket, comm_d, &mut out)?;
        Ok(out)
    }

    /// Unseal the whole sector into `out` as it is decoded (`max_unpadded(size)` unpadded
    /// bytes): memory stays flat whatever the sector size (a 32GiB sector used to be decoded
    /// into memory whole).
    pub fn unseal_into(
        &self,
        paths: &SectorPaths,
        ticket: Ticket,
        comm_d: Commitment,
        out: impl Write,
    ) -> Result<(), ProofError> {
        if self.mock() {
            return mock::unseal_into(self.proof.sector_size(), &paths.sealed, out);
        }
        let size = max_unpadded(self.proof.sector_size());
        let sealed = File::open(&paths.sealed).map_err(|source| ProofError::Io {
            what: "opening the sealed file",
            path: paths.sealed.clone(),
            source,
        })?;
        let r = api::seal::unseal_range(
            api_proof(self.proof),
            &paths.cache,
            sealed,
            out,
            self.prover_id,
            api::SectorId::from(self.sector),
            comm_d,
            ticket,
            api::UnpaddedByteIndex(0),
            api::UnpaddedBytesAmount(size),
        );
        self.lib("Unseal", r)?;
        Ok(())
    }

    pub fn verify(
        &self,
        comm_r: Commitment,
        comm_d: Commitment,
        ticket: Ticket,
        seed: Ticket,
        proof: &[u8],
    ) -> Result<bool, ProofError> {
        if self.mock() {
            return Ok(proof == mock::seal_proof(&self.prover_id, self.sector, &comm_r, &comm_d, &ticket, &seed));
        }
        let r = api::seal::verify_seal(
            api_proof(self.proof),
            comm_r,
            comm_d,
            self.prover_id,
            api::SectorId::from(self.sector),
            ticket,
            seed,
            proof,
        );
        self.lib("VerifySeal", r)
    }
}

/// A real proof of a test sector, read from `fixtures/<name>.json`, or computed by `compute`
/// and stored there when `REGENERATE_REAL_PROOFS=1` (a few minutes). So the suite checks the
/// real verifier and its refusals in milliseconds. The devnet parameters come from a fixed seed
/// (`params.rs`), so a stored proof verifies against every machine's generated parameters;
/// `inputs`, the sector's public inputs recomputed by the test, must match the stored ones.
#[cfg(test)]
pub(crate) fn stored_real_proof(name: &str, inputs: &serde_json::Value, compute: impl FnOnce() -> Vec<u8>) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(format!("{name}.json"));
    if std::env::var_os("REGENERATE_REAL_PROOFS").is_some() {
        let proof = compute();
        let doc = serde_json::json!({ "inputs": inputs, "proof": proof });
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap() + "\n").unwrap();
        return proof;
    }
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let doc: serde_json::Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(
        doc["inputs"],
        *inputs,
        "{}: the sector's public inputs changed since its proof was stored; store it again with \
         REGENERATE_REAL_PROOFS=1",
        path.display()
    );
    serde_json::from_value(doc["proof"].clone()).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece_data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn prover_id_is_the_id_address_payload() {
        assert_eq!(&prover_id(1000)[..3], &[0xe8, 0x07, 0]);
        assert_eq!(&prover_id(5)[..2], &[5, 0]);
    }

    #[test]
    fn proof_numbers_match_the_library() {
        for p in RegisteredSealProof::all() {
            assert_eq!(u64::from(api_proof(p).sector_size()), p.sector_size().0, "{p}");
        }
    }

    /// AddPiece → PreCommit1 → PreCommit2 → Commit1 on a real 2KiB sector (no parameters
    /// needed; milliseconds).
    #[test]
    fn seals_a_2kib_sector_up_to_commit1() {
        let dir = tempfile::tempdir().unwrap();
        let paths = SectorPaths::in_dir(dir.path());
        let s = Sealer::new(RegisteredSealProof::STACKED_DRG_2KIB_V1_1, 1000, 1);
        let size = max_unpadded(SectorSize::KIB2);
        let piece = s.add_piece(&piece_data(size as usize)[..], size, &paths.unsealed).unwrap();
        let padded = std::fs::read(&paths.unsealed).unwrap();
        assert_eq!(padded.len(), 2048, "the unsealed file is fr32-padded to the sector size");
        assert_eq!(unpad(&padded, size as usize).unwrap(), piece_data(size as usize));
        let ticket = [1u8; 32];
        let pc1 = s.pre_commit1(&paths, ticket, std::slice::from_ref(&piece)).unwrap();
        // What travels between miner and worker must survive JSON.
        let pc1: SealPreCommitPhase1Output = serde_json::from_str(&serde_json::to_string(&pc1).unwrap()).unwrap();
        let pc2 = s.pre_commit2(pc1, &paths).unwrap();
        assert_eq!(pc2.comm_d, s.comm_d(std::slice::from_ref(&piece)).unwrap());
        assert_ne!(pc2.comm_r, [0u8; 32]);
        let c1 = s.commit1(&paths, ticket, [2u8; 32], pc2, &[piece]).unwrap();
        assert!(serde_json::to_vec(&c1).unwrap().len() > 1000);
    }

    /// The real verifier on a real Commit2 proof of this sector, stored once (a Commit2 costs
    /// about a minute of both cores; the suite computes one end to end in the two-worker seal
    /// test and one in the proving test, where the devnet verifies them on chain).
    #[test]
    fn a_stored_real_commit2_proof_verifies_and_forgeries_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let paths = SectorPaths::in_dir(dir.path());
        let s = Sealer::new(RegisteredSealProof::STACKED_DRG_2KIB_V1_1, 1000, 1);
        let size = max_unpadded(SectorSize::KIB2);
        let piece = s.add_piece(&piece_data(size as usize)[..], size, &paths.unsealed).unwrap();
        let (ticket, seed) = ([1u8; 32], [2u8; 32]);
        let pc2 = s.pre_commit2(s.pre_commit1(&paths, ticket, std::slice::from_ref(&piece)).unwrap(), &paths).unwrap();
        let (comm_r, comm_d) = (pc2.comm_r, pc2.comm_d);
        let inputs = serde_json::json!({
            "actor": 1000, "sector": 1, "ticket": ticket, "seed": seed, "comm_r": comm_r, "comm_d": comm_d,
        });
        let proof = stored_real_proof("commit2-2kib", &inputs, || {
            s.commit2(s.commit1(&paths, ticket, seed, pc2, &[piece]).unwrap()).unwrap()
        });
        assert_eq!(proof.len(), 192, "a 2KiB seal proof");
        assert!(s.verify(comm_r, comm_d, ticket, seed, &proof).unwrap(), "the stored proof verifies");
        assert!(!s.verify(comm_r, comm_d, ticket, [5; 32], &proof).unwrap_or(false), "a wrong seed is refused");
        assert!(!s.verify(comm_r, comm_d, [5; 32], seed, &proof).unwrap_or(false), "a wrong ticket is refused");
        assert!(!s.verify(comm_r, [5; 32], ticket, seed, &proof).unwrap_or(false), "another CommD is refused");
        let other_sector = Sealer::new(RegisteredSealProof::STACKED_DRG_2KIB_V1_1, 1000, 2);
        assert!(!other_sector.verify(comm_r, comm_d, ticket, seed, &proof).unwrap_or(false), "another sector's");
        let other_miner = Sealer::new(RegisteredSealProof::STACKED_DRG_2KIB_V1_1, 1001, 1);
        assert!(!other_miner.verify(comm_r, comm_d, ticket, seed, &proof).unwrap_or(false), "another miner's");
        let mut tampered = proof.clone();
        tampered[10] ^= 0xff;
        assert!(!s.verify(comm_r, comm_d, ticket, seed, &tampered).unwrap_or(false), "a tampered proof is refused");
    }

    #[test]
    fn oversized_piece_and_bad_paths_are_clear_errors() {
        let s = Sealer::new(RegisteredSealProof::STACKED_DRG_2KIB_V1_1, 1000, 1);
        let e = s.add_piece(&[][..], 4096, Path::new("/tmp/x")).unwrap_err().to_string();
        assert!(e.contains("at most 2032 unpadded bytes"), "{e}");
        let e = s.add_piece(&[][..], 10, Path::new("/nonexistent/dir/unsealed")).unwrap_err().to_string();
        assert!(e.contains("creating the unsealed file /nonexistent/dir/unsealed"), "{e}");
    }
}
