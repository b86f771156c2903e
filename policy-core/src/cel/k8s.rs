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
    // Lists.
    env.add_member_overload("isSorted", "list_is_sorted", LIST_TYPE, vec![], is_sorted)?;
    env.add_member_overload("sum", "list_sum", LIST_TYPE, vec![], sum)?;
    env.add_member_overload("min", "list_min", LIST_TYPE, vec![], min)?;
    env.add_member_overload("max", "list_max", LIST_TYPE, vec![], max)?;
    env.add_member_overload("indexOf", "list_index_of", LIST_TYPE, vec![DYN_TYPE], index_of)?;
    env.add_member_overload("lastIndexOf", "list_last_index_of", LIST_TYPE, vec![DYN_TYPE], last_index_of)?;
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
    a.partial_cmp(b).ok_or_else(|| fail(function, format!("{} and {} are not comparable", a.type_of(), b.type_of())))
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
    let re = Arc::new(Regex::new(pattern).map_err(|e| {
        fail(function, format!("invalid regex `{}`: {}", excerpt(pattern, 80), excerpt(&e.to_string(), 300)))
    })?);
    if let Ok(mut cache) = REGEX_CACHE.lock() {
        if cache.len() >= REGEX_CACHE_ENTRIES {
            cache.remove(0);
        }
        cache.push((Arc::clone(pattern), Arc::clone(&re)));
    }
    Ok(re)
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

// ---- URLs -----------------------------------------------------------------------------------

/// An absolute URI or an absolute path, split as Go's `url.Parse` does for the getters VAP has.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Url {
    scheme: String,
    host: String,
    path: String,
    query: String,
}

impl Opaque for Url {
    fn runtime_type_name(&self) -> &str {
        URL
    }
}

impl Url {
    fn parse(text: &str) -> Result<Url, String> {
        if text.chars().any(|c| c.is_control() || c == ' ') {
            return Err("a URL must not contain spaces or control characters".into());
        }
        let text = text.split_once('#').map_or(text, |(t, _)| t);
        let (rest, query) = text.split_once('?').unwrap_or((text, ""));
        if rest.starts_with('/') {
            return Ok(Url { scheme: String::new(), host: String::new(), path: rest.to_string(), query: query.into() });
        }
        let (scheme, after) = rest.split_once(':').ok_or("not an absolute URI or absolute path")?;
        let scheme_ok = scheme.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
        if !scheme_ok {
            return Err(format!("`{}` is not a URI scheme", excerpt(scheme, 40)));
        }
        let (host, path) = match after.strip_prefix("//") {
            Some(authority_and_path) => {
                let cut = authority_and_path.find('/').unwrap_or(authority_and_path.len());
                let authority = &authority_and_path[..cut];
                let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
                (host.to_string(), authority_and_path[cut..].to_string())
            }
            None => (String::new(), after.to_string()),
        };
        Ok(Url { scheme: scheme.to_string(), host, path, query: query.into() })
    }

    fn hostname_and_port(&self) -> (&str, &str) {
        if let Some(rest) = self.host.strip_prefix('[') {
            let (h, after) = rest.split_once(']').unwrap_or((rest, ""));
            return (h, after.strip_prefix(':').unwrap_or(""));
        }
        match self.host.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => (h, p),
            _ => (&self.host, ""),
        }
    }
}

fn url<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let text = string_arg(&args, 0)?;
    let url = Url::parse(&text).map_err(|e| fail("url", format!("`{}`: {e}", excerpt(&text, 80))))?;
    out(Value::Opaque(Arc::new(url)))
}

fn is_url<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    bool_out(Url::parse(&string_arg(&args, 0)?).is_ok())
}

fn string_value<'b, 'v>(s: &str) -> Out<'b, 'v> {
    out(Value::String(Arc::new(s.to_string())))
}

fn url_scheme<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    string_value(&opaque_arg::<Url>(&args, 0, "URL")?.scheme)
}

fn url_host<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    string_value(&opaque_arg::<Url>(&args, 0, "URL")?.host)
}

fn url_hostname<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    string_value(opaque_arg::<Url>(&args, 0, "URL")?.hostname_and_port().0)
}

fn url_port<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    string_value(opaque_arg::<Url>(&args, 0, "URL")?.hostname_and_port().1)
}

fn url_path<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    string_value(&opaque_arg::<Url>(&args, 0, "URL")?.path)
}

