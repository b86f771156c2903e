use super::Printer;
use crate::check::Report;
use policy_core::Action;
use serde_json::{json, Value};
use std::io::Write;

/// SARIF 2.1.0: one run, a result per finding with its file, line and column, so GitHub code
/// scanning annotates the exact line. Input errors become tool execution notifications.
pub struct SarifPrinter;

fn level(a: Action) -> &'static str {
    match a {
        Action::Deny => "error",
        Action::Warn => "warning",
        Action::Audit => "note",
    }
}

impl Printer for SarifPrinter {
    fn print(&self, report: &Report, out: &mut dyn Write) -> std::io::Result<()> {
        let mut rule_ids: Vec<&str> = report.rules.iter().map(String::as_str).collect();
        for f in &report.findings {
            if !rule_ids.contains(&f.rule.as_str()) {
                rule_ids.push(&f.rule);
            }
        }
        let rules: Vec<Value> = rule_ids
            .iter()
            .map(|id| json!({"id": id, "shortDescription": {"text": format!("meshguard rule {id}")}}))
            .collect();
        let results: Vec<Value> = report
            .findings
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let mut result = json!({
                    "ruleId": f.rule,
                    "ruleIndex": rule_ids.iter().position(|id| *id == f.rule),
                    "level": level(f.action),
                    "message": {"text": f.message},
                    "locations": [{
                        "physicalLocation": {
                            "artifactLocation": {"uri": f.file},
                            "region": {"startLine": f.line.max(1), "startColumn": f.column.max(1)}
                        },
                        "logicalLocations": [{"fullyQualifiedName": format!("{}/{}/{}:{}", f.kind, f.namespace, f.name, f.path), "kind": "object"}]
                    }],
                    "properties": {"action": f.action, "kind": f.kind, "namespace": f.namespace, "name": f.name, "path": f.path}
                });
                // The fix as whole lines replaced (an empty region where lines are only added).
                if let Some(Some(change)) = report.fix_changes.get(i) {
                    result["fixes"] = json!([{
                        "description": {"text": change.description},
                        "artifactChanges": [{
                            "artifactLocation": {"uri": f.file},
                            "replacements": [{
                                "deletedRegion": {"startLine": change.start_line, "startColumn": 1,
                                                  "endLine": change.end_line, "endColumn": 1},
                                "insertedContent": {"text": change.inserted}
                            }]
                        }]
                    }]);
                }
                result
            })
            .collect();
        let notifications: Vec<Value> = report
            .errors
            .iter()
            .map(|e| {
                let mut n = json!({"level": "error", "message": {"text": e.message},
                                   "locations": [{"physicalLocation": {"artifactLocation": {"uri": e.file}}}]});
                if e.line > 0 {
                    n["locations"][0]["physicalLocation"]["region"] =
                        json!({"startLine": e.line, "startColumn": e.column.max(1)});
                }
                n
            })
            .collect();
        let doc = json!({
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [{
                "tool": {"driver": {"name": "meshguard", "version": env!("CARGO_PKG_VERSION"), "rules": rules}},
                "invocations": [{"executionSuccessful": report.errors.is_empty(), "toolExecutionNotifications": notifications}],
                "results": results
            }]
        });
        serde_json::to_writer_pretty(&mut *out, &doc)?;
        writeln!(out)
    }
}
