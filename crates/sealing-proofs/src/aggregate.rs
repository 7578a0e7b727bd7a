//! Aggregated seal proofs (SnarkPack v2): many sectors' Commit2 proofs folded into one, for a
//! ProveCommitSectors3 message that commits a batch of sectors (`[Sealing] AggregateCommits`).
//!
//! The real aggregation needs the inner-product SRS (`v28-fil-inner-product-v1.srs`) in the
//! parameter cache, which comes from Filecoin's trusted setup and cannot be generated here:
//! without it `aggregate` fails with the library's error, and the miner sends the batch's
//! proofs one per sector instead (the same message, larger).

use crate::{api, api_proof, mock, prover_id, Backend, Commitment, ProofError, Ticket};
use sealing_types::RegisteredSealProof;

/// What one sector's proof commits to (the seal's public inputs), and its proof.
#[derive(Clone, Debug)]
pub struct SealedSector {
    pub sector: u64,
    pub comm_r: Commitment,
    pub comm_d: Commitment,
    pub ticket: Ticket,
    pub seed: Ticket,
}

/// Mock aggregates have a fixed size (a real SnarkPack proof of a few sectors is tens of KB).
const MOCK_AGGREGATE_LEN: usize = 4096;

fn lib<T>(phase: &'static str, sectors: &[SealedSector], r: anyhow::Result<T>) -> Result<T, ProofError> {
    r.map_err(|e| ProofError::library(phase, sectors.first().map(|s| s.sector).unwrap_or_default(), e))
}

fn mock_aggregate(actor_id: u64, sectors: &[SealedSector]) -> Vec<u8> {
    let prover = prover_id(actor_id);
    let proofs: Vec<Vec<u8>> =
        sectors.iter().map(|s| mock::seal_proof(&prover, s.sector, &s.comm_r, &s.comm_d, &s.ticket, &s.seed)).collect();
    let parts: Vec<&[u8]> = proofs.iter().map(|p| p.as_slice()).collect();
    mock::expand(mock::digest("aggregate", &parts), MOCK_AGGREGATE_LEN)
}

/// Fold the sectors' proofs (in the sectors' order) into one aggregate proof.
pub fn aggregate(
    backend: Backend,
    proof: RegisteredSealProof,
    actor_id: u64,
    sectors: &[SealedSector],
    proofs: &[Vec<u8>],
) -> Result<Vec<u8>, ProofError> {
    if backend.is_mock() {
        return Ok(mock_aggregate(actor_id, sectors));
    }
    let comm_rs: Vec<Commitment> = sectors.iter().map(|s| s.comm_r).collect();
    let seeds: Vec<Ticket> = sectors.iter().map(|s| s.seed).collect();
    let outputs: Vec<api::seal::SealCommitPhase2Output> =
        proofs.iter().map(|p| api::seal::SealCommitPhase2Output { proof: p.clone() }).collect();
    let r = api::seal::aggregate_seal_commit_proofs(
        api_proof(proof),
        api::RegisteredAggregationProof::SnarkPackV2,
        &comm_rs,
        &seeds,
        &outputs,
    );
    lib("AggregateSealProofs", sectors, r)
}

/// Check an aggregate proof against the sectors' public inputs (in the sectors' order).
pub fn verify_aggregate(
    backend: Backend,
    proof: RegisteredSealProof,
    actor_id: u64,
    sectors: &[SealedSector],
    aggregate: &[u8],
) -> Result<bool, ProofError> {
    if backend.is_mock() {
        return Ok(aggregate == mock_aggregate(actor_id, sectors));
    }
    let prover = prover_id(actor_id);
    let mut inputs = vec![];
    for s in sectors {
        let r = api::seal::get_seal_inputs(
            api_proof(proof),
            s.comm_r,
            s.comm_d,
            prover,
            api::SectorId::from(s.sector),
            s.ticket,
            s.seed,
        );
        inputs.extend(lib("SealInputs", sectors, r)?);
    }
    let comm_rs: Vec<Commitment> = sectors.iter().map(|s| s.comm_r).collect();
    let seeds: Vec<Ticket> = sectors.iter().map(|s| s.seed).collect();
    let r = api::seal::verify_aggregate_seal_commit_proofs(
        api_proof(proof),
        api::RegisteredAggregationProof::SnarkPackV2,
        aggregate.to_vec(),
        &comm_rs,
        &seeds,
        inputs,
    );
    lib("VerifyAggregateSeals", sectors, r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sector(n: u64) -> SealedSector {
        SealedSector { sector: n, comm_r: [n as u8; 32], comm_d: [2; 32], ticket: [3; 32], seed: [4; 32] }
    }

    #[test]
    fn a_mock_aggregate_verifies_only_for_its_own_sectors() {
        let p = RegisteredSealProof::STACKED_DRG_2KIB_V1_1;
        let sectors = [sector(1), sector(2), sector(3)];
        let agg = aggregate(Backend::Mock, p, 1000, &sectors, &[]).unwrap();
        assert_eq!(agg.len(), MOCK_AGGREGATE_LEN);
        assert!(verify_aggregate(Backend::Mock, p, 1000, &sectors, &agg).unwrap());
        // Another miner, another order, another seed: refused.
        assert!(!verify_aggregate(Backend::Mock, p, 1001, &sectors, &agg).unwrap());
        assert!(!verify_aggregate(Backend::Mock, p, 1000, &[sector(2), sector(1), sector(3)], &agg).unwrap());
        let mut other = sectors.clone();
        other[2].seed = [9; 32];
        assert!(!verify_aggregate(Backend::Mock, p, 1000, &other, &agg).unwrap());
    }
}
