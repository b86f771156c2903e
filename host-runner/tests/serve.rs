//! `meshguard serve` over real TLS, driven by curl as a client would: AdmissionReviews as the API
//! server sends them, both engines, reloads of rules and certificates, and SIGTERM.

use rustls::pki_types::pem::PemObject;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    addr: String,
    metrics: String,
    ca: PathBuf,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, extra: &[&str]) -> Server {
    let certs = dir.join("certs");
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshguard"))
        .args(["serve", "--self-signed"])
        .arg(&certs)
        .args(["--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--poll-ms", "100"])
        .args(extra)
        .env("MESHGUARD_CACHE_DIR", dir.join("cache"))
        .env("MESHGUARD_CACHE_KEY", "serve-tests")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if line.contains("\"msg\":\"serving\"") {
                let _ = tx.send(line.clone());
            }
            sink.lock().unwrap().push(line);
        }
    });
    let serving: Value = serde_json::from_str(&rx.recv_timeout(Duration::from_secs(120)).expect("serving")).unwrap();
    Server {
        child,
        addr: serving["addr"].as_str().unwrap().replace("127.0.0.1", "localhost"),
        metrics: serving["metrics"].as_str().unwrap().to_string(),
        ca: certs.join("ca.crt"),
        log,
    }
}

/// `curl` over TLS, verifying the server against the CA: (HTTP status, body).
fn curl(server: &Server, path: &str, body: Option<&str>, extra: &[&str]) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}", "--cacert"])
        .arg(&server.ca)
        .args(extra)
        .arg(format!("https://{}{path}", server.addr));
    if body.is_some() {
        cmd.args(["-H", "content-type: application/json", "--data-binary", "@-"]).stdin(Stdio::piped());
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(b) = body {
        child.stdin.take().unwrap().write_all(b.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn review(uid: &str, operation: &str, object: Value, dry_run: bool) -> String {
    let kind = object["kind"].clone();
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": kind},
            "resource": {"group": "", "version": "v1", "resource": "services"},
            "namespace": "shop",
            "operation": operation,
            "userInfo": {"username": "dev"},
            "object": if operation == "DELETE" { Value::Null } else { object.clone() },
            "oldObject": if operation == "DELETE" { object } else { Value::Null },
            "dryRun": dry_run,
        }
    })
    .to_string()
}

fn service(port_name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api", "namespace": "shop"},
           "spec": {"ports": [{"name": port_name, "port": 80}]}})
}

fn validate(server: &Server, body: &str) -> Value {
    let (code, text) = curl(server, "/validate", Some(body), &[]);
    assert_eq!(code, 200, "{text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not happen within 20 s");
}

/// A TLS connection to the webhook at `addr`, trusting `ca`, offering the one ALPN protocol `alpn`.
async fn tls_connect(
    addr: &str,
    ca: &Path,
    alpn: &[u8],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr.replace("localhost", "127.0.0.1")).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(name, tcp).await
}

