//! One typical Deployment AdmissionRequest against the whole default rule set: natively, and
//! through each admission host with meshguard's module and with a floor module (the same ABI,
//! accepting without evaluating), so each host's own cost is visible. Then OPA's JavaScript SDK,
//! timed by its own process. Needs `scripts/build-wasm.sh` (and `npm ci --prefix tests/opa-js`).

use criterion::{Criterion, SamplingMode};
use meshguard_benches::typical_deployment;
use meshguard_tests::envoy::{built_module, repo_root};
use policy_core::Policy;
use serde_json::{json, Value};
use std::hint::black_box;

// The allocator the `meshguard` binary (and so the webhook) uses, so in-process figures match it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use meshguard_tests::rego_host;

fn request() -> Value {
    json!({"uid": "b", "kind": {"group": "apps", "version": "v1", "kind": "Deployment"}, "operation": "CREATE",
           "namespace": "team-1", "object": typical_deployment()})
}

fn native(c: &mut Criterion) {
    let policy = Policy::default_rules().expect("rules");
    let req = request();
    c.bench_function("admission/native", |b| b.iter(|| black_box(policy.review_admission(black_box(&req)))));
}

/// `fieldsV1` as server-side field tracking writes it for `value`: `f:<key>` per map key.
fn fields_v1(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (format!("f:{k}"), fields_v1(v))).collect()),
        _ => json!({}),
    }
}

/// The AdmissionReview bytes an API server sends a webhook for `object` on CREATE: with the
/// applying client's `managedFields` entry, an empty `status`, `userInfo` and `options`.
fn review_bytes(mut object: Value, resource: &str) -> Vec<u8> {
    let tracked = json!({"f:metadata": {"f:labels": fields_v1(&object["metadata"]["labels"])}, "f:spec": fields_v1(&object["spec"])});
    object["metadata"]["managedFields"] = json!([{"apiVersion": object["apiVersion"], "fieldsType": "FieldsV1",
        "fieldsV1": tracked, "manager": "argocd-controller", "operation": "Update", "time": "2026-11-26T10:00:00Z"}]);
    object["status"] = json!({});
    let kind = object["kind"].clone();
    let group = object["apiVersion"].as_str().and_then(|v| v.split_once('/')).map_or("", |(g, _)| g).to_string();
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": group, "version": "v1", "kind": kind},
        "resource": {"group": group, "version": "v1", "resource": resource},
        "name": object["metadata"]["name"], "namespace": "team-1", "operation": "CREATE",
        "userInfo": {"username": "system:serviceaccount:argocd:argocd-application-controller",
                     "uid": "1f7d7c4a-2b1e-4c3a-9f1e-0d6a3c9b8e21",
                     "groups": ["system:serviceaccounts", "system:serviceaccounts:argocd", "system:authenticated"]},
        "object": object, "oldObject": null, "dryRun": false,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions", "fieldManager": "argocd-controller"}}})
    .to_string()
    .into_bytes()
}

/// JSON in, decision out, natively: the AdmissionReview's bytes decoded for the rule set
/// (`Policy::parse_admission`) and reviewed, next to parsing the same bytes into a
/// `serde_json::Value` tree alone (what any tree-based engine pays before its first rule), and
/// the full parse followed by the review.
fn json_in(c: &mut Criterion) {
    let policy = Policy::default_rules().expect("rules");
    let service = meshguard_benches::team_objects(&["Service"]).into_iter().next().expect("a Service");
    for (workload, bytes) in [
        ("deployment", review_bytes(typical_deployment(), "deployments")),
        ("service", review_bytes(service, "services")),
    ] {
        let mut g = c.benchmark_group(format!("admission-json/{workload}"));
        g.bench_function("value_parse", |b| {
            b.iter(|| black_box(serde_json::from_slice::<Value>(black_box(&bytes)).expect("json")))
        });
        let full: Value = serde_json::from_slice(&bytes).expect("json");
        let decoded = policy.parse_admission(&bytes).expect("json");
        assert_eq!(policy.review_admission(&decoded), policy.review_admission(&full), "{workload}: same verdict");
        g.bench_function("meshguard", |b| {
            b.iter(|| {
                let review = policy.parse_admission(black_box(&bytes)).expect("json");
                black_box(policy.review_admission(&review))
            })
        });
        g.bench_function("full_parse_then_review", |b| {
            b.iter(|| {
                let review: Value = serde_json::from_slice(black_box(&bytes)).expect("json");
                black_box(policy.review_admission(&review))
            })
        });
        g.finish();
    }
}

/// The `wapc` + `wasmtime-provider` host running the module at `path`.
fn wapc_host(path: &str) -> wapc::WapcHost {
    let bytes = std::fs::read(built_module(path).expect("module")).expect("read");
    let engine = wasmtime_provider::WasmtimeEngineProviderBuilder::new().module_bytes(&bytes).build().expect("engine");
    wapc::WapcHost::new(Box::new(engine), None).expect("host")
}

type OpaHost = (wasmtime::Store<()>, opa_wasm::Policy<opa_wasm::DefaultContext>);

