//! A full sealing path (reference §5.3 ErrTempAllocateSpace), on the mock proof backend (the
//! space accounting and the files are the same as with real proofs): worker W runs
//! AddPiece and PreCommit1 on one path limited (`--max-storage`) to about one 2KiB sector's
//! sealing files; the miner runs the rest. Sector 1 seals; its unsealed file stays on W until
//! it is finalized. Sector 2, pledged meanwhile, finds no room on W: its task fails with code
//! 102 and a message naming the path and the bytes missing; it retries, waits, and completes
//! once sector 1's files have left W. Sector 1 never fails.

mod common;

use common::*;
use std::time::Duration;

const CONFIG: &str = r#"
[Storage]
  AllowAddPiece = false
  AllowPreCommit1 = false
  AllowUnseal = false
  LocalWorkerName = "miner-host"
[Sealing]
  MinRetryTime = "2s"
[Devnet]
  BlockDelay = "500ms"
  SeedDelayEpochs = 4
  WinRate = 0.0
"#;

/// 2KiB sealing estimates (the overhead table): unsealed 2,048 bytes, sealed 2,048, cache
/// 14.1 × 2,048. PreCommit1 needs 30,924 bytes for sealed + cache: with one unsealed file on the
/// path 34,000 bytes leave 31,952 (it fits), with two 29,904 (it does not).
const MAX_STORAGE: &str = "34000";

#[test]
fn a_full_path_fails_with_code_102_and_the_sector_completes_once_space_is_freed() {
    // Sector 1's Commit2 is long enough for sector 2 to meet the full path meanwhile (its
    // unsealed file stays on W until it is finalized).
    let c = Cluster::mock("C2=15s");
    c.write_config(CONFIG);
    let miner = c.start_miner();
    let _w = c.start_worker(
        "w",
        &[
            "run",
            "--listen",
            "127.0.0.1:0",
            "--name",
            "small-disk",
            "--no-local-storage",
            "--no-default",
            "--addpiece",
            "--precommit1",
        ],
    );
    wait_until(Duration::from_secs(30), "the worker to register", || c.workers().len() == 2);
    let path = c.path("small-path");
    let out = c
        .worker_command(
            "w",
            &["storage", "attach", "--init", "--seal", "--max-storage", MAX_STORAGE, path.to_str().unwrap()],
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    assert_eq!(c.miner_ok(&["sectors", "pledge"]).trim(), "Created CC sector:  1");
    wait_until(Duration::from_secs(60), "sector 1 to be past PreCommit1", || {
        matches!(sector_state(&c, 1).as_str(), "WaitSeed" | "Committing")
    });
    assert_eq!(c.miner_ok(&["sectors", "pledge"]).trim(), "Created CC sector:  2");

    let logs = |n: u64| c.miner_ok(&["sectors", "status", "--log", &n.to_string()]);
    let t = wait_or_show(
        Duration::from_secs(60),
        "sector 2 to fail for lack of space",
        || format!("{}\n{}\n{}", logs(1), logs(2), tail(&miner.log(), 30)),
        || logs(2).contains("(code 102)"),
    );
    println!("a task of sector 2 failed with code 102 after {t:?}");
    let (failed, other) = (2, 1);
    let log = logs(failed);
    let line = log.lines().find(|l| l.contains("(code 102)")).unwrap().to_string();
    println!("{line}");
    assert!(line.contains(path.to_str().unwrap()), "the error names the full path: {line}");
    assert!(line.contains("bytes free") && line.contains(" short"), "and the bytes missing: {line}");

    wait_or_show(
        Duration::from_secs(420),
        "both sectors to reach Proving",
        || format!("{}\n{}\n{}", logs(1), logs(2), tail(&miner.log(), 30)),
        || sector_state(&c, 1) == "Proving" && sector_state(&c, 2) == "Proving",
    );
    let other_log = logs(other);
    assert!(!other_log.contains("Failed"), "the other sector was never affected:\n{other_log}");
    let log = logs(failed);
    println!("{log}");
    assert!(log.contains("[retry]\tretrying PreCommit1"), "the failed sector retried:\n{log}");
    println!("{}", c.miner_ok(&["sectors", "list"]));
}
