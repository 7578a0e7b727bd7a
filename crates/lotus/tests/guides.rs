//! What the guides tell an operator to type, under the names they use.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

/// `make install` puts the four names in `$DESTDIR$PREFIX/bin`; the old names run the same
/// binaries.
#[test]
fn make_install_installs_the_four_names() {
    let dest = tempfile::tempdir().unwrap();
    let bin_dir = std::path::Path::new(MINER).parent().unwrap();
    let out = Command::new("make")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        // The test binaries are built already: install them, build nothing.
        .args(["install", "CARGO=true", "PREFIX=/opt/lotus"])
        .arg(format!("DESTDIR={}", dest.path().display()))
        .arg(format!("TARGET_DIR={}", bin_dir.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "make install: {}", String::from_utf8_lossy(&out.stderr));
    let bin = dest.path().join("opt/lotus/bin");
    for name in ["lotus-miner", "lotus-worker", "lotus-storage-miner", "lotus-seal-worker"] {
        let out = Command::new(bin.join(name)).arg("--help").output().unwrap();
        assert!(out.status.success(), "{name} --help failed");
    }
}

/// The first guide: `lotus-storage-miner init` writes `~/.lotusstorage`; editing
/// `ListenAddress` in the fresh `config.toml` moves the miner.
#[test]
fn the_oldest_name_uses_lotusstorage_and_listen_address_is_editable() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let old = symlink(MINER, dir.path(), "lotus-storage-miner");
    let chain = start_devnet(&dir.path().join("devnet"), &[], false);
    let cmd = |args: &[&str]| {
        let mut c = Command::new(&old);
        c.env("HOME", &home)
            .env("FULLNODE_API_INFO", &chain.api_info)
            .env_remove("LOTUS_MINER_PATH")
            .env_remove("LOTUS_STORAGE_PATH")
            .env_remove("LOTUS_API_LISTENADDRESS")
            .env("RUST_LOG", "info")
            .args(args);
        c
    };
    let out = cmd(&["init", "--sector-size", "2KiB", "--confidence", "1"]).output().unwrap();
    assert!(out.status.success(), "init: {}", String::from_utf8_lossy(&out.stderr));
    let config = home.join(".lotusstorage/config.toml");
    let text = std::fs::read_to_string(&config).expect("init writes ~/.lotusstorage/config.toml");
    assert!(!home.join(".lotusminer").exists(), "nothing under ~/.lotusminer");
    let line = "  ListenAddress = \"/ip4/127.0.0.1/tcp/2345/http\"";
    assert!(text.contains(line), "ListenAddress is a live line: {text}");
    // As the guide says: edit it (port 0: any free port, so tests never collide).
    std::fs::write(&config, text.replace(line, "  ListenAddress = \"/ip4/127.0.0.1/tcp/0/http\"")).unwrap();
    let log = dir.path().join("miner.log");
    let f = std::fs::File::create(&log).unwrap();
    let child = cmd(&["run"]).stdout(f.try_clone().unwrap()).stderr(f).spawn().unwrap();
    let miner = Proc { child, log };
    let api = wait_or_show_value(
        Duration::from_secs(30),
        "the miner's api file",
        || miner.log(),
        || std::fs::read_to_string(home.join(".lotusstorage/api")).ok().filter(|t| t.split('/').nth(4).is_some()),
    );
    let port: u16 = api.trim().split('/').nth(4).unwrap().parse().unwrap();
    assert!(port != 2345 && port != 0, "the miner moved to the edited address: {api}");
    let mut info = String::new();
    wait_or_show(
        Duration::from_secs(20),
        "`lotus-storage-miner info` to answer",
        || miner.log(),
        || {
            let out = cmd(&["info"]).output().unwrap();
            info = String::from_utf8_lossy(&out.stdout).to_string();
            out.status.success()
        },
    );
    assert!(info.contains("Miner:"), "{info}");
}

/// `storage detach|redeclare` on a worker, `version` and `wait-api` on the miner, as Lotus's
/// CLI reference has them.
/// A mock-proof miner with fast epochs and one worker (repo `worker`, host `host-w`) whose
/// path the miner's index lists.
fn mock_miner_and_worker() -> (Cluster, Proc, Proc) {
    let c = Cluster::mock("");
    c.write_config("[Devnet]\n  BlockDelay = \"500ms\"\n  SeedDelayEpochs = 2\n");
    let miner = c.start_miner();
    let w = c.start_worker("worker", &["run", "--listen", "127.0.0.1:0", "--name", "host-w"]);
    let urls = || c.miner_ok(&["storage", "list"]).matches("URL: ").count();
    wait_or_show(Duration::from_secs(30), "the worker's path attached", || miner.log(), || urls() == 2);
    (c, miner, w)
}

