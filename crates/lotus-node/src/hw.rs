//! What this machine offers a worker: logical CPUs within the process's affinity mask (and
//! cgroup quota, and `GOMAXPROCS` as the guides suggest), RAM and swap (cgroup limits
//! respected), and NVIDIA GPUs through NVML, loaded at run time so a machine without a driver
//! simply has none (reference §2.6).

use sealing_types::WorkerResources;

#[derive(Clone, Debug, Default)]
pub struct ProbeOptions {
    /// `--no-swap`: report no swap.
    pub no_swap: bool,
    /// `--no-gpu`: report no GPUs (proofs run on the CPU).
    pub no_gpu: bool,
}

/// Probe the hardware. The resource table is left empty; the caller fills it from the env.
pub fn probe(opts: &ProbeOptions, env: &dyn Fn(&str) -> Option<String>) -> WorkerResources {
    let mut sys = sysinfo::System::new();
    sys.refresh_memory();
    let mut mem_physical = sys.total_memory();
    let mut mem_used = sys.total_memory().saturating_sub(sys.available_memory());
    let mut mem_swap = sys.total_swap();
    let mut mem_swap_used = sys.used_swap();
    if let Some(cg) = sys.cgroup_limits() {
        if cg.total_memory > 0 && cg.total_memory < mem_physical {
            mem_physical = cg.total_memory;
            mem_used = cg.total_memory.saturating_sub(cg.free_memory).min(mem_physical);
        }
        if cg.free_swap < mem_swap {
            mem_swap = cg.free_swap.saturating_add(mem_swap_used).min(mem_swap);
        }
    }
    if opts.no_swap {
        mem_swap = 0;
        mem_swap_used = 0;
    }
    WorkerResources {
        mem_physical,
        mem_used,
        mem_swap,
        mem_swap_used,
        cpus: cpus(env),
        gpus: if opts.no_gpu { vec![] } else { gpus(env) },
        resources: Default::default(),
    }
}

/// Logical CPUs this process may use. `available_parallelism` honours the affinity mask
/// (`taskset`, systemd `CPUAffinity=`) and cgroup CPU quotas on Linux; `GOMAXPROCS` caps it
/// further, as the guides tell operators of the original to set it.
pub fn cpus(env: &dyn Fn(&str) -> Option<String>) -> u64 {
    let n = std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1);
    match env("GOMAXPROCS").and_then(|v| v.trim().parse::<u64>().ok()) {
        Some(g) if g > 0 => n.min(g),
        _ => n,
    }
}

/// An NVIDIA GPU as NVML names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuDevice {
    pub index: u32,
    pub name: String,
    /// `GPU-…`: what `CUDA_VISIBLE_DEVICES` can name it by, whatever the parent's filter.
    pub uuid: String,
}

/// GPU names through NVML, filtered by `NVIDIA_VISIBLE_DEVICES` / `CUDA_VISIBLE_DEVICES`.
pub fn gpus(env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    gpu_devices(env).into_iter().map(|d| d.name).collect()
}

/// The visible NVIDIA GPUs; none (and no error) on a machine without the driver.
pub fn gpu_devices(env: &dyn Fn(&str) -> Option<String>) -> Vec<GpuDevice> {
    let nvml = match nvml_wrapper::Nvml::init() {
        Ok(n) => n,
        Err(e) => {
            tracing::debug!("no NVIDIA GPUs: NVML unavailable ({e})");
            return vec![];
        }
    };
    let count = nvml.device_count().unwrap_or(0);
    let devices: Vec<(u32, String, String)> = (0..count)
        .filter_map(|i| {
            let d = nvml.device_by_index(i).ok()?;
            Some((i, d.name().unwrap_or_else(|_| "NVIDIA GPU".into()), d.uuid().unwrap_or_default()))
        })
        .collect();
    filter_visible(&devices, env).into_iter().map(|(index, name, uuid)| GpuDevice { index, name, uuid }).collect()
}

/// Apply the visible-devices variables to `(index, name, uuid)` triples.
pub fn filter_visible(
    devices: &[(u32, String, String)],
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<(u32, String, String)> {
    let spec = env("NVIDIA_VISIBLE_DEVICES").or_else(|| env("CUDA_VISIBLE_DEVICES"));
    let Some(spec) = spec.map(|s| s.trim().to_string()) else { return devices.to_vec() };
    match spec.as_str() {
        "all" => return devices.to_vec(),
        "" | "none" | "void" | "NoDevFiles" => return vec![],
        _ => {}
    }
    let mut out = Vec::new();
    for item in spec.split(',').map(str::trim) {
        let found = devices
            .iter()
            .find(|(i, _, uuid)| item.parse::<u32>().ok() == Some(*i) || (!uuid.is_empty() && uuid.starts_with(item)));
        match found {
            Some(d) if !out.contains(d) => out.push(d.clone()),
            Some(_) => {}
            // CUDA stops at the first invalid entry; so do we.
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devs() -> Vec<(u32, String, String)> {
        vec![(0, "A".into(), "GPU-aaaa".into()), (1, "B".into(), "GPU-bbbb".into()), (2, "C".into(), "GPU-cccc".into())]
    }

    fn env(k: &'static str, v: &'static str) -> impl Fn(&str) -> Option<String> {
        move |x| (x == k).then(|| v.to_string())
    }

    #[test]
    fn visible_devices() {
        let names = |e: &dyn Fn(&str) -> Option<String>| {
            filter_visible(&devs(), e).into_iter().map(|d| d.1).collect::<Vec<_>>()
        };
        assert_eq!(names(&|_| None), ["A", "B", "C"]);
        assert_eq!(names(&env("NVIDIA_VISIBLE_DEVICES", "2,0")), ["C", "A"]);
        assert_eq!(names(&env("CUDA_VISIBLE_DEVICES", "GPU-bbbb")), ["B"]);
        assert_eq!(names(&env("NVIDIA_VISIBLE_DEVICES", "none")), Vec::<String>::new());
        assert_eq!(names(&env("CUDA_VISIBLE_DEVICES", "1,7,2")), ["B"]);
        assert_eq!(names(&env("NVIDIA_VISIBLE_DEVICES", "all")), ["A", "B", "C"]);
    }

    #[test]
    fn probe_without_a_driver_has_no_gpus_and_sane_numbers() {
        let r = probe(&ProbeOptions { no_swap: true, no_gpu: true }, &|_| None);
        assert!(r.cpus >= 1);
        assert!(r.mem_physical > 0 && r.mem_used <= r.mem_physical);
        assert_eq!((r.mem_swap, r.mem_swap_used), (0, 0));
        // This machine has no NVIDIA driver: detection yields nothing and no error.
        if !std::path::Path::new("/proc/driver/nvidia").exists() {
            assert!(r.gpus.is_empty());
        }
    }

    #[test]
    fn gomaxprocs_caps_cpus() {
        assert_eq!(cpus(&env("GOMAXPROCS", "1")), 1);
        assert!(cpus(&env("GOMAXPROCS", "junk")) >= 1);
    }
}
