#!/usr/bin/env bash
# Builds meshguard's two images as OCI layouts, without a daemon (Debian's buildah, run as root):
#   target/image/meshguard        `meshguard` (CLI and webhook): a static musl binary on an empty
#                                 base, non-root, no shell (Containerfile)
#   target/image/meshguard-envoy  the Envoy filter as Istio's WasmPlugin pulls it: one tar+gzip
#                                 layer holding plugin.wasm (wasm-plugin/envoy/Containerfile)
# Each layout holds one tag, the workspace version; scripts/publish.sh pushes them. The manifest
# digests are printed and kept in target/image/digests.
#
# Reproducible: two builds of one commit give the same digests. File and config timestamps are
# SOURCE_DATE_EPOCH (default: the commit's time; buildah --timestamp), buildah writes layer
# entries in a fixed order, the binary's embedded paths (checkout, cargo home, target directory)
# are remapped (--remap-path-prefix, here and in scripts/build-wasm.sh), and Cargo.lock pins
# every crate; C code compiles with SOURCE_DATE_EPOCH=0. Checked: a clone at another path with
# another CARGO_TARGET_DIR gives the same binary.
#
# Usage: scripts/build-image.sh [OUT_DIR]   (default target/image)
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-target/image}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
musl=x86_64-unknown-linux-musl

for tool in buildah musl-gcc; do
  command -v "$tool" >/dev/null || {
    echo "build-image: $tool not found (apt-get install buildah musl-tools; scripts/setup.sh does)" >&2
    exit 1
  }
done
grep -qx "$musl" <<<"$(rustup target list --installed)" || rustup target add "$musl"

# The binary embeds the admission module and the Envoy filter from dist/.
[ -f dist/meshguard-kubewarden.wasm ] && [ -f dist/meshguard-envoy.wasm ] || bash scripts/build-wasm.sh

echo "== meshguard for $musl (profile dist)" >&2
# Generated code (build scripts' OUT_DIR) carries the target directory's path, which may lie
# outside the checkout (CARGO_TARGET_DIR): it is remapped last, so it wins over the checkout's.
mkdir -p "${CARGO_TARGET_DIR:-target}"
target_dir=$(cd "${CARGO_TARGET_DIR:-target}" && pwd)
# SOURCE_DATE_EPOCH=0 for the compilers: C code built by crates (mimalloc prints __DATE__ and
# __TIME__ in its verbose banner) gets a fixed date, whichever commit first built it.
SOURCE_DATE_EPOCH=0 RUSTFLAGS="${RUSTFLAGS:-} --remap-path-prefix=$PWD=/meshguard --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo \
--remap-path-prefix=$target_dir=/target" \
  cargo build --locked --profile dist --target "$musl" -p host-runner
binary=$target_dir/$musl/dist/meshguard

rm -rf "$out"
mkdir -p "$out/context/meshguard/skeleton/tmp" "$out/context/meshguard-envoy"
chmod 1777 "$out/context/meshguard/skeleton/tmp"
cp "$binary" "$out/context/meshguard/meshguard"
cp dist/meshguard-envoy.wasm "$out/context/meshguard-envoy/plugin.wasm"

# Private storage under $out: no system state read or left behind; vfs needs no kernel overlay.
storage=(--root "$PWD/$out/storage" --runroot "$PWD/$out/run" --storage-driver vfs)
build() { # name containerfile
  buildah "${storage[@]}" build --quiet --isolation chroot --timestamp "$epoch" \
    --build-arg VERSION="$version" --build-arg REVISION="$revision" \
    -f "$2" -t "localhost/$1:$version" "$out/context/$1" >/dev/null
  buildah "${storage[@]}" push --quiet "localhost/$1:$version" "oci:$out/$1:$version"
  local digest
  digest=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$out/$1/index.json")
  printf '%s:%s %s\n' "$1" "$version" "$digest" | tee -a "$out/digests"
}
echo "== images (SOURCE_DATE_EPOCH=$epoch, revision $revision)" >&2
build meshguard Containerfile
build meshguard-envoy wasm-plugin/envoy/Containerfile
buildah "${storage[@]}" rmi --all --force >/dev/null
rm -rf "$out/storage" "$out/run"
