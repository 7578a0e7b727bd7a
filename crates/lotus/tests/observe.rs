//! What an operator watches: `/debug/metrics` on the miner and on a worker, read with a
//! Prometheus text-format parser after a mock-proof sealing run.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn metrics_of_a_mock_sealing_run_on_the_miner_and_the_worker() {
    let (c, _miner, _w) = mock_miner_and_host_w("[Devnet]\n  BlockDelay = \"500ms\"\n  SeedDelayEpochs = 2\n");
    // `--wait` follows the sector: one line per state, the last one Proving.
    let followed = c.miner_ok(&["sectors", "pledge", "--wait"]);
    let states: Vec<&str> = followed.lines().skip(1).filter_map(|l| l.split_whitespace().nth(2)).collect();
    // Polled twice a second: the mock's millisecond states may pass unseen; the chain waits
    // (each message waits an epoch of 500 ms for its confidence, the seed two) cannot all.
    let waits = ["PreCommitBatchWait", "WaitSeed", "CommitAggregateWait"];
    assert!(states.iter().any(|s| waits.contains(s)) && states.len() >= 3, "{followed}");
    assert_eq!(states.last(), Some(&"Proving"), "{followed}");
    assert_eq!(sector_state(&c, 1), "Proving");

    let m = scrape(&format!("127.0.0.1:{}", c.port()));
    let on_w = |task| [("task_type", task), ("worker_hostname", "host-w")];
    // Every sealing call of the sector ran on host-w (the miner's own worker seals nothing),
    // once each, and each came back.
    for task in
        ["seal/v0/addpiece", "seal/v0/precommit/1", "seal/v0/precommit/2", "seal/v0/commit/1", "seal/v0/commit/2"]
    {
        assert_eq!(sum(&m, "lotus_sealing_worker_calls_started", &on_w(task)), Some(1.0), "{task} started");
        assert_eq!(sum(&m, "lotus_sealing_worker_calls_returned_count", &on_w(task)), Some(1.0), "{task} returned");
        assert_eq!(sum(&m, "lotus_sealing_worker_calls_returned_ms_count", &on_w(task)), Some(1.0), "{task} timed");
        assert_eq!(sum(&m, "lotus_sched_task_queue_wait_ms_count", &[("task_type", task)]), Some(1.0), "{task} waited");
    }
    assert_eq!(sum(&m, "lotus_sealing_states", &[("sector_state", "Proving")]), Some(1.0));
    assert_eq!(sum(&m, "lotus_sealing_states", &[]), Some(1.0), "one sector, in one state");
    assert_eq!(sum(&m, "lotus_sealing_worker_untracked_calls_returned", &[]), Some(0.0));
    // Two storage paths (the miner's and the worker's), each with Lotus's labels.
    let paths = m.samples.iter().filter(|s| s.metric == "lotus_storage_path_capacity_bytes").count();
    assert_eq!(paths, 2, "one capacity series per path");
    assert!(m.samples.iter().all(|s| s.metric != "lotus_storage_path_capacity_bytes"
        || (s.labels.get("path_seal").is_some()
            && s.labels.get("path_storage").is_some()
            && s.labels.get("storage_id").is_some())));
    assert_eq!(sum(&m, "lotus_sched_worker_enabled", &[("worker_hostname", "host-w")]), Some(1.0));
    assert_eq!(sum(&m, "lotus_sched_worker_cpu_use_threads", &[("worker_hostname", "host-w")]), Some(0.0), "idle");
    assert_eq!(sum(&m, "lotus_sched_queued_tasks", &[]), None, "nothing queued");
    assert!(sum(&m, "lotus_sched_assigner_cycle_ms_count", &[]).unwrap() >= 5.0, "a pass per task at least");
    assert!(sum(&m, "process_resident_memory_bytes", &[]).unwrap() > 0.0);

    let w = scrape(&c.worker_addr("worker"));
    for method in ["AddPiece", "SealPreCommit1", "SealPreCommit2", "SealCommit1", "SealCommit2"] {
        let done = sum(&w, "lotus_worker_tasks_finished", &[("method", method), ("outcome", "ok")]);
        assert_eq!(done, Some(1.0), "{method} on the worker");
        assert_eq!(sum(&w, "lotus_worker_task_ms_count", &[("method", method)]), Some(1.0), "{method} timed");
    }
    assert_eq!(sum(&w, "lotus_worker_tasks_running", &[]), Some(0.0), "nothing runs once the sector proves");
    assert_eq!(sum(&w, "lotus_worker_tasks_finished", &[("outcome", "error")]), None, "no task failed");
    assert!(sum(&w, "process_resident_memory_bytes", &[]).unwrap() > 0.0);
}

/// A first `fetch-params 2KiB` takes about twelve minutes on two cores: it says what it
/// generates, how long that took where it was measured, and how far it is every 10 s, and
/// none of the proofs library's INFO lines.
#[test]
fn fetch_params_on_an_empty_cache_shows_progress_and_no_library_lines() {
    use std::io::BufRead;
    let cache = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(MINER)
        .args(["fetch-params", "2KiB"])
        .env("FIL_PROOFS_PARAMETER_CACHE", cache.path())
        .env_remove("RUST_LOG")
        .env_remove("GOLOG_LOG_LEVEL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(std::time::Instant, String)>::new()));
    let l = lines.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            l.lock().unwrap().push((std::time::Instant::now(), line));
        }
    });
    let elapsed = || lines.lock().unwrap().iter().filter(|(_, l)| l.contains(" elapsed of about ")).count();
    let show = || lines.lock().unwrap().iter().map(|(_, l)| l.clone()).collect::<Vec<_>>().join("\n");
    wait_or_show(Duration::from_secs(40), "two progress lines", show, || elapsed() >= 2);
    child.kill().unwrap();
    child.wait().unwrap();
    let lines = lines.lock().unwrap().clone();
    let first = &lines[0].1;
    assert!(
        first.starts_with(
            "generating PoRep (StackedDrg) parameters for 2KiB sectors (devnet only, about 11m 17s on 2 cores)"
        ),
        "{first}"
    );
    let ticks: Vec<_> = lines.iter().filter(|(_, l)| l.contains(" elapsed of about ")).collect();
    let t = &ticks[0].1;
    assert!(t.starts_with("  PoRep (StackedDrg): 1") && t.ends_with("s elapsed of about 11m 17s"), "{t}");
    let gap = ticks[1].0.duration_since(ticks[0].0);
    assert!(gap < Duration::from_secs(12), "progress every 10 s, not {gap:?}");
    assert!(lines.iter().all(|(_, l)| !l.contains("INFO")), "the proofs library's INFO lines:\n{lines:#?}");
}