/// OPA's Rust SDK running the module at `path`, its data empty.
fn opa_host(rt: &tokio::runtime::Runtime, path: &str) -> OpaHost {
    let engine = wasmtime::Engine::default();
    let module = wasmtime::Module::new(&engine, std::fs::read(built_module(path).expect("module")).expect("read"))
        .expect("module");
    let mut store = wasmtime::Store::new(&engine, ());
    let policy = rt.block_on(async {
        let runtime = opa_wasm::Runtime::new(&mut store, &module).await.expect("runtime");
        runtime.with_data(&mut store, &json!({})).await.expect("data")
    });
    (store, policy)
}

fn wapc(c: &mut Criterion) {
    let payload = json!({"request": request(), "settings": {}}).to_string();
    let mut g = c.benchmark_group("admission/wapc");
    g.sampling_mode(SamplingMode::Flat);
    for (name, path) in
        [("meshguard", "dist/meshguard-kubewarden.wasm"), ("floor", "target/wasm-bench/kubewarden-floor.wasm")]
    {
        let host = wapc_host(path);
        let answer: Value =
            serde_json::from_slice(&host.call("validate", payload.as_bytes()).expect("call")).expect("json");
        assert_eq!(answer["accepted"], true, "{name}: the benchmark Deployment is compliant: {answer}");
        g.bench_function(name, |b| {
            b.iter(|| black_box(host.call("validate", black_box(payload.as_bytes())).expect("call")))
        });
    }
    g.finish();
}

fn opa_rust(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("tokio");
    let input = json!({"review": request(), "parameters": {}});
    let mut g = c.benchmark_group("admission/opa-wasm-rust");
    g.sampling_mode(SamplingMode::Flat);
    for (name, path) in [("meshguard", "dist/meshguard-opa.wasm"), ("floor", "target/wasm-bench/opa-floor.wasm")] {
        let (mut store, policy) = opa_host(&rt, path);
        let first: Value = rt.block_on(policy.evaluate(&mut store, "meshguard/violation", &input)).expect("eval");
        assert_eq!(first, json!([{"result": []}]), "{name}");
        g.bench_function(name, |b| {
            b.iter(|| {
                let v: Value =
                    rt.block_on(policy.evaluate(&mut store, "meshguard/violation", black_box(&input))).expect("eval");
                v
            })
        });
    }
    g.finish();
}

/// Kubewarden's Rego execution modes, called as policy-server calls them (tests/rego_host.rs): a
/// fresh instance per request, so the RuleSet is compiled on every request too.
fn kubewarden_rego(c: &mut Criterion) {
    use rego_host::{Mode, RegoHost};
    let req = request();
    let mut g = c.benchmark_group("admission/kubewarden-rego");
    g.sampling_mode(SamplingMode::Flat);
    for (name, path, mode) in [
        ("gatekeeper", "dist/meshguard-opa.wasm", Mode::Gatekeeper),
        ("gatekeeper-floor", "target/wasm-bench/opa-floor.wasm", Mode::Gatekeeper),
        ("opa", "dist/meshguard-opa-kubewarden.wasm", Mode::Opa),
    ] {
        let host = RegoHost::new(&std::fs::read(built_module(path).expect("module")).expect("read")).expect("host");
        let answer = host.validate(mode, &json!({}), &req, None);
        assert!(answer.allowed, "{name}: the benchmark Deployment is compliant: {answer:?}");
        g.bench_function(name, |b| b.iter(|| black_box(host.validate(mode, &json!({}), black_box(&req), None))));
    }
    g.finish();
}

/// OPA's JavaScript SDK, in Node: mean of many evaluations after a warm-up, per module.
fn opa_js() {
    let dir = repo_root().join("tests/opa-js");
    let mut results = serde_json::Map::new();
    let cases = tempfile::NamedTempFile::new().expect("tmp");
    let case = json!([{"name": "typical deployment", "request": request(), "rules": null, "allowed": true, "deny": [], "warn": []}]);
    std::fs::write(cases.path(), case.to_string()).expect("write");
    for (name, path) in [("meshguard", "dist/meshguard-opa.wasm"), ("floor", "target/wasm-bench/opa-floor.wasm")] {
        let Ok(module) = built_module(path) else { continue };
        let out = std::process::Command::new("node")
            .arg(dir.join("parity.mjs"))
            .arg(module)
            .arg(cases.path())
            .args(["--bench", "20000"])
            .output();
        match out {
            Ok(o) => {
                let text = String::from_utf8_lossy(&o.stdout);
                let ns = text.lines().find_map(|l| l.strip_prefix("bench ns_per_eval ")).unwrap_or("?");
                println!("admission/opa-js/{name}: {ns} ns per evaluate (node, mean of 20000)");
                if let Ok(ns) = ns.parse::<f64>() {
                    results.insert(name.to_string(), json!(ns));
                }
            }
            Err(e) => println!("admission/opa-js/{name}: node not available: {e}"),
        }
    }
    // For bench-report, which reads criterion's own files for everything else.
    let out = repo_root().join("target/bench/opa-js.json");
    if std::fs::create_dir_all(repo_root().join("target/bench")).is_ok() {
        let _ = std::fs::write(out, serde_json::Value::Object(results).to_string());
    }
}

