//! Terminations, batched as Lotus's `TerminateBatcher` does: `sectors terminate N` queues the
//! sector by its (deadline, partition); one TerminateSectors message carries the queue when it
//! reaches `[Sealing] TerminateBatchMax` sectors, or after `TerminateBatchWait` once it holds
//! `TerminateBatchMin`, or on `sectors terminate flush`. Sectors of the current, the next and
//! the previous deadline wait (the actor refuses changes to a deadline that is open or about
//! to open). Each queued sector's state machine waits for the message that carries it.

use crate::chain::{ChainClient, ChainError};
use lotus_api::wire::Cid;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, Notify};

#[derive(Clone, Copy, Debug)]
pub struct TerminateConfig {
    pub max: usize,
    pub min: usize,
    pub wait: Duration,
}

/// The queue: what is waiting where, and who waits for it.
#[derive(Default)]
pub struct Queue {
    todo: BTreeMap<(u64, u64), BTreeSet<u64>>,
    waiting: BTreeMap<u64, Vec<oneshot::Sender<Cid>>>,
}

impl Queue {
    pub fn len(&self) -> usize {
        self.todo.values().map(BTreeSet::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn pending(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.todo.values().flatten().copied().collect();
        v.sort_unstable();
        v
    }

    /// The declarations one message carries now: every queued location outside the deadlines
    /// the actor will not change (the current one and its neighbours), at most `max` sectors.
    pub fn take(&self, current: u64, deadlines: u64, max: usize) -> Vec<(u64, u64, Vec<u64>)> {
        let n = deadlines.max(1);
        // The actor refuses the current and the next deadline; Lotus waits out the previous
        // one too (its proofs may still be disputed), except where that would leave no
        // deadline at all (a devnet of three).
        let previous = if n > 3 { (current + n - 1) % n } else { current % n };
        let near = [current % n, (current + 1) % n, previous];
        let mut out = vec![];
        let mut total = 0;
        for (&(d, p), sectors) in &self.todo {
            if near.contains(&d) || sectors.is_empty() || total >= max {
                continue;
            }
            let take: Vec<u64> = sectors.iter().copied().take(max - total).collect();
            total += take.len();
            out.push((d, p, take));
        }
        out
    }

    /// The sent declarations leave the queue; their sectors' waiters get the message.
    fn sent(&mut self, declarations: &[(u64, u64, Vec<u64>)], cid: Cid) {
        for (d, p, sectors) in declarations {
            if let Some(set) = self.todo.get_mut(&(*d, *p)) {
                for n in sectors {
                    set.remove(n);
                    for w in self.waiting.remove(n).unwrap_or_default() {
                        let _ = w.send(cid);
                    }
                }
                if set.is_empty() {
                    self.todo.remove(&(*d, *p));
                }
            }
        }
    }
}

/// A `flush` caller, waiting for what was sent.
type FlushReply = oneshot::Sender<Result<Option<Cid>, String>>;

pub struct Terminator {
    chain: Arc<ChainClient>,
    cfg: TerminateConfig,
    queue: Mutex<Queue>,
    notify: Notify,
    /// `sectors terminate flush`: send now, and say what was sent.
    flush: tokio::sync::mpsc::Sender<FlushReply>,
    flush_rx: tokio::sync::Mutex<tokio::sync::mpsc::Receiver<FlushReply>>,
}

impl Terminator {
    pub fn new(chain: Arc<ChainClient>, cfg: TerminateConfig) -> Arc<Terminator> {
        let (flush, flush_rx) = tokio::sync::mpsc::channel(8);
        Arc::new(Terminator {
            chain,
            cfg,
            queue: Mutex::default(),
            notify: Notify::new(),
            flush,
            flush_rx: tokio::sync::Mutex::new(flush_rx),
        })
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue a live sector and wait for the message that terminates it; `None` when the chain
    /// has it no more (terminated already, or expired).
    pub async fn add(&self, number: u64) -> Result<Option<Cid>, ChainError> {
        let Some((_, Some((d, p)))) = self.chain.locate(&[number]).await?.pop() else {
            return Ok(None);
        };
        let rx = {
            let mut q = self.queue();
            q.todo.entry((d, p)).or_default().insert(number);
            let (tx, rx) = oneshot::channel();
            q.waiting.entry(number).or_default().push(tx);
            rx
        };
        self.notify.notify_one();
        // The sender lives in the queue until the message goes; a dropped queue (shutdown)
        // ends the wait, and the sector's state machine retries after a restart.
        rx.await.map(Some).map_err(|_| ChainError::State("the termination queue stopped".into()))
    }

    pub fn pending(&self) -> Vec<u64> {
        self.queue().pending()
    }

    /// Send what may be sent now; the message CID, or `None` when nothing could go.
    pub async fn flush(&self) -> Result<Option<Cid>, String> {
        let (tx, rx) = oneshot::channel();
        self.flush.send(tx).await.map_err(|_| "the termination batcher is not running".to_string())?;
        rx.await.map_err(|_| "the termination batcher stopped".to_string())?
    }

    /// The batcher's loop (tracked by the daemon).
    pub async fn run(self: Arc<Self>) {
        let mut flush_rx = self.flush_rx.lock().await;
        loop {
            tokio::select! {
                _ = self.notify.notified() => {
                    if self.queue().len() >= self.cfg.max {
                        let _ = self.send().await;
                    }
                }
                _ = tokio::time::sleep(self.cfg.wait) => {
                    if self.queue().len() >= self.cfg.min.max(1) {
                        let _ = self.send().await;
                    }
                }
                Some(reply) = flush_rx.recv() => {
                    let _ = reply.send(self.send().await);
                }
            }
        }
    }

    async fn send(&self) -> Result<Option<Cid>, String> {
        let dl = self.chain.deadline_at(self.chain.head().await.map_err(|e| e.to_string())?);
        let declarations = self.queue().take(dl.index, dl.deadlines, self.cfg.max);
        if declarations.is_empty() {
            return Ok(None);
        }
        match self.chain.push_terminate(&declarations).await {
            Ok(cid) => {
                tracing::info!(%cid, terminations = ?declarations, "Sent TerminateSectors message");
                self.queue().sent(&declarations, cid);
                Ok(Some(cid))
            }
            Err(e) => {
                tracing::error!("sending TerminateSectors (the sectors stay queued): {e}");
                Err(e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_leaves_out_the_deadlines_the_actor_will_not_change_and_stops_at_max() {
        let mut q = Queue::default();
        for (d, n) in [(0, 1), (1, 2), (2, 3), (3, 4), (3, 5), (5, 6)] {
            q.todo.entry((d, 0)).or_default().insert(n);
        }
        // Current deadline 2 of 6: 1, 2 and 3 wait.
        assert_eq!(q.take(2, 6, 10), vec![(0, 0, vec![1]), (5, 0, vec![6])]);
        // Current 0: 5, 0 and 1 wait; two sectors at most.
        assert_eq!(q.take(0, 6, 2), vec![(2, 0, vec![3]), (3, 0, vec![4])]);
        // Three deadlines: only the current and the next wait.
        let mut three = Queue::default();
        for d in 0..3 {
            three.todo.entry((d, 0)).or_default().insert(d + 1);
        }
        assert_eq!(three.take(1, 3, 10), vec![(0, 0, vec![1])]);
        let (tx, mut rx) = oneshot::channel();
        q.waiting.entry(3).or_default().push(tx);
        let cid = lotus_api::wire::Commitment::Sealed.to_cid(&[1; 32]);
        q.sent(&[(2, 0, vec![3])], cid);
        assert_eq!(rx.try_recv().unwrap(), cid);
        assert_eq!(q.pending(), vec![1, 2, 4, 5, 6]);
    }
}
