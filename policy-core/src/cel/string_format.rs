//! `string.format` as the API server answers it. Kubernetes declares cel-go's strings library at
//! version 2 (kubernetes/apiserver `pkg/cel/environment/base.go`, from 1.29 on), and below
//! version 4 cel-go formats with its legacy formatter (`ext/formatting.go`) through
//! golang.org/x/text's en-US printer:
//! - `%f` groups thousands (`1,234.500000`) and spells infinities `∞`;
//! - `%e` writes `3.140000×10⁰⁰`, always with six digits, and reads its precision as a width;
//! - `%d`, `%f` and `%e` take only their own types (no int to double);
//! - `%s` quotes what lists and maps hold (`["a", 2.000000]`, `{"k":b"v"}`).
//!
//! The cel crate follows the version-4 formatter that cel-spec tests, so after the load-time
//! check each `s.format(args)` is rewritten to [`FORMAT`], a function CEL source cannot name.
//! The `%e` separator is x/text 0.23's (Kubernetes 1.33 on): older API servers put a narrow
//! no-break space on each side of `×`.

use super::typecheck::Ty;
use cel::common::ast::{Expr, LiteralValue};
use cel::common::types::{
    CelBool, CelBytes, CelDouble, CelDuration, CelInt, CelString, CelTimestamp, CelType, CelUInt, Kind, LIST_TYPE,
    STRING_TYPE,
};
use cel::common::value::{CowVal, Val};
use cel::{Env, ExecutionError, IdedExpr};
use std::collections::HashMap;
use std::fmt::Write;

pub(super) const FORMAT: &str = "@format";

/// The precision (for `%e`, the width) a clause may ask for. Version 2 sets none, but every
/// digit is written out: without a bound, `'%.999999999f'` would ask for a gigabyte. cel-go's
/// later versions refuse over 100; this admits cel-go's own version-2 tests (`%.200f`).
pub(super) const MAX_PRECISION: usize = 1000;

/// Digits after the point of `%f` (and the width of `%e`) when a clause names none.
const DEFAULT_PRECISION: usize = 6;

pub(super) fn register(env: &mut Env) -> Result<(), cel::DeclarationError> {
    env.add_overload(FORMAT, "legacy_format_string_list", vec![STRING_TYPE, LIST_TYPE], format)
}

/// Points every `s.format(args)` in `tree` at [`FORMAT`], the receiver becoming its first argument.
pub(super) fn rewrite(tree: &mut IdedExpr) {
    super::ast::each_node_mut(tree, |node| {
        if let Expr::Call(call) = &mut node.expr {
            if call.func_name == "format" && call.args.len() == 1 {
                if let Some(target) = call.target.take() {
                    call.args.insert(0, *target);
                    call.func_name = FORMAT.to_string();
                }
            }
        }
    });
}

/// Refuses at load a `format` call whose template is a literal and whose arguments are a list
/// literal, when the template does not parse, names more or fewer arguments than the list holds,
/// or asks a clause of an argument whose checked type it cannot take: what the API server's
/// strings library checks when it compiles the expression (cel-go 0.18 on, Kubernetes 1.31 on).
/// Runs after the type check, on the tree before [`rewrite`]; `types` are the checked types.
pub(super) fn check_literal_calls(tree: &mut IdedExpr, types: &HashMap<u64, Ty>) -> Result<(), String> {
    let mut refused = None;
    super::ast::each_node_mut(tree, |node| {
        let Expr::Call(call) = &node.expr else { return };
        let (Some(target), [list]) = (&call.target, call.args.as_slice()) else { return };
        let (Expr::Literal(LiteralValue::String(template)), Expr::List(items)) = (&target.expr, &list.expr) else {
            return;
        };
        if call.func_name != "format" || refused.is_some() {
            return;
        }
        let given: Vec<Ty> = items.elements.iter().map(|e| types.get(&e.id).cloned().unwrap_or(Ty::Dyn)).collect();
        if let Err(e) = check_clauses(template, &given) {
            refused = Some(format!("invalid format call: {e}"));
        }
    });
    refused.map_or(Ok(()), Err)
}

