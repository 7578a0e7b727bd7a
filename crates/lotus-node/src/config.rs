//! The miner's `config.toml` (reference §6.3): every key written, commented out, with its
//! default; env overrides `LOTUS_<SECTION>_<KEY>`; errors that name file, line and key;
//! unknown keys warned about.

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MinerConfig {
    #[serde(rename = "API")]
    pub api: ApiConfig,
    #[serde(rename = "Storage")]
    pub storage: StorageConfig,
    #[serde(rename = "Sealing")]
    pub sealing: SealingConfig,
    #[serde(rename = "Proving")]
    pub proving: ProvingConfig,
    #[serde(rename = "Chain")]
    pub chain: ChainConfig,
    #[serde(rename = "Devnet")]
    pub devnet: DevnetConfig,
}

/// How the miner treats the chain it reaches through `FULLNODE_API_INFO`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ChainConfig {
    pub message_confidence: u64,
}

impl Default for ChainConfig {
    fn default() -> Self {
        ChainConfig { message_confidence: 5 }
    }
}

/// Test-only settings for a devnet (the chain's own shape is the `lotus-devnet daemon`'s).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct DevnetConfig {
    // The chain's shape moved to `lotus-devnet daemon`'s flags: read, never written, warned
    // about when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_delay: Option<toml::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed_delay_epochs: Option<toml::Value>,
    #[serde(rename = "WPoStPeriodDeadlines", skip_serializing_if = "Option::is_none")]
    pub wpost_period_deadlines: Option<toml::Value>,
    #[serde(rename = "WPoStChallengeWindow", skip_serializing_if = "Option::is_none")]
    pub wpost_challenge_window: Option<toml::Value>,
    #[serde(rename = "WPoStChallengeLookback", skip_serializing_if = "Option::is_none")]
    pub wpost_challenge_lookback: Option<toml::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub win_rate: Option<toml::Value>,
    /// The mock proof backend: no proof work, for tests and benchmarks (devnet only).
    pub mock_proofs: bool,
    /// With `MockProofs`: how long each mock task takes, `"PC1=2s,C2=30s"` (others: 0s).
    pub mock_task_durations: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ApiConfig {
    pub listen_address: String,
    pub remote_listen_address: String,
    pub timeout: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct StorageConfig {
    pub parallel_fetch_limit: u64,
    pub allow_sector_download: bool,
    pub allow_add_piece: bool,
    pub allow_pre_commit1: bool,
    pub allow_pre_commit2: bool,
    pub allow_commit: bool,
    pub allow_unseal: bool,
    pub allow_replica_update: bool,
    pub allow_prove_replica_update2: bool,
    pub allow_regen_sector_key: bool,
    pub local_worker_name: String,
    pub assigner: String,
    pub disallow_remote_finalize: bool,
    pub resource_filtering: String,
    pub worker_lost_timeout: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct SealingConfig {
    pub max_sealing_sectors: u64,
    pub max_sealing_sectors_for_deals: u64,
    pub always_keep_unsealed_copy: bool,
    pub min_retry_time: String,
    pub batch_pre_commits: bool,
    pub max_pre_commit_batch: u64,
    pub pre_commit_batch_wait: String,
    pub pre_commit_batch_slack: String,
    pub aggregate_commits: bool,
    pub min_commit_batch: u64,
    pub max_commit_batch: u64,
    pub commit_batch_wait: String,
    pub commit_batch_slack: String,
    pub committed_capacity_sector_lifetime: String,
    pub terminate_batch_max: u64,
    pub terminate_batch_min: u64,
    pub terminate_batch_wait: String,
    pub max_upgrading_sectors: u64,
    pub prefer_new_sectors_for_deals: bool,
    pub min_upgrade_sector_expiration: u64,
    // Lotus keys that do nothing here (see `NO_EFFECT`): read, so that a Lotus config loads,
    // never written, and warned about when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_wait_deals_sectors: Option<toml::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_deals_delay: Option<toml::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finalize_early: Option<toml::Value>,
}

/// Lotus keys this miner reads but has no use for, with the reason `load` warns with.
const NO_EFFECT: &[(&str, &str)] = &[
    (
        "Sealing.MaxWaitDealsSectors",
        "there are no sectors waiting for deals: `sectors add-piece` seals each piece in a sector of its own at once",
    ),
    (
        "Sealing.WaitDealsDelay",
        "there are no sectors waiting for deals: `sectors add-piece` seals each piece in a sector of its own at once",
    ),
    (
        "Sealing.FinalizeEarly",
        "finalizing runs right after the commit message lands, and each sector's commit is its own message",
    ),
    ("Devnet.BlockDelay", "the chain's shape is the devnet node's now: `lotus-devnet daemon --block-delay`"),
    (
        "Devnet.SeedDelayEpochs",
        "the chain's shape is the devnet node's now: `lotus-devnet daemon --pre-commit-challenge-delay`",
    ),
    (
        "Devnet.WPoStPeriodDeadlines",
        "the chain's shape is the devnet node's now: `lotus-devnet daemon --wpost-period-deadlines`",
    ),
    (
        "Devnet.WPoStChallengeWindow",
        "the chain's shape is the devnet node's now: `lotus-devnet daemon --wpost-challenge-window`",
    ),
    (
        "Devnet.WPoStChallengeLookback",
        "the chain's shape is the devnet node's now: `lotus-devnet daemon --wpost-challenge-lookback`",
    ),
    ("Devnet.WinRate", "the chain's shape is the devnet node's now: `lotus-devnet daemon --win-rate`"),
];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ProvingConfig {
    pub parallel_check_limit: u64,
    /// How long one sector's pre-check may take before it counts as unreadable.
    pub single_check_timeout: String,
    /// How long the pre-checks of one partition may take in all.
    pub partition_check_timeout: String,
    #[serde(rename = "DisableWDPoStPreChecks")]
    pub disable_wd_post_pre_checks: bool,
    #[serde(rename = "DisableBuiltinWindowPoSt")]
    pub disable_builtin_window_post: bool,
    #[serde(rename = "DisableBuiltinWinningPoSt")]
    pub disable_builtin_winning_post: bool,
    pub sealing_nice: i64,
    #[serde(rename = "ReservedCPUs")]
    pub reserved_cpus: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen_address: "/ip4/127.0.0.1/tcp/2345/http".into(),
            remote_listen_address: "127.0.0.1:2345".into(),
            timeout: "30s".into(),
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            parallel_fetch_limit: 10,
            allow_sector_download: true,
            allow_add_piece: true,
            allow_pre_commit1: true,
            allow_pre_commit2: true,
            allow_commit: true,
            allow_unseal: true,
            allow_replica_update: true,
            allow_prove_replica_update2: true,
            allow_regen_sector_key: true,
            local_worker_name: String::new(),
            assigner: "utilization".into(),
            disallow_remote_finalize: false,
            resource_filtering: "hardware".into(),
            worker_lost_timeout: "10m0s".into(),
        }
    }
}

