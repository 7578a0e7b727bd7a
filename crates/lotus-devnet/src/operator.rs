//! The miner actor's methods an operator sends (`lotus-miner actor …`, `sectors extend|terminate|
//! compact-partitions`, `proving recover-faults`), applied with the v18 actor's rules: who may
//! call each, the deadline mutability and fault-declaration cutoff, the expiration bounds, the
//! termination fee (computed by the actor crate's own function), the worker-change delay and the
//! owner change's two steps. What the devnet leaves out: vesting, fee debt from continued faults,
//! FIL+ claims and beneficiaries other than the owner.

use super::{fail, Applied, Failure, Miner, State};
use fil_actor_miner_state::v18 as miner;
use fvm_shared::econ::TokenAmount;
use fvm_shared::error::ExitCode;
use lotus_api::chain::{actors, Address, BigInt, ChainEpoch};

/// The most sector numbers one CompactSectorNumbers may mask on this devnet.
const MAX_MASKED: u64 = 1_000_000;

/// Who sent a message to a miner, as the actor's caller checks see it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Caller {
    Owner,
    Worker,
    Control,
    /// The proposed new owner (only ChangeOwnerAddress accepts it).
    PendingOwner,
    Other,
}

pub fn caller(m: &Miner, from: u64) -> Caller {
    if from == m.owner {
        Caller::Owner
    } else if from == m.worker {
        Caller::Worker
    } else if m.control.contains(&from) {
        Caller::Control
    } else if m.pending_owner == Some(from) {
        Caller::PendingOwner
    } else {
        Caller::Other
    }
}

fn forbidden(m: &Miner, from: u64, who: &str) -> Failure {
    fail(ExitCode::USR_FORBIDDEN, format!("caller f0{from} is not {who} (owner f0{}, worker f0{})", m.owner, m.worker))
}

fn bad(e: String) -> Failure {
    fail(ExitCode::USR_SERIALIZATION, e)
}

fn token(b: &BigInt) -> TokenAmount {
    TokenAmount::from_atto(b.0.clone())
}

impl State {
    /// One of this module's methods, or `None` when `method` is not one of them.
    pub(super) fn operator_method(
        &mut self,
        from: u64,
        id: u64,
        method: u64,
        params: &[u8],
        epoch: ChainEpoch,
    ) -> Option<Applied> {
        use actors::{
            MINER_CHANGE_MULTIADDRS as CHANGE_MULTIADDRS, MINER_CHANGE_OWNER_ADDRESS as CHANGE_OWNER_ADDRESS,
            MINER_CHANGE_WORKER_ADDRESS as CHANGE_WORKER_ADDRESS, MINER_COMPACT_PARTITIONS as COMPACT_PARTITIONS,
            MINER_COMPACT_SECTOR_NUMBERS as COMPACT_SECTOR_NUMBERS,
            MINER_CONFIRM_CHANGE_WORKER_ADDRESS as CONFIRM_CHANGE_WORKER_ADDRESS,
            MINER_EXTEND_SECTOR_EXPIRATION2 as EXTEND_SECTOR_EXPIRATION2, MINER_REPAY_DEBT as REPAY_DEBT,
            MINER_TERMINATE_SECTORS as TERMINATE_SECTORS, MINER_WITHDRAW_BALANCE as WITHDRAW_BALANCE,
        };
        let who = caller(&self.miners[&id], from);
        let m = &self.miners[&id];
        let any_key = matches!(who, Caller::Owner | Caller::Worker | Caller::Control);
        Some(match method {
            WITHDRAW_BALANCE if who != Caller::Owner => Err(forbidden(m, from, "the owner")),
            WITHDRAW_BALANCE => actors::decode(params).map_err(bad).and_then(|p| self.withdraw(id, p)),
            CHANGE_WORKER_ADDRESS if who != Caller::Owner => Err(forbidden(m, from, "the owner")),
            CHANGE_WORKER_ADDRESS => actors::decode(params).map_err(bad).and_then(|p| self.change_worker(id, p, epoch)),
            CONFIRM_CHANGE_WORKER_ADDRESS if who != Caller::Owner => Err(forbidden(m, from, "the owner")),
            CONFIRM_CHANGE_WORKER_ADDRESS => self.confirm_worker(id, epoch),
            CHANGE_OWNER_ADDRESS if !matches!(who, Caller::Owner | Caller::PendingOwner) => {
                Err(forbidden(m, from, "the owner or the proposed owner"))
            }
            CHANGE_OWNER_ADDRESS => actors::decode(params).map_err(bad).and_then(|p| self.change_owner(id, from, p)),
            _ if !any_key => return None,
            REPAY_DEBT => Ok(self.repay(id)),
            CHANGE_MULTIADDRS => actors::decode::<miner::ChangeMultiaddrsParams>(params).map_err(bad).map(|p| {
                self.miners.get_mut(&id).expect("exists").multiaddrs =
                    p.new_multi_addrs.into_iter().map(|b| b.0).collect();
                vec![]
            }),
            EXTEND_SECTOR_EXPIRATION2 => actors::decode(params).map_err(bad).and_then(|p| self.extend(id, p, epoch)),
            TERMINATE_SECTORS => actors::decode(params).map_err(bad).and_then(|p| self.terminate(id, p, epoch)),
            COMPACT_PARTITIONS => actors::decode(params).map_err(bad).and_then(|p| self.compact(id, p, epoch)),
            COMPACT_SECTOR_NUMBERS => {
                actors::decode::<miner::CompactSectorNumbersParams>(params).map_err(bad).and_then(|p| {
                    // The devnet keeps allocated numbers one by one (the actor, as a bitfield):
                    // a mask it cannot hold is refused rather than filling its memory.
                    let n = p.mask_sector_numbers.len();
                    if n > MAX_MASKED {
                        return Err(fail(
                            ExitCode::USR_ILLEGAL_ARGUMENT,
                            format!("a mask of {n} sector numbers; this devnet masks at most {MAX_MASKED} at once"),
                        ));
                    }
                    // Masked numbers count as allocated: they can never be pre-committed.
                    self.miners.get_mut(&id).expect("exists").allocated.extend(p.mask_sector_numbers.iter());
                    Ok(vec![])
                })
            }
            _ => return None,
        })
    }

