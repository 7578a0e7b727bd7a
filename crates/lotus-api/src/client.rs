//! JSON-RPC client for `/rpc/v0` over HTTP POST (what Lotus workers use towards the miner).

use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {url}: {why}. Is the daemon running and listening there?")]
    Unreachable { url: String, why: String },
    /// Nothing listens there: the process is gone (not merely slow or cut off).
    #[error("cannot reach {url}: {why}. Is the daemon running and listening there?")]
    Refused { url: String, why: String },
    #[error("{url} did not answer within {secs} s")]
    Timeout { url: String, secs: u64 },
    #[error("{url} refused the token (HTTP 401): {body}")]
    Unauthorized { url: String, body: String },
    #[error("{url} answered HTTP {status}: {body}")]
    Http { url: String, status: u16, body: String },
    #[error("{method} failed: {message}")]
    Rpc { method: String, code: i64, message: String },
    #[error("{url} answered {got} bytes or more, over the {limit}-byte limit of one answer: refused")]
    TooLarge { url: String, got: u64, limit: usize },
    #[error("{method} returned something unexpected: {why}")]
    Decode { method: String, why: String },
}

impl ClientError {
    /// The remote end is not there (connection refused, reset, timed out).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ClientError::Unreachable { .. } | ClientError::Refused { .. } | ClientError::Timeout { .. })
    }
}

pub struct RpcClient {
    http: reqwest::Client,
    url: String,
    /// Shared with whatever else on this node calls out with the same token, so a rotated
    /// token reaches every holder at once.
    token: Option<crate::SharedToken>,
    timeout: Duration,
    next_id: AtomicU64,
}

impl RpcClient {
    /// `url` is the full endpoint, e.g. `http://127.0.0.1:2345/rpc/v0`.
    pub fn new(url: impl Into<String>, token: Option<String>, timeout: Duration) -> Self {
        Self::with_token(url, token.filter(|t| !t.is_empty()).map(crate::SharedToken::new), timeout)
    }

    /// A client calling with a token it shares with other holders.
    pub fn with_token(url: impl Into<String>, token: Option<crate::SharedToken>, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .expect("reqwest client without TLS builds");
        RpcClient { http, url: url.into(), token, timeout, next_id: AtomicU64::new(1) }
    }

    /// The token this client calls with (shared: setting it changes it for every holder).
    pub fn token(&self) -> Option<&crate::SharedToken> {
        self.token.as_ref()
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Call a method of the contract with its typed params.
    pub async fn request<M: crate::contract::Method>(&self, params: M::Params) -> Result<M::Result, ClientError> {
        self.request_timeout::<M>(params, self.timeout).await
    }

    pub async fn request_timeout<M: crate::contract::Method>(
        &self,
        params: M::Params,
        timeout: Duration,
    ) -> Result<M::Result, ClientError> {
        use crate::contract::ParamList;
        self.call_timeout(M::NAME, Value::Array(params.to_values()), timeout).await
    }

    pub async fn call<T: DeserializeOwned>(&self, method: &str, params: Value) -> Result<T, ClientError> {
        self.call_timeout(method, params, self.timeout).await
    }

    pub async fn call_timeout<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": format!("Filecoin.{method}"), "params": params});
        let mut req = self.http.post(&self.url).json(&body).timeout(timeout);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.get());
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                ClientError::Timeout { url: self.url.clone(), secs: timeout.as_secs() }
            } else if refused(&e) {
                ClientError::Refused { url: self.url.clone(), why: root_cause(&e) }
            } else {
                ClientError::Unreachable { url: self.url.clone(), why: root_cause(&e) }
            }
        })?;
        let status = resp.status();
        let text = self.read_body(resp).await?;
        if status.as_u16() == 401 {
            return Err(ClientError::Unauthorized { url: self.url.clone(), body: text.trim().to_string() });
        }
        if !status.is_success() {
            return Err(ClientError::Http {
                url: self.url.clone(),
                status: status.as_u16(),
                body: text.trim().to_string(),
            });
        }
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| ClientError::Decode { method: method.into(), why: format!("not JSON: {e}") })?;
        if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
            return Err(ClientError::Rpc {
                method: method.into(),
                code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: err.get("message").and_then(Value::as_str).unwrap_or("(no message)").to_string(),
            });
        }
        serde_json::from_value(v.get("result").cloned().unwrap_or(Value::Null))
            .map_err(|e| ClientError::Decode { method: method.into(), why: e.to_string() })
    }
}

