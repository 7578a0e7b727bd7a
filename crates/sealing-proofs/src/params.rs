//! Groth16 parameters and verifying keys for small sectors, generated locally.
//!
//! DEVNET ONLY. The "toxic waste" comes from a fixed seed, so anyone can forge proofs against
//! these parameters. They let a private devnet seal and prove 2KiB and 8MiB sectors on a
//! machine that cannot download the real ones. The files get the same names as the official
//! ones (the names hash the circuit, not the keys), so never mix them with a mainnet cache.
//!
//! Generation goes through the storage-proofs crates' parameter cache: it writes a file only
//! when it is missing. It runs in the process that calls it, into the directory the proofs
//! library reads (`FIL_PROOFS_PARAMETER_CACHE`, read once per process).

use filecoin_proofs::constants::DefaultPieceHasher;
use filecoin_proofs::parameters::{public_params, window_post_public_params, winning_post_public_params};
use filecoin_proofs::{with_shape, PoRepConfig, PoStConfig, PoStType};
use filecoin_proofs_api::{RegisteredPoStProof, RegisteredSealProof};
use rand_chacha_03::ChaCha20Rng;
use rand_core_06::SeedableRng;
use sealing_types::SectorSize;
use std::path::PathBuf;
use storage_proofs_core::compound_proof::CompoundProof;
use storage_proofs_core::merkle::MerkleTreeTrait;
use storage_proofs_core::parameter_cache::CacheableParameters;
use storage_proofs_porep::stacked::{StackedCircuit, StackedCompound, StackedDrg};
use storage_proofs_post::fallback::{FallbackPoSt, FallbackPoStCircuit, FallbackPoStCompound};
use storage_proofs_update::constants::TreeRHasher;
use storage_proofs_update::{
    EmptySectorUpdate, EmptySectorUpdateCircuit, EmptySectorUpdateCompound, PublicParams as UpdatePublicParams,
};

/// Seed of the devnet parameters. Changing it invalidates every existing devnet cache.
const DEVNET_SEED: [u8; 32] = *b"lotus-rs devnet groth16 seed v1!";

#[derive(Debug, thiserror::Error)]
pub enum ParamsError {
    #[error("parameters for {0} sectors cannot be generated locally (only 2KiB and 8MiB); download them instead")]
    TooLarge(SectorSize),
    #[error("generating {what} parameters failed: {message}")]
    Generate { what: &'static str, message: String },
}

/// The circuits one sector size needs.
struct Circuits {
    seal: RegisteredSealProof,
    winning: RegisteredPoStProof,
    window: RegisteredPoStProof,
}

fn circuits(size: SectorSize) -> Result<Circuits, ParamsError> {
    use crate::post::{post_proof, PoStKind};
    let seal = match size {
        SectorSize::KIB2 => RegisteredSealProof::StackedDrg2KiBV1_1,
        SectorSize::MIB8 => RegisteredSealProof::StackedDrg8MiBV1_1,
        other => return Err(ParamsError::TooLarge(other)),
    };
    let post = |kind| post_proof(size, kind).ok_or(ParamsError::TooLarge(size));
    Ok(Circuits { seal, winning: post(PoStKind::Winning)?, window: post(PoStKind::Window)? })
}

/// A separate deterministic RNG per circuit, so each file is the same whatever else exists.
fn rng(tag: u8) -> ChaCha20Rng {
    let mut seed = DEVNET_SEED;
    seed[31] ^= tag;
    ChaCha20Rng::from_seed(seed)
}

fn porep<Tree: 'static + MerkleTreeTrait>(cfg: &PoRepConfig, rng: &mut ChaCha20Rng) -> anyhow::Result<()> {
    type C<T> = StackedCompound<T, DefaultPieceHasher>;
    let pp = public_params::<Tree>(cfg)?;
    let blank = <C<Tree> as CompoundProof<
        StackedDrg<'_, Tree, DefaultPieceHasher>,
        StackedCircuit<Tree, DefaultPieceHasher>,
    >>::blank_circuit(&pp);
    C::<Tree>::get_param_metadata(blank.clone(), &pp)?;
    C::<Tree>::get_groth_params(Some(&mut *rng), blank.clone(), &pp)?;
    C::<Tree>::get_verifying_key(Some(&mut *rng), blank, &pp)?;
    Ok(())
}

