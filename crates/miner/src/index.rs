//! The sector index (reference §5.4): which storage paths exist on which nodes, how much room
//! they have, and which sector files each holds. In memory, like Lotus's MemIndex: every node
//! attaches its paths and declares its sectors again when it (re)connects.

use lotus_api::types::{FsStat, SectorStorageInfo, StorageInfo};
use sealing_types::{FileType, FileTypes, PathType, SectorId};
use std::collections::BTreeMap;
use uuid::Uuid;

#[derive(Clone, Debug)]
pub struct PathEntry {
    pub info: StorageInfo,
    pub stat: FsStat,
    pub err: String,
    /// The worker whose token attached the path (none: the operator's token, a Lotus node's,
    /// or the miner's own): only that worker's token may declare on it, drop from it, report
    /// its health or detach it.
    pub owner: Option<String>,
}

/// One declaration: the sector's files of these types are in a path (Lotus's shape).
pub use lotus_api::contract::miner::Decl;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("storage path {0} is not attached; attach it first (the node re-attaches its paths when it connects)")]
    UnknownPath(Uuid),
    #[error("storage path {id} belongs to {owner}, not to worker {caller:?}: a worker's token reaches only the paths it attached")]
    NotYours { id: Uuid, owner: String, caller: String },
    #[error("storage path {id} is not served at {url} (its URLs: {})", urls.join(", "))]
    NotServedAt { id: Uuid, url: String, urls: Vec<String> },
}

/// What a node's own executor must do with the index's refusal: a path not attached (yet:
/// after a miner restart its node attaches it again) is worth retrying; a path of another
/// worker or at another URL is not.
impl From<IndexError> for sealing_exec::IndexError {
    fn from(e: IndexError) -> Self {
        match e {
            IndexError::UnknownPath(_) => sealing_exec::IndexError::Unavailable(e.to_string()),
            IndexError::NotYours { .. } | IndexError::NotServedAt { .. } => {
                sealing_exec::IndexError::Refused(e.to_string())
            }
        }
    }
}

#[derive(Default)]
pub struct Index {
    paths: BTreeMap<Uuid, PathEntry>,
    /// sector → file type → (path, primary)
    decls: BTreeMap<SectorId, BTreeMap<FileType, Vec<(Uuid, bool)>>>,
}

/// `http://host:port/remote` → `http://host:port`: the node a URL belongs to.
pub fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map(|i| i + 3).unwrap_or(0);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

impl Index {
    /// Whether the worker `caller` names (none: the operator) may change the path.
    pub fn check_owner(&self, id: Uuid, caller: Option<&str>) -> Result<(), IndexError> {
        let Some(caller) = caller else { return Ok(()) };
        let e = self.paths.get(&id).ok_or(IndexError::UnknownPath(id))?;
        if e.owner.as_deref() == Some(caller) {
            return Ok(());
        }
        let owner = match &e.owner {
            Some(w) => format!("worker {w:?}"),
            None => "the operator (it was attached with the operator's token or by the miner)".into(),
        };
        Err(IndexError::NotYours { id, owner, caller: caller.to_string() })
    }

    /// `StorageAttach` by the worker `owner` names (none: the operator). A path another worker
    /// (or the operator) attached cannot be taken over by a worker's token; the operator's
    /// token may add a URL to any path, which keeps its owner.
    pub fn attach_by(&mut self, info: StorageInfo, stat: FsStat, owner: Option<&str>) -> Result<(), IndexError> {
        if self.paths.contains_key(&info.id) {
            self.check_owner(info.id, owner)?;
        }
        let new = !self.paths.contains_key(&info.id);
        self.attach(info.clone(), stat);
        if new {
            if let Some(e) = self.paths.get_mut(&info.id) {
                e.owner = owner.map(str::to_string);
            }
        }
        Ok(())
    }

    pub fn attach(&mut self, info: StorageInfo, stat: FsStat) {
        match self.paths.get_mut(&info.id) {
            Some(e) => {
                // A path shared by several nodes is one ID with many URLs.
                let mut urls = e.info.urls.clone();
                for u in &info.urls {
                    if !urls.contains(u) {
                        urls.push(u.clone());
                    }
                }
                e.info = StorageInfo { urls, ..info };
                e.stat = stat;
            }
            None => {
                self.paths.insert(info.id, PathEntry { info, stat, err: String::new(), owner: None });
            }
        }
    }

