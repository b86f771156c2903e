//! meshguard as an Envoy dynamic module: the proxy-wasm filter's twin, native. Envoy's
//! `envoy.filters.http.dynamic_modules` filter loads `libmeshguard_envoy.so` (module
//! `meshguard_envoy`, `filter_name: meshguard`) with the RuleSet as its `filter_config` string.
//! It translates and nothing more, through the same translation as the wasm filter
//! (`meshguard_guest_support::envoy`): the same decisions, local replies, warn header, counter
//! names and log lines.
//!
//! The configuration is compiled once on Envoy's main thread and shared by every worker; a filter
//! lives for one HTTP stream on one worker. Rate-limit buckets live in the configuration behind a
//! mutex, so all workers draw on one bucket per key, exactly (the wasm filter leases tokens per
//! worker instead, within a documented bound, because its workers share memory only through
//! Envoy's shared data).
//!
//! Nothing unwinds into Envoy: every hook runs under `catch_unwind` (a panic is logged and
//! handled like an evaluation error, by `spec.failOpen`). `panic = "abort"` would also keep
//! unwinding out, but it is a profile setting for the whole workspace, and aborting would take
//! the proxy down with the request.

// The hooks are safe to call the way Envoy calls them, with the pointers it made or was given;
// they are `extern "C"` entry points for Envoy, not an API for Rust callers.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

mod abi;

use abi::{bytes, EnvoyBuffer, HttpHeader, ModuleBuffer};
use meshguard_guest_support::envoy::{self as translate, LocalReply, RequestBuilder, WARN_HEADER};
use policy_core::http::TokenBucket;
use policy_core::{Action, BucketStore, Clock, MemoryBuckets, Policy};
use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

/// The one filter this module offers.
const FILTER_NAME: &str = "meshguard";

fn log(level: u32, message: &str) {
    // SAFETY: Envoy copies the message during the call.
    unsafe { abi::envoy_dynamic_module_callback_log(level, ModuleBuffer::of(message)) }
}

/// Runs a hook body; a panic is logged and answered with `fallback`.
fn guarded<T>(hook: &str, fallback: impl FnOnce() -> T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            log(abi::LOG_ERROR, &format!("meshguard: {hook} panicked: {what}"));
            fallback()
        }
    }
}

/// The compiled RuleSet and what every stream shares.
struct Config {
    policy: Policy,
    /// Counter ids per HTTP rule, indexed like `Policy::http_rule`: [audit, warn, deny].
    rule_metrics: Vec<[Option<usize>; 3]>,
    allowed: Option<usize>,
    denied: Option<usize>,
    errors: Option<usize>,
    buckets: Mutex<MemoryBuckets>,
}

/// One HTTP stream.
struct Stream {
    config: *const Config,
    /// `x-meshguard-warn` value to add to the response.
    warn: Option<String>,
}

fn define_counter(config_envoy: *mut c_void, name: &str) -> Option<usize> {
    let mut id = 0usize;
    // SAFETY: called inside config_new, the only place Envoy lets a module define metrics.
    let result = unsafe {
        abi::envoy_dynamic_module_callback_http_filter_config_define_counter(
            config_envoy,
            ModuleBuffer::of(name),
            std::ptr::null_mut(),
            0,
            &mut id,
        )
    };
    if result == abi::METRICS_SUCCESS {
        Some(id)
    } else {
        log(abi::LOG_ERROR, &format!("meshguard: cannot define counter {name}: result {result}"));
        None
    }
}

fn bump(filter: *mut c_void, counter: Option<usize>) {
    if let Some(id) = counter {
        // SAFETY: `filter` is the stream Envoy handed the current hook.
        unsafe {
            abi::envoy_dynamic_module_callback_http_filter_increment_counter(filter, id, std::ptr::null_mut(), 0, 1)
        };
    }
}

/// Every worker draws on the same buckets, one token at a time under the lock: exact.
struct SharedMemory<'a>(&'a Mutex<MemoryBuckets>);

impl BucketStore for SharedMemory<'_> {
    fn take(
        &mut self,
        key: policy_core::http::BucketKey<'_>,
        bucket: &TokenBucket,
        clock: &mut dyn Clock,
    ) -> Result<bool, String> {
        let mut buckets = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        buckets.take(key, bucket, clock)
    }
}

/// Wall-clock milliseconds, as the wasm filter reads Envoy's clock.
struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&mut self) -> Result<u64, String> {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .map_err(|e| format!("clock: {e}"))
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    abi::ABI_VERSION.as_ptr().cast()
}

