//! Proving on a node (reference §3.11 worker side, §5.5 `/remote/vanilla/single`): the
//! challenged sectors' vanilla proofs are read where the sectors are — this node's paths, or
//! the node the index names, over HTTP — and the SNARK runs in a proof process of this node.
//! A WindowPoSt skips sectors that cannot be read (they are declared faulty) instead of failing
//! the partition; a WinningPoSt needs every challenged sector.

use crate::child::{self, Job, Paths, ProofJob};
use crate::index::SectorIndex;
use crate::store::LocalStore;
use base64::Engine;
pub use sealing_proofs::post::PoStKind;
use sealing_proofs::post::Prover;
use sealing_proofs::{Backend, Commitment};
use sealing_types::{FileType, FileTypes, RegisteredSealProof, SectorId};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// A sector to prove, as the chain knows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PoStSector {
    pub number: u64,
    pub seal_proof: RegisteredSealProof,
    #[serde(rename = "CommR")]
    pub comm_r: Commitment,
    /// A snap-deal (updated) sector: proven from its update and update cache, whose CommR is
    /// the chain's sealed CID since the update (Lotus: its SectorKeyCID is set).
    #[serde(default)]
    pub update: bool,
}

impl PoStSector {
    /// The replica and cache files a PoSt of this sector reads.
    pub fn files(&self) -> (FileType, FileType) {
        if self.update {
            (FileType::Update, FileType::UpdateCache)
        } else {
            (FileType::Sealed, FileType::Cache)
        }
    }
}

/// The body of `POST /remote/vanilla/single`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VanillaRequest {
    pub miner: u64,
    pub kind: PoStKind,
    pub sector: PoStSector,
    pub challenges: Vec<u64>,
}

/// A sector a WindowPoSt skipped, and why.
pub use lotus_api::contract::worker::PoStSkip as SkippedSector;

/// What `GenerateWindowPoSt` / `GenerateWinningPoSt` return.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PoStOutput {
    /// The SNARK, base64; empty when every sector was skipped.
    pub proof: String,
    pub proven: Vec<u64>,
    pub skipped: Vec<SkippedSector>,
    /// The node that computed the SNARK.
    pub prover: String,
    pub seconds: f64,
}

impl PoStOutput {
    pub fn proof_bytes(&self) -> Result<Vec<u8>, String> {
        base64::engine::general_purpose::STANDARD.decode(&self.proof).map_err(|e| format!("bad proof encoding: {e}"))
    }
}

/// Compute a sector's vanilla proof from this node's copy of it.
pub fn local_vanilla(store: &LocalStore, req: &VanillaRequest, backend: Backend) -> Result<Vec<u8>, String> {
    let id = SectorId { miner: req.miner, number: req.sector.number };
    let (replica, cache) = req.sector.files();
    let (_, sealed) = store.find(id, replica).ok_or_else(|| format!("{id} has no {} file here", replica.name()))?;
    let (_, cache) = store.find(id, cache).ok_or_else(|| format!("{id} has no {} here", cache.name()))?;
    let p = Prover::new(req.kind, req.sector.seal_proof.sector_size(), req.miner, [0; 32])
        .map_err(|e| e.to_string())?
        .with_backend(backend);
    p.vanilla(req.sector.number, req.sector.comm_r, &sealed, &cache, &req.challenges).map_err(|e| e.to_string())
}

pub struct PoStProver {
    pub store: Arc<LocalStore>,
    pub index: Arc<dyn SectorIndex>,
    http: reqwest::Client,
    token: lotus_api::SharedToken,
    exe: PathBuf,
    hostname: String,
    /// `--post-parallel-reads`: vanilla proofs read at once.
    reads: tokio::sync::Semaphore,
    /// `--post-read-timeout`: how long one sector's read may take before it counts as
    /// unreadable (skipped in a WindowPoSt), so that one hung disk or node costs that sector,
    /// not the partition. `None`: bounded only by the deadline.
    read_timeout: Option<std::time::Duration>,
    /// Real proofs, or the mock backend (tests): vanilla proofs and SNARKs in this process.
    backend: Backend,
}

