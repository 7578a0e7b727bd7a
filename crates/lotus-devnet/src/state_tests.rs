use super::*;

fn chain() -> State {
    let params = Params { proofs: Backend::Mock, ..Params::default() };
    State::genesis(params, 0, [7; 32])
}

#[test]
fn genesis_funds_the_default_wallet_and_its_key_signs() {
    let st = chain();
    let w = &st.accounts[&st.default_wallet];
    assert_eq!(w.balance, BigInt::from_atto(GENESIS_FUNDS));
    assert_eq!(w.key.0.protocol(), fvm_shared::address::Protocol::Secp256k1);
    assert_eq!(st.resolve(&w.key), Some(st.default_wallet));
}

#[test]
fn a_pushed_message_executes_at_the_next_epoch_with_a_receipt() {
    let mut st = chain();
    let from = st.accounts[&st.default_wallet].key;
    let to = st.new_key();
    let to_key = st.accounts[&to].key;
    let sent = st.push(Message::call(from, to_key, 0, vec![], BigInt::from_atto(FIL)), 3).unwrap();
    assert_eq!(sent.message.nonce, 0);
    st.advance(3);
    assert!(st.executed.is_empty(), "not included before the next epoch");
    st.advance(4);
    let e = &st.executed[&sent.cid().to_string()];
    assert_eq!((e.height, e.receipt.exit_code), (4, 0));
    assert_eq!(st.accounts[&to].balance, BigInt::from_atto(FIL));
    // A second message from the same sender gets the next nonce, even before the first lands.
    let a = st.push(Message::call(from, to_key, 0, vec![], BigInt::zero()), 5).unwrap();
    let b = st.push(Message::call(from, to_key, 0, vec![], BigInt::zero()), 5).unwrap();
    assert_eq!((a.message.nonce, b.message.nonce), (1, 2));
}

#[test]
fn a_message_the_sender_cannot_pay_fails_with_its_exit_code_and_changes_nothing() {
    let mut st = chain();
    let poor = st.new_key();
    let key = st.accounts[&poor].key;
    let sent =
        st.push(Message::call(key, Address::id(st.default_wallet), 0, vec![], BigInt::from_atto(5u64)), 0).unwrap();
    st.advance(1);
    let r = &st.executed[&sent.cid().to_string()].receipt;
    assert_eq!(r.exit_code, ExitCode::SYS_INSUFFICIENT_FUNDS.value() as i64);
    assert_eq!(st.accounts[&poor].nonce, 1, "a failed message still uses its nonce");
    assert_eq!(st.accounts[&st.default_wallet].balance, BigInt::from_atto(GENESIS_FUNDS));
}

/// Push a message from the default wallet to miner `id` at `at`, execute it, return its exit code.
fn call(st: &mut State, id: u64, method: u64, params: Vec<u8>, at: ChainEpoch) -> i64 {
    let owner = st.accounts[&st.default_wallet].key;
    let sent = st.push(Message::call(owner, Address::id(id), method, params, BigInt::zero()), at).unwrap();
    st.advance(at + 1);
    st.executed[&sent.cid().to_string()].receipt.exit_code
}

fn create_miner(st: &mut State, at: ChainEpoch) -> u64 {
    let owner = st.accounts[&st.default_wallet].key;
    let msg = actors::create_miner(owner, owner, 10, BigInt::from_atto(MINER_CREATION_DEPOSIT + 10 * FIL));
    let sent = st.push(msg, at).unwrap();
    st.advance(at + 1);
    let r = &st.executed[&sent.cid().to_string()].receipt;
    assert_eq!(r.exit_code, 0);
    let ret: actors::power::CreateMinerReturn = actors::decode(&r.return_data.as_ref().unwrap().0).unwrap();
    ret.id_address.id().unwrap()
}

