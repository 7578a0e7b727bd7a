//! Our `lotus-worker` under a stand-in for Lotus's `lotus-miner`: a server that answers the
//! miner methods a worker calls as Lotus does, registers the worker the way Lotus's
//! `WorkerConnect` does (Version, Session, Info, TaskTypes, Paths) and drives a 2KiB sector
//! through AddPiece, PreCommit1/2, Commit1/2 and Finalize with params built from Lotus's own
//! documented examples (`lotus-api/fixtures/worker.json`), reading the results the worker
//! returns through Lotus's `Return*` shapes, then through a snap-deal update of that sector
//! (ReplicaUpdate, ProveReplicaUpdate1/2, FinalizeReplicaUpdate, GenerateSectorKeyFromData).
//! On the mock proof backend: the subject is the wire. Real Commit2 and update proofs travel the
//! same `Return*` shapes from our worker to our miner in the real seal and proving tests, where
//! the devnet verifies them on chain.

mod common;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use common::*;
use serde_json::{json, Value};
use std::io::Read;
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

/// What the stand-in serves as a sector file from outside the cluster.
const SECTOR_DATA: &[u8] = b"an unsealed sector file, as a sector-import source serves it";

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

/// A source of sector data outside the cluster, for DownloadSectorData: it wants its own
/// header, and must get no cluster token.
async fn sector_data(headers: axum::http::HeaderMap) -> impl axum::response::IntoResponse {
    let ok = headers.get("X-Sector-Token").is_some_and(|v| v == "s3cret") && headers.get("Authorization").is_none();
    let status = if ok { axum::http::StatusCode::OK } else { axum::http::StatusCode::UNAUTHORIZED };
    (status, [(axum::http::header::CONTENT_TYPE, "application/octet-stream")], SECTOR_DATA.to_vec())
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

/// The stand-in's token: JWT-shaped, as every token a Lotus miner issues is (its signature
/// is not checked: the stand-in's AuthVerify accepts it).
const LOTUS_MINER_TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJBbGxvdyI6WyJhZG1pbiJdfQ.c3RhbmQtaW4";

async fn call(url: &str, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": format!("Filecoin.{method}"), "params": params});
    let r: Value = reqwest::Client::new()
        .post(url)
        .bearer_auth(LOTUS_MINER_TOKEN)
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
    let sector = params[0]["ID"].clone();
    let call_id = call(url, method, params).await;
    assert!(call_id["ID"].is_string() && call_id["Sector"] == sector, "{method}: CallID {call_id}");
    let ret = lotus_api::contract::return_method(method);
    // A real Commit2 takes about a minute on 2 cores, more beside the rest of the suite.
    for _ in 0..12_000 {
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
    let backend = sealing_proofs::Backend::Mock;
    let dir = tempfile::tempdir().unwrap();
    let st: Shared = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = Router::new()
        .route("/rpc/v0", post(miner_rpc))
        .route("/sector-data", axum::routing::get(sector_data))
        .with_state(st.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let log = dir.path().join("worker.log");
    let f = std::fs::File::create(&log).unwrap();
    let child = std::process::Command::new(WORKER)
        .env("LOTUS_WORKER_PATH", dir.path().join("worker"))
        .env("MINER_API_INFO", format!("{LOTUS_MINER_TOKEN}:/ip4/127.0.0.1/tcp/{port}/http"))
        .env("LOTUS_MINER_PATH", dir.path().join("no-miner-repo"))
        .env("RUST_LOG", "info")
        .args(["run", "--listen", "127.0.0.1:0", "--sealing-nice", "19"])
        .args(["--mock-proofs", "--mock-task-durations="])
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
        .with_backend(backend);
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
    let (comm_r, comm_d) = (
        commitment(&cids["Sealed"], lotus_api::wire::Commitment::Sealed),
        commitment(&cids["Unsealed"], lotus_api::wire::Commitment::Unsealed),
    );
    assert!(!s.verify(comm_r, comm_d, [7; 32], [5; 32], &proof).unwrap_or(false), "a wrong seed is refused");
    let mut tampered = proof.clone();
    tampered[10] ^= 0xff;
    assert!(!s.verify(comm_r, comm_d, [7; 32], [9; 32], &tampered).unwrap_or(false), "a tampered proof is refused");

    let fin = run_task(&st, &url, "FinalizeSector", lotus_params("FinalizeSector", &[(0, sector.clone())])).await;
    assert_eq!(fin.len(), 2, "ReturnFinalizeSector is (callID, err), as Lotus's: {fin:?}");

    // A snap deal on the sealed CC sector, through the worker methods as Lotus's miner calls
    // them: its CC unsealed copy released, the deal data added into a new unsealed file, the
    // replica updated, the update proven (the SNARK verified by the proofs library), both
    // caches finalized, then the sector key released and regenerated byte for byte.
    let rel =
        run_task(&st, &url, "ReleaseUnsealed", lotus_params("ReleaseUnsealed", &[(0, sector.clone()), (1, json!([]))]))
            .await;
    assert_eq!(rel.len(), 2, "{rel:?}");
    let deal: Vec<u8> = (0..2032u32).map(|i| (i * 13 % 251) as u8).collect();
    let snap_piece = push_piece(&st, &url, &sector, &deal).await;
    let ru = run_task(
        &st,
        &url,
        "ReplicaUpdate",
        lotus_params("ReplicaUpdate", &[(0, sector.clone()), (1, json!([snap_piece]))]),
    )
    .await;
    let out = ru[1].clone();
    assert!(out["NewSealed"]["/"].as_str().unwrap().starts_with("bagboea4b5abc"), "{out}");
    assert_eq!(out["NewUnsealed"], snap_piece["PieceCID"], "one piece filling the sector is its CommD: {out}");
    assert_ne!(out["NewSealed"], cids["Sealed"]);
    let root = std::path::PathBuf::from(paths[0]["LocalPath"].as_str().unwrap());
    let key_file = root.join("sealed/s-t01000-1");
    let key = std::fs::read(&key_file).unwrap();
    assert!(root.join("update/s-t01000-1").is_file() && root.join("update-cache/s-t01000-1").is_dir());
    let keys = [
        (0, sector.clone()),
        (1, cids["Sealed"].clone()),
        (2, out["NewSealed"].clone()),
        (3, out["NewUnsealed"].clone()),
    ];
    let pr1 = run_task(&st, &url, "ProveReplicaUpdate1", lotus_params("ProveReplicaUpdate1", &keys)).await;
    let vanilla = pr1[1].clone();
    assert_eq!(vanilla.as_array().map(Vec::len), Some(1), "one partition's vanilla proof at 2KiB: {vanilla}");
    let mut with_vanilla = keys.to_vec();
    with_vanilla.push((4, vanilla));
    let pr2 = run_task(&st, &url, "ProveReplicaUpdate2", lotus_params("ProveReplicaUpdate2", &with_vanilla)).await;
    let update_proof = base64::engine::general_purpose::STANDARD.decode(pr2[1].as_str().unwrap()).unwrap();
    assert_eq!(update_proof.len(), 192, "a 2KiB update proof");
    let new = sealing_proofs::Updated {
        comm_r_new: commitment(&out["NewSealed"], lotus_api::wire::Commitment::Sealed),
        comm_d_new: commitment(&out["NewUnsealed"], lotus_api::wire::Commitment::Unsealed),
    };
    let comm_r_old = commitment(&cids["Sealed"], lotus_api::wire::Commitment::Sealed);
    assert!(s.verify_replica_update(comm_r_old, new, &update_proof).unwrap(), "the update proof verifies");
    assert!(!s.verify_replica_update(new.comm_r_new, new, &update_proof).unwrap_or(false), "not for another key");
    let fru =
        run_task(&st, &url, "FinalizeReplicaUpdate", lotus_params("FinalizeReplicaUpdate", &[(0, sector.clone())]))
            .await;
    assert_eq!(fru.len(), 2, "{fru:?}");
    std::fs::remove_file(&key_file).unwrap();
    let gsk = lotus_params("GenerateSectorKeyFromData", &[(0, sector.clone()), (1, out["NewUnsealed"].clone())]);
    let gsk = run_task(&st, &url, "GenerateSectorKeyFromData", gsk).await;
    assert_eq!(gsk.len(), 2, "ReturnGenerateSectorKeyFromData is (callID, err): {gsk:?}");
    assert!(std::fs::read(&key_file).unwrap() == key, "the regenerated sector key is the original sealed file");

    // A sector's file downloaded from outside the cluster, with the source's own header.
    let sector3 = json!({"ID": {"Miner": 1000, "Number": 3}, "ProofType": 5});
    let loc = json!({"Local": false, "URL": format!("http://127.0.0.1:{port}/sector-data"), "Headers": [{"Key": "X-Sector-Token", "Value": "s3cret"}]});
    let dl = lotus_params("DownloadSectorData", &[(0, sector3), (1, json!(false)), (2, json!({"1": loc}))]);
    let dl = run_task(&st, &url, "DownloadSectorData", dl).await;
    assert_eq!(dl.len(), 2, "ReturnDownloadSector is (callID, err): {dl:?}");
    assert_eq!(std::fs::read(root.join("unsealed/s-t01000-3")).unwrap(), SECTOR_DATA, "downloaded into a sealing path");

    // Another sector's deal data through the push route.
    let data: Vec<u8> = (0..1500u32).map(|i| (i * 7 % 251) as u8).collect();
    let sector2 = json!({"ID": {"Miner": 1000, "Number": 2}, "ProofType": 5});
    let piece2 = push_piece(&st, &url, &sector2, &data).await;
    let s2 = sealing_proofs::Sealer::new(sealing_types::RegisteredSealProof::STACKED_DRG_2KIB_V1_1, 1000, 2)
        .with_backend(backend);
    let scratch = tempfile::tempdir().unwrap();
    let padded = std::io::Cursor::new(data.clone()).chain(std::io::repeat(0)).take(2032);
    let want = s2.add_piece(padded, 2032, &scratch.path().join("unsealed")).unwrap();
    assert_eq!(
        piece2["PieceCID"],
        json!(lotus_api::wire::Commitment::Unsealed.to_cid(&want.commitment)),
        "the CommP of the pushed bytes"
    );
}

/// AddPiece of `data` (zero-filled to the sector) through a push reader, as Lotus's miner
/// sends deal data: HEAD then POST to the worker's push route, without a token, as Lotus's
/// client does. The piece the worker returned.
async fn push_piece(st: &Shared, url: &str, sector: &Value, data: &[u8]) -> Value {
    let push_id = uuid::Uuid::new_v4();
    let push_url = url.replace("/rpc/v0", &format!("/rpc/streams/v0/push/{push_id}"));
    let reader = json!({"Type": "push", "Info": push_id.to_string()});
    let params = lotus_params("AddPiece", &[(0, sector.clone()), (1, json!([])), (2, json!(2032)), (3, reader)]);
    let http = reqwest::Client::new();
    let (call_id, head) = tokio::join!(async { call(url, "AddPiece", params).await }, async {
        let head = http.head(&push_url).header("Content-Type", "application/octet-stream").send().await.unwrap();
        let post = http.post(&push_url).body(data.to_vec()).send().await.unwrap();
        (head.status().as_u16(), post.status().as_u16())
    });
    assert_eq!(head, (200, 200), "HEAD then POST of the pushed bytes");
    let ret = loop {
        if let Some((_, p)) = st.lock().unwrap().returns.iter().find(|(m, p)| m == "ReturnAddPiece" && p[0] == call_id)
        {
            break p.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(ret[2].is_null(), "AddPiece of pushed data failed: {}", ret[2]);
    ret[1].clone()
}

// ---- the other direction: a stand-in for Lotus's `lotus-worker` joins our miner

/// A worker that speaks as Lotus's does: it attaches its path and registers over the miner
/// API, allocates through `StorageBestAlloc`, declares what it writes, answers task calls with
/// CallIDs and delivers Lotus-encoded results through `Return*`. Its proofs are the mock
/// backend's, computed in this process; it adds `"MockProofs": true` to its `Info` (a Lotus
/// worker does not), since a mock-proof miner takes only mock-proof workers.
struct LotusWorker {
    miner: lotus_api::RpcClient,
    root: std::path::PathBuf,
    path_id: uuid::Uuid,
    session: uuid::Uuid,
    /// Each `StorageBestAlloc` answer named this worker's path.
    best_allocs: Mutex<Vec<bool>>,
    /// `Return*` calls the miner refused.
    refused: Mutex<Vec<String>>,
}

impl LotusWorker {
    fn paths(&self, n: u64) -> sealing_proofs::SectorPaths {
        let name = format!("s-t01000-{n}");
        sealing_proofs::SectorPaths {
            unsealed: self.root.join("unsealed").join(&name),
            sealed: self.root.join("sealed").join(&name),
            cache: self.root.join("cache").join(&name),
        }
    }

    async fn best_alloc(&self, types: u8) {
        let r: Value = self.miner.call("StorageBestAlloc", json!([types, 2048, "sealing", 1000])).await.unwrap();
        self.best_allocs.lock().unwrap().push(r[0]["ID"] == json!(self.path_id));
    }

    async fn declare(&self, n: u64, types: u8) {
        let sector = json!({"Miner": 1000, "Number": n});
        let r = self.miner.call::<Value>("StorageDeclareSector", json!([self.path_id, sector, types, true])).await;
        r.unwrap();
    }

    async fn ret(&self, method: &str, params: Value) {
        if let Err(e) = self.miner.call::<Value>(method, params).await {
            self.refused.lock().unwrap().push(format!("{method}: {e}"));
        }
    }

    /// One task call's work and its `Return*`.
    async fn work(self: Arc<Self>, method: String, call: Value, p: Vec<Value>) {
        use lotus_api::wire::{Bytes, PieceInfo, SectorCids};
        use sealing_exec::wire as w;
        let n = p[0]["ID"]["Number"].as_u64().unwrap();
        let s = sealing_proofs::Sealer::new(sealing_types::RegisteredSealProof::STACKED_DRG_2KIB_V1_1, 1000, n)
            .with_backend(sealing_proofs::Backend::Mock);
        let paths = self.paths(n);
        for d in ["unsealed", "sealed", "cache"] {
            std::fs::create_dir_all(self.root.join(d)).unwrap();
        }
        let bytes = |v: &Value| serde_json::from_value::<Bytes>(v.clone()).unwrap().to_32("32 bytes").unwrap();
        let pieces =
            |v: &Value| w::pieces_from_wire(&serde_json::from_value::<Vec<PieceInfo>>(v.clone()).unwrap()).unwrap();
        match method.as_str() {
            "AddPiece" => {
                assert_eq!(p[3], json!({"Type": "null", "Info": "2032"}), "a CC sector's piece is a null reader");
                self.best_alloc(1).await;
                let size = p[2].as_u64().unwrap();
                let piece = s.add_piece(std::io::repeat(0).take(size), size, &paths.unsealed).unwrap();
                self.declare(n, 1).await;
                self.ret("ReturnAddPiece", json!([call, w::piece_to_wire(&piece), null])).await;
            }
            "SealPreCommit1" => {
                self.best_alloc(6).await;
                std::fs::create_dir_all(&paths.cache).unwrap();
                let ticket = bytes(&p[1]);
                let out = s.pre_commit1(&paths, ticket, &pieces(&p[2])).unwrap();
                self.declare(n, 6).await;
                self.ret("ReturnSealPreCommit1", json!([call, w::pc1_to_wire(&out, &ticket).unwrap(), null])).await;
            }
            "SealPreCommit2" => {
                let pc1 = w::pc1_from_wire(&serde_json::from_value(p[1].clone()).unwrap()).unwrap();
                let out = s.pre_commit2(pc1, &paths).unwrap();
                self.ret("ReturnSealPreCommit2", json!([call, w::cids(&out.comm_r, &out.comm_d), null])).await;
            }
            "SealCommit1" => {
                let (comm_r, comm_d) =
                    w::commitments(&serde_json::from_value::<SectorCids>(p[4].clone()).unwrap()).unwrap();
                let pc2 = sealing_proofs::SealPreCommitPhase2Output {
                    registered_proof: sealing_proofs::api_proof(s.proof),
                    comm_r,
                    comm_d,
                };
                let out = s.commit1(&paths, bytes(&p[1]), bytes(&p[2]), pc2, &pieces(&p[3])).unwrap();
                self.ret("ReturnSealCommit1", json!([call, w::c1_to_wire(&out).unwrap(), null])).await;
            }
            "SealCommit2" => {
                let c1 = w::c1_from_wire(&serde_json::from_value(p[1].clone()).unwrap()).unwrap();
                let proof = s.commit2(c1).unwrap();
                self.ret("ReturnSealCommit2", json!([call, Bytes(proof), null])).await;
            }
            "FinalizeSector" => {
                s.finalize(&paths.cache).unwrap();
                self.ret("ReturnFinalizeSector", json!([call, null])).await;
            }
            // The files are here already, in a path that seals and stores.
            "Fetch" | "MoveStorage" => self.ret(&format!("Return{method}"), json!([call, null])).await,
            other => panic!("the stand-in got {other}"),
        }
    }
}

async fn lotus_worker_rpc(State(w): State<Arc<LotusWorker>>, Json(req): Json<Value>) -> Json<Value> {
    let method = req["method"].as_str().unwrap_or("").trim_start_matches("Filecoin.").to_string();
    let params = req["params"].as_array().cloned().unwrap_or_default();
    let id = req["id"].clone();
    let doc = |m: &str| -> Value {
        let path = format!("{}/../lotus-api/fixtures/worker.json", env!("CARGO_MANIFEST_DIR"));
        let d: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        d["methods"][m]["response"].clone()
    };
    let result = match method.as_str() {
        "Version" => json!(67328),
        "Session" | "ProcessSession" => json!(w.session),
        "Info" => {
            let mut info = doc("Info");
            info["Hostname"] = json!("lotus-box");
            info["IgnoreResources"] = json!(false);
            info["Resources"]["CPUs"] = json!(8);
            info["Resources"]["GPUs"] = Value::Null;
            info["Resources"]["MemPhysical"] = json!(64u64 << 30);
            info["Resources"]["MemUsed"] = json!(1u64 << 30);
            info["MockProofs"] = json!(true);
            info
        }
        "TaskTypes" => {
            json!({"seal/v0/addpiece": {}, "seal/v0/precommit/1": {}, "seal/v0/precommit/2": {}, "seal/v0/commit/1": {},
                   "seal/v0/commit/2": {}, "seal/v0/finalize": {}, "seal/v0/fetch": {}})
        }
        "Paths" => json!([{"ID": w.path_id, "Weight": 10, "LocalPath": w.root, "CanSeal": true, "CanStore": true}]),
        "Enabled" => json!(true),
        "AddPiece" | "SealPreCommit1" | "SealPreCommit2" | "SealCommit1" | "SealCommit2" | "FinalizeSector"
        | "MoveStorage" | "Fetch" => {
            let call = json!({"Sector": params[0]["ID"], "ID": uuid::Uuid::new_v4()});
            tokio::spawn(w.clone().work(method.clone(), call.clone(), params));
            call
        }
        // What go-jsonrpc answers for a method the worker does not have (our `Calls`,
        // `AbortCall`).
        other => {
            return Json(
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": format!("method 'Filecoin.{other}' not found")}}),
            )
        }
    };
    Json(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

#[test]
fn a_lotus_worker_seals_for_our_miner() {
    let c = Cluster::mock_without_miner_storage("");
    c.write_config(&seals_nothing_config("[Devnet]\n  BlockDelay = \"500ms\"\n  SeedDelayEpochs = 4\n"));
    let miner = c.start_miner();
    let info = lotus_api::ApiInfo::parse(&c.api_info()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    let w = Arc::new(LotusWorker {
        miner: lotus_api::RpcClient::new(info.rpc_url(), Some(info.token.clone()), Duration::from_secs(30)),
        root: c.path("lotus-worker-store"),
        path_id: uuid::Uuid::new_v4(),
        session: uuid::Uuid::new_v4(),
        best_allocs: Mutex::default(),
        refused: Mutex::default(),
    });
    let app = Router::new()
        .route("/rpc/v0", post(lotus_worker_rpc))
        .route("/remote/{*file}", axum::routing::delete(|| async { "" }))
        .with_state(w.clone());
    rt.spawn(async move { axum::serve(listener, app).await });

    // What Lotus's worker does at start: check the miner's API version (exactly 1.5.0),
    // attach its path (nil lists as Go sends them), register.
    rt.block_on(async {
        let v: Value = w.miner.call("Version", json!([])).await.unwrap();
        assert_eq!(v["APIVersion"], LOTUS_MINER_API, "{v}");
        let addr: Value = w.miner.call("ActorAddress", json!([])).await.unwrap();
        let size: Value = w.miner.call("ActorSectorSize", json!([addr])).await.unwrap();
        assert_eq!(size, 2048);
        let url = format!("http://127.0.0.1:{port}/remote");
        let path = json!({"ID": w.path_id, "URLs": [url], "Weight": 10, "MaxStorage": 0, "CanSeal": true, "CanStore": true,
                          "Groups": null, "AllowTo": null, "AllowTypes": null, "DenyTypes": null, "AllowMiners": null, "DenyMiners": null});
        let stat = json!({"Capacity": 1u64 << 40, "Available": 1u64 << 40, "FSAvailable": 1u64 << 40, "Reserved": 0, "Max": 0, "Used": 0});
        w.miner.call::<Value>("StorageAttach", json!([path, stat])).await.unwrap();
        w.miner.call::<Value>("WorkerConnect", json!([format!("http://127.0.0.1:{port}/rpc/v0")])).await.unwrap();
    });
    wait_or_show(
        Duration::from_secs(30),
        "the Lotus worker in `sealing workers`",
        || miner.log(),
        || c.workers().iter().any(|(h, _)| h == "lotus-box"),
    );

    assert_eq!(c.miner_ok(&["sectors", "pledge"]).trim(), "Created CC sector:  1");
    let state = || -> String {
        rt.block_on(w.miner.call::<Value>("SectorsStatus", json!([1, false])))
            .map(|v| v["State"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    wait_or_show(
        Duration::from_secs(60),
        "sector 1 to reach Proving",
        || format!("{}\n{:?}", tail(&miner.log(), 30), w.refused.lock().unwrap()),
        || state() == "Proving",
    );
    let allocs = w.best_allocs.lock().unwrap().clone();
    assert!(allocs.len() >= 2 && allocs.iter().all(|ok| *ok), "StorageBestAlloc named the worker's path: {allocs:?}");
    assert!(w.refused.lock().unwrap().is_empty(), "{:?}", w.refused.lock().unwrap());
    // The sector's files are where the Lotus worker declared them.
    let found: Value =
        rt.block_on(w.miner.call("StorageFindSector", json!([{"Miner": 1000, "Number": 1}, 2, 2048, false]))).unwrap();
    assert_eq!(found[0]["ID"], json!(w.path_id), "{found}");
}