fn post<Tree: 'static + MerkleTreeTrait>(cfg: &PoStConfig, rng: &mut ChaCha20Rng) -> anyhow::Result<()> {
    let pp = match cfg.typ {
        PoStType::Winning => winning_post_public_params::<Tree>(cfg)?,
        PoStType::Window => window_post_public_params::<Tree>(cfg)?,
    };
    let blank =
        <FallbackPoStCompound<Tree> as CompoundProof<FallbackPoSt<'_, Tree>, FallbackPoStCircuit<Tree>>>::blank_circuit(
            &pp,
        );
    FallbackPoStCompound::<Tree>::get_param_metadata(blank.clone(), &pp)?;
    FallbackPoStCompound::<Tree>::get_groth_params(Some(&mut *rng), blank.clone(), &pp)?;
    FallbackPoStCompound::<Tree>::get_verifying_key(Some(&mut *rng), blank, &pp)?;
    Ok(())
}

/// The snap-deal update circuit (the one `filecoin-proofs` proves and verifies with; its
/// single-partition "poseidon" sibling is unused at these sizes).
fn update<Tree: 'static + MerkleTreeTrait<Hasher = TreeRHasher>>(
    cfg: &PoRepConfig,
    rng: &mut ChaCha20Rng,
) -> anyhow::Result<()> {
    type C<T> = EmptySectorUpdateCompound<T>;
    let pp = UpdatePublicParams::from_sector_size(u64::from(cfg.sector_size));
    // The update circuit is not `Clone`: a fresh blank one per call.
    let blank =
        || <C<Tree> as CompoundProof<EmptySectorUpdate<Tree>, EmptySectorUpdateCircuit<Tree>>>::blank_circuit(&pp);
    C::<Tree>::get_param_metadata(blank(), &pp)?;
    C::<Tree>::get_groth_params(Some(&mut *rng), blank(), &pp)?;
    C::<Tree>::get_verifying_key(Some(&mut *rng), blank(), &pp)?;
    Ok(())
}

/// The update circuit's parameter and verifying-key file names. Not
/// `RegisteredUpdateProof::cache_params_path`: that one names the PoRep circuit's files.
fn update_files<Tree: 'static + MerkleTreeTrait<Hasher = TreeRHasher>>(
    cfg: &PoRepConfig,
) -> anyhow::Result<[PathBuf; 2]> {
    use storage_proofs_core::parameter_cache::{parameter_cache_params_path, parameter_cache_verifying_key_path};
    let pp = UpdatePublicParams::from_sector_size(u64::from(cfg.sector_size));
    let id =
        <EmptySectorUpdateCompound<Tree> as CacheableParameters<EmptySectorUpdateCircuit<Tree>, _>>::cache_identifier(
            &pp,
        );
    Ok([parameter_cache_params_path(&id), parameter_cache_verifying_key_path(&id)])
}

/// One entry of the proofs library's parameter manifest (`parameters.json`, bundled in the
/// library): the published files, their IPFS CIDs and blake2b digests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestEntry {
    pub name: String,
    pub cid: String,
    /// Hex of the first 16 bytes of the file's blake2b-512 hash.
    pub digest: String,
    pub sector_size: u64,
}

/// The published parameter files for a sector size (PoRep, PoSt, SnapDeals update).
pub fn manifest(size: SectorSize) -> Vec<ManifestEntry> {
    storage_proofs_core::parameter_cache::PARAMETERS
        .iter()
        .filter(|(_, d)| d.sector_size == size.0)
        .map(|(name, d)| ManifestEntry {
            name: name.clone(),
            cid: d.cid.clone(),
            digest: d.digest.clone(),
            sector_size: d.sector_size,
        })
        .collect()
}

/// The files the proofs library will look for, for a sector size.
pub fn files(size: SectorSize) -> Result<Vec<PathBuf>, ParamsError> {
    let c = circuits(size)?;
    let err = |e: anyhow::Error| ParamsError::Generate { what: "file name", message: format!("{e:#}") };
    let update_cfg = crate::update_proof(size).as_v1_config();
    let [update_params, update_vk] = with_shape!(size.0, update_files, &update_cfg).map_err(err)?;
    Ok(vec![
        c.seal.cache_params_path().map_err(err)?,
        c.seal.cache_verifying_key_path().map_err(err)?,
        c.winning.cache_params_path().map_err(err)?,
        c.winning.cache_verifying_key_path().map_err(err)?,
        c.window.cache_params_path().map_err(err)?,
        c.window.cache_verifying_key_path().map_err(err)?,
        update_params,
        update_vk,
    ])
}

