//! The `meshguard` binary as CI uses it: exit codes, formats, locations and error messages.

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn meshguard(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshguard"))
        .args(args)
        .current_dir(repo())
        .env_remove("NO_COLOR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

const BAD_SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: api\n  namespace: shop\nspec:\n  ports:\n  - name: web\n    port: 80\n";

#[test]
fn example_repo_fails_with_located_findings_and_the_fixed_one_passes() {
    let out = meshguard(&["check", "--format", "json", "examples/manifests"], None);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let doc = json(&out);
    let findings = doc["findings"].as_array().unwrap();
    let port = findings
        .iter()
        .find(|f| f["rule"] == "istio-port-name" && f["path"] == "spec.ports[0].name")
        .expect("port-name finding");
    assert_eq!(port["file"], "examples/manifests/payments/service.yaml");
    assert_eq!(port["line"], 10, "the line of `- name: web`");
    assert_eq!(
        (port["kind"].as_str(), port["namespace"].as_str(), port["name"].as_str()),
        (Some("Service"), Some("payments"), Some("ledger"))
    );
    let host =
        findings.iter().find(|f| f["rule"] == "istio-host-in-own-namespace" && f["kind"] == "VirtualService").unwrap();
    assert_eq!((host["path"].as_str(), host["line"].as_u64()), (Some("spec.hosts[1]"), Some(9)));
    let mut rules: Vec<&str> = findings.iter().map(|f| f["rule"].as_str().unwrap()).collect();
    rules.sort();
    rules.dedup();
    for expected in [
        "istio-port-name",
        "istio-headless-port-conflict",
        "istio-sidecar-start-order",
        "istio-graceful-shutdown",
        "istio-http-drain",
        "istio-export-to-own-namespace",
        "istio-host-in-own-namespace",
        "istio-platform-only-kinds",
        "istio-single-default-sidecar",
        "istio-circuit-breaker",
    ] {
        assert!(rules.contains(&expected), "{expected} missing from {rules:?}");
    }
    assert_eq!(doc["summary"]["files"], 8);
    assert_eq!(doc["summary"]["failing"].as_u64().unwrap(), doc["summary"]["deny"].as_u64().unwrap());

    let fixed = meshguard(&["check", "examples/manifests-fixed"], None);
    assert_eq!(fixed.status.code(), Some(0), "{}", stdout(&fixed));
    assert!(stdout(&fixed).contains("nothing fails the check"));
}

#[test]
fn text_output_groups_by_file_without_color_when_piped() {
    let out = meshguard(&["check", "-"], Some(BAD_SERVICE));
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.starts_with("<stdin>\n"), "{text}");
    assert!(
        text.contains("8:5   deny  istio-port-name  Service shop/api  spec.ports[0].name: port 80 (`web`)"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "no ANSI colors in a pipe");
    let colored = meshguard(&["check", "--color", "always", "-"], Some(BAD_SERVICE));
    assert!(stdout(&colored).contains("\x1b[1;31mdeny"));
}

#[test]
fn malformed_yaml_is_located_and_other_files_are_still_checked() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "a-broken.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: x\n");
    write(dir.path(), "b-service.yaml", BAD_SERVICE);
    write(dir.path(), "notes.txt", "not a manifest");
    let out = meshguard(&["check", dir.path().to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    let text = stdout(&out);
    assert!(text.contains(&format!("{bad}:4:1: error:")), "{text}");
    assert!(text.contains("istio-port-name"), "the good file was still checked: {text}");
    let doc = json(&meshguard(&["check", "--format", "json", dir.path().to_str().unwrap()], None));
    assert_eq!(doc["errors"][0]["line"], 4);
    assert_eq!(doc["summary"]["files"], 2, "only yaml/yml/json files are read");
}

#[test]
fn fail_on_warn_and_audit_never_fails() {
    let dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: a, namespace: shop}\nspec:\n  host: a\n  exportTo: ['.']\n";
    let out = meshguard(&["check", "-"], Some(dr));
    assert_eq!(out.status.code(), Some(0), "warn findings pass by default: {}", stdout(&out));
    assert!(
        stdout(&out).contains("warn   istio-circuit-breaker") || stdout(&out).contains("warn  istio-circuit-breaker")
    );
    let out = meshguard(&["check", "--fail-on", "warn", "-"], Some(dr));
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn list_documents_are_expanded_with_item_lines() {
    let list = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: a, namespace: shop}\n  spec:\n    ports:\n    - {name: http, port: 80}\n- apiVersion: v1\n  kind: Service\n  metadata: {name: b, namespace: shop}\n  spec:\n    ports:\n    - {name: oops, port: 80}\n";
    let doc = json(&meshguard(&["check", "--format", "json", "-"], Some(list)));
    let f = &doc["findings"][0];
    assert_eq!(
        (f["name"].as_str(), f["line"].as_u64(), f["path"].as_str()),
        (Some("b"), Some(15), Some("spec.ports[0].name"))
    );
    assert_eq!(doc["summary"]["objects"], 2);
}

#[test]
fn invalid_rule_set_names_file_line_rule_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write(
        dir.path(),
        "rules.yaml",
        "apiVersion: meshguard.dev/v1alpha1\nkind: RuleSet\nmetadata: {name: x}\nspec:\n  rules:\n  - id: ports\n    check: istio-port-name\n    params:\n      protocol: [http]\n",
    );
    let out = meshguard(&["check", "--rules", &rules, "examples/manifests-fixed"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{rules}:9: rule `ports`: spec.rules[0].params.protocol: unknown field `protocol`")),
        "{err}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let out = meshguard(&["check", "no/such/dir"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no/such/dir: cannot read"), "{}", stderr(&out));
    assert_eq!(meshguard(&["check"], None).status.code(), Some(2));
    assert_eq!(meshguard(&["check", "--format", "xml", "x"], None).status.code(), Some(2));
    let out = meshguard(&["rules", "explain", "nope"], None);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn printed_default_rule_set_round_trips_and_namespace_flag_applies() {
    let printed = stdout(&meshguard(&["rules", "print-default"], None));
    let dir = tempfile::tempdir().unwrap();
    let rules = write(dir.path(), "default.yaml", &printed);
    let no_ns = "apiVersion: v1\nkind: Service\nmetadata: {name: dns}\nspec:\n  ports: [{name: dns, port: 53}]\n";
    let out = meshguard(&["check", "--rules", &rules, "--namespace", "kube-system", "-"], Some(no_ns));
    assert_eq!(out.status.code(), Some(0), "kube-* is excluded by the default rules: {}", stdout(&out));
    let out = meshguard(&["check", "--rules", &rules, "-"], Some(no_ns));
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("Service default/dns"));
}

