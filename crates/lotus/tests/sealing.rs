//! Sealing end to end, with separate processes: a miner that seals nothing itself, worker A
//! (AddPiece, PreCommit1, Unseal) and worker B (PreCommit2, Commit), each with its own storage
//! path. A 2KiB sector holding a file's bytes reaches Proving with real proofs the devnet chain
//! verified; its files travel A → B → the miner's store; unsealing it gives back the file. The
//! same walk on the mock proof backend adds a CC sector beside the data sector.
//!
//! The real test needs the devnet 2KiB parameters (`lotus-miner fetch-params 2KiB`;
//! scripts/test.sh runs it).

mod common;

use common::*;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The deal sector's unsealed copy is not kept (`AlwaysKeepUnsealedCopy = false`): these
/// tests unseal it from its sealed copy.
fn config() -> String {
    seals_nothing_config(
        "  LocalWorkerName = \"miner-host\"\n[Sealing]\n  MinRetryTime = \"3s\"\n  AlwaysKeepUnsealedCopy = false\n[Devnet]\n  BlockDelay = \"500ms\"\n  SeedDelayEpochs = 4\n",
    )
}

/// By default (`AlwaysKeepUnsealedCopy = true`, as in Lotus) a deal sector's unsealed copy is
/// kept in long-term storage beside its sealed copy; a CC sector keeps none.
#[test]
fn a_deal_sectors_unsealed_copy_is_kept_by_default() {
    let (c, miner, _w) = mock_miner_and_host_w("[Devnet]\n  BlockDelay = \"500ms\"\n  SeedDelayEpochs = 2\n");
    let file = c.path("deal.bin");
    std::fs::write(&file, vec![7u8; 1000]).unwrap();
    c.miner_ok(&["sectors", "add-piece", file.to_str().unwrap()]);
    c.miner_ok(&["sectors", "pledge"]);
    for n in [1, 2] {
        wait_or_show(
            Duration::from_secs(60),
            "the sectors proving",
            || miner.log(),
            || sector_state(&c, n) == "Proving",
        );
    }
    let deal = c.miner_ok(&["storage", "find", "1"]);
    assert!(deal.contains("(unsealed)") && deal.contains("(sealed)"), "{deal}");
    assert!(!deal.contains("Remote"), "everything in the miner's store, nothing left on the worker:\n{deal}");
    let cc = c.miner_ok(&["storage", "find", "2"]);
    assert!(cc.contains("(sealed)") && !cc.contains("(unsealed)"), "{cc}");
}

/// The one real seal of the suite's sealing tests: AP and PC1 on A, PC2 and C2 on B.
#[test]
fn a_real_data_sector_seals_across_two_workers_and_unseals() {
    let _serial = serial();
    seal_across_two_workers(Cluster::new(), false);
}

#[test]
fn cc_and_data_sectors_seal_across_two_workers_on_mock_proofs() {
    seal_across_two_workers(Cluster::mock("PC1=1s,C2=2s"), true);
}

