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
use lotus_api::rpc::{request_token, Authenticator};
use lotus_api::{Caller, Permission};
use sealing_types::{FileType, FileTypes, SectorId};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use uuid::Uuid;

pub const TAR: &str = "application/x-tar";
/// The files a cache archive carries, `name=size` joined with `;` (ours; Lotus's sender does
/// not send it, and then only the archive's own completeness is checked).
pub const MANIFEST: &str = "x-sector-files";
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
        .route("/remote/bundle/{name}", get(serve_bundle))
        .route("/remote/{file_type}/{name}", get(serve).delete(remove))
        .with_state(st)
}

fn error(code: StatusCode, msg: impl std::fmt::Display) -> Response {
    (code, [(header::CONTENT_TYPE, "application/json")], serde_json::json!({ "Error": msg.to_string() }).to_string())
        .into_response()
}

/// `None` when the request carries an admin token, else the 401 to send.
async fn refuse(st: &RemoteState, headers: &HeaderMap, query: &HashMap<String, String>) -> Option<Response> {
    admin(st, headers, query).await.err()
}

/// The caller of a request carrying an admin token, else the 401 to send.
async fn admin(st: &RemoteState, headers: &HeaderMap, query: &HashMap<String, String>) -> Result<Caller, Response> {
    let denied = || error(StatusCode::UNAUTHORIZED, format!("unauthorized: missing {} permission", st.missing));
    let Some(token) = request_token(headers, query) else { return Err(denied()) };
    match st.auth.verify(&token).await {
        Ok(c) if c.has(Permission::Admin) => Ok(c),
        _ => Err(denied()),
    }
}

/// Why a worker's token may not remove this node's copies of a sector file, if it may not. A
/// worker removes another node's copy only to finish a move: the `keep` list must name a path
/// on another node that the index says holds the file, so no such request can remove the last
/// copy. The operator's token is not held to this (Lotus's rule).
async fn foreign_removal(
    st: &RemoteState,
    worker: &str,
    sector: SectorId,
    t: FileType,
    keep: &[Uuid],
) -> Option<String> {
    let local: Vec<Uuid> = st.store.paths().iter().map(|p| p.id()).collect();
    let held = match st.index.find(sector, FileTypes::of(&[t])).await {
        Ok(v) => v,
        Err(e) => return Some(format!("the index cannot say where the other copies are ({e}); try again")),
    };
    let elsewhere = held.iter().any(|si| keep.contains(&si.id) && !local.contains(&si.id));
    (!elsewhere).then(|| {
        format!(
            "the token of worker {worker:?} may remove {} of {sector} here only once a copy is declared on a path it \
             keeps on another node (keep=<path id>); nothing removed",
            t.name()
        )
    })
}

/// The file type and sector of a `/remote/{type}/{name}` URL; anything else is refused, so a
/// request can never name a file outside the storage paths.
fn parse(file_type: &str, name: &str) -> Result<(FileType, SectorId), String> {
    let t = FileType::from_name(file_type).ok_or_else(|| format!("unknown sector file type {file_type:?}"))?;
    Ok((t, parse_sector(name)?))
}

fn parse_sector(name: &str) -> Result<SectorId, String> {
    SectorId::parse_file_name(name).ok_or_else(|| format!("bad sector name {name:?}: expected s-t0<miner>-<number>"))
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
    if !req.headers().contains_key(header::RANGE) {
        return file_stream(file);
    }
    use tower::ServiceExt;
    // A Range request (a piece read from an unsealed file): 1 MiB reads (the default is 64 KiB, each a trip to the blocking pool).
    let serve = tower_http::services::ServeFile::new_with_mime(&file, &OCTET.parse().expect("valid mime"))
        .with_buf_chunk_size(CHUNK);
    match serve.oneshot(req).await {
        Ok(resp) => resp.map(Body::new),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// The unit of file I/O in transfers: reads, writes and body chunks of 1 MiB (as Lotus's
/// CopyBuf), so that per-call costs (a syscall, a trip to the blocking pool, a channel hop) are
/// paid once per MiB, not once per 4 or 8 KiB.
const CHUNK: usize = 1 << 20;

/// A directory as a tar stream, built while it is sent (1 MiB buffers, as Lotus's CopyBuf).
/// Only its regular files go in, flat; a file that cannot be read (gone, EMFILE, EACCES)
/// fails the stream itself, so the receiver sees a broken transfer, never a short archive
/// that ends cleanly. The manifest header names every file and its size.
fn tar_stream(dir: PathBuf) -> Response {
    match flat_files(&dir) {
        Ok(files) => tar_of(dir.display().to_string(), entries_of(&dir, "", files)),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("listing {}: {e}", dir.display())),
    }
}

/// A directory's listed files as archive entries, each named `<prefix><file name>`.
fn entries_of(dir: &Path, prefix: &str, files: Vec<(String, u64)>) -> Vec<Entry> {
    files.into_iter().map(|(n, len)| Entry { name: format!("{prefix}{n}"), path: dir.join(n), len }).collect()
}

/// Several file types of one sector in one response (ours: `GET
/// /remote/bundle/<sector>?types=sealed,cache`), so that a fetch costs one round trip per
/// sector instead of one per type. A tar stream as a cache's, whose entries are `<type>` for a
/// file and `<type>/<name>` for a directory's files, under the same manifest and the same
/// rules. Lotus has no such route (its `/remote/{type}/{id}` answers 500 to the type
/// "bundle"), so a fetcher that gets anything but a 200 asks for each type on its own.
async fn serve_bundle(
    State(st): State<RemoteState>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = refuse(&st, &headers, &q).await {
        return r;
    }
    let (sector, types) = match bundle_request(&name, q.get("types").map(String::as_str)) {
        Ok(x) => x,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let mut entries = vec![];
    for t in types.iter() {
        let Some((_, file)) = st.store.find(sector, t) else {
            let why = format!("sector {sector} has no {} file on this node", t.name());
            return error(StatusCode::INTERNAL_SERVER_ERROR, why);
        };
        let listed = if t.is_dir() {
            flat_files(&file).map(|files| entries_of(&file, &format!("{}/", t.name()), files))
        } else {
            std::fs::metadata(&file).map(|md| vec![Entry { name: t.name().into(), path: file.clone(), len: md.len() }])
        };
        match listed {
            Ok(e) => entries.extend(e),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("listing {}: {e}", file.display())),
        }
    }
    tar_of(format!("the files of {sector}"), entries)
}

/// The sector and the file types a bundle URL names; `types` is a comma-separated list.
fn bundle_request(name: &str, types: Option<&str>) -> Result<(SectorId, FileTypes), String> {
    let sector = parse_sector(name)?;
    let list = types.ok_or("a bundle needs ?types=<type>,<type>...")?;
    let types: Vec<FileType> = list
        .split(',')
        .map(|n| FileType::from_name(n).ok_or_else(|| format!("unknown sector file type {n:?} in types={list:?}")))
        .collect::<Result<_, _>>()?;
    Ok((sector, FileTypes::of(&types)))
}

/// A file an archive sends: its name in the archive, where it is, and its size when listed.
struct Entry {
    name: String,
    path: PathBuf,
    len: u64,
}

/// A whole file as the response body, read on a blocking thread in 1 MiB chunks, a few of them
/// in flight (tower-http's `ServeFile` reads through the blocking pool chunk by chunk and made
/// transfers run at half the disk's speed). Exactly the length announced: a file that shrinks
/// meanwhile breaks the stream, so the receiver sees a short body, never a short file.
fn file_stream(file: PathBuf) -> Response {
    let opened = std::fs::File::open(&file).and_then(|f| Ok((f.metadata()?.len(), f)));
    let (len, f) = match opened {
        Ok(x) => x,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("opening {}: {e}", file.display())),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<axum::body::Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut r = Exact { inner: std::io::Read::take(f, len), left: len };
        loop {
            let mut buf = vec![0u8; CHUNK];
            let n = match read_full(&mut r, &mut buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(file = %file.display(), "sending the file failed, the transfer is aborted: {e}");
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            buf.truncate(n);
            if tx.blocking_send(Ok(buf.into())).is_err() {
                return; // the receiver went away
            }
        }
    });
    let body =
        Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move { Some((rx.recv().await?, rx)) }));
    (
        [
            (header::CONTENT_TYPE, OCTET.to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
            (header::ACCEPT_RANGES, "bytes".into()),
        ],
        body,
    )
        .into_response()
}

