//! The AdmissionResponse every admission host sends: built once, here, from a verdict (or for a
//! request that could not be evaluated), then written as it is (the webhook, the OPA module, the
//! JavaScript package) or in a host's own shape ([`super::kubewarden`]).

use super::AdmissionVerdict;
use crate::finding::Action;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// `admission.k8s.io/v1` AdmissionResponse. Fields are declared in the order they are written
/// (alphabetical, as the untyped answers were), so answers stay byte-identical.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionResponse {
    pub allowed: bool,
    /// The ids of the rules that fired, per action ([`DENY_ANNOTATION`], ...), and of the rules
    /// that decided without their cluster context.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub audit_annotations: BTreeMap<String, String>,
    /// Present when the request is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// The request's `uid`, echoed as sent (`""` when it has none).
    #[serde(default)]
    pub uid: Value,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// A mutating review's RFC 6902 patch, base64-encoded as the API server reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    /// `JSONPatch` when there is a patch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<String>,
}

/// Why a request is refused: an HTTP-like code and the message `kubectl` shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub code: u16,
    pub message: String,
}

impl AdmissionVerdict {
    /// The response for this verdict: a denial with code 403 and one `rule: message (at path)` per
    /// deny finding, warnings within the API server's limits, and the audit annotations.
    pub fn response(&self, uid: Value) -> AdmissionResponse {
        let mut audit_annotations = BTreeMap::new();
        for (key, action) in
            [(DENY_ANNOTATION, Action::Deny), (WARN_ANNOTATION, Action::Warn), (AUDIT_ANNOTATION, Action::Audit)]
        {
            let ids = self.rule_ids(action);
            if !ids.is_empty() {
                audit_annotations.insert(key.to_string(), ids.join(","));
            }
        }
        if !self.without_context.is_empty() {
            audit_annotations.insert(WITHOUT_CONTEXT_ANNOTATION.to_string(), self.without_context.join(","));
        }
        AdmissionResponse {
            allowed: self.allowed,
            audit_annotations,
            status: self.denial_message().map(|message| Status { code: 403, message }),
            uid,
            warnings: self.warnings(),
            ..AdmissionResponse::default()
        }
    }
}

impl AdmissionResponse {
    /// Admits the request with nothing to say (an operation or kind no rule reviews).
    pub fn allow(uid: Value) -> AdmissionResponse {
        AdmissionResponse { allowed: true, uid, ..Default::default() }
    }

    /// Refuses the request with `code` and `message` (a malformed review: 400).
    pub fn refuse(uid: Value, code: u16, message: impl Into<String>) -> AdmissionResponse {
        AdmissionResponse { status: Some(Status { code, message: message.into() }), uid, ..Default::default() }
    }

    /// A request that could not be evaluated (`why`), answered by the failure policy: refused with
    /// code 500 when `fail_closed`, otherwise admitted with a warning that says so.
    pub fn unevaluated(uid: Value, fail_closed: bool, why: &str) -> AdmissionResponse {
        let message = format!("meshguard could not evaluate this request: {why}");
        if fail_closed {
            AdmissionResponse::refuse(uid, 500, message)
        } else {
            AdmissionResponse { warnings: fit_warnings(vec![message]), ..AdmissionResponse::allow(uid) }
        }
    }

    /// Ids of the rules that fired with `action`, as the response records them (read back from
    /// its audit annotations, which is all a response from a module carries).
    pub fn rule_ids(&self, action: Action) -> impl Iterator<Item = &str> {
        let key = match action {
            Action::Deny => DENY_ANNOTATION,
            Action::Warn => WARN_ANNOTATION,
            Action::Audit => AUDIT_ANNOTATION,
        };
        self.audit_annotations.get(key).into_iter().flat_map(|ids| ids.split(',')).filter(|id| !id.is_empty())
    }
}

/// Audit annotation keys listing the ids of the rules that fired, for audit logs and tests.
pub const DENY_ANNOTATION: &str = "meshguard.dev/deny";
pub const WARN_ANNOTATION: &str = "meshguard.dev/warn";
pub const AUDIT_ANNOTATION: &str = "meshguard.dev/audit";
/// The ids of the rules whose fixes a mutating review applied.
pub const MUTATED_ANNOTATION: &str = "meshguard.dev/mutated";

