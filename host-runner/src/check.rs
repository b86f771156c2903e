//! `meshguard check`: read the manifests, have the engine review them together, locate findings.

use crate::engine::Reviewer;
use crate::sources::{self, InputError};
use anyhow::{Context, Result};
use policy_core::Action;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;

/// A finding placed in its file: what every output format prints (policy-core's one finding type).
pub use policy_core::LocatedFinding;

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

#[derive(Debug)]
pub struct Report {
    pub findings: Vec<LocatedFinding>,
    pub errors: Vec<InputError>,
    pub summary: Summary,
    /// Every object reviewed, in input order (for formats that report passes too).
    pub objects: Vec<ObjectRef>,
    /// Ids of the rule set's Kubernetes rules.
    pub rules: Vec<String>,
    /// For each finding (same order), the text change its fix makes in its file, when asked for
    /// ([`run_with`]) and the fix can be written there: what SARIF's `fixes` carry.
    pub fix_changes: Vec<Option<FixChange>>,
    pub fail_on: Action,
    /// The parsed objects and their spans, which nothing reads once the report is made. Freeing
    /// a large repo's trees is CPU time the result does not need: the CLI exits without freeing
    /// them, the way compilers leave their syntax trees to the OS; other callers drop the report
    /// as usual.
    pub parsed: Parsed,
}

/// What [`Report::parsed`] keeps alive.
pub struct Parsed {
    _values: Vec<serde_json::Value>,
    _sources: Vec<sources::SourceObject>,
}

impl std::fmt::Debug for Parsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Parsed({} objects)", self._values.len())
    }
}

type FindingKey<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str);

pub struct FindingIndex<'a>(std::collections::HashMap<FindingKey<'a>, Vec<&'a LocatedFinding>>);

