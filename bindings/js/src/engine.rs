//! What the JavaScript package does, in plain Rust (tested natively): a RuleSet compiled once, and
//! text or JSON in, JSON out. The answers have the shapes meshguard's other front ends print:
//! `check` the findings of `meshguard check --format json` (without `file`: one text is checked),
//! `reviewAdmission` the AdmissionResponse the admission hosts send, `decide` what the Envoy
//! filter decides.

use policy_core::decode::json_value;
use policy_core::{Action, ClusterView, MemoryBuckets, Policy, Request, Target, Unseen};
use serde_json::{json, Value};

pub struct Engine {
    policy: Policy,
    /// Rate-limit buckets of this RuleSet's HTTP rules, kept between `decide` calls.
    buckets: MemoryBuckets,
}

impl Engine {
    /// Errors read as `meshguard check --rules` prints them after the file name:
    /// `line 9: rule `ports`: spec.rules[0].params.protocol: unknown field ...`.
    pub fn new(text: &str) -> Result<Engine, String> {
        let policy = Policy::from_text(text).map_err(|e| match e.line() {
            0 => e.to_string(),
            _ => format!("line {e}"),
        })?;
        Ok(Engine { policy, buckets: MemoryBuckets::default() })
    }

    pub fn built_in() -> Result<Engine, String> {
        let policy = Policy::default_rules().map_err(|e| format!("built-in rule set: {e}"))?;
        Ok(Engine { policy, buckets: MemoryBuckets::default() })
    }

    /// Reviews every Kubernetes object of a YAML or JSON stream together (objects without
    /// `metadata.namespace` in `namespace`), findings placed at their field's line and column,
    /// in the order of the text ([`Policy::review_text`]). A stream that does not parse is an
    /// error at its line.
    pub fn check(&self, manifests: &str, namespace: &str) -> Result<String, String> {
        let namespace = if namespace.is_empty() { "default" } else { namespace };
        let reviewed = self
            .policy
            .review_text(manifests, namespace)
            .map_err(|e| format!("line {}, column {}: {}", e.at.line, e.at.column, e.message))?;
        serde_json::to_string(&json!({ "findings": reviewed.findings, "objects": reviewed.objects }))
            .map_err(|e| e.to_string())
    }

    /// `meshguard fix` over one YAML stream: `{"text", "applied": [...], "left": [...]}`; `text`
    /// is the stream with every fix written into it (every untouched byte kept), `applied` the
    /// patches written, `left` the findings without a fix, or whose fix was not written, with why.
    pub fn fix(&self, manifests: &str, namespace: &str) -> Result<String, String> {
        let namespace = if namespace.is_empty() { "default" } else { namespace };
        let fixed = policy_core::fix::fix_text(&self.policy, manifests, namespace)?;
        let applied: Vec<Value> = fixed
            .applied
            .iter()
            .filter_map(|f| {
                let fix = f.fix.as_ref()?;
                Some(json!({"rule": f.rule, "kind": f.kind, "namespace": f.namespace, "name": f.name, "path": f.path,
                            "description": fix.description, "patch": fix.patch}))
            })
            .collect();
        let left: Vec<Value> = fixed
            .left
            .iter()
            .map(|(f, why)| {
                let why = why.clone().unwrap_or_else(|| self.policy.why_not_fixed(f));
                json!({"rule": f.rule, "kind": f.kind, "namespace": f.namespace, "name": f.name, "path": f.path,
                       "message": f.message, "why": why})
            })
            .collect();
        serde_json::to_string(&json!({"text": fixed.text, "applied": applied, "left": left})).map_err(|e| e.to_string())
    }

    /// `{"allowed", "rule", "message", "status", "grpcStatus", "warn": [rule ids]}`.
    pub fn decide(&mut self, request: &str, now_ms: u64) -> Result<String, String> {
        let request: Request = serde_json::from_str(request).map_err(|e| format!("the request: {e}"))?;
        let decision = self.policy.decide(&request, now_ms, &mut self.buckets)?;
        let warn: Vec<&str> = decision
            .fired
            .iter()
            .filter(|(_, action)| *action == Action::Warn)
            .filter_map(|(index, _)| self.policy.http_rule(*index).map(|r| r.id.as_str()))
            .collect();
        let answer = match &decision.denied {
            None => json!({"allowed": true, "warn": warn}),
            Some(d) => json!({"allowed": false, "rule": d.rule, "message": d.message, "status": d.status,
                              "grpcStatus": d.grpc_status, "warn": warn}),
        };
        Ok(answer.to_string())
    }

