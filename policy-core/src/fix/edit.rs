//! A fix written into the text it came from, every byte around it kept. A patch is an RFC 6902
//! JSON Patch against one document's value; each operation becomes a text edit at the place the
//! span tree ([`crate::yaml::Spans`]) knows: a scalar replaced within its line (keeping the
//! comment after it), a key added as new lines after the last line of its mapping, at the
//! indentation of its siblings, a nested value laid out with the file's indent step.
//!
//! A document written as JSON stays JSON: values are written as JSON, members go before the first
//! one at its indentation (or after the `{` of a one-line object).
//!
//! What it cannot edit safely it refuses, and says why: anchors, aliases and merge keys (an edit
//! there changes other objects too), templates, tabs, YAML flow mappings it would have to rewrite,
//! block scalars. And it checks itself: the edited text is parsed again, and
//! unless every document reads back exactly as the patch says (the patched one) or as before (the
//! others), the text is refused and left as it was.

use crate::yaml::{self, Position, Spans};
use json_patch::{Patch, PatchOperation};
use serde_json::Value;

/// `text` with `patch` applied to its `doc`-th document (as [`yaml::parse_documents`] counts
/// them). `Err` says why the text was left as it was.
pub fn apply(text: &str, doc: usize, patch: &Patch) -> Result<String, String> {
    let (edited, mut outcomes) = apply_all(text, &[(doc, patch)]);
    outcomes.pop().unwrap_or(Err("nothing was asked".into()))?;
    Ok(edited)
}

/// `text` with each `(document, patch)` applied, and for each whether it was written (`Err`: why
/// not; that document is left as it was, the others are still edited). Each document is edited
/// on its own slice of the text (between its `---` lines), so a stream of many objects is not
/// parsed again for every edit; the whole text is read back once at the end.
pub fn apply_all(text: &str, patches: &[(usize, &Patch)]) -> (String, Vec<Result<(), String>>) {
    // Documents are found by their `---` lines, not by parsing the whole text: only the edited
    // ones are parsed, and the whole text once at the end.
    let regions = document_regions(text);
    let mut edits: Vec<(std::ops::Range<usize>, String, usize, Value)> = Vec::new();
    let mut outcomes = Vec::new();
    for &(doc, patch) in patches {
        let outcome = (|| {
            let (range, first_line) =
                regions.get(doc).cloned().ok_or_else(|| format!("the file has no document {}", doc + 1))?;
            if edits.iter().any(|(r, ..)| *r == range) {
                return Err("another patch edits this document; it is fixed on the next round".to_string());
            }
            let (edited, patched) = edit_document(&text[range.clone()], first_line, patch)?;
            edits.push((range, edited, doc, patched));
            Ok(())
        })();
        outcomes.push(outcome);
    }
    if edits.is_empty() {
        return (text.to_string(), outcomes);
    }
    edits.sort_by_key(|(r, ..)| std::cmp::Reverse(r.start));
    let mut edited = text.to_string();
    for (range, slice, ..) in &edits {
        edited.replace_range(range.clone(), slice);
    }
    // The proof: the whole text reads back with the edited documents as patched and the others
    // as they were (their text is untouched, so as they read in the edited text's neighbours).
    let reads_back = yaml::parse_documents(&edited).is_ok_and(|read| {
        let documents_kept = read.len() == regions.len();
        documents_kept && edits.iter().all(|(_, _, doc, patched)| read.get(*doc).is_some_and(|d| d.value == *patched))
    });
    if !reads_back {
        let why = "the edited text would not read back as the patched objects".to_string();
        return (text.to_string(), outcomes.into_iter().map(|o| o.and(Err(why.clone()))).collect());
    }
    (edited, outcomes)
}

