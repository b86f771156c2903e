//! The `meshguard` CLI's pieces, one job each: where manifests come from (`sources`), the rule set
//! and the engine that reviews with it (`engine`), running a check (`check`), printing it
//! (`report`), the webhook (`serve`), the wasmtime host (`wasm`) and the check catalog
//! (`catalog`). `main.rs` only wires them.

pub mod catalog;
pub mod check;
pub mod cli;
pub mod engine;
pub mod export;
pub mod fix;
pub mod printable;
pub mod push;
pub mod replay;
pub mod report;
pub mod serve;
pub mod sources;
pub mod suite;
pub mod wasm;
pub mod webhook_config;
