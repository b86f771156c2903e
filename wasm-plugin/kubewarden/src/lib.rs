//! meshguard as a Kubewarden policy: the waPC guest protocol (`validate`, `validate_settings`,
//! `protocol_version`) over policy-core's admission verdict, plus `meshguard_review`, which
//! host-runner's wasm engine calls to check a whole manifest repo with this very module. `translate` turns payloads into
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
    }
}

/// Kubewarden reads a policy's metadata from this custom section (what `kwctl annotate` writes), so
/// the module runs as built: execution mode, rules, context-aware resources, annotations.
#[cfg(target_arch = "wasm32")]
#[link_section = "io.kubewarden.metadata"]
#[used]
static KUBEWARDEN_METADATA: [u8; include_bytes!(concat!(env!("OUT_DIR"), "/kubewarden-metadata.json")).len()] =
    *include_bytes!(concat!(env!("OUT_DIR"), "/kubewarden-metadata.json"));

/// Byte comparison for the map lookups and inserts a review is made of (every field name is
/// compared through it): wasi-libc's compares one byte per step, this eight, then bytes.
/// Natively it is an ordinary function, tested against the slice order.
///
/// # Safety
/// `a` and `b` must be readable for `n` bytes.
#[cfg_attr(target_arch = "wasm32", no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i + 8 <= n {
        let (x, y) = ((a.add(i) as *const u64).read_unaligned(), (b.add(i) as *const u64).read_unaligned());
        if x != y {
            // Little-endian: the first differing byte holds the lowest set bit of the difference.
            let shift = (x ^ y).trailing_zeros() / 8 * 8;
            return i32::from((x >> shift) as u8) - i32::from((y >> shift) as u8);
        }
        i += 8;
    }
    while i < n {
        let (x, y) = (*a.add(i), *b.add(i));
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

#[cfg(test)]
mod tests {
    #[test]
    fn memcmp_orders_as_byte_slices_do() {
        let words: Vec<&[u8]> = vec![
            b"",
            b"a",
            b"b",
            b"metadata",
            b"metadatb",
            b"metadata\x00",
            b"\xffmetadata",
            b"proxy.istio.io/config",
            b"proxy.istio.io/configs",
            b"proxy.istio.io/cOnfig",
            b"\x80\x7f\x00\x01\x02\x03\x04\x05\x06",
        ];
        for a in &words {
            for b in &words {
                let n = a.len().min(b.len());
                let got = unsafe { super::memcmp(a.as_ptr(), b.as_ptr(), n) };
                assert_eq!(got.signum(), a[..n].cmp(&b[..n]) as i32, "{a:?} {b:?}");
            }
        }
        // Every position of a difference, inside and after the word steps.
        for at in 0..20 {
            let a = vec![7u8; 20];
            let mut b = a.clone();
            b[at] = 9;
            assert!(unsafe { super::memcmp(a.as_ptr(), b.as_ptr(), 20) } < 0);
            assert!(unsafe { super::memcmp(b.as_ptr(), a.as_ptr(), 20) } > 0);
            assert_eq!(unsafe { super::memcmp(a.as_ptr(), b.as_ptr(), at) }, 0);
        }
    }
}
