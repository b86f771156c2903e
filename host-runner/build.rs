//! Embeds the Kubewarden module that `meshguard check --engine wasm` runs, when
//! `scripts/build-wasm.sh` has built it; without it the binary still builds, and `--engine wasm`
//! asks for `--module FILE` (or `--engine native`).
fn main() {
    let filter = std::path::Path::new("../dist/meshguard-envoy.wasm");
    println!("cargo:rerun-if-changed=../dist/meshguard-envoy.wasm");
    println!("cargo:rustc-check-cfg=cfg(embedded_filter)");
    if filter.exists() {
        println!("cargo:rustc-cfg=embedded_filter");
    }
    let module = std::path::Path::new("../dist/meshguard-kubewarden.wasm");
    println!("cargo:rerun-if-changed=../dist/meshguard-kubewarden.wasm");
    println!("cargo:rustc-check-cfg=cfg(embedded_module)");
    if module.exists() {
        println!("cargo:rustc-cfg=embedded_module");
    } else {
        println!("cargo:warning=dist/meshguard-kubewarden.wasm not built: this meshguard has no embedded module (run scripts/build-wasm.sh first)");
    }
}
