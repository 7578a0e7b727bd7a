//! The chain the miner seals against. There is no Lotus node here, so the miner carries a
//! local devnet chain behind the [`Chain`] trait; a Lotus full-node client can implement the
//! same trait later (ChainHead, StateGetRandomnessFromTickets/Beacon, MpoolPush of
//! PreCommitSector / ProveCommitSector, StateSectorGetInfo).

use sealing_proofs::post::PoStKind;
use sealing_proofs::{Backend, Commitment};
use sealing_types::{RegisteredSealProof, SectorId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub type Epoch = i64;

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("pre-commit of {sector} refused: {why}")]
    PreCommit { sector: SectorId, why: String },
    #[error("prove-commit of {sector} refused: {why}")]
    ProveCommit { sector: SectorId, why: String },
    #[error("WindowPoSt for deadline {deadline} partition {partition} refused: {why}")]
    WindowPoSt { deadline: u64, partition: usize, why: String },
    #[error("block at epoch {epoch} refused: {why}")]
    Block { epoch: Epoch, why: String },
}

/// What the chain knows of a pre-committed sector.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PreCommitInfo {
    pub proof: RegisteredSealProof,
    pub comm_r: Commitment,
    pub ticket_epoch: Epoch,
    pub epoch: Epoch,
}

/// The proving period's shape (Lotus: 48 deadlines of 60 epochs, challenge 20 epochs before a
/// deadline opens; the devnet defaults are small so that a test sees several deadlines in
/// minutes).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProvingParams {
    pub deadlines: u64,
    /// Epochs a deadline stays open (WPoStChallengeWindow).
    pub window: Epoch,
    /// Epochs between the challenge and the deadline's opening (WPoStChallengeLookback).
    pub lookback: Epoch,
    /// Chance that the miner wins the election of an epoch (while it has active sectors).
    pub win_rate: f64,
}

impl Default for ProvingParams {
    fn default() -> Self {
        ProvingParams { deadlines: 4, window: 20, lookback: 2, win_rate: 0.02 }
    }
}

/// One deadline instance, as Lotus's `dline.Info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeadlineInfo {
    pub current_epoch: Epoch,
    pub period_start: Epoch,
    pub index: u64,
    pub open: Epoch,
    pub close: Epoch,
    pub challenge: Epoch,
    pub deadlines: u64,
}

/// A sector the miner must prove in a deadline instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProvingSector {
    pub number: u64,
    pub proof: RegisteredSealProof,
    pub comm_r: Commitment,
    pub faulty: bool,
}

/// A partition of a deadline and the sectors of it an instance requires.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PartitionInfo {
    pub index: usize,
    pub sectors: Vec<ProvingSector>,
}

/// A WindowPoSt message: one partition's proof; `skipped` are the sectors the prover could
/// not read (declared faulty).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WindowPoStSubmission {
    pub miner: u64,
    pub deadline: u64,
    pub open: Epoch,
    pub partition: usize,
    pub proven: Vec<u64>,
    pub skipped: Vec<u64>,
    pub proof: Vec<u8>,
    /// Who computed it (a PoSt worker's hostname, or the miner's): kept for `proving` output.
    pub prover: String,
}

/// An accepted WindowPoSt, as the chain records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PoStRecord {
    pub deadline: u64,
    pub open: Epoch,
    pub partition: usize,
    pub proven: Vec<u64>,
    pub skipped: Vec<u64>,
    pub epoch: Epoch,
    pub prover: String,
}

/// How a closed deadline instance ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeadlineOutcome {
    pub deadline: u64,
    pub open: Epoch,
    pub partitions: usize,
    pub proven_partitions: usize,
    /// Partitions that had sectors to prove and no proof by the close: their sectors became
    /// faulty and the miner paid a penalty (on mainnet: collateral).
    pub missed_partitions: usize,
    pub faulty_sectors: Vec<u64>,
}

/// The whole proving picture, for `lotus-miner proving …` and `info`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProvingSummary {
    /// Per deadline index: its partitions' sector numbers.
    pub deadlines: Vec<Vec<Vec<u64>>>,
    pub faults: Vec<u64>,
    pub active: u64,
    /// Deadline instances with at least one missed partition.
    pub missed_deadlines: u64,
    /// Sector-deadlines penalised for a missed proof.
    pub penalised_sectors: u64,
    pub posts: Vec<PoStRecord>,
    pub outcomes: Vec<DeadlineOutcome>,
    pub blocks_won: u64,
    pub blocks_refused: u64,
}