#[test]
fn help_teaches_exit_codes_and_examples() {
    let out = stdout(&meshguard(&["check", "--help"], None));
    assert!(out.contains("Exit codes: 0 nothing fails, 1 a finding fails the check, 2 usage or input error"));
    assert!(out.contains("--fail-on"));
    let list = stdout(&meshguard(&["rules", "list"], None));
    assert_eq!(
        list.lines().filter(|l| l.contains("  k8s  ") || l.contains("  http  ")).count(),
        policy_core::registry().len()
    );
}

#[test]
fn catalog_is_generated_from_the_registry() {
    let page = std::fs::read_to_string(repo().join("docs/checks.md")).unwrap();
    let start = "<!-- catalog:start (generated by `meshguard rules docs`; do not edit) -->\n";
    let end = "<!-- catalog:end -->";
    let from = page.find(start).expect("catalog start marker in docs/checks.md") + start.len();
    let to = page.find(end).expect("catalog end marker in docs/checks.md");
    let generated = stdout(&meshguard(&["rules", "docs"], None));
    assert!(page[from..to] == generated, "docs/checks.md's catalog is stale: run scripts/gen-catalog.sh");
}

#[test]
fn wasm_and_native_engines_print_identical_output() {
    for args in [
        vec!["check", "--format", "json", "examples/manifests"],
        vec!["check", "--format", "json", "examples/manifests-fixed"],
        vec!["check", "examples/manifests", "tests/corpus"],
    ] {
        let wasm = meshguard(&[&args[..], &["--engine", "wasm"]].concat(), None);
        let native = meshguard(&[&args[..], &["--engine", "native"]].concat(), None);
        assert!(
            wasm.status.code() == native.status.code() && stdout(&wasm) == stdout(&native),
            "{args:?}:\n{}\n---\n{}{}",
            stdout(&wasm),
            stdout(&native),
            stderr(&wasm)
        );
        assert!(!stdout(&wasm).is_empty());
    }
}

const LOOPS_FOREVER: &str = r#"(module (memory (export "memory") 1)
  (func (export "__guest_call") (param i32 i32) (result i32) (loop $l (br $l)) (i32.const 0)))"#;

/// A proxy-wasm filter whose start never returns.
const FILTER_LOOPS_FOREVER: &str = r#"(module (memory (export "memory") 1)
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (loop $l (br $l)) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32)))"#;

const ALLOCATES_FOREVER: &str = r#"(module (memory (export "memory") 1)
  (func (export "__guest_call") (param i32 i32) (result i32)
    (loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    unreachable))"#;

/// A proxy-wasm filter exporting request headers only (continue), as Envoy allows: a module need
/// not export the callbacks it does not implement.
const FILTER_REQUEST_HEADERS_ONLY: &str = r#"(module (memory (export "memory") 1)
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0)))"#;

/// A proxy-wasm filter whose start answers false.
const FILTER_REFUSES_TO_START: &str = r#"(module (memory (export "memory") 1)
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0)))"#;

#[test]
fn replay_calls_only_the_callbacks_a_filter_exports_and_stops_on_a_failed_start() {
    let dir = tempfile::tempdir().unwrap();
    let minimal = write(dir.path(), "minimal.wat", FILTER_REQUEST_HEADERS_ONLY);
    let out = meshguard(&["replay", "--module", &minimal, "--no-cache", "examples/requests.jsonl"], None);
    // Every request continues, so the examples' expected denials come out unexpected (exit 1).
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).contains("7 requests: 7 allowed, 0 denied"), "{}", stdout(&out));
    let refusing = write(dir.path(), "refusing.wat", FILTER_REFUSES_TO_START);
    let out = meshguard(&["replay", "--module", &refusing, "--no-cache", "examples/requests.jsonl"], None);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out).trim_end(), "error: the filter failed to start: proxy_on_vm_start answered false");
}

/// A waPC guest from before `meshguard_review_msgpack`: it knows `meshguard_review` (JSON) only,
/// answers one finding on the first object, and answers anything else as waPC's guest SDK does.
const KNOWS_JSON_REVIEW_ONLY: &str = r#"(module
  (import "wapc" "__guest_request" (func $request (param i32 i32)))
  (import "wapc" "__guest_response" (func $response (param i32 i32)))
  (import "wapc" "__guest_error" (func $error (param i32 i32)))
  (memory (export "memory") 16)
  (data (i32.const 0) "{\"findings\":[{\"rule\":\"old-module\",\"action\":\"deny\",\"message\":\"decided from JSON\",\"kind\":\"Service\",\"namespace\":\"shop\",\"name\":\"api\",\"path\":\"spec.ports[0].name\",\"object\":0}]}")
  (data (i32.const 512) "No handler registered for function meshguard_review_msgpack")
  (func (export "__guest_call") (param $op_len i32) (param $len i32) (result i32)
    (call $request (i32.const 1024) (i32.const 2048))
    (if (result i32) (i32.eq (local.get $op_len) (i32.const 16))
      (then (call $response (i32.const 0) (i32.const 170)) (i32.const 1))
      (else (call $error (i32.const 512) (i32.const 59)) (i32.const 0)))))"#;

