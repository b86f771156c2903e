//! proxy-wasm glue. The root context compiles the RuleSet once in `on_configure`; each HTTP
//! context does per-request work only: one host call for the headers, one policy-core decision,
//! then a local reply, a warn header, and counters.
//!
//! Host calls go through `proxy_wasm::hostcalls` and their `Result`s are handled: the SDK's
//! convenience methods `unwrap()` host errors, and a trap in a filter answers 503 and (under the
//! default FAIL_CLOSED failure policy) leaves the VM broken until Envoy restarts.

use crate::header_map::{request_header, request_header_map};
use crate::translate::{self, LocalReply, WARN_HEADER};
use policy_core::http::{Clock, LeasedBuckets, RawSharedData, SlottedBuckets};
use policy_core::{Action, HeadersRead, Policy};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{
    Action as Next, BufferType, ContextType, GrpcStatusCode, LogLevel, MapType, MetricType, Status,
};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { filter: None }) });
}}

fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

fn counter(name: &str) -> Option<u32> {
    match hostcalls::define_metric(MetricType::Counter, name) {
        Ok(id) => Some(id),
        Err(e) => {
            log(LogLevel::Warn, &format!("cannot define metric {name}: {e:?}"));
            None
        }
    }
}

fn bump(metric: Option<u32>) {
    if let Some(id) = metric {
        let _ = hostcalls::increment_metric(id, 1);
    }
}

/// The compiled configuration, shared by every HTTP context of this VM.
struct Filter {
    policy: Policy,
    /// What each request fetches from the host. This filter reads the whole map in one call: in
    /// Envoy 1.40's V8 one by-name lookup (a host call, then the host calling back into the
    /// guest's allocator for the value) costs about what the whole map does, and any rule set
    /// needs four or more (the pseudo-headers, `content-type`), so fetching only the named headers
    /// measured slower (BENCHMARKS.md). The `named-headers` build, a benchmark variant, does that.
    headers: HeadersRead,
    /// Counters per HTTP rule, indexed like `Policy::http_rule`: [audit, warn, deny].
    rule_metrics: Vec<[Option<u32>; 3]>,
    allowed: Option<u32>,
    /// Allowed requests not yet added to `allowed`. A host call per request cost about 950
    /// instructions in Envoy's V8 (callgrind), a third of the filter's own work on an allowed
    /// request, so each worker hands its count to Envoy once a second (`on_tick`), before any
    /// other counter moves, and when the VM ends; per request only where Envoy sets no tick.
    allowed_pending: Cell<i64>,
    batch_allowed: bool,
    denied: Option<u32>,
    errors: Option<u32>,
    /// This worker's leases on the shared rate-limit buckets (the VM is single-threaded).
    buckets: RefCell<LeasedBuckets<SlottedBuckets<EnvoySharedData>>>,
}

impl Filter {
    fn count_allowed(&self) {
        self.allowed_pending.set(self.allowed_pending.get() + 1);
        if !self.batch_allowed {
            self.flush_allowed();
        }
    }

    fn flush_allowed(&self) {
        let pending = self.allowed_pending.replace(0);
        if let (Some(id), true) = (self.allowed, pending > 0) {
            let _ = hostcalls::increment_metric(id, pending);
        }
    }

    /// Counts a decision other than an allow, after the allows before it.
    fn count(&self, metric: Option<u32>) {
        self.flush_allowed();
        bump(metric);
    }
}

/// How often each worker hands its count of allowed requests to Envoy.
const ALLOWED_FLUSH_PERIOD: Duration = Duration::from_secs(1);

struct Root {
    filter: Option<Rc<Filter>>,
}

impl Context for Root {}

