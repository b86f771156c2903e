//! One YAML or JSON text in, its findings placed at their fields' lines and columns out.

use crate::finding::LocatedFinding;
use crate::object::{is_kubernetes_object, Input};
use crate::policy::Policy;
use crate::yaml::{parse_documents, Spans, YamlError};
use serde_json::Value;

/// One text's review: its findings placed at their fields, and how many objects it held.
#[derive(Clone, Debug, PartialEq)]
pub struct TextReview {
    /// In text order (line, then column; rule order breaks ties), `file` left empty.
    pub findings: Vec<LocatedFinding>,
    pub objects: usize,
}

impl Policy {
    /// Reviews every Kubernetes object of a YAML or JSON stream together (objects without
    /// `metadata.namespace` in `namespace`) and places each finding at its field's line and
    /// column, after the rule set's MutatingAdmissionPolicies: what a host checking one text calls. `Err` at the line where the text stops parsing.
    pub fn review_text(&self, text: &str, namespace: &str) -> Result<TextReview, YamlError> {
        let (mut values, spans): (Vec<Value>, Vec<Spans>) = parse_documents(text)?
            .into_iter()
            .filter(|d| is_kubernetes_object(&d.value))
            .map(|d| (d.value, d.spans))
            .unzip();
        // MutatingAdmissionPolicies first, as `meshguard check` runs them.
        let policies = self.apply_mutating_policies(&mut values, namespace, None, None);
        let mut findings: Vec<LocatedFinding> = policies
            .denied
            .into_iter()
            .chain(self.review(&Input::new(&values, namespace)))
            .map(|finding| {
                let at = spans.get(finding.object_index).map(|s| s.locate(&finding.path)).unwrap_or_default();
                LocatedFinding { finding, file: String::new(), line: at.line, column: at.column }
            })
            .collect();
        findings.sort_by_key(|f| (f.line, f.column));
        Ok(TextReview { findings, objects: values.len() })
    }
}
