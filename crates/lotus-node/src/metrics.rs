//! `/debug/metrics`, where Lotus's daemons serve theirs: the Prometheus text format (0.0.4),
//! unauthenticated as in Lotus (a scraper carries no token; the page holds counts, host names
//! and path IDs, no secret). Each daemon registers its own metrics into one [`Registry`]; the
//! gauges that describe state (sectors per state, storage paths, the scheduler's queue) are
//! set from that state by `refresh` at each scrape, not on every change.

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};
use std::sync::Arc;

/// A registry with the process's own metrics (`process_resident_memory_bytes`,
/// `process_cpu_seconds_total`, open files, threads), as every Prometheus client exports.
pub fn registry() -> Registry {
    let r = Registry::new();
    #[cfg(target_os = "linux")]
    r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
        .expect("the process collector registers once");
    r
}

/// The registry's metrics in the text format.
pub fn encode(registry: &Registry) -> prometheus::Result<Vec<u8>> {
    let mut out = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut out)?;
    Ok(out)
}

/// The scrape route. `refresh` runs before each scrape (off the async threads: it may read
/// the database).
pub fn router(registry: Registry, refresh: impl Fn() + Send + Sync + 'static) -> axum::Router {
    let refresh = Arc::new(refresh);
    axum::Router::new().route(
        "/debug/metrics",
        get(move || {
            let (registry, refresh) = (registry.clone(), refresh.clone());
            async move {
                let text = tokio::task::spawn_blocking(move || {
                    refresh();
                    encode(&registry)
                })
                .await;
                match text {
                    Ok(Ok(body)) => ([(CONTENT_TYPE, prometheus::TEXT_FORMAT)], body).into_response(),
                    Ok(Err(e)) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, format!("encoding the metrics: {e}"))
                        .into_response(),
                    Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, format!("collecting the metrics: {e}"))
                        .into_response(),
                }
            }
        }),
    )
}
