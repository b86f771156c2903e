//! The wasmtime host that runs the deployed artifacts offline.
//!
//! Set up the way wasmtime's docs recommend for embedders: one `Engine`, the module compiled once
//! and cached on disk (keyed by the module's sha256 and the engine's compatibility hash), one
//! `Linker` pre-instantiated (`InstancePre`), a cheap `Store` per call, a wall-clock deadline (or fuel) so a
//! module that loops forever is stopped, and a memory limit so one that allocates without bound is too.

mod guest_memory;
pub mod proxy;
pub mod setup;
mod wapc;
mod watchdog;

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;
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
    /// Fuel per call (about one unit per wasm instruction), when metered: a bound that stops a
    /// call at the same instruction on every machine, where `deadline` depends on its speed.
    pub fuel: Option<u64>,
    /// Largest linear memory a module may grow to.
    pub max_memory_bytes: usize,
    /// Wall-clock bound per call.
    pub deadline: Duration,
    pub on_deadline: OnDeadline,
}

/// What a call past its deadline does. Any check compiled into the module (fuel metering, epoch
/// checks) slows every call; benches/check_repo.rs prints the repo run with fuel beside the one
/// without.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnDeadline {
    /// The call traps and the process carries on (wasmtime epoch interruption, checked every
    /// [`EPOCH_TICK`]): for the webhook, which answers the next review, and for embedders.
    Trap,
    /// The process prints the error and exits with status 2, with no check compiled into the
    /// module: for one-shot commands (`check`, `test`, `replay`), whose run has failed anyway.
    Exit,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { fuel: None, max_memory_bytes: 2 << 30, deadline: DEFAULT_DEADLINE, on_deadline: OnDeadline::Trap }
    }
}

impl Limits {
    /// The defaults of the one-shot commands (`check`, `test`, `replay`): a call past its
    /// deadline ends the process.
    pub fn one_shot() -> Self {
        Limits { on_deadline: OnDeadline::Exit, ..Limits::default() }
    }

    /// `deadline` in epoch ticks, at least one.
    fn deadline_ticks(&self) -> u64 {
        (self.deadline.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
    }

    /// Starts bounding one call of `what` on `store`: refuels it when metered, and arms the epoch
    /// deadline or watches the call from another thread until the returned guard drops.
    pub(crate) fn arm<T>(&self, store: &mut wasmtime::Store<T>, what: &'static str) -> Result<Option<watchdog::Watch>> {
        if let Some(fuel) = self.fuel {
            store.set_fuel(fuel).map_err(|e| anyhow!("{e}"))?;
        }
        Ok(match self.on_deadline {
            OnDeadline::Trap => {
                store.set_epoch_deadline(self.deadline_ticks());
                None
            }
            OnDeadline::Exit => Some(watchdog::watch(what, self.deadline)),
        })
    }
}

/// A call's wall-clock bound unless one is given: generous for a slow CI machine (a review of
/// 256 objects takes milliseconds), short enough that a guest that loops forever fails a job.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(60);

/// How often deadlines are checked: an engine's epoch advances, or the watchdog looks.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The engine for modules run under `limits` in this process: small memory reservations when it
/// runs under an address-space limit, fuel metering when `limits` sets fuel.
pub fn engine(limits: &Limits) -> Result<Engine> {
    engine_for(limits, address_space_limit().is_some())
}

/// [`engine`] with small memory reservations (`limited_address_space`) or wasmtime's defaults;
/// benches/check_repo.rs measures both.
pub fn engine_for(limits: &Limits, limited_address_space: bool) -> Result<Engine> {
    start(config(limits, limited_address_space), limits)
}

/// [`engine`] for a long-running server, which compiles once, on this thread, so the compiler's
/// scratch memory stays in one heap that can be handed back to the OS (no worker threads keep theirs).
pub fn server_engine(limits: &Limits) -> Result<Engine> {
    let mut config = config(limits, address_space_limit().is_some());
    config.parallel_compilation(false);
    start(config, limits)
}

/// Makes the engine, and for [`OnDeadline::Trap`] the background thread that advances its epoch
/// every [`EPOCH_TICK`] for as long as the engine lives.
fn start(config: Config, limits: &Limits) -> Result<Engine> {
    let engine = Engine::new(&config).map_err(|e| anyhow!("wasmtime engine: {e}"))?;
    if limits.on_deadline == OnDeadline::Trap {
        let ticking = engine.weak();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticking.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .context("starting the epoch thread")?;
    }
    Ok(engine)
}

/// Denies memory growth past the limit and remembers that it did, to explain the trap after.
pub(crate) struct MemoryLimit {
    pub max: usize,
    pub denied: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimit {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let ok = desired <= self.max;
        self.denied |= !ok;
        Ok(ok)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// Turns a trap into a message that says which limit tripped and how to raise it: no wasmtime
/// backtrace reaches a user.
pub(crate) fn explain(what: &str, limits: &Limits, memory_denied: bool, e: &wasmtime::Error) -> anyhow::Error {
    if memory_denied {
        return anyhow!(
            "{what} tried to use more than {} MiB of memory and was stopped (raise it with --max-memory-mb)",
            limits.max_memory_bytes >> 20
        );
    }
    if e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
        let ms = limits.deadline.as_millis();
        return anyhow!("{what} ran past its {ms} ms deadline and was stopped");
    }
    if e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::OutOfFuel) {
        return anyhow!(
            "{what} ran out of fuel after {} units and was stopped: it may loop forever (raise it with --fuel)",
            limits.fuel.unwrap_or(0)
        );
    }
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => anyhow!("{what} trapped: {trap}"),
        // The first line: the error itself, without the wasm backtrace wasmtime appends.
        None => anyhow!("{what} failed: {}", e.to_string().lines().next().unwrap_or("")),
    }
}

