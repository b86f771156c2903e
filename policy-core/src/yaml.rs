//! YAML text to JSON values, with a span tree that maps a field path back to its line.
//!
//! Built on `yaml-rust2`'s event parser so one pass yields both the value and the positions.
//! Kubernetes semantics where they differ from a generic loader: duplicate keys are an error
//! (as `kubectl` rejects them), and empty documents in a stream are skipped.

use crate::path::{FieldPath, Segment};
use serde_json::{Map, Number, Value};
use std::collections::HashMap;
use std::fmt;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A position in the source text: 1-based line and column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    pub line: u32,
    pub column: u32,
}

/// Positions of one node and its children, parallel to the JSON value.
#[derive(Clone, Debug, Default)]
pub struct Spans {
    pub at: Position,
    children: Children,
}

#[derive(Clone, Debug, Default)]
enum Children {
    #[default]
    Leaf,
    Map(Vec<(String, Spans)>),
    Seq(Vec<Spans>),
}

impl Spans {
    /// The span of the deepest node on `path` that exists: a missing field points at its parent.
    pub fn locate(&self, path: &FieldPath) -> Position {
        self.descend(path.segments()).at
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
#[derive(Clone, Debug)]
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

/// Parses every non-empty document of a YAML stream (JSON is YAML, so it parses too).
pub fn parse_documents(text: &str) -> Result<Vec<Document>, YamlError> {
    let mut builder = Builder::default();
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

enum Frame {
    Seq {
        anchor: usize,
        at: Position,
        items: Vec<Value>,
        spans: Vec<Spans>,
    },
    Map {
        anchor: usize,
        at: Position,
        entries: Map<String, Value>,
        spans: Vec<(String, Spans)>,
        key: Option<(String, Position)>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Value, Spans)>,
    documents: Vec<Document>,
    error: Option<YamlError>,
}

impl Builder {
    fn fail(&mut self, at: Position, message: String) {
        if self.error.is_none() {
            self.error = Some(YamlError { at, message });
        }
    }

    /// Attaches a finished node to its parent (or ends the document).
    fn push_node(&mut self, value: Value, spans: Spans, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, (value.clone(), spans.clone()));
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
            Some(Frame::Map { entries, spans: entry_spans, key, .. }) => match key.take() {
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
                Some((name, key_at)) => {
                    // A field's line is its key's line: that is where a reader looks for it.
                    let spans = Spans { at: key_at, children: spans.children };
                    entries.insert(name.clone(), value);
                    entry_spans.push((name, spans));
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let at = position(&mark);
        match ev {
            Event::Scalar(text, _, anchor, _) if matches!(self.stack.last(), Some(Frame::Map { key: None, .. })) => {
                // A mapping key: keep its text as written (`80`, `true` stay strings).
                self.push_node(Value::String(text), Spans { at, children: Children::Leaf }, anchor);
            }
            Event::Scalar(text, style, anchor, tag) => {
                let forced_string = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let value = if style == TScalarStyle::Plain && !forced_string {
                    plain_scalar(&text)
                } else {
                    Value::String(text)
                };
                self.push_node(value, Spans { at, children: Children::Leaf }, anchor);
            }
            Event::SequenceStart(anchor, _) => {
                self.stack.push(Frame::Seq { anchor, at, items: Vec::new(), spans: Vec::new() })
            }
            Event::MappingStart(anchor, _) => {
                self.stack.push(Frame::Map { anchor, at, entries: Map::new(), spans: Vec::new(), key: None })
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq { anchor, at, items, spans }) => {
                    self.push_node(Value::Array(items), Spans { at, children: Children::Seq(spans) }, anchor)
                }
                Some(Frame::Map { anchor, at, entries, spans, .. }) => {
                    // The parser marks a block mapping where its first value starts; its first key is
                    // where a reader sees it begin (the line after `- ` in a list).
                    let at = spans.first().map_or(at, |(_, first)| first.at);
                    self.push_node(Value::Object(entries), Spans { at, children: Children::Map(spans) }, anchor)
                }
                None => self.fail(at, "unbalanced collection end".into()),
            },
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some((value, spans)) => self.push_node(value, spans, 0),
                None => self.fail(at, "alias to an unknown anchor".into()),
            },
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
}
