//! The mock proof backend: every sealing and PoSt step without proof work, for tests and
//! benchmarks whose subject is not the proof (restarts, aborts, full disks, scheduling at
//! scale). Lotus's integration tests run on the same idea (its mock sector builder).
//!
//! What stays real: the files. AddPiece writes the fr32-padded data, PreCommit1 writes a
//! sealed file of the sector's size and a cache directory, Finalize trims the cache, Unseal
//! rebuilds the unsealed file, a PoSt needs the sealed file and cache to be there. What is
//! faked: the commitments and proofs, which are SHA-256 digests of what the real ones commit
//! to. They have the real types and sizes (a 192-byte seal proof, 32-byte commitments, the
//! library's PreCommit1/Commit1 output types) and are deterministic, so a retried task gives
//! the same output. A mock proof never verifies under the real backend, and a real one never
//! under the mock backend: the chain accepts a backend's proofs only in that backend's mode.

use crate::update::{UpdatePaths, Updated};
use crate::{api, api_proof, max_unpadded, Commitment, PieceInfo, ProofError, SectorPaths};
use sealing_types::{RegisteredSealProof, SectorSize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

/// Which proofs a node computes and a chain accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Backend {
    /// The Filecoin proofs library: the default everywhere a user runs the project.
    #[default]
    Real,
    /// No proof work (`[Devnet] MockProofs`, `lotus-worker run --mock-proofs`).
    Mock,
}

impl Backend {
    pub fn is_mock(self) -> bool {
        self == Backend::Mock
    }
}

/// The cache files a real sector keeps after Finalize, and one it drops (a layer).
pub const KEPT_CACHE_FILES: [&str; 3] = ["p_aux", "t_aux", "sc-02-data-tree-r-last.dat"];
const LAYER_FILE: &str = "sc-02-data-layer-1.dat";

/// SHA-256 over a domain tag and parts, each length-prefixed (no two inputs collide by
/// concatenation).
pub fn digest(tag: &str, parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((tag.len() as u64).to_le_bytes());
    h.update(tag.as_bytes());
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// A commitment as the proofs library would accept it (a canonical field element: the top
/// two bits clear).
fn commitment(tag: &str, parts: &[&[u8]]) -> Commitment {
    let mut c = digest(tag, parts);
    c[31] &= 0x3f;
    c
}

/// `len` bytes expanded from a seed (a proof of the real size).
pub(crate) fn expand(seed: [u8; 32], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(&digest("expand", &[&seed, &i.to_le_bytes()]));
        i += 1;
    }
    out.truncate(len);
    out
}

pub(crate) fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ProofError + 'a {
    move |source| ProofError::Io { what, path: path.into(), source }
}

/// AddPiece: the fr32-padded data, as the library writes it; the piece commitment is a digest
/// of the data.
pub fn add_piece(data: impl Read, size: u64, unsealed: &Path) -> Result<PieceInfo, ProofError> {
    let mut f = File::create(unsealed).map_err(io("creating the unsealed file", unsealed))?;
    let mut hasher = Sha256::new();
    let mut tee = HashingReader { inner: data.take(size), hasher: &mut hasher };
    let mut padded = fr32::Fr32Reader::new(&mut tee);
    std::io::copy(&mut padded, &mut f).map_err(io("writing the unsealed file", unsealed))?;
    let data_digest: [u8; 32] = hasher.finalize().into();
    Ok(PieceInfo { commitment: commitment("piece", &[&data_digest]), size: api::UnpaddedBytesAmount(size) })
}

struct HashingReader<'a, R> {
    inner: R,
    hasher: &'a mut Sha256,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The CommD of a committed-capacity sector: one piece of zeros filling it.
/// Computed once per size: the chain asks at every activation, and a 32GiB one hashes 32 GB.
pub fn cc_comm_d(size: SectorSize) -> Commitment {
    static KNOWN: std::sync::Mutex<BTreeMap<u64, Commitment>> = std::sync::Mutex::new(BTreeMap::new());
    let mut known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    *known.entry(size.0).or_insert_with(|| {
        let mut hasher = Sha256::new();
        std::io::copy(&mut std::io::repeat(0).take(max_unpadded(size)), &mut hasher).expect("hashing zeros");
        let data_digest: [u8; 32] = hasher.finalize().into();
        commitment("piece", &[&data_digest])
    })
}

