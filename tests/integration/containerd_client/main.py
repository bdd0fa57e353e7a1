"""``tests/integration/containerd-client/run``: containerd's client tests against daemons.

    run --target containerd --target berthd

builds the tests, serves the stand-in images, runs the tests against each
target in turn and prints one line per test and subtest, the totals, and --
with two or more targets -- the tests that pass on the first (the
reference) but not on another.  Exit status: 0 when every test passing on
the reference passes everywhere (one target: when none failed), 1 when not,
2 when the harness itself could not run the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from tests.integration.containerd_client import gobuild, results, schema1, standins, targets
from tests.integration.containerd_client.registry import Registry

# Tests of the daemon the test binary starts itself, which -no-daemon leaves
# unstarted.  The first two read its pid through a nil *exec.Cmd: the panic
# would end the whole binary.  The restart tests fail at once with "daemon is
# not running" and leave their task running, which then breaks the tests
# that look for stray "sleep 1" processes host-wide (ps ax).
_OWN_PID = "reads the pid of the daemon the test binary starts itself"
_RESTART = "restarts the daemon the test binary starts itself"
NEEDS_OWN_DAEMON = {
    "TestShimDoesNotLeakPipes": _OWN_PID,
    "TestShimOOMScore": _OWN_PID,
    "TestDaemonRestart": _RESTART,
    "TestDaemonRestartWithRunningShim": _RESTART,
    "TestDaemonReconnectsToShimIOPipesOnRestart": _RESTART,
}


# These start their own Debian containerd (newDaemonWithConfig) and never use
# the target's address: they pass or fail whatever the target is.
OWN_CONTAINERD = ("TestDaemonRuntimeRoot", "TestDaemonCustomCgroup", "TestRestartMonitor")


class HarnessError(RuntimeError):
    pass


def criu_works() -> tuple[bool, str]:
    if shutil.which("criu") is None:
        return False, "criu is not installed"
    probe = subprocess.run(["criu", "check"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        last = (probe.stderr or probe.stdout).strip().splitlines()
        return False, "criu check failed: " + (last[-1] if last else f"exit {probe.returncode}")
    return True, "criu check passed"


def select(names: Sequence[str], pattern: str | None) -> tuple[list[str], dict[str, str]]:
    """Top-level tests to run, and those left out with the reason."""
    chosen, left_out = [], {}
    for name in names:
        if name.startswith("Benchmark") or (pattern and not re.search(pattern, name)):
            continue
        if name in NEEDS_OWN_DAEMON:
            left_out[name] = NEEDS_OWN_DAEMON[name]
        else:
            chosen.append(name)
    return chosen, left_out


def cause(message: str) -> str:
    """A failure message with the test-specific parts blanked, for grouping."""
    text = re.sub(r"^\S+\.go:\d+: ", "", message.split(" | ")[0])
    text = re.sub(r"sha256:[0-9a-f]{64}", "sha256:…", text)
    text = re.sub(r"\b[0-9a-f]{32,}\b", "…", text)
    text = re.sub(r'"Test[^"]*"', '"<test>"', text)
    text = re.sub(r"\bTest\w+(/\w+)?", "<test>", text)
    return text[:240]


def report(run: results.Run, left_out: dict[str, str]) -> str:
    out = [results.summary(run)]
    for name, why in sorted(left_out.items()):
        out.insert(-1, f"NOTRUN  {name}  -- {why} (under -no-daemon)")
    own = [n for n in OWN_CONTAINERD if n in run.results]
    if own:
        passing = sum(run.results[n].status == results.PASS for n in own)
        out.append(
            f"  ({passing} of the passes come from {', '.join(own)}, which start "
            "their own containerd and do not use the target)"
        )
    failed = [
        r
        for r in run.results.values()
        if r.status == results.FAIL and not r.message().startswith("(failed subtests")
    ]
    if failed:
        groups: dict[str, list[str]] = defaultdict(list)
        for r in failed:
            groups[cause(r.message())].append(r.name)
        out.append(f"{run.target}: failures by message:")
        for msg, names in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            out.append(f"  {len(names):3d}  {msg}")
            out.append("       " + ", ".join(sorted(names)))
    if run.exit_code not in (0, 1) or not run.results:
        out.append(f"{run.target}: test binary exited {run.exit_code}; its last output:")
        out.append(run.tail)
    return "\n".join(out)


def compare(reference: results.Run, other: results.Run, chosen: Sequence[str]) -> str:
    gone = results.missing(reference, other, OWN_CONTAINERD, chosen)
    passing = results.passes(reference, OWN_CONTAINERD, chosen)
    lines = [
        f"{len(gone)} of the {len(passing)} tests run that pass on {reference.target} "
        f"do not pass on {other.target} (not counting {', '.join(OWN_CONTAINERD)})"
    ]
    for name in gone:
        r = other.results.get(name)
        status = r.status if r else "NOTRUN"
        msg = r.message() if r else ""
        lines.append(f"  {status}  {name}" + (f"  -- {msg}" if msg else ""))
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="tests/integration/containerd-client/run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--target",
        action="append",
        help="containerd | berthd | socket:PATH (repeatable; the first is the reference). "
        "Default: berthd",
    )
    p.add_argument(
        "--source",
        type=Path,
        default=gobuild.default_source(),
        help="containerd git repository, tree, or integration/client directory "
        "(default: $CONTAINERD_SOURCE or %(default)s)",
    )
    p.add_argument("--tag", default=gobuild.TAG, help="tag to extract from a repository")
    p.add_argument("--work", type=Path, help="work directory (default: a new temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument(
        "--criu",
        choices=("auto", "yes", "no"),
        default="auto",
        help="run the checkpoint tests (auto: when `criu check` passes)",
    )
    p.add_argument("--run", metavar="REGEX", help="only top-level tests matching REGEX")
    p.add_argument("--timeout", type=float, default=600, help="seconds per target")
    p.add_argument("--json", type=Path, help="write every target's results to this file")
    p.add_argument(
        "--reference",
        type=Path,
        help="results file of an earlier run: the first target in it is the reference",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if os.geteuid() != 0:
        print("containerd's client tests need root", file=sys.stderr)
        return 2
    work = args.work or Path(tempfile.mkdtemp(prefix="ccli", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    # A user-namespaced container's root (uid 1000 on the host) must reach
    # its rootfs under the daemon's state dir: traversable, not listable.
    work.chmod(0o711)
    closed = [p for p in work.resolve().parents if not p.stat().st_mode & 0o001]
    if closed:
        print(f"warning: {closed[0]} is not traversable by others: TestUserNamespaces will fail")
    # SIGTERM unwinds like ^C, so the daemons and the registry are stopped.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return _main(args, work)
    except (RuntimeError, TimeoutError) as e:  # ours, and a daemon that did not start
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)
        if args.keep or args.work:
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _main(args: argparse.Namespace, work: Path) -> int:
    wanted = args.target or ["berthd"]
    print(f"building {args.tag} client tests from {args.source} ...", flush=True)
    tc = gobuild.toolchain()
    binary = gobuild.build(args.source, work, args.tag)
    pkg = gobuild.package_dir(work)
    chosen, left_out = select(results.list_tests(binary, pkg, os.environ), args.run)
    if not chosen:
        raise HarnessError(f"no test matches {args.run!r}")
    flags = ["-test.root", "-no-daemon", "-test.timeout", f"{int(args.timeout)}s"]
    flags += ["-test.run", "^(" + "|".join(chosen) + ")$"]
    criu_ok, why = criu_works()
    if args.criu == "no" or (args.criu == "auto" and not criu_ok):
        flags.append("-no-criu")
        print(f"checkpoint tests off (-no-criu): {why if args.criu == 'auto' else '--criu no'}")

    key = schema1.SigningKey.generate(work)
    cat = standins.catalogue(key)
    runs: list[results.Run] = []
    with Registry(work / "registry") as reg:
        reg.push(cat)
        print(f"stand-in images served by docker-registry on {reg.addr}", flush=True)
        env = dict(os.environ)
        env["BERTHD_TEST_REGISTRY"] = reg.addr
        env["BERTHD_TEST_REGISTRY_PINS"] = ",".join(f"{k}={v}" for k, v in cat.pins.items())
        for i, target in enumerate(wanted):
            tdir = work / f"target{i}"
            if tdir.exists():
                shutil.rmtree(tdir)
            tdir.mkdir(mode=0o711)
            print(f"running {len(chosen)} tests against {target} ...", flush=True)
            with targets.started(target, tdir) as address:
                run = results.run_binary(
                    tc.go,
                    binary,
                    [*flags, "-address", address],
                    cwd=pkg,
                    env=env,
                    log=tdir / "test2json.log",
                    target=target,
                    timeout=args.timeout + 60,
                )
            runs.append(run)
            print(report(run, left_out), flush=True)
            log = targets.daemon_log(target, tdir)
            if log is not None and (args.keep or args.work):
                print(f"{target} log: {log}")
    if args.json:
        args.json.write_text(json.dumps([r.to_json() for r in runs], indent=1) + "\n")
    if any(not r.results for r in runs):
        return 2
    reference = runs[0]
    others = runs[1:]
    if args.reference:
        docs = json.loads(args.reference.read_text())
        reference, others = results.Run.from_json(docs[0]), runs
    if others:
        gaps = False
        for other in others:
            print(compare(reference, other, chosen))
            gaps = gaps or bool(results.missing(reference, other, OWN_CONTAINERD, chosen))
        return 1 if gaps else 0
    return 1 if reference.counts()[results.FAIL] else 0