pub trait Chain: Send + Sync {
    fn head(&self) -> Epoch;
    /// Seconds per epoch.
    fn block_delay(&self) -> Duration;
    /// The sealing ticket for an epoch (randomness from tickets).
    fn ticket(&self, miner: u64, epoch: Epoch) -> [u8; 32];
    /// The interactive seed (randomness from the beacon), known once `epoch` is reached.
    fn seed(&self, miner: u64, epoch: Epoch) -> Option<[u8; 32]>;
    /// Epochs between a pre-commit landing and its seed (PreCommitChallengeDelay).
    fn seed_delay(&self) -> Epoch;
    /// Returns the epoch the pre-commit landed in.
    fn pre_commit(&self, sector: SectorId, info: PreCommitInfo) -> Result<Epoch, ChainError>;
    /// Verifies the seal proof (real Groth16 verification) before accepting; the sector is
    /// then assigned to a deadline and must be proven every proving period.
    fn prove_commit(&self, sector: SectorId, comm_d: Commitment, proof: &[u8]) -> Result<Epoch, ChainError>;
    fn pre_commit_info(&self, sector: SectorId) -> Option<PreCommitInfo>;
    /// After a miner restart: what the miner had put on the chain, for a chain that lives in
    /// the miner's memory (a real chain keeps its own state and ignores this).
    fn restore_pre_commit(&self, _sector: SectorId, _info: PreCommitInfo) {}
    /// The same for a sector the miner has proving (a repo from before the chain kept its state).
    fn restore_proven(&self, _sector: SectorId, _info: PreCommitInfo) {}

    fn proving_params(&self) -> ProvingParams;
    /// When an epoch starts (for deadline margins).
    fn epoch_time(&self, epoch: Epoch) -> SystemTime;
    /// The deadline open (or next to open) at `epoch`.
    fn deadline_at(&self, epoch: Epoch) -> DeadlineInfo;
    /// WindowPoSt / election randomness of an epoch, known once it is reached.
    fn post_randomness(&self, miner: u64, epoch: Epoch) -> Option<[u8; 32]>;
    /// The partitions of a deadline instance with the sectors it requires (those proven
    /// before its challenge).
    fn deadline_partitions(&self, dl: &DeadlineInfo) -> Vec<PartitionInfo>;
    /// Partitions of the instance already proven.
    fn proven_partitions(&self, dl: &DeadlineInfo) -> Vec<usize>;
    /// Verifies the WindowPoSt (real verification) before accepting it.
    fn submit_window_post(&self, post: WindowPoStSubmission) -> Result<Epoch, ChainError>;
    /// Did the miner win the election of `epoch`? Returns the election randomness.
    fn election(&self, miner: u64, epoch: Epoch) -> Option<[u8; 32]>;
    /// The active sectors an election of this randomness challenges (WinningPoSt).
    fn winning_sectors(&self, miner: u64, randomness: [u8; 32]) -> Result<Vec<ProvingSector>, ChainError>;
    /// A block with its WinningPoSt (verified before it counts).
    fn submit_block(&self, miner: u64, epoch: Epoch, sectors: &[u64], proof: &[u8]) -> Result<(), ChainError>;
    fn proving_summary(&self) -> ProvingSummary;
}

/// A single-miner devnet: epochs follow the wall clock from a genesis time, randomness is a
/// hash of (domain, epoch, miner) with a per-devnet seed, and messages land at once. Its state
/// is written to a JSON file (when given one) after every change, so a restarted miner finds
/// the chain as it left it.
pub struct Devnet {
    genesis: SystemTime,
    block_delay: Duration,
    seed_delay: Epoch,
    entropy: [u8; 32],
    proving: ProvingParams,
    /// Which proofs the chain accepts: real ones, or (`[Devnet] MockProofs`) only mock ones.
    backend: Backend,
    state_file: Option<PathBuf>,
    state: Mutex<DevnetState>,
}

#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
struct DevnetState {
    /// The backend the chain was started with: a chain of mock sectors cannot turn real.
    backend: Backend,
    precommits: BTreeMap<u64, PreCommitInfo>,
    /// Deadline index → partitions → sector numbers (partitions fill up before new ones open).
    deadlines: Vec<Vec<Vec<u64>>>,
    sectors: BTreeMap<u64, ActiveSector>,
    posts: Vec<PoStRecord>,
    outcomes: Vec<DeadlineOutcome>,
    /// Deadline instances closing at or before this epoch have been settled.
    settled: Epoch,
    missed_deadlines: u64,
    penalised_sectors: u64,
    blocks_won: u64,
    blocks_refused: u64,
    won_epochs: Vec<Epoch>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ActiveSector {
    proof: RegisteredSealProof,
    comm_r: Commitment,
    activation: Epoch,
    faulty: bool,
}

/// Randomness domains (Lotus's DomainSeparationTag values where one exists).
const DOMAIN_TICKET: u8 = 2;
const DOMAIN_SEAL_SEED: u8 = 5;
const DOMAIN_WINDOW_POST: u8 = 7;
const DOMAIN_ELECTION: u8 = 1;
/// Records kept for the CLI; older ones are dropped.
const KEEP_RECORDS: usize = 200;

impl Devnet {
    pub fn new(genesis: SystemTime, block_delay: Duration, seed_delay: Epoch, entropy: [u8; 32]) -> Self {
        Devnet {
            genesis,
            block_delay,
            seed_delay,
            entropy,
            proving: ProvingParams::default(),
            backend: Backend::Real,
            state_file: None,
            state: Mutex::new(DevnetState::default()),
        }
    }