#[test]
fn a_module_without_the_msgpack_review_is_asked_in_json() {
    let dir = tempfile::tempdir().unwrap();
    let module = write(dir.path(), "old.wat", KNOWS_JSON_REVIEW_ONLY);
    let service = write(dir.path(), "service.yaml", BAD_SERVICE);
    let out = meshguard(&["check", "--module", &module, "--no-cache", "--format", "json", &service], None);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let findings = json(&out)["findings"].clone();
    assert_eq!(findings.as_array().map(Vec::len), Some(1), "{findings}");
    assert_eq!(findings[0]["rule"], "old-module");
    assert_eq!(findings[0]["message"], "decided from JSON");
    assert_eq!(findings[0]["line"], 8, "located in the file: {findings}");
}

#[test]
fn runaway_modules_are_stopped_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let looping = write(dir.path(), "loop.wat", LOOPS_FOREVER);
    let out =
        meshguard(&["check", "--module", &looping, "--fuel", "50000000", "--no-cache", "examples/manifests"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(
            "ran out of fuel after 50000000 units and was stopped: it may loop forever (raise it with --fuel)"
        ),
        "{}",
        stderr(&out)
    );

    // Without --fuel a wall-clock deadline holds, with nothing compiled into the module: the
    // command reports it and exits 2 at the deadline (the test allows a slow machine 10x).
    let started = std::time::Instant::now();
    let out = meshguard(
        &["check", "--module", &looping, "--call-timeout-ms", "300", "--no-cache", "examples/manifests"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "stopped late: {:?}", started.elapsed());
    assert_eq!(
        stderr(&out).trim_end(),
        "error: the wasm module ran past its 300 ms deadline and was stopped: it may loop forever (raise it with --call-timeout-ms)"
    );
    assert!(stdout(&out).is_empty(), "nothing half printed: {}", stdout(&out));
    let filter = write(dir.path(), "filter-loop.wat", FILTER_LOOPS_FOREVER);
    let out = meshguard(
        &["replay", "--module", &filter, "--call-timeout-ms", "300", "--no-cache", "examples/requests.jsonl"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out).trim_end(),
        "error: the filter ran past its 300 ms deadline and was stopped: it may loop forever (raise it with --call-timeout-ms)"
    );
    let out = meshguard(&["check", "--call-timeout-ms", "0", "examples/manifests"], None);
    assert_eq!(out.status.code(), Some(2), "a zero timeout is refused: {}", stderr(&out));

    let hungry = write(dir.path(), "alloc.wat", ALLOCATES_FOREVER);
    let out =
        meshguard(&["check", "--module", &hungry, "--max-memory-mb", "64", "--no-cache", "examples/manifests"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out)
            .contains("tried to use more than 64 MiB of memory and was stopped (raise it with --max-memory-mb)"),
        "{}",
        stderr(&out)
    );

    let out = meshguard(&["check", "--module", "no/such.wasm", "examples/manifests"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no/such.wasm: cannot read the wasm module"), "{}", stderr(&out));
}

#[test]
fn compiled_modules_are_cached_on_disk() {
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().to_str().unwrap();
    let first = meshguard(&["check", "--cache-dir", dir, "examples/manifests-fixed"], None);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let files: Vec<_> = std::fs::read_dir(cache.path()).unwrap().filter_map(|e| e.ok()).collect();
    assert_eq!(files.len(), 1, "one compiled module");
    assert!(files[0].file_name().to_string_lossy().ends_with(".cwasm"));
    let second = meshguard(&["check", "--cache-dir", dir, "examples/manifests-fixed"], None);
    assert_eq!(stdout(&second), stdout(&first));
}

#[test]
fn sarif_validates_against_the_published_schema_and_points_at_lines() {
    let out = meshguard(&["check", "--format", "sarif", "examples/manifests"], None);
    assert_eq!(out.status.code(), Some(1));
    let doc = json(&out);
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("host-runner/tests/fixtures/sarif-schema-2.1.0.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(&doc).map(|e| format!("{} at {}", e, e.instance_path)).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let result =
        doc["runs"][0]["results"].as_array().unwrap().iter().find(|r| r["ruleId"] == "istio-port-name").unwrap();
    assert_eq!(result["level"], "error");
    let loc = &result["locations"][0]["physicalLocation"];
    assert_eq!(
        (loc["artifactLocation"]["uri"].as_str(), loc["region"]["startLine"].as_u64()),
        (Some("examples/manifests/payments/service.yaml"), Some(10))
    );
    // Its fix, as `meshguard fix` writes it: line 10 replaced by the renamed port.
    let change = &result["fixes"][0]["artifactChanges"][0];
    assert_eq!(change["artifactLocation"]["uri"], "examples/manifests/payments/service.yaml");
    assert_eq!(
        change["replacements"][0],
        serde_json::json!({"deletedRegion": {"startLine": 10, "startColumn": 1, "endLine": 11, "endColumn": 1},
                           "insertedContent": {"text": "  - name: http-web\n"}})
    );
    let unfixable =
        doc["runs"][0]["results"].as_array().unwrap().iter().find(|r| r["ruleId"] == "istio-headless-port-conflict");
    assert!(unfixable.unwrap().get("fixes").is_none(), "no fix, no `fixes`");

    // A broken file is a tool notification, and the document still validates.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "bad.yaml", "a: [\n");
    let doc = json(&meshguard(&["check", "--format", "sarif", dir.path().to_str().unwrap()], None));
    assert!(validator.iter_errors(&doc).next().is_none());
    assert_eq!(doc["runs"][0]["invocations"][0]["executionSuccessful"], false);
}

#[test]
fn junit_has_a_testcase_per_object_and_rule() {
    let out = meshguard(&["check", "--format", "junit", "examples/manifests"], None);
    assert_eq!(out.status.code(), Some(1));
    let xml = stdout(&out);
    let rules = 12; // Kubernetes rules of the built-in rule set
    assert!(
        xml.contains(&format!(r#"<testsuites name="meshguard" tests="{}" failures="13" errors="0">"#, 14 * rules)),
        "{}",
        &xml[..300]
    );
    assert_eq!(xml.matches("<testcase ").count(), 14 * rules);
    assert_eq!(xml.matches("<failure ").count(), 13);
    assert!(xml.contains(
        r#"name="Service payments/ledger [istio-port-name]" file="examples/manifests/payments/service.yaml""#
    ));
    assert!(xml.contains("examples/manifests/payments/service.yaml:10: deny spec.ports[0].name: port 80 (`web`)"));
    assert_eq!(xml.matches("<testsuite ").count(), xml.matches("</testsuite>").count());
}

#[test]
fn policyreport_has_a_report_per_namespace_with_pass_and_fail_results() {
    let doc = json(&meshguard(&["check", "--format", "policyreport", "examples/manifests"], None));
    assert_eq!(doc["kind"], "List");
    let items = doc["items"].as_array().unwrap();
    let payments = items.iter().find(|r| r["metadata"]["namespace"] == "payments").unwrap();
    assert_eq!(
        (payments["apiVersion"].as_str(), payments["kind"].as_str()),
        (Some("wgpolicyk8s.io/v1alpha2"), Some("PolicyReport"))
    );
    let fail = payments["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "istio-port-name" && r["result"] == "fail")
        .unwrap();
    assert_eq!(
        fail["resources"][0],
        serde_json::json!({"apiVersion": "v1", "kind": "Service", "name": "ledger", "namespace": "payments"})
    );
    assert_eq!(fail["properties"]["path"], "spec.ports[0].name");
    assert_eq!(payments["summary"]["fail"], 13);
    assert_eq!(payments["summary"]["warn"], 2);
    let cluster = items.iter().find(|r| r["kind"] == "ClusterPolicyReport").unwrap();
    assert!(cluster["summary"]["pass"].as_u64().unwrap() > 0 && cluster["summary"]["fail"] == 0);
}

#[test]
fn test_suites_pass_on_the_examples_and_fail_loudly_on_wrong_expectations() {
    let out = meshguard(&["test", "examples/tests"], None);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).trim_end().ends_with("8 passed, 0 failed"), "{}", stdout(&out));

    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "svc.yaml", BAD_SERVICE);
    write(dir.path(), "rules.yaml", "apiVersion: meshguard.dev/v1alpha1\nkind: RuleSet\nmetadata: {name: t}\nspec:\n  rules:\n  - {id: tenant, check: http-tenant-header, params: {allowed: [shop]}}\n  - {id: ports, check: istio-port-name}\n");
    write(
        dir.path(),
        "meshguard-test.yaml",
        "rules: rules.yaml\ncases:\n- name: wrongly expected to pass\n  resources: [svc.yaml]\n  expect: {allow: true}\n- name: right about the rule\n  resources: [svc.yaml]\n  expect: {rules: [ports]}\n- name: request denied by tenant\n  request: {method: GET, path: /, headers: {x-tenant: ads}}\n  expect: {deny: tenant}\n- name: wrongly expected allowed\n  request: {method: GET, path: /}\n  expect: {allow: true}\n",
    );
    for engine in ["wasm", "native"] {
        let out = meshguard(&["test", "--engine", engine, dir.path().to_str().unwrap()], None);
        assert_eq!(out.status.code(), Some(1), "{engine}: {}", stdout(&out));
        let text = stdout(&out);
        assert!(text.contains("FAIL  "), "{text}");
        assert!(text.contains("wrongly expected to pass\n      expected allow, got deny"), "{text}");
        assert!(text.contains("PASS  ") && text.contains(": right about the rule"), "{text}");
        assert!(text.contains("wrongly expected allowed\n      expected allow, got deny by tenant"), "{text}");
        assert!(text.trim_end().ends_with("2 passed, 2 failed"), "{text}");
    }
    let out = meshguard(&["test", "no/such/dir"], None);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn replay_runs_the_envoy_filter_over_recorded_requests() {
    let out = meshguard(&["replay", "--rules", "examples/envoy/rules.yaml", "examples/requests.jsonl"], None);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("examples/requests.jsonl:2  GET /api/orders  -> deny 403 by tenant"), "{text}");
    assert!(
        text.contains("examples/requests.jsonl:7  POST /shop.Orders/Get  -> deny grpc-status 7 by grpc-shape"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("7 requests: 3 allowed, 4 denied, 2 warned; 0 unexpected"), "{text}");

    // Rate limits follow the recorded clock; a wrong expectation fails loudly.
    let dir = tempfile::tempdir().unwrap();
    let rules = write(dir.path(), "rl.yaml", "apiVersion: meshguard.dev/v1alpha1\nkind: RuleSet\nmetadata: {name: rl}\nspec:\n  rules:\n  - {id: rate, check: http-local-rate-limit, params: {tokenBucket: {maxTokens: 2, tokensPerFill: 2, fillInterval: 1s}}}\n");
    let reqs = write(
        dir.path(),
        "r.jsonl",
        "{\"method\": \"GET\", \"path\": \"/\", \"at_ms\": 0, \"expect\": \"allow\"}\n{\"method\": \"GET\", \"path\": \"/\", \"at_ms\": 10, \"expect\": \"allow\"}\n{\"method\": \"GET\", \"path\": \"/\", \"at_ms\": 20, \"expect\": {\"decision\": \"deny\", \"status\": 429}}\n{\"method\": \"GET\", \"path\": \"/\", \"at_ms\": 1000, \"expect\": \"allow\"}\n{\"method\": \"GET\", \"path\": \"/\", \"at_ms\": 1001, \"expect\": \"deny\"}\n{\"method\": \"GET\", \"path\": \"/\", \"at_ms\": 1002, \"expect\": \"deny\"}\n",
    );
    let out = meshguard(&["replay", "--rules", &rules, &reqs], None);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains(":5  GET /  -> allow  UNEXPECTED (expected \"deny\")"),
        "two tokens came back at 1 s: {text}"
    );
    assert!(text.contains(":6  GET /  -> deny 429 by rate") && text.matches("UNEXPECTED").count() == 1, "{text}");
    assert!(text.trim_end().ends_with("6 requests: 4 allowed, 2 denied, 0 warned; 1 unexpected"), "{text}");

    let bad = write(dir.path(), "bad.jsonl", "{\"method\": \"GET\"}\n");
    let out = meshguard(&["replay", "--rules", &rules, &bad], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("bad.jsonl:1: missing field `path`"), "{}", stderr(&out));
}

#[test]
fn the_envoy_example_and_its_rules_file_hold_the_same_rule_set() {
    let envoy = std::fs::read_to_string(repo().join("examples/envoy/envoy.yaml")).unwrap();
    let doc = policy_core::yaml::parse_one(&envoy).unwrap().value;
    let inline = doc.pointer("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters/0/typed_config/config/configuration/value").unwrap();
    let inline = policy_core::yaml::parse_one(inline.as_str().unwrap()).unwrap().value;
    let file =
        policy_core::yaml::parse_one(&std::fs::read_to_string(repo().join("examples/envoy/rules.yaml")).unwrap())
            .unwrap()
            .value;
    assert_eq!(inline, file, "examples/envoy/rules.yaml drifted from the RuleSet inside examples/envoy/envoy.yaml");
}

/// `check --format json` in both engines: the same output, returned once.
fn check_both_engines(args: &[&str]) -> (Option<i32>, Value) {
    let mut outputs = ["wasm", "native"].map(|engine| {
        let mut all = vec!["check", "--format", "json", "--engine", engine];
        all.extend_from_slice(args);
        let out = meshguard(&all, None);
        (out.status.code(), json(&out))
    });
    assert_eq!(outputs[0], outputs[1], "the wasm and native engines disagree");
    std::mem::take(&mut outputs[0])
}

#[test]
fn validating_admission_policies_run_in_ci_with_file_and_line() {
    let (code, clean) = check_both_engines(&["examples/manifests-fixed"]);
    assert_eq!(code, Some(0), "{clean}");
    let (code, doc) = check_both_engines(&["--policies", "examples/policies", "examples/manifests-fixed"]);
    assert_eq!(code, Some(1), "{doc}");
    let findings = doc["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{doc}");
    let f = &findings[0];
    assert_eq!(f["rule"], "replicalimit-policy.example.com/replicalimit-binding-meshed.example.com");
    assert_eq!(f["file"], "examples/manifests-fixed/shop/deployment.yaml");
    assert_eq!(f["line"], 7, "the line of `replicas: 3`");
    assert_eq!(f["path"], "spec.replicas");
    assert_eq!(f["message"], "at most 2 replicas in a meshed namespace");
}

#[test]
fn a_teams_cel_rule_finds_at_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write(
        dir.path(),
        "deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: api, namespace: shop}\nspec:\n  template:\n    spec:\n      containers:\n      - {name: api, image: shop/api:latest, resources: {limits: {memory: 3Gi}}}\n",
    );
    let (code, doc) = check_both_engines(&["--rules", "examples/cel/rules.yaml", &manifest]);
    assert_eq!(code, Some(1), "{doc}");
    let by_rule = |id: &str| doc["findings"].as_array().unwrap().iter().find(|f| f["rule"] == id).cloned();
    let pinned = by_rule("pinned-image-versions").expect("pinned-image-versions finding");
    assert_eq!((pinned["line"].as_u64(), pinned["action"].as_str()), (Some(7), Some("deny")));
    assert_eq!(pinned["message"], "images without a semver tag: shop/api:latest");
    let memory = by_rule("memory-limit-ceiling").expect("memory-limit-ceiling finding");
    assert_eq!((memory["line"].as_u64(), memory["action"].as_str()), (Some(7), Some("warn")));
}

#[test]
fn cel_syntax_errors_name_file_line_rule_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write(
        dir.path(),
        "rules.yaml",
        "apiVersion: meshguard.dev/v1alpha1\nkind: RuleSet\nmetadata: {name: r}\nspec:\n  rules:\n  - id: replicas\n    check: cel\n    params:\n      expression: object.spec.replicas <=\n",
    );
    let out = meshguard(&["check", "--rules", &rules, "examples/manifests-fixed"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains(&format!("{rules}:9:")), "{err}");
    assert!(err.contains("rule `replicas`: spec.rules[0].params.expression: syntax error at column"), "{err}");

    let policy = write(
        dir.path(),
        "vap.yaml",
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicy\nmetadata: {name: p}\nspec:\n  matchConstraints:\n    resourceRules: [{apiGroups: [apps], apiVersions: [v1], operations: [CREATE], resources: [deployments]}]\n  validations:\n  - expression: object.spec.replicas < 5 &&\n---\napiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicyBinding\nmetadata: {name: b}\nspec: {policyName: p, validationActions: [Deny]}\n",
    );
    let out = meshguard(&["check", "--policies", &policy, "examples/manifests-fixed"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{policy}:8: ValidatingAdmissionPolicy `p`: spec.validations[0].expression: syntax error"
        )),
        "{err}"
    );
}

/// Type errors are load errors, as the API server refuses such a policy when it is created.
#[test]
fn cel_type_errors_name_file_line_rule_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write(
        dir.path(),
        "rules.yaml",
        "apiVersion: meshguard.dev/v1alpha1\nkind: RuleSet\nmetadata: {name: r}\nspec:\n  rules:\n  - id: containers\n    check: cel\n    params:\n      expression: size(object.spec.template.spec.containers) > 'one'\n",
    );
    let out = meshguard(&["check", "--rules", &rules, "examples/manifests-fixed"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{rules}:9: rule `containers`: spec.rules[0].params.expression: type error at column 44 of the \
             expression: found no matching overload for '_>_' applied to '(int, string)'"
        )),
        "{err}"
    );

    let policy = write(
        dir.path(),
        "vap.yaml",
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicy\nmetadata: {name: p}\nspec:\n  matchConstraints:\n    resourceRules: [{apiGroups: [apps], apiVersions: [v1], operations: [CREATE], resources: [deployments]}]\n  validations:\n  - expression: object.spec.replicas < 5\n  - expression: request.object.spec.replicas < 5\n  - expression: \"'replicas'\"\n---\napiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicyBinding\nmetadata: {name: b}\nspec: {policyName: p, validationActions: [Deny]}\n",
    );
    let out = meshguard(&["check", "--policies", &policy, "examples/manifests-fixed"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{policy}:9: ValidatingAdmissionPolicy `p`: spec.validations[1].expression: type error at column 8 of \
             the expression: undefined field 'object'"
        )),
        "{err}"
    );
    let fixed = std::fs::read_to_string(&policy).unwrap().replace("request.object", "object");
    std::fs::write(&policy, fixed).unwrap();
    let err = stderr(&meshguard(&["check", "--policies", &policy, "examples/manifests-fixed"], None));
    assert!(err.contains("spec.validations[2].expression: must evaluate to bool but got string"), "{err}");
}

