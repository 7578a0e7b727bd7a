//! The web dashboard, on the miner's API port under `/ui/`: the cluster, tasks, the sector
//! pipeline (a page per sector), storage paths, proving and alerts, updated live.
//!
//! - Behind the API's JWT: a read token is enough. `lotus-miner ui-url` prints
//!   `http://<api>/ui/?token=<read token>`; that first request puts the token in an
//!   HttpOnly, SameSite=Strict cookie scoped to `/ui` and redirects to `/ui/`, so the token
//!   leaves the address bar (and the browser history). Without a valid token or cookie every
//!   `/ui` route answers 401 and says how to get in. Curio's UI has no authentication
//!   (curio #360).
//! - The page is one HTML file with its CSS and JavaScript inline, embedded in the binary:
//!   no JavaScript toolchain in the build, nothing fetched from any other host.
//! - Live: the page asks `/ui/state` (one JSON document of everything it shows) every two
//!   seconds; a sector's page asks `/ui/sector/<n>`. The read token cannot call the admin
//!   methods the page's data come from (`WorkerStats`, `SealingSchedDiag`, `LogAlerts`), so
//!   these routes read the miner's state directly.

use crate::daemon_ctx::Ctx;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use lotus_api::rpc::Authenticator;
use lotus_api::Permission;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

const PAGE: &str = include_str!("dashboard.html");
const COOKIE: &str = "lotus-ui";

#[derive(Clone)]
struct Ui {
    ctx: Ctx,
    auth: Arc<dyn Authenticator>,
}

pub fn router(ctx: Ctx, auth: Arc<dyn Authenticator>) -> axum::Router {
    axum::Router::new()
        .route("/ui", get(page))
        .route("/ui/", get(page))
        .route("/ui/state", get(state))
        .route("/ui/sector/{number}", get(sector))
        .with_state(Ui { ctx, auth })
}

/// The token of a dashboard request: its cookie, a bearer header, or `?token=`.
fn token(headers: &HeaderMap, query: &HashMap<String, String>) -> Option<String> {
    let cookie = headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
        v.split(';').find_map(|kv| kv.trim().strip_prefix(COOKIE).and_then(|r| r.strip_prefix('=')).map(str::to_string))
    });
    cookie.or_else(|| lotus_api::rpc::request_token(headers, query))
}

fn refused(why: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!(
            "{why}. The dashboard needs a token with read permission: open the link `lotus-miner ui-url` prints \
             (or send Authorization: Bearer <token>)\n"
        ),
    )
        .into_response()
}

/// Whether the request carries a token with read permission; the refusal otherwise.
async fn check(ui: &Ui, headers: &HeaderMap, query: &HashMap<String, String>) -> Result<String, Response> {
    let Some(t) = token(headers, query) else { return Err(refused("no token")) };
    match ui.auth.verify(&t).await {
        Ok(c) if c.has(Permission::Read) => Ok(t),
        Ok(_) => Err(refused("the token has no read permission")),
        Err(e) => Err(refused(&format!("the token is not valid ({e})"))),
    }
}

async fn page(State(ui): State<Ui>, headers: HeaderMap, Query(query): Query<HashMap<String, String>>) -> Response {
    let t = match check(&ui, &headers, &query).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    if query.contains_key("token") {
        // Into the cookie, out of the address bar.
        let cookie = format!("{COOKIE}={t}; Path=/ui; HttpOnly; SameSite=Strict");
        return (StatusCode::SEE_OTHER, [(header::SET_COOKIE, cookie), (header::LOCATION, "/ui/".to_string())])
            .into_response();
    }
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Nothing but this origin: no script, style, image or connection elsewhere.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
        .into_response()
}

async fn state(State(ui): State<Ui>, headers: HeaderMap, Query(query): Query<HashMap<String, String>>) -> Response {
    if let Err(r) = check(&ui, &headers, &query).await {
        return r;
    }
    let ctx = ui.ctx.clone();
    match tokio::task::spawn_blocking(move || snapshot(&ctx)).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("reading the miner's state: {e}")).into_response(),
    }
}

