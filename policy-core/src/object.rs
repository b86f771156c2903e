//! A read-only view of one Kubernetes object, and the input it is reviewed in.

use crate::path::FieldPath;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// Kinds that live outside namespaces; everything else is namespaced.
const CLUSTER_SCOPED_KINDS: &[&str] = &[
    "Namespace",
    "Node",
    "PersistentVolume",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "StorageClass",
    "PriorityClass",
    "IngressClass",
    "RuntimeClass",
    "APIService",
    "CSIDriver",
    "CSINode",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "ClusterPolicyReport",
    "ClusterAdmissionPolicy",
];

/// Whether objects of `kind` live outside namespaces.
pub fn is_cluster_scoped_kind(kind: &str) -> bool {
    CLUSTER_SCOPED_KINDS.contains(&kind)
}

/// Whether a parsed document is a Kubernetes object (string `apiVersion` and `kind`): other
/// documents in a manifest stream (Helm values, comments-only) are skipped, not reviewed.
pub fn is_kubernetes_object(value: &Value) -> bool {
    value.get("apiVersion").is_some_and(Value::is_string) && value.get("kind").is_some_and(Value::is_string)
}

/// The apiVersion an admission host asks the cluster for when it fetches objects of a kind the
/// rules compare with ([`crate::Policy::context_kinds`]); `None` for kinds it cannot name.
pub fn api_version_of_kind(kind: &str) -> Option<&'static str> {
    match kind {
        "Namespace" | "Service" | "Pod" | "ConfigMap" | "ServiceAccount" | "ReplicationController" => Some("v1"),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => Some("apps/v1"),
        "Sidecar" | "DestinationRule" | "VirtualService" | "ServiceEntry" | "Gateway" | "EnvoyFilter"
        | "WorkloadEntry" => Some("networking.istio.io/v1"),
        _ => None,
    }
}

/// `value` with `apiVersion` and `kind` filled in where missing: list responses from the API
/// server and Gatekeeper's inventory leave them to the list or the map key.
pub fn with_type_meta(mut value: Value, api_version: &str, kind: &str) -> Value {
    if let Some(map) = value.as_object_mut() {
        map.entry("apiVersion").or_insert_with(|| Value::String(api_version.to_string()));
        map.entry("kind").or_insert_with(|| Value::String(kind.to_string()));
    }
    value
}

/// Kinds with a pod template (the keys of [`POD_TEMPLATE_PATHS`]).
pub const POD_TEMPLATE_KINDS: &[&str] =
    &["Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job", "CronJob"];

/// Kinds whose pod template the workload checks read, with the path to it.
pub(crate) const POD_TEMPLATE_PATHS: &[(&str, &[&str])] = &[
    ("Pod", &[]),
    ("Deployment", &["spec", "template"]),
    ("StatefulSet", &["spec", "template"]),
    ("DaemonSet", &["spec", "template"]),
    ("ReplicaSet", &["spec", "template"]),
    ("ReplicationController", &["spec", "template"]),
    ("Job", &["spec", "template"]),
    ("CronJob", &["spec", "jobTemplate", "spec", "template"]),
];

static EMPTY_MAP: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();

fn empty_map() -> &'static Map<String, Value> {
    EMPTY_MAP.get_or_init(Map::new)
}

#[derive(Clone, Copy, Debug)]
pub struct Object<'a> {
    pub value: &'a Value,
    pub kind: &'a str,
    pub group: &'a str,
    pub name: &'a str,
    /// The object's namespace, or the input's default namespace for a namespaced kind without one;
    /// empty for cluster-scoped kinds.
    pub namespace: &'a str,
    /// The pod template and its path, found once: most workload checks start from it.
    template: Option<PodTemplate<'a>>,
}

impl<'a> Object<'a> {
    pub fn new(value: &'a Value, default_namespace: &'a str) -> Self {
        let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
        let api_version = value.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        let meta = value.get("metadata");
        let name = meta.and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or("");
        let namespace = if CLUSTER_SCOPED_KINDS.contains(&kind) {
            ""
        } else {
            meta.and_then(|m| m.get("namespace")).and_then(Value::as_str).unwrap_or(default_namespace)
        };
        let template = POD_TEMPLATE_PATHS.iter().find(|(k, _)| *k == kind).and_then(|(_, steps)| {
            steps.iter().try_fold(value, |v, step| v.get(*step)).map(|template| PodTemplate::new(template, steps))
        });
        Object { value, kind, group, name, namespace, template }
    }

    pub fn is_cluster_scoped(&self) -> bool {
        is_cluster_scoped_kind(self.kind)
    }

