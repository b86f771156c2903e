//! Fixes. Where one change is right and safe, a check attaches it to its finding as an RFC 6902
//! JSON Patch against the object, with a one-line description; the same patch is written into the
//! file by `meshguard fix` ([`edit`]) and, later, sent as the admission patch. Where no single
//! change is right, the check's catalog entry says why there is none ([`crate::checks::CheckSpec`]'s
//! `fix` line).

#[cfg(feature = "yaml")]
pub mod edit;

use crate::path::{FieldPath, Segment};
pub use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One finding's remedy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fix {
    pub description: String,
    pub patch: Patch,
}

fn pointer(segments: &[Segment]) -> json_patch::jsonptr::PointerBuf {
    json_patch::jsonptr::PointerBuf::from_tokens(segments.iter().map(|s| match s {
        Segment::Key(k) => json_patch::jsonptr::Token::new(k.as_str()),
        Segment::Index(i) => json_patch::jsonptr::Token::from(*i),
    }))
}

/// `path` as a JSON Pointer (`spec.ports[0].name` → `/spec/ports/0/name`).
pub fn pointer_of(path: &FieldPath) -> String {
    pointer(path.segments()).to_string()
}

impl Fix {
    /// Sets the value at `path` in `object`: `replace` when it is there, else one `add` at the
    /// deepest existing ancestor holding the missing rest as nested mappings (how a person adds
    /// `metadata.annotations` to a template that has no `metadata`).
    pub fn set(object: &Value, path: &FieldPath, value: Value, description: impl Into<String>) -> Fix {
        let segments = path.segments();
        let mut node = Some(object);
        let mut existing = 0;
        for seg in segments {
            let next = match (seg, node) {
                (Segment::Key(k), Some(Value::Object(m))) => m.get(k.as_str()),
                (Segment::Index(i), Some(Value::Array(a))) => a.get(*i),
                _ => None,
            };
            match next {
                Some(n) => {
                    node = Some(n);
                    existing += 1;
                }
                None => break,
            }
        }
        let op = if existing == segments.len() {
            PatchOperation::Replace(ReplaceOperation { path: pointer(segments), value })
        } else {
            let mut nested = value;
            for seg in segments[existing + 1..].iter().rev() {
                let Segment::Key(k) = seg else { break };
                let mut map = Map::new();
                map.insert(k.clone(), nested);
                nested = Value::Object(map);
            }
            PatchOperation::Add(AddOperation { path: pointer(&segments[..=existing]), value: nested })
        };
        Fix { description: description.into(), patch: Patch(vec![op]) }
    }

    /// This fix and `other` as one (the operations of both, in order).
    pub fn and(mut self, other: Fix) -> Fix {
        self.patch.0.extend(other.patch.0);
        self.description = format!("{}; {}", self.description, other.description);
        self
    }
}

/// Joins the fixes of one document's findings into one patch, in order: `fixes` gives each fix
/// with where its object sits in the document (the root, or an item of a `kind: List`). Each fix
/// was computed against the object as it was, so one that touches a place an earlier one touched
/// (two settings merged into one annotation) is left out, for a review of the fixed object to
/// offer again. Returns the patch and the indexes of the fixes it holds.
pub fn combine<'f>(fixes: impl IntoIterator<Item = (&'f Fix, &'f FieldPath)>) -> (Patch, Vec<usize>) {
    let mut patch = Patch(Vec::new());
    let mut taken = Vec::new();
    for (i, (fix, within)) in fixes.into_iter().enumerate() {
        let ops: Vec<PatchOperation> = fix.patch.0.iter().map(|op| moved_under(op, within)).collect();
        let new: Vec<PatchOperation> = ops.into_iter().filter(|op| !patch.0.contains(op)).collect();
        if new.iter().any(|op| patch.0.iter().any(|done| overlaps(op_path(op), op_path(done)))) {
            continue;
        }
        patch.0.extend(new);
        taken.push(i);
    }
    (patch, taken)
}

