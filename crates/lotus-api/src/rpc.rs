//! JSON-RPC 2.0 server side: method table with permissions, dispatch, and the axum routes
//! (`POST /rpc/v0`, WebSocket `GET /rpc/v0`).
//!
//! Hand-rolled on purpose: the envelope is small, and it must (1) share one port and router
//! with the `/remote` file routes and their auth, (2) refuse a call below its permission
//! before dispatch with Lotus's message, and (3) answer a bad token with HTTP 401 as Lotus
//! does. jsonrpsee's server would need its own listener or a tower shim for each of these.

use crate::auth::{Caller, Permission};
use crate::methods;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

/// Largest request body accepted on `/rpc/v0`; larger bodies get HTTP 413.
pub const RPC_BODY_LIMIT: usize = 16 << 20;
/// Most requests in one JSON-RPC batch. Lotus's clients never batch (go-jsonrpc sends one
/// request per message); the bound keeps one request without a token from fanning out into
/// thousands of calls.
pub const MAX_BATCH: usize = 100;

/// How long a request body may take to arrive in full, counted once the caller is
/// authenticated (at 16 MiB that is 270 KiB/s): a client trickling a body cannot hold a
/// connection and a handler for ever.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// Most bytes of answers one batch may collect: the rest of its requests are answered with an
/// error, so a batch of repeated reads cannot make the daemon hold gigabytes.
pub const MAX_BATCH_RESPONSE: usize = 64 << 20;

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
/// What go-jsonrpc uses for errors returned by a method (permission errors included).
pub const METHOD_ERROR: i64 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError { code, message: message.into(), data: None }
    }
    /// An error the method itself reports (bad input, state that forbids the call...).
    pub fn method(message: impl Into<String>) -> Self {
        Self::new(METHOD_ERROR, message)
    }
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (code {})", self.message, self.code)
    }
}

/// Positional params of one call.
#[derive(Debug)]
pub struct Params {
    method: String,
    values: Vec<Value>,
}

impl Params {
    /// Refuse a call whose param count is not `n`.
    pub fn expect(&self, n: usize) -> Result<(), RpcError> {
        if self.values.len() != n {
            return Err(RpcError::invalid_params(format!(
                "{} takes {n} param(s), got {}",
                self.method,
                self.values.len()
            )));
        }
        Ok(())
    }

    /// Refuse a call with fewer than `min` or more than `max` params (optional trailing ones).
    pub fn expect_between(&self, min: usize, max: usize) -> Result<(), RpcError> {
        if self.values.len() < min || self.values.len() > max {
            return Err(RpcError::invalid_params(format!(
                "{} takes {min} to {max} params, got {}",
                self.method,
                self.values.len()
            )));
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// The params as they came, for a decoder of their own.
    pub fn into_values(self) -> Vec<Value> {
        self.values
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Param `i`, named `name` in errors.
    pub fn get<T: DeserializeOwned>(&self, i: usize, name: &str) -> Result<T, RpcError> {
        let v = self.values.get(i).cloned().unwrap_or(Value::Null);
        serde_json::from_value(v)
            .map_err(|e| RpcError::invalid_params(format!("{}: param {i} ({name}) is invalid: {e}", self.method)))
    }
}

type Handler = Arc<dyn Fn(Params) -> BoxFuture<'static, Result<Value, RpcError>> + Send + Sync>;

/// The values a channel method sends, until it ends.
pub type ValueStream = futures_util::stream::BoxStream<'static, Value>;
type ChannelHandler = Arc<dyn Fn(Params) -> BoxFuture<'static, Result<ValueStream, RpcError>> + Send + Sync>;

/// The method table of one daemon.
pub struct RpcServer {
    table: &'static [(&'static str, Permission)],
    handlers: HashMap<&'static str, (Permission, Handler)>,
    /// Methods that return a channel (go-jsonrpc's `<-chan T`): served over WebSocket only.
    channels: HashMap<&'static str, (Permission, ChannelHandler)>,
    /// What a token minted for another worker may call here beyond read methods, and this
    /// node's own worker identity (its own token may call anything).
    foreign: (&'static [&'static str], Option<String>),
}

