//! `optional.ofNonZeroValue(x)` as the API server answers it. cel-go takes a timestamp's zero
//! value from Go's `time.Time`, 0001-01-01T00:00:00Z; the cel crate takes the Unix epoch. After
//! the load-time check, each call is rewritten to [`OF_NON_ZERO_VALUE`], a function CEL source
//! cannot name, which answers cel-go's way for timestamps and the cel crate's for every other type
//! (their zero values agree there).

use cel::common::ast::Expr;
use cel::common::traits::Zeroer;
use cel::common::types::{CelOptional, CelTimestamp, DYN_TYPE};
use cel::common::value::CowVal;
use cel::{Env, ExecutionError, IdedExpr};

pub(super) const OF_NON_ZERO_VALUE: &str = "@ofNonZeroValue";

/// Go's zero `time.Time`, in seconds since the Unix epoch.
const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

pub(super) fn register(env: &mut Env) -> Result<(), cel::DeclarationError> {
    env.add_overload(OF_NON_ZERO_VALUE, "of_non_zero_value_dyn", vec![DYN_TYPE], of_non_zero_value)
}

/// Points every `optional.ofNonZeroValue(x)` in `tree` at [`OF_NON_ZERO_VALUE`].
pub(super) fn rewrite(tree: &mut IdedExpr) {
    super::ast::each_node_mut(tree, |node| {
        if let Expr::Call(call) = &mut node.expr {
            let namespaced = matches!(call.target.as_deref().map(|t| &t.expr), Some(Expr::Ident(n)) if n == "optional");
            if call.func_name == "ofNonZeroValue" && namespaced && call.args.len() == 1 {
                call.func_name = OF_NON_ZERO_VALUE.to_string();
                call.target = None;
            }
        }
    });
}

fn of_non_zero_value<'b, 'v>(mut args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let value = args.pop().filter(|_| args.is_empty()).ok_or_else(|| ExecutionError::invalid_argument_count(1, 0))?;
    let zero = match value.downcast_ref::<CelTimestamp>() {
        Some(ts) => ts.inner().timestamp() == GO_ZERO_TIME_SECONDS && ts.inner().timestamp_subsec_nanos() == 0,
        None => value.as_zeroer().is_some_and(Zeroer::is_zero_value),
    };
    Ok(CowVal::owned(if zero { CelOptional::none() } else { CelOptional::of(value.into_owned()) }))
}