#[test]
fn create_miner_returns_the_new_actor_and_a_pre_commit_locks_its_deposit() {
    let mut st = chain();
    let id = create_miner(&mut st, 0);
    assert_eq!(id, 1000);
    assert_eq!(st.miners[&id].sector_size, 2048);
    let comm_r = Commitment::Sealed.to_cid(&[1; 32]);
    let info = |n: u64| actors::miner::SectorPreCommitInfo {
        seal_proof: fvm_shared::sector::RegisteredSealProof::StackedDRG2KiBV1P1,
        sector_number: n,
        sealed_cid: comm_r.0,
        seal_rand_epoch: 1,
        deal_ids: vec![],
        expiration: 10_000,
        unsealed_cid: actors::miner::CompactCommD(None),
    };
    const PC: u64 = actors::MINER_PRE_COMMIT_SECTOR_BATCH2;
    let batch = actors::miner::PreCommitSectorBatchParams2 { sectors: vec![info(1), info(2)] };
    assert_eq!(call(&mut st, id, PC, actors::encode(&batch), 5), 0);
    assert_eq!(st.miners[&id].precommits.len(), 2);
    assert_eq!(st.miners[&id].locked, BigInt::from_atto(2 * PRE_COMMIT_DEPOSIT));
    // The same number again is refused: a number is allocated once.
    let again = actors::miner::PreCommitSectorBatchParams2 { sectors: vec![info(2)] };
    assert_eq!(call(&mut st, id, PC, actors::encode(&again), 6), ExitCode::USR_ILLEGAL_ARGUMENT.value() as i64);
    // Garbage params are a serialisation failure, not a crash.
    assert_eq!(call(&mut st, id, PC, vec![0xff, 0x00], 7), ExitCode::USR_SERIALIZATION.value() as i64);
}

#[test]
fn a_partition_without_proof_is_missed_and_its_sectors_turn_faulty() {
    let mut st = chain();
    let id = create_miner(&mut st, 0);
    let m = st.miners.get_mut(&id).unwrap();
    m.deadlines[0].push(vec![1]);
    m.sectors.insert(
        1,
        Sector {
            seal_proof: 5,
            sealed_cid: Commitment::Sealed.to_cid(&[1; 32]),
            activation: 1,
            expiration: 10_000,
            deadline: 0,
            partition: 0,
            faulty: false,
            recovering: false,
            pledge: BigInt::zero(),
            terminated: None,
            unproven: false,
            data: false,
            sector_key_cid: None,
            updated: None,
        },
    );
    // Deadline 0 of the second period opens at 80, closes at 100.
    st.advance(99);
    assert!(!st.miners[&id].sectors[&1].faulty);
    st.advance(100);
    assert!(st.miners[&id].sectors[&1].faulty);
    assert_eq!(st.miners[&id].missed_deadlines, 1);
}

#[test]
fn randomness_is_lotuss_draw_and_refuses_the_future() {
    let st = chain();
    let e = address_entropy(&Address::id(1000));
    let a = st.ticket_randomness(tags::SEAL_RANDOMNESS, 5, &e, 10).unwrap();
    assert_eq!(a, draw_randomness(&blake2b256(&st.ticket_vrf(5)), tags::SEAL_RANDOMNESS, 5, &e));
    assert_ne!(a, st.beacon_randomness(tags::SEAL_RANDOMNESS, 5, &e, 10).unwrap());
    assert!(st.beacon_randomness(tags::INTERACTIVE_SEAL_CHALLENGE_SEED, 11, &e, 10).is_err());
}

