//! meshguard as a Kubewarden policy: the waPC guest protocol (`validate`, `validate_settings`,
//! `protocol_version`) over policy-core's admission verdict, plus `meshguard_review` (JSON in) and
//! `meshguard_review_msgpack` (the same payload in MessagePack), which host-runner's wasm engine
//! calls to check a whole manifest repo with this very module. `translate` turns payloads into
//! answers and is tested natively; `guest` registers it with waPC, for wasm only.

pub mod translate;

#[cfg(target_arch = "wasm32")]
mod guest {
    use crate::translate::{self, PolicyCache};
    use std::cell::RefCell;

    thread_local! {
        static CACHE: RefCell<PolicyCache> = RefCell::new(PolicyCache::default());
    }

    /// Kubewarden's host capabilities over waPC.
    struct Kubewarden;

    impl translate::ClusterHost for Kubewarden {
        fn call(&mut self, operation: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
            wapc_guest::host_call("kubewarden", "kubernetes", operation, payload).map_err(|e| e.to_string())
        }
    }

    fn validate(payload: &[u8]) -> wapc_guest::CallResult {
        CACHE.with(|c| translate::validate(payload, &mut c.borrow_mut(), &mut Kubewarden)).map_err(Into::into)
    }

    fn review(payload: &[u8]) -> wapc_guest::CallResult {
        CACHE.with(|c| translate::review(payload, &mut c.borrow_mut())).map_err(Into::into)
    }

    fn review_msgpack(payload: &[u8]) -> wapc_guest::CallResult {
        CACHE.with(|c| translate::review_msgpack(payload, &mut c.borrow_mut())).map_err(Into::into)
    }

    fn validate_settings(payload: &[u8]) -> wapc_guest::CallResult {
        Ok(translate::validate_settings(payload))
    }

    fn protocol_version(_: &[u8]) -> wapc_guest::CallResult {
        Ok(translate::PROTOCOL_VERSION.to_vec())
    }

    #[no_mangle]
    pub extern "C" fn wapc_init() {
        wapc_guest::register_function("validate", validate);
        wapc_guest::register_function("validate_settings", validate_settings);
        wapc_guest::register_function("protocol_version", protocol_version);
        wapc_guest::register_function("meshguard_review", review);
        wapc_guest::register_function("meshguard_review_msgpack", review_msgpack);
    }
}

/// Kubewarden reads a policy's metadata from this custom section (what `kwctl annotate` writes), so
/// the module runs as built: execution mode, rules, context-aware resources, annotations.
#[cfg(target_arch = "wasm32")]
#[link_section = "io.kubewarden.metadata"]
#[used]
static KUBEWARDEN_METADATA: [u8; include_bytes!(concat!(env!("OUT_DIR"), "/kubewarden-metadata.json")).len()] =
    *include_bytes!(concat!(env!("OUT_DIR"), "/kubewarden-metadata.json"));

pub use meshguard_guest_support::memcmp;