fn url_query<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let url = opaque_arg::<Url>(&args, 0, "URL")?;
    let mut map: HashMap<Key, Vec<Value>> = HashMap::new();
    for pair in url.query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        map.entry(Key::String(Arc::new(percent_decode(k))))
            .or_default()
            .push(Value::String(Arc::new(percent_decode(v))));
    }
    let map = map.into_iter().map(|(k, v)| (k, Value::List(Arc::new(v)))).collect();
    out(Value::Map(Map { map: Arc::new(map) }))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                decoded.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                decoded.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

// ---- quantities -----------------------------------------------------------------------------

/// A resource quantity as an exact fraction `numerator / denominator` (denominator > 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Quantity {
    numerator: i128,
    denominator: i128,
}

impl Opaque for Quantity {
    fn runtime_type_name(&self) -> &str {
        QUANTITY
    }
}

/// Kubernetes' suffixes: binary (powers of 1024) and decimal SI (powers of 1000).
const BINARY_SUFFIXES: &[(&str, u32)] = &[("Ki", 10), ("Mi", 20), ("Gi", 30), ("Ti", 40), ("Pi", 50), ("Ei", 60)];
const DECIMAL_SUFFIXES: &[(&str, i32)] =
    &[("n", -9), ("u", -6), ("m", -3), ("", 0), ("k", 3), ("M", 6), ("G", 9), ("T", 12), ("P", 15), ("E", 18)];

fn pow10(exp: u32) -> Option<i128> {
    10i128.checked_pow(exp)
}

impl Quantity {
    fn parse(text: &str) -> Result<Quantity, String> {
        let bad = || format!("`{}` is not a quantity (e.g. 500m, 2, 1.5Gi, 1e3)", excerpt(text, 40));
        let split =
            text.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(text.len());
        let (number, suffix) = text.split_at(split);
        let (negative, digits) = match number.as_bytes().first() {
            Some(b'-') => (true, &number[1..]),
            Some(b'+') => (false, &number[1..]),
            _ => (false, number),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        if (whole.is_empty() && fraction.is_empty())
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !fraction.bytes().all(|b| b.is_ascii_digit())
            || whole.len() + fraction.len() > 30
        {
            return Err(bad());
        }
        let mantissa: i128 = format!("{whole}{fraction}").parse().map_err(|_| bad())?;
        let mut q = Quantity { numerator: if negative { -mantissa } else { mantissa }, denominator: 1 };
        let mut exp10 = -(fraction.len() as i32);
        if let Some((_, shift)) = BINARY_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
            q.numerator = q.numerator.checked_mul(1i128 << shift).ok_or_else(bad)?;
        } else if let Some((_, e)) = DECIMAL_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
            exp10 += e;
        } else if let Some(e) = suffix.strip_prefix(['e', 'E']) {
            let e: i32 = e.parse().map_err(|_| bad())?;
            if e.abs() > 30 {
                return Err(format!("`{}`: the exponent is out of range", excerpt(text, 40)));
            }
            exp10 += e;
        } else {
            return Err(bad());
        }
        let scale = pow10(exp10.unsigned_abs()).ok_or_else(bad)?;
        if exp10 >= 0 {
            q.numerator = q.numerator.checked_mul(scale).ok_or_else(bad)?;
        } else {
            q.denominator = scale;
        }
        Ok(q.reduced())
    }

    fn reduced(self) -> Quantity {
        let (mut a, mut b) = (self.numerator.unsigned_abs(), self.denominator.unsigned_abs());
        while b != 0 {
            (a, b) = (b, a % b);
        }
        let g = a.max(1) as i128;
        Quantity { numerator: self.numerator / g, denominator: self.denominator / g }
    }

    fn cmp(&self, other: &Quantity) -> Ordering {
        match (self.numerator.checked_mul(other.denominator), other.numerator.checked_mul(self.denominator)) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => self.approx().partial_cmp(&other.approx()).unwrap_or(Ordering::Equal),
        }
    }

    fn approx(&self) -> f64 {
        self.numerator as f64 / self.denominator as f64
    }

    fn add(&self, other: &Quantity, negate: bool) -> Option<Quantity> {
        let b = if negate { other.numerator.checked_neg()? } else { other.numerator };
        let numerator = self.numerator.checked_mul(other.denominator)?.checked_add(b.checked_mul(self.denominator)?)?;
        Some(Quantity { numerator, denominator: self.denominator.checked_mul(other.denominator)? }.reduced())
    }
}

