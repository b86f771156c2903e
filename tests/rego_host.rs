//! A test host that calls an OPA-ABI module the way Kubewarden's policy-server does through its
//! evaluator (`burrego`), in both Rego execution modes. Written from burrego's documented behaviour
//! and a reading of its source (kubewarden/policy-evaluator, `crates/burrego` and
//! `src/runtimes/rego`); none of its code is copied. What it reproduces, because each is a way a
//! module can work in OPA's SDKs and still fail in Kubewarden:
//! - `env.memory` is created by the host, 5 pages, no maximum, and imported by the module;
//! - `builtins()` and `entrypoints()` are read at load; the evaluation is always entrypoint id 0;
//! - data is pushed once at load (`{}`) and again before every evaluation, each time from the
//!   heap pointer saved at load, then the input above it; evaluation goes through the eval-context
//!   calls (`opa_eval_ctx_new/set_input/set_data/set_entrypoint`, `eval`,
//!   `opa_eval_ctx_get_result`), never `opa_eval`; `opa_json_parse` gets the exact length;
//! - every request gets a fresh instance (policy-server rehydrates the evaluator per request);
//! - gatekeeper mode: input `{"parameters": settings, "review": request}`, data `{}` or the
//!   inventory; the result's first entry read as `{"result": [{"msg"}]}`, anything else read as
//!   no violations; opa mode: input `{"request": request}`, data = settings plus `kubernetes`
//!   when context-aware; `[0].result.response` read as an AdmissionResponse (uid and allowed
//!   required), else "cannot interpret OPA policy result" with code 500.

use serde_json::{json, Map, Value};
use wasmtime::{Engine, Instance, Linker, Memory, MemoryType, Module, Store, TypedFunc};

/// Kubewarden's two Rego execution modes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    Gatekeeper,
    Opa,
}

/// What policy-server turns the evaluation into (its AdmissionResponse, the fields tests read).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub allowed: bool,
    pub message: Option<String>,
    pub code: Option<u64>,
    pub warnings: Vec<String>,
    pub audit_annotations: Map<String, Value>,
}

pub struct RegoHost {
    engine: Engine,
    module: Module,
}

struct Loaded {
    store: Store<()>,
    memory: Memory,
    instance: Instance,
    base_heap_ptr: i32,
}

fn func<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
    l: &mut Loaded,
    name: &str,
) -> Result<TypedFunc<P, R>, String> {
    l.instance.get_typed_func::<P, R>(&mut l.store, name).map_err(|e| format!("cannot get {name}: {e}"))
}

impl Loaded {
    fn read_c_string(&mut self, addr: i32) -> Result<Vec<u8>, String> {
        let data = self.memory.data(&self.store);
        let start = addr as usize;
        let end = data[start..].iter().position(|b| *b == 0).ok_or("unterminated string")?;
        Ok(data[start..start + end].to_vec())
    }

    fn pull_json(&mut self, addr: i32) -> Result<Value, String> {
        let dump = func::<i32, i32>(self, "opa_json_dump")?;
        let at = dump.call(&mut self.store, addr).map_err(|e| e.to_string())?;
        let bytes = self.read_c_string(at)?;
        serde_json::from_slice(&bytes).map_err(|e| format!("dumped JSON: {e}"))
    }

    fn push_json_raw(&mut self, bytes: &[u8]) -> Result<i32, String> {
        let malloc = func::<i32, i32>(self, "opa_malloc")?;
        let parse = func::<(i32, i32), i32>(self, "opa_json_parse")?;
        let at = malloc.call(&mut self.store, bytes.len() as i32).map_err(|e| e.to_string())?;
        self.memory.write(&mut self.store, at as usize, bytes).map_err(|e| e.to_string())?;
        match parse.call(&mut self.store, (at, bytes.len() as i32)).map_err(|e| e.to_string())? {
            0 => Err("Failed to load json in memory".into()),
            addr => Ok(addr),
        }
    }
}

impl RegoHost {
    pub fn new(module_bytes: &[u8]) -> Result<RegoHost, String> {
        let engine = Engine::default();
        let module = Module::new(&engine, module_bytes).map_err(|e| e.to_string())?;
        Ok(RegoHost { engine, module })
    }

