//! The JavaScript package (bindings/js, built by scripts/build-js.sh) over the whole corpus,
//! against the CLI: for every case this writes the case's objects to a file, runs
//! `meshguard check --format json`'s own code path on it (native engine, JSON printer), and hands
//! cases and answers to `node --test bindings/js/test/`, which must give the same findings
//! (rule, action, message, line, column, kind, namespace, name, path), the corpus's HTTP
//! decisions, and policy-core's admission verdicts.

use host_runner::check;
use host_runner::engine::Reviewer;
use meshguard_tests::envoy::repo_root;
use meshguard_tests::{admission_cases, load_corpus};
use policy_core::{Action, Policy};
use serde_json::{json, Value};
use std::process::Command;

/// The case's objects as a manifest stream: one pretty JSON document per object (YAML's flow
/// style), so findings land on distinct lines and columns.
fn manifests(objects: &[Value]) -> String {
    objects.iter().map(|o| serde_json::to_string_pretty(o).unwrap() + "\n").collect::<Vec<_>>().join("---\n")
}

#[test]
fn the_js_package_matches_the_cli_on_the_whole_corpus() {
    let package = repo_root().join("bindings/js");
    assert!(
        package.join("pkg/node/meshguard_js_bg.wasm").exists(),
        "bindings/js/pkg is not built: run scripts/build-js.sh (scripts/test.sh does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut cases = Vec::new();
    for (i, case) in load_corpus().unwrap().iter().enumerate() {
        let objects: Vec<Value> = case.objects.iter().chain(&case.cluster).cloned().collect();
        let text = manifests(&objects);
        let file = dir.path().join(format!("case-{i}.yaml"));
        std::fs::write(&file, &text).unwrap();
        let policy = match &case.rules {
            Some(doc) => Policy::from_value(doc).unwrap(),
            None => Policy::default_rules().unwrap(),
        };
        let report = check::run(&Reviewer::Native(policy), &[file], &case.namespace, Action::Deny).unwrap();
        let mut out = Vec::new();
        host_runner::report::printer(host_runner::cli::Format::Json, false).print(&report, &mut out).unwrap();
        let cli: Value = serde_json::from_slice(&out).unwrap();
        let requests: Vec<Value> = case
            .requests
            .iter()
            .map(|r| {
                json!({"request": r.request, "at_ms": r.at_ms, "expect": {
                "decision": r.expect.decision, "rule": r.expect.rule, "status": r.expect.status,
                "grpc_status": r.expect.grpc_status, "warn": r.expect.warn}})
            })
            .collect();
        cases.push(json!({
            "name": case.source,
            "rules": case.rules.as_ref().map(|r| r.to_string()),
            "namespace": case.namespace,
            "manifests": text,
            "cli": cli,
            "requests": requests,
        }));
    }
    let findings: usize = cases.iter().map(|c| c["cli"]["findings"].as_array().map_or(0, Vec::len)).sum();
    assert!(cases.len() >= 50 && findings >= 60, "{} cases, {findings} findings", cases.len());
    let admission = admission_cases().unwrap();
    let fixture = dir.path().join("fixture.json");
    std::fs::write(&fixture, json!({"cases": cases, "admission": admission}).to_string()).unwrap();

    let out = Command::new("node")
        .args(["--test", "--test-reporter=tap"])
        .arg(package.join("test/api.test.mjs"))
        .arg(package.join("test/corpus.test.mjs"))
        .env("MESHGUARD_JS_FIXTURE", &fixture)
        .output()
        .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let failing: Vec<&str> = stdout.lines().filter(|l| l.starts_with("not ok")).collect();
    assert!(
        out.status.success() && failing.is_empty(),
        "{failing:#?}\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let count =
        |key: &str| stdout.lines().find_map(|l| l.strip_prefix(key)).and_then(|n| n.trim().parse::<usize>().ok());
    assert!(count("# pass ").is_some_and(|n| n > cases.len()), "node ran too few tests\n{stdout}");
    assert_eq!(count("# skipped "), Some(0), "{stdout}");
}
