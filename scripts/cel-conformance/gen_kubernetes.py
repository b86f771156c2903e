#!/usr/bin/env python3
"""Generate CEL conformance case files from the Kubernetes CEL library tests.

Usage:
    python3 scripts/cel-conformance/gen_kubernetes.py <apiserver-git-or-tree> <apiserver-commit> \
        [<apiextensions-git-or-tree> <apiextensions-commit>] [--out DIR]

<*-git-or-tree> is either a git directory / work tree (files are then read with
`git show <commit>:<path>`) or a plain source tree (files are read from disk and
<commit> is only recorded).

What it does
  * kubernetes/apiserver pkg/cel/library/*_test.go: every Test* function is run
    through a small interpreter for the subset of Go these tests use (short
    variable declarations, composite literals, for-range loops, if/continue,
    append, fmt.Sprintf, t.Run and closures).  Each call of a per-file case
    helper (a top-level `test*` function with an `expr` parameter, e.g.
    testCIDR, testQuantity, testCost) becomes one case; the helper's parameter
    names tell which argument is the expression, the expected value, the
    expected runtime error (exact string or regexp, read from the helper body)
    and the expected compile errors (regexps).
  * kubernetes/apiextensions-apiserver pkg/apiserver/schema/cel/validation_test.go:
    the TestValidationExpressions table.  Every `valid:` rule must evaluate to
    true with `self` bound to the object; every `errors:` rule must produce an
    error containing the given text.  The structural schema is translated to
    OpenAPI JSON and kept on each case; cases whose outcome depends on schema
    typing that plain JSON cannot express are kept with a `skip` reason.

Only the Python 3 standard library is used.
"""

import json
import math
import os
import re
import struct
import subprocess
import sys

# --------------------------------------------------------------------------
# Source access
# --------------------------------------------------------------------------


class Source:
    """Reads files of one repository either from git (at a commit) or from disk."""

    def __init__(self, root, commit):
        self.root = root
        self.git = False
        self.commit = commit
        try:
            out = subprocess.run(["git", "-C", root, "rev-parse", "--verify", commit + "^{commit}"],
                                 capture_output=True, text=True, check=True)
            self.commit = out.stdout.strip()
            self.git = True
        except (subprocess.CalledProcessError, FileNotFoundError):
            if not os.path.isdir(root):
                raise SystemExit("not a directory: %s" % root)

    def read(self, path):
        if self.git:
            out = subprocess.run(["git", "-C", self.root, "show", "%s:%s" % (self.commit, path)],
                                 capture_output=True, check=True)
            return out.stdout.decode("utf-8")
        with open(os.path.join(self.root, path), encoding="utf-8") as f:
            return f.read()

    def exists(self, path):
        try:
            self.read(path)
            return True
        except (subprocess.CalledProcessError, OSError):
            return False

    def list_dir(self, path):
        if self.git:
            out = subprocess.run(["git", "-C", self.root, "ls-tree", "--name-only", self.commit, path.rstrip("/") + "/"],
                                 capture_output=True, text=True, check=True)
            return [os.path.basename(p) for p in out.stdout.split()]
        return sorted(os.listdir(os.path.join(self.root, path)))


# --------------------------------------------------------------------------
# Go lexer
# --------------------------------------------------------------------------


class Tok:
    __slots__ = ("kind", "val", "s", "e")

    def __init__(self, kind, val, s, e):
        self.kind, self.val, self.s, self.e = kind, val, s, e

    def __repr__(self):
        return "Tok(%s,%r)" % (self.kind, self.val)


GO_KEYWORDS = {"break", "case", "chan", "const", "continue", "default", "defer", "else", "fallthrough", "for",
               "func", "go", "goto", "if", "import", "interface", "map", "package", "range", "return", "select",
               "struct", "switch", "type", "var"}

OPS = sorted(["<<=", ">>=", "&^=", "...", "&&", "||", "<-", "++", "--", "==", "!=", "<=", ">=", ":=", "+=", "-=",
              "*=", "/=", "%=", "&=", "|=", "^=", "<<", ">>", "&^", "+", "-", "*", "/", "%", "&", "|", "^", "<",
              ">", "=", "!", "(", ")", "[", "]", "{", "}", ",", ";", ".", ":", "~"], key=len, reverse=True)

NUM_RE = re.compile(r"0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+|"
                    r"(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?[\d_]+)?")


class GoSyntaxError(Exception):
    pass


def go_unescape(body, quote):
    out = bytearray()
    i = 0
    n = len(body)
    simple = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, "'": 39, '"': 34}
    while i < n:
        c = body[i]
        if c != "\\":
            out += c.encode("utf-8")
            i += 1
            continue
        i += 1
        c = body[i]
        if c in simple:
            out.append(simple[c])
            i += 1
        elif c == "x":
            out.append(int(body[i + 1:i + 3], 16))
            i += 3
        elif c in "01234567":
            out.append(int(body[i:i + 3], 8))
            i += 3
        elif c == "u":
            out += chr(int(body[i + 1:i + 5], 16)).encode("utf-8")
            i += 5
        elif c == "U":
            out += chr(int(body[i + 1:i + 9], 16)).encode("utf-8")
            i += 9
        else:
            raise GoSyntaxError("bad escape \\%s" % c)
    return out.decode("utf-8", errors="replace")


def _needs_semi(t):
    if t.kind in ("int", "float", "imag", "char", "string"):
        return True
    if t.kind == "ident":
        return t.val not in GO_KEYWORDS or t.val in ("break", "continue", "fallthrough", "return")
    return t.kind == "op" and t.val in ("++", "--", ")", "]", "}")


def lex(src):
    toks = []
    i = 0
    n = len(src)
    while i < n:
        c = src[i]
        if c == "\n":
            if toks and _needs_semi(toks[-1]):
                toks.append(Tok("op", ";", i, i))
            i += 1
            continue
        if c in " \t\r\f":
            i += 1
            continue
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
            continue
        if src.startswith("/*", i):
            j = src.find("*/", i + 2)
            if j < 0:
                raise GoSyntaxError("unterminated comment")
            if "\n" in src[i:j] and toks and _needs_semi(toks[-1]):
                toks.append(Tok("op", ";", i, i))
            i = j + 2
            continue
        if c == "`":
            j = src.find("`", i + 1)
            if j < 0:
                raise GoSyntaxError("unterminated raw string")
            toks.append(Tok("string", src[i + 1:j].replace("\r", ""), i, j + 1))
            i = j + 1
            continue
        if c in "\"'":
            j = i + 1
            while j < n and src[j] != c:
                if src[j] == "\\":
                    j += 1
                if src[j] == "\n":
                    raise GoSyntaxError("newline in string")
                j += 1
            body = go_unescape(src[i + 1:j], c)
            if c == '"':
                toks.append(Tok("string", body, i, j + 1))
            else:
                toks.append(Tok("char", ord(body) if len(body) == 1 else 0, i, j + 1))
            i = j + 1
            continue
        if c.isdigit() or (c == "." and i + 1 < n and src[i + 1].isdigit()):
            m = NUM_RE.match(src, i)
            text = m.group(0)
            j = m.end()
            clean = text.replace("_", "")
            if j < n and src[j] == "i":
                toks.append(Tok("imag", clean, i, j + 1))
                i = j + 1
                continue
            if clean[:2].lower() in ("0x", "0b", "0o"):
                toks.append(Tok("int", int(clean, 0), i, j))
            elif "." in clean or "e" in clean.lower():
                toks.append(Tok("float", float(clean), i, j))
            elif len(clean) > 1 and clean[0] == "0":
                toks.append(Tok("int", int(clean, 8), i, j))
            else:
                toks.append(Tok("int", int(clean), i, j))
            i = j
            continue
        if c.isalpha() or c == "_" or ord(c) > 127:
            j = i + 1
            while j < n and (src[j].isalnum() or src[j] == "_" or ord(src[j]) > 127):
                j += 1
            toks.append(Tok("ident", src[i:j], i, j))
            i = j
            continue
        for op in OPS:
            if src.startswith(op, i):
                toks.append(Tok("op", op, i, i + len(op)))
                i += len(op)
                break
        else:
            raise GoSyntaxError("unexpected character %r at %d" % (c, i))
    if toks and _needs_semi(toks[-1]):
        toks.append(Tok("op", ";", n, n))
    toks.append(Tok("EOF", None, n, n))
    return toks


# --------------------------------------------------------------------------
# Go parser (expressions, composite literals, statements)
# --------------------------------------------------------------------------


class N:
    """AST node: kind plus attributes; s/e are source offsets into src."""

    def __init__(self, kind, s, e, src, **kw):
        self.kind, self.s, self.e, self.src = kind, s, e, src
        self.__dict__.update(kw)

    def text(self):
        return self.src[self.s:self.e]

    def __repr__(self):
        return "N(%s: %s)" % (self.kind, self.text()[:60])


PREC = {"||": 1, "&&": 2, "==": 3, "!=": 3, "<": 3, "<=": 3, ">": 3, ">=": 3, "+": 4, "-": 4, "|": 4, "^": 4,
        "*": 5, "/": 5, "%": 5, "<<": 5, ">>": 5, "&": 5, "&^": 5}
ASSIGN_OPS = {"=", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "<<=", ">>=", "&^="}


class FuncDecl:
    def __init__(self, name, params, body_idx, body_end_idx, parser, text):
        self.name, self.params, self.body_idx, self.body_end_idx = name, params, body_idx, body_end_idx
        self.parser = parser
        self.text = text
        self._body = None

    def body(self):
        if self._body is None:
            p = self.parser
            saved = p.pos
            p.pos = self.body_idx
            self._body = p.parse_block()
            p.pos = saved
        return self._body


