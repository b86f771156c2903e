//! `url()`, `isURL()` and the URL accessors, with Kubernetes' parsing and escaping.

use super::*;

/// An absolute URI or an absolute path, split as Go's `url.Parse` does for the getters VAP has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Url {
    scheme: String,
    host: String,
    path: String,
    query: String,
}

impl Opaque for Url {
    fn runtime_type_name(&self) -> &str {
        URL
    }
}

impl Url {
    pub(super) fn parse(text: &str) -> Result<Url, String> {
        // As Go's `url.Parse`: control characters nowhere; spaces in a path or query are kept (and
        // escaped by `getEscapedPath`), not in a scheme or host.
        if text.chars().any(|c| c.is_control()) {
            return Err("a URL must not contain control characters".into());
        }
        let text = text.split_once('#').map_or(text, |(t, _)| t);
        let (rest, query) = text.split_once('?').unwrap_or((text, ""));
        if rest.starts_with('/') {
            return Ok(Url { scheme: String::new(), host: String::new(), path: rest.to_string(), query: query.into() });
        }
        let (scheme, after) = rest.split_once(':').ok_or("not an absolute URI or absolute path")?;
        if scheme.contains(' ') {
            return Err("a URL's scheme must not contain spaces".into());
        }
        let scheme_ok = scheme.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
        if !scheme_ok {
            return Err(format!("`{}` is not a URI scheme", excerpt(scheme, 40)));
        }
        let (host, path) = match after.strip_prefix("//") {
            Some(authority_and_path) => {
                let cut = authority_and_path.find('/').unwrap_or(authority_and_path.len());
                let authority = &authority_and_path[..cut];
                let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
                if host.contains(' ') {
                    return Err("a URL's host must not contain spaces".into());
                }
                // Go checks the port after the last `:` of a host not in brackets: `a:b:c` has none.
                if !host.starts_with('[') {
                    if let Some((_, port)) = host.rsplit_once(':') {
                        if !port.bytes().all(|b| b.is_ascii_digit()) {
                            return Err(format!("invalid port `:{}` after host", excerpt(port, 20)));
                        }
                    }
                }
                (host.to_string(), authority_and_path[cut..].to_string())
            }
            None => (String::new(), after.to_string()),
        };
        Ok(Url { scheme: scheme.to_string(), host, path, query: query.into() })
    }

    fn hostname_and_port(&self) -> (&str, &str) {
        if let Some(rest) = self.host.strip_prefix('[') {
            let (h, after) = rest.split_once(']').unwrap_or((rest, ""));
            return (h, after.strip_prefix(':').unwrap_or(""));
        }
        match self.host.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => (h, p),
            _ => (&self.host, ""),
        }
    }
}

pub(super) fn url<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let text = string_arg(&args, 0)?;
    let url = Url::parse(&text).map_err(|e| fail("url", format!("`{}`: {e}", excerpt(&text, 80))))?;
    out(Value::Opaque(Arc::new(url)))
}

pub(super) fn is_url<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    bool_out(Url::parse(&string_arg(&args, 0)?).is_ok())
}

pub(super) fn string_value<'b, 'v>(s: &str) -> Out<'b, 'v> {
    out(Value::String(Arc::new(s.to_string())))
}

pub(super) fn url_scheme<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    string_value(&opaque_arg::<Url>(&args, 0, "URL")?.scheme)
}

pub(super) fn url_host<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    string_value(&opaque_arg::<Url>(&args, 0, "URL")?.host)
}

pub(super) fn url_hostname<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    string_value(opaque_arg::<Url>(&args, 0, "URL")?.hostname_and_port().0)
}

pub(super) fn url_port<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    string_value(opaque_arg::<Url>(&args, 0, "URL")?.hostname_and_port().1)
}

/// `getEscapedPath()`: the path as Go's `URL.EscapedPath` writes it, bytes a path may not hold as
/// they are (a space, quotes, non-ASCII, ...) percent-encoded, `%XX` escapes kept.
pub(super) fn url_path<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let path = &opaque_arg::<Url>(&args, 0, "URL")?.path;
    let mut escaped = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b) {
            escaped.push(b as char);
        } else {
            escaped.push_str(&format!("%{b:02X}"));
        }
    }
    string_value(&escaped)
}

pub(super) fn url_query<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Out<'b, 'v> {
    let url = opaque_arg::<Url>(&args, 0, "URL")?;
    let mut map: HashMap<Key, Vec<Value>> = HashMap::new();
    for pair in url.query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        map.entry(Key::String(Arc::new(percent_decode(k))))
            .or_default()
            .push(Value::String(Arc::new(percent_decode(v))));
    }
    let map = map.into_iter().map(|(k, v)| (k, Value::List(Arc::new(v)))).collect();
    out(Value::Map(Map { map: Arc::new(map) }))
}

pub(super) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                decoded.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                decoded.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}
