//! CEL conformance against suites others wrote: cel-spec's simple conformance files, the
//! Kubernetes CEL library and CRD validation tests, and cel-go's tests of the legacy
//! `string.format` the API server runs, turned into cases by
//! `scripts/cel-conformance/gen_*.py` (tests/cel-conformance/*/, each file naming its source repo,
//! path and commit). Every case passes, is skipped with the generator's reason (out of scope), or
//! is listed in tests/cel-conformance/expected-failures.txt with why; a listed case that starts
//! passing fails the run too, so the list only shrinks. tests/cel-conformance/out-of-scope.txt
//! names what meshguard does not aim at (files or cases), each with why. The pass rates per file go to
//! target/cel-conformance.json, which `scripts/cel-conformance/report.py` renders into
//! docs/cel-conformance.md.
#![cfg(feature = "cel")]

use policy_core::cel::conformance::{estimated_cost, evaluate, Failure};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/cel-conformance")
}

/// A typed value in one canonical form: doubles as f64, map entries sorted.
fn canonical(v: &Value) -> Value {
    match v.as_object().and_then(|m| m.iter().next()) {
        Some((tag, inner)) if tag == "double" => match inner.as_f64() {
            Some(f) => json!({"double": f}),
            None => v.clone(),
        },
        Some((tag, Value::Number(n))) if tag == "int" || tag == "uint" => json!({tag.as_str(): n.to_string()}),
        Some((tag, Value::Array(items))) if tag == "list" => {
            json!({"list": items.iter().map(canonical).collect::<Vec<_>>()})
        }
        Some((tag, Value::Array(entries))) if tag == "map" => {
            let mut entries: Vec<Value> = entries
                .iter()
                .map(|e| match e.as_array().map(Vec::as_slice) {
                    Some([k, v]) => json!([canonical(k), canonical(v)]),
                    _ => e.clone(),
                })
                .collect();
            entries.sort_by_key(|e| e[0].to_string());
            json!({"map": entries})
        }
        _ => v.clone(),
    }
}

/// `None` when the outcome is what the case expects, else what differs.
fn judge(expect: &Value, got: &Result<Value, Failure>) -> Option<String> {
    let value_is = |want: &Value| match got {
        Ok(v) if canonical(v) == canonical(want) => None,
        other => Some(format!("want {want}, got {other:?}")),
    };
    let (kind, want) = expect.as_object()?.iter().next()?;
    match kind.as_str() {
        "value" => value_is(want),
        "true" => value_is(&json!({"bool": true})),
        "false" => value_is(&json!({"bool": false})),
        "any_of" => {
            let options = want.as_array()?;
            match got {
                Ok(v) if options.iter().any(|o| canonical(o) == canonical(v)) => None,
                other => Some(format!("want one of {want}, got {other:?}")),
            }
        }
        "no_error" => got.as_ref().err().map(|e| format!("want a value, got {e:?}")),
        "eval_error" => match got {
            Err(Failure::Eval(_)) => None,
            other => Some(format!("want an evaluation error ({want}), got {other:?}")),
        },
        "compile_error" => match got {
            Err(Failure::Compile(_)) => None,
            other => Some(format!("want a compile error ({want}), got {other:?}")),
        },
        // At load or evaluation, as cel-go's own tests check it: the API server refuses at load
        // what its checks find there, and the rest fails when evaluated.
        "error_containing" => match got {
            Err(Failure::Compile(e) | Failure::Eval(e)) if want.as_str().is_some_and(|w| e.contains(w)) => None,
            other => Some(format!("want an error containing {want}, got {other:?}")),
        },
        other => Some(format!("an expectation this harness does not know: {other}")),
    }
}

#[derive(Default, serde::Serialize)]
struct FileTally {
    source: Value,
    cases: usize,
    passed: usize,
    skipped: usize,
    expected_failures: usize,
}

/// Debug builds' stack frames are many times a release build's: the suites' deepest expressions
/// (nested to the load-time limit) run on a thread with the main thread's 8 MiB, as the CLI does.
/// `nesting_at_the_limit_fits_a_small_stack` holds the release build to far less.
#[test]
fn upstream_cel_suites() {
    std::thread::Builder::new().stack_size(8 << 20).spawn(run_suites).unwrap().join().unwrap();
}