impl PoStProver {
    pub fn new(
        store: Arc<LocalStore>,
        index: Arc<dyn SectorIndex>,
        token: impl Into<lotus_api::SharedToken>,
        hostname: String,
        parallel_reads: usize,
        read_timeout: Option<std::time::Duration>,
        backend: Backend,
    ) -> std::io::Result<Arc<Self>> {
        Ok(Arc::new(PoStProver {
            store,
            index,
            http: reqwest::Client::new(),
            token: token.into(),
            exe: std::env::current_exe()?,
            hostname,
            reads: tokio::sync::Semaphore::new(parallel_reads.max(1)),
            read_timeout,
            backend,
        }))
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    async fn vanilla(&self, req: VanillaRequest) -> Result<Vec<u8>, String> {
        let _slot = self.reads.acquire().await.expect("never closed");
        let Some(limit) = self.read_timeout else {
            return self.read_vanilla(req).await;
        };
        let number = req.sector.number;
        tokio::time::timeout(limit, self.read_vanilla(req)).await.unwrap_or_else(|_| {
            Err(format!(
                "reading sector {number}'s challenged leaves took longer than {} (--post-read-timeout); \
                 check the disk or node that holds it",
                humantime::format_duration(limit)
            ))
        })
    }

    async fn read_vanilla(&self, req: VanillaRequest) -> Result<Vec<u8>, String> {
        let id = SectorId { miner: req.miner, number: req.sector.number };
        let (replica, _) = req.sector.files();
        if self.store.find(id, replica).is_some() {
            let (store, backend) = (self.store.clone(), self.backend);
            return tokio::task::spawn_blocking(move || local_vanilla(&store, &req, backend))
                .await
                .map_err(|e| e.to_string())?;
        }
        let holders = self.index.find(id, FileTypes::of(&[replica])).await.map_err(|e| e.to_string())?;
        let mut errors = vec![];
        for base in holders.iter().flat_map(|h| h.base_urls.iter()) {
            let url = format!("{base}/vanilla/single");
            match self.http.post(&url).bearer_auth(self.token.get()).json(&req).send().await {
                Ok(r) if r.status().is_success() => match r.bytes().await {
                    Ok(b) => return Ok(b.to_vec()),
                    Err(e) => errors.push(format!("{url}: {e}")),
                },
                Ok(r) => {
                    let status = r.status().as_u16();
                    errors.push(format!("{url}: {status}: {}", r.text().await.unwrap_or_default()))
                }
                Err(e) => errors.push(format!("{url}: {e}")),
            }
        }
        if errors.is_empty() {
            return Err(format!("no node holds the {} file of {id}", replica.name()));
        }
        Err(errors.join("; "))
    }

    /// Check that each sector can be proven, as Lotus's `CheckProvable` does before a
    /// WindowPoSt and before declaring recoveries: the challenged leaves of a random challenge
    /// are read (locally or from the node that holds the sector) within `single` per sector
    /// and `all` for the lot, at most `--post-parallel-reads` / `ParallelCheckLimit` at once.
    /// Returns the sectors that cannot be proven, each with why.
    pub async fn check(
        &self,
        miner: u64,
        sectors: &[PoStSector],
        single: std::time::Duration,
        all: std::time::Duration,
    ) -> std::collections::BTreeMap<u64, String> {
        let mut bad = std::collections::BTreeMap::new();
        let Some(first) = sectors.first() else { return bad };
        let mut randomness = [0u8; 32];
        randomness[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        randomness[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        randomness[31] &= 0x3f;
        let prover = match Prover::new(PoStKind::Window, first.seal_proof.sector_size(), miner, randomness) {
            Ok(p) => p.with_backend(self.backend),
            Err(e) => {
                for s in sectors {
                    bad.insert(s.number, format!("computing the check's challenges: {e}"));
                }
                return bad;
            }
        };
        let numbers: Vec<u64> = sectors.iter().map(|s| s.number).collect();
        let challenges = match tokio::task::spawn_blocking(move || prover.challenges(&numbers)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                for s in sectors {
                    bad.insert(s.number, format!("computing the check's challenges: {e}"));
                }
                return bad;
            }
            Err(e) => {
                for s in sectors {
                    bad.insert(s.number, format!("computing the check's challenges: {e}"));
                }
                return bad;
            }
        };
        let checks = sectors.iter().map(|s| {
            let req = VanillaRequest {
                miner,
                kind: PoStKind::Window,
                sector: s.clone(),
                challenges: challenges.get(&s.number).cloned().unwrap_or_default(),
            };
            async move {
                let _slot = self.reads.acquire().await.expect("never closed");
                let r = tokio::time::timeout(single, self.read_vanilla(req)).await;
                (s.number, r)
            }
        });
        // Each result as it comes; those not in when the partition's time is up are bad.
        let mut pending: futures_util::stream::FuturesUnordered<_> = checks.collect();
        let mut unchecked: std::collections::BTreeSet<u64> = sectors.iter().map(|s| s.number).collect();
        let until = tokio::time::Instant::now() + all;
        use futures_util::StreamExt;
        while let Ok(Some((n, r))) = tokio::time::timeout_at(until, pending.next()).await {
            unchecked.remove(&n);
            match r {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    bad.insert(n, e);
                }
                Err(_) => {
                    let limit = humantime::format_duration(single);
                    bad.insert(n, format!("checking took longer than {limit} ([Proving] SingleCheckTimeout)"));
                }
            }
        }
        for n in unchecked {
            let limit = humantime::format_duration(all);
            bad.insert(n, format!("not checked within {limit} ([Proving] PartitionCheckTimeout)"));
        }
        bad
    }

    /// Prove `sectors` (one WindowPoSt partition, or a WinningPoSt's challenged sectors).
    /// `challenges`: each sector's challenged leaves as the caller computed them (a Lotus
    /// miner sends them); computed here from the randomness when `None`.
    pub async fn prove(
        &self,
        kind: PoStKind,
        miner: u64,
        randomness: [u8; 32],
        sectors: Vec<PoStSector>,
        challenges: Option<std::collections::BTreeMap<u64, Vec<u64>>>,
    ) -> Result<PoStOutput, String> {
        let started = Instant::now();
        // Any order: `Prover::snark` puts a WindowPoSt's vanilla proofs in sector order itself.
        let first = sectors.first().ok_or("no sectors to prove")?.clone();
        let size = first.seal_proof.sector_size();
        let prover = Prover::new(kind, size, miner, randomness).map_err(|e| e.to_string())?.with_backend(self.backend);
        let mut numbers: Vec<u64> = sectors.iter().map(|s| s.number).collect();
        numbers.sort_unstable();
        numbers.dedup();
        let challenges = match challenges {
            Some(c) => c,
            None => {
                let numbers = numbers.clone();
                tokio::task::spawn_blocking(move || prover.challenges(&numbers))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?
            }
        };
        let reads = sectors.iter().map(|s| {
            let req = VanillaRequest {
                miner,
                kind,
                sector: s.clone(),
                challenges: challenges.get(&s.number).cloned().unwrap_or_default(),
            };
            async move { (s.number, self.vanilla(req).await) }
        });
        let mut vanilla = vec![];
        let mut proven = vec![];
        let mut skipped = vec![];
        for (number, r) in futures_util::future::join_all(reads).await {
            match r {
                Ok(v) => {
                    proven.push(number);
                    vanilla.push((number, base64::engine::general_purpose::STANDARD.encode(v)));
                }
                Err(reason) if kind == PoStKind::Window => {
                    tracing::warn!(sector = number, "skipping faulty sector in WindowPoSt: {reason}");
                    skipped.push(SkippedSector { number, reason });
                }
                Err(reason) => return Err(format!("WinningPoSt cannot read sector {number}: {reason}")),
            }
        }
        let proof = if proven.is_empty() {
            String::new()
        } else {
            let job = Job {
                proof: first.seal_proof,
                miner,
                sector: 0,
                paths: Paths::default(),
                op: ProofJob::PoStSnark { kind, randomness, vanilla },
                backend: self.backend,
                mock_duration: std::time::Duration::ZERO,
            };
            // Never niced: PoSt is the miner's first duty.
            match child::spawn(&self.exe, &job, child::Limits::default()).await.map_err(|e| e.message)? {
                serde_json::Value::String(s) => s,
                other => return Err(format!("unexpected proof process output {other}")),
            }
        };
        Ok(PoStOutput {
            proof,
            proven,
            skipped,
            prover: self.hostname.clone(),
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lotus_api::types::SectorStorageInfo;
    use std::time::Duration;
    use uuid::Uuid;

    fn request(number: u64) -> VanillaRequest {
        VanillaRequest {
            miner: 1000,
            kind: PoStKind::Window,
            sector: PoStSector {
                number,
                seal_proof: RegisteredSealProof::STACKED_DRG_2KIB_V1_1,
                comm_r: [0; 32],
                update: false,
            },
            challenges: vec![0],
        }
    }

    /// An updated (snap-deal) sector is proven from its update and update cache, under the
    /// new CommR; its sector key, if still there, is not what is read.
    #[test]
    fn an_updated_sector_is_proven_from_its_update_files() {
        use sealing_proofs::{Sealer, UpdatePaths};
        let d = tempfile::tempdir().unwrap();
        let store = LocalStore::new(String::new());
        let root = d.path().join("p");
        let mut m = crate::meta::init_storage_path(&root, 10, true, true).unwrap();
        m.max_storage = 0;
        std::fs::write(root.join("sectorstore.json"), serde_json::to_vec(&m).unwrap()).unwrap();
        let p = store.open_path(&root).unwrap();
        let id = SectorId { miner: 1000, number: 7 };
        let seal_proof = RegisteredSealProof::STACKED_DRG_2KIB_V1_1;
        let s = Sealer::new(seal_proof, 1000, 7).with_backend(Backend::Mock);
        // A mock CC sector sealed into the store, then updated with data there.
        let sp = sealing_proofs::SectorPaths {
            unsealed: d.path().join("cc-unsealed"),
            sealed: p.file(FileType::Sealed, id),
            cache: p.file(FileType::Cache, id),
        };
        let size = sealing_proofs::max_unpadded(seal_proof.sector_size());
        let cc = s.add_piece(std::io::Read::take(std::io::repeat(0), size), size, &sp.unsealed).unwrap();
        let pc1 = s.pre_commit1(&sp, [1; 32], &[cc]).unwrap();
        let comm_r_old = s.pre_commit2(pc1, &sp).unwrap().comm_r;
        let up = UpdatePaths {
            unsealed: d.path().join("data"),
            sealed: sp.sealed.clone(),
            cache: sp.cache.clone(),
            update: p.file(FileType::Update, id),
            update_cache: p.file(FileType::UpdateCache, id),
        };
        let piece = s.add_piece(&vec![5u8; size as usize][..], size, &up.unsealed).unwrap();
        let new = s.replica_update(&up, &[piece]).unwrap();
        let mut req = request(7);
        req.sector.comm_r = new.comm_r_new;
        req.sector.update = true;
        assert!(local_vanilla(&store, &req, Backend::Mock).is_ok(), "read from the update files");
        req.sector.update = false;
        assert!(local_vanilla(&store, &req, Backend::Mock).is_err(), "the key's cache holds the old CommR");
        req.sector.comm_r = comm_r_old;
        assert!(local_vanilla(&store, &req, Backend::Mock).is_ok(), "the key proves only the old CommR");
        // The key released: an updated sector still proves, a plain read finds no replica.
        std::fs::remove_file(&sp.sealed).unwrap();
        req.sector.update = true;
        req.sector.comm_r = new.comm_r_new;
        assert!(local_vanilla(&store, &req, Backend::Mock).is_ok());
        req.sector.update = false;
        let e = local_vanilla(&store, &req, Backend::Mock).unwrap_err();
        assert!(e.contains("has no sealed file here"), "{e}");
    }

    #[tokio::test]
    async fn a_read_that_hangs_fails_after_the_read_timeout() {
        // A node that accepts the connection and never answers, like a hung NFS-backed worker.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/remote", listener.local_addr().unwrap());
        let _accepting = tokio::spawn(async move {
            let mut held = vec![];
            while let Ok((conn, _)) = listener.accept().await {
                held.push(conn);
            }
        });
        let store = Arc::new(LocalStore::new("http://127.0.0.1:1/remote".into()));
        let holder = SectorStorageInfo {
            id: Uuid::nil(),
            urls: vec![],
            base_urls: vec![base],
            weight: 10,
            can_seal: true,
            can_store: true,
            primary: true,
            ..Default::default()
        };
        let index: Arc<dyn SectorIndex> = Arc::new(crate::index::FixedIndex(vec![holder]));
        let limit = Duration::from_millis(300);
        let prover = PoStProver::new(store, index, "t".to_string(), "h".into(), 4, Some(limit), Backend::Real).unwrap();
        let started = Instant::now();
        let err = prover.vanilla(request(7)).await.unwrap_err();
        let took = started.elapsed();
        assert!(err.contains("sector 7") && err.contains("--post-read-timeout"), "{err}");
        assert!(took >= limit && took < Duration::from_secs(10), "gave up after {took:?}");
    }
}
