//! Policies written for other engines, run as ValidatingAdmissionPolicies wherever those run
//! (`check --policies`, `test` suites, the webhook, the Kubewarden and OPA modules, JavaScript):
//!
//! - **Kyverno `ValidatingPolicy`** (`policies.kyverno.io` v1, v1beta1, v1alpha1; and
//!   `NamespacedValidatingPolicy`, applying in its own namespace): its spec is a VAP's, plus
//!   `validationActions` (default `[Deny]`, as Kyverno's `ValidationActions()`) and `autogen`.
//!   Autogen is Kyverno's: on unless `autogen.podControllers.controllers` is `[]`, for a policy
//!   matching only `pods` (v1, core group, no resourceNames, excludes or objectSelector); each
//!   pod-controller group gets a copy whose expressions read the template (`object.spec` →
//!   `object.spec.template.spec`, `object.metadata` → `object.spec.template.metadata`, but not
//!   `object.metadata.namespace`; a CronJob's under `spec.jobTemplate.spec.template`), as Kyverno
//!   rewrites the policy's text. Out of scope: `evaluation.mode: JSON` and Kyverno's extra CEL
//!   libraries (http, resource, globalContext, image, ...), which fail the type check by name.
//! - **Gatekeeper `ConstraintTemplate`s** whose code uses the `K8sNativeValidation` engine, with
//!   their Constraints: one policy per Constraint, its `parameters` inlined as
//!   `variables.params`, `variables.anyObject` as Gatekeeper defines it, `spec.match` as
//!   meshguard's rule `match` (the same fields), `enforcementAction` deny / warn / dryrun (and
//!   `scoped` with a `vap.k8s.io` or `*` point) as Deny / Warn / Audit. Rego-only templates are
//!   refused: they need OPA.
//!
//! The translation happens when the RuleSet loads; an error names the original object's field.

use crate::checks::native::any_glob;
use crate::vap::{name_of, VapError};
use serde_json::{json, Map, Value};

const VAP_API: &str = "admissionregistration.k8s.io/v1";
const KYVERNO_GROUP: &str = "policies.kyverno.io/";
const GATEKEEPER_TEMPLATES: &str = "templates.gatekeeper.sh/";
const GATEKEEPER_CONSTRAINTS: &str = "constraints.gatekeeper.sh/";

/// Where a translated object came from: its index in the input, and how its fields map back.
#[derive(Clone, Debug)]
pub struct Origin {
    pub index: usize,
    /// `(translated field, original field)` pairs: a template's policy's `spec.validations` is
    /// `spec.targets[0].code[1].source.validations` in the template, its `spec.variables[2]` the
    /// source's `variables[0]` (after the two Gatekeeper adds).
    pub fields: Vec<(String, String)>,
    /// The original object's name, where the translated one has another.
    pub name: Option<String>,
}

impl Origin {
    /// A translated object's error, located in the original object.
    pub fn locate(&self, mut e: VapError) -> VapError {
        e.index = self.index;
        if let Some(name) = &self.name {
            e.name = Some(name.clone());
        }
        for (from, to) in &self.fields {
            if let Some(rest) = e.field.strip_prefix(from.as_str()) {
                if rest.is_empty() || rest.starts_with(['.', '[']) {
                    e.field = format!("{to}{rest}");
                    break;
                }
            }
        }
        e
    }
}

fn api_version(v: &Value) -> &str {
    v.get("apiVersion").and_then(Value::as_str).unwrap_or("")
}

fn kind(v: &Value) -> &str {
    v.get("kind").and_then(Value::as_str).unwrap_or("")
}

fn is_kyverno_policy(v: &Value) -> bool {
    api_version(v).starts_with(KYVERNO_GROUP) && matches!(kind(v), "ValidatingPolicy" | "NamespacedValidatingPolicy")
}

fn is_template(v: &Value) -> bool {
    api_version(v).starts_with(GATEKEEPER_TEMPLATES) && kind(v) == "ConstraintTemplate"
}

fn is_constraint(v: &Value) -> bool {
    api_version(v).starts_with(GATEKEEPER_CONSTRAINTS)
}

/// Whether the objects hold anything to translate (most rule sets do not: no copy then).
pub fn any(objects: &[Value]) -> bool {
    objects.iter().any(|v| is_kyverno_policy(v) || is_template(v) || is_constraint(v))
}

