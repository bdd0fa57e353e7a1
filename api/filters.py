"""containerd's filter syntax: parse filter strings and match objects against them.

A filter string is a comma-separated list of *selectors*, all of which must
match (AND). Several filter strings given together match if any one does (OR).
A selector is ``<fieldpath>[<operator><value>]``::

    name==foo                      equality
    name!=foo                      inequality (also true when the field is absent)
    labels.foo                     presence only
    labels."with space"==bar       a quoted field
    other~=/[abc]+/,name!=foo      a regular expression (Go RE2 syntax)

Field paths are dot-separated fields, each either ``[A-Za-z0-9_]+`` or a
double-quoted string. A value is either a run of printable characters up to a
comma or whitespace, or a quoted string; after ``~=`` it may also be quoted as
``/.../`` or ``|...|`` so that a regular expression needs less escaping.
Quoted strings use Go's escapes (``\\n``, ``\\x41``, ``\\u00e9``, ``\\101``, ...).

Objects are presented to a filter through an :class:`Adaptor` that maps a field
path to ``(value, present)``; the ``adapt_*`` helpers build the adaptors
containerd uses for images, containers, content, snapshots, leases, events and
plugins.

Regular expressions are matched by RE2 (api.re2), in time linear in the
value, like Go's. Linear is still not free — a pattern with a large compiled
program can take 100 ms over a 4 KiB label — so code on the event loop uses
:func:`parse_all_async` and :func:`select`, which keep such work off the loop.

The behaviour, down to error messages and positions, follows containerd 1.6's
``filters`` package (parser.go, scanner.go, quote.go, filter.go) and
``metadata/adaptors.go``. Positions count characters where Go counts bytes.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import threading
import time
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias, TypeVar

from api import re2
from api.errdefs import InvalidArgument

__all__ = [
    "ALWAYS",
    "Adaptor",
    "AdaptorFunc",
    "AllOf",
    "AnyOf",
    "Filter",
    "FilterSyntaxError",
    "Operator",
    "Selector",
    "adapt",
    "adapt_container",
    "adapt_content_info",
    "adapt_content_status",
    "adapt_envelope",
    "adapt_image",
    "adapt_labels",
    "adapt_lease",
    "adapt_plugin",
    "adapt_snapshot",
    "adapt_task",
    "parse",
    "parse_all",
    "parse_all_async",
    "quote",
    "select",
    "uses_regexp",
]

log = logging.getLogger(__name__)


class Adaptor(Protocol):
    """Exposes an object's fields to a filter."""

    def field(self, fieldpath: Sequence[str]) -> tuple[str, bool]:
        """Return ``(value, present)`` for the field at ``fieldpath`` (never empty).

        An absent field returns ``("", False)``. Adaptors never raise.
        """
        ...


class Filter(Protocol):
    """A parsed filter; ``match`` tells whether an object passes it."""

    def match(self, adaptor: Adaptor) -> bool: ...


@dataclass(frozen=True, slots=True)
class AdaptorFunc:
    """An :class:`Adaptor` made from a function of the field path."""

    fn: Callable[[Sequence[str]], tuple[str, bool]]

    def field(self, fieldpath: Sequence[str]) -> tuple[str, bool]:
        return self.fn(fieldpath)


# -- filters -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Always:
    def match(self, adaptor: Adaptor) -> bool:
        return True


ALWAYS: Filter = _Always()
"""Matches everything: what an empty filter string, or no filter at all, means."""


@dataclass(frozen=True, slots=True)
class AnyOf:
    """Matches if any of ``filters`` does (the OR of several filter strings)."""

    filters: tuple[Filter, ...]

    def match(self, adaptor: Adaptor) -> bool:
        return any(f.match(adaptor) for f in self.filters)


@dataclass(frozen=True, slots=True)
class AllOf:
    """Matches if all of ``filters`` do (the comma-separated selectors of one string)."""

    filters: tuple[Filter, ...]

    def match(self, adaptor: Adaptor) -> bool:
        return all(f.match(adaptor) for f in self.filters)


