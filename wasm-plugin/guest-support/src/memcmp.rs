//! `memcmp` for the admission modules, which link it in place of their libc's (both depend on
//! this crate, as neither may depend on the other).

/// Byte comparison for the map lookups and inserts a review is made of (every field name is
/// compared through it): wasi-libc's and compiler-builtins' compare one byte per step,
/// this eight, then bytes.
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
