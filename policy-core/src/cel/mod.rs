//! CEL, the language of Kubernetes' ValidatingAdmissionPolicy, for a team's own rules: one shared
//! environment with the Kubernetes CEL libraries, expressions compiled once when a RuleSet loads,
//! and objects bound straight from their JSON tree (strings borrowed, integers kept as `int`).
//!
//! [`Validator`] is the one evaluation path: the `cel` check is a validator with one validation,
//! and each ValidatingAdmissionPolicy binding (see `vap`) is a validator with the policy's list.

mod ast;
#[doc(hidden)]
pub mod conformance;
pub mod cost;
mod interruptible;
mod k8s;
mod limits;
mod mutation;
mod string_format;
mod two_variable;
mod typecheck;
mod zero_values;

use limits::{check_shape, usable_evaluated_message, within_value_limits};
pub use limits::{
    MAX_EVALUATED_MESSAGE_BYTES, MAX_EXPRESSION_BYTES, MAX_NESTING, MAX_OPERATORS, MAX_VARIABLE_VALUE_BYTES,
    MAX_VARIABLE_VALUE_NESTING,
};
pub use typecheck::Ty;

use crate::finding::Violation;
use crate::object::{Input, Object};
use crate::path::FieldPath;
use cel::common::traits::Indexer;
use cel::common::types::{CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt};
use cel::common::value::{CowVal, Val};
use cel::{Context, Env, ExecutionError, IdedExpr};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// Names an expression may use besides the ones it binds itself.
const KNOWN_VARIABLES: &[&str] =
    &["object", "oldObject", "request", "params", "namespaceObject", "variables", "authorizer", "format", "jsonpatch"];

fn env() -> Result<&'static Arc<Env>, String> {
    static ENV: OnceLock<Result<Arc<Env>, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        env.add_extension(cel::extensions::strings).map_err(|e| e.to_string())?;
        env.add_extension(cel::extensions::lists).map_err(|e| e.to_string())?;
        k8s::register(&mut env).map_err(|e| e.to_string())?;
        interruptible::register(&mut env).map_err(|e| e.to_string())?;
        two_variable::register(&mut env).map_err(|e| e.to_string())?;
        zero_values::register(&mut env).map_err(|e| e.to_string())?;
        string_format::register(&mut env).map_err(|e| e.to_string())?;
        // MutatingAdmissionPolicy's patch type: a fix written in CEL builds a list of these.
        env.add_type(
            cel::StructDef::new("JSONPatch".to_owned())
                .add_field("op".to_owned(), cel::common::types::STRING_TYPE)
                .add_field("path".to_owned(), cel::common::types::STRING_TYPE)
                .add_field_with_default("value".to_owned(), Box::new(CelNull))
                .add_field_with_default("from".to_owned(), Box::new(CelString::from(""))),
        )
        .map_err(|e| e.to_string())?;
        Ok(Arc::new(env))
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// One compiled expression and what it refers to.
pub struct Expression {
    source: String,
    /// The parsed expression, every comprehension made to poll for a stop ([`interruptible`]).
    tree: IdedExpr,
    /// `variables.<name>` it reads, as indexes into the validator's variable list.
    reads: Vec<usize>,
    /// Its type, as the load-time check found it ([`typecheck`]).
    output: Ty,
    /// Its estimated cost in the API server's units ([`cost`]).
    cost: cost::Range,
    uses_authorizer: bool,
    /// What it reads of each bound value: evaluation converts only that (see [`Reads`]).
    object: Reads,
    old_object: Reads,
    request: Reads,
    params: Reads,
    namespace_object: Reads,
}

/// The part of a JSON value an expression can reach. Converting a whole Deployment into CEL
/// values costs microseconds; `object.spec.replicas` needs two map entries.
#[derive(Debug, Clone, PartialEq)]
enum Reads {
    Nothing,
    All,
    /// Only these keys (of a JSON object), each with what is read below it.
    Keys(Vec<(String, Reads)>),
}

impl Reads {
    /// From the `root.a.b` chains of `source`: a bare `root` (indexed, passed whole, iterated)
    /// reads everything, a chain reads the value at its end whole.
    fn of(source: &str, root: &str, referenced: bool) -> Reads {
        if !referenced {
            return Reads::Nothing;
        }
        let mut reads = Reads::Keys(Vec::new());
        for chain in idents_after(source, root) {
            reads.add(&chain);
        }
        reads
    }

    fn add(&mut self, chain: &[&str]) {
        let Reads::Keys(keys) = self else { return };
        let Some((first, rest)) = chain.split_first() else {
            *self = Reads::All;
            return;
        };
        match keys.iter_mut().find(|(k, _)| k == first) {
            Some((_, below)) => below.add(rest),
            None => {
                let mut below = Reads::Keys(Vec::new());
                below.add(rest);
                keys.push((first.to_string(), below));
            }
        }
    }

    fn convert<'v>(&self, value: Option<&'v Value>) -> Box<dyn Val + 'v> {
        self.convert_without(value, &[])
    }

    /// [`Reads::convert`], leaving out the top-level keys in `hidden` (the AdmissionRequest's
    /// `object` and `oldObject`, bound on their own), without copying the rest.
    fn convert_without<'v>(&self, value: Option<&'v Value>, hidden: &[&str]) -> Box<dyn Val + 'v> {
        let shown = |key: &str| !hidden.contains(&key);
        match (self, value) {
            (_, None) | (Reads::Nothing, _) => Box::new(CelNull),
            (Reads::Keys(keys), Some(Value::Object(map))) => Box::new(Selected {
                fields: keys
                    .iter()
                    .filter(|(k, _)| shown(k))
                    .filter_map(|(k, below)| {
                        map.get_key_value(k.as_str()).map(|(key, v)| (key.as_str(), below.convert(Some(v))))
                    })
                    .collect(),
            }),
            (Reads::All, Some(Value::Object(map))) if !hidden.is_empty() => Box::new(CelMap::from(
                map.iter()
                    .filter(|(k, _)| shown(k))
                    .map(|(k, v)| (CelMapKey::from(k.as_str()), json_to_val(v)))
                    .collect::<HashMap<_, _>>(),
            )),
            (_, Some(v)) => json_to_val(v),
        }
    }
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

impl Expression {
    /// Compiles `source`; `variables` are the names declared before it (an expression may read
    /// only those, as in a ValidatingAdmissionPolicy). Errors name the line and column inside the
    /// expression.
    pub fn compile(source: &str, variables: &[String]) -> Result<Expression, String> {
        Self::compile_as(source, &untyped(variables), Form::Plain, Roots::Admission { params: true })
    }

    /// [`Expression::compile`] with the declared variables' types, which `variables.<name>`
    /// has in the type check; `params` is declared only when the policy has params (a
    /// `paramKind`, a `cel` rule's `params`), as the API server declares it.
    pub fn compile_typed(source: &str, variables: &[(String, Ty)], params: bool) -> Result<Expression, String> {
        Self::compile_as(source, variables, Form::Plain, Roots::Admission { params })
    }

    /// [`Expression::compile`] for a MutatingAdmissionPolicy's mutation: `Object{...}`
    /// initializers are allowed (checked and built as maps, see [`mutation`]).
    pub fn compile_mutation(source: &str, variables: &[String], params: bool) -> Result<Expression, String> {
        Self::compile_as(source, &untyped(variables), Form::Mutation, Roots::Admission { params })
    }

