//! Golden tests: the API contract against Lotus's generated API documents at b835fab7
//! (`fixtures/*.json`, extracted by `scripts/lotus-fixtures.py`, never edited by hand).
//!
//! For every method of a document that the contract declares: the permission is Lotus's; the
//! documented example params decode into our param types and encode back to the same JSON
//! (the same field names, JSON types and values, recursively); the documented example
//! response decodes into our result type and encodes back the same way. Our encodings may add
//! fields (Lotus's decoder ignores them), never drop or retype one. Documented methods the
//! contract does not declare must be listed below with the reason.

use lotus_api::contract::{self, Method, ParamList, Visitor};
use lotus_api::Permission;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

fn fixture(kind: &str) -> Map<String, Value> {
    let path = format!("{}/fixtures/{kind}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert!(doc["source"].as_str().unwrap().contains("@b835fab7"), "fixtures come from Lotus at b835fab7");
    doc["methods"].as_object().unwrap().clone()
}

/// Differences between a documented value and ours: every documented key must be present
/// with the same JSON type, recursively, and leaves must be equal. `null` in the document
/// (a nil pointer, slice or map in Go) matches anything.
fn diff(doc: &Value, ours: &Value, at: &str, out: &mut Vec<String>) {
    match (doc, ours) {
        (Value::Null, _) => {}
        (Value::Object(d), Value::Object(o)) => {
            for (k, v) in d {
                match o.get(k) {
                    Some(ov) => diff(v, ov, &format!("{at}.{k}"), out),
                    None => {
                        out.push(format!("{at}: field {k:?} missing (ours has {:?})", o.keys().collect::<Vec<_>>()))
                    }
                }
            }
        }
        (Value::Array(d), Value::Array(o)) => {
            if d.len() != o.len() {
                out.push(format!("{at}: {} element(s) documented, {} encoded", d.len(), o.len()));
            }
            for (i, (dv, ov)) in d.iter().zip(o).enumerate() {
                diff(dv, ov, &format!("{at}[{i}]"), out);
            }
        }
        (Value::Number(d), Value::Number(o)) => {
            if d.as_f64() != o.as_f64() {
                out.push(format!("{at}: documented {d}, encoded {o}"));
            }
        }
        (d, o) if d == o => {}
        (d, o) => out.push(format!("{at}: documented {d}, encoded {o}")),
    }
}

/// Go's docgen prints an io.Reader param as `{}`; the wire carries a reader description.
fn with_readers(params: Vec<Value>) -> Vec<Value> {
    params.into_iter().map(|p| if p == json!({}) { json!({"Type": "null", "Info": "1024"}) } else { p }).collect()
}

fn trim_trailing_nulls(mut v: Vec<Value>) -> Vec<Value> {
    while v.last() == Some(&Value::Null) {
        v.pop();
    }
    v
}

struct Golden {
    doc: Map<String, Value>,
    extras: &'static [&'static str],
    covered: BTreeSet<String>,
    failures: Vec<String>,
}

impl Visitor for Golden {
    fn visit<M: Method>(&mut self) {
        let name = M::NAME;
        let Some(m) = self.doc.get(name) else {
            if !self.extras.contains(&name) {
                self.failures.push(format!("{name}: not in Lotus's document and not listed as ours"));
            }
            return;
        };
        self.covered.insert(name.to_string());
        let mut out = vec![];
        if m["perm"] != json!(M::PERM.to_string()) {
            out.push(format!("permission: Lotus {}, ours {}", m["perm"], M::PERM));
        }
        let params = match &m["params"] {
            Value::Null => vec![],
            Value::Array(a) => with_readers(a.clone()),
            other => panic!("{name}: params {other}"),
        };
        match M::Params::from_values(name, M::PARAM_NAMES, params.clone()) {
            Ok(p) => {
                let ours = trim_trailing_nulls(p.to_values());
                diff(&Value::Array(params), &Value::Array(ours), "params", &mut out);
            }
            Err(e) => out.push(format!("the documented params do not decode: {e}")),
        }
        let response = &m["response"];
        // docgen prints `{}` for a method that returns only an error (the wire has null).
        let no_result = std::any::type_name::<M::Result>() == "()";
        if !(no_result && *response == json!({})) {
            match serde_json::from_value::<M::Result>(response.clone()) {
                Ok(r) => diff(response, &serde_json::to_value(r).unwrap(), "response", &mut out),
                Err(e) => out.push(format!("the documented response does not decode: {e}")),
            }
        }
        self.failures.extend(out.into_iter().map(|f| format!("{name}: {f}")));
    }
}