fn op_path(op: &PatchOperation) -> &str {
    match op {
        PatchOperation::Add(o) => o.path.as_str(),
        PatchOperation::Remove(o) => o.path.as_str(),
        PatchOperation::Replace(o) => o.path.as_str(),
        PatchOperation::Move(o) => o.path.as_str(),
        PatchOperation::Copy(o) => o.path.as_str(),
        PatchOperation::Test(o) => o.path.as_str(),
    }
}

/// One of two JSON Pointers is the other or lies under it.
fn overlaps(a: &str, b: &str) -> bool {
    let under = |x: &str, y: &str| x == y || x.strip_prefix(y).is_some_and(|rest| rest.starts_with('/'));
    under(a, b) || under(b, a)
}

/// `op` with its path moved under `prefix`.
fn moved_under(op: &PatchOperation, prefix: &FieldPath) -> PatchOperation {
    if prefix.segments().is_empty() {
        return op.clone();
    }
    let base = pointer(prefix.segments());
    let under = |path: &json_patch::jsonptr::PointerBuf| {
        let mut p = base.clone();
        p.append(path);
        p
    };
    match op {
        PatchOperation::Add(o) => PatchOperation::Add(AddOperation { path: under(&o.path), value: o.value.clone() }),
        PatchOperation::Replace(o) => {
            PatchOperation::Replace(ReplaceOperation { path: under(&o.path), value: o.value.clone() })
        }
        PatchOperation::Remove(o) => PatchOperation::Remove(json_patch::RemoveOperation { path: under(&o.path) }),
        other => other.clone(),
    }
}

/// Whether JSON Pointer `path` lies at or under a path `pattern` matches: `*` matches one
/// segment, a leading `**` any number of them (none included).
fn in_scope(path: &[&str], pattern: &str) -> bool {
    let segments: Vec<&str> = pattern.strip_prefix('/').unwrap_or(pattern).split('/').collect();
    let (anywhere, fixed) = match segments.split_first() {
        Some((&"**", rest)) => (true, rest),
        _ => (false, &segments[..]),
    };
    let matches_at = |start: usize| {
        path.len() >= start + fixed.len()
            && fixed.iter().zip(&path[start..]).all(|(want, got)| *want == "*" || want == got)
    };
    if anywhere {
        (0..=path.len()).any(matches_at)
    } else {
        matches_at(0)
    }
}

/// The JSON Pointers of every value that differs between `before` and `after`: each changed,
/// added or removed scalar, empty container, or container replaced by a scalar (or the reverse).
/// Without recursion.
pub fn changed_paths(before: &Value, after: &Value) -> Vec<String> {
    let mut changed = Vec::new();
    let mut pending: Vec<(String, Option<&Value>, Option<&Value>)> = vec![(String::new(), Some(before), Some(after))];
    let escape = |k: &str| k.replace('~', "~0").replace('/', "~1");
    while let Some((at, a, b)) = pending.pop() {
        match (a, b) {
            (Some(Value::Object(x)), Some(Value::Object(y))) if !x.is_empty() || !y.is_empty() => {
                for key in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                    pending.push((format!("{at}/{}", escape(key)), x.get(key), y.get(key)));
                }
            }
            (Some(Value::Array(x)), Some(Value::Array(y))) if !x.is_empty() || !y.is_empty() => {
                for i in 0..x.len().max(y.len()) {
                    pending.push((format!("{at}/{i}"), x.get(i), y.get(i)));
                }
            }
            (Some(x), Some(y)) if x == y => {}
            // Added or removed: the leaves of the container that came or went.
            (Some(Value::Object(m)), None) | (None, Some(Value::Object(m))) if !m.is_empty() => {
                for (key, v) in m {
                    let v = Some(v);
                    pending.push((
                        format!("{at}/{}", escape(key)),
                        if a.is_some() { v } else { None },
                        if b.is_some() { v } else { None },
                    ));
                }
            }
            (Some(Value::Array(l)), None) | (None, Some(Value::Array(l))) if !l.is_empty() => {
                for (i, v) in l.iter().enumerate() {
                    let v = Some(v);
                    pending.push((
                        format!("{at}/{i}"),
                        if a.is_some() { v } else { None },
                        if b.is_some() { v } else { None },
                    ));
                }
            }
            _ => changed.push(at),
        }
    }
    changed.sort();
    changed
}