/// A quadratic CEL rule over a 5,000-port Service (25 million iterations) is stopped by the
/// runtime cost budget, counted not timed: both engines stop at the same iteration and print the
/// same finding, under the rule's failurePolicy.
#[test]
fn a_quadratic_cel_rule_is_stopped_by_the_cost_budget_alike_in_both_engines() {
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<Value> = (1..=5000).map(|p| serde_json::json!({"name": format!("http-{p}"), "port": p})).collect();
    let service = serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "wide", "namespace": "shop"},
                                     "spec": {"ports": ports}});
    let manifest = write(dir.path(), "service.json", &service.to_string());
    let rules = write(
        dir.path(),
        "rules.yaml",
        "apiVersion: meshguard.dev/v1alpha1\nkind: RuleSet\nmetadata: {name: q}\nspec:\n  rules:\n  - id: unique-ports\n    check: cel\n    params:\n      expression: \"object.spec.ports.all(p, object.spec.ports.all(q, q.port != p.port || q.name == p.name))\"\n",
    );
    let run = |engine: &str| {
        meshguard(&["check", "--format", "json", "--rules", &rules, "--engine", engine, &manifest], None)
    };
    let (wasm, native) = (run("wasm"), run("native"));
    assert_eq!(stdout(&wasm), stdout(&native), "{}", stderr(&wasm));
    let found = json(&native);
    let message = found["findings"][0]["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("the evaluation exceeded its runtime cost budget of 10000000"), "{}", stdout(&native));
    assert_eq!(native.status.code(), Some(1), "failurePolicy Fail: the finding denies");
}

