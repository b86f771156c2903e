//! meshguard as an OPA wasm ABI (1.2) module, so OPA's SDKs and Gatekeeper-style hosts load it in
//! place of a Rego bundle. `translate` maps OPA inputs to policy-core and back (tested natively);
//! `abi` is the exported ABI over a host-resettable bump heap, for wasm only.

pub mod translate;

#[cfg(target_arch = "wasm32")]
mod abi;
