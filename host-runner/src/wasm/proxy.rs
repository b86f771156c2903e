//! An emulation of the proxy-wasm host ABI (0.2.1), the subset the meshguard filter uses:
//! plugin configuration, request/response headers, local responses, shared data with CAS,
//! metrics, time and logging. Lets CI run the very filter Envoy loads over recorded requests.

use super::guest_memory::{self, read, read_str, write};
use super::{explain, Limits, MemoryLimit};
use anyhow::{anyhow, bail, Result};
use std::collections::HashMap;
use wasmtime::{Caller, Engine, Extern, Instance, Linker, Memory, Module, Store, TypedFunc};

const OK: i32 = 0;
const NOT_FOUND: i32 = 1;
const BAD_ARGUMENT: i32 = 2;
const CAS_MISMATCH: i32 = 8;
const PLUGIN_CONFIGURATION: i32 = 7;
const REQUEST_HEADERS: i32 = 0;
const RESPONSE_HEADERS: i32 = 2;

/// A local response the filter sent instead of letting the request through.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalResponse {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// -1 for plain HTTP; else the gRPC status of a trailers-only answer.
    pub grpc_status: i32,
}

#[derive(Default)]
struct Host {
    config: Vec<u8>,
    request_headers: Vec<(String, String)>,
    response_headers: Vec<(String, String)>,
    local_response: Option<LocalResponse>,
    shared: HashMap<String, (Vec<u8>, u32)>,
    metrics: Vec<(String, i64)>,
    now_ns: u64,
    logs: Vec<String>,
    limits: Option<MemoryLimit>,
    /// The guest's `malloc` and memory, looked up once after instantiation instead of by name for
    /// every buffer the host returns.
    malloc: Option<TypedFunc<i32, i32>>,
    memory: Option<Memory>,
}

/// Copies `bytes` into guest memory allocated with the guest's `malloc`, and stores the address
/// and size at `ptr_ptr` / `size_ptr`, as the ABI's "return buffers" work.
fn give(c: &mut Caller<'_, Host>, bytes: &[u8], ptr_ptr: i32, size_ptr: i32) -> wasmtime::Result<()> {
    // Taken out for the call (the guest may call back in) and put back after.
    let malloc = match c.data_mut().malloc.take() {
        Some(f) => f,
        None => match c.get_export("malloc") {
            Some(Extern::Func(f)) => f.typed::<i32, i32>(&*c)?,
            _ => return Err(wasmtime::Error::msg("the filter exports no malloc")),
        },
    };
    let addr = malloc.call(&mut *c, bytes.len() as i32);
    c.data_mut().malloc = Some(malloc);
    let addr = addr?;
    let memory = match c.data().memory {
        Some(memory) => memory,
        None => guest_memory::memory(c)?,
    };
    let at = |p: i32| p as u32 as usize;
    let fault = |e: wasmtime::MemoryAccessError| wasmtime::Error::msg(e.to_string());
    memory.write(&mut *c, at(addr), bytes).map_err(fault)?;
    memory.write(&mut *c, at(ptr_ptr), &addr.to_le_bytes()).map_err(fault)?;
    memory.write(&mut *c, at(size_ptr), &(bytes.len() as u32).to_le_bytes()).map_err(fault)
}