tokio::task_local! {
    static CALLER: Caller;
}

/// The caller of the RPC method being handled; `None` outside a request (the daemon's own
/// calls), which is trusted like the operator.
pub fn current_caller() -> Option<Caller> {
    CALLER.try_with(Caller::clone).ok()
}

/// Whether the current request came without a token.
pub fn anonymous_caller() -> bool {
    current_caller().is_some_and(|c| c.anonymous)
}

/// The worker a request's token was minted for, if the current request has one.
pub fn calling_worker() -> Option<String> {
    current_caller().and_then(|c| c.worker)
}

/// A WebSocket connection's channels: the values they send go out as go-jsonrpc's
/// `xrpc.ch.val` notifications (`[channel id, value]`), their end as `xrpc.ch.close`.
struct Channels {
    out: tokio::sync::mpsc::UnboundedSender<Value>,
    next: u64,
    /// Opened by the request being answered: started once its answer (with the channel's
    /// id) is on its way, so that no value precedes it.
    opened: Vec<(Value, u64, ValueStream)>,
    /// Running channels by the request ID that opened them (`xrpc.cancel` names it).
    running: HashMap<String, tokio::task::AbortHandle>,
}

impl Channels {
    fn start_opened(&mut self) {
        for (req, chan, mut stream) in self.opened.drain(..) {
            let out = self.out.clone();
            let h = tokio::spawn(async move {
                use futures_util::StreamExt;
                while let Some(v) = stream.next().await {
                    let n = json!({"jsonrpc": "2.0", "method": "xrpc.ch.val", "params": [chan, v]});
                    if out.send(n).is_err() {
                        return;
                    }
                }
                let _ = out.send(json!({"jsonrpc": "2.0", "method": "xrpc.ch.close", "params": [chan]}));
            });
            self.running.insert(req.to_string(), h.abort_handle());
        }
    }
}

impl Drop for Channels {
    fn drop(&mut self) {
        for h in self.running.values() {
            h.abort();
        }
    }
}

