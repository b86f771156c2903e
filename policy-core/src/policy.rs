//! The RuleSet document and the compiled `Policy`: load once, then review objects and requests.

use crate::checks::{self, Compiled, HttpCheck, HttpContext, ObjectCheck, ParamError, Target};
use crate::finding::{Action, Finding, Violation};
use crate::http::{BucketStore, Clock, HostClock, Request};
use crate::matching::{any_glob, Match};
use crate::object::Input;
use serde::Deserialize;
use serde_json::Value;
use std::fmt;

pub const API_VERSION: &str = "meshguard.dev/v1alpha1";
pub const KIND: &str = "RuleSet";

/// The built-in rule set, used when no rules are given.
pub const DEFAULT_RULES_YAML: &str = include_str!("default-rules.yaml");
/// The same rule set as JSON, converted at build time (for builds without the `yaml` feature).
pub const DEFAULT_RULES_JSON: &str = include_str!(concat!(env!("OUT_DIR"), "/default-rules.json"));

/// A rule set that did not validate. `field` is the full path in the document
/// (`spec.rules[2].params.header`), so a caller can point at the line.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleSetError {
    pub rule: Option<String>,
    pub field: String,
    pub message: String,
}

impl fmt::Display for RuleSetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            Some(id) => write!(f, "rule `{id}`: {}: {}", self.field, self.message),
            None if self.field.is_empty() => f.write_str(&self.message),
            None => write!(f, "{}: {}", self.field, self.message),
        }
    }
}

impl std::error::Error for RuleSetError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRuleSet {
    api_version: String,
    kind: String,
    metadata: RawMetadata,
    spec: RawSpec,
}

#[derive(Deserialize)]
struct RawMetadata {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSpec {
    rules: Vec<Value>,
    #[serde(default)]
    fail_open: bool,
    /// ValidatingAdmissionPolicy objects: policies, bindings and param objects (see `vap`).
    #[serde(default)]
    admission_policies: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawRule {
    pub(crate) id: String,
    pub(crate) check: String,
    #[serde(default)]
    pub(crate) description: String,
    #[serde(default = "deny")]
    pub(crate) action: Action,
    #[serde(default)]
    pub(crate) message: Option<String>,
    #[serde(default)]
    pub(crate) params: Option<Value>,
    /// Parsed only for Kubernetes rules, in a build that runs them.
    #[serde(default, rename = "match")]
    pub(crate) match_: Option<Value>,
    #[serde(default)]
    pub(crate) action_overrides: Vec<ActionOverride>,
    /// Fix the rule's findings at admission (a mutating review) instead of only reporting them.
    #[serde(default)]
    pub(crate) mutate: bool,
    #[serde(default)]
    when: Option<RawWhen>,
    #[serde(default)]
    status: Option<u16>,
}

fn deny() -> Action {
    Action::Deny
}

/// A different action in some namespaces: `audit` cluster-wide, `warn` in wave 1, `deny` in wave 2.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ActionOverride {
    pub action: Action,
    pub namespaces: Vec<String>,
    /// Whether the rule mutates at admission in these namespaces (else as the rule says): how a
    /// rollout wave turns "deny" into "fix at admission" one group of namespaces at a time.
    #[serde(default)]
    pub mutate: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawWhen {
    #[serde(default)]
    path_prefix: Option<String>,
    #[serde(default)]
    path_exact: Option<String>,
    #[serde(default)]
    path_regex: Option<String>,
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    authority: Option<String>,
    #[serde(default)]
    header_present: Option<String>,
}

/// Conditions on a request that decide whether an HTTP rule applies at all.
struct When {
    path: Option<checks::http_rules::PathMatcher>,
    methods: Vec<String>,
    authority: Option<String>,
    header_present: Option<String>,
    /// `header_present`'s slot in the decision's [`crate::http::HeaderView`].
    header_slot: Option<usize>,
}

impl When {
    fn applies(&self, req: &Request, headers: &crate::http::HeaderView<'_>) -> Result<bool, String> {
        if let Some(m) = &self.path {
            if !m.matches(req.path_only())? {
                return Ok(false);
            }
        }
        Ok((self.methods.is_empty() || self.methods.iter().any(|m| m.eq_ignore_ascii_case(&req.method)))
            && self.authority.as_ref().is_none_or(|a| crate::matching::glob_match(a, authority_host(&req.authority)))
            && self.header_slot.is_none_or(|slot| headers.get(slot).is_some()))
    }
}

fn authority_host(authority: &str) -> &str {
    authority
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(authority, |(h, _)| h)
}

/// What a rule set's Kubernetes rules can flag; see [`Policy::coverage`].
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Coverage {
    /// Some rule may flag any object.
    pub any: bool,
    /// Kinds flagged in any API group.
    pub kinds: std::collections::BTreeSet<&'static str>,
    /// API group suffixes whose every kind may be flagged.
    pub group_suffixes: std::collections::BTreeSet<&'static str>,
    /// Rules' own `match.kinds`.
    pub selectors: Vec<crate::matching::KindSelector>,
}

impl Coverage {
    /// Whether some rule may flag an object of `group`/`kind`.
    pub fn covers(&self, group: &str, kind: &str) -> bool {
        self.any
            || self.kinds.contains(kind)
            || self.group_suffixes.iter().any(|s| group.ends_with(s))
            || self.selectors.iter().any(|k| k.matches(group, kind))
    }
}

/// Whether a rule with `mutate` and these overrides fixes its findings at admission somewhere.
pub(crate) fn mutates_somewhere(mutate: bool, overrides: &[ActionOverride]) -> bool {
    mutate || overrides.iter().any(|o| o.mutate == Some(true))
}

/// What every rule has, whatever it checks.
#[derive(Clone, Debug)]
pub struct RuleInfo {
    pub id: String,
    pub check: &'static str,
    pub description: String,
    pub action: Action,
    pub message: Option<String>,
    pub action_overrides: Vec<ActionOverride>,
    /// Fixes its findings at admission ([`Policy::mutate_admission_in`]).
    pub mutate: bool,
}

impl RuleInfo {
    /// The action in `namespace`: the first override that names it, else the rule's own.
    pub fn action_in(&self, namespace: &str) -> Action {
        self.action_overrides.iter().find(|o| any_glob(&o.namespaces, namespace)).map_or(self.action, |o| o.action)
    }