impl Default for SealingConfig {
    fn default() -> Self {
        SealingConfig {
            max_sealing_sectors: 0,
            max_sealing_sectors_for_deals: 0,
            always_keep_unsealed_copy: true,
            min_retry_time: "1m0s".into(),
            batch_pre_commits: true,
            max_pre_commit_batch: 256,
            pre_commit_batch_wait: "24h0m0s".into(),
            pre_commit_batch_slack: "3h0m0s".into(),
            aggregate_commits: true,
            min_commit_batch: 4,
            max_commit_batch: 819,
            commit_batch_wait: "24h0m0s".into(),
            commit_batch_slack: "1h0m0s".into(),
            committed_capacity_sector_lifetime: "12960h0m0s".into(),
            terminate_batch_max: 100,
            terminate_batch_min: 1,
            terminate_batch_wait: "5m0s".into(),
            max_upgrading_sectors: 0,
            prefer_new_sectors_for_deals: false,
            min_upgrade_sector_expiration: 0,
            max_wait_deals_sectors: None,
            wait_deals_delay: None,
            finalize_early: None,
        }
    }
}

impl Default for ProvingConfig {
    fn default() -> Self {
        ProvingConfig {
            parallel_check_limit: 32,
            single_check_timeout: "10m0s".into(),
            partition_check_timeout: "20m0s".into(),
            disable_wd_post_pre_checks: false,
            disable_builtin_window_post: false,
            disable_builtin_winning_post: false,
            sealing_nice: 10,
            reserved_cpus: 0,
        }
    }
}

