//! The OPA-ABI modules as Kubewarden runs them: both Rego execution modes through a host that
//! calls them as policy-server's evaluator does (tests/rego_host.rs), the metadata Kubewarden
//! reads from the modules, and the Artifact Hub packages built from it.

use meshguard_tests::rego_host;

use meshguard_tests::envoy::{built_module, repo_root};
use meshguard_tests::{admission_cases, AdmissionCase};
use rego_host::{Answer, Mode, RegoHost};

use serde_json::{json, Value};

const GATEKEEPER_MODULE: &str = "dist/meshguard-opa.wasm";
const OPA_MODE_MODULE: &str = "dist/meshguard-opa-kubewarden.wasm";

fn host(path: &str) -> RegoHost {
    RegoHost::new(&std::fs::read(built_module(path).unwrap()).unwrap()).unwrap()
}

fn sorted(ids: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = ids.filter(|s| !s.is_empty()).collect();
    v.sort();
    v.dedup();
    v
}

fn settings(c: &AdmissionCase) -> Value {
    c.rules.clone().unwrap_or(json!({}))
}

fn cluster(c: &AdmissionCase) -> Option<&[Value]> {
    (!c.cluster.is_empty()).then_some(c.cluster.as_slice())
}

/// Whether a gatekeeper-mode rejection names exactly the denying rules: policy-server joins one
/// `rule-id: message (at path)` per violation, and no other rule id appears as `id: `.
fn names_exactly(answer: &Answer, deny: &[String], all_ids: &[String]) -> bool {
    let message = answer.message.as_deref().unwrap_or("");
    let names = |id: &String| message.starts_with(&format!("{id}: ")) || message.contains(&format!(", {id}: "));
    all_ids.iter().all(|id| names(id) == deny.contains(id))
}

fn annotation_ids(answer: &Answer, key: &str) -> Vec<String> {
    let text = answer.audit_annotations.get(key).and_then(Value::as_str).unwrap_or("");
    sorted(text.split(',').map(String::from))
}

#[test]
fn module_layout_is_what_burrego_accepts() {
    for (path, first) in [(GATEKEEPER_MODULE, "meshguard/violation"), (OPA_MODE_MODULE, "meshguard/response")] {
        let (builtins, entrypoints) = host(path).builtins_and_entrypoints().unwrap();
        // burrego refuses a module that lists a builtin it does not implement; meshguard calls none.
        assert_eq!(builtins, json!({}), "{path}");
        assert_eq!(entrypoints[first], 0, "{path}: Kubewarden evaluates entrypoint 0: {entrypoints}");
        assert_eq!(entrypoints.as_object().unwrap().len(), 4, "{path}: {entrypoints}");
    }
}

#[test]
fn corpus_decides_alike_in_kubewarden_gatekeeper_and_opa_modes() {
    let gatekeeper = host(GATEKEEPER_MODULE);
    let opa = host(OPA_MODE_MODULE);
    let cases = admission_cases().unwrap();
    assert!(cases.len() >= 60 && cases.iter().any(|c| !c.cluster.is_empty()));
    let all_ids = sorted(cases.iter().flat_map(|c| c.deny.iter().chain(&c.warn).cloned()));
    let mut failures = Vec::new();
    for c in &cases {
        let g = gatekeeper.validate(Mode::Gatekeeper, &settings(c), &c.request, cluster(c));
        if g.allowed != c.allowed || !names_exactly(&g, &c.deny, &all_ids) {
            failures.push(format!("{} gatekeeper: native {} {:?}, got {g:?}", c.name, c.allowed, c.deny));
        }
        let o = opa.validate(Mode::Opa, &settings(c), &c.request, cluster(c));
        let got = (
            o.allowed,
            annotation_ids(&o, "meshguard.dev/deny"),
            annotation_ids(&o, "meshguard.dev/warn"),
            o.warnings.len() >= c.warn.len().min(1),
        );
        if got != (c.allowed, c.deny.clone(), c.warn.clone(), true) {
            failures.push(format!("{} opa: native {} {:?} {:?}, got {o:?}", c.name, c.allowed, c.deny, c.warn));
        }
        if !c.allowed && o.code != Some(403) {
            failures.push(format!("{} opa: code {:?}", c.name, o.code));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn headless(name: &str, port_name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "shop"},
           "spec": {"clusterIP": "None", "ports": [{"name": port_name, "port": 5000}]}})
}

#[test]
fn context_aware_policies_see_the_cluster_and_say_when_they_do_not() {
    let request =
        json!({"uid": "u", "operation": "CREATE", "namespace": "shop", "object": headless("cache", "http-cache")});
    let in_cluster =
        [headless("db", "tcp-db"), json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})];
    let gatekeeper = host(GATEKEEPER_MODULE);
    let opa = host(OPA_MODE_MODULE);

    let g = gatekeeper.validate(Mode::Gatekeeper, &json!({}), &request, Some(&in_cluster));
    assert!(
        !g.allowed && g.message.as_deref().unwrap().contains("headless Service `db` declares it as `tcp`"),
        "{g:?}"
    );
    let o = opa.validate(Mode::Opa, &json!({}), &request, Some(&in_cluster));
    assert!(!o.allowed && o.message.as_deref().unwrap().contains("headless Service `db`"), "{o:?}");

    // Not context-aware: admitted, and the audit annotation names the rule that saw no peers.
    let o = opa.validate(Mode::Opa, &json!({}), &request, None);
    assert!(o.allowed, "{o:?}");
    assert_eq!(annotation_ids(&o, "meshguard.dev/without-context"), vec!["istio-headless-port-conflict"]);
}