/// The allows counted since the last tick reach Envoy when the SDK drops the root context
/// (`proxy_on_delete`); a VM Envoy discards without deleting its contexts loses at most a second's.
impl Drop for Root {
    fn drop(&mut self) {
        if let Some(filter) = &self.filter {
            filter.flush_allowed();
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let config = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => Vec::new(),
            Err(e) => {
                log(LogLevel::Critical, &format!("cannot read the plugin configuration: {e:?}"));
                return false;
            }
        };
        let text = match std::str::from_utf8(&config) {
            Ok(t) => t,
            Err(e) => {
                log(LogLevel::Critical, &format!("the plugin configuration is not UTF-8: {e}"));
                return false;
            }
        };
        // An invalid rule set must stop Envoy from serving, not silently allow traffic.
        let policy = match Policy::from_text(text) {
            Ok(p) => p,
            Err(e) => {
                log(LogLevel::Critical, &format!("invalid RuleSet in the plugin configuration: line {e}"));
                return false;
            }
        };
        let rule_metrics = policy
            .http_rules()
            .map(|r| {
                [Action::Audit, Action::Warn, Action::Deny].map(|a| counter(&translate::rule_metric_name(&r.id, a)))
            })
            .collect();
        log(LogLevel::Info, &translate::loaded_message(&policy));
        let batch_allowed = match hostcalls::set_tick_period(ALLOWED_FLUSH_PERIOD) {
            Ok(()) => true,
            Err(e) => {
                log(LogLevel::Warn, &format!("no tick ({e:?}): allowed requests are counted one host call each"));
                false
            }
        };
        // The slots' seed, drawn now: Envoy configures its main thread's VM before the workers'.
        let mut slots = SlottedBuckets::new(EnvoySharedData);
        if let Err(e) = slots.seed() {
            log(LogLevel::Warn, &format!("no rate-limit seed yet ({e}): each rate-limited request retries"));
        }
        self.filter = Some(Rc::new(Filter {
            rule_metrics,
            allowed: counter(&translate::outcome_metric_name("allow")),
            allowed_pending: Cell::new(0),
            batch_allowed,
            denied: counter(&translate::outcome_metric_name("deny")),
            errors: counter(&translate::outcome_metric_name("error")),
            buckets: RefCell::new(LeasedBuckets::new(slots)),
            headers: if cfg!(feature = "named-headers") { policy.headers_read() } else { HeadersRead::All },
            policy,
        }));
        true
    }

    fn on_tick(&mut self) {
        if let Some(filter) = &self.filter {
            filter.flush_allowed();
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        let filter = self.filter.clone()?;
        Some(Box::new(Stream { filter, warn: None, replied: false }))
    }
}

struct Stream {
    filter: Rc<Filter>,
    /// `x-meshguard-warn` value to add to the response.
    warn: Option<String>,
    /// Our own local reply also passes through `on_http_response_headers`; do not decorate it.
    replied: bool,
}

impl Context for Stream {}

/// Envoy shared data, shared by every worker thread's VM: rate-limit buckets live there, in the
/// fixed slots policy-core's `SlottedBuckets` names (shared data has no delete), updated with
/// compare-and-swap. Workers lease tokens from them in batches (`LeasedBuckets`), so most
/// requests make no shared-data call.
struct EnvoySharedData;

impl RawSharedData for EnvoySharedData {
    fn get(&mut self, key: &str) -> Result<(Option<Vec<u8>>, u32), String> {
        let (data, cas) = hostcalls::get_shared_data(key).map_err(|e| format!("get_shared_data: {e:?}"))?;
        Ok((data, cas.unwrap_or(0)))
    }

    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<bool, String> {
        match hostcalls::set_shared_data(key, Some(value), (cas != 0).then_some(cas)) {
            Ok(()) => Ok(true),
            Err(Status::CasMismatch) => Ok(false),
            Err(e) => Err(format!("set_shared_data: {e:?}")),
        }
    }