/// Pre-commit sectors 1..=n at `at` (their CommD is the CC one).
fn pre_commit(st: &mut State, id: u64, n: u64, at: ChainEpoch) {
    let info = |n: u64| actors::miner::SectorPreCommitInfo {
        seal_proof: fvm_shared::sector::RegisteredSealProof::StackedDRG2KiBV1P1,
        sector_number: n,
        sealed_cid: Commitment::Sealed.to_cid(&[n as u8; 32]).0,
        seal_rand_epoch: at - 1,
        deal_ids: vec![],
        expiration: 100_000,
        unsealed_cid: actors::miner::CompactCommD(None),
    };
    let batch = actors::miner::PreCommitSectorBatchParams2 { sectors: (1..=n).map(info).collect() };
    assert_eq!(call(st, id, actors::MINER_PRE_COMMIT_SECTOR_BATCH2, actors::encode(&batch), at), 0);
}

fn aggregated(numbers: &[u64], proof: Vec<u8>) -> Vec<u8> {
    actors::encode(&actors::miner::ProveCommitSectors3Params {
        sector_activations: numbers
            .iter()
            .map(|&n| actors::miner::SectorActivationManifest { sector_number: n, pieces: vec![] })
            .collect(),
        sector_proofs: vec![],
        aggregate_proof: fvm_ipld_encoding::RawBytes::new(proof),
        aggregate_proof_type: Some(fvm_shared::sector::RegisteredAggregateProof::SnarkPackV2),
        require_activation_success: true,
        require_notification_success: true,
    })
}

#[test]
fn an_aggregate_proof_activates_its_sectors_only_when_it_verifies_and_covers_enough() {
    let mut st = chain();
    let id = create_miner(&mut st, 0);
    pre_commit(&mut st, id, 4, 5);
    let at = 6 + st.params.pre_commit_challenge_delay + 1;
    st.advance(at);
    let entropy = address_entropy(&Address::id(id));
    let sealed: Vec<_> = (1..=4).map(|n| st.seal_inputs(id, n, &entropy, at).unwrap().1).collect();
    let proof = RegisteredSealProof::STACKED_DRG_2KIB_V1_1;
    let good = sealing_proofs::aggregate::aggregate(Backend::Mock, proof, id, &sealed, &[]).unwrap();
    const PROVE: u64 = actors::MINER_PROVE_COMMIT_SECTORS3;
    let illegal = ExitCode::USR_ILLEGAL_ARGUMENT.value() as i64;
    // Another miner's aggregate, and an aggregate of too few sectors: refused, nothing active.
    let other = sealing_proofs::aggregate::aggregate(Backend::Mock, proof, id + 1, &sealed, &[]).unwrap();
    assert_eq!(call(&mut st, id, PROVE, aggregated(&[1, 2, 3, 4], other), at), illegal);
    let three = sealing_proofs::aggregate::aggregate(Backend::Mock, proof, id, &sealed[..3], &[]).unwrap();
    assert_eq!(call(&mut st, id, PROVE, aggregated(&[1, 2, 3], three), at + 1), illegal);
    assert!(st.miners[&id].sectors.is_empty());
    assert_eq!(call(&mut st, id, PROVE, aggregated(&[1, 2, 3, 4], good), at + 2), 0);
    assert_eq!(st.miners[&id].sectors.len(), 4);
    assert!(st.miners[&id].precommits.is_empty());
}

#[test]
fn a_pre_commit_not_proven_in_time_expires() {
    let mut st = chain();
    let id = create_miner(&mut st, 0);
    pre_commit(&mut st, id, 1, 5);
    // The pre-commit landed at epoch 6.
    let late = 6 + policy::MAX_PROVE_COMMIT_DURATION + 1;
    st.advance(late);
    let entropy = address_entropy(&Address::id(id));
    let f = st.seal_inputs(id, 1, &entropy, late).unwrap_err();
    assert_eq!(f.code, ExitCode::USR_FORBIDDEN);
    assert!(f.why.contains("expired"), "{}", f.why);
}

// ---- the operator's methods ------------------------------------------------------------------

