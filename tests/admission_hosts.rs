//! The admission modules in the hosts users run, with those hosts' own code: the Kubewarden
//! module through `wapc` + `wasmtime-provider` (Kubewarden's host stack), the OPA-ABI module
//! through the Rust `opa-wasm` crate and through OPA's JavaScript SDK. Every corpus object must
//! get the same allow/deny and the same rule ids as policy-core natively.

use meshguard_tests::rego_host;

use meshguard_tests::envoy::{built_module, repo_root};
use meshguard_tests::{admission_cases, AdmissionCase};
use serde_json::{json, Value};
use std::process::Command;
use std::sync::Arc;

#[path = "support/kubewarden_host.rs"]
mod kubewarden_host;
use kubewarden_host::{wapc_host_in, Cluster};

fn ids(v: &Value) -> Vec<String> {
    let mut out: Vec<String> =
        v.as_str().unwrap_or("").split(',').filter(|s| !s.is_empty()).map(String::from).collect();
    out.sort();
    out
}

fn wapc_host() -> wapc::WapcHost {
    wapc_host_in(None)
}

fn cases() -> Vec<AdmissionCase> {
    let cases = admission_cases().unwrap();
    assert!(cases.len() >= 60, "only {} admission cases", cases.len());
    assert!(cases.iter().any(|c| !c.allowed) && cases.iter().any(|c| c.allowed));
    cases
}

#[test]
fn kubewarden_module_in_the_wapc_host_matches_native() {
    let cluster: Cluster = Arc::default();
    let host = wapc_host_in(Some(cluster.clone()));
    assert_eq!(host.call("protocol_version", b"").unwrap(), b"\"v1\"");
    let mut failures = Vec::new();
    for c in cases() {
        *cluster.lock().unwrap() = c.cluster.clone();
        let payload = json!({"request": c.request, "settings": c.rules.clone().unwrap_or(json!({}))});
        let answer: Value =
            serde_json::from_slice(&host.call("validate", payload.to_string().as_bytes()).unwrap()).unwrap();
        let got = (
            answer["accepted"].as_bool(),
            ids(&answer["audit_annotations"]["meshguard.dev/deny"]),
            ids(&answer["audit_annotations"]["meshguard.dev/warn"]),
        );
        if got != (Some(c.allowed), c.deny.clone(), c.warn.clone()) {
            failures.push(format!("{}: native {:?} {:?} {:?}, waPC {got:?}", c.name, c.allowed, c.deny, c.warn));
        }
        if !c.allowed {
            assert_eq!(answer["code"], 403);
            let message = answer["message"].as_str().unwrap_or("");
            assert!(c.deny.iter().all(|id| message.contains(&format!("{id}: "))), "{}: {message}", c.name);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn kubewarden_settings_validation_and_operations() {
    let host = wapc_host();
    let ok: Value = serde_json::from_slice(&host.call("validate_settings", b"{}").unwrap()).unwrap();
    assert_eq!(ok["valid"], true);
    let bad = json!({"apiVersion": "meshguard.dev/v1alpha1", "kind": "RuleSet", "metadata": {"name": "x"},
                     "spec": {"rules": [{"id": "ports", "check": "istio-port-name", "params": {"protocol": ["http"]}}]}});
    let answer: Value =
        serde_json::from_slice(&host.call("validate_settings", bad.to_string().as_bytes()).unwrap()).unwrap();
    assert_eq!(answer["valid"], false);
    // The very text `meshguard check --rules` prints after `file:line:`.
    assert_eq!(
        answer["message"],
        "rule `ports`: spec.rules[0].params.protocol: unknown field `protocol`, expected `protocols`"
    );

    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}, "spec": {"ports": [{"name": "web", "port": 80}]}});
    let call = |op: &str, object: Value, old: Value| -> Value {
        let payload = json!({"request": {"operation": op, "namespace": "shop", "object": object, "oldObject": old}, "settings": {}});
        serde_json::from_slice(&host.call("validate", payload.to_string().as_bytes()).unwrap()).unwrap()
    };
    assert_eq!(call("DELETE", Value::Null, svc.clone())["accepted"], true, "deleting a bad object is fine");
    assert_eq!(call("UPDATE", svc.clone(), svc.clone())["accepted"], false, "an update is judged on the new object");
    assert!(host.call("validate", b"not json").is_err());
}

