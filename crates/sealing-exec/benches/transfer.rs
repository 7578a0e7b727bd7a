//! Sector file transfer between two nodes over loopback vs `cp` of the same bytes, plain and
//! followed by an fsync of the copy (a fetch fsyncs what it received before it is accepted, so
//! `cp` + fsync is the fair mark), and the process's peak memory while doing it (the transfer
//! streams; memory must stay flat).
//!
//! `cargo bench -p sealing-exec --bench transfer` (TRANSFER_MIB=512 by default).
//!
//! Run it a few times: on this project's VM about half the runs move every socket transfer
//! at a quarter to a half of the others' speed while `cp` stays as fast (one core in system
//! time, the page cache held near 2.7 GB by the host's DAMON reclaim); the fast runs are the
//! transfer code's figures.

use futures_util::future::BoxFuture;
use lotus_api::Permission;
use sealing_exec::remote::{router, Fetcher, RemoteState};
use sealing_exec::{FixedIndex, LocalStore};
use sealing_types::{FileType, SectorId};
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

struct AnyToken;
impl lotus_api::rpc::Authenticator for AnyToken {
    fn verify(&self, t: &str) -> BoxFuture<'_, Result<lotus_api::Caller, String>> {
        let ok = t == "bench";
        Box::pin(async move {
            if ok {
                Ok(lotus_api::Caller::operator(Permission::Admin.with_lower()))
            } else {
                Err("bad token".into())
            }
        })
    }
}

fn peak_rss_mib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()))
        .unwrap_or(0)
        / 1024
}

fn init_path(dir: &std::path::Path) {
    sealing_exec::store::init_storage_path(dir, 10, true, true).unwrap();
}