    pub fn with_proving(mut self, p: ProvingParams) -> Self {
        self.proving = p;
        self
    }

    /// Accept only this backend's proofs (call before [`Devnet::persisted`]).
    pub fn with_backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self.state.get_mut().unwrap_or_else(|e| e.into_inner()).backend = backend;
        self
    }

    /// Keep the chain's state in `path` (loaded now if it exists).
    pub fn persisted(mut self, path: PathBuf) -> Result<Self, String> {
        if let Ok(text) = std::fs::read_to_string(&path) {
            let mut st: DevnetState =
                serde_json::from_str(&text).map_err(|e| format!("{} is damaged: {e}", path.display()))?;
            if st.backend != self.backend {
                return Err(format!(
                    "{} holds a chain of {:?} proofs and [Devnet] MockProofs asks for {:?} ones: \
                     set MockProofs back, or start a new chain in a new repo",
                    path.display(),
                    st.backend,
                    self.backend
                ));
            }
            if st.deadlines.len() != self.proving.deadlines as usize {
                // The period's shape changed in config.toml: assign every sector again.
                st.deadlines.clear();
                let numbers: Vec<u64> = st.sectors.keys().copied().collect();
                for n in numbers {
                    assign(&mut st, self.proving.deadlines, n);
                }
            }
            *self.state.get_mut().unwrap_or_else(|e| e.into_inner()) = st;
        }
        self.state_file = Some(path);
        Ok(self)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DevnetState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn save(&self, st: &DevnetState) {
        let Some(path) = &self.state_file else { return };
        let text = serde_json::to_vec(st).expect("devnet state serialises");
        if let Err(e) = lotus_node::repo::write_atomic(path, &text, 0o644) {
            tracing::error!("saving the devnet chain state: {e}");
        }
    }

    fn draw(&self, domain: u8, miner: u64, epoch: Epoch) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(self.entropy);
        h.update([domain]);
        h.update(epoch.to_be_bytes());
        h.update(miner.to_be_bytes());
        let mut out: [u8; 32] = h.finalize().into();
        out[31] &= 0x3f; // a valid field element, as Lotus's randomness is used
        out
    }

    fn period(&self) -> Epoch {
        self.proving.deadlines.max(1) as Epoch * self.proving.window.max(1)
    }

    fn deadline_of(&self, epoch: Epoch) -> DeadlineInfo {
        let window = self.proving.window.max(1);
        let period_start = epoch.div_euclid(self.period()) * self.period();
        let index = ((epoch - period_start) / window) as u64;
        let open = period_start + index as Epoch * window;
        DeadlineInfo {
            current_epoch: epoch,
            period_start,
            index,
            open,
            close: open + window,
            challenge: open - self.proving.lookback,
            deadlines: self.proving.deadlines,
        }
    }

    /// Close every deadline instance that ended by `head`: a partition that had sectors to
    /// prove and got no proof is missed, its sectors become faulty and are penalised.
    fn settle(&self, st: &mut DevnetState, head: Epoch) -> bool {
        let window = self.proving.window.max(1);
        let mut changed = false;
        // The first instance not yet settled closes at settled + window (instances tile time).
        let mut close = (st.settled.div_euclid(window) + 1) * window;
        while close <= head {
            let dl = self.deadline_of(close - window);
            let parts = partitions_of(st, &dl);
            let proven: Vec<usize> = st.posts.iter().filter(|p| p.open == dl.open).map(|p| p.partition).collect();
            let mut outcome = DeadlineOutcome {
                deadline: dl.index,
                open: dl.open,
                partitions: parts.iter().filter(|p| !p.sectors.is_empty()).count(),
                proven_partitions: 0,
                missed_partitions: 0,
                faulty_sectors: vec![],
            };
            for p in &parts {
                if p.sectors.is_empty() {
                    continue;
                }
                if proven.contains(&p.index) {
                    outcome.proven_partitions += 1;
                    continue;
                }
                outcome.missed_partitions += 1;
                for s in &p.sectors {
                    if let Some(a) = st.sectors.get_mut(&s.number) {
                        if !a.faulty {
                            st.penalised_sectors += 1;
                        }
                        a.faulty = true;
                    }
                }
            }
            if outcome.partitions > 0 {
                if outcome.missed_partitions > 0 {
                    st.missed_deadlines += 1;
                    tracing::warn!(
                        deadline = dl.index,
                        open = dl.open,
                        missed = outcome.missed_partitions,
                        "WindowPoSt deadline MISSED: its sectors are now faulty"
                    );
                }
                outcome.faulty_sectors = parts
                    .iter()
                    .flat_map(|p| p.sectors.iter())
                    .filter(|s| st.sectors.get(&s.number).is_some_and(|a| a.faulty))
                    .map(|s| s.number)
                    .collect();
                st.outcomes.push(outcome);
                trim(&mut st.outcomes);
            }
            st.settled = close;
            close += window;
            changed = true;
        }
        changed
    }

