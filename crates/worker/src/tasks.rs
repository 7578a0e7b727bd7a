//! Which task types a worker accepts, from its flags (reference §7.2).

use sealing_types::TaskType;
use std::collections::BTreeSet;

/// The task flags of `lotus-worker run`; `None` = not given on the command line or in the env.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskFlags {
    pub addpiece: Option<bool>,
    pub datacid: Option<bool>,
    pub precommit1: Option<bool>,
    pub unseal: Option<bool>,
    pub precommit2: Option<bool>,
    pub commit: Option<bool>,
    pub replica_update: Option<bool>,
    pub prove_replica_update2: Option<bool>,
    pub regen_sector_key: Option<bool>,
    pub sector_download: Option<bool>,
    pub windowpost: Option<bool>,
    pub winningpost: Option<bool>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TaskFlagError {
    #[error("--windowpost and --winningpost cannot be combined: run one PoSt worker of each kind")]
    BothPoSt,
    #[error("--{post} cannot be combined with sealing task flags ({flags}): a PoSt worker only proves; run a separate sealing worker")]
    Mixed { post: &'static str, flags: String },
    #[error("no task types enabled: with --no-default, enable at least one task, e.g. --precommit1")]
    Empty,
}

/// The task set. Sealing workers always get the base set (GET, C1, PR1, FIN, FUS, FRU) plus
/// each enabled flag; with `no_default` only flags explicitly set to true count. PoSt workers
/// get only their PoSt task.
pub fn task_types(f: &TaskFlags, no_default: bool) -> Result<BTreeSet<TaskType>, TaskFlagError> {
    use TaskType::*;
    let on = |v: Option<bool>, default: bool| if no_default { v == Some(true) } else { v.unwrap_or(default) };
    let wdpost = f.windowpost == Some(true);
    let winpost = f.winningpost == Some(true);
    if wdpost && winpost {
        return Err(TaskFlagError::BothPoSt);
    }
    if wdpost || winpost {
        let explicit: Vec<&str> = [
            ("addpiece", f.addpiece),
            ("precommit1", f.precommit1),
            ("unseal", f.unseal),
            ("precommit2", f.precommit2),
            ("commit", f.commit),
            ("replica-update", f.replica_update),
            ("prove-replica-update2", f.prove_replica_update2),
            ("regen-sector-key", f.regen_sector_key),
            ("sector-download", f.sector_download),
        ]
        .into_iter()
        .filter(|(_, v)| *v == Some(true))
        .map(|(n, _)| n)
        .collect();
        let post = if wdpost { "windowpost" } else { "winningpost" };
        if !explicit.is_empty() {
            return Err(TaskFlagError::Mixed {
                post,
                flags: explicit.iter().map(|n| format!("--{n}")).collect::<Vec<_>>().join(", "),
            });
        }
        return Ok([if wdpost { GenerateWindowPoSt } else { GenerateWinningPoSt }].into());
    }
    let mut t: BTreeSet<TaskType> =
        [Fetch, Commit1, ProveReplicaUpdate1, Finalize, FinalizeUnsealed, FinalizeReplicaUpdate].into();
    let addpiece = on(f.addpiece, true);
    for (enabled, task) in [
        (addpiece, AddPiece),
        // DataCid follows --addpiece unless given itself.
        (if f.datacid.is_some() { on(f.datacid, true) } else { addpiece }, DataCid),
        (on(f.precommit1, true), PreCommit1),
        (on(f.unseal, true), Unseal),
        (on(f.precommit2, true), PreCommit2),
        (on(f.commit, true), Commit2),
        (on(f.replica_update, true), ReplicaUpdate),
        (on(f.prove_replica_update2, true), ProveReplicaUpdate2),
        (on(f.regen_sector_key, true), RegenSectorKey),
        (on(f.sector_download, false), DownloadSector),
    ] {
        if enabled {
            t.insert(task);
        }
    }
    if no_default && t.len() == 6 {
        return Err(TaskFlagError::Empty);
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskType::*;

    fn shorts(t: &BTreeSet<TaskType>) -> Vec<&'static str> {
        let mut v: Vec<TaskType> = t.iter().copied().collect();
        TaskType::sort_by_order(&mut v);
        v.iter().map(|t| t.short()).collect()
    }

    #[test]
    fn the_guides_pc1_worker() {
        let f = TaskFlags {
            addpiece: Some(false),
            precommit1: Some(true),
            unseal: Some(true),
            precommit2: Some(false),
            commit: Some(false),
            ..Default::default()
        };
        let t = task_types(&f, false).unwrap();
        assert!(t.contains(&PreCommit1) && t.contains(&Unseal));
        assert!(!t.contains(&AddPiece) && !t.contains(&DataCid) && !t.contains(&PreCommit2) && !t.contains(&Commit2));
        assert!(t.contains(&Fetch) && t.contains(&Commit1) && t.contains(&Finalize), "base set always there");
    }

    #[test]
    fn defaults_and_no_default() {
        let all = task_types(&TaskFlags::default(), false).unwrap();
        assert_eq!(
            shorts(&all),
            ["FUS", "FIN", "GET", "FRU", "UNS", "C1", "C2", "PC2", "PC1", "PR1", "PR2", "RU", "AP", "DC", "GSK"]
        );
        let f = TaskFlags { precommit2: Some(true), commit: Some(true), ..Default::default() };
        let t = task_types(&f, true).unwrap();
        assert_eq!(shorts(&t), ["FUS", "FIN", "GET", "FRU", "C1", "C2", "PC2", "PR1"]);
        assert_eq!(task_types(&TaskFlags::default(), true), Err(TaskFlagError::Empty));
    }

    #[test]
    fn post_workers() {
        let f = TaskFlags { windowpost: Some(true), ..Default::default() };
        assert_eq!(task_types(&f, false).unwrap(), [GenerateWindowPoSt].into());
        let f = TaskFlags { windowpost: Some(true), precommit1: Some(true), ..Default::default() };
        let e = task_types(&f, false).unwrap_err();
        assert!(
            e.to_string().contains("--windowpost cannot be combined with sealing task flags (--precommit1)"),
            "{e}"
        );
        let f = TaskFlags { windowpost: Some(true), winningpost: Some(true), ..Default::default() };
        assert_eq!(task_types(&f, false), Err(TaskFlagError::BothPoSt));
    }
}
