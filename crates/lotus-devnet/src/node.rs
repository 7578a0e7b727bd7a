//! The devnet node: the chain state behind a lock, epochs from the wall clock (or any
//! [`Clock`]), the state file, and the FullNode v1 methods a storage miner calls, served with
//! Lotus's shapes, permissions and JWT auth.

use crate::state::{self, State};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use lotus_api::chain::*;
use lotus_api::contract::full as f;
use lotus_api::rpc::Authenticator;
use lotus_api::wire::{BitField, Bytes, Cid};
use lotus_api::{JwtSecret, RpcError, RpcServer};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The node's version string (`Version`).
pub const AGENT: &str = concat!("lotus-devnet/", env!("CARGO_PKG_VERSION"));
/// A message waited for longer than this without landing is reported as lost.
const WAIT_LIMIT: Duration = Duration::from_secs(3600);

/// Where the time comes from: the wall clock in the daemon, a hand in tests.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> u64;
}

pub struct WallClock;

impl Clock for WallClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
    }
}

pub struct Node {
    state: Mutex<State>,
    file: Option<PathBuf>,
    /// The state changed since it was last written ([`Node::flush`]).
    dirty: std::sync::atomic::AtomicBool,
    clock: Box<dyn Clock>,
    secret: JwtSecret,
}

impl Node {
    pub fn new(state: State, file: Option<PathBuf>, clock: Box<dyn Clock>, secret: JwtSecret) -> Arc<Node> {
        Arc::new(Node { state: Mutex::new(state), file, clock, secret, dirty: false.into() })
    }

    pub fn head(&self, st: &State) -> ChainEpoch {
        let now = self.clock.now_ms();
        (now.saturating_sub(st.genesis_ms) / st.params.block_delay_ms.max(1)) as ChainEpoch
    }

    pub fn block_delay(&self) -> Duration {
        Duration::from_millis(self.lock_raw().params.block_delay_ms.max(1))
    }

