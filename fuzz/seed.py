#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target from the repo's own examples and test corpus:
fuzz/corpus/<target>/seed-*. Run once before a campaign; the campaign adds what it finds."""
import glob, json, os, struct

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
corpus = os.path.join(root, "fuzz", "corpus")

def put(target, name, data):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

manifests = sorted(glob.glob(os.path.join(root, "examples", "manifests*", "**", "*.yaml"), recursive=True))
for i, path in enumerate(manifests):
    text = open(path, "rb").read()
    put("yaml", f"manifest-{i}", text)
    put("fix", f"manifest-{i}", text)
put("fix", "crlf", "apiVersion: v1\r\nkind: Service\r\nmetadata:\r\n  name: a\r\nspec:\r\n  ports:\r\n  - name: web\r\n    port: 80")
put("yaml", "merge", "base: &b {name: web, port: 80}\nports:\n- <<: *b\n  port: 81\n")
put("yaml", "bom", "\ufeffapiVersion: v1\nkind: Service\n")
put("yaml", "json", '{"apiVersion": "v1", "kind": "List", "items": [{"kind": "Pod"}]}')

for i, path in enumerate([os.path.join(root, "policy-core", "src", "default-rules.yaml"),
                          os.path.join(root, "examples", "envoy", "rules.yaml")]):
    put("ruleset", f"rules-{i}", open(path, "rb").read())

objects = []
for path in sorted(glob.glob(os.path.join(root, "examples", "manifests", "**", "*.yaml"), recursive=True)):
    # The examples are simple enough to split on document markers for seeds.
    for doc in open(path).read().split("\n---"):
        if "kind:" in doc:
            objects.append(doc)
for i, obj in enumerate(objects[:8]):
    # Seeds in JSON: build a minimal object from the YAML's kind line so admission gets real shapes.
    kind = [l.split(":", 1)[1].strip() for l in obj.splitlines() if l.startswith("kind:")][0]
    review = {"request": {"uid": str(i), "operation": "CREATE", "namespace": "shop",
                          "object": {"apiVersion": "v1", "kind": kind, "metadata": {"name": f"o{i}", "namespace": "shop"},
                                     "spec": {"ports": [{"name": "web", "port": 80}]}}},
              "settings": {}}
    put("admission", f"review-{i}", json.dumps(review))
    put("opa_input", f"input-{i}", b"\x00" + json.dumps({"review": review["request"], "parameters": {}}).encode())

def header_map(pairs):
    out = struct.pack("<I", len(pairs))
    for k, v in pairs:
        out += struct.pack("<II", len(k), len(v))
    for k, v in pairs:
        out += k.encode() + b"\0" + v.encode() + b"\0"
    return out

put("envoy_headers", "get", header_map([(":method", "GET"), (":path", "/api/orders"), (":authority", "api.shop"),
                                        ("x-tenant", "shop"), ("x-request-id", "3f2c9a1e-8d7b-4c61-9f0e-2a5b6c7d8e9f")]))
put("envoy_headers", "grpc", header_map([(":method", "POST"), (":path", "/shop.Orders/Get"), ("content-type", "application/grpc"),
                                         ("te", "trailers"), ("host", "api")]))