    /// A MutatingAdmissionPolicy's JSONPatch mutation (and a `cel` rule's fix, written the same
    /// way): an expression building `[JSONPatch{op, path, value, from}]`, compiled as written
    /// first, so errors point into what the author wrote, then with the patches turned into plain
    /// maps, which the host reads as JSON (see `Scope::eval_patch`).
    pub fn compile_json_patch(source: &str, variables: &[String], params: bool) -> Result<Expression, String> {
        let patches = Ty::List(Box::new(Ty::Named("JSONPatch")));
        Self::compile_mutation(source, variables, params)?.expect_type(&patches)?;
        let as_maps =
            format!("({}).map(p, {{'op': p.op, 'path': p.path, 'value': p.value, 'from': p.from}})", source.trim());
        Self::compile_mutation(&as_maps, variables, params)
    }

    /// Its estimated cost in the API server's units: what every evaluation costs at least, and
    /// at most what the largest request can make it cost.
    pub fn estimated_cost(&self) -> cost::Range {
        self.cost
    }

    /// Its type, as the load-time check found it (`dyn` where that depends on the data).
    pub fn output_type(&self) -> &Ty {
        &self.output
    }

    /// An error when its type cannot be `want` (a validation must be a `bool`), worded as the
    /// API server refuses such a policy.
    pub fn expect_type(&self, want: &Ty) -> Result<(), String> {
        if typecheck::assignable(want, &self.output) {
            Ok(())
        } else {
            Err(format!("must evaluate to {want} but got {}", self.output))
        }
    }

    fn compile_as(
        source: &str,
        variables: &[(String, Ty)],
        form: Form,
        roots: Roots<'_>,
    ) -> Result<Expression, String> {
        if source.len() > MAX_EXPRESSION_BYTES {
            return Err(format!("the expression is {} bytes; the limit is {MAX_EXPRESSION_BYTES} bytes", source.len()));
        }
        if source.trim().is_empty() {
            return Err("the expression is empty".into());
        }
        check_shape(source)?;
        let quoted = ast::quote_free(source)?;
        let parsed = quoted.as_ref().map_or(source, |(text, _)| text.as_str());
        let (mut tree, info) = env()?.parser().parse_with_source_info(parsed).map_err(|errors| {
            let multiline = source.contains('\n');
            let parts: Vec<String> = errors
                .errors
                .iter()
                .map(|e| {
                    let (line, column) = (e.pos.0.max(1), e.pos.1.max(0) + 1);
                    if multiline {
                        format!("syntax error at line {line}, column {column} of the expression: {}", e.msg)
                    } else {
                        format!("syntax error at column {column} of the expression: {}", e.msg)
                    }
                })
                .collect();
            if parts.is_empty() {
                "syntax error in the expression".to_string()
            } else {
                parts.join("; ")
            }
        })?;
        let references = tree.references();
        let uses_authorizer = references.has_variable("authorizer");
        let mut reads = Vec::new();
        for name in variable_reads(source) {
            match variables.iter().position(|(v, _)| *v == name) {
                Some(i) => reads.push(i),
                None => return Err(format!("`variables.{name}` is not declared before this expression")),
            }
        }
        reads.sort_unstable();
        reads.dedup();
        let reads_of = |root: &str| Reads::of(source, root, references.has_variable(root));
        let (object, old_object, request, params, namespace_object) = (
            reads_of("object"),
            reads_of("oldObject"),
            reads_of("request"),
            reads_of("params"),
            reads_of("namespaceObject"),
        );
        k8s::check_literal_patterns(&mut tree)?;
        ast::check_homogeneous_literals(&mut tree)?;
        if let Some((_, names)) = &quoted {
            ast::restore_quoted_fields(&mut tree, names);
        }
        let checked = match roots {
            Roots::Admission { params } => {
                // Only the variables it reads: a chain of 20,000 stays linear.
                let read: Vec<(String, Ty)> = reads.iter().map(|&i| variables[i].clone()).collect();
                let variables = typecheck::variables(&read);
                let declared = |name: &str| match name {
                    "object" | "oldObject" | "authorizer" => Some(Ty::Dyn),
                    "params" if params => Some(Ty::Dyn),
                    "request" => Some(typecheck::admission_request()),
                    "namespaceObject" => Some(typecheck::namespace()),
                    "variables" => Some(variables.clone()),
                    _ => None,
                };
                Some(typecheck::check(&tree, &info, &declared)?)
            }
            Roots::Bindings(names, _) => {
                Some(typecheck::check(&tree, &info, &|name| names.contains(&name).then_some(Ty::Dyn))?)
            }
            Roots::Unchecked => None,
        };
        let (output, cost) = match checked {
            Some(checked) => {
                string_format::check_literal_calls(&mut tree, &checked.types)?;
                let unknown_text = match roots {
                    Roots::Bindings(_, unknown_text) => unknown_text,
                    _ => cost::UNKNOWN_TEXT,
                };
                let cost = cost::estimate(&tree, &checked.types, unknown_text);
                if cost.min > cost::PER_CALL_LIMIT {
                    return Err(format!(
                        "the expression's estimated cost is at least {}, over the API server's limit of {} for one \
                         evaluation: every evaluation would be stopped",
                        cost.min,
                        cost::PER_CALL_LIMIT
                    ));
                }
                (checked.output, cost)
            }
            None => (Ty::Dyn, cost::Range::default()),
        };
        Ok(Expression {
            source: source.to_string(),
            reads,
            output,
            cost,
            uses_authorizer,
            object,
            old_object,
            request,
            params,
            namespace_object,
            tree: {
                if form == Form::Mutation {
                    mutation::objects_as_maps(&mut tree)?;
                }
                interruptible::rewrite(&mut tree);
                zero_values::rewrite(&mut tree);
                string_format::rewrite(&mut tree);
                tree
            },
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The single `object.a.b.c` field the expression reads, if it reads exactly one: where a
    /// finding points when the rule gives no `fieldPath`.
    pub fn field_hint(&self) -> Option<FieldPath> {
        let mut found: Option<Vec<&str>> = None;
        for chain in object_reads(&self.source) {
            match &found {
                None => found = Some(chain),
                Some(f) if *f == chain => {}
                Some(_) => return None,
            }
        }
        found.filter(|c| !c.is_empty()).map(|c| c.iter().fold(FieldPath::root(), |p, k| p.key(k)))
    }
}

/// How an expression is written.
#[derive(Clone, Copy, PartialEq)]
enum Form {
    Plain,
    /// A MutatingAdmissionPolicy's: `Object{...}` initializers allowed.
    Mutation,
}

/// The names an expression starts from, for the type check.
#[derive(Clone, Copy)]
pub(crate) enum Roots<'a> {
    /// An admission policy's: `object`, `request`, `variables`, ..., and `params` when it has
    /// params.
    Admission { params: bool },
    /// A conformance suite's bindings, each `dyn`, and how long its strings of unknown size
    /// are for the cost estimate.
    Bindings(&'a [&'a str], cost::Range),
    /// No type check (a suite case that disables it).
    Unchecked,
}

fn untyped(names: &[String]) -> Vec<(String, Ty)> {
    names.iter().map(|n| (n.clone(), Ty::Dyn)).collect()
}

/// `variables.<ident>` occurrences outside string literals.
fn variable_reads(source: &str) -> Vec<String> {
    idents_after(source, "variables").into_iter().filter_map(|chain| chain.first().map(|s| s.to_string())).collect()
}

/// The `object.a.b` chains outside string literals (a trailing method call is not a field).
fn object_reads(source: &str) -> Vec<Vec<&str>> {
    idents_after(source, "object")
}

/// For each standalone `root` identifier followed by `.ident.ident...`, the identifiers (the last
/// dropped when it is called as a method).
fn idents_after<'s>(source: &'s str, root: &str) -> Vec<Vec<&'s str>> {
    let bytes = source.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut out = Vec::new();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        if let Some(q) = quote {
            if b == b'\\' {
                i += 2;
                continue;
            }
            if b == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        if b == b'"' || b == b'\'' {
            quote = Some(b);
            i += 1;
            continue;
        }
        let standalone = i == 0 || !(is_ident(bytes[i - 1]) || bytes[i - 1] == b'.');
        if standalone
            && bytes[i..].starts_with(root.as_bytes())
            && bytes.get(i + root.len()).is_none_or(|c| !is_ident(*c))
        {
            let mut j = i + root.len();
            let mut chain = Vec::new();
            while bytes.get(j) == Some(&b'.') {
                let start = j + 1;
                let mut end = start;
                while end < bytes.len() && is_ident(bytes[end]) {
                    end += 1;
                }
                if end == start {
                    break;
                }
                if bytes.get(end) == Some(&b'(') {
                    break;
                }
                chain.push(&source[start..end]);
                j = end;
            }
            out.push(chain);
            i = j.max(i + 1);
            continue;
        }
        i += 1;
    }
    out
}

