//! `meshguard test DIR`: policy test suites, in the spirit of `kyverno test`, `gator verify` and
//! `opa test`. Every `meshguard-test.yaml` under DIR lists cases: resource files (reviewed
//! together) or one HTTP request, and the result each must produce.

use crate::check;
use crate::engine::{self, Reviewer};
use anyhow::{anyhow, bail, Context, Result};
use policy_core::{Action, MemoryBuckets, Policy, Request};
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const SUITE_FILE: &str = "meshguard-test.yaml";

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Suite {
    #[serde(default)]
    name: Option<String>,
    /// RuleSet file, relative to the suite file; the built-in rule set when absent.
    #[serde(default)]
    rules: Option<PathBuf>,
    /// ValidatingAdmissionPolicy files or directories, relative to the suite file (as `check --policies`).
    #[serde(default)]
    policies: Vec<PathBuf>,
    #[serde(default)]
    namespace: Option<String>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    resources: Vec<PathBuf>,
    #[serde(default)]
    request: Option<Request<'static>>,
    expect: Expect,
}

/// `allow: true` (no deny finding, or an allowed request), `rules: [...]` (exactly these rule ids
/// fire, any action), or for a request `deny: <rule id>`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    #[serde(default)]
    allow: Option<bool>,
    #[serde(default)]
    rules: Option<Vec<String>>,
    #[serde(default)]
    deny: Option<String>,
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.allow, &self.deny, &self.rules) {
            (Some(true), _, _) => f.write_str("allow"),
            (Some(false), _, _) => f.write_str("deny"),
            (_, Some(rule), _) => write!(f, "deny by {rule}"),
            (_, _, Some(rules)) => write!(f, "rules {rules:?}"),
            _ => f.write_str("nothing"),
        }
    }
}

pub struct Outcome {
    pub name: String,
    pub failure: Option<String>,
}

fn find_suites(dir: &Path) -> Result<Vec<PathBuf>> {
    if dir.is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.with_context(|| format!("{}: cannot walk", dir.display()))?;
        if entry.file_name() == SUITE_FILE {
            out.push(entry.into_path());
        }
    }
    if out.is_empty() {
        bail!("{}: no {SUITE_FILE} found", dir.display());
    }
    Ok(out)
}

/// Runs every suite under `dir`; `make_reviewer` builds the engine for a suite's rule set.
pub fn run(dir: &Path, make_reviewer: &dyn Fn(Policy, serde_json::Value) -> Result<Reviewer>) -> Result<Vec<Outcome>> {
    let mut outcomes = Vec::new();
    for file in find_suites(dir)? {
        let text = crate::sources::read_text(&file, crate::sources::MAX_FILE_BYTES)
            .map_err(|e| anyhow!("{}: {}", e.location(), e.message))?;
        let doc = policy_core::yaml::parse_one(&text).map_err(|e| anyhow!("{}:{e}", file.display()))?;
        let suite: Suite = serde_json::from_value(doc.value).map_err(|e| anyhow!("{}: {e}", file.display()))?;
        if suite.cases.is_empty() {
            // A suite that tests nothing must not read as a passing one.
            bail!("{}: `cases` is empty; a suite needs at least one case", file.display());
        }
        let base = file.parent().unwrap_or(Path::new("."));
        let rules = suite.rules.as_ref().map(|r| base.join(r));
        let policies: Vec<PathBuf> = suite.policies.iter().map(|p| base.join(p)).collect();
        let (policy, rules_doc) = engine::load_policy_with(rules.as_deref(), &policies)?;
        let reviewer = make_reviewer(policy, rules_doc)?;
        let namespace = suite.namespace.as_deref().unwrap_or("default");
        let prefix = suite.name.clone().unwrap_or_else(|| file.display().to_string());
        for case in &suite.cases {
            let name = format!("{prefix}: {}", case.name);
            let failure = run_case(case, base, &reviewer, namespace).err().map(|e| format!("{e:#}"));
            outcomes.push(Outcome { name, failure });
        }
    }
    Ok(outcomes)
}

fn run_case(case: &Case, base: &Path, reviewer: &Reviewer, namespace: &str) -> Result<()> {
    let e = &case.expect;
    let http = reviewer.policy();
    if let Some(req) = &case.request {
        let d = http.decide(req, 0, &mut MemoryBuckets::default()).map_err(|e| anyhow!(e))?;
        let got = d.denied.as_ref().map(|x| x.rule.clone());
        let fired: Vec<String> = d.fired.iter().filter_map(|(i, _)| http.http_rule(*i)).map(|r| r.id.clone()).collect();
        return match (e.allow, &e.deny, &e.rules) {
            (Some(allow), _, _) if allow == got.is_none() => Ok(()),
            (_, Some(rule), _) if got.as_ref() == Some(rule) => Ok(()),
            (_, _, Some(rules)) if sorted(rules.clone()) == sorted(fired.clone()) => Ok(()),
            _ => {
                bail!("expected {e}, got {} (fired: {fired:?})", got.map_or("allow".into(), |r| format!("deny by {r}")))
            }
        };
    }
    if case.resources.is_empty() {
        bail!("the case names neither resources nor a request");
    }
    let paths: Vec<PathBuf> = case.resources.iter().map(|r| base.join(r)).collect();
    let report = check::run(reviewer, &paths, namespace, Action::Deny)?;
    if let Some(err) = report.errors.first() {
        bail!("{}: {}", err.location(), err.message);
    }
    if report.summary.objects == 0 {
        bail!("the resources hold no Kubernetes objects, so the case would test nothing");
    }
    let fired = sorted(report.findings.iter().map(|f| f.rule.clone()).collect());
    let denied = report.findings.iter().any(|f| f.action == Action::Deny);
    if let Some(allow) = e.allow {
        if allow == denied {
            let lines: Vec<String> =
                report.findings.iter().map(|f| format!("{}:{} {} {}", f.file, f.line, f.action, f.rule)).collect();
            bail!(
                "expected {}, got {} ({})",
                if allow { "allow" } else { "deny" },
                if denied { "deny" } else { "allow" },
                lines.join(", ")
            );
        }
    }
    if let Some(rules) = &e.rules {
        let want = sorted(rules.clone());
        if want != fired {
            bail!("expected rules {want:?} to fire, got {fired:?}");
        }
    }
    if e.allow.is_none() && e.rules.is_none() {
        bail!("`expect` needs `allow` or `rules` for resources");
    }
    Ok(())
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}
