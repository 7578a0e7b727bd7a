//! `lotus-miner` (also installed as `lotus-storage-miner`, its old name).

fn main() {
    lotus::init_logging();
    if let Err(e) = miner::cli::main() {
        eprintln!("ERROR: {e:#}");
        std::process::exit(1);
    }
}
