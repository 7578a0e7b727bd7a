//! The manager's races, in process, with fake workers behind [`WorkerLink`]: no processes, no
//! network, no proof work. Each fake records the calls it was given and answers only when the
//! test says so (through `on_return`, as a worker's `Return*` arrives), so every ordering that
//! real timing makes rare is made here on purpose.

use super::*;
use crate::calls::{CallStore, Tracked};
use crate::jobs::EARLY_PER_SECTOR;
use sealing_sched::{Assigner, Config};
use sealing_types::RegisteredSealProof;
use serde_json::json;

/// What a fake worker does when a call starts.
#[derive(Clone, Copy, PartialEq)]
enum Answer {
    /// Nothing: the test answers later.
    Later,
    /// Its `Return*` arrives before the start's reply does (a fast task), after `flood`
    /// results for calls nobody knows, of other sectors and of the same one.
    BeforeTheStartReturns { flood: usize },
}

struct FakeWorker {
    name: String,
    manager: Weak<Manager>,
    answer: Mutex<Answer>,
    started: Mutex<Vec<(CallId, TaskCall)>>,
    aborted: Mutex<Vec<CallId>>,
    /// Calls it says it runs (`Calls`) besides the ones started on it: a worker that kept
    /// running across a miner restart.
    running_before: Mutex<Vec<CallId>>,
    /// Cut off: `Calls` and `AbortCall` do not get through.
    unreachable: std::sync::atomic::AtomicBool,
}

impl FakeWorker {
    fn started(&self) -> Vec<(CallId, TaskCall)> {
        self.started.lock().unwrap().clone()
    }

    /// The call of this method for this sector, once started.
    fn call_of(&self, method: &str, sector: u64) -> Option<CallId> {
        self.started().into_iter().find(|(id, c)| c.method() == method && id.sector.number == sector).map(|(id, _)| id)
    }
}

impl FakeWorker {
    fn cut_off(&self) -> Option<LinkError> {
        self.unreachable
            .load(std::sync::atomic::Ordering::Relaxed)
            .then(|| LinkError::Unreachable { worker: self.name.clone(), why: "connection timed out".into() })
    }
}

impl WorkerLink for FakeWorker {
    fn start(&self, call: TaskCall) -> BoxFuture<'_, Result<CallId, CallError>> {
        let id = CallId { sector: call.sector().id, id: Uuid::new_v4() };
        self.started.lock().unwrap().push((id, call));
        if let Answer::BeforeTheStartReturns { flood } = *self.answer.lock().unwrap() {
            let m = self.manager.upgrade().expect("manager");
            m.on_return(id, Ok(json!(self.name)));
            for i in 0..flood {
                let sector =
                    SectorId { miner: 1000, number: if i % 2 == 0 { id.sector.number } else { 10_000 + i as u64 } };
                m.on_return(CallId { sector, id: Uuid::new_v4() }, Ok(json!("garbage")));
            }
        }
        Box::pin(async move { Ok(id) })
    }
    fn abort(&self, call: CallId) -> BoxFuture<'_, Result<bool, LinkError>> {
        if let Some(e) = self.cut_off() {
            return Box::pin(async move { Err(e) });
        }
        self.aborted.lock().unwrap().push(call);
        let ran = self.started().iter().any(|(id, _)| *id == call);
        Box::pin(async move { Ok(ran) })
    }
    fn calls(&self) -> BoxFuture<'_, Result<Vec<CallId>, LinkError>> {
        if let Some(e) = self.cut_off() {
            return Box::pin(async move { Err(e) });
        }
        let mut calls: Vec<CallId> = self.started().into_iter().map(|(id, _)| id).collect();
        calls.extend(self.running_before.lock().unwrap().iter().copied());
        Box::pin(async move { Ok(calls) })
    }
}

/// A manager whose own worker takes no task type, so only the fakes seal.
fn manager() -> Arc<Manager> {
    manager_tracking(None)
}