class Parser:
    def __init__(self, src):
        self.src = src
        self.toks = lex(src)
        self.pos = 0
        self.no_lit = False

    # token helpers
    def peek(self, k=0):
        return self.toks[min(self.pos + k, len(self.toks) - 1)]

    def at(self, val, k=0):
        t = self.peek(k)
        return t.kind in ("op", "ident") and t.val == val

    def next(self):
        t = self.toks[self.pos]
        self.pos += 1
        return t

    def expect(self, val):
        t = self.next()
        if t.val != val or t.kind not in ("op", "ident"):
            raise GoSyntaxError("expected %r, got %r at offset %d" % (val, t.val, t.s))
        return t

    def node(self, kind, s, e, **kw):
        return N(kind, s, e, self.src, **kw)

    def skip_balanced(self):
        """At an opening bracket: skip to just after its partner."""
        pairs = {"(": ")", "[": "]", "{": "}"}
        open_t = self.next()
        stack = [pairs[open_t.val]]
        while stack:
            t = self.next()
            if t.kind == "EOF":
                raise GoSyntaxError("unbalanced")
            if t.kind == "op" and t.val in pairs:
                stack.append(pairs[t.val])
            elif t.kind == "op" and t.val == stack[-1]:
                stack.pop()
        return self.toks[self.pos - 1]

    # ---- types
    def is_type_start(self):
        t = self.peek()
        return (t.kind == "op" and t.val in ("[", "*")) or (t.kind == "ident" and t.val in (
            "map", "chan", "func", "struct", "interface"))

    def parse_type(self):
        t = self.peek()
        s = t.s
        if t.kind == "op" and t.val == "[":
            self.next()
            if self.at("]"):
                self.next()
                elem = self.parse_type()
                return self.node("type", s, elem.e, tkind="slice", elem=elem)
            if self.at("..."):
                self.next()
            else:
                saved = self.no_lit
                self.no_lit = False
                self.parse_expr()
                self.no_lit = saved
            self.expect("]")
            elem = self.parse_type()
            return self.node("type", s, elem.e, tkind="array", elem=elem)
        if t.kind == "op" and t.val == "*":
            self.next()
            elem = self.parse_type()
            return self.node("type", s, elem.e, tkind="ptr", elem=elem)
        if t.kind == "op" and t.val == "(":
            self.next()
            inner = self.parse_type()
            self.expect(")")
            return inner
        if t.kind != "ident":
            raise GoSyntaxError("type expected at offset %d" % t.s)
        if t.val == "map":
            self.next()
            self.expect("[")
            key = self.parse_type()
            self.expect("]")
            val = self.parse_type()
            return self.node("type", s, val.e, tkind="map", key=key, elem=val)
        if t.val in ("struct", "interface"):
            self.next()
            end = self.skip_balanced()
            return self.node("type", s, end.e, tkind=t.val)
        if t.val == "chan":
            self.next()
            if self.at("<-"):
                self.next()
            elem = self.parse_type()
            return self.node("type", s, elem.e, tkind="chan", elem=elem)
        if t.val == "func":
            self.next()
            params = self.parse_params()
            end = self.toks[self.pos - 1].e
            if self.at("("):
                end = self.skip_balanced().e
            elif self.is_type_start() or (self.peek().kind == "ident" and self.peek().val not in GO_KEYWORDS):
                end = self.parse_type().e
            return self.node("type", s, end, tkind="func", params=params)
        self.next()
        e = t.e
        name = t.val
        if self.at("."):
            self.next()
            t2 = self.next()
            name += "." + t2.val
            e = t2.e
        if self.at("["):
            e = self.skip_balanced().e
        return self.node("type", s, e, tkind="named", name=name)

    def parse_params(self):
        """'(' params ')' -> list of (name or None, variadic, type_text)."""
        self.expect("(")
        parts = []
        cur = []
        depth = 0
        while True:
            t = self.next()
            if t.kind == "EOF":
                raise GoSyntaxError("eof in params")
            if t.kind == "op" and t.val in "([{":
                depth += 1
            elif t.kind == "op" and t.val in ")]}":
                if depth == 0:
                    if cur:
                        parts.append(cur)
                    break
                depth -= 1
            if depth == 0 and t.kind == "op" and t.val == ",":
                parts.append(cur)
                cur = []
                continue
            if t.kind == "op" and t.val == ";":
                continue
            cur.append(t)
        named = any(len(p) > 1 and p[0].kind == "ident" and not (p[1].kind == "op" and p[1].val == ".")
                    for p in parts)
        out = []
        for p in parts:
            if named:
                name = p[0].val
                rest = p[1:]
                variadic = bool(rest) and rest[0].kind == "op" and rest[0].val == "..."
                ttext = self.src[rest[0].s:rest[-1].e] if rest else None
                out.append([name, variadic, ttext])
            else:
                out.append([None, p[0].kind == "op" and p[0].val == "...", self.src[p[0].s:p[-1].e]])
        if named:  # grouped names share the following type
            for i in range(len(out) - 1, -1, -1):
                if out[i][2] is None and i + 1 < len(out):
                    out[i][2] = out[i + 1][2]
                    out[i][1] = out[i + 1][1]
        return [tuple(p) for p in out]

    # ---- expressions
    def parse_expr(self, prec=0):
        left = self.parse_unary()
        while True:
            t = self.peek()
            if t.kind != "op" or t.val not in PREC or PREC[t.val] <= prec:
                return left
            self.next()
            right = self.parse_expr(PREC[t.val])
            left = self.node("binary", left.s, right.e, op=t.val, x=left, y=right)

    def parse_expr_list(self):
        out = [self.parse_expr()]
        while self.at(","):
            self.next()
            out.append(self.parse_expr())
        return out

    def parse_unary(self):
        t = self.peek()
        if t.kind == "op" and t.val in ("-", "+", "!", "^", "*", "&", "<-"):
            self.next()
            x = self.parse_unary()
            return self.node("unary", t.s, x.e, op=t.val, x=x)
        return self.parse_primary()

    def parse_composite(self, typ):
        lb = self.expect("{")
        saved = self.no_lit
        self.no_lit = False
        elems = []
        while not self.at("}"):
            if self.at(";"):
                self.next()
                continue
            v = self.parse_composite(None) if self.at("{") else self.parse_expr()
            k = None
            if self.at(":"):
                self.next()
                k = v
                v = self.parse_composite(None) if self.at("{") else self.parse_expr()
            elems.append((k, v))
            if self.at(","):
                self.next()
            else:
                while self.at(";"):
                    self.next()
                break
        rb = self.expect("}")
        self.no_lit = saved
        s = typ.s if typ is not None else lb.s
        return self.node("comp", s, rb.e, typ=typ, elems=elems)

    def parse_func_lit(self):
        t = self.expect("func")
        params = self.parse_params()
        if self.at("("):
            self.skip_balanced()
        elif not self.at("{"):
            self.parse_type()
        body_idx = self.pos
        saved = self.no_lit
        self.no_lit = False
        body = self.parse_block()
        self.no_lit = saved
        return self.node("func", t.s, self.toks[self.pos - 1].e, params=params, body=body, body_idx=body_idx)

    def parse_primary(self):
        t = self.peek()
        if t.kind in ("int", "float", "string", "char", "imag"):
            self.next()
            x = self.node("lit", t.s, t.e, val=t.val, lkind=t.kind)
        elif t.kind == "op" and t.val == "(":
            self.next()
            saved = self.no_lit
            self.no_lit = False
            inner = self.parse_type() if self.at("*") and False else self.parse_expr()
            self.no_lit = saved
            rp = self.expect(")")
            x = self.node("paren", t.s, rp.e, x=inner)
        elif t.kind == "op" and t.val == "[":
            x = self.parse_type()
        elif t.kind == "ident" and t.val == "func":
            if self.peek_is_func_lit():
                x = self.parse_func_lit()
            else:
                x = self.parse_type()
        elif t.kind == "ident" and t.val in ("map", "struct", "interface", "chan"):
            x = self.parse_type()
        elif t.kind == "ident":
            self.next()
            x = self.node("ident", t.s, t.e, name=t.val)
        else:
            raise GoSyntaxError("unexpected %r at offset %d" % (t.val, t.s))
        while True:
            t = self.peek()
            if t.kind != "op":
                return x
            if t.val == ".":
                self.next()
                if self.at("("):
                    self.next()
                    if self.at("type"):
                        self.next()
                    else:
                        self.parse_type()
                    rp = self.expect(")")
                    x = self.node("assert", x.s, rp.e, x=x)
                else:
                    nm = self.next()
                    x = self.node("sel", x.s, nm.e, x=x, name=nm.val)
            elif t.val == "[":
                self.next()
                saved = self.no_lit
                self.no_lit = False
                lo = hi = None
                if not self.at(":"):
                    lo = self.parse_type() if self.is_type_start() and not self.at("*") else self.parse_expr()
                is_slice = False
                if self.at(":"):
                    is_slice = True
                    self.next()
                    if not self.at("]"):
                        hi = self.parse_expr()
                while self.at(","):  # generic instantiation with several type args
                    self.next()
                    self.parse_type()
                self.no_lit = saved
                rb = self.expect("]")
                if is_slice:
                    x = self.node("slice", x.s, rb.e, x=x, lo=lo, hi=hi)
                else:
                    x = self.node("index", x.s, rb.e, x=x, index=lo)
            elif t.val == "(":
                self.next()
                saved = self.no_lit
                self.no_lit = False
                args = []
                ell = False
                while not self.at(")"):
                    if self.at(";"):
                        self.next()
                        continue
                    if self.is_type_start() and not self.at("*") and not (self.at("func") and self.peek_is_func_lit()):
                        a = self.parse_type()
                        if self.at("{"):
                            a = self.parse_composite(a)
                        elif self.at("("):
                            self.next()
                            inner = self.parse_expr()
                            rp = self.expect(")")
                            a = self.node("call", a.s, rp.e, fn=a, args=[inner], ell=False)
                    else:
                        a = self.parse_expr()
                    args.append(a)
                    if self.at("..."):
                        self.next()
                        ell = True
                    if self.at(","):
                        self.next()
                    else:
                        while self.at(";"):
                            self.next()
                        break
                self.no_lit = saved
                rp = self.expect(")")
                x = self.node("call", x.s, rp.e, fn=x, args=args, ell=ell)
            elif t.val == "{":
                if x.kind == "type" or (not self.no_lit and x.kind in ("ident", "sel", "index")):
                    x = self.parse_composite(x)
                else:
                    return x
            else:
                return x

    def peek_is_func_lit(self):
        """At 'func': is this a function literal (signature followed by a body)?"""
        saved = self.pos
        try:
            self.next()
            self.parse_params()
            if self.at("("):
                self.skip_balanced()
            elif not self.at("{"):
                self.parse_type()
            return self.at("{")
        except GoSyntaxError:
            return False
        finally:
            self.pos = saved

    # ---- statements
    def parse_block(self):
        self.expect("{")
        stmts = []
        while not self.at("}"):
            if self.peek().kind == "EOF":
                raise GoSyntaxError("eof in block")
            if self.at(";"):
                self.next()
                continue
            stmts.append(self.parse_stmt())
        self.expect("}")
        return stmts

    def skip_stmt(self, start):
        depth = 0
        while True:
            t = self.peek()
            if t.kind == "EOF":
                break
            if t.kind == "op" and t.val in "([{":
                depth += 1
            elif t.kind == "op" and t.val in ")]}":
                if depth == 0:
                    break
                depth -= 1
            elif t.kind == "op" and t.val == ";" and depth == 0:
                break
            self.next()
        end = self.toks[self.pos - 1].e if self.pos > start else self.peek().s
        return self.node("unhandled", self.toks[start].s, end, why="unparsed statement")

    def parse_stmt(self):
        start = self.pos
        try:
            return self._parse_stmt()
        except GoSyntaxError as ex:
            self.pos = start
            st = self.skip_stmt(start)
            st.why = "parse error: %s" % ex
            return st

    def _parse_stmt(self):
        t = self.peek()
        s = t.s
        if t.kind == "op" and t.val == "{":
            body = self.parse_block()
            return self.node("block", s, self.toks[self.pos - 1].e, body=body)
        if t.kind == "ident" and t.val in GO_KEYWORDS:
            kw = t.val
            if kw == "for":
                return self.parse_for()
            if kw == "if":
                return self.parse_if()
            if kw == "return":
                self.next()
                vals = [] if (self.at(";") or self.at("}")) else self.parse_expr_list()
                return self.node("return", s, self.toks[self.pos - 1].e, vals=vals)
            if kw in ("continue", "break"):
                self.next()
                if self.peek().kind == "ident" and self.peek().val not in GO_KEYWORDS:
                    self.next()
                return self.node(kw, s, self.toks[self.pos - 1].e)
            if kw in ("var", "const"):
                self.next()
                specs = []
                if self.at("("):
                    self.next()
                    while not self.at(")"):
                        if self.at(";"):
                            self.next()
                            continue
                        specs.append(self.parse_value_spec())
                    self.expect(")")
                else:
                    specs.append(self.parse_value_spec())
                return self.node("vardecl", s, self.toks[self.pos - 1].e, specs=specs)
            if kw == "type":
                self.next()
                if self.at("("):
                    self.skip_balanced()
                else:
                    self.next()
                    if self.at("="):
                        self.next()
                    self.parse_type()
                return self.node("nop", s, self.toks[self.pos - 1].e)
            if kw in ("defer", "go"):
                self.next()
                self.parse_expr()
                return self.node("nop", s, self.toks[self.pos - 1].e)
            if kw in ("switch", "select"):
                self.next()
                while not self.at("{"):
                    if self.at("(") or self.at("["):
                        self.skip_balanced()
                    else:
                        self.next()
                end = self.skip_balanced()
                return self.node("unhandled", s, end.e, why="%s statement" % kw)
        saved = self.no_lit
        lhs = self.parse_expr_list()
        if self.at(":="):
            self.next()
            if self.at("range"):
                raise GoSyntaxError("range outside for")
            rhs = self.parse_expr_list()
            self.no_lit = saved
            return self.node("define", s, self.toks[self.pos - 1].e, lhs=lhs, rhs=rhs)
        t = self.peek()
        if t.kind == "op" and t.val in ASSIGN_OPS:
            self.next()
            rhs = self.parse_expr_list()
            self.no_lit = saved
            return self.node("assign", s, self.toks[self.pos - 1].e, lhs=lhs, op=t.val, rhs=rhs)
        if t.kind == "op" and t.val in ("++", "--"):
            self.next()
            return self.node("assign", s, t.e, lhs=lhs, op="+=" if t.val == "++" else "-=",
                             rhs=[self.node("lit", t.s, t.e, val=1, lkind="int")])
        self.no_lit = saved
        return self.node("exprstmt", s, lhs[0].e, x=lhs[0])

    def parse_value_spec(self):
        names = [self.next().val]
        while self.at(","):
            self.next()
            names.append(self.next().val)
        vals = []
        if not self.at("=") and not self.at(";") and not self.at(")"):
            self.parse_type()
        if self.at("="):
            self.next()
            vals = self.parse_expr_list()
        return (names, vals)

    def parse_for(self):
        t = self.expect("for")
        # find 'range' before the body's '{' at depth 0
        i = self.pos
        depth = 0
        is_range = False
        while True:
            tk = self.toks[i]
            if tk.kind == "EOF":
                break
            if tk.kind == "op" and tk.val in "([":
                depth += 1
            elif tk.kind == "op" and tk.val in ")]":
                depth -= 1
            elif tk.kind == "op" and tk.val == "{" and depth == 0:
                break
            elif tk.kind == "ident" and tk.val == "range" and depth == 0:
                is_range = True
                break
            i += 1
        if not is_range:
            while not self.at("{"):
                if self.at("(") or self.at("["):
                    self.skip_balanced()
                else:
                    self.next()
            body = self.parse_block()
            return self.node("unhandled", t.s, self.toks[self.pos - 1].e, why="for statement without range",
                             body=body)
        names = []
        define = False
        if not self.at("range"):
            names.append(self.next().val)
            while self.at(","):
                self.next()
                names.append(self.next().val)
            define = self.at(":=")
            self.next()
        self.expect("range")
        saved = self.no_lit
        self.no_lit = True
        coll = self.parse_expr()
        self.no_lit = saved
        body = self.parse_block()
        return self.node("range", t.s, self.toks[self.pos - 1].e, names=names, define=define, coll=coll, body=body)

    def parse_if(self):
        t = self.expect("if")
        saved = self.no_lit
        self.no_lit = True
        init = None
        first = self._parse_simple_for_if()
        if self.at(";"):
            self.next()
            init = first
            cond = self.parse_expr()
        else:
            if first.kind != "exprstmt":
                raise GoSyntaxError("bad if condition")
            cond = first.x
        self.no_lit = saved
        body = self.parse_block()
        els = None
        if self.at("else"):
            self.next()
            if self.at("if"):
                els = [self.parse_if()]
            else:
                els = self.parse_block()
        return self.node("if", t.s, self.toks[self.pos - 1].e, init=init, cond=cond, body=body, els=els)

    def _parse_simple_for_if(self):
        s = self.peek().s
        lhs = self.parse_expr_list()
        if self.at(":="):
            self.next()
            rhs = self.parse_expr_list()
            return self.node("define", s, self.toks[self.pos - 1].e, lhs=lhs, rhs=rhs)
        if self.peek().kind == "op" and self.peek().val in ASSIGN_OPS:
            op = self.next().val
            rhs = self.parse_expr_list()
            return self.node("assign", s, self.toks[self.pos - 1].e, lhs=lhs, op=op, rhs=rhs)
        return self.node("exprstmt", s, lhs[0].e, x=lhs[0])