/// The objects with Kyverno policies and Gatekeeper templates and constraints replaced by
/// ValidatingAdmissionPolicies and bindings, each with where it came from.
pub fn translate(objects: &[Value]) -> Result<(Vec<Value>, Vec<Origin>), VapError> {
    let mut out = Vec::new();
    let mut origins = Vec::new();
    for (index, v) in objects.iter().enumerate() {
        let origin = Origin { index, fields: Vec::new(), name: None };
        if is_kyverno_policy(v) {
            for object in kyverno(index, v)? {
                out.push(object);
                origins.push(origin.clone());
            }
        } else if is_constraint(v) {
            for (object, field) in gatekeeper(index, v, objects)? {
                out.push(object);
                let origin = match field {
                    Some((index, name, fields)) => Origin { index, fields, name: Some(name) },
                    None => origin.clone(),
                };
                origins.push(origin);
            }
        } else if !is_template(v) {
            out.push(v.clone());
            origins.push(origin);
        }
    }
    Ok((out, origins))
}

fn error(index: usize, name: Option<&str>, field: &str, message: impl Into<String>) -> VapError {
    VapError { index, name: name.map(str::to_string), field: field.to_string(), message: message.into() }
}

fn named(list: Option<&Value>) -> Vec<Value> {
    list.and_then(Value::as_array).cloned().unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Kyverno

/// Kyverno's autogen targets: (config, controllers, API group/version, where the template sits).
const AUTOGEN: &[(&str, &[&str], &str, &str)] = &[
    ("defaults", &["daemonsets", "deployments", "replicasets", "statefulsets"], "apps", "spec.template"),
    ("defaults", &["jobs"], "batch", "spec.template"),
    ("cronjobs", &["cronjobs"], "batch", "spec.jobTemplate.spec.template"),
];

fn kyverno(index: usize, v: &Value) -> Result<Vec<Value>, VapError> {
    let name = name_of(v).filter(|n| !n.is_empty());
    let Some(name) = name else {
        return Err(error(index, None, "metadata.name", format!("a {} needs a name", kind(v))));
    };
    let fail = |field: &str, message: String| error(index, Some(name), field, message);
    let spec = v.get("spec").and_then(Value::as_object).cloned().unwrap_or_default();
    const KNOWN: &[&str] = &[
        "matchConstraints",
        "matchConditions",
        "variables",
        "validations",
        "auditAnnotations",
        "failurePolicy",
        "validationActions",
        "webhookConfiguration",
        "evaluation",
        "autogen",
    ];
    if let Some(unknown) = spec.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(fail(
            &format!("spec.{unknown}"),
            format!("unknown field `{unknown}`, expected one of {}", KNOWN.join(", ")),
        ));
    }
    if let Some(mode) = spec.get("evaluation").and_then(|e| e.get("mode")).and_then(Value::as_str) {
        if mode != "Kubernetes" {
            return Err(fail("spec.evaluation.mode", format!("`{mode}`: only Kubernetes objects are evaluated here")));
        }
    }
    let actions = match spec.get("validationActions") {
        None => json!(["Deny"]),
        Some(Value::Array(a)) if a.is_empty() => json!(["Deny"]),
        Some(a) => a.clone(),
    };
    let mut base = Map::new();
    for key in ["matchConstraints", "matchConditions", "variables", "validations", "auditAnnotations", "failurePolicy"]
    {
        if let Some(value) = spec.get(key) {
            base.insert(key.into(), value.clone());
        }
    }
    if kind(v) == "NamespacedValidatingPolicy" {
        let namespace = v.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default");
        let mut conditions = named(base.get("matchConditions"));
        conditions.insert(0, json!({"name": "policy-namespace", "expression": format!("request.namespace == {}", crate::checks::native::lit(namespace))}));
        base.insert("matchConditions".into(), Value::Array(conditions));
    }
    let policy_name = format!("vpol-{name}");
    let mut out = vec![
        policy(&policy_name, name, Value::Object(base.clone())),
        binding(&format!("{policy_name}-binding"), &policy_name, actions.clone(), None),
    ];
    let controllers: Option<Vec<String>> = match spec
        .get("autogen")
        .and_then(|a| a.pointer("/podControllers/controllers"))
    {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) => Some(list.iter().filter_map(Value::as_str).map(str::to_ascii_lowercase).collect()),
        Some(_) => return Err(fail("spec.autogen.podControllers.controllers", "must be a list of resources".into())),
    };
    let Some(rule) = autogen_rule(base.get("matchConstraints")) else {
        return Ok(out);
    };
    for (config, resources, group, place) in AUTOGEN {
        let resources: Vec<&str> = resources
            .iter()
            .copied()
            .filter(|r| controllers.as_ref().is_none_or(|c| c.iter().any(|x| x == r)))
            .collect();
        if resources.is_empty() {
            continue;
        }
        let mut spec = Value::Object(base.clone());
        rewrite_strings(&mut spec, place);
        let mut rule = rule.clone();
        rule["apiGroups"] = json!([group]);
        rule["apiVersions"] = json!(["v1"]);
        rule["resources"] = json!(resources);
        spec["matchConstraints"]["resourceRules"] = json!([rule]);
        let generated = format!("{policy_name}-autogen-{config}-{group}");
        out.push(policy(&generated, name, spec));
        out.push(binding(&format!("{generated}-binding"), &generated, actions.clone(), None));
    }
    Ok(out)
}