fn check_clauses(template: &str, given: &[Ty]) -> Result<(), String> {
    let bytes = template.as_bytes();
    let mut clauses = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            i += 1;
        } else if bytes.get(i + 1) == Some(&b'%') {
            i += 2;
        } else {
            let (clause, after) = Clause::parse(bytes, i + 1)?;
            clauses.push(clause);
            i = after;
        }
    }
    if clauses.len() > given.len() {
        return Err(format!("index {} out of range", given.len()));
    }
    if clauses.len() < given.len() {
        return Err(format!(
            "too many arguments supplied to string.format (expected {}, got {})",
            clauses.len(),
            given.len()
        ));
    }
    for (clause, ty) in clauses.iter().zip(given) {
        if !clause.takes(ty) {
            return Err(format!("error during formatting: {}, was given {ty}", clause.accepts()));
        }
    }
    Ok(())
}

fn format<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [template, list] = args.as_slice() else {
        return Err(ExecutionError::invalid_argument_count(2, args.len()));
    };
    let unexpected = |got: &dyn Val, want: &str| ExecutionError::UnexpectedType {
        got: got.get_type().name().to_string(),
        want: want.into(),
    };
    let template = template.downcast_ref::<CelString>().ok_or_else(|| unexpected(template.as_ref(), "string"))?;
    let items = list.as_iterable().ok_or_else(|| unexpected(list.as_ref(), "list"))?;
    let mut values = Vec::new();
    let mut iter = items.iter();
    while let Some(v) = iter.next() {
        values.push(v);
    }
    substitute(template, &values)
        .map(|s| CowVal::owned(CelString::from(s)))
        .map_err(|message| ExecutionError::function_error("format", message))
}

