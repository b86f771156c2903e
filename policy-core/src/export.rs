//! A RuleSet as objects the API server runs itself: every rule whose check has a native form
//! ([`crate::checks::Native`]) becomes a ValidatingAdmissionPolicy and its bindings
//! (`admissionregistration.k8s.io/v1`), with the same matching, actions per namespace and
//! decisions; the others are listed with why they stay with the webhook, never dropped.
//!
//! - `action` is the binding's `validationActions`; `actionOverrides` are more bindings, each
//!   selecting its namespaces by `kubernetes.io/metadata.name` (the label the API server sets on
//!   every namespace). Cluster-scoped objects keep the rule's own action, as in meshguard.
//! - `match.kinds` (else the kinds the check reads) are `matchConstraints.resourceRules`;
//!   `namespaces` / `excludedNamespaces` (globs) are `matchConditions`; `labelSelector` and
//!   `namespaceSelector` are the constraints' selectors.
//! - params are inlined into the expressions as CEL literals: no param objects to deploy.
//! - advisory findings (only ever warnings) are a second policy, `<rule>-advisory`, whose
//!   bindings warn at most.
//! - a check reading the pod template gets one validation per place a template sits (a Pod,
//!   `spec.template`, a CronJob's `spec.jobTemplate.spec.template`), so every `fieldPath` is exact.

use crate::checks::native::lit;
use crate::checks::{self, Applies, Native, NativeValidation};
use crate::finding::Action;
use crate::matching::{KindSelector, Scope};
use crate::policy::{ActionOverride, RuleSetError};
use serde_json::{json, Map, Value};

/// Annotation naming the rule a policy was exported from.
pub const RULE_ANNOTATION: &str = "meshguard.dev/rule";
/// Annotation naming the rule's check.
pub const CHECK_ANNOTATION: &str = "meshguard.dev/check";
const API_VERSION: &str = "admissionregistration.k8s.io/v1";
const MANAGED_BY: &str = "meshguard";
pub use crate::matching::NAMESPACE_NAME_LABEL;
/// Every Istio API group: where the checks over "any Istio kind" look.
pub const ISTIO_GROUPS: &[&str] =
    &["networking.istio.io", "security.istio.io", "telemetry.istio.io", "extensions.istio.io"];

/// What `meshguard rules export --to vap` prints and reports.
#[derive(Debug, Default)]
pub struct Exported {
    /// Policies and bindings, in rule order (then the RuleSet's own `admissionPolicies`).
    pub objects: Vec<Value>,
    /// Rules that stay with the webhook (or with Envoy), each with why.
    pub left: Vec<Left>,
    /// Rules exported in part (a fix CEL cannot make everywhere): the `reason` says what is left.
    pub partial: Vec<Left>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Left {
    pub rule: String,
    pub check: String,
    pub reason: String,
}

/// A rule as the loader reads it (the rule set loaded first, so it is valid).
type RuleView = crate::policy::RawRule;

/// What a RuleSet is exported to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// ValidatingAdmissionPolicies: the rules' decisions.
    Vap,
    /// MutatingAdmissionPolicies: the fixes of the rules set to mutate.
    Map,
}

/// Exports a RuleSet (already a JSON value) to ValidatingAdmissionPolicies.
pub fn to_vap(doc: &Value) -> Result<Exported, RuleSetError> {
    export(doc, Target::Vap)
}

/// Exports the fixes of a RuleSet's mutating rules to MutatingAdmissionPolicies.
pub fn to_map(doc: &Value) -> Result<Exported, RuleSetError> {
    export(doc, Target::Map)
}

