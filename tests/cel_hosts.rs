//! The CEL conformance cases (tests/cel-conformance, from upstream suites) in every admission host:
//! each case's expression becomes a `check: cel` rule, and the Kubewarden module in Kubewarden's
//! own waPC host crates, the OPA-ABI module as OPA hosts call it, the JavaScript package in Node
//! (bindings/js/test/cel.test.mjs) and policy-core natively must answer one AdmissionReview with
//! the very same response (allowed, denials, messages, the evaluation errors' words) — whatever
//! the case's expected value, which policy-core/tests/cel_conformance.rs judges.

#[path = "support/kubewarden_host.rs"]
mod kubewarden_host;
use kubewarden_host::wapc_host_in;
use meshguard_tests::envoy::{built_module, repo_root};
use meshguard_tests::rego_host::{Mode, RegoHost};
use serde_json::{json, Value};

/// Expressions of the cases that load as rules (no bindings: the object under review is not read).
fn expressions() -> Vec<String> {
    let dir = repo_root().join("tests/cel-conformance");
    let mut out = Vec::new();
    for suite in ["cel-spec", "kubernetes"] {
        let mut files: Vec<_> = std::fs::read_dir(dir.join(suite))
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        for file in files {
            let doc: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
            for case in doc["cases"].as_array().into_iter().flatten() {
                let unbound = case["bindings"].as_object().is_none_or(|b| b.is_empty());
                if case["skip"].is_null() && unbound {
                    if let Some(e) = case["expr"].as_str() {
                        out.push(e.to_string());
                    }
                }
            }
        }
    }
    out
}

fn rule_set(expressions: &[&String]) -> Value {
    let rules: Vec<Value> = expressions
        .iter()
        .enumerate()
        .map(|(i, e)| json!({"id": format!("c{i}"), "check": "cel", "params": {"expression": e}}))
        .collect();
    json!({"apiVersion": "meshguard.dev/v1alpha1", "kind": "RuleSet", "metadata": {"name": "conformance"}, "spec": {"rules": rules}})
}

#[test]
fn conformance_expressions_answer_alike_in_every_admission_host() {
    // Each rule alone first: those that do not load (refused at load, as the API server refuses
    // them) are left out, the rest go in batches.
    let all = expressions();
    let loading: Vec<&String> =
        all.iter().filter(|e| policy_core::Policy::from_value(&rule_set(&[*e])).is_ok()).collect();
    // The type check refuses at load what the API server refuses: what cel-spec runs with its
    // check turned off (`disable_check`) or expects to fail it, a result that is not a bool,
    // functions the API server does not declare (cel-go's `math` extension), and out-of-scope
    // forms such as cel.@block's internal names (1,125 of 2,232 load).
    assert!(loading.len() >= 1100, "only {} of {} case expressions load as rules", loading.len(), all.len());
    let wapc = wapc_host_in(None);
    let opa =
        RegoHost::new(&std::fs::read(built_module("dist/meshguard-opa-kubewarden.wasm").unwrap()).unwrap()).unwrap();
    let object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "shop"}});
    let request = json!({"uid": "u", "operation": "CREATE", "namespace": "shop", "object": object,
                         "kind": {"group": "", "version": "v1", "kind": "ConfigMap"}});
    let mut denied = 0;
    let mut for_js = Vec::new();
    for batch in loading.chunks(100) {
        let rules = rule_set(batch);
        let policy = policy_core::Policy::from_value(&rules).unwrap();
        let verdict = policy.review_admission(&json!({"request": request}));
        for_js.push(
            json!({"rules": rules, "native": {"response": verdict.response(json!("u")), "findings": verdict.findings}}),
        );
        let native = serde_json::to_value(policy_core::admission::kubewarden::ValidationResponse::from(
            &policy.review_admission(&request).response(json!("u")),
        ))
        .unwrap();
        let payload = json!({"request": request, "settings": rules});
        let kubewarden: Value =
            serde_json::from_slice(&wapc.call("validate", payload.to_string().as_bytes()).unwrap()).unwrap();
        assert_eq!(kubewarden, native, "the waPC module differs on {batch:?}");
        let rego = opa.validate(Mode::Opa, &rules, &request, None);
        assert_eq!(Value::Bool(rego.allowed), native["accepted"], "the OPA-ABI module differs on {batch:?}");
        assert_eq!(rego.message.as_deref(), native["message"].as_str(), "OPA-ABI messages on {batch:?}");
        denied += native["audit_annotations"]["meshguard.dev/deny"].as_str().map_or(0, |ids| ids.split(',').count());
    }
    // Cases that evaluate to false or fail deny: the comparison covered both outcomes.
    assert!(denied > 100, "only {denied} denials: the batches hardly exercised errors and false results");

    let package = repo_root().join("bindings/js");
    assert!(
        package.join("pkg/node/meshguard_js_bg.wasm").exists(),
        "bindings/js/pkg is not built: run scripts/build-js.sh (scripts/test.sh does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("cel.json");
    std::fs::write(&fixture, json!({"request": request, "batches": for_js}).to_string()).unwrap();
    let out = std::process::Command::new("node")
        .args(["--test", "--test-reporter=tap"])
        .arg(package.join("test/cel.test.mjs"))
        .env("MESHGUARD_JS_CEL_FIXTURE", &fixture)
        .output()
        .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("# pass 1") && stdout.contains("# skipped 0"),
        "the JavaScript package differs:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