/// One line of documentation per key, written above it in the generated file.
const DOCS: &[(&str, &str)] = &[
    ("API.ListenAddress", "Binding address of the miner API (multiaddr). Use the IP of a LAN interface (or 0.0.0.0) so that workers can connect."),
    ("API.RemoteListenAddress", "host:port that workers use to reach this miner's /remote sector endpoint. Must be reachable from every worker."),
    ("API.Timeout", "Timeout of the API calls the miner makes to its workers."),
    ("Storage.ParallelFetchLimit", "How many sector fetches may run at once."),
    ("Storage.AllowSectorDownload", "Let the miner's own worker download sector data (DL)."),
    ("Storage.AllowAddPiece", "Let the miner's own worker run AddPiece (and DataCid). Set to false to leave it to workers."),
    ("Storage.AllowPreCommit1", "Let the miner's own worker run PreCommit1."),
    ("Storage.AllowPreCommit2", "Let the miner's own worker run PreCommit2."),
    ("Storage.AllowCommit", "Let the miner's own worker run Commit2."),
    ("Storage.AllowUnseal", "Let the miner's own worker run Unseal."),
    ("Storage.AllowReplicaUpdate", "Let the miner's own worker run ReplicaUpdate."),
    ("Storage.AllowProveReplicaUpdate2", "Let the miner's own worker run ProveReplicaUpdate2."),
    ("Storage.AllowRegenSectorKey", "Let the miner's own worker run RegenSectorKey."),
    ("Storage.LocalWorkerName", "Hostname shown for the miner's own worker; empty means the OS hostname."),
    ("Storage.Assigner", "How tasks are spread over workers: \"utilization\" (least utilised worker) or \"spread\" (fewest tasks)."),
    ("Storage.DisallowRemoteFinalize", "Finalize only on workers that already hold the sector's files."),
    ("Storage.ResourceFiltering", "\"hardware\": the miner's own worker respects its resources; \"disabled\": it ignores them."),
    ("Storage.WorkerLostTimeout", "A worker that does not answer at all for this long is removed and its running tasks run again on other workers (\"0\": wait for it forever). A disabled or draining worker still answers and is never removed."),
    ("Sealing.MaxSealingSectors", "Upper bound on sectors sealing at once (CC pledges included); 0 = unlimited."),
    ("Sealing.MaxSealingSectorsForDeals", "Upper bound on deal sectors sealing at once; 0 = unlimited."),
    ("Sealing.AlwaysKeepUnsealedCopy", "Keep an unsealed copy of every deal sector's data in long-term storage, next to its sealed copy (reading it back then needs no unseal). Committed-capacity sectors keep none."),
    ("Sealing.MinRetryTime", "How long a sector in a failed state waits before it retries."),
    ("Sealing.BatchPreCommits", "Pre-commit sectors in batches (one PreCommitSectorBatch2 message for many); false sends one message per sector."),
    ("Sealing.MaxPreCommitBatch", "Most sectors in one pre-commit batch (1 to 256): a batch this full is sent at once."),
    ("Sealing.PreCommitBatchWait", "Longest time a sector waits in the pre-commit batch before the batch is sent."),
    ("Sealing.PreCommitBatchSlack", "A batch is sent this long before the ticket of any of its sectors would expire."),
    ("Sealing.AggregateCommits", "Prove-commit sectors in batches (one ProveCommitSectors3 message for many, with one aggregate proof from MinCommitBatch sectors on); false sends one message per sector."),
    ("Sealing.MinCommitBatch", "Fewest sectors whose proofs are aggregated (4 to 819); a smaller batch carries one proof per sector."),
    ("Sealing.MaxCommitBatch", "Most sectors in one commit batch (1 to 819): a batch this full is sent at once."),
    ("Sealing.CommitBatchWait", "Longest time a sector waits in the commit batch before the batch is sent."),
    ("Sealing.CommitBatchSlack", "A batch is sent this long before the pre-commit of any of its sectors would expire."),
    ("Sealing.CommittedCapacitySectorLifetime", "How long a committed-capacity sector is committed for (its expiration); 12960h is 540 days."),
    ("Sealing.TerminateBatchMax", "A TerminateSectors message is sent at once when this many sectors wait for termination."),
    ("Sealing.TerminateBatchMin", "The fewest sectors a TerminateSectors message is sent for when TerminateBatchWait has passed."),
    ("Sealing.TerminateBatchWait", "How often the termination queue is checked for a message to send."),
    ("Sealing.MaxUpgradingSectors", "Upper bound on sectors being upgraded (snap deals) at once; 0 = MaxSealingSectorsForDeals."),
    ("Sealing.PreferNewSectorsForDeals", "Put data from `sectors add-piece` into a new sector even when a sector marked with `sectors snap-up` is available."),
    ("Sealing.MinUpgradeSectorExpiration", "Epochs a sector must still have before its expiration to be upgraded with data."),
    ("Chain.MessageConfidence", "Epochs a message must have on top of it before the miner acts on it (Lotus: 5). The chain is the full node named by FULLNODE_API_INFO."),
    ("Devnet.MockProofs", "TESTS ONLY: compute no proofs (mock backend); the devnet then accepts only mock proofs, and only mock-proof workers may join."),
    ("Devnet.MockTaskDurations", "With MockProofs: how long each mock task takes, e.g. \"PC1=2s,C2=30s\" (task types as `sealing jobs` shows them; others take no time)."),
    ("Proving.SealingNice", "Niceness (0-19) of the miner's own sealing proof processes: PoSt on this machine gets the CPU first."),
    ("Proving.ReservedCPUs", "CPU cores the miner's own sealing never uses (its worker reports fewer, its proof processes use fewer threads), kept for PoSt."),
    ("Proving.ParallelCheckLimit", "How many sectors the miner reads at once for a WindowPoSt (each sector's challenged leaves)."),
    ("Proving.SingleCheckTimeout", "How long checking one sector before a WindowPoSt (or a recovery declaration) may take; a slower sector is skipped as faulty."),
    ("Proving.PartitionCheckTimeout", "How long checking all the sectors of one partition may take; those not checked by then are skipped as faulty."),
    ("Proving.DisableWDPoStPreChecks", "Do not check sectors before proving them; an unreadable sector is then found while proving (and still skipped)."),
    ("Proving.DisableBuiltinWindowPoSt", "Never compute WindowPoSt on the miner itself; wait for a PoSt worker."),
    ("Proving.DisableBuiltinWinningPoSt", "Never compute WinningPoSt on the miner itself; fail fast without a PoSt worker."),
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}:{line}: {key}: {why}\nFix that line (the file's commented lines show every key with its default), or delete the file to use the defaults.")]
    Invalid { path: String, line: usize, key: String, why: String },
    #[error("environment variable {var}={value:?} is invalid: {why}")]
    Env { var: String, value: String, why: String },
}

