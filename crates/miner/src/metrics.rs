//! The miner's metrics (`/debug/metrics`). Lotus's names and labels where Lotus has the
//! metric (its OpenCensus views under the `lotus` namespace: `metrics/metrics.go` at
//! b835fab7), and beyond Lotus: how long tasks wait in the queue, the queue by task type,
//! what the scheduler accounts on each worker, WindowPoSt per deadline. The README lists
//! every series.
//!
//! Events are recorded where they happen (a call started, a result returned, a scheduling
//! pass); state is read at each scrape ([`MinerMetrics::refresh`]), so keeping it current
//! costs nothing between scrapes.

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use sealing_exec::metrics::WORK_MS_BUCKETS;
use std::collections::BTreeMap;
use std::time::Duration;

/// Lotus's `defaultMillisecondsDistribution` (scheduling passes), in milliseconds.
const DEFAULT_MS_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.3, 0.6, 0.8, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 13.0, 16.0, 20.0, 25.0, 30.0, 40.0, 50.0,
    65.0, 80.0, 100.0, 130.0, 160.0, 200.0, 250.0, 300.0, 400.0, 500.0, 650.0, 800.0, 1000.0, 2000.0, 5000.0, 10000.0,
    20000.0, 50000.0, 100000.0,
];

/// Lotus's `queueSizeDistribution` (queue entries and open windows per pass).
const QUEUE_SIZE_BUCKETS: &[f64] = &[
    0.0, 1.0, 2.0, 3.0, 5.0, 7.0, 10.0, 15.0, 25.0, 35.0, 50.0, 70.0, 90.0, 130.0, 200.0, 300.0, 500.0, 1000.0, 2000.0,
    5000.0, 10000.0,
];

const TASK_WORKER: &[&str] = &["task_type", "worker_hostname"];
const PATH: &[&str] = &["storage_id", "path_storage", "path_seal"];
const WORKER: &[&str] = &["worker_hostname", "worker_id"];

/// One storage path as the index has it, for the path gauges.
pub struct PathReport {
    pub id: String,
    pub can_store: bool,
    pub can_seal: bool,
    pub stat: lotus_api::types::FsStat,
}

/// One worker as the scheduler accounts it.
pub struct WorkerReport {
    pub hostname: String,
    pub id: String,
    pub enabled: bool,
    pub cpu_use: u64,
    pub mem_used: u64,
    pub gpu_cards: Vec<f64>,
}

/// The last WindowPoSt attempt of a deadline.
pub struct DeadlineReport {
    pub deadline: u64,
    pub seconds: f64,
    pub margin_seconds: f64,
    /// How long the deadline is open.
    pub window_seconds: f64,
    pub faulty: usize,
    pub accepted: bool,
}

/// What a scrape reads from the miner's state.
#[derive(Default)]
pub struct Snapshot {
    pub sector_states: BTreeMap<String, i64>,
    pub paths: Vec<PathReport>,
    pub queued: BTreeMap<&'static str, i64>,
    pub open_windows: i64,
    pub workers: Vec<WorkerReport>,
    pub deadlines: Vec<DeadlineReport>,
}

pub struct MinerMetrics {
    pub registry: Registry,
    calls_started: IntCounterVec,
    calls_returned: IntCounterVec,
    calls_returned_ms: HistogramVec,
    untracked_returned: IntCounter,
    /// `AuthVerify` calls answered (ours): what workers and Lotus nodes ask about tokens.
    auth_verify: IntCounter,
    queue_wait_ms: HistogramVec,
    cycle_ms: Histogram,
    cycle_open_windows: Histogram,
    cycle_queue: Histogram,
    sector_states: IntGaugeVec,
    path_frac: [GaugeVec; 4],
    path_bytes: [IntGaugeVec; 6],
    queued: IntGaugeVec,
    open_windows: IntGauge,
    worker_enabled: IntGaugeVec,
    worker_cpu: IntGaugeVec,
    worker_mem: IntGaugeVec,
    worker_gpu: GaugeVec,
    wdpost_seconds: GaugeVec,
    wdpost_margin: GaugeVec,
    wdpost_faulty: IntGaugeVec,
    wdpost_proofs: IntCounterVec,
    wdpost_missed: IntCounter,
    wdpost_last_margin: Gauge,
    calls_failed: IntCounterVec,
    /// (task type, worker hostname) → failures in a row (the `sealing:` alerts).
    failing: std::sync::Mutex<BTreeMap<(String, String), u32>>,
    /// The label sets the last refresh set, so that the next removes only the gone ones.
    kept: std::sync::Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    paths: std::collections::HashSet<[String; 3]>,
    limited: std::collections::HashSet<[String; 3]>,
    workers: std::collections::HashSet<[String; 2]>,
}

