//! The chain's values as Lotus's FullNode v1 API carries them (reference §6.1, and Lotus's
//! `chain/types`): addresses as strings (`f01000`, `t3…`), token amounts and powers as decimal
//! strings, tipset keys as arrays of CIDs, messages with their CID, receipts, deadlines,
//! partitions and sectors in the actors' PascalCase field names. Message params and returns are
//! CBOR of the builtin actors' v18 types ([`actors`]), encoded by the crates Forest uses.

use crate::wire::{BitField, Bytes, Cid};
use fvm_ipld_encoding::tuple::*;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

pub use fvm_shared::address::Address as ActorAddress;
pub use fvm_shared::econ::TokenAmount;

pub type ChainEpoch = i64;

/// The DAG-CBOR codec of a CID.
pub const DAG_CBOR: u64 = 0x71;

/// A CID of CBOR bytes as the chain names them (blake2b-256, DAG-CBOR).
pub fn cbor_cid(bytes: &[u8]) -> Cid {
    use multihash_codetable::MultihashDigest;
    Cid(cid::Cid::new_v1(DAG_CBOR, multihash_codetable::Code::Blake2b256.digest(bytes)))
}

/// A filecoin address on the wire: `f0…`/`t0…` (IDs), `f1`, `f2`, `f3`, `f4`. Both network
/// prefixes are read, as Lotus does; it is written with the process's network (`f`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address(pub ActorAddress);

impl Address {
    pub fn id(id: u64) -> Address {
        Address(ActorAddress::new_id(id))
    }
    /// The actor ID of an ID address.
    pub fn as_id(&self) -> Option<u64> {
        self.0.id().ok()
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Address {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        use fvm_shared::address::Network;
        Network::Mainnet
            .parse_address(s)
            .or_else(|_| Network::Testnet.parse_address(s))
            .map(Address)
            .map_err(|e| format!("invalid address {s:?}: {e} (an address looks like f01000, t01000 or f3…)"))
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Go's `address.Undef`, written `"<empty>"` (`MinerInfo.NewWorker` with no change pending).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaybeAddress(pub Option<Address>);

impl Serialize for MaybeAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Some(a) => a.serialize(s),
            None => s.serialize_str("<empty>"),
        }
    }
}

impl<'de> Deserialize<'de> for MaybeAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(MaybeAddress(None)),
            Some(s) if s == "<empty>" || s.is_empty() => Ok(MaybeAddress(None)),
            Some(s) => s.parse().map(|a| MaybeAddress(Some(a))).map_err(serde::de::Error::custom),
        }
    }
}

/// A big integer (token amounts in attoFIL, powers, weights) as Lotus writes it: a decimal
/// string. `null` and bare numbers are refused, as Lotus refuses them.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct BigInt(pub fvm_shared::bigint::BigInt);

impl BigInt {
    pub fn zero() -> BigInt {
        BigInt::default()
    }
    pub fn from_atto(v: impl Into<fvm_shared::bigint::BigInt>) -> BigInt {
        BigInt(v.into())
    }
    pub fn tokens(&self) -> TokenAmount {
        TokenAmount::from_atto(self.0.clone())
    }

    /// attoFIL as Lotus's `types.FIL` prints it: whole FIL with up to 18 decimals, trailing
    /// zeros dropped, and the unit ("0.5 FIL", "0 FIL").
    pub fn fil(&self) -> String {
        let neg = self.0.sign() == fvm_shared::bigint::Sign::Minus;
        let abs = if neg { -self.0.clone() } else { self.0.clone() };
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

    /// An amount of FIL as Lotus's `types.ParseFIL` reads it: "1.5", "1.5 FIL", "10 attofil",
    /// "2 nanofil".
    pub fn parse_fil(s: &str) -> Result<BigInt, String> {
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
            u => {
                return Err(format!(
                    "{s:?}: unknown unit {u:?} (FIL, milliFIL, microFIL, nanoFIL, picoFIL, femtoFIL, attoFIL)"
                ))
            }
        };
        let bad = || format!("{s:?} is not an amount of FIL (like 10, 0.5 or \"2 nanoFIL\")");
        let (int, frac) = num.split_once('.').unwrap_or((&num, ""));
        let digits_only = int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit());
        if (int.is_empty() && frac.is_empty()) || frac.len() > decimals || !digits_only {
            return Err(bad());
        }
        let digits = format!("{int}{frac:0<decimals$}");
        Ok(BigInt(digits.trim_start_matches('0').parse().unwrap_or_default()))
    }
}

impl From<&TokenAmount> for BigInt {
    fn from(t: &TokenAmount) -> BigInt {
        BigInt(t.atto().clone())
    }
}

impl fmt::Display for BigInt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for BigInt {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for BigInt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map(BigInt).map_err(|e| serde::de::Error::custom(format!("failed to parse big string {s:?}: {e}")))
    }
}

/// `types.TipSetKey`: the CIDs of a tipset's blocks. Empty (`[]`, or `null`) means the head.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct TipSetKey(pub Vec<Cid>);

impl<'de> Deserialize<'de> for TipSetKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(TipSetKey(Option::<Vec<Cid>>::deserialize(d)?.unwrap_or_default()))
    }
}

