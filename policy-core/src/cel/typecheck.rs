//! The type check an expression passes when it loads, as the API server checks a policy's CEL
//! when the policy is created: every identifier declared, every function called with arguments
//! one of its overloads takes, fields selected only where the type has them, and the result of
//! the type the field needs (a validation's `bool`). The declared types are the API server's:
//! `object`, `oldObject` and `params` (declared only for a policy with params) are `dyn` (their
//! schema is not known here, as for a CRD without one), `request` is `kubernetes.AdmissionRequest` and `namespaceObject`
//! `kubernetes.Namespace` with their fields, and each of `variables` has its expression's type.
//!
//! What is `dyn` passes any check, so the check refuses only what the API server refuses too. A
//! function that is not declared ([`signatures.txt`](signatures.txt) lists the API server's) is
//! an undeclared reference, as there: a Kyverno-only `http.Get(...)` is refused when the policy
//! loads, not when a request reaches it.

use cel::common::ast::{operators, EntryExpr, Expr, LiteralValue, SourceInfo};
use cel::IdedExpr;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

/// A CEL type, as the checker reasons about it.
#[derive(Clone, Debug, PartialEq)]
pub enum Ty {
    Dyn,
    Null,
    Bool,
    Int,
    Uint,
    Double,
    String,
    Bytes,
    Timestamp,
    Duration,
    /// The type of type values (`int`, `type(x)`).
    Type,
    List(Box<Ty>),
    Map(Box<Ty>, Box<Ty>),
    Optional(Box<Ty>),
    /// A library's own type or a message type, by name (`net.IP`, `JSONPatch`).
    Named(&'static str),
    /// A declared object type with its fields (`kubernetes.AdmissionRequest`, `variables`).
    Object(Arc<ObjectType>),
    /// A type parameter of an overload (in signatures only).
    Param(u8),
}

/// An object type: a name and its fields.
#[derive(Debug, PartialEq)]
pub struct ObjectType {
    pub name: String,
    pub fields: Vec<(String, Ty)>,
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::Dyn => f.write_str("dyn"),
            Ty::Null => f.write_str("null_type"),
            Ty::Bool => f.write_str("bool"),
            Ty::Int => f.write_str("int"),
            Ty::Uint => f.write_str("uint"),
            Ty::Double => f.write_str("double"),
            Ty::String => f.write_str("string"),
            Ty::Bytes => f.write_str("bytes"),
            Ty::Timestamp => f.write_str("google.protobuf.Timestamp"),
            Ty::Duration => f.write_str("google.protobuf.Duration"),
            Ty::Type => f.write_str("type"),
            Ty::List(t) => write!(f, "list({t})"),
            Ty::Map(k, v) => write!(f, "map({k}, {v})"),
            Ty::Optional(t) => write!(f, "optional_type({t})"),
            Ty::Named(name) => f.write_str(name),
            Ty::Object(o) => f.write_str(&o.name),
            Ty::Param(i) => write!(f, "{}", (b'A' + i) as char),
        }
    }
}

/// Type names an expression may write as values (`type(x) == net.IP`).
const TYPE_NAMES: &[&str] = &[
    "int",
    "uint",
    "double",
    "bool",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
    "dyn",
    "optional_type",
    "net.IP",
    "net.CIDR",
    "kubernetes.URL",
    "google.protobuf.Timestamp",
    "google.protobuf.Duration",
];

/// Names of library types a signature may use.
const NAMED_TYPES: &[&str] = &[
    "net.IP",
    "net.CIDR",
    "kubernetes.URL",
    "kubernetes.Quantity",
    "kubernetes.Semver",
    "kubernetes.NamedFormat",
    "kubernetes.authorization.Authorizer",
    "kubernetes.authorization.PathCheck",
    "kubernetes.authorization.GroupCheck",
    "kubernetes.authorization.ResourceCheck",
    "kubernetes.authorization.Decision",
];

// ---- the declared types of the admission variables -------------------------------------------

fn object(name: &str, fields: &[(&str, Ty)]) -> Ty {
    Ty::Object(Arc::new(ObjectType {
        name: name.to_string(),
        fields: fields.iter().map(|(n, t)| (n.to_string(), t.clone())).collect(),
    }))
}

