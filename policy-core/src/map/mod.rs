//! MutatingAdmissionPolicy objects run outside an API server: `admissionregistration.k8s.io/v1`
//! (served since Kubernetes 1.36, where the feature is GA), and the `v1beta1` (1.34) and `v1alpha1`
//! (1.32) objects teams still hold, which have the same fields. A RuleSet carries them in
//! `spec.admissionPolicies` beside ValidatingAdmissionPolicies (what `--policies DIR` fills in).
//!
//! Each binding of a policy is one invocation per param object: the policy's and the binding's
//! match criteria (shared with `vap`), then the match conditions, then each mutation in order,
//! each seeing the object the previous one left: `JSONPatch` (CEL building `JSONPatch{op, path,
//! value}`, applied as the API server's JSON Patch library does, see [`apply_json_patch`]) or
//! `ApplyConfiguration` (CEL building `Object{...}`, merged as server-side apply merges, see
//! [`merge`]). Invocations run in policy name, then binding name order (the API server promises no
//! order); with `reinvocationPolicy: IfNeeded` a binding runs once more when a later mutation
//! changed the object. An error is the policy's `failurePolicy`'s: `Fail` denies the object (a
//! finding worded as the API server's denial), `Ignore` drops it and keeps what earlier mutations
//! did.

pub mod merge;

use crate::cel::{Expression, FailurePolicy, NamedExpression, Validator};
use crate::finding::{Action, Finding};
use crate::fix::{Fix, Patch, PolicyMutations};
use crate::object::{Input, Object};
use crate::path::FieldPath;
use crate::vap::{
    binding_name, bundled_params, check_binding, check_match, check_policy_names, find_policy, is_kind, parse,
    MatchResources, ParamKind, ParamRef, Selected, Selection,
};
use serde::Deserialize;
use serde_json::Value;

