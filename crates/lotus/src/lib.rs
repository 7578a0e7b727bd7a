//! Shared set-up of the two binaries.

/// Logs to stderr; `RUST_LOG` (or `GOLOG_LOG_LEVEL`, as Lotus operators set it) picks the level.
pub fn init_logging() {
    let filter =
        std::env::var("RUST_LOG").or_else(|_| std::env::var("GOLOG_LOG_LEVEL")).unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