/// Exports a RuleSet. The RuleSet is loaded first, so what does not load is refused with the
/// loader's error.
pub fn export(doc: &Value, target: Target) -> Result<Exported, RuleSetError> {
    crate::Policy::from_value(doc)?;
    let spec = doc.get("spec");
    let rules = spec.and_then(|s| s.get("rules")).and_then(Value::as_array).cloned().unwrap_or_default();
    let mut out = Exported::default();
    for (i, raw) in rules.iter().enumerate() {
        let rule: RuleView = serde_json::from_value(raw.clone()).map_err(|e| RuleSetError {
            rule: raw.get("id").and_then(Value::as_str).map(str::to_string),
            field: format!("spec.rules[{i}]"),
            message: e.to_string(),
        })?;
        let exported = match target {
            Target::Vap => export_rule(&rule),
            Target::Map => export_mutation(&rule).map(|(objects, gap)| {
                if let Some(reason) = gap {
                    out.partial.push(Left { rule: rule.id.clone(), check: rule.check.clone(), reason: reason.into() });
                }
                objects
            }),
        };
        match exported {
            Ok(objects) => out.objects.extend(objects),
            Err(reason) => out.left.push(Left { rule: rule.id.clone(), check: rule.check.clone(), reason }),
        }
    }
    // Policies the RuleSet carries are native already: each goes with its own kind.
    if let Some(policies) = spec.and_then(|s| s.get("admissionPolicies")).and_then(Value::as_array) {
        let mutating = |p: &&Value| p.get("kind").and_then(Value::as_str).is_some_and(|k| k.starts_with("Mutating"));
        out.objects.extend(policies.iter().filter(|p| mutating(p) == (target == Target::Map)).cloned());
    }
    Ok(out)
}

/// The check a rule names and its native form for the rule's params, or why there is none.
fn native_form(rule: &RuleView) -> Result<(&'static checks::CheckSpec, checks::NativeForm), String> {
    let Some(check) = checks::find(&rule.check) else {
        return Err(format!("check `{}` is not in this build", rule.check));
    };
    let build = match check.native {
        Native::Vap(build) => build,
        Native::WebhookOnly(why) => return Err(format!("it stays with the webhook, since the check {why}")),
        Native::Envoy => return Err(
            "an HTTP rule: Envoy enforces it (the wasm filter or the dynamic module); admission never sees a request"
                .into(),
        ),
    };
    let params = match &rule.params {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(p) => p.clone(),
    };
    let form = build(&params).map_err(|e| match e.field.as_str() {
        "" => format!("it stays with the webhook: {}", e.message),
        field => format!("params.{field}: {}", e.message),
    })?;
    Ok((check, form))
}

/// The policy's metadata: its name, the managed-by label and the rule it came from.
fn policy_metadata(name: &str, rule: &RuleView) -> Value {
    let mut annotations = Map::new();
    annotations.insert(RULE_ANNOTATION.into(), json!(rule.id));
    annotations.insert(CHECK_ANNOTATION.into(), json!(rule.check));
    if !rule.description.is_empty() {
        annotations.insert("meshguard.dev/description".into(), json!(rule.description));
    }
    json!({"name": name, "labels": {"app.kubernetes.io/managed-by": MANAGED_BY}, "annotations": annotations})
}

fn export_rule(rule: &RuleView) -> Result<Vec<Value>, String> {
    let (check, form) = native_form(rule)?;
    if form.validations.is_empty() {
        return Err("with these params the check never fails, so there is nothing to enforce".into());
    }
    let name = policy_name(&rule.id)?;
    let matching: crate::matching::Match = match &rule.match_ {
        Some(m) => serde_json::from_value(m.clone()).map_err(|e| format!("match: {e}"))?,
        None => Default::default(),
    };
    let waves = waves(&rule.action_overrides)?;
    let constraints = match_constraints(rule.match_.as_ref(), &matching, check.applies_to);
    let conditions = match_conditions(&matching);
    let mut objects = Vec::new();
    let (advisory, own): (Vec<NativeValidation>, Vec<NativeValidation>) =
        form.validations.iter().cloned().partition(|v| v.advisory);
    for (suffix, validations, cap) in [("", own, Action::Deny), ("-advisory", advisory, Action::Warn)] {
        if validations.is_empty() {
            continue;
        }
        let policy = format!("{name}{suffix}");
        let mut variables: Vec<Value> = Vec::new();
        if validations.iter().any(|v| v.template)
            || form.variables.iter().any(|(_, e)| e.contains("variables.template"))
        {
            variables.push(json!({"name": "template", "expression": TEMPLATE}));
        }
        variables.extend(named(&form.variables));
        let mut rendered = Vec::new();
        for v in &validations {
            rendered.extend(render_validation(rule, v, check.applies_to));
        }
        let mut all_conditions = conditions.clone();
        all_conditions.extend(named(&form.match_conditions));
        let failure = if form.fail_open { "Ignore" } else { "Fail" };
        let mut spec = shared_spec(failure, constraints.clone(), all_conditions, variables);
        spec.insert("validations".into(), Value::Array(rendered));
        objects.push(json!({
            "apiVersion": API_VERSION,
            "kind": "ValidatingAdmissionPolicy",
            "metadata": policy_metadata(&policy, rule),
            "spec": spec,
        }));
        objects.extend(bindings(&policy, &rule.id, rule.action.min(cap), &waves, cap));
    }
    Ok(objects)
}

