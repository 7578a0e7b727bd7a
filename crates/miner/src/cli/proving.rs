//! `lotus-miner proving info|deadlines|workers` and the proving lines of `lotus-miner info`.

use super::client::explain;
use crate::chain::{DeadlineInfo, Epoch, ProvingParams, ProvingSummary};
use crate::proving::{BlockAttempt, PoStAttempt};
use anyhow::Result;
use clap::Subcommand;
use lotus_api::RpcClient;
use serde::Deserialize;
use serde_json::json;
use std::fmt::Write;

#[derive(Subcommand, Debug)]
pub enum ProvingCmd {
    /// The current proving period and deadline, faults, missed deadlines, recent proofs
    Info,
    /// Every deadline of the proving period: partitions, sectors, faults, proven partitions
    Deadlines {
        /// Count all sectors (only live sectors are counted by default)
        #[arg(long, short = 'a')]
        all: bool,
    },
    /// PoSt workers connected to the miner
    Workers,
    /// View the currently known proving faulty sectors information
    Faults,
    /// Check sectors provable
    Check {
        /// print only bad sectors
        #[arg(long)]
        only_bad: bool,
        /// run slow checks (every check reads the challenged leaves here)
        #[arg(long)]
        slow: bool,
        /// filter sectors by storage path (path id)
        #[arg(long)]
        storage_id: Option<String>,
        /// only check faulty sectors
        #[arg(long)]
        faulty: bool,
        /// <deadlineIdx>
        deadline: u64,
    },
    /// Compute simulated proving tasks
    Compute {
        #[command(subcommand)]
        cmd: ComputeCmd,
    },
    /// Manually recovers faulty sectors on chain
    RecoverFaults {
        /// number of block confirmations to wait for
        #[arg(long, default_value_t = 5)]
        confidence: u64,
        /// <faulty sectors>
        sectors: Vec<u64>,
    },
    /// View the current proving period deadline information by its index
    Deadline {
        /// Print sector/fault numbers belonging to this deadline
        #[arg(long, short = 'n')]
        sector_nums: bool,
        /// Print partition bitfield stats
        #[arg(long, short = 'b')]
        bitfield: bool,
        /// <deadlineIdx>
        index: u64,
    },
}

