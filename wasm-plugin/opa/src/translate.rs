//! OPA's view: entrypoints, an input document, a data document, a result set.
//!
//! Input: `{"review": <AdmissionRequest>, "parameters": <RuleSet>}` (Gatekeeper's shape, and
//! Kubewarden's `gatekeeper` mode), `{"request": <AdmissionRequest>}` (Kubewarden's `opa` mode),
//! an AdmissionReview, an AdmissionRequest or a bare object. The RuleSet comes from
//! `input.parameters`, else from `data` (set with `setData`; Kubewarden's `opa` mode puts the
//! policy settings there), else the built-in rule set. In `data`, `inventory` (Gatekeeper's
//! synced objects) and `kubernetes` (kube-mgmt's, and Kubewarden's `opa` mode) are the cluster,
//! not part of the RuleSet: cross-object rules compare the request's object with them.

use policy_core::admission::{admission_request, finding_line};
use policy_core::object::{api_version_of_kind, with_type_meta};
use policy_core::{Action, AdmissionVerdict, ClusterView, Policy, Unseen};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::borrow::Cow;

/// What an entrypoint answers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Entrypoint {
    /// Gatekeeper's `violation`: a list of `{msg, details}`, empty when allowed.
    Violation,
    /// `true` or `false`.
    Allow,
    /// Every finding (deny, warn, audit) with rule, action, message, object and path.
    Findings,
    /// `{"response": <AdmissionResponse>}` with warnings and audit annotations, as Kubewarden's
    /// `opa` mode and kube-mgmt's `system.main` read it.
    Response,
}

/// Entrypoints in id order. Kubewarden evaluates id 0 in both Rego modes, so the `opa`-mode
/// artifact (feature `kubewarden-opa-mode`) puts `meshguard/response` first.
#[cfg(not(feature = "kubewarden-opa-mode"))]
pub const ENTRYPOINTS: [Entrypoint; 4] =
    [Entrypoint::Violation, Entrypoint::Allow, Entrypoint::Findings, Entrypoint::Response];
#[cfg(feature = "kubewarden-opa-mode")]
pub const ENTRYPOINTS: [Entrypoint; 4] =
    [Entrypoint::Response, Entrypoint::Violation, Entrypoint::Allow, Entrypoint::Findings];

impl Entrypoint {
    pub fn name(self) -> &'static str {
        match self {
            Entrypoint::Violation => "meshguard/violation",
            Entrypoint::Allow => "meshguard/allow",
            Entrypoint::Findings => "meshguard/findings",
            Entrypoint::Response => "meshguard/response",
        }
    }
}

pub fn entrypoints() -> Value {
    Value::Object(ENTRYPOINTS.iter().enumerate().map(|(i, e)| (e.name().to_string(), json!(i))).collect())
}

/// JSON text as a host hands it over (`opa_json_parse`, `opa_eval`'s input). The Rust SDK
/// counts a C string's trailing NUL in `len`; a leading byte-order mark is dropped. `None` when
/// the rest is not UTF-8, which no JSON parse would accept either.
pub fn json_text(bytes: &[u8]) -> Option<&str> {
    let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    let bytes = &bytes[..end];
    std::str::from_utf8(bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes)).ok()
}

/// A JSON value as a host hands it over (`opa_json_parse`, `opa_value_parse`).
pub fn parse_json(bytes: &[u8]) -> Option<Value> {
    policy_core::decode::json_value(json_text(bytes)?).ok()
}

/// The one-call path's read of an input ([`read_input`]): the policy in force and the reviewed
/// payload decoded for it.
pub struct ReadInput<'p, E> {
    pub policy: Result<&'p Policy, E>,
    /// `None` when the payload is not valid JSON, or no policy could be had.
    pub payload: Option<Value>,
}

