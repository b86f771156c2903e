//! The registry of built-in checks. Each entry declares its id, params, docs and a passing and a
//! failing example; the engine, `meshguard rules`, the catalog in docs/checks.md and the example
//! tests all read this one table, so the docs cannot drift from what runs.

#[cfg(all(feature = "kubernetes", feature = "cel"))]
mod cel_rule;
#[cfg(feature = "kubernetes")]
mod generic;
pub(crate) mod http_rules;
#[cfg(feature = "kubernetes")]
mod istio;

use crate::finding::Violation;
use crate::http::{BucketStore, Clock, Request};
use crate::object::{Input, Object};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// What a check looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Kubernetes objects: CI, admission.
    Kubernetes,
    /// HTTP requests: the Envoy filter.
    Http,
}

#[derive(Debug)]
pub struct ParamDoc {
    pub name: &'static str,
    pub ty: &'static str,
    /// Rendered default, or `required`.
    pub default: &'static str,
    pub description: &'static str,
}

/// Which objects a check can flag whatever its params: what an admission webhook must be sent,
/// and what a host may skip without asking the engine (the answer, no findings, is the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applies {
    /// Any object its rule's `match` selects.
    Any,
    /// Objects of these kinds, in any API group.
    Kinds(&'static [&'static str]),
    /// Objects of any kind in an API group ending with this suffix (`istio.io`).
    GroupSuffix(&'static str),
}

impl Applies {
    pub fn covers(&self, group: &str, kind: &str) -> bool {
        match self {
            Applies::Any => true,
            Applies::Kinds(kinds) => kinds.contains(&kind),
            Applies::GroupSuffix(suffix) => group.ends_with(suffix),
        }
    }
}

/// One built-in check: everything the engine and the docs know about it.
pub struct CheckSpec {
    pub id: &'static str,
    /// The file that implements it, from the workspace root (empty without the `docs` feature):
    /// the catalog links each check to its code.
    pub source: &'static str,
    pub target: Target,
    pub applies_to: Applies,
    pub summary: &'static str,
    pub params: &'static [ParamDoc],
    /// Params the examples run with (YAML flow or JSON).
    pub example_params: &'static str,
    /// For Kubernetes checks a YAML stream of objects; for HTTP checks one request
    /// (`method`, `path`, `authority`, `headers`).
    pub passing_example: &'static str,
    pub failing_example: &'static str,
    pub compile: fn(&Value) -> Result<Compiled, ParamError>,
}

pub enum Compiled {
    Object(Box<dyn ObjectCheck>),
    Http(Box<dyn HttpCheck>),
}

/// A compiled Kubernetes check. `input` holds every object under review, for checks that compare
/// an object with its peers (a Service and the workloads it selects, two headless Services).
pub trait ObjectCheck: Send + Sync {
    fn review(&self, obj: &Object<'_>, input: &Input<'_>, out: &mut Vec<Violation>);
    /// Kinds of other objects the check compares an object with: peers in its namespace, or
    /// `Namespace` for its namespace's labels. In CI the repo holds them; at admission a host
    /// must fetch them from the cluster, or the verdict names the rule as reviewed without them.
    fn context_kinds(&self) -> Vec<String> {
        Vec::new()
    }
    /// Whether reviewing `obj` reads those other objects (a Service that is not headless has no
    /// headless peers to compare with).
    fn reads_context(&self, _obj: &Object<'_>) -> bool {
        true
    }
}

/// Per-request inputs an HTTP check may need besides the request itself.
pub struct HttpContext<'a> {
    pub rule_id: &'a str,
    /// Read only when a rule needs the time (a rate limit refilling its bucket).
    pub clock: &'a mut dyn Clock,
    pub buckets: &'a mut dyn BucketStore,
}

/// A compiled HTTP check: `Ok(Some(message))` when the request violates it.
pub trait HttpCheck: Send + Sync {
    fn evaluate(&self, req: &Request, ctx: &mut HttpContext<'_>) -> Result<Option<String>, String>;
    /// HTTP status sent on deny (a rule's `status` overrides it).
    fn default_status(&self) -> u16 {
        403
    }
}

/// A param that did not validate: `field` is relative to `params`.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamError {
    pub field: String,
    pub message: String,
}

impl ParamError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ParamError { field: field.into(), message: message.into() }
    }
}

/// Deserializes a check's params, naming the exact field that is wrong or unknown.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmptyParams {}

pub(crate) fn parse_params<T: DeserializeOwned>(params: &Value) -> Result<T, ParamError> {
    serde_path_to_error::deserialize(params).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { String::new() } else { field };
        ParamError::new(field, e.into_inner().to_string())
    })
}

