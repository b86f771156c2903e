//! Admission decisions, shared by every admission host (Kubewarden waPC, OPA ABI, the webhook):
//! an AdmissionRequest in, the verdict out. Hosts only translate this into their answer shape.
//!
//! A request carries one object; some rules compare it with others (another headless Service on
//! the same port, a second default Sidecar, the namespace's labels). In CI the repo holds those
//! peers. At admission the host supplies what it knows of the cluster as a [`ClusterView`]
//! (Gatekeeper's inventory, Kubewarden's context-aware calls, the webhook's snapshot); rules whose
//! peers the host could not supply are named in [`AdmissionVerdict::without_context`] instead of
//! passing silently.

use crate::finding::{Action, Finding};
use crate::object::Input;
use crate::policy::Policy;
use serde_json::Value;
use std::collections::BTreeMap;

/// The AdmissionRequest inside whatever the host handed over: an AdmissionReview (`.request`),
/// an AdmissionRequest, or a bare object (treated as a CREATE).
pub fn admission_request(input: &Value) -> AdmissionRequestView<'_> {
    let request = match input.get("request") {
        Some(r) if r.is_object() => r,
        _ => input,
    };
    let is_request =
        request.get("operation").is_some() || request.get("object").is_some() || request.get("oldObject").is_some();
    if !is_request {
        return AdmissionRequestView {
            operation: "CREATE",
            namespace: "",
            object: Some(input),
            old_object: None,
            request: None,
        };
    }
    let str_of = |k: &str| request.get(k).and_then(Value::as_str).unwrap_or("");
    let non_null = |k: &str| request.get(k).filter(|v| !v.is_null());
    AdmissionRequestView {
        operation: match str_of("operation") {
            "" => "CREATE",
            op => op,
        },
        namespace: str_of("namespace"),
        object: non_null("object"),
        old_object: non_null("oldObject"),
        request: Some(request),
    }
}

#[derive(Clone, Copy, Debug)]
pub struct AdmissionRequestView<'a> {
    pub operation: &'a str,
    pub namespace: &'a str,
    pub object: Option<&'a Value>,
    pub old_object: Option<&'a Value>,
    /// The AdmissionRequest itself (CEL rules read `request` and `oldObject` from it).
    pub request: Option<&'a Value>,
}

impl<'a> AdmissionRequestView<'a> {
    /// The namespace the reviewed object lives in, as a review places it: its own
    /// `metadata.namespace`, else the request's, else `default`. Hosts fetch its peers there.
    pub fn object_namespace(&self) -> &'a str {
        let own = self.object.and_then(|o| o.get("metadata")?.get("namespace")?.as_str());
        match (own, self.namespace) {
            (Some(ns), _) if !ns.is_empty() => ns,
            (_, "") => "default",
            (_, ns) => ns,
        }
    }

    /// The request's `uid` (`""` when it has none), echoed in the AdmissionResponse.
    pub fn uid(&self) -> Value {
        self.request.and_then(|r| r.get("uid")).cloned().unwrap_or_else(|| Value::String(String::new()))
    }
}

/// The verdict for one request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AdmissionVerdict {
    /// False when any finding's action is `deny`.
    pub allowed: bool,
    /// Every finding, in rule order (deny, warn and audit).
    pub findings: Vec<Finding>,
    /// Ids of the rules that would compare the object with cluster objects the host did not
    /// supply: they decided on the request alone.
    pub without_context: Vec<String>,
}

impl AdmissionVerdict {
    pub fn with_action(&self, action: Action) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.action == action)
    }

    /// One line per denying finding, as rejection messages show them.
    pub fn denial_message(&self) -> Option<String> {
        let lines: Vec<String> = self.with_action(Action::Deny).map(finding_line).collect();
        (!lines.is_empty()).then(|| lines.join("; "))
    }

    /// One entry per `warn` finding, as Kubernetes admission warnings show them, within the API
    /// server's limits ([`MAX_WARNING_CHARS`] each, [`MAX_WARNINGS_BYTES`] in all): a long entry
    /// is shortened at a word, and entries that do not fit become one `+N more` entry.
    pub fn warnings(&self) -> Vec<String> {
        fit_warnings(self.with_action(Action::Warn).map(finding_line).collect())
    }

    /// The audit annotations every admission host attaches: the ids of the rules that fired, per
    /// action, and of the rules that decided without their cluster context.
    pub fn audit_annotations(&self) -> BTreeMap<String, String> {
        let mut annotations = BTreeMap::new();
        for (key, action) in
            [(DENY_ANNOTATION, Action::Deny), (WARN_ANNOTATION, Action::Warn), (AUDIT_ANNOTATION, Action::Audit)]
        {
            let ids = self.rule_ids(action);
            if !ids.is_empty() {
                annotations.insert(key.to_string(), ids);
            }
        }
        if !self.without_context.is_empty() {
            annotations.insert(WITHOUT_CONTEXT_ANNOTATION.to_string(), self.without_context.join(","));
        }
        annotations
    }

    /// The Kubernetes AdmissionResponse for this verdict, as the admission hosts send it: `uid`
    /// echoed, a denial with code 403 and one `rule: message (at path)` per deny finding,
    /// warnings within the API server's limits, and the audit annotations.
    pub fn admission_response(&self, uid: Value) -> Value {
        let mut response = serde_json::json!({"uid": uid, "allowed": self.allowed});
        if let Some(message) = self.denial_message() {
            response["status"] = serde_json::json!({"code": 403, "message": message});
        }
        let warnings = self.warnings();
        if !warnings.is_empty() {
            response["warnings"] = serde_json::json!(warnings);
        }
        let annotations = self.audit_annotations();
        if !annotations.is_empty() {
            response["auditAnnotations"] = serde_json::json!(annotations);
        }
        response
    }

    /// Comma-separated ids of the rules that fired with `action`, for machine-readable annotations.
    pub fn rule_ids(&self, action: Action) -> String {
        let mut ids: Vec<&str> = self.with_action(action).map(|f| f.rule.as_str()).collect();
        ids.dedup();
        ids.join(",")
    }
}

