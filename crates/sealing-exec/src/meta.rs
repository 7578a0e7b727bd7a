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
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp).map_err(io("creating", &tmp))?;
        set_mode(&tmp, mode)?;
        f.write_all(data).map_err(io("writing", &tmp))?;
        f.sync_all().map_err(io("syncing", &tmp))?;
    }
    fs::rename(&tmp, path).map_err(io("renaming into place", path))
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