impl RpcServer {
    /// A server whose methods must all be declared in `table` (see [`methods`]).
    pub fn new(table: &'static [(&'static str, Permission)]) -> Self {
        RpcServer { table, handlers: HashMap::new(), channels: HashMap::new(), foreign: (&[], None) }
    }

    /// Hold tokens minted for a worker other than `own` to read methods and `allowed`: a
    /// worker's token can do what a worker does, never what the operator does (`AuthNew`,
    /// `Shutdown`, sector and config changes).
    pub fn restrict_worker_tokens(&mut self, allowed: &'static [&'static str], own: Option<String>) {
        self.foreign = (allowed, own);
    }

    /// Why `caller` may not call `name` needing `perm`, if it may not.
    fn refusal(&self, caller: &Caller, name: &str, perm: Permission) -> Option<RpcError> {
        if !caller.has(perm) {
            return Some(RpcError::method(format!("missing permission to invoke '{name}' (need '{perm}')")));
        }
        let worker = caller.worker.as_deref()?;
        let (allowed, own) = &self.foreign;
        if perm == Permission::Read || own.as_deref() == Some(worker) || allowed.contains(&name) {
            return None;
        }
        Some(RpcError::method(format!(
            "the token was minted for worker {worker:?}, which may not invoke '{name}' (only the calls a worker makes); \
             use the operator's token (`lotus-miner auth api-info --perm admin`)"
        )))
    }

    /// Register `Filecoin.<name>`. Panics if `name` has no declared permission: that is a
    /// programming error caught by every test that starts a daemon.
    pub fn register<F, Fut, R>(&mut self, name: &'static str, f: F)
    where
        F: Fn(Params) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, RpcError>> + Send + 'static,
        R: Serialize,
    {
        let perm = methods::permission(self.table, name)
            .unwrap_or_else(|| panic!("method {name} has no permission declared in lotus_api::methods"));
        let h: Handler = Arc::new(move |p| {
            let fut = f(p);
            async move {
                let r = fut.await?;
                serde_json::to_value(r).map_err(|e| RpcError::new(INTERNAL_ERROR, format!("encoding the result: {e}")))
            }
            .boxed()
        });
        self.handlers.insert(name, (perm, h));
    }

    /// Register a method whose handler gets its own clone of `state` for every call.
    pub fn register_with<S, F, Fut, R>(&mut self, name: &'static str, state: S, f: F)
    where
        S: Clone + Send + Sync + 'static,
        F: Fn(S, Params) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, RpcError>> + Send + 'static,
        R: Serialize,
    {
        self.register(name, move |p| f(state.clone(), p))
    }

    /// Register a method of the contract: its params arrive decoded as `M::Params`, and a
    /// param of the wrong shape is refused with the param's name before the handler runs.
    pub fn method<M, S, F, Fut>(&mut self, state: S, f: F)
    where
        M: crate::contract::Method,
        S: Clone + Send + Sync + 'static,
        F: Fn(S, M::Params) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<M::Result, RpcError>> + Send + 'static,
    {
        use crate::contract::ParamList;
        assert_eq!(
            methods::permission(self.table, M::NAME),
            Some(M::PERM),
            "{} is registered on a server whose table does not declare it with {}",
            M::NAME,
            M::PERM
        );
        let f = Arc::new(f);
        self.register(M::NAME, move |p: Params| {
            let (state, f) = (state.clone(), f.clone());
            async move {
                let params = M::Params::from_values(M::NAME, M::PARAM_NAMES, p.values)?;
                f(state, params).await
            }
        })
    }

    /// Register a channel method of the contract (`M::Result` is the type of each value it
    /// sends): over WebSocket the call answers the channel's id and the values follow as
    /// notifications; over HTTP it is refused, as Lotus refuses it.
    pub fn channel<M, S, F, Fut, St>(&mut self, state: S, f: F)
    where
        M: crate::contract::Method,
        S: Clone + Send + Sync + 'static,
        F: Fn(S, M::Params) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<St, RpcError>> + Send + 'static,
        St: futures_util::Stream<Item = M::Result> + Send + 'static,
    {
        use crate::contract::ParamList;
        use futures_util::StreamExt;
        assert_eq!(methods::permission(self.table, M::NAME), Some(M::PERM), "{} is not declared", M::NAME);
        let f = Arc::new(f);
        let h: ChannelHandler = Arc::new(move |p: Params| {
            let (state, f) = (state.clone(), f.clone());
            async move {
                let params = M::Params::from_values(M::NAME, M::PARAM_NAMES, p.values)?;
                let stream = f(state, params).await?;
                Ok(stream.map(|v| serde_json::to_value(v).unwrap_or(Value::Null)).boxed())
            }
            .boxed()
        });
        self.channels.insert(M::NAME, (M::PERM, h));
        let name = M::NAME;
        let refuse: Handler = Arc::new(move |_| {
            async move {
                Err(RpcError::method(format!("{name} returns a channel: call it over a WebSocket connection")))
            }
            .boxed()
        });
        self.handlers.insert(M::NAME, (M::PERM, refuse));
    }

    /// Answer every method of a contract that has no handler yet with a refusal naming it
    /// (after its params are checked, as for any method): a caller learns the method is known
    /// and not served, instead of "method not found".
    pub fn refuse_unimplemented(&mut self, visit: impl FnOnce(&mut Refuser<'_>), daemon: &'static str) {
        visit(&mut Refuser { server: self, daemon });
    }

    /// Answer methods outside the contract (Lotus's, deliberately not served) with the
    /// reason, under Lotus's permission for each.
    pub fn refuse_left_out(&mut self, list: &'static [(&'static str, Permission, &'static str)], daemon: &'static str) {
        for &(name, perm, why) in list {
            let h: Handler = Arc::new(move |_| {
                async move { Err(RpcError::method(format!("{name} is not served by this {daemon}: {why}"))) }.boxed()
            });
            self.handlers.entry(name).or_insert((perm, h));
        }
    }

    /// Handle one HTTP body or WebSocket message. `None` when nothing is to be answered
    /// (notifications only).
    pub async fn handle(&self, body: &[u8], caller: &Caller) -> Option<Value> {
        self.handle_in(body, caller, None).await
    }

    async fn handle_in(&self, body: &[u8], caller: &Caller, mut chans: Option<&mut Channels>) -> Option<Value> {
        let req: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                return Some(error_response(Value::Null, RpcError::new(PARSE_ERROR, format!("parse error: {e}"))))
            }
        };
        match req {
            Value::Array(items) if items.is_empty() => {
                Some(error_response(Value::Null, RpcError::new(INVALID_REQUEST, "empty batch")))
            }
            Value::Array(items) if items.len() > MAX_BATCH => Some(error_response(
                Value::Null,
                RpcError::new(
                    INVALID_REQUEST,
                    format!(
                        "a batch of {} requests: at most {MAX_BATCH} are taken in one; send them in smaller batches",
                        items.len()
                    ),
                ),
            )),
            Value::Array(items) => {
                let mut out = Vec::new();
                let mut bytes = 0usize;
                for item in items {
                    if bytes > MAX_BATCH_RESPONSE {
                        let id = item.get("id").cloned().unwrap_or(Value::Null);
                        out.push(error_response(
                            id,
                            RpcError::new(
                                INVALID_REQUEST,
                                format!("the batch's answers exceed {MAX_BATCH_RESPONSE} bytes: send this request again on its own"),
                            ),
                        ));
                        continue;
                    }
                    if let Some(r) = self.handle_one(item, caller, chans.as_deref_mut()).await {
                        bytes += r.to_string().len();
                        out.push(r);
                    }
                }
                (!out.is_empty()).then_some(Value::Array(out))
            }
            other => self.handle_one(other, caller, chans).await,
        }
    }

    async fn handle_one(&self, req: Value, caller: &Caller, chans: Option<&mut Channels>) -> Option<Value> {
        let Value::Object(obj) = req else {
            return Some(error_response(
                Value::Null,
                RpcError::new(INVALID_REQUEST, "a request must be a JSON object"),
            ));
        };
        let id = obj.get("id").cloned();
        let answer = |r: Result<Value, RpcError>| {
            let id = id.clone()?;
            Some(match r {
                Ok(v) => json!({"jsonrpc": "2.0", "id": id, "result": v}),
                Err(e) => error_response(id, e),
            })
        };
        let Some(method) = obj.get("method").and_then(Value::as_str) else {
            return Some(error_response(
                id.unwrap_or(Value::Null),
                RpcError::new(INVALID_REQUEST, "the request has no \"method\" string"),
            ));
        };
        let values = match obj.get("params") {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(a)) => a.clone(),
            Some(_) => return answer(Err(RpcError::invalid_params("params must be a positional array"))),
        };
        if let Some(chans) = chans {
            if method == "xrpc.cancel" {
                // go-jsonrpc's client cancels a call (and closes its channel) by its request ID.
                if let Some(h) = values.first().and_then(|id| chans.running.remove(&id.to_string())) {
                    h.abort();
                }
                return None;
            }
            if let Some((name, (perm, open))) =
                method.strip_prefix("Filecoin.").and_then(|n| self.channels.get_key_value(n))
            {
                if let Some(e) = self.refusal(caller, name, *perm) {
                    return answer(Err(e));
                }
                let req_id = id.clone()?;
                let fut = CALLER.sync_scope(caller.clone(), || open(Params { method: method.to_string(), values }));
                return match CALLER.scope(caller.clone(), fut).await {
                    Ok(stream) => {
                        chans.next += 1;
                        let chan = chans.next;
                        chans.opened.push((req_id, chan, stream));
                        answer(Ok(json!(chan)))
                    }
                    Err(e) => answer(Err(e)),
                };
            }
        }
        let Some((name, (perm, handler))) =
            method.strip_prefix("Filecoin.").and_then(|n| self.handlers.get_key_value(n))
        else {
            return answer(Err(RpcError::new(METHOD_NOT_FOUND, format!("method '{method}' not found"))));
        };
        if let Some(e) = self.refusal(caller, name, *perm) {
            return answer(Err(e));
        }
        // Handlers that must know who calls (a worker's own paths and calls) read it with
        // [`current_caller`].
        let fut = CALLER.sync_scope(caller.clone(), || handler(Params { method: method.to_string(), values }));
        let r = match AssertUnwindSafe(CALLER.scope(caller.clone(), fut)).catch_unwind().await {
            Ok(r) => r,
            Err(_) => {
                tracing::error!(method, "RPC handler panicked");
                Err(RpcError::new(INTERNAL_ERROR, format!("internal error while handling {method}")))
            }
        };
        answer(r)
    }
}