impl Default for MinerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl MinerMetrics {
    pub fn new() -> Self {
        let registry = lotus_node::metrics::registry();
        let r = &registry;
        fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: T) -> T {
            r.register(Box::new(m.clone())).expect("each metric registers once");
            m
        }
        let counter_vec =
            |name, help, labels: &[&str]| reg(r, IntCounterVec::new(Opts::new(name, help), labels).unwrap());
        let gauge_vec = |name, help, labels: &[&str]| reg(r, GaugeVec::new(Opts::new(name, help), labels).unwrap());
        let int_gauge_vec =
            |name, help, labels: &[&str]| reg(r, IntGaugeVec::new(Opts::new(name, help), labels).unwrap());
        let histogram = |name, help, buckets: &[f64]| {
            reg(r, Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec())).unwrap())
        };
        let histogram_vec = |name, help, buckets: &[f64], labels: &[&str]| {
            reg(r, HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels).unwrap())
        };
        MinerMetrics {
            calls_started: counter_vec(
                "lotus_sealing_worker_calls_started",
                "Counter of started worker tasks",
                TASK_WORKER,
            ),
            calls_returned: counter_vec(
                "lotus_sealing_worker_calls_returned_count",
                "Counter of returned worker tasks",
                TASK_WORKER,
            ),
            calls_returned_ms: histogram_vec(
                "lotus_sealing_worker_calls_returned_ms",
                "Counter of returned worker tasks",
                WORK_MS_BUCKETS,
                TASK_WORKER,
            ),
            auth_verify: reg(
                r,
                IntCounter::new(
                    "lotus_miner_auth_verify_total",
                    "Counter of AuthVerify calls answered (tokens nodes asked the miner about)",
                )
                .expect("valid metric"),
            ),
            untracked_returned: reg(
                r,
                IntCounter::new(
                    "lotus_sealing_worker_untracked_calls_returned",
                    "Counter of returned untracked worker tasks",
                )
                .unwrap(),
            ),
            queue_wait_ms: histogram_vec(
                "lotus_sched_task_queue_wait_ms",
                "How long a task waited from its push to the start of its first call on a worker, in milliseconds",
                WORK_MS_BUCKETS,
                &["task_type"],
            ),
            cycle_ms: histogram(
                "lotus_sched_assigner_cycle_ms",
                "Duration of scheduler assigner cycle",
                DEFAULT_MS_BUCKETS,
            ),
            cycle_open_windows: histogram(
                "lotus_sched_assigner_cycle_open_window",
                "Number of open windows in scheduling cycles",
                QUEUE_SIZE_BUCKETS,
            ),
            cycle_queue: histogram(
                "lotus_sched_assigner_cycle_task_queue_entry",
                "Number of task queue entries in scheduling cycles",
                QUEUE_SIZE_BUCKETS,
            ),
            sector_states: int_gauge_vec("lotus_sealing_states", "Number of sectors in each state", &["sector_state"]),
            path_frac: [
                gauge_vec("lotus_storage_path_fs_available_frac", "Fraction of filesystem available storage", PATH),
                gauge_vec("lotus_storage_path_available_frac", "Fraction of available storage", PATH),
                gauge_vec("lotus_storage_path_reserved_frac", "Fraction of reserved storage", PATH),
                gauge_vec("lotus_storage_path_limit_used_frac", "Fraction of used optional storage limit", PATH),
            ],
            path_bytes: [
                int_gauge_vec("lotus_storage_path_capacity_bytes", "storage path capacity", PATH),
                int_gauge_vec("lotus_storage_path_fs_available_bytes", "filesystem available storage bytes", PATH),
                int_gauge_vec("lotus_storage_path_available_bytes", "available storage bytes", PATH),
                int_gauge_vec("lotus_storage_path_reserved_bytes", "reserved storage bytes", PATH),
                int_gauge_vec("lotus_storage_path_limit_used_bytes", "used optional storage limit bytes", PATH),
                int_gauge_vec("lotus_storage_path_limit_max_bytes", "optional storage limit", PATH),
            ],
            queued: int_gauge_vec(
                "lotus_sched_queued_tasks",
                "Tasks waiting in the scheduler's queue, by task type",
                &["task_type"],
            ),
            open_windows: reg(
                r,
                IntGauge::with_opts(Opts::new(
                    "lotus_sched_open_windows",
                    "Scheduling windows the workers have open now",
                ))
                .unwrap(),
            ),
            worker_enabled: int_gauge_vec(
                "lotus_sched_worker_enabled",
                "1 for a worker that takes tasks, 0 for a disabled one",
                WORKER,
            ),
            worker_cpu: int_gauge_vec(
                "lotus_sched_worker_cpu_use_threads",
                "Threads the scheduler accounts as used by tasks on the worker",
                WORKER,
            ),
            worker_mem: int_gauge_vec(
                "lotus_sched_worker_mem_used_bytes",
                "Memory the scheduler accounts as used by tasks on the worker (their maximum)",
                WORKER,
            ),
            worker_gpu: gauge_vec(
                "lotus_sched_worker_gpu_used",
                "Share of each GPU card the scheduler accounts as used on the worker",
                &["worker_hostname", "worker_id", "card"],
            ),
            wdpost_seconds: gauge_vec(
                "lotus_wdpost_proof_seconds",
                "Seconds the last WindowPoSt of the deadline took to prove",
                &["deadline"],
            ),
            wdpost_margin: gauge_vec(
                "lotus_wdpost_margin_seconds",
                "Seconds left before the deadline closed when its last WindowPoSt was done (negative: late)",
                &["deadline"],
            ),
            wdpost_faulty: int_gauge_vec(
                "lotus_wdpost_faulty_sectors",
                "Sectors the last WindowPoSt of the deadline skipped as unreadable (faulty)",
                &["deadline"],
            ),
            wdpost_proofs: counter_vec(
                "lotus_wdpost_partitions",
                "WindowPoSt attempts per partition, by outcome (accepted, failed)",
                &["outcome"],
            ),
            wdpost_missed: reg(
                r,
                IntCounter::new(
                    "lotus_wdpost_missed_deadlines",
                    "Deadlines that closed with a partition not proven (its sectors are faulty)",
                )
                .unwrap(),
            ),
            wdpost_last_margin: reg(
                r,
                Gauge::with_opts(Opts::new(
                    "lotus_wdpost_last_margin_seconds",
                    "Margin of the most recent WindowPoSt, any deadline",
                ))
                .unwrap(),
            ),
            calls_failed: counter_vec(
                "lotus_sealing_worker_calls_failed",
                "Worker tasks that returned an error",
                TASK_WORKER,
            ),
            failing: Default::default(),
            kept: Default::default(),
            registry,
        }
    }

    /// A call's outcome, for the failures-in-a-row count.
    pub fn call_outcome(&self, task: &str, worker_hostname: &str, ok: bool) {
        let mut f = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        let key = (task.to_string(), worker_hostname.to_string());
        if ok {
            f.remove(&key);
        } else {
            self.calls_failed.with_label_values(&[task, worker_hostname]).inc();
            *f.entry(key).or_insert(0) += 1;
        }
    }

    pub fn failing(&self) -> BTreeMap<(String, String), u32> {
        self.failing.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn call_started(&self, task: &str, worker_hostname: &str) {
        self.calls_started.with_label_values(&[task, worker_hostname]).inc();
    }

    /// A tracked call's result came back; `took` from the start of its work (unknown for a
    /// call adopted after a restart).
    pub fn call_returned(&self, task: &str, worker_hostname: &str, took: Option<Duration>) {
        self.calls_returned.with_label_values(&[task, worker_hostname]).inc();
        if let Some(d) = took {
            self.calls_returned_ms.with_label_values(&[task, worker_hostname]).observe(d.as_secs_f64() * 1000.0);
        }
    }

    pub fn auth_verified(&self) {
        self.auth_verify.inc();
    }

    pub fn untracked_returned(&self) {
        self.untracked_returned.inc();
    }

    pub fn queue_wait(&self, task: &str, waited: Duration) {
        self.queue_wait_ms.with_label_values(&[task]).observe(waited.as_secs_f64() * 1000.0);
    }

    /// One scheduling pass (an input to the manager's core), with the queue it left.
    pub fn cycle(&self, took: Duration, queued: usize, open_windows: usize) {
        self.cycle_ms.observe(took.as_secs_f64() * 1000.0);
        self.cycle_queue.observe(queued as f64);
        self.cycle_open_windows.observe(open_windows as f64);
    }

    pub fn wdpost(&self, accepted: bool, margin_seconds: f64) {
        self.wdpost_proofs.with_label_values(&[if accepted { "accepted" } else { "failed" }]).inc();
        if accepted {
            self.wdpost_last_margin.set(margin_seconds);
        }
    }

    pub fn wdpost_missed(&self) {
        self.wdpost_missed.inc();
    }

    /// Set every state gauge from `s`; series of things that are gone (a state no sector is
    /// in, a detached path, a removed worker) are dropped rather than left at their last value.
    pub fn refresh(&self, s: &Snapshot) {
        self.sector_states.reset();
        for (state, n) in &s.sector_states {
            self.sector_states.with_label_values(&[state.as_str()]).set(*n);
        }
        // Series of paths and workers are updated in place and only the gone ones removed: a
        // reset re-created every child at every scrape, which with 1,000 paths cost more than
        // encoding the text.
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let mut paths_now = std::collections::HashSet::new();
        let mut limited_now = std::collections::HashSet::new();
        for p in &s.paths {
            let st = &p.stat;
            if st.capacity == 0 {
                continue; // as Lotus: a path that reported nothing yet has no series
            }
            let labels =
                [p.id.as_str(), if p.can_store { "true" } else { "false" }, if p.can_seal { "true" } else { "false" }];
            let cap = st.capacity as f64;
            self.path_frac[0].with_label_values(&labels).set(st.fs_available as f64 / cap);
            self.path_frac[1].with_label_values(&labels).set(st.available as f64 / cap);
            self.path_frac[2].with_label_values(&labels).set(st.reserved as f64 / cap);
            self.path_bytes[0].with_label_values(&labels).set(st.capacity as i64);
            self.path_bytes[1].with_label_values(&labels).set(st.fs_available as i64);
            self.path_bytes[2].with_label_values(&labels).set(st.available as i64);
            self.path_bytes[3].with_label_values(&labels).set(st.reserved as i64);
            let key = labels.map(str::to_string);
            if st.max > 0 {
                self.path_frac[3].with_label_values(&labels).set(st.used as f64 / st.max as f64);
                self.path_bytes[4].with_label_values(&labels).set(st.used as i64);
                self.path_bytes[5].with_label_values(&labels).set(st.max as i64);
                limited_now.insert(key.clone());
            }
            paths_now.insert(key);
        }
        for gone in kept.paths.difference(&paths_now) {
            let l = [gone[0].as_str(), gone[1].as_str(), gone[2].as_str()];
            for g in &self.path_frac[..3] {
                let _ = g.remove_label_values(&l);
            }
            for g in &self.path_bytes[..4] {
                let _ = g.remove_label_values(&l);
            }
        }
        for gone in kept.limited.difference(&limited_now) {
            let l = [gone[0].as_str(), gone[1].as_str(), gone[2].as_str()];
            let _ = self.path_frac[3].remove_label_values(&l);
            let _ = self.path_bytes[4].remove_label_values(&l);
            let _ = self.path_bytes[5].remove_label_values(&l);
        }
        kept.paths = paths_now;
        kept.limited = limited_now;
        self.queued.reset();
        for (task, n) in &s.queued {
            self.queued.with_label_values(&[*task]).set(*n);
        }
        self.open_windows.set(s.open_windows);
        self.worker_gpu.reset();
        let mut workers_now = std::collections::HashSet::new();
        for w in &s.workers {
            let labels = [w.hostname.as_str(), w.id.as_str()];
            workers_now.insert(labels.map(str::to_string));
            self.worker_enabled.with_label_values(&labels).set(w.enabled as i64);
            self.worker_cpu.with_label_values(&labels).set(w.cpu_use as i64);
            self.worker_mem.with_label_values(&labels).set(w.mem_used as i64);
            for (i, used) in w.gpu_cards.iter().enumerate() {
                self.worker_gpu
                    .with_label_values(&[w.hostname.as_str(), w.id.as_str(), i.to_string().as_str()])
                    .set(*used);
            }
        }
        for gone in kept.workers.difference(&workers_now) {
            let l = [gone[0].as_str(), gone[1].as_str()];
            for g in [&self.worker_enabled, &self.worker_cpu, &self.worker_mem] {
                let _ = g.remove_label_values(&l);
            }
        }
        kept.workers = workers_now;
        self.wdpost_seconds.reset();
        self.wdpost_margin.reset();
        self.wdpost_faulty.reset();
        for d in &s.deadlines {
            let dl = d.deadline.to_string();
            self.wdpost_seconds.with_label_values(&[dl.as_str()]).set(d.seconds);
            self.wdpost_margin.with_label_values(&[dl.as_str()]).set(d.margin_seconds);
            self.wdpost_faulty.with_label_values(&[dl.as_str()]).set(d.faulty as i64);
        }
    }

    /// The scrape's text (what `/debug/metrics` serves).
    pub fn text(&self) -> String {
        String::from_utf8(lotus_node::metrics::encode(&self.registry).expect("text encoding")).expect("UTF-8")
    }
}

