//! `lotus-miner backup` and `lotus-miner init restore`: the miner's metadata in one archive.
//!
//! Lotus's backup is a CBOR dump of its metadata datastore; ours is a tar archive of what
//! this miner keeps instead: `sealing.db` (sectors, their logs, the work tracker, the sector
//! number assigner; a consistent SQLite snapshot taken with `VACUUM INTO`), `metadata.json`
//! (actor and sector size). The chain's state is the full node's, as in Lotus. Keys, config
//! and storage paths are not in it, as in Lotus: `init restore` takes the config and storage
//! config as files.

use crate::sealing::Db;
use lotus_node::repo::Repo;
use std::path::{Path, PathBuf};

/// The files of a backup, in the order they are written.
const FILES: [&str; 2] = ["metadata.json", "sealing.db"];

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "LOTUS_BACKUP_BASE_PATH env var not set: set it on the miner daemon to the directory backups may be written to"
    )]
    NoBasePath,
    #[error("backup file name ({file}) must be inside base path ({base})")]
    OutsideBase { file: String, base: String },
    #[error("backup file {0} already exists. Overwriting it will corrupt the file, please specify another file name")]
    Exists(String),
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: String, source: std::io::Error },
    #[error("snapshotting the sector database: {0}")]
    Snapshot(String),
    #[error("{0} is not a lotus-miner backup: it has no {1}")]
    NotABackup(String, &'static str),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> BackupError + 'a {
    move |source| BackupError::Io { what, path: path.display().to_string(), source }
}

/// The online backup's destination: inside `LOTUS_BACKUP_BASE_PATH` (so an API token cannot
/// write files anywhere the daemon can), and not an existing file.
pub fn online_destination(base: Option<String>, file: &str) -> Result<PathBuf, BackupError> {
    let base = base.filter(|b| !b.is_empty()).ok_or(BackupError::NoBasePath)?;
    let base = std::path::absolute(&base).map_err(io("resolving the base path", Path::new(&base)))?;
    let path = std::path::absolute(file).map_err(io("resolving the backup path", Path::new(file)))?;
    let inside = path.parent().is_some_and(|dir| {
        std::fs::canonicalize(dir).is_ok_and(|dir| std::fs::canonicalize(&base).is_ok_and(|b| dir.starts_with(b)))
    });
    if !inside {
        return Err(BackupError::OutsideBase { file: file.into(), base: base.display().to_string() });
    }
    Ok(path)
}

/// Write the backup of `repo` (whose sector database is `db`) to `dest`, through a temporary
/// file renamed into place once complete.
pub fn write(db: &Db, repo: &Repo, dest: &Path) -> Result<(), BackupError> {
    if dest.exists() {
        return Err(BackupError::Exists(dest.display().to_string()));
    }
    let scratch = tempfile::tempdir_in(&repo.path).map_err(io("creating a scratch directory in", &repo.path))?;
    let snapshot = scratch.path().join("sealing.db");
    db.snapshot(&snapshot).map_err(|e| BackupError::Snapshot(e.to_string()))?;
    let partial = dest.with_extension("partial");
    let f = std::fs::File::create(&partial).map_err(io("opening backup file", &partial))?;
    let mut tar = tar::Builder::new(f);
    for name in FILES {
        let src = if name == "sealing.db" { snapshot.clone() } else { repo.file(name) };
        if !src.exists() {
            continue;
        }
        tar.append_path_with_name(&src, name).map_err(io("writing backup file", &partial))?;
    }
    let f = tar.into_inner().map_err(io("writing backup file", &partial))?;
    f.sync_all().map_err(io("closing backup file", &partial))?;
    std::fs::rename(&partial, dest).map_err(io("moving the backup into place at", dest))
}

/// Put a backup's files into a new (locked, not yet initialised) repo.
pub fn restore(repo: &Repo, backup: &Path) -> Result<(), BackupError> {
    let f = std::fs::File::open(backup).map_err(io("opening backup file", backup))?;
    let mut found = vec![];
    for entry in tar::Archive::new(f).entries().map_err(io("reading backup file", backup))? {
        let mut entry = entry.map_err(io("reading backup file", backup))?;
        let name = entry.path().map_err(io("reading backup file", backup))?.to_string_lossy().to_string();
        // Only the known names, each into the repo itself: nothing in an archive chooses where
        // a file lands.
        if let Some(&known) = FILES.iter().find(|f| **f == name) {
            let dest = repo.file(known);
            entry.unpack(&dest).map_err(io("restoring", &dest))?;
            found.push(known);
        }
    }
    for needed in ["metadata.json", "sealing.db"] {
        if !found.contains(&needed) {
            return Err(BackupError::NotABackup(backup.display().to_string(), needed));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_path_rule() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("backups");
        std::fs::create_dir(&base).unwrap();
        let b = Some(base.display().to_string());
        assert!(matches!(online_destination(None, "/tmp/x"), Err(BackupError::NoBasePath)));
        let inside = base.join("b1.tar");
        assert_eq!(online_destination(b.clone(), inside.to_str().unwrap()).unwrap(), inside);
        let e = online_destination(b.clone(), d.path().join("b.tar").to_str().unwrap()).unwrap_err();
        assert!(e.to_string().contains("must be inside base path"), "{e}");
        let sneaky = base.join("../b.tar");
        assert!(matches!(online_destination(b, sneaky.to_str().unwrap()), Err(BackupError::OutsideBase { .. })));
    }
}
