//! The chain, as the miner reaches it: a full node's FullNode v1 JSON-RPC API, named by
//! `FULLNODE_API_INFO` (Lotus's `TOKEN:/ip4/…/tcp/…/http`; comma-separated entries fail over),
//! as Lotus's miner reaches its node. Every sealing and proving step is a message the node
//! signs with the miner's worker key and the chain executes epochs later: PreCommitSectorBatch2,
//! ProveCommitSectors3, SubmitWindowedPoSt, each waited for and its exit code read. Tickets,
//! seeds, deadlines, partitions and challenges are read from chain state.
//!
//! The methods and shapes are Lotus's ([`lotus_api::contract::full`], held to Lotus's
//! documents); the message params are CBOR of the builtin actors' v18 types.

use lotus_api::chain::{self as c, actors, Address, BigInt, Message, MessageSendSpec, TipSetKey};
use lotus_api::contract::full as f;
use lotus_api::contract::Method;
use lotus_api::wire::{BitField, Bytes, Cid};
use lotus_api::{ApiInfo, ClientError, RpcClient};
use sealing_proofs::Commitment;
use sealing_types::RegisteredSealProof;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub type Epoch = i64;

/// What went wrong reaching or using the chain, by what the caller must do.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The node cannot be reached or failed the call: retry later.
    #[error("the full node: {0}")]
    Node(#[from] ClientError),
    /// A message was executed and failed: its exit code says why.
    #[error("{method} message {cid} failed on chain with exit code {exit_code} ({meaning})")]
    Failed { method: &'static str, cid: Box<Cid>, exit_code: i64, meaning: &'static str },
    /// The chain's state does not allow the step.
    #[error("{0}")]
    State(String),
}

impl ChainError {
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ChainError::Node(e) if e.is_unreachable())
    }
}

/// One sector of a PreCommitSectorBatch2.
#[derive(Clone, Debug)]
pub struct PreCommitSpec {
    pub number: u64,
    pub proof: RegisteredSealProof,
    pub comm_r: Commitment,
    pub comm_d: Commitment,
    pub ticket_epoch: Epoch,
    /// Epochs from the pre-commit to the sector's expiration (`[Sealing]
    /// CommittedCapacitySectorLifetime` in epochs).
    pub lifetime: Epoch,
}

/// The proofs of a ProveCommitSectors3: one per sector, or one aggregate for all.
#[derive(Clone, Debug)]
pub enum CommitProof {
    PerSector(Vec<Vec<u8>>),
    Aggregate(Vec<u8>),
}

/// What the chain knows of a pre-committed sector.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PreCommitInfo {
    pub proof: RegisteredSealProof,
    pub comm_r: Commitment,
    pub ticket_epoch: Epoch,
    pub epoch: Epoch,
}

/// The proving period's shape, from the node (`StateMinerProvingDeadline`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProvingParams {
    pub deadlines: u64,
    /// Epochs a deadline stays open (WPoStChallengeWindow).
    pub window: Epoch,
    /// Epochs between the challenge and the deadline's opening (WPoStChallengeLookback).
    pub lookback: Epoch,
}

/// One deadline instance, as Lotus's `dline.Info` (the fields `proving` shows).
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

impl From<&c::DeadlineInfo> for DeadlineInfo {
    fn from(d: &c::DeadlineInfo) -> Self {
        DeadlineInfo {
            current_epoch: d.current_epoch,
            period_start: d.period_start,
            index: d.index,
            open: d.open,
            close: d.close,
            challenge: d.challenge,
            deadlines: d.wpost_period_deadlines,
        }
    }
}

/// A sector the miner must prove in a deadline instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProvingSector {
    pub number: u64,
    pub proof: RegisteredSealProof,
    pub comm_r: Commitment,
    pub faulty: bool,
    /// Faulty and declared recovered: its deadline expects a proof of it again.
    #[serde(default)]
    pub recovering: bool,
    /// Updated by a snap deal (its SectorKeyCID is set): proven from its update files.
    #[serde(default)]
    pub update: bool,
}

/// A partition of a deadline and the sectors of it the instance requires.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PartitionInfo {
    pub index: usize,
    pub sectors: Vec<ProvingSector>,
}

impl PartitionInfo {
    /// What the deadline's proof must cover: the active sectors and the recovering ones (the
    /// faulty ones not declared recovered are left out, as the actor leaves them out).
    pub fn to_prove(&self) -> Vec<ProvingSector> {
        self.sectors.iter().filter(|s| !s.faulty || s.recovering).cloned().collect()
    }

    /// Faulty sectors not yet declared recovered: candidates for a DeclareFaultsRecovered.
    pub fn to_recover(&self) -> Vec<ProvingSector> {
        self.sectors.iter().filter(|s| s.faulty && !s.recovering).cloned().collect()
    }
}

/// A WindowPoSt for one partition; `skipped` are the sectors the prover could not read.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WindowPoStSubmission {
    pub deadline: u64,
    pub open: Epoch,
    pub challenge: Epoch,
    pub partition: usize,
    pub proven: Vec<u64>,
    pub skipped: Vec<u64>,
    pub proof: Vec<u8>,
    pub post_proof: i64,
}

/// An accepted WindowPoSt, as the miner recorded it.
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

