//! Templates for a team's own rules: the same check backs many rules with different params.

use super::{compile_regex, parse_params, Applies, CheckSpec, Compiled, ObjectCheck, ParamDoc, ParamError, Target};
use crate::finding::Violation;
use crate::matching::KindSelector;
use crate::object::{map_str, Input, Object};
use crate::path::{FieldPath, FieldSelector};
use crate::pattern::{excerpt, Budget, Pattern};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[serde(untagged)]
enum KeySpec {
    Key(String),
    #[serde(rename_all = "camelCase")]
    WithRegex {
        key: String,
        #[serde(default)]
        allowed_regex: Option<String>,
        /// The value `meshguard fix` sets where the key is missing.
        #[serde(default)]
        default: Option<String>,
    },
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
enum MetaTarget {
    #[default]
    Object,
    PodTemplate,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequiredMetaParams {
    keys: Vec<KeySpec>,
    #[serde(default)]
    target: MetaTarget,
}

struct RequiredKey {
    key: String,
    allowed: Option<Pattern>,
    default: Option<String>,
}

struct RequiredMeta {
    field: &'static str,
    target: MetaTarget,
    keys: Vec<RequiredKey>,
}

fn compile_required_meta(field: &'static str, params: &Value) -> Result<Compiled, ParamError> {
    let p: RequiredMetaParams = parse_params(params)?;
    if p.keys.is_empty() {
        return Err(ParamError::new("keys", "must name at least one key"));
    }
    let mut keys = Vec::new();
    for (i, k) in p.keys.into_iter().enumerate() {
        keys.push(match k {
            KeySpec::Key(key) => RequiredKey { key, allowed: None, default: None },
            KeySpec::WithRegex { key, allowed_regex, default } => {
                let allowed = allowed_regex
                    .map(|r| compile_regex(&format!("keys[{i}].allowedRegex"), &format!("^(?:{r})$")))
                    .transpose()?;
                if let (Some(re), Some(d)) = (&allowed, &default) {
                    if !re.is_match(d, &mut Budget::default()).unwrap_or(false) {
                        return Err(ParamError::new(
                            format!("keys[{i}].default"),
                            format!("`{d}` does not match the key's allowedRegex, so the fix would not pass"),
                        ));
                    }
                }
                RequiredKey { key, allowed, default }
            }
        });
    }
    Ok(Compiled::Object(Box::new(RequiredMeta { field, target: p.target, keys })))
}

const KEYS_DOC: ParamDoc = ParamDoc {
    name: "keys",
    ty: "list of strings or {key, allowedRegex, default}",
    default: "required",
    description: super::doc(
        "Keys that must be present; `allowedRegex` must match the whole value; `default` is the value `meshguard fix` adds where the key is missing.",
    ),
};
const TARGET_DOC: ParamDoc = ParamDoc {
    name: "target",
    ty: "object | podTemplate",
    default: "object",
    description: super::doc("Check the object's own metadata, or its pod template's (workloads only)."),
};

pub static REQUIRED_LABELS: CheckSpec = CheckSpec {
    id: "required-labels",
    target: Target::Kubernetes,
    applies_to: Applies::Any,
    summary: super::doc(
        "Objects (or their pod templates) carry the listed labels, optionally with values matching a regex. \
              Istio's telemetry and routing read `app` and `version` from pod labels.",
    ),
    params: &[KEYS_DOC, TARGET_DOC],
    example_params: super::doc("{keys: [app, {key: version, allowedRegex: 'v[0-9]+'}], target: podTemplate}"),
    passing_example: super::doc(
        "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  template:
    metadata: {labels: {app: api, version: v1}}
",
    ),
    failing_example: super::doc(
        "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  template:
    metadata: {labels: {app: api, version: latest}}
",
    ),
    fix: crate::checks::doc("Adds a missing label when the key gives a `default` (which must match its `allowedRegex`); a value that does not match is left to a person."),
    fix_scope: &["**/metadata/labels/*"],
    compile: |params| compile_required_meta("labels", params),
    native: crate::checks::Native::Vap(|p| native_required_meta("labels", p)),
};

pub static REQUIRED_ANNOTATIONS: CheckSpec = CheckSpec {
    id: "required-annotations",
    target: Target::Kubernetes,
    applies_to: Applies::Any,
    summary: super::doc(
        "Objects (or their pod templates) carry the listed annotations, optionally with values matching a regex.",
    ),
    params: &[KEYS_DOC, TARGET_DOC],
    example_params: super::doc("{keys: [{key: owner, allowedRegex: 'team-.+'}]}"),
    passing_example: super::doc(
        "\
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop, annotations: {owner: team-shop}}
",
    ),
    failing_example: super::doc(
        "\
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
",
    ),
    fix: crate::checks::doc("Adds a missing annotation when the key gives a `default` (which must match its `allowedRegex`); a value that does not match is left to a person."),
    fix_scope: &["**/metadata/annotations/*"],
    compile: |params| compile_required_meta("annotations", params),
    native: crate::checks::Native::Vap(|p| native_required_meta("annotations", p)),
};

impl ObjectCheck for RequiredMeta {
    fn review(&self, obj: &Object<'_>, _: &Input<'_>, out: &mut Vec<Violation>) {
        let (map, template) = match self.target {
            MetaTarget::Object => (if self.field == "labels" { obj.labels() } else { obj.annotations() }, None),
            MetaTarget::PodTemplate => {
                let Some(t) = obj.pod_template() else { return };
                (if self.field == "labels" { t.labels() } else { t.annotations() }, Some(t))
            }
        };
        let base = || match &template {
            None => FieldPath::root().key("metadata").key(self.field),
            Some(t) => t.metadata_path().key(self.field),
        };
        let singular = self.field.trim_end_matches('s');
        let mut budget = Budget::default();
        for RequiredKey { key, allowed: re, default } in &self.keys {
            match (map_str(map, key), re) {
                (None, _) => out.push(
                    Violation::new(
                        base().key(key),
                        format!("{} `{}` is missing {singular} `{key}`", obj.kind, obj.name),
                    )
                    .with_fix(default.as_ref().map(|d| {
                        crate::fix::Fix::set(
                            obj.value,
                            &base().key(key),
                            Value::String(d.clone()),
                            format!("add {singular} `{key}: {d}`"),
                        )
                    })),
                ),
                (Some(v), Some(re)) => match re.is_match(&v, &mut budget) {
                    Ok(true) => {}
                    Ok(false) => out.push(Violation::new(
                        base().key(key),
                        format!(
                            "{} `{}`: {singular} `{key}` is `{}`, which does not match `{}`",
                            obj.kind,
                            obj.name,
                            excerpt(&v, 200),
                            trim_anchors(re.as_str())
                        ),
                    )),
                    Err(over) => out.push(Violation::new(
                        base().key(key),
                        format!("{} `{}`: {singular} `{key}`: {over}; the rule fails closed", obj.kind, obj.name),
                    )),
                },
                _ => {}
            }
        }
    }
}

fn trim_anchors(re: &str) -> &str {
    re.strip_prefix("^(?:").and_then(|r| r.strip_suffix(")$")).unwrap_or(re)
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FieldPatternParams {
    path: String,
    pattern: String,
    #[serde(default = "yes")]
    must_match: bool,
    #[serde(default)]
    required: bool,
}

fn yes() -> bool {
    true
}

struct FieldPattern {
    selector: FieldSelector,
    pattern: Pattern,
    must_match: bool,
    required: bool,
}

pub static FIELD_PATTERN: CheckSpec = CheckSpec {
    id: "field-pattern",
    target: Target::Kubernetes,
    applies_to: Applies::Any,
    summary: super::doc(
        "Every value a field path reaches (`[*]` walks lists) must match a regex, or with `mustMatch: false` must \
              not. With `required: true` the field must exist.",
    ),
    params: &[
        ParamDoc {
            name: "path",
            ty: "field path",
            default: "required",
            description: super::doc("e.g. `spec.template.spec.containers[*].image`."),
        },
        ParamDoc {
            name: "pattern",
            ty: "regex",
            default: "required",
            description: super::doc("Searched anywhere in the value; anchor it with `^...$` for a whole match."),
        },
        ParamDoc {
            name: "mustMatch",
            ty: "bool",
            default: "true",
            description: super::doc("`false` turns the pattern into a deny-list."),
        },
        ParamDoc {
            name: "required",
            ty: "bool",
            default: "false",
            description: super::doc("Report when the path reaches nothing."),
        },
    ],
    example_params: super::doc(
        "{path: 'spec.template.spec.containers[*].image', pattern: ':latest$|^[^:]+$', mustMatch: false}",
    ),
    passing_example: super::doc(
        "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  template:
    spec:
      containers: [{name: api, image: registry.local/shop/api:1.4.2}]
",
    ),
    failing_example: super::doc(
        "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  template:
    spec:
      containers: [{name: api, image: registry.local/shop/api:latest}]
",
    ),
    fix: crate::checks::doc("None: which value is right is the team's to say."),
    fix_scope: &[],
    compile: |params| {
        let p: FieldPatternParams = parse_params(params)?;
        let selector = FieldSelector::parse(&p.path).map_err(|e| ParamError::new("path", e))?;
        let pattern = compile_regex("pattern", &p.pattern)?;
        Ok(Compiled::Object(Box::new(FieldPattern {
            selector,
            pattern,
            must_match: p.must_match,
            required: p.required,
        })))
    },
    native: crate::checks::Native::Vap(native_field_pattern),
};

impl ObjectCheck for FieldPattern {
    fn review(&self, obj: &Object<'_>, _: &Input<'_>, out: &mut Vec<Violation>) {
        let found = self.selector.resolve(obj.value);
        if found.is_empty() && self.required {
            out.push(Violation::new(
                FieldPath::root(),
                format!("{} `{}` has no `{}`", obj.kind, obj.name, self.selector.as_str()),
            ));
        }
        let mut budget = Budget::default();
        for (path, value) in found {
            let Some(text) = scalar_text(value) else {
                continue;
            };
            match self.pattern.is_match(&text, &mut budget) {
                Ok(hit) if hit == self.must_match => {}
                Ok(_) => {
                    let verb = if self.must_match { "does not match" } else { "matches forbidden pattern" };
                    out.push(Violation::new(
                        path.clone(),
                        format!("{path} is `{}`, which {verb} `{}`", excerpt(&text, 200), self.pattern.as_str()),
                    ));
                }
                Err(over) => out.push(Violation::new(path.clone(), format!("{path}: {over}; the rule fails closed"))),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldRangeParams {
    path: String,
    #[serde(default)]
    min: Option<f64>,
    #[serde(default)]
    max: Option<f64>,
    #[serde(default)]
    required: bool,
}

struct FieldRange {
    selector: FieldSelector,
    min: Option<f64>,
    max: Option<f64>,
    required: bool,
}

pub static FIELD_RANGE: CheckSpec = CheckSpec {
    id: "field-range",
    target: Target::Kubernetes,
    applies_to: Applies::Any,
    summary: super::doc(
        "Every number a field path reaches lies within `min` and `max` (inclusive). Numeric strings count; \
              other values are reported. With `required: true` the field must exist.",
    ),
    params: &[
        ParamDoc {
            name: "path",
            ty: "field path",
            default: "required",
            description: super::doc("e.g. `spec.replicas`."),
        },
        ParamDoc { name: "min", ty: "number", default: "unset", description: super::doc("Lowest allowed value.") },
        ParamDoc { name: "max", ty: "number", default: "unset", description: super::doc("Highest allowed value.") },
        ParamDoc {
            name: "required",
            ty: "bool",
            default: "false",
            description: super::doc("Report when the path reaches nothing."),
        },
    ],
    example_params: super::doc("{path: spec.replicas, min: 2, required: true}"),
    passing_example: super::doc(
        "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec: {replicas: 3}
",
    ),
    failing_example: super::doc(
        "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec: {replicas: 1}
",
    ),
    fix: crate::checks::doc("None: whether to raise, lower or remove the value is the team's to say."),
    fix_scope: &[],
    compile: |params| {
        let p: FieldRangeParams = parse_params(params)?;
        let selector = FieldSelector::parse(&p.path).map_err(|e| ParamError::new("path", e))?;
        match (p.min, p.max) {
            (None, None) => return Err(ParamError::new("", "set `min`, `max` or both")),
            (Some(lo), Some(hi)) if lo > hi => {
                return Err(ParamError::new("min", format!("min {lo} is above max {hi}")))
            }
            _ => {}
        }
        Ok(Compiled::Object(Box::new(FieldRange { selector, min: p.min, max: p.max, required: p.required })))
    },
    native: crate::checks::Native::Vap(native_field_range),
};

impl ObjectCheck for FieldRange {
    fn review(&self, obj: &Object<'_>, _: &Input<'_>, out: &mut Vec<Violation>) {
        let found = self.selector.resolve(obj.value);
        if found.is_empty() && self.required {
            out.push(Violation::new(
                FieldPath::root(),
                format!("{} `{}` has no `{}`", obj.kind, obj.name, self.selector.as_str()),
            ));
        }
        for (path, value) in found {
            let n = value.as_f64().or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()));
            let Some(n) = n else {
                out.push(Violation::new(path.clone(), format!("{path} is not a number")));
                continue;
            };
            if let Some(lo) = self.min.filter(|lo| n < *lo) {
                out.push(Violation::new(path.clone(), format!("{path} is {n}, below the minimum {lo}")));
            } else if let Some(hi) = self.max.filter(|hi| n > *hi) {
                out.push(Violation::new(path.clone(), format!("{path} is {n}, above the maximum {hi}")));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForbiddenKindsParams {
    kinds: Vec<KindSelector>,
}

struct ForbiddenKinds {
    kinds: Vec<KindSelector>,
}

pub static FORBIDDEN_KINDS: CheckSpec = CheckSpec {
    id: "forbidden-kinds",
    target: Target::Kubernetes,
    applies_to: Applies::Any,
    summary: super::doc("Objects of the listed kinds (`apiGroups` + `kinds`, as in `match.kinds`) are not allowed."),
    params: &[ParamDoc {
        name: "kinds",
        ty: "list of {apiGroups, kinds}",
        default: "required",
        description: super::doc("Kinds to forbid."),
    }],
    example_params:
        "{kinds: [{apiGroups: [''], kinds: [NodePort]}, {apiGroups: [networking.istio.io], kinds: [WorkloadEntry]}]}",
    passing_example: super::doc(
        "\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: shop}
",
    ),
    failing_example: super::doc(
        "\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm, namespace: shop}
",
    ),
    fix: crate::checks::doc("None: deleting an object is never a fix."),
    fix_scope: &[],
    compile: |params| {
        let p: ForbiddenKindsParams = parse_params(params)?;
        if p.kinds.is_empty() {
            return Err(ParamError::new("kinds", "must list at least one kind"));
        }
        Ok(Compiled::Object(Box::new(ForbiddenKinds { kinds: p.kinds })))
    },
    native: crate::checks::Native::Vap(native_forbidden_kinds),
};

impl ObjectCheck for ForbiddenKinds {
    fn review(&self, obj: &Object<'_>, _: &Input<'_>, out: &mut Vec<Violation>) {
        if self.kinds.iter().any(|k| k.matches(obj.group, obj.kind)) {
            let group = if obj.group.is_empty() { "core" } else { obj.group };
            out.push(Violation::new(
                FieldPath::root().key("kind"),
                format!("{} ({group}) objects are not allowed here", obj.kind),
            ));
        }
    }
}

/// Scalars the checks read as text ([`scalar_text`]), in CEL over `v`.
const NATIVE_SCALAR: &str =
    "(type(v) == string || type(v) == int || type(v) == uint || type(v) == double || type(v) == bool)";

/// `required-labels` / `required-annotations` in CEL, for `meshguard rules export`.
fn native_required_meta(field: &'static str, params: &Value) -> Result<crate::checks::NativeForm, ParamError> {
    use crate::checks::native::{key_step, lit, set_patch};
    use crate::checks::NativeValidation;
    let p: RequiredMetaParams = parse_params(params)?;
    let on_template = p.target == MetaTarget::PodTemplate;
    let root = if on_template { "variables.template" } else { "object" };
    let singular = field.trim_end_matches('s');
    let pointer = if on_template { "variables.templatePointer" } else { "''" };
    let mut out = Vec::new();
    // The fix: a missing key with a default is added; into a new map at once where the map (or
    // `metadata`) is missing, as the rounds of `meshguard fix` leave it.
    let mut defaults: Vec<(String, String)> = Vec::new();
    let mut adds = Vec::new();
    for k in p.keys {
        let (key, allowed, default) = match k {
            KeySpec::Key(key) => (key, None, None),
            KeySpec::WithRegex { key, allowed_regex, default } => (key, allowed_regex, default),
        };
        let value = format!("{root}.?metadata.?{field}[?{}]", lit(&key));
        let present = format!("({value}.hasValue() && cel.bind(v, {value}.value(), {NATIVE_SCALAR}))");
        if let Some(d) = default.filter(|_| !defaults.iter().any(|(k, _)| *k == key)) {
            adds.push(format!("({present} ? [] : {})", set_patch(root, pointer, &["metadata", field, &key], &lit(&d))));
            defaults.push((key.clone(), lit(&d)));
        }
        let expression = match &allowed {
            None => present.clone(),
            Some(re) => format!("{present} && string({value}.value()).matches({})", lit(&format!("^(?:{re})$"))),
        };
        let who = "object.kind + ' `' + object.metadata.name + '`'";
        let message = match &allowed {
            None => format!("{who} + {}", lit(&format!(" is missing {singular} `{key}`"))),
            Some(re) => format!(
                "{who} + ({present} ? {} + {} + {} : {})",
                lit(&format!(": {singular} `{key}` is `")),
                crate::checks::native::excerpt(&format!("string({value}.value())"), 200),
                lit(&format!("`, which does not match `{re}`")),
                lit(&format!(" is missing {singular} `{key}`"))
            ),
        };
        let v = NativeValidation::new(expression, message, &format!("metadata.{field}{}", key_step(&key)));
        out.push(if on_template { v.on_template() } else { v });
    }
    let mut mutations = Vec::new();
    if !adds.is_empty() {
        let all: Vec<String> = defaults.iter().map(|(k, v)| format!("{}: {v}", lit(k))).collect();
        let all = format!("{{{}}}", all.join(", "));
        let guard = if on_template { "variables.template == null ? [] : " } else { "" };
        let expression = format!(
            "{guard}!{root}.?metadata.?{field}.hasValue() ? {} : {}",
            set_patch(root, pointer, &["metadata", field], &all),
            adds.join(" + ")
        );
        mutations.push(if on_template {
            crate::checks::NativeMutation::on_template(expression)
        } else {
            crate::checks::NativeMutation::new(expression)
        });
    }
    Ok(crate::checks::NativeForm { validations: out, mutations, ..Default::default() })
}

/// Whether `predicate` (CEL over `v`) holds for every value `parts` reach from `at` (`all`),
/// or for one (`!all`), as [`FieldSelector::resolve`] walks them.
fn native_reach(parts: &[crate::path::SelectorPart], at: &str, predicate: &str, all: bool, depth: usize) -> String {
    use crate::path::SelectorPart;
    let Some((first, rest)) = parts.split_first() else {
        return format!("cel.bind(v, {at}, {predicate})");
    };
    let item = format!("x{depth}");
    match (first, all) {
        (SelectorPart::Key(k), true) => {
            let k = crate::checks::native::lit(k);
            format!(
                "(type({at}) != map || !({k} in {at}) || {})",
                native_reach(rest, &format!("{at}[{k}]"), predicate, all, depth + 1)
            )
        }
        (SelectorPart::Key(k), false) => {
            let k = crate::checks::native::lit(k);
            format!(
                "(type({at}) == map && {k} in {at} && {})",
                native_reach(rest, &format!("{at}[{k}]"), predicate, all, depth + 1)
            )
        }
        (SelectorPart::Index(i), true) => {
            format!(
                "(type({at}) != list || {at}.size() <= {i} || {})",
                native_reach(rest, &format!("{at}[{i}]"), predicate, all, depth + 1)
            )
        }
        (SelectorPart::Index(i), false) => {
            format!(
                "(type({at}) == list && {at}.size() > {i} && {})",
                native_reach(rest, &format!("{at}[{i}]"), predicate, all, depth + 1)
            )
        }
        (SelectorPart::AnyIndex, true) => {
            format!(
                "(type({at}) != list || {at}.all({item}, {}))",
                native_reach(rest, &item, predicate, all, depth + 1)
            )
        }
        (SelectorPart::AnyIndex, false) => {
            format!(
                "(type({at}) == list && {at}.exists({item}, {}))",
                native_reach(rest, &item, predicate, all, depth + 1)
            )
        }
    }
}

/// CEL giving the messages of the values `parts` reach from `at` (CEL) for which `fails` (CEL
/// over `v`) holds, each `message` (CEL over `v` and `p`, the value's path as
/// [`FieldPath`] renders it, list indexes included) in the order [`FieldSelector::resolve`]
/// finds them. `path` is the path so far (CEL of a string; `''` at the root).
fn native_messages(
    parts: &[crate::path::SelectorPart],
    at: &str,
    path: &str,
    fails: &str,
    message: &str,
    depth: usize,
) -> String {
    use crate::checks::native::lit;
    use crate::path::SelectorPart;
    let Some(first) = parts.first() else {
        return format!("cel.bind(v, {at}, cel.bind(p, {path}, {fails} ? [{message}] : []))");
    };
    let (i, x, y) = (format!("i{depth}"), format!("x{depth}"), format!("y{depth}"));
    match first {
        // A run of keys is one optional chain (one nesting level however long the path).
        SelectorPart::Key(_) => {
            let keys: Vec<&String> =
                parts.iter().map_while(|p| if let SelectorPart::Key(k) = p { Some(k) } else { None }).collect();
            let mut steps = FieldPath::root();
            let mut chain = String::new();
            for k in &keys {
                steps = steps.key(k);
                chain.push_str(&format!("[?{}]", lit(k)));
            }
            let shown = steps.to_string();
            let shown = if path == "''" || shown.starts_with('[') { shown } else { format!(".{shown}") };
            format!(
                "cel.bind({y}, {at}{chain}, {y}.hasValue() ? {} : [])",
                native_messages(
                    &parts[keys.len()..],
                    &format!("{y}.value()"),
                    &format!("{path} + {}", lit(&shown)),
                    fails,
                    message,
                    depth + 1
                )
            )
        }
        SelectorPart::Index(n) => format!(
            "(type({at}) == list && {at}.size() > {n} ? {} : [])",
            native_messages(
                &parts[1..],
                &format!("{at}[{n}]"),
                &format!("{path} + '[{n}]'"),
                fails,
                message,
                depth + 1
            )
        ),
        SelectorPart::AnyIndex => format!(
            "(type({at}) == list ? {at}.transformList({i}, {x}, {}).flatten() : [])",
            native_messages(&parts[1..], &x, &format!("{path} + '[' + string({i}) + ']'"), fails, message, depth + 1)
        ),
    }
}

/// The VAP `fieldPath` of a selector: its keys up to the first list index.
fn native_path(parts: &[crate::path::SelectorPart]) -> String {
    use crate::path::SelectorPart;
    let keys: Vec<String> = parts
        .iter()
        .map_while(|p| match p {
            SelectorPart::Key(k) => Some(crate::checks::native::key_step(k)),
            _ => None,
        })
        .collect();
    keys.concat().trim_start_matches('.').to_string()
}

/// The "has no `path`" validation of `required: true`.
fn native_required(selector: &FieldSelector) -> crate::checks::NativeValidation {
    use crate::checks::native::lit;
    crate::checks::NativeValidation::new(
        native_reach(selector.parts(), "object", "true", false, 0),
        format!(
            "object.kind + ' `' + object.metadata.name + '` has no ' + {}",
            lit(&format!("`{}`", selector.as_str()))
        ),
        "",
    )
}

/// `field-pattern` in CEL, for `meshguard rules export`.
fn native_field_pattern(params: &Value) -> Result<crate::checks::NativeForm, ParamError> {
    use crate::checks::native::lit;
    use crate::checks::NativeValidation;
    let p: FieldPatternParams = parse_params(params)?;
    let selector = FieldSelector::parse(&p.path).map_err(|e| ParamError::new("path", e))?;
    let predicate = format!("!{NATIVE_SCALAR} || string(v).matches({}) == {}", lit(&p.pattern), p.must_match);
    let verb = if p.must_match { "does not match" } else { "matches forbidden pattern" };
    let message = format!(
        "p + ' is `' + {} + {}",
        crate::checks::native::excerpt("string(v)", 200),
        lit(&format!("`, which {verb} `{}`", p.pattern))
    );
    let messages = native_messages(selector.parts(), "object", "''", &format!("!({predicate})"), &message, 0);
    let mut out = vec![NativeValidation::new(
        native_reach(selector.parts(), "object", &predicate, true, 0),
        format!("{messages}.join('; ')"),
        &native_path(selector.parts()),
    )];
    if p.required {
        out.push(native_required(&selector));
    }
    Ok(out.into())
}

/// `field-range` in CEL, for `meshguard rules export`: numbers, and strings Rust's `f64` parse
/// reads as numbers.
fn native_field_range(params: &Value) -> Result<crate::checks::NativeForm, ParamError> {
    use crate::checks::native::lit;
    use crate::checks::NativeValidation;
    let p: FieldRangeParams = parse_params(params)?;
    let selector = FieldSelector::parse(&p.path).map_err(|e| ParamError::new("path", e))?;
    let bound = |n: Option<f64>, op: &str| n.map_or("true".to_string(), |n| format!("n {op} {n:?}"));
    let within = format!("{} && {}", bound(p.min, ">="), bound(p.max, "<="));
    let number = "'^[+-]?(([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?|(?i:inf|infinity|nan))$'";
    let predicate = format!(
        "type(v) == int || type(v) == uint || type(v) == double ? cel.bind(n, double(v), {within}) : \
         type(v) == string && v.trim().matches({number}) ? cel.bind(n, double(v.trim()), {within}) : false"
    );
    // The check's words: the number as Rust prints an f64 (no `.0` on a whole number).
    let shown = "(n == double(int(n)) ? string(int(n)) : string(n))";
    let below = p.min.map_or(String::new(), |lo| {
        format!("n < {lo:?} ? p + ' is ' + {shown} + {} : ", lit(&format!(", below the minimum {lo}")))
    });
    let above = p
        .max
        .map_or("''".to_string(), |hi| format!("p + ' is ' + {shown} + {}", lit(&format!(", above the maximum {hi}"))));
    let message = format!(
        "type(v) == int || type(v) == uint || type(v) == double ? cel.bind(n, double(v), {below}{above}) : \
         type(v) == string && v.trim().matches({number}) ? cel.bind(n, double(v.trim()), {below}{above}) : p + ' is not a number'"
    );
    let messages = native_messages(selector.parts(), "object", "''", &format!("!({predicate})"), &message, 0);
    let mut out = vec![NativeValidation::new(
        native_reach(selector.parts(), "object", &predicate, true, 0),
        format!("{messages}.join('; ')"),
        &native_path(selector.parts()),
    )];
    if p.required {
        out.push(native_required(&selector));
    }
    Ok(out.into())
}

/// `forbidden-kinds` in CEL, for `meshguard rules export`.
fn native_forbidden_kinds(params: &Value) -> Result<crate::checks::NativeForm, ParamError> {
    use crate::checks::native::{list, GROUP};
    use crate::checks::NativeValidation;
    let p: ForbiddenKindsParams = parse_params(params)?;
    let terms: Vec<String> = p
        .kinds
        .iter()
        .map(|k| {
            let groups = if k.api_groups.is_empty() || k.api_groups.iter().any(|g| g == "*") {
                "true".to_string()
            } else {
                format!("{GROUP} in {}", list(&k.api_groups))
            };
            let kinds = if k.kinds.is_empty() || k.kinds.iter().any(|g| g == "*") {
                "true".to_string()
            } else {
                format!("object.kind in {}", list(&k.kinds))
            };
            format!("({groups} && {kinds})")
        })
        .collect();
    if terms.is_empty() {
        return Ok(Default::default());
    }
    Ok(vec![NativeValidation::new(
        format!("!({})", terms.join(" || ")),
        format!("object.kind + ' (' + ({GROUP} == '' ? 'core' : {GROUP}) + ') objects are not allowed here'"),
        "kind",
    )]
    .into())
}
