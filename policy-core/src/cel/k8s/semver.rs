//! `semver()` and its comparisons.

use super::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Semver {
    major: u64,
    minor: u64,
    patch: u64,
    pre: Vec<String>,
}

impl Opaque for Semver {
    fn runtime_type_name(&self) -> &str {
        SEMVER
    }
}

impl Semver {
    /// Semantic Versioning 2.0.0; `normalize` accepts a `v` prefix, missing minor or patch
    /// and leading zeros, as Kubernetes' `semver(s, true)` does.
    fn parse(text: &str, normalize: bool) -> Result<Semver, String> {
        let bad = || format!("`{}` is not a semantic version (MAJOR.MINOR.PATCH)", excerpt(text, 60));
        let mut s = text;
        if normalize {
            s = s.strip_prefix('v').unwrap_or(s);
        }
        let s = s.split_once('+').map_or(s, |(v, build)| if build.is_empty() { "" } else { v });
        let (core, pre) = match s.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (s, None),
        };
        let mut parts: Vec<&str> = core.split('.').collect();
        if normalize {
            while parts.len() < 3 {
                parts.push("0");
            }
        }
        if parts.len() != 3 {
            return Err(bad());
        }
        let mut numbers = [0u64; 3];
        for (n, p) in numbers.iter_mut().zip(&parts) {
            let leading_zero = p.len() > 1 && p.starts_with('0');
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || (leading_zero && !normalize) {
                return Err(bad());
            }
            *n = p.parse().map_err(|_| bad())?;
        }
        let pre: Vec<String> = match pre {
            None => vec![],
            Some(p) => {
                let ids: Vec<String> = p.split('.').map(str::to_string).collect();
                let valid = ids.iter().all(|id| {
                    !id.is_empty()
                        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        && !(id.len() > 1 && id.starts_with('0') && id.bytes().all(|b| b.is_ascii_digit()))
                });
                if !valid {
                    return Err(bad());
                }
                ids
            }
        };
        Ok(Semver { major: numbers[0], minor: numbers[1], patch: numbers[2], pre })
    }

    fn cmp(&self, other: &Semver) -> Ordering {
        (self.major, self.minor, self.patch).cmp(&(other.major, other.minor, other.patch)).then_with(|| {
            match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => {
                    for (a, b) in self.pre.iter().zip(&other.pre) {
                        let order = match (a.parse::<u64>(), b.parse::<u64>()) {
                            (Ok(x), Ok(y)) => x.cmp(&y),
                            (Ok(_), Err(_)) => Ordering::Less,
                            (Err(_), Ok(_)) => Ordering::Greater,
                            (Err(_), Err(_)) => a.cmp(b),
                        };
                        if order != Ordering::Equal {
                            return order;
                        }
                    }
                    self.pre.len().cmp(&other.pre.len())
                }
            }
        })
    }
}

pub(super) fn normalize_arg(args: &[CowVal<'_, '_>]) -> Result<bool, ExecutionError> {
    Ok(args.len() > 1 && arg(args, 1)? == Value::Bool(true))
}

pub(super) fn semver<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let v = Semver::parse(&string_arg(&args, 0)?, normalize_arg(&args)?).map_err(|e| fail("semver", e))?;
    out(Value::Opaque(Arc::new(v)))
}

pub(super) fn is_semver<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    bool_out(Semver::parse(&string_arg(&args, 0)?, normalize_arg(&args)?).is_ok())
}

pub(super) fn sv_major<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    out(Value::Int(opaque_arg::<Semver>(&args, 0, "semver")?.major as i64))
}

pub(super) fn sv_minor<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    out(Value::Int(opaque_arg::<Semver>(&args, 0, "semver")?.minor as i64))
}

pub(super) fn sv_patch<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    out(Value::Int(opaque_arg::<Semver>(&args, 0, "semver")?.patch as i64))
}

pub(super) fn sv_order(args: &[CowVal<'_, '_>]) -> Result<Ordering, ExecutionError> {
    Ok(opaque_arg::<Semver>(args, 0, "semver")?.cmp(&opaque_arg::<Semver>(args, 1, "semver")?))
}

pub(super) fn sv_compare<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    out(Value::Int(sv_order(&args)? as i64))
}

pub(super) fn sv_greater<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    bool_out(sv_order(&args)? == Ordering::Greater)
}

pub(super) fn sv_less<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    bool_out(sv_order(&args)? == Ordering::Less)
}
