#!/usr/bin/env python3
"""Generate JSON conformance cases from cel-spec's "simple" test files.

Usage:
    python3 scripts/cel-conformance/gen_cel_spec.py <cel-spec-checkout-or-git-dir> <commit> [--out DIR]

<cel-spec-checkout-or-git-dir> is either a work tree of github.com/google/cel-spec
(containing tests/simple/testdata/*.textproto) or a (bare) git directory, in which
case the files are read with `git --git-dir=<dir> show <commit>:<path>`.
<commit> is recorded in every output file (and, for a git dir, is the revision read).

Each tests/simple/testdata/<stem>.textproto (a cel.expr.conformance.test.SimpleTestFile
in protobuf text format) becomes <out>/<stem>.json, by default
tests/cel-conformance/cel-spec/<stem>.json relative to the repository root, and
<out>/README.md is regenerated with per-file counts.

Only the Python standard library is used.  The protobuf text format is parsed by a
small hand-written tokenizer/parser below; it is schema-less, so field semantics
(which fields are strings, bytes, messages, ...) are applied by the converter.
"""

import base64
import json
import math
import os
import re
import subprocess
import sys

TESTDATA = "tests/simple/testdata"
SOURCE_REPO = "google/cel-spec"

# Sections testing library versions the API server does not declare, so its checker (and
# meshguard's) refuses them: (file stem, section) -> why.
OUT_OF_SCOPE_SECTIONS = {
    ("string_ext", "reverse"): "the strings extension's version 3 (`reverse`); the API server declares version 2",
}


# --------------------------------------------------------------------------
# Protobuf text format: tokenizer
# --------------------------------------------------------------------------

class ParseError(Exception):
    pass


class Tok:
    __slots__ = ("kind", "text", "value", "start", "end", "line")

    def __init__(self, kind, text, value, start, end, line):
        self.kind = kind    # 'ident' | 'number' | 'string' | 'punct' | 'ext' | 'eof'
        self.text = text    # raw source text
        self.value = value  # bytes for strings, name for ext, text otherwise
        self.start = start
        self.end = end
        self.line = line

    def __repr__(self):
        return "Tok(%s, %r, line %d)" % (self.kind, self.text, self.line)


_SIMPLE_ESCAPES = {
    "a": 0x07, "b": 0x08, "f": 0x0C, "n": 0x0A, "r": 0x0D, "t": 0x09, "v": 0x0B,
    "\\": 0x5C, "'": 0x27, '"': 0x22, "?": 0x3F,
}
_HEX = "0123456789abcdefABCDEF"
_OCT = "01234567"
_IDENT_START = re.compile(r"[A-Za-z_]")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(
    r"(?:0[xX][0-9a-fA-F]+|"
    r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)[fFuU]?"
)


def _unescape(body, line):
    """Decode a protobuf text-format string body (without quotes) to bytes."""
    out = bytearray()
    i = 0
    n = len(body)
    while i < n:
        c = body[i]
        if c != "\\":
            out += c.encode("utf-8")
            i += 1
            continue
        i += 1
        if i >= n:
            raise ParseError("line %d: dangling backslash in string" % line)
        c = body[i]
        if c in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[c])
            i += 1
        elif c in _OCT:
            j = i
            while j < n and j < i + 3 and body[j] in _OCT:
                j += 1
            v = int(body[i:j], 8)
            if v > 0xFF:
                raise ParseError("line %d: octal escape out of range" % line)
            out.append(v)
            i = j
        elif c in "xX":
            j = i + 1
            while j < n and j < i + 3 and body[j] in _HEX:
                j += 1
            if j == i + 1:
                raise ParseError("line %d: \\x without hex digits" % line)
            out.append(int(body[i + 1:j], 16))
            i = j
        elif c == "u" or c == "U":
            width = 4 if c == "u" else 8
            digits = body[i + 1:i + 1 + width]
            if len(digits) != width or any(d not in _HEX for d in digits):
                raise ParseError("line %d: bad \\%s escape" % (line, c))
            cp = int(digits, 16)
            i += 1 + width
            # Combine a UTF-16 surrogate pair written as two \u escapes.
            if 0xD800 <= cp <= 0xDBFF and body[i:i + 2] == "\\u":
                lo_digits = body[i + 2:i + 6]
                if len(lo_digits) == 4 and all(d in _HEX for d in lo_digits):
                    lo = int(lo_digits, 16)
                    if 0xDC00 <= lo <= 0xDFFF:
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
                        i += 6
            if cp > 0x10FFFF or 0xD800 <= cp <= 0xDFFF:
                raise ParseError("line %d: invalid code point U+%X" % (line, cp))
            out += chr(cp).encode("utf-8")
        else:
            raise ParseError("line %d: unknown escape \\%s" % (line, c))
    return bytes(out)


