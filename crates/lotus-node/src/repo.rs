//! A repo directory: `config.toml`, `keystore/`, `token`, `api`, `storage.json`, `repo.lock`
//! (reference §5.2).

use lotus_api::auth::{JwtSecret, KeyInfo};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Keystore file name of the JWT secret: base32 of `auth-jwt-private`, as Lotus names it.
pub const JWT_KEY_FILE: &str = "MF2XI2BNNJ3XILLQOJUXMYLUMU";

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("repo {path} does not exist or is not initialised; run `{init_cmd}` first (or point {env} at the right directory)")]
    NotInitialised { path: PathBuf, init_cmd: &'static str, env: &'static str },
    #[error("repo {path} already exists; remove it or choose another path with {env}")]
    AlreadyExists { path: PathBuf, env: &'static str },
    #[error("repo {path} is locked by another running process{holder}; stop it first (`{stop_cmd}`), or use a different repo path")]
    Locked { path: PathBuf, holder: String, stop_cmd: &'static str },
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{path} is malformed: {why}")]
    Malformed { path: PathBuf, why: String },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> RepoError + 'a {
    move |source| RepoError::Io { what, path: path.to_path_buf(), source }
}

/// Which daemon a repo belongs to; decides the messages and env names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepoKind {
    Miner,
    Worker,
    /// The devnet full node (`lotus-devnet daemon`).
    Devnet,
}

impl RepoKind {
    fn init_cmd(self) -> &'static str {
        match self {
            RepoKind::Miner => "lotus-miner init",
            RepoKind::Worker => "lotus-worker run",
            RepoKind::Devnet => "lotus-devnet daemon",
        }
    }
    fn env(self) -> &'static str {
        match self {
            RepoKind::Miner => "LOTUS_MINER_PATH",
            RepoKind::Worker => "LOTUS_WORKER_PATH",
            RepoKind::Devnet => "LOTUS_DEVNET_PATH",
        }
    }
    fn stop_cmd(self) -> &'static str {
        match self {
            RepoKind::Miner => "lotus-miner stop",
            RepoKind::Worker => "lotus-worker stop",
            RepoKind::Devnet => "kill -TERM the lotus-devnet daemon",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Repo {
    pub path: PathBuf,
    pub kind: RepoKind,
}

/// Held while a daemon runs; the OS releases it when the process dies, so a crash never leaves
/// a stale lock behind.
#[derive(Debug)]
pub struct RepoLock {
    _file: File,
}

/// `storage.json`: the storage paths this node has attached.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StorageConfig {
    #[serde(rename = "StoragePaths")]
    pub storage_paths: Vec<LocalPath>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LocalPath {
    #[serde(rename = "Path")]
    pub path: PathBuf,
}

impl Repo {
    pub fn new(path: impl Into<PathBuf>, kind: RepoKind) -> Self {
        Repo { path: path.into(), kind }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// A repo is initialised once its keystore holds the JWT secret (miner) or it has a
    /// `storage.json` (worker).
    pub fn is_initialised(&self) -> bool {
        match self.kind {
            RepoKind::Miner | RepoKind::Devnet => self.path.join("keystore").join(JWT_KEY_FILE).exists(),
            RepoKind::Worker => self.path.join("storage.json").exists(),
        }
    }

    pub fn require_initialised(&self) -> Result<(), RepoError> {
        if self.is_initialised() {
            Ok(())
        } else {
            Err(RepoError::NotInitialised {
                path: self.path.clone(),
                init_cmd: self.kind.init_cmd(),
                env: self.kind.env(),
            })
        }
    }

    pub fn create_dir(&self) -> Result<(), RepoError> {
        fs::create_dir_all(&self.path).map_err(io("creating repo directory", &self.path))
    }

    /// Take the repo lock, or say who holds it.
    pub fn lock(&self) -> Result<RepoLock, RepoError> {
        let p = self.file("repo.lock");
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&p)
            .map_err(io("opening", &p))?;
        match f.try_lock() {
            Ok(()) => {
                f.set_len(0).map_err(io("writing", &p))?;
                let _ = write!(f, "{}", std::process::id());
                Ok(RepoLock { _file: f })
            }
            Err(fs::TryLockError::WouldBlock) => {
                let pid = fs::read_to_string(&p).unwrap_or_default();
                let holder = if pid.trim().is_empty() { String::new() } else { format!(" (pid {})", pid.trim()) };
                Err(RepoError::Locked { path: self.path.clone(), holder, stop_cmd: self.kind.stop_cmd() })
            }
            Err(fs::TryLockError::Error(e)) => Err(RepoError::Io { what: "locking", path: p, source: e }),
        }
    }

    /// Whether a running daemon holds this repo's lock. A shared lock is taken and let go at
    /// once, so the check never blocks a daemon that is starting.
    pub fn is_locked(&self) -> bool {
        match OpenOptions::new().read(true).open(self.file("repo.lock")) {
            Ok(f) => matches!(f.try_lock_shared(), Err(fs::TryLockError::WouldBlock)),
            Err(_) => false,
        }
    }

    /// Write a file atomically (temp file + rename), with `mode` on Unix.
    pub fn write_file(&self, name: &str, data: &[u8], mode: u32) -> Result<(), RepoError> {
        write_atomic(&self.file(name), data, mode)
    }

    pub fn read_string(&self, name: &str) -> Result<String, RepoError> {
        let p = self.file(name);
        fs::read_to_string(&p).map_err(io("reading", &p))
    }

    pub fn jwt_secret(&self) -> Result<JwtSecret, RepoError> {
        let p = self.path.join("keystore").join(JWT_KEY_FILE);
        let data = fs::read(&p).map_err(io("reading the JWT secret", &p))?;
        let ki: KeyInfo =
            serde_json::from_slice(&data).map_err(|e| RepoError::Malformed { path: p.clone(), why: e.to_string() })?;
        JwtSecret::from_key_info(&ki).map_err(|e| RepoError::Malformed { path: p, why: e.to_string() })
    }

    pub fn write_jwt_secret(&self, s: &JwtSecret) -> Result<(), RepoError> {
        let dir = self.path.join("keystore");
        fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        set_mode(&dir, 0o700)?;
        let data = serde_json::to_vec(&s.to_key_info()).expect("KeyInfo serialises");
        write_atomic(&dir.join(JWT_KEY_FILE), &data, 0o600)
    }

    pub fn token(&self) -> Result<String, RepoError> {
        Ok(self.read_string("token")?.trim().to_string())
    }

    /// The API endpoint the running daemon wrote (`/ip4/127.0.0.1/tcp/2345/http`).
    pub fn api_addr(&self) -> Result<String, RepoError> {
        Ok(self.read_string("api")?.trim().to_string())
    }

    pub fn storage_config(&self) -> Result<StorageConfig, RepoError> {
        let p = self.file("storage.json");
        if !p.exists() {
            return Ok(StorageConfig::default());
        }
        let data = fs::read(&p).map_err(io("reading", &p))?;
        serde_json::from_slice(&data).map_err(|e| RepoError::Malformed { path: p, why: e.to_string() })
    }

    pub fn write_storage_config(&self, c: &StorageConfig) -> Result<(), RepoError> {
        self.write_file("storage.json", &serde_json::to_vec_pretty(c).expect("serialises"), 0o644)
    }
}

/// Write a file atomically with `mode` (the one implementation lives with the storage paths).
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), RepoError> {
    Ok(sealing_exec::store::write_atomic(path, data, mode)?)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), RepoError> {
    Ok(sealing_exec::store::set_mode(path, mode)?)
}

