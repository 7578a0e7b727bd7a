//! Work tracking that survives a miner restart (reference §3.9, done better).
//!
//! Each scheduled call is recorded in `sealing.db` under its *work ID* (the task type and a
//! hash of its parameters, as Lotus builds it) with the worker's CallID: `running` when the
//! worker accepted it, `done` with its result when `Return*` came. A restarted miner that asks
//! for the same work finds it: a stored result is used as is, and a running call is waited for
//! (its worker keeps delivering the result until the miner takes it) instead of computing the
//! phase again. Rows of a sector are dropped when it reaches Proving.
//!
//! Reads never touch the disk: the table is mirrored in memory (it holds only sectors still
//! sealing). Writes change the mirror at once and are queued for one writer thread that
//! commits them in order, many to a transaction, so no caller (and no lock of the manager's)
//! waits for SQLite. A `Return*` is answered only once its result is committed
//! ([`CallStore::synced`]): a worker drops a result the miner has taken, so the miner must not
//! lose it.

use lotus_api::types::CallError;
use rusqlite::{params, Connection};
use sealing_types::{CallId, SectorId, TaskType};
use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc;
use std::sync::Mutex;

#[derive(Clone, Debug, PartialEq)]
pub enum Tracked {
    Running(CallId),
    Done { value: serde_json::Value, host: String },
}

#[derive(Clone)]
struct Row {
    sector: SectorId,
    call: CallId,
    host: String,
    /// The result, once `Return*` brought one.
    done: Option<serde_json::Value>,
}

enum Op {
    Running { work: String, sector: SectorId, call: CallId, host: String },
    Done { call: CallId, value: serde_json::Value },
    DeleteCall(CallId),
    DeleteWork(String),
    DeleteSector(SectorId),
}

#[derive(Default)]
struct Mirror {
    rows: HashMap<String, Row>,
    by_call: HashMap<CallId, String>,
    /// Ops queued so far (the writer reports how many it committed).
    queued: u64,
}

impl Mirror {
    fn remove_work(&mut self, work: &str) {
        if let Some(r) = self.rows.remove(work) {
            self.by_call.remove(&r.call);
        }
    }
}

pub struct CallStore {
    mirror: Mutex<Mirror>,
    tx: Mutex<Option<mpsc::Sender<Op>>>,
    committed: tokio::sync::watch::Receiver<u64>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// `<task>(<sha256 of the params JSON>)`: the same work asked twice has the same ID.
pub fn work_id(task: TaskType, params: &[serde_json::Value]) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(serde_json::to_string(params).expect("JSON values encode").as_bytes());
    format!("{}({})", task.short(), h.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

fn call_key(call: CallId) -> String {
    serde_json::to_string(&call).expect("a call ID serialises")
}

/// The writer thread: commit queued ops in order, as many per transaction as are waiting.
fn write_loop(conn: Connection, rx: mpsc::Receiver<Op>, committed: tokio::sync::watch::Sender<u64>) {
    let mut done = 0u64;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter().take(4095));
        if let Err(e) = commit(&conn, &batch) {
            tracing::warn!(
                "recording {} work-tracking changes failed (a restart would recompute that work): {e}",
                batch.len()
            );
        }
        done += batch.len() as u64;
        committed.send_replace(done);
    }
}

