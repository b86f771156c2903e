//! Envoy's view of a request and response, to and from policy-core's model.

use policy_core::{Action, Denial, Request};

/// Response header naming the `warn` rules a request tripped.
pub const WARN_HEADER: &str = "x-meshguard-warn";

/// Builds the rule model from Envoy's header map: pseudo-headers become method, path and
/// authority; the rest are the headers rules see.
pub fn request_from_headers(mut headers: Vec<(String, String)>) -> Request {
    let mut req = Request::default();
    headers.retain_mut(|(name, value)| {
        let slot = match name.as_str() {
            ":method" => &mut req.method,
            ":path" => &mut req.path,
            ":authority" => &mut req.authority,
            _ => return !name.starts_with(':'),
        };
        *slot = std::mem::take(value);
        false
    });
    if req.authority.is_empty() {
        if let Some((_, host)) = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("host")) {
            req.authority = host.clone();
        }
    }
    req.headers = headers;
    req
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

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn pseudo_headers_become_request_fields() {
        let req = request_from_headers(h(&[
            (":method", "POST"),
            (":path", "/a?b"),
            (":authority", "api:80"),
            (":scheme", "http"),
            ("x-tenant", "shop"),
        ]));
        assert_eq!((req.method.as_str(), req.path.as_str(), req.authority.as_str()), ("POST", "/a?b", "api:80"));
        assert_eq!(req.headers, h(&[("x-tenant", "shop")]));
        let req = request_from_headers(h(&[(":method", "GET"), ("host", "legacy")]));
        assert_eq!(req.authority, "legacy");
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
    fn metric_names_carry_extractable_tags() {
        assert_eq!(
            rule_metric_name("tenant", Action::Deny),
            "meshguard_requests_total_rule=.=tenant;.;decision=.=deny;.;"
        );
    }
}
