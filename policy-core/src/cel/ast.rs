//! Walking a parsed expression: every rewrite after parsing (polling comprehensions, `Object{}`
//! initializers, backtick-quoted field names) visits the same children.

use cel::common::ast::{EntryExpr, Expr};
use cel::IdedExpr;

/// Calls `visit` on every node of `tree`, each before its children (which `visit` may have
/// rewritten), without recursing.
pub(super) fn each_node_mut(tree: &mut IdedExpr, mut visit: impl FnMut(&mut IdedExpr)) {
    let mut pending: Vec<&mut IdedExpr> = vec![tree];
    while let Some(node) = pending.pop() {
        visit(node);
        pending.extend(children_mut(&mut node.expr));
    }
}

/// The direct sub-expressions of `expr` (a comprehension's range and initial value first), to be
/// visited in turn (a walk keeps a list of them instead of recursing, so deep trees take no stack).
pub(super) fn children_mut(expr: &mut Expr) -> Vec<&mut IdedExpr> {
    match expr {
        Expr::Comprehension(c) => {
            let c = &mut **c;
            vec![&mut c.iter_range, &mut c.accu_init, &mut c.loop_cond, &mut c.loop_step, &mut c.result]
        }
        Expr::Call(call) => call.target.as_deref_mut().into_iter().chain(call.args.iter_mut()).collect(),
        Expr::List(list) => list.elements.iter_mut().collect(),
        Expr::Map(map) => map
            .entries
            .iter_mut()
            .flat_map(|entry| match &mut entry.expr {
                EntryExpr::MapEntry(e) => vec![&mut e.key, &mut e.value],
                EntryExpr::StructField(f) => vec![&mut f.value],
            })
            .collect(),
        Expr::Struct(s) => s
            .entries
            .iter_mut()
            .filter_map(|entry| match &mut entry.expr {
                EntryExpr::StructField(f) => Some(&mut f.value),
                EntryExpr::MapEntry(_) => None,
            })
            .collect(),
        Expr::Select(select) => vec![&mut *select.operand],
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => Vec::new(),
    }
}

/// What a backtick-quoted field name (``obj.`content-type` ``, CEL's escaped field selection)
/// becomes for the parser, which does not know them: an identifier that cannot clash with one a
/// rule writes, renamed back after parsing ([`restore_quoted_fields`]).
const QUOTED_FIELD: &str = "__meshguard_quoted_field_";

/// `source` with each backtick-quoted field name after a `.` replaced by a placeholder
/// identifier, and the names in order; `None` when there is none. `Err` for a backtick that
/// opens a name without closing it on its line.
pub(super) fn quote_free(source: &str) -> Result<Option<(String, Vec<String>)>, String> {
    if !source.contains('`') {
        return Ok(None);
    }
    let chars: Vec<char> = source.chars().collect();
    let (mut out, mut names) = (String::with_capacity(source.len()), Vec::new());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' {
            // A string literal, copied as it is: triple-quoted, raw (`r'...'`, no escapes) or plain.
            let raw = i > 0 && matches!(chars[i - 1], 'r' | 'R');
            let triple = chars.get(i + 1) == Some(&c) && chars.get(i + 2) == Some(&c);
            let quote_len = if triple { 3 } else { 1 };
            let mut j = i + quote_len;
            loop {
                match chars.get(j) {
                    None => break,
                    Some('\\') if !raw => j += 2,
                    Some(&q)
                        if q == c && (!triple || (chars.get(j + 1) == Some(&c) && chars.get(j + 2) == Some(&c))) =>
                    {
                        j += quote_len;
                        break;
                    }
                    Some(_) => j += 1,
                }
            }
            let end = j.min(chars.len());
            out.extend(&chars[i..end]);
            i = end;
            continue;
        }
        if c == '.' {
            let mut j = i + 1;
            while chars.get(j).is_some_and(|c| c.is_whitespace()) {
                j += 1;
            }
            if chars.get(j) == Some(&'`') {
                let close = chars[j + 1..]
                    .iter()
                    .position(|&c| c == '`' || c == '\n')
                    .filter(|&p| chars[j + 1 + p] == '`')
                    .ok_or_else(|| format!("a backtick-quoted field name at column {} is not closed", j + 1))?;
                let name: String = chars[j + 1..j + 1 + close].iter().collect();
                if name.is_empty() {
                    return Err(format!("an empty backtick-quoted field name at column {}", j + 1));
                }
                out.push('.');
                out.push_str(&format!("{QUOTED_FIELD}{}", names.len()));
                names.push(name);
                i = j + close + 2;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    Ok(Some((out, names)))
}

/// Gives the fields [`quote_free`] replaced their names back.
pub(super) fn restore_quoted_fields(tree: &mut IdedExpr, names: &[String]) {
    each_node_mut(tree, |node| {
        if let Expr::Select(select) = &mut node.expr {
            if let Some(name) =
                select.field.strip_prefix(QUOTED_FIELD).and_then(|n| n.parse::<usize>().ok()).and_then(|n| names.get(n))
            {
                select.field = name.clone();
            }
        }
    });
}

/// The CEL type name of a literal, or of a list or map literal built of literals only (`None`
/// where the type is known only when evaluated).
fn literal_type(e: &IdedExpr) -> Option<&'static str> {
    use cel::common::ast::LiteralValue as L;
    match &e.expr {
        Expr::Literal(l) => Some(match l {
            L::Boolean(_) => "bool",
            L::Bytes(_) => "bytes",
            L::Double(_) => "double",
            L::Int(_) => "int",
            L::Null => "null_type",
            L::String(_) => "string",
            L::UInt(_) => "uint",
        }),
        Expr::List(_) => Some("list"),
        Expr::Map(_) => Some("map"),
        _ => None,
    }
}

/// Refuses list and map literals that mix element types (`[1, 'a']`), as the API server's CEL
/// environment does (`HomogeneousAggregateLiterals`); `dyn(x)` lets an element be anything. Only
/// literal elements are compared: the others' types are known only when evaluated.
pub(super) fn check_homogeneous_literals(tree: &mut IdedExpr) -> Result<(), String> {
    let mut pending: Vec<&mut IdedExpr> = vec![tree];
    while let Some(node) = pending.pop() {
        let groups: Vec<Vec<&IdedExpr>> = match &node.expr {
            Expr::List(list) => vec![list.elements.iter().collect()],
            Expr::Map(map) => {
                let (mut keys, mut values) = (Vec::new(), Vec::new());
                for entry in &map.entries {
                    if let EntryExpr::MapEntry(e) = &entry.expr {
                        keys.push(&e.key);
                        values.push(&e.value);
                    }
                }
                vec![keys, values]
            }
            _ => Vec::new(),
        };
        for group in groups {
            let mut first: Option<&'static str> = None;
            // `null` is left out: whether it fits the others' type is the checker's call.
            for t in group.iter().filter_map(|e| literal_type(e)).filter(|t| *t != "null_type") {
                match first {
                    None => first = Some(t),
                    Some(f) if f != t => {
                        return Err(format!(
                        "type mismatch in a literal: expected type '{f}' but found '{t}' (a list or map literal holds \
                             one type; wrap an element in dyn() to mix them)"
                    ))
                    }
                    Some(_) => {}
                }
            }
        }
        // cel-go exempts every literal inside a `format` call (its arguments are meant to mix
        // types: `'%d %s'.format([1, 'a'])`), as the API server's validator is configured.
        if matches!(&node.expr, Expr::Call(call) if call.func_name == "format") {
            continue;
        }
        pending.extend(children_mut(&mut node.expr));
    }
    Ok(())
}
