//! Generated Kubernetes objects for the differential tests: Services, workloads, Istio objects
//! and Namespaces, with the fields the checks read varied over their interesting values.

use proptest::prelude::*;
use serde_json::{json, Value};

fn port_name() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        prop::sample::select(vec![
            "http", "http-web", "grpc", "tcp-db", "web", "metrics", "HTTP2-x", "grpc-web", "redis", "udp-dns"
        ])
        .prop_map(|s| Some(s.to_string())),
    ]
}

pub fn service() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec!["shop", "pay", "kube-system", "istio-system"]),
        "[a-z]{1,6}",
        any::<bool>(),
        prop::collection::vec(
            (
                port_name(),
                prop::sample::select(vec![80u16, 443, 7000, 8080, 9090]),
                prop::option::of(prop::sample::select(vec!["http", "grpc", "websocket"])),
            ),
            1..4,
        ),
    )
        .prop_map(|(ns, name, headless, ports)| {
            let ports: Vec<Value> = ports
                .into_iter()
                .map(|(n, p, app)| {
                    let mut port = json!({"port": p});
                    if let Some(n) = n {
                        port["name"] = json!(n);
                    }
                    if let Some(a) = app {
                        port["appProtocol"] = json!(a);
                    }
                    port
                })
                .collect();
            let mut spec = json!({"ports": ports, "selector": {"app": name}});
            if headless {
                spec["clusterIP"] = json!("None");
            }
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": spec})
        })
}

pub fn workload() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec!["Deployment", "StatefulSet", "DaemonSet", "Pod", "Job", "CronJob"]),
        prop::sample::select(vec!["shop", "pay"]),
        "[a-z]{1,6}",
        prop::option::of(0u64..90),
        prop::option::of(0u64..120),
        any::<bool>(),
        prop::option::of(prop::sample::select(vec!["true", "false"])),
    )
        .prop_map(|(kind, ns, name, sleep, grace, hold, inject)| {
            let mut container = json!({"name": name, "image": "registry.example.com/app:1", "ports": [{"name": "http", "containerPort": 8080}]});
            if let Some(s) = sleep {
                container["lifecycle"] = json!({"preStop": {"exec": {"command": ["sh", "-c", format!("sleep {s}")]}}});
            }
            let mut pod_spec = json!({"containers": [container]});
            if let Some(g) = grace {
                pod_spec["terminationGracePeriodSeconds"] = json!(g);
            }
            let mut meta = json!({"labels": {"app": name}});
            if hold {
                meta["annotations"] = json!({"proxy.istio.io/config": "holdApplicationUntilProxyStarts: true"});
            }
            if let Some(i) = inject {
                meta["labels"]["sidecar.istio.io/inject"] = json!(i);
            }
            if kind == "CronJob" {
                json!({"apiVersion": "batch/v1", "kind": kind, "metadata": {"name": name, "namespace": ns}, "spec": {"schedule": "@daily", "jobTemplate": {"spec": {"template": {"metadata": meta, "spec": pod_spec}}}}})
            } else if kind == "Job" {
                json!({"apiVersion": "batch/v1", "kind": kind, "metadata": {"name": name, "namespace": ns}, "spec": {"template": {"metadata": meta, "spec": pod_spec}}})
            } else if kind == "Pod" {
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": meta["labels"], "annotations": meta.get("annotations").cloned().unwrap_or(json!({}))}, "spec": pod_spec})
            } else {
                json!({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": ns}, "spec": {"template": {"metadata": meta, "spec": pod_spec}}})
            }
        })
}

pub fn istio_object() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec!["VirtualService", "DestinationRule", "ServiceEntry", "Sidecar", "EnvoyFilter"]),
        prop::sample::select(vec!["shop", "pay", "istio-system"]),
        prop::sample::select(vec!["api", "api.shop.svc.cluster.local", "*", "x.pay.svc.cluster.local", "ext.example.com"]),
        prop::option::of(prop::collection::vec(prop::sample::select(vec![".", "shop", "*"]), 0..3)),
    )
        .prop_map(|(kind, ns, host, export)| {
            let mut spec = json!({"hosts": [host], "host": host});
            if let Some(e) = export {
                spec["exportTo"] = json!(e);
            }
            json!({"apiVersion": "networking.istio.io/v1", "kind": kind, "metadata": {"name": "o", "namespace": ns}, "spec": spec})
        })
}

/// A Namespace of the generated objects, with or without Istio's injection labels.
pub fn namespace() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec!["shop", "pay"]),
        prop::sample::select(vec![
            None,
            Some(("istio-injection", "enabled")),
            Some(("istio-injection", "disabled")),
            Some(("istio.io/rev", "1-24")),
        ]),
    )
        .prop_map(|(name, label)| {
            let labels = match label {
                Some((k, v)) => json!({k: v}),
                None => json!({}),
            };
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
        })
}