    /// The AdmissionResponse for an AdmissionReview, an AdmissionRequest or a bare object, plus
    /// the findings behind it. `cluster`: a JSON array of the objects already in the cluster,
    /// for cross-object rules (empty text: no view of the cluster).
    pub fn review_admission(&self, review: &str, cluster: &str) -> Result<String, String> {
        let review = json_value(review).map_err(|e| format!("the AdmissionReview: {e}"))?;
        let cluster: Option<Vec<Value>> = match cluster.trim() {
            "" => None,
            text => match json_value(text).map_err(|e| format!("the cluster objects: {e}"))? {
                Value::Array(objects) => Some(objects),
                _ => return Err("the cluster objects: not a JSON list".into()),
            },
        };
        let verdict = match &cluster {
            Some(objects) => self.policy.review_admission_in(&review, ClusterView { objects, unseen: Unseen::Nothing }),
            None => self.policy.review_admission(&review),
        };
        let uid = policy_core::admission::admission_request(&review).uid();
        Ok(json!({"response": verdict.response(uid), "findings": verdict.findings}).to_string())
    }

    pub fn rules(&self) -> String {
        let rules: Vec<Value> = self
            .policy
            .rules()
            .map(|r| json!({"id": r.id, "check": r.check, "action": r.action, "description": r.description}))
            .collect();
        Value::Array(rules).to_string()
    }
}

/// The check registry, with the docs `meshguard rules explain` prints.
pub fn checks() -> String {
    let checks: Vec<Value> = policy_core::registry()
        .iter()
        .map(|c| {
            json!({
                "id": c.id,
                "target": match c.target { Target::Kubernetes => "kubernetes", Target::Http => "http" },
                "summary": c.summary,
                "params": c.params.iter().map(|p| json!({"name": p.name, "type": p.ty, "default": p.default, "description": p.description})).collect::<Vec<_>>(),
                "exampleParams": c.example_params,
                "passingExample": c.passing_example,
                "failingExample": c.failing_example,
            })
        })
        .collect();
    Value::Array(checks).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy_core::yaml;

    const BAD: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: api\n  namespace: shop\nspec:\n  ports:\n  - name: web\n    port: 80\n";

    #[test]
    fn check_places_findings_at_line_and_column() {
        let engine = Engine::built_in().unwrap();
        let answer: Value = serde_json::from_str(&engine.check(BAD, "default").unwrap()).unwrap();
        let f = &answer["findings"][0];
        assert_eq!(
            (&f["rule"], &f["line"], &f["column"], &f["path"]),
            (&json!("istio-port-name"), &json!(8), &json!(5), &json!("spec.ports[0].name"))
        );
        assert_eq!((&f["action"], &f["kind"], &f["namespace"]), (&json!("deny"), &json!("Service"), &json!("shop")));
        assert!(engine.check("a: [", "default").unwrap_err().starts_with("line 2, column 1: "));
    }

    #[test]
    fn rule_set_errors_name_line_rule_and_field() {
        let text = "apiVersion: meshguard.dev/v1alpha1\nkind: RuleSet\nmetadata: {name: t}\nspec:\n  rules:\n  - {id: ports, check: istio-port-name, params: {protocol: [http]}}\n";
        let e = Engine::new(text).err().unwrap();
        assert!(e.starts_with("line 6: rule `ports`: spec.rules[0].params.protocol: unknown field `protocol`"), "{e}");
    }

    #[test]
    fn decide_and_review_admission() {
        let mut engine = Engine::built_in().unwrap();
        let huge = "x".repeat(20_000);
        let request = json!({"method": "GET", "path": "/", "authority": "a", "headers": {"x-big": huge}}).to_string();
        let d: Value = serde_json::from_str(&engine.decide(&request, 0).unwrap()).unwrap();
        assert_eq!(d["allowed"], false, "{d}");
        let ok = json!({"method": "GET", "path": "/", "authority": "a", "headers": {}}).to_string();
        assert_eq!(serde_json::from_str::<Value>(&engine.decide(&ok, 0).unwrap()).unwrap()["allowed"], true);
        let object: Value = yaml::parse_one(BAD).unwrap().value;
        let review = json!({"request": {"uid": "u1", "operation": "CREATE", "object": object}}).to_string();
        let r: Value = serde_json::from_str(&engine.review_admission(&review, "").unwrap()).unwrap();
        assert_eq!((&r["response"]["uid"], &r["response"]["allowed"]), (&json!("u1"), &json!(false)));
        assert_eq!(r["findings"][0]["rule"], "istio-port-name");
        assert!(checks().contains("\"id\":\"istio-port-name\""));
    }
}
