//! The chain's side of `lotus-miner sectors …` and `proving …`, as Lotus's commands do it: read
//! through the full node of `FULLNODE_API_INFO`, sent from the worker key there (extend,
//! compact-partitions) or through the miner (recover-faults, check), every message's receipt
//! shown or checked.

use super::client::explain;
use super::fullnode::{fil, FullNode};
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use lotus_api::chain::{actors, BigInt, SectorOnChainInfo, TipSetKey};
use lotus_api::contract::full as f;
use lotus_api::RpcClient;
use std::collections::BTreeMap;

use lotus_api::chain::actors::{
    MINER_COMPACT_PARTITIONS as COMPACT_PARTITIONS, MINER_EXTEND_SECTOR_EXPIRATION2 as EXTEND_SECTOR_EXPIRATION2,
};
/// v18's MaxSectorExpirationExtension (1278 days) and a V1_1 seal proof's maximum lifetime (5
/// years), in epochs: what Lotus's `extend` and `check-expire` bound a new expiration by.
const MAX_EXTENSION: i64 = 1278 * 2880;
const MAX_LIFETIME: i64 = 5 * 365 * 2880;

#[derive(Subcommand, Debug)]
pub enum ChainSectorsCmd {
    /// Print on-chain precommit info
    Precommits,
    /// Inspect expiring sectors
    CheckExpire {
        /// skip sectors whose current expiration is more than <cutoff> epochs from now, defaults to 60 days
        #[arg(long, default_value_t = 172800)]
        cutoff: i64,
    },
    /// Extend expiring sectors while not exceeding each sector's max life
    Extend(ExtendArgs),
    /// Get the collateral required to pledge a committed capacity sector
    GetCcCollateral {
        /// the epoch when the sector will expire
        #[arg(long, default_value_t = 0)]
        expiration: i64,
    },
    /// removes dead sectors from partitions and reduces the number of partitions used if possible
    CompactPartitions {
        /// the deadline to compact the partitions in
        #[arg(long)]
        deadline: u64,
        /// list of partitions to compact sectors in
        #[arg(long, required = true, value_delimiter = ',')]
        partitions: Vec<u64>,
        /// Actually send transaction performing the action
        #[arg(long)]
        really_do_it: bool,
    },
    /// Terminate sector on-chain then remove (WARNING: This means losing power and collateral for the removed sector)
    Terminate {
        #[command(subcommand)]
        cmd: Option<TerminateCmd>,
        /// pass this flag if you know what you are doing
        #[arg(long)]
        really_do_it: bool,
        /// <sectorNum>
        sector: Option<u64>,
    },
    /// Mark a committed capacity sector to be filled with deals
    SnapUp {
        /// <sectorNum>
        sector: Option<u64>,
    },
    /// Abort the attempted (SnapDeals) upgrade of a CC sector, reverting it to as before
    AbortUpgrade {
        /// pass this flag if you know what you are doing
        #[arg(long)]
        really_do_it: bool,
        /// <sectorNum>
        sector: Option<u64>,
    },
    /// Get or cleanup expired sectors
    Expired {
        /// show removed sectors
        #[arg(long)]
        show_removed: bool,
        /// remove expired sectors
        #[arg(long)]
        remove_expired: bool,
        /// epoch at which to check sector expirations (default: the head)
        #[arg(long)]
        expired_epoch: Option<i64>,
        #[arg(long, hide = true)]
        confirm_remove_count: Option<u64>,
    },
}

#[derive(clap::Args, Debug)]
pub struct ExtendArgs {
    /// only consider sectors whose current expiration epoch is in the range of [from, to], <from> defaults to: now + 120 (1 hour)
    #[arg(long)]
    from: Option<i64>,
    /// only consider sectors whose current expiration epoch is in the range of [from, to], <to> defaults to: now + 92160 (32 days)
    #[arg(long)]
    to: Option<i64>,
    /// provide a file containing one sector number in each line, ignoring above selecting criteria
    #[arg(long)]
    sector_file: Option<std::path::PathBuf>,
    /// optionally provide a file containing excluding sectors
    #[arg(long)]
    exclude: Option<std::path::PathBuf>,
    /// try to extend selected sectors by this number of epochs, defaults to 540 days
    #[arg(long, default_value_t = 1555200)]
    extension: i64,
    /// try to extend selected sectors to this epoch, ignoring extension
    #[arg(long)]
    new_expiration: Option<i64>,
    /// drop claims for sectors that can be extended, but only by dropping some of their verified power claims
    #[arg(long)]
    drop_claims: bool,
    /// don't try to extend sectors by fewer than this number of epochs, defaults to 7 days
    #[arg(long, default_value_t = 20160)]
    tolerance: i64,
    /// use up to this amount of FIL for one message. pass this flag to avoid message congestion.
    #[arg(long, default_value = "0")]
    max_fee: String,
    /// the maximum number of sectors contained in each message
    #[arg(long, default_value_t = 200)]
    max_sectors: u64,
    /// pass this flag to really extend sectors, otherwise will only print out json representation of parameters
    #[arg(long)]
    really_do_it: bool,
    /// <sectorNumbers...(optional)>
    sectors: Vec<u64>,
}

