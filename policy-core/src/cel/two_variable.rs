//! Two-variable comprehensions (cel-go's `ext.TwoVarComprehensions`, in the Kubernetes CEL
//! environment since 1.33): `all(i, v, p)`, `exists(i, v, p)`, `existsOne(i, v, p)`,
//! `transformList(i, v, [filter,] e)`, `transformMap(k, v, [filter,] e)` and
//! `transformMapEntry(k, v, [filter,] e)`, over a list (index and item) or a map (key and value).
//!
//! The cel crate's evaluator binds one variable per comprehension, so each macro iterates over
//! `@pairs(range)`, a list of `[first, second]` pairs, under a variable no source can name
//! (`@kv<id>`), and the two names in its body read `@kv<id>[0]` and `@kv<id>[1]`.

use super::ast::children_mut;
use cel::common::ast::{operators, CallExpr, ComprehensionExpr, Expr, ListExpr, LiteralValue, MapExpr};
use cel::common::types::{DYN_TYPE, MAP_TYPE};
use cel::common::value::CowVal;
use cel::objects::{Key, Map};
use cel::parser::{Macro, MacroExprHelper, ParseError};
use cel::{Env, ExecutionError, IdedExpr, Value};
use std::collections::HashMap;
use std::sync::Arc;

const PAIRS: &str = "@pairs";
const MAP_INSERT: &str = "@mapInsert";
const MAP_MERGE: &str = "@mapMerge";

