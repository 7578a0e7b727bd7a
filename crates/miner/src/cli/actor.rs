//! `lotus-miner actor …`: the miner actor's addresses and funds, as Lotus's commands do it —
//! read and sent through the full node of `FULLNODE_API_INFO` (which signs with the owner's or
//! the worker's key in its wallet), each message's receipt checked where Lotus waits for it.

use super::fullnode::{fil, parse_fil, FullNode, Send};
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use lotus_api::chain::{actors, Address, BigInt, Message, MinerInfo, TipSetKey};
use lotus_api::contract::full as f;
use lotus_api::RpcClient;

/// The miner actor's methods these commands send (v18 numbers).
mod method {
    pub use lotus_api::chain::actors::{
        MINER_CHANGE_MULTIADDRS as CHANGE_MULTIADDRS, MINER_CHANGE_OWNER_ADDRESS as CHANGE_OWNER_ADDRESS,
        MINER_CHANGE_PEER_ID as CHANGE_PEER_ID, MINER_CHANGE_WORKER_ADDRESS as CHANGE_WORKER_ADDRESS,
        MINER_COMPACT_SECTOR_NUMBERS as COMPACT_SECTOR_NUMBERS,
        MINER_CONFIRM_CHANGE_WORKER_ADDRESS as CONFIRM_CHANGE_WORKER_ADDRESS, MINER_REPAY_DEBT as REPAY_DEBT,
        MINER_WITHDRAW_BALANCE as WITHDRAW_BALANCE,
    };
}

const REALLY: &str = "Pass --really-do-it to actually execute this action";

