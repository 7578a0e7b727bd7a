//! Proving: the miner's first duty (reference §3.11). Two loops watch the chain:
//! - WindowPoSt: when a deadline opens, each of its partitions is proven (in parallel) and
//!   submitted before the deadline closes; a failed attempt is retried while it is open.
//!   Before proving, each sector is checked as Lotus checks it (its challenged leaves read,
//!   within `[Proving] SingleCheckTimeout` each, `PartitionCheckTimeout` in all, at most
//!   `ParallelCheckLimit` at once); those that fail are skipped in the SubmitWindowedPoSt, and
//!   so declared faulty, never failing the rest of their partition. At the same time the faulty
//!   sectors of the deadline after next are checked and those readable again declared
//!   recovered (DeclareFaultsRecovered), so that they are proven there, as Lotus's WindowPoSt
//!   scheduler does.
//! - Mining: each epoch's election; a win needs a WinningPoSt, fast.
//!
//! Who computes: an enabled PoSt worker of the right kind, picked at random; on a connection
//! error the next one is tried. With none, the miner proves itself unless
//! `[Proving] DisableBuiltinWindowPoSt` / `DisableBuiltinWinningPoSt` is set; then a
//! WindowPoSt waits for a worker (until its deadline closes) and a WinningPoSt fails at once.
//! The proofs never queue behind sealing: they do not go through the sealing scheduler, and
//! sealing proof processes run niced (`[Proving] SealingNice`).

use crate::chain::{
    ChainClient, DeadlineInfo, Epoch, MiningRound, PartitionInfo, PoStRecord, ProvingSector, ProvingSummary,
    WindowPoStSubmission,
};
use crate::manager::Manager;
use sealing_exec::post::{PoStKind, PoStOutput, PoStProver, PoStSector, SkippedSector};
use sealing_types::TaskType;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// One WindowPoSt attempt for one partition, as `proving info` shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PoStAttempt {
    pub deadline: u64,
    pub open: Epoch,
    pub partition: usize,
    pub prover: String,
    pub seconds: f64,
    /// Time left before the deadline closed when the proof was accepted (negative: late).
    pub margin_seconds: f64,
    /// How long the deadline is open.
    #[serde(default)]
    pub window_seconds: f64,
    pub proven: Vec<u64>,
    pub skipped: Vec<SkippedSector>,
    pub error: Option<String>,
    /// The epoch the accepted proof's message was executed at.
    #[serde(default)]
    pub epoch: Epoch,
}

/// One won election.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BlockAttempt {
    pub epoch: Epoch,
    pub prover: String,
    pub seconds: f64,
    pub error: Option<String>,
}

pub struct Proving {
    pub chain: Arc<ChainClient>,
    pub manager: Arc<Manager>,
    pub miner: u64,
    /// The miner's own prover (its storage paths, the index for the rest).
    pub local: Arc<PoStProver>,
    pub disable_builtin_window: bool,
    pub disable_builtin_winning: bool,
    pub checks: PreChecks,
    attempts: Mutex<Vec<PoStAttempt>>,
    blocks: Mutex<Vec<BlockAttempt>>,
    /// The last deadline missed since a WindowPoSt was last accepted (the `wdpost:missed` alert).
    missed: Mutex<Option<u64>>,
    /// Deadlines missed, and the sectors in their unproven partitions, since the miner started.
    missed_counts: Mutex<(u64, u64)>,
}

const KEEP: usize = 100;

/// `[Proving]`'s sector checks before a WindowPoSt and a recovery declaration.
#[derive(Clone, Copy, Debug)]
pub struct PreChecks {
    pub single: Duration,
    pub partition: Duration,
    /// `DisableWDPoStPreChecks`: prove without checking first (the prover still skips what it
    /// cannot read). Recoveries are always checked.
    pub disabled: bool,
}