/// `template` with each clause replaced by the next of `args`; arguments left over are ignored,
/// as at runtime in cel-go.
fn substitute(template: &str, args: &[&dyn Val]) -> Result<String, String> {
    let bytes = template.as_bytes();
    let mut out = String::with_capacity(template.len());
    let (mut i, mut literal_from, mut next_arg) = (0, 0, 0);
    while i < bytes.len() {
        if bytes[i] != b'%' {
            i += 1;
            continue;
        }
        out.push_str(&template[literal_from..i]);
        i += 1;
        if bytes.get(i) == Some(&b'%') {
            out.push('%');
            i += 1;
            literal_from = i;
            continue;
        }
        // cel-go takes the argument before it reads the clause.
        let arg = *args.get(next_arg).ok_or_else(|| format!("index {next_arg} out of range"))?;
        let (clause, after) = Clause::parse(bytes, i)?;
        clause.write(arg, &mut out).map_err(|e| format!("error during formatting: {e}"))?;
        next_arg += 1;
        i = after;
        literal_from = i;
    }
    out.push_str(&template[literal_from..]);
    Ok(out)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Clause {
    String,
    Decimal,
    Fixed {
        precision: usize,
    },
    /// cel-go hands its precision to the printer as `%<precision>e`: a width.
    Scientific {
        width: usize,
    },
    Binary,
    Hex {
        upper: bool,
    },
    Octal,
}

impl Clause {
    /// The clause starting at `bytes[at]` (just past its `%`), and where what follows it starts.
    /// The verb is one byte, as cel-go reads it; precision is read for every verb and used by
    /// `%f` and `%e` only.
    fn parse(bytes: &[u8], mut at: usize) -> Result<(Self, usize), String> {
        let unparsable = |e: String| format!("could not parse formatting clause: {e}");
        if at >= bytes.len() {
            return Err("unexpected end of string".to_owned());
        }
        let mut precision = DEFAULT_PRECISION;
        if bytes[at] == b'.' {
            let start = at + 1;
            at = start;
            while at < bytes.len() && bytes[at].is_ascii_digit() {
                at += 1;
            }
            let in_precision = |e: &str| unparsable(format!("error while parsing precision: {e}"));
            if at >= bytes.len() {
                return Err(in_precision("could not find end of precision specifier"));
            }
            let digits = std::str::from_utf8(&bytes[start..at]).unwrap_or_default();
            precision = match digits.parse::<usize>() {
                Ok(p) if p <= MAX_PRECISION => p,
                Ok(p) => {
                    return Err(in_precision(&format!(
                        "precision {p} exceeds maximum allowed precision {MAX_PRECISION}"
                    )))
                }
                Err(_) => {
                    let why = if digits.is_empty() { "invalid syntax" } else { "value out of range" };
                    return Err(in_precision(&format!(
                        "error while converting precision to integer: strconv.Atoi: parsing \"{digits}\": {why}"
                    )));
                }
            };
        }
        let clause = match bytes[at] {
            b's' => Self::String,
            b'd' => Self::Decimal,
            b'f' => Self::Fixed { precision },
            b'e' => Self::Scientific { width: precision },
            b'b' => Self::Binary,
            b'x' => Self::Hex { upper: false },
            b'X' => Self::Hex { upper: true },
            b'o' => Self::Octal,
            other => return Err(unparsable(format!("unrecognized formatting clause \"{}\"", char::from(other)))),
        };
        Ok((clause, at + 1))
    }

    /// Whether a value of checked type `ty` may be formatted by this clause (`dyn` may).
    fn takes(self, ty: &Ty) -> bool {
        match (self, ty) {
            (_, Ty::Dyn | Ty::Param(_)) => true,
            (Self::String, Ty::List(item)) => Self::String.takes(item),
            (Self::String, Ty::Map(key, value)) => Self::String.takes(key) && Self::String.takes(value),
            (Self::String, t) => matches!(
                t,
                Ty::Bool
                    | Ty::Int
                    | Ty::Uint
                    | Ty::Double
                    | Ty::String
                    | Ty::Bytes
                    | Ty::Null
                    | Ty::Type
                    | Ty::Timestamp
                    | Ty::Duration
            ),
            (Self::Decimal | Self::Octal, t) => matches!(t, Ty::Int | Ty::Uint),
            (Self::Fixed { .. } | Self::Scientific { .. }, t) => matches!(t, Ty::Double | Ty::String),
            (Self::Binary, t) => matches!(t, Ty::Int | Ty::Uint | Ty::Bool),
            (Self::Hex { .. }, t) => matches!(t, Ty::Int | Ty::Uint | Ty::String | Ty::Bytes),
        }
    }

    /// What the clause takes, as cel-go words it when it refuses a value.
    fn accepts(self) -> &'static str {
        match self {
            Self::String => {
                "string clause can only be used on strings, bools, bytes, ints, doubles, maps, lists, types, \
                 durations, and timestamps"
            }
            Self::Decimal => "decimal clause can only be used on integers",
            Self::Fixed { .. } => "fixed-point clause can only be used on doubles",
            Self::Scientific { .. } => "scientific clause can only be used on doubles",
            Self::Binary => "only integers and bools can be formatted as binary",
            Self::Hex { .. } => "only integers, byte buffers, and strings can be formatted as hex",
            Self::Octal => "octal clause can only be used on integers",
        }
    }

    fn write(self, val: &dyn Val, out: &mut String) -> Result<(), String> {
        let kind = val.get_type().kind();
        let written = match self {
            Self::String => return top_level_string(val, out),
            Self::Decimal | Self::Octal | Self::Binary | Self::Hex { .. } if matches!(kind, Kind::Int | Kind::UInt) => {
                let (radix, upper) = match self {
                    Self::Decimal => (10, false),
                    Self::Octal => (8, false),
                    Self::Binary => (2, false),
                    _ => (16, self == Self::Hex { upper: true }),
                };
                integer(val, radix, upper, out);
                true
            }
            Self::Fixed { precision } => double_of(val).map(|d| fixed(d, precision, out)).is_some(),
            Self::Scientific { width } => double_of(val).map(|d| scientific(d, width, out)).is_some(),
            Self::Binary => match val.downcast_ref::<CelBool>() {
                Some(b) => {
                    out.push(if *b.inner() { '1' } else { '0' });
                    true
                }
                None => false,
            },
            Self::Hex { upper } => match (val.downcast_ref::<CelString>(), val.downcast_ref::<CelBytes>()) {
                (Some(s), _) => hex(s.as_bytes(), upper, out),
                (_, Some(b)) => hex(b, upper, out),
                _ => false,
            },
            Self::Decimal | Self::Octal => false,
        };
        if written {
            Ok(())
        } else {
            Err(format!("{}, was given {}", self.accepts(), val.get_type().name()))
        }
    }
}