impl TipSetKey {
    /// The head (`types.EmptyTSK`).
    pub fn head() -> TipSetKey {
        TipSetKey(vec![])
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    #[serde(rename = "VRFProof")]
    pub vrf_proof: Bytes,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ElectionProof {
    #[serde(rename = "WinCount")]
    pub win_count: i64,
    #[serde(rename = "VRFProof")]
    pub vrf_proof: Bytes,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BeaconEntry {
    pub round: u64,
    pub data: Bytes,
}

/// `crypto.Signature`: 1 secp256k1, 2 BLS, 3 delegated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Signature {
    #[serde(rename = "Type")]
    pub kind: u8,
    pub data: Bytes,
}

pub const SIG_SECP256K1: u8 = 1;
pub const SIG_BLS: u8 = 2;

/// `proof.PoStProof`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoStProof {
    #[serde(rename = "PoStProof")]
    pub post_proof: i64,
    #[serde(rename = "ProofBytes")]
    pub proof_bytes: Bytes,
}

/// `types.BlockHeader`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BlockHeader {
    pub miner: Address,
    pub ticket: Option<Ticket>,
    pub election_proof: Option<ElectionProof>,
    #[serde(deserialize_with = "null_as_default")]
    pub beacon_entries: Vec<BeaconEntry>,
    #[serde(rename = "WinPoStProof", deserialize_with = "null_as_default")]
    pub win_post_proof: Vec<PoStProof>,
    #[serde(deserialize_with = "null_as_default")]
    pub parents: Vec<Cid>,
    pub parent_weight: BigInt,
    pub height: ChainEpoch,
    pub parent_state_root: Cid,
    pub parent_message_receipts: Cid,
    pub messages: Cid,
    #[serde(rename = "BLSAggregate")]
    pub bls_aggregate: Option<Signature>,
    pub timestamp: u64,
    pub block_sig: Option<Signature>,
    pub fork_signaling: u64,
    pub parent_base_fee: BigInt,
}

/// `types.TipSet` (its JSON form `ExpTipSet`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TipSet {
    pub cids: Vec<Cid>,
    pub blocks: Vec<BlockHeader>,
    pub height: ChainEpoch,
}

impl TipSet {
    pub fn key(&self) -> TipSetKey {
        TipSetKey(self.cids.clone())
    }
    /// The earliest timestamp of its blocks (Lotus's `MinTimestamp`).
    pub fn min_timestamp(&self) -> u64 {
        self.blocks.iter().map(|b| b.timestamp).min().unwrap_or(0)
    }
}

/// `api.HeadChange`: `current` (the first value of `ChainNotify`), `apply` or `revert`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HeadChange {
    #[serde(rename = "Type")]
    pub kind: String,
    pub val: TipSet,
}

/// `types.Message`. Its JSON carries its own CID (computed, never trusted when read).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Message {
    pub version: u64,
    pub to: Address,
    pub from: Address,
    pub nonce: u64,
    pub value: BigInt,
    pub gas_limit: i64,
    pub gas_fee_cap: BigInt,
    pub gas_premium: BigInt,
    pub method: u64,
    pub params: Option<Bytes>,
}

/// The message's CBOR form (a 10-element tuple, addresses as bytes, amounts as signed
/// big-endian bytes): what its CID and a signature are computed over.
#[derive(Serialize_tuple, Deserialize_tuple)]
struct MessageCbor {
    version: u64,
    to: ActorAddress,
    from: ActorAddress,
    sequence: u64,
    value: TokenAmount,
    gas_limit: u64,
    gas_fee_cap: TokenAmount,
    gas_premium: TokenAmount,
    method_num: u64,
    params: fvm_ipld_encoding::RawBytes,
}

impl Message {
    /// A message to `to` calling `method` with CBOR `params`, gas left to the node to estimate
    /// (`MpoolPushMessage` fills the nonce and gas).
    pub fn call(from: Address, to: Address, method: u64, params: Vec<u8>, value: BigInt) -> Message {
        Message {
            version: 0,
            to,
            from,
            nonce: 0,
            value,
            gas_limit: 0,
            gas_fee_cap: BigInt::zero(),
            gas_premium: BigInt::zero(),
            method,
            params: if params.is_empty() { None } else { Some(Bytes(params)) },
        }
    }

    pub fn to_cbor(&self) -> Vec<u8> {
        let m = MessageCbor {
            version: self.version,
            to: self.to.0,
            from: self.from.0,
            sequence: self.nonce,
            value: self.value.tokens(),
            gas_limit: self.gas_limit.max(0) as u64,
            gas_fee_cap: self.gas_fee_cap.tokens(),
            gas_premium: self.gas_premium.tokens(),
            method_num: self.method,
            params: fvm_ipld_encoding::RawBytes::new(self.params.clone().map(|b| b.0).unwrap_or_default()),
        };
        fvm_ipld_encoding::to_vec(&m).expect("a message encodes")
    }

    pub fn cid(&self) -> Cid {
        cbor_cid(&self.to_cbor())
    }