class Operator(enum.Enum):
    PRESENT = "?"
    EQUAL = "=="
    NOT_EQUAL = "!="
    MATCHES = "~="


@dataclass(frozen=True, slots=True)
class Selector:
    """One ``<fieldpath><operator><value>`` term."""

    fieldpath: tuple[str, ...]
    operator: Operator
    value: str = ""
    # The compiled ~= pattern, or None if Go would not compile it either.
    _regexp: re2.Regexp | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Compile a ``~=`` pattern.

        Raises re2.RegexpUnsupported (an InvalidArgument) for a pattern Go
        takes but RE2 cannot run as Go would.
        """
        object.__setattr__(self, "fieldpath", tuple(self.fieldpath))
        if self.operator is not Operator.MATCHES:
            return
        try:
            object.__setattr__(self, "_regexp", re2.compile(self.value))
        except re2.RegexpError as exc:
            # containerd accepts the filter and logs the error each time it
            # fails to compile; such a selector never matches.
            log.error("error compiling regexp %r: %s", self.value, exc)

    def match(self, adaptor: Adaptor) -> bool:
        value, present = adaptor.field(self.fieldpath)
        match self.operator:
            case Operator.PRESENT:
                return present
            case Operator.EQUAL:
                return present and value == self.value
            case Operator.NOT_EQUAL:
                # No presence check: an absent field reads as "" (filter.go).
                return value != self.value
            case Operator.MATCHES:
                # Absent fields are matched as "" too, so `labels.x~=/.*/`
                # is true for every object.
                return self._regexp is not None and self._regexp.match_string(value)


# -- parsing -------------------------------------------------------------------


class FilterSyntaxError(InvalidArgument):
    """A filter string does not parse.

    ``expr`` is the filter string, ``pos`` the index of the offending character
    (``len(expr)`` at the end of input) and ``reason`` the bare message.
    """

    def __init__(self, expr: str, pos: int, reason: str) -> None:
        # Go marks the offending byte; we mark the character.
        where = f"{expr[:pos]} >|{expr[pos]}|< {expr[pos + 1 :]}" if pos < len(expr) else expr
        super().__init__(f"filters: parse error: [{where}]: {reason}")
        self.expr = expr
        self.pos = pos
        self.reason = reason


class _Tok(enum.Enum):
    EOF = enum.auto()
    QUOTED = enum.auto()
    VALUE = enum.auto()
    FIELD = enum.auto()
    SEPARATOR = enum.auto()
    OPERATOR = enum.auto()
    ILLEGAL = enum.auto()
    OTHER = enum.auto()  # any other single character


# The scanner reads one character at a time; these stand for "no character".
_EOF = "<eof>"
_ILLEGAL = "<illegal>"

_QUOTES = frozenset('/|"')
_SEPARATORS = frozenset(",.")
_OPERATOR_CHARS = frozenset("=!~")
# Go's unicode.IsSpace (the White_Space property). Python's str.isspace also
# accepts U+001C..U+001F, which Go treats as ordinary characters.
_SPACES = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# Go's unicode.IsLetter/IsDigit/IsNumber/IsGraphic/IsPunct, less spaces:
# letters, marks, numbers, punctuation and symbols.
_VALUE_CATEGORIES = frozenset("LMNPS")


def _is_field_char(ch: str) -> bool:
    return ch == "_" or ("0" <= ch <= "9") or ("A" <= ch <= "Z") or ("a" <= ch <= "z")


def _is_value_char(ch: str) -> bool:
    return (
        len(ch) == 1
        and ch != ","
        and ch not in _SPACES
        and unicodedata.category(ch)[0] in _VALUE_CATEGORIES
    )


class _Scanner:
    """Tokenizer with containerd's exact lookahead and error-position behaviour.

    ``pos`` is where the last character read starts and ``ppos`` where the
    next one does; ``peek`` reads a character without moving. The first
    error message recorded sticks, even one recorded while peeking.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.ppos = 0
        self.in_value = False  # set after an operator: the next word is a value
        self.err = ""

    def error(self, msg: str) -> None:
        if not self.err:
            self.err = msg

    def next(self) -> str:
        if self.pos >= len(self.text):
            return _EOF
        self.pos = self.ppos
        if self.ppos >= len(self.text):
            return _EOF
        ch = self.text[self.ppos]
        self.ppos += 1
        # Go decodes UTF-8 and flags U+FFFD (which is also what invalid bytes
        # decode to); lone surrogates are Python's form of invalid input.
        if ch == "\ufffd" or "\ud800" <= ch <= "\udfff":
            self.error("rune error")
            return _ILLEGAL
        if ch == "\0":
            self.error("unexpected null")
            return _ILLEGAL
        return ch

    def peek(self) -> str:
        pos, ppos = self.pos, self.ppos
        ch = self.next()
        self.pos, self.ppos = pos, ppos
        return ch

    def scan(self) -> tuple[int, _Tok, str]:
        ch = self.next()
        while ch in _SPACES:
            ch = self.next()
        pos = self.pos
        if ch == _EOF:
            return pos, _Tok.EOF, ""
        if ch == _ILLEGAL:
            return pos, _Tok.ILLEGAL, ""
        if ch in _QUOTES:
            kind = _Tok.QUOTED if self._scan_quoted(ch) else _Tok.ILLEGAL
            return pos, kind, self.text[pos : self.ppos]
        if ch in _SEPARATORS:
            self.in_value = False
            return pos, _Tok.SEPARATOR, ch
        if ch in _OPERATOR_CHARS:
            while self.peek() in _OPERATOR_CHARS:
                self.next()
            self.in_value = True
            return pos, _Tok.OPERATOR, self.text[pos : self.ppos]
        if self.in_value:
            # The first character of a value may be anything not handled above.
            while _is_value_char(self.peek()):
                self.next()
            self.in_value = False
            return pos, _Tok.VALUE, self.text[pos : self.ppos]
        if _is_field_char(ch):
            while _is_field_char(self.peek()):
                self.next()
            return pos, _Tok.FIELD, self.text[pos : self.ppos]
        return pos, _Tok.OTHER, ""

    def _scan_quoted(self, quote: str) -> bool:
        """Skip to the closing quote, checking escapes; False if malformed."""
        legal = True
        ch = self.next()
        while ch != quote:
            if ch in ("\n", _EOF, _ILLEGAL):
                self.error("quoted literal not terminated")
                return False
            if ch == "\\":
                ch, ok = self._scan_escape(quote)
                legal = legal and ok
            else:
                ch = self.next()
        return legal

    def _scan_escape(self, quote: str) -> tuple[str, bool]:
        ch = self.next()
        if ch in ("a", "b", "f", "n", "r", "t", "v", "\\", quote):
            return self.next(), True
        if ch in ("0", "1", "2", "3", "4", "5", "6", "7"):
            return self._scan_digits(ch, 8, 3)
        if ch in ("x", "u", "U"):
            return self._scan_digits(self.next(), 16, {"x": 2, "u": 4, "U": 8}[ch])
        self.error("illegal escape sequence")
        return ch, False

    def _scan_digits(self, ch: str, base: int, count: int) -> tuple[str, bool]:
        while count > 0 and _digit_value(ch) < base:
            ch = self.next()
            count -= 1
        if count > 0:
            self.error("illegal numeric escape sequence")
            return ch, False
        return ch, True