def tokenize(src):
    toks = []
    i = 0
    n = len(src)
    line = 1
    while i < n:
        c = src[i]
        if c == "\n":
            line += 1
            i += 1
        elif c in " \t\r\f\v":
            i += 1
        elif c == "#":
            while i < n and src[i] != "\n":
                i += 1
        elif c == '"' or c == "'":
            q = c
            j = i + 1
            while j < n and src[j] != q:
                if src[j] == "\\":
                    j += 1
                if j < n and src[j] == "\n":
                    raise ParseError("line %d: newline in string" % line)
                j += 1
            if j >= n:
                raise ParseError("line %d: unterminated string" % line)
            body = src[i + 1:j]
            toks.append(Tok("string", src[i:j + 1], _unescape(body, line), i, j + 1, line))
            i = j + 1
        elif c == "[":
            # Extension or Any type URL: [type.googleapis.com/pkg.Msg]
            j = src.find("]", i)
            if j < 0:
                raise ParseError("line %d: unterminated [" % line)
            if toks and toks[-1].kind == "punct" and toks[-1].text == ":":
                # A list value `field: [ ... ]` -- emit as punctuation.
                toks.append(Tok("punct", "[", "[", i, i + 1, line))
                i += 1
                continue
            name = re.sub(r"\s+", "", src[i + 1:j])
            if not re.match(r"^[A-Za-z0-9_.\-/]+$", name):
                raise ParseError("line %d: bad extension/type URL name %r" % (line, name))
            toks.append(Tok("ext", src[i:j + 1], name, i, j + 1, line))
            line += src.count("\n", i, j)
            i = j + 1
        elif c in "{}<>:,;]-":
            toks.append(Tok("punct", c, c, i, i + 1, line))
            i += 1
        elif c.isdigit() or (c == "." and i + 1 < n and src[i + 1].isdigit()):
            m = _NUMBER.match(src, i)
            if not m:
                raise ParseError("line %d: bad number" % line)
            toks.append(Tok("number", m.group(0), m.group(0), i, m.end(), line))
            i = m.end()
        elif _IDENT_START.match(c):
            m = _IDENT.match(src, i)
            # allow dotted names (e.g. enum values are plain, but be lenient)
            j = m.end()
            while j + 1 < n and src[j] == "." and _IDENT_START.match(src[j + 1]):
                j = _IDENT.match(src, j + 1).end()
            toks.append(Tok("ident", src[i:j], src[i:j], i, j, line))
            i = j
        else:
            raise ParseError("line %d: unexpected character %r" % (line, c))
    toks.append(Tok("eof", "", None, n, n, line))
    return toks


# --------------------------------------------------------------------------
# Protobuf text format: parser (schema-less)
# --------------------------------------------------------------------------

class Scalar:
    """A scalar field value.  kind: 'string' (value=bytes), 'number' (value=str
    with optional leading '-'), 'ident' (value=str with optional leading '-')."""
    __slots__ = ("kind", "value", "line")

    def __init__(self, kind, value, line):
        self.kind = kind
        self.value = value
        self.line = line

    def __repr__(self):
        return "Scalar(%s, %r)" % (self.kind, self.value)


class Message:
    """A message: ordered list of (field name, value) pairs; `raw` is the source
    text between the delimiters."""
    __slots__ = ("fields", "raw", "line")

    def __init__(self, fields, raw, line):
        self.fields = fields
        self.raw = raw
        self.line = line

    def all(self, name):
        return [v for (k, v) in self.fields if k == name]

    def get(self, name):
        vals = self.all(name)
        return vals[-1] if vals else None

    def has(self, name):
        return any(k == name for (k, _) in self.fields)

    def names(self):
        return [k for (k, _) in self.fields]

    def __repr__(self):
        return "Message(%r)" % (self.fields,)


