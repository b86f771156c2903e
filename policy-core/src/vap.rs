//! ValidatingAdmissionPolicy objects (admissionregistration.k8s.io/v1) run outside an API server:
//! each binding becomes one rule, evaluated with the policy's variables, match conditions and
//! validations (see `cel::Validator`), the binding's `validationActions`, and both objects'
//! match criteria. What needs a live cluster is reported as such, under the policy's
//! `failurePolicy`, never guessed: a param object that is not in the input, the labels of a
//! namespace the input does not hold, `authorizer`.
//!
//! A RuleSet carries these objects in `spec.admissionPolicies` (policies, bindings and param
//! objects), which is what `meshguard check --policies DIR` fills in, so every host gets them.

use crate::cel::{FailurePolicy, NamedExpression, ValidationSource, Validator};
use crate::checks::ObjectCheck;
use crate::finding::{Action, Violation};
use crate::matching::LabelSelector;
use crate::object::{is_cluster_scoped_kind, Input, Object};
use crate::path::FieldPath;
use crate::pattern::excerpt;
use serde::Deserialize;
use serde_json::Value;

pub const GROUP: &str = "admissionregistration.k8s.io";
pub const POLICY_KIND: &str = "ValidatingAdmissionPolicy";
pub const BINDING_KIND: &str = "ValidatingAdmissionPolicyBinding";
/// The `check` of rules made from bindings, as findings and `meshguard rules` show it.
pub const CHECK_ID: &str = "validating-admission-policy";

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PolicySpec {
    #[serde(default)]
    param_kind: Option<ParamKind>,
    #[serde(default)]
    match_constraints: Option<MatchResources>,
    #[serde(default)]
    validations: Vec<RawValidation>,
    #[serde(default)]
    failure_policy: FailurePolicy,
    #[serde(default)]
    audit_annotations: Vec<Value>,
    #[serde(default)]
    match_conditions: Vec<NamedExpression>,
    #[serde(default)]
    variables: Vec<NamedExpression>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ParamKind {
    pub(crate) api_version: String,
    pub(crate) kind: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawValidation {
    expression: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    message_expression: Option<String>,
    /// The API server's `Invalid` / `Forbidden` status reason: meshguard reports findings, not statuses.
    #[serde(default)]
    #[allow(dead_code)]
    reason: Option<String>,
    #[serde(default)]
    field_path: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BindingSpec {
    policy_name: String,
    #[serde(default)]
    param_ref: Option<ParamRef>,
    #[serde(default)]
    match_resources: Option<MatchResources>,
    #[serde(default)]
    validation_actions: Vec<ValidationAction>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
enum ValidationAction {
    Deny,
    Warn,
    Audit,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum NotFoundAction {
    #[default]
    Deny,
    Allow,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ParamRef {
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) namespace: Option<String>,
    #[serde(default)]
    pub(crate) selector: Option<LabelSelector>,
    #[serde(default)]
    pub(crate) parameter_not_found_action: NotFoundAction,
}

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct MatchResources {
    #[serde(default)]
    pub(crate) namespace_selector: Option<LabelSelector>,
    #[serde(default)]
    pub(crate) object_selector: Option<LabelSelector>,
    #[serde(default)]
    pub(crate) resource_rules: Vec<ResourceRule>,
    #[serde(default)]
    pub(crate) exclude_resource_rules: Vec<ResourceRule>,
    /// Exact or Equivalent: offline each object has the one version it is written in.
    #[serde(default)]
    #[allow(dead_code)]
    pub(crate) match_policy: Option<String>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ResourceRule {
    #[serde(default)]
    pub(crate) api_groups: Vec<String>,
    #[serde(default)]
    pub(crate) api_versions: Vec<String>,
    #[serde(default)]
    pub(crate) resources: Vec<String>,
    #[serde(default)]
    pub(crate) operations: Vec<String>,
    #[serde(default)]
    pub(crate) scope: Option<String>,
    #[serde(default)]
    pub(crate) resource_names: Vec<String>,
}

/// What a request is about, in the terms resource rules use.
pub(crate) struct Target<'a> {
    pub(crate) group: &'a str,
    pub(crate) version: &'a str,
    pub(crate) resource: String,
    pub(crate) operation: &'a str,
    pub(crate) name: &'a str,
    pub(crate) cluster_scoped: bool,
}

impl<'a> Target<'a> {
    /// `obj` under request `operation`.
    pub(crate) fn of(obj: &Object<'a>, operation: &'a str) -> Self {
        let api_version = obj.value.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        Target {
            group: obj.group,
            version: api_version.rsplit('/').next().unwrap_or(""),
            resource: resource_of_kind(obj.kind),
            operation,
            name: obj.name,
            cluster_scoped: obj.is_cluster_scoped(),
        }
    }
}

fn any_or(list: &[String], value: &str) -> bool {
    list.iter().any(|v| v == "*" || v == value)
}

impl ResourceRule {
    fn matches(&self, t: &Target<'_>) -> bool {
        let scope_ok = match self.scope.as_deref() {
            Some("Cluster") => t.cluster_scoped,
            Some("Namespaced") => !t.cluster_scoped,
            _ => true,
        };
        any_or(&self.api_groups, t.group)
            && any_or(&self.api_versions, t.version)
            && (any_or(&self.resources, &t.resource) || self.resources.iter().any(|r| r == "*/*"))
            && any_or(&self.operations, t.operation)
            && scope_ok
            && (self.resource_names.is_empty() || self.resource_names.iter().any(|n| n == t.name))
    }
}

/// Resource names of kinds whose plural is not the rule below.
const IRREGULAR_RESOURCES: &[(&str, &str)] = &[("Endpoints", "endpoints"), ("PodMetrics", "pods")];

/// The resource of a kind, as Kubernetes' `UnsafeGuessKindToResource` derives it (what kubectl and
/// the API server's REST mapper do for every built-in kind): lower-cased, `s` → `ses`, a
/// consonant + `y` → `ies`, else + `s`.
pub fn resource_of_kind(kind: &str) -> String {
    if let Some((_, r)) = IRREGULAR_RESOURCES.iter().find(|(k, _)| *k == kind) {
        return r.to_string();
    }
    let lower = kind.to_ascii_lowercase();
    if lower.is_empty() {
        return lower;
    }
    if lower.ends_with('s') {
        return format!("{lower}es");
    }
    if let Some(stem) = lower.strip_suffix('y') {
        if !stem.ends_with(['a', 'e', 'i', 'o', 'u']) {
            return format!("{stem}ies");
        }
    }
    format!("{lower}s")
}

pub(crate) enum MatchResult {
    Yes,
    No,
    /// Cannot tell without the cluster: the reason.
    Unknown(String),
}

impl MatchResources {
    /// `require_rules`: a policy's constraints must name resources; a binding's may leave them out.
    pub(crate) fn matches(
        &self,
        t: &Target<'_>,
        obj: &Object<'_>,
        input: &Input<'_>,
        require_rules: bool,
    ) -> MatchResult {
        if (require_rules || !self.resource_rules.is_empty()) && !self.resource_rules.iter().any(|r| r.matches(t)) {
            return MatchResult::No;
        }
        if self.exclude_resource_rules.iter().any(|r| r.matches(t)) {
            return MatchResult::No;
        }
        if let Some(sel) = &self.object_selector {
            if !sel.matches(obj.labels()) {
                return MatchResult::No;
            }
        }
        if let Some(sel) = self.namespace_selector.as_ref().filter(|s| !is_everything(s)) {
            if obj.kind == "Namespace" {
                if !sel.matches_namespace(obj.labels(), obj.name) {
                    return MatchResult::No;
                }
            } else if !obj.is_cluster_scoped() {
                match input.labels_of_namespace(obj) {
                    Some(labels) if sel.matches_namespace(labels, obj.namespace) => {}
                    Some(_) => return MatchResult::No,
                    None => {
                        return MatchResult::Unknown(format!(
                            "its namespaceSelector needs the labels of namespace `{}`, which is not in the input",
                            obj.namespace
                        ))
                    }
                }
            }
        }
        MatchResult::Yes
    }
}

pub(crate) fn is_everything(sel: &LabelSelector) -> bool {
    sel.match_labels.is_empty() && sel.match_expressions.is_empty()
}

/// What a policy's `matchConstraints` and its binding's `matchResources` select, and the param
/// objects the binding's `paramRef` binds: the same for validating and mutating policies.
pub(crate) struct Selection {
    pub(crate) constraints: MatchResources,
    pub(crate) binding_match: Option<MatchResources>,
    pub(crate) param_kind: Option<ParamKind>,
    pub(crate) param_ref: Option<ParamRef>,
    /// Param objects shipped with the policies (searched before the reviewed objects).
    pub(crate) bundled_params: Vec<Value>,
}

/// Whether a binding applies to an object, and how many times.
pub(crate) enum Selected<'s> {
    /// It does not, or its `paramRef` found nothing under `parameterNotFoundAction: Allow`.
    No,
    /// Offline cannot tell (a namespace's labels, a param object not in the input): why.
    Unknown(String),
    /// Once per param object; `[None]` without a `paramRef`.
    Invocations(Vec<Option<&'s Value>>),
}

impl Selection {
    pub(crate) fn select<'s>(&'s self, obj: &Object<'_>, input: &'s Input<'_>, operation: &str) -> Selected<'s> {
        let target = Target::of(obj, operation);
        let mut unknown = None;
        for (m, required) in [(Some(&self.constraints), true), (self.binding_match.as_ref(), false)] {
            match m.map_or(MatchResult::Yes, |m| m.matches(&target, obj, input, required)) {
                MatchResult::Yes => {}
                MatchResult::No => return Selected::No,
                MatchResult::Unknown(why) => unknown = Some(why),
            }
        }
        if let Some(why) = unknown {
            return Selected::Unknown(why);
        }
        match find_params(self.param_kind.as_ref(), self.param_ref.as_ref(), &self.bundled_params, obj, input) {
            Err(why) => Selected::Unknown(why),
            Ok(params) if params.is_empty() && self.param_ref.is_some() => Selected::No,
            Ok(params) if params.is_empty() => Selected::Invocations(vec![None]),
            Ok(params) => Selected::Invocations(params.into_iter().map(Some).collect()),
        }
    }

    /// Kinds of other objects selecting reads: `Namespace` for a namespaceSelector (or when
    /// `reads_namespace` says the expressions read it), the param kind for a `paramRef`.
    pub(crate) fn context_kinds(&self, reads_namespace: bool) -> Vec<String> {
        let mut kinds = Vec::new();
        let selects_namespaces = [Some(&self.constraints), self.binding_match.as_ref()]
            .into_iter()
            .flatten()
            .any(|m| m.namespace_selector.as_ref().is_some_and(|s| !is_everything(s)));
        if selects_namespaces || reads_namespace {
            kinds.push("Namespace".to_string());
        }
        if let (Some(kind), Some(_)) = (&self.param_kind, &self.param_ref) {
            kinds.push(kind.kind.clone());
        }
        kinds
    }
}

/// One binding of one policy: a rule.
pub struct BindingCheck {
    policy: String,
    validator: Validator,
    selection: Selection,
}

/// The param objects a binding's `paramRef` names for `obj`: among `bundled` (shipped with the
/// policies) and the reviewed objects. `Err` when none is there and the binding denies then.
pub(crate) fn find_params<'s>(
    kind: Option<&ParamKind>,
    r: Option<&ParamRef>,
    bundled: &'s [Value],
    obj: &Object<'_>,
    input: &'s Input<'_>,
) -> Result<Vec<&'s Value>, String> {
    let (Some(kind), Some(r)) = (kind, r) else {
        return Ok(vec![]);
    };
    let namespace = match &r.namespace {
        Some(ns) if !ns.is_empty() => ns.as_str(),
        _ if is_cluster_scoped_kind(&kind.kind) => "",
        _ => obj.namespace,
    };
    let candidates = bundled
        .iter()
        .map(|v| Object::new(v, "default"))
        .filter(|o| o.kind == kind.kind && o.namespace == namespace)
        .chain(input.in_namespace(namespace, &kind.kind).copied())
        .filter(|o| o.value.get("apiVersion").and_then(Value::as_str) == Some(kind.api_version.as_str()));
    let found: Vec<&Value> = match (&r.name, &r.selector) {
        (Some(name), _) if !name.is_empty() => candidates.filter(|o| o.name == name).map(|o| o.value).take(1).collect(),
        (_, Some(sel)) => candidates.filter(|o| sel.matches(o.labels())).map(|o| o.value).collect(),
        _ => vec![],
    };
    if found.is_empty() && r.parameter_not_found_action == NotFoundAction::Deny {
        let which = match (&r.name, namespace) {
            (Some(n), "") => format!("{} `{n}`", kind.kind),
            (Some(n), ns) => format!("{} `{ns}/{n}`", kind.kind),
            (None, ns) => format!("{} objects matching its selector in namespace `{ns}`", kind.kind),
        };
        return Err(format!(
            "its paramRef names {which}, which is not in the input; meshguard cannot look it up in a cluster \
             (add the param object to the checked files or --policies, or set parameterNotFoundAction: Allow)"
        ));
    }
    Ok(found)
}

impl ObjectCheck for BindingCheck {
    fn context_kinds(&self) -> Vec<String> {
        self.selection.context_kinds(self.validator.reads_namespace_object())
    }

    fn review(&self, obj: &Object<'_>, input: &Input<'_>, out: &mut Vec<Violation>) {
        let operation = input.request.and_then(|r| r.get("operation")).and_then(Value::as_str).unwrap_or("CREATE");
        match self.selection.select(obj, input, operation) {
            Selected::No => {}
            Selected::Unknown(why) => {
                let message = format!("ValidatingAdmissionPolicy `{}` cannot be evaluated offline: {why}", self.policy);
                self.validator.fail(out, FieldPath::root(), message);
            }
            Selected::Invocations(params) => {
                for p in params {
                    self.validator.review(obj, input, p, out);
                }
            }
        }
    }
}

/// A compiled binding: its rule id, action and check.
pub struct CompiledBinding {
    pub id: String,
    pub policy: String,
    pub action: Action,
    pub check: BindingCheck,
}

/// An error in one of the objects: `index` into the list, `field` inside that object.
#[derive(Debug, Clone, PartialEq)]
pub struct VapError {
    pub index: usize,
    pub name: Option<String>,
    pub field: String,
    pub message: String,
}

pub(crate) fn name_of(v: &Value) -> Option<&str> {
    v.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str)
}

pub(crate) fn is_kind(v: &Value, kind: &str) -> bool {
    v.get("kind").and_then(Value::as_str) == Some(kind)
        && v.get("apiVersion").and_then(Value::as_str).is_some_and(|a| a.starts_with(GROUP))
}

pub(crate) fn parse<T: serde::de::DeserializeOwned>(
    index: usize,
    v: &Value,
    name: Option<&str>,
) -> Result<T, VapError> {
    let spec = v.get("spec").cloned().unwrap_or(Value::Null);
    serde_path_to_error::deserialize(spec).map_err(|e| {
        let path = e.path().to_string();
        VapError {
            index,
            name: name.map(str::to_string),
            field: if path == "." { "spec".into() } else { format!("spec.{path}") },
            message: e.into_inner().to_string(),
        }
    })
}

/// The operations a resource rule may name.
const OPERATIONS: [&str; 5] = ["CREATE", "UPDATE", "DELETE", "CONNECT", "*"];

/// A resource rule as the API server validates it: every list named and non-empty (an empty one
/// would match nothing, silently), operations among [`OPERATIONS`]. `Err((field, message))`.
pub(crate) fn validate_rules(rules: &[ResourceRule], at: &str) -> Result<(), (String, String)> {
    for (i, rule) in rules.iter().enumerate() {
        for (field, list) in [
            ("apiGroups", &rule.api_groups),
            ("apiVersions", &rule.api_versions),
            ("resources", &rule.resources),
            ("operations", &rule.operations),
        ] {
            if list.is_empty() {
                return Err((
                    format!("{at}[{i}].{field}"),
                    format!("required: name at least one (`*` for all); an empty {field} matches nothing"),
                ));
            }
        }
        if let Some((j, op)) = rule.operations.iter().enumerate().find(|(_, op)| !OPERATIONS.contains(&op.as_str())) {
            return Err((
                format!("{at}[{i}].operations[{j}]"),
                format!("`{}` is not an operation (CREATE, UPDATE, DELETE, CONNECT or *)", excerpt(op, 64)),
            ));
        }
    }
    Ok(())
}

/// Refuses policies of `kind` without a name, and two of one name (one would silently hide the
/// other), as the API server does.
pub(crate) fn check_policy_names(objects: &[Value], kind: &str) -> Result<(), VapError> {
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for (index, p) in objects.iter().enumerate().filter(|(_, v)| is_kind(v, kind)) {
        let error = |message: String| VapError {
            index,
            name: name_of(p).map(str::to_string),
            field: "metadata.name".into(),
            message,
        };
        let Some(name) = name_of(p).filter(|n| !n.is_empty()) else {
            return Err(error(format!("a {kind} needs a name")));
        };
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
            return Err(error(format!(
                "a second {kind} named `{name}` (the first is object {}): names are unique",
                first + 1
            )));
        }
        seen.push((name, index));
    }
    Ok(())
}

/// The objects that are neither admission policies nor their bindings: param objects.
pub(crate) fn bundled_params(objects: &[Value]) -> Vec<Value> {
    let kinds = [POLICY_KIND, BINDING_KIND, crate::map::POLICY_KIND, crate::map::BINDING_KIND];
    objects.iter().filter(|v| !kinds.iter().any(|k| is_kind(v, k))).cloned().collect()
}

/// The binding at `index`'s name (`Err` without one).
pub(crate) fn binding_name(index: usize, binding: &Value) -> Result<String, VapError> {
    match name_of(binding).filter(|n| !n.is_empty()) {
        Some(name) => Ok(name.to_string()),
        None => Err(VapError {
            index,
            name: Some(String::new()),
            field: "metadata.name".into(),
            message: "a binding needs a name".into(),
        }),
    }
}

/// A binding's `paramRef` (name or selector, not both) and `matchResources` rules, as the API
/// server validates them. `Err((field, message))`.
pub(crate) fn check_binding(
    param_ref: Option<&ParamRef>,
    match_resources: Option<&MatchResources>,
) -> Result<(), (String, String)> {
    if let Some(r) = param_ref {
        match (&r.name, &r.selector) {
            (Some(_), Some(_)) => {
                return Err(("spec.paramRef".into(), "name and selector are mutually exclusive: set one".into()))
            }
            (None, None) => return Err(("spec.paramRef".into(), "one of name or selector is required".into())),
            _ => {}
        }
    }
    if let Some(m) = match_resources {
        for (at, rules) in [
            ("spec.matchResources.resourceRules", &m.resource_rules),
            ("spec.matchResources.excludeResourceRules", &m.exclude_resource_rules),
        ] {
            validate_rules(rules, at)?;
        }
    }
    Ok(())
}

/// The policy of `kind` named `name`, with its index among `objects`.
pub(crate) fn find_policy<'o>(objects: &'o [Value], kind: &str, name: &str) -> Option<(usize, &'o Value)> {
    objects.iter().enumerate().find(|(_, p)| is_kind(p, kind) && name_of(p) == Some(name))
}

