//! `lotus-devnet`: the devnet full node (see the `lotus-devnet` crate).

fn main() {
    lotus_node::daemon::limit_malloc_arenas();
    if let Err(e) = lotus_devnet::cli::main() {
        eprintln!("ERROR: {e:#}");
        std::process::exit(1);
    }
}
