//! A scanner for the block YAML that manifests are almost always written in, feeding the same
//! [`Builder`] as `yaml-rust2`'s event parser, at a fraction of its cost (the event parser was two
//! thirds of loading a manifest repo).
//!
//! It reads printable ASCII only, and of YAML only: comments, `---` between documents, block
//! mappings with simple keys, block sequences (indented or level with their key, compact
//! `- key: value` items), single-line plain and quoted scalars without escapes, one-line flow
//! sequences of scalars, `{}`, and `|` / `|-` literals. Anything else (anchors, aliases, tags,
//! merge keys, multi-line plain or quoted scalars, escapes, flow mappings, tabs, CR, non-ASCII,
//! JSON) answers `None`, and the whole text goes to `yaml-rust2`: a text is never read partly by
//! one and partly by the other.
//!
//! For a text it accepts, the events it gives the builder are those `yaml-rust2` gives, with the
//! same positions wherever the builder keeps one; `yaml_front_ends_agree` holds it to that, value,
//! span and error, over every manifest in the repository and a corpus of edge cases.

use super::{Builder, Document, Limits, Position, YamlError};
use yaml_rust2::parser::Event;
use yaml_rust2::scanner::TScalarStyle;

/// The text is outside the subset: parse it with `yaml-rust2`.
struct Outside;

type Scan<T> = Result<T, Outside>;

/// The documents of `text` (the byte-order marks already dropped), or `None` when `text` is not
/// in the subset.
pub(super) fn parse(text: &str, limits: Limits) -> Option<Result<Vec<Document>, YamlError>> {
    if !printable_ascii_lines(text.as_bytes()) {
        return None;
    }
    let mut lines = Vec::with_capacity(text.len() / 16);
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', text.as_bytes()).chain(std::iter::once(text.len())) {
        lines.push(Line::new(text.get(start..end)?));
        start = end + 1;
    }
    let mut scanner = Scanner { lines, builder: Builder { limits, ..Builder::default() }, depth: 0 };
    scanner.stream().ok()?;
    let mut builder = scanner.builder;
    Some(match builder.error.take() {
        Some(error) => Err(error),
        None => Ok(builder.documents),
    })
}

/// Only printable ASCII and line feeds. Checked 32 bytes at a time with no early exit inside a
/// block, which the compiler turns into vector compares.
fn printable_ascii_lines(bytes: &[u8]) -> bool {
    let outside = |b: u8| (b < b' ' && b != b'\n') | (b > b'~');
    let mut blocks = bytes.chunks_exact(32);
    for block in &mut blocks {
        if block.iter().fold(false, |any, &b| any | outside(b)) {
            return false;
        }
    }
    !blocks.remainder().iter().any(|&b| outside(b))
}

/// One line of the text (without its line feed), measured once.
struct Line<'t> {
    text: &'t str,
    indent: usize,
    /// Neither blank nor only a comment.
    content: bool,
}

impl<'t> Line<'t> {
    fn new(text: &'t str) -> Self {
        let indent = indent(text);
        Line { text, indent, content: !matches!(text.as_bytes().get(indent), None | Some(b'#')) }
    }
}

struct Scanner<'t> {
    lines: Vec<Line<'t>>,
    builder: Builder,
    /// Nesting of the node being scanned; the builder reports the depth limit, this only keeps
    /// the scanner's own recursion within it.
    depth: usize,
}

fn indent(line: &str) -> usize {
    line.bytes().take_while(|b| *b == b' ').count()
}

/// `---`, alone or before a comment.
fn is_document_start(line: &str) -> bool {
    line.strip_prefix("---").is_some_and(|rest| {
        let rest = rest.trim_start_matches(' ');
        rest.is_empty() || (rest.starts_with('#') && rest.len() < line.len() - 3)
    })
}

/// A block sequence entry starts here: `-` then a space or the end of the line.
fn is_entry(rest: &str) -> bool {
    rest == "-" || rest.starts_with("- ")
}

/// Where a simple key ends (its `:`), when `rest` starts with one. Keys are kept to the characters
/// Kubernetes uses in field names, labels and annotations.
fn key_end(rest: &str) -> Option<usize> {
    let bytes = rest.as_bytes();
    let first = *bytes.first()?;
    if !first.is_ascii_alphanumeric() && first != b'_' && first != b'.' && first != b'/' {
        return None;
    }
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b':' => {
                let ends = matches!(bytes.get(i + 1), None | Some(b' '));
                return (ends && i <= 512).then_some(i);
            }
            b if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-') => {}
            _ => return None,
        }
    }
    None
}

