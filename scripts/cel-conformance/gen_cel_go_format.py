#!/usr/bin/env python3
"""Generate CEL conformance cases from cel-go's tests of `string.format`'s legacy formatter.

Usage:
    python3 scripts/cel-conformance/gen_cel_go_format.py <cel-go-git-or-tree> <commit> [--out DIR]

<cel-go-git-or-tree> is a git directory / work tree (ext/formatting_test.go is then read with
`git show <commit>:ext/formatting_test.go`) or a plain source tree (read from disk; <commit> is
only recorded). Writes <out>/formatting.json, by default tests/cel-conformance/cel-go/.

Why these tests: the Kubernetes API server declares cel-go's strings library at version 2
(kubernetes/apiserver pkg/cel/environment/base.go), and below version 4 cel-go formats with its
legacy formatter (ext/formatting.go).  cel-spec's string_ext cases test the version-4 formatter;
cel-go's TestStringFormat and TestStringFormatHeterogeneousLiterals run the legacy one (their
environment declares version 3).

Each table entry of TestStringFormat becomes one case, as the Go test builds it:
    expr = fmt.Sprintf("%q.format([%s])", format, formatArgs)
  * dynArgs (Go values bound as `dyn` variables) become typed bindings; a protobuf message
    cannot be one, and its case is skipped with why.
  * A case run with a locale other than en_US is skipped: the API server sets none.
  * `err` becomes an expectation that loading or evaluating fails with a message containing it,
    as the Go test checks (`strings.Contains`): Kubernetes checks format calls at load too.
  * cel-go's go.mod pins golang.org/x/text below 0.23, whose `%e` put a narrow no-break space
    (U+202F) on each side of `×`.  Kubernetes 1.33 on pins 0.23 or later, without them
    (apiextensions-apiserver 7c1033ee changed its own expectation the same way), so expected
    outputs lose those two spaces; the case keeps the original under `rewritten_from`.

Only the Python 3 standard library is used.
"""
import argparse
import json
import os
import re
import subprocess
import sys

PATH = "ext/formatting_test.go"
SOURCE_REPO = "google/cel-go"
NARROW_TIMES = "\u202f\u00d7\u202f"


def read_source(tree, commit):
    if os.path.isdir(os.path.join(tree, "ext")):
        with open(os.path.join(tree, PATH), encoding="utf-8") as f:
            return f.read()
    return subprocess.run(["git", "--git-dir", tree, "show", f"{commit}:{PATH}"], check=True,
                          capture_output=True, text=True).stdout


# --------------------------------------------------------------------------
# A reader for the Go this table is written in: string literals, composite literals, calls.

class Reader:
    def __init__(self, text, pos=0):
        self.text, self.pos = text, pos

    def skip_space(self):
        while True:
            while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n":
                self.pos += 1
            if self.text.startswith("//", self.pos):
                self.pos = self.text.index("\n", self.pos)
            else:
                return

    def peek(self):
        self.skip_space()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, s):
        self.skip_space()
        if not self.text.startswith(s, self.pos):
            raise SyntaxError(f"expected {s!r} at {self.text[self.pos:self.pos + 40]!r}")
        self.pos += len(s)

    def string(self):
        """A Go interpreted or raw string literal, decoded."""
        self.skip_space()
        quote = self.text[self.pos]
        if quote == "`":
            end = self.text.index("`", self.pos + 1)
            s = self.text[self.pos + 1:end]
            self.pos = end + 1
            return s
        out, i = [], self.pos + 1
        while self.text[i] != '"':
            c = self.text[i]
            if c != "\\":
                out.append(c)
                i += 1
                continue
            e = self.text[i + 1]
            simple = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "a": "\a",
                      "b": "\b", "f": "\f", "v": "\v"}
            if e in simple:
                out.append(simple[e])
                i += 2
            elif e in "uU":
                n = 4 if e == "u" else 8
                out.append(chr(int(self.text[i + 2:i + 2 + n], 16)))
                i += 2 + n
            elif e == "x":
                out.append(chr(int(self.text[i + 2:i + 4], 16)))
                i += 4
            else:
                raise SyntaxError(f"escape \\{e}")
        self.pos = i + 1
        return "".join(out)

    def value(self):
        """A Go expression of the table: ("str", s) | ("num", text) | ("call", name, args) |
        ("composite", type, [(key, value)]) | ("ident", name) | ("concat", [parts])."""
        self.skip_space()
        c = self.peek()
        if c in '"`':
            v = ("str", self.string())
        elif c == "{":
            v = ("composite", "", self.composite_body())
        elif c == "-" or c.isdigit():
            m = re.compile(r"-?[0-9][0-9.eE+-]*").match(self.text, self.pos)
            self.pos = m.end()
            v = ("num", m.group())
        else:
            m = re.compile(r"&?(\[\])?[A-Za-z_][A-Za-z0-9_.]*(\[[A-Za-z0-9_.]*\][A-Za-z0-9_.]*)*").match(self.text, self.pos)
            if not m:
                raise SyntaxError(f"value at {self.text[self.pos:self.pos + 40]!r}")
            name = m.group()
            self.pos = m.end()
            if name.startswith("[]") or self.peek() == "{":
                v = ("composite", name, self.composite_body())
            elif self.peek() == "(":
                self.expect("(")
                args = []
                while self.peek() != ")":
                    args.append(self.value())
                    if self.peek() == ",":
                        self.expect(",")
                self.expect(")")
                v = ("call", name, args)
            else:
                v = ("ident", name)
        if self.peek() == "+":
            self.expect("+")
            rest = self.value()
            parts = rest[1] if rest[0] == "concat" else [rest]
            return ("concat", [v] + parts)
        return v

    def composite_body(self):
        self.expect("{")
        entries = []
        while self.peek() != "}":
            first = self.value()
            if self.peek() == ":":
                self.expect(":")
                entries.append((first, self.value()))
            else:
                entries.append((None, first))
            if self.peek() == ",":
                self.expect(",")
        self.expect("}")
        return entries