/// CommD of the pieces: one piece filling the sector is its own CommD, as with the library.
pub fn comm_d(size: SectorSize, pieces: &[PieceInfo]) -> Commitment {
    match pieces {
        [p] if p.size.0 == max_unpadded(size) => p.commitment,
        _ => {
            let parts: Vec<Vec<u8>> =
                pieces.iter().map(|p| [&p.commitment[..], &p.size.0.to_le_bytes()[..]].concat()).collect();
            let refs: Vec<&[u8]> = parts.iter().map(|p| &p[..]).collect();
            commitment("comm-d", &refs)
        }
    }
}

pub fn comm_r(prover_id: &[u8; 32], sector: u64, ticket: &[u8], comm_d: &Commitment) -> Commitment {
    commitment("comm-r", &[prover_id, &sector.to_le_bytes(), ticket, comm_d])
}

/// The library's label variant (and its vanilla-proof variant) for a sector size.
fn shape(size: SectorSize) -> &'static str {
    match size {
        SectorSize::KIB2 => "StackedDrg2KiBV1",
        SectorSize::MIB8 => "StackedDrg8MiBV1",
        SectorSize::MIB512 => "StackedDrg512MiBV1",
        SectorSize::GIB32 => "StackedDrg32GiBV1",
        _ => "StackedDrg64GiBV1",
    }
}

/// PreCommit1: the sealed file is a copy of the unsealed one (so Unseal can give the data
/// back), the cache holds the files a real sector's does; the output has the library's type,
/// with the ticket in its tree store's ID (PreCommit2 gets no ticket, and CommR depends on it).
pub fn pre_commit1(
    proof: RegisteredSealProof,
    paths: &SectorPaths,
    ticket: &[u8; 32],
    pieces: &[PieceInfo],
) -> Result<api::seal::SealPreCommitPhase1Output, ProofError> {
    std::fs::metadata(&paths.unsealed).map_err(io("reading the unsealed file", &paths.unsealed))?;
    std::fs::create_dir_all(&paths.cache).map_err(io("creating the cache directory", &paths.cache))?;
    std::fs::copy(&paths.unsealed, &paths.sealed).map_err(io("writing the sealed file", &paths.sealed))?;
    let size = proof.sector_size();
    let d = comm_d(size, pieces);
    let layer = paths.cache.join(LAYER_FILE);
    File::create(&layer).and_then(|f| f.set_len(size.0)).map_err(io("writing a layer", &layer))?;
    let out = serde_json::json!({
        "registered_proof": api_proof(proof),
        "labels": { shape(size): { "labels": [], "_h": null } },
        "config": { "path": paths.cache, "id": format!("{TICKET_PREFIX}{}", hex(ticket)), "size": null, "rows_to_discard": 0 },
        "comm_d": d,
    });
    serde_json::from_value(out).map_err(|e| ProofError::Library {
        phase: "PreCommit1",
        sector: 0,
        message: format!("mock output does not fit the library's type: {e}"),
    })
}

const TICKET_PREFIX: &str = "mock-ticket-";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// PreCommit2: CommR from the sector's identity, ticket and CommD; `p_aux`, `t_aux` and tree R
/// written into the cache.
pub fn pre_commit2(
    pc1: &api::seal::SealPreCommitPhase1Output,
    prover_id: &[u8; 32],
    sector: u64,
    paths: &SectorPaths,
) -> Result<api::seal::SealPreCommitPhase2Output, ProofError> {
    std::fs::metadata(&paths.sealed).map_err(io("reading the sealed file", &paths.sealed))?;
    let not_mock = || ProofError::Library {
        phase: "PreCommit2",
        sector,
        message: "the PreCommit1 output was not made by the mock backend (run every task of a sector with one backend)"
            .into(),
    };
    let hex_ticket = pc1.config.id.strip_prefix(TICKET_PREFIX).ok_or_else(not_mock)?;
    let ticket: Vec<u8> = (0..hex_ticket.len() / 2)
        .map(|i| u8::from_str_radix(&hex_ticket[2 * i..2 * i + 2], 16))
        .collect::<Result<_, _>>()
        .map_err(|_| not_mock())?;
    let r = comm_r(prover_id, sector, &ticket, &pc1.comm_d);
    for name in KEPT_CACHE_FILES {
        let p = paths.cache.join(name);
        File::create(&p).and_then(|mut f| f.write_all(&r)).map_err(io("writing the cache", &p))?;
    }
    Ok(api::seal::SealPreCommitPhase2Output { registered_proof: pc1.registered_proof, comm_r: r, comm_d: pc1.comm_d })
}

