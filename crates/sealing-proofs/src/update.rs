//! Snap deals (the empty-sector update): a proven CC sector's replica re-encoded with deal
//! data, the update proof, and the original replica (the "sector key") recovered from the
//! update and its data.
//!
//! Costs at 2KiB: encoding, the vanilla proofs and the key recovery are milliseconds; the
//! update SNARK (ProveReplicaUpdate2, about 1.7 M constraints) costs about what a Commit2
//! does and needs the update circuit's parameters.

use crate::mock::{self, io};
use crate::{api, Commitment, PieceInfo, ProofError, Sealer};
use sealing_types::SectorSize;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

/// The update proof for a sector size: every seal proof of one size has the same one
/// (go-state-types' `SealProofInfos[..].UpdateProof`).
pub fn update_proof(size: SectorSize) -> api::RegisteredUpdateProof {
    use api::RegisteredUpdateProof::*;
    match size {
        SectorSize::KIB2 => StackedDrg2KiBV1,
        SectorSize::MIB8 => StackedDrg8MiBV1,
        SectorSize::MIB512 => StackedDrg512MiBV1,
        SectorSize::GIB32 => StackedDrg32GiBV1,
        _ => StackedDrg64GiBV1,
    }
}

/// The five files of a sector being updated.
#[derive(Clone, Debug)]
pub struct UpdatePaths {
    /// The new data: the fr32-padded unsealed file of the deal pieces.
    pub unsealed: PathBuf,
    /// The original replica (the sector key) and its cache.
    pub sealed: PathBuf,
    pub cache: PathBuf,
    /// The updated replica and its cache.
    pub update: PathBuf,
    pub update_cache: PathBuf,
}

impl UpdatePaths {
    /// All five in one directory (scratch sectors, tests).
    pub fn in_dir(dir: &Path) -> Self {
        UpdatePaths {
            unsealed: dir.join("unsealed"),
            sealed: dir.join("sealed"),
            cache: dir.join("cache"),
            update: dir.join("update"),
            update_cache: dir.join("update-cache"),
        }
    }
}

/// The commitments of an updated replica (`storiface.ReplicaUpdateOut`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Updated {
    pub comm_r_new: Commitment,
    pub comm_d_new: Commitment,
}

/// A file of `len` bytes (the library writes replicas through an mmap of a file that exists).
fn sized_file(path: &Path, len: u64, what: &'static str) -> Result<(), ProofError> {
    let f = OpenOptions::new().write(true).create(true).truncate(true).open(path).map_err(io(what, path))?;
    f.set_len(len).map_err(io(what, path))
}

/// A directory that exists and is empty (an earlier, failed attempt's files are not reused).
fn fresh_dir(path: &Path) -> Result<(), ProofError> {
    if path.exists() {
        std::fs::remove_dir_all(path).map_err(io("clearing the update cache", path))?;
    }
    std::fs::create_dir_all(path).map_err(io("creating the update cache", path))
}

impl Sealer {
    fn update_proof(&self) -> api::RegisteredUpdateProof {
        update_proof(self.proof.sector_size())
    }

    /// ReplicaUpdate: encode the new data (`paths.unsealed`, holding `pieces`) into a new
    /// replica (`paths.update`, `paths.update_cache`) over the sector key.
    pub fn replica_update(&self, paths: &UpdatePaths, pieces: &[PieceInfo]) -> Result<Updated, ProofError> {
        let key_len = std::fs::metadata(&paths.sealed).map_err(io("reading the sealed file", &paths.sealed))?.len();
        // AddPiece wrote the pieces' padded bytes only; the rest of the sector is zeros, which
        // is what the zero pieces CommD pads with stand for.
        let staged = OpenOptions::new()
            .write(true)
            .open(&paths.unsealed)
            .map_err(io("opening the unsealed file", &paths.unsealed))?;
        let staged_len = staged.metadata().map_err(io("reading the unsealed file", &paths.unsealed))?.len();
        if staged_len < key_len {
            staged.set_len(key_len).map_err(io("padding the unsealed file", &paths.unsealed))?;
        }
        drop(staged);
        sized_file(&paths.update, key_len, "creating the update file")?;
        fresh_dir(&paths.update_cache)?;
        if self.mock() {
            return mock::replica_update(self.proof.sector_size(), paths, pieces);
        }
        let r = api::update::empty_sector_update_encode_into(
            self.update_proof(),
            &paths.update,
            &paths.update_cache,
            &paths.sealed,
            &paths.cache,
            &paths.unsealed,
            pieces,
        );
        let out = self.lib("ReplicaUpdate", r)?;
        Ok(Updated { comm_r_new: out.comm_r_new, comm_d_new: out.comm_d_new })
    }

