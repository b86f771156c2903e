//! The Kubernetes CEL libraries VAP authors use, where the `cel` crate lacks them: lists, regex,
//! URLs, quantities, IPs and CIDRs, named formats and semver, with Kubernetes' semantics.

use crate::pattern::{excerpt, MATCH_BUDGET, MAX_PATTERN_BYTES};
use cel::common::ast::{ComprehensionExpr, Expr, ListExpr, LiteralValue};
use cel::common::types::{CelOptional, Type, BOOL_TYPE, DYN_TYPE, INT_TYPE, LIST_TYPE, STRING_TYPE};
use cel::common::value::{CowVal, Val};
use cel::objects::{Key, Map, Opaque};
use cel::parser::{Macro, MacroExprHelper, ParseError};
use cel::{DeclarationError, Env, ExecutionError, IdedExpr, Value};
use regex_lite::Regex;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

type Out<'b, 'v> = Result<CowVal<'b, 'v>, ExecutionError>;

mod format;
mod net;
mod quantity;
mod semver;
mod urls;

use self::{format::*, net::*, quantity::*, semver::*, urls::*};

const QUANTITY: &str = "kubernetes.Quantity";
const SEMVER: &str = "kubernetes.Semver";
const IP: &str = "net.IP";
const CIDR: &str = "net.CIDR";
const URL: &str = "kubernetes.URL";
const FORMAT: &str = "kubernetes.NamedFormat";

fn opaque(name: &'static str) -> Type {
    Type::new_opaque_type(name)
}

