//! MutatingAdmissionPolicies: the Kubernetes docs' examples (tests/fixtures/map, sources named in
//! each file) give the results the API server gives, both patch types; bad objects fail at load
//! naming the field; JSON Patch and apply-configuration details follow the API server's.
#![cfg(all(feature = "kubernetes", feature = "cel", feature = "yaml"))]

use policy_core::admission::ClusterView;
use policy_core::Policy;
use serde_json::{json, Value};

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/map/{name}", env!("CARGO_MANIFEST_DIR"));
    policy_core::yaml::parse_one(&std::fs::read_to_string(path).unwrap()).unwrap().value
}

fn rule_set(objects: Vec<Value>) -> Result<Policy, String> {
    let doc = json!({"apiVersion": "meshguard.dev/v1alpha1", "kind": "RuleSet", "metadata": {"name": "maps"},
                     "spec": {"rules": [], "admissionPolicies": objects}});
    Policy::from_value(&doc).map_err(|e| e.to_string())
}

/// The Pod of the docs page: one init container of its own.
fn docs_pod() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "myapp", "namespace": "default"},
           "spec": {"initContainers": [{"name": "myapp-initializer", "image": "example/initializer:v1.0.0"}],
                    "containers": [{"name": "myapp", "image": "example/myapp:v1.0.0"}]}})
}

fn mutate(policy: &Policy, object: &Value) -> policy_core::fix::PolicyMutations {
    let mut values = vec![object.clone()];
    policy.apply_mutating_policies(&mut values, "default", None, None)
}

fn mutated(policy: &Policy, object: &Value) -> Value {
    let mut values = vec![object.clone()];
    let out = policy.apply_mutating_policies(&mut values, "default", None, None);
    assert!(out.denied.is_empty(), "{:?}", out.denied);
    values.remove(0)
}

#[test]
fn the_docs_json_patch_example_adds_the_sidecar_once() {
    let policy = rule_set(vec![fixture("json-patch-example.yaml"), fixture("binding.yaml")]).unwrap();
    let after = mutated(&policy, &docs_pod());
    // Appended, as the API server's JSON Patch `/-` does (the docs page lists it first).
    assert_eq!(
        after["spec"]["initContainers"],
        json!([{"name": "myapp-initializer", "image": "example/initializer:v1.0.0"},
               {"name": "mesh-proxy", "image": "mesh-proxy/v1.0.0", "restartPolicy": "Always"}])
    );
    // Its match condition keeps it from adding a second one.
    assert_eq!(mutated(&policy, &after), after);
    // The patch is what the webhook sends and `fix` writes.
    let mut values = vec![docs_pod()];
    let out = policy.apply_mutating_policies(&mut values, "default", None, None);
    assert_eq!(
        serde_json::to_value(&out.patches[0]).unwrap(),
        json!([{"op": "add", "path": "/spec/initContainers/1",
                "value": {"name": "mesh-proxy", "image": "mesh-proxy/v1.0.0", "restartPolicy": "Always"}}])
    );
    assert_eq!(out.changed[0].rule, "sidecar-policy.example.com/sidecar-policy.example.com");
    // Other kinds are not matched.
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {}});
    assert_eq!(mutated(&policy, &deployment), deployment);
}

#[test]
fn the_docs_apply_configuration_example_is_refused_as_the_api_server_refuses_it() {
    // As published it sets `args`, an atomic list: the API server denies the Pod (reproduced on a
    // cluster in kyverno/kyverno#15094), and so does meshguard, in the same words.
    let policy = rule_set(vec![fixture("applyconfiguration-example.yaml"), fixture("binding.yaml")]).unwrap();
    let mut values = vec![docs_pod()];
    let out = policy.apply_mutating_policies(&mut values, "default", None, None);
    assert_eq!(out.denied.len(), 1);
    assert_eq!(
        out.denied[0].message,
        "policy 'sidecar-policy.example.com' with binding 'sidecar-policy.example.com' denied request: error applying \
         patch: invalid ApplyConfiguration: may not mutate atomic arrays, maps or structs: .spec.initContainers[0].args"
    );
    assert_eq!(values[0], docs_pod(), "nothing half applied");

    // Without `args` it gives the documented result: the sidecar is merged into the list by name.
    let mut without_args = fixture("applyconfiguration-example.yaml");
    let expression = without_args["spec"]["mutations"][0]["applyConfiguration"]["expression"].as_str().unwrap();
    without_args["spec"]["mutations"][0]["applyConfiguration"]["expression"] =
        json!(expression.replace("args: [\"proxy\", \"sidecar\"],", ""));
    let policy = rule_set(vec![without_args, fixture("binding.yaml")]).unwrap();
    let after = mutated(&policy, &docs_pod());
    assert_eq!(
        after["spec"]["initContainers"],
        json!([{"name": "myapp-initializer", "image": "example/initializer:v1.0.0"},
               {"name": "mesh-proxy", "image": "mesh/proxy:v1.0.0", "restartPolicy": "Always"}])
    );
    assert_eq!(mutated(&policy, &after), after, "applied again, nothing changes");
}

