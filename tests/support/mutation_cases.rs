//! The cases the mutation tests share: every corpus object and every catalog failing example,
//! admitted with every rule that can fix set to mutate, beside the rest of its input.

use meshguard_tests::load_corpus;
use serde_json::{json, Value};

/// `rules` with every rule that can fix set to mutate everywhere.
pub fn mutating(mut rules: Value) -> Value {
    for rule in rules.pointer_mut("/spec/rules").and_then(Value::as_array_mut).into_iter().flatten() {
        let check = rule["check"].as_str().unwrap_or("");
        let fixes = policy_core::checks::find(check).is_some_and(|c| c.offers_fix())
            || (check == "cel" && rule["params"].get("fix").is_some());
        if fixes {
            rule["mutate"] = json!(true);
            for o in rule.get_mut("actionOverrides").and_then(Value::as_array_mut).into_iter().flatten() {
                if let Some(o) = o.as_object_mut() {
                    o.remove("mutate");
                }
            }
        }
    }
    rules
}

/// One object admitted into a cluster holding `cluster`, under `rules`.
pub struct Case {
    pub name: String,
    pub rules: Value,
    pub namespace: String,
    pub object: Value,
    pub cluster: Vec<Value>,
}

pub fn cases() -> Vec<Case> {
    let default_rules = policy_core::yaml::parse_one(policy_core::DEFAULT_RULES_YAML).unwrap().value;
    let mut out = Vec::new();
    for case in load_corpus().unwrap() {
        let rules = mutating(case.rules.clone().unwrap_or_else(|| default_rules.clone()));
        for (i, object) in case.objects.iter().enumerate() {
            let namespace = object.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or(&case.namespace);
            out.push(Case {
                name: format!("{}[{i}]", case.source),
                rules: rules.clone(),
                namespace: namespace.to_string(),
                object: object.clone(),
                cluster: case.cluster.clone(),
            });
        }
    }
    for spec in policy_core::checks::registry().iter().filter(|c| c.offers_fix()) {
        let params = policy_core::yaml::parse_one(spec.example_params).unwrap().value;
        let rules = mutating(json!({
            "apiVersion": "meshguard.dev/v1alpha1", "kind": "RuleSet", "metadata": {"name": "example"},
            "spec": {"rules": [{"id": spec.id, "check": spec.id, "params": params}]}
        }));
        let objects: Vec<Value> =
            policy_core::yaml::parse_documents(spec.failing_example).unwrap().into_iter().map(|d| d.value).collect();
        for (i, object) in objects.iter().enumerate() {
            let namespace = object.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default");
            let others = objects.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, o)| o.clone()).collect();
            out.push(Case {
                name: format!("catalog {}[{i}]", spec.id),
                rules: rules.clone(),
                namespace: namespace.to_string(),
                object: object.clone(),
                cluster: others,
            });
        }
    }
    out
}