/// The CommR a mock PreCommit2 wrote into the cache (Commit1 and PoSt check it, as the real
/// ones check the trees against CommR).
pub fn stored_comm_r(cache: &Path) -> Result<Commitment, ProofError> {
    let p = cache.join("p_aux");
    let bytes = std::fs::read(&p).map_err(io("reading p_aux", &p))?;
    bytes.try_into().map_err(|_| ProofError::Library {
        phase: "PoSt",
        sector: 0,
        message: format!("{} is not a mock p_aux (32 bytes)", p.display()),
    })
}

/// Commit1: the library's output type with no vanilla proofs in it.
pub fn commit1(
    proof: RegisteredSealProof,
    paths: &SectorPaths,
    ticket: [u8; 32],
    seed: [u8; 32],
    comm_r: Commitment,
    comm_d: Commitment,
) -> Result<api::seal::SealCommitPhase1Output, ProofError> {
    std::fs::metadata(&paths.sealed).map_err(io("reading the sealed file", &paths.sealed))?;
    let stored = stored_comm_r(&paths.cache)?;
    if stored != comm_r {
        return Err(ProofError::Library {
            phase: "Commit1",
            sector: 0,
            message: "the cache was sealed for another CommR".into(),
        });
    }
    let vanilla: api::seal::VanillaSealProof =
        serde_json::from_value(serde_json::json!({ shape(proof.sector_size()): [] }))
            .map_err(|e| ProofError::Library { phase: "Commit1", sector: 0, message: e.to_string() })?;
    Ok(api::seal::SealCommitPhase1Output {
        registered_proof: api_proof(proof),
        vanilla_proofs: vanilla,
        comm_r,
        comm_d,
        replica_id: Default::default(),
        seed,
        ticket,
    })
}

/// The 192-byte seal proof: a digest of everything a real one binds.
pub fn seal_proof(
    prover_id: &[u8; 32],
    sector: u64,
    comm_r: &Commitment,
    comm_d: &Commitment,
    ticket: &[u8; 32],
    seed: &[u8; 32],
) -> Vec<u8> {
    expand(digest("seal", &[prover_id, &sector.to_le_bytes(), comm_r, comm_d, ticket, seed]), 192)
}

/// A test's injected fault: `var` names a file; the first mock task to find it removes it
/// and misbehaves (a faulty GPU's invalid proof), every later one is sound. The removal makes
/// it happen once across processes.
pub fn take_fault(var: &str) -> bool {
    std::env::var_os(var).is_some_and(|p| std::fs::remove_file(p).is_ok())
}

/// Finalize: drop what sealing alone needs, keep what proving reads.
pub fn finalize(cache: &Path) -> Result<(), ProofError> {
    let entries = std::fs::read_dir(cache).map_err(io("reading the cache directory", cache))?;
    for e in entries.flatten() {
        let name = e.file_name();
        if !KEPT_CACHE_FILES.iter().any(|k| name == *k) && name != SECTOR_KEY_FILE {
            std::fs::remove_file(e.path()).map_err(io("trimming the cache", cache))?;
        }
    }
    Ok(())
}

