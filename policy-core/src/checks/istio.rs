//! The Istio guardrail pack: the tenant mistakes that cause mesh incidents.

use super::{parse_params, Applies, CheckSpec, Compiled, ObjectCheck, ParamDoc, ParamError, Target};
use crate::finding::Violation;
use crate::matching::any_glob;
use crate::object::{map_str, Input, Object, PodTemplate};
use crate::path::FieldPath;
use serde::Deserialize;
use serde_json::Value;

const INJECT_KEY: &str = "sidecar.istio.io/inject";
const PROXY_CONFIG_KEY: &str = "proxy.istio.io/config";

fn default_protocols() -> Vec<String> {
    ["http", "http2", "https", "grpc", "grpc-web", "tcp", "tls", "udp", "mongo", "mysql", "redis"]
        .map(String::from)
        .to_vec()
}

fn http_protocols() -> Vec<String> {
    ["http", "http2", "grpc", "grpc-web"].map(String::from).to_vec()
}

fn istio_system() -> Vec<String> {
    vec!["istio-system".to_string()]
}

fn yes() -> bool {
    true
}

/// The protocol a port name declares: the longest known protocol `p` with name `p` or `p-<suffix>`.
fn protocol_of_name<'p>(name: &str, protocols: &'p [String]) -> Option<&'p str> {
    // `name`, ASCII-lowercased, equals `p` or starts with `p-`; compared in place, since every
    // Service port of every review passes through here.
    let name = name.as_bytes();
    let names = |p: &String| {
        let p = p.as_bytes();
        name.len() >= p.len()
            && name.iter().zip(p).all(|(n, p)| n.to_ascii_lowercase() == *p)
            && (name.len() == p.len() || name[p.len()] == b'-')
    };
    protocols.iter().filter(|p| names(p)).max_by_key(|p| p.len()).map(String::as_str)
}

/// The protocol Istio infers for a Service port: `appProtocol` first, then the name prefix.
fn port_protocol(port: &Value, protocols: &[String]) -> Option<String> {
    if let Some(app) = port.get("appProtocol").and_then(Value::as_str) {
        return Some(app.to_ascii_lowercase());
    }
    let name = port.get("name").and_then(Value::as_str)?;
    protocol_of_name(name, protocols).map(str::to_string)
}

fn suggest_protocol(port: &Value) -> &'static str {
    let number = port.get("targetPort").and_then(Value::as_u64).or_else(|| port.get("port").and_then(Value::as_u64));
    match number {
        Some(80 | 8000 | 8080 | 3000 | 5000 | 9090) => "http",
        Some(443 | 8443) => "https",
        Some(50051) => "grpc",
        Some(3306) => "mysql",
        Some(6379) => "redis",
        Some(27017) => "mongo",
        _ => "tcp",
    }
}

/// A Service's ports with their indexes ([`service_port_path`]).
fn service_ports<'a>(obj: &Object<'a>) -> impl Iterator<Item = (usize, &'a Value)> {
    obj.spec().and_then(|s| s.get("ports")).and_then(Value::as_array).into_iter().flatten().enumerate()
}

fn service_port_path(index: usize) -> FieldPath {
    FieldPath::root().key("spec").key("ports").index(index)
}

fn is_core(obj: &Object<'_>, kind: &str) -> bool {
    obj.kind == kind && obj.group.is_empty()
}

fn is_istio(obj: &Object<'_>, kinds: &[&str]) -> bool {
    kinds.contains(&obj.kind) && obj.group.ends_with("istio.io")
}

fn port_label(port: &Value) -> String {
    match (port.get("name").and_then(Value::as_str), port.get("port")) {
        (Some(name), Some(n)) => format!("port {n} (`{name}`)"),
        (None, Some(n)) => format!("port {n}"),
        (Some(name), None) => format!("port `{name}`"),
        (None, None) => "port".to_string(),
    }
}

// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PortNameParams {
    #[serde(default = "default_protocols")]
    protocols: Vec<String>,
}

struct PortName {
    protocols: Vec<String>,
}

