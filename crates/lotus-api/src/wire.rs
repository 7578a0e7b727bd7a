//! Lotus's encodings of the values its APIs carry (reference §6.1): bytes as base64 strings,
//! CIDs as `{"/": "bafy…"}`, `abi.PieceInfo`, `storiface.SectorCids`, io.Reader params
//! (`storiface.Data`), the acquire mode of `Fetch` and the worker's `StoragePath`.

use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A `[]byte` on the wire: standard base64 with padding, as Go's encoding/json writes it
/// (`null` decodes as empty, as Go does).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Bytes(pub Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({} bytes)", self.0.len())
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Bytes(v)
    }
}

impl Bytes {
    /// Exactly 32 bytes (a ticket, a seed, randomness), or an error naming `what`.
    pub fn to_32(&self, what: &str) -> Result<[u8; 32], String> {
        self.0.as_slice().try_into().map_err(|_| format!("{what} must be 32 bytes, got {}", self.0.len()))
    }
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.0)
    }
    /// The inverse of [`Bytes::to_base64`] (how Lotus's JSON carries bytes).
    pub fn from_base64(s: &str) -> Result<Bytes, String> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.decode(s).map(Bytes).map_err(|e| format!("bad base64: {e}"))
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Option::<String>::deserialize(d)?.unwrap_or_default();
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map(Bytes)
            .map_err(|e| serde::de::Error::custom(format!("bytes must be base64 ({e})")))
    }
}

/// A CID, on the wire `{"/": "<CIDv1 string>"}`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cid(pub cid::Cid);

impl fmt::Debug for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cid({})", self.0)
    }
}

impl fmt::Display for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Cid {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        cid::Cid::try_from(s).map(Cid).map_err(|e| format!("invalid CID {s:?}: {e}"))
    }
}

#[derive(Serialize, Deserialize)]
struct CidJson {
    #[serde(rename = "/")]
    cid: String,
}

impl Serialize for Cid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        CidJson { cid: self.0.to_string() }.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Cid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let j = CidJson::deserialize(d)?;
        j.cid.parse().map_err(serde::de::Error::custom)
    }
}

/// Which commitment a CID holds (go-fil-commcid): the codec and multihash of each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Commitment {
    /// CommD / a piece's CommP: fil-commitment-unsealed, sha2-256-trunc254-padded.
    Unsealed,
    /// CommR: fil-commitment-sealed, poseidon-bls12_381-a2-fc1.
    Sealed,
}

impl Commitment {
    fn codes(self) -> (u64, u64) {
        match self {
            Commitment::Unsealed => (0xf101, 0x1012),
            Commitment::Sealed => (0xf102, 0xb401),
        }
    }

    pub fn to_cid(self, c: &[u8; 32]) -> Cid {
        let (codec, mh) = self.codes();
        let h = cid::multihash::Multihash::<64>::wrap(mh, c).expect("32 bytes fit a 64-byte multihash");
        Cid(cid::Cid::new_v1(codec, h))
    }

    /// The 32-byte commitment inside `c`, refusing a CID of another kind.
    pub fn from_cid(self, c: &Cid) -> Result<[u8; 32], String> {
        let (codec, mh) = self.codes();
        let h = c.0.hash();
        if c.0.codec() != codec || h.code() != mh {
            return Err(format!(
                "{c} is not a {} commitment (codec {:#x}, multihash {:#x}; expected {codec:#x}, {mh:#x})",
                match self {
                    Commitment::Unsealed => "data (CommD/CommP)",
                    Commitment::Sealed => "replica (CommR)",
                },
                c.0.codec(),
                h.code()
            ));
        }
        h.digest().try_into().map_err(|_| format!("{c}: the commitment digest is not 32 bytes"))
    }
}

/// `abi.PieceInfo`: a piece's padded size and its CommP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PieceInfo {
    /// Padded bytes (a power of two).
    #[serde(rename = "Size")]
    pub size: u64,
    #[serde(rename = "PieceCID")]
    pub piece_cid: Cid,
}

/// `storiface.SectorCids`, what PreCommit2 returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectorCids {
    #[serde(rename = "Unsealed")]
    pub unsealed: Cid,
    #[serde(rename = "Sealed")]
    pub sealed: Cid,
}

/// An io.Reader param (Lotus's `lib/rpcenc`): the bytes are not in the JSON; it says where
/// they come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    /// `{"Type":"null","Info":"<n>"}`: n zero bytes (a committed-capacity piece).
    Null(u64),
    /// `{"Type":"push","Info":"<uuid>"}`: the caller POSTs the bytes to the callee's
    /// `/rpc/streams/v0/push/<uuid>`.
    Push(uuid::Uuid),
    /// `{"Type":"http","Info":"<url>"}`: the callee GETs them from the URL.
    Http(String),
}

#[derive(Serialize, Deserialize)]
struct DataJson {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "Info")]
    info: String,
}

