//! The snap-deal steps an operator takes and what the chain and the miner must show after
//! each (`tests/snap.rs` on mock proofs, `tests/proving.rs` with real ones).

use super::*;
use lotus_api::chain::{Address, SectorOnChainInfo, TipSetKey};
use lotus_api::contract::full as f;
use std::time::Duration;

pub fn on_chain(c: &Cluster, n: u64) -> SectorOnChainInfo {
    Chain::new(&c.full_node())
        .call::<f::StateSectorGetInfo>((Address::id(1000), n, TipSetKey::head()))
        .unwrap_or_else(|| panic!("sector {n} on chain"))
}

/// The sector's event log, one message per line.
pub fn log(c: &Cluster, n: u64) -> String {
    let out = c.miner_cmd(&["sectors", "status", "--json", &n.to_string()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["Log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Message"].as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Pledge CC sectors 1..=n and wait until each is Proving and proven once in a WindowPoSt
/// (the actor updates only proven sectors).
pub fn proven_cc_sectors(c: &Cluster, miner: &Proc, n: u64) {
    for i in 1..=n {
        assert_eq!(c.miner_ok(&["sectors", "pledge"]).trim(), format!("Created CC sector:  {i}"));
    }
    wait_or_show(
        Duration::from_secs(240),
        "the CC sectors proven once",
        || tail(&miner.log(), 40),
        || {
            let st = c.chain_state();
            (1..=n).all(|i| {
                sector_state(c, i) == "Proving" && st["miners"]["1000"]["sectors"][i.to_string()]["unproven"] == false
            })
        },
    );
}

/// WindowPoSts of sector `n`'s partition accepted after epoch `after`, from `proving info`.
pub fn proofs_of(c: &Cluster, n: u64, after: i64) -> usize {
    let info = c.miner_ok(&["proving", "info"]);
    info.lines()
        .filter(|l| l.starts_with("  dl ") && !l.contains("FAILED"))
        .filter(|l| {
            let open: i64 = l.split_whitespace().nth(2).unwrap().trim_start_matches('@').parse().unwrap();
            let proven = l.split("proven [").nth(1).and_then(|r| r.split(']').next()).unwrap_or("");
            open > after && proven.split(", ").any(|x| x == n.to_string())
        })
        .count()
}

/// Upgrade proving CC sector `n` with `data` and check every step the operator and the chain
/// see.
pub fn snap_deal(c: &Cluster, miner: &Proc, n: u64, data: &[u8], timeout: Duration) {
    let old = snap_start(c, n, data);
    snap_finish(c, miner, n, data, &old, timeout);
}

/// The operator's part: `snap-up`, then `add-piece` of `data`, which the Available sector
/// takes. Returns the sector as the chain had it before.
pub fn snap_start(c: &Cluster, n: u64, data: &[u8]) -> SectorOnChainInfo {
    let old = on_chain(c, n);
    assert_eq!(old.sector_key_cid, None, "a sealed CC sector has no key of its own");
    c.miner_ok(&["sectors", "snap-up", &n.to_string()]);
    assert_eq!(sector_state(c, n), "Available");
    let file = c.path(&format!("snap-{n}.bin"));
    std::fs::write(&file, data).unwrap();
    let out = c.miner_ok(&["sectors", "add-piece", file.to_str().unwrap()]);
    assert!(
        out.starts_with(&format!("Upgrading sector {n} (snap deal)")),
        "the Available sector takes the data: {out}"
    );
    old
}

/// Wait for the upgrade started by [`snap_start`] and check what the miner and the chain show:
/// the states in order, the new sealed CID with the old one as the key, the files, two
/// WindowPoSts from the update files, and the data back through unseal.
pub fn snap_finish(c: &Cluster, miner: &Proc, n: u64, data: &[u8], old: &SectorOnChainInfo, timeout: Duration) {
    let t = wait_or_show(
        timeout,
        "the upgraded sector Proving",
        || format!("{}\n--- miner log:\n{}", log(c, n), tail(&miner.log(), 60)),
        || sector_state(c, n) == "Proving" && log(c, n).contains("ReleaseSectorKey → Proving"),
    );
    println!("upgraded sector {n} in {t:?}");
    let l = log(c, n);
    println!("{l}");
    // Lotus's states in Lotus's order, each task on the miner's worker.
    let order = [
        "Available → SnapDealsWaitDeals",
        "SnapDealsWaitDeals → SnapDealsAddPiece",
        "SnapDealsAddPiece → SnapDealsPacking (AP on miner-host)",
        "SnapDealsPacking → UpdateReplica",
        "UpdateReplica → ProveReplicaUpdate (RU on miner-host)",
        "ProveReplicaUpdate → FinalizeReplicaUpdate (PR1 on miner-host, PR2 on miner-host)",
        "FinalizeReplicaUpdate → SubmitReplicaUpdate (FRU on miner-host",
        "ProveReplicaUpdates3 ",
        "ReplicaUpdateWait → UpdateActivating",
        "UpdateActivating → ReleaseSectorKey",
        "ReleaseSectorKey → Proving",
    ];
    let mut at = 0;
    for step in order {
        let i = l[at..].find(step).unwrap_or_else(|| panic!("{step:?} after the earlier steps in:\n{l}"));
        at += i + step.len();
    }
    // On chain: the new sealed CID, and the old one kept as the sector key.
    let now = on_chain(c, n);
    assert_ne!(now.sealed_cid, old.sealed_cid, "the chain switched to the update's replica");
    assert_eq!(now.sector_key_cid, Some(old.sealed_cid), "the old CommR is the sector key");
    let status = c.miner_ok(&["sectors", "status", "--json", &n.to_string()]);
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(v["ReplicaUpdateMessage"].is_object(), "SectorsStatus names the message: {status}");
    // The key released; the update, its cache and the sector's cache in long-term storage.
    let found = c.miner_ok(&["storage", "find", &n.to_string()]);
    for kind in ["(update)", "(update-cache)", "(cache)"] {
        assert!(found.contains(kind), "{kind} in:\n{found}");
    }
    assert!(!found.contains("(sealed)") && !found.contains("(unsealed)"), "no key, no unsealed copy:\n{found}");
    // The update's epoch (the sector's power base epoch since): every proof of the sector's
    // deadline after it is over the new sealed CID.
    let done = now.power_base_epoch;
    assert!(done > old.power_base_epoch, "the power base moved to the update");
    // Proven from the update files in the sector's next two deadlines (the devnet requires the
    // sector and checks the proof against the new sealed CID).
    wait_or_show(
        Duration::from_secs(120),
        "2 WindowPoSts of the updated sector",
        || format!("{}\n--- miner log:\n{}", c.miner_ok(&["proving", "info"]), tail(&miner.log(), 40)),
        || proofs_of(c, n, done) >= 2,
    );
    assert_eq!(c.miner_ok(&["proving", "faults"]), "Miner: f01000\ndeadline  partition  sectors\n");
    // The data back through unseal: the key regenerated from the ticket, the update decoded.
    let back = c.path(&format!("snap-{n}.out"));
    c.miner_ok(&["sectors", "unseal", &n.to_string(), "--output", back.to_str().unwrap()]);
    assert!(std::fs::read(&back).unwrap() == data, "the file comes back byte for byte");
}

pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}