/// The whole proving picture, for `lotus-miner proving …` and `info`: the partitions and
/// faults from chain state, the rest from what this miner did and saw.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProvingSummary {
    /// Per deadline index: its partitions' live sector numbers.
    pub deadlines: Vec<Vec<Vec<u64>>>,
    /// The same with terminated sectors not compacted away yet (`proving deadlines --all`).
    #[serde(default)]
    pub all_sectors: Vec<Vec<Vec<u64>>>,
    pub faults: Vec<u64>,
    pub active: u64,
    /// Deadline instances that closed with a partition not proven.
    pub missed_deadlines: u64,
    /// Sector-deadlines in those partitions.
    pub penalised_sectors: u64,
    pub posts: Vec<PoStRecord>,
    pub blocks_won: u64,
    pub blocks_refused: u64,
}

/// A snap deal's ProveReplicaUpdates3: one sector's update.
pub struct ReplicaUpdateSpec {
    pub number: u64,
    pub seal_proof: RegisteredSealProof,
    pub deadline: u64,
    pub partition: u64,
    pub comm_r: Commitment,
    /// Each piece's commitment and padded size.
    pub pieces: Vec<(Commitment, u64)>,
    pub proof: Vec<u8>,
}

/// A round this miner may mine: the sectors its WinningPoSt proves, and the randomness.
pub struct MiningRound {
    pub randomness: [u8; 32],
    pub sectors: Vec<ProvingSector>,
}

/// The epochs a message must have on top of it before the miner acts on it (Lotus's
/// `MessageConfidence`).
pub const DEFAULT_CONFIDENCE: u64 = 5;

/// A client of one full node (or of the first that answers of several).
pub struct ChainClient {
    nodes: Vec<(String, RpcClient)>,
    current: AtomicUsize,
    /// The miner actor (an ID address) and its worker key, which pays and signs.
    pub miner: Address,
    pub worker: Address,
    pub sector_size: u64,
    window_post_proof: i64,
    entropy: Vec<u8>,
    block_delay: Duration,
    genesis_ms: u64,
    seed_delay: Epoch,
    shape: c::DeadlineInfo,
    confidence: u64,
    pub network_name: String,
    /// The highest head seen (`ChainNotify`, or `ChainHead` polls while it is down).
    heads: tokio::sync::watch::Sender<Epoch>,
    /// Whether the head comes from `ChainNotify` now (`false`: polling).
    pub notified: std::sync::atomic::AtomicBool,
}

/// `FULLNODE_API_INFO`'s entries as RPC endpoints (`/rpc/v1`).
pub fn nodes(api_info: &str, timeout: Duration) -> Result<Vec<(String, RpcClient)>, String> {
    let mut out = vec![];
    for entry in api_info.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let info = ApiInfo::parse(entry).map_err(|e| format!("FULLNODE_API_INFO entry {entry:?}: {e}"))?;
        let url = info.rpc_url().replace("/rpc/v0", "/rpc/v1");
        out.push((url.clone(), RpcClient::new(url, Some(info.token.clone()), timeout)));
    }
    if out.is_empty() {
        return Err("FULLNODE_API_INFO is empty: set it to TOKEN:/ip4/HOST/tcp/PORT/http".into());
    }
    Ok(out)
}

/// Call a method on the first node that answers, starting with the one that answered last.
pub async fn call<M: Method>(
    nodes: &[(String, RpcClient)],
    current: &AtomicUsize,
    params: M::Params,
    timeout: Option<Duration>,
) -> Result<M::Result, ClientError>
where
    M::Params: Clone,
{
    let start = current.load(Ordering::Relaxed);
    let mut last = None;
    for k in 0..nodes.len() {
        let i = (start + k) % nodes.len();
        let client = &nodes[i].1;
        let r = match timeout {
            Some(t) => client.request_timeout::<M>(params.clone(), t).await,
            None => client.request::<M>(params.clone()).await,
        };
        match r {
            Err(e) if e.is_unreachable() && nodes.len() > 1 => {
                tracing::warn!(node = %nodes[i].0, "{} failed, trying the next full node: {e}", M::NAME);
                last = Some(e);
            }
            r => {
                current.store(i, Ordering::Relaxed);
                return r;
            }
        }
    }
    Err(last.expect("at least one node"))
}

