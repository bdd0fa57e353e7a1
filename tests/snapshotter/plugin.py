"""Our snapshotter plugin as a real child process (``python -m services.snapshotter.main``)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.support import PYTHON, Proc, wait_for_socket


class Plugin:
    """``berthd-snapshotter`` on ``workdir``: socket ``workdir/s.sock``, root ``workdir/root``.

    ``backend`` may name several backends: one process then serves each by
    name, under ``root/io.containerd.snapshotter.v1.<name>``.
    """

    def __init__(
        self,
        workdir: Path,
        backend: str | tuple[str, ...] = "overlayfs",
        *,
        metrics_address: str | None = None,
        module: str = "services.snapshotter.main",
        extra: tuple[str, ...] = (),
    ) -> None:
        self.workdir = Path(workdir)
        self.backend = backend
        self.root = self.workdir / "root"
        self.address = str(self.workdir / "s.sock")
        self.metrics_address = metrics_address
        self.module = module
        self.extra = extra
        self.log = self.workdir / "plugin.log"
        self.proc: Proc | None = None

    def argv(self) -> list[str]:
        argv = [PYTHON, "-m", self.module, "--root", str(self.root), "--address", self.address]
        if self.module == "services.snapshotter.main":
            backends = (self.backend,) if isinstance(self.backend, str) else self.backend
            for backend in backends:
                argv += ["--backend", backend]
        if self.metrics_address:
            argv += ["--metrics-address", self.metrics_address]
        return [*argv, *self.extra]

    def start(self) -> Plugin:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = Proc(self.argv(), self.log)
        try:
            wait_for_socket(self.address, timeout=30, proc=self.proc.popen)
        except Exception as e:
            raise RuntimeError(f"{e}\n{self.output()}") from None
        return self

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        return proc.stop()

    def kill(self) -> None:
        """SIGKILL, as a crash: no cleanup, the socket file stays."""
        assert self.proc is not None
        proc, self.proc = self.proc, None
        os.kill(proc.pid, signal.SIGKILL)
        proc.popen.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def __enter__(self) -> Plugin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