fn metrics(server: &Server) -> String {
    let out = Command::new("curl").args(["-sS", &format!("http://{}/metrics", server.metrics)]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const WARN_RULES: &str = "apiVersion: meshguard.dev/v1alpha1\nkind: RuleSet\nmetadata: {name: t}\nspec:\n  rules:\n  - {id: ports, check: istio-port-name, action: warn}\n";
const DENY_RULES: &str = "apiVersion: meshguard.dev/v1alpha1\nkind: RuleSet\nmetadata: {name: t}\nspec:\n  rules:\n  - {id: ports, check: istio-port-name, action: deny}\n";

#[test]
fn admission_reviews_get_the_same_answers_from_both_engines() {
    let dir = tempfile::tempdir().unwrap();
    let mut answers = Vec::new();
    for engine in ["native", "wasm"] {
        let server = start(&dir.path().join(engine), &["--engine", engine]);
        let deny = validate(&server, &review("u-deny", "CREATE", service("web"), false));
        let r = &deny["response"];
        assert_eq!((r["uid"].as_str(), r["allowed"].as_bool()), (Some("u-deny"), Some(false)), "{deny}");
        assert_eq!(r["status"]["code"], 403);
        let message = r["status"]["message"].as_str().unwrap();
        assert!(message.starts_with("istio-port-name:") && message.contains("(at spec.ports[0].name)"), "{message}");
        assert_eq!(r["auditAnnotations"]["deny"], "istio-port-name");
        let allow = validate(&server, &review("u-allow", "CREATE", service("http-web"), false));
        assert_eq!(allow["response"]["allowed"], true, "{allow}");
        assert!(allow["response"].get("status").is_none());
        let dry = validate(&server, &review("u-dry", "UPDATE", service("web"), true));
        assert_eq!(dry["response"]["allowed"], false, "a server-side dry run shows the denial: {dry}");
        let delete = validate(&server, &review("u-del", "DELETE", service("web"), false));
        assert_eq!(delete["response"]["allowed"], true);
        // A kind no rule can flag is answered without the engine, and still answered right.
        let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "shop"}, "data": {"a": "b"}});
        let fast = validate(&server, &review("u-cm", "CREATE", config, false));
        assert_eq!(
            (fast["response"]["uid"].as_str(), fast["response"]["allowed"].as_bool()),
            (Some("u-cm"), Some(true))
        );
        // Malformed input: a 400 for a body that is not JSON, a refusing review for a wrong envelope.
        let (code, text) = curl(&server, "/validate", Some("{not json"), &[]);
        assert_eq!(code, 400, "{text}");
        let wrong = validate(
            &server,
            &json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {"uid": "u-old"}})
                .to_string(),
        );
        assert_eq!(
            (wrong["response"]["uid"].as_str(), wrong["response"]["allowed"].as_bool()),
            (Some("u-old"), Some(false))
        );
        let no_uid = validate(&server, &json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"operation": "CREATE"}}).to_string());
        assert!(no_uid["response"]["status"]["message"].as_str().unwrap().contains("no uid"));
        // HTTP/2 as the API server speaks it, and the probes.
        assert_eq!(curl(&server, "/readyz", None, &["--http2"]), (200, "ready\n".into()));
        assert_eq!(curl(&server, "/healthz", None, &[]).0, 200);
        let m = metrics(&server);
        assert!(m.contains("meshguard_admission_requests_total{decision=\"deny\",operation=\"CREATE\",kind=\"Service\",rule=\"istio-port-name\"} 1"), "{m}");
        assert!(m.contains("meshguard_admission_errors_total{reason=\"not_json\"} 1"), "{m}");
        answers.push((deny, allow, dry));
    }
    assert_eq!(answers[0], answers[1], "native and wasm answer alike");
}

/// Where the server's wasm module came from, as its `module loaded` log line says.
fn module_from(server: &Server) -> String {
    let log = server.log.lock().unwrap();
    let line = log.iter().find(|l| l.contains("\"msg\":\"module loaded\"")).expect("a `module loaded` line");
    serde_json::from_str::<Value>(line).unwrap()["from"].as_str().unwrap().to_string()
}

#[test]
fn the_module_is_compiled_by_a_child_process_then_loaded_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("shared-cache");
    let cache_arg = cache.to_str().unwrap();
    let first = start(&dir.path().join("first"), &["--engine", "wasm", "--cache-dir", cache_arg]);
    assert_eq!(module_from(&first), "compiled by a child process into the cache");
    let deny = validate(&first, &review("u-1", "CREATE", service("web"), false));
    assert_eq!(deny["response"]["allowed"], false, "{deny}");
    let cached: Vec<_> = std::fs::read_dir(&cache).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(cached.len(), 1, "one compiled module in the cache: {cached:?}");
    drop(first);
    let second = start(&dir.path().join("second"), &["--engine", "wasm", "--cache-dir", cache_arg]);
    assert_eq!(module_from(&second), "the cache");
    drop(second);
    // A cache that cannot be written (a file where the directory should be): compiled here, served.
    let blocked = dir.path().join("blocked");
    std::fs::write(&blocked, "a file, not a directory").unwrap();
    let third = start(&dir.path().join("third"), &["--engine", "wasm", "--cache-dir", blocked.to_str().unwrap()]);
    assert_eq!(module_from(&third), "compiled in this process (the cache could not be written)");
    let allow = validate(&third, &review("u-3", "CREATE", service("http-web"), false));
    assert_eq!(allow["response"]["allowed"], true, "{allow}");
    let uncached = start(&dir.path().join("fourth"), &["--engine", "wasm", "--no-cache"]);
    assert_eq!(module_from(&uncached), "compiled in this process");
}

