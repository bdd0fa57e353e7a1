"""Go regular expressions (``regexp``, RE2 syntax) matched by Google's RE2.

containerd compiles the value of a ``~=`` filter selector with Go's
``regexp``: RE2 syntax, Perl flags, matching in time linear in the text.
Here the matching is done by the C++ RE2 engine (``google-re2``), which
implements the same language with the same meaning (``$`` is the end of the
text, ``\\d``/``\\s``/``\\w``/``\\b`` are ASCII, ``.`` excludes newline, POSIX
and Unicode classes, ``(?imsU)`` flags, simple case folding, ``\\Q...\\E``,
``\\x{...}``) — but not exactly the same set of patterns, so a pattern is
first checked against Go 1.19's grammar (the Go that builds containerd
1.6.20; ``regexp/syntax`` with Perl flags), and only then handed to RE2
unchanged:

* what Go rejects raises :class:`RegexpError` with Go's message, including
  what RE2 would take: ``\\C``, ``(?<name>re)``, capture names that are not
  ASCII word characters, Unicode classes Go 1.19 does not know;
* what Go takes but this engine cannot run with Go's meaning raises
  :class:`RegexpUnsupported`, an InvalidArgument: RE2 refusing the pattern
  (its compiled program is limited to :data:`MAX_MEM` bytes, where Go allows
  about 3.3 million instructions), or a pattern longer than
  :data:`MAX_PATTERN` bytes or expanding past :data:`MAX_SIZE` nodes (both
  bound the time compiling can take: RE2 compiles holding the GIL).

Text is matched as Go's ``MatchString`` sees a string: by runes, each byte
that is not part of valid UTF-8 reading as U+FFFD. A Python string carries
such bytes as lone surrogates (the ``surrogateescape`` convention api.filters
uses); they are turned into U+FFFD before RE2 sees them, since RE2 would match
nothing at all there.

Known gap: Unicode classes and case folding follow RE2's Unicode tables
(newer than Go 1.19's Unicode 13.0), so they differ for code points assigned
since.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

import re2 as _engine

from api.errdefs import InvalidArgument

__all__ = ["MAX_MEM", "MAX_PATTERN", "MAX_SIZE", "Regexp", "RegexpError", "RegexpUnsupported"]
__all__ += ["compile", "validate"]

MAX_MEM = 2 << 20
"""RE2's memory budget per pattern (program and DFA caches); the library's default is 8 MiB.
Compiling time grows with it: about 8 ms to reach (or exceed) this budget."""
MAX_PATTERN = 64 << 10
"""Longest pattern accepted, in UTF-8 bytes."""
MAX_SIZE = 200_000
"""Most nodes a pattern may expand to (repetitions counted out), checked before RE2 sees it."""

_MAX_RUNE = 0x10FFFF
_MAX_REPEAT = 1000
# Go's maxHeight bounds the height of its parse tree. Only capturing groups
# are counted here (non-capturing ones add no node); concatenations and
# repetitions also add height in Go, so patterns that are nested 1000 deep
# through those are taken here and left to RE2.
_MAX_DEPTH = 1000


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


_PERL_CLASSES = frozenset("dswDSW")
_POSIX_CLASSES = _names(
    "alnum alpha ascii blank cntrl digit graph lower print punct space upper word xdigit"
)
# Go 1.19's unicode.Categories and unicode.Scripts (Unicode 13.0), plus "Any".
_UNICODE_CLASSES = _names(
    "C Cc Cf Co Cs L Ll Lm Lo Lt Lu M Mc Me Mn N Nd Nl No P Pc Pd Pe Pf Pi Po Ps S Sc Sk Sm So"
    " Z Zl Zp Zs Any"
    " Adlam Ahom Anatolian_Hieroglyphs Arabic Armenian Avestan Balinese Bamum Bassa_Vah Batak"
    " Bengali Bhaiksuki Bopomofo Brahmi Braille Buginese Buhid Canadian_Aboriginal Carian"
    " Caucasian_Albanian Chakma Cham Cherokee Chorasmian Common Coptic Cuneiform Cypriot"
    " Cyrillic Deseret Devanagari Dives_Akuru Dogra Duployan Egyptian_Hieroglyphs Elbasan"
    " Elymaic Ethiopic Georgian Glagolitic Gothic Grantha Greek Gujarati Gunjala_Gondi Gurmukhi"
    " Han Hangul Hanifi_Rohingya Hanunoo Hatran Hebrew Hiragana Imperial_Aramaic Inherited"
    " Inscriptional_Pahlavi Inscriptional_Parthian Javanese Kaithi Kannada Katakana Kayah_Li"
    " Kharoshthi Khitan_Small_Script Khmer Khojki Khudawadi Lao Latin Lepcha Limbu Linear_A"
    " Linear_B Lisu Lycian Lydian Mahajani Makasar Malayalam Mandaic Manichaean Marchen"
    " Masaram_Gondi Medefaidrin Meetei_Mayek Mende_Kikakui Meroitic_Cursive"
    " Meroitic_Hieroglyphs Miao Modi Mongolian Mro Multani Myanmar Nabataean Nandinagari"
    " New_Tai_Lue Newa Nko Nushu Nyiakeng_Puachue_Hmong Ogham Ol_Chiki Old_Hungarian Old_Italic"
    " Old_North_Arabian Old_Permic Old_Persian Old_Sogdian Old_South_Arabian Old_Turkic Oriya"
    " Osage Osmanya Pahawh_Hmong Palmyrene Pau_Cin_Hau Phags_Pa Phoenician Psalter_Pahlavi"
    " Rejang Runic Samaritan Saurashtra Sharada Shavian Siddham SignWriting Sinhala Sogdian"
    " Sora_Sompeng Soyombo Sundanese Syloti_Nagri Syriac Tagalog Tagbanwa Tai_Le Tai_Tham"
    " Tai_Viet Takri Tamil Tangut Telugu Thaana Thai Tibetan Tifinagh Tirhuta Ugaritic Vai"
    " Wancho Warang_Citi Yezidi Yi Zanabazar_Square"
)
_HEX = frozenset("0123456789abcdefABCDEF")
_OCTAL = frozenset("01234567")
_SIMPLE_ESCAPES = {"a": 7, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11}
_REPEAT = re.compile(r"\{(0|[1-9][0-9]*)(?:(,)([0-9]*))?\}")
_SURROGATES = re.compile("[\ud800-\udfff]")
_FOREIGN_SURROGATES = re.compile("[\ud800-\udc7f\udd00-\udfff]")  # not surrogateescape's


class RegexpError(ValueError):
    """Go's ``regexp`` would reject the pattern (``code`` is Go's ErrorCode text)."""

    def __init__(self, code: str, expr: str) -> None:
        super().__init__(f"error parsing regexp: {code}: `{expr}`")
        self.code = code
        self.expr = expr


class RegexpUnsupported(InvalidArgument):
    """Go would take the pattern but it cannot be matched here with Go's meaning."""


