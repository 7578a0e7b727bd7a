//! Our `lotus-worker` under a stand-in for Lotus's `lotus-miner`: a server that answers the
//! miner methods a worker calls as Lotus does, registers the worker the way Lotus's
//! `WorkerConnect` does (Version, Session, Info, TaskTypes, Paths) and drives a 2KiB sector
//! through AddPiece, PreCommit1/2, Commit1/2 and Finalize with params built from Lotus's own
//! documented examples (`lotus-api/fixtures/worker.json`), reading the results the worker
//! returns through Lotus's `Return*` shapes. Mock proofs: the subject is the wire, not the
//! proof (the proof is checked with the mock backend's verifier).

mod common;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use common::*;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct StandIn {
    /// The URL the worker registered with `WorkerConnect`.
    worker_url: Option<String>,
    /// `Return*` calls as they came: (method, params).
    returns: Vec<(String, Vec<Value>)>,
    /// Methods the worker called, in order (first call of each).
    called: Vec<String>,
}

type Shared = Arc<Mutex<StandIn>>;

/// Lotus's miner API 1.5.0, as its `Version` answers.
const LOTUS_MINER_API: u64 = (1 << 16) | (5 << 8);

async fn miner_rpc(State(st): State<Shared>, Json(req): Json<Value>) -> Json<Value> {
    let method = req["method"].as_str().unwrap_or("").trim_start_matches("Filecoin.").to_string();
    let params = req["params"].as_array().cloned().unwrap_or_default();
    let id = req["id"].clone();
    let mut s = st.lock().unwrap();
    if !s.called.contains(&method) {
        s.called.push(method.clone());
    }
    let result = match method.as_str() {
        "Version" => {
            json!({"Version": "1.34.0+mainnet", "APIVersion": LOTUS_MINER_API, "BlockDelay": 30, "Agent": "lotus"})
        }
        "Session" => json!("8d3c6f2e-0000-4000-8000-000000000001"),
        "ActorAddress" => json!("t01000"),
        "ActorSectorSize" => json!(2048),
        "AuthVerify" => json!(["read", "write", "sign", "admin"]),
        "StorageAttach" | "StorageReportHealth" | "StorageDeclareSector" | "StorageDropSector" => Value::Null,
        "StorageFindSector" => json!([]),
        "WorkerConnect" => {
            s.worker_url = params[0].as_str().map(String::from);
            Value::Null
        }
        m if m.starts_with("Return") => {
            s.returns.push((m.to_string(), params));
            Value::Null
        }
        other => {
            return Json(
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": 1, "message": format!("stand-in: no {other}")}}),
            )
        }
    };
    Json(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

/// Lotus's documented example params of a worker method, with some replaced.
fn lotus_params(method: &str, set: &[(usize, Value)]) -> Value {
    let path = format!("{}/../lotus-api/fixtures/worker.json", env!("CARGO_MANIFEST_DIR"));
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut p = doc["methods"][method]["params"].as_array().cloned().unwrap_or_default();
    for (i, v) in set {
        p[*i] = v.clone();
    }
    Value::Array(p)
}

async fn call(url: &str, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": format!("Filecoin.{method}"), "params": params});
    let r: Value = reqwest::Client::new()
        .post(url)
        .bearer_auth("a-lotus-miner-token")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(r["error"].is_null(), "{method}: {}", r["error"]);
    r["result"].clone()
}

/// Start a task call and wait for its `Return*`: (result param, error param).
async fn run_task(st: &Shared, url: &str, method: &str, params: Value) -> Vec<Value> {
    let call_id = call(url, method, params).await;
    assert!(call_id["ID"].is_string() && call_id["Sector"]["Number"] == 1, "{method}: CallID {call_id}");
    let ret = format!("Return{method}");
    for _ in 0..600 {
        if let Some((_, p)) = st.lock().unwrap().returns.iter().find(|(m, p)| *m == ret && p[0] == call_id) {
            assert!(p.last().unwrap().is_null(), "{method} failed: {}", p.last().unwrap());
            return p.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {ret} for {call_id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_worker_serves_a_lotus_miner() {
    let dir = tempfile::tempdir().unwrap();
    let st: Shared = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = Router::new().route("/rpc/v0", post(miner_rpc)).with_state(st.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let log = dir.path().join("worker.log");
    let f = std::fs::File::create(&log).unwrap();
    let child = std::process::Command::new(WORKER)
        .env("LOTUS_WORKER_PATH", dir.path().join("worker"))
        .env("MINER_API_INFO", format!("a-lotus-miner-token:/ip4/127.0.0.1/tcp/{port}/http"))
        .env("LOTUS_MINER_PATH", dir.path().join("no-miner-repo"))
        .env("RUST_LOG", "info")
        .args(["run", "--listen", "127.0.0.1:0", "--mock-proofs", "--mock-task-durations="])
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .unwrap();
    let _worker = Proc { child, log };
    let url = wait_or_show_value(
        Duration::from_secs(30),
        "the worker to call WorkerConnect",
        || _worker.log(),
        || st.lock().unwrap().worker_url.clone(),
    );
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with("/rpc/v0"), "{url}");

    // Registration, as Lotus's WorkerConnect and AddWorker do it.
    assert_eq!(call(&url, "Version", json!([])).await, json!(67328), "Worker API 1.7.0 as a bare number");
    let session = call(&url, "Session", json!([])).await;
    assert!(session.as_str().is_some_and(|s| s.len() == 36 && s != "00000000-0000-0000-0000-000000000000"));
    let info = call(&url, "Info", json!([])).await;
    assert!(info["Resources"]["CPUs"].as_u64().unwrap() > 0 && info["Resources"]["Resources"].is_object(), "{info}");
    let types = call(&url, "TaskTypes", json!([])).await;
    assert_eq!(types["seal/v0/precommit/1"], json!({}), "TaskTypes is a set: {types}");
    let paths = call(&url, "Paths", json!([])).await;
    assert!(paths[0]["LocalPath"].is_string() && paths[0]["CanSeal"] == true, "{paths}");
    {
        let s = st.lock().unwrap();
        for m in ["Version", "StorageAttach", "WorkerConnect"] {
            assert!(s.called.iter().any(|c| c == m), "the worker never called {m}: {:?}", s.called);
        }
    }

    let sector = json!({"ID": {"Miner": 1000, "Number": 1}, "ProofType": 5});
    let ticket = json!("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=");
    let seed = json!("CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=");
    let ap = run_task(
        &st,
        &url,
        "AddPiece",
        lotus_params(
            "AddPiece",
            &[(0, sector.clone()), (1, json!([])), (2, json!(2032)), (3, json!({"Type": "null", "Info": "2032"}))],
        ),
    )
    .await;
    let piece = ap[1].clone();
    assert_eq!(piece["Size"], 2048, "the padded size: {piece}");
    assert!(piece["PieceCID"]["/"].as_str().unwrap().starts_with("baga6ea4sea"), "a CommP CID: {piece}");

    let pc1 = run_task(
        &st,
        &url,
        "SealPreCommit1",
        lotus_params("SealPreCommit1", &[(0, sector.clone()), (1, ticket.clone()), (2, json!([piece]))]),
    )
    .await;
    use base64::Engine;
    let p1o = base64::engine::general_purpose::STANDARD.decode(pc1[1].as_str().unwrap()).unwrap();
    let p1o_json: Value = serde_json::from_slice(&p1o).unwrap();
    assert_eq!(p1o_json["_lotus_SealRandomness"], ticket, "Lotus's PreCommit1Out carries the ticket");

    let pc2 = run_task(
        &st,
        &url,
        "SealPreCommit2",
        lotus_params("SealPreCommit2", &[(0, sector.clone()), (1, pc1[1].clone())]),
    )
    .await;
    let cids = pc2[1].clone();
    assert!(cids["Sealed"]["/"].as_str().unwrap().starts_with("bagboea4b5abc"), "{cids}");
    assert!(cids["Unsealed"]["/"].as_str().unwrap().starts_with("baga6ea4sea"), "{cids}");

    let c1 = run_task(
        &st,
        &url,
        "SealCommit1",
        lotus_params(
            "SealCommit1",
            &[(0, sector.clone()), (1, ticket.clone()), (2, seed.clone()), (3, json!([piece])), (4, cids.clone())],
        ),
    )
    .await;
    let c2 =
        run_task(&st, &url, "SealCommit2", lotus_params("SealCommit2", &[(0, sector.clone()), (1, c1[1].clone())]))
            .await;
    let proof = base64::engine::general_purpose::STANDARD.decode(c2[1].as_str().unwrap()).unwrap();
    assert_eq!(proof.len(), 192, "a 2KiB seal proof");
    let commitment = |v: &Value, kind: lotus_api::wire::Commitment| {
        kind.from_cid(&serde_json::from_value(v.clone()).unwrap()).unwrap()
    };
    let s = sealing_proofs::Sealer::new(sealing_types::RegisteredSealProof::STACKED_DRG_2KIB_V1_1, 1000, 1)
        .with_backend(sealing_proofs::Backend::Mock);
    let verified = s
        .verify(
            commitment(&cids["Sealed"], lotus_api::wire::Commitment::Sealed),
            commitment(&cids["Unsealed"], lotus_api::wire::Commitment::Unsealed),
            [7; 32],
            [9; 32],
            &proof,
        )
        .unwrap();
    assert!(verified, "the proof verifies for the sector, ticket and seed the stand-in sent");

    let fin = run_task(&st, &url, "FinalizeSector", lotus_params("FinalizeSector", &[(0, sector.clone())])).await;
    assert_eq!(fin.len(), 2, "ReturnFinalizeSector is (callID, err), as Lotus's: {fin:?}");
}
