//! `meshguard push`: publishes an artifact to an OCI registry with `oci-client`, the client
//! Kubewarden's policy fetcher pulls policies with. Two kinds of artifact:
//! - a **Kubewarden policy** (a `.wasm` module carrying its `io.kubewarden.metadata` section) in
//!   the layout that fetcher accepts: config `application/vnd.wasm.config.v1+json` (`{}`), one
//!   `application/vnd.wasm.content.layer.v1+wasm` layer holding the module unchanged, and the
//!   metadata's single-line annotations on the manifest, as `kwctl push` writes them;
//! - an **image from an OCI layout** (what `scripts/build-image.sh` writes): the manifest and its
//!   blobs pushed byte for byte, so the registry's digest is the layout's.
//!
//! Both end as one manifest plus blobs, uploaded by [`upload`]; every blob is checked against its
//! digest before it leaves the machine.

use anyhow::{bail, ensure, Context, Result};
use base64::Engine as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::{
    IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE, WASM_CONFIG_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The largest blob (a module, a layer) `push` reads into memory.
pub const MAX_BLOB_BYTES: usize = 512 * 1024 * 1024;
/// The largest `index.json` or manifest `push` reads.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// The custom section Kubewarden reads a policy's metadata from.
pub const KUBEWARDEN_METADATA_SECTION: &str = "io.kubewarden.metadata";

/// What to push: the artifact and the manifest it becomes.
pub struct Artifact {
    /// `(digest, bytes)` of every blob the manifest names, config first.
    pub blobs: Vec<(String, Vec<u8>)>,
    pub manifest: Vec<u8>,
    pub manifest_media_type: String,
}

impl Artifact {
    pub fn digest(&self) -> String {
        sha256_digest(&self.manifest)
    }
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// A Kubewarden policy module as Kubewarden's fetcher pulls it (see the module docs).
pub fn kubewarden_policy(path: &Path) -> Result<Artifact> {
    let module = read_limited(path, MAX_BLOB_BYTES)?;
    let section = custom_section(&module, KUBEWARDEN_METADATA_SECTION)
        .with_context(|| format!("{}: not a WebAssembly module", path.display()))?
        .with_context(|| {
            format!(
                "{}: no `{KUBEWARDEN_METADATA_SECTION}` section: Kubewarden refuses a policy without its \
                 metadata (scripts/build-wasm.sh writes it)",
                path.display()
            )
        })?;
    let metadata: Value = serde_json::from_slice(section)
        .with_context(|| format!("{}: section `{KUBEWARDEN_METADATA_SECTION}` is not JSON", path.display()))?;
    let annotations = manifest_annotations(&metadata);
    let config = b"{}".to_vec();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_IMAGE_MEDIA_TYPE,
        "config": descriptor(WASM_CONFIG_MEDIA_TYPE, &config),
        "layers": [descriptor(WASM_LAYER_MEDIA_TYPE, &module)],
        "annotations": annotations,
    });
    Ok(Artifact {
        blobs: vec![(sha256_digest(&config), config), (sha256_digest(&module), module)],
        manifest: serde_json::to_vec(&manifest)?,
        manifest_media_type: OCI_IMAGE_MEDIA_TYPE.to_string(),
    })
}

fn descriptor(media_type: &str, blob: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": sha256_digest(blob), "size": blob.len()})
}

/// The metadata's annotations that fit on a manifest, as `kwctl push` picks them: single-line
/// values, trimmed, plus `org.opencontainers.image.source` from the policy's source.
fn manifest_annotations(metadata: &Value) -> BTreeMap<String, String> {
    let mut annotations: BTreeMap<String, String> = metadata
        .get("annotations")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.trim().to_string())))
        .filter(|(_, value)| !value.contains('\n'))
        .collect();
    if let Some(source) = annotations.get("io.kubewarden.policy.source").cloned() {
        annotations.insert("org.opencontainers.image.source".into(), source);
    }
    annotations
}