    pub fn labels(&self) -> &'a Map<String, Value> {
        string_map(self.value.get("metadata").and_then(|m| m.get("labels")))
    }

    pub fn annotations(&self) -> &'a Map<String, Value> {
        string_map(self.value.get("metadata").and_then(|m| m.get("annotations")))
    }

    pub fn spec(&self) -> Option<&'a Value> {
        self.value.get("spec")
    }

    /// The pod template of a workload (a Pod is its own template).
    pub fn pod_template(&self) -> Option<PodTemplate<'a>> {
        self.template
    }
}

pub fn string_map(v: Option<&Value>) -> &Map<String, Value> {
    v.and_then(Value::as_object).unwrap_or_else(|| empty_map())
}

/// A pod template (or a Pod) and where it sits in its object. Paths are built only when asked
/// for (a finding needs one): every workload check looks up the template on every review, and
/// its spec, labels and annotations several times, so those are found once.
#[derive(Clone, Copy, Debug)]
pub struct PodTemplate<'a> {
    pub value: &'a Value,
    steps: &'static [&'static str],
    spec: Option<&'a Value>,
    labels: &'a Map<String, Value>,
    annotations: &'a Map<String, Value>,
}

impl<'a> PodTemplate<'a> {
    fn new(value: &'a Value, steps: &'static [&'static str]) -> Self {
        let metadata = value.get("metadata");
        PodTemplate {
            value,
            steps,
            spec: value.get("spec"),
            labels: string_map(metadata.and_then(|m| m.get("labels"))),
            annotations: string_map(metadata.and_then(|m| m.get("annotations"))),
        }
    }

    /// Where the template sits in its object.
    fn path(&self) -> FieldPath {
        self.steps.iter().fold(FieldPath::root(), |path, step| path.key(step))
    }

    pub fn metadata_path(&self) -> FieldPath {
        self.path().key("metadata")
    }

    pub fn spec_path(&self) -> FieldPath {
        self.path().key("spec")
    }

    pub fn spec(&self) -> Option<&'a Value> {
        self.spec
    }

    pub fn labels(&self) -> &'a Map<String, Value> {
        self.labels
    }

    pub fn annotations(&self) -> &'a Map<String, Value> {
        self.annotations
    }

    /// Path to an annotation, or to the nearest existing parent when it is absent.
    pub fn annotation_path(&self, key: &str) -> FieldPath {
        self.metadata_path().key("annotations").key(key)
    }

    /// The app containers (not init containers), each with its index ([`PodTemplate::container_path`]).
    pub fn containers(&self) -> impl Iterator<Item = (usize, &'a Value)> {
        self.spec().and_then(|s| s.get("containers")).and_then(Value::as_array).into_iter().flatten().enumerate()
    }

    /// The path of the app container at `index`.
    pub fn container_path(&self, index: usize) -> FieldPath {
        self.spec_path().key("containers").index(index)
    }
}

/// Reads a label or annotation the way Kubernetes stores them (strings), tolerating YAML booleans.
pub fn map_str<'m>(map: &'m Map<String, Value>, key: &str) -> Option<std::borrow::Cow<'m, str>> {
    match map.get(key)? {
        Value::String(s) => Some(std::borrow::Cow::Borrowed(s.as_str())),
        Value::Bool(b) => Some(std::borrow::Cow::Owned(b.to_string())),
        Value::Number(n) => Some(std::borrow::Cow::Owned(n.to_string())),
        _ => None,
    }
}

/// Up to this many objects, [`Input::in_namespace`] scans them instead of keeping an index.
const SCANNED_OBJECTS: usize = 16;

/// Everything one review sees: the objects (a whole manifest repo in CI, one object at admission)
/// and what is known about their namespaces.
pub struct Input<'a> {
    pub objects: Vec<Object<'a>>,
    /// Labels of namespaces, from Namespace objects in the input or supplied by the host.
    pub namespace_labels: HashMap<String, &'a Map<String, Value>>,
    /// Object indexes by (namespace, kind), so peer lookups stay linear over a 10,000-object repo;
    /// `None` for a few objects (admission: one object and its peers), where a scan costs less
    /// than hashing.
    by_namespace_kind: Option<HashMap<(&'a str, &'a str), Vec<usize>>>,
    /// Namespace objects of the input, by name (CEL's `namespaceObject`).
    namespaces: HashMap<&'a str, &'a Value>,
    /// The AdmissionRequest under review at admission (CEL's `request` and `oldObject`); `None`
    /// in CI, where a review stands for creating each object.
    pub request: Option<&'a Value>,
}

