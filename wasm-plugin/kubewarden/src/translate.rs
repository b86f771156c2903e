//! Kubewarden's JSON shapes to and from policy-core.
//!
//! `validate` gets `{"request": <AdmissionRequest>, "settings": <RuleSet>}`; empty settings mean
//! the built-in rule set. The RuleSet is compiled once and reused while the settings stay the same
//! (Kubewarden sends them with every request).
//!
//! Cross-object rules: when a rule would compare the request's object with others, the guest asks
//! the host for them with Kubewarden's context-aware calls (`kubernetes/list_resources_by_namespace`
//! for peers, `kubernetes/get_resource` for the Namespace). A host that refuses (no
//! `contextAwareResources` granted, or not Kubewarden) leaves those rules named in the
//! `meshguard.dev/without-context` audit annotation.

use policy_core::admission::admission_request;
use policy_core::admission::kubewarden::ValidationResponse;
use policy_core::object::api_version_of_kind;
use policy_core::{ClusterSource, IndexedFinding, Policy};
use serde::Deserialize;
use serde_json::Value;

/// `protocol_version`'s answer: waPC policies speak Kubewarden's protocol v1.
pub const PROTOCOL_VERSION: &[u8] = b"\"v1\"";

#[derive(Default)]
pub struct PolicyCache {
    settings: Option<Value>,
    policy: Option<Policy>,
}

impl PolicyCache {
    fn policy(&mut self, settings: &Value) -> Result<&Policy, String> {
        if self.policy.is_none() || self.settings.as_ref() != Some(settings) {
            self.policy = Some(compile(settings)?);
            self.settings = Some(settings.clone());
        }
        self.policy.as_ref().ok_or_else(|| "no policy".to_string())
    }
}

fn is_empty_settings(settings: &Value) -> bool {
    settings.is_null() || settings.as_object().is_some_and(|m| m.is_empty())
}

fn compile(settings: &Value) -> Result<Policy, String> {
    if is_empty_settings(settings) {
        Policy::default_rules().map_err(|e| format!("built-in rule set: {e}"))
    } else {
        Policy::from_value(settings).map_err(|e| e.to_string())
    }
}

/// `validate`: a ValidationRequest in, a ValidationResponse out. `Err` for a payload that is not
/// a ValidationRequest (the host reports it as a policy error).
pub fn validate(payload: &[u8], cache: &mut PolicyCache, host: &mut dyn ClusterHost) -> Result<Vec<u8>, String> {
    // The request comes before the settings, which say what its decode may skip: it is kept as
    // raw bytes in the first pass and decoded for the rule set after.
    let parsed: ValidationRequest<'_> =
        serde_json::from_slice(payload).map_err(|e| format!("the validation payload is not JSON: {e}"))?;
    let raw = parsed.request.ok_or("the validation payload has no `request`")?;
    if cfg!(feature = "floor") {
        // The floor decodes the whole request, as any engine deciding on a JSON tree must.
        let _: Value = serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
        let accept = ValidationResponse { accepted: true, ..Default::default() };
        return serde_json::to_vec(&accept).map_err(|e| e.to_string());
    }
    let policy = cache.policy(&parsed.settings)?;
    if policy.mutates() {
        // A mutated object goes back whole: nothing is pruned from it when it is decoded.
        let admission: Value = serde_json::from_str(raw.get()).map_err(|e| format!("the request: {e}"))?;
        let outcome = policy.admit_from(&admission, &mut HostCalls(host));
        let answer = ValidationResponse::of_outcome(&outcome, admission_request(&admission).uid());
        return serde_json::to_vec(&answer).map_err(|e| e.to_string());
    }
    let admission = policy.parse_admission_str(raw.get()).map_err(|e| format!("the request: {e}"))?;
    let verdict = policy.review_admission_from(&admission, &mut HostCalls(host));
    let response = verdict.response(admission_request(&admission).uid());
    serde_json::to_vec(&ValidationResponse::from(&response)).map_err(|e| e.to_string())
}

/// Kubewarden's ValidationRequest, first pass.
#[derive(Deserialize)]
struct ValidationRequest<'a> {
    #[serde(borrow, default)]
    request: Option<&'a serde_json::value::RawValue>,
    #[serde(default, deserialize_with = "policy_core::decode::value")]
    settings: Value,
}

