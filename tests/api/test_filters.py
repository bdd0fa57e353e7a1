"""containerd's filter syntax (api.filters).

Every expected result and error message in the tables below was checked
against containerd v1.6.20's own ``filters`` package (built from its tree and
fed the same inputs); the hypothesis properties then cover what the tables
cannot enumerate.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from api import filters
from api.errdefs import InvalidArgument
from api.filters import (
    ALWAYS,
    Adaptor,
    AdaptorFunc,
    FilterSyntaxError,
    adapt,
    adapt_container,
    adapt_content_info,
    adapt_content_status,
    adapt_envelope,
    adapt_image,
    adapt_labels,
    adapt_lease,
    adapt_plugin,
    adapt_snapshot,
    adapt_task,
    parse,
    parse_all,
    quote,
)

# -- containerd's corpus (filters/filter_test.go) ------------------------------


@dataclass(frozen=True)
class Entry:
    name: str
    other: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)

    def adaptor(self) -> Adaptor:
        def get(fieldpath: Sequence[str]) -> tuple[str, bool]:
            match fieldpath[0]:
                case "name":
                    return self.name, bool(self.name)
                case "other":
                    return self.other, bool(self.other)
                case "labels":
                    key = ".".join(fieldpath[1:])
                    return self.labels.get(key, ""), key in self.labels
            return "", False

        return AdaptorFunc(get)


CORPUS = [
    Entry("foo", labels={"foo": "true"}),
    Entry("bar"),
    Entry("foo", labels={"foo": "present", "more complex label": "present"}),
    Entry("bar", labels={"bar": "true"}),
    Entry("fooer", labels={'more complex label with \\ and "': "present"}),
    Entry("fooer", labels={'more complex label with \\ and ".post': "present"}),
    Entry("baz", other="too complex, yo"),
    Entry("bazo", other="abc"),
    Entry("compound", labels={"foo": "omg_asdf.asdf-qwer"}),
]


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("", list(range(9))),
        ("name", list(range(9))),
        ("labels.foo", [0, 2, 8]),
        ("labels.foo,name", [0, 2, 8]),
        ("labels.foo==true", [0]),
        ("labels.foo==omg_asdf.asdf-qwer", [8]),
        ("name==bar", [1, 3]),
        ("name!=bar", [0, 2, 4, 5, 6, 7, 8]),
        ("name==bar,labels.bar", [3]),
        ('other=="too complex, yo"', [6]),
        ("other~=[abc]+,name!=foo", [6, 7]),
        ("other~=/[abc]+/,name!=foo", [6, 7]),
        ("other~=/[abc]{1,2}/,name!=foo", [6, 7]),
        ('other~=/[abc]{0,1}"\\//,name!=foo', []),
        ("name==bar,labels.bar==true", [3]),
        ("name==bar,labels.bar==wrong", []),
        ('name==foo,labels."more complex label"', [2]),
        ('labels."more complex label with \\\\ and \\""==present', [4]),
        ('labels."more complex label with \\\\ and \\"".post==present', [5]),
    ],
)
def test_containerd_corpus(expr: str, expected: list[int]) -> None:
    f = parse(expr)
    assert [i for i, entry in enumerate(CORPUS) if f.match(entry.adaptor())] == expected


# -- syntax errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("name==foo,", "[name==foo,]: expected field or quoted"),
        ("labels.", "[labels.]: expected field or quoted"),
        ("image~=,id?=?fbaq", "[image~= >|,|< id?=?fbaq]: expected value or quoted"),
        ("labels.ns/key==value", "[labels.ns >|/|< key==value]: quoted literal not terminated"),
        ("labels.key==/value", "[labels.key== >|/|< value]: quoted literal not terminated"),
        (
            "labels.|foo|==omg_asdf.asdf-qwer",
            "[labels. >|||< foo|==omg_asdf.asdf-qwer]: invalid quote encountered",
        ),
        (
            'labels.?"x \\\\ \\"".post==present',
            '[labels. >|?|< "x \\\\ \\"".post==present]: expected field or quoted',
        ),
        ("name=foo", '[name >|=|< foo]: unsupported operator "="'),
        ("name===foo", '[name >|=|< ==foo]: unsupported operator "==="'),
        ("name==!=foo", '[name >|=|< =!=foo]: unsupported operator "==!="'),
        ("name!foo", '[name >|!|< foo]: unsupported operator "!"'),
        ("name~foo", '[name >|~|< foo]: unsupported operator "~"'),
        ("name==", "[name==]: expected value or quoted"),
        ("labels.foo!=", "[labels.foo!=]: expected value or quoted"),
        ("name==,", "[name== >|,|< ]: expected value or quoted"),
        ("name==.foo", "[name== >|.|< foo]: expected value or quoted"),
        # A value ends at whitespace, and nothing may follow it but a comma.
        ("name==foo bar", "[name==foo >| |< bar]: unexpected input:  "),
        ("name==foo ", "[name==foo >| |< ]: unexpected input:  "),
        ("name ==foo ,labels", "[name ==foo >| |< ,labels]: unexpected input:  "),
        ('name=="foo"bar', '[name=="foo" >|b|< ar]: unexpected input: b'),
        ("labels.a b", '[labels.a  >|b|< ]: expected an operator ("=="|"!="|"~=")'),
        ("name , other", '[name  >|,|<  other]: expected an operator ("=="|"!="|"~=")'),
        ('name == "foo" ,x', '[name == "foo" >| |< ,x]: unexpected input:  '),
        (",name", "[ >|,|< name]: expected field or quoted"),
        (".name", "[ >|.|< name]: expected field or quoted"),
        ("name..foo", "[name. >|.|< foo]: expected field or quoted"),
        ("name,,foo", "[name, >|,|< foo]: expected field or quoted"),
        # Single quotes are not quotes to the scanner.
        ("'name'==foo", "[ >|'|< name'==foo]: expected field or quoted"),
        # /.../ and |...| quote only regular expressions.
        ("name==/foo/", "[name== >|/|< foo/]: invalid quote encountered"),
        ("name==|foo|", "[name== >|||< foo|]: invalid quote encountered"),
        ("/name/==foo", "[ >|/|< name/==foo]: invalid quote encountered"),
        ("name~=/foo", "[name~= >|/|< foo]: quoted literal not terminated"),
        ('"name', '[ >|"|< name]: quoted literal not terminated'),
        ('name=="foo', '[name== >|"|< foo]: quoted literal not terminated'),
        ('name=="a\nb"', '[name== >|"|< a\nb"]: quoted literal not terminated'),
        ('name=="foo\\qbar"', '[name== >|"|< foo\\qbar"]: illegal escape sequence'),
        ('name=="\\\'"', '[name== >|"|< \\\'"]: illegal escape sequence'),
        ("name~=/\\'/", "[name~= >|/|< \\'/]: illegal escape sequence"),
        ('name=="\\x4"', '[name== >|"|< \\x4"]: illegal numeric escape sequence'),
        ('name=="\\u12"', '[name== >|"|< \\u12"]: illegal numeric escape sequence'),
        ('name=="\\400"', '[name== >|"|< \\400"]: unquoting failed: quote syntax error'),
        (
            'name=="\\U00110000"',
            '[name== >|"|< \\U00110000"]: unquoting failed: quote syntax error',
        ),
        ("name==f\x00", "[name==f >|\x00|< ]: unexpected input: \ufffd"),
        ("name\x00", "[name >|\x00|< ]: unexpected null"),
        ("\x00", "[ >|\x00|< ]: unexpected null"),
        # Go marks the first byte of U+FFFD; we mark the whole character.
        ("labels.\ufffd", "[labels. >|\ufffd|< ]: rune error"),
        ('name=="a\ufffd"', '[name== >|"|< a\ufffd"]: rune error'),
        (" ", "[ ]: expected field or quoted"),
    ],
)
def test_syntax_errors(expr: str, message: str) -> None:
    with pytest.raises(FilterSyntaxError) as info:
        parse(expr)
    err = info.value
    assert isinstance(err, InvalidArgument)
    assert err.message == f"filters: parse error: {message}"
    # On the wire this reads exactly as containerd's ParseAll error.
    assert str(err) == f"filters: parse error: {message}: invalid argument"
    assert err.expr == expr
    assert message.endswith(err.reason)


def test_error_position() -> None:
    with pytest.raises(FilterSyntaxError) as info:
        parse("labels.foo==bar,name=x")
    assert info.value.pos == len("labels.foo==bar,name")
    assert info.value.reason == 'unsupported operator "="'


def test_parse_all_reports_the_failing_string() -> None:
    with pytest.raises(FilterSyntaxError) as info:
        parse_all("name==foo", "name==")
    assert info.value.expr == "name=="


def test_lone_surrogate_is_a_rune_error() -> None:
    with pytest.raises(FilterSyntaxError, match="rune error"):
        parse("name==\udc80")


# -- grammar -------------------------------------------------------------------


def fields(**values: str) -> Adaptor:
    """An adaptor over dotted field paths: fields(**{"a.b": "x"}) serves a.b."""
    return AdaptorFunc(
        lambda fp: (values[".".join(fp)], True) if ".".join(fp) in values else ("", False)
    )


@pytest.mark.parametrize(
    ("expr", "values", "expected"),
    [
        # Whitespace may precede any token, but may not follow a value.
        ("name == foo", {"name": "foo"}, True),
        ("\tname\t==\tfoo", {"name": "foo"}, True),
        ('name == "foo", labels', {"name": "foo", "labels": ""}, True),
        ("name,  other", {"name": "x", "other": "y"}, True),
        # Values run to a comma or whitespace and may contain =, ., /, quotes...
        ("name==a=b", {"name": "a=b"}, True),
        ("name==a/b", {"name": "a/b"}, True),
        ('name==foo"bar"', {"name": 'foo"bar"'}, True),
        ("name=='foo'", {"name": "'foo'"}, True),
        ("name=='foo", {"name": "'foo"}, True),
        ("name==-1", {"name": "-1"}, True),
        ("name==über", {"name": "über"}, True),
        ("name==\x01x", {"name": "\x01x"}, True),
        ("name==\x1cx", {"name": "\x1cx"}, True),  # U+001C is not whitespace to Go
        # Fields are [A-Za-z0-9_]+ (the grammar's leading-letter rule is not
        # enforced) or double-quoted.
        ("9_x==1", {"9_x": "1"}, True),
        ('"a b".c==1', {"a b.c": "1"}, True),
        ('labels."a\\x00b"', {"labels.a\x00b": ""}, True),
        # Go escapes in quoted strings; \x and octal escapes are bytes.
        ('name=="\\x66\\157o"', {"name": "foo"}, True),
        ('name=="\\u00e9\\U0001F600"', {"name": "é😀"}, True),
        ('name=="\\303\\251"', {"name": "é"}, True),
        ('name=="\\a\\b\\f\\n\\r\\t\\v\\\\\\""', {"name": '\a\b\f\n\r\t\v\\"'}, True),
        ('name=="\\xff"', {"name": "ÿ"}, False),  # one byte 0xff, not U+00FF
        ('name=="\\uD800"', {"name": "\ufffd"}, True),
        ('name==""', {"name": ""}, True),
        ('name==""', {}, False),
        # Alternative quotes after ~=, escaping their own delimiter.
        ("name~=|a\\|b|", {"name": "a|b"}, True),
        ("name~=/a\\/b/", {"name": "a/b"}, True),
        ('name~="^a b$"', {"name": "a b"}, True),
    ],
)
def test_grammar(expr: str, values: dict[str, str], expected: bool) -> None:
    assert parse(expr).match(fields(**values)) is expected


@pytest.mark.parametrize(
    ("expr", "values", "expected"),
    [
        # == needs the field present; != and ~= read an absent field as "".
        ("f==x", {}, False),
        ("f==x", {"f": "x"}, True),
        ("f!=x", {}, True),
        ("f!=x", {"f": "x"}, False),
        ("f!=x", {"f": "y"}, True),
        ('f!=""', {}, False),
        ('f!=""', {"f": ""}, False),
        ("f~=/.*/", {}, True),
        ("f~=^$", {}, True),
        ("f~=x", {}, False),
        ("f", {}, False),
        ("f", {"f": ""}, True),
    ],
)
def test_absent_field_semantics(expr: str, values: dict[str, str], expected: bool) -> None:
    assert parse(expr).match(fields(**values)) is expected


def test_not_equal_matches_missing_label() -> None:
    # containerd: `labels.foo!=bar` also selects objects without the label.
    f = parse("labels.foo!=bar")
    assert f.match(adapt_lease("l1"))
    assert f.match(adapt_lease("l1", {"foo": "baz"}))
    assert not f.match(adapt_lease("l1", {"foo": "bar"}))


def test_empty_filters_match_everything() -> None:
    assert parse("") is ALWAYS
    assert parse_all() is ALWAYS
    assert parse_all("").match(fields())
    # An empty string among others makes the whole OR true.
    assert parse_all("name==nope", "").match(fields(name="x"))


def test_invalid_regexp_parses_but_never_matches(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="api.filters"):
        f = parse("name~=(")
    assert "error compiling regexp" in caplog.text
    assert not f.match(fields(name="("))
    assert not f.match(fields())


def test_selector_built_directly() -> None:
    sel = filters.Selector(("labels", "k"), filters.Operator.MATCHES, "^v+$")
    assert sel.match(adapt_lease("l", {"k": "vv"}))
    assert not sel.match(adapt_lease("l", {"k": "vw"}))
    assert parse("labels.k~=^v+$") == filters.AllOf((sel,))


def test_regexp_is_searched_with_go_semantics() -> None:
    assert parse("name~=oo").match(fields(name="foo"))
    assert not parse("name~=^foo$").match(fields(name="foo\n"))
    assert parse("name~=/[[:upper:]]/").match(fields(name="aB"))
    assert not parse("name~=\\d").match(fields(name="٣"))


# -- quote ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("", '""'),
        ("plain", '"plain"'),
        ('a"b\\c', '"a\\"b\\\\c"'),
        ("tab\there\n", '"tab\\x09here\\x0a"'),
        ("é😀", '"é😀"'),
        ("\ufffd\u2028\x00", '"\\ufffd\\u2028\\x00"'),
    ],
)
def test_quote(value: str, quoted: str) -> None:
    assert quote(value) == quoted


def test_quote_rejects_surrogates() -> None:
    with pytest.raises(ValueError, match="surrogate"):
        quote("a\udc80")


# -- adaptors ------------------------------------------------------------------


def matches(expr: str, adaptor: Adaptor) -> bool:
    return parse(expr).match(adaptor)


def test_adapt_image() -> None:
    image = adapt_image(
        "docker.io/library/alpine:3",
        target_digest="sha256:abc",
        target_media_type="application/vnd.oci.image.index.v1+json",
        labels={"a.b": "1"},
        annotations={"org.opencontainers.image.ref.name": "3"},
    )
    assert matches("name==docker.io/library/alpine:3", image)
    assert matches("target.digest==sha256:abc", image)
    assert matches("target.mediatype~=index", image)
    assert matches('labels.a.b==1,labels."a.b"==1', image)
    assert matches('annotations."org.opencontainers.image.ref.name"==3', image)
    assert not matches("target", image)
    assert not matches("target.size", image)
    # containerd looks only at the components it knows and ignores the rest.
    assert matches("target.digest.extra==sha256:abc", image)
    assert matches("name.extra", image)
    bare = adapt_image("x")
    assert not matches("target.digest", bare)
    assert not matches("labels.a", bare)


def test_adapt_container() -> None:
    c = adapt_container("c1", image="alpine", runtime_name="io.containerd.runc.v2")
    assert matches("id==c1,image==alpine,runtime.name==io.containerd.runc.v2", c)
    assert not matches("runtime", c)
    assert not matches("runtime.options", c)
    assert not matches("image", adapt_container("c2"))


def test_adapt_content() -> None:
    info = adapt_content_info("sha256:abc", {"containerd.io/gc.root": "x"})
    assert matches("digest==sha256:abc", info)
    assert matches('labels."containerd.io/gc.root"', info)
    # containerd reserves size but never reports it present.
    assert not matches("size", info)
    assert matches("digest", adapt_content_info(""))
    assert matches("ref", adapt_content_status(""))
    assert matches("ref==r1", adapt_content_status("r1"))


class Kind(enum.Enum):
    UNKNOWN = 0
    VIEW = 1
    ACTIVE = 2
    COMMITTED = 3


def test_adapt_snapshot() -> None:
    snap = adapt_snapshot(Kind.COMMITTED, "sha256:layer", labels={"k": "v"})
    assert matches("kind==committed,name==sha256:layer,labels.k==v", snap)
    # name and parent are always present, even when empty.
    assert matches('parent,parent==""', snap)
    assert matches("kind==active", adapt_snapshot("active", "a"))
    assert not matches("kind", adapt_snapshot(Kind.UNKNOWN, "u"))


def test_adapt_lease_plugin_task() -> None:
    assert matches("id==l,labels.x==y", adapt_lease("l", {"x": "y"}))
    assert matches(
        "type==io.containerd.snapshotter.v1,id==overlayfs",
        adapt_plugin("io.containerd.snapshotter.v1", "overlayfs"),
    )
    assert not matches("platforms", adapt_plugin("t", "i"))
    assert matches('id=="",namespace==default', adapt_task("", "default"))
    assert not matches("runtime", adapt_task("t", "default"))


def test_adapt_envelope() -> None:
    event = adapt({"id": "c1", "runtime": {"name": "runc"}})
    env = adapt_envelope("default", "/containers/create", event)
    assert matches('topic=="/containers/create",namespace==default', env)
    assert matches("event.id==c1,event.runtime.name==runc", env)
    assert not matches("event", env)
    assert not matches("event.id", adapt_envelope("default", "/x"))
    assert not matches("namespace", adapt_envelope("", "/x"))


def test_adapt_labels() -> None:
    assert adapt_labels({"a.b": "1"}, ["a", "b"]) == ("1", True)
    assert adapt_labels({"": "empty key"}, []) == ("empty key", True)
    assert adapt_labels({}, ["a"]) == ("", False)
    assert adapt_labels(None, ["a"]) == ("", False)


def test_adapt_leaves() -> None:
    a = adapt({"s": "", "t": ("", True), "u": ("x", False), "n": {"m": "v"}})
    assert a.field(["s"]) == ("", False)
    assert a.field(["t"]) == ("", True)
    assert a.field(["u"]) == ("x", False)
    assert a.field(["n", "m"]) == ("v", True)
    assert a.field(["n"]) == ("", False)
    assert a.field(["missing"]) == ("", False)
    assert a.field([]) == ("", False)


# -- properties ----------------------------------------------------------------

# Filters travel as UTF-8, so generated text never holds lone surrogates.
texts = st.text(st.characters(exclude_categories=["Cs"]))
keys = st.text(st.characters(exclude_categories=["Cs"]), min_size=0, max_size=8)
label_maps = st.dictionaries(keys, texts, max_size=5)
field_names = st.from_regex(r"[A-Za-z0-9_]{1,6}", fullmatch=True)


@given(labels=label_maps, key=keys, value=texts)
def test_label_equality_property(labels: dict[str, str], key: str, value: str) -> None:
    adaptor = adapt_lease("l", labels)
    selector = f"labels.{quote(key)}"
    assert parse(f"{selector}=={quote(value)}").match(adaptor) is (labels.get(key) == value)
    assert parse(selector).match(adaptor) is (key in labels)
    # != is the complement of ==, except that an absent label reads as "".
    assert parse(f"{selector}!={quote(value)}").match(adaptor) is (labels.get(key, "") != value)


@given(labels=label_maps.filter(bool), data=st.data())
def test_existing_label_matches_property(labels: dict[str, str], data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(labels)))
    assert parse(f"labels.{quote(key)}=={quote(labels[key])}").match(adapt_lease("l", labels))


@given(value=texts, other=texts)
@example(value="", other="x")
@example(value='a"b\\c\n\x00\ufffd', other="")
def test_quote_round_trip_property(value: str, other: str) -> None:
    assume(value != other)
    f = parse(f"f=={quote(value)}")
    assert f.match(fields(f=value))
    assert not f.match(fields(f=other))
    # Quoted fields round-trip too.
    assert parse(f"{quote(value)}").match(AdaptorFunc(lambda fp: ("", list(fp) == [value])))


@given(value=texts)
def test_quoted_regexp_of_escaped_literal_matches_property(value: str) -> None:
    # Go RE2 \Q...\E quoting of arbitrary text, passed through quote().
    assume("\\E" not in value)
    assert parse(f"f~={quote(chr(92) + 'Q' + value)}").match(fields(f=f"<{value}>"))


Values = st.dictionaries(st.sampled_from(["a", "b", "c"]), st.sampled_from(["x", "y", ""]))
selectors = st.builds(
    lambda name, op, value: f"{name}{op}{value}" if op else name,
    st.sampled_from(["a", "b", "c"]),
    st.sampled_from(["", "==", "!=", "~="]),
    st.sampled_from(["x", "y", '""', "/^x$/", "x|y"]),
).filter(lambda s: not (s.endswith(("/^x$/", "x|y")) and "~=" not in s))


@given(sels=st.lists(selectors, min_size=1, max_size=4), values=Values)
def test_comma_is_and_property(sels: list[str], values: dict[str, str]) -> None:
    adaptor = fields(**values)
    assert parse(",".join(sels)).match(adaptor) is all(parse(s).match(adaptor) for s in sels)


@given(sels=st.lists(selectors, min_size=1, max_size=4), values=Values)
def test_parse_all_is_or_property(sels: list[str], values: dict[str, str]) -> None:
    adaptor = fields(**values)
    assert parse_all(*sels).match(adaptor) is any(parse(s).match(adaptor) for s in sels)


grammar_chars = st.sampled_from(
    [
        *"abz09_.,=!~\"/|'\\ \t\n\x00\ufffdé[](){}*+?^$-xuU",
        "==",
        "!=",
        "~=",
        "\\x4",
        "\\u00e9",
        "\\101",
        "labels.",
        '"a b"',
        "\udc80",
    ]
)


@given(expr=st.one_of(st.text(), st.lists(grammar_chars, max_size=16).map("".join)))
@example(expr="\udc80")
def test_parser_only_raises_invalid_argument_property(expr: str) -> None:
    try:
        f = parse(expr)
    except InvalidArgument as exc:
        assert isinstance(exc, FilterSyntaxError)
        assert 0 <= exc.pos <= len(expr)
        return
    # Whatever parses can be evaluated against any object without raising.
    f.match(fields(a="x", b="", labels="y"))
    f.match(fields())


@given(names=st.lists(field_names, min_size=1, max_size=4), value=texts)
def test_field_paths_property(names: list[str], value: str) -> None:
    path = ".".join(names)
    seen: list[tuple[str, ...]] = []

    def record(fp: Sequence[str]) -> tuple[str, bool]:
        seen.append(tuple(fp))
        return value, True

    assert parse(f"{path}=={quote(value)}").match(AdaptorFunc(record))
    assert seen == [tuple(names)]


def test_module_exports() -> None:
    for name in filters.__all__:
        assert hasattr(filters, name), name
