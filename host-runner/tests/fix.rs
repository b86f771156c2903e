//! `meshguard fix` as CI and a bot run it: the diff and its exit code, `--write`, a stream, JSON
//! for bots, and the promise that `check` afterwards finds only what `fix` said it left.

use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn meshguard(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshguard"))
        .args(args)
        .current_dir(dir)
        .env("MESHGUARD_CACHE_DIR", dir.join(".cache"))
        .env("MESHGUARD_CACHE_KEY", "fix-tests")
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

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A copy of examples/manifests in a fresh directory (named `manifests` inside it).
fn example_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-r")
        .arg(repo().join("examples/manifests"))
        .arg(dir.path().join("manifests"))
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

/// `file:line: rule` of each finding `fix` says it left (stderr's "not fixed" lines).
fn left_by_fix(stderr: &str) -> BTreeSet<String> {
    stderr
        .lines()
        .filter(|l| l.contains(": not fixed: "))
        .map(|l| l.split(": not fixed: ").next().unwrap().to_string())
        .collect()
}

#[test]
fn the_example_repo_is_fixed_in_place_and_check_finds_only_what_fix_left() {
    let dir = example_repo();
    let d = dir.path();
    let dry = meshguard(d, &["fix", "--engine", "native", "manifests"], None);
    assert_eq!(dry.status.code(), Some(1), "something to fix: {}", text(&dry.stderr));
    let diff = text(&dry.stdout);
    assert!(diff.contains("--- a/manifests/payments/service.yaml\n+++ b/manifests/payments/service.yaml\n"), "{diff}");
    assert!(diff.contains("-  - name: web\n+  - name: http-web\n"), "{diff}");
    assert!(diff.contains("+  exportTo: [\".\"]"), "{diff}");
    assert!(diff.contains("holdApplicationUntilProxyStarts"), "{diff}");
    // Only added or changed lines: nothing else in any file moves.
    let removed = diff.lines().filter(|l| l.starts_with('-') && !l.starts_with("---")).count();
    assert_eq!(removed, 2, "only the two values that had to change are removed:\n{diff}");
    assert_eq!(
        text(&meshguard(d, &["fix", "--engine", "wasm", "manifests"], None).stdout),
        diff,
        "both engines fix alike"
    );

    let wrote = meshguard(d, &["fix", "--engine", "native", "--write", "manifests"], None);
    assert_eq!(wrote.status.code(), Some(0), "{}", text(&wrote.stderr));
    let left = left_by_fix(&text(&wrote.stderr));
    let again = meshguard(d, &["fix", "--engine", "native", "manifests"], None);
    assert_eq!(again.status.code(), Some(0), "a second fix has nothing to do");
    assert_eq!(text(&again.stdout), "");
    assert_eq!(left_by_fix(&text(&again.stderr)), left, "the same findings are left, each with why");

    let check = meshguard(d, &["check", "--engine", "native", "--format", "json", "manifests"], None);
    let report: Value = serde_json::from_slice(&check.stdout).unwrap();
    let found: BTreeSet<String> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| format!("{}:{}: {}", f["file"].as_str().unwrap(), f["line"], f["rule"].as_str().unwrap()))
        .collect();
    assert_eq!(found, left, "check finds exactly what fix listed as left");
    assert!(
        text(&again.stderr).lines().filter(|l| l.contains("not fixed")).all(|l| l.contains("no fix")),
        "each says why"
    );
}

