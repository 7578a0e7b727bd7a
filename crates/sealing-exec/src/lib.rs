//! The task executor shared by `lotus-worker` and the miner's built-in worker.
//!
//! - [`store`]: the node's local storage paths (`sectorstore.json`), sector file locations,
//!   free space, allocation;
//! - [`remote`]: the `/remote` HTTP endpoints that serve sector files to the cluster, and the
//!   client that fetches them (streamed, into `fetching/`, then renamed);
//! - [`exec`]: runs a task call: acquires the sector's files (fetching what is elsewhere), runs
//!   the proof work in a child process, declares the new files, and returns the result
//!   through a [`exec::Returner`];
//! - [`child`]: the child process's side (`<binary> proof-task`, JSON on stdin and stdout);
//! - [`gpu`]: which cards each GPU task's proof process sees;
//! - [`post`]: WindowPoSt / WinningPoSt on this node: vanilla proofs read where the sectors
//!   are (`/remote/vanilla/single`), the SNARK in a proof process, unreadable sectors skipped;
//! - [`push`]: AddPiece data pushed to this node (Lotus's `/rpc/streams/v0/push`);
//! - [`wire`]: task params and results between Lotus's encodings and the proofs library's types.
//!
//! The miner's sector index is reached through the [`index::SectorIndex`] trait: over RPC
//! from a worker, directly inside the miner.

pub mod child;
pub mod exec;
pub mod gpu;
pub mod index;
mod meta;
pub mod metrics;
pub mod post;
pub mod push;
pub mod remote;
pub mod store;
pub mod wire;

pub use exec::{Executor, PathError, Returner, TaskCall};
pub use index::{FixedIndex, IndexError, SectorIndex};
/// Real proofs or the mock backend (tests and benchmarks whose subject is not the proof).
pub use sealing_proofs::Backend;
pub use store::LocalStore;
