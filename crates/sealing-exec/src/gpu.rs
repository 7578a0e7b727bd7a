//! Which GPU a proof process uses. The original hands every GPU of a worker to every task, so
//! PreCommit2 and Commit2 fight over one card (lotus #4309) and operators with several cards
//! run one worker per card in containers (lotus #6813). Here each GPU task is leased cards for
//! its utilisation (the resource table's `GPUUtilization`), and its proof process sees only
//! them (`CUDA_VISIBLE_DEVICES`, which the NVIDIA CUDA and OpenCL drivers both honour).
//!
//! Which cards: [`sealing_types::gpu::GpuCards`], the same bin-packing rule the miner's
//! scheduler admits tasks with, so a task the scheduler started finds its cards free here
//! (the scheduler frees a task's cards only after its result came back, later than this
//! lease ends). A task that fits nowhere waits for a release.

use sealing_types::gpu::{milli, CardLease, GpuCards};
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub struct GpuSlots {
    /// What `CUDA_VISIBLE_DEVICES` names each card by (its UUID from NVML).
    ids: Vec<String>,
    cards: Mutex<GpuCards>,
    released: tokio::sync::Notify,
}

/// Cards held by one task; released when dropped.
#[derive(Debug)]
pub struct GpuLease {
    slots: Arc<GpuSlots>,
    lease: CardLease,
}

impl GpuSlots {
    pub fn new(ids: Vec<String>) -> Arc<Self> {
        let n = ids.len();
        Arc::new(GpuSlots { ids, cards: Mutex::new(GpuCards::new(n)), released: tokio::sync::Notify::new() })
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Per card, thousandths in use.
    pub fn loads(&self) -> Vec<u32> {
        self.cards.lock().unwrap_or_else(|e| e.into_inner()).loads().to_vec()
    }

    /// The cards for a task of `util` GPUs, taken now, or `None` when they are not free.
    pub fn try_take(self: &Arc<Self>, util: f64) -> Option<GpuLease> {
        let lease = self.cards.lock().unwrap_or_else(|e| e.into_inner()).take(milli(util))?;
        Some(GpuLease { slots: self.clone(), lease })
    }

    /// Wait until the cards for a task of `util` GPUs are free, and take them.
    pub async fn take(self: &Arc<Self>, util: f64) -> GpuLease {
        loop {
            let released = self.released.notified();
            if let Some(l) = self.try_take(util) {
                return l;
            }
            released.await;
        }
    }
}

impl GpuLease {
    /// Card indices on this worker.
    pub fn cards(&self) -> &[usize] {
        &self.lease.cards
    }

    /// The value for the proof process's `CUDA_VISIBLE_DEVICES`, or `None` for a CPU task.
    pub fn visible_devices(&self) -> Option<String> {
        (!self.lease.is_empty())
            .then(|| self.lease.cards.iter().map(|&c| self.slots.ids[c].as_str()).collect::<Vec<_>>().join(","))
    }
}

impl Drop for GpuLease {
    fn drop(&mut self) {
        if self.lease.is_empty() {
            return;
        }
        self.slots.cards.lock().unwrap_or_else(|e| e.into_inner()).release(&self.lease);
        self.slots.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two() -> Arc<GpuSlots> {
        GpuSlots::new(vec!["GPU-aaaa".into(), "GPU-bbbb".into()])
    }

    #[test]
    fn two_whole_gpu_tasks_get_different_cards_and_a_third_waits() {
        let g = two();
        let a = g.try_take(1.0).unwrap();
        let b = g.try_take(1.0).unwrap();
        assert_ne!(a.cards(), b.cards());
        assert_eq!(a.visible_devices().unwrap(), "GPU-aaaa");
        assert_eq!(b.visible_devices().unwrap(), "GPU-bbbb");
        assert!(g.try_take(1.0).is_none(), "every GPU is taken");
        assert!(g.try_take(0.5).is_none());
        drop(a);
        let c = g.try_take(1.0).unwrap();
        assert_eq!(c.visible_devices().unwrap(), "GPU-aaaa", "the released card is reused");
        assert_eq!(g.loads(), vec![1000, 1000]);
    }

    #[test]
    fn half_gpu_tasks_pair_on_one_card() {
        let g = two();
        let a = g.try_take(0.5).unwrap();
        let b = g.try_take(0.5).unwrap();
        assert_eq!(a.cards(), b.cards(), "two halves share a card");
        let whole = g.try_take(1.0).unwrap();
        assert_ne!(whole.cards(), a.cards(), "the other card stayed whole");
        assert_eq!(g.loads().iter().sum::<u32>(), 2000);
    }

    #[test]
    fn multi_gpu_tasks_take_idle_cards_and_cpu_tasks_take_none() {
        let g = two();
        let both = g.try_take(2.0).unwrap();
        assert_eq!(both.visible_devices().unwrap(), "GPU-aaaa,GPU-bbbb");
        assert!(g.try_take(0.1).is_none());
        let cpu = g.try_take(0.0).unwrap();
        assert!(cpu.visible_devices().is_none());
        drop(both);
        assert_eq!(g.loads(), vec![0, 0]);
        let none = GpuSlots::new(vec![]);
        assert!(none.try_take(1.0).unwrap().visible_devices().is_none(), "no GPUs: the task runs on the CPU");
    }

    #[tokio::test]
    async fn a_waiting_task_starts_when_a_card_is_released() {
        let g = GpuSlots::new(vec!["GPU-aaaa".into()]);
        let first = g.try_take(1.0).unwrap();
        let g2 = g.clone();
        let waiter = tokio::spawn(async move { g2.take(1.0).await.visible_devices() });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "it waits while the card is taken");
        drop(first);
        assert_eq!(waiter.await.unwrap().unwrap(), "GPU-aaaa");
    }
}