    /// Remove every URL of a node (it is gone); paths left without URLs are dropped with
    /// their declarations.
    pub fn detach_origin(&mut self, node: &str) -> Vec<Uuid> {
        let mut dropped = vec![];
        for (id, e) in self.paths.iter_mut() {
            e.info.urls.retain(|u| origin(u) != node);
            if e.info.urls.is_empty() {
                dropped.push(*id);
            }
        }
        for id in &dropped {
            self.paths.remove(id);
            for per_type in self.decls.values_mut() {
                for v in per_type.values_mut() {
                    v.retain(|(p, _)| p != id);
                }
            }
        }
        dropped
    }

    /// `StorageDetach`: one node (`url`) no longer serves the path; a path left without URLs
    /// is gone, with its declarations. Returns whether it is gone.
    pub fn detach(&mut self, id: Uuid, url: &str) -> Result<bool, IndexError> {
        let e = self.paths.get_mut(&id).ok_or(IndexError::UnknownPath(id))?;
        e.info.urls.retain(|u| u != url);
        if !e.info.urls.is_empty() {
            return Ok(false);
        }
        self.paths.remove(&id);
        for per_type in self.decls.values_mut() {
            for v in per_type.values_mut() {
                v.retain(|(p, _)| *p != id);
            }
            per_type.retain(|_, v| !v.is_empty());
        }
        self.decls.retain(|_, per_type| !per_type.is_empty());
        Ok(true)
    }

    pub fn health(&mut self, id: Uuid, stat: FsStat, err: String) -> Result<(), IndexError> {
        let e = self.paths.get_mut(&id).ok_or(IndexError::UnknownPath(id))?;
        e.stat = stat;
        e.err = err;
        Ok(())
    }

    pub fn declare(&mut self, id: Uuid, sector: SectorId, types: FileTypes, primary: bool) -> Result<(), IndexError> {
        if !self.paths.contains_key(&id) {
            return Err(IndexError::UnknownPath(id));
        }
        let per_type = self.decls.entry(sector).or_default();
        for t in types.iter() {
            let v = per_type.entry(t).or_default();
            match v.iter_mut().find(|(p, _)| *p == id) {
                // Re-declaring can only upgrade to primary.
                Some((_, pr)) => *pr |= primary,
                None => v.push((id, primary)),
            }
        }
        Ok(())
    }

    pub fn drop_sector(&mut self, id: Uuid, sector: SectorId, types: FileTypes) {
        if let Some(per_type) = self.decls.get_mut(&sector) {
            for t in types.iter() {
                if let Some(v) = per_type.get_mut(&t) {
                    v.retain(|(p, _)| *p != id);
                }
            }
            per_type.retain(|_, v| !v.is_empty());
            if per_type.is_empty() {
                self.decls.remove(&sector);
            }
        }
    }

    /// Paths holding any of `types` of the sector, best first.
    pub fn find(&self, sector: SectorId, types: FileTypes) -> Vec<SectorStorageInfo> {
        let mut by_path: BTreeMap<Uuid, (FileTypes, bool)> = BTreeMap::new();
        if let Some(per_type) = self.decls.get(&sector) {
            for t in types.iter() {
                for (p, primary) in per_type.get(&t).into_iter().flatten() {
                    let e = by_path.entry(*p).or_default();
                    e.0 .0 |= t.bit();
                    e.1 |= *primary;
                }
            }
        }
        let mut out: Vec<SectorStorageInfo> = by_path
            .into_iter()
            .filter_map(|(id, (found, primary))| {
                let e = self.paths.get(&id)?;
                let names: Vec<FileType> = found.iter().collect();
                Some(SectorStorageInfo {
                    id,
                    urls: e
                        .info
                        .urls
                        .iter()
                        .flat_map(|u| names.iter().map(move |t| format!("{u}/{}/{}", t.name(), sector.file_name())))
                        .collect(),
                    base_urls: e.info.urls.clone(),
                    weight: e.info.weight * names.len() as u64,
                    can_seal: e.info.can_seal,
                    can_store: e.info.can_store,
                    primary,
                    allow_types: e.info.allow_types.clone(),
                    deny_types: e.info.deny_types.clone(),
                    allow_miners: e.info.allow_miners.clone(),
                    deny_miners: e.info.deny_miners.clone(),
                })
            })
            .collect();
        out.sort_by_key(|s| std::cmp::Reverse(s.weight));
        out
    }