/// Documentation text of the registry; empty in builds without the `docs` feature, where nobody
/// reads it and every byte of a wasm module counts.
pub(crate) const fn doc(text: &'static str) -> &'static str {
    if cfg!(feature = "docs") {
        text
    } else {
        ""
    }
}

pub(crate) fn compile_regex(field: &str, pattern: &str) -> Result<crate::pattern::Pattern, ParamError> {
    crate::pattern::Pattern::new(pattern)
        .map_err(|e| ParamError::new(field, format!("invalid regex `{}`: {e}", crate::pattern::excerpt(pattern, 80))))
}

static REGISTRY: &[&CheckSpec] = &[
    #[cfg(feature = "kubernetes")]
    &istio::PORT_NAME,
    #[cfg(feature = "kubernetes")]
    &istio::HEADLESS_PORT_CONFLICT,
    #[cfg(feature = "kubernetes")]
    &istio::SIDECAR_START_ORDER,
    #[cfg(feature = "kubernetes")]
    &istio::GRACEFUL_SHUTDOWN,
    #[cfg(feature = "kubernetes")]
    &istio::HTTP_DRAIN,
    #[cfg(feature = "kubernetes")]
    &istio::INJECTION_ROLLOUT,
    #[cfg(feature = "kubernetes")]
    &istio::EXPORT_TO_OWN_NAMESPACE,
    #[cfg(feature = "kubernetes")]
    &istio::HOST_IN_OWN_NAMESPACE,
    #[cfg(feature = "kubernetes")]
    &istio::PLATFORM_ONLY_KINDS,
    #[cfg(feature = "kubernetes")]
    &istio::SINGLE_DEFAULT_SIDECAR,
    #[cfg(feature = "kubernetes")]
    &istio::CIRCUIT_BREAKER,
    #[cfg(feature = "kubernetes")]
    &generic::REQUIRED_LABELS,
    #[cfg(feature = "kubernetes")]
    &generic::REQUIRED_ANNOTATIONS,
    #[cfg(feature = "kubernetes")]
    &generic::FIELD_PATTERN,
    #[cfg(feature = "kubernetes")]
    &generic::FIELD_RANGE,
    #[cfg(feature = "kubernetes")]
    &generic::FORBIDDEN_KINDS,
    #[cfg(all(feature = "kubernetes", feature = "cel"))]
    &cel_rule::CEL,
    &http_rules::REQUIRE_HEADER,
    &http_rules::DENY_HEADER,
    &http_rules::HEADER_LIMITS,
    &http_rules::ALLOWED_METHODS,
    &http_rules::TENANT_HEADER,
    &http_rules::GRPC_SHAPE,
    &http_rules::LOCAL_RATE_LIMIT,
];

/// Ids of the Kubernetes checks. A build without the `kubernetes` feature (the Envoy filter, where
/// only HTTP rules run) still recognises them, so one RuleSet file loads everywhere: such rules are
/// skipped there, and their params are validated by every host that runs them.
pub const KUBERNETES_CHECK_IDS: &[&str] = &[
    "istio-port-name",
    "istio-headless-port-conflict",
    "istio-sidecar-start-order",
    "istio-graceful-shutdown",
    "istio-http-drain",
    "istio-injection-rollout",
    "istio-export-to-own-namespace",
    "istio-host-in-own-namespace",
    "istio-platform-only-kinds",
    "istio-single-default-sidecar",
    "istio-circuit-breaker",
    "required-labels",
    "required-annotations",
    "field-pattern",
    "field-range",
    "forbidden-kinds",
    "cel",
];

/// Kubernetes checks that may read any part of a request: free field paths and CEL. Every other
/// Kubernetes check reads only an object's kind, `metadata` (not `managedFields`) and content,
/// never its `status`, the request's `userInfo`, `options` or `oldObject`, or a container's image,
/// resources, environment, mounts, probes or security context; with only those loaded, an
/// admission decode may skip these parts ([`crate::Policy::parse_admission`]). A rule
/// whose check is not in [`KUBERNETES_CHECK_IDS`] (a ValidatingAdmissionPolicy) reads anything too.
pub const READS_ANY_FIELD_CHECK_IDS: &[&str] = &["field-pattern", "field-range", "cel"];

/// Whether a rule of check `id` reads only object content (see [`READS_ANY_FIELD_CHECK_IDS`]).
pub fn reads_object_content_only(id: &str) -> bool {
    KUBERNETES_CHECK_IDS.contains(&id) && !READS_ANY_FIELD_CHECK_IDS.contains(&id)
}

/// Every built-in check, in catalog order.
pub fn registry() -> &'static [&'static CheckSpec] {
    REGISTRY
}

pub fn find(id: &str) -> Option<&'static CheckSpec> {
    REGISTRY.iter().copied().find(|c| c.id == id)
}
