//! Proving end to end. With real proofs: two 2KiB sectors sealed by the miner itself reach
//! Proving and pass consecutive WindowPoSt deadlines the devnet chain verifies, while the
//! miner's own Commit2 keeps both cores busy (sealing runs niced, PoSt does not); a sector
//! whose sealed file is deleted is skipped and reported faulty while the rest of its partition
//! still proves (a real proof over the remaining sector). On the mock proof backend, where the
//! subject is who proves, not the proof: the miner restarts with its built-in WindowPoSt
//! disabled and two PoSt workers connected, the proofs come from them, a skipped sector is
//! faulty, with one PoSt worker killed the next deadlines are proven by the other, and
//! elections are won with WinningPoSts the chain checked.
//!
//! The real test then upgrades a sector with a snap deal (the steps in `common/snap.rs`).
//!
//! The real test needs the devnet 2KiB parameters (`lotus-miner fetch-params 2KiB`;
//! scripts/test.sh runs it).

mod common;

use common::*;
use std::time::{Duration, Instant};

fn config(disable_builtin: bool, win_rate: f64) -> String {
    format!(
        r#"
[Storage]
  LocalWorkerName = "miner-host"
[Sealing]
  MinRetryTime = "3s"
  AlwaysKeepUnsealedCopy = false
[Proving]
  DisableBuiltinWindowPoSt = {disable_builtin}
[Devnet]
  BlockDelay = "500ms"
  SeedDelayEpochs = 4
  WPoStPeriodDeadlines = 3
  WPoStChallengeWindow = 16
  WPoStChallengeLookback = 2
  WinRate = {win_rate}
"#
    )
}

/// One line of `proving info`'s recent WindowPoSt list.
#[derive(Debug, Clone, PartialEq)]
struct Post {
    deadline: u64,
    open: i64,
    prover: String,
    margin: f64,
    text: String,
}

fn posts(c: &Cluster) -> Vec<Post> {
    let out = c.miner_ok(&["proving", "info"]);
    out.lines()
        .filter(|l| l.starts_with("  dl ") && !l.contains("FAILED"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let margin = l.split("margin ").nth(1).unwrap().split('s').next().unwrap().parse().unwrap();
            Post {
                deadline: f[1].parse().unwrap(),
                open: f[2].trim_start_matches('@').parse().unwrap(),
                prover: f[4].to_string(),
                margin,
                text: l.to_string(),
            }
        })
        .collect()
}

fn show(c: &Cluster, miner: &Proc) -> String {
    let info = String::from_utf8_lossy(&c.miner_cmd(&["proving", "info"]).stdout).to_string();
    format!("{info}\n--- miner log:\n{}", tail(&miner.log(), 60))
}

fn missed(c: &Cluster) -> String {
    let info = c.miner_ok(&["proving", "info"]);
    info.lines().find(|l| l.starts_with("Missed deadlines:")).unwrap().to_string()
}

/// Seal `n` CC sectors on the miner itself and wait until each is Proving and three more
/// deadline instances were proven after the last one landed. Returns the proofs seen and how
/// many of them were made while sectors were still sealing.
fn seal_and_prove(c: &Cluster, miner: &Proc, n: u64) -> (Vec<Post>, usize) {
    let started = Instant::now();
    // The first sector alone, then the others: they seal while the first one is proven.
    assert_eq!(c.miner_ok(&["sectors", "pledge"]).trim(), "Created CC sector:  1");
    wait_until(Duration::from_secs(300), "the first sector to reach Proving", || sector_state(c, 1) == "Proving");
    for i in 2..=n {
        assert_eq!(c.miner_ok(&["sectors", "pledge"]).trim(), format!("Created CC sector:  {i}"));
    }
    let mut proven_while_sealing = 0;
    wait_until(Duration::from_secs(420), "every sector to reach Proving", || {
        let sealing = (1..=n).any(|i| sector_state(c, i) != "Proving");
        if sealing {
            proven_while_sealing = posts(c).len();
        }
        !sealing
    });
    println!("sealed {n} sectors in {:?}", started.elapsed());
    let last_open = posts(c).iter().map(|p| p.open).max().unwrap_or(0);
    wait_or_show(
        Duration::from_secs(120),
        "3 more WindowPoSts",
        || show(c, miner),
        || posts(c).iter().filter(|p| p.open > last_open).count() >= 3,
    );
    let all = posts(c);
    println!("WindowPoSt ({proven_while_sealing} while sealing):");
    for p in &all {
        println!("  {}", p.text);
    }
    assert!(all.iter().all(|p| p.prover == "miner-host" && p.margin > 0.0));
    let opens: std::collections::BTreeSet<i64> = all.iter().map(|p| p.open).collect();
    assert!(opens.len() >= 3, "at least 3 deadline instances proven: {opens:?}");
    assert_eq!(missed(c), "Missed deadlines: 0 (sectors penalised: 0)");
    let dl = c.miner_ok(&["proving", "deadlines"]);
    println!("{dl}");
    assert!(dl.lines().nth(2).unwrap().contains("2 (0)"), "sectors 1 and 2 share deadline 0's partition:\n{dl}");
    (all, proven_while_sealing)
}

