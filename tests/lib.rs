//! The shared test corpus: cases as data (objects or requests, a rule set, the expected result),
//! loaded here so every host (native, wasm, Envoy, waPC, OPA) runs the very same cases.

pub mod envoy;
pub mod rego_host;

use policy_core::yaml::parse_one;
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorpusFile {
    /// Anchored YAML shared by the cases (rule sets, objects); not read otherwise.
    #[serde(default)]
    pub definitions: Option<Value>,
    pub cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    /// A RuleSet document; the built-in default rule set when absent.
    #[serde(default)]
    pub rules: Option<Value>,
    /// Namespace for objects without one.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Kubernetes objects reviewed together.
    #[serde(default)]
    pub objects: Vec<Value>,
    /// Objects already in the cluster: in CI they are reviewed with `objects` (a repo holds
    /// both); at admission each of `objects` is a request and hosts supply these as their view
    /// of the cluster (inventory, context-aware calls).
    #[serde(default)]
    pub cluster: Vec<Value>,
    /// Findings the objects must produce, no more and no fewer (empty: allowed).
    #[serde(default)]
    pub expect: Vec<ExpectedFinding>,
    /// HTTP requests decided in order, sharing rate-limit state.
    #[serde(default)]
    pub requests: Vec<RequestCase>,
    /// Set by the loader: `file.yaml#case name`.
    #[serde(skip)]
    pub source: String,
}

fn default_namespace() -> String {
    "default".into()
}

#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExpectedFinding {
    pub rule: String,
    /// Object name; any when absent.
    #[serde(default)]
    pub name: Option<String>,
    pub path: String,
    /// `deny` | `warn` | `audit`; any when absent.
    #[serde(default)]
    pub action: Option<String>,
    /// A substring the message must contain.
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestCase {
    pub request: Value,
    /// Host clock in milliseconds.
    #[serde(default)]
    pub at_ms: u64,
    pub expect: ExpectedDecision,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExpectedDecision {
    /// `allow` or `deny`.
    pub decision: String,
    #[serde(default)]
    pub rule: Option<String>,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub grpc_status: Option<u8>,
    /// Ids of warn rules that fired.
    #[serde(default)]
    pub warn: Vec<String>,
}

pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// Every case of every `tests/corpus/*.yaml`, in file order.
pub fn load_corpus() -> Result<Vec<Case>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .map_err(|e| format!("corpus dir: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for file in files {
        let name = file.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&file).map_err(|e| format!("{name}: {e}"))?;
        let doc = parse_one(&text).map_err(|e| format!("{name}:{e}"))?;
        let parsed: CorpusFile = serde_json::from_value(doc.value).map_err(|e| format!("{name}: {e}"))?;
        for mut case in parsed.cases {
            case.source = format!("{name}#{}", case.name);
            cases.push(case);
        }
    }
    Ok(cases)
}

/// One object of a corpus case as an admission request, with the verdict policy-core gives it
/// natively: what every admission host must answer too.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AdmissionCase {
    pub name: String,
    pub request: Value,
    /// The case's RuleSet (`None`: the built-in one).
    pub rules: Option<Value>,
    /// What the cluster holds besides the request (empty: hosts give no view of it).
    pub cluster: Vec<Value>,
    pub allowed: bool,
    /// Sorted ids of the rules that denied / warned.
    pub deny: Vec<String>,
    pub warn: Vec<String>,
}

fn sorted_ids<'a>(ids: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut v: Vec<String> = ids.map(String::from).collect();
    v.sort();
    v.dedup();
    v
}

/// Every corpus object as a CREATE request in its namespace, with the native verdict.
pub fn admission_cases() -> Result<Vec<AdmissionCase>, String> {
    let mut out = Vec::new();
    for case in load_corpus()? {
        let policy = match &case.rules {
            Some(doc) => policy_core::Policy::from_value(doc).map_err(|e| format!("{}: {e}", case.source))?,
            None => policy_core::Policy::default_rules().map_err(|e| e.to_string())?,
        };
        for (i, object) in case.objects.iter().enumerate() {
            let namespace = object.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or(&case.namespace);
            let request = serde_json::json!({
                "uid": format!("{}-{i}", case.source),
                "kind": {"group": "", "version": "v1", "kind": object.get("kind").cloned().unwrap_or_default()},
                "operation": "CREATE",
                "namespace": namespace,
                "object": object,
            });
            let verdict = if case.cluster.is_empty() {
                policy.review_admission(&request)
            } else {
                let view = policy_core::ClusterView { objects: &case.cluster, unseen: policy_core::Unseen::Nothing };
                policy.review_admission_in(&request, view)
            };
            let ids = |a| sorted_ids(verdict.with_action(a).map(|f| f.rule.as_str()));
            out.push(AdmissionCase {
                name: format!("{}[{i}]", case.source),
                request,
                rules: case.rules.clone(),
                cluster: case.cluster.clone(),
                allowed: verdict.allowed,
                deny: ids(policy_core::Action::Deny),
                warn: ids(policy_core::Action::Warn),
            });
        }
    }
    Ok(out)
}

/// `value` as a block-YAML document (`---` first, a newline last), as a manifest repo writes it:
/// what `meshguard fix`'s text edits work on.
pub fn block_yaml(value: &Value) -> String {
    policy_core::yaml::to_document(value, false)
}