class GoFile:
    """Top-level declarations of one Go file."""

    def __init__(self, path, src):
        self.path = path
        self.src = src
        self.p = Parser(src)
        self.package = None
        self.imports = {}  # alias -> import path
        self.funcs = {}  # name -> FuncDecl
        self.vars = []  # (name, node)
        self._scan()

    def _scan(self):
        p = self.p
        while p.peek().kind != "EOF":
            t = p.peek()
            if t.kind == "op" and t.val == ";":
                p.next()
                continue
            if t.kind != "ident":
                raise GoSyntaxError("unexpected top-level token %r" % t.val)
            if t.val == "package":
                p.next()
                self.package = p.next().val
            elif t.val == "import":
                p.next()
                specs = []
                if p.at("("):
                    p.next()
                    while not p.at(")"):
                        if p.at(";"):
                            p.next()
                            continue
                        alias = None
                        if p.peek().kind in ("ident",) or p.at("."):
                            alias = p.next().val
                        path = p.next().val
                        specs.append((alias, path))
                    p.expect(")")
                else:
                    alias = None
                    if p.peek().kind == "ident":
                        alias = p.next().val
                    specs.append((alias, p.next().val))
                for alias, path in specs:
                    if alias is None:
                        parts = path.split("/")
                        alias = parts[-1]
                        if re.fullmatch(r"v\d+", alias) and len(parts) > 1:
                            alias = parts[-2]
                        alias = alias.replace("-", "_").replace(".", "_")
                    self.imports[alias] = path
            elif t.val == "func":
                fs = t.s
                p.next()
                method = False
                if p.at("("):
                    p.skip_balanced()
                    method = True
                name = p.next().val
                if p.at("["):
                    p.skip_balanced()
                params = p.parse_params()
                if p.at("("):
                    p.skip_balanced()
                elif not p.at("{") and not p.at(";"):
                    p.parse_type()
                if p.at("{"):
                    body_idx = p.pos
                    end = p.skip_balanced()
                    if not method:
                        self.funcs[name] = FuncDecl(name, params, body_idx, p.pos, p, self.src[fs:end.e])
            elif t.val in ("var", "const"):
                p.next()
                specs = []
                if p.at("("):
                    p.next()
                    while not p.at(")"):
                        if p.at(";"):
                            p.next()
                            continue
                        specs.append(p.parse_value_spec())
                    p.expect(")")
                else:
                    specs.append(p.parse_value_spec())
                for names, vals in specs:
                    if len(vals) == len(names):
                        for nm, v in zip(names, vals):
                            self.vars.append((nm, v))
            elif t.val == "type":
                p.next()
                if p.at("("):
                    p.skip_balanced()
                else:
                    p.next()
                    if p.at("["):
                        p.skip_balanced()
                    if p.at("="):
                        p.next()
                    p.parse_type()
            else:
                raise GoSyntaxError("unexpected top-level %r" % t.val)


# --------------------------------------------------------------------------
# Interpreter
# --------------------------------------------------------------------------


class EvalError(Exception):
    pass


class _Unknown:
    def __repr__(self):
        return "<unknown>"


UNKNOWN = _Unknown()


class Env:
    def __init__(self, parent=None, pkg=None):
        self.vars = {}
        self.parent = parent
        self.pkg = pkg if pkg is not None else (parent.pkg if parent else None)

    def lookup(self, name):
        e = self
        while e is not None:
            if name in e.vars:
                return True, e.vars[name]
            e = e.parent
        return False, None

    def define(self, name, val):
        if name != "_":
            self.vars[name] = val

    def assign(self, name, val):
        e = self
        while e is not None:
            if name in e.vars:
                e.vars[name] = val
                return
            e = e.parent
        raise EvalError("assignment to undeclared %s" % name)


class Thunk:
    __slots__ = ("node", "env", "done", "val")

    def __init__(self, node, env):
        self.node, self.env, self.done, self.val = node, env, False, None

    def force(self, interp):
        if not self.done:
            self.val = interp.ev(self.node, self.env)
            self.done = True
        return self.val


class GoStruct:
    def __init__(self, typ, fields, positional=None):
        self.typ = typ
        self.fields = fields
        self.positional = positional

    def get(self, name):
        return self.fields.get(name)

    def __repr__(self):
        return "GoStruct(%s, %s)" % (self.typ, list(self.fields))


class Closure:
    def __init__(self, params, body, env, node=None):
        self.params, self.body, self.env, self.node = params, body, env, node


class GoFunc:
    def __init__(self, decl, pkg):
        self.decl, self.pkg = decl, pkg


class Sym:
    """A value from a package the interpreter does not model (e.g. types.Int)."""

    def __init__(self, name):
        self.name = name


class ReturnSignal(Exception):
    def __init__(self, vals):
        self.vals = vals


class ContinueSignal(Exception):
    pass


class BreakSignal(Exception):
    pass


MATH_CONSTS = {
    "MaxInt64": 2 ** 63 - 1, "MinInt64": -2 ** 63, "MaxInt32": 2 ** 31 - 1, "MinInt32": -2 ** 31,
    "MaxInt16": 2 ** 15 - 1, "MaxInt8": 127, "MaxUint32": 2 ** 32 - 1, "MaxUint64": 2 ** 64 - 1,
    "MaxInt": 2 ** 63 - 1, "MaxUint": 2 ** 64 - 1, "MaxUint16": 2 ** 16 - 1, "MaxUint8": 255,
    "MaxFloat64": sys.float_info.max, "SmallestNonzeroFloat64": 5e-324,
    "MaxFloat32": (2 - 2 ** -23) * 2 ** 127, "Pi": math.pi, "E": math.e,
}


def go_fmt_value(v, verb):
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "<nil>"
    if verb == "q":
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, float) and verb == "v":
        r = repr(v)
        return r[:-2] if r.endswith(".0") else r
    return str(v)


def go_sprintf(fmtstr, args):
    out = []
    i = 0
    ai = 0
    spec_re = re.compile(r"%([-+# 0]*)(\d+|\*)?(?:\.(\d+|\*))?([a-zA-Z%])")
    while i < len(fmtstr):
        if fmtstr[i] != "%":
            out.append(fmtstr[i])
            i += 1
            continue
        m = spec_re.match(fmtstr, i)
        if not m:
            raise EvalError("bad format %r" % fmtstr)
        flags, width, prec, verb = m.groups()
        i = m.end()
        if verb == "%":
            out.append("%")
            continue
        if ai >= len(args):
            raise EvalError("missing Sprintf arg")
        v = args[ai]
        ai += 1
        if verb in "dfeEgGxXob":
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise EvalError("bad Sprintf arg for %%%s" % verb)
            py = "%" + (flags or "") + (width or "") + ("." + prec if prec else "") + verb
            if verb == "b":
                s = format(v, "b")
            elif verb in "dxXo":
                s = py % int(v)
            else:
                s = py % float(v)
            out.append(s)
        elif verb in "svq":
            s = go_fmt_value(v, verb)
            if width:
                s = s.rjust(int(width)) if "-" not in (flags or "") else s.ljust(int(width))
            out.append(s)
        elif verb == "t":
            out.append("true" if v else "false")
        else:
            raise EvalError("unsupported Sprintf verb %%%s" % verb)
    return "".join(out)


def dotted(node):
    if node.kind == "ident":
        return node.name
    if node.kind == "sel":
        d = dotted(node.x)
        return d + "." + node.name if d else None
    if node.kind == "paren":
        return dotted(node.x)
    return None


class Package:
    """Package-level declarations loaded from Go files."""

    def __init__(self, interp, files, src_loader=None):
        self.interp = interp
        self.files = files
        self.env = Env(pkg=self)
        self.funcs = {}
        self.imports = {}
        for f in files:
            self.imports.update(f.imports)
            for name, decl in f.funcs.items():
                self.funcs[name] = decl
            for name, node in f.vars:
                self.env.define(name, Thunk(node, self.env))
        for name, decl in self.funcs.items():
            self.env.vars.setdefault(name, GoFunc(decl, self))
        self.src_loader = src_loader


