//! The skeleton both daemons share around their API: bind the listen address, publish it in
//! the repo's `api` file (the bound address, so port 0 works), serve until a shutdown is
//! asked (over the API or by SIGINT/SIGTERM), then stop the background tasks and wait for
//! them, and remove the `api` file. Each daemon only builds its router and its state.

use crate::repo::Repo;
use anyhow::{Context, Result};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// Bind `addr`; `in_use` says what to do when it cannot be bound (which flag or key sets it).
pub async fn bind(addr: SocketAddr, in_use: impl FnOnce() -> String) -> Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}: {}", in_use()))
}

/// The long-lived background loops of a daemon (health reports, registration, proving):
/// tracked, so that shutdown stops them and waits until each has ended.
#[derive(Default)]
pub struct Background {
    tasks: Mutex<JoinSet<()>>,
}

impl Background {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).spawn(task);
    }

    /// How many are still running.
    pub fn len(&self) -> usize {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stop every task and wait for each to end; a task that had panicked is reported.
    pub async fn stop(&self) {
        let mut set = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        set.abort_all();
        while let Some(r) = set.join_next().await {
            if let Err(e) = r {
                if e.is_panic() {
                    tracing::error!("a background task had panicked: {e}");
                }
            }
        }
    }
}

/// Every `every`, hand the memory the allocator holds free back to the OS. glibc keeps what a
/// burst freed (10,000 pledges in the scale benchmark left the miner at 200 or 560 MiB from
/// one run to the next with the same live data); the RSS operators watch should say what the
/// daemon holds.
pub fn trim_memory_every(background: &Background, every: std::time::Duration) {
    background.spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            // SAFETY: malloc_trim only returns free pages; it is safe to call at any time.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    });
}

/// Resolves at SIGINT or SIGTERM.
pub async fn signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Serve `app` on `listener` until `requested` is notified (the API's `Shutdown`) or a signal
/// comes; `stopping` runs at that moment (before in-flight requests finish). Then the
/// background tasks are stopped and awaited, and the repo's `api` file removed.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    repo: &Repo,
    requested: Arc<Notify>,
    stopping: impl FnOnce() + Send + 'static,
    background: &Background,
) -> Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = requested.notified() => tracing::info!("shutdown requested over the API"),
                _ = signal() => tracing::info!("signal received, shutting down"),
            }
            stopping();
        })
        .await
        .context("serving the API")?;
    background.stop().await;
    let _ = std::fs::remove_file(repo.file("api"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stopping_the_background_ends_every_task() {
        let bg = Background::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        bg.spawn(async move {
            let _keep = tx; // dropped when the task is aborted
            std::future::pending::<()>().await
        });
        bg.spawn(async {});
        assert_eq!(bg.len(), 2);
        bg.stop().await;
        assert!(bg.is_empty());
        assert!(rx.await.is_err(), "the endless task was stopped and dropped its state");
    }
}
