//! `meshguard replay`: recorded requests through the proxy-wasm filter artifact, in host-runner's
//! emulation of Envoy's proxy-wasm host, so CI tests header rules and rate limits without Envoy.

use crate::printable::printable;
use crate::wasm::proxy::{Outcome, ProxyFilter};
use anyhow::{anyhow, bail, Result};
use serde::Deserialize;
use serde_json::Value;
use std::io::Write;
use std::path::Path;

/// One recorded request: a line of the JSON Lines input.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Recorded {
    method: String,
    path: String,
    #[serde(default)]
    authority: Option<String>,
    #[serde(default)]
    headers: Headers,
    /// Host clock in milliseconds (rate-limit replays); the previous request's time when absent.
    #[serde(default)]
    at_ms: Option<u64>,
    /// `"allow"`, `"deny"`, or `{"decision", "rule", "status"}`.
    #[serde(default)]
    expect: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(untagged)]
enum Headers {
    #[default]
    None,
    Map(std::collections::BTreeMap<String, String>),
    Pairs(Vec<(String, String)>),
}

pub struct Summary {
    pub requests: usize,
    pub allowed: usize,
    pub denied: usize,
    pub warned: usize,
    pub unexpected: usize,
}

fn decision(outcome: &Outcome) -> (String, Option<String>, Option<u32>) {
    match &outcome.local_response {
        None => ("allow".into(), None, None),
        Some(r) => {
            let header = |name: &str| r.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
            let grpc_rule = || (r.grpc_status >= 0).then(|| r.body.split(':').next().unwrap_or("").to_string());
            let status = if r.grpc_status >= 0 { None } else { Some(r.status) };
            ("deny".into(), header("x-meshguard-rule").or_else(grpc_rule), status)
        }
    }
}

fn matches(expect: &Value, got: &(String, Option<String>, Option<u32>)) -> bool {
    match expect {
        Value::String(d) => *d == got.0,
        Value::Object(m) => {
            m.get("decision").and_then(Value::as_str).is_none_or(|d| d == got.0)
                && m.get("rule").and_then(Value::as_str).is_none_or(|r| got.1.as_deref() == Some(r))
                && m.get("status").and_then(Value::as_u64).is_none_or(|s| got.2 == Some(s as u32))
        }
        _ => false,
    }
}

pub fn run(filter: &mut ProxyFilter, requests: &Path, out: &mut dyn Write) -> Result<Summary> {
    let text = crate::sources::read_text(requests, crate::sources::MAX_FILE_BYTES)
        .map_err(|e| anyhow!("{}: {}", e.location(), e.message))?;
    let text = text.strip_prefix(policy_core::yaml::BOM).unwrap_or(&text);
    let name = requests.display().to_string();
    let mut s = Summary { requests: 0, allowed: 0, denied: 0, warned: 0, unexpected: 0 };
    let mut now_ms = 1_000_000;
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let r: Recorded = serde_json::from_str(line).map_err(|e| anyhow!("{name}:{line_no}: {e}"))?;
        now_ms = r.at_ms.unwrap_or(now_ms);
        let mut headers = vec![
            (":method".to_string(), r.method.clone()),
            (":path".to_string(), r.path.clone()),
            (":authority".to_string(), r.authority.clone().unwrap_or_else(|| "replay.local".into())),
            (":scheme".to_string(), "http".to_string()),
        ];
        match r.headers {
            Headers::None => {}
            Headers::Map(m) => headers.extend(m.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v))),
            Headers::Pairs(p) => headers.extend(p.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v))),
        }
        let outcome = filter.request(headers, now_ms).map_err(|e| anyhow!("{name}:{line_no}: {e}"))?;
        let got = decision(&outcome);
        s.requests += 1;
        if got.0 == "allow" {
            s.allowed += 1;
        } else {
            s.denied += 1;
        }
        let warn = outcome.added_response_headers.iter().find(|(k, _)| k == "x-meshguard-warn").map(|(_, v)| v.clone());
        if warn.is_some() {
            s.warned += 1;
        }
        let unexpected = r.expect.as_ref().is_some_and(|e| !matches(e, &got));
        if unexpected {
            s.unexpected += 1;
        }
        let detail = match (&outcome.local_response, &got.1) {
            (Some(resp), rule) => {
                let code = if resp.grpc_status >= 0 {
                    format!("grpc-status {}", resp.grpc_status)
                } else {
                    resp.status.to_string()
                };
                format!("deny {code} by {}: {}", rule.as_deref().unwrap_or("?"), resp.body)
            }
            (None, _) => "allow".to_string(),
        };
        let warn = warn.map(|w| format!("  [warn: {w}]")).unwrap_or_default();
        let flag = if unexpected {
            format!("  UNEXPECTED (expected {})", r.expect.as_ref().map(Value::to_string).unwrap_or_default())
        } else {
            String::new()
        };
        let line = format!("{name}:{line_no}  {} {}  -> {detail}{warn}{flag}", r.method, r.path);
        writeln!(out, "{}", printable(&line))?;
    }
    if s.requests == 0 {
        bail!("{name}: no requests");
    }
    writeln!(
        out,
        "{} requests: {} allowed, {} denied, {} warned; {} unexpected",
        s.requests, s.allowed, s.denied, s.warned, s.unexpected
    )?;
    Ok(s)
}
