"""Our generated descriptors must be wire-identical to containerd 1.7's v1 API.

The expected facts live in ``wire_table.py``, transcribed from containerd's own .proto files
(see its docstring); this module only compares them with what the ``*_pb2`` modules under
``api/`` register in the default descriptor pool.  Descriptors are compared in their
``descriptor_pb2`` form (``CopyToProto``), so types and labels are the
``FieldDescriptorProto`` constants, exactly as the table writes them.
"""

from __future__ import annotations

import functools
import importlib
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor

from tests.api import etcd_wire_table
from tests.api.wire_table import (
    CGROUP_STATS,
    ENUMS,
    EVENTS,
    MESSAGES,
    OPTIONAL_MESSAGES,
    RPCS,
    Field,
    Message,
)

F = descriptor_pb2.FieldDescriptorProto
T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
API_DIR = ROOT / "api"
WELL_KNOWN_PREFIX = "google.protobuf."

POOL = descriptor_pool.Default()
ApiFiles = tuple[FileDescriptor, ...]


# --------------------------------------------------------------------------- loading


@functools.cache
def _load_api_files() -> ApiFiles:
    """Import every generated ``*_pb2`` module under api/ and return their file descriptors.

    The repository root is on sys.path through pytest's ``pythonpath`` setting.
    """
    paths = sorted(API_DIR.rglob("*_pb2.py"))
    if not paths:
        raise LookupError(f"no generated *_pb2.py modules under {API_DIR}")
    return tuple(
        importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts)).DESCRIPTOR
        for path in paths
    )


@pytest.fixture(scope="module")
def api_files() -> ApiFiles:
    try:
        return _load_api_files()
    except LookupError as exc:
        pytest.fail(f"{exc}; run scripts/genproto.py")
    except Exception as exc:  # an import error names the broken module
        pytest.fail(f"importing the generated api/ modules failed: {exc!r}")


# --------------------------------------------------------------------------- lookups and rendering


def _find(lookup: Callable[[str], T], full_name: str) -> T | None:
    try:
        return lookup(full_name)
    except KeyError:
        return None


def _declared_names(
    prefix: str,
    messages: Iterable[descriptor_pb2.DescriptorProto],
    enums: Iterable[descriptor_pb2.EnumDescriptorProto],
) -> Iterator[str]:
    """Full names of the messages and enums in a file or message, nested ones included."""
    for enum in enums:
        yield prefix + enum.name
    for message in messages:
        if message.options.map_entry:
            continue  # described by its map field
        yield prefix + message.name
        yield from _declared_names(
            f"{prefix}{message.name}.", message.nested_type, message.enum_type
        )


def _split_path(path: str) -> tuple[str, str]:
    service, method = path.removeprefix("/").split("/")
    return service, method


def _field_type_name(field: descriptor_pb2.FieldDescriptorProto) -> str:
    """Scalar keyword ("string", "int64", ...) or full message/enum name."""
    if field.type in (F.TYPE_MESSAGE, F.TYPE_ENUM):
        return field.type_name.removeprefix(".")
    return F.Type.Name(field.type).removeprefix("TYPE_").lower()


def _render_fields(full_name: str) -> Message | None:
    """The message's fields in wire_table form, or None if no api/ proto declares it."""
    descriptor = _find(POOL.FindMessageTypeByName, full_name)
    if descriptor is None:
        return None
    proto = descriptor_pb2.DescriptorProto()
    descriptor.CopyToProto(proto)
    map_entries = {
        f".{full_name}.{nested.name}": nested
        for nested in proto.nested_type
        if nested.options.map_entry
    }
    rendered: Message = {}
    for field in proto.field:
        type_name: str | None = None
        if field.type_name in map_entries:
            key, value = sorted(map_entries[field.type_name].field, key=lambda f: f.number)
            type_name = f"map<{_field_type_name(key)}, {_field_type_name(value)}>"
        elif field.type in (F.TYPE_MESSAGE, F.TYPE_ENUM):
            type_name = _field_type_name(field)
        rendered[field.name] = (field.number, field.type, field.label, type_name)
    return rendered


def _show(spec: Field) -> str:
    number, type_, label, type_name = spec
    shown = f"{number}, {F.Type.Name(type_)}, {F.Label.Name(label)}"
    return f"({shown}, {type_name!r})" if type_name else f"({shown})"


