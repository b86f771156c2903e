//! The waPC host protocol (what Kubewarden's host speaks) over wasmtime, plus the handful of
//! WASI calls a wasm32-wasip1 guest imports.

use super::guest_memory::{read, write};
use super::{explain, Limits, MemoryLimit};
use anyhow::{anyhow, Result};
use std::sync::Mutex;
use wasmtime::{Caller, Engine, InstancePre, Linker, Module, Store, TypedFunc};

/// What the host answers to a guest's host call `(binding, namespace, operation, payload)`:
/// Kubewarden's context-aware calls are `("kubewarden", "kubernetes", "list_resources_by_namespace", ..)`.
pub type HostCalls = std::sync::Arc<dyn Fn(&str, &str, &str, &[u8]) -> Result<Vec<u8>, String> + Send + Sync>;

struct Call {
    op: Vec<u8>,
    payload: Vec<u8>,
    response: Option<Vec<u8>>,
    error: Option<String>,
    limits: MemoryLimit,
    host: Option<HostCalls>,
    /// The last host call's answer or error, for `__host_response` / `__host_error`.
    host_response: Vec<u8>,
    host_error: Vec<u8>,
}

fn linker(engine: &Engine) -> Result<Linker<Call>> {
    let mut l: Linker<Call> = Linker::new(engine);
    let w = |e: wasmtime::Error| anyhow!("{e}");
    l.func_wrap("wapc", "__guest_request", |mut c: Caller<'_, Call>, op_ptr: i32, ptr: i32| -> wasmtime::Result<()> {
        let (op, payload) = (c.data().op.clone(), c.data().payload.clone());
        write(&mut c, op_ptr, &op)?;
        write(&mut c, ptr, &payload)
    })
    .map_err(w)?;
    l.func_wrap("wapc", "__guest_response", |mut c: Caller<'_, Call>, ptr: i32, len: i32| -> wasmtime::Result<()> {
        let bytes = read(&mut c, ptr, len)?;
        c.data_mut().response = Some(bytes);
        Ok(())
    })
    .map_err(w)?;
    l.func_wrap("wapc", "__guest_error", |mut c: Caller<'_, Call>, ptr: i32, len: i32| -> wasmtime::Result<()> {
        let bytes = read(&mut c, ptr, len)?;
        c.data_mut().error = Some(String::from_utf8_lossy(&bytes).into_owned());
        Ok(())
    })
    .map_err(w)?;
    l.func_wrap("wapc", "__console_log", |mut c: Caller<'_, Call>, ptr: i32, len: i32| -> wasmtime::Result<()> {
        let bytes = read(&mut c, ptr, len)?;
        eprintln!("wasm guest: {}", String::from_utf8_lossy(&bytes));
        Ok(())
    })
    .map_err(w)?;
    // Host calls go to the handler the module was given (a cluster view for the webhook); without
    // one every call fails, which guests read as "no view of the cluster".
    l.func_wrap(
        "wapc",
        "__host_call",
        |mut c: Caller<'_, Call>,
         bd: i32,
         bd_len: i32,
         ns: i32,
         ns_len: i32,
         op: i32,
         op_len: i32,
         ptr: i32,
         len: i32|
         -> wasmtime::Result<i32> {
            let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
            let binding = text(read(&mut c, bd, bd_len)?);
            let namespace = text(read(&mut c, ns, ns_len)?);
            let operation = text(read(&mut c, op, op_len)?);
            let payload = read(&mut c, ptr, len)?;
            let answer = match c.data().host.clone() {
                Some(host) => host(&binding, &namespace, &operation, &payload),
                None => Err("this host makes no host calls".to_string()),
            };
            let data = c.data_mut();
            Ok(match answer {
                Ok(response) => {
                    (data.host_response, data.host_error) = (response, Vec::new());
                    1
                }
                Err(error) => {
                    (data.host_response, data.host_error) = (Vec::new(), error.into_bytes());
                    0
                }
            })
        },
    )
    .map_err(w)?;
    l.func_wrap("wapc", "__host_response_len", |c: Caller<'_, Call>| -> i32 { c.data().host_response.len() as i32 })
        .map_err(w)?;
    l.func_wrap("wapc", "__host_response", |mut c: Caller<'_, Call>, ptr: i32| -> wasmtime::Result<()> {
        let bytes = std::mem::take(&mut c.data_mut().host_response);
        write(&mut c, ptr, &bytes)
    })
    .map_err(w)?;
    l.func_wrap("wapc", "__host_error_len", |c: Caller<'_, Call>| -> i32 { c.data().host_error.len() as i32 })
        .map_err(w)?;
    l.func_wrap("wapc", "__host_error", |mut c: Caller<'_, Call>, ptr: i32| -> wasmtime::Result<()> {
        let bytes = std::mem::take(&mut c.data_mut().host_error);
        write(&mut c, ptr, &bytes)
    })
    .map_err(w)?;

    // WASI preview 1, as little as a wasip1 guest built by Rust imports; no files, no environment.
    let wasi = "wasi_snapshot_preview1";
    l.func_wrap(wasi, "random_get", |mut c: Caller<'_, Call>, ptr: i32, len: i32| -> wasmtime::Result<i32> {
        // Hash seeds only; determinism is a feature for an offline checker.
        write(&mut c, ptr, &vec![0x5a; len.max(0) as usize])?;
        Ok(0)
    })
    .map_err(w)?;
    l.func_wrap(wasi, "environ_sizes_get", |mut c: Caller<'_, Call>, count: i32, size: i32| -> wasmtime::Result<i32> {
        write(&mut c, count, &0u32.to_le_bytes())?;
        write(&mut c, size, &0u32.to_le_bytes())?;
        Ok(0)
    })
    .map_err(w)?;
    l.func_wrap(wasi, "environ_get", |_: Caller<'_, Call>, _: i32, _: i32| -> i32 { 0 }).map_err(w)?;
    l.func_wrap(
        wasi,
        "fd_write",
        |mut c: Caller<'_, Call>, fd: i32, iovs: i32, n: i32, written: i32| -> wasmtime::Result<i32> {
            let mut total = 0u32;
            for i in 0..n.max(0) {
                let iov = read(&mut c, iovs + i * 8, 8)?;
                let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                let len = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                let bytes = read(&mut c, ptr, len)?;
                if fd == 1 || fd == 2 {
                    eprint!("{}", String::from_utf8_lossy(&bytes));
                }
                total += len.max(0) as u32;
            }
            write(&mut c, written, &total.to_le_bytes())?;
            Ok(0)
        },
    )
    .map_err(w)?;
    l.func_wrap(wasi, "proc_exit", |_: Caller<'_, Call>, code: i32| -> wasmtime::Result<()> {
        Err(wasmtime::Error::msg(format!("the guest exited with status {code}")))
    })
    .map_err(w)?;
    Ok(l)
}