fn quantity<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let q = Quantity::parse(&string_arg(&args, 0)?).map_err(|e| fail("quantity", e))?;
    out(Value::Opaque(Arc::new(q)))
}

fn is_quantity<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    bool_out(Quantity::parse(&string_arg(&args, 0)?).is_ok())
}

fn quantity_arg(args: &[CowVal<'_, '_>], i: usize) -> Result<Quantity, ExecutionError> {
    match arg(args, i)? {
        Value::Int(n) => Ok(Quantity { numerator: n as i128, denominator: 1 }),
        _ => opaque_arg::<Quantity>(args, i, "quantity"),
    }
}

fn q_is_integer<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let q = quantity_arg(&args, 0)?;
    bool_out(q.denominator == 1 && i64::try_from(q.numerator).is_ok())
}

fn q_as_integer<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let q = quantity_arg(&args, 0)?;
    match (q.denominator, i64::try_from(q.numerator)) {
        (1, Ok(n)) => out(Value::Int(n)),
        _ => Err(fail("asInteger", "the quantity is not an integer that fits int64 (check isInteger() first)")),
    }
}

fn q_as_float<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    out(Value::Float(quantity_arg(&args, 0)?.approx()))
}

fn q_sign<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    out(Value::Int(quantity_arg(&args, 0)?.numerator.signum() as i64))
}

fn q_add<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let sum = quantity_arg(&args, 0)?.add(&quantity_arg(&args, 1)?, false).ok_or_else(|| fail("add", "overflow"))?;
    out(Value::Opaque(Arc::new(sum)))
}

fn q_sub<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let diff = quantity_arg(&args, 0)?.add(&quantity_arg(&args, 1)?, true).ok_or_else(|| fail("sub", "overflow"))?;
    out(Value::Opaque(Arc::new(diff)))
}

fn q_order(args: &[CowVal<'_, '_>]) -> Result<Ordering, ExecutionError> {
    Ok(quantity_arg(args, 0)?.cmp(&quantity_arg(args, 1)?))
}

fn q_compare<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    out(Value::Int(q_order(&args)? as i64))
}

fn q_greater<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    bool_out(q_order(&args)? == Ordering::Greater)
}

fn q_less<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    bool_out(q_order(&args)? == Ordering::Less)
}

// ---- IPs and CIDRs --------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
struct Ip(IpAddr);

impl Opaque for Ip {
    fn runtime_type_name(&self) -> &str {
        IP
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Opaque for Cidr {
    fn runtime_type_name(&self) -> &str {
        CIDR
    }
}

/// Kubernetes' `ip()`: IPv4 or IPv6, without zones and without IPv4-mapped IPv6 forms.
fn parse_ip(text: &str) -> Result<IpAddr, String> {
    let addr: IpAddr = text.parse().map_err(|_| format!("`{}` is not an IP address", excerpt(text, 60)))?;
    if let IpAddr::V6(v6) = addr {
        if v6.to_ipv4_mapped().is_some() {
            return Err(format!("`{}`: IPv4-mapped IPv6 addresses are not allowed", excerpt(text, 60)));
        }
    }
    Ok(addr)
}

fn parse_cidr(text: &str) -> Result<Cidr, String> {
    let bad = || format!("`{}` is not a CIDR (address/prefix length)", excerpt(text, 60));
    let (addr, prefix) = text.split_once('/').ok_or_else(bad)?;
    let addr = parse_ip(addr)?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= max && !prefix.starts_with('+')).ok_or_else(bad)?;
    Ok(Cidr { addr, prefix })
}

fn bits(addr: IpAddr) -> (u128, u32) {
    match addr {
        IpAddr::V4(a) => (u32::from(a) as u128, 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    }
}

fn masked(addr: IpAddr, prefix: u8) -> IpAddr {
    let (value, width) = bits(addr);
    let keep = if prefix == 0 { 0 } else { (!0u128) << (width - prefix as u32) };
    let value = value & keep;
    match addr {
        IpAddr::V4(_) => IpAddr::V4((value as u32).into()),
        IpAddr::V6(_) => IpAddr::V6(value.into()),
    }
}

impl Cidr {
    fn contains(&self, addr: IpAddr) -> bool {
        addr.is_ipv4() == self.addr.is_ipv4() && masked(addr, self.prefix) == masked(self.addr, self.prefix)
    }
}

fn ip<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let addr = parse_ip(&string_arg(&args, 0)?).map_err(|e| fail("ip", e))?;
    out(Value::Opaque(Arc::new(Ip(addr))))
}

fn is_ip<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    bool_out(parse_ip(&string_arg(&args, 0)?).is_ok())
}

