//! `quantity()` and its arithmetic and comparisons: Kubernetes resource quantities, exact and of
//! any size, as the API server's arbitrary-precision decimals are (within [`MAX_DIGITS`] digits
//! and an exponent of at most [`MAX_EXPONENT`], which bound the work one value can cost).

use super::*;
use num_bigint::BigInt;
use num_integer::Integer;
use num_traits::{Signed, ToPrimitive, Zero};

/// The digits a quantity may be written with, and its largest decimal exponent either way.
pub(super) const MAX_DIGITS: usize = 100;
pub(super) const MAX_EXPONENT: u32 = 100;

/// A resource quantity as an exact fraction `numerator / denominator` (denominator > 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Quantity {
    numerator: BigInt,
    denominator: BigInt,
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

fn pow10(exp: u32) -> BigInt {
    num_traits::pow(BigInt::from(10u8), exp as usize)
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
            || whole.len() + fraction.len() > MAX_DIGITS
        {
            return Err(bad());
        }
        let mantissa = BigInt::parse_bytes(format!("{whole}{fraction}").as_bytes(), 10).ok_or_else(bad)?;
        let mut q = Quantity { numerator: if negative { -mantissa } else { mantissa }, denominator: BigInt::from(1u8) };
        let mut exp10 = -(fraction.len() as i32);
        if let Some((_, shift)) = BINARY_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
            q.numerator <<= *shift as usize;
        } else if let Some((_, e)) = DECIMAL_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
            exp10 += e;
        } else if let Some(e) = suffix.strip_prefix(['e', 'E']) {
            let e: i32 = e.parse().map_err(|_| bad())?;
            if e.unsigned_abs() > MAX_EXPONENT {
                return Err(format!("`{}`: the exponent is out of range", excerpt(text, 40)));
            }
            exp10 += e;
        } else {
            return Err(bad());
        }
        let scale = pow10(exp10.unsigned_abs());
        if exp10 >= 0 {
            q.numerator *= scale;
        } else {
            q.denominator = scale;
        }
        Ok(q.reduced())
    }

    fn reduced(self) -> Quantity {
        let g = self.numerator.gcd(&self.denominator);
        if g.is_zero() {
            return self;
        }
        Quantity { numerator: &self.numerator / &g, denominator: &self.denominator / &g }
    }

    fn cmp(&self, other: &Quantity) -> Ordering {
        (&self.numerator * &other.denominator).cmp(&(&other.numerator * &self.denominator))
    }

    fn approx(&self) -> f64 {
        match (self.numerator.to_f64(), self.denominator.to_f64()) {
            (Some(n), Some(d)) if d != 0.0 => n / d,
            _ => f64::NAN,
        }
    }

    fn add(&self, other: &Quantity, negate: bool) -> Quantity {
        let b = if negate { -&other.numerator } else { other.numerator.clone() };
        let numerator = &self.numerator * &other.denominator + b * &self.denominator;
        Quantity { numerator, denominator: &self.denominator * &other.denominator }.reduced()
    }

    fn is_one(d: &BigInt) -> bool {
        *d == BigInt::from(1u8)
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
        Value::Int(n) => Ok(Quantity { numerator: BigInt::from(n), denominator: BigInt::from(1u8) }),
        _ => opaque_arg::<Quantity>(args, i, "quantity"),
    }
}

pub(super) fn q_is_integer<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let q = quantity_arg(&args, 0)?;
    bool_out(Quantity::is_one(&q.denominator) && q.numerator.to_i64().is_some())
}

pub(super) fn q_as_integer<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let q = quantity_arg(&args, 0)?;
    match (Quantity::is_one(&q.denominator), q.numerator.to_i64()) {
        (true, Some(n)) => out(Value::Int(n)),
        _ => Err(fail("asInteger", "the quantity is not an integer that fits int64 (check isInteger() first)")),
    }
}

pub(super) fn q_as_float<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    out(Value::Float(quantity_arg(&args, 0)?.approx()))
}

pub(super) fn q_sign<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    out(Value::Int(quantity_arg(&args, 0)?.numerator.signum().to_i64().unwrap_or(0)))
}

pub(super) fn q_add<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let sum = quantity_arg(&args, 0)?.add(&quantity_arg(&args, 1)?, false);
    out(Value::Opaque(Arc::new(sum)))
}

pub(super) fn q_sub<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let diff = quantity_arg(&args, 0)?.add(&quantity_arg(&args, 1)?, true);
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