fn manager_tracking(calls: Option<Arc<CallStore>>) -> Arc<Manager> {
    let sched = Scheduler::new(Config { assigner: Assigner::Utilization });
    let timings = Timings { tracked_call_grace: Duration::from_secs(60), ..Default::default() };
    Manager::without_executor(sched, BTreeSet::new(), calls, timings)
}

fn wid(n: u128) -> WorkerId {
    WorkerId(Uuid::from_u128(n))
}

/// A [`manager`] tracking its calls in `<dir>/sealing.db`, as the daemon does.
fn manager_with_store(dir: &std::path::Path) -> Arc<Manager> {
    manager_tracking(Some(Arc::new(CallStore::open(&dir.join("sealing.db")).unwrap())))
}

/// A one-core AddPiece worker: one 2KiB AddPiece (and its fetch) at a time.
fn add_worker(m: &Arc<Manager>, n: u128, name: &str) -> Arc<FakeWorker> {
    let fake = Arc::new(FakeWorker {
        name: name.into(),
        manager: Arc::downgrade(m),
        answer: Mutex::new(Answer::Later),
        started: Mutex::new(vec![]),
        aborted: Mutex::new(vec![]),
        running_before: Mutex::new(vec![]),
        unreachable: Default::default(),
    });
    let info = crate::jobs::tests::one_core_worker(name);
    let types = [TaskType::AddPiece, TaskType::Fetch].into();
    m.register_link(wid(n), info, types, format!("http://{name}"), fake.clone());
    fake
}

fn sector(n: u64) -> SectorRef {
    SectorRef { id: SectorId { miner: 1000, number: n }, proof_type: RegisteredSealProof::STACKED_DRG_2KIB_V1_1 }
}

/// An AddPiece of sector `n`, with a Fetch first when `fetch`.
fn task(n: u64, fetch: bool) -> TaskSpec {
    TaskSpec {
        sector: sector(n),
        task: TaskType::AddPiece,
        priority: 0,
        selector: Selector::Task,
        prepare: fetch.then(|| {
            TaskCall::Fetch((sector(n), FileTypes::default(), PathType::Sealing, lotus_api::wire::AcquireMode::Move))
        }),
        work: TaskCall::AddPiece((sector(n), vec![], 2032, lotus_api::wire::Data::Null(2032))),
    }
}

fn run(m: &Arc<Manager>, t: TaskSpec) -> JoinHandle<Result<Ran, CallError>> {
    let m = m.clone();
    tokio::spawn(async move { m.run_task(t).await })
}

/// Let the spawned tasks run until `cond` holds (the runtime has one thread: this only
/// yields to them; a test that waits for ever is a bug, so give up after 2 s).
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(2), "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A task waiting in a window of a worker that stops answering goes back to the queue and
/// runs on another worker; the disabled worker never gets it.
#[tokio::test(flavor = "current_thread")]
async fn a_task_waiting_on_a_disabled_worker_is_requeued_and_runs_elsewhere() {
    let m = manager();
    let a = add_worker(&m, 1, "a");
    let first = run(&m, task(1, true));
    let second = run(&m, task(2, true));
    until("sector 1's fetch to start on a", || a.call_of("Fetch", 1).is_some()).await;
    // Sector 2 waits in a's second window: a's one core is held by sector 1's fetch.
    m.set_enabled(wid(1), false);
    let b = add_worker(&m, 2, "b");
    until("sector 2's fetch to start on b", || b.call_of("Fetch", 2).is_some()).await;
    m.on_return(b.call_of("Fetch", 2).unwrap(), Ok(json!(null)));
    until("sector 2's AddPiece to start on b", || b.call_of("AddPiece", 2).is_some()).await;
    m.on_return(b.call_of("AddPiece", 2).unwrap(), Ok(json!("from b")));
    let ran = second.await.unwrap().unwrap();
    assert_eq!((ran.value, ran.host.as_str()), (json!("from b"), "b"));
    assert!(a.started().iter().all(|(id, _)| id.sector.number == 1), "a never got sector 2: {:?}", a.started());

    // The disabled worker answers again and finishes what it had.
    m.set_enabled(wid(1), true);
    m.on_return(a.call_of("Fetch", 1).unwrap(), Ok(json!(null)));
    until("sector 1's AddPiece to start on a", || a.call_of("AddPiece", 1).is_some()).await;
    m.on_return(a.call_of("AddPiece", 1).unwrap(), Ok(json!("from a")));
    assert_eq!(first.await.unwrap().unwrap().host, "a");
}

