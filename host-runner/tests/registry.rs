//! The release's way into clusters, end to end: a throwaway OCI registry (Debian's
//! `docker-registry`) on 127.0.0.1, `scripts/publish.sh` pushing the image, the Envoy filter and
//! the Kubewarden modules with `meshguard push`, and independent clients pulling them back:
//! skopeo (containers/image) for every artifact, and oci-client pulling each policy exactly as
//! Kubewarden's policy fetcher does. Checked: media types and layer counts as each consumer
//! expects, digests equal to the local files', the image's labels and non-root user, and the
//! unpacked image's binary running `--version` and `serve` (answering /readyz) from its own root
//! filesystem. Needs `scripts/build-image.sh`'s layouts (scripts/test.sh builds them first).

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WASM_CONFIG: &str = "application/vnd.wasm.config.v1+json";
const WASM_LAYER: &str = "application/vnd.wasm.content.layer.v1+wasm";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const TAR_GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < timeout, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// HTTP status of a GET, by curl (`-k`: the unpacked server's certificate is its own).
fn http_status(url: &str) -> u16 {
    let out =
        Command::new("curl").args(["-sk", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}", url]).output();
    out.ok().and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok()).unwrap_or(0)
}

fn start_registry(dir: &Path) -> (Killed, String) {
    let port = free_port();
    let config = dir.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog: {{level: error}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\n\
             http: {{addr: 127.0.0.1:{port}}}\n",
            dir.join("store").display()
        ),
    )
    .unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry (Debian's docker-registry; scripts/setup.sh installs it)");
    let registry = Killed(child);
    let host = format!("127.0.0.1:{port}");
    eventually("the registry answers /v2/", Duration::from_secs(30), || {
        http_status(&format!("http://{host}/v2/")) == 200
    });
    (registry, host)
}

fn run(command: &mut Command) -> Vec<u8> {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(out.status.success(), "{command:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn skopeo(args: &[&str]) -> Vec<u8> {
    run(Command::new("skopeo").args(args))
}

/// The manifest as the registry serves it, and its JSON.
fn raw_manifest(reference: &str) -> (Vec<u8>, Value) {
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &format!("docker://{reference}")]);
    let json = serde_json::from_slice(&raw).unwrap();
    (raw, json)
}

/// Copies `reference` into an OCI layout at `dir` with skopeo; the path of blob `digest` there.
fn pull(reference: &str, dir: &Path) -> impl Fn(&str) -> PathBuf {
    let layout = format!("oci:{}:pulled", dir.display());
    skopeo(&["copy", "--quiet", "--src-tls-verify=false", &format!("docker://{reference}"), &layout]);
    let dir = dir.to_path_buf();
    move |digest: &str| dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))
}

fn local_layout_digest(layout: &Path) -> String {
    let index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"].as_str().unwrap().to_string()
}