    fn lock_raw(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state brought to the current epoch (messages executed, deadlines settled, saved).
    pub fn state(&self) -> (MutexGuard<'_, State>, ChainEpoch) {
        let mut st = self.lock_raw();
        let head = self.head(&st);
        if st.advance(head) {
            self.mark_dirty();
        }
        (st, head)
    }

    /// Mark the state as changed: it is written by the next [`Node::flush`] (the daemon
    /// flushes every 250 ms and at shutdown). Writing the whole chain on every message would
    /// cost a write of all of it per message: quadratic in a long run.
    pub fn mark_dirty(&self) {
        self.dirty.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Write the state to its file, if it changed.
    pub fn flush(&self) {
        if !self.dirty.swap(false, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let Some(path) = &self.file else { return };
        let text = serde_json::to_vec(&*self.lock_raw()).expect("the chain state serialises");
        if let Err(e) = lotus_node::repo::write_atomic(path, &text, 0o600) {
            self.dirty.store(true, std::sync::atomic::Ordering::Release);
            tracing::error!("saving the chain state to {}: {e}", path.display());
        }
    }

    pub fn tipset_cid(st: &State, height: ChainEpoch) -> Cid {
        cbor_cid(&fvm_ipld_encoding::to_vec(&("devnet tipset", st.entropy, height)).expect("encodes"))
    }

    /// The tipset at `height`: one block, whose ticket and beacon entry every randomness of
    /// the epoch derives from.
    pub fn tipset(st: &State, height: ChainEpoch) -> TipSet {
        let aux = |what: &str| cbor_cid(&fvm_ipld_encoding::to_vec(&(what, st.entropy, height)).expect("encodes"));
        let parents = if height > 0 { vec![Self::tipset_cid(st, height - 1)] } else { vec![] };
        let block = BlockHeader {
            miner: Address::id(st.miners.keys().next().copied().unwrap_or(1000)),
            ticket: Some(Ticket { vrf_proof: st.ticket_vrf(height).into() }),
            election_proof: Some(ElectionProof { win_count: 1, vrf_proof: st.ticket_vrf(-height - 1).into() }),
            beacon_entries: vec![st.beacon(height)],
            win_post_proof: vec![],
            parents,
            parent_weight: BigInt::from_atto(height.max(0) as u64),
            height,
            parent_state_root: aux("state"),
            parent_message_receipts: aux("receipts"),
            messages: aux("messages"),
            bls_aggregate: None,
            timestamp: (st.genesis_ms + height.max(0) as u64 * st.params.block_delay_ms) / 1000,
            block_sig: None,
            fork_signaling: 0,
            parent_base_fee: BigInt::from_atto(100u64),
        };
        TipSet { cids: vec![Self::tipset_cid(st, height)], blocks: vec![block], height }
    }

    fn height_of(st: &State, key: &TipSetKey, head: ChainEpoch) -> Result<ChainEpoch, RpcError> {
        let Some(c) = key.0.first() else { return Ok(head) };
        // Tipset CIDs are hashes: look back from the head (a miner asks about recent ones).
        (0..=head)
            .rev()
            .take(100_000)
            .find(|h| Self::tipset_cid(st, *h) == *c)
            .ok_or_else(|| RpcError::method(format!("tipset {c} is not on this chain")))
    }

    fn miner<'a>(st: &'a State, a: &Address) -> Result<(u64, &'a state::Miner), RpcError> {
        let id = st.resolve(a).ok_or_else(|| RpcError::new(ACTOR_NOT_FOUND, format!("actor not found: {a}")))?;
        let m = st.miners.get(&id).ok_or_else(|| RpcError::method(format!("{a} is not a miner actor")))?;
        Ok((id, m))
    }

    pub fn deadline_info(st: &State, epoch: ChainEpoch) -> DeadlineInfo {
        let (period_start, index, open) = st.deadline_at(epoch);
        let p = &st.params;
        DeadlineInfo {
            current_epoch: epoch,
            period_start,
            index,
            open,
            close: open + p.wpost_challenge_window,
            challenge: open - p.wpost_challenge_lookback,
            fault_cutoff: open - p.fault_declaration_cutoff(),
            wpost_period_deadlines: p.wpost_period_deadlines,
            wpost_proving_period: p.proving_period(),
            wpost_challenge_window: p.wpost_challenge_window,
            wpost_challenge_lookback: p.wpost_challenge_lookback,
            fault_declaration_cutoff: p.fault_declaration_cutoff(),
        }
    }

    fn lookup(st: &State, cid: &Cid, e: &state::Executed) -> MsgLookup {
        MsgLookup {
            message: *cid,
            receipt: e.receipt.clone(),
            return_dec: serde_json::Value::Null,
            tip_set: TipSetKey(vec![Self::tipset_cid(st, e.height)]),
            height: e.height,
        }
    }

    fn sector_info(n: u64, s: &state::Sector) -> SectorOnChainInfo {
        SectorOnChainInfo {
            sector_number: n,
            seal_proof: s.seal_proof,
            sealed_cid: s.sealed_cid,
            activation: s.activation,
            expiration: s.expiration,
            deal_weight: BigInt::zero(),
            verified_deal_weight: BigInt::zero(),
            initial_pledge: s.pledge.clone(),
            expected_day_reward: BigInt::zero(),
            expected_storage_pledge: BigInt::zero(),
            power_base_epoch: s.updated.unwrap_or(s.activation),
            replaced_day_reward: BigInt::zero(),
            sector_key_cid: s.sector_key_cid,
            flags: 1,
            daily_fee: BigInt::zero(),
        }
    }

    fn power(st: &State, id: Option<u64>) -> BigInt {
        let sum = |m: &state::Miner| {
            m.sectors.values().filter(|s| !s.faulty && s.terminated.is_none()).count() as u64 * m.sector_size
        };
        let total: u64 = match id {
            Some(id) => st.miners.get(&id).map(sum).unwrap_or(0),
            None => st.miners.values().map(sum).sum(),
        };
        BigInt::from_atto(total)
    }
}

/// `api.EActorNotFound`: Lotus's error code for an address without an actor.
pub const ACTOR_NOT_FOUND: i64 = 11;

fn err(e: impl std::fmt::Display) -> RpcError {
    RpcError::method(e.to_string())
}

struct NodeAuth(Arc<Node>);

impl Authenticator for NodeAuth {
    fn verify(&self, token: &str) -> BoxFuture<'_, Result<lotus_api::Caller, String>> {
        let r = self.0.secret.verify_caller(token).map_err(|e| e.to_string());
        async move { r }.boxed()
    }
}

/// The node's HTTP routes: `/rpc/v1` (FullNode v1) and `/rpc/v0` (its `Version`, which
/// Lotus's `lotus-miner init` asks first).
pub fn router(node: Arc<Node>) -> axum::Router {
    let auth: Arc<dyn Authenticator> = Arc::new(NodeAuth(node.clone()));
    let v1 = Arc::new(server(node.clone()));
    let mut v0 = RpcServer::new(f::TABLE);
    v0.method::<f::Version, _, _, _>(node.clone(), |n, ()| async move {
        Ok(ApiVersion {
            version: AGENT.into(),
            api_version: FULL_API_VERSION_0,
            block_delay: n.block_delay().as_secs(),
            agent: AGENT.into(),
        })
    });
    lotus_api::rpc::router_on("/rpc/v1", v1, auth.clone()).merge(lotus_api::rpc::router_on(
        "/rpc/v0",
        Arc::new(v0),
        auth,
    ))
}

/// Every FullNode method the devnet serves.
pub fn server(node: Arc<Node>) -> RpcServer {
    let mut s = RpcServer::new(f::TABLE);
    let n = node;
    s.method::<f::Version, _, _, _>(n.clone(), |n, ()| async move {
        Ok(ApiVersion {
            version: AGENT.into(),
            api_version: FULL_API_VERSION_1,
            block_delay: n.block_delay().as_secs(),
            agent: AGENT.into(),
        })
    });
    s.method::<f::ChainHead, _, _, _>(n.clone(), |n, ()| async move {
        let (st, head) = n.state();
        Ok(Node::tipset(&st, head))
    });
    // The head as it changes: `current` first, then an `apply` per new tipset (the devnet
    // never reverts: it does not fork).
    s.channel::<f::ChainNotify, _, _, _, _>(n.clone(), |n, ()| async move {
        let (head, tipset) = {
            let (st, head) = n.state();
            (head, Node::tipset(&st, head))
        };
        let first = vec![HeadChange { kind: "current".into(), val: tipset }];
        let rest = futures_util::stream::unfold((n, head), |(n, last)| async move {
            loop {
                tokio::time::sleep(n.block_delay() / 4).await;
                let (st, head) = n.state();
                if head > last {
                    let changes = ((last + 1)..=head)
                        .map(|h| HeadChange { kind: "apply".into(), val: Node::tipset(&st, h) })
                        .collect::<Vec<_>>();
                    drop(st);
                    return Some((changes, (n.clone(), head)));
                }
            }
        });
        Ok(futures_util::stream::once(async move { first }).chain(rest))
    });
    s.method::<f::ChainGetGenesis, _, _, _>(n.clone(), |n, ()| async move { Ok(Node::tipset(&n.state().0, 0)) });
    s.method::<f::ChainGetTipSet, _, _, _>(n.clone(), |n, (key,)| async move {
        let (st, head) = n.state();
        Ok(Node::tipset(&st, Node::height_of(&st, &key, head)?))
    });
    s.method::<f::ChainGetTipSetByHeight, _, _, _>(n.clone(), |n, (height, key)| async move {
        let (st, head) = n.state();
        let top = Node::height_of(&st, &key, head)?;
        if height > top {
            return Err(err(format!("looking for tipset with height greater than start point ({height} > {top})")));
        }
        Ok(Node::tipset(&st, height.max(0)))
    });
    s.method::<f::StateGetNetworkParams, _, _, _>(n.clone(), |n, ()| async move {
        let (st, _) = n.state();
        Ok(NetworkParams {
            network_name: st.params.network_name.clone(),
            block_delay_secs: st.params.block_delay_ms / 1000,
            consensus_miner_min_power: BigInt::zero(),
            pre_commit_challenge_delay: st.params.pre_commit_challenge_delay,
            fork_upgrade_params: [("UpgradeFireHorseHeight".to_string(), -1i64)].into(),
            eip155_chain_id: 31415926,
            genesis_timestamp: st.genesis_ms / 1000,
            block_delay_ms: Some(st.params.block_delay_ms),
            genesis_ms: Some(st.genesis_ms),
        })
    });
    s.method::<f::StateNetworkName, _, _, _>(
        n.clone(),
        |n, ()| async move { Ok(n.state().0.params.network_name.clone()) },
    );
    s.method::<f::StateNetworkVersion, _, _, _>(n.clone(), |_, (_key,)| async move { Ok(28) });
    s.method::<f::StateGetRandomnessFromTickets, _, _, _>(n.clone(), |n, (tag, epoch, entropy, key)| async move {
        let (st, head) = n.state();
        let at = Node::height_of(&st, &key, head)?;
        st.ticket_randomness(tag, epoch, &entropy.unwrap_or_default().0, at).map(|r| Bytes(r.to_vec())).map_err(err)
    });
    s.method::<f::StateGetRandomnessFromBeacon, _, _, _>(n.clone(), |n, (tag, epoch, entropy, key)| async move {
        let (st, head) = n.state();
        let at = Node::height_of(&st, &key, head)?;
        st.beacon_randomness(tag, epoch, &entropy.unwrap_or_default().0, at).map(|r| Bytes(r.to_vec())).map_err(err)
    });
    s.method::<f::StateMinerInfo, _, _, _>(n.clone(), |n, (a, _key)| async move {
        let (st, _) = n.state();
        let (_, m) = Node::miner(&st, &a)?;
        let size = sealing_types::SectorSize(m.sector_size);
        Ok(MinerInfo {
            owner: Address::id(m.owner),
            worker: Address::id(m.worker),
            new_worker: MaybeAddress(m.pending_worker.map(|(w, _)| Address::id(w))),
            control_addresses: m.control.iter().map(|c| Address::id(*c)).collect(),
            worker_change_epoch: m.pending_worker.map_or(-1, |(_, at)| at),
            peer_id: m.peer_id.clone(),
            multiaddrs: m.multiaddrs.iter().map(|b| Bytes(b.clone())).collect(),
            window_po_st_proof_type: m.window_post_proof,
            sector_size: m.sector_size,
            window_po_st_partition_sectors: sealing_proofs::post::partition_sectors(size) as u64,
            consensus_fault_elapsed: -1,
            pending_owner_address: m.pending_owner.map(Address::id),
            beneficiary: Address::id(m.owner),
            beneficiary_term: BeneficiaryTerm::default(),
            pending_beneficiary_term: None,
        })
    });
    s.method::<f::StateMinerProvingDeadline, _, _, _>(n.clone(), |n, (a, _key)| async move {
        let (st, head) = n.state();
        Node::miner(&st, &a)?;
        Ok(Node::deadline_info(&st, head))
    });
    s.method::<f::StateMinerDeadlines, _, _, _>(n.clone(), |n, (a, _key)| async move {
        let (st, head) = n.state();
        let (_, m) = Node::miner(&st, &a)?;
        let period_start = st.deadline_at(head).0;
        let window = st.params.wpost_challenge_window;
        Ok((0..st.params.wpost_period_deadlines)
            .map(|i| {
                // The submissions of the deadline's current (or last) instance.
                let mut open = period_start + i as ChainEpoch * window;
                if open > head {
                    open -= st.params.proving_period();
                }
                let proven = m.proven.get(&open).cloned().unwrap_or_default();
                Deadline {
                    post_submissions: BitField::of(proven),
                    disputable_proof_count: 0,
                    daily_fee: BigInt::zero(),
                }
            })
            .collect())
    });
    s.method::<f::StateMinerPartitions, _, _, _>(n.clone(), |n, (a, dl, _key)| async move {
        let (st, head) = n.state();
        let (_, m) = Node::miner(&st, &a)?;
        let parts = m.deadlines.get(dl as usize).ok_or_else(|| err(format!("deadline {dl} out of range")))?;
        // Active: what the deadline's current instance requires (proven before its challenge).
        let (start, _, _) = st.deadline_at(head);
        let mut open = start + dl as ChainEpoch * st.params.wpost_challenge_window;
        if open > head + st.params.wpost_challenge_lookback {
            open -= st.params.proving_period();
        }
        Ok(parts
            .iter()
            .enumerate()
            .map(|(i, numbers)| {
                let bf = |pred: &dyn Fn(&state::Sector) -> bool| {
                    BitField::of(numbers.iter().copied().filter(|x| m.sectors.get(x).is_some_and(pred)))
                };
                let required: std::collections::BTreeSet<u64> =
                    st.required(m, dl, i as u64, open).into_iter().collect();
                Partition {
                    all_sectors: bf(&|_| true),
                    faulty_sectors: bf(&|s| s.faulty),
                    recovering_sectors: bf(&|s| s.recovering),
                    live_sectors: bf(&|s| s.terminated.is_none()),
                    active_sectors: BitField::of(
                        numbers.iter().copied().filter(|x| required.contains(x) && !m.sectors[x].faulty),
                    ),
                }
            })
            .collect())
    });
    s.method::<f::StateMinerSectors, _, _, _>(n.clone(), |n, (a, filter, _key)| async move {
        let (st, _) = n.state();
        let (_, m) = Node::miner(&st, &a)?;
        Ok(m.sectors
            .iter()
            .filter(|(x, s)| s.terminated.is_none() && filter.as_ref().is_none_or(|bf| bf.0.get(**x)))
            .map(|(x, s)| Node::sector_info(*x, s))
            .collect())
    });
    s.method::<f::StateMinerActiveSectors, _, _, _>(n.clone(), |n, (a, _key)| async move {
        let (st, _) = n.state();
        let (_, m) = Node::miner(&st, &a)?;
        Ok(m.sectors
            .iter()
            .filter(|(_, s)| s.terminated.is_none() && !s.faulty)
            .map(|(x, s)| Node::sector_info(*x, s))
            .collect())
    });
    s.method::<f::StateMinerSectorCount, _, _, _>(n.clone(), |n, (a, _key)| async move {
        let (st, _) = n.state();
        let (_, m) = Node::miner(&st, &a)?;
        let live: Vec<&state::Sector> = m.sectors.values().filter(|s| s.terminated.is_none()).collect();
        let faulty = live.iter().filter(|s| s.faulty).count() as u64;
        Ok(MinerSectors { live: live.len() as u64, active: live.len() as u64 - faulty, faulty })
    });
    s.method::<f::StateMinerFaults, _, _, _>(n.clone(), |n, (a, _key)| async move {
        let (st, _) = n.state();
        let (_, m) = Node::miner(&st, &a)?;
        Ok(BitField::of(m.sectors.iter().filter(|(_, s)| s.faulty).map(|(x, _)| *x)))
    });
    s.method::<f::StateMinerRecoveries, _, _, _>(n.clone(), |n, (a, _key)| async move {
        let (st, _) = n.state();
        let (_, m) = Node::miner(&st, &a)?;
        Ok(BitField::of(m.sectors.iter().filter(|(_, s)| s.recovering).map(|(x, _)| *x)))
    });
    s.method::<f::StateSectorPreCommitInfo, _, _, _>(n.clone(), |n, (a, x, _key)| async move {
        let (st, _) = n.state();
        let (_, m) = Node::miner(&st, &a)?;
        Ok(m.precommits.get(&x).map(|p| SectorPreCommitOnChainInfo {
            info: p.info.clone(),
            pre_commit_deposit: p.deposit.clone(),
            pre_commit_epoch: p.epoch,
        }))
    });
    s.method::<f::StateSectorGetInfo, _, _, _>(n.clone(), |n, (a, x, _key)| async move {
        let (st, _) = n.state();
        let (_, m) = Node::miner(&st, &a)?;
        Ok(m.sectors.get(&x).filter(|s| s.terminated.is_none()).map(|s| Node::sector_info(x, s)))
    });
    s.method::<f::StateSectorPartition, _, _, _>(n.clone(), |n, (a, x, _key)| async move {
        let (st, _) = n.state();
        let (_, m) = Node::miner(&st, &a)?;
        Ok(m.sectors
            .get(&x)
            .filter(|s| s.terminated.is_none())
            .map(|s| SectorLocation { deadline: s.deadline, partition: s.partition }))
    });
    s.method::<f::StateMinerSectorAllocated, _, _, _>(n.clone(), |n, (a, x, _key)| async move {
        let (st, _) = n.state();
        let (_, m) = Node::miner(&st, &a)?;
        Ok(m.allocated.contains(&x))
    });
    s.method::<f::StateMinerPreCommitDepositForPower, _, _, _>(n.clone(), |_, (_a, _info, _key)| async move {
        Ok(BigInt::from_atto(state::PRE_COMMIT_DEPOSIT))
    });
    s.method::<f::StateMinerInitialPledgeForSector, _, _, _>(n.clone(), |_, (_d, _size, _verified, _key)| async move {
        Ok(BigInt::from_atto(state::INITIAL_PLEDGE))
    });
    s.method::<f::StateMinerInitialPledgeCollateral, _, _, _>(n.clone(), |_, (_a, _info, _key)| async move {
        Ok(BigInt::from_atto(state::INITIAL_PLEDGE))
    });
    s.method::<f::StateMinerCreationDeposit, _, _, _>(n.clone(), |_, (_key,)| async move {
        Ok(BigInt::from_atto(state::MINER_CREATION_DEPOSIT))
    });
    s.method::<f::StateMinerAvailableBalance, _, _, _>(n.clone(), |n, (a, _key)| async move {
        let (st, _) = n.state();
        let (_, m) = Node::miner(&st, &a)?;
        Ok(BigInt(&m.balance.0 - &m.locked.0 - &m.fee_debt.0))
    });
    s.method::<f::StateMinerPower, _, _, _>(n.clone(), |n, (a, _key)| async move {
        let (st, _) = n.state();
        let (id, _) = Node::miner(&st, &a)?;
        let mine = Node::power(&st, Some(id));
        let total = Node::power(&st, None);
        Ok(MinerPower {
            miner_power: Claim { raw_byte_power: mine.clone(), quality_adj_power: mine },
            total_power: Claim { raw_byte_power: total.clone(), quality_adj_power: total },
            has_min_power: true,
        })
    });
    s.method::<f::StateLookupID, _, _, _>(n.clone(), |n, (a, _key)| async move {
        let (st, _) = n.state();
        st.resolve(&a).map(Address::id).ok_or_else(|| RpcError::new(ACTOR_NOT_FOUND, format!("actor not found: {a}")))
    });
    s.method::<f::StateAccountKey, _, _, _>(n.clone(), |n, (a, _key)| async move {
        let (st, _) = n.state();
        let id = st.resolve(&a).ok_or_else(|| RpcError::new(ACTOR_NOT_FOUND, format!("actor not found: {a}")))?;
        st.accounts.get(&id).map(|acc| acc.key).ok_or_else(|| err(format!("{a} is not an account actor")))
    });
    s.method::<f::StateWaitMsg, _, _, _>(n.clone(), |n, (cid, confidence, _limit, _replaced)| async move {
        let started = std::time::Instant::now();
        loop {
            {
                let (st, head) = n.state();
                match st.executed.get(&cid.to_string()) {
                    Some(e) if head >= e.height + confidence as ChainEpoch => return Ok(Node::lookup(&st, &cid, e)),
                    Some(_) => {}
                    None if st.pending.iter().any(|p| p.message.cid() == cid) => {}
                    None => return Err(err(format!("message {cid} was never pushed to this node"))),
                }
            }
            if started.elapsed() > WAIT_LIMIT {
                return Err(err(format!("message {cid} did not land within {} s", WAIT_LIMIT.as_secs())));
            }
            tokio::time::sleep(n.block_delay() / 4).await;
        }
    });
    s.method::<f::StateSearchMsg, _, _, _>(n.clone(), |n, (_from, cid, _limit, _replaced)| async move {
        let (st, _) = n.state();
        Ok(st.executed.get(&cid.to_string()).map(|e| Node::lookup(&st, &cid, e)))
    });
    s.method::<f::GasEstimateMessageGas, _, _, _>(n.clone(), |_, (mut m, _spec, _key)| async move {
        if m.gas_limit == 0 {
            m.gas_limit = state::GAS_LIMIT;
        }
        m.gas_fee_cap = BigInt::from_atto(100_000u64);
        m.gas_premium = BigInt::from_atto(1_000u64);
        Ok(m)
    });
    s.method::<f::MpoolPushMessage, _, _, _>(n.clone(), |n, (m, _spec)| async move {
        let (mut st, head) = n.state();
        let signed = st.push(m, head).map_err(err)?;
        tracing::info!(cid = %signed.cid(), to = %signed.message.to, method = signed.message.method, "message pushed");
        n.mark_dirty();
        Ok(signed)
    });
    s.method::<f::MpoolGetNonce, _, _, _>(n.clone(), |n, (a,)| async move {
        let (st, _) = n.state();
        let id = st.resolve(&a).ok_or_else(|| RpcError::new(ACTOR_NOT_FOUND, format!("actor not found: {a}")))?;
        let pending = st.pending.iter().filter(|p| st.resolve(&p.message.message.from) == Some(id)).count() as u64;
        Ok(st.accounts.get(&id).map(|acc| acc.nonce).unwrap_or(0) + pending)
    });
    s.method::<f::WalletBalance, _, _, _>(n.clone(), |n, (a,)| async move {
        let (st, _) = n.state();
        Ok(st.resolve(&a).map(|id| st.balance_of(id)).unwrap_or_default())
    });
    s.method::<f::WalletHas, _, _, _>(n.clone(), |n, (a,)| async move {
        let (st, _) = n.state();
        Ok(st.resolve(&a).and_then(|id| st.accounts.get(&id)).is_some_and(|acc| acc.secret.is_some()))
    });
    s.method::<f::WalletDefaultAddress, _, _, _>(n.clone(), |n, ()| async move {
        let (st, _) = n.state();
        Ok(st.accounts[&st.default_wallet].key)
    });
    s.method::<f::WalletNew, _, _, _>(n.clone(), |n, (kind,)| async move {
        // The devnet's wallet makes secp256k1 keys (the kind a BLS key is asked for too: the
        // devnet checks no BLS aggregate).
        if kind != "bls" && kind != "secp256k1" {
            return Err(err(format!("unknown key type {kind:?}: use bls or secp256k1")));
        }
        let (mut st, _) = n.state();
        let id = st.new_key();
        n.mark_dirty();
        Ok(st.accounts[&id].key)
    });
    s.method::<f::MinerGetBaseInfo, _, _, _>(n.clone(), |n, (a, round, _key)| async move {
        let (st, _) = n.state();
        let (id, m) = Node::miner(&st, &a)?;
        let worker = st.accounts.get(&m.worker).map(|acc| acc.key).unwrap_or(Address::id(m.worker));
        let sectors = st.winning_sectors(id, round).map_err(err)?;
        Ok(Some(MiningBaseInfo {
            miner_power: Node::power(&st, Some(id)),
            network_power: Node::power(&st, None),
            sectors: sectors
                .iter()
                .map(|x| ExtendedSectorInfo {
                    seal_proof: m.sectors[x].seal_proof,
                    sector_number: *x,
                    sector_key: m.sectors[x].sector_key_cid,
                    sealed_cid: m.sectors[x].sealed_cid,
                })
                .collect(),
            worker_key: worker,
            sector_size: m.sector_size,
            prev_beacon_entry: st.beacon(round - 1),
            beacon_entries: vec![st.beacon(round)],
            eligible_for_mining: st.wins(id, round),
        }))
    });
    s.method::<f::MinerCreateBlock, _, _, _>(n.clone(), |n, (t,)| async move {
        let (st, _) = n.state();
        let parent = Node::tipset(&st, t.epoch - 1);
        let mut header = Node::tipset(&st, t.epoch).blocks.remove(0);
        header.miner = t.miner;
        header.ticket = t.ticket.clone();
        header.election_proof = t.eproof.clone();
        header.beacon_entries = t.beacon_values.clone();
        header.win_post_proof = t.winning_post_proof.clone();
        header.parents = parent.cids;
        header.timestamp = t.timestamp;
        Ok(BlockMsg { header, bls_messages: vec![], secpk_messages: t.messages.iter().map(|m| m.cid()).collect() })
    });
    s.method::<f::SyncSubmitBlock, _, _, _>(n.clone(), |n, (b,)| async move {
        let (mut st, head) = n.state();
        let id = st.resolve(&b.header.miner).ok_or_else(|| err(format!("no miner {}", b.header.miner)))?;
        let proof = b.header.win_post_proof.first().ok_or_else(|| err("the block has no WinningPoSt"))?;
        st.accept_block(id, b.header.height, &proof.proof_bytes.0, head).map_err(err)?;
        tracing::info!(miner = id, round = b.header.height, "block accepted");
        n.mark_dirty();
        Ok(())
    });
    s.method::<f::SyncState, _, _, _>(n.clone(), |n, ()| async move {
        let (st, head) = n.state();
        let ts = Node::tipset(&st, head);
        Ok(SyncState {
            active_syncs: vec![ActiveSync {
                worker_id: 0,
                base: Some(ts.clone()),
                target: Some(ts),
                stage: 4,
                height: head,
                start: "0001-01-01T00:00:00Z".into(),
                end: "0001-01-01T00:00:00Z".into(),
                message: String::new(),
            }],
            vm_applied: 0,
        })
    });
    s.method::<f::AuthVerify, _, _, _>(n.clone(), |n, (token,)| async move { n.secret.verify(&token).map_err(err) });
    s.method::<f::AuthNew, _, _, _>(n.clone(), |n, (perms,)| async move {
        Ok(Bytes(n.secret.create_token(&perms).into_bytes()))
    });
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock that starts at genesis and moves by hand.
    struct Hand(Arc<std::sync::atomic::AtomicU64>);
    impl Clock for Hand {
        fn now_ms(&self) -> u64 {
            self.0.load(std::sync::atomic::Ordering::Relaxed)
        }
    }

    /// ChainNotify over a WebSocket: the head as `current`, then an `apply` per new tipset
    /// in order; over HTTP the same call is refused (a channel needs a WebSocket).
    #[tokio::test]
    async fn chain_notify_sends_the_head_then_each_new_tipset() {
        let params = state::Params { block_delay_ms: 40, proofs: sealing_proofs::Backend::Mock, ..Default::default() };
        let now = Arc::new(std::sync::atomic::AtomicU64::new(1_000_000));
        let node = Node::new(
            State::genesis(params, 1_000_000, [3; 32]),
            None,
            Box::new(Hand(now.clone())),
            JwtSecret::generate(),
        );
        let token = node.secret.create_token(&lotus_api::Permission::Read.with_lower());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(node)).await.unwrap() });
        let url = format!("http://{addr}/rpc/v1");
        let client = lotus_api::RpcClient::new(url, Some(token), Duration::from_secs(5));

        let refused = client.request::<f::ChainNotify>(()).await.unwrap_err().to_string();
        assert!(refused.contains("WebSocket"), "{refused}");

        now.store(1_000_000 + 2 * 40, std::sync::atomic::Ordering::Relaxed);
        let mut rx = client.subscribe::<f::ChainNotify>(()).await.unwrap();
        let first = rx.recv().await.unwrap();
        assert_eq!((first[0].kind.as_str(), first[0].val.height), ("current", 2));
        now.store(1_000_000 + 5 * 40, std::sync::atomic::Ordering::Relaxed);
        let mut heights = vec![];
        while heights.len() < 3 {
            for c in rx.recv().await.unwrap() {
                assert_eq!(c.kind, "apply");
                heights.push(c.val.height);
            }
        }
        assert_eq!(heights, vec![3, 4, 5]);
    }
}
