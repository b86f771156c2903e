//! One AdmissionReview in, one AdmissionReview out: the webhook's translation, kept free of I/O so
//! it is tested directly. The decision and the response are policy-core's (natively, or in the
//! Kubewarden module through the wasm host); this file only wraps the response in its envelope.

use policy_core::admission::{AdmissionResponse, AUDIT_ANNOTATION, DENY_ANNOTATION, WARN_ANNOTATION};
use serde_json::{json, Value};

/// What a request asks, read before any evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Asked {
    pub uid: String,
    pub operation: String,
    pub group: String,
    pub kind: String,
    pub dry_run: bool,
}

/// Why a body is not an AdmissionReview this webhook can answer.
#[derive(Debug, Clone, PartialEq)]
pub enum BadReview {
    /// Not JSON at all: answered with HTTP 400.
    NotJson(String),
    /// JSON, but not an `admission.k8s.io/v1` AdmissionReview with a `request.uid`: answered with
    /// an AdmissionReview that refuses (the API server shows the message), echoing any uid.
    Invalid { uid: String, message: String },
}

/// Parses the body with `decode` (`Policy::parse_admission` of the rule set in force, which skips
/// what none of its rules reads) and checks the envelope: `apiVersion`, `kind`, `request`,
/// `request.uid`.
pub fn parse(
    body: &[u8],
    decode: &dyn Fn(&[u8]) -> Result<Value, serde_json::Error>,
) -> Result<(Value, Asked), BadReview> {
    let review: Value = decode(body).map_err(|e| BadReview::NotJson(e.to_string()))?;
    let request = review.get("request");
    let uid = request.and_then(|r| r.get("uid")).and_then(Value::as_str).unwrap_or("").to_string();
    let invalid = |message: &str| BadReview::Invalid { uid: uid.clone(), message: message.to_string() };
    if review.get("apiVersion").and_then(Value::as_str) != Some("admission.k8s.io/v1") {
        return Err(invalid("expected apiVersion admission.k8s.io/v1"));
    }
    if review.get("kind").and_then(Value::as_str) != Some("AdmissionReview") {
        return Err(invalid("expected kind AdmissionReview"));
    }
    let Some(request) = request.filter(|r| r.is_object()) else {
        return Err(invalid("the AdmissionReview has no request"));
    };
    if uid.is_empty() {
        return Err(invalid("the AdmissionReview's request has no uid"));
    }
    let text = |k: &str| request.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let object = request.get("object").filter(|o| o.is_object()).or_else(|| request.get("oldObject"));
    let object_str = |k: &str| object.and_then(|o| o.get(k)).and_then(Value::as_str).unwrap_or("");
    let asked = Asked {
        uid: uid.clone(),
        operation: text("operation"),
        group: match request.pointer("/kind/group").and_then(Value::as_str) {
            Some(group) => group.to_string(),
            // No `request.kind` (not from an API server): the object's own apiVersion says it.
            None => object_str("apiVersion").rsplit_once('/').map_or("", |(g, _)| g).to_string(),
        },
        kind: request.pointer("/kind/kind").and_then(Value::as_str).unwrap_or_else(|| object_str("kind")).to_string(),
        dry_run: request.get("dryRun").and_then(Value::as_bool).unwrap_or(false),
    };
    // What is reviewed (and what is skipped as a kind no rule covers) is decided by `request.kind`;
    // an object of another kind would pass unreviewed. An API server never sends one.
    let object_kind = object_str("kind");
    if !object_kind.is_empty() && object_kind != asked.kind {
        let short = |text: &str| policy_core::pattern::excerpt(text, 64).into_owned();
        return Err(invalid(&format!(
            "request.kind is `{}` but the object is a `{}`",
            short(&asked.kind),
            short(object_kind)
        )));
    }
    Ok((review, asked))
}

/// Audit annotation keys as the API server accepts them from a webhook (it prefixes them with the
/// webhook's name, so they carry no domain of their own).
fn annotation_key(key: &str) -> &str {
    match key {
        DENY_ANNOTATION => "deny",
        WARN_ANNOTATION => "warn",
        AUDIT_ANNOTATION => "audit",
        other => other.rsplit('/').next().unwrap_or(other),
    }
}

/// The AdmissionReview carrying `response`, its audit annotation keys as a webhook may send them.
pub fn answer(mut response: AdmissionResponse) -> Value {
    response.audit_annotations = std::mem::take(&mut response.audit_annotations)
        .into_iter()
        .map(|(k, v)| (annotation_key(&k).to_string(), v))
        .collect();
    envelope(json!(response))
}