class Parser:
    def __init__(self, src):
        self.src = src
        self.toks = tokenize(src)
        self.pos = 0

    def peek(self, k=0):
        return self.toks[min(self.pos + k, len(self.toks) - 1)]

    def next(self):
        t = self.toks[self.pos]
        self.pos += 1
        return t

    def expect(self, text):
        t = self.next()
        if t.kind != "punct" or t.text != text:
            raise ParseError("line %d: expected %r, got %r" % (t.line, text, t.text))
        return t

    def parse_file(self):
        msg = self.parse_fields(None, 0, 1)
        return msg

    def parse_fields(self, close, body_start, line):
        fields = []
        while True:
            t = self.peek()
            if t.kind == "eof":
                if close is not None:
                    raise ParseError("line %d: unexpected end of input" % t.line)
                return Message(fields, self.src[body_start:t.start], line)
            if t.kind == "punct" and t.text == close:
                self.next()
                return Message(fields, self.src[body_start:t.start], line)
            if t.kind == "ident":
                name = t.value
            elif t.kind == "ext":
                name = "[" + t.value + "]"
            else:
                raise ParseError("line %d: expected field name, got %r" % (t.line, t.text))
            self.next()
            colon = False
            if self.peek().kind == "punct" and self.peek().text == ":":
                self.next()
                colon = True
            nt = self.peek()
            if nt.kind == "punct" and nt.text in "{<":
                fields.append((name, self.parse_message()))
            elif nt.kind == "punct" and nt.text == "[":
                if not colon:
                    raise ParseError("line %d: list value needs ':'" % nt.line)
                for v in self.parse_list():
                    fields.append((name, v))
            else:
                if not colon:
                    raise ParseError("line %d: scalar field %s needs ':'" % (nt.line, name))
                fields.append((name, self.parse_scalar()))
            # optional separator
            s = self.peek()
            if s.kind == "punct" and s.text in ",;":
                self.next()

    def parse_message(self):
        t = self.next()
        close = "}" if t.text == "{" else ">"
        return self.parse_fields(close, t.end, t.line)

    def parse_list(self):
        self.expect("[")
        vals = []
        if self.peek().kind == "punct" and self.peek().text == "]":
            self.next()
            return vals
        while True:
            nt = self.peek()
            if nt.kind == "punct" and nt.text in "{<":
                vals.append(self.parse_message())
            else:
                vals.append(self.parse_scalar())
            s = self.next()
            if s.kind == "punct" and s.text == "]":
                return vals
            if not (s.kind == "punct" and s.text == ","):
                raise ParseError("line %d: expected ',' or ']' in list" % s.line)

    def parse_scalar(self):
        t = self.next()
        if t.kind == "string":
            parts = [t.value]
            while self.peek().kind == "string":  # adjacent literals concatenate
                parts.append(self.next().value)
            return Scalar("string", b"".join(parts), t.line)
        neg = ""
        if t.kind == "punct" and t.text == "-":
            neg = "-"
            t = self.next()
        if t.kind == "number":
            return Scalar("number", neg + t.value, t.line)
        if t.kind == "ident":
            return Scalar("ident", neg + t.value, t.line)
        raise ParseError("line %d: expected a value, got %r" % (t.line, t.text))


def parse_textproto(src):
    return Parser(src).parse_file()


# --------------------------------------------------------------------------
# Scalar conversions
# --------------------------------------------------------------------------

def sc_string(v, what="string"):
    if not isinstance(v, Scalar) or v.kind != "string":
        raise ParseError("line %s: %s must be a string literal" % (getattr(v, "line", "?"), what))
    try:
        return v.value.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError("line %d: %s is not valid UTF-8" % (v.line, what))


def sc_bytes(v):
    if not isinstance(v, Scalar) or v.kind != "string":
        raise ParseError("line %s: bytes must be a string literal" % getattr(v, "line", "?"))
    return v.value


def sc_int(v):
    if not isinstance(v, Scalar) or v.kind != "number":
        raise ParseError("line %s: expected an integer, got %r" % (getattr(v, "line", "?"), v))
    s = v.value
    neg = s.startswith("-")
    if neg:
        s = s[1:]
    s = s.rstrip("uU")
    if s.lower().startswith("0x"):
        n = int(s[2:], 16)
    elif len(s) > 1 and s.startswith("0") and s.isdigit():
        n = int(s, 8)
    elif s.isdigit():
        n = int(s, 10)
    else:
        raise ParseError("line %d: not an integer: %r" % (v.line, v.value))
    return -n if neg else n