/// `Err` naming the first change between `before` and `after` that no pattern of `scope` covers
/// (see [`crate::checks::CheckSpec::fix_scope`] for the patterns).
pub fn changes_within(before: &Value, after: &Value, scope: &[String]) -> Result<(), String> {
    for path in changed_paths(before, after) {
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        if !scope.iter().any(|pattern| in_scope(&segments, pattern)) {
            let declared = if scope.is_empty() { "nothing".to_string() } else { scope.join(", ") };
            return Err(format!("it changes `{path}`, outside what the rule declares it may change ({declared})"));
        }
    }
    Ok(())
}

/// Why `patch` may not be applied to `object` as the fix of a rule with `scope`: it does not
/// apply, or it changes something outside the scope. `None`: it may.
pub fn strays(object: &Value, patch: &Patch, scope: &[String]) -> Option<String> {
    let mut after = object.clone();
    if let Err(e) = json_patch::patch(&mut after, patch) {
        return Some(format!("it does not apply: {e}"));
    }
    changes_within(object, &after, scope).err()
}

/// What the mutating policies did to a set of objects ([`crate::Policy::apply_mutating_policies`], MutatingAdmissionPolicies).
#[derive(Debug, Default)]
pub struct PolicyMutations {
    /// Per object: the RFC 6902 operations that take it to what the policies made of it.
    pub patches: Vec<Patch>,
    /// One finding per binding that changed an object, its change as the finding's fix (what
    /// `meshguard fix` writes and reports).
    pub changed: Vec<crate::Finding>,
    /// One `deny` finding per binding that failed under `failurePolicy: Fail`.
    pub denied: Vec<crate::Finding>,
}

impl FixedValues {
    /// These fixes after the MutatingAdmissionPolicies' changes (made first, as the API server runs
    /// them before anything else): each object's policy operations before its fixes', the policies'
    /// changes among what was fixed, and their denials among the findings left.
    pub fn after_policies(mut self, policies: PolicyMutations) -> FixedValues {
        for (object, patch) in policies.patches.into_iter().enumerate() {
            if let Some(mine) = self.patches.get_mut(object) {
                let rest = std::mem::take(&mut mine.0);
                mine.0 = patch.0.into_iter().chain(rest).collect();
            }
        }
        for f in policies.changed.into_iter().rev() {
            if let Some(fixed) = self.fixed.get_mut(f.object_index) {
                fixed.insert(0, f);
            }
        }
        self.remaining.extend(policies.denied);
        self
    }
}

/// How many times objects are reviewed and fixed: a fix can make another possible (a preStop
/// sleep, then a drain duration matching it), and two fixes of one place (two settings in one
/// annotation) go one per round.
pub const MAX_ROUNDS: usize = 4;

/// What [`fix_values`] did to each object.
#[derive(Debug, Default)]
pub struct FixedValues {
    /// Per object (as given): the operations applied to it, in order, each computed against the
    /// object as the ones before it left it.
    pub patches: Vec<Patch>,
    /// Per object: the findings those operations fixed.
    pub fixed: Vec<Vec<crate::Finding>>,
    /// The findings the objects still have: without a fix, or still there after [`MAX_ROUNDS`]
    /// (their `fix` is kept, to tell them apart).
    pub remaining: Vec<crate::Finding>,
}

