//! Admission decisions, shared by every admission host (Kubewarden waPC, OPA ABI, the webhook):
//! an AdmissionRequest in, the verdict out. Hosts only translate this into their answer shape.
//!
//! A request carries one object; some rules compare it with others (another headless Service on
//! the same port, a second default Sidecar, the namespace's labels). In CI the repo holds those
//! peers. At admission the host supplies what it knows of the cluster as a [`ClusterView`]
//! (Gatekeeper's inventory, Kubewarden's context-aware calls, the webhook's snapshot); rules whose
//! peers the host could not supply are named in [`AdmissionVerdict::without_context`] instead of
//! passing silently. A host hands its cluster over as a [`ClusterSource`] and gets the verdict
//! with [`Policy::review_admission_from`]; every host answers with the one [`AdmissionResponse`]
//! the verdict builds ([`kubewarden`] holds that response in Kubewarden's wire shape).

mod cluster;
pub mod kubewarden;
mod response;

pub use cluster::{typed_objects, ClusterObjects, ClusterSource, ClusterView, Unseen};
pub use response::{
    fit_lines, fit_warnings, AdmissionResponse, Status, AUDIT_ANNOTATION, DENY_ANNOTATION, MAX_DENIAL_BYTES,
    MAX_DENIAL_LINE_CHARS, MAX_WARNINGS_BYTES, MAX_WARNING_CHARS, MUTATED_ANNOTATION, WARN_ANNOTATION,
    WITHOUT_CONTEXT_ANNOTATION,
};

use crate::finding::{Action, Finding};
use crate::object::Input;
use crate::policy::Policy;
use serde_json::Value;

/// The AdmissionRequest inside whatever the host handed over: an AdmissionReview (`.request`),
/// an AdmissionRequest, or a bare object (treated as a CREATE).
pub fn admission_request(input: &Value) -> AdmissionRequestView<'_> {
    let request = match input.get("request") {
        Some(r) if r.is_object() => r,
        _ => input,
    };
    let is_request =
        request.get("operation").is_some() || request.get("object").is_some() || request.get("oldObject").is_some();
    if !is_request {
        return AdmissionRequestView {
            operation: "CREATE",
            namespace: "",
            object: Some(input),
            old_object: None,
            request: None,
        };
    }
    let str_of = |k: &str| request.get(k).and_then(Value::as_str).unwrap_or("");
    let non_null = |k: &str| request.get(k).filter(|v| !v.is_null());
    AdmissionRequestView {
        operation: match str_of("operation") {
            "" => "CREATE",
            op => op,
        },
        namespace: str_of("namespace"),
        object: non_null("object"),
        old_object: non_null("oldObject"),
        request: Some(request),
    }
}

#[derive(Clone, Copy, Debug)]
pub struct AdmissionRequestView<'a> {
    pub operation: &'a str,
    pub namespace: &'a str,
    pub object: Option<&'a Value>,
    pub old_object: Option<&'a Value>,
    /// The AdmissionRequest itself (CEL rules read `request` and `oldObject` from it).
    pub request: Option<&'a Value>,
}

impl<'a> AdmissionRequestView<'a> {
    /// The namespace the reviewed object lives in, as a review places it: its own
    /// `metadata.namespace`, else the request's, else `default`. Hosts fetch its peers there.
    pub fn object_namespace(&self) -> &'a str {
        let own = self.object.and_then(|o| o.get("metadata")?.get("namespace")?.as_str());
        match (own, self.namespace) {
            (Some(ns), _) if !ns.is_empty() => ns,
            (_, "") => "default",
            (_, ns) => ns,
        }
    }

    /// The request's `uid` (`""` when it has none), echoed in the AdmissionResponse.
    pub fn uid(&self) -> Value {
        self.request.and_then(|r| r.get("uid")).cloned().unwrap_or_else(|| Value::String(String::new()))
    }
}

/// The verdict for one request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AdmissionVerdict {
    /// False when any finding's action is `deny`.
    pub allowed: bool,
    /// Every finding, in rule order (deny, warn and audit).
    pub findings: Vec<Finding>,
    /// Ids of the rules that would compare the object with cluster objects the host did not
    /// supply: they decided on the request alone.
    pub without_context: Vec<String>,
}

