//! The wasm engine as the command line sets it up: the module's limits from `WasmArgs`, the
//! module compiled once (or loaded from the on-disk cache, or for the webhook compiled by a child
//! process into that cache) and linked once.

use super::{Limits, OnDeadline, WapcModule};
use crate::cli::WasmArgs;

/// The Kubewarden module, compiled once (or loaded from the on-disk cache) and linked once.
pub fn module(args: &WasmArgs) -> anyhow::Result<WapcModule> {
    module_with(args, None)
}

/// What bounds each wasm call: the module's limits from the command line, and for the webhook
/// also its review deadline (the shorter of the two holds).
pub fn limits(args: &WasmArgs, review_deadline: Option<std::time::Duration>) -> Limits {
    let call = std::time::Duration::from_millis(args.call_timeout_ms);
    Limits {
        fuel: args.fuel,
        max_memory_bytes: (args.max_memory_mb as usize) << 20,
        deadline: review_deadline.map_or(call, |review| review.min(call)),
        // The server answers the next review; a one-shot command has failed when a call runs long.
        on_deadline: if review_deadline.is_some() { OnDeadline::Trap } else { OnDeadline::Exit },
    }
}

/// [`module`], each call also bounded by `deadline` of wall-clock time (the webhook).
pub fn module_with(args: &WasmArgs, deadline: Option<std::time::Duration>) -> anyhow::Result<WapcModule> {
    let bytes = super::module_bytes(args.module.as_deref())?;
    let limits = limits(args, deadline);
    let engine = match limits.on_deadline {
        OnDeadline::Trap => super::server_engine(&limits)?,
        OnDeadline::Exit => super::engine(&limits)?,
    };
    let cache = if args.no_cache { None } else { args.cache_dir.clone().or_else(super::default_cache_dir) };
    let compile_here = |child_compiled: bool| -> anyhow::Result<(wasmtime::Module, &'static str)> {
        let (module, cached) = super::compile_cached(&engine, &bytes, cache.as_deref())?;
        Ok((
            module,
            match (cached, child_compiled) {
                (true, _) => "the cache",
                (false, true) => "compiled in this process (the cache could not be written)",
                (false, false) => "compiled in this process",
            },
        ))
    };
    let (module, source) = match (deadline, &cache) {
        // The server: a cache miss is compiled by a child process, then loaded from the cache.
        (Some(_), Some(dir)) => match super::load_cached(&engine, &bytes, Some(dir)) {
            Some(module) => (module, "the cache"),
            None => {
                let child_compiled = compile_in_child(args, dir);
                match child_compiled.then(|| super::load_cached(&engine, &bytes, Some(dir))).flatten() {
                    Some(module) => (module, "compiled by a child process into the cache"),
                    None => compile_here(child_compiled)?,
                }
            }
        },
        _ => compile_here(false)?,
    };
    if deadline.is_some() {
        crate::serve::log("info", "module loaded", serde_json::json!({"from": source}));
    }
    super::WapcModule::new(&engine, &module, limits)
}

/// Compiles the module for `serve` into `cache` in a child process (`compile-for-serve`): the
/// compiler's scratch memory stays in this process's heap after a compile (measured: 62 MB at
/// rest after compiling the speed-built module, 20 MB loading it from the cache), and a webhook
/// runs for weeks. When the child cannot write the cache, the caller compiles in process.
/// Whether the child finished without an error.
fn compile_in_child(args: &WasmArgs, cache: &std::path::Path) -> bool {
    let Ok(exe) = std::env::current_exe() else { return false };
    let mut child = std::process::Command::new(exe);
    child.arg("compile-for-serve").arg("--cache-dir").arg(cache);
    // Metering changes the compiled code: the child compiles for the engine that will load it.
    if let Some(fuel) = args.fuel {
        child.arg("--fuel").arg(fuel.to_string());
    }
    if let Some(module) = &args.module {
        child.arg("--module").arg(module);
    }
    let why = match child.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).status() {
        Ok(status) if status.success() => return true,
        Ok(status) => format!("it ended with {status}"),
        Err(e) => format!("it could not start: {e}"),
    };
    let fields = serde_json::json!({"error": why, "cache": cache.display().to_string()});
    crate::serve::log("warn", "compiling the module in a child process failed; compiling in this process", fields);
    false
}
