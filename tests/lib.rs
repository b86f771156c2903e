//! The shared test corpus: cases as data (objects or requests, a rule set, the expected result),
//! loaded here so every host (native, wasm, Envoy, waPC, OPA) runs the very same cases.

pub mod envoy;

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