#[test]
fn with_a_view_of_the_cluster_cross_object_rules_decide_as_ci_does() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = dir.path().join("cluster.yaml");
    std::fs::write(
        &cluster,
        "apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: shop}\n\
         spec: {clusterIP: None, ports: [{name: tcp-db, port: 5000}]}\n",
    )
    .unwrap();
    let headless = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "cache", "namespace": "shop"},
                          "spec": {"clusterIP": "None", "ports": [{"name": "http-cache", "port": 5000}]}});
    let mut answers = Vec::new();
    for engine in ["native", "wasm"] {
        let server = start(&dir.path().join(engine), &["--engine", engine, "--cluster", cluster.to_str().unwrap()]);
        let r = validate(&server, &review("u1", "CREATE", headless.clone(), false))["response"].clone();
        assert_eq!(r["allowed"], false, "{engine}: {r}");
        assert!(r["status"]["message"].as_str().unwrap().contains("headless Service `db` declares it as `tcp`"), "{r}");
        answers.push(r);
        let blind = start(&dir.path().join(format!("{engine}-blind")), &["--engine", engine]);
        let r = validate(&blind, &review("u1", "CREATE", headless.clone(), false))["response"].clone();
        assert_eq!(r["allowed"], true, "{engine}: {r}");
        assert_eq!(r["auditAnnotations"]["without-context"], "istio-headless-port-conflict", "{engine}: {r}");
    }
    assert_eq!(answers[0], answers[1], "both engines answer alike");
}

#[test]
fn oversized_and_slow_requests_are_refused_without_harm() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--engine", "native", "--max-body-bytes", "4096", "--read-timeout-ms", "500"]);
    let big = review(
        "u-big",
        "CREATE",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"k": "v".repeat(10_000)}}),
        false,
    );
    // 413, or, when the server's early answer races curl still sending, a cut upload: either way
    // refused before it was read, and counted.
    let (code, _) = curl(&server, "/validate", Some(&big), &[]);
    assert!(code == 413 || code == 0, "{code}");
    assert!(metrics(&server).contains("meshguard_admission_errors_total{reason=\"body_too_large\"} 1"));
    // Nesting past serde_json's recursion limit is a 400 naming it, not a stack overflow.
    let deep = format!(
        "{{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{{\"uid\":\"u-deep\",\"x\":{}1{}}}}}",
        "[".repeat(1000),
        "]".repeat(1000)
    );
    let (code, text) = curl(&server, "/validate", Some(&deep), &[]);
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("recursion limit"), "{text}");
    // A client that opens a connection and sends nothing is cut off; the server keeps answering.
    let idle = std::net::TcpStream::connect(server.addr.replace("localhost", "127.0.0.1")).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    drop(idle);
    let ok = validate(&server, &review("u-after", "CREATE", service("http-web"), false));
    assert_eq!(ok["response"]["allowed"], true);
}

#[test]
fn rules_reload_on_change_and_sighup_and_a_bad_one_keeps_the_last_good() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, WARN_RULES).unwrap();
    let server = start(dir.path(), &["--engine", "wasm", "--rules", rules.to_str().unwrap()]);
    let bad = review("u1", "CREATE", service("web"), false);
    let warned = validate(&server, &bad);
    assert_eq!(warned["response"]["allowed"], true, "{warned}");
    assert!(warned["response"]["warnings"][0].as_str().unwrap().starts_with("ports:"), "{warned}");
    std::fs::write(&rules, DENY_RULES).unwrap();
    eventually("the deny rule set to load", || validate(&server, &bad)["response"]["allowed"] == false);
    // An invalid rule set is rejected; the last good one keeps deciding.
    std::fs::write(&rules, "apiVersion: meshguard.dev/v1alpha1\nkind: RuleSet\nmetadata: {name: t}\nspec:\n  rules:\n  - {id: ports, check: no-such-check}\n").unwrap();
    eventually("the rejection to be counted", || {
        metrics(&server).contains("meshguard_reloads_total{what=\"rules\",result=\"failure\"} 1")
    });
    assert_eq!(validate(&server, &bad)["response"]["allowed"], false);
    let logged = server.log.lock().unwrap().join("\n");
    assert!(logged.contains("rule set rejected") && logged.contains("no-such-check"), "{logged}");
    // SIGHUP re-reads it too.
    std::fs::write(&rules, WARN_RULES).unwrap();
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
    eventually("SIGHUP to reload", || validate(&server, &bad)["response"]["allowed"] == true);
}

#[test]
fn certificates_rotate_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), &["--engine", "native"]);
    assert_eq!(curl(&server, "/healthz", None, &[]).0, 200);
    // cert-manager writes a new certificate (here from a new CA) over the served files.
    let next = host_runner::serve::tls::self_signed(&dir.path().join("next"), &["localhost".into()]).unwrap();
    let served = dir.path().join("certs");
    std::fs::copy(&next.key, served.join("tls.key.new")).unwrap();
    std::fs::copy(&next.cert, served.join("tls.crt.new")).unwrap();
    std::fs::rename(served.join("tls.key.new"), served.join("tls.key")).unwrap();
    std::fs::rename(served.join("tls.crt.new"), served.join("tls.crt")).unwrap();
    let old_ca = server.ca.clone();
    server.ca = next.ca.clone();
    eventually("the new certificate to be served", || curl(&server, "/healthz", None, &[]).0 == 200);
    server.ca = old_ca;
    assert_eq!(curl(&server, "/healthz", None, &[]).0, 0, "the old CA no longer verifies the server");
}

