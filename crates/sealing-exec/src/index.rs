//! The miner's sector index as the executor sees it (reference §5.4).

use futures_util::future::BoxFuture;
use lotus_api::contract::miner as m;
use lotus_api::types::{CallError, FsStat, SectorStorageInfo, StorageInfo};
use sealing_types::{FileTypes, SectorId};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Why the index did not do what was asked, typed by what the caller should do about it. The
/// messages come from the miner, over RPC or not, and are shown to the operator.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// The miner could not be asked (unreachable, timed out, stopping), or its index is not
    /// ready for the call (a path not attached again yet after a miner restart): the same call
    /// can succeed later, so a task failing on it fails temporarily.
    #[error("{0}")]
    Unavailable(String),
    /// The call cannot work as made (a token the miner refuses, an answer this node cannot
    /// read: two releases that do not match): asking again will not help.
    #[error("{0}")]
    Refused(String),
}

impl IndexError {
    /// The task error for an index call that failed while a task ran (`doing` says what it
    /// was doing): temporary when the miner could not be asked.
    pub fn in_task(&self, doing: impl std::fmt::Display) -> CallError {
        let code = match self {
            IndexError::Unavailable(_) => CallError::TEMP_UNKNOWN,
            IndexError::Refused(_) => CallError::UNKNOWN,
        };
        CallError::new(code, format!("{doing}: {self}"))
    }
}

impl From<lotus_api::ClientError> for IndexError {
    fn from(e: lotus_api::ClientError) -> Self {
        use lotus_api::ClientError::*;
        match e {
            // The index's own refusals name state that changes (paths attach, sectors are
            // declared), so they are worth retrying.
            Unreachable { .. } | Refused { .. } | Timeout { .. } | Rpc { .. } => IndexError::Unavailable(e.to_string()),
            Http { status, .. } if status >= 500 => IndexError::Unavailable(e.to_string()),
            Unauthorized { .. } | Http { .. } | Decode { .. } | TooLarge { .. } => IndexError::Refused(e.to_string()),
        }
    }
}

pub type IndexResult<T> = Result<T, IndexError>;

pub trait SectorIndex: Send + Sync {
    fn attach(&self, info: StorageInfo, stat: FsStat) -> BoxFuture<'_, IndexResult<()>>;
    fn report_health(&self, id: Uuid, stat: FsStat) -> BoxFuture<'_, IndexResult<()>>;
    fn declare(&self, id: Uuid, sector: SectorId, types: FileTypes, primary: bool) -> BoxFuture<'_, IndexResult<()>>;
    fn drop_sector(&self, id: Uuid, sector: SectorId, types: FileTypes) -> BoxFuture<'_, IndexResult<()>>;
    /// Where the sector's files of `types` are (no fetch candidates).
    fn find(&self, sector: SectorId, types: FileTypes) -> BoxFuture<'_, IndexResult<Vec<SectorStorageInfo>>>;
    /// Every path's declared sector files.
    fn list(&self) -> BoxFuture<'_, IndexResult<BTreeMap<Uuid, Vec<m::Decl>>>>;
    /// This node (`url`) no longer serves the path.
    fn detach(&self, id: Uuid, url: String) -> BoxFuture<'_, IndexResult<()>>;
}

/// The index over the miner's JSON-RPC API, as a worker uses it.
pub struct RpcIndex(pub std::sync::Arc<lotus_api::RpcClient>);

