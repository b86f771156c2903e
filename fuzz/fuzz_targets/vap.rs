//! ValidatingAdmissionPolicy loading: fuzzed policy, binding and param objects (JSON) under a
//! RuleSet's `admissionPolicies`; what loads reviews a Deployment at admission without panicking,
//! and what does not is an error naming a field inside `spec.admissionPolicies`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use policy_core::Policy;

fuzz_target!(|data: &[u8]| {
    let Ok(serde_json::Value::Array(objects)) = policy_core::decode::json_value_from_slice(data) else { return };
    let rules = serde_json::json!({"apiVersion": "meshguard.dev/v1alpha1", "kind": "RuleSet",
        "metadata": {"name": "fuzz"}, "spec": {"rules": [], "admissionPolicies": objects}});
    match Policy::from_value(&rules) {
        Err(e) => assert!(e.field.starts_with("spec"), "an error names its field: {e}"),
        Ok(policy) => {
            let request = serde_json::json!({"uid": "u", "operation": "CREATE", "namespace": "shop",
                "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                "object": {"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "api", "namespace": "shop", "labels": {"app": "api"}},
                    "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "api", "image": "r/api:1"}]}}}}});
            let _ = policy.review_admission(&request).response(serde_json::Value::Null);
        }
    }
});
