//! The chain the miner seals against. There is no Lotus node here, so the miner carries a
//! local devnet chain behind the [`Chain`] trait; a Lotus full-node client can implement the
//! same trait later (ChainHead, StateGetRandomnessFromTickets/Beacon, MpoolPush of
//! PreCommitSector / ProveCommitSector, StateSectorGetInfo).

use sealing_proofs::Commitment;
use sealing_types::{RegisteredSealProof, SectorId};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub type Epoch = i64;

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("pre-commit of {sector} refused: {why}")]
    PreCommit { sector: SectorId, why: String },
    #[error("prove-commit of {sector} refused: {why}")]
    ProveCommit { sector: SectorId, why: String },
}

/// What the chain knows of a pre-committed sector.
#[derive(Clone, Debug)]
pub struct PreCommitInfo {
    pub proof: RegisteredSealProof,
    pub comm_r: Commitment,
    pub ticket_epoch: Epoch,
    pub epoch: Epoch,
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
    /// Verifies the seal proof (real Groth16 verification) before accepting.
    fn prove_commit(&self, sector: SectorId, comm_d: Commitment, proof: &[u8]) -> Result<Epoch, ChainError>;
    fn pre_commit_info(&self, sector: SectorId) -> Option<PreCommitInfo>;
    /// After a miner restart: what the miner had put on the chain, for a chain that lives in
    /// the miner's memory (a real chain keeps its own state and ignores this).
    fn restore_pre_commit(&self, _sector: SectorId, _info: PreCommitInfo) {}
}

/// A single-miner devnet: epochs follow the wall clock from a genesis time, randomness is a
/// hash of (domain, epoch, miner) with a per-devnet seed, and messages land at once.
pub struct Devnet {
    genesis: SystemTime,
    block_delay: Duration,
    seed_delay: Epoch,
    entropy: [u8; 32],
    state: Mutex<DevnetState>,
}

#[derive(Default)]
struct DevnetState {
    precommits: BTreeMap<SectorId, PreCommitInfo>,
    proven: BTreeMap<SectorId, Epoch>,
}

impl Devnet {
    pub fn new(genesis: SystemTime, block_delay: Duration, seed_delay: Epoch, entropy: [u8; 32]) -> Self {
        Devnet { genesis, block_delay, seed_delay, entropy, state: Mutex::new(DevnetState::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DevnetState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
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
        self.draw(2, miner, epoch)
    }
    fn seed(&self, miner: u64, epoch: Epoch) -> Option<[u8; 32]> {
        (self.head() >= epoch).then(|| self.draw(5, miner, epoch))
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
        if st.proven.contains_key(&sector) {
            return Err(ChainError::PreCommit { sector, why: "sector number already proven".into() });
        }
        if let Some(prev) = st.precommits.get(&sector) {
            if prev.comm_r == info.comm_r {
                return Ok(prev.epoch); // the same message again (after a restart)
            }
        }
        info.epoch = head;
        st.precommits.insert(sector, info);
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
        let sealer = sealing_proofs::Sealer::new(pc.proof, sector.miner, sector.number);
        match sealer.verify(pc.comm_r, comm_d, ticket, seed, proof) {
            Ok(true) => {}
            Ok(false) => return Err(err("the seal proof does not verify".into())),
            Err(e) => return Err(err(format!("verifying the proof: {e}"))),
        }
        let head = self.head();
        self.lock().proven.insert(sector, head);
        Ok(head)
    }
    fn pre_commit_info(&self, sector: SectorId) -> Option<PreCommitInfo> {
        self.lock().precommits.get(&sector).cloned()
    }
    fn restore_pre_commit(&self, sector: SectorId, info: PreCommitInfo) {
        self.lock().precommits.insert(sector, info);
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
}
