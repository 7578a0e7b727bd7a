//! `lotus-miner sectors …` and `lotus-miner storage …`.

use super::client::{client, endpoint, explain, print_json};
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use lotus_api::types::SectorStorageInfo;
use lotus_node::attach::prepare_attach;
use lotus_node::repo::Repo;
use sealing_types::size::size_str;
use sealing_types::{FileType, FileTypes, SectorId, SectorRef};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Subcommand, Debug)]
pub enum SectorsCmd {
    /// Store random data in a sector (a committed-capacity sector)
    Pledge {
        /// Then follow the sector's states until it is Proving or has failed (not in Lotus)
        #[arg(long)]
        wait: bool,
    },
    /// Seal a file's bytes into a new sector, at deal priority (devnet stand-in for a deal)
    AddPiece { file: PathBuf },
    /// Get the seal status of a sector
    Status {
        /// Print the event log
        #[arg(long, short = 'l')]
        log: bool,
        /// show sector on chain info
        #[arg(long, short = 'c')]
        on_chain_info: bool,
        /// show partition related info
        #[arg(long, short = 'p')]
        partition_info: bool,
        /// print snark proof bytes as hex
        #[arg(long)]
        proof: bool,
        sector: u64,
    },
    /// List sectors
    List {
        /// show removed sectors
        #[arg(long, short = 'r')]
        show_removed: bool,
        /// filter sectors by a comma-separated list of states
        #[arg(long, value_delimiter = ',')]
        states: Vec<String>,
        /// only show sectors which aren't in the 'Proving' state
        #[arg(long, short = 'u')]
        unproven: bool,
        /// don't show on-chain info for better performance
        #[arg(long, short = 'f')]
        fast: bool,
        /// display number of events the sector has received
        #[arg(long, short = 'e')]
        events: bool,
        /// display initial pledge
        #[arg(long, short = 'p')]
        initial_pledge: bool,
        /// display how long it took for the sector to be sealed
        #[arg(long, short = 't')]
        seal_time: bool,
        /// number of parallel requests to make for checking sector states
        #[arg(long, default_value_t = 300)]
        check_parallelism: usize,
        #[command(subcommand)]
        cmd: Option<ListCmd>,
    },
    /// Unseal a sector from its sealed copy and write its data to a file
    Unseal {
        sector: u64,
        /// Where to write the sector's data
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Forcefully remove a sector (WARNING: This means losing power and collateral for the removed sector (use 'terminate' for lower penalty))
    Remove {
        /// pass this flag if you know what you are doing
        #[arg(long)]
        really_do_it: bool,
        /// <sectorNum>
        sector: u64,
    },
    /// ADVANCED: manually update the state of a sector, this may aid in error recovery
    UpdateState {
        /// pass this flag if you know what you are doing
        #[arg(long)]
        really_do_it: bool,
        /// <sectorNum>
        sector: u64,
        /// <newState>
        state: String,
    },
    /// List References to sectors
    Refs,
    /// manage sector number assignments
    Numbers {
        #[command(subcommand)]
        cmd: NumbersCmd,
    },
    /// manage batch sector operations
    Batching {
        #[command(subcommand)]
        cmd: BatchingCmd,
    },
    #[command(flatten)]
    Chain(super::onchain::ChainSectorsCmd),
}

#[derive(Subcommand, Debug)]
pub enum ListCmd {
    /// Output upgrade bounds for available sectors
    UpgradeBounds {
        #[arg(long, default_value_t = 25)]
        buckets: usize,
        /// output machine-readable values
        #[arg(long)]
        csv: bool,
        /// bucket by how many deal-sectors can start at a given expiration
        #[arg(long)]
        deal_terms: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum BatchingCmd {
    /// list sectors waiting in commit batch queue
    Commit {
        /// send a batch now
        #[arg(long)]
        publish_now: bool,
    },
    /// list sectors waiting in precommit batch queue
    Precommit {
        /// send a batch now
        #[arg(long)]
        publish_now: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum NumbersCmd {
    /// view sector assigner state
    Info,
    /// list sector number reservations
    Reservations,
    /// create sector number reservations
    Reserve {
        /// skip duplicate reservation checks (note: can lead to damaging other reservations on free)
        #[arg(long)]
        force: bool,
        /// [reservation name]
        name: String,
        /// [reserved ranges], e.g. 100-199,250
        ranges: String,
    },
    /// remove sector number reservations
    Free {
        /// [reservation name]
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum StorageListCmd {
    /// get list of all sector files
    Sectors,
}

#[derive(clap::Subcommand, Debug)]
pub enum StorageCmd {
    /// Attach a storage path to this node
    Attach(lotus_node::attach::AttachArgs),
    /// List storage paths in the cluster, with their use and sectors
    List {
        #[command(subcommand)]
        cmd: Option<StorageListCmd>,
    },
    /// Find where a sector's files are
    Find { sector: u64 },
    /// detach local storage path
    Detach(lotus_node::attach::DetachArgs),
    /// show active sector locks
    Locks,
    /// redeclare sectors in a local storage path
    Redeclare(lotus_node::attach::RedeclareArgs),
    /// trigger cleanup actions
    Cleanup {
        /// cleanup remaining files from removed sectors
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
        removed: bool,
    },
}

pub async fn sectors(repo: &Repo, cmd: SectorsCmd) -> Result<()> {
    let c = client(repo)?;
    match cmd {
        SectorsCmd::Chain(cmd) => super::onchain::run(&c, cmd).await?,
        SectorsCmd::Pledge { wait } => {
            let id: SectorId = c.call("PledgeSector", json!([])).await.map_err(explain)?;
            println!("Created CC sector:  {}", id.number);
            if wait {
                follow(&c, id.number).await?;
            }
        }
        SectorsCmd::AddPiece { file } => {
            let abs = std::fs::canonicalize(&file).with_context(|| format!("reading {}", file.display()))?;
            let id: SectorId = c.call("SectorsAddPieceFile", json!([abs])).await.map_err(explain)?;
            let st: Value = c.call("SectorsStatus", json!([id.number, false])).await.map_err(explain)?;
            if st["State"].as_str().is_some_and(|s| s.starts_with("SnapDeals")) {
                println!("Upgrading sector {} (snap deal) with the data of {}", id.number, file.display());
            } else {
                println!("Created sector {} with the data of {}", id.number, file.display());
            }
        }
        SectorsCmd::Status { log, on_chain_info, partition_info, proof, sector } => {
            let v: Value = c.call("SectorsStatus", json!([sector, on_chain_info])).await.map_err(explain)?;
            if !print_json(&v)? {
                print!("{}", render_status(&v, log));
                if proof {
                    let b64 = v["Proof"].as_str().unwrap_or("");
                    let bytes =
                        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).unwrap_or_default();
                    println!("Proof:\t\t{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
                }
                if on_chain_info || partition_info {
                    print!("{}", super::onchain::sector_chain_info(&c, sector, on_chain_info, partition_info).await?);
                }
            }
        }
        SectorsCmd::List {
            show_removed,
            states,
            unproven,
            fast,
            events,
            initial_pledge,
            seal_time,
            check_parallelism,
            cmd,
        } => {
            if let Some(ListCmd::UpgradeBounds { buckets, csv, deal_terms }) = cmd {
                print!("{}", super::onchain::upgrade_bounds(&c, buckets, csv, deal_terms).await?);
                return Ok(());
            }
            if !states.is_empty() && unproven {
                bail!("only one of --states or --unproven can be specified at once");
            }
            let mut list: Vec<Value> = c.call("SectorsListDetail", json!([])).await.map_err(explain)?;
            // As Lotus's: Removed sectors only with --show-removed (or asked for by --states).
            list.retain(|s| {
                let st = s["State"].as_str().unwrap_or("");
                (states.is_empty() || states.iter().any(|x| x == st))
                    && (show_removed || !states.is_empty() || st != "Removed")
                    && !(unproven && st == "Proving")
            });
            if print_json(&list)? {
                return Ok(());
            }
            let opts =
                super::onchain::ListOptions { fast, events, initial_pledge, seal_time, parallelism: check_parallelism };
            print!("{}", super::onchain::sectors_list(&c, &list, opts).await?);
        }
        SectorsCmd::Unseal { sector, output } => unseal(repo, &c, sector, &output).await?,
        SectorsCmd::Numbers { cmd } => numbers(&c, cmd).await?,
        SectorsCmd::Batching { cmd } => batching(&c, cmd).await?,
        SectorsCmd::Refs => {
            let refs = c.request::<lotus_api::contract::miner::SectorsRefs>(()).await.map_err(explain)?;
            if !print_json(&refs)? {
                for (deal, refs) in refs {
                    println!("Block {deal}:");
                    for r in refs {
                        println!("\t{}+{} {} bytes", r.sector_id, r.offset, r.size);
                    }
                }
            }
        }
        SectorsCmd::UpdateState { really_do_it, sector, state } => {
            use lotus_api::contract::miner as m;
            if !really_do_it {
                bail!("this is a command for advanced users, only use it if you are sure of what you are doing (pass --really-do-it)");
            }
            c.request::<m::SectorsStatus>((sector, Some(false)))
                .await
                .map_err(|_| anyhow::anyhow!("sector {sector} not found, could not change state"))?;
            c.request::<m::SectorsUpdate>((sector, state)).await.map_err(explain)?;
        }
        SectorsCmd::Remove { really_do_it, sector } => {
            use lotus_api::contract::miner as m;
            if !really_do_it {
                bail!("this is a command for advanced users, only use it if you are sure of what you are doing (pass --really-do-it)");
            }
            c.request::<m::SectorsStatus>((sector, Some(false)))
                .await
                .map_err(|e| anyhow::anyhow!("sectorID {sector} has not been created yet: {}", explain(e)))?;
            c.request::<m::SectorRemove>((sector,)).await.map_err(explain)?;
        }
    }
    Ok(())
}

/// A flushed batch as Lotus prints it: its message or its error, and each sector.
struct BatchLine {
    sectors: Vec<u64>,
    msg: Option<lotus_api::wire::Cid>,
    error: String,
    failed: std::collections::BTreeMap<u64, String>,
}

fn print_batches(batches: &[BatchLine]) {
    for (i, b) in batches.iter().enumerate() {
        println!("Batch {i}:");
        if b.error.is_empty() {
            println!("\tMessage: {}", b.msg.as_ref().map(|c| c.to_string()).unwrap_or_else(|| "<nil>".into()));
        } else {
            println!("\tError: {}", b.error);
        }
        println!("\tSectors:");
        for n in &b.sectors {
            match b.failed.get(n) {
                Some(e) => println!("\t\t{n}\tERROR {e}"),
                None => println!("\t\t{n}\tOK"),
            }
        }
    }
}

/// `sectors batching precommit|commit [--publish-now]`: the queued sectors; with
/// `--publish-now` (or a "yes" to the question) the batch is sent now.
async fn batching(c: &lotus_api::RpcClient, cmd: BatchingCmd) -> Result<()> {
    use lotus_api::contract::miner as m;
    let (commit, publish_now) = match cmd {
        BatchingCmd::Commit { publish_now } => (true, publish_now),
        BatchingCmd::Precommit { publish_now } => (false, publish_now),
    };
    let mut publish = publish_now;
    if !publish {
        let pending = if commit {
            c.request::<m::SectorCommitPending>(()).await
        } else {
            c.request::<m::SectorPreCommitPending>(()).await
        }
        .map_err(|e| anyhow::anyhow!("getting pending deals: {}", explain(e)))?;
        if pending.is_empty() {
            // Lotus prints "committed" for both queues.
            println!("No sectors queued to be committed");
            return Ok(());
        }
        for s in &pending {
            println!("{}", s.number);
        }
        use std::io::Write;
        print!("Do you want to publish these sectors now? (yes/no): ");
        std::io::stdout().flush().ok();
        let mut answer = String::new();
        if std::io::stdin().read_line(&mut answer).context("reading user input")? == 0 {
            bail!("reading user input: EOF (answer yes or no, or pass --publish-now)");
        }
        match answer.trim().to_lowercase().as_str() {
            "yes" => publish = true,
            "no" => return Ok(()),
            _ => {
                println!("Invalid input. Please answer with 'yes' or 'no'.");
                return Ok(());
            }
        }
    }
    debug_assert!(publish);
    let lines: Option<Vec<BatchLine>> = if commit {
        c.request::<m::SectorCommitFlush>(()).await.map_err(|e| anyhow::anyhow!("flush: {}", explain(e)))?.map(|v| {
            v.into_iter()
                .map(|b| BatchLine { sectors: b.sectors, msg: b.msg, error: b.error, failed: b.failed_sectors })
                .collect()
        })
    } else {
        c.request::<m::SectorPreCommitFlush>(()).await.map_err(|e| anyhow::anyhow!("flush: {}", explain(e)))?.map(|v| {
            v.into_iter()
                .map(|b| BatchLine { sectors: b.sectors, msg: b.msg, error: b.error, failed: Default::default() })
                .collect()
        })
    };
    let Some(lines) = lines else { bail!("no sectors to publish") };
    print_batches(&lines);
    Ok(())
}

async fn numbers(c: &lotus_api::RpcClient, cmd: NumbersCmd) -> Result<()> {
    use lotus_api::contract::miner as m;
    match cmd {
        NumbersCmd::Info => {
            let am = c.request::<m::SectorNumAssignerMeta>(()).await.map_err(explain)?;
            if print_json(&am)? {
                return Ok(());
            }
            println!("Next free: {}", am.next);
            println!("Allocated: {}", am.allocated.to_human());
            println!("Reserved: {}", am.reserved.to_human());
        }
        NumbersCmd::Reservations => {
            let rs = c.request::<m::SectorNumReservations>(()).await.map_err(explain)?;
            if print_json(&rs)? {
                return Ok(());
            }
            println!("reservations: {}", rs.len());
            let mut lines: Vec<String> =
                rs.iter().map(|(name, bf)| format!("{name}: count={} {}", bf.0.len(), bf.to_human())).collect();
            lines.sort();
            for l in lines {
                println!("{l}");
            }
        }
        NumbersCmd::Reserve { force, name, ranges } => {
            let bf = lotus_api::wire::BitField::from_human(&ranges)
                .map_err(|e| anyhow::anyhow!("parsing ranges {ranges:?}: {e}"))?;
            c.request::<m::SectorNumReserve>((name, bf, force)).await.map_err(explain)?;
        }
        NumbersCmd::Free { name } => c.request::<m::SectorNumFree>((name,)).await.map_err(explain)?,
    }
    Ok(())
}

fn render_status(v: &Value, log: bool) -> String {
    let s = |k: &str| match &v[k] {
        Value::Null => "<nil>".to_string(),
        Value::String(x) => x.clone(),
        Value::Object(o) if o.contains_key("/") => o["/"].as_str().unwrap_or("").to_string(),
        x => x.to_string(),
    };
    let mut out = String::new();
    out += &format!("SectorID:\t{}\n", s("SectorID"));
    out += &format!("Status:\t\t{}\n", s("State"));
    out += &format!("CIDcommD:\t{}\n", s("CommD"));
    out += &format!("CIDcommR:\t{}\n", s("CommR"));
    out += &format!("Ticket:\t\t{}\n", v["Ticket"]["Value"].as_str().unwrap_or(""));
    out += &format!("TicketH:\t{}\n", v["Ticket"]["Epoch"]);
    out += &format!("Seed:\t\t{}\n", v["Seed"]["Value"].as_str().unwrap_or(""));
    out += &format!("SeedH:\t\t{}\n", v["Seed"]["Epoch"]);
    out += &format!("Precommit:\t{}\n", v["PreCommitEpoch"]);
    out += &format!("Proof:\t\t{}\n", s("Proof"));
    out += &format!("Deals:\t\t{}\n", if v["HasData"].as_bool().unwrap_or(false) { "[data]" } else { "[]" });
    out += &format!("Retries:\t{}\n", s("Retries"));
    let err = s("LastErr");
    if !err.is_empty() {
        out += &format!("Last Error:\t\t{err}\n");
    }
    if let Some(files) = v["Files"].as_array() {
        for f in files {
            out += &format!("Files:\t\t{} {}\n", f["ID"].as_str().unwrap_or(""), f["URLs"]);
        }
    }
    if log {
        out += "--------\nEvent Log:\n";
        for (i, e) in v["Log"].as_array().into_iter().flatten().enumerate() {
            let t = e["Timestamp"].as_u64().unwrap_or(0);
            let when = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(t));
            out += &format!(
                "{i}.\t{when}:\t[{}]\t{}\n",
                e["Kind"].as_str().unwrap_or(""),
                e["Message"].as_str().unwrap_or("")
            );
        }
    }
    out
}

/// Unseal on a worker, then download the rebuilt unsealed file from wherever it landed and
/// strip the fr32 padding.
async fn unseal(repo: &Repo, c: &lotus_api::RpcClient, sector: u64, output: &std::path::Path) -> Result<()> {
    let st: Value = c.call("SectorsStatus", json!([sector, false])).await.map_err(explain)?;
    let proof: sealing_types::RegisteredSealProof = serde_json::from_value(st["SealProof"].clone())?;
    let sid = SectorId { miner: actor_id(c).await?, number: sector };
    let sref = SectorRef { id: sid, proof_type: proof };
    let t0 = std::time::Instant::now();
    let (url, token) = endpoint(repo)?;
    // Unsealing runs a whole task on a worker: longer than the usual 30 s call timeout.
    let long = lotus_api::RpcClient::new(url, Some(token.clone()), Duration::from_secs(3600));
    long.call::<()>("SectorsUnsealPiece", json!([sref])).await.map_err(explain)?;
    let found: Vec<SectorStorageInfo> =
        c.call("StorageFindSector", json!([sid, FileTypes::of(&[FileType::Unsealed]), 0, false])).await?;
    let url = found
        .iter()
        .flat_map(|f| f.urls.iter())
        .next()
        .context("the unsealed file is not in the index after unsealing")?;
    let resp = reqwest::Client::new().get(url).bearer_auth(&token).send().await?;
    if !resp.status().is_success() {
        bail!("downloading {url}: {}", resp.status());
    }
    let padded = resp.bytes().await?;
    let len = match st["DataLen"].as_u64() {
        Some(n) if n > 0 => n,
        _ => sealing_proofs::max_unpadded(proof.sector_size()),
    };
    let data = sealing_proofs::unpad(&padded, len as usize)?;
    std::fs::write(output, &data).with_context(|| format!("writing {}", output.display()))?;
    println!(
        "unsealed sector {sector} ({} bytes) into {} in {:.1}s",
        data.len(),
        output.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The miner's actor ID, from `ActorAddress` (`t01000` → 1000).
async fn actor_id(c: &lotus_api::RpcClient) -> Result<u64> {
    let addr: String = c.call("ActorAddress", json!([])).await.map_err(explain)?;
    addr.get(2..)
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("the miner reported actor address {addr:?}, expected t0<number>"))
}

/// Every sector's files where the index has them, for `storage list sectors`; faults from
/// the devnet's proving state.
async fn sector_files(c: &lotus_api::RpcClient) -> Result<Vec<crate::render::SectorFile>> {
    use lotus_api::contract::miner as m;
    let miner = actor_id(c).await?;
    let proving: Value = c.call("ProvingInfo", json!([])).await.map_err(explain)?;
    let faults: Vec<u64> = serde_json::from_value(proving["Chain"]["Faults"].clone()).unwrap_or_default();
    let mut out = vec![];
    for n in c.request::<m::SectorsList>(()).await.map_err(explain)? {
        let st = c.request::<m::SectorsStatus>((n, Some(false))).await.map_err(explain)?;
        let sid = SectorId { miner, number: n };
        for t in FileType::ALL {
            let holders =
                c.request::<m::StorageFindSector>((sid, FileTypes::of(&[t]), 0, false)).await.map_err(explain)?;
            for h in &holders {
                out.push(crate::render::SectorFile {
                    storage: h.id,
                    sector: n,
                    file_type: t,
                    state: st.state.clone(),
                    faulty: faults.contains(&n),
                    primary: h.primary,
                    copies: holders.len(),
                    seal: h.can_seal,
                    store: h.can_store,
                    urls: h.urls.clone(),
                });
            }
        }
    }
    Ok(out)
}

pub async fn storage(repo: &Repo, cmd: StorageCmd) -> Result<()> {
    let c = client(repo)?;
    match cmd {
        StorageCmd::Attach(a) => {
            let path = prepare_attach(&a)?;
            c.call::<()>("StorageAddLocal", json!([path])).await.map_err(explain)?;
            println!("attached {}", path.display());
        }
        StorageCmd::Cleanup { removed } => {
            use lotus_api::contract::miner as m;
            if removed {
                let miner = actor_id(&c).await?;
                for n in c.request::<m::SectorsListInStates>((vec!["Removed".into()],)).await.map_err(explain)? {
                    let sid = SectorId { miner, number: n };
                    let all = FileTypes::of(&FileType::ALL);
                    let found = c.request::<m::StorageFindSector>((sid, all, 0, false)).await.map_err(explain)?;
                    if !found.is_empty() {
                        println!("cleaning up data for sector {n}");
                        if let Err(e) = c.request::<m::SectorRemove>((n,)).await {
                            eprintln!("ERROR: removing sector {n}: {e}");
                        }
                    }
                }
            }
        }
        StorageCmd::Locks => {
            use lotus_api::contract::miner as m;
            let locks = c.request::<m::StorageGetLocks>(()).await.map_err(explain)?;
            if print_json(&locks)? {
                return Ok(());
            }
            for lock in locks.locks {
                let st = c.request::<m::SectorsStatus>((lock.sector.number, Some(false))).await.map_err(explain)?;
                let mut line = format!("{}\t{}\t", lock.sector.number, st.state);
                for (i, t) in FileType::ALL.iter().enumerate() {
                    if lock.write[i] > 0 {
                        line += &format!("{}(W) ", t.name());
                    }
                    if lock.read[i] > 0 {
                        line += &format!("{}(R:{}) ", t.name(), lock.read[i]);
                    }
                }
                println!("{line}");
            }
        }
        StorageCmd::Detach(a) => {
            let path = a.checked()?;
            c.request::<lotus_api::contract::miner::StorageDetachLocal>((path,)).await.map_err(explain)?;
        }
        StorageCmd::Redeclare(a) => {
            let (id, drop_missing) = a.params()?;
            c.request::<lotus_api::contract::miner::StorageRedeclareLocal>((id, drop_missing))
                .await
                .map_err(explain)?;
        }
        StorageCmd::List { cmd: Some(StorageListCmd::Sectors) } => {
            let files = sector_files(&c).await?;
            if !print_json(&files)? {
                print!("{}", crate::render::storage_sectors(files));
            }
        }
        StorageCmd::List { cmd: None } => {
            let list: Vec<Value> = c.call("StorageListDetail", json!([])).await.map_err(explain)?;
            if print_json(&list)? {
                return Ok(());
            }
            let local: std::collections::BTreeMap<String, String> = c.call("StorageLocal", json!([])).await?;
            print!("{}", render_storage_list(&list, &local));
        }
        StorageCmd::Find { sector } => {
            let sid = SectorId { miner: actor_id(&c).await?, number: sector };
            let local: std::collections::BTreeMap<String, String> = c.call("StorageLocal", json!([])).await?;
            let mut any = false;
            for t in FileType::ALL {
                let found: Vec<SectorStorageInfo> =
                    c.call("StorageFindSector", json!([sid, FileTypes::of(&[t]), 0, false])).await?;
                for f in found {
                    any = true;
                    println!("In {} ({})", f.id, t.name());
                    println!("\tSealing: {}; Storage: {}", f.can_seal, f.can_store);
                    match local.get(&f.id.to_string()) {
                        Some(p) => println!("\tLocal ({p})"),
                        None => println!("\tRemote"),
                    }
                    for u in &f.urls {
                        println!("\tURL: {u}");
                    }
                }
            }
            if !any {
                bail!("sector {sector} has no files in any attached storage path");
            }
        }
    }
    Ok(())
}

fn bar(used: u64, cap: u64) -> String {
    let n = if cap == 0 { 0 } else { (used as u128 * 50 / cap as u128) as usize };
    format!("[{}{}]", "#".repeat(n.min(50)), " ".repeat(50 - n.min(50)))
}

fn render_storage_list(list: &[Value], local: &std::collections::BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rows: Vec<&Value> = list.iter().collect();
    rows.sort_by_key(|v| std::cmp::Reverse(v["Stat"]["Capacity"].as_u64().unwrap_or(0)));
    for v in rows {
        let id = v["Info"]["ID"].as_str().unwrap_or("");
        let cap = v["Stat"]["Capacity"].as_u64().unwrap_or(0);
        let avail = v["Stat"]["FSAvailable"].as_u64().unwrap_or(0);
        let used = cap.saturating_sub(avail);
        let pct = (used * 100).checked_div(cap).unwrap_or(0);
        out += &format!("{id}:\n");
        out += &format!("\t{} {}/{} {pct}% (filesystem)\n", bar(used, cap), size_str(used), size_str(cap));
        let max = v["Stat"]["Max"].as_u64().unwrap_or(0);
        if max > 0 {
            let u = v["Stat"]["Used"].as_u64().unwrap_or(0);
            out += &format!("\t{} {}/{} {}% (limit)\n", bar(u, max), size_str(u), size_str(max), u * 100 / max);
        }
        let mut counts = [0usize; 6];
        for d in v["Sectors"].as_array().into_iter().flatten() {
            let t = FileTypes(d["SectorFileType"].as_u64().unwrap_or(0) as u8);
            for (i, ft) in FileType::ALL.iter().enumerate() {
                if t.contains(*ft) {
                    counts[i] += 1;
                }
            }
        }
        out += &format!(
            "\tUnsealed: {}; Sealed: {}; Caches: {}; Updated: {}; Update-caches: {}; Pieces: {}\n",
            counts[0], counts[1], counts[2], counts[3], counts[4], counts[5]
        );
        let (seal, store) =
            (v["Info"]["CanSeal"].as_bool().unwrap_or(false), v["Info"]["CanStore"].as_bool().unwrap_or(false));
        let usage = match (seal, store) {
            (false, false) => "ReadOnly".to_string(),
            _ => [(seal, "Seal"), (store, "Store")]
                .iter()
                .filter(|(b, _)| *b)
                .map(|(_, n)| *n)
                .collect::<Vec<_>>()
                .join(" "),
        };
        out += &format!("\tWeight: {}; Use: {usage}\n", v["Info"]["Weight"]);
        if let Some(p) = local.get(id) {
            out += &format!("\tLocal: {p}\n");
        }
        let hosts: Vec<&str> = v["Hosts"].as_array().into_iter().flatten().filter_map(|h| h.as_str()).collect();
        for (u, h) in v["Info"]["URLs"].as_array().into_iter().flatten().zip(hosts.iter().chain(std::iter::repeat(&"")))
        {
            out += &format!("\tURL: {} ({h})\n", u.as_str().unwrap_or(""));
        }
        let err = v["Err"].as_str().unwrap_or("");
        if !err.is_empty() {
            out += &format!("\tError: {err}\n");
        }
    }
    out
}

/// `sectors pledge --wait`: each state the sector enters, with the time it spent in the one
/// before, until it is Proving (success) or in a failure state (an error naming it).
async fn follow(c: &lotus_api::RpcClient, number: u64) -> Result<()> {
    let start = std::time::Instant::now();
    let mut last: Option<(String, std::time::Instant)> = None;
    loop {
        let v: Value = c.call("SectorsStatus", json!([number, false])).await.map_err(explain)?;
        let state = v["State"].as_str().unwrap_or("").to_string();
        if last.as_ref().map(|(s, _)| s != &state).unwrap_or(true) {
            let took = last.as_ref().map(|(s, t)| format!(" ({s} took {:.1} s)", t.elapsed().as_secs_f64()));
            println!("{:>7.1} s  {state}{}", start.elapsed().as_secs_f64(), took.unwrap_or_default());
            last = Some((state.clone(), std::time::Instant::now()));
        }
        if state == "Proving" {
            return Ok(());
        }
        if state.contains("Failed") || state == "Removed" {
            let why = v["LastErr"].as_str().or(v["LastError"].as_str()).unwrap_or("");
            anyhow::bail!(
                "sector {number} is in {state}: {why}; `lotus-miner sectors status --log {number}` shows its history"
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}
