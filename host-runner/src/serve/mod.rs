//! `meshguard serve`: a validating admission webhook over HTTPS, deciding with the same engine as
//! `meshguard check` (the Kubewarden module in the wasmtime host, or policy-core natively).
//!
//! Operations: certificates and the rule set are re-read when their files change (and the rule
//! set on SIGHUP) without dropping a connection; a rule set that does not load leaves the last
//! good one serving. `/healthz`, `/readyz`, Prometheus metrics on a separate plain-HTTP port,
//! JSON logs on stderr, a body-size limit, read and review deadlines, and on SIGTERM: unready
//! first, then in-flight requests finish, then exit.

pub mod cluster;
mod idle;
pub mod metrics;
pub mod review;
mod slots;
pub mod tls;

use crate::engine::{self, Reviewer};
use crate::wasm::WapcModule;
use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use policy_core::admission::kubewarden::ValidationResponse;
use policy_core::{Action, AdmissionResponse};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// Everything `serve` is told on its command line.
pub struct Options {
    pub rules: Option<PathBuf>,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    /// `None`: decide natively.
    pub module: Option<Arc<WapcModule>>,
    /// What the webhook knows of the cluster (`--cluster`); the wasm module, when used, was given
    /// the same view through its host calls.
    pub cluster: Option<Arc<cluster::ClusterSnapshot>>,
    pub fail_closed: bool,
    pub review_timeout: Duration,
    /// How long a review may wait for a free slot (one per core) before it is answered by the
    /// failure policy.
    pub queue_timeout: Duration,
    pub read_timeout: Duration,
    /// A connection with no byte in either direction for this long is closed.
    pub idle_timeout: Duration,
    pub max_body_bytes: usize,
    pub poll: Duration,
    /// How long `/readyz` reports unready before the listener closes, on SIGTERM.
    pub shutdown_delay: Duration,
}

/// One JSON log line on stderr.
pub fn log(level: &str, msg: &str, fields: Value) {
    let ts = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    let mut line = json!({"ts": ts, "level": level, "msg": msg});
    if let (Some(line), Value::Object(fields)) = (line.as_object_mut(), fields) {
        line.extend(fields);
    }
    eprintln!("{line}");
}

/// The rule set in force, swapped whole on reload.
struct Rules {
    reviewer: Reviewer,
    source: String,
    /// What the rule set can flag: other kinds are allowed without asking the engine.
    coverage: policy_core::Coverage,
    /// The RuleSet document as the wasm module's `settings` (`null`: its built-in one).
    settings_json: String,
    cluster: Option<Arc<cluster::ClusterSnapshot>>,
}

struct App {
    opts: Options,
    review_slots: slots::ReviewSlots,
    rules: RwLock<Arc<Rules>>,
    metrics: metrics::Metrics,
    ready: AtomicBool,
    cert: Arc<tls::LiveCert>,
}

fn load_rules(opts: &Options) -> Result<Rules> {
    let (policy, doc) = engine::load_policy(opts.rules.as_deref())?;
    let coverage = policy.coverage();
    let settings_json = serde_json::to_string(&doc)?;
    let reviewer = match &opts.module {
        Some(module) => Reviewer::Wasm { module: module.clone(), rules: doc, policy },
        None => Reviewer::Native(policy),
    };
    let source = opts.rules.as_ref().map_or("built-in".to_string(), |p| p.display().to_string());
    Ok(Rules { reviewer, source, coverage, settings_json, cluster: opts.cluster.clone() })
}

/// Runs native policy-core work that stops at `timeout` from now: policy-core polls for the
/// deadline (`interrupt`), so no evaluation outlives its answer by more than a few microseconds.
fn natively_within<R>(timeout: Duration, work: impl FnOnce() -> R) -> Result<R> {
    let deadline = std::time::Instant::now() + timeout;
    policy_core::interrupt::run(move || std::time::Instant::now() >= deadline, work)
        .map_err(|_| anyhow!("the review ran past its {} ms deadline and was stopped", timeout.as_millis()))
}