/// A worker removed while it runs a task: the task runs again elsewhere, and the old worker's
/// late answer is neither taken for the result nor kept in memory.
#[tokio::test(flavor = "current_thread")]
async fn a_late_answer_from_a_worker_that_lost_the_task_is_ignored() {
    let m = manager();
    let a = add_worker(&m, 1, "a");
    let t = run(&m, task(1, false));
    until("the AddPiece to start on a", || a.call_of("AddPiece", 1).is_some()).await;
    let old = a.call_of("AddPiece", 1).unwrap();
    m.remove(wid(1), "lost in a test");
    let b = add_worker(&m, 2, "b");
    until("the AddPiece to start again on b", || b.call_of("AddPiece", 1).is_some()).await;
    m.on_return(old, Ok(json!("stale")));
    assert_eq!(m.lock().jobs.early_len(), 0, "a late answer is not kept");
    assert!(!t.is_finished(), "the late answer did not complete the request");
    m.on_return(b.call_of("AddPiece", 1).unwrap(), Ok(json!("fresh")));
    let ran = t.await.unwrap().unwrap();
    assert_eq!((ran.value, ran.host.as_str()), (json!("fresh"), "b"));
}

/// A fast task's `Return*` arrives before the reply to its start: the result waits and the
/// request completes with it.
#[tokio::test(flavor = "current_thread")]
async fn a_result_that_arrives_before_its_call_is_tracked_completes_the_request() {
    let m = manager();
    let a = add_worker(&m, 1, "a");
    *a.answer.lock().unwrap() = Answer::BeforeTheStartReturns { flood: 0 };
    let ran = run(&m, task(1, false)).await.unwrap().unwrap();
    assert_eq!((ran.value, ran.host.as_str()), (json!("a"), "a"));
    assert_eq!(a.started().len(), 1);
    assert_eq!(m.lock().jobs.early_len(), 0, "nothing left behind");
}

/// Early results are kept only for sectors with a start in flight, a few per sector: a flood
/// of unknown answers leaves nothing in memory, one during a start keeps at most
/// `EARLY_PER_SECTOR` (and nothing once the start returns; the bound itself is a test of
/// `jobs.rs`), and the live result among them
/// still completes its request.
#[tokio::test(flavor = "current_thread")]
async fn early_results_nobody_claims_are_bounded_and_the_live_one_is_kept() {
    let m = manager();
    for i in 0..20_000u64 {
        m.on_return(CallId { sector: sector(i).id, id: Uuid::new_v4() }, Ok(json!("garbage")));
    }
    assert_eq!(m.lock().jobs.early_len(), 0, "no start in flight: no result can be early");

    let a = add_worker(&m, 1, "a");
    *a.answer.lock().unwrap() = Answer::BeforeTheStartReturns { flood: EARLY_PER_SECTOR - 2 };
    let ran = run(&m, task(1, false)).await.unwrap().unwrap();
    assert_eq!(ran.value, json!("a"), "the live result survived the flood");
    assert_eq!(m.lock().jobs.early_len(), 0, "the sector's leftovers went when its start returned");
}

