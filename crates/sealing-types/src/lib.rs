//! Domain types shared by every part of the sealing system.
//!
//! This crate is the bottom of the dependency graph: no I/O, no async, no clock. It holds the
//! words of the domain (task types, seal proofs, sector IDs, resource specs, what a worker
//! reports) and the default resource table of the original (reference §2).
//!
//! Types that travel unchanged over the Lotus-compatible API carry their Lotus JSON field names
//! (`MinMemory`, `Hostname`, ...); the API crate owns every other wire shape.

pub mod gpu;
pub mod ids;
pub mod proof;
pub mod resources;
pub mod size;
pub mod storage;
pub mod task;
pub mod worker;

pub use ids::{CallId, SchedId, SectorId, SectorRef, WorkerId};
pub use proof::{RegisteredSealProof, SectorSize};
pub use resources::{ResourceTable, Resources, Shortfall};
pub use storage::{FileType, FileTypes, PathType};
pub use task::{MockDurations, TaskType, WorkerType};
pub use worker::{WorkerInfo, WorkerResources};