impl RpcClient {
    /// Open a channel method of the contract (go-jsonrpc's `<-chan T`) over a WebSocket to
    /// this client's endpoint: the values arrive on the returned receiver until the server
    /// closes the channel or the connection ends (the receiver then yields `None`).
    pub async fn subscribe<M: crate::contract::Method>(
        &self,
        params: M::Params,
    ) -> Result<tokio::sync::mpsc::Receiver<M::Result>, ClientError>
    where
        M::Result: Send + 'static,
    {
        use crate::contract::ParamList;
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};
        let ws_url = self.url.replacen("http://", "ws://", 1);
        let unreachable = |why: String| ClientError::Unreachable { url: ws_url.clone(), why };
        let mut req = ws_url.as_str().into_client_request().map_err(|e| unreachable(e.to_string()))?;
        if let Some(t) = &self.token {
            let v = format!("Bearer {}", t.get())
                .parse()
                .map_err(|_| unreachable("the token is not a valid header".into()))?;
            req.headers_mut().insert("Authorization", v);
        }
        let connect = tokio_tungstenite::connect_async(req);
        let (mut ws, _) = tokio::time::timeout(self.timeout, connect)
            .await
            .map_err(|_| ClientError::Timeout { url: ws_url.clone(), secs: self.timeout.as_secs() })?
            .map_err(|e| match e {
                tokio_tungstenite::tungstenite::Error::Http(r) if r.status().as_u16() == 401 => {
                    ClientError::Unauthorized { url: ws_url.clone(), body: "the token was refused".into() }
                }
                e => unreachable(e.to_string()),
            })?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": format!("Filecoin.{}", M::NAME), "params": params.to_values()});
        ws.send(Message::Text(body.to_string().into())).await.map_err(|e| unreachable(e.to_string()))?;
        // The answer is the channel's id; values follow as `xrpc.ch.val` notifications.
        let chan = loop {
            let msg = tokio::time::timeout(self.timeout, ws.next())
                .await
                .map_err(|_| ClientError::Timeout { url: ws_url.clone(), secs: self.timeout.as_secs() })?;
            let Some(Ok(Message::Text(t))) = msg else {
                return Err(unreachable(format!("the connection ended before {} answered", M::NAME)));
            };
            let v: Value = serde_json::from_str(&t)
                .map_err(|e| ClientError::Decode { method: M::NAME.into(), why: format!("not JSON: {e}") })?;
            if v.get("id") != Some(&json!(id)) {
                continue;
            }
            if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
                return Err(ClientError::Rpc {
                    method: M::NAME.into(),
                    code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
                    message: err.get("message").and_then(Value::as_str).unwrap_or("(no message)").to_string(),
                });
            }
            break v.get("result").cloned().unwrap_or(Value::Null);
        };
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                let Message::Text(t) = msg else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&t) else { continue };
                let params = v.get("params").and_then(Value::as_array);
                match (v.get("method").and_then(Value::as_str), params) {
                    (Some("xrpc.ch.val"), Some(p)) if p.first() == Some(&chan) => {
                        let Some(val) = p.get(1).cloned().and_then(|x| serde_json::from_value(x).ok()) else {
                            tracing::warn!(method = M::NAME, "a channel value did not decode; closing the channel");
                            return;
                        };
                        if tx.send(val).await.is_err() {
                            // Nobody listens: cancel the call, as go-jsonrpc's client does.
                            let cancel = json!({"jsonrpc": "2.0", "method": "xrpc.cancel", "params": [id]});
                            let _ = ws.send(Message::Text(cancel.to_string().into())).await;
                            return;
                        }
                    }
                    (Some("xrpc.ch.close"), Some(p)) if p.first() == Some(&chan) => return,
                    _ => {}
                }
            }
        });
        Ok(rx)
    }
}

/// The most bytes of one answer a client reads: a node that answers more is refused
/// instead of filling this process's memory.
pub const MAX_RESPONSE: usize = 256 << 20;

impl RpcClient {
    async fn read_body(&self, mut resp: reqwest::Response) -> Result<String, ClientError> {
        let too_big = |got: u64| ClientError::TooLarge { url: self.url.clone(), got, limit: MAX_RESPONSE };
        if let Some(n) = resp.content_length().filter(|n| *n > MAX_RESPONSE as u64) {
            return Err(too_big(n));
        }
        let mut body = Vec::new();
        while let Some(chunk) =
            resp.chunk().await.map_err(|e| ClientError::Unreachable { url: self.url.clone(), why: root_cause(&e) })?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_RESPONSE {
                return Err(too_big(body.len() as u64));
            }
        }
        String::from_utf8(body).map_err(|e| ClientError::Unreachable {
            url: self.url.clone(),
            why: format!("the answer is not UTF-8: {e}"),
        })
    }
}

/// Whether the connection was refused (an I/O error of that kind somewhere in the chain).
fn refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused) {
            return true;
        }
        cur = err.source();
    }
    false
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &dyn std::error::Error = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