    /// The actor's deadline info for deadline `index`'s next instance that has not closed.
    pub fn next_instance(&self, index: u64, epoch: ChainEpoch) -> miner::DeadlineInfo {
        let p = &self.params;
        let (start, _, _) = self.deadline_at(epoch);
        miner::DeadlineInfo::new(
            start,
            index,
            epoch,
            p.wpost_period_deadlines,
            p.proving_period(),
            p.wpost_challenge_window,
            p.wpost_challenge_lookback,
            p.fault_declaration_cutoff(),
        )
        .next_not_elapsed()
    }

    /// The actor's `deadline_is_mutable`: at least one challenge window before the deadline's
    /// next instance opens.
    pub fn deadline_is_mutable(&self, index: u64, epoch: ChainEpoch) -> bool {
        epoch < self.next_instance(index, epoch).open - self.params.wpost_challenge_window
    }

    fn withdraw(&mut self, id: u64, p: miner::WithdrawBalanceParams) -> Applied {
        if p.amount_requested.is_negative() {
            return Err(fail(
                ExitCode::USR_ILLEGAL_ARGUMENT,
                format!("negative fund requested for withdrawal: {}", p.amount_requested),
            ));
        }
        let m = &self.miners[&id];
        if &m.balance.0 - &m.locked.0 < m.fee_debt.0 {
            return Err(fail(
                ExitCode::USR_INSUFFICIENT_FUNDS,
                format!("unlocked balance can not repay fee debt ({} attoFIL)", m.fee_debt),
            ));
        }
        self.repay(id);
        let m = self.miners.get_mut(&id).expect("exists");
        let available = (&m.balance.0 - &m.locked.0 - &m.fee_debt.0).max(0.into());
        let amount = available.min(p.amount_requested.atto().clone());
        m.balance.0 -= &amount;
        let owner = m.owner;
        self.accounts.get_mut(&owner).expect("the owner is an account").balance.0 += &amount;
        tracing::info!(miner = id, amount = %amount, "balance withdrawn to the owner");
        Ok(actors::encode(&miner::WithdrawBalanceReturn { amount_withdrawn: TokenAmount::from_atto(amount) }))
    }

