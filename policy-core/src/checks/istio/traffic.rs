//! Traffic configuration a tenant owns: where it is exported, which hosts it names, circuit breakers.

use super::*;
use crate::checks::{parse_params, Applies, CheckSpec, Compiled, ObjectCheck, ParamDoc, Target};
use crate::finding::Violation;
use crate::matching::any_glob;
use crate::object::{Input, Object};
use crate::path::FieldPath;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PlatformParams {
    #[serde(default = "istio_system")]
    platform_namespaces: Vec<String>,
}

struct ExportToOwnNamespace {
    p: PlatformParams,
}

pub static EXPORT_TO_OWN_NAMESPACE: CheckSpec = CheckSpec {
    id: "istio-export-to-own-namespace",
    target: Target::Kubernetes,
    applies_to: Applies::Kinds(&["VirtualService", "DestinationRule", "ServiceEntry"]),
    summary: crate::checks::doc(
        "A tenant's VirtualService, DestinationRule and ServiceEntry set `exportTo: [\".\"]` (or their own \
              namespace). Istio exports them to every namespace by default, so one tenant's traffic policy leaks into \
              all others. Objects in `platformNamespaces` are exempt.",
    ),
    params: &[ParamDoc {
        name: "platformNamespaces",
        ty: "list of globs",
        default: "[istio-system]",
        description: crate::checks::doc("Namespaces owned by the platform team."),
    }],
    example_params: crate::checks::doc("{}"),
    passing_example: crate::checks::doc(
        "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: shop}
spec:
  host: api
  exportTo: [\".\"]
",
    ),
    failing_example: crate::checks::doc(
        "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: shop}
spec:
  host: api
",
    ),
    fix: crate::checks::doc("Sets `exportTo: [\".\"]`."),
    fix_scope: &["/spec/exportTo"],
    compile: |params| Ok(Compiled::Object(Box::new(ExportToOwnNamespace { p: parse_params(params)? }))),
    native: crate::checks::Native::Vap(native_export_to),
};

impl ObjectCheck for ExportToOwnNamespace {
    fn review(&self, obj: &Object<'_>, _: &Input<'_>, out: &mut Vec<Violation>) {
        if !is_istio(obj, &["VirtualService", "DestinationRule", "ServiceEntry"])
            || any_glob(&self.p.platform_namespaces, obj.namespace)
        {
            return;
        }
        let spec_path = FieldPath::root().key("spec");
        let fix = || {
            Some(crate::fix::Fix::set(
                obj.value,
                &spec_path.key("exportTo"),
                serde_json::json!(["."]),
                "export it to its own namespace only: `exportTo: [\".\"]`",
            ))
        };
        match obj.spec().and_then(|s| s.get("exportTo")).and_then(Value::as_array) {
            None => out.push(
                Violation::new(
                    spec_path.key("exportTo"),
                    format!(
                        "{} `{}` has no exportTo, so Istio exports it to every namespace; set `exportTo: [\".\"]`",
                        obj.kind, obj.name
                    ),
                )
                .with_fix(fix()),
            ),
            Some(list) if list.is_empty() => out.push(
                Violation::new(
                    spec_path.key("exportTo"),
                    format!(
                        "{} `{}` has an empty exportTo, which exports it to every namespace; set `exportTo: [\".\"]`",
                        obj.kind, obj.name
                    ),
                )
                .with_fix(fix()),
            ),
            Some(list) => {
                for (i, item) in list.iter().enumerate() {
                    let target = item.as_str().unwrap_or("");
                    if target != "." && target != obj.namespace {
                        out.push(Violation::new(
                            spec_path.key("exportTo").index(i),
                            format!("{} `{}` is exported to `{target}`; tenants may export only to their own namespace (\".\")", obj.kind, obj.name),
                        ).with_fix(fix()));
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HostParams {
    #[serde(default = "istio_system")]
    platform_namespaces: Vec<String>,
    #[serde(default = "cluster_local")]
    cluster_domain: String,
    #[serde(default = "yes")]
    allow_external_hosts: bool,
}

fn cluster_local() -> String {
    "cluster.local".into()
}

struct HostInOwnNamespace {
    p: HostParams,
}

pub static HOST_IN_OWN_NAMESPACE: CheckSpec = CheckSpec {
    id: "istio-host-in-own-namespace",
    target: Target::Kubernetes,
    applies_to: Applies::Kinds(&["VirtualService", "DestinationRule"]),
    summary: crate::checks::doc("A tenant's VirtualService and DestinationRule hosts are short names or `<name>.<own-namespace>.svc.<clusterDomain>` \
              (a `*` name allowed there): no bare `*`, no wildcard domains, no other namespace's services. \
              Otherwise a tenant rewrites routing for traffic it does not own."),
    params: &[
        ParamDoc { name: "platformNamespaces", ty: "list of globs", default: "[istio-system]", description: crate::checks::doc("Namespaces exempt from the check.") },
        ParamDoc { name: "clusterDomain", ty: "string", default: "cluster.local", description: crate::checks::doc("The cluster's DNS domain.") },
        ParamDoc {
            name: "allowExternalHosts",
            ty: "bool",
            default: "true",
            description: crate::checks::doc("Whether non-cluster FQDNs (e.g. `api.example.com` behind a ServiceEntry) are allowed."),
        },
    ],
    example_params: crate::checks::doc("{}"),
    passing_example: crate::checks::doc("\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: shop}
spec:
  hosts: [api, api.shop.svc.cluster.local]
"),
    failing_example: crate::checks::doc("\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: shop}
spec:
  hosts: [payments.pay.svc.cluster.local]
"),
    fix: crate::checks::doc("None: the host names another team's service; whether to route elsewhere is the team's to say."),
    fix_scope: &[],
    compile: |params| Ok(Compiled::Object(Box::new(HostInOwnNamespace { p: parse_params(params)? }))),
    native: crate::checks::Native::Vap(native_host_in_own_namespace),
};

impl HostInOwnNamespace {
    fn problem(&self, host: &str, own: &str) -> Option<String> {
        if host == "*" {
            return Some("`*` matches every service in the mesh".into());
        }
        let labels: Vec<&str> = host.split('.').collect();
        let svc_at = labels.iter().position(|l| *l == "svc");
        let in_cluster =
            svc_at.is_some_and(|i| i == 2 && (labels.len() == 3 || labels[3..].join(".") == self.p.cluster_domain));
        if in_cluster {
            let ns = labels[1];
            return (ns != own).then(|| format!("`{host}` belongs to namespace `{ns}`"));
        }
        if labels.len() == 1 {
            return None;
        }
        if labels[0] == "*" || host.contains('*') {
            return Some(format!("wildcard host `{host}` can capture other tenants' traffic"));
        }
        if host.ends_with(&format!(".{}", self.p.cluster_domain)) {
            return Some(format!("`{host}` is a cluster host outside namespace `{own}`"));
        }
        (!self.p.allow_external_hosts).then(|| format!("external host `{host}` is not allowed for tenants"))
    }
}

impl ObjectCheck for HostInOwnNamespace {
    fn review(&self, obj: &Object<'_>, _: &Input<'_>, out: &mut Vec<Violation>) {
        if any_glob(&self.p.platform_namespaces, obj.namespace) {
            return;
        }
        let spec = FieldPath::root().key("spec");
        let hosts: Vec<(FieldPath, &str)> = if is_istio(obj, &["VirtualService"]) {
            let list = obj.spec().and_then(|s| s.get("hosts")).and_then(Value::as_array);
            list.into_iter()
                .flatten()
                .enumerate()
                .filter_map(|(i, h)| Some((spec.key("hosts").index(i), h.as_str()?)))
                .collect()
        } else if is_istio(obj, &["DestinationRule"]) {
            obj.spec()
                .and_then(|s| s.get("host"))
                .and_then(Value::as_str)
                .map(|h| (spec.key("host"), h))
                .into_iter()
                .collect()
        } else {
            return;
        };
        for (path, host) in hosts {
            if let Some(why) = self.problem(host, obj.namespace) {
                out.push(Violation::new(
                    path,
                    format!(
                        "{} `{}`: {why}; use a short name or `<service>.{}.svc.{}`",
                        obj.kind, obj.name, obj.namespace, self.p.cluster_domain
                    ),
                ));
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CircuitBreakerParams {
    #[serde(default = "yes")]
    require_outlier_detection: bool,
    #[serde(default = "yes")]
    require_connection_pool: bool,
}

struct CircuitBreaker {
    p: CircuitBreakerParams,
}

pub static CIRCUIT_BREAKER: CheckSpec = CheckSpec {
    id: "istio-circuit-breaker",
    target: Target::Kubernetes,
    applies_to: Applies::Kinds(&["DestinationRule"]),
    summary: crate::checks::doc(
        "A DestinationRule's `trafficPolicy` sets `outlierDetection` and `connectionPool`, so one slow or failing \
              backend cannot take its callers down with it (cascading failures).",
    ),
    params: &[
        ParamDoc {
            name: "requireOutlierDetection",
            ty: "bool",
            default: "true",
            description: crate::checks::doc("Require `trafficPolicy.outlierDetection`."),
        },
        ParamDoc {
            name: "requireConnectionPool",
            ty: "bool",
            default: "true",
            description: crate::checks::doc("Require `trafficPolicy.connectionPool`."),
        },
    ],
    example_params: crate::checks::doc("{}"),
    passing_example: crate::checks::doc(
        "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: shop}
spec:
  host: api
  trafficPolicy:
    connectionPool: {http: {http2MaxRequests: 1000}}
    outlierDetection: {consecutive5xxErrors: 5, interval: 10s}
",
    ),
    failing_example: crate::checks::doc(
        "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: shop}
spec:
  host: api
",
    ),
    fix: crate::checks::doc("None: the limits depend on the service's capacity."),
    fix_scope: &[],
    compile: |params| Ok(Compiled::Object(Box::new(CircuitBreaker { p: parse_params(params)? }))),
    native: crate::checks::Native::Vap(native_circuit_breaker),
};

impl ObjectCheck for CircuitBreaker {
    fn review(&self, obj: &Object<'_>, _: &Input<'_>, out: &mut Vec<Violation>) {
        if !is_istio(obj, &["DestinationRule"]) {
            return;
        }
        let policy = obj.spec().and_then(|s| s.get("trafficPolicy"));
        let path = FieldPath::root().key("spec").key("trafficPolicy");
        let missing: Vec<&str> = [
            ("outlierDetection", self.p.require_outlier_detection),
            ("connectionPool", self.p.require_connection_pool),
        ]
        .into_iter()
        .filter(|(field, required)| *required && policy.and_then(|p| p.get(*field)).is_none())
        .map(|(f, _)| f)
        .collect();
        if !missing.is_empty() {
            out.push(Violation::new(
                path,
                format!("DestinationRule `{}` has no {} in trafficPolicy; without a circuit breaker one failing backend cascades to its callers", obj.name, missing.join(" and ")),
            ));
        }
    }
}

/// `istio-export-to-own-namespace` in CEL, for `meshguard rules export`.
fn native_export_to(params: &Value) -> Result<crate::checks::NativeForm, crate::checks::ParamError> {
    use crate::checks::native::{any_glob, is_istio, set_patch, NAMESPACE};
    use crate::checks::NativeValidation;
    let p: PlatformParams = parse_params(params)?;
    let kinds = is_istio(&["VirtualService", "DestinationRule", "ServiceEntry"]);
    let platform = any_glob(&p.platform_namespaces, NAMESPACE);
    let export_to = "object.?spec.?exportTo.orValue(null)";
    let passes = format!(
        "!{kinds} || {platform} || (type({export_to}) == list && {export_to}.size() > 0 && \
         {export_to}.all(t, t == '.' || t == {NAMESPACE}))"
    );
    let mutations = vec![crate::checks::NativeMutation::new(format!(
        "{passes} ? [] : {}",
        set_patch("object", "''", &["spec", "exportTo"], "['.']")
    ))];
    let validations = vec![NativeValidation::new(
        passes,
        format!(
            "cel.bind(who, object.kind + ' `' + object.metadata.name + '` ', type({export_to}) != list ? \
             who + 'has no exportTo, so Istio exports it to every namespace; set `exportTo: [\".\"]`' : \
             {export_to}.size() == 0 ? who + 'has an empty exportTo, which exports it to every namespace; set `exportTo: [\".\"]`' : \
             {export_to}.filter(t, !(t == '.' || t == {NAMESPACE})).map(t, who + 'is exported to `' + (type(t) == string ? t : '') + \
             '`; tenants may export only to their own namespace (\".\")').join('; '))"
        ),
        "spec.exportTo",
    )];
    Ok(crate::checks::NativeForm { validations, mutations, ..Default::default() })
}

/// `istio-host-in-own-namespace` in CEL, for `meshguard rules export`: the check's `problem`
/// as a predicate over one host `h`.
fn native_host_in_own_namespace(params: &Value) -> Result<crate::checks::NativeForm, crate::checks::ParamError> {
    use crate::checks::native::{any_glob, is_istio, lit, NAMESPACE};
    use crate::checks::NativeValidation;
    let p: HostParams = parse_params(params)?;
    let platform = any_glob(&p.platform_namespaces, NAMESPACE);
    let domain = lit(&p.cluster_domain);
    let l = "h.split('.')";
    let in_cluster = format!(
        "({l}.size() >= 3 && {l}[0] != 'svc' && {l}[1] != 'svc' && {l}[2] == 'svc' && \
         ({l}.size() == 3 || h == {l}[0] + '.' + {l}[1] + '.svc.' + {domain}))"
    );
    let external_ok = if p.allow_external_hosts { "false" } else { "true" };
    let problem = format!(
        "(h == '*' || ({in_cluster} ? {l}[1] != {NAMESPACE} : ({l}.size() > 1 && \
         ({l}[0] == '*' || h.contains('*') || h.endsWith('.' + {domain}) || {external_ok}))))"
    );
    // `problem`'s words for a host `h` it finds one in.
    let why = format!(
        "(h == '*' ? '`*` matches every service in the mesh' : \
         {in_cluster} ? '`' + h + '` belongs to namespace `' + {l}[1] + '`' : \
         {l}[0] == '*' || h.contains('*') ? 'wildcard host `' + h + '` can capture other tenants\\' traffic' : \
         h.endsWith('.' + {domain}) ? '`' + h + '` is a cluster host outside namespace `' + {NAMESPACE} + '`' : \
         'external host `' + h + '` is not allowed for tenants')"
    );
    let message = |hosts: &str| {
        format!(
            "{hosts}.filter(h, {problem}).map(h, object.kind + ' `' + object.metadata.name + '`: ' + {why} + \
             '; use a short name or `<service>.' + {NAMESPACE} + '.svc.' + {domain} + '`').join('; ')"
        )
    };
    let hosts = "object.?spec.?hosts.orValue([]).filter(h, type(h) == string)";
    Ok(vec![
        NativeValidation::new(
            format!("!{} || {platform} || !{hosts}.exists(h, {problem})", is_istio(&["VirtualService"])),
            message(hosts),
            "spec.hosts",
        ),
        NativeValidation::new(
            format!(
                "!{} || {platform} || type(object.?spec.?host.orValue(null)) != string || \
                 [object.spec.host].all(h, !{problem})",
                is_istio(&["DestinationRule"])
            ),
            message("[object.spec.host]"),
            "spec.host",
        ),
    ]
    .into())
}

/// `istio-circuit-breaker` in CEL, for `meshguard rules export`.
fn native_circuit_breaker(params: &Value) -> Result<crate::checks::NativeForm, crate::checks::ParamError> {
    use crate::checks::native::{is_istio, list};
    use crate::checks::NativeValidation;
    let p: CircuitBreakerParams = parse_params(params)?;
    let required: Vec<String> =
        [("outlierDetection", p.require_outlier_detection), ("connectionPool", p.require_connection_pool)]
            .into_iter()
            .filter(|(_, r)| *r)
            .map(|(f, _)| f.to_string())
            .collect();
    if required.is_empty() {
        return Ok(Default::default());
    }
    let fields = list(&required);
    let policy = "object.?spec.?trafficPolicy.orValue({})";
    Ok(vec![NativeValidation::new(
        format!("!{} || {fields}.all(f, type({policy}) == map && f in {policy})", is_istio(&["DestinationRule"])),
        format!(
            "'DestinationRule `' + object.metadata.name + '` has no ' + {fields}.filter(f, !(type({policy}) == map && f in {policy})).join(' and ') + \
             ' in trafficPolicy; without a circuit breaker one failing backend cascades to its callers'"
        ),
        "spec.trafficPolicy",
    )]
    .into())
}
