//! OPA hosts hand the module its memory (`env.memory`, opa.js starts it at 5 pages): import it,
//! and keep the stack and data small enough to fit.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        for arg in ["--import-memory", "-zstack-size=65536", "--initial-memory=262144"] {
            println!("cargo:rustc-link-arg-cdylib={arg}");
        }
    }
}
