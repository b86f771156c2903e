//! Generated workloads for benchmarks: a manifest repo of mixed objects, a typical Deployment,
//! a typical request. Deterministic, so runs compare.

pub mod peers;

use std::fmt::Write;

/// One team's namespace worth of objects (10 objects), some with mistakes, as a YAML stream.
pub fn team_file(team: usize) -> String {
    let ns = format!("team-{team}");
    let bad = team.is_multiple_of(3);
    let port_name = if bad { "web" } else { "http-web" };
    let mut y = String::new();
    let _ = write!(
        y,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  labels:\n    istio-injection: enabled\n---\n"
    );
    for app in 0..3 {
        let name = format!("app-{app}");
        let hold = if bad && app == 0 {
            ""
        } else {
            "        proxy.istio.io/config: |\n          holdApplicationUntilProxyStarts: true\n          terminationDrainDuration: 20s\n"
        };
        let _ = write!(
            y,
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels:\n    app: {name}\nspec:\n  replicas: 3\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n        version: v1\n      annotations:\n{hold}        prometheus.io/scrape: \"true\"\n    spec:\n      terminationGracePeriodSeconds: 75\n      containers:\n      - name: {name}\n        image: registry.example.com/{ns}/{name}:1.0.{app}\n        ports:\n        - name: http\n          containerPort: 8080\n        resources:\n          limits:\n            cpu: 500m\n            memory: 256Mi\n        lifecycle:\n          preStop:\n            exec:\n              command: [\"sh\", \"-c\", \"sleep 40\"]\n---\n"
        );
        let _ = write!(
            y,
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  selector:\n    app: {name}\n  ports:\n  - name: {port_name}\n    port: 80\n    targetPort: 8080\n  - name: grpc-api\n    port: 9000\n---\n"
        );
    }
    let export = if bad { "[\"*\"]" } else { "[\".\"]" };
    let _ = write!(
        y,
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: app-0\n  namespace: {ns}\nspec:\n  host: app-0.{ns}.svc.cluster.local\n  exportTo: {export}\n  trafficPolicy:\n    connectionPool:\n      http:\n        http2MaxRequests: 1000\n    outlierDetection:\n      consecutive5xxErrors: 5\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: app-0\n  namespace: {ns}\nspec:\n  hosts: [app-0]\n  exportTo: [\".\"]\n  http:\n  - route:\n    - destination:\n        host: app-0\n---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n  name: default\n  namespace: {ns}\nspec:\n  egress:\n  - hosts: [\"./*\", \"istio-system/*\"]\n"
    );
    y
}

/// A repo of `objects` objects (rounded up to whole teams of 10), one file per team.
pub fn repo_files(objects: usize) -> Vec<(String, String)> {
    (0..objects.div_ceil(10)).map(|t| (format!("team-{t}/manifests.yaml"), team_file(t))).collect()
}

/// A typical Deployment as an admission controller sees it.
pub fn typical_deployment() -> serde_json::Value {
    let docs = policy_core::yaml::parse_documents(&team_file(1)).unwrap_or_default();
    docs.into_iter().map(|d| d.value).find(|v| v["kind"] == "Deployment").unwrap_or_default()
}

/// One team namespace's objects of `kinds`, in file order (team 1 is compliant).
pub fn team_objects(kinds: &[&str]) -> Vec<serde_json::Value> {
    let docs = policy_core::yaml::parse_documents(&team_file(1)).unwrap_or_default();
    docs.into_iter().map(|d| d.value).filter(|v| kinds.iter().any(|k| v["kind"] == *k)).collect()
}

/// The workloads objects are measured on: (name, objects reviewed together).
pub fn object_workloads() -> Vec<(&'static str, Vec<serde_json::Value>)> {
    let service = team_objects(&["Service"]).into_iter().take(1).collect();
    vec![
        ("deployment", vec![typical_deployment()]),
        ("service", service),
        ("virtualservice_destinationrule", team_objects(&["VirtualService", "DestinationRule"])),
    ]
}

/// The request headers as Envoy hands them to a filter: pseudo-headers first.
pub fn typical_request_headers() -> Vec<(String, String)> {
    let mut headers = vec![
        (":method".to_string(), TYPICAL_METHOD.to_string()),
        (":path".to_string(), TYPICAL_PATH.to_string()),
        (":authority".to_string(), TYPICAL_AUTHORITY.to_string()),
        (":scheme".to_string(), "http".to_string()),
    ];
    headers.extend(typical_headers());
    headers
}

/// A typical request between services: 12 headers.
pub fn typical_headers() -> Vec<(String, String)> {
    [
        ("x-forwarded-for", "10.12.4.7"),
        ("user-agent", "grpc-go/1.60.0"),
        ("accept", "application/json"),
        ("x-tenant", "shop"),
        ("x-request-id", "3f2c9a1e-8d7b-4c61-9f0e-2a5b6c7d8e9f"),
        ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
        ("x-b3-spanid", "e457b5a2e4d86bd1"),
        ("x-b3-sampled", "1"),
        ("x-forwarded-proto", "http"),
        ("x-envoy-attempt-count", "1"),
        ("content-type", "application/json"),
        ("authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.ZRrHA1JJJW8opsbCGfG_HACGpVUMN_a9IV7pAx_Zmeo"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

pub const TYPICAL_METHOD: &str = "GET";
pub const TYPICAL_PATH: &str = "/api/orders/42?expand=items";
pub const TYPICAL_AUTHORITY: &str = "orders.shop.svc.cluster.local";

/// The typical request as policy-core's model.
pub fn typical_request() -> policy_core::Request<'static> {
    let headers = typical_headers();
    let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    policy_core::Request::owned(TYPICAL_METHOD, TYPICAL_PATH, TYPICAL_AUTHORITY, &pairs)
}

/// Ten HTTP rules and one rate limit, the shape the Envoy benchmark uses.
pub const HTTP_RULES: &str = "apiVersion: meshguard.dev/v1alpha1
kind: RuleSet
metadata: {name: bench-http}
spec:
  rules:
  - {id: tenant, check: http-tenant-header, params: {allowed: [shop, pay, ads]}}
  - {id: request-id, check: http-require-header, params: {header: x-request-id, pattern: '^[0-9a-f-]{36}$'}}
  - {id: auth, check: http-require-header, params: {header: authorization, pattern: '^Bearer '}}
  - {id: no-debug, check: http-deny-header, params: {header: x-debug, pattern: '.*'}}
  - {id: no-internal, check: http-deny-header, params: {header: x-internal-override, pattern: '.*'}}
  - {id: methods, check: http-allowed-methods, params: {paths: [{prefix: /admin, methods: [GET]}, {prefix: /api, methods: [GET, POST, PUT]}]}}
  - {id: limits, check: http-header-limits, params: {maxCount: 64, maxValueBytes: 4096, maxTotalBytes: 32768}}
  - {id: grpc, check: http-grpc-shape}
  - {id: trace, check: http-require-header, action: warn, params: {header: x-b3-traceid}}
  - {id: ua, check: http-deny-header, params: {header: user-agent, pattern: '(?i)sqlmap|nikto'}}
  - {id: rate, check: http-local-rate-limit, params: {key: 'header:x-tenant', tokenBucket: {maxTokens: 1000000000, tokensPerFill: 1000000, fillInterval: 1s}}}
";

/// [`HTTP_RULES`] without its header limits, the one rule that reads every header: with it gone
/// the Envoy shells fetch only the headers the rules name.
pub fn http_rules_named() -> String {
    HTTP_RULES.lines().filter(|l| !l.contains("http-header-limits")).map(|l| format!("{l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_repo_has_the_requested_size_and_mistakes() {
        let files = repo_files(10_000);
        assert_eq!(files.len(), 1000);
        let objects: usize = files.iter().map(|(_, t)| policy_core::yaml::parse_documents(t).unwrap().len()).sum();
        assert_eq!(objects, 10_000);
        let policy = policy_core::Policy::default_rules().unwrap();
        let values: Vec<_> =
            policy_core::yaml::parse_documents(&team_file(0)).unwrap().into_iter().map(|d| d.value).collect();
        let bad = policy.review(&policy_core::Input::new(&values, "default"));
        assert!(bad.iter().any(|f| f.rule == "istio-port-name"), "team 0 has mistakes");
        let values: Vec<_> =
            policy_core::yaml::parse_documents(&team_file(1)).unwrap().into_iter().map(|d| d.value).collect();
        let good = policy.review(&policy_core::Input::new(&values, "default"));
        assert!(good.is_empty(), "team 1 is clean: {good:?}");
        assert_eq!(typical_deployment()["kind"], "Deployment");
        assert_eq!(typical_request().headers.len(), 12);
    }
}
