//! Kubewarden's waPC host stack (`wapc` + `wasmtime-provider`) loading the built module, with
//! the context-aware calls answered from a cluster a test sets: shared by the tests that run the
//! Kubewarden module as Kubewarden does (`#[path]`-included, since `wapc` is a test dependency).

use meshguard_tests::envoy::built_module;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

/// The cluster a case's requests are admitted into, served to the waPC guest the way Kubewarden
/// answers its context-aware calls (`kubernetes/list_resources_by_namespace`, `get_resource`).
pub type Cluster = Arc<Mutex<Vec<Value>>>;

pub fn kubewarden_callback(cluster: Cluster) -> Box<wapc::HostCallback> {
    Box::new(move |_, binding, namespace, operation, payload| {
        if (binding, namespace) != ("kubewarden", "kubernetes") {
            return Err(format!("unknown host call {binding}/{namespace}").into());
        }
        let request: Value = serde_json::from_slice(payload)?;
        let objects = cluster.lock().map_err(|e| e.to_string())?.clone();
        let is = |o: &Value, key: &str, field: &str| o.pointer(field).and_then(Value::as_str) == request[key].as_str();
        let of_kind = objects.into_iter().filter(|o| is(o, "kind", "/kind") && is(o, "api_version", "/apiVersion"));
        match operation {
            "list_resources_by_namespace" => {
                let items: Vec<Value> = of_kind.filter(|o| is(o, "namespace", "/metadata/namespace")).collect();
                Ok(serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "List", "items": items}))?)
            }
            "get_resource" => match of_kind.into_iter().find(|o| is(o, "name", "/metadata/name")) {
                Some(o) => Ok(serde_json::to_vec(&o)?),
                None => Err("not found".into()),
            },
            other => Err(format!("unexpected host call {other}").into()),
        }
    })
}

pub fn wapc_host_in(cluster: Option<Cluster>) -> wapc::WapcHost {
    let bytes = std::fs::read(built_module("dist/meshguard-kubewarden.wasm").unwrap()).unwrap();
    let engine = wasmtime_provider::WasmtimeEngineProviderBuilder::new().module_bytes(&bytes).build().unwrap();
    wapc::WapcHost::new(Box::new(engine), cluster.map(kubewarden_callback)).unwrap()
}