def _digit_value(ch: str) -> int:
    if len(ch) == 1 and ch in "0123456789abcdefABCDEF":
        return int(ch, 16)
    return 16


_SIMPLE_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92}


def _unquote(token: str) -> str:
    """Decode a quoted token (delimiters included) as containerd's quote.go does.

    Raises ValueError on bad syntax. ``\\x`` and octal escapes produce single
    bytes; bytes that do not form UTF-8 come back as surrogate escapes, so
    such a value equals no real (UTF-8) field value, as in Go.
    """
    quote = token[0]
    if len(token) < 2 or token[-1] != quote or quote not in _QUOTES:
        raise ValueError("quote syntax error")
    body = token[1:-1]
    if "\n" in body:
        raise ValueError("quote syntax error")
    if "\\" not in body and quote not in body:
        return body
    out = bytearray()
    i = 0
    while i < len(body):
        c = body[i]
        if c == quote:
            raise ValueError("quote syntax error")
        if c != "\\":
            out += c.encode()
            i += 1
            continue
        if i + 1 >= len(body):
            raise ValueError("quote syntax error")
        c = body[i + 1]
        i += 2
        if c in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[c])
        elif c in ("x", "u", "U"):
            n = {"x": 2, "u": 4, "U": 8}[c]
            digits = body[i : i + n]
            if len(digits) < n or any(_digit_value(d) >= 16 for d in digits):
                raise ValueError("quote syntax error")
            i += n
            value = int(digits, 16)
            if c == "x":
                out.append(value)
            elif value > 0x10FFFF:
                raise ValueError("quote syntax error")
            else:
                # Go encodes a surrogate code point as U+FFFD.
                is_surrogate = 0xD800 <= value <= 0xDFFF
                out += ("\ufffd" if is_surrogate else chr(value)).encode("utf-8")
        elif c in "01234567":
            digits = body[i : i + 2]
            if len(digits) < 2 or any(d not in "01234567" for d in digits):
                raise ValueError("quote syntax error")
            i += 2
            value = int(c + digits, 8)
            if value > 255:
                raise ValueError("quote syntax error")
            out.append(value)
        elif c in ("'", '"', "|", "/") and c == quote:
            out += c.encode()
        else:
            raise ValueError("quote syntax error")
    return out.decode("utf-8", "surrogateescape")