#[derive(Subcommand, Debug)]
pub enum TerminateCmd {
    /// Send a terminate message if there are sectors queued for termination
    Flush,
    /// List sector numbers of sectors pending termination
    Pending,
}

/// Lotus's `cliutil.EpochTime`: the epoch and how far it is from now, in the largest two units.
fn epoch_time(now: i64, e: i64, block_secs: u64) -> String {
    let d = (e - now).unsigned_abs() * block_secs;
    let text = || {
        let units =
            [("year", 365 * 86400), ("week", 7 * 86400), ("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)];
        let mut left = d;
        let mut parts = vec![];
        for (name, secs) in units {
            if left >= secs && parts.len() < 2 {
                let n = left / secs;
                left %= secs;
                parts.push(format!("{n} {name}{}", if n == 1 { "" } else { "s" }));
            }
        }
        parts.join(" ")
    };
    match e.cmp(&now) {
        std::cmp::Ordering::Equal => format!("{e} (now)"),
        std::cmp::Ordering::Less => format!("{e} ({} ago)", text()),
        std::cmp::Ordering::Greater => format!("{e} (in {})", text()),
    }
}

/// `FIL.Short()`: three decimals at the largest fitting unit.
pub fn fil_short(v: &BigInt) -> String {
    let atto: f64 = v.0.to_string().parse().unwrap_or(0.0);
    if atto == 0.0 {
        return "0".into();
    }
    for (unit, scale) in [("FIL", 1e18), ("mFIL", 1e15), ("μFIL", 1e12), ("nFIL", 1e9), ("pFIL", 1e6), ("fFIL", 1e3)] {
        if atto.abs() >= scale {
            let s = format!("{:.3}", atto / scale);
            return format!("{} {unit}", s.trim_end_matches('0').trim_end_matches('.'));
        }
    }
    format!("{atto} aFIL")
}

async fn block_secs(node: &FullNode) -> u64 {
    node.call::<f::StateGetNetworkParams>(()).await.map(|p| p.block_delay_secs).unwrap_or(30).max(1)
}

pub async fn run(miner: &RpcClient, cmd: ChainSectorsCmd) -> Result<()> {
    use lotus_api::contract::miner as m;
    // Through the miner (its termination batch), as Lotus's.
    match cmd {
        ChainSectorsCmd::Terminate { cmd: None, really_do_it, sector } => {
            let Some(n) = sector else { bail!("expected 1 argument: <sectorNum>") };
            if !really_do_it {
                bail!("pass --really-do-it to confirm this action");
            }
            return miner.request::<m::SectorTerminate>((n,)).await.map_err(explain);
        }
        ChainSectorsCmd::SnapUp { sector } => {
            let Some(n) = sector else { bail!("specify sector number to upgrade") };
            // Lotus refuses before network version 15 (snap deals' upgrade); the devnet runs
            // the current one.
            return miner.request::<m::SectorMarkForUpgrade>((n, true)).await.map_err(explain);
        }
        ChainSectorsCmd::AbortUpgrade { really_do_it, sector } => {
            if !really_do_it {
                bail!("pass --really-do-it to actually execute this action");
            }
            let Some(n) = sector else { bail!("must pass sector number") };
            return miner.request::<m::SectorAbortUpgrade>((n,)).await.map_err(explain);
        }
        ChainSectorsCmd::Terminate { cmd: Some(TerminateCmd::Flush), .. } => {
            match miner.request::<m::SectorTerminateFlush>(()).await.map_err(explain)? {
                Some(cid) => println!("{cid}"),
                None => bail!("no sectors were queued for termination"),
            }
            return Ok(());
        }
        ChainSectorsCmd::Terminate { cmd: Some(TerminateCmd::Pending), .. } => {
            let pending = miner.request::<m::SectorTerminatePending>(()).await.map_err(explain)?;
            let node = FullNode::connect(miner, None).await?;
            let dl = node
                .call::<f::StateMinerProvingDeadline>((node.maddr, TipSetKey::head()))
                .await
                .context("getting proving deadline info failed")?;
            let n = dl.wpost_period_deadlines.max(1);
            for s in pending {
                let loc = node
                    .call::<f::StateSectorPartition>((node.maddr, s.number, TipSetKey::head()))
                    .await
                    .context("finding sector partition")?;
                let near =
                    loc.is_some_and(|l| [dl.index, (dl.index + 1) % n, (dl.index + n - 1) % n].contains(&l.deadline));
                println!("{}{}", s.number, if near { " (in proving window)" } else { "" });
            }
            return Ok(());
        }
        _ => {}
    }
    let node = FullNode::connect(miner, super::client::actor()).await?;
    let maddr = node.maddr;
    match cmd {
        ChainSectorsCmd::Precommits => {
            for (n, p) in precommits(miner, &node).await? {
                println!("{n}: {}", p.pre_commit_epoch);
            }
        }
        ChainSectorsCmd::CheckExpire { cutoff } => {
            let now = node.head().await?;
            let secs = block_secs(&node).await;
            let mut sectors = node.call::<f::StateMinerActiveSectors>((maddr, TipSetKey::head())).await?;
            sectors.retain(|s| s.expiration - now <= cutoff);
            sectors.sort_by_key(|s| (s.expiration, s.sector_number));
            let mut rows =
                vec![["ID", "SealProof", "InitialPledge", "Activation", "Expiration", "MaxExpiration", "MaxExtendNow"]
                    .map(String::from)
                    .to_vec()];
            for s in &sectors {
                let max = s.activation + MAX_LIFETIME;
                rows.push(vec![
                    s.sector_number.to_string(),
                    s.seal_proof.to_string(),
                    fil_short(&s.initial_pledge),
                    epoch_time(now, s.activation, secs),
                    epoch_time(now, s.expiration, secs),
                    epoch_time(now, max, secs),
                    epoch_time(now, (now + MAX_EXTENSION).min(max), secs),
                ]);
            }
            print!("{}", super::table(&rows));
        }
        ChainSectorsCmd::GetCcCollateral { expiration } => {
            let mi = node.miner_info().await?;
            let now = node.head().await?;
            let info = lotus_api::chain::SectorPreCommitInfo {
                seal_proof: seal_proof_for(mi.window_po_st_proof_type)?,
                sector_number: 0,
                sealed_cid: lotus_api::wire::Commitment::Sealed.to_cid(&[0; 32]),
                seal_rand_epoch: 0,
                deal_ids: vec![],
                expiration: if expiration == 0 { now + MAX_EXTENSION } else { expiration },
                unsealed_cid: None,
            };
            let pledge =
                node.call::<f::StateMinerInitialPledgeCollateral>((maddr, info.clone(), TipSetKey::head())).await?;
            let deposit = node.call::<f::StateMinerPreCommitDepositForPower>((maddr, info, TipSetKey::head())).await?;
            println!("Estimated collateral: {}", fil(&pledge.max(deposit)));
        }
        ChainSectorsCmd::CompactPartitions { deadline, partitions, really_do_it } => {
            let mi = node.miner_info().await?;
            let dl = node.call::<f::StateMinerProvingDeadline>((maddr, TipSetKey::head())).await?;
            if deadline >= dl.wpost_period_deadlines {
                bail!("deadline {deadline} out of range");
            }
            if partitions.is_empty() {
                bail!("must include at least one partition to compact");
            }
            println!("compacting {} partitions", partitions.len());
            let params = actors::miner::CompactPartitionsParams {
                deadline,
                partitions: fvm_ipld_bitfield::BitField::try_from_bits(partitions.iter().copied())
                    .map_err(|e| anyhow::anyhow!("--partitions: {e}"))?,
            };
            if !really_do_it {
                println!("total of 1 CompactPartitions msgs would be sent");
                return Ok(());
            }
            let cid = node.push(mi.worker, maddr, COMPACT_PARTITIONS, actors::encode(&params), BigInt::zero()).await?;
            println!("Requested compact partitions in message {cid}");
            node.wait(cid, 2, "CompactPartitions").await?;
        }
        ChainSectorsCmd::Extend(args) => extend(&node, args).await?,
        ChainSectorsCmd::Expired { show_removed, remove_expired, expired_epoch: _, confirm_remove_count } => {
            expired(miner, &node, show_removed, remove_expired, confirm_remove_count).await?
        }
        ChainSectorsCmd::Terminate { .. } | ChainSectorsCmd::SnapUp { .. } | ChainSectorsCmd::AbortUpgrade { .. } => {
            unreachable!("answered through the miner above")
        }
    }
    Ok(())
}

/// The miner's sectors pre-committed on chain and not proven yet, by number. No full-node
/// method lists pre-commits (Lotus walks the actor's state), so each of the miner's sectors
/// that may be one (not Proving, not Removed: the most of them, in steady state) is asked.
async fn precommits(
    miner: &RpcClient,
    node: &FullNode,
) -> Result<Vec<(u64, lotus_api::chain::SectorPreCommitOnChainInfo)>> {
    let list: Vec<serde_json::Value> = miner.call("SectorsListDetail", serde_json::json!([])).await.map_err(explain)?;
    let mut out = vec![];
    for s in list {
        let (Some(n), state) = (s["SectorID"].as_u64(), s["State"].as_str().unwrap_or("")) else { continue };
        if matches!(state, "Proving" | "Removed") {
            continue;
        }
        if let Some(p) = node.call::<f::StateSectorPreCommitInfo>((node.maddr, n, TipSetKey::head())).await? {
            out.push((n, p));
        }
    }
    Ok(out)
}

/// The seal proof a miner with this WindowPoSt proof type seals with (V1_1 proofs).
fn seal_proof_for(post: i64) -> Result<i64> {
    // StackedDrgWindow{2KiB,8MiB,512MiB,32GiB,64GiB}V1_1 (10..14) ↔ StackedDrg…V1_1 (5..9).
    match post {
        10..=14 => Ok(post - 5),
        p => bail!("WindowPoSt proof type {p} is not a V1_1 type"),
    }
}

fn read_numbers(path: &std::path::Path) -> Result<Vec<u64>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| l.parse().map_err(|e| anyhow::anyhow!("could not parse {l} as sector id: {e}")))
        .collect()
}

