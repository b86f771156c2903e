//! Pod templates with a sidecar: start order, graceful shutdown, HTTP drain, and rolling injection out.

use super::*;
use crate::checks::{parse_params, Applies, CheckSpec, Compiled, ObjectCheck, ParamDoc, Target};
use crate::finding::Violation;
use crate::matching::any_glob;
use crate::object::{map_str, Input, Object, PodTemplate};
use crate::path::FieldPath;
use serde::Deserialize;
use serde_json::Value;

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

/// The fix that sets `key` to `value` in the pod's `proxy.istio.io/config` annotation, keeping
/// the rest of it (`None` when the annotation is in a form edited by hand).
fn proxy_config_fix(obj: &Object<'_>, tmpl: &PodTemplate<'_>, key: &str, value: Value) -> Option<crate::fix::Fix> {
    let config = crate::fix::set_in_embedded_config(proxy_config(tmpl), key, &value).ok()?;
    Some(crate::fix::Fix::set(
        obj.value,
        &tmpl.annotation_path(PROXY_CONFIG_KEY),
        Value::String(config),
        format!("set `{key}: {value}` in the pod's `{PROXY_CONFIG_KEY}` annotation"),
    ))
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
    summary: crate::checks::doc(
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
            description: crate::checks::doc(
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
    example_params: crate::checks::doc("{injectedNamespaces: [shop]}"),
    passing_example: crate::checks::doc(
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
    failing_example: crate::checks::doc(
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
    fix: crate::checks::doc("Sets `holdApplicationUntilProxyStarts: true` in the pod's `proxy.istio.io/config` annotation, keeping its other settings and its style (JSON or YAML inside the string), creating the annotation, `annotations` or `metadata` where missing. An annotation in another form (flow YAML, anchors) is left to a person."),
    fix_scope: &["**/metadata/annotations/proxy.istio.io~1config"],
    compile: |params| Ok(Compiled::Object(Box::new(SidecarStartOrder { p: parse_params(params)? }))),
    native: crate::checks::Native::Vap(native_sidecar_start_order),
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
        out.push(
            Violation::new(
                path,
                format!(
                "{} `{}` gets an Istio sidecar but its app may start before the proxy is ready; add the pod annotation \
                 `{PROXY_CONFIG_KEY}: '{{ \"holdApplicationUntilProxyStarts\": true }}'`",
                obj.kind, obj.name
            ),
            )
            .with_fix(proxy_config_fix(obj, &tmpl, HOLD_KEY, Value::Bool(true))),
        );
    }
}

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
    summary: crate::checks::doc("Workloads (Deployment, StatefulSet, DaemonSet, ReplicaSet, Pod) give every container a preStop hook that \
              sleeps at least `minPreStopSeconds` (an exec `sleep N` or the native `preStop.sleep.seconds`), and a \
              `terminationGracePeriodSeconds` of at least that sleep plus `graceMarginSeconds` (Kubernetes defaults \
              it to 30 s). Without them endpoints are removed after the pod is already gone and in-flight requests fail."),
    params: &[
        ParamDoc { name: "minPreStopSeconds", ty: "integer", default: "30", description: crate::checks::doc("Shortest preStop sleep accepted.") },
        ParamDoc {
            name: "graceMarginSeconds",
            ty: "integer",
            default: "30",
            description: crate::checks::doc("Time the app needs after the sleep; the grace period must cover sleep + margin."),
        },
    ],
    example_params: crate::checks::doc("{}"),
    passing_example: crate::checks::doc("\
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
    failing_example: crate::checks::doc("\
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
    fix: crate::checks::doc("Adds `lifecycle.preStop.sleep.seconds` (the rule's minimum) to a container without a preStop hook, or raises Kubernetes' own sleep action to it, and raises `terminationGracePeriodSeconds` when it would not cover the sleep plus the margin. A preStop that runs a command is the team's: where a sleep goes in it is theirs to say."),
    fix_scope: &["**/containers/*/lifecycle/preStop/sleep/seconds", "**/terminationGracePeriodSeconds"],
    compile: |params| Ok(Compiled::Object(Box::new(GracefulShutdown { p: parse_params(params)? }))),
    native: crate::checks::Native::Vap(native_graceful_shutdown),
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
        let grace = tmpl.spec().and_then(|s| s.get("terminationGracePeriodSeconds")).and_then(Value::as_u64);
        let mut longest = None;
        // (violation, the sleep its fix would set) for the containers without a long enough sleep.
        let mut short = Vec::new();
        for (index, c) in tmpl.containers() {
            let name = c.get("name").and_then(Value::as_str).unwrap_or("?");
            let path = tmpl.container_path(index).key("lifecycle").key("preStop");
            let hook = c.get("lifecycle").and_then(|l| l.get("preStop"));
            // A fix only where the hook is Kubernetes' own sleep, or absent: a hook that runs a
            // command is the team's, and where a sleep goes in it is theirs to say.
            let sleep_fix = |description: String| {
                let own_sleep =
                    hook.is_none_or(|h| h.get("sleep").is_some() && h.as_object().is_some_and(|m| m.len() == 1));
                own_sleep.then(|| {
                    crate::fix::Fix::set(obj.value, &path.key("sleep").key("seconds"), Value::from(min), description)
                })
            };
            match pre_stop(c).and_then(|h| h.sleep_seconds) {
                Some(s) if s >= min => longest = longest.max(Some(s)),
                Some(s) => short.push(Violation::new(
                    path.clone(),
                    format!("container `{name}`: preStop sleeps {s}s, less than {min}s; the proxy and endpoints need that long to drain"),
                ).with_fix(sleep_fix(format!("raise container `{name}`'s preStop sleep to {min}s")))),
                None => short.push(
                    Violation::new(
                        path.clone(),
                        format!(
                            "container `{name}` has no preStop sleep; add `lifecycle.preStop.sleep.seconds: {min}` (or exec `sleep {min}`) so endpoints drain before it stops"
                        ),
                    )
                    .with_fix(sleep_fix(format!("add `lifecycle.preStop.sleep.seconds: {min}` to container `{name}`"))),
                ),
            }
        }
        let grace_path = tmpl.spec_path().key("terminationGracePeriodSeconds");
        let raise_grace = |sleep: u64| {
            let need = sleep + self.p.grace_margin_seconds;
            (grace.unwrap_or(30) < need).then(|| {
                crate::fix::Fix::set(
                    obj.value,
                    &grace_path,
                    Value::from(need),
                    format!("raise terminationGracePeriodSeconds to {need}"),
                )
            })
        };
        // A fixed sleep needs a grace period that covers it and the drain margin.
        let after_fixes = longest.max(Some(min));
        for v in short {
            out.push(match (v.fix, after_fixes.and_then(raise_grace)) {
                (Some(fix), Some(grace)) => Violation { fix: Some(fix.and(grace)), ..v },
                (fix, _) => Violation { fix, ..v },
            });
        }
        let Some(sleep) = longest else { return };
        let need = sleep + self.p.grace_margin_seconds;
        if grace.unwrap_or(30) < need {
            let have = grace.map_or("the default 30s".to_string(), |g| format!("{g}s"));
            out.push(
                Violation::new(
                    grace_path.clone(),
                    format!("terminationGracePeriodSeconds is {have}, below the preStop sleep {sleep}s + margin {}s; set it to at least {need}", self.p.grace_margin_seconds),
                )
                .with_fix(raise_grace(sleep)),
            );
        }
    }
}

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
    summary: crate::checks::doc(
        "Workloads that serve HTTP make their sidecar drain on stop: a preStop that calls the proxy admin \
              `/healthcheck/fail` before sleeping, or `terminationDrainDuration` / `EXIT_ON_ZERO_ACTIVE_CONNECTIONS` \
              in `proxy.istio.io/config`. The protocol comes from the Services in the input that select the pods, \
              else from the containers' named ports.",
    ),
    params: &[ParamDoc {
        name: "protocols",
        ty: "list of strings",
        default: "[http, http2, grpc, grpc-web]",
        description: crate::checks::doc("Protocols that count as HTTP serving."),
    }],
    example_params: crate::checks::doc("{}"),
    passing_example: crate::checks::doc(
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
    failing_example: crate::checks::doc(
        "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  template:
    metadata:
      labels: {app: api}
    spec:
      containers:
      - name: api
        image: shop/api:1.0
        lifecycle: {preStop: {sleep: {seconds: 20}}}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec:
  selector: {app: api}
  ports: [{name: http, port: 80, targetPort: 8080}]
",
    ),
    fix: crate::checks::doc("Sets `terminationDrainDuration` in `proxy.istio.io/config` to the pod's longest preStop sleep (the proxy drains while the app still serves). Without a preStop sleep there is no duration to match: `meshguard fix` first applies istio-graceful-shutdown's fix, then comes back for this one. A preStop that calls `/healthcheck/fail` after sleeping is the team's to reorder."),
    fix_scope: &["**/metadata/annotations/proxy.istio.io~1config"],
    compile: |params| {
        let p: DrainParams = parse_params(params)?;
        Ok(Compiled::Object(Box::new(HttpDrain { protocols: p.protocols, all_protocols: default_protocols() })))
    },
    native: crate::checks::Native::WebhookOnly(
        "decides whether a workload serves HTTP from the Services that select it, other objects a policy over one object cannot read",
    ),
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
            None => {
                // Draining as long as the app's preStop sleep keeps it serving: the one duration
                // that fits. Without a sleep there is none to match (istio-graceful-shutdown's fix
                // adds one; `meshguard fix` then comes back for this).
                let sleep = tmpl.containers().filter_map(|(_, c)| pre_stop(c)?.sleep_seconds).max();
                let fix = sleep.and_then(|s| {
                    proxy_config_fix(obj, &tmpl, "terminationDrainDuration", Value::String(format!("{s}s")))
                });
                out.push(
                    Violation::new(
                        tmpl.metadata_path(),
                        format!(
                            "{} `{}` serves HTTP ({why}) but nothing makes its proxy drain on stop; set `terminationDrainDuration` \
                             (or EXIT_ON_ZERO_ACTIVE_CONNECTIONS) in `{PROXY_CONFIG_KEY}`, or call \
                             `curl -XPOST localhost:15000/healthcheck/fail` in a preStop before sleeping",
                            obj.kind, obj.name
                        ),
                    )
                    .with_fix(fix),
                )
            }
        }
    }
}

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
    summary: crate::checks::doc("Sidecar injection follows the rollout plan: only namespaces in `allowedNamespaces` may turn injection on \
              (Namespace label `istio-injection=enabled` / `istio.io/rev`, or a pod's `sidecar.istio.io/inject: \"true\"`), \
              and in `requiredNamespaces` no pod may opt out with `sidecar.istio.io/inject: \"false\"`."),
    params: &[
        ParamDoc {
            name: "allowedNamespaces",
            ty: "list of globs",
            default: "unset (any namespace)",
            description: crate::checks::doc("Namespaces of the current rollout waves."),
        },
        ParamDoc {
            name: "requiredNamespaces",
            ty: "list of globs",
            default: "[]",
            description: crate::checks::doc("Namespaces already in the mesh, where opting out is an error."),
        },
    ],
    example_params: crate::checks::doc("{allowedNamespaces: [shop, pay-*], requiredNamespaces: [shop]}"),
    passing_example: crate::checks::doc("\
apiVersion: v1
kind: Namespace
metadata:
  name: pay-eu
  labels: {istio-injection: enabled}
"),
    failing_example: crate::checks::doc("\
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
    fix: crate::checks::doc("None: turning injection on is a rollout decision, not an edit."),
    fix_scope: &[],
    compile: |params| Ok(Compiled::Object(Box::new(InjectionRollout { p: parse_params(params)? }))),
    native: crate::checks::Native::Vap(native_injection_rollout),
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

/// The text of a container's exec command (or `field`) as [`strings_of`] joins it, in CEL.
fn native_strings_of(field: &str) -> String {
    format!("c.?{field}.orValue([]).join(' ')")
}

/// `istio-sidecar-start-order` in CEL, for `meshguard rules export`: the namespace's injection
/// labels come from `namespaceObject`, as the API server binds it.
fn native_sidecar_start_order(params: &Value) -> Result<crate::checks::NativeForm, crate::checks::ParamError> {
    use crate::checks::native::{any_glob, lit, set_patch, template_has_meta, template_meta, NAMESPACE};
    use crate::checks::{NativeForm, NativeValidation};
    let p: StartOrderParams = parse_params(params)?;
    let config = template_meta("annotations", PROXY_CONFIG_KEY);
    // The setting as `proxy_config_setting` reads it: the key, quotes, `:`, the value up to `,`, `}` or a newline.
    let setting = format!("{config}.find('{HOLD_KEY}[\"\\']*\\\\s*:\\\\s*[^,}}\\\\n]*')");
    let pod_says = format!(
        "({} ? {} : {} ? {} : '')",
        template_has_meta("labels", INJECT_KEY),
        template_meta("labels", INJECT_KEY),
        template_has_meta("annotations", INJECT_KEY),
        template_meta("annotations", INJECT_KEY)
    );
    let namespace_injects = "(namespaceObject != null && \
         (string(namespaceObject.?metadata.?labels[?'istio-injection'].orValue('')) == 'enabled' || \
          namespaceObject.?metadata.?labels[?'istio.io/rev'].hasValue()))";
    let gets_sidecar = format!(
        "({pod_says} != '' ? {pod_says} == 'true' : ({} || {namespace_injects}))",
        any_glob(&p.injected_namespaces, NAMESPACE)
    );
    let polls = format!(
        "variables.template.?spec.?containers.orValue([]).exists(c, cel.bind(text, [{}, {}, {}].join(' '), \
         text.contains('15020/healthz/ready') || text.contains('pilot-agent wait')))",
        native_strings_of("command"),
        native_strings_of("args"),
        native_strings_of("lifecycle.?postStart.?exec.?command")
    );
    let holds = format!(
        "(variables.holdSetting != '' ? variables.holdSetting.substring(variables.holdSetting.indexOf(':') + 1).trim().matches('^[\"\\']*true[\"\\']*$') : {})",
        p.mesh_holds_application
    );
    let message = lit(&format!(
        " gets an Istio sidecar but its app may start before the proxy is ready; add the pod annotation \
         `{PROXY_CONFIG_KEY}: '{{ \"holdApplicationUntilProxyStarts\": true }}'`"
    ));
    let message = format!("object.kind + ' `' + object.metadata.name + '`' + {message}");
    let fresh = lit(&crate::fix::set_in_embedded_config(None, HOLD_KEY, &Value::Bool(true)).unwrap_or_default());
    let mutation = format!(
        "variables.template != null && variables.startsEarly && {config}.trim() == '' ? {} : []",
        set_patch(
            "variables.template",
            "variables.templatePointer",
            &["metadata", "annotations", PROXY_CONFIG_KEY],
            &fresh
        )
    );
    Ok(NativeForm {
        mutations: vec![crate::checks::NativeMutation::on_template(mutation)],
        mutation_gap: Some(
            "its fix is exported for pods without a `proxy.istio.io/config` annotation only: setting a key inside the \
             JSON or YAML an annotation holds is beyond CEL, so pods that have one are fixed by the webhook or \
             `meshguard fix`, and the validation still reports them",
        ),
        variables: vec![
            ("holdSetting".into(), setting),
            ("startsEarly".into(), format!("!{holds} && {gets_sidecar} && !{polls}")),
        ],
        validations: vec![
            NativeValidation::new(
                "variables.holdSetting == '' || !variables.startsEarly",
                message.clone(),
                &format!("metadata.annotations['{PROXY_CONFIG_KEY}']"),
            )
            .on_template(),
            NativeValidation::new("variables.holdSetting != '' || !variables.startsEarly", message, "metadata")
                .on_template(),
        ],
        ..Default::default()
    })
}

/// `istio-graceful-shutdown` in CEL, for `meshguard rules export`: each container's preStop
/// sleep (`-1`: none) as `pre_stop` finds it, native or in an exec command.
fn native_graceful_shutdown(params: &Value) -> Result<crate::checks::NativeForm, crate::checks::ParamError> {
    use crate::checks::native::{set_op, set_patch};
    use crate::checks::{NativeForm, NativeValidation};
    let p: ShutdownParams = parse_params(params)?;
    let (min, margin) = (p.min_pre_stop_seconds, p.grace_margin_seconds);
    let sleep_of = format!(
        "(!has(c.lifecycle) || !has(c.lifecycle.preStop) ? -1 : \
         c.lifecycle.preStop.?sleep.?seconds.orValue(-1) >= 0 ? c.lifecycle.preStop.sleep.seconds : \
         cel.bind(found, {}.findAll('(^|[^0-9A-Za-z])sleep\\\\s+[0-9]+'), \
         found.size() == 0 ? -1 : found.map(m, int(m.find('[0-9]+$'))).max()))",
        "c.lifecycle.preStop.?exec.?command.orValue([]).join(' ')"
    );
    let grace = "variables.template.?spec.?terminationGracePeriodSeconds.orValue(30)";
    // The fix, where the rounds of `meshguard fix` leave it: every short sleep that is
    // Kubernetes' own (or absent) set to the minimum, then the grace period raised to cover the
    // longest sleep that is long enough plus the margin.
    let fixable = format!(
        "({sleep_of} < {min} && (!c.?lifecycle.?preStop.hasValue() || \
         (c.lifecycle.preStop.?sleep.hasValue() && c.lifecycle.preStop.size() == 1)))"
    );
    let container = "variables.templatePointer + '/spec/containers/' + string(i)";
    let mutation = format!(
        "cel.bind(cs, variables.template.?spec.?containers.orValue([]), \
         cel.bind(after, cs.map(c, {fixable} ? {min} : {sleep_of}).filter(s, s >= {min}), \
         cs.transformList(i, c, {fixable}, {}) + \
         (after.size() > 0 && {grace} < after.max() + {margin} ? {} : [])))",
        set_op("c", container, &["lifecycle", "preStop", "sleep", "seconds"], &min.to_string()),
        set_patch(
            "variables.template",
            "variables.templatePointer",
            &["spec", "terminationGracePeriodSeconds"],
            &format!("after.max() + {margin}")
        ),
    );
    Ok(NativeForm {
        mutations: vec![crate::checks::NativeMutation::on_template(mutation)],
        variables: vec![(
            "sleeps".into(),
            format!("variables.template.?spec.?containers.orValue([]).map(c, {sleep_of})"),
        )],
        validations: vec![
            NativeValidation::new(
                format!("variables.sleeps.all(s, s >= {min})"),
                format!(
                    "variables.template.spec.containers.filter(c, !({sleep_of} >= {min})).map(c, \
                     cel.bind(name, type(c.?name.orValue(null)) == string ? c.name : '?', cel.bind(s, {sleep_of}, s < 0 ? \
                     'container `' + name + '` has no preStop sleep; add `lifecycle.preStop.sleep.seconds: {min}` (or exec `sleep {min}`) \
                     so endpoints drain before it stops' : \
                     'container `' + name + '`: preStop sleeps ' + string(s) + 's, less than {min}s; the proxy and endpoints need that long to drain'))).join('; ')"
                ),
                "spec.containers",
            )
            .on_template(),
            NativeValidation::new(
                format!(
                    "!variables.sleeps.exists(s, s >= {min}) || {grace} >= variables.sleeps.filter(s, s >= {min}).max() + {margin}"
                ),
                format!(
                    "cel.bind(longest, variables.sleeps.filter(s, s >= {min}).max(), 'terminationGracePeriodSeconds is ' + \
                     (type(variables.template.?spec.?terminationGracePeriodSeconds.orValue(null)) == int ? \
                     string(variables.template.spec.terminationGracePeriodSeconds) + 's' : 'the default 30s') + \
                     ', below the preStop sleep ' + string(longest) + 's + margin {margin}s; set it to at least ' + string(longest + {margin}))"
                ),
                "spec.terminationGracePeriodSeconds",
            )
            .on_template(),
        ],
        ..Default::default()
    })
}

/// `istio-injection-rollout` in CEL, for `meshguard rules export`.
fn native_injection_rollout(params: &Value) -> Result<crate::checks::NativeForm, crate::checks::ParamError> {
    use crate::checks::native::{any_glob, is_core, template_has_meta, template_meta, NAMESPACE};
    use crate::checks::NativeValidation;
    let p: RolloutParams = parse_params(params)?;
    let allowed = |ns: &str| match &p.allowed_namespaces {
        None => "true".to_string(),
        Some(a) => any_glob(a, ns),
    };
    let required = any_glob(&p.required_namespaces, NAMESPACE);
    let namespace = is_core("Namespace");
    let ns_label = |key: &str| format!("string(object.?metadata.?labels[?'{key}'].orValue(''))");
    let enables = format!("{} == 'enabled'", ns_label("istio-injection"));
    let selects_revision = "object.?metadata.?labels[?'istio.io/rev'].hasValue()";
    let own = allowed("object.metadata.name");
    let breaks = |value: String| {
        format!("(({value} == 'true' && !{}) || ({value} == 'false' && {required}))", allowed(NAMESPACE))
    };
    let pod_message = |value: String| {
        format!(
            "object.kind + ' `' + object.metadata.name + '` ' + ({value} == 'true' ? \
             'opts into sidecar injection but namespace `' + {NAMESPACE} + '` is not in the rollout\\'s allowedNamespaces' : \
             'opts out of sidecar injection, but namespace `' + {NAMESPACE} + '` is required to be in the mesh')"
        )
    };
    let has_label = template_has_meta("labels", INJECT_KEY);
    let has_annotation = template_has_meta("annotations", INJECT_KEY);
    let label = template_meta("labels", INJECT_KEY);
    let annotation = template_meta("annotations", INJECT_KEY);
    Ok(vec![
        NativeValidation::new(
            format!("!{namespace} || {own} || !({enables})"),
            "'namespace `' + object.metadata.name + '` enables sidecar injection but is not in the rollout\\'s allowedNamespaces'",
            "metadata.labels['istio-injection']",
        ),
        NativeValidation::new(
            format!("!{namespace} || {own} || {enables} || !{selects_revision}"),
            "'namespace `' + object.metadata.name + '` selects an Istio revision but is not in the rollout\\'s allowedNamespaces'",
            "metadata.labels['istio.io/rev']",
        ),
        NativeValidation::new(
            format!("!{has_label} || !{}", breaks(label.clone())),
            pod_message(label),
            &format!("metadata.labels['{INJECT_KEY}']"),
        )
        .on_template(),
        NativeValidation::new(
            format!("{has_label} || !{has_annotation} || !{}", breaks(annotation.clone())),
            pod_message(annotation),
            &format!("metadata.annotations['{INJECT_KEY}']"),
        )
        .on_template(),
    ]
    .into())
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
    fn sleep_parsing() {
        assert_eq!(sleep_in("sh -c sleep 40"), Some(40));
        assert_eq!(sleep_in("curl -XPOST localhost:15000/healthcheck/fail && sleep 5; sleep 30"), Some(30));
        assert_eq!(sleep_in("nosleep 40"), None);
        assert_eq!(sleep_in("sleep"), None);
    }
}
