//! `meshguard check`: load the rule set and the manifests, review them together, locate findings.

use crate::sources::{self, InputError};
use anyhow::{Context, Result};
use policy_core::{Action, Finding, IndexedFinding, Input, Policy};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A finding placed in its file: what every output format prints (policy-core's one finding type).
pub use policy_core::LocatedFinding;

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub files: usize,
    pub objects: usize,
    pub skipped_documents: usize,
    pub deny: usize,
    pub warn: usize,
    pub audit: usize,
    pub errors: usize,
    /// Findings at or above `--fail-on`.
    pub failing: usize,
}

#[derive(Debug)]
pub struct Report {
    pub findings: Vec<LocatedFinding>,
    pub errors: Vec<InputError>,
    pub summary: Summary,
    /// Every object reviewed, in input order (for formats that report passes too).
    pub objects: Vec<ObjectRef>,
    /// Ids of the rule set's Kubernetes rules.
    pub rules: Vec<String>,
    pub fail_on: Action,
    /// The parsed objects and their spans, which nothing reads once the report is made. Freeing
    /// a large repo's trees is CPU time the result does not need: the CLI exits without freeing
    /// them, the way compilers leave their syntax trees to the OS; other callers drop the report
    /// as usual.
    pub parsed: Parsed,
}

/// What [`Report::parsed`] keeps alive.
pub struct Parsed {
    _values: Vec<serde_json::Value>,
    _sources: Vec<sources::SourceObject>,
}

impl std::fmt::Debug for Parsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Parsed({} objects)", self._values.len())
    }
}

type FindingKey<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str);

pub struct FindingIndex<'a>(std::collections::HashMap<FindingKey<'a>, Vec<&'a LocatedFinding>>);

impl<'a> FindingIndex<'a> {
    /// The findings of `rule` on object `o`.
    pub fn on(&self, o: &'a ObjectRef, rule: &'a str) -> &[&'a LocatedFinding] {
        self.0
            .get(&(o.file.as_str(), o.kind.as_str(), o.namespace.as_str(), o.name.as_str(), rule))
            .map_or(&[], Vec::as_slice)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ObjectRef {
    pub file: String,
    pub line: u32,
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl Report {
    /// Findings grouped by object and rule, for formats that report every (object, rule) pair:
    /// look up with [`FindingIndex::on`].
    pub fn findings_index(&self) -> FindingIndex<'_> {
        let mut map: std::collections::HashMap<(&str, &str, &str, &str, &str), Vec<&LocatedFinding>> =
            Default::default();
        for f in &self.findings {
            map.entry((&f.file, &f.kind, &f.namespace, &f.name, &f.rule)).or_default().push(f);
        }
        FindingIndex(map)
    }

    /// Makes an input without a single Kubernetes object an error: when `kustomize build` or
    /// `helm template` fails upstream, `... | meshguard check -` must not pass on nothing.
    pub fn require_objects(&mut self) {
        if self.summary.objects == 0 && self.errors.is_empty() {
            let skipped = match self.summary.skipped_documents {
                0 => String::new(),
                n => format!(" ({n} documents without apiVersion and kind were skipped)"),
            };
            self.errors.push(InputError {
                file: "<input>".into(),
                line: 0,
                column: 0,
                message: format!(
                    "no Kubernetes objects found in {} file(s){skipped}; pass --allow-empty if that is expected",
                    self.summary.files
                ),
            });
            self.summary.errors += 1;
        }
    }

    pub fn exit_code(&self) -> i32 {
        if !self.errors.is_empty() {
            2
        } else if self.summary.failing > 0 {
            1
        } else {
            0
        }
    }
}

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

    fn kubernetes_rule_ids(&self) -> Vec<String> {
        let policy = self.policy();
        let http: Vec<&str> = policy.http_rules().map(|r| r.id.as_str()).collect();
        policy.rules().filter(|r| !http.contains(&r.id.as_str())).map(|r| r.id.clone()).collect()
    }

    /// `objects`: what `run` already read of each value (kind, namespace, name), in the same order.
    fn review(
        &self,
        values: &[serde_json::Value],
        objects: &[ObjectRef],
        default_namespace: &str,
    ) -> Result<Vec<Finding>> {
        match self {
            Reviewer::Native(policy) => {
                let input = Input::new(values, default_namespace);
                let per_object: Vec<Vec<Finding>> = (0..values.len())
                    .into_par_iter()
                    .map(|i| {
                        let mut out = Vec::new();
                        policy.review_object(&input, i, &mut out);
                        out
                    })
                    .collect();
                Ok(per_object.into_iter().flatten().collect())
            }
            Reviewer::Wasm { module, rules, .. } => review_in_wasm(module, rules, values, objects, default_namespace),
        }
    }
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
    objects: &[ObjectRef],
    default_namespace: &str,
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
    for (i, o) in objects.iter().enumerate() {
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

pub fn run(reviewer: &Reviewer, paths: &[PathBuf], default_namespace: &str, fail_on: Action) -> Result<Report> {
    let mut sources = sources::load(paths)?;
    // The objects move out of `sources`; findings are located through the spans kept there.
    let values: Vec<serde_json::Value> = sources.objects.iter_mut().map(|o| std::mem::take(&mut o.value)).collect();
    let objects: Vec<ObjectRef> = values
        .par_iter()
        .zip(&sources.objects)
        .map(|(v, s)| {
            let o = policy_core::object::Object::new(v, default_namespace);
            ObjectRef {
                file: sources.files[s.file].clone(),
                line: s.spans.at.line,
                api_version: v.get("apiVersion").and_then(|v| v.as_str()).unwrap_or("").to_string(),
                kind: o.kind.to_string(),
                namespace: o.namespace.to_string(),
                name: o.name.to_string(),
            }
        })
        .collect();
    let reviewed = reviewer.review(&values, &objects, default_namespace)?;
    let mut summary = Summary {
        files: sources.files.len(),
        objects: values.len(),
        skipped_documents: sources.skipped,
        errors: sources.errors.len(),
        ..Summary::default()
    };
    let mut findings = Vec::new();
    for f in reviewed {
        let source =
            sources.objects.get(f.object_index).context("a finding names an object that is not in the input")?;
        let at = source.position(&f.path);
        match f.action {
            Action::Deny => summary.deny += 1,
            Action::Warn => summary.warn += 1,
            Action::Audit => summary.audit += 1,
        }
        if f.action != Action::Audit && f.action >= fail_on {
            summary.failing += 1;
        }
        findings.push(LocatedFinding {
            file: sources.files[source.file].clone(),
            line: at.line,
            column: at.column,
            finding: f,
        });
    }
    // Files in argument order, then by line; the sort is stable so rule order breaks ties.
    let ranks: HashMap<&str, usize> = sources.files.iter().enumerate().map(|(i, f)| (f.as_str(), i)).collect();
    let file_rank = |name: &str| ranks.get(name).copied().unwrap_or(usize::MAX);
    findings.sort_by_key(|f| (file_rank(&f.file), f.line, f.column));
    let parsed = Parsed { _values: values, _sources: sources.objects };
    Ok(Report {
        findings,
        errors: sources.errors,
        summary,
        objects,
        rules: reviewer.kubernetes_rule_ids(),
        fail_on,
        parsed,
    })
}