/// The mutating review of one request within `timeout`: the patch of the rules set to mutate.
/// policy-core computes it natively in both engines (the Kubewarden module computes the same object):
/// the same patches `meshguard fix` writes.
fn mutate(rules: &Rules, request: &Value, uid: &str, timeout: Duration) -> Result<AdmissionResponse> {
    let policy = rules.reviewer.policy();
    let mutation = natively_within(timeout, || match &rules.cluster {
        Some(c) => policy.mutate_admission_from(request, &mut c.source()),
        None => policy.mutate_admission_in(request, policy_core::admission::ClusterView::NONE),
    })?;
    Ok(mutation.response(Value::String(uid.to_string())))
}

/// Decides one AdmissionRequest (`uid`) with the rule set in force, within `timeout` of starting:
/// then its answer stops being wanted. The wasm engine's epoch deadline stops the guest then.
fn decide(rules: &Rules, request: &Value, uid: &str, timeout: Duration) -> Result<AdmissionResponse> {
    let uid = Value::String(uid.to_string());
    match &rules.reviewer {
        Reviewer::Native(policy) => {
            let verdict = natively_within(timeout, || match &rules.cluster {
                Some(c) => policy.review_admission_from(request, &mut c.source()),
                None => policy.review_admission(request),
            })?;
            Ok(verdict.response(uid))
        }
        Reviewer::Wasm { module, .. } => {
            // The rule set was serialized once when it loaded; only the request is, per request.
            let payload =
                format!(r#"{{"request":{},"settings":{}}}"#, serde_json::to_string(request)?, rules.settings_json);
            let answer = module.call("validate", payload.as_bytes())?;
            let answer: ValidationResponse =
                serde_json::from_slice(&answer).context("the wasm module's answer is not a ValidationResponse")?;
            Ok(answer.into_response(uid))
        }
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain"));
    r
}

fn json_response(value: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())));
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    r
}

async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let closing = !app.ready.load(Ordering::SeqCst) && req.version() == hyper::Version::HTTP_11;
    let mut response = route(&app, req).await;
    if closing {
        // Shutting down: each HTTP/1.1 client learns it with an answer, and reconnects (to another
        // pod) instead of sending its next request down a connection about to close.
        response.headers_mut().insert(hyper::header::CONNECTION, hyper::header::HeaderValue::from_static("close"));
    }
    Ok(response)
}

async fn route(app: &Arc<App>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/validate") => admit(app, req, Review::Validating).await,
        (&Method::POST, "/mutate") => admit(app, req, Review::Mutating).await,
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") if app.ready.load(Ordering::SeqCst) => text(StatusCode::OK, "ready\n"),
        (&Method::GET, "/readyz") => text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"),
        _ => {
            text(StatusCode::NOT_FOUND, "meshguard serves POST /validate, POST /mutate, GET /healthz and GET /readyz\n")
        }
    }
}

/// Which review a request asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Review {
    /// `/validate`: allowed or denied, with warnings.
    Validating,
    /// `/mutate`: admitted with the patch of the rules set to mutate (`mutate: true`).
    Mutating,
}

