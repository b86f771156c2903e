//! The plain HTTP request model the header rules decide on, and token-bucket arithmetic.
//!
//! Shared rate-limit state belongs to the host (Envoy shared data with compare-and-swap, a map
//! natively); policy-core only says how a bucket changes, through [`BucketStore`].

use serde::Deserialize;
use std::borrow::Cow;

/// One request as the rules see it. Header names are matched case-insensitively.
/// Fields borrow where the host lends its buffers (the Envoy filter decides on the header map
/// the proxy wrote into guest memory, without a copy per header) and own otherwise.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Request<'a> {
    pub method: Cow<'a, str>,
    pub path: Cow<'a, str>,
    #[serde(default)]
    pub authority: Cow<'a, str>,
    #[serde(default, deserialize_with = "headers_from_map_or_pairs")]
    pub headers: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl<'a> Request<'a> {
    /// A request from owned parts (tests, replays, native callers).
    pub fn owned(method: &str, path: &str, authority: &str, headers: &[(&str, &str)]) -> Request<'static> {
        Request {
            method: Cow::Owned(method.to_string()),
            path: Cow::Owned(path.to_string()),
            authority: Cow::Owned(authority.to_string()),
            headers: headers.iter().map(|(k, v)| (Cow::Owned(k.to_string()), Cow::Owned(v.to_string()))).collect(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        // Length first: most names differ in length, and that test inlines where the
        // case-insensitive compare (a call in size-optimized wasm) does not.
        self.headers
            .iter()
            .find(|(k, _)| k.len() == name.len() && k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }

    /// The path without its query string.
    pub fn path_only(&self) -> &str {
        self.path.split_once('?').map_or(self.path.as_ref(), |(p, _)| p)
    }

    pub fn is_grpc(&self) -> bool {
        self.header("content-type").is_some_and(|ct| ct.starts_with("application/grpc"))
    }
}

type HeaderPairs<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

fn headers_from_map_or_pairs<'de, 'a, D: serde::Deserializer<'de>>(d: D) -> Result<HeaderPairs<'a>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Headers {
        Map(std::collections::BTreeMap<String, String>),
        Pairs(Vec<(String, String)>),
    }
    let pairs: Vec<(String, String)> = match Headers::deserialize(d)? {
        Headers::Map(m) => m.into_iter().collect(),
        Headers::Pairs(p) => p,
    };
    Ok(pairs.into_iter().map(|(k, v)| (Cow::Owned(k), Cow::Owned(v))).collect())
}

/// Envoy local_ratelimit's token bucket: `maxTokens`, refilled by `tokensPerFill` every `fillInterval`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    pub max_tokens: u32,
    pub tokens_per_fill: u32,
    pub fill_interval_ms: u64,
}

/// A bucket's state as hosts store it: 12 bytes, see [`BucketState::to_bytes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketState {
    pub tokens: u32,
    /// Time of the last whole refill step; refills are computed from elapsed time, not by a tick.
    pub last_fill_ms: u64,
}

impl BucketState {
    pub fn to_bytes(self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&self.tokens.to_le_bytes());
        b[4..].copy_from_slice(&self.last_fill_ms.to_le_bytes());
        b
    }

    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let tokens = u32::from_le_bytes(b.get(..4)?.try_into().ok()?);
        let last_fill_ms = u64::from_le_bytes(b.get(4..12)?.try_into().ok()?);
        Some(BucketState { tokens, last_fill_ms })
    }
}

impl TokenBucket {
    /// Takes one token at `now_ms`: the new state and whether the request may pass.
    pub fn take(&self, state: Option<BucketState>, now_ms: u64) -> (BucketState, bool) {
        let mut s = state.unwrap_or(BucketState { tokens: self.max_tokens, last_fill_ms: now_ms });
        if now_ms > s.last_fill_ms && self.fill_interval_ms > 0 {
            let steps = (now_ms - s.last_fill_ms) / self.fill_interval_ms;
            if steps > 0 {
                let added = steps.saturating_mul(u64::from(self.tokens_per_fill));
                s.tokens = (u64::from(s.tokens).saturating_add(added)).min(u64::from(self.max_tokens)) as u32;
                s.last_fill_ms += steps * self.fill_interval_ms;
            }
        }
        if s.tokens > 0 {
            s.tokens -= 1;
            (s, true)
        } else {
            (s, false)
        }
    }
}

/// The host's shared bucket storage. `update` must apply `step` atomically per key (retrying on a
/// compare-and-swap conflict, say) and return the `bool` the accepted step produced.
pub trait BucketStore {
    fn update(
        &mut self,
        key: &str,
        step: &mut dyn FnMut(Option<BucketState>) -> (BucketState, bool),
    ) -> Result<bool, String>;
}

/// Buckets in a plain map, for native hosts and tests.
#[derive(Default, Debug)]
pub struct MemoryBuckets(std::collections::HashMap<String, BucketState>);

impl BucketStore for MemoryBuckets {
    fn update(
        &mut self,
        key: &str,
        step: &mut dyn FnMut(Option<BucketState>) -> (BucketState, bool),
    ) -> Result<bool, String> {
        let (next, allowed) = step(self.0.get(key).copied());
        self.0.insert(key.to_string(), next);
        Ok(allowed)
    }
}

/// Parses an Envoy-style duration (`500ms`, `1s`, `2m`, `1h`) into milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("`{text}` is not a duration like `500ms`, `1s`, `1m`"))?;
    let scale = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("`{text}` has no unit: use ms, s, m or h")),
    };
    // A wrapped product would turn a huge interval into a tiny one: a far looser rate limit.
    n.checked_mul(scale)
        .filter(|ms| *ms <= MAX_DURATION_MS)
        .ok_or_else(|| format!("`{text}` is longer than the largest duration meshguard takes (365 days)"))
}

/// The longest duration a RuleSet may name: a year; longer is a typo, not a rate limit.
pub const MAX_DURATION_MS: u64 = 365 * 24 * 3_600_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_from_elapsed_time() {
        let b = TokenBucket { max_tokens: 2, tokens_per_fill: 1, fill_interval_ms: 1000 };
        let (s, ok) = b.take(None, 10_000);
        assert!(ok);
        let (s, ok) = b.take(Some(s), 10_100);
        assert!(ok && s.tokens == 0);
        let (s, ok) = b.take(Some(s), 10_900);
        assert!(!ok, "no refill before one interval");
        let (s, ok) = b.take(Some(s), 11_000);
        assert!(ok && s.tokens == 0 && s.last_fill_ms == 11_000);
        let (s, _) = b.take(Some(s), 99_000);
        assert_eq!(s.tokens, 1, "refill is capped at maxTokens");
        assert_eq!(BucketState::from_bytes(&s.to_bytes()), Some(s));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("1s"), Ok(1000));
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert!(parse_duration_ms("2305843009213693953s").unwrap_err().contains("365 days"), "no wrap to 1s");
        assert!(parse_duration_ms("18446744073709551616ms").is_err(), "beyond u64");
        assert_eq!(parse_duration_ms("8760h"), Ok(MAX_DURATION_MS));
        assert!(parse_duration_ms("10").is_err());
        assert!(parse_duration_ms("s").is_err());
    }

    #[test]
    fn request_helpers() {
        let r = Request {
            method: "POST".into(),
            path: "/a?b=c".into(),
            authority: "x".into(),
            headers: vec![("Content-Type".into(), "application/grpc+proto".into())],
        };
        assert_eq!(r.path_only(), "/a");
        assert!(r.is_grpc());
    }
}
