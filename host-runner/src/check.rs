//! `meshguard check`: load the rule set and the manifests, review them together, locate findings.

use crate::sources::{self, InputError};
use anyhow::{Context, Result};
use policy_core::{Action, Input, Policy};
use rayon::prelude::*;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// A finding placed in its file: what every output format prints.
#[derive(Debug, Clone, Serialize)]
pub struct LocatedFinding {
    pub rule: String,
    pub action: Action,
    pub message: String,
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub path: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub files: usize,
    pub objects: usize,
    pub skipped_documents: usize,
    pub deny: usize,
    pub warn: usize,
    pub audit: usize,
    pub errors: usize,
    /// Findings at or above `--fail-on`.
    pub failing: usize,
}

#[derive(Debug, Default)]
pub struct Report {
    pub findings: Vec<LocatedFinding>,
    pub errors: Vec<InputError>,
    pub summary: Summary,
}

impl Report {
    pub fn exit_code(&self) -> i32 {
        if !self.errors.is_empty() {
            2
        } else if self.summary.failing > 0 {
            1
        } else {
            0
        }
    }
}

/// A rule set that cannot be used: printed as `file:line: message`, exit 2.
#[derive(Debug)]
pub struct RulesError(pub String);

impl std::fmt::Display for RulesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RulesError {}

pub fn load_policy(rules: Option<&Path>) -> Result<Policy> {
    let Some(path) = rules else {
        return Policy::default_rules().map_err(|e| RulesError(format!("built-in rule set: {e}")).into());
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read rule set", path.display()))?;
    Policy::from_text(&text).map_err(|e| RulesError(format!("{}:{e}", path.display())).into())
}

pub fn run(policy: &Policy, paths: &[PathBuf], default_namespace: &str, fail_on: Action) -> Result<Report> {
    let sources = sources::load(paths)?;
    let values: Vec<serde_json::Value> = sources.objects.iter().map(|o| o.value.clone()).collect();
    let input = Input::new(&values, default_namespace);
    let per_object: Vec<Vec<policy_core::Finding>> = (0..values.len())
        .into_par_iter()
        .map(|i| {
            let mut out = Vec::new();
            policy.review_object(&input, i, &mut out);
            out
        })
        .collect();
    let mut summary = Summary {
        files: sources.files.len(),
        objects: values.len(),
        skipped_documents: sources.skipped,
        errors: sources.errors.len(),
        ..Summary::default()
    };
    let mut findings = Vec::new();
    for f in per_object.into_iter().flatten() {
        let source = &sources.objects[f.object_index];
        let at = source.position(&f.path);
        match f.action {
            Action::Deny => summary.deny += 1,
            Action::Warn => summary.warn += 1,
            Action::Audit => summary.audit += 1,
        }
        if f.action != Action::Audit && f.action >= fail_on {
            summary.failing += 1;
        }
        findings.push(LocatedFinding {
            rule: f.rule,
            action: f.action,
            message: f.message,
            file: sources.files[source.file].clone(),
            line: at.line,
            column: at.column,
            kind: f.kind,
            namespace: f.namespace,
            name: f.name,
            path: f.path.to_string(),
        });
    }
    // Files in argument order, then by line; the sort is stable so rule order breaks ties.
    let file_rank = |name: &str| sources.files.iter().position(|f| f == name).unwrap_or(usize::MAX);
    findings.sort_by_key(|f| (file_rank(&f.file), f.line, f.column));
    Ok(Report { findings, errors: sources.errors, summary })
}