    /// Whether the rule fixes its findings at admission in some namespace.
    pub fn mutates_somewhere(&self) -> bool {
        mutates_somewhere(self.mutate, &self.action_overrides)
    }

    /// Whether the rule fixes its findings at admission in `namespace`: the first override that
    /// names the namespace and says, else the rule's `mutate`.
    pub fn mutates_in(&self, namespace: &str) -> bool {
        self.action_overrides
            .iter()
            .find(|o| any_glob(&o.namespaces, namespace))
            .and_then(|o| o.mutate)
            .unwrap_or(self.mutate)
    }

    fn message_for(&self, detail: &str, kind: &str, namespace: &str, name: &str) -> String {
        match &self.message {
            None => detail.to_string(),
            Some(template) => template
                .replace("{message}", detail)
                .replace("{kind}", kind)
                .replace("{namespace}", namespace)
                .replace("{name}", name),
        }
    }
}

struct ObjectRule {
    info: RuleInfo,
    matcher: Match,
    check: Box<dyn ObjectCheck>,
    applies: checks::Applies,
    /// Kinds of other objects the rule reads (see [`ObjectCheck::context_kinds`]), with
    /// `Namespace` when its match has a namespaceSelector.
    context_kinds: Vec<String>,
    /// Where its fixes may change an object ([`checks::CheckSpec::fix_scope`]).
    fix_scope: Vec<String>,
}

impl ObjectRule {
    fn new(
        info: RuleInfo,
        matcher: Match,
        check: Box<dyn ObjectCheck>,
        applies: checks::Applies,
        declared_scope: &[&str],
    ) -> Self {
        // Only admission hosts read it; builds without the Kubernetes checks (the Envoy filter,
        // where every byte counts) have no object rules to ask.
        let mut context_kinds = if cfg!(feature = "kubernetes") { check.context_kinds() } else { Vec::new() };
        if cfg!(feature = "kubernetes")
            && matcher.namespace_selector.is_some()
            && !context_kinds.iter().any(|k| k == "Namespace")
        {
            context_kinds.push("Namespace".into());
        }
        let mut fix_scope: Vec<String> = declared_scope.iter().map(|p| p.to_string()).collect();
        fix_scope.extend(check.fix_scope());
        ObjectRule { info, matcher, check, applies, context_kinds, fix_scope }
    }
}

struct HttpRule {
    info: RuleInfo,
    when: Option<When>,
    status: u16,
    check: Box<dyn HttpCheck>,
    /// The slots of the headers the check names ([`HttpCheck::headers_read`]), in its order.
    slots: Vec<usize>,
}

/// A validated, compiled rule set: regexes built, params typed, matchers ready.
pub struct Policy {
    name: String,
    fail_open: bool,
    /// Rules of checks this build leaves out (see `checks::KUBERNETES_CHECK_IDS`).
    skipped_rules: usize,
    object_rules: Vec<ObjectRule>,
    http_rules: Vec<HttpRule>,
    /// Where the HTTP rules' named headers go in each decision's [`crate::http::HeaderView`].
    header_slots: crate::http::HeaderSlots,
    /// MutatingAdmissionPolicy bindings, in the order they run (see `map`).
    #[cfg(all(feature = "kubernetes", feature = "cel"))]
    mutating_policies: Vec<crate::map::MutatingBinding>,
    /// Whether every object rule reads only object content, computed once when the rule set
    /// loads: admission decodes ask on every request (`Policy::parse_admission`).
    object_content_only: bool,
    /// Whether a rule mutates somewhere or a MutatingAdmissionPolicy is loaded, computed once.
    mutates: bool,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.name)
            .field("rules", &self.rules().map(|r| &r.id).collect::<Vec<_>>())
            .finish()
    }
}

