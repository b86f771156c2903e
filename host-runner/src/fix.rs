//! `meshguard fix`: the findings' fixes (policy-core's JSON Patches) written into the files they
//! came from. Reviews the files as `check` does, edits each document with its objects' patches
//! ([`policy_core::fix::edit`], which refuses what it cannot edit safely and proves each edit by
//! reading it back), then reviews the edited text again: a fix can make another one possible
//! (a preStop sleep, then a drain duration that matches it), so it goes round until nothing more
//! changes, at most [`MAX_ROUNDS`] times.

use crate::engine::Reviewer;
use crate::sources::{self, InputError};
use anyhow::{Context, Result};
use policy_core::fix::Fix;
use policy_core::Finding;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
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

/// One object's fixes, as they apply to its document.
struct Pending<'f> {
    finding: &'f Finding,
    fix: &'f Fix,
    line: u32,
    /// Where the object sits in its document.
    within: &'f policy_core::FieldPath,
}

/// One file's new text (`None` when nothing changed), the fixes applied, and those that could
/// not be written, with why.
type FileEdit = (Option<String>, Vec<AppliedFix>, Vec<LeftFinding>);

/// Writes the fixes of one file's documents into its text.
fn edit_file(name: &str, text: &str, documents: BTreeMap<usize, Vec<Pending<'_>>>) -> FileEdit {
    let mut patches = Vec::new();
    let mut taken_per_doc = Vec::new();
    for (document, pending) in documents {
        // A fix left out for touching what an earlier one touches is offered again by the next
        // round's review of the edited document; should the edit be refused, it is left with why.
        let (patch, taken) = policy_core::fix::combine(pending.iter().map(|p| (p.fix, p.within)));
        let (kept, deferred): (Vec<_>, Vec<_>) = pending.into_iter().enumerate().partition(|(i, _)| taken.contains(i));
        patches.push((document, patch));
        taken_per_doc.push((kept.into_iter().map(|(_, p)| p).collect::<Vec<_>>(), deferred));
    }
    let asked: Vec<(usize, &json_patch::Patch)> = patches.iter().map(|(d, p)| (*d, p)).collect();
    let (edited, outcomes) = policy_core::fix::edit::apply_all(text, &asked);
    let (mut applied, mut left) = (Vec::new(), Vec::new());
    for ((kept, deferred), outcome) in taken_per_doc.into_iter().zip(outcomes) {
        let deferred = deferred.into_iter().map(|(_, p)| p).filter(|_| outcome.is_err());
        for p in kept.into_iter().chain(deferred) {
            match &outcome {
                Ok(()) => applied.push(AppliedFix {
                    file: name.to_string(),
                    line: p.line,
                    rule: p.finding.rule.clone(),
                    kind: p.finding.kind.clone(),
                    namespace: p.finding.namespace.clone(),
                    name: p.finding.name.clone(),
                    description: p.fix.description.clone(),
                    patch: p.fix.patch.clone(),
                }),
                Err(why) => left.push(LeftFinding {
                    file: name.to_string(),
                    line: p.line,
                    rule: p.finding.rule.clone(),
                    message: p.finding.message.clone(),
                    why: format!(
                        "its fix ({}) was not written: {why}; the patch: {}",
                        p.fix.description,
                        serde_json::to_string(&p.fix.patch).unwrap_or_default()
                    ),
                }),
            }
        }
    }
    ((edited != text).then_some(edited), applied, left)
}