async fn extend(node: &FullNode, a: ExtendArgs) -> Result<()> {
    let ExtendArgs {
        from,
        to,
        sector_file,
        exclude,
        extension,
        new_expiration,
        drop_claims: _,
        tolerance,
        max_fee,
        max_sectors,
        really_do_it,
        sectors: numbers,
    } = a;
    let max_fee = super::fullnode::parse_fil(&max_fee).context("--max-fee")?;
    let maddr = node.maddr;
    let now = node.head().await?;
    let active: BTreeMap<u64, SectorOnChainInfo> = node
        .call::<f::StateMinerActiveSectors>((maddr, TipSetKey::head()))
        .await?
        .into_iter()
        .map(|s| (s.sector_number, s))
        .collect();
    let mut chosen: Vec<u64> = if !numbers.is_empty() {
        if sector_file.is_some() {
            bail!("sector-file specified along with command line params");
        }
        numbers
    } else if let Some(f) = &sector_file {
        read_numbers(f)?
    } else {
        let (from, to) = (from.unwrap_or(now + 120), to.unwrap_or(now + 92160));
        active.values().filter(|s| (from..=to).contains(&s.expiration)).map(|s| s.sector_number).collect()
    };
    if let Some(f) = &exclude {
        let ex = read_numbers(f)?;
        chosen.retain(|n| !ex.contains(n));
    }
    if max_sectors > 25_000 {
        bail!("the specified max-sectors exceeds the maximum limit");
    }
    let max_sectors = if max_sectors == 0 { 25_000 } else { max_sectors } as usize;
    // (deadline, partition) → new expiration → sectors.
    let mut groups: BTreeMap<(u64, u64), BTreeMap<i64, Vec<u64>>> = BTreeMap::new();
    for n in chosen {
        let s = active.get(&n).ok_or_else(|| anyhow::anyhow!("sector {n} is not active"))?;
        let mut to = new_expiration.unwrap_or(s.expiration + extension);
        to = to.min(now + MAX_EXTENSION).min(s.activation + MAX_LIFETIME);
        if to <= s.expiration || (to - s.expiration).abs() <= tolerance {
            continue;
        }
        let loc = node
            .call::<f::StateSectorPartition>((maddr, n, TipSetKey::head()))
            .await?
            .ok_or_else(|| anyhow::anyhow!("sector {n} is not active"))?;
        let buckets = groups.entry((loc.deadline, loc.partition)).or_default();
        // A sector joins a bucket whose expiration is within the tolerance of its own.
        let key = buckets.keys().copied().find(|e| (e - to).abs() <= tolerance).unwrap_or(to);
        buckets.entry(key).or_default().push(n);
    }
    let mut messages = vec![];
    for ((deadline, partition), buckets) in &groups {
        for (exp, sectors) in buckets {
            for chunk in sectors.chunks(max_sectors) {
                messages.push(actors::miner::ExtendSectorExpiration2Params {
                    extensions: vec![actors::miner::ExpirationExtension2 {
                        deadline: *deadline,
                        partition: *partition,
                        sectors: fvm_ipld_bitfield::BitField::try_from_bits(chunk.iter().copied())
                            .map_err(|e| anyhow::anyhow!("{e}"))?,
                        sectors_with_claims: vec![],
                        new_expiration: *exp,
                    }],
                });
            }
        }
    }
    if messages.is_empty() {
        println!("nothing to extend");
        return Ok(());
    }
    let mi = node.miner_info().await?;
    let mut total = 0;
    for p in messages {
        let count: u64 = p.extensions.iter().map(|e| e.sectors.len()).sum();
        total += count;
        print!("Extending {count} sectors: ");
        if !really_do_it {
            let json = serde_json::json!({
                "Extensions": p.extensions.iter().map(|e| serde_json::json!({
                    "Deadline": e.deadline,
                    "Partition": e.partition,
                    "Sectors": ranges(&e.sectors),
                    "NewExpiration": e.new_expiration,
                })).collect::<Vec<_>>()
            });
            println!("\n {}", serde_json::to_string_pretty(&json)?);
            continue;
        }
        let msg = lotus_api::chain::Message::call(
            mi.worker,
            maddr,
            EXTEND_SECTOR_EXPIRATION2,
            actors::encode(&p),
            BigInt::zero(),
        );
        let cid = node.push_with(msg, super::fullnode::Send { gas_limit: 0, max_fee: max_fee.clone() }).await?;
        println!("{cid}");
        // Lotus leaves the wait to the operator; the receipt is checked here, so that a
        // refused extension is an error instead of a silent no-op.
        node.wait(cid, 0, "ExtendSectorExpiration2").await?;
    }
    println!("{total} sectors extended");
    Ok(())
}

