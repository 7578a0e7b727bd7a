//! End to end, with real processes on loopback: the seal-workers guide's walk (init, token,
//! workers with phase flags, `sealing workers`), liveness (killed worker, miner restart), and
//! the old command names.

mod common;

use common::*;
use std::time::Duration;

/// The guide's PreCommit1 worker.
const PC1_WORKER: &[&str] = &[
    "run",
    "--listen",
    "127.0.0.1:0",
    "--name",
    "pc1-box",
    "--addpiece=false",
    "--precommit1=true",
    "--unseal=true",
    "--precommit2=false",
    "--commit=false",
];

fn types_line(block: &str) -> Vec<String> {
    block
        .lines()
        .find_map(|l| l.trim().strip_prefix("TYPES: "))
        .map(|l| l.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

fn assert_resource_lines(host: &str, block: &str) {
    for (label, suffix) in [("CPU:  [", "core(s) in use"), ("RAM:  [", "GiB"), ("VMEM: [", "GiB")] {
        let line = block
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("{host}: no {label} line in\n{block}"));
        let bar = line.split('[').nth(1).unwrap().split(']').next().unwrap();
        assert_eq!(bar.chars().count(), 64, "{host}: {label} bar is 64 columns");
        assert!(bar.chars().all(|c| c == '|' || c == ' '));
        assert!(line.trim_end().ends_with(suffix), "{host}: {line}");
    }
}

#[test]
fn guide_walk_miner_and_two_workers() {
    let c = Cluster::new();
    let mut miner = c.start_miner();

    // Worker A: the guide's PreCommit1 worker. Worker B: PreCommit2 and Commit.
    let mut a = c.start_worker("wa", PC1_WORKER);
    let b = c.start_worker(
        "wb",
        &[
            "run",
            "--listen",
            "127.0.0.1:0",
            "--name",
            "gpu-box",
            "--add-piece=false",
            "--precommit1=false",
            "--unseal=false",
            "--precommit2=true",
            "--commit=true",
        ],
    );
    wait_until(Duration::from_secs(30), "three workers in `sealing workers`", || c.workers().len() == 3);

    let workers = c.workers();
    let by_host = |h: &str| {
        workers.iter().find(|(host, _)| host == h).unwrap_or_else(|| panic!("{h} not listed: {workers:?}")).1.clone()
    };
    let a_block = by_host("pc1-box");
    let a_types = types_line(&a_block);
    for t in ["PC1", "UNS", "GET", "C1", "FIN"] {
        assert!(a_types.contains(&t.to_string()), "worker A lacks {t}: {a_types:?}");
    }
    for t in ["AP", "PC2", "C2"] {
        assert!(!a_types.contains(&t.to_string()), "worker A must not take {t}: {a_types:?}");
    }
    let b_types = types_line(&by_host("gpu-box"));
    for t in ["PC2", "C2"] {
        assert!(b_types.contains(&t.to_string()), "worker B lacks {t}: {b_types:?}");
    }
    for t in ["AP", "PC1", "UNS"] {
        assert!(!b_types.contains(&t.to_string()), "worker B must not take {t}: {b_types:?}");
    }
    // The miner's own worker (all Allow* default to true) is listed too.
    let local = workers.iter().find(|(h, _)| h != "pc1-box" && h != "gpu-box").expect("the miner's own worker");
    assert!(types_line(&local.1).contains(&"AP".to_string()));
    for (host, block) in &workers {
        assert_resource_lines(host, block);
    }
    assert!(c.miner_ok(&["info"]).contains("Workers: Seal(3) WdPoSt(0) WinPoSt(0)"));

    // The oldest guide's command, under the oldest name.
    let legacy = symlink(MINER, c.dir.path(), "lotus-storage-miner");
    let out = std::process::Command::new(&legacy)
        .env("LOTUS_STORAGE_PATH", c.path("miner"))
        .env_remove("LOTUS_MINER_PATH")
        .args(["workers", "list"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(split_workers(&String::from_utf8_lossy(&out.stdout)).len(), 3);

    // A killed worker leaves the list within 30 s and comes back when restarted.
    a.kill();
    let t = wait_until(Duration::from_secs(30), "the killed worker to leave", || c.workers().len() == 2);
    println!("killed worker left the list after {t:?}");
    let _a = c.start_worker("wa", PC1_WORKER);
    wait_until(Duration::from_secs(30), "the restarted worker to be listed", || {
        c.workers().iter().any(|(h, _)| h == "pc1-box") && c.workers().len() == 3
    });

    // After a miner restart both workers are listed again within 15 s.
    c.miner_ok(&["stop"]);
    let _ = miner.child.wait();
    let _miner = c.start_miner();
    let t = wait_until(Duration::from_secs(15), "both workers back after the miner restart", || c.workers().len() == 3);
    println!("workers re-registered {t:?} after the miner answered again");
    drop(b);
}

#[test]
fn worker_refuses_bad_setups_with_clear_errors() {
    let c = Cluster::new();
    let _miner = c.start_miner();
    let _w = c.start_worker("w1", &["run", "--listen", "127.0.0.1:0"]);
    wait_until(Duration::from_secs(30), "the worker to register", || c.workers().len() == 2);
    let listen = c.worker_addr("w1");

    let run = |repo: &str, args: &[&str]| {
        let out = c.worker_command(repo, args).output().unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let e = run("w1", &["run", "--listen", "127.0.0.1:0"]);
    assert!(e.contains("is locked by another running process"), "{e}");
    let e = run("w2", &["run", "--listen", &listen]);
    assert!(e.contains("another worker (or process) uses that port"), "{e}");
    let e = run("w3", &["run", "--windowpost", "--precommit1"]);
    assert!(e.contains("cannot be combined with sealing task flags"), "{e}");
    let out = c.worker_command("w4", &["run"]).env("MINER_API_INFO", "not-a-valid-string").output().unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("Expected TOKEN:/ip4/"), "{e}");

    // The old name answers like the new one.
    let legacy = symlink(WORKER, c.dir.path(), "lotus-seal-worker");
    let out = std::process::Command::new(legacy).args(["resources", "--default"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l == "PC1_32G_MIN_MEMORY=60129542144"), "{text}");
}

/// The mock proof backend never mixes with real proofs: a real miner refuses a mock-proof
/// worker (and says how to start it), a mock miner a real one, and the mock miner announces
/// its mode in `info` and on each of its workers.
#[test]
fn mock_and_real_proof_nodes_never_mix() {
    let real = Cluster::new();
    let _m = real.start_miner();
    let w = real.start_worker_on("mock-w", &["run", "--listen", "127.0.0.1:0"], true);
    wait_or_show(
        Duration::from_secs(30),
        "the miner to refuse the mock worker",
        || w.log(),
        || w.log().contains("runs mock proofs and this miner real ones: start the worker without --mock-proofs"),
    );
    assert_eq!(real.workers().len(), 1, "only the miner's own worker");

    let mock = Cluster::mock("");
    mock.write_config("[Devnet]\n");
    let _m = mock.start_miner();
    let info = mock.miner_ok(&["info"]);
    assert!(info.contains("Proofs: MOCK"), "{info}");
    let _joined = mock.start_worker("w", &["run", "--listen", "127.0.0.1:0", "--name", "mock-box"]);
    wait_until(Duration::from_secs(30), "the mock worker to join", || mock.workers().len() == 2);
    let text = mock.miner_ok(&["sealing", "workers"]);
    assert_eq!(text.matches("(mock proofs)").count(), 2, "{text}");
    let r = mock.start_worker_on("real-w", &["run", "--listen", "127.0.0.1:0", "--name", "real-box"], false);
    wait_or_show(
        Duration::from_secs(30),
        "the mock miner to refuse the real worker",
        || r.log(),
        || r.log().contains("runs real proofs and this miner mock ones: start the worker with --mock-proofs"),
    );
    assert_eq!(mock.workers().len(), 2);
}

#[test]
fn worker_without_api_info_uses_the_local_miner_repo() {
    // The oldest guide: on the miner's machine, `lotus-seal-worker run` finds the miner by its
    // repo (LOTUS_STORAGE_PATH) with no MINER_API_INFO.
    let c = Cluster::new();
    let _miner = c.start_miner();
    let mut cmd = c.worker_command("w", &["run", "--listen", "127.0.0.1:0"]);
    cmd.env_remove("MINER_API_INFO").env_remove("LOTUS_MINER_PATH").env("LOTUS_STORAGE_PATH", c.path("miner"));
    let log = std::fs::File::create(c.path("w.log")).unwrap();
    let _w = Proc { child: cmd.stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap(), log: c.path("w.log") };
    wait_until(Duration::from_secs(30), "the worker to register", || c.workers().len() == 2);
}

#[test]
fn unresponsive_worker_is_disabled_then_enabled_again() {
    let c = Cluster::new();
    let _miner = c.start_miner();
    let w = c.start_worker("w", &["run", "--listen", "127.0.0.1:0", "--name", "sleepy"]);
    wait_until(Duration::from_secs(30), "the worker to register", || c.workers().len() == 2);
    let pid = w.child.id().to_string();
    let signal = |sig: &str| assert!(std::process::Command::new("kill").args([sig, &pid]).status().unwrap().success());
    let disabled = |c: &Cluster| {
        let out = c.miner_ok(&["sealing", "workers"]);
        out.lines().any(|l| l.contains("host sleepy (disabled)"))
    };
    signal("-STOP");
    let t = wait_until(Duration::from_secs(30), "the stopped worker to show (disabled)", || disabled(&c));
    println!("stopped worker disabled after {t:?}");
    assert_eq!(c.workers().len(), 2, "a timed-out worker stays listed");
    signal("-CONT");
    wait_until(Duration::from_secs(30), "the worker to be enabled again", || !disabled(&c) && c.workers().len() == 2);
}

/// `[Storage] WorkerLostTimeout`: a worker silent for longer is removed (its running tasks
/// would run again elsewhere); when it answers again it notices the miner stopped checking it
/// and registers again by itself.
#[test]
fn a_lost_worker_is_removed_after_the_timeout_and_registers_again() {
    let c = Cluster::new();
    std::fs::write(c.path("miner/config.toml"), "[Storage]\n  WorkerLostTimeout = \"12s\"\n").unwrap();
    let miner = c.start_miner();
    let w = c.start_worker("w", &["run", "--listen", "127.0.0.1:0", "--name", "sleepy"]);
    wait_until(Duration::from_secs(30), "the worker to register", || c.workers().len() == 2);
    let pid = w.child.id().to_string();
    let signal = |sig: &str| assert!(std::process::Command::new("kill").args([sig, &pid]).status().unwrap().success());
    signal("-STOP");
    let t = wait_until(Duration::from_secs(60), "the silent worker to be removed", || c.workers().len() == 1);
    println!("silent worker removed after {t:?}");
    assert!(miner.log().contains("WorkerLostTimeout"), "{}", tail(&miner.log(), 20));
    signal("-CONT");
    let t = wait_until(Duration::from_secs(60), "the worker to register again", || {
        c.workers().iter().any(|(h, b)| h == "sleepy" && !b.contains("(disabled)"))
    });
    println!("worker back after {t:?}");
    assert!(w.log().contains("registering again"), "{}", tail(&w.log(), 20));
}

#[test]
fn miner_refuses_a_second_daemon_and_a_malformed_config() {
    let c = Cluster::new();
    let _miner = c.start_miner();
    let out = c.miner_cmd(&["run"]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("is locked by another running process"), "{e}");
    c.miner_ok(&["stop"]);

    std::fs::write(
        c.path("miner").join("config.toml"),
        "[API]\n  ListenAddress = \"/ip4/127.0.0.1/tcp/1/http\"\n[Storage]\n  ParallelFetchLimit = \"ten\"\n",
    )
    .unwrap();
    let out = c.miner_cmd(&["run"]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a malformed config must be refused");
    assert!(e.contains("config.toml:4: Storage.ParallelFetchLimit"), "{e}");
    let out = c.miner_cmd(&["init", "--sector-size", "2KiB"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"), "init twice is refused");
    let out = c.miner_cmd(&["init", "--sector-size", "3KiB"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid sector size \"3KiB\""));
}

#[test]
fn cpu_affinity_limits_the_reported_cores() {
    // The guide: one PreCommit1 worker per core with systemd CPUAffinity= (here: taskset).
    let c = Cluster::new();
    let _miner = c.start_miner();
    let cmd = c.worker_command("w", PC1_WORKER);
    let log = std::fs::File::create(c.path("w.log")).unwrap();
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let mut pinned = std::process::Command::new("taskset");
    pinned.arg("-c").arg("0").arg(program).args(args);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => pinned.env(k, v),
            None => pinned.env_remove(k),
        };
    }
    let _w = Proc { child: pinned.stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap(), log: c.path("w.log") };
    wait_until(Duration::from_secs(30), "the pinned worker to register", || c.workers().len() == 2);
    let block = c.workers().into_iter().find(|(h, _)| h == "pc1-box").unwrap().1;
    assert!(block.contains("] 0/1 core(s) in use"), "a worker pinned to one core reports one CPU:\n{block}");
    let out = c.worker_command("w", &["info"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("CPUs: 1;"), "{}", String::from_utf8_lossy(&out.stdout));
}
