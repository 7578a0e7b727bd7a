//! Every API method and the permission it needs: the one place permissions are declared
//! (reference §6.2: worker-facing methods and everything that changes state need `admin`).

use crate::Permission;

/// Methods served by `lotus-miner` on `/rpc/v0`.
pub const MINER: &[(&str, Permission)] = crate::contract::miner::TABLE;

/// Methods served by `lotus-worker` on `/rpc/v0`. All need admin, as in Lotus.
pub const WORKER: &[(&str, Permission)] = crate::contract::worker::TABLE;

pub fn permission(table: &[(&str, Permission)], name: &str) -> Option<Permission> {
    table.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
}

/// API versions, encoded like Lotus (`major<<16 | minor<<8 | patch`).
pub const MINER_API_VERSION: u32 = (1 << 16) | (5 << 8);
pub const WORKER_API_VERSION: u32 = (1 << 16) | (7 << 8);

pub use crate::wire::version_string;