def slice_literal(text, marker):
    """The entries of the slice literal that follows `marker` (`tests := []struct {...}{`)."""
    start = text.index(marker)
    r = Reader(text, start + len(marker))
    # Skip the struct type's field list.
    depth = 0
    while True:
        c = r.text[r.pos]
        r.pos += 1
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                break
    return r.composite_body()


# --------------------------------------------------------------------------
# Go values to CEL.

def go_quote(s):
    """Go's strconv.Quote, as `%q` writes the template into the expression."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable() and (o >= 0x20 or ch == " "):
            out.append(ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append({"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
                        "\v": "\\v"}[ch])
        elif o < 0x80:
            out.append(f"\\x{o:02x}")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


def text_of(v):
    if v[0] == "str":
        return v[1]
    if v[0] == "concat":
        return "".join(text_of(p) for p in v[1])
    if v[0] == "call" and v[1] == "strings.Repeat":
        return text_of(v[2][0]) * int(v[2][1][1])
    raise ValueError(f"not a string: {v}")


GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|ns|m|s)")
UNIT_SECONDS = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]


class Unbindable(Exception):
    pass


def typed(v):
    """A dynArgs Go value as the harness's typed JSON."""
    kind = v[0]
    if kind == "str":
        return {"string": v[1]}
    if kind == "num":
        return {"double": float(v[1])} if re.search(r"[.eE]", v[1]) else {"int": v[1]}
    if kind == "ident" and v[1] in ("true", "false"):
        return {"bool": v[1] == "true"}
    if kind == "call":
        name, args = v[1], v[2]
        if name in ("int64", "int", "types.Int"):
            return {"int": args[0][1]}
        if name in ("uint64", "uint", "types.Uint"):
            return {"uint": args[0][1]}
        if name == "math.NaN":
            return {"double": "NaN"}
        if name == "math.Inf":
            return {"double": "Infinity" if not args[0][1].startswith("-") else "-Infinity"}
        if name == "mustParseDuration":
            parts = GO_DURATION.findall(args[0][1])
            nanos = round(sum(float(n) * UNIT_SECONDS[u] for n, u in parts) * 1e9)
            return {"duration_nanos": str(nanos)}
        if name == "time.Date":
            y, mo, d, h, mi, s, ns, zone = args
            month = MONTHS.index(mo[1].split(".")[1]) + 1
            if zone != ("ident", "time.UTC"):
                raise Unbindable("a time in a zone other than UTC")
            return {"timestamp": f"{int(y[1]):04d}-{month:02d}-{int(d[1]):02d}T{int(h[1]):02d}:"
                                 f"{int(mi[1]):02d}:{int(s[1]):02d}.{int(ns[1]):09d}Z"}
    if kind == "composite":
        if v[1].startswith("[]"):
            return {"list": [typed(x) for _, x in v[2]]}
        if v[1].startswith("map["):
            return {"map": [[typed(k), typed(x)] for k, x in v[2]]}
        raise Unbindable("a protobuf message bound as a variable; the Kubernetes environment declares no "
                         "protobuf message types")
    raise Unbindable(f"a Go value the generator does not read: {v}")


