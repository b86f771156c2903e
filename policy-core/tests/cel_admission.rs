//! CEL rules and ValidatingAdmissionPolicies at admission: they see the AdmissionRequest
//! (`request`, `oldObject`), as in the API server.
#![cfg(all(feature = "kubernetes", feature = "cel", feature = "yaml"))]

use policy_core::{Action, Policy};
use serde_json::json;

const RULES: &str = r#"
apiVersion: meshguard.dev/v1alpha1
kind: RuleSet
metadata: {name: admission}
spec:
  rules:
  - id: no-scale-down-below-two
    check: cel
    match: {kinds: [{apiGroups: [apps], kinds: [Deployment]}]}
    params:
      matchConditions:
      - {name: updates, expression: "request.operation == 'UPDATE'"}
      expression: object.spec.replicas >= 2 || oldObject.spec.replicas < 2
      messageExpression: "'scaling ' + request.name + ' from ' + string(oldObject.spec.replicas) + ' to ' + string(object.spec.replicas) + ' is below 2'"
  admissionPolicies:
  - apiVersion: admissionregistration.k8s.io/v1
    kind: ValidatingAdmissionPolicy
    metadata: {name: no-privileged-users}
    spec:
      matchConstraints:
        resourceRules: [{apiGroups: [apps], apiVersions: [v1], operations: [UPDATE], resources: [deployments]}]
      validations:
      - expression: "!request.userInfo.username.startsWith('system:anonymous')"
        message: anonymous users may not change Deployments
  - apiVersion: admissionregistration.k8s.io/v1
    kind: ValidatingAdmissionPolicyBinding
    metadata: {name: everywhere}
    spec: {policyName: no-privileged-users, validationActions: [Warn]}
"#;

fn deployment(replicas: i64) -> serde_json::Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": "shop"},
           "spec": {"replicas": replicas}})
}

fn review(operation: &str, user: &str, old: i64, new: i64) -> policy_core::AdmissionVerdict {
    let policy = Policy::from_text(RULES).unwrap();
    policy.review_admission(&json!({"request": {
        "uid": "1", "operation": operation, "namespace": "shop", "name": "api",
        "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "userInfo": {"username": user},
        "object": deployment(new), "oldObject": deployment(old)}}))
}

#[test]
fn expressions_see_the_request_and_the_old_object() {
    let verdict = review("UPDATE", "alice", 3, 1);
    assert!(!verdict.allowed);
    let deny: Vec<_> = verdict.with_action(Action::Deny).collect();
    assert_eq!(deny.len(), 1);
    assert_eq!(deny[0].message, "scaling api from 3 to 1 is below 2");
    assert_eq!(deny[0].path.to_string(), "spec.replicas", "the one field of `object` it reads");
    assert!(review("UPDATE", "alice", 1, 1).allowed, "already below two: not a scale-down");
    assert!(review("CREATE", "alice", 3, 1).allowed, "the match condition limits it to updates");

    let anonymous = review("UPDATE", "system:anonymous", 3, 3);
    assert!(anonymous.allowed, "the binding only warns");
    let warn: Vec<_> = anonymous.with_action(Action::Warn).collect();
    assert_eq!(warn.len(), 1);
    assert_eq!(warn[0].rule, "no-privileged-users/everywhere");
    assert_eq!(warn[0].message, "anonymous users may not change Deployments");
    assert!(review("CREATE", "system:anonymous", 3, 3).findings.is_empty(), "the policy matches UPDATE only");
}

/// An evaluated `messageExpression` over 5 KiB, or on more than one line, is not used: the
/// static `message` is, as in the API server.
#[test]
fn oversized_or_multiline_evaluated_messages_fall_back_to_the_static_message() {
    let rules = |message_expression: &str| {
        format!(
            "apiVersion: meshguard.dev/v1alpha1\nkind: RuleSet\nmetadata: {{name: m}}\nspec:\n  rules:\n  - id: r\n    check: cel\n    params:\n      expression: 'false'\n      message: static words\n      messageExpression: \"{message_expression}\"\n"
        )
    };
    let object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "shop"}});
    let message = |expr: &str| {
        let policy = Policy::from_text(&rules(expr)).unwrap();
        policy.review(&policy_core::Input::new(std::slice::from_ref(&object), "shop"))[0].message.clone()
    };
    assert_eq!(message("'short ' + object.metadata.name"), "short c");
    let at_limit = format!("'{}'", "x".repeat(policy_core::cel::MAX_EVALUATED_MESSAGE_BYTES));
    assert_eq!(message(&at_limit).len(), policy_core::cel::MAX_EVALUATED_MESSAGE_BYTES);
    let over = format!("'{}'", "x".repeat(policy_core::cel::MAX_EVALUATED_MESSAGE_BYTES + 1));
    assert_eq!(message(&over), "static words");
    assert_eq!(message("'two\\\\nlines'"), "static words");
}
