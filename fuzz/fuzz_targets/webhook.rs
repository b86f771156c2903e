//! The webhook's request path on raw body bytes, as `meshguard serve` runs it natively: the
//! envelope checks (`review::parse` with the rule set's pruning decode), the review with a view
//! of the cluster, and the AdmissionReview answer.
#![no_main]
use host_runner::serve::review;
use libfuzzer_sys::fuzz_target;
use policy_core::{ClusterObjects, Policy};
use std::sync::OnceLock;

static DEFAULT: OnceLock<Policy> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let policy = DEFAULT.get_or_init(|| Policy::default_rules().expect("built-in rules"));
    let cluster = [serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "shop", "labels": {"istio-injection": "enabled"}}})];
    let Ok((parsed, asked)) = review::parse(data, &|b| policy.parse_admission(b)) else { return };
    let verdict = policy.review_admission_from(&parsed["request"], &mut ClusterObjects(&cluster));
    let answer = review::answer(verdict.response(serde_json::Value::String(asked.uid.clone())));
    assert_eq!(answer["response"]["uid"], asked.uid.as_str());
    assert!(answer["response"]["allowed"].is_boolean(), "{answer}");
    // An answer is never much larger than its bounds, whatever the request held.
    let bytes = answer.to_string().len();
    assert!(bytes <= 64 * 1024 + data.len(), "an answer of {bytes} bytes to {} bytes", data.len());
});