/// Unseal: the data back from the sealed copy, streamed into `out` 1 MiB of padded bytes at a
/// time (8,192 whole 128-byte Fr32 blocks, each unpadded on its own).
pub fn unseal_into(size: SectorSize, sealed: &Path, mut out: impl Write) -> Result<(), ProofError> {
    let mut f = std::fs::File::open(sealed).map_err(io("opening the sealed file", sealed))?;
    let mut left = max_unpadded(size) as usize;
    let mut buf = vec![0u8; 128 * 8192];
    while left > 0 {
        let mut filled = 0;
        while filled < buf.len() {
            match f.read(&mut buf[filled..]).map_err(io("reading the sealed file", sealed))? {
                0 => break,
                k => filled += k,
            }
        }
        if filled == 0 {
            return Err(io("reading the sealed file", sealed)(std::io::ErrorKind::UnexpectedEof.into()));
        }
        let n = left.min(filled / 128 * 127);
        let chunk = crate::unpad(&buf[..filled], n).map_err(io("unpadding the sealed file", sealed))?;
        out.write_all(&chunk).map_err(io("writing the unsealed data", sealed))?;
        left -= n;
    }
    Ok(())
}

/// PoSt challenges: one leaf per sector, from the randomness.
pub fn challenges(randomness: &[u8; 32], sectors: &[u64]) -> BTreeMap<u64, Vec<u64>> {
    sectors
        .iter()
        .map(|&s| {
            let d = digest("challenge", &[randomness, &s.to_le_bytes()]);
            (s, vec![u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))])
        })
        .collect()
}

/// WinningPoSt: the challenged sector indices.
pub fn winning_indices(randomness: &[u8; 32], set_len: u64) -> Vec<u64> {
    let d = digest("winning", &[randomness]);
    vec![u64::from_le_bytes(d[..8].try_into().expect("8 bytes")) % set_len.max(1)]
}

fn vanilla_of(sector: u64, comm_r: &Commitment, challenges: &[u64]) -> Vec<u8> {
    let ch: Vec<u8> = challenges.iter().flat_map(|c| c.to_le_bytes()).collect();
    digest("vanilla", &[&sector.to_le_bytes(), comm_r, &ch]).to_vec()
}

/// A sector's vanilla proof: it needs the sealed file of the sector's size and the cache the
/// sector was sealed into (a missing or damaged sector is faulty, as with the library).
pub fn vanilla(
    size: SectorSize,
    sector: u64,
    comm_r: Commitment,
    sealed: &Path,
    cache: &Path,
    challenges: &[u64],
) -> Result<Vec<u8>, ProofError> {
    let len = std::fs::metadata(sealed).map_err(io("sealed file", sealed))?.len();
    if len != size.0 {
        return Err(ProofError::Library {
            phase: "PoSt",
            sector,
            message: format!("sealed file {} has {len} bytes, not {}", sealed.display(), size.0),
        });
    }
    if stored_comm_r(cache)? != comm_r {
        return Err(ProofError::Library { phase: "PoSt", sector, message: "the cache holds another CommR".into() });
    }
    Ok(vanilla_of(sector, &comm_r, challenges))
}

/// The PoSt SNARK over (sector, vanilla proof) pairs, in the order given.
pub fn snark(prover_id: &[u8; 32], randomness: &[u8; 32], vanilla: &[&(u64, Vec<u8>)]) -> Vec<u8> {
    let mut parts: Vec<Vec<u8>> = vec![prover_id.to_vec(), randomness.to_vec()];
    for (n, v) in vanilla {
        parts.push(n.to_le_bytes().to_vec());
        parts.push(v.clone());
    }
    let refs: Vec<&[u8]> = parts.iter().map(|p| &p[..]).collect();
    expand(digest("post", &refs), 192)
}

/// Verify a mock PoSt over exactly these sectors (number → CommR); a WinningPoSt repeats its
/// challenged sector once per index, as the real one does.
pub fn verify_post(
    prover_id: &[u8; 32],
    randomness: &[u8; 32],
    sectors: &BTreeMap<u64, Commitment>,
    winning: Option<usize>,
    proof: &[u8],
) -> bool {
    let numbers: Vec<u64> = sectors.keys().copied().collect();
    let ch = challenges(randomness, &numbers);
    let mut pairs: Vec<(u64, Vec<u8>)> = sectors.iter().map(|(n, r)| (*n, vanilla_of(*n, r, &ch[n]))).collect();
    if let Some(times) = winning {
        pairs = pairs.iter().cycle().take(times * pairs.len()).cloned().collect();
    }
    let refs: Vec<&(u64, Vec<u8>)> = pairs.iter().collect();
    snark(prover_id, randomness, &refs) == proof
}

