//! A disk that fills up mid-write, at every place a node writes sector data: a fetch of a
//! sealed file and of a cache directory from another node, a move across filesystems, a proof
//! process writing its output (the real proofs library and the mock backend), and the atomic
//! writer that stores results and repo files. Each runs on a small tmpfs the test mounts, whose
//! free space passes the allocation's estimate while the bytes really written do not fit, so
//! the write itself meets ENOSPC. At each site: the task fails temporarily (code 102, which
//! never gives a sector up), the source stays whole, no partial file is left, and once the
//! filesystem is grown the same call completes.
//!
//! Mounting needs root (CI and this project's machines run as root); elsewhere each test says
//! it was skipped.

mod common;

use common::*;
use lotus_api::types::CallError;
use sealing_exec::remote::Fetcher;
use sealing_exec::{Executor, LocalStore};
use sealing_types::{FileType, FileTypes, PathType};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A tmpfs of `size` bytes mounted on a fresh directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (and a line saying so) where this process may not mount.
    fn mount(size: u64) -> Option<Tmpfs> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: mounting a small tmpfs needs root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success(), "mount -t tmpfs on {} failed as root", dir.path().display());
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Free space, the operator's way: the filesystem grows.
    fn grow(&self, size: u64) {
        let st = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(st.success(), "remounting {} larger failed", self.path().display());
    }

    /// Fill the filesystem with a file until `free` bytes are left (a multiple of the page
    /// size); the file, to remove when the test frees the space.
    fn fill_leaving(&self, free: u64) -> PathBuf {
        use std::io::Write;
        let filler = self.path().join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let page = vec![0u8; 4096];
        while f.write_all(&page).is_ok() {}
        let len = f.metadata().unwrap().len() / 4096 * 4096;
        f.set_len(len.saturating_sub(free)).unwrap();
        filler
    }

    /// Every file under the mount, as paths relative to it (what a failed write left; empty
    /// directories such as `sealed/fetching` hold no data and are not counted).
    fn entries(&self) -> Vec<String> {
        fn walk(root: &Path, d: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(root, &p, out);
                } else {
                    out.push(p.strip_prefix(root).unwrap().display().to_string());
                }
            }
        }
        let mut out = vec![];
        walk(self.path(), self.path(), &mut out);
        out.sort();
        out
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

fn assert_no_space(e: &CallError, doing: &str) {
    assert_eq!(e.code, CallError::TEMP_ALLOCATE_SPACE, "{doing}: a full disk fails temporarily: {e}");
    assert!(e.is_temporary());
    assert!(e.message.contains("free space"), "{doing}: the error says what to do: {e}");
}

/// A fetch from another node, in move mode (the source is deleted once the copy is here):
/// the sealed file (one stream) and the cache directory (an archive) each meet a full disk
/// mid-write. The source keeps both, nothing partial stays here, and after the disk is grown
/// the same acquisition lands both byte for byte and only then removes the source.
#[tokio::test]
async fn a_fetch_onto_a_full_disk_keeps_the_source_and_completes_once_space_is_freed() {
    let Some(fs) = Tmpfs::mount(64 * 1024) else { return };
    let src_dir = tempfile::tempdir().unwrap();
    init(src_dir.path(), true, true);
    let files = write_sector_files(src_dir.path());

    let (base, src_path, requests) = source(src_dir.path(), false).await;

    init(fs.path(), true, true);
    let here = Arc::new(LocalStore::new(String::new()));
    let here_id = here.open_path(fs.path()).unwrap().id();
    let index = Arc::new(TestIndex::default());
    index.holds(src_path, &base, &[FileType::Sealed, FileType::Cache]);
    let fetcher = Fetcher::new("test-token".to_string(), 2);
    let exec = Executor::new(here, index.clone(), fetcher, Arc::new(NoReturns)).unwrap();
    let both = FileTypes::of(&[FileType::Sealed, FileType::Cache]);
    // The sealed file's 6 KiB would fit on the empty filesystem: one page is left for it
    // (more than its 2 KiB estimate).
    for (types, what, leave) in [
        (FileTypes::of(&[FileType::Sealed]), "the sealed file", Some(4096)),
        (FileTypes::of(&[FileType::Cache]), "the cache", None),
        (both, "both in one request", None),
    ] {
        let filler = leave.map(|free| fs.fill_leaving(free));
        let before = fs.entries();
        let e = exec.acquire(SECTOR, types, PathType::Sealing, true).await.unwrap_err();
        println!("fetching {what} onto a full disk: {e}");
        assert_no_space(&e, what);
        assert!(e.message.contains(&fs.path().display().to_string()), "the error names the full path: {e}");
        assert_whole(src_dir.path(), &files, "the source");
        assert_eq!(fs.entries(), before, "nothing partial is left after {what}");
        assert!(index.declared.lock().unwrap().is_empty(), "nothing is declared");
        if let Some(f) = filler {
            std::fs::remove_file(f).unwrap();
        }
    }

    let bundles = |r: &[String]| r.iter().filter(|l| l.starts_with("GET /remote/bundle/")).count();
    assert_eq!(bundles(&requests.lock().unwrap()), 1, "both types were asked for in one request");
    assert_eq!(
        requests.lock().unwrap().len(),
        3,
        "a full disk ends the acquisition: no type-by-type retry after it: {:?}",
        requests.lock().unwrap()
    );

    fs.grow(4 << 20);
    let got = exec.acquire(SECTOR, both, PathType::Sealing, true).await;
    let got = got.expect("once space is freed the same acquisition completes");
    assert_eq!(got.len(), 2);
    assert_whole(fs.path(), &files, "the copy");
    assert_eq!(*index.declared.lock().unwrap(), vec![(here_id, both)], "both declared here at once");
    for (rel, _) in &files {
        assert!(!src_dir.path().join(rel).exists(), "moved: the source's {rel} is removed after the copy");
    }
}

