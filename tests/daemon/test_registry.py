"""The plugin registry: ordering, cycles, skip vs error, required plugins, config decoding."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import pytest

from api import errdefs
from daemon import introspection
from daemon.config import PluginSection
from daemon.registry import (
    InitContext,
    Meta,
    Plugin,
    PluginSet,
    Registration,
    RegistrationError,
    Registry,
    RequiredPluginError,
    SkipPlugin,
    load,
)
from daemon.tomlcodec import ConfigError


def returns(value: object) -> object:
    async def init(ic: InitContext) -> object:
        return value

    return init


def raises(exc: BaseException) -> object:
    async def init(ic: InitContext) -> object:
        raise exc

    return init


def reg(type_: str, id_: str, requires: tuple[str, ...] = (), init: object = None) -> Registration:
    return Registration(type_, id_, init or returns(f"{type_}.{id_}"), requires)  # type: ignore[arg-type]


def context(r: Registration, plugins: PluginSet) -> InitContext:
    return InitContext(r, "/root/" + r.uri, "/state/" + r.uri, "/a.sock", "/a.ttrpc", None, plugins)


def uris(regs: list[Registration]) -> list[str]:
    return [r.uri for r in regs]


def test_requirements_come_first() -> None:
    registry = Registry(
        [
            reg("t.grpc", "svc", ("t.service",)),
            reg("t.service", "content-service", ("t.content",)),
            reg("t.content", "local"),
            reg("t.other", "x"),
        ]
    )
    assert uris(registry.graph()) == [
        "t.content.local",
        "t.service.content-service",
        "t.grpc.svc",
        "t.other.x",
    ]


def test_star_requires_everything_else() -> None:
    registry = Registry([reg("t.a", "last", ("*",)), reg("t.b", "one"), reg("t.c", "two")])
    assert uris(registry.graph()) == ["t.b.one", "t.c.two", "t.a.last"]


def test_same_type_requirement_excludes_itself() -> None:
    registry = Registry([reg("t.a", "x", ("t.a",))])
    assert uris(registry.graph()) == ["t.a.x"]


def test_cycle_is_reported() -> None:
    registry = Registry(
        [reg("t.a", "x", ("t.b",)), reg("t.b", "y", ("t.c",)), reg("t.c", "z", ("t.a",))]
    )
    with pytest.raises(RegistrationError) as info:
        registry.graph()
    assert str(info.value) == "plugin dependency cycle: t.a.x -> t.b.y -> t.c.z -> t.a.x"


def test_disabled_plugins_leave_the_graph() -> None:
    registry = Registry([reg("t.a", "x", ("t.b",)), reg("t.b", "y"), reg("t.b", "z")])
    assert uris(registry.graph(["t.b.y"])) == ["t.b.z", "t.a.x"]
    # disabling breaks a would-be cycle too
    cyclic = Registry([reg("t.a", "x", ("t.b",)), reg("t.b", "y", ("t.a",))])
    assert uris(cyclic.graph(["t.b.y"])) == ["t.a.x"]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (reg("", "x"), "no type"),
        (reg("t.a", ""), "no id"),
        (reg("t.a", "dup"), "already registered"),
        (reg("t.b", "x", ("*", "t.a")), "'*' must stand alone"),
    ],
)
def test_bad_registrations(bad: Registration, message: str) -> None:
    registry = Registry([reg("t.a", "dup")])
    with pytest.raises(RegistrationError, match=message):
        registry.register(bad)


async def test_skip_and_error_are_kept_and_loading_goes_on() -> None:
    registry = Registry(
        [
            reg("t.a", "ok"),
            reg("t.a", "skipped", init=raises(SkipPlugin("no overlay here"))),
            reg("t.a", "broken", init=raises(errdefs.NotFound("missing thing"))),
            reg("t.a", "crashed", init=raises(RuntimeError("boom"))),
            reg("t.b", "after", ("t.a",)),
        ]
    )
    plugins = await load(registry.graph(), context)
    by_id = plugins.by_type("t.a")
    assert by_id["ok"].error is None and by_id["ok"].instance == "t.a.ok"
    assert by_id["skipped"].skipped
    assert str(by_id["skipped"].error) == "no overlay here: skip plugin"
    assert not by_id["broken"].skipped
    assert plugins.get("t.b") == "t.b.after"
    # the first plugin of a type that initialised
    assert plugins.get("t.a") == "t.a.ok"
    with pytest.raises(errdefs.NotFound):
        plugins.get("t.none")
    with pytest.raises(errdefs.NotFound, match="missing thing"):
        plugins.get_by_id("t.a", "broken")

    protos = {p.id: p for p in (introspection.to_proto(x) for x in plugins.all())}
    assert not protos["ok"].HasField("init_err")
    # ctr decides "skip" by this text; untyped errors are UNKNOWN, typed keep their code
    assert protos["skipped"].init_err.code == grpc.StatusCode.UNKNOWN.value[0]
    assert "skip plugin" in protos["skipped"].init_err.message
    assert protos["broken"].init_err.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert protos["broken"].init_err.message == "missing thing: not found"
    assert protos["crashed"].init_err.message == "boom"
    assert protos["after"].requires == ["t.a"]


async def test_required_plugin_failing_stops_the_load() -> None:
    registry = Registry([reg("t.a", "x", init=raises(RuntimeError("nope")))])
    with pytest.raises(RequiredPluginError, match=r"load required plugin t\.a\.x: nope"):
        await load(registry.graph(), context, required=["t.a.x"])
    skipping = Registry([reg("t.a", "x", init=raises(SkipPlugin()))])
    with pytest.raises(RequiredPluginError, match="skip plugin"):
        await load(skipping.graph(), context, required=["t.a.x"])


async def test_required_plugin_missing_or_disabled() -> None:
    registry = Registry([reg("t.a", "x")])
    with pytest.raises(RequiredPluginError, match=r"required plugin \['t.a.nope'\] not included"):
        await load(registry.graph(), context, required=["t.a.nope"])
    with pytest.raises(RequiredPluginError, match="not included"):
        await load(registry.graph(["t.a.x"]), context, required=["t.a.x"])
    assert (await load(registry.graph(), context, required=["t.a.x"])).get("t.a") == "t.a.x"


@dataclass(frozen=True)
class Knobs:
    size: int = 1
    name: str = "d"


async def test_config_sections_decode_into_the_plugins_dataclass() -> None:
    seen: list[Knobs] = []

    async def init(ic: InitContext) -> object:
        seen.append(ic.config)
        return None

    r = Registration("t.a", "x", init, config=Knobs)
    section = PluginSection({"size": 5}, "/etc/x.toml")
    assert section.decode(Knobs, r.uri) == Knobs(5, "d")
    with pytest.raises(ConfigError) as info:
        PluginSection({"size": "big"}, "/etc/x.toml").decode(Knobs, r.uri)
    assert str(info.value) == '/etc/x.toml: plugins."t.a.x".size: expected an integer, got string'

    def ctx(reg_: Registration, plugins: PluginSet) -> InitContext:
        c = context(reg_, plugins)
        c.config = section.decode(Knobs, reg_.uri)
        return c

    await load(Registry([r]).graph(), ctx)
    assert seen == [Knobs(5, "d")]


def test_plugin_get_raises_its_error() -> None:
    p = Plugin(reg("t.a", "x"), meta=Meta(), error=errdefs.Unavailable("x"))
    with pytest.raises(errdefs.Unavailable):
        p.get()
