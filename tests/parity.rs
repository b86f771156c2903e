//! Differential test: the whole corpus, and generated manifests and requests, through native
//! policy-core and through each deployed wasm artifact in host-runner's wasmtime host. Any
//! difference in decision, rule ids, messages or paths fails.

use host_runner::wasm::{self, proxy::ProxyFilter, Limits, WapcModule};
use meshguard_tests::envoy::built_module;
use meshguard_tests::load_corpus;
use policy_core::{Input, MemoryBuckets, Policy, Request};
use proptest::prelude::*;
use serde_json::{json, Value};

#[allow(dead_code)]
#[path = "support/generate.rs"]
mod generate;
use generate::{istio_object, service, workload};

fn kubewarden() -> WapcModule {
    let engine = wasm::engine(&Limits::default()).unwrap();
    let bytes = std::fs::read(built_module("dist/meshguard-kubewarden.wasm").unwrap()).unwrap();
    let (module, _) = wasm::compile_cached(&engine, &bytes, None).unwrap();
    WapcModule::new(&engine, &module, Limits::default()).unwrap()
}

/// The filter compiled once per test binary; each caller gets a fresh instance (a fresh VM).
fn filter(rules: &str) -> ProxyFilter {
    static COMPILED: std::sync::OnceLock<(wasmtime::Engine, wasmtime::Module)> = std::sync::OnceLock::new();
    let (engine, module) = COMPILED.get_or_init(|| {
        let engine = wasm::engine(&Limits::default()).unwrap();
        let bytes = std::fs::read(built_module("dist/meshguard-envoy.wasm").unwrap()).unwrap();
        let (module, _) = wasm::compile_cached(&engine, &bytes, None).unwrap();
        (engine, module)
    });
    ProxyFilter::new(engine, module, rules.as_bytes(), Limits::default()).unwrap()
}

/// (rule, action, message, path, object) for every finding, in order.
fn native_findings(objects: &[Value], rules: Option<&Value>, ns: &str) -> Vec<(String, String, String, String, usize)> {
    let policy = match rules {
        Some(r) => Policy::from_value(r).unwrap(),
        None => Policy::default_rules().unwrap(),
    };
    policy
        .review(&Input::new(objects, ns))
        .into_iter()
        .map(|f| (f.rule, f.action.as_str().to_string(), f.message, f.path.to_string(), f.object_index))
        .collect()
}

fn wasm_findings(
    m: &WapcModule,
    objects: &[Value],
    rules: Option<&Value>,
    ns: &str,
) -> Vec<(String, String, String, String, usize)> {
    let payload = json!({"objects": objects, "rules": rules, "namespace": ns});
    let answer: Value =
        serde_json::from_slice(&m.call("meshguard_review", payload.to_string().as_bytes()).unwrap()).unwrap();
    answer["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or("").to_string();
            (s("rule"), s("action"), s("message"), s("path"), f["object"].as_u64().unwrap() as usize)
        })
        .collect()
}

/// Envoy-style headers for a request, as the filter receives them.
fn envoy_headers(req: &Request) -> Vec<(String, String)> {
    let mut h = vec![(":method".into(), req.method.to_string()), (":path".into(), req.path.to_string())];
    h.push((
        ":authority".into(),
        if req.authority.is_empty() { "replay.local".into() } else { req.authority.to_string() },
    ));
    h.extend(req.headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.to_string())));
    h
}

/// (decision, rule, status, message) natively and through the filter.
fn compare_requests(rules_text: &str, requests: &[(Request, u64)]) -> Result<(), String> {
    let policy = Policy::from_text(rules_text).map_err(|e| e.to_string())?;
    let mut buckets = MemoryBuckets::default();
    let mut f = filter(rules_text);
    for (i, (req, at)) in requests.iter().enumerate() {
        // The filter sees the authority the way Envoy passes it; natively the model carries it.
        let mut native_req = req.clone();
        if native_req.authority.is_empty() {
            native_req.authority = "replay.local".into();
        }
        let d = policy.decide(&native_req, *at, &mut buckets).map_err(|e| e.to_string())?;
        let native = d.denied.map(|x| {
            let status = if req.is_grpc() { u32::from(x.grpc_status) } else { u32::from(x.status) };
            (x.rule, status, x.message)
        });
        let outcome = f.request(envoy_headers(req), *at).map_err(|e| e.to_string())?;
        let filtered = outcome.local_response.map(|r| {
            if r.grpc_status >= 0 {
                let (rule, message) = r.body.split_once(": ").unwrap_or(("", ""));
                (rule.to_string(), r.grpc_status as u32, message.to_string())
            } else {
                let body: Value = serde_json::from_str(&r.body).unwrap_or_default();
                (
                    body["rule"].as_str().unwrap_or("").to_string(),
                    r.status,
                    body["message"].as_str().unwrap_or("").to_string(),
                )
            }
        });
        if native != filtered {
            return Err(format!("request {i} {} {}: native {native:?}, filter {filtered:?}", req.method, req.path));
        }
    }
    Ok(())
}

