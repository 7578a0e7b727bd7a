//! Resource pools: what a set of tasks holds on one worker, and whether one more task fits
//! (reference §3.6). Arithmetic saturates: the original's unsigned subtractions can wrap.

use sealing_types::{Resources, Shortfall, WorkerResources};

/// GPU utilisation is accounted in thousandths so that sums are exact and deterministic.
pub(crate) fn gpu_milli(util: f64) -> u64 {
    // Rounds half up, as `round()` does for the non-negative values that matter, without its
    // libm call (a pass makes several per placement); a float-to-int cast saturates, so a
    // negative utilisation gives 0.
    (util * 1000.0 + 0.5) as u64
}

/// Resources held by the tasks in one pool (preparing, active, or a scheduling window).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pool {
    pub mem_used_min: u64,
    pub mem_used_max: u64,
    pub gpu_milli: u64,
    pub cpu_use: u64,
}

impl Pool {
    /// Whether `spec` fits on top of what this pool holds on a worker with `res`.
    pub fn can_handle(&self, spec: &Resources, res: &WorkerResources, ignore_resources: bool) -> Result<(), Shortfall> {
        if ignore_resources {
            return Ok(());
        }
        let ram_free = res.mem_physical.saturating_sub(self.mem_used_min);
        if spec.min_memory.saturating_add(spec.base_min_memory) > ram_free {
            return Err(Shortfall::Ram { need: spec.min_memory, base: spec.base_min_memory, free: ram_free });
        }
        let vmem_used = self.mem_used_max.max(res.mem_used.saturating_add(res.mem_swap_used));
        let vmem_free = res.mem_physical.saturating_add(res.mem_swap).saturating_sub(vmem_used);
        if spec.max_memory.saturating_add(spec.base_min_memory) > vmem_free {
            return Err(Shortfall::Vmem { need: spec.max_memory, base: spec.base_min_memory, free: vmem_free });
        }
        let threads = spec.threads(res.cpus, res.gpus.len());
        if self.cpu_use.saturating_add(threads) > res.cpus {
            return Err(Shortfall::Cpu { need: threads, in_use: self.cpu_use, cpus: res.cpus });
        }
        let util = gpu_milli(spec.gpu_utilization);
        if !res.gpus.is_empty() && util > 0 && self.gpu_milli + util > res.gpus.len() as u64 * 1000 {
            return Err(Shortfall::Gpu {
                need: spec.gpu_utilization,
                in_use: self.gpu_milli as f64 / 1000.0,
                gpus: res.gpus.len(),
            });
        }
        Ok(())
    }

    pub fn add(&mut self, spec: &Resources, res: &WorkerResources) {
        self.mem_used_min = self.mem_used_min.saturating_add(spec.min_memory);
        self.mem_used_max = self.mem_used_max.saturating_add(spec.max_memory);
        self.cpu_use = self.cpu_use.saturating_add(spec.threads(res.cpus, res.gpus.len()));
        self.gpu_milli = self.gpu_milli.saturating_add(gpu_milli(spec.gpu_utilization));
    }

    pub fn free(&mut self, spec: &Resources, res: &WorkerResources) {
        self.mem_used_min = self.mem_used_min.saturating_sub(spec.min_memory);
        self.mem_used_max = self.mem_used_max.saturating_sub(spec.max_memory);
        self.cpu_use = self.cpu_use.saturating_sub(spec.threads(res.cpus, res.gpus.len()));
        self.gpu_milli = self.gpu_milli.saturating_sub(gpu_milli(spec.gpu_utilization));
    }

    /// The largest of the CPU, RAM, VMEM and GPU fractions this pool takes (§3.5).
    pub fn utilization(&self, res: &WorkerResources) -> f64 {
        let mut u = if res.cpus > 0 { self.cpu_use as f64 / res.cpus as f64 } else { 0.0 };
        if res.mem_physical > 0 {
            u = u.max(self.mem_used_min.max(res.mem_used) as f64 / res.mem_physical as f64);
        }
        let vmem = res.mem_physical.saturating_add(res.mem_swap);
        if vmem > 0 {
            let used = self.mem_used_max.max(res.mem_used.saturating_add(res.mem_swap_used));
            u = u.max(used as f64 / vmem as f64);
        }
        if !res.gpus.is_empty() {
            u = u.max(self.gpu_milli as f64 / (res.gpus.len() as f64 * 1000.0));
        }
        u
    }

