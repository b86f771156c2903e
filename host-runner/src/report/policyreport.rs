use super::Printer;
use crate::check::Report;
use policy_core::Action;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;

/// The wgpolicyk8s.io/v1alpha2 format Kyverno and Kubewarden audit tools emit: a PolicyReport per
/// namespace and a ClusterPolicyReport for cluster-scoped objects, in one `List`. Every object and
/// rule pair is a result: `pass`, or `fail` (deny, and audit: a dry-run deny) / `warn`.
pub struct PolicyReportPrinter;

fn result(a: Action) -> &'static str {
    match a {
        Action::Deny | Action::Audit => "fail",
        Action::Warn => "warn",
    }
}

impl Printer for PolicyReportPrinter {
    fn print(&self, report: &Report, out: &mut dyn Write) -> std::io::Result<()> {
        let mut by_namespace: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
        let index = report.findings_index();
        for o in &report.objects {
            let mut resource = json!({"apiVersion": o.api_version, "kind": o.kind, "name": o.name});
            if !o.namespace.is_empty() {
                resource["namespace"] = json!(o.namespace);
            }
            for rule in &report.rules {
                let hits = index.on(o, rule);
                let results = by_namespace.entry(o.namespace.as_str()).or_default();
                if hits.is_empty() {
                    results.push(json!({"policy": "meshguard", "rule": rule, "result": "pass", "source": "meshguard", "scored": true, "resources": [resource]}));
                }
                for f in hits.iter().copied() {
                    results.push(json!({
                        "policy": "meshguard", "rule": rule, "result": result(f.action), "message": f.message,
                        "source": "meshguard", "scored": true, "resources": [resource],
                        "properties": {"action": f.action.as_str(), "path": f.path, "file": f.file, "line": f.line.to_string()}
                    }));
                }
            }
        }
        let items: Vec<Value> = by_namespace
            .into_iter()
            .map(|(ns, results)| {
                let count = |r: &str| results.iter().filter(|x| x["result"] == r).count();
                let summary = json!({"pass": count("pass"), "fail": count("fail"), "warn": count("warn"), "error": 0, "skip": 0});
                if ns.is_empty() {
                    json!({"apiVersion": "wgpolicyk8s.io/v1alpha2", "kind": "ClusterPolicyReport",
                           "metadata": {"name": "meshguard-cluster"}, "summary": summary, "results": results})
                } else {
                    json!({"apiVersion": "wgpolicyk8s.io/v1alpha2", "kind": "PolicyReport",
                           "metadata": {"name": format!("meshguard-{ns}"), "namespace": ns}, "summary": summary, "results": results})
                }
            })
            .collect();
        serde_json::to_writer_pretty(&mut *out, &json!({"apiVersion": "v1", "kind": "List", "items": items}))?;
        writeln!(out)
    }
}
