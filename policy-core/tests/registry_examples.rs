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
    // A build without CEL still recognises `cel` rules (and skips them), as the Envoy filter
    // recognises every Kubernetes check.
    if !cfg!(feature = "cel") {
        from_registry.push("cel");
    }
    let mut listed = policy_core::checks::KUBERNETES_CHECK_IDS.to_vec();
    from_registry.sort();
    listed.sort();
    assert_eq!(from_registry, listed);
}

/// A check's declared `applies_to` must cover every object it flags: admission hosts skip what
/// the rule set's coverage leaves out, and webhook configurations are generated from it. Every
/// failing example, and the corpus-sized example repo's findings, are held to it.
#[test]
fn coverage_includes_every_object_a_check_flags() {
    let check = |policy: &Policy, objects: &[Value], what: &str| {
        let coverage = policy.coverage();
        for f in policy.review(&Input::new(objects, "default")) {
            let object = &objects[f.object_index];
            let group = object["apiVersion"].as_str().unwrap_or("").rsplit_once('/').map_or("", |(g, _)| g);
            assert!(
                coverage.covers(group, &f.kind),
                "{what}: rule {} flags {group}/{} outside its coverage",
                f.rule,
                f.kind
            );
        }
    };
    for spec in registry().iter().filter(|s| s.target == Target::Kubernetes) {
        let objects: Vec<Value> = parse_documents(spec.failing_example).unwrap().into_iter().map(|d| d.value).collect();
        check(&policy_for(spec), &objects, spec.id);
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/manifests");
    let mut objects = Vec::new();
    for dir in [root.clone(), root.join("shop"), root.join("payments")] {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let text = std::fs::read_to_string(&path).unwrap();
                objects.extend(parse_documents(&text).unwrap().into_iter().map(|d| d.value));
            }
        }
    }
    let defaults = Policy::default_rules().unwrap();
    assert!(!defaults.review(&Input::new(&objects, "default")).is_empty(), "the example repo has findings");
    check(&defaults, &objects, "default rules on examples/manifests");
    // And the built-in rule set leaves kinds it never flags to the fast path.
    let coverage = defaults.coverage();
    assert!(!coverage.any, "{coverage:?}");
    assert!(coverage.covers("", "Service") && coverage.covers("apps", "Deployment"));
    assert!(coverage.covers("security.istio.io", "AuthorizationPolicy"), "platform-only kinds cover Istio groups");
    assert!(!coverage.covers("", "ConfigMap") && !coverage.covers("rbac.authorization.k8s.io", "Role"));
}

/// The catalog links each check to its code: the file the registry names for it exists and
/// declares that check.
#[test]
fn every_check_names_the_file_that_declares_it() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    for spec in policy_core::registry() {
        let source = policy_core::checks::source(spec.id).unwrap_or_else(|| panic!("{}: no source", spec.id));
        let text = std::fs::read_to_string(root.join(source)).unwrap_or_else(|e| panic!("{}: {source}: {e}", spec.id));
        let declared = text.contains(&format!("id: \"{}\",", spec.id))
            || (spec.id == policy_core::checks::CEL_CHECK_ID && text.contains("id: super::CEL_CHECK_ID,"));
        assert!(declared, "{source} does not declare `{}`", spec.id);
    }
}

/// A check whose catalog entry promises a fix fixes its own failing example: `fix_text` writes
/// it, and the fixed example no longer fires (the catalog prints the fixed example from the same
/// run). Checks without a fix say why in one line starting with "None".
#[test]
fn documented_fixes_fix_the_failing_examples() {
    for spec in registry().iter().filter(|s| s.target == Target::Kubernetes) {
        assert!(!spec.fix.is_empty(), "{}: the catalog says nothing about fixes", spec.id);
        let fixed = policy_core::fix::fix_text(&policy_for(spec), spec.failing_example, "default").unwrap();
        if !spec.offers_fix() {
            assert!(fixed.applied.is_empty(), "{}: says None but fixed {:?}", spec.id, fixed.applied);
            continue;
        }
        // The generic templates fix only with a `default` in their params; their examples have none.
        if spec.id.starts_with("required-") {
            continue;
        }
        assert!(!fixed.applied.is_empty(), "{}: its failing example got no fix: {:?}", spec.id, fixed.left);
        let again = fired(spec, &fixed.text);
        assert!(again.is_empty(), "{}: still fires after the fix: {again:?}\n{}", spec.id, fixed.text);
        let twice = policy_core::fix::fix_text(&policy_for(spec), &fixed.text, "default").unwrap();
        assert_eq!(twice.text, fixed.text, "{}: a second fix changed the text", spec.id);
    }
}

#[test]
fn a_required_key_with_a_default_is_added() {
    let doc = json!({
        "apiVersion": "meshguard.dev/v1alpha1", "kind": "RuleSet", "metadata": {"name": "t"},
        "spec": {"rules": [{"id": "owner", "check": "required-labels",
                            "params": {"keys": [{"key": "owner", "allowedRegex": "team-.+", "default": "team-unknown"}]}}]}
    });
    let policy = Policy::from_value(&doc).unwrap();
    let text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: api\n  namespace: shop\n";
    let fixed = policy_core::fix::fix_text(&policy, text, "default").unwrap();
    assert_eq!(fixed.text, format!("{text}  labels:\n    owner: team-unknown\n"));
    let bad = json!({
        "apiVersion": "meshguard.dev/v1alpha1", "kind": "RuleSet", "metadata": {"name": "t"},
        "spec": {"rules": [{"id": "owner", "check": "required-labels",
                            "params": {"keys": [{"key": "owner", "allowedRegex": "team-.+", "default": "nobody"}]}}]}
    });
    let e = Policy::from_value(&bad).unwrap_err().to_string();
    assert!(e.contains("keys[0].default") && e.contains("allowedRegex"), "{e}");
}
