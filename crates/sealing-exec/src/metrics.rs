//! What this node's executor did, as Prometheus metrics: tasks started, finished (by
//! outcome), running, and how long each took. Lotus has no such metric on a worker (its
//! worker-call metrics are the miner's view, `lotus_sealing_worker_calls_*`); an operator
//! with the miner on one machine and the work on another wants the worker's side too.
//! Labelled by the worker API method (`SealCommit2`), which is what a worker runs.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Lotus's `workMillisecondsDistribution`: from 250 ms (short sealing tasks) to a week
/// (a slow PC1), in milliseconds.
pub const WORK_MS_BUCKETS: &[f64] = &[
    250.0,
    500.0,
    1_000.0,
    2_000.0,
    5_000.0,
    10_000.0,
    30_000.0,
    60_000.0,
    2.0 * 60_000.0,
    5.0 * 60_000.0,
    10.0 * 60_000.0,
    15.0 * 60_000.0,
    30.0 * 60_000.0,
    40.0 * 60_000.0,
    45.0 * 60_000.0,
    50.0 * 60_000.0,
    55.0 * 60_000.0,
    60.0 * 60_000.0,
    65.0 * 60_000.0,
    70.0 * 60_000.0,
    75.0 * 60_000.0,
    80.0 * 60_000.0,
    85.0 * 60_000.0,
    100.0 * 60_000.0,
    120.0 * 60_000.0,
    130.0 * 60_000.0,
    140.0 * 60_000.0,
    150.0 * 60_000.0,
    160.0 * 60_000.0,
    180.0 * 60_000.0,
    200.0 * 60_000.0,
    220.0 * 60_000.0,
    260.0 * 60_000.0,
    300.0 * 60_000.0,
    350.0 * 60_000.0,
    400.0 * 60_000.0,
    600.0 * 60_000.0,
    800.0 * 60_000.0,
    1_000.0 * 60_000.0,
    1_300.0 * 60_000.0,
    1_800.0 * 60_000.0,
    4_000.0 * 60_000.0,
    10_000.0 * 60_000.0,
];

/// The executor's metrics; registered into the daemon's registry by [`ExecMetrics::register`].
pub struct ExecMetrics {
    started: IntCounterVec,
    finished: IntCounterVec,
    running: IntGaugeVec,
    took_ms: HistogramVec,
    /// Results finished here that the miner has not taken yet (a worker sets it at scrape).
    pub undelivered: IntGauge,
}

impl Default for ExecMetrics {
    fn default() -> Self {
        let method = &["method"];
        ExecMetrics {
            started: IntCounterVec::new(
                Opts::new("lotus_worker_tasks_started", "Tasks this node's executor started, by worker API method"),
                method,
            )
            .expect("valid metric"),
            finished: IntCounterVec::new(
                Opts::new(
                    "lotus_worker_tasks_finished",
                    "Tasks this node's executor finished, by method and outcome (ok, error)",
                ),
                &["method", "outcome"],
            )
            .expect("valid metric"),
            running: IntGaugeVec::new(
                Opts::new("lotus_worker_tasks_running", "Tasks running on this node now"),
                method,
            )
            .expect("valid metric"),
            took_ms: HistogramVec::new(
                HistogramOpts::new("lotus_worker_task_ms", "How long each task took on this node, in milliseconds")
                    .buckets(WORK_MS_BUCKETS.to_vec()),
                method,
            )
            .expect("valid metric"),
            undelivered: IntGauge::new(
                "lotus_worker_results_undelivered",
                "Results finished on this worker that the miner has not taken yet (kept in <repo>/results)",
            )
            .expect("valid metric"),
        }
    }
}

impl ExecMetrics {
    pub fn register(&self, r: &Registry) -> prometheus::Result<()> {
        r.register(Box::new(self.started.clone()))?;
        r.register(Box::new(self.finished.clone()))?;
        r.register(Box::new(self.running.clone()))?;
        r.register(Box::new(self.took_ms.clone()))?;
        r.register(Box::new(self.undelivered.clone()))
    }

    /// A child of every series, so that a test sees each name in a scrape.
    pub fn touch_all(&self) {
        self.started("m");
        self.finished("m", true, std::time::Duration::ZERO);
        self.finished("m", false, std::time::Duration::ZERO);
    }

    pub(crate) fn started(&self, method: &str) {
        self.started.with_label_values(&[method]).inc();
        self.running.with_label_values(&[method]).inc();
    }

    /// A started task ended (`ok`: with a result), after `took`; also when it was aborted.
    pub(crate) fn finished(&self, method: &str, ok: bool, took: std::time::Duration) {
        self.running.with_label_values(&[method]).dec();
        self.finished.with_label_values(&[method, if ok { "ok" } else { "error" }]).inc();
        self.took_ms.with_label_values(&[method]).observe(took.as_secs_f64() * 1000.0);
    }
}
