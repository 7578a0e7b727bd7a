//! Between Lotus's wire encodings ([`lotus_api::wire`]) and the proofs library's types: the
//! one place a task's params and results change representation.
//!
//! PreCommit1 output is what Lotus's worker makes of filecoin-ffi's bytes (the library's
//! `SealPreCommitPhase1Output` as serde JSON, re-marshalled by Go with sorted keys and the
//! ticket added as `_lotus_SealRandomness`), so that a PC1 done by a Lotus worker can be
//! finished by ours and the other way round. Commit1 output is the library's serde JSON as
//! filecoin-ffi produces it.

use crate::post::{PoStKind, PoStOutput, PoStSector, SkippedSector};
use lotus_api::contract::miner::ReplicaUpdateOut;
use lotus_api::contract::worker::{PoStDetails, PoStProof, PostSectorChallenge, WindowPoStResult};
use lotus_api::wire::{self, Bytes, Commitment};
use sealing_proofs::{PieceInfo, SealCommitPhase1Output, SealPreCommitPhase1Output, UnpaddedBytesAmount};
use sealing_types::{RegisteredSealProof, SectorId};
use std::collections::BTreeMap;

const SEAL_RANDOMNESS_KEY: &str = "_lotus_SealRandomness";

pub fn piece_to_wire(p: &PieceInfo) -> wire::PieceInfo {
    wire::PieceInfo { size: wire::padded(p.size.0), piece_cid: Commitment::Unsealed.to_cid(&p.commitment) }
}

pub fn piece_from_wire(p: &wire::PieceInfo) -> Result<PieceInfo, String> {
    if !p.size.is_power_of_two() || p.size < 128 {
        return Err(format!("piece size {} is not a padded piece size (a power of two, at least 128)", p.size));
    }
    Ok(PieceInfo {
        commitment: Commitment::Unsealed.from_cid(&p.piece_cid)?,
        size: UnpaddedBytesAmount(wire::unpadded(p.size)),
    })
}

pub fn pieces_from_wire(pieces: &[wire::PieceInfo]) -> Result<Vec<PieceInfo>, String> {
    pieces.iter().map(piece_from_wire).collect()
}

/// PreCommit1 output as Lotus's worker returns it.
pub fn pc1_to_wire(out: &SealPreCommitPhase1Output, ticket: &[u8; 32]) -> Result<Bytes, String> {
    // serde_json's map is ordered by key (no `preserve_order`), as Go's map marshalling is.
    let mut v = serde_json::to_value(out).map_err(|e| format!("encoding the PreCommit1 output: {e}"))?;
    let obj = v.as_object_mut().ok_or("the PreCommit1 output is not a JSON object")?;
    obj.insert(SEAL_RANDOMNESS_KEY.into(), serde_json::to_value(Bytes(ticket.to_vec())).expect("bytes encode"));
    serde_json::to_vec(&v).map(Bytes).map_err(|e| format!("encoding the PreCommit1 output: {e}"))
}

/// The library's PreCommit1 output from Lotus's bytes (the ticket key is ignored).
pub fn pc1_from_wire(b: &Bytes) -> Result<SealPreCommitPhase1Output, String> {
    serde_json::from_slice(&b.0).map_err(|e| format!("the PreCommit1 output is not the proofs library's JSON: {e}"))
}

pub fn c1_to_wire(out: &SealCommitPhase1Output) -> Result<Bytes, String> {
    serde_json::to_vec(out).map(Bytes).map_err(|e| format!("encoding the Commit1 output: {e}"))
}

pub fn c1_from_wire(b: &Bytes) -> Result<SealCommitPhase1Output, String> {
    serde_json::from_slice(&b.0).map_err(|e| format!("the Commit1 output is not the proofs library's JSON: {e}"))
}

/// PreCommit2's result.
pub fn cids(comm_r: &[u8; 32], comm_d: &[u8; 32]) -> wire::SectorCids {
    wire::SectorCids { unsealed: Commitment::Unsealed.to_cid(comm_d), sealed: Commitment::Sealed.to_cid(comm_r) }
}

/// (CommR, CommD) of PreCommit2's result.
pub fn commitments(c: &wire::SectorCids) -> Result<([u8; 32], [u8; 32]), String> {
    Ok((Commitment::Sealed.from_cid(&c.sealed)?, Commitment::Unsealed.from_cid(&c.unsealed)?))
}

/// ReplicaUpdate's result.
pub fn replica_update_out(new: &sealing_proofs::Updated) -> ReplicaUpdateOut {
    ReplicaUpdateOut {
        new_sealed: Commitment::Sealed.to_cid(&new.comm_r_new),
        new_unsealed: Commitment::Unsealed.to_cid(&new.comm_d_new),
    }
}