fn list(t: Ty) -> Ty {
    Ty::List(Box::new(t))
}

fn map(k: Ty, v: Ty) -> Ty {
    Ty::Map(Box::new(k), Box::new(v))
}

/// `request`: the API server's `kubernetes.AdmissionRequest` (without `uid`, `object` and
/// `oldObject`, which it leaves out too). Built once.
pub fn admission_request() -> Ty {
    static TYPE: OnceLock<Ty> = OnceLock::new();
    TYPE.get_or_init(build_admission_request).clone()
}

fn build_admission_request() -> Ty {
    let gvk =
        object("kubernetes.GroupVersionKind", &[("group", Ty::String), ("version", Ty::String), ("kind", Ty::String)]);
    let gvr = object(
        "kubernetes.GroupVersionResource",
        &[("group", Ty::String), ("version", Ty::String), ("resource", Ty::String)],
    );
    let user = object(
        "kubernetes.UserInfo",
        &[
            ("username", Ty::String),
            ("uid", Ty::String),
            ("groups", list(Ty::String)),
            ("extra", map(Ty::String, list(Ty::String))),
        ],
    );
    object(
        "kubernetes.AdmissionRequest",
        &[
            ("kind", gvk.clone()),
            ("resource", gvr.clone()),
            ("subResource", Ty::String),
            ("requestKind", gvk),
            ("requestResource", gvr),
            ("requestSubResource", Ty::String),
            ("name", Ty::String),
            ("namespace", Ty::String),
            ("operation", Ty::String),
            ("userInfo", user),
            ("dryRun", Ty::Bool),
            ("options", Ty::Dyn),
        ],
    )
}

/// `namespaceObject`: the API server's `kubernetes.Namespace`. Built once.
pub fn namespace() -> Ty {
    static TYPE: OnceLock<Ty> = OnceLock::new();
    TYPE.get_or_init(build_namespace).clone()
}

fn build_namespace() -> Ty {
    let strings = || map(Ty::String, Ty::String);
    let condition = object(
        "kubernetes.NamespaceCondition",
        &[
            ("status", Ty::String),
            ("type", Ty::String),
            ("lastTransitionTime", Ty::Timestamp),
            ("message", Ty::String),
            ("reason", Ty::String),
        ],
    );
    object(
        "kubernetes.Namespace",
        &[
            (
                "metadata",
                object(
                    "kubernetes.NamespaceMetadata",
                    &[
                        ("name", Ty::String),
                        ("generateName", Ty::String),
                        ("namespace", Ty::String),
                        ("labels", strings()),
                        ("annotations", strings()),
                        ("UID", Ty::String),
                        ("creationTimestamp", Ty::Timestamp),
                        ("deletionGracePeriodSeconds", Ty::Int),
                        ("deletionTimestamp", Ty::Timestamp),
                        ("generation", Ty::Int),
                        ("resourceVersion", Ty::String),
                        ("finalizers", list(Ty::String)),
                    ],
                ),
            ),
            ("spec", object("kubernetes.NamespaceSpec", &[("finalizers", list(Ty::String))])),
            ("status", object("kubernetes.NamespaceStatus", &[("conditions", list(condition)), ("phase", Ty::String)])),
        ],
    )
}

/// `variables`: one field per declared variable, of its expression's type.
pub fn variables(declared: &[(String, Ty)]) -> Ty {
    Ty::Object(Arc::new(ObjectType { name: "kubernetes.variables".into(), fields: declared.to_vec() }))
}

// ---- signatures ---------------------------------------------------------------------------------

struct Overload {
    member: bool,
    /// The receiver first, for a member.
    params: Vec<Ty>,
    result: Ty,
}

