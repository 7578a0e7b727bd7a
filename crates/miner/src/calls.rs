//! Work tracking that survives a miner restart (reference §3.9, done better).
//!
//! Each scheduled call is recorded in `sealing.db` under its *work ID* (the task type and a
//! hash of its parameters, as Lotus builds it) with the worker's CallID: `running` when the
//! worker accepted it, `done` with its result when `Return*` came. A restarted miner that asks
//! for the same work finds it: a stored result is used as is, and a running call is waited for
//! (its worker keeps delivering the result until the miner takes it) instead of computing the
//! phase again. Rows of a sector are dropped when it reaches Proving.

use lotus_api::types::CallError;
use rusqlite::{params, Connection, OptionalExtension};
use sealing_types::{CallId, SectorId, TaskType};
use std::path::Path;
use std::sync::Mutex;

#[derive(Clone, Debug, PartialEq)]
pub enum Tracked {
    Running(CallId),
    Done { value: serde_json::Value, host: String },
}

pub struct CallStore {
    conn: Mutex<Connection>,
}

/// `<task>(<sha256 of the params JSON>)`: the same work asked twice has the same ID.
pub fn work_id(task: TaskType, params: &serde_json::Value) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(params.to_string().as_bytes());
    format!("{}({})", task.short(), h.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

impl CallStore {
    pub fn open(path: &Path) -> rusqlite::Result<CallStore> {
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA busy_timeout=5000;
             CREATE TABLE IF NOT EXISTS calls (work_id TEXT PRIMARY KEY, sector INTEGER NOT NULL,
                 call_id TEXT NOT NULL UNIQUE, state TEXT NOT NULL, host TEXT NOT NULL DEFAULT '',
                 result TEXT);",
        )?;
        Ok(CallStore { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, work: &str) -> Option<Tracked> {
        let row: Option<(String, String, String, Option<String>)> = self
            .conn()
            .query_row("SELECT call_id, state, host, result FROM calls WHERE work_id = ?1", [work], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()
            .unwrap_or(None);
        let (call, state, host, result) = row?;
        match state.as_str() {
            "done" => Some(Tracked::Done { value: serde_json::from_str(&result?).ok()?, host }),
            "running" => serde_json::from_str(&call).ok().map(Tracked::Running),
            _ => None,
        }
    }

    pub fn running(&self, work: &str, sector: SectorId, call: CallId, host: &str) {
        let r = self.conn().execute(
            "INSERT INTO calls (work_id, sector, call_id, state, host) VALUES (?1, ?2, ?3, 'running', ?4)
             ON CONFLICT(work_id) DO UPDATE SET call_id = ?3, state = 'running', host = ?4, result = NULL",
            params![work, sector.number, serde_json::to_string(&call).expect("serialises"), host],
        );
        if let Err(e) = r {
            tracing::warn!(%work, "recording the call failed (a restart would recompute it): {e}");
        }
    }

    /// A `Return*` for a call this miner tracks; returns whether it was tracked. Errors are not
    /// stored: a failed call is retried by the sector's state machine.
    pub fn returned(&self, call: CallId, result: &Result<serde_json::Value, CallError>) -> bool {
        let key = serde_json::to_string(&call).expect("serialises");
        let c = self.conn();
        let r = match result {
            Ok(v) => c.execute(
                "UPDATE calls SET state = 'done', result = ?2 WHERE call_id = ?1",
                params![key, v.to_string()],
            ),
            Err(_) => c.execute("DELETE FROM calls WHERE call_id = ?1", [key]),
        };
        matches!(r, Ok(n) if n > 0)
    }

    pub fn host_of(&self, call: CallId) -> Option<String> {
        let key = serde_json::to_string(&call).expect("serialises");
        self.conn()
            .query_row("SELECT host FROM calls WHERE call_id = ?1", [key], |r| r.get(0))
            .optional()
            .unwrap_or(None)
    }

    pub fn forget(&self, work: &str) {
        let _ = self.conn().execute("DELETE FROM calls WHERE work_id = ?1", [work]);
    }

    /// Garbage collection once a sector has moved on for good.
    pub fn forget_sector(&self, sector: SectorId) {
        let _ = self.conn().execute("DELETE FROM calls WHERE sector = ?1", [sector.number]);
    }

    pub fn len(&self) -> usize {
        self.conn().query_row("SELECT COUNT(*) FROM calls", [], |r| r.get::<_, i64>(0)).unwrap_or(0) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tracked_call_survives_reopening_and_its_result_is_kept() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sealing.db");
        let sector = SectorId { miner: 1000, number: 4 };
        let call = CallId { sector, id: uuid::Uuid::new_v4() };
        let w = work_id(TaskType::Commit2, &serde_json::json!([1, 2]));
        assert_eq!(w, work_id(TaskType::Commit2, &serde_json::json!([1, 2])));
        assert_ne!(w, work_id(TaskType::Commit2, &serde_json::json!([1, 3])));
        {
            let s = CallStore::open(&p).unwrap();
            s.running(&w, sector, call, "host-b");
        }
        let s = CallStore::open(&p).unwrap();
        assert_eq!(s.get(&w), Some(Tracked::Running(call)));
        assert!(s.returned(call, &Ok(serde_json::json!("proof"))));
        assert_eq!(s.get(&w), Some(Tracked::Done { value: serde_json::json!("proof"), host: "host-b".into() }));
        let other = CallId { sector, id: uuid::Uuid::new_v4() };
        assert!(!s.returned(other, &Ok(serde_json::json!(1))), "unknown calls are not tracked");
        s.forget_sector(sector);
        assert!(s.is_empty());
    }
}