/// A proven sector `n` of miner `id` in deadline `d`, partition 0, with its pledge locked.
fn place(st: &mut State, id: u64, n: u64, d: u64, activation: ChainEpoch, expiration: ChainEpoch) {
    let m = st.miners.get_mut(&id).unwrap();
    if m.deadlines[d as usize].is_empty() {
        m.deadlines[d as usize].push(vec![]);
    }
    m.deadlines[d as usize][0].push(n);
    m.locked.0 += INITIAL_PLEDGE;
    m.sectors.insert(
        n,
        Sector {
            seal_proof: 5,
            sealed_cid: Commitment::Sealed.to_cid(&[n as u8; 32]),
            activation,
            expiration,
            deadline: d,
            partition: 0,
            faulty: false,
            recovering: false,
            pledge: BigInt::from_atto(INITIAL_PLEDGE),
            terminated: None,
            unproven: false,
            data: false,
            sector_key_cid: None,
            updated: None,
        },
    );
}

/// Push from account `from` to miner `id` at `at`; its exit code.
fn call_from(st: &mut State, from: u64, id: u64, method: u64, params: Vec<u8>, at: ChainEpoch) -> i64 {
    let key = st.accounts[&from].key;
    let sent = st.push(Message::call(key, Address::id(id), method, params, BigInt::zero()), at).unwrap();
    st.advance(at + 1);
    st.executed[&sent.cid().to_string()].receipt.exit_code
}

/// A funded account with a key in the wallet.
fn funded(st: &mut State) -> u64 {
    let k = st.new_key();
    st.accounts.get_mut(&k).unwrap().balance = BigInt::from_atto(FIL);
    k
}

/// The operator's method numbers, short.
mod om {
    pub use lotus_api::chain::actors::{
        MINER_CHANGE_OWNER_ADDRESS as CHANGE_OWNER_ADDRESS, MINER_CHANGE_WORKER_ADDRESS as CHANGE_WORKER_ADDRESS,
        MINER_COMPACT_PARTITIONS as COMPACT_PARTITIONS, MINER_COMPACT_SECTOR_NUMBERS as COMPACT_SECTOR_NUMBERS,
        MINER_CONFIRM_CHANGE_WORKER_ADDRESS as CONFIRM_CHANGE_WORKER_ADDRESS,
        MINER_EXTEND_SECTOR_EXPIRATION2 as EXTEND_SECTOR_EXPIRATION2, MINER_TERMINATE_SECTORS as TERMINATE_SECTORS,
        MINER_WITHDRAW_BALANCE as WITHDRAW_BALANCE,
    };
}

#[test]
fn only_the_owner_withdraws_and_only_what_no_pledge_locks() {
    let mut st = chain();
    let id = create_miner(&mut st, 0);
    let owner = st.default_wallet;
    place(&mut st, id, 1, 0, 1, 100_000);
    let stranger = funded(&mut st);
    let ask = |atto: u128| {
        actors::encode(&actors::miner::WithdrawBalanceParams {
            amount_requested: fvm_shared::econ::TokenAmount::from_atto(atto),
        })
    };
    assert_eq!(
        call_from(&mut st, stranger, id, om::WITHDRAW_BALANCE, ask(1), 2),
        ExitCode::USR_FORBIDDEN.value() as i64
    );
    let before = st.accounts[&owner].balance.0.clone();
    let available = &st.miners[&id].balance.0 - &st.miners[&id].locked.0;
    assert_eq!(call_from(&mut st, owner, id, om::WITHDRAW_BALANCE, ask(1_000_000 * FIL), 4), 0);
    assert_eq!(&st.accounts[&owner].balance.0 - before, available, "everything unlocked, nothing more");
    assert_eq!(st.miners[&id].balance.0, st.miners[&id].locked.0);
}

