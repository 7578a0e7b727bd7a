//! What operators do on chain, end to end on the devnet (mock proofs: the subject is the chain
//! operations, not the proofs): each `lotus-miner actor …`, `sectors …` and `proving …` command
//! that sends a message is run as an operator types it, and the chain state it changed is read
//! back through the full node's API, not taken from the command's output.

mod common;

use common::*;
use lotus_api::chain::{Address, BigInt, TipSetKey};
use lotus_api::contract::full as f;
use std::time::Duration;

/// One message per sector, sectors committed for 300 h, worker-key changes after 10 epochs.
fn config() -> String {
    let sealing = r#"
[Storage]
  LocalWorkerName = "miner-host"
[Sealing]
  MinRetryTime = "3s"
  BatchPreCommits = false
  AggregateCommits = false
  CommittedCapacitySectorLifetime = "300h0m0s"
"#;
    format!("{sealing}{QUICK_DEVNET}  WorkerKeyChangeDelay = 10\n")
}

#[test]
fn operator_chain_commands_change_the_chain_as_lotus_s_do() {
    let c = Cluster::mock("PC1=200ms,C2=500ms");
    c.write_config(&config());
    let miner = c.start_miner();
    let chain = Chain::new(&c.full_node());
    for i in 1..=2 {
        assert_eq!(c.miner_ok(&["sectors", "pledge"]).trim(), format!("Created CC sector:  {i}"));
    }
    wait_or_show(
        Duration::from_secs(120),
        "both sectors Proving",
        || tail(&miner.log(), 40),
        || (1..=2).all(|i| sector_state(&c, i) == "Proving"),
    );
    let owner = chain.info().owner;
    let bad = miner_fails(&c, &["init", "--deposit-margin-factor", "0.5"]);
    assert!(bad.contains("--deposit-margin-factor must be at least 1.0"), "{bad}");

    // info: power, space and balances as Lotus prints them, from the chain.
    let info = c.miner_ok(&["info"]);
    for line in [
        "Miner: f01000 (2 KiB sectors)\n",
        "Power: 4 Ki / 4 Ki (100.0000%)\n",
        "\tRaw: 4 KiB / 4 KiB (100.0000%)\n",
        "\tCommitted: 4 KiB\n",
        "\tProving: 4 KiB\n",
        "      PreCommit:  0\n",
        "      Pledge:     40 mFIL\n",
        "Sectors:\n\tTotal: 2\n\tProving: 2\n",
    ] {
        assert!(info.contains(line), "{line:?} in:\n{info}");
    }
    assert!(!c.miner_ok(&["info", "--hide-sectors-info"]).contains("Sectors:"));

    // sectors list: Lotus's columns, the chain's view of each sector.
    let list = c.miner_ok(&["sectors", "list", "--initial-pledge", "--events", "--seal-time"]);
    let header = list.lines().next().unwrap();
    let cols: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(
        cols,
        ["ID", "State", "OnChain", "Active", "Expiration", "SealTime", "Events", "Deals", "Pledge"],
        "{list}"
    );
    let row1 = list.lines().nth(1).unwrap();
    assert!(row1.starts_with("1   Proving  YES      "), "{list}");
    assert!(row1.contains("CC") && row1.contains("20 mFIL"), "{list}");
    let fast = c.miner_ok(&["sectors", "list", "--fast"]);
    assert!(!fast.contains("Expiration"), "no chain in --fast: {fast}");

    // actor control list: the owner and worker keys, their use and balance.
    let list = c.miner_ok(&["actor", "control", "list"]);
    assert!(list.starts_with("name"), "{list}");
    assert!(list.lines().any(|l| l.starts_with("owner") && l.contains("f0")), "{list}");

    // actor withdraw: the owner's balance grows by what the miner's available balance lost.
    let available = || chain.call::<f::StateMinerAvailableBalance>((Address::id(1000), TipSetKey::head()));
    let balance = |a: Address| chain.call::<f::WalletBalance>((a,));
    let (avail0, owner0) = (available(), balance(owner));
    let out = c.miner_ok(&["actor", "withdraw", "--confidence", "0", "0.001"]);
    assert!(out.contains("Successfully withdrew 0.001 FIL"), "{out}");
    let milli = BigInt::from_atto(1_000_000_000_000_000u64);
    assert_eq!(BigInt(&avail0.0 - &available().0), milli);
    assert_eq!(BigInt(&balance(owner).0 - &owner0.0), milli);
    let too_much = miner_fails(&c, &["actor", "withdraw", "1000000"]);
    assert!(too_much.contains("can't withdraw more funds than available"), "{too_much}");

    // actor repay-debt: the value goes to the miner actor (no debt here, so it stays there).
    let balance_of_miner = || balance(Address::id(1000));
    let before = balance_of_miner();
    let out = c.miner_ok(&["actor", "repay-debt", "0.002"]);
    assert!(out.starts_with("Sent repay debt message bafy"), "{out}");
    wait_until(Duration::from_secs(20), "the repayment on chain", || {
        BigInt(&balance_of_miner().0 - &before.0) == BigInt::from_atto(2_000_000_000_000_000u64)
    });

    // actor compact-allocated: the masked numbers count as allocated, so never reused.
    assert!(!chain.call::<f::StateMinerSectorAllocated>((Address::id(1000), 9, TipSetKey::head())));
    assert!(c.miner_ok(&["actor", "compact-allocated", "--mask-upto-n", "10"]).contains("Pass --really-do-it"));
    let out = c.miner_ok(&["actor", "compact-allocated", "--mask-upto-n", "10", "--really-do-it"]);
    assert!(out.starts_with("CompactSectorNumbers Message CID: bafy"), "{out}");
    assert!(chain.call::<f::StateMinerSectorAllocated>((Address::id(1000), 9, TipSetKey::head())));

    assert!(miner_fails(&c, &["actor", "settle-deal", "--really-do-it"]).contains("no market deals"));

    // actor control set: a control address on chain.
    let control = chain.new_key();
    c.devnet_cmd(&["send", &control.to_string(), "1"]);
    let out = c.miner_ok(&["actor", "control", "set", &control.to_string()]);
    assert!(out.contains("Pass --really-do-it"), "{out}");
    assert!(chain.info().control_addresses.is_empty(), "nothing sent without --really-do-it");
    c.miner_ok(&["actor", "control", "set", "--really-do-it", &control.to_string()]);
    let control_id = chain.id_of(control);
    wait_until(Duration::from_secs(20), "the control address on chain", || {
        chain.info().control_addresses == vec![control_id]
    });

    // actor set-addresses / set-peer-id.
    c.miner_ok(&["actor", "set-addresses", "/ip4/127.0.0.1/tcp/2345"]);
    let peer = "12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf";
    c.miner_ok(&["actor", "set-peer-id", peer]);
    wait_until(Duration::from_secs(20), "the multiaddrs and peer ID on chain", || {
        let i = chain.info();
        i.multiaddrs.len() == 1 && i.peer_id.as_deref() == Some(peer)
    });

    // actor propose-change-worker / confirm-change-worker, with the key-change delay.
    let new_worker = chain.new_key();
    c.devnet_cmd(&["send", &new_worker.to_string(), "10"]);
    let new_id = chain.id_of(new_worker);
    let out = c.miner_ok(&["actor", "propose-change-worker", "--really-do-it", &new_worker.to_string()]);
    assert!(
        out.contains(&format!("Worker key change to {new_id} successfully sent, change happens at height")),
        "{out}"
    );
    let info = chain.info();
    assert_eq!(info.new_worker.0, Some(new_id));
    let at = info.worker_change_epoch;
    if chain.head() < at {
        let early = miner_fails(&c, &["actor", "confirm-change-worker", "--really-do-it", &new_worker.to_string()]);
        assert!(early.contains(&format!("worker key change cannot be confirmed until {at}")), "{early}");
    }
    wait_until(Duration::from_secs(30), "the key-change epoch", || chain.head() >= at);
    c.miner_ok(&["actor", "confirm-change-worker", "--really-do-it", &new_worker.to_string()]);
    assert_eq!(chain.info().worker, new_id);

    // sectors extend: a dry run prints the params, then the expiration moves on chain.
    let info1 = || chain.call::<f::StateSectorGetInfo>((Address::id(1000), 1, TipSetKey::head())).unwrap();
    let target = info1().expiration + 50_000;
    let dry = c.miner_ok(&["sectors", "extend", "--new-expiration", &target.to_string(), "1"]);
    assert!(dry.contains("\"NewExpiration\":") && dry.contains("1 sectors extended"), "{dry}");
    assert_ne!(info1().expiration, target, "a dry run sends nothing");
    let out = c.miner_ok(&["sectors", "extend", "--really-do-it", "--new-expiration", &target.to_string(), "1"]);
    assert!(out.contains("1 sectors extended"), "{out}");
    assert_eq!(info1().expiration, target);

    let status = c.miner_ok(&["sectors", "status", "--on-chain-info", "--partition-info", "1"]);
    assert!(status.contains("\nSector On Chain Info\nSealProof:\t\t5\n"), "{status}");
    assert!(status.contains(&format!("Expiration:\t\t{target}\n")), "{status}");
    assert!(status.contains("\nPartition Info\nIndex:\t\t0\nDeadline:\t\t0\nInLive:\t\ttrue\n"), "{status}");

    // sectors check-expire lists both, get-cc-collateral asks the chain.
    let exp = c.miner_ok(&["sectors", "check-expire", "--cutoff", "100000000"]);
    assert!(exp.starts_with("ID  SealProof  InitialPledge"), "{exp}");
    assert_eq!(exp.lines().count(), 3, "{exp}");
    assert_eq!(c.miner_ok(&["sectors", "get-cc-collateral"]).trim(), "Estimated collateral: 0.02 FIL");
    assert_eq!(c.miner_ok(&["sectors", "precommits"]), "", "both sectors are proven");

    // proving check: every live sector of deadline 0 is good; recover-faults sends and waits.
    let check = c.miner_ok(&["proving", "check", "0"]);
    assert!(check.contains("0         0          1       good"), "{check}");
    // proving compute windowed-post: a proof of deadline 0's partition, nothing sent.
    // While deadline 0 (the sectors') is not open, the miner sends nothing of its own: the
    // worker's nonce moves only if computing sent a message.
    wait_until(Duration::from_secs(60), "a deadline other than 0 open", || {
        let d = chain.call::<f::StateMinerProvingDeadline>((Address::id(1000), TipSetKey::head()));
        d.index != 0 && d.current_epoch < d.close - 6
    });
    let worker = chain.info().worker;
    let nonce = || chain.call::<f::MpoolGetNonce>((worker,));
    let before = nonce();
    let out = c.miner_ok(&["proving", "compute", "windowed-post", "0"]);
    assert!(out.starts_with("Took "), "{out}");
    let json: serde_json::Value = serde_json::from_str(out.split_once('\n').unwrap().1).unwrap();
    assert_eq!(json[0]["Deadline"], 0, "{out}");
    assert_eq!(json[0]["Partitions"][0]["Index"], 0, "{out}");
    assert!(json[0]["Proofs"][0]["ProofBytes"].as_str().is_some_and(|p| !p.is_empty()), "{out}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(nonce(), before, "computing a WindowPoSt sends nothing");
    assert!(miner_fails(&c, &["proving", "recover-faults", "99"]).contains("sectors 99 not found"));
    c.miner_ok(&["proving", "recover-faults", "--confidence", "0", "1"]);

    // sectors terminate: queued by the miner, sent on flush while deadline 0 may change (the
    // deadline before the current one, when deadline 1 is open), then the files removed.
    let deadline_1_open = || {
        wait_until(Duration::from_secs(60), "deadline 1 open with time to spare", || {
            let d = chain.call::<f::StateMinerProvingDeadline>((Address::id(1000), TipSetKey::head()));
            d.index == 1 && d.current_epoch < d.close - 10
        });
    };
    assert!(miner_fails(&c, &["sectors", "terminate", "2"]).contains("pass --really-do-it to confirm this action"));
    deadline_1_open();
    c.miner_ok(&["sectors", "terminate", "--really-do-it", "2"]);
    wait_or_show(
        Duration::from_secs(10),
        "sector 2 queued for termination",
        || format!("{}\n{}", c.miner_ok(&["sectors", "status", "--log", "2"]), tail(&miner.log(), 20)),
        || c.miner_ok(&["sectors", "terminate", "pending"]).starts_with("2"),
    );
    let cid = c.miner_ok(&["sectors", "terminate", "flush"]);
    assert!(cid.trim().starts_with("bafy"), "{cid}");
    wait_or_show(
        Duration::from_secs(30),
        "sector 2 Removed",
        || tail(&miner.log(), 30),
        || sector_state(&c, 2) == "Removed",
    );
    assert_eq!(chain.call::<f::StateSectorGetInfo>((Address::id(1000), 2, TipSetKey::head())), None);
    let parts = chain.call::<f::StateMinerPartitions>((Address::id(1000), 0, TipSetKey::head()));
    assert_eq!(parts[0].live_sectors.0.iter().collect::<Vec<_>>(), vec![1]);
    assert_eq!(parts[0].all_sectors.0.iter().collect::<Vec<_>>(), vec![1, 2], "until compacted");
    assert!(miner_fails(&c, &["sectors", "terminate", "flush"]).contains("no sectors were queued for termination"));
    let expired = c.miner_ok(&["sectors", "expired", "--show-removed"]);
    assert!(expired.lines().any(|l| l.starts_with("2\tRemoved\t")), "{expired}");

    // sectors list hides it, as Lotus's, unless asked.
    let list = c.miner_ok(&["sectors", "list"]);
    assert!(!list.contains("Removed"), "{list}");
    assert!(c.miner_ok(&["sectors", "list", "--show-removed"]).contains("Removed"));
    assert!(c.miner_ok(&["sectors", "list", "--states", "Removed"]).lines().any(|l| l.starts_with("2 ")));
    assert_eq!(c.miner_ok(&["sectors", "list", "--unproven"]).lines().count(), 1, "only the header");

    // sectors compact-partitions drops the terminated sector from deadline 0's partition.
    deadline_1_open();
    c.miner_ok(&["sectors", "compact-partitions", "--deadline", "0", "--partitions", "0", "--really-do-it"]);
    let parts = chain.call::<f::StateMinerPartitions>((Address::id(1000), 0, TipSetKey::head()));
    assert_eq!(parts[0].all_sectors.0.iter().collect::<Vec<_>>(), vec![1]);

    // proving recover-faults on a faulty sector: declared recovering on chain (the miner's own
    // recovery would not, its check fails while the file is away), then proven again.
    let sealed = c.path("miner/sealed/s-t01000-1");
    let away = c.path("sealed-1.away");
    std::fs::rename(&sealed, &away).unwrap();
    let faults =
        || chain.call::<f::StateMinerFaults>((Address::id(1000), TipSetKey::head())).0.iter().collect::<Vec<_>>();
    wait_or_show(
        Duration::from_secs(90),
        "sector 1 faulty on chain",
        || tail(&miner.log(), 20),
        || faults() == vec![1],
    );
    // Before deadline 0's fault cutoff: early in deadline 1.
    wait_until(Duration::from_secs(60), "deadline 1 just opened", || {
        let d = chain.call::<f::StateMinerProvingDeadline>((Address::id(1000), TipSetKey::head()));
        d.index == 1 && d.current_epoch < d.open + 6
    });
    let out = c.miner_ok(&["proving", "recover-faults", "--confidence", "0", "1"]);
    assert!(!out.contains("Failed"), "{out}");
    let recovering = chain.call::<f::StateMinerRecoveries>((Address::id(1000), TipSetKey::head()));
    assert_eq!(recovering.0.iter().collect::<Vec<_>>(), vec![1]);
    std::fs::rename(&away, &sealed).unwrap();
    wait_or_show(Duration::from_secs(90), "sector 1 proven again", || tail(&miner.log(), 20), || faults().is_empty());

    // actor set-owner, in two steps: proposed by the owner, confirmed by the new one.
    let new_owner = chain.new_key();
    c.devnet_cmd(&["send", &new_owner.to_string(), "1"]);
    let out = c.miner_ok(&["actor", "set-owner", "--really-do-it", &new_owner.to_string(), &owner.to_string()]);
    assert!(out.contains("message succeeded!"), "{out}");
    let new_owner_id = chain.id_of(new_owner);
    assert_eq!(chain.info().pending_owner_address, Some(new_owner_id));
    let out = c.miner_ok(&["actor", "set-owner", "--really-do-it", &new_owner.to_string(), &new_owner.to_string()]);
    assert!(out.contains("message succeeded!"), "{out}");
    assert_eq!(chain.info().owner, new_owner_id);

    // The miner keeps proving with the new worker key (it reads the key for each message).
    let before = chain.head();
    wait_or_show(
        Duration::from_secs(60),
        "a WindowPoSt sent by the new worker key",
        || tail(&miner.log(), 30),
        || {
            c.miner_ok(&["proving", "info"])
                .lines()
                .filter(|l| l.starts_with("  dl ") && !l.contains("FAILED"))
                .filter_map(|l| l.split('@').nth(1)?.split_whitespace().next()?.parse::<i64>().ok())
                .any(|open| open > before)
        },
    );
    assert!(c.miner_ok(&["proving", "info"]).contains("Missed deadlines: 0"));
}

/// A sector committed for 70 seconds expires on chain when its deadline closes after that; the
/// miner then lists it in `sectors expired` and `--remove-expired` removes it, as Lotus's.
#[test]
fn an_expired_sector_is_listed_and_removed() {
    let c = Cluster::mock("PC1=200ms,C2=500ms");
    c.write_config(
        &config()
            .replace("CommittedCapacitySectorLifetime = \"300h0m0s\"", "CommittedCapacitySectorLifetime = \"70s\""),
    );
    let miner = c.start_miner();
    let chain = Chain::new(&c.full_node());
    c.miner_ok(&["sectors", "pledge"]);
    wait_or_show(
        Duration::from_secs(60),
        "sector 1 Proving",
        || tail(&miner.log(), 30),
        || sector_state(&c, 1) == "Proving",
    );
    let info = chain.call::<f::StateSectorGetInfo>((Address::id(1000), 1, TipSetKey::head())).unwrap();
    // 70 s of 500 ms epochs after the pre-commit.
    assert!((130..=150).contains(&(info.expiration - info.activation)), "{info:?}");
    assert_eq!(c.miner_ok(&["sectors", "expired"]), "Sector\tState\tExpiration\n", "not yet");
    wait_until(Duration::from_secs(150), "sector 1 expired on chain", || {
        chain.call::<f::StateSectorGetInfo>((Address::id(1000), 1, TipSetKey::head())).is_none()
    });
    let listed = c.miner_ok(&["sectors", "expired"]);
    assert!(listed.lines().any(|l| l.starts_with("1\tProving\t")), "{listed}");
    let asked = c.miner_ok(&["sectors", "expired", "--remove-expired"]);
    assert!(asked.contains("All 1 sectors listed above will be removed"), "{asked}");
    assert!(asked.contains("--confirm-remove-count=1"), "{asked}");
    assert_eq!(sector_state(&c, 1), "Proving", "nothing removed before the confirmation");
    let bad = miner_fails(&c, &["sectors", "expired", "--remove-expired", "--confirm-remove-count=2"]);
    assert!(bad.contains("doesn't match the number of sectors which can be removed (1)"), "{bad}");
    let done = c.miner_ok(&["sectors", "expired", "--remove-expired", "--confirm-remove-count=1"]);
    assert!(done.contains("Removing sector\t1:\tOK"), "{done}");
    wait_until(Duration::from_secs(30), "sector 1 Removed", || sector_state(&c, 1) == "Removed");
}