def sc_double(v):
    """Returns a float (may be inf/nan)."""
    if not isinstance(v, Scalar) or v.kind not in ("number", "ident"):
        raise ParseError("line %s: expected a number, got %r" % (getattr(v, "line", "?"), v))
    s = v.value
    if v.kind == "ident":
        low = s.lower()
        sign = -1.0 if low.startswith("-") else 1.0
        low = low.lstrip("-")
        if low in ("inf", "infinity"):
            return sign * math.inf
        if low == "nan":
            return math.nan
        raise ParseError("line %d: not a double: %r" % (v.line, s))
    body = s.lstrip("-")
    if body.lower().startswith("0x") or (body.isdigit() and len(body) > 1 and body.startswith("0")):
        return float(sc_int(v))
    return float(s.rstrip("fF"))


def sc_bool(v):
    if isinstance(v, Scalar):
        if v.kind == "ident" and v.value in ("true", "True", "t"):
            return True
        if v.kind == "ident" and v.value in ("false", "False", "f"):
            return False
        if v.kind == "number" and v.value in ("0", "1"):
            return v.value == "1"
    raise ParseError("line %s: not a bool: %r" % (getattr(v, "line", "?"), v))


def sc_enum_ident(v):
    if isinstance(v, Scalar) and v.kind in ("ident", "number"):
        return v.value
    raise ParseError("line %s: not an enum value: %r" % (getattr(v, "line", "?"), v))


def json_double(x):
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


# --------------------------------------------------------------------------
# cel.expr.Value -> TypedValue
# --------------------------------------------------------------------------

PROTO_TYPE_PREFIXES = ("google.protobuf.", "cel.expr.conformance.", "google.api.expr.test.")


class Notes:
    """Collects reasons why a case needs protobuf message support."""

    def __init__(self):
        self.reasons = []

    def add(self, r):
        if r not in self.reasons:
            self.reasons.append(r)


def is_proto_type_name(name):
    n = name.lstrip(".")
    return n.startswith(PROTO_TYPE_PREFIXES)


def object_value(msg, notes, where):
    """google.protobuf.Any, either expanded `[type.googleapis.com/T] { ... }` or
    `type_url: "..." value: "<bytes>"`."""
    ext = [(k, v) for (k, v) in msg.fields if k.startswith("[")]
    if ext:
        if len(msg.fields) != 1 or not isinstance(ext[0][1], Message):
            raise ParseError("line %d: malformed Any expansion" % msg.line)
        type_url = ext[0][0][1:-1]
        text = ext[0][1].raw.strip()
    else:
        tu = msg.get("type_url")
        type_url = sc_string(tu, "type_url") if tu is not None else ""
        text = msg.raw.strip()
    tname = type_url.rsplit("/", 1)[-1]
    notes.add("%s is a protobuf message (object_value %s)" % (where, tname))
    return {"object": {"type_url": type_url, "text": text}}


def typed_value(v, notes, where):
    if not isinstance(v, Message):
        raise ParseError("line %s: Value must be a message" % getattr(v, "line", "?"))
    kinds = [k for k in v.names()]
    if len(kinds) != 1:
        raise ParseError("line %d: Value must have exactly one kind, has %r" % (v.line, kinds))
    kind = kinds[0]
    x = v.get(kind)
    if kind == "null_value":
        e = sc_enum_ident(x)
        if e not in ("NULL_VALUE", "0"):
            raise ParseError("line %d: bad null_value %r" % (v.line, e))
        return {"null": None}
    if kind == "bool_value":
        return {"bool": sc_bool(x)}
    if kind == "int64_value":
        n = sc_int(x)
        if not (-(1 << 63) <= n < (1 << 63)):
            raise ParseError("line %d: int64 out of range" % v.line)
        return {"int": str(n)}
    if kind == "uint64_value":
        n = sc_int(x)
        if not (0 <= n < (1 << 64)):
            raise ParseError("line %d: uint64 out of range" % v.line)
        return {"uint": str(n)}
    if kind == "double_value":
        return {"double": json_double(sc_double(x))}
    if kind == "string_value":
        return {"string": sc_string(x, "string_value")}
    if kind == "bytes_value":
        return {"bytes_b64": base64.b64encode(sc_bytes(x)).decode("ascii")}
    if kind == "list_value":
        if not isinstance(x, Message):
            raise ParseError("line %d: list_value must be a message" % v.line)
        return {"list": [typed_value(e, notes, where) for e in x.all("values")]}
    if kind == "map_value":
        if not isinstance(x, Message):
            raise ParseError("line %d: map_value must be a message" % v.line)
        entries = []
        for ent in x.all("entries"):
            k = ent.get("key")
            val = ent.get("value")
            if k is None or val is None:
                raise ParseError("line %d: map entry needs key and value" % ent.line)
            entries.append([typed_value(k, notes, where), typed_value(val, notes, where)])
        return {"map": entries}
    if kind == "type_value":
        t = sc_string(x, "type_value")
        if is_proto_type_name(t):
            notes.add("%s is a protobuf type name (%s)" % (where, t))
        return {"type": t}
    if kind == "enum_value":
        if not isinstance(x, Message):
            raise ParseError("line %d: enum_value must be a message" % v.line)
        t = sc_string(x.get("type"), "enum type") if x.has("type") else ""
        n = sc_int(x.get("value")) if x.has("value") else 0
        notes.add("%s is a protobuf enum value (%s)" % (where, t))
        return {"enum": {"type": t, "value": n}}
    if kind == "object_value":
        if not isinstance(x, Message):
            raise ParseError("line %d: object_value must be a message" % v.line)
        return object_value(x, notes, where)
    raise ParseError("line %d: unknown Value kind %r" % (v.line, kind))


