//! Loading a rule set validates it fully; every error names the rule id, the field and the line.

use policy_core::{LoadError, Policy};

fn load_err(rules: &str) -> LoadError {
    let text =
        format!("apiVersion: meshguard.dev/v1alpha1\nkind: RuleSet\nmetadata: {{name: t}}\nspec:\n  rules:\n{rules}");
    Policy::from_text(&text).expect_err("rule set should be rejected")
}

fn assert_err(rules: &str, rule: Option<&str>, field: &str, message: &str, line: u32) {
    let e = load_err(rules);
    let LoadError::Invalid { line: got_line, error } = &e else { panic!("expected a validation error, got {e}") };
    assert_eq!(error.rule.as_deref(), rule, "{e}");
    assert_eq!(error.field, field, "{e}");
    assert!(error.message.contains(message), "`{}` should contain `{message}`", error.message);
    assert_eq!(*got_line, line, "{e}");
}

#[test]
fn unknown_check() {
    assert_err("  - id: a\n    check: istio-nope\n", Some("a"), "spec.rules[0].check", "unknown check `istio-nope`", 7);
}

#[test]
fn unknown_param() {
    assert_err(
        "  - id: ports\n    check: istio-port-name\n    params:\n      protocolz: [http]\n",
        Some("ports"),
        "spec.rules[0].params.protocolz",
        "unknown field `protocolz`",
        9,
    );
}

#[test]
fn wrong_param_type() {
    assert_err(
        "  - id: a\n    check: istio-graceful-shutdown\n  - id: shutdown\n    check: istio-graceful-shutdown\n    params: {minPreStopSeconds: soon}\n",
        Some("shutdown"),
        "spec.rules[1].params.minPreStopSeconds",
        "invalid type: string \"soon\"",
        10,
    );
}

#[test]
fn serde_json_raw_value_key_is_refused_where_it_is() {
    assert_err(
        "  - id: ports\n    check: istio-port-name\n    params:\n      $serde_json::private::RawValue: '{\"protocols\": [http]}'\n",
        None,
        "spec.rules[0].params",
        "is reserved by serde_json for embedded JSON",
        8,
    );
}

#[test]
fn bad_regex() {
    assert_err(
        "  - id: images\n    check: field-pattern\n    params:\n      path: spec.containers[*].image\n      pattern: '(latest'\n",
        Some("images"),
        "spec.rules[0].params.pattern",
        "invalid regex `(latest`",
        10,
    );
}

#[test]
fn duplicate_id() {
    assert_err(
        "  - {id: a, check: istio-port-name}\n  - {id: a, check: istio-circuit-breaker}\n",
        Some("a"),
        "spec.rules[1].id",
        "duplicate rule id `a`",
        7,
    );
}

#[test]
fn bad_action_and_match() {
    assert_err(
        "  - {id: a, check: istio-port-name, action: block}\n",
        Some("a"),
        "spec.rules[0].action",
        "unknown variant `block`",
        6,
    );
    assert_err(
        "  - id: a\n    check: istio-port-name\n    match: {namespace: [x]}\n",
        Some("a"),
        "spec.rules[0].match.namespace",
        "unknown field `namespace`",
        8,
    );
    assert_err(
        "  - id: a\n    check: http-grpc-shape\n    match: {namespaces: [x]}\n",
        Some("a"),
        "spec.rules[0].match",
        "use `when`",
        8,
    );
    assert_err(
        "  - id: a\n    check: http-local-rate-limit\n    params: {key: 'cookie:x', tokenBucket: {maxTokens: 1, fillInterval: 1s}}\n",
        Some("a"),
        "spec.rules[0].params.key",
        "is not `global`",
        8,
    );
}

#[test]
fn document_level_errors() {
    let e = Policy::from_text("apiVersion: v1\nkind: RuleSet\nmetadata: {name: x}\nspec: {rules: []}\n").unwrap_err();
    assert!(e.to_string().contains("apiVersion: `v1` is not supported"), "{e}");
    let e = Policy::from_text("kind: RuleSet\n").unwrap_err();
    assert!(e.to_string().contains("missing field `apiVersion`"), "{e}");
    let e = Policy::from_text("a: [\n").unwrap_err();
    assert!(matches!(e, LoadError::Syntax { line: 2, .. }), "{e:?}");
}

