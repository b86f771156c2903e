//! Evaluation for conformance harnesses: one expression over typed bindings, in the one
//! environment every rule uses, with its result as a typed value. The suites others wrote
//! (cel-spec's, Kubernetes') describe values with their CEL type (`int` 1 is not `uint` 1 or
//! `double` 1.0), which JSON alone cannot, so values cross as tagged JSON:
//! `{"int": "1"}`, `{"uint": "1"}`, `{"double": 1.0}`, `{"string": "a"}`, `{"bytes_b64": "..."}`,
//! `{"bool": true}`, `{"null": null}`, `{"list": [..]}`, `{"map": [[k, v], ..]}`, `{"type": "int"}`.

use super::{describe, env, Expression, Form, Roots};
use base64::Engine as _;
use cel::objects::Key;
use cel::Context;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// Why an expression gave no value.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// It does not parse, or breaks the load-time limits.
    Compile(String),
    /// It failed while evaluating.
    Eval(String),
    /// A binding or the result has no typed-JSON form.
    Unsupported(String),
}

/// Evaluates `expr` with `bindings` (name → typed value), type-checked first with each binding
/// `dyn` unless the case turns the check off (`checked: false`, cel-spec's `disable_check`).
pub fn evaluate(expr: &str, bindings: &serde_json::Map<String, Value>, checked: bool) -> Result<Value, Failure> {
    let names: Vec<&str> = bindings.keys().map(String::as_str).collect();
    let roots = if checked { Roots::Bindings(&names, super::cost::UNKNOWN_TEXT) } else { Roots::Unchecked };
    let compiled = Expression::compile_as(expr, &[], Form::Plain, roots).map_err(Failure::Compile)?;
    let env = env().map_err(Failure::Compile)?;
    let mut ctx = Context::with_env(Arc::clone(env));
    for (name, typed) in bindings {
        let value = from_typed(typed).map_err(Failure::Unsupported)?;
        let val: Box<dyn cel::common::value::Val> =
            value.try_into().map_err(|e: cel::ExecutionError| Failure::Unsupported(e.to_string()))?;
        ctx.add_variable_as_val(name.as_str(), val);
    }
    super::interruptible::reset_budget();
    let out = cel::Value::resolve_val(&compiled.tree, &ctx).map_err(|e| Failure::Eval(describe(&e)))?;
    // A type value (`type(1)`, `int`): the crate's `Value` form would give its name as a string.
    if let Some(t) = out.downcast_ref::<cel::common::types::CelType>() {
        return Ok(json!({"type": t.name()}));
    }
    let out = cel::Value::try_from(out.as_ref()).map_err(|e| Failure::Eval(describe(&e)))?;
    to_typed(&out).map_err(Failure::Unsupported)
}

fn from_typed(v: &Value) -> Result<cel::Value, String> {
    let Some((tag, inner)) = v.as_object().and_then(|m| m.iter().next()) else {
        return Err(format!("not a typed value: {v}"));
    };
    let number =
        |x: &Value| -> Option<String> { x.as_str().map(str::to_string).or_else(|| x.as_i64().map(|i| i.to_string())) };
    Ok(match tag.as_str() {
        "int" => cel::Value::Int(number(inner).and_then(|s| s.parse().ok()).ok_or("a bad int")?),
        "uint" => cel::Value::UInt(number(inner).and_then(|s| s.parse().ok()).ok_or("a bad uint")?),
        "double" => cel::Value::Float(match inner {
            Value::String(s) if s == "NaN" => f64::NAN,
            Value::String(s) if s == "Infinity" => f64::INFINITY,
            Value::String(s) if s == "-Infinity" => f64::NEG_INFINITY,
            other => other.as_f64().ok_or("a bad double")?,
        }),
        "string" => cel::Value::String(Arc::new(inner.as_str().ok_or("a bad string")?.to_string())),
        "bytes_b64" => cel::Value::Bytes(Arc::new(
            base64::engine::general_purpose::STANDARD
                .decode(inner.as_str().ok_or("bad bytes")?)
                .map_err(|e| e.to_string())?,
        )),
        "bool" => cel::Value::Bool(inner.as_bool().ok_or("a bad bool")?),
        "null" => cel::Value::Null,
        "timestamp" => cel::Value::Timestamp(
            chrono::DateTime::parse_from_rfc3339(inner.as_str().ok_or("a bad timestamp")?)
                .map_err(|e| e.to_string())?,
        ),
        "duration_nanos" => cel::Value::Duration(chrono::Duration::nanoseconds(
            number(inner).and_then(|s| s.parse().ok()).ok_or("a bad duration")?,
        )),
        "list" => cel::Value::List(Arc::new(
            inner.as_array().ok_or("a bad list")?.iter().map(from_typed).collect::<Result<_, _>>()?,
        )),
        "map" => {
            let mut map: HashMap<Key, cel::Value> = HashMap::new();
            for pair in inner.as_array().ok_or("a bad map")? {
                let (k, v) = match pair.as_array().map(Vec::as_slice) {
                    Some([k, v]) => (from_typed(k)?, from_typed(v)?),
                    _ => return Err("a bad map entry".into()),
                };
                let key = match k {
                    cel::Value::Int(i) => Key::Int(i),
                    cel::Value::UInt(u) => Key::Uint(u),
                    cel::Value::Bool(b) => Key::Bool(b),
                    cel::Value::String(s) => Key::String(s),
                    other => return Err(format!("a map key of type {}", other.type_of())),
                };
                map.insert(key, v);
            }
            cel::Value::from(map)
        }
        other => return Err(format!("values of kind `{other}` are not supported")),
    })
}