fn ip_is_canonical<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let text = string_arg(&args, 0)?;
    let addr = parse_ip(&text).map_err(|e| fail("ip.isCanonical", e))?;
    bool_out(addr.to_string() == *text)
}

fn to_string<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    match arg(&args, 0)? {
        Value::Opaque(o) => match (o.downcast_ref::<Ip>(), o.downcast_ref::<Cidr>()) {
            (Some(ip), _) => string_value(&ip.0.to_string()),
            (_, Some(c)) => string_value(&format!("{}/{}", c.addr, c.prefix)),
            _ => Err(fail("string", "not an IP or CIDR")),
        },
        other => Err(fail("string", format!("not an IP or CIDR: {}", other.type_of()))),
    }
}

fn ip_arg(args: &[CowVal<'_, '_>]) -> Result<IpAddr, ExecutionError> {
    Ok(opaque_arg::<Ip>(args, 0, "ip")?.0)
}

fn ip_family<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    out(Value::Int(if ip_arg(&args)?.is_ipv4() { 4 } else { 6 }))
}

fn ip_is_unspecified<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    bool_out(ip_arg(&args)?.is_unspecified())
}

fn ip_is_loopback<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    bool_out(ip_arg(&args)?.is_loopback())
}

fn link_local_multicast(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => a.octets()[..3] == [224, 0, 0],
        IpAddr::V6(a) => a.segments()[0] & 0xff0f == 0xff02,
    }
}

fn link_local_unicast(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => a.octets()[..2] == [169, 254],
        IpAddr::V6(a) => a.segments()[0] & 0xffc0 == 0xfe80,
    }
}

fn ip_is_link_local_multicast<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    bool_out(link_local_multicast(ip_arg(&args)?))
}

fn ip_is_link_local_unicast<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    bool_out(link_local_unicast(ip_arg(&args)?))
}

/// Go's `net.IP.IsGlobalUnicast`, which Kubernetes uses.
fn ip_is_global_unicast<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let addr = ip_arg(&args)?;
    let broadcast = matches!(addr, IpAddr::V4(a) if a.is_broadcast());
    bool_out(
        !(addr.is_unspecified() || addr.is_loopback() || addr.is_multicast() || link_local_unicast(addr) || broadcast),
    )
}

fn cidr<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let c = parse_cidr(&string_arg(&args, 0)?).map_err(|e| fail("cidr", e))?;
    out(Value::Opaque(Arc::new(c)))
}

fn is_cidr<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    bool_out(parse_cidr(&string_arg(&args, 0)?).is_ok())
}

fn cidr_contains_ip<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let c = opaque_arg::<Cidr>(&args, 0, "cidr")?;
    let addr = match arg(&args, 1)? {
        Value::String(s) => parse_ip(&s).map_err(|e| fail("containsIP", e))?,
        _ => opaque_arg::<Ip>(&args, 1, "ip")?.0,
    };
    bool_out(c.contains(addr))
}

fn cidr_contains_cidr<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let c = opaque_arg::<Cidr>(&args, 0, "cidr")?;
    let other = match arg(&args, 1)? {
        Value::String(s) => parse_cidr(&s).map_err(|e| fail("containsCIDR", e))?,
        _ => opaque_arg::<Cidr>(&args, 1, "cidr")?,
    };
    bool_out(other.prefix >= c.prefix && c.contains(other.addr))
}

fn cidr_ip<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    out(Value::Opaque(Arc::new(Ip(opaque_arg::<Cidr>(&args, 0, "cidr")?.addr))))
}

fn cidr_masked<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let c = opaque_arg::<Cidr>(&args, 0, "cidr")?;
    out(Value::Opaque(Arc::new(Cidr { addr: masked(c.addr, c.prefix), prefix: c.prefix })))
}

fn cidr_prefix_length<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    out(Value::Int(opaque_arg::<Cidr>(&args, 0, "cidr")?.prefix as i64))
}