#[test]
fn sigterm_turns_unready_keeps_answering_then_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), &["--engine", "native", "--shutdown-delay-ms", "1500"]);
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    eventually("/readyz to report 503", || curl(&server, "/readyz", None, &[]).0 == 503);
    let still = validate(&server, &review("u-late", "CREATE", service("http-web"), false));
    assert_eq!(still["response"]["allowed"], true, "answers during the shutdown delay");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "still running");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn an_invalid_rule_set_at_startup_exits_2_naming_the_rule_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, "apiVersion: meshguard.dev/v1alpha1\nkind: RuleSet\nmetadata: {name: t}\nspec:\n  rules:\n  - {id: ports, check: istio-port-name, params: {protocol: [http]}}\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_meshguard"))
        .args(["serve", "--engine", "native", "--self-signed"])
        .arg(dir.path().join("certs"))
        .args(["--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--rules"])
        .arg(&rules)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rules.yaml:6: rule `ports`") && err.contains("params.protocol"), "{err}");
}

#[test]
fn a_cluster_snapshot_that_does_not_parse_exits_2_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("cluster.yaml");
    std::fs::write(&snapshot, "apiVersion: v1\nkind: Service\nmetadata: {name: x\n").unwrap();
    for path in [snapshot.clone(), dir.path().join("missing.yaml")] {
        let out = Command::new(env!("CARGO_BIN_EXE_meshguard"))
            .args(["serve", "--engine", "native", "--self-signed"])
            .arg(dir.path().join("certs"))
            .args(["--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--cluster"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(err.contains("--cluster: ") && err.contains(name), "{err}");
    }
    let err = String::from_utf8_lossy(
        &Command::new(env!("CARGO_BIN_EXE_meshguard"))
            .args(["serve", "--engine", "native", "--self-signed"])
            .arg(dir.path().join("certs"))
            .args(["--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--cluster"])
            .arg(&snapshot)
            .output()
            .unwrap()
            .stderr,
    )
    .into_owned();
    assert!(err.contains("cluster.yaml:4:1:"), "the parse error's line: {err}");
}

#[test]
fn deploy_manifests_parse_and_pass_meshguards_own_default_rules() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_meshguard"))
        .args(["check", "--engine", "native", "--format", "json", "deploy"])
        .current_dir(repo)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["findings"], json!([]), "not even a warning");
    let mut kinds = Vec::new();
    for entry in std::fs::read_dir(repo.join("deploy")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in policy_core::yaml::parse_documents(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display())) {
            kinds.push(doc.value["kind"].as_str().unwrap().to_string());
            match doc.value["kind"].as_str().unwrap() {
                "Deployment" => {
                    let spec = &doc.value["spec"];
                    assert_eq!(spec["replicas"], 3);
                    let c = &spec["template"]["spec"]["containers"][0];
                    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
                    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
                    assert_eq!(spec["template"]["spec"]["securityContext"]["runAsNonRoot"], true);
                    assert!(c["resources"]["limits"]["memory"].is_string());
                    // The image (Containerfile) is one static binary: nothing to exec but meshguard.
                    assert_eq!(c["lifecycle"]["preStop"]["sleep"]["seconds"], 30);
                    assert!(c["command"].is_null() && c["lifecycle"]["preStop"]["exec"].is_null(), "{c:#}");
                }
                "ValidatingWebhookConfiguration" => {
                    let w = &doc.value["webhooks"][0];
                    assert_eq!(w["sideEffects"], "None");
                    assert_eq!(w["clientConfig"]["service"]["path"], "/validate");
                    assert!(w["timeoutSeconds"].as_u64().unwrap() <= 10);
                    let excluded = w["namespaceSelector"]["matchExpressions"][0]["values"].to_string();
                    assert!(excluded.contains("kube-system") && excluded.contains("meshguard"), "{excluded}");
                }
                "MutatingWebhookConfiguration" => {
                    let w = &doc.value["webhooks"][0];
                    assert_eq!(
                        (w["sideEffects"].as_str(), w["reinvocationPolicy"].as_str()),
                        (Some("None"), Some("IfNeeded"))
                    );
                    assert_eq!(w["clientConfig"]["service"]["path"], "/mutate");
                }
                _ => {}
            }
        }
    }
    kinds.sort();
    for kind in [
        "Certificate",
        "ConfigMap",
        "Deployment",
        "MutatingWebhookConfiguration",
        "Namespace",
        "PodDisruptionBudget",
        "Service",
        "ValidatingWebhookConfiguration",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "deploy/ has no {kind}: {kinds:?}");
    }
}

