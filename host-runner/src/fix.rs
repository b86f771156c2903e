//! `meshguard fix`: the findings' fixes (policy-core's JSON Patches) written into the files they
//! came from. Reviews the files as `check` does and fixes the objects in memory until no fix is
//! left (a fix can make another possible: a preStop sleep, then a drain duration that matches it;
//! at most [`MAX_ROUNDS`] rounds), then writes each file once ([`policy_core::fix::edit`], which
//! refuses what it cannot edit safely and proves each edit by reading it back).

use crate::engine::Reviewer;
use crate::sources::{self, InputError};
use anyhow::{Context, Result};
use policy_core::Finding;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use policy_core::fix::MAX_ROUNDS;

/// What `fix` found, changed and left.
#[derive(Debug, Default, Serialize)]
pub struct FixReport {
    /// Files with their new text, in argument order.
    #[serde(skip)]
    pub changed: Vec<ChangedFile>,
    /// Every patch applied, per object.
    pub applied: Vec<AppliedFix>,
    /// Findings that have no fix, or whose fix could not be written.
    pub left: Vec<LeftFinding>,
    pub errors: Vec<InputError>,
    /// Stdin's text after the fixes (`-`): what goes on to the next command.
    #[serde(skip)]
    pub stream: Option<String>,
    /// The parsed objects, which nothing reads once the report is made: the CLI leaves them to
    /// the OS at exit, as `check` does (see `check::Report::parsed`).
    #[serde(skip)]
    pub parsed: Vec<sources::SourceObject>,
}

#[derive(Debug)]
pub struct ChangedFile {
    pub name: String,
    pub before: String,
    pub after: String,
}

#[derive(Debug, Serialize)]
pub struct AppliedFix {
    pub file: String,
    pub line: u32,
    pub rule: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub description: String,
    pub patch: json_patch::Patch,
}

#[derive(Debug, Serialize)]
pub struct LeftFinding {
    pub file: String,
    pub line: u32,
    pub rule: String,
    pub message: String,
    pub why: String,
}

impl FixReport {
    pub fn exit_code(&self, write: bool) -> u8 {
        if !self.errors.is_empty() {
            2
        } else if !write && !self.changed.is_empty() {
            1
        } else {
            0
        }
    }
}

/// Reviews `paths`, fixes what has a fix (only `only`'s rules when given), and says what it left.
/// The objects are fixed in memory round after round ([`policy_core::fix::fix_values`]: later
/// rounds review only the objects that changed, with their namespaces' objects for context), then
/// each file is written once ([`policy_core::fix::write_fixes`]), files in parallel.
pub fn run(
    reviewer: &Reviewer,
    paths: &[PathBuf],
    default_namespace: &str,
    only: &[String],
    lines_in_fixed_files: bool,
) -> Result<FixReport> {
    let mut report = FixReport::default();
    let loaded = sources::load_keeping(paths, true)?;
    let files = loaded.sources.files;
    report.errors = loaded.sources.errors;
    let mut objects = loaded.sources.objects;
    let refs: Vec<crate::check::ObjectRef> = objects
        .iter()
        .map(|s| {
            let o = policy_core::object::Object::new(&s.value, default_namespace);
            crate::check::ObjectRef {
                file: files[s.file].clone(),
                line: s.spans.at.line,
                api_version: String::new(),
                kind: o.kind.to_string(),
                namespace: o.namespace.to_string(),
                name: o.name.to_string(),
            }
        })
        .collect();
    // The values are fixed in place; moved out of the sources and back after.
    let mut values: Vec<serde_json::Value> = objects.iter_mut().map(|o| std::mem::take(&mut o.value)).collect();
    // MutatingAdmissionPolicies first, as the API server runs them: their changes are written too,
    // so what the cluster would mutate shows in Git.
    let policies = reviewer.policy().fix_with_mutating_policies(&mut values, default_namespace, only);
    let fixed = policy_core::fix::fix_values(&mut values, |values, wanted| -> Result<Vec<Finding>> {
        let found = match wanted {
            None => reviewer.review(values, &refs, default_namespace)?,
            Some(wanted) => reviewer.review_some(values, &refs, default_namespace, wanted)?,
        };
        Ok(keep_only(found, only))
    })?
    .after_policies(policies);
    // Per file: its objects' operations, written in one pass over its text.
    let mut by_file: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, o) in objects.iter().enumerate() {
        by_file.entry(o.file).or_default().push(i);
    }
    let mut fixed_by_object: Vec<Vec<Finding>> = fixed.fixed;
    let written: Vec<(usize, Result<policy_core::fix::FixedText, String>)> = by_file
        .par_iter()
        .filter(|(_, members)| members.iter().any(|&i| !fixed.patches[i].0.is_empty()))
        .filter_map(|(&file, members)| {
            let text = loaded.texts.get(file)?.as_deref()?;
            let places: Vec<(usize, policy_core::FieldPath)> =
                members.iter().map(|&i| (objects[i].document, objects[i].within.clone())).collect();
            let mut local = policy_core::fix::FixedValues::default();
            for (k, &i) in members.iter().enumerate() {
                local.patches.push(fixed.patches[i].clone());
                local.fixed.push(fixed_by_object[i].iter().map(|f| Finding { object_index: k, ..f.clone() }).collect());
            }
            Some((file, policy_core::fix::write_fixes(text, &places, local)))
        })
        .collect();
    let line_of = |i: usize, f: &Finding| objects[i].position(&f.path).line;
    for (file, outcome) in written {
        let members = &by_file[&file];
        match outcome {
            Ok(done) => {
                let before = loaded.texts[file].clone().unwrap_or_default();
                for f in &done.applied {
                    let i = members[f.object_index];
                    report.applied.push(applied(&files[file], line_of(i, f), f));
                }
                // `done.left` holds only refused edits: `local` carried no remaining findings.
                for (f, why) in &done.left {
                    let i = members[f.object_index];
                    let why = why.clone().unwrap_or_else(|| reviewer.policy().why_not_fixed(f));
                    report.left.push(left(&files[file], line_of(i, f), f, why));
                }
                if done.text != before {
                    report.changed.push(ChangedFile { name: files[file].clone(), before, after: done.text });
                }
            }
            Err(why) => {
                for &i in members {
                    for f in &fixed_by_object[i] {
                        report.left.push(left(&files[file], line_of(i, f), f, why.clone()));
                    }
                }
            }
        }
        for &i in members {
            fixed_by_object[i].clear();
        }
    }
    if lines_in_fixed_files {
        // What is left is named at its line in the file as written.
        for changed in &report.changed {
            let Some(file) = files.iter().position(|f| *f == changed.name) else { continue };
            let Ok(docs) = policy_core::yaml::parse_documents(&changed.after) else { continue };
            for &i in &by_file[&file] {
                if let Some(doc) = docs.get(objects[i].document) {
                    objects[i].spans = doc.spans.descend(objects[i].within.segments()).clone();
                }
            }
        }
    }
    let line_of = |i: usize, f: &Finding| objects[i].position(&f.path).line;
    for f in &fixed.remaining {
        let source = &objects[f.object_index];
        report.left.push(left(&files[source.file], line_of(f.object_index, f), f, reviewer.policy().why_not_fixed(f)));
    }
    report.left.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    if let Some(i) = files.iter().position(|f| f == sources::STDIN) {
        report.stream = report
            .changed
            .iter()
            .find(|c| c.name == files[i])
            .map(|c| c.after.clone())
            .or_else(|| loaded.texts[i].clone());
    }
    for (object, value) in objects.iter_mut().zip(values) {
        object.value = value;
    }
    report.parsed = objects;
    Ok(report)
}