/// Lotus's `ArrayToString`: "1,3-5,8".
fn ranges(bf: &fvm_ipld_bitfield::BitField) -> String {
    bf.ranges()
        .map(|r| if r.end - r.start == 1 { r.start.to_string() } else { format!("{}-{}", r.start, r.end - 1) })
        .collect::<Vec<_>>()
        .join(",")
}

/// `sectors expired`: the miner's sectors whose numbers the chain allocated but holds neither
/// live nor pre-committed (expired or terminated); `--remove-expired` removes them (first it
/// prints the confirming command with the count, as Lotus does).
async fn expired(
    miner: &RpcClient,
    node: &FullNode,
    show_removed: bool,
    remove: bool,
    confirm: Option<u64>,
) -> Result<()> {
    use lotus_api::contract::miner as m;
    let maddr = node.maddr;
    let now = node.head().await?;
    let secs = block_secs(node).await;
    let numbers: Vec<u64> = miner.request::<m::SectorsList>(()).await.map_err(explain)?;
    let mut gone = vec![];
    for n in numbers {
        let allocated = node.call::<f::StateMinerSectorAllocated>((maddr, n, TipSetKey::head())).await?;
        if !allocated {
            continue;
        }
        if node.call::<f::StateSectorGetInfo>((maddr, n, TipSetKey::head())).await?.is_some() {
            continue;
        }
        if node.call::<f::StateSectorPreCommitInfo>((maddr, n, TipSetKey::head())).await?.is_some() {
            continue;
        }
        gone.push(n);
    }
    if remove {
        println!("Removing sectors:");
    }
    println!("Sector\tState\tExpiration");
    let mut to_remove = vec![];
    for n in gone {
        let st: serde_json::Value = miner.call("SectorsStatus", serde_json::json!([n, true])).await.map_err(explain)?;
        let state = st["State"].as_str().unwrap_or("").to_string();
        if state == "Removed" && !(show_removed && confirm.is_none()) {
            continue;
        }
        if state != "Removed" {
            to_remove.push(n);
        }
        let exp = st["Expiration"].as_i64().unwrap_or(0);
        println!("{n}\t{state}\t{}", epoch_time(now, exp, secs));
    }
    if !remove {
        return Ok(());
    }
    match confirm {
        None => {
            println!();
            println!("All {} sectors listed above will be removed", to_remove.len());
            println!("To confirm removal of the above sectors, including\n all related sealed and unsealed data, run:");
            println!(
                "lotus-miner sectors expired --remove-expired --confirm-remove-count={} --expired-epoch={now}",
                to_remove.len()
            );
            println!("WARNING: This operation is irreversible");
        }
        Some(c) if c as usize != to_remove.len() => bail!(
            "value of confirm-remove-count doesn't match the number of sectors which can be removed ({})",
            to_remove.len()
        ),
        Some(_) => {
            for n in to_remove {
                print!("Removing sector\t{n}:\t");
                match miner.request::<m::SectorRemove>((n,)).await {
                    Ok(()) => println!("OK"),
                    Err(e) => println!("ERROR: {e}"),
                }
            }
        }
    }
    Ok(())
}

