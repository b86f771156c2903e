//! User-written regexes, with fast paths for the shapes most header and path patterns in rule sets
//! take: `.*`, `^prefix`, `suffix$`, a plain word, `(?i)word|other` and `^[class]{n}$`. A byte
//! loop beats any regex engine, especially inside a proxy's wasm VM where every request pays for
//! it; whatever else a pattern says goes to regex-lite.

use regex_lite::Regex;
use std::fmt;

/// Longest pattern a RuleSet may hold, in bytes. Real header, path and image patterns are a few
/// dozen bytes; a long generated alternation is better as a list param.
pub const MAX_PATTERN_BYTES: usize = 16 << 10;

/// Most regex work one check may do on one object or request, counted as pattern bytes × text
/// bytes (regex-lite's PikeVM is linear in each). It bounds a rule's time the way fuel bounds the
/// wasm engine, and because it lives here, every host stops at the same match with the same answer.
pub const MATCH_BUDGET: u64 = 1 << 24;

/// What is left of [`MATCH_BUDGET`] for one check on one object or request.
#[derive(Debug)]
pub struct Budget {
    left: u64,
}

impl Default for Budget {
    fn default() -> Self {
        Budget { left: MATCH_BUDGET }
    }
}

/// A match that would overspend the [`Budget`]: the caller fails closed (a finding at admission
/// and in CI, the RuleSet's fail mode in Envoy), never a silent pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverBudget {
    pub text_bytes: usize,
    pub pattern_bytes: usize,
}

impl fmt::Display for OverBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "matching a {}-byte value against a {}-byte pattern exceeds meshguard's evaluation budget",
            self.text_bytes, self.pattern_bytes
        )
    }
}

/// At most `max` characters of `text`, with the size of what was cut: for messages that quote
/// user input (a 1 MB pattern or value must not become a 1 MB log line).
pub fn excerpt(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => std::borrow::Cow::Borrowed(text),
        Some((cut, _)) => std::borrow::Cow::Owned(format!("{}… ({} bytes)", &text[..cut], text.len())),
    }
}

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
    /// `a|b`, or `(?i)a|b` (ASCII case-insensitive, as in regex-lite): any word anywhere.
    AnyWord {
        words: Vec<String>,
        ignore_case: bool,
    },
    /// `^[class]{min,max}$` and its `+`, `*` and `{n}` forms: the whole text drawn from one ASCII class.
    ClassRun {
        /// Whether each byte value is in the class (only ASCII ones can be): one load per byte.
        class: Box<[bool; 256]>,
        min: usize,
        max: usize,
    },
    Regex(Regex),
}

const META: &[char] = &['.', '^', '$', '*', '+', '?', '(', ')', '[', ']', '{', '}', '|', '\\'];

impl Pattern {
    /// Compiles `source`; every pattern is also checked by the regex parser, so errors read the same
    /// whichever path it takes.
    pub fn new(source: &str) -> Result<Self, String> {
        if source.len() > MAX_PATTERN_BYTES {
            return Err(format!("the pattern is {} bytes; the limit is {MAX_PATTERN_BYTES}", source.len()));
        }
        let regex = Regex::new(source).map_err(|e| excerpt(&e.to_string(), 300).into_owned())?;
        let start = source.starts_with('^');
        let rest = source.strip_prefix('^').unwrap_or(source);
        let end = rest.ends_with('$') && !rest.ends_with("\\$");
        let body = if end { &rest[..rest.len() - 1] } else { rest };
        let kind = if body == ".*" {
            Kind::Always
        } else if !body.contains(META) {
            Kind::Literal { needle: body.to_string(), start, end }
        } else if let Some(kind) = any_word(source).or_else(|| (start && end).then(|| class_run(body)).flatten()) {
            kind
        } else {
            Kind::Regex(regex)
        };
        Ok(Pattern { source: source.to_string(), kind })
    }