class Interp:
    def __init__(self, loader=None):
        self.loader = loader  # import path -> Package or None
        self.notes = []
        self.on_helper = None  # callback(funcdecl, args_thunks, subtest_path)
        self.helpers = set()
        self.subtest = []
        self.subtest_seen = [{}]

    def note(self, msg):
        if self.subtest:
            msg = "%s: %s" % (self.subtest[0], msg)
        if msg not in self.notes:
            self.notes.append(msg)

    def force(self, v):
        while isinstance(v, Thunk):
            v = v.force(self)
        return v

    def raw_lookup(self, node, env):
        """Follow ident/selector of a struct field to the stored Thunk (without forcing)."""
        if node.kind == "paren":
            return self.raw_lookup(node.x, env)
        if node.kind == "ident":
            found, v = env.lookup(node.name)
            if found:
                return v
            return Thunk(node, env)
        if node.kind == "sel":
            try:
                base = self.force(self.raw_lookup(node.x, env))
            except EvalError:
                return Thunk(node, env)
            if isinstance(base, GoStruct):
                v = base.get(node.name)
                return v
            return Thunk(node, env)
        return Thunk(node, env)

    # ---------- expressions
    def ev(self, node, env):
        m = getattr(self, "ev_" + node.kind, None)
        if m is None:
            raise EvalError("cannot evaluate %s: %s" % (node.kind, node.text()[:80]))
        return m(node, env)

    def ev_lit(self, node, env):
        return node.val

    def ev_paren(self, node, env):
        return self.force(self.ev(node.x, env))

    def ev_assert(self, node, env):
        return self.force(self.ev(node.x, env))

    def ev_ident(self, node, env):
        name = node.name
        found, v = env.lookup(name)
        if found:
            if v is UNKNOWN:
                raise EvalError("unknown value %s" % name)
            return self.force(v)
        if name == "true":
            return True
        if name == "false":
            return False
        if name == "nil":
            return None
        raise EvalError("undefined %s" % name)

    def qualified(self, pkgname, name, env):
        if pkgname == "math" and name in MATH_CONSTS:
            return MATH_CONSTS[name]
        pkg = env.pkg
        path = pkg.imports.get(pkgname) if pkg else None
        if path and self.loader:
            other = self.loader(path)
            if other is not None:
                found, v = other.env.lookup(name)
                if found:
                    return self.force(v)
        return Sym(pkgname + "." + name)

    def ev_sel(self, node, env):
        if node.x.kind == "ident":
            found, _ = env.lookup(node.x.name)
            if not found and node.x.name not in ("true", "false", "nil"):
                return self.qualified(node.x.name, node.name, env)
        base = self.force(self.ev(node.x, env))
        if isinstance(base, GoStruct):
            return self.force(base.get(node.name))
        raise EvalError("selector .%s on %r" % (node.name, type(base).__name__))

    def ev_index(self, node, env):
        base = self.force(self.ev(node.x, env))
        if isinstance(base, Sym):
            return base  # generic instantiation like ptr.To[int64]
        idx = self.force(self.ev(node.index, env))
        try:
            return self.force(base[idx])
        except (KeyError, IndexError, TypeError):
            raise EvalError("bad index %r" % (idx,))

    def ev_slice(self, node, env):
        base = self.force(self.ev(node.x, env))
        lo = self.force(self.ev(node.lo, env)) if node.lo is not None else None
        hi = self.force(self.ev(node.hi, env)) if node.hi is not None else None
        return base[lo:hi]

    def ev_unary(self, node, env):
        v = self.force(self.ev(node.x, env))
        op = node.op
        if op in ("&", "*"):
            return v
        if op == "-":
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return -v
        if op == "+":
            return v
        if op == "!":
            if isinstance(v, bool):
                return not v
        raise EvalError("unary %s on %r" % (op, v))

    def ev_binary(self, node, env):
        op = node.op
        x = self.force(self.ev(node.x, env))
        if op == "&&":
            return bool(x) and bool(self.force(self.ev(node.y, env)))
        if op == "||":
            return bool(x) or bool(self.force(self.ev(node.y, env)))
        y = self.force(self.ev(node.y, env))
        if isinstance(x, (Sym, GoStruct, Closure)) or isinstance(y, (Sym, GoStruct, Closure)):
            raise EvalError("binary %s on opaque values" % op)
        try:
            if op == "+":
                return x + y
            if op == "-":
                return x - y
            if op == "*":
                return x * y
            if op == "/":
                if isinstance(x, int) and isinstance(y, int):
                    q = abs(x) // abs(y)
                    return q if (x >= 0) == (y >= 0) else -q
                return x / y
            if op == "%":
                return math.fmod(x, y) if isinstance(x, float) else int(math.fmod(x, y))
            if op == "==":
                return x == y
            if op == "!=":
                return x != y
            if op == "<":
                return x < y
            if op == "<=":
                return x <= y
            if op == ">":
                return x > y
            if op == ">=":
                return x >= y
        except TypeError:
            pass
        raise EvalError("binary %s unsupported" % op)

    def ev_type(self, node, env):
        return Sym("type:" + node.text())

    def ev_func(self, node, env):
        return Closure(node.params, node.body, env, node)

    def ev_comp(self, node, env):
        typ = node.typ
        tk = typ.tkind if typ is not None and typ.kind == "type" else None
        if tk == "map":
            out = {}
            for k, v in node.elems:
                key = self.force(self.ev(k, env)) if k.kind != "comp" else self.force(self.ev(k, env))
                out[key] = Thunk(v, env)
            return out
        if tk in ("slice", "array"):
            return [Thunk(v, env) for _, v in node.elems]
        keyed = any(k is not None for k, _ in node.elems)
        if keyed:
            fields = {}
            for k, v in node.elems:
                if k.kind != "ident":
                    raise EvalError("unsupported struct key")
                fields[k.name] = Thunk(v, env)
            return GoStruct(typ.text() if typ is not None else None, fields)
        if typ is None:
            return [Thunk(v, env) for _, v in node.elems]
        return GoStruct(typ.text(), {}, [Thunk(v, env) for _, v in node.elems])

    def convert(self, tname, v):
        if tname in ("int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64"):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise EvalError("bad int conversion")
            return int(v)
        if tname == "float64":
            return float(v)
        if tname == "float32":
            return struct.unpack("f", struct.pack("f", float(v)))[0]
        if tname == "string":
            if isinstance(v, int):
                return chr(v)
            return str(v)
        if tname == "bool":
            return bool(v)
        raise EvalError("conversion to %s" % tname)

    def ev_call(self, node, env):
        fn = node.fn
        name = dotted(fn)
        if fn.kind == "type" or (fn.kind == "paren" and fn.x.kind == "type"):
            t = fn if fn.kind == "type" else fn.x
            v = self.force(self.ev(node.args[0], env))
            if t.tkind == "named":
                return self.convert(t.name, v)
            return v
        if name in ("int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64",
                    "float32", "float64", "string", "bool") and not env.lookup(name)[0]:
            return self.convert(name, self.force(self.ev(node.args[0], env)))
        if name == "append" and not env.lookup(name)[0]:
            base = self.force(self.ev(node.args[0], env))
            base = list(base or [])
            if node.ell:
                base.extend(self.force(self.ev(node.args[1], env)) or [])
            else:
                base.extend(Thunk(a, env) for a in node.args[1:])
            return base
        if name == "len" and not env.lookup(name)[0]:
            return len(self.force(self.ev(node.args[0], env)))
        if name == "make" and not env.lookup(name)[0]:
            t = node.args[0]
            if t.kind == "type" and t.tkind == "map":
                return {}
            if t.kind == "type" and t.tkind == "slice":
                n = self.force(self.ev(node.args[1], env)) if len(node.args) > 1 else 0
                return [None] * n
            raise EvalError("make")
        if name in ("fmt.Sprintf",) and not env.lookup("fmt")[0]:
            args = [self.force(self.ev(a, env)) for a in node.args]
            return go_sprintf(args[0], args[1:])
        if name in ("strings.Repeat",) and not env.lookup("strings")[0]:
            a = self.force(self.ev(node.args[0], env))
            b = self.force(self.ev(node.args[1], env))
            return a * b
        if fn.kind == "index" and dotted(fn.x) == "ptr.To":
            return self.force(self.ev(node.args[0], env))
        if name in ("ptr.To",):
            return self.force(self.ev(node.args[0], env))
        # method-like call on a value
        if fn.kind == "sel":
            if fn.x.kind == "ident" and not env.lookup(fn.x.name)[0] and fn.x.name not in ("true", "false"):
                raise EvalError("unsupported call %s" % name)
            recv = self.force(self.ev(fn.x, env))
            if isinstance(recv, GoStruct) and fn.name in recv.fields:
                member = self.force(recv.get(fn.name))
                if isinstance(member, Closure):
                    return self.call_closure(member, node, env)
            if isinstance(recv, GoStruct) and fn.name == "Add" and recv.typ and recv.typ.endswith("CostEstimate"):
                other = self.force(self.ev(node.args[0], env))
                return GoStruct(recv.typ, {
                    "Min": self.force(recv.get("Min")) + self.force(other.get("Min")),
                    "Max": self.force(recv.get("Max")) + self.force(other.get("Max"))})
            if isinstance(recv, GoStruct) and fn.name == "DeepCopy":
                return recv
            raise EvalError("unsupported method %s" % fn.name)
        callee = self.force(self.ev(fn, env))
        if isinstance(callee, Closure):
            return self.call_closure(callee, node, env)
        if isinstance(callee, GoFunc):
            return self.call_gofunc(callee, node, env)
        raise EvalError("unsupported call %s" % (name or node.text()[:40]))

    def bind_params(self, params, node, env, fenv):
        args = node.args
        for i, (pname, variadic, _t) in enumerate(params):
            if variadic:
                if node.ell:
                    val = self.force(self.ev(args[i], env))
                else:
                    val = [Thunk(a, env) for a in args[i:]]
                fenv.define(pname or "_", val)
                break
            if i < len(args):
                fenv.define(pname or "_", Thunk(args[i], env))

    def run_body(self, body, fenv):
        try:
            self.exec_block(body, fenv)
        except ReturnSignal as r:
            vals = [self.force(v) for v in r.vals]
            return vals[0] if len(vals) == 1 else (vals or None)
        return None

    def call_closure(self, clo, node, env):
        fenv = Env(clo.env)
        self.bind_params(clo.params, node, env, fenv)
        return self.run_body(clo.body, fenv)

    def call_gofunc(self, gf, node, env):
        decl = gf.decl
        if decl.name in self.helpers:
            return self.emit_helper(decl, node, env)
        fenv = Env(gf.pkg.env, pkg=gf.pkg)
        self.bind_params(decl.params, node, env, fenv)
        return self.run_body(decl.body(), fenv)

    def emit_helper(self, decl, node, env):
        args = {}
        for i, (pname, _v, _t) in enumerate(decl.params):
            if i < len(node.args):
                args[pname] = self.raw_lookup(node.args[i], env)
        if self.on_helper:
            self.on_helper(decl, args, list(self.subtest), node)
        return None

    # ---------- statements
    def exec_block(self, stmts, env):
        benv = Env(env)
        for st in stmts:
            self.exec_stmt(st, benv)

    def exec_stmt(self, st, env):
        k = st.kind
        if k == "define":
            names = [n.name if n.kind == "ident" else "_" for n in st.lhs]
            if len(st.rhs) == len(names):
                for nm, rhs in zip(names, st.rhs):
                    env.define(nm, self.lazy_or_value(rhs, env))
            else:
                env.define(names[0], self.lazy_or_value(st.rhs[0], env))
                for nm in names[1:]:
                    env.define(nm, UNKNOWN)
        elif k == "vardecl":
            for names, vals in st.specs:
                for i, nm in enumerate(names):
                    env.define(nm, self.lazy_or_value(vals[i], env) if i < len(vals) else None)
        elif k == "assign":
            if len(st.lhs) != 1 or len(st.rhs) != 1:
                self.note("unhandled multi-assignment: %s" % st.text()[:100])
                return
            lhs = st.lhs[0]
            try:
                val = self.force(self.ev(st.rhs[0], env))
                if st.op != "=":
                    cur = self.force(self.ev(lhs, env))
                    val = {"+=": lambda a, b: a + b, "-=": lambda a, b: a - b}[st.op](cur, val)
                if lhs.kind == "ident":
                    if lhs.name != "_":
                        env.assign(lhs.name, val)
                elif lhs.kind == "index":
                    cont = self.force(self.ev(lhs.x, env))
                    cont[self.force(self.ev(lhs.index, env))] = val
                elif lhs.kind == "sel":
                    obj = self.force(self.ev(lhs.x, env))
                    if not isinstance(obj, GoStruct):
                        raise EvalError("field assignment on non-struct")
                    obj.fields[lhs.name] = val
                else:
                    raise EvalError("assignment target")
            except (EvalError, KeyError) as ex:
                self.note("could not execute assignment `%s`: %s" % (st.text()[:100], ex))
        elif k == "exprstmt":
            self.exec_exprstmt(st.x, env)
        elif k == "range":
            try:
                coll = self.force(self.ev(st.coll, env))
            except EvalError as ex:
                self.note("could not evaluate range `%s`: %s" % (st.coll.text()[:80], ex))
                return
            if isinstance(coll, dict):
                items = [(key, coll[key]) for key in sorted(coll, key=lambda x: str(x))]
            elif isinstance(coll, (list, tuple)):
                items = list(enumerate(coll))
            elif isinstance(coll, str):
                items = list(enumerate(coll))
            elif isinstance(coll, int) and not isinstance(coll, bool):
                items = [(i, i) for i in range(coll)]
            elif coll is None:
                items = []
            else:
                self.note("cannot range over %s" % st.coll.text()[:80])
                return
            for key, val in items:
                lenv = Env(env)
                if st.names:
                    if st.define:
                        lenv.define(st.names[0], key)
                        if len(st.names) > 1:
                            lenv.define(st.names[1], val)
                    else:
                        if st.names[0] != "_":
                            env.assign(st.names[0], key)
                        if len(st.names) > 1 and st.names[1] != "_":
                            env.assign(st.names[1], val)
                try:
                    self.exec_block(st.body, lenv)
                except ContinueSignal:
                    continue
                except BreakSignal:
                    break
        elif k == "if":
            ienv = Env(env)
            if st.init is not None:
                self.exec_stmt(st.init, ienv)
            try:
                cond = self.force(self.ev(st.cond, ienv))
            except EvalError:
                # conditions in test bodies are assertions on runtime results; not part of case generation
                return
            if cond is True:
                self.exec_block(st.body, ienv)
            elif st.els is not None:
                self.exec_block(st.els, ienv)
        elif k == "block":
            self.exec_block(st.body, env)
        elif k == "return":
            raise ReturnSignal([self.lazy_or_value(v, env) for v in st.vals])
        elif k == "continue":
            raise ContinueSignal()
        elif k == "break":
            raise BreakSignal()
        elif k == "nop":
            pass
        elif k == "unhandled":
            self.note("unhandled %s: %s" % (st.why, st.text()[:100].replace("\n", " ")))
        else:
            self.note("unhandled statement kind %s" % k)

    def lazy_or_value(self, node, env):
        try:
            return self.force(self.ev(node, env))
        except EvalError:
            return Thunk(node, env)

    def exec_exprstmt(self, x, env):
        if x.kind != "call":
            return
        fn = x.fn
        if fn.kind == "sel" and fn.name == "Run" and len(x.args) == 2 and x.args[1].kind == "func":
            try:
                name = self.force(self.ev(x.args[0], env))
            except EvalError:
                name = "?"
            name = "" if name is None else str(name)
            seen = self.subtest_seen[-1]
            base = name if name else ""
            cnt = seen.get(base, 0)
            seen[base] = cnt + 1
            if name == "":
                name = "#%02d" % cnt
            elif cnt:
                name = "%s#%02d" % (name, cnt)
            clo = self.ev(x.args[1], env)
            self.subtest.append(name)
            self.subtest_seen.append({})
            try:
                fenv = Env(clo.env)
                for pname, _v, _t in clo.params:
                    fenv.define(pname or "_", UNKNOWN)
                self.run_body(clo.body, fenv)
            finally:
                self.subtest.pop()
                self.subtest_seen.pop()
            return
        try:
            callee_name = dotted(fn)
            if fn.kind == "ident":
                found, v = env.lookup(fn.name)
                v = self.force(v) if found else None
                if isinstance(v, (GoFunc, Closure)):
                    self.ev(x, env)
                    return
            if callee_name and callee_name.split(".")[0] in ("t", "b", "require", "assert"):
                return  # assertions / test bookkeeping
            self.ev(x, env)
        except EvalError:
            pass

    def run_test(self, pkg, decl):
        env = Env(pkg.env, pkg=pkg)
        for pname, _v, _t in decl.params:
            env.define(pname or "_", UNKNOWN)
        self.subtest = [decl.name]
        self.subtest_seen = [{}]
        try:
            self.run_body(decl.body(), env)
        except (EvalError, ReturnSignal, ContinueSignal, BreakSignal) as ex:
            self.note("%s: stopped early: %s" % (decl.name, ex))


