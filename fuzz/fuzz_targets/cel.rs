//! CEL from raw bytes, as a rule author (or a compromised rules repo) writes it: the first line is
//! the expression, the rest a YAML object it is evaluated on as a `check: cel` rule. Compiling
//! and evaluating must answer (a finding or an error), never panic or overflow the stack.
#![no_main]
use libfuzzer_sys::fuzz_target;
use policy_core::{Input, Policy};
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (expression, object) = text.split_once('\n').unwrap_or((text, ""));
    let rules = json!({"apiVersion": "meshguard.dev/v1alpha1", "kind": "RuleSet", "metadata": {"name": "f"},
        "spec": {"rules": [{"id": "f", "check": "cel", "params": {"expression": expression, "params": {"max": 3}}}]}});
    let Ok(policy) = Policy::from_value(&rules) else { return };
    let Ok(doc) = policy_core::yaml::parse_one(object) else { return };
    let objects = vec![doc.value];
    let _ = policy.review(&Input::new(&objects, "default"));
});