/// Reviews `paths`, fixes what has a fix (only `only`'s rules when given), and says what it left.
pub fn run(
    reviewer: &Reviewer,
    paths: &[PathBuf],
    default_namespace: &str,
    only: &[String],
    why_no_fix: &dyn Fn(&str) -> String,
) -> Result<FixReport> {
    let mut report = FixReport::default();
    let first = sources::load_keeping(paths, true)?;
    let files = first.sources.files.clone();
    let original = first.texts.clone();
    report.errors = first.sources.errors.clone();
    let mut current = original.clone();
    let mut objects = first.sources.objects;
    // What each file's review left, from the last round that reviewed the file.
    let mut left_by_file: BTreeMap<usize, Vec<LeftFinding>> = BTreeMap::new();
    // Files whose findings the next round wants: every file first, then those just edited (a
    // file no fix changed reviews the same again: its objects, and so its fixes, are the same).
    let mut wanted: Option<BTreeSet<usize>> = None;
    for round in 0..MAX_ROUNDS {
        let last_round = round + 1 == MAX_ROUNDS;
        let namespace_of = |o: &sources::SourceObject| {
            let object = policy_core::object::Object::new(&o.value, default_namespace);
            if object.kind == "Namespace" {
                object.name.to_string()
            } else {
                object.namespace.to_string()
            }
        };
        let is_wanted = |o: &sources::SourceObject| wanted.as_ref().is_none_or(|w| w.contains(&o.file));
        // The wanted files' objects, with the peers in their namespaces that cross-object checks read.
        let namespaces: BTreeSet<String> = objects.iter().filter(|o| is_wanted(o)).map(namespace_of).collect();
        let reviewed: Vec<usize> = (0..objects.len())
            .filter(|&i| is_wanted(&objects[i]) || namespaces.contains(&namespace_of(&objects[i])))
            .collect();
        let refs: Vec<crate::check::ObjectRef> = reviewed
            .iter()
            .map(|&i| {
                let s = &objects[i];
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
        // The values move to the reviewer and back: a copy of a large repo's trees costs more than
        // the review (fresh pages for every node).
        let values: Vec<serde_json::Value> = reviewed.iter().map(|&i| std::mem::take(&mut objects[i].value)).collect();
        let findings = reviewer.review(&values, &refs, default_namespace);
        for (&i, value) in reviewed.iter().zip(values) {
            objects[i].value = value;
        }
        let findings = findings?;
        for file in objects.iter().filter(|o| is_wanted(o)).map(|o| o.file) {
            left_by_file.insert(file, Vec::new());
        }
        // Per file, per document: the fixes of its objects' findings, in finding order.
        let mut per_file: BTreeMap<usize, BTreeMap<usize, Vec<Pending<'_>>>> = BTreeMap::new();
        for f in &findings {
            let source = &objects[reviewed[f.object_index]];
            if !is_wanted(source) || (!only.is_empty() && !only.contains(&f.rule)) {
                continue;
            }
            let line = source.position(&f.path).line;
            match &f.fix {
                Some(fix) if !last_round => per_file
                    .entry(source.file)
                    .or_default()
                    .entry(source.document)
                    .or_default()
                    .push(Pending { finding: f, fix, line, within: &source.within }),
                _ => left_by_file.entry(source.file).or_default().push(LeftFinding {
                    file: files[source.file].clone(),
                    line,
                    rule: f.rule.clone(),
                    message: f.message.clone(),
                    why: if f.fix.is_some() {
                        format!("still found after {MAX_ROUNDS} rounds of fixes")
                    } else {
                        why_no_fix(&f.rule)
                    },
                }),
            }
        }
        // Files are edited in parallel; each file's documents in one pass over its text.
        let edited: Vec<(usize, FileEdit)> = per_file
            .into_par_iter()
            .filter_map(|(file, documents)| {
                let text = current[file].as_deref()?;
                Some((file, edit_file(&files[file], text, documents)))
            })
            .collect();
        let mut changed = BTreeSet::new();
        for (file, (text, applied, left)) in edited {
            if let Some(text) = text {
                current[file] = Some(text);
                changed.insert(file);
            }
            report.applied.extend(applied);
            left_by_file.entry(file).or_default().extend(left);
        }
        if changed.is_empty() || last_round {
            break;
        }
        // The edited files are read again; the others keep their objects.
        let texts: Vec<Option<String>> =
            current.iter().enumerate().map(|(i, t)| if changed.contains(&i) { t.clone() } else { None }).collect();
        let reread = sources::from_texts(&files, &texts);
        objects.retain(|o| !changed.contains(&o.file));
        objects.extend(reread.objects);
        report.errors.extend(reread.errors);
        wanted = Some(changed);
    }
    report.left = left_by_file.into_values().flatten().collect();
    report.parsed = objects;
    if let Some(i) = files.iter().position(|f| f == sources::STDIN) {
        report.stream = current[i].clone();
    }
    for (file, (before, after)) in original.into_iter().zip(current).enumerate() {
        if let (Some(before), Some(after)) = (before, after) {
            if before != after {
                report.changed.push(ChangedFile { name: files[file].clone(), before, after });
            }
        }
    }
    Ok(report)
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