/// Address space each linear memory reserves when the process has an address-space limit
/// (`ulimit -v`, as CI containers set): wasmtime's default reserves 4 GiB plus guard pages per
/// memory, so two worker instances alone would exceed a 4 GB limit. Memories then grow by
/// moving and every access is bounds-checked, which costs a little speed, so unlimited
/// processes keep the defaults.
const LIMITED_RESERVATION: u64 = 64 << 20;

/// The process's address-space limit in bytes, when it has one.
fn address_space_limit() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the struct we pass.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut limit) } == 0;
    (ok && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

fn config(limits: &Limits, limited_address_space: bool) -> Config {
    let mut config = Config::new();
    config.consume_fuel(limits.fuel.is_some());
    config.epoch_interruption(limits.on_deadline == OnDeadline::Trap);
    if limited_address_space {
        config
            .memory_reservation(LIMITED_RESERVATION)
            .memory_guard_size(64 << 10)
            .memory_reservation_for_growth(LIMITED_RESERVATION);
    }
    // `MESHGUARD_WASM_PROFILE=perfmap perf record meshguard ...` names guest functions in perf.
    if std::env::var_os("MESHGUARD_WASM_PROFILE").is_some_and(|v| v == "perfmap") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    config
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

/// The secret that authenticates cache files: `$MESHGUARD_CACHE_KEY` (to share a cache on
/// purpose, e.g. from a CI secret), else a random key made on first use in
/// `$XDG_CONFIG_HOME/meshguard/cache-key` or `~/.config/meshguard/cache-key` (mode 0600).
/// It lives outside the cache directory, so a cache restored from elsewhere (a CI cache, a shared
/// volume) does not carry a key its files verify against. `None`: no cache.
fn cache_key() -> Option<Vec<u8>> {
    if let Some(key) = std::env::var_os("MESHGUARD_CACHE_KEY") {
        return Some(key.into_encoded_bytes());
    }
    let dir = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?
        .join("meshguard");
    let path = dir.join("cache-key");
    if let Ok(key) = std::fs::read(&path) {
        return (key.len() >= 32).then_some(key);
    }
    let mut key = vec![0u8; 32];
    std::fs::File::open("/dev/urandom").and_then(|mut r| std::io::Read::read_exact(&mut r, &mut key)).ok()?;
    std::fs::create_dir_all(&dir).ok()?;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).ok()?;
    std::io::Write::write_all(&mut file, &key).ok()?;
    Some(key)
}

type Mac = hmac::Hmac<Sha256>;
const TAG_BYTES: usize = 32;

fn tag(key: &[u8], name: &str, serialized: &[u8]) -> Option<[u8; TAG_BYTES]> {
    use hmac::Mac as _;
    let mut mac = Mac::new_from_slice(key).ok()?;
    mac.update(name.as_bytes());
    mac.update(serialized);
    Some(mac.finalize().into_bytes().into())
}

/// A cache file's compiled module, if its tag proves this machine's meshguard wrote it.
fn verified<'a>(key: &[u8], name: &str, file: &'a [u8]) -> Option<&'a [u8]> {
    use hmac::Mac as _;
    let (stored, serialized) = file.split_at_checked(TAG_BYTES)?;
    let mut mac = Mac::new_from_slice(key).ok()?;
    mac.update(name.as_bytes());
    mac.update(serialized);
    mac.verify_slice(stored).ok()?;
    Some(serialized)
}

