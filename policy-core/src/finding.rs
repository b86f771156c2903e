//! What a rule reports: the action it takes and where in the object it found the problem.

use crate::fix::Fix;
use crate::path::FieldPath;
use serde::{Deserialize, Serialize};
use std::fmt;

/// How a rule enforces, like Gatekeeper's `enforcementAction` (deny / warn / dryrun).
/// Ordered by severity so the weaker of two actions is their minimum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Recorded only: counts and reports, never blocks.
    Audit,
    /// Reported and let through (admission warnings, an Envoy response header).
    Warn,
    /// Blocks: non-zero exit in CI, rejected at admission, a local reply in Envoy.
    Deny,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Audit => "audit",
            Action::Warn => "warn",
            Action::Deny => "deny",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem in one Kubernetes object, as a check reports it before the rule's action applies.
#[derive(Clone, Debug, PartialEq)]
pub struct Violation {
    pub path: FieldPath,
    pub message: String,
    /// Some problems are only ever advisory (e.g. a port name contradicting `appProtocol`):
    /// the rule's action is capped at this.
    pub max_action: Option<Action>,
    /// The one right change, where there is one.
    pub fix: Option<Fix>,
}

impl Violation {
    pub fn new(path: FieldPath, message: impl Into<String>) -> Self {
        Violation { path, message: message.into(), max_action: None, fix: None }
    }

    pub fn advisory(path: FieldPath, message: impl Into<String>) -> Self {
        Violation { path, message: message.into(), max_action: Some(Action::Warn), fix: None }
    }

    pub fn with_fix(self, fix: Option<Fix>) -> Self {
        Violation { fix, ..self }
    }
}

/// A violation after the rule's action, message override and object identity are applied: the
/// one finding type every host and output format carries (serialized as `rule`, `action`,
/// `message`, `kind`, `namespace`, `name`, `path`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub rule: String,
    /// The check behind the rule (a registry id); known only where the rule set was loaded.
    #[serde(skip)]
    pub check: &'static str,
    pub action: Action,
    pub message: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub path: FieldPath,
    /// Index of the object in the reviewed input, so a caller can map back to files and lines.
    #[serde(skip)]
    pub object_index: usize,
    /// The patch that fixes it (against the object), where one change is right.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<Fix>,
}

/// A finding and the index of its object in the input a host handed over: how findings cross a
/// wasm boundary (`meshguard_review`'s answer), `object` beside the finding's own fields.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IndexedFinding {
    #[serde(flatten)]
    pub finding: Finding,
    pub object: usize,
}

/// Read field by field: serde's `flatten` would buffer every finding of a large answer first.
impl<'de> Deserialize<'de> for IndexedFinding {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            rule: String,
            action: Action,
            message: String,
            kind: String,
            namespace: String,
            name: String,
            path: FieldPath,
            object: usize,
            #[serde(default)]
            fix: Option<Fix>,
        }
        let w = Wire::deserialize(d)?;
        let finding = Finding {
            rule: w.rule,
            check: "",
            action: w.action,
            message: w.message,
            kind: w.kind,
            namespace: w.namespace,
            name: w.name,
            path: w.path,
            object_index: w.object,
            fix: w.fix,
        };
        Ok(IndexedFinding { finding, object: w.object })
    }
}

impl From<Finding> for IndexedFinding {
    fn from(finding: Finding) -> Self {
        IndexedFinding { object: finding.object_index, finding }
    }
}

impl From<IndexedFinding> for Finding {
    fn from(indexed: IndexedFinding) -> Self {
        Finding { object_index: indexed.object, ..indexed.finding }
    }
}

/// Where a finding is in its source: what every report prints. `file` is empty where one text is
/// checked (the JavaScript package); line and column are 1-based, 0 when the path has no span.
#[derive(Clone, Debug, PartialEq)]
pub struct LocatedFinding {
    pub finding: Finding,
    pub file: String,
    pub line: u32,
    pub column: u32,
}

impl std::ops::Deref for LocatedFinding {
    type Target = Finding;
    fn deref(&self) -> &Finding {
        &self.finding
    }
}

/// `meshguard check --format json`'s field order (the corpus and the CLI tests hold it): the
/// location sits between the message and the object it names.
impl Serialize for LocatedFinding {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let f = &self.finding;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("rule", &f.rule)?;
        map.serialize_entry("action", &f.action)?;
        map.serialize_entry("message", &f.message)?;
        if !self.file.is_empty() {
            map.serialize_entry("file", &self.file)?;
        }
        map.serialize_entry("line", &self.line)?;
        map.serialize_entry("column", &self.column)?;
        map.serialize_entry("kind", &f.kind)?;
        map.serialize_entry("namespace", &f.namespace)?;
        map.serialize_entry("name", &f.name)?;
        map.serialize_entry("path", &f.path)?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding() -> Finding {
        Finding {
            rule: "istio-port-name".into(),
            check: "istio-port-name",
            action: Action::Deny,
            message: "rename it".into(),
            kind: "Service".into(),
            namespace: "shop".into(),
            name: "api".into(),
            path: FieldPath::parse("spec.ports[1].name").unwrap(),
            object_index: 3,
            fix: None,
        }
    }

    #[test]
    fn a_finding_crosses_a_host_boundary_with_its_typed_path_and_object() {
        let wire = serde_json::to_value(IndexedFinding::from(finding())).unwrap();
        assert_eq!(
            wire,
            serde_json::json!({"rule": "istio-port-name", "action": "deny", "message": "rename it", "kind": "Service",
                               "namespace": "shop", "name": "api", "path": "spec.ports[1].name", "object": 3})
        );
        let back: Finding = serde_json::from_value::<IndexedFinding>(wire).unwrap().into();
        assert_eq!(back, Finding { check: "", ..finding() }, "the check id stays with the loaded rule set");
        assert_eq!(back.path.segments().len(), 4);
        let bad = serde_json::json!({"rule": "r", "action": "deny", "message": "m", "kind": "k", "namespace": "n",
                                     "name": "x", "path": "spec[*]", "object": 0});
        assert!(serde_json::from_value::<IndexedFinding>(bad).unwrap_err().to_string().contains("[*]"));
    }

    #[test]
    fn a_located_finding_prints_in_the_cli_order_and_leaves_out_an_empty_file() {
        let located = LocatedFinding { finding: finding(), file: "svc.yaml".into(), line: 7, column: 11 };
        let text = serde_json::to_string(&located).unwrap();
        assert_eq!(
            text,
            r#"{"rule":"istio-port-name","action":"deny","message":"rename it","file":"svc.yaml","line":7,"column":11,"kind":"Service","namespace":"shop","name":"api","path":"spec.ports[1].name"}"#
        );
        let one_text = serde_json::to_value(LocatedFinding { file: String::new(), ..located }).unwrap();
        assert!(one_text.get("file").is_none() && one_text["line"] == 7);
    }
}
