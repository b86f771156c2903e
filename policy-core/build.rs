//! Converts the built-in rule set to JSON at build time, so builds without the `yaml` feature
//! (the admission wasm modules, where every kilobyte counts) still embed it. The conversion is
//! policy-core's own YAML loader, compiled into this script.

#[allow(dead_code)]
#[path = "src/path.rs"]
mod path;

#[allow(dead_code)]
#[path = "src/yaml.rs"]
mod yaml;

fn main() {
    let source = "src/default-rules.yaml";
    println!("cargo:rerun-if-changed={source}");
    let text = std::fs::read_to_string(source).unwrap_or_else(|e| panic!("{source}: {e}"));
    let doc = yaml::parse_one(&text).unwrap_or_else(|e| panic!("{source}:{e}"));
    let out = std::path::Path::new(&std::env::var("OUT_DIR").unwrap_or_else(|e| panic!("OUT_DIR: {e}")))
        .join("default-rules.json");
    std::fs::write(&out, doc.value.to_string()).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
}
