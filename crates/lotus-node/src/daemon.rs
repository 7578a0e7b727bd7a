//! The skeleton both daemons share around their API: bind the listen address, publish it in
//! the repo's `api` file (the bound address, so port 0 works), serve until a shutdown is
//! asked (over the API or by SIGINT/SIGTERM), then stop the background tasks and wait for
//! them, and remove the `api` file. Each daemon only builds its router and its state.

use crate::repo::Repo;
use anyhow::{Context, Result};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// Bind `addr`; `in_use` says what to do when it cannot be bound (which flag or key sets it).
pub async fn bind(addr: SocketAddr, in_use: impl FnOnce() -> String) -> Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}: {}", in_use()))
}

/// What a daemon started as a library inside another program (a test) gets from it: the
/// listener to serve on (none: the daemon binds its configured address) and the signal that
/// stops it.
#[derive(Default)]
pub struct Host {
    pub listener: Option<TcpListener>,
    pub shutdown: Arc<Notify>,
}

/// A daemon started as a library: it serves until its [`Host`]'s shutdown fires, and ends
/// once its background tasks have.
pub type Running = std::pin::Pin<Box<dyn Future<Output = Result<()>> + Send + 'static>>;

/// The long-lived background loops of a daemon (health reports, registration, proving):
/// tracked, so that shutdown stops them and waits until each has ended.
#[derive(Default)]
pub struct Background {
    tasks: Mutex<JoinSet<()>>,
}

impl Background {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).spawn(task);
    }

    /// How many are still running.
    pub fn len(&self) -> usize {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stop every task and wait for each to end; a task that had panicked is reported.
    pub async fn stop(&self) {
        let mut set = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        set.abort_all();
        while let Some(r) = set.join_next().await {
            if let Err(e) = r {
                if e.is_panic() {
                    tracing::error!("a background task had panicked: {e}");
                }
            }
        }
    }
}

/// Every `every`, hand the memory the allocator holds free back to the OS. glibc keeps what a
/// burst freed (10,000 pledges in the scale benchmark left the miner at 200 or 560 MiB from
/// one run to the next with the same live data); the RSS operators watch should say what the
/// daemon holds.
pub fn trim_memory_every(background: &Background, every: std::time::Duration) {
    background.spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            // SAFETY: malloc_trim only returns free pages; it is safe to call at any time.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    });
}

/// Cap glibc's malloc arenas at the core count (2 to 8) unless the operator set
/// `MALLOC_ARENA_MAX`. glibc gives a busy multi-threaded process up to eight arenas per core,
/// and memory freed in one arena is not reused by the others: the miner took 551 MiB during
/// a burst of 10,000 pledges with the default and 260 MiB with two arenas, the same latency
/// (`scale` benchmark, release build, 2 cores). Call it first thing in `main`.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        // SAFETY: mallopt only changes an allocator setting; called before other threads start.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, cores.clamp(2, 8) as libc::c_int);
        }
    }
}

