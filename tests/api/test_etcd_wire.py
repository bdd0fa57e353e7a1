"""Our etcd client declarations must be wire-identical to etcd's v3 API.

The expected facts live in ``etcd_wire_table.py`` (transcribed from etcd
v3.4.23); the descriptors compared are what ``api/etcd``'s generated modules
register.  The containerd contract test (``test_wire_contract``) counts these
declarations as known and leaves their checking to this module.
"""

from __future__ import annotations

import pytest
from google.protobuf import descriptor_pb2

from tests.api import etcd_wire_table as etcd
from tests.api.test_wire_contract import (
    POOL,
    ApiFiles,
    _declared_names,
    _find,
    _load_api_files,
    _render_fields,
    _show,
    _split_path,
)


@pytest.fixture(scope="module")
def api_files() -> ApiFiles:
    return _load_api_files()


def _etcd_files(api_files: ApiFiles) -> list[descriptor_pb2.FileDescriptorProto]:
    out = []
    for file in api_files:
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        if proto.package in ("etcdserverpb", "mvccpb"):
            out.append(proto)
    return out


@pytest.mark.parametrize("path", list(etcd.RPCS))
def test_rpc_matches_etcd(api_files: ApiFiles, path: str) -> None:
    service_name, method_name = _split_path(path)
    method = _find(POOL.FindMethodByName, f"{service_name}.{method_name}")
    assert method is not None, f"{path} is not declared under api/etcd"
    actual = (
        method.input_type.full_name,
        method.output_type.full_name,
        method.client_streaming,
        method.server_streaming,
    )
    assert actual == etcd.RPCS[path]


@pytest.mark.parametrize("full_name", list(etcd.MESSAGES))
def test_message_fields_match_etcd(api_files: ApiFiles, full_name: str) -> None:
    actual = _render_fields(full_name)
    assert actual is not None, f"{full_name} is not declared under api/etcd"
    expected = etcd.MESSAGES[full_name]
    problems = [
        f"{name}: ours {_show(actual[name]) if name in actual else 'missing'}, etcd {_show(spec)}"
        for name, spec in expected.items()
        if actual.get(name) != spec
    ]
    problems += [f"extra field {name}" for name in actual if name not in expected]
    assert not problems, f"{full_name} differs from etcd v3.4:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("full_name", list(etcd.ENUMS))
def test_enum_values_match_etcd(api_files: ApiFiles, full_name: str) -> None:
    enum = _find(POOL.FindEnumTypeByName, full_name)
    assert enum is not None, f"{full_name} is not declared under api/etcd"
    assert {v.name: v.number for v in enum.values} == etcd.ENUMS[full_name]


def test_nothing_declared_beyond_the_table(api_files: ApiFiles) -> None:
    files = _etcd_files(api_files)
    assert {f.package for f in files} == {"etcdserverpb", "mvccpb"}
    known = set(etcd.MESSAGES) | set(etcd.ENUMS)
    extra = [
        name
        for f in files
        for name in _declared_names(f"{f.package}.", f.message_type, f.enum_type)
        if name not in known
    ]
    methods = [
        f"/{f.package}.{s.name}/{m.name}"
        for f in files
        for s in f.service
        for m in s.method
        if f"/{f.package}.{s.name}/{m.name}" not in etcd.RPCS
    ]
    assert not extra and not methods, (extra, methods)
    assert all(f.syntax == "proto3" for f in files)


def test_a_request_encodes_as_etcd_expects() -> None:
    """A spot check of the bytes: field 1 (key) and 4 (revision) of a RangeRequest."""
    from api.etcd.etcdserverpb import rpc_pb2

    data = rpc_pb2.RangeRequest(key=b"k", revision=5).SerializeToString()
    assert data == b"\x0a\x01k\x20\x05"