impl PreChecks {
    pub fn from_config(c: &lotus_node::config::ProvingConfig) -> Result<PreChecks, String> {
        Ok(PreChecks {
            single: lotus_node::config::parse_duration(&c.single_check_timeout)?,
            partition: lotus_node::config::parse_duration(&c.partition_check_timeout)?,
            disabled: c.disable_wd_post_pre_checks,
        })
    }
}

fn push<T>(v: &Mutex<Vec<T>>, x: T) {
    let mut v = v.lock().unwrap_or_else(|e| e.into_inner());
    v.push(x);
    if v.len() > KEEP {
        v.remove(0);
    }
}

fn post_sector(s: &ProvingSector) -> PoStSector {
    PoStSector { number: s.number, seal_proof: s.proof, comm_r: s.comm_r, update: s.update }
}

impl Proving {
    pub fn new(
        chain: Arc<ChainClient>,
        manager: Arc<Manager>,
        miner: u64,
        local: Arc<PoStProver>,
        disable_builtin_window: bool,
        disable_builtin_winning: bool,
        checks: PreChecks,
    ) -> Arc<Self> {
        Arc::new(Proving {
            chain,
            manager,
            miner,
            local,
            disable_builtin_window,
            disable_builtin_winning,
            checks,
            attempts: Mutex::new(vec![]),
            blocks: Mutex::new(vec![]),
            missed: Mutex::new(None),
            missed_counts: Mutex::new((0, 0)),
        })
    }

