//! The registry of built-in checks. Each entry declares its id, params, docs and a passing and a
//! failing example; the engine, `meshguard rules`, the catalog in docs/checks.md and the example
//! tests all read this one table, so the docs cannot drift from what runs.

#[cfg(all(feature = "kubernetes", feature = "cel"))]
mod cel_rule;
// The Kubernetes checks compile in every build, so that their ids are known where they do not
// run (the Envoy filter recognises and skips their rules); only builds with the `kubernetes`
// feature put them in the registry, and the others leave their code out of the binary.
#[cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
mod generic;
pub(crate) mod http_rules;
#[cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
mod istio;
pub(crate) mod native;

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
    /// What `meshguard fix` does about a finding, or why it does nothing (the catalog prints it).
    pub fix: &'static str,
    /// Where its fixes may change an object: JSON Pointers where `*` stands for one segment and a
    /// leading `**` for any path before the rest; a change at or under one of them is in scope.
    /// Every fix is held to it ([`crate::fix::changes_within`]): one that strays is dropped.
    pub fix_scope: &'static [&'static str],
    pub compile: fn(&Value) -> Result<Compiled, ParamError>,
    /// How the check runs without meshguard, as a ValidatingAdmissionPolicy the API server
    /// evaluates itself (`meshguard rules export --to vap`), or why it cannot.
    pub native: Native,
}

/// A check's native form: `meshguard rules export` reads it, and the parity test holds its
/// decisions to the check's own over the corpus.
#[derive(Clone, Copy)]
pub enum Native {
    /// The check's decisions in CEL, built from a rule's params.
    Vap(fn(&Value) -> Result<NativeForm, ParamError>),
    /// It reads more than the object under review (its peers, other objects): why. Such rules
    /// stay with the webhook.
    WebhookOnly(&'static str),
    /// An HTTP check: Envoy enforces it, and admission never sees a request it could judge.
    Envoy,
}

/// A check's native form for one rule's params: what a ValidatingAdmissionPolicy holds.
#[derive(Clone, Debug, Default)]
pub struct NativeForm {
    /// Policy variables (`name`, CEL), read as `variables.<name>`.
    pub variables: Vec<(String, String)>,
    pub match_conditions: Vec<(String, String)>,
    pub validations: Vec<NativeValidation>,
    /// `failurePolicy: Ignore`: an expression that cannot be evaluated lets the object in.
    pub fail_open: bool,
    /// The check's fixes as MutatingAdmissionPolicy mutations (`meshguard rules export --to
    /// map`), applied in order; empty when the check has no fix.
    pub mutations: Vec<NativeMutation>,
    /// Which of the check's fixes the mutations leave to the webhook or `meshguard fix`, and why;
    /// `None` when they make every fix the check makes.
    pub mutation_gap: Option<&'static str>,
}

/// One mutation of a check's native form: CEL giving a list of `JSONPatch` (empty when nothing
/// is to change) that makes the check's fixes, computed from the object as it is.
#[derive(Clone, Debug, PartialEq)]
pub struct NativeMutation {
    pub expression: String,
    /// Variables only the mutation reads (`name`, CEL), before the form's own.
    pub variables: Vec<(String, String)>,
    /// Reads `variables.template` and writes under `variables.templatePointer` (the template's
    /// JSON Pointer): exported with a guard for the kinds that hold one.
    pub template: bool,
}

impl From<Vec<NativeValidation>> for NativeForm {
    fn from(validations: Vec<NativeValidation>) -> Self {
        NativeForm { validations, ..Default::default() }
    }
}

/// One validation of a check's native form. Expressions read `object`, `request` (its
/// `namespace` is the namespace a rule's `match` and the check see) and `namespaceObject`;
/// with `template`, also `variables.template`, the pod template (a Pod is its own).
#[derive(Clone, Debug, PartialEq)]
pub struct NativeValidation {
    /// True when the object passes.
    pub expression: String,
    /// CEL giving the message (a string); the exporter prefixes the rule id.
    pub message_expression: String,
    /// The VAP `fieldPath` the failure points at (relative to the pod template with
    /// `template`): the check's own path up to its first list index, which a static path cannot
    /// name. Empty: the object itself.
    pub field_path: String,
    /// Only ever a warning whatever the rule's action, as the check's advisory findings are.
    pub advisory: bool,
    /// Reads `variables.template`: exported once per place a pod template sits.
    pub template: bool,
}

impl NativeMutation {
    pub(crate) fn new(expression: impl Into<String>) -> Self {
        NativeMutation { expression: expression.into(), variables: Vec::new(), template: false }
    }

