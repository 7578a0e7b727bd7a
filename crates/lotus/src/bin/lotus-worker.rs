//! `lotus-worker` (also installed as `lotus-seal-worker`, its old name).

fn main() {
    lotus_node::daemon::limit_malloc_arenas();
    // A proof process started by this binary's executor: no logging to stdout, one job.
    if std::env::args().nth(1).as_deref() == Some(sealing_exec::child::SUBCOMMAND) {
        sealing_exec::child::main();
    }
    lotus::init_logging();
    if let Err(e) = worker::cli::main() {
        eprintln!("ERROR: {e:#}");
        std::process::exit(1);
    }
}
