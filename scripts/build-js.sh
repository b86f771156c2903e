#!/usr/bin/env bash
# Builds the JavaScript package (bindings/js) from policy-core: the wasm module with wasm-bindgen's
# glue for Node (bindings/js/pkg/node, CommonJS) and for browsers (bindings/js/pkg/web, ES module),
# shrunk with wasm-opt when it is installed. Installs wasm-bindgen-cli at exactly the version of
# the wasm-bindgen crate in Cargo.lock (the glue and the crate must match), and the wasm target.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
if ! wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $version"; then
  echo "== wasm-bindgen-cli $version"
  # Not --locked: its lockfile names a webpki-roots release the registry mirror does not carry.
  cargo install --quiet wasm-bindgen-cli --version "$version"
fi
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

cargo build --locked --profile wasm-js --target wasm32-unknown-unknown -p meshguard-js
module=${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/wasm-js/meshguard_js.wasm
out=bindings/js/pkg
rm -rf "$out"
mkdir -p "$out/opt"
# wasm-opt runs before wasm-bindgen: Debian's binaryen 108 breaks the externref table that
# wasm-bindgen's glue sets up, but optimizes rustc's module fine (keeping its target features,
# which wasm-bindgen reads).
if command -v wasm-opt >/dev/null; then
  wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
    --enable-reference-types --enable-multivalue --emit-target-features "$module" -o "$out/opt/meshguard_js.wasm"
else
  echo "build-js: wasm-opt not found (apt-get install binaryen); the module stays unoptimized" >&2
  cp "$module" "$out/opt/meshguard_js.wasm"
fi
wasm-bindgen --target nodejs --remove-name-section --remove-producers-section --out-dir "$out/node" "$out/opt/meshguard_js.wasm"
wasm-bindgen --target web --remove-name-section --remove-producers-section --out-dir "$out/web" "$out/opt/meshguard_js.wasm"
rm -rf "$out/opt"
# The Node glue is CommonJS inside an ES-module package.
echo '{"type": "commonjs"}' > "$out/node/package.json"
printf '%-40s %8d bytes (%d gzipped)\n' "$out/web/meshguard_js_bg.wasm" \
  "$(stat -c %s "$out/web/meshguard_js_bg.wasm")" "$(gzip -9c "$out/web/meshguard_js_bg.wasm" | wc -c)"
