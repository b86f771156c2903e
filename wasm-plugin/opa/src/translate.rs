//! OPA's view: entrypoints, an input document, a data document, a result set.
//!
//! Input: `{"review": <AdmissionRequest>, "parameters": <RuleSet>}` (Gatekeeper's shape), or an
//! AdmissionReview, an AdmissionRequest or a bare object. The RuleSet comes from
//! `input.parameters`, else from `data` (set with `setData`), else the built-in rule set.

use policy_core::admission::finding_line;
use policy_core::{Action, AdmissionVerdict, Policy};
use serde_json::{json, Value};

/// Entrypoint names and ids; id 0 is what Kubewarden's `gatekeeper` mode evaluates.
pub const ENTRYPOINTS: [&str; 3] = ["meshguard/violation", "meshguard/allow", "meshguard/findings"];

pub fn entrypoints() -> Value {
    Value::Object(ENTRYPOINTS.iter().enumerate().map(|(i, name)| (name.to_string(), json!(i))).collect())
}

/// A JSON value as a host hands it over (`opa_json_parse`, `opa_value_parse`). The Rust SDK
/// counts a C string's trailing NUL in `len`; a leading byte-order mark is dropped.
pub fn parse_json(bytes: &[u8]) -> Option<Value> {
    let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    let bytes = &bytes[..end];
    serde_json::from_slice(bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes)).ok()
}

fn non_empty(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null() && v.as_object().is_none_or(|m| !m.is_empty()))
}

/// Where the RuleSet for this evaluation comes from (`None`: the built-in one).
pub fn rule_set<'a>(input: Option<&'a Value>, data: Option<&'a Value>) -> Option<&'a Value> {
    non_empty(input.and_then(|i| i.get("parameters"))).or_else(|| non_empty(data))
}

/// Compiles a RuleSet source (`None`: the built-in one).
pub fn compile(rules: Option<&Value>) -> Result<Policy, String> {
    match rules {
        None => Policy::default_rules().map_err(|e| format!("built-in rule set: {e}")),
        Some(doc) => Policy::from_value(doc).map_err(|e| e.to_string()),
    }
}

/// The result set `[{"result": ...}]` of entrypoint `id` (`[]`: undefined).
pub fn evaluate(policy: &Policy, id: usize, input: Option<&Value>) -> Value {
    let Some(input) = input else { return json!([]) };
    let review = input.get("review").unwrap_or(input);
    let verdict = policy.review_admission(review);
    match ENTRYPOINTS.get(id) {
        Some(_) => json!([{ "result": result(id, &verdict) }]),
        None => json!([]),
    }
}

fn result(id: usize, verdict: &AdmissionVerdict) -> Value {
    match id {
        0 => Value::Array(
            verdict
                .with_action(Action::Deny)
                .map(|f| json!({"msg": finding_line(f), "details": {"rule": f.rule, "action": f.action, "path": f.path}}))
                .collect(),
        ),
        1 => json!(verdict.allowed),
        _ => Value::Array(
            verdict
                .findings
                .iter()
                .map(|f| {
                    json!({"rule": f.rule, "action": f.action, "message": f.message, "kind": f.kind,
                           "namespace": f.namespace, "name": f.name, "path": f.path})
                })
                .collect(),
        ),
    }
}

/// What the benchmark floor answers: the shape of a passing result, no evaluation.
pub fn floor_result(id: usize) -> Value {
    match id {
        1 => json!([{"result": true}]),
        _ => json!([{"result": []}]),
    }
}

/// A rule set that does not load is an evaluation error the host sees as `opa_abort`-free
/// undefined plus this message in `meshguard/findings`.
pub fn error_result(id: usize, message: &str) -> Value {
    match id {
        1 => json!([{"result": false}]),
        _ => {
            json!([{"result": [{"msg": format!("meshguard: invalid RuleSet: {message}"), "details": {"rule": "meshguard-rule-set", "action": "deny", "path": ""}}]}])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(port_name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api", "namespace": "shop"}, "spec": {"ports": [{"name": port_name, "port": 80}]}})
    }

    #[test]
    fn gatekeeper_shape_violations_allow_and_findings() {
        let input =
            json!({"review": {"operation": "CREATE", "namespace": "shop", "object": svc("web")}, "parameters": {}});
        let policy = compile(rule_set(Some(&input), None)).unwrap();
        let v = evaluate(&policy, 0, Some(&input));
        assert_eq!(
            v[0]["result"][0]["details"],
            json!({"rule": "istio-port-name", "action": "deny", "path": "spec.ports[0].name"})
        );
        assert!(v[0]["result"][0]["msg"].as_str().unwrap().starts_with("istio-port-name: port 80"));
        assert_eq!(evaluate(&policy, 1, Some(&input)), json!([{"result": false}]));
        assert_eq!(evaluate(&policy, 2, Some(&input))[0]["result"][0]["kind"], "Service");
        assert_eq!(evaluate(&policy, 1, Some(&svc("http"))), json!([{"result": true}]), "a bare object works");
        assert_eq!(evaluate(&policy, 1, None), json!([]), "undefined input is undefined");
    }

    #[test]
    fn rule_set_from_parameters_then_data() {
        let rs = json!({"apiVersion": "meshguard.dev/v1alpha1", "kind": "RuleSet", "metadata": {"name": "x"}, "spec": {"rules": []}});
        let input = json!({"review": svc("web"), "parameters": rs.clone()});
        assert_eq!(rule_set(Some(&input), None), Some(&rs));
        assert_eq!(rule_set(Some(&json!({"review": svc("web")})), Some(&rs)), Some(&rs));
        assert_eq!(rule_set(Some(&json!({"review": svc("web"), "parameters": {}})), Some(&json!({}))), None);
        let empty = compile(Some(&rs)).unwrap();
        assert_eq!(evaluate(&empty, 1, Some(&input)), json!([{"result": true}]));
        assert!(compile(Some(&json!({"kind": "RuleSet"}))).is_err());
    }
}