/// `meshguard_review`'s payload, read in one pass when `rules` comes before `objects` (host-runner
/// writes it so): the rules are compiled when the objects start, and the objects are decoded for
/// them as they are read, skipping what no rule reads. In another order the objects are kept as
/// raw bytes and decoded after, as `validate` does with its request.
struct ReviewPayload<'c> {
    cache: &'c mut PolicyCache,
    /// Objects before the rules may be kept as raw JSON (not in MessagePack).
    raw_objects: bool,
}

enum ReviewObjects<'a> {
    Decoded(Value),
    Raw(&'a serde_json::value::RawValue),
    /// The rules do not compile (why); the objects were only checked to be well formed.
    Refused(String),
}

struct ReviewRequest<'a> {
    objects: Option<ReviewObjects<'a>>,
    rules: Value,
    namespace: Option<String>,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum ReviewField {
    Objects,
    Rules,
    Namespace,
    #[serde(other)]
    Other,
}

impl<'de> serde::de::DeserializeSeed<'de> for ReviewPayload<'_> {
    type Value = ReviewRequest<'de>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ReviewPayload<'_> {
    type Value = ReviewRequest<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a review payload object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        use serde::de::Error;
        let mut request = ReviewRequest { objects: None, rules: Value::Null, namespace: None };
        let (mut rules_seen, mut namespace_seen) = (false, false);
        while let Some(field) = map.next_key::<ReviewField>()? {
            match field {
                ReviewField::Rules if rules_seen => return Err(A::Error::duplicate_field("rules")),
                ReviewField::Rules => {
                    request.rules = map.next_value_seed(policy_core::decode::ValueSeed)?;
                    rules_seen = true;
                }
                ReviewField::Namespace if namespace_seen => return Err(A::Error::duplicate_field("namespace")),
                ReviewField::Namespace => {
                    request.namespace = map.next_value()?;
                    namespace_seen = true;
                }
                ReviewField::Objects if request.objects.is_some() => return Err(A::Error::duplicate_field("objects")),
                ReviewField::Objects if rules_seen => {
                    request.objects = Some(match self.cache.policy(&request.rules) {
                        Ok(policy) => ReviewObjects::Decoded(map.next_value_seed(policy.objects_seed())?),
                        Err(e) => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                            ReviewObjects::Refused(e)
                        }
                    });
                }
                ReviewField::Objects if self.raw_objects => {
                    request.objects = Some(ReviewObjects::Raw(map.next_value()?))
                }
                ReviewField::Objects => return Err(A::Error::custom("`objects` must come after `rules`")),
                ReviewField::Other => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(request)
    }
}

/// Kubewarden's context-aware host calls: `operation` of the `kubernetes` namespace with a JSON
/// payload, answering JSON or an error.
pub trait ClusterHost {
    fn call(&mut self, operation: &str, payload: &[u8]) -> Result<Vec<u8>, String>;
}

/// A host without a view of the cluster.
pub struct NoCluster;

impl ClusterHost for NoCluster {
    fn call(&mut self, _: &str, _: &[u8]) -> Result<Vec<u8>, String> {
        Err("this host has no view of the cluster".into())
    }
}

/// The cluster as Kubewarden's host calls read it, for policy-core's admission review.
struct HostCalls<'h>(&'h mut dyn ClusterHost);

impl ClusterSource for HostCalls<'_> {
    /// `kubernetes/get_resource` for the Namespace, `kubernetes/list_resources_by_namespace` for
    /// the rest.
    fn objects(&mut self, kind: &str, namespace: &str) -> Result<Vec<Value>, String> {
        let api_version = api_version_of_kind(kind).ok_or_else(|| format!("no apiVersion known for {kind}"))?;
        let found = if kind == "Namespace" {
            let payload = serde_json::json!({"api_version": api_version, "kind": kind, "name": namespace,
                                             "namespace": null, "disable_cache": false});
            let answer = self.0.call("get_resource", payload.to_string().as_bytes())?;
            vec![policy_core::decode::json_value_from_slice(&answer).map_err(|e| e.to_string())?]
        } else {
            let payload = serde_json::json!({"api_version": api_version, "kind": kind, "namespace": namespace,
                                             "label_selector": null, "field_selector": null});
            let answer = self.0.call("list_resources_by_namespace", payload.to_string().as_bytes())?;
            match policy_core::decode::json_value_from_slice(&answer).map_err(|e| e.to_string())? {
                Value::Object(mut list) => match list.remove("items") {
                    Some(Value::Array(items)) => items,
                    _ => return Err("the list has no `items`".into()),
                },
                _ => return Err("the list has no `items`".into()),
            }
        };
        policy_core::admission::typed_objects(found, kind)
    }
}

