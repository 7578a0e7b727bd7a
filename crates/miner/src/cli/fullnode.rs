//! The full node a chain command talks to, as Lotus's `lotus-miner` chain commands do: the
//! node(s) `FULLNODE_API_INFO` names (failing over between them), the miner's actor address
//! asked of the miner, and messages pushed with `MpoolPushMessage` and waited for with
//! `StateWaitMsg`, each receipt checked.

use super::client::explain;
use anyhow::{bail, Context, Result};
use lotus_api::chain::{Address, BigInt, Message, MessageSendSpec, MinerInfo, MsgLookup, TipSetKey};
use lotus_api::contract::full as f;
use lotus_api::contract::Method;
use lotus_api::wire::Cid;
use lotus_api::RpcClient;
use std::sync::atomic::AtomicUsize;

/// A message's gas settings from the command line.
#[derive(Clone, Debug, Default)]
pub struct Send {
    pub gas_limit: i64,
    pub max_fee: BigInt,
}

pub struct FullNode {
    nodes: Vec<(String, RpcClient)>,
    current: AtomicUsize,
    /// The miner actor (`ActorAddress`, or `--actor`).
    pub maddr: Address,
}

impl FullNode {
    /// The full node of `FULLNODE_API_INFO`, and the miner's actor: `actor` when given
    /// (Lotus's `--actor`), else the miner's answer to ActorAddress.
    pub async fn connect(miner: &RpcClient, actor: Option<&str>) -> Result<FullNode> {
        let maddr = match actor {
            Some(a) => a.parse().map_err(|e| anyhow::anyhow!("--actor {a:?}: {e}"))?,
            None => {
                let a: String = miner.request::<lotus_api::contract::miner::ActorAddress>(()).await.map_err(explain)?;
                a.parse().map_err(anyhow::Error::msg)?
            }
        };
        Ok(FullNode { nodes: super::fullnode_from_env()?, current: AtomicUsize::new(0), maddr })
    }

    pub async fn call<M: Method>(&self, params: M::Params) -> Result<M::Result>
    where
        M::Params: Clone,
    {
        crate::chain::call::<M>(&self.nodes, &self.current, params, None)
            .await
            .map_err(|e| anyhow::anyhow!("{} on the full node: {e}", M::NAME))
    }

    pub async fn miner_info(&self) -> Result<MinerInfo> {
        self.call::<f::StateMinerInfo>((self.maddr, TipSetKey::head())).await.context("getting the miner's info")
    }

    pub async fn head(&self) -> Result<i64> {
        Ok(self.call::<f::ChainHead>(()).await?.height)
    }

    /// Push a message to the miner actor (or to `to`) and return its CID.
    pub async fn push(&self, from: Address, to: Address, method: u64, params: Vec<u8>, value: BigInt) -> Result<Cid> {
        self.push_with(Message::call(from, to, method, params, value), Send::default()).await
    }

    /// Push a message with Lotus's `--gas-limit` / `--max-fee` (0: the node estimates).
    pub async fn push_with(&self, mut msg: Message, send: Send) -> Result<Cid> {
        msg.gas_limit = send.gas_limit;
        let spec = MessageSendSpec { max_fee: send.max_fee, msg_uuid: uuid::Uuid::new_v4(), maximize_fee_cap: false };
        let signed = self.call::<f::MpoolPushMessage>((msg, Some(spec))).await?;
        Ok(signed.cid())
    }

    /// Wait for a message with `confidence` epochs on top; a failed receipt is an error that
    /// names the exit code and what it means.
    pub async fn wait(&self, cid: Cid, confidence: u64, what: &str) -> Result<MsgLookup> {
        let lookup = self
            .call::<f::StateWaitMsg>((cid, confidence, -1, true))
            .await
            .with_context(|| format!("waiting for the {what} message {cid}"))?;
        if lookup.receipt.exit_code != 0 {
            let code = lookup.receipt.exit_code;
            bail!(
                "the {what} message {cid} failed on chain: exit code {code} ({}); the devnet node's log says why",
                crate::chain::exit_meaning(code)
            );
        }
        Ok(lookup)
    }
}

/// attoFIL as Lotus's `types.FIL` prints it.
pub fn fil(atto: &BigInt) -> String {
    atto.fil()
}

/// An amount of FIL as Lotus's `types.ParseFIL` reads it.
pub fn parse_fil(s: &str) -> Result<BigInt> {
    BigInt::parse_fil(s).map_err(anyhow::Error::msg)
}