    /// Whether `text` matches, or [`OverBudget`] when finding out would overspend `budget`.
    /// Fast paths are one pass over the text and cost nothing from it.
    pub fn is_match(&self, text: &str, budget: &mut Budget) -> Result<bool, OverBudget> {
        if let Kind::Regex(_) = self.kind {
            let cost = (self.source.len() as u64 + 1).saturating_mul(text.len() as u64 + 1);
            budget.left = budget
                .left
                .checked_sub(cost)
                .ok_or(OverBudget { text_bytes: text.len(), pattern_bytes: self.source.len() })?;
        }
        Ok(self.matches_unbounded(text))
    }

    fn matches_unbounded(&self, text: &str) -> bool {
        match &self.kind {
            Kind::Always => true,
            Kind::Literal { needle, start: true, end: true } => text == needle,
            Kind::Literal { needle, start: true, end: false } => text.starts_with(needle.as_str()),
            Kind::Literal { needle, start: false, end: true } => text.ends_with(needle.as_str()),
            Kind::Literal { needle, start: false, end: false } => text.contains(needle.as_str()),
            Kind::AnyWord { words, ignore_case: false } => words.iter().any(|w| text.contains(w.as_str())),
            Kind::AnyWord { words, ignore_case: true } => {
                let text = text.as_bytes();
                words.iter().any(|w| contains_ignore_ascii_case(text, w.as_bytes()))
            }
            Kind::ClassRun { class, min, max } => {
                (*min..=*max).contains(&text.len()) && text.bytes().all(|b| class[usize::from(b)])
            }
            Kind::Regex(r) => r.is_match(text),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

/// Whether `needle` occurs in `hay`, ASCII case aside. Each position costs one byte compare unless
/// it starts like the needle.
fn contains_ignore_ascii_case(hay: &[u8], needle: &[u8]) -> bool {
    let Some((first, rest)) = needle.split_first() else { return true };
    let first = first.to_ascii_lowercase();
    hay.windows(needle.len()).any(|at| at[0].to_ascii_lowercase() == first && at[1..].eq_ignore_ascii_case(rest))
}

/// `word|word...` with no anchors, optionally after `(?i)`.
fn any_word(source: &str) -> Option<Kind> {
    let (ignore_case, body) = match source.strip_prefix("(?i)") {
        Some(rest) => (true, rest),
        None => (false, source),
    };
    let words: Vec<&str> = body.split('|').collect();
    let plain = |w: &&str| !w.is_empty() && !w.contains(META) && (!ignore_case || w.is_ascii());
    if words.iter().all(plain) && (ignore_case || words.len() > 1) {
        Some(Kind::AnyWord { words: words.into_iter().map(String::from).collect(), ignore_case })
    } else {
        None
    }
}

/// `[class]` followed by nothing, `+`, `*`, `{n}`, `{n,}` or `{n,m}`; the class holds ASCII
/// characters and ranges only (no negation, escapes or nested classes).
fn class_run(body: &str) -> Option<Kind> {
    let inner_end = body.find(']')?;
    let inner = body.strip_prefix('[')?.get(..inner_end - 1)?;
    let quantifier = &body[inner_end + 1..];
    if inner.is_empty() || inner.starts_with('^') || inner.contains(['\\', '[']) || !inner.is_ascii() {
        return None;
    }
    let bytes = inner.as_bytes();
    let mut class = Box::new([false; 256]);
    let mut i = 0;
    while i < bytes.len() {
        let (lo, hi) = if i + 2 < bytes.len() && bytes[i + 1] == b'-' {
            i += 3;
            (bytes[i - 3], bytes[i - 1])
        } else {
            i += 1;
            (bytes[i - 1], bytes[i - 1])
        };
        if lo > hi {
            return None;
        }
        for b in lo..=hi {
            class[usize::from(b)] = true;
        }
    }
    let (min, max) = match quantifier {
        "" => (1, 1),
        "+" => (1, usize::MAX),
        "*" => (0, usize::MAX),
        q => {
            let counts = q.strip_prefix('{')?.strip_suffix('}')?;
            match counts.split_once(',') {
                None => {
                    let n = counts.parse().ok()?;
                    (n, n)
                }
                Some((lo, "")) => (lo.parse().ok()?, usize::MAX),
                Some((lo, hi)) => (lo.parse().ok()?, hi.parse().ok()?),
            }
        }
    };
    (min <= max).then_some(Kind::ClassRun { class, min, max })
}

#[cfg(test)]
mod tests {
    use super::{Budget, Pattern};

    #[test]
    fn literal_fast_paths_agree_with_the_regex() {
        let texts = [
            "",
            "Bearer abc",
            "xBearer",
            "abc",
            "sqlmap/1.0",
            "SQLMap nikto",
            "Mozilla NIKTO",
            "Mozilla/5.0 nikt",
            "nnikto",
            "sqlMAPx",
            "v1",
            "a$",
            "line",
            "3f2c9a1e-8d7b-4c61-9f0e-2a5b6c7d8e9f",
            "3f2c9a1e-8d7b-4c61-9f0e-2a5b6c7d8e9F",
            "3f2c9a1e-8d7b-4c61-9f0e-2a5b6c7d8e9",
            "é-ab",
            "-",
            "a-z",
            "0123456789",
        ];
        for src in [
            ".*",
            "^Bearer ",
            "abc$",
            "^abc$",
            "sqlmap",
            "^v[0-9]+$",
            "(?i)SQLMAP",
            "a\\$",
            "^$",
            "",
            "l.ne",
            "(?i)sqlmap|nikto",
            "sqlmap|nikto",
            "nikto|",
            "^a|b$",
            "(?i)é",
            "^[0-9a-f-]{36}$",
            "^[0-9a-f-]{2,4}$",
            "^[0-9a-f-]{3,}$",
            "^[a-z-]*$",
            "^[-a-z]+$",
            "^[0-9]$",
            "^[^0-9]+$",
            "^[a\\-z]+$",
            "[0-9]+",
            "^[z-a]+$",
        ] {
            let Ok(r) = regex_lite::Regex::new(src) else {
                assert!(Pattern::new(src).is_err(), "{src:?} is rejected like regex-lite rejects it");
                continue;
            };
            let p = Pattern::new(src).unwrap();
            for t in texts {
                assert_eq!(p.is_match(t, &mut Budget::default()), Ok(r.is_match(t)), "pattern {src:?} on {t:?}");
            }
        }
        assert!(Pattern::new("(unclosed").is_err());
        for (src, fast) in
            [("(?i)sqlmap|nikto", true), ("^[0-9a-f-]{36}$", true), ("^[^0-9]+$", false), ("^a|b$", false)]
        {
            let p = Pattern::new(src).unwrap();
            assert_eq!(!matches!(p.kind, super::Kind::Regex(_)), fast, "{src:?} takes the fast path: {fast}");
        }
    }

    #[test]
    fn patterns_and_matches_are_bounded() {
        let huge = "a".repeat(super::MAX_PATTERN_BYTES + 1);
        let err = Pattern::new(&huge).unwrap_err();
        assert!(err.contains("limit is 16384") && err.len() < 100, "{err}");
        // A costly regex on a big value fails closed instead of running for minutes.
        let p = Pattern::new("^(a|b)*c(d|e)+$").unwrap();
        let big = "ab".repeat(1 << 20);
        let over = p.is_match(&big, &mut Budget::default()).unwrap_err();
        assert_eq!(over.text_bytes, big.len());
        assert_eq!(p.is_match("abcd", &mut Budget::default()), Ok(true));
        // The budget is shared by every match of one check: many mid-sized values run out too.
        let mut budget = Budget::default();
        let mid = "ab".repeat(1 << 15);
        let results: Vec<_> = (0..20).map(|_| p.is_match(&mid, &mut budget)).collect();
        assert!(results[0].is_ok() && results[19].is_err(), "{results:?}");
        // Fast paths cost one pass over the text and are never refused.
        assert_eq!(Pattern::new("^abc").unwrap().is_match(&big, &mut Budget::default()), Ok(false));
        // Error messages quote at most a slice of what they were given.
        let bad = format!("({}", "x".repeat(5000));
        let err = Pattern::new(&bad).unwrap_err();
        assert!(err.len() < 400, "{}", err.len());
        assert_eq!(super::excerpt("héllo", 2), "hé… (6 bytes)");
        assert_eq!(super::excerpt("hi", 2), "hi");
    }
}