pub(super) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    // The library's types, by name (`type(ip('10.0.0.1')) == net.IP`), as the API server declares them.
    for name in [IP, CIDR, URL] {
        env.add_type(opaque(name))?;
    }
    // Lists.
    env.add_member_overload("isSorted", "list_is_sorted", LIST_TYPE, vec![], is_sorted)?;
    env.add_member_overload("sum", "list_sum", LIST_TYPE, vec![], sum)?;
    env.add_member_overload("min", "list_min", LIST_TYPE, vec![], min)?;
    env.add_member_overload("max", "list_max", LIST_TYPE, vec![], max)?;
    env.add_member_overload("indexOf", "list_index_of", LIST_TYPE, vec![DYN_TYPE], index_of)?;
    env.add_member_overload("lastIndexOf", "list_last_index_of", LIST_TYPE, vec![DYN_TYPE], last_index_of)?;
    // Lists version 1 (Kubernetes 1.37): a list includes an item equal to the argument; any other
    // value includes only what equals it.
    env.add_member_overload("includes", "list_includes_dyn_dyn", DYN_TYPE, vec![DYN_TYPE], includes)?;
    // Sets (cel-go's `ext.Sets`, in the Kubernetes environment): lists read as sets.
    env.add_overload("sets.contains", "list_sets_contains_list", vec![LIST_TYPE, LIST_TYPE], sets_contains)?;
    env.add_overload("sets.equivalent", "list_sets_equivalent_list", vec![LIST_TYPE, LIST_TYPE], sets_equivalent)?;
    env.add_overload("sets.intersects", "list_sets_intersects_list", vec![LIST_TYPE, LIST_TYPE], sets_intersects)?;
    // Regex (RE2 syntax, through regex-lite, compiled once per pattern).
    env.add_overload("matches", "matches_string_string", vec![STRING_TYPE, STRING_TYPE], matches)?;
    env.add_member_overload("matches", "string_matches_string", STRING_TYPE, vec![STRING_TYPE], matches)?;
    env.add_member_overload("find", "string_find_string", STRING_TYPE, vec![STRING_TYPE], find)?;
    env.add_member_overload("findAll", "string_find_all_string", STRING_TYPE, vec![STRING_TYPE], find_all)?;
    env.add_member_overload(
        "findAll",
        "string_find_all_string_int",
        STRING_TYPE,
        vec![STRING_TYPE, INT_TYPE],
        find_all,
    )?;
    // URLs.
    env.add_overload("url", "url_string", vec![STRING_TYPE], url)?;
    env.add_overload("isURL", "is_url_string", vec![STRING_TYPE], is_url)?;
    for (name, f) in [
        ("getScheme", url_scheme as cel::common::functions::Function),
        ("getHost", url_host),
        ("getHostname", url_hostname),
        ("getPort", url_port),
        ("getEscapedPath", url_path),
        ("getQuery", url_query),
    ] {
        env.add_member_overload(name, &format!("url_{name}"), opaque(URL), vec![], f)?;
    }
    // Quantities.
    env.add_overload("quantity", "quantity_string", vec![STRING_TYPE], quantity)?;
    env.add_overload("isQuantity", "is_quantity_string", vec![STRING_TYPE], is_quantity)?;
    let q = || opaque(QUANTITY);
    env.add_member_overload("isInteger", "quantity_is_integer", q(), vec![], q_is_integer)?;
    env.add_member_overload("asInteger", "quantity_as_integer", q(), vec![], q_as_integer)?;
    env.add_member_overload("asApproximateFloat", "quantity_as_float", q(), vec![], q_as_float)?;
    env.add_member_overload("sign", "quantity_sign", q(), vec![], q_sign)?;
    env.add_member_overload("add", "quantity_add_quantity", q(), vec![q()], q_add)?;
    env.add_member_overload("add", "quantity_add_int", q(), vec![INT_TYPE], q_add)?;
    env.add_member_overload("sub", "quantity_sub_quantity", q(), vec![q()], q_sub)?;
    env.add_member_overload("sub", "quantity_sub_int", q(), vec![INT_TYPE], q_sub)?;
    env.add_member_overload("compareTo", "quantity_compare", q(), vec![q()], q_compare)?;
    env.add_member_overload("isGreaterThan", "quantity_greater", q(), vec![q()], q_greater)?;
    env.add_member_overload("isLessThan", "quantity_less", q(), vec![q()], q_less)?;
    // IPs and CIDRs.
    env.add_overload("ip", "ip_string", vec![STRING_TYPE], ip)?;
    env.add_overload("isIP", "is_ip_string", vec![STRING_TYPE], is_ip)?;
    env.add_overload("ip.isCanonical", "ip_is_canonical_string", vec![STRING_TYPE], ip_is_canonical)?;
    env.add_overload("string", "string_ip", vec![opaque(IP)], to_string)?;
    for (name, f) in [
        ("family", ip_family as cel::common::functions::Function),
        ("isUnspecified", ip_is_unspecified),
        ("isLoopback", ip_is_loopback),
        ("isLinkLocalMulticast", ip_is_link_local_multicast),
        ("isLinkLocalUnicast", ip_is_link_local_unicast),
        ("isGlobalUnicast", ip_is_global_unicast),
    ] {
        env.add_member_overload(name, &format!("ip_{name}"), opaque(IP), vec![], f)?;
    }
    env.add_overload("cidr", "cidr_string", vec![STRING_TYPE], cidr)?;
    env.add_overload("isCIDR", "is_cidr_string", vec![STRING_TYPE], is_cidr)?;
    env.add_overload("string", "string_cidr", vec![opaque(CIDR)], to_string)?;
    env.add_member_overload("containsIP", "cidr_contains_ip", opaque(CIDR), vec![opaque(IP)], cidr_contains_ip)?;
    env.add_member_overload(
        "containsIP",
        "cidr_contains_ip_string",
        opaque(CIDR),
        vec![STRING_TYPE],
        cidr_contains_ip,
    )?;
    env.add_member_overload(
        "containsCIDR",
        "cidr_contains_cidr",
        opaque(CIDR),
        vec![opaque(CIDR)],
        cidr_contains_cidr,
    )?;
    env.add_member_overload(
        "containsCIDR",
        "cidr_contains_cidr_string",
        opaque(CIDR),
        vec![STRING_TYPE],
        cidr_contains_cidr,
    )?;
    env.add_member_overload("ip", "cidr_ip", opaque(CIDR), vec![], cidr_ip)?;
    env.add_member_overload("masked", "cidr_masked", opaque(CIDR), vec![], cidr_masked)?;
    env.add_member_overload("prefixLength", "cidr_prefix_length", opaque(CIDR), vec![], cidr_prefix_length)?;
    // Named formats: `format.dns1123Label().validate(name)` is none when valid.
    for f in FORMATS {
        env.add_overload(&format!("format.{}", f.name), &format!("format_{}", f.name), vec![], f.constructor)?;
    }
    env.add_overload("format.named", "format_named_string", vec![STRING_TYPE], format_named)?;
    // MutatingAdmissionPolicy's: a key as one JSON Pointer segment, for JSONPatch paths.
    env.add_overload("jsonpatch.escapeKey", "string_jsonpatch_escapeKey_string", vec![STRING_TYPE], escape_key)?;
    env.add_member_overload("validate", "format_validate_string", opaque(FORMAT), vec![STRING_TYPE], format_validate)?;
    // Semver.
    env.add_overload("semver", "semver_string", vec![STRING_TYPE], semver)?;
    env.add_overload("semver", "semver_string_bool", vec![STRING_TYPE, BOOL_TYPE], semver)?;
    env.add_overload("isSemver", "is_semver_string", vec![STRING_TYPE], is_semver)?;
    env.add_overload("isSemver", "is_semver_string_bool", vec![STRING_TYPE, BOOL_TYPE], is_semver)?;
    let s = || opaque(SEMVER);
    env.add_member_overload("major", "semver_major", s(), vec![], sv_major)?;
    env.add_member_overload("minor", "semver_minor", s(), vec![], sv_minor)?;
    env.add_member_overload("patch", "semver_patch", s(), vec![], sv_patch)?;
    env.add_member_overload("compareTo", "semver_compare", s(), vec![s()], sv_compare)?;
    env.add_member_overload("isGreaterThan", "semver_greater", s(), vec![s()], sv_greater)?;
    env.add_member_overload("isLessThan", "semver_less", s(), vec![s()], sv_less)?;
    env.add_macro(Macro::receiver("bind", 3, bind_macro))?;
    Ok(())
}

