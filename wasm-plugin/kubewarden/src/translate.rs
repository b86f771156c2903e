//! Kubewarden's JSON shapes to and from policy-core.
//!
//! `validate` gets `{"request": <AdmissionRequest>, "settings": <RuleSet>}`; empty settings mean
//! the built-in rule set. The RuleSet is compiled once and reused while the settings stay the same
//! (Kubewarden sends them with every request).

use policy_core::{Action, Policy};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// `protocol_version`'s answer: waPC policies speak Kubewarden's protocol v1.
pub const PROTOCOL_VERSION: &[u8] = b"\"v1\"";

/// Annotation keys listing the ids of the rules that fired, for audit logs and tests.
pub const DENY_ANNOTATION: &str = "meshguard.dev/deny";
pub const WARN_ANNOTATION: &str = "meshguard.dev/warn";
pub const AUDIT_ANNOTATION: &str = "meshguard.dev/audit";

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

/// Kubewarden's ValidationResponse; meshguard's webhook reads it back from the module (or builds
/// it natively with [`respond`]) and turns it into an AdmissionReview response.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ValidationResponse {
    pub accepted: bool,
    pub message: Option<String>,
    pub code: Option<u16>,
    pub warnings: Option<Vec<String>>,
    pub audit_annotations: Option<BTreeMap<String, String>>,
    pub mutated_object: Option<Value>,
}

/// `validate`: a ValidationRequest in, a ValidationResponse out. `Err` for a payload that is not
/// a ValidationRequest (the host reports it as a policy error).
pub fn validate(payload: &[u8], cache: &mut PolicyCache) -> Result<Vec<u8>, String> {
    let request: Value =
        serde_json::from_slice(payload).map_err(|e| format!("the validation payload is not JSON: {e}"))?;
    let admission = request.get("request").ok_or("the validation payload has no `request`")?;
    if cfg!(feature = "floor") {
        return serde_json::to_vec(&accept()).map_err(|e| e.to_string());
    }
    let settings = request.get("settings").unwrap_or(&Value::Null);
    let response = respond(cache.policy(settings)?, admission);
    serde_json::to_vec(&response).map_err(|e| e.to_string())
}

/// The answer to one AdmissionRequest under `policy`: what `validate` sends, and what the webhook
/// builds natively, so both engines answer alike.
pub fn respond(policy: &Policy, admission: &Value) -> ValidationResponse {
    let verdict = policy.review_admission(admission);
    let mut annotations = BTreeMap::new();
    for (key, action) in
        [(DENY_ANNOTATION, Action::Deny), (WARN_ANNOTATION, Action::Warn), (AUDIT_ANNOTATION, Action::Audit)]
    {
        let ids = verdict.rule_ids(action);
        if !ids.is_empty() {
            annotations.insert(key.to_string(), ids);
        }
    }
    let warnings = verdict.warnings();
    ValidationResponse {
        accepted: verdict.allowed,
        message: verdict.denial_message(),
        code: (!verdict.allowed).then_some(403),
        warnings: (!warnings.is_empty()).then_some(warnings),
        audit_annotations: (!annotations.is_empty()).then_some(annotations),
        mutated_object: None,
    }
}

/// An answer that admits the request with nothing to say.
pub fn accept() -> ValidationResponse {
    ValidationResponse {
        accepted: true,
        message: None,
        code: None,
        warnings: None,
        audit_annotations: None,
        mutated_object: None,
    }
}

/// `meshguard_review`, meshguard's own operation (Kubewarden never calls it): reviews a whole
/// input as `meshguard check` does, for host-runner's wasm engine.
/// In: `{"objects": [...], "rules": <RuleSet or null>, "namespace": "default"}`.
/// Out: `{"findings": [{"rule", "action", "message", "kind", "namespace", "name", "path", "object"}]}`.
pub fn review(payload: &[u8], cache: &mut PolicyCache) -> Result<Vec<u8>, String> {
    let request: Value = serde_json::from_slice(payload).map_err(|e| format!("the review payload is not JSON: {e}"))?;
    let objects = request.get("objects").and_then(Value::as_array).ok_or("the review payload has no `objects` list")?;
    let namespace = request.get("namespace").and_then(Value::as_str).unwrap_or("default");
    let policy = cache.policy(request.get("rules").unwrap_or(&Value::Null))?;
    // Hosts split a big input by namespace (host-runner's check does), never inside one.
    let findings = policy.review(&policy_core::Input::new(objects, namespace));
    let wire: Vec<Value> = findings
        .iter()
        .map(|f| {
            serde_json::json!({"rule": f.rule, "action": f.action, "message": f.message, "kind": f.kind,
                               "namespace": f.namespace, "name": f.name, "path": f.path, "object": f.object_index})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "findings": wire })).map_err(|e| e.to_string())
}

/// `validate_settings`: the same checks and error text as `meshguard check --rules`.
pub fn validate_settings(payload: &[u8]) -> Vec<u8> {
    let result = serde_json::from_slice::<Value>(payload)
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
    use serde_json::json;

    fn call(payload: Value, cache: &mut PolicyCache) -> Value {
        serde_json::from_slice(&validate(payload.to_string().as_bytes(), cache).unwrap()).unwrap()
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
        assert!(validate(b"nope", &mut PolicyCache::default()).unwrap_err().contains("not JSON"));
    }
}