/// Wait until a message has `confidence` epochs on top of its execution (the node holds the
/// call until then: ask again after a long timeout); a failed message is an error with its
/// exit code.
async fn wait_msg(
    nodes: &[(String, RpcClient)],
    current: &AtomicUsize,
    method: &'static str,
    cid: Cid,
    confidence: u64,
) -> Result<c::MsgLookup, ChainError> {
    let lookup = loop {
        match call::<f::StateWaitMsg>(nodes, current, (cid, confidence, -1, true), Some(Duration::from_secs(600))).await
        {
            Ok(l) => break l,
            Err(ClientError::Timeout { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    match lookup.receipt.exit_code {
        0 => Ok(lookup),
        code => Err(ChainError::Failed { method, cid: Box::new(cid), exit_code: code, meaning: exit_meaning(code) }),
    }
}

/// What an exit code means (go-state-types `exitcode`), for logs and errors.
pub fn exit_meaning(code: i64) -> &'static str {
    match code {
        0 => "Ok",
        1 => "SysErrSenderInvalid",
        2 => "SysErrSenderStateInvalid",
        5 => "SysErrInvalidReceiver",
        6 => "SysErrInsufficientFunds: the sender cannot pay the value and gas",
        7 => "SysErrOutOfGas",
        16 => "ErrIllegalArgument",
        17 => "ErrNotFound",
        18 => "ErrForbidden",
        19 => "ErrInsufficientFunds: the miner actor cannot cover the deposit or pledge",
        20 => "ErrIllegalState",
        21 => "ErrSerialization",
        22 => "ErrUnhandledMessage",
        _ => "see go-state-types exitcode",
    }
}

impl ChainClient {
    /// Connect to the node(s) and read what the miner needs once: the network's parameters,
    /// the miner actor's worker and sector size, the proving period's shape.
    pub async fn connect(
        api_info: &str,
        miner: u64,
        confidence: u64,
        timeout: Duration,
    ) -> Result<ChainClient, ChainError> {
        let nodes = nodes(api_info, timeout).map_err(ChainError::State)?;
        let current = AtomicUsize::new(0);
        let v = call::<f::Version>(&nodes, &current, (), None).await?;
        if v.api_version >> 8 != c::FULL_API_VERSION_1 >> 8 {
            return Err(ChainError::State(format!(
                "the full node speaks FullNode API {}, this miner needs {} (major.minor)",
                lotus_api::wire::version_string(v.api_version),
                lotus_api::wire::version_string(c::FULL_API_VERSION_1)
            )));
        }
        let net = call::<f::StateGetNetworkParams>(&nodes, &current, (), None).await?;
        let addr = Address::id(miner);
        let info = call::<f::StateMinerInfo>(&nodes, &current, (addr, TipSetKey::head()), None).await?;
        let shape = call::<f::StateMinerProvingDeadline>(&nodes, &current, (addr, TipSetKey::head()), None).await?;
        Ok(ChainClient {
            current,
            miner: addr,
            worker: info.worker,
            sector_size: info.sector_size,
            window_post_proof: info.window_po_st_proof_type,
            entropy: c::address_entropy(&addr),
            block_delay: Duration::from_millis(net.block_delay_ms.unwrap_or(net.block_delay_secs * 1000).max(1)),
            genesis_ms: net.genesis_ms.unwrap_or(net.genesis_timestamp * 1000),
            seed_delay: net.pre_commit_challenge_delay,
            shape,
            confidence,
            network_name: net.network_name,
            nodes,
            heads: tokio::sync::watch::channel(-1).0,
            notified: false.into(),
        })
    }

    /// A client of a node that is not there, for unit tests that never reach the chain.
    #[cfg(test)]
    pub fn unreachable_for_tests() -> ChainClient {
        let shape = c::DeadlineInfo {
            current_epoch: 0,
            period_start: 0,
            index: 0,
            open: 0,
            close: 20,
            challenge: -2,
            fault_cutoff: -2,
            wpost_period_deadlines: 4,
            wpost_proving_period: 80,
            wpost_challenge_window: 20,
            wpost_challenge_lookback: 2,
            fault_declaration_cutoff: 2,
        };
        ChainClient {
            nodes: nodes("t:/ip4/127.0.0.1/tcp/9/http", Duration::from_secs(1)).expect("a valid API info"),
            current: AtomicUsize::new(0),
            miner: Address::id(1000),
            worker: Address::id(100),
            sector_size: 2048,
            window_post_proof: 10,
            entropy: c::address_entropy(&Address::id(1000)),
            block_delay: Duration::from_secs(1),
            genesis_ms: 0,
            seed_delay: 1,
            shape,
            confidence: 0,
            network_name: "none".into(),
            heads: tokio::sync::watch::channel(-1).0,
            notified: false.into(),
        }
    }

    /// Follow the head with `ChainNotify` over a WebSocket to the node, as Lotus's miner
    /// does; while that channel is down (a node without WebSocket, a dropped connection),
    /// poll `ChainHead` and try again every half minute.
    pub async fn follow_heads(self: Arc<Self>) {
        let mut warned = false;
        loop {
            let i = self.current.load(Ordering::Relaxed) % self.nodes.len();
            let (url, client) = &self.nodes[i];
            match client.subscribe::<f::ChainNotify>(()).await {
                Ok(mut rx) => {
                    tracing::info!(node = %url, "following the chain head with ChainNotify");
                    self.notified.store(true, Ordering::Relaxed);
                    warned = false;
                    while let Some(changes) = rx.recv().await {
                        let top = changes.iter().filter(|c| c.kind != "revert").map(|c| c.val.height).max();
                        if let Some(h) = top {
                            self.saw_head(h);
                        }
                    }
                    self.notified.store(false, Ordering::Relaxed);
                    tracing::warn!(node = %url, "the ChainNotify channel closed; polling ChainHead until it reopens");
                }
                Err(e) if !warned => {
                    warned = true;
                    tracing::warn!(node = %url, "ChainNotify over WebSocket failed, polling ChainHead instead: {e}");
                }
                Err(_) => {}
            }
            let until = tokio::time::Instant::now() + Duration::from_secs(30);
            while tokio::time::Instant::now() < until {
                if let Ok(h) = self.head().await {
                    self.saw_head(h);
                }
                tokio::time::sleep((self.block_delay / 2).max(Duration::from_millis(50))).await;
            }
        }
    }

    fn saw_head(&self, h: Epoch) {
        self.heads.send_if_modified(|cur| {
            let newer = h > *cur;
            if newer {
                *cur = h;
            }
            newer
        });
    }

    /// The highest head seen so far (-1 before the first).
    pub fn latest_head(&self) -> Epoch {
        *self.heads.borrow()
    }

    /// Wait until the head is past `seen`, or `fallback` elapsed (the caller then reads the
    /// head itself): head changes wake the miner's loops instead of a timer.
    pub async fn next_head(&self, seen: Epoch, fallback: Duration) {
        let mut rx = self.heads.subscribe();
        let _ = tokio::time::timeout(fallback, rx.wait_for(|h| *h > seen)).await;
    }

    async fn call<M: Method>(&self, params: M::Params) -> Result<M::Result, ClientError>
    where
        M::Params: Clone,
    {
        call::<M>(&self.nodes, &self.current, params, None).await
    }

    /// `[Chain] MessageConfidence`: epochs on top of a message before it counts as landed.
    pub fn confidence(&self) -> u64 {
        self.confidence
    }

    pub fn miner_id(&self) -> u64 {
        self.miner.as_id().expect("the miner is an ID address")
    }

    pub async fn head(&self) -> Result<Epoch, ChainError> {
        Ok(self.call::<f::ChainHead>(()).await?.height)
    }

    pub fn block_delay(&self) -> Duration {
        self.block_delay
    }

    /// Epochs between a pre-commit landing and its seed (PreCommitChallengeDelay).
    pub fn seed_delay(&self) -> Epoch {
        self.seed_delay
    }

    /// The sealing ticket of an epoch (`SealRandomness`), masked as the proofs use it.
    pub async fn ticket(&self, epoch: Epoch) -> Result<[u8; 32], ChainError> {
        let r = self
            .call::<f::StateGetRandomnessFromTickets>((
                c::tags::SEAL_RANDOMNESS,
                epoch,
                Some(Bytes(self.entropy.clone())),
                TipSetKey::head(),
            ))
            .await?;
        randomness(&r)
    }

    /// The interactive seed (`InteractiveSealChallengeSeed`), once the chain reached `epoch`.
    pub async fn seed(&self, epoch: Epoch) -> Result<Option<[u8; 32]>, ChainError> {
        self.beacon(c::tags::INTERACTIVE_SEAL_CHALLENGE_SEED, epoch).await
    }

    /// WindowPoSt challenge randomness, once the chain reached `epoch`.
    pub async fn post_randomness(&self, epoch: Epoch) -> Result<Option<[u8; 32]>, ChainError> {
        self.beacon(c::tags::WINDOWED_POST_CHALLENGE_SEED, epoch).await
    }

    async fn beacon(&self, tag: i64, epoch: Epoch) -> Result<Option<[u8; 32]>, ChainError> {
        if self.head().await? < epoch {
            return Ok(None);
        }
        let r = self
            .call::<f::StateGetRandomnessFromBeacon>((tag, epoch, Some(Bytes(self.entropy.clone())), TipSetKey::head()))
            .await?;
        randomness(&r).map(Some)
    }

    /// Push a message from the worker key to the miner actor; returns its CID.
    pub async fn push(&self, method: u64, params: Vec<u8>, value: BigInt) -> Result<Cid, ChainError> {
        // The worker key as the chain has it now (`actor propose|confirm-change-worker` moves
        // it while the miner runs), as Lotus's address selector reads it for each message.
        let worker = match self.call::<f::StateMinerInfo>((self.miner, TipSetKey::head())).await {
            Ok(info) => info.worker,
            Err(e) => {
                tracing::warn!("reading the miner's worker key (sending from the last known one): {e}");
                self.worker
            }
        };
        let msg = Message::call(worker, self.miner, method, params, value);
        let spec = MessageSendSpec { max_fee: BigInt::zero(), msg_uuid: uuid::Uuid::new_v4(), maximize_fee_cap: false };
        let signed = self.call::<f::MpoolPushMessage>((msg, Some(spec))).await?;
        Ok(signed.cid())
    }

    /// Wait until a message has the configured confidence on chain; a failed message is an
    /// error with its exit code. Returns the epoch it was executed at.
    pub async fn wait(&self, method: &'static str, cid: Cid) -> Result<Epoch, ChainError> {
        Ok(wait_msg(&self.nodes, &self.current, method, cid, self.confidence).await?.height)
    }

    pub async fn balance(&self, a: Address) -> Result<BigInt, ChainError> {
        Ok(self.call::<f::WalletBalance>((a,)).await?)
    }

    pub async fn pre_commit_info(&self, number: u64) -> Result<Option<PreCommitInfo>, ChainError> {
        let Some(p) = self.call::<f::StateSectorPreCommitInfo>((self.miner, number, TipSetKey::head())).await? else {
            return Ok(None);
        };
        let proof = RegisteredSealProof::from_i64(p.info.seal_proof).ok_or_else(|| {
            ChainError::State(format!("sector {number}: unknown seal proof {} on chain", p.info.seal_proof))
        })?;
        let comm_r = lotus_api::wire::Commitment::Sealed.from_cid(&p.info.sealed_cid).map_err(ChainError::State)?;
        Ok(Some(PreCommitInfo { proof, comm_r, ticket_epoch: p.info.seal_rand_epoch, epoch: p.pre_commit_epoch }))
    }

    /// Whether the sector is active on chain (proven).
    pub async fn is_active(&self, number: u64) -> Result<bool, ChainError> {
        Ok(self.call::<f::StateSectorGetInfo>((self.miner, number, TipSetKey::head())).await?.is_some())
    }

    /// The sector as the chain has it (`None`: not active on chain, or gone).
    pub async fn sector_on_chain(&self, number: u64) -> Result<Option<c::SectorOnChainInfo>, ChainError> {
        Ok(self.call::<f::StateSectorGetInfo>((self.miner, number, TipSetKey::head())).await?)
    }

    /// The sector's deadline and partition.
    pub async fn sector_location(&self, number: u64) -> Result<Option<c::SectorLocation>, ChainError> {
        Ok(self.call::<f::StateSectorPartition>((self.miner, number, TipSetKey::head())).await?)
    }

    /// Whether the sector is faulty in its partition (the miner's view for `snap-up`).
    pub async fn is_faulty(&self, number: u64) -> Result<bool, ChainError> {
        let Some(loc) = self.sector_location(number).await? else { return Ok(false) };
        let parts = self.call::<f::StateMinerPartitions>((self.miner, loc.deadline, TipSetKey::head())).await?;
        Ok(parts.get(loc.partition as usize).is_some_and(|p| p.faulty_sectors.0.get(number)))
    }

    /// Whether deadline `index` may be changed at `epoch`: neither the open deadline nor the
    /// next one (the actor's `deadline_is_mutable`, as Lotus's SubmitReplicaUpdate checks it).
    pub fn deadline_mutable(&self, index: u64, epoch: Epoch) -> bool {
        let open = self.shape.at(epoch);
        index != open.index && index != open.next().index
    }

    /// Push one ProveReplicaUpdates3 for an updated sector: the new CommR, the pieces whose
    /// CommD the actor computes, and the update proof. Its value is the pledge the sector's
    /// new power needs beyond what it already locks (Lotus's rule; usually none for CC data).
    /// `info`: the sector as the chain has it now (its expiration and pledge).
    pub async fn push_replica_update(
        &self,
        u: &ReplicaUpdateSpec,
        info: &c::SectorOnChainInfo,
    ) -> Result<Cid, ChainError> {
        let head = self.head().await?;
        let needed = self
            .call::<f::StateMinerInitialPledgeForSector>((
                (info.expiration - head).max(0),
                self.sector_size,
                0,
                TipSetKey::head(),
            ))
            .await?;
        let value = BigInt((needed.0 - &info.initial_pledge.0).max(0.into()));
        let params = actors::miner::ProveReplicaUpdates3Params {
            sector_updates: vec![actors::miner::SectorUpdateManifest {
                sector: u.number,
                deadline: u.deadline,
                partition: u.partition,
                new_sealed_cid: lotus_api::wire::Commitment::Sealed.to_cid(&u.comm_r).0,
                pieces: u
                    .pieces
                    .iter()
                    .map(|(comm_p, padded)| actors::miner::PieceActivationManifest {
                        cid: lotus_api::wire::Commitment::Unsealed.to_cid(comm_p).0,
                        size: fvm_shared::piece::PaddedPieceSize(*padded),
                        verified_allocation_key: None,
                        notify: vec![],
                    })
                    .collect(),
            }],
            sector_proofs: vec![fvm_ipld_encoding::RawBytes::new(u.proof.clone())],
            aggregate_proof: fvm_ipld_encoding::RawBytes::new(vec![]),
            update_proofs_type: fvm_shared::sector::RegisteredUpdateProof::from(u.seal_proof.as_i64() % 5),
            aggregate_proof_type: None,
            require_activation_success: true,
            require_notification_success: true,
        };
        self.push(actors::MINER_PROVE_REPLICA_UPDATES3, actors::encode(&params), value).await
    }

    /// Push one PreCommitSectorBatch2 for the sectors, the sum of their deposits as the value.
    pub async fn push_pre_commit(&self, sectors: &[PreCommitSpec]) -> Result<Cid, ChainError> {
        use fvm_shared::sector::RegisteredSealProof as P;
        let head = self.head().await?;
        let mut infos = Vec::with_capacity(sectors.len());
        let mut deposit = BigInt::zero();
        for s in sectors {
            let sealed = lotus_api::wire::Commitment::Sealed.to_cid(&s.comm_r);
            let unsealed = lotus_api::wire::Commitment::Unsealed.to_cid(&s.comm_d);
            let info = actors::miner::SectorPreCommitInfo {
                seal_proof: P::from(s.proof.as_i64()),
                sector_number: s.number,
                sealed_cid: sealed.0,
                seal_rand_epoch: s.ticket_epoch,
                deal_ids: vec![],
                expiration: head + s.lifetime,
                // Sent for CC sectors too (Lotus leaves it out for them; the zero CommD is the same
                // one the actor implies), so that the chain checks the proof against what was sealed.
                unsealed_cid: actors::miner::CompactCommD(Some(unsealed.0)),
            };
            let wire_info = c::SectorPreCommitInfo {
                seal_proof: s.proof.as_i64(),
                sector_number: s.number,
                sealed_cid: sealed,
                seal_rand_epoch: s.ticket_epoch,
                deal_ids: vec![],
                expiration: info.expiration,
                unsealed_cid: Some(unsealed),
            };
            let d =
                self.call::<f::StateMinerPreCommitDepositForPower>((self.miner, wire_info, TipSetKey::head())).await?;
            deposit.0 += d.0;
            infos.push(info);
        }
        let params = actors::miner::PreCommitSectorBatchParams2 { sectors: infos };
        self.push(actors::MINER_PRE_COMMIT_SECTOR_BATCH2, actors::encode(&params), deposit).await
    }

    /// Push one ProveCommitSectors3 for the sectors, with one proof per sector or one
    /// aggregate proof, the sectors' initial pledge as the value.
    pub async fn push_prove_commit(&self, sectors: &[u64], proof: CommitProof) -> Result<Cid, ChainError> {
        let one = self
            .call::<f::StateMinerInitialPledgeForSector>((1_555_200, self.sector_size, 0, TipSetKey::head()))
            .await?;
        let mut pledge = BigInt::zero();
        for _ in sectors {
            pledge.0 += &one.0;
        }
        let (sector_proofs, aggregate_proof, aggregate_proof_type) = match proof {
            CommitProof::PerSector(p) => (p.into_iter().map(fvm_ipld_encoding::RawBytes::new).collect(), vec![], None),
            CommitProof::Aggregate(a) => (vec![], a, Some(fvm_shared::sector::RegisteredAggregateProof::SnarkPackV2)),
        };
        let params = actors::miner::ProveCommitSectors3Params {
            sector_activations: sectors
                .iter()
                .map(|&n| actors::miner::SectorActivationManifest { sector_number: n, pieces: vec![] })
                .collect(),
            sector_proofs,
            aggregate_proof: fvm_ipld_encoding::RawBytes::new(aggregate_proof),
            aggregate_proof_type,
            require_activation_success: true,
            require_notification_success: true,
        };
        self.push(actors::MINER_PROVE_COMMIT_SECTORS3, actors::encode(&params), pledge).await
    }

    pub fn proving_params(&self) -> ProvingParams {
        ProvingParams {
            deadlines: self.shape.wpost_period_deadlines,
            window: self.shape.wpost_challenge_window,
            lookback: self.shape.wpost_challenge_lookback,
        }
    }

    /// When an epoch starts (for deadline margins).
    pub fn epoch_time(&self, epoch: Epoch) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.genesis_ms) + self.block_delay * epoch.max(0) as u32
    }

    /// The deadline open (or next to open) at `epoch`: the proving period's arithmetic on the
    /// shape the node gave.
    pub fn deadline_at(&self, epoch: Epoch) -> DeadlineInfo {
        DeadlineInfo::from(&self.shape.at(epoch))
    }

    /// The partitions of a deadline with their active and faulty sectors (recovering ones
    /// marked): [`PartitionInfo::to_prove`] is what the instance requires.
    pub async fn deadline_partitions(&self, dl: &DeadlineInfo) -> Result<Vec<PartitionInfo>, ChainError> {
        self.partitions_of(dl.index, false).await
    }

    /// A deadline's partitions with every live sector (`live`), or with the active and faulty
    /// ones only (what its instance requires).
    pub async fn partitions_of(&self, index: u64, live: bool) -> Result<Vec<PartitionInfo>, ChainError> {
        let parts = self.call::<f::StateMinerPartitions>((self.miner, index, TipSetKey::head())).await?;
        let of = |p: &c::Partition| -> Vec<u64> {
            if live {
                p.live_sectors.0.iter().collect()
            } else {
                p.active_sectors.0.iter().chain(p.faulty_sectors.0.iter()).collect()
            }
        };
        // Only this deadline's sectors (not every sector of the miner, on every tick).
        let wanted = BitField::of(parts.iter().flat_map(of));
        if wanted.0.is_empty() {
            return Ok(parts.iter().enumerate().map(|(index, _)| PartitionInfo { index, sectors: vec![] }).collect());
        }
        let sectors = self.call::<f::StateMinerSectors>((self.miner, Some(wanted), TipSetKey::head())).await?;
        let by_number: std::collections::BTreeMap<u64, &c::SectorOnChainInfo> =
            sectors.iter().map(|s| (s.sector_number, s)).collect();
        let mut out = vec![];
        for (index, p) in parts.iter().enumerate() {
            let faulty: std::collections::BTreeSet<u64> = p.faulty_sectors.0.iter().collect();
            let recovering: std::collections::BTreeSet<u64> = p.recovering_sectors.0.iter().collect();
            let mut list = vec![];
            for n in of(p) {
                let Some(s) = by_number.get(&n) else { continue };
                let proof = RegisteredSealProof::from_i64(s.seal_proof)
                    .ok_or_else(|| ChainError::State(format!("sector {n}: unknown seal proof {}", s.seal_proof)))?;
                let comm_r = lotus_api::wire::Commitment::Sealed.from_cid(&s.sealed_cid).map_err(ChainError::State)?;
                list.push(ProvingSector {
                    number: n,
                    proof,
                    comm_r,
                    faulty: faulty.contains(&n),
                    recovering: recovering.contains(&n),
                    update: s.sector_key_cid.is_some(),
                });
            }
            list.sort_by_key(|s| s.number);
            list.dedup_by_key(|s| s.number);
            out.push(PartitionInfo { index, sectors: list });
        }
        Ok(out)
    }

    /// Partitions of the deadline's current instance already proven.
    pub async fn proven_partitions(&self, dl: &DeadlineInfo) -> Result<Vec<usize>, ChainError> {
        let dls = self.call::<f::StateMinerDeadlines>((self.miner, TipSetKey::head())).await?;
        Ok(dls
            .get(dl.index as usize)
            .map(|d| d.post_submissions.0.iter().map(|p| p as usize).collect())
            .unwrap_or_default())
    }

    /// Send a SubmitWindowedPoSt and wait for it (no confidence: it must land in its deadline).
    pub async fn submit_window_post(&self, post: WindowPoStSubmission) -> Result<Epoch, ChainError> {
        let commit = self
            .call::<f::StateGetRandomnessFromTickets>((
                c::tags::POST_CHAIN_COMMIT,
                post.challenge,
                None,
                TipSetKey::head(),
            ))
            .await?;
        let params = actors::miner::SubmitWindowedPoStParams {
            deadline: post.deadline,
            partitions: vec![actors::miner::PoStPartition {
                index: post.partition as u64,
                skipped: BitField::of(post.skipped.iter().copied()).0,
            }],
            proofs: vec![fvm_shared::sector::PoStProof {
                post_proof: fvm_shared::sector::RegisteredPoStProof::from(post.post_proof),
                proof_bytes: post.proof,
            }],
            chain_commit_epoch: post.challenge,
            chain_commit_rand: fvm_shared::randomness::Randomness(commit.0),
        };
        let cid = self.push(actors::MINER_SUBMIT_WINDOWED_POST, actors::encode(&params), BigInt::zero()).await?;
        // No confidence: it must land inside its deadline.
        Ok(wait_msg(&self.nodes, &self.current, "SubmitWindowedPoSt", cid, 0).await?.height)
    }

    /// Send one DeclareFaultsRecovered for (deadline, partition, sectors) declarations and wait
    /// for it with the configured confidence; its CID and epoch.
    pub async fn declare_recovered(&self, declarations: &[(u64, u64, Vec<u64>)]) -> Result<(Cid, Epoch), ChainError> {
        let cid = self.push_recovered(declarations).await?;
        let epoch = self.wait("DeclareFaultsRecovered", cid).await?;
        Ok((cid, epoch))
    }

    /// The sectors' on-chain proving info (those the chain has), by number.
    pub async fn proving_sectors(&self, numbers: &[u64]) -> Result<Vec<ProvingSector>, ChainError> {
        let filter = BitField::of(numbers.iter().copied());
        let sectors = self.call::<f::StateMinerSectors>((self.miner, Some(filter), TipSetKey::head())).await?;
        sectors
            .iter()
            .map(|s| {
                let proof = RegisteredSealProof::from_i64(s.seal_proof).ok_or_else(|| {
                    ChainError::State(format!("sector {}: unknown seal proof {}", s.sector_number, s.seal_proof))
                })?;
                let comm_r = lotus_api::wire::Commitment::Sealed.from_cid(&s.sealed_cid).map_err(ChainError::State)?;
                Ok(ProvingSector {
                    number: s.sector_number,
                    proof,
                    comm_r,
                    faulty: false,
                    recovering: false,
                    update: s.sector_key_cid.is_some(),
                })
            })
            .collect()
    }

    /// Where each sector is: (deadline, partition) → its numbers; `None` for one the chain
    /// does not have live.
    pub async fn locate(&self, numbers: &[u64]) -> Result<Vec<(u64, Option<(u64, u64)>)>, ChainError> {
        let mut out = vec![];
        for &n in numbers {
            let loc = self.call::<f::StateSectorPartition>((self.miner, n, TipSetKey::head())).await?;
            out.push((n, loc.map(|l| (l.deadline, l.partition))));
        }
        Ok(out)
    }

    /// Push one TerminateSectors for (deadline, partition, sectors) declarations.
    pub async fn push_terminate(&self, declarations: &[(u64, u64, Vec<u64>)]) -> Result<Cid, ChainError> {
        let params = actors::miner::TerminateSectorsParams {
            terminations: declarations
                .iter()
                .map(|(deadline, partition, sectors)| actors::miner::TerminationDeclaration {
                    deadline: *deadline,
                    partition: *partition,
                    sectors: BitField::of(sectors.iter().copied()).0,
                })
                .collect(),
        };
        self.push(actors::MINER_TERMINATE_SECTORS, actors::encode(&params), BigInt::zero()).await
    }

    /// Push one DeclareFaultsRecovered without waiting for it.
    pub async fn push_recovered(&self, declarations: &[(u64, u64, Vec<u64>)]) -> Result<Cid, ChainError> {
        let params = actors::miner::DeclareFaultsRecoveredParams {
            recoveries: declarations
                .iter()
                .map(|(deadline, partition, sectors)| actors::miner::RecoveryDeclaration {
                    deadline: *deadline,
                    partition: *partition,
                    sectors: BitField::of(sectors.iter().copied()).0,
                })
                .collect(),
        };
        self.push(actors::MINER_DECLARE_FAULTS_RECOVERED, actors::encode(&params), BigInt::zero()).await
    }

    /// The WindowPoSt proof type the miner actor was created with.
    pub fn window_post_proof(&self) -> i64 {
        self.window_post_proof
    }

    /// `MinerGetBaseInfo` for a round: `None` unless the miner is eligible and won.
    pub async fn mining_round(&self, round: Epoch) -> Result<Option<MiningRound>, ChainError> {
        let Some(base) = self.call::<f::MinerGetBaseInfo>((self.miner, round, TipSetKey::head())).await? else {
            return Ok(None);
        };
        if !base.eligible_for_mining || base.sectors.is_empty() {
            return Ok(None);
        }
        // Lotus's miner draws the WinningPoSt randomness from the round's last beacon entry.
        let entry = base.beacon_entries.last().unwrap_or(&base.prev_beacon_entry);
        let r = c::draw_randomness(
            &c::blake2b256(&entry.data.0),
            c::tags::WINNING_POST_CHALLENGE_SEED,
            round,
            &self.entropy,
        );
        let mut sectors = vec![];
        for s in &base.sectors {
            let proof = RegisteredSealProof::from_i64(s.seal_proof)
                .ok_or_else(|| ChainError::State(format!("unknown seal proof {}", s.seal_proof)))?;
            let comm_r = lotus_api::wire::Commitment::Sealed.from_cid(&s.sealed_cid).map_err(ChainError::State)?;
            sectors.push(ProvingSector {
                number: s.sector_number,
                proof,
                comm_r,
                faulty: false,
                recovering: false,
                update: s.sector_key.is_some(),
            });
        }
        Ok(Some(MiningRound { randomness: mask(r), sectors }))
    }

    /// Have the node assemble the block and submit it (it verifies the WinningPoSt).
    pub async fn submit_block(&self, round: Epoch, post_proof: i64, proof: Vec<u8>) -> Result<(), ChainError> {
        let head = self.call::<f::ChainGetTipSetByHeight>((round - 1, TipSetKey::head())).await?;
        let template = c::BlockTemplate {
            miner: self.miner,
            parents: head.key(),
            ticket: None,
            eproof: None,
            beacon_values: vec![],
            messages: vec![],
            epoch: round,
            timestamp: (self.epoch_time(round).duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()),
            winning_post_proof: vec![c::PoStProof { post_proof, proof_bytes: Bytes(proof) }],
        };
        let block = self.call::<f::MinerCreateBlock>((template,)).await?;
        self.call::<f::SyncSubmitBlock>((block,)).await?;
        Ok(())
    }

    /// The partitions and faults of every deadline, from chain state.
    /// Each deadline's partitions with their live sectors, the same with all sectors, and the faults.
    #[allow(clippy::type_complexity)]
    pub async fn partitions_summary(&self) -> Result<(Vec<Vec<Vec<u64>>>, Vec<Vec<Vec<u64>>>, Vec<u64>), ChainError> {
        let (mut live, mut all) = (vec![], vec![]);
        for i in 0..self.shape.wpost_period_deadlines {
            let parts = self.call::<f::StateMinerPartitions>((self.miner, i, TipSetKey::head())).await?;
            live.push(parts.iter().map(|p| p.live_sectors.0.iter().collect()).collect());
            all.push(parts.iter().map(|p| p.all_sectors.0.iter().collect()).collect());
        }
        let faults = self.call::<f::StateMinerFaults>((self.miner, TipSetKey::head())).await?.0.iter().collect();
        Ok((live, all, faults))
    }
}

fn randomness(b: &Bytes) -> Result<[u8; 32], ChainError> {
    b.to_32("randomness").map(mask).map_err(ChainError::State)
}

/// Randomness as the proofs take it: a field element (Lotus's prover and verifier mask it the
/// same way; the chain's value is unmasked).
pub fn mask(mut r: [u8; 32]) -> [u8; 32] {
    r[31] &= 0x3f;
    r
}

/// The V1_1 WindowPoSt proof type of a sector size (what network version 28 requires).
pub fn window_post_proof_for(sector_size: u64) -> Option<i64> {
    Some(match sector_size {
        2048 => 10,
        8388608 => 11,
        536870912 => 12,
        34359738368 => 13,
        68719476736 => 14,
        _ => return None,
    })
}

/// Create a miner actor on chain, as `lotus-miner init` does: a CreateMiner message to the power
/// actor from the owner, with the creation deposit; returns the new actor's ID.
/// How `init` sends CreateMiner: from which address, with which gas premium, and the margin
/// over the chain's suggested creation deposit (`--from`, `--gas-premium`,
/// `--deposit-margin-factor`).
#[derive(Clone, Debug)]
pub struct CreateMinerSend {
    pub from: Option<Address>,
    pub gas_premium: BigInt,
    pub deposit_margin: f64,
}

pub async fn create_miner(
    nodes: &[(String, RpcClient)],
    owner: Address,
    worker: Address,
    sector_size: u64,
    confidence: u64,
    send: &CreateMinerSend,
) -> Result<u64, ChainError> {
    let current = AtomicUsize::new(0);
    let post = window_post_proof_for(sector_size)
        .ok_or_else(|| ChainError::State(format!("no WindowPoSt proof type for sector size {sector_size}")))?;
    let suggested = call::<f::StateMinerCreationDeposit>(nodes, &current, (TipSetKey::head(),), None).await?;
    // The margin in thousandths, so the deposit stays an integer of attoFIL.
    let per_mille = (send.deposit_margin * 1000.0).round() as u64;
    let deposit = BigInt(suggested.0 * per_mille / 1000u64);
    let mut msg = actors::create_miner(owner, worker, post, deposit);
    if let Some(from) = send.from {
        msg.from = from;
    }
    msg.gas_premium = send.gas_premium.clone();
    let spec = MessageSendSpec { max_fee: BigInt::zero(), msg_uuid: uuid::Uuid::new_v4(), maximize_fee_cap: false };
    let signed = call::<f::MpoolPushMessage>(nodes, &current, (msg, Some(spec)), None).await?;
    let cid = signed.cid();
    tracing::info!(%cid, "CreateMiner message pushed, waiting for it to land");
    let lookup = wait_msg(nodes, &current, "CreateMiner", cid, confidence).await?;
    let ret: actors::power::CreateMinerReturn =
        actors::decode(&lookup.receipt.return_data.unwrap_or_default().0).map_err(ChainError::State)?;
    ret.id_address.id().map_err(|e| ChainError::State(format!("CreateMiner returned {}: {e}", ret.id_address)))
}

/// The owner and worker addresses `init` uses: the flags, or the node's default wallet.
pub async fn init_addresses(
    nodes: &[(String, RpcClient)],
    owner: Option<&str>,
    worker: Option<&str>,
    create_worker_key: bool,
) -> Result<(Address, Address), ChainError> {
    let current = AtomicUsize::new(0);
    let parse = |s: &str| s.parse::<Address>().map_err(ChainError::State);
    let owner = match owner {
        Some(o) => parse(o)?,
        None => call::<f::WalletDefaultAddress>(nodes, &current, (), None).await?,
    };
    let worker = match worker {
        Some(w) => parse(w)?,
        None if create_worker_key => call::<f::WalletNew>(nodes, &current, ("bls".to_string(),), None).await?,
        None => owner,
    };
    Ok((owner, worker))
}

/// The sector size of an existing miner actor (`init --actor`).
pub async fn miner_sector_size(nodes: &[(String, RpcClient)], miner: Address) -> Result<u64, ChainError> {
    let current = AtomicUsize::new(0);
    Ok(call::<f::StateMinerInfo>(nodes, &current, (miner, TipSetKey::head()), None).await?.sector_size)
}