/// `cel.bind(name, init, expr)`: `expr` with `name` bound to `init`, evaluated once (cel-go's
/// bindings extension, which Kubernetes enables). Expanded, as cel-go does, into a comprehension
/// over an empty list whose accumulator is the binding.
fn bind_macro(
    helper: &mut MacroExprHelper<'_>,
    target: &mut Option<IdedExpr>,
    args: &mut Vec<IdedExpr>,
) -> Result<Option<IdedExpr>, ParseError> {
    if !matches!(target.as_ref().map(|t| &t.expr), Some(Expr::Ident(name)) if name == "cel") {
        return Ok(None);
    }
    let (Some(result), Some(init), Some(var)) = (args.pop(), args.pop(), args.pop()) else {
        return Ok(None);
    };
    let Expr::Ident(name) = var.expr else {
        return Err(helper.new_error(var.id, "cel.bind() variable name must be a simple identifier"));
    };
    let bind = ComprehensionExpr {
        iter_range: helper.next_expr(Expr::List(ListExpr::new(Vec::new()))),
        iter_var: "#unused".to_owned(),
        iter_var2: None,
        loop_step: helper.next_expr(Expr::Ident(name.clone())),
        accu_var: name,
        accu_init: init,
        loop_cond: helper.next_expr(Expr::Literal(LiteralValue::Boolean(false.into()))),
        result,
    };
    Ok(Some(helper.next_expr(Expr::Comprehension(Box::new(bind)))))
}

// ---- plumbing -------------------------------------------------------------------------------

fn arg(args: &[CowVal<'_, '_>], i: usize) -> Result<Value, ExecutionError> {
    let v = args.get(i).ok_or_else(|| ExecutionError::invalid_argument_count(i + 1, args.len()))?;
    Value::try_from(&**v)
}

fn out<'b, 'v>(v: Value) -> Out<'b, 'v> {
    let boxed: Box<dyn Val> = v.try_into()?;
    Ok(CowVal::Owned(boxed))
}

fn string_arg(args: &[CowVal<'_, '_>], i: usize) -> Result<Arc<String>, ExecutionError> {
    match arg(args, i)? {
        Value::String(s) => Ok(s),
        other => Err(ExecutionError::UnexpectedType { got: other.type_of().to_string(), want: "string".into() }),
    }
}

