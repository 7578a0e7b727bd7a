//! Shared set-up of the two binaries.

/// Logs to stderr; `RUST_LOG` (or `GOLOG_LOG_LEVEL`, as Lotus operators set it) picks the
/// level, and `log set-level` changes it while the daemon runs (see `lotus_node::logging`).
pub fn init_logging() {
    lotus_node::logging::init();
}