/// Compiles the RuleSet. A null answer makes Envoy refuse the configuration, after the reason is
/// logged: a bad rule set must stop Envoy from serving, not let traffic through unchecked.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: *mut c_void,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    guarded("config_new", std::ptr::null, || {
        // SAFETY: Envoy's views are valid for this call.
        let (name, config) = unsafe { (bytes(name.ptr, name.length), bytes(config.ptr, config.length)) };
        if name != FILTER_NAME.as_bytes() {
            let name = String::from_utf8_lossy(name);
            log(
                abi::LOG_CRITICAL,
                &format!("unknown filter_name `{name}`: libmeshguard_envoy.so has one filter, `{FILTER_NAME}`"),
            );
            return std::ptr::null();
        }
        let text = match std::str::from_utf8(config) {
            Ok(text) => text,
            Err(e) => {
                log(abi::LOG_CRITICAL, &format!("the filter configuration is not UTF-8: {e}"));
                return std::ptr::null();
            }
        };
        let policy = match Policy::from_text(text) {
            Ok(policy) => policy,
            Err(e) => {
                log(abi::LOG_CRITICAL, &format!("invalid RuleSet in the filter configuration: line {e}"));
                return std::ptr::null();
            }
        };
        let rule_metrics = policy
            .http_rules()
            .map(|r| {
                [Action::Audit, Action::Warn, Action::Deny]
                    .map(|a| define_counter(config_envoy, &translate::rule_metric_name(&r.id, a)))
            })
            .collect();
        log(abi::LOG_INFO, &translate::loaded_message(&policy));
        let config = Config {
            rule_metrics,
            allowed: define_counter(config_envoy, &translate::outcome_metric_name("allow")),
            denied: define_counter(config_envoy, &translate::outcome_metric_name("deny")),
            errors: define_counter(config_envoy, &translate::outcome_metric_name("error")),
            buckets: Mutex::new(MemoryBuckets::default()),
            policy,
        };
        Box::into_raw(Box::new(config)) as *const c_void
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: *const c_void) {
    guarded(
        "config_destroy",
        || (),
        || {
            if !config.is_null() {
                // SAFETY: made by Box::into_raw in config_new; Envoy destroys it once, after every
                // stream that uses it.
                drop(unsafe { Box::from_raw(config as *mut Config) });
            }
        },
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: *const c_void,
    _filter: *mut c_void,
) -> *const c_void {
    guarded("filter_new", std::ptr::null, || {
        Box::into_raw(Box::new(Stream { config: config as *const Config, warn: None })) as *const c_void
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(stream: *const c_void) {
    guarded(
        "filter_destroy",
        || (),
        || {
            if !stream.is_null() {
                // SAFETY: made by Box::into_raw in filter_new, destroyed once.
                drop(unsafe { Box::from_raw(stream as *mut Stream) });
            }
        },
    )
}

/// The request's headers, pseudo-headers included, as Envoy lists them.
fn request_headers(filter: *mut c_void) -> Result<Vec<HttpHeader>, String> {
    // SAFETY: `filter` is the current stream; Envoy fills exactly `size` entries.
    unsafe {
        let size = abi::envoy_dynamic_module_callback_http_get_headers_size(filter, abi::REQUEST_HEADER);
        let mut headers = vec![HttpHeader::EMPTY; size];
        if size > 0
            && !abi::envoy_dynamic_module_callback_http_get_headers(filter, abi::REQUEST_HEADER, headers.as_mut_ptr())
        {
            return Err("the request headers are not available".into());
        }
        Ok(headers)
    }
}

fn send(filter: *mut c_void, reply: &LocalReply) {
    match reply {
        LocalReply::Http { status, headers, body } => {
            let mut headers: Vec<HttpHeader> = headers.iter().map(|(k, v)| HttpHeader::of(k, v)).collect();
            // SAFETY: the headers and body outlive the call; Envoy copies them.
            unsafe {
                abi::envoy_dynamic_module_callback_http_send_response(
                    filter,
                    *status,
                    headers.as_mut_ptr(),
                    headers.len(),
                    ModuleBuffer { ptr: body.as_ptr().cast(), length: body.len() },
                    ModuleBuffer::of("meshguard"),
                )
            }
        }
        LocalReply::Grpc { status, message } => {
            // A trailers-only response, as Envoy answers a gRPC local reply: send_response would
            // map the HTTP status to a gRPC one, and RESOURCE_EXHAUSTED has no HTTP status.
            let fields = translate::grpc_trailers_only(*status, message);
            let mut headers: Vec<HttpHeader> = fields.iter().map(|(k, v)| HttpHeader::of(k, v)).collect();
            // SAFETY: as above.
            unsafe {
                abi::envoy_dynamic_module_callback_http_send_response_headers(
                    filter,
                    headers.as_mut_ptr(),
                    headers.len(),
                    true,
                )
            }
        }
    }
}

/// Evaluation failed: the RuleSet's `spec.failOpen` decides, as in the wasm filter.
fn fail(filter: *mut c_void, config: &Config, grpc: bool, error: &str) -> u32 {
    bump(filter, config.errors);
    log(abi::LOG_ERROR, &format!("evaluation failed: {error}"));
    if config.policy.fail_open() {
        abi::CONTINUE
    } else {
        send(filter, &translate::error_reply(grpc));
        abi::STOP_ITERATION
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter: *mut c_void,
    stream: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    if cfg!(feature = "floor") {
        return abi::CONTINUE;
    }
    // SAFETY: Envoy passes back what filter_new made; the configuration outlives its streams.
    let stream = unsafe { &mut *(stream as *mut Stream) };
    let config = unsafe { &*stream.config };
    guarded(
        "request_headers",
        || fail(filter, config, false, "a hook panicked"),
        || {
            let headers = match request_headers(filter) {
                Ok(headers) => headers,
                Err(e) => return fail(filter, config, false, &e),
            };
            let mut builder = RequestBuilder::with_capacity(headers.len());
            for h in &headers {
                // SAFETY: Envoy's views live until this hook returns.
                let (key, value) = unsafe { (bytes(h.key_ptr, h.key_length), bytes(h.value_ptr, h.value_length)) };
                builder.push(translate::text(key), translate::text(value));
            }
            let req = builder.finish();
            let decision =
                match config.policy.decide_with_clock(&req, &mut SystemClock, &mut SharedMemory(&config.buckets)) {
                    Ok(decision) => decision,
                    Err(e) => return fail(filter, config, req.is_grpc(), &e),
                };
            for (index, action) in &decision.fired {
                if let Some(ids) = config.rule_metrics.get(*index) {
                    bump(filter, ids[*action as usize]);
                }
            }
            let verdict = translate::verdict(&config.policy, &decision, req.is_grpc());
            stream.warn = verdict.warn;
            match verdict.reply {
                Some(reply) => {
                    bump(filter, config.denied);
                    send(filter, &reply);
                    abi::STOP_ITERATION
                }
                None => {
                    bump(filter, config.allowed);
                    abi::CONTINUE
                }
            }
        },
    )
}

/// Envoy does not call this for the module's own local reply, so a reply never carries the warn
/// header (as with the wasm filter).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    filter: *mut c_void,
    stream: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    // SAFETY: as in request_headers.
    let stream = unsafe { &*(stream as *const Stream) };
    guarded(
        "response_headers",
        || abi::CONTINUE,
        || {
            if let Some(warn) = &stream.warn {
                // SAFETY: Envoy copies the key and value.
                let added = unsafe {
                    abi::envoy_dynamic_module_callback_http_add_header(
                        filter,
                        abi::RESPONSE_HEADER,
                        ModuleBuffer::of(WARN_HEADER),
                        ModuleBuffer::of(warn),
                    )
                };
                if !added {
                    log(abi::LOG_ERROR, &format!("meshguard: cannot add {WARN_HEADER}"));
                }
            }
            abi::CONTINUE
        },
    )
}

// The hooks Envoy requires of every HTTP filter module that meshguard has no use for.

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(_: *mut c_void, _: *const c_void, _: bool) -> u32 {
    abi::CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(_: *mut c_void, _: *const c_void) -> u32 {
    abi::CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(_: *mut c_void, _: *const c_void, _: bool) -> u32 {
    abi::CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(_: *mut c_void, _: *const c_void) -> u32 {
    abi::CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(_: *mut c_void, _: *const c_void) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _: *mut c_void,
    _: *const c_void,
    _callout_id: u64,
    _result: u32,
    _headers: *mut HttpHeader,
    _headers_size: usize,
    _body_chunks: *mut EnvoyBuffer,
    _body_chunks_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _: *mut c_void,
    _: *const c_void,
    _stream_id: u64,
    _headers: *mut HttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _: *mut c_void,
    _: *const c_void,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _: *mut c_void,
    _: *const c_void,
    _stream_id: u64,
    _trailers: *mut HttpHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(_: *mut c_void, _: *const c_void, _: u64) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _: *mut c_void,
    _: *const c_void,
    _stream_id: u64,
    _reason: u32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(_: *mut c_void, _: *const c_void, _event_id: u64) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _: *mut c_void,
    _: *const c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _: *mut c_void,
    _: *const c_void,
) {
}