impl<'a> FindingIndex<'a> {
    /// The findings of `rule` on object `o`.
    pub fn on(&self, o: &'a ObjectRef, rule: &'a str) -> &[&'a LocatedFinding] {
        self.0
            .get(&(o.file.as_str(), o.kind.as_str(), o.namespace.as_str(), o.name.as_str(), rule))
            .map_or(&[], Vec::as_slice)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ObjectRef {
    pub file: String,
    pub line: u32,
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl Report {
    /// Findings grouped by object and rule, for formats that report every (object, rule) pair:
    /// look up with [`FindingIndex::on`].
    pub fn findings_index(&self) -> FindingIndex<'_> {
        let mut map: std::collections::HashMap<(&str, &str, &str, &str, &str), Vec<&LocatedFinding>> =
            Default::default();
        for f in &self.findings {
            map.entry((&f.file, &f.kind, &f.namespace, &f.name, &f.rule)).or_default().push(f);
        }
        FindingIndex(map)
    }

    /// Makes an input without a single Kubernetes object an error: when `kustomize build` or
    /// `helm template` fails upstream, `... | meshguard check -` must not pass on nothing.
    pub fn require_objects(&mut self) {
        if self.summary.objects == 0 && self.errors.is_empty() {
            let skipped = match self.summary.skipped_documents {
                0 => String::new(),
                n => format!(" ({n} documents without apiVersion and kind were skipped)"),
            };
            self.errors.push(InputError {
                file: "<input>".into(),
                line: 0,
                column: 0,
                message: format!(
                    "no Kubernetes objects found in {} file(s){skipped}; pass --allow-empty if that is expected",
                    self.summary.files
                ),
            });
            self.summary.errors += 1;
        }
    }

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

/// A fix as a change of whole lines in a file: lines `start_line..end_line` (1-based, end
/// exclusive; equal for a pure insertion) replaced by `inserted` (each line ending in a newline).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FixChange {
    pub start_line: u32,
    pub end_line: u32,
    pub inserted: String,
    pub description: String,
}

/// The lines `after` changes in `before`: common leading and trailing lines left out.
fn changed_lines(before: &str, after: &str) -> (u32, u32, String) {
    let old: Vec<&str> = before.split_inclusive('\n').collect();
    let new: Vec<&str> = after.split_inclusive('\n').collect();
    let prefix = old.iter().zip(&new).take_while(|(a, b)| a == b).count();
    let suffix = old[prefix..].iter().rev().zip(new[prefix..].iter().rev()).take_while(|(a, b)| a == b).count();
    let inserted = new[prefix..new.len() - suffix].concat();
    (prefix as u32 + 1, (old.len() - suffix) as u32 + 1, inserted)
}

pub fn run(reviewer: &Reviewer, paths: &[PathBuf], default_namespace: &str, fail_on: Action) -> Result<Report> {
    run_with(reviewer, paths, default_namespace, fail_on, false)
}

/// [`run`]; with `fix_changes`, each finding's fix is also written into a copy of its file's text
/// to find the lines it changes (the files are kept in memory for that).
pub fn run_with(
    reviewer: &Reviewer,
    paths: &[PathBuf],
    default_namespace: &str,
    fail_on: Action,
    fix_changes: bool,
) -> Result<Report> {
    let sources::WithTexts { mut sources, texts } = sources::load_keeping(paths, fix_changes)?;
    // The objects move out of `sources`; findings are located through the spans kept there.
    let mut values: Vec<serde_json::Value> = sources.objects.iter_mut().map(|o| std::mem::take(&mut o.value)).collect();
    // MutatingAdmissionPolicies run first, as the API server runs them before validation: the rules
    // judge the objects as they would be admitted; a policy that fails (`failurePolicy: Fail`) denies.
    let policies = reviewer.policy().apply_mutating_policies(&mut values, default_namespace, None, None);
    let objects: Vec<ObjectRef> = values
        .par_iter()
        .zip(&sources.objects)
        .map(|(v, s)| {
            let o = policy_core::object::Object::new(v, default_namespace);
            ObjectRef {
                file: sources.files[s.file].clone(),
                line: s.spans.at.line,
                api_version: v.get("apiVersion").and_then(|v| v.as_str()).unwrap_or("").to_string(),
                kind: o.kind.to_string(),
                namespace: o.namespace.to_string(),
                name: o.name.to_string(),
            }
        })
        .collect();
    let mut reviewed = reviewer.review(&values, &objects, default_namespace)?;
    reviewed.splice(0..0, policies.denied);
    let mut summary = Summary {
        files: sources.files.len(),
        objects: values.len(),
        skipped_documents: sources.skipped,
        errors: sources.errors.len(),
        ..Summary::default()
    };
    let mut findings: Vec<(LocatedFinding, Option<FixChange>)> = Vec::new();
    for f in reviewed {
        let source =
            sources.objects.get(f.object_index).context("a finding names an object that is not in the input")?;
        let at = source.position(&f.path);
        match f.action {
            Action::Deny => summary.deny += 1,
            Action::Warn => summary.warn += 1,
            Action::Audit => summary.audit += 1,
        }
        if f.action != Action::Audit && f.action >= fail_on {
            summary.failing += 1;
        }
        let change = if fix_changes { fix_change(&texts, source, &f) } else { None };
        findings.push((
            LocatedFinding { file: sources.files[source.file].clone(), line: at.line, column: at.column, finding: f },
            change,
        ));
    }
    // Files in argument order, then by line; the sort is stable so rule order breaks ties.
    let ranks: HashMap<&str, usize> = sources.files.iter().enumerate().map(|(i, f)| (f.as_str(), i)).collect();
    let file_rank = |name: &str| ranks.get(name).copied().unwrap_or(usize::MAX);
    findings.sort_by_key(|(f, _)| (file_rank(&f.file), f.line, f.column));
    let (findings, fix_changes): (Vec<LocatedFinding>, Vec<Option<FixChange>>) = findings.into_iter().unzip();
    let parsed = Parsed { _values: values, _sources: sources.objects };
    Ok(Report {
        findings,
        fix_changes,
        errors: sources.errors,
        summary,
        objects,
        rules: reviewer.kubernetes_rule_ids(),
        fail_on,
        parsed,
    })
}

/// The lines `f`'s fix changes in its file, if it can be written there.
fn fix_change(texts: &[Option<String>], source: &sources::SourceObject, f: &policy_core::Finding) -> Option<FixChange> {
    let fix = f.fix.as_ref()?;
    let text = texts.get(source.file)?.as_ref()?;
    let (patch, _) = policy_core::fix::combine([(fix, &source.within)]);
    let edited = policy_core::fix::edit::apply(text, source.document, &patch).ok()?;
    let (start_line, end_line, inserted) = changed_lines(text, &edited);
    Some(FixChange { start_line, end_line, inserted, description: fix.description.clone() })
}

#[cfg(test)]
mod tests {
    #[test]
    fn changed_lines_leave_out_what_both_texts_share() {
        assert_eq!(super::changed_lines("a\nb\nc\n", "a\nB\nc\n"), (2, 3, "B\n".to_string()));
        assert_eq!(super::changed_lines("a\nc\n", "a\nb\nc\n"), (2, 2, "b\n".to_string()));
        assert_eq!(super::changed_lines("a\nb", "a\nb\nc"), (2, 3, "b\nc".to_string()));
    }
}
