//! Turns paths and stdin into parsed objects, each with the spans that map its fields to lines.

use anyhow::{Context, Result};
use policy_core::yaml::{parse_documents, Position, Spans};
use rayon::prelude::*;
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};

/// One Kubernetes object and where it came from.
#[derive(Debug)]
pub struct SourceObject {
    pub file: usize,
    /// Which document of the file (as `parse_documents` counts them).
    pub document: usize,
    /// Where the object sits in its document: the root, or an item of a `kind: List`.
    pub within: policy_core::FieldPath,
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

impl InputError {
    /// `file`, `file:line:column` when the error has a position.
    pub fn location(&self) -> String {
        if self.line > 0 {
            format!("{}:{}:{}", self.file, self.line, self.column)
        } else {
            self.file.clone()
        }
    }
}

#[derive(Default)]
pub struct Sources {
    pub files: Vec<String>,
    pub objects: Vec<SourceObject>,
    pub errors: Vec<InputError>,
    /// Documents that are not Kubernetes objects (no apiVersion/kind).
    pub skipped: usize,
}

pub const STDIN: &str = "<stdin>";

/// One document of a file, as parsed.
type Parsed = (Value, Spans);

/// Largest file (or stdin stream) read, in bytes: the YAML front end's own limit, checked before
/// reading so `/dev/zero` or a runaway generator cannot exhaust memory.
pub const MAX_FILE_BYTES: usize = policy_core::yaml::Limits::DEFAULT.max_bytes;

fn is_manifest(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"))
}

/// What `expand` found: files to read, in a stable order, and paths it could not use.
#[derive(Default)]
struct Expanded {
    files: Vec<PathBuf>,
    errors: Vec<InputError>,
}

fn path_error(path: &Path, message: impl Into<String>) -> InputError {
    InputError { file: path.display().to_string(), line: 0, column: 0, message: message.into() }
}

/// What makes two paths one file in [`expand`].
#[derive(PartialEq, Eq, Hash)]
enum FileId {
    Inode(u64, u64),
    Named(PathBuf),
}

/// Expands directories (recursively, following symlinks with loop detection, skipping hidden
/// entries) into manifest files. A file reached twice (named and inside a named directory, or
/// through a symlink) is read once. A path that does not exist is a usage error (`Err`); an
/// unreadable directory or a symlink loop is an [`InputError`] and the rest are still checked.
fn expand(paths: &[PathBuf]) -> Result<Expanded> {
    let mut out = Expanded::default();
    let mut seen = std::collections::HashSet::new();
    let mut push = |out: &mut Expanded, path: PathBuf| {
        // Two names for one file (a symlink, a hard link, `dir/../dir`) are one file: its device
        // and inode, one stat where resolving the path took a readlink per component. A path
        // that cannot be stat'ed is kept as named.
        use std::os::unix::fs::MetadataExt;
        // Stdin (`-`) is never stat'ed: a file of that name in the working directory is not it.
        let meta = if path.as_os_str() == "-" { None } else { std::fs::metadata(&path).ok() };
        let key = match meta {
            Some(meta) => FileId::Inode(meta.dev(), meta.ino()),
            None => FileId::Named(path.clone()),
        };
        if seen.insert(key) {
            out.files.push(path);
        }
    };
    for path in paths {
        if path.as_os_str() == "-" {
            push(&mut out, path.clone());
            continue;
        }
        let meta = std::fs::metadata(path).with_context(|| format!("{}: cannot read", path.display()))?;
        if !meta.is_dir() {
            push(&mut out, path.clone());
            continue;
        }
        let walker = walkdir::WalkDir::new(path)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !e.file_name().to_str().is_some_and(|n| n.starts_with('.')));
        for entry in walker {
            match entry {
                Ok(entry) if entry.file_type().is_dir() => {}
                Ok(entry) if is_manifest(entry.path()) => push(&mut out, entry.into_path()),
                Ok(_) => {}
                Err(e) => {
                    let at = e.path().unwrap_or(path);
                    let message = match e.loop_ancestor() {
                        Some(ancestor) => format!("symlink loop back to {}; not followed", ancestor.display()),
                        None => format!(
                            "cannot read: {}",
                            e.io_error().map_or_else(|| e.to_string(), std::string::ToString::to_string)
                        ),
                    };
                    out.errors.push(path_error(at, message));
                }
            }
        }
    }
    Ok(out)
}

