//! `lotus-miner fetch-params` / `lotus-worker fetch-params`: make sure the proof parameters for
//! a sector size are in the parameter cache.
//!
//! - 2KiB and 8MiB: generated locally from a fixed seed (devnet only; see
//!   `sealing_proofs::params`).
//! - 512MiB and up: downloaded from an IPFS gateway (`IPFS_GATEWAY`, default Lotus's
//!   `https://proofs.filecoin.io/ipfs/`), each file checked against the digest in the proofs
//!   library's bundled manifest before it is moved into place.

use sealing_proofs::params::ManifestEntry;
use sealing_types::SectorSize;
use std::path::{Path, PathBuf};

pub const DEFAULT_GATEWAY: &str = "https://proofs.filecoin.io/ipfs/";

/// `FIL_PROOFS_PARAMETER_CACHE`, or the proofs library's default.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("FIL_PROOFS_PARAMETER_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/filecoin-proof-parameters"))
}

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("cannot download {name} from {url}: {why}. Check the network, or set IPFS_GATEWAY to a reachable gateway, or copy the parameter files into {cache}")]
    Unreachable { name: String, url: String, why: String, cache: String },
    #[error("{name} from {url} does not match the manifest (digest {got}, expected {want}); nothing was written. The gateway served wrong data: try another IPFS_GATEWAY")]
    Digest { name: String, url: String, got: String, want: String },
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
}

fn digest_of(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = blake2b_simd::Params::new().to_state();
    std::io::copy(&mut f, &mut h)?;
    Ok(h.finalize().to_hex()[..32].to_string())
}

/// A file already verified keeps a `<name>.verified` note of its size and mtime, so a large
/// parameter file is hashed once, not on every run.
fn verified_note(path: &Path) -> Option<String> {
    let md = std::fs::metadata(path).ok()?;
    let mtime = md.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
    Some(format!("{} {mtime}", md.len()))
}

fn is_valid(path: &Path, e: &ManifestEntry) -> bool {
    let note = path.with_file_name(format!("{}.verified", e.name));
    if let Some(n) = verified_note(path) {
        if std::fs::read_to_string(&note).ok().as_deref() == Some(n.as_str()) {
            return true;
        }
        if digest_of(path).ok().as_deref() == Some(e.digest.as_str()) {
            let _ = std::fs::write(&note, n);
            return true;
        }
    }
    false
}

/// Download every entry that is missing or invalid in `cache` from `gateway`; returns the
/// files and how many were downloaded. Each file streams into `<name>.partial`, hashed on the
/// way, and is renamed into place only when its digest matches.
pub async fn download(
    entries: &[ManifestEntry],
    cache: &Path,
    gateway: &str,
    progress: bool,
) -> Result<(Vec<PathBuf>, usize), DownloadError> {
    use futures_util::StreamExt;
    use std::io::Write;
    let io = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| DownloadError::Io { what, path, source }
    };
    std::fs::create_dir_all(cache).map_err(io("creating the parameter cache", cache))?;
    let client = reqwest::Client::new();
    let mut files = vec![];
    let mut fetched = 0;
    for e in entries {
        let path = cache.join(&e.name);
        files.push(path.clone());
        if is_valid(&path, e) {
            continue;
        }
        let url = format!("{}/{}", gateway.trim_end_matches('/'), e.cid);
        let unreachable = |why: String| DownloadError::Unreachable {
            name: e.name.clone(),
            url: url.clone(),
            why,
            cache: cache.display().to_string(),
        };
        let resp = client.get(&url).send().await.map_err(|err| unreachable(err.to_string()))?;
        if !resp.status().is_success() {
            return Err(unreachable(format!("HTTP {}", resp.status())));
        }
        let bar = if progress {
            let b = indicatif::ProgressBar::new(resp.content_length().unwrap_or(0));
            b.set_style(
                indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} {eta}")
                    .expect("valid template")
                    .progress_chars("#>-"),
            );
            b.set_message(e.name.chars().take(40).collect::<String>());
            b
        } else {
            indicatif::ProgressBar::hidden()
        };
        let partial = cache.join(format!("{}.partial", e.name));
        let mut out = std::io::BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(&partial).map_err(io("creating", &partial))?,
        );
        let mut h = blake2b_simd::Params::new().to_state();
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|err| unreachable(err.to_string()))?;
            h.update(&chunk);
            out.write_all(&chunk).map_err(io("writing", &partial))?;
            bar.inc(chunk.len() as u64);
        }
        out.flush().map_err(io("writing", &partial))?;
        drop(out);
        bar.finish_and_clear();
        let got = h.finalize().to_hex()[..32].to_string();
        if got != e.digest {
            let _ = std::fs::remove_file(&partial);
            return Err(DownloadError::Digest { name: e.name.clone(), url, got, want: e.digest.clone() });
        }
        std::fs::rename(&partial, &path).map_err(io("moving into place", &path))?;
        if let Some(n) = verified_note(&path) {
            let _ = std::fs::write(cache.join(format!("{}.verified", e.name)), n);
        }
        fetched += 1;
    }
    Ok((files, fetched))
}

/// Generate (2KiB, 8MiB; devnet only) or download (512MiB and up) whatever is missing and
/// print the files. Call it before any other thread starts: see `sealing_proofs::params::ensure`.
pub fn fetch(size: &str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let size: SectorSize = size.parse()?;
    let cache = cache_dir();
    let start = std::time::Instant::now();
    let files = if size.0 <= SectorSize::MIB8.0 {
        crate::logging::quiet_proof_libraries();
        let progress = Progress::new(size);
        let files = sealing_proofs::params::ensure(size, &cache, &|what| progress.step(what))?;
        progress.done();
        files
    } else {
        let gateway = std::env::var("IPFS_GATEWAY").unwrap_or_else(|_| DEFAULT_GATEWAY.to_string());
        let entries = sealing_proofs::params::manifest(size);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (files, fetched) = rt.block_on(download(&entries, &cache, &gateway, true))?;
        eprintln!("{fetched} of {} files downloaded from {gateway}", files.len());
        files
    };
    for f in files {
        println!("{}", f.display());
    }
    eprintln!("parameters for {size} sectors ready in {} ({:.0} s)", cache.display(), start.elapsed().as_secs_f64());
    Ok(())
}

