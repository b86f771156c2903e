//! Converts the built-in rule set to JSON at build time, so builds without the `yaml` feature
//! (the admission wasm modules, where every kilobyte counts) still embed it. The conversion is
//! policy-core's own YAML loader, compiled into this script.

#[allow(dead_code)]
#[path = "src/path.rs"]
mod path;

#[allow(dead_code)]
#[path = "src/yaml.rs"]
mod yaml;

fn main() -> Result<(), String> {
    let source = "src/default-rules.yaml";
    println!("cargo:rerun-if-changed={source}");
    let text = std::fs::read_to_string(source).map_err(|e| format!("{source}: {e}"))?;
    let doc = yaml::parse_one(&text).map_err(|e| format!("{source}:{e}"))?;
    let out_dir = std::env::var("OUT_DIR").map_err(|e| format!("OUT_DIR: {e}"))?;
    let out = std::path::Path::new(&out_dir).join("default-rules.json");
    std::fs::write(&out, doc.value.to_string()).map_err(|e| format!("{}: {e}", out.display()))
}
