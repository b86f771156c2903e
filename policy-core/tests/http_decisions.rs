//! HTTP rule evaluation: order, `when`, actions, statuses, gRPC codes and rate-limit state.

use policy_core::{Action, MemoryBuckets, Policy, Request};

fn policy(rules: &str) -> Policy {
    Policy::from_text(&format!(
        "apiVersion: meshguard.dev/v1alpha1\nkind: RuleSet\nmetadata: {{name: t}}\nspec:\n  rules:\n{rules}"
    ))
    .unwrap_or_else(|e| panic!("{e}"))
}

fn req(method: &str, path: &str, headers: &[(&str, &str)]) -> Request<'static> {
    Request::owned(method, path, "api.shop:8080", headers)
}

const RULES: &str = "  - id: tenant
    check: http-tenant-header
    params: {allowed: [shop]}
    when: {pathPrefix: /api}
  - id: debug
    check: http-deny-header
    action: warn
    params: {header: x-debug, pattern: '.*'}
  - id: methods
    check: http-allowed-methods
    params: {paths: [{prefix: /admin, methods: [GET]}]}
  - id: grpc
    check: http-grpc-shape
  - id: limit
    check: http-local-rate-limit
    params: {key: 'header:x-tenant', tokenBucket: {maxTokens: 2, tokensPerFill: 1, fillInterval: 1s}}
";

#[test]
fn first_deny_wins_and_carries_status() {
    let p = policy(RULES);
    let mut b = MemoryBuckets::default();
    let d = p.decide(&req("GET", "/api/x?y=1", &[]), 0, &mut b).unwrap();
    let denial = d.denied.unwrap();
    assert_eq!((denial.rule.as_str(), denial.status, denial.grpc_status), ("tenant", 403, 7));
    assert!(denial.message.contains("missing tenant header `x-tenant`"));

    let d = p.decide(&req("GET", "/other", &[]), 0, &mut b).unwrap();
    assert_eq!(d.denied, None, "`when` keeps the tenant rule off other paths");

    let d = p.decide(&req("POST", "/admin/users", &[]), 0, &mut b).unwrap();
    assert_eq!(d.denied.unwrap().status, 405);
}

#[test]
fn warn_rules_let_the_request_through() {
    let p = policy(RULES);
    let d = p
        .decide(&req("GET", "/api", &[("x-tenant", "shop"), ("X-Debug", "1")]), 0, &mut MemoryBuckets::default())
        .unwrap();
    assert_eq!(d.denied, None);
    assert_eq!(d.fired, vec![(1, Action::Warn)]);
    assert_eq!(p.http_rule(1).unwrap().id, "debug");
}

#[test]
fn grpc_shape() {
    let p = policy(RULES);
    let mut b = MemoryBuckets::default();
    let ok = req("POST", "/pkg.Svc/M", &[("content-type", "application/grpc"), ("te", "trailers")]);
    assert_eq!(p.decide(&ok, 0, &mut b).unwrap().denied, None);
    let bad = req("POST", "/pkg.Svc/M", &[("content-type", "application/grpc+proto")]);
    assert_eq!(p.decide(&bad, 0, &mut b).unwrap().denied.unwrap().rule, "grpc");
}

#[test]
fn rate_limit_bursts_then_refills_per_key() {
    let p = policy(RULES);
    let mut b = MemoryBuckets::default();
    let shop = req("GET", "/api", &[("x-tenant", "shop")]);
    let outcomes: Vec<Option<u16>> =
        (0..4).map(|i| p.decide(&shop, 100 * i, &mut b).unwrap().denied.map(|d| d.status)).collect();
    assert_eq!(outcomes, [None, None, Some(429), Some(429)]);
    let d = p.decide(&shop, 1_000, &mut b).unwrap();
    assert_eq!(d.denied, None, "one token back after fillInterval");
    let denial = p.decide(&shop, 1_001, &mut b).unwrap().denied.unwrap();
    assert_eq!((denial.status, denial.grpc_status), (429, 8));
    let other = req("GET", "/x", &[("x-tenant", "pay")]);
    assert_eq!(p.decide(&other, 1_001, &mut b).unwrap().denied, None, "another tenant has its own bucket");
}

#[test]
fn message_override_and_status() {
    let p = policy("  - id: rid\n    check: http-require-header\n    status: 401\n    message: 'auth needed ({message})'\n    params: {header: authorization}\n");
    let d = p.decide(&req("GET", "/", &[]), 0, &mut MemoryBuckets::default()).unwrap().denied.unwrap();
    assert_eq!(d.status, 401);
    assert_eq!(d.message, "auth needed (missing required header `authorization`)");
}

#[test]
fn rules_name_the_headers_they_read_and_limits_read_them_all() {
    use policy_core::HeadersRead;
    let named = |names: &[&str]| HeadersRead::Named(names.iter().map(|n| n.to_string()).collect());
    // `when.headerPresent` counts, names are lower-cased, and content-type is always read.
    let p = policy(&format!(
        "{RULES}  - id: auth\n    check: http-require-header\n    params: {{header: Authorization}}\n    when: {{headerPresent: X-Canary}}\n"
    ));
    assert_eq!(p.headers_read(), named(&["authorization", "content-type", "te", "x-canary", "x-debug", "x-tenant"]));
    let p = policy(
        "  - id: rate\n    check: http-local-rate-limit\n    params: {tokenBucket: {maxTokens: 1, fillInterval: 1s}}\n",
    );
    assert_eq!(p.headers_read(), named(&["content-type"]), "a global rate limit reads no header");
    let p = policy(&format!("{RULES}  - id: limits\n    check: http-header-limits\n    params: {{maxCount: 8}}\n"));
    assert_eq!(p.headers_read(), HeadersRead::All);
    assert_eq!(policy("    []\n").headers_read(), named(&["content-type"]));
}