pub(super) fn register(env: &mut Env) -> Result<(), cel::DeclarationError> {
    env.add_overload(PAIRS, "pairs_dyn", vec![DYN_TYPE], pairs)?;
    env.add_overload(MAP_INSERT, "map_insert", vec![MAP_TYPE, DYN_TYPE, DYN_TYPE], map_insert)?;
    env.add_overload(MAP_MERGE, "map_merge", vec![MAP_TYPE, MAP_TYPE], map_merge)?;
    for (name, kind) in [
        ("all", Kind::All),
        ("exists", Kind::Exists),
        ("existsOne", Kind::ExistsOne),
        ("exists_one", Kind::ExistsOne),
        ("transformList", Kind::TransformList),
        ("transformMap", Kind::TransformMap),
        ("transformMapEntry", Kind::TransformMapEntry),
    ] {
        env.add_macro(Macro::receiver(name, 3, move |h, t, a| expand(kind, h, t, a)))?;
        if matches!(kind, Kind::TransformList | Kind::TransformMap | Kind::TransformMapEntry) {
            env.add_macro(Macro::receiver(name, 4, move |h, t, a| expand(kind, h, t, a)))?;
        }
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Kind {
    All,
    Exists,
    ExistsOne,
    TransformList,
    TransformMap,
    TransformMapEntry,
}

fn ident_of(helper: &mut MacroExprHelper<'_>, e: &IdedExpr) -> Result<String, ParseError> {
    match &e.expr {
        Expr::Ident(name) => Ok(name.clone()),
        _ => Err(helper.new_error(e.id, "argument must be a simple name")),
    }
}

fn call(helper: &mut MacroExprHelper<'_>, func: &str, args: Vec<IdedExpr>) -> IdedExpr {
    helper.next_expr(Expr::Call(CallExpr { func_name: func.to_string(), target: None, args }))
}

fn expand(
    kind: Kind,
    helper: &mut MacroExprHelper<'_>,
    target: &mut Option<IdedExpr>,
    args: &mut Vec<IdedExpr>,
) -> Result<Option<IdedExpr>, ParseError> {
    let Some(range) = target.take() else { return Ok(None) };
    let first = ident_of(helper, &args[0])?;
    let second = ident_of(helper, &args[1])?;
    if first == second {
        return Err(helper.new_error(args[1].id, "the two variables must have different names"));
    }
    let pair = format!("@kv{}", range.id);
    let mut body: Vec<IdedExpr> = args.drain(2..).collect();
    for e in &mut body {
        bind_pair(helper, e, &first, &second, &pair);
    }
    let result_name = "@result".to_string();
    let accu = |h: &mut MacroExprHelper<'_>| h.next_expr(Expr::Ident(result_name.clone()));
    let lit_bool = |h: &mut MacroExprHelper<'_>, b: bool| h.next_expr(Expr::Literal(LiteralValue::Boolean(b.into())));
    let (init, cond, step, result) = match kind {
        Kind::All | Kind::Exists => {
            let all = matches!(kind, Kind::All);
            let init = lit_bool(helper, all);
            let a = accu(helper);
            let cond_arg = if all { a } else { call(helper, operators::LOGICAL_NOT, vec![a]) };
            let cond = call(helper, operators::NOT_STRICTLY_FALSE, vec![cond_arg]);
            let a = accu(helper);
            let p = body.remove(0);
            let step = call(helper, if all { operators::LOGICAL_AND } else { operators::LOGICAL_OR }, vec![a, p]);
            (init, cond, step, accu(helper))
        }
        Kind::ExistsOne => {
            let init = helper.next_expr(Expr::Literal(LiteralValue::Int(0.into())));
            let cond = lit_bool(helper, true);
            let p = body.remove(0);
            let a = accu(helper);
            let one = helper.next_expr(Expr::Literal(LiteralValue::Int(1.into())));
            let plus = call(helper, operators::ADD, vec![a, one]);
            let a = accu(helper);
            let step = call(helper, operators::CONDITIONAL, vec![p, plus, a]);
            let a = accu(helper);
            let one = helper.next_expr(Expr::Literal(LiteralValue::Int(1.into())));
            (init, cond, step, call(helper, operators::EQUALS, vec![a, one]))
        }
        Kind::TransformList | Kind::TransformMap | Kind::TransformMapEntry => {
            let (filter, e) = match body.len() {
                2 => {
                    let e = body.pop();
                    (body.pop(), e)
                }
                _ => (None, body.pop()),
            };
            let Some(e) = e else { return Ok(None) };
            let init = match kind {
                Kind::TransformList => helper.next_expr(Expr::List(ListExpr::new(Vec::new()))),
                _ => helper.next_expr(Expr::Map(MapExpr { entries: Vec::new() })),
            };
            let a = accu(helper);
            let add = match kind {
                Kind::TransformList => {
                    let item = helper.next_expr(Expr::List(ListExpr::new(vec![e])));
                    call(helper, operators::ADD, vec![a, item])
                }
                Kind::TransformMap => {
                    let key = helper.next_expr(Expr::Ident(pair.clone()));
                    let zero = helper.next_expr(Expr::Literal(LiteralValue::Int(0.into())));
                    let key = call(helper, operators::INDEX, vec![key, zero]);
                    call(helper, MAP_INSERT, vec![a, key, e])
                }
                _ => call(helper, MAP_MERGE, vec![a, e]),
            };
            let step = match filter {
                Some(f) => {
                    let a = accu(helper);
                    call(helper, operators::CONDITIONAL, vec![f, add, a])
                }
                None => add,
            };
            (init, lit_bool(helper, true), step, accu(helper))
        }
    };
    let iter_range = call(helper, PAIRS, vec![range]);
    Ok(Some(helper.next_expr(Expr::Comprehension(Box::new(ComprehensionExpr {
        iter_range,
        iter_var: pair,
        iter_var2: None,
        accu_var: result_name,
        accu_init: init,
        loop_cond: cond,
        loop_step: step,
        result,
    })))))
}

/// Rewrites the reads of `first` and `second` in `e` into `pair[0]` and `pair[1]`, leaving alone
/// nested comprehensions that bind a name of their own over them.
fn bind_pair(helper: &mut MacroExprHelper<'_>, e: &mut IdedExpr, first: &str, second: &str, pair: &str) {
    let mut pending: Vec<&mut IdedExpr> = vec![e];
    while let Some(node) = pending.pop() {
        let index = match &node.expr {
            Expr::Ident(name) if name == first => Some(0),
            Expr::Ident(name) if name == second => Some(1),
            _ => None,
        };
        if let Some(i) = index {
            let p = helper.next_expr(Expr::Ident(pair.to_string()));
            let at = helper.next_expr(Expr::Literal(LiteralValue::Int((i as i64).into())));
            node.expr =
                Expr::Call(CallExpr { func_name: operators::INDEX.to_string(), target: None, args: vec![p, at] });
            continue;
        }
        let rebinds = matches!(&node.expr, Expr::Comprehension(c)
            if [Some(&c.iter_var), c.iter_var2.as_ref(), Some(&c.accu_var)]
                .into_iter()
                .flatten()
                .any(|n| n == first || n == second));
        let mut children = children_mut(&mut node.expr);
        if rebinds {
            // Only its range and initial value (the first two children) see the outer names.
            children.truncate(2);
        }
        pending.extend(children);
    }
}

fn arg(args: &[CowVal<'_, '_>], i: usize) -> Result<Value, ExecutionError> {
    let v = args.get(i).ok_or_else(|| ExecutionError::invalid_argument_count(i + 1, args.len()))?;
    Value::try_from(&**v)
}

fn out<'b, 'v>(v: Value) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let boxed: Box<dyn cel::common::value::Val> = v.try_into()?;
    Ok(CowVal::Owned(boxed))
}

fn key_value(k: &Key) -> Value {
    match k {
        Key::Int(i) => Value::Int(*i),
        Key::Uint(u) => Value::UInt(*u),
        Key::Bool(b) => Value::Bool(*b),
        Key::String(s) => Value::String(s.clone()),
    }
}

fn to_key(function: &str, v: Value) -> Result<Key, ExecutionError> {
    Ok(match v {
        Value::Int(i) => Key::Int(i),
        Value::UInt(u) => Key::Uint(u),
        Value::Bool(b) => Key::Bool(b),
        Value::String(s) => Key::String(s),
        other => {
            return Err(ExecutionError::function_error(function, format!("a map key cannot be a {}", other.type_of())))
        }
    })
}

/// `[[index, item], ...]` of a list, `[[key, value], ...]` of a map.
fn pairs<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let pairs: Vec<Value> = match arg(&args, 0)? {
        Value::List(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| Value::List(Arc::new(vec![Value::Int(i as i64), v.clone()])))
            .collect(),
        Value::Map(m) => m.map.iter().map(|(k, v)| Value::List(Arc::new(vec![key_value(k), v.clone()]))).collect(),
        other => {
            return Err(ExecutionError::function_error(
                "comprehension",
                format!("a two-variable comprehension ranges over a list or a map, not a {}", other.type_of()),
            ))
        }
    };
    out(Value::List(Arc::new(pairs)))
}