async fn admit(app: &Arc<App>, req: Request<Incoming>, kind: Review) -> Response<Full<Bytes>> {
    let max = app.opts.max_body_bytes;
    let declared =
        req.headers().get(hyper::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        app.metrics.error("body_too_large");
        return text(StatusCode::PAYLOAD_TOO_LARGE, &format!("the body is over the {max}-byte limit\n"));
    }
    let body = match tokio::time::timeout(app.opts.read_timeout, Limited::new(req.into_body(), max).collect()).await {
        Err(_) => {
            app.metrics.error("read_timeout");
            return text(StatusCode::REQUEST_TIMEOUT, "the body did not arrive in time\n");
        }
        Ok(Err(e)) => {
            let too_large = e.downcast_ref::<http_body_util::LengthLimitError>().is_some();
            app.metrics.error(if too_large { "body_too_large" } else { "read_error" });
            return if too_large {
                text(StatusCode::PAYLOAD_TOO_LARGE, &format!("the body is over the {max}-byte limit\n"))
            } else {
                text(StatusCode::BAD_REQUEST, &format!("reading the body: {e}\n"))
            };
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    let started = Instant::now();
    let rules = app.rules.read().map(|r| r.clone()).map_err(|_| anyhow!("rule set lock poisoned"));
    // Decoded for the rule set in force: what none of its rules reads is skipped, not built.
    // A mutating review reads the whole object: its patch must be computed against all of it.
    let decode = |bytes: &[u8]| match &rules {
        Ok(r) if kind == Review::Validating => r.reviewer.policy().parse_admission(bytes),
        _ => policy_core::decode::json_value_from_slice(bytes),
    };
    let (review, asked) = match review::parse(&body, &decode) {
        Ok(parsed) => parsed,
        Err(review::BadReview::NotJson(e)) => {
            app.metrics.error("not_json");
            return text(StatusCode::BAD_REQUEST, &format!("the body is not JSON: {e}\n"));
        }
        Err(review::BadReview::Invalid { uid, message }) => {
            app.metrics.error("invalid_review");
            return json_response(&review::answer(AdmissionResponse::refuse(Value::String(uid), 400, message)));
        }
    };
    // What policy-core allows without looking (DELETE, CONNECT, a kind no rule can flag) is
    // answered without the engine.
    let uncovered = rules.as_ref().is_ok_and(|r| !r.coverage.covers(&asked.group, &asked.kind));
    // Metric labels come from a bounded set, never from the request as sent: a caller inventing
    // kinds or operations must not grow the metrics page by a series each.
    let kind_label = match &rules {
        Ok(r) if r.coverage.kinds.contains(asked.kind.as_str()) => asked.kind.as_str(),
        _ if policy_core::object::api_version_of_kind(&asked.kind).is_some() => asked.kind.as_str(),
        _ => "other",
    };
    let operation_label = match asked.operation.as_str() {
        op @ ("CREATE" | "UPDATE" | "DELETE" | "CONNECT") => op,
        _ => "other",
    };
    // The operation as policy-core reads it (a missing one is a CREATE), not as sent.
    let operation = policy_core::admission::admission_request(&review["request"]).operation;
    let decided = if uncovered || !policy_core::admission::reviews_operation(operation) {
        Ok(AdmissionResponse::allow(Value::String(asked.uid.clone())))
    } else {
        // One review per core at a time, half the cores at most for one namespace (`slots`).
        // Waiting for a slot has its own bound; the review deadline starts when evaluation does,
        // so a small review queued behind costly ones is not failed for their time.
        let queue_timeout = app.opts.queue_timeout;
        let namespace = review["request"]["namespace"].as_str().unwrap_or_default().to_string();
        match tokio::time::timeout(queue_timeout, app.review_slots.acquire(&namespace)).await {
            Err(_) => {
                app.metrics.error("queue_timeout");
                Err(anyhow!("no review slot came free within {queue_timeout:?}: every core, or this namespace's share of them, is busy with other reviews"))
            }
            Ok(Err(e)) => Err(anyhow!("{e}")),
            Ok(Ok(slot)) => {
                let uid = asked.uid.clone();
                // The slot goes with the evaluation: should one outlive its answer (work between two
                // polls), it still holds the slot, so the bound on concurrent evaluations holds.
                let timeout = app.opts.review_timeout;
                let work = tokio::task::spawn_blocking(move || {
                    let _slot = slot;
                    match kind {
                        Review::Validating => decide(&*rules?, &review["request"], &uid, timeout),
                        Review::Mutating => mutate(&*rules?, &review["request"], &uid, timeout),
                    }
                });
                // Both engines stop at the deadline and say so (epoch interruption in wasm, polls
                // natively); this margin catches work that reaches no poll in time.
                match tokio::time::timeout(app.opts.review_timeout + Duration::from_millis(250), work).await {
                    Err(_) => Err(anyhow!("the review took longer than {:?}", app.opts.review_timeout)),
                    Ok(Ok(decided)) => decided,
                    Ok(Err(e)) => Err(anyhow!("the review failed: {e}")),
                }
            }
        }
    };
    let response = decided.unwrap_or_else(|e| {
        app.metrics.error("evaluation");
        log("error", "review failed", json!({"uid": asked.uid, "error": format!("{e:#}")}));
        AdmissionResponse::unevaluated(Value::String(asked.uid.clone()), app.opts.fail_closed, &format!("{e:#}"))
    });
    let seconds = started.elapsed().as_secs_f64();
    let fired: Vec<&str> = response.rule_ids(Action::Deny).chain(response.rule_ids(Action::Warn)).collect();
    let verdict = match (kind, response.allowed) {
        (Review::Mutating, _) if response.patch.is_some() => "mutate",
        (_, true) => "allow",
        (_, false) => "deny",
    };
    app.metrics.request(verdict, operation_label, kind_label, &fired, seconds);
    if let Some(mutated) = response.audit_annotations.get(policy_core::admission::MUTATED_ANNOTATION) {
        for rule in mutated.split(',') {
            app.metrics.mutation(rule);
        }
    }
    if !asked.dry_run {
        for rule in response.rule_ids(Action::Audit) {
            app.metrics.audit(rule);
            log(
                "info",
                "audit finding",
                json!({"uid": asked.uid, "rule": rule, "kind": asked.kind, "operation": asked.operation}),
            );
        }
    }
    json_response(&review::answer(response))
}

/// A file's identity for change detection: modification time and length.
fn stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl App {
    fn reload_rules(&self, why: &str) {
        match load_rules(&self.opts) {
            Ok(next) => {
                let source = next.source.clone();
                if let Ok(mut rules) = self.rules.write() {
                    *rules = Arc::new(next);
                }
                self.metrics.reload("rules", true);
                log("info", "rule set reloaded", json!({"source": source, "trigger": why}));
            }
            Err(e) => {
                self.metrics.reload("rules", false);
                log(
                    "error",
                    "rule set rejected; the last good one keeps serving",
                    json!({"trigger": why, "error": format!("{e:#}")}),
                );
            }
        }
    }

    fn reload_cert(&self) {
        match tls::load(&self.opts.cert, &self.opts.key) {
            Ok(next) => {
                self.cert.replace(next);
                self.metrics.reload("certificate", true);
                log("info", "certificate reloaded", json!({"cert": self.opts.cert.display().to_string()}));
            }
            Err(e) => {
                self.metrics.reload("certificate", false);
                log(
                    "error",
                    "certificate rejected; the last good one keeps serving",
                    json!({"error": format!("{e:#}")}),
                );
            }
        }
    }
}

/// Watches the rule set and certificate files (and SIGHUP) until shutdown. Files are read on the
/// blocking pool, never on a runtime worker, whatever is put in their place.
async fn watch(app: Arc<App>, mut hup: tokio::signal::unix::Signal, mut stop: tokio::sync::watch::Receiver<bool>) {
    let rules_stamp = |app: &App| app.opts.rules.as_deref().and_then(stamp);
    let cert_stamp = |app: &App| (stamp(&app.opts.cert), stamp(&app.opts.key));
    let (mut rules_seen, mut cert_seen) = (rules_stamp(&app), cert_stamp(&app));
    let off_runtime = |app: &Arc<App>, reload: fn(&App)| {
        let app = app.clone();
        tokio::task::spawn_blocking(move || reload(&app))
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                rules_seen = rules_stamp(&app);
                let _ = off_runtime(&app, |app| app.reload_rules("SIGHUP")).await;
            }
            _ = tokio::time::sleep(app.opts.poll) => {
                let now = rules_stamp(&app);
                if now != rules_seen {
                    rules_seen = now;
                    let _ = off_runtime(&app, |app| app.reload_rules("file change")).await;
                }
                let now = cert_stamp(&app);
                if now != cert_seen {
                    cert_seen = now;
                    let _ = off_runtime(&app, App::reload_cert).await;
                }
            }
            _ = stop.changed() => return,
        }
    }
}

