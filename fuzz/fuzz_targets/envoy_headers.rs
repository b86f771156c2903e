//! The Envoy filter's header-map parser (the bytes a proxy-wasm host writes into guest memory),
//! then a decision with the example Envoy rule set.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshguard_envoy::translate::request_from_map;
use policy_core::{MemoryBuckets, Policy};
use std::sync::OnceLock;

static RULES: OnceLock<Policy> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Ok(req) = request_from_map(data) else { return };
    let policy = RULES.get_or_init(|| {
        Policy::from_text(include_str!("../../examples/envoy/rules.yaml")).expect("example Envoy rules")
    });
    let _ = policy.decide(&req, 5_000, &mut MemoryBuckets::default());
});