def _field_differences(expected: Message, actual: Message) -> list[str]:
    problems: list[str] = []
    for name, spec in expected.items():
        if name not in actual:
            problems.append(f"missing field {name}: containerd declares {_show(spec)}")
        elif actual[name] != spec:
            problems.append(
                f"field {name}: ours is {_show(actual[name])}, containerd declares {_show(spec)}"
            )
    problems.extend(
        f"extra field {name} {_show(spec)}: containerd has no such field"
        for name, spec in actual.items()
        if name not in expected
    )
    return problems


def _check_message(full_name: str, expected: Message) -> None:
    actual = _render_fields(full_name)
    if actual is None:
        pytest.fail(f"message {full_name} is not declared by any api/ proto")
    problems = _field_differences(expected, actual)
    if problems:
        pytest.fail(f"{full_name} differs from containerd 1.7:\n  " + "\n  ".join(problems))


# --------------------------------------------------------------------------- the table itself


def test_table_is_closed_over_its_references() -> None:
    """Every type the table mentions is itself in the table (or a well-known type)."""
    tables = {**MESSAGES, **EVENTS, **OPTIONAL_MESSAGES, **CGROUP_STATS}
    referenced = {name for rpc in RPCS.values() for name in rpc[:2]}
    for message in tables.values():
        for _number, _type, _label, type_name in message.values():
            if type_name is None:
                continue
            if type_name.startswith("map<"):
                referenced.update(part.strip() for part in type_name[4:-1].split(","))
            else:
                referenced.add(type_name)
    scalars = {F.Type.Name(t).removeprefix("TYPE_").lower() for t in F.Type.values()}
    missing = sorted(
        name
        for name in referenced - set(tables) - set(ENUMS) - scalars
        if not name.startswith(WELL_KNOWN_PREFIX)
    )
    assert not missing, f"wire_table references types it does not describe: {missing}"


# --------------------------------------------------------------------------- services


@pytest.mark.parametrize("path", list(RPCS))
def test_rpc_matches_containerd(api_files: ApiFiles, path: str) -> None:
    service_name, method_name = _split_path(path)
    service = _find(POOL.FindServiceByName, service_name)
    if service is None:
        pytest.fail(f"{path}: service {service_name} is not declared by any api/ proto")
    if _find(POOL.FindMethodByName, f"{service_name}.{method_name}") is None:
        pytest.fail(f"{path}: {service_name} has no method {method_name}")

    proto = descriptor_pb2.ServiceDescriptorProto()
    service.CopyToProto(proto)
    (method,) = (m for m in proto.method if m.name == method_name)
    actual = (
        method.input_type.removeprefix("."),
        method.output_type.removeprefix("."),
        method.client_streaming,
        method.server_streaming,
    )
    problems = [
        f"{what}: ours is {ours!r}, containerd declares {theirs!r}"
        for what, ours, theirs in zip(
            ("request type", "response type", "client streaming", "server streaming"),
            actual,
            RPCS[path],
            strict=True,
        )
        if ours != theirs
    ]
    assert not problems, f"{path} differs from containerd 1.7:\n  " + "\n  ".join(problems)


def test_no_services_or_methods_beyond_containerd(api_files: ApiFiles) -> None:
    """Every service and method declared under api/ is one containerd declares."""
    # etcd's services (our metadata store's client) are checked by test_etcd_wire.
    known_services = {_split_path(path)[0] for path in [*RPCS, *etcd_wire_table.RPCS]}
    problems: list[str] = []
    for file in api_files:
        for service in file.services_by_name.values():
            if service.full_name not in known_services:
                problems.append(
                    f"{file.name}: service {service.full_name} is not in the wire table "
                    "(add containerd's definition to tests/api/wire_table.py if it is real)"
                )
                continue
            problems.extend(
                f"{file.name}: method /{service.full_name}/{method.name} "
                "is not declared by containerd 1.7"
                for method in service.methods
                if f"/{service.full_name}/{method.name}" not in RPCS
                and f"/{service.full_name}/{method.name}" not in etcd_wire_table.RPCS
            )
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- messages and enums