/// A mutating rule's fixes as a MutatingAdmissionPolicy (JSONPatch mutations, `failurePolicy:
/// Ignore` since a fix that cannot be made leaves the object to the validation, as in meshguard)
/// and bindings for the namespaces where the rule mutates; with what its mutations leave undone.
fn export_mutation(rule: &RuleView) -> Result<(Vec<Value>, Option<&'static str>), String> {
    if !crate::policy::mutates_somewhere(rule.mutate, &rule.action_overrides) {
        return Err(
            "it does not mutate: set `mutate: true` (or an actionOverride's `mutate`) to fix at admission".into()
        );
    }
    let (check, form) = native_form(rule)?;
    if form.mutations.is_empty() {
        return Err(match rule.check.as_str() {
            "cel" => "the rule has no `fix`".to_string(),
            _ => format!("its check makes no fix ({})", check.fix.trim_start_matches("None: ")),
        });
    }
    let name = policy_name(&rule.id)?;
    let matching: crate::matching::Match = match &rule.match_ {
        Some(m) => serde_json::from_value(m.clone()).map_err(|e| format!("match: {e}"))?,
        None => Default::default(),
    };
    let mutating_waves = mutating_waves(rule)?;
    let mut variables: Vec<Value> = Vec::new();
    let templated = form.mutations.iter().any(|m| m.template)
        || form.variables.iter().any(|(_, e)| e.contains("variables.template"));
    if templated {
        variables.push(json!({"name": "template", "expression": TEMPLATE}));
        variables.push(json!({"name": "templatePointer", "expression": template_pointer()}));
    }
    for m in &form.mutations {
        variables.extend(named(&m.variables));
    }
    variables.extend(named(&form.variables));
    let kinds = template_kinds(check.applies_to);
    let mutations: Vec<Value> = form
        .mutations
        .iter()
        .map(|m| {
            let expression = if m.template {
                format!("!(object.kind in {kinds}) || variables.template == null ? [] : ({})", m.expression)
            } else {
                m.expression.clone()
            };
            json!({"patchType": "JSONPatch", "jsonPatch": {"expression": expression}})
        })
        .collect();
    let mut conditions = match_conditions(&matching);
    conditions.extend(named(&form.match_conditions));
    let constraints = match_constraints(rule.match_.as_ref(), &matching, check.applies_to);
    let mut spec = shared_spec("Ignore", constraints, conditions, variables);
    spec.insert("mutations".into(), Value::Array(mutations));
    // meshguard reviews the fixed object again; so does the API server once a later policy
    // changed it.
    spec.insert("reinvocationPolicy".into(), json!("IfNeeded"));
    let mut objects = vec![json!({
        "apiVersion": API_VERSION,
        "kind": "MutatingAdmissionPolicy",
        "metadata": policy_metadata(&name, rule),
        "spec": spec,
    })];
    objects.extend(mutating_bindings(&name, &rule.id, rule.mutate, &mutating_waves));
    Ok((objects, form.mutation_gap))
}

/// `(name, expression)` pairs as a policy's variables or match conditions.
fn named(list: &[(String, String)]) -> Vec<Value> {
    list.iter().map(|(n, e)| json!({"name": n, "expression": e})).collect()
}