    /// ProveReplicaUpdate1: the vanilla proofs of the update, one per partition.
    pub fn prove_replica_update1(
        &self,
        paths: &UpdatePaths,
        comm_r_old: Commitment,
        new: Updated,
    ) -> Result<Vec<Vec<u8>>, ProofError> {
        if self.mock() {
            return mock::prove_replica_update1(paths, comm_r_old, new);
        }
        let r = api::update::generate_partition_proofs(
            self.update_proof(),
            comm_r_old,
            new.comm_r_new,
            new.comm_d_new,
            &paths.sealed,
            &paths.cache,
            &paths.update,
            &paths.update_cache,
        );
        Ok(self.lib("ProveReplicaUpdate1", r)?.into_iter().map(|p| p.0).collect())
    }

    /// ProveReplicaUpdate2: the update SNARK from the vanilla proofs (needs the update
    /// circuit's parameters).
    pub fn prove_replica_update2(
        &self,
        comm_r_old: Commitment,
        new: Updated,
        vanilla: Vec<Vec<u8>>,
    ) -> Result<Vec<u8>, ProofError> {
        if self.mock() {
            return mock::prove_replica_update2(comm_r_old, new, &vanilla).map_err(|message| ProofError::Library {
                phase: "ProveReplicaUpdate2",
                sector: self.sector,
                message,
            });
        }
        let vanilla = vanilla.into_iter().map(api::PartitionProofBytes).collect();
        let r = api::update::generate_empty_sector_update_proof_with_vanilla(
            self.update_proof(),
            vanilla,
            comm_r_old,
            new.comm_r_new,
            new.comm_d_new,
        );
        Ok(self.lib("ProveReplicaUpdate2", r)?.0)
    }

    pub fn verify_replica_update(
        &self,
        comm_r_old: Commitment,
        new: Updated,
        proof: &[u8],
    ) -> Result<bool, ProofError> {
        if self.mock() {
            return Ok(proof == mock::update_proof(comm_r_old, new));
        }
        let r = api::update::verify_empty_sector_update_proof(
            self.update_proof(),
            proof,
            comm_r_old,
            new.comm_r_new,
            new.comm_d_new,
        );
        self.lib("VerifyReplicaUpdate", r)
    }

    /// GenerateSectorKeyFromData: the original replica (`paths.sealed`) from the update and
    /// its data, checked against the sector's own cache (`paths.cache`, which FinalizeSector
    /// and FinalizeReplicaUpdate keep).
    ///
    /// Lotus hands the library the update cache as the cache to read `p_aux` from. The library
    /// rebuilds the old CommR from that `p_aux`'s CommRLast, which in the update cache is the
    /// new one, so the key it writes is wrong. We pass the sector's original cache, as the
    /// library's own tests do. The regenerated tree R goes to a scratch directory, and its root
    /// must equal the sector's CommRLast, or the recovered key is refused.
    pub fn generate_sector_key(&self, paths: &UpdatePaths, comm_d_new: Commitment) -> Result<(), ProofError> {
        let len = std::fs::metadata(&paths.update).map_err(io("reading the update file", &paths.update))?.len();
        sized_file(&paths.sealed, len, "creating the sealed file")?;
        if self.mock() {
            std::fs::create_dir_all(&paths.cache).map_err(io("creating the cache directory", &paths.cache))?;
            return mock::generate_sector_key(paths);
        }
        let p_aux = paths.cache.join("p_aux");
        let old = std::fs::read(&p_aux)
            .map_err(io("reading the sector's p_aux (the sector key cannot be checked without it)", &p_aux))?;
        let scratch = paths.cache.with_extension("sector-key");
        fresh_dir(&scratch)?;
        let r = api::update::empty_sector_update_remove_encoded_data(
            self.update_proof(),
            &paths.sealed,
            &scratch,
            &paths.update,
            &paths.cache,
            &paths.unsealed,
            comm_d_new,
        );
        let checked = self.lib("GenerateSectorKeyFromData", r).and_then(|()| {
            let p = scratch.join("p_aux");
            let regenerated = std::fs::read(&p).map_err(io("reading the regenerated p_aux", &p))?;
            if regenerated != old {
                return Err(ProofError::Library {
                    phase: "GenerateSectorKeyFromData",
                    sector: self.sector,
                    message:
                        "the recovered sector key does not match the sector's CommR: the update, its unsealed data \
                              or the CommD given are not the ones this sector was updated with"
                            .into(),
                });
            }
            Ok(())
        });
        let _ = std::fs::remove_dir_all(&scratch);
        if checked.is_err() {
            let _ = std::fs::remove_file(&paths.sealed);
        }
        checked
    }