/// Audit annotation keys listing the ids of the rules that fired, for audit logs and tests.
pub const DENY_ANNOTATION: &str = "meshguard.dev/deny";
pub const WARN_ANNOTATION: &str = "meshguard.dev/warn";
pub const AUDIT_ANNOTATION: &str = "meshguard.dev/audit";
/// Ids of the rules that needed cluster objects the host did not supply.
pub const WITHOUT_CONTEXT_ANNOTATION: &str = "meshguard.dev/without-context";

/// The API server truncates a warning over 256 characters and drops warnings past 4 KiB in all.
pub const MAX_WARNING_CHARS: usize = 256;
pub const MAX_WARNINGS_BYTES: usize = 4096;

/// `lines` within the API server's warning limits (see [`AdmissionVerdict::warnings`]).
pub fn fit_warnings(lines: Vec<String>) -> Vec<String> {
    // Room kept for the `+N more` entry, so adding it never breaks the total.
    const MORE_ROOM: usize = 64;
    let total = lines.len();
    let mut out = Vec::with_capacity(total);
    let mut bytes = 0;
    for line in lines {
        let line = shorten(line, MAX_WARNING_CHARS);
        let last = out.len() + 1 == total;
        let budget = if last { MAX_WARNINGS_BYTES } else { MAX_WARNINGS_BYTES - MORE_ROOM };
        if bytes + line.len() > budget {
            break;
        }
        bytes += line.len();
        out.push(line);
    }
    if out.len() < total {
        let more = total - out.len();
        out.push(format!(
            "+{more} more warning{} (all rule ids are in the audit annotations)",
            if more == 1 { "" } else { "s" }
        ));
    }
    out
}

/// `line` in at most `max` characters: cut at the last space that fits, ending in `…`.
fn shorten(line: String, max: usize) -> String {
    if line.chars().count() <= max {
        return line;
    }
    let cut = line.char_indices().nth(max - 1).map_or(line.len(), |(i, _)| i);
    let head = &line[..cut];
    let head = head.rfind(' ').filter(|at| *at > max / 2).map_or(head, |at| &head[..at]);
    format!("{}…", head.trim_end_matches([',', ';', ':', ' ']))
}

/// Whether requests of `operation` are reviewed at all: CREATE and UPDATE judge the new object;
/// DELETE and CONNECT are always allowed. Hosts may answer the others without evaluating.
pub fn reviews_operation(operation: &str) -> bool {
    matches!(operation, "CREATE" | "UPDATE")
}

/// `rule-id: message (at path)`.
pub fn finding_line(f: &Finding) -> String {
    if f.path.is_root() {
        format!("{}: {}", f.rule, f.message)
    } else {
        format!("{}: {} (at {})", f.rule, f.message, f.path)
    }
}

/// What an admission host knows of the cluster besides the request.
#[derive(Clone, Copy)]
pub struct ClusterView<'a> {
    /// Objects already in the cluster: the request's namespace and its Namespace object are
    /// enough, since every rule compares an object only with peers in its own namespace. The
    /// admitted object's stored version, if present, is left out (the request replaces it).
    pub objects: &'a [Value],
    /// Kinds the host could not read.
    pub unseen: Unseen<'a>,
}

#[derive(Clone, Copy)]
pub enum Unseen<'a> {
    /// The host read every kind the rules need ([`Policy::context_kinds`]).
    Nothing,
    /// These kinds could not be read (no permission, a failed call).
    Kinds(&'a [String]),
    /// The host has no view of the cluster.
    Everything,
}