/// Read what a scrape shows from the running miner (the sector table, the index, the
/// scheduler, the proving loop).
pub fn snapshot(ctx: &crate::daemon_ctx::Ctx) -> Snapshot {
    let mut s = Snapshot::default();
    match ctx.sealing.count_by_state() {
        Ok(rows) => s.sector_states = rows.into_iter().collect(),
        Err(e) => tracing::warn!("metrics: counting sectors per state failed: {e}"),
    }
    s.paths = ctx
        .m
        .storage_paths()
        .into_iter()
        .map(|(info, stat, _, _)| PathReport {
            id: info.id.to_string(),
            can_store: info.can_store,
            can_seal: info.can_seal,
            stat,
        })
        .collect();
    let (queued, open) = ctx.m.sched_gauges();
    s.queued = queued.into_iter().map(|(t, n)| (t.as_str(), n as i64)).collect();
    s.open_windows = open as i64;
    s.workers = ctx
        .m
        .worker_usage()
        .into_iter()
        .map(|w| WorkerReport {
            hostname: w.hostname,
            id: w.id.to_string(),
            enabled: w.enabled,
            cpu_use: w.cpu_use,
            mem_used: w.mem_used,
            gpu_cards: w.gpu_cards,
        })
        .collect();
    s.deadlines = ctx
        .proving
        .last_per_deadline()
        .into_iter()
        .map(|a| DeadlineReport {
            deadline: a.deadline,
            seconds: a.seconds,
            margin_seconds: a.margin_seconds,
            window_seconds: a.window_seconds,
            faulty: a.skipped.len(),
            accepted: a.error.is_none(),
        })
        .collect();
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> prometheus_parse::Scrape {
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("the Prometheus text format")
    }

    fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        scrape.samples.iter().find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))).map(
            |s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                prometheus_parse::Value::Histogram(ref b) => b.last().map(|c| c.count).unwrap_or(0.0),
                prometheus_parse::Value::Summary(_) => f64::NAN,
            },
        )
    }

    /// Every series the Grafana dashboard in the repo queries is one the miner or a worker
    /// exports: a renamed metric fails here, not on an operator's empty panel.
    #[test]
    fn the_grafana_dashboard_queries_only_exported_series() {
        let m = MinerMetrics::new();
        let exec = sealing_exec::metrics::ExecMetrics::default();
        exec.register(&m.registry).unwrap();
        exec.touch_all();
        m.call_started("t", "h");
        m.call_returned("t", "h", Some(Duration::ZERO));
        m.call_outcome("t", "h", false);
        m.untracked_returned();
        m.queue_wait("t", Duration::ZERO);
        m.cycle(Duration::ZERO, 0, 0);
        m.wdpost(true, 1.0);
        m.wdpost_missed();
        let stat = lotus_api::types::FsStat { capacity: 10, max: 10, ..Default::default() };
        m.refresh(&Snapshot {
            sector_states: [("Proving".to_string(), 1)].into(),
            paths: vec![PathReport { id: "p".into(), can_store: true, can_seal: true, stat }],
            queued: [("seal/v0/commit/2", 1)].into(),
            open_windows: 1,
            workers: vec![WorkerReport {
                hostname: "h".into(),
                id: "i".into(),
                enabled: true,
                cpu_use: 1,
                mem_used: 1,
                gpu_cards: vec![0.5],
            }],
            deadlines: vec![DeadlineReport {
                deadline: 0,
                seconds: 1.0,
                margin_seconds: 1.0,
                window_seconds: 2.0,
                faulty: 0,
                accepted: true,
            }],
        });
        let mut names = std::collections::BTreeSet::new();
        for f in m.registry.gather() {
            let n = f.name().to_string();
            if f.get_field_type() == prometheus::proto::MetricType::HISTOGRAM {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{n}{suffix}"));
                }
            }
            names.insert(n);
        }
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../dashboards/grafana-lotus-miner.json");
        let dash: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut queried = vec![];
        for p in dash["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                let expr = t["expr"].as_str().unwrap();
                let words = expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
                queried
                    .extend(words.filter(|w| w.starts_with("lotus_") || w.starts_with("process_")).map(str::to_string));
            }
        }
        assert!(queried.len() >= 15, "{queried:?}");
        let missing: Vec<&String> = queried.iter().filter(|q| !names.contains(*q)).collect();
        assert!(
            missing.is_empty(),
            "the Grafana dashboard queries series nobody exports: {missing:?}\nexported: {names:?}"
        );
    }

    #[test]
    fn lotus_names_and_labels_and_state_refreshed_at_scrape() {
        let m = MinerMetrics::new();
        m.call_started("seal/v0/commit/2", "host-a");
        m.call_returned("seal/v0/commit/2", "host-a", Some(Duration::from_millis(1500)));
        m.call_returned("seal/v0/commit/2", "host-a", None);
        m.untracked_returned();
        let mut snap = Snapshot::default();
        snap.sector_states.insert("Proving".into(), 3);
        snap.sector_states.insert("PreCommit1".into(), 1);
        snap.paths.push(PathReport {
            id: "p1".into(),
            can_store: true,
            can_seal: false,
            stat: lotus_api::types::FsStat { capacity: 1000, available: 250, fs_available: 500, ..Default::default() },
        });
        m.refresh(&snap);
        let s = parse(&m.text());
        let ab = [("task_type", "seal/v0/commit/2"), ("worker_hostname", "host-a")];
        assert_eq!(value(&s, "lotus_sealing_worker_calls_started", &ab), Some(1.0));
        assert_eq!(value(&s, "lotus_sealing_worker_calls_returned_count", &ab), Some(2.0));
        assert_eq!(value(&s, "lotus_sealing_worker_calls_returned_ms_count", &ab), Some(1.0));
        assert_eq!(value(&s, "lotus_sealing_worker_untracked_calls_returned", &[]), Some(1.0));
        assert_eq!(value(&s, "lotus_sealing_states", &[("sector_state", "Proving")]), Some(3.0));
        let path = [("storage_id", "p1"), ("path_storage", "true"), ("path_seal", "false")];
        assert_eq!(value(&s, "lotus_storage_path_available_frac", &path), Some(0.25));
        assert_eq!(value(&s, "lotus_storage_path_capacity_bytes", &path), Some(1000.0));
        assert_eq!(value(&s, "lotus_storage_path_limit_max_bytes", &path), None, "no limit, no series (as Lotus)");

        // The sectors moved on and the path went: their series go with them.
        snap.sector_states.remove("PreCommit1");
        snap.paths.clear();
        m.refresh(&snap);
        let s = parse(&m.text());
        assert_eq!(value(&s, "lotus_sealing_states", &[("sector_state", "PreCommit1")]), None);
        assert_eq!(value(&s, "lotus_storage_path_capacity_bytes", &path), None);
    }
}