/// How long generating a circuit's parameters took on a 2-core machine (the proofs probe's
/// measurements, `shared/spec/proofs-probe`): what `fetch-params` tells an operator to expect.
/// More cores make it shorter; none is known for what was not measured.
pub fn measured(size: SectorSize, circuit: &str) -> Option<std::time::Duration> {
    let secs = match (size.0, circuit) {
        (s, POREP) if s == SectorSize::KIB2.0 => 677,
        (s, WINNING) if s == SectorSize::KIB2.0 => 30,
        (s, WINDOW) if s == SectorSize::KIB2.0 => 7,
        (s, UPDATE) if s == SectorSize::KIB2.0 => 397,
        (s, POREP) if s == SectorSize::MIB8.0 => 908,
        (s, WINNING) if s == SectorSize::MIB8.0 => 137,
        (s, WINDOW) if s == SectorSize::MIB8.0 => 38,
        _ => return None,
    };
    Some(std::time::Duration::from_secs(secs))
}

const POREP: &str = "PoRep (StackedDrg)";
const WINNING: &str = "WinningPoSt";
const WINDOW: &str = "WindowPoSt";
const UPDATE: &str = "snap-deal update (EmptySectorUpdate)";

/// Generate whatever is missing for `size` (PoRep, WinningPoSt, WindowPoSt, the snap-deal
/// update). `progress` is told each circuit's name before its (possibly long) generation
/// starts.
pub fn generate(size: SectorSize, progress: &dyn Fn(&str)) -> Result<(), ParamsError> {
    let c = circuits(size)?;
    let ss = size.0;
    let fail = |what: &'static str| move |e: anyhow::Error| ParamsError::Generate { what, message: format!("{e:#}") };
    progress(POREP);
    let porep_cfg = c.seal.as_v1_config();
    let mut r = rng(1);
    with_shape!(ss, porep, &porep_cfg, &mut r).map_err(fail("PoRep"))?;
    progress(WINNING);
    let win = c.winning.as_v1_config();
    let mut r = rng(2);
    with_shape!(ss, post, &win, &mut r).map_err(fail("WinningPoSt"))?;
    progress(WINDOW);
    let wdp = c.window.as_v1_config();
    let mut r = rng(3);
    with_shape!(ss, post, &wdp, &mut r).map_err(fail("WindowPoSt"))?;
    progress(UPDATE);
    let upd = crate::update_proof(size).as_v1_config();
    let mut r = rng(4);
    with_shape!(ss, update, &upd, &mut r).map_err(fail("snap-deal update"))?;
    Ok(())
}

/// Make sure the parameters for `size` are in `cache`; generate the missing ones otherwise.
///
/// Generation writes into `cache/.generating-<pid>` and moves each finished file into place,
/// so an interrupted run never leaves a truncated file the proofs library would later load.
/// Must be called before anything else in this process uses the proofs library (it points
/// `FIL_PROOFS_PARAMETER_CACHE` at the temporary directory), and before other threads start.
pub fn ensure(size: SectorSize, cache: &std::path::Path, progress: &dyn Fn(&str)) -> Result<Vec<PathBuf>, ParamsError> {
    let io = |what: &'static str| move |e: std::io::Error| ParamsError::Generate { what, message: e.to_string() };
    std::fs::create_dir_all(cache).map_err(io("creating the parameter cache"))?;
    let tmp = cache.join(format!(".generating-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(io("creating the parameter cache"))?;
    // SAFETY (set_var): documented precondition — no other thread runs yet.
    std::env::set_var("FIL_PROOFS_PARAMETER_CACHE", &tmp);
    let names: Vec<std::ffi::OsString> =
        files(size)?.iter().map(|p| p.file_name().expect("file name").to_owned()).collect();
    let finals: Vec<PathBuf> = names.iter().map(|n| cache.join(n)).collect();
    if finals.iter().all(|p| p.exists()) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Ok(finals);
    }
    // Reuse what is already complete.
    for n in &names {
        if cache.join(n).exists() {
            std::os::unix::fs::symlink(cache.join(n), tmp.join(n)).map_err(io("linking existing parameters"))?;
        }
    }
    generate(size, progress)?;
    for n in &names {
        let from = tmp.join(n);
        if !cache.join(n).exists() {
            std::fs::rename(&from, cache.join(n)).map_err(io("moving parameters into place"))?;
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(finals)
}