/// The answer for one HTTP request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HttpDecision {
    /// The first rule that denied, if any; later rules are not evaluated (no tokens spent).
    pub denied: Option<Denial>,
    /// Every rule that fired, in order, with its action (for warn headers and metrics).
    pub fired: Vec<(usize, Action)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Denial {
    pub rule: String,
    pub message: String,
    pub status: u16,
    /// Sent instead of the HTTP status to gRPC clients: 7 PERMISSION_DENIED, 8 RESOURCE_EXHAUSTED.
    pub grpc_status: u8,
}

impl Policy {
    /// Loads a RuleSet from YAML or JSON text.
    #[cfg(feature = "yaml")]
    pub fn from_text(text: &str) -> Result<Policy, LoadError> {
        let doc = crate::yaml::parse_one(text).map_err(|e| LoadError::Syntax {
            line: e.at.line,
            column: e.at.column,
            message: e.message,
        })?;
        Policy::from_document(&doc)
    }

    /// Loads an already parsed YAML document; validation errors point at the field's line.
    #[cfg(feature = "yaml")]
    pub fn from_document(doc: &crate::yaml::Document) -> Result<Policy, LoadError> {
        Policy::from_value(&doc.value).map_err(|e| {
            let at = crate::path::FieldPath::parse(&e.field).map(|p| doc.spans.locate(&p)).unwrap_or(doc.spans.at);
            LoadError::Invalid { line: at.line, error: e }
        })
    }

