"""Plugin processes forked before the daemon loads itself (daemon.prefork,
daemon.forkspawn.park): which configured plugins get a parked child, and a
parked child that becomes the plugin it is told, in a process of its own.

The parking runs in a subprocess (a small program standing in for the
daemon): it forks, and pytest's process must not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from daemon import prefork
from daemon.config import parse_string, resolve
from tests.support import PYTHON, need_root
from tests.support.berthd import BIN

pytestmark = [pytest.mark.root]


def test_entries_follow_what_the_proxy_inits_start(tmp_path: Path) -> None:
    ours = BIN / "berthd-content"
    missing = tmp_path / "no-such-plugin"
    text = textwrap.dedent(
        f"""\
        version = 2
        disabled_plugins = ["io.containerd.differ.v1.off"]
        [proxy_plugins.content]
          type = "content"
          address = "{tmp_path}/c.sock"
          command = ["{ours}", "--root", "{tmp_path}/c"]
        [proxy_plugins.bysearch]
          type = "snapshot"
          address = "{tmp_path}/s.sock"
          command = ["berthd-snapshotter"]
        [proxy_plugins.off]
          type = "diff"
          address = "{tmp_path}/d.sock"
          command = ["berthd-diff"]
        [proxy_plugins.nocommand]
          type = "snapshot"
          address = "{tmp_path}/n.sock"
        [proxy_plugins.foreign]
          type = "snapshot"
          address = "{tmp_path}/f.sock"
          command = ["/bin/true"]
        [proxy_plugins.missing]
          type = "snapshot"
          address = "{tmp_path}/m.sock"
          command = ["{missing}"]
        [proxy_plugins.strange]
          type = "kv"
          address = "{tmp_path}/k.sock"
          command = ["berthd-content"]
        """
    )
    cfg = resolve(parse_string(text, "test.toml"))
    assert prefork.entries(cfg) == [
        ("services.content.main", "main"),
        ("services.snapshotter.main", "main"),
    ]


# A stand-in plugin: records what it sees, exits with a code of its own.
_ENTRY = """
import json, os, sys

def main():
    out = sys.argv[1]
    with open(out, "w") as f:
        json.dump(
            {
                "argv": sys.argv,
                "cmdline": open("/proc/self/cmdline").read().split("\\0")[:-1],
                "env": os.environ.get("PARKED_TEST"),
                "ppid": os.getppid(),
                "session": os.getsid(0) == os.getpid(),
                "stdin": os.readlink("/proc/self/fd/0"),
            },
            f,
        )
    return 3
"""

# The stand-in daemon: parks, hands children out, reports.
_PARENT = """
import asyncio, json, os, signal, sys
from daemon import forkspawn

mode, out = sys.argv[1], sys.argv[2]
parked = forkspawn.park(2, ["parkedentry"])
kids = [p.pid for p in forkspawn._parked]
if mode == "dead":
    os.kill(kids[0], signal.SIGKILL)
    os.waitpid(kids[0], 0)

async def main():
    proc = forkspawn.fork(
        ("parkedentry", "main"), ["parked-plugin", out], {"PARKED_TEST": "yes"}, sys.executable
    )
    code = await proc.wait()
    left = [p.pid for p in forkspawn._parked]
    forkspawn.release()
    alive = [pid for pid in kids if os.path.exists(f"/proc/{pid}")]
    return {"parked": parked, "kids": kids, "pid": proc.pid, "code": code,
            "left": left, "alive": alive, "me": os.getpid()}

print(json.dumps(asyncio.run(main())))
"""


def _run(tmp_path: Path, mode: str) -> tuple[dict[str, object], dict[str, object]]:
    need_root()  # the child's own command line takes CAP_SYS_RESOURCE (prctl PR_SET_MM)
    (tmp_path / "parkedentry.py").write_text(_ENTRY)
    out = tmp_path / "seen.json"
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{root}"}
    env.pop("BERTHD_FORK_PLUGINS", None)
    done = subprocess.run(
        [PYTHON, "-c", _PARENT, mode, str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), json.loads(out.read_text())


def test_a_parked_child_becomes_the_plugin_it_is_told(tmp_path: Path) -> None:
    parent, seen = _run(tmp_path, "live")
    assert parent["parked"] == 2
    kids = parent["kids"]
    assert isinstance(kids, list)
    # The first parked child took the plugin; the other waited until released.
    assert parent["pid"] == kids[0]
    assert parent["left"] == kids[1:]
    assert parent["alive"] == []  # released and reaped: no process, no zombie
    assert parent["code"] == 3
    assert seen["cmdline"] == ["parked-plugin", str(tmp_path / "seen.json")]
    assert seen["argv"] == [sys.executable, str(tmp_path / "seen.json")]
    assert seen["env"] == "yes"
    assert seen["ppid"] == parent["me"]
    assert seen["session"] is True
    assert seen["stdin"] == "/dev/null"


def test_a_dead_parked_child_is_passed_over(tmp_path: Path) -> None:
    parent, seen = _run(tmp_path, "dead")
    kids = parent["kids"]
    assert isinstance(kids, list)
    assert parent["pid"] == kids[1]
    assert parent["left"] == []
    assert parent["code"] == 3
    assert seen["ppid"] == parent["me"]
    assert seen["env"] == "yes"
