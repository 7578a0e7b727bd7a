//! The sector index's file locks (`StorageLock`, `StorageTryLock`, `StorageGetLocks`), which a
//! Lotus worker takes before it fetches or moves a sector's files.
//!
//! As in Lotus (`paths/index_locks.go`), a lock lasts as long as the call that took it. A Lotus
//! worker reaches the index over HTTP JSON-RPC, so its lock ends when the call returns: over
//! the wire `StorageLock` waits until no conflicting lock is held, and `StorageGetLocks` shows
//! the locks held at that moment. Readers share a file type; a writer excludes everyone.

use sealing_types::{FileType, FileTypes, SectorId};
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
struct Held {
    /// Readers per file type.
    read: [u32; 6],
    write: FileTypes,
}

impl Held {
    fn can_lock(&self, read: FileTypes, write: FileTypes) -> bool {
        let reading = |t: FileType| self.read[t as usize] > 0;
        !write.iter().any(reading) && self.write.0 & (read.0 | write.0) == 0
    }
    fn is_free(&self) -> bool {
        self.read.iter().all(|n| *n == 0) && self.write.is_empty()
    }
}

#[derive(Default)]
pub struct SectorLocks {
    held: Mutex<BTreeMap<SectorId, Held>>,
    released: tokio::sync::Notify,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("unknown file types {0} specified (valid: 1 to 63)")]
pub struct BadTypes(pub u8);

/// A lock held until dropped.
pub struct Guard<'a> {
    locks: &'a SectorLocks,
    sector: SectorId,
    read: FileTypes,
    write: FileTypes,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let mut held = self.locks.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = held.get_mut(&self.sector) {
            for t in self.read.iter() {
                h.read[t as usize] -= 1;
            }
            h.write.0 &= !self.write.0;
            if h.is_free() {
                held.remove(&self.sector);
            }
        }
        drop(held);
        self.locks.released.notify_waiters();
    }
}

fn check(read: FileTypes, write: FileTypes) -> Result<(), BadTypes> {
    let all = read.0 | write.0;
    if all >= 1 << 6 {
        return Err(BadTypes(all));
    }
    Ok(())
}

impl SectorLocks {
    /// Take the lock now, or `None` if a conflicting one is held (`None` too for no types,
    /// as Lotus answers false).
    pub fn try_lock(&self, sector: SectorId, read: FileTypes, write: FileTypes) -> Result<Option<Guard<'_>>, BadTypes> {
        check(read, write)?;
        if read.is_empty() && write.is_empty() {
            return Ok(None);
        }
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let h = held.entry(sector).or_default();
        if !h.can_lock(read, write) {
            if h.is_free() {
                held.remove(&sector);
            }
            return Ok(None);
        }
        for t in read.iter() {
            h.read[t as usize] += 1;
        }
        h.write.0 |= write.0;
        Ok(Some(Guard { locks: self, sector, read, write }))
    }

    /// Wait for the lock.
    pub async fn lock(&self, sector: SectorId, read: FileTypes, write: FileTypes) -> Result<Guard<'_>, String> {
        if read.is_empty() && write.is_empty() {
            return Err("failed to acquire lock: no file types given".into());
        }
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if let Some(g) = self.try_lock(sector, read, write).map_err(|e| e.to_string())? {
                return Ok(g);
            }
            released.await;
        }
    }

    /// `StorageGetLocks`: per sector, readers and writers per file type, by sector number.
    pub fn snapshot(&self) -> Vec<(SectorId, [u32; 6], [u32; 6])> {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> = held
            .iter()
            .map(|(s, h)| {
                let mut w = [0u32; 6];
                for t in h.write.iter() {
                    w[t as usize] = 1;
                }
                (*s, h.read, w)
            })
            .collect();
        out.sort_by_key(|(s, ..)| s.number);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FileType::*;

    #[tokio::test]
    async fn readers_share_writers_exclude_and_a_waiter_gets_the_lock_on_release() {
        let locks = SectorLocks::default();
        let s = SectorId { miner: 1000, number: 1 };
        let (sealed, cache) = (FileTypes::of(&[Sealed]), FileTypes::of(&[Cache]));
        let r1 = locks.try_lock(s, sealed, FileTypes::default()).unwrap().unwrap();
        let _r2 = locks.try_lock(s, sealed, FileTypes::default()).unwrap().unwrap();
        assert!(locks.try_lock(s, FileTypes::default(), sealed).unwrap().is_none(), "readers exclude a writer");
        let w = locks.try_lock(s, FileTypes::default(), cache).unwrap().unwrap();
        assert!(locks.try_lock(s, cache, FileTypes::default()).unwrap().is_none(), "a writer excludes readers");
        assert_eq!(locks.snapshot(), vec![(s, [0, 2, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0])]);
        drop(w);
        drop(r1);
        let waiter = locks.lock(s, FileTypes::default(), sealed);
        tokio::pin!(waiter);
        assert!(futures_util::poll!(waiter.as_mut()).is_pending(), "one reader left");
        drop(_r2);
        let g = waiter.await.unwrap();
        drop(g);
        assert!(locks.snapshot().is_empty(), "released locks leave no entry");
        assert_eq!(locks.try_lock(s, FileTypes(64), FileTypes::default()).err(), Some(BadTypes(64)));
        assert!(locks.try_lock(s, FileTypes::default(), FileTypes::default()).unwrap().is_none());
    }
}