/// A waPC guest ready to be called: compiled, linked and pre-instantiated once.
pub struct WapcModule {
    pre: InstancePre<Call>,
    limits: Limits,
    /// Instances that finished a call cleanly, kept for the next one. The guest compiles its
    /// RuleSet on first use and caches it (as under Kubewarden's host, which also keeps its
    /// instances); a fresh instance per call would pay that compile on every admission request.
    warm: Mutex<Vec<Warm>>,
    host: Option<HostCalls>,
}

struct Warm {
    store: Store<Call>,
    guest_call: TypedFunc<(i32, i32), i32>,
}

impl WapcModule {
    pub fn new(engine: &Engine, module: &Module, limits: Limits) -> Result<Self> {
        let mut l = linker(engine)?;
        l.define_unknown_imports_as_traps(module).map_err(|e| anyhow!("{e}"))?;
        let pre = l.instantiate_pre(module).map_err(|e| anyhow!("linking the wasm module: {e}"))?;
        Ok(WapcModule { pre, limits, warm: Mutex::new(Vec::new()), host: None })
    }

    /// Answers the guest's host calls with `host` from now on.
    pub fn with_host_calls(mut self, host: HostCalls) -> Self {
        self.host = Some(host);
        self
    }

    /// Calls operation `op`, in an instance that has only ever completed calls without a trap
    /// (a trapped instance is dropped, so no call sees state a failure left behind).
    pub fn call(&self, op: &str, payload: &[u8]) -> Result<Vec<u8>> {
        let reused = self.warm.lock().ok().and_then(|mut pool| pool.pop());
        let mut warm = match reused {
            Some(w) => w,
            None => self.instantiate()?,
        };
        let data = warm.store.data_mut();
        data.op = op.as_bytes().to_vec();
        data.payload = payload.to_vec();
        data.response = None;
        data.error = None;
        let watch = self.limits.arm(&mut warm.store, "the wasm module")?;
        let ok = warm.guest_call.call(&mut warm.store, (op.len() as i32, payload.len() as i32));
        drop(watch);
        let data = warm.store.data_mut();
        let answer = match (ok, data.response.take(), data.error.take()) {
            (Ok(1), Some(response), _) => Ok(response),
            (Ok(_), _, Some(error)) => Err(anyhow!("the guest failed `{op}`: {error}")),
            (Ok(_), _, None) => Err(anyhow!("the guest answered `{op}` with no response")),
            (Err(trap), _, _) => return Err(self.explain(&warm.store, trap)),
        };
        if let Ok(mut pool) = self.warm.lock() {
            pool.push(warm);
        }
        answer
    }

    fn instantiate(&self) -> Result<Warm> {
        let call = Call {
            op: Vec::new(),
            payload: Vec::new(),
            response: None,
            error: None,
            limits: MemoryLimit { max: self.limits.max_memory_bytes, denied: false },
            host: self.host.clone(),
            host_response: Vec::new(),
            host_error: Vec::new(),
        };
        let mut store = Store::new(self.pre.module().engine(), call);
        store.limiter(|c| &mut c.limits);
        // Instantiation runs guest code too.
        let watch = self.limits.arm(&mut store, "the wasm module")?;
        let started = (|| -> wasmtime::Result<TypedFunc<(i32, i32), i32>> {
            let instance = self.pre.instantiate(&mut store)?;
            for init in ["_initialize", "wapc_init"] {
                if let Ok(f) = instance.get_typed_func::<(), ()>(&mut store, init) {
                    f.call(&mut store, ())?;
                }
            }
            instance.get_typed_func::<(i32, i32), i32>(&mut store, "__guest_call")
        })();
        drop(watch);
        match started {
            Ok(guest_call) => Ok(Warm { store, guest_call }),
            Err(e) => Err(self.explain(&store, e)),
        }
    }

    fn explain(&self, store: &Store<Call>, e: wasmtime::Error) -> anyhow::Error {
        explain("the wasm module", &self.limits, store.data().limits.denied, &e)
    }
}