/// Resolves at SIGINT or SIGTERM.
pub async fn signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// A connection with no byte in either direction for this long, and no request being
/// handled, is closed (idle keep-alive connections, a peer that stopped sending): idle
/// sockets cannot exhaust a daemon's file descriptors. A request that takes long (a PoSt
/// computed while the caller waits) keeps its connection. Clients reconnect (reqwest's pool
/// does on its own).
pub const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// How long a request's headers may take to arrive, from its first byte (Go's
/// `ReadHeaderTimeout`, 30 s in Lotus's daemons; `lotus-worker run --http-server-timeout`): a
/// client trickling a request's headers cannot hold a connection for ever.
pub const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Connections served at once: half the file descriptors this process may open (the rest are
/// for sector files, proof processes, the database), at most 4,096. When all are taken, a new
/// connection closes the one that has been quiet longest (no request in flight) to take its
/// place: clients that hold sockets open without using them cannot lock others out. Only when
/// every connection is handling a request does a new one wait in the kernel's backlog.
pub fn max_connections() -> usize {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct it is given.
    let soft =
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 { lim.rlim_cur as usize } else { 1024 };
    (soft / 2).clamp(64, 4096)
}

/// A listener that holds at most `max` connections at once and closes idle ones. axum's
/// server has neither (and no timer of hyper's is set), so an unauthenticated client could
/// hold sockets open until the daemon can open no file.
pub struct Guarded {
    inner: TcpListener,
    permits: Arc<tokio::sync::Semaphore>,
    idle: std::time::Duration,
    header: std::time::Duration,
    conns: Arc<Mutex<Conns>>,
}

/// The connections being served, so that a full listener can close the quietest.
#[derive(Default)]
struct Conns {
    next: u64,
    live: std::collections::HashMap<u64, Arc<Slot>>,
}

/// One connection as the listener sees it.
struct Slot {
    busy: Arc<Busy>,
    /// Its last byte either way.
    last: Mutex<tokio::time::Instant>,
    /// Asked to close (to make room); its reader is woken to see it.
    evicted: std::sync::atomic::AtomicBool,
    waker: Mutex<Option<std::task::Waker>>,
}

impl Conns {
    /// Close the connection quiet for longest with no request in flight, if there is one.
    fn evict_quietest(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let quietest = self
            .live
            .values()
            .filter(|s| s.busy.now.load(Relaxed) == 0 && !s.evicted.load(Relaxed))
            .min_by_key(|s| *s.last.lock().unwrap_or_else(|e| e.into_inner()));
        let Some(slot) = quietest else { return false };
        slot.evicted.store(true, Relaxed);
        if let Some(w) = slot.waker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            w.wake();
        }
        true
    }
}

impl Guarded {
    pub fn new(inner: TcpListener, max: usize, idle: std::time::Duration) -> Guarded {
        Guarded {
            inner,
            permits: Arc::new(tokio::sync::Semaphore::new(max.max(1))),
            idle,
            header: HEADER_TIMEOUT,
            conns: Default::default(),
        }
    }

    /// The header timeout (see [`HEADER_TIMEOUT`]).
    pub fn header_timeout(self, header: std::time::Duration) -> Guarded {
        Guarded { header, ..self }
    }
}

