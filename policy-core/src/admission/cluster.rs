//! What an admission host knows of the cluster besides the request, and how it hands it over.

use crate::object::{api_version_of_kind, with_type_meta, Object};
use serde_json::Value;

/// The cluster as a host reads it: the objects of one kind in one namespace. The waPC guest asks
/// Kubewarden's context-aware calls, the webhook reads its snapshot directly; both meet policy-core
/// here, in [`crate::Policy::review_admission_from`].
pub trait ClusterSource {
    /// Objects of `kind` in `namespace` (for `Namespace`: that namespace's own object), each with
    /// its `apiVersion` and `kind`; `Err` when the host could not read them (no permission, a
    /// failed call), which leaves the rules that needed them named as decided without context.
    fn objects(&mut self, kind: &str, namespace: &str) -> Result<Vec<Value>, String>;
}

/// Objects a host holds in memory (the webhook's `--cluster` snapshot, the JavaScript package's
/// cluster list) as a [`ClusterSource`]. Objects without `apiVersion` or `kind` are not found.
#[derive(Clone, Copy)]
pub struct ClusterObjects<'a>(pub &'a [Value]);

impl ClusterSource for ClusterObjects<'_> {
    fn objects(&mut self, kind: &str, namespace: &str) -> Result<Vec<Value>, String> {
        let api_version = api_version_of_kind(kind).ok_or_else(|| format!("no apiVersion known for {kind}"))?;
        let of_kind = self.0.iter().filter(|v| {
            v.get("apiVersion").and_then(Value::as_str) == Some(api_version)
                && v.get("kind").and_then(Value::as_str) == Some(kind)
        });
        Ok(if kind == "Namespace" {
            of_kind.filter(|v| Object::new(v, "default").name == namespace).take(1).cloned().collect()
        } else {
            of_kind.filter(|v| Object::new(v, "default").namespace == namespace).cloned().collect()
        })
    }
}

/// `objects` answered by a host's lookup without their type (Kubernetes lists leave `apiVersion`
/// and `kind` off their items), with them set.
pub fn typed_objects(objects: Vec<Value>, kind: &str) -> Result<Vec<Value>, String> {
    let api_version = api_version_of_kind(kind).ok_or_else(|| format!("no apiVersion known for {kind}"))?;
    Ok(objects.into_iter().map(|o| with_type_meta(o, api_version, kind)).collect())
}

/// What an admission host knows of the cluster besides the request.
#[derive(Clone, Copy)]
pub struct ClusterView<'a> {
    /// Objects already in the cluster: the request's namespace and its Namespace object are
    /// enough, since every rule compares an object only with peers in its own namespace. The
    /// admitted object's stored version, if present, is left out (the request replaces it).
    pub objects: &'a [Value],
    /// Kinds the host could not read.
    pub unseen: Unseen<'a>,
}

#[derive(Clone, Copy)]
pub enum Unseen<'a> {
    /// The host read every kind the rules need ([`crate::Policy::context_kinds`]).
    Nothing,
    /// These kinds could not be read (no permission, a failed call).
    Kinds(&'a [String]),
    /// The host has no view of the cluster.
    Everything,
}

impl Unseen<'_> {
    pub fn contains(&self, kind: &str) -> bool {
        match self {
            Unseen::Nothing => false,
            Unseen::Kinds(kinds) => kinds.iter().any(|k| k == kind),
            Unseen::Everything => true,
        }
    }
}

impl ClusterView<'_> {
    /// A host without any view of the cluster.
    pub const NONE: ClusterView<'static> = ClusterView { objects: &[], unseen: Unseen::Everything };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_in_memory_answer_by_kind_and_namespace() {
        let objects = [
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": "shop"}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "blog"}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bare"}}),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"istio-injection": "enabled"}}}),
            json!({"apiVersion": "example.com/v1", "kind": "Service", "metadata": {"name": "other", "namespace": "shop"}}),
        ];
        let mut source = ClusterObjects(&objects);
        let names = |found: Vec<Value>| -> Vec<String> {
            found.iter().map(|o| o["metadata"]["name"].as_str().unwrap().to_string()).collect()
        };
        assert_eq!(names(source.objects("Service", "shop").unwrap()), ["db"], "another group's kind is not it");
        assert_eq!(names(source.objects("Service", "default").unwrap()), ["bare"], "no namespace reads as default");
        assert_eq!(names(source.objects("Namespace", "shop").unwrap()), ["shop"]);
        assert!(source.objects("Namespace", "blog").unwrap().is_empty());
        assert!(source.objects("Gadget", "shop").unwrap_err().contains("no apiVersion known for Gadget"));
        let typed = typed_objects(vec![json!({"metadata": {"name": "db"}})], "Service").unwrap();
        assert_eq!((&typed[0]["apiVersion"], &typed[0]["kind"]), (&json!("v1"), &json!("Service")));
    }
}