/// A policy's `matchConstraints` (which must name resources: `missing_rules` says so otherwise),
/// and the selectors of both it and the binding's `matchResources`. `Err((field, message))`.
pub(crate) fn check_match(
    constraints: &MatchResources,
    binding: Option<&MatchResources>,
    missing_rules: &str,
) -> Result<(), (String, String)> {
    if constraints.resource_rules.is_empty() {
        return Err(("spec.matchConstraints.resourceRules".into(), missing_rules.into()));
    }
    for (at, rules) in [
        ("spec.matchConstraints.resourceRules", &constraints.resource_rules),
        ("spec.matchConstraints.excludeResourceRules", &constraints.exclude_resource_rules),
    ] {
        validate_rules(rules, at)?;
    }
    for (which, m) in [("spec.matchConstraints", Some(constraints)), ("binding matchResources", binding)] {
        for (sel_name, sel) in m
            .iter()
            .flat_map(|m| [("namespaceSelector", &m.namespace_selector), ("objectSelector", &m.object_selector)])
        {
            if let Some(e) = sel.as_ref().and_then(|s| s.validate().err()) {
                return Err((format!("{which}.{sel_name}"), e));
            }
        }
    }
    Ok(())
}

/// Compiles every binding in `objects` (policies, bindings and param objects, in any order).
/// As the API server, refuses two policies of one name (one would silently hide the other), and
/// policies and bindings without a name.
pub fn compile(objects: &[Value]) -> Result<Vec<CompiledBinding>, VapError> {
    check_policy_names(objects, POLICY_KIND)?;
    let bundled_params = bundled_params(objects);
    let mut out = Vec::new();
    for (index, b) in objects.iter().enumerate().filter(|(_, v)| is_kind(v, BINDING_KIND)) {
        let binding_name = binding_name(index, b)?;
        let error = |field: &str, message: String| VapError {
            index,
            name: Some(binding_name.clone()),
            field: field.to_string(),
            message,
        };
        let spec: BindingSpec = parse(index, b, Some(&binding_name))?;
        check_binding(spec.param_ref.as_ref(), spec.match_resources.as_ref())
            .map_err(|(field, message)| error(&field, message))?;
        let Some((policy_index, policy)) = find_policy(objects, POLICY_KIND, &spec.policy_name) else {
            return Err(error(
                "spec.policyName",
                format!("no ValidatingAdmissionPolicy named `{}` is among the policies", spec.policy_name),
            ));
        };
        let actions = &spec.validation_actions;
        let action = if actions.is_empty() {
            return Err(error("spec.validationActions", "must name at least one of Deny, Warn, Audit".into()));
        } else if actions.contains(&ValidationAction::Deny) && actions.contains(&ValidationAction::Warn) {
            return Err(error("spec.validationActions", "Deny and Warn cannot be used together".into()));
        } else if actions.contains(&ValidationAction::Deny) {
            Action::Deny
        } else if actions.contains(&ValidationAction::Warn) {
            Action::Warn
        } else {
            Action::Audit
        };
        let policy_name = spec.policy_name.clone();
        let check = compile_policy(policy_index, policy, &policy_name, spec, bundled_params.clone())?;
        out.push(CompiledBinding { id: format!("{policy_name}/{binding_name}"), policy: policy_name, action, check });
    }
    Ok(out)
}