    /// Pay the fee debt from the unlocked balance (the message's value was added to it).
    fn repay(&mut self, id: u64) -> Vec<u8> {
        let m = self.miners.get_mut(&id).expect("exists");
        let unlocked = (&m.balance.0 - &m.locked.0).max(0.into());
        let paid = unlocked.min(m.fee_debt.0.clone());
        m.fee_debt.0 -= &paid;
        m.balance.0 -= &paid; // burnt
        vec![]
    }

    /// An address the actor accepts as a worker or control key: an account on this chain.
    fn account_id(&self, a: &fvm_shared::address::Address, what: &str) -> Result<u64, Failure> {
        self.resolve(&Address(*a))
            .filter(|id| self.accounts.contains_key(id))
            .ok_or_else(|| fail(ExitCode::USR_ILLEGAL_ARGUMENT, format!("{what} {a} is not an account on this chain")))
    }

    fn change_worker(&mut self, id: u64, p: miner::ChangeWorkerAddressParams, epoch: ChainEpoch) -> Applied {
        let worker = self.account_id(&p.new_worker, "the new worker")?;
        if p.new_control_addresses.len() > 10 {
            return Err(fail(ExitCode::USR_ILLEGAL_ARGUMENT, "control addresses length 11 exceeds max 10"));
        }
        let control = p
            .new_control_addresses
            .iter()
            .map(|a| self.account_id(a, "a control address"))
            .collect::<Result<Vec<_>, _>>()?;
        let delay = self.params.worker_key_change_delay;
        let m = self.miners.get_mut(&id).expect("exists");
        m.control = control;
        // The actor keeps a change already pending (the new one is ignored until it lands).
        if worker != m.worker && m.pending_worker.is_none() {
            m.pending_worker = Some((worker, epoch + delay));
        }
        Ok(vec![])
    }

    /// As the actor's: nothing pending, or too early, is a no-op, not a failure (the CLI
    /// refuses a too-early confirmation itself).
    fn confirm_worker(&mut self, id: u64, epoch: ChainEpoch) -> Applied {
        Self::apply_pending_worker(self.miners.get_mut(&id).expect("exists"), epoch);
        Ok(vec![])
    }

    /// The actor's cron: a proposed worker key takes effect at its epoch.
    pub(super) fn apply_pending_worker(m: &mut Miner, epoch: ChainEpoch) {
        if let Some((w, at)) = m.pending_worker {
            if epoch >= at {
                m.worker = w;
                m.pending_worker = None;
            }
        }
    }

    fn change_owner(&mut self, id: u64, from: u64, p: miner::ChangeOwnerAddressParams) -> Applied {
        let new = self.account_id(&p.new_owner, "the new owner")?;
        let m = self.miners.get_mut(&id).expect("exists");
        if from == m.owner {
            // Proposing the current owner again withdraws a proposal.
            m.pending_owner = (new != m.owner).then_some(new);
            return Ok(vec![]);
        }
        if m.pending_owner != Some(new) {
            return Err(fail(
                ExitCode::USR_ILLEGAL_ARGUMENT,
                format!("f0{new} is not the proposed new owner ({:?})", m.pending_owner),
            ));
        }
        m.owner = new;
        m.pending_owner = None;
        Ok(vec![])
    }

