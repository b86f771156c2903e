//! meshguard and the engines users would pick instead, on the same work in one run:
//! policy-core natively, the deployed modules in host-runner's wasmtime host and in the `wapc`
//! host stack, the same rules in Rego (regorus) and in CEL (cel-interpreter); per object, per
//! rule, per request and over a 10,000-object repo. The peers are held to the same decisions by
//! benches/tests/peers_parity.rs; the asserts here keep each timed call honest.
//! `scripts/bench.sh` runs this and turns the numbers into BENCHMARKS.md.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode, Throughput};
use meshguard_benches::peers::cel::{to_cel, CelPeer};
use meshguard_benches::peers::{rego_input, RegoPeer, REGO_QUERY};
use meshguard_benches::{
    object_workloads, repo_files, team_file, typical_deployment, typical_request, typical_request_headers, HTTP_RULES,
};
use meshguard_tests::envoy::built_module;
use policy_core::{Input, MemoryBuckets, Policy};
use serde_json::{json, Value};
use std::hint::black_box;

// The allocator the `meshguard` binary uses, so in-process figures match the CLI's; the peers
// measured here run on it too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::time::Duration;

fn admission_payload(object: &Value) -> Vec<u8> {
    let ns = object["metadata"]["namespace"].as_str().unwrap_or("default");
    let request = json!({"uid": "b", "operation": "CREATE", "namespace": ns, "object": object,
                         "kind": {"group": "", "version": "v1", "kind": object["kind"]}});
    json!({"request": request, "settings": {}}).to_string().into_bytes()
}

fn accepted(answer: &[u8]) -> bool {
    serde_json::from_slice::<Value>(answer).is_ok_and(|v| v["accepted"] == true)
}

fn host_runner_module(path: &str) -> Option<host_runner::wasm::WapcModule> {
    let bytes = std::fs::read(built_module(path).ok()?).ok()?;
    let engine = host_runner::wasm::engine(&host_runner::wasm::Limits::one_shot()).expect("engine");
    let (module, _) = host_runner::wasm::compile_cached(&engine, &bytes, None).expect("compile");
    Some(host_runner::wasm::WapcModule::new(&engine, &module, host_runner::wasm::Limits::one_shot()).expect("link"))
}

fn objects(c: &mut Criterion) {
    let policy = Policy::default_rules().expect("default rules");
    let rego = RegoPeer::new().expect("rego");
    let cel = CelPeer::new().expect("cel");
    let wasm = host_runner_module("dist/meshguard-kubewarden.wasm");
    let wapc_host = built_module("dist/meshguard-kubewarden.wasm").ok().map(|path| {
        let bytes = std::fs::read(path).expect("read module");
        let engine =
            wasmtime_provider::WasmtimeEngineProviderBuilder::new().module_bytes(&bytes).build().expect("engine");
        wapc::WapcHost::new(Box::new(engine), None).expect("wapc host")
    });
    for (workload, objects) in object_workloads() {
        let mut g = c.benchmark_group(format!("object/{workload}"));
        g.throughput(Throughput::Elements(objects.len() as u64));
        assert!(policy.review(&Input::new(&objects, "default")).is_empty(), "{workload} is compliant");
        g.bench_function("native", |b| {
            b.iter(|| black_box(policy.review(&Input::new(black_box(&objects), "default"))))
        });

        let payloads: Vec<Vec<u8>> = objects.iter().map(admission_payload).collect();
        if let Some(module) = &wasm {
            assert!(payloads.iter().all(|p| module.call("validate", p).is_ok_and(|a| accepted(&a))));
            g.bench_function("wasmtime", |b| {
                b.iter(|| {
                    payloads.iter().map(|p| module.call("validate", black_box(p)).expect("call").len()).sum::<usize>()
                })
            });
        }
        if let Some(host) = &wapc_host {
            assert!(payloads.iter().all(|p| host.call("validate", p).is_ok_and(|a| accepted(&a))));
            g.bench_function("wapc", |b| {
                b.iter(|| {
                    payloads.iter().map(|p| host.call("validate", black_box(p)).expect("call").len()).sum::<usize>()
                })
            });
        }

        let mut engine = rego.clone();
        let input = rego_input(&objects, "default");
        let result = engine.eval_input(input.clone()).expect("rego eval");
        assert_eq!(result.as_set().map(|s| s.len()).unwrap_or(0), 0, "{workload}: rego agrees it is compliant");
        g.bench_function("regorus", |b| {
            b.iter_batched(|| input.clone(), |i| black_box(engine.eval_input(i).expect("eval")), BatchSize::SmallInput)
        });
        // regorus's ahead-of-time path (Engine::compile_with_entrypoint), its fastest documented one.
        let mut compiler = rego.clone();
        let compiled = compiler.compile(REGO_QUERY).expect("compile rego");
        g.bench_function("regorus_compiled", |b| {
            b.iter_batched(
                || input.clone(),
                |i| black_box(compiled.eval_with_input(i).expect("eval")),
                BatchSize::SmallInput,
            )
        });

        let cel_objects: Vec<_> = objects.iter().map(to_cel).collect();
        let no_namespace = to_cel(&Value::Null);
        assert!(cel_objects.iter().all(|o| cel.review(o, &no_namespace, "team-1").is_ok_and(|f| f.is_empty())));
        g.bench_function("cel", |b| {
            b.iter(|| {
                cel_objects
                    .iter()
                    .map(|o| cel.review(black_box(o), &no_namespace, "team-1").expect("cel").len())
                    .sum::<usize>()
            })
        });
        g.finish();
    }
}

