//! The part of Envoy's dynamic module ABI this module uses, declared by hand from
//! `source/extensions/dynamic_modules/abi/abi.h` of Envoy 1.40 (ABI `v0.2.0`). Envoy's Rust SDK
//! is not on crates.io; these few declarations are all meshguard needs. Every string crosses as
//! a (pointer, length) pair, not NUL-terminated; Envoy's views live until the hook returns, and
//! Envoy copies what the module hands it.

use std::ffi::{c_char, c_void};

/// The ABI this module is built against: `envoy_dynamic_module_on_program_init` returns it, and
/// Envoy logs whether it matched its own. The library is linked `-z now` (build.rs), so an Envoy
/// missing any callback below refuses to load it, naming the symbol.
pub const ABI_VERSION: &[u8] = b"v0.2.0\0";

/// A string Envoy owns.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    pub ptr: *const c_char,
    pub length: usize,
}

/// A string the module owns, for the duration of one call.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleBuffer {
    pub ptr: *const c_char,
    pub length: usize,
}

impl ModuleBuffer {
    pub fn of(text: &str) -> ModuleBuffer {
        ModuleBuffer { ptr: text.as_ptr().cast(), length: text.len() }
    }
}

/// `envoy_dynamic_module_type_envoy_http_header` and `..._module_http_header` share this layout.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct HttpHeader {
    pub key_ptr: *const c_char,
    pub key_length: usize,
    pub value_ptr: *const c_char,
    pub value_length: usize,
}

impl HttpHeader {
    pub const EMPTY: HttpHeader =
        HttpHeader { key_ptr: std::ptr::null(), key_length: 0, value_ptr: std::ptr::null(), value_length: 0 };

    pub fn of(key: &str, value: &str) -> HttpHeader {
        HttpHeader {
            key_ptr: key.as_ptr().cast(),
            key_length: key.len(),
            value_ptr: value.as_ptr().cast(),
            value_length: value.len(),
        }
    }
}

/// The bytes of an Envoy-owned view; empty for a null pointer.
///
/// # Safety
/// `ptr` must point at `length` readable bytes that outlive `'a` (Envoy's views live until the
/// hook that received them returns).
pub unsafe fn bytes<'a>(ptr: *const c_char, length: usize) -> &'a [u8] {
    if ptr.is_null() || length == 0 {
        &[]
    } else {
        std::slice::from_raw_parts(ptr.cast(), length)
    }
}

/// `envoy_dynamic_module_type_http_header_type`
pub const REQUEST_HEADER: u32 = 0;
pub const RESPONSE_HEADER: u32 = 2;

/// `envoy_dynamic_module_type_log_level`
pub const LOG_INFO: u32 = 2;
pub const LOG_ERROR: u32 = 4;
pub const LOG_CRITICAL: u32 = 5;

/// `..._on_http_filter_request_headers_status` (and the response, body and trailers statuses):
/// Continue is 0 in each; StopIteration is 1 for headers.
pub const CONTINUE: u32 = 0;
pub const STOP_ITERATION: u32 = 1;

/// `envoy_dynamic_module_type_metrics_result_Success`
pub const METRICS_SUCCESS: u32 = 0;

extern "C" {
    pub fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer);

    pub fn envoy_dynamic_module_callback_http_get_headers_size(filter: *mut c_void, header_type: u32) -> usize;
    pub fn envoy_dynamic_module_callback_http_get_headers(
        filter: *mut c_void,
        header_type: u32,
        result_headers: *mut HttpHeader,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_add_header(
        filter: *mut c_void,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_send_response(
        filter: *mut c_void,
        status_code: u32,
        headers: *mut HttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );
    pub fn envoy_dynamic_module_callback_http_send_response_headers(
        filter: *mut c_void,
        headers: *mut HttpHeader,
        headers_size: usize,
        end_stream: bool,
    );

    pub fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: *mut c_void,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        counter_id: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: *mut c_void,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
}
