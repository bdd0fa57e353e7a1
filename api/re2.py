"""Go regular expressions (RE2 syntax) evaluated with Python's ``re``.

containerd compiles the value of a ``~=`` filter selector with Go's ``regexp``
package. Python's ``re`` reads most such patterns the same way, but not all:
``$`` also matches before a trailing newline, ``\\d``/``\\w``/``\\s``/``\\b`` are
Unicode-aware, ``{,n}`` is a repeat rather than literal text, ``[[:alpha:]]``
is a nested set, ``\\z``, ``\\pL``, ``\\Q...\\E`` and ``\\x{...}`` are unknown, a
mid-pattern ``(?i)`` is an error, and backreferences and lookarounds — which
RE2 rejects — are accepted.

So the pattern is parsed with Go's grammar (Go 1.19 ``regexp/syntax``, Perl
flags) and re-emitted using only Python constructs whose meaning does not
depend on Python's own flags. Patterns Go rejects raise :class:`RegexpError`.

Known gaps: Unicode *scripts* (``\\p{Greek}``) are not available in Python's
``unicodedata`` and raise :class:`RegexpError`; case folding follows Python's
tables rather than Go's (they differ only for a handful of code points); and
matching runs on Python's backtracking engine, not in linear time.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass, field

__all__ = ["RegexpError", "compile", "translate"]

_MAX_RUNE = 0x10FFFF
_MAX_REPEAT = 1000

Ranges = list[tuple[int, int]]


class RegexpError(ValueError):
    """The pattern is not a valid Go regular expression (or cannot be translated)."""

    def __init__(self, code: str, expr: str) -> None:
        super().__init__(f"error parsing regexp: {code}: `{expr}`")
        self.code = code
        self.expr = expr


# Character groups, as in Go's regexp/syntax perl_groups.go.
def _r(*pairs: tuple[str, str]) -> Ranges:
    return [(ord(lo), ord(hi)) for lo, hi in pairs]


_PERL_GROUPS: dict[str, Ranges] = {
    "d": _r(("0", "9")),
    "s": _r(("\t", "\n"), ("\f", "\r"), (" ", " ")),
    "w": _r(("0", "9"), ("A", "Z"), ("_", "_"), ("a", "z")),
}

_POSIX_GROUPS: dict[str, Ranges] = {
    "alnum": _r(("0", "9"), ("A", "Z"), ("a", "z")),
    "alpha": _r(("A", "Z"), ("a", "z")),
    "ascii": [(0, 0x7F)],
    "blank": _r(("\t", "\t"), (" ", " ")),
    "cntrl": [(0, 0x1F), (0x7F, 0x7F)],
    "digit": _r(("0", "9")),
    "graph": _r(("!", "~")),
    "lower": _r(("a", "z")),
    "print": _r((" ", "~")),
    "punct": _r(("!", "/"), (":", "@"), ("[", "`"), ("{", "~")),
    "space": _r(("\t", "\r"), (" ", " ")),
    "upper": _r(("A", "Z")),
    "word": _r(("0", "9"), ("A", "Z"), ("_", "_"), ("a", "z")),
    "xdigit": _r(("0", "9"), ("A", "F"), ("a", "f")),
}

# Go's unicode.Categories: the two-letter general categories minus Cn, and the
# one-letter unions (where "C" is Cc|Cf|Co|Cs).
_CATEGORIES = frozenset(
    {"Cc", "Cf", "Co", "Cs", "Ll", "Lm", "Lo", "Lt", "Lu", "Mc", "Me", "Mn", "Nd", "Nl", "No"}
    | {"Pc", "Pd", "Pe", "Pf", "Pi", "Po", "Ps", "Sc", "Sk", "Sm", "So", "Zl", "Zp", "Zs"}
)
_CLASS_NAMES = _CATEGORIES | set("CLMNPSZ") | {"Any"}

_WORD = "[0-9A-Za-z_]"


def _clean(ranges: Ranges) -> Ranges:
    out: Ranges = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _negate(ranges: Ranges) -> Ranges:
    out: Ranges = []
    nxt = 0
    for lo, hi in _clean(ranges):
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= _MAX_RUNE:
        out.append((nxt, _MAX_RUNE))
    return out


def _fold_ascii(ranges: Ranges) -> Ranges:
    """Close an ASCII-only group under Go's simple case folding.

    Go folds k/K with KELVIN SIGN and s/S with LONG S; no other ASCII letter
    has a non-ASCII partner.
    """
    out = list(ranges)
    for lo, hi in ranges:
        for cp in range(lo, hi + 1):
            ch = chr(cp)
            if ch.isascii() and ch.isalpha():
                other = ord(ch.swapcase())
                out.append((other, other))
                if ch in "kK":
                    out.append((0x212A, 0x212A))
                elif ch in "sS":
                    out.append((0x17F, 0x17F))
    return _clean(out)


@functools.cache
def _category_table() -> dict[str, Ranges]:
    table: dict[str, Ranges] = {name: [] for name in _CATEGORIES}
    for cp in range(_MAX_RUNE + 1):
        ranges = table.get(unicodedata.category(chr(cp)))
        if ranges is None:
            continue
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1] = (ranges[-1][0], cp)
        else:
            ranges.append((cp, cp))
    for major in "CLMNPSZ":
        table[major] = _clean([r for name in _CATEGORIES if name[0] == major for r in table[name]])
    table["Any"] = [(0, _MAX_RUNE)]
    return table


def _esc(cp: int) -> str:
    ch = chr(cp)
    if ch.isascii() and ch.isalnum():
        return ch
    if cp < 0x100:
        return f"\\x{cp:02x}"
    if cp < 0x10000:
        return f"\\u{cp:04x}"
    return f"\\U{cp:08x}"


def _set_body(ranges: Ranges) -> str:
    return "".join(_esc(lo) if lo == hi else f"{_esc(lo)}-{_esc(hi)}" for lo, hi in ranges)


@dataclass
class _Group:
    flags: frozenset[str]
    start: int  # index into the output where the group's "(?:" sits
    level_weight: int  # the enclosing level's weight, restored on ")"


@dataclass
class _Translator:
    src: str
    i: int = 0
    out: list[str] = field(default_factory=list)
    flags: frozenset[str] = frozenset()
    groups: list[_Group] = field(default_factory=list)
    # The operand a following repetition applies to: where it starts in
    # ``out`` (None: nothing to repeat, e.g. right after "(" or "|").
    atom: int | None = None
    atom_repeated: bool = False
    # Go rejects stacked repetition operators such as "a**".
    last_repeat: bool = False
    # Go limits nested counted repetitions: the product of the counts along
    # any path may not exceed 1000. Weights track that product.
    atom_weight: int = 0
    level_weight: int = 0

    def error(self, code: str, expr: str | None = None) -> RegexpError:
        return RegexpError(code, self.src if expr is None else expr)

    # -- emission -----------------------------------------------------------

    def flush(self) -> None:
        self.level_weight = max(self.level_weight, self.atom_weight)
        self.atom_weight = 0

    def push(self, text: str) -> None:
        self.flush()
        self.atom = len(self.out)
        self.atom_repeated = False
        self.atom_weight = 1
        self.out.append(text)

    def fold(self, text: str) -> str:
        return f"(?i:{text})" if "i" in self.flags else text

    def push_literal(self, cp: int) -> None:
        self.push(self.fold(_esc(cp)))

    def push_class(self, ranges: Ranges, negated: bool) -> None:
        body = _set_body(_clean(ranges))
        if not body:
            self.push("(?s:.)" if negated else "(?!)")
        else:
            self.push(self.fold(f"[{'^' if negated else ''}{body}]"))

    # -- parsing ------------------------------------------------------------

    def run(self) -> str:
        src = self.src
        while self.i < len(src):
            ch = src[self.i]
            repeat = False
            if ch == "(":
                self.open_group()
            elif ch == "|":
                self.flush()
                self.out.append("|")
                self.atom = None
                self.i += 1
            elif ch == ")":
                self.close_group()
            elif ch == "^":
                self.push("(?:\\A|(?<=\\n))" if "m" in self.flags else "(?:\\A)")
                self.i += 1
            elif ch == "$":
                self.push("(?:\\Z|(?=\\n))" if "m" in self.flags else "(?:\\Z)")
                self.i += 1
            elif ch == ".":
                self.push("(?s:.)" if "s" in self.flags else "[^\\n]")
                self.i += 1
            elif ch == "[":
                self.parse_class()
            elif ch in "*+?":
                self.repeat(ch, 0, 0, self.i + 1)
                repeat = True
            elif ch == "{":
                counted = self.parse_repeat()
                if counted is None:
                    self.push_literal(ord("{"))
                    self.i += 1
                else:
                    lo, hi, end = counted
                    if lo < 0 or lo > _MAX_REPEAT or hi > _MAX_REPEAT or 0 <= hi < lo:
                        raise self.error("invalid repeat count", src[self.i : end])
                    self.repeat("{", lo, hi, end)
                    repeat = True
            elif ch == "\\":
                self.parse_escape_atom()
            else:
                self.push_literal(ord(ch))
                self.i += 1
            self.last_repeat = repeat
        if self.groups:
            raise self.error("missing closing )")
        return "".join(self.out)

    def open_group(self) -> None:
        src, i = self.src, self.i
        if not src.startswith("(?", i):
            self.begin_group(self.flags)
            self.i += 1
            return
        if len(src) - i > 4 and src[i + 2 : i + 4] == "P<":
            end = src.find(">", i)
            if end < 0:
                raise self.error("invalid named capture", src[i:])
            name = src[i + 4 : end]
            if not name or not all(c == "_" or (c.isascii() and c.isalnum()) for c in name):
                raise self.error("invalid named capture", src[i : end + 1])
            self.begin_group(self.flags)
            self.i = end + 1
            return
        # Flags, optionally opening a non-capturing group: (?i) (?i-s:...).
        flags = set(self.flags)
        negate = False
        saw_flag = False
        j = i + 2
        while j < len(src):
            c = src[j]
            j += 1
            if c in "imsU":
                # "m" clears Go's OneLine flag; we record multi-line mode.
                (flags.discard if negate else flags.add)(c)
                saw_flag = True
            elif c == "-" and not negate:
                negate = True
                saw_flag = False
            elif c in ":)":
                if negate and not saw_flag:
                    break
                self.i = j
                if c == ":":
                    self.begin_group(frozenset(flags))
                else:
                    self.flags = frozenset(flags)
                return
            else:
                break
        raise self.error("invalid or unsupported Perl syntax", src[i:j])

    def begin_group(self, flags: frozenset[str]) -> None:
        self.flush()
        self.groups.append(_Group(self.flags, len(self.out), self.level_weight))
        self.out.append("(?:")
        self.flags = flags
        self.atom = None
        self.level_weight = 0

    def close_group(self) -> None:
        if not self.groups:
            raise self.error("unexpected )")
        self.flush()
        group = self.groups.pop()
        self.out.append(")")
        self.flags = group.flags
        weight = self.level_weight
        self.level_weight = group.level_weight
        self.atom = group.start
        self.atom_repeated = False
        self.atom_weight = weight
        self.i += 1

    def parse_repeat(self) -> tuple[int, int, int] | None:
        """Parse ``{n}``, ``{n,}`` or ``{n,m}`` at ``self.i``; None if it is literal text."""
        m = re.compile(r"\{(0|[1-9][0-9]*)(?:(,)([0-9]*))?\}").match(self.src, self.i)
        if m is None:
            return None
        lo_text, comma, hi_text = m.groups()
        if hi_text and len(hi_text) > 1 and hi_text[0] == "0":
            return None  # Go's parseInt refuses leading zeros
        lo = int(lo_text)
        if not comma:
            hi = lo
        elif not hi_text:
            hi = -1
        else:
            hi = int(hi_text)
        # Go gives up on numbers >= 1e8 and reports them as too big.
        if lo >= 10**8 or hi >= 10**8:
            lo = -1
        return lo, hi, m.end()

    def repeat(self, op: str, lo: int, hi: int, end: int) -> None:
        before = self.i
        lazy = end < len(self.src) and self.src[end] == "?"
        if lazy:
            end += 1
        if self.last_repeat:
            raise self.error("invalid nested repetition operator", self.src[before:end])
        if self.atom is None:
            raise self.error("missing argument to repetition operator", self.src[before:end])
        if self.atom_repeated:
            # Only reachable as "a*(?i)*", which Go reads as (a*)*.
            self.out[self.atom :] = ["(?:" + "".join(self.out[self.atom :]) + ")"]
        if op == "{":
            quant = f"{{{lo}}}" if lo == hi else f"{{{lo},{'' if hi < 0 else hi}}}"
            if hi == 0:
                self.atom_weight = 0  # x{0} never repeats anything
            else:
                self.atom_weight *= max(hi if hi > 0 else lo, 1)
            if (lo >= 2 or hi >= 2) and self.atom_weight > _MAX_REPEAT:
                raise self.error("invalid repeat count", self.src[before:end])
        else:
            quant = op
        self.out.append(quant + ("?" if lazy else ""))
        self.atom_repeated = True
        self.i = end

    # -- escapes ------------------------------------------------------------

    def parse_escape_atom(self) -> None:
        src, i = self.src, self.i
        c = src[i + 1] if i + 1 < len(src) else ""
        if c == "A":
            self.push("(?:\\A)")
        elif c == "z":
            self.push("(?:\\Z)")
        elif c == "b":
            self.push(f"(?:(?<={_WORD})(?!{_WORD})|(?<!{_WORD})(?={_WORD}))")
        elif c == "B":
            self.push(f"(?:(?<={_WORD})(?={_WORD})|(?<!{_WORD})(?!{_WORD}))")
        elif c == "C":
            raise self.error("invalid escape sequence", src[i : i + 2])
        elif c == "Q":
            end = src.find("\\E", i + 2)
            text = src[i + 2 :] if end < 0 else src[i + 2 : end]
            for ch in text:
                self.push_literal(ord(ch))
            self.i = len(src) if end < 0 else end + 2
            return
        elif c in ("p", "P"):
            ranges, negated, self.i = self.parse_unicode_class(i)
            self.push_class(ranges, negated)
            return
        elif c in ("d", "s", "w", "D", "S", "W"):
            self.push_class(_PERL_GROUPS[c.lower()], c.isupper())
        else:
            cp, self.i = self.parse_escape(i)
            self.push_literal(cp)
            return
        self.i = i + 2

    def parse_escape(self, i: int) -> tuple[int, int]:
        """Decode a single-character escape at ``i``; return (code point, next index)."""
        src = self.src
        if i + 1 >= len(src):
            raise self.error("trailing backslash at end of expression", "")
        c = src[i + 1]
        j = i + 2
        if c.isascii() and not c.isalnum():
            return ord(c), j
        if c in "01234567" and (c == "0" or (j < len(src) and src[j] in "01234567")):
            value = int(c)
            for _ in range(2):
                if j < len(src) and src[j] in "01234567":
                    value = value * 8 + int(src[j])
                    j += 1
            return value, j
        if c == "x" and j < len(src):
            if src[j] == "{":
                end = src.find("}", j)
                digits = src[j + 1 : end] if end >= 0 else ""
                if digits and all(d in "0123456789abcdefABCDEF" for d in digits):
                    value = int(digits, 16)
                    if value <= _MAX_RUNE:
                        return value, end + 1
                raise self.error(
                    "invalid escape sequence", src[i : (end + 1 if end >= 0 else None)]
                )
            digits = src[j : j + 2]
            if len(digits) == 2 and all(d in "0123456789abcdefABCDEF" for d in digits):
                return int(digits, 16), j + 2
            raise self.error("invalid escape sequence", src[i : j + 2])
        simple = {"a": 7, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11}
        if c in simple:
            return simple[c], j
        raise self.error("invalid escape sequence", src[i:j])

    def parse_unicode_class(self, i: int) -> tuple[Ranges, bool, int]:
        """Parse ``\\pN``, ``\\p{Name}``, ``\\P{^Name}``; return (ranges, negated, end)."""
        src = self.src
        negated = src[i + 1] == "P"
        if i + 2 >= len(src):
            raise self.error("invalid character class range", src[i:])
        if src[i + 2] != "{":
            name, end = src[i + 2], i + 3
        else:
            close = src.find("}", i)
            if close < 0:
                raise self.error("invalid character class range", src[i:])
            name, end = src[i + 3 : close], close + 1
        if name.startswith("^"):
            negated = not negated
            name = name[1:]
        ranges = _category_table().get(name) if name in _CLASS_NAMES else None
        if ranges is None:
            # Unknown to Go, or a script, which Python's unicodedata lacks.
            raise self.error("invalid character class range", src[i:end])
        return ranges, negated, end

    # -- bracketed classes ----------------------------------------------------

    def parse_class(self) -> None:
        src, start = self.src, self.i
        i = start + 1
        negated = i < len(src) and src[i] == "^"
        if negated:
            i += 1
        fold = "i" in self.flags
        ranges: Ranges = []
        first = True
        while i >= len(src) or src[i] != "]" or first:
            first = False
            if src.startswith("[:", i) and len(src) - i > 2:
                close = src.find(":]", i + 2)
                if close >= 0:
                    name = src[i + 2 : close]
                    group = _POSIX_GROUPS.get(name.removeprefix("^"))
                    if group is None:
                        raise self.error("invalid character class range", src[i : close + 2])
                    ranges += self.group(group, name.startswith("^"), fold)
                    i = close + 2
                    continue
            if src.startswith(("\\p", "\\P"), i):
                table, neg, i = self.parse_unicode_class(i)
                ranges += _negate(table) if neg else table
                continue
            if i + 1 < len(src) and src[i] == "\\" and src[i + 1] in "dswDSW":
                c = src[i + 1]
                ranges += self.group(_PERL_GROUPS[c.lower()], c.isupper(), fold)
                i += 2
                continue
            range_start = i
            lo, i = self.class_char(i, start)
            hi = lo
            if i + 1 < len(src) and src[i] == "-" and src[i + 1] != "]":
                hi, i = self.class_char(i + 1, start)
                if hi < lo:
                    raise self.error("invalid character class range", src[range_start:i])
            ranges.append((lo, hi))
        self.i = i + 1
        self.push_class(ranges, negated)

    @staticmethod
    def group(group: Ranges, negated: bool, fold: bool) -> Ranges:
        # A negated group inside a folded class is folded before negation (as
        # Go does), so that Python folding the class again adds nothing back.
        if not negated:
            return group
        return _negate(_fold_ascii(group) if fold else group)

    def class_char(self, i: int, start: int) -> tuple[int, int]:
        src = self.src
        if i >= len(src):
            raise self.error("missing closing ]", src[start:])
        if src[i] == "\\":
            return self.parse_escape(i)
        return ord(src[i]), i + 1


def translate(pattern: str) -> str:
    """Return a Python ``re`` pattern that matches what Go's ``regexp`` matches.

    Raises RegexpError if Go would reject the pattern.
    """
    if any("\ud800" <= ch <= "\udfff" for ch in pattern):
        raise RegexpError("invalid UTF-8", pattern)
    return _Translator(pattern).run()


@functools.lru_cache(maxsize=512)
def compile(pattern: str) -> re.Pattern[str]:
    """Compile a Go regular expression; use ``.search`` for Go's ``MatchString``.

    Raises RegexpError if Go would reject the pattern or it cannot be translated.
    """
    translated = translate(pattern)
    try:
        return re.compile(translated)
    except (re.error, RecursionError, OverflowError) as exc:
        raise RegexpError(f"cannot translate ({exc})", pattern) from exc