fn compile_policy(
    index: usize,
    policy: &Value,
    name: &str,
    binding: BindingSpec,
    bundled_params: Vec<Value>,
) -> Result<BindingCheck, VapError> {
    let error = |field: String, message: String| VapError { index, name: Some(name.to_string()), field, message };
    let spec: PolicySpec = parse(index, policy, Some(name))?;
    let constraints = spec.match_constraints.unwrap_or_default();
    check_match(
        &constraints,
        binding.match_resources.as_ref(),
        "a ValidatingAdmissionPolicy must name the resources it matches",
    )
    .map_err(|(field, message)| error(field, message))?;
    if binding.param_ref.is_some() && spec.param_kind.is_none() {
        return Err(error("spec.paramKind".into(), "the binding has a paramRef but the policy no paramKind".into()));
    }
    if spec.validations.is_empty() && spec.audit_annotations.is_empty() {
        return Err(error("spec.validations".into(), "a policy needs validations or auditAnnotations".into()));
    }
    let validations = spec
        .validations
        .into_iter()
        .map(|v| ValidationSource {
            expression: v.expression,
            message: v.message,
            message_expression: v.message_expression,
            field_path: v.field_path,
            fix: None,
        })
        .collect();
    let validator = Validator::compile(
        &spec.variables,
        &spec.match_conditions,
        validations,
        spec.failure_policy,
        spec.param_kind.is_some(),
        &|i, field| format!("validations[{i}].{field}"),
    )
    .map_err(|e| error(format!("spec.{}", e.field), e.message))?;
    Ok(BindingCheck {
        policy: name.to_string(),
        validator,
        selection: Selection {
            constraints,
            binding_match: binding.match_resources,
            param_kind: spec.param_kind,
            param_ref: binding.param_ref,
            bundled_params,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_follow_kubernetes_guessing() {
        for (kind, resource) in [
            ("Deployment", "deployments"),
            ("Ingress", "ingresses"),
            ("NetworkPolicy", "networkpolicies"),
            ("Gateway", "gateways"),
            ("Endpoints", "endpoints"),
            ("ConfigMap", "configmaps"),
        ] {
            assert_eq!(resource_of_kind(kind), resource);
        }
    }
}
