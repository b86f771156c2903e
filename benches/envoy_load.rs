//! Load comparison for the Envoy filter, in one run on one machine: plain Envoy, Envoy with an
//! empty proxy-wasm filter (the floor any wasm filter pays), Envoy with meshguard (10 HTTP rules
//! and 1 rate limit) as the wasm filter and as the dynamic module, the empty dynamic module (its
//! floor), and the same checks with Envoy's RBAC + local_ratelimit filters and with a Lua filter
//! (benches/peers/), all with the same concurrency, driven by wrk on loopback with bounded
//! runs. Variants are interleaved over several rounds and the median round is reported, because a
//! shared 2-core machine drifts. Writes target/bench/envoy-load.json for `bench-report`.
//!
//! `cargo run --release -p meshguard-benches --bin envoy-load -- [--rounds N] [--seconds S] [--only ID,ID]`
//! (`--only empty,meshguard` measures just those variants, for quick comparisons of builds).
//! `--print-bootstrap ID ADMIN_PORT PORT` prints a variant's Envoy bootstrap and `--print-headers`
//! the request's headers, for `scripts/envoy-instructions.sh`, which counts instructions instead.

use meshguard_benches::peers::envoy::{lua, rbac};
use meshguard_benches::{http_rules_named, typical_headers, HTTP_RULES};
use meshguard_tests::envoy::{bootstrap, request, Envoy, Filter, Http, Options, Shell};
use std::process::Command;

#[derive(Clone, Copy, Default, Debug)]
struct Sample {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    requests: u64,
    /// Envoy's own CPU time (user + system) per request during the run: unlike 1/throughput it
    /// leaves out time the shared machine's hypervisor took away, so it drifts far less.
    cpu_us: f64,
    /// From starting Envoy to its admin `/ready` answering LIVE (polled every 10 ms): the filter's
    /// load and configuration included (V8 compiling the module, or dlopen and the RuleSet).
    ready_ms: f64,
}

/// User + system CPU time of a process in microseconds, from /proc (clock ticks of 10 ms).
fn process_cpu_us(pid: u32) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or("unreadable /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).ok_or("unreadable /proc stat");
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    Ok((ticks(11)? + ticks(12)?) * 10_000.0)
}

fn parse_latency_us(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = text.split_at(split);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "us" => n,
        "ms" => n * 1_000.0,
        "s" => n * 1_000_000.0,
        _ => return None,
    })
}

fn wrk(url: &str, headers: &[(String, String)], seconds: u32) -> Result<Sample, String> {
    // wrk on CPU 1, Envoy on CPU 0: the two do not fight over one core.
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "1", "wrk"]);
    cmd.args(["-t1", "-c4", &format!("-d{seconds}s"), "--latency"]);
    for (k, v) in headers {
        cmd.arg("-H").arg(format!("{k}: {v}"));
    }
    let out = cmd.arg(url).output().map_err(|e| format!("wrk (apt-get install wrk): {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut s = Sample::default();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [n, "requests", "in", ..] => s.requests = n.parse().map_err(|_| format!("bad count line: {line}"))?,
            ["Requests/sec:", n] => s.rps = n.parse().map_err(|_| format!("bad rps line: {line}"))?,
            ["50%", v] => s.p50_us = parse_latency_us(v).ok_or(format!("bad p50: {line}"))?,
            ["99%", v] => s.p99_us = parse_latency_us(v).ok_or(format!("bad p99: {line}"))?,
            _ => {}
        }
    }
    if text.contains("Non-2xx") || s.rps == 0.0 {
        return Err(format!("wrk saw errors or nothing:\n{text}"));
    }
    Ok(s)
}