impl Serialize for Data {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (kind, info) = match self {
            Data::Null(n) => ("null", n.to_string()),
            Data::Push(u) => ("push", u.to_string()),
            Data::Http(url) => ("http", url.clone()),
        };
        DataJson { kind: kind.into(), info }.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let j = DataJson::deserialize(d)?;
        match j.kind.as_str() {
            "null" => j
                .info
                .parse()
                .map(Data::Null)
                .map_err(|_| D::Error::custom(format!("null reader: size {:?} is not a number", j.info))),
            "push" => j
                .info
                .parse()
                .map(Data::Push)
                .map_err(|_| D::Error::custom(format!("push reader: {:?} is not a UUID", j.info))),
            "http" => Ok(Data::Http(j.info)),
            other => Err(D::Error::custom(format!("unknown reader type {other:?}: expected null, push or http"))),
        }
    }
}

/// The last param of `Fetch`: whether the source copy is removed (`move`) or kept (`copy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AcquireMode {
    Move,
    Copy,
}

/// One of a worker's local paths, as `Paths` lists them (`storiface.StoragePath`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoragePath {
    #[serde(rename = "ID")]
    pub id: uuid::Uuid,
    #[serde(rename = "Weight")]
    pub weight: u64,
    #[serde(rename = "LocalPath")]
    pub local_path: String,
    #[serde(rename = "CanSeal")]
    pub can_seal: bool,
    #[serde(rename = "CanStore")]
    pub can_store: bool,
}

/// `storiface.Range` (ReleaseUnsealed): unpadded offset and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    #[serde(rename = "Offset")]
    pub offset: u64,
    #[serde(rename = "Size")]
    pub size: u64,
}

/// The result param of a `Return*` call. When the call failed, Lotus's worker sends the zero
/// value of the result type (`{"Size":0,"PieceCID":null}`), which is not a valid `T`: the
/// result is decoded here, and only counts when the call's error is null.
#[derive(Clone, Debug, PartialEq)]
pub enum ReturnValue<T> {
    Valid(T),
    Invalid(String),
}

impl<T> ReturnValue<T> {
    /// The result, or why it does not decode (for a call that reports success).
    pub fn valid(self) -> Result<T, String> {
        match self {
            ReturnValue::Valid(t) => Ok(t),
            ReturnValue::Invalid(why) => Err(why),
        }
    }
}

impl<T: Serialize> Serialize for ReturnValue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ReturnValue::Valid(t) => t.serialize(s),
            // Never re-emit what did not decode.
            ReturnValue::Invalid(_) => s.serialize_none(),
        }
    }
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for ReturnValue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        Ok(match serde_json::from_value(v) {
            Ok(t) => ReturnValue::Valid(t),
            Err(e) => ReturnValue::Invalid(e.to_string()),
        })
    }
}

/// go-bitfield's JSON: run lengths, starting with a run of zeros (`[5, 1]` is {5}).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BitField(pub fvm_ipld_bitfield::BitField);

impl Serialize for BitField {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        fvm_ipld_bitfield::json::BitFieldJsonRef(&self.0).serialize(s)
    }
}

impl<'de> Deserialize<'de> for BitField {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        fvm_ipld_bitfield::json::BitFieldJson::deserialize(d).map(|j| BitField(j.0))
    }
}

impl BitField {
    /// The set of these numbers (any order, repeats allowed).
    pub fn of(numbers: impl IntoIterator<Item = u64>) -> BitField {
        BitField(fvm_ipld_bitfield::BitField::try_from_bits(numbers).expect("sector numbers fit a bitfield"))
    }