@dataclass
class _Level:
    """One group being parsed (the whole pattern is the outermost)."""

    flags_at_open: frozenset[str]
    captures: int  # capturing groups this one is nested in, itself included
    # Counted repetitions nest multiplicatively (Go's repeatIsValid): the
    # largest product of counts on a path through this group so far.
    weight: int = 0
    size: int = 0  # nodes of the finished alternatives and concatenated atoms


@dataclass
class _Checker:
    """Walks a pattern with Go's grammar; raises what Go raises."""

    src: str
    i: int = 0
    flags: frozenset[str] = frozenset()
    levels: list[_Level] = field(default_factory=list)
    # The operand a following repetition would apply to (False right after
    # "(" or "|" or at the start), and whether it is itself a repetition.
    has_atom: bool = False
    atom_repeated: bool = False
    atom_weight: int = 0
    atom_size: int = 0
    # Go rejects stacked repetition operators such as "a**"; where the
    # previous one started (None: the last item was not a repetition).
    last_repeat: int | None = None
    # What compile needs to know: a \B (see Regexp), a \Q that runs to the end.
    has_nonboundary: bool = False
    open_quote: bool = False

    def error(self, code: str, expr: str | None = None) -> RegexpError:
        return RegexpError(code, self.src if expr is None else expr)

    def flush(self) -> None:
        level = self.levels[-1]
        level.weight = max(level.weight, self.atom_weight)
        level.size += self.atom_size
        self.atom_weight = self.atom_size = 0
        if level.size > MAX_SIZE:
            raise RegexpUnsupported(f"regexp expands to more than {MAX_SIZE} nodes")

    def atom(self, size: int = 1) -> None:
        self.flush()
        self.has_atom = True
        self.atom_repeated = False
        self.atom_weight = 1
        self.atom_size = size

    def run(self) -> int:
        """Check the whole pattern; return its expanded size."""
        src = self.src
        self.levels.append(_Level(self.flags, 0))
        while self.i < len(src):
            ch = src[self.i]
            repeat = None
            if ch == "(":
                self.open_group()
            elif ch == "|":
                self.flush()
                self.has_atom = False
                self.i += 1
            elif ch == ")":
                self.close_group()
            elif ch in "^$.":
                self.atom()
                self.i += 1
            elif ch == "[":
                self.parse_class()
            elif ch in "*+?":
                repeat = self.i
                self.repeat(0, 0, self.i + 1)
            elif ch == "{":
                counted = self.parse_repeat()
                if counted is None:
                    self.atom()  # a literal "{"
                    self.i += 1
                else:
                    lo, hi, end = counted
                    if lo < 0 or lo > _MAX_REPEAT or hi > _MAX_REPEAT or 0 <= hi < lo:
                        raise self.error("invalid repeat count", src[self.i : end])
                    repeat = self.i
                    self.repeat(lo, hi, end)
            elif ch == "\\":
                self.parse_escape_atom()
            else:
                self.atom()
                self.i += 1
            self.last_repeat = repeat
        if len(self.levels) > 1:
            raise self.error("missing closing )")
        self.flush()
        return self.levels[0].size

    def open_group(self) -> None:
        src, i = self.src, self.i
        if not src.startswith("(?", i):
            self.begin_group(self.flags, capture=True)
            self.i += 1
            return
        if len(src) - i > 4 and src[i + 2 : i + 4] == "P<":
            end = src.find(">", i)
            if end < 0:
                raise self.error("invalid named capture", src[i:])
            name = src[i + 4 : end]
            if not name or not all(c == "_" or (c.isascii() and c.isalnum()) for c in name):
                raise self.error("invalid named capture", src[i : end + 1])
            self.begin_group(self.flags, capture=True)
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

    def begin_group(self, flags: frozenset[str], capture: bool = False) -> None:
        self.flush()
        captures = self.levels[-1].captures + capture
        if captures >= _MAX_DEPTH:
            raise self.error("expression nests too deeply")
        self.levels.append(_Level(self.flags, captures))
        self.flags = flags
        self.has_atom = False

    def close_group(self) -> None:
        if len(self.levels) == 1:
            raise self.error("unexpected )")
        self.flush()
        level = self.levels.pop()
        self.flags = level.flags_at_open
        self.has_atom = True
        self.atom_repeated = False
        self.atom_weight = level.weight
        self.atom_size = level.size
        self.i += 1

    def parse_repeat(self) -> tuple[int, int, int] | None:
        """Parse ``{n}``, ``{n,}`` or ``{n,m}`` at ``self.i``; None if it is literal text."""
        m = _REPEAT.match(self.src, self.i)
        if m is None:
            return None
        lo_text, comma, hi_text = m.groups()
        if hi_text and len(hi_text) > 1 and hi_text[0] == "0":
            return None  # Go's parseInt refuses leading zeros
        lo = int(lo_text)
        hi = lo if not comma else (-1 if not hi_text else int(hi_text))
        # Go gives up on numbers >= 1e8 and reports them as too big.
        if lo >= 10**8 or hi >= 10**8:
            lo = -1
        return lo, hi, m.end()

    def repeat(self, lo: int, hi: int, end: int) -> None:
        """Apply ``*``/``+``/``?`` (lo == hi == 0, a count of 1 here) or ``{lo,hi}``."""
        before, counted = self.i, self.src[self.i] == "{"
        if end < len(self.src) and self.src[end] == "?":
            end += 1
        if self.last_repeat is not None:
            raise self.error("invalid nested repetition operator", self.src[self.last_repeat : end])
        if not self.has_atom:
            raise self.error("missing argument to repetition operator", self.src[before:end])
        if counted:
            if hi == 0:
                self.atom_weight = 0  # x{0} never repeats anything
            else:
                self.atom_weight *= max(hi if hi > 0 else lo, 1)
            if (lo >= 2 or hi >= 2) and self.atom_weight > _MAX_REPEAT:
                raise self.error("invalid repeat count", self.src[before:end])
            self.atom_size = self.atom_size * max(hi, lo, 1) + 1
        else:
            self.atom_size += 1
        self.atom_repeated = True
        self.i = end

    # -- escapes ------------------------------------------------------------

    def parse_escape_atom(self) -> None:
        src, i = self.src, self.i
        c = src[i + 1] if i + 1 < len(src) else ""
        if c in ("A", "z", "b", "B") or (c and c in _PERL_CLASSES):
            self.has_nonboundary |= c == "B"
            self.atom()
            self.i = i + 2
        elif c == "Q":
            end = src.find("\\E", i + 2)
            text = src[i + 2 :] if end < 0 else src[i + 2 : end]
            for _ in text:
                self.atom()
            self.open_quote = end < 0
            self.i = len(src) if end < 0 else end + 2
        elif c in ("p", "P"):
            self.i = self.parse_unicode_class(i)
            self.atom()
        else:
            # \C (any byte) is RE2's alone; Go rejects it here.
            self.i = self.parse_escape(i)[1]
            self.atom()

    def parse_escape(self, i: int) -> tuple[int, int]:
        """Decode a single-character escape at ``i``; return (code point, next index)."""
        src = self.src
        if i + 1 >= len(src):
            raise self.error("trailing backslash at end of expression", "")
        c = src[i + 1]
        j = i + 2
        if c.isascii() and not c.isalnum():
            return ord(c), j
        if c in _OCTAL and (c == "0" or (j < len(src) and src[j] in _OCTAL)):
            value = int(c)
            for _ in range(2):
                if j < len(src) and src[j] in _OCTAL:
                    value = value * 8 + int(src[j])
                    j += 1
            return value, j
        if c == "x" and j < len(src):
            if src[j] == "{":
                # Go reads hex digits up to "}", stopping (and quoting up to
                # there) at a non-digit or once the value passes U+10FFFF.
                k, value, digits = j + 1, 0, 0
                while k < len(src):
                    d = src[k]
                    k += 1
                    if d == "}":
                        if digits:
                            return value, k
                        break
                    if d not in _HEX:
                        break
                    value = value * 16 + int(d, 16)
                    if value > _MAX_RUNE:
                        break
                    digits += 1
                raise self.error("invalid escape sequence", src[i:k])
            pair = src[j : j + 2]
            if len(pair) == 2 and all(d in _HEX for d in pair):
                return int(pair, 16), j + 2
            raise self.error("invalid escape sequence", src[i : j + 2])
        if c in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[c], j
        raise self.error("invalid escape sequence", src[i:j])

    def parse_unicode_class(self, i: int) -> int:
        """Check ``\\pN``, ``\\p{Name}``, ``\\P{^Name}`` at ``i``; return the index past it."""
        src = self.src
        if i + 2 >= len(src):
            raise self.error("invalid character class range", src[i:])
        if src[i + 2] != "{":
            name, end = src[i + 2], i + 3
        else:
            close = src.find("}", i)
            if close < 0:
                raise self.error("invalid character class range", src[i:])
            name, end = src[i + 3 : close], close + 1
        if name.removeprefix("^") not in _UNICODE_CLASSES:
            raise self.error("invalid character class range", src[i:end])
        return end

    # -- bracketed classes ----------------------------------------------------

    def parse_class(self) -> None:
        src, start = self.src, self.i
        i = start + 1
        if i < len(src) and src[i] == "^":
            i += 1
        first = True
        while i >= len(src) or src[i] != "]" or first:
            first = False
            if src.startswith("[:", i) and len(src) - i > 2:
                close = src.find(":]", i + 2)
                if close >= 0:
                    if src[i + 2 : close].removeprefix("^") not in _POSIX_CLASSES:
                        raise self.error("invalid character class range", src[i : close + 2])
                    i = close + 2
                    continue
            if src.startswith(("\\p", "\\P"), i):
                i = self.parse_unicode_class(i)
                continue
            if i + 1 < len(src) and src[i] == "\\" and src[i + 1] in _PERL_CLASSES:
                i += 2
                continue
            range_start = i
            lo, i = self.class_char(i, start)
            if i + 1 < len(src) and src[i] == "-" and src[i + 1] != "]":
                hi, i = self.class_char(i + 1, start)
                if hi < lo:
                    raise self.error("invalid character class range", src[range_start:i])
        self.i = i + 1
        self.atom()

    def class_char(self, i: int, start: int) -> tuple[int, int]:
        src = self.src
        if i >= len(src):
            raise self.error("missing closing ]", src[start:])
        if src[i] == "\\":
            return self.parse_escape(i)
        return ord(src[i]), i + 1