impl<'a> Input<'a> {
    /// Objects without `metadata.namespace` are placed in `default_namespace`, as `kubectl apply` does.
    pub fn new(values: &'a [Value], default_namespace: &'a str) -> Self {
        Self::from_refs(values, default_namespace)
    }

    /// [`Input::new`] over objects that need not sit in one slice (an admitted object and the
    /// cluster objects a host fetched for it).
    pub fn from_refs(values: impl IntoIterator<Item = &'a Value>, default_namespace: &'a str) -> Self {
        let objects: Vec<Object<'a>> = values.into_iter().map(|v| Object::new(v, default_namespace)).collect();
        let mut namespace_labels = HashMap::new();
        let mut by_namespace_kind = (objects.len() > SCANNED_OBJECTS).then(HashMap::new);
        let mut namespaces = HashMap::new();
        for (i, o) in objects.iter().enumerate() {
            if o.kind == "Namespace" && o.group.is_empty() {
                namespace_labels.insert(o.name.to_string(), o.labels());
                namespaces.insert(o.name, o.value);
            }
            if let Some(index) = &mut by_namespace_kind {
                index.entry((o.namespace, o.kind)).or_insert_with(Vec::new).push(i);
            }
        }
        Input { objects, namespace_labels, by_namespace_kind, namespaces, request: None }
    }

    /// The AdmissionRequest this input comes from.
    pub fn with_request(mut self, request: &'a Value) -> Self {
        self.request = Some(request);
        self
    }

    /// The Namespace object named `name`, when the input holds it.
    pub fn namespace_object(&self, name: &str) -> Option<&'a Value> {
        self.namespaces.get(name).copied()
    }

    /// Objects of `kind` in `namespace` (`""`: cluster-scoped), in input order, from the index (or
    /// a scan of a few objects): a policy's param object is looked up for every object reviewed.
    pub fn in_namespace<'s>(&'s self, namespace: &'s str, kind: &'s str) -> impl Iterator<Item = &'s Object<'a>> + 's {
        let (indexes, scanned) = match &self.by_namespace_kind {
            Some(index) => (index.get(&(namespace, kind)).map_or(&[][..], Vec::as_slice), &[][..]),
            None => (&[][..], self.objects.as_slice()),
        };
        let indexed = indexes.iter().filter_map(|i| self.objects.get(*i));
        indexed.chain(scanned.iter().filter(move |o| o.namespace == namespace && o.kind == kind))
    }

    /// Adds labels of a namespace the input does not contain (e.g. what an admission host knows).
    pub fn with_namespace_labels(mut self, namespace: &str, labels: &'a Map<String, Value>) -> Self {
        self.namespace_labels.entry(namespace.to_string()).or_insert(labels);
        self
    }

    /// Labels of the namespace an object lives in (a Namespace object's own labels).
    pub fn labels_of_namespace(&self, obj: &Object<'a>) -> Option<&'a Map<String, Value>> {
        if obj.kind == "Namespace" {
            return Some(obj.labels());
        }
        self.namespace_labels.get(obj.namespace).copied()
    }

    /// Other objects of `kind` in the same namespace as `obj`.
    pub fn peers<'s>(&'s self, obj: &'s Object<'a>, kind: &'s str) -> impl Iterator<Item = &'s Object<'a>> + 's {
        self.in_namespace(obj.namespace, kind).filter(move |o| !std::ptr::eq(o.value, obj.value))
    }
}

#[cfg(test)]
mod tests {
    use super::{Input, SCANNED_OBJECTS};
    use serde_json::{json, Value};

    #[test]
    fn peers_are_the_same_whether_scanned_or_indexed() {
        let object = |i: usize| {
            let kind = ["Service", "Deployment", "Sidecar"][i % 3];
            json!({"apiVersion": "v1", "kind": kind, "metadata": {"name": format!("o{i}"), "namespace": format!("ns{}", i % 2)}})
        };
        for count in [3, SCANNED_OBJECTS, SCANNED_OBJECTS + 1, 40] {
            let values: Vec<Value> = (0..count).map(object).collect();
            let input = Input::new(&values, "default");
            assert_eq!(input.by_namespace_kind.is_some(), count > SCANNED_OBJECTS, "{count} objects");
            for (ns, kind) in [("ns0", "Service"), ("ns1", "Deployment"), ("ns1", "Sidecar"), ("ns2", "Service")] {
                let found: Vec<&str> = input.in_namespace(ns, kind).map(|o| o.name).collect();
                let expected: Vec<&str> =
                    input.objects.iter().filter(|o| o.namespace == ns && o.kind == kind).map(|o| o.name).collect();
                assert_eq!(found, expected, "{kind} in {ns} among {count} objects");
            }
        }
    }
}