    fn settled_state(&self) -> std::sync::MutexGuard<'_, DevnetState> {
        let head = self.head();
        let mut st = self.lock();
        if self.settle(&mut st, head) {
            self.save(&st);
        }
        st
    }
}

fn trim<T>(v: &mut Vec<T>) {
    if v.len() > KEEP_RECORDS {
        v.drain(..v.len() - KEEP_RECORDS);
    }
}

/// Place a new sector: fill a partly filled partition first (fewest new partitions), then the
/// deadline with the fewest sectors, as Lotus's deadline assignment does.
fn assign(st: &mut DevnetState, deadlines: u64, number: u64) {
    let Some(a) = st.sectors.get(&number) else { return };
    let per = sealing_proofs::post::partition_sectors(a.proof.sector_size()).max(1);
    st.deadlines.resize(deadlines.max(1) as usize, vec![]);
    let best = (0..st.deadlines.len())
        .min_by_key(|&i| {
            let d = &st.deadlines[i];
            let opens_new = d.last().is_none_or(|p| p.len() >= per);
            (opens_new, d.iter().map(Vec::len).sum::<usize>(), i)
        })
        .unwrap_or(0);
    let d = &mut st.deadlines[best];
    match d.last_mut() {
        Some(p) if p.len() < per => p.push(number),
        _ => d.push(vec![number]),
    }
}

fn partitions_of(st: &DevnetState, dl: &DeadlineInfo) -> Vec<PartitionInfo> {
    let Some(parts) = st.deadlines.get(dl.index as usize) else { return vec![] };
    parts
        .iter()
        .enumerate()
        .map(|(index, numbers)| PartitionInfo {
            index,
            sectors: numbers
                .iter()
                .filter_map(|n| {
                    let a = st.sectors.get(n)?;
                    (a.activation < dl.challenge).then_some(ProvingSector {
                        number: *n,
                        proof: a.proof,
                        comm_r: a.comm_r,
                        faulty: a.faulty,
                    })
                })
                .collect(),
        })
        .collect()
}

impl Chain for Devnet {
    fn head(&self) -> Epoch {
        let since = SystemTime::now().duration_since(self.genesis).unwrap_or_default();
        (since.as_millis() / self.block_delay.as_millis().max(1)) as Epoch
    }
    fn block_delay(&self) -> Duration {
        self.block_delay
    }
    fn ticket(&self, miner: u64, epoch: Epoch) -> [u8; 32] {
        self.draw(DOMAIN_TICKET, miner, epoch)
    }
    fn seed(&self, miner: u64, epoch: Epoch) -> Option<[u8; 32]> {
        (self.head() >= epoch).then(|| self.draw(DOMAIN_SEAL_SEED, miner, epoch))
    }
    fn seed_delay(&self) -> Epoch {
        self.seed_delay
    }
    fn pre_commit(&self, sector: SectorId, mut info: PreCommitInfo) -> Result<Epoch, ChainError> {
        let head = self.head();
        if info.ticket_epoch > head {
            return Err(ChainError::PreCommit {
                sector,
                why: format!("ticket epoch {} is in the future", info.ticket_epoch),
            });
        }
        let mut st = self.lock();
        if st.sectors.contains_key(&sector.number) {
            return Err(ChainError::PreCommit { sector, why: "sector number already proven".into() });
        }
        if let Some(prev) = st.precommits.get(&sector.number) {
            if prev.comm_r == info.comm_r {
                return Ok(prev.epoch); // the same message again (after a restart)
            }
        }
        info.epoch = head;
        st.precommits.insert(sector.number, info);
        self.save(&st);
        Ok(head)
    }
    fn prove_commit(&self, sector: SectorId, comm_d: Commitment, proof: &[u8]) -> Result<Epoch, ChainError> {
        let err = |why: String| ChainError::ProveCommit { sector, why };
        let pc = self.pre_commit_info(sector).ok_or_else(|| err("not pre-committed".into()))?;
        let seed_epoch = pc.epoch + self.seed_delay;
        let seed = self
            .seed(sector.miner, seed_epoch)
            .ok_or_else(|| err(format!("too early: seed epoch {seed_epoch} not reached")))?;
        let ticket = self.ticket(sector.miner, pc.ticket_epoch);
        let sealer = sealing_proofs::Sealer::new(pc.proof, sector.miner, sector.number).with_backend(self.backend);
        match sealer.verify(pc.comm_r, comm_d, ticket, seed, proof) {
            Ok(true) => {}
            Ok(false) => return Err(err("the seal proof does not verify".into())),
            Err(e) => return Err(err(format!("verifying the proof: {e}"))),
        }
        let head = self.head();
        let mut st = self.lock();
        if let Some(a) = st.sectors.get(&sector.number) {
            return Ok(a.activation); // the same message again (after a restart)
        }
        st.sectors.insert(
            sector.number,
            ActiveSector { proof: pc.proof, comm_r: pc.comm_r, activation: head, faulty: false },
        );
        assign(&mut st, self.proving.deadlines, sector.number);
        self.save(&st);
        Ok(head)
    }
    fn pre_commit_info(&self, sector: SectorId) -> Option<PreCommitInfo> {
        self.lock().precommits.get(&sector.number).cloned()
    }
    fn restore_pre_commit(&self, sector: SectorId, info: PreCommitInfo) {
        self.lock().precommits.entry(sector.number).or_insert(info);
    }
    fn restore_proven(&self, sector: SectorId, info: PreCommitInfo) {
        let mut st = self.lock();
        if st.sectors.contains_key(&sector.number) {
            return;
        }
        let head = self.head();
        st.sectors.insert(
            sector.number,
            ActiveSector { proof: info.proof, comm_r: info.comm_r, activation: head, faulty: false },
        );
        assign(&mut st, self.proving.deadlines, sector.number);
        self.save(&st);
    }