    fn extend(&mut self, id: u64, p: miner::ExtendSectorExpiration2Params, epoch: ChainEpoch) -> Applied {
        let deadlines = self.params.wpost_period_deadlines;
        let max_extension = self.params.max_sector_expiration_extension;
        let mut changes = vec![];
        for decl in &p.extensions {
            if decl.deadline >= deadlines {
                return Err(fail(
                    ExitCode::USR_ILLEGAL_ARGUMENT,
                    format!("deadline {} not in range 0..{deadlines}", decl.deadline),
                ));
            }
            if !decl.sectors_with_claims.is_empty() {
                return Err(fail(ExitCode::USR_ILLEGAL_ARGUMENT, "this devnet has no FIL+ claims to maintain or drop"));
            }
            let m = &self.miners[&id];
            for n in decl.sectors.iter() {
                let s =
                    m.sectors.get(&n).ok_or_else(|| fail(ExitCode::USR_NOT_FOUND, format!("sector {n} not found")))?;
                if s.terminated.is_some() {
                    return Err(fail(
                        ExitCode::USR_ILLEGAL_STATE,
                        format!("refusing to replace inactive sector {n} (terminated)"),
                    ));
                }
                if s.expiration < epoch {
                    return Err(fail(ExitCode::USR_FORBIDDEN, format!("cannot extend expired sector {n}")));
                }
                if (s.deadline, s.partition) != (decl.deadline, decl.partition) {
                    return Err(fail(
                        ExitCode::USR_ILLEGAL_STATE,
                        format!(
                            "sector {n} is in deadline {} partition {}, not {} {}",
                            s.deadline, s.partition, decl.deadline, decl.partition
                        ),
                    ));
                }
                if s.faulty {
                    return Err(fail(
                        ExitCode::USR_ILLEGAL_STATE,
                        format!("refusing to replace inactive sector {n} (faulty)"),
                    ));
                }
                if decl.new_expiration < s.expiration {
                    return Err(fail(
                        ExitCode::USR_ILLEGAL_ARGUMENT,
                        format!(
                            "cannot reduce sector {n}'s expiration to {} from {}",
                            decl.new_expiration, s.expiration
                        ),
                    ));
                }
                if decl.new_expiration > epoch + max_extension {
                    return Err(fail(
                        ExitCode::USR_ILLEGAL_ARGUMENT,
                        format!(
                            "cannot be more than {max_extension} past current epoch {epoch}: sector {n} to {}",
                            decl.new_expiration
                        ),
                    ));
                }
                let sp = fvm_shared::sector::RegisteredSealProof::from(s.seal_proof);
                let lifetime = miner::seal_proof_sector_maximum_lifetime(sp).unwrap_or(0);
                if decl.new_expiration - s.activation > lifetime {
                    return Err(fail(
                        ExitCode::USR_ILLEGAL_ARGUMENT,
                        format!(
                            "total sector lifetime ({}) cannot exceed {lifetime} after activation {} (sector {n})",
                            decl.new_expiration - s.activation,
                            s.activation
                        ),
                    ));
                }
                changes.push((n, decl.new_expiration));
            }
        }
        let m = self.miners.get_mut(&id).expect("exists");
        for (n, to) in changes {
            m.sectors.get_mut(&n).expect("checked").expiration = to;
        }
        Ok(vec![])
    }

    fn terminate(&mut self, id: u64, p: miner::TerminateSectorsParams, epoch: ChainEpoch) -> Applied {
        let mut chosen = vec![];
        for decl in &p.terminations {
            if decl.deadline >= self.params.wpost_period_deadlines {
                return Err(fail(ExitCode::USR_ILLEGAL_ARGUMENT, format!("deadline {} out of range", decl.deadline)));
            }
            if !self.deadline_is_mutable(decl.deadline, epoch) {
                return Err(fail(
                    ExitCode::USR_ILLEGAL_ARGUMENT,
                    format!("cannot terminate sectors in immutable deadline {}", decl.deadline),
                ));
            }
            let m = &self.miners[&id];
            for n in decl.sectors.iter() {
                match m.sectors.get(&n) {
                    Some(s)
                        if s.terminated.is_none() && (s.deadline, s.partition) == (decl.deadline, decl.partition) =>
                    {
                        chosen.push(n)
                    }
                    _ => {
                        return Err(fail(
                            ExitCode::USR_ILLEGAL_ARGUMENT,
                            format!(
                                "sector {n} is not live in deadline {} partition {}",
                                decl.deadline, decl.partition
                            ),
                        ))
                    }
                }
            }
        }
        let m = self.miners.get_mut(&id).expect("exists");
        let mut fees = TokenAmount::from_atto(0);
        for n in &chosen {
            let s = m.sectors.get_mut(n).expect("checked");
            let fee = miner::pledge_penalty_for_termination(
                &token(&s.pledge),
                epoch - s.activation,
                &TokenAmount::from_atto(0),
            );
            s.terminated = Some(epoch);
            s.faulty = false;
            s.recovering = false;
            m.locked.0 -= &s.pledge.0;
            fees += fee;
        }
        Self::charge(m, fees.atto().clone());
        tracing::info!(miner = id, sectors = ?chosen, fee = %fees.atto(), "sectors terminated");
        Ok(actors::encode(&miner::TerminateSectorsReturn { done: true }))
    }