#[test]
fn a_new_worker_key_takes_effect_only_after_the_delay() {
    let mut st = chain();
    st.params.worker_key_change_delay = 10;
    let id = create_miner(&mut st, 0);
    let owner = st.default_wallet;
    let (new_worker, control) = (funded(&mut st), funded(&mut st));
    let params = actors::miner::ChangeWorkerAddressParams {
        new_worker: st.accounts[&new_worker].key.0,
        new_control_addresses: vec![st.accounts[&control].key.0],
    };
    assert_eq!(
        call_from(&mut st, new_worker, id, om::CHANGE_WORKER_ADDRESS, actors::encode(&params), 2),
        ExitCode::USR_FORBIDDEN.value() as i64
    );
    assert_eq!(call_from(&mut st, owner, id, om::CHANGE_WORKER_ADDRESS, actors::encode(&params), 4), 0);
    let m = &st.miners[&id];
    assert_eq!((m.worker, m.pending_worker, m.control.clone()), (owner, Some((new_worker, 15)), vec![control]));
    assert_eq!(
        call_from(&mut st, owner, id, om::CONFIRM_CHANGE_WORKER_ADDRESS, vec![], 6),
        0,
        "too early: a no-op, as the actor's"
    );
    assert_eq!(st.miners[&id].worker, owner);
    assert_eq!(call_from(&mut st, owner, id, om::CONFIRM_CHANGE_WORKER_ADDRESS, vec![], 16), 0);
    assert_eq!((st.miners[&id].worker, st.miners[&id].pending_worker), (new_worker, None));
    // The owner changes in two steps: proposed by the owner, confirmed by the new one.
    let new_owner = funded(&mut st);
    let p = actors::encode(&actors::miner::ChangeOwnerAddressParams { new_owner: st.accounts[&new_owner].key.0 });
    assert_eq!(call_from(&mut st, owner, id, om::CHANGE_OWNER_ADDRESS, p.clone(), 20), 0);
    assert_eq!((st.miners[&id].owner, st.miners[&id].pending_owner), (owner, Some(new_owner)));
    assert_eq!(call_from(&mut st, new_owner, id, om::CHANGE_OWNER_ADDRESS, p, 22), 0);
    assert_eq!((st.miners[&id].owner, st.miners[&id].pending_owner), (new_owner, None));
}

#[test]
fn terminating_needs_a_mutable_deadline_and_costs_the_actor_s_fee() {
    let mut st = chain(); // 4 deadlines of 20 epochs: a period of 80
    let id = create_miner(&mut st, 0);
    let owner = st.default_wallet;
    place(&mut st, id, 1, 2, 1, 100_000);
    let decl = |n: u64| {
        actors::encode(&actors::miner::TerminateSectorsParams {
            terminations: vec![actors::miner::TerminationDeclaration {
                deadline: 2,
                partition: 0,
                sectors: fvm_ipld_bitfield::BitField::try_from_bits([n]).unwrap(),
            }],
        })
    };
    // Deadline 2 opens at 40: from epoch 20 (one window before) until it closes at 60 it is immutable.
    assert!(st.deadline_is_mutable(2, 19) && !st.deadline_is_mutable(2, 20) && !st.deadline_is_mutable(2, 59));
    assert_eq!(
        call_from(&mut st, owner, id, om::TERMINATE_SECTORS, decl(1), 30),
        ExitCode::USR_ILLEGAL_ARGUMENT.value() as i64
    );
    assert_eq!(
        call_from(&mut st, owner, id, om::TERMINATE_SECTORS, decl(9), 61),
        ExitCode::USR_ILLEGAL_ARGUMENT.value() as i64,
        "no such sector"
    );
    let (balance, locked) = (st.miners[&id].balance.0.clone(), st.miners[&id].locked.0.clone());
    assert_eq!(call_from(&mut st, owner, id, om::TERMINATE_SECTORS, decl(1), 63), 0);
    let m = &st.miners[&id];
    assert_eq!(m.sectors[&1].terminated, Some(64));
    assert_eq!(&locked - &m.locked.0, INITIAL_PLEDGE.into(), "the pledge is unlocked");
    // A young sector pays the minimum: 2% of its pledge.
    assert_eq!(balance - &m.balance.0, (INITIAL_PLEDGE * 2 / 100).into());
    assert!(st.required(&st.miners[&id], 2, 0, 120).is_empty(), "a terminated sector is not proven any more");
}