#[test]
fn rules_export_to_vap_writes_loadable_policies_and_names_every_rule_it_leaves() {
    let printed = stdout(&meshguard(&["rules", "print-default"], None));
    let out = meshguard(&["rules", "export", "--to", "vap", "--rules", "-"], Some(&printed));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let exported = stdout(&out);
    assert_eq!(exported, stdout(&meshguard(&["rules", "export", "--to", "vap"], None)), "stdin and built-in agree");
    let objects: Vec<Value> =
        policy_core::yaml::parse_documents(&exported).unwrap().into_iter().map(|d| d.value).collect();
    let rules_of = |kind: &str| -> std::collections::BTreeSet<String> {
        objects
            .iter()
            .filter(|o| o["kind"] == kind)
            .map(|o| o["metadata"]["annotations"]["meshguard.dev/rule"].as_str().unwrap().to_string())
            .collect()
    };
    let exported_rules = rules_of("ValidatingAdmissionPolicy");
    assert_eq!(exported_rules, rules_of("ValidatingAdmissionPolicyBinding"), "every policy is bound");
    // Every rule of the default set is exported or named on stderr with why, never both or neither.
    let default = policy_core::yaml::parse_one(policy_core::DEFAULT_RULES_YAML).unwrap().value;
    let errors = stderr(&out);
    for rule in default["spec"]["rules"].as_array().unwrap() {
        let id = rule["id"].as_str().unwrap();
        let named = errors.contains(&format!("rule `{id}` ("));
        assert!(named != exported_rules.contains(id), "{id}: exported and named, or neither:\n{errors}");
    }
    for (id, why) in [
        ("istio-headless-port-conflict", "stays with the webhook, since the check compares a headless Service"),
        ("istio-single-default-sidecar", "stays with the webhook"),
        ("istio-http-drain", "from the Services that select it"),
        ("http-header-limits", "an HTTP rule: Envoy enforces it"),
    ] {
        let line = errors.lines().find(|l| l.contains(&format!("`{id}`"))).unwrap_or_default();
        assert!(line.contains(why), "{id}: {line}");
    }
    assert!(exported_rules.contains("istio-port-name") && exported_rules.contains("istio-graceful-shutdown"));

    // The objects are valid in shape: as manifests they pass `check`, and as policies they load.
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "exported.yaml", &exported);
    let out = meshguard(&["check", "--engine", "native", &file], None);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    let service = "apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: shop}\nspec:\n  ports: [{name: web, port: 80}]\n";
    let empty = write(
        dir.path(),
        "empty.yaml",
        "apiVersion: meshguard.dev/v1alpha1\nkind: RuleSet\nmetadata: {name: none}\nspec:\n  rules: []\n",
    );
    let out = meshguard(&["check", "--engine", "native", "--rules", &empty, "--policies", &file, "-"], Some(service));
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("istio-port-name/istio-port-name"), "{}", stdout(&out));

    // What cannot be a binding is named, and a rule set that does not load is an input error.
    let waves = "apiVersion: meshguard.dev/v1alpha1\nkind: RuleSet\nmetadata: {name: w}\nspec:\n  rules:\n  \
                 - {id: ports, check: istio-port-name, actionOverrides: [{action: warn, namespaces: [team-*]}]}\n";
    let out = meshguard(&["rules", "export", "--to", "vap", "--rules", "-"], Some(waves));
    assert_eq!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("actionOverrides[0] names namespaces by pattern (`team-*`)"), "{}", stderr(&out));
    let bad = "apiVersion: meshguard.dev/v1alpha1\nkind: RuleSet\nmetadata: {name: b}\nspec:\n  rules:\n  - {id: x, check: nope}\n";
    let out = meshguard(&["rules", "export", "--to", "vap", "--rules", "-"], Some(bad));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains(":6:") && stderr(&out).contains("unknown check `nope`"), "{}", stderr(&out));
}

