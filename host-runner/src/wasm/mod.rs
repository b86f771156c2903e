//! The wasmtime host that runs the deployed artifacts offline.
//!
//! Set up the way wasmtime's docs recommend for embedders: one `Engine`, the module compiled once
//! and cached on disk (keyed by the module's sha256 and the engine's compatibility hash), one
//! `Linker` pre-instantiated (`InstancePre`), a cheap `Store` per call, fuel so a module that loops
//! forever is stopped, and a memory limit so one that allocates without bound is too.

mod guest_memory;
pub mod proxy;
mod wapc;

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::{Config, Engine, Module};

pub use wapc::WapcModule;

/// The Kubewarden module `scripts/build-wasm.sh` built, embedded at build time.
#[cfg(embedded_module)]
pub const EMBEDDED_MODULE: Option<&[u8]> = Some(include_bytes!("../../../dist/meshguard-kubewarden.wasm"));
#[cfg(not(embedded_module))]
pub const EMBEDDED_MODULE: Option<&[u8]> = None;

/// The Envoy filter `scripts/build-wasm.sh` built, embedded at build time (for `replay`).
#[cfg(embedded_filter)]
pub const EMBEDDED_FILTER: Option<&[u8]> = Some(include_bytes!("../../../dist/meshguard-envoy.wasm"));
#[cfg(not(embedded_filter))]
pub const EMBEDDED_FILTER: Option<&[u8]> = None;

/// Guards against runaway modules.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Fuel per call (about one unit per wasm instruction).
    pub fuel: u64,
    /// Largest linear memory a module may grow to.
    pub max_memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { fuel: 200_000_000_000, max_memory_bytes: 2 << 30 }
    }
}

pub fn engine() -> Result<Engine> {
    let mut config = Config::new();
    config.consume_fuel(true);
    // `MESHGUARD_WASM_PROFILE=perfmap perf record meshguard ...` names guest functions in perf.
    if std::env::var_os("MESHGUARD_WASM_PROFILE").is_some_and(|v| v == "perfmap") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    Engine::new(&config).map_err(|e| anyhow!("wasmtime engine: {e}"))
}

/// Where compiled modules are cached: `$MESHGUARD_CACHE_DIR`, else `$XDG_CACHE_HOME/meshguard`,
/// else `~/.cache/meshguard`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("MESHGUARD_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("meshguard"))
}

/// Compiles `bytes`, or loads the serialized result of an earlier compile from `cache_dir`.
/// Returns the module and whether it came from the cache.
pub fn compile_cached(engine: &Engine, bytes: &[u8], cache_dir: Option<&Path>) -> Result<(Module, bool)> {
    let mut compat = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut compat);
    let digest = Sha256::digest(bytes);
    let key: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    let file = cache_dir.map(|d| d.join(format!("{key}-{:016x}.cwasm", compat.finish())));
    if let Some(path) = &file {
        if path.exists() {
            // SAFETY: the file was written by `Module::serialize` for an engine with the same
            // compatibility hash (part of its name) from a module with the same sha256.
            if let Ok(module) = unsafe { Module::deserialize_file(engine, path) } {
                return Ok((module, true));
            }
        }
    }
    let module = Module::new(engine, bytes).map_err(|e| anyhow!("compiling the wasm module: {e}"))?;
    if let Some(path) = &file {
        // A cache that cannot be written only costs the next run a compile.
        if let Ok(serialized) = module.serialize() {
            let _ = std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")));
            let tmp = path.with_extension("tmp");
            if std::fs::write(&tmp, serialized).is_ok() {
                let _ = std::fs::rename(&tmp, path);
            }
        }
    }
    Ok((module, false))
}

/// The module bytes for `--module FILE`, or `embedded`.
pub fn module_bytes(module: Option<&Path>) -> Result<Vec<u8>> {
    bytes_or(module, EMBEDDED_MODULE, "dist/meshguard-kubewarden.wasm")
}

/// The filter bytes for `--module FILE`, or the embedded Envoy filter.
pub fn filter_bytes(module: Option<&Path>) -> Result<Vec<u8>> {
    bytes_or(module, EMBEDDED_FILTER, "dist/meshguard-envoy.wasm")
}

fn bytes_or(module: Option<&Path>, embedded: Option<&[u8]>, artifact: &str) -> Result<Vec<u8>> {
    match module {
        Some(path) => std::fs::read(path).with_context(|| format!("{}: cannot read the wasm module", path.display())),
        None => match embedded {
            Some(bytes) => Ok(bytes.to_vec()),
            None => bail!(
                "this meshguard was built without an embedded {artifact}: run scripts/build-wasm.sh and rebuild, \
                 pass --module {artifact}, or use --engine native where there is one"
            ),
        },
    }
}
