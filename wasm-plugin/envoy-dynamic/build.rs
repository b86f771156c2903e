//! Binds every Envoy callback when the library is loaded (`-z now`): against an Envoy whose ABI
//! lacks one, loading fails naming the symbol, instead of the first request that needs it
//! crashing the proxy.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,now");
}