# --------------------------------------------------------------------------
# Expression scanning (for protobuf message usage)
# --------------------------------------------------------------------------

_CEL_KEYWORDS_BEFORE_BRACE = {"in", "true", "false", "null"}


def cel_code_only(expr):
    """Replace the contents of CEL string/bytes literals with spaces so that
    identifiers can be scanned without matching text inside literals."""
    out = []
    i = 0
    n = len(expr)
    while i < n:
        c = expr[i]
        if c in "\"'":
            # prefix letters (r, b, rb, br ...) were already copied; detect raw
            j = len(out) - 1
            prefix = ""
            while j >= 0 and out[j].isalpha():
                prefix = out[j] + prefix
                j -= 1
            raw = "r" in prefix.lower() and (j < 0 or not (out[j].isalnum() or out[j] == "_"))
            if expr.startswith(c * 3, i):
                q = c * 3
                k = i + 3
            else:
                q = c
                k = i + 1
            while k < n and not expr.startswith(q, k):
                if expr[k] == "\\" and not raw:
                    k += 1
                k += 1
            end = min(n, k + len(q))
            out.append(q)
            out.append(" " * max(0, end - i - 2 * len(q)))
            out.append(q if k < n else "")
            i = end
        elif c == "/" and expr.startswith("//", i):
            while i < n and expr[i] != "\n":
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


_QUAL_IDENT_BRACE = re.compile(r"(\.?[A-Za-z_][A-Za-z0-9_]*(?:\s*\.\s*[A-Za-z_][A-Za-z0-9_]*)*)\s*\{")
_PROTO_NAME_IN_EXPR = re.compile(
    r"\b(google\s*\.\s*protobuf\s*\.\s*\w+|cel\s*\.\s*expr\s*\.\s*conformance\b[\w.\s]*|"
    r"google\s*\.\s*api\s*\.\s*expr\s*\.\s*test\b[\w.\s]*)"
)
_TEST_MESSAGE_NAMES = re.compile(r"\b(TestAllTypes|NestedTestAllTypes|TestRequired\w*|NestedMessage|NestedEnum|GlobalEnum|TestAllTypesProto[23])\b")


def scan_expr(expr, notes):
    code = cel_code_only(expr)
    m = _PROTO_NAME_IN_EXPR.search(code)
    if m:
        notes.add("expr references protobuf type %s" % re.sub(r"\s+", "", m.group(1)).rstrip("."))
    for m in _QUAL_IDENT_BRACE.finditer(code):
        name = re.sub(r"\s+", "", m.group(1))
        if name in _CEL_KEYWORDS_BEFORE_BRACE:
            continue
        notes.add("expr constructs a protobuf message (%s{...})" % name)
        break
    m = _TEST_MESSAGE_NAMES.search(code)
    if m:
        notes.add("expr references protobuf test type %s" % m.group(1))


# --------------------------------------------------------------------------
# type_env (cel.expr.Decl) scanning
# --------------------------------------------------------------------------