/// An int or uint in `radix`, Go's way: a negative number is `-` and its magnitude.
fn integer(val: &dyn Val, radix: u32, upper: bool, out: &mut String) {
    let (negative, magnitude) = match (val.downcast_ref::<CelInt>(), val.downcast_ref::<CelUInt>()) {
        (Some(i), _) => (*i.inner() < 0, i.inner().unsigned_abs()),
        (_, Some(u)) => (false, *u.inner()),
        _ => (false, 0),
    };
    if negative {
        out.push('-');
    }
    let _ = match (radix, upper) {
        (2, _) => write!(out, "{magnitude:b}"),
        (8, _) => write!(out, "{magnitude:o}"),
        (16, false) => write!(out, "{magnitude:x}"),
        (16, true) => write!(out, "{magnitude:X}"),
        _ => write!(out, "{magnitude}"),
    };
}

/// Each byte as two hex digits; always `true`, for [`Clause::write`].
fn hex(bytes: &[u8], upper: bool, out: &mut String) -> bool {
    for b in bytes {
        let _ = if upper { write!(out, "{b:02X}") } else { write!(out, "{b:02x}") };
    }
    true
}

/// What `%f` and `%e` format: a double, or one of the three strings cel-go lets stand for the
/// doubles without digits.
fn double_of(val: &dyn Val) -> Option<f64> {
    if let Some(d) = val.downcast_ref::<CelDouble>() {
        return Some(*d.inner());
    }
    match &**val.downcast_ref::<CelString>()? {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

/// How the en-US printer writes a double without digits; `None` for a finite one.
fn without_digits(d: f64) -> Option<&'static str> {
    if d.is_nan() {
        Some("NaN")
    } else if d.is_infinite() {
        Some(if d > 0.0 { "∞" } else { "-∞" })
    } else {
        None
    }
}

/// `%.<precision>f` through the en-US printer: thousands grouped with `,`, and a sign only
/// before a number below zero (so `-0.0` loses its own, `-0.0001` keeps it at `%.3f`).
fn fixed(d: f64, precision: usize, out: &mut String) {
    if let Some(s) = without_digits(d) {
        out.push_str(s);
        return;
    }
    if d < 0.0 {
        out.push('-');
    }
    let digits = format!("{:.precision$}", d.abs());
    let (whole, fraction) = digits.split_once('.').map_or((digits.as_str(), None), |(w, f)| (w, Some(f)));
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if let Some(fraction) = fraction {
        out.push('.');
        out.push_str(fraction);
    }
}

/// `%<width>e` through the en-US printer: `d.dddddd×10` and the exponent in at least two
/// superscript digits (`⁻` before a negative one, nothing before a positive one), the whole
/// right-aligned to `width` characters.
fn scientific(d: f64, width: usize, out: &mut String) {
    let mut body = String::new();
    match without_digits(d) {
        Some(s) => body.push_str(s),
        None => {
            if d < 0.0 {
                body.push('-');
            }
            let formatted = format!("{:.6e}", d.abs());
            let (mantissa, exponent) = formatted.split_once('e').unwrap_or((&formatted, "0"));
            let exponent: i32 = exponent.parse().unwrap_or(0);
            body.push_str(mantissa);
            body.push_str("×10");
            if exponent < 0 {
                body.push('⁻');
            }
            for digit in format!("{:02}", exponent.unsigned_abs()).bytes() {
                body.push(['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'][usize::from(digit - b'0')]);
            }
        }
    }
    out.extend(std::iter::repeat_n(' ', width.saturating_sub(body.chars().count())));
    out.push_str(&body);
}

/// `%s` of an argument itself: what the value converts to as a string in cel-go.
fn top_level_string(val: &dyn Val, out: &mut String) -> Result<(), String> {
    match val.get_type().kind() {
        Kind::String => out.push_str(val.downcast_ref::<CelString>().map_or("", |s| s)),
        Kind::Bytes => {
            let bytes = val.downcast_ref::<CelBytes>().map_or(&[][..], |b| &b[..]);
            let text = std::str::from_utf8(bytes).map_err(|_| {
                "could not convert argument \"invalid UTF-8 in bytes, cannot convert to string\" to string".to_owned()
            })?;
            out.push_str(text);
        }
        Kind::Double => go_shortest(val.downcast_ref::<CelDouble>().map_or(0.0, |d| *d.inner()), out),
        Kind::Timestamp => rfc3339_nano(val, out),
        Kind::Duration => duration_seconds(val, out),
        Kind::Boolean | Kind::Int | Kind::UInt | Kind::NullType | Kind::Type | Kind::List | Kind::Map => {
            nested(val, out)?;
        }
        _ => return Err(format!("{}, was given {}", Clause::String.accepts(), val.get_type().name())),
    }
    Ok(())
}

/// A value inside a list or map under `%s`: strings and bytes quoted as Go's `%q` does,
/// doubles as `%.6f`, timestamps and durations as the calls that make them.
fn nested(val: &dyn Val, out: &mut String) -> Result<(), String> {
    match val.get_type().kind() {
        Kind::String => go_quote(val.downcast_ref::<CelString>().map_or(&[][..], |s| s.as_bytes()), out),
        Kind::Bytes => {
            out.push('b');
            go_quote(val.downcast_ref::<CelBytes>().map_or(&[][..], |b| &b[..]), out);
        }
        Kind::Boolean => {
            out.push_str(if val.downcast_ref::<CelBool>().is_some_and(|b| *b.inner()) { "true" } else { "false" })
        }
        Kind::Int | Kind::UInt => integer(val, 10, false, out),
        Kind::Double => {
            let d = val.downcast_ref::<CelDouble>().map_or(0.0, |d| *d.inner());
            match (d.is_nan(), d.is_infinite()) {
                (true, _) => out.push_str("\"NaN\""),
                (_, true) => out.push_str(if d > 0.0 { "\"+Inf\"" } else { "\"-Inf\"" }),
                _ => {
                    let _ = write!(out, "{d:.6}");
                }
            }
        }
        Kind::NullType => out.push_str("null"),
        Kind::Type => out.push_str(val.downcast_ref::<CelType>().map_or("type", |t| t.name())),
        Kind::Timestamp => {
            out.push_str("timestamp(\"");
            rfc3339_nano(val, out);
            out.push_str("\")");
        }
        Kind::Duration => {
            out.push_str("duration(\"");
            duration_seconds(val, out);
            out.push_str("\")");
        }
        Kind::List => {
            let items = val.as_iterable().ok_or("a list that cannot be iterated")?;
            let mut iter = items.iter();
            out.push('[');
            let mut first = true;
            while let Some(item) = iter.next() {
                if !first {
                    out.push_str(", ");
                }
                first = false;
                nested(item, out)?;
            }
            out.push(']');
        }
        Kind::Map => {
            let (keys, values) = val.as_iterable().zip(val.as_indexer()).ok_or("a map that cannot be iterated")?;
            let mut entries = Vec::new();
            let mut iter = keys.iter();
            while let Some(key) = iter.next() {
                let mut k = String::new();
                match key.get_type().kind() {
                    Kind::String | Kind::Boolean | Kind::Int | Kind::UInt => nested(key, &mut k)?,
                    _ => return Err(format!("no formatting function for map key of type {}", key.get_type().name())),
                }
                let mut v = String::new();
                nested(values.get(key).map_err(|e| e.to_string())?.as_ref(), &mut v)?;
                entries.push((k, v));
            }
            // By the written key, byte by byte, as cel-go sorts them.
            entries.sort();
            out.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(k);
                out.push(':');
                out.push_str(v);
            }
            out.push('}');
        }
        _ => return Err(format!("no formatting function for {}", val.get_type().name())),
    }
    Ok(())
}

