//! YAML text to JSON values, with a span tree that maps a field path back to its line.
//!
//! Built on `yaml-rust2`'s event parser so one pass yields both the value and the positions.
//! Kubernetes semantics where they differ from a generic loader: duplicate keys are an error
//! (as `kubectl` rejects them), and empty documents in a stream are skipped. What `kubectl` accepts
//! is read the way it reads it, so nothing hides from a check: a byte-order mark is dropped, and
//! merge keys (`<<: *base`) are applied, explicit keys winning.
//!
//! Every input is bounded ([`Limits`]): text size, nesting depth, and the nodes that anchors and
//! aliases copy (a few hundred bytes of nested aliases otherwise expand to gigabytes).

use crate::path::{FieldPath, Segment};
use serde_json::{Map, Number, Value};
use std::collections::HashMap;
use std::fmt;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

// By path, so build.rs, which includes this file by path too, finds it.
#[path = "yaml/block_subset.rs"]
mod block_subset;

/// A position in the source text: 1-based line and column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    pub line: u32,
    pub column: u32,
}

/// Positions of one node and its children, parallel to the JSON value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Spans {
    pub at: Position,
    children: Children,
}

/// A field name in the span tree: Kubernetes' field names fit inline, so keeping one beside the
/// value's own copy costs no allocation.
type SpanKey = compact_str::CompactString;

#[derive(Clone, Debug, Default, PartialEq)]
enum Children {
    #[default]
    Leaf,
    Map(Vec<(SpanKey, Spans)>),
    Seq(Vec<Spans>),
}

impl Spans {
    /// The span of the deepest node on `path` that exists: a missing field points at its parent.
    pub fn locate(&self, path: &FieldPath) -> Position {
        self.descend(path.segments()).at
    }

    /// The span of a direct child, if it exists.
    pub fn child(&self, seg: &Segment) -> Option<&Spans> {
        match (seg, &self.children) {
            (Segment::Key(k), Children::Map(entries)) => entries.iter().find(|(name, _)| name == k).map(|(_, s)| s),
            (Segment::Index(i), Children::Seq(items)) => items.get(*i),
            _ => None,
        }
    }

    /// Where each direct child starts, in order: a mapping's keys, a sequence's items.
    pub fn children_positions(&self) -> Vec<Position> {
        match &self.children {
            Children::Leaf => Vec::new(),
            Children::Map(entries) => entries.iter().map(|(_, s)| s.at).collect(),
            Children::Seq(items) => items.iter().map(|s| s.at).collect(),
        }
    }

    /// The sub-tree at `path` (or the deepest existing ancestor).
    pub fn descend(&self, segments: &[Segment]) -> &Spans {
        let mut node = self;
        for seg in segments {
            let next = match (seg, &node.children) {
                (Segment::Key(k), Children::Map(entries)) => entries.iter().find(|(name, _)| name == k).map(|(_, s)| s),
                (Segment::Index(i), Children::Seq(items)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node
    }
}

/// One YAML document of a stream.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    pub value: Value,
    pub spans: Spans,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct YamlError {
    pub at: Position,
    pub message: String,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.at.line, self.at.column, self.message)
    }
}

impl std::error::Error for YamlError {}

/// The bounds of the YAML front end. Every host that parses YAML uses [`Limits::DEFAULT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest text, in bytes.
    pub max_bytes: usize,
    /// Deepest nesting of mappings and sequences. Kubernetes objects stay far below it, and JSON
    /// handed to the wasm modules (which wrap it two levels deeper) stays within serde_json's 128.
    pub max_depth: usize,
    /// Nodes that anchors and aliases may copy in one stream (a "billion laughs" stops here).
    pub max_alias_nodes: usize,
}