/// A miner restart while a worker computes: the new miner finds the call in its store, waits
/// for the same worker's result instead of starting the work again, and takes it.
#[tokio::test(flavor = "current_thread")]
async fn a_call_running_across_a_miner_restart_is_waited_for_not_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let before = manager_with_store(dir.path());
    let a = add_worker(&before, 1, "a");
    let t = run(&before, task(1, false));
    until("the AddPiece to start on a", || a.call_of("AddPiece", 1).is_some()).await;
    let call = a.call_of("AddPiece", 1).unwrap();
    let work = crate::calls::work_id(TaskType::AddPiece, &task(1, false).work.to_rpc().1);
    assert_eq!(before.call_store().unwrap().get(&work), Some(Tracked::Running(call)));
    t.abort(); // the miner process dies (after its tracker wrote)
    before.call_store().unwrap().close();

    let after = manager_with_store(dir.path());
    let a_again = add_worker(&after, 1, "a");
    a_again.running_before.lock().unwrap().push(call);
    let t = run(&after, task(1, false));
    until("the new miner to wait for the tracked call", || after.lock().jobs.job_of_call(call).is_some()).await;
    after.on_return(call, Ok(json!("computed once")));
    let ran = t.await.unwrap().unwrap();
    assert_eq!((ran.value, ran.host.as_str()), (json!("computed once"), "a"));
    assert!(a_again.started().is_empty(), "nothing started again: {:?}", a_again.started());
}

/// `sealing abort` of a task still fetching its files: the fetch is stopped on the worker, the
/// request fails with the operator's reason, and the scheduler holds nothing of it.
#[tokio::test(flavor = "current_thread")]
async fn an_abort_while_the_task_prepares_stops_the_fetch_and_fails_the_request() {
    let m = manager();
    let a = add_worker(&m, 1, "a");
    let t = run(&m, task(1, true));
    until("the fetch to start", || a.call_of("Fetch", 1).is_some()).await;
    let fetch = a.call_of("Fetch", 1).unwrap();
    m.abort_call(fetch).await;
    let e = t.await.unwrap().unwrap_err();
    assert!(e.message.contains("preparing (fetch): aborted by the operator (its computation was stopped)"), "{e:?}");
    assert_eq!(*a.aborted.lock().unwrap(), vec![fetch]);
    assert!(a.call_of("AddPiece", 1).is_none(), "the work never started");
    until("the scheduler to let the request go", || m.lock().jobs.sched.tasks().count() == 0).await;
    // Aborting it again (an unknown call, for the manager) records an aborted result, as
    // Lotus does, and harms nothing.
    m.abort_call(fetch).await;
    assert_eq!(m.lock().jobs.sched.tasks().count(), 0);
}

/// An aborted call is over for the work tracker too: the sector's retry of the same work
/// starts it again at once (it used to wait a minute for the aborted call as one still
/// running, `TRACKED_CALL_GRACE`).
#[tokio::test(flavor = "current_thread")]
async fn a_retry_after_an_abort_starts_the_work_again_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let m = manager_with_store(dir.path());
    let a = add_worker(&m, 1, "a");
    let t = run(&m, task(1, false));
    until("the AddPiece to start", || a.call_of("AddPiece", 1).is_some()).await;
    let first = a.call_of("AddPiece", 1).unwrap();
    m.abort_call(first).await;
    assert!(t.await.unwrap().unwrap_err().message.contains("aborted by the operator"));
    let retry = run(&m, task(1, false));
    until("the retry to start a new call", || a.started().len() == 2).await;
    let second = a.started()[1].0;
    assert_ne!(second, first);
    m.on_return(second, Ok(json!("again")));
    assert_eq!(retry.await.unwrap().unwrap().value, json!("again"));
}

/// A miner tracking its calls in `dir` starts sector 1's AddPiece on a worker and stops (its
/// request dropped, the tracker closed) while the call runs: the call a miner started next on
/// `dir` finds tracked.
async fn a_call_lost_in_a_restart(dir: &std::path::Path) -> CallId {
    let before = manager_with_store(dir);
    let a = add_worker(&before, 1, "a");
    let t = run(&before, task(1, false));
    until("the AddPiece to start on a", || a.call_of("AddPiece", 1).is_some()).await;
    t.abort();
    before.call_store().unwrap().close();
    a.call_of("AddPiece", 1).unwrap()
}

