//! The sealing pipeline's overhead: one 8MiB sector (by default) sealed through a miner and two
//! worker processes on loopback, against the raw proofs-library time of the same calls made in
//! one process, side by side.
//!
//! `cargo bench -p lotus --bench pipeline` (PIPELINE_SIZE=2KiB for a quick run). Generates the
//! devnet parameters for the size first if they are missing (8MiB: about 18 minutes once).

mod common;

use sealing_proofs::{max_unpadded, Sealer, SectorPaths};
use sealing_types::{RegisteredSealProof, SectorSize};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MINER: &str = env!("CARGO_BIN_EXE_lotus-miner");
const WORKER: &str = env!("CARGO_BIN_EXE_lotus-worker");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Every phase in this process, as the library runs them; returns (total, per phase).
fn raw(size: SectorSize, dir: &std::path::Path) -> (f64, Vec<(&'static str, f64)>) {
    std::fs::create_dir_all(dir).unwrap();
    let paths = SectorPaths { unsealed: dir.join("unsealed"), sealed: dir.join("sealed"), cache: dir.join("cache") };
    let s = Sealer::new(RegisteredSealProof::v1_1_for(size), 1000, 99);
    let n = max_unpadded(size);
    let mut phases = vec![];
    let mut t = Instant::now();
    let mut lap = |name: &'static str, t: &mut Instant| {
        phases.push((name, t.elapsed().as_secs_f64()));
        *t = Instant::now();
    };
    use std::io::Read;
    let piece = s.add_piece(std::io::repeat(0).take(n), n, &paths.unsealed).unwrap();
    lap("AP", &mut t);
    let pc1 = s.pre_commit1(&paths, [1; 32], std::slice::from_ref(&piece)).unwrap();
    lap("PC1", &mut t);
    let pc2 = s.pre_commit2(pc1, &paths).unwrap();
    lap("PC2", &mut t);
    let c1 = s.commit1(&paths, [1; 32], [2; 32], pc2, &[piece]).unwrap();
    lap("C1", &mut t);
    s.commit2(c1).unwrap();
    lap("C2", &mut t);
    s.finalize(&paths.cache).unwrap();
    lap("FIN", &mut t);
    (phases.iter().map(|p| p.1).sum(), phases)
}

fn main() {
    let size: SectorSize = std::env::var("PIPELINE_SIZE").unwrap_or("8MiB".into()).parse().unwrap();
    std::env::set_var(
        "FIL_PROOFS_PARAMETER_CACHE",
        std::env::var("FIL_PROOFS_PARAMETER_CACHE").unwrap_or("/var/tmp/filecoin-proof-parameters".into()),
    );
    let st = Command::new(MINER).args(["fetch-params", size.name()]).status().unwrap();
    assert!(st.success(), "fetch-params {size} failed");
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();

    // The cluster: a miner that seals nothing itself, an AP/PC1 worker, a PC2/C2 worker.
    let port = free_port();
    let chain = common::start_devnet(base, &["--block-delay", "100ms", "--pre-commit-challenge-delay", "1"]);
    let env = |c: &mut Command| {
        c.env("LOTUS_MINER_PATH", base.join("miner"))
            .env("FULLNODE_API_INFO", &chain.api_info)
            .env("LOTUS_CHAIN_MESSAGECONFIDENCE", "1")
            .env("LOTUS_API_LISTENADDRESS", format!("/ip4/127.0.0.1/tcp/{port}/http"))
            .env("RUST_LOG", "warn");
    };
    let mut init = Command::new(MINER);
    env(&mut init);
    assert!(init.args(["init", "--sector-size", size.name(), "--confidence", "1"]).status().unwrap().success());
    std::fs::write(
        base.join("miner/config.toml"),
        "[Storage]\n AllowAddPiece = false\n AllowPreCommit1 = false\n AllowPreCommit2 = false\n AllowCommit = false\n AllowUnseal = false\n\
         ",
    )
    .unwrap();
    let mut kids = vec![];
    let mut run = Command::new(MINER);
    env(&mut run);
    kids.push(run.arg("run").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    let cli = |args: &[&str]| {
        let mut c = Command::new(MINER);
        env(&mut c);
        c.args(args).output().unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cli(&["info"]).status.success() {
        assert!(Instant::now() < deadline, "miner did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let info = String::from_utf8(cli(&["auth", "api-info", "--perm", "admin"]).stdout).unwrap();
    let info = info.trim().trim_start_matches("MINER_API_INFO=").to_string();
    for (name, flags) in [("a", &["--addpiece", "--precommit1"][..]), ("b", &["--precommit2", "--commit"][..])] {
        let listen = format!("127.0.0.1:{}", free_port());
        let mut w = Command::new(WORKER);
        w.env("LOTUS_WORKER_PATH", base.join(format!("worker-{name}")))
            .env("MINER_API_INFO", &info)
            .env("RUST_LOG", "warn")
            .args(["run", "--listen", &listen, "--no-default"])
            .args(flags);
        kids.push(w.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while String::from_utf8_lossy(&cli(&["storage", "list"]).stdout).matches("URL: ").count() < 3 {
        assert!(Instant::now() < deadline, "workers did not attach their paths");
        std::thread::sleep(Duration::from_millis(100));
    }

    let t = Instant::now();
    assert!(cli(&["sectors", "pledge"]).status.success());
    loop {
        let out = String::from_utf8_lossy(&cli(&["sectors", "status", "1"]).stdout).to_string();
        if out.contains("Status:\t\tProving") {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(3600), "sector not proving after an hour:\n{out}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let pipeline = t.elapsed().as_secs_f64();
    eprintln!("pipeline: {size} sector proving after {pipeline:.2} s; now the raw library calls");
    let log = String::from_utf8_lossy(&cli(&["sectors", "status", "--log", "1"]).stdout).to_string();
    for mut k in kids {
        let _ = k.kill();
        let _ = k.wait();
    }

    let (raw_total, phases) = raw(size, &base.join("raw"));
    // The devnet's seed wait (one epoch) is chain time, not pipeline overhead.
    let chain_wait = 0.1 * 1.0;
    println!("sealing one {size} sector (AP, PC1, PC2, C1, C2, FIN), measured in one run:");
    for (p, secs) in &phases {
        println!("  raw library {p:<4} {secs:8.2} s");
    }
    println!("  raw library total      {raw_total:8.2} s (one process, no scheduling, no transfers)");
    println!("  pipeline pledge→Proving {pipeline:8.2} s (miner + 2 workers, files moved A → B → store, proof verified by the chain)");
    println!(
        "  ratio pipeline / raw   {:8.3}x  ({:.3}x without the devnet's {chain_wait:.1} s seed wait)",
        pipeline / raw_total,
        (pipeline - chain_wait) / raw_total
    );
    println!("sector log:\n{log}");
}