/// The archive of `files`, listed beforehand (`what` names them in the log).
fn tar_of(what: String, files: Vec<Entry>) -> Response {
    use futures_util::StreamExt;
    let manifest: Vec<String> = files.iter().map(|e| format!("{}={}", e.name, e.len)).collect();
    // tar writes in 8 KiB pieces: gathered into 1 MiB chunks, a few in flight to the body.
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<axum::body::Bytes>>(4);
    let chunks = ChunkWriter { tx, buf: Vec::with_capacity(CHUNK) };
    let (done, finished) = tokio::sync::oneshot::channel::<Result<(), String>>();
    tokio::task::spawn_blocking(move || {
        let mut b = tar::Builder::new(chunks);
        let r = (|| {
            for Entry { name, path, len } in &files {
                let f = std::io::BufReader::with_capacity(CHUNK, std::fs::File::open(path)?);
                let mut h = tar::Header::new_gnu();
                h.set_size(*len);
                h.set_mode(0o644);
                h.set_entry_type(tar::EntryType::Regular);
                // Exactly the size the manifest announced: tar pads a short entry silently, so
                // a file that shrank since the listing must fail here, not send a corrupt entry.
                b.append_data(&mut h, name, Exact { inner: std::io::Read::take(f, *len), left: *len })?;
            }
            b.finish()?;
            std::io::Write::flush(b.get_mut())
        })();
        drop(b);
        if let Err(e) = &r {
            tracing::warn!("sending {what} failed, the transfer is aborted: {e}");
        }
        let _ = done.send(r.map_err(|e| e.to_string()));
    });
    // After the archive's bytes: an error item if building it failed, which aborts the
    // response body (the receiver's read fails).
    let tail = futures_util::stream::once(async move {
        match finished.await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(Err(std::io::Error::other(e))),
            Err(_) => Some(Err(std::io::Error::other("the archive writer stopped"))),
        }
    })
    .filter_map(|x| async move { x });
    let archive = futures_util::stream::unfold(rx, |mut rx| async move { Some((rx.recv().await?, rx)) });
    let body = Body::from_stream(archive.chain(tail));
    ([(header::CONTENT_TYPE, TAR.to_string()), (header::HeaderName::from_static(MANIFEST), manifest.join(";"))], body)
        .into_response()
}

/// The blocking side of a response body: bytes written are sent on in 1 MiB chunks.
struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<axum::body::Bytes>>,
    buf: Vec<u8>,
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.flush()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(Ok(chunk.into()))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the receiver went away"))
    }
}

/// A reader that fails if it ends before `left` bytes.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: std::io::Read> std::io::Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the file ended {} bytes before its listed size", self.left),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A cache directory's regular files (name, size), sorted; anything else in it is an error.
fn flat_files(dir: &Path) -> std::io::Result<Vec<(String, u64)>> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let md = e.metadata()?;
        let name = e.file_name().into_string().map_err(|n| std::io::Error::other(format!("{n:?} is not UTF-8")))?;
        if !md.is_file() {
            return Err(std::io::Error::other(format!("{name} is not a regular file")));
        }
        out.push((name, md.len()));
    }
    out.sort();
    Ok(out)
}

/// The longest cache file name accepted (the proofs library's are under 40 bytes).
const MAX_NAME: usize = 128;

/// Unpack a cache archive into `dir` strictly: only regular files, flat (one plain name, no
/// `..`, no `/`), written with mode 0644 whatever the archive says, each fsynced; the archive
/// must end with its end-of-archive marker (a stream cut between two entries is refused), and
/// with a manifest it must hold exactly those files with those sizes. Returns the bytes read.
pub fn unpack_flat(r: impl std::io::Read, dir: &Path, manifest: Option<&str>) -> std::io::Result<u64> {
    std::fs::create_dir_all(dir)?;
    let (n, _) = unpack(r, &|name| plain(name).then(|| dir.join(name)), manifest)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(n)
}