/// (old CommR, new CommR, new CommD) of the ProveReplicaUpdate calls' params.
pub type UpdateCommitments = ([u8; 32], [u8; 32], [u8; 32]);

pub fn update_commitments(
    sector_key: &wire::Cid,
    new_sealed: &wire::Cid,
    new_unsealed: &wire::Cid,
) -> Result<UpdateCommitments, String> {
    let sealed = |c, what| Commitment::Sealed.from_cid(c).map_err(|e| format!("{what}: {e}"));
    Ok((
        sealed(sector_key, "the sector key")?,
        sealed(new_sealed, "the new sealed CID")?,
        Commitment::Unsealed.from_cid(new_unsealed).map_err(|e| format!("the new unsealed CID: {e}"))?,
    ))
}

/// Lotus's `abi.RegisteredPoStProof` for a seal proof's sector size: WinningPoSt V1
/// (0–4), WindowPoSt V1_1 (10–14), what Lotus uses on current networks.
pub fn post_proof_type(kind: PoStKind, seal: RegisteredSealProof) -> i64 {
    let size = seal.as_i64() % 5;
    match kind {
        PoStKind::Winning => size,
        PoStKind::Window => 10 + size,
    }
}

/// The sectors of a PoSt with their challenges, as Lotus's miner sends them to a worker.
pub fn post_challenges(sectors: &[PoStSector], challenges: &Challenges) -> Vec<PostSectorChallenge> {
    sectors
        .iter()
        .map(|s| PostSectorChallenge {
            seal_proof: s.seal_proof,
            sector_number: s.number,
            sealed_cid: Commitment::Sealed.to_cid(&s.comm_r),
            challenge: challenges.get(&s.number).cloned().unwrap_or_default(),
            update: s.update,
        })
        .collect()
}

/// Each sector's challenged leaves, by sector number.
pub type Challenges = BTreeMap<u64, Vec<u64>>;

/// The sectors and challenges of a PoSt call (the worker's side).
pub fn post_sectors(wire: &[PostSectorChallenge]) -> Result<(Vec<PoStSector>, Challenges), String> {
    let mut sectors = vec![];
    let mut challenges = BTreeMap::new();
    for c in wire {
        sectors.push(PoStSector {
            number: c.sector_number,
            seal_proof: c.seal_proof,
            comm_r: Commitment::Sealed.from_cid(&c.sealed_cid)?,
            update: c.update,
        });
        challenges.insert(c.sector_number, c.challenge.clone());
    }
    Ok((sectors, challenges))
}

fn proof_of(post_proof: i64, out: &PoStOutput) -> Result<PoStProof, String> {
    Ok(PoStProof { post_proof, proof_bytes: Bytes(out.proof_bytes()?) })
}

/// What a WindowPoSt worker answers: Lotus's result, and our details beside it.
pub fn window_result(post_proof: i64, miner: u64, out: PoStOutput) -> Result<WindowPoStResult, String> {
    Ok(WindowPoStResult {
        post_proofs: proof_of(post_proof, &out)?,
        skipped: out.skipped.iter().map(|s| SectorId { miner, number: s.number }).collect(),
        details: Some(PoStDetails {
            proven: out.proven,
            skipped_reasons: out.skipped,
            prover: out.prover,
            seconds: out.seconds,
        }),
    })
}

pub fn winning_result(post_proof: i64, out: PoStOutput) -> Result<Vec<PoStProof>, String> {
    Ok(vec![proof_of(post_proof, &out)?])
}

/// A WindowPoSt worker's answer as the miner uses it. A Lotus worker sends no details: the
/// proven sectors are the others, the prover is the host the miner called.
pub fn window_output(r: WindowPoStResult, sectors: &[PoStSector], host: &str, seconds: f64) -> PoStOutput {
    let proof = r.post_proofs.proof_bytes.to_base64();
    match r.details {
        Some(d) => {
            PoStOutput { proof, proven: d.proven, skipped: d.skipped_reasons, prover: d.prover, seconds: d.seconds }
        }
        None => {
            let skipped: Vec<u64> = r.skipped.iter().map(|s| s.number).collect();
            PoStOutput {
                proof,
                proven: sectors.iter().map(|s| s.number).filter(|n| !skipped.contains(n)).collect(),
                skipped: skipped
                    .into_iter()
                    .map(|number| SkippedSector { number, reason: "skipped by the worker".into() })
                    .collect(),
                prover: host.to_string(),
                seconds,
            }
        }
    }
}

