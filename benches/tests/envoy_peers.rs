//! The Envoy-native peers in the load comparison (RBAC + local_ratelimit, and Lua) decide the
//! benchmark's rules like the meshguard filter does, in a real Envoy, before their costs are
//! compared: the benchmark request is allowed by all three and each rule's violation is denied
//! by all three (Lua with meshguard's status too; RBAC always answers 403).

use meshguard_benches::peers::envoy::{lua, rbac};
use meshguard_benches::{typical_headers, HTTP_RULES};
use meshguard_tests::envoy::{request, Envoy, Filter, Http, Options};

/// Headers a case changes: `None` removes the header.
type HeaderChanges = Vec<(&'static str, Option<&'static str>)>;

/// (what it violates, method, path, headers changed)
fn cases() -> Vec<(&'static str, &'static str, &'static str, HeaderChanges)> {
    vec![
        ("nothing", "GET", "/api/orders/42?expand=items", vec![]),
        ("tenant (missing)", "GET", "/api/orders", vec![("x-tenant", None)]),
        ("tenant (unknown)", "GET", "/api/orders", vec![("x-tenant", Some("evil"))]),
        ("request-id", "GET", "/api/orders", vec![("x-request-id", Some("not-a-uuid"))]),
        ("auth", "GET", "/api/orders", vec![("authorization", Some("Basic Zm9vOmJhcg=="))]),
        ("no-debug", "GET", "/api/orders", vec![("x-debug", Some("1"))]),
        ("no-internal", "GET", "/api/orders", vec![("x-internal-override", Some("yes"))]),
        ("methods (/admin)", "POST", "/admin/users", vec![]),
        ("methods (/api)", "DELETE", "/api/orders/42", vec![]),
        ("grpc", "GET", "/api/orders", vec![("content-type", Some("application/grpc"))]),
        ("ua", "GET", "/api/orders", vec![("user-agent", Some("sqlmap/1.7"))]),
        ("trace (warn only)", "GET", "/api/orders", vec![("x-b3-traceid", None)]),
        ("other path, other method", "PATCH", "/healthz", vec![]),
    ]
}

fn headers(changes: &[(&str, Option<&str>)]) -> Vec<(String, String)> {
    let mut headers = typical_headers();
    for (name, value) in changes {
        headers.retain(|(k, _)| k != name);
        if let Some(v) = value {
            headers.push((name.to_string(), v.to_string()));
        }
    }
    headers
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Decision {
    status: u16,
    /// meshguard answers gRPC requests with a trailers-only gRPC status instead of an HTTP one.
    grpc_status: Option<u32>,
    warned: bool,
}

impl Decision {
    fn denied(&self) -> bool {
        self.status != 200 || self.grpc_status.is_some_and(|s| s != 0)
    }
}

fn decisions(filter: Filter) -> Vec<Decision> {
    let options = Options { concurrency: 1, generate_request_id: false, ..Options::new(filter) };
    let envoy = Envoy::start(&options).unwrap_or_else(|e| panic!("{e}"));
    cases()
        .iter()
        .map(|(_, method, path, changes)| {
            let r = request(&envoy.url(path), Http::H1, method, &headers(changes)).unwrap_or_else(|e| panic!("{e}"));
            Decision {
                status: r.status,
                grpc_status: r.header("grpc-status").and_then(|s| s.parse().ok()),
                warned: r.header("x-meshguard-warn").is_some(),
            }
        })
        .collect()
}

#[test]
fn rbac_and_lua_decide_like_meshguard_in_a_real_envoy() {
    let meshguard = decisions(Filter::Rules(HTTP_RULES.into()));
    let rbac = decisions(rbac().expect("rbac config"));
    let lua = decisions(lua());
    let names: Vec<_> = cases().iter().map(|c| c.0).collect();
    assert!(!meshguard[0].denied() && !meshguard[0].warned, "the benchmark request is allowed: {:?}", meshguard[0]);
    let allowed = meshguard.iter().filter(|d| !d.denied()).count();
    assert_eq!(allowed, 3, "{:?}", names.iter().zip(&meshguard).collect::<Vec<_>>());
    for (i, name) in names.iter().enumerate() {
        let (m, r, l) = (meshguard[i], rbac[i], lua[i]);
        assert_eq!(r.denied(), m.denied(), "{name}: rbac {r:?} vs meshguard {m:?}");
        assert_eq!((l.denied(), l.warned), (m.denied(), m.warned), "{name}: lua {l:?} vs meshguard {m:?}");
        if m.grpc_status.is_none() {
            assert_eq!(l.status, m.status, "{name}: lua answers with meshguard's status");
        }
        if m.denied() && m.grpc_status.is_none() {
            assert_eq!(r.status, 403, "{name}: RBAC denies with 403");
        }
    }
    assert!(meshguard[11].warned && lua[11].warned, "the trace rule warns");
}
