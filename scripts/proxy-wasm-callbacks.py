#!/usr/bin/env python3
"""Keeps only the proxy-wasm callbacks a filter implements among a linked module's exports.

The Rust SDK exports every `proxy_on_*` callback, and Envoy calls each one a module exports: for
an HTTP filter that is seven crossings into the VM per request (context create, request and
response headers, response body, log, done, delete) and one more per body chunk, whatever the
filter overrides. proxy-wasm hosts skip a callback the module does not export and apply the ABI's
default (continue, done), which is what the SDK's default trait methods answer anyway, so an
export the filter does not override is pure cost. The kept list is the crate's
`[package.metadata.proxy-wasm] callbacks` in its Cargo.toml, which tests check against the
built module. `proxy_on_memory_allocate` (the host's allocator into the guest, which the SDK
exports as `malloc` on wasm32-unknown-unknown) always stays.

usage: proxy-wasm-callbacks.py MODULE.wasm CARGO.toml   (rewrites MODULE.wasm in place)
"""
import os
import sys
import tomllib

from wasm_module import read_uleb, section, sections, uleb

ALWAYS = {"proxy_on_memory_allocate"}


def keep_exports(data, keep, always):
    """The module with every exported function named proxy_on_* and in neither `keep` nor `always`
    unexported, and the names it dropped. Every name in `keep` must be exported."""
    if data[:8] != b"\0asm\1\0\0\0":
        sys.exit("proxy-wasm-callbacks: not a wasm module (version 1)")
    out, dropped, seen = bytearray(data[:8]), [], set()
    for sid, body in sections(data):
        if sid == 7:  # exports: name, kind, index
            count, j = read_uleb(body, 0)
            kept = []
            for _ in range(count):
                entry = j
                n, j = read_uleb(body, j)
                name = body[j:j + n].decode()
                j += n
                kind = body[j]
                _, j = read_uleb(body, j + 1)
                seen.add(name)
                if kind == 0 and name.startswith("proxy_on_") and name not in keep | always:
                    dropped.append(name)
                else:
                    kept.append(body[entry:j])
            body = uleb(len(kept)) + b"".join(kept)
        out += section(sid, body)
    missing = sorted(keep - seen)
    if missing:
        sys.exit(f"proxy-wasm-callbacks: the module does not export {', '.join(missing)}, which Cargo.toml lists")
    return bytes(out), dropped


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    module, manifest = sys.argv[1], sys.argv[2]
    with open(manifest, "rb") as f:
        meta = tomllib.load(f).get("package", {}).get("metadata", {}).get("proxy-wasm", {})
    callbacks = meta.get("callbacks")
    if not isinstance(callbacks, list) or not callbacks:
        sys.exit(f"proxy-wasm-callbacks: {manifest} has no [package.metadata.proxy-wasm] callbacks list")
    with open(module, "rb") as f:
        data = f.read()
    rewritten, dropped = keep_exports(data, set(callbacks), ALWAYS)
    with open(module + ".tmp", "wb") as f:
        f.write(rewritten)
    os.replace(module + ".tmp", module)
    print(f"{module}: {len(dropped)} callbacks the filter does not implement unexported")


if __name__ == "__main__":
    main()
