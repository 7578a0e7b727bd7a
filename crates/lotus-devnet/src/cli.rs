//! `lotus-devnet`'s commands: the devnet full node's daemon, tokens and API info.

use crate::{Node, Params, State, WallClock};
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use lotus_api::{JwtSecret, Permission};
use lotus_node::repo::{Repo, RepoKind};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Parser)]
#[command(
    name = "lotus-devnet",
    version,
    about = "A single-machine Filecoin devnet node serving Lotus's FullNode v1 API to a storage miner"
)]
struct Cli {
    /// The node's repo (its chain, keys and API address)
    #[arg(long, global = true, env = "LOTUS_DEVNET_PATH", default_value = "~/.lotus-devnet")]
    repo: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the node (creating the chain on first start, with the flags' shape)
    Daemon(DaemonArgs),
    /// Tokens and API info for clients
    Auth {
        #[command(subcommand)]
        cmd: AuthCmd,
    },
    /// Send FIL from the default wallet (or --from) to an address, and wait for it to land
    Send {
        /// Address to send to
        target: String,
        /// Amount in FIL
        amount: String,
        /// Address to send from (a key the node's wallet holds)
        #[arg(long)]
        from: Option<String>,
    },
}

#[derive(clap::Args)]
struct DaemonArgs {
    /// Where the API listens (host:port; port 0 picks one, written to the repo's `api` file)
    #[arg(long, default_value = "127.0.0.1:1234")]
    listen: String,
    /// Time per epoch (at genesis; the chain keeps it)
    #[arg(long, default_value = "1s")]
    block_delay: humantime::Duration,
    /// Epochs between a pre-commit and its seed (PreCommitChallengeDelay)
    #[arg(long, default_value_t = 5)]
    pre_commit_challenge_delay: i64,
    /// Deadlines per proving period (WPoStPeriodDeadlines)
    #[arg(long, default_value_t = 4)]
    wpost_period_deadlines: u64,
    /// Epochs a deadline is open (WPoStChallengeWindow)
    #[arg(long, default_value_t = 20)]
    wpost_challenge_window: i64,
    /// Epochs between a deadline's challenge and its opening (WPoStChallengeLookback)
    #[arg(long, default_value_t = 2)]
    wpost_challenge_lookback: i64,
    /// The chance that a miner with power wins an epoch's election
    #[arg(long, default_value_t = 0.02)]
    win_rate: f64,
    /// Accept only mock proofs (for tests and benchmarks whose subject is not the proof)
    #[arg(long)]
    mock_proofs: bool,
    /// Epochs between proposing a worker key and its taking effect (WorkerKeyChangeDelay)
    #[arg(long, default_value_t = 900)]
    worker_key_change_delay: i64,
    /// Epochs before a deadline opens after which faults and recoveries for it are refused
    /// (FaultDeclarationCutoff; 0: 7/6 of the challenge window, mainnet's ratio)
    #[arg(long, default_value_t = 0)]
    fault_declaration_cutoff: i64,
}

#[derive(Subcommand)]
enum AuthCmd {
    /// Print a token with the permission and those below it
    CreateToken {
        #[arg(long)]
        perm: String,
    },
    /// Print FULLNODE_API_INFO=TOKEN:MULTIADDR for the running node
    ApiInfo {
        #[arg(long)]
        perm: String,
    },
}

/// The `lotus-devnet` binary.
pub fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Cmd::Daemon(_) = cli.cmd {
        lotus_node::logging::init();
    }
    let stop = std::sync::Arc::new(tokio::sync::Notify::new());
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(cli, stop))
}

/// `lotus-devnet daemon …` (`args[0]` is the program's name), parsed as the binary parses
/// it, to run in this process: tests start a whole cluster in one process with it. It serves
/// on the host's listener when it gives one (else on `--listen`) until the host's shutdown
/// fires. A bad command line, or another command, fails here, before anything runs.
pub fn in_process(args: &[&str], host: lotus_node::daemon::Host) -> Result<lotus_node::daemon::Running> {
    let cli = Cli::try_parse_from(args)?;
    let repo = Repo::new(lotus_node::repo::expand_home(&cli.repo), RepoKind::Devnet);
    let Cmd::Daemon(a) = cli.cmd else { bail!("in_process runs `lotus-devnet daemon`") };
    Ok(Box::pin(daemon(repo, a, host.listener, host.shutdown)))
}

async fn run(cli: Cli, shutdown: std::sync::Arc<tokio::sync::Notify>) -> Result<()> {
    let repo = Repo::new(lotus_node::repo::expand_home(&cli.repo), RepoKind::Devnet);
    match cli.cmd {
        Cmd::Daemon(a) => daemon(repo, a, None, shutdown).await,
        Cmd::Send { target, amount, from } => send(&repo, &target, &amount, from.as_deref()).await,
        Cmd::Auth { cmd } => {
            let (perm, info) = match &cmd {
                AuthCmd::CreateToken { perm } => (perm, false),
                AuthCmd::ApiInfo { perm } => (perm, true),
            };
            let perm: Permission = perm.parse()?;
            repo.require_initialised()?;
            let token = repo.jwt_secret()?.create_token(&perm.with_lower());
            if info {
                let addr = repo.api_addr().context("is the devnet daemon running? (its repo has no api file)")?;
                println!("FULLNODE_API_INFO={token}:{addr}");
            } else {
                println!("{token}");
            }
            Ok(())
        }
    }
}

