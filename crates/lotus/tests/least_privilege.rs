//! Least privilege behind Lotus's wire (issue 12), on mock proofs: two workers join with tokens
//! minted for them (`auth api-info --perm admin --worker NAME`) and seal a sector across their
//! nodes (AP and PC1 on A; PC2 and C2 on B, which moves A's files with its own token). Each
//! token then reaches only what its worker does: not the operator's methods, not another
//! worker's API, paths or calls, not a `DELETE` that could remove a last copy. `auth rotate`
//! replaces the secret while a Commit2 runs: old tokens are refused at once on the miner and on
//! the workers, the workers carry on with the tokens the miner handed them, and the sector
//! reaches Proving.

mod common;

use common::*;
use lotus_api::auth::Permission;
use lotus_api::methods;
use serde_json::{json, Value};
use std::time::Duration;

fn config() -> String {
    seals_nothing_config(
        "  LocalWorkerName = \"miner-host\"\n[Sealing]\n  MinRetryTime = \"2s\"\n[Devnet]\n  BlockDelay = \"500ms\"\n  SeedDelayEpochs = 4\n",
    )
}

/// POST one call; (HTTP status, the body as JSON or Null).
async fn post(url: &str, token: Option<&str>, method: &str, params: Value) -> (u16, Value) {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": format!("Filecoin.{method}"), "params": params});
    let mut req = reqwest::Client::new().post(url).json(&body).timeout(Duration::from_secs(10));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, serde_json::from_str(&resp.text().await.unwrap()).unwrap_or(Value::Null))
}

/// The error message of a call answered with 200.
async fn refusal(url: &str, token: &str, method: &str, params: Value) -> String {
    let (status, v) = post(url, Some(token), method, params).await;
    assert_eq!(status, 200, "{method}: {v}");
    v["error"]["message"].as_str().unwrap_or_else(|| panic!("{method} was not refused: {v}")).to_string()
}

fn token_of(api_info: &str) -> String {
    api_info.split(':').next().unwrap().to_string()
}

fn path_id(repo: &std::path::Path) -> String {
    let meta: Value = serde_json::from_slice(&std::fs::read(repo.join("sectorstore.json")).unwrap()).unwrap();
    meta["ID"].as_str().unwrap().to_string()
}

/// The running Commit2 on `host` (from `WorkerJobs`, with the operator's token).
async fn running_c2(url: &str, admin: &str, host: &str) -> Option<Value> {
    let (_, v) = post(url, Some(admin), "WorkerJobs", json!([])).await;
    v["result"].as_object()?.values().flat_map(|jobs| jobs.as_array().cloned().unwrap_or_default()).find(|j| {
        j["Task"] == "seal/v0/commit/2"
            && j["Hostname"] == host
            && j["RunWait"] == 0
            && j["ID"]["ID"] != "00000000-0000-0000-0000-000000000000" // its start answered
    })
}

