//! The RPC client helpers the CLI's commands share: where the running miner listens, a client
//! for it, and errors that say what to do when it does not answer.

use anyhow::{Context, Result};
use lotus_api::{ApiInfo, ClientError, RpcClient};
use lotus_node::repo::Repo;
use std::time::Duration;

/// A client for the running miner: `MINER_API_INFO` (or the old `STORAGE_API_INFO`) if set,
/// else the repo's `api` and `token` files.
pub fn client(repo: &Repo) -> Result<RpcClient> {
    let (url, token) = endpoint(repo)?;
    Ok(RpcClient::new(url, Some(token), Duration::from_secs(30)))
}

/// The running miner's RPC URL and the token to use with it (see [`client`]).
pub fn endpoint(repo: &Repo) -> Result<(String, String)> {
    Ok(match api_info_from_env()? {
        Some(info) => (info.rpc_url(), info.token),
        None => {
            repo.require_initialised()?;
            let addr = repo.api_addr().map_err(|_| {
                anyhow::anyhow!(
                    "the miner at {} is not running ({} is missing); start it with `lotus-miner run`",
                    repo.path.display(),
                    repo.file("api").display()
                )
            })?;
            let info = ApiInfo::parse(&format!("{}:{addr}", repo.token()?))?;
            (info.rpc_url(), info.token)
        }
    })
}

fn api_info_from_env() -> Result<Option<ApiInfo>> {
    for var in ["MINER_API_INFO", "STORAGE_API_INFO"] {
        if let Ok(v) = std::env::var(var) {
            if !v.trim().is_empty() {
                return Ok(Some(ApiInfo::parse(&v).with_context(|| format!("in ${var}"))?));
            }
        }
    }
    Ok(None)
}

pub fn explain(e: ClientError) -> anyhow::Error {
    match e {
        ClientError::Unreachable { .. } | ClientError::Refused { .. } => {
            anyhow::anyhow!("{e}\nIs `lotus-miner run` running? If it runs elsewhere, set MINER_API_INFO.")
        }
        other => other.into(),
    }
}

/// `--json`: read commands print what the API returned, as JSON, instead of their human
/// rendering. Process-wide because it is set once from the command line before any command
/// runs, and every read command in every module consults it.
static JSON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn set_json(on: bool) {
    JSON.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// The global `--actor`: the miner actor the chain commands act on, instead of the one the
/// miner answers to ActorAddress.
static ACTOR: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

pub fn set_actor(actor: Option<String>) {
    let _ = ACTOR.set(actor);
}

pub fn actor() -> Option<&'static str> {
    ACTOR.get().and_then(|a| a.as_deref())
}

/// In `--json` mode print `v` (pretty JSON) and return true; else print nothing.
pub fn print_json<T: serde::Serialize + ?Sized>(v: &T) -> Result<bool> {
    if !JSON.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(false);
    }
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(true)
}