/// A result as a typed value; map entries sorted by key, for comparison.
pub fn to_typed(v: &cel::Value) -> Result<Value, String> {
    Ok(match v {
        cel::Value::Int(i) => json!({"int": i.to_string()}),
        cel::Value::UInt(u) => json!({"uint": u.to_string()}),
        cel::Value::Float(f) if f.is_nan() => json!({"double": "NaN"}),
        cel::Value::Float(f) if f.is_infinite() => json!({"double": if *f > 0.0 { "Infinity" } else { "-Infinity" }}),
        cel::Value::Float(f) => json!({"double": f}),
        cel::Value::String(s) => json!({"string": s.as_str()}),
        cel::Value::Bytes(b) => json!({"bytes_b64": base64::engine::general_purpose::STANDARD.encode(b.as_slice())}),
        cel::Value::Bool(b) => json!({"bool": b}),
        cel::Value::Null => json!({"null": null}),
        cel::Value::List(items) => json!({"list": items.iter().map(to_typed).collect::<Result<Vec<_>, _>>()?}),
        cel::Value::Map(m) => {
            let mut entries = Vec::new();
            for (k, v) in m.map.iter() {
                let key = match k {
                    Key::Int(i) => json!({"int": i.to_string()}),
                    Key::Uint(u) => json!({"uint": u.to_string()}),
                    Key::Bool(b) => json!({"bool": b}),
                    Key::String(s) => json!({"string": s.as_str()}),
                };
                entries.push(json!([key, to_typed(v)?]));
            }
            entries.sort_by_key(|e| e[0].to_string());
            json!({"map": entries})
        }
        // Durations and timestamps as cel-go writes them (`3600s`, RFC 3339).
        cel::Value::Duration(_) | cel::Value::Timestamp(_) => {
            let text =
                cel::Value::resolve(&cel::parser::Parser::new().parse("string(x)").map_err(|e| e.to_string())?, &{
                    let mut ctx = Context::with_env(Arc::clone(env()?));
                    ctx.add_variable_from_value("x", v.clone());
                    ctx
                })
                .map_err(|e| e.to_string())?;
            let tag = if matches!(v, cel::Value::Duration(_)) { "duration" } else { "timestamp" };
            json!({ tag: to_typed(&text)?["string"].clone() })
        }
        // A library's own type (an IP, a quantity): its type name; suites compare those with `==`.
        cel::Value::Opaque(o) => json!({"opaque": o.runtime_type_name()}),
        other => return Err(format!("a {} result has no typed-JSON form here", other.type_of())),
    })
}

/// The estimated cost of `expr` (type-checked, its bindings `dyn`), as `(min, max)`, with the
/// Kubernetes cost tests' size estimator (kubernetes/apiserver pkg/cel/library/cost_test.go): a
/// string or bytes value of unknown size is 0 to 12 long.
pub fn estimated_cost(expr: &str, bindings: &serde_json::Map<String, Value>) -> Result<(u64, u64), Failure> {
    let names: Vec<&str> = bindings.keys().map(String::as_str).collect();
    let test_sizes = super::cost::Range { min: 0, max: 12 };
    let compiled = Expression::compile_as(expr, &[], Form::Plain, Roots::Bindings(&names, test_sizes))
        .map_err(Failure::Compile)?;
    let cost = compiled.estimated_cost();
    Ok((cost.min, cost.max))
}
