//! meshguard for JavaScript: policy-core behind wasm-bindgen. Text and JSON in, JSON out; the
//! package's `index.js` / `web.js` turn that into JavaScript objects (`RuleSet`, findings,
//! decisions). Nothing here decides: `engine` translates to and from policy-core, and is tested
//! natively; this file only exports it.

pub mod engine;

use wasm_bindgen::prelude::*;

/// A compiled RuleSet (rules checked and compiled once, as every meshguard host does).
#[wasm_bindgen(js_name = WasmRuleSet)]
pub struct RuleSet(engine::Engine);

#[wasm_bindgen(js_class = WasmRuleSet)]
impl RuleSet {
    /// `text`: a RuleSet in YAML or JSON. Throws an Error naming line, rule and field.
    #[wasm_bindgen(constructor)]
    pub fn new(text: &str) -> Result<RuleSet, JsError> {
        engine::Engine::new(text).map(RuleSet).map_err(|e| JsError::new(&e))
    }

    /// The built-in rule set.
    #[wasm_bindgen(js_name = builtIn)]
    pub fn built_in() -> Result<RuleSet, JsError> {
        engine::Engine::built_in().map(RuleSet).map_err(|e| JsError::new(&e))
    }

    /// `meshguard check --format json` over one YAML/JSON stream: `{"findings": [...]}`.
    #[wasm_bindgen(js_name = checkJson)]
    pub fn check_json(&self, manifests: &str, namespace: &str) -> Result<String, JsError> {
        self.0.check(manifests, namespace).map_err(|e| JsError::new(&e))
    }

    /// `meshguard fix` over one YAML stream: `{"text", "applied", "left"}`.
    #[wasm_bindgen(js_name = fixJson)]
    pub fn fix_json(&self, manifests: &str, namespace: &str) -> Result<String, JsError> {
        self.0.fix(manifests, namespace).map_err(|e| JsError::new(&e))
    }

    /// One HTTP request (`{"method", "path", "authority", "headers"}`) as the Envoy filter decides it.
    #[wasm_bindgen(js_name = decideJson)]
    pub fn decide_json(&mut self, request: &str, now_ms: f64) -> Result<String, JsError> {
        self.0.decide(request, now_ms.max(0.0) as u64).map_err(|e| JsError::new(&e))
    }

    /// An AdmissionReview (or AdmissionRequest) as the admission hosts decide it; `cluster`: a
    /// JSON array of objects already in the cluster, or empty.
    #[wasm_bindgen(js_name = reviewAdmissionJson)]
    pub fn review_admission_json(&self, review: &str, cluster: &str) -> Result<String, JsError> {
        self.0.review_admission(review, cluster).map_err(|e| JsError::new(&e))
    }

    /// The rules in force: `[{"id", "check", "action", "description"}]`.
    #[wasm_bindgen(js_name = rulesJson)]
    pub fn rules_json(&self) -> String {
        self.0.rules()
    }
}

/// The check registry with its docs: `[{"id", "target", "summary", "params", "example", ...}]`.
#[wasm_bindgen(js_name = checksJson)]
pub fn checks_json() -> String {
    engine::checks()
}

/// The built-in rule set's YAML, the starting point for a team's own.
#[wasm_bindgen(js_name = defaultRules)]
pub fn default_rules() -> String {
    policy_core::DEFAULT_RULES_YAML.to_string()
}

/// The crate's version (the package's).
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