/// Fixes `values` in memory, round after round, until no fix is left to apply: each round
/// reviews the objects the last round changed (every object, first), and applies each object's
/// fixes that do not touch one place twice ([`combine`]); the rest come back in the next round's
/// review, computed against the object as it now is. `review(values, wanted)` returns the
/// findings of the objects in `wanted` (every object for `None`), indexed into `values`; it may
/// review others beside them for context. Every host's fix goes through here, so one patch comes
/// out of one object, whichever host asks.
pub fn fix_values<E>(
    values: &mut [Value],
    mut review: impl FnMut(&[Value], Option<&std::collections::BTreeSet<usize>>) -> Result<Vec<crate::Finding>, E>,
) -> Result<FixedValues, E> {
    use std::collections::{BTreeMap, BTreeSet};
    let mut out = FixedValues {
        patches: vec![Patch(Vec::new()); values.len()],
        fixed: vec![Vec::new(); values.len()],
        remaining: Vec::new(),
    };
    let mut remaining: BTreeMap<usize, Vec<crate::Finding>> = BTreeMap::new();
    let mut wanted: Option<BTreeSet<usize>> = None;
    for round in 0..MAX_ROUNDS {
        let findings = review(values, wanted.as_ref())?;
        match &wanted {
            None => remaining.clear(),
            Some(w) => remaining.retain(|object, _| !w.contains(object)),
        }
        let mut fixable: BTreeMap<usize, Vec<crate::Finding>> = BTreeMap::new();
        for f in findings {
            if wanted.as_ref().is_some_and(|w| !w.contains(&f.object_index)) {
                continue;
            }
            if f.fix.is_some() && round + 1 < MAX_ROUNDS {
                fixable.entry(f.object_index).or_default().push(f);
            } else {
                remaining.entry(f.object_index).or_default().push(f);
            }
        }
        let mut changed = BTreeSet::new();
        let root = FieldPath::root();
        for (object, findings) in fixable {
            let (patch, taken) = combine(findings.iter().filter_map(|f| Some((f.fix.as_ref()?, &root))));
            let Some(value) = values.get_mut(object) else { continue };
            if json_patch::patch(value, &patch).is_ok() && !patch.0.is_empty() {
                out.patches[object].0.extend(patch.0);
                changed.insert(object);
                let mut findings: Vec<Option<crate::Finding>> = findings.into_iter().map(Some).collect();
                out.fixed[object].extend(taken.into_iter().filter_map(|i| findings[i].take()));
            } else {
                remaining.entry(object).or_default().extend(findings);
            }
        }
        if changed.is_empty() {
            break;
        }
        wanted = Some(changed);
    }
    out.remaining = remaining.into_values().flatten().collect();
    Ok(out)
}

/// One text after [`fix_text`]: the text, the fixes written, and the findings left.
#[cfg(feature = "yaml")]
#[derive(Debug, Default)]
pub struct FixedText {
    pub text: String,
    pub applied: Vec<crate::Finding>,
    /// Findings left: with why their fix could not be written, or `None` for the ones without a
    /// fix or still found after the rounds ([`crate::Policy::why_not_fixed`] says which).
    pub left: Vec<(crate::Finding, Option<String>)>,
}

/// Fixes one YAML text (every object in it reviewed together): what the JavaScript package, the
/// playground and the catalog's examples run. `meshguard fix` does the same over many files.
#[cfg(feature = "yaml")]
pub fn fix_text(policy: &crate::Policy, text: &str, default_namespace: &str) -> Result<FixedText, String> {
    let docs = crate::yaml::parse_documents(text).map_err(|e| e.to_string())?;
    let mut values = Vec::new();
    let mut places = Vec::new();
    for (d, doc) in docs.into_iter().enumerate() {
        match doc.value {
            Value::Object(mut list) if list.get("kind").and_then(Value::as_str) == Some("List") => {
                if let Some(Value::Array(items)) = list.remove("items") {
                    for (i, item) in items.into_iter().enumerate() {
                        values.push(item);
                        places.push((d, FieldPath::root().key("items").index(i)));
                    }
                }
            }
            value => {
                values.push(value);
                places.push((d, FieldPath::root()));
            }
        }
    }
    let policies = policy.fix_with_mutating_policies(&mut values, default_namespace, &[]);
    let fixed = fix_values(&mut values, |values, _| {
        Ok::<_, String>(policy.review(&crate::Input::new(values, default_namespace)))
    })?;
    write_fixes(text, &places, fixed.after_policies(policies))
}