/// What a Validating and a MutatingAdmissionPolicy's spec share: the failure policy, match
/// constraints, match conditions and variables (the last two only when there are some).
fn shared_spec(
    failure_policy: &str,
    constraints: Value,
    conditions: Vec<Value>,
    variables: Vec<Value>,
) -> Map<String, Value> {
    let mut spec = Map::new();
    spec.insert("failurePolicy".into(), json!(failure_policy));
    spec.insert("matchConstraints".into(), constraints);
    if !conditions.is_empty() {
        spec.insert("matchConditions".into(), Value::Array(conditions));
    }
    if !variables.is_empty() {
        spec.insert("variables".into(), Value::Array(variables));
    }
    spec
}

/// The kinds whose pod template a template check reads, as a CEL list.
fn template_kinds(applies: Applies) -> String {
    let kinds: Vec<String> = crate::object::POD_TEMPLATE_PATHS
        .iter()
        .filter(|(kind, _)| applies.covers("", kind))
        .map(|(kind, _)| kind.to_string())
        .collect();
    checks::native::list(&kinds)
}

/// The JSON Pointer of the pod template ([`TEMPLATE`]), by kind.
fn template_pointer() -> String {
    let mut out = "''".to_string();
    for (kinds, path) in template_places().into_iter().rev() {
        let kinds: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
        let pointer: String = path.split('.').filter(|s| !s.is_empty()).map(|s| format!("/{s}")).collect();
        out = format!("object.kind in {} ? {} : {out}", checks::native::list(&kinds), lit(&pointer));
    }
    out
}

/// `actionOverrides` as the namespaces where the rule's mutation differs from its `mutate`:
/// the first override naming a namespace decides it (its `mutate`, else the rule's).
fn mutating_waves(rule: &RuleView) -> Result<Vec<(bool, Vec<String>)>, String> {
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for (o, names) in claims(&rule.action_overrides)? {
        if o.mutate.unwrap_or(rule.mutate) { &mut on } else { &mut off }.extend(names);
    }
    Ok([(true, on), (false, off)].into_iter().filter(|(_, names)| !names.is_empty()).collect())
}

/// The bindings of a MutatingAdmissionPolicy: everywhere when the rule mutates and no override
/// says otherwise; else the namespaces where it mutates (and, when the rule mutates, cluster-scoped
/// objects and the namespaces no override names).
fn mutating_bindings(policy: &str, rule: &str, mutate: bool, waves: &[(bool, Vec<String>)]) -> Vec<Value> {
    let binding = |name: &str, match_resources: Option<Value>| any_binding(name, policy, rule, None, match_resources);
    if waves.is_empty() {
        return if mutate { vec![binding(policy, None)] } else { Vec::new() };
    }
    let named = |op: &str, names: &[String]| {
        Some(scoped(
            "Namespaced",
            Some(json!({"matchExpressions": [{"key": NAMESPACE_NAME_LABEL, "operator": op, "values": names}]})),
        ))
    };
    let mut out = Vec::new();
    if mutate {
        let all: Vec<String> = waves.iter().flat_map(|(_, n)| n.iter().cloned()).collect();
        out.push(binding(policy, named("NotIn", &all)));
        out.push(binding(&format!("{policy}-cluster-scoped"), Some(scoped("Cluster", None))));
    }
    if let Some((_, names)) = waves.iter().find(|(on, _)| *on) {
        out.push(binding(&format!("{policy}-override"), named("In", names)));
    }
    out
}

/// `matchResources` of every resource in `scope`, optionally in the namespaces `selector` selects.
fn scoped(scope: &str, selector: Option<Value>) -> Value {
    let mut m = Map::new();
    m.insert(
        "resourceRules".into(),
        json!([{"apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"], "operations": ["*"], "scope": scope}]),
    );
    if let Some(s) = selector {
        m.insert("namespaceSelector".into(), s);
    }
    Value::Object(m)
}

