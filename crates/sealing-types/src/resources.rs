//! The resource table: what one task of a type and sector size needs (reference §2.2–2.5).

use crate::{RegisteredSealProof, SectorSize, TaskType};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Share of the cores a "multithread" task (`MaxParallelism = -1`) takes: 92%.
pub const PARALLEL_NUM: u64 = 92;
pub const PARALLEL_DENOM: u64 = 100;

/// Resources one task needs. Field names are Lotus's JSON names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// RAM the task must have resident.
    #[serde(rename = "MinMemory")]
    pub min_memory: u64,
    /// Peak RAM + swap.
    #[serde(rename = "MaxMemory")]
    pub max_memory: u64,
    /// Fraction of GPUs used; 0 = CPU only.
    #[serde(rename = "GPUUtilization")]
    pub gpu_utilization: f64,
    /// Threads without a GPU; -1 = 92% of the cores.
    #[serde(rename = "MaxParallelism")]
    pub max_parallelism: i64,
    /// Threads with a GPU; 0 = same as `max_parallelism`.
    #[serde(rename = "MaxParallelismGPU")]
    pub max_parallelism_gpu: i64,
    /// Fixed RAM (parameters), added to both memory checks.
    #[serde(rename = "BaseMinMemory")]
    pub base_min_memory: u64,
    /// Per-worker limit on concurrent tasks of this type and size; 0 = unlimited.
    #[serde(rename = "MaxConcurrent")]
    pub max_concurrent: i64,
}

impl Resources {
    const fn new(min: u64, max: u64, gpu: f64, par: i64, par_gpu: i64, base: u64) -> Self {
        Resources {
            min_memory: min,
            max_memory: max,
            gpu_utilization: gpu,
            max_parallelism: par,
            max_parallelism_gpu: par_gpu,
            base_min_memory: base,
            max_concurrent: 0,
        }
    }

    /// Threads this task takes on a worker with `cpus` logical cores and `gpus` GPUs (§2.4).
    pub fn threads(&self, cpus: u64, gpus: usize) -> u64 {
        let mut par = self.max_parallelism;
        if self.gpu_utilization > 0.0 && gpus > 0 && self.max_parallelism_gpu != 0 {
            par = self.max_parallelism_gpu;
        }
        if par == -1 {
            let t = cpus * PARALLEL_NUM / PARALLEL_DENOM;
            if t == 0 {
                cpus
            } else {
                t
            }
        } else {
            par.max(0) as u64
        }
    }
}

/// Resource specs per task type and proof type. A missing entry means zero resources.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ResourceTable(pub BTreeMap<TaskType, BTreeMap<RegisteredSealProof, Resources>>);

impl ResourceTable {
    /// The spec for a task: this table's entry, else the default table's, else zero.
    pub fn spec(&self, proof: RegisteredSealProof, task: TaskType) -> Resources {
        self.0
            .get(&task)
            .and_then(|m| m.get(&proof))
            .copied()
            .or_else(|| default_table().0.get(&task).and_then(|m| m.get(&proof)).copied())
            .unwrap_or_default()
    }

    /// The spec used while the task prepares (fetches): its own, with MaxConcurrent taken from
    /// the preparing task type (normally Fetch), so `GET_*_MAX_CONCURRENT` limits fetch stages.
    pub fn prep_spec(&self, proof: RegisteredSealProof, task: TaskType, prep: TaskType) -> Resources {
        let mut r = self.spec(proof, task);
        if prep != task {
            r.max_concurrent = self.spec(proof, prep).max_concurrent;
        }
        r
    }
}

/// The original's default table (§2.3), with its aliases and copies to V1_1 and synthetic.
pub fn default_table() -> &'static ResourceTable {
    static TABLE: std::sync::OnceLock<ResourceTable> = std::sync::OnceLock::new();
    TABLE.get_or_init(build_default_table)
}