async fn sector(
    State(ui): State<Ui>,
    Path(number): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = check(&ui, &headers, &query).await {
        return r;
    }
    let Ok(number) = number.parse::<u64>() else {
        return (StatusCode::BAD_REQUEST, format!("{number:?} is not a sector number")).into_response();
    };
    let sealing = ui.ctx.sealing.clone();
    let read = move || -> Result<_, crate::sealing::SealingError> { Ok((sealing.get(number)?, sealing.log(number)?)) };
    let r = match tokio::task::spawn_blocking(read).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match r {
        Ok((Some(s), log)) => axum::Json(json!({
            "Number": s.number,
            "State": s.state.name(),
            "Proof": s.proof,
            "HasData": s.has_data,
            "Cids": s.comm_r.zip(s.comm_d).map(|(r, d)| sealing_exec::wire::cids(&r, &d)),
            "TicketEpoch": s.ticket_epoch,
            "SeedEpoch": s.seed_epoch,
            "Retries": s.retries,
            "LastError": s.last_error,
            "Log": log,
        }))
        .into_response(),
        Ok((None, _)) => (StatusCode::NOT_FOUND, format!("no sector {number}")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

/// Everything the page shows, in one document.
fn snapshot(ctx: &Ctx) -> Value {
    let usage = ctx.m.worker_usage();
    let mut jobs = ctx.m.jobs();
    let workers: Vec<Value> = usage
        .iter()
        .map(|w| {
            let tasks: Vec<Value> = jobs
                .remove(&w.id)
                .unwrap_or_default()
                .into_iter()
                .map(|j| {
                    json!({"Sector": j.sector.number, "Task": j.task.short(), "Running": j.run_wait == 0, "Start": j.start})
                })
                .collect();
            json!({
                "ID": w.id.to_string(),
                "Hostname": w.hostname,
                "Enabled": w.enabled,
                "Local": w.local,
                "TaskTypes": w.tasks.iter().map(|t| t.short()).collect::<Vec<_>>(),
                "CpuUse": w.cpu_use,
                "Cpus": w.cpus,
                "MemUsed": w.mem_used,
                "MemPhysical": w.mem_physical,
                "Gpus": w.gpus,
                "GpuCards": w.gpu_cards,
                "Tasks": tasks,
            })
        })
        .collect();
    // The first queued requests, each with why workers do not take it: identical reasons
    // grouped ("998 workers: …"), since a thousand workers give a thousand lines per request.
    let diag = ctx.m.sched_diag_first(10);
    let queued: Vec<Value> = diag
        .requests
        .iter()
        .map(|r| {
            let mut by: std::collections::BTreeMap<&str, Vec<&str>> = std::collections::BTreeMap::new();
            for line in &r.reasons {
                // "worker <id8> (<host>): <why>"
                let (who, why) = line.split_once("): ").unwrap_or(("", line.as_str()));
                by.entry(why).or_default().push(who.rsplit('(').next().unwrap_or(who));
            }
            let reasons: Vec<String> = by
                .into_iter()
                .map(|(why, hosts)| match hosts.len() {
                    1 | 2 => format!("{}: {why}", hosts.join(", ")),
                    n => format!("{n} workers ({}, …): {why}", hosts[..2].join(", ")),
                })
                .collect();
            json!({"Sector": r.sector.number, "Task": r.task_type.short(), "Priority": r.priority, "Reasons": reasons})
        })
        .collect();
    let states: Vec<(String, i64)> = ctx.sealing.count_by_state().unwrap_or_default();
    let recent = ctx.sealing.recent(100).unwrap_or_default();
    let paths: Vec<Value> = ctx
        .m
        .storage_paths()
        .into_iter()
        .map(|(info, stat, err, hosts)| {
            json!({
                "ID": info.id.to_string(),
                "Hosts": hosts,
                "CanSeal": info.can_seal,
                "CanStore": info.can_store,
                "Capacity": stat.capacity,
                "Available": stat.available,
                "Reserved": stat.reserved,
                "Error": err,
            })
        })
        .collect();
    let deadlines: Vec<Value> = ctx
        .proving
        .last_per_deadline()
        .iter()
        .map(|a| {
            json!({
                "Deadline": a.deadline,
                "Partition": a.partition,
                "Prover": a.prover,
                "Seconds": a.seconds,
                "Margin": a.margin_seconds,
                "Window": a.window_seconds,
                "Proven": a.proven.len(),
                "Faulty": a.skipped.len(),
                "Error": a.error,
            })
        })
        .collect();
    let alerts: Vec<_> =
        ctx.alerts.lock().unwrap_or_else(|e| e.into_inner()).list().iter().map(crate::alerts::to_wire).collect();
    json!({
        "Time": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        "Workers": workers,
        "Queued": queued,
        "QueuedTotal": diag.requests.len() + diag.requests_not_listed,
        "OpenWindows": diag.open_windows.len(),
        "States": states.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        "Sectors": recent.into_iter().map(|(n, s)| json!({"Number": n, "State": s})).collect::<Vec<_>>(),
        "Paths": paths,
        "Deadlines": deadlines,
        "MissedDeadline": ctx.proving.missed(),
        "Alerts": alerts,
    })
}