/// Where a mock update keeps the old CommR (the real update cache's `p_aux` keeps the old
/// CommC, from which the library rebuilds it).
const SECTOR_KEY_FILE: &str = "mock-sector-key";

fn xor_files(a: &Path, b: &Path, out: &Path, len: usize) -> Result<(), ProofError> {
    let (a, mut b) = (
        std::fs::read(a).map_err(io("reading a replica", a))?,
        std::fs::read(b).map_err(io("reading the unsealed file", b))?,
    );
    b.resize(len, 0);
    let x: Vec<u8> = a.iter().zip(&b).map(|(x, y)| x ^ y).collect();
    std::fs::write(out, x).map_err(io("writing a replica", out))
}

/// ReplicaUpdate: the update is the sector key XOR the new data (so the key comes back from
/// the update and the data, as with the library's encoding); the update cache holds the new
/// CommR as the real one holds its trees.
pub fn replica_update(size: SectorSize, paths: &UpdatePaths, pieces: &[PieceInfo]) -> Result<Updated, ProofError> {
    let comm_r_old = stored_comm_r(&paths.cache)?;
    let comm_d_new = comm_d(size, pieces);
    let comm_r_new = commitment("comm-r-update", &[&comm_r_old, &comm_d_new]);
    xor_files(&paths.sealed, &paths.unsealed, &paths.update, size.0 as usize)?;
    for name in KEPT_CACHE_FILES {
        let p = paths.update_cache.join(name);
        std::fs::write(&p, comm_r_new).map_err(io("writing the update cache", &p))?;
    }
    let key = paths.update_cache.join(SECTOR_KEY_FILE);
    std::fs::write(&key, comm_r_old).map_err(io("writing the update cache", &key))?;
    Ok(Updated { comm_r_new, comm_d_new })
}

fn update_vanilla(comm_r_old: Commitment, new: Updated) -> Vec<u8> {
    digest("update-vanilla", &[&comm_r_old, &new.comm_r_new, &new.comm_d_new]).to_vec()
}

/// ProveReplicaUpdate1: needs both replicas and caches, bound to the commitments.
pub fn prove_replica_update1(
    paths: &UpdatePaths,
    comm_r_old: Commitment,
    new: Updated,
) -> Result<Vec<Vec<u8>>, ProofError> {
    for f in [&paths.sealed, &paths.update] {
        std::fs::metadata(f).map_err(io("reading a replica", f))?;
    }
    if stored_comm_r(&paths.cache)? != comm_r_old || stored_comm_r(&paths.update_cache)? != new.comm_r_new {
        return Err(ProofError::Library {
            phase: "ProveReplicaUpdate1",
            sector: 0,
            message: "the caches hold other commitments than the ones given".into(),
        });
    }
    Ok(vec![update_vanilla(comm_r_old, new)])
}

pub fn prove_replica_update2(comm_r_old: Commitment, new: Updated, vanilla: &[Vec<u8>]) -> Result<Vec<u8>, String> {
    if vanilla != [update_vanilla(comm_r_old, new)] {
        return Err("the vanilla proofs are not of these commitments".into());
    }
    Ok(update_proof(comm_r_old, new))
}

/// The 192-byte update proof.
pub fn update_proof(comm_r_old: Commitment, new: Updated) -> Vec<u8> {
    expand(digest("update-proof", &[&comm_r_old, &new.comm_r_new, &new.comm_d_new]), 192)
}

/// GenerateSectorKeyFromData: the key back as the update XOR the data.
/// DecodeFrom: the data back, the update XOR the sector key.
pub fn decode_update(paths: &UpdatePaths) -> Result<(), ProofError> {
    let len = std::fs::metadata(&paths.update).map_err(io("reading the update file", &paths.update))?.len();
    xor_files(&paths.update, &paths.sealed, &paths.unsealed, len as usize)
}

