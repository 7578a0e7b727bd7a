//! `storage attach` on the miner and on workers: the flags, and the part that runs on the
//! machine holding the path (initialising its `sectorstore.json`).

use crate::repo;
use anyhow::{bail, Context};
use sealing_exec::store::init_storage_path;
use std::path::PathBuf;

/// `storage attach` (miner and worker).
#[derive(clap::Args, Debug)]
pub struct AttachArgs {
    /// Initialise the path first (write its sectorstore.json)
    #[arg(long)]
    pub init: bool,
    /// (for init) path weight: higher is preferred
    #[arg(long, default_value_t = 10)]
    pub weight: u64,
    /// (for init) use the path for sealing
    #[arg(long)]
    pub seal: bool,
    /// (for init) use the path for long-term storage
    #[arg(long)]
    pub store: bool,
    /// (for init) the most sector data the path may hold, e.g. 2TiB; 0 = no limit
    #[arg(long, default_value = "0")]
    pub max_storage: String,
    pub path: PathBuf,
}

/// Prepare a path for `storage attach` on this machine; returns its absolute path.
pub fn prepare_attach(a: &AttachArgs) -> anyhow::Result<PathBuf> {
    if a.init {
        if !a.seal && !a.store {
            bail!("--init needs --seal and/or --store: say what the path is for");
        }
        let max = sealing_types::size::parse_size(&a.max_storage).map_err(anyhow::Error::msg)?;
        let mut meta = init_storage_path(&a.path, a.weight, a.seal, a.store)?;
        if max > 0 {
            meta.max_storage = max;
            repo::write_atomic(&a.path.join("sectorstore.json"), &serde_json::to_vec_pretty(&meta)?, 0o644)?;
        }
    } else if !a.path.join("sectorstore.json").exists() {
        bail!(
            "{} has no sectorstore.json: add --init (with --seal and/or --store) to make it a storage path",
            a.path.display()
        );
    }
    std::fs::canonicalize(&a.path).with_context(|| format!("resolving {}", a.path.display()))
}
