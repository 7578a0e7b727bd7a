//! Which of a worker's GPUs a task runs on: one bin-packing rule, used by the miner's scheduler
//! when it admits a task into a worker's active pool and by the worker when it leases cards to
//! the task's proof process. With one rule on both sides, what the scheduler admits is what
//! the worker runs: three 0.6-GPU tasks on a two-card worker are two running and one waiting
//! in the scheduler (a sum of utilisations, 1.8 ≤ 2, would admit all three, and the worker
//! would hold the third back where nobody could see it).
//!
//! The rule: a task of at most one GPU takes the fullest card it still fits on (two 0.5 tasks
//! share a card, whole cards stay free for 1.0 tasks); a task of more takes that many idle
//! cards, whole. Loads are thousandths of a card, so sums are exact.

/// A GPU utilisation (the resource table's `GPUUtilization`) in thousandths of a card.
pub fn milli(util: f64) -> u32 {
    // Rounds half up without libm; a float-to-int cast saturates (negative and NaN give 0).
    (util * 1000.0 + 0.5) as u32
}

/// The cards one task holds, and how much of each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CardLease {
    pub cards: Vec<usize>,
    pub per_card: u32,
}

impl CardLease {
    pub fn is_empty(&self) -> bool {
        self.cards.is_empty()
    }
}

/// Per card, the thousandths in use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GpuCards {
    load: Vec<u32>,
}

impl GpuCards {
    pub fn new(cards: usize) -> Self {
        GpuCards { load: vec![0; cards] }
    }

    pub fn len(&self) -> usize {
        self.load.len()
    }

    pub fn is_empty(&self) -> bool {
        self.load.is_empty()
    }

    pub fn loads(&self) -> &[u32] {
        &self.load
    }

    /// The cards a task of `milli` thousandths would get now, without taking them; `None`
    /// when it does not fit. A task of no GPU (or a worker without cards) gets no cards.
    pub fn choose(&self, milli: u32) -> Option<CardLease> {
        if milli == 0 || self.load.is_empty() {
            return Some(CardLease::default());
        }
        if milli <= 1000 {
            let best = (0..self.load.len())
                .filter(|&i| self.load[i] + milli <= 1000)
                .max_by_key(|&i| (self.load[i], usize::MAX - i))?;
            return Some(CardLease { cards: vec![best], per_card: milli });
        }
        let whole = milli.div_ceil(1000) as usize;
        let idle: Vec<usize> = (0..self.load.len()).filter(|&i| self.load[i] == 0).take(whole).collect();
        (idle.len() == whole).then_some(CardLease { cards: idle, per_card: 1000 })
    }

    /// Take the cards for a task of `milli` thousandths, if they are free.
    pub fn take(&mut self, milli: u32) -> Option<CardLease> {
        let lease = self.choose(milli)?;
        self.take_exact(&lease);
        Some(lease)
    }

    /// Hold a lease's cards (one [`GpuCards::choose`] made); cards past the last are ignored.
    pub fn take_exact(&mut self, lease: &CardLease) {
        for &c in &lease.cards {
            if let Some(l) = self.load.get_mut(c) {
                *l += lease.per_card;
            }
        }
    }

    pub fn release(&mut self, lease: &CardLease) {
        for &c in &lease.cards {
            if let Some(l) = self.load.get_mut(c) {
                *l = l.saturating_sub(lease.per_card);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_fit_shares_cards_and_keeps_whole_ones_free() {
        let mut g = GpuCards::new(2);
        let a = g.take(500).unwrap();
        let b = g.take(500).unwrap();
        assert_eq!((a.cards.clone(), b.cards.clone()), (vec![0], vec![0]), "two halves share a card");
        assert_eq!(g.take(1000).unwrap().cards, vec![1]);
        assert!(g.take(1).is_none());
        g.release(&a);
        assert_eq!(g.loads(), &[500, 1000]);
    }

    #[test]
    fn three_six_tenths_on_two_cards_fit_two() {
        let mut g = GpuCards::new(2);
        let first = g.take(milli(0.6)).unwrap();
        assert!(g.take(milli(0.6)).is_some());
        assert!(g.choose(milli(0.6)).is_none(), "1.2 of 2 cards in use, yet no card has 0.6 left");
        g.release(&first);
        assert!(g.take(milli(0.6)).is_some());
    }

    #[test]
    fn multi_card_tasks_take_idle_cards_and_cpu_tasks_none() {
        let mut g = GpuCards::new(3);
        g.take(300).unwrap();
        assert_eq!(g.take(2000).unwrap().cards, vec![1, 2]);
        assert!(g.take(2000).is_none());
        assert!(g.take(0).unwrap().is_empty());
        assert!(GpuCards::new(0).take(1000).unwrap().is_empty(), "no cards: nothing to lease");
        assert_eq!(milli(-1.0), 0);
        assert_eq!(milli(0.0005), 1);
    }
}