    /// Loads a RuleSet from JSON text.
    #[cfg(not(feature = "yaml"))]
    pub fn from_text(text: &str) -> Result<Policy, LoadError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let value: Value = serde_json::from_str(text).map_err(|e| LoadError::Syntax {
            line: e.line() as u32,
            column: e.column() as u32,
            message: e.to_string(),
        })?;
        Policy::from_value(&value).map_err(|error| LoadError::Invalid { line: 0, error })
    }

    /// The built-in rule set.
    pub fn default_rules() -> Result<Policy, LoadError> {
        if cfg!(feature = "yaml") {
            Policy::from_text(DEFAULT_RULES_YAML)
        } else {
            Policy::from_text(DEFAULT_RULES_JSON)
        }
    }

    /// Validates and compiles a RuleSet document; every error names the rule id and field.
    pub fn from_value(doc: &Value) -> Result<Policy, RuleSetError> {
        if let Some(field) = raw_value_key_at(doc) {
            return Err(doc_error(
                &field,
                format!(
                    "the key `{RAW_VALUE_KEY}` is reserved by serde_json for embedded JSON, which some of \
                     meshguard's builds would read as JSON and others as a plain key; rename it"
                ),
            ));
        }
        let raw: RawRuleSet = serde_path_to_error::deserialize(doc).map_err(|e| RuleSetError {
            rule: None,
            field: e.path().to_string().trim_start_matches('.').to_string(),
            message: e.into_inner().to_string(),
        })?;
        if raw.api_version != API_VERSION {
            return Err(doc_error(
                "apiVersion",
                format!("`{}` is not supported; use `{API_VERSION}`", raw.api_version),
            ));
        }
        if raw.kind != KIND {
            return Err(doc_error("kind", format!("`{}` is not `{KIND}`", raw.kind)));
        }
        let mut policy = Policy {
            name: raw.metadata.name,
            fail_open: raw.spec.fail_open,
            skipped_rules: 0,
            object_rules: Vec::new(),
            http_rules: Vec::new(),
            header_slots: Default::default(),
            #[cfg(all(feature = "kubernetes", feature = "cel"))]
            mutating_policies: Vec::new(),
            object_content_only: false,
            mutates: false,
        };
        let mut seen: Vec<String> = Vec::new();
        for (i, value) in raw.spec.rules.iter().enumerate() {
            let base = format!("spec.rules[{i}]");
            let id_hint = value.get("id").and_then(Value::as_str).map(str::to_string);
            let err = |field: &str, message: String| RuleSetError {
                rule: id_hint.clone(),
                field: if field.is_empty() { base.clone() } else { format!("{base}.{field}") },
                message,
            };
            let rule: RawRule = serde_path_to_error::deserialize(value).map_err(|e| {
                let path = e.path().to_string();
                err(if path == "." { "" } else { &path }, e.into_inner().to_string())
            })?;
            if rule.id.is_empty()
                || !rule.id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
            {
                return Err(err(
                    "id",
                    format!("`{}` is not a stable id: use lower-case letters, digits, `-`, `_`, `.`", rule.id),
                ));
            }
            if seen.contains(&rule.id) {
                return Err(err("id", format!("duplicate rule id `{}`", rule.id)));
            }
            seen.push(rule.id.clone());
            if checks::find(&rule.check).is_none()
                && checks::KUBERNETES_CHECK_IDS.contains(&rule.check.as_str())
                && !cfg!(feature = "kubernetes")
            {
                // Built without the Kubernetes checks: the rule is recognised and skipped.
                policy.skipped_rules += 1;
                continue;
            }
            if rule.check == "cel" && checks::find("cel").is_none() {
                return Err(err(
                    "check",
                    "this build of meshguard has no CEL support (policy-core's `cel` feature)".into(),
                ));
            }
            let spec = checks::find(&rule.check).ok_or_else(|| {
                let known: Vec<&str> = checks::registry().iter().map(|c| c.id).collect();
                err("check", format!("unknown check `{}`; known checks: {}", rule.check, known.join(", ")))
            })?;
            let params = rule.params.clone().unwrap_or(Value::Object(Default::default()));
            let params = if params.is_null() { Value::Object(Default::default()) } else { params };
            let compiled = (spec.compile)(&params).map_err(|ParamError { field, message }| {
                err(if field.is_empty() { "params".into() } else { format!("params.{field}") }.as_str(), message)
            })?;
            for (j, o) in rule.action_overrides.iter().enumerate() {
                if o.namespaces.is_empty() {
                    return Err(err(
                        &format!("actionOverrides[{j}].namespaces"),
                        "must name at least one namespace".into(),
                    ));
                }
            }
            let info = RuleInfo {
                id: rule.id,
                check: spec.id,
                description: rule.description,
                action: rule.action,
                message: rule.message,
                action_overrides: rule.action_overrides,
                mutate: rule.mutate,
            };
            if info.mutates_somewhere() && !spec.offers_fix() {
                let field = if info.mutate {
                    "mutate".to_string()
                } else {
                    let j = info.action_overrides.iter().position(|o| o.mutate == Some(true)).unwrap_or(0);
                    format!("actionOverrides[{j}].mutate")
                };
                return Err(err(
                    &field,
                    format!(
                        "check `{}` has no fix to apply at admission (see `meshguard rules explain {}`)",
                        spec.id, spec.id
                    ),
                ));
            }
            match compiled {
                Compiled::Object(check) => {
                    if rule.when.is_some() || rule.status.is_some() {
                        let field = if rule.when.is_some() { "when" } else { "status" };
                        return Err(err(
                            field,
                            format!("`{field}` applies to HTTP checks only; `{}` checks Kubernetes objects", spec.id),
                        ));
                    }
                    let matcher: Match = match &rule.match_ {
                        None => Match::default(),
                        Some(v) => serde_path_to_error::deserialize(v).map_err(|e| {
                            let path = e.path().to_string();
                            err(
                                &if path == "." { "match".to_string() } else { format!("match.{path}") },
                                e.into_inner().to_string(),
                            )
                        })?,
                    };
                    matcher.validate().map_err(|m| err("match", m))?;
                    policy.object_rules.push(ObjectRule::new(info, matcher, check, spec.applies_to, spec.fix_scope));
                }
                Compiled::Http(check) => {
                    if rule.match_.is_some() {
                        return Err(err(
                            "match",
                            format!(
                                "`match` selects Kubernetes objects; `{}` checks HTTP requests, use `when`",
                                spec.id
                            ),
                        ));
                    }
                    let when = rule
                        .when
                        .map(|w| {
                            compile_when(w)
                                .map_err(|ParamError { field, message }| err(&format!("when.{field}"), message))
                        })
                        .transpose()?;
                    let status = rule.status.unwrap_or_else(|| check.default_status());
                    if !(200..=599).contains(&status) {
                        return Err(err("status", format!("{status} is not an HTTP status")));
                    }
                    let slots = check
                        .headers_read()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|h| policy.header_slots.slot(h))
                        .collect();
                    let when = when.map(|mut w| {
                        w.header_slot = w.header_present.as_deref().map(|h| policy.header_slots.slot(h));
                        w
                    });
                    policy.http_rules.push(HttpRule { info, when, status, check, slots });
                }
            }
        }
        policy.add_admission_policies(&raw.spec.admission_policies, &mut seen)?;
        policy.object_content_only =
            policy.object_rules.iter().all(|r| checks::reads_object_content_only(r.info.check));
        policy.mutates = policy.rules().any(RuleInfo::mutates_somewhere) || policy.has_mutating_policies();
        Ok(policy)
    }

    /// One rule per ValidatingAdmissionPolicyBinding; builds without them (the Envoy filter) skip them.
    #[cfg(all(feature = "kubernetes", feature = "cel"))]
    fn add_admission_policies(&mut self, objects: &[Value], seen: &mut Vec<String>) -> Result<(), RuleSetError> {
        let located = |e: crate::vap::VapError| RuleSetError {
            rule: e.name,
            field: format!("spec.admissionPolicies[{}].{}", e.index, e.field),
            message: e.message,
        };
        // Kyverno and Gatekeeper policies run as the ValidatingAdmissionPolicies they translate to.
        let translated;
        let (objects, origins) = if crate::imports::any(objects) {
            translated = crate::imports::translate(objects).map_err(located)?;
            (translated.0.as_slice(), Some(&translated.1))
        } else {
            (objects, None)
        };
        let located = |e: crate::vap::VapError| match origins.and_then(|o| o.get(e.index)) {
            Some(origin) => located(origin.locate(e)),
            None => located(e),
        };
        self.mutating_policies = crate::map::compile(objects).map_err(located)?;
        let bindings = crate::vap::compile(objects).map_err(located)?;
        for b in bindings {
            if seen.contains(&b.id) {
                return Err(doc_error("spec.admissionPolicies", format!("duplicate binding `{}`", b.id)));
            }
            seen.push(b.id.clone());
            let info = RuleInfo {
                id: b.id,
                check: crate::vap::CHECK_ID,
                description: format!("ValidatingAdmissionPolicy {}", b.policy),
                action: b.action,
                message: None,
                action_overrides: Vec::new(),
                mutate: false,
            };
            self.object_rules.push(ObjectRule::new(
                info,
                Match::default(),
                Box::new(b.check),
                checks::Applies::Any,
                &[],
            ));
        }
        Ok(())
    }

    #[cfg(not(all(feature = "kubernetes", feature = "cel")))]
    fn add_admission_policies(&mut self, objects: &[Value], _seen: &mut Vec<String>) -> Result<(), RuleSetError> {
        if cfg!(feature = "kubernetes") && !objects.is_empty() {
            return Err(doc_error(
                "spec.admissionPolicies",
                "this build of meshguard has no CEL support (policy-core's `cel` feature)".into(),
            ));
        }
        self.skipped_rules += objects
            .iter()
            .filter(|v| v.get("kind").and_then(Value::as_str) == Some("ValidatingAdmissionPolicyBinding"))
            .count();
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `spec.failOpen`: what an in-line host (the Envoy filter) does when evaluation itself fails,
    /// e.g. rate-limit storage errors: let the request through (`true`) or refuse it (`false`, default).
    pub fn fail_open(&self) -> bool {
        self.fail_open
    }

    /// Where the fixes of rule `id` may change an object ([`checks::CheckSpec::fix_scope`], and a
    /// `cel` rule's own `fix.paths`); empty for an unknown rule or one without fixes.
    pub fn fix_scope_of(&self, id: &str) -> Vec<String> {
        self.object_rules.iter().find(|r| r.info.id == id).map(|r| r.fix_scope.clone()).unwrap_or_default()
    }

    /// Why `finding` is left as it is by `meshguard fix` (and every host that fixes): still found
    /// after the rounds of fixes, or its check has no fix for it, in the words of the check's
    /// catalog entry.
    pub fn why_not_fixed(&self, finding: &Finding) -> String {
        if finding.fix.is_some() {
            return format!("still found after {} rounds of fixes", crate::fix::MAX_ROUNDS);
        }
        let check = self.rules().find(|r| r.id == finding.rule).and_then(|r| checks::find(r.check));
        match check {
            Some(spec) if !spec.offers_fix() => format!("no fix: {}", spec.fix.trim_start_matches("None: ")),
            Some(spec) => format!("no fix for this case; the check fixes only this: {}", spec.fix),
            None => "its check offers no fix".to_string(),
        }
    }

    /// Runs the MutatingAdmissionPolicies of `spec.admissionPolicies` over `values`, in place, as
    /// the API server runs them before validation: what `meshguard check` reviews and `meshguard
    /// fix` writes (their patches), and what `/mutate` sends. `request` is the AdmissionRequest at
    /// admission (`None` in CI: each object is a CREATE); `only`: mutate just that object (the
    /// admitted one), the others being context.
    pub fn apply_mutating_policies(
        &self,
        values: &mut [Value],
        default_namespace: &str,
        request: Option<&Value>,
        only: Option<usize>,
    ) -> crate::fix::PolicyMutations {
        #[cfg(all(feature = "kubernetes", feature = "cel"))]
        if !self.mutating_policies.is_empty() {
            return crate::map::apply_all(&self.mutating_policies, values, default_namespace, request, only);
        }
        let _ = (default_namespace, request, only);
        crate::fix::PolicyMutations { patches: vec![crate::fix::Patch(Vec::new()); values.len()], ..Default::default() }
    }

    /// [`Policy::apply_mutating_policies`] as `meshguard fix --only RULES` runs them (every
    /// object, no request): with `only` given, they are applied only when it names every binding
    /// that changes something (else the objects are left as they were), and only the named ones'
    /// denials are kept.
    pub fn fix_with_mutating_policies(
        &self,
        values: &mut [Value],
        default_namespace: &str,
        only: &[String],
    ) -> crate::fix::PolicyMutations {
        let before = (!only.is_empty()).then(|| values.to_vec());
        let mut policies = self.apply_mutating_policies(values, default_namespace, None, None);
        if let Some(before) = before {
            if policies.changed.iter().any(|f| !only.contains(&f.rule)) {
                values.clone_from_slice(&before);
                policies = crate::fix::PolicyMutations {
                    patches: vec![crate::fix::Patch(Vec::new()); values.len()],
                    ..Default::default()
                };
            }
            policies.denied.retain(|f| only.contains(&f.rule));
        }
        policies
    }

    /// The `policy/binding` ids of the MutatingAdmissionPolicy bindings, in the order they run.
    pub fn mutating_policy_ids(&self) -> Vec<String> {
        #[cfg(all(feature = "kubernetes", feature = "cel"))]
        return self.mutating_policies.iter().map(|b| b.id.clone()).collect();
        #[cfg(not(all(feature = "kubernetes", feature = "cel")))]
        Vec::new()
    }

    /// Whether the rule set holds MutatingAdmissionPolicies.
    pub fn has_mutating_policies(&self) -> bool {
        #[cfg(all(feature = "kubernetes", feature = "cel"))]
        return !self.mutating_policies.is_empty();
        #[cfg(not(all(feature = "kubernetes", feature = "cel")))]
        false
    }

    /// Every rule, Kubernetes rules first, each in document order.
    pub fn rules(&self) -> impl Iterator<Item = &RuleInfo> {
        self.object_rules.iter().map(|r| &r.info).chain(self.http_rules.iter().map(|r| &r.info))
    }

    /// Which objects this rule set's Kubernetes rules can flag: a rule's `match.kinds` when it
    /// names some, else what its check applies to. Admission hosts skip objects nothing covers
    /// (the answer, no findings, is the same), and webhook configurations are generated from it.
    pub fn coverage(&self) -> Coverage {
        self.coverage_of(|_| true)
    }

    /// [`Policy::coverage`] of the rules that mutate in some namespace: what a mutating webhook
    /// configuration must send to `/mutate` (`None` when no rule mutates).
    pub fn mutating_coverage(&self) -> Option<Coverage> {
        let rules = self.object_rules.iter().any(|r| r.info.mutates_somewhere());
        if !rules && !self.has_mutating_policies() {
            return None;
        }
        let mut cover = self.coverage_of(RuleInfo::mutates_somewhere);
        // MutatingAdmissionPolicies name their own resources; `/mutate` then hears every kind.
        cover.any |= self.has_mutating_policies();
        Some(cover)
    }

    fn coverage_of(&self, selected: impl Fn(&RuleInfo) -> bool) -> Coverage {
        let mut cover = Coverage::default();
        for r in self.object_rules.iter().filter(|r| selected(&r.info)) {
            if !r.matcher.kinds.is_empty() {
                cover.selectors.extend(r.matcher.kinds.iter().cloned());
                continue;
            }
            match r.applies {
                checks::Applies::Any => cover.any = true,
                checks::Applies::Kinds(kinds) => cover.kinds.extend(kinds.iter().copied()),
                checks::Applies::GroupSuffix(suffix) => cover.group_suffixes.extend([suffix]),
            }
        }
        cover
    }

    /// Rules this build recognised but cannot run (Kubernetes rules in the Envoy filter).
    pub fn skipped_rules(&self) -> usize {
        self.skipped_rules
    }

    /// Whether every loaded object rule reads only object content (see
    /// [`crate::checks::READS_ANY_FIELD_CHECK_IDS`]), so [`Policy::parse_admission`] may prune.
    /// Whether a review may change the object: a rule mutates somewhere, or MutatingAdmissionPolicies
    /// are loaded. Hosts then keep the whole object (a mutated object is sent back whole, so
    /// nothing may be pruned from it when decoded) and answer with the mutation.
    pub fn mutates(&self) -> bool {
        self.mutates
    }

    pub fn reads_object_content_only(&self) -> bool {
        self.object_content_only
    }

    pub fn http_rules(&self) -> impl Iterator<Item = &RuleInfo> {
        self.http_rules.iter().map(|r| &r.info)
    }

    pub fn has_rules_for(&self, target: Target) -> bool {
        match target {
            Target::Kubernetes => !self.object_rules.is_empty(),
            Target::Http => !self.http_rules.is_empty(),
        }
    }

    /// Every kind some Kubernetes rule compares objects with (sorted): what an admission host
    /// fetches from the cluster so that admission decides as CI does.
    pub fn context_kinds(&self) -> Vec<&str> {
        let mut kinds: Vec<&str> =
            self.object_rules.iter().flat_map(|r| r.context_kinds.iter().map(String::as_str)).collect();
        kinds.sort_unstable();
        kinds.dedup();
        kinds
    }

    /// The rules that select object `index` and would compare it with objects of a kind
    /// `unseen` says the review cannot see.
    fn rules_reading(&self, input: &Input<'_>, index: usize, unseen: &dyn Fn(&str) -> bool) -> Vec<&ObjectRule> {
        let Some(obj) = input.objects.get(index) else {
            return Vec::new();
        };
        self.object_rules
            .iter()
            .filter(|r| {
                r.context_kinds.iter().any(|k| unseen(k))
                    && r.applies.covers(obj.group, obj.kind)
                    && r.check.reads_context(obj)
                    // Without the namespace's labels a namespaceSelector cannot match at all.
                    && (r.matcher.matches(obj, input) || (r.matcher.namespace_selector.is_some() && unseen("Namespace")))
            })
            .collect()
    }

    /// Ids of the rules that select object `index` and would compare it with objects of a kind
    /// `unseen` says the host could not supply.
    pub fn rules_missing_context(&self, input: &Input<'_>, index: usize, unseen: &dyn Fn(&str) -> bool) -> Vec<String> {
        self.rules_reading(input, index, unseen).into_iter().map(|r| r.info.id.clone()).collect()
    }

    /// Kinds the rules selecting object `index` compare it with (sorted): what a host fetches
    /// for this one object, no more.
    pub fn context_kinds_of(&self, input: &Input<'_>, index: usize) -> Vec<&str> {
        let mut kinds: Vec<&str> = self
            .rules_reading(input, index, &|_| true)
            .into_iter()
            .flat_map(|r| r.context_kinds.iter().map(String::as_str))
            .collect();
        kinds.sort_unstable();
        kinds.dedup();
        kinds
    }

    /// Reviews every object of the input against every Kubernetes rule.
    pub fn review(&self, input: &Input<'_>) -> Vec<Finding> {
        let mut findings = Vec::new();
        for index in 0..input.objects.len() {
            self.review_object(input, index, &mut findings);
        }
        findings
    }

    /// Reviews one object of the input (its peers are visible to checks that compare objects).
    pub fn review_object(&self, input: &Input<'_>, index: usize, findings: &mut Vec<Finding>) {
        let Some(obj) = input.objects.get(index) else {
            return;
        };
        let mut violations = Vec::new();
        for rule in &self.object_rules {
            // A host past its deadline stops the review between rules (and inside CEL loops).
            if crate::interrupt::poll() {
                return;
            }
            if !rule.matcher.matches(obj, input) {
                continue;
            }
            violations.clear();
            rule.check.review(obj, input, &mut violations);
            let namespace_action = rule.info.action_in(if obj.kind == "Namespace" { obj.name } else { obj.namespace });
            for Violation { path, message, max_action, mut fix } in violations.drain(..) {
                let mut message = rule.info.message_for(&message, obj.kind, obj.namespace, obj.name);
                if let Some(stray) = fix.as_ref().and_then(|f| crate::fix::strays(obj.value, &f.patch, &rule.fix_scope))
                {
                    message = format!("{message} (its fix was dropped: {stray})");
                    fix = None;
                }
                findings.push(Finding {
                    rule: rule.info.id.clone(),
                    check: rule.info.check,
                    action: max_action.map_or(namespace_action, |cap| namespace_action.min(cap)),
                    message,
                    kind: obj.kind.to_string(),
                    namespace: obj.namespace.to_string(),
                    name: obj.name.to_string(),
                    path,
                    object_index: index,
                    fix,
                });
            }
        }
    }

    /// Decides one request: every HTTP rule in order until one denies. `now_ms` is the host's clock;
    /// rate-limit buckets live in `buckets`. An `Err` means a host failure (bucket storage); the
    /// caller applies its fail mode.
    pub fn decide(&self, req: &Request, now_ms: u64, buckets: &mut dyn BucketStore) -> Result<HttpDecision, String> {
        self.decide_with_clock(req, &mut { now_ms }, buckets)
    }

    /// [`Policy::decide`] for hosts whose clock costs a call: `clock` is read at most once, and
    /// only when a rate limit goes to its shared bucket.
    pub fn decide_with_clock(
        &self,
        req: &Request,
        clock: &mut dyn Clock,
        buckets: &mut dyn BucketStore,
    ) -> Result<HttpDecision, String> {
        let mut clock = HostClock::new(|| clock.now_ms());
        let headers = self.header_slots.view(req);
        let mut decision = HttpDecision::default();
        for (index, rule) in self.http_rules.iter().enumerate() {
            let rule_error = |e: String| format!("rule `{}`: {e}", rule.info.id);
            if let Some(when) = &rule.when {
                if !when.applies(req, &headers).map_err(rule_error)? {
                    continue;
                }
            }
            let mut ctx = HttpContext {
                rule_id: &rule.info.id,
                clock: &mut clock,
                buckets: &mut *buckets,
                headers: &headers,
                slots: &rule.slots,
            };
            let Some(detail) = rule.check.evaluate(req, &mut ctx).map_err(rule_error)? else {
                continue;
            };
            let action = rule.info.action;
            decision.fired.push((index, action));
            if action == Action::Deny {
                decision.denied = Some(Denial {
                    rule: rule.info.id.clone(),
                    message: rule.info.message_for(&detail, "", "", ""),
                    status: rule.status,
                    grpc_status: if rule.status == 429 { 8 } else { 7 },
                });
                break;
            }
        }
        Ok(decision)
    }

    /// The request headers the HTTP rules read, for hosts that can fetch headers one at a time.
    /// `content-type` is always among them: hosts answer gRPC clients in gRPC's form.
    pub fn headers_read(&self) -> crate::http::HeadersRead {
        let mut names = vec!["content-type".to_string()];
        for rule in &self.http_rules {
            let Some(read) = rule.check.headers_read() else { return crate::http::HeadersRead::All };
            names.extend(read.into_iter().map(str::to_ascii_lowercase));
            if let Some(h) = rule.when.as_ref().and_then(|w| w.header_present.as_ref()) {
                names.push(h.to_ascii_lowercase());
            }
        }
        names.sort_unstable();
        names.dedup();
        crate::http::HeadersRead::Named(names)
    }

    /// The id of the HTTP rule at `index` in [`HttpDecision::fired`].
    pub fn http_rule(&self, index: usize) -> Option<&RuleInfo> {
        self.http_rules.get(index).map(|r| &r.info)
    }
}

