#!/usr/bin/env python3
"""Load test of `meshguard serve` with a real load tool (oha), on loopback over TLS.

Starts the release binary with a self-signed certificate, posts a Deployment AdmissionReview (as
the API server sends it) for --seconds, and in the middle rotates the serving certificate and
reloads the rule set; samples the server's RSS at rest and under load; then a second run sends
SIGTERM to the server while under load. Writes target/bench/webhook-load.json, which
bench-report puts into BENCHMARKS.md. Every response must be an AdmissionReview answering its
request; any other outcome is counted and reported.

  scripts/webhook-load.py [--seconds 30] [--connections 16] [--engine wasm|native] [--http2] [--mutate]

--mutate posts to /mutate instead, with a rule set whose start-order rule mutates and a Deployment
that lacks the hold, so every answer carries a JSON Patch (target/bench/webhook-load-mutate.json).
"""
import argparse, json, os, shutil, signal, subprocess, sys, tempfile, threading, time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MESHGUARD = os.path.join(ROOT, "target", "release", "meshguard")

DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "api", "namespace": "shop", "labels": {"app": "api", "version": "v1"}},
    "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "api"}},
             "template": {"metadata": {"labels": {"app": "api", "version": "v1"},
                                       "annotations": {"proxy.istio.io/config": "{\"holdApplicationUntilProxyStarts\": true}"}},
                          "spec": {"terminationGracePeriodSeconds": 60,
                                   "containers": [{"name": "api", "image": "registry.local/shop/api:1.4.2",
                                                   "ports": [{"containerPort": 8080}],
                                                   "lifecycle": {"preStop": {"exec": {"command": ["/bin/sleep", "30"]}}},
                                                   "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}}},
}

REVIEW = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
          "request": {"uid": "b1f2c3d4-0000-4000-8000-000000000001",
                      "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                      "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
                      "requestKind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                      "name": "api", "namespace": "shop", "operation": "CREATE",
                      "userInfo": {"username": "dev@shop", "groups": ["system:authenticated"]},
                      "object": DEPLOYMENT, "oldObject": None, "dryRun": False,
                      "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}}}

RULES_A = "apiVersion: meshguard.dev/v1alpha1\nkind: RuleSet\nmetadata: {name: a}\nspec:\n  rules:\n  - {id: ports, check: istio-port-name}\n  - {id: shutdown, check: istio-graceful-shutdown}\n"
RULES_B = RULES_A.replace("name: a", "name: b") + "  - {id: drain, check: istio-http-drain, action: warn}\n"
# --mutate: every review is patched (the Deployment below lacks the hold this rule sets).
RULES_MUTATE_A = RULES_A + "  - {id: start-order, check: istio-sidecar-start-order, params: {injectedNamespaces: ['*']}, mutate: true}\n"
RULES_MUTATE_B = RULES_MUTATE_A.replace("name: a", "name: b")


def mutating_review():
    review = json.loads(json.dumps(REVIEW))
    del review["request"]["object"]["spec"]["template"]["metadata"]["annotations"]
    return review


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def start(work, args):
    proc = subprocess.Popen([MESHGUARD, "serve", "--self-signed", os.path.join(work, "certs"),
                             "--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--poll-ms", "200",
                             "--rules", os.path.join(work, "rules.yaml"), "--engine", args.engine] + args.extra,
                            stderr=subprocess.PIPE, text=True,
                            # As deploy/deployment.yaml runs it: mimalloc commits memory as used.
                            env=dict(os.environ, MESHGUARD_CACHE_DIR=os.path.join(work, "cache"),
                                     MESHGUARD_CACHE_KEY="webhook-load", MIMALLOC_ARENA_EAGER_COMMIT="0"))
    for line in proc.stderr:
        if '"msg":"serving"' in line:
            info = json.loads(line)
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, info["addr"], info["metrics"]
    raise SystemExit("meshguard serve did not start")


def oha(addr, body, seconds, args):
    cmd = ["oha", "-z", f"{seconds}s", "-c", str(args.connections), "--no-tui", "--output-format", "json",
           "--insecure", "-m", "POST", "-T", "application/json", "-D", body, f"https://{addr}{args.path}"]
    if args.http2:
        cmd.insert(1, "--http2")
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"oha failed: {out.stderr}")
    return json.loads(out.stdout)


def check_answers(addr, body, args, n=20):
    """Responses while the load runs must be AdmissionReviews answering the request's uid (with
    a patch, for /mutate)."""
    bad = 0
    for _ in range(n):
        r = subprocess.run(["curl", "-sk", "--max-time", "5", "-H", "content-type: application/json",
                            "--data-binary", f"@{body}", f"https://{addr}{args.path}"], capture_output=True, text=True)
        try:
            resp = json.loads(r.stdout)["response"]
            bad += resp["uid"] != REVIEW["request"]["uid"] or resp["allowed"] is not True
            bad += args.mutate and resp.get("patchType") != "JSONPatch"
        except (ValueError, KeyError, TypeError):
            bad += 1
    return bad


# oha cancels the requests in flight when its -z time is up; those are the tool's, not failures.
OHA_END = "aborted due to deadline"


def summarize(result):
    s, p = result["summary"], result.get("latencyPercentiles", {})
    codes = result.get("statusCodeDistribution", {})
    errors = {k: v for k, v in result.get("errorDistribution", {}).items() if k != OHA_END}
    return {"requests_per_second": s.get("requestsPerSec"), "success_rate": s.get("successRate"),
            "total": sum(codes.values()) + sum(errors.values()),
            "cancelled_at_end_of_run": result.get("errorDistribution", {}).get(OHA_END, 0),
            "p50_ms": p.get("p50", 0) * 1000, "p99_ms": p.get("p99", 0) * 1000, "p99_9_ms": p.get("p99.9", 0) * 1000,
            "status_codes": codes, "errors": errors}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--engine", default="wasm")
    ap.add_argument("--http2", action="store_true")
    ap.add_argument("--mutate", action="store_true")
    args = ap.parse_args()
    args.path = "/mutate" if args.mutate else "/validate"
    rules_a, rules_b = (RULES_MUTATE_A, RULES_MUTATE_B) if args.mutate else (RULES_A, RULES_B)
    args.extra = ["--shutdown-delay-ms", "1000"]
    if not shutil.which("oha"):
        raise SystemExit("oha not found: cargo install oha --locked")
    work = tempfile.mkdtemp(prefix="meshguard-load-")
    body = os.path.join(work, "review.json")
    with open(body, "w") as f:
        json.dump(mutating_review() if args.mutate else REVIEW, f)
    with open(os.path.join(work, "rules.yaml"), "w") as f:
        f.write(rules_a)
    proc, addr, metrics_addr = start(work, args)
    time.sleep(1)
    rest = rss_kib(proc.pid)
    peak = [rest or 0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kib(proc.pid) or 0)
            time.sleep(0.2)

    def disturb():
        time.sleep(args.seconds / 3)
        # cert-manager style: a new key and certificate renamed over the served files.
        subprocess.run([MESHGUARD, "certs", "--out", os.path.join(work, "next")], capture_output=True, check=True)
        for name in ("tls.key", "tls.crt"):
            shutil.copy(os.path.join(work, "next", name), os.path.join(work, "certs", name + ".new"))
            os.replace(os.path.join(work, "certs", name + ".new"), os.path.join(work, "certs", name))
        time.sleep(args.seconds / 3)
        with open(os.path.join(work, "rules.yaml.new"), "w") as f:
            f.write(rules_b)
        os.replace(os.path.join(work, "rules.yaml.new"), os.path.join(work, "rules.yaml"))

    threads = [threading.Thread(target=sample), threading.Thread(target=disturb)]
    for t in threads:
        t.start()
    main_run = oha(addr, body, args.seconds, args)
    threads[1].join()
    stop.set()
    threads[0].join()
    garbled = check_answers(addr, body, args)
    metrics = subprocess.run(["curl", "-s", f"http://{metrics_addr}/metrics"], capture_output=True, text=True).stdout
    reloads = {k: int(v) for k, v in (l.rsplit(" ", 1) for l in metrics.splitlines() if l.startswith("meshguard_reloads_total"))}
    # SIGTERM during load: the server stays ready... then unready, answers through the delay,
    # finishes in-flight requests and exits; clients see answers or refused connections only.
    proc.send_signal(signal.SIGTERM)
    term_run = oha(addr, body, 4, args)
    code = proc.wait(timeout=60)
    result = {"engine": args.engine, "http2": args.http2, "path": args.path, "connections": args.connections, "seconds": args.seconds,
              "load": summarize(main_run), "rss_kib_at_rest": rest, "rss_kib_peak_under_load": peak[0],
              "garbled_after_rotation_and_reload": garbled, "reloads": reloads,
              "sigterm": dict(summarize(term_run), exit_code=code)}
    os.makedirs(os.path.join(ROOT, "target", "bench"), exist_ok=True)
    name = "webhook-load-mutate.json" if args.mutate else "webhook-load.json"
    with open(os.path.join(ROOT, "target", "bench", name), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