pub fn generate_sector_key(paths: &UpdatePaths) -> Result<(), ProofError> {
    let len = std::fs::metadata(&paths.update).map_err(io("reading the update file", &paths.update))?.len();
    xor_files(&paths.update, &paths.unsealed, &paths.sealed, len as usize)?;
    let key = paths.update_cache.join(SECTOR_KEY_FILE);
    let comm_r_old = std::fs::read(&key).map_err(io("reading the update cache", &key))?;
    for name in KEPT_CACHE_FILES {
        let p = paths.cache.join(name);
        std::fs::write(&p, &comm_r_old).map_err(io("writing the cache", &p))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{post::PoStKind, post::Prover, Sealer};

    /// A whole mock seal, through the same `Sealer` calls as the real one: outputs have the
    /// library's types and survive JSON, the proof has the real size and verifies under the
    /// mock backend only, the data comes back through Unseal, and a PoSt needs the files.
    #[test]
    fn a_mock_sector_seals_unseals_and_proves_without_proof_work() {
        let dir = tempfile::tempdir().unwrap();
        let paths = SectorPaths::in_dir(dir.path());
        let s = Sealer::new(RegisteredSealProof::STACKED_DRG_2KIB_V1_1, 1000, 4).with_backend(Backend::Mock);
        let size = max_unpadded(SectorSize::KIB2);
        let data: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
        let piece = s.add_piece(&data[..], size, &paths.unsealed).unwrap();
        assert_eq!(std::fs::metadata(&paths.unsealed).unwrap().len(), 2048, "fr32-padded like the library's");
        let ticket = [7u8; 32];
        let pc1 = s.pre_commit1(&paths, ticket, std::slice::from_ref(&piece)).unwrap();
        let pc1: api::seal::SealPreCommitPhase1Output =
            serde_json::from_str(&serde_json::to_string(&pc1).unwrap()).unwrap();
        assert_eq!(pc1.comm_d, s.comm_d(std::slice::from_ref(&piece)).unwrap());
        let pc2 = s.pre_commit2(pc1, &paths).unwrap();
        let (comm_r, comm_d) = (pc2.comm_r, pc2.comm_d);
        let c1 = s.commit1(&paths, ticket, [9; 32], pc2, std::slice::from_ref(&piece)).unwrap();
        let c1: api::seal::SealCommitPhase1Output = serde_json::from_str(&serde_json::to_string(&c1).unwrap()).unwrap();
        let proof = s.commit2(c1).unwrap();
        assert_eq!(proof.len(), 192);
        assert_eq!(proof, s.commit2(s.commit1(&paths, ticket, [9; 32], pc2_of(comm_r, comm_d), &[]).unwrap()).unwrap());
        assert!(s.verify(comm_r, comm_d, ticket, [9; 32], &proof).unwrap());
        assert!(!s.verify(comm_r, comm_d, ticket, [8; 32], &proof).unwrap(), "another seed");
        let real = Sealer::new(RegisteredSealProof::STACKED_DRG_2KIB_V1_1, 1000, 4);
        assert!(!real.verify(comm_r, comm_d, ticket, [9; 32], &proof).unwrap_or(false), "real backend refuses it");

        s.finalize(&paths.cache).unwrap();
        assert!(!paths.cache.join(LAYER_FILE).exists() && paths.cache.join("p_aux").exists());
        assert_eq!(s.unseal(&paths, ticket, comm_d).unwrap(), data);

        let w = Prover::new(PoStKind::Window, SectorSize::KIB2, 1000, [3; 32]).unwrap().with_backend(Backend::Mock);
        let ch = w.challenges(&[4]).unwrap();
        let v = w.vanilla(4, comm_r, &paths.sealed, &paths.cache, &ch[&4]).unwrap();
        let post = w.snark(&[(4, v)]).unwrap();
        assert!(w.verify(&post, &BTreeMap::from([(4, comm_r)])).unwrap());
        assert!(!w.verify(&post, &BTreeMap::from([(4, [1; 32])])).unwrap(), "bound to CommR");
        std::fs::remove_file(&paths.sealed).unwrap();
        let e = w.vanilla(4, comm_r, &paths.sealed, &paths.cache, &ch[&4]).unwrap_err().to_string();
        assert!(e.contains("sealed file"), "{e}");
    }

    fn pc2_of(comm_r: Commitment, comm_d: Commitment) -> api::seal::SealPreCommitPhase2Output {
        api::seal::SealPreCommitPhase2Output {
            registered_proof: api_proof(RegisteredSealProof::STACKED_DRG_2KIB_V1_1),
            comm_r,
            comm_d,
        }
    }
}