    /// Over the pod template ([`NativeMutation::template`]).
    pub(crate) fn on_template(expression: impl Into<String>) -> Self {
        NativeMutation { template: true, ..NativeMutation::new(expression) }
    }
}

impl NativeValidation {
    pub(crate) fn new(expression: impl Into<String>, message_expression: impl Into<String>, field_path: &str) -> Self {
        NativeValidation {
            expression: expression.into(),
            message_expression: message_expression.into(),
            field_path: field_path.to_string(),
            advisory: false,
            template: false,
        }
    }

    /// Over the pod template (`variables.template`), `field_path` relative to it.
    pub(crate) fn on_template(self) -> Self {
        NativeValidation { template: true, ..self }
    }

    pub(crate) fn advisory(self) -> Self {
        NativeValidation { advisory: true, ..self }
    }
}

impl CheckSpec {
    /// Whether the check ever attaches a fix: its catalog line does not start with "None".
    pub fn offers_fix(&self) -> bool {
        self.target == Target::Kubernetes && !self.fix.starts_with("None")
    }
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
    /// Where the fixes of this compiled rule may change an object, beyond its check's
    /// [`CheckSpec::fix_scope`] (a `cel` rule's fix declares its own).
    fn fix_scope(&self) -> Vec<String> {
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
    /// The request's headers by slot, and the slots of the headers this check names.
    pub(crate) headers: &'a crate::http::HeaderView<'a>,
    pub(crate) slots: &'a [usize],
}

impl<'a> HttpContext<'a> {
    /// The `i`-th header this check's [`HttpCheck::headers_read`] names, as
    /// [`Request::header`] finds it in the request.
    pub fn header(&self, i: usize) -> Option<&'a str> {
        self.slots.get(i).and_then(|slot| self.headers.get(*slot))
    }
}

/// A compiled HTTP check: `Ok(Some(message))` when the request violates it.
pub trait HttpCheck: Send + Sync {
    fn evaluate(&self, req: &Request, ctx: &mut HttpContext<'_>) -> Result<Option<String>, String>;
    /// HTTP status sent on deny (a rule's `status` overrides it).
    fn default_status(&self) -> u16 {
        403
    }
    /// The request headers `evaluate` reads (lower case), besides method, path and authority;
    /// `None` when it reads them all. `evaluate` reads the `i`-th of them with
    /// [`HttpContext::header`]`(i)`. A host that fetches headers one at a time (the Envoy
    /// filter's `named-headers` build) asks for these only, so a check that does not say is handed
    /// the whole map: the safe default.
    fn headers_read(&self) -> Option<Vec<&str>> {
        None
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

/// The check catalog, in order: the Kubernetes checks, `cel`, the HTTP checks. Declared once:
/// the registry, the Kubernetes check ids (known in every build) and the file of each check (from
/// the module each entry is named by: `istio::ports => PORT_NAME` is in `checks/istio/ports.rs`,
/// and a test holds every path to the file that declares it) all derive from these lists.
macro_rules! checks {
    ($($group:ident: [$($module:ident $(:: $sub:ident)? => $spec:ident,)*],)*) => {
        $(
            #[allow(dead_code)]
            mod $group {
                use super::*;
                pub const SPECS: &[&CheckSpec] = &[$(&$module$(::$sub)?::$spec,)*];
                pub const SOURCES: &[&str] = &[$(
                    concat!("policy-core/src/checks/", stringify!($module) $(, "/", stringify!($sub))?, ".rs"),
                )*];
            }
        )*
    };
}

checks! {
    kubernetes: [
        istio::ports => PORT_NAME,
        istio::ports => HEADLESS_PORT_CONFLICT,
        istio::workloads => SIDECAR_START_ORDER,
        istio::workloads => GRACEFUL_SHUTDOWN,
        istio::workloads => HTTP_DRAIN,
        istio::workloads => INJECTION_ROLLOUT,
        istio::traffic => EXPORT_TO_OWN_NAMESPACE,
        istio::traffic => HOST_IN_OWN_NAMESPACE,
        istio::platform => PLATFORM_ONLY_KINDS,
        istio::platform => SINGLE_DEFAULT_SIDECAR,
        istio::traffic => CIRCUIT_BREAKER,
        generic => REQUIRED_LABELS,
        generic => REQUIRED_ANNOTATIONS,
        generic => FIELD_PATTERN,
        generic => FIELD_RANGE,
        generic => FORBIDDEN_KINDS,
    ],
    http: [
        http_rules => REQUIRE_HEADER,
        http_rules => DENY_HEADER,
        http_rules => HEADER_LIMITS,
        http_rules => ALLOWED_METHODS,
        http_rules => TENANT_HEADER,
        http_rules => GRPC_SHAPE,
        http_rules => LOCAL_RATE_LIMIT,
    ],
}

/// The `cel` check: a Kubernetes check that needs the `cel` feature's crate.
pub const CEL_CHECK_ID: &str = "cel";
#[cfg(all(feature = "kubernetes", feature = "cel"))]
const CEL: (&[&CheckSpec], &[&str]) = (&[&cel_rule::CEL], &["policy-core/src/checks/cel_rule.rs"]);
#[cfg(not(all(feature = "kubernetes", feature = "cel")))]
const CEL: (&[&CheckSpec], &[&str]) = (&[], &[]);
#[cfg(feature = "kubernetes")]
const RUNNING_KUBERNETES: (&[&CheckSpec], &[&str]) = (kubernetes::SPECS, kubernetes::SOURCES);
#[cfg(not(feature = "kubernetes"))]
const RUNNING_KUBERNETES: (&[&CheckSpec], &[&str]) = (&[], &[]);

const REGISTRY_LEN: usize = RUNNING_KUBERNETES.0.len() + CEL.0.len() + http::SPECS.len();

/// `parts` one after another, as one array of `N` (the caller's count of their items).
const fn joined<T: Copy, const N: usize>(parts: [&[T]; 3], fill: T) -> [T; N] {
    let mut out = [fill; N];
    let (mut at, mut part) = (0, 0);
    while part < parts.len() {
        let mut i = 0;
        while i < parts[part].len() {
            out[at] = parts[part][i];
            at += 1;
            i += 1;
        }
        part += 1;
    }
    assert!(at == N, "the registry's parts do not add up to its length");
    out
}

static REGISTRY: [&CheckSpec; REGISTRY_LEN] = joined([RUNNING_KUBERNETES.0, CEL.0, http::SPECS], http::SPECS[0]);
static SOURCES: [&str; REGISTRY_LEN] = joined([RUNNING_KUBERNETES.1, CEL.1, http::SOURCES], "");

/// Ids of the Kubernetes checks. A build without the `kubernetes` feature (the Envoy filter, where
/// only HTTP rules run) still recognises them, so one RuleSet file loads everywhere: such rules are
/// skipped there, and their params are validated by every host that runs them.
pub const KUBERNETES_CHECK_IDS: [&str; kubernetes::SPECS.len() + 1] = {
    let mut ids = [CEL_CHECK_ID; kubernetes::SPECS.len() + 1];
    let mut i = 0;
    while i < kubernetes::SPECS.len() {
        ids[i] = kubernetes::SPECS[i].id;
        i += 1;
    }
    ids
};

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
    &REGISTRY
}

/// The file that implements check `id`, from the workspace root.
pub fn source(id: &str) -> Option<&'static str> {
    REGISTRY.iter().position(|c| c.id == id).and_then(|i| SOURCES.get(i).copied())
}

pub fn find(id: &str) -> Option<&'static CheckSpec> {
    REGISTRY.iter().copied().find(|c| c.id == id)
}