    pub fn params_bytes(&self) -> &[u8] {
        self.params.as_ref().map(|b| b.0.as_slice()).unwrap_or(&[])
    }
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(11))?;
        m.serialize_entry("Version", &self.version)?;
        m.serialize_entry("To", &self.to)?;
        m.serialize_entry("From", &self.from)?;
        m.serialize_entry("Nonce", &self.nonce)?;
        m.serialize_entry("Value", &self.value)?;
        m.serialize_entry("GasLimit", &self.gas_limit)?;
        m.serialize_entry("GasFeeCap", &self.gas_fee_cap)?;
        m.serialize_entry("GasPremium", &self.gas_premium)?;
        m.serialize_entry("Method", &self.method)?;
        m.serialize_entry("Params", &self.params)?;
        m.serialize_entry("CID", &self.cid())?;
        m.end()
    }
}

/// `types.SignedMessage`. A BLS-signed message's CID is its message's; any other's is the CID
/// of the CBOR pair (message, signature), as in Lotus.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SignedMessage {
    pub message: Message,
    pub signature: Signature,
}

impl SignedMessage {
    pub fn cid(&self) -> Cid {
        if self.signature.kind == SIG_BLS {
            return self.message.cid();
        }
        // The signature's CBOR form is its type byte followed by its data, as a byte string.
        let mut sig = vec![self.signature.kind];
        sig.extend_from_slice(&self.signature.data.0);
        let msg: MessageCbor =
            fvm_ipld_encoding::from_slice(&self.message.to_cbor()).expect("a message re-decodes from its own CBOR");
        let bytes = fvm_ipld_encoding::to_vec(&(msg, fvm_ipld_encoding::strict_bytes::ByteBuf(sig)))
            .expect("a signed message encodes");
        cbor_cid(&bytes)
    }
}

impl Serialize for SignedMessage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("Message", &self.message)?;
        m.serialize_entry("Signature", &self.signature)?;
        m.serialize_entry("CID", &self.cid())?;
        m.end()
    }
}

/// `api.MessageSendSpec`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MessageSendSpec {
    pub max_fee: BigInt,
    pub msg_uuid: uuid::Uuid,
    pub maximize_fee_cap: bool,
}

/// `types.MessageReceipt`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MessageReceipt {
    pub exit_code: i64,
    #[serde(rename = "Return")]
    pub return_data: Option<Bytes>,
    pub gas_used: i64,
    pub events_root: Option<Cid>,
}

/// `api.MsgLookup`: where a message was executed, and its receipt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MsgLookup {
    pub message: Cid,
    pub receipt: MessageReceipt,
    #[serde(default)]
    pub return_dec: serde_json::Value,
    pub tip_set: TipSetKey,
    pub height: ChainEpoch,
}

/// `dline.Info`: a deadline of a miner's proving period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeadlineInfo {
    pub current_epoch: ChainEpoch,
    pub period_start: ChainEpoch,
    pub index: u64,
    pub open: ChainEpoch,
    pub close: ChainEpoch,
    pub challenge: ChainEpoch,
    pub fault_cutoff: ChainEpoch,
    #[serde(rename = "WPoStPeriodDeadlines")]
    pub wpost_period_deadlines: u64,
    #[serde(rename = "WPoStProvingPeriod")]
    pub wpost_proving_period: ChainEpoch,
    #[serde(rename = "WPoStChallengeWindow")]
    pub wpost_challenge_window: ChainEpoch,
    #[serde(rename = "WPoStChallengeLookback")]
    pub wpost_challenge_lookback: ChainEpoch,
    pub fault_declaration_cutoff: ChainEpoch,
}

impl DeadlineInfo {
    /// The deadline of the same proving period shape open (or next to open) at `epoch`, as
    /// the miner actor's `NewDeadlineInfoFromOffsetAndEpoch` computes it.
    pub fn at(&self, epoch: ChainEpoch) -> DeadlineInfo {
        let period = self.wpost_proving_period.max(1);
        let offset = self.period_start.rem_euclid(period);
        let q = (epoch - offset).div_euclid(period);
        let period_start = offset + q * period;
        let index = ((epoch - period_start) / self.wpost_challenge_window.max(1)) as u64;
        DeadlineInfo::new(self, period_start, index, epoch)
    }

    /// Deadline `index` of the proving period starting at `period_start`.
    pub fn new(shape: &DeadlineInfo, period_start: ChainEpoch, index: u64, current: ChainEpoch) -> DeadlineInfo {
        let window = shape.wpost_challenge_window;
        let open = period_start + index as i64 * window;
        DeadlineInfo {
            current_epoch: current,
            period_start,
            index,
            open,
            close: open + window,
            challenge: open - shape.wpost_challenge_lookback,
            fault_cutoff: open - shape.fault_declaration_cutoff,
            ..*shape
        }
    }

    /// The next deadline instance after this one.
    pub fn next(&self) -> DeadlineInfo {
        if self.index + 1 >= self.wpost_period_deadlines {
            DeadlineInfo::new(self, self.period_start + self.wpost_proving_period, 0, self.current_epoch)
        } else {
            DeadlineInfo::new(self, self.period_start, self.index + 1, self.current_epoch)
        }
    }
}

/// `api.Deadline`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Deadline {
    /// Partitions proven in the current instance of this deadline.
    pub post_submissions: BitField,
    pub disputable_proof_count: u64,
    pub daily_fee: BigInt,
}