/// The JavaScript package (bindings/js) in Node: one AdmissionRequest through `reviewAdmission`,
/// and a team's manifests through `check`, per object.
fn js_package() {
    let package = repo_root().join("bindings/js");
    if !package.join("pkg/node/meshguard_js_bg.wasm").exists() {
        println!("js: bindings/js/pkg not built (scripts/build-js.sh); skipped");
        return;
    }
    let request_file = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(request_file.path(), request().to_string()).expect("write");
    let manifests = tempfile::NamedTempFile::new().expect("tmp");
    let text = meshguard_benches::team_file(1);
    let objects = policy_core::yaml::parse_documents(&text).map(|d| d.len()).unwrap_or(0);
    std::fs::write(manifests.path(), &text).expect("write");
    let out = std::process::Command::new("node")
        .arg(package.join("bench.mjs"))
        .arg(request_file.path())
        .arg(manifests.path())
        .arg(objects.to_string())
        .output();
    let mut results = serde_json::Map::new();
    match out {
        Ok(o) if o.status.success() => {
            for line in String::from_utf8_lossy(&o.stdout).lines() {
                if let Some((name, ns)) = line.strip_prefix("bench ").and_then(|l| l.split_once(' ')) {
                    println!("js/{name}: {ns} ns (node)");
                    if let Ok(ns) = ns.parse::<f64>() {
                        results.insert(name.to_string(), json!(ns));
                    }
                }
            }
            results.insert("objects".into(), json!(objects));
        }
        Ok(o) => println!("js: node failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => println!("js: node not available: {e}"),
    }
    let size = std::fs::metadata(package.join("pkg/web/meshguard_js_bg.wasm")).map(|m| m.len()).unwrap_or(0);
    results.insert("wasm_bytes".into(), json!(size));
    if std::fs::create_dir_all(repo_root().join("target/bench")).is_ok() {
        let _ = std::fs::write(repo_root().join("target/bench/js.json"), Value::Object(results).to_string());
    }
}

/// meshguard and its floor timed in alternating rounds (which goes first alternates as well), so a
/// drift in the shared machine's speed hits both alike: medians of the rounds' times and of their
/// ratios. Criterion times one module and then the other, seconds apart.
fn interleaved(mut meshguard: impl FnMut(), mut floor: impl FnMut()) -> Value {
    const ROUNDS: usize = 41;
    const CALLS: usize = 2000;
    let time = |f: &mut dyn FnMut()| {
        let start = std::time::Instant::now();
        for _ in 0..CALLS {
            f();
        }
        start.elapsed().as_nanos() as f64 / CALLS as f64
    };
    let (mut m, mut f, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (a, b) = if round % 2 == 0 {
            let a = time(&mut meshguard);
            (a, time(&mut floor))
        } else {
            let b = time(&mut floor);
            (time(&mut meshguard), b)
        };
        m.push(a);
        f.push(b);
        ratios.push(a / b);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    json!({"meshguard": median(m), "floor": median(f), "ratio": median(ratios), "rounds": ROUNDS, "calls": CALLS})
}

/// The waPC and OPA (Rust SDK) hosts against their floors, interleaved; for bench-report.
fn floors_interleaved() {
    let mut results = serde_json::Map::new();
    let payload = json!({"request": request(), "settings": {}}).to_string();
    let (m, f) = (wapc_host("dist/meshguard-kubewarden.wasm"), wapc_host("target/wasm-bench/kubewarden-floor.wasm"));
    let call = |host: &wapc::WapcHost| black_box(host.call("validate", black_box(payload.as_bytes())).expect("call"));
    results.insert("admission/wapc".into(), interleaved(|| drop(call(&m)), || drop(call(&f))));

    let rt = tokio::runtime::Builder::new_current_thread().build().expect("tokio");
    let input = json!({"review": request(), "parameters": {}});
    let (mut m, mut f) = (opa_host(&rt, "dist/meshguard-opa.wasm"), opa_host(&rt, "target/wasm-bench/opa-floor.wasm"));
    let eval = |(store, policy): &mut OpaHost| {
        let v: Value = rt.block_on(policy.evaluate(store, "meshguard/violation", black_box(&input))).expect("eval");
        black_box(v);
    };
    results.insert("admission/opa-wasm-rust".into(), interleaved(|| eval(&mut m), || eval(&mut f)));
    for (group, r) in &results {
        println!("{group} interleaved: {r}");
    }
    if std::fs::create_dir_all(repo_root().join("target/bench")).is_ok() {
        let out = repo_root().join("target/bench/admission-interleaved.json");
        let _ = std::fs::write(out, Value::Object(results).to_string());
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    native(&mut c);
    json_in(&mut c);
    wapc(&mut c);
    opa_rust(&mut c);
    kubewarden_rego(&mut c);
    c.final_summary();
    floors_interleaved();
    opa_js();
    js_package();
}