    fn load(&self) -> Result<Loaded, String> {
        let mut store = Store::new(&self.engine, ());
        let memory = Memory::new(&mut store, MemoryType::new(5, None)).map_err(|e| e.to_string())?;
        let mut linker = Linker::new(&self.engine);
        linker.define(&mut store, "env", "memory", memory).map_err(|e| e.to_string())?;
        linker
            .func_wrap("env", "opa_abort", |_: i32| -> wasmtime::Result<()> { Err(wasmtime::Error::msg("opa_abort")) })
            .map_err(|e| e.to_string())?;
        linker.func_wrap("env", "opa_println", |_: i32| {}).map_err(|e| e.to_string())?;
        let instance = linker.instantiate(&mut store, &self.module).map_err(|e| format!("instantiate: {e}"))?;
        let mut loaded = Loaded { store, memory, instance, base_heap_ptr: 0 };
        loaded.push_json_raw(b"{}")?;
        let heap_get = func::<(), i32>(&mut loaded, "opa_heap_ptr_get")?;
        loaded.base_heap_ptr = heap_get.call(&mut loaded.store, ()).map_err(|e| e.to_string())?;
        Ok(loaded)
    }

    /// `builtins()` and `entrypoints()` as burrego reads them at load.
    pub fn builtins_and_entrypoints(&self) -> Result<(Value, Value), String> {
        let mut l = self.load()?;
        let builtins = func::<(), i32>(&mut l, "builtins")?.call(&mut l.store, ()).map_err(|e| e.to_string())?;
        let entrypoints = func::<(), i32>(&mut l, "entrypoints")?.call(&mut l.store, ()).map_err(|e| e.to_string())?;
        Ok((l.pull_json(builtins)?, l.pull_json(entrypoints)?))
    }

    /// One evaluation of entrypoint 0 on a fresh instance: the raw result set.
    pub fn evaluate(&self, input: &Value, data: &[u8]) -> Result<Value, String> {
        let mut l = self.load()?;
        let heap_set = func::<i32, ()>(&mut l, "opa_heap_ptr_set")?;
        let heap_get = func::<(), i32>(&mut l, "opa_heap_ptr_get")?;
        // set_data: from the heap pointer saved at load.
        heap_set.call(&mut l.store, l.base_heap_ptr).map_err(|e| e.to_string())?;
        let data_addr = l.push_json_raw(data)?;
        let data_heap_ptr = heap_get.call(&mut l.store, ()).map_err(|e| e.to_string())?;
        // evaluate: the input just above the data.
        heap_set.call(&mut l.store, data_heap_ptr).map_err(|e| e.to_string())?;
        let input_addr = l.push_json_raw(&serde_json::to_vec(input).map_err(|e| e.to_string())?)?;
        let ctx = func::<(), i32>(&mut l, "opa_eval_ctx_new")?.call(&mut l.store, ()).map_err(|e| e.to_string())?;
        func::<(i32, i32), ()>(&mut l, "opa_eval_ctx_set_input")?
            .call(&mut l.store, (ctx, input_addr))
            .map_err(|e| e.to_string())?;
        func::<(i32, i32), ()>(&mut l, "opa_eval_ctx_set_data")?
            .call(&mut l.store, (ctx, data_addr))
            .map_err(|e| e.to_string())?;
        func::<(i32, i32), ()>(&mut l, "opa_eval_ctx_set_entrypoint")?
            .call(&mut l.store, (ctx, 0))
            .map_err(|e| e.to_string())?;
        func::<i32, i32>(&mut l, "eval")?.call(&mut l.store, ctx).map_err(|e| e.to_string())?;
        let result =
            func::<i32, i32>(&mut l, "opa_eval_ctx_get_result")?.call(&mut l.store, ctx).map_err(|e| e.to_string())?;
        l.pull_json(result)
    }