/// The fields of a JSON object an expression selects (`a.b`, `has(a.b)`): the expression uses
/// it no other way (else it would read it whole, as a map), so it needs no hash table.
struct Selected<'v> {
    fields: Vec<(&'v str, Box<dyn Val + 'v>)>,
}

impl std::fmt::Debug for Selected<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.fields.iter().map(|(k, _)| k)).finish()
    }
}

impl<'a> Val for Selected<'a> {
    fn get_type(&self) -> &cel::common::types::Type {
        &cel::common::types::MAP_TYPE
    }

    fn cel_type() -> &'static cel::common::types::Type {
        &cel::common::types::MAP_TYPE
    }

    fn as_indexer<'b, 'w>(&'b self) -> Option<&'b (dyn Indexer + 'w)>
    where
        Self: 'w,
    {
        Some(self)
    }

    fn into_indexer<'w>(self: Box<Self>) -> Option<Box<dyn Indexer + 'w>>
    where
        Self: 'w,
    {
        Some(self)
    }

    fn clone_as_boxed<'w>(&self) -> Box<dyn Val + 'w>
    where
        Self: 'w,
    {
        Box::new(Selected { fields: self.fields.iter().map(|(k, v)| (*k, v.clone_as_boxed())).collect() })
    }
}

impl<'a> Indexer for Selected<'a> {
    fn get<'b, 'w>(&'b self, key: &dyn Val) -> Result<CowVal<'b, 'w>, ExecutionError>
    where
        Self: 'w,
    {
        let Some(name) = key.downcast_ref::<CelString>().map(|s| s.inner()) else {
            return Err(ExecutionError::UnexpectedType {
                got: key.get_type().name().to_owned(),
                want: "string".into(),
            });
        };
        match self.fields.iter().find(|(k, _)| *k == name) {
            Some((_, v)) => Ok(CowVal::Borrowed(v.as_ref())),
            None => Err(ExecutionError::no_such_key(name)),
        }
    }

    fn steal<'w>(self: Box<Self>, key: &dyn Val) -> Result<Box<dyn Val + 'w>, ExecutionError>
    where
        Self: 'w,
    {
        self.get(key).map(CowVal::into_owned)
    }
}

/// A JSON tree as a CEL value, without copying strings. Integers that fit `int` stay `int`
/// (`port + 1` works, `type(port) == int` holds), as in Kubernetes, which reads JSON numbers as int.
pub fn json_to_val(value: &Value) -> Box<dyn Val + '_> {
    match value {
        Value::Null => Box::new(CelNull),
        Value::Bool(b) => Box::new(CelBool::from(*b)),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Box::new(CelInt::from(i)),
            (None, Some(u)) => Box::new(CelUInt::from(u)),
            _ => Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN))),
        },
        Value::String(s) => Box::new(CelString::from(s.as_str())),
        Value::Array(items) => Box::new(CelList::from(items.iter().map(json_to_val).collect::<Vec<_>>())),
        Value::Object(map) => Box::new(CelMap::from(
            map.iter().map(|(k, v)| (CelMapKey::from(k.as_str()), json_to_val(v))).collect::<HashMap<_, _>>(),
        )),
    }
}

/// What a rule does when an expression cannot be evaluated (an error, a missing param, a live
/// API server it would need): `Fail` reports it with the rule's action, `Ignore` lets it pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub enum FailurePolicy {
    #[default]
    Fail,
    Ignore,
}

/// `source` with every reference to the root identifier `from` written as `to` (`params` →
/// `variables.params`, when a rule's params become a policy variable), found in the parsed
/// expression, so string literals and fields of the same name are left alone. `None` when the
/// expression does not parse or a reference cannot be placed in the text.
pub(crate) fn rename_root(source: &str, from: &str, to: &str) -> Option<String> {
    if ast::quote_free(source).ok()?.is_some() {
        return None;
    }
    let (mut tree, info) = env().ok()?.parser().parse_with_source_info(source).ok()?;
    let mut starts = Vec::new();
    let mut pending = vec![&mut tree];
    while let Some(node) = pending.pop() {
        if matches!(&node.expr, cel::common::ast::Expr::Ident(name) if name == from) {
            let (start, _) = info.offset_for(node.id)?;
            let start = usize::try_from(start).ok()?;
            // The parser's offset, checked against the text: a reference that is not where it
            // says leaves the expression as it is (the caller keeps it with the webhook).
            if source.get(start..start + from.len()) != Some(from) {
                return None;
            }
            starts.push(start);
        }
        pending.extend(ast::children_mut(&mut node.expr));
    }
    starts.sort_unstable();
    starts.dedup();
    let mut out = source.to_string();
    for start in starts.into_iter().rev() {
        out.replace_range(start..start + from.len(), to);
    }
    Some(out)
}

/// A VAP-style `fieldPath` (`spec.replicas`, `.spec.ports[0]`, `metadata.labels['app']`).
pub fn parse_field_path(text: &str) -> Result<FieldPath, String> {
    let text = text.trim().trim_start_matches('.');
    let normalized = text.replace("['", "[\"").replace("']", "\"]");
    FieldPath::parse(&normalized)
}

/// `{name, expression}`: a VAP variable or match condition.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedExpression {
    pub name: String,
    pub expression: String,
}

impl Validation {
    /// A validation pointing at `field_path`, or else at the one field its expression reads.
    pub fn new(
        expression: Expression,
        message: Option<String>,
        message_expression: Option<Expression>,
        field_path: Option<FieldPath>,
    ) -> Self {
        let field_path = field_path.or_else(|| expression.field_hint());
        Validation { expression, message, message_expression, field_path, fix: None }
    }
}

/// One validation: the expression must be true.
pub struct Validation {
    pub expression: Expression,
    pub message: Option<String>,
    pub message_expression: Option<Expression>,
    /// Where findings point; `None`: the object.
    pub field_path: Option<FieldPath>,
    /// The fix a finding carries: a CEL expression building `[JSONPatch{op, path, value}]`, as
    /// a MutatingAdmissionPolicy's JSONPatch mutation does, and its description.
    pub fix: Option<(Expression, String)>,
}

/// A compiled error with the field (relative to the validator's document) it is in.
#[derive(Debug)]
pub struct CompileError {
    pub field: String,
    pub message: String,
}

/// Variables, match conditions and validations, evaluated as a ValidatingAdmissionPolicy does:
/// every match condition must be true for the validations to run; variables are evaluated
/// lazily, in order, at most once per object.
pub struct Validator {
    pub variables: Vec<(String, Expression)>,
    pub match_conditions: Vec<(String, Expression)>,
    pub validations: Vec<Validation>,
    pub failure_policy: FailurePolicy,
}