# --------------------------------------------------------------------------
# Expected values -> TypedValue
# --------------------------------------------------------------------------


class Ctor:
    """An opaque library value that has a CEL constructor expression."""

    def __init__(self, cel, go):
        self.cel, self.go = cel, go


class OptionalVal:
    def __init__(self, inner, go):
        self.inner, self.go = inner, go


class Opaque:
    def __init__(self, go):
        self.go = go


def cel_string(s):
    out = ['"']
    for ch in s:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def py_to_typed(v):
    if isinstance(v, bool):
        return {"bool": v}
    if isinstance(v, int):
        return {"int": str(v)}
    if isinstance(v, float):
        return {"double": v}
    if isinstance(v, str):
        return {"string": v}
    if v is None:
        return {"null": None}
    return None


class Typer:
    """Converts an expected-value expression (AST + env) to a TypedValue or a special marker."""

    def __init__(self, interp):
        self.interp = interp

    def go_text(self, th):
        """Source text of a thunk's expression, with referenced local definitions appended."""
        node, env = th.node, th.env
        text = node.text()
        defs = []
        seen = set()

        def walk(n):
            for v in n.__dict__.values():
                if isinstance(v, N):
                    yield v
                    yield from walk(v)
                elif isinstance(v, list):
                    for it in v:
                        if isinstance(it, N):
                            yield it
                            yield from walk(it)
                        elif isinstance(it, tuple):
                            for jt in it:
                                if isinstance(jt, N):
                                    yield jt
                                    yield from walk(jt)

        for n in [node] + list(walk(node)):
            if n.kind == "ident" and n.name not in seen:
                found, v = env.lookup(n.name)
                if found and isinstance(v, Thunk) and v.node.src is node.src and v.node is not node:
                    seen.add(n.name)
                    defs.append("%s = %s" % (n.name, v.node.text()))
        if defs:
            text += "  /* where " + "; ".join(defs) + " */"
        return text

    def str_arg(self, th):
        """Resolve a Go expression that yields a string (literal or local var)."""
        node, env = th.node, th.env
        return self.interp.force(self.interp.ev(node, env))

    def addr_text(self, th):
        """Resolve netip.ParseAddr/ParsePrefix/PrefixFrom chains to their textual form."""
        th = self.deref(th)
        node, env = th.node, th.env
        if node.kind == "unary" and node.op == "&":
            return self.addr_text(Thunk(node.x, env))
        if node.kind == "call":
            name = dotted(node.fn)
            if name in ("netip.ParseAddr", "netip.MustParseAddr", "netip.ParsePrefix", "netip.MustParsePrefix",
                        "resource.MustParse", "resource.ParseQuantity", "semver.MustParse", "semver.Parse",
                        "url.Parse", "semver.ParseTolerant"):
                return self.str_arg(Thunk(node.args[0], env))
            if name == "netip.PrefixFrom":
                addr = self.addr_text(Thunk(node.args[0], env))
                bits = self.interp.force(self.interp.ev(node.args[1], env))
                return "%s/%d" % (addr, bits)
        raise EvalError("cannot resolve %s" % node.text()[:60])

    def deref(self, th):
        while isinstance(th, Thunk) and th.node.kind in ("ident", "paren"):
            if th.node.kind == "paren":
                th = Thunk(th.node.x, th.env)
                continue
            found, v = th.env.lookup(th.node.name)
            if found and isinstance(v, Thunk):
                th = v
            else:
                break
        return th

    def typed(self, th):
        if th is None:
            return None
        if not isinstance(th, Thunk):
            return py_to_typed(th) or Opaque(repr(th))
        th = self.deref(th)
        node, env = th.node, th.env
        it = self.interp
        k = node.kind
        if k == "ident":
            found, v = env.lookup(node.name)
            if node.name == "nil":
                return None
            if found and not isinstance(v, Thunk):
                return py_to_typed(v) or Opaque(self.go_text(th))
            return Opaque(self.go_text(th))
        name = dotted(node) if k == "sel" else None
        if k == "sel":
            if name in ("types.True",):
                return {"bool": True}
            if name in ("types.False",):
                return {"bool": False}
            if name in ("types.NullValue",):
                return {"null": None}
            if name in ("types.OptionalNone",):
                return OptionalVal(None, node.text())
            try:
                v = it.force(it.ev(node, env))
                return py_to_typed(v) or Opaque(self.go_text(th))
            except EvalError:
                return Opaque(self.go_text(th))
        if k == "call":
            fname = dotted(node.fn)
            a = node.args
            try:
                if fname == "types.Bool":
                    return {"bool": bool(it.force(it.ev(a[0], env)))}
                if fname == "types.Int":
                    return {"int": str(int(it.force(it.ev(a[0], env))))}
                if fname == "types.Uint":
                    return {"uint": str(int(it.force(it.ev(a[0], env))))}
                if fname == "types.Double":
                    return {"double": float(it.force(it.ev(a[0], env)))}
                if fname == "types.String":
                    return {"string": str(it.force(it.ev(a[0], env)))}
                if fname == "types.OptionalOf":
                    inner = self.typed(Thunk(a[0], env))
                    return OptionalVal(inner, node.text())
                if fname in ("types.NewStringList", "types.NewDynamicList", "types.NewRefValList"):
                    lst = it.force(it.ev(a[-1], env))
                    items = [self.typed(x if isinstance(x, Thunk) else x) for x in lst]
                    if all(isinstance(x, dict) for x in items):
                        return {"list": items}
                    return Opaque(self.go_text(th))
                if fname in ("types.NewStringStringMap", "types.NewDynamicMap"):
                    m = it.force(it.ev(a[-1], env))
                    entries = []
                    for key, val in m.items():
                        kv = py_to_typed(key)
                        vv = self.typed(val)
                        if not isinstance(vv, dict) or kv is None:
                            return Opaque(self.go_text(th))
                        entries.append([kv, vv])
                    return {"map": entries}
            except (EvalError, TypeError, ValueError):
                return Opaque(self.go_text(th))
            try:
                v = it.force(it.ev(node, env))
                return py_to_typed(v) or Opaque(self.go_text(th))
            except EvalError:
                return Opaque(self.go_text(th))
        if k == "comp" and node.typ is not None:
            tname = node.typ.text()
            fields = {kk.name: vv for kk, vv in node.elems if kk is not None and kk.kind == "ident"}
            try:
                if tname.endswith(".IP") and "Addr" in fields:
                    return Ctor("ip(%s)" % cel_string(self.addr_text(Thunk(fields["Addr"], env))), self.go_text(th))
                if tname.endswith(".CIDR") and "Prefix" in fields:
                    return Ctor("cidr(%s)" % cel_string(self.addr_text(Thunk(fields["Prefix"], env))),
                                self.go_text(th))
                if tname.endswith(".Quantity") and "Quantity" in fields:
                    return Ctor("quantity(%s)" % cel_string(self.addr_text(Thunk(fields["Quantity"], env))),
                                self.go_text(th))
                if tname.endswith(".Semver") and "Version" in fields:
                    return Ctor("semver(%s)" % cel_string(self.addr_text(Thunk(fields["Version"], env))),
                                self.go_text(th))
                if tname.endswith(".URL") and "URL" in fields:
                    return Ctor("url(%s)" % cel_string(self.addr_text(Thunk(fields["URL"], env))), self.go_text(th))
            except EvalError:
                pass
            return Opaque(self.go_text(th))
        try:
            v = it.force(it.ev(node, env))
            return py_to_typed(v) or Opaque(self.go_text(th))
        except EvalError:
            return Opaque(self.go_text(th))


def typed_to_cel(tv):
    """CEL literal for a TypedValue (used for optional.of rewrites)."""
    if "bool" in tv:
        return "true" if tv["bool"] else "false"
    if "int" in tv:
        return tv["int"]
    if "uint" in tv:
        return tv["uint"] + "u"
    if "double" in tv:
        return repr(float(tv["double"]))
    if "string" in tv:
        return cel_string(tv["string"])
    if "null" in tv:
        return "null"
    if "list" in tv:
        return "[" + ", ".join(typed_to_cel(x) for x in tv["list"]) + "]"
    if "map" in tv:
        return "{" + ", ".join("%s: %s" % (typed_to_cel(k), typed_to_cel(v)) for k, v in tv["map"]) + "}"
    raise ValueError(tv)


# --------------------------------------------------------------------------
# Regexp -> literal substring
# --------------------------------------------------------------------------


def regex_to_substring(p):
    """Longest literal run of a Go regexp; exact when the pattern has no metacharacters."""
    pieces = []
    cur = []
    i = 0
    exact = True
    while i < len(p):
        c = p[i]
        if c == "\\" and i + 1 < len(p):
            nx = p[i + 1]
            if nx.isalnum():
                pieces.append("".join(cur))
                cur = []
                exact = False
            else:
                cur.append(nx)
            i += 2
            continue
        if c == "." and i + 1 < len(p) and p[i + 1] in "*+?":
            pieces.append("".join(cur))
            cur = []
            exact = False
            i += 2
            continue
        if c in "^$" or c in "([|)*+?{}]":
            if c in "*+?" and cur:
                cur.pop()  # quantified char is optional/repeated
            pieces.append("".join(cur))
            cur = []
            exact = False
            if c == "[":
                j = p.find("]", i + 1)
                i = j + 1 if j > 0 else i + 1
                continue
            i += 1
            continue
        cur.append(c)  # a lone '.' is taken literally (these tests use it for literal dots)
        i += 1
    pieces.append("".join(cur))
    best = max(pieces, key=len)
    return best, exact


# --------------------------------------------------------------------------
# Library tests (kubernetes/apiserver pkg/cel/library)
# --------------------------------------------------------------------------

LIB_DIR = "pkg/cel/library"


def param_role(name):
    n = name.lower()
    if n == "expr":
        return "expr"
    if "estimat" in n or "esimat" in n:
        return "est_cost"
    if "runtimecost" in n:
        return "runtime_cost"
    if "compile" in n:
        return "compile_errs"
    if "runtime" in n and "err" in n:
        return "runtime_err"
    if n.startswith("expect") and ("result" in n or "value" in n or "val" == n[-3:]):
        return "value"
    if n == "version":
        return "version"
    return None


def env_options(decl):
    m = re.search(r"cel\.NewEnv\(", decl.text)
    if not m:
        return []
    i = m.end()
    depth = 1
    j = i
    while depth and j < len(decl.text):
        if decl.text[j] == "(":
            depth += 1
        elif decl.text[j] == ")":
            depth -= 1
        j += 1
    inner = decl.text[i:j - 1]
    out = []
    depth = 0
    cur = ""
    for line in inner.split("\n"):
        line = re.sub(r"//.*", "", line)
        for ch in line:
            if ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth -= 1
            if ch == "," and depth == 0:
                if cur.strip():
                    out.append(re.sub(r"\s+", " ", cur.strip()))
                cur = ""
            else:
                cur += ch
        cur += " "
    if cur.strip():
        out.append(re.sub(r"\s+", " ", cur.strip()))
    return out


class PackageLoader:
    def __init__(self, src, module):
        self.src = src
        self.module = module
        self.cache = {}
        self.interp = None

    def load_dir(self, d, include_tests=False, only=None):
        key = (d, include_tests, only)
        if key in self.cache:
            return self.cache[key]
        files = []
        for fn in self.src.list_dir(d):
            if not fn.endswith(".go"):
                continue
            if fn.endswith("_test.go") and not include_tests:
                continue
            if only is not None and fn not in only:
                continue
            try:
                files.append(GoFile(d + "/" + fn, self.src.read(d + "/" + fn)))
            except GoSyntaxError as ex:
                print("warning: cannot parse %s/%s: %s" % (d, fn, ex), file=sys.stderr)
        pkg = Package(self.interp, files)
        self.cache[key] = pkg
        return pkg

    def __call__(self, import_path):
        if not import_path.startswith(self.module + "/"):
            return None
        d = import_path[len(self.module) + 1:]
        try:
            return self.load_dir(d)
        except subprocess.CalledProcessError:
            return None


def dedupe_name(seen, name):
    if name in seen:
        seen[name] += 1
        return "%s#%02d" % (name, seen[name])
    seen[name] = 0
    return name


GO_STDLIB_MARKERS = (": netip.", ": ParseAddr(", ": ParsePrefix(", ": strconv.", ": parse ")


