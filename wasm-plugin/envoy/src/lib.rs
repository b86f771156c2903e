//! meshguard inside Envoy: a proxy-wasm (ABI 0.2.1) HTTP filter. It translates and nothing more:
//! Envoy headers -> `policy_core::Request`, `policy_core::HttpDecision` -> a local reply or a header.
//!
//! `translate` is the host-independent translation, shared with the dynamic module
//! (`meshguard_guest_support::envoy`, tested natively); `filter` is the proxy-wasm glue, compiled
//! for wasm only.

pub use meshguard_guest_support::envoy as translate;

#[cfg(target_arch = "wasm32")]
mod filter;
#[cfg(target_arch = "wasm32")]
use meshguard_guest_support::header_map;
