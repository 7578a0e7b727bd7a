//! Proofs of spacetime: WindowPoSt (each deadline's partitions, every proving period) and
//! WinningPoSt (a block election), split the way Lotus splits them across machines:
//! challenges are derived from the chain's randomness, each challenged sector's *vanilla* proof
//! is read on whichever node holds the sector's files, and one node turns the vanilla proofs
//! into the Groth16 SNARK the chain verifies.

use crate::{mock, prover_id, ProofError};
use filecoin_proofs_api as api;
use sealing_types::SectorSize;
use std::collections::BTreeMap;
use std::path::Path;

pub use api::RegisteredPoStProof;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PoStKind {
    Window,
    Winning,
}

impl PoStKind {
    fn name(self) -> &'static str {
        match self {
            PoStKind::Window => "WindowPoSt",
            PoStKind::Winning => "WinningPoSt",
        }
    }
}

/// The PoSt proof a sector size is proven with: WinningPoSt V1 and WindowPoSt V1_2 (the
/// versions the network uses since nv19), the same the devnet parameters are generated for.
pub fn post_proof(size: SectorSize, kind: PoStKind) -> Option<RegisteredPoStProof> {
    use RegisteredPoStProof::*;
    Some(match (size, kind) {
        (SectorSize::KIB2, PoStKind::Winning) => StackedDrgWinning2KiBV1,
        (SectorSize::KIB2, PoStKind::Window) => StackedDrgWindow2KiBV1_2,
        (SectorSize::MIB8, PoStKind::Winning) => StackedDrgWinning8MiBV1,
        (SectorSize::MIB8, PoStKind::Window) => StackedDrgWindow8MiBV1_2,
        (SectorSize::MIB512, PoStKind::Winning) => StackedDrgWinning512MiBV1,
        (SectorSize::MIB512, PoStKind::Window) => StackedDrgWindow512MiBV1_2,
        (SectorSize::GIB32, PoStKind::Winning) => StackedDrgWinning32GiBV1,
        (SectorSize::GIB32, PoStKind::Window) => StackedDrgWindow32GiBV1_2,
        (SectorSize::GIB64, PoStKind::Winning) => StackedDrgWinning64GiBV1,
        (SectorSize::GIB64, PoStKind::Window) => StackedDrgWindow64GiBV1_2,
        _ => return None,
    })
}

/// Sectors per WindowPoSt partition (2 at 2KiB, 2349 at 32GiB).
pub fn partition_sectors(size: SectorSize) -> usize {
    post_proof(size, PoStKind::Window).map(|p| p.sector_count()).unwrap_or(1)
}

/// PoSt randomness must be a canonical BLS12-381 scalar: Lotus masks the top bits the same way.
pub fn canonical(mut randomness: [u8; 32]) -> [u8; 32] {
    randomness[31] &= 0x3f;
    randomness
}

/// One PoSt computation of one miner for one sector size.
#[derive(Clone, Copy, Debug)]
pub struct Prover {
    pub kind: PoStKind,
    pub size: SectorSize,
    pub proof: RegisteredPoStProof,
    pub prover_id: [u8; 32],
    pub randomness: [u8; 32],
    pub backend: crate::Backend,
}

impl Prover {
    pub fn new(kind: PoStKind, size: SectorSize, actor_id: u64, randomness: [u8; 32]) -> Result<Self, ProofError> {
        let proof = post_proof(size, kind).ok_or_else(|| ProofError::Library {
            phase: kind.name(),
            sector: 0,
            message: format!("no {} proof for {size} sectors", kind.name()),
        })?;
        Ok(Prover {
            kind,
            size,
            proof,
            prover_id: prover_id(actor_id),
            randomness: canonical(randomness),
            backend: crate::Backend::Real,
        })
    }

    pub fn with_backend(self, backend: crate::Backend) -> Self {
        Prover { backend, ..self }
    }

    fn mock(&self) -> bool {
        self.backend.is_mock()
    }

    fn lib<T>(&self, sector: u64, r: anyhow::Result<T>) -> Result<T, ProofError> {
        r.map_err(|e| ProofError::Library { phase: self.kind.name(), sector, message: format!("{e:#}") })
    }

    /// WinningPoSt: which of the `set_len` proving sectors (by index into the sorted set) the
    /// election challenges.
    pub fn winning_indices(&self, set_len: u64) -> Result<Vec<u64>, ProofError> {
        if self.mock() {
            return Ok(mock::winning_indices(&self.randomness, set_len));
        }
        let r =
            api::post::generate_winning_post_sector_challenge(self.proof, &self.randomness, set_len, self.prover_id);
        self.lib(0, r)
    }