    /// The file types of a sector in one path.
    pub fn types_in(&self, sector: SectorId, id: Uuid) -> FileTypes {
        let mut t = FileTypes::NONE;
        for (ft, v) in self.decls.get(&sector).into_iter().flatten() {
            if v.iter().any(|(p, _)| *p == id) {
                t.0 |= ft.bit();
            }
        }
        t
    }

    pub fn paths(&self) -> impl Iterator<Item = (&Uuid, &PathEntry)> {
        self.paths.iter()
    }

    pub fn path(&self, id: Uuid) -> Option<&PathEntry> {
        self.paths.get(&id)
    }

    /// `StorageList`: per path, its declarations (one entry per sector, types merged).
    pub fn list(&self) -> BTreeMap<Uuid, Vec<Decl>> {
        let mut out: BTreeMap<Uuid, BTreeMap<SectorId, FileTypes>> =
            self.paths.keys().map(|id| (*id, BTreeMap::new())).collect();
        for (sector, per_type) in &self.decls {
            for (t, v) in per_type {
                for (p, _) in v {
                    out.entry(*p).or_default().entry(*sector).or_default().0 |= t.bit();
                }
            }
        }
        out.into_iter()
            .map(|(id, m)| {
                (
                    id,
                    m.into_iter()
                        .map(|(sector, types)| Decl { miner: sector.miner, number: sector.number, file_type: types })
                        .collect(),
                )
            })
            .collect()
    }

    /// Best free space among the paths of `kind` on a node (for the scheduler).
    pub fn node_space(&self, node: &str, kind: PathType) -> u64 {
        self.paths
            .values()
            .filter(|e| e.info.urls.iter().any(|u| origin(u) == node))
            .filter(|e| match kind {
                PathType::Sealing => e.info.can_seal,
                PathType::Storage => e.info.can_store,
            })
            .map(|e| e.stat.available)
            .max()
            .unwrap_or(0)
    }