#[test]
fn invalid_settings_name_rule_and_field_on_every_response() {
    let bad = json!({"apiVersion": "meshguard.dev/v1alpha1", "kind": "RuleSet", "metadata": {"name": "x"},
                     "spec": {"rules": [{"id": "ports", "check": "istio-port-name", "params": {"protocol": ["http"]}}]}});
    let request = json!({"uid": "u", "operation": "CREATE", "namespace": "shop", "object": headless("ok", "tcp-ok")});
    let why = "meshguard: invalid RuleSet: rule `ports`: spec.rules[0].params.protocol: unknown field `protocol`, expected `protocols`";
    let g = host(GATEKEEPER_MODULE).validate(Mode::Gatekeeper, &bad, &request, None);
    assert_eq!((g.allowed, g.message.as_deref()), (false, Some(why)));
    let o = host(OPA_MODE_MODULE).validate(Mode::Opa, &bad, &request, None);
    assert_eq!((o.allowed, o.message.as_deref(), o.code), (false, Some(why), Some(500)));
    // Kubewarden's inventory key is data, never read as a RuleSet.
    let inventory_only = host(GATEKEEPER_MODULE).validate(Mode::Gatekeeper, &json!({}), &request, Some(&[]));
    assert!(inventory_only.allowed, "{inventory_only:?}");
}

#[test]
fn the_gatekeeper_artifact_in_opa_mode_is_a_clear_host_error_not_a_silent_pass() {
    // What happens when a user picks the wrong artifact: policy-server cannot read entrypoint 0.
    let request = json!({"uid": "u", "operation": "CREATE", "namespace": "shop", "object": headless("ok", "tcp-ok")});
    let wrong = host(GATEKEEPER_MODULE).validate(Mode::Opa, &json!({}), &request, None);
    assert_eq!(
        (wrong.allowed, wrong.message.as_deref()),
        (false, Some("internal server error: cannot interpret OPA policy result"))
    );
}

/// The payload of custom section `name`, read with wasmparser as Kubewarden's evaluator does.
fn custom_section(module: &[u8], name: &str) -> Option<Vec<u8>> {
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        if let Ok(wasmparser::Payload::CustomSection(reader)) = payload {
            if reader.name() == name {
                return Some(reader.data().to_vec());
            }
        }
    }
    None
}

fn metadata(path: &str) -> Value {
    let bytes = std::fs::read(built_module(path).unwrap()).unwrap();
    let section = custom_section(&bytes, "io.kubewarden.metadata").unwrap_or_else(|| panic!("{path}: no metadata"));
    serde_json::from_slice(&section).unwrap()
}

#[test]
fn dist_modules_carry_kubewarden_metadata_and_artifact_hub_packages_match_it() {
    let context_kinds: Vec<String> =
        policy_core::Policy::default_rules().unwrap().context_kinds().iter().map(|k| k.to_string()).collect();
    for (path, mode, protocol, package, mutating) in [
        ("dist/meshguard-kubewarden.wasm", "kubewarden-wapc", "v1", "wasm-plugin/kubewarden/artifacthub-pkg.yml", true),
        (GATEKEEPER_MODULE, "gatekeeper", "Unknown", "wasm-plugin/opa/artifacthub-pkg.yml", false),
        (OPA_MODE_MODULE, "opa", "Unknown", "wasm-plugin/opa/artifacthub-pkg-opa-mode.yml", false),
    ] {
        let m = metadata(path);
        assert_eq!(
            (m["executionMode"].as_str(), m["protocolVersion"].as_str()),
            (Some(mode), Some(protocol)),
            "{path}"
        );
        assert_eq!(m["mutating"], mutating, "{path}: only the waPC module answers with a mutated object");
        assert!(m["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["resources"].as_array().unwrap().contains(&json!("services"))));
        let granted: Vec<String> = m["contextAwareResources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let kind = r["kind"].as_str().unwrap();
                assert_eq!(r["apiVersion"].as_str(), policy_core::object::api_version_of_kind(kind), "{path}: {r}");
                kind.to_string()
            })
            .collect();
        assert_eq!(granted, context_kinds, "{path}: contextAwareResources vs what the built-in rules compare with");
        let annotations = &m["annotations"];
        assert_eq!(annotations["io.kubewarden.policy.version"], env!("CARGO_PKG_VERSION"));

        // The Artifact Hub package says what the module says.
        let text = std::fs::read_to_string(repo_root().join(package)).unwrap();
        let pkg = policy_core::yaml::parse_one(&text).unwrap().value;
        assert_eq!(pkg["version"], annotations["io.kubewarden.policy.version"], "{package}");
        assert_eq!(pkg["name"], annotations["io.kubewarden.policy.title"], "{package}");
        assert_eq!(pkg["displayName"], annotations["io.artifacthub.displayName"], "{package}");
        assert_eq!(pkg["description"], annotations["io.kubewarden.policy.description"], "{package}");
        assert_eq!(pkg["license"], annotations["io.kubewarden.policy.license"], "{package}");
        let image = format!(
            "{}:v{}",
            annotations["io.kubewarden.policy.ociUrl"].as_str().unwrap(),
            pkg["version"].as_str().unwrap()
        );
        assert_eq!(pkg["containersImages"][0], json!({"name": "policy", "image": image}), "{package}");
        let hub = &pkg["annotations"];
        assert_eq!(hub["kubewarden/mutation"], mutating.to_string(), "{package}");
        let rules = policy_core::yaml::parse_one(hub["kubewarden/rules"].as_str().unwrap()).unwrap().value;
        assert_eq!(rules, m["rules"], "{package}: kubewarden/rules");
        let resources =
            policy_core::yaml::parse_one(hub["kubewarden/contextAwareResources"].as_str().unwrap()).unwrap().value;
        assert_eq!(resources, m["contextAwareResources"], "{package}: kubewarden/contextAwareResources");
    }
}