impl MinerConfig {
    /// The commented default file, in Lotus's style: every key present, commented out, but
    /// for the two `[API]` addresses, written with their defaults: the guides tell operators
    /// to edit them, and editing a commented line would change nothing.
    pub fn default_file() -> String {
        MinerConfig::default().render(true, true)
    }

    /// This config as a documented file, in Lotus's style (`config default|updated`): every key
    /// with its documentation and env var; with `comment_defaults`, keys at their default value
    /// are commented out (but the `[API]` addresses with `live_api`).
    pub fn render(&self, comment_defaults: bool, live_api: bool) -> String {
        let value = toml::Value::try_from(self).expect("config serialises");
        let defaults = toml::Value::try_from(MinerConfig::default()).expect("config serialises");
        let mut out = String::new();
        for (section, table) in value.as_table().expect("table") {
            out.push_str(&format!("[{section}]\n"));
            for (key, v) in table.as_table().expect("section table") {
                let full = format!("{section}.{key}");
                if let Some((_, doc)) = DOCS.iter().find(|(k, _)| *k == full) {
                    out.push_str(&format!("  # {doc}\n"));
                }
                out.push_str(&format!("  #\n  # env var: LOTUS_{}_{}\n", section.to_uppercase(), key.to_uppercase()));
                let is_default = defaults.get(section).and_then(|t| t.get(key)) == Some(v);
                let live = live_api && matches!(full.as_str(), "API.ListenAddress" | "API.RemoteListenAddress");
                let comment = comment_defaults && is_default && !live;
                out.push_str(&format!("  {}{key} = {v}\n\n", if comment { "#" } else { "" }));
            }
        }
        out
    }