fn keep_only(findings: Vec<Finding>, only: &[String]) -> Vec<Finding> {
    if only.is_empty() {
        return findings;
    }
    findings.into_iter().filter(|f| only.contains(&f.rule)).collect()
}

fn applied(file: &str, line: u32, f: &Finding) -> AppliedFix {
    let fix = f.fix.as_ref();
    AppliedFix {
        file: file.to_string(),
        line,
        rule: f.rule.clone(),
        kind: f.kind.clone(),
        namespace: f.namespace.clone(),
        name: f.name.clone(),
        description: fix.map(|x| x.description.clone()).unwrap_or_default(),
        patch: fix.map(|x| x.patch.clone()).unwrap_or(json_patch::Patch(Vec::new())),
    }
}

/// `why`: an edit's refusal, or (from [`policy_core::Policy::why_not_fixed`]) why there is none.
fn left(file: &str, line: u32, f: &Finding, why: String) -> LeftFinding {
    let why = match &f.fix {
        Some(fix) if !why.starts_with("still found") => format!(
            "its fix ({}) was not written: {why}; the patch: {}",
            fix.description,
            serde_json::to_string(&fix.patch).unwrap_or_default()
        ),
        _ => why,
    };
    LeftFinding { file: file.to_string(), line, rule: f.rule.clone(), message: f.message.clone(), why }
}

/// A unified diff of one file, named as `git diff` names it.
pub fn diff(file: &ChangedFile) -> String {
    let name = file.name.trim_start_matches("./").trim_start_matches('/');
    similar::TextDiff::from_lines(&file.before, &file.after)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{name}"), &format!("b/{name}"))
        .to_string()
}

/// Replaces `path`'s content with `text`: a temporary file in the same directory, synced, given
/// the old file's permissions, then renamed over it; a reader sees the old or the new file whole.
pub fn write_atomically(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let permissions =
        std::fs::metadata(path).with_context(|| format!("{}: cannot read", path.display()))?.permissions();
    let mut tmp = tempfile::Builder::new()
        .prefix(".meshguard-fix-")
        .tempfile_in(dir)
        .with_context(|| format!("{}: cannot create a file beside it", path.display()))?;
    tmp.write_all(text.as_bytes())
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("{}: cannot write", path.display()))?;
    std::fs::set_permissions(tmp.path(), permissions)
        .with_context(|| format!("{}: cannot keep its mode", path.display()))?;
    tmp.persist(path).map_err(|e| e.error).with_context(|| format!("{}: cannot replace it", path.display()))?;
    Ok(())
}