fn map_of(function: &str, v: Value) -> Result<HashMap<Key, Value>, ExecutionError> {
    match v {
        Value::Map(m) => Ok(Arc::unwrap_or_clone(m.map)),
        other => Err(ExecutionError::function_error(function, format!("expects a map, not a {}", other.type_of()))),
    }
}

/// `transformMap`'s step: the map with one more key (a repeated key is an error, as in cel-go).
fn map_insert<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let mut map = map_of("transformMap", arg(&args, 0)?)?;
    let key = to_key("transformMap", arg(&args, 1)?)?;
    if map.contains_key(&key) {
        return Err(ExecutionError::function_error("transformMap", "insert failed: key already exists"));
    }
    map.insert(key, arg(&args, 2)?);
    out(Value::Map(Map { map: Arc::new(map) }))
}

/// `transformMapEntry`'s step: the map with the entry map's keys added (none may repeat).
fn map_merge<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let mut map = map_of("transformMapEntry", arg(&args, 0)?)?;
    for (k, v) in map_of("transformMapEntry", arg(&args, 1)?)? {
        if map.contains_key(&k) {
            return Err(ExecutionError::function_error("transformMapEntry", "insert failed: key already exists"));
        }
        map.insert(k, v);
    }
    out(Value::Map(Map { map: Arc::new(map) }))
}