    /// Load `path` (missing file = defaults), apply `LOTUS_<SECTION>_<KEY>` overrides, check
    /// the values. Returns the config and warnings (unknown keys).
    pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<(MinerConfig, Vec<String>), ConfigError> {
        let shown = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(ConfigError::Read { path: shown, source }),
        };
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let line = e.span().map(|s| line_of(&text, s.start)).unwrap_or(0);
            ConfigError::Invalid { path: shown.clone(), line, key: "(syntax)".into(), why: e.message().to_string() }
        })?;
        apply_env(&mut table, env)?;
        let mut warnings = Vec::new();
        let mut on_unknown = |p: serde_ignored::Path| {
            warnings.push(format!("{shown}: unknown key {p} is ignored; check its spelling against the defaults"))
        };
        let de = serde_ignored::Deserializer::new(toml::Value::Table(table), &mut on_unknown);
        let cfg: MinerConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let last = key.rsplit('.').next().unwrap_or(&key).to_string();
            ConfigError::Invalid {
                line: find_key_line(&text, &last),
                path: shown.clone(),
                key,
                why: e.inner().to_string(),
            }
        })?;
        for (key, why) in NO_EFFECT {
            let (section, name) = key.split_once('.').expect("Section.Key");
            let set = match name {
                "MaxWaitDealsSectors" => cfg.sealing.max_wait_deals_sectors.is_some(),
                "WaitDealsDelay" => cfg.sealing.wait_deals_delay.is_some(),
                "FinalizeEarly" => cfg.sealing.finalize_early.is_some(),
                "BlockDelay" => cfg.devnet.block_delay.is_some(),
                "SeedDelayEpochs" => cfg.devnet.seed_delay_epochs.is_some(),
                "WPoStPeriodDeadlines" => cfg.devnet.wpost_period_deadlines.is_some(),
                "WPoStChallengeWindow" => cfg.devnet.wpost_challenge_window.is_some(),
                "WPoStChallengeLookback" => cfg.devnet.wpost_challenge_lookback.is_some(),
                "WinRate" => cfg.devnet.win_rate.is_some(),
                _ => false,
            };
            if set {
                warnings.push(format!(
                    "{shown}: [{section}] {name} has no effect in this miner: {why}; remove it to silence this"
                ));
            }
        }
        cfg.validate().map_err(|(key, why)| {
            let last = key.rsplit('.').next().unwrap_or(key).to_string();
            ConfigError::Invalid { path: shown.clone(), line: find_key_line(&text, &last), key: key.to_string(), why }
        })?;
        Ok((cfg, warnings))
    }

    fn validate(&self) -> Result<(), (&'static str, String)> {
        lotus_api::apiinfo::listen_addr(&self.api.listen_address).map_err(|e| ("API.ListenAddress", e.to_string()))?;
        lotus_api::apiinfo::parse_addr(&self.api.remote_listen_address)
            .map_err(|e| ("API.RemoteListenAddress", e.to_string()))?;
        parse_duration(&self.api.timeout).map_err(|e| ("API.Timeout", e))?;
        parse_duration(&self.sealing.min_retry_time).map_err(|e| ("Sealing.MinRetryTime", e))?;
        let sl = &self.sealing;
        for (key, v) in [
            ("Sealing.PreCommitBatchWait", &sl.pre_commit_batch_wait),
            ("Sealing.PreCommitBatchSlack", &sl.pre_commit_batch_slack),
            ("Sealing.CommitBatchWait", &sl.commit_batch_wait),
            ("Sealing.CommitBatchSlack", &sl.commit_batch_slack),
            ("Sealing.TerminateBatchWait", &sl.terminate_batch_wait),
            ("Sealing.CommittedCapacitySectorLifetime", &sl.committed_capacity_sector_lifetime),
        ] {
            parse_duration(v).map_err(|e| (key, e))?;
        }
        // The miner actor's bounds (v18): a batch beyond them is a message the chain refuses.
        if !(1..=256).contains(&sl.max_pre_commit_batch) {
            return Err((
                "Sealing.MaxPreCommitBatch",
                format!("{} is not between 1 and 256 (the actor's limit)", sl.max_pre_commit_batch),
            ));
        }
        if !(1..=819).contains(&sl.max_commit_batch) {
            return Err((
                "Sealing.MaxCommitBatch",
                format!("{} is not between 1 and 819 (the actor's limit)", sl.max_commit_batch),
            ));
        }
        if !(4..=819).contains(&sl.min_commit_batch) {
            return Err((
                "Sealing.MinCommitBatch",
                format!(
                    "{} is not between 4 and 819 (the fewest and most sectors an aggregate proof covers)",
                    sl.min_commit_batch
                ),
            ));
        }
        parse_duration(&self.storage.worker_lost_timeout).map_err(|e| ("Storage.WorkerLostTimeout", e))?;
        parse_duration(&self.proving.single_check_timeout).map_err(|e| ("Proving.SingleCheckTimeout", e))?;
        parse_duration(&self.proving.partition_check_timeout).map_err(|e| ("Proving.PartitionCheckTimeout", e))?;
        parse_mock_durations(&self.devnet.mock_task_durations).map_err(|e| ("Devnet.MockTaskDurations", e))?;
        if self.chain.message_confidence > 900 {
            return Err(("Chain.MessageConfidence", "must be at most 900 epochs (a chain finality)".into()));
        }
        if !(0..=19).contains(&self.proving.sealing_nice) {
            return Err((
                "Proving.SealingNice",
                format!("{} is not a niceness between 0 and 19", self.proving.sealing_nice),
            ));
        }
        self.assigner().map_err(|e| ("Storage.Assigner", e))?;
        if !matches!(self.storage.resource_filtering.as_str(), "hardware" | "disabled") {
            return Err((
                "Storage.ResourceFiltering",
                format!("{:?} is not one of \"hardware\", \"disabled\"", self.storage.resource_filtering),
            ));
        }
        if self.storage.parallel_fetch_limit == 0 {
            return Err(("Storage.ParallelFetchLimit", "must be at least 1".into()));
        }
        Ok(())
    }

    pub fn assigner(&self) -> Result<sealing_sched::Assigner, String> {
        self.storage.assigner.parse()
    }

    /// The pre-commit and commit batches' limits (validated at load).
    pub fn batching(&self) -> Result<(BatchLimits, BatchLimits), String> {
        let sl = &self.sealing;
        Ok((
            BatchLimits {
                max: sl.max_pre_commit_batch as usize,
                wait: parse_duration(&sl.pre_commit_batch_wait)?,
                slack: parse_duration(&sl.pre_commit_batch_slack)?,
            },
            BatchLimits {
                max: sl.max_commit_batch as usize,
                wait: parse_duration(&sl.commit_batch_wait)?,
                slack: parse_duration(&sl.commit_batch_slack)?,
            },
        ))
    }

    pub fn api_timeout(&self) -> Duration {
        parse_duration(&self.api.timeout).unwrap_or(Duration::from_secs(30))
    }
}

