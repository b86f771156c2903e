//! The webhook's view of the cluster: manifests standing for what is already there (a GitOps
//! repo's rendered output, or `kubectl get -A -o yaml` of the kinds the rules compare with),
//! read directly by the native engine and answering Kubewarden's context-aware calls for the wasm
//! module, so cross-object rules decide at admission as CI decides over the same objects.

use anyhow::{bail, Context, Result};
use policy_core::object::Object;
use serde_json::{json, Value};
use std::path::PathBuf;

pub struct ClusterSnapshot {
    objects: Vec<Value>,
}

impl ClusterSnapshot {
    /// Reads `paths` as `meshguard check` reads its inputs; any unreadable or malformed file is
    /// an error naming it (a partial view would make admission decide on missing peers).
    pub fn load(paths: &[PathBuf]) -> Result<ClusterSnapshot> {
        let sources = crate::sources::load(paths).context("--cluster")?;
        if let Some(e) = sources.errors.first() {
            bail!("--cluster: {}:{}:{}: {}", e.file, e.line, e.column, e.message);
        }
        Ok(ClusterSnapshot { objects: sources.objects.into_iter().map(|o| o.value).collect() })
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// The snapshot as the native engine reads it: directly, no host-call round trip.
    pub fn source(&self) -> policy_core::ClusterObjects<'_> {
        policy_core::ClusterObjects(&self.objects)
    }

    /// Kubewarden's `kubernetes/list_resources_by_namespace` and `kubernetes/get_resource`.
    pub fn answer(&self, binding: &str, namespace: &str, operation: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
        if (binding, namespace) != ("kubewarden", "kubernetes") {
            return Err(format!("unsupported host call {binding}/{namespace}/{operation}"));
        }
        let request: Value = serde_json::from_slice(payload).map_err(|e| format!("{operation}: {e}"))?;
        let field = |k: &str| request.get(k).and_then(Value::as_str).unwrap_or("");
        let matching = self.objects.iter().filter(|v| {
            v.get("apiVersion").and_then(Value::as_str) == Some(field("api_version"))
                && v.get("kind").and_then(Value::as_str) == Some(field("kind"))
        });
        match operation {
            "list_resources_by_namespace" => {
                let items: Vec<&Value> =
                    matching.filter(|v| Object::new(v, "default").namespace == field("namespace")).collect();
                serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "List", "items": items}))
                    .map_err(|e| e.to_string())
            }
            "get_resource" => {
                let found = matching.into_iter().find(|v| {
                    let o = Object::new(v, "default");
                    o.name == field("name") && (o.is_cluster_scoped() || o.namespace == field("namespace"))
                });
                match found {
                    Some(v) => serde_json::to_vec(v).map_err(|e| e.to_string()),
                    None => Err(format!("{} `{}` not found", field("kind"), field("name"))),
                }
            }
            other => Err(format!("unsupported host call kubernetes/{other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> ClusterSnapshot {
        ClusterSnapshot {
            objects: vec![
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": "shop"}}),
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "blog"}}),
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"istio-injection": "enabled"}}}),
            ],
        }
    }

    fn call(op: &str, payload: Value) -> Result<Value, String> {
        snapshot()
            .answer("kubewarden", "kubernetes", op, payload.to_string().as_bytes())
            .map(|b| serde_json::from_slice(&b).unwrap())
    }

    #[test]
    fn answers_kubewardens_list_and_get_calls_from_the_snapshot() {
        let list =
            call("list_resources_by_namespace", json!({"api_version": "v1", "kind": "Service", "namespace": "shop"}));
        let items = list.unwrap()["items"].clone();
        assert_eq!(items.as_array().map(Vec::len), Some(1), "only the namespace asked for: {items}");
        assert_eq!(items[0]["metadata"]["name"], "db");
        let ns =
            call("get_resource", json!({"api_version": "v1", "kind": "Namespace", "name": "shop", "namespace": null}));
        assert_eq!(ns.unwrap()["metadata"]["labels"]["istio-injection"], "enabled");
        let missing = call("get_resource", json!({"api_version": "v1", "kind": "Namespace", "name": "blog"}));
        assert_eq!(missing.unwrap_err(), "Namespace `blog` not found");
        assert!(call("can_i", json!({})).unwrap_err().contains("unsupported"));
        let other = snapshot().answer("kubewarden", "oci", "verify", b"{}");
        assert!(other.unwrap_err().contains("unsupported host call kubewarden/oci"));
    }
}
