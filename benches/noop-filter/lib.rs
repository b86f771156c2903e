//! The floor any proxy-wasm filter pays: Envoy crosses into V8 for request and response headers,
//! the filter does nothing and continues. With the plugin configuration `read-headers` it also
//! fetches the request header map once, with the raw host call meshguard's filter makes (one
//! buffer in the host's serialized form, not the SDK's `String` per name and value): the floor of
//! any filter that inspects every header.
#![cfg(target_arch = "wasm32")]

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel};

use meshguard_guest_support::header_map;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(NoopRoot { read_headers: false }) });
}}

struct NoopRoot {
    read_headers: bool,
}
impl Context for NoopRoot {}
impl RootContext for NoopRoot {
    fn on_configure(&mut self, _: usize) -> bool {
        let config = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX).ok().flatten();
        self.read_headers = config.is_some_and(|c| c.starts_with(b"read-headers"));
        true
    }
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Noop { read_headers: self.read_headers }))
    }
}

struct Noop {
    read_headers: bool,
}
impl Context for Noop {}
impl HttpContext for Noop {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        if self.read_headers {
            drop(header_map::request_header_map());
        }
        Action::Continue
    }
}
