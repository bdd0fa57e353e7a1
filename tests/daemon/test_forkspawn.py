"""Plugins started by fork: only our own console scripts of this environment
qualify; a forked plugin looks and behaves like an exec'd one (its own
command line, name and session, the daemon's child, gone when the daemon is
killed); a restart, or BERTHD_FORK_PLUGINS=0, execs."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.forkspawn import entry_point
from tests.support import free_port, need_root, short_tmpdir
from tests.support.berthd import (
    BIN,
    Berthd,
    embedded_plugin_count,
    embedded_toml,
    need_embedded_plugins,
    wait_until,
)

pytestmark = [pytest.mark.root, pytest.mark.overlay]


@pytest.fixture
def workdir() -> Iterator[Path]:
    need_root()
    need_embedded_plugins()
    with short_tmpdir("bfk") as d:
        yield d


def test_entry_points_of_our_scripts_only(tmp_path: Path) -> None:
    assert entry_point(str(BIN / "berthd-content")) == ("services.content.main", "main")
    assert entry_point(str(BIN / "berthd-diff")) == ("services.diff.main", "main")
    text = (BIN / "berthd-content").read_text()
    # Another environment's interpreter: its packages may differ from ours.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text(text.replace(text.split("\n", 1)[0], "#!/opt/other/bin/python3"))
    assert entry_point(str(elsewhere)) is None
    # A script of this environment for somebody else's package.
    foreign = tmp_path / "foreign"
    foreign.write_text(text.replace("services.content.main", "somepkg.cli"))
    assert entry_point(str(foreign)) is None
    assert entry_point("/bin/sh") is None
    assert entry_point(str(tmp_path / "missing")) is None


def _plugins(b: Berthd) -> dict[int, str]:
    wait_until(lambda: len(b.children()) == embedded_plugin_count(), what="all plugins")
    return b.children()


def test_forked_plugins_look_and_act_like_exec_ones(workdir: Path) -> None:
    with Berthd(workdir, embedded_toml(workdir, f"127.0.0.1:{free_port()}")) as b:
        wait_until(lambda: b.ctr("snapshots", "ls", check=False).returncode == 0, what="up")
        assert b.output().count("forked plugin") == embedded_plugin_count(), b.output()
        kids = _plugins(b)
        names = set()
        for pid, cmd in kids.items():
            argv = cmd.split()
            assert argv[0] in ("berthd-content", "berthd-snapshotter", "berthd-diff"), cmd
            assert "--address" in argv
            names.add(Path(f"/proc/{pid}/comm").read_text().strip())
            assert os.getsid(pid) == pid  # a session of its own
        assert names == {"berthd-content", "berthd-snapshot", "berthd-diff"}
        # A restarted plugin is exec'd (the daemon has threads by now).
        content = b.child("berthd-content")
        os.kill(content, signal.SIGKILL)
        wait_until(
            lambda: any("berthd-content" in c and p != content for p, c in b.children().items()),
            what="content restarted",
        )
        # (the child can show before the daemon's log line about it)
        wait_until(lambda: "started plugin content" in b.output(), what="restart logged")
        assert b.ctr("content", "ls").returncode == 0
        # Killed with -9, the daemon takes its forked plugins with it.
        pids = list(b.children())
        assert b.proc is not None
        b.proc.signal(signal.SIGKILL)
        b.proc.wait()
        b.proc = None

        def gone() -> bool:
            for pid in pids:
                with contextlib.suppress(FileNotFoundError):
                    if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                        return False
            return True

        wait_until(gone, what="plugins gone with the daemon")


def test_fork_can_be_turned_off(workdir: Path) -> None:
    toml = embedded_toml(workdir, "")
    with Berthd(workdir, toml, env={"BERTHD_FORK_PLUGINS": "0"}) as b:
        wait_until(lambda: b.ctr("snapshots", "ls", check=False).returncode == 0, what="up")
        kids = _plugins(b)
        assert "forked plugin" not in b.output()
        for cmd in kids.values():
            # An exec'd script: the interpreter, then the script's path.
            interpreter, script = cmd.split()[:2]
            assert "python" in Path(interpreter).name, cmd
            assert Path(script).name in ("berthd-content", "berthd-snapshotter", "berthd-diff")