#[test]
fn rules_export_to_map_fixes_in_the_cluster_what_fix_writes_in_the_repo() {
    let rules = "examples/native/mutating-rules.yaml";
    let out = meshguard(&["rules", "export", "--to", "map", "--rules", rules], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let errors = stderr(&out);
    assert!(
        errors.contains("rule `circuit-breaker` (istio-circuit-breaker) is not exported: it does not mutate"),
        "{errors}"
    );
    assert!(
        errors.contains("rule `sidecar-start-order` (istio-sidecar-start-order) is exported in part: its fix is exported for pods without"),
        "{errors}"
    );
    let exported = stdout(&out);
    let objects: Vec<Value> =
        policy_core::yaml::parse_documents(&exported).unwrap().into_iter().map(|d| d.value).collect();
    let names = |kind: &str| -> Vec<String> {
        objects
            .iter()
            .filter(|o| o["kind"] == kind)
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names("MutatingAdmissionPolicy"),
        ["team-label", "graceful-shutdown", "port-names", "export-to-own-namespace", "sidecar-start-order"]
    );
    // Legacy does not mutate: the rule binds the other namespaces and cluster-scoped objects.
    let export_bindings: Vec<&Value> = objects
        .iter()
        .filter(|o| {
            o["kind"] == "MutatingAdmissionPolicyBinding" && o["spec"]["policyName"] == "export-to-own-namespace"
        })
        .collect();
    assert_eq!(export_bindings.len(), 2, "{export_bindings:?}");
    assert_eq!(
        export_bindings[0]["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"][0],
        serde_json::json!({"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["legacy"]})
    );

    // Valid in shape, and in meshguard's MAP engine they write what the rules' fixes write (the
    // Namespaces are in the input, so the bindings' namespaceSelectors can be read offline).
    let dir = tempfile::tempdir().unwrap();
    let policies = write(dir.path(), "mutations.yaml", &exported);
    let out = meshguard(&["check", "--engine", "native", &policies], None);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    let manifest = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\n  namespace: shop\nspec:\n  template:\n    spec:\n      containers:\n      - name: api\n        image: shop/api:1.0\n---\n\
apiVersion: v1\nkind: Service\nmetadata:\n  name: api\n  namespace: shop\nspec:\n  ports:\n  - port: 80\n    targetPort: 8080\n  - name: web\n    port: 8080\n---\n\
apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: api\n  namespace: shop\nspec:\n  host: api\n---\n\
apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: api\n  namespace: legacy\nspec:\n  host: api\n---\n\
apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: legacy\n";
    let by_rules = write(dir.path(), "by-rules.yaml", manifest);
    let by_policies = write(dir.path(), "by-policies.yaml", manifest);
    let empty = write(
        dir.path(),
        "empty.yaml",
        "apiVersion: meshguard.dev/v1alpha1\nkind: RuleSet\nmetadata: {name: none}\nspec:\n  rules: []\n",
    );
    let out = meshguard(&["fix", "--engine", "native", "--write", "--rules", rules, &by_rules], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = meshguard(
        &["fix", "--engine", "native", "--write", "--rules", &empty, "--policies", &policies, &by_policies],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let read = |f: &str| -> Vec<Value> {
        let text = std::fs::read_to_string(f).unwrap();
        policy_core::yaml::parse_documents(&text).unwrap().into_iter().map(|d| d.value).collect()
    };
    // `fix` writes every fix into the repo; admission mutates where the rule says (not legacy).
    let (fixed, mutated) = (read(&by_rules), read(&by_policies));
    assert_eq!(fixed[..3], mutated[..3]);
    assert_eq!(fixed[3]["spec"]["exportTo"], serde_json::json!(["."]));
    assert_eq!(mutated[0]["spec"]["template"]["metadata"]["labels"]["team"], "unowned");
    assert_eq!(mutated[1]["spec"]["ports"][0]["name"], "http");
    assert_eq!(mutated[2]["spec"]["exportTo"], serde_json::json!(["."]));
    assert!(mutated[3]["spec"].get("exportTo").is_none(), "legacy is reported, not rewritten");

    // A rule that mutates only in some namespaces binds only those.
    let waves = "apiVersion: meshguard.dev/v1alpha1\nkind: RuleSet\nmetadata: {name: w}\nspec:\n  rules:\n  \
                 - {id: ports, check: istio-port-name, actionOverrides: [{action: deny, namespaces: [shop, web], mutate: true}]}\n";
    let out = meshguard(&["rules", "export", "--to", "map", "--rules", "-"], Some(waves));
    let objects: Vec<Value> =
        policy_core::yaml::parse_documents(&stdout(&out)).unwrap().into_iter().map(|d| d.value).collect();
    let bindings: Vec<&Value> = objects.iter().filter(|o| o["kind"] == "MutatingAdmissionPolicyBinding").collect();
    assert_eq!(bindings.len(), 1, "{}", stdout(&out));
    assert_eq!(
        bindings[0]["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"][0],
        serde_json::json!({"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["shop", "web"]})
    );
}

#[test]
fn kyverno_and_gatekeeper_policies_run_from_policies_and_a_rego_template_is_refused_with_its_line() {
    let out = meshguard(
        &[
            "check",
            "--engine",
            "native",
            "--format",
            "json",
            "--rules",
            "examples/imports/no-rules.yaml",
            "--policies",
            "examples/imports/gatekeeper",
            "examples/imports/resources.yaml",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let denied: Vec<(&str, &str)> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "gatekeeper-k8srequiredlabels-all-must-have-owner/all-must-have-owner")
        .map(|f| (f["name"].as_str().unwrap(), f["message"].as_str().unwrap()))
        .collect();
    assert_eq!(
        denied,
        [
            ("unlabelled", "missing required label, requires all of: owner"),
            ("unlabelled", "regex mismatch"),
            ("wrong-owner", "regex mismatch")
        ]
    );
    let dir = tempfile::tempdir().unwrap();
    let rego =
        "apiVersion: templates.gatekeeper.sh/v1\nkind: ConstraintTemplate\nmetadata: {name: k8sdenyall}\nspec:\n  \
                crd: {spec: {names: {kind: K8sDenyAll}}}\n  targets:\n  - target: admission.k8s.gatekeeper.sh\n    \
                rego: 'package k8sdenyall'\n---\napiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sDenyAll\n\
                metadata: {name: deny-all}\nspec: {}\n";
    let file = write(dir.path(), "rego.yaml", rego);
    let out = meshguard(&["check", "--engine", "native", "--policies", &file, "examples/imports/resources.yaml"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("rego.yaml:7: ConstraintTemplate `k8sdenyall`: spec.targets[0]: only templates with `code` for the K8sNativeValidation engine"), "{err}");

    // Kyverno's own libraries (here its HTTP calls) are undeclared in the API server's CEL
    // environment: the policy is refused when it loads, not when a request reaches it.
    let http = "apiVersion: policies.kyverno.io/v1\nkind: ValidatingPolicy\nmetadata: {name: ask}\nspec:\n  \
                matchConstraints:\n    resourceRules:\n    - {apiGroups: [''], apiVersions: [v1], operations: [CREATE], resources: [pods]}\n  \
                validations:\n  - expression: \"http.Get('https://example.com/allowed').allowed\"\n";
    let file = write(dir.path(), "http.yaml", http);
    let out = meshguard(&["check", "--engine", "native", "--policies", &file, "examples/imports/resources.yaml"], None);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("http.yaml:") && err.contains("undeclared reference to 'http.Get'"), "{err}");

    // An error in a template's variable or match condition names the template's own field.
    for (broken, field) in [
        ("variables: [{name: team, expression: 'object.metadata.labels.team +'}]", "source.variables[0].expression"),
        ("matchCondition: [{name: pods, expression: 'object.kind = 1'}]", "source.matchCondition[0].expression"),
    ] {
        let template = format!(
            "apiVersion: templates.gatekeeper.sh/v1\nkind: ConstraintTemplate\nmetadata: {{name: k8steam}}\nspec:\n  \
             crd: {{spec: {{names: {{kind: K8sTeam}}}}}}\n  targets:\n  - target: admission.k8s.gatekeeper.sh\n    code:\n    \
             - engine: K8sNativeValidation\n      source:\n        {broken}\n        \
             validations: [{{expression: 'true'}}]\n---\napiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sTeam\n\
             metadata: {{name: team}}\nspec: {{}}\n"
        );
        let file = write(dir.path(), "template.yaml", &template);
        let out =
            meshguard(&["check", "--engine", "native", "--policies", &file, "examples/imports/resources.yaml"], None);
        assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
        let err = stderr(&out);
        assert!(err.contains("template.yaml:") && err.contains(&format!("spec.targets[0].code[0].{field}")), "{err}");
    }
}