/// Go's `strconv.FormatFloat(d, 'g', -1, 64)`: the shortest digits that read back as `d`, with
/// an exponent (`e+06`, `e-09`) when it is below -4 or at least 6.
fn go_shortest(d: f64, out: &mut String) {
    if d.is_nan() {
        out.push_str("NaN");
        return;
    }
    if d.is_infinite() {
        out.push_str(if d > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    let scientific = format!("{d:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if d != 0.0 && !(-4..6).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        let _ = write!(out, "{mantissa}e{sign}{:02}", exponent.unsigned_abs());
    } else {
        let _ = write!(out, "{d}");
    }
}

/// Go's `time.RFC3339Nano`: the timestamp's own offset (`Z` when it is zero) and the fraction
/// of a second without trailing zeros.
fn rfc3339_nano(val: &dyn Val, out: &mut String) {
    let Some(ts) = val.downcast_ref::<CelTimestamp>() else { return };
    let t = ts.inner();
    let _ = write!(out, "{}", t.format("%Y-%m-%dT%H:%M:%S"));
    let nanos = t.timestamp_subsec_nanos() % 1_000_000_000;
    if nanos != 0 {
        let fraction = format!("{nanos:09}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    let offset = t.offset().local_minus_utc();
    if offset == 0 {
        out.push('Z');
    } else {
        let sign = if offset < 0 { '-' } else { '+' };
        let minutes = offset.unsigned_abs() / 60;
        let _ = write!(out, "{sign}{:02}:{:02}", minutes / 60, minutes % 60);
    }
}

/// cel-go's duration as a string: Go's `Duration.Seconds()` in the shortest digits, no
/// exponent, and `s`.
fn duration_seconds(val: &dyn Val, out: &mut String) {
    let Some(d) = val.downcast_ref::<CelDuration>() else { return };
    let seconds = d.num_seconds() as f64 + f64::from(d.subsec_nanos()) / 1e9;
    let _ = write!(out, "{seconds}s");
}

/// Go's `strconv.Quote`: printable characters as they are, `\"` and `\\`, C escapes, `\xNN` for
/// other control bytes and each byte of invalid UTF-8, `\uNNNN`/`\UNNNNNNNN` for other
/// unprintable characters.
fn go_quote(bytes: &[u8], out: &mut String) {
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\x07' => out.push_str("\\a"),
                '\x08' => out.push_str("\\b"),
                '\x0c' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\x0b' => out.push_str("\\v"),
                c if go_printable(c) => out.push(c),
                c if u32::from(c) < 0x80 => {
                    let _ = write!(out, "\\x{:02x}", u32::from(c));
                }
                c if u32::from(c) < 0x10000 => {
                    let _ = write!(out, "\\u{:04x}", u32::from(c));
                }
                c => {
                    let _ = write!(out, "\\U{:08x}", u32::from(c));
                }
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out.push('"');
}

/// Go's `unicode.IsPrint`, without Unicode's tables: every character but controls, spaces other
/// than U+0020, line and paragraph separators, the format characters in use, private use and
/// the two noncharacters of each plane. (Unassigned characters count as printable here.)
fn go_printable(c: char) -> bool {
    let u = u32::from(c);
    let format_character = matches!(
        u,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x890..=0x891 | 0x8E2 | 0x180E | 0x200B..=0x200F
            | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB | 0x110BD
            | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F
    );
    let private_use = matches!(u, 0xE000..=0xF8FF | 0xF0000..=0xFFFFD | 0x100000..=0x10FFFD);
    let noncharacter = (u & 0xFFFE) == 0xFFFE || (0xFDD0..=0xFDEF).contains(&u);
    c == ' ' || !(c.is_control() || c.is_whitespace() || format_character || private_use || noncharacter)
}

#[cfg(test)]
mod tests {
    use super::{go_quote, go_shortest, Clause};
    use crate::cel::conformance::{evaluate, Failure};

    fn format(expr: &str) -> Result<String, Failure> {
        evaluate(expr, &serde_json::Map::new(), true)
            .map(|v| v["string"].as_str().map(str::to_owned).unwrap_or_else(|| format!("not a string: {v}")))
    }

    /// Answers no upstream test holds, taken from cel-go v0.26.0 (Kubernetes 1.34's) with
    /// golang.org/x/text 0.23.0, run on a Go toolchain with the API server's strings options.
    #[test]
    fn legacy_answers_as_cel_go_gives_them() {
        for (expr, want) in [
            ("'%f'.format([1234.5])", "1,234.500000"),
            ("'%f'.format([1234567.891])", "1,234,567.891000"),
            ("'%f'.format([1e21])", "1,000,000,000,000,000,000,000.000000"),
            ("'%.0f'.format([1234.5])", "1,234"),
            ("'%.0f %.0f %.0f'.format([2.5, 3.5, 0.5])", "2 4 0"),
            ("'%.1f %.2f'.format([0.25, 1.005])", "0.2 1.00"),
            ("'%f|%.3f|%.0f'.format([-0.0, -0.0001, -0.4])", "0.000000|-0.000|-0"),
            ("'%e|%e'.format([0.000123, -0.000123])", "1.230000×10⁻⁰⁴|-1.230000×10⁻⁰⁴"),
            (
                "'%e|%e|%e|%e'.format([1e100, 1e-100, 9.9999999, 0.0])",
                "1.000000×10¹⁰⁰|1.000000×10⁻¹⁰⁰|1.000000×10⁰¹|0.000000×10⁰⁰",
            ),
            ("'%.20e'.format([3.14])", "       3.140000×10⁰⁰"),
            ("'%.2e'.format([1052.032911275])", "1.052033×10⁰³"),
            ("'%d %d'.format([1234567, 18446744073709551615u])", "1234567 18446744073709551615"),
            ("'%s'.format([1234567.891])", "1.234567891e+06"),
            ("'%.3d|%.2s'.format([5, 'abcdef'])", "5|abcdef"),
            ("'%x'.format(['é'])", "c3a9"),
            ("'%s'.format([timestamp('2023-02-03T23:31:20.120+01:00')])", "2023-02-03T23:31:20.12+01:00"),
            (
                "'%s %s %s %s'.format([duration('1h2m3s'), duration('1.5s'), duration('-1h30m'), duration('0s')])",
                "3723s 1.5s -5400s 0s",
            ),
            ("'%s'.format([[-0.0, 1234567.891]])", "[-0.000000, 1234567.891000]"),
            ("'%s'.format([{1: 'z', 10: 'y', 2: 'x'}])", "{1:\"z\", 10:\"y\", 2:\"x\"}"),
            ("'%s'.format([{'b': 2, 'a': 1}])", "{\"a\":1, \"b\":2}"),
            ("'%s'.format([[b'\\x00a', b'ab']])", "[b\"\\x00a\", b\"ab\"]"),
            ("'%s'.format([[int, string]])", "[int, string]"),
            ("'%%'.format([])", "%"),
        ] {
            assert_eq!(format(expr), Ok(want.to_owned()), "{expr}");
        }
    }

    #[test]
    fn errors_are_cel_gos_at_load_and_when_evaluated() {
        let load = |expr: &str| match format(expr) {
            Err(Failure::Compile(e)) => e,
            other => panic!("{expr}: want a load error, got {other:?}"),
        };
        let eval = |expr: &str| match format(expr) {
            Err(Failure::Eval(e)) => e,
            other => panic!("{expr}: want an evaluation error, got {other:?}"),
        };
        // A literal template over a literal list is checked at load, as the API server does.
        assert!(load("'%'.format([])").contains("unexpected end of string"));
        assert!(load("'%s %s'.format(['a'])").contains("index 1 out of range"));
        assert!(load("'%s'.format(['a', 'b'])")
            .contains("too many arguments supplied to string.format (expected 1, got 2)"));
        assert!(load("'%d'.format([1.5])").contains("decimal clause can only be used on integers, was given double"));
        assert!(load("'%f'.format([1])").contains("fixed-point clause can only be used on doubles, was given int"));
        // Mixed literals are allowed anywhere inside a format call, as cel-go exempts them.
        assert_eq!(format("'%d %s'.format([1, 'a'])"), Ok("1 a".to_owned()));
        assert!(load("[1, 'a'].size() == 2").contains("type mismatch in a literal"));
        // What only evaluation sees: cel-go takes the argument before reading the clause.
        assert!(eval("'%'.format(dyn([]))").contains("index 0 out of range"));
        assert!(
            eval("'%d'.format(dyn(['x']))").contains("decimal clause can only be used on integers, was given string")
        );
        assert!(eval("'%s'.format(dyn([b'\\xff']))").contains("invalid UTF-8"));
        assert!(eval("'%s'.format(dyn([optional.of(1)]))").contains("string clause can only be used on"));
        assert!(eval("'%.1001f'.format(dyn([1.0]))").contains("exceeds maximum allowed precision 1000"));
        assert_eq!(format("'%s'.format(dyn(['x', 'y']))"), Ok("x".to_owned()), "arguments left over are ignored");
    }

    #[test]
    fn clauses_parse_as_cel_go_reads_them() {
        let parse = |s: &str| Clause::parse(s.as_bytes(), 0);
        assert_eq!(parse("s"), Ok((Clause::String, 1)));
        assert_eq!(parse(".3f rest"), Ok((Clause::Fixed { precision: 3 }, 3)));
        assert_eq!(parse(".20e"), Ok((Clause::Scientific { width: 20 }, 4)));
        // Precision is read for every verb, and ignored by those that do not use it.
        assert_eq!(parse(".3d"), Ok((Clause::Decimal, 3)));
        assert_eq!(
            parse(".3"),
            Err("could not parse formatting clause: error while parsing precision: could not find end of precision specifier".into())
        );
        assert_eq!(
            parse(".f"),
            Err("could not parse formatting clause: error while parsing precision: error while converting precision to integer: strconv.Atoi: parsing \"\": invalid syntax".into())
        );
        assert!(parse(".1001f").unwrap_err().ends_with("precision 1001 exceeds maximum allowed precision 1000"));
        assert_eq!(parse("E"), Err("could not parse formatting clause: unrecognized formatting clause \"E\"".into()));
        // The verb is one byte: the first of a two-byte character, as Go's rune of that byte.
        assert_eq!(parse("é"), Err("could not parse formatting clause: unrecognized formatting clause \"Ã\"".into()));
    }

    #[test]
    fn doubles_under_s_are_gos_shortest() {
        let g = |d: f64| {
            let mut s = String::new();
            go_shortest(d, &mut s);
            s
        };
        assert_eq!(g(1234.5), "1234.5");
        assert_eq!(g(1.0), "1");
        assert_eq!(g(-0.0), "-0");
        assert_eq!(g(1234567.891), "1.234567891e+06");
        assert_eq!(g(1e20), "1e+20");
        assert_eq!(g(2e-9), "2e-09");
        assert_eq!(g(0.0001), "0.0001");
        assert_eq!(g(1e-5), "1e-05");
        assert_eq!(g(100000.0), "100000");
        assert_eq!(g(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn quoting_is_gos() {
        let q = |b: &[u8]| {
            let mut s = String::new();
            go_quote(b, &mut s);
            s
        };
        assert_eq!(q(b"b\"c"), r#""b\"c""#);
        assert_eq!(q(b"\t\x01\x7f"), r#""\t\x01\x7f""#);
        assert_eq!(q("é".as_bytes()), "\"é\"");
        assert_eq!(q(b"\x00a\xff"), r#""\x00a\xff""#);
        assert_eq!(q("\u{a0}\u{200b}\u{2028}".as_bytes()), r#""\u00a0\u200b\u2028""#);
        assert_eq!(q("\u{10ffff}".as_bytes()), r#""\U0010ffff""#);
    }
}