/// `types.DeciStr`: `%.3g` of a power in binary units without "B" ("4 Ki").
fn deci_str(v: &BigInt) -> String {
    let mut f: f64 = v.0.to_string().parse().unwrap_or(0.0);
    let units = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi"];
    let mut i = 0;
    while f >= 1024.0 && i + 1 < units.len() {
        f /= 1024.0;
        i += 1;
    }
    let g = format!("{:.3}", f);
    let g = if g.contains('.') { g.trim_end_matches('0').trim_end_matches('.').to_string() } else { g };
    format!("{g} {}", units[i])
}

fn size(v: &BigInt) -> String {
    sealing_types::size::size_str(v.0.to_string().parse().unwrap_or(0))
}

fn percent(a: &BigInt, b: &BigInt) -> f64 {
    let (a, b): (f64, f64) = (a.0.to_string().parse().unwrap_or(0.0), b.0.to_string().parse().unwrap_or(0.0));
    if b == 0.0 {
        0.0
    } else {
        100.0 * a / b
    }
}

/// The chain's part of `lotus-miner info`, as Lotus prints it: the miner and its sector size,
/// power, committed and proving space, then the balances (miner, market, worker, control).
pub async fn info(miner: &RpcClient) -> Result<String> {
    use std::fmt::Write;
    let node = FullNode::connect(miner, super::client::actor()).await?;
    let maddr = node.maddr;
    let mi = node.miner_info().await?;
    let mut o = String::new();
    let _ = writeln!(o, "Miner: {maddr} ({} sectors)", sealing_types::size::size_str(mi.sector_size));
    let p = node.call::<f::StateMinerPower>((maddr, TipSetKey::head())).await?;
    let (mine, total) = (&p.miner_power, &p.total_power);
    let _ = writeln!(
        o,
        "Power: {} / {} ({:.4}%)",
        deci_str(&mine.quality_adj_power),
        deci_str(&total.quality_adj_power),
        percent(&mine.quality_adj_power, &total.quality_adj_power)
    );
    let _ = writeln!(
        o,
        "\tRaw: {} / {} ({:.4}%)",
        size(&mine.raw_byte_power),
        size(&total.raw_byte_power),
        percent(&mine.raw_byte_power, &total.raw_byte_power)
    );
    let count = node.call::<f::StateMinerSectorCount>((maddr, TipSetKey::head())).await?;
    let ss = mi.sector_size;
    let _ = writeln!(o, "\tCommitted: {}", sealing_types::size::size_str(count.live * ss));
    if count.faulty == 0 {
        let _ = writeln!(o, "\tProving: {}", sealing_types::size::size_str((count.active + count.faulty) * ss));
    } else {
        let _ = writeln!(
            o,
            "\tProving: {} ({} Faulty, {:.2}%)",
            sealing_types::size::size_str((count.active + count.faulty) * ss),
            sealing_types::size::size_str(count.faulty * ss),
            100.0 * count.faulty as f64 / count.live.max(1) as f64
        );
    }
    let _ = writeln!(o);
    // Lotus reads the locked funds from the actor's state; the same sums from the full node's
    // sector and pre-commit records.
    let balance = node.call::<f::WalletBalance>((maddr,)).await?;
    let available = node.call::<f::StateMinerAvailableBalance>((maddr, TipSetKey::head())).await?;
    let pledge = node
        .call::<f::StateMinerSectors>((maddr, None, TipSetKey::head()))
        .await?
        .iter()
        .fold(BigInt::zero(), |a, s| BigInt(a.0 + &s.initial_pledge.0));
    let mut precommit = BigInt::zero();
    for (_, pc) in precommits(miner, &node).await? {
        precommit.0 += &pc.pre_commit_deposit.0;
    }
    let _ = writeln!(o, "Miner Balance:    {}", fil_short(&balance));
    let _ = writeln!(o, "      PreCommit:  {}", fil_short(&precommit));
    let _ = writeln!(o, "      Pledge:     {}", fil_short(&pledge));
    let _ = writeln!(o, "      Vesting:    0");
    let _ = writeln!(o, "      Available:  {}", fil_short(&available));
    let _ = writeln!(o, "Market Balance:   0");
    let _ = writeln!(o, "       Locked:    0");
    let _ = writeln!(o, "       Available: 0");
    let worker = node.call::<f::WalletBalance>((mi.worker,)).await?;
    let _ = writeln!(o, "Worker Balance:   {}", fil_short(&worker));
    let mut spendable = BigInt(available.0.max(0.into()) + &worker.0);
    if !mi.control_addresses.is_empty() {
        let mut control = BigInt::zero();
        for a in &mi.control_addresses {
            control.0 += node.call::<f::WalletBalance>((*a,)).await?.0;
        }
        spendable.0 += &control.0;
        let _ = writeln!(o, "       Control:   {}", fil_short(&control));
    }
    let _ = writeln!(o, "Total Spendable:  {}", fil_short(&spendable));
    let _ = writeln!(o);
    let _ = writeln!(o, "Beneficiary:\t{}", mi.beneficiary);
    let _ = writeln!(o);
    Ok(o)
}

