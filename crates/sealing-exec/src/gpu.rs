//! Which GPU a proof process uses. The original hands every GPU of a worker to every task, so
//! PreCommit2 and Commit2 fight over one card (lotus #4309) and operators with several cards
//! run one worker per card in containers (lotus #6813). Here each GPU task is leased cards for
//! its utilisation (the resource table's `GPUUtilization`), and its proof process sees only
//! them (`CUDA_VISIBLE_DEVICES`, which the NVIDIA CUDA and OpenCL drivers both honour).
//!
//! The miner's scheduler admits tasks on a worker while the sum of their utilisations fits its
//! cards; the lease here picks the cards: a task of at most one GPU takes the fullest card it
//! still fits on (so two 0.5 tasks share a card and whole cards stay free for 1.0 tasks); a
//! task of more takes that many idle cards. A task that fits nowhere waits for a release.

use std::sync::{Arc, Mutex};

/// Loads are counted in thousandths of a card, so sums are exact.
fn milli(util: f64) -> u32 {
    (util * 1000.0).round().clamp(0.0, u32::MAX as f64) as u32
}

#[derive(Debug)]
pub struct GpuSlots {
    /// What `CUDA_VISIBLE_DEVICES` names each card by (its UUID from NVML).
    ids: Vec<String>,
    load: Mutex<Vec<u32>>,
    released: tokio::sync::Notify,
}

/// Cards held by one task; released when dropped.
#[derive(Debug)]
pub struct GpuLease {
    slots: Arc<GpuSlots>,
    cards: Vec<usize>,
    milli: u32,
}

impl GpuSlots {
    pub fn new(ids: Vec<String>) -> Arc<Self> {
        let n = ids.len();
        Arc::new(GpuSlots { ids, load: Mutex::new(vec![0; n]), released: tokio::sync::Notify::new() })
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Per card, thousandths in use.
    pub fn loads(&self) -> Vec<u32> {
        self.load.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The cards for a task of `util` GPUs, taken now, or `None` when they are not free.
    pub fn try_take(self: &Arc<Self>, util: f64) -> Option<GpuLease> {
        let m = milli(util);
        if m == 0 || self.ids.is_empty() {
            return Some(GpuLease { slots: self.clone(), cards: vec![], milli: 0 });
        }
        let mut load = self.load.lock().unwrap_or_else(|e| e.into_inner());
        let cards: Vec<usize> = if m <= 1000 {
            // Best fit: the fullest card that still has room.
            let best = (0..load.len()).filter(|&i| load[i] + m <= 1000).max_by_key(|&i| (load[i], usize::MAX - i))?;
            vec![best]
        } else {
            let whole = m.div_ceil(1000) as usize;
            let idle: Vec<usize> = (0..load.len()).filter(|&i| load[i] == 0).take(whole).collect();
            if idle.len() < whole {
                return None;
            }
            idle
        };
        let per_card = if cards.len() > 1 { 1000 } else { m };
        for &c in &cards {
            load[c] += per_card;
        }
        Some(GpuLease { slots: self.clone(), cards, milli: per_card })
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
        &self.cards
    }

    /// The value for the proof process's `CUDA_VISIBLE_DEVICES`, or `None` for a CPU task.
    pub fn visible_devices(&self) -> Option<String> {
        (!self.cards.is_empty())
            .then(|| self.cards.iter().map(|&c| self.slots.ids[c].as_str()).collect::<Vec<_>>().join(","))
    }
}

impl Drop for GpuLease {
    fn drop(&mut self) {
        if self.cards.is_empty() {
            return;
        }
        let mut load = self.slots.load.lock().unwrap_or_else(|e| e.into_inner());
        for &c in &self.cards {
            load[c] = load[c].saturating_sub(self.milli);
        }
        drop(load);
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