/// The sectors of deadline 0's partition, in the order its last proof lists them.
fn partition_mates(all: &[Post]) -> Vec<u64> {
    let last_dl0 = all.iter().rfind(|p| p.deadline == 0).unwrap();
    let proven = last_dl0.text.split("proven [").nth(1).unwrap().split(']').next().unwrap();
    proven.split(", ").map(|n| n.parse().unwrap()).collect()
}

/// Deadline 0's partition holds two sectors (in the order they were proven): delete one's
/// sealed file and wait for a proof of that partition by `prover` that skips it. Returns the
/// sector taken away.
fn take_a_sector_away(c: &Cluster, miner: &Proc, all: &[Post], prover: &str) -> u64 {
    let mates = partition_mates(all);
    let (gone, kept) = (mates[0], mates[1]);
    // Moved away, to be put back by `put_it_back`.
    std::fs::rename(c.path(&format!("miner/sealed/s-t01000-{gone}")), c.path(&format!("sealed-{gone}.away"))).unwrap();
    let skipped = format!("proven [{kept}], skipped (faulty) [{gone}]");
    let t = wait_or_show(
        Duration::from_secs(90),
        "deadline 0 proven without the sector whose sealed file is gone",
        || show(c, miner),
        || posts(c).iter().any(|p| p.deadline == 0 && p.prover.starts_with(prover) && p.text.contains(&skipped)),
    );
    println!("faulty sector {gone} skipped after {t:?}; sector {kept} of its partition still proves");
    let dl = c.miner_ok(&["proving", "deadlines"]);
    assert!(dl.lines().nth(2).unwrap().contains("2 (1)"), "one sector is faulty:\n{dl}");
    // Lotus's `proving faults`, read from the chain through the full node.
    let faults = c.miner_ok(&["proving", "faults"]);
    assert_eq!(
        faults,
        format!("Miner: f01000\ndeadline  partition  sectors\n0         0          {gone}\n"),
        "{faults}"
    );
    let dl0 = c.miner_ok(&["proving", "deadline", "-n", "0"]);
    assert!(dl0.starts_with("Deadline Index:           0\nDeadline Open:            "), "{dl0}");
    assert!(dl0.contains("Partitions:               1\n"), "{dl0}");
    assert!(dl0.contains("\tAll Sectors:               2\n"), "{dl0}");
    assert!(dl0.contains("\tFaulty Sectors:            1\n"), "{dl0}");
    assert!(dl0.contains(&format!("\tFaulty Sector Numbers:      [{gone}]\n")), "{dl0}");
    let bits = c.miner_ok(&["proving", "deadline", "--bitfield", "0"]);
    assert!(bits.contains("\tAll Sectors:               2 (bitfield - runs "), "{bits}");
    gone
}

/// The faulty sector's file comes back: the miner checks it, declares it recovered
/// (DeclareFaultsRecovered) before its deadline opens again, and proves it there; the chain
/// then lists no fault.
fn put_it_back(c: &Cluster, miner: &Proc, gone: u64) {
    let since = posts(c).iter().map(|p| p.open).max().unwrap_or(0);
    std::fs::rename(c.path(&format!("sealed-{gone}.away")), c.path(&format!("miner/sealed/s-t01000-{gone}"))).unwrap();
    let t = wait_or_show(
        Duration::from_secs(120),
        "the recovered sector proven in deadline 0 again",
        || show(c, miner),
        || {
            posts(c).iter().any(|p| {
                let proven = p.text.split("proven [").nth(1).and_then(|r| r.split(']').next()).unwrap_or("");
                p.deadline == 0
                    && p.open > since
                    && proven.split(", ").any(|n| n == gone.to_string())
                    && p.text.contains("skipped (faulty) []")
            })
        },
    );
    println!("sector {gone} recovered and proven {t:?} after its file came back");
    let log = miner.log();
    let declared = log
        .lines()
        .find(|l| l.contains("recovered (DeclareFaultsRecovered)") && l.contains(&format!("[{gone}]")))
        .unwrap_or_else(|| panic!("no recovery declared for sector {gone}:\n{}", tail(&log, 40)));
    println!("{declared}");
    assert_eq!(c.miner_ok(&["proving", "faults"]), "Miner: f01000\ndeadline  partition  sectors\n");
    let dl = c.miner_ok(&["proving", "deadlines"]);
    assert!(dl.lines().nth(2).unwrap().contains("2 (0)"), "no sector is faulty any more:\n{dl}");
}