/// Reads an input so that its reviewed payload (`review`, else the whole input) is decoded once,
/// for the RuleSet in force, which says what that decode may skip ([`Policy::admission_seed`]).
/// `policy_for` is given `parameters` when they are known: before `review` when they come first
/// (Go and serde_json hosts write keys sorted), so the payload is decoded in the same pass;
/// otherwise the payload is kept as text and decoded after. `None` for input this read does not
/// take as [`evaluate`] takes it (not a JSON object, a repeated key): it goes the whole-tree way.
pub fn read_input<'p, E>(
    text: &str,
    policy_for: impl FnOnce(Option<&Value>) -> Result<&'p Policy, E>,
) -> Option<ReadInput<'p, E>> {
    if !text.trim_start().starts_with('{') {
        return None;
    }
    let mut read = EnvelopeRead { policy_for: Some(policy_for), policy: None };
    let mut de = serde_json::Deserializer::from_str(text);
    let envelope = serde::de::DeserializeSeed::deserialize(&mut read, &mut de).ok()?;
    de.end().ok()?;
    let policy = match read.policy {
        Some(policy) => policy,
        None => (read.policy_for.take()?)(envelope.parameters.as_ref()),
    };
    let payload = match (envelope.review, &policy) {
        (Some(Review::Decoded(value)), _) => Some(value),
        (review, Ok(policy)) => {
            let text = match review {
                Some(Review::Text(raw)) => raw.get(),
                _ => text,
            };
            let mut de = serde_json::Deserializer::from_str(text);
            serde::de::DeserializeSeed::deserialize(policy.admission_seed(), &mut de).ok().filter(|_| de.end().is_ok())
        }
        (_, Err(_)) => None,
    };
    Some(ReadInput { policy, payload })
}

enum Review<'a> {
    Decoded(Value),
    Text(&'a RawValue),
}

struct Envelope<'a> {
    parameters: Option<Value>,
    review: Option<Review<'a>>,
}

struct EnvelopeRead<'p, F, E> {
    policy_for: Option<F>,
    policy: Option<Result<&'p Policy, E>>,
}

impl<'de, 'p, F, E> serde::de::DeserializeSeed<'de> for &mut EnvelopeRead<'p, F, E>
where
    F: FnOnce(Option<&Value>) -> Result<&'p Policy, E>,
{
    type Value = Envelope<'de>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Envelope<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, 'p, F, E> serde::de::Visitor<'de> for &mut EnvelopeRead<'p, F, E>
where
    F: FnOnce(Option<&Value>) -> Result<&'p Policy, E>,
{
    type Value = Envelope<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an OPA input object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Envelope<'de>, A::Error> {
        use serde::de::Error;
        let mut envelope = Envelope { parameters: None, review: None };
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "parameters" if envelope.parameters.is_some() => return Err(A::Error::duplicate_field("parameters")),
                "review" if envelope.review.is_some() => return Err(A::Error::duplicate_field("review")),
                "parameters" => envelope.parameters = Some(map.next_value_seed(policy_core::decode::ValueSeed)?),
                "review" => {
                    let known = match (envelope.parameters.as_ref(), self.policy_for.take()) {
                        (Some(parameters), Some(policy_for)) => Some(policy_for(Some(parameters))),
                        (_, policy_for) => {
                            self.policy_for = policy_for;
                            None
                        }
                    };
                    envelope.review = Some(match known {
                        Some(Ok(policy)) => Review::Decoded(map.next_value_seed(policy.admission_seed())?),
                        _ => Review::Text(map.next_value()?),
                    });
                    self.policy = known;
                }
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(envelope)
    }
}

fn non_empty(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null() && v.as_object().is_none_or(|m| !m.is_empty()))
}

/// Keys of `data` that hold the cluster, never the RuleSet.
const CLUSTER_KEYS: [&str; 2] = ["inventory", "kubernetes"];

