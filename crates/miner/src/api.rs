//! The miner's storage, call-return and sector API methods (the daemon registers the rest).

use crate::daemon_ctx::Ctx;
use crate::sealing::SectorInfo;
use lotus_api::rpc::{Params, RpcError, RpcServer};
use lotus_api::types::{CallError, FsStat, StorageInfo};
use sealing_types::{CallId, FileType, FileTypes, SectorId, SectorRef};
use serde::Serialize;
use serde_json::{json, Value};

fn method_err(e: impl std::fmt::Display) -> RpcError {
    RpcError::method(e.to_string())
}

/// An error text for a caller without a token: that there is one, not what it says (errors
/// name hosts, paths and URLs).
fn withheld(err: &str) -> String {
    if err.is_empty() {
        String::new()
    } else {
        "(an error: call with a token to read it)".into()
    }
}

/// A worker's token reaches only the paths that worker attached (the operator's, any path).
fn own_path(c: &Ctx, id: uuid::Uuid) -> Result<(), RpcError> {
    match lotus_api::rpc::calling_worker() {
        Some(w) => c.m.check_path(id, &w).map_err(method_err),
        None => Ok(()),
    }
}

/// `SectorsStatus` in Lotus's shape, with the event log (Lotus always includes it). Chain
/// fields the miner does not track yet (expiration, pledge) are empty.
fn sector_status(ctx: &Ctx, s: &SectorInfo) -> lotus_api::contract::miner::SectorInfo {
    use lotus_api::contract::miner as m;
    use lotus_api::wire::{Bytes, Commitment};
    let sid = SectorId { miner: ctx.sealing.miner, number: s.number };
    let randomness = |v: Option<[u8; 32]>, epoch: Option<i64>| m::SealRandomness {
        value: Bytes(v.map(|v| v.to_vec()).unwrap_or_default()),
        epoch: epoch.unwrap_or(0),
    };
    let proof = s.proof_bytes.as_deref().map(|b64| Bytes::from_base64(b64).map(|b| b.0).unwrap_or_default());
    m::SectorInfo {
        sector_id: s.number,
        state: s.state.name(),
        comm_d: s.comm_d.map(|c| Commitment::Unsealed.to_cid(&c)),
        comm_r: s.comm_r.map(|c| Commitment::Sealed.to_cid(&c)),
        proof: Bytes(proof.unwrap_or_default()),
        deals: vec![],
        pieces: s
            .pieces
            .iter()
            .map(|p| m::SectorPiece { piece: sealing_exec::wire::piece_to_wire(p), deal_info: None })
            .collect(),
        ticket: randomness(s.ticket, s.ticket_epoch),
        seed: randomness(s.seed, s.seed_epoch),
        precommit_msg: s.precommit_message.as_deref().and_then(|c| c.parse().ok()),
        commit_msg: s.commit_message.as_deref().and_then(|c| c.parse().ok()),
        retries: s.retries.into(),
        to_upgrade: false,
        replica_update_message: s.upgrade.as_ref().and_then(|u| u.message.as_deref()).and_then(|c| c.parse().ok()),
        last_err: ctx.sealing.write_error(s.number).unwrap_or_else(|| s.last_error.clone()),
        log: ctx
            .sealing
            .log(s.number)
            .unwrap_or_default()
            .into_iter()
            .map(|e| m::SectorLog { kind: e.kind, timestamp: e.timestamp, trace: String::new(), message: e.message })
            .collect(),
        seal_proof: s.proof,
        activation: 0,
        expiration: 0,
        deal_weight: "0".into(),
        verified_deal_weight: "0".into(),
        initial_pledge: "0".into(),
        on_time: 0,
        early: 0,
        has_data: s.has_data,
        data_len: s.data_len,
        precommit_epoch: s.precommit_epoch,
        files: ctx.m.storage_find(sid, FileTypes::of(&FileType::ALL)),
    }
}

