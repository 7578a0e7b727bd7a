//! What a worker reports about itself (reference §2.6). Lotus JSON field names.

use crate::ResourceTable;
use serde::{Deserialize, Serialize};

/// Hardware of a worker as seen at connect time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerResources {
    #[serde(rename = "MemPhysical")]
    pub mem_physical: u64,
    /// Total minus available, as the OS sees it.
    #[serde(rename = "MemUsed")]
    pub mem_used: u64,
    #[serde(rename = "MemSwap")]
    pub mem_swap: u64,
    #[serde(rename = "MemSwapUsed")]
    pub mem_swap_used: u64,
    /// Logical cores the worker may use (its CPU-affinity mask, cgroup quota, GOMAXPROCS).
    #[serde(rename = "CPUs")]
    pub cpus: u64,
    /// GPU names, one per visible device.
    #[serde(rename = "GPUs", default, deserialize_with = "null_as_default")]
    pub gpus: Vec<String>,
    /// The worker's resource table after its env overrides.
    #[serde(rename = "Resources", default)]
    pub resources: ResourceTable,
}

/// Go encodes a nil slice or map as `null`: decode it as the empty value (for
/// `#[serde(deserialize_with = …)]` on Lotus's types, here and in `lotus-api`).
pub fn null_as_default<'de, D: serde::Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    #[serde(rename = "Hostname")]
    pub hostname: String,
    /// Only the miner's own worker with `ResourceFiltering = "disabled"` sets this.
    #[serde(rename = "IgnoreResources", default)]
    pub ignore_resources: bool,
    #[serde(rename = "Resources")]
    pub resources: WorkerResources,
    /// Not in Lotus's type (its decoder ignores it; absent means false): the worker runs the
    /// mock proof backend. A miner only takes workers of its own backend.
    #[serde(rename = "MockProofs", default, skip_serializing_if = "std::ops::Not::not")]
    pub mock_proofs: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `MockProofs` is our one addition to Lotus's `WorkerInfo`: off the wire unless set, so a
    /// real-proof worker's `Info` has exactly Lotus's keys, and an `Info` without it (Lotus's)
    /// decodes as a real-proof worker.
    #[test]
    fn mock_proofs_is_on_the_wire_only_when_set() {
        let mut info = WorkerInfo::default();
        let v = serde_json::to_value(&info).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["Hostname", "IgnoreResources", "Resources"]);
        assert!(!serde_json::from_value::<WorkerInfo>(v).unwrap().mock_proofs);
        info.mock_proofs = true;
        let v = serde_json::to_value(&info).unwrap();
        assert_eq!(v["MockProofs"], serde_json::json!(true));
        assert!(serde_json::from_value::<WorkerInfo>(v).unwrap().mock_proofs);
    }
}