/// One validation as written: a `cel` rule's params, or an entry of a VAP's `spec.validations`.
pub struct ValidationSource {
    pub expression: String,
    pub message: Option<String>,
    pub message_expression: Option<String>,
    pub field_path: Option<String>,
    /// A fix in CEL ([`Validation::fix`]) and its description.
    pub fix: Option<(String, String)>,
}

impl Validator {
    /// Compiles a validator. Errors name the field: `variables[i].…`, `matchConditions[i].…`, and
    /// for validation `i` what `field_of(i, "expression" | "messageExpression" | "fieldPath")` says.
    pub fn compile(
        variables: &[NamedExpression],
        match_conditions: &[NamedExpression],
        validations: Vec<ValidationSource>,
        failure_policy: FailurePolicy,
        params: bool,
        field_of: &dyn Fn(usize, &str) -> String,
    ) -> Result<Validator, CompileError> {
        let mut declared = Vec::new();
        let variables = Self::compile_named("variables", variables, &mut declared, true, params)?;
        let match_conditions = Self::compile_named("matchConditions", match_conditions, &mut declared, false, params)?;
        let mut compiled = Vec::new();
        for (i, v) in validations.into_iter().enumerate() {
            let error = |what: &'static str| move |message| CompileError { field: field_of(i, what), message };
            let expression = Expression::compile_typed(&v.expression, &declared, params)
                .and_then(|e| e.expect_type(&Ty::Bool).map(|()| e))
                .map_err(error("expression"))?;
            let message_expression = v
                .message_expression
                .as_deref()
                .map(|m| {
                    Expression::compile_typed(m, &declared, params).and_then(|e| e.expect_type(&Ty::String).map(|()| e))
                })
                .transpose()
                .map_err(error("messageExpression"))?;
            let field_path = v.field_path.as_deref().map(parse_field_path).transpose().map_err(error("fieldPath"))?;
            let mut validation = Validation::new(expression, v.message, message_expression, field_path);
            if let Some((source, description)) = v.fix {
                let names: Vec<String> = declared.iter().map(|(n, _)| n.clone()).collect();
                let expression =
                    Expression::compile_json_patch(&source, &names, params).map_err(error("fix.expression"))?;
                validation.fix = Some((expression, description));
            }
            compiled.push(validation);
        }
        let validator = Validator { variables, match_conditions, validations: compiled, failure_policy };
        // Together, what every evaluation costs at least must fit the API server's budget for one
        // object (variables are evaluated at most once, so each counts once).
        let least: u64 = validator.expressions().map(|e| e.cost.min).fold(0, u64::saturating_add);
        if least > interruptible::RUNTIME_COST_BUDGET {
            return Err(CompileError {
                field: field_of(0, "expression"),
                message: format!(
                    "the expressions' estimated cost is at least {least} together, over the API server's budget of {} \
                     per object: every evaluation would be stopped",
                    interruptible::RUNTIME_COST_BUDGET
                ),
            });
        }
        Ok(validator)
    }

    /// Compiles variables and match conditions; `field` names the list in errors (`variables`).
    fn compile_named(
        field: &str,
        list: &[NamedExpression],
        declared: &mut Vec<(String, Ty)>,
        declare: bool,
        params: bool,
    ) -> Result<Vec<(String, Expression)>, CompileError> {
        let mut out = Vec::new();
        for (i, v) in list.iter().enumerate() {
            let at = |what: &str| format!("{field}[{i}].{what}");
            let valid_name = v.name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                && v.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            // Variables are read as `variables.<name>`; match condition names are only labels.
            if (declare && !valid_name) || v.name.trim().is_empty() {
                return Err(CompileError {
                    field: at("name"),
                    message: format!("`{}` is not a CEL identifier", v.name),
                });
            }
            if out.iter().any(|(n, _): &(String, Expression)| *n == v.name) {
                return Err(CompileError { field: at("name"), message: format!("duplicate name `{}`", v.name) });
            }
            let expr = Expression::compile_typed(&v.expression, declared, params)
                .and_then(|e| if declare { Ok(e) } else { e.expect_type(&Ty::Bool).map(|()| e) })
                .map_err(|message| CompileError { field: at("expression"), message })?;
            if declare {
                declared.push((v.name.clone(), expr.output_type().clone()));
            }
            out.push((v.name.clone(), expr));
        }
        Ok(out)
    }

    /// Reviews one object. `params` is the bound param object (a VAP's) or the rule's `params`.
    pub fn review(&self, obj: &Object<'_>, input: &Input<'_>, params: Option<&Value>, out: &mut Vec<Violation>) {
        let bound = Bindings::new(obj, input, params, self.reads_request());
        let mut scope = Scope::new(self, &bound);
        for (name, condition) in &self.match_conditions {
            match scope.eval_bool(condition) {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    self.fail(out, FieldPath::root(), format!("match condition `{name}` could not be evaluated: {e}"));
                    return;
                }
            }
        }
        for v in &self.validations {
            let path = || v.field_path.clone().unwrap_or_default();
            match scope.eval_bool(&v.expression) {
                Ok(true) => {}
                Ok(false) => {
                    let message = v
                        .message_expression
                        .as_ref()
                        .and_then(|m| scope.eval_string(m).ok().filter(|s| usable_evaluated_message(s)))
                        .or_else(|| v.message.clone())
                        .unwrap_or_else(|| format!("failed expression: {}", v.expression.source().trim()));
                    let fix = v.fix.as_ref().and_then(|(expression, description)| {
                        let patch = scope.eval_patch(expression).ok()?;
                        Some(crate::fix::Fix { description: description.clone(), patch })
                    });
                    out.push(Violation::new(path(), message).with_fix(fix));
                }
                Err(e) => self.fail(out, path(), format!("expression could not be evaluated: {e}")),
            }
        }
    }

    /// Whether every match condition holds for `obj` (`Err`: one could not be evaluated, named).
    pub fn conditions_hold(&self, obj: &Object<'_>, input: &Input<'_>, params: Option<&Value>) -> Result<bool, String> {
        let bound = Bindings::new(obj, input, params, self.reads_request());
        let mut scope = Scope::new(self, &bound);
        for (name, condition) in &self.match_conditions {
            match scope.eval_bool(condition) {
                Ok(true) => {}
                Ok(false) => return Ok(false),
                Err(e) => return Err(format!("match condition `{name}` could not be evaluated: {e}")),
            }
        }
        Ok(true)
    }

    /// `expr` (compiled with this validator's variables) over `obj`, as JSON: an ApplyConfiguration's
    /// object, or with `as_patch` a list of `JSONPatch` read as RFC 6902 operations.
    pub fn eval_json(
        &self,
        expr: &Expression,
        obj: &Object<'_>,
        input: &Input<'_>,
        params: Option<&Value>,
        as_patch: bool,
    ) -> Result<Value, String> {
        let reads_request = self.reads_request() || expr.request != Reads::Nothing;
        let bound = Bindings::new(obj, input, params, reads_request);
        let mut scope = Scope::new(self, &bound);
        if as_patch {
            let patch = scope.eval_patch(expr)?;
            serde_json::to_value(patch).map_err(|e| e.to_string())
        } else {
            cel_to_json(&scope.eval(expr)?)
        }
    }

    fn expressions(&self) -> impl Iterator<Item = &Expression> {
        let named = self.variables.iter().chain(&self.match_conditions).map(|(_, e)| e);
        named.chain(self.validations.iter().flat_map(|v| std::iter::once(&v.expression).chain(&v.message_expression)))
    }

    fn reads_request(&self) -> bool {
        self.expressions().any(|e| e.request != Reads::Nothing)
    }

    /// Whether an expression reads `namespaceObject`, which at admission comes from the cluster.
    pub fn reads_namespace_object(&self) -> bool {
        self.expressions().any(|e| e.namespace_object != Reads::Nothing)
    }

    /// Reports what could not be evaluated, unless the failure policy ignores it.
    pub fn fail(&self, out: &mut Vec<Violation>, path: FieldPath, message: String) {
        if self.failure_policy == FailurePolicy::Fail {
            out.push(Violation::new(path, message));
        }
    }
}

