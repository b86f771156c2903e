//! `format.named()` and the named formats (DNS labels and subdomains, UUIDs, ...) VAPs validate with.

use super::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Format(&'static str);

impl Opaque for Format {
    fn runtime_type_name(&self) -> &str {
        FORMAT
    }
}

pub(super) struct FormatSpec {
    pub(super) name: &'static str,
    pub(super) constructor: cel::common::functions::Function,
    validate: fn(&str) -> Vec<String>,
}

macro_rules! formats {
    ($($name:literal => $check:expr),* $(,)?) => {
        pub(super) const FORMATS: &[FormatSpec] = &[$(FormatSpec {
            name: $name,
            constructor: |_args| out(Value::Opaque(Arc::new(Format($name)))),
            validate: $check,
        }),*];
    };
}

formats! {
    "dns1123Label" => |s| dns_label(s, false, false),
    "dns1123LabelPrefix" => |s| dns_label(s, false, true),
    "dns1123Subdomain" => |s| dns_subdomain(s, false),
    "dns1123SubdomainPrefix" => |s| dns_subdomain(s, true),
    "dns1035Label" => |s| dns_label(s, true, false),
    "dns1035LabelPrefix" => |s| dns_label(s, true, true),
    "qualifiedName" => qualified_name,
    "labelValue" => label_value,
    "uuid" => uuid,
    "uri" => |s| Url::parse(s).err().into_iter().collect(),
    "byte" => byte,
    "date" => |s| if date(s) { vec![] } else { vec!["invalid date".into()] },
    "datetime" => datetime,
}

pub(super) fn too_long(s: &str, max: usize) -> Option<String> {
    (s.len() > max).then(|| format!("must be no more than {max} characters"))
}

/// A validation message as apimachinery's `RegexError` words it: what is wrong, examples of
/// what is right, and the regular expression that decides.
fn regex_error(message: &str, examples: &[&str], regex: &str) -> String {
    let examples: Vec<String> = examples.iter().map(|e| format!("'{e}'")).collect();
    format!("{message} (e.g. {}, regex used for validation is '{regex}')", examples.join(",  or "))
}

/// apimachinery's `maskTrailingDash`, for the `...Prefix` formats (a name a suffix is appended
/// to): a trailing `-` is masked by replacing the last two characters with `a`, exactly as it does.
fn mask_trailing_dash(s: &str) -> std::borrow::Cow<'_, str> {
    if s.len() > 1 && s.ends_with('-') && s.is_char_boundary(s.len() - 2) {
        std::borrow::Cow::Owned(format!("{}a", &s[..s.len() - 2]))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

const DNS1123_LABEL: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1035_LABEL: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const QUALIFIED_NAME: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";

fn label_ok(b: &[u8], rfc1035: bool) -> bool {
    b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.first().is_some_and(|c| c.is_ascii_lowercase() || (!rfc1035 && c.is_ascii_digit()))
        && b.last().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

pub(super) fn dns_label(s: &str, rfc1035: bool, prefix: bool) -> Vec<String> {
    let s = if prefix { mask_trailing_dash(s) } else { s.into() };
    let mut errors: Vec<String> = too_long(&s, 63).into_iter().collect();
    if !label_ok(s.as_bytes(), rfc1035) {
        errors.push(if rfc1035 {
            regex_error(
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an \
                 alphabetic character, and end with an alphanumeric character",
                &["my-name", "abc-123"],
                DNS1035_LABEL,
            )
        } else {
            regex_error(
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must \
                 start and end with an alphanumeric character",
                &["my-name", "123-abc"],
                DNS1123_LABEL,
            )
        });
    }
    errors
}

pub(super) fn dns_subdomain(s: &str, prefix: bool) -> Vec<String> {
    let s = if prefix { mask_trailing_dash(s) } else { s.into() };
    let mut errors: Vec<String> = too_long(&s, 253).into_iter().collect();
    if s.split('.').any(|label| !label_ok(label.as_bytes(), false)) {
        errors.push(regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and \
             must start and end with an alphanumeric character",
            &["example.com"],
            DNS1123_SUBDOMAIN,
        ));
    }
    errors
}

pub(super) fn name_part_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
}

const NAME_PART: &str =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

pub(super) fn qualified_name(s: &str) -> Vec<String> {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    let mut errors = Vec::new();
    if let Some(p) = prefix {
        errors.extend(dns_subdomain(p, false).into_iter().map(|e| format!("prefix part {e}")));
    }
    if !name_part_ok(name) {
        errors.push(format!("name part {}", regex_error(NAME_PART, &["MyName", "my.name", "123-abc"], QUALIFIED_NAME)));
    }
    errors.extend(too_long(name, 63).map(|e| format!("name part {e}")));
    errors
}

pub(super) fn label_value(s: &str) -> Vec<String> {
    let mut errors: Vec<String> = too_long(s, 63).into_iter().collect();
    if !s.is_empty() && !name_part_ok(s) {
        errors.push(regex_error(
            &format!("a valid label must be an empty string or {}", NAME_PART.replacen("must consist", "consist", 1)),
            &["MyValue", "my_value", "12345"],
            LABEL_VALUE,
        ));
    }
    errors
}

/// `byte`: standard base64, padded (Go's `base64.StdEncoding`).
fn byte(s: &str) -> Vec<String> {
    use base64::Engine as _;
    match base64::engine::general_purpose::STANDARD.decode(s) {
        Ok(_) => vec![],
        Err(_) => vec!["invalid base64".into()],
    }
}

/// `date`: a calendar date, `YYYY-MM-DD` (RFC 3339 full-date).
fn date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num =
        |r: std::ops::Range<usize>| s.get(r).filter(|t| t.bytes().all(|c| c.is_ascii_digit()))?.parse::<u32>().ok();
    let (Some(year), Some(month), Some(day)) = (num(0..4), num(5..7), num(8..10)) else { return false };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

/// `datetime`: a date and a time (`T` or a space between, seconds and fraction optional, a
/// `Z` or `±HH:MM` zone or none), as the OpenAPI date-time parser Kubernetes uses accepts.
fn datetime(s: &str) -> Vec<String> {
    let ok = (|| {
        let (day, rest) = (s.get(..10)?, s.get(10..)?);
        if !date(day) {
            return None;
        }
        let rest = rest.strip_prefix(['T', 't', ' '])?;
        let zone_at = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
        let (time, zone) = rest.split_at(zone_at);
        let (clock, fraction) = time.split_once('.').map_or((time, None), |(c, f)| (c, Some(f)));
        if fraction.is_some_and(|f| f.is_empty() || !f.bytes().all(|c| c.is_ascii_digit())) {
            return None;
        }
        let parts: Vec<&str> = clock.split(':').collect();
        let limits = [23, 59, 60];
        if !(2..=3).contains(&parts.len())
            || parts.iter().zip(limits).any(|(p, max)| p.len() != 2 || p.parse::<u32>().ok().is_none_or(|n| n > max))
        {
            return None;
        }
        let zone_ok = match zone {
            "" | "Z" | "z" => true,
            z => {
                let digits: String = z[1..].chars().filter(|c| *c != ':').collect();
                digits.len() == 4
                    && digits.bytes().all(|c| c.is_ascii_digit())
                    && digits[..2].parse::<u32>().is_ok_and(|h| h <= 23)
                    && digits[2..].parse::<u32>().is_ok_and(|m| m <= 59)
            }
        };
        zone_ok.then_some(())
    })();
    if ok.is_some() {
        vec![]
    } else {
        vec!["invalid datetime".into()]
    }
}

pub(super) fn uuid(s: &str) -> Vec<String> {
    let groups: Vec<&str> = s.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    let ok = groups.len() == 5
        && groups.iter().zip(lens).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok {
        vec![]
    } else {
        vec!["does not match the UUID format".into()]
    }
}

pub(super) fn format_named<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let name = string_arg(&args, 0)?;
    match FORMATS.iter().find(|f| f.name == name.as_str()) {
        Some(f) => some(Value::Opaque(Arc::new(Format(f.name)))),
        None => none(),
    }
}

pub(super) fn format_validate<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let format = opaque_arg::<Format>(&args, 0, "format")?;
    let text = string_arg(&args, 1)?;
    let spec = FORMATS.iter().find(|f| f.name == format.0).ok_or_else(|| fail("validate", "unknown format"))?;
    let errors = (spec.validate)(&text);
    if errors.is_empty() {
        none()
    } else {
        some(Value::List(Arc::new(errors.into_iter().map(|e| Value::String(Arc::new(e))).collect())))
    }
}
