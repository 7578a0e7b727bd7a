//! The chain through the full node's API (mock proofs): a message is sent once across a miner
//! crash, a deposit the worker cannot pay waits for funds, and sectors go to the chain in
//! batches.

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
        "the sector in PreCommitBatchWait",
        || miner.log(),
        || sector_state(&c, 1) == "PreCommitBatchWait",
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
    assert!(log.contains("PreCommitBatchWait → WaitSeed"), "{log}");
    assert!(log.contains("CommitAggregateWait → FinalizeSector"), "{log}");
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

/// Batches as Lotus configures them: four sectors pre-committed in one PreCommitSectorBatch2
/// and committed in one ProveCommitSectors3 whose aggregate proof the devnet verified; then a
/// fifth sector waits in each queue until `sectors batching … --publish-now` sends it.
#[test]
fn four_sectors_go_to_the_chain_in_one_pre_commit_and_one_aggregated_commit() {
    let c = Cluster::mock("");
    c.write_config(
        "[Sealing]\n  MinRetryTime = \"2s\"\n  MaxPreCommitBatch = 4\n  PreCommitBatchWait = \"10m\"\n  \
         PreCommitBatchSlack = \"0s\"\n  MinCommitBatch = 4\n  MaxCommitBatch = 4\n  CommitBatchWait = \"10m\"\n  \
         CommitBatchSlack = \"0s\"\n[Devnet]\n  BlockDelay = \"500ms\"\n  SeedDelayEpochs = 2\n",
    );
    let miner = c.start_miner();
    for _ in 0..4 {
        c.miner_ok(&["sectors", "pledge"]);
    }
    wait_or_show(
        Duration::from_secs(90),
        "four sectors proving",
        || miner.log(),
        || (1..=4).all(|n| sector_state(&c, n) == "Proving"),
    );
    assert_eq!(c.messages_with_method(28), 1, "one PreCommitSectorBatch2 for the four sectors");
    assert_eq!(c.messages_with_method(34), 1, "one ProveCommitSectors3 for the four sectors");
    let msgs = |n: u64| {
        let s: serde_json::Value =
            serde_json::from_str(&c.miner_ok(&["sectors", "status", "--json", &n.to_string()])).unwrap();
        (s["PreCommitMsg"]["/"].as_str().unwrap().to_string(), s["CommitMsg"]["/"].as_str().unwrap().to_string())
    };
    let first = msgs(1);
    assert!((2..=4).all(|n| msgs(n) == first), "every sector names the same two messages");
    // The chain took one aggregate proof for the four, not four proofs.
    let commits = prove_commits(&c);
    assert_eq!(commits.len(), 1, "one ProveCommitSectors3 executed");
    let p = &commits[0];
    assert_eq!(p.sector_activations.len(), 4, "it activates the four sectors");
    assert!(p.sector_proofs.is_empty() && !p.aggregate_proof.bytes().is_empty(), "an aggregate proof");
    assert!(p.aggregate_proof_type.is_some(), "with its proof type");
    // The miner follows the head with ChainNotify over a WebSocket, not by polling.
    assert!(miner.log().contains("following the chain head with ChainNotify"), "{}", miner.log());
    let log = c.miner_ok(&["sectors", "status", "--log", "1"]);
    assert!(log.contains("PreCommitting → SubmitPreCommitBatch"), "{log}");
    assert!(log.contains(", 4 sector(s))"), "{log}");

    // A fifth sector waits in the pre-commit queue: listed, then sent on request.
    c.miner_ok(&["sectors", "pledge"]);
    wait_or_show(
        Duration::from_secs(60),
        "sector 5 queued for its pre-commit",
        || miner.log(),
        || sector_state(&c, 5) == "SubmitPreCommitBatch",
    );
    let out = c.miner_cmd(&["sectors", "batching", "precommit"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("5\nDo you want to publish these sectors now? (yes/no): "), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("EOF"), "no answer on stdin: nothing sent");
    assert_eq!(sector_state(&c, 5), "SubmitPreCommitBatch");
    let sent = c.miner_ok(&["sectors", "batching", "precommit", "--publish-now"]);
    assert!(sent.starts_with("Batch 0:\n\tMessage: bafy"), "{sent}");
    assert!(sent.ends_with("\tSectors:\n\t\t5\tOK\n"), "{sent}");
    wait_or_show(
        Duration::from_secs(60),
        "sector 5 queued for its commit",
        || miner.log(),
        || sector_state(&c, 5) == "SubmitCommitAggregate",
    );
    assert_eq!(c.miner_ok(&["sectors", "batching", "precommit"]), "No sectors queued to be committed\n");
    let sent = c.miner_ok(&["sectors", "batching", "commit", "--publish-now"]);
    assert!(sent.contains("\t\t5\tOK"), "{sent}");
    wait_or_show(Duration::from_secs(60), "sector 5 proving", || miner.log(), || sector_state(&c, 5) == "Proving");
    assert_eq!(c.messages_with_method(28), 2);
    assert_eq!(c.messages_with_method(34), 2, "sector 5's commit in a message of its own, one proof");
    let out = c.miner_cmd(&["sectors", "batching", "commit", "--publish-now"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no sectors to publish"));
}

/// A Commit2 that computed an invalid proof (a faulty GPU, injected once under mock proofs):
/// the chain refuses the commit, and the retry computes the proof again instead of reusing
/// the stored one, so the sector reaches Proving.
#[test]
fn an_invalid_stored_proof_is_recomputed_on_retry_not_reused() {
    let c = Cluster::mock("");
    c.write_config(CONFIG);
    let fault = c.dir.path().join("faulty-commit2");
    std::fs::write(&fault, b"once").unwrap();
    let miner = c.start_miner_with(&[("LOTUS_MOCK_FAULTY_COMMIT2", fault.to_str().unwrap())]);
    c.miner_ok(&["sectors", "pledge"]);
    wait_or_show(
        Duration::from_secs(90),
        "the sector proving after one refused commit",
        || miner.log(),
        || sector_state(&c, 1) == "Proving",
    );
    assert!(!fault.exists(), "the fault was injected");
    let log = c.miner_ok(&["sectors", "status", "--log", "1"]);
    assert!(
        log.contains("failed on chain with exit code 16 (ErrIllegalArgument)"),
        "the chain refused the first proof: {log}"
    );
    assert_eq!(c.messages_with_method(34), 2, "two commits: the refused one and the recomputed one");
    assert!(miner.log().contains("dropped the stored results the failed step used"), "{}", miner.log());
}

/// The executed ProveCommitSectors3 messages' params, decoded as the miner actor reads them.
fn prove_commits(c: &Cluster) -> Vec<lotus_api::chain::actors::miner::ProveCommitSectors3Params> {
    let st = c.chain_state();
    let executed = st["executed"].as_object().unwrap().values();
    let messages = executed.map(|e| serde_json::from_value(e["message"]["Message"].clone()).unwrap());
    messages
        .filter(|m: &lotus_api::chain::Message| m.method == 34)
        .map(|m| lotus_api::chain::actors::decode(&m.params.expect("params").0).unwrap())
        .collect()
}
