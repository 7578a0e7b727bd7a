//! Queue order (reference §3.2) as a sortable key.

use crate::TaskRequest;

/// Sort key of a queued request. Smaller sorts first.
///
/// Equivalent to the original's `Less`: tasks with a negative order (PoSt, Finalize, Fetch, ...)
/// come before all others whatever their priority; then higher priority; then lower task order;
/// then lower sector number. A sequence number makes the order total and deterministic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueKey {
    sign_class: u8,
    neg_priority: i64,
    order: i32,
    sector_number: u64,
    miner: u64,
    seq: u64,
    /// Where the task sits in the scheduler's task table, so that a key in a queue or window
    /// reaches its task without a hash lookup. Never decides order: `seq` is unique.
    pub(crate) slot: u32,
}

impl QueueKey {
    pub fn new(req: &TaskRequest, seq: u64) -> Self {
        let order = req.task.order();
        QueueKey {
            sign_class: u8::from(order >= 0),
            neg_priority: -(req.priority as i64),
            order,
            sector_number: req.sector.id.number,
            miner: req.sector.id.miner,
            seq,
            slot: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Selector;
    use sealing_types::{RegisteredSealProof, SchedId, SectorId, SectorRef, TaskType};

    fn req(task: TaskType, priority: i32, number: u64) -> TaskRequest {
        TaskRequest {
            id: SchedId::from_u128(number as u128),
            sector: SectorRef {
                id: SectorId { miner: 1000, number },
                proof_type: RegisteredSealProof::STACKED_DRG_2KIB_V1,
            },
            task,
            priority,
            selector: Selector::Task,
            prepare: None,
        }
    }

    fn sorted(reqs: &[TaskRequest]) -> Vec<(TaskType, u64)> {
        let mut keyed: Vec<_> = reqs.iter().enumerate().map(|(i, r)| (QueueKey::new(r, i as u64), r)).collect();
        keyed.sort_by_key(|(k, _)| *k);
        keyed.iter().map(|(_, r)| (r.task, r.sector.id.number)).collect()
    }

    #[test]
    fn pc2_before_pc1_before_ap() {
        // request_queue_test.go in the original.
        let got = sorted(&[
            req(TaskType::AddPiece, 0, 1),
            req(TaskType::PreCommit1, 0, 2),
            req(TaskType::PreCommit2, 0, 3),
            req(TaskType::PreCommit1, 0, 0),
        ]);
        assert_eq!(
            got,
            vec![
                (TaskType::PreCommit2, 3),
                (TaskType::PreCommit1, 0),
                (TaskType::PreCommit1, 2),
                (TaskType::AddPiece, 1)
            ]
        );
    }

    #[test]
    fn negative_orders_beat_priority_and_deals_beat_cc() {
        let got = sorted(&[
            req(TaskType::PreCommit1, 1024, 5),
            req(TaskType::Finalize, 0, 9),
            req(TaskType::PreCommit2, 0, 1),
            req(TaskType::FinalizeReplicaUpdate, 0, 2),
            req(TaskType::Fetch, 0, 3),
        ]);
        assert_eq!(
            got,
            vec![
                (TaskType::Finalize, 9),
                (TaskType::Fetch, 3),
                (TaskType::PreCommit1, 5),
                (TaskType::FinalizeReplicaUpdate, 2),
                (TaskType::PreCommit2, 1),
            ]
        );
    }
}