fn list_arg(args: &[CowVal<'_, '_>], i: usize) -> Result<Arc<Vec<Value>>, ExecutionError> {
    match arg(args, i)? {
        Value::List(l) => Ok(l),
        other => Err(ExecutionError::UnexpectedType { got: other.type_of().to_string(), want: "list".into() }),
    }
}

fn opaque_arg<T: Opaque + Clone>(args: &[CowVal<'_, '_>], i: usize, what: &str) -> Result<T, ExecutionError> {
    match arg(args, i)? {
        Value::Opaque(o) => o.downcast_ref::<T>().cloned().ok_or_else(|| ExecutionError::UnexpectedType {
            got: o.runtime_type_name().to_string(),
            want: what.into(),
        }),
        other => Err(ExecutionError::UnexpectedType { got: other.type_of().to_string(), want: what.into() }),
    }
}

fn fail(function: &str, message: impl ToString) -> ExecutionError {
    ExecutionError::function_error(function, message)
}

fn bool_out<'b, 'v>(b: bool) -> Out<'b, 'v> {
    out(Value::Bool(b))
}

fn some<'b, 'v>(v: Value) -> Out<'b, 'v> {
    let boxed: Box<dyn Val> = v.try_into()?;
    Ok(CowVal::owned(CelOptional::of(boxed)))
}

fn none<'b, 'v>() -> Out<'b, 'v> {
    Ok(CowVal::owned(CelOptional::none()))
}

fn compare(function: &str, a: &Value, b: &Value) -> Result<Ordering, ExecutionError> {
    match (a, b) {
        // Bytes order as CEL orders them (byte by byte), which the cel crate leaves out.
        (Value::Bytes(x), Value::Bytes(y)) => Ok(x.as_slice().cmp(y.as_slice())),
        _ => a
            .partial_cmp(b)
            .ok_or_else(|| fail(function, format!("{} and {} are not comparable", a.type_of(), b.type_of()))),
    }
}

// ---- lists ----------------------------------------------------------------------------------

fn is_sorted<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let list = list_arg(&args, 0)?;
    for pair in list.windows(2) {
        if compare("isSorted", &pair[0], &pair[1])? == Ordering::Greater {
            return bool_out(false);
        }
    }
    bool_out(true)
}

fn sum<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let list = list_arg(&args, 0)?;
    let mut total = Value::Int(0);
    for (i, item) in list.iter().enumerate() {
        total = match (&total, item) {
            (Value::Int(a), Value::Int(b)) => Value::Int(a.checked_add(*b).ok_or_else(|| fail("sum", "int overflow"))?),
            (Value::Int(0), Value::UInt(b)) if i == 0 => Value::UInt(*b),
            (Value::UInt(a), Value::UInt(b)) => {
                Value::UInt(a.checked_add(*b).ok_or_else(|| fail("sum", "uint overflow"))?)
            }
            (Value::Int(0), Value::Float(b)) if i == 0 => Value::Float(*b),
            (Value::Float(a), Value::Float(b)) => Value::Float(a + b),
            (Value::Int(0), Value::Duration(b)) if i == 0 => Value::Duration(*b),
            (Value::Duration(a), Value::Duration(b)) => {
                Value::Duration(a.checked_add(b).ok_or_else(|| fail("sum", "duration overflow"))?)
            }
            (_, other) => return Err(fail("sum", format!("cannot add {} to the sum", other.type_of()))),
        };
    }
    out(total)
}

fn extreme<'b, 'v>(args: Vec<CowVal<'b, 'v>>, name: &str, want: Ordering) -> Out<'b, 'v> {
    let list = list_arg(&args, 0)?;
    let mut best = list.first().ok_or_else(|| fail(name, "the list is empty"))?;
    for item in list.iter().skip(1) {
        if compare(name, item, best)? == want {
            best = item;
        }
    }
    out(best.clone())
}

fn min<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    extreme(args, "min", Ordering::Less)
}

fn max<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    extreme(args, "max", Ordering::Greater)
}

fn index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let (list, needle) = (list_arg(&args, 0)?, arg(&args, 1)?);
    out(Value::Int(list.iter().position(|v| *v == needle).map_or(-1, |i| i as i64)))
}

