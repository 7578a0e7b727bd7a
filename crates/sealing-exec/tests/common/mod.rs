//! What the executor's integration tests share: a sector, an index that answers as our miner
//! or as Lotus's does, a source node serving `/remote` whose requests are recorded, and sector
//! files to move about.
#![allow(dead_code)] // each test binary uses its own part

use futures_util::future::BoxFuture;
use lotus_api::contract::miner as m;
use lotus_api::types::{CallError, FsStat, SectorStorageInfo, StorageInfo};
use lotus_api::Permission;
use sealing_exec::index::{IndexResult, SectorIndex};
use sealing_exec::remote::{router, RemoteState};
use sealing_exec::{LocalStore, Returner};
use sealing_types::{CallId, FileType, FileTypes, RegisteredSealProof, SectorId, SectorRef};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

pub const SECTOR: SectorRef =
    SectorRef { id: SectorId { miner: 1000, number: 7 }, proof_type: RegisteredSealProof::STACKED_DRG_2KIB_V1_1 };

/// An index that names holders per file type (a source node's path), answers a query for
/// several types with one entry per path (our miner names each type in a URL of its own;
/// with `lotus_urls`, as Lotus's miner, one URL per base whose type part names none), and
/// records the queries and what the node declares.
#[derive(Default)]
pub struct TestIndex {
    pub holders: Mutex<Vec<(FileType, SectorStorageInfo)>>,
    pub declared: Mutex<Vec<(Uuid, FileTypes)>>,
    pub finds: Mutex<Vec<FileTypes>>,
    pub lotus_urls: AtomicBool,
}

impl TestIndex {
    /// The path `id` served at `base` holds `types` of [`SECTOR`].
    pub fn holds(&self, id: Uuid, base: &str, types: &[FileType]) {
        for t in types {
            let holder = SectorStorageInfo {
                id,
                urls: vec![format!("{base}/{}/{}", t.name(), SECTOR.id.file_name())],
                base_urls: vec![base.to_string()],
                weight: 10,
                can_seal: true,
                can_store: true,
                primary: true,
                ..Default::default()
            };
            self.holders.lock().unwrap().push((*t, holder));
        }
    }
}

impl SectorIndex for TestIndex {
    fn attach(&self, _: StorageInfo, _: FsStat) -> BoxFuture<'_, IndexResult<()>> {
        Box::pin(async { Ok(()) })
    }
    fn report_health(&self, _: Uuid, _: FsStat) -> BoxFuture<'_, IndexResult<()>> {
        Box::pin(async { Ok(()) })
    }
    fn declare(&self, id: Uuid, _: SectorId, types: FileTypes, _: bool) -> BoxFuture<'_, IndexResult<()>> {
        self.declared.lock().unwrap().push((id, types));
        Box::pin(async { Ok(()) })
    }
    fn drop_sector(&self, _: Uuid, _: SectorId, _: FileTypes) -> BoxFuture<'_, IndexResult<()>> {
        Box::pin(async { Ok(()) })
    }
    fn find(&self, _: SectorId, types: FileTypes) -> BoxFuture<'_, IndexResult<Vec<SectorStorageInfo>>> {
        self.finds.lock().unwrap().push(types);
        let mut by_path: Vec<SectorStorageInfo> = vec![];
        for (_, h) in self.holders.lock().unwrap().iter().filter(|(t, _)| types.contains(*t)) {
            match by_path.iter_mut().find(|p| p.id == h.id) {
                Some(p) => p.urls.extend(h.urls.iter().cloned()),
                None => by_path.push(h.clone()),
            }
        }
        if self.lotus_urls.load(Ordering::Relaxed) && types.iter().count() > 1 {
            // Lotus joins `ft.String()` of the whole mask: "<unknown 6 [sealed cache]>".
            for p in &mut by_path {
                let name = SECTOR.id.file_name();
                p.urls = p.base_urls.iter().map(|b| format!("{b}/%3Cunknown%206%3E/{name}")).collect();
            }
        }
        Box::pin(async move { Ok(by_path) })
    }
    fn list(&self) -> BoxFuture<'_, IndexResult<BTreeMap<Uuid, Vec<m::Decl>>>> {
        Box::pin(async { Ok(BTreeMap::new()) })
    }
    fn detach(&self, _: Uuid, _: String) -> BoxFuture<'_, IndexResult<()>> {
        Box::pin(async { Ok(()) })
    }
}

