# meshguard's built-in Kubernetes rule set (policy-core/src/default-rules.yaml, default params),
# written the way a platform team would write it for OPA/Gatekeeper/conftest, so regorus can be
# measured on the same work. benches/peers/README.md says how faithful it is; the parity test
# (benches/tests/peers_parity.rs) holds it to the same findings as policy-core on the corpus.
#
# input: {"namespace": "<default namespace>", "objects": [<Kubernetes objects>]}
# query: data.meshguard.findings -> set of {"rule", "object" (index), "action", "path"}
package meshguard

import rego.v1

default_namespace := object.get(input, "namespace", "default")

protocols := ["http", "http2", "https", "grpc", "grpc-web", "tcp", "tls", "udp", "mongo", "mysql", "redis"]

http_protocols := ["http", "http2", "grpc", "grpc-web"]

platform_namespaces := ["istio-system"]

long_running := {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Pod"}

cluster_scoped := {
	"Namespace", "Node", "PersistentVolume", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
	"StorageClass", "PriorityClass", "IngressClass", "RuntimeClass", "APIService", "CSIDriver", "CSINode",
	"ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "ValidatingAdmissionPolicy",
	"ValidatingAdmissionPolicyBinding", "ClusterPolicyReport", "ClusterAdmissionPolicy",
}

template_prefix := {
	"Deployment": "spec.template.", "StatefulSet": "spec.template.", "DaemonSet": "spec.template.",
	"ReplicaSet": "spec.template.", "ReplicationController": "spec.template.", "Job": "spec.template.",
	"CronJob": "spec.jobTemplate.spec.template.",
}

proxy_config_key := "proxy.istio.io/config"

inject_key := "sidecar.istio.io/inject"

# --- object views -------------------------------------------------------------------------------

group_of(o) := g if {
	parts := split(object.get(o, "apiVersion", ""), "/")
	count(parts) == 2
	g := parts[0]
} else := ""

namespace_of(o) := "" if {
	cluster_scoped[o.kind]
} else := ns if {
	ns := o.metadata.namespace
	is_string(ns)
} else := default_namespace

meta[i] := {"kind": object.get(o, "kind", ""), "group": group_of(o), "name": object.get(o, ["metadata", "name"], ""), "ns": namespace_of(o)} if {
	some i, o in input.objects
}

# Pod templates: the object itself for a Pod, else the workload's template.
template[i] := {"t": o, "prefix": ""} if {
	some i, o in input.objects
	o.kind == "Pod"
}

template[i] := {"t": t, "prefix": template_prefix[o.kind]} if {
	some i, o in input.objects
	template_prefix[o.kind]
	t := object.get(o, split(trim_suffix(template_prefix[o.kind], "."), "."), null)
	t != null
}

is_core(i, kind) if {
	meta[i].kind == kind
	meta[i].group == ""
}

is_istio(i, kinds) if {
	meta[i].kind in kinds
	endswith(meta[i].group, "istio.io")
}

glob_match(pattern, name) if pattern == "*"

glob_match(pattern, name) if {
	endswith(pattern, "*")
	startswith(name, trim_suffix(pattern, "*"))
}

glob_match(pattern, name) if {
	startswith(pattern, "*")
	not endswith(pattern, "*")
	endswith(name, trim_prefix(pattern, "*"))
}

glob_match(pattern, name) if pattern == name

any_glob(patterns, name) if {
	some p in patterns
	glob_match(p, name)
}

excluded_system(i) if any_glob(["kube-*", "istio-system"], meta[i].ns)

# Labels and annotations as Kubernetes stores them: strings (YAML booleans and numbers tolerated).
map_str(m, key) := v if {
	v := m[key]
	is_string(v)
} else := json.marshal(v) if {
	v := m[key]
	not is_string(v)
	not is_object(v)
	not is_array(v)
	v != null
}

labels_of(o) := object.get(o, ["metadata", "labels"], {})

annotations_of(o) := object.get(o, ["metadata", "annotations"], {})

strings_of(v) := concat(" ", [s | some s in v; is_string(s)]) if {
	is_array(v)
} else := v if {
	is_string(v)
} else := ""

# --- ports and protocols --------------------------------------------------------------------------

# The longest protocol a port name declares (`p` or `p-<suffix>`).
name_protocol(name, protos) := p if {
	lower_name := lower(name)
	matching := [q | some q in protos; name_has_protocol(lower_name, q)]
	count(matching) > 0
	longest := max([count(q) | some q in matching])
	some p in matching
	count(p) == longest
}

name_has_protocol(name, q) if name == q

name_has_protocol(name, q) if startswith(name, concat("", [q, "-"]))

port_protocol(port, protos) := lower(port.appProtocol) if {
	is_string(port.appProtocol)
} else := name_protocol(port.name, protos) if {
	not port.appProtocol
	is_string(port.name)
}

protocol_or_tcp(port) := p if {
	p := port_protocol(port, protocols)
} else := "tcp"

service_ports(o) := object.get(o, ["spec", "ports"], [])

# --- istio-port-name (deny, excludedNamespaces: kube-*) ------------------------------------------

findings contains {"rule": "istio-port-name", "object": i, "action": "deny", "path": path} if {
	some i
	is_core(i, "Service")
	not any_glob(["kube-*"], meta[i].ns)
	some j, port in service_ports(input.objects[i])
	path := port_name_problem(port, j)
}

findings contains {"rule": "istio-port-name", "object": i, "action": "warn", "path": sprintf("spec.ports[%d].name", [j])} if {
	some i
	is_core(i, "Service")
	not any_glob(["kube-*"], meta[i].ns)
	some j, port in service_ports(input.objects[i])
	is_string(port.appProtocol)
	lower(port.appProtocol) in protocols
	is_string(port.name)
	name_protocol(port.name, protocols) != lower(port.appProtocol)
}

port_name_problem(port, j) := sprintf("spec.ports[%d].appProtocol", [j]) if {
	is_string(port.appProtocol)
	not lower(port.appProtocol) in protocols
} else := sprintf("spec.ports[%d]", [j]) if {
	not port.appProtocol
	not is_string(port.name)
} else := sprintf("spec.ports[%d].name", [j]) if {
	not port.appProtocol
	is_string(port.name)
	not name_protocol(port.name, protocols)
}

# --- istio-headless-port-conflict (deny) ----------------------------------------------------------

headless(i) if {
	is_core(i, "Service")
	input.objects[i].spec.clusterIP == "None"
}

# {"at", "number", "protocol"} of each TCP port of a headless Service.
headless_ports[i] := [{"at": j, "number": port.port, "protocol": protocol_or_tcp(port)} |
	some j, port in ports
	object.get(port, "protocol", "TCP") == "TCP"
	is_number(port.port)
	port.port >= 0
] if {
	some i
	headless(i)
	ports := service_ports(input.objects[i])
}

findings contains {"rule": "istio-headless-port-conflict", "object": i, "action": "deny", "path": sprintf("spec.ports[%d]", [p.at])} if {
	some i, ports in headless_ports
	some p in ports
	conflicting_port(i, p)
}

conflicting_port(i, p) if {
	some q in headless_ports[i]
	q.at != p.at
	q.number == p.number
	q.protocol != p.protocol
}

conflicting_port(i, p) if {
	some other, ports in headless_ports
	other != i
	meta[other].ns == meta[i].ns
	some q in ports
	q.number == p.number
	q.protocol != p.protocol
}

# --- istio-sidecar-start-order (deny, excludedNamespaces: kube-*, istio-system) -------------------

namespace_labels[name] := labels_of(o) if {
	some o in input.objects
	o.kind == "Namespace"
	name := object.get(o, ["metadata", "name"], "")
}

gets_sidecar(i) if {
	pod_inject(i) == "true"
}

gets_sidecar(i) if {
	not pod_inject(i)
	labels := namespace_labels[meta[i].ns]
	map_str(labels, "istio-injection") == "enabled"
}

gets_sidecar(i) if {
	not pod_inject(i)
	labels := namespace_labels[meta[i].ns]
	not map_str(labels, "istio-injection") == "enabled"
	labels["istio.io/rev"]
}

pod_inject(i) := v if {
	v := map_str(labels_of(template[i].t), inject_key)
} else := v if {
	v := map_str(annotations_of(template[i].t), inject_key)
}

proxy_config(i) := text if {
	text := annotations_of(template[i].t)[proxy_config_key]
	is_string(text)
}

# `key: value` inside the proxy config annotation, YAML or JSON.
proxy_config_setting(i, key) := trim(trim_space(m[0][1]), "\"'") if {
	pattern := concat("", [key, `["']*\s*:\s*([^,}\n]*)`])
	m := regex.find_all_string_submatch_n(pattern, proxy_config(i), 1)
	count(m) > 0
}

polls_proxy(i) if {
	some c in object.get(template[i].t, ["spec", "containers"], [])
	text := concat(" ", [
		strings_of(object.get(c, "command", null)),
		strings_of(object.get(c, "args", null)),
		strings_of(object.get(c, ["lifecycle", "postStart", "exec", "command"], null)),
	])
	polls_text(text)
}

polls_text(text) if contains(text, "15020/healthz/ready")

polls_text(text) if contains(text, "pilot-agent wait")

findings contains {"rule": "istio-sidecar-start-order", "object": i, "action": "deny", "path": path} if {
	some i
	template[i]
	not excluded_system(i)
	gets_sidecar(i)
	not proxy_config_setting(i, "holdApplicationUntilProxyStarts") == "true"
	not polls_proxy(i)
	path := start_order_path(i)
}

start_order_path(i) := sprintf("%smetadata.annotations[\"%s\"]", [template[i].prefix, proxy_config_key]) if {
	proxy_config_setting(i, "holdApplicationUntilProxyStarts")
} else := sprintf("%smetadata", [template[i].prefix])

# --- istio-graceful-shutdown (deny, excludedNamespaces: kube-*, istio-system) ---------------------

pre_stop_command(c) := strings_of(object.get(c, ["lifecycle", "preStop", "exec", "command"], null))

pre_stop_sleep(c) := s if {
	s := c.lifecycle.preStop.sleep.seconds
	is_number(s)
	s >= 0
} else := max(sleeps) if {
	c.lifecycle.preStop
	sleeps := [to_number(m[2]) | some m in regex.find_all_string_submatch_n(`(^|[^A-Za-z0-9])sleep\s+([0-9]+)`, pre_stop_command(c), -1)]
	count(sleeps) > 0
}

containers_of(i) := object.get(template[i].t, ["spec", "containers"], [])

findings contains {"rule": "istio-graceful-shutdown", "object": i, "action": "deny", "path": path} if {
	some i
	meta[i].kind in long_running
	template[i]
	not excluded_system(i)
	some j, c in containers_of(i)
	not pre_stop_sleep(c) >= 30
	path := sprintf("%sspec.containers[%d].lifecycle.preStop", [template[i].prefix, j])
}

findings contains {"rule": "istio-graceful-shutdown", "object": i, "action": "deny", "path": path} if {
	some i
	meta[i].kind in long_running
	template[i]
	not excluded_system(i)
	sleeps := [s | some c in containers_of(i); s := pre_stop_sleep(c); s >= 30]
	count(sleeps) > 0
	grace := object.get(template[i].t, ["spec", "terminationGracePeriodSeconds"], 30)
	grace < max(sleeps) + 30
	path := sprintf("%sspec.terminationGracePeriodSeconds", [template[i].prefix])
}

# --- istio-http-drain (warn, excludedNamespaces: kube-*, istio-system) ----------------------------

drains_by_config(i) if contains(proxy_config(i), "terminationDrainDuration")

drains_by_config(i) if contains(proxy_config(i), "EXIT_ON_ZERO_ACTIVE_CONNECTIONS")

selects(svc, labels) if {
	selector := svc.spec.selector
	is_object(selector)
	count(selector) > 0
	every k, v in selector {
		labels[k] == v
	}
}

serves_http(i) if {
	labels := labels_of(template[i].t)
	some s, svc in input.objects
	meta[s].kind == "Service"
	meta[s].ns == meta[i].ns
	s != i
	selects(svc, labels)
	some port in service_ports(svc)
	port_protocol(port, protocols) in http_protocols
}

serves_http(i) if {
	some c in containers_of(i)
	some port in object.get(c, "ports", [])
	is_string(port.name)
	name_protocol(port.name, http_protocols)
}

# The first container whose preStop calls the proxy's /healthcheck/fail.
drain_hook(i) := min(hooks) if {
	hooks := [j |
		some j, c in containers_of(i)
		c.lifecycle.preStop
		indexof(pre_stop_command(c), "/healthcheck/fail") >= 0
	]
	count(hooks) > 0
}

ordered_hook(_, sleep_at) if sleep_at < 0

ordered_hook(fail_at, sleep_at) if fail_at < sleep_at

findings contains {"rule": "istio-http-drain", "object": i, "action": "warn", "path": path} if {
	some i
	meta[i].kind in long_running
	template[i]
	not excluded_system(i)
	not drains_by_config(i)
	serves_http(i)
	path := drain_problem(i)
}

drain_problem(i) := sprintf("%smetadata", [template[i].prefix]) if {
	not drain_hook(i)
} else := sprintf("%sspec.containers[%d].lifecycle.preStop", [template[i].prefix, j]) if {
	j := drain_hook(i)
	command := pre_stop_command(containers_of(i)[j])
	not ordered_hook(indexof(command, "/healthcheck/fail"), indexof(command, "sleep"))
}

# --- istio-injection-rollout (warn; requiredNamespaces: [], allowedNamespaces unset) --------------

required_namespaces := []

findings contains {"rule": "istio-injection-rollout", "object": i, "action": "warn", "path": path} if {
	some i
	template[i]
	not map_str(labels_of(template[i].t), inject_key)
	map_str(annotations_of(template[i].t), inject_key) == "false"
	any_glob(required_namespaces, meta[i].ns)
	path := sprintf("%smetadata.annotations[\"%s\"]", [template[i].prefix, inject_key])
}

findings contains {"rule": "istio-injection-rollout", "object": i, "action": "warn", "path": path} if {
	some i
	template[i]
	map_str(labels_of(template[i].t), inject_key) == "false"
	any_glob(required_namespaces, meta[i].ns)
	path := sprintf("%smetadata.labels[\"%s\"]", [template[i].prefix, inject_key])
}

# --- istio-export-to-own-namespace (deny) ---------------------------------------------------------

findings contains {"rule": "istio-export-to-own-namespace", "object": i, "action": "deny", "path": path} if {
	some i
	is_istio(i, {"VirtualService", "DestinationRule", "ServiceEntry"})
	not any_glob(platform_namespaces, meta[i].ns)
	some path in export_problems(i)
}

export_problems(i) := {"spec.exportTo"} if {
	list := input.objects[i].spec.exportTo
	is_array(list)
	count(list) == 0
} else := {sprintf("spec.exportTo[%d]", [k]) |
	some k, target in input.objects[i].spec.exportTo
	not target in {".", meta[i].ns}
} if {
	is_array(input.objects[i].spec.exportTo)
} else := {"spec.exportTo"}

# --- istio-host-in-own-namespace (deny) -----------------------------------------------------------

hosts_of(i) := {path: h |
	h := input.objects[i].spec.hosts[k]
	is_string(h)
	path := sprintf("spec.hosts[%d]", [k])
} if {
	is_istio(i, {"VirtualService"})
} else := {"spec.host": h} if {
	is_istio(i, {"DestinationRule"})
	h := input.objects[i].spec.host
	is_string(h)
}

host_problem(host, _) if host == "*"

host_problem(host, own) if {
	labels := split(host, ".")
	in_cluster(labels)
	labels[1] != own
}

host_problem(host, _) if {
	labels := split(host, ".")
	not in_cluster(labels)
	count(labels) > 1
	contains(host, "*")
}

host_problem(host, _) if {
	labels := split(host, ".")
	not in_cluster(labels)
	count(labels) > 1
	endswith(host, ".cluster.local")
}

# `<name>.<namespace>.svc` or `<name>.<namespace>.svc.cluster.local`
in_cluster(labels) if {
	count(labels) == 3
	labels[2] == "svc"
	not labels[0] == "svc"
	not labels[1] == "svc"
}

in_cluster(labels) if {
	labels[2] == "svc"
	not labels[0] == "svc"
	not labels[1] == "svc"
	concat(".", array.slice(labels, 3, count(labels))) == "cluster.local"
}

findings contains {"rule": "istio-host-in-own-namespace", "object": i, "action": "deny", "path": path} if {
	some i
	not any_glob(platform_namespaces, meta[i].ns)
	some path, host in hosts_of(i)
	host_problem(host, meta[i].ns)
}

# --- istio-platform-only-kinds (deny) -------------------------------------------------------------

findings contains {"rule": "istio-platform-only-kinds", "object": i, "action": "deny", "path": "kind"} if {
	some i
	endswith(meta[i].group, "istio.io")
	not any_glob(platform_namespaces, meta[i].ns)
	platform_only(meta[i])
}

platform_only(m) if m.kind in {"EnvoyFilter", "Gateway"}

platform_only(m) if {
	m.kind in {"PeerAuthentication", "AuthorizationPolicy", "Telemetry", "Sidecar"}
	m.ns == "istio-system"
}

# --- istio-single-default-sidecar (deny) ----------------------------------------------------------

default_sidecar(i) if {
	is_istio(i, {"Sidecar"})
	not input.objects[i].spec.workloadSelector
}

findings contains {"rule": "istio-single-default-sidecar", "object": i, "action": "deny", "path": "spec"} if {
	some i
	default_sidecar(i)
	some k
	default_sidecar(k)
	k != i
	meta[k].ns == meta[i].ns
}

# --- istio-circuit-breaker (warn) -----------------------------------------------------------------

findings contains {"rule": "istio-circuit-breaker", "object": i, "action": "warn", "path": "spec.trafficPolicy"} if {
	some i
	is_istio(i, {"DestinationRule"})
	some field in ["outlierDetection", "connectionPool"]
	not input.objects[i].spec.trafficPolicy[field]
}

# --- istio-app-version-labels (audit; required-labels on apps Deployment/StatefulSet/DaemonSet) ---

findings contains {"rule": "istio-app-version-labels", "object": i, "action": "audit", "path": path} if {
	some i
	meta[i].group == "apps"
	meta[i].kind in {"Deployment", "StatefulSet", "DaemonSet"}
	template[i]
	some key in ["app", "version"]
	not map_str(labels_of(template[i].t), key)
	path := sprintf("%smetadata.labels.%s", [template[i].prefix, key])
}