pub struct ListOptions {
    pub fast: bool,
    pub events: bool,
    pub initial_pledge: bool,
    pub seal_time: bool,
    pub parallelism: usize,
}

/// `sectors list` as Lotus prints it: each sector's state, whether the chain has it and counts
/// it active, its expiration, deals, and on request its events, seal time and pledge.
pub async fn sectors_list(miner: &RpcClient, list: &[serde_json::Value], o: ListOptions) -> Result<String> {
    use futures_util::StreamExt;
    let mut committed: BTreeMap<u64, SectorOnChainInfo> = BTreeMap::new();
    let mut active = std::collections::BTreeSet::new();
    let (mut now, mut secs) = (0, 30);
    if !o.fast {
        let node = FullNode::connect(miner, None).await?;
        now = node.head().await?;
        secs = block_secs(&node).await;
        for s in node.call::<f::StateMinerSectors>((node.maddr, None, TipSetKey::head())).await? {
            committed.insert(s.sector_number, s);
        }
        for s in node.call::<f::StateMinerActiveSectors>((node.maddr, TipSetKey::head())).await? {
            active.insert(s.sector_number);
        }
    }
    // The sector logs only when a column needs them, at most `--check-parallelism` at once.
    let logs: BTreeMap<u64, serde_json::Value> = if o.events || o.seal_time {
        futures_util::stream::iter(list.iter().filter_map(|s| s["SectorID"].as_u64()))
            .map(|n| async move {
                let st: Result<serde_json::Value, _> = miner.call("SectorsStatus", serde_json::json!([n, false])).await;
                (n, st.unwrap_or_default())
            })
            .buffer_unordered(o.parallelism.max(1))
            .collect()
            .await
    } else {
        BTreeMap::new()
    };
    let yes = |b: bool| if b { "YES" } else { "NO" }.to_string();
    let mut rows = vec![];
    for s in list {
        let n = s["SectorID"].as_u64().unwrap_or(0);
        let mut r: BTreeMap<&str, String> = BTreeMap::new();
        r.insert("ID", n.to_string());
        r.insert("State", s["State"].as_str().unwrap_or("").to_string());
        r.insert("OnChain", yes(committed.contains_key(&n)));
        r.insert("Active", yes(active.contains(&n)));
        r.insert("Deals", if s["HasData"].as_bool().unwrap_or(false) { "data".into() } else { "CC".into() });
        if !o.fast {
            match committed.get(&n) {
                Some(c) => {
                    r.insert("Expiration", epoch_time(now, c.expiration, secs));
                    if o.initial_pledge {
                        r.insert("Pledge", fil_short(&c.initial_pledge));
                    }
                }
                None => {
                    r.insert("Expiration", "n/a".into());
                }
            }
        }
        let log = logs.get(&n).and_then(|v| v["Log"].as_array()).cloned().unwrap_or_default();
        if o.events {
            r.insert("Events", log.len().to_string());
        }
        if o.seal_time && log.len() > 1 {
            let at = |e: &serde_json::Value| e["Timestamp"].as_u64().unwrap_or(0);
            let start = at(&log[0]);
            let now_secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(start);
            let end = log
                .iter()
                .find(|e| e["Message"].as_str().is_some_and(|m| m.contains("→ Proving")))
                .map(at)
                .unwrap_or(now_secs);
            let took = std::time::Duration::from_secs(end.saturating_sub(start));
            r.insert("SealTime", humantime::format_duration(took).to_string());
        }
        if let Some(e) = s["LastErr"].as_str().filter(|e| !e.is_empty()) {
            r.insert("Error", e.to_string());
        }
        rows.push(r);
    }
    let cols = [
        ("ID", false),
        ("State", false),
        ("OnChain", false),
        ("Active", false),
        ("Expiration", false),
        ("SealTime", false),
        ("Events", false),
        ("Deals", false),
        ("Pledge", false),
        ("Error", true),
    ];
    Ok(super::lotus_table(&cols, &rows))
}

