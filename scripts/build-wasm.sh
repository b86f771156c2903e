#!/usr/bin/env bash
# Builds every wasm artifact in release mode into dist/:
#   dist/meshguard-envoy.wasm       proxy-wasm HTTP filter for Envoy / Istio (wasm32-unknown-unknown)
#   dist/meshguard-kubewarden.wasm  Kubewarden policy, waPC guest (wasm32-wasip1, as Kubewarden builds them)
#   dist/meshguard-opa.wasm         OPA wasm ABI 1.2 module (wasm32-unknown-unknown, imported memory);
#                                   Kubewarden runs it in `executionMode: gatekeeper`
#   dist/meshguard-opa-kubewarden.wasm  the same for Kubewarden's `executionMode: opa` (entrypoint 0
#                                   answers an AdmissionResponse)
#   dist/libmeshguard_envoy.so      the Envoy dynamic module (native, for Envoy 1.40's ABI): the
#                                   filter's rules without a wasm VM
# The admission modules carry their Kubewarden metadata (custom section `io.kubewarden.metadata`,
# from wasm-plugin/metadata.yml), as `kwctl annotate` would write it.
# plus dist/SHA256SUMS. (dist/wasmplugin.yaml comes from scripts/publish.sh: for an oci:// URL,
# Istio checks the pushed image's manifest digest, not the module's sha256.)
# Benchmark fixtures go to target/wasm-bench/, where the tests look for them, also when
# CARGO_TARGET_DIR puts cargo's own output elsewhere. Paths in the modules are remapped
# (--remap-path-prefix), so a build does not depend on where the checkout is.
#
# wasm32-unknown-unknown for the Envoy filter: Envoy's V8 loads both it and wasm32-wasip1, and the
# filter needs no WASI call, so the smaller module without WASI imports wins.
# wasm-opt (Debian's binaryen) shrinks the modules when it is installed; without it they are copied.
set -euo pipefail
cd "$(dirname "$0")/.."

installed=$(rustup target list --installed 2>/dev/null)
for t in wasm32-unknown-unknown wasm32-wasip1; do
  grep -qx "$t" <<<"$installed" || rustup target add "$t"
done

# Every module is built for speed (profile wasm-speed: opt-level 3, then wasm-opt -O3). The webhook
# compiles the waPC module in a child process into its cache (`meshguard compile-for-serve`), so
# Cranelift's scratch memory for it does not stay in the server (measured once, 2026-11-26: 62 MB
# RSS at rest after compiling the speed build in process, 20 MB loading it from the cache).
build() { # target package [features] [profile]
  RUSTFLAGS="${RUSTFLAGS:-} --remap-path-prefix=$PWD=/meshguard --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo" \
    cargo build --locked --profile "${4:-wasm-speed}" --target "$1" -p "$2" ${3:+--features "$3"}
}

target=${CARGO_TARGET_DIR:-target}
bench=target/wasm-bench
mkdir -p dist "$bench"
out=$target/wasm32-unknown-unknown/wasm-speed
optimize() { # in out [wasm-opt level]
  if command -v wasm-opt >/dev/null; then
    # binaryen 108 needs the features rustc 1.95 emits spelled out.
    wasm-opt "${3:--O3}" --converge --zero-filled-memory --low-memory-unused --strip-debug --strip-producers \
      --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext "$1" -o "$2.tmp"
    mv "$2.tmp" "$2"
  else
    echo "build-wasm: wasm-opt not found (apt-get install binaryen); copying $1 unoptimized" >&2
    cp "$1" "$2"
  fi
}
# The Envoy filter exports only the proxy-wasm callbacks it implements (its Cargo.toml lists them;
# scripts/proxy-wasm-callbacks.py says why). The empty filter, the benchmarks' floor, stays as the
# SDK builds it; its "lean" copy exports the filter's callbacks only, to show what is left.
build wasm32-unknown-unknown meshguard-envoy
cp "$out/meshguard_envoy.wasm" $bench/meshguard-envoy.linked.wasm
python3 scripts/proxy-wasm-callbacks.py $bench/meshguard-envoy.linked.wasm wasm-plugin/envoy/Cargo.toml
optimize $bench/meshguard-envoy.linked.wasm dist/meshguard-envoy.wasm
rm $bench/meshguard-envoy.linked.wasm
# The benchmarks' variant fetching only the headers the rules name (wasm-plugin/envoy/Cargo.toml).
build wasm32-unknown-unknown meshguard-envoy named-headers
cp "$out/meshguard_envoy.wasm" $bench/meshguard-envoy-named.linked.wasm
python3 scripts/proxy-wasm-callbacks.py $bench/meshguard-envoy-named.linked.wasm wasm-plugin/envoy/Cargo.toml
optimize $bench/meshguard-envoy-named.linked.wasm $bench/meshguard-envoy-named.wasm
rm $bench/meshguard-envoy-named.linked.wasm
build wasm32-unknown-unknown noop-filter
optimize "$out/noop_filter.wasm" $bench/noop-filter.wasm
cp $bench/noop-filter.wasm $bench/noop-filter-lean.wasm
python3 scripts/proxy-wasm-callbacks.py $bench/noop-filter-lean.wasm wasm-plugin/envoy/Cargo.toml

wasi=$target/wasm32-wasip1/wasm-speed
build wasm32-wasip1 meshguard-kubewarden
optimize "$wasi/meshguard_kubewarden.wasm" dist/meshguard-kubewarden.wasm
build wasm32-wasip1 meshguard-kubewarden floor   # benchmark floor: accepts without evaluating
optimize "$wasi/meshguard_kubewarden.wasm" $bench/kubewarden-floor.wasm

# OPA hosts read the ABI version from two exported globals that stable Rust cannot emit.
build wasm32-unknown-unknown meshguard-opa
optimize "$out/meshguard_opa.wasm" dist/meshguard-opa.wasm
cp dist/meshguard-opa.wasm $bench/meshguard-opa-abi-1.1.wasm
python3 scripts/opa-abi-globals.py dist/meshguard-opa.wasm 1 2
# The same module declaring ABI 1.1, so tests drive the eval-context path too.
python3 scripts/opa-abi-globals.py $bench/meshguard-opa-abi-1.1.wasm 1 1
build wasm32-unknown-unknown meshguard-opa kubewarden-opa-mode
optimize "$out/meshguard_opa.wasm" dist/meshguard-opa-kubewarden.wasm
python3 scripts/opa-abi-globals.py dist/meshguard-opa-kubewarden.wasm 1 2
build wasm32-unknown-unknown meshguard-opa floor
optimize "$out/meshguard_opa.wasm" $bench/opa-floor.wasm
python3 scripts/opa-abi-globals.py $bench/opa-floor.wasm 1 2

# The Envoy dynamic module: a native library of this machine's architecture for the Envoy whose
# ABI it declares (1.40, ABI v0.2.0); Envoy loads `lib<module>.so`, so it is renamed for module
# `meshguard_envoy`.
cargo build --locked --profile dist -p meshguard-envoy-dynamic --features floor   # benchmark floor
cp "$target/dist/libmeshguard_envoy_dynamic.so" $bench/libmeshguard_envoy_floor.so
cargo build --locked --profile dist -p meshguard-envoy-dynamic
cp "$target/dist/libmeshguard_envoy_dynamic.so" dist/libmeshguard_envoy.so

(cd dist && sha256sum *.wasm libmeshguard_envoy.so > SHA256SUMS)
for f in dist/*.wasm dist/libmeshguard_envoy.so; do printf '%-34s %8d bytes\n' "$f" "$(stat -c %s "$f")"; done
