"""Go (RE2) regular expressions on Google's RE2 (api.re2).

The match and error tables were checked against Go 1.19.8's regexp package
(the Go that builds Debian's containerd 1.6.20), partly through containerd
v1.6.20's filters (``v~=<pattern>`` against a field ``v``).
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api import errdefs, re2
from api.re2 import RegexpError, RegexpUnsupported


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("abc", "xabcx", True),
        ("", "anything", True),
        ("x|", "y", True),
        # $ is the end of the text only; \z likewise.
        ("^abc$", "abc\n", False),
        ("abc$", "abc", True),
        ("a\\z", "a\n", False),
        ("(?m)^abc$", "x\nabc\ny", True),
        # Perl classes and word boundaries are ASCII-only.
        ("\\d", "٣", False),
        ("\\d", "3", True),
        ("\\w", "é", False),
        ("\\s", "\v", False),
        ("\\s", "\xa0", False),
        ("\\bfoo\\b", "éfooé", True),
        ("\\Bfoo", "éfoo", False),
        # A brace that does not form a repeat is literal text.
        ("a{,2}", "a{,2}", True),
        ("a{,2}", "aa", False),
        ("a{2}", "aa", True),
        ("x{01}", "x{01}", True),
        # POSIX classes.
        ("[[:alpha:]]+", "abc", True),
        ("[[:alpha:]]", ":", False),
        ("[[:^digit:]]", "1", False),
        ("[[:a]", "[", True),
        # Flags are scoped to the rest of the enclosing group.
        ("(?i)abc", "ABC", True),
        ("a(?i)bc", "aBC", True),
        ("a(?i)bc", "ABC", False),
        ("(?i:a)b", "AB", False),
        ("(?i-i)A", "a", False),
        ("(?i)k", "\u212a", True),
        ("(?i)[^k]", "\u212a", False),
        ("(?i)[[:^upper:]]", "A", False),
        ("(?U)a+", "aaa", True),
        ("(?)a", "a", True),
        # Unicode general categories.
        ("\\pL", "é", True),
        ("\\p{Lu}", "é", False),
        ("\\PL", "1", True),
        ("\\p{^Ll}", "a", False),
        ("\\pN+", "٣", True),
        # Literal text and numeric escapes.
        ("\\Qa.b\\E", "axb", False),
        ("\\Qa.b\\E", "a.b", True),
        ("\\Qa.b", "a.b", True),
        ("\\x{e9}", "é", True),
        ("\\x41", "A", True),
        ("\\101", "A", True),
        ("\\_", "_", True),
        # Names, repetition of assertions, classes that start with ].
        ("(?P<n>a)", "a", True),
        ("(?P<1>a)", "a", True),
        ("a*?", "a", True),
        ("^*a", "a", True),
        ("a(?i)*", "aa", True),
        ("[]a]", "]", True),
        ("[^]a]", "b", True),
        # . excludes newline unless (?s); negated classes include it.
        (".", "\n", False),
        ("(?s).", "\n", True),
        ("[^a]", "\n", True),
        # Unicode scripts, as Go 1.19 knows them.
        ("\\p{Greek}", "\u03a9", True),
        ("\\p{Greek}", "a", False),
        ("\\p{^Greek}+$", "ab", True),
        # Simple case folding orbits (k K KELVIN SIGN, s S LONG S, sigma).
        ("(?i)s", "\u017f", True),
        ("(?i)\u03c3", "\u03c2", True),
        ("(?i)\u00df", "\u1e9e", True),
        ("(?i)i", "\u0130", False),
        # Go reads runes: \B never holds inside a multi-byte character.
        ("\\B", "k\u00e92", False),
        ("\\B", "k\u00e9\u00e92", True),
        ("x|\\B", "k\u00e92", False),
        ("\\Qa\\B", "a\\B", True),
        # Bytes that are not UTF-8 (surrogateescape) read as U+FFFD, one per byte,
        # and bytes that form UTF-8 again read as that character.
        ("^.$", "\udcff", True),
        ("^\\x{fffd}$", "\udcff", True),
        ("^.{2}$", "\udce2\udc82", True),
        ("^\u00e9$", "\udcc3\udca9", True),
        ("^\\x{fffd}{3}$", "\udced\udca0\udc80", True),
        ("^[^a]$", "\udc80", True),
        ("a.b", "a\udc80b", True),
    ],
)
def test_matches_like_go(pattern: str, value: str, expected: bool) -> None:
    assert re2.compile(pattern).match_string(value) is expected


@pytest.mark.parametrize(
    ("pattern", "code"),
    [
        ("a\\Z", "invalid escape sequence"),
        ("\\1", "invalid escape sequence"),
        ("(a)\\1", "invalid escape sequence"),
        ("\\8", "invalid escape sequence"),
        ("\\q", "invalid escape sequence"),
        ("\\C", "invalid escape sequence"),
        ("[\\b]", "invalid escape sequence"),
        ("\\x{110000}", "invalid escape sequence"),
        ("a\\", "trailing backslash at end of expression"),
        ("a{1001}", "invalid repeat count"),
        ("a{3,2}", "invalid repeat count"),
        ("(a{30}){40}", "invalid repeat count"),
        ("[[:foo:]]", "invalid character class range"),
        ("[z-a]", "invalid character class range"),
        ("\\pX", "invalid character class range"),
        ("a(?=b)", "invalid or unsupported Perl syntax"),
        ("(?<n>a)", "invalid or unsupported Perl syntax"),
        ("(?-)", "invalid or unsupported Perl syntax"),
        ("(?P<>a)", "invalid named capture"),
        ("(?P<n", "invalid named capture"),
        ("a**", "invalid nested repetition operator"),
        ("a*+", "invalid nested repetition operator"),
        ("a{2}{3}", "invalid nested repetition operator"),
        ("(?P<\u00e9>a)", "invalid named capture"),
        ("\\p{Kawi}", "invalid character class range"),
        ("\\p{L&}", "invalid character class range"),
        ("(" * 1000 + ")" * 1000, "expression nests too deeply"),
        ("*a", "missing argument to repetition operator"),
        ("(?i)*", "missing argument to repetition operator"),
        ("a|*", "missing argument to repetition operator"),
        ("(", "missing closing )"),
        (")", "unexpected )"),
        ("[a", "missing closing ]"),
        ("a\udc80", "invalid UTF-8"),
    ],
)
def test_rejects_like_go(pattern: str, code: str) -> None:
    with pytest.raises(RegexpError) as info:
        re2.compile(pattern)
    assert info.value.code == code
    assert str(info.value).startswith(f"error parsing regexp: {code}: `")


@pytest.mark.parametrize(
    ("pattern", "expr"),
    [
        ("a**", "**"),
        ("a*?+", "*?+"),
        ("a{2}{3}", "{2}{3}"),
        ("\\x{110000}", "\\x{110000"),
        ("\\x{}", "\\x{}"),
        ("\\x{1z}", "\\x{1z"),
        ("\\x{12", "\\x{12"),
        ("\\xg1", "\\xg1"),
        ("(a{30}){40}", "{40}"),
    ],
)
def test_error_quotes_what_go_quotes(pattern: str, expr: str) -> None:
    with pytest.raises(RegexpError) as info:
        re2.compile(pattern)
    assert info.value.expr == expr


def test_nesting_limit_counts_capturing_groups() -> None:
    # Go's limit is on its parse tree's height; non-capturing groups add none.
    assert re2.compile("(" * 999 + ")" * 999).match_string("")
    assert re2.compile("(?:" * 1200 + "a" + ")" * 1200).match_string("a")


def test_nested_flag_repeat() -> None:
    # Go reads a*(?i)* as (a*)*.
    assert re2.compile("ba*(?i)*c").match_string("bc")


def test_matching_runs_on_re2() -> None:
    compiled = re2.compile("(a+)+$")
    assert compiled.program_size > 0  # RE2's compiled program, not Python's re
    # Catastrophic for a backtracking engine (2**n paths), linear for RE2.
    assert not compiled.match_string("a" * 100_000 + "!")
    assert compiled.match_string("b" + "a" * 100_000)


@pytest.mark.parametrize(
    "pattern",
    [
        "\\pL{1000}",  # RE2's program would pass its memory budget
        "(?i)\\pL{300}",
        "x{1000}" * 300,  # counted out, too many nodes
        "a" * (re2.MAX_PATTERN + 1),
    ],
)
def test_go_patterns_re2_cannot_run_are_invalid_argument(pattern: str) -> None:
    # Go takes these (up to ~3.3M instructions); here they are refused up front.
    with pytest.raises(RegexpUnsupported) as info:
        re2.compile(pattern)
    assert isinstance(info.value, errdefs.InvalidArgument)


def test_unterminated_quote_with_nonboundary() -> None:
    # The anchored form must not swallow its own closing parenthesis.
    assert re2.compile("\\B\\Q)").match_string("\u00e9)")
    assert not re2.compile("\\B\\Q)").match_string("a)")


def test_compile_is_cached() -> None:
    assert re2.compile("a+b") is re2.compile("a+b")


@given(pattern=st.text(max_size=20))
def test_never_raises_anything_else_property(pattern: str) -> None:
    try:
        compiled = re2.compile(pattern)
    except (RegexpError, RegexpUnsupported):
        return
    compiled.match_string(pattern)
    compiled.match_string("")


# Patterns in the subset where Go and Python agree on plain ASCII text
# without newlines: literals, ., groups, alternation, classes, quantifiers.
_atoms = st.sampled_from(["a", "b", "c", ".", "[ab]", "[^a]", "[a-c]", "(a|b)", "(?:ab)", "x"])
_quantifiers = st.sampled_from(["", "", "*", "+", "?", "{2}", "{1,2}", "*?"])
_simple = st.lists(st.tuples(_atoms, _quantifiers).map("".join), min_size=1, max_size=5).map(
    "".join
)


@given(pattern=_simple, value=st.text(alphabet="abcx", max_size=10))
def test_agrees_with_python_on_common_subset_property(pattern: str, value: str) -> None:
    expected = re.search(pattern, value) is not None
    assert re2.compile(pattern).match_string(value) is expected


@given(value=st.text(st.characters(exclude_categories=["Cs"])).filter(lambda v: "\\E" not in v))
def test_quoted_literal_matches_itself_property(value: str) -> None:
    compiled = re2.compile("^\\Q" + value + "\\E$")
    assert compiled.match_string(value)
    assert not compiled.match_string(value + "!")
