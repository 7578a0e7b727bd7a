//! Sector file transfer between nodes (reference §5.5): the `/remote` routes every node serves
//! and the client that fetches from them.
//!
//! Files stream in both directions (memory stays flat whatever the sector size): a file is
//! served with HTTP Range support, a cache directory as a tar stream built on the fly. A fetch
//! lands in `<path>/<type>/fetching/<name>` and is renamed into place only when complete, so a
//! half-transferred sector is never mistaken for a whole one.

use crate::index::SectorIndex;
use crate::store::{LocalPath, LocalStore};
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::TryStreamExt;
use lotus_api::rpc::{request_token, Authenticator};
use lotus_api::Permission;
use sealing_types::{FileType, FileTypes, SectorId};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

pub const TAR: &str = "application/x-tar";
pub const OCTET: &str = "application/octet-stream";

#[derive(Clone)]
pub struct RemoteState {
    pub store: Arc<LocalStore>,
    pub index: Arc<dyn SectorIndex>,
    pub auth: Arc<dyn Authenticator>,
    /// The text of a 401 ("write" on the miner, "admin" on workers, as in Lotus).
    pub missing: &'static str,
    /// The proof backend vanilla proofs are read with (real, or mock in tests).
    pub backend: sealing_proofs::Backend,
}

pub fn router(st: RemoteState) -> Router {
    Router::new()
        .route("/remote/stat/{id}", get(stat))
        .route("/remote/vanilla/single", axum::routing::post(vanilla_single))
        .route("/remote/{file_type}/{name}", get(serve).delete(remove))
        .with_state(st)
}

fn error(code: StatusCode, msg: impl std::fmt::Display) -> Response {
    (code, [(header::CONTENT_TYPE, "application/json")], serde_json::json!({ "Error": msg.to_string() }).to_string())
        .into_response()
}

/// `None` when the request carries an admin token, else the 401 to send.
async fn refuse(st: &RemoteState, headers: &HeaderMap, query: &HashMap<String, String>) -> Option<Response> {
    let denied = || Some(error(StatusCode::UNAUTHORIZED, format!("unauthorized: missing {} permission", st.missing)));
    let Some(token) = request_token(headers, query) else { return denied() };
    match st.auth.verify(&token).await {
        Ok(perms) if perms.contains(&Permission::Admin) => None,
        _ => denied(),
    }
}

/// The file type and sector of a `/remote/{type}/{name}` URL; anything else is refused, so a
/// request can never name a file outside the storage paths.
fn parse(file_type: &str, name: &str) -> Result<(FileType, SectorId), String> {
    let t = FileType::from_name(file_type).ok_or_else(|| format!("unknown sector file type {file_type:?}"))?;
    let s = SectorId::parse_file_name(name)
        .ok_or_else(|| format!("bad sector name {name:?}: expected s-t0<miner>-<number>"))?;
    Ok((t, s))
}