/// `miner.SubmitWindowedPoStParams` as JSON (`ComputeWindowPoSt`'s answer).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WindowPoStParams {
    pub deadline: u64,
    pub partitions: Vec<WindowPoStPartition>,
    pub proofs: Vec<WindowPoStProof>,
    pub chain_commit_epoch: ChainEpoch,
    /// `null` from ComputeWindowPoSt: only a submission draws it.
    pub chain_commit_rand: Option<Bytes>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WindowPoStPartition {
    pub index: u64,
    pub skipped: BitField,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WindowPoStProof {
    #[serde(rename = "PoStProof")]
    pub post_proof: i64,
    pub proof_bytes: Bytes,
}

/// `api.Partition`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Partition {
    pub all_sectors: BitField,
    pub faulty_sectors: BitField,
    pub recovering_sectors: BitField,
    pub live_sectors: BitField,
    pub active_sectors: BitField,
}

/// `miner.SectorPreCommitInfo` (note Lotus's casing: `SealedCID` but `UnsealedCid`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorPreCommitInfo {
    pub seal_proof: i64,
    pub sector_number: u64,
    #[serde(rename = "SealedCID")]
    pub sealed_cid: Cid,
    pub seal_rand_epoch: ChainEpoch,
    #[serde(rename = "DealIDs", deserialize_with = "null_as_default")]
    pub deal_ids: Vec<u64>,
    pub expiration: ChainEpoch,
    pub unsealed_cid: Option<Cid>,
}

/// `miner.SectorPreCommitOnChainInfo`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorPreCommitOnChainInfo {
    pub info: SectorPreCommitInfo,
    pub pre_commit_deposit: BigInt,
    pub pre_commit_epoch: ChainEpoch,
}

/// `miner.SectorOnChainInfo`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorOnChainInfo {
    pub sector_number: u64,
    pub seal_proof: i64,
    #[serde(rename = "SealedCID")]
    pub sealed_cid: Cid,
    pub activation: ChainEpoch,
    pub expiration: ChainEpoch,
    pub deal_weight: BigInt,
    pub verified_deal_weight: BigInt,
    pub initial_pledge: BigInt,
    pub expected_day_reward: BigInt,
    pub expected_storage_pledge: BigInt,
    pub power_base_epoch: ChainEpoch,
    pub replaced_day_reward: BigInt,
    #[serde(rename = "SectorKeyCID")]
    pub sector_key_cid: Option<Cid>,
    pub flags: u64,
    pub daily_fee: BigInt,
}

/// `miner.SectorLocation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorLocation {
    pub deadline: u64,
    pub partition: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BeneficiaryTerm {
    pub quota: BigInt,
    pub used_quota: BigInt,
    pub expiration: ChainEpoch,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PendingBeneficiaryChange {
    pub new_beneficiary: Address,
    pub new_quota: BigInt,
    pub new_expiration: ChainEpoch,
    pub approved_by_beneficiary: bool,
    pub approved_by_nominee: bool,
}

/// `api.MinerInfo`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MinerInfo {
    pub owner: Address,
    pub worker: Address,
    pub new_worker: MaybeAddress,
    #[serde(deserialize_with = "null_as_default")]
    pub control_addresses: Vec<Address>,
    pub worker_change_epoch: ChainEpoch,
    pub peer_id: Option<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub multiaddrs: Vec<Bytes>,
    pub window_po_st_proof_type: i64,
    pub sector_size: u64,
    pub window_po_st_partition_sectors: u64,
    pub consensus_fault_elapsed: ChainEpoch,
    pub pending_owner_address: Option<Address>,
    pub beneficiary: Address,
    pub beneficiary_term: BeneficiaryTerm,
    pub pending_beneficiary_term: Option<PendingBeneficiaryChange>,
}

/// `api.MinerSectors`: sector counts of a miner.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MinerSectors {
    pub live: u64,
    pub active: u64,
    pub faulty: u64,
}

/// `power.Claim`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Claim {
    pub raw_byte_power: BigInt,
    pub quality_adj_power: BigInt,
}

/// `api.MinerPower`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MinerPower {
    pub miner_power: Claim,
    pub total_power: Claim,
    pub has_min_power: bool,
}

/// `api.ExtendedSectorInfo`: a sector a WinningPoSt proves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExtendedSectorInfo {
    pub seal_proof: i64,
    pub sector_number: u64,
    pub sector_key: Option<Cid>,
    #[serde(rename = "SealedCID")]
    pub sealed_cid: Cid,
}

/// `api.MiningBaseInfo`: `null` when the miner cannot mine at the round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MiningBaseInfo {
    pub miner_power: BigInt,
    pub network_power: BigInt,
    #[serde(deserialize_with = "null_as_default")]
    pub sectors: Vec<ExtendedSectorInfo>,
    pub worker_key: Address,
    pub sector_size: u64,
    pub prev_beacon_entry: BeaconEntry,
    #[serde(deserialize_with = "null_as_default")]
    pub beacon_entries: Vec<BeaconEntry>,
    pub eligible_for_mining: bool,
}