/// Unpack a bundle (see [`serve_bundle`]) into each type's partial path: a file type's entry
/// is named after its type, a cache's files are `<type>/<plain name>`; nothing else is
/// accepted, the manifest is required, and every file type asked for must have arrived.
/// Returns the bytes read.
pub fn unpack_bundle(r: impl std::io::Read, slots: &[(FileType, PathBuf)], manifest: &str) -> std::io::Result<u64> {
    for (t, p) in slots {
        if t.is_dir() {
            std::fs::create_dir_all(p)?;
        }
    }
    let place = |name: &str| match name.split_once('/') {
        None => slots.iter().find(|(t, _)| !t.is_dir() && t.name() == name).map(|(_, p)| p.clone()),
        Some((t, file)) if plain(file) => {
            slots.iter().find(|(ft, _)| ft.is_dir() && ft.name() == t).map(|(_, p)| p.join(file))
        }
        Some(_) => None,
    };
    let (n, got) = unpack(r, &place, Some(manifest))?;
    for (t, p) in slots {
        if t.is_dir() {
            std::fs::File::open(p)?.sync_all()?;
        } else if !got.iter().any(|(name, _)| name == t.name()) {
            let why = format!("the bundle holds no {} file: refused", t.name());
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, why));
        }
    }
    Ok(n)
}

/// A file name with no directory in it, of a sane length.
fn plain(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME && !name.contains('/') && name != ".." && name != "."
}

/// The strict unpacking both archive kinds share: each entry must be a regular file whose
/// name `place` maps to a path (else the archive is refused), written there with mode 0644
/// and fsynced, and the archive must end with its end marker and match its manifest. Returns
/// the bytes read and the entries written (name, size).
fn unpack(
    r: impl std::io::Read,
    place: &dyn Fn(&str) -> Option<PathBuf>,
    manifest: Option<&str>,
) -> std::io::Result<(u64, Vec<(String, u64)>)> {
    let bad = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidData, why);
    let mut counter = CountingReader { inner: r, n: 0, eof: false };
    let mut got: Vec<(String, u64)> = vec![];
    // Each file's writeback starts as it is written and its fsync waits for the archive's end
    // (a few files at most are held open), so the disk works on one file while the next
    // arrives.
    let mut unsynced: std::collections::VecDeque<std::fs::File> = Default::default();
    {
        let mut archive = tar::Archive::new(&mut counter);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let kind = entry.header().entry_type();
            let path = entry.path()?.into_owned();
            let name = path.to_str().unwrap_or("").trim_start_matches("./").to_string();
            if kind.is_dir() && name.is_empty() {
                continue; // the archive's own "./"
            }
            if !kind.is_file() {
                return Err(bad(format!("entry {path:?} is a {kind:?}, not a regular file: refused")));
            }
            let Some(target) = place(&name) else {
                return Err(bad(format!("entry {path:?} is not a file name this archive may hold: refused")));
            };
            if got.iter().any(|(n, _)| *n == name) {
                return Err(bad(format!("entry {name} appears twice: refused")));
            }
            let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode_0644().open(&target)?;
            let n = copy_chunked(&mut entry, &mut f)?;
            if n != entry.header().size()? {
                return Err(bad(format!("entry {name} is cut short ({n} bytes)")));
            }
            start_writeback(&f, 0, n);
            unsynced.push_back(f);
            if unsynced.len() > MAX_UNSYNCED {
                unsynced.pop_front().expect("not empty").sync_all()?;
            }
            got.push((name, n));
        }
    }
    if counter.eof {
        return Err(bad("the archive ended without its end marker: the transfer was cut".into()));
    }
    if let Some(m) = manifest {
        let mut want: Vec<(String, u64)> = vec![];
        for item in m.split(';').filter(|i| !i.is_empty()) {
            let (n, len) = item.split_once('=').ok_or_else(|| bad(format!("manifest entry {item:?}")))?;
            want.push((n.to_string(), len.parse().map_err(|_| bad(format!("manifest entry {item:?}")))?));
        }
        want.sort();
        got.sort();
        if want != got {
            return Err(bad(format!("the archive holds {got:?}, its manifest announced {want:?}")));
        }
    }
    for f in unsynced {
        f.sync_all()?;
    }
    Ok((counter.n, got))
}

/// Files of one archive waiting for their fsync (a 64GiB sector's cache has about 35).
const MAX_UNSYNCED: usize = 64;

/// The file's writeback is started every this many bytes as it is written.
const WRITEBACK_EVERY: u64 = 32 << 20;

/// `std::io::copy` into a file with 1 MiB writes (its own buffer is 8 KiB): reads fill the
/// buffer before each write. Every [`WRITEBACK_EVERY`] bytes the kernel is asked to start
/// writing what came so far to disk (`sync_file_range`, which does not wait), so the fsync
/// that accepts the file finds little left to do: the disk works while the network does,
/// instead of after it.
fn copy_chunked(r: &mut impl std::io::Read, w: &mut std::fs::File) -> std::io::Result<u64> {
    use std::io::Write;
    let mut buf = vec![0u8; CHUNK];
    let (mut total, mut kicked) = (0u64, 0u64);
    loop {
        let filled = read_full(r, &mut buf)?;
        if filled == 0 {
            return Ok(total);
        }
        w.write_all(&buf[..filled])?;
        total += filled as u64;
        if total - kicked >= WRITEBACK_EVERY {
            start_writeback(w, kicked, total - kicked);
            kicked = total;
        }
    }
}