#[test]
fn published_artifacts_round_trip_through_a_real_registry() {
    let repo = repo();
    let images = repo.join("target/image");
    assert!(
        images.join("meshguard/index.json").is_file() && images.join("meshguard-envoy/index.json").is_file(),
        "no image layouts in {}: run scripts/build-image.sh (scripts/test.sh does)",
        images.display()
    );
    let work = tempfile::tempdir().unwrap();
    let (_registry, host) = start_registry(work.path());
    let prefix = format!("{host}/meshguard");

    let out = run(Command::new("bash")
        .arg(repo.join("scripts/publish.sh"))
        .arg(&prefix)
        .current_dir(&repo)
        .env("MESHGUARD_IMAGES", &images)
        .env("MESHGUARD", env!("CARGO_BIN_EXE_meshguard"))
        .env("MESHGUARD_PUBLISH_OUT", work.path()));
    let printed: Vec<(String, String)> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|line| {
            let (reference, digest) = line.split_once('@').unwrap_or_else(|| panic!("not REF@DIGEST: {line}"));
            (reference.to_string(), digest.to_string())
        })
        .collect();
    let names: Vec<&str> = printed.iter().map(|(r, _)| r.strip_prefix(&format!("{prefix}/")).unwrap()).collect();
    assert_eq!(
        names,
        [
            format!("meshguard:{VERSION}"),
            format!("meshguard-envoy:{VERSION}"),
            format!("policies/meshguard:{VERSION}"),
            format!("policies/meshguard-opa:{VERSION}"),
            format!("policies/meshguard-gatekeeper:{VERSION}"),
        ]
    );
    let catalog: Value =
        serde_json::from_slice(&run(Command::new("curl").args(["-sf", &format!("http://{host}/v2/_catalog")])))
            .unwrap();
    assert_eq!(catalog["repositories"].as_array().map(Vec::len), Some(5), "{catalog}");

    // Every digest printed is the manifest's as the registry serves it.
    for (reference, digest) in &printed {
        let (raw, manifest) = raw_manifest(reference);
        assert_eq!(format!("sha256:{}", sha256(&raw)), *digest, "{reference}");
        assert_eq!(manifest["mediaType"], OCI_MANIFEST, "{reference}");
    }

    // The images are the local layouts, byte for byte.
    assert_eq!(printed[0].1, local_layout_digest(&images.join("meshguard")));
    assert_eq!(printed[1].1, local_layout_digest(&images.join("meshguard-envoy")));

    // Kubewarden's policies: its fetcher's layout, the module unchanged, pulled as it pulls them.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::HttpsExcept(vec![host.clone()]),
        ..Default::default()
    });
    for ((reference, _), module) in
        printed[2..].iter().zip(["meshguard-kubewarden.wasm", "meshguard-opa-kubewarden.wasm", "meshguard-opa.wasm"])
    {
        let local = std::fs::read(repo.join("dist").join(module)).unwrap();
        let (_, manifest) = raw_manifest(reference);
        assert_eq!(manifest["config"]["mediaType"], WASM_CONFIG, "{reference}");
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1, "{reference}: one layer");
        assert_eq!(layers[0]["mediaType"], WASM_LAYER, "{reference}");
        assert_eq!(layers[0]["digest"].as_str(), Some(format!("sha256:{}", sha256(&local)).as_str()));
        // The metadata's title names the repository its module goes to (wasm-plugin/*/build.rs).
        let repository = reference.rsplit('/').next().unwrap().split(':').next().unwrap();
        assert_eq!(manifest["annotations"]["io.kubewarden.policy.title"], repository, "{reference}");

        let blob = pull(reference, &work.path().join(module));
        assert_eq!(std::fs::read(blob(layers[0]["digest"].as_str().unwrap())).unwrap(), local, "{reference} (skopeo)");

        let image: oci_client::Reference = reference.parse().unwrap();
        let pulled = runtime
            .block_on(client.pull(&image, &oci_client::secrets::RegistryAuth::Anonymous, vec![WASM_LAYER]))
            .unwrap_or_else(|e| panic!("{reference}: Kubewarden's pull: {e}"));
        assert_eq!(pulled.layers.len(), 1);
        assert_eq!(pulled.layers[0].data.as_ref(), local.as_slice(), "{reference} (oci-client)");
    }

    // The Envoy filter: Istio's "compat" image, its last (only) layer a tar+gzip with plugin.wasm;
    // WasmPlugin's sha256 is the manifest digest, as Istio's fetcher compares it.
    let (envoy_ref, envoy_digest) = &printed[1];
    let (_, manifest) = raw_manifest(envoy_ref);
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!((layers.len(), layers[0]["mediaType"].as_str()), (1, Some(TAR_GZIP_LAYER)));
    let blob = pull(envoy_ref, &work.path().join("envoy"));
    let unpacked = work.path().join("envoy-rootfs");
    std::fs::create_dir_all(&unpacked).unwrap();
    run(Command::new("tar").arg("-xzf").arg(blob(layers[0]["digest"].as_str().unwrap())).arg("-C").arg(&unpacked));
    assert_eq!(
        std::fs::read(unpacked.join("plugin.wasm")).unwrap(),
        std::fs::read(repo.join("dist/meshguard-envoy.wasm")).unwrap()
    );
    let wasmplugin = std::fs::read_to_string(work.path().join("wasmplugin.yaml")).unwrap();
    assert!(wasmplugin.contains(&format!("  url: oci://{envoy_ref}\n")), "{wasmplugin}");
    assert!(
        wasmplugin.contains(&format!("  sha256: {}\n", envoy_digest.trim_start_matches("sha256:"))),
        "{wasmplugin}"
    );

    // The meshguard image: one layer, labelled, non-root, and its binary runs from its own rootfs.
    let (image_ref, _) = &printed[0];
    let (_, manifest) = raw_manifest(image_ref);
    assert_eq!(manifest["config"]["mediaType"], OCI_CONFIG);
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!((layers.len(), layers[0]["mediaType"].as_str()), (1, Some(TAR_GZIP_LAYER)), "{manifest:#}");
    let config: Value = serde_json::from_slice(&skopeo(&[
        "inspect",
        "--config",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{image_ref}"),
    ]))
    .unwrap();
    let settings = &config["config"];
    assert_eq!(settings["User"], "65532:65532");
    assert_eq!(settings["Entrypoint"], serde_json::json!(["/usr/local/bin/meshguard"]));
    let labels = &settings["Labels"];
    assert_eq!(labels["org.opencontainers.image.version"], VERSION);
    assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0");
    assert!(labels["org.opencontainers.image.source"].as_str().unwrap().starts_with("https://"));
    assert_eq!(labels["org.opencontainers.image.revision"].as_str().map(str::len), Some(40), "{labels}");

    let blob = pull(image_ref, &work.path().join("image"));
    let rootfs = work.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    for layer in layers {
        run(Command::new("tar")
            .args(["--no-same-owner", "-xzf"])
            .arg(blob(layer["digest"].as_str().unwrap()))
            .arg("-C")
            .arg(&rootfs));
    }
    let mut files: Vec<String> =
        walk(&rootfs).into_iter().map(|p| p.strip_prefix(&rootfs).unwrap().display().to_string()).collect();
    files.sort();
    assert_eq!(files, ["tmp", "usr/local/bin/meshguard"], "no shell, nothing but the binary and /tmp");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(rootfs.join("tmp")).unwrap().permissions().mode() & 0o7777, 0o1777, "/tmp");
    let binary = rootfs.join("usr/local/bin/meshguard");
    let version = run(Command::new(&binary).arg("--version"));
    assert_eq!(String::from_utf8(version).unwrap().trim(), format!("meshguard {VERSION}"));

    // `serve` in the image's root filesystem, as its user, with its environment.
    let env: Vec<(String, String)> = settings["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.as_str()?.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    let port = free_port();
    // Certificates go to the image's own /tmp: inside the chroot that is rootfs/tmp.
    let (mut command, certs) = if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("chroot");
        c.arg("--userspec=65532:65532").arg(&rootfs).arg("/usr/local/bin/meshguard");
        (c, PathBuf::from("/").join("tmp").join("certs"))
    } else {
        // Without root no chroot: the same binary, still static and alone, from the unpacked tree.
        (Command::new(&binary), rootfs.join("tmp").join("certs"))
    };
    command
        .args(["serve", "--self-signed"])
        .arg(&certs)
        .arg("--addr")
        .arg(format!("127.0.0.1:{port}"))
        .args(["--metrics-addr", "127.0.0.1:0"])
        .env_clear()
        .envs(env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut server = Killed(child);
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = log.clone();
    std::thread::spawn(move || stderr.lines().map_while(Result::ok).for_each(|l| sink.lock().unwrap().push(l)));
    let ready = format!("https://127.0.0.1:{port}/readyz");
    let start = Instant::now();
    while http_status(&ready) != 200 {
        let exited = server.0.try_wait().unwrap();
        assert!(
            exited.is_none() && start.elapsed() < Duration::from_secs(120),
            "not ready ({exited:?}): {:#?}",
            log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(server);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = vec![];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() && std::fs::read_dir(&path).unwrap().next().is_some() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[test]
fn push_errors_name_the_artifact_or_the_registry_and_exit_2() {
    let repo = repo();
    let meshguard = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_meshguard")).args(args).current_dir(&repo).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let closed = format!("127.0.0.1:{}/meshguard/x:1.0", free_port());
    let (code, stderr) = meshguard(&["push", "Cargo.toml", &closed]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("Cargo.toml: not a WebAssembly module"), "{stderr}");
    let (code, stderr) = meshguard(&["push", "no-such-layout:1.0", &closed]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("no-such-layout:1.0: no such file, directory or DIR:TAG"), "{stderr}");
    let (code, stderr) = meshguard(&["push", "dist/meshguard-kubewarden.wasm", "not a reference"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("`not a reference` is not an image reference"), "{stderr}");
    let (code, stderr) = meshguard(&["push", "dist/meshguard-kubewarden.wasm", &closed]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(&format!("to {}", closed.split('/').next().unwrap())), "{stderr}");
}