/// `api.BlockTemplate`: what the miner asks the node to assemble and sign.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BlockTemplate {
    pub miner: Address,
    pub parents: TipSetKey,
    pub ticket: Option<Ticket>,
    pub eproof: Option<ElectionProof>,
    #[serde(deserialize_with = "null_as_default")]
    pub beacon_values: Vec<BeaconEntry>,
    #[serde(deserialize_with = "null_as_default")]
    pub messages: Vec<SignedMessage>,
    pub epoch: ChainEpoch,
    pub timestamp: u64,
    #[serde(rename = "WinningPoStProof", deserialize_with = "null_as_default")]
    pub winning_post_proof: Vec<PoStProof>,
}

/// `types.BlockMsg`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BlockMsg {
    pub header: BlockHeader,
    #[serde(rename = "BlsMessages", deserialize_with = "null_as_default")]
    pub bls_messages: Vec<Cid>,
    #[serde(rename = "SecpkMessages", deserialize_with = "null_as_default")]
    pub secpk_messages: Vec<Cid>,
}

/// `api.NetworkParams`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkParams {
    pub network_name: String,
    pub block_delay_secs: u64,
    pub consensus_miner_min_power: BigInt,
    pub pre_commit_challenge_delay: ChainEpoch,
    /// The upgrade heights (`UpgradeFireHorseHeight`, …).
    pub fork_upgrade_params: BTreeMap<String, i64>,
    #[serde(rename = "Eip155ChainID")]
    pub eip155_chain_id: u64,
    pub genesis_timestamp: u64,
    /// Ours (Lotus's decoder ignores it): the block delay in milliseconds, for devnets whose
    /// epochs are shorter than a second.
    #[serde(rename = "BlockDelayMillis", default, skip_serializing_if = "Option::is_none")]
    pub block_delay_ms: Option<u64>,
    /// Ours: the genesis time in milliseconds.
    #[serde(rename = "GenesisTimestampMillis", default, skip_serializing_if = "Option::is_none")]
    pub genesis_ms: Option<u64>,
}

/// `api.APIVersion`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ApiVersion {
    pub version: String,
    #[serde(rename = "APIVersion")]
    pub api_version: u32,
    pub block_delay: u64,
    #[serde(default)]
    pub agent: String,
}

/// `api.ActiveSync`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ActiveSync {
    #[serde(rename = "WorkerID")]
    pub worker_id: u64,
    pub base: Option<TipSet>,
    pub target: Option<TipSet>,
    /// 4: sync complete.
    pub stage: i64,
    pub height: ChainEpoch,
    pub start: String,
    pub end: String,
    pub message: String,
}

/// `api.SyncState`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SyncState {
    #[serde(deserialize_with = "null_as_default")]
    pub active_syncs: Vec<ActiveSync>,
    #[serde(rename = "VMApplied")]
    pub vm_applied: u64,
}

pub(crate) fn null_as_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// FullNode API versions (`api/version.go`): v0 1.5.0, v1 2.3.0.
pub const FULL_API_VERSION_0: u32 = 0x010500;
pub const FULL_API_VERSION_1: u32 = 0x020300;

/// The randomness domain tags (go-state-types `crypto.DomainSeparationTag`).
pub mod tags {
    pub const TICKET_PRODUCTION: i64 = 1;
    pub const ELECTION_PROOF_PRODUCTION: i64 = 2;
    pub const WINNING_POST_CHALLENGE_SEED: i64 = 3;
    pub const WINDOWED_POST_CHALLENGE_SEED: i64 = 4;
    pub const SEAL_RANDOMNESS: i64 = 5;
    pub const INTERACTIVE_SEAL_CHALLENGE_SEED: i64 = 6;
    pub const WINDOWED_POST_DEADLINE_ASSIGNMENT: i64 = 7;
    pub const MARKET_DEAL_CRON_SEED: i64 = 8;
    pub const POST_CHAIN_COMMIT: i64 = 9;
}

/// The entropy Lotus's miner draws its randomness with: the CBOR of its ID address (a CBOR
/// byte string of the address bytes).
pub fn address_entropy(a: &Address) -> Vec<u8> {
    fvm_ipld_encoding::to_vec(&a.0).expect("an address encodes")
}

/// Lotus's draw (`chain/rand.DrawRandomnessFromDigest`):
/// `blake2b256(i64_be(tag) ‖ digest ‖ i64_be(epoch) ‖ entropy)`.
pub fn draw_randomness(digest: &[u8; 32], tag: i64, epoch: ChainEpoch, entropy: &[u8]) -> [u8; 32] {
    let mut st = blake2b_simd::Params::new().hash_length(32).to_state();
    st.update(&tag.to_be_bytes());
    st.update(digest);
    st.update(&epoch.to_be_bytes());
    st.update(entropy);
    st.finalize().as_bytes().try_into().expect("32 bytes")
}

/// blake2b-256.
pub fn blake2b256(data: &[u8]) -> [u8; 32] {
    blake2b_simd::Params::new().hash_length(32).hash(data).as_bytes().try_into().expect("32 bytes")
}

