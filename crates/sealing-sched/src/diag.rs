//! `sealing sched-diag`: the queue, the open windows, and — beyond the original — for every
//! queued request the reason each worker does not take it.

use crate::sched::{Scheduler, TaskState};
use sealing_types::{SchedId, SectorId, TaskType, WorkerId};
use serde::Serialize;

/// One queued request, in the original's `SchedInfo.Requests` shape plus `Reasons`.
#[derive(Clone, Debug, Serialize)]
pub struct RequestDiag {
    #[serde(rename = "Sector")]
    pub sector: SectorId,
    #[serde(rename = "TaskType")]
    pub task_type: TaskType,
    #[serde(rename = "Priority")]
    pub priority: i32,
    #[serde(rename = "SchedId")]
    pub sched_id: SchedId,
    /// `worker <id8> (<host>): <why not>` for every worker.
    #[serde(rename = "Reasons")]
    pub reasons: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SchedDiag {
    #[serde(rename = "Requests")]
    pub requests: Vec<RequestDiag>,
    /// One entry per open scheduling window, as the original lists them.
    #[serde(rename = "OpenWindows")]
    pub open_windows: Vec<WorkerId>,
    /// Requests beyond `limit` are counted here, not listed.
    #[serde(rename = "RequestsNotListed")]
    pub requests_not_listed: usize,
}

impl Scheduler {
    /// Diagnostics for the first `limit` queued requests, in queue order.
    pub fn diag(&self, limit: usize) -> SchedDiag {
        let mut queued: Vec<_> =
            self.tasks.values().filter(|t| t.state == TaskState::Queued).map(|t| (t.key, t.req.id)).collect();
        queued.sort();
        let requests = queued
            .iter()
            .take(limit)
            .map(|(_, id)| {
                let t = &self.tasks[id];
                RequestDiag {
                    sector: t.req.sector.id,
                    task_type: t.req.task,
                    priority: t.req.priority,
                    sched_id: t.req.id,
                    reasons: self.explain(*id),
                }
            })
            .collect();
        let mut open_windows = Vec::new();
        for (id, w) in &self.workers {
            for _ in 0..w.open_windows() {
                open_windows.push(*id);
            }
        }
        SchedDiag { requests, open_windows, requests_not_listed: queued.len().saturating_sub(limit) }
    }

    /// Queued requests per task type, cheaply (a count per class of request, not per task):
    /// what a metrics scrape reads.
    pub fn queued_by_task(&self) -> std::collections::BTreeMap<TaskType, usize> {
        let mut by = std::collections::BTreeMap::new();
        for (key, q) in &self.classes {
            if !q.tasks.is_empty() {
                *by.entry(key.task).or_insert(0) += q.tasks.len();
            }
        }
        by
    }

    /// How many scheduling windows the workers have open.
    pub fn open_window_count(&self) -> usize {
        self.workers.values().map(|w| w.open_windows()).sum()
    }

    /// Why each worker does not run this queued request (one line per worker).
    pub fn explain(&self, id: SchedId) -> Vec<String> {
        let Some(t) = self.tasks.get(&id) else {
            return vec![format!("request {id} is not known")];
        };
        let req = &t.req;
        if self.workers.is_empty() {
            return vec!["no workers are connected".into()];
        }
        let holders = self.preferred_holders(req);
        self.workers
            .iter()
            .map(|(wid, w)| {
                let why = if !w.enabled {
                    "disabled: not answering its heartbeat, or disabled by the operator".to_string()
                } else if !w.offers(req.task) {
                    format!("{} disabled", req.task.short())
                } else if let Err(short) = w.fits_empty(req) {
                    format!("can never run it, even idle: {short}")
                } else if let Some(h) = holders.as_ref().filter(|h| !h.contains(wid)) {
                    let names: Vec<_> = h.iter().map(|x| x.short()).collect();
                    format!("waits for {} which hold(s) the sector's files", names.join(", "))
                } else if let Err(e) = holders.as_ref().map_or_else(|| self.selector_allows_remote(req, w), |_| Ok(()))
                {
                    e
                } else if w.open_windows() == 0 {
                    let spec = w.spec_of(req);
                    let now = match w.active.can_handle(&spec, &w.spec.info.resources, w.spec.info.ignore_resources) {
                        Ok(()) => "it would fit the executing pool now".to_string(),
                        Err(s) => format!("executing pool: {s}"),
                    };
                    let queued: usize = w.windows.iter().map(|x| x.todo.len()).sum();
                    format!("both scheduling windows are full ({queued} tasks assigned, not started); {now}")
                } else {
                    "can take it: it will be assigned at the next scheduling pass".to_string()
                };
                format!("worker {} ({}): {}", wid.short(), w.spec.info.hostname, why)
            })
            .collect()
    }
}