/// The pod template of a workload, a Pod itself, or null: where the template checks look.
const TEMPLATE: &str = "object.kind == 'Pod' ? object : object.kind == 'CronJob' ? \
object.?spec.?jobTemplate.?spec.?template.orValue(null) : object.?spec.?template.orValue(null)";

/// A DNS subdomain from a rule id (`_` is not allowed in object names).
fn policy_name(id: &str) -> Result<String, String> {
    let name = id.replace('_', "-");
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|part| {
            !part.is_empty()
                && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        });
    if ok {
        Ok(name)
    } else {
        Err(format!("it stays with the webhook: its id `{id}` is not a valid object name (a DNS subdomain)"))
    }
}

/// `actionOverrides` as waves of exact namespace names, each without the names an earlier one
/// claimed (the first override naming a namespace wins, as in meshguard).
fn waves(overrides: &[ActionOverride]) -> Result<Vec<(Action, Vec<String>)>, String> {
    Ok(claims(overrides)?
        .into_iter()
        .filter(|(_, names)| !names.is_empty())
        .map(|(o, names)| (o.action, names))
        .collect())
}

/// Each override with the namespaces it decides: those no earlier override named (the first
/// override naming a namespace wins, as in meshguard). An override naming namespaces by pattern
/// cannot be a binding's namespaceSelector.
fn claims(overrides: &[ActionOverride]) -> Result<Vec<(&ActionOverride, Vec<String>)>, String> {
    let mut claimed: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for (j, o) in overrides.iter().enumerate() {
        if let Some(glob) = o.namespaces.iter().find(|n| n.contains('*')) {
            return Err(format!(
                "it stays with the webhook: actionOverrides[{j}] names namespaces by pattern (`{glob}`), which a binding's namespaceSelector \
                 cannot select; list the namespaces by name to export it"
            ));
        }
        let mut names: Vec<String> = Vec::new();
        for n in &o.namespaces {
            if !claimed.contains(n) && !names.contains(n) {
                names.push(n.clone());
            }
        }
        claimed.extend(names.iter().cloned());
        out.push((o, names));
    }
    Ok(out)
}

fn validation_actions(action: Action) -> Value {
    json!([match action {
        Action::Deny => "Deny",
        Action::Warn => "Warn",
        Action::Audit => "Audit",
    }])
}

fn binding(name: &str, policy: &str, rule: &str, action: Action, match_resources: Option<Value>) -> Value {
    any_binding(name, policy, rule, Some(action), match_resources)
}

/// A ValidatingAdmissionPolicyBinding with `action`, or a MutatingAdmissionPolicyBinding
/// without one.
fn any_binding(name: &str, policy: &str, rule: &str, action: Option<Action>, match_resources: Option<Value>) -> Value {
    let mut spec = Map::new();
    spec.insert("policyName".into(), json!(policy));
    if let Some(action) = action {
        spec.insert("validationActions".into(), validation_actions(action));
    }
    if let Some(m) = match_resources {
        spec.insert("matchResources".into(), m);
    }
    let kind = if action.is_some() { "ValidatingAdmissionPolicyBinding" } else { "MutatingAdmissionPolicyBinding" };
    json!({
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": MANAGED_BY}, "annotations": {(RULE_ANNOTATION): rule}},
        "spec": spec,
    })
}

/// The bindings of one policy: one without overrides; else one per wave (namespaced objects in
/// its namespaces), one for the other namespaces, one for cluster-scoped objects (which keep the
/// rule's own action).
fn bindings(policy: &str, rule: &str, action: Action, waves: &[(Action, Vec<String>)], cap: Action) -> Vec<Value> {
    if waves.is_empty() {
        return vec![binding(policy, policy, rule, action, None)];
    }
    let selector = |op: &str, names: &[String]| json!({"matchExpressions": [{"key": NAMESPACE_NAME_LABEL, "operator": op, "values": names}]});
    let mut out = Vec::new();
    let all: Vec<String> = waves.iter().flat_map(|(_, n)| n.iter().cloned()).collect();
    out.push(binding(policy, policy, rule, action, Some(scoped("Namespaced", Some(selector("NotIn", &all))))));
    out.push(binding(&format!("{policy}-cluster-scoped"), policy, rule, action, Some(scoped("Cluster", None))));
    for (j, (wave_action, names)) in waves.iter().enumerate() {
        out.push(binding(
            &format!("{policy}-override-{j}"),
            policy,
            rule,
            (*wave_action).min(cap),
            Some(scoped("Namespaced", Some(selector("In", names)))),
        ));
    }
    out
}