impl Unseen<'_> {
    pub fn contains(&self, kind: &str) -> bool {
        match self {
            Unseen::Nothing => false,
            Unseen::Kinds(kinds) => kinds.iter().any(|k| k == kind),
            Unseen::Everything => true,
        }
    }
}

impl ClusterView<'_> {
    /// A host without any view of the cluster.
    pub const NONE: ClusterView<'static> = ClusterView { objects: &[], unseen: Unseen::Everything };
}

/// Whether `a` and `b` are the same object (group, kind, namespace, name).
fn same_object(a: &crate::object::Object<'_>, b: &crate::object::Object<'_>) -> bool {
    a.group == b.group && a.kind == b.kind && a.namespace == b.namespace && a.name == b.name
}

impl Policy {
    /// Decides one admission request on the request alone: [`Policy::review_admission_in`] with
    /// no view of the cluster.
    pub fn review_admission(&self, input: &Value) -> AdmissionVerdict {
        self.review_admission_in(input, ClusterView::NONE)
    }

    /// Kinds of cluster objects the rules would compare this request's object with (sorted;
    /// empty when no rule selecting it compares, or the operation is not reviewed): what a host
    /// fetches before [`Policy::review_admission_in`].
    pub fn context_kinds_for(&self, input: &Value) -> Vec<&str> {
        let req = admission_request(input);
        let object = match (req.operation, req.object) {
            (op, Some(o)) if reviews_operation(op) => o,
            _ => return Vec::new(),
        };
        let namespace = if req.namespace.is_empty() { "default" } else { req.namespace };
        self.context_kinds_of(&Input::from_refs([object], namespace), 0)
    }

    /// Decides one admission request. DELETE and CONNECT are allowed (the rules judge an object's
    /// content, and removing a non-compliant object is never the problem); CREATE and UPDATE
    /// review the new object, in the request's namespace when it has none of its own, together
    /// with the cluster's objects, so cross-object rules decide as they do in CI.
    pub fn review_admission_in(&self, input: &Value, cluster: ClusterView<'_>) -> AdmissionVerdict {
        let req = admission_request(input);
        let object = match (req.operation, req.object) {
            (op, Some(o)) if reviews_operation(op) => o,
            _ => return AdmissionVerdict { allowed: true, ..Default::default() },
        };
        let namespace = if req.namespace.is_empty() { "default" } else { req.namespace };
        let admitted = crate::object::Object::new(object, namespace);
        let peers =
            cluster.objects.iter().filter(|v| !same_object(&crate::object::Object::new(v, namespace), &admitted));
        let mut reviewed = Input::from_refs(std::iter::once(object).chain(peers), namespace);
        if let Some(request) = req.request {
            reviewed = reviewed.with_request(request);
        }
        let mut findings = Vec::new();
        self.review_object(&reviewed, 0, &mut findings);
        let without_context = match cluster.unseen {
            Unseen::Nothing => Vec::new(),
            unseen => self.rules_missing_context(&reviewed, 0, &|kind| unseen.contains(kind)),
        };
        AdmissionVerdict { allowed: findings.iter().all(|f| f.action != Action::Deny), findings, without_context }
    }
}

/// Parts of an admission payload a decode may skip, per level, and deeper levels by field name.
/// A level applies to a value, or to each item when the value is a list (`containers`).
struct Prune {
    skip: &'static [&'static str],
    deeper: &'static [(&'static str, &'static Prune)],
}

/// `metadata.managedFields` is often most of an object's bytes, and no rule reads it.
static METADATA: Prune = Prune { skip: &["managedFields"], deeper: &[] };
/// A workload's spec, its pod template's spec, or a Pod's: down to the containers.
static SPEC: Prune = Prune {
    skip: &[],
    deeper: &[
        ("template", &TEMPLATE),
        ("jobTemplate", &JOB_TEMPLATE),
        ("containers", &CONTAINER),
        ("initContainers", &CONTAINER),
        ("ephemeralContainers", &CONTAINER),
    ],
};
static TEMPLATE: Prune = Prune { skip: &[], deeper: &[("metadata", &METADATA), ("spec", &SPEC)] };
static JOB_TEMPLATE: Prune = Prune { skip: &[], deeper: &[("spec", &SPEC)] };
/// What of a container no built-in check reads (its name, ports, command, args and lifecycle are
/// read); `decode_skips_no_container_field_a_check_reads` holds the checks to it.
pub(crate) const UNREAD_CONTAINER_FIELDS: &[&str] = &[
    "image",
    "imagePullPolicy",
    "resources",
    "resizePolicy",
    "env",
    "envFrom",
    "volumeMounts",
    "volumeDevices",
    "securityContext",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "workingDir",
];
static CONTAINER: Prune = Prune { skip: UNREAD_CONTAINER_FIELDS, deeper: &[] };
static OBJECT: Prune = Prune { skip: &["status"], deeper: &[("metadata", &METADATA), ("spec", &SPEC)] };
static REQUEST: Prune = Prune { skip: &["userInfo", "options", "oldObject"], deeper: &[("object", &OBJECT)] };
/// The top level may be an AdmissionReview, an AdmissionRequest or a bare object: only what is
/// unambiguous in all three is pruned there.
static TOP: Prune = Prune {
    skip: &[],
    deeper: &[("request", &REQUEST), ("object", &OBJECT), ("metadata", &METADATA), ("spec", &SPEC)],
};