def quote(value: str) -> str:
    """Quote ``value`` so that it parses back unchanged as a field or a value.

    The inverse of the parser's unquoting: ``parse(f"labels.{quote(k)}=={quote(v)}")``
    selects objects whose label ``k`` is ``v``. Filters are UTF-8 on the wire, so
    a string holding lone surrogates cannot be quoted: ValueError.
    """
    parts = ['"']
    for ch in value:
        cp = ord(ch)
        if ch in ('"', "\\"):
            parts.append("\\" + ch)
        elif " " <= ch <= "~":
            parts.append(ch)
        elif 0xD800 <= cp <= 0xDFFF:
            raise ValueError(f"cannot quote lone surrogate U+{cp:04X}")
        elif cp < 0x80:
            parts.append(f"\\x{cp:02x}")
        elif ch.isprintable() and ch != "\ufffd":
            parts.append(ch)
        elif cp <= 0xFFFF:
            parts.append(f"\\u{cp:04x}")
        else:
            parts.append(f"\\U{cp:08x}")
    parts.append('"')
    return "".join(parts)


class _Parser:
    """Recursive descent over containerd's grammar::

    selectors := selector ("," selector)*
    selector  := fieldpath [operator value]
    fieldpath := field ("." field)*
    field     := quoted | [A-Za-z0-9_]+
    operator  := "==" | "!=" | "~="
    value     := quoted | <printable characters up to "," or whitespace>
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.scanner = _Scanner(text)

    def error(self, pos: int, reason: str) -> FilterSyntaxError:
        return FilterSyntaxError(self.text, pos, reason)

    def selectors(self) -> AllOf:
        selectors = [self.selector()]
        while True:
            ch = self.scanner.peek()
            if ch == _EOF:
                return AllOf(tuple(selectors))
            if ch != ",":
                shown = "\ufffd" if ch == _ILLEGAL else ch  # Go's string(rune(-7))
                raise self.error(self.scanner.ppos, f"unexpected input: {shown}")
            self.scanner.scan()
            selectors.append(self.selector())

    def selector(self) -> Selector:
        fieldpath = self.fieldpath()
        if self.scanner.peek() in (",", _EOF):
            return Selector(tuple(fieldpath), Operator.PRESENT)
        op = self.operator()
        # Alternative quotes (/.../, |...|) are reserved for regular expressions.
        pos, value = self.value(allow_alt_quotes=op is Operator.MATCHES)
        try:
            return Selector(tuple(fieldpath), op, value)
        except re2.RegexpUnsupported as exc:
            raise self.error(pos, f"unsupported regexp: {exc.message}") from None

    def fieldpath(self) -> list[str]:
        fields = [self.field()]
        while self.scanner.peek() == ".":
            self.scanner.scan()
            fields.append(self.field())
        return fields

    def field(self) -> str:
        pos, tok, text = self.scanner.scan()
        if tok is _Tok.FIELD:
            return text
        if tok is _Tok.QUOTED:
            return self.unquote(pos, text, allow_alt_quotes=False)
        if tok is _Tok.ILLEGAL:
            raise self.error(pos, self.scanner.err)
        raise self.error(pos, "expected field or quoted")

    def operator(self) -> Operator:
        pos, tok, text = self.scanner.scan()
        if tok is _Tok.OPERATOR:
            if text in ("==", "!=", "~="):
                return Operator(text)
            raise self.error(pos, f'unsupported operator "{text}"')
        if tok is _Tok.ILLEGAL:
            raise self.error(pos, self.scanner.err)
        raise self.error(pos, 'expected an operator ("=="|"!="|"~=")')

    def value(self, *, allow_alt_quotes: bool) -> tuple[int, str]:
        pos, tok, text = self.scanner.scan()
        if tok in (_Tok.VALUE, _Tok.FIELD):
            return pos, text
        if tok is _Tok.QUOTED:
            return pos, self.unquote(pos, text, allow_alt_quotes=allow_alt_quotes)
        if tok is _Tok.ILLEGAL:
            raise self.error(pos, self.scanner.err)
        raise self.error(pos, "expected value or quoted")

    def unquote(self, pos: int, text: str, *, allow_alt_quotes: bool) -> str:
        if not allow_alt_quotes and text[0] not in ("'", '"'):
            raise self.error(pos, "invalid quote encountered")
        try:
            return _unquote(text)
        except ValueError as exc:
            raise self.error(pos, f"unquoting failed: {exc}") from None


def parse(expr: str) -> Filter:
    """Parse one filter string (selectors joined by ``,``, all of which must match).

    The empty string matches everything. Raises FilterSyntaxError (an
    InvalidArgument) if ``expr`` does not parse, or holds a regular expression
    that Go takes but RE2 cannot run as Go would (api.re2.RegexpUnsupported);
    one that Go rejects is accepted and never matches, as in containerd.
    """
    if expr == "":
        return ALWAYS
    return _Parser(expr).selectors()


def parse_all(*exprs: str) -> Filter:
    """Parse several filter strings into a filter matching if any of them does.

    No strings at all match everything, as do empty strings. Raises
    FilterSyntaxError (an InvalidArgument) on the first one that does not parse.
    """
    if not exprs:
        return ALWAYS
    return AnyOf(tuple(parse(expr) for expr in exprs))


# Filter strings up to this many characters are parsed on the caller's
# thread; longer ones cost more than a millisecond of pure Python.
_INLINE_PARSE = 4096


async def parse_all_async(*exprs: str) -> Filter:
    """:func:`parse_all` for code on the event loop: long input is parsed in a thread.

    (Compiling a regexp holds the GIL either way; api.re2 bounds that to
    milliseconds.)
    """
    if sum(map(len, exprs)) <= _INLINE_PARSE:
        return parse_all(*exprs)
    return await asyncio.to_thread(parse_all, *exprs)


def uses_regexp(flt: Filter) -> bool:
    """Whether matching ``flt`` may run a regular expression (filters of
    unknown types are assumed to)."""
    if isinstance(flt, Selector):
        return flt.operator is Operator.MATCHES
    if isinstance(flt, AnyOf | AllOf):
        return any(uses_regexp(f) for f in flt.filters)
    return flt is not ALWAYS


T = TypeVar("T")

# Seconds of matching between two yields to the event loop, and per trip to
# a worker thread.
_LOOP_SLICE = 0.002
_THREAD_SLICE = 0.02
# Niceness of the matching threads (Linux sets it per thread).
_THREAD_NICE = 10


async def select(flt: Filter, items: Sequence[T], adapt: Callable[[T], Adaptor]) -> list[T]:
    """The ``items`` that ``flt`` matches, in order, without holding the event loop.

    Plain selectors are cheap: they run on the loop, which gets control back
    every couple of milliseconds. Regular expressions run in worker threads
    (RE2 releases the GIL while it matches), a slice of items at a time so
    that a cancelled call stops within one slice.
    """
    if flt is ALWAYS:
        return list(items)
    out: list[T] = []
    start = 0
    if uses_regexp(flt):
        # A thread of its own, at a lower CPU priority than the event loop's:
        # a long list matched on a 2-core machine must not take the loop's core.
        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(1, thread_name_prefix="filter", initializer=_lower_priority)
        try:
            while start < len(items):
                start = await loop.run_in_executor(
                    pool, _select_slice, flt, items, adapt, start, out, _THREAD_SLICE
                )
        finally:
            pool.shutdown(wait=False)  # a cancelled call leaves after the current slice
        return out
    while True:
        start = _select_slice(flt, items, adapt, start, out, _LOOP_SLICE)
        if start >= len(items):
            return out
        await asyncio.sleep(0)


def _lower_priority() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _THREAD_NICE)
    except (AttributeError, OSError) as exc:  # not Linux, or not allowed
        log.debug("filters: cannot lower the matching thread's priority: %s", exc)


def _select_slice(
    flt: Filter,
    items: Sequence[T],
    adapt: Callable[[T], Adaptor],
    start: int,
    out: list[T],
    seconds: float,
) -> int:
    """Match items from ``start`` for about ``seconds``; return where to go on."""
    deadline = time.monotonic() + seconds
    end = len(items)
    i = start
    while i < end:
        item = items[i]
        i += 1
        if flt.match(adapt(item)):
            out.append(item)
        if time.monotonic() >= deadline:
            break
    return i


# -- adaptors ------------------------------------------------------------------

Leaf: TypeAlias = str | tuple[str, bool]
"""A field's value: a string (present when non-empty) or an explicit (value, present)."""
Fields: TypeAlias = Mapping[str, "Leaf | Fields"]


