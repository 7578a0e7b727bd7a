//! `lotus-miner`: the daemon (API, worker manager, scheduler host) and its CLI.

pub mod alerts;
pub mod api;
pub mod backup;
pub mod batch;
pub mod calls;
pub mod chain;
pub mod cli;
pub mod daemon;
pub mod dashboard;
pub mod index;
pub mod jobs;
pub mod locks;
pub mod manager;
pub mod metrics;
pub mod numbers;
pub mod proving;
pub mod render;
pub mod sealing;
pub mod terminate;

/// What the API handlers reach.
pub mod daemon_ctx {
    use std::sync::Arc;

    #[derive(Clone)]
    pub struct Ctx {
        pub m: Arc<crate::manager::Manager>,
        pub sealing: Arc<crate::sealing::Sealing>,
        pub store: Arc<sealing_exec::LocalStore>,
        pub repo: lotus_node::repo::Repo,
        pub proving: Arc<crate::proving::Proving>,
        pub alerts: Arc<std::sync::Mutex<crate::alerts::Alerts>>,
    }
}

/// The version string this build reports.
pub const VERSION: &str = concat!("1.36.2+lotus-rs-", env!("CARGO_PKG_VERSION"));