def expect_output(output):
    expect = {"value": {"string": output.replace(NARROW_TIMES, "\u00d7")}}
    if NARROW_TIMES in output:
        return expect, {"expect": {"value": {"string": output}}}
    return expect, None


def cases_of(text):
    cases = []
    for _, entry in slice_literal(text, "func TestStringFormat(t *testing.T) {\n\ttests := []struct"):
        fields = {k[1]: val for k, val in entry[2]}
        name = text_of(fields["name"])
        template = text_of(fields.get("format", ("str", "")))
        args = text_of(fields.get("formatArgs", ("str", "")))
        case = {"name": name, "expr": f"{go_quote(template)}.format([{args}])", "bindings": {},
                "skip": None, "go_test": f"TestStringFormat/{name}"}
        locale = text_of(fields.get("locale", ("str", "")))
        if "TestAllTypes" in args:
            case["skip"] = ("formats a protobuf message of cel-go's test types; the Kubernetes environment "
                            "declares no protobuf message types")
        elif locale not in ("", "en_US"):
            case["skip"] = f"runs with the {locale} locale; the API server sets none, so en_US"
        try:
            for (_, var), val in ((k, x) for k, x in fields.get("dynArgs", ("composite", "", []))[2]):
                case["bindings"][var] = typed(val)
        except Unbindable as why:
            case["skip"] = str(why)
        if "err" in fields:
            case["expect"] = {"error_containing": text_of(fields["err"])}
        else:
            case["expect"], rewritten = expect_output(text_of(fields.get("expectedOutput", ("str", ""))))
            if rewritten:
                case["rewritten_from"] = rewritten
        if "expectedEstimatedCost" in fields:
            cost = {k[1]: int(x[1]) for k, x in fields["expectedEstimatedCost"][2]}
            case["cost"] = {"estimated": [cost["Min"], cost["Max"]]}
        cases.append(case)
    for _, entry in slice_literal(text, "func TestStringFormatHeterogeneousLiterals(t *testing.T) {\n\ttests := []struct"):
        fields = {k[1]: val for k, val in entry[2]}
        expr = text_of(fields["expr"])
        cases.append({"name": expr, "expr": expr, "bindings": {}, "skip": None,
                      "expect": {"value": {"string": text_of(fields["out"])}},
                      "go_test": "TestStringFormatHeterogeneousLiterals"})
    return cases


README = """# cel-go `string.format` conformance cases

Generated by `scripts/cel-conformance/gen_cel_go_format.py` from cel-go's tests of the legacy
`string.format` formatter, the one the Kubernetes API server runs (it declares the strings library
at version 2; cel-go formats with the legacy formatter below version 4, and cel-spec's
`string_ext` cases test the version-4 one). Do not edit the JSON by hand; regenerate instead.

## Source

| repo | path | commit |
| --- | --- | --- |
| {repo} | `{path}` | `{commit}` |

## What the generator changes

- Expected `%e` outputs lose the narrow no-break spaces (U+202F) around `×`: cel-go's go.mod pins
  golang.org/x/text below 0.23, which wrote them; Kubernetes 1.33 on pins 0.23 or later, which does
  not. The case keeps the original under `rewritten_from`.
- `dynArgs` values become typed bindings; a case binding a protobuf message, or run with a locale
  other than en_US (the API server sets none), is skipped with why.

## Regenerate

```sh
# <cel-go> is a git dir (bare or not) or a source tree of github.com/google/cel-go
python3 scripts/cel-conformance/gen_cel_go_format.py <cel-go> {commit}
```
"""


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("tree")
    p.add_argument("commit")
    p.add_argument("--out", default="tests/cel-conformance/cel-go")
    a = p.parse_args()
    cases = cases_of(read_source(a.tree, a.commit))
    os.makedirs(a.out, exist_ok=True)
    doc = {"source": {"repo": SOURCE_REPO, "path": PATH, "commit": a.commit},
           "env": "cel-go's strings library below version 4 (the legacy formatter), the API server's en_US "
                  "locale, each dynArgs value bound as a dyn variable",
           "cases": cases}
    with open(os.path.join(a.out, "formatting.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(doc, ensure_ascii=False, indent=1) + "\n")
    with open(os.path.join(a.out, "README.md"), "w", encoding="utf-8") as f:
        f.write(README.format(repo=SOURCE_REPO, path=PATH, commit=a.commit))
    skipped = sum(1 for c in cases if c["skip"])
    print(f"{len(cases)} cases ({skipped} skipped) from {SOURCE_REPO} {PATH} @ {a.commit}", file=sys.stderr)


if __name__ == "__main__":
    main()
