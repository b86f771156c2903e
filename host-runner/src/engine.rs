//! The engine a command reviews with: the rule set loaded and validated (errors with file and
//! line), and the choice of policy-core in this process or the deployed Kubewarden module in
//! wasmtime, which `check`, `test` and `serve` all make the same way.

use crate::sources;
use anyhow::{Context, Result};
use policy_core::{Finding, IndexedFinding, Input, Policy};
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A rule set that cannot be used: printed as `file:line: message`, exit 2.
#[derive(Debug)]
pub struct RulesError(pub String);

impl std::fmt::Display for RulesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RulesError {}

/// Loads and validates the rule set (errors carry `file:line`); also returns its document, for
/// engines that take it as data (`Null` for the built-in one).
pub fn load_policy(rules: Option<&Path>) -> Result<(Policy, serde_json::Value)> {
    load_policy_with(rules, &[])
}

/// [`load_policy`], with the ValidatingAdmissionPolicy objects (policies, bindings, param
/// objects) found under `policies` added to the rule set's `spec.admissionPolicies`, so every
/// engine gets the same document. Errors in those objects name their own file and line.
pub fn load_policy_with(rules: Option<&Path>, policies: &[PathBuf]) -> Result<(Policy, serde_json::Value)> {
    if policies.is_empty() {
        let Some(path) = rules else {
            let policy = Policy::default_rules().map_err(|e| RulesError(format!("built-in rule set: {e}")))?;
            return Ok((policy, serde_json::Value::Null));
        };
        let doc = read_rules(path)?;
        let policy = Policy::from_document(&doc).map_err(|e| RulesError(format!("{}:{e}", path.display())))?;
        return Ok((policy, doc.value));
    }
    let (doc, rules_name) = match rules {
        None => (
            policy_core::yaml::parse_one(policy_core::DEFAULT_RULES_YAML)
                .map_err(|e| RulesError(format!("built-in rule set: {e}")))?,
            "built-in rule set".to_string(),
        ),
        Some(path) => (read_rules(path)?, path.display().to_string()),
    };
    let found = sources::load(policies)?;
    if let Some(e) = found.errors.first() {
        return Err(RulesError(format!("{}: {}", e.location(), e.message)).into());
    }
    if found.objects.is_empty() {
        let names: Vec<String> = policies.iter().map(|p| p.display().to_string()).collect();
        return Err(RulesError(format!("--policies {}: no Kubernetes objects found", names.join(" "))).into());
    }
    let mut value = doc.value.clone();
    let embedded = value.pointer("/spec/admissionPolicies").and_then(serde_json::Value::as_array).map_or(0, Vec::len);
    if let Some(spec) = value.get_mut("spec").and_then(serde_json::Value::as_object_mut) {
        let list = spec.entry("admissionPolicies").or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if let Some(list) = list.as_array_mut() {
            list.extend(found.objects.iter().map(|o| o.value.clone()));
        }
    }
    let policy = Policy::from_value(&value).map_err(|e| {
        let prefix = "spec.admissionPolicies[";
        let from_files = e.field.strip_prefix(prefix).and_then(|rest| {
            let (index, field) = rest.split_once("].")?;
            let object = found.objects.get(index.parse::<usize>().ok()?.checked_sub(embedded)?)?;
            let line = policy_core::FieldPath::parse(field).map_or(0, |p| object.position(&p).line);
            let kind = object.value.get("kind").and_then(serde_json::Value::as_str).unwrap_or("object");
            let name = e.rule.as_deref().unwrap_or("");
            Some(format!("{}:{line}: {kind} `{name}`: {field}: {}", found.files[object.file], e.message))
        });
        RulesError(from_files.unwrap_or_else(|| {
            let line = policy_core::FieldPath::parse(&e.field).map_or(0, |p| doc.spans.locate(&p).line);
            format!("{rules_name}:{line}: {e}")
        }))
    })?;
    Ok((policy, value))
}

fn read_rules(path: &Path) -> Result<policy_core::yaml::Document> {
    let text = sources::read_text(path, sources::MAX_FILE_BYTES)
        .map_err(|e| anyhow::anyhow!("rule set {}: {}", e.location(), e.message))?;
    Ok(policy_core::yaml::parse_one(&text).map_err(|e| RulesError(format!("{}:{e}", path.display())))?)
}