// ---- named formats --------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
struct Format(&'static str);

impl Opaque for Format {
    fn runtime_type_name(&self) -> &str {
        FORMAT
    }
}

struct FormatSpec {
    name: &'static str,
    constructor: cel::common::functions::Function,
    validate: fn(&str) -> Vec<String>,
}

macro_rules! formats {
    ($($name:literal => $check:expr),* $(,)?) => {
        const FORMATS: &[FormatSpec] = &[$(FormatSpec {
            name: $name,
            constructor: |_args| out(Value::Opaque(Arc::new(Format($name)))),
            validate: $check,
        }),*];
    };
}

formats! {
    "dns1123Label" => |s| dns_label(s, false, false),
    "dns1123LabelPrefix" => |s| dns_label(s, false, true),
    "dns1123Subdomain" => |s| dns_subdomain(s, false),
    "dns1123SubdomainPrefix" => |s| dns_subdomain(s, true),
    "dns1035Label" => |s| dns_label(s, true, false),
    "dns1035LabelPrefix" => |s| dns_label(s, true, true),
    "qualifiedName" => qualified_name,
    "labelValue" => label_value,
    "uuid" => uuid,
    "uri" => |s| Url::parse(s).err().into_iter().collect(),
}

fn too_long(s: &str, max: usize) -> Option<String> {
    (s.len() > max).then(|| format!("must be no more than {max} characters"))
}

fn dns_label(s: &str, rfc1035: bool, prefix: bool) -> Vec<String> {
    let body = if prefix { s.strip_suffix('-').unwrap_or(s) } else { s };
    let b = body.as_bytes();
    let inner_ok = b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
    let first_ok = b.first().is_some_and(|c| c.is_ascii_lowercase() || (!rfc1035 && c.is_ascii_digit()));
    let last_ok = b.last().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let mut errors: Vec<String> = too_long(s, 63).into_iter().collect();
    if !(inner_ok && first_ok && last_ok) {
        errors.push(if rfc1035 {
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic \
             character, and end with an alphanumeric character"
                .into()
        } else {
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start \
             and end with an alphanumeric character"
                .into()
        });
    }
    errors
}

fn dns_subdomain(s: &str, prefix: bool) -> Vec<String> {
    let body = if prefix { s.strip_suffix('-').unwrap_or(s) } else { s };
    let mut errors: Vec<String> = too_long(s, 253).into_iter().collect();
    if body.is_empty() || body.split('.').any(|label| !dns_label(label, false, false).iter().all(|e| e.contains("63")))
    {
        errors.push(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and \
             must start and end with an alphanumeric character"
                .into(),
        );
    }
    errors
}

fn name_part_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
}

const NAME_PART: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an \
                         alphanumeric character";

fn qualified_name(s: &str) -> Vec<String> {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    let mut errors = Vec::new();
    if let Some(p) = prefix {
        errors.extend(dns_subdomain(p, false).into_iter().map(|e| format!("prefix part {e}")));
    }
    if !name_part_ok(name) {
        errors.push(format!("name part {NAME_PART}"));
    }
    errors.extend(too_long(name, 63).map(|e| format!("name part {e}")));
    errors
}

fn label_value(s: &str) -> Vec<String> {
    let mut errors: Vec<String> = too_long(s, 63).into_iter().collect();
    if !s.is_empty() && !name_part_ok(s) {
        errors.push(format!("a valid label {NAME_PART}"));
    }
    errors
}

fn uuid(s: &str) -> Vec<String> {
    let groups: Vec<&str> = s.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    let ok = groups.len() == 5
        && groups.iter().zip(lens).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok {
        vec![]
    } else {
        vec!["does not match the UUID format".into()]
    }
}

fn format_named<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let name = string_arg(&args, 0)?;
    match FORMATS.iter().find(|f| f.name == name.as_str()) {
        Some(f) => some(Value::Opaque(Arc::new(Format(f.name)))),
        None => none(),
    }
}

fn format_validate<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let format = opaque_arg::<Format>(&args, 0, "format")?;
    let text = string_arg(&args, 1)?;
    let spec = FORMATS.iter().find(|f| f.name == format.0).ok_or_else(|| fail("validate", "unknown format"))?;
    let errors = (spec.validate)(&text);
    if errors.is_empty() {
        none()
    } else {
        some(Value::List(Arc::new(errors.into_iter().map(|e| Value::String(Arc::new(e))).collect())))
    }
}

// ---- semver ---------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
struct Semver {
    major: u64,
    minor: u64,
    patch: u64,
    pre: Vec<String>,
}

