//! User-written regexes, with literal fast paths: most header and path patterns in rule sets are
//! `.*`, `^prefix`, `suffix$` or a plain word, and a byte comparison beats any regex engine,
//! especially inside a proxy's wasm VM where every request pays for it.

use regex_lite::Regex;

#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    /// `.*`: matches any value.
    Always,
    Literal {
        needle: String,
        start: bool,
        end: bool,
    },
    Regex(Regex),
}

const META: &[char] = &['.', '^', '$', '*', '+', '?', '(', ')', '[', ']', '{', '}', '|', '\\'];

impl Pattern {
    /// Compiles `source`; every pattern is also checked by the regex parser, so errors read the same
    /// whichever path it takes.
    pub fn new(source: &str) -> Result<Self, String> {
        let regex = Regex::new(source).map_err(|e| e.to_string())?;
        let start = source.starts_with('^');
        let rest = source.strip_prefix('^').unwrap_or(source);
        let end = rest.ends_with('$') && !rest.ends_with("\\$");
        let body = if end { &rest[..rest.len() - 1] } else { rest };
        let kind = if body == ".*" {
            Kind::Always
        } else if !body.contains(META) {
            Kind::Literal { needle: body.to_string(), start, end }
        } else {
            Kind::Regex(regex)
        };
        Ok(Pattern { source: source.to_string(), kind })
    }

    pub fn is_match(&self, text: &str) -> bool {
        match &self.kind {
            Kind::Always => true,
            Kind::Literal { needle, start: true, end: true } => text == needle,
            Kind::Literal { needle, start: true, end: false } => text.starts_with(needle.as_str()),
            Kind::Literal { needle, start: false, end: true } => text.ends_with(needle.as_str()),
            Kind::Literal { needle, start: false, end: false } => text.contains(needle.as_str()),
            Kind::Regex(r) => r.is_match(text),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

#[cfg(test)]
mod tests {
    use super::Pattern;

    #[test]
    fn literal_fast_paths_agree_with_the_regex() {
        let texts = ["", "Bearer abc", "xBearer", "abc", "sqlmap/1.0", "v1", "a$", "line"];
        for src in [".*", "^Bearer ", "abc$", "^abc$", "sqlmap", "^v[0-9]+$", "(?i)SQLMAP", "a\\$", "^$", "", "l.ne"] {
            let p = Pattern::new(src).unwrap();
            let r = regex_lite::Regex::new(src).unwrap();
            for t in texts {
                assert_eq!(p.is_match(t), r.is_match(t), "pattern {src:?} on {t:?}");
            }
        }
        assert!(Pattern::new("(unclosed").is_err());
    }
}
