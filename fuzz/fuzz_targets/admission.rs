//! Admission from raw bytes, as the Kubewarden guest receives them: `validate` with the built-in
//! rule set and with settings from the payload, and `review_admission` on whatever JSON parses.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshguard_kubewarden::translate::{validate, NoCluster, PolicyCache};
use policy_core::Policy;
use std::sync::OnceLock;

static DEFAULT: OnceLock<Policy> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let mut cache = PolicyCache::default();
    if let Ok(answer) = validate(data, &mut cache, &mut NoCluster) {
        let parsed: serde_json::Value = serde_json::from_slice(&answer).expect("the guest answers JSON");
        assert!(parsed["accepted"].is_boolean(), "{parsed}");
    }
    if let Ok(value) = policy_core::decode::json_value_from_slice(data) {
        let policy = DEFAULT.get_or_init(|| Policy::default_rules().expect("built-in rules"));
        let verdict = policy.review_admission(&value);
        let response = verdict.response(serde_json::Value::Null);
        let message = response.status.map_or(0, |s| s.message.len());
        assert!(message <= policy_core::admission::MAX_DENIAL_BYTES, "a denial of {message} bytes");
    }
});