fn last_index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let (list, needle) = (list_arg(&args, 0)?, arg(&args, 1)?);
    out(Value::Int(list.iter().rposition(|v| *v == needle).map_or(-1, |i| i as i64)))
}

fn includes<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let (target, item) = (arg(&args, 0)?, arg(&args, 1)?);
    match target {
        Value::List(list) => {
            super::interruptible::charge("includes", list.len() as u64)?;
            bool_out(list.contains(&item))
        }
        other => bool_out(other == item),
    }
}

/// Whether every item of `subset` is in `set` (CEL equality: `1 == 1.0`). Quadratic, so it polls
/// for the host's stop once per item, as comprehensions do.
fn all_in(function: &str, set: &[Value], subset: &[Value]) -> Result<bool, ExecutionError> {
    for item in subset {
        super::interruptible::charge(function, set.len() as u64)?;
        if crate::interrupt::poll() {
            return Err(ExecutionError::function_error(function, crate::interrupt::Stopped));
        }
        if !set.iter().any(|v| v == item) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn sets_contains<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let (set, subset) = (list_arg(&args, 0)?, list_arg(&args, 1)?);
    bool_out(all_in("sets.contains", &set, &subset)?)
}

fn sets_equivalent<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let (a, b) = (list_arg(&args, 0)?, list_arg(&args, 1)?);
    bool_out(all_in("sets.equivalent", &a, &b)? && all_in("sets.equivalent", &b, &a)?)
}

fn sets_intersects<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let (a, b) = (list_arg(&args, 0)?, list_arg(&args, 1)?);
    for item in b.iter() {
        super::interruptible::charge("sets.intersects", a.len() as u64)?;
        if crate::interrupt::poll() {
            return Err(ExecutionError::function_error("sets.intersects", crate::interrupt::Stopped));
        }
        if a.iter().any(|v| v == item) {
            return bool_out(true);
        }
    }
    bool_out(false)
}

// ---- regex ----------------------------------------------------------------------------------

/// Patterns compiled so far (bounded): rule expressions use a handful of literal patterns, and a
/// per-call compile would dominate evaluation.
static REGEX_CACHE: Mutex<Vec<(Arc<String>, Arc<Regex>)>> = Mutex::new(Vec::new());
const REGEX_CACHE_ENTRIES: usize = 128;

fn regex(function: &str, pattern: &Arc<String>, text: &str) -> Result<Arc<Regex>, ExecutionError> {
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(fail(
            function,
            format!("the pattern is {} bytes; the limit is {MAX_PATTERN_BYTES}", pattern.len()),
        ));
    }
    let cost = (pattern.len() as u64 + 1).saturating_mul(text.len() as u64 + 1);
    if cost > MATCH_BUDGET {
        return Err(fail(
            function,
            format!(
                "matching a {}-byte value against a {}-byte pattern exceeds meshguard's evaluation budget",
                text.len(),
                pattern.len()
            ),
        ));
    }
    if let Ok(cache) = REGEX_CACHE.lock() {
        if let Some((_, re)) = cache.iter().find(|(p, _)| **p == **pattern) {
            return Ok(Arc::clone(re));
        }
    }
    let re = Arc::new(compile_pattern(pattern).map_err(|e| fail(function, e))?);
    if let Ok(mut cache) = REGEX_CACHE.lock() {
        if cache.len() >= REGEX_CACHE_ENTRIES {
            cache.remove(0);
        }
        cache.push((Arc::clone(pattern), Arc::clone(&re)));
    }
    Ok(re)
}

/// `pattern` compiled, refusing what RE2 (the API server's engine) refuses and the regex crate
/// would take: possessive quantifiers (`x++`, `x*+`, `x?+`, `x{2}+`).
fn compile_pattern(pattern: &str) -> Result<Regex, String> {
    let invalid = |why: String| format!("invalid regex `{}`: {why}", excerpt(pattern, 80));
    let bytes = pattern.as_bytes();
    let (mut i, mut in_class) = (0, false);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'[' if !in_class => in_class = true,
            b']' if in_class => in_class = false,
            b'*' | b'+' | b'?' | b'}' if !in_class && bytes.get(i + 1) == Some(&b'+') => {
                let op = &pattern[i..i + 2];
                return Err(invalid(format!(
                    "invalid nested repetition operator `{op}` (RE2 has no possessive quantifiers)"
                )));
            }
            _ => {}
        }
        i += 1;
    }
    Regex::new(pattern).map_err(|e| invalid(excerpt(&e.to_string(), 300).to_string()))
}

