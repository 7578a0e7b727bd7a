//! ProveReplicaUpdates3 (snap deals): a proven CC sector's sealed CID replaced by its update's,
//! with the v18 actor's checks (`validate_replica_updates`): the deadline mutable, the sector
//! in the deadline and partition named, active (not faulty, terminated or unproven), holding
//! no data yet, the update proof type of its seal proof, and the update proof verified against
//! its current sealed CID (the sector key), the new sealed CID and the CommD of the pieces.
//! Left out: aggregate update proofs (the actor refuses them too), deal and FIL+ activation,
//! and the pledge and reward recomputation (the devnet's pledge is flat, so the delta is 0).

use super::{fail, refused, Applied, Failure, State};
use fil_actor_miner_state::v18 as miner;
use fvm_shared::error::ExitCode;
use lotus_api::chain::ChainEpoch;
use lotus_api::wire::{Cid, Commitment};
use sealing_types::RegisteredSealProof;
use std::collections::BTreeSet;

/// The actor's `MAX_REPLICA_UPDATE_PROOF_SIZE`.
const MAX_UPDATE_PROOF: usize = 4096;

/// One update, checked: the sector, its new sealed CID, and the CommD its pieces make.
struct Checked {
    sector: u64,
    new_sealed: Cid,
}

impl State {
    pub(super) fn prove_replica_updates(
        &mut self,
        id: u64,
        p: miner::ProveReplicaUpdates3Params,
        epoch: ChainEpoch,
    ) -> Applied {
        let n = p.sector_updates.len();
        if n == 0 {
            return Err(fail(ExitCode::USR_ILLEGAL_ARGUMENT, "no sector updates"));
        }
        if !p.aggregate_proof.is_empty() || p.aggregate_proof_type.is_some() {
            return Err(fail(ExitCode::USR_ILLEGAL_ARGUMENT, "aggregate update proofs not yet supported"));
        }
        if p.sector_proofs.len() != n {
            return Err(fail(
                ExitCode::USR_ILLEGAL_ARGUMENT,
                format!("mismatched proof and sector update count: {} proofs, {n} updates", p.sector_proofs.len()),
            ));
        }
        let mut seen = BTreeSet::new();
        let mut checked = vec![];
        let mut fails = vec![];
        for (i, u) in p.sector_updates.iter().enumerate() {
            let r = self.check_update(id, u, &p.sector_proofs[i], i64::from(p.update_proofs_type), epoch, &mut seen);
            match r {
                Ok(c) => checked.push(c),
                Err(f) => {
                    refused(id, u.sector, &f, "replica update");
                    if p.require_activation_success {
                        return Err(f);
                    }
                    fails.push((i as u32, f.code));
                }
            }
        }
        let m = self.miners.get_mut(&id).expect("exists");
        for c in checked {
            let s = m.sectors.get_mut(&c.sector).expect("checked");
            // The first update's key is the sector's original replica; a later one keeps it.
            s.sector_key_cid.get_or_insert(s.sealed_cid);
            s.sealed_cid = c.new_sealed;
            s.data = true;
            s.updated = Some(epoch);
            tracing::info!(miner = id, sector = c.sector, sealed = %c.new_sealed, "sector updated (snap deal)");
        }
        let ret = super::fil_actors_shared_batch_return(n as u32, fails);
        if ret.0 == 0 {
            return Err(fail(ExitCode::USR_ILLEGAL_ARGUMENT, "no valid updates"));
        }
        Ok(ret.1)
    }

    fn check_update(
        &self,
        id: u64,
        u: &miner::SectorUpdateManifest,
        proof: &[u8],
        update_proof: i64,
        epoch: ChainEpoch,
        seen: &mut BTreeSet<u64>,
    ) -> Result<Checked, Failure> {
        let n = u.sector;
        let illegal = |why: String| fail(ExitCode::USR_ILLEGAL_ARGUMENT, format!("sector {n}: {why}"));
        if !seen.insert(n) {
            return Err(illegal("duplicate sector in the batch".into()));
        }
        if proof.len() > MAX_UPDATE_PROOF {
            return Err(illegal(format!("the update proof has {} bytes, more than {MAX_UPDATE_PROOF}", proof.len())));
        }
        if u.deadline >= self.params.wpost_period_deadlines {
            return Err(illegal(format!("deadline {} out of range", u.deadline)));
        }
        let new_sealed = Cid(u.new_sealed_cid);
        let comm_r_new =
            Commitment::Sealed.from_cid(&new_sealed).map_err(|e| illegal(format!("new sealed CID: {e}")))?;
        if !self.deadline_is_mutable(u.deadline, epoch) {
            return Err(illegal(format!(
                "cannot upgrade sectors in immutable deadline {}: it is open or opens next",
                u.deadline
            )));
        }
        let m = &self.miners[&id];
        let s = match m.sectors.get(&n) {
            Some(s) if (s.deadline, s.partition) == (u.deadline, u.partition) => s,
            _ => {
                return Err(fail(
                    ExitCode::USR_NOT_FOUND,
                    format!("sector {n} is not in deadline {} partition {}", u.deadline, u.partition),
                ))
            }
        };
        if s.terminated.is_some() {
            return Err(illegal("cannot update a terminated sector".into()));
        }
        if s.faulty {
            return Err(illegal("cannot update a faulty sector".into()));
        }
        if s.unproven {
            return Err(illegal("cannot update a sector not yet proven in a WindowPoSt".into()));
        }
        if s.data {
            return Err(illegal("cannot update a sector with data".into()));
        }
        let seal = RegisteredSealProof::from_i64(s.seal_proof).expect("checked at pre-commit");
        // The update proof of every seal proof of one size is one (StackedDrg<size>V1: 0–4).
        if update_proof != seal.as_i64() % 5 {
            return Err(illegal(format!(
                "update proof type {update_proof} is not the one of seal proof {}",
                s.seal_proof
            )));
        }
        if u.pieces.is_empty() {
            return Err(illegal("an update without pieces has no data".into()));
        }
        let pieces = u
            .pieces
            .iter()
            .map(|pc| {
                let commitment = Commitment::Unsealed
                    .from_cid(&Cid(pc.cid))
                    .map_err(|e| illegal(format!("piece CID {}: {e}", pc.cid)))?;
                // Padded on chain; the proofs library counts unpadded bytes (127 of each 128).
                let size = sealing_proofs::UnpaddedBytesAmount(pc.size.0 / 128 * 127);
                Ok(sealing_proofs::PieceInfo { commitment, size })
            })
            .collect::<Result<Vec<_>, Failure>>()?;
        let sealer = sealing_proofs::Sealer::new(seal, id, n).with_backend(self.params.proofs);
        let comm_d_new = sealer.comm_d(&pieces).map_err(|e| illegal(format!("the pieces' CommD: {e}")))?;
        let comm_r_old = Commitment::Sealed.from_cid(&s.sealed_cid).expect("checked at pre-commit");
        let new = sealing_proofs::Updated { comm_r_new, comm_d_new };
        match sealer.verify_replica_update(comm_r_old, new, proof) {
            Ok(true) => Ok(Checked { sector: n, new_sealed }),
            Ok(false) => Err(illegal("the replica update proof does not verify".into())),
            Err(e) => Err(illegal(format!("verifying the replica update proof: {e}"))),
        }
    }
}