def _type_desc(t):
    """Collect proto-ish markers within a cel.expr.Type message."""
    found = []
    if not isinstance(t, Message):
        return found
    for (k, v) in t.fields:
        if k == "message_type":
            found.append("message type %s" % sc_string(v, "message_type"))
        elif k == "well_known":
            wk = sc_enum_ident(v)
            if wk in ("ANY", "1"):
                found.append("well-known type google.protobuf.Any")
        elif k == "wrapper":
            found.append("wrapper type %s" % sc_enum_ident(v))
        elif isinstance(v, Message):
            found.extend(_type_desc(v))
    return found


def scan_type_env(decls, notes):
    for d in decls:
        if not isinstance(d, Message):
            raise ParseError("type_env entry must be a message")
        name = sc_string(d.get("name"), "decl name") if d.has("name") else "?"
        if d.has("function"):
            notes.add("type_env declares function %s" % name)
        ident = d.get("ident")
        if isinstance(ident, Message):
            for desc in _type_desc(ident.get("type")):
                notes.add("type_env declares %s as %s" % (name, desc))


# --------------------------------------------------------------------------
# SimpleTest -> case
# --------------------------------------------------------------------------

KNOWN_TEST_FIELDS = {
    "name", "description", "expr", "disable_macros", "disable_check", "check_only",
    "type_env", "container", "locale", "bindings", "value", "typed_result",
    "eval_error", "any_eval_errors", "unknown", "any_unknowns",
}


def first_error_message(error_set):
    if not isinstance(error_set, Message):
        return ""
    for st in error_set.all("errors"):
        if isinstance(st, Message) and st.has("message"):
            return sc_string(st.get("message"), "error message")
    return ""


def convert_test(section_name, t, warnings):
    unknown_fields = [k for k in t.names() if k not in KNOWN_TEST_FIELDS]
    if unknown_fields:
        raise ParseError("line %d: unknown SimpleTest fields %r" % (t.line, unknown_fields))
    name = sc_string(t.get("name"), "test name")
    expr = sc_string(t.get("expr"), "expr") if t.has("expr") else ""
    disable_check = sc_bool(t.get("disable_check")) if t.has("disable_check") else False
    check_only = sc_bool(t.get("check_only")) if t.has("check_only") else False
    disable_macros = sc_bool(t.get("disable_macros")) if t.has("disable_macros") else False
    container = sc_string(t.get("container"), "container") if t.has("container") else ""
    locale = sc_string(t.get("locale"), "locale") if t.has("locale") else ""

    notes = Notes()
    if check_only:
        notes.add("check_only test (type-check only, no evaluation)")
    if container:
        notes.add("uses container %s" % container)
    if disable_macros:
        notes.add("disable_macros is not representable in the case format")
    if locale:
        notes.add("uses locale %s" % locale)
    scan_expr(expr, notes)
    scan_type_env(t.all("type_env"), notes)

    bindings = {}
    for b in t.all("bindings"):
        key = sc_string(b.get("key"), "binding key")
        ev = b.get("value")
        if not isinstance(ev, Message):
            raise ParseError("line %d: binding %s has no value" % (b.line, key))
        if ev.has("value"):
            bindings[key] = typed_value(ev.get("value"), notes, "binding %s" % key)
        elif ev.has("error"):
            notes.add("binding %s is an error value" % key)
            bindings[key] = {"null": None}
        elif ev.has("unknown"):
            notes.add("binding %s is an unknown value" % key)
            bindings[key] = {"null": None}
        else:
            raise ParseError("line %d: binding %s has an empty ExprValue" % (b.line, key))

    matchers = [k for k in ("value", "typed_result", "eval_error", "any_eval_errors",
                            "unknown", "any_unknowns") if t.has(k)]
    if len(matchers) > 1:
        raise ParseError("line %d: multiple result matchers %r" % (t.line, matchers))
    matcher = matchers[0] if matchers else None
    if matcher is None:
        expect = {"value": {"bool": True}}  # proto default: matches true
    elif matcher == "value":
        expect = {"value": typed_value(t.get("value"), notes, "expected value")}
    elif matcher == "typed_result":
        tr = t.get("typed_result")
        if isinstance(tr, Message) and tr.has("result"):
            expect = {"value": typed_value(tr.get("result"), notes, "expected value")}
        else:
            expect = {"value": {"bool": True}}
            notes.add("typed_result has only a deduced type, no result value")
    elif matcher == "eval_error":
        expect = {"eval_error": first_error_message(t.get("eval_error"))}
    elif matcher == "any_eval_errors":
        sets = t.get("any_eval_errors").all("errors")
        expect = {"eval_error": first_error_message(sets[0]) if sets else ""}
    else:  # unknown / any_unknowns
        expect = {"unknown": True}

    return {
        "section": section_name,
        "name": name,
        "expr": expr,
        "disable_check": disable_check,
        "container": container,
        "bindings": bindings,
        "expect": expect,
        "skip": "; ".join(notes.reasons) if notes.reasons else None,
    }


