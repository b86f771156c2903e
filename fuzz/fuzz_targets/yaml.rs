//! The YAML front end with spans (manifests and rule sets in the CLI): never panics, stays within
//! its limits, and whatever it accepts is JSON the wasm modules can read back (serde_json's
//! recursion limit is 128; the front end's depth limit keeps every value under it). The block
//! subset scanner answers exactly as yaml-rust2 does (value, spans, error) wherever it reads a text.
#![no_main]
use libfuzzer_sys::fuzz_target;
use policy_core::yaml::{parse_documents, parse_with_yaml_rust2, strip_bom, Limits};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let parsed = parse_documents(text);
    if text.len() <= Limits::DEFAULT.max_bytes {
        assert_eq!(parsed, parse_with_yaml_rust2(&strip_bom(text), Limits::DEFAULT), "the two YAML front ends differ");
    }
    let Ok(docs) = parsed else { return };
    for doc in &docs {
        // Nested inside the wasm payload (`{"objects": [ ... ]}`), as check --engine wasm sends it.
        let payload = serde_json::json!({ "objects": [&doc.value] }).to_string();
        let back: serde_json::Value = serde_json::from_str(&payload).expect("accepted YAML must round-trip as JSON");
        assert_eq!(back["objects"][0], doc.value);
        let _ = doc.spans.at;
    }
    assert!(text.len() <= Limits::DEFAULT.max_bytes);
});