fn resource_rule(groups: Vec<String>, resources: Vec<String>, scope: &str) -> Value {
    json!({
        "apiGroups": groups,
        "apiVersions": ["*"],
        "resources": resources,
        "operations": ["CREATE", "UPDATE"],
        "scope": scope,
    })
}

/// `matchConstraints`: the rule's kinds (else the check's), its scope and selectors.
pub(crate) fn match_constraints(raw: Option<&Value>, m: &crate::matching::Match, applies: Applies) -> Value {
    let scope = match m.scope {
        Scope::All => "*",
        Scope::Cluster => "Cluster",
        Scope::Namespaced => "Namespaced",
    };
    let rules: Vec<Value> = if !m.kinds.is_empty() {
        m.kinds.iter().map(|k| kind_rule(k, scope)).collect()
    } else {
        match applies {
            Applies::Any => vec![resource_rule(vec!["*".into()], vec!["*".into()], scope)],
            Applies::Kinds(kinds) => vec![resource_rule(
                vec!["*".into()],
                kinds.iter().map(|k| crate::vap::resource_of_kind(k)).collect(),
                scope,
            )],
            Applies::GroupSuffix(_) => {
                vec![resource_rule(ISTIO_GROUPS.iter().map(|g| g.to_string()).collect(), vec!["*".into()], scope)]
            }
        }
    };
    let mut out = Map::new();
    out.insert("resourceRules".into(), Value::Array(rules));
    for (from, to) in [("labelSelector", "objectSelector"), ("namespaceSelector", "namespaceSelector")] {
        if let Some(sel) = raw.and_then(|r| r.get(from)) {
            out.insert(to.into(), sel.clone());
        }
    }
    Value::Object(out)
}

fn kind_rule(k: &KindSelector, scope: &str) -> Value {
    let groups = if k.api_groups.is_empty() || k.api_groups.iter().any(|g| g == "*") {
        vec!["*".into()]
    } else {
        k.api_groups.clone()
    };
    let resources = if k.kinds.is_empty() || k.kinds.iter().any(|k| k == "*") {
        vec!["*".into()]
    } else {
        k.kinds.iter().map(|k| crate::vap::resource_of_kind(k)).collect()
    };
    resource_rule(groups, resources, scope)
}

/// The namespace `match` lists read: a Namespace's own name, else the object's namespace.
const MATCH_NAMESPACE: &str = "(object.kind == 'Namespace' ? object.metadata.name : request.namespace)";

pub(crate) fn match_conditions(m: &crate::matching::Match) -> Vec<Value> {
    let mut out = Vec::new();
    if !m.namespaces.is_empty() {
        out.push(json!({
            "name": "namespaces",
            "expression": format!("{MATCH_NAMESPACE} == '' || {}", checks::native::any_glob(&m.namespaces, MATCH_NAMESPACE)),
        }));
    }
    if !m.excluded_namespaces.is_empty() {
        out.push(json!({
            "name": "excluded-namespaces",
            "expression": format!(
                "{MATCH_NAMESPACE} == '' || !{}",
                checks::native::any_glob(&m.excluded_namespaces, MATCH_NAMESPACE)
            ),
        }));
    }
    out
}

