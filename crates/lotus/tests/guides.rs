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
    let cmd = |args: &[&str]| {
        let mut c = Command::new(&old);
        c.env("HOME", &home)
            .env_remove("LOTUS_MINER_PATH")
            .env_remove("LOTUS_STORAGE_PATH")
            .env_remove("LOTUS_API_LISTENADDRESS")
            .env("RUST_LOG", "info")
            .args(args);
        c
    };
    let out = cmd(&["init", "--sector-size", "2KiB"]).output().unwrap();
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