fn median(mut xs: Vec<Sample>) -> Sample {
    xs.sort_by(|a, b| a.cpu_us.total_cmp(&b.cpu_us));
    xs[xs.len() / 2]
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: u32| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (rounds, seconds) = (flag("--rounds", 3), flag("--seconds", 5));
    let headers = typical_headers();
    // `--rules FILE` measures another RuleSet in meshguard's place (for profiling).
    let rules = match args.iter().position(|a| a == "--rules").and_then(|i| args.get(i + 1)) {
        Some(file) => std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?,
        None => HTTP_RULES.to_string(),
    };
    let wasm = |filter| Options::on(Shell::Wasm, filter);
    let variants = [
        ("plain", "plain Envoy", wasm(Filter::None)),
        ("empty", "Envoy + empty proxy-wasm filter (the floor)", wasm(Filter::Noop)),
        ("empty_lean", "Envoy + empty filter exporting only meshguard's callbacks", wasm(Filter::NoopLean)),
        ("empty_reading_headers", "Envoy + empty filter reading the header map", wasm(Filter::NoopReadingHeaders)),
        ("meshguard", "Envoy + meshguard (10 HTTP rules + 1 rate limit)", wasm(Filter::Rules(rules.clone()))),
        (
            "meshguard_named",
            "Envoy + meshguard's build fetching only the headers its rules name (the same rules but the header limits)",
            wasm(Filter::NamedHeaders(http_rules_named())),
        ),
        ("empty_dynamic", "Envoy + empty dynamic module (its floor)", wasm(Filter::DynamicFloor)),
        (
            "meshguard_dynamic",
            "Envoy + meshguard as a dynamic module (same rules)",
            Options::on(Shell::Dynamic, Filter::Rules(rules)),
        ),
        ("rbac", "Envoy + RBAC + local_ratelimit (same checks)", wasm(rbac().map_err(|e| format!("{e:#}"))?)),
        ("lua", "Envoy + Lua filter (same checks)", wasm(lua())),
    ];
    if args.iter().any(|a| a == "--print-headers") {
        println!("{}", serde_json::json!(headers));
        return Ok(());
    }
    if let Some(i) = args.iter().position(|a| a == "--print-bootstrap") {
        let usage = "--print-bootstrap ID ADMIN_PORT PORT";
        let id = args.get(i + 1).ok_or(usage)?;
        let port = |at: usize| args.get(at).and_then(|p| p.parse::<u16>().ok()).ok_or(usage);
        let (_, _, variant) = variants.iter().find(|(v, _, _)| v == id).ok_or_else(|| format!("no variant `{id}`"))?;
        let options =
            Options { concurrency: 1, generate_request_id: false, filter: variant.filter.clone(), ..*variant };
        println!("{}", bootstrap(&options, port(i + 2)?, port(i + 3)?)?);
        return Ok(());
    }
    let only: Option<Vec<&str>> =
        args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)).map(|v| v.split(',').collect());
    if let Some(unknown) = only.iter().flatten().find(|id| !variants.iter().any(|(v, _, _)| v == *id)) {
        let known: Vec<&str> = variants.iter().map(|(id, _, _)| *id).collect();
        return Err(format!("--only: no variant `{unknown}` (variants: {})", known.join(", ")));
    }
    let variants: Vec<_> =
        variants.into_iter().filter(|(id, _, _)| only.as_ref().is_none_or(|o| o.contains(id))).collect();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); variants.len()];
    for round in 0..rounds {
        for (i, (_, name, variant)) in variants.iter().enumerate() {
            let options = Options {
                concurrency: 1,
                cpu: Some(0),
                generate_request_id: false,
                filter: variant.filter.clone(),
                ..*variant
            };
            let started = std::time::Instant::now();
            let envoy = Envoy::start(&options)?;
            let ready_ms = started.elapsed().as_secs_f64() * 1e3;
            let url = envoy.url("/api/orders/42?expand=items");
            let check = request(&url, Http::H1, "GET", &headers)?;
            if check.status != 200 {
                return Err(format!("{name}: the benchmark request is not allowed: {check:?}"));
            }
            wrk(&url, &headers, 1)?; // warm-up
            let cpu_before = process_cpu_us(envoy.pid())?;
            let mut s = wrk(&url, &headers, seconds)?;
            let cpu = process_cpu_us(envoy.pid())? - cpu_before;
            s.cpu_us = cpu / s.requests.max(1) as f64;
            s.ready_ms = ready_ms;
            eprintln!(
                "round {}: {name}: {:.0} req/s, p50 {:.1} us, p99 {:.1} us, Envoy CPU {:.2} us per request",
                round + 1,
                s.rps,
                s.p50_us,
                s.p99_us,
                s.cpu_us
            );
            samples[i].push(s);
        }
    }
    // The round with the median CPU time per request stands for the variant.
    let results: Vec<serde_json::Value> = variants
        .iter()
        .zip(samples)
        .map(|((id, name, _), runs)| {
            let m = median(runs.clone());
            let mut ready: Vec<f64> = runs.iter().map(|s| s.ready_ms).collect();
            ready.sort_by(f64::total_cmp);
            serde_json::json!({
                "id": id, "name": name, "rps": m.rps, "p50_us": m.p50_us, "p99_us": m.p99_us,
                "cpu_us_per_request": m.cpu_us,
                "wall_us_per_request": 1e6 / m.rps,
                "ready_ms": ready[ready.len() / 2],
                "rounds": runs.iter().map(|s| serde_json::json!({"rps": s.rps, "p50_us": s.p50_us, "cpu_us": s.cpu_us})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let envoy_version = Command::new(meshguard_tests::envoy::envoy_binary()?)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let report = serde_json::json!({
        "setup": format!("wrk -t1 -c4 pinned to CPU 1, {seconds} s per run after a 1 s warm-up; Envoy --concurrency 1 pinned to CPU 0; loopback; median of {rounds} interleaved rounds; GET with 12 headers, allowed by every rule"),
        "envoy_version": envoy_version,
        "variants": results,
    });
    let out = meshguard_tests::envoy::repo_root().join("target/bench/envoy-load.json");
    std::fs::create_dir_all(out.parent().ok_or("target/bench")?).map_err(|e| e.to_string())?;
    std::fs::write(&out, serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?)
        .map_err(|e| format!("{}: {e}", out.display()))?;
    println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
    eprintln!("wrote {}", out.display());
    Ok(())
}