@pytest.mark.parametrize("full_name", list(MESSAGES))
def test_message_fields_match_containerd(api_files: ApiFiles, full_name: str) -> None:
    _check_message(full_name, MESSAGES[full_name])


@pytest.mark.parametrize("full_name", list(ENUMS))
def test_enum_values_match_containerd(api_files: ApiFiles, full_name: str) -> None:
    enum = _find(POOL.FindEnumTypeByName, full_name)
    if enum is None:
        pytest.fail(f"enum {full_name} is not declared by any api/ proto")
    proto = descriptor_pb2.EnumDescriptorProto()
    enum.CopyToProto(proto)
    actual = {value.name: value.number for value in proto.value}
    expected = ENUMS[full_name]
    assert actual == expected, (
        f"{full_name} differs from containerd 1.7: ours is {actual}, containerd declares {expected}"
    )


@pytest.mark.parametrize("full_name", list(EVENTS))
def test_event_payload_matches_containerd(api_files: ApiFiles, full_name: str) -> None:
    _check_message(full_name, EVENTS[full_name])


@pytest.mark.parametrize("full_name", list(CGROUP_STATS))
def test_cgroup_stats_match_containerd(api_files: ApiFiles, full_name: str) -> None:
    _check_message(full_name, CGROUP_STATS[full_name])


@pytest.mark.parametrize(
    ("module", "url"),
    [
        ("api.cgroups.v1.metrics_pb2", "io.containerd.cgroups.v1.Metrics"),
        ("api.cgroups.v2.metrics_pb2", "io.containerd.cgroups.v2.Metrics"),
    ],
)
def test_typeurl_knows_the_cgroup_metrics(module: str, url: str) -> None:
    """The runc shim's Stats Any names the message by its bare full name (typeurl of a
    proto message).  A fresh process that imports only api.typeurl must pack and unpack
    it: the daemon decodes stats without importing the cgroups modules itself."""
    cls = importlib.import_module(module).Metrics
    payload = cls(pids={"current": 3}).SerializeToString().hex()
    script = (
        "from google.protobuf import any_pb2\n"
        "from api.typeurl import TypeRegistry, type_url\n"
        "r = TypeRegistry()\n"
        f"m = r.unpack(any_pb2.Any(type_url={url!r}, value=bytes.fromhex({payload!r})))\n"
        "print(type_url(m), m.pids.current, r.pack(m).type_url)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [url, "3", url]


@pytest.mark.parametrize("full_name", list(OPTIONAL_MESSAGES))
def test_optional_message_matches_containerd_if_declared(
    api_files: ApiFiles, full_name: str
) -> None:
    if _find(POOL.FindMessageTypeByName, full_name) is None:
        pytest.skip(f"{full_name} is optional and api/ does not declare it")
    _check_message(full_name, OPTIONAL_MESSAGES[full_name])


def test_no_messages_or_enums_beyond_containerd(api_files: ApiFiles) -> None:
    """Every message and enum declared under api/ is one containerd declares."""
    known = set(MESSAGES) | set(EVENTS) | set(OPTIONAL_MESSAGES) | set(CGROUP_STATS) | set(ENUMS)
    known |= set(etcd_wire_table.MESSAGES) | set(etcd_wire_table.ENUMS)  # test_etcd_wire
    problems: list[str] = []
    for file in api_files:
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        names = _declared_names(f"{proto.package}.", proto.message_type, proto.enum_type)
        problems.extend(
            f"{file.name}: {name} is not in the wire table "
            "(add containerd's definition to tests/api/wire_table.py if it is real)"
            for name in names
            if name not in known
        )
    assert not problems, "\n".join(problems)


def test_contract_files_are_proto3(api_files: ApiFiles) -> None:
    """containerd's files are proto3; another syntax changes presence and packing rules."""
    contract = set(MESSAGES) | set(EVENTS) | set(OPTIONAL_MESSAGES) | set(CGROUP_STATS) | set(ENUMS)
    problems: list[str] = []
    for file in api_files:
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        names = _declared_names(f"{proto.package}.", proto.message_type, proto.enum_type)
        if proto.syntax != "proto3" and any(name in contract for name in names):
            problems.append(f"{file.name} has syntax {proto.syntax!r}, containerd uses 'proto3'")
    assert not problems, "\n".join(problems)