/// What a file's type is called in an error, for the types meshguard refuses to read.
fn file_type_name(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Reads a file as UTF-8 text: only regular files (a FIFO would block, a device never ends), at
/// most `max_bytes`, UTF-16 named as such, invalid UTF-8 located by line and column.
pub fn read_text(path: &Path, max_bytes: usize) -> Result<String, InputError> {
    let name = if path.as_os_str() == "-" { STDIN.to_string() } else { path.display().to_string() };
    let fail = |line: u32, column: u32, message: String| InputError { file: name.clone(), line, column, message };
    let too_big =
        || fail(0, 0, format!("larger than the {} MiB input limit; split it into smaller files", max_bytes >> 20));
    let bytes = if path.as_os_str() == "-" {
        read_capped(std::io::stdin().lock(), max_bytes, 64 << 10).map_err(|e| fail(0, 0, e.to_string()))?
    } else {
        read_regular_file(path, max_bytes).map_err(|message| fail(0, 0, message))?
    };
    let Some(bytes) = bytes else { return Err(too_big()) };
    decode(bytes).map_err(|(line, column, message)| fail(line, column, message))
}

/// The bytes of a regular file (a FIFO would block, a device never ends); `None` when it holds
/// more than `max_bytes`; `Err` says why it cannot be read.
pub fn read_regular_file(path: &Path, max_bytes: usize) -> Result<Option<Vec<u8>>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK: opening a FIFO must not wait for a writer before its type can be checked.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot read: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot read: {e}"))?;
    if !meta.file_type().is_file() {
        return Err(format!("{}; meshguard reads regular files only", file_type_name(meta.file_type())));
    }
    if meta.len() > max_bytes as u64 {
        return Ok(None);
    }
    read_capped(file, max_bytes, meta.len() as usize).map_err(|e| format!("cannot read: {e}"))
}

/// Reads at most `max` bytes (`expected`: the size to allocate for); `None` when there is more.
fn read_capped(reader: impl Read, max: usize, expected: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::with_capacity(expected.min(max) + 1);
    reader.take(max as u64 + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() <= max).then_some(bytes))
}