fn build_default_table() -> ResourceTable {
    use TaskType::*;
    let r = Resources::new;
    // Per size in the order 2KiB, 8MiB, 512MiB, 32GiB, 64GiB.
    let by_size = |rows: [Resources; 5]| -> BTreeMap<RegisteredSealProof, Resources> {
        let mut m = BTreeMap::new();
        for (i, res) in rows.into_iter().enumerate() {
            // V1 (i), V1_1 (5+i), synthetic (10+i) share one entry.
            for base in [0, 5, 10] {
                m.insert(RegisteredSealProof::from_i64(base + i as i64).unwrap(), res);
            }
        }
        m
    };
    let small =
        |gpu: f64, par: i64| [r(2 * KIB, 2 * KIB, gpu, par, 0, 2 * KIB), r(8 * MIB, 8 * MIB, gpu, par, 0, 8 * MIB)];

    let mut t = BTreeMap::new();
    let [a, b] = small(0.0, 1);
    t.insert(
        AddPiece,
        by_size([
            a,
            b,
            r(GIB, GIB, 0.0, 1, 0, GIB),
            r(4 * GIB, 4 * GIB, 0.0, 1, 0, GIB),
            r(8 * GIB, 8 * GIB, 0.0, 1, 0, GIB),
        ]),
    );
    let [a, b] = small(0.0, 1);
    let pc1 = by_size([
        a,
        b,
        r(768 * MIB, GIB, 0.0, 1, 0, MIB),
        r(56 * GIB, 64 * GIB, 0.0, 1, 0, 10 * MIB),
        r(112 * GIB, 128 * GIB, 0.0, 1, 0, 10 * MIB),
    ]);
    t.insert(PreCommit1, pc1.clone());
    t.insert(Unseal, pc1);
    let [a, b] = small(0.0, -1);
    t.insert(
        PreCommit2,
        by_size([
            a,
            b,
            r(GIB, 3 * GIB / 2, 0.0, -1, 0, GIB),
            r(15 * GIB, 15 * GIB, 1.0, -1, 6, GIB),
            r(30 * GIB, 30 * GIB, 1.0, -1, 6, GIB),
        ]),
    );
    let [a, b] = small(0.0, 0);
    let c1 = by_size([a, b, r(GIB, GIB, 0.0, 0, 0, GIB), r(GIB, GIB, 0.0, 0, 0, GIB), r(GIB, GIB, 0.0, 0, 0, GIB)]);
    t.insert(Commit1, c1.clone());
    t.insert(ProveReplicaUpdate1, c1);
    let [a, b] = small(1.0, 1);
    let c2 = by_size([
        a,
        b,
        r(GIB, 3 * GIB / 2, 1.0, 1, 0, 10 * GIB),
        r(30 * GIB, 150 * GIB, 1.0, -1, 6, 32 * GIB),
        r(60 * GIB, 190 * GIB, 1.0, -1, 6, 64 * GIB),
    ]);
    t.insert(Commit2, c2.clone());
    t.insert(ProveReplicaUpdate2, c2);
    t.insert(Fetch, by_size([r(MIB, MIB, 0.0, 0, 0, 0); 5]));
    let [a, b] = small(1.0, 1);
    let ru = by_size([
        a,
        b,
        r(GIB, GIB, 1.0, 1, 0, GIB),
        r(4 * GIB, 4 * GIB, 1.0, 1, 6, GIB),
        r(8 * GIB, 8 * GIB, 1.0, 1, 6, GIB),
    ]);
    t.insert(ReplicaUpdate, ru.clone());
    t.insert(RegenSectorKey, ru);
    let [a, b] = small(1.0, 1);
    t.insert(
        GenerateWindowPoSt,
        by_size([
            a,
            b,
            r(GIB, 3 * GIB / 2, 1.0, 1, 0, 10 * GIB),
            r(30 * GIB, 96 * GIB, 1.0, -1, 6, 32 * GIB),
            r(60 * GIB, 120 * GIB, 1.0, -1, 6, 64 * GIB),
        ]),
    );
    let [a, b] = small(1.0, 1);
    t.insert(
        GenerateWinningPoSt,
        by_size([
            a,
            b,
            // The source really says 2KiB of memory for 512MiB WinningPoSt.
            r(2 * KIB, 2 * KIB, 1.0, 1, 0, 10 * GIB),
            r(GIB, GIB, 1.0, -1, 6, 32 * GIB),
            r(GIB, GIB, 1.0, -1, 6, 64 * GIB),
        ]),
    );
    // DataCid uses the 32GiB AddPiece entry for every proof type.
    let ap32 = t[&AddPiece][&RegisteredSealProof::STACKED_DRG_32GIB_V1];
    t.insert(DataCid, RegisteredSealProof::all().map(|p| (p, ap32)).collect());
    ResourceTable(t)
}