/// The builtin actors' method numbers and params this project sends (v18, network version
/// 28), as CBOR of the actor crates' own types.
/// The miner actor's policy bounds that both the miner (to time its batches) and the devnet
/// (to enforce them) use. The epoch counts are the devnet's, shortened from mainnet's (whose
/// 30-day windows a devnet with one-second epochs would never reach); the sector counts are
/// the v18 actor's.
pub mod policy {
    use super::ChainEpoch;
    /// The oldest ticket a pre-commit may use, in epochs (v18's MaxPreCommitRandomnessLookback
    /// is a day plus finality).
    pub const MAX_PRE_COMMIT_RANDOMNESS_LOOKBACK: ChainEpoch = 900 + 150;
    /// How long a pre-commit waits for its prove-commit before it expires, in epochs (mainnet's
    /// MaxProveCommitDuration is 30 days plus the challenge delay).
    pub const MAX_PROVE_COMMIT_DURATION: ChainEpoch = 1200;
    /// The most sectors one PreCommitSectorBatch2 may carry.
    pub const PRE_COMMIT_SECTOR_BATCH_MAX_SIZE: usize = 256;
    /// The fewest and the most sectors one aggregate seal proof may cover.
    pub const MIN_AGGREGATED_SECTORS: usize = 4;
    pub const MAX_AGGREGATED_SECTORS: usize = 819;
}

pub mod actors {
    pub use fil_actor_miner_state::v18 as miner;
    pub use fil_actor_power_state::v18 as power;

    /// The power actor (`f04`), which creates miners.
    pub const POWER_ACTOR: u64 = 4;
    /// The account method a plain send calls.
    pub const METHOD_SEND: u64 = 0;

    /// The miner actor's methods (v18 numbers) this project sends or applies.
    pub const MINER_CHANGE_WORKER_ADDRESS: u64 = 3;
    pub const MINER_CHANGE_PEER_ID: u64 = 4;
    pub const MINER_SUBMIT_WINDOWED_POST: u64 = 5;
    pub const MINER_TERMINATE_SECTORS: u64 = 9;
    pub const MINER_DECLARE_FAULTS_RECOVERED: u64 = 11;
    pub const MINER_WITHDRAW_BALANCE: u64 = 16;
    pub const MINER_CHANGE_MULTIADDRS: u64 = 18;
    pub const MINER_COMPACT_PARTITIONS: u64 = 19;
    pub const MINER_COMPACT_SECTOR_NUMBERS: u64 = 20;
    pub const MINER_CONFIRM_CHANGE_WORKER_ADDRESS: u64 = 21;
    pub const MINER_REPAY_DEBT: u64 = 22;
    pub const MINER_CHANGE_OWNER_ADDRESS: u64 = 23;
    pub const MINER_EXTEND_SECTOR_EXPIRATION2: u64 = 32;
    pub const MINER_PRE_COMMIT_SECTOR_BATCH2: u64 = 28;
    pub const MINER_PROVE_COMMIT_SECTORS3: u64 = 34;
    pub const MINER_PROVE_REPLICA_UPDATES3: u64 = 35;
    pub const POWER_CREATE_MINER: u64 = 2;

    /// The power actor's CreateMiner message from `owner` (as `lotus-miner init` sends it):
    /// a miner with `worker` proving with `window_post_proof`, the creation `deposit` as value.
    pub fn create_miner(
        owner: super::Address,
        worker: super::Address,
        window_post_proof: i64,
        deposit: super::BigInt,
    ) -> super::Message {
        let params = power::CreateMinerParams {
            owner: owner.0,
            worker: worker.0,
            window_post_proof_type: fvm_shared::sector::RegisteredPoStProof::from(window_post_proof),
            peer: vec![],
            multiaddrs: vec![],
        };
        super::Message::call(owner, super::Address::id(POWER_ACTOR), POWER_CREATE_MINER, encode(&params), deposit)
    }