def validate(pattern: str) -> None:
    """Check ``pattern`` with Go's grammar and this module's limits, without RE2.

    Raises RegexpError (Go would reject it) or RegexpUnsupported.
    """
    _check(pattern)


def _check(pattern: str) -> _Checker:
    if _SURROGATES.search(pattern):
        raise RegexpError("invalid UTF-8", pattern)
    if len(pattern) > MAX_PATTERN // 4 and len(pattern.encode()) > MAX_PATTERN:
        raise RegexpUnsupported(f"regexp longer than {MAX_PATTERN} bytes")
    checker = _Checker(pattern)
    checker.run()
    return checker


@dataclass(frozen=True, slots=True)
class Regexp:
    """A compiled Go regular expression.

    RE2 searches UTF-8 bytes and may try a match at a position inside a
    multi-byte character, where Go (reading runes) never looks. Only ``\\B``
    can hold there (both neighbours are non-word bytes), so a pattern holding
    it is run anchored behind a rune-wise ``(?s:.*?)`` prefix instead.
    """

    pattern: str
    _compiled: Any = field(repr=False, compare=False)
    _anchored: bool = field(default=False, repr=False, compare=False)

    @property
    def program_size(self) -> int:
        """Instructions in RE2's compiled program: what one matched byte can cost, at worst."""
        return int(self._compiled.programsize)

    def match_string(self, text: str) -> bool:
        """Whether ``text`` contains a match (Go's ``MatchString``).

        Time is linear in ``len(text)`` (times the program size at worst); RE2
        releases the GIL while it matches, so callers may run this in a thread.
        """
        try:
            data = text.encode()
        except UnicodeEncodeError:
            data = _go_text(text)
        if self._anchored:
            return self._compiled.match(data) is not None
        return self._compiled.search(data) is not None