    /// Nodes (URL origins) serving a path.
    pub fn nodes_of(&self, id: Uuid) -> Vec<String> {
        self.paths.get(&id).map(|e| e.info.urls.iter().map(|u| origin(u).to_string()).collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: u128, url: &str, seal: bool, store: bool) -> StorageInfo {
        StorageInfo {
            id: Uuid::from_u128(id),
            urls: vec![url.into()],
            weight: 10,
            can_seal: seal,
            can_store: store,
            ..Default::default()
        }
    }

    #[test]
    fn declare_find_drop() {
        let mut ix = Index::default();
        let s = SectorId { miner: 1000, number: 3 };
        let sealed_cache = FileTypes::of(&[FileType::Sealed, FileType::Cache]);
        assert!(ix.declare(Uuid::from_u128(1), s, sealed_cache, true).is_err(), "unknown path refused");
        ix.attach(info(1, "http://10.0.0.1:3456/remote", true, false), FsStat { available: 100, ..Default::default() });
        ix.attach(info(2, "http://10.0.0.2:2345/remote", false, true), FsStat { available: 500, ..Default::default() });
        ix.declare(Uuid::from_u128(1), s, sealed_cache, false).unwrap();
        let found = ix.find(s, FileTypes::of(&[FileType::Cache]));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].urls, vec!["http://10.0.0.1:3456/remote/cache/s-t01000-3".to_string()]);
        ix.declare(Uuid::from_u128(1), s, sealed_cache, true).unwrap();
        assert!(ix.find(s, sealed_cache)[0].primary, "re-declaring upgrades to primary");
        assert_eq!(ix.find(s, sealed_cache)[0].weight, 20, "weight × matching types");
        ix.drop_sector(Uuid::from_u128(1), s, sealed_cache);
        assert!(ix.find(s, sealed_cache).is_empty());
        assert_eq!(ix.node_space("http://10.0.0.1:3456", PathType::Sealing), 100);
        assert_eq!(ix.node_space("http://10.0.0.1:3456", PathType::Storage), 0);
        assert_eq!(ix.node_space("http://10.0.0.2:2345", PathType::Storage), 500);
    }

    /// A node's executor retries a task whose path is not attached yet (after a miner restart
    /// its node attaches it again) and fails one refused for good.
    #[test]
    fn an_unattached_path_is_worth_retrying_and_another_s_path_is_not() {
        use sealing_exec::IndexError as Exec;
        let mut ix = Index::default();
        let id = Uuid::from_u128(1);
        let unknown = ix.declare(id, SectorId { miner: 1000, number: 1 }, FileTypes::of(&[FileType::Sealed]), true);
        assert!(matches!(Exec::from(unknown.unwrap_err()), Exec::Unavailable(m) if m.contains("is not attached")));
        ix.attach_by(info(1, "http://10.0.0.1:3456/remote", true, false), FsStat::default(), Some("pc1")).unwrap();
        let theirs = ix.check_owner(id, Some("c2")).unwrap_err();
        assert!(matches!(Exec::from(theirs), Exec::Refused(m) if m.contains("belongs to worker \"pc1\"")));
        let elsewhere =
            IndexError::NotServedAt { id, url: "http://x/remote".into(), urls: vec!["http://y/remote".into()] };
        assert!(matches!(Exec::from(elsewhere), Exec::Refused(m) if m.contains("its URLs: http://y/remote")));
    }

    #[test]
    fn a_worker_s_token_reaches_only_the_paths_it_attached() {
        let mut ix = Index::default();
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        ix.attach_by(info(1, "http://10.0.0.1:3456/remote", true, false), FsStat::default(), Some("pc1")).unwrap();
        ix.attach_by(info(2, "http://10.0.0.2:3456/remote", true, false), FsStat::default(), None).unwrap();
        assert!(ix.check_owner(a, Some("pc1")).is_ok());
        assert!(ix.check_owner(a, None).is_ok(), "the operator reaches every path");
        let e = ix.check_owner(a, Some("c2")).unwrap_err().to_string();
        assert!(e.contains("belongs to worker \"pc1\"") && e.contains("\"c2\""), "{e}");
        assert!(ix.check_owner(b, Some("pc1")).unwrap_err().to_string().contains("the operator"));
        assert!(matches!(ix.check_owner(Uuid::from_u128(9), Some("pc1")), Err(IndexError::UnknownPath(_))));
        // Taking over another's path by attaching it again is refused; its URLs stay.
        assert!(ix.attach_by(info(1, "http://10.9.9.9:1/remote", true, true), FsStat::default(), Some("c2")).is_err());
        assert_eq!(ix.path(a).unwrap().info.urls, vec!["http://10.0.0.1:3456/remote".to_string()]);
        assert!(ix.attach_by(info(2, "http://10.9.9.9:1/remote", true, true), FsStat::default(), Some("c2")).is_err());
        // Its owner re-attaching, and the operator adding a URL, keep the owner.
        ix.attach_by(info(1, "http://10.0.0.1:3456/remote", true, false), FsStat::default(), Some("pc1")).unwrap();
        ix.attach_by(info(1, "http://10.0.0.3:3456/remote", true, false), FsStat::default(), None).unwrap();
        assert_eq!(ix.path(a).unwrap().owner.as_deref(), Some("pc1"));
    }

    #[test]
    fn a_gone_node_takes_its_paths_and_declarations() {
        let mut ix = Index::default();
        let s = SectorId { miner: 1000, number: 1 };
        ix.attach(info(1, "http://10.0.0.1:3456/remote", true, false), FsStat::default());
        ix.declare(Uuid::from_u128(1), s, FileTypes::of(&[FileType::Unsealed]), true).unwrap();
        assert_eq!(ix.detach_origin("http://10.0.0.1:3456"), vec![Uuid::from_u128(1)]);
        assert!(ix.find(s, FileTypes::of(&[FileType::Unsealed])).is_empty());
        assert!(ix.list().is_empty());
    }

    #[test]
    fn origin_of_urls() {
        assert_eq!(origin("http://127.0.0.1:2345/remote"), "http://127.0.0.1:2345");
        assert_eq!(origin("http://127.0.0.1:2345/rpc/v0"), "http://127.0.0.1:2345");
        assert_eq!(origin("http://h:1"), "http://h:1");
    }
}