    fn random_u64(&mut self) -> Result<u64, String> {
        random_u64()
    }
}

/// WASI's entropy, which Envoy's wasm hosts (proxy-wasm-cpp-host) give every module.
#[cfg(target_arch = "wasm32")]
fn random_u64() -> Result<u64, String> {
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    extern "C" {
        fn random_get(buf: *mut u8, len: usize) -> i32;
    }
    let mut bytes = [0u8; 8];
    // SAFETY: the host writes at most `len` bytes at `buf`, which is `bytes`.
    match unsafe { random_get(bytes.as_mut_ptr(), bytes.len()) } {
        0 => Ok(u64::from_le_bytes(bytes)),
        errno => Err(format!("random_get: WASI errno {errno}")),
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn random_u64() -> Result<u64, String> {
    Err("random_get: only a wasm build has the host's entropy".into())
}

/// Envoy's clock, a host call; policy-core reads it only when a rate limit needs a new lease.
struct EnvoyClock;

impl Clock for EnvoyClock {
    fn now_ms(&mut self) -> Result<u64, String> {
        let t = hostcalls::get_current_time().map_err(|e| format!("get_current_time: {e:?}"))?;
        Ok(t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0))
    }
}

fn grpc_code(code: u8) -> GrpcStatusCode {
    match code {
        7 => GrpcStatusCode::PermissionDenied,
        8 => GrpcStatusCode::ResourceExhausted,
        14 => GrpcStatusCode::Unavailable,
        _ => GrpcStatusCode::Unknown,
    }
}

impl Stream {
    fn reply(&mut self, reply: LocalReply) -> Next {
        self.replied = true;
        let sent = match &reply {
            LocalReply::Http { status, headers, body } => {
                let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                hostcalls::send_http_response(*status, headers, Some(body))
            }
            LocalReply::Grpc { status, message } => {
                hostcalls::send_grpc_response(grpc_code(*status), Some(message), vec![])
            }
        };
        match sent {
            Ok(()) => Next::Pause,
            Err(e) => {
                log(LogLevel::Error, &format!("cannot send the local reply: {e:?}"));
                Next::Continue
            }
        }
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Next {
        let filter = Rc::clone(&self.filter);
        let map;
        let req = match &filter.headers {
            HeadersRead::All => match request_header_map() {
                Ok(bytes) => {
                    map = bytes;
                    translate::request_from_map(&map)
                }
                Err(e) => Err(e),
            },
            HeadersRead::Named(names) => {
                translate::request_from_named(names, |name| request_header(name).map(|v| v.map(translate::owned_text)))
            }
        };
        let req = match req {
            Ok(r) => r,
            Err(e) => return self.fail(&filter, false, &e),
        };
        let decision = match filter.buckets.try_borrow_mut() {
            Ok(mut buckets) => filter.policy.decide_with_clock(&req, &mut EnvoyClock, &mut *buckets),
            Err(_) => Err("rate-limit leases are in use by another decision".to_string()),
        };
        let decision = match decision {
            Ok(d) => d,
            Err(e) => return self.fail(&filter, req.is_grpc(), &e),
        };
        for (index, action) in &decision.fired {
            if let Some(ids) = filter.rule_metrics.get(*index) {
                bump(ids[*action as usize]);
            }
        }
        let verdict = translate::verdict(&filter.policy, &decision, req.is_grpc());
        self.warn = verdict.warn;
        match verdict.reply {
            Some(reply) => {
                filter.count(filter.denied);
                self.reply(reply)
            }
            None => {
                filter.count_allowed();
                Next::Continue
            }
        }
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Next {
        if let (Some(warn), false) = (&self.warn, self.replied) {
            if let Err(e) = hostcalls::add_map_value(MapType::HttpResponseHeaders, WARN_HEADER, warn) {
                log(LogLevel::Warn, &format!("cannot add {WARN_HEADER}: {e:?}"));
            }
        }
        Next::Continue
    }
}

impl Stream {
    /// Evaluation failed: the RuleSet's `spec.failOpen` decides, never a panic.
    fn fail(&mut self, filter: &Filter, grpc: bool, error: &str) -> Next {
        filter.count(filter.errors);
        log(LogLevel::Error, &format!("evaluation failed: {error}"));
        if filter.policy.fail_open() {
            Next::Continue
        } else {
            self.reply(translate::error_reply(grpc))
        }
    }
}