    /// DecodeFrom: the sector's data, fr32-padded as AddPiece writes it, into
    /// `paths.unsealed`, from the update (`paths.update`) and the sector key (`paths.sealed`,
    /// with its cache `paths.cache`, whose `p_aux` names the key's CommR).
    pub fn decode_update(&self, paths: &UpdatePaths, comm_d_new: Commitment) -> Result<(), ProofError> {
        for (f, what) in [(&paths.update, "reading the update file"), (&paths.sealed, "reading the sector key")] {
            std::fs::metadata(f).map_err(io(what, f))?;
        }
        if self.mock() {
            return mock::decode_update(paths);
        }
        let len = std::fs::metadata(&paths.update).map_err(io("reading the update file", &paths.update))?.len();
        sized_file(&paths.unsealed, len, "creating the unsealed file")?;
        let r = api::update::empty_sector_update_decode_from(
            self.update_proof(),
            &paths.unsealed,
            &paths.update,
            &paths.sealed,
            &paths.cache,
            comm_d_new,
        );
        let r = self.lib("DecodeFrom", r);
        if r.is_err() {
            let _ = std::fs::remove_file(&paths.unsealed);
        }
        r
    }

    /// The sector key of an updated CC sector whose key was released: SDR over zeros with the
    /// sector's ticket (a CC sector's replica is its key), written to `sealed` with its cache
    /// (finalized) in `cache`; returns the key's CommR, which the caller compares with the
    /// sector's (the chain's SectorKeyCID, or the `p_aux` of the sector's own cache). Lotus
    /// regenerates the key the same way before decoding an updated sector.
    pub fn regenerate_sector_key(
        &self,
        sealed: &Path,
        cache: &Path,
        ticket: [u8; 32],
    ) -> Result<Commitment, ProofError> {
        let scratch = sealed.with_extension("regenerate");
        fresh_dir(&scratch)?;
        fresh_dir(cache)?;
        let paths = crate::SectorPaths {
            unsealed: scratch.join("unsealed"),
            sealed: sealed.to_path_buf(),
            cache: cache.to_path_buf(),
        };
        let r = (|| {
            let size = crate::max_unpadded(self.proof.sector_size());
            let cc = self.add_piece(std::io::Read::take(std::io::repeat(0), size), size, &paths.unsealed)?;
            let pc1 = self.pre_commit1(&paths, ticket, &[cc])?;
            let comm_r = self.pre_commit2(pc1, &paths)?.comm_r;
            self.finalize(cache)?;
            Ok(comm_r)
        })();
        let _ = std::fs::remove_dir_all(&scratch);
        if r.is_err() {
            let _ = std::fs::remove_file(sealed);
        }
        r
    }

