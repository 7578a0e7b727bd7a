//! Alerts (`lotus-miner log alerts`, Lotus's `LogAlerts`, and the dashboard): conditions an
//! operator must act on, each raised when it starts and resolved when it ends, with what to
//! do in its message. Lotus raises alerts for a few node problems (a journal that cannot be
//! written, a wallet without funds); the ones that cost a storage provider money are not among
//! them (curio #129, #187 ask for PoSt and missing-sector alerts). Here:
//!
//! - `wdpost:margin`: a WindowPoSt was done with less than a quarter of its deadline left;
//! - `wdpost:missed`: a deadline closed with a partition not proven;
//! - `wdpost:faults`: the last WindowPoSt of a deadline skipped unreadable sectors;
//! - `worker:<host>`: a worker that was connected is gone, or is disabled;
//! - `storage:<path id>`: a storage path has less than 10% of its capacity free;
//! - `sealing:<task type>@<host>`: a task type failed three times in a row on a worker;
//! - `sectors:<state>`: sectors have been in a state three times as long as sectors usually
//!   stay there (and at least ten minutes), by [`StateClock`].
//!
//! Pure: [`Alerts::observe`] takes what the miner looks like now and the time, nothing else.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::SystemTime;

/// A WindowPoSt done with less than this share of its deadline left raises `wdpost:margin`.
pub const MARGIN_SHARE: f64 = 0.25;
/// A path with less than this share of its capacity available raises `storage:<id>`.
pub const FREE_SHARE: f64 = 0.10;
/// Failures in a row of one task type on one worker that raise `sealing:<task>@<host>`.
pub const FAILURES_IN_A_ROW: u32 = 3;
/// A sector in a state this many times longer than the state's usual stay raises `sectors:<state>`.
pub const OVERDUE_FACTOR: f64 = 3.0;
/// ... and never before this long: a phase of seconds taking a minute is not worth a page.
pub const OVERDUE_FLOOR: std::time::Duration = std::time::Duration::from_secs(600);
/// Stays of a state kept to know its usual length (the median of the last ones).
const STAYS_KEPT: usize = 64;
/// Stays needed before a state has a usual length.
const STAYS_NEEDED: usize = 3;

/// What the miner looks like at one moment, for the alert rules.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Connected workers: (ID, hostname, enabled). The miner's own is one of them.
    pub workers: Vec<(String, String, bool)>,
    /// Storage paths: (ID, capacity, available bytes).
    pub paths: Vec<(String, u64, u64)>,
    /// Per deadline, its last WindowPoSt: (deadline, margin, deadline length in seconds,
    /// sectors skipped as faulty, accepted).
    pub deadlines: Vec<(u64, f64, f64, usize, bool)>,
    /// The last deadline missed since a WindowPoSt was last accepted, if any.
    pub missed: Option<u64>,
    /// (task type, worker hostname) → failures in a row (reset by a success).
    pub failing: BTreeMap<(String, String), u32>,
    /// Sectors overdue in their state ([`StateClock::overdue`]).
    pub overdue: Vec<Overdue>,
}

/// Sectors that have been in one state much longer than its usual stay.
#[derive(Clone, Debug, PartialEq)]
pub struct Overdue {
    pub state: String,
    /// Oldest first.
    pub sectors: Vec<u64>,
    pub longest: std::time::Duration,
    pub usual: std::time::Duration,
}

/// How long sectors stay in each state: the sector state machine tells it each state a sector
/// enters, and it keeps the last stays of each state, whose median is the state's usual stay.
/// Pure (the time is passed in); the miner holds one.
#[derive(Default)]
pub struct StateClock {
    entered: std::collections::HashMap<u64, (String, SystemTime)>,
    stays: std::collections::HashMap<String, std::collections::VecDeque<std::time::Duration>>,
}

impl StateClock {
    /// `sector` is in `state` now (again: nothing changes while it stays).
    pub fn enter(&mut self, sector: u64, state: &str, now: SystemTime) {
        if self.entered.get(&sector).is_some_and(|(s, _)| s == state) {
            return;
        }
        self.finish(sector, now);
        self.entered.insert(sector, (state.to_string(), now));
    }

    /// `sector` is done (Proving, removed): its last stay counts, and it is no longer watched.
    pub fn leave(&mut self, sector: u64, now: SystemTime) {
        self.finish(sector, now);
    }

    fn finish(&mut self, sector: u64, now: SystemTime) {
        if let Some((state, since)) = self.entered.remove(&sector) {
            let q = self.stays.entry(state).or_default();
            q.push_back(now.duration_since(since).unwrap_or_default());
            if q.len() > STAYS_KEPT {
                q.pop_front();
            }
        }
    }

