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
