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

/// `storage detach` (miner and worker): the node stops using a path; its files stay.
#[derive(clap::Args, Debug)]
pub struct DetachArgs {
    #[arg(long)]
    pub really_do_it: bool,
    pub path: PathBuf,
}

impl DetachArgs {
    /// The path to send (`~` expanded), once the operator confirmed.
    pub fn checked(&self) -> anyhow::Result<String> {
        if !self.really_do_it {
            bail!("pass --really-do-it to execute the action");
        }
        Ok(repo::expand_home(&self.path).display().to_string())
    }
}

/// `storage redeclare` (miner and worker): declare a path's sectors to the index again.
#[derive(clap::Args, Debug)]
pub struct RedeclareArgs {
    /// storage path ID
    #[arg(long)]
    pub id: Option<uuid::Uuid>,
    /// redeclare all storage paths
    #[arg(long)]
    pub all: bool,
    /// Drop index entries with missing files
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub drop_missing: bool,
    pub path: Option<PathBuf>,
}

impl RedeclareArgs {
    /// `StorageRedeclareLocal`'s params: the path's ID (`None`: all) and `drop_missing`.
    pub fn params(&self) -> anyhow::Result<(Option<uuid::Uuid>, bool)> {
        match (&self.path, self.id, self.all) {
            (None, None, false) => bail!("You must specify a storage path, or --id, or --all"),
            (_, Some(_), true) => bail!("--id and --all can't be passed at the same time"),
            (Some(_), _, true) => bail!("No additional arguments are expected when --all is set"),
            (_, Some(id), false) => Ok((Some(id), self.drop_missing)),
            (None, None, true) => Ok((None, self.drop_missing)),
            (Some(p), None, false) => {
                let file = repo::expand_home(p).join("sectorstore.json");
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("{} is not a storage path: reading {}", p.display(), file.display()))?;
                let meta: sealing_exec::store::SectorStoreMeta = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a valid sectorstore.json", file.display()))?;
                Ok((Some(meta.id), self.drop_missing))
            }
        }
    }
}
