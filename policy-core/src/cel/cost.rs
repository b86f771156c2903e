//! The estimated cost of an expression, in the API server's CEL cost units, computed when it
//! loads the way cel-go's estimator computes it (checker/cost.go, with the Kubernetes libraries'
//! estimates of kubernetes/apiserver pkg/cel/library/cost.go): one unit per identifier, field
//! selection on a map and function call, ten to build a list, thirty to build a map, a tenth of
//! a unit per character a string function walks, and a comprehension's body once per element.
//!
//! A size the expression does not fix (a list in `object`) ranges from none to what fits in the
//! largest request the API server takes (3 MiB), so the estimate is a range: its minimum is what
//! every evaluation costs, its maximum the worst any request can make it cost.

use super::typecheck::Ty;
use cel::common::ast::{operators, EntryExpr, Expr, LiteralValue};
use cel::IdedExpr;
use std::collections::HashMap;

/// The API server's cost limit for one evaluation of one expression (`PerCallLimit`).
pub const PER_CALL_LIMIT: u64 = 1_000_000;
/// The API server's largest request (`MaxRequestSizeBytes`): no list, map or string in a request
/// holds more elements or characters.
pub const MAX_REQUEST_SIZE: u64 = 3 * 1024 * 1024;

const STRING_TRAVERSAL: f64 = 0.1;
const REGEX_LENGTH: f64 = 0.25;
const LIST_CREATE: u64 = 10;
const MAP_CREATE: u64 = 30;
const STRUCT_CREATE: u64 = 40;

/// A cost or size range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Range {
    pub min: u64,
    pub max: u64,
}

impl Range {
    pub const fn fixed(n: u64) -> Range {
        Range { min: n, max: n }
    }

    fn unknown() -> Range {
        Range { min: 0, max: MAX_REQUEST_SIZE }
    }

    fn add(self, o: Range) -> Range {
        Range { min: self.min.saturating_add(o.min), max: self.max.saturating_add(o.max) }
    }

    fn times(self, o: Range) -> Range {
        Range { min: self.min.saturating_mul(o.min), max: self.max.saturating_mul(o.max) }
    }

    fn union(self, o: Range) -> Range {
        Range { min: self.min.min(o.min), max: self.max.max(o.max) }
    }

    /// Each unit costs `factor`, rounded up (cel-go's `MultiplyByCostFactor`).
    fn factor(self, factor: f64) -> Range {
        let f = |x: u64| {
            let v = (x as f64 * factor).ceil();
            if v >= u64::MAX as f64 {
                u64::MAX
            } else {
                v as u64
            }
        };
        Range { min: f(self.min), max: f(self.max) }
    }
}

/// How long a string or bytes value of unknown size may be: up to the largest request, in
/// policies; the Kubernetes cost tests estimate with a size estimator of their own (0 to 12).
pub const UNKNOWN_TEXT: Range = Range { min: 0, max: MAX_REQUEST_SIZE };

/// Estimates `tree`'s cost, with each node's type from the type check.
pub fn estimate(tree: &IdedExpr, types: &HashMap<u64, Ty>, unknown_text: Range) -> Range {
    let mut e = Estimator { types, locals: Vec::new(), unknown_text };
    e.cost(tree)
}

/// A comprehension variable's size and, for a list, its elements' size.
struct Local {
    name: String,
    size: Option<Range>,
    elements: Option<Range>,
}

struct Estimator<'a> {
    types: &'a HashMap<u64, Ty>,
    locals: Vec<Local>,
    unknown_text: Range,
}