impl AdmissionVerdict {
    pub fn with_action(&self, action: Action) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.action == action)
    }

    /// One line per denying finding, as rejection messages show them, within
    /// [`MAX_DENIAL_LINE_CHARS`] each and [`MAX_DENIAL_BYTES`] in all: findings past that become one
    /// `+N more` entry (every rule id is still in the audit annotations).
    pub fn denial_message(&self) -> Option<String> {
        let lines: Vec<String> = self.with_action(Action::Deny).map(finding_line).collect();
        (!lines.is_empty())
            .then(|| fit_lines(lines, MAX_DENIAL_LINE_CHARS, MAX_DENIAL_BYTES, "; ".len(), "denial").join("; "))
    }

    /// One entry per `warn` finding, as Kubernetes admission warnings show them, within the API
    /// server's limits (see [`fit_warnings`]).
    pub fn warnings(&self) -> Vec<String> {
        fit_warnings(self.with_action(Action::Warn).map(finding_line).collect())
    }

    /// Ids of the rules that fired with `action`, in rule order, each once.
    pub fn rule_ids(&self, action: Action) -> Vec<&str> {
        let mut ids: Vec<&str> = self.with_action(action).map(|f| f.rule.as_str()).collect();
        ids.dedup();
        ids
    }
}

/// Whether requests of `operation` are reviewed at all: CREATE and UPDATE judge the new object;
/// DELETE and CONNECT are always allowed. Hosts may answer the others without evaluating.
pub fn reviews_operation(operation: &str) -> bool {
    matches!(operation, "CREATE" | "UPDATE")
}

/// `rule-id: message (at path)`.
pub fn finding_line(f: &Finding) -> String {
    if f.path.is_root() {
        format!("{}: {}", f.rule, f.message)
    } else {
        format!("{}: {} (at {})", f.rule, f.message, f.path)
    }
}

/// Whether `a` and `b` are the same object (group, kind, namespace, name).
fn same_object(a: &crate::object::Object<'_>, b: &crate::object::Object<'_>) -> bool {
    a.group == b.group && a.kind == b.kind && a.namespace == b.namespace && a.name == b.name
}

impl Policy {
    /// Decides one admission request on the request alone: [`Policy::review_admission_in`] with
    /// no view of the cluster.
    pub fn review_admission(&self, input: &Value) -> AdmissionVerdict {
        self.review_admission_in(input, ClusterView::NONE)
    }

    /// Decides one admission request, asking `cluster` for the objects a cross-object rule
    /// compares it with: only the kinds the rules selecting this object read
    /// ([`Policy::context_kinds_for`]), in the object's namespace, and nothing when none does.
    /// Kinds the source cannot read leave their rules named in
    /// [`AdmissionVerdict::without_context`]. What every admission host calls.
    pub fn review_admission_from(&self, input: &Value, cluster: &mut dyn ClusterSource) -> AdmissionVerdict {
        self.with_cluster_view(input, cluster, |view| self.review_admission_in(input, view))
    }

    /// [`Policy::mutate_admission_in`], asking `cluster` as [`Policy::review_admission_from`] does.
    pub fn mutate_admission_from(&self, input: &Value, cluster: &mut dyn ClusterSource) -> AdmissionMutation {
        self.with_cluster_view(input, cluster, |view| self.mutate_admission_in(input, view))
    }