#[tokio::test(flavor = "current_thread")]
async fn opa_module_in_the_rust_opa_sdk_matches_native() {
    let bytes = std::fs::read(built_module("dist/meshguard-opa.wasm").unwrap()).unwrap();
    let engine = wasmtime::Engine::default();
    let module = wasmtime::Module::new(&engine, bytes).unwrap();
    let mut store = wasmtime::Store::new(&engine, ());
    let runtime = opa_wasm::Runtime::new(&mut store, &module).await.unwrap();
    assert_eq!(runtime.default_entrypoint(), Some("meshguard/violation"));
    let no_cluster = runtime.with_data(&mut store, &json!({})).await.unwrap();
    let mut failures = Vec::new();
    for c in cases() {
        let with_cluster;
        let policy = if c.cluster.is_empty() {
            &no_cluster
        } else {
            let inventory = json!({"inventory": rego_host::gatekeeper_inventory(&c.cluster)});
            let runtime = opa_wasm::Runtime::new(&mut store, &module).await.unwrap();
            with_cluster = runtime.with_data(&mut store, &inventory).await.unwrap();
            &with_cluster
        };
        let input = json!({"review": c.request, "parameters": c.rules.clone().unwrap_or(json!({}))});
        let violations: Value = policy.evaluate(&mut store, "meshguard/violation", &input).await.unwrap();
        let allowed: Value = policy.evaluate(&mut store, "meshguard/allow", &input).await.unwrap();
        let findings: Value = policy.evaluate(&mut store, "meshguard/findings", &input).await.unwrap();
        let mut deny: Vec<String> = violations[0]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["details"]["rule"].as_str().unwrap().to_string())
            .collect();
        deny.sort();
        deny.dedup();
        let mut warn: Vec<String> = findings[0]["result"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["action"] == "warn")
            .map(|f| f["rule"].as_str().unwrap().to_string())
            .collect();
        warn.sort();
        warn.dedup();
        if (allowed[0]["result"].as_bool(), &deny, &warn) != (Some(c.allowed), &c.deny, &c.warn) {
            failures.push(format!(
                "{}: native {} {:?} {:?}, opa-wasm {allowed} {deny:?} {warn:?}",
                c.name, c.allowed, c.deny, c.warn
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // An AdmissionReview as input, and the RuleSet from data instead of parameters.
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "namespace": "shop"}, "spec": {"ports": [{"name": "web", "port": 80}]}});
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"operation": "CREATE", "object": svc}});
    let allowed: Value = no_cluster.evaluate(&mut store, "meshguard/allow", &review).await.unwrap();
    assert_eq!(allowed, json!([{"result": false}]));
    let empty_rules = json!({"apiVersion": "meshguard.dev/v1alpha1", "kind": "RuleSet", "metadata": {"name": "none"}, "spec": {"rules": []}});
    let runtime = opa_wasm::Runtime::new(&mut store, &module).await.unwrap();
    let with_data = runtime.with_data(&mut store, &empty_rules).await.unwrap();
    let allowed: Value = with_data.evaluate(&mut store, "meshguard/allow", &review).await.unwrap();
    assert_eq!(allowed, json!([{"result": true}]), "the RuleSet from data applies");
}

#[test]
fn opa_module_in_opas_javascript_sdk_matches_native() {
    let dir = repo_root().join("tests/opa-js");
    assert!(
        dir.join("node_modules/@open-policy-agent/opa-wasm").exists(),
        "run `npm ci --prefix tests/opa-js` (scripts/test.sh does)"
    );
    // Each case with the data a Gatekeeper-style host sets: the inventory of its cluster.
    let cases: Vec<Value> = cases()
        .iter()
        .map(|c| {
            let mut v = serde_json::to_value(c).unwrap();
            if !c.cluster.is_empty() {
                v["data"] = json!({"inventory": rego_host::gatekeeper_inventory(&c.cluster)});
            }
            v
        })
        .collect();
    let cases_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(cases_file.path(), serde_json::to_vec(&cases).unwrap()).unwrap();
    let out = Command::new("node")
        .arg(dir.join("parity.mjs"))
        .arg(built_module("dist/meshguard-opa.wasm").unwrap())
        .arg(cases_file.path())
        .output()
        .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.trim_end().ends_with(" failed") && stdout.contains(" passed, 0 failed"), "{stdout}");
}

#[tokio::test(flavor = "current_thread")]
async fn opa_module_answers_the_same_over_the_abi_1_1_context_path() {
    let engine = wasmtime::Engine::default();
    let mut store = wasmtime::Store::new(&engine, ());
    let mut answers = Vec::new();
    for path in ["dist/meshguard-opa.wasm", "target/wasm-bench/meshguard-opa-abi-1.1.wasm"] {
        let module = wasmtime::Module::new(&engine, std::fs::read(built_module(path).unwrap()).unwrap()).unwrap();
        let runtime = opa_wasm::Runtime::new(&mut store, &module).await.unwrap();
        let version = format!("{:?}", runtime.abi_version());
        let policy = runtime.with_data(&mut store, &json!({})).await.unwrap();
        let mut results = Vec::new();
        for c in cases().iter().take(25) {
            let input = json!({"review": c.request, "parameters": c.rules.clone().unwrap_or(json!({}))});
            let v: Value = policy.evaluate(&mut store, "meshguard/violation", &input).await.unwrap();
            results.push(v);
        }
        answers.push((version, results));
    }
    assert_ne!(answers[0].0, answers[1].0, "the two modules declare different ABI minors: {answers:?}");
    assert_eq!(answers[0].1, answers[1].1, "opa_eval and the eval-context path give the same results");
}
