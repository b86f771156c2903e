//! `quantity()` and its arithmetic and comparisons: Kubernetes resource quantities, exact.

use super::*;

/// A resource quantity as an exact fraction `numerator / denominator` (denominator > 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Quantity {
    numerator: i128,
    denominator: i128,
}

impl Opaque for Quantity {
    fn runtime_type_name(&self) -> &str {
        QUANTITY
    }
}

/// Kubernetes' suffixes: binary (powers of 1024) and decimal SI (powers of 1000).
pub(super) const BINARY_SUFFIXES: &[(&str, u32)] =
    &[("Ki", 10), ("Mi", 20), ("Gi", 30), ("Ti", 40), ("Pi", 50), ("Ei", 60)];
pub(super) const DECIMAL_SUFFIXES: &[(&str, i32)] =
    &[("n", -9), ("u", -6), ("m", -3), ("", 0), ("k", 3), ("M", 6), ("G", 9), ("T", 12), ("P", 15), ("E", 18)];

pub(super) fn pow10(exp: u32) -> Option<i128> {
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

pub(super) fn quantity<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let q = Quantity::parse(&string_arg(&args, 0)?).map_err(|e| fail("quantity", e))?;
    out(Value::Opaque(Arc::new(q)))
}

pub(super) fn is_quantity<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    bool_out(Quantity::parse(&string_arg(&args, 0)?).is_ok())
}

pub(super) fn quantity_arg(args: &[CowVal<'_, '_>], i: usize) -> Result<Quantity, ExecutionError> {
    match arg(args, i)? {
        Value::Int(n) => Ok(Quantity { numerator: n as i128, denominator: 1 }),
        _ => opaque_arg::<Quantity>(args, i, "quantity"),
    }
}

pub(super) fn q_is_integer<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let q = quantity_arg(&args, 0)?;
    bool_out(q.denominator == 1 && i64::try_from(q.numerator).is_ok())
}

pub(super) fn q_as_integer<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let q = quantity_arg(&args, 0)?;
    match (q.denominator, i64::try_from(q.numerator)) {
        (1, Ok(n)) => out(Value::Int(n)),
        _ => Err(fail("asInteger", "the quantity is not an integer that fits int64 (check isInteger() first)")),
    }
}

pub(super) fn q_as_float<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    out(Value::Float(quantity_arg(&args, 0)?.approx()))
}

pub(super) fn q_sign<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    out(Value::Int(quantity_arg(&args, 0)?.numerator.signum() as i64))
}

pub(super) fn q_add<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let sum = quantity_arg(&args, 0)?.add(&quantity_arg(&args, 1)?, false).ok_or_else(|| fail("add", "overflow"))?;
    out(Value::Opaque(Arc::new(sum)))
}

pub(super) fn q_sub<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let diff = quantity_arg(&args, 0)?.add(&quantity_arg(&args, 1)?, true).ok_or_else(|| fail("sub", "overflow"))?;
    out(Value::Opaque(Arc::new(diff)))
}

pub(super) fn q_order(args: &[CowVal<'_, '_>]) -> Result<Ordering, ExecutionError> {
    Ok(quantity_arg(args, 0)?.cmp(&quantity_arg(args, 1)?))
}

pub(super) fn q_compare<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    out(Value::Int(q_order(&args)? as i64))
}

pub(super) fn q_greater<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    bool_out(q_order(&args)? == Ordering::Greater)
}

pub(super) fn q_less<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    bool_out(q_order(&args)? == Ordering::Less)
}