/// Nothing skipped: a subtree no prune table names, and whole documents ([`json_value`]).
/// Read by [`Pruned`], never by serde_json's own `Value` impl: with serde_json's `raw_value`
/// feature (on in every build that links a module using `RawValue`, the native CLI's included)
/// that impl reads a map whose first key is `$serde_json::private::RawValue` as the JSON text in
/// its value, so one manifest would be one object to the YAML front end and another to the wasm
/// engine or an admission module: a way around the guardrail.
static WHOLE: Prune = Prune { skip: &[], deeper: &[] };

/// A JSON document as a tree, every key as written (see [`WHOLE`]): what hosts use for JSON a
/// tenant controls (an OPA input, a cluster lookup's answer) instead of `serde_json::from_str`.
pub fn json_value(text: &str) -> Result<Value, serde_json::Error> {
    read_one(&mut serde_json::Deserializer::from_str(text), Pruned(&WHOLE))
}

/// [`json_value`] of bytes (an error names where they stop being UTF-8).
pub fn json_value_from_slice(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    read_one(&mut serde_json::Deserializer::from_slice(bytes), Pruned(&WHOLE))
}

/// One JSON document through `seed`, with nothing after it.
fn read_one<'de, R, S>(de: &mut serde_json::Deserializer<R>, seed: S) -> Result<Value, serde_json::Error>
where
    R: serde_json::de::Read<'de>,
    S: serde::de::DeserializeSeed<'de, Value = Value>,
{
    let value = seed.deserialize(&mut *de)?;
    de.end()?;
    Ok(value)
}

/// [`json_value`]'s decode for a field of a host's own envelope, any format
/// (`#[serde(deserialize_with = "policy_core::admission::value")]`).
pub fn value<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    serde::de::DeserializeSeed::deserialize(Pruned(&WHOLE), d)
}

/// [`value`] as a seed, for a host's own envelope visitor (`map.next_value_seed(ValueSeed)`).
pub struct ValueSeed;

impl<'de> serde::de::DeserializeSeed<'de> for ValueSeed {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        value(d)
    }
}

struct Pruned(&'static Prune);

/// A map key, borrowed from the input unless it holds escapes: a skipped key costs no allocation.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }

    /// The key for the tree: an owned one moves in, without a second copy.
    fn into_string(self) -> String {
        match self {
            Key::Borrowed(s) => s.to_string(),
            Key::Owned(s) => s,
        }
    }
}

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> serde::de::Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Pruned {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Pruned {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let name = key.as_str();
            if self.0.skip.contains(&name) {
                // Still parsed, so malformed JSON is refused as the full decode refuses it.
                map.next_value::<serde::de::IgnoredAny>()?;
                // A skipped key that appears again later must not leave an earlier value behind.
                out.remove(name);
                continue;
            }
            let value = match self.0.deeper.iter().find(|(deeper, _)| *deeper == name) {
                Some((_, deeper)) => map.next_value_seed(Pruned(deeper))?,
                None => map.next_value_seed(Pruned(&WHOLE))?,
            };
            out.insert(key.into_string(), value);
        }
        Ok(Value::Object(out))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Pruned(self.0))? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

impl Policy {
    /// Parses an AdmissionReview, AdmissionRequest or object from JSON for
    /// [`Policy::review_admission`]. When the loaded rules read only object content, the parts
    /// none of them reads are skipped instead of built into the tree (`managedFields`, `status`,
    /// the request's `userInfo`, `options` and `oldObject`, a container's image, resources,
    /// environment, mounts, probes and security context): the verdict is the same, the decode
    /// cheaper. Otherwise (CEL, ValidatingAdmissionPolicy, free field paths) the whole payload.
    pub fn parse_admission(&self, json: &[u8]) -> Result<Value, serde_json::Error> {
        match std::str::from_utf8(json) {
            Ok(text) => self.parse_admission_str(text),
            // The byte decode names where the text stops being UTF-8.
            Err(_) => self.decode_as(&mut serde_json::Deserializer::from_slice(json), &TOP),
        }
    }

