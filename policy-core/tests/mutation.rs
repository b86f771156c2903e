//! Rules set to `mutate` fix their findings at admission: the patch is the one `meshguard fix`
//! writes for the same object, the patched object passes validation, and rollout waves switch
//! mutation per namespace as they switch actions.
#![cfg(all(feature = "kubernetes", feature = "yaml"))]

use policy_core::admission::ClusterView;
use policy_core::Policy;
use serde_json::{json, Value};

const RULES: &str = "\
apiVersion: meshguard.dev/v1alpha1
kind: RuleSet
metadata: {name: waves}
spec:
  rules:
  - id: start-order
    check: istio-sidecar-start-order
    params: {injectedNamespaces: ['*']}
    mutate: true
    actionOverrides:
    - {namespaces: [legacy-*], action: warn, mutate: false}
  - id: ports
    check: istio-port-name
";

const DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  namespace: shop
spec:
  template:
    metadata:
      labels: {app: api}
    spec:
      containers:
      - name: api
        image: shop/api:1.0
";

fn review(object: &Value) -> Value {
    let namespace = object["metadata"]["namespace"].clone();
    json!({"uid": "u1", "operation": "CREATE", "namespace": namespace, "object": object,
           "kind": {"group": "apps", "version": "v1", "kind": "Deployment"}})
}

#[test]
fn a_mutating_rule_patches_the_object_as_fix_writes_it_and_the_result_passes() {
    let policy = Policy::from_text(RULES).unwrap();
    let object = policy_core::yaml::parse_one(DEPLOYMENT).unwrap().value;
    let before = policy.review_admission_in(&review(&object), ClusterView::NONE);
    assert!(!before.allowed, "unmutated, start-order denies");
    let mutation = policy.mutate_admission_in(&review(&object), ClusterView::NONE);
    assert_eq!(
        serde_json::to_value(&mutation.patch).unwrap(),
        json!([{"op": "add", "path": "/spec/template/metadata/annotations",
                "value": {"proxy.istio.io/config": "{ \"holdApplicationUntilProxyStarts\": true }"}}])
    );
    assert_eq!(mutation.fixed.iter().map(|f| f.rule.as_str()).collect::<Vec<_>>(), ["start-order"]);
    let mutated = mutation.object.expect("the object changed");
    let after = policy.review_admission_in(&review(&mutated), ClusterView::NONE);
    assert!(after.allowed, "the mutated object passes: {:?}", after.findings);
    // The same object through `meshguard fix`'s text path reads back as the mutated object.
    let fixed = policy_core::fix::fix_text(&policy, DEPLOYMENT, "default").unwrap();
    assert_eq!(policy_core::yaml::parse_one(&fixed.text).unwrap().value, mutated);
}

#[test]
fn waves_switch_mutation_per_namespace_and_only_mutating_rules_patch() {
    let policy = Policy::from_text(RULES).unwrap();
    let mut object = policy_core::yaml::parse_one(DEPLOYMENT).unwrap().value;
    object["metadata"]["namespace"] = json!("legacy-billing");
    let mutation = policy.mutate_admission_in(&review(&object), ClusterView::NONE);
    assert!(mutation.patch.0.is_empty() && mutation.object.is_none(), "mutation is off in legacy-*");
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "namespace": "shop"},
                         "spec": {"ports": [{"name": "web", "port": 80}]}});
    let request = json!({"uid": "u", "operation": "CREATE", "namespace": "shop", "object": service});
    assert!(policy.mutate_admission_in(&request, ClusterView::NONE).patch.0.is_empty(), "ports does not mutate");
    let delete = json!({"uid": "u", "operation": "DELETE", "namespace": "shop", "oldObject": object});
    assert!(policy.mutate_admission_in(&delete, ClusterView::NONE).object.is_none());
}

#[test]
fn mutate_on_a_check_without_a_fix_is_refused_at_load() {
    for (rule, field) in [
        ("{id: cb, check: istio-circuit-breaker, mutate: true}", "mutate"),
        (
            "{id: cb, check: istio-circuit-breaker, actionOverrides: [{namespaces: [a], action: deny, mutate: true}]}",
            "actionOverrides[0].mutate",
        ),
        ("{id: h, check: http-require-header, params: {header: x-a}, mutate: true}", "mutate"),
    ] {
        let text = format!(
            "apiVersion: meshguard.dev/v1alpha1\nkind: RuleSet\nmetadata: {{name: x}}\nspec:\n  rules:\n  - {rule}\n"
        );
        let e = Policy::from_text(&text).unwrap_err().to_string();
        assert!(e.contains(field) && e.contains("has no fix"), "{rule}: {e}");
    }
}
