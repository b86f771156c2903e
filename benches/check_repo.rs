//! The 10,000-object repo end to end (read, parse, review, locate) as `meshguard check` does it,
//! with the native and the wasm engine. Per-object and per-request figures, and regorus over the
//! same files, are in side_by_side.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use meshguard_benches::repo_files;
use policy_core::{Action, Policy};

// The allocator the `meshguard` binary uses, so in-process figures match the CLI's.
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
    let native = host_runner::engine::Reviewer::Native(Policy::default_rules().expect("default rules"));
    let mut reviewers = vec![("check_10k_objects_default_rules/native", native)];
    // The deployed Kubewarden module in host-runner's wasmtime host, when scripts/build-wasm.sh built it,
    // under the limits `meshguard check` runs it with (a watched deadline, no fuel metering);
    // with the small memory reservations meshguard picks under an address-space limit (`ulimit -v`),
    // where every memory access is bounds-checked; and with `--fuel`, whose metering is compiled in.
    if let Ok(bytes) = std::fs::read(meshguard_tests::envoy::repo_root().join("dist/meshguard-kubewarden.wasm")) {
        let one_shot = host_runner::wasm::Limits::one_shot();
        let metered = host_runner::wasm::Limits { fuel: Some(200_000_000_000), ..one_shot };
        for (name, limits, limited) in [
            ("check_10k_objects_default_rules/wasm", one_shot, false),
            ("check_10k_objects_default_rules/wasm_small_reservations", one_shot, true),
            ("check_10k_objects_default_rules/wasm_fuel", metered, false),
        ] {
            let engine = host_runner::wasm::engine_for(&limits, limited).expect("engine");
            let (module, _) = host_runner::wasm::compile_cached(&engine, &bytes, None).expect("compile");
            let module = host_runner::wasm::WapcModule::new(&engine, &module, limits).expect("link");
            reviewers.push((
                name,
                host_runner::engine::Reviewer::Wasm {
                    module: std::sync::Arc::new(module),
                    rules: serde_json::Value::Null,
                    policy: Policy::default_rules().expect("rules"),
                },
            ));
        }
    }
    let mut g = c.benchmark_group("repo");
    g.sample_size(10);
    g.throughput(Throughput::Elements(10_000));
    for (name, reviewer) in &reviewers {
        g.bench_function(*name, |b| {
            // `meshguard check` exits without freeing the parsed repo (`Report::parsed`), so its
            // drop is left out of the time as the CLI leaves it out of its run.
            b.iter_with_large_drop(|| {
                let report = host_runner::check::run(reviewer, &paths, "default", Action::Deny).expect("check");
                assert_eq!(report.summary.objects, 10_000);
                report
            })
        });
    }
    // `meshguard fix` without --write over the same repo: the review, then each fix written into
    // a copy of its file's text and read back (the goal: within 2x of `check`).
    let native = host_runner::engine::Reviewer::Native(Policy::default_rules().expect("default rules"));
    g.bench_function("fix_10k_objects_default_rules/native", |b| {
        b.iter_with_large_drop(|| {
            let report = host_runner::fix::run(&native, &paths, "default", &[], false).expect("fix");
            assert!(!report.changed.is_empty(), "the repo has fixable findings");
            report
        })
    });
    g.finish();
}

criterion_group!(benches, repo);
criterion_main!(benches);