    /// Calls `then` with the view of the cluster the rules selecting this request's object read.
    fn with_cluster_view<R>(
        &self,
        input: &Value,
        cluster: &mut dyn ClusterSource,
        then: impl FnOnce(ClusterView<'_>) -> R,
    ) -> R {
        let kinds = self.context_kinds_for(input);
        if kinds.is_empty() {
            // No rule selecting this object compares it with others: the cluster holds nothing the
            // review lacks, and no rule needs to be named as decided without it.
            return then(ClusterView { objects: &[], unseen: Unseen::Nothing });
        }
        let namespace = admission_request(input).object_namespace();
        let mut objects = Vec::new();
        let mut unseen = Vec::new();
        for kind in kinds {
            match cluster.objects(kind, namespace) {
                Ok(found) => objects.extend(found),
                Err(_) => unseen.push(kind.to_string()),
            }
        }
        then(ClusterView { objects: &objects, unseen: Unseen::Kinds(&unseen) })
    }

    /// Kinds of cluster objects the rules would compare this request's object with (sorted;
    /// empty when no rule selecting it compares, or the operation is not reviewed): what a host
    /// fetches before [`Policy::review_admission_in`].
    pub fn context_kinds_for(&self, input: &Value) -> Vec<&str> {
        let req = admission_request(input);
        let object = match (req.operation, req.object) {
            (op, Some(o)) if reviews_operation(op) => o,
            _ => return Vec::new(),
        };
        let namespace = if req.namespace.is_empty() { "default" } else { req.namespace };
        self.context_kinds_of(&Input::from_refs([object], namespace), 0)
    }

    /// Decides one admission request. DELETE and CONNECT are allowed (the rules judge an object's
    /// content, and removing a non-compliant object is never the problem); CREATE and UPDATE
    /// review the new object, in the request's namespace when it has none of its own, together
    /// with the cluster's objects, so cross-object rules decide as they do in CI.
    pub fn review_admission_in(&self, input: &Value, cluster: ClusterView<'_>) -> AdmissionVerdict {
        let req = admission_request(input);
        let object = match (req.operation, req.object) {
            (op, Some(o)) if reviews_operation(op) => o,
            _ => return AdmissionVerdict { allowed: true, ..Default::default() },
        };
        let namespace = if req.namespace.is_empty() { "default" } else { req.namespace };
        let admitted = crate::object::Object::new(object, namespace);
        let peers =
            cluster.objects.iter().filter(|v| !same_object(&crate::object::Object::new(v, namespace), &admitted));
        let mut reviewed = Input::from_refs(std::iter::once(object).chain(peers), namespace);
        if let Some(request) = req.request {
            reviewed = reviewed.with_request(request);
        }
        let mut findings = Vec::new();
        self.review_object(&reviewed, 0, &mut findings);
        let without_context = match cluster.unseen {
            Unseen::Nothing => Vec::new(),
            unseen => self.rules_missing_context(&reviewed, 0, &|kind| unseen.contains(kind)),
        };
        AdmissionVerdict { allowed: findings.iter().all(|f| f.action != Action::Deny), findings, without_context }
    }
}

/// What a mutating review answers: the patch the rules set to mutate apply to the request's
/// object (RFC 6902, the operations `meshguard fix` writes into the file for the same object), the
/// findings it fixes, and the object after it (`None` when nothing changes).
#[derive(Debug, Default)]
pub struct AdmissionMutation {
    pub patch: crate::fix::Patch,
    pub fixed: Vec<Finding>,
    pub object: Option<Value>,
    /// MutatingAdmissionPolicies that failed under `failurePolicy: Fail`: the request is denied.
    pub denied: Vec<Finding>,
}

impl Policy {
    /// The mutation of one admission request: the fixes of the rules that mutate in its
    /// namespace ([`crate::policy::RuleInfo::mutates_in`]), found and applied round after round as
    /// `meshguard fix` does ([`crate::fix::fix_values`]), with the cluster's objects as context.
    /// The mutated object is then validated as any other ([`Policy::review_admission_in`]), as the
    /// API server runs mutation before validation: a fixed finding no longer denies.
    pub fn mutate_admission_in(&self, input: &Value, cluster: ClusterView<'_>) -> AdmissionMutation {
        let req = admission_request(input);
        let object = match (req.operation, req.object) {
            (op, Some(o)) if reviews_operation(op) => o,
            _ => return AdmissionMutation::default(),
        };
        let namespace = if req.namespace.is_empty() { "default" } else { req.namespace };
        let admitted = crate::object::Object::new(object, namespace);
        let mut values: Vec<Value> = std::iter::once(object.clone())
            .chain(
                cluster
                    .objects
                    .iter()
                    .filter(|v| !same_object(&crate::object::Object::new(v, namespace), &admitted))
                    .cloned(),
            )
            .collect();
        // MutatingAdmissionPolicies first, as the API server runs them before webhooks.
        let policies = self.apply_mutating_policies(&mut values, namespace, req.request, Some(0));
        let denied = policies.denied.clone();
        let mutating = |f: &Finding| self.rules().any(|r| r.id == f.rule && r.mutates_in(&f.namespace));
        let fixed = crate::fix::fix_values(&mut values, |values, _| {
            let mut reviewed = Input::from_refs(values.iter(), namespace);
            if let Some(request) = req.request {
                reviewed = reviewed.with_request(request);
            }
            let mut findings = Vec::new();
            self.review_object(&reviewed, 0, &mut findings);
            findings.retain(|f| f.fix.is_some() && mutating(f));
            Ok::<_, std::convert::Infallible>(findings)
        });
        let Ok(fixed) = fixed;
        let mut fixed = fixed.after_policies(policies);
        let patch = std::mem::take(&mut fixed.patches[0]);
        let changed = !patch.0.is_empty();
        AdmissionMutation {
            patch,
            fixed: std::mem::take(&mut fixed.fixed[0]),
            object: changed.then(|| values.swap_remove(0)),
            denied,
        }
    }
}

/// One call's mutation and the verdict on the object after it, for hosts that answer both at once
/// (Kubewarden's `validate` returns `mutated_object` with its accept or reject).
#[derive(Debug, Default)]
pub struct AdmissionOutcome {
    pub mutation: AdmissionMutation,
    pub verdict: AdmissionVerdict,
}

/// `input` (an AdmissionReview, an AdmissionRequest or a bare object) with its object replaced.
fn with_object(input: &Value, object: &Value) -> Value {
    let mut replaced = input.clone();
    let slot = match replaced.get_mut("request").filter(|r| r.is_object()) {
        Some(request) => request.get_mut("object"),
        None if admission_request(input).request.is_some() => replaced.get_mut("object"),
        None => return object.clone(),
    };
    if let Some(slot) = slot {
        *slot = object.clone();
    }
    replaced
}

impl Policy {
    /// Mutates the request ([`Policy::mutate_admission_in`]) and reviews the object after it
    /// ([`Policy::review_admission_in`]), with one view of the cluster: as the API server runs a
    /// mutating webhook and then the validating one.
    pub fn admit_from(&self, input: &Value, cluster: &mut dyn ClusterSource) -> AdmissionOutcome {
        self.with_cluster_view(input, cluster, |view| {
            let mutation = self.mutate_admission_in(input, view);
            let mut verdict = match &mutation.object {
                Some(object) => self.review_admission_in(&with_object(input, object), view),
                None => self.review_admission_in(input, view),
            };
            if !mutation.denied.is_empty() {
                verdict.allowed = false;
                verdict.findings.splice(0..0, mutation.denied.iter().cloned());
            }
            AdmissionOutcome { mutation, verdict }
        })
    }
}

#[cfg(test)]
#[cfg(all(feature = "kubernetes", feature = "yaml"))]
mod tests {
    use super::*;
    use serde_json::json;

