//! What bounds a team's CEL, checked before parsing and after each variable: expression size and
//! shape (the parser and evaluator recurse), a variable's value, an evaluated message.

/// Longest expression a RuleSet or policy may hold, in bytes (VAP allows 5,000 for a message
/// expression and 64 KiB for an expression; real rules are a few hundred bytes).
pub const MAX_EXPRESSION_BYTES: usize = 16 << 10;

/// Deepest nesting of `()`, `[]` and `{}` an expression may have. Real rules nest 3 to 6 deep; the
/// parser recurses through a dozen grammar rules per level, and must not exhaust a wasm stack.
pub const MAX_NESTING: usize = 16;

/// Most operators and member selections (`.`) an expression may hold: each adds a level to the
/// tree the evaluator walks recursively. Real rules hold tens.
pub const MAX_OPERATORS: usize = 500;

/// Refuses what would recurse too deep, by a scan outside string literals.
pub(super) fn check_shape(source: &str) -> Result<(), String> {
    let bytes = source.as_bytes();
    let (mut depth, mut operators, mut i) = (0usize, 0usize, 0usize);
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        i += 1;
        if let Some(q) = quote {
            if b == b'\\' {
                i += 1;
            } else if b == q {
                quote = None;
            }
            continue;
        }
        match b {
            b'"' | b'\'' => quote = Some(b),
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(format!(
                        "the expression is nested more than {MAX_NESTING} levels deep (column {i}); split it into variables"
                    ));
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b'.' | b'+' | b'-' | b'*' | b'/' | b'%' | b'&' | b'|' | b'=' | b'<' | b'>' | b'?' | b'!' => {
                operators += 1;
                if operators > MAX_OPERATORS {
                    return Err(format!(
                        "the expression has more than {MAX_OPERATORS} operators and selections; split it into variables"
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The largest value a variable may hold (string and byte contents, eight bytes per list or map
/// entry), and how deeply it may nest. A variable is the one place a value can be carried into
/// the next expression and grow again: each doubling a string, 32 of them reach 4 GiB (natively an
/// abort at the allocator, in wasm a trap at the memory limit). Growth inside one expression is
/// the CEL cost budget's to bound (estimated at load, like the API server's).
pub const MAX_VARIABLE_VALUE_BYTES: usize = 1 << 20;
pub const MAX_VARIABLE_VALUE_NESTING: usize = 64;

/// `value` if it is within [`MAX_VARIABLE_VALUE_BYTES`] and [`MAX_VARIABLE_VALUE_NESTING`]; walked
/// without recursion, stopping at the first limit passed.
pub(super) fn within_value_limits(value: cel::Value) -> Result<cel::Value, String> {
    let mut bytes = 0usize;
    let mut pending: Vec<(&cel::Value, usize)> = vec![(&value, 1)];
    while let Some((v, depth)) = pending.pop() {
        if depth > MAX_VARIABLE_VALUE_NESTING {
            return Err(format!("its value nests more than {MAX_VARIABLE_VALUE_NESTING} levels deep"));
        }
        bytes += match v {
            cel::Value::String(s) => s.len(),
            cel::Value::Bytes(b) => b.len(),
            cel::Value::List(items) => {
                pending.extend(items.iter().map(|i| (i, depth + 1)));
                8 * items.len()
            }
            cel::Value::Map(m) => {
                pending.extend(m.map.values().map(|i| (i, depth + 1)));
                m.map.keys().map(|k| if let cel::objects::Key::String(s) = k { s.len() } else { 8 }).sum::<usize>()
                    + 8 * m.map.len()
            }
            _ => 8,
        };
        if bytes > MAX_VARIABLE_VALUE_BYTES {
            return Err(format!("its value is over the {} KiB a variable may hold", MAX_VARIABLE_VALUE_BYTES >> 10));
        }
    }
    Ok(value)
}

/// The longest message a `messageExpression` may evaluate to, as the API server bounds it
/// (`celconfig.MaxEvaluatedMessageExpressionSizeBytes`); a longer one falls back to `message`.
pub const MAX_EVALUATED_MESSAGE_BYTES: usize = 5 * 1024;

/// Whether an evaluated `messageExpression` is used, as the API server decides: not blank, within
/// [`MAX_EVALUATED_MESSAGE_BYTES`], on one line. Otherwise the static `message` is.
pub(super) fn usable_evaluated_message(message: &str) -> bool {
    !message.trim().is_empty() && message.len() <= MAX_EVALUATED_MESSAGE_BYTES && !message.contains(['\n', '\r'])
}