/// Field names as they appear in env overrides (`PC1_32G_MAX_PARALLELISM`).
pub const ENV_FIELDS: [&str; 7] = [
    "MIN_MEMORY",
    "MAX_MEMORY",
    "GPU_UTILIZATION",
    "MAX_PARALLELISM",
    "MAX_PARALLELISM_GPU",
    "BASE_MIN_MEMORY",
    "MAX_CONCURRENT",
];

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid value {value:?} for resource override {var}: expected {expected}")]
pub struct InvalidOverride {
    pub var: String,
    pub value: String,
    pub expected: &'static str,
}

fn field_value(r: &Resources, field: &str) -> String {
    match field {
        "MIN_MEMORY" => r.min_memory.to_string(),
        "MAX_MEMORY" => r.max_memory.to_string(),
        "GPU_UTILIZATION" => format_float(r.gpu_utilization),
        "MAX_PARALLELISM" => r.max_parallelism.to_string(),
        "MAX_PARALLELISM_GPU" => r.max_parallelism_gpu.to_string(),
        "BASE_MIN_MEMORY" => r.base_min_memory.to_string(),
        "MAX_CONCURRENT" => r.max_concurrent.to_string(),
        _ => unreachable!("unknown field {field}"),
    }
}

fn format_float(f: f64) -> String {
    if f.fract() == 0.0 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

fn set_field(r: &mut Resources, field: &str, var: &str, value: &str) -> Result<(), InvalidOverride> {
    let bad = |expected| InvalidOverride { var: var.into(), value: value.into(), expected };
    let v = value.trim();
    match field {
        "MIN_MEMORY" => r.min_memory = v.parse().map_err(|_| bad("a number of bytes"))?,
        "MAX_MEMORY" => r.max_memory = v.parse().map_err(|_| bad("a number of bytes"))?,
        "BASE_MIN_MEMORY" => r.base_min_memory = v.parse().map_err(|_| bad("a number of bytes"))?,
        "GPU_UTILIZATION" => {
            let g: f64 = v.parse().map_err(|_| bad("a fraction such as 0.5 or 1"))?;
            if !(g.is_finite() && g >= 0.0) {
                return Err(bad("a fraction such as 0.5 or 1"));
            }
            r.gpu_utilization = g
        }
        "MAX_PARALLELISM" => r.max_parallelism = v.parse().map_err(|_| bad("an integer (-1 = 92% of the cores)"))?,
        "MAX_PARALLELISM_GPU" => r.max_parallelism_gpu = v.parse().map_err(|_| bad("an integer"))?,
        "MAX_CONCURRENT" => r.max_concurrent = v.parse().map_err(|_| bad("an integer (0 = unlimited)"))?,
        _ => unreachable!(),
    }
    Ok(())
}

/// The env var names of one table cell: sized (`PC1_32G_X`) for sector-sized tasks, then unsized.
fn env_names(task: TaskType, size: SectorSize, field: &str) -> (Option<String>, String) {
    let sized = task.sector_sized().then(|| format!("{}_{}_{}", task.short(), size.env_suffix(), field));
    (sized, format!("{}_{}", task.short(), field))
}

/// Apply env overrides to the default table, like the worker does when it reports its info
/// (reference §2.5). Precedence: sized variable, unsized variable, multicore-SDR rule, default.
pub fn table_from_env(lookup: &dyn Fn(&str) -> Option<String>) -> Result<ResourceTable, InvalidOverride> {
    let mut out = default_table().clone();
    for (task, per_proof) in out.0.iter_mut() {
        for (proof, res) in per_proof.iter_mut() {
            for field in ENV_FIELDS {
                let (sized, unsized_) = env_names(*task, proof.sector_size(), field);
                if let Some((var, v)) = sized
                    .as_ref()
                    .and_then(|n| lookup(n).map(|v| (n.clone(), v)))
                    .or_else(|| lookup(&unsized_).map(|v| (unsized_.clone(), v)))
                {
                    set_field(res, field, &var, &v)?;
                } else if field == "MAX_PARALLELISM"
                    && matches!(task, TaskType::PreCommit1 | TaskType::Unseal)
                    && lookup("FIL_PROOFS_USE_MULTICORE_SDR").as_deref() == Some("1")
                {
                    let producers = lookup("FIL_PROOFS_MULTICORE_SDR_PRODUCERS").unwrap_or_else(|| "3".into());
                    let n: i64 = producers.trim().parse().map_err(|_| InvalidOverride {
                        var: "FIL_PROOFS_MULTICORE_SDR_PRODUCERS".into(),
                        value: producers.clone(),
                        expected: "an integer",
                    })?;
                    res.max_parallelism = 1 + n;
                }
            }
        }
    }
    Ok(out)
}

/// Which rows `lotus-worker resources` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListMode {
    /// Only variables that are set in the environment.
    Set,
    /// The defaults, ignoring the environment.
    Default,
    /// Defaults overlaid with the set variables.
    All,
}