    fn bad_service() -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api"}, "spec": {"ports": [{"name": "web", "port": 80}]}})
    }

    #[test]
    fn warnings_fit_the_api_server_limits() {
        assert_eq!(fit_warnings(vec!["a: short".into()]), vec!["a: short".to_string()]);
        let long = format!("rule: {}", "word ".repeat(80));
        let fitted = fit_warnings(vec![long]);
        assert!(fitted[0].chars().count() <= MAX_WARNING_CHARS, "{}", fitted[0]);
        assert!(fitted[0].ends_with("word…"), "cut at a word: {}", fitted[0]);
        let many: Vec<String> = (0..100).map(|i| format!("rule-{i}: {}", "x".repeat(100))).collect();
        let fitted = fit_warnings(many);
        let total: usize = fitted.iter().map(String::len).sum();
        assert!(total <= MAX_WARNINGS_BYTES, "{total}");
        let last = fitted.last().unwrap();
        assert!(last.starts_with(&format!("+{} more warnings", 100 - (fitted.len() - 1))), "{last}");
        // Exactly at the limit nothing is dropped.
        let exact: Vec<String> = (0..16).map(|_| "y".repeat(256)).collect();
        assert_eq!(fit_warnings(exact).len(), 16);
    }

    #[test]
    fn request_shapes_and_operations() {
        let p = Policy::default_rules().unwrap();
        let req = json!({"uid": "1", "operation": "CREATE", "namespace": "shop", "object": bad_service()});
        let v = p.review_admission(&req);
        assert!(!v.allowed);
        assert_eq!(v.findings[0].namespace, "shop", "the request's namespace fills in");
        assert_eq!(v.denial_message().unwrap(), "istio-port-name: port 80 (`web`): name `web` does not start with a protocol (http, http2, https, grpc, grpc-web, tcp, tls, udp, mongo, mysql, redis); rename it to `http-web` or set appProtocol (at spec.ports[0].name)");
        assert_eq!(p.review_admission(&json!({"request": req.clone()})), v, "an AdmissionReview works too");
        assert!(!p.review_admission(&bad_service()).allowed, "a bare object is a CREATE");
        let delete = json!({"operation": "DELETE", "namespace": "shop", "object": null, "oldObject": bad_service()});
        assert!(p.review_admission(&delete).allowed);
        let view = admission_request(&req);
        assert_eq!((view.object_namespace(), view.uid()), ("shop", json!("1")));
        let own = json!({"namespace": "shop", "object": {"metadata": {"namespace": "blog"}}});
        assert_eq!(admission_request(&own).object_namespace(), "blog", "the object's own namespace wins");
        assert_eq!(
            (admission_request(&bad_service()).object_namespace(), admission_request(&bad_service()).uid()),
            ("default", json!(""))
        );
        let kube = json!({"operation": "UPDATE", "namespace": "kube-system", "object": bad_service(), "oldObject": bad_service()});
        assert!(p.review_admission(&kube).allowed, "kube-* is excluded by the default rules");
    }