    fn proving_params(&self) -> ProvingParams {
        self.proving
    }
    fn epoch_time(&self, epoch: Epoch) -> SystemTime {
        self.genesis + self.block_delay * epoch.max(0) as u32
    }
    fn deadline_at(&self, epoch: Epoch) -> DeadlineInfo {
        self.deadline_of(epoch)
    }
    fn post_randomness(&self, miner: u64, epoch: Epoch) -> Option<[u8; 32]> {
        (self.head() >= epoch).then(|| self.draw(DOMAIN_WINDOW_POST, miner, epoch))
    }
    fn deadline_partitions(&self, dl: &DeadlineInfo) -> Vec<PartitionInfo> {
        partitions_of(&self.settled_state(), dl)
    }
    fn proven_partitions(&self, dl: &DeadlineInfo) -> Vec<usize> {
        self.lock().posts.iter().filter(|p| p.open == dl.open).map(|p| p.partition).collect()
    }
    fn submit_window_post(&self, post: WindowPoStSubmission) -> Result<Epoch, ChainError> {
        let err = |why: String| ChainError::WindowPoSt { deadline: post.deadline, partition: post.partition, why };
        let head = self.head();
        let dl = self.deadline_of(head);
        if dl.open != post.open || dl.index != post.deadline {
            return Err(err(format!(
                "deadline {} (opened at epoch {}) is not open at epoch {head}: the proof came too late",
                post.deadline, post.open
            )));
        }
        let part = {
            let st = self.settled_state();
            if st.posts.iter().any(|p| p.open == dl.open && p.partition == post.partition) {
                return Err(err("already proven in this deadline".into()));
            }
            partitions_of(&st, &dl)
                .into_iter()
                .find(|p| p.index == post.partition)
                .ok_or_else(|| err("no such partition".into()))?
        };
        let mut claimed: Vec<u64> = post.proven.iter().chain(&post.skipped).copied().collect();
        claimed.sort_unstable();
        // Partitions keep sectors in the order they were assigned; compare as sets.
        let mut required: Vec<u64> = part.sectors.iter().map(|s| s.number).collect();
        required.sort_unstable();
        if claimed != required {
            return Err(err(format!("the proof covers sectors {claimed:?}, the partition requires {required:?}")));
        }
        if !post.proven.is_empty() {
            let randomness = self.draw(DOMAIN_WINDOW_POST, post.miner, dl.challenge);
            let size = part.sectors[0].proof.sector_size();
            let prover = sealing_proofs::post::Prover::new(PoStKind::Window, size, post.miner, randomness)
                .map_err(|e| err(e.to_string()))?
                .with_backend(self.backend);
            let public: BTreeMap<u64, Commitment> =
                part.sectors.iter().filter(|s| post.proven.contains(&s.number)).map(|s| (s.number, s.comm_r)).collect();
            match prover.verify(&post.proof, &public) {
                Ok(true) => {}
                Ok(false) => return Err(err("the proof does not verify".into())),
                Err(e) => return Err(err(format!("verifying the proof: {e}"))),
            }
        }
        let mut st = self.settled_state();
        if self.head() >= dl.close {
            return Err(err(format!("deadline closed at epoch {} while the proof was verified", dl.close)));
        }
        for n in &post.skipped {
            if let Some(a) = st.sectors.get_mut(n) {
                a.faulty = true;
            }
        }
        for n in &post.proven {
            if let Some(a) = st.sectors.get_mut(n) {
                a.faulty = false; // a recovered sector is active again
            }
        }
        let epoch = self.head();
        st.posts.push(PoStRecord {
            deadline: post.deadline,
            open: post.open,
            partition: post.partition,
            proven: post.proven,
            skipped: post.skipped,
            epoch,
            prover: post.prover,
        });
        trim(&mut st.posts);
        self.save(&st);
        Ok(epoch)
    }
    fn election(&self, miner: u64, epoch: Epoch) -> Option<[u8; 32]> {
        if self.proving.win_rate <= 0.0 || self.head() < epoch {
            return None;
        }
        if !self.settled_state().sectors.values().any(|a| !a.faulty) {
            return None; // no power, no wins
        }
        let r = self.draw(DOMAIN_ELECTION, miner, epoch);
        let x = u64::from_be_bytes(r[..8].try_into().expect("8 bytes")) as f64 / u64::MAX as f64;
        (x < self.proving.win_rate).then_some(r)
    }
    fn winning_sectors(&self, miner: u64, randomness: [u8; 32]) -> Result<Vec<ProvingSector>, ChainError> {
        let err = |why: String| ChainError::Block { epoch: self.head(), why };
        let active: Vec<ProvingSector> = self
            .settled_state()
            .sectors
            .iter()
            .filter(|(_, a)| !a.faulty)
            .map(|(n, a)| ProvingSector { number: *n, proof: a.proof, comm_r: a.comm_r, faulty: false })
            .collect();
        let first = active.first().ok_or_else(|| err("no active sectors".into()))?;
        let prover = sealing_proofs::post::Prover::new(PoStKind::Winning, first.proof.sector_size(), miner, randomness)
            .map_err(|e| err(e.to_string()))?
            .with_backend(self.backend);
        let idx = prover.winning_indices(active.len() as u64).map_err(|e| err(e.to_string()))?;
        Ok(idx.into_iter().filter_map(|i| active.get(i as usize).cloned()).collect())
    }
    fn submit_block(&self, miner: u64, epoch: Epoch, sectors: &[u64], proof: &[u8]) -> Result<(), ChainError> {
        let err = |why: String| ChainError::Block { epoch, why };
        let result = (|| {
            let randomness =
                self.election(miner, epoch).ok_or_else(|| err("the miner did not win this epoch".into()))?;
            if self.lock().won_epochs.contains(&epoch) {
                return Err(err("a block for this epoch is already in".into()));
            }
            let challenged = self.winning_sectors(miner, randomness)?;
            let numbers: Vec<u64> = challenged.iter().map(|s| s.number).collect();
            if numbers != sectors {
                return Err(err(format!("the proof covers sectors {sectors:?}, the election challenged {numbers:?}")));
            }
            let size = challenged[0].proof.sector_size();
            let prover = sealing_proofs::post::Prover::new(PoStKind::Winning, size, miner, randomness)
                .map_err(|e| err(e.to_string()))?
                .with_backend(self.backend);
            let public: BTreeMap<u64, Commitment> = challenged.iter().map(|s| (s.number, s.comm_r)).collect();
            match prover.verify(proof, &public) {
                Ok(true) => Ok(()),
                Ok(false) => Err(err("the WinningPoSt does not verify".into())),
                Err(e) => Err(err(format!("verifying the WinningPoSt: {e}"))),
            }
        })();
        let mut st = self.lock();
        match &result {
            Ok(()) => {
                st.blocks_won += 1;
                st.won_epochs.push(epoch);
                trim(&mut st.won_epochs);
            }
            Err(_) => st.blocks_refused += 1,
        }
        self.save(&st);
        result
    }
    fn proving_summary(&self) -> ProvingSummary {
        let st = self.settled_state();
        ProvingSummary {
            deadlines: st.deadlines.clone(),
            faults: st.sectors.iter().filter(|(_, a)| a.faulty).map(|(n, _)| *n).collect(),
            active: st.sectors.values().filter(|a| !a.faulty).count() as u64,
            missed_deadlines: st.missed_deadlines,
            penalised_sectors: st.penalised_sectors,
            posts: st.posts.clone(),
            outcomes: st.outcomes.clone(),
            blocks_won: st.blocks_won,
            blocks_refused: st.blocks_refused,
        }
    }
}

