//! Envoy's view of a request and response, to and from policy-core's model: one translation for
//! both Envoy shells (the proxy-wasm filter and the dynamic module), so they cannot drift.

use policy_core::{Action, Denial, HttpDecision, Policy, Request};
use std::borrow::Cow;

/// Response header naming the `warn` rules a request tripped.
pub const WARN_HEADER: &str = "x-meshguard-warn";

/// Builds the rule model from the header map exactly as proxy-wasm hosts serialize it (a count,
/// then the key and value lengths of each pair, then each key and value NUL-terminated),
/// borrowing every name and value from `bytes`: one request costs no allocation per header.
/// Pseudo-headers become method, path and authority; the rest are the headers rules see.
/// Bytes that are not UTF-8 (HTTP allows obs-text) are replaced rather than trapping, which is
/// what the SDK's own `get_map` would do.
pub fn request_from_map(bytes: &[u8]) -> Result<Request<'_>, String> {
    if bytes.is_empty() {
        return Ok(Request::default());
    }
    let u32_at = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let Some(count) = u32_at(0) else { return Err(truncated(bytes)) };
    let mut at = match count.checked_mul(8).and_then(|n| n.checked_add(4)) {
        Some(at) if at <= bytes.len() => at,
        _ => return Err(truncated(bytes)),
    };
    // Names and values follow the length table, each ended by a NUL. One UTF-8 check of that
    // whole region (headers are ASCII as a rule) stands for a check per piece: a piece borrowed
    // from it is a slice at char boundaries, which `str::get` confirms in O(1).
    let strings = Strings { at, text: bytes.get(at..).and_then(|region| std::str::from_utf8(region).ok()) };
    let mut req = RequestBuilder::with_capacity(count);
    for n in 0..count {
        let (Some(key_len), Some(value_len)) = (u32_at(4 + n * 8), u32_at(8 + n * 8)) else {
            return Err(truncated(bytes));
        };
        let (key_at, value_at) = (at, at + key_len + 1);
        let (Some(key), Some(value)) = (bytes.get(key_at..key_at + key_len), bytes.get(value_at..value_at + value_len))
        else {
            return Err(truncated(bytes));
        };
        at += key_len + value_len + 2;
        req.push(strings.piece(key_at, key), strings.piece(value_at, value));
    }
    Ok(req.finish())
}

/// Builds the rule model from the headers the rules read ([`policy_core::HeadersRead::Named`])
/// and the pseudo-headers, each fetched through `read`: a host's by-name lookup, answering the
/// first value of a repeated header as Envoy's do, so the rules decide as on the whole map.
/// `host` is fetched only when `:authority` is missing (and it is not among `names`).
pub fn request_from_named<'a, E>(
    names: &'a [String],
    mut read: impl FnMut(&str) -> Result<Option<Cow<'a, str>>, E>,
) -> Result<Request<'a>, E> {
    let mut req = RequestBuilder::with_capacity(names.len());
    for name in [":method", ":path", ":authority"].into_iter().chain(names.iter().map(String::as_str)) {
        if let Some(value) = read(name)? {
            req.push(Cow::Borrowed(name), value);
        }
    }
    if req.req.authority.is_empty() && req.host.is_none() {
        req.host = read("host")?;
    }
    Ok(req.finish())
}

/// Builds the rule model from Envoy's header pairs in order, however a host hands them over.
/// Pseudo-headers become method, path and authority (`host` when there is no `:authority`); the
/// rest are the headers rules see.
pub struct RequestBuilder<'a> {
    req: Request<'a>,
    host: Option<Cow<'a, str>>,
}

impl<'a> RequestBuilder<'a> {
    pub fn with_capacity(headers: usize) -> Self {
        RequestBuilder { req: Request { headers: Vec::with_capacity(headers), ..Request::default() }, host: None }
    }

    pub fn push(&mut self, key: Cow<'a, str>, value: Cow<'a, str>) {
        if key.starts_with(':') {
            match key.as_ref() {
                ":method" => self.req.method = value,
                ":path" => self.req.path = value,
                ":authority" => self.req.authority = value,
                _ => {}
            }
            return;
        }
        if key.len() == 4 && key.eq_ignore_ascii_case("host") {
            self.host = Some(value.clone());
        }
        self.req.headers.push((key, value));
    }

    pub fn finish(mut self) -> Request<'a> {
        if self.req.authority.is_empty() {
            if let Some(host) = self.host {
                self.req.authority = host;
            }
        }
        self.req
    }
}

fn truncated(bytes: &[u8]) -> String {
    format!("header map of {} bytes is truncated", bytes.len())
}

/// The strings region of a header map, checked as UTF-8 once (`text`: `None` when it is not).
struct Strings<'a> {
    at: usize,
    text: Option<&'a str>,
}