/// The values every expression of one object sees.
struct Bindings<'a> {
    object: &'a Value,
    old_object: Option<&'a Value>,
    /// The AdmissionRequest under review (at admission), or the one a CI run stands for.
    request: Request<'a>,
    namespace_object: Option<&'a Value>,
    params: Option<&'a Value>,
}

enum Request<'a> {
    Admission(&'a Value),
    Offline(Value),
}

/// Bound as `object` and `oldObject`, not inside `request`, as in the API server.
const REQUEST_HIDDEN: &[&str] = &["object", "oldObject"];

impl<'a> Bindings<'a> {
    fn new(obj: &Object<'a>, input: &Input<'a>, params: Option<&'a Value>, with_request: bool) -> Self {
        let request = match input.request {
            Some(r) => Request::Admission(r),
            None if with_request => Request::Offline(offline_request(obj)),
            None => Request::Offline(Value::Null),
        };
        Bindings {
            object: obj.value,
            old_object: input.request.and_then(|r| r.get("oldObject")).filter(|v| !v.is_null()),
            request,
            namespace_object: input.namespace_object(obj.namespace),
            params,
        }
    }
}

/// The AdmissionRequest a CI run stands for: creating the object in its namespace.
fn offline_request(obj: &Object<'_>) -> Value {
    let api_version = obj.value.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let version = api_version.rsplit('/').next().unwrap_or("");
    serde_json::json!({
        "operation": "CREATE",
        "namespace": obj.namespace,
        "name": obj.name,
        "kind": {"group": obj.group, "version": version, "kind": obj.kind},
        "dryRun": false,
    })
}

/// One object's evaluation state: the variables computed so far.
struct Scope<'s> {
    validator: &'s Validator,
    bound: &'s Bindings<'s>,
    values: Vec<Option<Result<cel::Value, String>>>,
}

impl<'s> Scope<'s> {
    /// A fresh scope, and a fresh runtime cost budget: one per object and rule or binding.
    fn new(validator: &'s Validator, bound: &'s Bindings<'s>) -> Self {
        interruptible::reset_budget();
        Scope { validator, bound, values: vec![None; validator.variables.len()] }
    }

    fn eval(&mut self, expr: &Expression) -> Result<cel::Value, String> {
        if expr.uses_authorizer {
            return Err(
                "it uses `authorizer`, which needs a live API server; meshguard cannot evaluate it offline".into()
            );
        }
        self.ensure_all(&expr.reads)?;
        let env = env()?;
        let mut ctx = Context::with_env(Arc::clone(env));
        let bound = self.bound;
        for (name, reads, value) in [
            ("object", &expr.object, Some(bound.object)),
            ("oldObject", &expr.old_object, bound.old_object),
            ("params", &expr.params, bound.params),
            ("namespaceObject", &expr.namespace_object, bound.namespace_object),
        ] {
            if *reads != Reads::Nothing {
                ctx.add_variable_as_val(name, reads.convert(value));
            }
        }
        if expr.request != Reads::Nothing {
            let request = match &bound.request {
                Request::Admission(r) => expr.request.convert_without(Some(r), REQUEST_HIDDEN),
                Request::Offline(r) => expr.request.convert(Some(r)),
            };
            ctx.add_variable_as_val("request", request);
        }
        if !expr.reads.is_empty() {
            let mut vars: HashMap<CelMapKey<'_>, Box<dyn Val>> = HashMap::new();
            for &i in &expr.reads {
                if let Some(Ok(v)) = &self.values[i] {
                    let val: Box<dyn Val> = v.clone().try_into().map_err(|e: ExecutionError| e.to_string())?;
                    vars.insert(CelMapKey::from(self.validator.variables[i].0.clone()), val);
                }
            }
            ctx.add_variable_as_val("variables", Box::new(CelMap::from(vars)));
        }
        cel::Value::resolve(&expr.tree, &ctx).map_err(|e| describe(&e))
    }