pub fn register(s: &mut RpcServer, ctx: Ctx) {
    use lotus_api::contract::miner as m;
    // ---- sector index (reference §5.4)
    s.method::<m::StorageAttach, _, _, _>(ctx.clone(), |c, (info, stat)| async move {
        if info.urls.is_empty() {
            return Err(RpcError::invalid_params(
                "StorageAttach: the path has no URLs; the node must say where it serves files",
            ));
        }
        c.m.storage_attach(info, stat, lotus_api::rpc::calling_worker().as_deref()).map_err(method_err)
    });
    s.method::<m::StorageReportHealth, _, _, _>(ctx.clone(), |c, (id, r)| async move {
        own_path(&c, id)?;
        c.m.storage_health(id, r.stat, r.err).map_err(method_err)
    });
    s.method::<m::StorageDeclareSector, _, _, _>(ctx.clone(), |c, (id, sector, types, primary)| async move {
        own_path(&c, id)?;
        c.m.storage_declare(id, sector, types, primary).map_err(method_err)
    });
    s.method::<m::StorageDropSector, _, _, _>(ctx.clone(), |c, (id, sector, types)| async move {
        own_path(&c, id)?;
        c.m.storage_drop(id, sector, types);
        Ok(())
    });
    s.method::<m::StorageFindSector, _, _, _>(ctx.clone(), |c, (sector, types, _size, _allow_fetch)| async move {
        Ok(c.m.storage_find(sector, types))
    });
    s.method::<m::StorageList, _, _, _>(ctx.clone(), |c, ()| async move { Ok(c.m.storage_list()) });
    s.method::<m::StorageInfo, _, _, _>(ctx.clone(), |c, (id,)| async move {
        c.m.storage_paths()
            .into_iter()
            .find(|(i, ..)| i.id == id)
            .map(|(i, ..)| i)
            .ok_or_else(|| method_err(format!("storage path {id} not found")))
    });
    s.method::<m::StorageStat, _, _, _>(ctx.clone(), |c, (id,)| async move {
        c.m.storage_paths()
            .into_iter()
            .find(|(i, ..)| i.id == id)
            .map(|(_, stat, ..)| stat)
            .ok_or_else(|| method_err(format!("storage path {id} not found")))
    });
    s.method::<m::StorageDetach, _, _, _>(ctx.clone(), |c, (id, url)| async move {
        own_path(&c, id)?;
        c.m.storage_detach(id, &url).map_err(method_err)
    });
    s.method::<m::StorageDetachLocal, _, _, _>(ctx.clone(), |c, (path,)| async move {
        let ex = c.m.local_executor().ok_or_else(|| method_err("the miner's executor is not started"))?;
        let p = ex.detach_path(std::path::Path::new(&path)).await.map_err(method_err)?;
        let mut cfg = c.repo.storage_config().map_err(method_err)?;
        cfg.storage_paths.retain(|lp| lp.path != p.root);
        c.repo.write_storage_config(&cfg).map_err(method_err)
    });
    s.method::<m::StorageRedeclareLocal, _, _, _>(ctx.clone(), |c, (id, drop_missing)| async move {
        let ex = c.m.local_executor().ok_or_else(|| method_err("the miner's executor is not started"))?;
        ex.redeclare(id, drop_missing).await.map_err(method_err)
    });
    // Sector file locks, as a Lotus worker takes them before fetching (they last for the call).
    let locks = std::sync::Arc::new(crate::locks::SectorLocks::default());
    s.method::<m::StorageLock, _, _, _>(locks.clone(), |l, (sector, read, write)| async move {
        l.lock(sector, read, write).await.map(drop).map_err(method_err)
    });
    s.method::<m::StorageTryLock, _, _, _>(locks.clone(), |l, (sector, read, write)| async move {
        Ok(l.try_lock(sector, read, write).map_err(method_err)?.is_some())
    });
    s.method::<m::StorageGetLocks, _, _, _>(locks, |l, ()| async move {
        Ok(m::SectorLocks {
            locks: l
                .snapshot()
                .into_iter()
                .map(|(sector, read, write)| m::SectorLock { sector, write, read })
                .collect(),
        })
    });
    // Where a Lotus worker puts new files (it asks for every file it allocates): the paths
    // of that kind with room for them, best first.
    s.method::<m::StorageBestAlloc, _, _, _>(ctx.clone(), |c, (types, size, path_type, _miner)| async move {
        let need = types.space_use(size, path_type);
        let mut fit: Vec<(StorageInfo, FsStat)> = c
            .m
            .storage_paths()
            .into_iter()
            .filter(|(i, st, err, _)| {
                err.is_empty()
                    && st.available >= need
                    && match path_type {
                        sealing_types::PathType::Sealing => i.can_seal,
                        sealing_types::PathType::Storage => i.can_store,
                    }
            })
            .map(|(i, st, ..)| (i, st))
            .collect();
        // Lotus orders by weight × available space.
        fit.sort_by_key(|(i, st)| std::cmp::Reverse(i.weight as u128 * st.available as u128));
        if fit.is_empty() {
            return Err(method_err(format!(
                "no {} path has room for {types} of a {} sector ({} bytes needed): attach one with lotus-miner storage attach (or lotus-worker storage attach)",
                match path_type {
                    sealing_types::PathType::Sealing => "sealing",
                    sealing_types::PathType::Storage => "storage",
                },
                sealing_types::SectorSize(size),
                need
            )));
        }
        Ok(fit.into_iter().map(|(i, _)| i).collect())
    });
    // Ours: every path with its space, health and serving hosts, for `storage list`.
    s.register_with("StorageListDetail", ctx.clone(), |c, p: Params| async move {
        p.expect(0)?;
        let list = c.m.storage_list();
        Ok(c.m
            .storage_paths()
            .into_iter()
            .map(|(info, stat, err, hosts)| {
                let decls = list.get(&info.id).cloned().unwrap_or_default();
                json!({ "Info": info, "Stat": stat, "Err": err, "Hosts": hosts, "Sectors": decls })
            })
            .collect::<Vec<_>>())
    });
    s.register_with("StorageLocal", ctx.clone(), |c, p: Params| async move {
        p.expect(0)?;
        Ok(c.store.paths().into_iter().map(|lp| (lp.id(), lp.root)).collect::<std::collections::BTreeMap<_, _>>())
    });
    s.register_with("StorageAddLocal", ctx.clone(), |c, p: Params| async move {
        p.expect(1)?;
        let path: String = p.get(0, "path")?;
        add_local(&c, &path).await.map_err(method_err)
    });

    // ---- results of worker calls (reference §1.2): Lotus's shapes; the result goes to the
    // waiting task as its JSON, which the sector's next step decodes.
    fn deliver<T: Serialize>(
        c: &Ctx,
        call: CallId,
        result: Option<lotus_api::wire::ReturnValue<T>>,
        err: Option<CallError>,
        method: &str,
    ) -> impl std::future::Future<Output = Result<(), RpcError>> + Send + 'static {
        let outcome = match (err, result) {
            (Some(e), _) => Ok(Err(e)),
            (None, None) => Ok(Ok(Value::Null)),
            (None, Some(r)) => r
                .valid()
                .map(|t| Ok(serde_json::to_value(t).expect("a result encodes")))
                .map_err(|why| RpcError::invalid_params(format!("{method}: param 1 (result) is invalid: {why}"))),
        };
        let m = c.m.clone();
        // Read while the request's caller is known: a worker's token answers only its own calls.
        let worker = lotus_api::rpc::calling_worker();
        async move {
            if let Some(w) = worker {
                m.check_return(call, &w).map_err(method_err)?;
            }
            m.on_return_synced(call, outcome?).await;
            Ok(())
        }
    }
    macro_rules! with_result {
        ($($name:ident),*) => {$(
            s.method::<m::$name, _, _, _>(ctx.clone(), |c, (call, r, err)| deliver(&c, call, Some(r), err, stringify!($name)));
        )*};
    }
    macro_rules! without_result {
        ($($name:ident),*) => {$(
            s.method::<m::$name, _, _, _>(ctx.clone(), |c, (call, err)| deliver::<()>(&c, call, None, err, stringify!($name)));
        )*};
    }
    with_result!(
        ReturnAddPiece,
        ReturnDataCid,
        ReturnSealPreCommit1,
        ReturnSealPreCommit2,
        ReturnSealCommit1,
        ReturnSealCommit2,
        ReturnReplicaUpdate,
        ReturnProveReplicaUpdate1,
        ReturnProveReplicaUpdate2,
        ReturnReadPiece
    );
    without_result!(
        ReturnFinalizeSector,
        ReturnFinalizeReplicaUpdate,
        ReturnReleaseUnsealed,
        ReturnMoveStorage,
        ReturnFetch,
        ReturnUnsealPiece,
        ReturnGenerateSectorKeyFromData,
        ReturnDownloadSector
    );

    s.register_with("SealingAbort", ctx.clone(), |c, p: Params| async move {
        p.expect(1)?;
        let call: CallId = p.get(0, "call")?;
        c.m.abort_call(call).await;
        Ok(())
    });

    // ---- sectors
    s.register_with("PledgeSector", ctx.clone(), |c, p: Params| async move {
        p.expect(0)?;
        let n = off_thread(&c, |c| c.sealing.pledge(false)).await?;
        c.sealing.start(n);
        Ok(SectorId { miner: c.sealing.miner, number: n })
    });
    s.register_with("SectorsAddPieceFile", ctx.clone(), |c, p: Params| async move {
        p.expect(1)?;
        let path: String = p.get(0, "path")?;
        add_piece_file(&c, &path).await.map_err(method_err)
    });
    // The second param is Lotus's showOnChainInfo: this devnet has no more to show.
    s.method::<m::SectorsStatus, _, _, _>(ctx.clone(), |c, (n, _show_on_chain)| async move {
        let anonymous = lotus_api::rpc::anonymous_caller();
        let mut st = off_thread(&c, move |c| {
            let s = c.sealing.get(n).map_err(|e| e.to_string())?.ok_or_else(|| format!("sector {n} not found"))?;
            Ok::<_, String>(sector_status(c, &s))
        })
        .await?;
        if anonymous {
            // Read access without a token, as in Lotus, but not the cluster's insides: the
            // event log and errors name hosts and URLs, `Files` lists them.
            st.log.clear();
            st.files.clear();
            st.last_err = withheld(&st.last_err);
        }
        Ok(st)
    });
    s.method::<m::SectorsList, _, _, _>(ctx.clone(), |c, ()| async move {
        Ok(off_thread(&c, |c| c.sealing.list()).await?.iter().map(|s| s.number).collect())
    });
    s.method::<m::SectorsListInStates, _, _, _>(ctx.clone(), |c, (states,)| async move {
        let list = off_thread(&c, |c| c.sealing.list()).await?;
        Ok(list.iter().filter(|s| states.contains(&s.state.name())).map(|s| s.number).collect())
    });
    // Lotus's: how many sectors are in each state.
    s.method::<m::SectorsSummary, _, _, _>(ctx.clone(), |c, ()| async move {
        let mut out = std::collections::BTreeMap::<String, u64>::new();
        for s in off_thread(&c, |c| c.sealing.list()).await? {
            *out.entry(s.state.name().to_string()).or_default() += 1;
        }
        Ok(out)
    });
    s.method::<m::SectorTerminate, _, _, _>(ctx.clone(), |c, (n,)| async move {
        c.sealing.terminate(n).map_err(method_err)
    });
    s.method::<m::SectorMarkForUpgrade, _, _, _>(ctx.clone(), |c, (n, snap)| async move {
        c.sealing.mark_for_upgrade(n, snap).await.map_err(method_err)
    });
    s.method::<m::SectorAbortUpgrade, _, _, _>(ctx.clone(), |c, (n,)| async move {
        c.sealing.abort_upgrade(n).map_err(method_err)
    });
    s.method::<m::SectorTerminateFlush, _, _, _>(ctx.clone(), |c, ()| async move {
        c.sealing.terminator.flush().await.map_err(method_err)
    });
    s.method::<m::SectorTerminatePending, _, _, _>(ctx.clone(), |c, ()| async move {
        let miner = c.sealing.miner;
        Ok(c.sealing.terminator.pending().into_iter().map(|number| sealing_types::SectorId { miner, number }).collect())
    });
    s.method::<m::ComputeWindowPoSt, _, _, _>(ctx.clone(), |c, (deadline, _key)| async move {
        c.proving.compute_window_post(deadline).await.map_err(method_err)
    });
    s.method::<m::CheckProvable, _, _, _>(ctx.clone(), |c, (_post_proof, sectors)| async move {
        let numbers: Vec<u64> = sectors.iter().map(|s| s.id.number).collect();
        c.proving.check_provable(&numbers).await.map_err(method_err)
    });
    s.method::<m::RecoverFault, _, _, _>(ctx.clone(), |c, (sectors,)| async move {
        let known: std::collections::BTreeSet<u64> =
            off_thread(&c, |c| c.sealing.list()).await?.iter().map(|s| s.number).collect();
        if let Some(n) = sectors.iter().find(|n| !known.contains(n)) {
            return Err(method_err(format!("sectors {n} not found in the sector list for miner")));
        }
        c.proving.recover_faults(&sectors).await.map_err(method_err)
    });
    s.method::<m::SectorRemove, _, _, _>(ctx.clone(), |c, (n,)| async move { c.sealing.remove(n).map_err(method_err) });
    s.method::<m::ComputeDataCid, _, _, _>(ctx.clone(), |c, (size, data)| async move {
        let ex = c.m.local_executor().ok_or_else(|| method_err("the miner has no executor to compute it"))?;
        let v = ex.data_cid(size, data).await.map_err(method_err)?;
        serde_json::from_value(v).map_err(|e| method_err(format!("the piece commitment came back unreadable: {e}")))
    });
    s.method::<m::CreateBackup, _, _, _>(ctx.clone(), |c, (path,)| async move {
        let dest = crate::backup::online_destination(std::env::var("LOTUS_BACKUP_BASE_PATH").ok(), &path)
            .map_err(method_err)?;
        tokio::task::spawn_blocking(move || c.sealing.backup(&c.repo, &dest))
            .await
            .map_err(method_err)?
            .map_err(method_err)
    });
    s.method::<m::SectorsUpdate, _, _, _>(ctx.clone(), |c, (n, state)| async move {
        c.sealing.force_state(n, &state).map_err(method_err)
    });
    // The batches (`sectors batching precommit|commit [--publish-now]`).
    s.method::<m::SectorPreCommitPending, _, _, _>(ctx.clone(), |c, ()| async move {
        Ok(sector_ids(&c, c.sealing.batches.precommit.pending()))
    });
    s.method::<m::SectorCommitPending, _, _, _>(ctx.clone(), |c, ()| async move {
        Ok(sector_ids(&c, c.sealing.batches.commit.pending()))
    });
    s.method::<m::SectorPreCommitFlush, _, _, _>(ctx.clone(), |c, ()| async move {
        let sent = c.sealing.batches.precommit.flush().await;
        Ok(batch_results(sent, |b, msg, error| m::PreCommitBatchRes { sectors: b.sectors, msg, error }))
    });
    s.method::<m::SectorCommitFlush, _, _, _>(ctx.clone(), |c, ()| async move {
        let sent = c.sealing.batches.commit.flush().await;
        Ok(batch_results(sent, |b, msg, error| m::CommitBatchRes {
            sectors: b.sectors,
            failed_sectors: Default::default(),
            msg,
            error,
        }))
    });
    // Refs by deal ID: this miner takes no deals (a piece added with `sectors add-piece` has
    // none), so there are none to list.
    s.method::<m::SectorsRefs, _, _, _>((), |(), ()| async move { Ok(Default::default()) });
    // The sector number assigner (`sectors numbers`).
    s.method::<m::SectorNumAssignerMeta, _, _, _>(ctx.clone(), |c, ()| async move {
        c.sealing.with_numbers(|n| Ok(n.meta())).map_err(method_err)
    });
    s.method::<m::SectorNumReservations, _, _, _>(ctx.clone(), |c, ()| async move {
        c.sealing.with_numbers(|n| Ok(n.reservations.clone())).map_err(method_err)
    });
    s.method::<m::SectorNumReserve, _, _, _>(ctx.clone(), |c, (name, numbers, force)| async move {
        c.sealing.with_numbers(|n| n.reserve(&name, numbers, force)).map_err(method_err)
    });
    s.method::<m::SectorNumReserveCount, _, _, _>(ctx.clone(), |c, (name, count)| async move {
        c.sealing.with_numbers(|n| n.reserve_count(&name, count)).map_err(method_err)
    });
    s.method::<m::SectorNumFree, _, _, _>(ctx.clone(), |c, (name,)| async move {
        c.sealing.with_numbers(|n| n.free(&name)).map_err(method_err)
    });
    // Ours: every sector with its state in one call, for `sectors list`.
    s.register_with("SectorsListDetail", ctx.clone(), |c, p: Params| async move {
        p.expect(0)?;
        let anonymous = lotus_api::rpc::anonymous_caller();
        let (list, quarantined) =
            off_thread(&c, |c| Ok::<_, crate::sealing::SealingError>((c.sealing.list()?, c.sealing.quarantined()?)))
                .await?;
        let mut out: Vec<(u64, Value)> = list
            .iter()
            .map(|s| {
                let err = c.sealing.write_error(s.number).unwrap_or_else(|| s.last_error.clone());
                let err = if anonymous { withheld(&err) } else { err };
                (
                    s.number,
                    json!({ "SectorID": s.number, "State": s.state.name(), "HasData": s.has_data, "LastErr": err }),
                )
            })
            .collect();
        // Quarantined sectors are listed, in the state their record was in, with the reason.
        for (n, state, why) in quarantined {
            if !list.iter().any(|s| s.number == n) {
                let err = format!("quarantined: its record cannot be read: {why}");
                let err = if anonymous { withheld(&err) } else { err };
                out.push((n, json!({ "SectorID": n, "State": state, "HasData": false, "LastErr": err })));
            }
        }
        out.sort_by_key(|(n, _)| *n);
        Ok(out.into_iter().map(|(_, v)| v).collect::<Vec<_>>())
    });
    s.register_with("SectorsUnsealPiece", ctx.clone(), |c, p: Params| async move {
        p.expect_between(1, 5)?;
        let sector: SectorRef = p.get(0, "sector")?;
        c.sealing.unseal(sector.id.number).await.map_err(method_err)
    });
    // ---- proving: everything `lotus-miner proving …` and `info` show, in one answer
    s.register_with("ProvingInfo", ctx.clone(), |c, p: Params| async move {
        p.expect(0)?;
        let chain = &c.proving.chain;
        let head = chain.head().await.map_err(method_err)?;
        let summary = c.proving.summary().await.map_err(method_err)?;
        Ok(json!({
            "Miner": c.sealing.miner,
            "CurrentEpoch": head,
            "BlockDelaySecs": chain.block_delay().as_secs_f64(),
            "Deadline": chain.deadline_at(head),
            "Params": chain.proving_params(),
            "Chain": summary,
            "Network": chain.network_name,
            "Worker": chain.worker,
            "Attempts": c.proving.attempts(),
            "Blocks": c.proving.blocks(),
            "DisableBuiltinWindowPoSt": c.proving.disable_builtin_window,
            "DisableBuiltinWinningPoSt": c.proving.disable_builtin_winning,
        }))
    });
}

