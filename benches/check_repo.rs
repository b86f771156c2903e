//! policy-core natively: the 10,000-object repo end to end (read, parse, review, locate) as
//! `meshguard check` does it, one admission-style object, and one HTTP request.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use meshguard_benches::{repo_files, typical_deployment, typical_request, HTTP_RULES};
use policy_core::{Action, Input, MemoryBuckets, Policy};
use std::hint::black_box;

// The allocator the `meshguard` binary uses, so in-process figures match the CLI's; the peers
// measured here run on it too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn repo(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in repo_files(10_000) {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    let paths = vec![dir.path().to_path_buf()];
    let native = host_runner::check::Reviewer::Native(Policy::default_rules().expect("default rules"));
    let mut reviewers = vec![("check_10k_objects_default_rules/native", native)];
    // The deployed Kubewarden module in host-runner's wasmtime host, when scripts/build-wasm.sh built it.
    if let Ok(bytes) = std::fs::read(meshguard_tests::envoy::repo_root().join("dist/meshguard-kubewarden.wasm")) {
        let engine = host_runner::wasm::engine().expect("engine");
        let (module, _) = host_runner::wasm::compile_cached(&engine, &bytes, None).expect("compile");
        let module = host_runner::wasm::WapcModule::new(&engine, &module, Default::default()).expect("link");
        reviewers.push((
            "check_10k_objects_default_rules/wasm",
            host_runner::check::Reviewer::Wasm {
                module: std::sync::Arc::new(module),
                rules: serde_json::Value::Null,
                policy: Policy::default_rules().expect("rules"),
            },
        ));
    }
    let mut g = c.benchmark_group("repo");
    g.sample_size(10);
    g.throughput(Throughput::Elements(10_000));
    for (name, reviewer) in &reviewers {
        g.bench_function(*name, |b| {
            b.iter(|| {
                let report = host_runner::check::run(reviewer, &paths, "default", Action::Deny).expect("check");
                assert_eq!(report.summary.objects, 10_000);
                black_box(report.findings.len())
            })
        });
    }
    g.finish();
}

fn per_object(c: &mut Criterion) {
    let policy = Policy::default_rules().expect("default rules");
    let objects = vec![typical_deployment()];
    c.bench_function("object/deployment_default_rules", |b| {
        b.iter(|| {
            let input = Input::new(black_box(&objects), "default");
            black_box(policy.review(&input))
        })
    });
}

fn per_request(c: &mut Criterion) {
    let policy = Policy::from_text(HTTP_RULES).expect("http rules");
    let req = typical_request();
    c.bench_function("request/11_http_rules", |b| {
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
}

criterion_group!(benches, repo, per_object, per_request);
criterion_main!(benches);
