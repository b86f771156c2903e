//! Kubewarden's ValidationResponse: the admission response in the shape a waPC policy answers
//! `validate` with. The guest writes it from an [`AdmissionResponse`]; a waPC host (meshguard's
//! webhook with the wasm engine) reads it back into one, so both sides share this one shape.

use super::{fit_warnings, AdmissionOutcome, AdmissionResponse, Status};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct ValidationResponse {
    pub accepted: bool,
    pub message: Option<String>,
    pub code: Option<u16>,
    pub warnings: Option<Vec<String>>,
    pub audit_annotations: Option<BTreeMap<String, String>>,
    pub mutated_object: Option<Value>,
}

impl From<&AdmissionResponse> for ValidationResponse {
    fn from(r: &AdmissionResponse) -> Self {
        ValidationResponse {
            accepted: r.allowed,
            message: r.status.as_ref().map(|s| s.message.clone()),
            code: r.status.as_ref().map(|s| s.code),
            warnings: (!r.warnings.is_empty()).then(|| r.warnings.clone()),
            audit_annotations: (!r.audit_annotations.is_empty()).then(|| r.audit_annotations.clone()),
            mutated_object: None,
        }
    }
}

impl ValidationResponse {
    /// The answer to one `validate` call of a rule set that mutates: the verdict on the object
    /// after the mutation, carrying that object as `mutated_object` when it is accepted and
    /// changed (Kubewarden applies it only for a policy deployed with `mutating: true`, and rejects
    /// the request otherwise); what the mutation changed is in the warnings and audit annotations.
    pub fn of_outcome(outcome: &AdmissionOutcome, uid: Value) -> Self {
        let mut response = outcome.verdict.response(uid.clone());
        let mutated = outcome.mutation.response(uid);
        let mut warnings = mutated.warnings;
        warnings.append(&mut response.warnings);
        response.warnings = fit_warnings(warnings);
        response.audit_annotations.extend(mutated.audit_annotations);
        let mut answer = ValidationResponse::from(&response);
        if answer.accepted {
            answer.mutated_object = outcome.mutation.object.clone();
        }
        answer
    }

    /// The AdmissionResponse answering request `uid` with this: a refusal keeps its code and
    /// message (403 and a generic message when the policy gave none).
    pub fn into_response(self, uid: Value) -> AdmissionResponse {
        let status = (!self.accepted).then(|| Status {
            code: self.code.unwrap_or(403),
            message: self.message.unwrap_or_else(|| "denied by meshguard".into()),
        });
        AdmissionResponse {
            allowed: self.accepted,
            audit_annotations: self.audit_annotations.unwrap_or_default(),
            status,
            uid,
            warnings: self.warnings.unwrap_or_default(),
            ..AdmissionResponse::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_survives_the_round_trip_through_kubewardens_shape() {
        let response = AdmissionResponse {
            allowed: false,
            audit_annotations: [("meshguard.dev/deny".to_string(), "a".to_string())].into(),
            status: Some(Status { code: 403, message: "a: m".into() }),
            uid: Value::from("u1"),
            warnings: vec!["b: w".into()],
            ..AdmissionResponse::default()
        };
        let wire = serde_json::to_value(ValidationResponse::from(&response)).unwrap();
        assert_eq!(
            wire,
            serde_json::json!({"accepted": false, "message": "a: m", "code": 403, "warnings": ["b: w"],
                               "audit_annotations": {"meshguard.dev/deny": "a"}, "mutated_object": null})
        );
        let read: ValidationResponse = serde_json::from_value(wire).unwrap();
        assert_eq!(read.into_response(Value::from("u1")), response);
        let terse = ValidationResponse { accepted: false, ..Default::default() }.into_response(Value::from(""));
        assert_eq!(terse.status, Some(Status { code: 403, message: "denied by meshguard".into() }));
        let allowed = ValidationResponse::from(&AdmissionResponse::allow(Value::from("")));
        assert_eq!(allowed, ValidationResponse { accepted: true, ..Default::default() });
    }
}