/// `sectors status -c` / `-p`: the sector's record on chain and where it is proven, as
/// Lotus prints them.
pub async fn sector_chain_info(miner: &RpcClient, n: u64, on_chain: bool, partition: bool) -> Result<String> {
    use std::fmt::Write;
    let node = FullNode::connect(miner, super::client::actor()).await?;
    let maddr = node.maddr;
    let mut o = String::new();
    if on_chain {
        match node.call::<f::StateSectorGetInfo>((maddr, n, TipSetKey::head())).await? {
            None => {
                let _ = writeln!(o, "\nSector On Chain Info\nnot on chain (not proven yet, or terminated)");
            }
            Some(s) => {
                let _ = writeln!(o, "\nSector On Chain Info");
                let _ = writeln!(o, "SealProof:\t\t{:x}", s.seal_proof);
                let _ = writeln!(o, "Activation:\t\t{}", s.activation);
                let _ = writeln!(o, "Expiration:\t\t{}", s.expiration);
                let _ = writeln!(o, "DealWeight:\t\t{}", s.deal_weight);
                let _ = writeln!(o, "VerifiedDealWeight:\t\t{}", s.verified_deal_weight);
                let _ = writeln!(o, "InitialPledge:\t\t{}", fil(&s.initial_pledge));
                let _ = writeln!(o, "\nExpiration Info");
                let _ = writeln!(o, "OnTime:\t\t{}", s.expiration);
                let _ = writeln!(o, "Early:\t\t0");
            }
        }
    }
    if partition {
        let Some(loc) = node.call::<f::StateSectorPartition>((maddr, n, TipSetKey::head())).await? else {
            let _ = writeln!(o, "\nPartition Info\nnot in any partition");
            return Ok(o);
        };
        let parts = node.call::<f::StateMinerPartitions>((maddr, loc.deadline, TipSetKey::head())).await?;
        let p = parts.get(loc.partition as usize).cloned().unwrap_or_default();
        let _ = writeln!(o, "\nPartition Info");
        let _ = writeln!(o, "Index:\t\t{}", loc.partition);
        let _ = writeln!(o, "Deadline:\t\t{}", loc.deadline);
        let _ = writeln!(o, "InLive:\t\t{}", p.live_sectors.0.get(n));
        let _ = writeln!(o, "InActive:\t\t{}", p.active_sectors.0.get(n));
        let _ = writeln!(o, "InFaulty:\t\t{}", p.faulty_sectors.0.get(n));
        let _ = writeln!(o, "InRecovering:\t\t{}", p.recovering_sectors.0.get(n));
    }
    Ok(o)
}

/// `proving recover-faults`: the miner declares the sectors recovered (RecoverFault) and the
/// messages are waited for.
pub async fn recover_faults(miner: &RpcClient, sectors: Vec<u64>, confidence: u64) -> Result<()> {
    if sectors.is_empty() {
        bail!("must pass at least 1 sector number");
    }
    let cids = miner.request::<lotus_api::contract::miner::RecoverFault>((sectors,)).await.map_err(explain)?;
    let node = FullNode::connect(miner, super::client::actor()).await?;
    for cid in cids {
        if let Err(e) = node.wait(cid, confidence, "DeclareFaultsRecovered").await {
            println!("Failed to execute the message {e:#}");
        }
    }
    Ok(())
}

