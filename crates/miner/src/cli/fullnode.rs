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
        let msg = Message::call(from, to, method, params, value);
        let spec = MessageSendSpec { max_fee: BigInt::zero(), msg_uuid: uuid::Uuid::new_v4(), maximize_fee_cap: false };
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

/// attoFIL as Lotus's `types.FIL` prints it: whole FIL with up to 18 decimals, trailing zeros
/// dropped, and the unit ("0.5 FIL", "0 FIL").
pub fn fil(atto: &BigInt) -> String {
    let v = &atto.0;
    let neg = v.sign() == fvm_shared::bigint::Sign::Minus;
    let abs = if neg { -v.clone() } else { v.clone() };
    let digits = format!("{abs:0>19}");
    let (int, frac) = digits.split_at(digits.len() - 18);
    let frac = frac.trim_end_matches('0');
    let sign = if neg { "-" } else { "" };
    if frac.is_empty() {
        format!("{sign}{int} FIL")
    } else {
        format!("{sign}{int}.{frac} FIL")
    }
}

/// An amount of FIL as Lotus's `types.ParseFIL` reads it: "1.5", "1.5 FIL", "10 attofil", "2 nanofil".
pub fn parse_fil(s: &str) -> Result<BigInt> {
    let t = s.trim().to_ascii_lowercase();
    let (num, unit) = match t.split_once(' ') {
        Some((n, u)) => (n.trim().to_string(), u.trim().to_string()),
        None => {
            let i = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
            (t[..i].to_string(), t[i..].to_string())
        }
    };
    let decimals: usize = match unit.as_str() {
        "" | "fil" => 18,
        "millifil" => 15,
        "microfil" => 12,
        "nanofil" => 9,
        "picofil" => 6,
        "femtofil" => 3,
        "attofil" => 0,
        u => bail!("{s:?}: unknown unit {u:?} (FIL, milliFIL, microFIL, nanoFIL, picoFIL, femtoFIL, attoFIL)"),
    };
    let bad = || anyhow::anyhow!("{s:?} is not an amount of FIL (like 10, 0.5 or \"2 nanoFIL\")");
    let (int, frac) = num.split_once('.').unwrap_or((&num, ""));
    if (int.is_empty() && frac.is_empty())
        || frac.len() > decimals
        || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
    {
        return Err(bad());
    }
    let digits = format!("{int}{frac:0<decimals$}");
    let v: fvm_shared::bigint::BigInt = digits.trim_start_matches('0').parse().unwrap_or_default();
    Ok(BigInt(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fil_amounts_print_and_parse_as_lotus_s() {
        assert_eq!(fil(&BigInt::from_atto(0u64)), "0 FIL");
        assert_eq!(fil(&BigInt::from_atto(500_000_000_000_000_000u64)), "0.5 FIL");
        assert_eq!(fil(&BigInt::from_atto(12_000_000_000_000_000_000u128)), "12 FIL");
        assert_eq!(fil(&BigInt::from_atto(1u64)), "0.000000000000000001 FIL");
        assert_eq!(parse_fil("0.5").unwrap(), BigInt::from_atto(500_000_000_000_000_000u64));
        assert_eq!(parse_fil("2 nanoFIL").unwrap(), BigInt::from_atto(2_000_000_000u64));
        assert_eq!(parse_fil("10attofil").unwrap(), BigInt::from_atto(10u64));
        assert_eq!(parse_fil("3 FIL").unwrap(), BigInt::from_atto(3_000_000_000_000_000_000u128));
        for bad in ["", "abc", "1.2.3", "-1", "0.0000000000000000001", "1 gigafil"] {
            assert!(parse_fil(bad).is_err(), "{bad:?}");
        }
    }
}