pub const POLICY_KIND: &str = "MutatingAdmissionPolicy";
pub const BINDING_KIND: &str = "MutatingAdmissionPolicyBinding";
/// The `check` of the findings a policy's failure or change makes.
pub const CHECK_ID: &str = "mutating-admission-policy";

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PolicySpec {
    #[serde(default)]
    param_kind: Option<ParamKind>,
    #[serde(default)]
    match_constraints: Option<MatchResources>,
    #[serde(default)]
    variables: Vec<NamedExpression>,
    #[serde(default)]
    mutations: Vec<RawMutation>,
    #[serde(default)]
    failure_policy: FailurePolicy,
    #[serde(default)]
    match_conditions: Vec<NamedExpression>,
    #[serde(default)]
    reinvocation_policy: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawMutation {
    #[serde(default)]
    patch_type: Option<String>,
    #[serde(default)]
    json_patch: Option<RawExpression>,
    #[serde(default)]
    apply_configuration: Option<RawExpression>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpression {
    #[serde(default)]
    expression: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BindingSpec {
    policy_name: String,
    #[serde(default)]
    param_ref: Option<ParamRef>,
    #[serde(default)]
    match_resources: Option<MatchResources>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PatchKind {
    JsonPatch,
    ApplyConfiguration,
}

/// One binding of one policy, compiled.
pub struct MutatingBinding {
    /// `policy/binding`, as findings name it.
    pub id: String,
    pub policy: String,
    pub binding: String,
    /// `reinvocationPolicy: IfNeeded`.
    pub reinvoke: bool,
    /// Variables, match conditions and the failure policy (no validations).
    validator: Validator,
    mutations: Vec<(PatchKind, Expression)>,
    selection: Selection,
}

/// An error in one of the objects: `index` into the list, `field` inside that object.
pub use crate::vap::VapError as MapError;

fn error(index: usize, name: &str, field: impl Into<String>, message: impl Into<String>) -> MapError {
    MapError { index, name: Some(name.to_string()), field: field.into(), message: message.into() }
}

/// The operations a MutatingAdmissionPolicy may match: there is no object to mutate on DELETE.
const OPERATIONS: [&str; 4] = ["*", "CONNECT", "CREATE", "UPDATE"];

fn validate_operations(m: &MatchResources, at: &str) -> Result<(), (String, String)> {
    for (i, rule) in m.resource_rules.iter().enumerate() {
        if let Some((j, op)) = rule.operations.iter().enumerate().find(|(_, op)| !OPERATIONS.contains(&op.as_str())) {
            return Err((
                format!("{at}.resourceRules[{i}].operations[{j}]"),
                format!("Unsupported value: \"{op}\": supported values: \"*\", \"CONNECT\", \"CREATE\", \"UPDATE\""),
            ));
        }
    }
    Ok(())
}

/// Compiles every MutatingAdmissionPolicyBinding in `objects` (policies, bindings and param
/// objects, in any order; other kinds are ignored), in the order they run: by policy name, then
/// binding name.
pub fn compile(objects: &[Value]) -> Result<Vec<MutatingBinding>, MapError> {
    check_policy_names(objects, POLICY_KIND)?;
    let bundled_params = bundled_params(objects);
    let mut out = Vec::new();
    for (index, b) in objects.iter().enumerate().filter(|(_, v)| is_kind(v, BINDING_KIND)) {
        let binding = binding_name(index, b)?;
        let spec: BindingSpec = parse(index, b, Some(&binding))?;
        check_binding(spec.param_ref.as_ref(), spec.match_resources.as_ref())
            .and_then(|()| {
                spec.match_resources.as_ref().map_or(Ok(()), |m| validate_operations(m, "spec.matchResources"))
            })
            .map_err(|(field, message)| error(index, &binding, field, message))?;
        let Some((policy_index, policy)) = find_policy(objects, POLICY_KIND, &spec.policy_name) else {
            return Err(error(
                index,
                &binding,
                "spec.policyName",
                format!("no MutatingAdmissionPolicy named `{}` is among the policies", spec.policy_name),
            ));
        };
        out.push(compile_policy(policy_index, policy, binding, spec, bundled_params.clone())?);
    }
    out.sort_by(|a, b| (&a.policy, &a.binding).cmp(&(&b.policy, &b.binding)));
    Ok(out)
}

fn compile_policy(
    index: usize,
    policy: &Value,
    binding: String,
    binding_spec: BindingSpec,
    bundled_params: Vec<Value>,
) -> Result<MutatingBinding, MapError> {
    let name = binding_spec.policy_name.clone();
    let err = |field: String, message: String| error(index, &name, field, message);
    let spec: PolicySpec = parse(index, policy, Some(&name))?;
    let constraints = spec.match_constraints.unwrap_or_default();
    check_match(
        &constraints,
        binding_spec.match_resources.as_ref(),
        "Required value: at least one resourceRule must be defined to provide type information",
    )
    .and_then(|()| validate_operations(&constraints, "spec.matchConstraints"))
    .map_err(|(f, m)| err(f, m))?;
    if binding_spec.param_ref.is_some() && spec.param_kind.is_none() {
        return Err(err("spec.paramKind".into(), "the binding has a paramRef but the policy no paramKind".into()));
    }
    let reinvoke = match spec.reinvocation_policy.as_deref() {
        Some("IfNeeded") => true,
        Some("Never") => false,
        None | Some("") => {
            return Err(err("spec.reinvocationPolicy".into(), "Required value: Never or IfNeeded".into()))
        }
        Some(other) => {
            return Err(err(
                "spec.reinvocationPolicy".into(),
                format!("Unsupported value: \"{other}\": supported values: \"Never\", \"IfNeeded\""),
            ))
        }
    };
    if spec.mutations.is_empty() {
        return Err(err("spec.mutations".into(), "Required value: mutations must contain at least one item".into()));
    }
    let validator = Validator::compile(
        &spec.variables,
        &spec.match_conditions,
        Vec::new(),
        spec.failure_policy,
        spec.param_kind.is_some(),
        &|_, f| f.to_string(),
    )
    .map_err(|e| err(format!("spec.{}", e.field), e.message))?;
    let declared: Vec<String> = validator.variables.iter().map(|(n, _)| n.clone()).collect();
    let mut mutations = Vec::new();
    for (i, m) in spec.mutations.into_iter().enumerate() {
        let at = |f: &str| format!("spec.mutations[{i}].{f}");
        let (kind, raw, other, other_name) = match m.patch_type.as_deref() {
            Some("JSONPatch") => {
                (PatchKind::JsonPatch, m.json_patch, m.apply_configuration.is_some(), "applyConfiguration")
            }
            Some("ApplyConfiguration") => {
                (PatchKind::ApplyConfiguration, m.apply_configuration, m.json_patch.is_some(), "jsonPatch")
            }
            None => return Err(err(at("patchType"), "Required value: JSONPatch or ApplyConfiguration".into())),
            Some(other) => {
                return Err(err(
                    at("patchType"),
                    format!("Unsupported value: \"{other}\": supported values: \"ApplyConfiguration\", \"JSONPatch\""),
                ))
            }
        };
        let field = if kind == PatchKind::JsonPatch { "jsonPatch" } else { "applyConfiguration" };
        if other {
            return Err(err(
                at(other_name),
                format!("must not be specified when patchType is {}", m.patch_type.unwrap_or_default()),
            ));
        }
        let Some(raw) = raw.filter(|r| !r.expression.trim().is_empty()) else {
            return Err(err(at(&format!("{field}.expression")), "Required value".into()));
        };
        let expression = match kind {
            PatchKind::JsonPatch => {
                Expression::compile_json_patch(&raw.expression, &declared, spec.param_kind.is_some())
            }
            PatchKind::ApplyConfiguration => {
                Expression::compile_mutation(&raw.expression, &declared, spec.param_kind.is_some())
            }
        }
        .map_err(|e| err(at(&format!("{field}.expression")), e))?;
        mutations.push((kind, expression));
    }
    Ok(MutatingBinding {
        id: format!("{name}/{binding}"),
        policy: name,
        binding,
        reinvoke,
        validator,
        mutations,
        selection: Selection {
            constraints,
            binding_match: binding_spec.match_resources,
            param_kind: spec.param_kind,
            param_ref: binding_spec.param_ref,
            bundled_params,
        },
    })
}

/// What one invocation did.
pub enum Invocation {
    /// It does not match, or its match conditions are false.
    Skipped,
    /// It ran: the object after it (the same when nothing changed).
    Ran(Value),
    /// It failed under `failurePolicy: Fail`: the API server's denial.
    Denied(String),
}

impl MutatingBinding {
    /// Runs this binding on `value` (reviewed among `input`, for params and namespaces).
    pub fn invoke(&self, value: &Value, default_namespace: &str, input: &Input<'_>) -> Invocation {
        let obj = Object::new(value, default_namespace);
        let operation = input.request.and_then(|r| r.get("operation")).and_then(Value::as_str).unwrap_or("CREATE");
        if operation == "DELETE" {
            return Invocation::Skipped;
        }
        let deny = |why: String| {
            Invocation::Denied(format!(
                "policy '{}' with binding '{}' denied request: {why}",
                self.policy, self.binding
            ))
        };
        let fails = self.validator.failure_policy == FailurePolicy::Fail;
        let invocations = match self.selection.select(&obj, input, operation) {
            Selected::No => return Invocation::Skipped,
            Selected::Unknown(why) if fails => return deny(format!("cannot be evaluated offline: {why}")),
            Selected::Unknown(_) => return Invocation::Skipped,
            Selected::Invocations(params) => params,
        };
        let mut current = value.clone();
        let mut ran = false;
        for p in invocations {
            let obj = Object::new(&current, default_namespace);
            match self.validator.conditions_hold(&obj, input, p) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) if fails => return deny(e),
                Err(_) => continue,
            }
            ran = true;
            for (kind, expression) in &self.mutations {
                let obj = Object::new(&current, default_namespace);
                let patched = match kind {
                    PatchKind::JsonPatch => self
                        .validator
                        .eval_json(expression, &obj, input, p, true)
                        .and_then(|ops| serde_json::from_value::<Patch>(ops).map_err(|e| e.to_string()))
                        .and_then(|patch| apply_json_patch(&current, &patch).map_err(|e| format!("JSON Patch: {e}"))),
                    PatchKind::ApplyConfiguration => {
                        self.validator.eval_json(expression, &obj, input, p, false).and_then(|patch| {
                            let mut merged = current.clone();
                            merge::apply_configuration(&mut merged, &patch, obj.kind)
                                .map(|()| merged)
                                .map_err(|e| format!("error applying patch: {e}"))
                        })
                    }
                };
                match patched {
                    Ok(next) => current = next,
                    Err(e) if fails => return deny(e),
                    // Ignore: this mutation is dropped; the ones before it stay applied.
                    Err(_) => {}
                }
            }
        }
        if ran {
            Invocation::Ran(current)
        } else {
            Invocation::Skipped
        }
    }
}

/// `patch` applied to `object` as the API server's JSON Patch library (evanphx/json-patch v4)
/// applies it: `replace` of a missing key of an object adds it, and a failed `test` drops the whole
/// patch without an error (the object is returned as it was).
pub fn apply_json_patch(object: &Value, patch: &Patch) -> Result<Value, String> {
    use json_patch::PatchOperation;
    let mut doc = object.clone();
    for op in &patch.0 {
        let single = Patch(vec![op.clone()]);
        match json_patch::patch(&mut doc, &single) {
            Ok(()) => {}
            Err(_) if matches!(op, PatchOperation::Test(_)) => return Ok(object.clone()),
            Err(e) => match op {
                PatchOperation::Replace(r) => {
                    let parent = r.path.parent().map(|p| p.to_string()).unwrap_or_default();
                    if doc.pointer(&parent).is_some_and(Value::is_object) {
                        let add = json_patch::AddOperation { path: r.path.clone(), value: r.value.clone() };
                        json_patch::patch(&mut doc, &Patch(vec![PatchOperation::Add(add)]))
                            .map_err(|e| e.to_string())?;
                    } else {
                        return Err(e.to_string());
                    }
                }
                _ => return Err(e.to_string()),
            },
        }
    }
    Ok(doc)
}

fn finding(
    b: &MutatingBinding,
    obj: &Object<'_>,
    index: usize,
    action: Action,
    message: String,
    fix: Option<Fix>,
) -> Finding {
    Finding {
        rule: b.id.clone(),
        check: CHECK_ID,
        action,
        message,
        kind: obj.kind.to_string(),
        namespace: obj.namespace.to_string(),
        name: obj.name.to_string(),
        path: FieldPath::root(),
        object_index: index,
        fix,
    }
}

/// Runs `bindings` over each of `values` (in place; only object `only` when given): every binding in order, then once more each
/// `IfNeeded` binding that ran before a later one changed the object. `context` holds the objects
/// as they were (params, namespaces); `request` is the AdmissionRequest at admission.
pub fn apply_all(
    bindings: &[MutatingBinding],
    values: &mut [Value],
    default_namespace: &str,
    request: Option<&Value>,
    only: Option<usize>,
) -> PolicyMutations {
    let context: Vec<Value> = values.to_vec();
    let mut input = Input::new(&context, default_namespace);
    if let Some(r) = request {
        input = input.with_request(r);
    }
    let mut out = PolicyMutations { patches: vec![Patch(Vec::new()); values.len()], ..Default::default() };
    for (index, value) in values.iter_mut().enumerate().filter(|(i, _)| only.is_none_or(|o| o == *i)) {
        let before = value.clone();
        let mut to_reinvoke: Vec<usize> = Vec::new();
        let mut pass: Vec<usize> = (0..bindings.len()).collect();
        for round in 0..2 {
            let mut reran_any_change = false;
            for &i in &pass {
                let b = &bindings[i];
                match b.invoke(value, default_namespace, &input) {
                    Invocation::Skipped => {}
                    Invocation::Denied(message) => {
                        let obj = Object::new(&before, default_namespace);
                        out.denied.push(finding(b, &obj, index, Action::Deny, message, None));
                    }
                    Invocation::Ran(after) => {
                        if after != *value {
                            let diff = json_patch::diff(value, &after);
                            let obj = Object::new(&before, default_namespace);
                            let description =
                                format!("apply MutatingAdmissionPolicy `{}` (binding `{}`)", b.policy, b.binding);
                            let message = format!(
                                "MutatingAdmissionPolicy `{}` (binding `{}`) changes this object",
                                b.policy, b.binding
                            );
                            out.changed.push(finding(
                                b,
                                &obj,
                                index,
                                Action::Audit,
                                message,
                                Some(Fix { description, patch: diff.clone() }),
                            ));
                            out.patches[index].0.extend(diff.0);
                            *value = after;
                            reran_any_change = true;
                            // Earlier IfNeeded bindings see an object changed after them.
                            if round == 0 {
                                to_reinvoke.extend(
                                    pass.iter().copied().take_while(|&j| j != i).filter(|&j| bindings[j].reinvoke),
                                );
                            }
                        }
                    }
                }
            }
            if round == 1 || !reran_any_change {
                break;
            }
            to_reinvoke.sort_unstable();
            to_reinvoke.dedup();
            pass = std::mem::take(&mut to_reinvoke);
            if pass.is_empty() {
                break;
            }
        }
    }
    out
}
