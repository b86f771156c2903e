//! Service ports: the protocol Istio reads from a port's name, and headless Services sharing a port.

use super::*;
use crate::checks::{parse_params, Applies, CheckSpec, Compiled, ObjectCheck, ParamDoc, ParamError, Target};
use crate::finding::Violation;
use crate::object::{Input, Object};
use serde::Deserialize;
use serde_json::Value;

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
    summary: crate::checks::doc("Every Service port declares its protocol: `appProtocol`, or a name `<protocol>` / `<protocol>-<suffix>`. \
              Without it Istio treats the traffic as opaque TCP and HTTP routing, retries and metrics silently stop working. \
              A name prefix that contradicts `appProtocol` is a warning."),
    params: &[ParamDoc {
        name: "protocols",
        ty: "list of strings",
        default: "[http, http2, https, grpc, grpc-web, tcp, tls, udp, mongo, mysql, redis]",
        description: crate::checks::doc("Protocols a port name prefix or `appProtocol` may name."),
    }],
    example_params: crate::checks::doc("{}"),
    passing_example: crate::checks::doc("\
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec:
  ports:
  - {name: http-web, port: 8080}
  - {name: metrics, appProtocol: http, port: 9090}
"),
    failing_example: crate::checks::doc("\
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec:
  ports:
  - {name: web, port: 8080}
"),
    fix: crate::checks::doc("Renames the port to `<protocol>-<name>` (or names an unnamed one `<protocol>`) only when the protocol is certain: `appProtocol` (a contradicting name), a gRPC or h2c hint in the name, or a port with one meaning (80, 8080, 9090 HTTP; 443, 8443 HTTPS; 50051 gRPC) that a numeric targetPort does not contradict, and only to a protocol the rule lists and a name no other port has. Other ports are guesses and left to a person. References to the old name (an Ingress backend, a ServiceMonitor) must follow the rename."),
    fix_scope: &["/spec/ports/*/name"],
    compile: |params| {
        let p: PortNameParams = parse_params(params)?;
        if p.protocols.is_empty() {
            return Err(ParamError::new("protocols", "must list at least one protocol"));
        }
        Ok(Compiled::Object(Box::new(PortName { protocols: p.protocols.iter().map(|s| s.to_ascii_lowercase()).collect() })))
    },
    native: crate::checks::Native::Vap(native_port_name),
};

/// The port's protocol where it is certain, never a guess: a gRPC or h2c hint in its name, or a
/// port number with one meaning (80, 8080 and 9090 HTTP, 443 and 8443 HTTPS, 50051 gRPC) that a
/// numeric targetPort does not contradict; and only a protocol the rule lists.
fn certain_protocol(port: &Value, name: Option<&str>, protocols: &[String]) -> Option<&'static str> {
    let well_known = |n: u64| match n {
        80 | 8080 | 9090 => Some("http"),
        443 | 8443 => Some("https"),
        50051 => Some("grpc"),
        _ => None,
    };
    let hinted = name.map(str::to_ascii_lowercase).and_then(|n| {
        if n.contains("grpc") {
            Some("grpc")
        } else if n.contains("h2c") {
            Some("http2")
        } else {
            None
        }
    });
    let by_number = port.get("port").and_then(Value::as_u64).and_then(well_known).filter(|p| {
        port.get("targetPort").and_then(Value::as_u64).is_none_or(|t| well_known(t).is_none_or(|q| q == *p))
    });
    hinted.or(by_number).filter(|p| protocols.iter().any(|k| k == p))
}

/// Renames port `index` to `name` when that is a valid port name no other port has.
fn rename_fix(obj: &Object<'_>, index: usize, name: String) -> Option<crate::fix::Fix> {
    let taken = service_ports(obj).any(|(i, p)| i != index && p.get("name").and_then(Value::as_str) == Some(&name));
    let valid = name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    (valid && !taken).then(|| {
        crate::fix::Fix::set(
            obj.value,
            &service_port_path(index).key("name"),
            Value::String(name.clone()),
            format!("name the port `{name}`"),
        )
    })
}

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
                        let suffix = n.split_once('-').map_or(n, |(_, s)| s);
                        out.push(
                            Violation::advisory(
                                path().key("name"),
                                format!(
                                    "{}: the name says `{np}` but appProtocol says `{app}`; Istio uses appProtocol, rename the port to `{app_lc}-{suffix}`",
                                    port_label(port),
                                ),
                            )
                            .with_fix(rename_fix(obj, index, format!("{app_lc}-{suffix}"))),
                        );
                    }
                }
                continue;
            }
            match name {
                None => {
                    let guess = suggest_protocol(port);
                    let fix = certain_protocol(port, None, &self.protocols)
                        .and_then(|p| rename_fix(obj, index, p.to_string()));
                    out.push(
                        Violation::new(
                            path(),
                            format!(
                                "{} has no name and no appProtocol; Istio will treat it as opaque TCP. Name it `{guess}` or `{guess}-<suffix>`, or set appProtocol",
                                port_label(port)
                            ),
                        )
                        .with_fix(fix),
                    );
                }
                Some(n) if name_protocol.is_none() => {
                    let guess = suggest_protocol(port);
                    let fix = certain_protocol(port, Some(n), &self.protocols)
                        .and_then(|p| rename_fix(obj, index, format!("{p}-{n}")));
                    out.push(
                        Violation::new(
                            path().key("name"),
                            format!(
                                "{}: name `{n}` does not start with a protocol ({}); rename it to `{guess}-{n}` or set appProtocol",
                                port_label(port),
                                known()
                            ),
                        )
                        .with_fix(fix),
                    );
                }
                Some(_) => {}
            }
        }
    }
}

