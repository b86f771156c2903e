//! meshguard inside Envoy: a proxy-wasm (ABI 0.2.1) HTTP filter. It translates and nothing more:
//! Envoy headers -> `policy_core::Request`, `policy_core::HttpDecision` -> a local reply or a header.
//!
//! `translate` holds the host-independent translation (tested natively); `filter` is the proxy-wasm
//! glue, compiled for wasm only.

pub mod translate;

#[cfg(target_arch = "wasm32")]
mod filter;
#[cfg(target_arch = "wasm32")]
use meshguard_guest_support::header_map;