/// Registers refusals for the methods a server has no handler for (see
/// [`RpcServer::refuse_unimplemented`]).
pub struct Refuser<'a> {
    server: &'a mut RpcServer,
    daemon: &'static str,
}

impl crate::contract::Visitor for Refuser<'_> {
    fn visit<M: crate::contract::Method>(&mut self) {
        if self.server.handlers.contains_key(M::NAME) {
            return;
        }
        self.server.method::<M, _, _, _>(self.daemon, |daemon, _| async move {
            Err(RpcError::method(format!(
                "{} is not implemented by this {daemon} yet (the README lists the Lotus methods left out and why)",
                M::NAME
            )))
        });
    }
}

fn error_response(id: Value, e: RpcError) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": e})
}

/// Turns a bearer token into permissions. The miner checks its own secret; a worker asks the
/// miner (`AuthVerify`).
pub trait Authenticator: Send + Sync + 'static {
    fn verify(&self, token: &str) -> BoxFuture<'_, Result<Caller, String>>;
}

#[derive(Clone)]
struct RpcState {
    server: Arc<RpcServer>,
    auth: Arc<dyn Authenticator>,
    body_timeout: std::time::Duration,
}

/// The token of a request: `Authorization: Bearer <jwt>` or `?token=<jwt>`.
pub fn request_token(headers: &HeaderMap, query: &HashMap<String, String>) -> Option<String> {
    if let Some(h) = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let h = h.trim();
        return Some(h.strip_prefix("Bearer ").unwrap_or(h).trim().to_string());
    }
    query.get("token").cloned()
}