/// Checks at load the patterns, durations and timestamps written as literals (`s.matches('^a+$')`,
/// `duration('1h')`), as the API server does when it compiles an expression: a bad one is a load
/// error, not a failure on every object.
pub(super) fn check_literal_patterns(tree: &mut cel::IdedExpr) -> Result<(), String> {
    let mut pending: Vec<&mut cel::IdedExpr> = vec![tree];
    while let Some(node) = pending.pop() {
        if let Expr::Call(call) = &node.expr {
            let pattern = match (call.func_name.as_str(), call.target.is_some(), call.args.as_slice()) {
                ("matches" | "find" | "findAll", true, [p, ..]) => Some(p),
                ("matches", false, [_, p]) => Some(p),
                _ => None,
            };
            if let Some(Expr::Literal(LiteralValue::String(p))) = pattern.map(|p| &p.expr) {
                if p.len() <= MAX_PATTERN_BYTES {
                    compile_pattern(p).map_err(|e| format!("invalid {} argument: {e}", call.func_name))?;
                }
            }
            // `duration('1d')`, `timestamp('2000-13-01T00:00:00Z')`: literals are read at load too.
            if let ("duration" | "timestamp", None, [Expr::Literal(_)]) = (
                call.func_name.as_str(),
                &call.target,
                call.args.iter().map(|a| &a.expr).collect::<Vec<_>>().as_slice(),
            ) {
                let ctx = cel::Context::with_env(std::sync::Arc::clone(super::env()?));
                if let Err(e) = Value::resolve(node, &ctx) {
                    return Err(format!("invalid {} argument: {}", call.func_name, super::describe(&e)));
                }
            }
        }
        pending.extend(super::ast::children_mut(&mut node.expr));
    }
    Ok(())
}

/// The names of the named formats (`format.dns1123Label()`, ...).
pub(super) fn format_names() -> impl Iterator<Item = &'static str> {
    FORMATS.iter().map(|f| f.name)
}

/// `jsonpatch.escapeKey(k)`: `~` → `~0` and `/` → `~1`, in one pass (never escaping twice).
fn escape_key<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let key = string_arg(&args, 0)?;
    out(Value::String(Arc::new(key.replace('~', "~0").replace('/', "~1"))))
}

fn matches<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let (text, pattern) = (string_arg(&args, 0)?, string_arg(&args, 1)?);
    bool_out(regex("matches", &pattern, &text)?.is_match(&text))
}

fn find<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let (text, pattern) = (string_arg(&args, 0)?, string_arg(&args, 1)?);
    let found = regex("find", &pattern, &text)?.find(&text).map_or("", |m| m.as_str()).to_string();
    out(Value::String(Arc::new(found)))
}

fn find_all<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let (text, pattern) = (string_arg(&args, 0)?, string_arg(&args, 1)?);
    let limit = match args.len() {
        3 => match arg(&args, 2)? {
            Value::Int(n) if n < 0 => usize::MAX,
            Value::Int(n) => n as usize,
            _ => usize::MAX,
        },
        _ => usize::MAX,
    };
    let re = regex("findAll", &pattern, &text)?;
    let found = re.find_iter(&text).take(limit).map(|m| Value::String(Arc::new(m.as_str().to_string()))).collect();
    out(Value::List(Arc::new(found)))
}

#[cfg(test)]
mod tests {
    use crate::cel::Expression;
    use cel::{Context, Value};
    use std::sync::Arc;

    /// Evaluates a closed expression in the shared environment.
    fn eval(expr: &str) -> Result<Value, String> {
        let e = Expression::compile(expr, &[])?;
        let ctx = Context::with_env(Arc::clone(super::super::env()?));
        cel::Value::resolve(&e.tree, &ctx).map_err(|e| e.to_string())
    }