impl super::AdmissionMutation {
    /// The mutating review's answer: admitted, with the patch (when there is one) and a warning
    /// per fix naming what was changed; the mutated rules' ids in an audit annotation. Whether the
    /// object is then allowed is the validating review's to say.
    pub fn response(&self, uid: Value) -> AdmissionResponse {
        if !self.denied.is_empty() {
            // A MutatingAdmissionPolicy failed under `failurePolicy: Fail`: denied as the API server
            // denies it.
            let lines: Vec<String> = self.denied.iter().map(|f| f.message.clone()).collect();
            let message = super::fit_lines(lines, MAX_DENIAL_LINE_CHARS, MAX_DENIAL_BYTES, 2, "denial").join("; ");
            let mut response = AdmissionResponse::refuse(uid, 403, message);
            let ids: Vec<&str> = self.denied.iter().map(|f| f.rule.as_str()).collect();
            response.audit_annotations.insert(DENY_ANNOTATION.to_string(), ids.join(","));
            return response;
        }
        let mut response = AdmissionResponse::allow(uid);
        if self.patch.0.is_empty() {
            return response;
        }
        use base64::Engine as _;
        let json = serde_json::to_vec(&self.patch).unwrap_or_default();
        response.patch = Some(base64::engine::general_purpose::STANDARD.encode(json));
        response.patch_type = Some("JSONPatch".into());
        let mut rules: Vec<&str> = self.fixed.iter().map(|f| f.rule.as_str()).collect();
        rules.dedup();
        response.audit_annotations.insert(MUTATED_ANNOTATION.to_string(), rules.join(","));
        response.warnings = super::fit_warnings(
            self.fixed
                .iter()
                .map(|f| {
                    let what = f.fix.as_ref().map_or("", |x| x.description.as_str());
                    format!("{}: meshguard changed {} `{}`: {what}", f.rule, f.kind, f.name)
                })
                .collect(),
        );
        response
    }
}
/// Ids of the rules that needed cluster objects the host did not supply.
pub const WITHOUT_CONTEXT_ANNOTATION: &str = "meshguard.dev/without-context";

/// The API server truncates a warning over 256 characters and drops warnings past 4 KiB in all.
pub const MAX_WARNING_CHARS: usize = 256;
pub const MAX_WARNINGS_BYTES: usize = 4096;

/// `lines` within the API server's warning limits: a long entry is shortened at a word, and
/// entries that do not fit become one `+N more` entry.
pub fn fit_warnings(lines: Vec<String>) -> Vec<String> {
    fit_lines(lines, MAX_WARNING_CHARS, MAX_WARNINGS_BYTES, 0, "warning")
}

/// A denial's `status.message` holds one line per deny finding: a tenant object with thousands of
/// mistakes must not make an answer larger than its request. Each line is cut at this many
/// characters, and the whole message at [`MAX_DENIAL_BYTES`].
pub const MAX_DENIAL_LINE_CHARS: usize = 1024;
pub const MAX_DENIAL_BYTES: usize = 8 * 1024;

