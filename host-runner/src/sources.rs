//! Turns paths and stdin into parsed objects, each with the spans that map its fields to lines.

use anyhow::{Context, Result};
use policy_core::yaml::{parse_documents, Position, Spans};
use rayon::prelude::*;
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};

/// One Kubernetes object and where it came from.
pub struct SourceObject {
    pub file: usize,
    pub value: Value,
    pub spans: Spans,
}

/// A file that could not be read or parsed: reported, and the other files are still checked.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InputError {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub message: String,
}

#[derive(Default)]
pub struct Sources {
    pub files: Vec<String>,
    pub objects: Vec<SourceObject>,
    pub errors: Vec<InputError>,
    /// Documents that are not Kubernetes objects (no apiVersion/kind).
    pub skipped: usize,
}

const STDIN: &str = "<stdin>";

fn is_manifest(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"))
}

/// Expands directories (recursively, skipping hidden ones) into manifest files, in a stable order.
fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            files.push(path.clone());
            continue;
        }
        let meta = std::fs::metadata(path).with_context(|| format!("{}: cannot read", path.display()))?;
        if !meta.is_dir() {
            files.push(path.clone());
            continue;
        }
        let walker = walkdir::WalkDir::new(path)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !e.file_name().to_str().is_some_and(|n| n.starts_with('.')));
        for entry in walker {
            let entry = entry.with_context(|| format!("{}: cannot walk", path.display()))?;
            if entry.file_type().is_file() && is_manifest(entry.path()) {
                files.push(entry.into_path());
            }
        }
    }
    Ok(files)
}

fn read(path: &Path) -> std::io::Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        Ok(text)
    } else {
        std::fs::read_to_string(path)
    }
}

/// A progress bar only for people: on a terminal, outside CI, and for runs long enough to need one.
pub fn show_progress(stderr_is_terminal: bool, in_ci: bool, files: usize) -> bool {
    stderr_is_terminal && !in_ci && files >= 200
}

/// Reads and parses every path. A path that does not exist is a usage error (`Err`); a file that
/// does not parse is an [`InputError`] and the rest are still loaded.
pub fn load(paths: &[PathBuf]) -> Result<Sources> {
    use std::io::IsTerminal;
    let files = expand(paths)?;
    let progress = if show_progress(std::io::stderr().is_terminal(), std::env::var_os("CI").is_some(), files.len()) {
        let bar = indicatif::ProgressBar::new(files.len() as u64);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{spinner} reading {pos}/{len} files {wide_bar} {eta}")
        {
            bar.set_style(style);
        }
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let parsed: Vec<(String, Result<Vec<(Value, Spans)>, InputError>)> = files
        .par_iter()
        .inspect(|_| progress.inc(1))
        .map(|path| {
            let name = if path.as_os_str() == "-" { STDIN.to_string() } else { path.display().to_string() };
            let result = read(path)
                .map_err(|e| InputError { file: name.clone(), line: 0, column: 0, message: e.to_string() })
                .and_then(|text| {
                    parse_documents(&text).map(|docs| docs.into_iter().map(|d| (d.value, d.spans)).collect()).map_err(
                        |e| InputError { file: name.clone(), line: e.at.line, column: e.at.column, message: e.message },
                    )
                });
            (name, result)
        })
        .collect();
    progress.finish_and_clear();
    let mut sources = Sources::default();
    for (file, (name, result)) in parsed.into_iter().enumerate() {
        sources.files.push(name);
        match result {
            Ok(docs) => {
                for (value, spans) in docs {
                    sources.add(file, value, spans);
                }
            }
            Err(e) => sources.errors.push(e),
        }
    }
    Ok(sources)
}

impl Sources {
    fn add(&mut self, file: usize, value: Value, spans: Spans) {
        let is_object =
            value.get("apiVersion").is_some_and(Value::is_string) && value.get("kind").is_some_and(Value::is_string);
        if !is_object {
            self.skipped += 1;
            return;
        }
        if value["kind"] == "List" {
            if let Some(Value::Array(items)) = value.get("items") {
                for (i, item) in items.iter().enumerate() {
                    let item_spans =
                        spans.descend(policy_core::FieldPath::root().key("items").index(i).segments()).clone();
                    self.add(file, item.clone(), item_spans);
                }
            }
            return;
        }
        self.objects.push(SourceObject { file, value, spans });
    }
}

impl SourceObject {
    pub fn position(&self, path: &policy_core::FieldPath) -> Position {
        self.spans.locate(path)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn progress_only_on_a_terminal_outside_ci_for_big_runs() {
        assert!(super::show_progress(true, false, 5_000));
        assert!(!super::show_progress(false, false, 5_000), "piped");
        assert!(!super::show_progress(true, true, 5_000), "CI");
        assert!(!super::show_progress(true, false, 10), "too short to need one");
    }
}
