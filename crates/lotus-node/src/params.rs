//! `lotus-miner fetch-params` / `lotus-worker fetch-params`: make sure the proof parameters for
//! a sector size are in the parameter cache.

use sealing_types::SectorSize;
use std::path::PathBuf;

/// `FIL_PROOFS_PARAMETER_CACHE`, or the proofs library's default.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("FIL_PROOFS_PARAMETER_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/filecoin-proof-parameters"))
}

/// Generate (2KiB, 8MiB; devnet only) whatever is missing and print the files. Call it before
/// any other thread starts: see `sealing_proofs::params::ensure`.
pub fn fetch(size: &str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let size: SectorSize = size.parse()?;
    let cache = cache_dir();
    let start = std::time::Instant::now();
    let files = sealing_proofs::params::ensure(size, &cache, &|what| {
        eprintln!("generating {what} parameters for {size} sectors (devnet only; this takes minutes)...")
    })?;
    for f in files {
        println!("{}", f.display());
    }
    eprintln!("parameters for {size} sectors ready in {} ({:.0} s)", cache.display(), start.elapsed().as_secs_f64());
    Ok(())
}
