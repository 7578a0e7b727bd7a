//! The Lotus-compatible API: JSON-RPC 2.0 on `/rpc/v0`, method names `Filecoin.<Name>` with
//! positional params (reference §6.1), JWT permissions (§6.2), `TOKEN:MULTIADDR` API info
//! strings, the wire shapes of every method, and a client.
//!
//! Only this crate knows JSON-RPC envelopes and method permissions. The daemons register
//! handlers; they never parse requests themselves.

pub mod apiinfo;
pub mod auth;
pub mod chain;
pub mod client;
pub mod contract;
pub mod methods;
pub mod rpc;
pub mod types;
pub mod wire;

pub use apiinfo::ApiInfo;
pub use auth::{Caller, JwtSecret, Permission, SharedToken};
pub use client::{ClientError, RpcClient};
pub use rpc::{RpcError, RpcServer};