/// `proving check DEADLINE`: each live sector of the deadline checked by the miner
/// (CheckProvable), good or bad with why.
pub async fn check(
    miner: &RpcClient,
    deadline: u64,
    only_bad: bool,
    faulty: bool,
    storage_id: Option<String>,
) -> Result<String> {
    let node = FullNode::connect(miner, None).await?;
    let maddr = node.maddr;
    let mi = node.miner_info().await?;
    let parts = node.call::<f::StateMinerPartitions>((maddr, deadline, TipSetKey::head())).await?;
    let mut filter: Option<std::collections::BTreeSet<u64>> = None;
    if let Some(id) = storage_id {
        let list: serde_json::Value = miner.call("StorageList", serde_json::json!([])).await.map_err(explain)?;
        let ids = list.get(&id).and_then(|v| v.as_array()).ok_or_else(|| anyhow::anyhow!("storage {id} not found"))?;
        filter = Some(ids.iter().filter_map(|s| s["Number"].as_u64()).collect());
    }
    if faulty {
        let f: std::collections::BTreeSet<u64> =
            node.call::<f::StateMinerFaults>((maddr, TipSetKey::head())).await?.0.iter().collect();
        filter = Some(match filter {
            Some(x) => x.intersection(&f).copied().collect(),
            None => f,
        });
    }
    let mut rows = vec![["deadline", "partition", "sector", "status"].map(String::from).to_vec()];
    for (pi, p) in parts.iter().enumerate() {
        let sectors =
            node.call::<f::StateMinerSectors>((maddr, Some(p.live_sectors.clone()), TipSetKey::head())).await?;
        let refs: Vec<sealing_types::SectorRef> = sectors
            .iter()
            .filter(|s| filter.as_ref().is_none_or(|f| f.contains(&s.sector_number)))
            .filter_map(|s| {
                Some(sealing_types::SectorRef {
                    id: sealing_types::SectorId { miner: maddr.as_id()?, number: s.sector_number },
                    proof_type: sealing_types::RegisteredSealProof::from_i64(s.seal_proof)?,
                })
            })
            .collect();
        let bad = miner
            .request::<lotus_api::contract::miner::CheckProvable>((mi.window_po_st_proof_type, refs.clone()))
            .await
            .map_err(explain)?;
        for r in refs {
            let n = r.id.number;
            match bad.get(&n) {
                Some(why) => {
                    rows.push(vec![deadline.to_string(), pi.to_string(), n.to_string(), format!("bad ({why})")])
                }
                None if !only_bad => {
                    rows.push(vec![deadline.to_string(), pi.to_string(), n.to_string(), "good".into()])
                }
                None => {}
            }
        }
    }
    Ok(super::table(&rows))
}

/// The market's allocation term buffer (90 days of 30 s epochs): with `--deal-terms`, a bucket
/// counts the sectors a deal ending that much later could still go into (Lotus's rule).
const ALLOCATION_TERM_BUFFER: i64 = 90 * 2880;

/// `sectors list upgrade-bounds`: the Available sectors' expirations in `buckets` buckets, as
/// Lotus prints them (a table with a bar, or CSV).
pub async fn upgrade_bounds(miner: &RpcClient, buckets: usize, csv: bool, deal_terms: bool) -> Result<String> {
    use lotus_api::contract::miner as m;
    let list = miner.request::<m::SectorsListInStates>((vec!["Available".to_string()],)).await.map_err(explain)?;
    let node = FullNode::connect(miner, super::client::actor()).await?;
    let head = node.head().await?;
    let filter = lotus_api::wire::BitField::of(list.iter().copied());
    let set = node.call::<f::StateMinerSectors>((node.maddr, Some(filter), TipSetKey::head())).await?;
    if set.is_empty() || buckets == 0 {
        return Ok(String::new());
    }
    let min = set.iter().map(|s| s.expiration).min().unwrap_or(0);
    let max = set.iter().map(|s| s.expiration).max().unwrap_or(0);
    // At least one epoch: Lotus's zero-width buckets (every sector expiring at once) count
    // nothing, and its bar then divides by zero.
    let size = ((max - min) / buckets as i64).max(1);
    let counts: Vec<usize> = (0..=buckets as i64)
        .map(|b| {
            let lo = min + b * size;
            let hi = min + (b + 1) * size + if deal_terms { ALLOCATION_TERM_BUFFER } else { 0 };
            set.iter().filter(|s| s.expiration >= lo && s.expiration < hi).count()
        })
        .collect();
    let mut o = String::new();
    if csv {
        o.push_str("Max Expiration in Bucket,Sector Count\n");
        for (i, n) in counts.iter().take(buckets).enumerate() {
            o.push_str(&format!("{},{n}\n", min + (i as i64 + 1) * size));
        }
        return Ok(o);
    }
    let secs = block_secs(&node).await;
    let most = counts.iter().copied().max().unwrap_or(0).max(1);
    let rows: Vec<std::collections::BTreeMap<&str, String>> = counts
        .iter()
        .take(buckets)
        .enumerate()
        .map(|(i, &n)| {
            let bar = n * 40 / most;
            std::collections::BTreeMap::from([
                ("Bucket Expiration", epoch_time(head, min + (i as i64 + 1) * size, secs)),
                ("Sector Count", n.to_string()),
                ("Bar", format!("[{}{}]", "|".repeat(bar), " ".repeat(40 - bar))),
            ])
        })
        .collect();
    Ok(super::lotus_table(&[("Bucket Expiration", false), ("Sector Count", false), ("Bar", false)], &rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_and_amounts_print_as_lotus_s() {
        assert_eq!(epoch_time(100, 100, 30), "100 (now)");
        assert_eq!(epoch_time(100, 220, 30), "220 (in 1 hour)");
        assert_eq!(epoch_time(3000, 100, 30), "100 (1 day 10 minutes ago)");
        assert_eq!(fil_short(&BigInt::from_atto(20_000_000_000_000_000u64)), "20 mFIL");
        assert_eq!(fil_short(&BigInt::zero()), "0");
        let bf = fvm_ipld_bitfield::BitField::try_from_bits([1u64, 3, 4, 5, 8]).unwrap();
        assert_eq!(ranges(&bf), "1,3-5,8");
    }
}