def convert_file(src, relpath, commit):
    root = parse_textproto(src)
    cases = []
    warnings = []
    for sec in root.all("section"):
        sname = sc_string(sec.get("name"), "section name") if sec.has("name") else ""
        for t in sec.all("test"):
            try:
                case = convert_test(sname, t, warnings)
            except ParseError as e:
                raise ParseError("%s: section %s: %s" % (relpath, sname, e))
            stem = os.path.splitext(os.path.basename(relpath))[0]
            why = OUT_OF_SCOPE_SECTIONS.get((stem, sname))
            if why:
                case["skip"] = "; ".join(r for r in (case["skip"], why) if r)
            cases.append(case)
    return {
        "source": {"repo": SOURCE_REPO, "path": relpath, "commit": commit},
        "cases": cases,
    }


# --------------------------------------------------------------------------
# Source access: work tree or git dir
# --------------------------------------------------------------------------

class WorkTree:
    def __init__(self, root):
        self.root = root

    def list(self):
        d = os.path.join(self.root, TESTDATA)
        return sorted(TESTDATA + "/" + f for f in os.listdir(d) if f.endswith(".textproto"))

    def read(self, relpath):
        with open(os.path.join(self.root, relpath), encoding="utf-8") as f:
            return f.read()


class GitDir:
    def __init__(self, gitdir, rev):
        self.gitdir = gitdir
        self.rev = rev

    def _git(self, *args):
        return subprocess.run(["git", "--git-dir", self.gitdir] + list(args),
                              check=True, stdout=subprocess.PIPE).stdout

    def list(self):
        out = self._git("ls-tree", "--name-only", self.rev, TESTDATA + "/").decode("utf-8")
        return sorted(p for p in out.splitlines() if p.endswith(".textproto"))

    def read(self, relpath):
        return self._git("show", "%s:%s" % (self.rev, relpath)).decode("utf-8")


def open_source(path, commit):
    if os.path.isdir(os.path.join(path, TESTDATA)):
        return WorkTree(path)
    if os.path.isfile(os.path.join(path, "HEAD")) and os.path.isdir(os.path.join(path, "objects")):
        return GitDir(path, commit)
    if os.path.isdir(os.path.join(path, ".git")):
        return GitDir(os.path.join(path, ".git"), commit)
    raise SystemExit("error: %s is neither a cel-spec work tree nor a git dir" % path)


# --------------------------------------------------------------------------
# README
# --------------------------------------------------------------------------

