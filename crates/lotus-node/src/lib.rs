//! Daemon plumbing shared by `lotus-miner` and `lotus-worker`: the repo directory (layout,
//! lock, keystore, token and api files), the miner's `config.toml`, the hardware probe, and
//! the daemon skeleton both serve their API with (`daemon`), logging with levels changeable
//! at run time (`logging`).
//!
//! All file and OS access of the two daemons' start-up lives here; the scheduler and the API
//! crate never touch the disk.

pub mod attach;
pub mod config;
pub mod daemon;
pub mod hw;
pub mod logging;
pub mod metrics;
pub mod params;
pub mod repo;

pub use config::MinerConfig;
pub use repo::{Repo, RepoError, RepoLock};