#[test]
fn extensions_stay_within_the_actor_s_bounds() {
    let mut st = chain();
    let id = create_miner(&mut st, 0);
    let owner = st.default_wallet;
    place(&mut st, id, 1, 1, 1, 10_000);
    let ext = |to: ChainEpoch| {
        actors::encode(&actors::miner::ExtendSectorExpiration2Params {
            extensions: vec![actors::miner::ExpirationExtension2 {
                deadline: 1,
                partition: 0,
                sectors: fvm_ipld_bitfield::BitField::try_from_bits([1u64]).unwrap(),
                sectors_with_claims: vec![],
                new_expiration: to,
            }],
        })
    };
    assert_eq!(
        call_from(&mut st, owner, id, om::EXTEND_SECTOR_EXPIRATION2, ext(9_000), 2),
        ExitCode::USR_ILLEGAL_ARGUMENT.value() as i64
    );
    let too_far = 5 + st.params.max_sector_expiration_extension + 1;
    assert_eq!(
        call_from(&mut st, owner, id, om::EXTEND_SECTOR_EXPIRATION2, ext(too_far), 4),
        ExitCode::USR_ILLEGAL_ARGUMENT.value() as i64
    );
    assert_eq!(call_from(&mut st, owner, id, om::EXTEND_SECTOR_EXPIRATION2, ext(500_000), 6), 0);
    assert_eq!(st.miners[&id].sectors[&1].expiration, 500_000);
}

#[test]
fn a_sector_expires_when_its_deadline_closes_past_its_expiration() {
    let mut st = chain();
    let id = create_miner(&mut st, 0);
    place(&mut st, id, 1, 0, 1, 85);
    st.miners.get_mut(&id).unwrap().proven.entry(80).or_default().insert(0);
    // Deadline 0's instance at 80 closes at 100, past the expiration.
    st.advance(99);
    assert_eq!(st.miners[&id].sectors[&1].terminated, None);
    st.advance(100);
    assert_eq!(st.miners[&id].sectors[&1].terminated, Some(100));
    assert_eq!(st.miners[&id].locked, BigInt::zero());
}

#[test]
fn recoveries_are_refused_past_the_fault_cutoff_and_make_a_sector_required_again() {
    let mut st = chain(); // cutoff: 23 epochs (20 * 7 / 6)
    let id = create_miner(&mut st, 0);
    let owner = st.default_wallet;
    place(&mut st, id, 1, 3, 1, 100_000);
    st.miners.get_mut(&id).unwrap().sectors.get_mut(&1).unwrap().faulty = true;
    assert!(st.required(&st.miners[&id], 3, 0, 140).is_empty(), "a faulty sector is not expected in a proof");
    let rec = actors::encode(&actors::miner::DeclareFaultsRecoveredParams {
        recoveries: vec![actors::miner::RecoveryDeclaration {
            deadline: 3,
            partition: 0,
            sectors: fvm_ipld_bitfield::BitField::try_from_bits([1u64]).unwrap(),
        }],
    });
    // Deadline 3 opens at 60 and 140: at 38 its open is 22 epochs away, inside the cutoff.
    assert_eq!(
        call_from(&mut st, owner, id, actors::MINER_DECLARE_FAULTS_RECOVERED, rec.clone(), 37),
        ExitCode::USR_ILLEGAL_ARGUMENT.value() as i64
    );
    assert_eq!(call_from(&mut st, owner, id, actors::MINER_DECLARE_FAULTS_RECOVERED, rec, 100), 0);
    assert!(st.miners[&id].sectors[&1].recovering);
    assert_eq!(st.required(&st.miners[&id], 3, 0, 140), vec![1]);
}