#[test]
fn default_rules_load_and_cover_every_istio_check() {
    let p = Policy::default_rules().unwrap();
    for spec in policy_core::registry() {
        if spec.id.starts_with("istio-") {
            assert!(p.rules().any(|r| r.check == spec.id), "default rule set misses {}", spec.id);
        }
    }
}

/// ValidatingAdmissionPolicy objects the API server would refuse are refused at load, with the
/// object, field and line: they would otherwise match nothing, or hide one another.
#[cfg(feature = "cel")]
#[test]
fn vap_objects_the_api_server_refuses_are_refused() {
    let policy = |name: &str, rule: &str| {
        format!(
            "  - apiVersion: admissionregistration.k8s.io/v1\n    kind: ValidatingAdmissionPolicy\n    metadata: {{name: {name}}}\n    spec:\n      paramKind: {{apiVersion: v1, kind: ConfigMap}}\n      matchConstraints:\n        resourceRules:\n        - {rule}\n      validations: [{{expression: 'true'}}]\n"
        )
    };
    let good_rule = "{apiGroups: [apps], apiVersions: [v1], operations: [CREATE], resources: [deployments]}";
    let binding = |policy: &str, param_ref: &str| {
        format!(
            "  - apiVersion: admissionregistration.k8s.io/v1\n    kind: ValidatingAdmissionPolicyBinding\n    metadata: {{name: b}}\n    spec: {{policyName: {policy}, validationActions: [Deny]{param_ref}}}\n"
        )
    };
    let load = |objects: String| {
        let text = format!(
            "apiVersion: meshguard.dev/v1alpha1\nkind: RuleSet\nmetadata: {{name: t}}\nspec:\n  rules: []\n  admissionPolicies:\n{objects}"
        );
        match Policy::from_text(&text) {
            Err(LoadError::Invalid { line, error }) => (error.field, error.message, line),
            other => panic!("expected a validation error, got {:?}", other.map(|_| ())),
        }
    };
    // Two policies of one name: the second is refused (a permissive one could hide a strict one).
    let (field, message, line) =
        load(format!("{}{}{}", policy("strict", good_rule), policy("strict", good_rule), binding("strict", "")));
    assert_eq!(field, "spec.admissionPolicies[1].metadata.name");
    assert!(message.contains("a second ValidatingAdmissionPolicy named `strict`"), "{message}");
    assert_eq!(line, 18, "the second policy's name");
    // A resource rule without operations, or without apiVersions, would match nothing.
    let no_ops = "{apiGroups: [apps], apiVersions: [v1], resources: [deployments]}";
    let (field, message, _) = load(format!("{}{}", policy("p", no_ops), binding("p", "")));
    assert_eq!(field, "spec.admissionPolicies[0].spec.matchConstraints.resourceRules[0].operations", "{message}");
    let no_versions = "{apiGroups: [apps], operations: [CREATE], resources: [deployments]}";
    let (field, _, _) = load(format!("{}{}", policy("p", no_versions), binding("p", "")));
    assert_eq!(field, "spec.admissionPolicies[0].spec.matchConstraints.resourceRules[0].apiVersions");
    let bad_op = "{apiGroups: [apps], apiVersions: [v1], operations: [CREATE, PATCH], resources: [deployments]}";
    let (field, message, _) = load(format!("{}{}", policy("p", bad_op), binding("p", "")));
    assert_eq!(field, "spec.admissionPolicies[0].spec.matchConstraints.resourceRules[0].operations[1]");
    assert!(message.contains("`PATCH` is not an operation"), "{message}");
    // A paramRef names its object, or selects objects: not both, not neither.
    let both = ", paramRef: {name: limits, selector: {matchLabels: {a: b}}}";
    let (field, message, _) = load(format!("{}{}", policy("p", good_rule), binding("p", both)));
    assert_eq!(field, "spec.admissionPolicies[1].spec.paramRef");
    assert!(message.contains("mutually exclusive"), "{message}");
    let (_, message, _) = load(format!("{}{}", policy("p", good_rule), binding("p", ", paramRef: {namespace: x}")));
    assert!(message.contains("one of name or selector is required"), "{message}");
}