/// The one pod rule Kyverno's `CanAutoGen` accepts, or `None`.
fn autogen_rule(constraints: Option<&Value>) -> Option<Value> {
    let c = constraints?;
    let rules = c.get("resourceRules")?.as_array()?;
    let [rule] = rules.as_slice() else { return None };
    let is = |field: &str, want: &str| {
        rule.get(field).and_then(Value::as_array).is_some_and(|a| a.len() == 1 && a.first().is_some_and(|v| v == want))
    };
    let selector_empty = c.get("objectSelector").is_none_or(|s| {
        s.as_object().is_none_or(|m| {
            m.values()
                .all(|v| v.as_object().is_some_and(|m| m.is_empty()) || v.as_array().is_some_and(|a| a.is_empty()))
        })
    });
    (is("apiGroups", "")
        && is("apiVersions", "v1")
        && is("resources", "pods")
        && rule.get("resourceNames").and_then(Value::as_array).is_none_or(|a| a.is_empty())
        && c.get("excludeResourceRules").and_then(Value::as_array).is_none_or(|a| a.is_empty())
        && selector_empty)
        .then(|| rule.clone())
}

/// Kyverno's autogen rewrite of every string in a policy spec, for a template at `place`.
fn rewrite_strings(v: &mut Value, place: &str) {
    match v {
        Value::String(s) => *s = rewrite(s, place),
        Value::Array(items) => items.iter_mut().for_each(|i| rewrite_strings(i, place)),
        Value::Object(map) => map.values_mut().for_each(|i| rewrite_strings(i, place)),
        _ => {}
    }
}

/// `object.spec` → `object.<place>.spec`, `object.metadata` → `object.<place>.metadata` (but
/// not `object.metadata.namespace`), and the same for `oldObject`.
pub(crate) fn rewrite(text: &str, place: &str) -> String {
    let mut out = String::with_capacity(text.len() + 32);
    let mut rest = text;
    'scan: while !rest.is_empty() {
        for root in ["oldObject.", "object."] {
            if let Some(after) = rest.strip_prefix(root) {
                let boundary = out.chars().last().is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '.'));
                for field in ["spec", "metadata"] {
                    let Some(tail) = after.strip_prefix(field) else { continue };
                    let whole = tail.chars().next().is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
                    let namespace = field == "metadata"
                        && tail.starts_with(".namespace")
                        && tail[".namespace".len()..].chars().next().is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
                    if boundary && whole && !namespace {
                        out.push_str(root);
                        out.push_str(place);
                        out.push('.');
                        out.push_str(field);
                        rest = tail;
                        continue 'scan;
                    }
                }
            }
        }
        let c = rest.chars().next().unwrap_or(' ');
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Gatekeeper

/// The policy and binding of one Constraint, with where their fields came from.
type Located = (Value, Option<(usize, String, Vec<(String, String)>)>);

