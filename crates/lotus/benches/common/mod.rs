//! What the benchmarks read of a process they started.
#![allow(dead_code)]

/// Resident memory, MiB.
pub fn rss_mib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()))
        .unwrap_or(0)
        / 1024
}

/// CPU time used so far (user + system), seconds.
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // "pid (comm) state ...": comm may hold spaces; utime and stime are fields 14 and 15.
    let f: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: u64 = [11, 12].iter().filter_map(|&i| f.get(i).and_then(|v| v.parse::<u64>().ok())).sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}

/// A `lotus-devnet daemon` in `dir` with `flags`, killed when dropped; `api_info` is the
/// `FULLNODE_API_INFO` a miner reaches it with.
pub struct Devnet {
    pub child: std::process::Child,
    pub api_info: String,
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_devnet(dir: &std::path::Path, flags: &[&str]) -> Devnet {
    use std::process::{Command, Stdio};
    const DEVNET: &str = env!("CARGO_BIN_EXE_lotus-devnet");
    let repo = dir.join("devnet");
    let child = Command::new(DEVNET)
        .env("LOTUS_DEVNET_PATH", &repo)
        .env("RUST_LOG", "warn")
        .args(["daemon", "--listen", "127.0.0.1:0"])
        .args(flags)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while !repo.join("api").exists() {
        assert!(t.elapsed() < std::time::Duration::from_secs(30), "the devnet did not come up");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = Command::new(DEVNET)
        .env("LOTUS_DEVNET_PATH", &repo)
        .args(["auth", "api-info", "--perm", "admin"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let api_info = text.trim().trim_start_matches("FULLNODE_API_INFO=").to_string();
    Devnet { child, api_info }
}

/// A `lotus-miner` initialised in `dir` (2KiB sectors, message confidence 1) on `chain` and
/// running, killed when dropped; `api_info` is its admin `MINER_API_INFO`.
pub struct Miner {
    pub child: std::process::Child,
    pub api_info: String,
    pub port: u16,
    repo: std::path::PathBuf,
    chain_api: String,
}

impl Drop for Miner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Miner {
    pub fn start(dir: &std::path::Path, chain: &Devnet) -> Miner {
        use std::process::Stdio;
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (repo, chain_api) = (dir.join("miner"), chain.api_info.clone());
        let init = Self::command(&repo, &chain_api, port)
            .args(["init", "--sector-size", "2KiB", "--confidence", "1"])
            .output()
            .unwrap();
        assert!(init.status.success(), "lotus-miner init: {}", String::from_utf8_lossy(&init.stderr));
        let child = Self::command(&repo, &chain_api, port)
            .arg("run")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut m = Miner { child, api_info: String::new(), port, repo, chain_api };
        while !m.cli(&["info"]).status.success() {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let info = String::from_utf8(m.cli(&["auth", "api-info", "--perm", "admin"]).stdout).unwrap();
        m.api_info = info.trim().trim_start_matches("MINER_API_INFO=").to_string();
        m
    }

    fn command(repo: &std::path::Path, chain_api: &str, port: u16) -> std::process::Command {
        const MINER: &str = env!("CARGO_BIN_EXE_lotus-miner");
        let mut c = std::process::Command::new(MINER);
        c.env("LOTUS_MINER_PATH", repo)
            .env("FULLNODE_API_INFO", chain_api)
            .env("LOTUS_CHAIN_MESSAGECONFIDENCE", "1")
            .env("LOTUS_API_LISTENADDRESS", format!("/ip4/127.0.0.1/tcp/{port}/http"))
            .env("RUST_LOG", "warn");
        c
    }

    /// Run a `lotus-miner` command against it.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Self::command(&self.repo, &self.chain_api, self.port).args(args).output().unwrap()
    }
}

/// Child processes killed (and reaped) when dropped.
pub struct Kids(pub Vec<std::process::Child>);

impl Drop for Kids {
    fn drop(&mut self) {
        for k in &mut self.0 {
            let _ = k.kill();
            let _ = k.wait();
        }
    }
}
