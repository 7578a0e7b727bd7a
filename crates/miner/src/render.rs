//! What operators read: `lotus-miner sealing workers` and `sealing jobs` (reference §8.1–8.2).
//! Pure functions of API data, so the output is snapshot-tested without a daemon.

use lotus_api::types::{WorkerJob, WorkerStats};
use sealing_types::size::size_str;
use sealing_types::{RegisteredSealProof, TaskType, WorkerId};
use std::collections::BTreeMap;
use std::fmt::Write;

const BAR_COLS: u64 = 64;

struct Paint {
    color: bool,
}

impl Paint {
    fn wrap(&self, code: &str, s: &str) -> String {
        if self.color && !s.is_empty() {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn green(&self, s: &str) -> String {
        self.wrap("32", s)
    }
    fn yellow(&self, s: &str) -> String {
        self.wrap("33", s)
    }
    fn cyan(&self, s: &str) -> String {
        self.wrap("36", s)
    }
    fn magenta(&self, s: &str) -> String {
        self.wrap("35", s)
    }
    fn red(&self, s: &str) -> String {
        self.wrap("31", s)
    }
    fn blue(&self, s: &str) -> String {
        self.wrap("34", s)
    }
}

/// A 64-column bar: yellow `|` for use outside the scheduler, green `|` for scheduled tasks.
fn bar(p: &Paint, total: u64, yellow: u64, green: u64) -> String {
    let cols = |v: u64| if total == 0 { 0 } else { ((v as f64 / total as f64) * BAR_COLS as f64).round() as u64 };
    let y = cols(yellow).min(BAR_COLS);
    let g = cols(green).min(BAR_COLS - y);
    format!(
        "{}{}{}",
        p.yellow(&"|".repeat(y as usize)),
        p.green(&"|".repeat(g as usize)),
        " ".repeat((BAR_COLS - y - g) as usize)
    )
}

/// `lotus-miner sealing workers`.
pub fn sealing_workers(stats: &BTreeMap<WorkerId, WorkerStats>, color: bool) -> String {
    workers(stats, color, false)
}

/// `lotus-miner proving workers`: the PoSt workers, in the same layout.
pub fn post_workers(stats: &BTreeMap<WorkerId, WorkerStats>) -> String {
    workers(stats, false, true)
}

fn workers(stats: &BTreeMap<WorkerId, WorkerStats>, color: bool, post: bool) -> String {
    let p = Paint { color };
    let mut out = String::new();
    for (id, st) in stats {
        // PoSt workers are listed by `proving workers`, sealing workers by `sealing workers`.
        let is_post = st.tasks.first().is_some_and(|t| t.worker_type() != sealing_types::WorkerType::Sealing);
        if is_post != post {
            continue;
        }
        let r = &st.info.resources;
        let disabled = if st.enabled { String::new() } else { p.red(" (disabled)") };
        let mock = if st.info.mock_proofs { p.yellow(" (mock proofs)") } else { String::new() };
        let _ = writeln!(out, "Worker {id}, host {}{disabled}{mock}", p.magenta(&st.info.hostname));

        let mut counts: Vec<(TaskType, RegisteredSealProof, usize)> = st
            .task_counts
            .iter()
            .filter_map(|(k, n)| {
                let (proof, task) = k.split_once(':')?;
                let proof = RegisteredSealProof::from_i64(proof.parse().ok()?)?;
                Some((task.parse().ok()?, proof, *n))
            })
            .filter(|(_, _, n)| *n > 0)
            .collect();
        counts.sort_by_key(|(t, _, _)| (t.order(), t.as_str()));
        if !counts.is_empty() {
            let parts: Vec<String> = counts
                .iter()
                .map(|(t, proof, n)| {
                    let max = r.resources.spec(*proof, *t).max_concurrent;
                    if max > 0 {
                        let c = if (*n as i64) < max { p.green(&n.to_string()) } else { p.yellow(&n.to_string()) };
                        format!("{}({c}/{max})", t.short())
                    } else {
                        format!("{}({})", t.short(), p.cyan(&n.to_string()))
                    }
                })
                .collect();
            let _ = writeln!(out, "\tTASK: {}", parts.join(" "));
        }
        // Beyond the original: which task types the worker accepts, so a misconfigured
        // worker (a missing --precommit2, say) is visible at a glance.
        let shorts: Vec<&str> = st.tasks.iter().map(|t| t.short()).collect();
        let _ = writeln!(out, "\tTYPES: {}", shorts.join(" "));

        let _ = writeln!(out, "\tCPU:  [{}] {}/{} core(s) in use", bar(&p, r.cpus, 0, st.cpu_use), st.cpu_use, r.cpus);
        let ram_y = r.mem_used.saturating_sub(st.mem_used_min);
        let ram_pct = ((st.mem_used_min + ram_y) * 100).checked_div(r.mem_physical).unwrap_or(0);
        let _ = writeln!(
            out,
            "\tRAM:  [{}] {ram_pct}% {}/{}",
            bar(&p, r.mem_physical, ram_y, st.mem_used_min),
            size_str(st.mem_used_min + r.mem_used),
            size_str(r.mem_physical)
        );
        let vmem = r.mem_physical + r.mem_swap;
        let used = r.mem_used + r.mem_swap_used;
        let vmem_y = used.saturating_sub(st.mem_used_max);
        let vmem_pct = ((st.mem_used_max + vmem_y) * 100).checked_div(vmem).unwrap_or(0);
        let _ = writeln!(
            out,
            "\tVMEM: [{}] {vmem_pct}% {}/{}",
            bar(&p, vmem, vmem_y, st.mem_used_max),
            size_str(st.mem_used_max + vmem_y),
            size_str(vmem)
        );
        if !r.gpus.is_empty() {
            let n = r.gpus.len() as u64;
            let _ = writeln!(
                out,
                "\tGPU:  [{}] {:.0}% {:.2}/{} gpu(s) in use",
                bar(&p, n * 1000, 0, (st.gpu_used * 1000.0).round() as u64),
                st.gpu_used * 100.0 / n as f64,
                st.gpu_used,
                n
            );
            // Per card as the scheduler leased them (the worker leases by the same rule); a
            // miner that does not say assumes the fullest cards fill first.
            let busy = st.gpu_used.ceil() as usize;
            for (i, g) in r.gpus.iter().enumerate() {
                let share = st.gpu_cards_used.get(i).copied();
                let used = match share {
                    Some(s) if s > 0.0 => p.green(&format!("used ({s:.2})")),
                    Some(_) => p.blue("not used"),
                    None if i < busy => p.green("used"),
                    None => p.blue("not used"),
                };
                let _ = writeln!(out, "\tGPU: {g}, {used}");
            }
        }
    }
    out
}

/// `lotus-miner sealing jobs`: tab-separated, sorted by state then sector.
pub fn sealing_jobs(jobs: &BTreeMap<WorkerId, Vec<WorkerJob>>, show_ret_done: bool) -> String {
    let mut rows: Vec<(&WorkerId, &WorkerJob)> = jobs
        .iter()
        .flat_map(|(w, js)| js.iter().map(move |j| (w, j)))
        .filter(|(_, j)| show_ret_done || j.run_wait != -3)
        .collect();
    rows.sort_by_key(|(_, j)| (j.run_wait, j.sector.number, j.id.id));
    let mut out = String::from("ID\tSector\tWorker\tHostname\tTask\tState\tTime\n");
    for (w, j) in rows {
        let state = match j.run_wait {
            0 => "running".to_string(),
            1 => "prepared".to_string(),
            -1 => "ret-wait".to_string(),
            -2 => "returned".to_string(),
            -3 => "ret-done".to_string(),
            n => format!("assigned({})", n - 1),
        };
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            &j.id.id.simple().to_string()[..8],
            j.sector.number,
            w.short(),
            j.hostname,
            j.task.short(),
            state,
            elapsed(&j.start)
        );
    }
    out
}

/// Time since an RFC 3339 start, as Go prints a duration truncated to 100 ms; `n/a` if unknown.
fn elapsed(start: &str) -> String {
    let Some(d) =
        humantime::parse_rfc3339(start).ok().and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
    else {
        return "n/a".into();
    };
    let tenths = d.as_millis() / 100;
    let (h, m, s) = (tenths / 36_000, tenths / 600 % 60, tenths % 600);
    let secs = format!("{}.{}s", s / 10, s % 10);
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

/// Lotus's `lib/tablewriter`: a header row and one row per entry, each cell padded to its
/// column's width plus two spaces; a column no row filled is left out (header included).
pub struct Table {
    cols: Vec<&'static str>,
    rows: Vec<BTreeMap<usize, String>>,
}

impl Table {
    pub fn new(cols: &[&'static str]) -> Table {
        Table { cols: cols.to_vec(), rows: vec![] }
    }

    /// One row: (column, value) pairs; a column not named stays empty.
    pub fn row(&mut self, cells: &[(&'static str, String)]) {
        let mut r = BTreeMap::new();
        for (name, v) in cells {
            let i = match self.cols.iter().position(|c| c == name) {
                Some(i) => i,
                None => {
                    self.cols.push(name);
                    self.cols.len() - 1
                }
            };
            r.insert(i, v.clone());
        }
        self.rows.push(r);
    }

    pub fn render(&self) -> String {
        let used: Vec<usize> = (0..self.cols.len()).filter(|i| self.rows.iter().any(|r| r.contains_key(i))).collect();
        let width = |i: usize| {
            let cells = self.rows.iter().filter_map(|r| r.get(&i)).map(|v| v.chars().count());
            cells.chain([self.cols[i].chars().count()]).max().unwrap_or(0)
        };
        let widths: BTreeMap<usize, usize> = used.iter().map(|&i| (i, width(i))).collect();
        let mut out = String::new();
        let line = |out: &mut String, cell: &dyn Fn(usize) -> String| {
            for &i in &used {
                let v = cell(i);
                let pad = widths[&i] - v.chars().count() + 2;
                out.push_str(&v);
                out.push_str(&" ".repeat(pad));
            }
            out.push('\n');
        };
        line(&mut out, &|i| self.cols[i].to_string());
        for r in &self.rows {
            line(&mut out, &|i| r.get(&i).cloned().unwrap_or_default());
        }
        out
    }
}

/// One sector file in a storage path, as `storage list sectors` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorFile {
    pub storage: uuid::Uuid,
    pub sector: u64,
    #[serde(serialize_with = "file_type_name")]
    pub file_type: sealing_types::FileType,
    pub state: String,
    pub faulty: bool,
    /// (primary, copy, main) as Lotus derives them from the holders of the file.
    pub primary: bool,
    pub copies: usize,
    pub seal: bool,
    pub store: bool,
    pub urls: Vec<String>,
}

fn file_type_name<S: serde::Serializer>(t: &sealing_types::FileType, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(t.name())
}

/// `lotus-miner storage list sectors`: every sector file by path, store paths first.
pub fn storage_sectors(mut files: Vec<SectorFile>) -> String {
    if files.is_empty() {
        return String::new();
    }
    files.sort_by(|a, b| {
        (!a.store, a.storage.to_string(), a.sector, a.file_type).cmp(&(
            !b.store,
            b.storage.to_string(),
            b.sector,
            b.file_type,
        ))
    });
    let mut t = Table::new(&["Storage", "Sector", "Type", "State", "Faulty", "Primary", "Path use", "URLs"]);
    for f in files {
        let copy = !f.primary && f.copies > 1;
        let main = !f.primary && f.copies == 1;
        let mut cells = vec![
            ("Storage", f.storage.to_string()),
            ("Sector", f.sector.to_string()),
            ("Type", f.file_type.name().to_string()),
            ("State", f.state),
            (
                "Primary",
                [(f.primary, "primary"), (copy, "copy"), (main, "main")].iter().filter(|x| x.0).map(|x| x.1).collect(),
            ),
            ("Path use", format!("{}{}", if f.seal { "seal " } else { "" }, if f.store { "store" } else { "" })),
            ("URLs", f.urls.join(";")),
        ];
        if f.faulty {
            // Only set on a fault, so the column is hidden when there is none (as Lotus).
            cells.push(("Faulty", "faulty".into()));
        }
        t.row(&cells);
    }
    t.render()
}

/// `lotus-miner log alerts`, as Lotus prints it: `active  ` or `inactive`, `system:subsystem`,
/// then the last resolution and the last raising with their reasons.
pub fn alerts(list: &[lotus_api::contract::miner::Alert]) -> String {
    let reason = |m: &serde_json::Value| match m {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut out = String::new();
    for a in list {
        let state = if a.active { "active  " } else { "inactive" };
        let _ = writeln!(out, "{state} {}:{}", a.kind.system, a.kind.subsystem);
        if let Some(e) = &a.last_resolved {
            let _ = writeln!(out, "         last resolved at {}; reason: {}", e.time, reason(&e.message));
        }
        if let Some(e) = &a.last_active {
            let _ = writeln!(out, "         last raised at {}; reason: {}", e.time, reason(&e.message));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealing_types::resources::default_table;
    use sealing_types::{WorkerInfo, WorkerResources};

    const GIB: u64 = 1 << 30;

    fn stats(gpus: usize) -> WorkerStats {
        WorkerStats {
            info: WorkerInfo {
                hostname: "computer".into(),
                ignore_resources: false,
                mock_proofs: false,
                resources: WorkerResources {
                    mem_physical: (62.7 * GIB as f64) as u64,
                    mem_used: (18.1 * GIB as f64) as u64,
                    mem_swap: 0,
                    mem_swap_used: 0,
                    cpus: 8,
                    gpus: vec!["GeForce RTX 2080".into(); gpus],
                    resources: default_table().clone(),
                },
            },
            tasks: vec![TaskType::Commit1, TaskType::PreCommit1],
            enabled: true,
            mem_used_min: 0,
            mem_used_max: 0,
            gpu_used: 0.0,
            gpu_cards_used: vec![],
            cpu_use: 0,
            task_counts: Default::default(),
        }
    }

    #[test]
    fn matches_the_guide() {
        let mut m = BTreeMap::new();
        m.insert(WorkerId(uuid::Uuid::from_u128(1)), stats(1));
        let out = sealing_workers(&m, false);
        let expected = "Worker 00000000-0000-0000-0000-000000000001, host computer\n\
\tTYPES: C1 PC1\n\
\tCPU:  [                                                                ] 0/8 core(s) in use\n\
\tRAM:  [||||||||||||||||||                                              ] 28% 18.1 GiB/62.7 GiB\n\
\tVMEM: [||||||||||||||||||                                              ] 28% 18.1 GiB/62.7 GiB\n\
\tGPU:  [                                                                ] 0% 0.00/1 gpu(s) in use\n\
\tGPU: GeForce RTX 2080, not used\n";
        assert_eq!(out, expected);
    }

    /// The scheduler's per-card leases: two 0.6 tasks on two cards show both cards in use.
    #[test]
    fn gpu_cards_in_use_as_the_scheduler_leased_them() {
        let mut s = stats(2);
        s.gpu_used = 1.2;
        s.gpu_cards_used = vec![0.6, 0.6];
        let out = sealing_workers(&BTreeMap::from([(WorkerId(uuid::Uuid::from_u128(3)), s)]), false);
        assert!(out.contains("] 60% 1.20/2 gpu(s) in use\n"), "{out}");
        assert_eq!(out.matches("\tGPU: GeForce RTX 2080, used (0.60)\n").count(), 2, "{out}");
    }

    #[test]
    fn task_counts_and_disabled() {
        let mut s = stats(0);
        s.enabled = false;
        s.cpu_use = 4;
        s.mem_used_min = 20 * GIB;
        s.task_counts.insert("8:seal/v0/precommit/1".into(), 2);
        s.task_counts.insert("8:seal/v0/addpiece".into(), 1);
        let mut m = BTreeMap::new();
        m.insert(WorkerId(uuid::Uuid::from_u128(2)), s);
        let out = sealing_workers(&m, false);
        assert!(
            out.starts_with(
                "Worker 00000000-0000-0000-0000-000000000002, host computer (disabled)\n\tTASK: PC1(2) AP(1)\n"
            ),
            "{out}"
        );
        assert!(out.contains("] 4/8 core(s) in use"), "{out}");
        assert!(out.contains(&format!("\tCPU:  [{}{}]", "|".repeat(32), " ".repeat(32))), "{out}");
        assert!(out.contains("] 31% 38.1 GiB/62.7 GiB"), "{out}");
        assert!(!out.contains("GPU"), "no GPU lines without GPUs");
    }

    #[test]
    fn storage_list_sectors_as_lotuss_table() {
        let id = |n: u128| uuid::Uuid::from_u128(n);
        let file = |storage, sector, t: sealing_types::FileType, store: bool, primary: bool| SectorFile {
            storage,
            sector,
            file_type: t,
            state: "Proving".into(),
            faulty: false,
            primary,
            copies: 1,
            seal: !store,
            store,
            urls: vec![format!("http://h:1/remote/{}/s-t01000-{sector}", t.name())],
        };
        use sealing_types::FileType::*;
        let out = storage_sectors(vec![file(id(2), 1, Cache, false, false), file(id(1), 1, Sealed, true, true)]);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("Storage  ") && !lines[0].contains("Faulty"), "no fault, no Faulty column: {out}");
        assert!(lines[1].starts_with(&id(1).to_string()), "store paths first: {out}");
        assert!(
            lines[1].contains("  sealed  ") && lines[1].contains("  primary  ") && lines[1].contains("store  "),
            "{out}"
        );
        assert!(lines[2].contains("  main  ") && lines[2].contains("seal   "), "{out}");
        // Every cell is padded to its column, two spaces between.
        let col = lines[0].find("Sector").unwrap();
        assert_eq!(&lines[1][col..col + 3], "1  ", "{out}");
        let mut faulty = file(id(1), 2, Sealed, true, true);
        faulty.faulty = true;
        assert!(storage_sectors(vec![faulty]).lines().next().unwrap().contains("Faulty"));
    }
}
