//! The chain through the full node's API (mock proofs): a message is sent once across a miner
//! crash, and a deposit the worker cannot pay waits for funds.

mod common;

use common::*;
use std::time::Duration;

const CONFIG: &str = "[Sealing]\n  MinRetryTime = \"2s\"\n[Devnet]\n  BlockDelay = \"500ms\"\n  SeedDelayEpochs = 2\n";

/// SIGKILL the miner after it pushed the sector's pre-commit and before the message has its
/// confidence: after the restart it waits for the same message (by the CID it recorded) and the
/// sector proceeds; the devnet took exactly one pre-commit and one commit for it.
#[test]
fn a_miner_killed_while_its_pre_commit_lands_sends_it_once() {
    let c = Cluster::mock("");
    c.write_config(CONFIG);
    // A long confidence: the miner sits in PreCommitWait for 8 epochs (4 s).
    let mut miner = c.start_miner_with(&[("LOTUS_CHAIN_MESSAGECONFIDENCE", "8")]);
    c.miner_ok(&["sectors", "pledge"]);
    wait_or_show(
        Duration::from_secs(60),
        "the sector in PreCommitWait",
        || miner.log(),
        || sector_state(&c, 1) == "PreCommitWait",
    );
    miner.kill();
    // The devnet writes its state every 250 ms.
    wait_until(Duration::from_secs(5), "one PreCommitSectorBatch2 pushed before the kill", || {
        c.messages_with_method(28) == 1
    });
    let miner2 = c.start_miner();
    wait_or_show(
        Duration::from_secs(90),
        "the sector proving after the restart",
        || miner2.log(),
        || sector_state(&c, 1) == "Proving",
    );
    assert_eq!(c.messages_with_method(28), 1, "the pre-commit was not sent again");
    assert_eq!(c.messages_with_method(34), 1, "one ProveCommitSectors3");
    let log = c.miner_ok(&["sectors", "status", "--log", "1"]);
    assert!(log.contains("PreCommitWait → WaitSeed"), "{log}");
    assert!(log.contains("CommitWait → FinalizeSector"), "{log}");
}

/// A worker key without funds: the pre-commit message fails on chain with
/// SysErrInsufficientFunds; the sector waits in PreCommitFailed saying so, with the worker's
/// balance; once the worker is funded it proceeds to Proving.
#[test]
fn a_pre_commit_the_worker_cannot_pay_waits_for_funds() {
    let c = Cluster::mock_with_init("", &["--create-worker-key"]);
    c.write_config(CONFIG);
    let miner = c.start_miner();
    c.miner_ok(&["sectors", "pledge"]);
    let status = || c.miner_ok(&["sectors", "status", "--json", "1"]);
    let err = wait_or_show_value(
        Duration::from_secs(60),
        "the pre-commit to fail",
        || miner.log(),
        || {
            let s: serde_json::Value = serde_json::from_str(&status()).ok()?;
            let e = s["LastErr"].as_str().unwrap_or_default().to_string();
            e.contains("exit code 6").then_some(e)
        },
    );
    assert!(err.contains("SysErrInsufficientFunds"), "{err}");
    assert!(err.contains("holds 0 attoFIL"), "the error names the worker's balance: {err}");
    let worker = err.split("worker address ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    let out = c.devnet_cmd(&["send", &worker, "10"]);
    assert!(out.status.success(), "lotus-devnet send: {}", String::from_utf8_lossy(&out.stderr));
    wait_or_show(
        Duration::from_secs(90),
        "the funded sector proving",
        || miner.log(),
        || sector_state(&c, 1) == "Proving",
    );
}