#[test]
fn worker_tokens_reach_only_their_worker_and_a_rotation_loses_no_task() {
    let c = Cluster::mock("PC1=300ms,C2=8s");
    c.write_config(&config());
    let miner = c.start_miner();
    let minted = |name: &str| {
        let out = c.miner_ok(&["auth", "api-info", "--perm", "admin", "--worker", name]);
        out.trim().strip_prefix("MINER_API_INFO=").expect("api-info output").to_string()
    };
    let (info_a, info_b) = (minted("pc1"), minted("c2-box"));
    let (token_a, token_b) = (token_of(&info_a), token_of(&info_b));
    assert_eq!(lotus_api::auth::token_worker(&token_a).as_deref(), Some("pc1"));
    let e = miner_fails(&c, &["auth", "create-token", "--perm", "admin", "--worker", "a b"]);
    assert!(e.contains("worker name \"a b\" has ' '"), "{e}");

    let common = ["run", "--listen", "127.0.0.1:0", "--no-default"];
    let a_args = [&common[..], &["--name", "host-a", "--addpiece", "--precommit1", "--unseal"]].concat();
    let mut a = c.start_worker_as("worker-a", &a_args, &info_a);
    let b = c.start_worker_as(
        "worker-b",
        &[&common[..], &["--name", "host-b", "--precommit2", "--commit"]].concat(),
        &info_b,
    );
    wait_or_show(
        Duration::from_secs(30),
        "both workers registered with their paths attached",
        || format!("{}\n{}", tail(&a.log(), 20), tail(&b.log(), 20)),
        || c.workers().len() == 3 && c.miner_ok(&["storage", "list"]).matches("URL: ").count() == 3,
    );
    let admin = token_of(&c.api_info());
    let miner_url = format!("http://127.0.0.1:{}/rpc/v0", c.port());
    let url_of = |repo: &str| format!("http://{}/rpc/v0", c.worker_addr(repo));
    let (a_url, b_url) = (url_of("worker-a"), url_of("worker-b"));
    let (a_path, b_path) = (path_id(&c.path("worker-a")), path_id(&c.path("worker-b")));
    let rt = tokio::runtime::Runtime::new().unwrap();

    // Sector 1 seals across both workers; while B's Commit2 runs, A's token cannot answer it.
    assert_eq!(c.miner_ok(&["sectors", "pledge"]).trim(), "Created CC sector:  1");
    let job = wait_or_show_value(
        Duration::from_secs(60),
        "sector 1's Commit2 running on host-b",
        || tail(&miner.log(), 30),
        || rt.block_on(running_c2(&miner_url, &admin, "host-b")),
    );
    let e = rt.block_on(refusal(&miner_url, &token_a, "ReturnSealCommit2", json!([job["ID"], null, null])));
    assert!(e.contains("is not a call of worker \"pc1\""), "{e}");
    wait_or_show(
        Duration::from_secs(60),
        "sector 1 proving",
        || c.miner_ok(&["sectors", "status", "--log", "1"]),
        || sector_state(&c, 1) == "Proving",
    );
    let found = c.miner_ok(&["storage", "find", "1"]);
    assert!(found.contains("(sealed)") && !found.contains("Remote"), "in the miner's store only:\n{found}");
    // B moved A's files with its own token (the move's DELETE on A named B's path in keep).
    assert!(!b.log().contains("could not remove the source copy"), "{}", tail(&b.log(), 30));
    for dir in ["sealed", "cache"] {
        let left: Vec<_> =
            std::fs::read_dir(c.path("worker-a").join(dir)).unwrap().flatten().map(|e| e.file_name()).collect();
        assert!(!left.iter().any(|n| n.to_string_lossy().starts_with("s-t01000-1")), "{dir} left on A: {left:?}");
    }

    rt.block_on(async {
        // The operator's methods, with a worker's token: every one refused, by name.
        let mut refused = 0;
        for (method, need) in methods::MINER {
            if *need == Permission::Read || lotus_api::contract::miner::WORKER_CALLS.contains(method) {
                continue;
            }
            let e = refusal(&miner_url, &token_a, method, json!([])).await;
            assert!(e.contains("minted for worker \"pc1\"") && e.contains(&format!("'{method}'")), "{method}: {e}");
            refused += 1;
        }
        assert!(refused > 30, "{refused} operator methods checked");
        for m in ["AuthNew", "Shutdown", "AuthRotate", "PledgeSector"] {
            assert!(refusal(&miner_url, &token_a, m, json!([])).await.contains("minted for worker"), "{m}");
        }
        // Read methods stay open to it, as to anyone; without a token they answer without the
        // cluster's insides (the sector log names hosts, `Files` lists URLs).
        let (_, v) = post(&miner_url, Some(&token_a), "SectorsList", json!([])).await;
        assert!(v["result"].is_array(), "{v}");
        let (_, v) = post(&miner_url, Some(&token_a), "SectorsStatus", json!([1, false])).await;
        assert!(!v["result"]["Log"].as_array().unwrap().is_empty() && !v["result"]["Files"].as_array().unwrap().is_empty(), "{v}");
        let (_, v) = post(&miner_url, None, "SectorsStatus", json!([1, false])).await;
        assert_eq!(v["result"]["State"], "Proving", "{v}");
        assert_eq!((v["result"]["Log"].clone(), v["result"]["Files"].clone()), (json!([]), json!([])), "{v}");
        // Another worker's API: nothing; its own: everything.
        for (method, _) in methods::WORKER {
            let e = refusal(&b_url, &token_a, method, json!([])).await;
            assert!(e.contains("minted for worker \"pc1\""), "{method} on B: {e}");
        }
        let (_, v) = post(&a_url, Some(&token_a), "Paths", json!([])).await;
        assert!(v["result"].is_array(), "A's own token on A: {v}");

        // Another worker's path, and the miner's store: not attachable, declarable, droppable.
        let sector = json!({"Miner": 1000, "Number": 1});
        let (_, found) = post(&miner_url, Some(&admin), "StorageFindSector", json!([sector, 2, 2048, false])).await;
        let store = found["result"][0]["ID"].as_str().unwrap().to_string();
        let stat = json!({"Capacity": 1, "Available": 1, "FSAvailable": 1, "Reserved": 0, "Max": 0, "Used": 0});
        let b_remote = b_url.replace("/rpc/v0", "/remote");
        let cases = [
            ("StorageDeclareSector", json!([b_path, sector, 1, true]), "belongs to worker \"c2-box\""),
            ("StorageDropSector", json!([store, sector, 7]), "belongs to the operator"),
            ("StorageReportHealth", json!([b_path, {"Stat": stat, "Err": ""}]), "belongs to worker \"c2-box\""),
            ("StorageDetach", json!([b_path, b_remote]), "belongs to worker \"c2-box\""),
            (
                "StorageAttach",
                json!([{"ID": b_path, "URLs": ["http://127.0.0.1:1/remote"], "Weight": 10, "MaxStorage": 0, "CanSeal": true, "CanStore": true}, stat]),
                "belongs to worker \"c2-box\"",
            ),
            (
                "StorageAttach",
                json!([{"ID": store, "URLs": ["http://127.0.0.1:1/remote"], "Weight": 10, "MaxStorage": 0, "CanSeal": true, "CanStore": true}, stat]),
                "belongs to the operator",
            ),
        ];
        for (method, params, want) in &cases {
            let e = refusal(&miner_url, &token_a, method, params.clone()).await;
            assert!(e.contains(want), "{method}: {e}");
        }
        // B's token still reaches B's own path (reported roomy: the scheduler believes it).
        let roomy = json!({"Capacity": 1u64 << 40, "Available": 1u64 << 40, "FSAvailable": 1u64 << 40, "Reserved": 0, "Max": 0, "Used": 0});
        let (_, v) = post(&miner_url, Some(&token_b), "StorageReportHealth", json!([b_path, {"Stat": roomy, "Err": ""}])).await;
        assert!(v["error"].is_null(), "{v}");

        // A DELETE that would remove the only copy: refused to a worker's token, kept or not.
        let file = format!("http://127.0.0.1:{}/remote/sealed/s-t01000-1", c.port());
        for keep in ["", &format!("?keep={a_path}"), &format!("?keep={store}")] {
            let resp = reqwest::Client::new().delete(format!("{file}{keep}")).bearer_auth(&token_a).send().await.unwrap();
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap();
            assert_eq!(status, 403, "keep {keep:?}: {body}");
            assert!(body.contains("nothing removed"), "{body}");
        }
    });
    let found = c.miner_ok(&["storage", "find", "1"]);
    assert!(found.contains("(sealed)") && found.contains("(cache)"), "nothing was dropped or removed:\n{found}");

    // `auth rotate` while sector 2's Commit2 runs on B.
    assert_eq!(c.miner_ok(&["sectors", "pledge"]).trim(), "Created CC sector:  2");
    wait_or_show_value(
        Duration::from_secs(60),
        "sector 2's Commit2 running on host-b",
        || tail(&miner.log(), 30),
        || rt.block_on(running_c2(&miner_url, &admin, "host-b")),
    );
    assert!(miner_fails(&c, &["auth", "rotate"]).contains("--really-do-it"));
    let out = c.miner_ok(&["auth", "rotate", "--really-do-it"]);
    for host in ["host-a", "host-b"] {
        assert!(out.lines().any(|l| l.contains(host) && l.contains("took its new token")), "{host}:\n{out}");
    }
    rt.block_on(async {
        for (url, token, what) in [
            (&miner_url, &admin, "the old admin token on the miner"),
            (&miner_url, &token_a, "A's old token on the miner"),
            (&b_url, &admin, "the old admin token on worker B"),
            (&a_url, &token_a, "A's old token on worker A"),
        ] {
            let (status, v) = post(url, Some(token), "Version", json!([])).await;
            assert_eq!(status, 401, "{what}: {v}");
        }
    });
    // The workers carry their new tokens, naming them as before; the CLI uses the new one.
    let new_a = std::fs::read_to_string(c.path("worker-a").join("token")).unwrap();
    assert_ne!(new_a.trim(), token_a);
    assert_eq!(lotus_api::auth::token_worker(new_a.trim()).as_deref(), Some("pc1"));
    c.miner_ok(&["info"]);
    wait_or_show(
        Duration::from_secs(60),
        "sector 2 proving after the rotation",
        || format!("{}\n{}", c.miner_ok(&["sectors", "status", "--log", "2"]), tail(&b.log(), 20)),
        || sector_state(&c, 2) == "Proving",
    );
    let log = c.miner_ok(&["sectors", "status", "--log", "2"]);
    assert_eq!(log.matches(", C2 on host-b").count(), 1, "Commit2 ran once:\n{log}");
    assert!(log.contains("Retries:\t0"), "no step was retried:\n{log}");
    assert_eq!(c.workers().len(), 3, "both workers still registered");

    // A restarted with its old MINER_API_INFO comes back with the rotated token from its repo.
    a.kill();
    let a = c.start_worker_as("worker-a", &a_args, &info_a);
    wait_or_show(
        Duration::from_secs(30),
        "worker A back with its stored token",
        || tail(&a.log(), 20),
        || a.log().contains("using the rotated token stored in the repo") && a.log().contains("worker API listening"),
    );
}