/// Where a pod template sits ([`crate::object::POD_TEMPLATE_PATHS`]), as places: the kinds
/// sharing a path, and the path as a VAP `fieldPath`, in the order the kinds are listed.
fn template_places() -> Vec<(Vec<&'static str>, String)> {
    let mut places: Vec<(Vec<&'static str>, String)> = Vec::new();
    for (kind, steps) in crate::object::POD_TEMPLATE_PATHS {
        let path = steps.join(".");
        match places.iter_mut().find(|(_, p)| *p == path) {
            Some((kinds, _)) => kinds.push(kind),
            None => places.push((vec![kind], path)),
        }
    }
    places
}

fn join_path(prefix: &str, rest: &str) -> String {
    match (prefix.is_empty(), rest.is_empty()) {
        (_, true) => prefix.to_string(),
        (true, false) => rest.trim_start_matches('.').to_string(),
        (false, false) if rest.starts_with('[') => format!("{prefix}{rest}"),
        (false, false) => format!("{prefix}.{}", rest.trim_start_matches('.')),
    }
}

fn render_validation(rule: &RuleView, v: &NativeValidation, applies: Applies) -> Vec<Value> {
    let message = message_expression(rule, &v.message_expression);
    let one = |expression: String, path: String| {
        let mut m = Map::new();
        m.insert("expression".into(), json!(expression));
        m.insert("messageExpression".into(), json!(message));
        if !path.is_empty() {
            m.insert("fieldPath".into(), json!(path));
        }
        m.insert("reason".into(), json!("Invalid"));
        Value::Object(m)
    };
    if !v.template {
        let path =
            if v.field_path.is_empty() { String::new() } else { format!(".{}", v.field_path.trim_start_matches('.')) };
        let path = if v.field_path.starts_with('[') { v.field_path.clone() } else { path };
        return vec![one(v.expression.clone(), path)];
    }
    let mut out = Vec::new();
    for (kinds, prefix) in template_places() {
        let kinds: Vec<String> = kinds.iter().filter(|k| applies.covers("", k)).map(|k| k.to_string()).collect();
        let guard = match kinds.as_slice() {
            [] => continue,
            [kind] => format!("object.kind != {}", lit(kind)),
            kinds => format!("!(object.kind in {})", checks::native::list(kinds)),
        };
        let path = join_path(&prefix, &v.field_path);
        let path = if path.is_empty() { path } else { format!(".{path}") };
        out.push(one(format!("{guard} || variables.template == null || ({})", v.expression), path));
    }
    out
}

/// The finding's message as meshguard words it: `<rule>: <message>`, or the rule's own
/// `message` template with `{message}`, `{kind}`, `{namespace}` and `{name}` filled in.
fn message_expression(rule: &RuleView, detail: &str) -> String {
    let body = match &rule.message {
        None => format!("({detail})"),
        Some(template) => {
            let mut parts = Vec::new();
            let mut rest = template.as_str();
            while let Some(at) = rest.find('{') {
                let token =
                    ["{message}", "{kind}", "{namespace}", "{name}"].into_iter().find(|t| rest[at..].starts_with(t));
                let Some(token) = token else {
                    parts.push(lit(&rest[..=at]));
                    rest = &rest[at + 1..];
                    continue;
                };
                if at > 0 {
                    parts.push(lit(&rest[..at]));
                }
                parts.push(match token {
                    "{message}" => format!("({detail})"),
                    "{kind}" => "object.kind".into(),
                    "{namespace}" => "request.namespace".into(),
                    _ => "string(object.?metadata.?name.orValue(''))".into(),
                });
                rest = &rest[at + token.len()..];
            }
            if !rest.is_empty() {
                parts.push(lit(rest));
            }
            parts.join(" + ")
        }
    };
    format!("{} + {body}", lit(&format!("{}: ", rule.id)))
}

/// Maps an exported policy's name back to its rule: the `meshguard.dev/rule` annotation.
pub fn rule_of_policy<'o>(objects: &'o [Value], policy: &str) -> Option<&'o str> {
    objects.iter().find_map(|o| {
        let meta = o.get("metadata")?;
        let kind = o.get("kind")?.as_str()?;
        (matches!(kind, "ValidatingAdmissionPolicy" | "MutatingAdmissionPolicy")
            && meta.get("name")?.as_str()? == policy)
            .then(|| meta.get("annotations")?.get(RULE_ANNOTATION)?.as_str())
            .flatten()
    })
}