/// `storage attach PATH` on the miner: open the path, remember it in storage.json, attach it.
async fn add_local(c: &Ctx, path: &str) -> anyhow::Result<()> {
    let lp = c.store.open_path(std::path::Path::new(path))?;
    let mut cfg = c.repo.storage_config()?;
    if !cfg.storage_paths.iter().any(|p| p.path == lp.root) {
        cfg.storage_paths.push(lotus_node::repo::LocalPath { path: lp.root.clone() });
        c.repo.write_storage_config(&cfg)?;
    }
    let ex = c.m.local_executor().ok_or_else(|| anyhow::anyhow!("the miner's executor is not started"))?;
    ex.attach_path(&lp).await?;
    Ok(())
}

/// A data sector from a file on the miner's machine: the file becomes the sector's `piece`
/// in a storage path of the miner, from where the AddPiece worker fetches it.
async fn add_piece_file(c: &Ctx, path: &str) -> anyhow::Result<SectorId> {
    use anyhow::Context;
    let len = std::fs::metadata(path).with_context(|| format!("reading {path}"))?.len();
    let max = sealing_proofs::max_unpadded(c.sealing.proof.sector_size());
    if len > max {
        anyhow::bail!("{path} has {len} bytes; a {} sector holds at most {max}", c.sealing.proof.sector_size());
    }
    // An Available sector (`sectors snap-up`) takes the data by a snap deal, as Lotus's
    // deal intake chooses; otherwise a new sector.
    let upgrade =
        off_thread(c, move |c| c.sealing.take_upgrade_candidate(len)).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let n = match upgrade {
        Some(n) => n,
        None => c.sealing.pledge_data(len)?,
    };
    let sector = SectorId { miner: c.sealing.miner, number: n };
    let piece = FileTypes::of(&[FileType::Piece]);
    let dest = c
        .store
        .alloc(sector, piece, sealing_types::PathType::Storage, c.sealing.proof.sector_size().0)
        .or_else(|_| c.store.alloc(sector, piece, sealing_types::PathType::Sealing, c.sealing.proof.sector_size().0))?;
    let target = dest.file(FileType::Piece, sector);
    tokio::fs::copy(path, &target).await.with_context(|| format!("copying {path} to {}", target.display()))?;
    c.m.storage_declare(dest.id(), sector, piece, true)?;
    c.sealing.start(n);
    Ok(sector)
}

