//! Logging for both daemons: to stderr, the level from `RUST_LOG` (or `GOLOG_LOG_LEVEL`, as
//! Lotus operators set it), and changeable while running per log system (Lotus's `LogList`
//! and `LogSetLevel`, `lotus-miner log set-level --system sealing debug`).
//!
//! A log system is one of this project's crates (`miner`, `sealing_sched`, …): the names
//! `log list` prints. The filter is rebuilt from the start-up filter plus one directive per
//! system that was set, through tracing-subscriber's reload layer.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// The log systems, as `log list` shows them.
pub const SYSTEMS: &[&str] =
    &["lotus_api", "lotus_node", "miner", "sealing_exec", "sealing_proofs", "sealing_sched", "worker"];

/// The levels `log set-level` takes, as Lotus's.
pub const LEVELS: &[&str] = &["debug", "info", "warn", "error"];

struct State {
    base: String,
    set: BTreeMap<String, String>,
    handle: reload::Handle<EnvFilter, Registry>,
}

static STATE: OnceLock<Mutex<State>> = OnceLock::new();

/// Install the global subscriber (once; later calls do nothing).
pub fn init() {
    let base =
        std::env::var("RUST_LOG").or_else(|_| std::env::var("GOLOG_LOG_LEVEL")).unwrap_or_else(|_| "info".into());
    let (filter, handle) = reload::Layer::new(EnvFilter::new(&base));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if tracing_subscriber::registry().with(filter).with(fmt).try_init().is_ok() {
        let _ = STATE.set(Mutex::new(State { base, set: BTreeMap::new(), handle }));
    }
}

/// The proofs library's crates: their INFO lines narrate every step of a parameter generation.
const PROOF_LIBRARIES: &[&str] = &[
    "bellperson",
    "filecoin_hashers",
    "filecoin_proofs",
    "filecoin_proofs_api",
    "neptune",
    "storage_proofs_core",
    "storage_proofs_porep",
    "storage_proofs_post",
    "storage_proofs_update",
];

/// Show the proofs library's lines from WARN up only, unless `RUST_LOG` or `GOLOG_LOG_LEVEL`
/// chose the levels (`fetch-params`: twelve minutes of its INFO lines told an operator less
/// than one progress line).
pub fn quiet_proof_libraries() {
    if std::env::var_os("RUST_LOG").is_some() || std::env::var_os("GOLOG_LOG_LEVEL").is_some() {
        return;
    }
    let Some(state) = STATE.get() else { return };
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    let quiet: Vec<String> = PROOF_LIBRARIES.iter().map(|c| format!("{c}=warn")).collect();
    st.base = format!("{},{}", st.base, quiet.join(","));
    let _ = st.handle.reload(EnvFilter::new(filter_text(&st.base, &st.set)));
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LogError {
    #[error("unknown log system {0:?}: `log list` shows them ({list})", list = SYSTEMS.join(", "))]
    UnknownSystem(String),
    #[error("unknown log level {0:?}: one of debug, info, warn, error")]
    UnknownLevel(String),
    #[error("logging was not set up by this process")]
    NotInitialised,
}

/// Set one system's level from now on.
pub fn set_level(system: &str, level: &str) -> Result<(), LogError> {
    if !SYSTEMS.contains(&system) {
        return Err(LogError::UnknownSystem(system.into()));
    }
    let level = level.to_ascii_lowercase();
    if !LEVELS.contains(&level.as_str()) {
        return Err(LogError::UnknownLevel(level));
    }
    let state = STATE.get().ok_or(LogError::NotInitialised)?;
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    st.set.insert(system.into(), level);
    let _ = st.handle.reload(EnvFilter::new(filter_text(&st.base, &st.set)));
    Ok(())
}

/// The start-up filter, then each system's directive (later directives for the same target
/// win in an `EnvFilter`).
fn filter_text(base: &str, set: &BTreeMap<String, String>) -> String {
    let mut parts = vec![base.to_string()];
    parts.extend(set.iter().map(|(s, l)| format!("{s}={l}")));
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_systems_are_checked_and_compose_with_the_start_filter() {
        assert_eq!(set_level("nope", "debug"), Err(LogError::UnknownSystem("nope".into())));
        assert_eq!(set_level("miner", "loud"), Err(LogError::UnknownLevel("loud".into())));
        let set: BTreeMap<String, String> = [("miner".to_string(), "debug".to_string())].into();
        assert_eq!(filter_text("info", &set), "info,miner=debug");
        assert!(EnvFilter::try_new(filter_text("info,hyper=warn", &set)).is_ok());
    }
}
