"""containerd's client tests: every one passing on containerd must pass on berthd.

Runs the whole harness (build, stand-in registry, a private containerd 1.6.20,
then berthd's embedded default): over three minutes on a shared 2-core
machine, so it is opt-in: set BERTHD_CONTAINERD_CLIENT_TESTS=1.  The same check by hand:
``tests/integration/containerd-client/run --target containerd --target berthd``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.integration.containerd_client import gobuild, main, results
from tests.support import need_binary, need_root, short_tmpdir
from tests.support.containerd import need_runc
from tests.support.oci import need_busybox

OPT_IN = "BERTHD_CONTAINERD_CLIENT_TESTS"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.root,
    pytest.mark.containerd,
    pytest.mark.runc,
    pytest.mark.overlay,
]


def test_berthd_passes_what_containerd_passes() -> None:
    if os.environ.get(OPT_IN) != "1":
        pytest.skip(f"takes minutes; set {OPT_IN}=1 to run containerd's client tests")
    need_root()
    need_runc()
    need_busybox()
    need_binary("go", "docker-registry", "openssl")
    source = gobuild.default_source()
    if not source.exists():
        pytest.skip(f"containerd's sources not at {source} (set CONTAINERD_SOURCE)")
    with short_tmpdir("cc") as work:
        work.chmod(0o711)  # user-namespaced containers reach their rootfs through it
        out = work / "results.json"
        argv = ["--target", "containerd", "--target", "berthd"]
        argv += ["--work", str(work / "w"), "--json", str(out)]
        code = main.main(argv)
        assert out.exists(), f"the harness could not run the tests (exit {code})"
        ref, berthd = (results.Run.from_json(doc) for doc in json.loads(Path(out).read_text()))
    assert len(ref.passed()) > 100, results.summary(ref)
    gone = results.missing(ref, berthd, main.OWN_CONTAINERD)
    detail = "\n".join(f"{n}: {berthd.results[n].message()}" for n in gone if n in berthd.results)
    assert not gone, f"{len(gone)} tests pass on containerd, not on berthd:\n{detail}"
    assert code == 0
