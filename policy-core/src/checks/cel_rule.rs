//! `check: cel`: a team's own rule as a CEL expression, with the variables, match conditions and
//! messages of a ValidatingAdmissionPolicy validation.

use super::{parse_params, Applies, CheckSpec, Compiled, ObjectCheck, ParamDoc, ParamError, Target};
use crate::cel::{FailurePolicy, NamedExpression, ValidationSource, Validator};
use crate::finding::Violation;
use crate::object::{Input, Object};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CelParams {
    expression: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    message_expression: Option<String>,
    #[serde(default)]
    variables: Vec<NamedExpression>,
    #[serde(default)]
    match_conditions: Vec<NamedExpression>,
    #[serde(default)]
    field_path: Option<String>,
    #[serde(default)]
    params: Option<Value>,
    #[serde(default)]
    failure_policy: FailurePolicy,
    /// A fix in CEL, in MutatingAdmissionPolicy's JSONPatch shape.
    #[serde(default)]
    fix: Option<CelFix>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CelFix {
    patch_type: String,
    expression: String,
    #[serde(default)]
    description: Option<String>,
    /// Where the fix may change an object (see `CheckSpec::fix_scope`); default: the rule's field path.
    #[serde(default)]
    paths: Option<Vec<String>>,
}

struct CelRule {
    validator: Validator,
    params: Option<Value>,
    fix_scope: Vec<String>,
}

impl ObjectCheck for CelRule {
    fn review(&self, obj: &Object<'_>, input: &Input<'_>, out: &mut Vec<Violation>) {
        self.validator.review(obj, input, self.params.as_ref(), out);
    }

    fn fix_scope(&self) -> Vec<String> {
        self.fix_scope.clone()
    }

    fn context_kinds(&self) -> Vec<String> {
        if self.validator.reads_namespace_object() {
            vec!["Namespace".into()]
        } else {
            Vec::new()
        }
    }
}

fn compile(params: &Value) -> Result<Compiled, ParamError> {
    let p: CelParams = parse_params(params)?;
    let declared_paths = p.fix.as_ref().and_then(|f| f.paths.clone());
    if let Some((i, bad)) =
        declared_paths.iter().flatten().enumerate().find(|(_, p)| !(p.starts_with('/') || p.starts_with("**/")))
    {
        return Err(ParamError::new(
            format!("fix.paths[{i}]"),
            format!("`{bad}` is not a JSON Pointer (`/spec/replicas`; `*` for one segment, a leading `**` for any)"),
        ));
    }
    let fix = match p.fix {
        Some(f) if f.patch_type != "JSONPatch" => {
            return Err(ParamError::new(
                "fix.patchType",
                format!("`{}`: a fix is a `JSONPatch` (as in a MutatingAdmissionPolicy)", f.patch_type),
            ))
        }
        Some(f) => Some((f.expression, f.description.unwrap_or_else(|| "apply the rule's CEL fix".into()))),
        None => None,
    };
    let validation = ValidationSource {
        expression: p.expression,
        message: p.message,
        message_expression: p.message_expression,
        field_path: p.field_path,
        fix,
    };
    let validator = Validator::compile(
        &p.variables,
        &p.match_conditions,
        vec![validation],
        p.failure_policy,
        p.params.is_some(),
        &|_, field| field.to_string(),
    )
    .map_err(|e| ParamError::new(e.field, e.message))?;
    let has_fix = validator.validations.iter().any(|v| v.fix.is_some());
    let fix_scope = match declared_paths {
        Some(paths) => paths,
        None if !has_fix => Vec::new(),
        None => match validator.validations.first().and_then(|v| v.field_path.as_ref()) {
            Some(path) => vec![crate::fix::pointer_of(path)],
            None => {
                return Err(ParamError::new(
                    "fix.paths",
                    "say where the fix may change the object: `paths` (JSON Pointers such as `/spec/replicas`) or \
                     the rule's `fieldPath`",
                ))
            }
        },
    };
    Ok(Compiled::Object(Box::new(CelRule { validator, params: p.params, fix_scope })))
}

pub static CEL: CheckSpec = CheckSpec {
    id: super::CEL_CHECK_ID,
    target: Target::Kubernetes,
    applies_to: Applies::Any,
    summary: super::doc(
        "A team's own rule in CEL, as a ValidatingAdmissionPolicy validation writes it: `expression` must be \
         true for the object to pass. Expressions see `object`, `oldObject`, `request`, `params`, \
         `namespaceObject` and `variables`, and the Kubernetes CEL libraries; they compile once when the \
         rule set loads. Narrow it to kinds with `match`.",
    ),
    params: &[
        ParamDoc {
            name: "expression",
            ty: "CEL",
            default: "required",
            description: super::doc("Must evaluate to true for the object to pass."),
        },
        ParamDoc {
            name: "message",
            ty: "string",
            default: "`failed expression: <expression>`",
            description: super::doc("Reported when the expression is false."),
        },
        ParamDoc {
            name: "messageExpression",
            ty: "CEL",
            default: "none",
            description: super::doc("A string expression for the message; `message` is used if it fails."),
        },
        ParamDoc {
            name: "variables",
            ty: "list of {name, expression}",
            default: "[]",
            description: super::doc("Named sub-expressions, read as `variables.<name>`, evaluated lazily in order."),
        },
        ParamDoc {
            name: "matchConditions",
            ty: "list of {name, expression}",
            default: "[]",
            description: super::doc("The rule applies only when every condition is true."),
        },
        ParamDoc {
            name: "fieldPath",
            ty: "string",
            default: "the one `object.` field the expression reads, else the object",
            description: super::doc("Where findings point (`spec.replicas`), for file:line."),
        },
        ParamDoc {
            name: "params",
            ty: "any",
            default: "null",
            description: super::doc("Bound to `params` in the expressions."),
        },
        ParamDoc {
            name: "failurePolicy",
            ty: "Fail | Ignore",
            default: "Fail",
            description: super::doc("When an expression cannot be evaluated: report it (Fail) or let it pass."),
        },
        ParamDoc {
            name: "fix",
            ty: "{patchType: JSONPatch, expression, description, paths}",
            default: "none",
            description: super::doc(
                "The finding's fix, written as a MutatingAdmissionPolicy's JSONPatch mutation: `expression` builds \
                 `[JSONPatch{op, path, value}]` with the same variables; `meshguard fix` writes it into the file. \
                 `paths` (JSON Pointers; `*` for one segment, a leading `**` for any) say where it may change \
                 the object, by default the rule's field path: a fix that changes anything else is dropped.",
            ),
        },
    ],
    example_params: super::doc(
        "{expression: 'object.spec.replicas <= params.max', params: {max: 5}, \
         message: 'at most 5 replicas per Deployment', \
         fix: {patchType: JSONPatch, description: 'cap the replicas', \
         expression: \"[JSONPatch{op: 'replace', path: '/spec/replicas', value: params.max}]\"}}",
    ),
    passing_example: super::doc(
        "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec: {replicas: 3}
",
    ),
    failing_example: super::doc(
        "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  replicas: 8 # the load test's
",
    ),
    fix: crate::checks::doc("The rule's own `fix`, when it has one: the JSONPatch its CEL builds for the object. A fix that fails to evaluate, or is not a JSON Patch, leaves the finding without one."),
    fix_scope: &[],
    compile,
    native: crate::checks::Native::Vap(native_cel),
};

/// A `cel` rule is a ValidatingAdmissionPolicy validation already: its native form is itself,
/// with its `params` inlined as a policy variable (`params.x` read as `variables.params.x`), so
/// no param object is needed.
fn native_cel(params: &Value) -> Result<crate::checks::NativeForm, ParamError> {
    use crate::checks::native::lit;
    let mut p: CelParams = parse_params(params)?;
    let written = p.expression.trim().to_string();
    let inlined = match p.params.take().filter(|v| !v.is_null()) {
        None => None,
        Some(values) => {
            let inline = |text: &mut String| -> Result<(), ParamError> {
                *text = crate::cel::rename_root(text, "params", "variables.params").ok_or_else(|| {
                    ParamError::new("", "its expressions could not be rewritten to read the params inlined")
                })?;
                Ok(())
            };
            inline(&mut p.expression)?;
            for text in p.message_expression.iter_mut().chain(p.fix.iter_mut().map(|f| &mut f.expression)) {
                inline(text)?;
            }
            for n in p.variables.iter_mut().chain(p.match_conditions.iter_mut()) {
                inline(&mut n.expression)?;
            }
            if p.variables.iter().any(|n| n.name == "params") {
                return Err(ParamError::new("", "a variable named `params` would clash with the inlined params"));
            }
            Some(crate::checks::native::params_literal(&values))
        }
    };
    let message = match (&p.message_expression, &p.message) {
        (Some(m), _) => m.clone(),
        (None, Some(m)) => lit(m),
        (None, None) => lit(&format!("failed expression: {written}")),
    };
    let field_path = p.field_path.as_deref().unwrap_or("").trim().trim_start_matches('.').to_string();
    let named = |list: &[NamedExpression]| list.iter().map(|n| (n.name.clone(), n.expression.clone())).collect();
    // Its fix is made where the validation fails, as a MutatingAdmissionPolicy runs one.
    let mutations = p
        .fix
        .iter()
        .map(|fix| crate::checks::NativeMutation::new(format!("({}) ? [] : ({})", p.expression, fix.expression)))
        .collect();
    let mut variables: Vec<(String, String)> = inlined.into_iter().map(|v| ("params".to_string(), v)).collect();
    variables.extend(named(&p.variables));
    Ok(crate::checks::NativeForm {
        variables,
        match_conditions: named(&p.match_conditions),
        validations: vec![crate::checks::NativeValidation::new(p.expression, message, &field_path)],
        fail_open: p.failure_policy == FailurePolicy::Ignore,
        mutations,
        mutation_gap: None,
    })
}
