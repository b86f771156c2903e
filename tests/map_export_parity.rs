//! `meshguard rules export --to map` mutates as the rules it was exported from. For every corpus
//! object and every catalog failing example, admitted with every rule that can fix set to mutate,
//! the exported MutatingAdmissionPolicies and bindings, run by meshguard's own MAP engine with
//! nothing else loaded, leave the object exactly as the webhook's `/mutate` leaves it under the
//! exported rules. Rules the export leaves out are named with a reason and left out of both sides.
//! The one fix a policy makes only in part (istio-sidecar-start-order's, where the pod already has
//! a `proxy.istio.io/config` annotation) is held to exactly that shape.

use policy_core::admission::ClusterView;
use policy_core::export::to_map;
use policy_core::{Policy, Unseen};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;

#[path = "support/mutation_cases.rs"]
mod mutation_cases;
use mutation_cases::{cases, mutating, Case};
#[path = "support/generate.rs"]
mod generate;
use generate::{istio_object, namespace, service, workload};

/// Whether the check's exported mutations make less than its fixes.
fn has_gap(check: &str) -> bool {
    let Some(spec) = policy_core::checks::find(check) else { return false };
    let policy_core::checks::Native::Vap(build) = spec.native else { return false };
    build(&json!({})).is_ok_and(|form| form.mutation_gap.is_some())
}

/// Whether the object's pod template holds a `proxy.istio.io/config` annotation.
fn has_proxy_config(object: &Value) -> bool {
    let objects = [object.clone()];
    let input = policy_core::Input::new(&objects, "default");
    let template = input.objects.first().and_then(|o| o.pod_template());
    template
        .and_then(|t| t.annotations().get("proxy.istio.io/config"))
        .and_then(Value::as_str)
        .is_some_and(|c| !c.trim().is_empty())
}

fn patched(object: &Value, patch: &json_patch::Patch) -> Value {
    let mut out = object.clone();
    json_patch::patch(&mut out, patch).unwrap();
    out
}

/// The object after the webhook (the exported rules only) and after the exported policies; the
/// checks whose fixes changed it.
fn compare(case: &Case, mutated_by: &mut BTreeSet<String>) -> Result<bool, String> {
    let exported = to_map(&case.rules).map_err(|e| format!("{}: export: {e}", case.name))?;
    let left: BTreeSet<String> = exported.left.iter().map(|l| l.rule.clone()).collect();
    let mut kept = case.rules.clone();
    if let Some(rules) = kept.pointer_mut("/spec/rules").and_then(Value::as_array_mut) {
        rules.retain(|r| {
            let id = r["id"].as_str().unwrap_or("");
            let partial = has_gap(r["check"].as_str().unwrap_or("")) && has_proxy_config(&case.object);
            !left.contains(id) && !partial
        });
    }
    // The webhook under the rules the export kept.
    let builtin = Policy::from_value(&kept).map_err(|e| format!("{}: {e}", case.name))?;
    let request = json!({"uid": case.name, "operation": "CREATE", "namespace": case.namespace,
                         "kind": {"group": "", "version": "v1", "kind": case.object["kind"]}, "object": case.object});
    let view = ClusterView { objects: &case.cluster, unseen: Unseen::Nothing };
    let mutation = builtin.mutate_admission_in(&request, view);
    let want = patched(&case.object, &mutation.patch);
    mutated_by.extend(mutation.fixed.iter().map(|f| f.check.to_string()));

    // The exported policies alone.
    let native = json!({
        "apiVersion": "meshguard.dev/v1alpha1", "kind": "RuleSet", "metadata": {"name": "exported"},
        "spec": {"rules": [], "admissionPolicies": exported.objects},
    });
    let native =
        Policy::from_value(&native).map_err(|e| format!("{}: the exported objects do not load: {e}", case.name))?;
    let mut values: Vec<Value> = std::iter::once(case.object.clone()).chain(case.cluster.iter().cloned()).collect();
    let applied = native.apply_mutating_policies(&mut values, &case.namespace, Some(&request), Some(0));
    if !applied.denied.is_empty() {
        return Err(format!("{}: the exported policies denied it: {:?}", case.name, applied.denied));
    }
    let got = values.swap_remove(0);
    if got != want {
        return Err(format!("{}:\n  the webhook: {want}\n  the export:  {got}", case.name));
    }
    Ok(want != case.object)
}

#[test]
fn exported_mutating_policies_mutate_as_the_rule_set() {
    let (mut compared, mut mutated, mut failures) = (0, 0, Vec::new());
    let mut mutated_by = BTreeSet::new();
    for case in cases() {
        compared += 1;
        match compare(&case, &mut mutated_by) {
            Ok(changed) => mutated += usize::from(changed),
            Err(e) => failures.push(e),
        }
    }
    eprintln!("{compared} objects, {mutated} mutated alike; checks whose fixes were exercised: {mutated_by:?}");
    assert!(failures.is_empty(), "{} of {compared} objects differ:\n{}", failures.len(), failures.join("\n\n"));
    // Every check whose fixes are exported changed some object, so each mutation was compared.
    for spec in policy_core::checks::registry().iter().filter(|c| c.offers_fix()) {
        if let policy_core::checks::Native::Vap(build) = spec.native {
            let params = policy_core::yaml::parse_one(spec.example_params).unwrap().value;
            if build(&params).is_ok_and(|f| !f.mutations.is_empty()) {
                assert!(mutated_by.contains(spec.id), "no object was mutated by {}: add a corpus case", spec.id);
            }
        }
    }
    assert!(mutated >= 20, "only {mutated} objects were mutated");
}

/// The rule set's rules that are set to mutate but whose fixes the export leaves out, and why:
/// each must be a check without a CEL form or a rule the export cannot bind, never silence.
#[test]
fn rules_left_out_of_the_mutation_export_say_why() {
    let default_rules = policy_core::yaml::parse_one(policy_core::DEFAULT_RULES_YAML).unwrap().value;
    let exported = to_map(&mutating(default_rules)).unwrap();
    let left: Vec<(&str, &str)> = exported.left.iter().map(|l| (l.rule.as_str(), l.reason.as_str())).collect();
    for (rule, reason) in &left {
        assert!(!reason.is_empty(), "{rule} is left without a reason");
    }
    let policies: Vec<&str> = exported
        .objects
        .iter()
        .filter(|o| o["kind"] == "MutatingAdmissionPolicy")
        .filter_map(|o| o["metadata"]["name"].as_str())
        .collect();
    assert!(!policies.is_empty(), "the default rules with mutate give policies");
    for o in &exported.objects {
        assert_eq!(o["apiVersion"], "admissionregistration.k8s.io/v1");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Generated manifests under the default rule set set to mutate: each object admitted with the
    /// others as its cluster.
    #[test]
    fn generated_manifests_mutate_alike_exported(
        objects in prop::collection::vec(prop_oneof![service(), workload(), istio_object(), namespace()], 1..8)
    ) {
        let rules = mutating(policy_core::yaml::parse_one(policy_core::DEFAULT_RULES_YAML).unwrap().value);
        for (i, object) in objects.iter().enumerate() {
            let namespace = object.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default");
            let cluster = objects.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, o)| o.clone()).collect();
            let case = Case { name: format!("generated[{i}]"), rules: rules.clone(), namespace: namespace.into(), object: object.clone(), cluster };
            prop_assert_eq!(compare(&case, &mut BTreeSet::new()).map(|_| ()), Ok(()));
        }
    }
}
