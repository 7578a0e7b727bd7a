//! The scheduler's tasks, stored densely.
//!
//! A pass touches every task it places, and so does the dispatch after it. In a hash map keyed
//! by the (random) task ID those touches land anywhere in a table of 100,000 entries of a few
//! hundred bytes each: a cold fill spent half its time in cache misses there. Here the tasks
//! live in a vector in arrival order, and queue order is mostly arrival order, so a pass walks
//! memory nearly sequentially; only the small ID → slot index is hashed.
//!
//! Hand-rolled rather than `slab`/`slotmap`: callers address tasks by their own `SchedId`,
//! which those crates do not index, and queue keys carry the slot, which they would not fill in.

use std::ops::Index;

use rustc_hash::FxHashMap as HashMap;
use sealing_types::SchedId;

use crate::queue::QueueKey;
use crate::sched::Task;

#[derive(Clone, Debug, Default)]
pub(crate) struct TaskTable {
    slots: Vec<Option<Task>>,
    /// Slots freed by removals, reused before the vector grows.
    free: Vec<u32>,
    index: HashMap<SchedId, u32>,
}

impl TaskTable {
    pub(crate) fn get(&self, id: &SchedId) -> Option<&Task> {
        let slot = *self.index.get(id)?;
        self.slots[slot as usize].as_ref()
    }

    pub(crate) fn get_mut(&mut self, id: &SchedId) -> Option<&mut Task> {
        let slot = *self.index.get(id)?;
        self.slots[slot as usize].as_mut()
    }

    pub(crate) fn contains_key(&self, id: &SchedId) -> bool {
        self.index.contains_key(id)
    }

    /// Adds a task (an existing task with the same ID is replaced), records its slot in its
    /// queue key, and returns the slot.
    pub(crate) fn insert(&mut self, id: SchedId, mut task: Task) -> u32 {
        if let Some(&slot) = self.index.get(&id) {
            task.key.slot = slot;
            self.slots[slot as usize] = Some(task);
            return slot;
        }
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                u32::try_from(self.slots.len() - 1).expect("fewer than 4 billion tasks")
            }
        };
        task.key.slot = slot;
        self.slots[slot as usize] = Some(task);
        self.index.insert(id, slot);
        slot
    }

    /// The task in `slot` (a slot `insert` returned, while the task is held).
    pub(crate) fn at(&self, slot: u32) -> &Task {
        self.slots[slot as usize].as_ref().expect("the slot holds a task")
    }

    /// The task in `slot` (taken from its queue key).
    pub(crate) fn at_mut(&mut self, slot: u32) -> &mut Task {
        self.slots[slot as usize].as_mut().expect("the slot holds a task")
    }

    /// The task a queue key names (see `QueueKey::slot`).
    pub(crate) fn by_key(&self, key: &QueueKey) -> &Task {
        let t = self.at(key.slot);
        debug_assert_eq!(t.key, *key, "the slot holds the keyed task");
        t
    }

    pub(crate) fn by_key_mut(&mut self, key: &QueueKey) -> &mut Task {
        let t = self.at_mut(key.slot);
        debug_assert_eq!(t.key, *key, "the slot holds the keyed task");
        t
    }

    pub(crate) fn remove(&mut self, id: &SchedId) -> Option<Task> {
        let slot = self.index.remove(id)?;
        self.free.push(slot);
        self.slots[slot as usize].take()
    }

    /// Every task, in slot order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &Task> {
        self.slots.iter().flatten()
    }
}

impl Index<&SchedId> for TaskTable {
    type Output = Task;
    fn index(&self, id: &SchedId) -> &Task {
        self.get(id).expect("the scheduler holds the task")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::TaskState;
    use crate::{Selector, TaskRequest};
    use sealing_types::{RegisteredSealProof, SectorId, SectorRef, TaskType, WorkerId};

    fn task(n: u128) -> (SchedId, Task) {
        let id = SchedId::from_u128(n);
        let req = TaskRequest {
            id,
            sector: SectorRef {
                id: SectorId { miner: 1000, number: n as u64 },
                proof_type: RegisteredSealProof::STACKED_DRG_2KIB_V1_1,
            },
            task: TaskType::AddPiece,
            priority: 0,
            selector: Selector::Task,
            prepare: None,
        };
        (id, Task { key: QueueKey::new(&req, n as u64), req, class: 0, state: TaskState::Queued })
    }

    #[test]
    fn removed_slots_are_reused_and_lookups_follow_the_id() {
        let mut t = TaskTable::default();
        for n in 1..=3 {
            let (id, new) = task(n);
            t.insert(id, new);
        }
        assert_eq!(t.remove(&SchedId::from_u128(2)).map(|x| x.req.id), Some(SchedId::from_u128(2)));
        assert!(t.get(&SchedId::from_u128(2)).is_none());
        assert!(t.remove(&SchedId::from_u128(2)).is_none(), "a second removal finds nothing");
        let (id, four) = task(4);
        t.insert(id, four);
        assert_eq!(t.slots.len(), 3, "task 4 took task 2's slot");
        assert_eq!(t[&SchedId::from_u128(4)].req.sector.id.number, 4);
        assert_eq!(t[&SchedId::from_u128(3)].req.sector.id.number, 3);
        let key = t[&SchedId::from_u128(4)].key;
        assert_eq!(key.slot, 1);
        assert_eq!(t.by_key(&key).req.id, SchedId::from_u128(4), "the key leads to its task");
        let ids: Vec<u64> = t.values().map(|x| x.req.sector.id.number).collect();
        assert_eq!(ids, vec![1, 4, 3]);
        let (id, mut again) = task(4);
        again.state = TaskState::Running { worker: WorkerId(uuid::Uuid::from_u128(9)) };
        t.insert(id, again);
        assert_eq!(t.values().count(), 3, "re-inserting an ID replaces the task");
        assert!(matches!(t[&id].state, TaskState::Running { .. }));
    }
}