async fn stat(
    State(st): State<RemoteState>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = refuse(&st, &headers, &q).await {
        return r;
    }
    let Some(p) = id.parse::<Uuid>().ok().and_then(|id| st.store.get(id)) else {
        return error(StatusCode::NOT_FOUND, format!("storage path {id} is not on this node"));
    };
    match st.store.stat(&p) {
        Ok(s) => axum::Json(s).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// A sector's PoSt vanilla proof from this node's copy (reference §5.5): the PoSt node asks
/// whoever holds the sector instead of fetching gigabytes of it.
async fn vanilla_single(
    State(st): State<RemoteState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = refuse(&st, &headers, &q).await {
        return r;
    }
    let req: crate::post::VanillaRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad vanilla proof request: {e}")),
    };
    let (store, backend) = (st.store.clone(), st.backend);
    match tokio::task::spawn_blocking(move || crate::post::local_vanilla(&store, &req, backend)).await {
        Ok(Ok(v)) => ([(header::CONTENT_TYPE, OCTET)], v).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn serve(
    State(st): State<RemoteState>,
    UrlPath((file_type, name)): UrlPath<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Response {
    if let Some(r) = refuse(&st, req.headers(), &q).await {
        return r;
    }
    let (t, sector) = match parse(&file_type, &name) {
        Ok(x) => x,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let Some((_, file)) = st.store.find(sector, t) else {
        // Lotus answers 500 here; the message says what is missing.
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("sector {sector} has no {} file on this node", t.name()),
        );
    };
    if file.is_dir() {
        if req.headers().contains_key(header::RANGE) {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "Range requests are not supported on directories");
        }
        return tar_stream(file);
    }
    use tower::ServiceExt;
    match tower_http::services::ServeFile::new_with_mime(&file, &OCTET.parse().expect("valid mime")).oneshot(req).await
    {
        Ok(resp) => resp.map(Body::new),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// A directory as a tar stream, built while it is sent (1 MiB buffer, as Lotus's CopyBuf).
fn tar_stream(dir: PathBuf) -> Response {
    let (w, r) = tokio::io::duplex(1 << 20);
    let bridge = tokio_util::io::SyncIoBridge::new(w);
    tokio::task::spawn_blocking(move || {
        let mut b = tar::Builder::new(bridge);
        b.follow_symlinks(false);
        if let Err(e) = b.append_dir_all(".", &dir).and_then(|_| b.finish()) {
            // The receiver sees a truncated archive and fails; say why here.
            tracing::warn!(dir = %dir.display(), "sending cache directory failed: {e}");
        }
    });
    ([(header::CONTENT_TYPE, TAR)], Body::from_stream(tokio_util::io::ReaderStream::new(r))).into_response()
}

async fn remove(
    State(st): State<RemoteState>,
    UrlPath((file_type, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = refuse(&st, &headers, &q).await {
        return r;
    }
    let (t, sector) = match parse(&file_type, &name) {
        Ok(x) => x,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let keep: Vec<Uuid> =
        q.get("keep").map(|k| k.split('.').filter_map(|s| s.parse().ok()).collect()).unwrap_or_default();
    match st.store.remove(sector, t, &keep) {
        Ok(removed) => {
            for id in removed {
                if let Err(e) = st.index.drop_sector(id, sector, FileTypes::of(&[t])).await {
                    tracing::warn!(%sector, "removed {} but could not drop it from the index: {e}", t.name());
                }
            }
            StatusCode::OK.into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("fetching {url}: {why}")]
    Http { url: String, why: String },
    #[error("fetching {url}: non-200 code: {status}: {body}")]
    Status { url: String, status: u16, body: String },
    #[error("fetching {url} into {dest}: {source}")]
    Io { url: String, dest: PathBuf, source: std::io::Error },
}

/// Fetches sector files from other nodes with the cluster's admin token.
pub struct Fetcher {
    http: reqwest::Client,
    token: String,
    /// `ParallelFetchLimit`: transfers running at once on this node.
    limit: tokio::sync::Semaphore,
}

impl Fetcher {
    pub fn new(token: String, parallel: usize) -> Self {
        Fetcher { http: reqwest::Client::new(), token, limit: tokio::sync::Semaphore::new(parallel.max(1)) }
    }

    /// Download `url` to `dest` through `tmp` (in the same filesystem); returns the bytes moved.
    pub async fn fetch(&self, url: &str, tmp: &Path, dest: &Path) -> Result<u64, FetchError> {
        self.fetch_from(self.http.get(url).bearer_auth(&self.token), url, tmp, dest).await
    }

    /// [`Fetcher::fetch`] from a source outside the cluster, with its own headers and without
    /// this node's token (`DownloadSectorData`).
    pub async fn fetch_with_headers(
        &self,
        url: &str,
        tmp: &Path,
        dest: &Path,
        headers: &[(String, String)],
    ) -> Result<u64, FetchError> {
        let mut req = self.http.get(url);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        self.fetch_from(req, url, tmp, dest).await
    }

    async fn fetch_from(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
        tmp: &Path,
        dest: &Path,
    ) -> Result<u64, FetchError> {
        let _slot = self.limit.acquire().await.expect("never closed");
        let ioerr = |source| FetchError::Io { url: url.into(), dest: dest.into(), source };
        remove_any(tmp).await.map_err(ioerr)?;
        tokio::fs::create_dir_all(tmp.parent().expect("fetching/ has a parent")).await.map_err(ioerr)?;
        let resp = req.send().await.map_err(|e| FetchError::Http { url: url.into(), why: e.to_string() })?;
        let status = resp.status().as_u16();
        if status != 200 {
            let body = resp.text().await.unwrap_or_default();
            return Err(FetchError::Status { url: url.into(), status, body });
        }
        let ctype = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let stream = resp.bytes_stream().map_err(std::io::Error::other);
        let mut reader = tokio_util::io::StreamReader::new(stream);
        let bytes = if ctype == TAR {
            let bridge = tokio_util::io::SyncIoBridge::new(reader);
            let tmp2 = tmp.to_path_buf();
            tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
                std::fs::create_dir_all(&tmp2)?;
                let mut counter = CountingReader { inner: bridge, n: 0 };
                tar::Archive::new(&mut counter).unpack(&tmp2)?;
                Ok(counter.n)
            })
            .await
            .map_err(|e| ioerr(std::io::Error::other(e)))?
            .map_err(ioerr)?
        } else if ctype == OCTET {
            let mut f = tokio::fs::File::create(tmp).await.map_err(ioerr)?;
            let n = tokio::io::copy_buf(&mut tokio::io::BufReader::with_capacity(1 << 20, &mut reader), &mut f)
                .await
                .map_err(ioerr)?;
            f.flush().await.map_err(ioerr)?;
            f.sync_all().await.map_err(ioerr)?;
            n
        } else {
            return Err(FetchError::Http { url: url.into(), why: format!("unexpected content type {ctype:?}") });
        };
        remove_any(dest).await.map_err(ioerr)?;
        tokio::fs::rename(tmp, dest).await.map_err(ioerr)?;
        Ok(bytes)
    }

    /// `DELETE <url>?keep=<ids>`: the source drops its copies (move mode).
    pub async fn delete(&self, url: &str, keep: &[Uuid]) -> Result<(), FetchError> {
        // IDs are UUIDs joined with '.': nothing to escape.
        let keep: Vec<String> = keep.iter().map(|k| k.to_string()).collect();
        let sep = if url.contains('?') { '&' } else { '?' };
        let resp = self
            .http
            .delete(format!("{url}{sep}keep={}", keep.join(".")))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| FetchError::Http { url: url.into(), why: e.to_string() })?;
        let status = resp.status().as_u16();
        if status != 200 {
            let body = resp.text().await.unwrap_or_default();
            return Err(FetchError::Status { url: url.into(), status, body });
        }
        Ok(())
    }
}

struct CountingReader<R> {
    inner: R,
    n: u64,
}

impl<R: std::io::Read> std::io::Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n += k as u64;
        Ok(k)
    }
}

pub async fn remove_any(p: &Path) -> std::io::Result<()> {
    match tokio::fs::symlink_metadata(p).await {
        Ok(md) if md.is_dir() => tokio::fs::remove_dir_all(p).await,
        Ok(_) => tokio::fs::remove_file(p).await,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Where a fetched file of `t` lands in a local path.
pub fn fetch_paths(p: &LocalPath, t: FileType, sector: SectorId) -> (PathBuf, PathBuf) {
    (p.fetching(t, sector), p.file(t, sector))
}
