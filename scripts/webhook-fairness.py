#!/usr/bin/env python3
"""`meshguard serve` under attack, measured: idle TLS connections, costly reviews, and one
well-behaved tenant.

Starts the release binary (rules: the built-in defaults plus one CEL rule whose cost is the cube of
a Service's port count), then
  1. opens --idle connections that finish the TLS handshake and send nothing (held until the end);
  2. keeps --costly reviews of a 2,000-port Service in flight from the namespace `attacker`, each
     re-sent as soon as it is answered (every one runs to the review deadline);
  3. runs oha as a well-behaved tenant (namespace `shop`, one Deployment review at a time) for
     --seconds, and reports its latency percentiles;
  4. stops the costly senders, and samples the server's CPU time every 50 ms: how long after the
     last answer its CPU use stops growing.
Writes target/bench/webhook-fairness.json, which bench-report puts into BENCHMARKS.md.

  scripts/webhook-fairness.py [--seconds 20] [--idle 3000] [--costly 8] [--engine native|wasm]
"""
import argparse, http.client, json, os, resource, shutil, socket, ssl, subprocess, tempfile, threading, time

import importlib.util

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("webhook_load", os.path.join(HERE, "webhook-load.py"))
load = importlib.util.module_from_spec(spec)
spec.loader.exec_module(load)

RULES = """apiVersion: meshguard.dev/v1alpha1
kind: RuleSet
metadata: {name: fairness}
spec:
  rules:
  - {id: ports, check: istio-port-name}
  - {id: shutdown, check: istio-graceful-shutdown}
  - id: cubic
    check: cel
    match: {kinds: [{apiGroups: [""], kinds: [Service]}]}
    params:
      expression: >-
        object.spec.ports.all(p, object.spec.ports.all(q, object.spec.ports.all(r, r.port > 0)))
      message: never
"""


def costly_review(i):
    ports = [{"name": f"http-{n}", "port": n} for n in range(1, 2001)]
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"big-{i}", "namespace": "attacker"},
               "spec": {"ports": ports}}
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                       "request": {"uid": f"costly-{i}", "kind": {"group": "", "version": "v1", "kind": "Service"},
                                   "resource": {"group": "", "version": "v1", "resource": "services"},
                                   "namespace": "attacker", "operation": "CREATE", "object": service}})


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--idle", type=int, default=3000)
    ap.add_argument("--costly", type=int, default=8)
    ap.add_argument("--engine", default="native")
    args = ap.parse_args()
    args.extra = []
    args.connections = 1
    args.http2 = False
    # webhook-load.py's helpers post to args.path (its --mutate picks /mutate); the tenant here validates.
    args.path = "/validate"
    if not shutil.which("oha"):
        raise SystemExit("oha not found: cargo install oha --locked")
    # Room for the idle connections on both ends (the server inherits the limit).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 2 * args.idle + 1024))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    work = tempfile.mkdtemp(prefix="meshguard-fairness-")
    body = os.path.join(work, "review.json")
    with open(body, "w") as f:
        json.dump(load.REVIEW, f)
    with open(os.path.join(work, "rules.yaml"), "w") as f:
        f.write(RULES)
    proc, addr, metrics_addr = load.start(work, args)
    host, port = addr.rsplit(":", 1)
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE

    idle = []
    started = time.monotonic()
    for _ in range(args.idle):
        s = socket.create_connection((host, int(port)))
        idle.append(tls.wrap_socket(s, server_hostname="localhost"))
    opened_in = time.monotonic() - started

    stop = threading.Event()
    costly_answers = []
    last_answer = [0.0]
    lock = threading.Lock()

    def attacker(i):
        payload = costly_review(i)
        while not stop.is_set():
            c = http.client.HTTPSConnection(host, int(port), context=tls, timeout=30)
            try:
                c.request("POST", "/validate", payload, {"content-type": "application/json"})
                answer = json.loads(c.getresponse().read())["response"]
                with lock:
                    costly_answers.append(answer.get("status", {}).get("message", "")[:120])
                    last_answer[0] = time.monotonic()
            except (OSError, ValueError, KeyError) as e:
                with lock:
                    costly_answers.append(f"error: {e}")
            finally:
                c.close()

    attackers = [threading.Thread(target=attacker, args=(i,)) for i in range(args.costly)]
    for t in attackers:
        t.start()
    time.sleep(1)
    tenant = load.summarize(load.oha(addr, body, args.seconds, args))
    stop.set()
    for t in attackers:
        t.join()
    # CPU after the last answer: sampled every 50 ms until two seconds pass with no growth.
    samples = [(time.monotonic(), cpu_seconds(proc.pid))]
    while time.monotonic() - samples[-1][0] < 10:
        time.sleep(0.05)
        samples.append((time.monotonic(), cpu_seconds(proc.pid)))
        quiet = [s for s in samples if s[0] >= samples[-1][0] - 2]
        if samples[-1][0] - samples[0][0] > 2 and quiet[-1][1] - quiet[0][1] <= 0.02:
            break
    busy_until = max((t for (t, c), (_, prev) in zip(samples[1:], samples) if c - prev > 0.01), default=samples[0][0])
    metrics = subprocess.run(["curl", "-s", f"http://{metrics_addr}/metrics"], capture_output=True, text=True).stdout
    errors = {l.rsplit(" ", 1)[0]: int(float(l.rsplit(" ", 1)[1]))
              for l in metrics.splitlines() if l.startswith("meshguard_admission_errors_total")}
    open_fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
    rss = load.rss_kib(proc.pid)
    for s in idle:
        s.close()
    proc.terminate()
    proc.wait(timeout=60)
    kinds = {}
    for a in costly_answers:
        key = "stopped at the deadline" if "deadline and was stopped" in a else (
            "queued out" if "no review slot came free" in a else a)
        kinds[key] = kinds.get(key, 0) + 1
    result = {"engine": args.engine, "seconds": args.seconds, "idle_connections": args.idle,
              "idle_opened_in_s": round(opened_in, 2), "server_fds_while_held": open_fds, "rss_kib": rss,
              "costly_in_flight": args.costly, "costly_answers": kinds, "tenant": tenant,
              "cpu_busy_after_last_answer_s": round(max(0.0, busy_until - last_answer[0]), 3),
              "errors": errors}
    os.makedirs(os.path.join(load.ROOT, "target", "bench"), exist_ok=True)
    with open(os.path.join(load.ROOT, "target", "bench", "webhook-fairness.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