/// Compiles `bytes`, or loads the serialized result of an earlier compile from `cache_dir`.
/// Returns the module and whether it came from the cache.
///
/// Deserializing runs native code from the file, so a cache file is used only when its HMAC
/// (keyed by [`cache_key`], over the file name and contents) verifies; the file is read once and
/// checked and deserialized from the same bytes. Anything else (corruption, a truncated write, a
/// file planted through a shared cache) is ignored and overwritten by a fresh compile.
pub fn compile_cached(engine: &Engine, bytes: &[u8], cache_dir: Option<&Path>) -> Result<(Module, bool)> {
    let (name, file, secret) = cache_entry(engine, bytes, cache_dir);
    if let Some(module) = load_verified(engine, &name, file.as_deref(), secret.as_ref()) {
        return Ok((module, true));
    }
    let module = Module::new(engine, bytes).map_err(|e| anyhow!("compiling the wasm module: {e}"))?;
    if let (Some(path), Some(secret)) = (&file, &secret) {
        // A cache that cannot be written only costs the next run a compile.
        if let (Ok(serialized), Some(parent)) = (module.serialize(), path.parent()) {
            if let Some(t) = tag(secret, &name, &serialized) {
                let _ = std::fs::create_dir_all(parent);
                let tmp = path.with_extension(format!("tmp{}", std::process::id()));
                let mut contents = t.to_vec();
                contents.extend_from_slice(&serialized);
                if std::fs::write(&tmp, contents).is_ok() {
                    let _ = std::fs::rename(&tmp, path);
                }
            }
        }
    }
    Ok((module, false))
}

/// The module from the cache only (`None`: not cached, not verified, or no cache): what a host
/// that compiles elsewhere ([`compile_cached`] in another process) loads afterwards.
pub fn load_cached(engine: &Engine, bytes: &[u8], cache_dir: Option<&Path>) -> Option<Module> {
    let (name, file, secret) = cache_entry(engine, bytes, cache_dir);
    load_verified(engine, &name, file.as_deref(), secret.as_ref())
}

/// The cache file's name (module sha256 and engine compatibility), its path, and the key, when
/// there is a cache and a key.
fn cache_entry(engine: &Engine, bytes: &[u8], cache_dir: Option<&Path>) -> (String, Option<PathBuf>, Option<Vec<u8>>) {
    let mut compat = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut compat);
    let digest = Sha256::digest(bytes);
    let key_hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    let name = format!("{key_hex}-{:016x}.cwasm", compat.finish());
    let secret = cache_dir.and_then(|_| cache_key());
    let file = cache_dir.filter(|_| secret.is_some()).map(|d| d.join(&name));
    (name, file, secret)
}

fn load_verified(engine: &Engine, name: &str, file: Option<&Path>, secret: Option<&Vec<u8>>) -> Option<Module> {
    let (path, secret) = (file?, secret?);
    let contents = std::fs::read(path).ok()?;
    let serialized = verified(secret, name, &contents)?;
    // SAFETY: the bytes carry a valid HMAC under this user's secret key, so they are what
    // `Module::serialize` wrote for an engine with the same compatibility hash (part of the
    // authenticated name) from a module with the same sha256.
    unsafe { Module::deserialize(engine, serialized) }.ok()
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