    /// Each case is from the Kubernetes CEL documentation's examples (kubernetes.io, "CEL in
    /// Kubernetes", library tables), and must evaluate to true.
    #[test]
    fn quantities_are_exact_at_any_size_within_the_limits() {
        let huge = "quantity('9999999999999999999999999999999999999G')";
        assert_eq!(eval(&format!("{huge}.isInteger()")), Ok(Value::Bool(false)), "beyond int64");
        assert_eq!(eval(&format!("{huge}.isGreaterThan(quantity('1E'))")), Ok(Value::Bool(true)));
        assert_eq!(
            eval(&format!("{huge}.add(quantity('1')).compareTo({huge}.add(quantity('2')))")),
            Ok(Value::Int(-1)),
            "exact: one unit apart at 46 digits"
        );
        assert_eq!(eval("quantity('1.5Gi').compareTo(quantity('1536Mi'))"), Ok(Value::Int(0)));
        let many = format!("isQuantity('{}')", "9".repeat(super::quantity::MAX_DIGITS + 1));
        assert_eq!(eval(&many), Ok(Value::Bool(false)), "over the digit limit");
        assert_eq!(eval("isQuantity('1e101')"), Ok(Value::Bool(false)), "over the exponent limit");
        assert_eq!(eval("isQuantity('1e100')"), Ok(Value::Bool(true)));
    }