    /// [`Policy::parse_admission`] of text already known to be UTF-8: no string is validated
    /// again while it is read.
    pub fn parse_admission_str(&self, json: &str) -> Result<Value, serde_json::Error> {
        self.decode_as(&mut serde_json::Deserializer::from_str(json), &TOP)
    }

    /// A JSON list of objects (a manifest repo's, as host-runner hands them to the wasm engine),
    /// decoded as [`Policy::parse_admission`] decodes one object: what no loaded rule reads is
    /// skipped. `Err` for text that is not a JSON list, saying "the objects are not a list", the
    /// words hosts use whichever encoding they read the objects in.
    pub fn parse_objects_str(&self, json: &str) -> Result<Vec<Value>, serde_json::Error> {
        match self.decode_as(&mut serde_json::Deserializer::from_str(json), &OBJECT)? {
            Value::Array(objects) => Ok(objects),
            _ => Err(serde::de::Error::custom("the objects are not a list")),
        }
    }

    /// [`Policy::parse_admission`]'s decode as a serde seed, for a payload inside a host's own
    /// envelope (OPA's `input.review`): read in the same pass as the envelope.
    pub fn admission_seed(&self) -> AdmissionSeed {
        self.seed(&TOP)
    }

    /// [`Policy::parse_objects_str`]'s decode as a serde seed, for a list inside a host's own
    /// envelope (`meshguard_review`'s payload): read in the same pass as the envelope. It yields
    /// whatever JSON value is there; the caller refuses one that is not a list.
    pub fn objects_seed(&self) -> AdmissionSeed {
        self.seed(&OBJECT)
    }

    fn seed(&self, prune: &'static Prune) -> AdmissionSeed {
        AdmissionSeed(self.reads_object_content_only().then_some(prune))
    }

    fn decode_as<'de, R: serde_json::de::Read<'de>>(
        &self,
        de: &mut serde_json::Deserializer<R>,
        prune: &'static Prune,
    ) -> Result<Value, serde_json::Error> {
        read_one(de, self.seed(prune))
    }
}

/// Decodes an admission payload for one policy: see [`Policy::admission_seed`].
pub struct AdmissionSeed(Option<&'static Prune>);

impl<'de> serde::de::DeserializeSeed<'de> for AdmissionSeed {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        match self.0 {
            Some(prune) => serde::de::DeserializeSeed::deserialize(Pruned(prune), d),
            None => value(d),
        }
    }
}

#[cfg(test)]
#[cfg(all(feature = "kubernetes", feature = "yaml"))]
mod tests {
    use super::*;
    use serde_json::json;

    /// A rule set with a free field path, which may read any part of a request.
    const FREE_PATH_RULES: &str = "apiVersion: meshguard.dev/v1alpha1\nkind: RuleSet\nmetadata: {name: x}\nspec:\n  rules:\n  - id: f\n    check: field-pattern\n    params: {path: status.phase, pattern: '^Running$'}\n";