/// Random entropy for a new devnet.
pub fn new_entropy() -> [u8; 32] {
    let mut e = [0u8; 32];
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    e[..16].copy_from_slice(&t.to_be_bytes());
    e[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn randomness_is_stable_and_seeds_wait_for_their_epoch() {
        let c = Devnet::new(SystemTime::now() - Duration::from_secs(10), Duration::from_secs(1), 3, [7; 32]);
        assert!(c.head() >= 9);
        assert_eq!(c.ticket(1000, 5), c.ticket(1000, 5));
        assert_ne!(c.ticket(1000, 5), c.ticket(1000, 6));
        assert_ne!(c.ticket(1000, 5), c.seed(1000, 5).unwrap(), "ticket and seed domains differ");
        assert!(c.seed(1000, c.head() + 100).is_none());
    }

    #[test]
    fn prove_commit_needs_a_pre_commit_and_a_seed() {
        let c = Devnet::new(SystemTime::now(), Duration::from_secs(60), 1, [7; 32]);
        let s = SectorId { miner: 1000, number: 1 };
        let e = c.prove_commit(s, [0; 32], &[0; 192]).unwrap_err().to_string();
        assert!(e.contains("not pre-committed"), "{e}");
        let info = PreCommitInfo {
            proof: RegisteredSealProof::STACKED_DRG_2KIB_V1_1,
            comm_r: [1; 32],
            ticket_epoch: 0,
            epoch: 0,
        };
        c.pre_commit(s, info).unwrap();
        let e = c.prove_commit(s, [0; 32], &[0; 192]).unwrap_err().to_string();
        assert!(e.contains("too early"), "{e}");
    }

    /// `[Devnet] MockProofs`: the chain accepts a mock seal proof and refuses anything else; a
    /// real chain refuses the mock proof (the library does not verify it); a chain file keeps
    /// the backend it was made with.
    #[test]
    fn a_mock_chain_accepts_only_mock_proofs_and_keeps_its_backend() {
        let started = SystemTime::now() - Duration::from_secs(100);
        let proof = RegisteredSealProof::STACKED_DRG_2KIB_V1_1;
        let s = SectorId { miner: 1000, number: 1 };
        let prove = |c: &Devnet| {
            let info = PreCommitInfo { proof, comm_r: [1; 32], ticket_epoch: 0, epoch: 0 };
            let epoch = c.pre_commit(s, info).unwrap();
            // Pretend the pre-commit landed long ago, so that the seed is there.
            c.lock().precommits.get_mut(&s.number).unwrap().epoch = epoch - 10;
            let seed = c.seed(s.miner, epoch - 10 + c.seed_delay).unwrap();
            let ticket = c.ticket(s.miner, 0);
            sealing_proofs::mock::seal_proof(&sealing_proofs::prover_id(1000), 1, &[1; 32], &[2; 32], &ticket, &seed)
        };
        let mock = Devnet::new(started, Duration::from_secs(1), 1, [7; 32]).with_backend(Backend::Mock);
        let good = prove(&mock);
        let e = mock.prove_commit(s, [2; 32], &[0; 192]).unwrap_err().to_string();
        assert!(e.contains("does not verify"), "{e}");
        mock.prove_commit(s, [2; 32], &good).unwrap();

        let real = Devnet::new(started, Duration::from_secs(1), 1, [7; 32]);
        let forged = prove(&real);
        assert!(real.prove_commit(s, [2; 32], &forged).is_err(), "the real chain refuses a mock proof");

        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("devnet.json");
        let c =
            Devnet::new(started, Duration::from_secs(1), 1, [7; 32]).with_backend(Backend::Mock).persisted(f.clone());
        let c = c.unwrap();
        c.save(&c.lock());
        let e = Devnet::new(started, Duration::from_secs(1), 1, [7; 32]).persisted(f).err().unwrap();
        assert!(e.contains("MockProofs") && e.contains("Mock"), "{e}");
    }

    fn devnet_with(sectors: &[u64], activation: Epoch) -> Devnet {
        let c = Devnet::new(SystemTime::now() - Duration::from_secs(1000), Duration::from_secs(1), 1, [7; 32])
            .with_proving(ProvingParams { deadlines: 3, window: 10, lookback: 2, win_rate: 0.0 });
        {
            let mut st = c.lock();
            for &n in sectors {
                st.sectors.insert(
                    n,
                    ActiveSector {
                        proof: RegisteredSealProof::STACKED_DRG_2KIB_V1_1,
                        comm_r: [n as u8; 32],
                        activation,
                        faulty: false,
                    },
                );
                assign(&mut st, 3, n);
            }
        }
        c
    }

    #[test]
    fn deadlines_tile_the_proving_period() {
        let c = devnet_with(&[], 0);
        let d = c.deadline_at(47);
        assert_eq!((d.period_start, d.index, d.open, d.close, d.challenge), (30, 1, 40, 50, 38));
        assert_eq!(c.deadline_at(30).index, 0);
        assert_eq!(c.deadline_at(29).index, 2);
    }

    #[test]
    fn sectors_fill_partitions_before_opening_new_ones() {
        // 2KiB partitions hold two sectors.
        let c = devnet_with(&[1, 2, 3, 4, 5], 0);
        assert_eq!(c.lock().deadlines, vec![vec![vec![1, 2]], vec![vec![3, 4]], vec![vec![5]]]);
    }

    #[test]
    fn a_partition_without_proof_is_missed_and_its_sectors_turn_faulty() {
        let c = devnet_with(&[1, 2, 3], 5);
        let mut st = c.lock();
        // Deadline 0 [1,2] opens at 0: its challenge (-2) precedes activation, nothing owed.
        // Instance at 30: owed. A post that skips sector 2 covers the partition.
        st.posts.push(PoStRecord {
            deadline: 0,
            open: 30,
            partition: 0,
            proven: vec![1],
            skipped: vec![2],
            epoch: 31,
            prover: "t".into(),
        });
        st.sectors.get_mut(&2).unwrap().faulty = true;
        assert!(c.settle(&mut st, 50));
        let o: Vec<_> =
            st.outcomes.iter().map(|o| (o.deadline, o.open, o.proven_partitions, o.missed_partitions)).collect();
        // Deadline 1 (sector 3) opened at 10 with its challenge at 8 > activation 5: missed,
        // and again at 40; its sector is penalised once, when it turns faulty.
        assert_eq!(o, vec![(1, 10, 0, 1), (0, 30, 1, 0), (1, 40, 0, 1)]);
        assert_eq!(st.missed_deadlines, 2);
        assert_eq!(st.penalised_sectors, 1);
        assert!(st.sectors[&3].faulty && st.sectors[&2].faulty && !st.sectors[&1].faulty);
        assert_eq!(st.settled, 50);
        assert!(!c.settle(&mut st, 55), "nothing new closed");
    }

    /// A partition keeps its sectors in the order they landed; a proof lists them sorted.
    #[test]
    fn a_post_covering_a_partition_in_any_order_is_accepted() {
        let c = Devnet::new(SystemTime::now() - Duration::from_secs(1000), Duration::from_secs(1), 1, [7; 32])
            .with_proving(ProvingParams { deadlines: 3, window: 100, lookback: 2, win_rate: 0.0 });
        let dl = c.deadline_at(c.head());
        {
            let mut st = c.lock();
            for n in [2, 1] {
                let a = ActiveSector {
                    proof: RegisteredSealProof::STACKED_DRG_2KIB_V1_1,
                    comm_r: [n as u8; 32],
                    activation: 0,
                    faulty: false,
                };
                st.sectors.insert(n, a);
            }
            st.deadlines = vec![vec![]; 3];
            st.deadlines[dl.index as usize] = vec![vec![2, 1]];
        }
        let post = |proven: Vec<u64>, skipped: Vec<u64>| WindowPoStSubmission {
            miner: 1000,
            deadline: dl.index,
            open: dl.open,
            partition: 0,
            proven,
            skipped,
            proof: vec![],
            prover: "t".into(),
        };
        let e = c.submit_window_post(post(vec![], vec![1])).unwrap_err().to_string();
        assert!(e.contains("the partition requires [1, 2]"), "{e}");
        c.submit_window_post(post(vec![], vec![1, 2])).unwrap();
        assert_eq!(c.proven_partitions(&dl), vec![0]);
        assert_eq!(c.proving_summary().faults, vec![1, 2], "skipped sectors are faulty");
    }

    #[test]
    fn state_survives_a_restart_through_its_file() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("devnet.json");
        let c = devnet_with(&[1, 2, 3], 0).persisted(f.clone()).unwrap();
        c.save(&c.lock());
        let again = Devnet::new(SystemTime::now(), Duration::from_secs(1), 1, [7; 32])
            .with_proving(ProvingParams { deadlines: 3, window: 10, lookback: 2, win_rate: 0.0 })
            .persisted(f.clone())
            .unwrap();
        assert_eq!(again.lock().deadlines, vec![vec![vec![1, 2]], vec![vec![3]], vec![]]);
        // A repo from before the chain kept its state: its proving sectors are put back.
        let fresh = Devnet::new(SystemTime::now(), Duration::from_secs(1), 1, [7; 32]).with_proving(ProvingParams {
            deadlines: 3,
            window: 10,
            lookback: 2,
            win_rate: 0.0,
        });
        let info = PreCommitInfo {
            proof: RegisteredSealProof::STACKED_DRG_2KIB_V1_1,
            comm_r: [4; 32],
            ticket_epoch: 0,
            epoch: 0,
        };
        fresh.restore_proven(SectorId { miner: 1000, number: 4 }, info.clone());
        fresh.restore_proven(SectorId { miner: 1000, number: 4 }, info);
        assert_eq!(fresh.proving_summary().deadlines, vec![vec![vec![4]], vec![], vec![]]);
        std::fs::write(&f, "{").unwrap();
        let e = Devnet::new(SystemTime::now(), Duration::from_secs(1), 1, [7; 32]).persisted(f).err().unwrap();
        assert!(e.contains("devnet.json is damaged"), "{e}");
    }
}