/// Real proofs: the miner proves its own sectors while its Commit2 keeps both cores busy, and
/// a partition with an unreadable sector is still proven for the other.
#[test]
fn a_real_window_post_passes_under_sealing_load_and_skips_an_unreadable_sector() {
    let _serial = serial();
    let c = Cluster::new();
    c.write_config(&config(false, 0.0));
    let miner = c.start_miner();
    let (all, proven_while_sealing) = seal_and_prove(&c, &miner, 2);
    assert!(proven_while_sealing >= 1, "some proofs were made while the miner's Commit2 ran");
    // A real snap deal (issue 15) on the sector that stays, while the other one is taken away
    // and put back: the update SNARK verified by the chain, the sector then proven from the
    // real update cache, the data back through unseal with the key regenerated by real SDR.
    let kept = partition_mates(&all)[1];
    let data = common::snap::data(1500, 7);
    let before = common::snap::snap_start(&c, kept, &data);
    let gone = take_a_sector_away(&c, &miner, &all, "miner-host");
    assert!(c.miner_ok(&["proving", "info"]).contains("Faults:      1 (50.00%)"));
    put_it_back(&c, &miner, gone);
    assert_eq!(missed(&c), "Missed deadlines: 0 (sectors penalised: 0)");
    common::snap::snap_finish(&c, &miner, kept, &data, &before, Duration::from_secs(420));
    assert_eq!(missed(&c), "Missed deadlines: 0 (sectors penalised: 0)");
}

/// Mock proofs: PoSt workers take over from the miner, a skipped sector is faulty, a killed
/// PoSt worker's deadlines go to the other, and blocks are mined.
#[test]
fn post_workers_prove_skip_fail_over_and_mine_on_mock_proofs() {
    let c = Cluster::mock("PC1=500ms,C2=2s");
    c.write_config(&config(false, 0.0));
    let miner = c.start_miner();
    let (all, _) = seal_and_prove(&c, &miner, 3);

    // Built-in WindowPoSt off, two PoSt workers.
    c.miner_ok(&["stop"]);
    drop(miner);
    c.write_config(&config(true, 0.05));
    let miner2 = c.start_miner();
    let mut post_a = c.start_worker("post-a", &["run", "--listen", "127.0.0.1:0", "--name", "post-a", "--windowpost"]);
    let _post_b = c.start_worker("post-b", &["run", "--listen", "127.0.0.1:0", "--name", "post-b", "--windowpost"]);
    wait_until(Duration::from_secs(30), "both PoSt workers to register", || {
        c.miner_ok(&["proving", "workers"]).matches("Worker ").count() == 2
    });
    assert!(c.miner_ok(&["info"]).contains("Workers: Seal(1) WdPoSt(2) WinPoSt(0)"));
    let gone = take_a_sector_away(&c, &miner2, &all, "post-");
    assert!(c.miner_ok(&["proving", "info"]).contains("Faults:      1 (33.33%)"));
    put_it_back(&c, &miner2, gone);

    // One PoSt worker gone; the next deadlines are proven by the other.
    post_a.kill();
    let last_open = posts(&c).iter().map(|p| p.open).max().unwrap_or(0);
    let after = || posts(&c).into_iter().filter(|p| p.open > last_open).collect::<Vec<_>>();
    let t = wait_or_show(
        Duration::from_secs(90),
        "two deadlines proven after post-a was killed",
        || show(&c, &miner2),
        || after().len() >= 2,
    );
    println!("proven without post-a after {t:?}");
    let after = after();
    assert!(after.iter().all(|p| p.prover == "post-b"), "{after:?}");
    assert_eq!(missed(&c), "Missed deadlines: 0 (sectors penalised: 0)");

    // Elections (5% per epoch) are won with WinningPoSts the chain checked.
    wait_or_show(
        Duration::from_secs(120),
        "a block to be mined",
        || show(&c, &miner2),
        || {
            c.miner_ok(&["proving", "info"])
                .lines()
                .any(|l| l.starts_with("Blocks won:  ") && !l.starts_with("Blocks won:  0"))
        },
    );
    println!("{}", c.miner_ok(&["info"]));
}