    fn bad_service() -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api"}, "spec": {"ports": [{"name": "web", "port": 80}]}})
    }

    /// serde_json's `raw_value` feature is on in this test build (a dev-dependency, as in the
    /// admission modules), and its `Value` impl reads this key's string as JSON; meshguard's
    /// decode must not.
    #[test]
    fn a_raw_value_token_key_is_an_ordinary_key_in_every_decode() {
        let token = crate::policy::RAW_VALUE_KEY;
        let hidden = format!(r#"{{"{token}": "{{\"name\": \"http-web\", \"port\": 80}}"}}"#);
        let literal = json!({token: r#"{"name": "http-web", "port": 80}"#});
        assert_eq!(json_value(&hidden).unwrap(), literal);
        assert_eq!(json_value_from_slice(hidden.as_bytes()).unwrap(), literal);
        let service = format!(
            r#"{{"apiVersion": "v1", "kind": "Service", "metadata": {{"name": "api", "labels": {hidden}}},
                "spec": {{"ports": [{hidden}], "selector": {hidden}}}}}"#
        );
        for policy in [Policy::default_rules().unwrap(), Policy::from_text(FREE_PATH_RULES).unwrap()] {
            let decoded = policy.parse_admission_str(&service).unwrap();
            assert_eq!(decoded["spec"]["ports"][0], literal);
            assert_eq!(decoded["spec"]["selector"], literal);
            assert_eq!(decoded["metadata"]["labels"], literal);
            let listed = policy.parse_objects_str(&format!("[{service}]")).unwrap();
            assert_eq!(listed[0]["spec"]["ports"][0], literal);
        }
        // What the bug let through: the port reads as unnamed, as the YAML front end reads it.
        let policy = Policy::default_rules().unwrap();
        let objects = vec![policy.parse_admission_str(&service).unwrap()];
        let findings = policy.review(&Input::new(&objects, "shop"));
        assert!(findings.iter().any(|f| f.rule == "istio-port-name"), "{findings:?}");
    }

    #[test]
    fn admission_decode_skips_what_no_rule_reads_and_decides_the_same() {
        let policy = Policy::default_rules().unwrap();
        assert!(policy.reads_object_content_only());
        let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "u1", "operation": "CREATE", "namespace": "team-1",
            "userInfo": {"username": "alice", "groups": ["dev"]}, "options": {"kind": "CreateOptions"},
            "oldObject": {"kind": "Service"},
            "object": {"apiVersion": "v1", "kind": "Service", "status": {"loadBalancer": {}},
                       "metadata": {"name": "api", "labels": {"app": "api"}, "managedFields": [{"manager": "kubectl"}]},
                       "spec": {"ports": [{"name": "web", "port": 80}]}}}});
        let bytes = review.to_string();
        let pruned = policy.parse_admission(bytes.as_bytes()).unwrap();
        let request = &pruned["request"];
        for gone in ["userInfo", "options", "oldObject"] {
            assert!(request.get(gone).is_none(), "{gone} kept");
        }
        assert!(request["object"].get("status").is_none());
        assert!(request["object"]["metadata"].get("managedFields").is_none());
        assert_eq!(request["object"]["spec"], review["request"]["object"]["spec"]);
        assert_eq!(request["object"]["metadata"]["labels"], json!({"app": "api"}));
        assert_eq!(policy.review_admission(&pruned), policy.review_admission(&review));
        assert!(!policy.review_admission(&pruned).allowed, "the bad port name is still seen");
        // Malformed JSON is refused inside skipped parts too, and trailing bytes are refused.
        assert!(policy.parse_admission(br#"{"request": {"userInfo": {"a": }}}"#).is_err());
        assert!(policy.parse_admission(br#"{"request": {}} x"#).is_err());
        // A duplicate key that is skipped later does not leave its earlier value behind.
        let dup = policy.parse_admission(br#"{"request": {"object": {"status": 1, "status": {"a": 1}}}}"#).unwrap();
        assert_eq!(dup, json!({"request": {"object": {}}}));
    }

    #[test]
    fn admission_decode_skips_unread_container_fields_at_every_depth() {
        let policy = Policy::default_rules().unwrap();
        let container = json!({"name": "app", "image": "shop/app:1", "resources": {"limits": {"cpu": "1"}},
            "env": [{"name": "A", "value": "1"}], "securityContext": {"runAsUser": 1000},
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
            "ports": [{"name": "http", "containerPort": 8080}], "command": ["/app"], "args": ["--wait"],
            "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}}});
        let kept = json!({"name": "app", "ports": [{"name": "http", "containerPort": 8080}], "command": ["/app"],
            "args": ["--wait"], "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}}});
        let pod_spec = json!({"containers": [container, container], "initContainers": [container],
            "terminationGracePeriodSeconds": 30});
        let objects = [
            (json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": pod_spec}), "/spec"),
            (
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                    "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "d"}}, "spec": pod_spec}}}),
                "/spec/template/spec",
            ),
            (
                json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
                    "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": pod_spec}}}}}),
                "/spec/jobTemplate/spec/template/spec",
            ),
        ];
        for (object, spec_at) in objects {
            for input in
                [json!({"request": {"operation": "CREATE", "namespace": "t", "object": object}}), object.clone()]
            {
                let pruned = policy.parse_admission(input.to_string().as_bytes()).unwrap();
                let spec = pruned.pointer(spec_at).or_else(|| pruned.pointer(&format!("/request/object{spec_at}")));
                let spec = spec.unwrap_or_else(|| panic!("{spec_at} kept: {pruned}"));
                assert_eq!(spec["containers"], json!([kept, kept]), "{spec_at}");
                assert_eq!(spec["initContainers"], json!([kept]), "{spec_at}");
                assert_eq!(spec["terminationGracePeriodSeconds"], 30);
                assert_eq!(policy.review_admission(&pruned), policy.review_admission(&input), "{spec_at}");
            }
        }
        // Outside a pod spec the same names are data, kept as written.
        let vs = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m"}, "data": {"image": "x", "env": "y"}});
        assert_eq!(policy.parse_admission(vs.to_string().as_bytes()).unwrap(), vs);
    }

    #[test]
    fn object_lists_decode_as_admission_objects_do() {
        let policy = Policy::default_rules().unwrap();
        let objects = json!([
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "managedFields": [{"manager": "k"}]},
             "spec": {"containers": [{"name": "a", "image": "x", "ports": [{"name": "web", "containerPort": 80}]}]},
             "status": {"phase": "Running"}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"name": "web", "port": 80}]}}
        ]);
        let decoded = policy.parse_objects_str(&objects.to_string()).unwrap();
        assert_eq!(
            decoded[0],
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a", "ports": [{"name": "web", "containerPort": 80}]}]}})
        );
        assert_eq!(decoded[1], objects[1]);
        let full: Vec<Value> = serde_json::from_value(objects.clone()).unwrap();
        assert_eq!(policy.review(&crate::Input::new(&decoded, "t")), policy.review(&crate::Input::new(&full, "t")));
        assert!(policy.parse_objects_str(r#"{"kind": "Pod"}"#).unwrap_err().to_string().contains("not a list"));
        assert!(policy.parse_objects_str("[1] x").is_err());
        // Rules that may read anything get every field.
        let policy = Policy::from_text(FREE_PATH_RULES).unwrap();
        assert_eq!(Value::Array(policy.parse_objects_str(&objects.to_string()).unwrap()), objects);
    }

    /// The container fields the decode skips stay unread by every built-in check: none of their
    /// sources names one as a field.
    #[test]
    fn decode_skips_no_container_field_a_check_reads() {
        let sources = [
            ("istio.rs", include_str!("checks/istio.rs")),
            ("generic.rs", include_str!("checks/generic.rs")),
            ("object.rs", include_str!("object.rs")),
            ("matching.rs", include_str!("matching.rs")),
            ("policy.rs", include_str!("policy.rs")),
        ];
        for (file, text) in sources {
            for field in UNREAD_CONTAINER_FIELDS {
                assert!(
                    !text.contains(&format!("\"{field}\"")),
                    "{file} reads `{field}`, which the admission decode skips"
                );
            }
        }
        assert!(include_str!("checks/istio.rs").contains("\"lifecycle\""), "the scan sees quoted field names");
    }

    #[test]
    fn rules_that_may_read_anything_get_the_whole_payload() {
        let policy = Policy::from_text(FREE_PATH_RULES).unwrap();
        assert!(!policy.reads_object_content_only());
        let bytes = br#"{"request": {"operation": "CREATE", "userInfo": {"username": "a"}, "object": {"kind": "Pod", "status": {"phase": "Pending"}}}}"#;
        let value = policy.parse_admission(bytes).unwrap();
        assert_eq!(value, serde_json::from_slice::<Value>(bytes).unwrap());
    }

    #[test]
    fn warnings_fit_the_api_server_limits() {
        assert_eq!(fit_warnings(vec!["a: short".into()]), vec!["a: short".to_string()]);
        let long = format!("rule: {}", "word ".repeat(80));
        let fitted = fit_warnings(vec![long]);
        assert!(fitted[0].chars().count() <= MAX_WARNING_CHARS, "{}", fitted[0]);
        assert!(fitted[0].ends_with("word…"), "cut at a word: {}", fitted[0]);
        let many: Vec<String> = (0..100).map(|i| format!("rule-{i}: {}", "x".repeat(100))).collect();
        let fitted = fit_warnings(many);
        let total: usize = fitted.iter().map(String::len).sum();
        assert!(total <= MAX_WARNINGS_BYTES, "{total}");
        let last = fitted.last().unwrap();
        assert!(last.starts_with(&format!("+{} more warnings", 100 - (fitted.len() - 1))), "{last}");
        // Exactly at the limit nothing is dropped.
        let exact: Vec<String> = (0..16).map(|_| "y".repeat(256)).collect();
        assert_eq!(fit_warnings(exact).len(), 16);
    }

    #[test]
    fn request_shapes_and_operations() {
        let p = Policy::default_rules().unwrap();
        let req = json!({"uid": "1", "operation": "CREATE", "namespace": "shop", "object": bad_service()});
        let v = p.review_admission(&req);
        assert!(!v.allowed);
        assert_eq!(v.findings[0].namespace, "shop", "the request's namespace fills in");
        assert_eq!(v.denial_message().unwrap(), "istio-port-name: port 80 (`web`): name `web` does not start with a protocol (http, http2, https, grpc, grpc-web, tcp, tls, udp, mongo, mysql, redis); rename it to `http-web` or set appProtocol (at spec.ports[0].name)");
        assert_eq!(p.review_admission(&json!({"request": req.clone()})), v, "an AdmissionReview works too");
        assert!(!p.review_admission(&bad_service()).allowed, "a bare object is a CREATE");
        let delete = json!({"operation": "DELETE", "namespace": "shop", "object": null, "oldObject": bad_service()});
        assert!(p.review_admission(&delete).allowed);
        let view = admission_request(&req);
        assert_eq!((view.object_namespace(), view.uid()), ("shop", json!("1")));
        let own = json!({"namespace": "shop", "object": {"metadata": {"namespace": "blog"}}});
        assert_eq!(admission_request(&own).object_namespace(), "blog", "the object's own namespace wins");
        assert_eq!(
            (admission_request(&bad_service()).object_namespace(), admission_request(&bad_service()).uid()),
            ("default", json!(""))
        );
        let kube = json!({"operation": "UPDATE", "namespace": "kube-system", "object": bad_service(), "oldObject": bad_service()});
        assert!(p.review_admission(&kube).allowed, "kube-* is excluded by the default rules");
    }

    fn headless(name: &str, port_name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "shop"},
               "spec": {"clusterIP": "None", "ports": [{"name": port_name, "port": 5000}]}})
    }

    #[test]
    fn cluster_objects_decide_cross_object_rules_as_ci_does() {
        let p = Policy::default_rules().unwrap();
        let existing =
            [headless("db", "tcp-db"), json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})];
        let req = json!({"operation": "CREATE", "namespace": "shop", "object": headless("cache", "http-cache")});

        let alone = p.review_admission(&req);
        assert!(alone.allowed);
        assert_eq!(alone.without_context, vec!["istio-headless-port-conflict"], "says which rule saw no peers");

        let seen = p.review_admission_in(&req, ClusterView { objects: &existing, unseen: Unseen::Nothing });
        assert!(!seen.allowed);
        assert_eq!(seen.findings.len(), 1);
        assert_eq!(seen.findings[0].rule, "istio-headless-port-conflict");
        assert!(seen.without_context.is_empty());
        // CI over the same objects finds the same thing on the admitted Service.
        let repo = [headless("cache", "http-cache"), existing[0].clone(), existing[1].clone()];
        let ci = p.review(&Input::new(&repo, "default"));
        let ci_on_cache: Vec<_> = ci.iter().filter(|f| f.name == "cache").collect();
        assert_eq!(ci_on_cache.len(), 1);
        assert_eq!(
            (&ci_on_cache[0].rule, &ci_on_cache[0].message, &ci_on_cache[0].path),
            (&seen.findings[0].rule, &seen.findings[0].message, &seen.findings[0].path)
        );

        // An UPDATE replaces the stored version instead of conflicting with it.
        let update = json!({"operation": "UPDATE", "namespace": "shop", "object": headless("db", "http-db"), "oldObject": headless("db", "tcp-db")});
        assert!(p.review_admission_in(&update, ClusterView { objects: &existing, unseen: Unseen::Nothing }).allowed);

        assert_eq!(p.context_kinds_for(&req), vec!["Service"], "a headless Service compares with Services only");
        let plain = json!({"operation": "CREATE", "namespace": "shop", "object": bad_service()});
        assert!(p.context_kinds_for(&plain).is_empty(), "a ClusterIP Service compares with nothing");
        // Only the kinds the host could not read are reported.
        let partial =
            p.review_admission_in(&req, ClusterView { objects: &[], unseen: Unseen::Kinds(&["Sidecar".into()]) });
        assert!(partial.without_context.is_empty());
        assert!(
            p.context_kinds().contains(&"Service") && p.context_kinds().contains(&"Namespace"),
            "{:?}",
            p.context_kinds()
        );
    }

    /// A workload whose pod template already settles the start-order and drain rules (the app
    /// waits for its proxy, the proxy is told how to drain) needs no cluster objects: an admission
    /// host makes no context call for it, and its verdict is the same with and without them.
    #[test]
    fn a_template_that_settles_start_order_and_drain_needs_no_cluster_objects() {
        let p = Policy::default_rules().unwrap();
        let deployment = |config: &str| {
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": "shop"},
                   "spec": {"template": {"metadata": {"annotations": {"proxy.istio.io/config": config}},
                            "spec": {"terminationGracePeriodSeconds": 60, "containers": [{"name": "api", "image": "shop/api:1",
                              "ports": [{"name": "http", "containerPort": 8080}],
                              "lifecycle": {"preStop": {"sleep": {"seconds": 20}}}}]}}}})
        };
        let settled = json!({"operation": "CREATE", "namespace": "shop",
            "object": deployment("holdApplicationUntilProxyStarts: true\nterminationDrainDuration: 20s")});
        assert!(p.context_kinds_for(&settled).is_empty(), "{:?}", p.context_kinds_for(&settled));
        let alone = p.review_admission(&settled);
        assert!(alone.without_context.is_empty(), "{:?}", alone.without_context);
        let injected = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"istio-injection": "enabled"}}});
        let with_cluster =
            p.review_admission_in(&settled, ClusterView { objects: &[injected], unseen: Unseen::Nothing });
        assert_eq!(alone.findings, with_cluster.findings);

        // Without the hold, the Namespace decides whether a sidecar starts first; without the
        // drain setting, the Services say whether the pods serve HTTP.
        let open = json!({"operation": "CREATE", "namespace": "shop", "object": deployment("{}")});
        let mut kinds = p.context_kinds_for(&open);
        kinds.sort_unstable();
        assert_eq!(kinds, vec!["Namespace", "Service"]);
    }
}