#[test]
fn a_failing_match_condition_denies_under_fail_and_is_skipped_under_ignore() {
    // A Pod without initContainers: the docs' condition reads a field that is not there.
    let bare = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": []}});
    let policy = rule_set(vec![fixture("json-patch-example.yaml"), fixture("binding.yaml")]).unwrap();
    let out = mutate(&policy, &bare);
    assert_eq!(out.denied.len(), 1);
    assert!(out.denied[0].message.contains("match condition `does-not-already-have-sidecar` could not be evaluated"));
    let mut ignoring = fixture("json-patch-example.yaml");
    ignoring["spec"]["failurePolicy"] = json!("Ignore");
    let policy = rule_set(vec![ignoring, fixture("binding.yaml")]).unwrap();
    assert_eq!(mutated(&policy, &bare), bare);
}

fn policy_with(mutations: Value, reinvocation: &str) -> Value {
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingAdmissionPolicy",
           "metadata": {"name": "p"},
           "spec": {"matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
                    "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]}]},
                    "reinvocationPolicy": reinvocation, "mutations": mutations}})
}

fn binding(name: &str, policy: &str) -> Value {
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingAdmissionPolicyBinding",
           "metadata": {"name": name}, "spec": {"policyName": policy}})
}

fn deployment() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": "shop", "labels": {"app": "api"}},
           "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "api", "image": "a:1"}]}}}})
}

#[test]
fn json_patch_follows_the_api_servers_library() {
    let m = |expression: &str| json!([{"patchType": "JSONPatch", "jsonPatch": {"expression": expression}}]);
    let run = |expression: &str| {
        let policy = rule_set(vec![policy_with(m(expression), "Never"), binding("b", "p")]).unwrap();
        mutated(&policy, &deployment())
    };
    // jsonpatch.escapeKey makes a label key one path segment.
    let after = run(
        "[JSONPatch{op: 'add', path: '/metadata/labels/' + jsonpatch.escapeKey('example.com/team~x'), value: 'shop'}]",
    );
    assert_eq!(after["metadata"]["labels"]["example.com/team~x"], "shop");
    // A failed `test` drops that mutation's whole patch, without an error.
    let after = run("[JSONPatch{op: 'replace', path: '/spec/replicas', value: 3}, JSONPatch{op: 'test', path: '/spec/replicas', value: 9}]");
    assert_eq!(after, deployment());
    // `replace` of a missing key adds it.
    let after = run("[JSONPatch{op: 'replace', path: '/spec/paused', value: true}]");
    assert_eq!(after["spec"]["paused"], true);
    // An Object initializer named off its field path is a compile error, as the API server words it.
    let bad = m("[JSONPatch{op: 'add', path: '/spec/template', value: Object.spec.template{spec: Object.spec.template.specx{}}}]");
    let e = rule_set(vec![policy_with(bad, "Never"), binding("b", "p")]).unwrap_err();
    assert!(
        e.contains("spec.mutations[0].jsonPatch.expression")
            && e.contains("unexpected type name \"Object.spec.template.specx\""),
        "{e}"
    );
}

#[test]
fn ifneeded_bindings_run_again_after_a_later_change() {
    // `a` labels from the replicas; `b` (later by name) raises the replicas: `a` runs once more.
    let a = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingAdmissionPolicy", "metadata": {"name": "a"},
        "spec": {"matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["deployments"]}]},
                 "reinvocationPolicy": "IfNeeded",
                 "mutations": [{"patchType": "ApplyConfiguration", "applyConfiguration": {"expression":
                    "Object{metadata: Object.metadata{labels: {'replicas': string(object.spec.replicas)}}}"}}]}});
    let b = policy_with(
        json!([{"patchType": "ApplyConfiguration", "applyConfiguration": {"expression": "Object{spec: Object.spec{replicas: 3}}"}}]),
        "Never",
    );
    let policy = rule_set(vec![a.clone(), binding("a-binding", "a"), b.clone(), binding("p-binding", "p")]).unwrap();
    let after = mutated(&policy, &deployment());
    assert_eq!(
        (after["spec"]["replicas"].clone(), after["metadata"]["labels"]["replicas"].clone()),
        (json!(3), json!("3"))
    );
    let mut never = a;
    never["spec"]["reinvocationPolicy"] = json!("Never");
    let policy = rule_set(vec![never, binding("a-binding", "a"), b, binding("p-binding", "p")]).unwrap();
    assert_eq!(mutated(&policy, &deployment())["metadata"]["labels"]["replicas"], "1", "Never: not again");
}