    /// FinalizeReplicaUpdate: both caches trimmed to what proving reads.
    pub fn finalize_replica_update(&self, paths: &UpdatePaths) -> Result<(), ProofError> {
        for cache in [&paths.cache, &paths.update_cache] {
            if cache.exists() {
                self.finalize(cache)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{max_unpadded, Backend, SectorPaths};
    use sealing_types::RegisteredSealProof;

    /// A CC sector sealed (to PreCommit2) and finalized, then new data added as snap deals'
    /// AddPiece does: into a new unsealed file, one piece filling the sector (the pieces of
    /// an update must cover the sector, fillers included, or their CommD is not the sector's).
    fn cc_sector_and_new_data(s: &Sealer, dir: &Path) -> (UpdatePaths, Commitment, PieceInfo) {
        let sp = SectorPaths::in_dir(dir);
        let size = max_unpadded(SectorSize::KIB2);
        let cc = s.add_piece(std::io::Read::take(std::io::repeat(0), size), size, &sp.unsealed).unwrap();
        assert_eq!(s.cc_comm_d().unwrap(), cc.commitment, "a CC sector's CommD is its zero piece's");
        let pc1 = s.pre_commit1(&sp, [1; 32], &[cc]).unwrap();
        let comm_r_old = s.pre_commit2(pc1, &sp).unwrap().comm_r;
        s.finalize(&sp.cache).unwrap();
        std::fs::remove_file(&sp.unsealed).unwrap();
        let paths = UpdatePaths::in_dir(dir);
        let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let piece = s.add_piece(&data[..], size, &paths.unsealed).unwrap();
        (paths, comm_r_old, piece)
    }

    fn round_trip(s: Sealer) -> (Sealer, UpdatePaths, Commitment, Updated, Vec<Vec<u8>>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let (paths, comm_r_old, piece) = cc_sector_and_new_data(&s, dir.path());
        let key = std::fs::read(&paths.sealed).unwrap();
        let new = s.replica_update(&paths, std::slice::from_ref(&piece)).unwrap();
        assert_ne!(new.comm_r_new, comm_r_old);
        assert_eq!(new.comm_d_new, s.comm_d(&[piece]).unwrap(), "CommD of the new pieces");
        assert_eq!(std::fs::metadata(&paths.update).unwrap().len(), 2048);
        assert_ne!(std::fs::read(&paths.update).unwrap(), key, "the update differs from the key");
        let vanilla = s.prove_replica_update1(&paths, comm_r_old, new).unwrap();
        assert_eq!(vanilla.len(), 1, "one partition at 2KiB");
        // The key comes back byte for byte from the update and its data, after finalizing.
        s.finalize_replica_update(&paths).unwrap();
        std::fs::remove_file(&paths.sealed).unwrap();
        s.generate_sector_key(&paths, new.comm_d_new).unwrap();
        assert_eq!(std::fs::read(&paths.sealed).unwrap(), key, "the sector key is recovered");
        if !s.mock() {
            let e = s.generate_sector_key(&paths, [7; 32]).unwrap_err().to_string();
            assert!(e.contains("does not match the sector's CommR"), "another CommD is refused: {e}");
            assert!(!paths.sealed.exists(), "and no wrong key is left behind");
            s.generate_sector_key(&paths, new.comm_d_new).unwrap();
        }
        // The data back from the update and the key; then from a key regenerated from zeros
        // and the ticket alone (the key released, as ReleaseSectorKey leaves a sector).
        let want = std::fs::read(&paths.unsealed).unwrap();
        let decoded = UpdatePaths { unsealed: dir.path().join("decoded"), ..paths.clone() };
        s.decode_update(&decoded, new.comm_d_new).unwrap();
        assert_eq!(std::fs::read(&decoded.unsealed).unwrap(), want, "decoded from the key");
        let regen = dir.path().join("regen");
        std::fs::create_dir_all(&regen).unwrap();
        let (key_file, key_cache) = (regen.join("sealed"), regen.join("cache"));
        assert_eq!(s.regenerate_sector_key(&key_file, &key_cache, [1; 32]).unwrap(), comm_r_old);
        assert_eq!(std::fs::read(&key_file).unwrap(), key, "the key regenerated byte for byte");
        let from_regen = UpdatePaths {
            unsealed: regen.join("decoded"),
            sealed: key_file.clone(),
            cache: key_cache.clone(),
            ..paths.clone()
        };
        s.decode_update(&from_regen, new.comm_d_new).unwrap();
        assert_eq!(std::fs::read(&from_regen.unsealed).unwrap(), want, "decoded from the regenerated key");
        let other = s.regenerate_sector_key(&key_file, &key_cache, [2; 32]).unwrap();
        assert_ne!(other, comm_r_old, "another ticket makes another key");
        (s, paths, comm_r_old, new, vanilla, dir)
    }

    /// The real encoding, vanilla proofs and key recovery (milliseconds, no parameters); the
    /// SNARK is proven by the real-proof interop test.
    #[test]
    fn a_real_update_encodes_proves_its_partitions_and_gives_the_key_back() {
        let (_s, _paths, comm_r_old, new, vanilla, _dir) =
            round_trip(Sealer::new(RegisteredSealProof::STACKED_DRG_2KIB_V1_1, 1000, 3));
        let up = update_proof(SectorSize::KIB2);
        let pp: Vec<api::PartitionProofBytes> = vanilla.into_iter().map(api::PartitionProofBytes).collect();
        let ok = api::update::verify_partition_proofs(up, &pp, comm_r_old, new.comm_r_new, new.comm_d_new);
        assert!(ok.unwrap(), "the vanilla proofs verify");
        let bad = api::update::verify_partition_proofs(up, &pp, comm_r_old, new.comm_r_new, [3; 32]);
        assert!(!bad.unwrap_or(false), "not for another CommD");
    }

    /// The real update verifier on a real update SNARK of this sector, stored once (the
    /// proving test computes one end to end, verified by the devnet on chain).
    #[test]
    fn a_stored_real_update_proof_verifies_and_forgeries_are_refused() {
        let (s, _paths, comm_r_old, new, vanilla, _dir) =
            round_trip(Sealer::new(RegisteredSealProof::STACKED_DRG_2KIB_V1_1, 1000, 3));
        let inputs = serde_json::json!({
            "actor": 1000, "sector": 3, "comm_r_old": comm_r_old, "comm_r_new": new.comm_r_new,
            "comm_d_new": new.comm_d_new,
        });
        let proof = crate::stored_real_proof("update-2kib", &inputs, || {
            s.prove_replica_update2(comm_r_old, new, vanilla).unwrap()
        });
        assert_eq!(proof.len(), 192, "a 2KiB update proof");
        assert!(s.verify_replica_update(comm_r_old, new, &proof).unwrap(), "the stored proof verifies");
        assert!(!s.verify_replica_update(new.comm_r_new, new, &proof).unwrap_or(false), "not for another key");
        let other_data = Updated { comm_d_new: [3; 32], ..new };
        assert!(!s.verify_replica_update(comm_r_old, other_data, &proof).unwrap_or(false), "not for other data");
        let mut tampered = proof.clone();
        tampered[10] ^= 0xff;
        assert!(!s.verify_replica_update(comm_r_old, new, &tampered).unwrap_or(false), "a tampered proof");
    }

    #[test]
    fn a_mock_update_round_trips_and_its_proof_is_bound_to_the_commitments() {
        let s = Sealer::new(RegisteredSealProof::STACKED_DRG_2KIB_V1_1, 1000, 3).with_backend(Backend::Mock);
        let (s, _paths, comm_r_old, new, vanilla, _dir) = round_trip(s);
        let proof = s.prove_replica_update2(comm_r_old, new, vanilla.clone()).unwrap();
        assert_eq!(proof.len(), 192);
        assert!(s.verify_replica_update(comm_r_old, new, &proof).unwrap());
        assert!(!s.verify_replica_update([9; 32], new, &proof).unwrap(), "another sector key");
        let e = s.prove_replica_update2([9; 32], new, vanilla).unwrap_err().to_string();
        assert!(e.contains("ProveReplicaUpdate2 of sector 3") && e.contains("not of these commitments"), "{e}");
    }

    #[test]
    fn missing_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sealer::new(RegisteredSealProof::STACKED_DRG_2KIB_V1_1, 1000, 3);
        let e = s.replica_update(&UpdatePaths::in_dir(dir.path()), &[]).unwrap_err().to_string();
        assert!(e.starts_with("reading the sealed file") && e.contains("/sealed"), "{e}");
    }
}
