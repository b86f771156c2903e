//! Every registered check's documented examples run as tests: the passing example yields no
//! finding, the failing one yields at least one from that check. Docs cannot drift from behaviour.

use policy_core::checks::CheckSpec;
use policy_core::yaml::{parse_documents, parse_one};
use policy_core::{registry, Input, MemoryBuckets, Policy, Request, Target};
use serde_json::{json, Value};

fn policy_for(spec: &CheckSpec) -> Policy {
    let params = parse_one(spec.example_params).expect("example params parse").value;
    let doc = json!({
        "apiVersion": "meshguard.dev/v1alpha1", "kind": "RuleSet", "metadata": {"name": "example"},
        "spec": {"rules": [{"id": "under-test", "check": spec.id, "params": params}]}
    });
    Policy::from_value(&doc).unwrap_or_else(|e| panic!("{}: example params rejected: {e}", spec.id))
}

fn fired(spec: &CheckSpec, example: &str) -> Vec<String> {
    let policy = policy_for(spec);
    match spec.target {
        Target::Kubernetes => {
            let objects: Vec<Value> = parse_documents(example).unwrap().into_iter().map(|d| d.value).collect();
            policy
                .review(&Input::new(&objects, "default"))
                .into_iter()
                .map(|f| format!("{} {}: {}", f.rule, f.path, f.message))
                .collect()
        }
        Target::Http => {
            let req: Request = serde_json::from_value(parse_one(example).unwrap().value).unwrap();
            let d = policy.decide(&req, 1_000, &mut MemoryBuckets::default()).unwrap();
            d.denied.map(|d| format!("{} {}: {}", d.rule, d.status, d.message)).into_iter().collect()
        }
    }
}

#[test]
fn every_check_has_docs_and_examples_that_behave() {
    assert!(registry().len() >= 23);
    for spec in registry() {
        assert!(!spec.summary.is_empty(), "{} has no summary", spec.id);
        let pass = fired(spec, spec.passing_example);
        assert!(pass.is_empty(), "{}: passing example fired: {pass:?}", spec.id);
        let fail = fired(spec, spec.failing_example);
        assert!(!fail.is_empty(), "{}: failing example did not fire", spec.id);
    }
}

#[test]
fn check_ids_are_unique_and_params_documented() {
    let mut ids: Vec<&str> = registry().iter().map(|c| c.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), registry().len());
    for spec in registry() {
        for p in spec.params {
            assert!(!p.description.is_empty() && !p.ty.is_empty(), "{}.{} undocumented", spec.id, p.name);
        }
    }
}

#[test]
fn kubernetes_check_ids_list_every_kubernetes_check() {
    let mut from_registry: Vec<&str> =
        registry().iter().filter(|c| c.target == Target::Kubernetes).map(|c| c.id).collect();
    let mut listed = policy_core::checks::KUBERNETES_CHECK_IDS.to_vec();
    from_registry.sort();
    listed.sort();
    assert_eq!(from_registry, listed);
}
