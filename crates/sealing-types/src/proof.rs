//! Registered seal proofs and sector sizes (reference §2.3: V1 0–4, V1_1 5–9, synthetic 10–14).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A sector size in bytes. Only the five sizes of the network are valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SectorSize(pub u64);

impl SectorSize {
    pub const KIB2: SectorSize = SectorSize(2 << 10);
    pub const MIB8: SectorSize = SectorSize(8 << 20);
    pub const MIB512: SectorSize = SectorSize(512 << 20);
    pub const GIB32: SectorSize = SectorSize(32 << 30);
    pub const GIB64: SectorSize = SectorSize(64 << 30);
    pub const ALL: [SectorSize; 5] = [Self::KIB2, Self::MIB8, Self::MIB512, Self::GIB32, Self::GIB64];

    /// `2KiB`, `32GiB`, ... as operators write it.
    pub fn name(self) -> &'static str {
        match self.0 {
            x if x == 2 << 10 => "2KiB",
            x if x == 8 << 20 => "8MiB",
            x if x == 512 << 20 => "512MiB",
            x if x == 32 << 30 => "32GiB",
            x if x == 64 << 30 => "64GiB",
            _ => "invalid",
        }
    }

    /// The env-override suffix: the size with "iB" dropped (`2K`, `32G`; reference §2.5).
    pub fn env_suffix(self) -> &'static str {
        match self.0 {
            x if x == 2 << 10 => "2K",
            x if x == 8 << 20 => "8M",
            x if x == 512 << 20 => "512M",
            x if x == 32 << 30 => "32G",
            x if x == 64 << 30 => "64G",
            _ => "invalid",
        }
    }
}

impl fmt::Display for SectorSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid sector size {0:?}: expected one of 2KiB, 8MiB, 512MiB, 32GiB, 64GiB")]
pub struct InvalidSectorSize(pub String);

impl FromStr for SectorSize {
    type Err = InvalidSectorSize;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = crate::size::parse_size(s).map_err(|_| InvalidSectorSize(s.to_string()))?;
        SectorSize::ALL.into_iter().find(|z| z.0 == bytes).ok_or_else(|| InvalidSectorSize(s.to_string()))
    }
}

/// A seal proof type, serialized as its integer like Go's `abi.RegisteredSealProof`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegisteredSealProof(i64);

impl RegisteredSealProof {
    pub const STACKED_DRG_2KIB_V1: Self = Self(0);
    pub const STACKED_DRG_8MIB_V1: Self = Self(1);
    pub const STACKED_DRG_512MIB_V1: Self = Self(2);
    pub const STACKED_DRG_32GIB_V1: Self = Self(3);
    pub const STACKED_DRG_64GIB_V1: Self = Self(4);
    pub const STACKED_DRG_2KIB_V1_1: Self = Self(5);
    pub const STACKED_DRG_8MIB_V1_1: Self = Self(6);
    pub const STACKED_DRG_512MIB_V1_1: Self = Self(7);
    pub const STACKED_DRG_32GIB_V1_1: Self = Self(8);
    pub const STACKED_DRG_64GIB_V1_1: Self = Self(9);

    /// Every proof type the resource table knows (V1, V1_1, V1_1 synthetic).
    pub fn all() -> impl Iterator<Item = Self> {
        (0..15).map(Self)
    }

    pub fn from_i64(n: i64) -> Option<Self> {
        (0..15).contains(&n).then_some(Self(n))
    }

    pub fn as_i64(self) -> i64 {
        self.0
    }

    pub fn sector_size(self) -> SectorSize {
        SectorSize::ALL[(self.0 % 5) as usize]
    }

    /// The V1_1 proof (what new sectors use) for a sector size.
    pub fn v1_1_for(size: SectorSize) -> Self {
        let idx = SectorSize::ALL.iter().position(|z| *z == size).expect("valid size") as i64;
        Self(5 + idx)
    }

    /// The V1 proof of the same size; the resource table is keyed on it.
    pub fn v1_base(self) -> Self {
        Self(self.0 % 5)
    }

    pub fn is_synthetic(self) -> bool {
        self.0 >= 10
    }
}

impl fmt::Display for RegisteredSealProof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ver = match self.0 / 5 {
            0 => "V1",
            1 => "V1_1",
            _ => "V1_1_Feat_SyntheticPoRep",
        };
        write!(f, "StackedDrg{}{}", self.sector_size().name(), ver)
    }
}

impl Serialize for RegisteredSealProof {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.0)
    }
}

impl<'de> Deserialize<'de> for RegisteredSealProof {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        RegisteredSealProof::from_i64(n)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown seal proof type {n}: expected 0..=14")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_proofs() {
        assert_eq!("32GiB".parse::<SectorSize>().unwrap(), SectorSize::GIB32);
        assert_eq!("2KiB".parse::<SectorSize>().unwrap().0, 2048);
        assert!("3KiB".parse::<SectorSize>().is_err());
        assert_eq!(RegisteredSealProof::v1_1_for(SectorSize::GIB32).as_i64(), 8);
        assert_eq!(RegisteredSealProof::from_i64(13).unwrap().sector_size(), SectorSize::GIB32);
        assert_eq!(RegisteredSealProof::from_i64(13).unwrap().v1_base().as_i64(), 3);
        assert!(RegisteredSealProof::from_i64(15).is_none());
    }
}
