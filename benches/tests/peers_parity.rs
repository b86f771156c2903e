//! The peers measured in the benchmarks decide like policy-core on the shared corpus, so their
//! timings compare the same work. Rego: every default-rule-set case, whole input, same
//! (rule, object, action, path) findings. CEL: each object alone with its Namespace, as
//! ValidatingAdmissionPolicy sees it, same (rule, action) per object for the rules CEL carries.

use meshguard_benches::peers::cel::{to_cel, CelPeer};
use meshguard_benches::peers::{native_findings, PeerFinding, RegoPeer};
use policy_core::Policy;
use serde_json::Value;
use std::collections::BTreeSet;

/// Inputs the default rule set is run on: the corpus cases written for it, the example
/// manifests (broken and fixed), and generated team namespaces (one in three has mistakes).
fn default_rule_inputs() -> Vec<(String, Vec<Value>, String)> {
    let cases = meshguard_tests::load_corpus().expect("corpus");
    let mut inputs: Vec<_> = cases
        .into_iter()
        .filter(|c| c.rules.is_none() && !c.objects.is_empty())
        .map(|c| (c.source, c.objects, c.namespace))
        .collect();
    assert!(inputs.len() >= 15, "the corpus holds default-rule-set object cases, has {}", inputs.len());
    let root = meshguard_tests::envoy::repo_root();
    // Each example tree as one input, the way `meshguard check DIR` reviews it.
    for dir in ["examples/manifests", "examples/manifests-fixed"] {
        let mut objects = Vec::new();
        yaml_objects_under(&root.join(dir), &mut objects);
        assert!(objects.len() >= 5, "{dir} has example objects");
        inputs.push((dir.to_string(), objects, "default".into()));
    }
    for team in 0..6 {
        let objects = policy_core::yaml::parse_documents(&meshguard_benches::team_file(team)).expect("generated");
        inputs.push((
            format!("generated team-{team}"),
            objects.into_iter().map(|d| d.value).collect(),
            "default".into(),
        ));
    }
    inputs
}

fn yaml_objects_under(dir: &std::path::Path, out: &mut Vec<Value>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("example dir").map(|e| e.expect("entry").path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            yaml_objects_under(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).expect("read example");
            out.extend(policy_core::yaml::parse_documents(&text).expect("example parses").into_iter().map(|d| d.value));
        }
    }
}

#[test]
fn rego_gives_the_same_findings_as_policy_core_on_the_corpus() {
    let policy = Policy::default_rules().expect("default rules");
    let mut rego = RegoPeer::new().expect("rego policy compiles");
    let (mut findings, mut failures) = (0, Vec::new());
    for (source, objects, namespace) in default_rule_inputs() {
        let native = native_findings(&policy, &objects, &namespace);
        let peer = rego.findings(&objects, &namespace).expect("rego eval");
        findings += native.len();
        if native != peer {
            failures.push(format!(
                "{}:\n  only policy-core: {:?}\n  only rego: {:?}",
                source,
                native.difference(&peer).collect::<Vec<_>>(),
                peer.difference(&native).collect::<Vec<_>>()
            ));
        }
    }
    assert!(findings >= 40, "the cases should exercise the rules: {findings} findings");
    assert!(failures.is_empty(), "{} cases differ:\n{}", failures.len(), failures.join("\n"));
}

/// (rule, action) per object index, without paths: a VAP validation fires once per object.
fn per_object(findings: BTreeSet<PeerFinding>, rules: &BTreeSet<&str>) -> BTreeSet<(String, String)> {
    findings.into_iter().filter(|f| rules.contains(f.rule.as_str())).map(|f| (f.rule, f.action)).collect()
}

#[test]
fn cel_gives_the_same_decisions_as_policy_core_object_by_object() {
    let policy = Policy::default_rules().expect("default rules");
    let cel = CelPeer::new().expect("cel policy compiles");
    let rules: BTreeSet<&str> = cel.rule_ids().collect();
    assert!(rules.len() >= 10, "CEL carries most default rules: {rules:?}");
    let (mut compared, mut fired, mut failures) = (0, 0, Vec::new());
    for (source, objects, namespace) in default_rule_inputs() {
        for (i, object) in objects.iter().enumerate() {
            if object["kind"] == "Namespace" {
                continue;
            }
            let ns = object["metadata"]["namespace"].as_str().unwrap_or(&namespace).to_string();
            let namespace_object = objects
                .iter()
                .find(|o| o["kind"] == "Namespace" && o["metadata"]["name"] == ns.as_str())
                .cloned()
                .unwrap_or(Value::Null);
            // What admission sees: the object, plus its Namespace as context.
            let mut alone = vec![object.clone()];
            if !namespace_object.is_null() {
                alone.push(namespace_object.clone());
            }
            let native: BTreeSet<_> = per_object(
                native_findings(&policy, &alone, &namespace).into_iter().filter(|f| f.object == 0).collect(),
                &rules,
            );
            let peer = per_object(
                cel.review(&to_cel(object), &to_cel(&namespace_object), &ns).unwrap_or_else(|e| {
                    panic!("{source} object {i}: cel: {e:#}");
                }),
                &rules,
            );
            compared += 1;
            fired += native.len();
            if native != peer {
                failures.push(format!("{source} object {i}: policy-core {native:?}, cel {peer:?}"));
            }
        }
    }
    assert!(compared >= 40 && fired >= 25, "compared {compared} objects, {fired} fired rules");
    assert!(failures.is_empty(), "{} objects differ:\n{}", failures.len(), failures.join("\n"));
}
