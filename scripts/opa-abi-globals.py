#!/usr/bin/env python3
"""Adds the OPA ABI version globals to a linked module.

OPA hosts read two exported i32 globals, opa_wasm_abi_version and opa_wasm_abi_minor_version.
Stable Rust can only export a static's address, not a value global, so they are appended here:
two immutable i32 globals in the global section and two global exports.
usage: opa-abi-globals.py MODULE.wasm MAJOR MINOR   (rewrites MODULE.wasm in place)
"""
import sys

from wasm_module import read_uleb, section, sections, uleb


def sleb(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        done = (n == 0 and not b & 0x40) or (n == -1 and b & 0x40)
        out.append(b if done else b | 0x80)
        if done:
            return bytes(out)


def imported_globals(body):
    count, i = read_uleb(body, 0)
    globals_ = 0
    for _ in range(count):
        for _ in range(2):  # module and field names
            n, i = read_uleb(body, i)
            i += n
        kind = body[i]
        i += 1
        if kind == 0:  # func: type index
            _, i = read_uleb(body, i)
        elif kind == 1:  # table: reftype + limits
            i += 1
            flags = body[i]
            i += 1
            _, i = read_uleb(body, i)
            if flags & 1:
                _, i = read_uleb(body, i)
        elif kind == 2:  # memory: limits
            flags = body[i]
            i += 1
            _, i = read_uleb(body, i)
            if flags & 1:
                _, i = read_uleb(body, i)
        elif kind == 3:  # global: valtype + mutability
            i += 2
            globals_ += 1
        else:
            sys.exit(f"unsupported import kind {kind}")
    return globals_


def main():
    path, major, minor = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    data = open(path, "rb").read()
    if data[:4] != b"\0asm":
        sys.exit(f"{path}: not a wasm module")
    secs = list(sections(data))
    if any(sid == 7 and b"opa_wasm_abi_version" in body for sid, body in secs):
        return  # already patched
    n_imported = sum(imported_globals(body) for sid, body in secs if sid == 2)
    out = bytearray(data[:8])
    new_globals = [(major, "opa_wasm_abi_version"), (minor, "opa_wasm_abi_minor_version")]
    first_index = None
    for sid, body in secs:
        if sid == 6:
            count, i = read_uleb(body, 0)
            first_index = n_imported + count
            body = uleb(count + len(new_globals)) + body[i:] + b"".join(b"\x7f\x00\x41" + sleb(v) + b"\x0b" for v, _ in new_globals)
        elif sid == 7:
            if first_index is None:
                sys.exit(f"{path}: no global section before the exports")
            count, i = read_uleb(body, 0)
            extra = b"".join(uleb(len(n)) + n.encode() + b"\x03" + uleb(first_index + k) for k, (_, n) in enumerate(new_globals))
            body = uleb(count + len(new_globals)) + body[i:] + extra
        out += section(sid, body)
    open(path, "wb").write(out)


if __name__ == "__main__":
    main()