#[derive(Subcommand, Debug)]
pub enum ComputeCmd {
    /// Compute WindowPoSt for a specific deadline
    ///
    /// Note: This command is intended to be used to verify PoSt compute performance.
    /// It will not send any messages to the chain.
    #[command(visible_alias = "window-post")]
    WindowedPost {
        /// [deadline index]
        deadline: u64,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProvingView {
    pub miner: u64,
    pub current_epoch: Epoch,
    pub block_delay_secs: f64,
    pub deadline: DeadlineInfo,
    pub params: ProvingParams,
    pub chain: ProvingSummary,
    pub attempts: Vec<PoStAttempt>,
    pub blocks: Vec<BlockAttempt>,
    #[serde(rename = "DisableBuiltinWindowPoSt")]
    pub disable_builtin_window: bool,
}

pub async fn fetch(c: &RpcClient) -> Result<ProvingView> {
    c.call("ProvingInfo", json!([])).await.map_err(explain)
}

fn ago(epoch: Epoch, now: Epoch) -> String {
    match now - epoch {
        d if d > 0 => format!("{epoch} ({d} epochs ago)"),
        0 => format!("{epoch} (now)"),
        d => format!("{epoch} (in {} epochs)", -d),
    }
}

fn sectors_in(v: &ProvingView, dl: usize) -> Vec<u64> {
    v.chain.deadlines.get(dl).map(|d| d.iter().flatten().copied().collect()).unwrap_or_default()
}

pub fn render_info(v: &ProvingView) -> String {
    let d = &v.deadline;
    let now = v.current_epoch;
    let period = d.deadlines as Epoch * (d.close - d.open);
    let total: usize = v.chain.deadlines.iter().flatten().map(Vec::len).sum();
    let faults = v.chain.faults.len();
    let pct = if total == 0 { 0.0 } else { faults as f64 * 100.0 / total as f64 };
    let mut o = String::new();
    let _ = writeln!(o, "Miner: t0{}", v.miner);
    let _ = writeln!(o, "Current Epoch:           {now}");
    let _ = writeln!(o, "Proving Period Boundary: {}", d.period_start.rem_euclid(period.max(1)));
    let _ = writeln!(o, "Proving Period Start:    {}", ago(d.period_start, now));
    let _ = writeln!(o, "Next Period Start:       {}", ago(d.period_start + period, now));
    let _ = writeln!(
        o,
        "Period: {} deadlines of {} epochs ({}s each), challenge {} epochs before opening",
        d.deadlines,
        d.close - d.open,
        (d.close - d.open) as f64 * v.block_delay_secs,
        v.params.lookback
    );
    let _ = writeln!(o);
    let _ = writeln!(o, "Faults:      {faults} ({pct:.2}%)");
    let _ = writeln!(
        o,
        "Missed deadlines: {} (sectors penalised: {})",
        v.chain.missed_deadlines, v.chain.penalised_sectors
    );
    let _ = writeln!(o, "Blocks won:  {} (refused: {})", v.chain.blocks_won, v.chain.blocks_refused);
    let _ = writeln!(o);
    let _ = writeln!(o, "Deadline Index:       {}", d.index);
    let _ = writeln!(o, "Deadline Sectors:     {}", sectors_in(v, d.index as usize).len());
    let _ = writeln!(o, "Deadline Open:        {}", ago(d.open, now));
    let _ = writeln!(o, "Deadline Close:       {}", ago(d.close, now));
    let _ = writeln!(o, "Deadline Challenge:   {}", ago(d.challenge, now));
    if !v.attempts.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "Recent WindowPoSt (deadline/open/partition, prover, time to prove, margin before close):");
        for a in v.attempts.iter().rev().take(12).rev() {
            let outcome = match &a.error {
                Some(e) => format!("FAILED: {e}"),
                None => {
                    let skipped: Vec<u64> = a.skipped.iter().map(|s| s.number).collect();
                    format!("proven {:?}, skipped (faulty) {skipped:?}", a.proven)
                }
            };
            let _ = writeln!(
                o,
                "  dl {} @{} p{}  {}  {:.1}s  margin {:.1}s  {outcome}",
                a.deadline,
                a.open,
                a.partition,
                if a.prover.is_empty() { "-" } else { &a.prover },
                a.seconds,
                a.margin_seconds
            );
        }
    }
    o
}