/// How often a running generation says how far it is.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Progress of a parameter generation on stderr: each circuit as it starts (with the time it
/// took on a 2-core machine) and ends, and every [`PROGRESS_EVERY`] in between its elapsed
/// time, so twelve silent minutes never look like a hang.
struct Progress {
    size: SectorSize,
    current: std::sync::Arc<std::sync::Mutex<Option<Step>>>,
    ticking: std::sync::Once,
}

struct Step {
    what: String,
    started: std::time::Instant,
    expected: Option<std::time::Duration>,
}

fn human(d: std::time::Duration) -> String {
    humantime::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string()
}

impl Progress {
    fn new(size: SectorSize) -> Self {
        Progress { size, current: Default::default(), ticking: std::sync::Once::new() }
    }

    fn finish_current(cur: &mut Option<Step>) {
        if let Some(s) = cur.take() {
            eprintln!("  {}: done in {}", s.what, human(s.started.elapsed()));
        }
    }

    fn step(&self, what: &str) {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        Self::finish_current(&mut cur);
        let expected = sealing_proofs::params::measured(self.size, what);
        let about = expected.map(|d| format!(", about {} on 2 cores", human(d))).unwrap_or_default();
        eprintln!("generating {what} parameters for {} sectors (devnet only{about})...", self.size);
        *cur = Some(Step { what: what.to_string(), started: std::time::Instant::now(), expected });
        drop(cur);
        // The ticker starts with the first circuit, once the proofs library's cache variable
        // is set (no thread may run while it is); it only sleeps and prints.
        self.ticking.call_once(|| {
            let current = self.current.clone();
            std::thread::spawn(move || loop {
                std::thread::sleep(PROGRESS_EVERY);
                let cur = current.lock().unwrap_or_else(|e| e.into_inner());
                let Some(s) = cur.as_ref() else { return };
                let of = s.expected.map(|e| format!(" of about {}", human(e))).unwrap_or_default();
                eprintln!("  {}: {} elapsed{of}", s.what, human(s.started.elapsed()));
            });
        });
    }

    fn done(&self) {
        Self::finish_current(&mut self.current.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn entry(name: &str, content: &[u8]) -> ManifestEntry {
        let mut h = blake2b_simd::Params::new().to_state();
        h.update(content);
        ManifestEntry {
            name: name.into(),
            cid: format!("Qm{name}"),
            digest: h.finalize().to_hex()[..32].to_string(),
            sector_size: 536870912,
        }
    }

    /// A gateway on loopback serving `content` for every CID, counting requests.
    async fn gateway(content: Vec<u8>) -> (String, Arc<AtomicUsize>) {
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let app = axum::Router::new().route(
            "/ipfs/{cid}",
            axum::routing::get(move || {
                h.fetch_add(1, Ordering::SeqCst);
                let c = content.clone();
                async move { c }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        (format!("http://{addr}/ipfs/"), hits)
    }

    #[tokio::test]
    async fn downloads_verify_and_are_idempotent() {
        let d = tempfile::tempdir().unwrap();
        let data = vec![7u8; 300_000];
        let (gw, hits) = gateway(data.clone()).await;
        let e = entry("v28-test.params", &data);
        let (files, n) = download(std::slice::from_ref(&e), d.path(), &gw, false).await.unwrap();
        assert_eq!(n, 1);
        assert_eq!(std::fs::read(&files[0]).unwrap(), data);
        let (_, n) = download(std::slice::from_ref(&e), d.path(), &gw, false).await.unwrap();
        assert_eq!((n, hits.load(Ordering::SeqCst)), (0, 1), "present and valid: nothing to do");
        // A corrupted file is replaced.
        std::fs::write(&files[0], b"garbage").unwrap();
        let (_, n) = download(std::slice::from_ref(&e), d.path(), &gw, false).await.unwrap();
        assert_eq!(n, 1);
        assert_eq!(std::fs::read(&files[0]).unwrap(), data);
    }

    #[tokio::test]
    async fn wrong_data_and_no_network_are_clear_errors() {
        let d = tempfile::tempdir().unwrap();
        let (gw, _) = gateway(b"not the parameters".to_vec()).await;
        let e = entry("v28-test.vk", b"the real parameters");
        let err = download(std::slice::from_ref(&e), d.path(), &gw, false).await.unwrap_err().to_string();
        assert!(err.contains("does not match the manifest") && err.contains("IPFS_GATEWAY"), "{err}");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0, "nothing left in the cache");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err =
            download(&[e], d.path(), &format!("http://127.0.0.1:{port}/ipfs"), false).await.unwrap_err().to_string();
        assert!(err.contains("cannot download v28-test.vk") && err.contains("set IPFS_GATEWAY"), "{err}");
    }

    #[test]
    fn the_manifest_lists_published_files_per_size() {
        let m = sealing_proofs::params::manifest(SectorSize::GIB32);
        assert!(m.iter().any(|e| e.name.contains("stacked-proof-of-replication") && e.name.ends_with(".params")));
        assert!(m.iter().all(|e| e.digest.len() == 32 && e.cid.starts_with("Qm")));
        assert_eq!(sealing_proofs::params::manifest(SectorSize::MIB512).len(), 8);
    }
}