fn sector_ids(c: &Ctx, numbers: Vec<u64>) -> Vec<SectorId> {
    numbers.into_iter().map(|n| SectorId { miner: c.sealing.miner, number: n }).collect()
}

/// A flush's batches as Lotus's results (each with its message or its error); `None`, which
/// Lotus answers as null, when nothing was queued.
fn batch_results<T>(
    sent: Vec<crate::batch::Sent>,
    mut to: impl FnMut(crate::batch::Sent, Option<lotus_api::wire::Cid>, String) -> T,
) -> Option<Vec<T>> {
    if sent.is_empty() {
        return None;
    }
    Some(
        sent.into_iter()
            .map(|b| {
                let (msg, error) = match &b.result {
                    Ok(cid) => (Some(*cid), String::new()),
                    Err(e) => (None, e.to_string()),
                };
                to(b, msg, error)
            })
            .collect(),
    )
}

/// Run the sector store's work on a blocking thread, not on an async one: a database read of
/// every sector must not stall the RPC threads (heartbeats, `Return*`).
async fn off_thread<T, E, F>(c: &Ctx, f: F) -> Result<T, RpcError>
where
    T: Send + 'static,
    E: std::fmt::Display,
    F: FnOnce(&Ctx) -> Result<T, E> + Send + 'static,
{
    let c = c.clone();
    tokio::task::spawn_blocking(move || f(&c).map_err(|e| method_err(e.to_string())))
        .await
        .map_err(|e| method_err(format!("the database task failed: {e}")))?
}