/// What reviews the objects: policy-core in this process, or the deployed wasm module.
pub enum Reviewer {
    Native(Policy),
    /// The Kubewarden module run by host-runner's wasmtime host, with the RuleSet it gets
    /// (`Null`: the module's built-in one). `policy` is the same RuleSet loaded natively, for
    /// validation errors with lines and for rule ids; it decides nothing here.
    /// The module is shared: `meshguard test` runs several rule sets through one compile.
    Wasm {
        module: std::sync::Arc<crate::wasm::WapcModule>,
        rules: serde_json::Value,
        policy: Policy,
    },
}

impl Reviewer {
    /// The rule set, compiled natively (with the wasm engine it only names rules and decides
    /// HTTP cases in `meshguard test`; the module reviews the objects).
    pub fn policy(&self) -> &Policy {
        match self {
            Reviewer::Native(p) | Reviewer::Wasm { policy: p, .. } => p,
        }
    }

    pub fn kubernetes_rule_ids(&self) -> Vec<String> {
        let policy = self.policy();
        let http: Vec<&str> = policy.http_rules().map(|r| r.id.as_str()).collect();
        policy.rules().filter(|r| !http.contains(&r.id.as_str())).map(|r| r.id.clone()).collect()
    }

    /// Every finding on `values` (reviewed together), in input order. `objects`: what the caller
    /// already read of each value (kind, namespace, name), in the same order.
    pub fn review(
        &self,
        values: &[serde_json::Value],
        objects: &[crate::check::ObjectRef],
        default_namespace: &str,
    ) -> Result<Vec<Finding>> {
        match self {
            Reviewer::Native(policy) => {
                Ok(review_natively(policy, values, default_namespace, (0..values.len()).collect()))
            }
            Reviewer::Wasm { module, rules, .. } => review_in_wasm(
                module,
                rules,
                values,
                objects,
                default_namespace,
                &(0..values.len()).collect::<Vec<_>>(),
            ),
        }
    }

    /// The findings of the objects at `wanted` (indexes into `values`, findings indexed likewise),
    /// the objects of their namespaces reviewed with them for context, as [`Reviewer::review`]
    /// would find them. What `meshguard fix` asks after a round changed a few objects.
    pub fn review_some(
        &self,
        values: &[serde_json::Value],
        objects: &[crate::check::ObjectRef],
        default_namespace: &str,
        wanted: &std::collections::BTreeSet<usize>,
    ) -> Result<Vec<Finding>> {
        match self {
            // Every object stays in the input as context; only the wanted ones are reviewed.
            Reviewer::Native(policy) => {
                Ok(review_natively(policy, values, default_namespace, wanted.iter().copied().collect()))
            }
            Reviewer::Wasm { module, rules, .. } => {
                fn group(o: &crate::check::ObjectRef) -> &String {
                    if o.kind == "Namespace" {
                        &o.name
                    } else {
                        &o.namespace
                    }
                }
                let namespaces: std::collections::BTreeSet<&String> =
                    wanted.iter().map(|&i| group(&objects[i])).collect();
                let context: Vec<usize> =
                    (0..values.len()).filter(|&i| namespaces.contains(group(&objects[i]))).collect();
                let found = review_in_wasm(module, rules, values, objects, default_namespace, &context)?;
                Ok(found.into_iter().filter(|f| wanted.contains(&f.object_index)).collect())
            }
        }
    }
}

/// The findings of the objects at `indexes`, every value in the input (peers for cross-object
/// checks), objects reviewed in parallel, findings in `indexes` order.
fn review_natively(
    policy: &Policy,
    values: &[serde_json::Value],
    default_namespace: &str,
    indexes: Vec<usize>,
) -> Vec<Finding> {
    let input = Input::new(values, default_namespace);
    let per_object: Vec<Vec<Finding>> = indexes
        .into_par_iter()
        .map(|i| {
            let mut out = Vec::new();
            policy.review_object(&input, i, &mut out);
            out
        })
        .collect();
    per_object.into_iter().flatten().collect()
}

