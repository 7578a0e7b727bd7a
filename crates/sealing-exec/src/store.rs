//! The node's local storage paths (reference §5.2, §5.3): where each sector file lives on this
//! machine, how much room each path has, and where a new file goes.

use lotus_api::types::{FsStat, StorageInfo};
use sealing_types::{FileType, FileTypes, PathType, SectorId};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use uuid::Uuid;

pub use crate::meta::{init_storage_path, set_mode, write_atomic, FileError, InitPathError, SectorStoreMeta};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {why}")]
    BadPath { path: PathBuf, why: String },
    #[error("storage path {id} ({path}) is already attached")]
    Duplicate { id: Uuid, path: PathBuf },
    /// Lotus's `ErrTempAllocateSpace` (call error code 102).
    #[error("no {kind} path on this node has room for {types} of sector {sector}: need {need} bytes{detail}; free space or attach a path (`storage attach --init --{flag} PATH`)")]
    NoSpace { kind: &'static str, flag: &'static str, types: FileTypes, sector: SectorId, need: u64, detail: String },
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { what, path, source }
}

#[derive(Clone, Debug)]
pub struct LocalPath {
    pub root: PathBuf,
    pub meta: SectorStoreMeta,
}

impl LocalPath {
    pub fn id(&self) -> Uuid {
        self.meta.id
    }
    pub fn file(&self, t: FileType, sector: SectorId) -> PathBuf {
        self.root.join(t.name()).join(sector.file_name())
    }
    pub fn fetching(&self, t: FileType, sector: SectorId) -> PathBuf {
        self.root.join(t.name()).join("fetching").join(sector.file_name())
    }
    fn allows(&self, t: FileType) -> bool {
        let m = &self.meta;
        (m.allow_types.is_empty() || m.allow_types.iter().any(|a| a == t.name()))
            && !m.deny_types.iter().any(|d| d == t.name())
    }
    fn kind_ok(&self, kind: PathType) -> bool {
        match kind {
            PathType::Sealing => self.meta.can_seal,
            PathType::Storage => self.meta.can_store,
        }
    }
}

/// Bytes used by a file or a directory tree (not following links).
pub fn disk_usage(p: &Path) -> u64 {
    let Ok(md) = std::fs::symlink_metadata(p) else { return 0 };
    if md.is_dir() {
        std::fs::read_dir(p).map(|rd| rd.flatten().map(|e| disk_usage(&e.path())).sum()).unwrap_or(0)
    } else {
        md.len()
    }
}

pub struct LocalStore {
    paths: RwLock<Vec<LocalPath>>,
    /// This node's `/remote` base URL, advertised for every path.
    pub url: String,
    /// Space promised to files being written (a PC1's sealed file and cache grow for minutes):
    /// counted as used, so that concurrent tasks do not all pick the same path and run out of
    /// disk midway (as in Lotus, whose `Reserved` this is).
    reservations: Arc<Mutex<Reservations>>,
}

#[derive(Default)]
struct Reservations {
    next: u64,
    /// token → (path, the files being written, the bytes they will take in all)
    held: HashMap<u64, (Uuid, Vec<PathBuf>, u64)>,
}

impl Reservations {
    /// What the path's reservations still need: each less what its files already take.
    fn outstanding(&self, path: Uuid) -> u64 {
        self.held
            .values()
            .filter(|(p, _, _)| *p == path)
            .map(|(_, files, bytes)| bytes.saturating_sub(files.iter().map(|f| disk_usage(f)).sum()))
            .sum()
    }
}

/// A path chosen for new files, with its space reserved until this is dropped (the task
/// that writes them ended, done or failed).
pub struct Allocated {
    pub path: LocalPath,
    _reservation: Reservation,
}

impl std::ops::Deref for Allocated {
    type Target = LocalPath;
    fn deref(&self) -> &LocalPath {
        &self.path
    }
}

struct Reservation {
    token: u64,
    all: Arc<Mutex<Reservations>>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.all.lock().unwrap_or_else(|e| e.into_inner()).held.remove(&self.token);
    }
}

