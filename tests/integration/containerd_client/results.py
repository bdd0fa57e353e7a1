"""Run the compiled tests through ``go tool test2json`` and collect one result per test.

Every test and subtest gets PASS, FAIL or SKIP with the lines it logged
(``t.Fatal``/``t.Skip`` messages); a test the binary started but never
finished (a timeout, a crash) is a FAIL with the binary's last words.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
_NOISE = re.compile(r"^\s*(=== (RUN|PAUSE|CONT|NAME)|--- (PASS|FAIL|SKIP):)")
# A line a test logged: "    file_test.go:123: message"; the client's debug
# log reaches the test log through containerd's log_hook.go: not a message.
_LOGGED = re.compile(r"^\s+(?!log_hook\.go:)\S+\.go:\d+: ")
_CLIENT_LOG = re.compile(r"^\s+log_hook\.go:\d+: ")


@dataclass
class Result:
    name: str
    status: str
    elapsed: float = 0.0
    output: list[str] = field(default_factory=list)

    def message(self, limit: int = 3) -> str:
        """The first lines the test logged (its failure or skip reason)."""
        logged = [line.strip() for line in self.output if _LOGGED.match(line)]
        lines = logged or [
            line.strip()
            for line in self.output
            if not _NOISE.match(line) and not _CLIENT_LOG.match(line)
        ]
        lines = [line for line in lines if line]
        return " | ".join(lines[:limit])


@dataclass
class Run:
    target: str
    results: dict[str, Result]
    exit_code: int
    tail: str  # last output outside any test (TestMain's errors, panics)

    def counts(self) -> Counter[str]:
        return Counter(r.status for r in self.results.values())

    def passed(self) -> set[str]:
        return {n for n, r in self.results.items() if r.status == PASS}

    def to_json(self) -> dict[str, object]:
        return {
            "target": self.target,
            "exit_code": self.exit_code,
            "tail": self.tail,
            "results": {n: asdict(r) for n, r in sorted(self.results.items())},
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, object]) -> Run:
        raw = doc["results"]
        assert isinstance(raw, dict)
        results = {n: Result(**r) for n, r in raw.items()}
        code = doc.get("exit_code", 0)
        return cls(str(doc["target"]), results, int(code) if isinstance(code, int) else 0, "")


def parse(events: Iterable[str], target: str, exit_code: int) -> Run:
    """Fold test2json's event lines into one Result per test."""
    results: dict[str, Result] = {}
    finished: set[str] = set()
    outside: list[str] = []
    for line in events:
        line = line.strip()
        if not line.startswith("{"):
            if line:
                outside.append(line)
            continue
        ev = json.loads(line)
        name = ev.get("Test")
        action = ev.get("Action")
        if not name:
            if action == "output":
                outside.append(str(ev.get("Output", "")).rstrip("\n"))
            continue
        r = results.setdefault(name, Result(name, FAIL))
        if action == "output":
            r.output.append(str(ev.get("Output", "")).rstrip("\n"))
        elif action in ("pass", "fail", "skip"):
            r.status = action.upper()
            r.elapsed = float(ev.get("Elapsed", 0.0))
            finished.add(name)
    tail = "\n".join(outside[-40:])
    for name, r in results.items():
        if name not in finished:
            r.output.append(f"(unfinished: the test binary exited {exit_code})")
        elif r.status == FAIL and not r.message():
            failed_subtests = [
                n for n, sub in results.items() if n.startswith(name + "/") and sub.status == FAIL
            ]
            if failed_subtests:
                r.output.append(f"(failed subtests: {len(failed_subtests)})")
    return Run(target, results, exit_code, tail)


def run_binary(
    go: str,
    binary: Path,
    args: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log: Path,
    target: str,
    timeout: float,
) -> Run:
    """``go tool test2json`` over the test binary; the raw events are kept in ``log``."""
    argv = [go, "tool", "test2json", "-t", "-p", "client", str(binary), "-test.v", *args]
    with open(log, "w") as out:
        try:
            proc = subprocess.run(
                argv,
                cwd=cwd,
                env=dict(env),
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = -1
    return parse(log.read_text(errors="replace").splitlines(), target, code)


def list_tests(binary: Path, cwd: Path, env: Mapping[str, str]) -> list[str]:
    """Top-level test names (``-test.short`` keeps TestMain from needing a daemon)."""
    proc = subprocess.run(
        [str(binary), "-test.short", "-test.list", "."],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        check=True,
    )
    return [line for line in proc.stdout.split() if line.startswith(("Test", "Benchmark"))]


def summary(run: Run) -> str:
    lines = []
    for name in sorted(run.results):
        r = run.results[name]
        msg = r.message() if r.status != PASS else ""
        lines.append(f"{r.status}  {name}" + (f"  -- {msg}" if msg else ""))
    c = run.counts()
    lines.append(
        f"{run.target}: {len(run.results)} tests and subtests: "
        f"{c[PASS]} passed, {c[FAIL]} failed, {c[SKIP]} skipped"
    )
    return "\n".join(lines)


def passes(run: Run, ignore: Iterable[str] = (), only: Iterable[str] | None = None) -> set[str]:
    """Tests passing in ``run``, less the top-level tests ``ignore`` names and
    those not in ``only`` (with their subtests)."""
    left_out = set(ignore)
    ran = None if only is None else set(only)
    return {
        n
        for n in run.passed()
        if n.split("/", 1)[0] not in left_out and (ran is None or n.split("/", 1)[0] in ran)
    }


def missing(
    reference: Run,
    other: Run,
    ignore: Iterable[str] = (),
    only: Iterable[str] | None = None,
) -> list[str]:
    """Tests passing on ``reference`` (as counted by ``passes``) that do not pass on ``other``."""
    return sorted(passes(reference, ignore, only) - other.passed())