struct HeadlessPortConflict {
    protocols: Vec<String>,
}

pub static HEADLESS_PORT_CONFLICT: CheckSpec = CheckSpec {
    id: "istio-headless-port-conflict",
    target: Target::Kubernetes,
    applies_to: Applies::Kinds(&["Service"]),
    summary: crate::checks::doc(
        "Headless Services (`clusterIP: None`) in one namespace do not use one port number with different protocols: \
              Istio builds listeners per pod IP and port for them, so the second protocol breaks the first. \
              Compares every headless Service in the input (one object alone at admission).",
    ),
    params: &[ParamDoc {
        name: "protocols",
        ty: "list of strings",
        default: "[http, http2, https, grpc, grpc-web, tcp, tls, udp, mongo, mysql, redis]",
        description: crate::checks::doc("Protocols recognised in port names; a port without one counts as `tcp`."),
    }],
    example_params: crate::checks::doc("{}"),
    passing_example: crate::checks::doc(
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
    failing_example: crate::checks::doc(
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
    fix: crate::checks::doc("None: which Service gives up the port is the teams' to agree."),
    fix_scope: &[],
    compile: |params| {
        let p: PortNameParams = parse_params(params)?;
        Ok(Compiled::Object(Box::new(HeadlessPortConflict { protocols: p.protocols })))
    },
    native: crate::checks::Native::WebhookOnly(
        "compares a headless Service with the other headless Services of its namespace, which a policy over one object cannot read",
    ),
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

/// `istio-port-name` in CEL, for `meshguard rules export`: the check's three findings over
/// `spec.ports` (a contradicting name is advisory there too).
fn native_port_name(params: &Value) -> Result<crate::checks::NativeForm, ParamError> {
    use crate::checks::native::{is_core, list, lit};
    use crate::checks::NativeValidation;
    let p: PortNameParams = parse_params(params)?;
    let protocols: Vec<String> = p.protocols.iter().map(|s| s.to_ascii_lowercase()).collect();
    let known = list(&protocols);
    let service = is_core("Service");
    let ports = "object.?spec.?ports.orValue([])";
    let app = "port.appProtocol.lowerAscii()";
    let named = format!("{known}.filter(p, port.name.lowerAscii() == p || port.name.lowerAscii().startsWith(p + '-'))");
    let label = "(has(port.name) ? 'port ' + string(port.?port.orValue('')) + ' (`' + port.name + '`)' : 'port ' + string(port.?port.orValue('')))";
    let failing = |condition: &str| format!("{ports}.filter(port, !({condition})).map(port, {label}).join(', ')");
    let known_text = protocols.join(", ");
    let known_app = format!("!has(port.appProtocol) || {app} in {known}");
    let declared = format!("has(port.appProtocol) || (has(port.name) && {named}.size() > 0)");
    let agrees = format!(
        "!has(port.appProtocol) || !({app} in {known}) || !has(port.name) || {named}.size() == 0 || \
         {named}.exists(p, p == {app} && {named}.all(q, q.size() <= p.size()))"
    );
    let message = |condition: &str, text: String| format!("{} + {}", failing(condition), lit(&text));
    Ok(vec![
        NativeValidation::new(
            format!("!{service} || {ports}.all(port, {known_app})"),
            message(&known_app, format!(": appProtocol is not a known protocol ({known_text})")),
            "spec.ports",
        ),
        NativeValidation::new(
            format!("!{service} || {ports}.all(port, {declared})"),
            message(
                &declared,
                format!(
                    " declares no protocol, so Istio treats it as opaque TCP; name it `<protocol>` or \
                     `<protocol>-<suffix>` ({known_text}), or set appProtocol"
                ),
            ),
            "spec.ports",
        ),
        NativeValidation::new(
            format!("!{service} || {ports}.all(port, {agrees})"),
            message(
                &agrees,
                ": the name says another protocol than appProtocol; Istio uses appProtocol, rename the port".into(),
            ),
            "spec.ports",
        )
        .advisory(),
    ]
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
