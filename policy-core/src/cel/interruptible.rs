//! Comprehensions that stop when the host says so. The cel crate offers no hook inside its
//! evaluator, and a comprehension is its only loop: every `all`, `exists`, `exists_one`, `map` and
//! `filter` expands to one. After parsing, each is rewritten so that every iteration calls
//! [`POLL`], a function CEL source cannot name (it starts with `@`, as the parser's own helpers
//! do), which passes its argument through unchanged unless [`crate::interrupt::poll`] says stop.
//! A nested `all` over 20,000 ports, 400 million iterations, then ends within microseconds of the
//! deadline instead of running for minutes after its answer.

use cel::common::ast::{operators, ComprehensionExpr, Expr, LiteralValue};
use cel::common::types::DYN_TYPE;
use cel::common::value::CowVal;
use cel::{Env, ExecutionError, IdedExpr};

pub(super) const POLL: &str = "@poll";

pub(super) fn register(env: &mut Env) -> Result<(), cel::DeclarationError> {
    env.add_overload(POLL, "poll_dyn", vec![DYN_TYPE], poll)
}

/// The runtime cost budget of one evaluation (one object by one rule or policy binding, all its
/// expressions): comprehension iterations and set comparisons, at most the API server's
/// `RuntimeCELCostBudget`. Counted, not timed, so every engine and host stops at the same
/// iteration with the same message, however fast it runs.
pub const RUNTIME_COST_BUDGET: u64 = 10_000_000;

thread_local! {
    static SPENT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    static LIMIT: std::cell::Cell<u64> = const { std::cell::Cell::new(RUNTIME_COST_BUDGET) };
}

/// An evaluation ran past [`RUNTIME_COST_BUDGET`].
#[derive(Debug)]
pub struct BudgetExceeded(u64);

impl std::fmt::Display for BudgetExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the evaluation exceeded its runtime cost budget of {} (comprehension iterations and set comparisons)",
            self.0
        )
    }
}

/// Starts an evaluation's budget afresh.
pub(super) fn reset_budget() {
    SPENT.with(|s| s.set(0));
}

/// Charges `n` units to the running evaluation's budget; `Err` once it is spent.
pub(crate) fn charge(function: &str, n: u64) -> Result<(), ExecutionError> {
    let spent = SPENT.with(|s| {
        let total = s.get().saturating_add(n);
        s.set(total);
        total
    });
    let limit = LIMIT.with(std::cell::Cell::get);
    if spent > limit {
        return Err(ExecutionError::function_error(function, BudgetExceeded(limit)));
    }
    Ok(())
}

/// Runs `work` with a smaller budget on this thread (tests run the budget's path in debug builds).
#[cfg(test)]
pub(super) fn with_budget<R>(limit: u64, work: impl FnOnce() -> R) -> R {
    let before = LIMIT.with(|l| l.replace(limit));
    let out = work();
    LIMIT.with(|l| l.set(before));
    out
}

fn poll<'b, 'v>(mut args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    charge(POLL, 1)?;
    if crate::interrupt::poll() {
        return Err(ExecutionError::function_error(POLL, crate::interrupt::Stopped));
    }
    args.pop().ok_or_else(|| ExecutionError::invalid_argument_count(1, 0))
}

/// Makes every comprehension in `tree` poll once per iteration. Without recursion: the walk holds
/// a list of the nodes still to visit.
pub(super) fn rewrite(tree: &mut IdedExpr) {
    super::ast::each_node_mut(tree, |node| {
        if let Expr::Comprehension(c) = &mut node.expr {
            poll_each_iteration(c);
        }
    });
}

/// The loop condition is asked before every iteration, so it is where the poll goes, except in
/// the shape `map` and `filter` expand to (an accumulator that only ever gets `[item]` appended,
/// under a constant condition): the evaluator builds that list in place only while the condition
/// stays a constant, so there the poll goes into the append's guard, which it also asks on every
/// iteration.
fn poll_each_iteration(c: &mut ComprehensionExpr) {
    let accu = c.accu_var.clone();
    let is_accu = |e: &IdedExpr| matches!(&e.expr, Expr::Ident(name) if *name == accu);
    let appends_to_accu = |e: &IdedExpr| match &e.expr {
        Expr::Call(call) if call.func_name == operators::ADD && call.target.is_none() => {
            matches!(call.args.as_slice(), [lhs, rhs] if is_accu(lhs) && matches!(rhs.expr, Expr::List(_)))
        }
        _ => false,
    };
    let appends_only = is_accu(&c.result)
        && matches!(c.loop_cond.expr, Expr::Literal(_))
        && match &c.loop_step.expr {
            Expr::Call(call) if call.func_name == operators::CONDITIONAL && call.target.is_none() => {
                matches!(call.args.as_slice(), [_, then, otherwise] if appends_to_accu(then) && is_accu(otherwise))
            }
            _ => appends_to_accu(&c.loop_step),
        };
    if !appends_only {
        wrap_in_poll(&mut c.loop_cond);
        return;
    }
    let guarded = matches!(&c.loop_step.expr, Expr::Call(call) if call.func_name == operators::CONDITIONAL);
    if guarded {
        if let Expr::Call(call) = &mut c.loop_step.expr {
            wrap_in_poll(&mut call.args[0]);
        }
    } else {
        // `accu + [item]` becomes `@poll(true) ? accu + [item] : accu`: the same append, guarded.
        let id = c.loop_step.id;
        let append = std::mem::take(&mut c.loop_step);
        let always =
            IdedExpr { id, expr: Expr::Literal(LiteralValue::Boolean(cel::common::types::CelBool::from(true))) };
        let otherwise = IdedExpr { id, expr: Expr::Ident(accu.clone()) };
        let mut guard = always;
        wrap_in_poll(&mut guard);
        c.loop_step = IdedExpr {
            id,
            expr: Expr::Call(cel::common::ast::CallExpr {
                func_name: operators::CONDITIONAL.to_string(),
                target: None,
                args: vec![guard, append, otherwise],
            }),
        };
    }
}

