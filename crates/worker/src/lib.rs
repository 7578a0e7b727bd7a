//! `lotus-worker`: the seal worker daemon and its CLI.

pub mod cli;
pub mod daemon;
pub mod tasks;

/// The version string this build reports.
pub const VERSION: &str = concat!("1.36.2+lotus-rs-", env!("CARGO_PKG_VERSION"));
