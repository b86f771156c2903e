#!/usr/bin/env bash
# Builds every wasm artifact in release mode into dist/:
#   dist/meshguard-envoy.wasm   proxy-wasm HTTP filter for Envoy / Istio (wasm32-unknown-unknown)
# plus dist/SHA256SUMS and dist/wasmplugin.yaml (examples/istio/wasmplugin.yaml with the module's
# sha256 filled in). Benchmark fixtures go to target/wasm-bench/.
#
# wasm32-unknown-unknown for the Envoy filter: Envoy's V8 loads both it and wasm32-wasip1, and the
# filter needs no WASI call, so the smaller module without WASI imports wins.
# wasm-opt (Debian's binaryen) shrinks the modules when it is installed; without it they are copied.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target list --installed 2>/dev/null | grep -q wasm32-unknown-unknown \
  || rustup target add wasm32-unknown-unknown

cargo build --locked --profile wasm --target wasm32-unknown-unknown -p meshguard-envoy -p noop-filter

mkdir -p dist target/wasm-bench
out=target/wasm32-unknown-unknown/wasm
optimize() { # in out
  if command -v wasm-opt >/dev/null; then
    # binaryen 108 needs the features rustc 1.95 emits spelled out.
    wasm-opt -Oz --converge --zero-filled-memory --low-memory-unused --strip-debug --strip-producers \
      --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext "$1" -o "$2.tmp"
    mv "$2.tmp" "$2"
  else
    echo "build-wasm: wasm-opt not found (apt-get install binaryen); copying $1 unoptimized" >&2
    cp "$1" "$2"
  fi
}
optimize "$out/meshguard_envoy.wasm" dist/meshguard-envoy.wasm
optimize "$out/noop_filter.wasm" target/wasm-bench/noop-filter.wasm

(cd dist && sha256sum *.wasm > SHA256SUMS)
envoy_sha=$(sha256sum dist/meshguard-envoy.wasm | cut -d' ' -f1)
sed "s/sha256: .*/sha256: ${envoy_sha}/" examples/istio/wasmplugin.yaml > dist/wasmplugin.yaml
for f in dist/*.wasm; do printf '%-32s %8d bytes\n' "$f" "$(stat -c %s "$f")"; done