README_TEMPLATE = """\
# cel-spec "simple" conformance cases (generated)

These JSON files are generated from the CEL specification's *simple* conformance
test files, `tests/simple/testdata/*.textproto` in
[{repo}](https://github.com/{repo}) (messages of type
`cel.expr.conformance.test.SimpleTestFile`), for the Rust CEL conformance harness.
**Do not edit them by hand** -- regenerate instead.

- Source: `{repo}`, directory `tests/simple/testdata/`
- Commit: `{commit}`
- Generator: `scripts/cel-conformance/gen_cel_spec.py` (Python 3, standard library only)

## Regenerating

From the repository root, with a cel-spec work tree or (bare) git directory at `<cel-spec>`:

```sh
git -C <cel-spec> rev-parse HEAD   # the commit to record
python3 scripts/cel-conformance/gen_cel_spec.py <cel-spec> <commit>
```

For a git directory the files are read with `git show <commit>:<path>`; for a work
tree they are read from disk and `<commit>` is only recorded. The generator
rewrites every `<stem>.json` and this README.

## Format

```json
{{"source": {{"repo": "google/cel-spec", "path": "tests/simple/testdata/<file>", "commit": "<sha>"}},
 "cases": [{{"section": "...", "name": "...", "expr": "...",
            "disable_check": false, "container": "",
            "bindings": {{"x": {{"int": "1"}}}},
            "expect": {{"value": <TypedValue>}} | {{"eval_error": "<first message or empty>"}} | {{"unknown": true}},
            "skip": null | "<reason>"}}]}}
```

TypedValue is one of `{{"int": "<decimal>"}}`, `{{"uint": "<decimal>"}}`,
`{{"double": <number> | "NaN" | "Infinity" | "-Infinity"}}`, `{{"string": "..."}}`,
`{{"bytes_b64": "<base64>"}}`, `{{"bool": b}}`, `{{"null": null}}`, `{{"list": [...]}}`,
`{{"map": [[key, value], ...]}}`, `{{"type": "<name>"}}`,
`{{"enum": {{"type": "...", "value": n}}}}`,
`{{"object": {{"type_url": "...", "text": "<raw textproto of the message>"}}}}`.

Mapping notes:

- A test without a result matcher expects `{{"value": {{"bool": true}}}}` (the proto default).
- `typed_result` with a `result` becomes `{{"value": ...}}`; the deduced type is dropped.
- `eval_error` keeps only the first error message (conformance runners usually only
  check that evaluation failed). `any_eval_errors` maps to `eval_error` with the first
  message of the first set; `unknown`/`any_unknowns` map to `{{"unknown": true}}`
  (none of these three were used by the test files when the generator was written).
- `type_env` declarations are not carried over (bindings carry the values);
  `disable_macros` and `locale` are not representable (such cases are skipped;
  neither was used when the generator was written).

`skip` is set (semicolon-separated reasons) for cases a CEL engine without
protobuf message support cannot run: object values, enum values or protobuf type
names (`google.protobuf.*`, `cel.expr.conformance.*`, `google.api.expr.test.*`) in
the expression, bindings or expected value; message construction such as
`TestAllTypes{{...}}`; a non-empty `container`; `check_only` tests and `typed_result`
without a result value; `type_env` declarations of message, wrapper or function types.
Skipped cases are kept so that the harness can report them.

## Files

| File | Cases | Skipped | Runnable |
|------|------:|--------:|---------:|
{rows}
| **Total** | **{total}** | **{skipped}** | **{runnable}** |
"""


def write_readme(out_dir, commit, stats):
    rows = []
    tot = sk = 0
    for (stem, relpath, n, s) in stats:
        rows.append("| [`%s.json`](%s.json) (`%s`) | %d | %d | %d |" % (
            stem, stem, os.path.basename(relpath), n, s, n - s))
        tot += n
        sk += s
    text = README_TEMPLATE.format(repo=SOURCE_REPO, commit=commit, rows="\n".join(rows),
                                  total=tot, skipped=sk, runnable=tot - sk)
    with open(os.path.join(out_dir, "README.md"), "w", encoding="utf-8") as f:
        f.write(text)


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

def main(argv):
    args = list(argv[1:])
    out_dir = None
    if "--out" in args:
        i = args.index("--out")
        if i + 1 >= len(args):
            raise SystemExit("error: --out needs a directory")
        out_dir = args[i + 1]
        del args[i:i + 2]
    if len(args) != 2:
        raise SystemExit("usage: python3 scripts/cel-conformance/gen_cel_spec.py "
                         "<cel-spec-checkout-or-git-dir> <commit> [--out DIR]")
    src_path, commit = args
    if out_dir is None:
        repo_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        out_dir = os.path.join(repo_root, "tests", "cel-conformance", "cel-spec")
    os.makedirs(out_dir, exist_ok=True)

    source = open_source(src_path, commit)
    files = source.list()
    if not files:
        raise SystemExit("error: no .textproto files under %s in %s" % (TESTDATA, src_path))
    stats = []
    for relpath in files:
        stem = os.path.basename(relpath)[:-len(".textproto")]
        doc = convert_file(source.read(relpath), relpath, commit)
        with open(os.path.join(out_dir, stem + ".json"), "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1, ensure_ascii=False, allow_nan=False)
            f.write("\n")
        n = len(doc["cases"])
        s = sum(1 for c in doc["cases"] if c["skip"])
        stats.append((stem, relpath, n, s))
        print("%-28s %5d cases %5d skipped" % (stem + ".json", n, s))
    write_readme(out_dir, commit, stats)
    print("total %d cases, %d skipped -> %s" % (
        sum(s[2] for s in stats), sum(s[3] for s in stats), out_dir))


if __name__ == "__main__":
    main(sys.argv)