    pub fn attempts(&self) -> Vec<PoStAttempt> {
        self.attempts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Each deadline's last WindowPoSt attempt, by deadline (metrics, alerts, the dashboard).
    pub fn last_per_deadline(&self) -> Vec<PoStAttempt> {
        let attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        let mut last = std::collections::BTreeMap::new();
        // Attempts are in time order: the last one of each deadline wins.
        for a in attempts.iter() {
            last.insert(a.deadline, a);
        }
        last.into_values().cloned().collect()
    }

    /// The last deadline missed since a WindowPoSt was last accepted.
    pub fn missed(&self) -> Option<u64> {
        *self.missed.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn blocks(&self) -> Vec<BlockAttempt> {
        self.blocks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The proving picture: partitions and faults from the chain, the rest from this miner.
    pub async fn summary(&self) -> Result<ProvingSummary, crate::chain::ChainError> {
        let (deadlines, all_sectors, faults) = self.chain.partitions_summary().await?;
        let total: usize = deadlines.iter().flatten().map(Vec::len).sum();
        let (missed_deadlines, penalised_sectors) = *self.missed_counts.lock().unwrap_or_else(|e| e.into_inner());
        let blocks = self.blocks();
        Ok(ProvingSummary {
            active: (total - faults.len().min(total)) as u64,
            deadlines,
            all_sectors,
            faults,
            missed_deadlines,
            penalised_sectors,
            posts: self
                .attempts()
                .into_iter()
                .filter(|a| a.error.is_none())
                .map(|a| PoStRecord {
                    deadline: a.deadline,
                    open: a.open,
                    partition: a.partition,
                    proven: a.proven,
                    skipped: a.skipped.iter().map(|s| s.number).collect(),
                    epoch: a.epoch,
                    prover: a.prover,
                })
                .collect(),
            blocks_won: blocks.iter().filter(|b| b.error.is_none()).count() as u64,
            blocks_refused: blocks.iter().filter(|b| b.error.is_some()).count() as u64,
        })
    }

    /// Start the WindowPoSt and mining loops, tracked by the daemon (stopped at shutdown).
    pub fn start(self: &Arc<Self>, background: &lotus_node::daemon::Background) {
        background.spawn(self.clone().window_post_loop());
        background.spawn(self.clone().mining_loop());
    }

    fn tick(&self) -> Duration {
        (self.chain.block_delay() / 4).max(Duration::from_millis(100))
    }

    async fn window_post_loop(self: Arc<Self>) {
        // The deadline instance whose partitions are all proven (only the current one matters).
        let mut done: Option<Epoch> = None;
        // The deadline instance with partitions left to prove: if it closes so, it was missed.
        let mut unproven: Option<(DeadlineInfo, u64)> = None;
        // The deadline instance whose recoveries (for the deadline after next) were handled.
        let mut declared: Option<Epoch> = None;
        let mut seen = -1;
        loop {
            // Each new head (ChainNotify) wakes the loop; the fallback bounds a missed one.
            self.chain.next_head(seen, self.tick() * 4).await;
            // A failed read below waits for the next head too, instead of spinning.
            seen = seen.max(self.chain.latest_head());
            let head = match self.chain.head().await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!("WindowPoSt: reading the chain head: {e}");
                    continue;
                }
            };
            seen = head;
            let dl = self.chain.deadline_at(head);
            if let Some((u, sectors)) = unproven.filter(|(u, _)| u.open != dl.open) {
                unproven = None;
                if done != Some(u.open) {
                    self.manager.metrics.wdpost_missed();
                    *self.missed.lock().unwrap_or_else(|e| e.into_inner()) = Some(u.index);
                    {
                        let mut c = self.missed_counts.lock().unwrap_or_else(|e| e.into_inner());
                        c.0 += 1;
                        c.1 += sectors;
                    }
                    tracing::error!(
                        deadline = u.index,
                        open = u.open,
                        "WindowPoSt MISSED: deadline {} closed with partitions not proven; their sectors are faulty",
                        u.index
                    );
                }
            }
            if declared != Some(dl.open) {
                declared = Some(dl.open);
                // Beside the proof, never in its way.
                tokio::spawn(self.clone().declare_recoveries(dl));
            }
            if done == Some(dl.open) {
                continue;
            }
            let read = async {
                let Some(randomness) = self.chain.post_randomness(dl.challenge).await? else { return Ok(None) };
                let proven = self.chain.proven_partitions(&dl).await?;
                let parts = self.chain.deadline_partitions(&dl).await?;
                Ok::<_, crate::chain::ChainError>(Some((randomness, proven, parts)))
            };
            let (randomness, proven, parts) = match read.await {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(deadline = dl.index, "WindowPoSt: reading the deadline from the chain: {e}");
                    continue;
                }
            };
            let todo: Vec<PartitionInfo> =
                parts.into_iter().filter(|p| !p.to_prove().is_empty() && !proven.contains(&p.index)).collect();
            if todo.is_empty() {
                done = Some(dl.open);
                continue;
            }
            unproven = Some((dl, todo.iter().map(|p| p.to_prove().len() as u64).sum()));
            let runs = todo.into_iter().map(|p| self.prove_partition(dl, randomness, p));
            futures_util::future::join_all(runs).await;
        }
    }