/// Each default rule alone over one team namespace (10 objects), and the whole set.
fn rules(c: &mut Criterion) {
    let objects: Vec<Value> =
        policy_core::yaml::parse_documents(&team_file(1)).expect("team file").into_iter().map(|d| d.value).collect();
    let mut doc: Value = serde_json::from_str(policy_core::policy::DEFAULT_RULES_JSON).expect("default rules json");
    let all_rules = doc["spec"]["rules"].as_array().cloned().unwrap_or_default();
    let mut g = c.benchmark_group("rule");
    g.throughput(Throughput::Elements(objects.len() as u64));
    let whole = Policy::from_value(&doc).expect("default rules");
    g.bench_function("default-rule-set", |b| {
        b.iter(|| black_box(whole.review(&Input::new(black_box(&objects), "default"))))
    });
    for rule in all_rules.iter().filter(|r| !r["check"].as_str().unwrap_or("").starts_with("http-")) {
        doc["spec"]["rules"] = json!([rule]);
        let policy = Policy::from_value(&doc).expect("one rule");
        let id = rule["id"].as_str().expect("rule id");
        g.bench_function(id, |b| b.iter(|| black_box(policy.review(&Input::new(black_box(&objects), "default")))));
    }
    g.finish();
}

fn requests(c: &mut Criterion) {
    let policy = Policy::from_text(HTTP_RULES).expect("http rules");
    let req = typical_request();
    let mut g = c.benchmark_group("request/12_headers_10_rules");
    g.bench_function("native", |b| {
        b.iter_batched_ref(
            MemoryBuckets::default,
            |buckets| {
                let d = policy.decide(black_box(&req), 1_000, buckets).expect("decide");
                assert!(d.denied.is_none());
                d
            },
            BatchSize::SmallInput,
        )
    });
    // The Envoy filter artifact in host-runner's proxy-wasm host: one whole stream per iteration
    // (context create, request headers, response headers, done, delete), and the empty filter
    // under the same host, so their difference is meshguard's own work.
    let engine = host_runner::wasm::engine(&host_runner::wasm::Limits::one_shot()).expect("engine");
    for (name, path, config) in [
        ("wasmtime", "dist/meshguard-envoy.wasm", HTTP_RULES.as_bytes()),
        ("wasmtime_empty_filter", "target/wasm-bench/noop-filter.wasm", &b""[..]),
        ("wasmtime_empty_filter_reading_headers", "target/wasm-bench/noop-filter.wasm", &b"read-headers"[..]),
    ] {
        let Some(bytes) = built_module(path).ok().and_then(|p| std::fs::read(p).ok()) else { continue };
        let (module, _) = host_runner::wasm::compile_cached(&engine, &bytes, None).expect("compile");
        let mut filter =
            host_runner::wasm::proxy::ProxyFilter::new(&engine, &module, config, host_runner::wasm::Limits::one_shot())
                .expect("filter");
        let headers = typical_request_headers();
        let mut now = 1_000u64;
        assert!(filter.request(headers.clone(), now).expect("request").local_response.is_none(), "{name} allows it");
        g.bench_function(name, |b| {
            b.iter_batched(
                || headers.clone(),
                |h| {
                    now += 1;
                    black_box(filter.request(h, now).expect("request"))
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

/// The 10,000-object repo with regorus as conftest would run it: every file read, parsed and
/// evaluated, on both cores. meshguard's own figures for the same files come from check_repo.
fn repo_regorus(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut paths = Vec::new();
    for (name, text) in repo_files(10_000) {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, text).expect("write");
        paths.push(path);
    }
    let native_findings = {
        let r = host_runner::engine::Reviewer::Native(Policy::default_rules().expect("rules"));
        host_runner::check::run(&r, &[dir.path().to_path_buf()], "default", policy_core::Action::Deny)
            .expect("check")
            .findings
            .len()
    };
    let rego = RegoPeer::new().expect("rego");
    let run = |paths: &[std::path::PathBuf]| -> usize {
        std::thread::scope(|s| {
            let workers: Vec<_> = paths
                .chunks(paths.len().div_ceil(2))
                .map(|chunk| {
                    let mut engine = rego.clone();
                    s.spawn(move || {
                        chunk
                            .iter()
                            .map(|p| {
                                let text = std::fs::read_to_string(p).expect("read");
                                let docs = policy_core::yaml::parse_documents(&text).expect("parse");
                                let objects: Vec<Value> = docs.into_iter().map(|d| d.value).collect();
                                let found = engine.eval(&objects, "default").expect("eval");
                                found.as_set().map(|s| s.len()).unwrap_or(0)
                            })
                            .sum::<usize>()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().expect("worker")).sum()
        })
    };
    assert_eq!(run(&paths), native_findings, "regorus finds what meshguard finds in the repo");
    let mut g = c.benchmark_group("repo");
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("check_10k_objects_default_rules/regorus", |b| b.iter(|| black_box(run(&paths))));
    g.finish();
}

/// A team's CEL rule on one Deployment, next to the same rule built in (`field-range`), and next to
/// CEL engines binding the object the way their docs show: the `cel` crate's `add_variable` (serde),
/// and cel-interpreter 0.10 as the peers run it. All start from the parsed JSON object.
fn cel_rule(c: &mut Criterion) {
    const EXPRESSION: &str = "object.spec.replicas <= 5";
    let objects = vec![typical_deployment()];
    let rule_set = |rule: Value| {
        Policy::from_value(&json!({"apiVersion": "meshguard.dev/v1alpha1", "kind": "RuleSet",
            "metadata": {"name": "one"}, "spec": {"rules": [rule]}}))
        .expect("one-rule set")
    };
    let kinds = json!([{"apiGroups": ["apps"], "kinds": ["Deployment"]}]);
    let builtin = rule_set(json!({"id": "replicas", "check": "field-range", "match": {"kinds": kinds},
        "params": {"path": "spec.replicas", "max": 5}}));
    let cel_rule = rule_set(json!({"id": "replicas", "check": "cel", "match": {"kinds": kinds},
        "params": {"expression": EXPRESSION}}));
    let mut g = c.benchmark_group("cel-rule/deployment");
    g.throughput(Throughput::Elements(1));
    for (name, policy) in [("builtin", &builtin), ("meshguard_cel", &cel_rule)] {
        assert!(policy.review(&Input::new(&objects, "default")).is_empty(), "{name}: compliant");
        g.bench_function(name, |b| b.iter(|| black_box(policy.review(&Input::new(black_box(&objects), "default")))));
    }

    let env = std::sync::Arc::new(cel::Env::stdlib());
    let program = env.compile(EXPRESSION).expect("cel compile");
    let object = &objects[0];
    let run_cel = |object: &Value| {
        let mut ctx = cel::Context::with_env(std::sync::Arc::clone(&env));
        ctx.add_variable("object", object).expect("bind");
        program.execute(&ctx)
    };
    assert_eq!(run_cel(object), Ok(cel::Value::Bool(true)));
    g.bench_function("cel_add_variable", |b| b.iter(|| black_box(run_cel(black_box(object)))));

    let peer_program = cel_interpreter::Program::compile(EXPRESSION).expect("cel-interpreter compile");
    let run_peer = |object: &Value| {
        let mut ctx = cel_interpreter::Context::default();
        ctx.add_variable("object", object).expect("bind");
        peer_program.execute(&ctx)
    };
    assert_eq!(run_peer(object).ok(), Some(cel_interpreter::Value::Bool(true)));
    g.bench_function("cel_interpreter", |b| b.iter(|| black_box(run_peer(black_box(object)))));
    g.finish();
}

fn config() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3))
}

criterion_group! {name = benches; config = config(); targets = objects, rules, cel_rule, requests, repo_regorus}
criterion_main!(benches);