async fn serve_metrics(app: Arc<App>, listener: tokio::net::TcpListener, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        let conn = tokio::select! {
            c = listener.accept() => c,
            _ = stop.changed() => return,
        };
        let Ok((tcp, _)) = conn else { continue };
        let app = app.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let app = app.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(match (req.method(), req.uri().path()) {
                        (&Method::GET, "/metrics") => text(StatusCode::OK, &app.metrics.render()),
                        _ => text(StatusCode::NOT_FOUND, "GET /metrics\n"),
                    })
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

/// Runs the webhook until SIGTERM or SIGINT. `Err` for what stops it from starting (an invalid
/// rule set is a [`engine::RulesError`], exit 2).
pub fn run(opts: Options) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("tokio runtime")?;
    runtime.block_on(run_async(opts))
}

async fn run_async(opts: Options) -> Result<()> {
    let first_rules = load_rules(&opts)?;
    let cert = Arc::new(tls::LiveCert::new(tls::load(&opts.cert, &opts.key)?));
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls::server_config(cert.clone())?));
    let listener =
        tokio::net::TcpListener::bind(opts.addr).await.with_context(|| format!("listening on {}", opts.addr))?;
    let metrics_listener = tokio::net::TcpListener::bind(opts.metrics_addr)
        .await
        .with_context(|| format!("listening on {} for metrics", opts.metrics_addr))?;
    // Handlers before anything says "serving": from then on SIGTERM is a graceful shutdown and
    // SIGHUP a reload, never the default action (exit).
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let app = Arc::new(App {
        review_slots: slots::ReviewSlots::new(cores),
        rules: RwLock::new(Arc::new(first_rules)),
        metrics: metrics::Metrics::default(),
        ready: AtomicBool::new(true),
        cert,
        opts,
    });
    log(
        "info",
        "serving",
        json!({
            "addr": listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            "metrics": metrics_listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            "engine": if app.opts.module.is_some() { "wasm" } else { "native" },
            "rules": app.rules.read().map(|r| r.source.clone()).unwrap_or_default(),
            "cluster_objects": app.opts.cluster.as_ref().map(|c| c.len()),
        }),
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(watch(app.clone(), hup, stop_rx.clone()));
    tokio::spawn(serve_metrics(app.clone(), metrics_listener, stop_rx.clone()));

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // Every connection task, handshakes included, so shutdown waits for those not yet watched.
    let mut connections = tokio::task::JoinSet::new();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(app.opts.read_timeout);
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(256);
    let builder = Arc::new(builder);
    // On SIGTERM: unready first, so endpoints drop this pod while it still answers for
    // `shutdown_delay`; then stop accepting and let in-flight requests finish.
    let mut stop_accepting: Option<tokio::time::Instant> = None;
    loop {
        let until = stop_accepting.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400 * 365));
        let (tcp, peer) = tokio::select! {
            conn = listener.accept() => match conn {
                Ok(c) => c,
                Err(e) => {
                    log("error", "accept failed", json!({"error": e.to_string()}));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = term.recv(), if stop_accepting.is_none() => {
                app.ready.store(false, Ordering::SeqCst);
                log("info", "SIGTERM: unready, still serving until the shutdown delay ends", json!({}));
                stop_accepting = Some(tokio::time::Instant::now() + app.opts.shutdown_delay);
                continue;
            }
            _ = int.recv() => break,
            _ = tokio::time::sleep_until(until), if stop_accepting.is_some() => break,
        };
        let (acceptor, app, builder, watcher) = (acceptor.clone(), app.clone(), builder.clone(), graceful.watcher());
        // Reap finished connections so the set holds only live ones.
        while connections.try_join_next().is_some() {}
        connections.spawn(async move {
            let tcp = idle::IdleTimeout::new(tcp, app.opts.idle_timeout);
            let tls = match tokio::time::timeout(app.opts.read_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    log("warn", "TLS handshake failed", json!({"peer": peer.to_string(), "error": e.to_string()}));
                    return;
                }
                Err(_) => return,
            };
            // Accepted while shutting down: its client has sent or is sending a request, so it is
            // answered (with `Connection: close`) rather than closed by the graceful shutdown
            // before it is read; shutdown waits for it through `connections`.
            let closing = !app.ready.load(Ordering::SeqCst);
            let service = hyper::service::service_fn(move |req| handle(app.clone(), req));
            let conn = builder.serve_connection(TokioIo::new(tls), service).into_owned();
            if closing {
                let _ = conn.await;
            } else {
                let _ = watcher.watch(conn).await;
            }
        });
    }
    app.ready.store(false, Ordering::SeqCst);
    log("info", "shutting down: no new connections, finishing in-flight requests", json!({}));
    drop(listener);
    let drained = async {
        graceful.shutdown().await;
        while connections.join_next().await.is_some() {}
    };
    let _ = tokio::time::timeout(Duration::from_secs(30), drained).await;
    let _ = stop_tx.send(true);
    log("info", "stopped", json!({}));
    Ok(())
}