fn envelope(response: Value) -> Value {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_full(body: &[u8]) -> Result<(Value, Asked), BadReview> {
        parse(body, &|b| serde_json::from_slice(b))
    }

    #[test]
    fn the_rule_sets_decode_keeps_the_envelope_and_skips_what_no_rule_reads() {
        let policy = policy_core::Policy::default_rules().unwrap();
        let body = review(json!({"uid": "u7", "operation": "CREATE", "dryRun": true,
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "userInfo": {"username": "alice"}, "object": {"kind": "Deployment", "metadata": {"name": "a", "managedFields": []}}}));
        let (value, asked) = parse(&body, &|b| policy.parse_admission(b)).unwrap();
        assert_eq!((asked.uid.as_str(), asked.kind.as_str(), asked.dry_run), ("u7", "Deployment", true));
        assert!(value["request"].get("userInfo").is_none());
        assert!(value["request"]["object"]["metadata"].get("managedFields").is_none());
        assert_eq!(parse_full(&body).unwrap().1, asked);
    }

    fn review(request: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}))
            .unwrap()
    }

    #[test]
    fn envelopes_are_checked_and_uids_echoed() {
        let (_, asked) = parse_full(&review(
            json!({"uid": "u1", "operation": "CREATE", "kind": {"group": "apps", "kind": "Deployment"}, "dryRun": true}),
        ))
        .unwrap();
        assert_eq!(
            asked,
            Asked {
                uid: "u1".into(),
                operation: "CREATE".into(),
                group: "apps".into(),
                kind: "Deployment".into(),
                dry_run: true
            }
        );
        assert!(matches!(parse_full(b"{not json"), Err(BadReview::NotJson(_))));
        let (_, bare) = parse_full(&review(
            json!({"uid": "u3", "operation": "CREATE", "object": {"apiVersion": "apps/v1", "kind": "Deployment"}}),
        ))
        .unwrap();
        assert_eq!((bare.group.as_str(), bare.kind.as_str()), ("apps", "Deployment"), "kind from the object");
        let wrong = serde_json::to_vec(
            &json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {"uid": "u2"}}),
        )
        .unwrap();
        assert_eq!(
            parse_full(&wrong),
            Err(BadReview::Invalid { uid: "u2".into(), message: "expected apiVersion admission.k8s.io/v1".into() })
        );
        assert!(
            matches!(parse_full(&review(json!({"operation": "CREATE"}))), Err(BadReview::Invalid { message, .. }) if message.contains("no uid"))
        );
        // The kind the request names decides what is reviewed: an object of another kind is refused.
        let disguised = review(json!({"uid": "u4", "operation": "CREATE", "kind": {"group": "", "kind": "ConfigMap"},
            "object": {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}}}));
        assert_eq!(
            parse_full(&disguised),
            Err(BadReview::Invalid {
                uid: "u4".into(),
                message: "request.kind is `ConfigMap` but the object is a `Service`".into()
            })
        );
    }

    #[test]
    fn answers_carry_status_warnings_and_short_annotation_keys() {
        let decided = AdmissionResponse {
            allowed: false,
            audit_annotations: [(DENY_ANNOTATION.to_string(), "istio-port-name".to_string())].into(),
            status: Some(policy_core::admission::Status {
                code: 403,
                message: "istio-port-name: bad (at spec.ports[0].name)".into(),
            }),
            uid: json!("u1"),
            warnings: vec!["trace: missing".into()],
            ..AdmissionResponse::default()
        };
        let a = answer(decided);
        assert_eq!((&a["apiVersion"], &a["kind"]), (&json!("admission.k8s.io/v1"), &json!("AdmissionReview")));
        assert_eq!(a["response"]["uid"], "u1");
        assert_eq!(a["response"]["allowed"], false);
        assert_eq!(a["response"]["status"]["code"], 403);
        assert_eq!(a["response"]["warnings"][0], "trace: missing");
        assert_eq!(a["response"]["auditAnnotations"], json!({"deny": "istio-port-name"}));
        let f = answer(AdmissionResponse::unevaluated(json!("u2"), false, "deadline"));
        assert_eq!(f["response"]["allowed"], true);
        assert!(f["response"]["warnings"][0].as_str().unwrap().contains("deadline"));
        let closed = answer(AdmissionResponse::unevaluated(json!("u2"), true, "x"));
        assert_eq!(closed["response"]["status"]["code"], 500);
    }
}