/// A waPC guest whose every call loops for ever, written into `dir`.
fn looping_guest(dir: &Path) -> PathBuf {
    let looping = dir.join("loop.wat");
    std::fs::write(
        &looping,
        r#"(module (memory (export "memory") 1)
  (func (export "__guest_call") (param i32 i32) (result i32) (loop $l (br $l)) (i32.const 0)))"#,
    )
    .unwrap();
    looping
}

#[test]
fn a_guest_past_its_deadline_is_stopped_and_answered_by_the_failure_policy() {
    let dir = tempfile::tempdir().unwrap();
    let looping = looping_guest(dir.path());
    for (policy, allowed) in [("ignore", true), ("fail", false)] {
        let server = start(
            &dir.path().join(policy),
            &["--module", looping.to_str().unwrap(), "--review-timeout-ms", "300", "--failure-policy", policy],
        );
        let started = Instant::now();
        let answer = validate(&server, &review("u-loop", "CREATE", service("web"), false));
        assert!(started.elapsed() < Duration::from_secs(3), "answered at the deadline: {:?}", started.elapsed());
        assert_eq!(answer["response"]["allowed"], allowed, "{answer}");
        let said = answer["response"].to_string();
        assert!(said.contains("ran past its 300 ms deadline and was stopped"), "{said}");
        // The stopped guest's instance is dropped; the next request gets a fresh one and the same answer.
        let again = validate(&server, &review("u-loop-2", "CREATE", service("web"), false));
        assert_eq!(again["response"]["allowed"], allowed);
    }
}

/// A Rust client (hyper over rustls, HTTP/2) keeps one connection open across a certificate
/// rotation: established connections keep working, new handshakes get the new certificate.
#[test]
fn an_open_connection_survives_certificate_rotation() {
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::TokioIo;

    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--engine", "native"]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let connect = |ca: PathBuf| {
            let addr = server.addr.clone();
            async move {
                let tls = tls_connect(&addr, &ca, b"h2").await?;
                let (sender, conn) =
                    hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(tls))
                        .await
                        .map_err(std::io::Error::other)?;
                tokio::spawn(conn);
                Ok::<_, std::io::Error>(sender)
            }
        };
        let post = |sender: &mut hyper::client::conn::http2::SendRequest<Full<bytes::Bytes>>, uid: &str| {
            let req = hyper::Request::post("/validate")
                .header("content-type", "application/json")
                .body(Full::new(bytes::Bytes::from(review(uid, "CREATE", service("web"), false))))
                .unwrap();
            let sent = sender.send_request(req);
            async move {
                let resp = sent.await.unwrap();
                assert_eq!(resp.status(), 200);
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                serde_json::from_slice::<Value>(&body).unwrap()
            }
        };
        let mut open = connect(server.ca.clone()).await.unwrap();
        assert_eq!(post(&mut open, "before").await["response"]["uid"], "before");
        let next = host_runner::serve::tls::self_signed(&dir.path().join("next"), &["localhost".into()]).unwrap();
        let served = dir.path().join("certs");
        for name in ["tls.key", "tls.crt"] {
            std::fs::copy(next.cert.with_file_name(name), served.join(format!("{name}.new"))).unwrap();
            std::fs::rename(served.join(format!("{name}.new")), served.join(name)).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while connect(next.ca.clone()).await.is_err() {
            assert!(Instant::now() < deadline, "the new certificate was never served");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The connection opened under the old certificate is still answered.
        let after = post(&mut open, "after").await;
        assert_eq!(
            (after["response"]["uid"].as_str(), after["response"]["allowed"].as_bool()),
            (Some("after"), Some(false))
        );
        assert!(connect(server.ca.clone()).await.is_err(), "new handshakes no longer get the old certificate");
    });
}