/// Seal a data sector (and first a CC sector, with `with_cc`) across workers A and B, check
/// where each task ran and where the files ended, and unseal the data sector.
fn seal_across_two_workers(c: Cluster, with_cc: bool) {
    c.write_config(&config());
    let miner = c.start_miner();
    // Niced to the bottom (19): the suite runs this beside the proving test, whose Commit2
    // (nice 10) is the suite's critical path and whose WindowPoSts (never niced) must meet
    // their deadlines. CPU time then goes to the proving test first and to this one while
    // that test waits for deadlines.
    let common = ["run", "--listen", "127.0.0.1:0", "--sealing-nice", "19", "--no-default"];
    let a = c.start_worker(
        "worker-a",
        &[&common[..], &["--name", "host-a", "--addpiece", "--precommit1", "--unseal"]].concat(),
    );
    let b = c.start_worker("worker-b", &[&common[..], &["--name", "host-b", "--precommit2", "--commit"]].concat());
    wait_until(Duration::from_secs(30), "both workers to register", || c.workers().len() == 3);
    // Each worker's repo is a sealing path; the miner's repo is its store.
    wait_until(Duration::from_secs(30), "three storage paths attached", || {
        c.miner_ok(&["storage", "list"]).matches("URL: ").count() == 3
    });

    let mut sectors: Vec<String> = vec![];
    if with_cc {
        assert_eq!(c.miner_ok(&["sectors", "pledge"]).trim(), "Created CC sector:  1");
        sectors.push("1".into());
    }
    let data: Vec<u8> = (0..1500u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let file = c.path("piece.bin");
    std::fs::write(&file, &data).unwrap();
    let data_sector = (sectors.len() + 1).to_string();
    let out = c.miner_ok(&["sectors", "add-piece", file.to_str().unwrap()]);
    assert!(out.contains(&format!("Created sector {data_sector}")), "{out}");
    sectors.push(data_sector.clone());

    // Watch `sealing jobs` while the sectors seal: which host ran which task.
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    let start = Instant::now();
    loop {
        for line in c.miner_ok(&["sealing", "jobs"]).lines().skip(1) {
            let cols: Vec<&str> = line.split('\t').collect();
            if cols.len() >= 6 && cols[5] == "running" {
                seen.insert((cols[4].to_string(), cols[3].to_string()));
            }
        }
        let states: Vec<String> = sectors.iter().map(|n| sector_state(&c, n.parse().unwrap())).collect();
        if states.iter().all(|s| s == "Proving") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "sectors not proving after 10 minutes: {states:?}\n{}\nminer log:\n{}\nworker A:\n{}\nworker B:\n{}",
            c.miner_ok(&["sectors", "status", "--log", &data_sector]),
            tail(&miner.log(), 40),
            tail(&a.log(), 30),
            tail(&b.log(), 30),
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    println!("sectors proving after {:.1} s; jobs seen running: {seen:?}", start.elapsed().as_secs_f64());

    // Each phase ran where the flags say (fast phases may finish between two polls; C2 and
    // the worker-only phases are the ones that cannot run anywhere else).
    for (task, host) in &seen {
        let expected = match task.as_str() {
            "AP" | "PC1" | "UNS" => "host-a",
            "PC2" | "C2" => "host-b",
            _ => continue,
        };
        assert_eq!(host, expected, "{task} ran on {host}");
    }
    assert!(seen.contains(&("C2".into(), "host-b".into())), "C2 seen running on host-b: {seen:?}");

    // The files ended up in the miner's store, and only there.
    for sector in &sectors {
        let found = c.miner_ok(&["storage", "find", sector]);
        assert!(found.contains("(sealed)") && found.contains("(cache)"), "{found}");
        assert!(!found.contains("Remote"), "sector {sector} still has files on a worker:\n{found}");
        assert!(!found.contains("(unsealed)"), "unsealed copy kept:\n{found}");
        let status = c.miner_ok(&["sectors", "status", "--log", sector]);
        assert!(status.contains("CIDcommR:\tbagboea4b5abc"), "{status}");
        // The sector log names the host of every task: A → B → the miner's store.
        for ran in [
            "AP on host-a",
            "PC1 on host-a",
            "PC2 on host-b",
            "C1 on host-b",
            "C2 on host-b",
            "FIN on host-b",
            "GET on miner-host",
        ] {
            assert!(status.contains(ran), "sector {sector}: no \"{ran}\" in its log:\n{status}");
        }
        assert!(status.contains("FinalizeSector → Proving"), "{status}");
    }

    // Unsealing on worker A (it fetches a copy of sealed + cache from the store) gives the
    // original bytes back.
    let out = c.path("unsealed.bin");
    c.miner_ok(&["sectors", "unseal", &data_sector, "--output", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), data, "unsealed bytes differ from the original");
    let found = c.miner_ok(&["storage", "find", &data_sector]);
    assert!(found.contains("(unsealed)") && found.contains("Remote"), "unsealed copy on worker A:\n{found}");
}

/// `sealing abort` of a running Commit2 kills its proof process on the worker; the sector goes
/// to its failure state, retries, and still reaches Proving. (Mock proofs: the mock Commit2
/// runs, and is killed, in a proof process as a real one is.)
#[test]
fn sealing_abort_stops_the_computation_on_the_worker() {
    let c = Cluster::mock("C2=8s");
    c.write_config(&config());
    let miner = c.start_miner();
    let w = c.start_worker("worker", &["run", "--listen", "127.0.0.1:0", "--name", "host-w"]);
    let pid = w.child.id();
    wait_until(Duration::from_secs(30), "the worker to register", || c.workers().len() == 2);
    wait_until(Duration::from_secs(30), "storage paths attached", || {
        c.miner_ok(&["storage", "list"]).matches("URL: ").count() == 2
    });
    c.miner_ok(&["sectors", "pledge"]);
    let mut id = String::new();
    wait_until(Duration::from_secs(120), "Commit2 to run", || {
        let jobs = c.miner_ok(&["sealing", "jobs"]);
        match jobs.lines().find(|l| l.contains("\tC2\t") && l.contains("running")) {
            Some(l) => {
                id = l.split('\t').next().unwrap().to_string();
                true
            }
            None => false,
        }
    });
    wait_until(Duration::from_secs(10), "the C2 proof process to start", || proof_children(pid).len() == 1);
    let out = c.miner_ok(&["sealing", "abort", &id]);
    assert!(out.starts_with(&format!("aborting job {id}")) && out.contains("task C2, sector 1"), "{out}");
    wait_until(Duration::from_secs(5), "the proof process to be killed", || proof_children(pid).is_empty());
    wait_until(Duration::from_secs(10), "the sector to fail", || sector_state(&c, 1) == "ComputeProofFailed");
    let status = c.miner_ok(&["sectors", "status", "--log", "1"]);
    assert!(status.contains("aborted by the operator (its computation was stopped)"), "{status}");
    wait_until(Duration::from_secs(300), "the sector to retry and prove", || sector_state(&c, 1) == "Proving");
    drop(miner);
}

/// The standard layout: a worker seals on one filesystem (tmpfs, `/dev/shm`) and keeps
/// sectors on another. Finalize's move crosses filesystems (a rename fails with EXDEV): the
/// files are copied, synced, renamed into place, and only then removed from the seal path.
/// The store is a small filesystem the test mounts, left with one page free: the allocation's
/// estimate fits, the files do not, and the copy meets ENOSPC midway. The move fails with
/// code 102 (temporary: the sector is never given up), the seal path keeps the whole sector,
/// and once the operator frees space the sector reaches Proving with its files in the store
/// path alone.
#[test]
fn a_sector_sealed_on_one_filesystem_is_stored_on_another_even_after_it_filled_up() {
    let Ok(shm) = tempfile::tempdir_in("/dev/shm") else {
        eprintln!("no /dev/shm on this machine: skipped");
        return;
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("mounting the small store filesystem needs root: skipped");
        return;
    }
    let c = Cluster::mock_with_init("", &["--no-local-storage"]);
    c.write_config(&seals_nothing_config(
        "[Sealing]\n  MinRetryTime = \"2s\"\n[Devnet]\n  BlockDelay = \"500ms\"\n  SeedDelayEpochs = 2\n",
    ));
    let miner = c.start_miner();
    let w = c.start_worker("w", &["run", "--listen", "127.0.0.1:0", "--name", "two-disks", "--no-local-storage"]);
    wait_until(Duration::from_secs(30), "the worker to register", || c.workers().len() == 2);
    let (seal, store) = (shm.path().join("seal"), c.path("store"));
    let _mounted = Mounted::tmpfs(&store, 64 * 1024);
    for (flag, p) in [("--seal", &seal), ("--store", &store)] {
        let out = c.worker_command("w", &["storage", "attach", "--init", flag, p.to_str().unwrap()]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    // Fill the store, then give two pages back: a 2KiB sector's finalized files are estimated
    // at 2.2 KiB and take four pages. The sealed file (moved first) takes one; the cache's
    // estimate (204 bytes) fits in the other, its files do not.
    let filler = store.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        while f.write_all(&[0u8; 4096]).is_ok() {}
        let len = f.metadata().unwrap().len() / 4096 * 4096;
        f.set_len(len - 2 * 4096).unwrap();
    }
    c.miner_ok(&["sectors", "pledge"]);
    let log = || c.miner_ok(&["sectors", "status", "--log", "1"]);
    wait_or_show(
        Duration::from_secs(90),
        "the move to fail on the full store",
        || format!("{}\n{}", log(), tail(&w.log(), 20)),
        || log().contains("(code 102)"),
    );
    let failed = log();
    let line = failed.lines().find(|l| l.contains("(code 102)")).unwrap().to_string();
    println!("{line}");
    assert!(
        line.contains("No space left on device") && line.contains("free space"),
        "ENOSPC midway, and what to do: {line}"
    );
    // One whole copy of each file: the sealed file moved, the cache still in the seal path,
    // nothing of it in the store.
    let sealed =
        |root: &std::path::Path| std::fs::metadata(root.join("sealed/s-t01000-1")).map(|m| m.len()).unwrap_or(0);
    assert_eq!(sealed(&seal).max(sealed(&store)), 2048, "the sealed file is whole in one of the paths");
    assert!(seal.join("cache/s-t01000-1/p_aux").is_file(), "the seal path keeps the cache");
    assert!(!store.join("cache/s-t01000-1").exists(), "the store holds no partial cache");
    assert_ne!(sector_state(&c, 1), "FailedUnrecoverable");
    std::fs::remove_file(&filler).unwrap();
    wait_or_show(Duration::from_secs(90), "the sector proving", || miner.log(), || sector_state(&c, 1) == "Proving");
    assert!(store.join("sealed/s-t01000-1").is_file(), "the sealed file is in the store path");
    assert!(store.join("cache/s-t01000-1/p_aux").is_file(), "and its cache");
    assert!(!seal.join("sealed/s-t01000-1").exists(), "the seal path keeps no copy");
    assert!(!seal.join("cache/s-t01000-1").exists());
    let found = c.miner_ok(&["storage", "find", "1"]);
    assert!(found.contains("Sealing: false; Storage: true") && !found.contains("Sealing: true"), "{found}");
    assert!(w.log().contains("moved across filesystems"), "the move crossed filesystems:\n{}", w.log());
}