/// A call tracked before a restart that no connected worker has any more: the new miner waits
/// out the grace (`Timings::tracked_call_grace`, a minute, here on paused time), then
/// schedules the work again, and the tracker forgets the old call.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_tracked_call_nobody_has_is_scheduled_again_after_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let lost = a_call_lost_in_a_restart(dir.path()).await;
    let after = manager_with_store(dir.path());
    let b = add_worker(&after, 2, "b"); // a never comes back
    let t = run(&after, task(1, false));
    until("the new miner to wait for the tracked call", || after.lock().jobs.job_of_call(lost).is_some()).await;
    tokio::time::sleep(Duration::from_secs(55)).await;
    assert!(b.started().is_empty(), "within the grace nothing is started again");
    tokio::time::sleep(Duration::from_secs(15)).await;
    until("the work to start again on b", || b.call_of("AddPiece", 1).is_some()).await;
    let work = crate::calls::work_id(TaskType::AddPiece, &task(1, false).work.to_rpc().1);
    let new = b.call_of("AddPiece", 1).unwrap();
    until("the tracker to follow the new call", || {
        after.call_store().unwrap().get(&work) == Some(Tracked::Running(new))
    })
    .await;
    after.on_return(new, Ok(json!("again")));
    assert_eq!(t.await.unwrap().unwrap().host, "b");
}

/// A tracked call whose worker is connected but cannot be reached is not scheduled again,
/// however long that lasts: what it runs is unknown, not gone (a duplicated Commit2 costs an
/// hour on a GPU). Once the worker answers without the call, the grace runs and the work is
/// scheduled anew.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_tracked_call_on_a_worker_that_cannot_be_reached_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let lost = a_call_lost_in_a_restart(dir.path()).await;
    let after = manager_with_store(dir.path());
    let a2 = add_worker(&after, 1, "a");
    a2.unreachable.store(true, std::sync::atomic::Ordering::Relaxed);
    let b = add_worker(&after, 2, "b");
    let t = run(&after, task(1, false));
    until("the new miner to wait for the tracked call", || after.lock().jobs.job_of_call(lost).is_some()).await;
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert!(b.started().is_empty() && a2.started().is_empty(), "nothing started again while a cannot be reached");
    // a answers: it no longer has the call (it lost it in a restart of its own).
    a2.unreachable.store(false, std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(50)).await;
    assert!(b.started().is_empty() && a2.started().is_empty(), "the grace runs from a's answer");
    let again = || b.call_of("AddPiece", 1).or(a2.call_of("AddPiece", 1));
    until("the work to start again", || again().is_some()).await;
    after.on_return(again().unwrap(), Ok(json!("again")));
    assert!(t.await.unwrap().is_ok());
}

/// A worker's token answers only its own calls: a result for a call running on another
/// worker is refused; a call nobody knows is taken (and dropped) as usual.
#[tokio::test(flavor = "current_thread")]
async fn a_worker_s_token_answers_only_that_worker_s_calls() {
    let m = manager();
    let a = add_worker(&m, 1, "a");
    let b = add_worker(&m, 2, "b");
    m.set_owner(wid(1), Some("pc1".into()));
    m.set_owner(wid(2), Some("c2".into()));
    let t = run(&m, task(1, false));
    until("the AddPiece to start", || a.call_of("AddPiece", 1).or(b.call_of("AddPiece", 1)).is_some()).await;
    let (call, owner, other) = match a.call_of("AddPiece", 1) {
        Some(c) => (c, "pc1", "c2"),
        None => (b.call_of("AddPiece", 1).unwrap(), "c2", "pc1"),
    };
    let e = m.check_return(call, other).unwrap_err();
    assert!(matches!(&e, ReturnRefused::NotItsCall { worker, .. } if worker == other), "{e}");
    assert!(e.to_string().contains(&format!("is not a call of worker \"{other}\"")), "{e}");
    assert!(m.check_return(call, owner).is_ok());
    // A call of a sector with no start in flight: nothing to protect, dropped when it comes.
    let unknown = CallId { sector: sector(7).id, id: Uuid::new_v4() };
    assert!(m.check_return(unknown, other).is_ok());
    m.on_return(call, Ok(json!("mine")));
    assert_eq!(t.await.unwrap().unwrap().value, json!("mine"));
}