pub struct Admin;
impl lotus_api::rpc::Authenticator for Admin {
    fn verify(&self, t: &str) -> BoxFuture<'_, Result<lotus_api::Caller, String>> {
        let ok = t == "test-token";
        Box::pin(async move {
            if ok {
                Ok(lotus_api::Caller::operator(Permission::Admin.with_lower()))
            } else {
                Err("bad token".into())
            }
        })
    }
}

pub struct NoReturns;
impl Returner for NoReturns {
    fn ret(&self, _: String, _: CallId, _: Result<serde_json::Value, CallError>) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// A node serving `/remote` from the storage path at `dir`, as a worker does: its base URL,
/// its path's ID, and the requests it has answered (`GET /remote/sealed/s-t01000-7`...). With
/// `no_bundles` it answers the bundle route as a Lotus node does (500).
pub async fn source(dir: &Path, no_bundles: bool) -> (String, Uuid, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/remote", listener.local_addr().unwrap());
    let store = Arc::new(LocalStore::new(base.clone()));
    let id = store.open_path(dir).unwrap().id();
    let seen = Arc::new(Mutex::new(vec![]));
    let log = seen.clone();
    let app = router(RemoteState {
        store,
        index: Arc::new(TestIndex::default()),
        auth: Arc::new(Admin),
        missing: "admin",
        backend: sealing_proofs::Backend::Mock,
    })
    .layer(axum::middleware::from_fn(move |req: axum::extract::Request, next: axum::middleware::Next| {
        let log = log.clone();
        async move {
            let line = format!("{} {}", req.method(), req.uri().path());
            log.lock().unwrap().push(line);
            if no_bundles && req.uri().path().starts_with("/remote/bundle/") {
                return axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
            next.run(req).await
        }
    }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, id, seen)
}

use axum::response::IntoResponse;

/// A sealed file and a cache of four files, larger than a 2KiB sector's space estimates (the
/// cache's allocation passes on a 64 KiB filesystem, its bytes do not fit) and within what a
/// transfer of them may carry ([`FileType::max_transfer`]).
pub fn write_sector_files(root: &Path) -> Vec<(String, Vec<u8>)> {
    let name = SECTOR.id.file_name();
    let sealed: Vec<u8> = (0..6 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::create_dir_all(root.join("sealed")).unwrap();
    std::fs::write(root.join("sealed").join(&name), &sealed).unwrap();
    let mut files = vec![(format!("sealed/{name}"), sealed)];
    let cache = root.join("cache").join(&name);
    std::fs::create_dir_all(&cache).unwrap();
    for k in 0..4 {
        let data = vec![k as u8 + 1; 20 * 1024];
        std::fs::write(cache.join(format!("layer-{k}.dat")), &data).unwrap();
        files.push((format!("cache/{name}/layer-{k}.dat"), data));
    }
    files
}

/// Each file whole under `root`, byte for byte.
pub fn assert_whole(root: &Path, files: &[(String, Vec<u8>)], whose: &str) {
    for (rel, data) in files {
        let got = std::fs::read(root.join(rel)).unwrap_or_else(|e| panic!("{whose}: {rel} is gone ({e})"));
        assert!(got == *data, "{whose}: {rel} is not whole ({} of {} bytes)", got.len(), data.len());
    }
}

pub fn init(dir: &Path, seal: bool, store: bool) {
    sealing_exec::store::init_storage_path(dir, 10, seal, store).unwrap();
}