/// `e` becomes `@poll(e)`, keeping its id (errors and source positions still point at `e`).
fn wrap_in_poll(e: &mut IdedExpr) {
    let id = e.id;
    let inner = std::mem::take(e);
    *e = IdedExpr {
        id,
        expr: Expr::Call(cel::common::ast::CallExpr { func_name: POLL.to_string(), target: None, args: vec![inner] }),
    };
}

#[cfg(test)]
mod tests {
    use super::super::tests::eval;
    use super::with_budget;
    use crate::interrupt::{self, Stopped};

    fn verdict(expression: &str, object: &serde_json::Value) -> Result<bool, String> {
        match eval(expression, object.clone())? {
            cel::Value::Bool(b) => Ok(b),
            other => Err(format!("not a bool: {other:?}")),
        }
    }

    #[test]
    fn comprehensions_answer_as_before_the_rewrite() {
        let object = serde_json::json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 81}]}});
        for (expression, expected) in [
            ("object.spec.ports.all(p, p.port > 0)", Ok(true)),
            ("object.spec.ports.exists(p, p.port == 81)", Ok(true)),
            ("object.spec.ports.exists_one(p, has(p.name))", Ok(true)),
            ("object.spec.ports.map(p, p.port) == [80, 81]", Ok(true)),
            ("object.spec.ports.filter(p, p.port > 80).size() == 1", Ok(true)),
            ("object.spec.ports.map(p, p.port > 80, p.port) == [81]", Ok(true)),
            ("object.spec.ports.all(p, object.spec.ports.exists(q, q.port == p.port))", Ok(true)),
            ("object.spec.ports.filter(p, p.name == 'x').size() == 0", Err(())),
            ("object.spec.ports.filter(p, 1).size() == 0", Err(())),
            // Two-variable comprehensions are comprehensions too.
            ("object.spec.ports.all(i, p, p.port == 80 + i)", Ok(true)),
            ("object.spec.ports.transformList(i, p, p.port > 80, i) == [1]", Ok(true)),
            // A nested comprehension that names `p` again sees its own.
            ("object.spec.ports.all(i, p, [1].all(p, p == 1))", Ok(true)),
        ] {
            let got = verdict(expression, &object);
            match expected {
                Ok(v) => assert_eq!(got, Ok(v), "{expression}"),
                Err(()) => assert!(got.is_err(), "{expression}: {got:?}"),
            }
        }
    }

    #[test]
    fn the_runtime_cost_budget_stops_an_evaluation_with_one_message() {
        let ports: Vec<_> = (0..100).map(|i| serde_json::json!({"port": i})).collect();
        let object = serde_json::json!({"spec": {"ports": ports}});
        let quadratic = "object.spec.ports.all(p, object.spec.ports.all(q, q.port >= 0))";
        // 10,100 iterations: within 20,000, past 5,000.
        assert_eq!(with_budget(20_000, || verdict(quadratic, &object)), Ok(true));
        let e = with_budget(5_000, || verdict(quadratic, &object)).unwrap_err();
        assert_eq!(
            e,
            "the evaluation exceeded its runtime cost budget of 5000 (comprehension iterations and set comparisons)"
        );
        let sets = "sets.contains(object.spec.ports, object.spec.ports)";
        assert!(with_budget(5_000, || verdict(sets, &object)).unwrap_err().contains("runtime cost budget of 5000"));
        // Each evaluation starts afresh.
        assert_eq!(
            with_budget(20_000, || (verdict(quadratic, &object), verdict(quadratic, &object))),
            (Ok(true), Ok(true))
        );
    }

    #[test]
    fn a_stop_ends_a_nested_comprehension_with_an_error() {
        let ports: Vec<_> = (0..3000).map(|i| serde_json::json!({"port": i})).collect();
        let object = serde_json::json!({"spec": {"ports": ports}});
        // 9 million iterations: far more than the polls before the host says stop.
        let e = "object.spec.ports.all(p, object.spec.ports.all(q, q.port >= 0))";
        let asked = std::rc::Rc::new(std::cell::Cell::new(0u32));
        let count = std::rc::Rc::clone(&asked);
        let stopped = interrupt::run(
            move || {
                count.set(count.get() + 1);
                count.get() > 3
            },
            || verdict(e, &object),
        );
        assert_eq!(stopped, Err(Stopped));
        assert_eq!(asked.get(), 4, "the host was asked until it said stop, and not again");
        let pairs = "object.spec.ports.all(i, p, object.spec.ports.exists(j, q, j < i && q.port == p.port))";
        assert_eq!(interrupt::run(|| true, || verdict(pairs, &object)), Err(Stopped), "two variables poll too");
        let e = "object.spec.ports.map(p, p.port).size() == 3000 && object.spec.ports.filter(p, true).size() == 3000";
        assert_eq!(interrupt::run(|| false, || verdict(e, &object)), Ok(Ok(true)));
        let asked_map = std::rc::Rc::new(std::cell::Cell::new(0u32));
        let count = std::rc::Rc::clone(&asked_map);
        let _ = interrupt::run(
            move || {
                count.set(count.get() + 1);
                false
            },
            || verdict(e, &object),
        );
        assert!(
            asked_map.get() >= 6000 / crate::interrupt::POLL_EVERY - 1,
            "map and filter poll too: {}",
            asked_map.get()
        );
    }
}
