//! A sector's file types fetched from another node in one round trip: one `StorageFindSector`
//! for all of them and one `GET /remote/bundle/<sector>?types=...` when one node holds them
//! all, and the type-by-type fetch Lotus does when the miner's answer cannot say which path
//! holds which type (a Lotus miner), the types are spread over nodes, or the node has no
//! bundle route (a Lotus worker). In each case the files land whole and, in move mode, the
//! source's copies are removed.

mod common;

use common::*;
use sealing_exec::remote::Fetcher;
use sealing_exec::{Executor, LocalStore};
use sealing_types::{FileType, FileTypes, PathType};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

const BOTH: [FileType; 2] = [FileType::Sealed, FileType::Cache];

/// What one acquisition of both types in move mode cost: the index's queries and each
/// source's requests, in order.
struct Cost {
    finds: Vec<String>,
    requests: Vec<Vec<String>>,
}

/// Both types of the sector, held by one source or (with `split`) the sealed file on one and
/// the cache on another, acquired here in move mode.
async fn acquire_both(no_bundles: bool, lotus_urls: bool, split: bool) -> Cost {
    let srcs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let index = Arc::new(TestIndex::default());
    index.lotus_urls.store(lotus_urls, Ordering::Relaxed);
    let mut files = vec![];
    let mut logs: Vec<Arc<Mutex<Vec<String>>>> = vec![];
    for (k, dir) in srcs.iter().enumerate() {
        init(dir.path(), true, true);
        let held = write_sector_files(dir.path());
        let (base, id, log) = source(dir.path(), no_bundles).await;
        let types: &[FileType] = match (split, k) {
            (false, 0) => &BOTH,
            (false, _) => &[],
            (true, 0) => &BOTH[..1],
            (true, _) => &BOTH[1..],
        };
        index.holds(id, &base, types);
        // What this source serves; the rest of its files the index does not know of.
        let served =
            held.into_iter().filter(|(rel, _)| types.iter().any(|t| rel.starts_with(&format!("{}/", t.name()))));
        files.extend(served.map(|(rel, data)| (k, rel, data)));
        logs.push(log);
    }
    let here_dir = tempfile::tempdir().unwrap();
    init(here_dir.path(), true, true);
    let here = Arc::new(LocalStore::new(String::new()));
    let here_id = here.open_path(here_dir.path()).unwrap().id();
    let exec =
        Executor::new(here, index.clone(), Fetcher::new("test-token".to_string(), 2), Arc::new(NoReturns)).unwrap();

    let got = exec.acquire(SECTOR, FileTypes::of(&BOTH), PathType::Sealing, true).await.expect("both types arrive");
    assert_eq!(got.len(), 2, "{got:?}");
    let copies: Vec<_> = files.iter().map(|(_, rel, data)| (rel.clone(), data.clone())).collect();
    assert_whole(here_dir.path(), &copies, "the copy");
    for (k, rel, _) in &files {
        assert!(!srcs[*k].path().join(rel).exists(), "moved: {rel} is removed from source {k}");
    }
    let declared: Vec<_> = index.declared.lock().unwrap().clone();
    assert!(declared.iter().all(|(id, _)| *id == here_id), "{declared:?}");
    let mut all = FileTypes::NONE;
    for (_, t) in &declared {
        all.0 |= t.0;
    }
    assert_eq!(all, FileTypes::of(&BOTH), "both declared here: {declared:?}");
    let finds = index.finds.lock().unwrap().iter().map(|t| t.to_string()).collect();
    Cost { finds, requests: logs.iter().map(|l| l.lock().unwrap().clone()).collect() }
}

fn sector_url(kind: &str) -> String {
    format!("/remote/{kind}/{}", SECTOR.id.file_name())
}

#[tokio::test]
async fn one_node_holding_both_types_sends_them_in_one_request() {
    let c = acquire_both(false, false, false).await;
    assert_eq!(c.finds.len(), 1, "one StorageFindSector for both types: {:?}", c.finds);
    let get = |l: &&String| l.starts_with("GET");
    let gets: Vec<_> = c.requests[0].iter().filter(get).collect();
    assert_eq!(gets, vec![&format!("GET {}", sector_url("bundle"))], "one GET for both: {:?}", c.requests[0]);
    let deletes = c.requests[0].iter().filter(|l| l.starts_with("DELETE")).count();
    assert_eq!(deletes, 2, "the move removes both source copies: {:?}", c.requests[0]);
}

/// A Lotus worker's `/remote` has no bundle route (it answers 500): one failed request, then
/// one per type, as Lotus fetches.
#[tokio::test]
async fn a_node_without_bundles_is_fetched_from_type_by_type() {
    let c = acquire_both(true, false, false).await;
    let gets: Vec<_> = c.requests[0].iter().filter(|l| l.starts_with("GET")).cloned().collect();
    let want = ["bundle", "sealed", "cache"].map(|k| format!("GET {}", sector_url(k)));
    assert_eq!(gets, want, "the bundle refused, then each type");
    assert_eq!(c.finds.len(), 3, "one query for both, then one per type: {:?}", c.finds);
}

/// A node that refused a bundle is not asked again for a while: the next sector's types come
/// type by type at once (a Lotus node logs an error for each bundle request).
#[tokio::test]
async fn a_node_that_refused_a_bundle_is_not_asked_again_soon() {
    let src = tempfile::tempdir().unwrap();
    init(src.path(), true, true);
    write_sector_files(src.path());
    let (base, _, log) = source(src.path(), true).await;
    let here = tempfile::tempdir().unwrap();
    init(here.path(), true, true);
    let store = LocalStore::new(String::new());
    let p = store.open_path(here.path()).unwrap();
    let f = Fetcher::new("test-token".to_string(), 1);
    let landings: Vec<_> = BOTH.iter().map(|t| (*t, p.fetching(*t, SECTOR.id), p.file(*t, SECTOR.id))).collect();
    for _ in 0..3 {
        assert!(f.fetch_bundle(&base, SECTOR.id, &landings, u64::MAX).await.is_err());
    }
    let asked = log.lock().unwrap().iter().filter(|l| l.starts_with("GET /remote/bundle/")).count();
    assert_eq!(asked, 1, "asked once, then remembered: {:?}", log.lock().unwrap());
}

/// A Lotus miner's answer for several types names no type per path: no bundle is tried, the
/// worker asks for each type as Lotus's does.
#[tokio::test]
async fn a_lotus_miners_answer_leads_to_the_type_by_type_fetch() {
    let c = acquire_both(false, true, false).await;
    let gets: Vec<_> = c.requests[0].iter().filter(|l| l.starts_with("GET")).cloned().collect();
    assert_eq!(gets, ["sealed", "cache"].map(|k| format!("GET {}", sector_url(k))));
    assert_eq!(c.finds.len(), 3, "{:?}", c.finds);
}

/// The sealed file on one node and the cache on another: each from its own node.
#[tokio::test]
async fn types_on_two_nodes_come_from_each() {
    let c = acquire_both(false, false, true).await;
    assert_eq!(
        c.requests[0].iter().filter(|l| l.starts_with("GET")).collect::<Vec<_>>(),
        [&format!("GET {}", sector_url("sealed"))]
    );
    assert_eq!(
        c.requests[1].iter().filter(|l| l.starts_with("GET")).collect::<Vec<_>>(),
        [&format!("GET {}", sector_url("cache"))]
    );
}