pub fn winning_output(
    r: Vec<PoStProof>,
    sectors: &[PoStSector],
    host: &str,
    seconds: f64,
) -> Result<PoStOutput, String> {
    let p = r.into_iter().next().ok_or("the WinningPoSt worker returned no proof")?;
    Ok(PoStOutput {
        proof: p.proof_bytes.to_base64(),
        proven: sectors.iter().map(|s| s.number).collect(),
        skipped: vec![],
        prover: host.to_string(),
        seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn pieces_round_trip_with_padded_sizes() {
        let p = PieceInfo { commitment: [3; 32], size: UnpaddedBytesAmount(2032) };
        let w = piece_to_wire(&p);
        assert_eq!(w.size, 2048);
        let back = piece_from_wire(&w).unwrap();
        assert_eq!((back.commitment, back.size.0), ([3; 32], 2032));
        let bad = wire::PieceInfo { size: 2032, ..w };
        assert!(piece_from_wire(&bad).unwrap_err().contains("not a padded piece size"));
        let sealed = wire::PieceInfo { piece_cid: Commitment::Sealed.to_cid(&[3; 32]), ..w };
        assert!(piece_from_wire(&sealed).unwrap_err().contains("not a data (CommD/CommP) commitment"));
    }

    /// The PC1 output Lotus's worker sends: sorted keys at every level, the ticket added.
    #[test]
    fn pc1_output_as_lotus_marshals_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = sealing_proofs::Sealer::new(sealing_types::RegisteredSealProof::STACKED_DRG_2KIB_V1_1, 1000, 1)
            .with_backend(sealing_proofs::Backend::Mock);
        let paths = sealing_proofs::SectorPaths::in_dir(dir.path());
        let size = sealing_proofs::max_unpadded(sealing_types::SectorSize::KIB2);
        let piece = s.add_piece(std::io::repeat(0).take(size), size, &paths.unsealed).unwrap();
        let out = s.pre_commit1(&paths, [5; 32], &[piece]).unwrap();
        let b = pc1_to_wire(&out, &[5; 32]).unwrap();
        let text = std::str::from_utf8(&b.0).unwrap();
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(v[SEAL_RANDOMNESS_KEY], serde_json::json!(Bytes(vec![5; 32]).to_base64()));
        // Re-marshalling sorts keys: the bytes are what a sorted map gives.
        assert_eq!(text, serde_json::to_string(&v).unwrap());
        let back = pc1_from_wire(&b).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), serde_json::to_value(&out).unwrap());
    }

    /// A Lotus PoSt worker's answer has no details: the miner derives them.
    #[test]
    fn post_results_from_a_lotus_worker_and_from_ours() {
        let sectors: Vec<PoStSector> = (1..=3)
            .map(|n| PoStSector {
                number: n,
                seal_proof: sealing_types::RegisteredSealProof::STACKED_DRG_2KIB_V1_1,
                comm_r: [n as u8; 32],
                update: false,
            })
            .collect();
        let challenges: Challenges = (1..=3).map(|n| (n, vec![n * 10])).collect();
        let wire = post_challenges(&sectors, &challenges);
        assert_eq!(post_proof_type(PoStKind::Window, sectors[0].seal_proof), 10, "StackedDrgWindow2KiBV1_1");
        assert_eq!(post_proof_type(PoStKind::Winning, sectors[0].seal_proof), 0, "StackedDrgWinning2KiBV1");
        let (back, ch) = post_sectors(&wire).unwrap();
        assert_eq!((back, ch), (sectors.clone(), challenges.clone()));
        let lotus = WindowPoStResult {
            post_proofs: PoStProof { post_proof: 10, proof_bytes: Bytes(vec![1; 192]) },
            skipped: vec![SectorId { miner: 1000, number: 2 }],
            details: None,
        };
        let out = window_output(lotus, &sectors, "lotus-box", 1.5);
        assert_eq!(out.proven, [1, 3]);
        assert_eq!(out.skipped[0].number, 2);
        assert_eq!((out.prover.as_str(), out.seconds), ("lotus-box", 1.5));
        assert_eq!(out.proof_bytes().unwrap(), vec![1; 192]);
        let ours = window_result(10, 1000, out.clone()).unwrap();
        assert_eq!(ours.skipped, [SectorId { miner: 1000, number: 2 }]);
        let again = window_output(ours, &sectors, "elsewhere", 9.0);
        assert_eq!((again.prover, again.proven), (out.prover, out.proven), "our details win over the caller's guesses");
        // A snap-deal sector keeps its flag both ways (it is proven from its update files).
        let mut updated = sectors.clone();
        updated[0].update = true;
        let wire = post_challenges(&updated, &challenges);
        assert!(wire[0].update && !wire[1].update);
        assert_eq!(post_sectors(&wire).unwrap().0, updated);
    }
}