pub static PORT_NAME: CheckSpec = CheckSpec {
    id: "istio-port-name",
    target: Target::Kubernetes,
    applies_to: Applies::Kinds(&["Service"]),
    summary: super::doc("Every Service port declares its protocol: `appProtocol`, or a name `<protocol>` / `<protocol>-<suffix>`. \
              Without it Istio treats the traffic as opaque TCP and HTTP routing, retries and metrics silently stop working. \
              A name prefix that contradicts `appProtocol` is a warning."),
    params: &[ParamDoc {
        name: "protocols",
        ty: "list of strings",
        default: "[http, http2, https, grpc, grpc-web, tcp, tls, udp, mongo, mysql, redis]",
        description: super::doc("Protocols a port name prefix or `appProtocol` may name."),
    }],
    example_params: super::doc("{}"),
    passing_example: super::doc("\
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec:
  ports:
  - {name: http-web, port: 8080}
  - {name: metrics, appProtocol: http, port: 9090}
"),
    failing_example: super::doc("\
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec:
  ports:
  - {name: web, port: 8080}
"),
    compile: |params| {
        let p: PortNameParams = parse_params(params)?;
        if p.protocols.is_empty() {
            return Err(ParamError::new("protocols", "must list at least one protocol"));
        }
        Ok(Compiled::Object(Box::new(PortName { protocols: p.protocols.iter().map(|s| s.to_ascii_lowercase()).collect() })))
    },
};

impl ObjectCheck for PortName {
    fn review(&self, obj: &Object<'_>, _: &Input<'_>, out: &mut Vec<Violation>) {
        if !is_core(obj, "Service") {
            return;
        }
        let known = || self.protocols.join(", ");
        for (index, port) in service_ports(obj) {
            let path = || service_port_path(index);
            let name = port.get("name").and_then(Value::as_str);
            let name_protocol = name.and_then(|n| protocol_of_name(n, &self.protocols));
            if let Some(app) = port.get("appProtocol").and_then(Value::as_str) {
                let app_lc = app.to_ascii_lowercase();
                if !self.protocols.contains(&app_lc) {
                    out.push(Violation::new(
                        path().key("appProtocol"),
                        format!("{}: appProtocol `{app}` is not a known protocol ({})", port_label(port), known()),
                    ));
                } else if let (Some(n), Some(np)) = (name, name_protocol) {
                    if np != app_lc {
                        out.push(Violation::advisory(
                            path().key("name"),
                            format!(
                                "{}: the name says `{np}` but appProtocol says `{app}`; Istio uses appProtocol, rename the port to `{app_lc}-{}`",
                                port_label(port),
                                n.split_once('-').map_or(n, |(_, s)| s)
                            ),
                        ));
                    }
                }
                continue;
            }
            match name {
                None => {
                    let guess = suggest_protocol(port);
                    out.push(Violation::new(
                        path(),
                        format!(
                            "{} has no name and no appProtocol; Istio will treat it as opaque TCP. Name it `{guess}` or `{guess}-<suffix>`, or set appProtocol",
                            port_label(port)
                        ),
                    ));
                }
                Some(n) if name_protocol.is_none() => {
                    let guess = suggest_protocol(port);
                    out.push(Violation::new(
                        path().key("name"),
                        format!(
                            "{}: name `{n}` does not start with a protocol ({}); rename it to `{guess}-{n}` or set appProtocol",
                            port_label(port),
                            known()
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------

struct HeadlessPortConflict {
    protocols: Vec<String>,
}

pub static HEADLESS_PORT_CONFLICT: CheckSpec = CheckSpec {
    id: "istio-headless-port-conflict",
    target: Target::Kubernetes,
    applies_to: Applies::Kinds(&["Service"]),
    summary: super::doc(
        "Headless Services (`clusterIP: None`) in one namespace do not use one port number with different protocols: \
              Istio builds listeners per pod IP and port for them, so the second protocol breaks the first. \
              Compares every headless Service in the input (one object alone at admission).",
    ),
    params: &[ParamDoc {
        name: "protocols",
        ty: "list of strings",
        default: "[http, http2, https, grpc, grpc-web, tcp, tls, udp, mongo, mysql, redis]",
        description: super::doc("Protocols recognised in port names; a port without one counts as `tcp`."),
    }],
    example_params: super::doc("{}"),
    passing_example: super::doc(
        "\
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  clusterIP: None
  ports: [{name: tcp-db, port: 5432}]
---
apiVersion: v1
kind: Service
metadata: {name: db-admin, namespace: shop}
spec:
  clusterIP: None
  ports: [{name: http-admin, port: 8080}]
",
    ),
    failing_example: super::doc(
        "\
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  clusterIP: None
  ports: [{name: tcp-db, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: db-admin, namespace: shop}
spec:
  clusterIP: None
  ports: [{name: http-admin, port: 8080}]
",
    ),
    compile: |params| {
        let p: PortNameParams = parse_params(params)?;
        Ok(Compiled::Object(Box::new(HeadlessPortConflict { protocols: p.protocols })))
    },
};

fn is_headless(obj: &Object<'_>) -> bool {
    is_core(obj, "Service") && obj.spec().and_then(|s| s.get("clusterIP")).and_then(Value::as_str) == Some("None")
}

impl HeadlessPortConflict {
    /// (port number, Istio protocol) of each TCP port; UDP is not captured by the sidecar.
    fn ports<'a>(&self, obj: &Object<'a>) -> Vec<(usize, u64, String, &'a Value)> {
        service_ports(obj)
            .filter(|(_, p)| p.get("protocol").and_then(Value::as_str).unwrap_or("TCP") == "TCP")
            .filter_map(|(path, p)| {
                let n = p.get("port").and_then(Value::as_u64)?;
                Some((path, n, port_protocol(p, &self.protocols).unwrap_or_else(|| "tcp".into()), p))
            })
            .collect()
    }
}

impl ObjectCheck for HeadlessPortConflict {
    fn reads_context(&self, obj: &Object<'_>) -> bool {
        is_headless(obj)
    }

    fn context_kinds(&self) -> Vec<String> {
        vec!["Service".into()]
    }

    fn review(&self, obj: &Object<'_>, input: &Input<'_>, out: &mut Vec<Violation>) {
        if !is_headless(obj) {
            return;
        }
        let mine = self.ports(obj);
        for (i, (index, number, protocol, port)) in mine.iter().enumerate() {
            let same_service = mine
                .iter()
                .enumerate()
                .find(|(j, (_, n, p, _))| *j != i && n == number && p != protocol)
                .map(|(_, (_, _, p, _))| format!("this Service also declares it as `{p}`"));
            let other_service = || {
                input.peers(obj, "Service").filter(|o| is_headless(o)).find_map(|o| {
                    self.ports(o)
                        .into_iter()
                        .find(|(_, n, p, _)| n == number && p != protocol)
                        .map(|(_, _, p, _)| format!("headless Service `{}` declares it as `{p}`", o.name))
                })
            };
            if let Some(other) = same_service.or_else(other_service) {
                out.push(Violation::new(
                    service_port_path(*index),
                    format!(
                        "{} is `{protocol}` but {other}; headless Services sharing a port number must share its protocol",
                        port_label(port)
                    ),
                ));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// Whether Istio will inject a sidecar into pods of this template, from the pod's own opt-in or
/// opt-out, its namespace's labels, or a list of namespaces known to be injected.
fn gets_sidecar(obj: &Object<'_>, tmpl: &PodTemplate<'_>, input: &Input<'_>, injected_namespaces: &[String]) -> bool {
    let pod_says = map_str(tmpl.labels(), INJECT_KEY).or_else(|| map_str(tmpl.annotations(), INJECT_KEY));
    if let Some(v) = pod_says {
        return v == "true";
    }
    if any_glob(injected_namespaces, obj.namespace) {
        return true;
    }
    input.labels_of_namespace(obj).is_some_and(|labels| {
        map_str(labels, "istio-injection").as_deref() == Some("enabled") || labels.contains_key("istio.io/rev")
    })
}

/// The pod's `proxy.istio.io/config` annotation (YAML or JSON), as text.
fn proxy_config<'a>(tmpl: &PodTemplate<'a>) -> Option<&'a str> {
    tmpl.annotations().get(PROXY_CONFIG_KEY)?.as_str()
}

/// Finds `key: <value>` in the pod's `proxy.istio.io/config` annotation.
fn proxy_config_setting<'a>(tmpl: &PodTemplate<'a>, key: &str) -> Option<&'a str> {
    let text = proxy_config(tmpl)?;
    let at = find_word(text, key)?;
    let rest = text[at + key.len()..].trim_start_matches(['"', '\'']).trim_start();
    let rest = rest.strip_prefix(':')?.trim_start();
    let end = rest.find([',', '}', '\n']).unwrap_or(rest.len());
    Some(rest[..end].trim().trim_matches(['"', '\'']))
}

/// Where `word` first occurs in `text`. The words are fixed setting names of a few dozen bytes, so
/// a scan that compares at most `word.len()` bytes per position stays linear in the annotation,
/// hostile or not; it skips the two-way searcher `str::find` builds on every call, which costs
/// more than the whole scan of an annotation a few lines long.
fn find_word(text: &str, word: &str) -> Option<usize> {
    let (text, word) = (text.as_bytes(), word.as_bytes());
    let first = *word.first()?;
    (0..text.len().checked_sub(word.len())? + 1).find(|&at| text[at] == first && text[at..].starts_with(word))
}

fn strings_of(v: Option<&Value>) -> String {
    match v {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" "),
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StartOrderParams {
    #[serde(default)]
    injected_namespaces: Vec<String>,
    #[serde(default)]
    mesh_holds_application: bool,
}

struct SidecarStartOrder {
    p: StartOrderParams,
}

pub static SIDECAR_START_ORDER: CheckSpec = CheckSpec {
    id: "istio-sidecar-start-order",
    target: Target::Kubernetes,
    applies_to: Applies::Kinds(crate::object::POD_TEMPLATE_KINDS),
    summary: super::doc(
        "Pods that get an Istio sidecar wait for the proxy before the app starts: `proxy.istio.io/config` sets \
              `holdApplicationUntilProxyStarts: true`, or a container polls `localhost:15020/healthz/ready`. \
              Otherwise the app's first outbound calls fail while Envoy is still starting. A pod gets a sidecar when \
              it opts in (`sidecar.istio.io/inject`), its Namespace in the input is labelled `istio-injection=enabled` \
              or `istio.io/rev`, or its namespace is in `injectedNamespaces`.",
    ),
    params: &[
        ParamDoc {
            name: "injectedNamespaces",
            ty: "list of globs",
            default: "[]",
            description: super::doc(
                "Namespaces known to have injection on (when their Namespace objects are not in the input).",
            ),
        },
        ParamDoc {
            name: "meshHoldsApplication",
            ty: "bool",
            default: "false",
            description:
                "The mesh config already sets holdApplicationUntilProxyStarts; only an explicit `false` fails.",
        },
    ],
    example_params: super::doc("{injectedNamespaces: [shop]}"),
    passing_example: super::doc(
        "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  template:
    metadata:
      annotations:
        proxy.istio.io/config: '{ \"holdApplicationUntilProxyStarts\": true }'
    spec:
      containers: [{name: api, image: shop/api:1.0}]
",
    ),
    failing_example: super::doc(
        "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  template:
    spec:
      containers: [{name: api, image: shop/api:1.0}]
",
    ),
    compile: |params| Ok(Compiled::Object(Box::new(SidecarStartOrder { p: parse_params(params)? }))),
};

const HOLD_KEY: &str = "holdApplicationUntilProxyStarts";

impl SidecarStartOrder {
    /// Whether the app waits for the proxy whatever the namespace says: then the Namespace object
    /// cannot change the outcome, and an admission host need not fetch it.
    /// `hold`: the pod's `holdApplicationUntilProxyStarts`, when it sets one.
    fn holds_application(&self, hold: Option<&str>) -> bool {
        hold.map_or(self.p.mesh_holds_application, |hold| hold == "true")
    }
}

impl ObjectCheck for SidecarStartOrder {
    fn reads_context(&self, obj: &Object<'_>) -> bool {
        obj.pod_template().is_some_and(|tmpl| {
            let pod_says = map_str(tmpl.labels(), INJECT_KEY).or_else(|| map_str(tmpl.annotations(), INJECT_KEY));
            pod_says.is_none()
                && !any_glob(&self.p.injected_namespaces, obj.namespace)
                && !self.holds_application(proxy_config_setting(&tmpl, HOLD_KEY))
        })
    }

    fn context_kinds(&self) -> Vec<String> {
        vec!["Namespace".into()]
    }

    fn review(&self, obj: &Object<'_>, input: &Input<'_>, out: &mut Vec<Violation>) {
        let Some(tmpl) = obj.pod_template() else {
            return;
        };
        let hold = proxy_config_setting(&tmpl, HOLD_KEY);
        if self.holds_application(hold) || !gets_sidecar(obj, &tmpl, input, &self.p.injected_namespaces) {
            return;
        }
        let polls = tmpl.containers().any(|(_, c)| {
            let text = [
                strings_of(c.get("command")),
                strings_of(c.get("args")),
                strings_of(
                    c.get("lifecycle")
                        .and_then(|l| l.get("postStart"))
                        .and_then(|p| p.get("exec"))
                        .and_then(|e| e.get("command")),
                ),
            ]
            .join(" ");
            text.contains("15020/healthz/ready") || text.contains("pilot-agent wait")
        });
        if polls {
            return;
        }
        let path = if hold.is_some() { tmpl.annotation_path(PROXY_CONFIG_KEY) } else { tmpl.metadata_path() };
        out.push(Violation::new(
            path,
            format!(
                "{} `{}` gets an Istio sidecar but its app may start before the proxy is ready; add the pod annotation \
                 `{PROXY_CONFIG_KEY}: '{{ \"holdApplicationUntilProxyStarts\": true }}'`",
                obj.kind, obj.name
            ),
        ));
    }
}

// ---------------------------------------------------------------------------------------------

const LONG_RUNNING: &[&str] = &["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Pod"];

/// A Namespace (its injection label) and every kind with a pod template.
const INJECTION_ROLLOUT_KINDS: &[&str] = &[
    "Namespace",
    "Pod",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "ReplicationController",
    "Job",
    "CronJob",
];

struct PreStop {
    /// The exec command joined by spaces, or empty.
    command: String,
    sleep_seconds: Option<u64>,
}

fn pre_stop(container: &Value) -> Option<PreStop> {
    let hook = container.get("lifecycle")?.get("preStop")?;
    let command = strings_of(hook.get("exec").and_then(|e| e.get("command")));
    let native = hook.get("sleep").and_then(|s| s.get("seconds")).and_then(Value::as_u64);
    Some(PreStop { sleep_seconds: native.or_else(|| sleep_in(&command)), command })
}

/// The largest `sleep N` in a shell command.
fn sleep_in(command: &str) -> Option<u64> {
    let mut best = None;
    let mut rest = command;
    while let Some(at) = find_word(rest, "sleep") {
        let before_ok = rest[..at].chars().last().is_none_or(|c| !c.is_alphanumeric());
        let after = rest[at + 5..].trim_start();
        let digits = &after[..after.bytes().take_while(u8::is_ascii_digit).count()];
        if before_ok && !digits.is_empty() && after.len() < rest.len() - at - 5 {
            if let Ok(n) = digits.parse::<u64>() {
                best = best.max(Some(n));
            }
        }
        rest = &rest[at + 5..];
    }
    best
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ShutdownParams {
    #[serde(default = "thirty")]
    min_pre_stop_seconds: u64,
    #[serde(default = "thirty")]
    grace_margin_seconds: u64,
}

fn thirty() -> u64 {
    30
}

struct GracefulShutdown {
    p: ShutdownParams,
}

pub static GRACEFUL_SHUTDOWN: CheckSpec = CheckSpec {
    id: "istio-graceful-shutdown",
    target: Target::Kubernetes,
    applies_to: Applies::Kinds(LONG_RUNNING),
    summary: super::doc("Workloads (Deployment, StatefulSet, DaemonSet, ReplicaSet, Pod) give every container a preStop hook that \
              sleeps at least `minPreStopSeconds` (an exec `sleep N` or the native `preStop.sleep.seconds`), and a \
              `terminationGracePeriodSeconds` of at least that sleep plus `graceMarginSeconds` (Kubernetes defaults \
              it to 30 s). Without them endpoints are removed after the pod is already gone and in-flight requests fail."),
    params: &[
        ParamDoc { name: "minPreStopSeconds", ty: "integer", default: "30", description: super::doc("Shortest preStop sleep accepted.") },
        ParamDoc {
            name: "graceMarginSeconds",
            ty: "integer",
            default: "30",
            description: super::doc("Time the app needs after the sleep; the grace period must cover sleep + margin."),
        },
    ],
    example_params: super::doc("{}"),
    passing_example: super::doc("\
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  template:
    spec:
      terminationGracePeriodSeconds: 75
      containers:
      - name: api
        image: shop/api:1.0
        lifecycle:
          preStop:
            exec: {command: [sh, -c, sleep 40]}
"),
    failing_example: super::doc("\
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  template:
    spec:
      containers:
      - name: api
        image: shop/api:1.0
"),
    compile: |params| Ok(Compiled::Object(Box::new(GracefulShutdown { p: parse_params(params)? }))),
};

impl ObjectCheck for GracefulShutdown {
    fn review(&self, obj: &Object<'_>, _: &Input<'_>, out: &mut Vec<Violation>) {
        if !LONG_RUNNING.contains(&obj.kind) {
            return;
        }
        let Some(tmpl) = obj.pod_template() else {
            return;
        };
        let min = self.p.min_pre_stop_seconds;
        let mut longest = None;
        for (index, c) in tmpl.containers() {
            let name = c.get("name").and_then(Value::as_str).unwrap_or("?");
            let path = || tmpl.container_path(index).key("lifecycle").key("preStop");
            match pre_stop(c).and_then(|h| h.sleep_seconds) {
                Some(s) if s >= min => longest = longest.max(Some(s)),
                Some(s) => out.push(Violation::new(
                    path(),
                    format!("container `{name}`: preStop sleeps {s}s, less than {min}s; the proxy and endpoints need that long to drain"),
                )),
                None => out.push(Violation::new(
                    path(),
                    format!(
                        "container `{name}` has no preStop sleep; add `lifecycle.preStop.sleep.seconds: {min}` (or exec `sleep {min}`) so endpoints drain before it stops"
                    ),
                )),
            }
        }
        let Some(sleep) = longest else { return };
        let need = sleep + self.p.grace_margin_seconds;
        let grace = tmpl.spec().and_then(|s| s.get("terminationGracePeriodSeconds")).and_then(Value::as_u64);
        if grace.unwrap_or(30) < need {
            let have = grace.map_or("the default 30s".to_string(), |g| format!("{g}s"));
            out.push(Violation::new(
                tmpl.spec_path().key("terminationGracePeriodSeconds"),
                format!("terminationGracePeriodSeconds is {have}, below the preStop sleep {sleep}s + margin {}s; set it to at least {need}", self.p.grace_margin_seconds),
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DrainParams {
    #[serde(default = "http_protocols")]
    protocols: Vec<String>,
}

struct HttpDrain {
    protocols: Vec<String>,
    all_protocols: Vec<String>,
}

pub static HTTP_DRAIN: CheckSpec = CheckSpec {
    id: "istio-http-drain",
    target: Target::Kubernetes,
    applies_to: Applies::Kinds(LONG_RUNNING),
    summary: super::doc(
        "Workloads that serve HTTP make their sidecar drain on stop: a preStop that calls the proxy admin \
              `/healthcheck/fail` before sleeping, or `terminationDrainDuration` / `EXIT_ON_ZERO_ACTIVE_CONNECTIONS` \
              in `proxy.istio.io/config`. The protocol comes from the Services in the input that select the pods, \
              else from the containers' named ports.",
    ),
    params: &[ParamDoc {
        name: "protocols",
        ty: "list of strings",
        default: "[http, http2, grpc, grpc-web]",
        description: super::doc("Protocols that count as HTTP serving."),
    }],
    example_params: super::doc("{}"),
    passing_example: super::doc(
        "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  template:
    metadata:
      annotations:
        proxy.istio.io/config: '{ \"terminationDrainDuration\": \"20s\" }'
    spec:
      containers:
      - name: api
        image: shop/api:1.0
        ports: [{name: http, containerPort: 8080}]
",
    ),
    failing_example: super::doc(
        "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  template:
    metadata: {labels: {app: api}}
    spec:
      containers: [{name: api, image: shop/api:1.0}]
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec:
  selector: {app: api}
  ports: [{name: http, port: 80, targetPort: 8080}]
",
    ),
    compile: |params| {
        let p: DrainParams = parse_params(params)?;
        Ok(Compiled::Object(Box::new(HttpDrain { protocols: p.protocols, all_protocols: default_protocols() })))
    },
};

impl HttpDrain {
    fn serves_http(&self, obj: &Object<'_>, tmpl: &PodTemplate<'_>, input: &Input<'_>) -> Option<String> {
        let labels = tmpl.labels();
        for svc in input.peers(obj, "Service") {
            let Some(selector) = svc.spec().and_then(|s| s.get("selector")).and_then(Value::as_object) else {
                continue;
            };
            if selector.is_empty() || !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                continue;
            }
            for (_, port) in service_ports(svc) {
                if let Some(p) = port_protocol(port, &self.all_protocols).filter(|p| self.protocols.contains(p)) {
                    return Some(format!("Service `{}` exposes it as `{p}`", svc.name));
                }
            }
        }
        for (_, c) in tmpl.containers() {
            for port in c.get("ports").and_then(Value::as_array).into_iter().flatten() {
                let Some(name) = port.get("name").and_then(Value::as_str) else {
                    continue;
                };
                if let Some(p) = protocol_of_name(name, &self.protocols) {
                    return Some(format!("its container port `{name}` is `{p}`"));
                }
            }
        }
        None
    }
}

/// Whether the pod's proxy is told how to drain; then how it serves HTTP does not matter.
fn drain_configured(tmpl: &PodTemplate<'_>) -> bool {
    proxy_config(tmpl).is_some_and(|config| {
        ["terminationDrainDuration", "EXIT_ON_ZERO_ACTIVE_CONNECTIONS"].iter().any(|s| find_word(config, s).is_some())
    })
}

impl ObjectCheck for HttpDrain {
    /// Services are read only to learn whether the pods serve HTTP, which matters only for a
    /// long-running workload whose proxy is not told how to drain.
    fn reads_context(&self, obj: &Object<'_>) -> bool {
        LONG_RUNNING.contains(&obj.kind) && obj.pod_template().is_some_and(|tmpl| !drain_configured(&tmpl))
    }

    fn context_kinds(&self) -> Vec<String> {
        vec!["Service".into()]
    }

    fn review(&self, obj: &Object<'_>, input: &Input<'_>, out: &mut Vec<Violation>) {
        if !LONG_RUNNING.contains(&obj.kind) {
            return;
        }
        let Some(tmpl) = obj.pod_template() else {
            return;
        };
        if drain_configured(&tmpl) {
            return;
        }
        let Some(why) = self.serves_http(obj, &tmpl, input) else {
            return;
        };
        let drains = tmpl.containers().find_map(|(index, c)| {
            let hook = pre_stop(c)?;
            let fail_at = hook.command.find("/healthcheck/fail")?;
            let ordered = hook.command.find("sleep").is_none_or(|s| fail_at < s);
            Some((index, ordered))
        });
        match drains {
            Some((_, true)) => {}
            Some((index, false)) => out.push(Violation::new(
                tmpl.container_path(index).key("lifecycle").key("preStop"),
                "preStop sleeps before calling /healthcheck/fail; call the proxy admin endpoint first so Envoy drains while the app still serves",
            )),
            None => out.push(Violation::new(
                tmpl.metadata_path(),
                format!(
                    "{} `{}` serves HTTP ({why}) but nothing makes its proxy drain on stop; set `terminationDrainDuration` \
                     (or EXIT_ON_ZERO_ACTIVE_CONNECTIONS) in `{PROXY_CONFIG_KEY}`, or call \
                     `curl -XPOST localhost:15000/healthcheck/fail` in a preStop before sleeping",
                    obj.kind, obj.name
                ),
            )),
        }
    }
}

// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RolloutParams {
    #[serde(default)]
    allowed_namespaces: Option<Vec<String>>,
    #[serde(default)]
    required_namespaces: Vec<String>,
}

struct InjectionRollout {
    p: RolloutParams,
}

pub static INJECTION_ROLLOUT: CheckSpec = CheckSpec {
    id: "istio-injection-rollout",
    target: Target::Kubernetes,
    applies_to: Applies::Kinds(INJECTION_ROLLOUT_KINDS),
    summary: super::doc("Sidecar injection follows the rollout plan: only namespaces in `allowedNamespaces` may turn injection on \
              (Namespace label `istio-injection=enabled` / `istio.io/rev`, or a pod's `sidecar.istio.io/inject: \"true\"`), \
              and in `requiredNamespaces` no pod may opt out with `sidecar.istio.io/inject: \"false\"`."),
    params: &[
        ParamDoc {
            name: "allowedNamespaces",
            ty: "list of globs",
            default: "unset (any namespace)",
            description: super::doc("Namespaces of the current rollout waves."),
        },
        ParamDoc {
            name: "requiredNamespaces",
            ty: "list of globs",
            default: "[]",
            description: super::doc("Namespaces already in the mesh, where opting out is an error."),
        },
    ],
    example_params: super::doc("{allowedNamespaces: [shop, pay-*], requiredNamespaces: [shop]}"),
    passing_example: super::doc("\
apiVersion: v1
kind: Namespace
metadata:
  name: pay-eu
  labels: {istio-injection: enabled}
"),
    failing_example: super::doc("\
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  template:
    metadata:
      labels: {sidecar.istio.io/inject: \"false\"}
    spec:
      containers: [{name: api, image: shop/api:1.0}]
"),
    compile: |params| Ok(Compiled::Object(Box::new(InjectionRollout { p: parse_params(params)? }))),
};

impl ObjectCheck for InjectionRollout {
    fn review(&self, obj: &Object<'_>, _: &Input<'_>, out: &mut Vec<Violation>) {
        let allowed = |ns: &str| self.p.allowed_namespaces.as_ref().is_none_or(|a| any_glob(a, ns));
        if is_core(obj, "Namespace") {
            if allowed(obj.name) {
                return;
            }
            let labels = obj.labels();
            let labels_path = FieldPath::root().key("metadata").key("labels");
            if map_str(labels, "istio-injection").as_deref() == Some("enabled") {
                out.push(Violation::new(
                    labels_path.key("istio-injection"),
                    format!(
                        "namespace `{}` enables sidecar injection but is not in the rollout's allowedNamespaces",
                        obj.name
                    ),
                ));
            } else if labels.contains_key("istio.io/rev") {
                out.push(Violation::new(
                    labels_path.key("istio.io/rev"),
                    format!(
                        "namespace `{}` selects an Istio revision but is not in the rollout's allowedNamespaces",
                        obj.name
                    ),
                ));
            }
            return;
        }
        let Some(tmpl) = obj.pod_template() else {
            return;
        };
        let (where_, value) = match (map_str(tmpl.labels(), INJECT_KEY), map_str(tmpl.annotations(), INJECT_KEY)) {
            (Some(v), _) => ("labels", v),
            (None, Some(v)) => ("annotations", v),
            (None, None) => return,
        };
        let path = || tmpl.metadata_path().key(where_).key(INJECT_KEY);
        if value == "true" && !allowed(obj.namespace) {
            out.push(Violation::new(
                path(),
                format!(
                    "{} `{}` opts into sidecar injection but namespace `{}` is not in the rollout's allowedNamespaces",
                    obj.kind, obj.name, obj.namespace
                ),
            ));
        } else if value == "false" && any_glob(&self.p.required_namespaces, obj.namespace) {
            out.push(Violation::new(
                path(),
                format!(
                    "{} `{}` opts out of sidecar injection, but namespace `{}` is required to be in the mesh",
                    obj.kind, obj.name, obj.namespace
                ),
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PlatformParams {
    #[serde(default = "istio_system")]
    platform_namespaces: Vec<String>,
}

struct ExportToOwnNamespace {
    p: PlatformParams,
}

pub static EXPORT_TO_OWN_NAMESPACE: CheckSpec = CheckSpec {
    id: "istio-export-to-own-namespace",
    target: Target::Kubernetes,
    applies_to: Applies::Kinds(&["VirtualService", "DestinationRule", "ServiceEntry"]),
    summary: super::doc(
        "A tenant's VirtualService, DestinationRule and ServiceEntry set `exportTo: [\".\"]` (or their own \
              namespace). Istio exports them to every namespace by default, so one tenant's traffic policy leaks into \
              all others. Objects in `platformNamespaces` are exempt.",
    ),
    params: &[ParamDoc {
        name: "platformNamespaces",
        ty: "list of globs",
        default: "[istio-system]",
        description: super::doc("Namespaces owned by the platform team."),
    }],
    example_params: super::doc("{}"),
    passing_example: super::doc(
        "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: shop}
spec:
  host: api
  exportTo: [\".\"]
",
    ),
    failing_example: super::doc(
        "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: shop}
spec:
  host: api
",
    ),
    compile: |params| Ok(Compiled::Object(Box::new(ExportToOwnNamespace { p: parse_params(params)? }))),
};

impl ObjectCheck for ExportToOwnNamespace {
    fn review(&self, obj: &Object<'_>, _: &Input<'_>, out: &mut Vec<Violation>) {
        if !is_istio(obj, &["VirtualService", "DestinationRule", "ServiceEntry"])
            || any_glob(&self.p.platform_namespaces, obj.namespace)
        {
            return;
        }
        let spec_path = FieldPath::root().key("spec");
        match obj.spec().and_then(|s| s.get("exportTo")).and_then(Value::as_array) {
            None => out.push(Violation::new(
                spec_path.key("exportTo"),
                format!(
                    "{} `{}` has no exportTo, so Istio exports it to every namespace; set `exportTo: [\".\"]`",
                    obj.kind, obj.name
                ),
            )),
            Some(list) if list.is_empty() => out.push(Violation::new(
                spec_path.key("exportTo"),
                format!(
                    "{} `{}` has an empty exportTo, which exports it to every namespace; set `exportTo: [\".\"]`",
                    obj.kind, obj.name
                ),
            )),
            Some(list) => {
                for (i, item) in list.iter().enumerate() {
                    let target = item.as_str().unwrap_or("");
                    if target != "." && target != obj.namespace {
                        out.push(Violation::new(
                            spec_path.key("exportTo").index(i),
                            format!("{} `{}` is exported to `{target}`; tenants may export only to their own namespace (\".\")", obj.kind, obj.name),
                        ));
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HostParams {
    #[serde(default = "istio_system")]
    platform_namespaces: Vec<String>,
    #[serde(default = "cluster_local")]
    cluster_domain: String,
    #[serde(default = "yes")]
    allow_external_hosts: bool,
}

fn cluster_local() -> String {
    "cluster.local".into()
}

struct HostInOwnNamespace {
    p: HostParams,
}

pub static HOST_IN_OWN_NAMESPACE: CheckSpec = CheckSpec {
    id: "istio-host-in-own-namespace",
    target: Target::Kubernetes,
    applies_to: Applies::Kinds(&["VirtualService", "DestinationRule"]),
    summary: super::doc("A tenant's VirtualService and DestinationRule hosts are short names or `<name>.<own-namespace>.svc.<clusterDomain>` \
              (a `*` name allowed there): no bare `*`, no wildcard domains, no other namespace's services. \
              Otherwise a tenant rewrites routing for traffic it does not own."),
    params: &[
        ParamDoc { name: "platformNamespaces", ty: "list of globs", default: "[istio-system]", description: super::doc("Namespaces exempt from the check.") },
        ParamDoc { name: "clusterDomain", ty: "string", default: "cluster.local", description: super::doc("The cluster's DNS domain.") },
        ParamDoc {
            name: "allowExternalHosts",
            ty: "bool",
            default: "true",
            description: super::doc("Whether non-cluster FQDNs (e.g. `api.example.com` behind a ServiceEntry) are allowed."),
        },
    ],
    example_params: super::doc("{}"),
    passing_example: super::doc("\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: shop}
spec:
  hosts: [api, api.shop.svc.cluster.local]
"),
    failing_example: super::doc("\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: shop}
spec:
  hosts: [payments.pay.svc.cluster.local]
"),
    compile: |params| Ok(Compiled::Object(Box::new(HostInOwnNamespace { p: parse_params(params)? }))),
};

impl HostInOwnNamespace {
    fn problem(&self, host: &str, own: &str) -> Option<String> {
        if host == "*" {
            return Some("`*` matches every service in the mesh".into());
        }
        let labels: Vec<&str> = host.split('.').collect();
        let svc_at = labels.iter().position(|l| *l == "svc");
        let in_cluster =
            svc_at.is_some_and(|i| i == 2 && (labels.len() == 3 || labels[3..].join(".") == self.p.cluster_domain));
        if in_cluster {
            let ns = labels[1];
            return (ns != own).then(|| format!("`{host}` belongs to namespace `{ns}`"));
        }
        if labels.len() == 1 {
            return None;
        }
        if labels[0] == "*" || host.contains('*') {
            return Some(format!("wildcard host `{host}` can capture other tenants' traffic"));
        }
        if host.ends_with(&format!(".{}", self.p.cluster_domain)) {
            return Some(format!("`{host}` is a cluster host outside namespace `{own}`"));
        }
        (!self.p.allow_external_hosts).then(|| format!("external host `{host}` is not allowed for tenants"))
    }
}

impl ObjectCheck for HostInOwnNamespace {
    fn review(&self, obj: &Object<'_>, _: &Input<'_>, out: &mut Vec<Violation>) {
        if any_glob(&self.p.platform_namespaces, obj.namespace) {
            return;
        }
        let spec = FieldPath::root().key("spec");
        let hosts: Vec<(FieldPath, &str)> = if is_istio(obj, &["VirtualService"]) {
            let list = obj.spec().and_then(|s| s.get("hosts")).and_then(Value::as_array);
            list.into_iter()
                .flatten()
                .enumerate()
                .filter_map(|(i, h)| Some((spec.key("hosts").index(i), h.as_str()?)))
                .collect()
        } else if is_istio(obj, &["DestinationRule"]) {
            obj.spec()
                .and_then(|s| s.get("host"))
                .and_then(Value::as_str)
                .map(|h| (spec.key("host"), h))
                .into_iter()
                .collect()
        } else {
            return;
        };
        for (path, host) in hosts {
            if let Some(why) = self.problem(host, obj.namespace) {
                out.push(Violation::new(
                    path,
                    format!(
                        "{} `{}`: {why}; use a short name or `<service>.{}.svc.{}`",
                        obj.kind, obj.name, obj.namespace, self.p.cluster_domain
                    ),
                ));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PlatformKindsParams {
    #[serde(default = "istio_system")]
    platform_namespaces: Vec<String>,
    #[serde(default = "istio_system_one")]
    root_namespace: String,
    #[serde(default = "platform_only_kinds")]
    platform_only_kinds: Vec<String>,
    #[serde(default = "mesh_wide_kinds")]
    mesh_wide_kinds: Vec<String>,
}

fn istio_system_one() -> String {
    "istio-system".into()
}

fn platform_only_kinds() -> Vec<String> {
    ["EnvoyFilter", "Gateway"].map(String::from).to_vec()
}

fn mesh_wide_kinds() -> Vec<String> {
    ["PeerAuthentication", "AuthorizationPolicy", "Telemetry", "Sidecar"].map(String::from).to_vec()
}

struct PlatformOnlyKinds {
    p: PlatformKindsParams,
}

pub static PLATFORM_ONLY_KINDS: CheckSpec = CheckSpec {
    id: "istio-platform-only-kinds",
    target: Target::Kubernetes,
    applies_to: Applies::GroupSuffix("istio.io"),
    summary: super::doc(
        "EnvoyFilter and Gateway objects, and mesh-wide PeerAuthentication, AuthorizationPolicy, Telemetry and \
              Sidecar (those in the Istio root namespace), live only in `platformNamespaces`: each changes every \
              tenant's proxies. Run a tenant repo with `platformNamespaces: []` to forbid them there entirely.",
    ),
    params: &[
        ParamDoc {
            name: "platformNamespaces",
            ty: "list of globs",
            default: "[istio-system]",
            description: super::doc("Namespaces owned by the platform team."),
        },
        ParamDoc {
            name: "rootNamespace",
            ty: "string",
            default: "istio-system",
            description: super::doc("Istio's root namespace (meshConfig.rootNamespace)."),
        },
        ParamDoc {
            name: "platformOnlyKinds",
            ty: "list of strings",
            default: "[EnvoyFilter, Gateway]",
            description: super::doc("Istio kinds allowed only in platform namespaces."),
        },
        ParamDoc {
            name: "meshWideKinds",
            ty: "list of strings",
            default: "[PeerAuthentication, AuthorizationPolicy, Telemetry, Sidecar]",
            description: super::doc("Istio kinds that are mesh-wide when placed in the root namespace."),
        },
    ],
    example_params: super::doc("{}"),
    passing_example: super::doc(
        "\
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: lua, namespace: istio-system}
spec: {}
",
    ),
    failing_example: super::doc(
        "\
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: lua, namespace: shop}
spec: {}
",
    ),
    compile: |params| Ok(Compiled::Object(Box::new(PlatformOnlyKinds { p: parse_params(params)? }))),
};

impl ObjectCheck for PlatformOnlyKinds {
    fn review(&self, obj: &Object<'_>, _: &Input<'_>, out: &mut Vec<Violation>) {
        if !obj.group.ends_with("istio.io") || any_glob(&self.p.platform_namespaces, obj.namespace) {
            return;
        }
        let kind = obj.kind.to_string();
        let why = if self.p.platform_only_kinds.contains(&kind) {
            format!("{} objects change proxies outside namespace `{}`", obj.kind, obj.namespace)
        } else if self.p.mesh_wide_kinds.contains(&kind) && obj.namespace == self.p.root_namespace {
            format!("a {} in the root namespace `{}` applies to the whole mesh", obj.kind, obj.namespace)
        } else {
            return;
        };
        out.push(Violation::new(
            FieldPath::root().key("kind"),
            format!(
                "{why}; only the platform team may create it (platform namespaces: {})",
                self.p.platform_namespaces.join(", ")
            ),
        ));
    }
}

// ---------------------------------------------------------------------------------------------

struct SingleDefaultSidecar;

pub static SINGLE_DEFAULT_SIDECAR: CheckSpec = CheckSpec {
    id: "istio-single-default-sidecar",
    target: Target::Kubernetes,
    applies_to: Applies::Kinds(&["Sidecar"]),
    summary: super::doc(
        "At most one Sidecar without `workloadSelector` per namespace: with two, Istio picks one arbitrarily. \
              Compares every Sidecar in the input.",
    ),
    params: &[],
    example_params: super::doc("{}"),
    passing_example: super::doc(
        "\
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  egress: [{hosts: [\"./*\", \"istio-system/*\"]}]
",
    ),
    failing_example: super::doc(
        "\
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  egress: [{hosts: [\"./*\"]}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: egress, namespace: shop}
spec:
  egress: [{hosts: [\"istio-system/*\"]}]
",
    ),
    compile: |params| {
        parse_params::<super::EmptyParams>(params)?;
        Ok(Compiled::Object(Box::new(SingleDefaultSidecar)))
    },
};

fn is_default_sidecar(obj: &Object<'_>) -> bool {
    is_istio(obj, &["Sidecar"]) && obj.spec().and_then(|s| s.get("workloadSelector")).is_none()
}

impl ObjectCheck for SingleDefaultSidecar {
    fn reads_context(&self, obj: &Object<'_>) -> bool {
        is_default_sidecar(obj)
    }

    fn context_kinds(&self) -> Vec<String> {
        vec!["Sidecar".into()]
    }

    fn review(&self, obj: &Object<'_>, input: &Input<'_>, out: &mut Vec<Violation>) {
        if !is_default_sidecar(obj) {
            return;
        }
        let others: Vec<String> =
            input.peers(obj, "Sidecar").filter(|o| is_default_sidecar(o)).map(|o| format!("`{}`", o.name)).collect();
        if !others.is_empty() {
            out.push(Violation::new(
                FieldPath::root().key("spec"),
                format!(
                    "namespace `{}` has more than one Sidecar without workloadSelector ({} too); Istio picks one arbitrarily. Keep one default and give the others a workloadSelector",
                    obj.namespace,
                    others.join(", ")
                ),
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CircuitBreakerParams {
    #[serde(default = "yes")]
    require_outlier_detection: bool,
    #[serde(default = "yes")]
    require_connection_pool: bool,
}

struct CircuitBreaker {
    p: CircuitBreakerParams,
}

pub static CIRCUIT_BREAKER: CheckSpec = CheckSpec {
    id: "istio-circuit-breaker",
    target: Target::Kubernetes,
    applies_to: Applies::Kinds(&["DestinationRule"]),
    summary: super::doc(
        "A DestinationRule's `trafficPolicy` sets `outlierDetection` and `connectionPool`, so one slow or failing \
              backend cannot take its callers down with it (cascading failures).",
    ),
    params: &[
        ParamDoc {
            name: "requireOutlierDetection",
            ty: "bool",
            default: "true",
            description: super::doc("Require `trafficPolicy.outlierDetection`."),
        },
        ParamDoc {
            name: "requireConnectionPool",
            ty: "bool",
            default: "true",
            description: super::doc("Require `trafficPolicy.connectionPool`."),
        },
    ],
    example_params: super::doc("{}"),
    passing_example: super::doc(
        "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: shop}
spec:
  host: api
  trafficPolicy:
    connectionPool: {http: {http2MaxRequests: 1000}}
    outlierDetection: {consecutive5xxErrors: 5, interval: 10s}
",
    ),
    failing_example: super::doc(
        "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: shop}
spec:
  host: api
",
    ),
    compile: |params| Ok(Compiled::Object(Box::new(CircuitBreaker { p: parse_params(params)? }))),
};

impl ObjectCheck for CircuitBreaker {
    fn review(&self, obj: &Object<'_>, _: &Input<'_>, out: &mut Vec<Violation>) {
        if !is_istio(obj, &["DestinationRule"]) {
            return;
        }
        let policy = obj.spec().and_then(|s| s.get("trafficPolicy"));
        let path = FieldPath::root().key("spec").key("trafficPolicy");
        let missing: Vec<&str> = [
            ("outlierDetection", self.p.require_outlier_detection),
            ("connectionPool", self.p.require_connection_pool),
        ]
        .into_iter()
        .filter(|(field, required)| *required && policy.and_then(|p| p.get(*field)).is_none())
        .map(|(f, _)| f)
        .collect();
        if !missing.is_empty() {
            out.push(Violation::new(
                path,
                format!("DestinationRule `{}` has no {} in trafficPolicy; without a circuit breaker one failing backend cascades to its callers", obj.name, missing.join(" and ")),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_word_agrees_with_str_find() {
        let texts = [
            "",
            "t",
            "terminationDrainDuration: 5s",
            "{\"holdApplicationUntilProxyStarts\": true}",
            "tttterminationDrainDurationX",
            "terminationDrainDuratio",
            "é holdApplicationUntilProxyStarts",
            "drain: terminationDrainDuration\nterminationDrainDuration: 1s",
        ];
        for text in texts {
            for word in [HOLD_KEY, "terminationDrainDuration", "t", "EXIT_ON_ZERO_ACTIVE_CONNECTIONS"] {
                assert_eq!(find_word(text, word), text.find(word), "{word:?} in {text:?}");
            }
        }
        assert_eq!(find_word("abc", ""), None, "an empty word is never looked for");
    }

    #[test]
    fn port_name_protocols() {
        let p = default_protocols();
        assert_eq!(protocol_of_name("http", &p), Some("http"));
        assert_eq!(protocol_of_name("grpc-web-api", &p), Some("grpc-web"));
        assert_eq!(protocol_of_name("grpc-api", &p), Some("grpc"));
        assert_eq!(protocol_of_name("HTTP-x", &p), Some("http"));
        assert_eq!(protocol_of_name("httpweb", &p), None);
        assert_eq!(protocol_of_name("GRPC-Web", &p), Some("grpc-web"));
        assert_eq!(protocol_of_name("http-é", &p), Some("http"));
        assert_eq!(protocol_of_name("httpé", &p), None);
        assert_eq!(protocol_of_name("htt", &p), None);
        assert_eq!(protocol_of_name("web", &p), None);
    }

    #[test]
    fn sleep_parsing() {
        assert_eq!(sleep_in("sh -c sleep 40"), Some(40));
        assert_eq!(sleep_in("curl -XPOST localhost:15000/healthcheck/fail && sleep 5; sleep 30"), Some(30));
        assert_eq!(sleep_in("nosleep 40"), None);
        assert_eq!(sleep_in("sleep"), None);
    }
}