impl axum::serve::Listener for Guarded {
    type Io = GuardedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (GuardedStream, SocketAddr) {
        let (s, a) = axum::serve::Listener::accept(&mut self.inner).await;
        // Full: the quietest connection makes room (its slot frees once it has closed).
        if self.permits.available_permits() == 0 {
            let evicted = self.conns.lock().unwrap_or_else(|e| e.into_inner()).evict_quietest();
            if evicted {
                tracing::debug!("connection limit reached: closing the quietest connection for a new one");
            }
        }
        let permit = self.permits.clone().acquire_owned().await.expect("the semaphore is never closed");
        let busy: Arc<Busy> = Default::default();
        let slot = Arc::new(Slot {
            busy: busy.clone(),
            last: Mutex::new(tokio::time::Instant::now()),
            evicted: Default::default(),
            waker: Default::default(),
        });
        let id = {
            let mut c = self.conns.lock().unwrap_or_else(|e| e.into_inner());
            c.next += 1;
            let id = c.next;
            c.live.insert(id, slot.clone());
            id
        };
        let deadline = Box::pin(tokio::time::sleep(self.idle));
        let stream = GuardedStream {
            inner: s,
            _permit: permit,
            idle: self.idle,
            deadline,
            busy,
            header: self.header,
            header_deadline: None,
            slot,
            registered: (id, self.conns.clone()),
        };
        (stream, a)
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A served connection: its slot is freed when it closes; without traffic for the idle time
/// its reads fail, and the server drops it.
pub struct GuardedStream {
    inner: tokio::net::TcpStream,
    _permit: tokio::sync::OwnedSemaphorePermit,
    idle: std::time::Duration,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// Requests of this connection being handled now, and started so far ([`track_busy`]).
    busy: Arc<Busy>,
    header: std::time::Duration,
    /// Armed by a request's first byte (when none is being handled): the time its headers
    /// must be in by, and how many requests had started then (one more: they arrived).
    header_deadline: Option<(std::pin::Pin<Box<tokio::time::Sleep>>, usize)>,
    slot: Arc<Slot>,
    /// Its entry among the listener's connections, removed when it closes.
    registered: (u64, Arc<Mutex<Conns>>),
}

impl Drop for GuardedStream {
    fn drop(&mut self) {
        let (id, conns) = &self.registered;
        conns.lock().unwrap_or_else(|e| e.into_inner()).live.remove(id);
    }
}

#[derive(Default)]
pub struct Busy {
    now: std::sync::atomic::AtomicUsize,
    started: std::sync::atomic::AtomicUsize,
    /// Upgraded (a WebSocket): what the client sends now are frames, not requests, so no
    /// header timeout applies (its idle timeout still does).
    upgraded: std::sync::atomic::AtomicBool,
}

/// What a handler knows of its connection: whether a request is in flight on it.
#[derive(Clone)]
pub struct Conn {
    busy: Arc<Busy>,
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Guarded>> for Conn {
    fn connect_info(stream: axum::serve::IncomingStream<'_, Guarded>) -> Conn {
        Conn { busy: stream.io().busy.clone() }
    }
}

/// Count the request as in flight on its connection until its handler has answered (or was
/// dropped), so that the idle timeout spares it.
async fn track_busy(
    axum::extract::ConnectInfo(conn): axum::extract::ConnectInfo<Conn>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    struct Done(Arc<Busy>);
    impl Drop for Done {
        fn drop(&mut self) {
            self.0.now.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    if req.headers().contains_key(axum::http::header::UPGRADE) {
        conn.busy.upgraded.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    conn.busy.started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    conn.busy.now.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let _done = Done(conn.busy.clone());
    next.run(req).await
}

impl GuardedStream {
    fn active(&mut self) {
        let now = tokio::time::Instant::now();
        self.deadline.as_mut().reset(now + self.idle);
        *self.slot.last.lock().unwrap_or_else(|e| e.into_inner()) = now;
    }
}

impl tokio::io::AsyncRead for GuardedStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::sync::atomic::Ordering::Relaxed;
        use std::task::Poll;
        if self.slot.evicted.load(Relaxed) {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "closed to make room for a new connection (the daemon's connection limit was reached)",
            )));
        }
        {
            let mut waker = self.slot.waker.lock().unwrap_or_else(|e| e.into_inner());
            if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *waker = Some(cx.waker().clone());
            }
        }
        let busy = self.busy.now.load(Relaxed) > 0 || self.busy.upgraded.load(Relaxed);
        let started = self.busy.started.load(Relaxed);
        // A request started since the deadline was armed: its headers arrived in time.
        if busy || self.header_deadline.as_ref().is_some_and(|(_, at)| *at != started) {
            self.header_deadline = None;
        }
        if let Some((sleep, _)) = self.header_deadline.as_mut() {
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "a request's headers did not arrive within {} of its first byte",
                        humantime::format_duration(self.header)
                    ),
                )));
            }
        }
        let before = buf.filled().len();
        match std::pin::Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.active();
                    if !busy && self.header_deadline.is_none() {
                        self.header_deadline = Some((Box::pin(tokio::time::sleep(self.header)), started));
                    }
                }
                Poll::Ready(r)
            }
            Poll::Pending => loop {
                if let Some((sleep, _)) = self.header_deadline.as_mut() {
                    // Registers the waker: the read fails when the headers are late.
                    let _ = sleep.as_mut().poll(cx);
                }
                match self.deadline.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    // A request is being handled: not idle, look again later.
                    Poll::Ready(()) if self.busy.now.load(Relaxed) > 0 => self.active(),
                    Poll::Ready(()) => {
                        return Poll::Ready(Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "the connection was idle for too long",
                        )))
                    }
                }
            },
        }
    }
}