fn gatekeeper(index: usize, constraint: &Value, objects: &[Value]) -> Result<Vec<Located>, VapError> {
    let name = name_of(constraint).filter(|n| !n.is_empty());
    let Some(name) = name else {
        return Err(error(index, None, "metadata.name", "a Constraint needs a name"));
    };
    let fail = |field: &str, message: String| error(index, Some(name), field, message);
    let kind = kind(constraint);
    let template = objects
        .iter()
        .enumerate()
        .find(|(_, t)| is_template(t) && t.pointer("/spec/crd/spec/names/kind").and_then(Value::as_str) == Some(kind));
    let Some((t_index, template)) = template else {
        return Err(fail("kind", format!("no ConstraintTemplate defines kind `{kind}` among the policies")));
    };
    let t_name = name_of(template).unwrap_or(kind);
    let t_fail = |field: &str, message: String| error(t_index, Some(t_name), field, message);
    let targets = named(template.pointer("/spec/targets"));
    let [target] = targets.as_slice() else {
        return Err(t_fail("spec.targets", "a ConstraintTemplate has exactly one target".into()));
    };
    let code = named(target.get("code"));
    let Some((c, source)) = code.iter().enumerate().find_map(|(c, entry)| {
        (entry.get("engine").and_then(Value::as_str) == Some("K8sNativeValidation")).then(|| (c, entry.get("source")))
    }) else {
        return Err(t_fail(
            "spec.targets[0]",
            "only templates with `code` for the K8sNativeValidation engine run here; Rego needs OPA (Gatekeeper or meshguard's OPA module)".into(),
        ));
    };
    let source = source.cloned().unwrap_or(Value::Null);
    let source_field = format!("spec.targets[0].code[{c}].source.");
    const KNOWN: &[&str] = &["validations", "variables", "matchCondition", "failurePolicy", "generateVAP"];
    if let Some(unknown) = source.as_object().and_then(|m| m.keys().find(|k| !KNOWN.contains(&k.as_str()))) {
        return Err(t_fail(
            &format!("{source_field}{unknown}"),
            format!("unknown field `{unknown}`, expected one of {}", KNOWN.join(", ")),
        ));
    }
    let spec = constraint.get("spec").cloned().unwrap_or(json!({}));
    let parameters = spec.get("parameters").cloned().unwrap_or(Value::Null);
    let mut variables = vec![
        json!({"name": "anyObject", "expression": "has(request.operation) && request.operation == 'DELETE' && object == null ? oldObject : object"}),
        json!({"name": "params", "expression": crate::checks::native::params_literal(&parameters)}),
    ];
    let own_variables = named(source.get("variables"));
    if let Some(reserved) =
        own_variables.iter().position(|v| matches!(v.get("name").and_then(Value::as_str), Some("params" | "anyObject")))
    {
        return Err(t_fail(
            &format!("{source_field}variables[{reserved}].name"),
            "`params` and `anyObject` are Gatekeeper's own variables".into(),
        ));
    }
    let own_count = own_variables.len();
    variables.extend(own_variables);
    // Match: the Constraint's `spec.match` has the fields of a meshguard rule's `match`, plus `name`.
    let mut raw_match = spec.get("match").cloned().unwrap_or(json!({}));
    let by_name = raw_match.as_object_mut().and_then(|m| m.remove("name"));
    if let Some(source) = raw_match.as_object_mut().and_then(|m| m.remove("source")) {
        if source != "All" {
            return Err(fail("spec.match.source", format!("{source}: only `All` is evaluated here")));
        }
    }
    let matching: crate::matching::Match =
        serde_json::from_value(raw_match.clone()).map_err(|e| fail("spec.match", e.to_string()))?;
    matching.validate().map_err(|e| fail("spec.match", e))?;
    let mut constraints = crate::export::match_constraints(Some(&raw_match), &matching, crate::checks::Applies::Any);
    let operations = named(target.get("operations"));
    let operations = if operations.is_empty() || operations.iter().any(|o| o == "*") {
        json!(["CREATE", "UPDATE"])
    } else {
        Value::Array(operations)
    };
    for rule in constraints["resourceRules"].as_array_mut().into_iter().flatten() {
        rule["operations"] = operations.clone();
    }
    let mut conditions: Vec<Value> = named(source.get("matchCondition"));
    let own_conditions = conditions.len();
    conditions.extend(crate::export::match_conditions(&matching));
    if let Some(glob) = by_name.as_ref().and_then(Value::as_str) {
        let name_expr = "string(object.?metadata.?name.orValue(object.?metadata.?generateName.orValue('')))";
        conditions.push(json!({"name": "name", "expression": any_glob(&[glob.to_string()], name_expr)}));
    }
    let actions = match spec.get("enforcementAction").and_then(Value::as_str).unwrap_or("deny") {
        "deny" | "" => json!(["Deny"]),
        "warn" => json!(["Warn"]),
        "dryrun" => json!(["Audit"]),
        "scoped" => {
            let mut actions = Vec::new();
            for a in named(spec.get("scopedEnforcementActions")) {
                let points = named(a.get("enforcementPoints"));
                if points.iter().any(|p| matches!(p.get("name").and_then(Value::as_str), Some("vap.k8s.io" | "*"))) {
                    actions.push(match a.get("action").and_then(Value::as_str) {
                        Some("warn") => "Warn",
                        Some("dryrun") => "Audit",
                        _ => "Deny",
                    });
                }
            }
            if actions.is_empty() {
                return Ok(Vec::new());
            }
            json!(actions)
        }
        other => {
            return Err(fail("spec.enforcementAction", format!("`{other}`: expected deny, warn, dryrun or scoped")))
        }
    };
    let mut policy_spec = Map::new();
    policy_spec.insert("failurePolicy".into(), source.get("failurePolicy").cloned().unwrap_or(json!("Fail")));
    policy_spec.insert("matchConstraints".into(), constraints);
    if !conditions.is_empty() {
        policy_spec.insert("matchConditions".into(), Value::Array(conditions));
    }
    policy_spec.insert("variables".into(), Value::Array(variables));
    policy_spec.insert("validations".into(), source.get("validations").cloned().unwrap_or(json!([])));
    let policy_name = format!("gatekeeper-{}-{name}", kind.to_ascii_lowercase());
    // Errors in the policy's own fields point into the template: its validations, its variables
    // (after the two Gatekeeper adds), its match conditions (before those of the Constraint's
    // match) and its failurePolicy.
    let mut fields = vec![
        ("spec.validations".to_string(), format!("{source_field}validations")),
        ("spec.failurePolicy".to_string(), format!("{source_field}failurePolicy")),
    ];
    for k in 0..own_count {
        fields.push((format!("spec.variables[{}]", k + 2), format!("{source_field}variables[{k}]")));
    }
    for j in 0..own_conditions {
        fields.push((format!("spec.matchConditions[{j}]"), format!("{source_field}matchCondition[{j}]")));
    }
    let field = (t_index, t_name.to_string(), fields);
    Ok(vec![
        (policy(&policy_name, name, Value::Object(policy_spec)), Some(field)),
        (binding(name, &policy_name, actions, None), None),
    ])
}