pub fn render_deadlines(v: &ProvingView, all: bool) -> String {
    let d = &v.deadline;
    let window = d.close - d.open;
    let mut rows = vec![[
        "deadline".to_string(),
        "open".into(),
        "partitions".into(),
        "sectors (faults)".into(),
        "proven partitions".into(),
    ]];
    for i in 0..d.deadlines as usize {
        let open = d.period_start + i as Epoch * window;
        let sectors = if all {
            v.chain.all_sectors.get(i).map(|d| d.iter().flatten().copied().collect()).unwrap_or_default()
        } else {
            sectors_in(v, i)
        };
        let faults = sectors.iter().filter(|s| v.chain.faults.contains(s)).count();
        let partitions = v.chain.deadlines.get(i).map(Vec::len).unwrap_or(0);
        let proven = v.chain.posts.iter().filter(|p| p.open == open).count();
        let mark = if i as u64 == d.index { " (current)" } else { "" };
        rows.push([
            i.to_string(),
            format!("{open}{mark}"),
            partitions.to_string(),
            format!("{} ({faults})", sectors.len()),
            proven.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..5).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
    let mut o = format!("Miner: t0{}\n", v.miner);
    for r in rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(o, "{}", line.join("  ").trim_end());
    }
    o
}

/// The proving lines of `lotus-miner info`.
pub fn render_health(v: &ProvingView) -> String {
    let total: usize = v.chain.deadlines.iter().flatten().map(Vec::len).sum();
    let last_ok = v.attempts.iter().rev().find(|a| a.error.is_none());
    let mut o = format!(
        "Proving: {} sectors ({} active, {} faulty); missed deadlines: {}; blocks won: {}\n",
        total,
        v.chain.active,
        v.chain.faults.len(),
        v.chain.missed_deadlines,
        v.chain.blocks_won
    );
    if let Some(a) = last_ok {
        let _ = writeln!(
            o,
            "Last WindowPoSt: deadline {} partition {} by {} in {:.1}s, {:.1}s before the close",
            a.deadline, a.partition, a.prover, a.seconds, a.margin_seconds
        );
    }
    if v.disable_builtin_window {
        let _ = writeln!(o, "Built-in WindowPoSt: disabled (PoSt workers only)");
    }
    if let Some(b) = v.blocks.last() {
        let how = match &b.error {
            None => format!("mined by {} in {:.1}s", b.prover, b.seconds),
            Some(e) => format!("FAILED: {e}"),
        };
        let _ = writeln!(o, "Last election won: epoch {}, {how}", b.epoch);
    }
    o
}

/// The full node named by `FULLNODE_API_INFO` and the miner's actor address (from the
/// miner), for the commands that read the chain themselves, as Lotus's do.
async fn chain_of(miner: &RpcClient) -> Result<(Vec<(String, RpcClient)>, lotus_api::chain::Address)> {
    let addr: String = miner.request::<lotus_api::contract::miner::ActorAddress>(()).await.map_err(explain)?;
    let maddr = addr.parse().map_err(anyhow::Error::msg)?;
    Ok((super::fullnode_from_env()?, maddr))
}

/// `proving deadline IDX [-n] [-b]` as Lotus prints it, from the chain: the deadline's
/// partitions and, for each, its all/live/active/faulty/recovering sector counts. The open
/// time is printed in UTC (Lotus prints the local time).
pub async fn deadline(miner: &RpcClient, index: u64, nums: bool, bitfield: bool) -> Result<String> {
    use lotus_api::chain::TipSetKey;
    use lotus_api::contract::full as f;
    let (nodes, maddr) = chain_of(miner).await?;
    let current = std::sync::atomic::AtomicUsize::new(0);
    let head_key = || (maddr, TipSetKey::head());
    let e = |what: &str| {
        let what = what.to_string();
        move |e: lotus_api::ClientError| anyhow::anyhow!("{what}: {e}")
    };
    let deadlines = crate::chain::call::<f::StateMinerDeadlines>(&nodes, &current, head_key(), None)
        .await
        .map_err(e("getting deadlines"))?;
    let di = crate::chain::call::<f::StateMinerProvingDeadline>(&nodes, &current, head_key(), None)
        .await
        .map_err(e("getting deadlines"))?;
    let Some(dl) = deadlines.get(index as usize) else {
        anyhow::bail!(
            "deadline {index} does not exist: the proving period has {} (0 to {})",
            deadlines.len(),
            deadlines.len().saturating_sub(1)
        );
    };
    let parts =
        crate::chain::call::<f::StateMinerPartitions>(&nodes, &current, (maddr, index, TipSetKey::head()), None)
            .await
            .map_err(e(&format!("getting partitions for deadline {index}")))?;
    let head = crate::chain::call::<f::ChainHead>(&nodes, &current, (), None).await.map_err(e("reading the head"))?;
    let net = crate::chain::call::<f::StateGetNetworkParams>(&nodes, &current, (), None)
        .await
        .map_err(e("reading the network"))?;
    // Lotus's deadlineOpenTime: the open of deadline `index` in the current proving period.
    let window = di.wpost_proving_period / di.wpost_period_deadlines.max(1) as i64;
    let open = di.open + window * (index as i64 - di.index as i64);
    let genesis = head.min_timestamp() as i64 - head.height * net.block_delay_secs as i64;
    let at = (genesis + net.block_delay_secs as i64 * open).rem_euclid(86_400);
    let mut o = String::new();
    let _ = writeln!(o, "Deadline Index:           {index}");
    let _ = writeln!(o, "Deadline Open:            {:02}:{:02}:{:02}", at / 3600, at / 60 % 60, at % 60);
    let _ = writeln!(o, "Partitions:               {}", parts.len());
    let _ = writeln!(o, "Proven Partitions:        {}", dl.post_submissions.0.len());
    let _ = writeln!(o, "Current:                  {}\n", di.index == index);
    for (i, p) in parts.iter().enumerate() {
        let _ = writeln!(o, "Partition Index:          {i}");
        for (name, bf) in [
            ("All", &p.all_sectors),
            ("Live", &p.live_sectors),
            ("Active", &p.active_sectors),
            ("Faulty", &p.faulty_sectors),
            ("Recovering", &p.recovering_sectors),
        ] {
            let count = bf.0.len();
            let pad = " ".repeat(18 - name.len());
            if bitfield {
                let (mut zero_runs, mut one_runs, mut zeros, mut last) = (0u64, 0u64, 0u64, 0u64);
                for r in bf.0.ranges() {
                    if r.start > last {
                        zero_runs += 1;
                        zeros += r.start - last;
                    }
                    one_runs += 1;
                    last = r.end;
                }
                let sz = fvm_ipld_encoding::to_vec(&bf.0).map(|b| b.len()).unwrap_or(0);
                let _ = writeln!(
                    o,
                    "\t{name} Sectors:{pad}{count} (bitfield - runs {zero_runs}+{one_runs}={} - {zeros} 0s {count} 1s - 0 inv - {} {sz}B)",
                    zero_runs + one_runs,
                    sealing_types::size::size_str(sz as u64)
                );
            } else {
                let _ = writeln!(o, "\t{name} Sectors:{pad}{count}");
            }
            if nums {
                let all: Vec<String> = bf.0.iter().map(|n| n.to_string()).collect();
                let _ = writeln!(o, "\t{name} Sector Numbers:{}[{}]", " ".repeat(12 - name.len()), all.join(" "));
            }
        }
    }
    Ok(o)
}

/// `proving faults` as Lotus prints it: every faulty sector by deadline and partition, read
/// from the chain through the full node (`FULLNODE_API_INFO`), as Lotus's command does.
pub async fn faults(miner: &RpcClient) -> Result<String> {
    use lotus_api::chain::{Address, TipSetKey};
    use lotus_api::contract::full as f;
    let (nodes, maddr): (_, Address) = chain_of(miner).await?;
    let current = std::sync::atomic::AtomicUsize::new(0);
    let call = |e| anyhow::anyhow!("reading the miner's deadlines from the full node: {e}");
    let dl = crate::chain::call::<f::StateMinerProvingDeadline>(&nodes, &current, (maddr, TipSetKey::head()), None)
        .await
        .map_err(call)?;
    let mut rows = vec![vec!["deadline".to_string(), "partition".into(), "sectors".into()]];
    for d in 0..dl.wpost_period_deadlines {
        let parts =
            crate::chain::call::<f::StateMinerPartitions>(&nodes, &current, (maddr, d, TipSetKey::head()), None)
                .await
                .map_err(call)?;
        for (i, p) in parts.iter().enumerate() {
            for n in p.faulty_sectors.0.iter() {
                rows.push(vec![d.to_string(), i.to_string(), n.to_string()]);
            }
        }
    }
    Ok(format!("Miner: {maddr}\n{}", super::table(&rows)))
}
