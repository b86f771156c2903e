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

/// The name the fix would give `port`, computed alike for every port: the protocol appProtocol
/// says before the name's suffix (a contradicting name), or a certain protocol before the name (or
/// as the name, for an unnamed port); `None` when no name is certain.
fn proposed_name(port: &Value, protocols: &[String]) -> Option<String> {
    let name = port.get("name").and_then(Value::as_str);
    let name_protocol = name.and_then(|n| protocol_of_name(n, protocols));
    if let Some(app) = port.get("appProtocol").and_then(Value::as_str) {
        let app = app.to_ascii_lowercase();
        let (n, np) = (name?, name_protocol?);
        let suffix = n.split_once('-').map_or(n, |(_, s)| s);
        return (protocols.contains(&app) && np != app).then(|| format!("{app}-{suffix}"));
    }
    match name {
        None => certain_protocol(port, None, protocols).map(str::to_string),
        Some(n) if name_protocol.is_none() => certain_protocol(port, Some(n), protocols).map(|p| format!("{p}-{n}")),
        Some(_) => None,
    }
}

/// Renames port `index` to its proposed name when that is a valid port name no other port has
/// or would be given (two ports proposed one name keep theirs: which one gets it is a person's
/// call, and a Service with two ports of one name is refused).
fn rename_fix(obj: &Object<'_>, index: usize, proposals: &[Option<String>]) -> Option<crate::fix::Fix> {
    let name = proposals.get(index)?.clone()?;
    let taken = service_ports(obj).any(|(i, p)| {
        i != index
            && (p.get("name").and_then(Value::as_str) == Some(&name)
                || proposals.get(i).is_some_and(|other| other.as_deref() == Some(&name)))
    });
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
        let proposals = std::cell::OnceCell::new();
        let rename = |index: usize| {
            let all = proposals
                .get_or_init(|| service_ports(obj).map(|(_, p)| proposed_name(p, &self.protocols)).collect::<Vec<_>>());
            rename_fix(obj, index, all)
        };
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
                            .with_fix(rename(index)),
                        );
                    }
                }
                continue;
            }
            match name {
                None => {
                    // The advice names what the fix would write where the protocol is certain.
                    let guess = certain_protocol(port, None, &self.protocols).unwrap_or_else(|| suggest_protocol(port));
                    out.push(
                        Violation::new(
                            path(),
                            format!(
                                "{} has no name and no appProtocol; Istio will treat it as opaque TCP. Name it `{guess}` or `{guess}-<suffix>`, or set appProtocol",
                                port_label(port)
                            ),
                        )
                        .with_fix(rename(index)),
                    );
                }
                Some(n) if name_protocol.is_none() => {
                    let guess =
                        certain_protocol(port, Some(n), &self.protocols).unwrap_or_else(|| suggest_protocol(port));
                    out.push(
                        Violation::new(
                            path().key("name"),
                            format!(
                                "{}: name `{n}` does not start with a protocol ({}); rename it to `{guess}-{n}` or set appProtocol",
                                port_label(port),
                                known()
                            ),
                        )
                        .with_fix(rename(index)),
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
    // `port_label`, `suggest_protocol` and the check's three messages, one per failing port,
    // joined by `; ` as the findings they stand for.
    let number = "(type(port.port) == string ? '\"' + port.port + '\"' : string(port.port))";
    let label = format!(
        "(type(port.?name.orValue(null)) == string ? (has(port.port) ? 'port ' + {number} + ' (`' + port.name + '`)' : 'port `' + port.name + '`') : \
         has(port.port) ? 'port ' + {number} : 'port')"
    );
    let wk = |n: &str| {
        format!("({n} in [80, 8080, 9090] ? 'http' : {n} in [443, 8443] ? 'https' : {n} == 50051 ? 'grpc' : '')")
    };
    let by_number = format!(
        "(type(port.?port.orValue('')) != int || port.port < 0 ? '' : cel.bind(p, {}, p != '' &&          (type(port.?targetPort.orValue('')) != int || port.targetPort < 0 || {} == '' || {} == p) ? p : ''))",
        wk("port.port"),
        wk("port.targetPort"),
        wk("port.targetPort")
    );
    let certain = |name: &str| {
        format!(
            "cel.bind(p, {name}.lowerAscii().contains('grpc') ? 'grpc' : {name}.lowerAscii().contains('h2c') ? 'http2' : {by_number},              p in {known} ? p : '')"
        )
    };
    let suggest = "cel.bind(g, type(port.?targetPort.orValue('')) == int && port.targetPort >= 0 ? port.targetPort : \
         type(port.?port.orValue('')) == int && port.port >= 0 ? port.port : -1, \
         g in [80, 8000, 8080, 3000, 5000, 9090] ? 'http' : g in [443, 8443] ? 'https' : g == 50051 ? 'grpc' : \
         g == 3306 ? 'mysql' : g == 6379 ? 'redis' : g == 27017 ? 'mongo' : 'tcp')";
    // The advice names what the fix would write where the protocol is certain (`certain`), else
    // `suggest_protocol`'s guess.
    let guess = |name: &str| format!("cel.bind(c, {}, c != '' ? c : {suggest})", certain(name));
    let known_text = protocols.join(", ");
    let known_app = format!("!has(port.appProtocol) || {app} in {known}");
    let declared = format!("has(port.appProtocol) || (has(port.name) && {named}.size() > 0)");
    let agrees = format!(
        "!has(port.appProtocol) || !({app} in {known}) || !has(port.name) || {named}.size() == 0 || \
         {named}.exists(p, p == {app} && {named}.all(q, q.size() <= p.size()))"
    );
    let messages = |condition: &str, message: String| {
        format!("{ports}.filter(port, !({condition})).map(port, {message}).join('; ')")
    };
    let longest = format!("{named}.filter(p, {named}.all(q, q.size() <= p.size()))[0]");
    let suffix = "(port.name.contains('-') ? port.name.substring(port.name.indexOf('-') + 1) : port.name)";
    let validations = vec![
        NativeValidation::new(
            format!("!{service} || {ports}.all(port, {known_app})"),
            messages(
                &known_app,
                format!(
                    "{label} + ': appProtocol `' + port.appProtocol + '` is not a known protocol ' + {}",
                    lit(&format!("({known_text})"))
                ),
            ),
            "spec.ports",
        ),
        NativeValidation::new(
            format!("!{service} || {ports}.all(port, {declared})"),
            messages(
                &declared,
                format!(
                    "type(port.?name.orValue(null)) != string ? \
                     cel.bind(g, {}, {label} + ' has no name and no appProtocol; Istio will treat it as opaque TCP. Name it `' + g + '` or `' + g + \
                     '-<suffix>`, or set appProtocol') : \
                     {label} + ': name `' + port.name + '` does not start with a protocol ' + {} + '; rename it to `' + {} + '-' + \
                     port.name + '` or set appProtocol'",
                    guess("''"),
                    lit(&format!("({known_text})")),
                    guess("port.name")
                ),
            ),
            "spec.ports",
        ),
        NativeValidation::new(
            format!("!{service} || {ports}.all(port, {agrees})"),
            messages(
                &agrees,
                format!(
                    "{label} + ': the name says `' + {longest} + '` but appProtocol says `' + port.appProtocol + \
                     '`; Istio uses appProtocol, rename the port to `' + {app} + '-' + {suffix} + '`'"
                ),
            ),
            "spec.ports",
        )
        .advisory(),
    ];
    // The fix as `proposed_name` and `rename_fix` make it: each port's proposal ('' for none),
    // then a rename where it is a valid name no other port has or is proposed.
    // Over `n`, the port's name in this round (null: none).
    let named_n = format!("{known}.filter(p, n.lowerAscii() == p || n.lowerAscii().startsWith(p + '-'))");
    let longest = format!("{named_n}.filter(p, {named_n}.all(q, q.size() <= p.size()))[0]");
    let proposal = format!(
        "has(port.appProtocol) ? (type(port.appProtocol) == string && {app} in {known} && n != null && {named_n}.size() > 0 && \
           {longest} != {app} ? {app} + '-' + (n.contains('-') ? n.substring(n.indexOf('-') + 1) : n) : '') : \
         n == null ? {} : \
         {named_n}.size() > 0 ? '' : cel.bind(p, {}, p == '' ? '' : p + '-' + n)",
        certain("''"),
        certain("n")
    );
    // The rounds of `meshguard fix` (a rename can free the name another port needs), one
    // variable per step: `portNames<r>` the names after round r (null: none), `portProposals<r>`
    // each port's proposal from them ('' for none); a port is renamed where its proposal is a
    // valid name no other port has or is proposed.
    let ports_now = format!("({ports})");
    let mut variables = vec![(
        "portNames0".to_string(),
        format!(
            "{ports_now}.map(port, type(port) == map && type(port.?name.orValue(null)) == string ? port.name : null)"
        ),
    )];
    for r in 0..crate::fix::MAX_ROUNDS {
        variables.push((
            format!("portProposals{r}"),
            format!("{ports_now}.transformList(i, port, type(port) != map ? '' : cel.bind(n, variables.portNames{r}[i], {proposal}))"),
        ));
        variables.push((
            format!("portNames{}", r + 1),
            format!(
                "cel.bind(prop, variables.portProposals{r}, variables.portNames{r}.transformList(i, cur, cel.bind(p, prop[i], \
                 p != '' && p.size() <= 63 && p.matches('^[a-z0-9-]*$') && !p.startsWith('-') && !p.endsWith('-') && \
                 prop.filter(q, q == p).size() == 1 && !variables.portNames{r}.exists(q, q == p)) ? prop[i] : cur))"
            ),
        ));
    }
    let last = crate::fix::MAX_ROUNDS;
    Ok(crate::checks::NativeForm {
        validations,
        mutations: vec![crate::checks::NativeMutation {
            expression: format!(
                "!{service} ? [] : {ports_now}.transformList(i, port, variables.portNames{last}[i] != variables.portNames0[i], \
                 JSONPatch{{op: 'add', path: '/spec/ports/' + string(i) + '/name', value: variables.portNames{last}[i]}})"
            ),
            variables,
            template: false,
        }],
        ..Default::default()
    })
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
