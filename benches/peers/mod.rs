//! The engines users would pick instead of meshguard, loaded with the same guardrails:
//! `meshguard.rego` run by regorus, and `meshguard-cel.yaml` (ValidatingAdmissionPolicy-style CEL)
//! run by cel-interpreter. Each answers in one comparable shape, [`PeerFinding`], so a test can
//! hold it to policy-core's decisions before a benchmark compares their cost.

pub mod cel;
pub mod envoy;

use anyhow::{anyhow, Context, Result};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeSet;

pub const REGO_POLICY: &str = include_str!("meshguard.rego");
pub const REGO_QUERY: &str = "data.meshguard.findings";

/// One fired rule on one object, as every engine can report it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub struct PeerFinding {
    pub rule: String,
    /// Index of the object in the input.
    pub object: usize,
    pub action: String,
    /// Field path in policy-core's notation; empty when the engine cannot say (CEL).
    #[serde(default)]
    pub path: String,
}

/// policy-core's findings in the peers' shape.
pub fn native_findings(policy: &policy_core::Policy, objects: &[Value], namespace: &str) -> BTreeSet<PeerFinding> {
    policy
        .review(&policy_core::Input::new(objects, namespace))
        .into_iter()
        .map(|f| PeerFinding {
            rule: f.rule,
            object: f.object_index,
            action: f.action.to_string(),
            path: f.path.to_string(),
        })
        .collect()
}

/// The Rego version of the default rule set in regorus, compiled once.
#[derive(Clone)]
pub struct RegoPeer {
    engine: regorus::Engine,
}

impl RegoPeer {
    pub fn new() -> Result<Self> {
        let mut engine = regorus::Engine::new();
        engine.add_policy("meshguard.rego".into(), REGO_POLICY.into()).map_err(|e| anyhow!("meshguard.rego: {e}"))?;
        Ok(RegoPeer { engine })
    }

    /// regorus's result for `objects`, as the raw Rego value (what a benchmark should time).
    pub fn eval(&mut self, objects: &[Value], namespace: &str) -> Result<regorus::Value> {
        let input = serde_json::json!({"namespace": namespace, "objects": objects});
        self.eval_input(regorus::Value::from(input))
    }

    /// Evaluation alone, with the input already in regorus's value type.
    pub fn eval_input(&mut self, input: regorus::Value) -> Result<regorus::Value> {
        self.engine.set_input(input);
        self.engine.eval_rule(REGO_QUERY.into()).map_err(|e| anyhow!("eval {REGO_QUERY}: {e}"))
    }

    /// regorus's ahead-of-time compiled form of `query`.
    pub fn compile(&mut self, query: &str) -> Result<regorus::CompiledPolicy> {
        self.engine.compile_with_entrypoint(&query.into()).map_err(|e| anyhow!("compile {query}: {e}"))
    }

    pub fn findings(&mut self, objects: &[Value], namespace: &str) -> Result<BTreeSet<PeerFinding>> {
        let value = self.eval(objects, namespace)?;
        let json = value.to_json_str().map_err(|e| anyhow!("result to JSON: {e}"))?;
        // An undefined rule (no finding at all) comes back as `undefined`, not an empty set.
        if json.trim() == "\"<undefined>\"" {
            return Ok(BTreeSet::new());
        }
        serde_json::from_str(&json).with_context(|| format!("unexpected result shape: {json}"))
    }
}

/// The regorus input value for a set of objects (conversion kept out of timed loops when asked).
pub fn rego_input(objects: &[Value], namespace: &str) -> regorus::Value {
    regorus::Value::from(serde_json::json!({"namespace": namespace, "objects": objects}))
}
