//! Bad input, each case a clear error and no crash: malformed JSON-RPC, wrong param counts and
//! types on every method, unknown methods, oversized bodies, garbled and forged tokens,
//! `/remote` path traversal and bad sector names, bad CLI arguments, invalid config values and
//! `MINER_API_INFO` strings. After every HTTP case the daemon must still answer.

mod common;

use common::*;
use lotus_api::methods;
use serde_json::{json, Value};
use std::time::Duration;

struct Http {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Http {
    async fn raw(&self, body: Vec<u8>, token: Option<&str>) -> (u16, String) {
        let mut r = self.client.post(format!("{}/rpc/v0", self.base)).body(body).timeout(Duration::from_secs(10));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let resp = r.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap_or_default())
    }
    async fn call(&self, method: &str, params: Value) -> Value {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": format!("Filecoin.{method}"), "params": params});
        let (status, text) = self.raw(body.to_string().into_bytes(), Some(&self.token)).await;
        assert_eq!(status, 200, "{method}: HTTP {status} {text}");
        serde_json::from_str(&text).unwrap()
    }
    async fn alive(&self) {
        let v = self.call("Session", json!([])).await;
        assert!(v["result"].is_string(), "the daemon stopped answering: {v}");
    }
}

/// The error message of a JSON-RPC answer; an answer that is no error, or an empty one, is a
/// failed case (reported with the others at the end).
fn err_of(fails: &mut Vec<String>, case: &str, v: &Value) -> String {
    match v["error"]["message"].as_str() {
        Some(m) if !m.is_empty() => m.to_string(),
        Some(_) => {
            fails.push(format!("{case}: empty error message"));
            String::new()
        }
        None => {
            fails.push(format!("{case}: expected an error, got {v}"));
            String::new()
        }
    }
}

/// Record a failed case instead of stopping at it: the test reports every one at the end.
macro_rules! check {
    ($fails:expr, $cond:expr, $($msg:tt)+) => {
        if !$cond {
            $fails.push(format!($($msg)+));
        }
    };
}

