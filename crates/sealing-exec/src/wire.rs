//! Between Lotus's wire encodings ([`lotus_api::wire`]) and the proofs library's types: the
//! one place a task's params and results change representation.
//!
//! PreCommit1 output is what Lotus's worker makes of filecoin-ffi's bytes (the library's
//! `SealPreCommitPhase1Output` as serde JSON, re-marshalled by Go with sorted keys and the
//! ticket added as `_lotus_SealRandomness`), so that a PC1 done by a Lotus worker can be
//! finished by ours and the other way round. Commit1 output is the library's serde JSON as
//! filecoin-ffi produces it.

use lotus_api::wire::{self, Bytes, Commitment};
use sealing_proofs::{PieceInfo, SealCommitPhase1Output, SealPreCommitPhase1Output, UnpaddedBytesAmount};

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
}
