"""Our server against a real Go ttrpc client: ``ctr shim``.

``ctr shim --id ID state|delete`` (containerd 1.6, ttrpc v1.1.1) dials a
shim's socket directly: first ``/run/containerd/s/<sha256(address/ns/id)>``,
then the pre-1.5 abstract ``\\x00/containerd-shim/<ns>/<id>/shim.sock``
(cmd/ctr/commands/shim/shim.go), and calls the task API.  Here our server
plays the shim on each of those sockets.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator

import pytest

from api import errdefs
from api.containerd.runtime.task.v2 import shim_pb2
from api.containerd.types.task import task_pb2
from api.ttrpc import Context, Method, Server
from tests.support import need_binary, need_root

pytestmark = pytest.mark.containerd

TASK = "containerd.task.v2.Task"


class FakeShim:
    def __init__(self) -> None:
        self.requests: list[str] = []

    async def state(self, req: shim_pb2.StateRequest, ctx: Context) -> shim_pb2.StateResponse:
        self.requests.append(f"state {req.id}")
        return shim_pb2.StateResponse(
            id=req.id, bundle="/bundles/" + req.id, pid=4242, status=task_pb2.RUNNING
        )

    async def delete(self, req: shim_pb2.DeleteRequest, ctx: Context) -> shim_pb2.DeleteResponse:
        self.requests.append(f"delete {req.id}")
        if req.id == "gone":
            raise errdefs.NotFound(f"container {req.id}")
        return shim_pb2.DeleteResponse(pid=4242, exit_status=7)


async def ctr(address: str, namespace: str, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        "ctr",
        "--address",
        address,
        "--namespace",
        namespace,
        "shim",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def fake_shim() -> AsyncIterator[tuple[FakeShim, Server]]:
    need_binary("ctr")
    shim = FakeShim()
    server = Server()
    server.register(
        TASK,
        {
            "State": Method(shim_pb2.StateRequest, shim.state),
            "Delete": Method(shim_pb2.DeleteRequest, shim.delete),
        },
    )
    try:
        yield shim, server
    finally:
        await server.close()


async def run_ctr_against(shim: FakeShim, address: str, namespace: str, cid: str) -> None:
    code, out, err = await ctr(address, namespace, "--id", cid, "state")
    assert code == 0, err
    assert '"pid": 4242' in out
    assert f'"id": "{cid}"' in out
    assert f'"bundle": "/bundles/{cid}"' in out

    code, out, err = await ctr(address, namespace, "--id", cid, "delete", "c1")
    assert code == 0, err
    assert "exit status 7" in out

    code, _, err = await ctr(address, namespace, "--id", cid, "delete", "gone")
    assert code != 0
    assert "NotFound" in err and "container gone: not found" in err
    assert shim.requests == [f"state {cid}", "delete c1", "delete gone"]


async def test_ctr_shim_on_the_legacy_abstract_socket(
    fake_shim: tuple[FakeShim, Server],
) -> None:
    shim, server = fake_shim
    namespace, cid = f"ttrpc-{uuid.uuid4().hex[:8]}", "c1"
    name = f"@/containerd-shim/{namespace}/{cid}/shim.sock"
    # ctr dials "\x00" + that path; Go before 1.20 (Debian's containerd 1.6
    # is built with 1.19) puts a trailing NUL in such abstract names, newer Go
    # does not.  Serve both so the test holds for either build.
    await server.serve_unix(name)
    await server.serve_unix(name + "\x00")
    # The containerd address only feeds the hash of the path ctr tries first (absent here).
    await run_ctr_against(shim, f"/nonexistent/{uuid.uuid4().hex}.sock", namespace, cid)


@pytest.mark.root
async def test_ctr_shim_on_the_hashed_socket(fake_shim: tuple[FakeShim, Server]) -> None:
    need_root()
    shim, server = fake_shim
    namespace, cid = f"ttrpc-{uuid.uuid4().hex[:8]}", "c1"
    address = f"/run/berthd-test/{uuid.uuid4().hex}.sock"
    digest = hashlib.sha256(f"{address}/{namespace}/{cid}".encode()).hexdigest()
    await server.serve_unix(f"unix:///run/containerd/s/{digest}", mode=0o600)
    await run_ctr_against(shim, address, namespace, cid)