def adapt_labels(labels: Mapping[str, str] | None, fieldpath: Sequence[str]) -> tuple[str, bool]:
    """Look up a label by the rest of a field path (containerd's ``checkMap``).

    The components are joined with ``.``, so ``labels.a.b`` and ``labels."a.b"``
    both name the label ``a.b``. An empty or missing map has no labels.
    """
    if not labels:
        return "", False
    key = ".".join(fieldpath)
    if key in labels:
        return labels[key], True
    return "", False


def _lookup(fields: Fields, fieldpath: Sequence[str]) -> tuple[str, bool]:
    node: Leaf | Fields = fields
    for name in fieldpath:
        if not isinstance(node, Mapping):
            break  # like containerd's adaptors, ignore components past a leaf
        child = node.get(name)
        if child is None:
            return "", False
        node = child
    else:
        if isinstance(node, Mapping):
            return "", False
    if isinstance(node, tuple):
        return node
    assert isinstance(node, str)
    return node, node != ""


def adapt(
    fields: Fields,
    *,
    labels: Mapping[str, str] | None = None,
    maps: Mapping[str, Mapping[str, str] | None] | None = None,
) -> Adaptor:
    """Build an adaptor from plain values.

    ``fields`` maps field names to a string (present when non-empty), an
    explicit ``(value, present)`` pair, or a nested mapping of sub-fields
    (``{"target": {"digest": ...}}`` serves ``target.digest``). ``labels``
    serves ``labels.<key>``, and each entry of ``maps`` serves
    ``<name>.<key>`` the same way (e.g. ``annotations``).
    """
    all_maps = dict(maps or {})
    if labels is not None:
        all_maps["labels"] = labels

    def field(fieldpath: Sequence[str]) -> tuple[str, bool]:
        if not fieldpath:
            return "", False
        if fieldpath[0] in all_maps:
            return adapt_labels(all_maps[fieldpath[0]], fieldpath[1:])
        return _lookup(fields, fieldpath)

    return AdaptorFunc(field)