    /// The median of the state's last stays, once there are enough.
    pub fn usual(&self, state: &str) -> Option<std::time::Duration> {
        let q = self.stays.get(state).filter(|q| q.len() >= STAYS_NEEDED)?;
        let mut v: Vec<_> = q.iter().copied().collect();
        v.sort();
        Some(v[v.len() / 2])
    }

    /// Per state, the sectors in it for longer than [`OVERDUE_FACTOR`] × its usual stay and
    /// [`OVERDUE_FLOOR`].
    pub fn overdue(&self, now: SystemTime) -> Vec<Overdue> {
        let mut by: BTreeMap<&str, Vec<(std::time::Duration, u64)>> = BTreeMap::new();
        for (sector, (state, since)) in &self.entered {
            let Some(usual) = self.usual(state) else { continue };
            let stayed = now.duration_since(*since).unwrap_or_default();
            if stayed > OVERDUE_FLOOR && stayed.as_secs_f64() > usual.as_secs_f64() * OVERDUE_FACTOR {
                by.entry(state).or_default().push((stayed, *sector));
            }
        }
        by.into_iter()
            .map(|(state, mut v)| {
                v.sort_by(|a, b| b.cmp(a));
                Overdue {
                    state: state.to_string(),
                    longest: v[0].0,
                    sectors: v.iter().map(|(_, n)| *n).collect(),
                    usual: self.usual(state).expect("checked above"),
                }
            })
            .collect()
    }
}

fn minutes(d: std::time::Duration) -> String {
    humantime::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string()
}

/// `alerting.AlertType` / `AlertEvent` / `Alert`, kept in their wire form by the contract;
/// this module holds its own records and converts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub system: String,
    pub subsystem: String,
    pub active: bool,
    pub last_active: Option<Event>,
    pub last_resolved: Option<Event>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub message: String,
    pub time: SystemTime,
}

#[derive(Default)]
pub struct Alerts {
    alerts: BTreeMap<(String, String), Alert>,
    /// Every worker seen connected: ID → hostname (a gone one is "lost").
    seen_workers: BTreeMap<String, String>,
}

