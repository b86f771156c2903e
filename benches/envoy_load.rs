//! Load comparison for the Envoy filter, in one run on one machine: plain Envoy, Envoy with an
//! empty proxy-wasm filter (the floor any wasm filter pays), and Envoy with meshguard (10 HTTP rules
//! + 1 rate limit), all with the same concurrency, driven by wrk on loopback with bounded runs.
//! Variants are interleaved over several rounds and the median round is reported, because a shared
//! 2-core machine drifts. Writes the table into BENCHMARKS.md between the envoy-load markers.
//!
//! `cargo run --release -p meshguard-benches --bin envoy-load -- [--rounds N] [--seconds S]`

use meshguard_benches::{typical_request, HTTP_RULES};
use meshguard_tests::envoy::{request, Envoy, Filter, Http, Options};
use std::process::Command;

#[derive(Clone, Copy, Default, Debug)]
struct Sample {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
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
    xs.sort_by(|a, b| a.p50_us.total_cmp(&b.p50_us));
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
    let headers = typical_request().headers;
    // `--rules FILE` measures another RuleSet in meshguard's place (for profiling).
    let rules = match args.iter().position(|a| a == "--rules").and_then(|i| args.get(i + 1)) {
        Some(file) => std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?,
        None => HTTP_RULES.to_string(),
    };
    let variants = [
        ("plain Envoy", Filter::None),
        ("Envoy + empty proxy-wasm filter", Filter::Noop),
        ("Envoy + empty filter reading the header map", Filter::NoopReadingHeaders),
        ("Envoy + meshguard (10 HTTP rules + 1 rate limit)", Filter::Rules(rules)),
    ];
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); variants.len()];
    for round in 0..rounds {
        for (i, (name, filter)) in variants.iter().enumerate() {
            let envoy = Envoy::start(&Options { concurrency: 1, cpu: Some(0), ..Options::new(filter.clone()) })?;
            let url = envoy.url("/api/orders/42?expand=items");
            let check = request(&url, Http::H1, "GET", &headers)?;
            if check.status != 200 {
                return Err(format!("{name}: the benchmark request is not allowed: {check:?}"));
            }
            wrk(&url, &headers, 1)?; // warm-up
            let s = wrk(&url, &headers, seconds)?;
            eprintln!(
                "round {}: {name}: {:.0} req/s, p50 {:.1} us, p99 {:.1} us",
                round + 1,
                s.rps,
                s.p50_us,
                s.p99_us
            );
            samples[i].push(s);
        }
    }
    let m: Vec<Sample> = samples.into_iter().map(median).collect();
    let (plain, noop, mesh) = (m[0], m[1], m[3]);
    let floor = noop.p50_us - plain.p50_us;
    let ours = mesh.p50_us - plain.p50_us;
    // Envoy's one worker is saturated, so 1/throughput is its CPU time per request: a second,
    // less queue-sensitive view of the same cost.
    let cpu_us = |s: Sample| 1e6 / s.rps;
    let (floor_cpu, ours_cpu) = (cpu_us(noop) - cpu_us(plain), cpu_us(mesh) - cpu_us(plain));
    let mut table = format!(
        "wrk -t1 -c4 pinned to CPU 1, {seconds} s per run after a 1 s warm-up, Envoy 1.40 --concurrency 1 pinned to CPU 0, loopback, \
         median of {rounds} interleaved rounds; request: GET with 12 headers, allowed by every rule.\n\n\
         | setup | requests/s | p50 | p99 | added p50 over plain | added CPU per request (1/rps) |\n|---|---|---|---|---|---|\n"
    );
    for ((name, _), s) in variants.iter().zip(&m) {
        table.push_str(&format!(
            "| {name} | {:.0} | {:.1} us | {:.1} us | {:+.1} us | {:+.1} us |\n",
            s.rps,
            s.p50_us,
            s.p99_us,
            s.p50_us - plain.p50_us,
            cpu_us(*s) - cpu_us(plain)
        ));
    }
    let ratio = if floor > 0.0 { format!("{:.2}x", ours / floor) } else { "n/a (floor within noise)".into() };
    table.push_str(&format!(
        "\nmeshguard's added median latency is {ratio} the empty filter's ({ours:.1} us vs {floor:.1} us); \
         its added CPU per request is {:.2}x ({ours_cpu:.1} us vs {floor_cpu:.1} us). Target: at most 1.5x.\n",
        ours_cpu / floor_cpu
    ));
    println!("{table}");
    let path = meshguard_tests::envoy::repo_root().join("BENCHMARKS.md");
    let doc = std::fs::read_to_string(&path).map_err(|e| format!("BENCHMARKS.md: {e}"))?;
    let (start, end) = ("<!-- envoy-load:start -->\n", "<!-- envoy-load:end -->");
    let (Some(a), Some(b)) = (doc.find(start), doc.find(end)) else {
        return Err("BENCHMARKS.md lacks the envoy-load markers".into());
    };
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let updated = format!("{}{start}Measured {date}.\n\n{table}{}", &doc[..a], &doc[b..]);
    std::fs::write(&path, updated).map_err(|e| e.to_string())?;
    Ok(())
}