/// A client that completes the TLS handshake and then sends nothing (with either ALPN protocol) is
/// disconnected after `--idle-timeout-ms`, and one that keeps talking is not.
#[test]
fn a_silent_connection_is_closed_after_the_idle_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--engine", "native", "--idle-timeout-ms", "600"]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let connect = |alpn: &'static [u8]| {
            let (addr, ca) = (server.addr.clone(), server.ca.clone());
            async move { tls_connect(&addr, &ca, alpn).await.unwrap() }
        };
        for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
            let mut silent = connect(alpn).await;
            let started = Instant::now();
            let mut buf = vec![0u8; 4096];
            // HTTP/2 servers speak first (SETTINGS); read until the server closes.
            let closed = tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    match silent.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => continue,
                    }
                }
            })
            .await;
            assert!(closed.is_ok(), "{alpn:?}: a silent connection is still open after 10 s");
            let waited = started.elapsed();
            assert!(waited >= Duration::from_millis(500), "{alpn:?}: closed after {waited:?}, before the idle timeout");
        }
        // Requests every 300 ms keep an HTTP/1.1 connection open past the timeout.
        let mut talking = connect(b"http/1.1").await;
        for _ in 0..5 {
            talking.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n").await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = talking.read(&mut buf).await.unwrap();
            assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"), "still served");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
}

/// Metric labels come from a bounded set: made-up kinds count as `other`, made-up operations too,
/// so a caller cannot add a series per request.
#[test]
fn made_up_kinds_and_operations_do_not_grow_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--engine", "native"]);
    for i in 0..12 {
        let object = json!({"apiVersion": "example.com/v1", "kind": format!("Made{i}"), "metadata": {"name": "a"}});
        let answer = validate(&server, &review(&format!("k{i}"), "CREATE", object, false));
        assert_eq!(answer["response"]["allowed"], true);
        let answer = validate(&server, &review(&format!("o{i}"), &format!("OP{i}"), service("http-web"), false));
        assert_eq!(answer["response"]["uid"], format!("o{i}"));
    }
    let page = metrics(&server);
    assert!(!page.contains("kind=\"Made") && !page.contains("operation=\"OP"), "{page}");
    assert!(page.contains("operation=\"CREATE\",kind=\"other\""), "{page}");
    assert!(page.contains("operation=\"other\",kind=\"Service\""), "{page}");
    let series = page.lines().filter(|l| l.starts_with("meshguard_admission_requests_total{")).count();
    assert!(series <= 3, "{series} series for 24 requests: {page}");
}

/// Reviews queued behind costly ones get their own full deadline (it starts when evaluation
/// does), and waiting for a slot has its own bound, answered by the failure policy.
#[test]
fn queueing_for_a_slot_does_not_count_against_the_review_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let looping = looping_guest(dir.path());
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let concurrent = |server: &Server, n: usize| -> Vec<String> {
        std::thread::scope(|s| {
            let answers: Vec<_> = (0..n)
                .map(|i| {
                    s.spawn(move || {
                        // One namespace each: a namespace gets only half the cores (below).
                        let mut body: Value =
                            serde_json::from_str(&review(&format!("q{i}"), "CREATE", service("web"), false)).unwrap();
                        body["request"]["namespace"] = json!(format!("team-{i}"));
                        body["request"]["object"]["metadata"]["namespace"] = json!(format!("team-{i}"));
                        validate(server, &body.to_string())["response"].to_string()
                    })
                })
                .collect();
            answers.into_iter().map(|a| a.join().unwrap()).collect()
        })
    };
    // Three rounds of slots: the last reviews wait two deadlines for theirs, and still run their own.
    let server = start(
        &dir.path().join("patient"),
        &["--module", looping.to_str().unwrap(), "--review-timeout-ms", "400", "--queue-timeout-ms", "10000"],
    );
    for answer in concurrent(&server, 3 * cores) {
        assert!(answer.contains("ran past its 400 ms deadline and was stopped"), "{answer}");
    }
    // With a short queue bound, what cannot get a slot in time is answered by the failure policy.
    let server = start(
        &dir.path().join("hurried"),
        &["--module", looping.to_str().unwrap(), "--review-timeout-ms", "400", "--queue-timeout-ms", "100"],
    );
    let answers = concurrent(&server, 3 * cores);
    let queued = answers.iter().filter(|a| a.contains("no review slot came free within 100ms")).count();
    let ran = answers.iter().filter(|a| a.contains("ran past its 400 ms deadline")).count();
    assert_eq!(queued + ran, 3 * cores, "{answers:?}");
    assert!(queued >= cores && ran >= cores, "{queued} queued out, {ran} ran: {answers:?}");
    assert!(metrics(&server).contains("meshguard_admission_errors_total{reason=\"queue_timeout\"}"));
}