#[test]
fn corpus_objects_review_identically_in_the_kubewarden_module() {
    let m = kubewarden();
    let mut compared = 0;
    for case in load_corpus().unwrap().iter().filter(|c| !c.objects.is_empty()) {
        let native = native_findings(&case.objects, case.rules.as_ref(), &case.namespace);
        let wasm = wasm_findings(&m, &case.objects, case.rules.as_ref(), &case.namespace);
        assert_eq!(native, wasm, "{}", case.source);
        compared += native.len();
    }
    assert!(compared > 50, "only {compared} findings compared");
}

#[test]
fn corpus_requests_decide_identically_in_the_envoy_filter() {
    for case in load_corpus().unwrap().iter().filter(|c| !c.requests.is_empty()) {
        let rules = match &case.rules {
            Some(doc) => doc.to_string(),
            None => policy_core::DEFAULT_RULES_YAML.to_string(),
        };
        let requests: Vec<(Request, u64)> =
            case.requests.iter().map(|r| (serde_json::from_value(r.request.clone()).unwrap(), r.at_ms)).collect();
        compare_requests(&rules, &requests).unwrap_or_else(|e| panic!("{}: {e}", case.source));
    }
}

fn request() -> impl Strategy<Value = (Request<'static>, u64)> {
    (
        prop::sample::select(vec!["GET", "POST", "DELETE", "HEAD"]),
        prop::sample::select(vec!["/", "/api/orders", "/admin/x", "/pkg.Svc/M?x=1"]),
        prop::collection::vec(
            (
                prop::sample::select(vec!["x-tenant", "x-debug", "content-type", "te", "x-request-id", "cookie"]),
                "[a-z0-9/+.-]{0,40}",
            ),
            0..6,
        ),
        0u64..5_000,
    )
        .prop_map(|(m, p, h, at)| {
            (
                Request {
                    method: m.into(),
                    path: p.into(),
                    authority: "".into(),
                    headers: h.into_iter().map(|(k, v)| (k.to_string().into(), v.into())).collect(),
                },
                at,
            )
        })
}

const HTTP_RULES: &str = "apiVersion: meshguard.dev/v1alpha1
kind: RuleSet
metadata: {name: generated}
spec:
  rules:
  - {id: tenant, check: http-tenant-header, params: {allowed: [shop, pay]}, when: {pathPrefix: /api}}
  - {id: debug, check: http-deny-header, action: warn, params: {header: x-debug, pattern: '^1'}}
  - {id: admin, check: http-allowed-methods, params: {paths: [{prefix: /admin, methods: [GET]}]}}
  - {id: limits, check: http-header-limits, status: 431, params: {maxCount: 4, maxValueBytes: 30}}
  - {id: grpc, check: http-grpc-shape}
  - {id: rate, check: http-local-rate-limit, params: {key: 'header:x-tenant', tokenBucket: {maxTokens: 3, tokensPerFill: 1, fillInterval: 500ms}}}
";

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn generated_manifests_review_identically(objects in prop::collection::vec(prop_oneof![service(), workload(), istio_object()], 1..12)) {
        thread_local! { static M: WapcModule = kubewarden(); }
        let native = native_findings(&objects, None, "default");
        let wasm = M.with(|m| wasm_findings(m, &objects, None, "default"));
        prop_assert_eq!(native, wasm);
    }

    #[test]
    fn generated_requests_decide_identically(mut requests in prop::collection::vec(request(), 1..20)) {
        requests.sort_by_key(|(_, at)| *at);
        prop_assert_eq!(compare_requests(HTTP_RULES, &requests), Ok(()));
    }
}
