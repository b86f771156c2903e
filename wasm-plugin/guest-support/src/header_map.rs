//! The request headers in raw host calls: the whole map in one (shared by the Envoy filter and
//! the benchmark floor that reads the map and does nothing else, benches/noop-filter, so both pay
//! for exactly the same read), or one header by name.

use proxy_wasm::types::{MapType, Status};

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> Status;
    fn proxy_get_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> Status;
}

/// The request header map in the host's serialized form. The SDK's `get_map` would copy every
/// name and value into its own `String` (and panic on a non-UTF-8 byte); the filter decides on
/// this one buffer instead (`translate::request_from_map`).
pub fn request_header_map() -> Result<Vec<u8>, String> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a pointer to `size` bytes it allocated through the SDK's
    // `proxy_on_memory_allocate` (a `Vec<u8>` with capacity `size`), which this takes ownership of.
    match unsafe { proxy_get_header_map_pairs(MapType::HttpRequestHeaders, &mut data, &mut size) } {
        Status::Ok if data.is_null() => Ok(Vec::new()),
        Status::Ok => Ok(unsafe { Vec::from_raw_parts(data, size, size) }),
        status => Err(format!("get request headers: {status:?}")),
    }
}

/// The first value of request header `name` (Envoy answers the first of repeated headers), or
/// `None` when the request has no such header. The SDK's `get_map_value_bytes` panics on a status
/// it does not expect; a filter must not trap, so this returns it as an error.
pub fn request_header(name: &str) -> Result<Option<Vec<u8>>, String> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: as in `request_header_map`; the host reads `name` during the call only.
    match unsafe {
        proxy_get_header_map_value(MapType::HttpRequestHeaders, name.as_ptr(), name.len(), &mut data, &mut size)
    } {
        Status::Ok if data.is_null() => Ok(Some(Vec::new())),
        Status::Ok => Ok(Some(unsafe { Vec::from_raw_parts(data, size, size) })),
        Status::NotFound => Ok(None),
        status => Err(format!("get request header `{name}`: {status:?}")),
    }
}