    #[test]
    fn kubernetes_library_examples() {
        let cases = [
            // lists
            "[1, 2, 3].isSorted()",
            "!['b', 'a'].isSorted()",
            "[1, 2, 3].sum() == 6",
            "[].sum() == 0",
            "[0.5, 1.5].sum() == 2.0",
            "[1, 2, 3].min() == 1",
            "['b', 'c', 'a'].max() == 'c'",
            "[1, 2, 2, 3].indexOf(2) == 1",
            "[1, 2, 2, 3].lastIndexOf(2) == 2",
            "[1, 2].indexOf(5) == -1",
            // regex
            "'abc 123'.find('[0-9]+') == '123'",
            "'abc'.find('[0-9]+') == ''",
            "'123 abc 456'.findAll('[0-9]+') == ['123', '456']",
            "'123 abc 456'.findAll('[0-9]+', 1) == ['123']",
            "'api-v2'.matches('^api-v[0-9]+$')",
            "matches('x', 'x')",
            // url
            "url('https://example.com:80/').getHost() == 'example.com:80'",
            "url('https://example.com:80/').getHostname() == 'example.com'",
            "url('https://[::1]:80/').getHostname() == '::1'",
            "url('https://example.com:80/').getPort() == '80'",
            "url('https://example.com/').getPort() == ''",
            "url('https://example.com/path with spaces/'.replace(' ', '%20')).getEscapedPath() == '/path%20with%20spaces/'",
            "url('https://example.com/').getScheme() == 'https'",
            "url('https://example.com/path?k1=a&k2=b&k2=c').getQuery() == {'k1': ['a'], 'k2': ['b', 'c']}",
            "url('/absolute-path').getEscapedPath() == '/absolute-path'",
            "isURL('https://example.com/')",
            "!isURL('not a url')",
            // quantity
            "quantity('1.5G').isGreaterThan(quantity('1G'))",
            "quantity('1Gi').compareTo(quantity('1024Mi')) == 0",
            "quantity('500m').isLessThan(quantity('1'))",
            "quantity('50k').asInteger() == 50000",
            "quantity('50M').isInteger()",
            "!quantity('9999999999999999999999999G').isInteger()",
            "quantity('50.703k').asApproximateFloat() == 50703.0",
            "quantity('-50k').sign() == -1",
            "quantity('50k').add(quantity('20k')) == quantity('70k')",
            "quantity('50k').add(20) == quantity('50020')",
            "quantity('50k').sub(quantity('20k')) == quantity('30k')",
            "quantity('1e3').asInteger() == 1000",
            "isQuantity('1.3G')",
            "!isQuantity('1.3Gib')",
            // ip and cidr
            "ip('192.168.0.1').family() == 4",
            "ip('::1').family() == 6",
            "ip('127.0.0.1').isLoopback()",
            "ip('0.0.0.0').isUnspecified()",
            "ip('224.0.0.1').isLinkLocalMulticast()",
            "ip('fe80::1').isLinkLocalUnicast()",
            "ip('192.168.0.1').isGlobalUnicast()",
            "!ip('255.255.255.255').isGlobalUnicast()",
            "isIP('::1')",
            "!isIP('::ffff:1.2.3.4')",
            "!isIP('1.2.3')",
            "ip.isCanonical('2001:db8::abcd')",
            "!ip.isCanonical('2001:DB8::ABCD')",
            "string(ip('192.168.0.1')) == '192.168.0.1'",
            "cidr('192.168.0.0/24').containsIP(ip('192.168.0.1'))",
            "cidr('192.168.0.0/24').containsIP('192.168.0.1')",
            "!cidr('192.168.0.0/24').containsIP('192.168.1.1')",
            "cidr('192.168.0.0/16').containsCIDR(cidr('192.168.10.0/24'))",
            "cidr('192.168.0.0/16').containsCIDR('192.168.10.0/24')",
            "!cidr('192.168.10.0/24').containsCIDR('192.168.0.0/16')",
            "cidr('192.168.0.1/24').ip() == ip('192.168.0.1')",
            "cidr('192.168.0.1/24').masked() == cidr('192.168.0.0/24')",
            "cidr('192.168.0.0/16').prefixLength() == 16",
            "cidr('::1/128').ip().family() == 6",
            "isCIDR('10.0.0.0/8')",
            "!isCIDR('10.0.0.0/33')",
            "string(cidr('10.0.0.0/8')) == '10.0.0.0/8'",
            // format
            "!format.dns1123Label().validate('my-name').hasValue()",
            "format.dns1123Label().validate('My_Name').hasValue()",
            "!format.dns1123Subdomain().validate('api.example.com').hasValue()",
            "format.dns1035Label().validate('1abc').hasValue()",
            "!format.qualifiedName().validate('example.com/my-key').hasValue()",
            "!format.labelValue().validate('').hasValue()",
            "format.labelValue().validate('-x').hasValue()",
            "!format.uuid().validate('123e4567-e89b-12d3-a456-426614174000').hasValue()",
            "format.named('dns1123Label').hasValue()",
            "!format.named('nope').hasValue()",
            "!format.named('dns1123Label').value().validate('ok').hasValue()",
            // semver
            "semver('1.2.3').major() == 1 && semver('1.2.3').minor() == 2 && semver('1.2.3').patch() == 3",
            "semver('1.2.3').isGreaterThan(semver('1.2.2'))",
            "semver('1.0.0-alpha').isLessThan(semver('1.0.0'))",
            "semver('1.0.0-alpha.1').isLessThan(semver('1.0.0-alpha.beta'))",
            "semver('1.0.0-rc.2').isLessThan(semver('1.0.0-rc.10'))",
            "semver('2.0.0').compareTo(semver('2.0.0')) == 0",
            "isSemver('1.2.3-rc.1+build.5')",
            "!isSemver('v1.2')",
            "isSemver('v1.2', true) && semver('v1.2', true) == semver('1.2.0')",
            "!isSemver('01.2.3')",
            // cel.bind
            "cel.bind(x, [1, 2, 3], x.sum() == 6 && size(x) == 3)",
            "cel.bind(a, 'x', cel.bind(b, a + 'y', b == 'xy'))",
            // strings extension (cel crate)
            "'TacoCat'.lowerAscii() == 'tacocat'",
            "'a,b'.split(',') == ['a', 'b']",
        ];
        let long_label = format!("format.dns1123Label().validate('{}').value().size() == 1", "a".repeat(64));
        for case in cases.iter().copied().chain([long_label.as_str()]) {
            assert_eq!(eval(case), Ok(Value::Bool(true)), "{case}");
        }
    }

    #[test]
    fn errors_are_errors_not_false() {
        for case in [
            "[].min() == 0",
            "quantity('1.3Gib') == quantity('1')",
            "ip('1.2.3') == ip('1.2.3.4')",
            "semver('x') == semver('1.0.0')",
            "'x'.matches('(')",
            "quantity('1.5').asInteger() == 1",
            "url('no scheme') == url('/x')",
        ] {
            assert!(eval(case).is_err(), "{case} should fail: {:?}", eval(case));
        }
    }
}