impl Estimator<'_> {
    fn ty(&self, e: &IdedExpr) -> Ty {
        self.types.get(&e.id).cloned().unwrap_or(Ty::Dyn)
    }

    fn local(&self, e: &IdedExpr) -> Option<&Local> {
        match &e.expr {
            Expr::Ident(name) => self.locals.iter().rev().find(|l| l.name == *name),
            _ => None,
        }
    }

    /// The size of `e`'s value: characters of a string, bytes, elements of a list or map.
    fn size(&self, e: &IdedExpr) -> Range {
        match &e.expr {
            Expr::Literal(LiteralValue::String(s)) => return Range::fixed(s.chars().count() as u64),
            Expr::Literal(LiteralValue::Bytes(b)) => return Range::fixed(b.len() as u64),
            Expr::Literal(_) => return Range::fixed(1),
            Expr::List(l) => return Range::fixed(l.elements.len() as u64),
            Expr::Map(m) => return Range::fixed(m.entries.len() as u64),
            Expr::Call(c) if c.func_name == operators::ADD && c.args.len() == 2 => {
                if matches!(self.ty(e), Ty::String | Ty::Bytes | Ty::List(_)) {
                    return self.size(&c.args[0]).add(self.size(&c.args[1]));
                }
            }
            Expr::Call(c) if c.func_name == "@pairs" && c.args.len() == 1 => return self.size(&c.args[0]),
            Expr::Call(c) => {
                // Functions whose result is as long as what they read (cel-go's and the
                // Kubernetes libraries' result sizes).
                let of = match (c.func_name.as_str(), c.target.as_deref(), c.args.as_slice()) {
                    ("dyn" | "url" | "bytes", None, [a]) | ("escapeKey", Some(_), [a]) => Some(a),
                    ("lowerAscii" | "upperAscii" | "substring" | "trim", Some(t), _) => Some(t),
                    _ => None,
                };
                if let Some(a) = of {
                    return self.size(a);
                }
                if let ("quote", Some(Expr::Ident(ns)), [a]) =
                    (c.func_name.as_str(), c.target.as_deref().map(|t| &t.expr), c.args.as_slice())
                {
                    if ns == "strings" {
                        let s = self.size(a);
                        return Range { min: s.min.saturating_add(2), max: s.max.saturating_mul(2).saturating_add(2) };
                    }
                }
            }
            _ => {}
        }
        if let Some(size) = self.local(e).and_then(|l| l.size) {
            return size;
        }
        match self.ty(e) {
            Ty::Bool | Ty::Int | Ty::Uint | Ty::Double | Ty::Timestamp | Ty::Duration => Range::fixed(1),
            Ty::String | Ty::Bytes => self.unknown_text,
            _ => Range::unknown(),
        }
    }

    /// The size of the elements of the list `e`: what a comprehension over it binds, and what
    /// the Kubernetes list functions walk (an element they see apart from its list, so a string
    /// or bytes one of unknown size).
    fn element_size(&self, e: &IdedExpr) -> Option<Range> {
        match (&e.expr, self.ty(e)) {
            (_, Ty::List(t)) if matches!(*t, Ty::String | Ty::Bytes) => Some(self.unknown_text),
            (Expr::List(l), _) => l.elements.iter().map(|x| self.size(x)).reduce(Range::union),
            _ => self.local(e).and_then(|l| l.elements),
        }
    }

    fn cost(&mut self, e: &IdedExpr) -> Range {
        match &e.expr {
            Expr::Literal(_) | Expr::Unspecified => Range::default(),
            Expr::Ident(_) => Range::fixed(1),
            Expr::Select(s) => {
                let operand = self.cost(&s.operand);
                // `has()` costs nothing of its own (PresenceTestHasCost is off in Kubernetes); a
                // field of a map or an object costs one.
                let own = match self.ty(&s.operand) {
                    _ if s.test => 0,
                    Ty::Map(..) | Ty::Object(_) | Ty::Named(_) => 1,
                    _ => 0,
                };
                operand.add(Range::fixed(own))
            }
            Expr::List(l) => l.elements.iter().fold(Range::fixed(LIST_CREATE), |sum, x| sum.add(self.cost(x))),
            Expr::Map(m) => m.entries.iter().fold(Range::fixed(MAP_CREATE), |sum, entry| match &entry.expr {
                EntryExpr::MapEntry(x) => sum.add(self.cost(&x.key)).add(self.cost(&x.value)),
                EntryExpr::StructField(f) => sum.add(self.cost(&f.value)),
            }),
            Expr::Struct(s) => s.entries.iter().fold(Range::fixed(STRUCT_CREATE), |sum, entry| match &entry.expr {
                EntryExpr::StructField(f) => sum.add(self.cost(&f.value)),
                EntryExpr::MapEntry(x) => sum.add(self.cost(&x.value)),
            }),
            Expr::Comprehension(c) => {
                let mut sum = self.cost(&c.iter_range).add(self.cost(&c.accu_init));
                let bind = matches!(&c.iter_range.expr, Expr::List(l) if l.elements.is_empty())
                    && matches!(&c.loop_cond.expr, Expr::Literal(LiteralValue::Boolean(b)) if !*b.inner());
                let accu_size = Some(self.size(&c.accu_init));
                self.locals.push(Local { name: c.accu_var.clone(), size: accu_size, elements: None });
                if bind {
                    sum = sum.add(self.cost(&c.result));
                    self.locals.pop();
                    return sum;
                }
                let range = self.size(&c.iter_range);
                let elements = self.element_size(&c.iter_range);
                let depth = self.locals.len();
                let first_is_index = matches!(self.ty(&c.iter_range), Ty::List(_)) && c.iter_var2.is_some();
                self.locals.push(Local {
                    name: c.iter_var.clone(),
                    size: if first_is_index { Some(Range::fixed(1)) } else { elements },
                    elements: None,
                });
                if let Some(second) = &c.iter_var2 {
                    self.locals.push(Local { name: second.clone(), size: elements, elements: None });
                }
                let per_element = self.cost(&c.loop_cond).add(self.cost(&c.loop_step));
                self.locals.truncate(depth);
                sum = sum.add(self.cost(&c.result));
                self.locals.pop();
                sum.add(range.times(per_element))
            }
            Expr::Call(call) => self.call(e, &call.func_name, call.target.as_deref(), &call.args),
        }
    }

    fn call(&mut self, e: &IdedExpr, name: &str, target: Option<&IdedExpr>, args: &[IdedExpr]) -> Range {
        // A qualified global (`sets.contains(..)`) is parsed as a call on a name, which the type
        // check read as part of the function's name and so gave no type.
        let qualified;
        let (name, target) = match target {
            Some(t @ IdedExpr { expr: Expr::Ident(ns), .. }) if !self.types.contains_key(&t.id) => {
                qualified = format!("{ns}.{name}");
                (qualified.as_str(), None)
            }
            _ => (name, target),
        };
        // The two-variable comprehensions' plumbing (two_variable.rs): `@pairs(range)` iterates
        // over the range itself, and `@kv<id>[0]` is a variable read, as cel-go counts them.
        match (name, args) {
            ("@pairs", [range]) => return self.cost(range),
            (operators::INDEX, [pair, _]) if matches!(&pair.expr, Expr::Ident(p) if p.starts_with("@kv")) => {
                return Range::fixed(1)
            }
            _ => {}
        }
        if name == "dyn" {
            return Range::fixed(1).add(args.iter().fold(Range::default(), |s, a| s.add(self.cost(a))));
        }
        let arg_costs: Vec<Range> = args.iter().map(|a| self.cost(a)).collect();
        let args_cost = arg_costs.iter().fold(Range::default(), |s, c| s.add(*c));
        let target_cost = target.map_or(Range::default(), |t| self.cost(t));
        let own = match (name, target, args) {
            (operators::LOGICAL_AND | operators::LOGICAL_OR, None, [_, _]) => {
                let (l, r) = (arg_costs[0], arg_costs[1]);
                return Range { min: l.min, max: l.max.saturating_add(r.max) };
            }
            (operators::CONDITIONAL, None, [_, _, _]) => {
                return arg_costs[0].add(arg_costs[1].union(arg_costs[2]));
            }
            (operators::ADD, None, [a, b]) => match self.ty(e) {
                Ty::String | Ty::Bytes => self.size(a).add(self.size(b)).factor(STRING_TRAVERSAL),
                _ => Range::fixed(1),
            },
            (
                operators::EQUALS
                | operators::NOT_EQUALS
                | operators::LESS
                | operators::LESS_EQUALS
                | operators::GREATER
                | operators::GREATER_EQUALS,
                None,
                [a, b],
            ) => {
                let ordered = !matches!(name, operators::EQUALS | operators::NOT_EQUALS);
                let sized = |t: Ty| matches!(t, Ty::String | Ty::Bytes);
                if ordered && !(sized(self.ty(a)) && sized(self.ty(b))) {
                    Range::fixed(1)
                } else if !ordered && self.ty(a) == self.ty(b) && matches!(self.ty(a), Ty::Named(_)) {
                    match self.ty(a) {
                        // A URL compares by its text; a named format by its name (64 at most).
                        // (The Kubernetes estimator reads the right-hand side's size for both.)
                        Ty::Named("kubernetes.URL") => Range { min: 1, max: self.size(b).max }.factor(STRING_TRAVERSAL),
                        Ty::Named("kubernetes.NamedFormat") => Range { min: 1, max: 64 }.factor(STRING_TRAVERSAL),
                        _ => Range::fixed(1),
                    }
                } else {
                    let smallest = self.size(a).max.min(self.size(b).max);
                    Range { min: u64::from(smallest > 0), max: smallest }.factor(STRING_TRAVERSAL)
                }
            }
            (operators::IN, None, [_, list]) if matches!(self.ty(list), Ty::List(_) | Ty::Dyn) => self.size(list),
            ("startsWith" | "endsWith", Some(_), [a]) => self.size(a).factor(STRING_TRAVERSAL),
            ("matches", Some(t), [re]) | ("matches", None, [t, re]) | ("find" | "findAll", Some(t), [re, ..]) => {
                let text = self.size(t).add(Range::fixed(1)).factor(STRING_TRAVERSAL);
                text.times(self.size(re).factor(REGEX_LENGTH))
            }
            ("contains", Some(t), [sub]) => {
                self.size(t).factor(STRING_TRAVERSAL).times(self.size(sub).factor(STRING_TRAVERSAL))
            }
            ("isSorted" | "sum" | "max" | "min" | "indexOf" | "lastIndexOf" | "includes", Some(t), _) => match self
                .ty(t)
            {
                // `includes` on what is not a list compares it whole, once per unit.
                Ty::String if name == "includes" => self.size(t),
                Ty::String => self.size(t).factor(STRING_TRAVERSAL),
                element_type => {
                    let mut each = Range::fixed(1);
                    if matches!(element_type, Ty::List(ref x) if matches!(**x, Ty::String | Ty::Bytes)) {
                        each = each.add(self.element_size(t).unwrap_or_else(Range::unknown).factor(STRING_TRAVERSAL));
                    }
                    self.size(t).times(each)
                }
            },
            (
                "url"
                | "jsonpatch.escapeKey"
                | "cidr"
                | "isIP"
                | "isCIDR"
                | "quantity"
                | "isQuantity"
                | "semver"
                | "isSemver"
                | "strings.quote",
                None,
                [a, ..],
            ) => self.size(a).factor(STRING_TRAVERSAL),
            ("ip", None, [a]) => self.size(a).factor(STRING_TRAVERSAL),
            ("containsIP" | "containsCIDR", Some(_), [a]) => {
                // An address is 4 to 16 bytes; comparing two walks both.
                let address = Range { min: 4, max: 16 };
                let mut own = address.add(address).factor(STRING_TRAVERSAL);
                if name == "containsCIDR" {
                    own = own.add(address.factor(STRING_TRAVERSAL)).add(Range::fixed(1));
                }
                if self.ty(a) == Ty::String {
                    own = own.add(self.size(a).factor(STRING_TRAVERSAL));
                }
                own
            }
            ("validate", Some(_), [a]) => {
                // Each named format's regular expression is at most 128 characters.
                self.size(a).factor(STRING_TRAVERSAL).factor(128.0 * REGEX_LENGTH)
            }
            ("sets.contains" | "sets.intersects" | "sets.equivalent", None, [a, b]) => {
                let comparisons = if name == "sets.equivalent" { 2.0 } else { 1.0 };
                self.size(a).times(self.size(b)).factor(comparisons).add(Range::fixed(1))
            }
            ("ip.isCanonical", None, [a]) => self.size(a).factor(2.0 * STRING_TRAVERSAL),
            ("lowerAscii" | "upperAscii" | "substring" | "trim", Some(t), _) => self.size(t).factor(STRING_TRAVERSAL),
            ("replace" | "split", Some(t), _) => self.size(t).factor(2.0 * STRING_TRAVERSAL),
            ("join", Some(list), _) => {
                let count = self.size(list);
                let mut joined = count.times(self.element_size(list).unwrap_or(self.unknown_text));
                if let Some(separator) = args.first() {
                    let separators = Range { min: count.min.saturating_sub(1), max: count.max.saturating_sub(1) };
                    joined = joined.add(self.size(separator).times(separators));
                }
                joined.factor(STRING_TRAVERSAL)
            }
            ("format", Some(t), _) => self.size(t).factor(STRING_TRAVERSAL),
            ("bytes", None, [a]) if self.ty(a) == Ty::String => self.size(a).factor(STRING_TRAVERSAL),
            ("string", None, [a]) if self.ty(a) == Ty::Bytes => self.size(a).factor(STRING_TRAVERSAL),
            _ => Range::fixed(1),
        };
        own.add(args_cost).add(target_cost)
    }
}
