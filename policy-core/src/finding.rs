//! What a rule reports: the action it takes and where in the object it found the problem.

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
}

impl Violation {
    pub fn new(path: FieldPath, message: impl Into<String>) -> Self {
        Violation { path, message: message.into(), max_action: None }
    }

    pub fn advisory(path: FieldPath, message: impl Into<String>) -> Self {
        Violation { path, message: message.into(), max_action: Some(Action::Warn) }
    }
}

/// A violation after the rule's action, message override and object identity are applied.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    pub rule: String,
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
}
