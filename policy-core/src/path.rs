//! Field paths such as `spec.ports[1].name`: how a finding points into an object.
//!
//! Findings carry paths, never file lines: only the CLI knows files, and it maps a path to a line
//! with the span index built while parsing YAML (see `yaml`).

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    Key(String),
    Index(usize),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(Vec<Segment>);

impl FieldPath {
    pub fn root() -> Self {
        FieldPath(Vec::new())
    }

    pub fn key(&self, key: &str) -> Self {
        let mut segs = self.0.clone();
        segs.push(Segment::Key(key.to_string()));
        FieldPath(segs)
    }

    pub fn index(&self, index: usize) -> Self {
        let mut segs = self.0.clone();
        segs.push(Segment::Index(index));
        FieldPath(segs)
    }

    /// `self` followed by every segment of `rest`.
    pub fn join(&self, rest: &FieldPath) -> Self {
        let mut segs = self.0.clone();
        segs.extend(rest.0.iter().cloned());
        FieldPath(segs)
    }

    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses the rendered form back (`a.b[2]["x.y"]`); `[*]` is not a concrete path, see `FieldSelector`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut segs = Vec::new();
        for part in parse_selector(text)? {
            match part {
                SelectorPart::Key(k) => segs.push(Segment::Key(k)),
                SelectorPart::Index(i) => segs.push(Segment::Index(i)),
                SelectorPart::AnyIndex => return Err(format!("`[*]` is not allowed in a concrete path: {text}")),
            }
        }
        Ok(FieldPath(segs))
    }
}

fn is_plain_key(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'$')
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Segment::Key(k) if is_plain_key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Segment::Key(k) => write!(f, "[{}]", serde_json::to_string(k).map_err(|_| fmt::Error)?)?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

impl serde::Serialize for FieldPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The rendered form, read back with [`FieldPath::parse`] (a finding crossing a host boundary).
impl<'de> serde::Deserialize<'de> for FieldPath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        FieldPath::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// One step of a field selector written by a user in a rule (`spec.containers[*].image`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SelectorPart {
    Key(String),
    Index(usize),
    AnyIndex,
}

/// A user-written path with `[*]` wildcards, compiled once when the rule set loads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldSelector {
    text: String,
    parts: Vec<SelectorPart>,
}

impl FieldSelector {
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts = parse_selector(text)?;
        if parts.is_empty() {
            return Err("field path is empty".into());
        }
        Ok(FieldSelector { text: text.to_string(), parts })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn parts(&self) -> &[SelectorPart] {
        &self.parts
    }

    /// Every concrete (path, value) the selector reaches in `root`.
    pub fn resolve<'v>(&self, root: &'v serde_json::Value) -> Vec<(FieldPath, &'v serde_json::Value)> {
        let mut out = Vec::new();
        walk(&self.parts, root, FieldPath::root(), &mut out);
        out
    }
}

fn walk<'v>(
    parts: &[SelectorPart],
    value: &'v serde_json::Value,
    at: FieldPath,
    out: &mut Vec<(FieldPath, &'v serde_json::Value)>,
) {
    let Some((first, rest)) = parts.split_first() else {
        out.push((at, value));
        return;
    };
    match first {
        SelectorPart::Key(k) => {
            if let Some(v) = value.get(k.as_str()) {
                walk(rest, v, at.key(k), out);
            }
        }
        SelectorPart::Index(i) => {
            if let Some(v) = value.get(*i) {
                walk(rest, v, at.index(*i), out);
            }
        }
        SelectorPart::AnyIndex => {
            if let Some(items) = value.as_array() {
                for (i, v) in items.iter().enumerate() {
                    walk(rest, v, at.index(i), out);
                }
            }
        }
    }
}

fn parse_selector(text: &str) -> Result<Vec<SelectorPart>, String> {
    let bytes = text.as_bytes();
    let mut parts = Vec::new();
    let mut i = 0;
    let mut expect_key = true;
    while i < bytes.len() {
        match bytes[i] {
            b'.' => {
                if expect_key {
                    return Err(format!("empty segment at byte {i} of `{text}`"));
                }
                expect_key = true;
                i += 1;
            }
            b'[' => {
                let close = text[i..].find(']').map(|c| c + i).ok_or_else(|| format!("unclosed `[` in `{text}`"))?;
                let inner = &text[i + 1..close];
                if inner == "*" {
                    parts.push(SelectorPart::AnyIndex);
                } else if let Ok(n) = inner.parse::<usize>() {
                    parts.push(SelectorPart::Index(n));
                } else if inner.len() >= 2 && inner.starts_with('"') && inner.ends_with('"') {
                    let key: String =
                        serde_json::from_str(inner).map_err(|e| format!("bad quoted key {inner} in `{text}`: {e}"))?;
                    parts.push(SelectorPart::Key(key));
                } else {
                    return Err(format!("`[{inner}]` in `{text}` is not an index, `*` or a quoted key"));
                }
                expect_key = false;
                i = close + 1;
            }
            _ => {
                if !expect_key {
                    return Err(format!("missing `.` before byte {i} of `{text}`"));
                }
                let end = text[i..].find(['.', '[']).map(|e| e + i).unwrap_or(text.len());
                parts.push(SelectorPart::Key(text[i..end].to_string()));
                expect_key = false;
                i = end;
            }
        }
    }
    if expect_key && !parts.is_empty() {
        return Err(format!("`{text}` ends with `.`"));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_keys_indexes_and_dotted_keys() {
        let p = FieldPath::root().key("metadata").key("annotations").key("sidecar.istio.io/inject");
        assert_eq!(p.to_string(), r#"metadata.annotations["sidecar.istio.io/inject"]"#);
        let p = FieldPath::root().key("spec").key("ports").index(1).key("name");
        assert_eq!(p.to_string(), "spec.ports[1].name");
        assert_eq!(FieldPath::parse("spec.ports[1].name").unwrap(), p);
    }

    #[test]
    fn selector_expands_wildcards() {
        let obj = json!({"spec": {"containers": [{"image": "a"}, {"image": "b"}, {"name": "c"}]}});
        let sel = FieldSelector::parse("spec.containers[*].image").unwrap();
        let got: Vec<String> = sel.resolve(&obj).iter().map(|(p, _)| p.to_string()).collect();
        assert_eq!(got, ["spec.containers[0].image", "spec.containers[1].image"]);
    }

    #[test]
    fn selector_rejects_malformed_paths() {
        for bad in ["", "a..b", "a.", "a[", "a[x]", ".a"] {
            assert!(FieldSelector::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
