//! io.Reader params pushed to this node (Lotus's `lib/rpcenc`): a caller that sends
//! `{"Type":"push","Info":"<uuid>"}` as a task's data then sends the bytes with
//! `HEAD`/`POST /rpc/streams/v0/push/<uuid>` (no token, as Lotus's client does).
//!
//! Bytes are taken only for a UUID that an authenticated call announced (the task that reads
//! them), so the unauthenticated route cannot be used to fill this node's disk: a push for
//! an unknown UUID waits up to [`ANNOUNCE_WAIT`] for its call (the two race, as in Lotus) and
//! is refused after. The body is written to a staging file the task reads, at most the
//! announced size.

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

/// How long a push and the call that announces its UUID wait for each other (Lotus: 30 s).
pub const ANNOUNCE_WAIT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
enum Slot {
    /// A task waits for at most this many bytes.
    Expected(u64),
    Receiving,
    Done(PathBuf),
    Failed(String),
}

pub struct PushStreams {
    dir: PathBuf,
    slots: Mutex<HashMap<Uuid, Slot>>,
    changed: tokio::sync::Notify,
}

impl PushStreams {
    /// Staging files go to `dir` (created when needed).
    pub fn new(dir: PathBuf) -> Arc<Self> {
        Arc::new(PushStreams { dir, slots: Mutex::new(HashMap::new()), changed: tokio::sync::Notify::new() })
    }

    fn slot(&self, id: Uuid) -> Option<Slot> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).get(&id).cloned()
    }

    fn set(&self, id: Uuid, s: Slot) {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).insert(id, s);
        self.changed.notify_waiters();
    }

    fn remove(&self, id: Uuid) {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }

    /// Wait until `ready` says what to return, re-checking at every change.
    async fn until<T>(&self, within: Duration, mut ready: impl FnMut() -> Option<T>) -> Option<T> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(t) = ready() {
                return Some(t);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return ready();
            }
        }
    }

    /// The task's side: announce that up to `max` bytes are coming for `id`, and wait for
    /// them (a push must start within [`ANNOUNCE_WAIT`]). Returns the staging file, which the
    /// caller removes when done.
    pub async fn take(&self, id: Uuid, max: u64) -> Result<PathBuf, String> {
        {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots.entry(id).or_insert(Slot::Expected(max));
        }
        self.changed.notify_waiters();
        let started = self
            .until(ANNOUNCE_WAIT, || match self.slot(id) {
                Some(Slot::Expected(_)) => None,
                other => Some(other),
            })
            .await
            .flatten();
        let outcome = match started {
            None | Some(Slot::Expected(_)) => Err(format!(
                "no data was pushed to /rpc/streams/v0/push/{id} within {} s of the call",
                ANNOUNCE_WAIT.as_secs()
            )),
            // Receiving: wait for the end of the body, however long the transfer takes.
            Some(_) => loop {
                let r = self
                    .until(Duration::from_secs(3600), || match self.slot(id) {
                        Some(Slot::Done(p)) => Some(Ok(p)),
                        Some(Slot::Failed(e)) => Some(Err(e)),
                        None => Some(Err(format!("the push of {id} vanished"))),
                        _ => None,
                    })
                    .await;
                if let Some(r) = r {
                    break r;
                }
            },
        };
        self.remove(id);
        outcome
    }

    /// The route's side: whether a call announced `id` (waiting for it up to
    /// [`ANNOUNCE_WAIT`]), and how many bytes it takes.
    async fn announced(&self, id: Uuid) -> Option<u64> {
        self.until(ANNOUNCE_WAIT, || match self.slot(id) {
            Some(Slot::Expected(max)) => Some(max),
            _ => None,
        })
        .await
    }

    async fn receive(&self, id: Uuid, body: Body) -> Result<u64, String> {
        let max = self.announced(id).await.ok_or_else(|| format!("no call waits for push {id}"))?;
        self.set(id, Slot::Receiving);
        let path = self.dir.join(id.to_string());
        let r = async {
            tokio::fs::create_dir_all(&self.dir).await.map_err(|e| format!("creating {}: {e}", self.dir.display()))?;
            let mut f =
                tokio::fs::File::create(&path).await.map_err(|e| format!("creating {}: {e}", path.display()))?;
            let mut n = 0u64;
            let mut stream = body.into_data_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| format!("reading the pushed body: {e}"))?;
                n += chunk.len() as u64;
                if n > max {
                    return Err(format!("the push of {id} is longer than the {max} bytes its call announced"));
                }
                f.write_all(&chunk).await.map_err(|e| format!("writing {}: {e}", path.display()))?;
            }
            f.flush().await.map_err(|e| format!("writing {}: {e}", path.display()))?;
            Ok(n)
        }
        .await;
        match &r {
            Ok(_) => self.set(id, Slot::Done(path)),
            Err(e) => {
                let _ = tokio::fs::remove_file(&path).await;
                self.set(id, Slot::Failed(e.clone()))
            }
        }
        r
    }
}