    /// The challenged leaves of each sector.
    pub fn challenges(&self, sectors: &[u64]) -> Result<BTreeMap<u64, Vec<u64>>, ProofError> {
        if self.mock() {
            return Ok(mock::challenges(&self.randomness, sectors));
        }
        let ids: Vec<api::SectorId> = sectors.iter().map(|&s| api::SectorId::from(s)).collect();
        let r = api::post::generate_fallback_sector_challenges(self.proof, &self.randomness, &ids, self.prover_id);
        Ok(self.lib(0, r)?.into_iter().map(|(k, v)| (u64::from(k), v)).collect())
    }

    /// A sector's vanilla proof, read from its sealed file and cache (tree R last, p_aux).
    /// Fails when those files are missing or damaged: that sector is then faulty.
    pub fn vanilla(
        &self,
        sector: u64,
        comm_r: api::Commitment,
        sealed: &Path,
        cache: &Path,
        challenges: &[u64],
    ) -> Result<Vec<u8>, ProofError> {
        if self.mock() {
            return mock::vanilla(self.size, sector, comm_r, sealed, cache, challenges);
        }
        // The library would map a missing file to an opaque tree error; say which file.
        for (what, p) in [("sealed file", sealed), ("cache directory", cache)] {
            if let Err(source) = std::fs::metadata(p) {
                return Err(ProofError::Io { what, path: p.into(), source });
            }
        }
        let replica = api::PrivateReplicaInfo::new(self.proof, comm_r, cache.into(), sealed.into());
        let r = api::post::generate_single_vanilla_proof(self.proof, sector.into(), &replica, challenges);
        self.lib(sector, r)
    }

    /// The SNARK over (sector, vanilla proof) pairs (the CPU- or GPU-heavy part). A WindowPoSt's
    /// vanilla proofs must reach the library in sector-number order: they are sorted here, so no
    /// caller can get that wrong. A WinningPoSt's keep the election's order.
    pub fn snark(&self, vanilla: &[(u64, Vec<u8>)]) -> Result<Vec<u8>, ProofError> {
        let mut pairs: Vec<&(u64, Vec<u8>)> = vanilla.iter().collect();
        if self.kind == PoStKind::Window {
            pairs.sort_by_key(|(n, _)| *n);
        }
        if self.mock() {
            return Ok(mock::snark(&self.prover_id, &self.randomness, &pairs));
        }
        let vanilla: Vec<Vec<u8>> = pairs.into_iter().map(|(_, v)| v.clone()).collect();
        let vanilla = &vanilla[..];
        let r = match self.kind {
            PoStKind::Window => {
                api::post::generate_window_post_with_vanilla(self.proof, &self.randomness, self.prover_id, vanilla)
            }
            PoStKind::Winning => {
                api::post::generate_winning_post_with_vanilla(self.proof, &self.randomness, self.prover_id, vanilla)
            }
        };
        let mut proofs = self.lib(0, r)?;
        match proofs.len() {
            1 => Ok(proofs.remove(0).1),
            n => Err(ProofError::Library {
                phase: self.kind.name(),
                sector: 0,
                message: format!("expected one proof, the library made {n}"),
            }),
        }
    }

