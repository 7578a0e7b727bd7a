//! `lotus-worker` (also installed as `lotus-seal-worker`, its old name).

fn main() {
    lotus::init_logging();
    if let Err(e) = worker::cli::main() {
        eprintln!("ERROR: {e:#}");
        std::process::exit(1);
    }
}