/// One document's text (`first_line`: its first line's number in the file, for messages) with
/// `patch` applied: the new text and the patched value it reads back as.
fn edit_document(slice: &str, first_line: usize, patch: &Patch) -> Result<(String, Value), String> {
    refuse_unsafe_document(slice, first_line)?;
    // A document written as JSON (or YAML's flow style) stays JSON: values are written as JSON,
    // keys go in as JSON members.
    let json =
        slice.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).is_some_and(|l| l.starts_with('{'));
    let docs = yaml::parse_documents(slice).map_err(|e| format!("the document does not parse: {e}"))?;
    let [document] = docs.as_slice() else { return Err("the document's lines hold no single document".into()) };
    let mut expected = document.value.clone();
    json_patch::patch(&mut expected, patch).map_err(|e| format!("the patch does not apply: {e}"))?;
    let mut edited = slice.to_string();
    let mut current = docs;
    for (i, op) in patch.iter().enumerate() {
        if i > 0 {
            current = yaml::parse_documents(&edited).map_err(|e| format!("an edit broke the document ({e})"))?;
        }
        let [document] = current.as_slice() else { return Err("an edit split the document".into()) };
        edited = apply_op(&edited, &document.value, &document.spans, op, json)?;
    }
    match yaml::parse_documents(&edited).as_deref() {
        Ok([read]) if read.value == expected => Ok((edited, expected)),
        Ok(_) => Err("the edited text would not read back as the patched object".into()),
        Err(e) => Err(format!("the edited text would not parse ({e})")),
    }
}

/// Each document's bytes in `text` and its first line's number: the text between `---` (or
/// `...`) lines, leaving out the stretches that hold no node (only comments, blank lines,
/// directives), as the parser leaves out empty documents.
fn document_regions(text: &str) -> Vec<(std::ops::Range<usize>, usize)> {
    let is_marker = |line: &str| {
        (line.starts_with("---") || line.starts_with("..."))
            && line[3..].chars().next().is_none_or(|c| c == ' ' || c == '\t' || c == '\r' || c == '\n')
    };
    let mut regions = Vec::new();
    let (mut start, mut first_line, mut has_node) = (0usize, 1usize, false);
    let mut at = 0usize;
    for (number, line) in text.split_inclusive('\n').enumerate() {
        if is_marker(line) {
            if has_node {
                regions.push((start..at, first_line));
            }
            start = at + line.len();
            first_line = number + 2;
            has_node = false;
        } else {
            let t = line.trim();
            has_node |= !t.is_empty() && !t.starts_with('#') && !t.starts_with('%');
        }
        at += line.len();
    }
    if has_node {
        regions.push((start..text.len(), first_line));
    }
    regions
}

fn refuse_unsafe_document(slice: &str, first_line: usize) -> Result<(), String> {
    for (i, line) in slice.split('\n').enumerate() {
        let content = strip_comment(line);
        let at = first_line + i;
        if content.contains("{{") {
            return Err(format!("line {at} holds a template (`{{{{`): it is edited by hand or in its source"));
        }
        if line.trim_start_matches(' ').starts_with('\t') {
            return Err(format!("line {at} is indented with a tab"));
        }
        if content.contains("<<:") {
            return Err(format!("line {at} holds a merge key (`<<`): an edit would change what it merges"));
        }
        let bytes = content.as_bytes();
        for (j, &b) in bytes.iter().enumerate() {
            let starts_token = j == 0 || matches!(bytes[j - 1], b' ' | b'[' | b'{' | b',' | b'-' | b':');
            let named = bytes.get(j + 1).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_');
            if (b == b'&' || b == b'*') && starts_token && named && !inside_quotes(content, j) {
                return Err(format!("line {at} holds an anchor or alias: an edit would change every place it is used"));
            }
        }
    }
    let first = slice.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('%'));
    if first.is_some_and(|l| l.starts_with('[')) {
        return Err("the document is a list, not an object".into());
    }
    Ok(())
}

/// Whether byte `at` of `line` is inside a quoted scalar.
fn inside_quotes(line: &str, at: usize) -> bool {
    let mut quote: Option<u8> = None;
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < at {
        let b = bytes[i];
        match quote {
            Some(b'"') if b == b'\\' => i += 1,
            Some(q) if b == q => quote = None,
            None if b == b'"' || b == b'\'' => quote = Some(b),
            _ => {}
        }
        i += 1;
    }
    quote.is_some()
}

/// `line` without a trailing ` # comment` (outside quotes).
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for i in 0..bytes.len() {
        if bytes[i] == b'#' && (i == 0 || bytes[i - 1] == b' ') && !inside_quotes(line, i) {
            return line[..i].trim_end();
        }
    }
    line.trim_end_matches(['\r', ' '])
}

/// A decoded JSON Pointer.
fn tokens(pointer: &str) -> Vec<String> {
    if pointer.is_empty() {
        return Vec::new();
    }
    pointer.split('/').skip(1).map(|t| t.replace("~1", "/").replace("~0", "~")).collect()
}