impl Alerts {
    /// Apply the rules to `o`: raise what holds and was not active, resolve what was active
    /// and holds no more. Returns the alerts that changed.
    pub fn observe(&mut self, o: &Observed, now: SystemTime) -> Vec<Alert> {
        let mut holding: BTreeMap<(String, String), String> = BTreeMap::new();
        let mut hold = |system: &str, subsystem: &str, message: String| {
            holding.insert((system.to_string(), subsystem.to_string()), message);
        };

        let tight: Vec<String> = o
            .deadlines
            .iter()
            .filter(|(_, margin, length, _, accepted)| *accepted && *margin < length * MARGIN_SHARE)
            .map(|(d, margin, length, _, _)| format!("deadline {d}: {margin:.0} s left of {length:.0} s"))
            .collect();
        if !tight.is_empty() {
            hold(
                "wdpost",
                "margin",
                format!(
                    "WindowPoSt finished close to its deadline's end ({}). Add a PoSt worker (lotus-worker run --windowpost) \
                     or move sealing off the proving machine ([Proving] ReservedCPUs), before a deadline is missed",
                    tight.join("; ")
                ),
            );
        }
        if let Some(d) = o.missed {
            hold(
                "wdpost",
                "missed",
                format!(
                    "deadline {d} closed with a partition not proven: its sectors are faulty and penalised. Check \
                     `lotus-miner proving info` for the error and that a PoSt worker or the miner can read every sector"
                ),
            );
        }
        let faulty: Vec<String> = o
            .deadlines
            .iter()
            .filter(|(_, _, _, n, _)| *n > 0)
            .map(|(d, _, _, n, _)| format!("deadline {d}: {n}"))
            .collect();
        if !faulty.is_empty() {
            hold(
                "wdpost",
                "faults",
                format!(
                    "sectors were skipped as unreadable ({}). Find their files (`lotus-miner storage find`, `proving info`) \
                     and bring the storage path back; they are proven again once readable",
                    faulty.join("; ")
                ),
            );
        }
        for (id, host, enabled) in &o.workers {
            self.seen_workers.insert(id.clone(), host.clone());
            if !enabled {
                hold(
                    "worker",
                    host,
                    format!(
                        "worker {host} is disabled: it takes no tasks. Enable it with `lotus-worker tasks enable` on it, or \
                         check why it stopped (`lotus-miner sealing workers`)"
                    ),
                );
            }
        }
        let present: std::collections::BTreeSet<&String> = o.workers.iter().map(|(id, _, _)| id).collect();
        let lost: Vec<(String, String)> = self
            .seen_workers
            .iter()
            .filter(|(id, _)| !present.contains(id))
            .map(|(id, host)| (id.clone(), host.clone()))
            .collect();
        for (id, host) in lost {
            // A worker that comes back under a new session is the same host: a new ID, and
            // the host's alert resolves when it reports again.
            if o.workers.iter().any(|(_, h, _)| *h == host) {
                self.seen_workers.remove(&id);
                continue;
            }
            hold(
                "worker",
                &host,
                format!(
                    "worker {host} ({}) is gone: the miner lost its connection. Its tasks run elsewhere if another worker \
                     can take them; restart it (`lotus-worker run`) or check the network between it and the miner",
                    &id[..8.min(id.len())]
                ),
            );
        }
        for (id, capacity, available) in &o.paths {
            if *capacity > 0 && (*available as f64) < *capacity as f64 * FREE_SHARE {
                hold(
                    "storage",
                    id,
                    format!(
                        "storage path {id} has {:.1}% free ({available} of {capacity} bytes): new sectors will not fit. Add a \
                         path (`lotus-miner storage attach`), or free space (`lotus-miner storage cleanup`)",
                        *available as f64 * 100.0 / *capacity as f64
                    ),
                );
            }
        }
        for ((task, host), n) in &o.failing {
            if *n >= FAILURES_IN_A_ROW {
                hold(
                    "sealing",
                    &format!("{task}@{host}"),
                    format!(
                        "{task} failed {n} times in a row on {host}. Read the worker's log for the error; \
                         `lotus-miner sealing workers` and `sectors status --log` show which sectors it held"
                    ),
                );
            }
        }

        for o in &o.overdue {
            let shown: Vec<String> = o.sectors.iter().take(5).map(|n| n.to_string()).collect();
            let more = if o.sectors.len() > 5 { format!(" and {} more", o.sectors.len() - 5) } else { String::new() };
            hold(
                "sectors",
                &o.state,
                format!(
                    "sector(s) {}{more} have been in {} for up to {}; sectors usually leave it after {}. \
                     `lotus-miner sectors status --log {}` shows what it waits for, `lotus-miner sealing sched-diag` \
                     why a task does not start",
                    shown.join(", "),
                    o.state,
                    minutes(o.longest),
                    minutes(o.usual),
                    o.sectors[0]
                ),
            );
        }

        let mut changed = vec![];
        for (key, a) in self.alerts.iter_mut() {
            if a.active && !holding.contains_key(key) {
                a.active = false;
                a.last_resolved = Some(Event { message: "the condition no longer holds".into(), time: now });
                changed.push(a.clone());
            }
        }
        for (key, message) in holding {
            let a = self.alerts.entry(key.clone()).or_insert_with(|| Alert {
                system: key.0.clone(),
                subsystem: key.1.clone(),
                active: false,
                last_active: None,
                last_resolved: None,
            });
            // An active alert whose text changed (another deadline, another figure) keeps
            // its time of raising and takes the new message.
            if !a.active {
                a.active = true;
                a.last_active = Some(Event { message, time: now });
                changed.push(a.clone());
            } else if let Some(e) = a.last_active.as_mut() {
                e.message = message;
            }
        }
        changed
    }

    /// Every alert ever raised, active or not, in (system, subsystem) order.
    pub fn list(&self) -> Vec<Alert> {
        self.alerts.values().cloned().collect()
    }
}

