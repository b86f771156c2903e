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