impl<'a> Strings<'a> {
    /// `raw`, found at `offset` of the map, borrowed from the checked region, or replaced when
    /// the region held bytes that are not UTF-8.
    fn piece(&self, offset: usize, raw: &'a [u8]) -> Cow<'a, str> {
        let start = offset - self.at;
        match self.text.and_then(|t| t.get(start..start + raw.len())) {
            Some(s) => Cow::Borrowed(s),
            None => text(raw),
        }
    }
}

/// Borrowed when it is UTF-8 (the usual case, checked on the fast path), replaced otherwise:
/// HTTP allows obs-text, and a filter must not trap on it.
pub fn text(bytes: &[u8]) -> Cow<'_, str> {
    // Header names and values are ASCII as a rule, and `is_ascii` checks a word at a time without
    // `from_utf8`'s per-call setup: a quarter of the dynamic module's own cost per request went to
    // `from_utf8` on two dozen short pieces (callgrind).
    if bytes.is_ascii() {
        // SAFETY: ASCII is UTF-8.
        return Cow::Borrowed(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// [`text`] for bytes the host handed over as an owned buffer: kept as they are when UTF-8.
pub fn owned_text(bytes: Vec<u8>) -> Cow<'static, str> {
    match String::from_utf8(bytes) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

/// A local reply Envoy sends instead of forwarding the request.
#[derive(Debug, PartialEq)]
pub enum LocalReply {
    /// Plain HTTP: the rule's status and a small JSON body `{"rule", "message"}`.
    Http { status: u32, headers: Vec<(&'static str, String)>, body: Vec<u8> },
    /// gRPC clients: Envoy turns this into a trailers-only response (HTTP 200, `grpc-status`,
    /// `grpc-message`) so they see the right status code.
    Grpc { status: u8, message: String },
}

pub fn deny_reply(denial: &Denial, grpc: bool) -> LocalReply {
    if grpc {
        return LocalReply::Grpc {
            status: denial.grpc_status,
            message: format!("{}: {}", denial.rule, denial.message),
        };
    }
    let body = format!("{{\"rule\":{},\"message\":{}}}", json_string(&denial.rule), json_string(&denial.message));
    LocalReply::Http {
        status: u32::from(denial.status),
        headers: vec![("content-type", "application/json".into()), ("x-meshguard-rule", denial.rule.clone())],
        body: body.into_bytes(),
    }
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

/// `grpc-message` as Envoy writes it for a gRPC local reply: percent-encoded outside printable
/// ASCII, and `%` itself (the gRPC spec's encoding).
pub fn grpc_message_header(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The headers of a trailers-only gRPC response (HTTP 200, the status in `grpc-status`), as
/// Envoy sends for a gRPC local reply: for hosts that send response headers themselves.
pub fn grpc_trailers_only(status: u8, message: &str) -> [(&'static str, String); 4] {
    [
        (":status", "200".to_string()),
        ("content-type", "application/grpc".to_string()),
        ("grpc-status", status.to_string()),
        ("grpc-message", grpc_message_header(message)),
    ]
}

/// The reply when evaluation itself failed and the filter fails closed (gRPC: UNAVAILABLE).
pub fn error_reply(grpc: bool) -> LocalReply {
    let denial = Denial {
        rule: "meshguard-error".into(),
        message: "the request could not be evaluated and meshguard is configured to fail closed".into(),
        status: 503,
        grpc_status: 14,
    };
    deny_reply(&denial, grpc)
}

/// What an Envoy shell does with a decision besides counting it: the `x-meshguard-warn` value for
/// the response, and the local reply when a rule denies.
#[derive(Debug, PartialEq)]
pub struct Verdict {
    pub warn: Option<String>,
    pub reply: Option<LocalReply>,
}

pub fn verdict(policy: &Policy, decision: &HttpDecision, grpc: bool) -> Verdict {
    let warned: Vec<&str> = decision
        .fired
        .iter()
        .filter(|(_, action)| *action == Action::Warn)
        .filter_map(|(index, _)| policy.http_rule(*index).map(|rule| rule.id.as_str()))
        .collect();
    Verdict {
        warn: (!warned.is_empty()).then(|| warned.join(",")),
        reply: decision.denied.as_ref().map(|denial| deny_reply(denial, grpc)),
    }
}

/// The line an Envoy shell logs when its configuration loads.
pub fn loaded_message(policy: &Policy) -> String {
    let ignored = policy.skipped_rules() + policy.rules().count() - policy.http_rules().count();
    format!(
        "RuleSet `{}` loaded: {} HTTP rules enforced, {ignored} Kubernetes rules ignored here, failOpen={}",
        policy.name(),
        policy.http_rules().count(),
        policy.fail_open()
    )
}

/// Counter name per rule and decision, with tags in the `name=.=value;.;` form that Envoy's
/// `stats_tags` (and Istio's `extraStatTags`) extract into Prometheus labels:
/// `meshguard_requests_total{rule="...",decision="deny"}` with the examples' bootstrap.
pub fn rule_metric_name(rule: &str, action: Action) -> String {
    format!("meshguard_requests_total_rule=.={rule};.;decision=.={};.;", action.as_str())
}

/// Counter name for requests by overall outcome: `allow`, `deny`, `error`.
pub fn outcome_metric_name(outcome: &str) -> String {
    format!("meshguard_requests_total_rule=.=all;.;decision=.={outcome};.;")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The proxy-wasm header map encoding, as Envoy (and host-runner) write it.
    fn serialize(pairs: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (k, v) in pairs {
            out.extend((k.len() as u32).to_le_bytes());
            out.extend((v.len() as u32).to_le_bytes());
        }
        for (k, v) in pairs {
            out.extend(k.as_bytes());
            out.push(0);
            out.extend(*v);
            out.push(0);
        }
        out
    }

    #[test]
    fn pseudo_headers_become_request_fields() {
        let bytes = serialize(&[
            (":method", b"POST"),
            (":path", b"/a?b"),
            (":authority", b"api:80"),
            (":scheme", b"http"),
            ("x-tenant", b"shop"),
            ("x-empty", b""),
        ]);
        let req = request_from_map(&bytes).unwrap();
        assert_eq!((req.method.as_ref(), req.path.as_ref(), req.authority.as_ref()), ("POST", "/a?b", "api:80"));
        let headers: Vec<(&str, &str)> = req.headers.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
        assert_eq!(headers, [("x-tenant", "shop"), ("x-empty", "")]);
        assert!(req.headers.iter().all(|(k, v)| matches!((k, v), (Cow::Borrowed(_), Cow::Borrowed(_)))), "no copies");
        let bytes = serialize(&[(":method", b"GET"), ("host", b"legacy")]);
        assert_eq!(request_from_map(&bytes).unwrap().authority, "legacy");
        assert_eq!(request_from_map(&[]).unwrap(), Request::default());
    }

    #[test]
    fn malformed_maps_are_errors_and_odd_bytes_are_replaced() {
        let bytes = serialize(&[(":method", b"GET"), ("x-tenant", b"shop")]);
        for cut in [2, 10, bytes.len() - 3] {
            assert!(request_from_map(&bytes[..cut]).unwrap_err().contains("truncated"), "cut at {cut}");
        }
        assert!(request_from_map(&[0xff, 0xff, 0xff, 0xff]).is_err(), "a huge count is an error, not an overflow");
        let bytes = serialize(&[("x-name", b"caf\xe9"), ("x-ok", b"fine")]);
        let req = request_from_map(&bytes).unwrap();
        assert_eq!(req.header("x-name"), Some("caf\u{fffd}"));
        assert!(matches!(&req.headers[1].1, Cow::Borrowed("fine")), "the valid pieces are still borrowed");
    }

    #[test]
    fn denials_become_json_or_grpc_trailers_only() {
        let d =
            Denial { rule: "tenant".into(), message: "tenant `x` is not allowed".into(), status: 403, grpc_status: 7 };
        let LocalReply::Http { status, body, headers } = deny_reply(&d, false) else { panic!("expected HTTP") };
        assert_eq!(status, 403);
        assert!(headers.contains(&("content-type", "application/json".into())));
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body, serde_json::json!({"rule": "tenant", "message": "tenant `x` is not allowed"}));
        assert_eq!(
            deny_reply(&d, true),
            LocalReply::Grpc { status: 7, message: "tenant: tenant `x` is not allowed".into() }
        );
        assert!(matches!(error_reply(false), LocalReply::Http { status: 503, .. }));
        assert!(matches!(error_reply(true), LocalReply::Grpc { status: 14, .. }));
    }

    #[test]
    fn pairs_build_the_same_request_as_the_map() {
        let pairs: [(&str, &[u8]); 4] =
            [(":method", b"GET"), (":path", b"/x"), ("host", b"legacy"), ("x-tenant", b"caf\xe9")];
        let map = serialize(&pairs);
        let from_map = request_from_map(&map).unwrap();
        let mut builder = RequestBuilder::with_capacity(pairs.len());
        for (k, v) in pairs {
            builder.push(text(k.as_bytes()), text(v));
        }
        assert_eq!(builder.finish(), from_map);
        assert_eq!(from_map.authority, "legacy");
    }

    #[test]
    fn grpc_messages_are_percent_encoded_as_envoy_does() {
        assert_eq!(grpc_message_header("tenant: `x` 100% caf\u{e9}\n"), "tenant: `x` 100%25 caf%C3%A9%0A");
        let headers = grpc_trailers_only(8, "rate");
        assert_eq!(headers[2], ("grpc-status", "8".to_string()));
    }

    #[test]
    fn metric_names_carry_extractable_tags() {
        assert_eq!(
            rule_metric_name("tenant", Action::Deny),
            "meshguard_requests_total_rule=.=tenant;.;decision=.=deny;.;"
        );
    }
}