/// A move from a sealing path on the disk into a store path on another, full filesystem
/// (EXDEV: a copy, not a rename): the copy fails mid-write, the source stays whole in the
/// sealing path, no temporary copy is left in the store; once the store is grown the move
/// completes and the source is gone.
#[tokio::test]
async fn a_move_across_filesystems_onto_a_full_disk_keeps_the_source() {
    let Some(fs) = Tmpfs::mount(64 * 1024) else { return };
    let seal_dir = tempfile::tempdir().unwrap();
    init(seal_dir.path(), true, false);
    let files = write_sector_files(seal_dir.path());
    init(fs.path(), false, true);
    let here = Arc::new(LocalStore::new(String::new()));
    here.open_path(seal_dir.path()).unwrap();
    here.open_path(fs.path()).unwrap();
    let index = Arc::new(TestIndex::default());
    let exec = Executor::new(here, index.clone(), Fetcher::new("t".to_string(), 1), Arc::new(NoReturns)).unwrap();
    // The sealed file moves first: one page is left for it, so that its copy meets the full disk.
    let filler = fs.fill_leaving(4096);
    let before = fs.entries();
    let types = FileTypes::of(&[FileType::Sealed, FileType::Cache]);

    let e = exec.acquire(SECTOR, types, PathType::Storage, true).await.unwrap_err();
    println!("moving onto a full disk: {e}");
    assert_no_space(&e, "the move");
    assert_whole(seal_dir.path(), &files, "the sealing path");
    assert_eq!(fs.entries(), before, "no temporary copy is left in the store");

    std::fs::remove_file(filler).unwrap();
    fs.grow(4 << 20);
    let got = exec.acquire(SECTOR, types, PathType::Storage, true).await.expect("the move completes");
    assert!(got.values().all(|p: &PathBuf| p.starts_with(fs.path())), "{got:?}");
    assert_whole(fs.path(), &files, "the store");
    for (rel, _) in &files {
        assert!(!seal_dir.path().join(rel).exists(), "the source's {rel} is removed after the copy");
    }
}

/// A proof process writing its output onto a full disk (AddPiece's unsealed file, through the
/// real proofs library and through the mock backend): the job fails with code 102, and runs
/// once space is freed.
#[test]
fn a_proof_output_onto_a_full_disk_fails_temporarily() {
    use sealing_exec::child::{run, Job, Paths, ProofJob};
    let Some(fs) = Tmpfs::mount(64 * 1024) else { return };
    // Fill the filesystem to its last byte.
    let filler = fs.path().join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        while f.write_all(&[0]).is_ok() {}
    }
    let job = |backend, unsealed: &Path| Job {
        proof: SECTOR.proof_type,
        miner: SECTOR.id.miner,
        sector: SECTOR.id.number,
        paths: Paths { unsealed: unsealed.to_path_buf(), ..Paths::default() },
        op: ProofJob::AddPiece { piece: None, size: 2032 },
        backend,
        mock_duration: std::time::Duration::ZERO,
    };
    let backends = [sealing_proofs::Backend::Real, sealing_proofs::Backend::Mock];
    let unsealed = |backend| fs.path().join(format!("unsealed-{backend:?}"));
    for backend in backends {
        let e = run(job(backend, &unsealed(backend))).expect_err("no room for the unsealed file").0;
        println!("AddPiece ({backend:?}) onto a full disk: {e}");
        assert_no_space(&e, &format!("AddPiece ({backend:?})"));
        let _ = std::fs::remove_file(unsealed(backend));
    }
    std::fs::remove_file(&filler).unwrap();
    for backend in backends {
        assert!(run(job(backend, &unsealed(backend))).is_ok(), "AddPiece ({backend:?}) runs once space is freed");
    }
}

/// The atomic writer (stored results, repo files, `sectorstore.json`) on a full disk: an
/// error, the previous contents untouched, no temporary file left.
#[test]
fn an_atomic_write_onto_a_full_disk_keeps_the_old_file() {
    use sealing_exec::store::write_atomic;
    let Some(fs) = Tmpfs::mount(64 * 1024) else { return };
    let p = fs.path().join("result.json");
    write_atomic(&p, b"the result before", 0o600).unwrap();
    let e = write_atomic(&p, &vec![b'x'; 256 * 1024], 0o600).unwrap_err();
    println!("an atomic write onto a full disk: {e}");
    assert!(sealing_types::storage::is_no_space(&e.source), "{e}");
    assert_eq!(std::fs::read(&p).unwrap(), b"the result before");
    assert_eq!(fs.entries(), vec!["result.json".to_string()], "no temporary file left");
    fs.grow(1 << 20);
    write_atomic(&p, &vec![b'x'; 256 * 1024], 0o600).unwrap();
    assert_eq!(std::fs::metadata(&p).unwrap().len(), 256 * 1024);
}