/// The caller of a request, or the 401 to send. No token means read-only.
pub async fn authenticate(
    auth: &dyn Authenticator,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<Caller, Response> {
    match request_token(headers, query) {
        None => Ok(Caller::anonymous()),
        Some(t) => auth
            .verify(&t)
            .await
            .map_err(|e| (StatusCode::UNAUTHORIZED, format!("JWT Verification failed: {e}\n")).into_response()),
    }
}

/// `/rpc/v0` routes for a server.
pub fn router(server: Arc<RpcServer>, auth: Arc<dyn Authenticator>) -> Router {
    router_on("/rpc/v0", server, auth)
}

/// The routes of a server at `path` (a full node serves `/rpc/v1` and `/rpc/v0`), over HTTP
/// POST and WebSocket.
pub fn router_on(path: &str, server: Arc<RpcServer>, auth: Arc<dyn Authenticator>) -> Router {
    router_timed(path, server, auth, BODY_TIMEOUT)
}

/// [`router_on`] with its own body timeout (tests).
pub fn router_timed(
    path: &str,
    server: Arc<RpcServer>,
    auth: Arc<dyn Authenticator>,
    body_timeout: std::time::Duration,
) -> Router {
    Router::new()
        .route(path, post(http_call).get(ws_call))
        .layer(DefaultBodyLimit::max(RPC_BODY_LIMIT))
        .with_state(RpcState { server, auth, body_timeout })
}

async fn http_call(
    State(st): State<RpcState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: axum::body::Body,
) -> Response {
    // The token first: a refused caller's body is never read.
    let caller = match authenticate(st.auth.as_ref(), &headers, &query).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let body = match tokio::time::timeout(st.body_timeout, axum::body::to_bytes(body, RPC_BODY_LIMIT)).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            // axum's limit error says only this (its type is not exported here).
            let too_large = e.to_string().contains("length limit exceeded");
            return if too_large {
                (StatusCode::PAYLOAD_TOO_LARGE, format!("the request body is over {RPC_BODY_LIMIT} bytes\n"))
                    .into_response()
            } else {
                (StatusCode::BAD_REQUEST, format!("reading the request body: {e}\n")).into_response()
            };
        }
        Err(_) => {
            let why = format!("the request body did not arrive within {:?}\n", st.body_timeout);
            return (StatusCode::REQUEST_TIMEOUT, why).into_response();
        }
    };
    match st.server.handle(&body, &caller).await {
        Some(v) => ([(axum::http::header::CONTENT_TYPE, "application/json")], v.to_string()).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

async fn ws_call(
    State(st): State<RpcState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    let caller = match authenticate(st.auth.as_ref(), &headers, &query).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    ws.max_message_size(RPC_BODY_LIMIT).on_upgrade(move |socket| ws_loop(socket, st.server, caller))
}

async fn ws_loop(socket: WebSocket, server: Arc<RpcServer>, caller: Caller) {
    use futures_util::{SinkExt, StreamExt};
    let (mut sink, mut stream) = socket.split();
    // One writer: answers and channel values share the socket.
    let (out, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let writer = tokio::spawn(async move {
        while let Some(v) = rx.recv().await {
            if sink.send(Message::Text(v.to_string().into())).await.is_err() {
                break;
            }
        }
    });
    let mut chans = Channels { out: out.clone(), next: 0, opened: vec![], running: HashMap::new() };
    while let Some(Ok(msg)) = stream.next().await {
        let body = match msg {
            Message::Text(t) => t.as_bytes().to_vec(),
            Message::Binary(b) => b.to_vec(),
            Message::Close(_) => break,
            _ => continue,
        };
        if let Some(resp) = server.handle_in(&body, &caller, Some(&mut chans)).await {
            if out.send(resp).is_err() {
                break;
            }
        }
        chans.start_opened();
    }
    drop(chans);
    drop(out);
    writer.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &[(&str, Permission)] = &[
        ("Echo", Permission::Read),
        ("Boom", Permission::Read),
        ("Secret", Permission::Admin),
        ("Big", Permission::Read),
        ("Whoami", Permission::Admin),
    ];

    fn server() -> RpcServer {
        let mut s = RpcServer::new(TABLE);
        s.register("Echo", |p: Params| async move {
            p.expect(1)?;
            p.get::<u64>(0, "n")
        });
        s.register("Boom", |_p: Params| async move {
            if true {
                panic!("boom");
            }
            Ok(0)
        });
        s.register("Secret", |_p: Params| async move { Ok("s") });
        s.register("Big", |_p: Params| async move { Ok("x".repeat(1 << 20)) });
        s
    }

    async fn call(s: &RpcServer, body: &str, perms: &[Permission]) -> Value {
        s.handle(body.as_bytes(), &Caller::operator(perms.to_vec())).await.unwrap()
    }

    #[tokio::test]
    async fn envelope_and_errors() {
        let s = server();
        let r = &[Permission::Read];
        let v = call(&s, r#"{"jsonrpc":"2.0","id":7,"method":"Filecoin.Echo","params":[42]}"#, r).await;
        assert_eq!(v, json!({"jsonrpc":"2.0","id":7,"result":42}));
        let v = call(&s, r#"{"jsonrpc":"2.0","id":1,"method":"Filecoin.Echo","params":["x"]}"#, r).await;
        assert_eq!(v["error"]["code"], INVALID_PARAMS);
        assert!(v["error"]["message"].as_str().unwrap().contains("param 0 (n) is invalid"));
        let v = call(&s, r#"{"jsonrpc":"2.0","id":1,"method":"Filecoin.Echo","params":[1,2]}"#, r).await;
        assert!(v["error"]["message"].as_str().unwrap().contains("takes 1 param(s), got 2"));
        let v = call(&s, r#"{"jsonrpc":"2.0","id":1,"method":"Filecoin.Nope","params":[]}"#, r).await;
        assert_eq!(v["error"]["code"], METHOD_NOT_FOUND);
        let v = call(&s, r#"{"jsonrpc":"2.0","id":1,"method":"Echo","params":[]}"#, r).await;
        assert_eq!(v["error"]["code"], METHOD_NOT_FOUND);
        let v = call(&s, r#"{"id":1,"method":"Filecoin.Echo","params":{"n":1}}"#, r).await;
        assert_eq!(v["error"]["code"], INVALID_PARAMS);
        let v = call(&s, "{not json", r).await;
        assert_eq!(v["error"]["code"], PARSE_ERROR);
        let v = call(&s, "[]", r).await;
        assert_eq!(v["error"]["code"], INVALID_REQUEST);
        let v = call(&s, "3", r).await;
        assert_eq!(v["error"]["code"], INVALID_REQUEST);
        let v = call(
            &s,
            r#"[{"id":1,"method":"Filecoin.Echo","params":[1]},{"id":2,"method":"Filecoin.Echo","params":[2]}]"#,
            r,
        )
        .await;
        assert_eq!(v[1]["result"], 2);
        assert!(
            s.handle(br#"{"method":"Filecoin.Echo","params":[1]}"#, &Caller::operator(r.to_vec())).await.is_none(),
            "notification"
        );
        // A batch beyond the bound is refused whole, without running any of it.
        let big = format!("[{}]", vec![r#"{"id":1,"method":"Filecoin.Echo","params":[1]}"#; MAX_BATCH + 1].join(","));
        let v = call(&s, &big, r).await;
        assert_eq!(v["error"]["code"], INVALID_REQUEST);
        assert!(v["error"]["message"].as_str().unwrap().contains("at most 100"), "{v}");
        let ok = format!("[{}]", vec![r#"{"id":1,"method":"Filecoin.Echo","params":[1]}"#; MAX_BATCH].join(","));
        assert_eq!(call(&s, &ok, r).await.as_array().unwrap().len(), MAX_BATCH);
        // A batch of large answers stops collecting them at the byte bound.
        let big = format!("[{}]", vec![r#"{"id":1,"method":"Filecoin.Big","params":[]}"#; MAX_BATCH].join(","));
        let v = call(&s, &big, r).await;
        let answered = v.as_array().unwrap().iter().filter(|a| a.get("result").is_some()).count();
        assert_eq!(answered, MAX_BATCH_RESPONSE >> 20, "answers stop past {MAX_BATCH_RESPONSE} bytes");
        assert!(v[MAX_BATCH - 1]["error"]["message"].as_str().unwrap().contains("send this request again"));
    }

    #[tokio::test]
    async fn permission_and_panic() {
        let s = server();
        let v = call(&s, r#"{"id":1,"method":"Filecoin.Secret","params":[]}"#, &[Permission::Read, Permission::Write])
            .await;
        assert_eq!(v["error"]["message"], "missing permission to invoke 'Secret' (need 'admin')");
        let v = call(&s, r#"{"id":1,"method":"Filecoin.Secret","params":[]}"#, &Permission::Admin.with_lower()).await;
        assert_eq!(v["result"], "s");
        let v = call(&s, r#"{"id":1,"method":"Filecoin.Boom","params":[]}"#, &[Permission::Read]).await;
        assert_eq!(v["error"]["code"], INTERNAL_ERROR, "a panicking handler answers an error");
    }

    #[tokio::test]
    async fn worker_tokens_reach_only_what_a_worker_calls_and_handlers_see_the_caller() {
        let mut s = server();
        s.register("Whoami", |_p: Params| async move { Ok(calling_worker()) });
        s.restrict_worker_tokens(&["Whoami"], Some("me".into()));
        let admin = Permission::Admin.with_lower();
        let worker = |name: &str| Caller::worker(admin.clone(), Some(name.into()));
        let req = |m: &str| format!(r#"{{"id":1,"method":"Filecoin.{m}","params":[]}}"#);
        let v = s.handle(req("Secret").as_bytes(), &worker("pc1")).await.unwrap();
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains("minted for worker \"pc1\"") && msg.contains("'Secret'"), "{msg}");
        let v = s.handle(req("Whoami").as_bytes(), &worker("pc1")).await.unwrap();
        assert_eq!(v["result"], "pc1", "an allowed method, and the handler knows the caller");
        let v = s.handle(req("Echo").as_bytes().to_vec().as_slice(), &worker("pc1")).await.unwrap();
        assert!(v["error"]["message"].as_str().unwrap().contains("param"), "read methods stay open: {v}");
        let v = s.handle(req("Secret").as_bytes(), &worker("me")).await.unwrap();
        assert_eq!(v["result"], "s", "the node's own token may call anything");
        let v = s.handle(req("Whoami").as_bytes(), &Caller::operator(admin.clone())).await.unwrap();
        assert_eq!(v["result"], Value::Null, "the operator's token names no worker");
        assert_eq!(calling_worker(), None, "outside a request there is no caller");
    }

    struct OnlyAdmin;
    impl Authenticator for OnlyAdmin {
        fn verify(&self, token: &str) -> BoxFuture<'_, Result<Caller, String>> {
            let ok = token == "good";
            async move {
                if ok {
                    Ok(Caller::operator(Permission::Admin.with_lower()))
                } else {
                    Err("bad token".into())
                }
            }
            .boxed()
        }
    }

    #[tokio::test]
    async fn websocket_and_http_share_the_route() {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message as WsMessage;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(Arc::new(server()), Arc::new(OnlyAdmin));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/rpc/v0?token=good")).await.unwrap();
        for (id, body) in [
            (1, r#"{"jsonrpc":"2.0","id":1,"method":"Filecoin.Echo","params":[5]}"#),
            (2, r#"{"jsonrpc":"2.0","id":2,"method":"Filecoin.Secret","params":[]}"#),
        ] {
            ws.send(WsMessage::Text(body.into())).await.unwrap();
            let reply = ws.next().await.unwrap().unwrap();
            let v: Value = serde_json::from_str(reply.to_text().unwrap()).unwrap();
            assert_eq!(v["id"], id);
            assert!(v["error"].is_null(), "{v}");
        }
        // No token over WebSocket: read-only.
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/rpc/v0")).await.unwrap();
        ws.send(WsMessage::Text(r#"{"jsonrpc":"2.0","id":3,"method":"Filecoin.Secret","params":[]}"#.into()))
            .await
            .unwrap();
        let v: Value = serde_json::from_str(ws.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
        assert_eq!(v["error"]["message"], "missing permission to invoke 'Secret' (need 'admin')");
        // A bad token is refused before the upgrade.
        let err = tokio_tungstenite::connect_async(format!("ws://{addr}/rpc/v0?token=bad")).await.unwrap_err();
        assert!(err.to_string().contains("401"), "{err}");
    }

    /// A body that trickles in is cut at the body timeout with 408; a refused token is
    /// answered before any of the body is read.
    #[tokio::test]
    async fn a_trickling_body_is_cut_off() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app =
            router_timed("/rpc/v0", Arc::new(server()), Arc::new(OnlyAdmin), std::time::Duration::from_millis(300));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let read = |mut s: tokio::net::TcpStream| async move {
            let mut buf = vec![0u8; 512];
            let n = tokio::time::timeout(std::time::Duration::from_secs(3), s.read(&mut buf)).await.unwrap().unwrap();
            String::from_utf8_lossy(&buf[..n]).to_string()
        };
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /rpc/v0 HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n[{\"id\":").await.unwrap();
        let t0 = std::time::Instant::now();
        let answer = read(s).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("did not arrive within"), "{answer}");
        assert!(t0.elapsed() < std::time::Duration::from_secs(2));
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /rpc/v0?token=bad HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n").await.unwrap();
        assert!(read(s).await.starts_with("HTTP/1.1 401"), "refused without waiting for the body");
    }

    #[test]
    #[should_panic(expected = "no permission declared")]
    fn undeclared_methods_are_refused() {
        let mut s = RpcServer::new(TABLE);
        s.register("Undeclared", |_p: Params| async move { Ok(0) });
    }
}