/// A batch's limits: sent when it holds `max` sectors, when its oldest waited `wait`, or
/// `slack` before a sector's cutoff.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchLimits {
    pub max: usize,
    pub wait: Duration,
    pub slack: Duration,
}

/// `30s`, `6h0m0s`, `500ms` (Go's duration format, as Lotus writes it).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    // humantime wants spaces between units ("6h 0m 0s"); Go writes them together.
    let mut spaced = String::new();
    let mut prev_alpha = false;
    for c in t.chars() {
        if c.is_ascii_digit() && prev_alpha {
            spaced.push(' ');
        }
        prev_alpha = c.is_ascii_alphabetic();
        spaced.push(c);
    }
    humantime::parse_duration(&spaced).map_err(|e| format!("{s:?} is not a duration like \"30s\" or \"6h0m0s\": {e}"))
}

/// `"PC1=2s,C2=30s"`: how long each task type takes under the mock proof backend.
pub fn parse_mock_durations(s: &str) -> Result<sealing_types::MockDurations, String> {
    let mut out = sealing_types::MockDurations::default();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (task, d) =
            part.split_once('=').ok_or_else(|| format!("{part:?} is not TASK=DURATION (for example \"C2=30s\")"))?;
        let task = sealing_types::TaskType::from_short(task.trim())
            .ok_or_else(|| format!("{:?} is not a task type (AP, PC1, PC2, C1, C2, FIN, UNS, ...)", task.trim()))?;
        out.0.insert(task, parse_duration(d)?);
    }
    Ok(out)
}

fn line_of(text: &str, byte: usize) -> usize {
    text[..byte.min(text.len())].matches('\n').count() + 1
}

fn find_key_line(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            !l.starts_with('#') && l.split('=').next().is_some_and(|k| k.trim() == key)
        })
        .map(|i| i + 1)
        .unwrap_or(0)
}

