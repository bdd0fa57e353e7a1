"""services.harness.spawn on both loops berthd runs on: the child gets none of
our descriptors, so output ends when the child does even if it leaves a
process behind (the shim ``start`` case, issue #14)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
import uvloop

from services.harness import spawn

T = TypeVar("T")
Run = Callable[[Coroutine[Any, Any, T]], T]

# Which descriptors above 2 the child has (probing opens none itself).
_LIST_FDS = (
    "import os\n"
    "def is_open(fd):\n"
    "    try:\n"
    "        os.fstat(fd)\n"
    "    except OSError:\n"
    "        return False\n"
    "    return True\n"
    "print(' '.join(str(fd) for fd in range(3, 1024) if is_open(fd)))\n"
)


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Run[Any]:
    factory = asyncio.new_event_loop if request.param == "asyncio" else uvloop.new_event_loop

    def go(main: Coroutine[Any, Any, T]) -> T:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(main)

    return go


def test_child_gets_no_descriptor_of_ours(run: Run[Any]) -> None:
    r, w = os.pipe()
    os.set_inheritable(r, True)
    os.set_inheritable(w, True)

    async def main() -> bytes | None:
        proc = spawn.start(
            [sys.executable, "-S", "-I", "-c", _LIST_FDS],
            stdin=spawn.PIPE,
            stdout=spawn.PIPE,
            stderr=spawn.STDOUT,
        )
        out, _ = await proc.communicate(b"")
        assert await proc.wait() == 0
        return out

    try:
        out = run(main())
    finally:
        os.close(r)
        os.close(w)
    assert out == b"\n"


def test_output_ends_with_the_child_though_it_leaves_a_process_behind(run: Run[Any]) -> None:
    # As ``containerd-shim-runc-v2 start``: print, leave a long-lived process
    # with its stdio elsewhere, exit.  Whatever of ours that process held
    # would keep our end of the pipe from ever reading EOF.
    script = "sleep 60 </dev/null >/dev/null 2>&1 & echo $!"

    async def main() -> tuple[int, bytes | None]:
        proc = spawn.start(
            ["sh", "-c", script],
            stdin=spawn.PIPE,
            stdout=spawn.PIPE,
            stderr=spawn.STDOUT,
            start_new_session=True,
        )
        try:
            # Bounded: on the loop's own subprocess_exec under uvloop this
            # never finished.
            out, _ = await asyncio.wait_for(proc.communicate(b"options"), 30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        return await proc.wait(), out

    code, out = run(main())
    assert out is not None
    left = int(out)
    try:
        assert code == 0
        os.kill(left, 0)  # still running: it did not take our pipe with it
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(left, signal.SIGKILL)


def test_stdin_stdout_stderr_and_exit_code(run: Run[Any]) -> None:
    async def main() -> tuple[int, bytes | None, bytes | None]:
        proc = spawn.start(
            ["sh", "-c", "tr a-z A-Z; echo oops >&2; exit 3"],
            stdin=spawn.PIPE,
            stdout=spawn.PIPE,
            stderr=spawn.PIPE,
        )
        out, err = await proc.communicate(b"hello " * 50_000)
        return await proc.wait(), out, err

    code, out, err = run(main())
    assert (code, out, err) == (3, b"HELLO " * 50_000, b"oops\n")


def test_streams_not_piped_read_as_none(run: Run[Any]) -> None:
    async def main() -> tuple[bytes | None, bytes | None]:
        proc = spawn.start(["true"], stdin=spawn.DEVNULL, stdout=spawn.DEVNULL)
        return await proc.communicate()

    assert run(main()) == (None, None)


def test_signals_and_the_status_they_leave(run: Run[Any]) -> None:
    async def main() -> tuple[int, int | None]:
        proc = spawn.start(["sleep", "60"], stdin=spawn.DEVNULL)
        before = proc.returncode
        proc.terminate()
        code = await proc.wait()
        proc.kill()  # gone already: not an error, and no other process is hit
        return code, before

    assert run(main()) == (-signal.SIGTERM, None)


def test_a_program_that_cannot_run_is_an_os_error(run: Run[Any]) -> None:
    async def main() -> None:
        spawn.start(["/nonexistent/shim"], stdout=spawn.PIPE)

    with pytest.raises(FileNotFoundError):
        run(main())


def test_a_child_made_without_popen_is_waited_for(run: Run[Any]) -> None:
    # As daemon.forkspawn's children: only a pid, reaped with waitpid.
    pid = os.posix_spawn("/bin/sh", ["sh", "-c", "exit 7"], os.environ)

    async def main() -> int:
        return await spawn.Process(pid).wait()

    assert run(main()) == 7
