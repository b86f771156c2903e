//! For the build scripts of the admission modules: writes the Kubewarden metadata of one artifact,
//! as JSON, to `$OUT_DIR/kubewarden-metadata.json`, from the shared wasm-plugin/metadata.yml plus
//! what differs per artifact. The crate embeds that file in the `io.kubewarden.metadata` custom
//! section, the section Kubewarden's policy-evaluator reads.

/// What one artifact says about itself on top of the shared metadata.
pub struct Artifact {
    /// `kubewarden-wapc`, `gatekeeper` or `opa`.
    pub execution_mode: &'static str,
    /// `v1` for waPC; Rego modules have no protocol (`Unknown`, as `kwctl annotate` writes).
    pub protocol_version: &'static str,
    /// `io.kubewarden.policy.title`, the Artifact Hub package name.
    pub title: &'static str,
    pub display_name: &'static str,
    pub oci_url: &'static str,
    pub usage: &'static str,
    /// Whether the policy may answer with a `mutated_object` (rules with `mutate: true`).
    pub mutating: bool,
}

fn yaml_to_json(y: &yaml_rust2::Yaml) -> serde_json::Value {
    use serde_json::Value;
    use yaml_rust2::Yaml;
    match y {
        Yaml::Hash(h) => {
            Value::Object(h.iter().filter_map(|(k, v)| Some((k.as_str()?.to_string(), yaml_to_json(v)))).collect())
        }
        Yaml::Array(a) => Value::Array(a.iter().map(yaml_to_json).collect()),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Real(r) => r.parse::<f64>().map(Value::from).unwrap_or(Value::Null),
        Yaml::Boolean(b) => Value::Bool(*b),
        _ => Value::Null,
    }
}

pub fn write_kubewarden_metadata(artifact: &Artifact) -> Result<(), String> {
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../metadata.yml");
    println!("cargo:rerun-if-changed={}", source.display());
    let text = std::fs::read_to_string(&source).map_err(|e| format!("{}: {e}", source.display()))?;
    let docs = yaml_rust2::YamlLoader::load_from_str(&text).map_err(|e| format!("{}: {e}", source.display()))?;
    let mut metadata = docs.first().map(yaml_to_json).ok_or_else(|| format!("{}: empty", source.display()))?;
    metadata["protocolVersion"] = artifact.protocol_version.into();
    metadata["executionMode"] = artifact.execution_mode.into();
    metadata["mutating"] = artifact.mutating.into();
    let annotations = &mut metadata["annotations"];
    annotations["io.kubewarden.policy.title"] = artifact.title.into();
    annotations["io.artifacthub.displayName"] = artifact.display_name.into();
    annotations["io.kubewarden.policy.ociUrl"] = artifact.oci_url.into();
    annotations["io.kubewarden.policy.usage"] = artifact.usage.into();
    annotations["io.kubewarden.policy.version"] = env!("CARGO_PKG_VERSION").into();
    let out_dir = std::env::var("OUT_DIR").map_err(|e| format!("OUT_DIR: {e}"))?;
    let out = std::path::Path::new(&out_dir).join("kubewarden-metadata.json");
    let json = serde_json::to_vec(&metadata).map_err(|e| e.to_string())?;
    std::fs::write(&out, json).map_err(|e| format!("{}: {e}", out.display()))
}