async fn send(repo: &Repo, target: &str, amount: &str, from: Option<&str>) -> Result<()> {
    use lotus_api::chain::{Address, BigInt, Message};
    use lotus_api::contract::full as f;
    let to: Address = target.parse().map_err(anyhow::Error::msg)?;
    let amount = BigInt::parse_fil(amount).map_err(anyhow::Error::msg)?;
    repo.require_initialised()?;
    let token = repo.jwt_secret()?.create_token(&Permission::Admin.with_lower());
    let addr = repo.api_addr().context("is the devnet daemon running? (its repo has no api file)")?;
    let info = lotus_api::ApiInfo::parse(&format!("{token}:{addr}"))?;
    let client = lotus_api::RpcClient::new(
        info.rpc_url().replace("/rpc/v0", "/rpc/v1"),
        Some(token),
        std::time::Duration::from_secs(600),
    );
    let from = match from {
        Some(a) => a.parse().map_err(anyhow::Error::msg)?,
        None => client.request::<f::WalletDefaultAddress>(()).await?,
    };
    let msg = Message::call(from, to, lotus_api::chain::actors::METHOD_SEND, vec![], amount);
    let signed = client.request::<f::MpoolPushMessage>((msg, None)).await?;
    let cid = signed.cid();
    let lookup = client.request::<f::StateWaitMsg>((cid, 1, -1, true)).await?;
    if lookup.receipt.exit_code != 0 {
        bail!("the send {cid} failed on chain with exit code {}", lookup.receipt.exit_code);
    }
    let balance = client.request::<f::WalletBalance>((to,)).await?;
    println!("{cid}");
    eprintln!("{to} now holds {balance} attoFIL");
    Ok(())
}

async fn daemon(
    repo: Repo,
    a: DaemonArgs,
    listener: Option<tokio::net::TcpListener>,
    shutdown: std::sync::Arc<tokio::sync::Notify>,
) -> Result<()> {
    repo.create_dir()?;
    let _lock = repo.lock()?;
    if !repo.is_initialised() {
        repo.write_jwt_secret(&JwtSecret::generate())?;
    }
    let secret = repo.jwt_secret()?;
    let params = Params {
        block_delay_ms: (a.block_delay.as_millis() as u64).max(1),
        pre_commit_challenge_delay: a.pre_commit_challenge_delay,
        wpost_period_deadlines: a.wpost_period_deadlines.max(1),
        wpost_challenge_window: a.wpost_challenge_window.max(1),
        wpost_challenge_lookback: a.wpost_challenge_lookback,
        win_rate: a.win_rate,
        proofs: if a.mock_proofs { sealing_proofs::Backend::Mock } else { sealing_proofs::Backend::Real },
        network_name: if a.mock_proofs { "devnet-mockproofs".into() } else { "devnet".into() },
        fault_declaration_cutoff: a.fault_declaration_cutoff.max(0),
        worker_key_change_delay: a.worker_key_change_delay.max(0),
        ..Params::default()
    };
    let file = repo.file("chain.json");
    let state = match std::fs::read(&file) {
        Ok(bytes) => {
            let st: State = serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is damaged (move it away to start a new chain)", file.display()))?;
            let mut st = st;
            if st.params.win_rate != params.win_rate {
                // Not the chain's shape: an election knob, changed for the epochs to come.
                tracing::info!(from = st.params.win_rate, to = params.win_rate, "the election's win rate changes");
                st.params.win_rate = params.win_rate;
            }
            if st.params != params {
                bail!(
                    "the chain in {} was created with {:?}, the flags ask for {:?}: start it with its own flags, or use a new repo for a new chain",
                    file.display(),
                    st.params,
                    params
                );
            }
            st
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
            let st = State::genesis(params, now, rand::random());
            tracing::info!(wallet = %st.accounts[&st.default_wallet].key, "a new chain: the default wallet holds the genesis funds");
            st
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    };
    if state.params.proofs == sealing_proofs::Backend::Mock {
        tracing::warn!("MOCK PROOFS: this devnet accepts only mock proofs; nothing on it is proven for real");
    }
    let node = Node::new(state, Some(file), Box::new(WallClock), secret);
    drop(node.state()); // genesis, or the epochs that passed while it was down
    node.mark_dirty();
    node.flush();
    let listener = match listener {
        Some(l) => l,
        None => {
            let addr: std::net::SocketAddr =
                a.listen.parse().with_context(|| format!("--listen {:?}: expected host:port", a.listen))?;
            lotus_node::daemon::bind(addr, || "another process uses it: pick another --listen".into()).await?
        }
    };
    let bound = listener.local_addr()?;
    repo.write_file("api", lotus_api::apiinfo::to_multiaddr(&bound.to_string()).as_bytes(), 0o644)?;
    tracing::info!(%bound, "serving the FullNode v1 API on /rpc/v1");
    let background = lotus_node::daemon::Background::new();
    let flusher = node.clone();
    background.spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            let n = flusher.clone();
            let _ = tokio::task::spawn_blocking(move || n.flush()).await;
        }
    });
    let served = lotus_node::daemon::serve(
        listener,
        lotus_node::daemon::HEADER_TIMEOUT,
        crate::node::router(node.clone()),
        &repo,
        shutdown,
        || {},
        &background,
    )
    .await;
    node.flush();
    served
}