impl From<sealing_exec::store::FileError> for RepoError {
    fn from(e: sealing_exec::store::FileError) -> Self {
        RepoError::Io { what: e.what, path: e.path, source: e.source }
    }
}

/// Whether this process was started under one of the old names the first guides use
/// (`lotus-storage-miner`, `lotus-seal-worker`): their default miner repo is
/// `~/.lotusstorage`, as it was then.
pub fn started_as_old_name() -> bool {
    let arg0 = std::env::args_os().next().unwrap_or_default();
    let name = Path::new(&arg0).file_name().and_then(|n| n.to_str()).unwrap_or("");
    matches!(name, "lotus-storage-miner" | "lotus-seal-worker")
}

/// The default miner repo directories under `$HOME`, most likely first for this binary's
/// name: the first that exists wins, else the first.
pub fn miner_repo_defaults() -> &'static [&'static str] {
    if started_as_old_name() {
        &[".lotusstorage", ".lotusminer"]
    } else {
        &[".lotusminer", ".lotusstorage"]
    }
}

/// The repo path from a flag, then the env vars in order, then the default under `$HOME`.
pub fn resolve_path(flag: Option<&Path>, envs: &[&str], default_dirs: &[&str]) -> PathBuf {
    if let Some(p) = flag {
        return expand_home(p);
    }
    for e in envs {
        if let Ok(v) = std::env::var(e) {
            if !v.trim().is_empty() {
                return expand_home(Path::new(v.trim()));
            }
        }
    }
    let home = dirs::home_dir().unwrap_or_else(|| PathBuf::from("."));
    // The first default that exists wins (old installs used ~/.lotusstorage), else the first.
    default_dirs.iter().map(|d| home.join(d)).find(|p| p.exists()).unwrap_or_else(|| home.join(default_dirs[0]))
}

/// `~/x` → `$HOME/x`.
pub fn expand_home(p: &Path) -> PathBuf {
    match p.strip_prefix("~") {
        Ok(rest) => dirs::home_dir().unwrap_or_default().join(rest),
        Err(_) => p.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_is_exclusive_and_names_the_holder() {
        let d = tempfile::tempdir().unwrap();
        let r = Repo::new(d.path(), RepoKind::Miner);
        assert!(!r.is_locked());
        let l = r.lock().unwrap();
        assert!(r.is_locked());
        let e = r.lock().unwrap_err().to_string();
        assert!(e.contains("locked by another running process"), "{e}");
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        assert!(e.contains("lotus-miner stop"), "{e}");
        drop(l);
        assert!(!r.is_locked(), "the lock goes with its holder");
        let _again = r.lock().unwrap();
    }

    #[test]
    fn secret_is_private() {
        let d = tempfile::tempdir().unwrap();
        let r = Repo::new(d.path(), RepoKind::Miner);
        assert!(!r.is_initialised());
        r.write_jwt_secret(&JwtSecret::generate()).unwrap();
        assert!(r.is_initialised());
        r.jwt_secret().unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let m = fs::metadata(d.path().join("keystore").join(JWT_KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(m & 0o777, 0o600);
        }
    }
}