fn serialize_map(map: &[(String, String)]) -> Vec<u8> {
    let strings: usize = map.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    let mut out = Vec::with_capacity(4 + 8 * map.len() + strings);
    out.extend_from_slice(&(map.len() as u32).to_le_bytes());
    for (k, v) in map {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in map {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

fn deserialize_map(bytes: &[u8]) -> Vec<(String, String)> {
    let word = |at: usize| bytes.get(at..at + 4).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    let n = word(0);
    let mut p = 4 + n * 8;
    let mut out = Vec::new();
    for i in 0..n {
        let (kl, vl) = (word(4 + i * 8), word(8 + i * 8));
        let k = String::from_utf8_lossy(bytes.get(p..p + kl).unwrap_or_default()).into_owned();
        p += kl + 1;
        let v = String::from_utf8_lossy(bytes.get(p..p + vl).unwrap_or_default()).into_owned();
        p += vl + 1;
        out.push((k, v));
    }
    out
}

fn map_of(host: &mut Host, map_type: i32) -> Option<&mut Vec<(String, String)>> {
    match map_type {
        REQUEST_HEADERS => Some(&mut host.request_headers),
        RESPONSE_HEADERS => Some(&mut host.response_headers),
        _ => None,
    }
}

fn linker(engine: &Engine) -> Result<Linker<Host>> {
    let mut l: Linker<Host> = Linker::new(engine);
    let w = |e: wasmtime::Error| anyhow!("{e}");
    l.func_wrap(
        "env",
        "proxy_log",
        |mut c: Caller<'_, Host>, _level: i32, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            let msg = read_str(&mut c, ptr, len)?;
            c.data_mut().logs.push(msg);
            Ok(OK)
        },
    )
    .map_err(w)?;
    l.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: Caller<'_, Host>,
         buffer: i32,
         start: i32,
         max: i32,
         ptr_ptr: i32,
         size_ptr: i32|
         -> wasmtime::Result<i32> {
            if buffer != PLUGIN_CONFIGURATION {
                return Ok(NOT_FOUND);
            }
            let config = c.data().config.clone();
            let start = (start.max(0) as usize).min(config.len());
            let end = start.saturating_add(max as u32 as usize).min(config.len());
            give(&mut c, &config[start..end], ptr_ptr, size_ptr)?;
            Ok(OK)
        },
    )
    .map_err(w)?;
    l.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: Caller<'_, Host>, map_type: i32, ptr_ptr: i32, size_ptr: i32| -> wasmtime::Result<i32> {
            let Some(map) = map_of(c.data_mut(), map_type) else { return Ok(NOT_FOUND) };
            let bytes = serialize_map(map);
            give(&mut c, &bytes, ptr_ptr, size_ptr)?;
            Ok(OK)
        },
    )
    .map_err(w)?;
    l.func_wrap(
        "env",
        "proxy_add_header_map_value",
        |mut c: Caller<'_, Host>, map_type: i32, kp: i32, kl: i32, vp: i32, vl: i32| -> wasmtime::Result<i32> {
            let (k, v) = (read_str(&mut c, kp, kl)?, read_str(&mut c, vp, vl)?);
            match map_of(c.data_mut(), map_type) {
                Some(map) => {
                    map.push((k, v));
                    Ok(OK)
                }
                None => Ok(NOT_FOUND),
            }
        },
    )
    .map_err(w)?;
    l.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut c: Caller<'_, Host>,
         status: i32,
         _dp: i32,
         _dl: i32,
         bp: i32,
         bl: i32,
         hp: i32,
         hl: i32,
         grpc: i32|
         -> wasmtime::Result<i32> {
            let body = read_str(&mut c, bp, bl)?;
            let headers = deserialize_map(&read(&mut c, hp, hl)?);
            c.data_mut().local_response =
                Some(LocalResponse { status: status as u32, headers, body, grpc_status: grpc });
            Ok(OK)
        },
    )
    .map_err(w)?;
    l.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut c: Caller<'_, Host>,
         kp: i32,
         kl: i32,
         ptr_ptr: i32,
         size_ptr: i32,
         cas_ptr: i32|
         -> wasmtime::Result<i32> {
            let key = read_str(&mut c, kp, kl)?;
            let Some((value, cas)) = c.data().shared.get(&key).cloned() else { return Ok(NOT_FOUND) };
            give(&mut c, &value, ptr_ptr, size_ptr)?;
            write(&mut c, cas_ptr, &cas.to_le_bytes())?;
            Ok(OK)
        },
    )
    .map_err(w)?;
    l.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut c: Caller<'_, Host>, kp: i32, kl: i32, vp: i32, vl: i32, cas: i32| -> wasmtime::Result<i32> {
            let (key, value) = (read_str(&mut c, kp, kl)?, read(&mut c, vp, vl)?);
            let shared = &mut c.data_mut().shared;
            let current = shared.get(&key).map_or(0, |(_, v)| *v);
            if cas != 0 && cas as u32 != current {
                return Ok(CAS_MISMATCH);
            }
            shared.insert(key, (value, current.wrapping_add(1).max(1)));
            Ok(OK)
        },
    )
    .map_err(w)?;
    // Envoy's hosts give every module WASI's entropy; the filter seeds its rate-limit slots with it.
    l.func_wrap(
        "wasi_snapshot_preview1",
        "random_get",
        |mut c: Caller<'_, Host>, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            // A replay is reproducible: the same seed every run.
            write(&mut c, ptr, &vec![0x5a; len.max(0) as usize])?;
            Ok(0)
        },
    )
    .map_err(w)?;
    l.func_wrap(
        "env",
        "proxy_define_metric",
        |mut c: Caller<'_, Host>, _t: i32, np: i32, nl: i32, id_ptr: i32| -> wasmtime::Result<i32> {
            let name = read_str(&mut c, np, nl)?;
            let metrics = &mut c.data_mut().metrics;
            let id = metrics.iter().position(|(n, _)| *n == name).unwrap_or_else(|| {
                metrics.push((name, 0));
                metrics.len() - 1
            });
            write(&mut c, id_ptr, &(id as u32).to_le_bytes())?;
            Ok(OK)
        },
    )
    .map_err(w)?;
    l.func_wrap("env", "proxy_increment_metric", |mut c: Caller<'_, Host>, id: i32, by: i64| -> i32 {
        match c.data_mut().metrics.get_mut(id as usize) {
            Some((_, v)) => {
                *v += by;
                OK
            }
            None => BAD_ARGUMENT,
        }
    })
    .map_err(w)?;
    l.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: Caller<'_, Host>, ptr: i32| -> wasmtime::Result<i32> {
            let now = c.data().now_ns;
            write(&mut c, ptr, &now.to_le_bytes())?;
            Ok(OK)
        },
    )
    .map_err(w)?;
    l.func_wrap("env", "proxy_set_tick_period_milliseconds", |_: Caller<'_, Host>, _: i32| -> i32 { OK }).map_err(w)?;
    l.func_wrap("env", "proxy_set_effective_context", |_: Caller<'_, Host>, _: i32| -> i32 { OK }).map_err(w)?;
    l.func_wrap("env", "proxy_done", |_: Caller<'_, Host>| -> i32 { OK }).map_err(w)?;
    Ok(l)
}

/// What the filter did with one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub local_response: Option<LocalResponse>,
    /// Headers the filter added to the response (e.g. `x-meshguard-warn`).
    pub added_response_headers: Vec<(String, String)>,
}

/// One filter instance (one Envoy worker's VM), configured once, fed requests in order.
///
/// Like Envoy, it calls only the callbacks the module exports (a filter may leave out those it
/// does not implement) and answers for a missing one what the ABI says: continue, done.
pub struct ProxyFilter {
    store: Store<Host>,
    on_create: Option<TypedFunc<(i32, i32), ()>>,
    on_request: TypedFunc<(i32, i32, i32), i32>,
    on_response: Option<TypedFunc<(i32, i32, i32), i32>>,
    on_done: Option<TypedFunc<i32, i32>>,
    on_delete: Option<TypedFunc<i32, ()>>,
    next_context: i32,
    limits: Limits,
}

const ROOT: i32 = 1;

impl ProxyFilter {
    /// Instantiates the filter and runs `proxy_on_vm_start` and `proxy_on_configure` with
    /// `config` as the plugin configuration; `Err` carries the filter's own log when it refuses.
    pub fn new(engine: &Engine, module: &Module, config: &[u8], limits: Limits) -> Result<Self> {
        let mut l = linker(engine)?;
        l.define_unknown_imports_as_traps(module).map_err(|e| anyhow!("{e}"))?;
        let memory = MemoryLimit { max: limits.max_memory_bytes, denied: false };
        let host = Host { config: config.to_vec(), now_ns: 1_000_000_000_000, limits: Some(memory), ..Host::default() };
        let mut store = Store::new(engine, host);
        store.limiter(|h| h.limits.as_mut().expect("set before the store was made"));
        // Dropped when this function returns: the filter's start runs under the deadline.
        let _watch = limits.arm(&mut store, "the filter")?;
        let denied = |store: &Store<Host>| store.data().limits.as_ref().is_some_and(|l| l.denied);
        let fail = |store: &Store<Host>, e: wasmtime::Error| explain("the filter", &limits, denied(store), &e);
        let instance: Instance = l.instantiate(&mut store, module).map_err(|e| fail(&store, e))?;
        // A callback the filter may leave out: absent is `None`, present with the wrong type an error.
        fn optional<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
            instance: &Instance,
            store: &mut Store<Host>,
            name: &str,
        ) -> Result<Option<TypedFunc<P, R>>> {
            match instance.get_func(&mut *store, name) {
                None => Ok(None),
                Some(f) => f.typed(&*store).map(Some).map_err(|e| anyhow!("{name}: {e}")),
            }
        }
        if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
            init.call(&mut store, ()).map_err(|e| fail(&store, e))?;
        }
        let malloc = instance.get_typed_func::<i32, i32>(&mut store, "malloc").ok();
        let memory = instance.get_memory(&mut store, "memory");
        (store.data_mut().malloc, store.data_mut().memory) = (malloc, memory);
        let on_create = optional::<(i32, i32), ()>(&instance, &mut store, "proxy_on_context_create")?;
        let on_vm_start = optional::<(i32, i32), i32>(&instance, &mut store, "proxy_on_vm_start")?;
        let on_configure = optional::<(i32, i32), i32>(&instance, &mut store, "proxy_on_configure")?;
        let on_request = optional(&instance, &mut store, "proxy_on_request_headers")?
            .ok_or_else(|| anyhow!("the filter does not export proxy_on_request_headers"))?;
        let on_response = optional(&instance, &mut store, "proxy_on_response_headers")?;
        let on_done = optional(&instance, &mut store, "proxy_on_done")?;
        let on_delete = optional(&instance, &mut store, "proxy_on_delete")?;
        if let Some(on_create) = &on_create {
            on_create.call(&mut store, (ROOT, 0)).map_err(|e| fail(&store, e))?;
        }
        let started = match on_vm_start {
            Some(f) => f.call(&mut store, (ROOT, 0)).map_err(|e| fail(&store, e))?,
            None => 1,
        };
        if started == 0 {
            let logs = store.data().logs.join("; ");
            bail!(
                "the filter failed to start: {}",
                if logs.is_empty() { "proxy_on_vm_start answered false" } else { &logs }
            );
        }
        let configured = match on_configure {
            Some(f) => f.call(&mut store, (ROOT, config.len() as i32)).map_err(|e| fail(&store, e))?,
            None => 1,
        };
        if configured == 0 {
            bail!("the filter rejected its configuration: {}", store.data().logs.join("; "));
        }
        Ok(ProxyFilter { store, on_create, on_request, on_response, on_done, on_delete, next_context: 2, limits })
    }

    /// Runs one request through the filter at host time `now_ms`.
    pub fn request(&mut self, headers: Vec<(String, String)>, now_ms: u64) -> Result<Outcome> {
        let ctx = self.next_context;
        self.next_context += 1;
        let host = self.store.data_mut();
        host.now_ns = now_ms.saturating_mul(1_000_000);
        host.local_response = None;
        host.response_headers = vec![(":status".into(), "200".into())];
        let n = headers.len() as i32;
        host.request_headers = headers;
        let watch = self.limits.arm(&mut self.store, "the filter")?;
        let run = |s: &mut Self| -> wasmtime::Result<()> {
            if let Some(f) = &s.on_create {
                f.call(&mut s.store, (ctx, ROOT))?;
            }
            s.on_request.call(&mut s.store, (ctx, n, 1))?;
            // Envoy runs the response path for the filter's own local reply too.
            let replied = s.store.data().local_response.clone();
            if let Some(reply) = &replied {
                let mut h = vec![(":status".to_string(), reply.status.to_string())];
                h.extend(reply.headers.iter().cloned());
                s.store.data_mut().response_headers = h;
            }
            let count = s.store.data().response_headers.len() as i32;
            if let Some(f) = &s.on_response {
                f.call(&mut s.store, (ctx, count, 1))?;
            }
            // A filter that answers "not done" would be asked again by Envoy later; none here does.
            if let Some(f) = &s.on_done {
                f.call(&mut s.store, ctx)?;
            }
            if let Some(f) = &s.on_delete {
                f.call(&mut s.store, ctx)?;
            }
            Ok(())
        };
        let ran = run(self);
        drop(watch);
        ran.map_err(|e| {
            let denied = self.store.data().limits.as_ref().is_some_and(|l| l.denied);
            explain("the filter", &self.limits, denied, &e).context("on this request Envoy would answer 503")
        })?;
        let host = self.store.data();
        let base = match &host.local_response {
            Some(r) => 1 + r.headers.len(),
            None => 1,
        };
        Ok(Outcome {
            local_response: host.local_response.clone(),
            added_response_headers: host.response_headers.iter().skip(base).cloned().collect(),
        })
    }

    pub fn metrics(&self) -> &[(String, i64)] {
        &self.store.data().metrics
    }
}
