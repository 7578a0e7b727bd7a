//! API permissions against real daemons: for every method and every permission level, a call
//! below the method's permission is refused; garbled or forged tokens get HTTP 401; no token
//! means read-only. Checked on the miner and on a worker (which verifies through the miner).

mod common;

use common::*;
use lotus_api::auth::Permission;
use lotus_api::methods;
use serde_json::{json, Value};
use std::time::Duration;

/// POST one call; returns (HTTP status, body as JSON or Null).
async fn post(url: &str, token: Option<&str>, method: &str) -> (u16, Value) {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": format!("Filecoin.{method}"), "params": []});
    let mut req = reqwest::Client::new().post(url).json(&body).timeout(Duration::from_secs(10));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn permission_error(v: &Value) -> Option<String> {
    let m = v["error"]["message"].as_str()?;
    m.starts_with("missing permission").then(|| m.to_string())
}

/// Methods whose call would change the daemon's state are skipped when allowed (we only want
/// to see that the permission check passes, not stop the daemon).
const DESTRUCTIVE: [&str; 4] = ["Shutdown", "SetEnabled", "PledgeSector", "AuthRotate"];

async fn check_table(url: &str, table: &[(&str, Permission)], tokens: &[(Permission, String)]) {
    for (method, need) in table {
        for (level, token) in tokens {
            let allowed = level >= need;
            if allowed && DESTRUCTIVE.contains(method) {
                continue;
            }
            let (status, v) = post(url, Some(token), method).await;
            assert_eq!(status, 200, "{method} with a {level} token");
            match (allowed, permission_error(&v)) {
                (true, Some(e)) => panic!("{method} refused a {level} token: {e}"),
                (false, None) => panic!("{method} (needs {need}) accepted a {level} token: {v}"),
                (false, Some(e)) => assert_eq!(e, format!("missing permission to invoke '{method}' (need '{need}')")),
                (true, None) => {}
            }
        }
        // No token at all: read-only.
        if *need > Permission::Read {
            let (_, v) = post(url, None, method).await;
            assert!(permission_error(&v).is_some(), "{method} answered a call without a token: {v}");
        }
    }
}

#[test]
fn every_method_checks_its_permission() {
    let c = Cluster::new();
    let _miner = c.start_miner();
    let _w = c.start_worker("w", &["run", "--listen", "127.0.0.1:0", "--name", "authw"]);
    wait_until(Duration::from_secs(30), "the worker to register", || c.workers().len() == 2);

    let tokens: Vec<(Permission, String)> = Permission::ALL
        .iter()
        .map(|p| (*p, c.miner_ok(&["auth", "create-token", "--perm", p.as_str()]).trim().to_string()))
        .collect();
    let miner_url = format!("http://127.0.0.1:{}/rpc/v0", c.port());
    let worker_addr = std::fs::read_to_string(c.path("w").join("api")).unwrap();
    let worker_url = lotus_api::ApiInfo::parse(worker_addr.trim()).unwrap().rpc_url();

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        check_table(&miner_url, methods::MINER, &tokens).await;
        check_table(&worker_url, methods::WORKER, &tokens).await;

        // No token: read-only methods answer.
        let (status, v) = post(&miner_url, None, "Version").await;
        assert_eq!((status, v["result"]["APIVersion"].as_u64()), (200, Some(methods::MINER_API_VERSION as u64)));

        // Garbled and forged tokens are refused outright with 401, on both daemons.
        let admin = &tokens[3].1;
        let forged = lotus_api::JwtSecret::generate().create_token(&Permission::Admin.with_lower());
        let mut truncated = admin.clone();
        truncated.truncate(admin.len() - 3);
        for bad in ["garbage", "a.b.c", truncated.as_str(), forged.as_str()] {
            for url in [&miner_url, &worker_url] {
                let (status, _) = post(url, Some(bad), "Version").await;
                assert_eq!(status, 401, "token {bad:?} at {url}");
            }
        }
        // `?token=` works like the header.
        let resp = reqwest::Client::new()
            .post(format!("{miner_url}?token={admin}"))
            .json(&json!({"jsonrpc":"2.0","id":1,"method":"Filecoin.WorkerStats","params":[]}))
            .send()
            .await
            .unwrap();
        let v: Value = resp.json().await.unwrap();
        assert!(v["result"].is_object(), "{v}");
    });
}