/// The contents of the first custom section named `name`; `Err` when `bytes` is not wasm.
pub fn custom_section<'a>(bytes: &'a [u8], name: &str) -> Result<Option<&'a [u8]>> {
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        if let wasmparser::Payload::CustomSection(section) = payload? {
            if section.name() == name {
                return Ok(Some(section.data()));
            }
        }
    }
    Ok(None)
}

/// The image tagged `tag` in the OCI layout `dir` (the only one when `tag` is `None`).
pub fn oci_layout_image(dir: &Path, tag: Option<&str>) -> Result<Artifact> {
    let index_path = dir.join("index.json");
    let index: Value = serde_json::from_slice(&read_limited(&index_path, MAX_MANIFEST_BYTES)?)
        .with_context(|| format!("{}: not JSON", index_path.display()))?;
    let manifests = index["manifests"].as_array().map(Vec::as_slice).unwrap_or_default();
    let ref_name = |m: &Value| m["annotations"]["org.opencontainers.image.ref.name"].as_str().map(str::to_string);
    let chosen = match tag {
        Some(tag) => manifests.iter().find(|m| ref_name(m).as_deref() == Some(tag)).with_context(|| {
            let tags: Vec<String> = manifests.iter().filter_map(ref_name).collect();
            format!("{}: no image tagged `{tag}` (tags: {})", index_path.display(), tags.join(", "))
        })?,
        None => match manifests {
            [only] => only,
            _ => bail!("{}: {} images; name one as {}:TAG", index_path.display(), manifests.len(), dir.display()),
        },
    };
    let media_type = chosen["mediaType"].as_str().unwrap_or_default();
    ensure!(
        media_type == OCI_IMAGE_MEDIA_TYPE || media_type == IMAGE_MANIFEST_MEDIA_TYPE,
        "{}: the image is a `{media_type}`; push takes one image manifest ({OCI_IMAGE_MEDIA_TYPE})",
        index_path.display()
    );
    let manifest = layout_blob(dir, chosen, "manifests[]")?;
    let parsed: Value = serde_json::from_slice(&manifest).context("the image manifest is not JSON")?;
    let mut blobs = vec![];
    let config = &parsed["config"];
    blobs.push((config["digest"].as_str().unwrap_or_default().to_string(), layout_blob(dir, config, "config")?));
    for (i, layer) in parsed["layers"].as_array().map(Vec::as_slice).unwrap_or_default().iter().enumerate() {
        let bytes = layout_blob(dir, layer, &format!("layers[{i}]"))?;
        blobs.push((layer["digest"].as_str().unwrap_or_default().to_string(), bytes));
    }
    Ok(Artifact { blobs, manifest, manifest_media_type: media_type.to_string() })
}

/// A blob of the layout, checked against the descriptor's digest and size.
fn layout_blob(dir: &Path, descriptor: &Value, field: &str) -> Result<Vec<u8>> {
    let digest = descriptor["digest"].as_str().unwrap_or_default();
    // Only sha256 digests of exactly 64 hex digits: the digest names a file under the layout.
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .with_context(|| format!("{}: {field}: digest `{digest}` is not a sha256 digest", dir.display()))?;
    let path: PathBuf = dir.join("blobs/sha256").join(hex);
    let bytes = read_limited(&path, MAX_BLOB_BYTES)?;
    ensure!(sha256_digest(&bytes) == digest, "{}: content does not match its digest {digest}", path.display());
    let size = descriptor["size"].as_u64();
    ensure!(
        size == Some(bytes.len() as u64),
        "{}: {field}: size {size:?} but the blob has {} bytes",
        dir.display(),
        bytes.len()
    );
    Ok(bytes)
}

fn read_limited(path: &Path, limit: usize) -> Result<Vec<u8>> {
    crate::sources::read_regular_file(path, limit)
        .map_err(|message| anyhow::anyhow!("{}: {message}", path.display()))?
        .with_context(|| format!("{}: larger than the limit of {} MiB", path.display(), limit >> 20))
}

/// Where to push and how to reach the registry.
pub struct Destination {
    pub reference: Reference,
    /// Plain HTTP for this registry (always for loopback hosts, as container tools do).
    pub plain_http: bool,
    pub auth: RegistryAuth,
}