/// Walks `tokens` through `value` and its spans: the value and spans there.
fn walk<'a>(mut value: &'a Value, mut spans: &'a Spans, tokens: &[String]) -> Option<(&'a Value, &'a Spans)> {
    for t in tokens {
        let segment = match value {
            Value::Object(map) => {
                value = map.get(t)?;
                crate::path::Segment::Key(t.clone())
            }
            Value::Array(items) => {
                let i: usize = t.parse().ok()?;
                value = items.get(i)?;
                crate::path::Segment::Index(i)
            }
            _ => return None,
        };
        spans = spans.child(&segment)?;
    }
    Some((value, spans))
}

struct Text<'t> {
    lines: Vec<&'t str>,
    newline: &'static str,
    /// Whether the text ends with a line break.
    final_newline: bool,
}

impl<'t> Text<'t> {
    fn new(text: &'t str) -> Text<'t> {
        let final_newline = text.ends_with('\n');
        let body = text.strip_suffix('\n').unwrap_or(text);
        let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
        Text { lines: body.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect(), newline, final_newline }
    }

    fn join(&self, lines: &[String]) -> String {
        let mut out = lines.join(self.newline);
        if self.final_newline {
            out.push_str(self.newline);
        }
        out
    }

    fn owned(&self) -> Vec<String> {
        self.lines.iter().map(|l| l.to_string()).collect()
    }

    /// The 0-based byte offset of a 1-based character column on a 1-based line.
    fn offset(&self, at: Position) -> Option<(usize, usize)> {
        let line = *self.lines.get((at.line as usize).checked_sub(1)?)?;
        let column = (at.column as usize).checked_sub(1)?;
        let byte = line.char_indices().nth(column).map_or(line.len(), |(b, _)| b);
        Some((at.line as usize - 1, byte))
    }
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// The last line (0-based) of the block value that starts after line `from` and whose lines are
/// indented past `indent` spaces (or at `indent` and starting with `- `: a sequence written level
/// with its key). `from` itself when there is none.
fn block_end(text: &Text<'_>, from: usize, indent: usize) -> usize {
    let mut last = from;
    for (i, line) in text.lines.iter().enumerate().skip(from + 1) {
        if is_blank_or_comment(line) {
            continue;
        }
        if line.starts_with("---") || line.starts_with("...") {
            break;
        }
        let at = indent_of(line);
        if at > indent || (at == indent && line[at..].starts_with('-')) {
            last = i;
        } else {
            break;
        }
    }
    last
}

fn apply_op(text: &str, root: &Value, spans: &Spans, op: &PatchOperation, json: bool) -> Result<String, String> {
    let (path, value, adds) = match op {
        PatchOperation::Add(a) => (a.path.to_string(), &a.value, true),
        PatchOperation::Replace(r) => (r.path.to_string(), &r.value, false),
        other => return Err(format!("`{}` operations are not written into files", op_name(other))),
    };
    let tokens = tokens(&path);
    let Some((last, parent_tokens)) = tokens.split_last() else {
        return Err("a patch that replaces the whole object is not written into files".into());
    };
    let (parent, parent_spans) =
        walk(root, spans, parent_tokens).ok_or_else(|| format!("`{path}`: its parent is not in the file"))?;
    let text_lines = Text::new(text);
    match parent {
        Value::Object(map) if adds && !map.contains_key(last) && json => {
            add_json_member(&text_lines, parent_spans, map.len(), last, value).map_err(|e| format!("`{path}`: {e}"))
        }
        Value::Object(map) if adds && !map.contains_key(last) => {
            add_key(&text_lines, parent_spans, map.len(), last, value).map_err(|e| format!("`{path}`: {e}"))
        }
        Value::Object(_) => {
            let (_, at) = walk(parent, parent_spans, std::slice::from_ref(last)).ok_or("the key is missing")?;
            replace_value_of_key(&text_lines, at.at, value, json).map_err(|e| format!("`{path}`: {e}"))
        }
        Value::Array(items) if adds && !json && (*last == "-" || last.parse() == Ok(items.len())) => {
            append_item(&text_lines, parent_spans, items.len(), value).map_err(|e| format!("`{path}`: {e}"))
        }
        Value::Array(items) => {
            let index: usize = last.parse().map_err(|_| format!("`{path}`: appending to a list is not written"))?;
            if adds || index >= items.len() {
                return Err(format!("`{path}`: inserting into a list is not written into files"));
            }
            let (_, at) = walk(parent, parent_spans, std::slice::from_ref(last)).ok_or("the item is missing")?;
            replace_scalar_at(&text_lines, at.at, value, json).map_err(|e| format!("`{path}`: {e}"))
        }
        _ => Err(format!("`{path}`: its parent is not a mapping or a list")),
    }
}

fn op_name(op: &PatchOperation) -> &'static str {
    match op {
        PatchOperation::Add(_) => "add",
        PatchOperation::Remove(_) => "remove",
        PatchOperation::Replace(_) => "replace",
        PatchOperation::Move(_) => "move",
        PatchOperation::Copy(_) => "copy",
        PatchOperation::Test(_) => "test",
    }
}

/// Adds `key: value` to the block mapping at `spans` as new lines after its last one.
fn add_key(text: &Text<'_>, spans: &Spans, entries: usize, key: &str, value: &Value) -> Result<String, String> {
    let children = spans.children_positions();
    if entries == 0 || children.is_empty() {
        return Err("the mapping to add to is empty (`{}`); written by hand".into());
    }
    let (line0, _) = text.offset(children[0]).ok_or("the mapping is outside the text")?;
    let first_line = text.lines[line0];
    let (_, first_byte) = text.offset(children[0]).ok_or("the mapping is outside the text")?;
    let before = &first_line[..first_byte];
    if !before.chars().all(|c| c == ' ' || c == '-') {
        return Err("the mapping is written in flow style (`{...}`); written by hand".into());
    }
    let indent = first_byte;
    for at in &children {
        let (l, b) = text.offset(*at).ok_or("the mapping is outside the text")?;
        if b != indent || !text.lines[l][..b].chars().all(|c| c == ' ' || c == '-') {
            return Err("the mapping's keys are not one per line at one indentation".into());
        }
    }
    let last_key = children.iter().map(|p| p.line).max().unwrap_or(children[0].line) as usize - 1;
    let end = block_end(text, last_key, indent);
    let step = indent_step(text);
    let mut new_lines = Vec::new();
    render_entry(key, value, indent, step, &mut new_lines);
    let mut lines = text.owned();
    lines.splice(end + 1..end + 1, new_lines);
    Ok(text.join(&lines))
}

/// Appends `value` to the block sequence at `spans` as new lines after its last item, at its
/// items' indentation (`- ` one per line; a flow `[...]` or an empty list is left to a person).
fn append_item(text: &Text<'_>, spans: &Spans, items: usize, value: &Value) -> Result<String, String> {
    let children = spans.children_positions();
    if items == 0 || children.is_empty() {
        return Err("the list to append to is empty (`[]`); written by hand".into());
    }
    let mut dash = None;
    for at in &children {
        let (l, b) = text.offset(*at).ok_or("the list is outside the text")?;
        let before = &text.lines[l][..b];
        let column =
            before.find('-').filter(|&c| before[..c].chars().all(|ch| ch == ' ') && before[c + 1..].trim().is_empty());
        match (column, dash) {
            (None, _) => return Err("the list is written in flow style (`[...]`); written by hand".into()),
            (Some(c), Some(d)) if c != d => return Err("the list's items are not at one indentation".into()),
            (Some(c), _) => dash = Some(c),
        }
    }
    let dash = dash.ok_or("the list has no items")?;
    let last_item = children.iter().map(|p| p.line).max().unwrap_or(children[0].line) as usize - 1;
    let end = block_end(text, last_item, dash);
    let mut new_lines = Vec::new();
    render_value_lines(&Value::Array(vec![value.clone()]), dash, indent_step(text), &mut new_lines);
    let mut lines = text.owned();
    lines.splice(end + 1..end + 1, new_lines);
    Ok(text.join(&lines))
}

/// The file's indentation step: the smallest positive difference between a line's indentation
/// and the next deeper one's (2 when there is none).
fn indent_step(text: &Text<'_>) -> usize {
    let mut step = usize::MAX;
    let mut previous: Option<usize> = None;
    for line in &text.lines {
        if is_blank_or_comment(line) {
            continue;
        }
        let at = indent_of(line);
        if let Some(p) = previous {
            if at > p {
                step = step.min(at - p);
            }
        }
        previous = Some(at);
    }
    if step == usize::MAX || step > 8 {
        2
    } else {
        step
    }
}

/// Replaces the value of the key at `key_at` (its line and column).
/// Adds `"key": value` to the JSON object at `spans`: on a line of its own before the first
/// member, at its indentation, when members are one per line; else right after the `{`.
fn add_json_member(text: &Text<'_>, spans: &Spans, entries: usize, key: &str, value: &Value) -> Result<String, String> {
    let member = format!(
        "{}: {}",
        serde_json::to_string(key).map_err(|e| e.to_string())?,
        serde_json::to_string(value).map_err(|e| e.to_string())?
    );
    let mut lines = text.owned();
    let children = spans.children_positions();
    if entries == 0 || children.is_empty() {
        // `{}`: found after the object's key (or at the object itself, for the root).
        let (line, byte) = text.offset(spans.at).ok_or("the object is outside the text")?;
        let source = text.lines[line];
        let start =
            if source[byte..].starts_with('{') { byte } else { byte + skip_key(&source[byte..]).ok_or("no `:`")? };
        let rest = &source[start..];
        let spaces = rest.len() - rest.trim_start().len();
        if !rest.trim_start().starts_with("{}") {
            return Err("the empty object is not written `{}`".into());
        }
        let at = start + spaces;
        lines[line] = format!("{}{{{member}}}{}", &source[..at], &source[at + 2..]);
        return Ok(text.join(&lines));
    }
    let (line, byte) = text.offset(children[0]).ok_or("the object is outside the text")?;
    let source = text.lines[line];
    if source[..byte].trim().is_empty() {
        lines.insert(line, format!("{}{member},", &source[..byte]));
    } else {
        lines[line] = format!("{}{member}, {}", &source[..byte], &source[byte..]);
    }
    Ok(text.join(&lines))
}

fn replace_value_of_key(text: &Text<'_>, key_at: Position, value: &Value, json: bool) -> Result<String, String> {
    let (line, key_byte) = text.offset(key_at).ok_or("the key is outside the text")?;
    let source = text.lines[line];
    let after_key = skip_key(&source[key_byte..]).ok_or("the key is not followed by `:`")?;
    let value_byte = key_byte + after_key;
    let rest = &source[value_byte..];
    let inline = strip_comment(rest).trim();
    let mut lines = text.owned();
    if inline.is_empty() {
        // No value on the key's line (null, or a block value on the lines below): the key's line
        // and those lines become the new value's, the key's comment kept.
        let end = block_end(text, line, key_byte);
        let key_text = source[..value_byte].trim_end();
        let comment = spaced(rest);
        let mut new_lines = Vec::new();
        match render_inline(value) {
            Some(v) => new_lines.push(format!("{key_text} {v}{comment}")),
            None => {
                new_lines.push(format!("{key_text}{comment}"));
                let step = indent_step(text);
                render_value_lines(value, key_byte + step, step, &mut new_lines);
            }
        }
        lines.splice(line..=end, new_lines);
        return Ok(text.join(&lines));
    }
    let in_flow = json || source[..key_byte].trim_end().ends_with(['{', ',']);
    let token = token_len(rest.trim_start(), in_flow).ok_or("its value is not a one-line scalar or flow list")?;
    let start = value_byte + (rest.len() - rest.trim_start().len());
    let new = if json { serde_json::to_string(value).ok() } else { render_inline(value) }
        .ok_or("the new value is not written inline")?;
    lines[line] = format!("{}{}{}", &source[..start], new, &source[start + token..]);
    Ok(text.join(&lines))
}

fn spaced(comment: &str) -> String {
    if comment.trim().is_empty() {
        String::new()
    } else {
        format!(" {}", comment.trim())
    }
}

/// Replaces the scalar that starts at `at` (a sequence item).
fn replace_scalar_at(text: &Text<'_>, at: Position, value: &Value, json: bool) -> Result<String, String> {
    let (line, byte) = text.offset(at).ok_or("the item is outside the text")?;
    let source = text.lines[line];
    let in_flow = json || source[..byte].trim_end().ends_with(['[', ',']);
    let token = token_len(&source[byte..], in_flow).ok_or("the item is not a one-line scalar")?;
    let new = if json { serde_json::to_string(value).ok() } else { render_inline(value) }
        .ok_or("the new value is not written inline")?;
    let mut lines = text.owned();
    lines[line] = format!("{}{}{}", &source[..byte], new, &source[byte + token..]);
    Ok(text.join(&lines))
}

/// The length of the key at the start of `s` and the `:` after it, with the spaces after that.
fn skip_key(s: &str) -> Option<usize> {
    let key = match s.as_bytes().first()? {
        b'"' | b'\'' => quoted_len(s)?,
        _ => s.find(':')?,
    };
    let rest = s[key..].strip_prefix(':')?;
    if !(rest.is_empty() || rest.starts_with(' ')) {
        return None;
    }
    Some(key + 1)
}

/// The length of the scalar or one-line flow collection at the start of `s`; `in_flow`: inside a
/// flow list, where `,` and `]` end a plain scalar.
fn token_len(s: &str, in_flow: bool) -> Option<usize> {
    match s.as_bytes().first()? {
        b'"' | b'\'' => quoted_len(s),
        b'[' | b'{' => {
            let bytes = s.as_bytes();
            let mut depth = 0usize;
            let mut i = 0;
            while i < bytes.len() {
                match bytes[i] {
                    b'"' | b'\'' => i += quoted_len(&s[i..])? - 1,
                    b'[' | b'{' => depth += 1,
                    b']' | b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        b'|' | b'>' | b'&' | b'*' | b'!' => None,
        _ => {
            let plain = strip_comment(s);
            let end = if in_flow { plain.find([',', ']', '}']).unwrap_or(plain.len()) } else { plain.len() };
            Some(plain[..end].trim_end().len())
        }
    }
}

/// The length of the quoted scalar at the start of `s`, quotes included.
fn quoted_len(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let quote = *bytes.first()?;
    let mut i = 1;
    while i < bytes.len() {
        let b = bytes[i];
        if quote == b'"' && b == b'\\' {
            i += 2;
            continue;
        }
        if b == quote {
            if quote == b'\'' && bytes.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

/// `value` on one line: a scalar, or a flow list of scalars; `None` for what a person writes as
/// a block (non-empty mappings, lists of mappings).
fn render_inline(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(render_string(s)),
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            let items: Option<Vec<String>> = items.iter().map(render_inline).collect();
            Some(format!("[{}]", items?.join(", ")))
        }
        Value::Object(map) if map.is_empty() => Some("{}".into()),
        Value::Object(_) | Value::Array(_) => None,
        other => Some(other.to_string()),
    }
}

fn render_string(s: &str) -> String {
    let looks_like_something_else = s.parse::<f64>().is_ok()
        || matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "null" | "~" | ""
        );
    let plain = !looks_like_something_else
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '/' || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "._/-".contains(c));
    if plain {
        s.to_string()
    } else if s.contains('"') && !s.contains('\'') && !s.chars().any(char::is_control) {
        format!("'{s}'")
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

fn render_entry(key: &str, value: &Value, indent: usize, step: usize, out: &mut Vec<String>) {
    let pad = " ".repeat(indent);
    let key = render_string(key);
    match render_inline(value) {
        Some(v) => out.push(format!("{pad}{key}: {v}")),
        None => {
            out.push(format!("{pad}{key}:"));
            render_value_lines(value, indent + step, step, out);
        }
    }
}

/// A mapping or list as block lines at `indent`.
fn render_value_lines(value: &Value, indent: usize, step: usize, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                render_entry(k, v, indent, step, out);
            }
        }
        Value::Array(items) => {
            let pad = " ".repeat(indent);
            for item in items {
                match render_inline(item) {
                    Some(v) => out.push(format!("{pad}- {v}")),
                    None => {
                        let mut nested = Vec::new();
                        render_value_lines(item, indent + 2, step, &mut nested);
                        if let Some(first) = nested.first_mut() {
                            *first = format!("{pad}- {}", first.trim_start());
                        }
                        out.extend(nested);
                    }
                }
            }
        }
        other => out.push(format!("{}{}", " ".repeat(indent), render_inline(other).unwrap_or_default())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patch(ops: Value) -> Patch {
        serde_json::from_value(ops).unwrap()
    }

    /// `text`'s document `doc` with `ops` applied, which must read back as the patched object.
    fn edited(text: &str, doc: usize, ops: Value) -> String {
        apply(text, doc, &patch(ops)).unwrap_or_else(|e| panic!("refused: {e}\n{text}"))
    }

    #[test]
    fn a_new_key_goes_under_its_siblings_and_comments_stay() {
        let text = "\
# the shop's API
apiVersion: apps/v1   # pinned
kind: Deployment
metadata:
  name: api # who owns it: team-shop
  labels:
    app: api
    # version comes from CI
    version: v1

  # between entries
spec:
  template:
    spec:
      containers:
      # the app
      - name: api
        image: shop/api:1.0  # tag
";
        let out = edited(text, 0, json!([{"op": "add", "path": "/metadata/labels/team", "value": "shop"}]));
        assert_eq!(out, text.replace("    version: v1\n", "    version: v1\n    team: shop\n"));
        let out = edited(
            text,
            0,
            json!([{"op": "add", "path": "/spec/template/metadata", "value": {"annotations": {"a.io/x": "{ \"k\": true }"}}}]),
        );
        assert_eq!(
            out,
            text.replace("        image: shop/api:1.0  # tag\n", "        image: shop/api:1.0  # tag\n    metadata:\n      annotations:\n        a.io/x: '{ \"k\": true }'\n")
        );
        let out = edited(
            text,
            0,
            json!([{"op": "add", "path": "/spec/template/spec/containers/0/lifecycle", "value": {"preStop": {"sleep": {"seconds": 5}}}}]),
        );
        assert!(
            out.ends_with("        image: shop/api:1.0  # tag\n        lifecycle:\n          preStop:\n            sleep:\n              seconds: 5\n"),
            "{out}"
        );
    }

    #[test]
    fn a_replaced_scalar_keeps_its_line_and_comment() {
        let text =
            "kind: Service\nspec:\n  ports:\n  - name: web   # the site\n    port: 80\n  - {name: x, port: 81}\n";
        let out = edited(text, 0, json!([{"op": "replace", "path": "/spec/ports/0/name", "value": "http-web"}]));
        assert_eq!(out, text.replace("name: web   # the site", "name: http-web   # the site"));
        let out = edited(text, 0, json!([{"op": "replace", "path": "/spec/ports/1/name", "value": "tcp-x"}]));
        assert_eq!(
            out,
            text.replace("{name: x,", "{name: tcp-x,"),
            "a scalar inside a flow mapping is replaced in place"
        );
        let text = "kind: DestinationRule\nspec:\n  exportTo: ['*', other]  # too wide\n";
        let out = edited(text, 0, json!([{"op": "replace", "path": "/spec/exportTo", "value": ["."]}]));
        assert_eq!(out, "kind: DestinationRule\nspec:\n  exportTo: [\".\"]  # too wide\n");
        let text = "kind: DestinationRule\nspec:\n  exportTo:\n  - '*'\n  - other\n  host: a\n";
        let out = edited(text, 0, json!([{"op": "replace", "path": "/spec/exportTo", "value": ["."]}]));
        assert_eq!(out, "kind: DestinationRule\nspec:\n  exportTo: [\".\"]\n  host: a\n");
    }

    #[test]
    fn crlf_four_spaces_flush_lists_and_no_final_newline_are_kept() {
        let text = "kind: Service\r\nmetadata:\r\n    name: api\r\nspec:\r\n    ports:\r\n    -   port: 80\r\n        name: web";
        let out = edited(text, 0, json!([{"op": "add", "path": "/metadata/labels", "value": {"app": "api"}}]));
        assert_eq!(out, text.replace("    name: api\r\n", "    name: api\r\n    labels:\r\n        app: api\r\n"));
        let out = edited(text, 0, json!([{"op": "replace", "path": "/spec/ports/0/name", "value": "http-web"}]));
        assert_eq!(out, text.replace("name: web", "name: http-web"));
        assert!(!out.ends_with('\n'));
        let flush = "spec:\n  ports:\n  - port: 80\n    name: web\n  selector:\n    app: a\nkind: Service\n";
        let out = edited(flush, 0, json!([{"op": "add", "path": "/spec/type", "value": "ClusterIP"}]));
        assert_eq!(out, flush.replace("    app: a\n", "    app: a\n  type: ClusterIP\n"));
    }

    #[test]
    fn only_the_named_document_of_a_stream_changes() {
        let text = "# first\nkind: A\nmetadata:\n  name: a\n---\n# second, with a comment\nkind: B\nmetadata:\n  name: b\n...\n---\nkind: C\n";
        let out = edited(text, 1, json!([{"op": "add", "path": "/metadata/namespace", "value": "shop"}]));
        assert_eq!(out, text.replace("  name: b\n", "  name: b\n  namespace: shop\n"));
        let quoted = "kind: A\nmetadata:\n  \"name\": a\n  'labels': {}\n";
        let out = edited(quoted, 0, json!([{"op": "replace", "path": "/metadata/name", "value": "b"}]));
        assert_eq!(out, quoted.replace("\"name\": a", "\"name\": b"));
    }

    #[test]
    fn what_cannot_be_edited_safely_is_refused_with_a_reason() {
        let refused = |text: &str, ops: Value| apply(text, 0, &patch(ops)).unwrap_err();
        let add_label = json!([{"op": "add", "path": "/metadata/labels/x", "value": "y"}]);
        let e = refused("kind: A\nmetadata:\n  labels: &l {a: b}\nother: *l\n", add_label.clone());
        assert!(e.contains("anchor or alias"), "{e}");
        let e = refused("kind: A\nbase: &b {a: 1}\nmetadata:\n  <<: *b\n  labels: {a: b}\n", add_label.clone());
        assert!(e.contains("merge key") || e.contains("anchor"), "{e}");
        let e = refused("kind: A\nmetadata:\n  name: {{ .Values.name }}\n  labels:\n    a: b\n", add_label.clone());
        assert!(e.contains("template") || e.contains("parse"), "{e}");
        let e = refused("kind: A\nmetadata: {labels: {a: b}}\n", add_label.clone());
        assert!(e.contains("flow"), "{e}");
        let e = refused("kind: A\nmetadata:\n  labels: {}\n", add_label);
        assert!(e.contains("empty"), "{e}");
        let e = refused(
            "kind: A\nspec:\n  script: |\n    echo\n",
            json!([{"op": "replace", "path": "/spec/script", "value": "x"}]),
        );
        assert!(e.contains("one-line"), "{e}");
        let e = refused("kind: A\n", json!([{"op": "remove", "path": "/kind"}]));
        assert!(e.contains("`remove`"), "{e}");
        let e = refused("kind: A\n", json!([{"op": "add", "path": "/spec/x", "value": 1}]));
        assert!(e.contains("does not apply"), "{e}");
    }

    #[test]
    fn json_stays_json_with_its_indentation() {
        let text = "{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"Service\",\n  \"metadata\": {\n    \"name\": \"api\",\n    \"annotations\": {}\n  },\n  \"spec\": {\n    \"ports\": [\n      {\"name\": \"web\", \"port\": 80}\n    ],\n    \"exportTo\": [\"*\"]\n  }\n}\n";
        let out = edited(text, 0, json!([{"op": "replace", "path": "/spec/ports/0/name", "value": "http-web"}]));
        assert_eq!(out, text.replace("\"name\": \"web\"", "\"name\": \"http-web\""));
        let out = edited(text, 0, json!([{"op": "add", "path": "/metadata/labels", "value": {"app": "api"}}]));
        assert_eq!(
            out,
            text.replace("    \"name\": \"api\",\n", "    \"labels\": {\"app\":\"api\"},\n    \"name\": \"api\",\n")
        );
        let out = edited(text, 0, json!([{"op": "add", "path": "/metadata/annotations/a", "value": "b"}]));
        assert!(out.contains("\"annotations\": {\"a\": \"b\"}\n"), "{out}");
        let out = edited(text, 0, json!([{"op": "replace", "path": "/spec/exportTo", "value": ["."]}]));
        assert!(out.contains("\"exportTo\": [\".\"]\n"), "{out}");
        serde_json::from_str::<Value>(&out).expect("still JSON");
        let inline = "{\"kind\": \"A\", \"metadata\": {\"name\": \"a\"}}";
        let out = edited(inline, 0, json!([{"op": "add", "path": "/metadata/namespace", "value": "shop"}]));
        assert_eq!(out, "{\"kind\": \"A\", \"metadata\": {\"namespace\": \"shop\", \"name\": \"a\"}}");
    }

    #[test]
    fn strings_are_written_so_they_read_back_as_strings() {
        for s in
            ["true", "1.5", "no", "", "a: b", "# x", "it's", "say \"hi\"", "tab\there", "-dash", "ok-value", "/path"]
        {
            let out =
                edited("kind: A\nmetadata:\n  name: a\n", 0, json!([{"op": "add", "path": "/metadata/x", "value": s}]));
            let back = crate::yaml::parse_one(&out).unwrap().value;
            assert_eq!(back["metadata"]["x"], json!(s), "{out}");
        }
    }
}