/// Lotus's shape (`alerting.Alert`): events typed `raised` and `resolved`, the message a JSON
/// string, the time in RFC 3339.
pub fn to_wire(a: &Alert) -> lotus_api::contract::miner::Alert {
    use lotus_api::contract::miner as c;
    let event = |kind: &str, e: &Event| c::AlertEvent {
        kind: kind.into(),
        message: serde_json::Value::String(e.message.clone()),
        time: humantime::format_rfc3339_millis(e.time).to_string(),
    };
    c::Alert {
        kind: c::AlertType { system: a.system.clone(), subsystem: a.subsystem.clone() },
        active: a.active,
        last_active: a.last_active.as_ref().map(|e| event("raised", e)),
        last_resolved: a.last_resolved.as_ref().map(|e| event("resolved", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    fn active(a: &Alerts) -> Vec<String> {
        a.list().iter().filter(|x| x.active).map(|x| format!("{}:{}", x.system, x.subsystem)).collect()
    }

    #[test]
    fn each_rule_raises_and_resolves() {
        let mut a = Alerts::default();
        let mut o = Observed {
            workers: vec![("aaaaaaaa-1".into(), "host-a".into(), true), ("bbbbbbbb-2".into(), "host-b".into(), true)],
            paths: vec![("p1".into(), 1000, 500)],
            deadlines: vec![(0, 100.0, 120.0, 0, true)],
            ..Default::default()
        };
        assert!(a.observe(&o, at(1)).is_empty(), "a healthy miner raises nothing");

        // host-b goes, host-a is disabled, the path fills, a proof is late, one is faulty,
        // a deadline is missed, and C2 keeps failing.
        o.workers = vec![("aaaaaaaa-1".into(), "host-a".into(), false)];
        o.paths[0].2 = 50;
        o.deadlines = vec![(0, 10.0, 120.0, 0, true), (1, 100.0, 120.0, 2, true)];
        o.missed = Some(3);
        o.failing.insert(("seal/v0/commit/2".into(), "host-a".into()), 3);
        let raised = a.observe(&o, at(2));
        assert_eq!(raised.len(), 7, "{raised:#?}");
        assert_eq!(
            active(&a),
            [
                "sealing:seal/v0/commit/2@host-a",
                "storage:p1",
                "wdpost:faults",
                "wdpost:margin",
                "wdpost:missed",
                "worker:host-a",
                "worker:host-b"
            ]
        );
        let lost = a.list().into_iter().find(|x| x.subsystem == "host-b").unwrap();
        let msg = &lost.last_active.as_ref().unwrap().message;
        assert!(msg.contains("host-b (bbbbbbbb) is gone") && msg.contains("lotus-worker run"), "{msg}");
        assert_eq!(lost.last_active.unwrap().time, at(2));
        assert!(a.observe(&o, at(3)).is_empty(), "nothing new: no change");

        // Everything recovers: host-b is back under a new session.
        o.workers = vec![("aaaaaaaa-1".into(), "host-a".into(), true), ("cccccccc-3".into(), "host-b".into(), true)];
        o.paths[0].2 = 500;
        o.deadlines = vec![(0, 100.0, 120.0, 0, true)];
        o.missed = None;
        o.failing.clear();
        let resolved = a.observe(&o, at(4));
        assert_eq!(resolved.len(), 7);
        assert!(active(&a).is_empty(), "{:?}", active(&a));
        assert!(a.list().iter().all(|x| x.last_resolved.as_ref().is_some_and(|e| e.time == at(4))));
        assert_eq!(a.list().len(), 7, "resolved alerts stay listed (log alerts --all)");
    }

    #[test]
    fn a_sector_far_longer_in_a_state_than_usual_is_overdue() {
        let mut c = StateClock::default();
        // Three sectors each spend 5 minutes in PreCommit1, then go on.
        for n in 1..=3 {
            c.enter(n, "PreCommit1", at(0));
            c.enter(n, "PreCommit1", at(100)); // still there: nothing changes
            c.enter(n, "PreCommit2", at(300));
            c.leave(n, at(310));
        }
        assert_eq!(c.usual("PreCommit1"), Some(Duration::from_secs(300)));
        assert_eq!(c.usual("PreCommit2"), Some(Duration::from_secs(10)));
        c.enter(4, "PreCommit1", at(1000));
        c.enter(5, "PreCommit1", at(1500));
        c.enter(6, "PreCommit2", at(1000)); // 10 s usual, but under the 10-minute floor until 1,600
        c.enter(7, "WaitSeed", at(0)); // no usual stay known: never overdue
        assert!(c.overdue(at(1500)).is_empty(), "4 and 6 stayed 500 s: under 3 × 300 s, under the floor");
        let o = c.overdue(at(2000));
        assert_eq!(o.len(), 2, "{o:?}");
        assert_eq!((o[0].state.as_str(), o[0].sectors.as_slice()), ("PreCommit1", &[4][..]));
        assert_eq!((o[1].state.as_str(), o[1].sectors.as_slice()), ("PreCommit2", &[6][..]));
        let o = c.overdue(at(2500));
        assert_eq!(o[0].sectors, [4, 5], "oldest first");
        assert_eq!(o[0].longest, Duration::from_secs(1500));

        let mut a = Alerts::default();
        a.observe(&Observed { overdue: o, ..Default::default() }, at(2500));
        let msg = a.list().into_iter().find(|x| x.subsystem == "PreCommit1").unwrap().last_active.unwrap().message;
        assert!(
            msg.contains("sector(s) 4, 5 have been in PreCommit1 for up to 25m") && msg.contains("after 5m"),
            "{msg}"
        );
        c.leave(4, at(2600));
        c.enter(5, "PreCommit2", at(2600));
        assert!(c.overdue(at(2600)).iter().all(|o| o.state != "PreCommit1"));
    }

    #[test]
    fn thresholds_are_strict() {
        let mut a = Alerts::default();
        let o = Observed {
            paths: vec![("p".into(), 1000, 100)],
            deadlines: vec![(0, 30.0, 120.0, 0, true), (1, 1.0, 120.0, 0, false)],
            failing: [(("seal/v0/precommit/1".to_string(), "h".to_string()), 2)].into(),
            ..Default::default()
        };
        a.observe(&o, at(1));
        assert!(active(&a).is_empty(), "10% free, a quarter left, two failures: not yet; {:?}", active(&a));
    }
}
