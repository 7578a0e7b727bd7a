//! Sector file types and storage path kinds (reference §5.1).

use serde::{Deserialize, Serialize};
use std::fmt;

/// One kind of sector file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileType {
    Unsealed,
    Sealed,
    Cache,
    Update,
    UpdateCache,
    Piece,
}

impl FileType {
    pub const ALL: [FileType; 6] = [
        FileType::Unsealed,
        FileType::Sealed,
        FileType::Cache,
        FileType::Update,
        FileType::UpdateCache,
        FileType::Piece,
    ];
    pub fn bit(self) -> u8 {
        1 << (self as u8)
    }
    pub fn name(self) -> &'static str {
        match self {
            FileType::Unsealed => "unsealed",
            FileType::Sealed => "sealed",
            FileType::Cache => "cache",
            FileType::Update => "update",
            FileType::UpdateCache => "update-cache",
            FileType::Piece => "piece",
        }
    }
    pub fn from_name(name: &str) -> Option<FileType> {
        FileType::ALL.into_iter().find(|t| t.name() == name)
    }
    /// A directory of files (the caches), not one file.
    pub fn is_dir(self) -> bool {
        matches!(self, FileType::Cache | FileType::UpdateCache)
    }
    /// The most bytes a transfer of this file type may carry for a sector of `sector_size`
    /// (as sent: a cache's tar headers count): a file, the sector's size with room for the
    /// trailer of Lotus's unsealed files; a cache, a quarter above Lotus's own estimate of its
    /// use while sealing, plus 64 KiB for its small fixed-size files (`p_aux`, `t_aux`) and the
    /// archive's headers. A source that sends more is refused, so one fetch cannot fill a disk.
    pub fn max_transfer(self, sector_size: u64) -> u64 {
        if self.is_dir() {
            self.seal_overhead_tenths() * sector_size / 10 * 5 / 4 + (64 << 10)
        } else {
            sector_size + sector_size / 64 + 4096
        }
    }
    /// Space needed while sealing, in tenths of the sector size (`FSOverheadSeal`).
    pub fn seal_overhead_tenths(self) -> u64 {
        match self {
            FileType::Cache => 141,
            FileType::UpdateCache => 21,
            _ => 10,
        }
    }
    /// Space needed once finalized, in tenths of the sector size (`FsOverheadFinalized`).
    pub fn finalized_overhead_tenths(self) -> u64 {
        match self {
            FileType::Cache | FileType::UpdateCache => 1,
            _ => 10,
        }
    }
}

/// A set of sector file types (Lotus `SectorFileType` bitmask).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FileTypes(pub u8);

impl FileTypes {
    pub const NONE: FileTypes = FileTypes(0);
    pub fn of(types: &[FileType]) -> FileTypes {
        FileTypes(types.iter().fold(0, |acc, t| acc | t.bit()))
    }
    pub fn contains(self, t: FileType) -> bool {
        self.0 & t.bit() != 0
    }
    pub fn intersects(self, other: FileTypes) -> bool {
        self.0 & other.0 != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn iter(self) -> impl Iterator<Item = FileType> {
        FileType::ALL.into_iter().filter(move |t| self.contains(*t))
    }
    /// Bytes needed to allocate these files for a sector of `sector_size` on a path of `kind`.
    pub fn space_use(self, sector_size: u64, kind: PathType) -> u64 {
        self.iter()
            .map(|t| {
                let tenths = match kind {
                    PathType::Sealing => t.seal_overhead_tenths(),
                    PathType::Storage => t.finalized_overhead_tenths(),
                };
                tenths.saturating_mul(sector_size) / 10
            })
            .sum()
    }
}

impl fmt::Display for FileTypes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = self.iter().map(|t| t.name()).collect();
        f.write_str(&names.join("|"))
    }
}

/// Whether an allocation is for sealing scratch space or for long-term storage.
/// On the wire `"sealing"` / `"storage"`, as Lotus's `storiface.PathType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathType {
    Sealing,
    Storage,
}

/// Whether a write failed because its filesystem is full (ENOSPC) or the user's quota is
/// spent (EDQUOT): a task failing on it fails temporarily (code 102) and resumes once space is
/// freed, as a failed allocation does.
pub fn is_no_space(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_space_of_pc1_outputs_is_15_1x() {
        let t = FileTypes::of(&[FileType::Sealed, FileType::Cache]);
        let gib32 = 32u64 << 30;
        assert_eq!(t.space_use(gib32, PathType::Sealing), gib32 * 151 / 10);
        assert_eq!(t.space_use(gib32, PathType::Storage), gib32 * 11 / 10);
        assert_eq!(t.to_string(), "sealed|cache");
    }
}