impl Destination {
    pub fn parse(reference: &str, plain_http: bool) -> Result<Destination> {
        let parsed: Reference = reference
            .parse()
            .with_context(|| format!("`{reference}` is not an image reference (REGISTRY/REPOSITORY:TAG)"))?;
        ensure!(
            parsed.tag().is_some() && parsed.digest().is_none(),
            "`{reference}`: name a tag to push to (REGISTRY/REPOSITORY:TAG)"
        );
        let registry = parsed.resolve_registry().to_string();
        let plain_http = plain_http || is_loopback(&registry);
        let auth = registry_auth(&registry)?;
        Ok(Destination { reference: parsed, plain_http, auth })
    }
}

fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => registry.rsplit_once(':').map_or(registry, |(host, _)| host),
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Credentials for `registry`: `MESHGUARD_REGISTRY_USERNAME`/`_PASSWORD`, else the first auth
/// file that has an entry for it (`$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`
/// as podman/skopeo/buildah log in, `$DOCKER_CONFIG/config.json` or `~/.docker/config.json` as
/// docker does), else anonymous. Credential helpers are not run.
fn registry_auth(registry: &str) -> Result<RegistryAuth> {
    if let (Ok(user), Ok(password)) =
        (std::env::var("MESHGUARD_REGISTRY_USERNAME"), std::env::var("MESHGUARD_REGISTRY_PASSWORD"))
    {
        return Ok(RegistryAuth::Basic(user, password));
    }
    let env = |name: &str| std::env::var_os(name).map(PathBuf::from);
    let files = [
        env("REGISTRY_AUTH_FILE"),
        env("XDG_RUNTIME_DIR").map(|d| d.join("containers/auth.json")),
        env("DOCKER_CONFIG").map(|d| d.join("config.json")),
        env("HOME").map(|h| h.join(".docker/config.json")),
    ];
    for file in files.into_iter().flatten().filter(|f| f.is_file()) {
        let config: Value = serde_json::from_slice(&read_limited(&file, MAX_MANIFEST_BYTES)?)
            .with_context(|| format!("{}: not JSON", file.display()))?;
        let Some(auths) = config["auths"].as_object() else { continue };
        let entry = auths.iter().find(|(key, _)| {
            let host = key.trim_start_matches("https://").trim_start_matches("http://");
            host.split('/').next() == Some(registry)
        });
        let Some((key, entry)) = entry else { continue };
        let Some(encoded) = entry["auth"].as_str() else { continue };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .with_context(|| format!("{}: auths.{key}.auth is not base64 of USER:PASSWORD", file.display()))?;
        let (user, password) = decoded
            .split_once(':')
            .with_context(|| format!("{}: auths.{key}.auth is not base64 of USER:PASSWORD", file.display()))?;
        return Ok(RegistryAuth::Basic(user.to_string(), password.to_string()));
    }
    Ok(RegistryAuth::Anonymous)
}

