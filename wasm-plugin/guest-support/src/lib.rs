//! Code meshguard's wasm guests share that is not a decision (decisions are policy-core's):
//! one job per module, each behind the feature of the guests that need it.

#[cfg(feature = "envoy")]
pub mod envoy;
#[cfg(all(feature = "proxy-wasm", target_arch = "wasm32"))]
pub mod header_map;
pub mod memcmp;
#[cfg(feature = "metadata")]
pub mod metadata;