const REVIEW_MSGPACK: &str = "meshguard_review_msgpack";

/// The module has no handler for `op`, as waPC's guest SDK words it.
fn lacks_operation(error: &anyhow::Error, op: &str) -> bool {
    error.to_string().ends_with(&format!("No handler registered for function {op}"))
}

/// Every cross-object check looks only within a namespace (and at that namespace's Namespace
/// object), so the input splits into namespaces, and calls get batches of whole namespaces: no
/// object is parsed or reviewed twice, findings equal a review of the whole input at once
/// (`wasm_and_native_engines_print_identical_output`), and each call's guest memory stays small
/// and is reused by the next call on that worker's warm instance instead of growing fresh pages.
fn review_in_wasm(
    module: &crate::wasm::WapcModule,
    rules: &serde_json::Value,
    values: &[serde_json::Value],
    objects: &[crate::check::ObjectRef],
    default_namespace: &str,
    reviewed: &[usize],
) -> Result<Vec<Finding>> {
    const BATCH_OBJECTS: usize = 256;
    /// `meshguard_review_msgpack`'s payload, and `meshguard_review`'s in JSON. The rules come
    /// first: the module compiles them before the objects start and decodes the objects for them
    /// in the same pass.
    #[derive(serde::Serialize)]
    struct Payload<'a> {
        rules: &'a serde_json::Value,
        namespace: &'a str,
        objects: Vec<&'a serde_json::Value>,
    }
    // A module built before the MessagePack operation existed (`--module`) answers it with waPC's
    // "no handler" error: it is asked in JSON from then on.
    let json_only = std::sync::atomic::AtomicBool::new(false);
    let review = |payload: &Payload<'_>| -> Result<Vec<u8>> {
        if !json_only.load(std::sync::atomic::Ordering::Relaxed) {
            let mut packed = Vec::with_capacity(512 * payload.objects.len());
            rmp_serde::encode::write_named(&mut packed, payload)?;
            match module.call(REVIEW_MSGPACK, &packed) {
                Err(e) if lacks_operation(&e, REVIEW_MSGPACK) => {
                    json_only.store(true, std::sync::atomic::Ordering::Relaxed)
                }
                answer => return answer,
            }
        }
        module.call("meshguard_review", &serde_json::to_vec(payload)?)
    };
    let mut groups: HashMap<&str, Vec<usize>> = HashMap::new();
    for &i in reviewed {
        let o = &objects[i];
        groups.entry(if o.kind == "Namespace" { &o.name } else { &o.namespace }).or_default().push(i);
    }
    let mut groups: Vec<Vec<usize>> = groups.into_values().collect();
    groups.sort_by_key(|g| g[0]);
    let mut bins: Vec<Vec<usize>> = vec![Vec::new()];
    for g in groups {
        if bins.last().is_some_and(|b| !b.is_empty() && b.len() + g.len() > BATCH_OBJECTS) {
            bins.push(Vec::new());
        }
        if let Some(bin) = bins.last_mut() {
            bin.extend(g);
        }
    }
    let answers: Vec<Result<Vec<Finding>>> = bins
        .par_iter_mut()
        .filter(|bin| !bin.is_empty())
        .map(|bin| {
            bin.sort_unstable();
            let objects: Vec<&serde_json::Value> = bin.iter().map(|&i| &values[i]).collect();
            let answer = review(&Payload { rules, namespace: default_namespace, objects })?;
            #[derive(serde::Deserialize)]
            struct Answer {
                findings: Vec<IndexedFinding>,
            }
            let parsed: Answer =
                serde_json::from_slice(&answer).context("the wasm module's review is not the expected JSON")?;
            parsed
                .findings
                .into_iter()
                .map(|f| {
                    let object = *bin.get(f.object).context("a finding names an object it was not given")?;
                    Ok(Finding { object_index: object, ..f.finding })
                })
                .collect()
        })
        .collect();
    let mut all = Vec::new();
    for a in answers {
        all.extend(a?);
    }
    // Input order, as the native engine reports them.
    all.sort_by_key(|f| f.object_index);
    Ok(all)
}
