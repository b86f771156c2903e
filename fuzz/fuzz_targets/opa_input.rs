//! The OPA ABI's input path: bytes as `opa_json_parse` receives them, the RuleSet taken from
//! `input.parameters` or `data`, every entrypoint evaluated.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshguard_opa::translate::{compile, evaluate, parse_json, rule_set, ENTRYPOINTS};
use policy_core::Policy;
use std::sync::OnceLock;

static DEFAULT: OnceLock<Policy> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    // The first byte splits the input between `input` and `data`, so both documents get fuzzed.
    let Some((&split, rest)) = data.split_first() else { return };
    let at = (split as usize).min(rest.len());
    let (input, data_doc) = (parse_json(&rest[at..]), parse_json(&rest[..at]));
    // The built-in rule set compiles once (as the module caches it); fuzzed ones every time.
    let compiled;
    let policy = match rule_set(input.as_ref(), data_doc.as_ref()) {
        None => DEFAULT.get_or_init(|| compile(None).expect("built-in rules")),
        Some(doc) => match compile(Some(&doc)) {
            Ok(p) => {
                compiled = p;
                &compiled
            }
            Err(_) => return,
        },
    };
    for id in 0..ENTRYPOINTS.len() {
        let result = evaluate(policy, id, input.as_ref(), data_doc.as_ref());
        assert!(result.is_array(), "a result set is an array: {result}");
    }
});
