//! The devnet's chain state and the rules it applies: accounts and their keys, miner actors,
//! the message pool, and the miner actor's rules that a storage miner meets (pre-commit deposit
//! and expiry, the seed delay, seal and PoSt verification, deadline and partition assignment,
//! WindowPoSt windows, faults, recoveries, elections).
//!
//! It is pure: every operation takes the current epoch, so tests drive it without a clock.
//! Epochs follow the wall clock only in the daemon ([`crate::node`]). Messages pushed at epoch
//! `e` are included at `e + 1` and executed when the chain reaches it, each with a receipt and
//! an exit code, as on the real chain: a bad proof is a failed message, not an RPC error.

use lotus_api::chain::{
    actors, address_entropy, blake2b256, draw_randomness, policy, tags, Address, BeaconEntry, BigInt, ChainEpoch,
    Message, MessageReceipt, SectorPreCommitInfo, SignedMessage,
};
use lotus_api::wire::{Cid, Commitment};
use sealing_proofs::post::PoStKind;
use sealing_proofs::Backend;
use sealing_types::RegisteredSealProof;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

pub use fvm_shared::error::ExitCode;

/// The shape of the devnet, fixed at genesis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Params {
    pub network_name: String,
    pub block_delay_ms: u64,
    /// Epochs between a pre-commit landing and its interactive seed (PreCommitChallengeDelay).
    pub pre_commit_challenge_delay: ChainEpoch,
    #[serde(rename = "WPoStPeriodDeadlines")]
    pub wpost_period_deadlines: u64,
    #[serde(rename = "WPoStChallengeWindow")]
    pub wpost_challenge_window: ChainEpoch,
    #[serde(rename = "WPoStChallengeLookback")]
    pub wpost_challenge_lookback: ChainEpoch,
    /// The chance that a miner with power wins an epoch's election.
    pub win_rate: f64,
    /// Which proofs the chain accepts: real ones, or only mock ones (`--mock-proofs`).
    pub proofs: Backend,
    /// Epochs before a deadline opens after which faults and recoveries for it are refused
    /// (mainnet: 70 with a 60-epoch window); 0: scaled from the window as on mainnet.
    #[serde(default)]
    pub fault_declaration_cutoff: ChainEpoch,
    /// Epochs between proposing a worker key and its taking effect (mainnet: 900, a finality).
    #[serde(default = "default_worker_key_change_delay")]
    pub worker_key_change_delay: ChainEpoch,
    /// How far past the current epoch an extension may set a sector's expiration (v18: 1278 days).
    #[serde(default = "default_max_extension")]
    pub max_sector_expiration_extension: ChainEpoch,
}

fn default_worker_key_change_delay() -> ChainEpoch {
    900
}

fn default_max_extension() -> ChainEpoch {
    1278 * 2880
}

impl Default for Params {
    fn default() -> Self {
        Params {
            network_name: "devnet".into(),
            block_delay_ms: 1000,
            pre_commit_challenge_delay: 5,
            wpost_period_deadlines: 4,
            wpost_challenge_window: 20,
            wpost_challenge_lookback: 2,
            win_rate: 0.02,
            proofs: Backend::Real,
            fault_declaration_cutoff: 0,
            worker_key_change_delay: default_worker_key_change_delay(),
            max_sector_expiration_extension: default_max_extension(),
        }
    }
}

impl Params {
    pub fn proving_period(&self) -> ChainEpoch {
        self.wpost_period_deadlines.max(1) as ChainEpoch * self.wpost_challenge_window.max(1)
    }

    /// The fault-declaration cutoff in epochs (mainnet's 70 : 60 to the window when unset).
    pub fn fault_declaration_cutoff(&self) -> ChainEpoch {
        if self.fault_declaration_cutoff > 0 {
            self.fault_declaration_cutoff
        } else {
            self.wpost_challenge_window.max(1) * 7 / 6
        }
    }
}

/// attoFIL in one FIL.
pub const FIL: u128 = 1_000_000_000_000_000_000;
/// What genesis gives the default wallet.
pub const GENESIS_FUNDS: u128 = 1_000_000 * FIL;
/// The devnet's pre-commit deposit and initial pledge per sector (small: the devnet has no
/// reward actor to derive them from; what matters is that an address must be able to pay).
pub const PRE_COMMIT_DEPOSIT: u128 = FIL / 100;
pub const INITIAL_PLEDGE: u128 = FIL / 50;
/// The power actor's miner creation deposit.
pub const MINER_CREATION_DEPOSIT: u128 = FIL / 10;
/// The oldest ticket a pre-commit may use (MaxPreCommitRandomnessLookback, shortened).
pub const MAX_TICKET_AGE: ChainEpoch = policy::MAX_PRE_COMMIT_RANDOMNESS_LOOKBACK;
/// Sector lifetime bounds of a pre-commit's expiration (the actor's min/max sector expiration).
pub const MIN_SECTOR_LIFETIME: ChainEpoch = 100;
/// The gas a message is estimated at (the devnet charges no gas).
pub const GAS_LIMIT: i64 = 10_000_000;
/// Records kept per miner for `proving` views.
const KEEP: usize = 256;