/// Where the RuleSet for this evaluation comes from (`None`: the built-in one): the input's
/// `parameters`, else `data`.
pub fn rule_set<'a>(parameters: Option<&'a Value>, data: Option<&'a Value>) -> Option<Cow<'a, Value>> {
    if let Some(parameters) = non_empty(parameters) {
        return Some(Cow::Borrowed(parameters));
    }
    let data = non_empty(data)?;
    match data.as_object() {
        Some(map) if CLUSTER_KEYS.iter().any(|k| map.contains_key(*k)) => {
            let rest: Map<String, Value> = map
                .iter()
                .filter(|(k, _)| !CLUSTER_KEYS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (!rest.is_empty()).then_some(Cow::Owned(Value::Object(rest)))
        }
        _ => Some(Cow::Borrowed(data)),
    }
}

/// Compiles a RuleSet source (`None`: the built-in one).
pub fn compile(rules: Option<&Value>) -> Result<Policy, String> {
    match rules {
        None => Policy::default_rules().map_err(|e| format!("built-in rule set: {e}")),
        Some(doc) => Policy::from_value(doc).map_err(|e| e.to_string()),
    }
}

fn objects_of(map: Option<&Value>) -> impl Iterator<Item = &Value> {
    map.and_then(Value::as_object).into_iter().flat_map(|m| m.values())
}

/// The cluster objects `data` holds for a request in `namespace`: its peers and its Namespace
/// (every cross-object rule looks no further). `None` when `data` holds no cluster at all.
pub fn cluster_objects(data: Option<&Value>, namespace: &str) -> Option<Vec<Value>> {
    let data = data?;
    let mut out = Vec::new();
    if let Some(inventory) = data.get("inventory") {
        // Gatekeeper: cluster[groupVersion][kind][name], namespace[ns][groupVersion][kind][name].
        let by_gv = inventory.get("namespace").and_then(|n| n.get(namespace)).and_then(Value::as_object);
        for (gv, kinds) in by_gv.into_iter().flatten() {
            for (kind, objects) in kinds.as_object().into_iter().flatten() {
                out.extend(objects_of(Some(objects)).map(|o| with_type_meta(o.clone(), gv, kind)));
            }
        }
        let ns = inventory.pointer("/cluster/v1/Namespace").and_then(|m| m.get(namespace));
        out.extend(ns.map(|o| with_type_meta(o.clone(), "v1", "Namespace")));
        return Some(out);
    }
    let kubernetes = data.get("kubernetes")?;
    // kube-mgmt: kubernetes[resource][namespace][name], cluster-scoped kubernetes[resource][name].
    for (resource, by_namespace) in kubernetes.as_object().into_iter().flatten() {
        if resource == "namespaces" {
            let ns = by_namespace.get(namespace);
            out.extend(ns.map(|o| with_type_meta(o.clone(), "v1", "Namespace")));
            continue;
        }
        let kind = KIND_OF_RESOURCE.iter().find(|(r, _)| r == resource).map(|(_, k)| *k);
        for o in objects_of(by_namespace.get(namespace)) {
            out.push(match kind.and_then(|k| Some((api_version_of_kind(k)?, k))) {
                Some((api_version, kind)) => with_type_meta(o.clone(), api_version, kind),
                None => o.clone(),
            });
        }
    }
    Some(out)
}

/// Resource names kube-mgmt keys objects by, for the kinds the rules compare with.
const KIND_OF_RESOURCE: [(&str, &str); 6] = [
    ("services", "Service"),
    ("sidecars", "Sidecar"),
    ("pods", "Pod"),
    ("deployments", "Deployment"),
    ("destinationrules", "DestinationRule"),
    ("serviceentries", "ServiceEntry"),
];

/// The input's `parameters`, where [`rule_set`] looks first.
pub fn parameters(input: Option<&Value>) -> Option<&Value> {
    input?.get("parameters")
}

/// The result set `[{"result": ...}]` of entrypoint `id` (`[]`: undefined).
pub fn evaluate(policy: &Policy, id: usize, input: Option<&Value>, data: Option<&Value>) -> Value {
    evaluate_payload(policy, id, input.map(|i| i.get("review").unwrap_or(i)), data)
}

/// [`evaluate`] of the input's reviewed payload (its `review`, else the input itself; `None`:
/// undefined).
pub fn evaluate_payload(policy: &Policy, id: usize, review: Option<&Value>, data: Option<&Value>) -> Value {
    let (Some(review), Some(entrypoint)) = (review, ENTRYPOINTS.get(id)) else { return json!([]) };
    let request = admission_request(review);
    let namespace = request.object_namespace();
    let cluster = cluster_objects(data, namespace);
    let view = match (&cluster, entrypoint) {
        (Some(objects), _) => ClusterView { objects, unseen: Unseen::Nothing },
        (None, Entrypoint::Response) => ClusterView::NONE,
        // Only the AdmissionResponse names the rules that decided without their peers: the other
        // answers need not look for them (the findings are the same either way).
        (None, _) => ClusterView { objects: &[], unseen: Unseen::Nothing },
    };
    let verdict = policy.review_admission_in(review, view);
    json!([{ "result": result(*entrypoint, &verdict, request.uid()) }])
}

fn result(entrypoint: Entrypoint, verdict: &AdmissionVerdict, uid: Value) -> Value {
    match entrypoint {
        Entrypoint::Violation => Value::Array(
            verdict
                .with_action(Action::Deny)
                .map(|f| json!({"msg": finding_line(f), "details": {"rule": f.rule, "action": f.action, "path": f.path}}))
                .collect(),
        ),
        Entrypoint::Allow => json!(verdict.allowed),
        Entrypoint::Findings => json!(verdict.findings),
        Entrypoint::Response => json!({ "response": verdict.response(uid) }),
    }
}

/// What the benchmark floor answers: the shape of a passing result, no evaluation.
pub fn floor_result(id: usize) -> Value {
    match ENTRYPOINTS.get(id) {
        Some(Entrypoint::Allow) => json!([{"result": true}]),
        Some(Entrypoint::Response) => json!([{"result": {"response": {"uid": "", "allowed": true}}}]),
        _ => json!([{"result": []}]),
    }
}

/// A RuleSet that does not load denies every request, with the loader's message (rule and
/// field) in every answer: Rego hosts never validate settings, so this is where it shows.
pub fn error_result(id: usize, message: &str) -> Value {
    let msg = format!("meshguard: invalid RuleSet: {message}");
    match ENTRYPOINTS.get(id) {
        Some(Entrypoint::Allow) => json!([{"result": false}]),
        Some(Entrypoint::Response) => {
            json!([{"result": {"response": {"uid": "", "allowed": false, "status": {"code": 500, "message": msg}}}}])
        }
        _ => {
            json!([{"result": [{"msg": msg, "details": {"rule": "meshguard-rule-set", "action": "deny", "path": ""}}]}])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(port_name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api", "namespace": "shop"}, "spec": {"ports": [{"name": port_name, "port": 80}]}})
    }

    /// This crate turns on serde_json's `raw_value`, whose `Value` decode would read the token
    /// key's string as JSON: an input, whole or read in one pass, keeps it as an ordinary key.
    #[test]
    fn a_raw_value_token_key_stays_a_key_in_every_input_read() {
        let key = policy_core::policy::RAW_VALUE_KEY;
        let hidden = format!(r#"{{"{key}": "{{\"name\": \"http-web\", \"port\": 80}}"}}"#);
        let literal = json!({key: r#"{"name": "http-web", "port": 80}"#});
        assert_eq!(parse_json(hidden.as_bytes()), Some(literal.clone()));
        let object = format!(
            r#"{{"apiVersion": "v1", "kind": "Service", "metadata": {{"name": "api", "namespace": "shop"}}, "spec": {{"ports": [{hidden}]}}}}"#
        );
        let policy = Policy::default_rules().unwrap();
        for input in [
            format!(r#"{{"parameters": null, "review": {{"object": {object}}}}}"#),
            format!(r#"{{"review": {{"object": {object}}}}}"#),
        ] {
            let read = read_input(&input, |_| Ok::<_, String>(&policy)).unwrap();
            assert_eq!(read.payload.unwrap()["object"]["spec"]["ports"][0], literal, "{input}");
        }
    }

    fn id(e: Entrypoint) -> usize {
        ENTRYPOINTS.iter().position(|x| *x == e).unwrap()
    }

    #[test]
    fn gatekeeper_shape_violations_allow_findings_and_response() {
        let input = json!({"review": {"uid": "u1", "operation": "CREATE", "namespace": "shop", "object": svc("web")}, "parameters": {}});
        let policy = compile(rule_set(parameters(Some(&input)), None).as_deref()).unwrap();
        let v = evaluate(&policy, id(Entrypoint::Violation), Some(&input), None);
        assert_eq!(
            v[0]["result"][0]["details"],
            json!({"rule": "istio-port-name", "action": "deny", "path": "spec.ports[0].name"})
        );
        assert!(v[0]["result"][0]["msg"].as_str().unwrap().starts_with("istio-port-name: port 80"));
        assert_eq!(evaluate(&policy, id(Entrypoint::Allow), Some(&input), None), json!([{"result": false}]));
        assert_eq!(evaluate(&policy, id(Entrypoint::Findings), Some(&input), None)[0]["result"][0]["kind"], "Service");
        let response = &evaluate(&policy, id(Entrypoint::Response), Some(&input), None)[0]["result"]["response"];
        assert_eq!(
            (&response["uid"], &response["allowed"], &response["status"]["code"]),
            (&json!("u1"), &json!(false), &json!(403))
        );
        assert_eq!(response["auditAnnotations"]["meshguard.dev/deny"], "istio-port-name");
        assert_eq!(
            evaluate(&policy, id(Entrypoint::Allow), Some(&svc("http")), None),
            json!([{"result": true}]),
            "a bare object works"
        );
        assert_eq!(evaluate(&policy, 0, None, None), json!([]), "undefined input is undefined");
        assert_eq!(evaluate(&policy, 9, Some(&input), None), json!([]), "an unknown entrypoint is undefined");
    }

    #[test]
    fn kubewarden_opa_mode_shape_gets_an_admission_response_with_warnings() {
        let dr = json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "a", "namespace": "shop"}, "spec": {"host": "a", "exportTo": ["."]}});
        let input = json!({"request": {"uid": "u2", "operation": "CREATE", "namespace": "shop", "object": dr}});
        let data = json!({});
        let policy = compile(rule_set(parameters(Some(&input)), Some(&data)).as_deref()).unwrap();
        let response = &evaluate(&policy, id(Entrypoint::Response), Some(&input), Some(&data))[0]["result"]["response"];
        assert_eq!(response["allowed"], true);
        assert!(response["warnings"][0].as_str().unwrap().starts_with("istio-circuit-breaker:"), "{response}");
        assert_eq!(response["auditAnnotations"]["meshguard.dev/warn"], "istio-circuit-breaker");
        assert!(response.get("status").is_none());
    }

    #[test]
    fn rule_set_from_parameters_then_data_without_the_cluster_keys() {
        let rs = json!({"apiVersion": "meshguard.dev/v1alpha1", "kind": "RuleSet", "metadata": {"name": "x"}, "spec": {"rules": []}});
        let input = json!({"review": svc("web"), "parameters": rs.clone()});
        assert_eq!(rule_set(parameters(Some(&input)), None).as_deref(), Some(&rs));
        assert_eq!(rule_set(parameters(Some(&json!({"review": svc("web")}))), Some(&rs)).as_deref(), Some(&rs));
        assert_eq!(rule_set(Some(&json!({})), Some(&json!({}))), None);
        // Gatekeeper's inventory and kube-mgmt's `kubernetes` are data, not a RuleSet.
        assert_eq!(rule_set(None, Some(&json!({"inventory": {"cluster": {}}}))), None);
        let mut with_cluster = rs.clone();
        with_cluster["kubernetes"] = json!({"services": {}});
        assert_eq!(rule_set(None, Some(&with_cluster)).as_deref(), Some(&rs));
        let empty = compile(Some(&rs)).unwrap();
        assert_eq!(evaluate(&empty, id(Entrypoint::Allow), Some(&input), None), json!([{"result": true}]));
        assert!(compile(Some(&json!({"kind": "RuleSet"}))).is_err());
    }

    #[test]
    fn an_invalid_rule_set_names_rule_and_field_in_every_answer() {
        let bad = json!({"apiVersion": "meshguard.dev/v1alpha1", "kind": "RuleSet", "metadata": {"name": "x"},
                         "spec": {"rules": [{"id": "p", "check": "istio-port-name", "params": {"protocol": []}}]}});
        let message = compile(Some(&bad)).unwrap_err();
        let expected = "meshguard: invalid RuleSet: rule `p`: spec.rules[0].params.protocol: unknown field `protocol`, expected `protocols`";
        assert_eq!(error_result(id(Entrypoint::Violation), &message)[0]["result"][0]["msg"], expected);
        let response = &error_result(id(Entrypoint::Response), &message)[0]["result"]["response"];
        assert_eq!((&response["allowed"], &response["status"]["message"]), (&json!(false), &json!(expected)));
        assert_eq!(error_result(id(Entrypoint::Allow), &message), json!([{"result": false}]));
    }

    /// What the one-call path answers for `text` (abi.rs's glue, with a fresh compile per call).
    fn answer_read(text: &str, id: usize, data: Option<&Value>, calls: &mut usize) -> Option<Value> {
        let read = read_input(text, |parameters| {
            *calls += 1;
            compile(rule_set(parameters, data).as_deref()).map(|p| &*Box::leak(Box::new(p)))
        })?;
        Some(match read.policy {
            Ok(p) => evaluate_payload(p, id, read.payload.as_ref(), data),
            Err(e) => error_result(id, &e),
        })
    }

    /// What the whole-tree path (ABI 1.1's `eval`) answers for `text`.
    fn answer_whole(text: &str, id: usize, data: Option<&Value>) -> Value {
        let input: Option<Value> = serde_json::from_str(text).ok();
        match compile(rule_set(parameters(input.as_ref()), data).as_deref()) {
            Ok(p) => evaluate(&p, id, input.as_ref(), data),
            Err(e) => error_result(id, &e),
        }
    }

    #[test]
    fn the_one_pass_read_answers_as_the_whole_tree_does() {
        // A free field path reads `status`, which the built-in rules' decode skips.
        let free_path = json!({"apiVersion": "meshguard.dev/v1alpha1", "kind": "RuleSet", "metadata": {"name": "x"},
            "spec": {"rules": [{"id": "f", "check": "field-pattern", "params": {"path": "status.phase", "pattern": "^Running$"}}]}});
        let invalid = json!({"apiVersion": "meshguard.dev/v1alpha1", "kind": "RuleSet", "metadata": {"name": "x"},
            "spec": {"rules": [{"id": "p", "check": "istio-port-name", "params": {"protocol": []}}]}});
        let mut object = svc("web");
        object["metadata"]["managedFields"] = json!([{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]);
        object["status"] = json!({"phase": "Pending"});
        let request = json!({"uid": "u9", "operation": "UPDATE", "namespace": "shop", "object": object,
                             "oldObject": svc("http"), "userInfo": {"username": "dev"}});
        let review = request.to_string();
        let texts = [
            // Keys sorted, as Go and serde_json write them: `parameters` comes first.
            json!({"parameters": {}, "review": request}).to_string(),
            json!({"parameters": free_path, "review": request}).to_string(),
            json!({"parameters": invalid, "review": request}).to_string(),
            format!(r#"{{"review": {review}, "parameters": {free_path}}}"#),
            format!(r#"{{"review": {review}}}"#),
            r#" {"review": null, "parameters": null}"#.to_string(),
            json!({"request": request}).to_string(),
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}).to_string(),
            svc("web").to_string(),
        ];
        let mut data_with_rules = free_path.clone();
        data_with_rules["kubernetes"] = json!({"services": {"shop": {"db": headless("db", "tcp-db")}}});
        for text in &texts {
            for data in [None, Some(&json!({})), Some(&data_with_rules)] {
                for id in 0..ENTRYPOINTS.len() {
                    let mut calls = 0;
                    let read = answer_read(text, id, data, &mut calls).expect(text);
                    assert_eq!(read, answer_whole(text, id, data), "{text} with {data:?}, entrypoint {id}");
                    assert_eq!(calls, 1, "the policy is asked for once: {text}");
                }
            }
        }
        // The cases above differ where they should: the free path denies on `status`, the
        // built-in rules on the port name, an invalid RuleSet with its message.
        let violation =
            |text: &str| answer_whole(text, id(Entrypoint::Violation), None)[0]["result"][0]["details"]["rule"].clone();
        assert_eq!(violation(&texts[0]), "istio-port-name");
        assert_eq!(violation(&texts[1]), "f");
        assert_eq!(violation(&texts[2]), "meshguard-rule-set");
        assert_eq!(violation(&texts[3]), "f");
    }

    #[test]
    fn the_one_pass_read_decodes_for_the_rule_set_and_leaves_odd_input_to_the_whole_tree() {
        let mut object = svc("web");
        object["status"] = json!({"phase": "Pending"});
        let text = json!({"parameters": {}, "review": {"operation": "CREATE", "object": object}}).to_string();
        let policy = compile(None).unwrap();
        let read = read_input(&text, |_| Ok::<_, ()>(&policy)).unwrap();
        let payload = read.payload.unwrap();
        assert!(payload["object"].get("status").is_none(), "the built-in rules never read status: {payload}");
        assert_eq!(payload["object"]["spec"], object["spec"]);
        for odd in [
            "[1, 2]",
            "\"review\"",
            "{\"review\": {}, \"review\": {}}",
            "{\"parameters\": {}, \"parameters\": {}}",
            "{\"review\": ",
            "{} x",
        ] {
            assert!(read_input(odd, |_| Ok::<_, ()>(&policy)).is_none(), "{odd}");
        }
    }

    fn headless(name: &str, port_name: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "shop"}, "spec": {"clusterIP": "None", "ports": [{"name": port_name, "port": 5000}]}})
    }

    #[test]
    fn peers_from_gatekeeper_inventory_and_kube_mgmt_data() {
        let policy = compile(None).unwrap();
        let mut new = headless("cache", "http-cache");
        new["apiVersion"] = json!("v1");
        new["kind"] = json!("Service");
        let input = json!({"review": {"operation": "CREATE", "namespace": "shop", "object": new}, "parameters": {}});
        // List items carry no apiVersion/kind: the inventory's keys say them.
        let inventory = json!({"inventory": {
            "namespace": {"shop": {"v1": {"Service": {"db": headless("db", "tcp-db")}}}, "other": {"v1": {"Service": {"x": headless("x", "tcp-x")}}}},
            "cluster": {"v1": {"Namespace": {"shop": {"metadata": {"name": "shop"}}}}}}});
        let objects = cluster_objects(Some(&inventory), "shop").unwrap();
        assert_eq!(objects.len(), 2, "{objects:?}");
        assert_eq!((&objects[0]["kind"], &objects[1]["kind"]), (&json!("Service"), &json!("Namespace")));
        let v = evaluate(&policy, id(Entrypoint::Violation), Some(&input), Some(&inventory));
        assert_eq!(v[0]["result"][0]["details"]["rule"], "istio-headless-port-conflict", "{v}");

        let kube_mgmt = json!({"kubernetes": {"services": {"shop": {"db": headless("db", "tcp-db")}}, "namespaces": {"shop": {"metadata": {"name": "shop"}}}}});
        let input = json!({"request": input["review"].clone()});
        let r = evaluate(&policy, id(Entrypoint::Response), Some(&input), Some(&kube_mgmt));
        assert_eq!(
            r[0]["result"]["response"]["auditAnnotations"]["meshguard.dev/deny"], "istio-headless-port-conflict",
            "{r}"
        );

        // Without any cluster data the rule is named as having decided without its peers.
        let r = evaluate(&policy, id(Entrypoint::Response), Some(&input), Some(&json!({})));
        let response = &r[0]["result"]["response"];
        assert_eq!(response["allowed"], true);
        assert_eq!(response["auditAnnotations"]["meshguard.dev/without-context"], "istio-headless-port-conflict");
    }
}
