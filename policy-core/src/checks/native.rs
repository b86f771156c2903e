//! Building blocks of the checks' native (CEL) forms: literals, namespace globs, field reads
//! that tolerate absent fields as the checks do. Each check writes its own CEL beside its Rust
//! (see [`super::Native`]); these keep the quoting and the absent-field handling in one place.

/// A CEL string literal. JSON's escapes are CEL's (`\"`, `\\`, `\n`, `\uXXXX`).
pub(crate) fn lit(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "''".to_string())
}

/// A CEL list of string literals.
pub(crate) fn list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|s| lit(s)).collect();
    format!("[{}]", items.join(", "))
}

/// Whether `name` (CEL of a string) matches one of `patterns`: a name, `prefix*`, `*suffix` or
/// `*`, as [`crate::matching::glob_match`] reads them.
pub(crate) fn any_glob(patterns: &[String], name: &str) -> String {
    if patterns.is_empty() {
        return "false".into();
    }
    let terms: Vec<String> = patterns
        .iter()
        .map(|p| {
            if p == "*" {
                "true".to_string()
            } else if let Some(prefix) = p.strip_suffix('*') {
                format!("{name}.startsWith({})", lit(prefix))
            } else if let Some(suffix) = p.strip_prefix('*') {
                format!("{name}.endsWith({})", lit(suffix))
            } else {
                format!("{name} == {}", lit(p))
            }
        })
        .collect();
    format!("({})", terms.join(" || "))
}

/// The namespace the checks and a rule's `match` see: a Namespace's own name, else the request's.
pub(crate) const NAMESPACE: &str = "request.namespace";

/// The API group of `object` (empty for the core group), as the checks derive it.
pub(crate) const GROUP: &str = "(object.apiVersion.contains('/') ? object.apiVersion.split('/')[0] : '')";

/// `object` is `kind` in the core group.
pub(crate) fn is_core(kind: &str) -> String {
    format!("(object.kind == {} && !object.apiVersion.contains('/'))", lit(kind))
}

/// `object` is one of `kinds` in an Istio API group.
pub(crate) fn is_istio(kinds: &[&str]) -> String {
    let kinds: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
    format!("(object.kind in {} && {GROUP}.endsWith('istio.io'))", list(&kinds))
}

/// A label or annotation of the pod template as a string, or `''` when absent (`map` is
/// `labels` or `annotations`); YAML booleans and numbers read as their text, as `map_str` does.
pub(crate) fn template_meta(map: &str, key: &str) -> String {
    format!("string(variables.template.?metadata.?{map}[?{}].orValue(''))", lit(key))
}

/// Whether the pod template has that label or annotation.
pub(crate) fn template_has_meta(map: &str, key: &str) -> String {
    format!("variables.template.?metadata.?{map}[?{}].hasValue()", lit(key))
}

/// A VAP `fieldPath` step for a map key that is not a plain name (`['proxy.istio.io/config']`).
pub(crate) fn key_step(key: &str) -> String {
    if !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        format!(".{key}")
    } else {
        format!("['{}']", key.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// A CEL literal of a JSON value (a constraint's parameters inlined into a policy).
#[cfg(feature = "cel")]
pub(crate) fn json(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) if n.is_f64() => {
            let text = n.to_string();
            if text.contains(['.', 'e', 'E', 'N', 'i']) {
                text
            } else {
                format!("{text}.0")
            }
        }
        Value::Number(n) => n.to_string(),
        Value::String(s) => lit(s),
        Value::Array(items) => format!("[{}]", items.iter().map(json).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => {
            let entries: Vec<String> = map.iter().map(|(k, v)| format!("{}: {}", lit(k), json(v))).collect();
            format!("{{{}}}", entries.join(", "))
        }
    }
}

/// CEL of `text` (CEL of a string) cut as [`crate::pattern::excerpt`] cuts it: its first `max`
/// characters, then `… (<bytes> bytes)`.
pub(crate) fn excerpt(text: &str, max: usize) -> String {
    format!(
        "cel.bind(t, {text}, t.size() > {max} ? t.substring(0, {max}) + '… (' + string(bytes(t).size()) + ' bytes)' : t)"
    )
}

/// Parameters (a Gatekeeper Constraint's, a `cel` rule's) as a CEL literal. Every list item and
/// map value is `dyn(...)`: they come from typed objects, where lists and maps of mixed values are
/// fine, while the API server's CEL refuses mixed literals.
#[cfg(feature = "cel")]
pub(crate) fn params_literal(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Array(items) => {
            format!("[{}]", items.iter().map(|i| format!("dyn({})", params_literal(i))).collect::<Vec<_>>().join(", "))
        }
        Value::Object(map) => {
            let entries: Vec<String> =
                map.iter().map(|(k, v)| format!("{}: dyn({})", lit(k), params_literal(v))).collect();
            format!("{{{}}}", entries.join(", "))
        }
        scalar => json(scalar),
    }
}

/// `key` as one JSON Pointer token (`~` and `/` escaped).
pub(crate) fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// CEL of `value` under `keys` as nested maps (`{'a': {'b': value}}`).
fn nested(keys: &[&str], value: &str) -> String {
    keys.iter().rev().fold(value.to_string(), |inner, k| format!("{{{}: {inner}}}", lit(k)))
}

/// CEL giving the `JSONPatch` that sets `value` (CEL) at `keys` under the node `root` (CEL)
/// whose JSON Pointer is `pointer` (CEL of a string), as [`crate::fix::Fix::set`] makes it: one
/// `add` at the deepest existing ancestor, holding the missing rest as nested maps (`add`
/// replaces a member that is there).
pub(crate) fn set_op(root: &str, pointer: &str, keys: &[&str], value: &str) -> String {
    let path = |n: usize| {
        let tokens: String = keys[..n].iter().map(|k| format!("/{}", pointer_token(k))).collect();
        if pointer == "''" {
            lit(&tokens)
        } else {
            format!("{pointer} + {}", lit(&tokens))
        }
    };
    let patch = |n: usize| format!("JSONPatch{{op: 'add', path: {}, value: {}}}", path(n), nested(&keys[n..], value));
    let mut out = patch(keys.len());
    for n in (1..keys.len()).rev() {
        let reach: String = keys[..n].iter().map(|k| format!("[?{}]", lit(k))).collect();
        out = format!("(!{root}{reach}.hasValue() ? {} : {out})", patch(n));
    }
    out
}

/// [`set_op`] as a list of one patch.
pub(crate) fn set_patch(root: &str, pointer: &str, keys: &[&str], value: &str) -> String {
    format!("[{}]", set_op(root, pointer, keys, value))
}