#[test]
fn a_stream_is_fixed_to_stdout_and_json_lists_the_patches() {
    let dir = tempfile::tempdir().unwrap();
    let service = "apiVersion: v1\nkind: Service\nmetadata:\n  name: api\n  namespace: shop\nspec:\n  ports:\n  - name: web # public\n    port: 80\n";
    let out = meshguard(dir.path(), &["fix", "--engine", "native", "-"], Some(service));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), service.replace("name: web #", "name: http-web #"));
    let clean = service.replace("name: web", "name: http-web");
    let out = meshguard(dir.path(), &["fix", "--engine", "native", "-"], Some(&clean));
    assert_eq!(text(&out.stdout), clean, "nothing to fix: the stream passes through");

    std::fs::write(dir.path().join("svc.yaml"), service).unwrap();
    let out = meshguard(dir.path(), &["fix", "--engine", "native", "--format", "json", "svc.yaml"], None);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let applied = &report["applied"][0];
    assert_eq!(applied["rule"], "istio-port-name");
    assert_eq!(applied["file"], "svc.yaml");
    assert_eq!(applied["line"], 8);
    assert_eq!(
        applied["patch"],
        serde_json::json!([{"op": "replace", "path": "/spec/ports/0/name", "value": "http-web"}])
    );
    assert_eq!(std::fs::read_to_string(dir.path().join("svc.yaml")).unwrap(), service, "no --write, no change");

    // A JSON file stays JSON, indentation and member order kept.
    let json_service = "{\n    \"apiVersion\": \"v1\",\n    \"kind\": \"Service\",\n    \"metadata\": {\"name\": \"api\", \"namespace\": \"shop\"},\n    \"spec\": {\"ports\": [{\"port\": 80, \"name\": \"web\"}]}\n}\n";
    std::fs::write(dir.path().join("svc.json"), json_service).unwrap();
    let out = meshguard(dir.path(), &["fix", "--engine", "native", "--write", "svc.json"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let written = std::fs::read_to_string(dir.path().join("svc.json")).unwrap();
    assert_eq!(written, json_service.replace("\"name\": \"web\"", "\"name\": \"http-web\""));
    serde_json::from_str::<Value>(&written).expect("still JSON");
}

#[test]
fn writes_keep_mode_and_symlinks_and_unsafe_files_are_left_with_the_reason() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let service = "apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: shop}\nspec:\n  ports:\n  - name: web\n    port: 80\n";
    std::fs::create_dir(d.join("real")).unwrap();
    std::fs::write(d.join("real/svc.yaml"), service).unwrap();
    std::fs::set_permissions(d.join("real/svc.yaml"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::create_dir(d.join("repo")).unwrap();
    std::os::unix::fs::symlink(d.join("real/svc.yaml"), d.join("repo/svc.yaml")).unwrap();
    let anchored = "apiVersion: v1\nkind: Service\nmetadata: &meta {name: db, namespace: shop}\nspec:\n  ports:\n  - name: web\n    port: 8080\n";
    std::fs::write(d.join("repo/anchored.yaml"), anchored).unwrap();
    let out = meshguard(d, &["fix", "--engine", "native", "--write", "repo"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(std::fs::symlink_metadata(d.join("repo/svc.yaml")).unwrap().file_type().is_symlink(), "the link stays");
    assert_eq!(
        std::fs::read_to_string(d.join("real/svc.yaml")).unwrap(),
        service.replace("name: web", "name: http-web")
    );
    assert_eq!(std::fs::metadata(d.join("real/svc.yaml")).unwrap().permissions().mode() & 0o777, 0o640);
    assert_eq!(std::fs::read_to_string(d.join("repo/anchored.yaml")).unwrap(), anchored, "left untouched");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("repo/anchored.yaml:6: istio-port-name: not fixed:") && stderr.contains("anchor or alias"),
        "{stderr}"
    );
    assert!(
        stderr.contains(r#"{"op":"replace","path":"/spec/ports/0/name","value":"http-web"}"#),
        "the patch is named: {stderr}"
    );
    let leftover: Vec<_> = std::fs::read_dir(d.join("real")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftover.len(), 1, "no temporary file left: {leftover:?}");
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = meshguard(dir.path(), &["fix", "--only", "no-such-rule", "--engine", "native", "."], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--only names `no-such-rule`"), "{}", text(&out.stderr));
    let out = meshguard(dir.path(), &["fix", "--engine", "native", "missing.yaml"], None);
    assert_eq!(out.status.code(), Some(2));
}

/// A cluster's MutatingAdmissionPolicies in CI: `check --policies` judges the objects as they
/// would be admitted (mutated first), and `fix --policies` writes the mutation into the file, so
/// Git holds what the cluster runs. Bad policies fail at load with file, line and field.
#[test]
fn mutating_admission_policies_run_before_validation_and_fix_writes_them() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    let fixtures = repo().join("policy-core/tests/fixtures/map");
    for f in ["json-patch-example.yaml", "binding.yaml"] {
        std::fs::copy(fixtures.join(f), policies.join(f)).unwrap();
    }
    // A VAP that wants the sidecar the MAP adds.
    std::fs::write(
        policies.join("require-sidecar.yaml"),
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: require-sidecar}
spec:
  matchConstraints:
    resourceRules:
    - {apiGroups: [''], apiVersions: [v1], operations: [CREATE], resources: [pods]}
  validations:
  - {expression: "object.spec.initContainers.exists(c, c.name == 'mesh-proxy')", message: no mesh-proxy}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: require-sidecar}
spec: {policyName: require-sidecar, validationActions: [Deny]}
"#,
    )
    .unwrap();
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: myapp\n  namespace: default\nspec:\n  initContainers:\n  - name: myapp-initializer\n    image: example/initializer:v1.0.0\n  containers:\n  - name: myapp\n    image: example/myapp:v1.0.0\n";
    std::fs::write(dir.path().join("pod.yaml"), pod).unwrap();
    let rules = "apiVersion: meshguard.dev/v1alpha1\nkind: RuleSet\nmetadata: {name: none}\nspec:\n  rules: []\n";
    std::fs::write(dir.path().join("rules.yaml"), rules).unwrap();

    // Only the VAP: the Pod is denied. With the MAP too: admitted, as the API server would.
    std::fs::rename(policies.join("json-patch-example.yaml"), dir.path().join("map.yaml")).unwrap();
    std::fs::rename(policies.join("binding.yaml"), dir.path().join("map-binding.yaml")).unwrap();
    let without =
        meshguard(dir.path(), &["check", "--rules", "rules.yaml", "--policies", "policies", "pod.yaml"], None);
    assert_eq!(without.status.code(), Some(1), "{}{}", text(&without.stdout), text(&without.stderr));
    assert!(text(&without.stdout).contains("no mesh-proxy"));
    std::fs::rename(dir.path().join("map.yaml"), policies.join("json-patch-example.yaml")).unwrap();
    std::fs::rename(dir.path().join("map-binding.yaml"), policies.join("binding.yaml")).unwrap();
    let with = meshguard(dir.path(), &["check", "--rules", "rules.yaml", "--policies", "policies", "pod.yaml"], None);
    assert_eq!(with.status.code(), Some(0), "{}{}", text(&with.stdout), text(&with.stderr));

    // fix writes the mutation; check without the MAP then passes on the file itself.
    let fixed =
        meshguard(dir.path(), &["fix", "--write", "--rules", "rules.yaml", "--policies", "policies", "pod.yaml"], None);
    assert_eq!(fixed.status.code(), Some(0), "{}{}", text(&fixed.stdout), text(&fixed.stderr));
    let written = std::fs::read_to_string(dir.path().join("pod.yaml")).unwrap();
    let appended = "  - image: mesh-proxy/v1.0.0\n    name: mesh-proxy\n    restartPolicy: Always\n";
    let expected = pod.replace("  containers:\n", &format!("{appended}  containers:\n"));
    assert_eq!(written, expected, "appended after the last init container, the rest kept");
    let objects = policy_core::yaml::parse_one(&written).unwrap().value;
    assert_eq!(objects["spec"]["initContainers"][1]["name"], "mesh-proxy", "{written}");
    assert_eq!(objects["spec"]["initContainers"][1]["image"], "mesh-proxy/v1.0.0");
    std::fs::remove_file(policies.join("json-patch-example.yaml")).unwrap();
    std::fs::remove_file(policies.join("binding.yaml")).unwrap();
    let after = meshguard(dir.path(), &["check", "--rules", "rules.yaml", "--policies", "policies", "pod.yaml"], None);
    assert_eq!(after.status.code(), Some(0), "{}", text(&after.stdout));

    // A MAP without reinvocationPolicy: refused at load, at its file and line.
    std::fs::write(
        policies.join("bad.yaml"),
        "apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingAdmissionPolicy\nmetadata: {name: bad}\nspec:\n  matchConstraints:\n    resourceRules:\n    - {apiGroups: [''], apiVersions: [v1], operations: [CREATE], resources: [pods]}\n  mutations:\n  - {patchType: JSONPatch, jsonPatch: {expression: '[]'}}\n---\napiVersion: admissionregistration.k8s.io/v1\nkind: MutatingAdmissionPolicyBinding\nmetadata: {name: bad}\nspec: {policyName: bad}\n",
    )
    .unwrap();
    let bad = meshguard(dir.path(), &["check", "--rules", "rules.yaml", "--policies", "policies", "pod.yaml"], None);
    assert_eq!(bad.status.code(), Some(2));
    let err = text(&bad.stderr);
    assert!(
        err.contains("bad.yaml:") && err.contains("spec.reinvocationPolicy") && err.contains("Required value"),
        "{err}"
    );
}
