"""The few pieces of the wasm binary format the post-link scripts need (opa-abi-globals.py,
proxy-wasm-callbacks.py): LEB128 numbers and the section list."""


def uleb(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_uleb(data, i):
    """The unsigned LEB128 number at `data[i]`, and the index after it."""
    n = shift = 0
    while True:
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def sections(data):
    """(id, body) of each section after the 8-byte header."""
    i = 8
    while i < len(data):
        sid = data[i]
        size, body = read_uleb(data, i + 1)
        yield sid, data[body:body + size]
        i = body + size


def section(sid, body):
    """A section's bytes: its id, size and body."""
    return bytes([sid]) + uleb(len(body)) + body