#[derive(Subcommand, Debug)]
pub enum ActorCmd {
    /// set addresses that your miner can be publicly dialed on
    #[command(visible_alias = "set-addrs")]
    SetAddresses {
        /// optionally specify the account to send the message from
        #[arg(long)]
        from: Option<String>,
        /// set gas limit
        #[arg(long, default_value_t = 0)]
        gas_limit: i64,
        /// unset address
        #[arg(long)]
        unset: bool,
        /// <multiaddrs>
        addrs: Vec<String>,
    },
    /// Settle deals manually, if dealIds are not provided all deals will be settled
    SettleDeal {
        /// number of block confirmations to wait for
        #[arg(long, default_value_t = 5)]
        confidence: u64,
        /// specify where to send the message from (any address)
        #[arg(long)]
        from: Option<String>,
        /// the maximum number of deals contained in each message
        #[arg(long, default_value_t = 20)]
        max_deals: u64,
        /// the denominator of the block gas limit a message may use
        #[arg(long, default_value_t = 4)]
        max_gas_fraction: u64,
        /// skip waiting for the messages
        #[arg(long)]
        skip_wait_msg: bool,
        /// settle all deals. only expired deals are calculated by default
        #[arg(long)]
        all_deals: bool,
        /// pass this flag if you know what you are doing
        #[arg(long)]
        really_do_it: bool,
        /// [...dealIds]
        deals: Vec<String>,
    },
    /// withdraw available balance to beneficiary
    Withdraw {
        /// number of block confirmations to wait for
        #[arg(long, default_value_t = 5)]
        confidence: u64,
        /// send withdraw message from the beneficiary address
        #[arg(long)]
        beneficiary: bool,
        /// [amount (FIL)]
        amount: Option<String>,
    },
    /// pay down a miner's debt
    RepayDebt {
        /// optionally specify the account to send funds from
        #[arg(long)]
        from: Option<String>,
        /// [amount (FIL)]
        amount: Option<String>,
    },
    /// set the peer id of your miner
    SetPeerId {
        /// set gas limit
        #[arg(long, default_value_t = 0)]
        gas_limit: i64,
        /// <peer id>
        peer_id: String,
    },
    /// Set owner address (this command should be invoked twice, first with the old owner as the
    /// senderAddress, and then with the new owner)
    SetOwner {
        /// Actually send transaction performing the action
        #[arg(long)]
        really_do_it: bool,
        /// [newOwnerAddress senderAddress]
        new_owner: String,
        sender: String,
    },
    /// Manage control addresses
    Control {
        #[command(subcommand)]
        cmd: ControlCmd,
    },
    /// Propose a worker address change
    ProposeChangeWorker {
        /// Actually send transaction performing the action
        #[arg(long)]
        really_do_it: bool,
        /// [address]
        address: Option<String>,
    },
    /// Confirm a worker address change
    ConfirmChangeWorker {
        /// Actually send transaction performing the action
        #[arg(long)]
        really_do_it: bool,
        /// [address]
        address: Option<String>,
    },
    /// compact allocated sectors bitfield
    CompactAllocated {
        /// Mask sector IDs from 0 to 'highest_allocated - offset'
        #[arg(long)]
        mask_last_offset: Option<u64>,
        /// Mask sector IDs from 0 to 'n'
        #[arg(long)]
        mask_upto_n: Option<u64>,
        /// Actually send transaction performing the action
        #[arg(long)]
        really_do_it: bool,
    },
    /// Propose a beneficiary address change
    ProposeChangeBeneficiary {
        /// Actually send transaction performing the action
        #[arg(long)]
        really_do_it: bool,
        /// Overwrite the current beneficiary change proposal
        #[arg(long)]
        overwrite_pending_change: bool,
        /// [beneficiaryAddress quota expiration]
        args: Vec<String>,
    },
    /// Confirm a beneficiary address change
    ConfirmChangeBeneficiary {
        /// Actually send transaction performing the action
        #[arg(long)]
        really_do_it: bool,
        /// send confirmation from the existing beneficiary address
        #[arg(long)]
        existing_beneficiary: bool,
        /// send confirmation from the new beneficiary address
        #[arg(long)]
        new_beneficiary: bool,
        /// [minerID]
        args: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ControlCmd {
    /// Get currently set control addresses
    List {
        #[arg(long)]
        verbose: bool,
    },
    /// Set control address(-es)
    Set {
        /// Actually send transaction performing the action
        #[arg(long)]
        really_do_it: bool,
        /// [...address]
        addresses: Vec<String>,
    },
}

fn parse_addr(s: &str) -> Result<Address> {
    s.parse().map_err(|e| anyhow::anyhow!("{s:?} is not an address: {e}"))
}

impl FullNode {
    async fn lookup_id(&self, a: Address) -> Result<Address> {
        self.call::<f::StateLookupID>((a, TipSetKey::head())).await.with_context(|| format!("looking up {a}"))
    }

    /// Owner, worker or a control address (Lotus's `isController`).
    async fn controller(&self, mi: &MinerInfo, from: Option<&str>) -> Result<Address> {
        let from = match from {
            Some(s) => self.lookup_id(parse_addr(s)?).await?,
            None => mi.worker,
        };
        if from != mi.owner && from != mi.worker && !mi.control_addresses.contains(&from) {
            bail!("sender isn't a controller of miner: {from}");
        }
        Ok(from)
    }
}

pub async fn run(miner: &RpcClient, actor: Option<&str>, cmd: ActorCmd) -> Result<()> {
    let deals = "this miner has no market deals (deal intake is not served): nothing to settle";
    let beneficiary =
        "the devnet's miners have the owner as their beneficiary, which this miner does not change (see the README)";
    match cmd {
        ActorCmd::SettleDeal { .. } => bail!(deals),
        ActorCmd::ProposeChangeBeneficiary { .. } | ActorCmd::ConfirmChangeBeneficiary { .. } => bail!(beneficiary),
        ActorCmd::SetOwner { really_do_it: false, .. } | ActorCmd::CompactAllocated { really_do_it: false, .. } => {
            println!("{REALLY}");
            Ok(())
        }
        cmd => {
            let node = FullNode::connect(miner, actor).await?;
            with_node(&node, cmd).await
        }
    }
}

async fn with_node(node: &FullNode, cmd: ActorCmd) -> Result<()> {
    let maddr = node.maddr;
    match cmd {
        ActorCmd::Withdraw { confidence, beneficiary, amount } => {
            let mut amount = match amount {
                Some(a) => parse_fil(&a).context("parsing 'amount' argument")?,
                None => BigInt::zero(),
            };
            let available = node
                .call::<f::StateMinerAvailableBalance>((maddr, TipSetKey::head()))
                .await
                .context("Error getting miner balance")?;
            if amount > available {
                bail!(
                    "can't withdraw more funds than available; requested: {}; available: {}",
                    fil(&amount),
                    fil(&available)
                );
            }
            if amount == BigInt::zero() {
                amount = available;
            }
            let mi = node.miner_info().await.context("Error getting miner's owner address")?;
            let from = if beneficiary { mi.beneficiary } else { mi.owner };
            let params = actors::miner::WithdrawBalanceParams {
                amount_requested: fvm_shared::econ::TokenAmount::from_atto(amount.0.clone()),
            };
            let cid = node.push(from, maddr, method::WITHDRAW_BALANCE, actors::encode(&params), BigInt::zero()).await?;
            println!("Requested withdrawal in message {cid}\nwaiting for it to be included in a block..");
            let wait = node.wait(cid, confidence, "withdrawal").await?;
            let ret = wait.receipt.return_data.as_ref().map(|b| b.0.clone()).unwrap_or_default();
            let withdrawn: actors::miner::WithdrawBalanceReturn =
                actors::decode(&ret).map_err(|e| anyhow::anyhow!("reading the withdrawal's return: {e}"))?;
            let withdrawn = BigInt(withdrawn.amount_withdrawn.atto().clone());
            println!("Successfully withdrew {} ", fil(&withdrawn));
            if withdrawn < amount {
                println!("Note that this is less than the requested amount of {}", fil(&amount));
            }
        }
        ActorCmd::RepayDebt { from, amount } => {
            let mi = node.miner_info().await?;
            let Some(amount) = amount else {
                bail!(
                    "give the amount to repay: this miner reads no actor state to find the fee debt (`lotus-miner info` shows it)"
                )
            };
            let amount = parse_fil(&amount).context("parsing 'amount' argument")?;
            let from = node.controller(&mi, from.as_deref()).await?;
            let cid = node.push(from, maddr, method::REPAY_DEBT, vec![], amount).await?;
            println!("Sent repay debt message {cid}");
        }
        ActorCmd::SetPeerId { gas_limit, peer_id } => {
            let bytes = bs58::decode(&peer_id)
                .into_vec()
                .map_err(|e| anyhow::anyhow!("failed to parse input as a peerId: {peer_id:?}: {e}"))?;
            let mi = node.miner_info().await?;
            let params = actors::miner::ChangePeerIDParams { new_id: bytes };
            let msg = Message::call(mi.worker, maddr, method::CHANGE_PEER_ID, actors::encode(&params), BigInt::zero());
            let cid = node.push_with(msg, Send { gas_limit, ..Send::default() }).await?;
            println!("Requested peerid change in message {cid}");
        }
        ActorCmd::SetAddresses { from, gas_limit, unset, addrs } => {
            if unset && !addrs.is_empty() {
                bail!("unset can only be used with no arguments");
            }
            if !unset && addrs.is_empty() {
                bail!("give the multiaddrs to set (or --unset to clear them)");
            }
            let mut bytes = vec![];
            for a in &addrs {
                let mut ma: multiaddr::Multiaddr =
                    a.parse().map_err(|e| anyhow::anyhow!("failed to parse {a:?} as a multiaddr: {e}"))?;
                if let Some(multiaddr::Protocol::P2p(p)) = ma.iter().last() {
                    ma.pop();
                    println!("Stripping peerid  /p2p/{p}  from  {a}");
                }
                bytes.push(fvm_ipld_encoding::BytesDe(ma.to_vec()));
            }
            let mi = node.miner_info().await?;
            let from = node.controller(&mi, from.as_deref()).await?;
            let params = actors::miner::ChangeMultiaddrsParams { new_multi_addrs: bytes };
            let msg = Message::call(from, maddr, method::CHANGE_MULTIADDRS, actors::encode(&params), BigInt::zero());
            let cid = node.push_with(msg, Send { gas_limit, ..Send::default() }).await?;
            println!("Requested multiaddrs change in message {cid}");
        }
        ActorCmd::SetOwner { really_do_it: _, new_owner, sender } => {
            let new = node.lookup_id(parse_addr(&new_owner)?).await?;
            let from = node.lookup_id(parse_addr(&sender)?).await?;
            let mi = node.miner_info().await?;
            if from != mi.owner && from != new {
                bail!("from address must either be the old owner or the new owner");
            }
            let params = actors::miner::ChangeOwnerAddressParams { new_owner: new.0 };
            let cid = node
                .push(from, maddr, method::CHANGE_OWNER_ADDRESS, actors::encode(&params), BigInt::zero())
                .await
                .context("mpool push")?;
            println!("Message CID: {cid}");
            match node.wait(cid, 5, "ChangeOwnerAddress").await {
                Ok(_) => println!("message succeeded!"),
                Err(e) => {
                    println!("owner change failed!");
                    eprintln!("{e:#}");
                }
            }
        }
        ActorCmd::Control { cmd: ControlCmd::List { verbose } } => print!("{}", control_list(node, verbose).await?),
        ActorCmd::Control { cmd: ControlCmd::Set { really_do_it, addresses } } => {
            let mi = node.miner_info().await?;
            let mut set = vec![];
            for (i, a) in addresses.iter().enumerate() {
                let a: Address = a.parse().map_err(|e| anyhow::anyhow!("parsing address {i}: {e}"))?;
                let id = node.lookup_id(a).await?;
                if !set.contains(&id) {
                    set.push(id);
                }
            }
            for c in &mi.control_addresses {
                if !set.contains(c) {
                    println!("Remove {c}");
                }
            }
            for c in &set {
                if !mi.control_addresses.contains(c) {
                    println!("Add {c}");
                }
            }
            if !really_do_it {
                println!("{REALLY}");
                return Ok(());
            }
            let params = actors::miner::ChangeWorkerAddressParams {
                new_worker: mi.worker.0,
                new_control_addresses: set.iter().map(|a| a.0).collect(),
            };
            let cid = node
                .push(mi.owner, maddr, method::CHANGE_WORKER_ADDRESS, actors::encode(&params), BigInt::zero())
                .await?;
            println!("Message CID: {cid}");
        }
        ActorCmd::ProposeChangeWorker { really_do_it, address } => {
            let a = address.ok_or_else(|| anyhow::anyhow!("must pass address of new worker address"))?;
            let new = node.lookup_id(parse_addr(&a)?).await?;
            let mi = node.miner_info().await?;
            if mi.new_worker.0.is_none() && mi.worker == new {
                bail!("worker address already set to {new}");
            }
            if mi.new_worker.0 == Some(new) {
                bail!("change to worker address {new} already pending");
            }
            if !really_do_it {
                println!("{REALLY}");
                return Ok(());
            }
            let params = actors::miner::ChangeWorkerAddressParams {
                new_worker: new.0,
                new_control_addresses: mi.control_addresses.iter().map(|a| a.0).collect(),
            };
            let cid = node
                .push(mi.owner, maddr, method::CHANGE_WORKER_ADDRESS, actors::encode(&params), BigInt::zero())
                .await?;
            println!("Propose Message CID: {cid}");
            node.wait(cid, 5, "propose worker change").await.context("propose worker change failed")?;
            let mi = node.miner_info().await?;
            if mi.new_worker.0 != Some(new) {
                bail!(
                    "proposed worker address change not reflected on chain: expected '{new}', found '{}'",
                    mi.new_worker.0.map(|a| a.to_string()).unwrap_or_default()
                );
            }
            println!(
                "Worker key change to {new} successfully sent, change happens at height {}.",
                mi.worker_change_epoch
            );
            println!(
                "If you have no active deadlines, call 'confirm-change-worker' at or after height {} to complete.",
                mi.worker_change_epoch
            );
        }
        ActorCmd::ConfirmChangeWorker { really_do_it, address } => {
            let a = address.ok_or_else(|| anyhow::anyhow!("must pass address of new worker address"))?;
            let new = node.lookup_id(parse_addr(&a)?).await?;
            let mi = node.miner_info().await?;
            let Some(pending) = mi.new_worker.0 else { bail!("no worker key change proposed") };
            if pending != new {
                bail!("worker key {new} does not match current worker key proposal {pending}");
            }
            let head = node.head().await?;
            if head < mi.worker_change_epoch {
                bail!(
                    "worker key change cannot be confirmed until {}, current height is {head}",
                    mi.worker_change_epoch
                );
            }
            if !really_do_it {
                println!("{REALLY}");
                return Ok(());
            }
            let cid = node.push(mi.owner, maddr, method::CONFIRM_CHANGE_WORKER_ADDRESS, vec![], BigInt::zero()).await?;
            println!("Confirm Message CID: {cid}");
            if let Err(e) = node.wait(cid, 5, "confirm worker change").await {
                println!("Worker change failed!");
                eprintln!("{e:#}");
                return Ok(());
            }
            let mi = node.miner_info().await?;
            if mi.worker != new {
                bail!(
                    "confirmed worker address change not reflected on chain: expected '{new}', found '{}'",
                    mi.worker
                );
            }
        }
        ActorCmd::CompactAllocated { mask_last_offset, mask_upto_n, really_do_it: _ } => {
            let mask = match (mask_last_offset, mask_upto_n) {
                (Some(_), Some(_)) => bail!("more than one 'mask` flag set"),
                (None, None) => bail!("no 'mask' flags set"),
                (None, Some(n)) => n,
                (Some(m), None) => {
                    let last = node.highest_allocated().await?;
                    if last <= m + 1 {
                        bail!("highest allocated sector lower than mask offset {m}: {last}");
                    }
                    last - m
                }
            };
            let mi = node.miner_info().await?;
            let params = actors::miner::CompactSectorNumbersParams {
                // One run, never the numbers one by one (a mask may cover billions).
                mask_sector_numbers: fvm_ipld_bitfield::BitField::from_ranges(fvm_ipld_bitfield::iter::Ranges::new(
                    (mask > 0).then_some(0..mask),
                )),
            };
            let cid = node
                .push(mi.worker, maddr, method::COMPACT_SECTOR_NUMBERS, actors::encode(&params), BigInt::zero())
                .await?;
            println!("CompactSectorNumbers Message CID: {cid}");
            if node.wait(cid, 5, "CompactSectorNumbers").await.is_err() {
                println!("Sector Bitfield compaction failed");
            }
        }
        ActorCmd::SettleDeal { .. }
        | ActorCmd::ProposeChangeBeneficiary { .. }
        | ActorCmd::ConfirmChangeBeneficiary { .. } => {
            unreachable!("answered before connecting")
        }
    }
    Ok(())
}

impl FullNode {
    /// The highest allocated sector number: the highest the chain knows (allocated numbers
    /// are probed upward from the highest on-chain sector, as no full-node method lists them).
    async fn highest_allocated(&self) -> Result<u64> {
        let sectors = self.call::<f::StateMinerSectors>((self.maddr, None, TipSetKey::head())).await?;
        let mut n = sectors.iter().map(|s| s.sector_number).max().unwrap_or(0);
        while self.call::<f::StateMinerSectorAllocated>((self.maddr, n + 1, TipSetKey::head())).await? {
            n += 1;
        }
        Ok(n)
    }
}

/// `actor control list` as Lotus prints it: name, ID, key, use and balance of the owner, the
/// worker, the beneficiary and each control address.
async fn control_list(node: &FullNode, verbose: bool) -> Result<String> {
    let mi = node.miner_info().await?;
    let mut rows = vec![vec!["name".to_string(), "ID".into(), "key".into(), "use".into(), "balance".into()]];
    let mut entries =
        vec![("owner".to_string(), mi.owner), ("worker".into(), mi.worker), ("beneficiary".into(), mi.beneficiary)];
    for (i, c) in mi.control_addresses.iter().enumerate() {
        entries.push((format!("control-{i}"), *c));
    }
    for (name, a) in entries {
        let key = match node.call::<f::StateAccountKey>((a, TipSetKey::head())).await {
            Ok(k) => k.to_string(),
            Err(e) => {
                rows.push(vec![
                    name,
                    a.to_string(),
                    format!("error getting account key: {e}"),
                    String::new(),
                    String::new(),
                ]);
                continue;
            }
        };
        let key = if !verbose && key.len() > 9 { format!("{}...", &key[..6]) } else { key };
        let balance = node.call::<f::WalletBalance>((a,)).await?;
        let mut uses = vec![];
        if a == mi.worker {
            uses.push("other");
        }
        if mi.control_addresses.contains(&a) {
            uses.push("post");
        }
        rows.push(vec![name, a.to_string(), key, uses.join(" "), fil(&balance)]);
    }
    Ok(super::table(&rows))
}
