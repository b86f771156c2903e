#!/usr/bin/env bash
# Builds every release artifact into one directory, with SHA256SUMS over all of them:
#   meshguard-VERSION-x86_64-linux-musl      the static CLI and webhook (the image's binary)
#   meshguard-kubewarden.wasm                Kubewarden policy (waPC)
#   meshguard-opa-kubewarden.wasm            Kubewarden `opa` mode
#   meshguard-opa.wasm                       Kubewarden `gatekeeper` mode and OPA's SDKs
#   meshguard-envoy.wasm                     the proxy-wasm filter for Envoy and Istio
#   libmeshguard_envoy.so                    the Envoy dynamic module (x86_64 Linux, Envoy 1.40)
#   meshguard-VERSION.oci.tar                the image as an OCI layout archive (skopeo copy oci-archive:...)
#   meshguard-envoy-VERSION.oci.tar          the filter's image for Istio's WasmPlugin, likewise
#   meshguard-VERSION.cdx.json               CycloneDX SBOM of the binary's crates (cargo-cyclonedx)
#   SHA256SUMS                               `sha256sum -c SHA256SUMS` checks them all
# scripts/publish.sh pushes the same artifacts to a registry.
#
# Usage: scripts/release.sh [OUT_DIR]   (default target/release-artifacts)
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-target/release-artifacts}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}

bash scripts/build-wasm.sh >&2
bash scripts/build-image.sh target/image

if ! command -v cargo-cyclonedx >/dev/null; then
  echo "== cargo-cyclonedx (the SBOM generator)" >&2
  cargo install --locked --quiet cargo-cyclonedx@0.5.9
fi

rm -rf "$out"
mkdir -p "$out"
cp "${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-musl/dist/meshguard" "$out/meshguard-$version-x86_64-linux-musl"
cp dist/meshguard-kubewarden.wasm dist/meshguard-opa-kubewarden.wasm dist/meshguard-opa.wasm dist/meshguard-envoy.wasm \
  dist/libmeshguard_envoy.so "$out/"
for image in meshguard meshguard-envoy; do
  # A layout archive as skopeo and podman read it (oci-archive:), written in a fixed order.
  tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner -C "target/image/$image" \
    -cf "$out/$image-$version.oci.tar" oci-layout index.json blobs
done
# The binary's crates as Cargo.lock resolves them for the musl target, without dev-dependencies;
# dated SOURCE_DATE_EPOCH. cargo-cyclonedx writes one file beside every workspace member's
# Cargo.toml: the binary's is kept, the others removed.
SOURCE_DATE_EPOCH=$epoch cargo cyclonedx --manifest-path host-runner/Cargo.toml --format json --spec-version 1.5 \
  --target x86_64-unknown-linux-musl --no-build-deps --override-filename "meshguard-$version.cdx" >&2
mv "host-runner/meshguard-$version.cdx.json" "$out/"
find . -path ./target -prune -o -name "meshguard-$version.cdx.json" -type f -print0 | xargs -0 rm -f
(cd "$out" && sha256sum -- * > SHA256SUMS)
cat "$out/SHA256SUMS"