#[test]
fn bad_policies_fail_at_load_naming_the_field() {
    let cases = [
        (
            policy_with(json!([{"patchType": "JSONPatch", "jsonPatch": {"expression": "[]"}}]), ""),
            "spec.reinvocationPolicy",
            "Required value",
        ),
        (policy_with(json!([]), "Never"), "spec.mutations", "at least one item"),
        (
            policy_with(json!([{"patchType": "Merge", "jsonPatch": {"expression": "[]"}}]), "Never"),
            "spec.mutations[0].patchType",
            "Unsupported value: \"Merge\"",
        ),
        (
            policy_with(json!([{"patchType": "JSONPatch", "applyConfiguration": {"expression": "Object{}"}}]), "Never"),
            "spec.mutations[0].applyConfiguration",
            "must not be specified",
        ),
        (
            policy_with(json!([{"patchType": "JSONPatch", "jsonPatch": {"expression": " "}}]), "Never"),
            "spec.mutations[0].jsonPatch.expression",
            "Required value",
        ),
        (
            policy_with(
                json!([{"patchType": "ApplyConfiguration", "applyConfiguration": {"expression": "Object{"}}]),
                "Never",
            ),
            "spec.mutations[0].applyConfiguration.expression",
            "syntax error",
        ),
    ];
    for (policy, field, words) in cases {
        let e = rule_set(vec![policy, binding("b", "p")]).unwrap_err();
        assert!(e.contains(field) && e.contains(words), "{field}: {e}");
    }
    let mut delete = policy_with(json!([{"patchType": "JSONPatch", "jsonPatch": {"expression": "[]"}}]), "Never");
    delete["spec"]["matchConstraints"]["resourceRules"][0]["operations"] = json!(["DELETE"]);
    let e = rule_set(vec![delete, binding("b", "p")]).unwrap_err();
    assert!(e.contains("operations[0]") && e.contains("Unsupported value: \"DELETE\""), "{e}");
    let e = rule_set(vec![binding("b", "nope")]).unwrap_err();
    assert!(e.contains("spec.policyName") && e.contains("no MutatingAdmissionPolicy named `nope`"), "{e}");
}

#[test]
fn admission_applies_the_policies_before_the_rules_fixes_and_denies_what_they_deny() {
    let policy = rule_set(vec![fixture("json-patch-example.yaml"), fixture("binding.yaml")]).unwrap();
    let request = json!({"uid": "u", "operation": "CREATE", "namespace": "default", "object": docs_pod(),
                         "kind": {"group": "", "version": "v1", "kind": "Pod"}});
    let mutation = policy.mutate_admission_in(&request, ClusterView::NONE);
    let mut patched = docs_pod();
    json_patch::patch(&mut patched, &mutation.patch).unwrap();
    assert_eq!(patched, mutated(&policy, &docs_pod()), "/mutate sends the policy's change");
    let response = mutation.response(json!("u"));
    assert!(response.allowed && response.patch.is_some());
    assert_eq!(
        response.audit_annotations["meshguard.dev/mutated"],
        "sidecar-policy.example.com/sidecar-policy.example.com"
    );

    let bare = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": []}});
    let request = json!({"uid": "u", "operation": "CREATE", "namespace": "default", "object": bare});
    let response = policy.mutate_admission_in(&request, ClusterView::NONE).response(json!("u"));
    assert!(!response.allowed);
    assert_eq!(response.status.unwrap().code, 403);
}

/// `meshguard fix --only`: the policies apply only when every binding that changes something is
/// named; else the objects stay as they were.
#[test]
fn fix_only_applies_the_policies_when_it_names_them() {
    let policy = rule_set(vec![fixture("json-patch-example.yaml"), fixture("binding.yaml")]).unwrap();
    let id = "sidecar-policy.example.com/sidecar-policy.example.com".to_string();
    let mut named = vec![docs_pod()];
    let out = policy.fix_with_mutating_policies(&mut named, "default", std::slice::from_ref(&id));
    assert_eq!((out.changed.len(), named[0] != docs_pod()), (1, true));
    let mut other = vec![docs_pod()];
    let out = policy.fix_with_mutating_policies(&mut other, "default", &["ports".to_string()]);
    assert!(out.changed.is_empty() && out.patches[0].0.is_empty());
    assert_eq!(other[0], docs_pod(), "left as it was");
}