/// Writes each object's operations ([`fix_values`]) into `text`, one pass per document;
/// `places`: each object's document and where it sits in it. A document whose edit is refused
/// keeps its text, and its objects' fixed findings are left with why.
#[cfg(feature = "yaml")]
pub fn write_fixes(text: &str, places: &[(usize, FieldPath)], fixed: FixedValues) -> Result<FixedText, String> {
    let mut per_doc: std::collections::BTreeMap<usize, (Patch, Vec<usize>)> = Default::default();
    for (object, patch) in fixed.patches.iter().enumerate() {
        if patch.0.is_empty() {
            continue;
        }
        let (doc, within) = &places[object];
        let entry = per_doc.entry(*doc).or_insert_with(|| (Patch(Vec::new()), Vec::new()));
        entry.0 .0.extend(patch.0.iter().map(|op| moved_under(op, within)));
        entry.1.push(object);
    }
    let asked: Vec<(usize, &Patch)> = per_doc.iter().map(|(doc, (patch, _))| (*doc, patch)).collect();
    let (edited, outcomes) = edit::apply_all(text, &asked);
    let mut out = FixedText { text: edited, applied: Vec::new(), left: Vec::new() };
    let mut fixed_by_object = fixed.fixed;
    for ((_, (_, objects)), outcome) in per_doc.into_iter().zip(outcomes) {
        for object in objects {
            let findings = std::mem::take(&mut fixed_by_object[object]);
            match &outcome {
                Ok(()) => out.applied.extend(findings),
                Err(why) => out.left.extend(findings.into_iter().map(|f| (f, Some(why.clone())))),
            }
        }
    }
    out.left.extend(fixed.remaining.into_iter().map(|f| (f, None)));
    Ok(out)
}

/// `config` (a `proxy.istio.io/config` annotation: YAML or JSON inside a string) with `key` set to
/// `value`, every other key and the string's style kept: a JSON object gets the key after its
/// `{`, a block mapping a new last line; a key already there has its value replaced in place.
/// Decided without a YAML parser (the admission modules have none), so every host offers the
/// same fix: a JSON object is checked by reading it back; a block mapping must hold its keys at
/// the line start, one per line, where a new last line cannot land inside another value. `Err`
/// says why the annotation is left to a person.
pub fn set_in_embedded_config(config: Option<&str>, key: &str, value: &Value) -> Result<String, String> {
    let json_value = value.to_string();
    let Some(text) = config.filter(|t| !t.trim().is_empty()) else {
        return Ok(format!("{{ \"{key}\": {json_value} }}"));
    };
    if text.trim_start().starts_with('{') {
        let Ok(Value::Object(mut settings)) = serde_json::from_str::<Value>(text) else {
            return Err("the annotation is a flow mapping that is not JSON".into());
        };
        let edited = match find_setting(text, key) {
            Some((start, end)) => format!("{}{}{}", &text[..start], json_value, &text[end..]),
            None => {
                let brace = text.find('{').ok_or("no `{`")?;
                let after = &text[brace + 1..];
                let spacing = if after.starts_with(' ') { " " } else { "" };
                let separator = if settings.is_empty() { "" } else { "," };
                format!("{}{{{spacing}\"{key}\": {json_value}{separator}{}", &text[..brace], after)
            }
        };
        settings.insert(key.to_string(), value.clone());
        return match serde_json::from_str::<Value>(&edited) {
            Ok(read) if read == Value::Object(settings) => Ok(edited),
            _ => Err(format!("setting `{key}` in the annotation would change its other settings")),
        };
    }
    let block_mapping = text.lines().all(|line| {
        let t = line.trim_start();
        t.is_empty() || t.starts_with('#') || line.starts_with([' ', '-']) || key_at_line_start(line)
    }) && text.lines().next().is_some_and(key_at_line_start);
    if !block_mapping || text.contains(['&', '*', '!', '\t']) {
        return Err("the annotation is not a plain block mapping".into());
    }
    match find_setting(text, key) {
        Some((start, end)) => {
            let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
            if !text[line_start..].starts_with(key) || text[start..end].contains(['|', '>', '{', '[', '"', '\'']) {
                return Err(format!("`{key}` is set in a form that is edited by hand"));
            }
            Ok(format!("{}{}{}", &text[..start], yaml_scalar(value), &text[end..]))
        }
        None => {
            let line = format!("{key}: {}", yaml_scalar(value));
            Ok(match text.strip_suffix('\n') {
                Some(body) => format!("{body}\n{line}\n"),
                None => format!("{text}\n{line}"),
            })
        }
    }
}

