//! Storage-path metadata: a path's `sectorstore.json`, and making a directory a storage path.
//! Re-exported from [`crate::store`], which opens the paths this describes.

use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// `<path>/sectorstore.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SectorStoreMeta {
    #[serde(rename = "ID")]
    pub id: uuid::Uuid,
    #[serde(rename = "Weight")]
    pub weight: u64,
    #[serde(rename = "CanSeal")]
    pub can_seal: bool,
    #[serde(rename = "CanStore")]
    pub can_store: bool,
    #[serde(rename = "MaxStorage", default)]
    pub max_storage: u64,
    #[serde(rename = "Groups", default)]
    pub groups: Vec<String>,
    #[serde(rename = "AllowTo", default)]
    pub allow_to: Vec<String>,
    #[serde(rename = "AllowTypes", default)]
    pub allow_types: Vec<String>,
    #[serde(rename = "DenyTypes", default)]
    pub deny_types: Vec<String>,
}

/// Why [`init_storage_path`] failed. The messages are those of `lotus_node::repo::RepoError`,
/// which it returned when it lived in lotus-node.
#[derive(Debug, thiserror::Error)]
pub enum InitPathError {
    #[error("repo {path} already exists; remove it or choose another path with --init")]
    AlreadyExists { path: PathBuf },
    #[error(transparent)]
    Io(#[from] FileError),
}

/// A file operation that failed: what was being done, to which path, and the OS's answer.
#[derive(Debug, thiserror::Error)]
#[error("{what} {path}: {source}")]
pub struct FileError {
    pub what: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> FileError + 'a {
    move |source| FileError { what, path: path.to_path_buf(), source }
}

/// Make `dir` a storage path: write its `sectorstore.json`.
pub fn init_storage_path(
    dir: &Path,
    weight: u64,
    can_seal: bool,
    can_store: bool,
) -> Result<SectorStoreMeta, InitPathError> {
    let meta = SectorStoreMeta {
        id: uuid::Uuid::new_v4(),
        weight,
        can_seal,
        can_store,
        max_storage: 0,
        groups: vec![],
        allow_to: vec![],
        allow_types: vec![],
        deny_types: vec![],
    };
    fs::create_dir_all(dir).map_err(io("creating storage path", dir))?;
    let p = dir.join("sectorstore.json");
    if p.exists() {
        return Err(InitPathError::AlreadyExists { path: p });
    }
    write_atomic(&p, &serde_json::to_vec_pretty(&meta).expect("serialises"), 0o644)?;
    Ok(meta)
}

/// Write a file atomically (temp file, synced, renamed into place), with `mode` on Unix. Every
/// file the daemons keep (repo files, `sectorstore.json`, results, the chain) goes through it.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), FileError> {
    // A fresh name per write (two writers never share a temp file), created with its mode
    // (a token file is never readable by others, not even between create and chmod).
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let written = (|| {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(mode);
        }
        let mut f = opts.open(&tmp).map_err(io("creating", &tmp))?;
        // The umask may have taken bits off: the mode asked for, exactly.
        set_mode(&tmp, mode)?;
        f.write_all(data).map_err(io("writing", &tmp))?;
        f.sync_all().map_err(io("syncing", &tmp))?;
        fs::rename(&tmp, path).map_err(io("renaming into place", path))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    // The rename is durable once the directory is.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

pub fn set_mode(path: &Path, mode: u32) -> Result<(), FileError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io("setting permissions of", path))?;
    }
    let _ = (path, mode);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file gets exactly its mode, concurrent writers of one file never collide on a temp
    /// name, and nothing is left beside it.
    #[test]
    fn atomic_writes_have_their_mode_and_never_share_a_temp_file() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("token");
        write_atomic(&p, b"secret", 0o600).unwrap();
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        let p2 = p.clone();
        let writers: Vec<_> = (0..4)
            .map(|i| {
                let p = p2.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        write_atomic(&p, format!("writer {i}").as_bytes(), 0o644).unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        assert!(fs::read_to_string(&p).unwrap().starts_with("writer "));
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1, "no temp file left");
    }
}