    /// Lotus's recovery declaration: the faulty sectors of the deadline after next (the next one
    /// is past the fault cutoff) that pass the check are declared recovered in one
    /// DeclareFaultsRecovered, waited for.
    async fn declare_recoveries(self: Arc<Self>, dl: DeadlineInfo) {
        let mut target = dl;
        target.index = (dl.index + 2) % dl.deadlines.max(1);
        let parts = match self.chain.deadline_partitions(&target).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(deadline = target.index, "recoveries: reading the deadline's partitions: {e}");
                return;
            }
        };
        let mut declarations = vec![];
        for p in parts {
            let faulty: Vec<PoStSector> = p.to_recover().iter().map(post_sector).collect();
            if faulty.is_empty() {
                continue;
            }
            let bad = self.local.check(self.miner, &faulty, self.checks.single, self.checks.partition).await;
            let good: Vec<u64> = faulty.iter().map(|s| s.number).filter(|n| !bad.contains_key(n)).collect();
            for (n, why) in &bad {
                tracing::info!(deadline = target.index, partition = p.index, sector = n, "still faulty: {why}");
            }
            if !good.is_empty() {
                declarations.push((target.index, p.index as u64, good));
            }
        }
        if declarations.is_empty() {
            return;
        }
        let sectors: Vec<u64> = declarations.iter().flat_map(|d| d.2.iter().copied()).collect();
        match self.chain.declare_recovered(&declarations).await {
            Ok((cid, epoch)) => tracing::info!(
                deadline = target.index,
                %cid,
                epoch,
                "declared faulty sectors {sectors:?} recovered (DeclareFaultsRecovered)"
            ),
            Err(e) => tracing::error!(deadline = target.index, "declaring sectors {sectors:?} recovered: {e}"),
        }
    }

    /// `CheckProvable`: each of these sectors that cannot be proven now, with why (a sector
    /// the chain has no live record of is one of them).
    pub async fn check_provable(&self, numbers: &[u64]) -> Result<std::collections::BTreeMap<u64, String>, String> {
        let sectors = self.chain.proving_sectors(numbers).await.map_err(|e| e.to_string())?;
        let post: Vec<PoStSector> = sectors.iter().map(post_sector).collect();
        let mut bad = self.local.check(self.miner, &post, self.checks.single, self.checks.partition).await;
        for n in numbers {
            if !sectors.iter().any(|s| s.number == *n) {
                bad.insert(*n, "the chain has no live sector with this number".into());
            }
        }
        Ok(bad)
    }

    /// `ComputeWindowPoSt` (`proving compute windowed-post`): prove the deadline's latest
    /// instance (this period's, or the last period's when it has not opened yet) as if it were
    /// due, every live sector included, and send nothing; one entry per partition.
    pub async fn compute_window_post(&self, index: u64) -> Result<Vec<lotus_api::chain::WindowPoStParams>, String> {
        use lotus_api::chain::{WindowPoStParams, WindowPoStPartition, WindowPoStProof};
        let head = self.chain.head().await.map_err(|e| e.to_string())?;
        let now = self.chain.deadline_at(head);
        if index >= now.deadlines {
            return Err(format!("deadline {index} does not exist: the proving period has {}", now.deadlines));
        }
        // The same instance shape, moved back to the deadline's latest opening.
        let window = now.close - now.open;
        let mut shift = (index as Epoch - now.index as Epoch) * window;
        if index > now.index {
            shift -= window * now.deadlines as Epoch;
        }
        let mut dl = now;
        dl.index = index;
        dl.open += shift;
        dl.close += shift;
        dl.challenge += shift;
        let randomness = self
            .chain
            .post_randomness(dl.challenge)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("deadline {index}'s challenge (epoch {}) is not drawn yet", dl.challenge))?;
        let mut out = vec![];
        // Every live sector, as Lotus's manual PoSt (a newly proven one too).
        for p in self.chain.partitions_of(index, true).await.map_err(|e| e.to_string())? {
            if p.sectors.is_empty() {
                continue;
            }
            let sectors: Vec<PoStSector> = p.sectors.iter().map(post_sector).collect();
            let post_proof = sealing_exec::wire::post_proof_type(PoStKind::Window, p.sectors[0].proof);
            let r = self.run(PoStKind::Window, randomness, sectors, p.index as i64, None).await?;
            out.push(WindowPoStParams {
                deadline: index,
                partitions: vec![WindowPoStPartition {
                    index: p.index as u64,
                    skipped: lotus_api::wire::BitField::of(r.skipped.iter().map(|s| s.number)),
                }],
                proofs: vec![WindowPoStProof { post_proof, proof_bytes: lotus_api::wire::Bytes(r.proof_bytes()?) }],
                chain_commit_epoch: 0,
                chain_commit_rand: None,
            });
        }
        Ok(out)
    }

    /// `RecoverFault` (`proving recover-faults`): one DeclareFaultsRecovered for the sectors,
    /// grouped by partition, without checking them first (as Lotus's manual recovery); the
    /// message CIDs, not waited for.
    pub async fn recover_faults(&self, numbers: &[u64]) -> Result<Vec<lotus_api::wire::Cid>, String> {
        let mut groups: std::collections::BTreeMap<(u64, u64), Vec<u64>> = Default::default();
        for (n, loc) in self.chain.locate(numbers).await.map_err(|e| e.to_string())? {
            let (d, p) = loc.ok_or_else(|| format!("sector {n} is not a live sector of this miner on chain"))?;
            groups.entry((d, p)).or_default().push(n);
        }
        let declarations: Vec<(u64, u64, Vec<u64>)> = groups.into_iter().map(|((d, p), s)| (d, p, s)).collect();
        let cid = self.chain.push_recovered(&declarations).await.map_err(|e| e.to_string())?;
        tracing::info!(%cid, sectors = ?numbers, "declare faults recovered Message CID (manual recovery)");
        Ok(vec![cid])
    }

    async fn prove_partition(&self, dl: DeadlineInfo, randomness: [u8; 32], p: PartitionInfo) {
        let mut sectors: Vec<PoStSector> = p.to_prove().iter().map(post_sector).collect();
        let mut prechecked = vec![];
        if !self.checks.disabled {
            let bad = self.local.check(self.miner, &sectors, self.checks.single, self.checks.partition).await;
            for (number, reason) in bad {
                tracing::warn!(
                    deadline = dl.index,
                    partition = p.index,
                    sector = number,
                    "skipping a sector that failed its check: {reason}"
                );
                prechecked.push(SkippedSector { number, reason });
            }
            sectors.retain(|s| !prechecked.iter().any(|b| b.number == s.number));
        }
        let close_at = self.chain.epoch_time(dl.close);
        let mut attempt = PoStAttempt {
            deadline: dl.index,
            open: dl.open,
            partition: p.index,
            prover: String::new(),
            seconds: 0.0,
            margin_seconds: 0.0,
            window_seconds: close_at
                .duration_since(self.chain.epoch_time(dl.open))
                .map(|d| d.as_secs_f64())
                .unwrap_or_default(),
            proven: vec![],
            skipped: vec![],
            error: None,
            epoch: 0,
        };
        // Bounded by the deadline: a proof process that hangs is killed (dropping the future
        // kills it) and the loop goes on to retry or to the next deadline.
        let left = close_at.duration_since(SystemTime::now()).unwrap_or_default();
        let out = if sectors.is_empty() {
            // Every sector failed its check: the message declares them all faulty, no proof.
            Ok(PoStOutput {
                proof: String::new(),
                proven: vec![],
                skipped: vec![],
                prover: "none".into(),
                seconds: 0.0,
            })
        } else {
            match tokio::time::timeout(
                left,
                self.run(PoStKind::Window, randomness, sectors, p.index as i64, Some(close_at)),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err("the proof was not ready when the deadline closed".to_string()),
            }
        };
        let out = out.map(|mut o| {
            o.skipped.extend(prechecked);
            o.skipped.sort_by_key(|s| s.number);
            o
        });
        let result = match out {
            Ok(out) => {
                attempt.prover = out.prover.clone();
                attempt.seconds = out.seconds;
                attempt.proven = out.proven.clone();
                attempt.skipped = out.skipped.clone();
                match out.proof_bytes() {
                    Ok(proof) => {
                        let sub = WindowPoStSubmission {
                            deadline: dl.index,
                            open: dl.open,
                            challenge: dl.challenge,
                            partition: p.index,
                            proven: out.proven,
                            skipped: out.skipped.iter().map(|s| s.number).collect(),
                            proof,
                            post_proof: sealing_exec::wire::post_proof_type(PoStKind::Window, p.to_prove()[0].proof),
                        };
                        self.chain.submit_window_post(sub).await.map_err(|e| e.to_string())
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        let left = close_at.duration_since(SystemTime::now());
        attempt.margin_seconds = match left {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        };
        self.manager.metrics.wdpost(result.is_ok(), attempt.margin_seconds);
        if result.is_ok() {
            *self.missed.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        if let Ok(epoch) = result {
            attempt.epoch = epoch;
        }
        match result {
            Ok(epoch) => tracing::info!(
                deadline = dl.index,
                partition = p.index,
                prover = %attempt.prover,
                epoch,
                "WindowPoSt accepted: {:.1} s to prove, {:.1} s before the deadline closes; skipped (faulty): {:?}",
                attempt.seconds,
                attempt.margin_seconds,
                attempt.skipped.iter().map(|s| s.number).collect::<Vec<_>>()
            ),
            Err(e) => {
                tracing::error!(
                    deadline = dl.index,
                    partition = p.index,
                    "WindowPoSt failed (retrying while the deadline is open): {e}"
                );
                attempt.error = Some(e);
                // Do not spin on a persistent failure.
                tokio::time::sleep(self.chain.block_delay()).await;
            }
        }
        push(&self.attempts, attempt);
    }

    /// The sectors with their challenged leaves, as Lotus's miner sends them to a PoSt worker
    /// (it computes the challenges itself; a worker only reads and proves).
    async fn challenged(
        &self,
        kind: PoStKind,
        randomness: [u8; 32],
        sectors: &[PoStSector],
    ) -> Result<Vec<lotus_api::contract::worker::PostSectorChallenge>, String> {
        let first = sectors.first().ok_or("no sectors to prove")?;
        let prover = sealing_proofs::post::Prover::new(kind, first.seal_proof.sector_size(), self.miner, randomness)
            .map_err(|e| e.to_string())?
            .with_backend(self.local.backend());
        let numbers: Vec<u64> = sectors.iter().map(|s| s.number).collect();
        let challenges = tokio::task::spawn_blocking(move || prover.challenges(&numbers))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        Ok(sealing_exec::wire::post_challenges(sectors, &challenges))
    }

    /// Compute a PoSt on a PoSt worker (random order, the next one on a connection error) or,
    /// with none, on the miner unless its built-in proving is disabled. A WindowPoSt waits for a
    /// worker until `wait_until`; a WinningPoSt never waits.
    async fn run(
        &self,
        kind: PoStKind,
        randomness: [u8; 32],
        sectors: Vec<PoStSector>,
        partition: i64,
        wait_until: Option<SystemTime>,
    ) -> Result<PoStOutput, String> {
        let (task, method, builtin_disabled) = match kind {
            PoStKind::Window => (TaskType::GenerateWindowPoSt, "GenerateWindowPoSt", self.disable_builtin_window),
            PoStKind::Winning => (TaskType::GenerateWinningPoSt, "GenerateWinningPoSt", self.disable_builtin_winning),
        };
        let mut said = false;
        let mut wire_sectors = None;
        loop {
            let mut workers = self.manager.post_workers(task);
            // Random order (§3.11): a fresh UUID is a cheap random sort key.
            workers.sort_by_key(|_| uuid::Uuid::new_v4());
            if workers.is_empty() && !builtin_disabled {
                return self.local.prove(kind, self.miner, randomness, sectors, None).await;
            }
            let timeout = wait_until
                .and_then(|t| t.duration_since(SystemTime::now()).ok())
                .unwrap_or(Duration::from_secs(600))
                .max(Duration::from_secs(1));
            if !workers.is_empty() && wire_sectors.is_none() {
                wire_sectors = Some(self.challenged(kind, randomness, &sectors).await?);
            }
            for (id, host, client) in workers {
                let challenged = wire_sectors.clone().unwrap_or_default();
                let started = std::time::Instant::now();
                let ppt = sealing_exec::wire::post_proof_type(kind, sectors[0].seal_proof);
                let b = lotus_api::wire::Bytes(randomness.to_vec());
                use lotus_api::contract::worker as w;
                let r = match kind {
                    PoStKind::Window => client
                        .request_timeout::<w::GenerateWindowPoSt>((ppt, self.miner, challenged, partition, b), timeout)
                        .await
                        .map(|r| {
                            Ok(sealing_exec::wire::window_output(r, &sectors, &host, started.elapsed().as_secs_f64()))
                        }),
                    PoStKind::Winning => client
                        .request_timeout::<w::GenerateWinningPoSt>((ppt, self.miner, challenged, b), timeout)
                        .await
                        .map(|r| {
                            sealing_exec::wire::winning_output(r, &sectors, &host, started.elapsed().as_secs_f64())
                        }),
                };
                match r {
                    Ok(out) => return out,
                    Err(e) if e.is_unreachable() => {
                        tracing::warn!(worker = %id, %host, "{method} on {host} failed to connect, trying another PoSt worker: {e}");
                    }
                    Err(e) => return Err(format!("{method} on {host}: {e}")),
                }
            }
            let name = if kind == PoStKind::Window { "WindowPoSt" } else { "WinningPoSt" };
            if kind == PoStKind::Winning {
                return Err(format!(
                    "can't find a {name} worker that answers, and [Proving] DisableBuiltinWinningPoSt is set"
                ));
            }
            if wait_until.is_some_and(|t| SystemTime::now() >= t) {
                return Err(format!("no {name} worker answered before the deadline closed"));
            }
            if !said {
                tracing::warn!("waiting for a {name} worker ([Proving] DisableBuiltinWindowPoSt is set)");
                said = true;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn mining_loop(self: Arc<Self>) {
        let mut last: Option<Epoch> = None;
        let mut seen = -1;
        loop {
            self.chain.next_head(seen, self.tick() * 4).await;
            // A failed read below waits for the next head too, instead of spinning.
            seen = seen.max(self.chain.latest_head());
            let head = match self.chain.head().await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!("mining: reading the chain head: {e}");
                    continue;
                }
            };
            seen = head;
            // Lotus's miner mines the round after the head (its base is the head).
            for round in last.map_or(head + 1, |l| l + 1)..=head + 1 {
                match self.chain.mining_round(round).await {
                    Ok(Some(r)) => {
                        tokio::spawn(self.clone().mine(round, r));
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(round, "MinerGetBaseInfo: {e}"),
                }
            }
            last = Some(head + 1);
        }
    }

    async fn mine(self: Arc<Self>, epoch: Epoch, round: MiningRound) {
        let started = std::time::Instant::now();
        let mut attempt = BlockAttempt { epoch, prover: String::new(), seconds: 0.0, error: None };
        let result: Result<(), String> = async {
            let sectors = round.sectors;
            let first = sectors.first().ok_or("no sectors to prove")?.proof;
            // A block is worth something only while it is fresh.
            let limit = (self.chain.block_delay() * 30).max(Duration::from_secs(60));
            let run = self.run(PoStKind::Winning, round.randomness, sectors.iter().map(post_sector).collect(), 0, None);
            let out = tokio::time::timeout(limit, run)
                .await
                .map_err(|_| format!("no WinningPoSt within {} s", limit.as_secs()))??;
            attempt.prover = out.prover.clone();
            let proof = out.proof_bytes()?;
            let ppt = sealing_exec::wire::post_proof_type(PoStKind::Winning, first);
            self.chain.submit_block(epoch, ppt, proof).await.map_err(|e| e.to_string())
        }
        .await;
        attempt.seconds = started.elapsed().as_secs_f64();
        match result {
            Ok(()) => {
                tracing::info!(epoch, prover = %attempt.prover, "mined a block (WinningPoSt in {:.1} s)", attempt.seconds)
            }
            Err(e) => {
                tracing::error!(epoch, "won the election but the block failed: {e}");
                attempt.error = Some(e);
            }
        }
        push(&self.blocks, attempt);
    }
}