/// `line` starts with a plain `key:` (then a space or the line's end).
fn key_at_line_start(line: &str) -> bool {
    let Some(colon) = line.find(':') else { return false };
    let key = &line[..colon];
    !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        && line[colon + 1..].chars().next().is_none_or(|c| c == ' ')
}

/// The byte range of `key`'s value in a YAML or JSON settings text (a top-level key: at a line
/// start, or after `{` or `,`), if it is set there.
fn find_setting(text: &str, key: &str) -> Option<(usize, usize)> {
    for quoted in [format!("\"{key}\""), key.to_string()] {
        let mut from = 0;
        while let Some(found) = text[from..].find(&quoted) {
            let at = from + found;
            from = at + quoted.len();
            let before = text[..at].trim_end_matches([' ', '\t']);
            if !(before.is_empty() || before.ends_with(['\n', '{', ','])) {
                continue;
            }
            let rest = &text[at + quoted.len()..];
            let Some(after_colon) = rest.trim_start().strip_prefix(':') else { continue };
            let value_start = text.len() - after_colon.trim_start().len();
            let value_end = value_start
                + after_colon.trim_start().find([',', '}', '\n', '#']).unwrap_or(after_colon.trim_start().len());
            let value_end = value_start + text[value_start..value_end].trim_end().len();
            return Some((value_start, value_end));
        }
    }
    None
}