/// Start writing `len` bytes at `offset` of `f` back to disk, without waiting (a hint: a
/// failure is not an error, the fsync after still makes the file durable).
fn start_writeback(f: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on an open descriptor this function borrows; no memory is passed.
    unsafe {
        libc::sync_file_range(f.as_raw_fd(), offset as i64, len as i64, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Read until `buf` is full or the reader ends; how much was read.
fn read_full(r: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(k) => filled += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A response body read on a blocking thread: the async side pumps its chunks through a
/// bounded channel (memory stays flat), and each read takes from the chunk at hand, with no
/// trip through the runtime per read as `SyncIoBridge` makes. The stream's end is the end;
/// a failed read of the body arrives as an error.
struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<axum::body::Bytes>>,
    cur: axum::body::Bytes,
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

/// A file's bytes from `r` into `path`, fsynced.
fn write_synced(mut r: impl std::io::Read, path: &Path) -> std::io::Result<u64> {
    let mut f = std::fs::File::create(path)?;
    let n = copy_chunked(&mut r, &mut f)?;
    f.sync_all()?;
    Ok(n)
}

trait Mode0644 {
    fn mode_0644(&mut self) -> &mut Self;
}

impl Mode0644 for std::fs::OpenOptions {
    fn mode_0644(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o644)
    }
}

async fn remove(
    State(st): State<RemoteState>,
    UrlPath((file_type, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let caller = match admin(&st, &headers, &q).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (t, sector) = match parse(&file_type, &name) {
        Ok(x) => x,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    // A `keep` that does not parse must not become "keep nothing" (every copy deleted).
    let keep: Result<Vec<Uuid>, _> =
        q.get("keep").map(|k| k.split('.').filter(|s| !s.is_empty()).map(str::parse).collect()).unwrap_or(Ok(vec![]));
    let Ok(keep) = keep else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("keep={:?} is not a list of storage path IDs joined with '.': nothing removed", q["keep"]),
        );
    };
    if let Some(worker) = caller.worker.as_deref() {
        if let Some(why) = foreign_removal(&st, worker, sector, t, &keep).await {
            return error(StatusCode::FORBIDDEN, why);
        }
    }
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

impl FetchError {
    /// This node's disk filled up while the copy was written (the source is not at fault).
    pub fn is_no_space(&self) -> bool {
        matches!(self, FetchError::Io { source, .. } if sealing_types::storage::is_no_space(source))
    }
}

/// Fetches sector files from other nodes with the cluster's admin token.
pub struct Fetcher {
    http: reqwest::Client,
    token: lotus_api::SharedToken,
    /// `ParallelFetchLimit`: transfers running at once on this node.
    limit: tokio::sync::Semaphore,
    floor: MinThroughput,
    /// Nodes whose bundle request got an error status, and when: not asked again for
    /// [`NO_BUNDLE_MEMORY`] (a Lotus node answers each with a 500 and an error in its log).
    no_bundles: std::sync::Mutex<HashMap<String, std::time::Instant>>,
}

/// How long a node that answered a bundle request with an error status is fetched from type
/// by type without asking again.
pub const NO_BUNDLE_MEMORY: std::time::Duration = std::time::Duration::from_secs(600);

/// The slowest a source may send: less than `bytes_per_sec` over any `window` fails the
/// fetch (the next source is tried), so a trickling source (a failing disk, a saturated link)
/// cannot hold a task for hours; with the stall timeout this bounds a fetch to about
/// size / rate + window.
#[derive(Clone, Copy, Debug)]
pub struct MinThroughput {
    pub bytes_per_sec: u64,
    pub window: std::time::Duration,
}

/// 1 MiB/s over a minute: a 32GiB sealed file may take up to 9 hours at that pace, which a
/// healthy node beats by far; anything slower is broken.
pub const FETCH_FLOOR: MinThroughput =
    MinThroughput { bytes_per_sec: 1 << 20, window: std::time::Duration::from_secs(60) };

/// A source that sends nothing for this long fails the fetch (it is retried, from another
/// source if there is one): a stalled transfer never holds a task forever.
pub const FETCH_STALL: std::time::Duration = std::time::Duration::from_secs(60);

impl Fetcher {
    pub fn new(token: impl Into<lotus_api::SharedToken>, parallel: usize) -> Self {
        Self::with_stall(token, parallel, FETCH_STALL)
    }

    pub fn with_stall(token: impl Into<lotus_api::SharedToken>, parallel: usize, stall: std::time::Duration) -> Self {
        Self::with_limits(token, parallel, stall, FETCH_FLOOR)
    }

    /// A fetcher with its own stall timeout and minimum throughput (tests).
    pub fn with_limits(
        token: impl Into<lotus_api::SharedToken>,
        parallel: usize,
        stall: std::time::Duration,
        floor: MinThroughput,
    ) -> Self {
        let token = token.into();
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .read_timeout(stall)
            .build()
            .expect("reqwest client without TLS builds");
        let limit = tokio::sync::Semaphore::new(parallel.max(1));
        Fetcher { http, token, limit, floor, no_bundles: Default::default() }
    }

    /// Download `url` to `dest` through `tmp` (in the same filesystem), refusing a source that
    /// announces or sends more than `max` bytes ([`FileType::max_transfer`]); returns the
    /// bytes moved.
    pub async fn fetch(&self, url: &str, tmp: &Path, dest: &Path, max: u64) -> Result<u64, FetchError> {
        self.fetch_from(self.http.get(url).bearer_auth(self.token.get()), url, &[(None, tmp, dest)], max).await
    }

    /// Several file types of `sector` in one request to the node at `base` (a storage path's
    /// base URL, `http://host:port/remote`): each type lands at its `dest` through its `tmp`
    /// as [`Fetcher::fetch`] does, all or none. A node that has no bundle route (a Lotus
    /// node) answers with an error status: the caller then fetches type by type.
    pub async fn fetch_bundle(
        &self,
        base: &str,
        sector: SectorId,
        landings: &[(FileType, PathBuf, PathBuf)],
        max: u64,
    ) -> Result<u64, FetchError> {
        let types: Vec<&str> = landings.iter().map(|(t, ..)| t.name()).collect();
        let url = format!("{}/bundle/{}?types={}", base.trim_end_matches('/'), sector.file_name(), types.join(","));
        let refused_at = self.no_bundles.lock().unwrap_or_else(|e| e.into_inner()).get(base).copied();
        if refused_at.is_some_and(|t| t.elapsed() < NO_BUNDLE_MEMORY) {
            let why = "this node answered a bundle request with an error lately: not asked again yet".to_string();
            return Err(FetchError::Http { url, why });
        }
        let landings: Vec<_> =
            landings.iter().map(|(t, tmp, dest)| (Some(*t), tmp.as_path(), dest.as_path())).collect();
        let r = self.fetch_from(self.http.get(&url).bearer_auth(self.token.get()), &url, &landings, max).await;
        let mut no_bundles = self.no_bundles.lock().unwrap_or_else(|e| e.into_inner());
        match &r {
            Err(FetchError::Status { .. }) => {
                no_bundles.insert(base.to_string(), std::time::Instant::now());
            }
            Ok(_) => {
                no_bundles.remove(base);
            }
            Err(_) => {}
        }
        r
    }

    /// [`Fetcher::fetch`] from a source outside the cluster, with its own headers and without
    /// this node's token (`DownloadSectorData`).
    pub async fn fetch_with_headers(
        &self,
        url: &str,
        tmp: &Path,
        dest: &Path,
        headers: &[(String, String)],
        max: u64,
    ) -> Result<u64, FetchError> {
        let mut req = self.http.get(url);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        self.fetch_from(req, url, &[(None, tmp, dest)], max).await
    }

    /// One request whose body (at most `max` bytes) lands at each `(type, tmp, dest)`: a
    /// single file or cache (no type: the body says which) or, with types, a bundle of them.
    async fn fetch_from(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
        landings: &[(Option<FileType>, &Path, &Path)],
        max: u64,
    ) -> Result<u64, FetchError> {
        let _slot = self.limit.acquire().await.expect("never closed");
        let dest = landings[0].2;
        let ioerr = |source| FetchError::Io { url: url.into(), dest: dest.into(), source };
        let mut partials = vec![];
        for (_, tmp, _) in landings {
            let dir = tmp.parent().expect("fetching/ has a parent");
            tokio::fs::create_dir_all(dir).await.map_err(ioerr)?;
            // Each attempt writes under a name of its own, removed if the attempt fails or is
            // dropped (an aborted task); partials of attempts a crash interrupted go first.
            let base = tmp.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            remove_stale_partials(dir, &base).await.map_err(ioerr)?;
            partials.push(Partial(Some(dir.join(format!("{base}.{}", Uuid::new_v4().simple())))));
        }
        let bundle: Option<Vec<(FileType, PathBuf)>> =
            landings.iter().zip(&partials).map(|((t, ..), p)| t.map(|t| (t, p.0.clone().expect("set")))).collect();
        let tmp = partials[0].0.clone().expect("set");
        let resp = req.send().await.map_err(|e| FetchError::Http { url: url.into(), why: e.to_string() })?;
        let status = resp.status().as_u16();
        if status != 200 {
            let body = resp.text().await.unwrap_or_default();
            return Err(FetchError::Status { url: url.into(), status, body });
        }
        let ctype = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let resp_manifest = resp.headers().get(MANIFEST).and_then(|v| v.to_str().ok()).map(str::to_string);
        let manifest = resp_manifest;
        let announced = resp.content_length();
        let tar = match ctype.as_str() {
            TAR => true,
            OCTET if bundle.is_none() => false,
            _ => return Err(FetchError::Http { url: url.into(), why: format!("unexpected content type {ctype:?}") }),
        };
        if let Some(len) = announced.filter(|len| *len > max) {
            let why = format!("the source announces {len} bytes, more than the {max} this transfer may hold: refused");
            return Err(FetchError::Http { url: url.into(), why });
        }
        if bundle.is_some() && manifest.is_none() {
            return Err(FetchError::Http {
                url: url.into(),
                why: format!("the bundle came without its {MANIFEST} header"),
            });
        }
        // The body is read here and written on a blocking thread, 16 chunks in between.
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let floor = self.floor;
        let pump = async move {
            use futures_util::StreamExt;
            let mut body = resp.bytes_stream();
            let (mut since, mut got, mut total) = (tokio::time::Instant::now(), 0u64, 0u64);
            while let Some(chunk) = body.next().await {
                let mut chunk = chunk.map_err(std::io::Error::other);
                let n = chunk.as_ref().map(|b| b.len() as u64).unwrap_or(0);
                (got, total) = (got + n, total + n);
                if total > max {
                    chunk = Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("the source sent more than the {max} bytes this transfer may hold: refused"),
                    ));
                }
                let waited = since.elapsed();
                if waited >= floor.window {
                    let rate = got as f64 / waited.as_secs_f64();
                    if rate < floor.bytes_per_sec as f64 {
                        chunk = Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!(
                                "the source sent {got} bytes in {:.0} s ({:.0} KiB/s), below the {} KiB/s a fetch needs: \
                                 too slow, given up",
                                waited.as_secs_f64(),
                                rate / 1024.0,
                                floor.bytes_per_sec / 1024
                            ),
                        ));
                    }
                    (since, got) = (tokio::time::Instant::now(), 0);
                }
                let failed = chunk.is_err();
                if tx.send(chunk).await.is_err() || failed {
                    break; // the writer stopped (a refused archive), or the body broke
                }
            }
        };
        let target = tmp.clone();
        let write = tokio::task::spawn_blocking(move || {
            let r = ChunkReader { rx, cur: Default::default() };
            match (&bundle, tar) {
                (Some(slots), _) => unpack_bundle(r, slots, manifest.as_deref().unwrap_or_default()),
                (None, true) => unpack_flat(r, &target, manifest.as_deref()),
                (None, false) => write_synced(r, &target),
            }
        });
        let ((), written) = tokio::join!(pump, write);
        let bytes = written.map_err(|e| ioerr(std::io::Error::other(e)))?.map_err(ioerr)?;
        if let (false, Some(len)) = (tar, announced) {
            if bytes != len {
                let why = format!("the body ended after {bytes} of the {len} bytes announced");
                return Err(ioerr(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, why)));
            }
        }
        for ((_, _, dest), partial) in landings.iter().zip(partials) {
            let ioerr = |source| FetchError::Io { url: url.into(), dest: dest.to_path_buf(), source };
            remove_any(dest).await.map_err(ioerr)?;
            tokio::fs::rename(partial.0.as_deref().expect("set"), dest).await.map_err(ioerr)?;
            partial.keep();
        }
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
            .bearer_auth(self.token.get())
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

/// A fetch attempt's partial file or directory: removed when dropped, unless kept (renamed
/// into place).
struct Partial(Option<PathBuf>);

impl Partial {
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        }
    }
}