    pub fn is_empty(&self) -> bool {
        *self == Pool::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealing_types::resources::default_table;
    use sealing_types::{RegisteredSealProof, TaskType};

    const GIB: u64 = 1 << 30;

    fn worker(cpus: u64, ram_gib: u64, swap_gib: u64, gpus: usize) -> WorkerResources {
        WorkerResources {
            mem_physical: ram_gib * GIB,
            mem_swap: swap_gib * GIB,
            cpus,
            gpus: vec!["GPU".into(); gpus],
            ..Default::default()
        }
    }

    #[test]
    fn gpu_thousandths_round_half_up_and_never_go_negative() {
        assert_eq!(gpu_milli(1.0), 1000);
        assert_eq!(gpu_milli(0.5), 500);
        assert_eq!(gpu_milli(0.0005), 1);
        assert_eq!(gpu_milli(0.00049), 0);
        assert_eq!(gpu_milli(-0.3), 0);
        assert_eq!(gpu_milli(f64::NAN), 0);
    }

    #[test]
    fn ram_shortfall_reads_like_the_issue() {
        let res = worker(64, 86, 0, 0);
        let spec = default_table().spec(RegisteredSealProof::STACKED_DRG_32GIB_V1_1, TaskType::PreCommit1);
        let mut p = Pool::default();
        p.add(&spec, &res);
        let err = p.can_handle(&spec, &res, false).unwrap_err();
        assert_eq!(err.to_string(), "RAM: need 56 GiB + 10 MiB, 30 GiB free");
        assert!(p.can_handle(&spec, &res, true).is_ok(), "IgnoreResources accepts anything");
    }

    #[test]
    fn saturating_when_os_uses_more_than_physical() {
        let mut res = worker(8, 1, 0, 0);
        res.mem_used = 4 * GIB;
        res.mem_swap_used = 4 * GIB;
        let spec = default_table().spec(RegisteredSealProof::STACKED_DRG_2KIB_V1, TaskType::AddPiece);
        assert!(matches!(Pool::default().can_handle(&spec, &res, false), Err(Shortfall::Vmem { free: 0, .. })));
    }

    /// The snap-deal GPU tasks hold their card in the accounting (Lotus's scheduler does not
    /// count RU and PR2 against the GPU, lotus #10767): on a one-GPU worker a ReplicaUpdate
    /// and a ProveReplicaUpdate2 (or a Commit2) never run at once.
    #[test]
    fn replica_update_and_its_snark_each_take_the_gpu() {
        let res = worker(64, 512, 0, 1);
        let t = default_table();
        let p32 = RegisteredSealProof::STACKED_DRG_32GIB_V1_1;
        for (held, next) in [
            (TaskType::ReplicaUpdate, TaskType::ProveReplicaUpdate2),
            (TaskType::ProveReplicaUpdate2, TaskType::ReplicaUpdate),
            (TaskType::ReplicaUpdate, TaskType::Commit2),
        ] {
            let mut p = Pool::default();
            assert!(p.can_handle(&t.spec(p32, held), &res, false).is_ok());
            p.add(&t.spec(p32, held), &res);
            let e = p.can_handle(&t.spec(p32, next), &res, false);
            assert!(matches!(e, Err(Shortfall::Gpu { .. })), "{next:?} waits while {held:?} holds the GPU: {e:?}");
        }
    }

    #[test]
    fn gpu_accounting_is_exact() {
        let res = worker(32, 512, 0, 1);
        let mut spec = default_table().spec(RegisteredSealProof::STACKED_DRG_32GIB_V1_1, TaskType::PreCommit2);
        spec.gpu_utilization = 0.5;
        let mut p = Pool::default();
        p.add(&spec, &res);
        assert!(p.can_handle(&spec, &res, false).is_ok(), "two halves share one GPU");
        p.add(&spec, &res);
        assert!(matches!(p.can_handle(&spec, &res, false), Err(Shortfall::Gpu { .. })));
        p.free(&spec, &res);
        p.free(&spec, &res);
        assert!(p.is_empty());
    }
}