/// An account: a key the node's wallet holds (or, for a key only sent to, none).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Account {
    /// The key address (`f1…`).
    pub key: Address,
    /// The secp256k1 secret key, when the wallet holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Vec<u8>>,
    pub balance: BigInt,
    pub nonce: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PreCommit {
    pub info: SectorPreCommitInfo,
    pub deposit: BigInt,
    pub epoch: ChainEpoch,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sector {
    pub seal_proof: i64,
    pub sealed_cid: Cid,
    pub activation: ChainEpoch,
    pub expiration: ChainEpoch,
    pub deadline: u64,
    pub partition: u64,
    pub faulty: bool,
    pub recovering: bool,
    pub pledge: BigInt,
    /// When it was terminated or expired: it stays in its partition's sectors (not live) until
    /// the partition is compacted.
    #[serde(default)]
    pub terminated: Option<ChainEpoch>,
    /// Activated and not yet proven in a WindowPoSt (the actor's unproven sectors).
    #[serde(default)]
    pub unproven: bool,
    /// Holds data: sealed with pieces, or updated with them (a snap deal).
    #[serde(default)]
    pub data: bool,
    /// The sector's original replica (its CommR) once a snap deal replaced its sealed CID.
    #[serde(default)]
    pub sector_key_cid: Option<Cid>,
    /// The epoch of its last update (its power base epoch from then).
    #[serde(default)]
    pub updated: Option<ChainEpoch>,
}

/// A miner actor.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Miner {
    pub owner: u64,
    pub worker: u64,
    pub peer_id: Option<String>,
    pub sector_size: u64,
    pub window_post_proof: i64,
    /// The actor's balance, and how much of it deposits and pledges lock.
    pub balance: BigInt,
    pub locked: BigInt,
    pub precommits: BTreeMap<u64, PreCommit>,
    pub sectors: BTreeMap<u64, Sector>,
    pub allocated: BTreeSet<u64>,
    /// Deadline index → partitions → sector numbers (partitions fill before new ones open).
    pub deadlines: Vec<Vec<Vec<u64>>>,
    /// Deadline instance (its open epoch) → partitions proven in it.
    pub proven: BTreeMap<ChainEpoch, BTreeSet<u64>>,
    /// Deadline instances closing at or before this epoch have been settled.
    pub settled: ChainEpoch,
    pub missed_deadlines: u64,
    pub penalised_sectors: u64,
    pub blocks_won: u64,
    pub won: BTreeSet<ChainEpoch>,
    /// Control addresses (they may send what the worker sends).
    #[serde(default)]
    pub control: Vec<u64>,
    /// A proposed worker key and the epoch it takes effect.
    #[serde(default)]
    pub pending_worker: Option<(u64, ChainEpoch)>,
    /// A proposed owner, until it confirms.
    #[serde(default)]
    pub pending_owner: Option<u64>,
    #[serde(default)]
    pub multiaddrs: Vec<Vec<u8>>,
    /// Penalties the balance could not pay (RepayDebt, withdrawals pay them first).
    #[serde(default = "BigInt::zero")]
    pub fee_debt: BigInt,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pending {
    pub message: SignedMessage,
    pub pushed: ChainEpoch,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Executed {
    pub message: SignedMessage,
    /// The epoch of the tipset whose state holds its effects (Lotus's execution tipset).
    pub height: ChainEpoch,
    pub receipt: MessageReceipt,
}

/// The whole chain.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    pub params: Params,
    /// Unix time of epoch 0, in milliseconds.
    pub genesis_ms: u64,
    /// The devnet's own randomness: every ticket and beacon entry derives from it.
    pub entropy: [u8; 32],
    pub next_account: u64,
    pub next_miner: u64,
    pub accounts: BTreeMap<u64, Account>,
    pub default_wallet: u64,
    pub miners: BTreeMap<u64, Miner>,
    pub pending: Vec<Pending>,
    /// By message CID.
    pub executed: BTreeMap<String, Executed>,
    /// Every epoch up to this one has been executed.
    pub height: ChainEpoch,
}

/// Why a message failed: its exit code and what went wrong (kept in the node's log; the
/// receipt carries the code).
#[derive(Debug)]
pub struct Failure {
    pub code: ExitCode,
    pub why: String,
}

fn fail(code: ExitCode, why: impl Into<String>) -> Failure {
    Failure { code, why: why.into() }
}

type Applied = Result<Vec<u8>, Failure>;

/// Randomness drawn, or why it cannot be.
pub type Drawn = Result<[u8; 32], String>;

impl State {
    pub fn genesis(params: Params, genesis_ms: u64, entropy: [u8; 32]) -> State {
        let mut st = State {
            params,
            genesis_ms,
            entropy,
            next_account: 100,
            next_miner: 1000,
            accounts: BTreeMap::new(),
            default_wallet: 0,
            miners: BTreeMap::new(),
            pending: vec![],
            executed: BTreeMap::new(),
            height: 0,
        };
        let id = st.new_key();
        st.accounts.get_mut(&id).expect("just created").balance = BigInt::from_atto(GENESIS_FUNDS);
        st.default_wallet = id;
        st
    }

    /// A new secp256k1 key in the wallet, as an account with no funds.
    pub fn new_key(&mut self) -> u64 {
        let secret = loop {
            // Nearly every 32-byte string is a valid secret key; retry the rare one that is not.
            if let Ok(k) = k256::ecdsa::SigningKey::from_slice(&rand::random::<[u8; 32]>()) {
                break k;
            }
        };
        let public = secret.verifying_key().to_encoded_point(false);
        let key =
            Address(fvm_shared::address::Address::new_secp256k1(public.as_bytes()).expect("a 65-byte public key"));
        let id = self.next_account;
        self.next_account += 1;
        self.accounts
            .insert(id, Account { key, secret: Some(secret.to_bytes().to_vec()), balance: BigInt::zero(), nonce: 0 });
        id
    }

    /// The actor ID of an address (an ID address, or a key address of an account).
    pub fn resolve(&self, a: &Address) -> Option<u64> {
        if let Some(id) = a.as_id() {
            return (self.accounts.contains_key(&id) || self.miners.contains_key(&id) || id < 100).then_some(id);
        }
        self.accounts.iter().find(|(_, acc)| acc.key == *a).map(|(id, _)| *id)
    }

    pub fn balance_of(&self, id: u64) -> BigInt {
        if let Some(a) = self.accounts.get(&id) {
            return a.balance.clone();
        }
        self.miners.get(&id).map(|m| m.balance.clone()).unwrap_or_default()
    }

    // ---- randomness -------------------------------------------------------------------

    /// 96 bytes (the size of a BLS signature, as tickets and beacon entries are) derived from
    /// the devnet's entropy, a domain and an epoch.
    fn derive(&self, domain: &[u8], epoch: ChainEpoch) -> Vec<u8> {
        let mut seed = domain.to_vec();
        seed.extend_from_slice(&self.entropy);
        seed.extend_from_slice(&epoch.to_be_bytes());
        let a = blake2b256(&seed);
        let b = blake2b256(&a);
        let c = blake2b256(&b);
        [a, b, c].concat()
    }

    /// The ticket of the tipset at `epoch` (its VRF proof bytes).
    pub fn ticket_vrf(&self, epoch: ChainEpoch) -> Vec<u8> {
        self.derive(b"devnet ticket", epoch)
    }

    /// The drand-like beacon entry of a round (the devnet's rounds are its epochs).
    pub fn beacon(&self, round: ChainEpoch) -> BeaconEntry {
        BeaconEntry { round: round.max(0) as u64, data: self.derive(b"devnet beacon", round).into() }
    }

    /// `StateGetRandomnessFromTickets`, Lotus's formula over the devnet's tickets.
    pub fn ticket_randomness(&self, tag: i64, epoch: ChainEpoch, entropy: &[u8], head: ChainEpoch) -> Drawn {
        Self::drawn(&self.ticket_vrf(epoch.max(0)), tag, epoch, entropy, head)
    }

    /// `StateGetRandomnessFromBeacon`.
    pub fn beacon_randomness(&self, tag: i64, epoch: ChainEpoch, entropy: &[u8], head: ChainEpoch) -> Drawn {
        Self::drawn(&self.beacon(epoch.max(0)).data.0, tag, epoch, entropy, head)
    }

    fn drawn(base: &[u8], tag: i64, epoch: ChainEpoch, entropy: &[u8], head: ChainEpoch) -> Drawn {
        if epoch > head {
            return Err(format!("cannot draw randomness from the future: epoch {epoch}, head {head}"));
        }
        Ok(draw_randomness(&blake2b256(base), tag, epoch, entropy))
    }

    // ---- deadlines ----------------------------------------------------------------------

    /// The deadline open at `epoch`: (period start, index, open).
    pub fn deadline_at(&self, epoch: ChainEpoch) -> (ChainEpoch, u64, ChainEpoch) {
        let period = self.params.proving_period();
        let window = self.params.wpost_challenge_window.max(1);
        let start = epoch.div_euclid(period) * period;
        let index = ((epoch - start) / window) as u64;
        (start, index, start + index as ChainEpoch * window)
    }

    /// The sectors a deadline instance requires of a partition: the live ones active before its
    /// challenge, less the faulty ones not declared recovered (the actor's active + recovering).
    pub fn required(&self, m: &Miner, deadline: u64, partition: u64, open: ChainEpoch) -> Vec<u64> {
        let challenge = open - self.params.wpost_challenge_lookback;
        m.deadlines
            .get(deadline as usize)
            .and_then(|d| d.get(partition as usize))
            .map(|p| {
                p.iter()
                    .copied()
                    .filter(|n| {
                        m.sectors.get(n).is_some_and(|s| {
                            s.activation < challenge && s.terminated.is_none() && (!s.faulty || s.recovering)
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Close every deadline instance that ended by `head`: a partition that had sectors to
    /// prove and got no proof is missed; its sectors become faulty.
    fn settle(&mut self, head: ChainEpoch) {
        let window = self.params.wpost_challenge_window.max(1);
        let ids: Vec<u64> = self.miners.keys().copied().collect();
        for id in ids {
            let mut m = self.miners.remove(&id).expect("listed");
            let mut close = (m.settled.div_euclid(window) + 1) * window;
            while close <= head {
                let (_, index, open) = self.deadline_at(close - window);
                let parts = m.deadlines.get(index as usize).map(Vec::len).unwrap_or(0);
                let mut missed = 0;
                for p in 0..parts as u64 {
                    let required = self.required(&m, index, p, open);
                    if required.is_empty() || m.proven.get(&open).is_some_and(|s| s.contains(&p)) {
                        continue;
                    }
                    missed += 1;
                    for n in required {
                        if let Some(s) = m.sectors.get_mut(&n) {
                            if !s.faulty {
                                m.penalised_sectors += 1;
                            }
                            s.faulty = true;
                            s.recovering = false;
                        }
                    }
                }
                let expired = Self::expire(&mut m, index, close);
                if !expired.is_empty() {
                    tracing::info!(miner = id, deadline = index, sectors = ?expired, "sectors expired");
                }
                Self::apply_pending_worker(&mut m, close);
                if missed > 0 {
                    m.missed_deadlines += 1;
                    tracing::warn!(
                        miner = id,
                        deadline = index,
                        open,
                        missed,
                        "WindowPoSt deadline missed: its sectors are faulty"
                    );
                }
                m.settled = close;
                close += window;
            }
            while m.proven.len() > KEEP {
                m.proven.pop_first();
            }
            self.miners.insert(id, m);
        }
    }

    // ---- messages -----------------------------------------------------------------------

    /// Bring the chain to `head`: execute the messages included at each epoch up to it, then
    /// settle the deadlines that closed.
    pub fn advance(&mut self, head: ChainEpoch) -> bool {
        if head <= self.height {
            return false;
        }
        // A message pushed at epoch e is included at e + 1 (when it is reached).
        let (due, later): (Vec<Pending>, Vec<Pending>) =
            std::mem::take(&mut self.pending).into_iter().partition(|p| p.pushed < head);
        self.pending = later;
        for p in due {
            let at = p.pushed + 1;
            self.settle(at);
            let cid = p.message.cid();
            let receipt = self.execute(&p.message.message, at);
            self.executed.insert(cid.to_string(), Executed { message: p.message, height: at, receipt });
        }
        self.settle(head);
        self.height = head;
        true
    }

    /// Fill in a message's nonce and gas, sign it with the sender's key and add it to the pool.
    pub fn push(&mut self, mut msg: Message, head: ChainEpoch) -> Result<SignedMessage, String> {
        let from = self
            .resolve(&msg.from)
            .ok_or_else(|| format!("the sender {} is not an account on this chain", msg.from))?;
        let pending =
            self.pending.iter().filter(|p| self.resolve(&p.message.message.from) == Some(from)).count() as u64;
        let acc = self.accounts.get(&from).ok_or_else(|| format!("the sender {} is not an account", msg.from))?;
        let secret = acc.secret.as_ref().ok_or_else(|| format!("the wallet holds no key for {}", msg.from))?;
        msg.nonce = acc.nonce + pending;
        if msg.gas_limit == 0 {
            msg.gas_limit = GAS_LIMIT;
        }
        if msg.gas_fee_cap == BigInt::zero() {
            msg.gas_fee_cap = BigInt::from_atto(100_000u64);
        }
        if msg.gas_premium == BigInt::zero() {
            msg.gas_premium = BigInt::from_atto(1_000u64);
        }
        let signed = sign(secret, msg)?;
        self.pending.push(Pending { message: signed.clone(), pushed: head });
        Ok(signed)
    }

    /// Apply one message at `epoch`: its value moves and its method runs, or nothing changes
    /// and the receipt says why.
    fn execute(&mut self, msg: &Message, epoch: ChainEpoch) -> MessageReceipt {
        let before = self.clone_for_rollback();
        let result = self.apply(msg, epoch);
        let (code, ret) = match result {
            Ok(ret) => (ExitCode::OK, ret),
            Err(f) => {
                tracing::warn!(
                    to = %msg.to, method = msg.method, exit = f.code.value(), "message failed: {}", f.why
                );
                self.restore(before);
                // The nonce is used even by a failed message.
                if let Some(id) = self.resolve(&msg.from) {
                    if let Some(a) = self.accounts.get_mut(&id) {
                        a.nonce = a.nonce.max(msg.nonce + 1);
                    }
                }
                (f.code, vec![])
            }
        };
        MessageReceipt {
            exit_code: code.value() as i64,
            return_data: (!ret.is_empty()).then(|| ret.into()),
            gas_used: GAS_LIMIT / 2,
            events_root: None,
        }
    }

    fn clone_for_rollback(&self) -> (BTreeMap<u64, Account>, BTreeMap<u64, Miner>, u64, u64) {
        (self.accounts.clone(), self.miners.clone(), self.next_account, self.next_miner)
    }

    fn restore(
        &mut self,
        (accounts, miners, next_account, next_miner): (BTreeMap<u64, Account>, BTreeMap<u64, Miner>, u64, u64),
    ) {
        self.accounts = accounts;
        self.miners = miners;
        self.next_account = next_account;
        self.next_miner = next_miner;
    }

    fn apply(&mut self, msg: &Message, epoch: ChainEpoch) -> Applied {
        let from = self
            .resolve(&msg.from)
            .filter(|id| self.accounts.contains_key(id))
            .ok_or_else(|| fail(ExitCode::SYS_SENDER_INVALID, format!("sender {} is not an account", msg.from)))?;
        let acc = self.accounts.get_mut(&from).expect("resolved");
        if msg.nonce != acc.nonce {
            return Err(fail(
                ExitCode::SYS_SENDER_STATE_INVALID,
                format!("nonce {} expected {}", msg.nonce, acc.nonce),
            ));
        }
        acc.nonce += 1;
        let value = msg.value.0.clone();
        if value < 0.into() {
            return Err(fail(ExitCode::SYS_ILLEGAL_INSTRUCTION, "a negative value"));
        }
        if acc.balance.0 < value {
            return Err(fail(
                ExitCode::SYS_INSUFFICIENT_FUNDS,
                format!("{} holds {} attoFIL, the message sends {}", msg.from, acc.balance, msg.value),
            ));
        }
        acc.balance.0 -= &value;
        // The receiver: an existing actor, or a new account for a key address.
        let to = match self.resolve(&msg.to) {
            Some(id) => id,
            None if msg.to.as_id().is_none() => {
                let id = self.next_account;
                self.next_account += 1;
                self.accounts.insert(id, Account { key: msg.to, secret: None, balance: BigInt::zero(), nonce: 0 });
                id
            }
            None => return Err(fail(ExitCode::SYS_INVALID_RECEIVER, format!("no actor {}", msg.to))),
        };
        if let Some(a) = self.accounts.get_mut(&to) {
            a.balance.0 += &value;
            return if msg.method == actors::METHOD_SEND {
                Ok(vec![])
            } else {
                Err(fail(ExitCode::USR_UNHANDLED_MESSAGE, format!("an account has no method {}", msg.method)))
            };
        }
        if to == actors::POWER_ACTOR {
            return match msg.method {
                actors::POWER_CREATE_MINER => self.create_miner(from, msg, epoch),
                m => Err(fail(ExitCode::USR_UNHANDLED_MESSAGE, format!("the power actor has no method {m} here"))),
            };
        }
        let Some(miner) = self.miners.get_mut(&to) else {
            return Err(fail(ExitCode::SYS_INVALID_RECEIVER, format!("{} cannot receive messages here", msg.to)));
        };
        miner.balance.0 += &value;
        if msg.method == actors::METHOD_SEND {
            return Ok(vec![]);
        }
        let params = msg.params_bytes();
        if let Some(applied) = self.operator_method(from, to, msg.method, params, epoch) {
            return applied;
        }
        let miner = &self.miners[&to];
        if !matches!(
            operator::caller(miner, from),
            operator::Caller::Owner | operator::Caller::Worker | operator::Caller::Control
        ) {
            return Err(fail(
                ExitCode::USR_FORBIDDEN,
                format!(
                    "caller f0{from} is neither the worker f0{}, a control address nor the owner f0{}",
                    miner.worker, miner.owner
                ),
            ));
        }
        let bad = |e: String| fail(ExitCode::USR_SERIALIZATION, e);
        match msg.method {
            actors::MINER_PRE_COMMIT_SECTOR_BATCH2 => {
                let p: actors::miner::PreCommitSectorBatchParams2 = actors::decode(params).map_err(bad)?;
                self.pre_commit(to, p, epoch)
            }
            actors::MINER_PROVE_COMMIT_SECTORS3 => {
                let p: actors::miner::ProveCommitSectors3Params = actors::decode(params).map_err(bad)?;
                self.prove_commit(to, p, epoch)
            }
            actors::MINER_SUBMIT_WINDOWED_POST => {
                let p: actors::miner::SubmitWindowedPoStParams = actors::decode(params).map_err(bad)?;
                self.window_post(to, p, epoch)
            }
            actors::MINER_PROVE_REPLICA_UPDATES3 => {
                let p: actors::miner::ProveReplicaUpdates3Params = actors::decode(params).map_err(bad)?;
                self.prove_replica_updates(to, p, epoch)
            }
            actors::MINER_DECLARE_FAULTS_RECOVERED => {
                let p: actors::miner::DeclareFaultsRecoveredParams = actors::decode(params).map_err(bad)?;
                self.declare_recovered(to, p, epoch)
            }
            actors::MINER_CHANGE_PEER_ID => {
                let p: actors::miner::ChangePeerIDParams = actors::decode(params).map_err(bad)?;
                // A peer ID is its multihash bytes; MinerInfo shows it base58-encoded, as libp2p does.
                self.miners.get_mut(&to).expect("exists").peer_id =
                    (!p.new_id.is_empty()).then(|| bs58::encode(&p.new_id).into_string());
                Ok(vec![])
            }
            m => {
                Err(fail(ExitCode::USR_UNHANDLED_MESSAGE, format!("the miner actor has no method {m} on this devnet")))
            }
        }
    }

    fn create_miner(&mut self, from: u64, msg: &Message, epoch: ChainEpoch) -> Applied {
        let p: actors::power::CreateMinerParams =
            actors::decode(msg.params_bytes()).map_err(|e| fail(ExitCode::USR_SERIALIZATION, e))?;
        if msg.value.0 < MINER_CREATION_DEPOSIT.into() {
            return Err(fail(
                ExitCode::USR_INSUFFICIENT_FUNDS,
                format!("the creation deposit is {MINER_CREATION_DEPOSIT} attoFIL, the message sends {}", msg.value),
            ));
        }
        let owner = self
            .resolve(&Address(p.owner))
            .ok_or_else(|| fail(ExitCode::USR_ILLEGAL_ARGUMENT, format!("owner {} is not an account", p.owner)))?;
        let worker = self
            .resolve(&Address(p.worker))
            .filter(|w| self.accounts.contains_key(w))
            .ok_or_else(|| fail(ExitCode::USR_ILLEGAL_ARGUMENT, format!("worker {} is not an account", p.worker)))?;
        let post = i64::from(p.window_post_proof_type);
        let sector_size = window_post_sector_size(post).ok_or_else(|| {
            fail(ExitCode::USR_ILLEGAL_ARGUMENT, format!("WindowPoSt proof type {post} is not a V1_1 type"))
        })?;
        let id = self.next_miner;
        self.next_miner += 1;
        self.miners.insert(
            id,
            Miner {
                owner,
                worker,
                peer_id: String::from_utf8(p.peer).ok().filter(|s| !s.is_empty()),
                sector_size,
                window_post_proof: post,
                balance: msg.value.clone(),
                locked: BigInt::zero(),
                precommits: BTreeMap::new(),
                sectors: BTreeMap::new(),
                allocated: BTreeSet::new(),
                deadlines: vec![vec![]; self.params.wpost_period_deadlines.max(1) as usize],
                proven: BTreeMap::new(),
                settled: epoch,
                missed_deadlines: 0,
                penalised_sectors: 0,
                blocks_won: 0,
                won: BTreeSet::new(),
                control: vec![],
                pending_worker: None,
                pending_owner: None,
                multiaddrs: p.multiaddrs.into_iter().map(|b| b.0).collect(),
                fee_debt: BigInt::zero(),
            },
        );
        tracing::info!(miner = id, owner, worker, sector_size, created_by = from, "miner actor created");
        let robust = fvm_shared::address::Address::new_actor(&id.to_be_bytes());
        let ret = actors::power::CreateMinerReturn {
            id_address: fvm_shared::address::Address::new_id(id),
            robust_address: robust,
        };
        Ok(actors::encode(&ret))
    }

    /// What the miner may spend: its balance above what deposits and pledges lock.
    fn available(m: &Miner) -> BigInt {
        BigInt(&m.balance.0 - &m.locked.0)
    }

    fn pre_commit(&mut self, id: u64, p: actors::miner::PreCommitSectorBatchParams2, epoch: ChainEpoch) -> Applied {
        let size = self.miners[&id].sector_size;
        if p.sectors.is_empty() {
            return Err(fail(ExitCode::USR_ILLEGAL_ARGUMENT, "no sectors to pre-commit"));
        }
        let need = PRE_COMMIT_DEPOSIT * p.sectors.len() as u128;
        let available = Self::available(&self.miners[&id]);
        if available.0 < need.into() {
            return Err(fail(
                ExitCode::USR_INSUFFICIENT_FUNDS,
                format!(
                    "insufficient funds for the pre-commit deposit: {need} attoFIL needed for {} sector(s), the miner has {available} available",
                    p.sectors.len()
                ),
            ));
        }
        for s in &p.sectors {
            let n = s.sector_number;
            let proof = i64::from(s.seal_proof);
            let sp = RegisteredSealProof::from_i64(proof).ok_or_else(|| {
                fail(ExitCode::USR_ILLEGAL_ARGUMENT, format!("sector {n}: unknown seal proof {proof}"))
            })?;
            if sp.sector_size().0 != size {
                return Err(fail(
                    ExitCode::USR_ILLEGAL_ARGUMENT,
                    format!("sector {n}: seal proof {proof} is not of the miner's sector size"),
                ));
            }
            let m = &self.miners[&id];
            if m.allocated.contains(&n) {
                return Err(fail(ExitCode::USR_ILLEGAL_ARGUMENT, format!("sector number {n} is already allocated")));
            }
            if s.seal_rand_epoch >= epoch {
                return Err(fail(
                    ExitCode::USR_ILLEGAL_ARGUMENT,
                    format!("sector {n}: ticket epoch {} is not in the past", s.seal_rand_epoch),
                ));
            }
            if epoch - s.seal_rand_epoch > MAX_TICKET_AGE {
                return Err(fail(
                    ExitCode::USR_ILLEGAL_ARGUMENT,
                    format!("sector {n}: ticket epoch {} is too old", s.seal_rand_epoch),
                ));
            }
            if s.expiration < epoch + MIN_SECTOR_LIFETIME {
                return Err(fail(
                    ExitCode::USR_ILLEGAL_ARGUMENT,
                    format!("sector {n}: expiration {} is too soon", s.expiration),
                ));
            }
            Commitment::Sealed
                .from_cid(&Cid(s.sealed_cid))
                .map_err(|e| fail(ExitCode::USR_ILLEGAL_ARGUMENT, format!("sector {n}: sealed CID: {e}")))?;
            let info = SectorPreCommitInfo {
                seal_proof: proof,
                sector_number: n,
                sealed_cid: Cid(s.sealed_cid),
                seal_rand_epoch: s.seal_rand_epoch,
                deal_ids: s.deal_ids.clone(),
                expiration: s.expiration,
                unsealed_cid: s.unsealed_cid.0.map(Cid),
            };
            let m = self.miners.get_mut(&id).expect("exists");
            m.allocated.insert(n);
            m.precommits.insert(n, PreCommit { info, deposit: BigInt::from_atto(PRE_COMMIT_DEPOSIT), epoch });
            m.locked.0 += PRE_COMMIT_DEPOSIT;
        }
        Ok(vec![])
    }

    fn prove_commit(&mut self, id: u64, p: actors::miner::ProveCommitSectors3Params, epoch: ChainEpoch) -> Applied {
        let n = p.sector_activations.len();
        let aggregated = !p.aggregate_proof.is_empty();
        if aggregated {
            if !p.sector_proofs.is_empty() {
                return Err(fail(ExitCode::USR_ILLEGAL_ARGUMENT, "both an aggregate proof and per-sector proofs"));
            }
            if p.aggregate_proof_type.is_none() {
                return Err(fail(ExitCode::USR_ILLEGAL_ARGUMENT, "an aggregate proof without its type"));
            }
            if !(policy::MIN_AGGREGATED_SECTORS..=policy::MAX_AGGREGATED_SECTORS).contains(&n) {
                return Err(fail(
                    ExitCode::USR_ILLEGAL_ARGUMENT,
                    format!(
                        "an aggregate of {n} sector(s): it must cover {} to {}",
                        policy::MIN_AGGREGATED_SECTORS,
                        policy::MAX_AGGREGATED_SECTORS
                    ),
                ));
            }
        } else if p.sector_proofs.len() != n {
            return Err(fail(
                ExitCode::USR_ILLEGAL_ARGUMENT,
                format!("{} sector(s) and {} proof(s)", n, p.sector_proofs.len()),
            ));
        }
        let miner_addr = Address::id(id);
        let entropy = address_entropy(&miner_addr);
        let mut fails = vec![];
        let mut checked = vec![];
        for (i, a) in p.sector_activations.iter().enumerate() {
            let r = self.seal_inputs(id, a.sector_number, &entropy, epoch).and_then(|(sp, sealed)| {
                if !aggregated {
                    self.verify_seal(id, sp, &sealed, &p.sector_proofs[i])?;
                }
                Ok((sp, sealed))
            });
            match r {
                Ok(c) => checked.push((i, c)),
                Err(f) => {
                    refused(id, a.sector_number, &f, "prove-commit");
                    if p.require_activation_success || aggregated {
                        return Err(f);
                    }
                    fails.push((i as u32, f.code));
                }
            }
        }
        if aggregated {
            let sp = checked[0].1 .0;
            let sectors: Vec<sealing_proofs::aggregate::SealedSector> =
                checked.iter().map(|(_, (_, s))| s.clone()).collect();
            match sealing_proofs::aggregate::verify_aggregate(self.params.proofs, sp, id, &sectors, &p.aggregate_proof)
            {
                Ok(true) => {}
                Ok(false) => {
                    return Err(fail(
                        ExitCode::USR_ILLEGAL_ARGUMENT,
                        format!("the aggregate proof of {n} sectors does not verify"),
                    ))
                }
                Err(e) => {
                    return Err(fail(ExitCode::USR_ILLEGAL_ARGUMENT, format!("verifying the aggregate proof: {e}")))
                }
            }
        }
        for (i, (_, sealed)) in checked {
            if let Err(f) = self.activate(id, sealed.sector, epoch) {
                refused(id, sealed.sector, &f, "activation");
                if p.require_activation_success {
                    return Err(f);
                }
                fails.push((i as u32, f.code));
            }
        }
        fails.sort_by_key(|(i, _)| *i);
        let ret = fil_actors_shared_batch_return(n as u32, fails);
        if ret.0 == 0 {
            return Err(fail(ExitCode::USR_ILLEGAL_ARGUMENT, "no sector was activated"));
        }
        Ok(ret.1)
    }

    /// A pre-committed sector's seal inputs, once its seed is behind us and before its
    /// pre-commit expires.
    fn seal_inputs(
        &self,
        id: u64,
        n: u64,
        entropy: &[u8],
        epoch: ChainEpoch,
    ) -> Result<(RegisteredSealProof, sealing_proofs::aggregate::SealedSector), Failure> {
        let m = &self.miners[&id];
        let pc = m
            .precommits
            .get(&n)
            .ok_or_else(|| fail(ExitCode::USR_NOT_FOUND, format!("sector {n} is not pre-committed")))?;
        let seed_epoch = pc.epoch + self.params.pre_commit_challenge_delay;
        if epoch <= seed_epoch {
            return Err(fail(
                ExitCode::USR_FORBIDDEN,
                format!("sector {n}: too early, the seed epoch {seed_epoch} is not behind us"),
            ));
        }
        if epoch > pc.epoch + policy::MAX_PROVE_COMMIT_DURATION {
            return Err(fail(
                ExitCode::USR_FORBIDDEN,
                format!(
                    "sector {n}: the pre-commit of epoch {} expired at epoch {}",
                    pc.epoch,
                    pc.epoch + policy::MAX_PROVE_COMMIT_DURATION
                ),
            ));
        }
        let ticket = self
            .ticket_randomness(tags::SEAL_RANDOMNESS, pc.info.seal_rand_epoch, entropy, epoch)
            .map_err(|e| fail(ExitCode::USR_ILLEGAL_STATE, e))?;
        let seed = self
            .beacon_randomness(tags::INTERACTIVE_SEAL_CHALLENGE_SEED, seed_epoch, entropy, epoch)
            .map_err(|e| fail(ExitCode::USR_ILLEGAL_STATE, e))?;
        let sp = RegisteredSealProof::from_i64(pc.info.seal_proof).expect("checked at pre-commit");
        let comm_r = Commitment::Sealed.from_cid(&pc.info.sealed_cid).expect("checked at pre-commit");
        let comm_d = match &pc.info.unsealed_cid {
            Some(c) => Commitment::Unsealed
                .from_cid(c)
                .map_err(|e| fail(ExitCode::USR_ILLEGAL_ARGUMENT, format!("sector {n}: unsealed CID: {e}")))?,
            None => sealing_proofs::Sealer::new(sp, id, n)
                .with_backend(self.params.proofs)
                .comm_d(&[])
                .map_err(|e| fail(ExitCode::USR_ILLEGAL_STATE, format!("the CC sector's CommD: {e}")))?,
        };
        let sealed = sealing_proofs::aggregate::SealedSector {
            sector: n,
            comm_r,
            comm_d,
            ticket: mask(ticket),
            seed: mask(seed),
        };
        Ok((sp, sealed))
    }

    fn verify_seal(
        &self,
        id: u64,
        sp: RegisteredSealProof,
        s: &sealing_proofs::aggregate::SealedSector,
        proof: &[u8],
    ) -> Result<(), Failure> {
        let n = s.sector;
        let sealer = sealing_proofs::Sealer::new(sp, id, n).with_backend(self.params.proofs);
        match sealer.verify(s.comm_r, s.comm_d, s.ticket, s.seed, proof) {
            Ok(true) => Ok(()),
            Ok(false) => {
                Err(fail(ExitCode::USR_ILLEGAL_ARGUMENT, format!("sector {n}: the seal proof does not verify")))
            }
            Err(e) => Err(fail(ExitCode::USR_ILLEGAL_ARGUMENT, format!("sector {n}: verifying the seal proof: {e}"))),
        }
    }

    /// A verified sector becomes active: its pledge locked, its deadline and partition assigned.
    fn activate(&mut self, id: u64, n: u64, epoch: ChainEpoch) -> Result<(), Failure> {
        let pc = self.miners[&id].precommits[&n].clone();
        let sp = RegisteredSealProof::from_i64(pc.info.seal_proof).expect("checked at pre-commit");
        let m = self.miners.get_mut(&id).expect("exists");
        if Self::available(m).0 < (INITIAL_PLEDGE - PRE_COMMIT_DEPOSIT).into() {
            return Err(fail(
                ExitCode::USR_INSUFFICIENT_FUNDS,
                format!("sector {n}: the miner cannot pay the initial pledge"),
            ));
        }
        // A CC sector's CommD is the zero pieces'; anything else was sealed with data.
        let cc = sealing_proofs::Sealer::new(sp, id, n).with_backend(self.params.proofs).cc_comm_d().ok();
        let data = match &pc.info.unsealed_cid {
            Some(c) => Commitment::Unsealed.from_cid(c).ok() != cc,
            None => false,
        };
        let m = self.miners.get_mut(&id).expect("exists");
        m.precommits.remove(&n);
        m.locked.0 += INITIAL_PLEDGE - PRE_COMMIT_DEPOSIT;
        let per = sealing_proofs::post::partition_sectors(sp.sector_size()).max(1);
        let (deadline, partition) = assign(&mut m.deadlines, per, n);
        m.sectors.insert(
            n,
            Sector {
                seal_proof: pc.info.seal_proof,
                sealed_cid: pc.info.sealed_cid,
                activation: epoch,
                expiration: pc.info.expiration,
                deadline,
                partition,
                faulty: false,
                recovering: false,
                pledge: BigInt::from_atto(INITIAL_PLEDGE),
                terminated: None,
                unproven: true,
                data,
                sector_key_cid: None,
                updated: None,
            },
        );
        tracing::info!(miner = id, sector = n, deadline, partition, "sector activated");
        Ok(())
    }

    fn window_post(&mut self, id: u64, p: actors::miner::SubmitWindowedPoStParams, epoch: ChainEpoch) -> Applied {
        let (_, index, open) = self.deadline_at(epoch);
        let close = open + self.params.wpost_challenge_window;
        if p.deadline != index {
            return Err(fail(
                ExitCode::USR_ILLEGAL_ARGUMENT,
                format!("deadline {} is not open at epoch {epoch} (deadline {index} is, until {close})", p.deadline),
            ));
        }
        let miner_addr = Address::id(id);
        let entropy = address_entropy(&miner_addr);
        let commit = self
            .ticket_randomness(tags::POST_CHAIN_COMMIT, p.chain_commit_epoch, &[], epoch)
            .map_err(|e| fail(ExitCode::USR_ILLEGAL_ARGUMENT, e))?;
        if p.chain_commit_rand.0 != commit {
            return Err(fail(ExitCode::USR_ILLEGAL_ARGUMENT, "the chain commit randomness is not the chain's"));
        }
        let challenge = open - self.params.wpost_challenge_lookback;
        let randomness = self
            .beacon_randomness(tags::WINDOWED_POST_CHALLENGE_SEED, challenge, &entropy, epoch)
            .map_err(|e| fail(ExitCode::USR_ILLEGAL_STATE, e))?;
        let m = &self.miners[&id];
        let mut public = BTreeMap::new();
        let mut proven_parts = vec![];
        let mut skipped_all = BTreeSet::new();
        for part in &p.partitions {
            if m.proven.get(&open).is_some_and(|s| s.contains(&part.index)) {
                return Err(fail(
                    ExitCode::USR_ILLEGAL_ARGUMENT,
                    format!("partition {} is already proven in this deadline", part.index),
                ));
            }
            if m.deadlines.get(index as usize).is_none_or(|d| d.len() as u64 <= part.index) {
                return Err(fail(ExitCode::USR_NOT_FOUND, format!("deadline {index} has no partition {}", part.index)));
            }
            let skipped: BTreeSet<u64> = part.skipped.iter().collect();
            for n in self.required(m, index, part.index, open) {
                if skipped.contains(&n) {
                    skipped_all.insert(n);
                } else {
                    let s = &m.sectors[&n];
                    public.insert(n, Commitment::Sealed.from_cid(&s.sealed_cid).expect("checked at pre-commit"));
                }
            }
            proven_parts.push(part.index);
        }
        if !public.is_empty() {
            let proof = p.proofs.first().ok_or_else(|| fail(ExitCode::USR_ILLEGAL_ARGUMENT, "no proof"))?;
            let size = sealing_types::SectorSize(m.sector_size);
            let prover = sealing_proofs::post::Prover::new(PoStKind::Window, size, id, mask(randomness))
                .map_err(|e| fail(ExitCode::USR_ILLEGAL_ARGUMENT, e.to_string()))?
                .with_backend(self.params.proofs);
            match prover.verify(&proof.proof_bytes, &public) {
                Ok(true) => {}
                Ok(false) => {
                    return Err(fail(ExitCode::USR_ILLEGAL_ARGUMENT, "invalid PoSt: the proof does not verify"))
                }
                Err(e) => return Err(fail(ExitCode::USR_ILLEGAL_ARGUMENT, format!("verifying the PoSt: {e}"))),
            }
        }
        let m = self.miners.get_mut(&id).expect("exists");
        for n in &skipped_all {
            if let Some(s) = m.sectors.get_mut(n) {
                s.faulty = true;
                s.recovering = false;
            }
        }
        for n in public.keys() {
            if let Some(s) = m.sectors.get_mut(n) {
                s.faulty = false; // a recovered sector proven is active again
                s.recovering = false;
                s.unproven = false;
            }
        }
        m.proven.entry(open).or_default().extend(proven_parts);
        Ok(vec![])
    }

    fn declare_recovered(
        &mut self,
        id: u64,
        p: actors::miner::DeclareFaultsRecoveredParams,
        epoch: ChainEpoch,
    ) -> Applied {
        for r in &p.recoveries {
            self.check_declaration_deadline(r.deadline, epoch)?;
        }
        let m = self.miners.get_mut(&id).expect("exists");
        for r in &p.recoveries {
            for n in r.sectors.iter() {
                match m.sectors.get_mut(&n) {
                    Some(s) if s.deadline == r.deadline && s.partition == r.partition => {
                        // Terminated or not faulty: nothing to recover (the actor ignores them).
                        if s.faulty && s.terminated.is_none() {
                            s.recovering = true;
                        }
                    }
                    _ => {
                        return Err(fail(
                            ExitCode::USR_ILLEGAL_ARGUMENT,
                            format!("sector {n} is not in deadline {} partition {}", r.deadline, r.partition),
                        ))
                    }
                }
            }
        }
        Ok(vec![])
    }

    // ---- elections ------------------------------------------------------------------------

    /// Whether the miner wins the round's election (it has power and the devnet's draw falls
    /// under the win rate).
    pub fn wins(&self, id: u64, round: ChainEpoch) -> bool {
        let Some(m) = self.miners.get(&id) else { return false };
        if self.params.win_rate <= 0.0 || !m.sectors.values().any(|s| !s.faulty) {
            return false;
        }
        let entropy = address_entropy(&Address::id(id));
        let r =
            draw_randomness(&blake2b256(&self.beacon(round).data.0), tags::ELECTION_PROOF_PRODUCTION, round, &entropy);
        let x = u64::from_be_bytes(r[..8].try_into().expect("8 bytes")) as f64 / u64::MAX as f64;
        x < self.params.win_rate
    }

    /// The WinningPoSt randomness of a round, as Lotus's miner draws it from the round's beacon.
    pub fn winning_randomness(&self, id: u64, round: ChainEpoch) -> [u8; 32] {
        let entropy = address_entropy(&Address::id(id));
        draw_randomness(&blake2b256(&self.beacon(round).data.0), tags::WINNING_POST_CHALLENGE_SEED, round, &entropy)
    }

    fn winning_prover(&self, m: &Miner, id: u64, round: ChainEpoch) -> Result<sealing_proofs::post::Prover, String> {
        let size = sealing_types::SectorSize(m.sector_size);
        let randomness = mask(self.winning_randomness(id, round));
        let prover =
            sealing_proofs::post::Prover::new(PoStKind::Winning, size, id, randomness).map_err(|e| e.to_string())?;
        Ok(prover.with_backend(self.params.proofs))
    }

    /// The active sectors a round's WinningPoSt challenges.
    pub fn winning_sectors(&self, id: u64, round: ChainEpoch) -> Result<Vec<u64>, String> {
        let m = self.miners.get(&id).ok_or_else(|| format!("no miner f0{id}"))?;
        let active: Vec<u64> = m.sectors.iter().filter(|(_, s)| !s.faulty).map(|(n, _)| *n).collect();
        if active.is_empty() {
            return Ok(vec![]);
        }
        let prover = self.winning_prover(m, id, round)?;
        let idx = prover.winning_indices(active.len() as u64).map_err(|e| e.to_string())?;
        Ok(idx.into_iter().filter_map(|i| active.get(i as usize).copied()).collect())
    }

    /// A block the miner mined at `round`, with its WinningPoSt: verified before it counts.
    pub fn accept_block(&mut self, id: u64, round: ChainEpoch, proof: &[u8], head: ChainEpoch) -> Result<(), String> {
        if round > head + 1 || round < head - 1 {
            return Err(format!("a block for round {round} is not timely at epoch {head}"));
        }
        if !self.wins(id, round) {
            return Err(format!("f0{id} did not win round {round}"));
        }
        if self.miners[&id].won.contains(&round) {
            return Err(format!("f0{id} already has a block at round {round}"));
        }
        let sectors = self.winning_sectors(id, round)?;
        let m = &self.miners[&id];
        let public: BTreeMap<u64, _> = sectors
            .iter()
            .map(|n| (*n, Commitment::Sealed.from_cid(&m.sectors[n].sealed_cid).expect("checked")))
            .collect();
        let prover = self.winning_prover(m, id, round)?;
        match prover.verify(proof, &public) {
            Ok(true) => {}
            Ok(false) => return Err("the WinningPoSt does not verify".into()),
            Err(e) => return Err(format!("verifying the WinningPoSt: {e}")),
        }
        let m = self.miners.get_mut(&id).expect("exists");
        m.blocks_won += 1;
        m.won.insert(round);
        while m.won.len() > KEEP {
            m.won.pop_first();
        }
        Ok(())
    }
}

/// Place a new sector: fill a partly filled partition first (fewest new partitions), then the
/// deadline with the fewest sectors, as the miner actor's deadline assignment does.
fn assign(deadlines: &mut [Vec<Vec<u64>>], per: usize, n: u64) -> (u64, u64) {
    let best = (0..deadlines.len())
        .min_by_key(|&i| {
            let d = &deadlines[i];
            let opens_new = d.last().is_none_or(|p| p.len() >= per);
            (opens_new, d.iter().map(Vec::len).sum::<usize>(), i)
        })
        .unwrap_or(0);
    (best as u64, fill(&mut deadlines[best], per, n))
}

/// Put a sector into a deadline's last partition, or a new one when it is full; its index.
fn fill(d: &mut Vec<Vec<u64>>, per: usize, n: u64) -> u64 {
    match d.last_mut() {
        Some(p) if p.len() < per => p.push(n),
        _ => d.push(vec![n]),
    }
    d.len() as u64 - 1
}

/// Randomness as the proofs use it: a field element (the prover and verifier mask it the
/// same way; the chain carries it unmasked).
fn refused(miner: u64, sector: u64, f: &Failure, what: &str) {
    tracing::warn!(miner, sector, exit = f.code.value(), "{what} refused: {}", f.why);
}

pub fn mask(mut r: [u8; 32]) -> [u8; 32] {
    r[31] &= 0x3f;
    r
}

/// The sector size of a V1_1 WindowPoSt proof type (what network version 28 requires).
pub fn window_post_sector_size(post: i64) -> Option<u64> {
    Some(match post {
        10 => 2 << 10,
        11 => 8 << 20,
        12 => 512 << 20,
        13 => 32 << 30,
        14 => 64 << 30,
        _ => return None,
    })
}

/// The V1_1 WindowPoSt proof type of a sector size.
pub fn window_post_proof_for(sector_size: u64) -> Option<i64> {
    (10..=14).find(|p| window_post_sector_size(*p) == Some(sector_size))
}

/// `BatchReturn` as CBOR: (the count that succeeded, its bytes).
fn fil_actors_shared_batch_return(total: u32, fails: Vec<(u32, ExitCode)>) -> (u32, Vec<u8>) {
    #[derive(Serialize_tuple)]
    struct FailCode {
        idx: u32,
        code: ExitCode,
    }
    #[derive(Serialize_tuple)]
    struct BatchReturn {
        success_count: u32,
        fail_codes: Vec<FailCode>,
    }
    use fvm_ipld_encoding::tuple::*;
    let ok = total - fails.len() as u32;
    let r = BatchReturn {
        success_count: ok,
        fail_codes: fails.into_iter().map(|(idx, code)| FailCode { idx, code }).collect(),
    };
    (ok, actors::encode(&r))
}

/// Sign a message as Filecoin signs with secp256k1: the recoverable signature (r ‖ s ‖ v) of
/// blake2b-256 of the message CID's bytes.
pub fn sign(secret: &[u8], msg: Message) -> Result<SignedMessage, String> {
    let key = k256::ecdsa::SigningKey::from_slice(secret).map_err(|e| format!("a damaged wallet key: {e}"))?;
    let digest = blake2b256(&msg.cid().0.to_bytes());
    let (sig, rec) = key.sign_prehash_recoverable(&digest).map_err(|e| format!("signing: {e}"))?;
    let mut data = sig.to_bytes().to_vec();
    data.push(rec.to_byte());
    Ok(SignedMessage {
        message: msg,
        signature: lotus_api::chain::Signature { kind: lotus_api::chain::SIG_SECP256K1, data: data.into() },
    })
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;

#[path = "operator.rs"]
pub mod operator;
#[path = "update.rs"]
mod update;