#[test]
fn bad_input_gets_clear_errors_and_never_crashes_a_daemon() {
    let c = Cluster::new();
    let _miner = c.start_miner();
    let _w = c.start_worker("worker", &["run", "--listen", "127.0.0.1:0"]);
    wait_until(Duration::from_secs(30), "the worker to register", || c.workers().len() == 2);
    let listen = c.worker_addr("worker");
    let token = c.miner_ok(&["auth", "create-token", "--perm", "admin"]).trim().to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut cases = 0usize;
    let mut fails: Vec<String> = vec![];
    rt.block_on(async {
        let m = Http { client: reqwest::Client::new(), base: format!("http://127.0.0.1:{}", c.port()), token: token.clone() };
        let w = Http { client: reqwest::Client::new(), base: format!("http://{listen}"), token: token.clone() };

        // ---- the JSON-RPC envelope
        let envelopes: &[(&str, &str, &str)] = &[
            ("not JSON", "{{{", "parse"),
            ("a bare number", "42", "request"),
            ("no method", r#"{"jsonrpc":"2.0","id":1}"#, "method"),
            ("method not a string", r#"{"jsonrpc":"2.0","id":1,"method":7}"#, "method"),
            ("unknown method", r#"{"jsonrpc":"2.0","id":1,"method":"Filecoin.NoSuchThing","params":[]}"#, "NoSuchThing"),
            ("no Filecoin. prefix", r#"{"jsonrpc":"2.0","id":1,"method":"Session","params":[]}"#, "Session"),
            ("params as an object", r#"{"jsonrpc":"2.0","id":1,"method":"Filecoin.SectorsStatus","params":{"a":1}}"#, "param"),
            ("params as a string", r#"{"jsonrpc":"2.0","id":1,"method":"Filecoin.SectorsStatus","params":"x"}"#, "param"),
            ("truncated JSON", r#"{"jsonrpc":"2.0","id":1,"method":"Filecoin.Session","par"#, "parse"),
            ("invalid UTF-8", "\u{0}\u{1}", "parse"),
        ];
        for (name, body, want) in envelopes {
            for d in [&m, &w] {
                let (status, text) = d.raw(body.as_bytes().to_vec(), Some(&token)).await;
                check!(fails, status == 200 || status == 400, "{name}: HTTP {status}");
                check!(fails, text.to_lowercase().contains(&want.to_lowercase()), "{name}: {text}");
                d.alive().await;
                cases += 1;
            }
        }

        eprintln!("section: every method with too many params");
        // ---- every method with too many params (each handler checks its count)
        for (table, d) in [(methods::MINER, &m), (methods::WORKER, &w)] {
            for (method, _) in table {
                if ["Shutdown", "SetEnabled", "PledgeSector"].contains(method) {
                    continue;
                }
                let v = d.call(method, json!([1, 2, 3, 4, 5, 6, 7])).await;
                let e = err_of(&mut fails, method, &v);
                check!(fails, e.contains("param") || e.contains("takes"), "{method}: {e}");
                d.alive().await;
                cases += 1;
            }
        }

        eprintln!("section: wrong param types and values");
        // ---- wrong param types and values
        let typed: &[(&str, Value, &str)] = &[
            ("SectorsStatus", json!(["abc"]), "param 0"),
            ("SectorsStatus", json!([-1]), "param 0"),
            ("SectorsStatus", json!([99999]), "not found"),
            ("StorageDeclareSector", json!(["not-a-uuid", {"Miner": 1000, "Number": 1}, 2, true]), "param 0"),
            ("StorageDeclareSector", json!([uuid::Uuid::new_v4(), {"Miner": 1000, "Number": 1}, 2, true]), "not attached"),
            ("StorageDeclareSector", json!([uuid::Uuid::new_v4(), "s-t01000-1", 2, true]), "param 1"),
            ("StorageFindSector", json!([{"Miner": 1000}, 2]), "param 0"),
            ("StorageFindSector", json!([{"Miner": 1000, "Number": 1}, "sealed"]), "param 1"),
            (
                "StorageAttach",
                json!([{"ID": uuid::Uuid::new_v4(), "URLs": [], "Weight": 10, "MaxStorage": 0, "CanSeal": true, "CanStore": false}, {"Capacity": 1, "Available": 1, "FSAvailable": 1, "Reserved": 0, "Max": 0, "Used": 0}]),
                "URLs",
            ),
            ("StorageAttach", json!([{}, {}]), "param 0"),
            ("StorageReportHealth", json!([uuid::Uuid::new_v4(), {"Stat": {}}]), "param 1"),
            ("StorageAddLocal", json!(["/no/such/path"]), "no/such/path"),
            ("StorageAddLocal", json!([42]), "param 0"),
            ("StorageInfo", json!([uuid::Uuid::new_v4()]), "not found"),
            ("SectorsAddPieceFile", json!(["/no/such/file"]), "/no/such/file"),
            ("SectorsUnsealPiece", json!([{"ID": {"Miner": 1000, "Number": 5}, "ProofType": 5}]), "not found"),
            ("SectorsUnsealPiece", json!([{"ID": {"Miner": 1000, "Number": 5}, "ProofType": 99}]), "param 0"),
            ("ReturnSealCommit2", json!(["x", null, null]), "param 0"),
            ("ReturnSealCommit2", json!([{"Sector": {"Miner": 1, "Number": 1}, "ID": uuid::Uuid::new_v4()}, null, {"Code": "x"}]), "param 2"),
            ("SealingAbort", json!([{"Sector": {"Miner": 1, "Number": 1}, "ID": "x"}]), "param 0"),
            ("SealingRemoveRequest", json!([uuid::Uuid::new_v4()]), "no queued request"),
            ("SealingRemoveRequest", json!(["zzz"]), "param 0"),
            ("WorkerConnect", json!(["ftp://x"]), "http"),
            ("WorkerConnect", json!(["http://127.0.0.1:1/rpc/v0"]), "cannot call back"),
            ("AuthNew", json!([["root"]]), "param 0"),
            ("AuthNewWorker", json!([["admin"], "a/b"]), "worker name \"a/b\" has '/'"),
            ("AuthNewWorker", json!([["admin"], ""]), "1 to 64 characters"),
            ("AuthNewWorker", json!([["root"], "w"]), "param 0"),
            ("AuthVerify", json!(["garbage"]), "not a valid JWT signed by this miner"),
            ("ActorSectorSize", json!([]), "takes"),
        ];
        for (method, params, want) in typed {
            let v = m.call(method, params.clone()).await;
            let e = err_of(&mut fails, method, &v);
            check!(fails, e.contains(want), "{method}({params}): {e}");
            m.alive().await;
            cases += 1;
        }
        let worker_typed: &[(&str, Value, &str)] = &[
            ("SealPreCommit1", json!([{"ID": {"Miner": 1000, "Number": 1}, "ProofType": 5}, "ticket", []]), "param 1 (ticket)"),
            ("SealCommit2", json!([{"ID": {"Miner": 1000, "Number": 1}, "ProofType": 5}, {"not": "c1"}]), "param 1 (c1o)"),
            ("AddPiece", json!([{"ID": {"Miner": 1000}, "ProofType": 5}, false]), "param 0 (sector)"),
            ("TaskEnable", json!(["XYZ"]), "XYZ"),
            ("TaskDisable", json!([5]), "param 0"),
            ("AbortCall", json!(["nope"]), "param 0"),
            ("UpdateMinerToken", json!(["garbage"]), "not a JWT"),
            // A JWT of Lotus's shape ({"alg":"HS256"} . {"Allow":["admin"]}) with a forged
            // signature: only the miner can refuse it.
            (
                "UpdateMinerToken",
                json!(["eyJhbGciOiJIUzI1NiJ9.eyJBbGxvdyI6WyJhZG1pbiJdfQ.forged"]),
                "the miner does not confirm the new token",
            ),
            // Not of that shape: refused on the worker, without asking the miner.
            ("UpdateMinerToken", json!(["a.b.c"]), "is not a JWT"),
            ("StorageAddLocal", json!(["/no/such/worker/path"]), "no/such/worker/path"),
            ("Fetch", json!([{"ID": {"Miner": 1000, "Number": 1}, "ProofType": 5}, 2, "Nowhere"]), "param 2 (path_type)"),
        ];
        for (method, params, want) in worker_typed {
            let v = w.call(method, params.clone()).await;
            let e = err_of(&mut fails, method, &v);
            check!(fails, e.contains(want), "worker {method}({params}): {e}");
            w.alive().await;
            cases += 1;
        }

        eprintln!("section: tokens");
        // ---- tokens
        let forged = lotus_api::JwtSecret::generate().create_token(&lotus_api::Permission::Admin.with_lower());
        let bad_tokens = [
            ("garbled", "abc.def.ghi".to_string()),
            ("forged (another key)", forged),
            ("empty", " ".to_string()),
            ("alg none", "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJBbGxvdyI6WyJhZG1pbiJdfQ.".to_string()),
            ("truncated", token[..token.len() - 5].to_string()),
        ];
        for (name, t) in &bad_tokens {
            for d in [&m, &w] {
                let body = json!({"jsonrpc":"2.0","id":1,"method":"Filecoin.Session","params":[]}).to_string();
                let (status, _) = d.raw(body.into_bytes(), Some(t)).await;
                check!(fails, status == 401, "{name} token: HTTP {status}");
                d.alive().await;
                cases += 1;
            }
        }

        eprintln!("section: oversized body");
        // ---- oversized body
        // The server answers 413 as soon as the declared length is over the limit and may close
        // the connection while the client is still sending: either is a refusal.
        let big = vec![b' '; 17 << 20];
        // A client of its own: the connection the server drops must not go back to a pool.
        match reqwest::Client::new().post(format!("{}/rpc/v0", m.base)).bearer_auth(&token).body(big).send().await {
            Ok(resp) => check!(fails, resp.status().as_u16() == 413, "a 17 MiB body: HTTP {}", resp.status()),
            Err(e) => check!(fails, e.is_request() || e.is_body(), "a 17 MiB body: {e}"),
        }
        m.alive().await;
        cases += 1;

        eprintln!("section: /remote: traversal");
        // ---- /remote: traversal, bad names, missing auth
        let remote_cases: &[(&str, Option<&str>, u16)] = &[
            ("/remote/sealed/..%2F..%2Fetc%2Fpasswd", Some(&token), 400),
            ("/remote/..%2Fsealed/s-t01000-1", Some(&token), 400),
            ("/remote/sealed/s-t01000-1%2F..%2F..", Some(&token), 400),
            ("/remote/sealed/s-t0abc-1", Some(&token), 400),
            ("/remote/sealed/s-t01000-", Some(&token), 400),
            ("/remote/sealed/s-t01000-99999999999999999999999", Some(&token), 400),
            ("/remote/keystore/s-t01000-1", Some(&token), 400),
            ("/remote/sealed/s-t01000-1", Some(&token), 500),
            ("/remote/sealed/s-t01000-1", None, 401),
            ("/remote/sealed/s-t01000-1", Some("garbage"), 401),
            ("/remote/stat/not-a-uuid", Some(&token), 404),
            // The bundle route (several file types in one request): the same rules.
            ("/remote/bundle/s-t01000-1?types=sealed,cache", None, 401),
            ("/remote/bundle/s-t01000-1?types=sealed,cache", Some("garbage"), 401),
            ("/remote/bundle/s-t01000-1", Some(&token), 400),
            ("/remote/bundle/s-t01000-1?types=sealed,keystore", Some(&token), 400),
            ("/remote/bundle/s-t01000-1?types=..%2F..%2Fetc", Some(&token), 400),
            ("/remote/bundle/..%2F..%2Fetc%2Fpasswd?types=sealed", Some(&token), 400),
            ("/remote/bundle/s-t01000-1?types=sealed,cache", Some(&token), 500),
        ];
        for (path, t, want) in remote_cases {
            for d in [&m, &w] {
                let mut r = d.client.get(format!("{}{path}", d.base));
                if let Some(t) = t {
                    r = r.bearer_auth(t);
                }
                let resp = r.send().await.unwrap();
                let status = resp.status().as_u16();
                let body = resp.text().await.unwrap_or_default();
                check!(fails, status == *want, "GET {path}: HTTP {status}, not {want}: {body}");
                check!(fails, body.contains("Error") || status == 404, "GET {path}: {body}");
                d.alive().await;
                cases += 1;
            }
        }
        let resp = m.client.delete(format!("{}/remote/sealed/..%2Fx", m.base)).bearer_auth(&token).send().await.unwrap();
        check!(fails, resp.status().as_u16() == 400, "DELETE /remote/sealed/..%2Fx: HTTP {}", resp.status());
        cases += 1;
        // A `keep` that does not parse is refused, never read as "keep nothing".
        let url = format!("{}/remote/sealed/s-t01000-1?keep=garbage", m.base);
        let resp = m.client.delete(url).bearer_auth(&token).send().await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        check!(fails, status == 400 && body.contains("nothing removed"), "DELETE ?keep=garbage: HTTP {status}: {body}");
        cases += 1;
    });

    eprintln!("section: the command line");
    // ---- the command line
    let cli_cases: &[(&[&str], &str)] = &[
        (&["sectors", "status", "abc"], "invalid value"),
        (&["sectors", "status", "-1"], "unexpected argument"),
        (&["sectors", "status", "424242"], "not found"),
        (&["sectors", "unseal", "1", "--output", "/tmp/x"], "not found"),
        (&["sectors", "add-piece", "/no/such/file"], "/no/such/file"),
        (&["storage", "attach", "/no/such/dir"], "sectorstore.json"),
        (&["storage", "attach", "--init", "/tmp/never-created-path-xyz"], "--seal and/or --store"),
        (&["storage", "find", "7"], "no files"),
        (&["sealing", "abort", "ffffffff"], "no running job"),
        (&["sealing", "abort"], "required"),
        (&["auth", "create-token", "--perm", "root"], "root"),
        (&["fetch-params", "3KiB"], "3KiB"),
        (&["init", "--sector-size", "1GiB"], "1GiB"),
    ];
    for (args, want) in cli_cases {
        eprintln!("cli {args:?}");
        let out = c.miner_cmd(args);
        let err = String::from_utf8_lossy(&out.stderr);
        check!(fails, !out.status.success(), "lotus-miner {args:?} succeeded");
        check!(fails, err.contains(want), "lotus-miner {args:?}: {err}");
        cases += 1;
    }
    let api_infos = [
        "",
        "token-only",
        "tok:/ip4/1.2.3.4",
        "tok:/ip4/999.1.1.1/tcp/1/http",
        "tok:/ip4/127.0.0.1/tcp/notaport/http",
        "tok:/dns4/",
        "tok:http://127.0.0.1:2345",
        ":/ip4/127.0.0.1/tcp/2345/http",
    ];
    for info in api_infos {
        eprintln!("api info {info:?}");
        let out = c
            .worker_command("bad-worker", &["run", "--listen", "127.0.0.1:0"])
            .env("MINER_API_INFO", info)
            .env("LOTUS_WORKER_TIMEOUT", "1s")
            .output()
            .unwrap();
        check!(fails, !out.status.success(), "MINER_API_INFO={info:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        check!(fails, err.contains("ERROR"), "MINER_API_INFO={info:?}: {err}");
        cases += 1;
    }
    for (flag, want) in [("0s", "--http-server-timeout 0"), ("soon", "--http-server-timeout")] {
        let out = c
            .worker_command("bad-worker", &["run", "--listen", "127.0.0.1:0", "--http-server-timeout", flag])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        check!(fails, !out.status.success(), "--http-server-timeout {flag} was accepted");
        check!(fails, err.contains(want), "--http-server-timeout {flag}: {err}");
        cases += 1;
    }
    let configs = [
        ("[API]\nRemoteListenAddress = \"nonsense\"\n", "API.RemoteListenAddress"),
        ("[Storage]\nAssigner = \"random\"\n", "Storage.Assigner"),
        ("[Storage]\nParallelFetchLimit = 0\n", "Storage.ParallelFetchLimit"),
        ("[Storage]\nAllowPreCommit1 = \"yes\"\n", "AllowPreCommit1"),
        ("[Sealing]\nMinRetryTime = \"soon\"\n", "Sealing.MinRetryTime"),
        ("[Sealing]\nMaxSealingSectors = -1\n", "MaxSealingSectors"),
        ("[Chain]\nMessageConfidence = 5000\n", "Chain.MessageConfidence"),
        ("[Storage\n", "syntax"),
    ];
    for (text, want) in configs {
        let c2 = Cluster::new();
        std::fs::write(c2.path("miner/config.toml"), text).unwrap();
        let out = c2.miner_cmd(&["run"]);
        let err = String::from_utf8_lossy(&out.stderr);
        check!(fails, !out.status.success() && err.contains(want), "config {text:?}: {err}");
        cases += 1;
    }
    // The chain's API info: a miner that cannot reach its full node says so and exits.
    let c3 = Cluster::new();
    for (info, want) in [
        ("", "FULLNODE_API_INFO is empty"),
        ("tok:/ip4/127.0.0.1/tcp/notaport/http", "FULLNODE_API_INFO entry"),
        ("tok:/ip4/127.0.0.1/tcp/9/http", "cannot reach"),
    ] {
        let out = c3.miner_cmd_env(
            &["run"],
            &[("FULLNODE_API_INFO", info), ("LOTUS_API_LISTENADDRESS", "/ip4/127.0.0.1/tcp/0/http")],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        check!(fails, !out.status.success() && err.contains(want), "FULLNODE_API_INFO={info:?}: {err}");
        cases += 1;
    }
    println!("{cases} bad-input cases, each a clear error, no daemon down");
    assert!(fails.is_empty(), "{} of {cases} bad-input cases failed:\n{}", fails.len(), fails.join("\n"));
    assert!(cases >= 100, "only {cases} cases");
}