/// `lotus-worker resources` output: sorted `KEY=VALUE` lines (§2.5).
pub fn list_env(mode: ListMode, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Vec<String>, InvalidOverride> {
    let table = match mode {
        ListMode::Default => default_table().clone(),
        _ => table_from_env(lookup)?,
    };
    let mut lines = BTreeMap::new();
    for (task, per_proof) in &table.0 {
        for (proof, res) in per_proof {
            for field in ENV_FIELDS {
                let (sized, unsized_) = env_names(*task, proof.sector_size(), field);
                let key = sized.clone().unwrap_or_else(|| unsized_.clone());
                let is_set = sized.as_ref().is_some_and(|n| lookup(n).is_some()) || lookup(&unsized_).is_some();
                if mode == ListMode::Set && !is_set {
                    continue;
                }
                lines.insert(key, field_value(res, field));
            }
        }
    }
    Ok(lines.into_iter().map(|(k, v)| format!("{k}={v}")).collect())
}

/// Why a task does not fit a resource pool. `Display` gives the operator-facing reason,
/// e.g. `RAM: need 56 GiB + 10 MiB, 30.2 GiB free`.
#[derive(Clone, Debug, PartialEq)]
pub enum Shortfall {
    MaxConcurrent { task: TaskType, running: usize, max: i64 },
    Ram { need: u64, base: u64, free: u64 },
    Vmem { need: u64, base: u64, free: u64 },
    Cpu { need: u64, in_use: u64, cpus: u64 },
    Gpu { need: f64, in_use: f64, gpus: usize },
}

impl std::fmt::Display for Shortfall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::size::size_str as s;
        match self {
            Shortfall::MaxConcurrent { task, running, max } => {
                write!(f, "{}: {running} running, MaxConcurrent is {max}", task.short())
            }
            Shortfall::Ram { need, base, free } => {
                write!(f, "RAM: need {} + {}, {} free", s(*need), s(*base), s(*free))
            }
            Shortfall::Vmem { need, base, free } => {
                write!(f, "VMEM (RAM+swap): need {} + {}, {} free", s(*need), s(*base), s(*free))
            }
            Shortfall::Cpu { need, in_use, cpus } => {
                write!(f, "CPU: need {need} threads, {in_use} of {cpus} in use")
            }
            Shortfall::Gpu { need, in_use, gpus } => {
                write!(f, "GPU: need {need:.2}, {in_use:.2} of {gpus} in use")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| m.get(k).cloned()
    }

    const P32: RegisteredSealProof = RegisteredSealProof::STACKED_DRG_32GIB_V1_1;
    const P2K: RegisteredSealProof = RegisteredSealProof::STACKED_DRG_2KIB_V1;

    #[test]
    fn threads_rule() {
        let pc2 = default_table().spec(P32, TaskType::PreCommit2);
        for (cpus, want) in [(12, 11), (16, 14), (24, 22), (32, 29), (64, 58), (128, 117), (1, 1)] {
            assert_eq!(pc2.threads(cpus, 0), want, "cpus={cpus}");
        }
        assert_eq!(pc2.threads(128, 1), 6, "with a GPU PC2 takes 6 threads");
        let c1 = default_table().spec(P32, TaskType::Commit1);
        assert_eq!(c1.threads(64, 0), 0);
    }

    #[test]
    fn defaults_and_aliases() {
        let t = default_table();
        let pc1 = t.spec(P32, TaskType::PreCommit1);
        assert_eq!((pc1.min_memory, pc1.max_memory, pc1.base_min_memory), (56 * GIB, 64 * GIB, 10 * MIB));
        assert_eq!(t.spec(P32, TaskType::Unseal), pc1);
        assert_eq!(t.spec(P32, TaskType::RegenSectorKey), t.spec(P32, TaskType::ReplicaUpdate));
        assert_eq!(t.spec(P2K, TaskType::DataCid), t.spec(P32, TaskType::AddPiece));
        let synthetic = RegisteredSealProof::from_i64(13).unwrap();
        assert_eq!(t.spec(synthetic, TaskType::Commit2), t.spec(P32, TaskType::Commit2));
        assert_eq!(t.spec(P32, TaskType::Finalize), Resources::default());
        assert_eq!(t.spec(P32, TaskType::PreCommit2).gpu_utilization, 1.0);
        assert_eq!(t.spec(P2K, TaskType::PreCommit2).gpu_utilization, 0.0);
    }

    #[test]
    fn env_override_precedence() {
        let t = table_from_env(&env(&[("PC1_32G_MAX_PARALLELISM", "2"), ("PC1_MAX_PARALLELISM", "7")])).unwrap();
        assert_eq!(t.spec(P32, TaskType::PreCommit1).max_parallelism, 2);
        assert_eq!(t.spec(P2K, TaskType::PreCommit1).max_parallelism, 7);
        let t = table_from_env(&env(&[("UNS_2K_MAX_PARALLELISM", "3"), ("PC2_2K_GPU_UTILIZATION", "0.5")])).unwrap();
        assert_eq!(t.spec(P2K, TaskType::Unseal).max_parallelism, 3);
        assert_eq!(t.spec(P2K, TaskType::PreCommit2).gpu_utilization, 0.5);
        let t = table_from_env(&env(&[("DC_MAX_PARALLELISM", "2")])).unwrap();
        assert_eq!(t.spec(P32, TaskType::DataCid).max_parallelism, 2);
    }

    #[test]
    fn multicore_sdr_default() {
        let t = table_from_env(&env(&[("FIL_PROOFS_USE_MULTICORE_SDR", "1")])).unwrap();
        assert_eq!(t.spec(P32, TaskType::PreCommit1).max_parallelism, 4);
        assert_eq!(t.spec(P32, TaskType::Unseal).max_parallelism, 4);
        let t = table_from_env(&env(&[
            ("FIL_PROOFS_USE_MULTICORE_SDR", "1"),
            ("FIL_PROOFS_MULTICORE_SDR_PRODUCERS", "9000"),
        ]))
        .unwrap();
        assert_eq!(t.spec(P32, TaskType::PreCommit1).max_parallelism, 9001);
        let t = table_from_env(&env(&[("FIL_PROOFS_USE_MULTICORE_SDR", "1"), ("PC1_MAX_PARALLELISM", "2")])).unwrap();
        assert_eq!(t.spec(P32, TaskType::PreCommit1).max_parallelism, 2, "explicit wins");
    }

    #[test]
    fn bad_override_names_the_variable() {
        let err = table_from_env(&env(&[("C2_32G_MIN_MEMORY", "lots")])).unwrap_err();
        assert_eq!(err.var, "C2_32G_MIN_MEMORY");
        assert!(err.to_string().contains("a number of bytes"), "{err}");
    }

    #[test]
    fn resources_listing() {
        let set = list_env(ListMode::Set, &env(&[("GET_2K_MAX_CONCURRENT", "1")])).unwrap();
        assert_eq!(set, vec!["GET_2K_MAX_CONCURRENT=1".to_string()]);
        let all = list_env(ListMode::Default, &env(&[])).unwrap();
        assert!(all.contains(&"AP_2K_BASE_MIN_MEMORY=2048".to_string()));
        assert!(all.contains(&"PC2_32G_GPU_UTILIZATION=1".to_string()));
        assert!(all.contains(&"DC_MAX_PARALLELISM=1".to_string()));
        assert!(all.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
    }

    #[test]
    fn prep_spec_takes_max_concurrent_from_fetch() {
        let t = table_from_env(&env(&[("GET_2K_MAX_CONCURRENT", "1")])).unwrap();
        let p = t.prep_spec(P2K, TaskType::PreCommit1, TaskType::Fetch);
        assert_eq!(p.max_concurrent, 1);
        assert_eq!(p.min_memory, 2 * KIB);
    }

    #[test]
    fn table_json_round_trips_with_lotus_keys() {
        let json = serde_json::to_string(default_table()).unwrap();
        assert!(json.contains(r#""seal/v0/precommit/1":{"0":{"MinMemory":2048"#), "{}", &json[..200]);
        let back: ResourceTable = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, default_table());
    }
}
