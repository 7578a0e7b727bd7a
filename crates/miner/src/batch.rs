//! Pre-commit and commit batches (`[Sealing] BatchPreCommits`, `AggregateCommits` and their
//! limits, `sectors batching`): sectors wait in a queue, and one message carries them all.
//!
//! A queue is sent when it holds its maximum, when its oldest sector has waited the batch
//! wait, when a sector's cutoff (its ticket's expiry for a pre-commit, its pre-commit's expiry
//! for a commit) is closer than the slack, or when an operator flushes it. That is Lotus's
//! rule (`storage/pipeline/precommit_batch.go`, `commit_batch.go`), with the wait counted
//! from the oldest sector instead of from the last send.
//!
//! [`Queue`] is the pure decision, tested with explicit times; [`Batcher`] runs it: each
//! sector's state machine waits on its entry's reply, so a sector that is removed or restarted
//! drops its reply and leaves the batch.

use futures_util::future::BoxFuture;
use lotus_api::types::CallError;
use lotus_api::wire::Cid;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::{oneshot, Notify};

/// A batch's limits: its maximum, its wait and its slack (`[Sealing]`).
pub use lotus_node::config::BatchLimits as BatchConfig;

/// Which sectors wait, since when, and until when they can.
#[derive(Debug)]
pub struct Queue {
    cfg: BatchConfig,
    entries: BTreeMap<u64, (SystemTime, Option<SystemTime>)>,
}

impl Queue {
    pub fn new(cfg: BatchConfig) -> Queue {
        Queue { cfg, entries: BTreeMap::new() }
    }

    pub fn add(&mut self, sector: u64, now: SystemTime, cutoff: Option<SystemTime>) {
        self.entries.insert(sector, (now, cutoff));
    }

    pub fn remove(&mut self, sector: u64) {
        self.entries.remove(&sector);
    }

    pub fn sectors(&self) -> Vec<u64> {
        self.entries.keys().copied().collect()
    }

    /// When the queue must be sent (`None`: it is empty).
    pub fn send_at(&self) -> Option<SystemTime> {
        if self.entries.len() >= self.cfg.max {
            return Some(SystemTime::UNIX_EPOCH);
        }
        self.entries
            .values()
            .map(|(since, cutoff)| {
                let by_wait = *since + self.cfg.wait;
                match cutoff {
                    Some(c) => by_wait.min(c.checked_sub(self.cfg.slack).unwrap_or(SystemTime::UNIX_EPOCH)),
                    None => by_wait,
                }
            })
            .min()
    }

    /// The sectors of the next batch (at most `max`, lowest numbers first) when it is due at
    /// `now`, or at once with `force`; they leave the queue.
    pub fn take(&mut self, now: SystemTime, force: bool) -> Vec<u64> {
        let due = force || self.send_at().is_some_and(|t| t <= now);
        if !due {
            return vec![];
        }
        let batch: Vec<u64> = self.entries.keys().take(self.cfg.max).copied().collect();
        for n in &batch {
            self.entries.remove(n);
        }
        batch
    }
}

/// What a batch's message did, for each of its sectors and for `sectors batching --publish-now`.
#[derive(Clone, Debug)]
pub struct Sent {
    pub sectors: Vec<u64>,
    pub result: Result<Cid, CallError>,
}

/// Sends one batch's message (the sectors with their entries, lowest numbers first).
pub type SendFn<T> = Arc<dyn Fn(Vec<(u64, T)>) -> BoxFuture<'static, Result<Cid, CallError>> + Send + Sync>;

struct Waiting<T> {
    entry: T,
    reply: oneshot::Sender<Result<(Cid, usize), CallError>>,
}

struct Inner<T> {
    queue: Queue,
    waiting: HashMap<u64, Waiting<T>>,
}

pub struct Batcher<T> {
    /// "pre-commit" or "commit", for the logs.
    pub kind: &'static str,
    inner: Mutex<Inner<T>>,
    wake: Notify,
    send: SendFn<T>,
}