    /// CBOR of a params value.
    pub fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
        fvm_ipld_encoding::to_vec(v).expect("actor params encode")
    }

    /// Decode CBOR params, naming the type on failure.
    pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
        fvm_ipld_encoding::from_slice(bytes)
            .map_err(|e| format!("params do not decode as {}: {e}", std::any::type_name::<T>()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn addresses_read_both_networks_and_refuse_garbage() {
        let a: Address = serde_json::from_value(json!("t01000")).unwrap();
        assert_eq!(a, Address::id(1000));
        assert_eq!(serde_json::to_value(a).unwrap(), json!("f01000"));
        assert!(serde_json::from_value::<Address>(json!("x01000")).is_err());
        let e: MaybeAddress = serde_json::from_value(json!("<empty>")).unwrap();
        assert_eq!(serde_json::to_value(e).unwrap(), json!("<empty>"));
    }

    #[test]
    fn fil_amounts_print_and_parse_as_lotus_s() {
        assert_eq!(BigInt::from_atto(0u64).fil(), "0 FIL");
        assert_eq!(BigInt::from_atto(500_000_000_000_000_000u64).fil(), "0.5 FIL");
        assert_eq!(BigInt::from_atto(12_000_000_000_000_000_000u128).fil(), "12 FIL");
        assert_eq!(BigInt::from_atto(1u64).fil(), "0.000000000000000001 FIL");
        assert_eq!(BigInt::parse_fil("0.5").unwrap(), BigInt::from_atto(500_000_000_000_000_000u64));
        assert_eq!(BigInt::parse_fil("2 nanoFIL").unwrap(), BigInt::from_atto(2_000_000_000u64));
        assert_eq!(BigInt::parse_fil("10attofil").unwrap(), BigInt::from_atto(10u64));
        assert_eq!(BigInt::parse_fil("3 FIL").unwrap(), BigInt::from_atto(3_000_000_000_000_000_000u128));
        for bad in ["", "abc", "1.2.3", "-1", "0.0000000000000000001", "1 gigafil"] {
            assert!(BigInt::parse_fil(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn big_integers_are_decimal_strings() {
        let b: BigInt = serde_json::from_value(json!("20592036")).unwrap();
        assert_eq!(serde_json::to_value(&b).unwrap(), json!("20592036"));
        assert!(serde_json::from_value::<BigInt>(json!(5)).is_err(), "a bare number is refused, as in Lotus");
        assert!(serde_json::from_value::<BigInt>(json!(null)).is_err());
    }

    #[test]
    fn the_entropy_of_f01000_is_its_cbor_bytes() {
        // Lotus: a CBOR byte string (0x43) of protocol 0 and uvarint 1000.
        assert_eq!(address_entropy(&Address::id(1000)), vec![0x43, 0x00, 0xe8, 0x07]);
    }

    /// Decode `bytes` as `T` and encode it again: the same bytes (the actor types' CBOR is
    /// canonical), so what the miner sends is what the chain reads.
    fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned>(v: &T) -> Vec<u8> {
        let bytes = actors::encode(v);
        let back: T = actors::decode(&bytes).unwrap();
        assert_eq!(actors::encode(&back), bytes, "{}", std::any::type_name::<T>());
        bytes
    }

    #[test]
    fn every_message_param_round_trips_through_the_v18_actor_types() {
        use actors::{miner, power};
        use fvm_shared::sector::{PoStProof, RegisteredPoStProof, RegisteredSealProof};
        let cid = crate::wire::Commitment::Sealed.to_cid(&[7; 32]).0;
        let bits = fvm_ipld_bitfield::BitField::try_from_bits([1u64, 3, 4]).unwrap();
        let pc = miner::SectorPreCommitInfo {
            seal_proof: RegisteredSealProof::StackedDRG2KiBV1P1,
            sector_number: 9,
            sealed_cid: cid,
            seal_rand_epoch: 100,
            deal_ids: vec![],
            expiration: 1_555_300,
            unsealed_cid: miner::CompactCommD(Some(crate::wire::Commitment::Unsealed.to_cid(&[8; 32]).0)),
        };
        let bytes = round_trip(&miner::PreCommitSectorBatchParams2 { sectors: vec![pc] });
        // A tuple of one field (the sectors), whose one element is a 7-tuple.
        assert_eq!(&bytes[..2], &[0x81, 0x81]);
        round_trip(&miner::ProveCommitSectors3Params {
            sector_activations: vec![miner::SectorActivationManifest { sector_number: 9, pieces: vec![] }],
            sector_proofs: vec![fvm_ipld_encoding::RawBytes::new(vec![1; 192])],
            aggregate_proof: fvm_ipld_encoding::RawBytes::new(vec![]),
            aggregate_proof_type: None,
            require_activation_success: true,
            require_notification_success: true,
        });
        // The batch form: four sectors, no per-sector proofs, one SnarkPack v2 aggregate.
        round_trip(&miner::ProveCommitSectors3Params {
            sector_activations: (1..=4)
                .map(|n| miner::SectorActivationManifest { sector_number: n, pieces: vec![] })
                .collect(),
            sector_proofs: vec![],
            aggregate_proof: fvm_ipld_encoding::RawBytes::new(vec![5; 4096]),
            aggregate_proof_type: Some(fvm_shared::sector::RegisteredAggregateProof::SnarkPackV2),
            require_activation_success: true,
            require_notification_success: true,
        });
        round_trip(&miner::SubmitWindowedPoStParams {
            deadline: 2,
            partitions: vec![miner::PoStPartition { index: 0, skipped: bits.clone() }],
            proofs: vec![PoStProof {
                post_proof: RegisteredPoStProof::StackedDRGWindow2KiBV1P1,
                proof_bytes: vec![2; 192],
            }],
            chain_commit_epoch: 50,
            chain_commit_rand: fvm_shared::randomness::Randomness(vec![3; 32]),
        });
        round_trip(&miner::DeclareFaultsRecoveredParams {
            recoveries: vec![miner::RecoveryDeclaration { deadline: 1, partition: 0, sectors: bits }],
        });
        round_trip(&miner::ChangePeerIDParams { new_id: b"12D3KooW".to_vec() });
        let create = actors::create_miner(Address::id(100), Address::id(101), 10, BigInt::from_atto(5u64));
        let p: power::CreateMinerParams = actors::decode(create.params_bytes()).unwrap();
        assert_eq!((p.owner, p.worker), (Address::id(100).0, Address::id(101).0));
        round_trip(&p);
        round_trip(&power::CreateMinerReturn {
            id_address: Address::id(1000).0,
            robust_address: fvm_shared::address::Address::new_actor(b"x"),
        });
        // The operator's messages, in Lotus's (cbor-gen's) layout: a tuple per struct, and the
        // transparent ones bare.
        let id = |n: u64| Address::id(n).0;
        let bf = |v: &[u64]| fvm_ipld_bitfield::BitField::try_from_bits(v.iter().copied()).unwrap();
        let amount = fvm_shared::econ::TokenAmount::from_atto(1000);
        assert_eq!(
            round_trip(&miner::WithdrawBalanceParams { amount_requested: amount.clone() }),
            [0x81, 0x43, 0, 3, 0xe8]
        );
        assert_eq!(round_trip(&miner::WithdrawBalanceReturn { amount_withdrawn: amount }), [0x43, 0, 3, 0xe8]);
        // ChangeOwnerAddress takes a bare address (f01000: protocol 0, uvarint 1000).
        assert_eq!(round_trip(&miner::ChangeOwnerAddressParams { new_owner: id(1000) }), [0x43, 0, 0xe8, 7]);
        assert_eq!(
            round_trip(&miner::ChangeWorkerAddressParams { new_worker: id(100), new_control_addresses: vec![id(101)] }),
            [0x82, 0x42, 0, 100, 0x81, 0x42, 0, 101]
        );
        let terminate = round_trip(&miner::TerminateSectorsParams {
            terminations: vec![miner::TerminationDeclaration { deadline: 2, partition: 0, sectors: bf(&[1]) }],
        });
        assert_eq!(&terminate[..5], &[0x81, 0x81, 0x83, 2, 0]);
        assert_eq!(round_trip(&miner::TerminateSectorsReturn { done: true }), [0x81, 0xf5]);
        let extend = round_trip(&miner::ExtendSectorExpiration2Params {
            extensions: vec![miner::ExpirationExtension2 {
                deadline: 1,
                partition: 0,
                sectors: bf(&[1]),
                sectors_with_claims: vec![],
                new_expiration: 10,
            }],
        });
        assert_eq!(&extend[..5], &[0x81, 0x81, 0x85, 1, 0]);
        assert_eq!(&extend[extend.len() - 2..], &[0x80, 10], "no claims, then the new expiration");
        let compact = round_trip(&miner::CompactPartitionsParams { deadline: 3, partitions: bf(&[0]) });
        assert_eq!(&compact[..2], &[0x82, 3]);
        assert_eq!(round_trip(&miner::CompactSectorNumbersParams { mask_sector_numbers: bf(&[0]) })[0], 0x81);
        let addrs = round_trip(&miner::ChangeMultiaddrsParams {
            new_multi_addrs: vec![fvm_ipld_encoding::BytesDe(vec![4, 127, 0, 0, 1])],
        });
        assert_eq!(addrs, [0x81, 0x81, 0x45, 4, 127, 0, 0, 1]);
        // ProveReplicaUpdates3: seven fields; each update a 5-tuple whose pieces are 4-tuples
        // (a CID, the padded size, no allocation, no notifications).
        let cid = |tag: u8| crate::wire::Commitment::Sealed.to_cid(&[tag; 32]).0;
        let update = round_trip(&miner::ProveReplicaUpdates3Params {
            sector_updates: vec![miner::SectorUpdateManifest {
                sector: 7,
                deadline: 2,
                partition: 0,
                new_sealed_cid: cid(1),
                pieces: vec![miner::PieceActivationManifest {
                    cid: cid(2),
                    size: fvm_shared::piece::PaddedPieceSize(2048),
                    verified_allocation_key: None,
                    notify: vec![],
                }],
            }],
            sector_proofs: vec![fvm_ipld_encoding::RawBytes::new(vec![9; 3])],
            aggregate_proof: fvm_ipld_encoding::RawBytes::new(vec![]),
            update_proofs_type: fvm_shared::sector::RegisteredUpdateProof::StackedDRG2KiBV1,
            aggregate_proof_type: None,
            require_activation_success: true,
            require_notification_success: false,
        });
        assert_eq!(
            &update[..6],
            &[0x87, 0x81, 0x85, 7, 2, 0],
            "7 fields; one update of 5: sector, deadline, partition"
        );
        let pieces = update.windows(2).position(|w| w == [0x81, 0x84]).expect("one piece of four fields");
        assert_eq!(
            &update[update.len() - 10..],
            &[0x81, 0x43, 9, 9, 9, 0x40, 0, 0xf6, 0xf5, 0xf4],
            "proofs, empty aggregate, type 0, null, true, false"
        );
        assert!(pieces > 6);
        let e = actors::decode::<miner::SubmitWindowedPoStParams>(&[0xff]).err().expect("garbage does not decode");
        assert!(e.contains("SubmitWindowedPoStParams"), "{e}");
    }

    #[test]
    fn deadlines_follow_the_proving_period() {
        let shape = DeadlineInfo {
            current_epoch: 0,
            period_start: 5,
            index: 0,
            open: 5,
            close: 25,
            challenge: 3,
            fault_cutoff: 0,
            wpost_period_deadlines: 4,
            wpost_proving_period: 80,
            wpost_challenge_window: 20,
            wpost_challenge_lookback: 2,
            fault_declaration_cutoff: 5,
        };
        let d = shape.at(130);
        assert_eq!((d.period_start, d.index, d.open, d.close, d.challenge), (85, 2, 125, 145, 123));
        let n = DeadlineInfo::new(&shape, 85, 3, 130).next();
        assert_eq!((n.period_start, n.index, n.open), (165, 0, 165));
        assert_eq!(shape.at(4).period_start, -75);
    }
}