/// `lines`, each in at most `max_chars` characters (shortened at a word) and together in at most
/// `max_bytes`, counting `separator` bytes per line for what joins them: the lines that do not fit
/// become one `+N more <noun>s` entry, for which room is kept so that adding it never breaks the
/// total.
pub fn fit_lines(lines: Vec<String>, max_chars: usize, max_bytes: usize, separator: usize, noun: &str) -> Vec<String> {
    const MORE_ROOM: usize = 64;
    let total = lines.len();
    let mut out = Vec::with_capacity(total.min(64));
    let mut bytes = 0;
    for line in lines {
        let line = shorten(line, max_chars);
        let last = out.len() + 1 == total;
        let budget = if last { max_bytes } else { max_bytes - MORE_ROOM };
        if bytes + line.len() + separator > budget {
            break;
        }
        bytes += line.len() + separator;
        out.push(line);
    }
    if out.len() < total {
        let more = total - out.len();
        out.push(format!(
            "+{more} more {noun}{} (all rule ids are in the audit annotations)",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Finding;
    use crate::FieldPath;

    fn finding(rule: &str, action: Action) -> Finding {
        Finding {
            rule: rule.into(),
            check: "",
            action,
            message: "m".into(),
            kind: "Service".into(),
            namespace: "shop".into(),
            name: "api".into(),
            path: FieldPath::root(),
            object_index: 0,
            fix: None,
        }
    }

    #[test]
    fn a_verdict_answers_with_status_warnings_and_the_rule_ids_it_fired() {
        let verdict = AdmissionVerdict {
            allowed: false,
            findings: vec![finding("a", Action::Deny), finding("b", Action::Warn), finding("c", Action::Audit)],
            without_context: vec!["d".into()],
        };
        let response = verdict.response(Value::from("u1"));
        assert_eq!(
            serde_json::to_string(&response).unwrap(),
            r#"{"allowed":false,"auditAnnotations":{"meshguard.dev/audit":"c","meshguard.dev/deny":"a","meshguard.dev/warn":"b","meshguard.dev/without-context":"d"},"status":{"code":403,"message":"a: m"},"uid":"u1","warnings":["b: m"]}"#
        );
        for (action, id) in [(Action::Deny, "a"), (Action::Warn, "b"), (Action::Audit, "c")] {
            assert_eq!(response.rule_ids(action).collect::<Vec<_>>(), [id]);
        }
        let back: AdmissionResponse = serde_json::from_str(&serde_json::to_string(&response).unwrap()).unwrap();
        assert_eq!(back, response);
        let allowed = AdmissionVerdict { allowed: true, ..Default::default() }.response(Value::from(""));
        assert_eq!(serde_json::to_string(&allowed).unwrap(), r#"{"allowed":true,"uid":""}"#);
        assert_eq!(allowed.rule_ids(Action::Deny).count(), 0);
    }

    /// A Service with 20,000 bad ports: one line per finding made a 3.3 MB answer to a 323 KiB
    /// request; the denial stays within its bound and says how many more there are.
    #[test]
    fn a_denial_of_many_findings_stays_within_its_bound() {
        let findings: Vec<Finding> = (0..20_000)
            .map(|i| Finding {
                path: FieldPath::parse(&format!("spec.ports[{i}].name")).unwrap(),
                ..finding("p", Action::Deny)
            })
            .collect();
        let verdict = AdmissionVerdict { allowed: false, findings, without_context: vec![] };
        let response = verdict.response(Value::from("u"));
        let message = response.status.unwrap().message;
        assert!(message.len() <= MAX_DENIAL_BYTES, "{} bytes", message.len());
        assert!(message.starts_with("p: m (at spec.ports[0].name); p: m (at spec.ports[1].name)"), "{message}");
        let more: usize = message.rsplit("; +").next().unwrap().split(' ').next().unwrap().parse().unwrap();
        assert_eq!(message.matches("(at spec.ports[").count() + more, 20_000, "every finding is shown or counted");
        assert!(message.ends_with("more denials (all rule ids are in the audit annotations)"), "{message}");
        assert_eq!(response.audit_annotations[DENY_ANNOTATION], "p");
        let long = fit_lines(vec!["word ".repeat(1000)], MAX_DENIAL_LINE_CHARS, MAX_DENIAL_BYTES, 2, "denial");
        assert!(long[0].chars().count() <= MAX_DENIAL_LINE_CHARS && long[0].ends_with('…'));
    }

    #[test]
    fn an_unevaluated_request_follows_the_failure_policy() {
        let open = AdmissionResponse::unevaluated(Value::from("u2"), false, "deadline");
        assert!(open.allowed && open.status.is_none());
        assert!(open.warnings[0].contains("could not evaluate this request: deadline"), "{:?}", open.warnings);
        let closed = AdmissionResponse::unevaluated(Value::from("u2"), true, "deadline");
        assert_eq!((closed.allowed, closed.status.map(|s| s.code)), (false, Some(500)));
        assert_eq!(AdmissionResponse::refuse(Value::from("u3"), 400, "bad").status.unwrap().message, "bad");
    }
}