fn commit(conn: &Connection, batch: &[Op]) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    for op in batch {
        match op {
            Op::Running { work, sector, call, host } => tx
                .prepare_cached(
                    "INSERT INTO calls (work_id, sector, call_id, state, host) VALUES (?1, ?2, ?3, 'running', ?4)
                     ON CONFLICT(work_id) DO UPDATE SET call_id = ?3, state = 'running', host = ?4, result = NULL",
                )?
                .execute(params![work, sector.number, call_key(*call), host])?,
            Op::Done { call, value } => tx
                .prepare_cached("UPDATE calls SET state = 'done', result = ?2 WHERE call_id = ?1")?
                .execute(params![call_key(*call), value.to_string()])?,
            Op::DeleteCall(call) => {
                tx.prepare_cached("DELETE FROM calls WHERE call_id = ?1")?.execute([call_key(*call)])?
            }
            Op::DeleteWork(work) => tx.prepare_cached("DELETE FROM calls WHERE work_id = ?1")?.execute([work])?,
            Op::DeleteSector(s) => tx.prepare_cached("DELETE FROM calls WHERE sector = ?1")?.execute([s.number])?,
        };
    }
    tx.commit()
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
        let mut mirror = Mirror::default();
        {
            let mut q = conn.prepare("SELECT work_id, sector, call_id, state, host, result FROM calls")?;
            let rows = q.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            })?;
            for row in rows {
                let (work, _, call, state, host, result) = row?;
                let Ok(call) = serde_json::from_str::<CallId>(&call) else { continue };
                let done = match state.as_str() {
                    "done" => match result.and_then(|r| serde_json::from_str(&r).ok()) {
                        Some(v) => Some(v),
                        None => continue,
                    },
                    _ => None,
                };
                mirror.by_call.insert(call, work.clone());
                mirror.rows.insert(work, Row { sector: call.sector, call, host, done });
            }
        }
        let (tx, rx) = mpsc::channel();
        let (ctx, committed) = tokio::sync::watch::channel(0);
        let writer = std::thread::Builder::new()
            .name("call-store".into())
            .spawn(move || write_loop(conn, rx, ctx))
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(CallStore {
            mirror: Mutex::new(mirror),
            tx: Mutex::new(Some(tx)),
            committed,
            writer: Mutex::new(Some(writer)),
        })
    }

    fn mirror(&self) -> std::sync::MutexGuard<'_, Mirror> {
        self.mirror.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue an op (the mirror is already changed); its sequence number.
    fn queue(&self, m: &mut Mirror, op: Op) -> u64 {
        if let Some(tx) = self.tx.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let _ = tx.send(op);
        }
        m.queued += 1;
        m.queued
    }

    pub fn get(&self, work: &str) -> Option<Tracked> {
        let m = self.mirror();
        let r = m.rows.get(work)?;
        Some(match &r.done {
            Some(value) => Tracked::Done { value: value.clone(), host: r.host.clone() },
            None => Tracked::Running(r.call),
        })
    }

    pub fn running(&self, work: &str, sector: SectorId, call: CallId, host: &str) {
        let mut m = self.mirror();
        m.remove_work(work);
        m.by_call.insert(call, work.to_string());
        m.rows.insert(work.to_string(), Row { sector, call, host: host.to_string(), done: None });
        self.queue(&mut m, Op::Running { work: work.to_string(), sector, call, host: host.to_string() });
    }

    /// A `Return*` for a call this miner tracks: whether it was tracked, and the sequence
    /// number to wait for ([`CallStore::synced`]) before telling the worker it was taken.
    /// Errors are not stored: a failed call is retried by the sector's state machine.
    pub fn returned(&self, call: CallId, result: &Result<serde_json::Value, CallError>) -> (bool, u64) {
        let mut m = self.mirror();
        let Some(work) = m.by_call.get(&call).cloned() else { return (false, m.queued) };
        let seq = match result {
            Ok(v) => {
                if let Some(r) = m.rows.get_mut(&work) {
                    r.done = Some(v.clone());
                }
                self.queue(&mut m, Op::Done { call, value: v.clone() })
            }
            Err(_) => {
                m.remove_work(&work);
                self.queue(&mut m, Op::DeleteCall(call))
            }
        };
        (true, seq)
    }

    /// Wait until every op up to `seq` is committed (or the writer is gone).
    pub async fn synced(&self, seq: u64) {
        let mut rx = self.committed.clone();
        let _ = rx.wait_for(|&c| c >= seq).await;
    }

    /// Commit everything queued, then stop the writer (the daemon's shutdown; tests).
    pub fn close(&self) {
        drop(self.tx.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(w) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = w.join();
        }
    }

    pub fn host_of(&self, call: CallId) -> Option<String> {
        let m = self.mirror();
        let work = m.by_call.get(&call)?;
        m.rows.get(work).map(|r| r.host.clone())
    }

    pub fn forget(&self, work: &str) {
        let mut m = self.mirror();
        m.remove_work(work);
        self.queue(&mut m, Op::DeleteWork(work.to_string()));
    }

    /// Drop the sector's finished results (its running calls stay tracked): a step that
    /// failed after using them retries with fresh work, instead of being handed the same
    /// result (an invalid proof, a bad PC2 output) on every retry. Returns how many.
    pub fn forget_done(&self, sector: SectorId) -> usize {
        let mut m = self.mirror();
        let works: Vec<String> =
            m.rows.iter().filter(|(_, r)| r.sector == sector && r.done.is_some()).map(|(w, _)| w.clone()).collect();
        for w in &works {
            m.remove_work(w);
            self.queue(&mut m, Op::DeleteWork(w.clone()));
        }
        works.len()
    }

    /// Garbage collection once a sector has moved on for good.
    pub fn forget_sector(&self, sector: SectorId) {
        let mut m = self.mirror();
        let works: Vec<String> = m.rows.iter().filter(|(_, r)| r.sector == sector).map(|(w, _)| w.clone()).collect();
        for w in works {
            m.remove_work(&w);
        }
        self.queue(&mut m, Op::DeleteSector(sector));
    }

    pub fn len(&self) -> usize {
        self.mirror().rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for CallStore {
    fn drop(&mut self) {
        self.close();
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
        let w = work_id(TaskType::Commit2, &[1.into(), 2.into()]);
        assert_eq!(w, work_id(TaskType::Commit2, &[1.into(), 2.into()]));
        assert_ne!(w, work_id(TaskType::Commit2, &[1.into(), 3.into()]));
        {
            let s = CallStore::open(&p).unwrap();
            s.running(&w, sector, call, "host-b");
        }
        let s = CallStore::open(&p).unwrap();
        assert_eq!(s.get(&w), Some(Tracked::Running(call)));
        assert!(s.returned(call, &Ok(serde_json::json!("proof"))).0);
        assert_eq!(s.get(&w), Some(Tracked::Done { value: serde_json::json!("proof"), host: "host-b".into() }));
        let other = CallId { sector, id: uuid::Uuid::new_v4() };
        assert!(!s.returned(other, &Ok(serde_json::json!(1))).0, "unknown calls are not tracked");
        drop(s);
        let s = CallStore::open(&p).unwrap();
        assert_eq!(s.get(&w), Some(Tracked::Done { value: serde_json::json!("proof"), host: "host-b".into() }));
        s.forget_sector(sector);
        assert!(s.is_empty());
        drop(s);
        assert!(CallStore::open(&p).unwrap().is_empty(), "the forgetting was committed");
    }

    /// A result the failed step used is dropped, so the retry recomputes it; a call still
    /// running stays tracked (the retry waits for it), and other sectors are untouched.
    #[test]
    fn a_failed_steps_results_are_dropped_and_its_running_calls_kept() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sealing.db");
        let sector = SectorId { miner: 1000, number: 4 };
        let other = SectorId { miner: 1000, number: 5 };
        let call = |s| CallId { sector: s, id: uuid::Uuid::new_v4() };
        let (c2, fin, c2b) = (call(sector), call(sector), call(other));
        let w = |t, n: u64| work_id(t, &[n.into()]);
        let s = CallStore::open(&p).unwrap();
        s.running(&w(TaskType::Commit2, 4), sector, c2, "h");
        s.running(&w(TaskType::Finalize, 4), sector, fin, "h");
        s.running(&w(TaskType::Commit2, 5), other, c2b, "h");
        s.returned(c2, &Ok(serde_json::json!("bad proof")));
        s.returned(c2b, &Ok(serde_json::json!("proof")));
        assert_eq!(s.forget_done(sector), 1);
        assert_eq!(s.get(&w(TaskType::Commit2, 4)), None, "recomputed on retry");
        assert_eq!(s.get(&w(TaskType::Finalize, 4)), Some(Tracked::Running(fin)));
        assert!(matches!(s.get(&w(TaskType::Commit2, 5)), Some(Tracked::Done { .. })));
        drop(s);
        let s = CallStore::open(&p).unwrap();
        assert_eq!(s.get(&w(TaskType::Commit2, 4)), None, "the drop was committed");
        assert_eq!(s.len(), 2);
    }
}