    /// Verify a proof over exactly the sectors it claims (number → CommR), as the chain does.
    pub fn verify(&self, proof: &[u8], sectors: &BTreeMap<u64, api::Commitment>) -> Result<bool, ProofError> {
        if self.mock() {
            let winning = (self.kind == PoStKind::Winning).then(|| self.proof.sector_count());
            return Ok(mock::verify_post(&self.prover_id, &self.randomness, sectors, winning, proof));
        }
        let replicas: BTreeMap<api::SectorId, api::PublicReplicaInfo> = sectors
            .iter()
            .map(|(&s, &comm_r)| (api::SectorId::from(s), api::PublicReplicaInfo::new(self.proof, comm_r)))
            .collect();
        let r = match self.kind {
            PoStKind::Window => {
                api::post::verify_window_post(&self.randomness, &[(self.proof, proof)], &replicas, self.prover_id)
            }
            PoStKind::Winning => api::post::verify_winning_post(&self.randomness, proof, &replicas, self.prover_id),
        };
        self.lib(0, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{max_unpadded, params, Sealer, SectorPaths};
    use sealing_types::RegisteredSealProof;

    fn sealed_sector(dir: &Path, n: u64) -> (SectorPaths, api::Commitment) {
        let paths = SectorPaths {
            unsealed: dir.join(format!("u{n}")),
            sealed: dir.join(format!("s{n}")),
            cache: dir.join(format!("c{n}")),
        };
        let s = Sealer::new(RegisteredSealProof::STACKED_DRG_2KIB_V1_1, 1000, n);
        let size = max_unpadded(SectorSize::KIB2);
        let piece = s.add_piece(&vec![n as u8; size as usize][..], size, &paths.unsealed).unwrap();
        let pc1 = s.pre_commit1(&paths, [n as u8; 32], &[piece]).unwrap();
        let pc2 = s.pre_commit2(pc1, &paths).unwrap();
        s.finalize(&paths.cache).unwrap();
        (paths, pc2.comm_r)
    }

    #[test]
    fn partitions_follow_the_library() {
        assert_eq!(partition_sectors(SectorSize::KIB2), 2);
        assert_eq!(partition_sectors(SectorSize::GIB32), 2349);
        assert_eq!(canonical([0xff; 32])[31], 0x3f);
    }

    /// Real WindowPoSt and WinningPoSt over two finalized 2KiB sectors (PoSt parameters from
    /// `lotus-miner fetch-params 2KiB`): proofs verify; a proof is bound to its sectors and
    /// randomness; a sector whose sealed file is gone cannot give a vanilla proof, and the
    /// other sector alone still proves.
    #[test]
    fn window_and_winning_post_prove_and_verify() {
        // Niced to the bottom (19): no deadline here, unlike the proving end-to-end test it runs
        // beside, whose WindowPoSts (never niced) must get the cores first. On Linux the nice
        // value is per thread and the proofs library's threads inherit this one's.
        // SAFETY: setpriority has no memory-safety preconditions.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
        assert!(
            params::files(SectorSize::KIB2).unwrap().iter().all(|p| p.exists()),
            "2KiB parameters missing: run `lotus-miner fetch-params 2KiB` (scripts/test.sh does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let sectors: Vec<_> = [3u64, 5].iter().map(|&n| (n, sealed_sector(dir.path(), n))).collect();
        let w = Prover::new(PoStKind::Window, SectorSize::KIB2, 1000, [9; 32]).unwrap();
        let numbers: Vec<u64> = sectors.iter().map(|s| s.0).collect();
        let ch = w.challenges(&numbers).unwrap();
        let vanilla: Vec<_> =
            sectors.iter().map(|(n, (p, r))| (*n, w.vanilla(*n, *r, &p.sealed, &p.cache, &ch[n]).unwrap())).collect();
        let proof = w.snark(&vanilla).unwrap();
        let public: BTreeMap<u64, _> = sectors.iter().map(|(n, (_, r))| (*n, *r)).collect();
        assert!(w.verify(&proof, &public).unwrap());
        // Given out of sector order (a partition lists its sectors in landing order), the pairs
        // are put in order.
        let reversed: Vec<_> = vanilla.iter().rev().cloned().collect();
        assert!(w.verify(&w.snark(&reversed).unwrap(), &public).unwrap(), "order does not matter to callers");
        let other = Prover::new(PoStKind::Window, SectorSize::KIB2, 1000, [8; 32]).unwrap();
        assert!(!other.verify(&proof, &public).unwrap_or(false), "other randomness is rejected");

        // Sector 5 loses its sealed file: it is skipped and sector 3 proves alone.
        std::fs::remove_file(&sectors[1].1 .0.sealed).unwrap();
        let (p5, r5) = &sectors[1].1;
        let e = w.vanilla(5, *r5, &p5.sealed, &p5.cache, &ch[&5]).unwrap_err().to_string();
        assert!(e.contains("sealed file") && e.contains("s5"), "{e}");
        let ch3 = w.challenges(&[3]).unwrap();
        let (p3, r3) = &sectors[0].1;
        let proof = w.snark(&[(3, w.vanilla(3, *r3, &p3.sealed, &p3.cache, &ch3[&3]).unwrap())]).unwrap();
        assert!(w.verify(&proof, &BTreeMap::from([(3, *r3)])).unwrap());

        let win = Prover::new(PoStKind::Winning, SectorSize::KIB2, 1000, [7; 32]).unwrap();
        let idx = win.winning_indices(1).unwrap();
        assert!(idx.iter().all(|&i| i == 0));
        let ch = win.challenges(&[3]).unwrap();
        let v = win.vanilla(3, *r3, &p3.sealed, &p3.cache, &ch[&3]).unwrap();
        let proof = win.snark(&vec![(3, v); idx.len()]).unwrap();
        assert!(win.verify(&proof, &BTreeMap::from([(3, *r3)])).unwrap());
    }
}
