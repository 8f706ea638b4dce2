"""A small JSON5 reader for the tests (Python's standard library has none): loads() gives
the value (objects as dicts, in order), comments() the text of every comment in order.

Written from the JSON5 specification (spec.json5.org, 1.0.0), independently of mcpmux's
C parser; for unquoted keys it takes the same rule as mcpmux (ASCII as ECMAScript 5.1,
and any other character that is not white space).
"""

import math

WHITE = set("\t\n\v\f\r \u00a0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff") | {
    chr(c) for c in range(0x2000, 0x200b)}
LINE_END = set("\n\r\u2028\u2029")
ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "0": "\0"}


class Error(ValueError):
    pass


class _Reader:
    def __init__(self, text):
        self.t = text
        self.i = 0
        self.comments = []

    def peek(self, k=0):
        return self.t[self.i + k] if self.i + k < len(self.t) else ""

    def at(self, chars):
        """Is the next character one of chars (never at the end)?"""
        c = self.peek()
        return c != "" and c in chars

    def fail(self, what):
        raise Error("%s at offset %d" % (what, self.i))

    def space(self):
        while self.i < len(self.t):
            c = self.t[self.i]
            if c in WHITE:
                self.i += 1
            elif self.t.startswith("//", self.i):
                j = self.i
                while j < len(self.t) and self.t[j] not in LINE_END:
                    j += 1
                self.comments.append(self.t[self.i:j])
                self.i = j
            elif self.t.startswith("/*", self.i):
                j = self.t.find("*/", self.i + 2)
                if j < 0:
                    self.fail("unterminated comment")
                self.comments.append(self.t[self.i:j + 2])
                self.i = j + 2
            else:
                return

    def value(self):
        c = self.peek()
        if c == "{":
            return self.obj()
        if c == "[":
            return self.arr()
        if self.at("\"'"):
            return self.string()
        for word, val in (("true", True), ("false", False), ("null", None)):
            if self.t.startswith(word, self.i) and not self.id_part(self.i + len(word)):
                self.i += len(word)
                return val
        return self.number()

    def obj(self):
        self.i += 1
        out = {}
        while True:
            self.space()
            if self.peek() == "}":
                break
            key = self.string() if self.at("\"'") else self.ident()
            self.space()
            if self.peek() != ":":
                self.fail("expected ':'")
            self.i += 1
            self.space()
            out[key] = self.value()
            self.space()
            if self.peek() == ",":
                self.i += 1
            elif self.peek() != "}":
                self.fail("expected ',' or '}'")
        self.i += 1
        return out

    def arr(self):
        self.i += 1
        out = []
        while True:
            self.space()
            if self.peek() == "]":
                break
            out.append(self.value())
            self.space()
            if self.peek() == ",":
                self.i += 1
            elif self.peek() != "]":
                self.fail("expected ',' or ']'")
        self.i += 1
        return out

    def hex(self, n):
        h = self.t[self.i:self.i + n]
        if len(h) != n or any(c not in "0123456789abcdefABCDEF" for c in h):
            self.fail("bad hex escape")
        self.i += n
        return int(h, 16)

    def string(self):
        q = self.t[self.i]
        self.i += 1
        out = []
        while True:
            c = self.peek()
            if c == "" or c in "\n\r":
                self.fail("unterminated string or line break in a string")
            self.i += 1
            if c == q:
                return _join_surrogates("".join(out))
            if c != "\\":
                out.append(c)
                continue
            c = self.peek()
            self.i += 1
            if c == "":
                self.fail("unterminated string")
            if c in ESCAPES:
                if c == "0" and self.at("0123456789"):
                    self.fail("\\0 before a digit")
                out.append(ESCAPES[c])
            elif c in "123456789":
                self.fail("octal escape")
            elif c == "x":
                out.append(chr(self.hex(2)))
            elif c == "u":
                out.append(chr(self.hex(4)))
            elif c == "\r":
                if self.peek() == "\n":
                    self.i += 1
            elif c in LINE_END:
                pass
            else:
                out.append(c)

    def id_char(self, j, start):
        """(character, length) of an identifier character at j, or (None, 0)."""
        if j >= len(self.t):
            return None, 0
        c = self.t[j]
        n = 1
        if c == "\\":
            if self.t[j + 1:j + 2] != "u":
                return None, 0
            h = self.t[j + 2:j + 6]
            if len(h) != 4 or any(x not in "0123456789abcdefABCDEF" for x in h):
                return None, 0
            c, n = chr(int(h, 16)), 6
        ok = (c.isascii() and (c.isalpha() or c in "$_" or (not start and c.isdigit()))) or \
            (not c.isascii() and c not in WHITE and not 0xd800 <= ord(c) <= 0xdfff)
        return (c, n) if ok else (None, 0)

    def id_part(self, j):
        return self.id_char(j, False)[1] > 0

    def ident(self):
        c, n = self.id_char(self.i, True)
        if not n:
            self.fail("expected a key")
        out = []
        while n:
            out.append(c)
            self.i += n
            c, n = self.id_char(self.i, False)
        return "".join(out)

    def number(self):
        j = self.i
        sign = 1
        if self.at("+-"):
            sign = -1 if self.peek() == "-" else 1
            self.i += 1
        for word, val in (("Infinity", math.inf), ("NaN", math.nan)):
            if self.t.startswith(word, self.i) and not self.id_part(self.i + len(word)):
                self.i += len(word)
                return sign * val
        if self.t[self.i:self.i + 2] in ("0x", "0X"):
            self.i += 2
            k = self.i
            while self.at("0123456789abcdefABCDEF"):
                self.i += 1
            if k == self.i:
                self.fail("bad hex number")
            v = sign * int(self.t[k:self.i], 16)
        else:
            k = self.i
            if self.peek() == "0":
                self.i += 1
            else:
                while self.peek().isdigit():
                    self.i += 1
            digits = self.i - k
            if self.peek() == ".":
                self.i += 1
                while self.peek().isdigit():
                    self.i += 1
                    digits += 1
            if digits == 0:
                self.fail("expected a value")
            if self.at("eE"):
                self.i += 1
                if self.at("+-"):
                    self.i += 1
                if not self.peek().isdigit():
                    self.fail("bad exponent")
                while self.peek().isdigit():
                    self.i += 1
            text = self.t[k:self.i]
            v = sign * (float(text) if any(c in text for c in ".eE") else int(text))
        if self.peek().isdigit() or self.id_char(self.i, True)[1]:
            self.i = j
            self.fail("bad number")
        return v


def _join_surrogates(s):
    return s.encode("utf-16", "surrogatepass").decode("utf-16", "surrogatepass")


def _read(text):
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8")
    r = _Reader(text)
    r.space()
    v = r.value()
    r.space()
    if r.i != len(text):
        r.fail("trailing text")
    return r, v


def loads(text):
    return _read(text)[1]


def comments(text):
    return _read(text)[0].comments