def adapt_image(
    name: str,
    target_digest: str = "",
    target_media_type: str = "",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> Adaptor:
    """Images: ``name``, ``target.digest``, ``target.mediatype``, ``labels.*``, and
    ``annotations.*`` (the target descriptor's annotations)."""
    return adapt(
        {"name": name, "target": {"digest": target_digest, "mediatype": target_media_type}},
        labels=labels,
        maps={"annotations": annotations},
    )


def adapt_container(
    id: str,
    image: str = "",
    runtime_name: str = "",
    labels: Mapping[str, str] | None = None,
) -> Adaptor:
    """Containers: ``id``, ``image``, ``runtime.name``, ``labels.*``."""
    return adapt({"id": id, "image": image, "runtime": {"name": runtime_name}}, labels=labels)


def adapt_content_info(digest: str, labels: Mapping[str, str] | None = None) -> Adaptor:
    """Content blobs: ``digest`` (always present) and ``labels.*``.

    containerd reserves ``size`` but does not filter on it: it is never present.
    """
    return adapt({"digest": (digest, True)}, labels=labels)


def adapt_content_status(ref: str) -> Adaptor:
    """Ingests (content write statuses): ``ref``, always present."""
    return adapt({"ref": (ref, True)})


_SNAPSHOT_KINDS = frozenset({"active", "view", "committed"})


def adapt_snapshot(
    kind: str | enum.Enum,
    name: str,
    parent: str = "",
    labels: Mapping[str, str] | None = None,
) -> Adaptor:
    """Snapshots: ``kind`` (``active``, ``view`` or ``committed``), ``name`` and
    ``parent`` (always present, even when empty), ``labels.*``.

    ``kind`` may be a string or an enum whose member name is the kind; any
    other kind is absent, as containerd's unknown kind is.
    """
    kind_name = (kind.name if isinstance(kind, enum.Enum) else kind).lower()
    kind_field: Leaf = (kind_name, True) if kind_name in _SNAPSHOT_KINDS else ("", False)
    return adapt(
        {"kind": kind_field, "name": (name, True), "parent": (parent, True)}, labels=labels
    )


def adapt_lease(id: str, labels: Mapping[str, str] | None = None) -> Adaptor:
    """Leases: ``id``, ``labels.*``."""
    return adapt({"id": id}, labels=labels)


def adapt_plugin(type: str, id: str) -> Adaptor:
    """Introspection plugins: ``type``, ``id`` (platforms and capabilities are
    not filterable in containerd)."""
    return adapt({"type": type, "id": id})


def adapt_task(id: str, namespace: str) -> Adaptor:
    """Tasks, for the Metrics call: ``id`` and ``namespace``, always present."""
    return adapt({"id": (id, True), "namespace": (namespace, True)})


def adapt_envelope(namespace: str, topic: str, event: Adaptor | None = None) -> Adaptor:
    """Event envelopes: ``namespace``, ``topic``, and ``event.<path>`` delegated
    to the decoded event's own adaptor (absent when there is none)."""
    envelope = adapt({"namespace": namespace, "topic": topic})

    def field(fieldpath: Sequence[str]) -> tuple[str, bool]:
        if fieldpath and fieldpath[0] == "event":
            return event.field(fieldpath[1:]) if event is not None else ("", False)
        return envelope.field(fieldpath)

    return AdaptorFunc(field)