#[test]
fn compaction_drops_terminated_sectors_and_repacks_the_live_ones() {
    let mut st = chain();
    let id = create_miner(&mut st, 0);
    let owner = st.default_wallet;
    for n in 1..=3 {
        place(&mut st, id, n, 1, 1, 100_000);
    }
    st.miners.get_mut(&id).unwrap().sectors.get_mut(&2).unwrap().terminated = Some(5);
    // Proven at deadline 1's first instance (20 to 40), so not faulty when it closes.
    st.miners.get_mut(&id).unwrap().proven.entry(20).or_default().insert(0);
    let p = actors::encode(&actors::miner::CompactPartitionsParams {
        deadline: 1,
        partitions: fvm_ipld_bitfield::BitField::try_from_bits([0u64]).unwrap(),
    });
    // Deadline 1 opens at 20: immutable from 0 to 40.
    assert_eq!(
        call_from(&mut st, owner, id, om::COMPACT_PARTITIONS, p.clone(), 10),
        ExitCode::USR_FORBIDDEN.value() as i64
    );
    assert_eq!(call_from(&mut st, owner, id, om::COMPACT_PARTITIONS, p, 45), 0);
    let m = &st.miners[&id];
    assert_eq!(m.deadlines[1], vec![vec![1, 3]]);
    assert!(!m.sectors.contains_key(&2));
}

#[test]
fn masked_numbers_are_allocated_and_a_huge_mask_is_refused() {
    let mut st = chain();
    let id = create_miner(&mut st, 0);
    let owner = st.default_wallet;
    let mask = |n: u64| {
        actors::encode(&actors::miner::CompactSectorNumbersParams {
            mask_sector_numbers: fvm_ipld_bitfield::BitField::from_ranges(fvm_ipld_bitfield::iter::Ranges::new(
                std::iter::once(0..n),
            )),
        })
    };
    assert_eq!(call_from(&mut st, owner, id, om::COMPACT_SECTOR_NUMBERS, mask(10), 2), 0);
    assert!(st.miners[&id].allocated.contains(&9) && !st.miners[&id].allocated.contains(&10));
    let huge = call_from(&mut st, owner, id, om::COMPACT_SECTOR_NUMBERS, mask(1 << 40), 4);
    assert_eq!(huge, ExitCode::USR_ILLEGAL_ARGUMENT.value() as i64);
    assert_eq!(st.miners[&id].allocated.len(), 10, "nothing of the refused mask is kept");
}