fn yaml_scalar(value: &Value) -> String {
    match value {
        Value::String(s) if s.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') && s.parse::<f64>().is_err() => {
            s.clone()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_adds_at_the_deepest_existing_ancestor_or_replaces() {
        let object = json!({"spec": {"template": {"spec": {}}}});
        let path = FieldPath::root().key("spec").key("template").key("metadata").key("annotations").key("a/b");
        let fix = Fix::set(&object, &path, json!("x"), "d");
        assert_eq!(
            serde_json::to_value(&fix.patch).unwrap(),
            json!([{"op": "add", "path": "/spec/template/metadata", "value": {"annotations": {"a/b": "x"}}}])
        );
        let object = json!({"spec": {"exportTo": ["*"]}});
        let fix = Fix::set(&object, &FieldPath::root().key("spec").key("exportTo"), json!(["."]), "d");
        assert_eq!(
            serde_json::to_value(&fix.patch).unwrap(),
            json!([{"op": "replace", "path": "/spec/exportTo", "value": ["."]}])
        );
    }

    #[test]
    fn changes_are_held_to_the_declared_scope() {
        let before = json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}]}}, "replicas": 1}});
        let mut after = before.clone();
        after["spec"]["template"]["metadata"] = json!({"annotations": {"proxy.istio.io/config": "{}"}});
        assert_eq!(changed_paths(&before, &after), ["/spec/template/metadata/annotations/proxy.istio.io~1config"]);
        let hold = vec!["**/metadata/annotations/proxy.istio.io~1config".to_string()];
        assert!(changes_within(&before, &after, &hold).is_ok());
        after["spec"]["replicas"] = json!(3);
        let e = changes_within(&before, &after, &hold).unwrap_err();
        assert!(e.contains("`/spec/replicas`"), "{e}");
        assert!(changes_within(&before, &after, &["/spec".to_string()]).is_ok(), "a subtree covers what is under it");
        assert!(changes_within(&before, &after, &[]).is_err(), "an empty scope allows no change");
        let sleep = vec!["**/containers/*/lifecycle/preStop/sleep/seconds".to_string()];
        let mut slept = before.clone();
        slept["spec"]["template"]["spec"]["containers"][0]["lifecycle"] = json!({"preStop": {"sleep": {"seconds": 5}}});
        assert!(changes_within(&before, &slept, &sleep).is_ok());
        slept["spec"]["template"]["spec"]["containers"][0]["name"] = json!("b");
        assert!(changes_within(&before, &slept, &sleep).is_err(), "`*` is one segment, not a rename");
        let removed = json!({"spec": {"template": {"spec": {"containers": []}}, "replicas": 1}});
        assert_eq!(changed_paths(&before, &removed), ["/spec/template/spec/containers/0/name"]);
        let patch: Patch = serde_json::from_value(json!([{"op": "replace", "path": "/nope", "value": 1}])).unwrap();
        assert!(strays(&before, &patch, &hold).unwrap().contains("does not apply"));
    }

    #[test]
    fn embedded_config_keeps_its_style_and_other_keys() {
        let hold = json!(true);
        let key = "holdApplicationUntilProxyStarts";
        assert_eq!(set_in_embedded_config(None, key, &hold).unwrap(), r#"{ "holdApplicationUntilProxyStarts": true }"#);
        assert_eq!(
            set_in_embedded_config(Some(r#"{ "concurrency": 2 }"#), key, &hold).unwrap(),
            r#"{ "holdApplicationUntilProxyStarts": true, "concurrency": 2 }"#
        );
        assert_eq!(
            set_in_embedded_config(Some("concurrency: 2\ntracing:\n  sampling: 10\n"), key, &hold).unwrap(),
            "concurrency: 2\ntracing:\n  sampling: 10\nholdApplicationUntilProxyStarts: true\n"
        );
        assert_eq!(
            set_in_embedded_config(
                Some("holdApplicationUntilProxyStarts: false # not yet\nconcurrency: 2"),
                key,
                &hold
            )
            .unwrap(),
            "holdApplicationUntilProxyStarts: true # not yet\nconcurrency: 2"
        );
        assert_eq!(
            set_in_embedded_config(Some(r#"{"holdApplicationUntilProxyStarts":false}"#), key, &hold).unwrap(),
            r#"{"holdApplicationUntilProxyStarts":true}"#
        );
        let drain = json!("30s");
        assert_eq!(
            set_in_embedded_config(Some("concurrency: 2"), "terminationDrainDuration", &drain).unwrap(),
            "concurrency: 2\nterminationDrainDuration: 30s"
        );
        assert!(set_in_embedded_config(Some("[1, 2]"), key, &hold).is_err(), "not a mapping");
        assert!(set_in_embedded_config(Some("{concurrency: 2}"), key, &hold).is_err(), "flow YAML, not JSON");
        assert!(set_in_embedded_config(Some("base: &b {a: 1}"), key, &hold).is_err(), "an anchor");
        assert!(set_in_embedded_config(Some("  indented: 1"), key, &hold).is_err());
        assert!(set_in_embedded_config(Some("holdApplicationUntilProxyStarts: |\n  x"), key, &hold).is_err());
    }
}