impl LocalStore {
    pub fn new(url: String) -> Self {
        LocalStore { paths: RwLock::new(vec![]), url, reservations: Default::default() }
    }

    pub fn paths(&self) -> Vec<LocalPath> {
        self.paths.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stop using a path (its files stay on disk). Returns it, if it was attached.
    pub fn detach(&self, id: Uuid) -> Option<LocalPath> {
        let mut paths = self.paths.write().unwrap_or_else(|e| e.into_inner());
        let i = paths.iter().position(|p| p.id() == id)?;
        Some(paths.remove(i))
    }

    pub fn get(&self, id: Uuid) -> Option<LocalPath> {
        self.paths().into_iter().find(|p| p.id() == id)
    }

    /// Open a storage path (its `sectorstore.json` must exist) and create its type folders.
    pub fn open_path(&self, root: &Path) -> Result<LocalPath, StoreError> {
        let root = std::fs::canonicalize(root).map_err(io("opening storage path", root))?;
        let meta_file = root.join("sectorstore.json");
        let text = std::fs::read_to_string(&meta_file).map_err(|e| StoreError::BadPath {
            path: root.clone(),
            why: format!("cannot read sectorstore.json ({e}); make it a storage path with `storage attach --init`"),
        })?;
        let meta: SectorStoreMeta = serde_json::from_str(&text)
            .map_err(|e| StoreError::BadPath { path: meta_file.clone(), why: format!("malformed: {e}") })?;
        for t in FileType::ALL {
            std::fs::create_dir_all(root.join(t.name())).map_err(io("creating", &root.join(t.name())))?;
        }
        let mut paths = self.paths.write().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = paths.iter().find(|p| p.id() == meta.id) {
            return Err(StoreError::Duplicate { id: meta.id, path: p.root.clone() });
        }
        let p = LocalPath { root, meta };
        paths.push(p.clone());
        Ok(p)
    }

    pub fn info(&self, p: &LocalPath) -> StorageInfo {
        StorageInfo {
            id: p.id(),
            urls: vec![self.url.clone()],
            weight: p.meta.weight,
            max_storage: p.meta.max_storage,
            can_seal: p.meta.can_seal,
            can_store: p.meta.can_store,
            groups: p.meta.groups.clone(),
            allow_to: p.meta.allow_to.clone(),
            allow_types: p.meta.allow_types.clone(),
            deny_types: p.meta.deny_types.clone(),
            ..Default::default()
        }
    }

    /// Space on a path. Available is the filesystem's free space, capped by MaxStorage minus
    /// what the path's sector files already use.
    pub fn stat(&self, p: &LocalPath) -> Result<FsStat, StoreError> {
        let r = self.reservations.lock().unwrap_or_else(|e| e.into_inner());
        Self::stat_with(p, &r)
    }

    fn stat_with(p: &LocalPath, r: &Reservations) -> Result<FsStat, StoreError> {
        let fs_available = fs4::available_space(&p.root).map_err(io("reading free space of", &p.root))?;
        let capacity = fs4::total_space(&p.root).map_err(io("reading capacity of", &p.root))?;
        let used: u64 = FileType::ALL.iter().map(|t| disk_usage(&p.root.join(t.name()))).sum();
        let reserved = r.outstanding(p.id());
        let mut available = fs_available;
        if p.meta.max_storage > 0 {
            available = available.min(p.meta.max_storage.saturating_sub(used));
        }
        let available = available.saturating_sub(reserved);
        Ok(FsStat { capacity, available, fs_available, reserved, max: p.meta.max_storage, used })
    }

    /// Every sector file in a path (for declaring them to the index).
    pub fn sectors(&self, p: &LocalPath) -> Vec<(SectorId, FileType)> {
        let mut out = vec![];
        for t in FileType::ALL {
            let Ok(rd) = std::fs::read_dir(p.root.join(t.name())) else { continue };
            for e in rd.flatten() {
                if let Some(s) = e.file_name().to_str().and_then(SectorId::parse_file_name) {
                    out.push((s, t));
                }
            }
        }
        out
    }

    /// The local copy of a sector file, preferring store paths, if this node has one.
    pub fn find(&self, sector: SectorId, t: FileType) -> Option<(LocalPath, PathBuf)> {
        let mut found: Vec<(LocalPath, PathBuf)> = self
            .paths()
            .into_iter()
            .map(|p| {
                let f = p.file(t, sector);
                (p, f)
            })
            .filter(|(_, f)| f.exists())
            .collect();
        found.sort_by_key(|(p, _)| std::cmp::Reverse((p.meta.can_store, p.meta.weight)));
        found.into_iter().next()
    }

    /// The best local path of `kind` for new files of `types`: room for them (with the
    /// overhead table, less what other tasks reserved) and the highest free space × weight
    /// (reference §5.4 BestAlloc). The space is reserved until the returned value is dropped.
    pub fn alloc(
        &self,
        sector: SectorId,
        types: FileTypes,
        kind: PathType,
        sector_size: u64,
    ) -> Result<Allocated, StoreError> {
        let need = types.space_use(sector_size, kind);
        let mut best: Option<(u128, LocalPath)> = None;
        let mut detail = vec![];
        // Held from the choice to the reservation: two tasks never both take the last room.
        let mut r = self.reservations.lock().unwrap_or_else(|e| e.into_inner());
        for p in self.paths() {
            if !p.kind_ok(kind) || !types.iter().all(|t| p.allows(t)) {
                continue;
            }
            let st = Self::stat_with(&p, &r)?;
            // Files of this sector already there count as allocated.
            let have: u64 = types.iter().map(|t| disk_usage(&p.file(t, sector))).sum();
            let free = st.available.saturating_add(have);
            if free < need {
                let held = if st.reserved > 0 {
                    format!(" ({} reserved by running tasks)", st.reserved)
                } else {
                    String::new()
                };
                detail.push(format!("{} has {free} bytes free{held}, {} short", p.root.display(), need - free));
                continue;
            }
            let score = free as u128 * p.meta.weight.max(1) as u128;
            if best.as_ref().is_none_or(|(b, _)| score > *b) {
                best = Some((score, p));
            }
        }
        if let Some((_, path)) = best {
            let files: Vec<PathBuf> = types.iter().map(|t| path.file(t, sector)).collect();
            r.next += 1;
            let token = r.next;
            r.held.insert(token, (path.id(), files, need));
            return Ok(Allocated { path, _reservation: Reservation { token, all: self.reservations.clone() } });
        }
        Err({
            let (kind_s, flag) = match kind {
                PathType::Sealing => ("sealing", "seal"),
                PathType::Storage => ("storage", "store"),
            };
            StoreError::NoSpace {
                kind: kind_s,
                flag,
                types,
                sector,
                need,
                detail: if detail.is_empty() {
                    format!(" (this node has no {kind_s} path)")
                } else {
                    format!(" ({})", detail.join(", "))
                },
            }
        })
    }

    /// Remove local copies of a sector file, except in the paths `keep`. Returns the paths
    /// that lost their copy.
    pub fn remove(&self, sector: SectorId, t: FileType, keep: &[Uuid]) -> Result<Vec<Uuid>, StoreError> {
        let mut removed = vec![];
        for p in self.paths() {
            if keep.contains(&p.id()) {
                continue;
            }
            let f = p.file(t, sector);
            let r = match std::fs::symlink_metadata(&f) {
                Ok(md) if md.is_dir() => std::fs::remove_dir_all(&f),
                Ok(_) => std::fs::remove_file(&f),
                Err(_) => continue,
            };
            r.map_err(io("removing", &f))?;
            removed.push(p.id());
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(dir: &Path, seal: bool, store: bool, max: u64) -> PathBuf {
        let mut m = init_storage_path(dir, 10, seal, store).unwrap();
        m.max_storage = max;
        std::fs::write(dir.join("sectorstore.json"), serde_json::to_vec(&m).unwrap()).unwrap();
        dir.to_path_buf()
    }

    #[test]
    fn alloc_respects_kind_and_max_storage() {
        let d = tempfile::tempdir().unwrap();
        let s = LocalStore::new("http://127.0.0.1:1/remote".into());
        let seal = s.open_path(&path(&d.path().join("seal"), true, false, 0)).unwrap();
        let store = s.open_path(&path(&d.path().join("store"), false, true, 3000)).unwrap();
        let sector = SectorId { miner: 1000, number: 1 };
        let sealed = FileTypes::of(&[FileType::Sealed]);
        assert_eq!(s.alloc(sector, sealed, PathType::Sealing, 2048).unwrap().id(), seal.id());
        assert_eq!(s.alloc(sector, sealed, PathType::Storage, 2048).unwrap().id(), store.id());
        // 2KiB sealed + cache in storage (1.1×) fits 3000 bytes; a 4KiB sector would not.
        let e = s.alloc(sector, FileTypes::of(&[FileType::Sealed, FileType::Cache]), PathType::Storage, 4096);
        let msg = e.err().unwrap().to_string();
        assert!(msg.contains("need 4505 bytes") && msg.contains("has 3000"), "{msg}");
        assert!(s.open_path(&d.path().join("seal")).unwrap_err().to_string().contains("already attached"));
    }

    /// Space is reserved from the choice of a path until the task's allocation is dropped:
    /// two tasks never both take the room for one, and a file's own growth is not counted twice.
    #[test]
    fn allocations_reserve_space_until_released() {
        let d = tempfile::tempdir().unwrap();
        let s = LocalStore::new(String::new());
        // Room for one 2KiB sealed file (2,048 bytes in a sealing path), not two.
        let p = s.open_path(&path(&d.path().join("p"), true, false, 3000)).unwrap();
        let sealed = FileTypes::of(&[FileType::Sealed]);
        let (one, two) = (SectorId { miner: 1000, number: 1 }, SectorId { miner: 1000, number: 2 });
        let a = s.alloc(one, sealed, PathType::Sealing, 2048).unwrap();
        assert_eq!(s.stat(&p).unwrap().reserved, 2048);
        let e = s.alloc(two, sealed, PathType::Sealing, 2048).err().unwrap().to_string();
        assert!(e.contains("reserved by running tasks"), "{e}");
        // The file being written counts once: as it grows, its reservation shrinks.
        std::fs::write(a.file(FileType::Sealed, one), vec![0u8; 1024]).unwrap();
        let st = s.stat(&p).unwrap();
        assert_eq!((st.reserved, st.used), (1024, 1024));
        drop(a);
        std::fs::remove_file(p.file(FileType::Sealed, one)).unwrap();
        assert_eq!(s.stat(&p).unwrap().reserved, 0);
        assert!(s.alloc(two, sealed, PathType::Sealing, 2048).is_ok(), "the room is free again");
    }

    #[test]
    fn finds_lists_and_removes_sector_files() {
        let d = tempfile::tempdir().unwrap();
        let s = LocalStore::new(String::new());
        let p = s.open_path(&path(&d.path().join("p"), true, true, 0)).unwrap();
        let sector = SectorId { miner: 1000, number: 7 };
        std::fs::write(p.file(FileType::Sealed, sector), b"x").unwrap();
        std::fs::create_dir_all(p.file(FileType::Cache, sector)).unwrap();
        std::fs::write(p.root.join("sealed/not-a-sector"), b"x").unwrap();
        let mut listed = s.sectors(&p);
        listed.sort();
        assert_eq!(listed, vec![(sector, FileType::Sealed), (sector, FileType::Cache)]);
        assert!(s.find(sector, FileType::Sealed).is_some());
        assert_eq!(s.remove(sector, FileType::Cache, &[]).unwrap(), vec![p.id()]);
        assert!(s.find(sector, FileType::Cache).is_none());
        assert!(s.remove(sector, FileType::Sealed, &[p.id()]).unwrap().is_empty());
    }
}