impl SectorIndex for RpcIndex {
    fn attach(&self, info: StorageInfo, stat: FsStat) -> BoxFuture<'_, IndexResult<()>> {
        Box::pin(async move { self.0.request::<m::StorageAttach>((info, stat)).await.map_err(IndexError::from) })
    }
    fn report_health(&self, id: Uuid, stat: FsStat) -> BoxFuture<'_, IndexResult<()>> {
        Box::pin(async move {
            let report = m::HealthReport { stat, err: String::new() };
            self.0.request::<m::StorageReportHealth>((id, report)).await.map_err(IndexError::from)
        })
    }
    fn declare(&self, id: Uuid, sector: SectorId, types: FileTypes, primary: bool) -> BoxFuture<'_, IndexResult<()>> {
        Box::pin(async move {
            self.0.request::<m::StorageDeclareSector>((id, sector, types, primary)).await.map_err(IndexError::from)
        })
    }
    fn drop_sector(&self, id: Uuid, sector: SectorId, types: FileTypes) -> BoxFuture<'_, IndexResult<()>> {
        Box::pin(
            async move { self.0.request::<m::StorageDropSector>((id, sector, types)).await.map_err(IndexError::from) },
        )
    }
    fn find(&self, sector: SectorId, types: FileTypes) -> BoxFuture<'_, IndexResult<Vec<SectorStorageInfo>>> {
        Box::pin(async move {
            self.0.request::<m::StorageFindSector>((sector, types, 0, false)).await.map_err(IndexError::from)
        })
    }
    fn list(&self) -> BoxFuture<'_, IndexResult<BTreeMap<Uuid, Vec<m::Decl>>>> {
        Box::pin(async move { self.0.request::<m::StorageList>(()).await.map_err(IndexError::from) })
    }
    fn detach(&self, id: Uuid, url: String) -> BoxFuture<'_, IndexResult<()>> {
        Box::pin(async move { self.0.request::<m::StorageDetach>((id, url)).await.map_err(IndexError::from) })
    }
}

/// An index that records nothing and names the same holders for every sector: for tests and
/// benchmarks that need a node without a miner.
pub struct FixedIndex(pub Vec<SectorStorageInfo>);

impl SectorIndex for FixedIndex {
    fn attach(&self, _: StorageInfo, _: FsStat) -> BoxFuture<'_, IndexResult<()>> {
        Box::pin(async { Ok(()) })
    }
    fn report_health(&self, _: Uuid, _: FsStat) -> BoxFuture<'_, IndexResult<()>> {
        Box::pin(async { Ok(()) })
    }
    fn declare(&self, _: Uuid, _: SectorId, _: FileTypes, _: bool) -> BoxFuture<'_, IndexResult<()>> {
        Box::pin(async { Ok(()) })
    }
    fn drop_sector(&self, _: Uuid, _: SectorId, _: FileTypes) -> BoxFuture<'_, IndexResult<()>> {
        Box::pin(async { Ok(()) })
    }
    fn find(&self, _: SectorId, _: FileTypes) -> BoxFuture<'_, IndexResult<Vec<SectorStorageInfo>>> {
        let holders = self.0.clone();
        Box::pin(async move { Ok(holders) })
    }
    fn list(&self) -> BoxFuture<'_, IndexResult<BTreeMap<Uuid, Vec<m::Decl>>>> {
        Box::pin(async { Ok(BTreeMap::new()) })
    }
    fn detach(&self, _: Uuid, _: String) -> BoxFuture<'_, IndexResult<()>> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lotus_api::ClientError;

    /// What the caller does depends on the kind: a miner that cannot be asked makes a task
    /// fail temporarily (it is retried without counting), a refusal fails it.
    #[test]
    fn index_errors_are_typed_by_what_the_caller_must_do() {
        let url = || "http://miner/rpc/v0".to_string();
        let unavailable = [
            ClientError::Unreachable { url: url(), why: "reset".into() },
            ClientError::Refused { url: url(), why: "connection refused".into() },
            ClientError::Timeout { url: url(), secs: 5 },
            ClientError::Http { url: url(), status: 503, body: String::new() },
            ClientError::Rpc { method: "StorageDeclareSector".into(), code: 1, message: "path not attached".into() },
        ];
        for e in unavailable {
            let ie = IndexError::from(e);
            assert!(matches!(ie, IndexError::Unavailable(_)), "{ie:?}");
            assert!(ie.in_task("declaring").is_temporary());
        }
        let refused = [
            ClientError::Unauthorized { url: url(), body: String::new() },
            ClientError::Http { url: url(), status: 404, body: String::new() },
            ClientError::Decode { method: "StorageFindSector".into(), why: "bad".into() },
        ];
        for e in refused {
            let ie = IndexError::from(e);
            assert!(matches!(ie, IndexError::Refused(_)), "{ie:?}");
            let ce = ie.in_task("declaring sealed of s-t01000-1");
            assert!(!ce.is_temporary());
            assert!(ce.message.starts_with("declaring sealed of s-t01000-1: "), "{}", ce.message);
        }
    }
}
