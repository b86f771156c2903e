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
    let mut first = Some(first.sources);
    for round in 0..MAX_ROUNDS {
        let loaded = first.take().unwrap_or_else(|| sources::from_texts(&files, &current));
        let values: Vec<serde_json::Value> = loaded.objects.iter().map(|o| o.value.clone()).collect();
        let refs: Vec<crate::check::ObjectRef> = loaded
            .objects
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
        let findings = reviewer.review(&values, &refs, default_namespace)?;
        // Per (file, document): the patches of its objects' findings, in finding order.
        let mut per_document: BTreeMap<(usize, usize), Vec<Pending<'_>>> = BTreeMap::new();
        let last_round = round + 1 == MAX_ROUNDS;
        let mut left = Vec::new();
        for f in &findings {
            if !only.is_empty() && !only.iter().any(|r| *r == f.rule) {
                continue;
            }
            let source = &loaded.objects[f.object_index];
            let line = source.position(&f.path).line;
            match &f.fix {
                Some(fix) if !last_round => per_document
                    .entry((source.file, source.document))
                    .or_default()
                    .push(Pending { finding: f, fix, line }),
                _ => left.push(LeftFinding {
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
        let mut changed_any = false;
        for ((file, document), pending) in per_document {
            let Some(text) = current[file].clone() else { continue };
            let object = |p: &Pending<'_>| &loaded.objects[p.finding.object_index];
            let (patch, taken) = policy_core::fix::combine(pending.iter().map(|p| (p.fix, &object(p).within)));
            let pending: Vec<Pending<'_>> =
                pending.into_iter().enumerate().filter(|(i, _)| taken.contains(i)).map(|(_, p)| p).collect();
            match policy_core::fix::edit::apply(&text, document, &patch) {
                Ok(edited) if edited != text => {
                    current[file] = Some(edited);
                    changed_any = true;
                    for p in &pending {
                        report.applied.push(AppliedFix {
                            file: files[file].clone(),
                            line: p.line,
                            rule: p.finding.rule.clone(),
                            kind: p.finding.kind.clone(),
                            namespace: p.finding.namespace.clone(),
                            name: p.finding.name.clone(),
                            description: p.fix.description.clone(),
                            patch: p.fix.patch.clone(),
                        });
                    }
                }
                Ok(_) => {}
                Err(why) => {
                    for p in &pending {
                        left.push(LeftFinding {
                            file: files[file].clone(),
                            line: p.line,
                            rule: p.finding.rule.clone(),
                            message: p.finding.message.clone(),
                            why: format!(
                                "its fix ({}) was not written: {why}; the patch: {}",
                                p.fix.description,
                                serde_json::to_string(&p.fix.patch).unwrap_or_default()
                            ),
                        });
                    }
                }
            }
        }
        if !changed_any || last_round {
            report.left = left;
            break;
        }
    }
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
    let name = file.name.trim_start_matches("./");
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