impl Opaque for Semver {
    fn runtime_type_name(&self) -> &str {
        SEMVER
    }
}

impl Semver {
    /// Semantic Versioning 2.0.0; `normalize` accepts a `v` prefix, missing minor or patch
    /// and leading zeros, as Kubernetes' `semver(s, true)` does.
    fn parse(text: &str, normalize: bool) -> Result<Semver, String> {
        let bad = || format!("`{}` is not a semantic version (MAJOR.MINOR.PATCH)", excerpt(text, 60));
        let mut s = text;
        if normalize {
            s = s.strip_prefix('v').unwrap_or(s);
        }
        let s = s.split_once('+').map_or(s, |(v, build)| if build.is_empty() { "" } else { v });
        let (core, pre) = match s.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (s, None),
        };
        let mut parts: Vec<&str> = core.split('.').collect();
        if normalize {
            while parts.len() < 3 {
                parts.push("0");
            }
        }
        if parts.len() != 3 {
            return Err(bad());
        }
        let mut numbers = [0u64; 3];
        for (n, p) in numbers.iter_mut().zip(&parts) {
            let leading_zero = p.len() > 1 && p.starts_with('0');
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || (leading_zero && !normalize) {
                return Err(bad());
            }
            *n = p.parse().map_err(|_| bad())?;
        }
        let pre: Vec<String> = match pre {
            None => vec![],
            Some(p) => {
                let ids: Vec<String> = p.split('.').map(str::to_string).collect();
                let valid = ids.iter().all(|id| {
                    !id.is_empty()
                        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        && !(id.len() > 1 && id.starts_with('0') && id.bytes().all(|b| b.is_ascii_digit()))
                });
                if !valid {
                    return Err(bad());
                }
                ids
            }
        };
        Ok(Semver { major: numbers[0], minor: numbers[1], patch: numbers[2], pre })
    }

    fn cmp(&self, other: &Semver) -> Ordering {
        (self.major, self.minor, self.patch).cmp(&(other.major, other.minor, other.patch)).then_with(|| {
            match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => {
                    for (a, b) in self.pre.iter().zip(&other.pre) {
                        let order = match (a.parse::<u64>(), b.parse::<u64>()) {
                            (Ok(x), Ok(y)) => x.cmp(&y),
                            (Ok(_), Err(_)) => Ordering::Less,
                            (Err(_), Ok(_)) => Ordering::Greater,
                            (Err(_), Err(_)) => a.cmp(b),
                        };
                        if order != Ordering::Equal {
                            return order;
                        }
                    }
                    self.pre.len().cmp(&other.pre.len())
                }
            }
        })
    }
}

fn normalize_arg(args: &[CowVal<'_, '_>]) -> Result<bool, ExecutionError> {
    Ok(args.len() > 1 && arg(args, 1)? == Value::Bool(true))
}

fn semver<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let v = Semver::parse(&string_arg(&args, 0)?, normalize_arg(&args)?).map_err(|e| fail("semver", e))?;
    out(Value::Opaque(Arc::new(v)))
}

fn is_semver<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    bool_out(Semver::parse(&string_arg(&args, 0)?, normalize_arg(&args)?).is_ok())
}

fn sv_major<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    out(Value::Int(opaque_arg::<Semver>(&args, 0, "semver")?.major as i64))
}

fn sv_minor<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    out(Value::Int(opaque_arg::<Semver>(&args, 0, "semver")?.minor as i64))
}

fn sv_patch<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    out(Value::Int(opaque_arg::<Semver>(&args, 0, "semver")?.patch as i64))
}

fn sv_order(args: &[CowVal<'_, '_>]) -> Result<Ordering, ExecutionError> {
    Ok(opaque_arg::<Semver>(args, 0, "semver")?.cmp(&opaque_arg::<Semver>(args, 1, "semver")?))
}

fn sv_compare<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    out(Value::Int(sv_order(&args)? as i64))
}

fn sv_greater<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    bool_out(sv_order(&args)? == Ordering::Greater)
}

fn sv_less<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    bool_out(sv_order(&args)? == Ordering::Less)
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
        e.program.execute(&ctx).map_err(|e| e.to_string())
    }

    /// Each case is from the Kubernetes CEL documentation's examples (kubernetes.io, "CEL in
    /// Kubernetes", library tables), and must evaluate to true.
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