    /// Computes the variables `reads` needs, without recursion: an expression reads only variables
    /// declared before it, so the ones it needs, directly or through others, are evaluated in
    /// declaration order, each after everything it reads. A chain of thousands of variables takes
    /// no stack (natively it overflowed the stack; in wasm it trapped: the engines disagreed).
    /// A failed variable fails every one that reads it with the same message, naming it.
    fn ensure_all(&mut self, reads: &[usize]) -> Result<(), String> {
        let mut needed: Vec<usize> = reads.iter().copied().filter(|&i| self.values[i].is_none()).collect();
        let mut queued = vec![false; self.values.len()];
        let mut next = 0;
        while let Some(&i) = needed.get(next) {
            next += 1;
            if std::mem::replace(&mut queued[i], true) {
                continue;
            }
            let deps = &self.validator.variables[i].1.reads;
            needed.extend(deps.iter().copied().filter(|&d| self.values[d].is_none() && !queued[d]));
        }
        needed.sort_unstable();
        needed.dedup();
        for i in needed {
            let (name, expr) = &self.validator.variables[i];
            let failed = expr.reads.iter().find_map(|&d| match &self.values[d] {
                Some(Err(e)) => Some(e.clone()),
                _ => None,
            });
            let result = match failed {
                Some(e) => Err(e),
                None => self.eval(expr).and_then(within_value_limits).map_err(|e| format!("variable `{name}`: {e}")),
            };
            self.values[i] = Some(result);
        }
        match reads.iter().find_map(|&i| self.values[i].as_ref().and_then(|v| v.as_ref().err())) {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn eval_bool(&mut self, expr: &Expression) -> Result<bool, String> {
        match self.eval(expr)? {
            cel::Value::Bool(b) => Ok(b),
            other => Err(format!("it must evaluate to a bool, not {}", other.type_of())),
        }
    }

    /// A fix's patch: the expression's list of `{op, path, value, from}` maps as RFC 6902.
    fn eval_patch(&mut self, expr: &Expression) -> Result<json_patch::Patch, String> {
        let value = self.eval(expr)?;
        let mut ops = cel_to_json(&value)?;
        // `from` is `move`/`copy`'s; an empty one was not written.
        for op in ops.as_array_mut().into_iter().flatten() {
            if let Some(map) = op.as_object_mut() {
                if map.get("from").and_then(Value::as_str) == Some("") {
                    map.remove("from");
                }
                if map.get("op").and_then(Value::as_str) == Some("remove") {
                    map.remove("value");
                }
            }
        }
        serde_json::from_value(ops).map_err(|e| format!("the fix is not a JSON Patch: {e}"))
    }

    fn eval_string(&mut self, expr: &Expression) -> Result<String, String> {
        match self.eval(expr)? {
            cel::Value::String(s) => Ok(s.to_string()),
            other => Err(format!("a message expression must evaluate to a string, not {}", other.type_of())),
        }
    }
}

/// A CEL value as JSON (lists, maps with string keys, scalars; bytes and the like are errors).
fn cel_to_json(value: &cel::Value) -> Result<Value, String> {
    let mut pending = vec![value];
    // Without recursion: values are built bottom-up from a post-order walk.
    let mut order = Vec::new();
    while let Some(v) = pending.pop() {
        order.push(v);
        match v {
            cel::Value::List(items) => pending.extend(items.iter()),
            cel::Value::Map(map) => pending.extend(map.map.values()),
            _ => {}
        }
    }
    let mut built: Vec<Value> = Vec::new();
    for v in order.into_iter().rev() {
        let json = match v {
            cel::Value::Null => Value::Null,
            cel::Value::Bool(b) => Value::Bool(*b),
            cel::Value::Int(i) => Value::from(*i),
            cel::Value::UInt(u) => Value::from(*u),
            cel::Value::Float(f) => serde_json::Number::from_f64(*f).map(Value::Number).ok_or("a non-finite number")?,
            cel::Value::String(s) => Value::String(s.to_string()),
            cel::Value::List(items) => {
                let at = built.len() - items.len();
                Value::Array(built.drain(at..).collect())
            }
            cel::Value::Map(map) => {
                let at = built.len() - map.map.len();
                let values: Vec<Value> = built.drain(at..).collect();
                let mut out = serde_json::Map::new();
                for (key, value) in map.map.keys().zip(values) {
                    match key {
                        cel::objects::Key::String(k) => {
                            out.insert(k.to_string(), value);
                        }
                        _ => return Err("a map key that is not a string".into()),
                    }
                }
                Value::Object(out)
            }
            other => return Err(format!("a {} cannot be written as JSON", other.type_of())),
        };
        built.push(json);
    }
    built.pop().ok_or_else(|| "no value".to_string())
}

/// An evaluation error in words a rule author can act on.
fn describe(e: &ExecutionError) -> String {
    match e {
        // The rewrite's own poll: its errors (a spent budget) are the evaluation's, not a function's.
        ExecutionError::FunctionError { function, message } if function == interruptible::POLL => message.clone(),
        ExecutionError::NoSuchKey(k) => format!("no such key: {k} (use has() to test for optional fields)"),
        ExecutionError::UndeclaredReference(name) if !KNOWN_VARIABLES.contains(&name.as_str()) => {
            format!("undeclared reference to `{name}`; expressions see {}", KNOWN_VARIABLES.join(", "))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(super) fn eval(expr: &str, object: Value) -> Result<cel::Value, String> {
        eval_at_admission(expr, object, None)
    }

    fn eval_at_admission(expr: &str, object: Value, request: Option<&Value>) -> Result<cel::Value, String> {
        let e = Expression::compile(expr, &[])?;
        let objects = vec![object];
        let mut input = Input::new(&objects, "default");
        if let Some(r) = request {
            input = input.with_request(r);
        }
        let validator = Validator {
            variables: vec![],
            match_conditions: vec![],
            validations: vec![],
            failure_policy: FailurePolicy::Fail,
        };
        let bound = Bindings::new(&input.objects[0], &input, None, true);
        let mut scope = Scope::new(&validator, &bound);
        scope.eval(&e)
    }

    #[test]
    fn request_leaves_out_the_objects_bound_on_their_own() {
        let svc = json!({"kind": "Service", "spec": {"type": "ClusterIP"}});
        let request = json!({"operation": "UPDATE", "userInfo": {"username": "a"},
            "object": svc, "oldObject": {"kind": "Service", "spec": {"type": "NodePort"}}});
        for expr in [
            // `request` has no such fields in the API server's type; read as `dyn` to see the data.
            "request.operation == 'UPDATE' && !has(dyn(request).object) && !has(dyn(request).oldObject)",
            "!('object' in dyn(request)) && !('oldObject' in dyn(request)) && size(dyn(request)) == 2",
            "oldObject.spec.type == 'NodePort' && object.spec.type == 'ClusterIP'",
        ] {
            assert_eq!(eval_at_admission(expr, svc.clone(), Some(&request)), Ok(cel::Value::Bool(true)), "{expr}");
        }
    }

    #[test]
    fn a_timestamps_zero_value_is_gos_as_the_api_server_answers() {
        let obj = json!({"spec": {"port": 0}});
        for (expr, want) in [
            ("optional.ofNonZeroValue(timestamp('0001-01-01T00:00:00Z')) == optional.none()", true),
            ("optional.ofNonZeroValue(timestamp('1970-01-01T00:00:00Z')).hasValue()", true),
            ("optional.ofNonZeroValue(timestamp('0001-01-01T00:00:00.000000001Z')).hasValue()", true),
            ("optional.ofNonZeroValue(object.spec.port) == optional.none()", true),
            ("optional.ofNonZeroValue('x').value() == 'x'", true),
            ("optional.ofNonZeroValue([]).hasValue()", false),
            ("optional.ofNonZeroValue(duration('0s')).hasValue()", false),
        ] {
            assert_eq!(eval(expr, obj.clone()), Ok(cel::Value::Bool(want)), "{expr}");
        }
    }

    #[test]
    fn json_integers_stay_int() {
        let obj = json!({"spec": {"port": 8080, "ratio": 0.5, "big": u64::MAX}});
        assert_eq!(eval("object.spec.port + 1 == 8081", obj.clone()), Ok(cel::Value::Bool(true)));
        assert_eq!(eval("type(object.spec.port) == int", obj.clone()), Ok(cel::Value::Bool(true)));
        assert_eq!(eval("type(object.spec.ratio) == double", obj.clone()), Ok(cel::Value::Bool(true)));
        assert_eq!(eval("type(object.spec.big) == uint", obj), Ok(cel::Value::Bool(true)));
    }

    #[test]
    fn backtick_quoted_field_names_select_and_test_fields() {
        let pod = serde_json::json!({"metadata": {"labels": {"app.kubernetes.io/name": "shop", "tier": "be"}}});
        let labels = "object.metadata.labels";
        assert_eq!(eval(&format!("{labels}.`app.kubernetes.io/name`"), pod.clone()).unwrap(), "shop".into());
        assert_eq!(eval(&format!("has({labels}.`app.kubernetes.io/name`)"), pod.clone()).unwrap(), true.into());
        assert_eq!(eval(&format!("has({labels}. `team-name`)"), pod.clone()).unwrap(), false.into());
        // Backticks inside strings are text.
        assert_eq!(eval("'.`x`' + \".`y`\"", pod.clone()).unwrap(), ".`x`.`y`".into());
        let e = Expression::compile("object.`open", &[]).err().unwrap();
        assert!(e.contains("not closed"), "{e}");
        assert!(Expression::compile("object.``", &[]).err().unwrap().contains("empty"));
    }

    #[test]
    fn literal_patterns_are_checked_at_load_with_re2s_syntax() {
        let e = Expression::compile("object.metadata.name.matches(')')", &[]).err().unwrap();
        assert!(e.contains("invalid matches argument") && e.contains("invalid regex `)`"), "{e}");
        let e = Expression::compile("matches(object.metadata.name, 'x++')", &[]).err().unwrap();
        assert!(e.contains("possessive"), "{e}");
        let ok = Expression::compile("object.metadata.name.matches('[x++]') && 'a+'.matches('a\\\\++')", &[]);
        assert!(ok.is_ok(), "{:?}", ok.err());
        // A pattern built at evaluation is checked then.
        let pod = serde_json::json!({"metadata": {"name": "a", "p": "x*+"}});
        let e = eval("object.metadata.name.matches(object.metadata.p)", pod).unwrap_err();
        assert!(e.contains("possessive"), "{e}");
    }

    #[test]
    fn literals_mixing_types_are_refused_at_load_as_the_api_server_refuses_them() {
        let e = Expression::compile("[1, 'a', false].filter(x, string(x) == 'a').size() == 1", &[]).err().unwrap();
        assert!(e.contains("expected type 'int' but found 'string'"), "{e}");
        assert!(Expression::compile("{'a': 1, 'b': 'x'}.size() == 2", &[]).is_err());
        for fine in ["[1, dyn('a')].size() == 2", "{'a': 1, 'b': null}.size() == 2", "[[1], [2, 3]].size() == 2"] {
            assert!(Expression::compile(fine, &[]).is_ok(), "{fine}");
        }
    }

    #[test]
    fn params_are_declared_only_for_a_policy_with_params() {
        let compile = |params: bool| Expression::compile_typed("params.max > 1", &[], params);
        assert!(compile(true).is_ok());
        let e = compile(false).unwrap_err();
        assert!(
            e.contains("undeclared reference to 'params' (in container ''): params are declared by a paramKind"),
            "{e}"
        );
        let compiled = |params: bool| {
            let v = ValidationSource {
                expression: "object.spec.replicas <= params.max".into(),
                message: None,
                message_expression: None,
                field_path: None,
                fix: None,
            };
            Validator::compile(&[], &[], vec![v], FailurePolicy::Fail, params, &|i, f| format!("validations[{i}].{f}"))
        };
        assert!(compiled(true).is_ok());
        assert_eq!(compiled(false).err().map(|e| e.field).as_deref(), Some("validations[0].expression"));
    }

    #[test]
    fn a_root_is_renamed_where_the_expression_references_it_only() {
        let renamed = |e: &str| rename_root(e, "params", "variables.params");
        assert_eq!(
            renamed("params.max >= object.spec.params && 'params.x' != params.name").as_deref(),
            Some("variables.params.max >= object.spec.params && 'params.x' != variables.params.name")
        );
        assert_eq!(
            renamed("'é' != '' && object.spec.ports.all(p, p.port in params.ports) && has(params.x) ? 'é' : params").as_deref(),
            Some("'é' != '' && object.spec.ports.all(p, p.port in variables.params.ports) && has(variables.params.x) ? 'é' : variables.params")
        );
        assert_eq!(renamed("object.spec.replicas > 1").as_deref(), Some("object.spec.replicas > 1"));
        assert_eq!(renamed("params.max >"), None, "what does not parse is not rewritten");
    }

    #[test]
    fn expressions_are_type_checked_as_the_api_server_checks_them() {
        let refused = |e: &str| Expression::compile(e, &[]).unwrap_err();
        let e = refused("obj.spec.replicas > 1");
        assert_eq!(e, "type error at column 1 of the expression: undeclared reference to 'obj' (in container '')");
        for (expression, ending) in [
            ("request.operation == 1", "found no matching overload for '_==_' applied to '(string, int)'"),
            (
                "namespaceObject.metadata.labels.team + 1 == 2",
                "found no matching overload for '_+_' applied to '(string, int)'",
            ),
            (
                "object.metadata.name.startsWith(1)",
                "found no matching overload for 'startsWith' applied to 'dyn.(int)'",
            ),
            ("[1, 2].all(x, x)", "found no matching overload for '_&&_' applied to '(bool, int)'"),
            ("request.userInfo.name == 'a'", "undefined field 'name'"),
            ("3.isSorted()", "found no matching overload for 'isSorted' applied to 'int.()'"),
            // Functions no API server declares: Kyverno's HTTP library, a typo, cel-go's math.
            ("http.Get('https://example.com').ok", "undeclared reference to 'http.Get' (in container '')"),
            ("object.metadata.name.startWith('a')", "undeclared reference to 'startWith' (in container '')"),
            ("math.greatest(1, 2) == 2", "undeclared reference to 'math.greatest' (in container '')"),
            ("'abc'.reverse() == 'cba'", "found no matching overload for 'reverse' applied to 'string.()'"),
            (
                "authorizer.group('').check('get').allowed()",
                "found no matching overload for 'check' applied to 'kubernetes.authorization.GroupCheck.(string)'",
            ),
        ] {
            let e = refused(expression);
            assert!(e.ends_with(ending), "{expression}: {e}");
        }
        let e = refused("object.spec\n  .replicas > duration('1h')\n  && isSorted([1])");
        assert!(
            e.starts_with("type error at line 3, column 14 of the expression: undeclared reference to 'isSorted'"),
            "{e}"
        );
        // What depends on the data (dyn) passes, as it does in the API server.
        for ok in [
            "object.spec.replicas > '5'",
            "object.metadata.name.startsWith('a') && oldObject == null",
            "request.userInfo.groups.exists(g, g == 'admin') && request.dryRun",
            "namespaceObject.metadata.labels['team'] == 'shop' && params.max > 1",
            "[3, 1, 2].sort().reverse().slice(0, 2) == [3, 2] && lists.range(3).distinct().size() == 3",
            "authorizer.group('apps').resource('deployments').namespace('shop').name('api').check('update').allowed()",
            "authorizer.requestResource.subresource('scale').check('patch').reason() == '' && \
             authorizer.path('/healthz').check('get').errored() == false",
            "authorizer.serviceAccount('shop', 'deployer').group('').resource('pods').check('create').error() == ''",
            "[[1], [2, 3]].flatten().size() == 3 && [[1], [2]].flatten(1).size() == 2 && [2, 1].sortBy(x, x) == [1, 2]",
            "[1, 2].map(x, x * 2).sum() > 2 && [1, 2].filter(x, x > 1).size() == 1",
            "optional.of(1).orValue(2) == 1 && object.?spec.?replicas.orValue(1) > 0",
            "sets.contains([1], [1]) && ip('10.0.0.1').family() == 4 && 1 < 2.0",
            "has(object.spec) && cel.bind(n, 2, n * n) == 4 && {'a': 1}.all(k, v, k == 'a' && v == 1)",
            "type(object) == map && type(ip('::1')) == net.IP && int(timestamp('2025-01-01T00:00:00Z')) > 0",
        ] {
            let t = Expression::compile(ok, &[]).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert!(matches!(t.output_type(), Ty::Bool | Ty::Dyn), "{ok}: {}", t.output_type());
        }
        // A variable has its expression's type; a validation must be a bool.
        let vars = [NamedExpression { name: "n".into(), expression: "size(object.spec.ports)".into() }];
        let validation = |expression: &str| ValidationSource {
            expression: expression.into(),
            message: None,
            message_expression: None,
            field_path: None,
            fix: None,
        };
        let compile = |expression: &str| {
            Validator::compile(&vars, &[], vec![validation(expression)], FailurePolicy::Fail, true, &|i, f| {
                format!("validations[{i}].{f}")
            })
            .map(|_| ())
            .map_err(|e| format!("{}: {}", e.field, e.message))
        };
        assert_eq!(compile("variables.n > 1"), Ok(()));
        let e = compile("variables.n == 'a'").unwrap_err();
        assert!(e.starts_with("validations[0].expression: type error") && e.ends_with("'(int, string)'"), "{e}");
        assert_eq!(compile("variables.n").unwrap_err(), "validations[0].expression: must evaluate to bool but got int");
    }

    #[test]
    fn costs_are_estimated_and_refused_at_load_over_the_api_servers_limits() {
        let list = format!("[{}]", (0..100).map(|i| i.to_string()).collect::<Vec<_>>().join(", "));
        // Lists of known size: a cubic map over 100 elements costs millions however it is fed.
        let cubic = format!("{list}.map(a, {list}.map(b, {list}.map(c, a + b + c))).size() > 0");
        let e = Expression::compile(&cubic, &[]).unwrap_err();
        assert!(e.starts_with("the expression's estimated cost is at least ") && e.contains("limit of 1000000"), "{e}");
        // Over data, the minimum is what the smallest object costs; the maximum, the largest request.
        let over_data =
            Expression::compile("object.spec.ports.all(p, object.spec.ports.exists(q, q.port == p.port))", &[])
                .unwrap();
        let cost = over_data.estimated_cost();
        assert!(cost.min < 10 && cost.max > 1_000_000_000, "{cost:?}");
        assert_eq!(
            Expression::compile("object.spec.replicas <= 5", &[]).unwrap().estimated_cost(),
            cost::Range { min: 2, max: 2 }
        );
        // A policy: together over the budget for one object, though each expression fits.
        let quadratic = format!("{list}.map(a, {list}.map(b, a + b)).size() > 0");
        let one = Expression::compile(&quadratic, &[]).unwrap().estimated_cost().min;
        assert!(one > 10_000 && one < cost::PER_CALL_LIMIT, "{one}");
        let validations = (0..(10_000_000 / one + 1))
            .map(|_| ValidationSource {
                expression: quadratic.clone(),
                message: None,
                message_expression: None,
                field_path: None,
                fix: None,
            })
            .collect();
        let e = Validator::compile(&[], &[], validations, FailurePolicy::Fail, true, &|i, f| {
            format!("validations[{i}].{f}")
        })
        .err()
        .unwrap();
        assert!(e.message.contains("over the API server's budget of 10000000 per object"), "{}", e.message);
    }

    #[test]
    fn library_calls_known_to_match_no_overload_are_refused_at_load() {
        let e = Expression::compile("isIP(cidr('10.0.0.0/8'))", &[]).err().unwrap();
        assert_eq!(
            e,
            "type error at column 5 of the expression: found no matching overload for 'isIP' applied to '(net.CIDR)'"
        );
        assert!(Expression::compile("isQuantity([1, 2])", &[]).is_err());
        assert!(Expression::compile("[[1], [2]].min() == [1]", &[]).is_err());
        // Known only when evaluated: loads, and is judged then.
        assert!(Expression::compile("isIP(object.metadata.name) && [object.spec].size() == 1", &[]).is_ok());
    }

    #[test]
    fn syntax_errors_name_the_column() {
        let e = Expression::compile("object.spec.replicas <= ", &[]).unwrap_err();
        assert!(e.contains("column"), "{e}");
        let e = Expression::compile("true &&\n  (object.x", &[]).unwrap_err();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn undeclared_variables_are_compile_errors() {
        let e = Expression::compile("variables.foo > 1", &["bar".into()]).unwrap_err();
        assert!(e.contains("`variables.foo` is not declared"), "{e}");
        assert!(Expression::compile("'variables.foo' != ''", &[]).is_ok());
    }

    #[test]
    fn field_hint_is_the_one_field_read() {
        let hint = |s: &str| Expression::compile(s, &[]).unwrap().field_hint().map(|p| p.to_string());
        assert_eq!(hint("object.spec.replicas <= 5").as_deref(), Some("spec.replicas"));
        assert_eq!(hint("has(object.spec.replicas) && object.spec.replicas <= 5").as_deref(), Some("spec.replicas"));
        assert_eq!(hint("object.metadata.name.startsWith('a')").as_deref(), Some("metadata.name"));
        assert_eq!(hint("object.spec.a == object.spec.b"), None);
        assert_eq!(hint("oldObject.spec.a == 1"), None);
    }

    /// Found by fuzzing (fuzz/regressions/cel/): the scan for `object.` chains sliced the source
    /// inside a multi-byte character.
    #[test]
    fn non_ascii_expressions_are_scanned_by_bytes() {
        let input = include_str!("../../../fuzz/regressions/cel/bom-inside-identifier.txt");
        let (expression, _) = input.split_once('\n').unwrap();
        // `form` followed by a `//` comment: it parses (before the fix, the scan panicked), and
        // the type check refuses the undeclared `form`.
        let e = Expression::compile(expression, &[]).unwrap_err();
        assert!(e.contains("undeclared reference to 'form'"), "{e}");
        assert_eq!(
            object_reads("\u{feff}object.spec.é == 1 && object.metadata.name == 'é'"),
            [vec!["spec"], vec!["metadata", "name"]]
        );
    }

    #[test]
    fn offline_request_describes_a_create() {
        let obj =
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": "shop"}});
        assert_eq!(
            eval("request.operation == 'CREATE' && request.kind.group == 'apps' && request.namespace == 'shop'", obj),
            Ok(cel::Value::Bool(true))
        );
    }

    /// Only what an expression reads is converted; expressions that use the object whole, by index
    /// or through a comprehension variable must see all of it.
    #[test]
    fn partial_conversion_gives_the_whole_objects_answers() {
        let obj = json!({"kind": "Deployment", "metadata": {"name": "api", "labels": {"app": "api"}},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}}});
        for expr in [
            "object.spec.replicas == 3 && !has(object.spec.paused)",
            "has(object.spec.template) && size(object.spec.template.spec.containers) == 2",
            "size(object) == 3",
            "'spec' in object && object['spec'].replicas == 3",
            "[object].exists(o, o.metadata.name == 'api' && o.spec.replicas == 3)",
            "object.spec.template.spec.containers.map(c, c.name) == ['a', 'b']",
            "object.metadata.labels == {'app': 'api'}",
            "object.metadata.name.startsWith('a') && object.kind == 'Deployment'",
            "object.spec == object['spec']",
        ] {
            assert_eq!(eval(expr, obj.clone()), Ok(cel::Value::Bool(true)), "{expr}");
        }
        let e = Expression::compile("object.spec.replicas <= 5 && object.metadata.name != ''", &[]).unwrap();
        let keys = |r: &Reads| match r {
            Reads::Keys(k) => k.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(keys(&e.object), ["spec", "metadata"]);
        assert_eq!((e.request.clone(), e.params.clone()), (Reads::Nothing, Reads::Nothing));
        assert_eq!(Expression::compile("size(object) > 0", &[]).unwrap().object, Reads::All);
    }

    #[test]
    fn regex_work_is_bounded() {
        let obj = json!({"data": "a".repeat(5_000_000)});
        let e = eval("object.data.matches('(a|b)+c')", obj).unwrap_err();
        assert!(e.contains("evaluation budget"), "{e}");
    }
}

#[cfg(test)]
mod hostile {
    use super::*;

    /// Found by probing: 20 nested parentheses overflowed a 2 MiB stack in the parser (debug
    /// build), 1,600 chained `+` or `.a` in the evaluator's tree; release builds go further, but
    /// the limits keep every build and host (a wasm module has 1 MiB of stack) far from it.
    #[test]
    fn deep_or_long_expressions_are_refused_before_parsing() {
        let cases = [
            (format!("{}1{}", "(".repeat(MAX_NESTING + 1), ")".repeat(MAX_NESTING + 1)), "nested"),
            (format!("{}1{}", "[".repeat(200), "]".repeat(200)), "nested"),
            (vec!["1"; MAX_OPERATORS + 2].join("+"), "operators"),
            (format!("object{}", ".a".repeat(MAX_OPERATORS + 1)), "operators"),
            ("x".repeat(MAX_EXPRESSION_BYTES + 1), "bytes"),
        ];
        for (expr, why) in cases {
            let e = Expression::compile(&expr, &[]).map(|_| ()).unwrap_err();
            assert!(e.contains(why), "{why}: {e}");
        }
        let ok = format!("{}1{} == 1", "(".repeat(8), ")".repeat(8));
        assert!(Expression::compile(&ok, &[]).is_ok());
        assert!(Expression::compile("'((((((((((((((((((((((((((((' != ''", &[]).is_ok(), "strings do not nest");
    }
}