/// UTF-8 text from `bytes`, or `(line, column, message)` naming the first byte that is not.
pub fn decode(bytes: Vec<u8>) -> Result<String, (u32, u32, String)> {
    let utf16 = match bytes.get(..2) {
        Some([0xff, 0xfe]) => Some("FF FE, little-endian"),
        Some([0xfe, 0xff]) => Some("FE FF, big-endian"),
        // No mark, but ASCII text in UTF-16 has a NUL beside every character.
        Some([a, 0]) | Some([0, a]) if *a != 0 && bytes.iter().take(64).filter(|b| **b == 0).count() >= 8 => {
            Some("no byte-order mark, but NUL bytes between the characters")
        }
        _ => None,
    };
    if let Some(how) = utf16 {
        return Err((
            1,
            1,
            format!("the file is UTF-16 ({how}); meshguard reads UTF-8: convert it with `iconv -f UTF-16 -t UTF-8`"),
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let at = e.utf8_error().valid_up_to();
        let before = &bytes[..at];
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        let line_start = before.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
        (line as u32, column as u32, format!("invalid UTF-8 (byte 0x{:02x}); meshguard reads UTF-8 text", bytes[at]))
    })
}

/// A progress bar only for people: on a terminal, outside CI, and for runs long enough to need one.
pub fn show_progress(stderr_is_terminal: bool, in_ci: bool, files: usize) -> bool {
    stderr_is_terminal && !in_ci && files >= 200
}

/// Reads and parses every path. A path that does not exist is a usage error (`Err`); a file that
/// cannot be read or does not parse is an [`InputError`] and the rest are still loaded.
pub fn load(paths: &[PathBuf]) -> Result<Sources> {
    Ok(load_keeping(paths, false)?.sources)
}

/// Sources and the text of each file they were read from (`None` for a file that could not be
/// read): what `meshguard fix` edits.
pub struct WithTexts {
    pub sources: Sources,
    pub texts: Vec<Option<String>>,
}

/// [`load`], keeping each file's text when `keep_texts`.
pub fn load_keeping(paths: &[PathBuf], keep_texts: bool) -> Result<WithTexts> {
    use std::io::IsTerminal;
    let Expanded { files, errors } = expand(paths)?;
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
    /// A file's name, its text (when kept) and its documents.
    type Read = (String, Option<String>, Result<Vec<Parsed>, InputError>);
    let parsed: Vec<Read> = files
        .par_iter()
        .inspect(|_| progress.inc(1))
        .map(|path| {
            let name = if path.as_os_str() == "-" { STDIN.to_string() } else { path.display().to_string() };
            match read_text(path, MAX_FILE_BYTES) {
                Ok(text) => {
                    let result = parse(&name, &text);
                    (name, keep_texts.then_some(text), result)
                }
                Err(e) => (name, None, Err(e)),
            }
        })
        .collect();
    progress.finish_and_clear();
    let mut sources = Sources { errors, ..Sources::default() };
    let mut texts = Vec::new();
    for (file, (name, text, result)) in parsed.into_iter().enumerate() {
        sources.files.push(name);
        texts.push(text);
        sources.add_file(file, result);
    }
    Ok(WithTexts { sources, texts })
}

fn parse(name: &str, text: &str) -> Result<Vec<Parsed>, InputError> {
    parse_documents(text).map(|docs| docs.into_iter().map(|d| (d.value, d.spans)).collect()).map_err(|e| InputError {
        file: name.to_string(),
        line: e.at.line,
        column: e.at.column,
        message: e.message,
    })
}

/// Sources from texts already read (`files[i]` named, `texts[i]` its text; `None`: skipped).
pub fn from_texts(files: &[String], texts: &[Option<String>]) -> Sources {
    let mut sources = Sources::default();
    for (file, (name, text)) in files.iter().zip(texts).enumerate() {
        sources.files.push(name.clone());
        if let Some(text) = text {
            sources.add_file(file, parse(name, text));
        }
    }
    sources
}

impl Sources {
    fn add_file(&mut self, file: usize, parsed: Result<Vec<Parsed>, InputError>) {
        match parsed {
            Ok(docs) => {
                for (document, (value, spans)) in docs.into_iter().enumerate() {
                    self.add(file, document, policy_core::FieldPath::root(), value, spans);
                }
            }
            Err(e) => self.errors.push(e),
        }
    }

    fn add(&mut self, file: usize, document: usize, within: policy_core::FieldPath, value: Value, spans: Spans) {
        if !policy_core::object::is_kubernetes_object(&value) {
            self.skipped += 1;
            return;
        }
        if value["kind"] == "List" {
            if let Some(Value::Array(items)) = value.get("items") {
                for (i, item) in items.iter().enumerate() {
                    let item_spans =
                        spans.descend(policy_core::FieldPath::root().key("items").index(i).segments()).clone();
                    self.add(file, document, within.key("items").index(i), item.clone(), item_spans);
                }
            }
            return;
        }
        self.objects.push(SourceObject { file, document, within, value, spans });
    }
}

impl SourceObject {
    pub fn position(&self, path: &policy_core::FieldPath) -> Position {
        self.spans.locate(path)
    }
}

#[cfg(test)]
mod tests {
    use super::decode;

    /// Found by fuzzing (fuzz/regressions/yaml/float-round-trip.yaml): serde_json's default float
    /// parser read `2.2222222222222282e31` back one ulp off, so the wasm engine, which parses the
    /// JSON this host writes, saw another number than the native engine.
    #[test]
    fn parsed_numbers_survive_the_json_the_wasm_engine_reads() {
        let text = include_str!("../../fuzz/regressions/yaml/float-round-trip.yaml");
        for doc in policy_core::yaml::parse_documents(text).unwrap() {
            let json = serde_json::to_string(&doc.value).unwrap();
            assert_eq!(serde_json::from_str::<serde_json::Value>(&json).unwrap(), doc.value, "{json}");
        }
        let value = policy_core::yaml::parse_one("x: 22222222222222282222222222222222\n").unwrap().value;
        let back: serde_json::Value = serde_json::from_str(&value.to_string()).unwrap();
        assert_eq!(back["x"].as_f64(), value["x"].as_f64());
    }

    #[test]
    fn decoding_names_utf16_and_locates_invalid_utf8() {
        assert_eq!(decode(b"kind: Service\n".to_vec()).unwrap(), "kind: Service\n");
        let utf16: Vec<u8> = "\u{feff}kind: Service\n".encode_utf16().flat_map(u16::to_le_bytes).collect();
        let (line, _, message) = decode(utf16).unwrap_err();
        assert_eq!(line, 1);
        assert!(message.contains("UTF-16 (FF FE"), "{message}");
        let no_bom: Vec<u8> = "kind: Service\n".encode_utf16().flat_map(u16::to_be_bytes).collect();
        assert!(decode(no_bom).unwrap_err().2.contains("UTF-16"));
        let (line, column, message) = decode(b"a: 1\nname: x\xffy\n".to_vec()).unwrap_err();
        assert_eq!((line, column), (2, 8));
        assert!(message.contains("0xff"), "{message}");
    }

    #[test]
    fn progress_only_on_a_terminal_outside_ci_for_big_runs() {
        assert!(super::show_progress(true, false, 5_000));
        assert!(!super::show_progress(false, false, 5_000), "piped");
        assert!(!super::show_progress(true, true, 5_000), "CI");
        assert!(!super::show_progress(true, false, 10), "too short to need one");
    }
}
