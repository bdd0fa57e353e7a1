"""Our content plugin as a real process, for the tests of this package."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from tests.support import PYTHON, REPO, Proc, wait_for_socket


class ContentPlugin:
    """``berthd-content`` on ``root``, serving on ``address``; restartable."""

    def __init__(self, workdir: Path, metrics_address: str | None = None) -> None:
        self.root = workdir / "root"
        self.address = str(workdir / "content.sock")
        self.log = workdir / "content.log"
        self.metrics_address = metrics_address
        self.proc: Proc | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        argv = [
            PYTHON,
            "-m",
            "services.content.main",
            "--root",
            str(self.root),
            "--address",
            self.address,
            "--log-level",
            "info",
        ]
        if self.metrics_address:
            argv += ["--metrics-address", self.metrics_address]
        self.proc = Proc(argv, self.log, env={"PYTHONPATH": str(REPO)})
        wait_for_socket(self.address, proc=self.proc.popen)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextlib.contextmanager
def running_plugin(workdir: Path, metrics_address: str | None = None) -> Iterator[ContentPlugin]:
    plugin = ContentPlugin(workdir, metrics_address)
    plugin.start()
    try:
        yield plugin
    finally:
        plugin.stop()
