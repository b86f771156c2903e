#!/usr/bin/env bash
# Pushes a release to an OCI registry with `meshguard push` and prints each reference with its
# digest:
#   PREFIX/meshguard:VERSION                        the image (CLI and webhook; deploy/deployment.yaml)
#   PREFIX/meshguard-envoy:VERSION                  the Envoy filter for Istio's WasmPlugin (oci://)
#   PREFIX/policies/meshguard:VERSION               the Kubewarden policy (waPC; registry://)
#   PREFIX/policies/meshguard-opa:VERSION           the same rules for Kubewarden's `opa` mode
#   PREFIX/policies/meshguard-gatekeeper:VERSION    ... and its `gatekeeper` mode
# and writes dist/wasmplugin.yaml (examples/istio/wasmplugin.yaml pointing at the pushed filter,
# its `sha256` the image manifest's digest, which is what Istio checks for an oci:// URL).
#
# Usage: scripts/publish.sh REGISTRY/PREFIX      e.g. 127.0.0.1:5000/meshguard, ghcr.io/acme/meshguard
# Builds first (scripts/build-image.sh, which builds dist/ when it is missing). Environment:
#   MESHGUARD_IMAGES=DIR  push the OCI layouts in DIR as they are, without building
#   MESHGUARD=PATH        the meshguard that pushes (default: the static one build-image.sh built)
#   MESHGUARD_PUBLISH_OUT=DIR  where wasmplugin.yaml goes (default dist)
# Registry credentials as `meshguard push --help` says; loopback registries are plain HTTP.
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=${1:?usage: scripts/publish.sh REGISTRY/PREFIX (e.g. 127.0.0.1:5000/meshguard)}
prefix=${prefix%/}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
images=${MESHGUARD_IMAGES:-}
if [ -z "$images" ]; then
  bash scripts/build-image.sh target/image >&2
  images=target/image
fi
meshguard=${MESHGUARD:-${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-musl/dist/meshguard}
out=${MESHGUARD_PUBLISH_OUT:-dist}

push() { "$meshguard" push "$@"; }
push "$images/meshguard:$version" "$prefix/meshguard:$version"
envoy=$(push "$images/meshguard-envoy:$version" "$prefix/meshguard-envoy:$version")
echo "$envoy"
push dist/meshguard-kubewarden.wasm "$prefix/policies/meshguard:$version"
push dist/meshguard-opa-kubewarden.wasm "$prefix/policies/meshguard-opa:$version"
push dist/meshguard-opa.wasm "$prefix/policies/meshguard-gatekeeper:$version"

digest=${envoy##*@sha256:}
mkdir -p "$out"
sed -e "s|^\(  url: \).*|\1oci://$prefix/meshguard-envoy:$version|" -e "s|^\(  sha256: \).*|\1$digest|" \
  examples/istio/wasmplugin.yaml > "$out/wasmplugin.yaml.tmp"
mv "$out/wasmplugin.yaml.tmp" "$out/wasmplugin.yaml"
echo "wrote $out/wasmplugin.yaml (url oci://$prefix/meshguard-envoy:$version, sha256 $digest)" >&2