/// serde_json reserves this key: with its `raw_value` feature (on in the admission modules and
/// the CLI, off in the Envoy filter) its `Value` decode reads a map whose only key it is as the
/// JSON text in its string. A RuleSet compiles through that decode, so one holding the key is
/// refused rather than read one way in Envoy and another in CI.
pub const RAW_VALUE_KEY: &str = "$serde_json::private::RawValue";

/// The field path of the map in `doc` that holds [`RAW_VALUE_KEY`], if one does.
fn raw_value_key_at(doc: &Value) -> Option<String> {
    let mut stack = vec![(doc, String::new())];
    while let Some((value, path)) = stack.pop() {
        match value {
            Value::Object(map) => {
                if map.contains_key(RAW_VALUE_KEY) {
                    return Some(path);
                }
                for (key, child) in map {
                    stack.push((child, if path.is_empty() { key.clone() } else { format!("{path}.{key}") }));
                }
            }
            Value::Array(items) => {
                stack.extend(items.iter().enumerate().map(|(i, item)| (item, format!("{path}[{i}]"))))
            }
            _ => {}
        }
    }
    None
}

fn doc_error(field: &str, message: String) -> RuleSetError {
    RuleSetError { rule: None, field: field.to_string(), message }
}

fn compile_when(w: RawWhen) -> Result<When, ParamError> {
    let path = checks::http_rules::PathMatcher::from_fields("pathRegex", w.path_prefix, w.path_exact, w.path_regex)?;
    Ok(When { path, methods: w.methods, authority: w.authority, header_present: w.header_present, header_slot: None })
}

/// A rule set that could not be loaded: bad syntax, or a document that does not validate.
/// `line` is where the offending field is (0 when unknown).
#[derive(Clone, Debug, PartialEq)]
pub enum LoadError {
    Syntax { line: u32, column: u32, message: String },
    Invalid { line: u32, error: RuleSetError },
}

impl LoadError {
    pub fn line(&self) -> u32 {
        match self {
            LoadError::Syntax { line, .. } | LoadError::Invalid { line, .. } => *line,
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Syntax { line, column, message } => write!(f, "{line}:{column}: {message}"),
            LoadError::Invalid { line: 0, error } => write!(f, "{error}"),
            LoadError::Invalid { line, error } => write!(f, "{line}: {error}"),
        }
    }
}

impl std::error::Error for LoadError {}