def library_cases(src, test_file):
    """Run the Test* functions of one test file, return (cases, env, notes, tests_without_cases)."""
    path = LIB_DIR + "/" + test_file
    gofile = GoFile(path, src.read(path))
    loader = PackageLoader(src, "k8s.io/apiserver")
    interp = Interp(loader=loader)
    loader.interp = interp
    # other test files of the same Go package (helpers such as testQuantity are shared)
    siblings = []
    for fn in src.list_dir(LIB_DIR):
        if fn.endswith("_test.go") and fn != test_file:
            try:
                other = GoFile(LIB_DIR + "/" + fn, src.read(LIB_DIR + "/" + fn))
            except GoSyntaxError:
                continue
            if other.package == gofile.package:
                siblings.append(other)
    files = siblings + [gofile]
    if gofile.package == "library":  # internal test: package-level declarations of the library are visible
        base = loader.load_dir(LIB_DIR)
        files = base.files + files
    pkg = Package(interp, files)
    helpers = {name: d for name, d in pkg.funcs.items()
               if name.startswith("test") and any(p[0] == "expr" for p in d.params)}
    interp.helpers = set(helpers)
    typer = Typer(interp)
    emitted = []

    def on_helper(decl, args, subtest, node):
        emitted.append((decl, args, subtest))

    interp.on_helper = on_helper
    tests = [n for n in gofile.funcs if n.startswith("Test")]
    without = []
    for tname in tests:
        before = len(emitted)
        interp.run_test(pkg, gofile.funcs[tname])
        if len(emitted) == before:
            without.append(tname)

    cases = []
    envs = {}
    names_seen = {}
    for decl, args, subtest in emitted:
        roles = {}
        for pname, th in args.items():
            r = param_role(pname)
            if r:
                roles[r] = (pname, th)
        envs.setdefault(decl.name, env_options(decl))
        expr = interp.force(roles["expr"][1]) if "expr" in roles else None
        if not isinstance(expr, str):
            interp.note("%s: expression not resolvable" % "/".join(subtest))
            continue
        go_test = "/".join(subtest)
        leaf = subtest[-1] if len(subtest) > 1 else ""
        name = leaf if leaf and not re.fullmatch(r"#\d\d", leaf) else expr
        case = {"name": dedupe_name(names_seen, name), "expr": expr, "bindings": {}, "expect": None, "skip": None,
                "go_test": go_test}
        if len(envs) > 1 or True:
            case["helper"] = decl.name
        if "version" in roles:
            try:
                ver = interp.force(roles["version"][1]) or 0
            except EvalError:
                ver = 0
            case["env_options"] = {"semver_version": ver} if "Semver" in "".join(envs[decl.name]) else {
                "library_version": ver}

        def get_opt(role):
            if role not in roles:
                return None
            try:
                return interp.force(roles[role][1])
            except EvalError:
                return UNKNOWN

        compile_errs = get_opt("compile_errs")
        runtime_err = get_opt("runtime_err")
        if compile_errs is UNKNOWN or runtime_err is UNKNOWN:
            case["expect"] = {"no_error": True}
            case["skip"] = "expected error text could not be extracted from the Go source"
        elif compile_errs:
            subs = []
            approx = False
            for pat in compile_errs:
                pat = interp.force(pat)
                sub, exact = regex_to_substring(pat)
                approx |= not exact
                subs.append(sub)
            case["expect"] = {"compile_error": subs}
            case["error_match"] = {"go_regexps": [interp.force(p) for p in compile_errs]}
        elif runtime_err:
            pname = roles["runtime_err"][0]
            is_regex = re.search(r"regexp\.MatchString\(\s*%s\b" % re.escape(pname), decl.text) is not None
            if is_regex:
                sub, exact = regex_to_substring(runtime_err)
                case["expect"] = {"eval_error": sub}
                case["error_match"] = {"go_regexp": runtime_err}
            else:
                # Go compares the whole message; cut off text produced by the Go standard library
                sub = runtime_err
                for marker in GO_STDLIB_MARKERS:
                    if marker in sub:
                        sub = sub[:sub.index(marker)]
                case["expect"] = {"eval_error": sub}
                case["error_match"] = {"go_exact": runtime_err}
        elif "est_cost" in roles or "runtime_cost" in roles:
            case["expect"] = {"no_error": True}
            cost = {}
            try:
                est = interp.force(roles["est_cost"][1])
                if isinstance(est, GoStruct):
                    cost["estimated"] = [interp.force(est.get("Min")), interp.force(est.get("Max"))]
            except (EvalError, KeyError, TypeError):
                pass
            try:
                rc = interp.force(roles["runtime_cost"][1])
                if isinstance(rc, int):
                    cost["runtime"] = rc
            except (EvalError, KeyError, TypeError):
                pass
            if cost:
                case["cost"] = cost
        else:
            val = typer.typed(roles["value"][1]) if "value" in roles else None
            if val is None:
                case["expect"] = {"no_error": True}
                case["skip"] = "Go case has no expected value (the Go helper fails such cases)"
            elif isinstance(val, dict):
                case["expect"] = {"value": val}
            elif isinstance(val, Ctor):
                case["rewritten_from"] = {"expr": expr, "expect": {"value": {"opaque": val.go}}}
                case["expr"] = "(%s) == %s" % (expr, val.cel)
                case["expect"] = {"value": {"bool": True}}
            elif isinstance(val, OptionalVal):
                if val.inner is None:
                    case["rewritten_from"] = {"expr": expr, "expect": {"value": {"opaque": val.go}}}
                    case["expr"] = "(%s) == optional.none()" % expr
                    case["expect"] = {"value": {"bool": True}}
                elif isinstance(val.inner, dict):
                    case["rewritten_from"] = {"expr": expr, "expect": {"value": {"opaque": val.go}}}
                    case["expr"] = "(%s).value()" % expr
                    case["expect"] = {"value": val.inner}
                else:
                    case["expect"] = {"value": {"opaque": val.go}}
                    case["skip"] = "expected optional wraps an opaque library value"
            else:
                case["expect"] = {"value": {"opaque": val.go}}
                case["skip"] = "expected value is an opaque Go value without a CEL constructor"
        if re.search(r"\bauthorizer\b", expr):
            case["skip"] = "authz library: needs a Go authorizer bound as `authorizer`"
        cases.append(case)
    return cases, envs, interp.notes, without


# --------------------------------------------------------------------------
# CRD validation tests (kubernetes/apiextensions-apiserver)
# --------------------------------------------------------------------------

CRD_PATH = "pkg/apiserver/schema/cel/validation_test.go"
SPECIAL_FORMATS = {"byte": "bytes", "duration": "google.protobuf.Duration", "date": "google.protobuf.Timestamp",
                   "date-time": "google.protobuf.Timestamp", "datetime": "google.protobuf.Timestamp"}
CEL_RESERVED = {"true", "false", "null", "in", "as", "break", "const", "continue", "else", "for", "function", "if",
                "import", "let", "loop", "package", "namespace", "return", "var", "void", "while"}


class SchemaError(Exception):
    pass


class SchemaConv:
    def __init__(self, interp):
        self.it = interp

    def of(self, x):
        it = self.it
        if x is None:
            return None
        if isinstance(x, dict) and ("type" in x or "x-kubernetes-int-or-string" in x or not x
                                    or "x-kubernetes-preserve-unknown-fields" in x):
            return x
        if isinstance(x, GoStruct):
            return self.from_struct(x)
        if not isinstance(x, Thunk):
            raise SchemaError("not a schema: %r" % (x,))
        node, env = x.node, x.env
        k = node.kind
        if k == "ident":
            found, v = env.lookup(node.name)
            if not found:
                raise SchemaError("unknown schema %s" % node.name)
            if node.name == "nil":
                return None
            return self.of(v)
        if k in ("paren",):
            return self.of(Thunk(node.x, env))
        if k == "unary" and node.op in ("&", "*"):
            return self.of(Thunk(node.x, env))
        if k == "comp":
            v = it.ev(node, env)
            if isinstance(v, GoStruct):
                return self.from_struct(v)
            raise SchemaError("composite is not a struct")
        if k == "call":
            fname = dotted(node.fn)
            a = [Thunk(n, env) for n in node.args]
            if node.fn.kind == "sel" and node.fn.name == "DeepCopy":
                return json.loads(json.dumps(self.of(Thunk(node.fn.x, env))))
            f = lambda i: it.force(a[i])  # noqa: E731
            if fname == "primitiveType":
                s = {"type": f(0)}
                if f(1):
                    s["format"] = f(1)
                return s
            if fname in ("listType", "listTypePtr"):
                return self.array("atomic", None, a[0])
            if fname == "listSetType":
                return self.array("set", None, a[0])
            if fname in ("listMapType", "listMapTypePtr"):
                return self.array("map", [it.force(k) for k in f(0)], a[1])
            if fname == "arrayType":
                keys = f(1)
                return self.array(f(0), [it.force(k) for k in keys] if keys else None, a[2])
            if fname in ("objectType", "objectTypePtr"):
                return {"type": "object", "properties": self.props(f(0))}
            if fname in ("mapType", "mapTypePtr"):
                return {"type": "object", "additionalProperties": self.of(a[0]) or True}
            if fname == "schemas":
                return {"type": "object",
                        "properties": {"val%d" % (i + 1): self.of(t) for i, t in enumerate(a)}}
            if fname == "intOrStringType":
                return {"x-kubernetes-int-or-string": True}
            if fname in ("withNullable", "withNullablePtr"):
                s = dict(self.of(a[1]))
                if f(0):
                    s["nullable"] = True
                return s
            if fname == "withDefault":
                s = dict(self.of(a[1]))
                s["default"] = deep_plain(it, f(0))
                return s
            if fname in ("withRule", "withRulePtr", "cloneWithRule"):
                s = dict(self.of(a[0]))
                s["x-kubernetes-validations"] = [{"rule": f(1)}]
                return s
            if fname in ("withRuleMessageAndMessageExpression",):
                s = dict(self.of(a[0]))
                s["x-kubernetes-validations"] = [{"rule": f(1), "message": f(2), "messageExpression": f(3)}]
                return s
            if fname in ("withRuleAndMessageExpression",):
                s = dict(self.of(a[0]))
                s["x-kubernetes-validations"] = [{"rule": f(1), "messageExpression": f(2)}]
                return s
            if fname in ("withMaxLength", "withMaxItems", "withMaxProperties"):
                s = dict(self.of(a[0]))
                key = {"withMaxLength": "maxLength", "withMaxItems": "maxItems",
                       "withMaxProperties": "maxProperties"}[fname]
                s[key] = f(1)
                return s
            v = it.force(it.ev(node, env))
            return self.of(v)
        raise SchemaError("unsupported schema expression: %s" % node.text()[:80])

    def array(self, lt, keys, items):
        s = {"type": "array", "items": self.of(items)}
        if lt and lt != "atomic":
            s["x-kubernetes-list-type"] = lt
        elif lt:
            s["x-kubernetes-list-type"] = "atomic"
        if keys:
            s["x-kubernetes-list-map-keys"] = keys
        return s

    def props(self, m):
        if m is None:
            return {}
        if not isinstance(m, dict):
            raise SchemaError("properties is not a map")
        return {k: self.of(v) for k, v in m.items()}

    def from_struct(self, st):
        it = self.it
        s = {}
        g = it.force(st.get("Generic"))
        if isinstance(g, GoStruct):
            if g.get("Type") is not None and it.force(g.get("Type")):
                s["type"] = it.force(g.get("Type"))
            if g.get("Nullable") is not None and it.force(g.get("Nullable")):
                s["nullable"] = True
            if g.get("Default") is not None:
                d = it.force(g.get("Default"))
                s["default"] = deep_plain(it, it.force(d.get("Object")) if isinstance(d, GoStruct) else d)
        ext = it.force(st.get("Extensions"))
        if isinstance(ext, GoStruct):
            for fname, key in (("XEmbeddedResource", "x-kubernetes-embedded-resource"),
                               ("XPreserveUnknownFields", "x-kubernetes-preserve-unknown-fields"),
                               ("XIntOrString", "x-kubernetes-int-or-string"),
                               ("XListType", "x-kubernetes-list-type"),
                               ("XListMapKeys", "x-kubernetes-list-map-keys"),
                               ("XMapType", "x-kubernetes-map-type")):
                if ext.get(fname) is not None:
                    v = deep_plain(it, it.force(ext.get(fname)))
                    if v not in (None, False, []):
                        s[key] = v
        if st.get("Properties") is not None:
            s["properties"] = self.props(it.force(st.get("Properties")))
        if st.get("Items") is not None:
            s["items"] = self.of(st.get("Items"))
        if st.get("AdditionalProperties") is not None:
            ap = it.force(st.get("AdditionalProperties"))
            if isinstance(ap, GoStruct):
                s["additionalProperties"] = self.of(ap.get("Structural")) if ap.get("Structural") is not None \
                    else bool(it.force(ap.get("Bool")))
        vv = it.force(st.get("ValueValidation"))
        if isinstance(vv, GoStruct):
            for fname, key in (("Format", "format"), ("MaxLength", "maxLength"), ("MaxItems", "maxItems"),
                               ("MaxProperties", "maxProperties"), ("Pattern", "pattern")):
                if vv.get(fname) is not None:
                    v = it.force(vv.get(fname))
                    if v not in (None, ""):
                        s[key] = v
            if vv.get("Enum") is not None:
                s["enum"] = [deep_plain(it, it.force(e.get("Object")) if isinstance(e, GoStruct) else e)
                             for e in [it.force(x) for x in it.force(vv.get("Enum"))]]
        if st.get("XValidations") is not None:
            rules = []
            for r in it.force(st.get("XValidations")):
                r = it.force(r)
                if isinstance(r, GoStruct):
                    rules.append({"rule": it.force(r.get("Rule"))})
            s["x-kubernetes-validations"] = rules
        known = {"Generic", "Extensions", "Properties", "Items", "AdditionalProperties", "ValueValidation",
                 "XValidations", "ValidationExtensions"}
        unknown = set(st.fields) - known
        if unknown:
            raise SchemaError("unsupported schema fields %s" % sorted(unknown))
        return s