/// `meshguard_review`, meshguard's own operation (Kubewarden never calls it): reviews a whole
/// input as `meshguard check` does, for host-runner's wasm engine.
/// In: `{"rules": <RuleSet or null>, "namespace": "default", "objects": [...]}` (any order; with
/// the rules before the objects it is read in one pass).
/// Out: `{"findings": [{"rule", "action", "message", "kind", "namespace", "name", "path", "object"}]}`.
pub fn review(payload: &[u8], cache: &mut PolicyCache) -> Result<Vec<u8>, String> {
    let not_json = |e: serde_json::Error| format!("the review payload is not JSON: {e}");
    let mut de = serde_json::Deserializer::from_slice(payload);
    let request = serde::de::DeserializeSeed::deserialize(ReviewPayload { cache, raw_objects: true }, &mut de)
        .map_err(not_json)?;
    de.end().map_err(not_json)?;
    review_request(request, cache)
}

/// `meshguard_review_msgpack`: [`review`] of the same payload in MessagePack, the rules before
/// the objects (host-runner's wasm engine sends it so: encoding and decoding cost less than JSON's).
/// The answer is [`review`]'s JSON.
pub fn review_msgpack(payload: &[u8], cache: &mut PolicyCache) -> Result<Vec<u8>, String> {
    let not_msgpack = |e: rmp_serde::decode::Error| format!("the review payload is not MessagePack: {e}");
    let mut de = rmp_serde::Deserializer::from_read_ref(payload);
    // serde_json's nesting limit, so both encodings refuse the same depth (the guest's stack is small).
    de.set_max_depth(128);
    let request = serde::de::DeserializeSeed::deserialize(ReviewPayload { cache, raw_objects: false }, &mut de)
        .map_err(not_msgpack)?;
    // The payload is one value: reading another must find the end of the bytes.
    match serde::de::IgnoredAny::deserialize(&mut de) {
        Err(rmp_serde::decode::Error::InvalidMarkerRead(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        _ => return Err("the review payload has bytes after its end".into()),
    }
    review_request(request, cache)
}

fn review_request(request: ReviewRequest<'_>, cache: &mut PolicyCache) -> Result<Vec<u8>, String> {
    let objects = request.objects.ok_or("the review payload has no `objects` list")?;
    let namespace = request.namespace.as_deref().unwrap_or("default");
    let objects = match objects {
        ReviewObjects::Refused(e) => return Err(e),
        ReviewObjects::Decoded(Value::Array(objects)) => objects,
        ReviewObjects::Decoded(_) => return Err("the review payload's `objects`: the objects are not a list".into()),
        ReviewObjects::Raw(raw) => cache
            .policy(&request.rules)?
            .parse_objects_str(raw.get())
            .map_err(|e| format!("the review payload's `objects`: {e}"))?,
    };
    // Compiled by the decode above: the cache hands it back.
    let policy = cache.policy(&request.rules)?;
    // Hosts split a big input by namespace (host-runner's check does), never inside one.
    let findings = policy.review(&policy_core::Input::new(&objects, namespace));
    let wire: Vec<IndexedFinding> = findings.into_iter().map(IndexedFinding::from).collect();
    serde_json::to_vec(&serde_json::json!({ "findings": wire })).map_err(|e| e.to_string())
}

/// `validate_settings`: the same checks and error text as `meshguard check --rules`.
pub fn validate_settings(payload: &[u8]) -> Vec<u8> {
    let result = policy_core::decode::json_value_from_slice(payload)
        .map_err(|e| format!("the settings are not JSON: {e}"))
        .and_then(|s| compile(&s));
    let answer = match result {
        Ok(_) => serde_json::json!({"valid": true, "message": null}),
        Err(message) => serde_json::json!({"valid": false, "message": message}),
    };
    answer.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy_core::admission::{DENY_ANNOTATION, WITHOUT_CONTEXT_ANNOTATION};
    use serde::Serialize;
    use serde_json::json;

    fn call(payload: Value, cache: &mut PolicyCache) -> Value {
        serde_json::from_slice(&validate(payload.to_string().as_bytes(), cache, &mut NoCluster).unwrap()).unwrap()
    }

    #[test]
    fn rejects_with_message_code_and_annotations() {
        let mut cache = PolicyCache::default();
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api", "namespace": "shop"}, "spec": {"ports": [{"name": "web", "port": 80}]}});
        let r = call(
            json!({"request": {"operation": "CREATE", "namespace": "shop", "object": svc}, "settings": {}}),
            &mut cache,
        );
        assert_eq!(r["accepted"], false);
        assert_eq!(r["code"], 403);
        assert!(r["message"].as_str().unwrap().starts_with("istio-port-name: port 80"));
        assert_eq!(r["audit_annotations"][DENY_ANNOTATION], "istio-port-name");

        let dr = json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "a", "namespace": "shop"}, "spec": {"host": "a", "exportTo": ["."]}});
        let r = call(json!({"request": {"operation": "CREATE", "object": dr}}), &mut cache);
        assert_eq!(r["accepted"], true);
        assert!(r["warnings"][0].as_str().unwrap().starts_with("istio-circuit-breaker:"));
        assert_eq!(r["message"], Value::Null);
    }

    /// A RuleSet whose only mutation is a MutatingAdmissionPolicy still answers with the
    /// mutated object, decoded whole.
    #[test]
    fn a_mutating_admission_policy_alone_makes_the_module_mutate() {
        let map = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingAdmissionPolicy",
            "metadata": {"name": "label"}, "spec": {"reinvocationPolicy": "Never",
            "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["configmaps"]}]},
            "mutations": [{"patchType": "ApplyConfiguration", "applyConfiguration": {"expression": "Object{metadata: Object.metadata{labels: {'team': 'shop'}}}"}}]}});
        let binding = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingAdmissionPolicyBinding",
            "metadata": {"name": "label"}, "spec": {"policyName": "label"}});
        let settings = json!({"apiVersion": "meshguard.dev/v1alpha1", "kind": "RuleSet", "metadata": {"name": "m"},
            "spec": {"rules": [], "admissionPolicies": [map, binding]}});
        let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "shop"}, "data": {"k": "v"}});
        let r = call(
            json!({"request": {"operation": "CREATE", "namespace": "shop", "object": config}, "settings": settings}),
            &mut PolicyCache::default(),
        );
        assert_eq!(r["accepted"], true);
        assert_eq!(r["mutated_object"]["metadata"]["labels"], json!({"team": "shop"}));
        assert_eq!(r["mutated_object"]["data"], json!({"k": "v"}), "the rest of the object is kept");
    }

    #[test]
    fn settings_are_validated_with_the_cli_error_text() {
        assert_eq!(validate_settings(b"{}"), br#"{"message":null,"valid":true}"#.to_vec());
        let bad = json!({"apiVersion": "meshguard.dev/v1alpha1", "kind": "RuleSet", "metadata": {"name": "x"}, "spec": {"rules": [{"id": "p", "check": "istio-port-name", "params": {"protocol": []}}]}});
        let answer: Value = serde_json::from_slice(&validate_settings(bad.to_string().as_bytes())).unwrap();
        assert_eq!(answer["valid"], false);
        assert_eq!(
            answer["message"],
            "rule `p`: spec.rules[0].params.protocol: unknown field `protocol`, expected `protocols`"
        );
        assert!(validate(b"nope", &mut PolicyCache::default(), &mut NoCluster).unwrap_err().contains("not JSON"));
    }

    fn review_text(payload: &str, cache: &mut PolicyCache) -> Result<Value, String> {
        review(payload.as_bytes(), cache).map(|answer| serde_json::from_slice(&answer).unwrap())
    }

    #[test]
    fn review_payload_decodes_the_same_with_the_rules_before_or_after_the_objects() {
        let objects = json!([
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api", "namespace": "shop"},
             "spec": {"ports": [{"name": "web", "port": 80}]}, "status": {"loadBalancer": {}}},
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": "shop"},
             "spec": {"template": {"spec": {"containers": [{"name": "api", "image": "api:1"}]}}}},
        ]);
        // A free field path that reads a container's image, which the decode skips for the
        // built-in rules: a one-pass decode that skipped it here would lose this finding.
        let reads_image = json!({"apiVersion": "meshguard.dev/v1alpha1", "kind": "RuleSet", "metadata": {"name": "s"},
            "spec": {"rules": [{"id": "registry", "check": "field-pattern",
                                "params": {"path": "spec.template.spec.containers[*].image", "pattern": "^registry/"}}]}});
        for rules in [Value::Null, reads_image.clone()] {
            let (o, r) = (objects.to_string(), rules.to_string());
            let first = review_text(
                &format!(r#"{{"rules":{r},"namespace":"shop","objects":{o}}}"#),
                &mut PolicyCache::default(),
            );
            let last = review_text(
                &format!(r#"{{"objects":{o},"namespace":"shop","rules":{r}}}"#),
                &mut PolicyCache::default(),
            );
            let first = first.unwrap();
            assert!(!first["findings"].as_array().unwrap().is_empty(), "{rules}: {first}");
            assert_eq!(Ok(first), last, "{rules}");
        }
        // Errors read the same in either order.
        let bad_rules = r#"{"apiVersion": "meshguard.dev/v1alpha1", "kind": "RuleSet", "metadata": {"name": "x"},
            "spec": {"rules": [{"id": "p", "check": "no-such-check"}]}}"#;
        for (fields, expected) in [
            (
                [r#""rules":null"#, r#""objects":{"kind":"Service"}"#],
                "the review payload's `objects`: the objects are not a list",
            ),
            ([r#""rules":null"#, r#""objects":[{"a":1},]"#], "the review payload is not JSON: "),
            ([&format!(r#""rules":{bad_rules}"#), r#""objects":[]"#], "no-such-check"),
            ([r#""rules":null"#, r#""namespace":"a""#], "the review payload has no `objects` list"),
        ] {
            for order in [[0, 1], [1, 0]] {
                let payload = format!("{{{},{}}}", fields[order[0]], fields[order[1]]);
                let error = review_text(&payload, &mut PolicyCache::default()).unwrap_err();
                assert!(error.contains(expected), "{payload}: {error}");
            }
        }
        // The same payload in MessagePack, the rules first (as host-runner writes it), reads the same.
        #[derive(Serialize)]
        struct Packed<'a> {
            rules: &'a Value,
            namespace: &'a str,
            objects: &'a Value,
        }
        let pack = |rules: &Value, objects: &Value| {
            rmp_serde::to_vec_named(&Packed { rules, namespace: "shop", objects }).unwrap()
        };
        for rules in [Value::Null, reads_image.clone()] {
            let json = format!(r#"{{"rules":{rules},"namespace":"shop","objects":{objects}}}"#);
            let packed = pack(&rules, &objects);
            let from_json = review_text(&json, &mut PolicyCache::default()).unwrap();
            let answer = review_msgpack(&packed, &mut PolicyCache::default()).unwrap();
            assert_eq!(serde_json::from_slice::<Value>(&answer).unwrap(), from_json, "{rules}");
        }
        let mut trailing = pack(&Value::Null, &json!([]));
        assert!(review_msgpack(&trailing, &mut PolicyCache::default()).is_ok());
        trailing.push(0xc0);
        assert_eq!(
            review_msgpack(&trailing, &mut PolicyCache::default()).unwrap_err(),
            "the review payload has bytes after its end"
        );
        // Objects before rules cannot be kept for later in MessagePack: refused, not misread
        // (`json!` sorts its keys).
        let objects_first = rmp_serde::to_vec_named(&json!({"objects": [], "rules": null})).unwrap();
        let error = review_msgpack(&objects_first, &mut PolicyCache::default()).unwrap_err();
        assert!(error.contains("`objects` must come after `rules`"), "{error}");
        let mut deep = json!([]);
        for _ in 0..200 {
            deep = json!([deep]);
        }
        let error =
            review_msgpack(&pack(&Value::Null, &json!([{"spec": deep}])), &mut PolicyCache::default()).unwrap_err();
        assert!(error.contains("depth limit exceeded"), "{error}");
        let error = review_msgpack(br#"{"rules":null}"#, &mut PolicyCache::default()).unwrap_err();
        assert!(error.starts_with("the review payload is not MessagePack"), "{error}");
        // The same words as the JSON operation's, which name no encoding.
        assert_eq!(
            review_msgpack(&pack(&Value::Null, &json!({"kind": "Service"})), &mut PolicyCache::default()).unwrap_err(),
            "the review payload's `objects`: the objects are not a list"
        );

        let twice = r#"{"rules":null,"objects":[],"objects":[]}"#;
        assert!(review_text(twice, &mut PolicyCache::default()).unwrap_err().contains("duplicate field `objects`"));
        assert!(review_text(r#"{"rules":null,"objects":[]} x"#, &mut PolicyCache::default())
            .unwrap_err()
            .contains("trailing"));
    }

    /// A cluster holding one headless Service `db` in `shop`, answering as Kubewarden does.
    struct FakeCluster {
        calls: Vec<String>,
        grants_services: bool,
    }

    impl ClusterHost for FakeCluster {
        fn call(&mut self, operation: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
            let request: Value = serde_json::from_slice(payload).unwrap();
            self.calls.push(format!("{operation} {} {}", request["kind"].as_str().unwrap(), request["namespace"]));
            match (operation, request["kind"].as_str().unwrap()) {
                ("list_resources_by_namespace", "Service") if self.grants_services => Ok(json!({"apiVersion": "v1", "kind": "ServiceList", "items": [
                    {"metadata": {"name": "db", "namespace": "shop"}, "spec": {"clusterIP": "None", "ports": [{"name": "tcp-db", "port": 5000}]}}
                ]}).to_string().into_bytes()),
                ("get_resource", "Namespace") => Ok(json!({"metadata": {"name": "shop", "labels": {"istio-injection": "enabled"}}}).to_string().into_bytes()),
                _ => Err("forbidden".into()),
            }
        }
    }

    #[test]
    fn peers_come_from_kubewarden_host_calls_only_when_a_rule_needs_them() {
        let cache = &mut PolicyCache::default();
        let headless = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "cache", "namespace": "shop"},
                              "spec": {"clusterIP": "None", "ports": [{"name": "http-cache", "port": 5000}]}});
        let payload =
            json!({"request": {"operation": "CREATE", "namespace": "shop", "object": headless}, "settings": {}});
        let mut host = FakeCluster { calls: vec![], grants_services: true };
        let r: Value =
            serde_json::from_slice(&validate(payload.to_string().as_bytes(), cache, &mut host).unwrap()).unwrap();
        assert_eq!(r["accepted"], false, "{r}");
        assert!(r["message"].as_str().unwrap().contains("headless Service `db` declares it as `tcp`"), "{r}");
        assert_eq!(
            host.calls,
            vec!["list_resources_by_namespace Service \"shop\"".to_string()],
            "only what the rule reads"
        );

        let mut refusing = FakeCluster { calls: vec![], grants_services: false };
        let r: Value =
            serde_json::from_slice(&validate(payload.to_string().as_bytes(), cache, &mut refusing).unwrap()).unwrap();
        assert_eq!(r["accepted"], true);
        assert_eq!(r["audit_annotations"][WITHOUT_CONTEXT_ANNOTATION], "istio-headless-port-conflict");

        // A ClusterIP Service compares with nothing: no host call at all.
        let plain = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"}, "spec": {"ports": [{"name": "http", "port": 80}]}});
        let mut host = FakeCluster { calls: vec![], grants_services: true };
        let payload = json!({"request": {"operation": "CREATE", "namespace": "shop", "object": plain}, "settings": {}});
        let r: Value =
            serde_json::from_slice(&validate(payload.to_string().as_bytes(), cache, &mut host).unwrap()).unwrap();
        assert_eq!((r["accepted"].as_bool(), host.calls.len()), (Some(true), 0), "{r}");
    }
}
