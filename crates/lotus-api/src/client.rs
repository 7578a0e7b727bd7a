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
    token: Option<String>,
    timeout: Duration,
    next_id: AtomicU64,
}

impl RpcClient {
    /// `url` is the full endpoint, e.g. `http://127.0.0.1:2345/rpc/v0`.
    pub fn new(url: impl Into<String>, token: Option<String>, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .expect("reqwest client without TLS builds");
        RpcClient { http, url: url.into(), token: token.filter(|t| !t.is_empty()), timeout, next_id: AtomicU64::new(1) }
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
            req = req.bearer_auth(t);
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
        let text =
            resp.text().await.map_err(|e| ClientError::Unreachable { url: self.url.clone(), why: root_cause(&e) })?;
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
