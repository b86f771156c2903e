//! Decoding JSON a tenant or a host controls: every key read as written (serde_json's own `Value`
//! decode reads one special key as embedded JSON), and for admission payloads, what none of the
//! loaded rules reads skipped instead of built into the tree.

use crate::policy::Policy;
use serde_json::Value;

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
    use crate::Input;
    use serde_json::json;

    /// A rule set with a free field path, which may read any part of a request.
    const FREE_PATH_RULES: &str = "apiVersion: meshguard.dev/v1alpha1\nkind: RuleSet\nmetadata: {name: x}\nspec:\n  rules:\n  - id: f\n    check: field-pattern\n    params: {path: status.phase, pattern: '^Running$'}\n";

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
            ("istio/mod.rs", include_str!("checks/istio/mod.rs")),
            ("istio/ports.rs", include_str!("checks/istio/ports.rs")),
            ("istio/workloads.rs", include_str!("checks/istio/workloads.rs")),
            ("istio/traffic.rs", include_str!("checks/istio/traffic.rs")),
            ("istio/platform.rs", include_str!("checks/istio/platform.rs")),
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
        assert!(
            include_str!("checks/istio/workloads.rs").contains("\"lifecycle\""),
            "the scan sees quoted field names"
        );
    }

    #[test]
    fn rules_that_may_read_anything_get_the_whole_payload() {
        let policy = Policy::from_text(FREE_PATH_RULES).unwrap();
        assert!(!policy.reads_object_content_only());
        let bytes = br#"{"request": {"operation": "CREATE", "userInfo": {"username": "a"}, "object": {"kind": "Pod", "status": {"phase": "Pending"}}}}"#;
        let value = policy.parse_admission(bytes).unwrap();
        assert_eq!(value, serde_json::from_slice::<Value>(bytes).unwrap());
    }
}