    /// Lotus's human ranges (`strle`): `1-3,5`. Empty is the empty string (Lotus prints
    /// "0", which reads as sector 0).
    pub fn to_human(&self) -> String {
        self.0
            .ranges()
            .map(|r| if r.end - r.start > 1 { format!("{}-{}", r.start, r.end - 1) } else { r.start.to_string() })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Parse `1-3,5` (ascending, not overlapping), as `lotus-miner sectors numbers reserve`.
    pub fn from_human(text: &str) -> Result<BitField, String> {
        let mut ranges: Vec<std::ops::Range<u64>> = vec![];
        let mut next = 0u64;
        for (i, part) in text.split(',').enumerate() {
            let num = |x: &str, side: &str| {
                x.trim().parse::<u64>().map_err(|e| format!("parsing the {side} side of run {i} ({part:?}): {e}"))
            };
            let (start, end) = match part.split_once('-') {
                None => (num(part, "left")?, num(part, "left")?),
                Some((a, b)) => (num(a, "left")?, num(b, "right")?),
            };
            if start > end {
                return Err(format!("run {i}: start {start} is greater than end {end}"));
            }
            if i > 0 && start < next {
                return Err(format!("run {i} ({part}) starts at or before the end of the run before it"));
            }
            let end = end.checked_add(1).ok_or_else(|| format!("run {i}: {end} is too large"))?;
            // The bitfield's ranges must not touch: `1,2` is one run.
            match ranges.last_mut() {
                Some(last) if last.end == start => last.end = end,
                _ => ranges.push(start..end),
            }
            next = end;
        }
        let iter = fvm_ipld_bitfield::iter::Ranges::new(ranges);
        Ok(BitField(fvm_ipld_bitfield::BitField::from_ranges(iter)))
    }
}

/// The go-jsonrpc API version number: `major<<16 | minor<<8 | patch`.
pub fn version_string(v: u32) -> String {
    format!("{}.{}.{}", v >> 16, (v >> 8) & 0xff, v & 0xff)
}

/// A padded piece size from its unpadded size (fr32: 127 bytes of data in 128).
pub fn padded(unpadded: u64) -> u64 {
    unpadded + unpadded / 127
}

/// The unpadded size of a padded piece.
pub fn unpadded(padded: u64) -> u64 {
    padded - padded / 128
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitfields_are_go_bitfields_json_and_lotuss_human_ranges() {
        assert_eq!(BitField::from_human("1,2,3").unwrap().to_human(), "1-3", "touching runs are one");
        let bf = BitField::from_human("1-3,5,9-10").unwrap();
        assert_eq!(serde_json::to_value(&bf).unwrap(), json!([1, 3, 1, 1, 3, 2]));
        assert_eq!(serde_json::from_value::<BitField>(json!([1, 3, 1, 1, 3, 2])).unwrap(), bf);
        assert_eq!(bf.to_human(), "1-3,5,9-10");
        assert_eq!(serde_json::to_value(BitField::default()).unwrap(), json!([0]));
        assert_eq!(BitField::default().to_human(), "");
        assert_eq!(serde_json::from_value::<BitField>(json!([5, 1])).unwrap().0.iter().collect::<Vec<_>>(), [5]);
        for (bad, why) in
            [("3-1", "greater than end"), ("1,1", "at or before"), ("x", "left side of run 0"), ("1-y", "right side")]
        {
            let e = BitField::from_human(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
    use serde_json::json;

    #[test]
    fn bytes_are_base64_and_null_is_empty() {
        assert_eq!(serde_json::to_value(Bytes(vec![7])).unwrap(), json!("Bw=="));
        assert_eq!(serde_json::from_value::<Bytes>(json!("Bw==")).unwrap().0, [7]);
        assert!(serde_json::from_value::<Bytes>(json!(null)).unwrap().0.is_empty());
        let e = serde_json::from_value::<Bytes>(json!([7])).unwrap_err().to_string();
        assert!(e.contains("string"), "{e}");
        assert!(Bytes(vec![1; 31]).to_32("ticket").unwrap_err().contains("ticket must be 32 bytes, got 31"));
    }

    #[test]
    fn commitments_round_trip_through_their_cids_and_refuse_the_other_kind() {
        let c = [9u8; 32];
        let sealed = Commitment::Sealed.to_cid(&c);
        assert!(sealed.to_string().starts_with("bagboea4b5abc"), "{sealed}");
        assert_eq!(Commitment::Sealed.from_cid(&sealed).unwrap(), c);
        let unsealed = Commitment::Unsealed.to_cid(&c);
        assert!(unsealed.to_string().starts_with("baga6ea4seaq"), "{unsealed}");
        assert!(Commitment::Sealed.from_cid(&unsealed).unwrap_err().contains("not a replica (CommR) commitment"));
        let j = serde_json::to_value(unsealed).unwrap();
        assert_eq!(j, json!({ "/": unsealed.to_string() }));
        assert_eq!(serde_json::from_value::<Cid>(j).unwrap(), unsealed);
    }

    #[test]
    fn readers() {
        let u = uuid::Uuid::from_u128(7);
        for (d, j) in [
            (Data::Null(2032), json!({"Type": "null", "Info": "2032"})),
            (Data::Push(u), json!({"Type": "push", "Info": u.to_string()})),
            (Data::Http("http://x/p".into()), json!({"Type": "http", "Info": "http://x/p"})),
        ] {
            assert_eq!(serde_json::to_value(&d).unwrap(), j);
            assert_eq!(serde_json::from_value::<Data>(j).unwrap(), d);
        }
        let e = serde_json::from_value::<Data>(json!({"Type": "ftp", "Info": ""})).unwrap_err().to_string();
        assert!(e.contains("unknown reader type \"ftp\""), "{e}");
    }

    #[test]
    fn piece_sizes() {
        assert_eq!(padded(2032), 2048);
        assert_eq!(unpadded(2048), 2032);
        assert_eq!(unpadded(34359738368), 34091302912);
    }

    /// A failed call's `Return*` carries the zero value of its result, which is not a valid
    /// one: the params still decode, and the result is not used.
    #[test]
    fn a_failed_calls_zero_result_is_accepted() {
        use crate::contract::{miner, Method, ParamList};
        let call = json!({"Sector": {"Miner": 1000, "Number": 9}, "ID": "07070707-0707-0707-0707-070707070707"});
        let params = vec![call, json!({"Size": 0, "PieceCID": null}), json!({"Code": 0, "Message": "it broke"})];
        let (_, piece, err) =
            <miner::ReturnAddPiece as Method>::Params::from_values("ReturnAddPiece", &[], params).unwrap();
        assert!(piece.valid().is_err());
        assert_eq!(err.unwrap().message, "it broke");
        assert_eq!(serde_json::to_value(ReturnValue::<PieceInfo>::Invalid("x".into())).unwrap(), json!(null));
    }
}