/// ProveReplicaUpdates3: the update proof is verified against the sector's current sealed CID
/// (its key), the new one and the pieces' CommD; the sector must be proven, CC and in a mutable
/// deadline; the first update keeps the original CommR as SectorKeyCID.
#[test]
fn a_replica_update_replaces_the_sealed_cid_only_when_its_proof_and_sector_qualify() {
    let mut st = chain(); // 4 deadlines of 20 epochs: deadline 2 opens at 40, 120, …
    let id = create_miner(&mut st, 0);
    let owner = st.default_wallet;
    for n in [1, 2, 3] {
        place(&mut st, id, n, 2, 1, 100_000);
    }
    let m = st.miners.get_mut(&id).unwrap();
    m.sectors.get_mut(&2).unwrap().data = true;
    m.sectors.get_mut(&3).unwrap().faulty = true;
    // Its instance at 40 counts as proven: the sectors stay active meanwhile.
    m.proven.entry(40).or_default().insert(0);
    let old = |n: u64| [n as u8; 32];
    let piece = sealing_proofs::PieceInfo { commitment: [7; 32], size: sealing_proofs::UnpaddedBytesAmount(2032) };
    let sealer =
        sealing_proofs::Sealer::new(RegisteredSealProof::STACKED_DRG_2KIB_V1_1, id, 1).with_backend(Backend::Mock);
    let comm_d_new = sealer.comm_d(&[piece]).unwrap();
    let new = |n: u64| sealing_proofs::Updated { comm_r_new: [100 + n as u8; 32], comm_d_new };
    let update = |n: u64, deadline: u64, proof: Vec<u8>, strict: bool| {
        actors::encode(&actors::miner::ProveReplicaUpdates3Params {
            sector_updates: vec![actors::miner::SectorUpdateManifest {
                sector: n,
                deadline,
                partition: 0,
                new_sealed_cid: Commitment::Sealed.to_cid(&new(n).comm_r_new).0,
                pieces: vec![actors::miner::PieceActivationManifest {
                    cid: Commitment::Unsealed.to_cid(&[7; 32]).0,
                    size: fvm_shared::piece::PaddedPieceSize(2048),
                    verified_allocation_key: None,
                    notify: vec![],
                }],
            }],
            sector_proofs: vec![fvm_ipld_encoding::RawBytes::new(proof)],
            aggregate_proof: fvm_ipld_encoding::RawBytes::new(vec![]),
            update_proofs_type: fvm_shared::sector::RegisteredUpdateProof::StackedDRG2KiBV1,
            aggregate_proof_type: None,
            require_activation_success: strict,
            require_notification_success: false,
        })
    };
    let good = |n: u64| sealing_proofs::mock::update_proof(old(n), new(n));
    const RU: u64 = actors::MINER_PROVE_REPLICA_UPDATES3;
    let illegal = ExitCode::USR_ILLEGAL_ARGUMENT.value() as i64;
    // Deadline 2 is immutable from 20 to 60 (open at 40, and the window before it).
    assert_eq!(call_from(&mut st, owner, id, RU, update(1, 2, good(1), true), 30), illegal, "immutable deadline");
    assert_eq!(call_from(&mut st, owner, id, RU, update(1, 2, vec![1; 192], true), 61), illegal, "a bad proof");
    assert_eq!(
        call_from(&mut st, owner, id, RU, update(1, 1, good(1), true), 62),
        ExitCode::USR_NOT_FOUND.value() as i64,
        "the wrong deadline"
    );
    assert_eq!(call_from(&mut st, owner, id, RU, update(2, 2, good(2), true), 63), illegal, "a sector with data");
    assert_eq!(
        call_from(&mut st, owner, id, RU, update(3, 2, good(3), false), 64),
        illegal,
        "a faulty one: none valid"
    );
    st.miners.get_mut(&id).unwrap().sectors.get_mut(&1).unwrap().unproven = true;
    assert_eq!(call_from(&mut st, owner, id, RU, update(1, 2, good(1), true), 65), illegal, "not yet proven");
    st.miners.get_mut(&id).unwrap().sectors.get_mut(&1).unwrap().unproven = false;
    assert_eq!(st.miners[&id].sectors[&1].sealed_cid, Commitment::Sealed.to_cid(&old(1)), "nothing changed so far");
    assert_eq!(call_from(&mut st, owner, id, RU, update(1, 2, good(1), true), 66), 0);
    let s = &st.miners[&id].sectors[&1];
    assert_eq!(s.sealed_cid, Commitment::Sealed.to_cid(&new(1).comm_r_new));
    assert_eq!(s.sector_key_cid, Some(Commitment::Sealed.to_cid(&old(1))), "the key is the old CommR");
    assert_eq!((s.data, s.updated), (true, Some(67)));
    assert_eq!(call_from(&mut st, owner, id, RU, update(1, 2, good(1), true), 68), illegal, "no second update");
    // Someone else's key may not send it.
    let stranger = st.new_key();
    st.accounts.get_mut(&stranger).unwrap().balance = BigInt::from_atto(FIL);
    assert_eq!(
        call_from(&mut st, stranger, id, RU, update(1, 2, good(1), true), 69),
        ExitCode::USR_FORBIDDEN.value() as i64
    );
}
