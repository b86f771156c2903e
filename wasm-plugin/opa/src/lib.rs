//! meshguard as an OPA wasm ABI (1.2) module, so OPA's SDKs and Gatekeeper-style hosts load it in
//! place of a Rego bundle. `translate` maps OPA inputs to policy-core and back (tested natively);
//! `abi` is the exported ABI over a host-resettable bump heap, for wasm only.

pub mod translate;

#[cfg(target_arch = "wasm32")]
mod abi;

pub use meshguard_guest_support::memcmp;

/// Kubewarden reads a policy's metadata from this custom section (what `kwctl annotate` writes), so
/// the module runs as built: execution mode, rules, context-aware resources, annotations.
#[cfg(target_arch = "wasm32")]
#[link_section = "io.kubewarden.metadata"]
#[used]
static KUBEWARDEN_METADATA: [u8; include_bytes!(concat!(env!("OUT_DIR"), "/kubewarden-metadata.json")).len()] =
    *include_bytes!(concat!(env!("OUT_DIR"), "/kubewarden-metadata.json"));