fn signatures() -> &'static HashMap<String, Vec<Overload>> {
    static TABLE: OnceLock<HashMap<String, Vec<Overload>>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table: HashMap<String, Vec<Overload>> = HashMap::new();
        let text = include_str!("signatures.txt");
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // A line that does not parse is left out (nothing may panic inside a host); the
            // `every_signature_parses` test keeps the file clean.
            if let Ok((name, overload)) = parse_signature(line) {
                table.entry(name).or_default().push(overload);
            }
        }
        // The ordering operators share `_<_`'s overloads; `_?_:_` is `(bool, A, A) -> A`.
        let less: Vec<(Vec<Ty>, Ty)> =
            table.get(operators::LESS).into_iter().flatten().map(|o| (o.params.clone(), o.result.clone())).collect();
        for op in [operators::LESS_EQUALS, operators::GREATER, operators::GREATER_EQUALS] {
            let same = less.iter().map(|(p, r)| Overload { member: false, params: p.clone(), result: r.clone() });
            table.insert(op.to_string(), same.collect());
        }
        table.insert(
            operators::CONDITIONAL.to_string(),
            vec![Overload { member: false, params: vec![Ty::Bool, Ty::Param(0), Ty::Param(0)], result: Ty::Param(0) }],
        );
        for name in super::k8s::format_names() {
            table.insert(
                format!("format.{name}"),
                vec![Overload { member: false, params: Vec::new(), result: Ty::Named("kubernetes.NamedFormat") }],
            );
        }
        table
    })
}

/// `global NAME(ARGS) -> RESULT` or `member RECEIVER.NAME(ARGS) -> RESULT`.
fn parse_signature(line: &str) -> Result<(String, Overload), String> {
    let (kind, rest) = line.split_once(' ').ok_or("no kind")?;
    let (call, result) = rest.rsplit_once(" -> ").ok_or("no result")?;
    let call = call.trim();
    // The argument list is the last parenthesized group; the name stands right before it.
    let open = {
        let mut depth = 0;
        let mut found = None;
        for (i, c) in call.char_indices().rev() {
            match c {
                ')' => depth += 1,
                '(' => {
                    depth -= 1;
                    if depth == 0 {
                        found = Some(i);
                        break;
                    }
                }
                _ => {}
            }
        }
        found.ok_or("no argument list")?
    };
    let head = &call[..open];
    let mut params = Vec::new();
    let member = match kind {
        "member" => {
            let dot = head.rfind('.').ok_or("a member without a receiver")?;
            params.push(parse_type(&head[..dot])?);
            true
        }
        "global" => false,
        other => return Err(format!("unknown kind {other}")),
    };
    let name = if member { &head[head.rfind('.').unwrap_or(0) + 1..] } else { head };
    let args = &call[open + 1..call.len() - 1];
    for arg in split_top(args) {
        params.push(parse_type(arg)?);
    }
    Ok((name.to_string(), Overload { member, params, result: parse_type(result.trim())? }))
}