/// `HEAD` and `POST /rpc/streams/v0/push/{uuid}`.
pub fn router(streams: Arc<PushStreams>) -> Router {
    Router::new().route("/rpc/streams/v0/push/{id}", axum::routing::head(head).post(push)).with_state(streams)
}

async fn head(State(st): State<Arc<PushStreams>>, UrlPath(id): UrlPath<String>) -> Response {
    let Ok(id) = id.parse::<Uuid>() else { return (StatusCode::BAD_REQUEST, "not a UUID").into_response() };
    match st.announced(id).await {
        Some(_) => StatusCode::OK.into_response(),
        None => (StatusCode::INTERNAL_SERVER_ERROR, format!("no call waits for push {id}")).into_response(),
    }
}

async fn push(State(st): State<Arc<PushStreams>>, UrlPath(id): UrlPath<String>, body: Body) -> Response {
    let Ok(id) = id.parse::<Uuid>() else { return (StatusCode::BAD_REQUEST, "not a UUID").into_response() };
    match st.receive(id, body).await {
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => {
            tracing::warn!(push = %id, "refused a pushed stream: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, e).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_push_reaches_the_task_that_announced_it_in_either_order() {
        let dir = tempfile::tempdir().unwrap();
        let st = PushStreams::new(dir.path().join("push"));
        // The task first, then the bytes.
        let id = Uuid::new_v4();
        let task = tokio::spawn({
            let st = st.clone();
            async move { st.take(id, 10).await }
        });
        tokio::task::yield_now().await;
        assert_eq!(st.receive(id, Body::from("hello")).await.unwrap(), 5);
        let f = task.await.unwrap().unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"hello");
        // The bytes first (their call is still on its way), then the task.
        let id = Uuid::new_v4();
        let pushed = tokio::spawn({
            let st = st.clone();
            async move { st.receive(id, Body::from("abc")).await }
        });
        tokio::task::yield_now().await;
        let f = st.take(id, 10).await.unwrap();
        assert_eq!(pushed.await.unwrap().unwrap(), 3);
        assert_eq!(std::fs::read(&f).unwrap(), b"abc");
    }

    #[tokio::test(start_paused = true)]
    async fn unannounced_oversized_and_missing_pushes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let st = PushStreams::new(dir.path().join("push"));
        let e = st.receive(Uuid::new_v4(), Body::from("x")).await.unwrap_err();
        assert!(e.contains("no call waits for push"), "{e}");
        let id = Uuid::new_v4();
        let task = tokio::spawn({
            let st = st.clone();
            async move { st.take(id, 2).await }
        });
        tokio::task::yield_now().await;
        let e = st.receive(id, Body::from("too long")).await.unwrap_err();
        assert!(e.contains("longer than the 2 bytes"), "{e}");
        assert!(task.await.unwrap().unwrap_err().contains("longer than the 2 bytes"));
        let e = st.take(Uuid::new_v4(), 2).await.unwrap_err();
        assert!(e.contains("no data was pushed"), "{e}");
    }
}
