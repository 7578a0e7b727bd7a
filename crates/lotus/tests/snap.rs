//! Snap deals end to end (issue 15): a proving CC sector is marked with `sectors snap-up`,
//! `sectors add-piece` puts a file's bytes into it instead of a new sector, the sector walks
//! Lotus's upgrade states with RU, PR1, PR2 and FRU on the miner's worker, the devnet verifies
//! the ProveReplicaUpdates3 proof against the sector key and switches the sector's sealed CID,
//! the key is released, the sector is proven from its update files in later WindowPoSts, and
//! `sectors unseal` gives the file back byte for byte (decoding with a regenerated key). The
//! chain's view is read through the full node's API, not taken from the commands' output.
//!
//! On mock proofs also: `abort-upgrade` from Available and from UpdateReplica puts the sector
//! back as it was. The same steps with real 2KiB proofs run in the real WindowPoSt test
//! (`tests/proving.rs`), on a sector it sealed already, so that no more tests compute a real
//! Commit2.

mod common;

use common::snap::*;
use common::*;
use std::time::Duration;

/// One message per sector, no unsealed copy kept (unseal must decode the update).
fn config() -> String {
    let sealing = r#"
[Storage]
  LocalWorkerName = "miner-host"
[Sealing]
  MinRetryTime = "2s"
  BatchPreCommits = false
  AggregateCommits = false
  AlwaysKeepUnsealedCopy = false
"#;
    format!("{sealing}{QUICK_DEVNET}")
}

#[test]
fn a_cc_sector_is_upgraded_with_data_and_aborts_put_one_back_on_mock_proofs() {
    let c = Cluster::mock("PC1=200ms,C2=300ms,RU=4s");
    c.write_config(&config());
    let miner = c.start_miner();
    proven_cc_sectors(&c, &miner, 2);

    // Refusals: no such sector, a non-snap upgrade, nothing to abort.
    assert!(miner_fails(&c, &["sectors", "snap-up", "9"]).contains("sector 9 not found"));
    assert!(miner_fails(&c, &["sectors", "abort-upgrade", "1"]).contains("--really-do-it"));
    let e = miner_fails(&c, &["sectors", "abort-upgrade", "--really-do-it", "1"]);
    assert!(e.contains("sector 1 is in Proving: it is not being upgraded"), "{e}");

    // Available, listed in the upgrade bounds, then aborted straight back to Proving.
    c.miner_ok(&["sectors", "snap-up", "2"]);
    let bounds = c.miner_ok(&["sectors", "list", "upgrade-bounds", "--csv", "--buckets", "2"]);
    let rows: Vec<&str> = bounds.lines().collect();
    assert_eq!(rows[0], "Max Expiration in Bucket,Sector Count", "{bounds}");
    assert_eq!(rows.len(), 3, "two buckets: {bounds}");
    assert!(rows[1].ends_with(",1") && rows[2].ends_with(",0"), "sector 2 in the first bucket: {bounds}");
    let table = c.miner_ok(&["sectors", "list", "upgrade-bounds"]);
    assert!(table.starts_with("Bucket Expiration"), "{table}");
    assert!(
        table.lines().nth(1).unwrap().contains(&format!("[{}]", "|".repeat(40))),
        "the first bucket has the one full bar:\n{table}"
    );
    assert!(miner_fails(&c, &["sectors", "snap-up", "2"]).contains("sector 2 is in Available"));
    c.miner_ok(&["sectors", "abort-upgrade", "--really-do-it", "2"]);
    assert_eq!(sector_state(&c, 2), "Proving");

    // Aborted in UpdateReplica (RU takes 4 s here): the update's files go, the sector is CC again.
    let key = on_chain(&c, 2).sealed_cid;
    c.miner_ok(&["sectors", "snap-up", "2"]);
    let file = c.path("aborted.bin");
    std::fs::write(&file, data(900, 2)).unwrap();
    c.miner_ok(&["sectors", "add-piece", file.to_str().unwrap()]);
    wait_until(Duration::from_secs(60), "sector 2 in UpdateReplica", || sector_state(&c, 2) == "UpdateReplica");
    c.miner_ok(&["sectors", "abort-upgrade", "--really-do-it", "2"]);
    wait_or_show(
        Duration::from_secs(60),
        "the aborted sector back in Proving",
        || log(&c, 2),
        || sector_state(&c, 2) == "Proving" && log(&c, 2).contains("AbortUpgrade → Proving"),
    );
    let st: serde_json::Value = serde_json::from_str(&c.miner_ok(&["sectors", "status", "--json", "2"])).unwrap();
    assert_eq!((st["HasData"].as_bool(), st["DataLen"].as_u64()), (Some(false), Some(0)), "{st}");
    assert_eq!(on_chain(&c, 2).sealed_cid, key, "the chain never changed");
    wait_until(Duration::from_secs(30), "the update's files removed", || {
        let found = c.miner_ok(&["storage", "find", "2"]);
        !found.contains("(update)") && !found.contains("(update-cache)") && found.contains("(sealed)")
    });

    snap_deal(&c, &miner, 1, &data(1500, 1), Duration::from_secs(180));
    // A sector with data is not upgraded again.
    assert!(miner_fails(&c, &["sectors", "snap-up", "1"]).contains("holds data already"));
}