/// Splits `a, map(b, c), d` at its top-level commas.
fn split_top(text: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(text[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    let last = text[start..].trim();
    if !last.is_empty() {
        parts.push(last);
    }
    parts
}

fn parse_type(text: &str) -> Result<Ty, String> {
    let text = text.trim();
    if let Some(inner) = text.strip_suffix(')') {
        let (head, args) = inner.split_once('(').ok_or("unbalanced type")?;
        let args = split_top(args).into_iter().map(parse_type).collect::<Result<Vec<_>, _>>()?;
        return match (head, args.as_slice()) {
            ("list", [t]) => Ok(list(t.clone())),
            ("map", [k, v]) => Ok(map(k.clone(), v.clone())),
            ("optional_type", [t]) => Ok(Ty::Optional(Box::new(t.clone()))),
            _ => Err(format!("unknown type {text}")),
        };
    }
    Ok(match text {
        "dyn" => Ty::Dyn,
        "bool" => Ty::Bool,
        "int" => Ty::Int,
        "uint" => Ty::Uint,
        "double" => Ty::Double,
        "string" => Ty::String,
        "bytes" => Ty::Bytes,
        "type" => Ty::Type,
        "google.protobuf.Timestamp" => Ty::Timestamp,
        "google.protobuf.Duration" => Ty::Duration,
        "A" => Ty::Param(0),
        "B" => Ty::Param(1),
        other => Ty::Named(NAMED_TYPES.iter().find(|n| **n == other).ok_or_else(|| format!("unknown type {other}"))?),
    })
}

// ---- matching arguments to parameters -----------------------------------------------------------

/// Whether `arg` fits `param`, binding the type parameters in `subs` as it goes.
fn fits(param: &Ty, arg: &Ty, subs: &mut [Option<Ty>; 2]) -> bool {
    match (param, arg) {
        (Ty::Param(i), _) => match subs[*i as usize].clone() {
            None => {
                subs[*i as usize] = Some(arg.clone());
                true
            }
            Some(Ty::Dyn) => true,
            Some(bound) => {
                if fits(&bound, arg, subs) {
                    true
                } else if fits(arg, &bound, subs) {
                    // The more general of the two stands for the parameter.
                    subs[*i as usize] = Some(arg.clone());
                    true
                } else {
                    false
                }
            }
        },
        (_, Ty::Dyn) | (Ty::Dyn, _) => true,
        // `null` goes where a message may be absent, not where a value of a simple type must be.
        (_, Ty::Null) => {
            matches!(param, Ty::Null | Ty::Named(_) | Ty::Object(_) | Ty::Timestamp | Ty::Duration | Ty::Optional(_))
        }
        (Ty::List(p), Ty::List(a)) | (Ty::Optional(p), Ty::Optional(a)) => fits(p, a, subs),
        (Ty::Map(pk, pv), Ty::Map(ak, av)) => fits(pk, ak, subs) && fits(pv, av, subs),
        (Ty::Object(p), Ty::Object(a)) => p.name == a.name,
        (p, a) => p == a,
    }
}

/// Whether a value of type `got` can be what needs a `want` (`dyn` anywhere in either fits).
pub fn assignable(want: &Ty, got: &Ty) -> bool {
    fits(want, got, &mut [None, None])
}

fn substitute(t: &Ty, subs: &[Option<Ty>; 2]) -> Ty {
    match t {
        Ty::Param(i) => subs[*i as usize].clone().unwrap_or(Ty::Dyn),
        Ty::List(e) => list(substitute(e, subs)),
        Ty::Map(k, v) => map(substitute(k, subs), substitute(v, subs)),
        Ty::Optional(e) => Ty::Optional(Box::new(substitute(e, subs))),
        other => other.clone(),
    }
}

/// One type for elements or branches of differing types: theirs when they agree, else `dyn`.
fn join(a: &Ty, b: &Ty) -> Ty {
    match (a, b) {
        _ if a == b => a.clone(),
        (Ty::List(x), Ty::List(y)) => list(join(x, y)),
        (Ty::Map(xk, xv), Ty::Map(yk, yv)) => map(join(xk, yk), join(xv, yv)),
        _ => Ty::Dyn,
    }
}

// ---- the walk -----------------------------------------------------------------------------------

/// What the names an expression starts from are (`object`, `request`, a suite's bindings).
pub type Declared<'a> = &'a dyn Fn(&str) -> Option<Ty>;

/// Checks `tree` and returns its type. Errors give the column (and line, in a multi-line
/// expression) of the part that fails, in `info`'s source.
pub fn check(tree: &IdedExpr, info: &SourceInfo, declared: Declared<'_>) -> Result<Checked, String> {
    let mut checker = Checker { info, declared, scopes: Vec::new(), at: tree.id, types: HashMap::new() };
    let output = checker.expr(tree)?;
    Ok(Checked { output, types: checker.types })
}

/// What the check found: the expression's type and each node's.
pub struct Checked {
    pub output: Ty,
    pub types: HashMap<u64, Ty>,
}

struct Checker<'a> {
    info: &'a SourceInfo,
    declared: Declared<'a>,
    /// Comprehension variables in scope, innermost last.
    scopes: Vec<(String, Ty)>,
    /// Each node's type, by id (for the cost estimate).
    types: HashMap<u64, Ty>,
    /// The innermost node with a known position: where an error in a generated node points.
    at: u64,
}

impl Checker<'_> {
    fn error(&self, id: u64, message: String) -> String {
        let id = if self.info.offset_for(id).is_some() { id } else { self.at };
        let Some((start, _)) = self.info.offset_for(id) else {
            return format!("type error in the expression: {message}");
        };
        let source = &self.info.source;
        let before = source.get(..start as usize).unwrap_or(source);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        if source.contains('\n') {
            format!("type error at line {line}, column {column} of the expression: {message}")
        } else {
            format!("type error at column {column} of the expression: {message}")
        }
    }

    fn lookup(&self, name: &str) -> Option<Ty> {
        if let Some((_, t)) = self.scopes.iter().rev().find(|(n, _)| n == name) {
            return Some(t.clone());
        }
        (self.declared)(name)
    }

    fn expr(&mut self, e: &IdedExpr) -> Result<Ty, String> {
        let outer = self.at;
        if self.info.offset_for(e.id).is_some() {
            self.at = e.id;
        }
        let t = self.expr_inner(e);
        self.at = outer;
        // Types nest no deeper than values may (variables can nest a list in a list 20,000 times).
        let t = t.map(|t| if nested_deeper_than(&t, super::MAX_VARIABLE_VALUE_NESTING) { Ty::Dyn } else { t })?;
        self.types.insert(e.id, t.clone());
        Ok(t)
    }

    fn expr_inner(&mut self, e: &IdedExpr) -> Result<Ty, String> {
        match &e.expr {
            Expr::Literal(l) => Ok(match l {
                LiteralValue::Boolean(_) => Ty::Bool,
                LiteralValue::Bytes(_) => Ty::Bytes,
                LiteralValue::Double(_) => Ty::Double,
                LiteralValue::Int(_) => Ty::Int,
                LiteralValue::Null => Ty::Null,
                LiteralValue::String(_) => Ty::String,
                LiteralValue::UInt(_) => Ty::Uint,
            }),
            Expr::Ident(name) => self.ident(e.id, name),
            Expr::Select(s) => {
                if let Some((name, root)) = qualified_name(e) {
                    if self.lookup(name.split('.').next().unwrap_or_default()).is_none() {
                        return self.qualified(e.id, &name, root);
                    }
                }
                let operand = self.expr(&s.operand)?;
                let field = self.field(e.id, &operand, &s.field)?;
                Ok(if s.test { Ty::Bool } else { field })
            }
            Expr::List(l) => {
                let mut element: Option<Ty> = None;
                for item in &l.elements {
                    let t = self.expr(item)?;
                    element = Some(element.map_or(t.clone(), |e| join(&e, &t)));
                }
                let element = if l.optional_indices.is_empty() { element.unwrap_or(Ty::Dyn) } else { Ty::Dyn };
                Ok(list(element))
            }
            Expr::Map(m) => {
                let (mut key, mut value): (Option<Ty>, Option<Ty>) = (None, None);
                for entry in &m.entries {
                    if let EntryExpr::MapEntry(entry) = &entry.expr {
                        let (k, v) = (self.expr(&entry.key)?, self.expr(&entry.value)?);
                        let v = if entry.optional { Ty::Dyn } else { v };
                        key = Some(key.map_or(k.clone(), |x| join(&x, &k)));
                        value = Some(value.map_or(v.clone(), |x| join(&x, &v)));
                    }
                }
                Ok(map(key.unwrap_or(Ty::Dyn), value.unwrap_or(Ty::Dyn)))
            }
            Expr::Struct(s) => {
                for entry in &s.entries {
                    if let EntryExpr::StructField(f) = &entry.expr {
                        self.expr(&f.value)?;
                    }
                }
                Ok(if s.type_name == "JSONPatch" { Ty::Named("JSONPatch") } else { Ty::Dyn })
            }
            Expr::Comprehension(c) => {
                let range = self.expr(&c.iter_range)?;
                let (first, second) = match &range {
                    Ty::List(t) => (Ty::Int, (**t).clone()),
                    Ty::Map(k, v) => ((**k).clone(), (**v).clone()),
                    Ty::Dyn => (Ty::Dyn, Ty::Dyn),
                    other => {
                        return Err(self.error(
                            c.iter_range.id,
                            format!(
                                "expression of type '{other}' cannot be the range of a comprehension (must be list, \
                                 map, or dynamic)"
                            ),
                        ))
                    }
                };
                let iter = match (&range, &c.iter_var2) {
                    (Ty::List(_), None) => vec![(c.iter_var.clone(), second)],
                    (_, None) => vec![(c.iter_var.clone(), first)],
                    (_, Some(v2)) => vec![(c.iter_var.clone(), first), (v2.clone(), second)],
                };
                let init = self.expr(&c.accu_init)?;
                let empty_init = match &c.accu_init.expr {
                    Expr::List(l) => l.elements.is_empty(),
                    Expr::Map(m) => m.entries.is_empty(),
                    _ => false,
                };
                self.scopes.push((c.accu_var.clone(), init.clone()));
                let depth = self.scopes.len();
                self.scopes.extend(iter);
                self.expr(&c.loop_cond)?;
                let step = self.expr(&c.loop_step)?;
                self.scopes.truncate(depth);
                // An empty list or map to start from takes the type the steps build.
                if empty_init {
                    if let Some(accu) = self.scopes.last_mut() {
                        accu.1 = step;
                    }
                }
                let result = self.expr(&c.result);
                self.scopes.pop();
                result
            }
            Expr::Call(call) => self.call(e.id, &call.func_name, call.target.as_deref(), &call.args),
            Expr::Unspecified => Ok(Ty::Dyn),
        }
    }

    fn ident(&self, id: u64, name: &str) -> Result<Ty, String> {
        if let Some(t) = self.lookup(name) {
            return Ok(t);
        }
        if TYPE_NAMES.contains(&name) {
            return Ok(Ty::Type);
        }
        let hint = if name == "params" { ": params are declared by a paramKind (a `cel` rule's `params`)" } else { "" };
        Err(self.error(id, format!("undeclared reference to '{name}' (in container ''){hint}")))
    }

    /// `a.b.c` whose first name is not declared: the longest declared prefix (a binding may be
    /// named `a.b`) with the rest selected from it, or a type name.
    fn qualified(&self, id: u64, name: &str, root: u64) -> Result<Ty, String> {
        let parts: Vec<&str> = name.split('.').collect();
        for k in (1..=parts.len()).rev() {
            if let Some(mut t) = self.lookup(&parts[..k].join(".")) {
                for field in &parts[k..] {
                    t = self.field(id, &t, field)?;
                }
                return Ok(t);
            }
        }
        if TYPE_NAMES.contains(&name) {
            return Ok(Ty::Type);
        }
        self.ident(root, parts.first().copied().unwrap_or(name))
    }

    fn field(&self, id: u64, operand: &Ty, field: &str) -> Result<Ty, String> {
        match operand {
            // Selecting through an optional gives an optional (`opt.a.b`, optional chaining).
            Ty::Optional(inner) => Ok(Ty::Optional(Box::new(match self.field(id, inner, field)? {
                Ty::Optional(t) => *t,
                t => t,
            }))),
            Ty::Dyn | Ty::Named(_) => Ok(Ty::Dyn),
            Ty::Map(_, v) => Ok((**v).clone()),
            Ty::Object(o) => match o.fields.iter().find(|(n, _)| n == field) {
                Some((_, t)) => Ok(t.clone()),
                None => Err(self.error(id, format!("undefined field '{field}'"))),
            },
            other => Err(self.error(id, format!("type '{other}' does not support field selection"))),
        }
    }

    fn call(&mut self, id: u64, name: &str, target: Option<&IdedExpr>, args: &[IdedExpr]) -> Result<Ty, String> {
        let table = signatures();
        // `sets.contains(a, b)`, `optional.of(x)`: a qualified global function, not a member call.
        if let Some(Expr::Ident(namespace)) = target.map(|t| &t.expr) {
            if self.lookup(namespace).is_none() {
                let qualified = format!("{namespace}.{name}");
                return self.overloads(id, &qualified, table.get(&qualified), None, args);
            }
        }
        match name {
            operators::OPT_SELECT => {
                let Some(operand) = args.first() else { return Ok(Ty::Optional(Box::new(Ty::Dyn))) };
                let operand = self.expr(operand)?;
                let field = match args.get(1).map(|a| &a.expr) {
                    Some(Expr::Literal(LiteralValue::String(f))) => match self.field(id, &operand, f)? {
                        Ty::Optional(t) => *t,
                        t => t,
                    },
                    _ => Ty::Dyn,
                };
                return Ok(Ty::Optional(Box::new(field)));
            }
            operators::OPT_INDEX => {
                for a in args {
                    self.expr(a)?;
                }
                return Ok(Ty::Optional(Box::new(Ty::Dyn)));
            }
            _ => {}
        }
        let receiver = target.map(|t| self.expr(t)).transpose()?;
        self.overloads(id, name, table.get(name), receiver, args)
    }

    /// The result of calling `name` with `args` (and `receiver`): what the overloads that take
    /// them give, or an error when none does.
    fn overloads(
        &mut self,
        id: u64,
        name: &str,
        overloads: Option<&Vec<Overload>>,
        receiver: Option<Ty>,
        args: &[IdedExpr],
    ) -> Result<Ty, String> {
        let mut types = Vec::with_capacity(args.len() + 1);
        types.extend(receiver.clone());
        for a in args {
            types.push(self.expr(a)?);
        }
        // Internal helpers (`@pairs`, `@poll`) that the parser's macros and meshguard's rewrites
        // call are not the policy's to declare.
        let Some(overloads) = overloads else {
            if name.starts_with('@') {
                return Ok(Ty::Dyn);
            }
            return Err(self.error(id, format!("undeclared reference to '{name}' (in container '')")));
        };
        let member = receiver.is_some();
        let styled: Vec<&Overload> = overloads.iter().filter(|o| o.member == member).collect();
        if styled.is_empty() {
            return Err(self.error(id, format!("undeclared reference to '{name}' (in container '')")));
        }
        let mut result: Option<Ty> = None;
        for o in styled.iter().filter(|o| o.params.len() == types.len()) {
            let mut subs = [None, None];
            if o.params.iter().zip(&types).all(|(p, a)| fits(p, a, &mut subs)) {
                let r = substitute(&o.result, &subs);
                result = Some(match result {
                    None => r,
                    Some(previous) => join(&previous, &r),
                });
            }
        }
        result.ok_or_else(|| {
            let shown: Vec<String> = types.iter().map(ToString::to_string).collect();
            let applied = if member {
                format!("{}.({})", shown[0], shown[1..].join(", "))
            } else {
                format!("({})", shown.join(", "))
            };
            let shown_name = match name {
                operators::IN => "@in",
                other => other,
            };
            self.error(id, format!("found no matching overload for '{shown_name}' applied to '{applied}'"))
        })
    }
}

