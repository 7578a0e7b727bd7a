//! `lotus-miner`: the daemon (API, worker manager, scheduler host) and its CLI.

pub mod cli;
pub mod daemon;
pub mod manager;
pub mod render;

/// The version string this build reports.
pub const VERSION: &str = concat!("1.36.2+lotus-rs-", env!("CARGO_PKG_VERSION"));