/// A tenant sending costly reviews gets half the cores; another tenant's review still runs at once.
#[test]
fn one_namespace_cannot_take_every_review_slot() {
    let dir = tempfile::tempdir().unwrap();
    let looping = looping_guest(dir.path());
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let server = start(
        dir.path(),
        &["--module", looping.to_str().unwrap(), "--review-timeout-ms", "1500", "--queue-timeout-ms", "5000"],
    );
    std::thread::scope(|s| {
        for i in 0..2 * cores {
            let server = &server;
            s.spawn(move || validate(server, &review(&format!("hog{i}"), "CREATE", service("web"), false)));
        }
        std::thread::sleep(Duration::from_millis(300));
        let mut body: Value = serde_json::from_str(&review("other", "CREATE", service("web"), false)).unwrap();
        body["request"]["namespace"] = json!("other-team");
        body["request"]["object"]["metadata"]["namespace"] = json!("other-team");
        let started = Instant::now();
        let answer = validate(&server, &body.to_string());
        // It ran (the looping guest always runs to its deadline) rather than waiting behind the hog's queue.
        assert!(answer["response"].to_string().contains("ran past its 1500 ms deadline"), "{answer}");
        assert!(started.elapsed() < Duration::from_millis(2900), "waited for the hog: {:?}", started.elapsed());
    });
}

/// A rule set whose one CEL rule costs the cube of a Service's port count: with 2,000 ports,
/// 8 billion iterations, minutes of work for one review.
fn costly_rules(dir: &Path) -> (PathBuf, Value) {
    let rules = dir.join("costly.yaml");
    std::fs::write(
        &rules,
        r#"apiVersion: meshguard.dev/v1alpha1
kind: RuleSet
metadata: {name: costly}
spec:
  rules:
  - id: cubic
    check: cel
    match: {kinds: [{apiGroups: [""], kinds: [Service]}]}
    params:
      expression: >-
        object.spec.ports.all(p, object.spec.ports.all(q, object.spec.ports.all(r, r.port > 0)))
      message: never
"#,
    )
    .unwrap();
    let ports: Vec<Value> = (1..=2000).map(|i| json!({"name": format!("http-{i}"), "port": i})).collect();
    let object = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "big", "namespace": "shop"},
                        "spec": {"ports": ports}});
    (rules, object)
}

/// Natively nothing preempts a review, so policy-core polls for the deadline inside every CEL loop
/// and between rules: a review past its deadline stops and frees its slot. Were the work to go on
/// after the answer, the second round would find every slot still held and be queued out.
#[test]
fn a_native_review_past_its_deadline_stops_and_frees_its_slot() {
    let dir = tempfile::tempdir().unwrap();
    let (rules, object) = costly_rules(dir.path());
    let server = start(
        dir.path(),
        &[
            "--engine",
            "native",
            "--rules",
            rules.to_str().unwrap(),
            "--review-timeout-ms",
            "300",
            "--queue-timeout-ms",
            "1500",
            "--failure-policy",
            "fail",
        ],
    );
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let body = review("costly", "CREATE", object, false);
    for round in 0..2 {
        let answers: Vec<String> = std::thread::scope(|s| {
            let answers: Vec<_> =
                (0..cores).map(|_| s.spawn(|| validate(&server, &body)["response"].to_string())).collect();
            answers.into_iter().map(|a| a.join().unwrap()).collect()
        });
        for answer in answers {
            assert!(answer.contains("ran past its 300 ms deadline and was stopped"), "round {round}: {answer}");
            assert!(answer.contains("\"allowed\":false"), "fail closed: {answer}");
        }
    }
    // And the process is idle again: a second of wall time costs it next to no CPU.
    let cpu = || -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.child.id())).unwrap();
        let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
        (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
    };
    std::thread::sleep(Duration::from_millis(200));
    let before = cpu();
    std::thread::sleep(Duration::from_secs(1));
    let spent = cpu() - before;
    assert!(spent < 0.3, "{spent:.2} s of CPU in the second after the last answer");
}