fn run_suites() {
    let dir = suite_dir();
    let known_path = dir.join("expected-failures.txt");
    let known: BTreeMap<String, String> = std::fs::read_to_string(&known_path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(" # ").map(|(id, why)| (id.trim().to_string(), why.trim().to_string())))
        .collect();
    // Out of scope beyond what the generators skip: whole files or single cases, each with why.
    let scope: BTreeMap<String, String> = std::fs::read_to_string(dir.join("out-of-scope.txt"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(" # ").map(|(id, why)| (id.trim().to_string(), why.trim().to_string())))
        .collect();
    let mut tallies: BTreeMap<String, FileTally> = BTreeMap::new();
    let (mut regressions, mut fixed, mut seen) = (Vec::new(), Vec::new(), BTreeSet::new());
    let mut skipped_reasons: BTreeMap<String, usize> = BTreeMap::new();
    for suite in ["cel-spec", "kubernetes", "cel-go"] {
        let Ok(entries) = std::fs::read_dir(dir.join(suite)) else { continue };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        for file in files {
            let name = format!("{suite}/{}", file.file_name().unwrap().to_string_lossy());
            let doc: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
            let tally = tallies.entry(name.clone()).or_default();
            tally.source = doc["source"].clone();
            for (i, case) in doc["cases"].as_array().into_iter().flatten().enumerate() {
                tally.cases += 1;
                let id = format!(
                    "{name}#{i} {}",
                    [case["section"].as_str(), case["name"].as_str()]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join("/")
                );
                let out_of_scope = scope.get(&name).or_else(|| scope.get(&id)).map(String::as_str);
                if let Some(why) = case["skip"].as_str().or(out_of_scope) {
                    tally.skipped += 1;
                    *skipped_reasons.entry(format!("{suite}: {why}")).or_default() += 1;
                    continue;
                }
                seen.insert(id.clone());
                let bindings = case["bindings"].as_object().cloned().unwrap_or_default();
                let expr = case["expr"].as_str().unwrap_or("");
                if std::env::var_os("CEL_CONFORMANCE_TRACE").is_some() {
                    eprintln!("{id}: {expr}");
                }
                let checked = !case["disable_check"].as_bool().unwrap_or(false);
                let got = std::panic::catch_unwind(|| evaluate(expr, &bindings, checked))
                    .unwrap_or_else(|_| Err(Failure::Eval("panicked".into())));
                // Kubernetes' cost tests also give the estimate the API server computes at load.
                let verdict = judge(&case["expect"], &got).or_else(|| {
                    let want = case["cost"]["estimated"].as_array()?;
                    let want = (want[0].as_u64()?, want[1].as_u64()?);
                    match estimated_cost(expr, &bindings) {
                        Ok(got) if got == want => None,
                        other => Some(format!("estimated cost {want:?} wanted, got {other:?}")),
                    }
                });
                match (verdict, known.contains_key(&id)) {
                    (None, false) => tally.passed += 1,
                    (None, true) => {
                        tally.passed += 1;
                        fixed.push(id);
                    }
                    (Some(_), true) => tally.expected_failures += 1,
                    (Some(why), false) => regressions.push(format!("{id} # {expr} → {why}")),
                }
            }
        }
    }
    let stale: Vec<&String> = known.keys().filter(|id| !seen.contains(*id)).collect();
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/cel-conformance.json");
    if let Some(parent) = out.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let report = json!({"files": tallies, "skipped": skipped_reasons});
    std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    assert!(!tallies.is_empty(), "no suites under {}: run scripts/cel-conformance/gen_*.py", dir.display());
    assert!(
        regressions.is_empty(),
        "{} case(s) fail that expected-failures.txt does not list:\n{}",
        regressions.len(),
        regressions.join("\n")
    );
    assert!(fixed.is_empty(), "these now pass: remove them from expected-failures.txt:\n{}", fixed.join("\n"));
    assert!(stale.is_empty(), "expected-failures.txt names cases that are not in the suites: {stale:?}");
}

/// The deepest expression a rule may hold (nested to the load-time limit) evaluates on a small
/// stack in an optimized build: a webhook worker's 2 MiB, and the wasm guest's 1 MiB, with room.
/// Debug builds' frames are many times larger, so there the bound is the main thread's 8 MiB.
#[test]
fn nesting_at_the_limit_fits_a_small_stack() {
    let depth = policy_core::cel::MAX_NESTING / 2;
    let expr = format!("{}7{}", "int(uint(".repeat(depth), "))".repeat(depth));
    let stack = if cfg!(debug_assertions) { 8 << 20 } else { 256 << 10 };
    let got = std::thread::Builder::new()
        .stack_size(stack)
        .spawn(move || evaluate(&expr, &serde_json::Map::new(), true))
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(got, Ok(json!({"int": "7"})));
}
