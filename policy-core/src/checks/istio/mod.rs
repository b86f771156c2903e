//! The Istio guardrail pack: the tenant mistakes that cause mesh incidents, one file per family
//! (as the corpus files are): `ports`, `workloads`, `traffic`, `platform`. Helpers they share
//! live here.

pub(crate) mod platform;
pub(crate) mod ports;
pub(crate) mod traffic;
pub(crate) mod workloads;

use crate::object::Object;
use crate::path::FieldPath;
use serde_json::Value;

const INJECT_KEY: &str = "sidecar.istio.io/inject";
const PROXY_CONFIG_KEY: &str = "proxy.istio.io/config";

fn default_protocols() -> Vec<String> {
    ["http", "http2", "https", "grpc", "grpc-web", "tcp", "tls", "udp", "mongo", "mysql", "redis"]
        .map(String::from)
        .to_vec()
}

fn http_protocols() -> Vec<String> {
    ["http", "http2", "grpc", "grpc-web"].map(String::from).to_vec()
}

fn istio_system() -> Vec<String> {
    vec!["istio-system".to_string()]
}

fn yes() -> bool {
    true
}

/// The protocol a port name declares: the longest known protocol `p` with name `p` or `p-<suffix>`.
fn protocol_of_name<'p>(name: &str, protocols: &'p [String]) -> Option<&'p str> {
    // `name`, ASCII-lowercased, equals `p` or starts with `p-`; compared in place, since every
    // Service port of every review passes through here.
    let name = name.as_bytes();
    let names = |p: &String| {
        let p = p.as_bytes();
        name.len() >= p.len()
            && name.iter().zip(p).all(|(n, p)| n.to_ascii_lowercase() == *p)
            && (name.len() == p.len() || name[p.len()] == b'-')
    };
    protocols.iter().filter(|p| names(p)).max_by_key(|p| p.len()).map(String::as_str)
}

/// The protocol Istio infers for a Service port: `appProtocol` first, then the name prefix.
fn port_protocol(port: &Value, protocols: &[String]) -> Option<String> {
    if let Some(app) = port.get("appProtocol").and_then(Value::as_str) {
        return Some(app.to_ascii_lowercase());
    }
    let name = port.get("name").and_then(Value::as_str)?;
    protocol_of_name(name, protocols).map(str::to_string)
}

fn suggest_protocol(port: &Value) -> &'static str {
    let number = port.get("targetPort").and_then(Value::as_u64).or_else(|| port.get("port").and_then(Value::as_u64));
    match number {
        Some(80 | 8000 | 8080 | 3000 | 5000 | 9090) => "http",
        Some(443 | 8443) => "https",
        Some(50051) => "grpc",
        Some(3306) => "mysql",
        Some(6379) => "redis",
        Some(27017) => "mongo",
        _ => "tcp",
    }
}

/// A Service's ports with their indexes ([`service_port_path`]).
fn service_ports<'a>(obj: &Object<'a>) -> impl Iterator<Item = (usize, &'a Value)> {
    obj.spec().and_then(|s| s.get("ports")).and_then(Value::as_array).into_iter().flatten().enumerate()
}

fn service_port_path(index: usize) -> FieldPath {
    FieldPath::root().key("spec").key("ports").index(index)
}

fn is_core(obj: &Object<'_>, kind: &str) -> bool {
    obj.kind == kind && obj.group.is_empty()
}

fn is_istio(obj: &Object<'_>, kinds: &[&str]) -> bool {
    kinds.contains(&obj.kind) && obj.group.ends_with("istio.io")
}

fn port_label(port: &Value) -> String {
    match (port.get("name").and_then(Value::as_str), port.get("port")) {
        (Some(name), Some(n)) => format!("port {n} (`{name}`)"),
        (None, Some(n)) => format!("port {n}"),
        (Some(name), None) => format!("port `{name}`"),
        (None, None) => "port".to_string(),
    }
}