fn policy(name: &str, source: &str, spec: Value) -> Value {
    json!({
        "apiVersion": VAP_API, "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name, "annotations": {"meshguard.dev/imported-from": source}},
        "spec": spec,
    })
}

fn binding(name: &str, policy: &str, actions: Value, match_resources: Option<Value>) -> Value {
    let mut spec = json!({"policyName": policy, "validationActions": actions});
    if let Some(m) = match_resources {
        spec["matchResources"] = m;
    }
    json!({"apiVersion": VAP_API, "kind": "ValidatingAdmissionPolicyBinding", "metadata": {"name": name}, "spec": spec})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autogen_rewrites_as_kyverno_does() {
        let t = "spec.template";
        assert_eq!(
            rewrite("object.spec.containers.all(c, c.image != '')", t),
            "object.spec.template.spec.containers.all(c, c.image != '')"
        );
        assert_eq!(
            rewrite("has(object.metadata.labels) && object.metadata.namespace != 'x'", t),
            "has(object.spec.template.metadata.labels) && object.metadata.namespace != 'x'"
        );
        assert_eq!(
            rewrite("oldObject.spec == object.specs && myobject.spec", t),
            "oldObject.spec.template.spec == object.specs && myobject.spec"
        );
        assert_eq!(rewrite("object.metadata.namespaceX", t), "object.spec.template.metadata.namespaceX");
    }
}