#[tokio::main]
async fn main() {
    let mib: u64 = std::env::var("TRANSFER_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(512);
    let tmp = tempfile::tempdir_in(std::env::var("TMPDIR").unwrap_or("/var/tmp".into())).unwrap();
    let (da, db) = (tmp.path().join("a"), tmp.path().join("b"));
    init_path(&da);
    init_path(&db);
    let sector = SectorId { miner: 1000, number: 1 };

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let a = Arc::new(LocalStore::new(format!("http://{addr}/remote")));
    a.open_path(&da).unwrap();
    let b = Arc::new(LocalStore::new(String::new()));
    let pb = b.open_path(&db).unwrap();
    let app = router(RemoteState {
        store: a.clone(),
        index: Arc::new(FixedIndex(vec![])),
        auth: Arc::new(AnyToken),
        missing: "admin",
        backend: sealing_proofs::Backend::Real,
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // The sealed file, and a cache directory of 12 files (as a 2KiB..32GiB cache holds).
    let sealed = da.join("sealed").join(sector.file_name());
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&sealed).unwrap());
        let mut block = vec![0u8; 1 << 20];
        for i in 0..mib {
            for (j, b) in block.iter_mut().enumerate() {
                *b = (i as usize * 131 + j * 7) as u8;
            }
            f.write_all(&block).unwrap();
        }
    }
    let cache = da.join("cache").join(sector.file_name());
    std::fs::create_dir_all(&cache).unwrap();
    for k in 0..12 {
        std::fs::write(cache.join(format!("layer-{k}.dat")), vec![k as u8; (mib as usize * 1024 * 1024) / 12]).unwrap();
    }
    let rss0 = peak_rss_mib();

    let fetcher = Fetcher::new("bench".to_string(), 4);
    let bytes = (mib << 20) as f64;
    let mut best_cp = f64::MAX;
    let mut best_cp_sync = f64::MAX;
    let mut best_cp_dir_sync = f64::MAX;
    let mut best_fetch = f64::MAX;
    let mut best_tar = f64::MAX;
    let mut best_bundle = f64::MAX;
    let fsync = |p: &std::path::Path| std::fs::File::open(p).unwrap().sync_all().unwrap();
    // Every measurement starts alike: what the one before wrote is on disk, the source's bytes
    // are in the page cache (this machine reclaims cold page cache on its own, kdamond), and
    // nothing has been deleted since the run began: this disk is mounted with `discard`, and a
    // write after the removal of a few hundred MiB waited for its trims, so that whichever
    // measurement followed a removal ran at a third of its speed. Every copy gets a name of its
    // own and all are removed at the end.
    let settle = || {
        // SAFETY: sync(2) takes no arguments and cannot fail.
        unsafe { libc::sync() };
        let mut sources = vec![sealed.clone()];
        sources.extend(std::fs::read_dir(&cache).unwrap().map(|e| e.unwrap().path()));
        for f in sources {
            std::io::copy(&mut std::fs::File::open(f).unwrap(), &mut std::io::sink()).unwrap();
        }
    };
    let copies = tmp.path().join("copies");
    std::fs::create_dir(&copies).unwrap();
    for round in 0..3u64 {
        let dst = |what: &str| copies.join(format!("{what}-{round}"));
        // The fetches land as sectors of their own (the source's sector 1 is asked for).
        let into = |k: u64| SectorId { miner: 1000, number: 100 + 3 * round + k };
        settle();
        let t = Instant::now();
        let st = std::process::Command::new("cp").arg(&sealed).arg(dst("cp")).status().unwrap();
        assert!(st.success());
        best_cp = best_cp.min(t.elapsed().as_secs_f64());

        settle();
        let t = Instant::now();
        let st = std::process::Command::new("cp").arg(&sealed).arg(dst("cp-sync")).status().unwrap();
        assert!(st.success());
        fsync(&dst("cp-sync"));
        fsync(&copies);
        best_cp_sync = best_cp_sync.min(t.elapsed().as_secs_f64());

        settle();
        let t = Instant::now();
        let st = std::process::Command::new("cp").arg("-r").arg(&cache).arg(dst("cp-dir")).status().unwrap();
        assert!(st.success());
        for e in std::fs::read_dir(dst("cp-dir")).unwrap() {
            fsync(&e.unwrap().path());
        }
        fsync(&dst("cp-dir"));
        best_cp_dir_sync = best_cp_dir_sync.min(t.elapsed().as_secs_f64());

        let url = format!("http://{addr}/remote/sealed/{}", sector.file_name());
        let s = into(0);
        settle();
        let t = Instant::now();
        let n = fetcher.fetch(&url, &pb.fetching(FileType::Sealed, s), &pb.file(FileType::Sealed, s), u64::MAX).await;
        best_fetch = best_fetch.min(t.elapsed().as_secs_f64());
        assert_eq!(n.unwrap(), mib << 20);

        let url = format!("http://{addr}/remote/cache/{}", sector.file_name());
        let s = into(1);
        settle();
        let t = Instant::now();
        fetcher.fetch(&url, &pb.fetching(FileType::Cache, s), &pb.file(FileType::Cache, s), u64::MAX).await.unwrap();
        best_tar = best_tar.min(t.elapsed().as_secs_f64());

        // Both in one request, as a worker fetches a sector's sealed file and cache.
        let s = into(2);
        let landings: Vec<_> =
            [FileType::Sealed, FileType::Cache].into_iter().map(|t| (t, pb.fetching(t, s), pb.file(t, s))).collect();
        settle();
        let t = Instant::now();
        fetcher.fetch_bundle(&format!("http://{addr}/remote"), sector, &landings, u64::MAX).await.unwrap();
        best_bundle = best_bundle.min(t.elapsed().as_secs_f64());
    }
    let rss1 = peak_rss_mib();
    let mbps = |secs: f64| bytes / secs / (1 << 20) as f64;
    println!("transfer of {mib} MiB over loopback (best of 3; ratios are speed relative to cp + fsync):");
    println!("  cp                               {:8.1} MiB/s  ({:.3} s)", mbps(best_cp), best_cp);
    println!("  cp + fsync (file)                {:8.1} MiB/s  ({:.3} s)", mbps(best_cp_sync), best_cp_sync);
    println!(
        "  /remote fetch (file, fsynced)    {:8.1} MiB/s  ({:.3} s)   {:.2}x cp + fsync",
        mbps(best_fetch),
        best_fetch,
        best_cp_sync / best_fetch
    );
    println!("  cp -r + fsync (12-file cache)    {:8.1} MiB/s  ({:.3} s)", mbps(best_cp_dir_sync), best_cp_dir_sync);
    println!(
        "  /remote fetch (cache, tar stream) {:7.1} MiB/s  ({:.3} s)   {:.2}x cp -r + fsync",
        mbps(best_tar),
        best_tar,
        best_cp_dir_sync / best_tar
    );
    let cp_both = best_cp_sync + best_cp_dir_sync;
    println!(
        "  /remote bundle (file + cache)   {:8.1} MiB/s  ({:.3} s)   {:.2}x both cp + fsync ({:.3} s)",
        2.0 * mbps(best_bundle),
        best_bundle,
        cp_both / best_bundle,
        cp_both
    );
    println!(
        "  peak RSS before transfers {rss0} MiB, after {rss1} MiB (growth {} MiB for {} MiB moved)",
        rss1.saturating_sub(rss0),
        12 * mib
    );
}
