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
}

pub(super) fn too_long(s: &str, max: usize) -> Option<String> {
    (s.len() > max).then(|| format!("must be no more than {max} characters"))
}

pub(super) fn dns_label(s: &str, rfc1035: bool, prefix: bool) -> Vec<String> {
    let body = if prefix { s.strip_suffix('-').unwrap_or(s) } else { s };
    let b = body.as_bytes();
    let inner_ok = b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
    let first_ok = b.first().is_some_and(|c| c.is_ascii_lowercase() || (!rfc1035 && c.is_ascii_digit()));
    let last_ok = b.last().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let mut errors: Vec<String> = too_long(s, 63).into_iter().collect();
    if !(inner_ok && first_ok && last_ok) {
        errors.push(if rfc1035 {
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic \
             character, and end with an alphanumeric character"
                .into()
        } else {
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start \
             and end with an alphanumeric character"
                .into()
        });
    }
    errors
}

pub(super) fn dns_subdomain(s: &str, prefix: bool) -> Vec<String> {
    let body = if prefix { s.strip_suffix('-').unwrap_or(s) } else { s };
    let mut errors: Vec<String> = too_long(s, 253).into_iter().collect();
    if body.is_empty() || body.split('.').any(|label| !dns_label(label, false, false).iter().all(|e| e.contains("63")))
    {
        errors.push(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and \
             must start and end with an alphanumeric character"
                .into(),
        );
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

pub(super) const NAME_PART: &str =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an \
                         alphanumeric character";

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
        errors.push(format!("name part {NAME_PART}"));
    }
    errors.extend(too_long(name, 63).map(|e| format!("name part {e}")));
    errors
}

pub(super) fn label_value(s: &str) -> Vec<String> {
    let mut errors: Vec<String> = too_long(s, 63).into_iter().collect();
    if !s.is_empty() && !name_part_ok(s) {
        errors.push(format!("a valid label {NAME_PART}"));
    }
    errors
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