impl tokio::io::AsyncWrite for GuardedStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.active();
        }
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serve `app` on `listener` until `requested` is notified (the API's `Shutdown`) or a signal
/// comes; `stopping` runs at that moment (before in-flight requests finish). Then the
/// background tasks are stopped and awaited, and the repo's `api` file removed.
pub async fn serve(
    listener: TcpListener,
    header_timeout: std::time::Duration,
    app: axum::Router,
    repo: &Repo,
    requested: Arc<Notify>,
    stopping: impl FnOnce() + Send + 'static,
    background: &Background,
) -> Result<()> {
    let app = app.layer(axum::middleware::from_fn(track_busy)).into_make_service_with_connect_info::<Conn>();
    axum::serve(Guarded::new(listener, max_connections(), IDLE_TIMEOUT).header_timeout(header_timeout), app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = requested.notified() => tracing::info!("shutdown requested over the API"),
                _ = signal() => tracing::info!("signal received, shutting down"),
            }
            stopping();
        })
        .await
        .context("serving the API")?;
    background.stop().await;
    let _ = std::fs::remove_file(repo.file("api"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/` answers at once, `/slow` after 900 ms.
    fn quick_and_slow() -> axum::Router {
        axum::Router::new().route("/", axum::routing::get(|| async { "ok" })).route(
            "/slow",
            axum::routing::get(|| async {
                tokio::time::sleep(std::time::Duration::from_millis(900)).await;
                "slow"
            }),
        )
    }

    /// Serve `app` as [`serve`] does, behind `guarded`'s limits, on a loopback port.
    async fn serve_guarded(app: axum::Router, guarded: impl FnOnce(TcpListener) -> Guarded) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let app = app.layer(axum::middleware::from_fn(track_busy)).into_make_service_with_connect_info::<Conn>();
        let guarded = guarded(l);
        tokio::spawn(async move { axum::serve(guarded, app).await.unwrap() });
        addr
    }

    /// At most `max` connections are served at once: a new one closes the quietest idle one
    /// (never one whose request is being handled) and is served at once; a connection idle
    /// past the timeout is closed by the server.
    #[tokio::test]
    async fn connections_are_limited_and_idle_ones_closed() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = serve_guarded(quick_and_slow(), |l| Guarded::new(l, 2, std::time::Duration::from_millis(300))).await;
        // A request that takes three idle timeouts keeps its connection and is answered.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(std::time::Duration::from_secs(3), s.read(&mut buf)).await.unwrap().unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("slow"), "the slow request was answered");
        drop(s);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let get = |mut s: tokio::net::TcpStream| async move {
            s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
            let mut buf = [0u8; 256];
            let n = tokio::time::timeout(std::time::Duration::from_millis(200), s.read(&mut buf)).await;
            (s, n.ok().and_then(|r| r.ok()).map(|n| String::from_utf8_lossy(&buf[..n]).to_string()))
        };
        let (a, ra) = get(tokio::net::TcpStream::connect(addr).await.unwrap()).await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let (b, rb) = get(tokio::net::TcpStream::connect(addr).await.unwrap()).await;
        assert!(ra.unwrap().contains("200 OK") && rb.unwrap().contains("200 OK"));
        // Both slots are held by idle keep-alive connections: a third is served at once, in
        // the place of the quieter one (a), which the server closes.
        let (_c, rc) = get(tokio::net::TcpStream::connect(addr).await.unwrap()).await;
        assert!(rc.unwrap_or_default().contains("200 OK"), "a new connection is not locked out");
        let (mut a, mut b) = (a, b);
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(std::time::Duration::from_millis(200), a.read(&mut buf)).await.unwrap();
        assert!(matches!(n, Ok(0) | Err(_)), "the quietest connection made room");
        let n = tokio::time::timeout(std::time::Duration::from_millis(100), b.read(&mut buf)).await;
        assert!(n.is_err(), "the other one is still open");
        // A connection whose request is being handled is never the one closed.
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let (mut d, rd) = get(tokio::net::TcpStream::connect(addr).await.unwrap()).await;
        assert!(rd.unwrap_or_default().contains("200 OK"));
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(std::time::Duration::from_secs(3), slow.read(&mut buf)).await.unwrap().unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("slow"), "the busy connection was answered");
        // Idle past the timeout: closed by the server.
        let n = tokio::time::timeout(std::time::Duration::from_secs(2), d.read(&mut buf)).await.unwrap();
        assert!(matches!(n, Ok(0) | Err(_)), "the idle connection was closed");
        drop(b);
    }

    /// A client trickling its headers is cut off at the header timeout, counted from the
    /// request's first byte; a handler that takes longer than it does not count, nor does the
    /// wait for a keep-alive connection's next request.
    #[tokio::test]
    async fn a_request_whose_headers_trickle_in_is_cut_off() {
        use std::time::Duration;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = serve_guarded(quick_and_slow(), |l| {
            Guarded::new(l, 8, Duration::from_secs(10)).header_timeout(Duration::from_millis(400))
        })
        .await;
        async fn answer(s: &mut tokio::net::TcpStream) -> String {
            let mut buf = vec![0u8; 512];
            match tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await.unwrap() {
                Ok(n) => String::from_utf8_lossy(&buf[..n]).to_string(),
                Err(_) => String::new(),
            }
        }
        // A slow handler, a pause longer than the header timeout, then a second request on
        // the same connection: both answered.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        assert!(answer(&mut s).await.contains("slow"));
        tokio::time::sleep(Duration::from_millis(600)).await;
        s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        assert!(answer(&mut s).await.contains("200 OK"), "a keep-alive connection's next request is served");
        // Headers sent a byte every 100 ms: the connection is closed without an answer.
        let mut t = tokio::net::TcpStream::connect(addr).await.unwrap();
        let started = std::time::Instant::now();
        let mut cut = false;
        for b in b"GET / HTTP/1.1\r\nhost: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n\r\n" {
            if t.write_all(&[*b]).await.is_err() {
                cut = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut probe = [0u8; 64];
            if let Ok(r) = tokio::time::timeout(Duration::from_millis(1), t.read(&mut probe)).await {
                assert!(!matches!(r, Ok(n) if n > 0 && probe.starts_with(b"HTTP/1.1 200")), "never answered");
                cut = true;
                break;
            }
        }
        assert!(cut, "the trickling client was cut off");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(400) && took < Duration::from_secs(3), "cut at the timeout: {took:?}");
    }

    /// A WebSocket (how Lotus's clients speak JSON-RPC) sends frames, not requests: the header
    /// timeout never cuts it, however long it lives.
    #[tokio::test]
    async fn a_websocket_outlives_the_header_timeout() {
        use axum::extract::ws::{Message, WebSocketUpgrade};
        use std::time::Duration;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let echo = |ws: WebSocketUpgrade| async move {
            ws.on_upgrade(|mut socket| async move {
                while let Some(Ok(Message::Text(t))) = socket.recv().await {
                    if socket.send(Message::Text(t)).await.is_err() {
                        break;
                    }
                }
            })
        };
        let addr = serve_guarded(axum::Router::new().route("/ws", axum::routing::get(echo)), |l| {
            Guarded::new(l, 8, Duration::from_secs(10)).header_timeout(Duration::from_millis(300))
        })
        .await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\n\
              sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"), "upgraded");
        // A masked text frame "hi", as a client sends it.
        let frame = [0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2];
        for _ in 0..3 {
            s.write_all(&frame).await.unwrap();
            let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await.unwrap().unwrap();
            assert_eq!(&buf[..n], [0x81, 2, b'h', b'i'], "echoed");
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    }

    #[tokio::test]
    async fn stopping_the_background_ends_every_task() {
        let bg = Background::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        bg.spawn(async move {
            let _keep = tx; // dropped when the task is aborted
            std::future::pending::<()>().await
        });
        bg.spawn(async {});
        assert_eq!(bg.len(), 2);
        bg.stop().await;
        assert!(bg.is_empty());
        assert!(rx.await.is_err(), "the endless task was stopped and dropped its state");
    }
}