/// `/mutate` over real TLS: a Deployment missing the sidecar start setting is admitted with a
/// JSON Patch; the patched object passes `/validate`, and equals what `meshguard fix` writes
/// into the same file.
#[test]
fn mutate_patches_as_fix_writes_and_the_result_validates() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        "apiVersion: meshguard.dev/v1alpha1\nkind: RuleSet\nmetadata: {name: m}\nspec:\n  rules:\n  - id: start-order\n    check: istio-sidecar-start-order\n    params: {injectedNamespaces: ['*']}\n    mutate: true\n",
    )
    .unwrap();
    let manifest = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\n  namespace: shop\n  labels: {app: api}\nspec:\n  template:\n    metadata:\n      labels: {app: api}\n    spec:\n      containers:\n      - name: api\n        image: shop/api:1.0\n";
    std::fs::write(dir.path().join("deployment.yaml"), manifest).unwrap();
    let object = manifest_object(manifest);
    let server = start(dir.path(), &["--engine", "native", "--rules", rules.to_str().unwrap()]);
    let body = |uid: &str, object: &Value| {
        let mut r: Value = serde_json::from_str(&review(uid, "CREATE", object.clone(), false)).unwrap();
        r["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
        r.to_string()
    };
    let before = validate(&server, &body("v0", &object));
    assert_eq!(before["response"]["allowed"], false, "{before}");
    let (code, text) = curl(&server, "/mutate", Some(&body("m1", &object)), &[]);
    assert_eq!(code, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    let response = &answer["response"];
    assert_eq!((response["uid"].as_str(), response["allowed"].as_bool()), (Some("m1"), Some(true)), "{answer}");
    assert_eq!(response["patchType"], "JSONPatch");
    assert!(response["warnings"][0].as_str().unwrap().starts_with("start-order: meshguard changed Deployment `api`"));
    let patch = base64::engine::general_purpose::STANDARD.decode(response["patch"].as_str().unwrap()).unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
    let mut mutated = object.clone();
    json_patch::patch(&mut mutated, &patch).unwrap();
    let after = validate(&server, &body("v1", &mutated));
    assert_eq!(after["response"]["allowed"], true, "{after}");
    // `meshguard fix` on the file writes the same object.
    let fixed = Command::new(env!("CARGO_BIN_EXE_meshguard"))
        .args(["fix", "--engine", "native", "--write", "--rules"])
        .arg(&rules)
        .arg(dir.path().join("deployment.yaml"))
        .output()
        .unwrap();
    assert!(fixed.status.success(), "{}", String::from_utf8_lossy(&fixed.stderr));
    let written = std::fs::read_to_string(dir.path().join("deployment.yaml")).unwrap();
    assert_eq!(manifest_object(&written), mutated, "{written}");
    assert!(metrics(&server).contains("meshguard_admission_mutations_total{rule=\"start-order\"} 1"));
    // Nothing to fix: admitted without a patch.
    let (_, text) = curl(&server, "/mutate", Some(&body("m2", &mutated)), &[]);
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert!(answer["response"].get("patch").is_none() && answer["response"]["allowed"] == true, "{answer}");
}

/// The object a one-document manifest holds, as JSON (read as `meshguard` reads manifests).
fn manifest_object(manifest: &str) -> Value {
    policy_core::yaml::parse_one(manifest).unwrap().value
}

#[test]
fn gatekeeper_and_kyverno_policies_decide_through_the_webhook_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/imports");
    let mut policies = Vec::new();
    for file in ["gatekeeper/k8srequiredlabels.yaml", "kyverno/require-labels.yaml"] {
        let text = std::fs::read_to_string(examples.join(file)).unwrap();
        policies.extend(policy_core::yaml::parse_documents(&text).unwrap().into_iter().map(|d| d.value));
    }
    let rules = dir.path().join("rules.json");
    let doc = json!({"apiVersion": "meshguard.dev/v1alpha1", "kind": "RuleSet", "metadata": {"name": "imported"},
                     "spec": {"rules": [], "admissionPolicies": policies}});
    std::fs::write(&rules, doc.to_string()).unwrap();
    let unowned = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "unlabelled"}});
    let owned = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "owned", "labels": {"owner": "user.agilebank.demo"}}});
    let untagged_team = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "taco", "namespace": "shop", "labels": {"taco": "is-great"}},
                               "spec": {"containers": [{"name": "a", "image": "a:1"}]}});
    let mut answers = Vec::new();
    for engine in ["native", "wasm"] {
        let server = start(&dir.path().join(engine), &["--engine", engine, "--rules", rules.to_str().unwrap()]);
        let r = validate(&server, &review("u1", "CREATE", unowned.clone(), false))["response"].clone();
        assert_eq!(r["allowed"], false, "{engine}: {r}");
        assert!(
            r["status"]["message"].as_str().unwrap().contains("missing required label, requires all of: owner"),
            "{r}"
        );
        let r = validate(&server, &review("u2", "CREATE", owned.clone(), false))["response"].clone();
        assert_eq!(r["allowed"], true, "{engine}: {r}");
        // Kyverno's require-labels denies a Pod without `team`; Gatekeeper's must-have-pizza only warns.
        let r = validate(&server, &review("u3", "CREATE", untagged_team.clone(), false))["response"].clone();
        assert_eq!(r["allowed"], false, "{engine}: {r}");
        assert!(r["status"]["message"].as_str().unwrap().contains("label 'team' is required"), "{r}");
        assert!(r["warnings"].to_string().contains("requires all of: pizza"), "{engine}: {r}");
        answers.push(r);
    }
    assert_eq!(answers[0], answers[1], "both engines answer alike");
}