fn check(
    kind: &str,
    visit: fn(&mut Golden),
    extras: &'static [&'static str],
    untyped: &[&str],
    left_out: &[(&str, Permission, &str)],
) {
    let mut g = Golden { doc: fixture(kind), extras, covered: BTreeSet::new(), failures: vec![] };
    visit(&mut g);
    for (name, perm, why) in left_out {
        assert!(!why.is_empty());
        if g.covered.contains(*name) {
            g.failures.push(format!("{name}: listed as left out, but the contract declares it"));
        }
        match g.doc.get(*name) {
            None => g.failures.push(format!("{name}: listed as left out, but Lotus's document has no such method")),
            Some(m) if m["perm"] != json!(perm.to_string()) => {
                g.failures.push(format!("{name}: left out with permission {perm}, Lotus's is {}", m["perm"]))
            }
            Some(_) => {}
        }
    }
    for name in g.doc.keys() {
        if kind != "full" && !g.covered.contains(name) && !left_out.iter().any(|(n, _, _)| n == name) {
            g.failures.push(format!("{name}: in Lotus's document, neither in the contract nor listed as left out"));
        }
    }
    // A method whose result is untyped (JSON as it comes) passes its response check by
    // construction: it is in the contract, not counted as conforming.
    for name in untyped {
        if !g.covered.contains(*name) {
            g.failures.push(format!("{name}: listed as untyped, but the contract does not declare it"));
        }
    }
    println!(
        "{kind}: {} of {} documented methods in the contract ({} with an untyped result), {} left out",
        g.covered.len(),
        g.doc.len(),
        untyped.len(),
        left_out.len()
    );
    assert!(
        g.failures.is_empty(),
        "{} difference(s) from Lotus's {kind} API:\n{}",
        g.failures.len(),
        g.failures.join("\n")
    );
}

/// The full-node API is served only where a miner calls it (the devnet node is not a Lotus
/// node): every method of the contract must conform; the others are not listed one by one.
#[test]
fn the_full_node_api_is_lotuss_where_a_miner_calls_it() {
    check("full", contract::full::visit, &[], &[], &[]);
}

/// docgen marshals real values, so the example message's CID is the real CID of its CBOR
/// form: ours must compute the same one (a signed message with a BLS signature keeps it).
#[test]
fn message_cids_are_lotuss() {
    let doc = fixture("full");
    let example = doc["MpoolPushMessage"]["params"][0].clone();
    let m: lotus_api::chain::Message = serde_json::from_value(example.clone()).unwrap();
    assert_eq!(serde_json::to_value(m.cid()).unwrap(), example["CID"]);
    let signed: lotus_api::chain::SignedMessage =
        serde_json::from_value(doc["MpoolPushMessage"]["response"].clone()).unwrap();
    assert_eq!(serde_json::to_value(signed.cid()).unwrap(), doc["MpoolPushMessage"]["response"]["CID"]);
}

#[test]
fn the_worker_api_is_lotuss() {
    check("worker", contract::worker::visit, contract::worker::EXTRAS, &[], &[]);
}

#[test]
fn the_miner_api_is_lotuss_where_we_serve_it() {
    use contract::miner as m;
    check("miner", m::visit, m::EXTRAS, m::UNTYPED, m::LEFT_OUT);
}

/// What a Lotus client gets from our miner for a method it does not serve: the method's
/// reason, for the documented example params and a token of the method's permission (the
/// refusals the miner daemon installs, on a server with no other handler).
#[tokio::test]
async fn left_out_miner_methods_are_refused_with_their_reason() {
    let doc = fixture("miner");
    let mut s = lotus_api::RpcServer::new(lotus_api::methods::MINER);
    contract::miner::refuse_unserved(&mut s);
    let readme = std::fs::read_to_string(format!("{}/../../README.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let section = readme.split("### Lotus methods left out").nth(1).expect("the README lists the methods left out");
    let section = section.split("\n## ").next().unwrap();
    for (name, perm, why) in contract::miner::LEFT_OUT {
        let params = doc[*name]["params"].clone();
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": format!("Filecoin.{name}"), "params": params});
        let r = s.handle(body.to_string().as_bytes(), &lotus_api::Caller::operator(vec![*perm])).await.unwrap();
        let msg = r["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(msg, format!("{name} is not served by this miner: {why}"), "{r}");
        let lower = Permission::ALL.iter().take_while(|p| *p != perm).copied().collect::<Vec<_>>();
        if !lower.is_empty() {
            let r = s.handle(body.to_string().as_bytes(), &lotus_api::Caller::operator(lower.clone())).await.unwrap();
            let msg = r["error"]["message"].as_str().unwrap_or_default();
            assert!(msg.contains(&format!("need '{perm}'")), "{name} keeps Lotus's permission: {r}");
        }
        assert!(section.contains(&format!("`{name}`")), "the README's list names {name}");
    }
    // A declared method without a handler is refused as not implemented, its params checked first.
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "Filecoin.SectorsSummary", "params": []});
    let r =
        s.handle(body.to_string().as_bytes(), &lotus_api::Caller::operator(Permission::ALL.to_vec())).await.unwrap();
    assert!(
        r["error"]["message"].as_str().unwrap().contains("SectorsSummary is not implemented by this miner yet"),
        "{r}"
    );
}