fn nested_deeper_than(t: &Ty, levels: usize) -> bool {
    let mut pending = vec![(t, 0)];
    while let Some((t, depth)) = pending.pop() {
        if depth > levels {
            return true;
        }
        match t {
            Ty::List(e) | Ty::Optional(e) => pending.push((e, depth + 1)),
            Ty::Map(k, v) => pending.extend([(&**k, depth + 1), (&**v, depth + 1)]),
            _ => {}
        }
    }
    false
}

/// `a.b.c` as one name, when `e` is a chain of selections ending in an identifier, and the id of
/// that identifier.
fn qualified_name(e: &IdedExpr) -> Option<(String, u64)> {
    match &e.expr {
        Expr::Ident(name) => Some((name.clone(), e.id)),
        Expr::Select(s) if !s.test => {
            qualified_name(&s.operand).map(|(base, root)| (format!("{base}.{}", s.field), root))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_signature_parses() {
        for (n, line) in include_str!("signatures.txt").lines().enumerate() {
            let line = line.trim();
            if !line.is_empty() && !line.starts_with('#') {
                assert!(parse_signature(line).is_ok(), "signatures.txt:{}: {line}", n + 1);
            }
        }
        let table = signatures();
        assert!(table["_+_"].len() >= 9);
        assert!(table["indexOf"].iter().any(|o| o.params[0] == list(Ty::Param(0))));
        assert!(table["indexOf"].iter().any(|o| o.params[0] == Ty::String));
        assert!(table.contains_key("format.dns1123Label"));
        assert_eq!(table[operators::GREATER_EQUALS].len(), table[operators::LESS].len());
    }

    #[test]
    fn parameters_bind_once() {
        let mut subs = [None, None];
        assert!(fits(&Ty::Param(0), &Ty::Int, &mut subs));
        assert!(!fits(&Ty::Param(0), &Ty::String, &mut subs));
        assert!(fits(&Ty::Param(0), &Ty::Dyn, &mut subs));
        let mut subs = [None, None];
        assert!(fits(&list(Ty::Param(0)), &list(Ty::Dyn), &mut subs));
        assert!(fits(&list(Ty::Param(0)), &list(Ty::Int), &mut subs));
        assert!(!fits(&Ty::Int, &Ty::Null, &mut subs));
        assert!(fits(&Ty::Named("net.IP"), &Ty::Null, &mut subs));
    }
}
