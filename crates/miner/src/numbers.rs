//! Sector numbers: which are allocated, which are reserved under a name, and the next one
//! (Lotus's `storage/pipeline/numassign.go`; `lotus-miner sectors numbers`). Pure: the sector
//! database stores it as JSON.
//!
//! Unlike Lotus, the reserved set is always the union of the named reservations, so freeing
//! one reservation (even one made with `--force` over another) never frees numbers another
//! still holds.

use fvm_ipld_bitfield::BitField as Bits;
use lotus_api::contract::miner::NumAssignerMeta;
use lotus_api::wire::BitField;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum NumberError {
    #[error("reservation name {0:?} contains disallowed characters (allowed: a-z, A-Z, 0-9, '-', '_')")]
    BadName(String),
    #[error("a reservation named {0:?} already exists: choose another name, or --force to replace it")]
    Exists(String),
    #[error("reservation {name:?} collides with reservation {other:?} at {at}: pick other numbers, or --force")]
    CollidesReservation { name: String, other: String, at: String },
    #[error("reservation {name:?} collides with allocated sector numbers {at}: pick other numbers, or --force")]
    CollidesAllocated { name: String, at: String },
    #[error("no reservation named {0:?}: `lotus-miner sectors numbers reservations` lists them")]
    NoSuch(String),
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Numbers {
    pub allocated: BitField,
    #[serde(default)]
    pub reservations: BTreeMap<String, BitField>,
}

fn check_name(name: &str) -> Result<(), NumberError> {
    let ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(NumberError::BadName(name.into()))
    }
}

impl Numbers {
    /// The state a miner that only counted (`next` was its next number) starts from: every
    /// number below `next` allocated, and every number its sector table holds.
    pub fn from_counter(next: u64, in_table: impl IntoIterator<Item = u64>) -> Numbers {
        let below = (next > 0).then_some(0..next);
        let mut allocated = Bits::from_ranges(fvm_ipld_bitfield::iter::Ranges::new(below));
        for n in in_table {
            allocated.set(n);
        }
        Numbers { allocated: BitField(allocated), reservations: BTreeMap::new() }
    }

    fn reserved(&self) -> Bits {
        Bits::union(self.reservations.values().map(|b| &b.0))
    }

    fn in_use(&self) -> Bits {
        &self.allocated.0 | &self.reserved()
    }

    pub fn meta(&self) -> NumAssignerMeta {
        let in_use = self.in_use();
        NumAssignerMeta {
            reserved: BitField(self.reserved()),
            allocated: self.allocated.clone(),
            next: first_free(&in_use),
            in_use: BitField(in_use),
        }
    }

    /// Allocate the lowest number neither allocated nor reserved (never reused).
    pub fn allocate(&mut self) -> u64 {
        let n = first_free(&self.in_use());
        self.allocated.0.set(n);
        n
    }

    pub fn reserve(&mut self, name: &str, numbers: BitField, force: bool) -> Result<(), NumberError> {
        check_name(name)?;
        if self.reservations.contains_key(name) && !force {
            return Err(NumberError::Exists(name.into()));
        }
        if !force {
            for (other, held) in self.reservations.iter().filter(|(o, _)| *o != name) {
                let both = &held.0 & &numbers.0;
                if !both.is_empty() {
                    let at = BitField(both).to_human();
                    return Err(NumberError::CollidesReservation { name: name.into(), other: other.clone(), at });
                }
            }
            let both = &self.allocated.0 & &numbers.0;
            if !both.is_empty() {
                return Err(NumberError::CollidesAllocated { name: name.into(), at: BitField(both).to_human() });
            }
        }
        self.reservations.insert(name.into(), numbers);
        Ok(())
    }

    /// Reserve the `count` lowest numbers not in use.
    pub fn reserve_count(&mut self, name: &str, count: u64) -> Result<BitField, NumberError> {
        check_name(name)?;
        let in_use = self.in_use();
        let mut free = vec![];
        let (mut at, mut left) = (0u64, count);
        for r in in_use.ranges().chain(std::iter::once(u64::MAX..u64::MAX)) {
            if left == 0 {
                break;
            }
            let gap = r.start.saturating_sub(at).min(left);
            if gap > 0 {
                free.push(at..at + gap);
                left -= gap;
            }
            at = r.end;
        }
        let numbers = BitField(Bits::from_ranges(fvm_ipld_bitfield::iter::Ranges::new(free)));
        self.reserve(name, numbers.clone(), false)?;
        Ok(numbers)
    }

    pub fn free(&mut self, name: &str) -> Result<(), NumberError> {
        check_name(name)?;
        self.reservations.remove(name).map(|_| ()).ok_or_else(|| NumberError::NoSuch(name.into()))
    }
}

fn first_free(in_use: &Bits) -> u64 {
    match in_use.ranges().next() {
        Some(r) if r.start == 0 => r.end,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> BitField {
        BitField::from_human(s).unwrap()
    }

    #[test]
    fn allocation_skips_reservations_and_never_reuses() {
        let mut n = Numbers::from_counter(1, [4]);
        assert_eq!(n.meta().allocated.to_human(), "0,4", "below the counter and what the table holds");
        n.reserve("import", h("2-3"), false).unwrap();
        assert_eq!(n.allocate(), 1);
        assert_eq!(n.allocate(), 5, "2-3 reserved, 4 in the table");
        let m = n.meta();
        assert_eq!(
            (m.allocated.to_human(), m.reserved.to_human(), m.in_use.to_human(), m.next),
            ("0-1,4-5".into(), "2-3".into(), "0-5".into(), 6)
        );
        n.free("import").unwrap();
        assert_eq!(n.allocate(), 2, "freed numbers are allocated again");
    }

    #[test]
    fn reservations_refuse_collisions_unless_forced() {
        let mut n = Numbers::from_counter(3, []);
        n.reserve("a", h("10-12"), false).unwrap();
        let e = n.reserve("b", h("12-14"), false).unwrap_err();
        assert_eq!(e, NumberError::CollidesReservation { name: "b".into(), other: "a".into(), at: "12".into() });
        let e = n.reserve("b", h("2-4"), false).unwrap_err();
        assert!(e.to_string().contains("allocated sector numbers 2"), "{e}");
        assert_eq!(n.reserve("a", h("20"), false).unwrap_err(), NumberError::Exists("a".into()));
        assert!(matches!(n.reserve("bad name", h("30"), false), Err(NumberError::BadName(_))));
        n.reserve("b", h("12-14"), true).unwrap();
        n.free("b").unwrap();
        assert_eq!(n.meta().reserved.to_human(), "10-12", "freeing a forced overlap keeps the other reservation");
        assert_eq!(n.free("b").unwrap_err(), NumberError::NoSuch("b".into()));
    }

    #[test]
    fn reserve_count_takes_the_lowest_free_numbers() {
        let mut n = Numbers::from_counter(3, [5]);
        n.reserve("a", h("7"), false).unwrap();
        assert_eq!(n.reserve_count("b", 4).unwrap().to_human(), "3-4,6,8");
        assert_eq!(n.allocate(), 9);
        assert_eq!(n.reserve_count("c", 0).unwrap().to_human(), "");
    }
}