/// The end of the line's content before a comment (` #`), trailing spaces dropped, from `from`.
fn content_end(line: &str, from: usize) -> usize {
    let bytes = line.as_bytes();
    let mut end = bytes.len();
    let mut i = from;
    while i < bytes.len() {
        if bytes[i] == b'#' && i > 0 && bytes[i - 1] == b' ' {
            end = i;
            break;
        }
        i += 1;
    }
    while end > from && bytes[end - 1] == b' ' {
        end -= 1;
    }
    end
}

/// Nothing but spaces and perhaps a comment after the token that ends at `from` (a comment needs
/// a space before it there).
fn rest_is_blank(line: &str, from: usize) -> bool {
    let Some(rest) = line.get(from..) else { return false };
    let trimmed = rest.trim_start_matches(' ');
    trimmed.is_empty() || (trimmed.starts_with('#') && trimmed.len() < rest.len())
}

impl<'t> Scanner<'t> {
    fn line(&self, i: usize) -> Scan<&'t str> {
        self.lines.get(i).map(|line| line.text).ok_or(Outside)
    }

    fn indent_of(&self, i: usize) -> Scan<usize> {
        self.lines.get(i).map(|line| line.indent).ok_or(Outside)
    }

    /// The text of `line` from `column` on.
    fn from(&self, line: usize, column: usize) -> Scan<&'t str> {
        self.line(line)?.get(column..).ok_or(Outside)
    }

    fn at(&self, line: usize, column: usize) -> Position {
        Position { line: line as u32 + 1, column: column as u32 + 1 }
    }

    fn emit(&mut self, event: Event, at: Position) {
        self.builder.event(event, at);
    }

    fn scalar(&mut self, text: &str, style: TScalarStyle, at: Position) {
        self.emit(Event::Scalar(text.to_string(), style, 0, None), at);
    }

    /// The first line at or after `from` with content (not blank, not only a comment).
    fn next_content(&self, from: usize) -> Option<usize> {
        (from..self.lines.len()).find(|&i| self.lines[i].content)
    }

    fn stream(&mut self) -> Scan<()> {
        let mut i = 0;
        while let Some(line) = self.next_content(i) {
            let text = self.line(line)?;
            if is_document_start(text) {
                i = line + 1;
                continue;
            }
            if self.indent_of(line)? != 0 {
                return Err(Outside);
            }
            i = self.block_node(line, 0)?;
            if let Some(next) = self.next_content(i) {
                if !is_document_start(self.line(next)?) {
                    return Err(Outside);
                }
            }
        }
        Ok(())
    }

    /// A block mapping or sequence whose first token is at (`line`, `column`). Returns the line
    /// after it.
    fn block_node(&mut self, line: usize, column: usize) -> Scan<usize> {
        self.depth += 1;
        if self.depth > self.builder.limits.max_depth + 1 {
            return Err(Outside);
        }
        let rest = self.from(line, column)?;
        let next = if is_entry(rest) {
            self.sequence(line, column)
        } else if key_end(rest).is_some() {
            self.mapping(line, column)
        } else {
            Err(Outside)
        };
        self.depth -= 1;
        next
    }

    /// The line of the next token at `indent`, when there is one there that continues the node:
    /// `None` when the node ends (a dedent, another document, the end), `Outside` when something
    /// is indented deeper than the node allows.
    fn continues_at(&self, from: usize, indent_of_node: usize) -> Scan<Option<usize>> {
        let Some(next) = self.next_content(from) else { return Ok(None) };
        let text = self.line(next)?;
        if is_document_start(text) {
            return Ok(None);
        }
        match self.indent_of(next)? {
            n if n == indent_of_node => Ok(Some(next)),
            n if n < indent_of_node => Ok(None),
            _ => Err(Outside),
        }
    }

    fn mapping(&mut self, first: usize, column: usize) -> Scan<usize> {
        self.emit(Event::MappingStart(0, None), self.at(first, column));
        let mut line = first;
        loop {
            let rest = self.from(line, column)?;
            let end = key_end(rest).ok_or(Outside)?;
            self.scalar(&rest[..end], TScalarStyle::Plain, self.at(line, column));
            let after = self.value(line, column + end + 1, column)?;
            match self.continues_at(after, column)? {
                // An entry at the mapping's own indent that is no key is an error in YAML.
                Some(next) => line = next,
                None => {
                    self.emit(Event::MappingEnd, self.at(after, 0));
                    return Ok(after);
                }
            }
        }
    }

    fn sequence(&mut self, first: usize, column: usize) -> Scan<usize> {
        self.emit(Event::SequenceStart(0, None), self.at(first, column));
        let mut line = first;
        loop {
            let text = self.line(line)?;
            let rest = self.from(line, column)?;
            if !is_entry(rest) {
                return Err(Outside);
            }
            let item = column + 1 + indent(&rest[1..]);
            if rest_is_blank(text, column + 1) {
                // An entry whose node starts on the next line.
                return Err(Outside);
            }
            let item_rest = self.from(line, item)?;
            let after = if is_entry(item_rest) || key_end(item_rest).is_some() {
                self.block_node(line, item)?
            } else {
                self.inline_value(line, item, column)?
            };
            // A sequence level with its parent key ends at the next key; one deeper ends at a dedent.
            match self.continues_at(after, column)? {
                Some(next) if is_entry(self.from(next, column)?) => line = next,
                _ => {
                    self.emit(Event::SequenceEnd, self.at(after, 0));
                    return Ok(after);
                }
            }
        }
    }

    /// The value of the key on `line` of a mapping at `indent_of_map`, after the key's `:` at
    /// `after_colon`. Returns the line after it.
    fn value(&mut self, line: usize, after_colon: usize, indent_of_map: usize) -> Scan<usize> {
        let text = self.line(line)?;
        if !rest_is_blank(text, after_colon) {
            let start = after_colon + indent(text.get(after_colon..).ok_or(Outside)?);
            return self.inline_value(line, start, indent_of_map);
        }
        if let Some(next) = self.next_content(line + 1) {
            let n = self.indent_of(next)?;
            // A node indented under the key, or a list level with it (as kubectl writes them).
            let under = n > indent_of_map || (n == indent_of_map && is_entry(self.from(next, n)?));
            if under && !is_document_start(self.line(next)?) {
                return self.block_node(next, n);
            }
        }
        // No value: null (its span is the key's).
        self.scalar("", TScalarStyle::Plain, self.at(line, after_colon));
        Ok(line + 1)
    }

    /// A scalar, flow sequence, `{}` or literal starting at (`line`, `start`), in a node at
    /// `indent_of_parent`. Returns the line after it.
    fn inline_value(&mut self, line: usize, start: usize, indent_of_parent: usize) -> Scan<usize> {
        let text = self.line(line)?;
        let at = self.at(line, start);
        let rest = text.get(start..).ok_or(Outside)?;
        let end = match rest.as_bytes().first().ok_or(Outside)? {
            b'"' | b'\'' => {
                let (value, style, len) = quoted(rest).ok_or(Outside)?;
                self.scalar(&value, style, at);
                start + len
            }
            b'[' => self.flow_sequence(line, start)?,
            b'{' if rest.starts_with("{}") => {
                self.emit(Event::MappingStart(0, None), at);
                self.emit(Event::MappingEnd, self.at(line, start + 1));
                start + 2
            }
            b'|' => return self.literal(line, start, indent_of_parent),
            b'-' if is_entry(rest) => return Err(Outside),
            b'?' | b':' | b',' | b']' | b'{' | b'}' | b'#' | b'&' | b'*' | b'!' | b'>' | b'%' | b'@' | b'`' => {
                return Err(Outside)
            }
            _ => {
                let end = content_end(text, start);
                let plain = text.get(start..end).ok_or(Outside)?;
                if plain.contains(": ") || plain.ends_with(':') {
                    return Err(Outside);
                }
                self.scalar(plain, TScalarStyle::Plain, at);
                end
            }
        };
        if !rest_is_blank(text, end) {
            return Err(Outside);
        }
        // A deeper line next would continue a multi-line scalar (or be an error).
        if let Some(next) = self.next_content(line + 1) {
            let next_text = self.line(next)?;
            if !is_document_start(next_text) && self.indent_of(next)? > indent_of_parent {
                return Err(Outside);
            }
        }
        Ok(line + 1)
    }

    /// `[a, "b", 'c']` on one line. Returns the column after `]`.
    fn flow_sequence(&mut self, line: usize, start: usize) -> Scan<usize> {
        let text = self.line(line)?;
        let bytes = text.as_bytes();
        self.emit(Event::SequenceStart(0, None), self.at(line, start));
        let skip_spaces = |mut i: usize| {
            while bytes.get(i) == Some(&b' ') {
                i += 1;
            }
            i
        };
        let mut i = skip_spaces(start + 1);
        if bytes.get(i) == Some(&b']') {
            self.emit(Event::SequenceEnd, self.at(line, i));
            return Ok(i + 1);
        }
        loop {
            let item_at = self.at(line, i);
            let rest = text.get(i..).ok_or(Outside)?;
            match *bytes.get(i).ok_or(Outside)? {
                b'"' | b'\'' => {
                    let (value, style, len) = quoted(rest).ok_or(Outside)?;
                    self.scalar(&value, style, item_at);
                    i += len;
                }
                first => {
                    let len = rest.bytes().take_while(|b| !matches!(b, b',' | b']')).count();
                    let plain = rest[..len].trim_end_matches(' ');
                    let indicator = matches!(
                        first,
                        b'-' | b'?'
                            | b':'
                            | b'['
                            | b'{'
                            | b'}'
                            | b'#'
                            | b'&'
                            | b'*'
                            | b'!'
                            | b'|'
                            | b'>'
                            | b'%'
                            | b'@'
                            | b'`'
                    );
                    let plain_in_flow =
                        plain.bytes().all(|b| !matches!(b, b'[' | b'{' | b'}' | b'#' | b':' | b'"' | b'\''));
                    if plain.is_empty() || (indicator && first != b'-') || !plain_in_flow {
                        return Err(Outside);
                    }
                    if first == b'-' && matches!(plain.as_bytes().get(1), None | Some(b' ')) {
                        return Err(Outside);
                    }
                    self.scalar(plain, TScalarStyle::Plain, item_at);
                    i += plain.len();
                }
            }
            i = skip_spaces(i);
            match bytes.get(i) {
                Some(b']') => {
                    self.emit(Event::SequenceEnd, self.at(line, i));
                    return Ok(i + 1);
                }
                Some(b',') => {
                    i = skip_spaces(i + 1);
                    if matches!(bytes.get(i), None | Some(b']') | Some(b',')) {
                        return Err(Outside);
                    }
                }
                _ => return Err(Outside),
            }
        }
    }

    /// A `|` or `|-` literal whose header is at (`line`, `start`), under a node at
    /// `indent_of_parent`. Returns the line after its last content line.
    fn literal(&mut self, line: usize, start: usize, indent_of_parent: usize) -> Scan<usize> {
        let keep_final_newline = match self.from(line, start)?.trim_end_matches(' ') {
            "|" => true,
            "|-" => false,
            _ => return Err(Outside),
        };
        let first = line + 1;
        let content_indent = self.indent_of(first)?;
        if content_indent <= indent_of_parent || content_indent == self.line(first)?.len() {
            return Err(Outside);
        }
        let mut value = String::new();
        let mut blank_run = 0;
        let mut last = first;
        let mut i = first;
        while let Some(&Line { text, indent: n, .. }) = self.lines.get(i) {
            if n == text.len() {
                // Spaces past the content indent would be content: leave that to yaml-rust2.
                if n > content_indent {
                    return Err(Outside);
                }
                blank_run += 1;
            } else if n >= content_indent {
                if i > first {
                    value.push('\n');
                }
                for _ in 0..blank_run {
                    value.push('\n');
                }
                blank_run = 0;
                value.push_str(&text[content_indent..]);
                last = i;
            } else {
                break;
            }
            i += 1;
        }
        // Running into a last line without its line break: leave the chomping to yaml-rust2.
        if i == self.lines.len() && self.lines.last().is_some_and(|line| !line.text.is_empty()) {
            return Err(Outside);
        }
        if keep_final_newline {
            value.push('\n');
        }
        self.scalar(&value, TScalarStyle::Literal, self.at(first, content_indent));
        Ok(last + 1)
    }
}

/// A quoted scalar at the start of `rest` that ends on its line and has no escapes:
/// its value, style and length in the text.
fn quoted(rest: &str) -> Option<(String, TScalarStyle, usize)> {
    let bytes = rest.as_bytes();
    match bytes.first()? {
        b'"' => {
            let close = 1 + rest.get(1..)?.find('"')?;
            let inner = rest.get(1..close)?;
            (!inner.contains('\\')).then(|| (inner.to_string(), TScalarStyle::DoubleQuoted, close + 1))
        }
        b'\'' => {
            let mut value = String::new();
            let mut i = 1;
            loop {
                let run = rest.get(i..)?.find('\'')?;
                value.push_str(rest.get(i..i + run)?);
                i += run;
                if bytes.get(i + 1) == Some(&b'\'') {
                    value.push('\'');
                    i += 2;
                } else {
                    return Some((value, TScalarStyle::SingleQuoted, i + 1));
                }
            }
        }
        _ => None,
    }
}