/// Remove `<dir>/<base>` and `<dir>/<base>.<attempt>`: what interrupted fetches of this file
/// left (the sector's lock keeps two fetches of one file from running at once).
async fn remove_stale_partials(dir: &Path, base: &str) -> std::io::Result<()> {
    let mut rd = tokio::fs::read_dir(dir).await?;
    while let Some(e) = rd.next_entry().await? {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name == base || name.strip_prefix(base).is_some_and(|rest| rest.starts_with('.')) {
            remove_any(&e.path()).await?;
        }
    }
    Ok(())
}

/// Counts what it reads, and whether the stream ended (a read of nothing for a non-empty
/// buffer): a tar archive read to its end marker never reaches the stream's end.
struct CountingReader<R> {
    inner: R,
    n: u64,
    eof: bool,
}

impl<R: std::io::Read> std::io::Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        if k == 0 && !buf.is_empty() {
            self.eof = true;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, size: u64, kind: tar::EntryType, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        // Written raw: `set_path` itself refuses `..` and absolute paths, a hostile sender does not.
        let bytes = name.as_bytes();
        h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        h.set_size(size);
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_cksum();
        h
    }

    /// An archive of `entries` (name, kind, mode, bytes), with its end marker.
    fn archive(entries: &[(&str, tar::EntryType, u32, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, mode, data) in entries {
            let h = header(name, data.len() as u64, *kind, *mode);
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn regular<'a>(name: &'a str, data: &'static [u8]) -> (&'a str, tar::EntryType, u32, &'static [u8]) {
        (name, tar::EntryType::Regular, 0o644, data)
    }

    /// Every case leaves nothing outside the fetch directory and creates no non-regular entry;
    /// the refused ones fail.
    #[test]
    fn hostile_and_truncated_archives_are_refused() {
        use tar::EntryType::*;
        let good = archive(&[regular("p_aux", b"aux-bytes"), regular("t_aux", b"t")]);
        let refused: Vec<(&str, Vec<u8>)> = vec![
            ("traversal", archive(&[regular("../escape", b"x")])),
            ("deep traversal", archive(&[regular("a/../../escape", b"x")])),
            ("absolute path", archive(&[regular("/tmp/escape", b"x")])),
            ("nested file", archive(&[regular("sub/p_aux", b"x")])),
            ("symlink", archive(&[("link", Symlink, 0o777, b"")])),
            ("hard link", archive(&[("hard", Link, 0o644, b"")])),
            ("char device", archive(&[("dev", Char, 0o644, b"")])),
            ("block device", archive(&[("blk", Block, 0o644, b"")])),
            ("fifo", archive(&[("fifo", Fifo, 0o644, b"")])),
            ("directory", archive(&[("subdir", Directory, 0o755, b"")])),
            ("duplicate", archive(&[regular("p_aux", b"1"), regular("p_aux", b"2")])),
        ];
        let mut cases = 0;
        let root = tempfile::tempdir().unwrap();
        for (what, bytes) in &refused {
            let dir = root.path().join(format!("case-{cases}"));
            let r = unpack_flat(&bytes[..], &dir, None);
            assert!(r.is_err(), "{what}: accepted");
            cases += 1;
        }
        // Truncated at every entry boundary and mid-entry: refused.
        for cut in (1..good.len()).filter(|c| c % 512 == 0 || c % 512 == 100) {
            if good[cut..].iter().all(|b| *b == 0) && cut >= good.len() - 1024 + 512 {
                continue; // inside the end marker's second block: the archive is whole
            }
            let dir = root.path().join(format!("case-{cases}"));
            assert!(unpack_flat(&good[..cut], &dir, None).is_err(), "cut at {cut} of {}: accepted", good.len());
            cases += 1;
        }
        // A whole archive whose manifest names another set of files: refused.
        for m in ["p_aux=9", "p_aux=9;t_aux=1;x=1", "p_aux=8;t_aux=1"] {
            let dir = root.path().join(format!("case-{cases}"));
            assert!(unpack_flat(&good[..], &dir, Some(m)).is_err(), "manifest {m}: accepted");
            cases += 1;
        }
        // Modes 0777 and 0000 are written as 0644.
        for mode in [0o777, 0o000] {
            let dir = root.path().join(format!("case-{cases}"));
            unpack_flat(&archive(&[("p_aux", Regular, mode, b"aux")])[..], &dir, None).unwrap();
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(dir.join("p_aux")).unwrap().permissions().mode() & 0o777, 0o644);
            cases += 1;
        }
        // The whole archive, with and without its manifest.
        for m in [None, Some("p_aux=9;t_aux=1")] {
            let dir = root.path().join(format!("case-{cases}"));
            unpack_flat(&good[..], &dir, m).unwrap();
            assert_eq!(std::fs::read(dir.join("p_aux")).unwrap(), b"aux-bytes");
            cases += 1;
        }
        // Nothing anywhere but regular files directly in each case's directory.
        let mut outside = vec![];
        for e in std::fs::read_dir(root.path()).unwrap().flatten() {
            assert!(e.file_type().unwrap().is_dir(), "{:?} outside a case directory", e.path());
            for f in std::fs::read_dir(e.path()).unwrap().flatten() {
                if !f.file_type().unwrap().is_file() {
                    outside.push(f.path());
                }
            }
        }
        assert!(outside.is_empty(), "non-regular entries created: {outside:?}");
        assert!(!root.path().parent().unwrap().join("escape").exists());
        assert!(!std::path::Path::new("/tmp/escape").exists());
        println!("{cases} archive cases");
        assert!(cases >= 20);
    }

    /// A bundle lands each type only where it belongs: a file type's entry under its own name,
    /// a cache's files one level under the cache's name, every type asked for present, the
    /// manifest matched, the archive whole; anything else refused with nothing outside the
    /// slots.
    #[test]
    fn hostile_and_truncated_bundles_are_refused() {
        use tar::EntryType::*;
        let root = tempfile::tempdir().unwrap();
        let good_entries = [regular("sealed", b"sealed-bytes"), regular("cache/p_aux", b"aux")];
        let good = archive(&good_entries);
        let good_manifest = "sealed=12;cache/p_aux=3";
        let refused: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "a type not asked for",
                archive(&[regular("unsealed", b"x"), regular("sealed", b"s")]),
                "unsealed=1;sealed=1",
            ),
            ("traversal from the cache", archive(&[regular("sealed", b"s"), regular("cache/../escape", b"x")]), ""),
            ("nested in the cache", archive(&[regular("sealed", b"s"), regular("cache/sub/x", b"x")]), ""),
            ("a file type as a directory", archive(&[regular("sealed/x", b"x")]), "sealed/x=1"),
            ("a cache as a file", archive(&[regular("sealed", b"s"), regular("cache", b"x")]), "sealed=1;cache=1"),
            ("absolute", archive(&[regular("/sealed", b"s")]), "/sealed=1"),
            ("parent", archive(&[regular("../sealed", b"s")]), "../sealed=1"),
            ("symlink", archive(&[regular("sealed", b"s"), ("cache/link", Symlink, 0o777, b"")]), ""),
            ("hard link", archive(&[("sealed", Link, 0o644, b"")]), ""),
            ("duplicate", archive(&[regular("sealed", b"1"), regular("sealed", b"2")]), "sealed=1;sealed=1"),
            ("the sealed file missing", archive(&[regular("cache/p_aux", b"aux")]), "cache/p_aux=3"),
            ("a manifest naming another set", good.clone(), "sealed=12"),
            ("a manifest with other sizes", good.clone(), "sealed=11;cache/p_aux=3"),
        ];
        let mut cases = 0;
        let slots = |k: usize| {
            let d = root.path().join(format!("case-{k}"));
            vec![(FileType::Sealed, d.join("sealed")), (FileType::Cache, d.join("cache"))]
        };
        for (what, bytes, manifest) in &refused {
            assert!(unpack_bundle(&bytes[..], &slots(cases), manifest).is_err(), "{what}: accepted");
            cases += 1;
        }
        for cut in (1..good.len()).filter(|c| c % 512 == 0 || c % 512 == 100) {
            if good[cut..].iter().all(|b| *b == 0) && cut >= good.len() - 1024 + 512 {
                continue; // inside the end marker's second block: the archive is whole
            }
            assert!(unpack_bundle(&good[..cut], &slots(cases), good_manifest).is_err(), "cut at {cut}: accepted");
            cases += 1;
        }
        let s = slots(cases);
        unpack_bundle(&good[..], &s, good_manifest).expect("the whole bundle");
        assert_eq!(std::fs::read(&s[0].1).unwrap(), b"sealed-bytes");
        assert_eq!(std::fs::read(s[1].1.join("p_aux")).unwrap(), b"aux");
        cases += 1;
        // Nothing but the slots' files: each case directory holds `sealed` (a file, if any)
        // and `cache/` with plain files, and nothing escaped.
        for case in std::fs::read_dir(root.path()).unwrap().flatten() {
            for e in std::fs::read_dir(case.path()).unwrap().flatten() {
                let (name, ft) = (e.file_name().into_string().unwrap(), e.file_type().unwrap());
                match name.as_str() {
                    "sealed" => assert!(ft.is_file(), "{:?}", e.path()),
                    "cache" => {
                        assert!(ft.is_dir(), "{:?}", e.path());
                        for f in std::fs::read_dir(e.path()).unwrap().flatten() {
                            assert!(f.file_type().unwrap().is_file(), "a non-regular entry {:?}", f.path());
                        }
                    }
                    _ => panic!("{:?} is outside the slots", e.path()),
                }
            }
        }
        assert!(!root.path().join("escape").exists());
        println!("{cases} bundle cases");
        assert!(cases >= 15);
    }

    /// A source that stops sending fails the fetch after the stall time, and neither a failed
    /// nor a dropped attempt leaves a partial file; the next attempt starts clean.
    #[tokio::test]
    async fn a_stalled_or_dropped_fetch_fails_and_leaves_nothing() {
        use axum::routing::get;
        let app = axum::Router::new()
            .route(
                "/stall",
                get(|| async {
                    let first = futures_util::stream::once(async { Ok::<_, std::io::Error>(vec![7u8; 1000]) });
                    let never = futures_util::stream::pending();
                    use futures_util::StreamExt;
                    ([(header::CONTENT_TYPE, OCTET)], Body::from_stream(first.chain(never)))
                }),
            )
            .route("/ok", get(|| async { ([(header::CONTENT_TYPE, OCTET)], vec![1u8; 5000]) }))
            .route(
                "/trickle",
                get(|| async {
                    let drip = futures_util::stream::unfold((), |()| async {
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        Some((Ok::<_, std::io::Error>(vec![3u8; 100]), ()))
                    });
                    ([(header::CONTENT_TYPE, OCTET)], Body::from_stream(drip))
                }),
            );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        let d = tempfile::tempdir().unwrap();
        let fetching = d.path().join("sealed/fetching");
        std::fs::create_dir_all(&fetching).unwrap();
        // A partial a crash left behind.
        std::fs::write(fetching.join("s-t01000-1.deadbeef"), b"old").unwrap();
        let (tmp, dest) = (fetching.join("s-t01000-1"), d.path().join("sealed/s-t01000-1"));
        let f = Fetcher::with_stall("t".to_string(), 2, std::time::Duration::from_millis(300));
        let floor = MinThroughput { bytes_per_sec: 1 << 20, window: std::time::Duration::from_millis(300) };
        let picky = Fetcher::with_limits("t".to_string(), 2, std::time::Duration::from_secs(10), floor);
        let t0 = std::time::Instant::now();
        let e = f.fetch(&format!("http://{addr}/stall"), &tmp, &dest, u64::MAX).await.unwrap_err();
        assert!(t0.elapsed() < std::time::Duration::from_secs(5), "the stall failed the fetch: {e}");
        assert_eq!(std::fs::read_dir(&fetching).unwrap().count(), 0, "no partial left, the stale one removed");
        // A source that trickles (100 bytes every 20 ms, far below 1 MiB/s) fails at the floor,
        // long before the stall timeout; a source at full speed passes it.
        let t0 = std::time::Instant::now();
        let e = picky.fetch(&format!("http://{addr}/trickle"), &tmp, &dest, u64::MAX).await.unwrap_err().to_string();
        assert!(e.contains("too slow") && e.contains("KiB/s"), "{e}");
        assert!(t0.elapsed() < std::time::Duration::from_secs(3), "failed at the floor, not the stall");
        assert_eq!(std::fs::read_dir(&fetching).unwrap().count(), 0);
        assert_eq!(picky.fetch(&format!("http://{addr}/ok"), &tmp, &dest, u64::MAX).await.unwrap(), 5000);
        std::fs::remove_file(&dest).unwrap();
        assert!(!dest.exists());
        // Dropped mid-transfer (an aborted task): nothing left either.
        let url = format!("http://{addr}/stall");
        let slow = f.fetch(&url, &tmp, &dest, u64::MAX);
        let _ = tokio::time::timeout(std::time::Duration::from_millis(100), slow).await;
        assert_eq!(std::fs::read_dir(&fetching).unwrap().count(), 0);
        assert_eq!(f.fetch(&format!("http://{addr}/ok"), &tmp, &dest, u64::MAX).await.unwrap(), 5000);
        assert_eq!(std::fs::read(&dest).unwrap(), vec![1u8; 5000]);
    }

    /// Files and caches of several 1 MiB chunks (and an odd tail) arrive byte for byte through
    /// the chunked sender and receiver, the file with its length announced.
    #[tokio::test]
    async fn multi_chunk_files_and_caches_arrive_whole() {
        use axum::routing::get;
        let src = tempfile::tempdir().unwrap();
        let file = src.path().join("sealed");
        let data: Vec<u8> = (0..(3 * CHUNK + 12345)).map(|i| (i * 31 % 251) as u8).collect();
        std::fs::write(&file, &data).unwrap();
        let cache = src.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        std::fs::write(cache.join("p_aux"), b"aux").unwrap();
        std::fs::write(cache.join("tree-r-last-0.dat"), &data[..2 * CHUNK + 7]).unwrap();
        let (f2, c2) = (file.clone(), cache.clone());
        let app = axum::Router::new()
            .route("/file", get(move || async move { file_stream(f2) }))
            .route("/cache", get(move || async move { tar_stream(c2) }));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        let resp = reqwest::get(format!("http://{addr}/file")).await.unwrap();
        assert_eq!(resp.content_length(), Some(data.len() as u64));
        let d = tempfile::tempdir().unwrap();
        let f = Fetcher::new("t".to_string(), 2);
        let (tmp, dest) = (d.path().join("fetching/s"), d.path().join("s"));
        assert_eq!(f.fetch(&format!("http://{addr}/file"), &tmp, &dest, u64::MAX).await.unwrap(), data.len() as u64);
        assert!(std::fs::read(&dest).unwrap() == data, "the file arrived byte for byte");
        let (tmp, dest) = (d.path().join("fetching/c"), d.path().join("c"));
        f.fetch(&format!("http://{addr}/cache"), &tmp, &dest, u64::MAX).await.unwrap();
        assert_eq!(std::fs::read(dest.join("p_aux")).unwrap(), b"aux");
        assert!(std::fs::read(dest.join("tree-r-last-0.dat")).unwrap() == data[..2 * CHUNK + 7]);
        assert_eq!(std::fs::read_dir(d.path().join("fetching")).unwrap().count(), 0, "no partial left");
    }

    /// A source that sends ten times what a sector's file type can hold (a sealed file, a
    /// cache archive, a bundle of both, for a 2KiB sector) is refused, announced or not, and
    /// nothing of it stays; the same transfers within their bounds arrive.
    #[tokio::test]
    async fn a_transfer_larger_than_its_sector_allows_is_refused() {
        use axum::routing::get;
        let size = 2048;
        let src = tempfile::tempdir().unwrap();
        let (small, large) = (src.path().join("small"), src.path().join("large"));
        let file_max = FileType::Sealed.max_transfer(size);
        let cache_max = FileType::Cache.max_transfer(size);
        for (root, scale) in [(&small, 1), (&large, 10)] {
            std::fs::create_dir_all(root.join("cache")).unwrap();
            std::fs::write(root.join("sealed"), vec![7u8; (scale * file_max - 4096) as usize]).unwrap();
            for k in 0..10 {
                let part = (scale * cache_max - (64 << 10)) / 10;
                std::fs::write(root.join("cache").join(format!("layer-{k}")), vec![k as u8; part as usize]).unwrap();
            }
        }
        let serve = |root: PathBuf| {
            axum::Router::new()
                .route(
                    "/sealed",
                    get({
                        let f = root.join("sealed");
                        move || async move { file_stream(f) }
                    }),
                )
                .route(
                    "/cache",
                    get({
                        let c = root.join("cache");
                        move || async move { tar_stream(c) }
                    }),
                )
        };
        let app = axum::Router::new().nest("/small", serve(small)).nest("/large", serve(large));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        let d = tempfile::tempdir().unwrap();
        let f = Fetcher::new("t".to_string(), 2);
        for (what, max) in [("sealed", file_max), ("cache", cache_max)] {
            let (tmp, dest) = (d.path().join("fetching").join(what), d.path().join(what));
            let e = f.fetch(&format!("http://{addr}/large/{what}"), &tmp, &dest, max).await.unwrap_err().to_string();
            assert!(e.contains(&format!("more than the {max}")) && e.contains("refused"), "{what}: {e}");
            assert!(!dest.exists(), "{what}: nothing accepted");
            assert_eq!(std::fs::read_dir(d.path().join("fetching")).unwrap().count(), 0, "{what}: no partial left");
            f.fetch(&format!("http://{addr}/small/{what}"), &tmp, &dest, max).await.expect("within its bound");
        }
        println!("2KiB sector: a file may carry {file_max} bytes, a cache {cache_max}");
    }

    /// The sender fails the stream when a file cannot be read, instead of ending a short
    /// archive cleanly; the receiver's fetch fails and keeps nothing.
    #[tokio::test]
    async fn a_file_the_sender_cannot_read_fails_the_transfer() {
        let src = tempfile::tempdir().unwrap();
        let cache = src.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        std::fs::write(cache.join("a_ok"), vec![1u8; 4096]).unwrap();
        let resp = tar_stream(cache.clone());
        assert_eq!(resp.headers().get(MANIFEST).unwrap(), "a_ok=4096");
        assert!(axum::body::to_bytes(resp.into_body(), usize::MAX).await.is_ok(), "a readable cache streams");
        // A file listed but gone when its turn comes (removed meanwhile, EMFILE, EACCES).
        let entry = |name: &str, len| Entry { name: name.into(), path: cache.join(name), len };
        let files = vec![entry("a_ok", 4096), entry("b_gone", 4096)];
        let body = axum::body::to_bytes(tar_of("the cache".into(), files).into_body(), usize::MAX).await;
        assert!(body.is_err(), "the body ends with an error, not a clean short archive");
        // A file that shrank since the listing: an error too, not a padded entry.
        let files = vec![entry("a_ok", 8192)];
        let body = axum::body::to_bytes(tar_of("the cache".into(), files).into_body(), usize::MAX).await;
        assert!(body.is_err(), "a file shorter than listed fails the stream");
    }
}