impl Limits {
    pub const DEFAULT: Limits = Limits { max_bytes: 32 << 20, max_depth: 100, max_alias_nodes: 1_000_000 };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// The byte-order mark `kubectl` drops before it parses; meshguard drops it too, at the start of
/// the text and of any line (where `cat a.yaml b.yaml` puts a second file's mark).
pub const BOM: char = '\u{feff}';

/// `value` as one block-YAML document: `---` first, a newline last (with `multiline`, strings
/// holding newlines as literal blocks). What `meshguard rules export` prints, and what the tests
/// write a manifest repo's files as.
pub fn to_document(value: &Value, multiline: bool) -> String {
    fn convert(value: &Value) -> yaml_rust2::Yaml {
        use yaml_rust2::Yaml;
        match value {
            Value::Null => Yaml::Null,
            Value::Bool(b) => Yaml::Boolean(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Yaml::Integer(i),
                None => Yaml::Real(n.to_string()),
            },
            Value::String(s) => Yaml::String(s.clone()),
            Value::Array(items) => Yaml::Array(items.iter().map(convert).collect()),
            Value::Object(map) => Yaml::Hash(map.iter().map(|(k, v)| (Yaml::String(k.clone()), convert(v))).collect()),
        }
    }
    let mut out = String::new();
    let mut emitter = yaml_rust2::YamlEmitter::new(&mut out);
    emitter.multiline_strings(multiline);
    // Writing into a String cannot fail.
    let _ = emitter.dump(&convert(value));
    out.push('\n');
    out
}

/// `text` without byte-order marks at line starts (borrowed when there are none).
pub fn strip_bom(text: &str) -> std::borrow::Cow<'_, str> {
    let text = text.strip_prefix(BOM).unwrap_or(text);
    if text.contains(BOM) {
        std::borrow::Cow::Owned(text.replace("\n\u{feff}", "\n"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// Parses every non-empty document of a YAML stream (JSON is YAML, so it parses too).
pub fn parse_documents(text: &str) -> Result<Vec<Document>, YamlError> {
    parse_documents_with(text, Limits::DEFAULT)
}

/// [`parse_documents`] within explicit [`Limits`].
pub fn parse_documents_with(text: &str, limits: Limits) -> Result<Vec<Document>, YamlError> {
    if text.len() > limits.max_bytes {
        return Err(YamlError {
            at: Position { line: 1, column: 1 },
            message: format!("the text is {} bytes; the limit is {} bytes", text.len(), limits.max_bytes),
        });
    }
    let text = strip_bom(text);
    if let Some(parsed) = block_subset::parse(&text, limits) {
        return parsed;
    }
    parse_with_yaml_rust2(&text, limits)
}

/// The general path of [`parse_documents_with`], for any YAML (the block subset only speeds up
/// the common case); public for the tests and fuzz target that hold the two to one answer.
#[doc(hidden)]
pub fn parse_with_yaml_rust2(text: &str, limits: Limits) -> Result<Vec<Document>, YamlError> {
    let mut builder = Builder { limits, ..Builder::default() };
    let mut parser = Parser::new_from_str(text);
    let scan = parser.load(&mut builder, true);
    if let Some(err) = builder.error.take() {
        return Err(err);
    }
    scan.map_err(|e| YamlError { at: position(e.marker()), message: e.info().to_string() })?;
    Ok(builder.documents)
}

/// Parses a single-document YAML (or JSON) text; an empty text is an error.
pub fn parse_one(text: &str) -> Result<Document, YamlError> {
    let mut docs = parse_documents(text)?;
    match docs.len() {
        1 => Ok(docs.remove(0)),
        0 => Err(YamlError { at: Position { line: 1, column: 1 }, message: "the document is empty".into() }),
        n => Err(YamlError { at: docs[1].spans.at, message: format!("expected one document, found {n}") }),
    }
}

fn position(m: &Marker) -> Position {
    Position { line: m.line() as u32, column: m.col() as u32 + 1 }
}

/// How big a finished node is: what copying it through an alias costs, and how deep it reaches.
#[derive(Clone, Copy, Debug, Default)]
struct Size {
    nodes: usize,
    height: usize,
}

impl Size {
    const LEAF: Size = Size { nodes: 1, height: 1 };

    fn add_child(&mut self, child: Size) {
        self.nodes = self.nodes.saturating_add(child.nodes);
        self.height = self.height.max(child.height + 1);
    }
}

/// The key `<<` of a YAML merge: its value's entries fill in the keys the mapping lacks.
const MERGE_KEY: &str = "<<";

enum Frame {
    Seq {
        anchor: usize,
        at: Position,
        size: Size,
        items: Vec<Value>,
        spans: Vec<Spans>,
    },
    Map {
        anchor: usize,
        at: Position,
        size: Size,
        entries: Map<String, Value>,
        spans: Vec<(SpanKey, Spans)>,
        key: Option<(String, Position)>,
        /// The pending key is a plain `<<`: its value is merged, not stored.
        merge_next: bool,
        /// The value of `<<`: a mapping, or mappings in the order they take precedence.
        merged: Option<(Value, Spans)>,
    },
}

impl Frame {
    fn size_mut(&mut self) -> &mut Size {
        match self {
            Frame::Seq { size, .. } | Frame::Map { size, .. } => size,
        }
    }
}

#[derive(Default)]
struct Builder {
    limits: Limits,
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Value, Spans, Size)>,
    /// Nodes copied so far by anchors and aliases in this stream.
    copied: usize,
    documents: Vec<Document>,
    error: Option<YamlError>,
}

impl Builder {
    fn fail(&mut self, at: Position, message: String) {
        if self.error.is_none() {
            self.error = Some(YamlError { at, message });
        }
    }

    /// Counts `nodes` against the copy budget; false (with the error set) when it is spent.
    fn copy(&mut self, nodes: usize, at: Position) -> bool {
        self.copied = self.copied.saturating_add(nodes);
        if self.copied > self.limits.max_alias_nodes {
            self.fail(
                at,
                format!(
                    "anchors and aliases expand to more than {} nodes (the limit; a \"billion laughs\" document?)",
                    self.limits.max_alias_nodes
                ),
            );
            return false;
        }
        true
    }

    /// Opens a mapping or sequence, unless that nests deeper than the limit.
    fn open(&mut self, frame: Frame, at: Position) {
        if self.stack.len() >= self.limits.max_depth {
            return self.fail(at, format!("nesting is deeper than {} levels (the limit)", self.limits.max_depth));
        }
        self.stack.push(frame);
    }

    /// Attaches a finished node to its parent (or ends the document).
    fn push_node(&mut self, value: Value, spans: Spans, anchor: usize, size: Size) {
        if anchor != 0 {
            if !self.copy(size.nodes, spans.at) {
                return;
            }
            self.anchors.insert(anchor, (value.clone(), spans.clone(), size));
        }
        if let Some(parent) = self.stack.last_mut() {
            parent.size_mut().add_child(size);
        }
        match self.stack.last_mut() {
            None => {
                if !value.is_null() {
                    self.documents.push(Document { value, spans });
                }
            }
            Some(Frame::Seq { items, spans: item_spans, .. }) => {
                items.push(value);
                item_spans.push(spans);
            }
            Some(Frame::Map { entries, spans: entry_spans, key, merge_next, merged, .. }) => match key.take() {
                None => {
                    let at = spans.at;
                    let Value::String(name) = value else {
                        return self.fail(at, "mapping keys must be scalars".into());
                    };
                    if entries.contains_key(&name) {
                        return self.fail(at, format!("duplicate key `{name}`"));
                    }
                    *key = Some((name, at));
                }
                Some(_) if *merge_next => {
                    *merge_next = false;
                    *merged = Some((value, spans));
                }
                Some((name, key_at)) => {
                    // A field's line is its key's line: that is where a reader looks for it.
                    let spans = Spans { at: key_at, children: spans.children };
                    entry_spans.push((SpanKey::from(name.as_str()), spans));
                    entries.insert(name, value);
                }
            },
        }
    }
}

/// Applies a `<<` merge: a key the mapping lacks comes from the first merged mapping that has it.
/// Merged fields keep the spans of where they were written (the anchor), so findings point there.
/// `Err` holds the position of a merged value that is not a mapping.
fn apply_merge(
    entries: &mut Map<String, Value>,
    spans: &mut Vec<(SpanKey, Spans)>,
    (value, merged_spans): (Value, Spans),
) -> Result<(), Position> {
    let sources: Vec<(Value, Spans)> = match (value, merged_spans.children) {
        (Value::Array(items), Children::Seq(item_spans)) => items.into_iter().zip(item_spans).collect(),
        (value, children) => vec![(value, Spans { at: merged_spans.at, children })],
    };
    for (value, source_spans) in sources {
        let (Value::Object(map), Children::Map(mut field_spans)) = (value, source_spans.children) else {
            return Err(source_spans.at);
        };
        for (name, value) in map {
            if entries.contains_key(&name) {
                continue;
            }
            let span = field_spans.iter_mut().find(|(n, _)| *n == name).map(|(_, s)| std::mem::take(s));
            spans.push((SpanKey::from(name.as_str()), span.unwrap_or_default()));
            entries.insert(name, value);
        }
    }
    Ok(())
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        self.event(ev, position(&mark));
    }
}

impl Builder {
    /// One event of the parse, from `yaml-rust2` or from [`block_subset`].
    fn event(&mut self, ev: Event, at: Position) {
        if self.error.is_some() {
            return;
        }
        match ev {
            Event::Scalar(text, style, anchor, _)
                if matches!(self.stack.last(), Some(Frame::Map { key: None, .. })) =>
            {
                // A mapping key: keep its text as written (`80`, `true` stay strings). A plain `<<`
                // is a merge (a quoted one is an ordinary key).
                if style == TScalarStyle::Plain && text == MERGE_KEY {
                    if let Some(Frame::Map { merge_next, merged, .. }) = self.stack.last_mut() {
                        if merged.is_some() {
                            return self.fail(at, format!("duplicate key `{MERGE_KEY}`"));
                        }
                        *merge_next = true;
                    }
                }
                self.push_node(Value::String(text), Spans { at, children: Children::Leaf }, anchor, Size::LEAF);
            }
            Event::Scalar(text, style, anchor, tag) => {
                let forced_string = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let value = if style == TScalarStyle::Plain && !forced_string {
                    plain_scalar(&text)
                } else {
                    Value::String(text)
                };
                self.push_node(value, Spans { at, children: Children::Leaf }, anchor, Size::LEAF);
            }
            Event::SequenceStart(anchor, _) => {
                let frame = Frame::Seq { anchor, at, size: Size::LEAF, items: Vec::new(), spans: Vec::new() };
                self.open(frame, at)
            }
            Event::MappingStart(anchor, _) => {
                let frame = Frame::Map {
                    anchor,
                    at,
                    size: Size::LEAF,
                    entries: Map::new(),
                    spans: Vec::new(),
                    key: None,
                    merge_next: false,
                    merged: None,
                };
                self.open(frame, at)
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq { anchor, at, size, items, spans }) => {
                    self.push_node(Value::Array(items), Spans { at, children: Children::Seq(spans) }, anchor, size)
                }
                Some(Frame::Map { anchor, at, size, mut entries, mut spans, merged, .. }) => {
                    // The parser marks a block mapping where its first value starts; its first key is
                    // where a reader sees it begin (the line after `- ` in a list).
                    let at = spans.first().map_or(at, |(_, first)| first.at);
                    if let Some(merged) = merged {
                        if let Err(at) = apply_merge(&mut entries, &mut spans, merged) {
                            return self.fail(at, "a merge key `<<` takes a mapping or a list of mappings".into());
                        }
                    }
                    let spans = Spans { at, children: Children::Map(spans) };
                    self.push_node(Value::Object(entries), spans, anchor, size)
                }
                None => self.fail(at, "unbalanced collection end".into()),
            },
            Event::Alias(id) => {
                let Some(&(_, _, size)) = self.anchors.get(&id) else {
                    return self.fail(at, "alias to an unknown anchor".into());
                };
                if self.stack.len() + size.height > self.limits.max_depth {
                    return self.fail(
                        at,
                        format!("this alias nests deeper than {} levels (the limit)", self.limits.max_depth),
                    );
                }
                if !self.copy(size.nodes, at) {
                    return;
                }
                if let Some((value, spans, size)) = self.anchors.get(&id).cloned() {
                    self.push_node(value, spans, 0, size)
                }
            }
            Event::DocumentEnd => self.anchors.clear(),
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentStart => {}
        }
    }
}

/// YAML 1.2 core schema for plain scalars, the subset Kubernetes manifests use.
fn plain_scalar(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    let first = text.as_bytes()[0];
    if first.is_ascii_digit() || first == b'-' || first == b'+' || first == b'.' {
        if let Ok(i) = text.parse::<i64>() {
            return Value::Number(i.into());
        }
        if let Some(hex) = text.strip_prefix("0x") {
            if let Ok(i) = i64::from_str_radix(hex, 16) {
                return Value::Number(i.into());
            }
        }
        if let Some(oct) = text.strip_prefix("0o") {
            if let Ok(i) = i64::from_str_radix(oct, 8) {
                return Value::Number(i.into());
            }
        }
        let looks_float = text.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'));
        if looks_float && text.bytes().any(|b| b.is_ascii_digit()) {
            if let Some(n) = text.parse::<f64>().ok().and_then(Number::from_f64) {
                return Value::Number(n);
            }
        }
    }
    Value::String(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SERVICE: &str = "\
# a comment
apiVersion: v1
kind: Service
metadata:
  name: api
  annotations:
    a.b/c: \"x\"
spec:
  ports:
  - name: web
    port: 8080
  - port: 9090
    appProtocol: grpc
---
---
kind: Namespace
";

    #[test]
    fn values_follow_the_core_schema() {
        let docs = parse_documents(SERVICE).unwrap();
        assert_eq!(docs.len(), 2, "empty documents are skipped");
        assert_eq!(docs[0].value["spec"]["ports"][0], json!({"name": "web", "port": 8080}));
        let d = parse_one("a: '1'\nb: 1.5\nc: ~\nd: yes\ne: !!str 12\nf: -3\n").unwrap();
        assert_eq!(d.value, json!({"a": "1", "b": 1.5, "c": null, "d": "yes", "e": "12", "f": -3}));
    }

    #[test]
    fn spans_point_at_the_field_line() {
        let docs = parse_documents(SERVICE).unwrap();
        let spans = &docs[0].spans;
        let at = |p: &str| spans.locate(&FieldPath::parse(p).unwrap());
        assert_eq!(at("spec.ports[0].name"), Position { line: 10, column: 5 });
        assert_eq!(at("spec.ports[1].appProtocol").line, 13);
        assert_eq!(at(r#"metadata.annotations["a.b/c"]"#).line, 7);
        assert_eq!(at("spec.ports[1].name"), Position { line: 12, column: 5 }, "a missing field points at its parent");
        assert_eq!(docs[1].spans.at.line, 16);
    }

    #[test]
    fn errors_carry_line_and_column() {
        let err = parse_documents("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(err.at.line >= 2, "{err}");
        let err = parse_documents("a: 1\na: 2\n").unwrap_err();
        assert_eq!(err.at.line, 2);
        assert!(err.message.contains("duplicate key `a`"), "{err}");
    }

    #[test]
    fn anchors_and_aliases_expand() {
        let d = parse_one("base: &b {x: 1}\nother: *b\n").unwrap();
        assert_eq!(d.value["other"], json!({"x": 1}));
    }

    #[test]
    fn byte_order_marks_are_dropped_as_kubectl_does() {
        let d = parse_documents("\u{feff}kind: Service\n---\n\u{feff}kind: Pod\n").unwrap();
        assert_eq!(d[0].value, json!({"kind": "Service"}), "a BOM must not hide the first key");
        assert_eq!(d[1].value, json!({"kind": "Pod"}), "nor the first key of a later document");
        assert_eq!(d[1].spans.at.line, 3);
        let j = parse_one("\u{feff}{\"kind\": \"Service\"}").unwrap();
        assert_eq!(j.value["kind"], "Service");
    }

    #[test]
    fn merge_keys_are_applied_and_explicit_keys_win() {
        let text = "\
base: &base
  name: tcp-hidden
  port: 80
svc:
  <<: *base
  port: 8080
";
        let d = parse_one(text).unwrap();
        assert_eq!(d.value["svc"], json!({"name": "tcp-hidden", "port": 8080}));
        let at = |p: &str| d.spans.locate(&FieldPath::parse(p).unwrap()).line;
        assert_eq!(at("svc.name"), 2, "a merged field points where it was written");
        assert_eq!(at("svc.port"), 6);
        // A list of mappings: earlier ones take precedence.
        let d = parse_one("a: &a {x: 1, y: 1}\nb: &b {y: 2, z: 2}\nc: {<<: [*a, *b]}\n").unwrap();
        assert_eq!(d.value["c"], json!({"x": 1, "y": 1, "z": 2}));
        // Inline mappings merge too, and a quoted `<<` is an ordinary key.
        let d = parse_one("c: {<<: {x: 1}, '<<': 2}\n").unwrap();
        assert_eq!(d.value["c"], json!({"x": 1, "<<": 2}));
        let err = parse_one("c: {<<: 3}\n").unwrap_err();
        assert!(err.message.contains("merge key"), "{err}");
        let err = parse_one("c:\n  <<: {x: 1}\n  <<: {y: 1}\n").unwrap_err();
        assert!(err.message.contains("duplicate key `<<`"), "{err}");
    }

    /// Texts in the block subset: its scanner must read each, and answer as yaml-rust2 does.
    const BLOCK_SUBSET: &[&str] = &[
        SERVICE,
        "kind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n      - name: app\n        ports:\n        - containerPort: 8080\n          name: http\n      - name: istio-proxy\n",
        "a:\n- 1\n- x\nb: 2\n",
        "a:\n    - 1\n    -   y: 2\n        z: 3\nb: c\n",
        "- - x\n  - y\n- z\n",
        "- ports:\n  - a\n  name: b\n- c\n",
        "empty: {}\nlist: []\nflow: [\"sh\", '-c', sleep 40 ,  -1]\n",
        "cmd: [ \"a # not a comment\" ]   # a comment\n",
        "script: |\n  line one\n\n  # not a comment\n    indented\nnext: 1\n",
        "a:\n  s: |-\n    kept\n    no final break\n\n\n  t: x\n",
        "- |\n  in a list\n- two\n",
        "a: |\n  at the end\n",
        "a: |\n  at the end\n\n\n",
        "a: |-\n  at the end\n  \n",
        "a:\n  b: |\n    x\n\n  c: |\n    y\n",
        "a:\nb:\n  c:\n  d: ~\ne:\n",
        "--- # first\nx: 1\n---\n\n# nothing\n---\ny: 'it''s'\n",
        "n: [1, 2.5, -3, 0x1F, true, null]\nq: \"80\"\nurl: http://x:80/y#z\nhash: a#b\nneg: -c\n",
        "metadata:\n  annotations:\n    proxy.istio.io/config: '{\"holdApplicationUntilProxyStarts\": true}'\n    sidecar.istio.io/inject: \"true\"   \n",
        "a: 1\nb: 2\na: 3\n",
        "k:   spaced   # and a comment\n  # an indented comment\nl: 2",
    ];

    /// Texts outside it: the scanner must leave each to yaml-rust2.
    const OUTSIDE_THE_SUBSET: &[&str] = &[
        "a: &x 1\nb: *x\n",
        "a: !!str 1\n",
        "base: &b {x: 1}\nc:\n  <<: *b\n",
        "a: multi\n  line\n",
        "a: \"esc\\n\"\n",
        "a: {b: 1}\n",
        "a:\tb\n",
        "a: 1\r\nb: 2\r\n",
        "a: caf\u{e9}\n",
        "{\"kind\": \"Service\"}",
        "a: >\n  folded\n",
        "a: |\n  at the end without a break",
        "ag: |\n baion: x\n   more\n ",
        "-\n  a: 1\n",
        "? complex\n: key\n",
        "a: 1\n...\n",
        "%YAML 1.2\n---\na: 1\n",
        "just a scalar\n",
        "  a: 1\n",
        "a: 'not\n  closed'\n",
        "a: b: c\n",
        "a: [1,\n  2]\n",
        "\"quoted key\": 1\n",
    ];

    #[test]
    fn the_block_subset_answers_as_yaml_rust2() {
        for text in BLOCK_SUBSET {
            assert!(block_subset::parse(text, Limits::DEFAULT).is_some(), "the subset should read {text:?}");
            assert_eq!(parse_documents(text), parse_with_yaml_rust2(text, Limits::DEFAULT), "{text:?}");
        }
        for text in OUTSIDE_THE_SUBSET {
            assert!(block_subset::parse(text, Limits::DEFAULT).is_none(), "the subset should decline {text:?}");
        }
        // The byte check runs 32 bytes at a time: a character it must refuse, inside such a block.
        let padding = "# padding\n".repeat(8);
        for refused in ['\t', '\r', '\u{7f}', '\u{0}', '\u{e9}'] {
            let text = format!("{padding}a: x{refused}y\n{padding}");
            assert!(block_subset::parse(&text, Limits::DEFAULT).is_none(), "{refused:?}");
        }
        assert!(block_subset::parse(&format!("{padding}a: xy\n{padding}"), Limits::DEFAULT).is_some());
        let err = parse_documents("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!((err.at.line, err.message.as_str()), (3, "duplicate key `a`"));
        let doc = parse_one("script: |\n  line one\n\n  # not a comment\n    indented\nnext: 1\n").unwrap();
        assert_eq!(doc.value["script"], "line one\n\n# not a comment\n  indented\n");
    }

    /// Every text in the repository's examples, test corpus, fuzz corpus and fuzz regressions: one answer from both
    /// front ends, and the block subset reads the example manifests (else it speeds nothing up).
    #[test]
    fn yaml_front_ends_agree() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut texts = Vec::new();
        let mut dirs = vec![
            root.join("examples"),
            root.join("tests/corpus"),
            root.join("fuzz/corpus/yaml"),
            root.join("fuzz/regressions/yaml"),
        ];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if let Ok(text) = std::fs::read_to_string(&path) {
                    texts.push((path, text));
                }
            }
        }
        assert!(texts.len() > 1000, "{}", texts.len());
        for (path, text) in &texts {
            let stripped = strip_bom(text);
            assert_eq!(parse_documents(text), parse_with_yaml_rust2(&stripped, Limits::DEFAULT), "{}", path.display());
        }
        let manifests = texts.iter().filter(|(p, _)| p.starts_with(root.join("examples/manifests")));
        for (path, text) in manifests {
            assert!(block_subset::parse(text, Limits::DEFAULT).is_some(), "{}", path.display());
        }
    }

    #[test]
    fn alias_expansion_is_bounded() {
        let mut laughs = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            let prev = format!("*a{}", i - 1);
            laughs.push_str(&format!("a{i}: &a{i} [{}]\n", [prev.as_str(); 9].join(", ")));
        }
        assert!(laughs.len() < 600, "{}", laughs.len());
        let err = parse_documents(&laughs).unwrap_err();
        assert!(err.message.contains("billion laughs"), "{err}");
        // Ordinary reuse stays well within the budget.
        let small = parse_documents(&laughs.lines().take(3).collect::<Vec<_>>().join("\n")).unwrap();
        assert_eq!(small[0].value["a2"].as_array().unwrap().len(), 9);
    }

    #[test]
    fn depth_and_size_are_bounded() {
        let limits = Limits::DEFAULT;
        let nested = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        assert!(parse_documents(&nested(limits.max_depth)).is_ok());
        let err = parse_documents(&nested(limits.max_depth + 1)).unwrap_err();
        assert!(err.message.contains("deeper than 100"), "{err}");
        // An alias cannot smuggle depth past the limit.
        let deep = format!("a: &x {}\nb: {}*x{}\n", nested(60), "[".repeat(60), "]".repeat(60));
        assert!(parse_documents(&deep).unwrap_err().message.contains("alias nests deeper"));
        let tiny = Limits { max_bytes: 10, ..limits };
        assert!(parse_documents_with("kind: Service\n", tiny).unwrap_err().message.contains("limit is 10 bytes"));
    }
}
