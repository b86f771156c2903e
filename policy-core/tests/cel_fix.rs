//! A `check: cel` rule's fix, written in CEL as a MutatingAdmissionPolicy's JSONPatch mutation:
//! the patch it builds is the finding's fix, `fix_text` writes it, and what it writes passes.
#![cfg(all(feature = "kubernetes", feature = "cel", feature = "yaml"))]

use policy_core::{Input, Policy};
use serde_json::json;

fn rules(fix: serde_json::Value) -> Result<Policy, String> {
    let doc = json!({
        "apiVersion": "meshguard.dev/v1alpha1", "kind": "RuleSet", "metadata": {"name": "t"},
        "spec": {"rules": [{"id": "team-label", "check": "cel",
            "match": {"kinds": [{"apiGroups": ["apps"], "kinds": ["Deployment"]}]},
            "params": {
                "variables": [{"name": "team", "expression": "object.metadata.namespace"}],
                "expression": "has(object.metadata.labels) && 'team' in object.metadata.labels",
                "message": "a Deployment names its team",
                "fix": fix}}]}
    });
    Policy::from_value(&doc).map_err(|e| e.to_string())
}

const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\n  namespace: shop\n  labels:\n    app: api # the app\nspec:\n  replicas: 2\n";

#[test]
fn a_cel_fix_builds_the_patch_and_fix_text_writes_it() {
    let policy = rules(json!({"patchType": "JSONPatch", "description": "label the team",
        "expression": "[JSONPatch{op: 'add', path: '/metadata/labels/team', value: variables.team}]"}))
    .unwrap();
    let objects = vec![policy_core::yaml::parse_one(DEPLOYMENT).unwrap().value];
    let findings = policy.review(&Input::new(&objects, "default"));
    let fix = findings[0].fix.as_ref().expect("the finding carries the CEL fix");
    assert_eq!(fix.description, "label the team");
    assert_eq!(
        serde_json::to_value(&fix.patch).unwrap(),
        json!([{"op": "add", "path": "/metadata/labels/team", "value": "shop"}])
    );
    let fixed = policy_core::fix::fix_text(&policy, DEPLOYMENT, "default").unwrap();
    assert_eq!(fixed.text, DEPLOYMENT.replace("    app: api # the app\n", "    app: api # the app\n    team: shop\n"));
    assert!(fixed.left.is_empty(), "{:?}", fixed.left);
}

#[test]
fn a_cel_fix_that_fails_or_is_not_a_patch_leaves_the_finding_without_one() {
    for expression in [
        "[JSONPatch{op: 'add', path: '/x', value: 1 / 0}]",
        "[dyn('not a patch')]",
        "[JSONPatch{op: 'jump', path: '/x'}]",
    ] {
        let policy = rules(json!({"patchType": "JSONPatch", "expression": expression})).unwrap();
        let objects = vec![policy_core::yaml::parse_one(DEPLOYMENT).unwrap().value];
        let findings = policy.review(&Input::new(&objects, "default"));
        assert_eq!(findings.len(), 1, "{expression}: the finding stays");
        assert!(findings[0].fix.is_none(), "{expression}: no fix");
    }
}

#[test]
fn a_bad_cel_fix_is_refused_at_load_naming_the_field() {
    let e = rules(json!({"patchType": "ApplyConfiguration", "expression": "Object{}"})).unwrap_err();
    assert!(e.contains("fix.patchType"), "{e}");
    let e = rules(json!({"patchType": "JSONPatch", "expression": "['not a patch']"})).unwrap_err();
    assert!(e.contains("fix.expression") && e.contains("must evaluate to list(JSONPatch) but got list(string)"), "{e}");
    let e = rules(json!({"patchType": "JSONPatch", "expression": "[JSONPatch{op: 'add',"})).unwrap_err();
    assert!(e.contains("fix.expression") && e.contains("syntax error"), "{e}");
    let e = rules(json!({"patchType": "JSONPatch", "expression": "[]", "extra": 1})).unwrap_err();
    assert!(e.contains("extra"), "{e}");
}

/// A fix may change only what its rule declares (`fix.paths`, by default the rule's field path):
/// one that changes anything else is dropped, and the finding says so.
#[test]
fn a_cel_fix_that_strays_from_its_declared_paths_is_dropped() {
    let objects = vec![policy_core::yaml::parse_one(DEPLOYMENT).unwrap().value];
    let stray = "[JSONPatch{op: 'add', path: '/metadata/labels/team', value: variables.team}, \
                 JSONPatch{op: 'replace', path: '/spec/replicas', value: 9}]";
    let policy = rules(json!({"patchType": "JSONPatch", "expression": stray})).unwrap();
    let findings = policy.review(&Input::new(&objects, "default"));
    assert!(findings[0].fix.is_none(), "the replicas are not the rule's to change");
    assert!(
        findings[0].message.contains("its fix was dropped: it changes `/spec/replicas`"),
        "{}",
        findings[0].message
    );
    assert_eq!(policy.fix_scope_of("team-label"), ["/metadata/labels"], "the field the expression reads");

    let declared = rules(
        json!({"patchType": "JSONPatch", "expression": stray, "paths": ["/metadata/labels/team", "/spec/replicas"]}),
    )
    .unwrap();
    let findings = declared.review(&Input::new(&objects, "default"));
    assert!(findings[0].fix.is_some(), "declared, it stays");

    let e = rules(json!({"patchType": "JSONPatch", "expression": "[]", "paths": ["spec.replicas"]})).unwrap_err();
    assert!(e.contains("fix.paths[0]") && e.contains("not a JSON Pointer"), "{e}");
}