    /// policy-server's answer to `request` under `settings`, with the cluster objects a
    /// context-aware policy was granted (`None`: not context-aware).
    pub fn validate(&self, mode: Mode, settings: &Value, request: &Value, cluster: Option<&[Value]>) -> Answer {
        let evaluation = match mode {
            Mode::Gatekeeper => {
                let input = json!({"parameters": settings, "review": request});
                let data = cluster.map_or(json!({}), |c| json!({"inventory": gatekeeper_inventory(c)}));
                self.evaluate(&input, data.to_string().as_bytes())
            }
            Mode::Opa => {
                let input = json!({"request": request});
                let mut data = settings.as_object().cloned().unwrap_or_default();
                if let Some(c) = cluster {
                    data.insert("kubernetes".into(), opa_inventory(c));
                }
                self.evaluate(&input, Value::Object(data).to_string().as_bytes())
            }
        };
        let result = match evaluation {
            Ok(r) => r,
            Err(e) => return rejected(format!("internal server error: {e}"), 500),
        };
        match mode {
            Mode::Gatekeeper => {
                let violations: Vec<Value> = result
                    .get(0)
                    .and_then(|r| r.get("result"))
                    .and_then(Value::as_array)
                    .filter(|list| list.iter().all(|v| v.is_object()))
                    .cloned()
                    .unwrap_or_default();
                if violations.is_empty() {
                    return Answer {
                        allowed: true,
                        message: None,
                        code: None,
                        warnings: vec![],
                        audit_annotations: Map::new(),
                    };
                }
                let msgs: Vec<&str> = violations.iter().filter_map(|v| v.get("msg").and_then(Value::as_str)).collect();
                Answer { message: Some(msgs.join(", ")), code: None, ..rejected(String::new(), 0) }
            }
            Mode::Opa => {
                let Some(response) = result.get(0).and_then(|r| r.get("result")).and_then(|r| r.get("response")) else {
                    return rejected("internal server error: cannot interpret OPA policy result".into(), 500);
                };
                if !response.get("uid").is_some_and(Value::is_string) {
                    return rejected("internal server error: missing field `uid`".into(), 500);
                }
                let Some(allowed) = response.get("allowed").and_then(Value::as_bool) else {
                    return rejected("internal server error: missing field `allowed`".into(), 500);
                };
                Answer {
                    allowed,
                    message: response.pointer("/status/message").and_then(Value::as_str).map(String::from),
                    code: response.pointer("/status/code").and_then(Value::as_u64),
                    warnings: response
                        .get("warnings")
                        .and_then(Value::as_array)
                        .map(|w| w.iter().filter_map(|s| s.as_str().map(String::from)).collect())
                        .unwrap_or_default(),
                    audit_annotations: response
                        .get("auditAnnotations")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default(),
                }
            }
        }
    }
}

fn rejected(message: String, code: u64) -> Answer {
    Answer { allowed: false, message: Some(message), code: Some(code), warnings: vec![], audit_annotations: Map::new() }
}

/// Objects as the cluster's list calls return them: without apiVersion and kind.
fn listed(object: &Value) -> (String, String, String, String, Value) {
    let api_version = object["apiVersion"].as_str().unwrap_or("v1").to_string();
    let kind = object["kind"].as_str().unwrap_or("").to_string();
    let namespace = object.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("").to_string();
    let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    let mut stripped = object.clone();
    if let Some(m) = stripped.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
    }
    (api_version, kind, namespace, name, stripped)
}

/// Gatekeeper's inventory, as policy-server builds it for a context-aware gatekeeper policy:
/// `cluster[groupVersion][kind][name]`, `namespace[ns][groupVersion][kind][name]`.
pub fn gatekeeper_inventory(objects: &[Value]) -> Value {
    let mut inventory = json!({"cluster": {}, "namespace": {}});
    for o in objects {
        let (gv, kind, namespace, name, stripped) = listed(o);
        let slot = if namespace.is_empty() {
            &mut inventory["cluster"][&gv][&kind][&name]
        } else {
            &mut inventory["namespace"][&namespace][&gv][&kind][&name]
        };
        *slot = stripped;
    }
    inventory
}

/// kube-mgmt's layout, as policy-server builds it for a context-aware opa policy:
/// `<resource>[namespace][name]`, cluster-scoped `<resource>[name]`.
pub fn opa_inventory(objects: &[Value]) -> Value {
    let mut inventory = json!({});
    for o in objects {
        let (_, kind, namespace, name, stripped) = listed(o);
        let resource = policy_core::vap::resource_of_kind(&kind);
        let slot = if namespace.is_empty() {
            &mut inventory[&resource][&name]
        } else {
            &mut inventory[&resource][&namespace][&name]
        };
        *slot = stripped;
    }
    inventory
}