/// Uploads the artifact's blobs (those the registry lacks) and then its manifest, tagged.
/// Returns the manifest digest, as computed here and confirmed by the registry's answer.
pub fn upload(artifact: &Artifact, to: &Destination) -> Result<String> {
    // reqwest's rustls takes the process's provider: the same ring the webhook's TLS uses.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let registry = to.reference.resolve_registry().to_string();
    let protocol =
        if to.plain_http { ClientProtocol::HttpsExcept(vec![registry.clone()]) } else { ClientProtocol::Https };
    let client = Client::try_from(ClientConfig { protocol, ..Default::default() }).context("OCI client")?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("tokio runtime")?;
    let content_type = http::HeaderValue::from_str(&artifact.manifest_media_type).context("manifest media type")?;
    let reference = &to.reference;
    runtime.block_on(async {
        client.store_auth_if_needed(&registry, &to.auth).await;
        for (digest, bytes) in &artifact.blobs {
            if client.blob_exists(reference, digest).await.unwrap_or(false) {
                continue;
            }
            client
                .push_blob(reference, bytes.clone(), digest)
                .await
                .with_context(|| format!("pushing blob {digest} to {registry}"))?;
        }
        client
            .push_manifest_raw(reference, artifact.manifest.clone(), content_type)
            .await
            .with_context(|| format!("pushing the manifest to {reference}"))?;
        anyhow::Ok(())
    })?;
    Ok(artifact.digest())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_spoken_to_over_plain_http() {
        for registry in ["127.0.0.1:5000", "localhost:5000", "localhost", "[::1]:5000", "127.8.9.1"] {
            assert!(is_loopback(registry), "{registry}");
        }
        for registry in ["ghcr.io", "registry.example.com:5000", "10.0.0.1:5000", "localhost.example.com"] {
            assert!(!is_loopback(registry), "{registry}");
        }
    }

    #[test]
    fn manifest_annotations_keep_single_line_values_and_name_the_source() {
        let metadata = json!({"annotations": {
            "io.kubewarden.policy.title": " meshguard ",
            "io.kubewarden.policy.usage": "line one\nline two",
            "io.kubewarden.policy.source": "https://github.com/meshguard/meshguard",
        }});
        let annotations = manifest_annotations(&metadata);
        assert_eq!(annotations.get("io.kubewarden.policy.title").map(String::as_str), Some("meshguard"));
        assert!(!annotations.contains_key("io.kubewarden.policy.usage"));
        assert_eq!(
            annotations.get("org.opencontainers.image.source").map(String::as_str),
            Some("https://github.com/meshguard/meshguard")
        );
    }

    #[test]
    fn a_module_without_kubewarden_metadata_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bare.wasm");
        std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
        let error = kubewarden_policy(&path).err().unwrap().to_string();
        assert!(error.contains("no `io.kubewarden.metadata` section"), "{error}");
        std::fs::write(&path, b"not wasm").unwrap();
        let error = format!("{:#}", kubewarden_policy(&path).err().unwrap());
        assert!(error.contains("not a WebAssembly module"), "{error}");
    }

    #[test]
    fn a_layout_blob_that_does_not_match_its_digest_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        let digest = sha256_digest(manifest);
        let blobs = dir.path().join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::write(blobs.join(digest.trim_start_matches("sha256:")), b"tampered").unwrap();
        let index = json!({"schemaVersion": 2, "manifests": [{
            "mediaType": OCI_IMAGE_MEDIA_TYPE, "digest": digest, "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "1.0"}}]});
        std::fs::write(dir.path().join("index.json"), index.to_string()).unwrap();
        let error = oci_layout_image(dir.path(), Some("1.0")).err().unwrap().to_string();
        assert!(error.contains("does not match its digest"), "{error}");
        let error = oci_layout_image(dir.path(), Some("2.0")).err().unwrap().to_string();
        assert!(error.contains("no image tagged `2.0` (tags: 1.0)"), "{error}");
    }

    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("policy.wasm");
        let path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        let error = kubewarden_policy(&fifo).err().unwrap().to_string();
        assert!(error.contains("a FIFO; meshguard reads regular files only"), "{error}");
        std::fs::create_dir(dir.path().join("layout")).unwrap();
        std::os::unix::fs::symlink(&fifo, dir.path().join("layout/index.json")).unwrap();
        let error = oci_layout_image(&dir.path().join("layout"), None).err().unwrap().to_string();
        assert!(error.contains("a FIFO"), "{error}");
    }

    #[test]
    fn a_digest_is_not_a_path() {
        let dir = tempfile::tempdir().unwrap();
        let descriptor = json!({"digest": "sha256:../../etc/passwd", "size": 1});
        let error = layout_blob(dir.path(), &descriptor, "config").err().unwrap().to_string();
        assert!(error.contains("is not a sha256 digest"), "{error}");
    }

    #[test]
    fn references_must_name_a_tag() {
        let error = Destination::parse("127.0.0.1:5000/meshguard/x@sha256:".to_string().as_str(), false)
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("image reference") || error.contains("name a tag"), "{error}");
        assert!(Destination::parse("127.0.0.1:5000/meshguard/x:1.0", false).unwrap().plain_http);
    }
}