    fn headless(name: &str, port_name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "shop"},
               "spec": {"clusterIP": "None", "ports": [{"name": port_name, "port": 5000}]}})
    }

    #[test]
    fn cluster_objects_decide_cross_object_rules_as_ci_does() {
        let p = Policy::default_rules().unwrap();
        let existing =
            [headless("db", "tcp-db"), json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})];
        let req = json!({"operation": "CREATE", "namespace": "shop", "object": headless("cache", "http-cache")});

        let alone = p.review_admission(&req);
        assert!(alone.allowed);
        assert_eq!(alone.without_context, vec!["istio-headless-port-conflict"], "says which rule saw no peers");

        let seen = p.review_admission_in(&req, ClusterView { objects: &existing, unseen: Unseen::Nothing });
        assert!(!seen.allowed);
        assert_eq!(seen.findings.len(), 1);
        assert_eq!(seen.findings[0].rule, "istio-headless-port-conflict");
        assert!(seen.without_context.is_empty());
        // A host handing the same objects over as a source gets the same verdict.
        assert_eq!(p.review_admission_from(&req, &mut ClusterObjects(&existing)), seen);
        // CI over the same objects finds the same thing on the admitted Service.
        let repo = [headless("cache", "http-cache"), existing[0].clone(), existing[1].clone()];
        let ci = p.review(&Input::new(&repo, "default"));
        let ci_on_cache: Vec<_> = ci.iter().filter(|f| f.name == "cache").collect();
        assert_eq!(ci_on_cache.len(), 1);
        assert_eq!(
            (&ci_on_cache[0].rule, &ci_on_cache[0].message, &ci_on_cache[0].path),
            (&seen.findings[0].rule, &seen.findings[0].message, &seen.findings[0].path)
        );

        // An UPDATE replaces the stored version instead of conflicting with it.
        let update = json!({"operation": "UPDATE", "namespace": "shop", "object": headless("db", "http-db"), "oldObject": headless("db", "tcp-db")});
        assert!(p.review_admission_in(&update, ClusterView { objects: &existing, unseen: Unseen::Nothing }).allowed);

        assert_eq!(p.context_kinds_for(&req), vec!["Service"], "a headless Service compares with Services only");
        let plain = json!({"operation": "CREATE", "namespace": "shop", "object": bad_service()});
        assert!(p.context_kinds_for(&plain).is_empty(), "a ClusterIP Service compares with nothing");
        // Only the kinds the host could not read are reported.
        let partial =
            p.review_admission_in(&req, ClusterView { objects: &[], unseen: Unseen::Kinds(&["Sidecar".into()]) });
        assert!(partial.without_context.is_empty());
        assert!(
            p.context_kinds().contains(&"Service") && p.context_kinds().contains(&"Namespace"),
            "{:?}",
            p.context_kinds()
        );
    }

    /// A workload whose pod template already settles the start-order and drain rules (the app
    /// waits for its proxy, the proxy is told how to drain) needs no cluster objects: an admission
    /// host makes no context call for it, and its verdict is the same with and without them.
    #[test]
    fn a_template_that_settles_start_order_and_drain_needs_no_cluster_objects() {
        let p = Policy::default_rules().unwrap();
        let deployment = |config: &str| {
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": "shop"},
                   "spec": {"template": {"metadata": {"annotations": {"proxy.istio.io/config": config}},
                            "spec": {"terminationGracePeriodSeconds": 60, "containers": [{"name": "api", "image": "shop/api:1",
                              "ports": [{"name": "http", "containerPort": 8080}],
                              "lifecycle": {"preStop": {"sleep": {"seconds": 20}}}}]}}}})
        };
        let settled = json!({"operation": "CREATE", "namespace": "shop",
            "object": deployment("holdApplicationUntilProxyStarts: true\nterminationDrainDuration: 20s")});
        assert!(p.context_kinds_for(&settled).is_empty(), "{:?}", p.context_kinds_for(&settled));
        let alone = p.review_admission(&settled);
        assert!(alone.without_context.is_empty(), "{:?}", alone.without_context);
        let injected = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"istio-injection": "enabled"}}});
        let with_cluster =
            p.review_admission_in(&settled, ClusterView { objects: &[injected], unseen: Unseen::Nothing });
        assert_eq!(alone.findings, with_cluster.findings);

        // Without the hold, the Namespace decides whether a sidecar starts first; without the
        // drain setting, the Services say whether the pods serve HTTP.
        let open = json!({"operation": "CREATE", "namespace": "shop", "object": deployment("{}")});
        let mut kinds = p.context_kinds_for(&open);
        kinds.sort_unstable();
        assert_eq!(kinds, vec!["Namespace", "Service"]);
    }
}