/// Apply `LOTUS_<SECTION>_<KEY>` for every known key, typed like the default value.
fn apply_env(table: &mut toml::Table, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
    let defaults = toml::Value::try_from(MinerConfig::default()).expect("config serialises");
    for (section, keys) in defaults.as_table().expect("table") {
        for (key, default) in keys.as_table().expect("section") {
            let var = format!("LOTUS_{}_{}", section.to_uppercase(), key.to_uppercase());
            let Some(raw) = env(&var) else { continue };
            let bad = |why: &str| ConfigError::Env { var: var.clone(), value: raw.clone(), why: why.to_string() };
            let v = match default {
                toml::Value::Boolean(_) => toml::Value::Boolean(match raw.trim() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(bad("expected true or false")),
                }),
                toml::Value::Integer(_) => {
                    toml::Value::Integer(raw.trim().parse().map_err(|_| bad("expected a whole number"))?)
                }
                _ => toml::Value::String(raw.clone()),
            };
            let sec = table.entry(section.clone()).or_insert_with(|| toml::Value::Table(Default::default()));
            let Some(sec) = sec.as_table_mut() else {
                return Err(bad(&format!("[{section}] in the file is not a table")));
            };
            sec.insert(key.clone(), v);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<(MinerConfig, Vec<String>), ConfigError> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("config.toml");
        std::fs::write(&p, text).unwrap();
        let m: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        MinerConfig::load(&p, &|k| m.get(k).cloned())
    }

    #[test]
    fn default_file_loads_to_defaults_and_mentions_every_key() {
        let text = MinerConfig::default_file();
        let (cfg, warnings) = load(&text, &[]).unwrap();
        assert_eq!(cfg, MinerConfig::default());
        assert!(warnings.is_empty());
        for (k, _) in DOCS {
            let key = k.split('.').nth(1).unwrap();
            assert!(text.contains(&format!("#{key} = ")) || text.contains(&format!("\n  {key} = ")), "{key} missing");
        }
        // The guides say "edit ListenAddress": the two API addresses are live lines.
        assert!(text.contains("\n  ListenAddress = \"/ip4/127.0.0.1/tcp/2345/http\""), "{text}");
        assert!(text.contains("\n  RemoteListenAddress = \"127.0.0.1:2345\""), "{text}");
        assert!(text.contains("  #Timeout = "));
        assert!(text.contains("# env var: LOTUS_STORAGE_ALLOWPRECOMMIT1"));
    }

    /// Our keys against Lotus's default miner config at b835fab7 (extracted by
    /// scripts/lotus-fixtures.py): a key Lotus has keeps Lotus's name and a value of Lotus's
    /// type, so a renamed or retyped key fails here; a key Lotus lacks is listed as ours.
    #[test]
    fn keys_are_lotus_s_with_lotus_s_types_or_listed_as_ours() {
        let fixture: serde_json::Value =
            serde_json::from_str(include_str!("../fixtures/lotus-miner-config.json")).unwrap();
        let lotus = fixture["keys"].as_object().unwrap();
        // Keys of older Lotus releases, gone by b835fab7, which this miner still honours for
        // the configs they wrote; and keys that are ours alone.
        const OURS: &[&str] = &[
            "Sealing.MinRetryTime",
            "Sealing.BatchPreCommits",
            "Sealing.AggregateCommits",
            "Storage.WorkerLostTimeout",
            "Chain.MessageConfidence",
            "Devnet.MockProofs",
            "Devnet.MockTaskDurations",
            "Proving.SealingNice",
            "Proving.ReservedCPUs",
        ];
        let defaults = toml::Value::try_from(MinerConfig::default()).unwrap();
        let mut wrong = vec![];
        for (key, _) in DOCS {
            let (section, name) = key.split_once('.').unwrap();
            let value = &defaults[section][name];
            match lotus.get(*key).and_then(|t| t.as_str()) {
                Some(go) => {
                    let fits = match go {
                        "bool" => value.is_bool(),
                        "int" | "uint64" => value.is_integer(),
                        "string" | "Duration" | "ResourceFilteringStrategy" | "types.FIL" => value.is_str(),
                        "[]string" => value.is_array(),
                        other => panic!("{key}: Go type {other} not mapped"),
                    };
                    if !fits {
                        wrong.push(format!("{key}: Lotus's type is {go}, ours is {value:?}"));
                    }
                    if OURS.contains(key) {
                        wrong.push(format!("{key} is Lotus's, not ours"));
                    }
                }
                None if OURS.contains(key) => {}
                None => wrong.push(format!("{key} is not in Lotus's config: a typo, or list it as ours")),
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    /// Lotus keys with no effect here are not written, and a Lotus config that sets them
    /// loads with a warning naming each and why.
    #[test]
    fn keys_without_effect_are_not_written_and_warned_about() {
        let text = MinerConfig::default_file();
        for key in ["MaxWaitDealsSectors", "WaitDealsDelay", "FinalizeEarly"] {
            assert!(!text.contains(key), "{key} is written but does nothing");
        }
        let lotus = "[Sealing]\n  MaxWaitDealsSectors = 2\n  WaitDealsDelay = \"6h0m0s\"\n  FinalizeEarly = true\n  AlwaysKeepUnsealedCopy = false\n";
        let (cfg, warnings) = load(lotus, &[]).unwrap();
        assert!(!cfg.sealing.always_keep_unsealed_copy);
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[0].contains(
            "[Sealing] MaxWaitDealsSectors has no effect in this miner: there are no sectors waiting for deals"
        ));
        assert!(
            warnings[2].contains("FinalizeEarly has no effect") && warnings[2].contains("remove it"),
            "{warnings:?}"
        );
    }

    #[test]
    fn the_guides_storage_section() {
        let (cfg, _) = load(
            "[Storage]\n  AllowAddPiece = true\n  AllowPreCommit1 = false\n  AllowPreCommit2 = false\n  AllowCommit = false\n  AllowUnseal = true\n",
            &[],
        )
        .unwrap();
        assert!(!cfg.storage.allow_pre_commit1 && !cfg.storage.allow_commit && cfg.storage.allow_add_piece);
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = load(
            "[API]\nListenAddress = \"/ip4/127.0.0.1/tcp/2345/http\"\n[Storage]\nParallelFetchLimit = \"ten\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("config.toml:4: Storage.ParallelFetchLimit"), "{e}");
        let e = load("[Storage]\nAssigner = \"fastest\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains(":2: Storage.Assigner: unknown assigner \"fastest\""), "{e}");
        let e = load("[API\n", &[]).unwrap_err().to_string();
        assert!(e.contains("config.toml:1: (syntax)"), "{e}");
        let e = load("[API]\nListenAddress = \"/ip4/nope/tcp/1\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains(":2: API.ListenAddress"), "{e}");
        let e = load("[API]\nTimeout = \"soon\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("API.Timeout"), "{e}");
    }

    #[test]
    fn unknown_keys_are_warned_about() {
        let (_, w) = load("[Storage]\nAllowPrecommit1 = false\n[Bogus]\nX = 1\n", &[]).unwrap();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("Storage.AllowPrecommit1") || w[1].contains("Storage.AllowPrecommit1"), "{w:?}");
    }

    #[test]
    fn env_overrides() {
        let (cfg, _) = load(
            "[Storage]\nAllowCommit = true\n",
            &[
                ("LOTUS_STORAGE_ALLOWCOMMIT", "false"),
                ("LOTUS_API_LISTENADDRESS", "/ip4/0.0.0.0/tcp/1234/http"),
                ("LOTUS_SEALING_MAXSEALINGSECTORS", "4"),
            ],
        )
        .unwrap();
        assert!(!cfg.storage.allow_commit);
        assert_eq!(cfg.api.listen_address, "/ip4/0.0.0.0/tcp/1234/http");
        assert_eq!(cfg.sealing.max_sealing_sectors, 4);
        let e = load("", &[("LOTUS_STORAGE_ALLOWCOMMIT", "maybe")]).unwrap_err().to_string();
        assert!(e.contains("LOTUS_STORAGE_ALLOWCOMMIT"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("6h0m0s").unwrap(), Duration::from_secs(6 * 3600));
        assert!(parse_duration("x").is_err());
    }

    #[test]
    fn mock_task_durations() {
        use sealing_types::TaskType;
        let d = parse_mock_durations(" PC1=2s, c2=1m0s ,").unwrap();
        assert_eq!(d.of(TaskType::PreCommit1), Duration::from_secs(2));
        assert_eq!(d.of(TaskType::Commit2), Duration::from_secs(60), "task names in any case");
        assert_eq!(d.of(TaskType::AddPiece), Duration::ZERO, "unlisted tasks take no time");
        assert!(parse_mock_durations("").unwrap().0.is_empty());
        let e = load("[Devnet]\nMockTaskDurations = \"PC9=1s\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains(":2: Devnet.MockTaskDurations: \"PC9\" is not a task type"), "{e}");
        assert!(parse_mock_durations("C2").unwrap_err().contains("TASK=DURATION"));
        assert!(parse_mock_durations("C2=soon").is_err());
    }

    /// `config updated`: changed keys are live lines, the rest stay commented; without
    /// comments every key is live. What it prints loads back to the same config.
    #[test]
    fn updated_config_comments_only_the_defaults() {
        let (cfg, _) = load("[Storage]\n  ParallelFetchLimit = 3\n", &[]).unwrap();
        let text = cfg.render(true, false);
        assert!(text.contains("\n  ParallelFetchLimit = 3\n"), "{text}");
        assert!(text.contains("\n  #ListenAddress = "), "{text}");
        assert_eq!(load(&text, &[]).unwrap().0, cfg);
        let all = cfg.render(false, false);
        let commented_key = |l: &str| l.starts_with("  #") && !l.starts_with("  # ") && l != "  #";
        assert!(all.contains("\n  ListenAddress = ") && !all.lines().any(commented_key), "{all}");
        assert_eq!(load(&all, &[]).unwrap().0, cfg);
    }
}