def deep_plain(it, v):
    v = it.force(v)
    if isinstance(v, dict):
        return {k: deep_plain(it, x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [deep_plain(it, x) for x in v]
    if isinstance(v, (GoStruct, Sym, Closure, GoFunc)):
        raise EvalError("not plain data: %r" % (v,))
    return v


def schema_walk(s):
    if not isinstance(s, dict):
        return
    yield s
    for p in (s.get("properties") or {}).values():
        yield from schema_walk(p)
    if isinstance(s.get("items"), dict):
        yield from schema_walk(s["items"])
    if isinstance(s.get("additionalProperties"), dict):
        yield from schema_walk(s["additionalProperties"])


def obj_to_json(v, s, nullmarks, path=()):
    """Plain Go data -> JSON value, typed by schema (number schemas yield floats)."""
    if v is None:
        return None
    if isinstance(v, bool):
        return v
    if isinstance(s, dict):
        t = s.get("type")
        if t == "number" and isinstance(v, (int, float)):
            return float(v)
        if t == "integer" and isinstance(v, float) and v.is_integer():
            return int(v)
    if isinstance(v, dict):
        props = (s or {}).get("properties") if isinstance(s, dict) else None
        addl = (s or {}).get("additionalProperties") if isinstance(s, dict) else None
        out = {}
        for k, x in v.items():
            sub = None
            if props and k in props:
                sub = props[k]
            elif isinstance(addl, dict):
                sub = addl
            if x is None and props is not None and k in props:
                nullmarks.add((id(s), k))
            out[k] = obj_to_json(x, sub, nullmarks, path + (k,))
        return out
    if isinstance(v, list):
        items = s.get("items") if isinstance(s, dict) else None
        return [obj_to_json(x, items, nullmarks, path + (i,)) for i, x in enumerate(v)]
    return v


def json_to_typed(v):
    """Plain JSON (after schema typing) -> TypedValue; JSON objects become string-keyed maps."""
    if isinstance(v, bool):
        return {"bool": v}
    if isinstance(v, int):
        return {"int": str(v)}
    if isinstance(v, float):
        return {"double": v}
    if isinstance(v, str):
        return {"string": v}
    if v is None:
        return {"null": None}
    if isinstance(v, list):
        return {"list": [json_to_typed(x) for x in v]}
    if isinstance(v, dict):
        return {"map": [[{"string": k}, json_to_typed(x)] for k, x in v.items()]}
    raise ValueError("not JSON data: %r" % (v,))


def blank_cel_strings(rule):
    """Replace the content of CEL string literals with spaces (keeps offsets)."""
    out = list(rule)
    i = 0
    n = len(rule)
    while i < n:
        c = rule[i]
        if c in "'\"":
            q3 = rule[i:i + 3]
            if q3 in ("'''", '"""'):
                j = rule.find(q3, i + 3)
                j = n if j < 0 else j
                for k in range(i + 3, j):
                    out[k] = " "
                i = j + 3
                continue
            raw = i > 0 and rule[i - 1] in "rR"
            j = i + 1
            while j < n and rule[j] != c:
                if rule[j] == "\\" and not raw:
                    j += 1
                j += 1
            for k in range(i + 1, min(j, n)):
                out[k] = " "
            i = j + 1
            continue
        i += 1
    return "".join(out)


def k8s_unescape(name):
    m = re.fullmatch(r"__([A-Za-z_][A-Za-z0-9_]*?)__", name)
    if m and m.group(1) in CEL_RESERVED:
        return m.group(1)
    out = name
    for esc, ch in (("__underscores__", "__"), ("__dot__", "."), ("__dash__", "-"), ("__slash__", "/")):
        out = out.replace(esc, ch)
    return out


def rule_paths(rule):
    """Yield (var, segments, start, end) for each self/oldSelf access path in a CEL rule."""
    b = blank_cel_strings(rule)
    for m in re.finditer(r"(?<![\w.])(self|oldSelf)\b", b):
        i = m.end()
        segs = []
        while i < len(b):
            if b[i] == ".":
                j = i + 1
                opt = False
                if j < len(b) and b[j] == "?":
                    opt = True
                    j += 1
                mm = re.match(r"[A-Za-z_][A-Za-z0-9_]*", b[j:])
                if not mm:
                    break
                k = j + mm.end()
                if k < len(b) and b[k] == "(":
                    break  # method call
                segs.append(("field", mm.group(0), opt))
                i = k
            elif b[i] == "[":
                depth = 0
                j = i
                while j < len(b):
                    if b[j] == "[":
                        depth += 1
                    elif b[j] == "]":
                        depth -= 1
                        if depth == 0:
                            break
                    j += 1
                segs.append(("index", rule[i + 1:j], False))
                i = j + 1
            else:
                break
        yield m.group(1), segs, m.start(), i


def resolve_path(schema, segs, nullmarks):
    """Walk schema along segments; returns (node or None, flags)."""
    node = schema
    flags = set()
    for kind, val, _opt in segs:
        if not isinstance(node, dict):
            return None, flags
        if kind == "field":
            props = node.get("properties") or {}
            if val in props:
                if (id(node), val) in nullmarks:
                    flags.add("null-field")
                node = props[val]
                continue
            un = k8s_unescape(val)
            if un != val and un in props:
                flags.add("escaped")
                if (id(node), un) in nullmarks:
                    flags.add("null-field")
                node = props[un]
                continue
            if isinstance(node.get("additionalProperties"), dict):
                node = node["additionalProperties"]
                continue
            return None, flags
        else:
            if node.get("type") == "array":
                node = node.get("items")
            elif isinstance(node.get("additionalProperties"), dict):
                node = node["additionalProperties"]
            else:
                return None, flags
    return node, flags


def subtree_features(node, nullmarks):
    feats = set()
    for s in schema_walk(node):
        fmt = s.get("format")
        if fmt in SPECIAL_FORMATS and s.get("type") == "string":
            feats.add("format:" + fmt)
        lt = s.get("x-kubernetes-list-type")
        if lt in ("set", "map"):
            feats.add("list-type:" + lt)
        if any(m[0] == id(s) for m in nullmarks):
            feats.add("null-fields")
    return feats


COMPILE_HINTS = re.compile(r"compil|no matching overload|undeclared reference|undefined field|Syntax error|"
                           r"mismatched input|expected type '|program instantiation")


def clean_error(msg):
    out = msg
    changed = True
    while changed:
        changed = False
        for pre in ("compile error: ", "compilation failed: ", "program instantiation failed: "):
            if out.startswith(pre):
                out = out[len(pre):]
                changed = True
        m = re.match(r"ERROR: <input>:\d+:\d+: ", out)
        if m:
            out = out[m.end():]
            changed = True
    out = re.sub(r" evaluating rule: .*$", "", out, flags=re.S)
    return out


def crd_skip_reason(rule, schema, old_schema, nullmarks, has_old):
    reasons = []
    b = blank_cel_strings(rule)
    for var, segs, start, end in rule_paths(rule):
        if var == "oldSelf" and not has_old:
            reasons.append("uses oldSelf but the Go case has no old object")
            continue
        root = old_schema if var == "oldSelf" and old_schema else schema
        node, flags = resolve_path(root, segs, nullmarks)
        if "escaped" in flags:
            reasons.append("uses Kubernetes property-name escaping (e.g. __dot__, __if__) that plain JSON maps "
                           "do not have")
        if "null-field" in flags:
            reasons.append("Kubernetes treats object fields set to null as absent, plain JSON maps keep them")
        if node is None:
            continue
        feats = subtree_features(node, nullmarks)
        for fe in sorted(feats):
            if fe.startswith("format:"):
                fmt = fe.split(":", 1)[1]
                reasons.append("schema format '%s' makes the value a CEL %s, plain JSON gives a string"
                               % (fmt, SPECIAL_FORMATS[fmt]))
            elif fe == "null-fields" and not segs:
                reasons.append("Kubernetes treats object fields set to null as absent, plain JSON maps keep them")
        if any(f.startswith("list-type:") for f in feats):
            after = b[end:].lstrip()
            before = b[:start].rstrip()
            if after.startswith(("==", "!=", "+")) or before.endswith(("==", "!=", "+")):
                reasons.append("x-kubernetes-list-type set/map changes list equality/concatenation semantics")
    out = []
    for r in reasons:
        if r not in out:
            out.append(r)
    return " | ".join(out) if out else None


def crd_cases(src):
    gofile = GoFile(CRD_PATH, src.read(CRD_PATH))
    interp = Interp()
    pkg = Package(interp, [gofile])
    interp.helpers = set()
    decl = gofile.funcs["TestValidationExpressions"]
    env = Env(pkg.env, pkg=pkg)
    table = None
    for st in decl.body():
        if st.kind == "define" and st.lhs[0].kind == "ident" and st.lhs[0].name == "tests":
            table = interp.force(interp.ev(st.rhs[0], env))
            break
    if table is None:
        raise SystemExit("TestValidationExpressions: table `tests` not found")
    conv = SchemaConv(interp)
    cases = []
    notes = []
    names_seen = {}
    schemas = {}
    groups_seen = {}
    for entry in table:
        entry = interp.force(entry)
        f = entry.fields
        group = dedupe_name(groups_seen, interp.force(f["name"]))
        group_skip = None
        try:
            schema = conv.of(f.get("schema"))
            old_schema = conv.of(f.get("oldSchema")) if f.get("oldSchema") is not None else None
        except (SchemaError, EvalError) as ex:
            schema = None
            old_schema = None
            group_skip = "schema not extractable: %s" % ex
            notes.append("%s: %s" % (group, group_skip))
        schemas[group] = schema
        nullmarks = set()
        try:
            obj = obj_to_json(deep_plain(interp, f.get("obj")), schema, nullmarks)
        except EvalError as ex:
            obj = None
            group_skip = "object not extractable: %s" % ex
            notes.append("%s: %s" % (group, group_skip))
        old = None
        has_old = False
        if f.get("oldObj") is not None:
            try:
                oldv = deep_plain(interp, f.get("oldObj"))
                if oldv is not None:
                    old = obj_to_json(oldv, old_schema or schema, set())
                    has_old = True
            except EvalError:
                pass
        expect_skipped = bool(interp.force(f.get("expectSkipped"))) if f.get("expectSkipped") is not None else False
        expected_cost = interp.force(f.get("expectedCost")) if f.get("expectedCost") is not None else 0
        is_root = bool(interp.force(f.get("isRoot"))) if f.get("isRoot") is not None else False
        valid = [interp.force(x) for x in (interp.force(f.get("valid")) or [])]
        errors = interp.force(f.get("errors")) or {}

        def mk(rule, expect, skip, kind):
            plain = {"self": obj}
            if has_old and re.search(r"(?<![\w.])oldSelf\b", blank_cel_strings(rule)):
                plain["oldSelf"] = old
            bindings = {k: json_to_typed(v) for k, v in plain.items()}
            gname = rule if len(rule) <= 127 else rule[:127]
            c = {"name": dedupe_name(names_seen, "%s: %s" % (group, rule)), "expr": rule, "bindings": bindings,
                 "expect": expect, "skip": skip, "bindings_json": plain,
                 "go_test": "TestValidationExpressions/%s/%s" % (group, gname), "group": group}
            if is_root:
                c["is_root"] = True
            if expected_cost and kind == "valid":
                c["cost"] = {"runtime": expected_cost}
            return c

        for rule in valid:
            if not isinstance(rule, str):
                notes.append("%s: a valid rule could not be evaluated" % group)
                continue
            skip = group_skip
            if skip is None and expect_skipped:
                skip = "Go expects the validator to skip this transition rule (old object is nil), " \
                       "not expressible as an expression result"
            if skip is None:
                skip = crd_skip_reason(rule, schema, old_schema, nullmarks, has_old)
            cases.append(mk(rule, {"true": True}, skip, "valid"))
        for rule, msg in errors.items():
            msg = interp.force(msg)
            skip = group_skip
            refs_self = re.search(r"(?<![\w.])(self|oldSelf)\b", blank_cel_strings(rule)) is not None
            if msg.startswith("invalid data"):
                skip = skip or "error comes from Kubernetes unstructured-data validation, not from CEL"
            if COMPILE_HINTS.search(msg):
                sub = clean_error(msg)
                expect = {"compile_error": [sub]}
                if refs_self and re.search(r"undefined field|no matching overload", msg):
                    skip = skip or "compile error depends on the schema-declared type of self " \
                                   "(a plain-JSON self is dynamically typed)"
            elif msg.startswith("failed rule") or "failed rule:" in msg:
                expect = {"false": True}
            else:
                expect = {"eval_error": clean_error(msg)}
            if skip is None:
                skip = crd_skip_reason(rule, schema, old_schema, nullmarks, has_old)
            c = mk(rule, expect, skip, "error")
            c["error_match"] = {"go_contains": msg}
            cases.append(c)
    return cases, notes, schemas


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

LEFT_OUT_CRD = [
    ("TestValidationExpressionsAtSchemaLevels", "rules are attached at nested schema levels (self is a sub-value) "
                                                "and assertions are on the validator's field errors"),
    ("TestCELValidationLimit / TestCELValidationContextCancellation / TestCELMaxRecursionDepth",
     "cost-budget, context-cancellation and recursion-depth behaviour of the Go validator"),
    ("TestMessageExpression / TestReasonAndFldPath / TestValidateFieldPath",
     "messageExpression, reason and fieldPath handling of the Go validator"),
    ("TestRatcheting / TestOptionalOldSelf*", "ratcheting and optionalOldSelf need old objects, schema "
                                              "typing and validator options"),
]


def rel_out_default():
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(os.path.join(here, "..", "..", "tests", "cel-conformance", "kubernetes"))


def write_json(path, data):
    """Top-level keys pretty-printed, one case (or schema) per line to keep diffs readable."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("{\n")
        keys = list(data)
        for i, k in enumerate(keys):
            v = data[k]
            f.write(" %s: " % json.dumps(k))
            if isinstance(v, list):
                f.write("[\n")
                f.write(",\n".join("  " + json.dumps(x, ensure_ascii=False) for x in v))
                f.write("\n ]")
            elif isinstance(v, dict) and k in ("schemas", "env"):
                f.write("{\n")
                f.write(",\n".join("  %s: %s" % (json.dumps(kk), json.dumps(vv, ensure_ascii=False))
                                    for kk, vv in v.items()))
                f.write("\n }")
            else:
                f.write(json.dumps(v, ensure_ascii=False))
            f.write(",\n" if i + 1 < len(keys) else "\n")
        f.write("}\n")


def main(argv):
    args = list(argv[1:])
    out_dir = rel_out_default()
    if "--out" in args:
        i = args.index("--out")
        out_dir = args[i + 1]
        del args[i:i + 2]
    if len(args) not in (2, 4):
        print(__doc__, file=sys.stderr)
        return 2
    os.makedirs(out_dir, exist_ok=True)
    api = Source(args[0], args[1])
    summary = []
    notes_all = {}
    test_files = [f for f in api.list_dir(LIB_DIR) if f.endswith("_test.go")]
    for tf in sorted(test_files):
        cases, envs, notes, without = library_cases(api, tf)
        stem = tf[:-len(".go")]
        if not cases:
            summary.append((stem, tf, None, 0, 0, "no CEL expression cases (%s)" % ", ".join(without)))
            continue
        data = {"source": {"repo": "kubernetes/apiserver", "path": LIB_DIR + "/" + tf, "commit": api.commit},
                "env": {name: opts for name, opts in envs.items()},
                "cases": cases}
        write_json(os.path.join(out_dir, stem + ".json"), data)
        nskip = sum(1 for c in cases if c["skip"])
        extra = []
        if without:
            extra.append("Test functions without expression cases: " + ", ".join(without))
        summary.append((stem, tf, stem + ".json", len(cases), nskip, "; ".join(extra)))
        if notes:
            notes_all[tf] = notes
    crd_info = None
    if len(args) == 4:
        ext = Source(args[2], args[3])
        cases, notes, schemas = crd_cases(ext)
        data = {"source": {"repo": "kubernetes/apiextensions-apiserver", "path": CRD_PATH, "commit": ext.commit},
                "env": {"crd-validation": ["Kubernetes CRD validation environment (base CEL env with the "
                                           "kubernetes libraries, ext strings/sets/lists, optional types); "
                                           "`self` is the object typed by schemas[case.group]"]},
                "schemas": schemas,
                "cases": cases}
        write_json(os.path.join(out_dir, "crd-validation.json"), data)
        nskip = sum(1 for c in cases if c["skip"])
        crd_info = (ext, len(cases), nskip, notes, cases)
    write_readme(out_dir, api, summary, notes_all, crd_info, argv)
    for stem, tf, out, n, ns, extra in summary:
        print("%-28s %4d cases %4d skipped %s" % (out or "-", n, ns, extra), file=sys.stderr)
    if crd_info:
        print("%-28s %4d cases %4d skipped" % ("crd-validation.json", crd_info[1], crd_info[2]), file=sys.stderr)
    for tf, notes in notes_all.items():
        for n in notes:
            print("note: %s: %s" % (tf, n), file=sys.stderr)
    return 0


def write_readme(out_dir, api, summary, notes_all, crd_info, argv):
    L = []
    L.append("# Kubernetes CEL library conformance cases")
    L.append("")
    L.append("Generated by `scripts/cel-conformance/gen_kubernetes.py` from the table-driven Go tests of the")
    L.append("Kubernetes CEL libraries. Do not edit the JSON by hand; regenerate instead.")
    L.append("")
    L.append("## Sources")
    L.append("")
    L.append("| repo | path | commit |")
    L.append("| --- | --- | --- |")
    L.append("| kubernetes/apiserver | `%s/*_test.go` | `%s` |" % (LIB_DIR, api.commit))
    if crd_info:
        L.append("| kubernetes/apiextensions-apiserver | `%s` | `%s` |" % (CRD_PATH, crd_info[0].commit))
    L.append("")
    L.append("## Regenerate")
    L.append("")
    L.append("```sh")
    L.append("# <apiserver> / <apiextensions> are git dirs (bare or not) or source trees of")
    L.append("# github.com/kubernetes/apiserver and github.com/kubernetes/apiextensions-apiserver")
    L.append("python3 scripts/cel-conformance/gen_kubernetes.py <apiserver> %s \\" % api.commit)
    L.append("    <apiextensions> %s" % (crd_info[0].commit if crd_info else "<commit>"))
    L.append("```")
    L.append("")
    L.append("Last generated with: `%s`" % " ".join(["python3", "scripts/cel-conformance/gen_kubernetes.py"] + argv[1:]))
    L.append("")
    L.append("## Case format")
    L.append("")
    L.append("Each file is `{\"source\": {repo, path, commit}, \"env\": {...}, \"cases\": [...]}`. A case has")
    L.append("`name`, `expr`, `bindings`, `expect` and `skip` (null or a reason). `bindings` maps a variable")
    L.append("name to a TypedValue (what `policy-core/src/cel/conformance.rs` reads); library cases have `{}`,")
    L.append("CRD cases bind `self` (and `oldSelf` for transition rules) and also carry the same object as")
    L.append("plain JSON in `bindings_json`.")
    L.append("`expect` is one of `{\"value\": TypedValue}`, `{\"true\": true}`, `{\"false\": true}`,")
    L.append("`{\"compile_error\": [substring, ...]}`, `{\"eval_error\": substring}`, `{\"no_error\": true}`.")
    L.append("TypedValue: `{\"int\": \"<decimal>\"}`, `{\"uint\": \"<decimal>\"}`, `{\"double\": n}`, `{\"string\": s}`,")
    L.append("`{\"bool\": b}`, `{\"null\": null}`, `{\"list\": [...]}`, `{\"map\": [[k, v], ...]}`, `{\"opaque\": go-source}`.")
    L.append("")
    L.append("Extra informational keys (a harness may ignore them):")
    L.append("")
    L.append("* `go_test` - the Go subtest name (`TestX/<t.Run name>`, before `go test` turns spaces into")
    L.append("  underscores), for cross-checking against the source.")
    L.append("* `helper` / file-level `env` - the Go case helper and the `cel.NewEnv` options it uses.")
    L.append("* `env_options` - per-case library version (semver tests: `SemverLib(SemverVersion(n))`).")
    L.append("  Cases with version 0 only use functions that exist in every version.")
    L.append("* `rewritten_from` - the original expression/expected value when the expected value was an")
    L.append("  opaque library value. `ip(..)`, `cidr(..)`, `quantity(..)`, `semver(..)` results are compared")
    L.append("  with `(expr) == ctor(\"...\")` (the same `Equal` the Go test calls); `types.OptionalNone` becomes")
    L.append("  `(expr) == optional.none()` and `types.OptionalOf(v)` becomes `(expr).value()` expecting `v`.")
    L.append("* `error_match` - how Go matched the error: `go_exact` (Go compares the whole runtime error")
    L.append("  string, given here; `eval_error` is its prefix before text produced by Go's standard")
    L.append("  library such as `netip.ParsePrefix(...)`), `go_regexp` /")
    L.append("  `go_regexps` (the Go pattern; the substring is its longest literal run), `go_contains` (CRD:")
    L.append("  the full validator message; `compile_error` / `eval_error` hold it without the")
    L.append("  `compilation failed: ERROR: <input>:L:C:` prefix and the ` evaluating rule: ...` suffix).")
    L.append("* `cost` - cost-test expectations (`estimated` [min, max] and `runtime`), CEL-go cost model.")
    L.append("* CRD cases: `group` (the Go table entry; the file-level `schemas[group]` is its structural")
    L.append("  schema as OpenAPI v3 JSON), `is_root`. Numbers are emitted as JSON floats where the schema")
    L.append("  type is `number`; `oldSelf` is bound for transition rules.")
    L.append("")
    L.append("## Files")
    L.append("")
    L.append("| file | Go test file | cases | skipped | notes |")
    L.append("| --- | --- | ---: | ---: | --- |")
    for stem, tf, out, n, ns, extra in summary:
        L.append("| %s | `%s` | %d | %d | %s |" % ("`%s`" % out if out else "-", tf, n, ns, extra))
    if crd_info:
        L.append("| `crd-validation.json` | `validation_test.go` (TestValidationExpressions) | %d | %d | |"
                 % (crd_info[1], crd_info[2]))
    L.append("")
    if crd_info:
        reasons = {}
        for c in crd_info[4]:
            if c["skip"]:
                for r in c["skip"].split(" | "):
                    reasons[r] = reasons.get(r, 0) + 1
        L.append("### crd-validation.json skip reasons")
        L.append("")
        L.append("| reason | cases |")
        L.append("| --- | ---: |")
        for r, n in sorted(reasons.items(), key=lambda x: -x[1]):
            L.append("| %s | %d |" % (r, n))
        L.append("")
        L.append("A skip reason on a CRD case means the Go outcome depends on the structural schema (typed")
        L.append("`self`), which a plain JSON binding cannot reproduce. The schemas are kept in the file.")
        L.append("")
    L.append("## Not extracted")
    L.append("")
    present = {tf for _s, tf, _o, _n, _k, _e in summary}
    absent = [f for f in ("urls_test.go", "regex_test.go", "lists_test.go", "sets_test.go", "jsonpatch_test.go",
                          "authz_test.go") if f not in present]
    if absent:
        L.append("* Not present in `%s` at this commit: %s. The URL, regex, lists and sets functions are"
                 % (LIB_DIR, ", ".join("`%s`" % f for f in absent)))
        L.append("  exercised by `crd-validation.json` (groups `URL parsing`, `stdlib regex functions`,")
        L.append("  `stdlib list functions`, `listSets`, ...) and by `cost_test.json`.")
    L.append("* `cost_test.go` `TestAuthzLibrary` cases are kept but skipped (authz needs a Go authorizer).")
    L.append("* `library_compatibility_test.go` has no expression cases (it checks function/type registration).")
    L.append("* `cost_test.go`: `TestSize` and `TestTypeEquality` call the cost estimator directly (no")
    L.append("  expressions). The other cost tests are included; Go only asserts that they compile and")
    L.append("  evaluate without error (plus costs), so they expect `no_error`.")
    L.append("* `format_test.go` appends cases in loops over `library.ConstantFormats` (a Go map); the generator")
    L.append("  expands them with the map keys sorted, Go runs them in random order.")
    if crd_info:
        L.append("* `validation_test.go`: only `TestValidationExpressions` is extracted. Left out:")
        for what, why in LEFT_OUT_CRD:
            L.append("  * %s - %s." % (what, why))
        for n in crd_info[3]:
            L.append("  * %s" % n)
    for tf, notes in notes_all.items():
        for n in notes:
            L.append("* `%s`: %s" % (tf, n))
    L.append("")
    with open(os.path.join(out_dir, "README.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(L))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
