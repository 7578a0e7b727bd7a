//! The miner's sector index as the executor sees it (reference §5.4).

use futures_util::future::BoxFuture;
use lotus_api::types::{FsStat, SectorStorageInfo, StorageInfo};
use sealing_types::{FileTypes, SectorId};
use uuid::Uuid;

/// Errors are strings: they come from the miner, over RPC or not, and are shown to the operator.
pub type IndexResult<T> = Result<T, String>;

pub trait SectorIndex: Send + Sync {
    fn attach(&self, info: StorageInfo, stat: FsStat) -> BoxFuture<'_, IndexResult<()>>;
    fn report_health(&self, id: Uuid, stat: FsStat) -> BoxFuture<'_, IndexResult<()>>;
    fn declare(&self, id: Uuid, sector: SectorId, types: FileTypes, primary: bool) -> BoxFuture<'_, IndexResult<()>>;
    fn drop_sector(&self, id: Uuid, sector: SectorId, types: FileTypes) -> BoxFuture<'_, IndexResult<()>>;
    /// Where the sector's files of `types` are (no fetch candidates).
    fn find(&self, sector: SectorId, types: FileTypes) -> BoxFuture<'_, IndexResult<Vec<SectorStorageInfo>>>;
}

/// The index over the miner's JSON-RPC API, as a worker uses it.
pub struct RpcIndex(pub std::sync::Arc<lotus_api::RpcClient>);

impl SectorIndex for RpcIndex {
    fn attach(&self, info: StorageInfo, stat: FsStat) -> BoxFuture<'_, IndexResult<()>> {
        Box::pin(async move {
            self.0.call("StorageAttach", serde_json::json!([info, stat])).await.map_err(|e| e.to_string())
        })
    }
    fn report_health(&self, id: Uuid, stat: FsStat) -> BoxFuture<'_, IndexResult<()>> {
        Box::pin(async move {
            let report = serde_json::json!({ "Stat": stat, "Err": "" });
            self.0.call("StorageReportHealth", serde_json::json!([id, report])).await.map_err(|e| e.to_string())
        })
    }
    fn declare(&self, id: Uuid, sector: SectorId, types: FileTypes, primary: bool) -> BoxFuture<'_, IndexResult<()>> {
        Box::pin(async move {
            self.0
                .call("StorageDeclareSector", serde_json::json!([id, sector, types, primary]))
                .await
                .map_err(|e| e.to_string())
        })
    }
    fn drop_sector(&self, id: Uuid, sector: SectorId, types: FileTypes) -> BoxFuture<'_, IndexResult<()>> {
        Box::pin(async move {
            self.0.call("StorageDropSector", serde_json::json!([id, sector, types])).await.map_err(|e| e.to_string())
        })
    }
    fn find(&self, sector: SectorId, types: FileTypes) -> BoxFuture<'_, IndexResult<Vec<SectorStorageInfo>>> {
        Box::pin(async move {
            self.0
                .call("StorageFindSector", serde_json::json!([sector, types, 0, false]))
                .await
                .map_err(|e| e.to_string())
        })
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
}