impl<T: Send + 'static> Batcher<T> {
    pub fn new(kind: &'static str, cfg: BatchConfig, send: SendFn<T>) -> Arc<Self> {
        Arc::new(Batcher {
            kind,
            inner: Mutex::new(Inner { queue: Queue::new(cfg), waiting: HashMap::new() }),
            wake: Notify::new(),
            send,
        })
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue a sector and wait for the message that carries it (and how many sectors it
    /// carries). A sector queued again (a restarted state machine) replaces its earlier entry.
    pub async fn submit(&self, sector: u64, entry: T, cutoff: Option<SystemTime>) -> Result<(Cid, usize), CallError> {
        let (reply, rx) = oneshot::channel();
        {
            let mut inner = self.inner();
            inner.queue.add(sector, SystemTime::now(), cutoff);
            inner.waiting.insert(sector, Waiting { entry, reply });
        }
        self.wake.notify_one();
        rx.await.unwrap_or_else(|_| {
            Err(CallError::unknown(format!("the miner stopped the {} batch before it was sent", self.kind)))
        })
    }

    /// The sectors waiting (those whose state machine still waits for the batch).
    pub fn pending(&self) -> Vec<u64> {
        let mut inner = self.inner();
        Self::drop_abandoned(&mut inner);
        inner.queue.sectors()
    }

    fn drop_abandoned(inner: &mut Inner<T>) {
        let gone: Vec<u64> = inner.waiting.iter().filter(|(_, w)| w.reply.is_closed()).map(|(n, _)| *n).collect();
        for n in gone {
            inner.waiting.remove(&n);
            inner.queue.remove(n);
        }
    }

    fn take(&self, force: bool) -> Vec<(u64, Waiting<T>)> {
        let mut inner = self.inner();
        Self::drop_abandoned(&mut inner);
        let batch = inner.queue.take(SystemTime::now(), force);
        batch.into_iter().filter_map(|n| inner.waiting.remove(&n).map(|w| (n, w))).collect()
    }

    async fn send_batch(&self, batch: Vec<(u64, Waiting<T>)>) -> Sent {
        let sectors: Vec<u64> = batch.iter().map(|(n, _)| *n).collect();
        let mut replies = Vec::with_capacity(batch.len());
        let mut entries = Vec::with_capacity(batch.len());
        for (n, w) in batch {
            replies.push(w.reply);
            entries.push((n, w.entry));
        }
        let result = (self.send)(entries).await;
        match &result {
            Ok(cid) => tracing::info!(sectors = ?sectors, message = %cid, "{} batch sent", self.kind),
            Err(e) => tracing::warn!(sectors = ?sectors, "{} batch failed: {e}", self.kind),
        }
        let n = sectors.len();
        for r in replies {
            let _ = r.send(result.clone().map(|c| (c, n)));
        }
        Sent { sectors, result }
    }

    /// `SectorPreCommitFlush`/`SectorCommitFlush`: send every waiting sector now, in batches
    /// of at most the maximum.
    pub async fn flush(&self) -> Vec<Sent> {
        let mut out = vec![];
        loop {
            let batch = self.take(true);
            if batch.is_empty() {
                return out;
            }
            out.push(self.send_batch(batch).await);
        }
    }

    /// Send batches as they come due, until the miner stops.
    pub async fn run(self: Arc<Self>) {
        loop {
            let at = self.inner().queue.send_at();
            // Nothing queued: a submit wakes the loop.
            let sleep = at
                .map(|t| t.duration_since(SystemTime::now()).unwrap_or_default())
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
            loop {
                let batch = self.take(false);
                if batch.is_empty() {
                    break;
                }
                self.send_batch(batch).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BatchConfig {
        BatchConfig { max: 3, wait: Duration::from_secs(60), slack: Duration::from_secs(10) }
    }

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + s)
    }

    #[test]
    fn a_queue_is_sent_when_full_when_its_oldest_waited_or_near_a_cutoff() {
        let mut q = Queue::new(cfg());
        assert_eq!(q.send_at(), None);
        assert!(q.take(at(0), false).is_empty());
        q.add(5, at(0), None);
        q.add(2, at(10), None);
        assert_eq!(q.send_at(), Some(at(60)), "the oldest sector's wait");
        assert!(q.take(at(59), false).is_empty());
        assert_eq!(q.take(at(60), false), vec![2, 5]);
        assert!(q.sectors().is_empty());

        // A cutoff closer than the wait: sent `slack` before it.
        q.add(1, at(100), Some(at(130)));
        q.add(3, at(100), None);
        assert_eq!(q.send_at(), Some(at(120)));
        assert_eq!(q.take(at(120), false), vec![1, 3]);

        // A cutoff already within the slack: due at once.
        q.add(4, at(200), Some(at(205)));
        assert!(q.send_at().unwrap() <= at(200));
    }

    #[test]
    fn a_full_queue_is_sent_at_once_and_at_most_max_go_in_one_batch() {
        let mut q = Queue::new(cfg());
        for n in [9, 7, 8, 6] {
            q.add(n, at(0), None);
        }
        assert_eq!(q.take(at(0), false), vec![6, 7, 8], "full: the lowest numbers, at most max");
        assert!(q.take(at(1), false).is_empty(), "one left, not due");
        assert_eq!(q.take(at(1), true), vec![9], "a flush sends it");
    }

    #[tokio::test]
    async fn a_batcher_replies_to_every_sector_of_the_batch_and_forgets_abandoned_ones() {
        let sent: Arc<Mutex<Vec<Vec<u64>>>> = Default::default();
        let log = sent.clone();
        let send: SendFn<&'static str> = Arc::new(move |b: Vec<(u64, &'static str)>| {
            log.lock().unwrap().push(b.iter().map(|(n, _)| *n).collect());
            Box::pin(async { Ok(lotus_api::chain::cbor_cid(b"batch")) })
        });
        let cfg = BatchConfig { max: 2, wait: Duration::from_secs(3600), slack: Duration::ZERO };
        let b = Batcher::new("pre-commit", cfg, send);
        tokio::spawn(b.clone().run());
        // A sector whose state machine stops waiting leaves the queue.
        let abandoned = tokio::spawn({
            let b = b.clone();
            async move { b.submit(1, "one", None).await }
        });
        tokio::task::yield_now().await;
        while b.pending() != vec![1] {
            tokio::task::yield_now().await;
        }
        abandoned.abort();
        let _ = abandoned.await;
        assert!(b.pending().is_empty());
        // Two sectors fill the batch: one message for both.
        let (r2, r3) = tokio::join!(b.submit(2, "two", None), b.submit(3, "three", None));
        assert_eq!(r2.unwrap(), r3.unwrap());
        assert_eq!(*sent.lock().unwrap(), vec![vec![2, 3]]);
        // A flush sends what waits, below the maximum.
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.submit(4, "four", None).await }
        });
        while b.pending() != vec![4] {
            tokio::task::yield_now().await;
        }
        let flushed = b.flush().await;
        assert_eq!(flushed.len(), 1);
        assert_eq!(flushed[0].sectors, vec![4]);
        assert!(waiter.await.unwrap().is_ok());
        assert!(b.flush().await.is_empty(), "nothing left to send");
    }
}