def _go_text(text: str) -> bytes:
    """UTF-8 for a string holding surrogates, as Go would read its bytes.

    ``\\udc80``-``\\udcff`` stand for raw bytes (surrogateescape): put back
    together, they may form valid UTF-8 again; each byte that does not reads
    as U+FFFD, as Go's decoder reads it. Other lone surrogates have no Go
    counterpart and read as U+FFFD too.
    """
    raw = _FOREIGN_SURROGATES.sub("\ufffd", text).encode("utf-8", "surrogateescape")
    return _SURROGATES.sub("\ufffd", raw.decode("utf-8", "surrogateescape")).encode()


def _options() -> Any:
    options = _engine.Options()
    options.max_mem = MAX_MEM
    options.never_capture = True  # only "does it match" is ever asked
    options.log_errors = False
    return options


@functools.lru_cache(maxsize=512)
def compile(pattern: str) -> Regexp:
    """Compile a Go regular expression (cached: filters repeat).

    Raises RegexpError if Go would reject it, RegexpUnsupported if RE2 cannot run it.
    """
    checker = _check(pattern)
    source = pattern
    if checker.has_nonboundary:
        quote_end = "\\E" if checker.open_quote else ""
        source = f"(?s:.*?)(?:{pattern}{quote_end})"
    try:
        compiled = _engine.compile(source.encode(), _options())
    except _engine.error as exc:
        reason = exc.args[0] if exc.args else "refused"
        if isinstance(reason, bytes):
            reason = reason.decode(errors="replace")
        raise RegexpUnsupported(f"RE2 cannot compile the regexp: {reason}") from None
    return Regexp(pattern, compiled, checker.has_nonboundary)
