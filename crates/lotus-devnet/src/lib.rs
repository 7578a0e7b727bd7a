//! `lotus-devnet`: a single-machine Filecoin devnet node. It serves the subset of Lotus's
//! FullNode v1 JSON-RPC API that a storage miner calls (`/rpc/v1`, JWT auth, Lotus's shapes),
//! keeps its chain on disk, executes the miner's messages with the miner actor's rules and
//! verifies their proofs for real (or, started with `--mock-proofs`, only mock ones).
//!
//! No real network is reachable from the machines this project is built on, so the miner is
//! tested against this node through the same API it would use with a Lotus or Forest node.

pub mod cli;
pub mod node;
pub mod state;

pub use node::{Clock, Node, WallClock};
pub use state::{Params, State};
