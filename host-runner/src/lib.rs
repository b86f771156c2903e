//! The `meshguard` CLI's pieces, one job each: where manifests come from (`sources`), running a
//! check (`check`), printing it (`report`), and the check catalog (`catalog`). `main.rs` only wires them.

pub mod catalog;
pub mod check;
pub mod cli;
pub mod printable;
pub mod replay;
pub mod report;
pub mod serve;
pub mod sources;
pub mod suite;
pub mod wasm;
pub mod webhook_config;