    /// Burn a penalty from the unlocked balance; what it cannot cover becomes fee debt.
    fn charge(m: &mut Miner, fee: fvm_shared::bigint::BigInt) {
        let unlocked = (&m.balance.0 - &m.locked.0).max(0.into());
        let paid = unlocked.clone().min(fee.clone());
        m.balance.0 -= &paid;
        m.fee_debt.0 += fee - paid;
    }

    fn compact(&mut self, id: u64, p: miner::CompactPartitionsParams, epoch: ChainEpoch) -> Applied {
        let d = p.deadline;
        if d >= self.params.wpost_period_deadlines {
            return Err(fail(ExitCode::USR_ILLEGAL_ARGUMENT, format!("invalid deadline {d}")));
        }
        if !self.deadline_is_mutable(d, epoch) {
            return Err(fail(
                ExitCode::USR_FORBIDDEN,
                format!("cannot compact deadline {d} during its challenge window, or the prior challenge window"),
            ));
        }
        let chosen: Vec<u64> = p.partitions.iter().collect();
        let m = self.miners.get_mut(&id).expect("exists");
        let parts = &m.deadlines[d as usize];
        for &i in &chosen {
            let Some(part) = parts.get(i as usize) else {
                return Err(fail(ExitCode::USR_ILLEGAL_ARGUMENT, format!("deadline {d} has no partition {i}")));
            };
            if part.iter().any(|n| m.sectors.get(n).is_some_and(|s| s.faulty && s.terminated.is_none())) {
                return Err(fail(
                    ExitCode::USR_ILLEGAL_ARGUMENT,
                    format!("cannot remove partition {d}.{i}: has faults"),
                ));
            }
        }
        // The chosen partitions go (with their terminated sectors); their live sectors fill the
        // deadline's partitions again, in number order.
        let per = sealing_proofs::post::partition_sectors(sealing_types::SectorSize(m.sector_size)).max(1);
        let (mut moved, mut kept) = (vec![], vec![]);
        for (i, part) in std::mem::take(&mut m.deadlines[d as usize]).into_iter().enumerate() {
            if !chosen.contains(&(i as u64)) {
                kept.push(part);
                continue;
            }
            for n in part {
                if m.sectors.get(&n).is_some_and(|s| s.terminated.is_none()) {
                    moved.push(n);
                } else {
                    m.sectors.remove(&n);
                }
            }
        }
        moved.sort_unstable();
        m.deadlines[d as usize] = kept;
        for n in moved {
            super::fill(&mut m.deadlines[d as usize], per, n);
        }
        for (pi, part) in m.deadlines[d as usize].iter().enumerate() {
            for n in part {
                if let Some(s) = m.sectors.get_mut(n) {
                    s.partition = pi as u64;
                }
            }
        }
        Ok(vec![])
    }

    /// Sectors whose expiration has passed when their deadline closes leave the chain's power
    /// (the actor's expiration queue, on time): their pledge is unlocked, no fee.
    pub(super) fn expire(m: &mut Miner, deadline: u64, close: ChainEpoch) -> Vec<u64> {
        let mut gone = vec![];
        for (n, s) in m.sectors.iter_mut() {
            if s.deadline == deadline && s.terminated.is_none() && s.expiration <= close {
                s.terminated = Some(close);
                s.faulty = false;
                s.recovering = false;
                m.locked.0 -= &s.pledge.0;
                gone.push(*n);
            }
        }
        gone
    }

    /// DeclareFaultsRecovered's rule: the deadline's next instance must not be within the
    /// fault-declaration cutoff.
    pub(super) fn check_declaration_deadline(&self, index: u64, epoch: ChainEpoch) -> Result<(), Failure> {
        if index >= self.params.wpost_period_deadlines {
            return Err(fail(ExitCode::USR_ILLEGAL_ARGUMENT, format!("deadline {index} out of range")));
        }
        let dl = self.next_instance(index, epoch);
        if dl.fault_cutoff_passed() {
            return Err(fail(
                ExitCode::USR_ILLEGAL_ARGUMENT,
                format!(
                    "late fault or recovery declaration at {epoch} for deadline {index} (it opens at {}, the cutoff is {})",
                    dl.open, dl.fault_cutoff
                ),
            ));
        }
        Ok(())
    }
}