#[test]
fn storage_detach_redeclare_version_and_wait_api() {
    let (c, miner, _w) = mock_miner_and_worker();
    let urls = || c.miner_ok(&["storage", "list"]).matches("URL: ").count();

    // A sealed sector's files, as `storage list sectors` shows them; no lock outlives a call.
    c.miner_ok(&["sectors", "pledge"]);
    wait_or_show(Duration::from_secs(60), "sector 1 proving", || miner.log(), || sector_state(&c, 1) == "Proving");
    let files = c.miner_ok(&["storage", "list", "sectors"]);
    let header: Vec<&str> = files.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(header, ["Storage", "Sector", "Type", "State", "Primary", "Path", "use", "URLs"], "{files}");
    let sealed = files.lines().find(|l| l.contains("  sealed  ")).unwrap_or_else(|| panic!("{files}"));
    assert!(sealed.contains("  1  ") && sealed.contains("Proving") && sealed.contains("store"), "{files}");
    assert_eq!(c.miner_ok(&["storage", "locks"]), "");
    let all = c.miner_ok(&["info", "all"]);
    let titles: Vec<&str> = all.lines().filter_map(|l| l.strip_prefix("#: ")).collect();
    assert_eq!(titles.first(), Some(&"Version"), "{all}");
    assert!(titles.contains(&"Sealing Worker List") && titles.last() == Some(&"Storage Sector List"), "{all}");
    assert!(!all.contains("ERROR:"), "{all}");

    let worker = |args: &[&str]| c.worker_command("worker", args).output().unwrap();
    let out = worker(&["storage", "redeclare", "--all"]);
    assert!(out.status.success(), "redeclare --all: {}", String::from_utf8_lossy(&out.stderr));
    let out = worker(&["storage", "redeclare"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("You must specify a storage path, or --id, or --all"));
    let path = c.path("worker");
    let out = worker(&["storage", "detach", path.to_str().unwrap()]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("pass --really-do-it"));
    assert_eq!(urls(), 2, "nothing detached without --really-do-it");
    let out = worker(&["storage", "detach", "--really-do-it", path.to_str().unwrap()]);
    assert!(out.status.success(), "detach: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(urls(), 1, "the miner's index forgot the worker's path");
    let cfg = std::fs::read_to_string(c.path("worker/storage.json")).unwrap();
    assert!(!cfg.contains(path.to_str().unwrap()), "a restart does not attach it again: {cfg}");

    let v = c.miner_ok(&["version"]);
    assert!(v.starts_with("Daemon:  ") && v.contains("+api1.5.0") && v.contains("Local: lotus-miner version"), "{v}");
    c.miner_ok(&["wait-api", "--timeout", "5s"]);

    // `log list|set-level` and `config default|updated`.
    let systems = c.miner_ok(&["log", "list"]);
    assert!(systems.lines().any(|l| l == "miner") && systems.lines().any(|l| l == "sealing_sched"), "{systems}");
    c.miner_ok(&["log", "set-level", "--system", "miner", "debug"]);
    c.miner_ok(&["log", "set-level", "warn"]);
    let out = c.miner_cmd(&["log", "set-level", "--system", "chainxchg", "debug"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown log system \"chainxchg\""), "{out:?}");
    let defaults = c.miner_ok(&["config", "default"]);
    assert!(defaults.contains("\n  #ParallelFetchLimit = 10\n"), "{defaults}");
    let updated = c.miner_ok(&["config", "updated"]);
    assert!(updated.contains("\n  MockProofs = true\n"), "the changed key is a live line: {updated}");
    assert!(updated.contains("\n  #ParallelFetchLimit = 10\n"), "{updated}");
}

/// `sectors numbers …`, `sectors remove`, `storage cleanup` and `sealing data-cid`, as Lotus's
/// CLI reference has them: a reservation is skipped by new sectors, a removed sector's files
/// are gone from every storage path, files that come back for it are cleaned up, and a file's
/// piece CID is computed from the bytes the CLI pushes.
#[test]
fn sector_numbers_remove_and_cleanup() {
    let (c, miner, _w) = mock_miner_and_worker();
    c.miner_ok(&["sectors", "numbers", "reserve", "import", "2-3,5"]);
    let out = c.miner_cmd(&["sectors", "numbers", "reserve", "other", "5-6"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("collides with reservation \"import\" at 5"), "{err}");
    assert_eq!(c.miner_ok(&["sectors", "numbers", "reservations"]), "reservations: 1\nimport: count=3 2-3,5\n");
    assert_eq!(c.miner_ok(&["sectors", "numbers", "info"]), "Next free: 1\nAllocated: 0\nReserved: 2-3,5\n");
    c.miner_ok(&["sectors", "pledge"]);
    assert_eq!(c.miner_ok(&["sectors", "pledge"]).trim(), "Created CC sector:  4", "2 and 3 are reserved");
    c.miner_ok(&["sectors", "numbers", "free", "import"]);
    assert!(c.miner_ok(&["sectors", "numbers", "info"]).contains("Allocated: 0-1,4\nReserved: \n"));
    // `--json`: the API's answer as it came, Lotus's bitfields included.
    let meta: serde_json::Value = serde_json::from_str(&c.miner_ok(&["sectors", "numbers", "info", "--json"])).unwrap();
    assert_eq!(meta, serde_json::json!({"Allocated": [0, 2, 2, 1], "Reserved": [0], "InUse": [0, 2, 2, 1], "Next": 2}));
    let list: serde_json::Value = serde_json::from_str(&c.miner_ok(&["sectors", "list", "--json"])).unwrap();
    assert_eq!(list.as_array().map(|l| l.iter().map(|s| s["SectorID"].as_u64().unwrap()).collect()), Some(vec![1, 4]));
    assert_eq!(c.miner_ok(&["sectors", "refs", "--json"]), "{}\n", "no deals, no refs");
    let diag: serde_json::Value =
        serde_json::from_str(&c.miner_ok(&["sealing", "sched-diag", "--force-sched"])).unwrap();
    assert!(diag["SchedInfo"].is_object(), "{diag}");
    let workers: serde_json::Value = serde_json::from_str(&c.miner_ok(&["sealing", "workers", "--json"])).unwrap();
    let hosts: Vec<&str> =
        workers.as_object().unwrap().values().filter_map(|w| w["Info"]["Hostname"].as_str()).collect();
    assert!(hosts.contains(&"host-w"), "WorkerStats by worker ID: {hosts:?}");
    let out = c.worker_command("worker", &["info", "--json"]).output().unwrap();
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(info["Info"]["Hostname"], "host-w", "{info}");
    wait_or_show(Duration::from_secs(60), "sector 1 proving", || miner.log(), || sector_state(&c, 1) == "Proving");

    // `sectors update-state`: a sector run again from the state given.
    let out = c.miner_cmd(&["sectors", "update-state", "1", "FinalizeSector"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--really-do-it"), "{out:?}");
    let out = c.miner_cmd(&["sectors", "update-state", "--really-do-it", "1", "Sealed"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("\"Sealed\" is not a sector state; the states are: Packing,"),
        "{out:?}"
    );
    c.miner_ok(&["sectors", "update-state", "--really-do-it", "1", "FinalizeSector"]);
    wait_or_show(
        Duration::from_secs(30),
        "sector 1 finalized again",
        || miner.log(),
        || {
            let st: serde_json::Value =
                serde_json::from_str(&c.miner_ok(&["sectors", "status", "--json", "1"])).unwrap();
            let log: Vec<&str> = st["Log"].as_array().unwrap().iter().filter_map(|l| l["Message"].as_str()).collect();
            st["State"] == "Proving" && log.contains(&"state forced to FinalizeSector (was Proving)")
        },
    );

    let out = c.miner_cmd(&["sectors", "remove", "1"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--really-do-it"), "{out:?}");
    let out = c.miner_cmd(&["sectors", "remove", "--really-do-it", "77"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("sectorID 77 has not been created yet"), "{out:?}");
    c.miner_ok(&["sectors", "remove", "--really-do-it", "1"]);
    wait_or_show(Duration::from_secs(30), "sector 1 removed", || miner.log(), || sector_state(&c, 1) == "Removed");
    let files = c.miner_ok(&["storage", "list", "sectors"]);
    assert!(!files.lines().any(|l| l.split_whitespace().nth(1) == Some("1")), "no file of sector 1 is left: {files}");
    let sealed = c.path("worker").join("sealed");
    assert!(!sealed.join("s-t01000-1").exists());

    // A file of the removed sector comes back (a task that was still running wrote it).
    std::fs::write(sealed.join("s-t01000-1"), b"late").unwrap();
    let out = c.worker_command("worker", &["storage", "redeclare", "--all"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(c.miner_ok(&["storage", "cleanup", "--removed=false"]), "");
    assert_eq!(c.miner_ok(&["storage", "cleanup"]), "cleaning up data for sector 1\n");
    wait_or_show(
        Duration::from_secs(30),
        "the late file removed",
        || miner.log(),
        || !sealed.join("s-t01000-1").exists() && sector_state(&c, 1) == "Removed",
    );
    assert_eq!(c.miner_ok(&["storage", "cleanup"]), "", "nothing left to clean");

    // `sealing data-cid`: the file is pushed to the miner with the call, zero-filled to the
    // smallest piece that holds it (the mock backend's CommP here).
    let data: Vec<u8> = (0..1500u32).map(|i| (i * 7 % 251) as u8).collect();
    let file = c.dir.path().join("deal.bin");
    std::fs::write(&file, &data).unwrap();
    let out = c.miner_ok(&["sealing", "data-cid", file.to_str().unwrap()]);
    let s = sealing_proofs::Sealer::new(sealing_types::RegisteredSealProof::STACKED_DRG_2KIB_V1_1, 1000, 1)
        .with_backend(sealing_proofs::Backend::Mock);
    let scratch = tempfile::tempdir().unwrap();
    let padded = std::io::Read::take(std::io::Read::chain(&data[..], std::io::repeat(0)), 2032);
    let want = s.add_piece(padded, 2032, &scratch.path().join("p")).unwrap();
    let cid = lotus_api::wire::Commitment::Unsealed.to_cid(&want.commitment);
    assert_eq!(out, format!("{cid}   2048\n"), "Lotus's `PieceCID   Size` line");
    let out = c.miner_cmd(&["sealing", "data-cid", file.to_str().unwrap(), "1KiB"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("file larger than the piece"), "{out:?}");
}

/// `backup` (online, inside `LOTUS_BACKUP_BASE_PATH` only; and `--offline`) and `init restore`:
/// a miner restored from a backup knows its sectors, their states and its sector numbers.
#[test]
fn backup_and_init_restore() {
    let (c, mut miner, _w) = mock_miner_and_worker();
    c.miner_ok(&["sectors", "numbers", "reserve", "import", "5-9"]);
    c.miner_ok(&["sectors", "pledge"]);
    wait_or_show(Duration::from_secs(60), "sector 1 proving", || miner.log(), || sector_state(&c, 1) == "Proving");
    std::fs::create_dir(c.path("backups")).unwrap();
    let outside = c.path("b.tar");
    let out = c.miner_cmd(&["backup", outside.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be inside base path"), "{out:?}");
    let online = c.path("backups/online.tar");
    assert_eq!(c.miner_ok(&["backup", online.to_str().unwrap()]), "Success\n");
    let out = c.miner_cmd(&["backup", online.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"), "never overwritten: {out:?}");
    let offline = c.path("offline.tar");
    let out = c.miner_cmd(&["backup", "--offline", offline.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is the miner running?"), "{out:?}");

    c.miner_ok(&["stop"]);
    miner.kill();
    assert_eq!(c.miner_ok(&["backup", "--offline", offline.to_str().unwrap()]), "Success\n");
    std::fs::rename(c.path("miner"), c.path("miner-old")).unwrap();
    let config = c.path("miner-old/config.toml");
    let out = c.miner_ok(&["init", "restore", "--config", config.to_str().unwrap(), online.to_str().unwrap()]);
    assert!(out.starts_with("Restored miner repo") && out.contains("(actor t01000)"), "{out}");
    let out = c.miner_cmd(&["init", "restore", offline.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already"), "a repo is never restored over: {out:?}");
    let _restored = c.start_miner();
    assert_eq!(sector_state(&c, 1), "Proving", "the restored miner knows sector 1");
    let info = c.miner_ok(&["sectors", "numbers", "info"]);
    assert_eq!(info, "Next free: 2\nAllocated: 0-1\nReserved: 5-9\n");
}
