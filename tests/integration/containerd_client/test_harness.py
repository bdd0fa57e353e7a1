"""The harness's own parts: stand-in images, schema 1 signing, the registry, result parsing.

These run in seconds with the real tools (openssl, docker-registry, go) and
skip when one is missing; the full run against daemons is
test_containerd_client.py.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import re
import subprocess
import tarfile
import textwrap
from pathlib import Path

import pytest

from tests.integration.containerd_client import gobuild, main, results, schema1, standins
from tests.integration.containerd_client.registry import Registry
from tests.support import need_binary
from tests.support.oci import need_busybox


def b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def strip_signature(doc: bytes) -> bytes:
    """What containerd's schema 1 converter keeps of a signed manifest."""
    protected = json.loads(b64url_decode(json.loads(doc)["signatures"][0]["protected"]))
    return doc[: protected["formatLength"]] + b64url_decode(protected["formatTail"])


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> schema1.SigningKey:
    need_binary("openssl")
    return schema1.SigningKey.generate(tmp_path_factory.mktemp("key"))


@pytest.fixture(scope="module")
def catalogue(key: schema1.SigningKey) -> standins.Catalogue:
    need_busybox()
    return standins.catalogue(key)


def repo(cat: standins.Catalogue, reference: str) -> tuple[standins.Repository, str]:
    name, tag = standins.repository_of(reference)
    found = [r for r in cat.repositories if r.name == name]
    assert len(found) == 1, f"{reference}: {[r.name for r in cat.repositories]}"
    return found[0], tag


def manifest(r: standins.Repository, reference: str) -> dict[str, object]:
    for m in r.manifests:
        if reference in (m.reference, m.digest):
            doc: dict[str, object] = json.loads(m.data)
            return doc
    raise AssertionError(f"{r.name}: no manifest {reference}")


def layer_members(r: standins.Repository, digest: str) -> dict[str, tarfile.TarInfo]:
    raw = gzip.decompress(r.blobs[digest])
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_repository_of() -> None:
    assert standins.repository_of("ghcr.io/containerd/busybox:1.32") == (
        "ghcr.io/containerd/busybox",
        "1.32",
    )
    assert standins.repository_of("k8s.gcr.io/pause") == ("k8s.gcr.io/pause", "latest")
    assert standins.repository_of("busybox:1.36") == (
        "registry-1.docker.io/library/busybox",
        "1.36",
    )
    assert standins.repository_of("localhost:5000/a/b:c") == ("localhost:5000/a/b", "c")


def test_schema1_signature_strips_to_the_canonical_payload(key: schema1.SigningKey) -> None:
    doc = {"schemaVersion": 1, "name": "a/b", "tag": "t", "fsLayers": [], "history": []}
    signed, canonical = schema1.sign(doc, key)
    assert json.loads(canonical) == doc
    assert json.loads(signed)["signatures"][0]["header"]["alg"] == "RS256"
    assert strip_signature(signed) == canonical


# Referenced in a branch of image_test.go taken on Windows only.
WINDOWS_ONLY = {"registry.k8s.io/pause-amd64:3.2"}


def test_catalogue_covers_every_reference_the_tests_use(
    catalogue: standins.Catalogue, tmp_path: Path
) -> None:
    source = gobuild.default_source()
    if not source.exists():
        pytest.skip(f"containerd's sources not at {source} (set CONTAINERD_SOURCE)")
    gobuild.extract(source, tmp_path)
    text = "\n".join(p.read_text() for p in tmp_path.glob("*.go") if "windows" not in p.name)
    refs = set(
        re.findall(
            r'"((?:[a-z0-9-]+\.)+(?:io|com)/[^"@:]+(?::[\w.-]+)?(?:@sha256:[0-9a-f]{64})?)"', text
        )
    )
    refs -= {
        r
        for r in refs
        # Go imports, label keys, names made up by the import tests
        if r.startswith(("github.com/", "containerd.io/", "docker.io/")) or "%" in r
    }
    refs -= WINDOWS_ONLY
    assert len(refs) >= 8, refs
    for ref in refs:
        name, _, pinned = ref.partition("@")
        r, tag = repo(catalogue, name)
        if pinned:
            assert pinned in catalogue.pins, ref
            manifest(r, catalogue.pins[pinned])
        else:
            manifest(r, tag)


def test_platforms_counted_by_the_some_platforms_test(catalogue: standins.Catalogue) -> None:
    r, tag = repo(catalogue, "registry.k8s.io/e2e-test-images/busybox:1.29-2")
    entries = manifest(r, tag)["manifests"]
    assert isinstance(entries, list)
    names = [standins.platform_name(m["platform"]) for m in entries]
    for wanted in ("linux/amd64", "linux/arm64/v8", "linux/s390x"):
        assert names.count(wanted) == 1, names
    assert len(names) > 3, "some platforms must stay unfetched"


def test_pause_platforms_have_distinct_layers(catalogue: standins.Catalogue) -> None:
    r, tag = repo(catalogue, "k8s.gcr.io/pause:3.6")
    entries = manifest(r, tag)["manifests"]
    assert isinstance(entries, list) and len(entries) >= 4
    layers: set[str] = set()
    for entry in entries:
        m = manifest(r, entry["digest"])
        assert isinstance(m["layers"], list)
        layers.update(layer["digest"] for layer in m["layers"])
    assert len(layers) == len(entries)


def test_busybox_stand_in_runs_what_the_tests_run(catalogue: standins.Catalogue) -> None:
    r, tag = repo(catalogue, "ghcr.io/containerd/busybox:1.32")
    index = manifest(r, tag)
    assert index["mediaType"] == standins.DOCKER_LIST
    entries = index["manifests"]
    assert isinstance(entries, list)
    host = standins.platform_name(standins.host_platform())
    (entry,) = [e for e in entries if standins.platform_name(e["platform"]) == host]
    m = manifest(r, entry["digest"])
    assert isinstance(m["layers"], list)
    members = layer_members(r, m["layers"][0]["digest"])
    for applet in ("sh", "sleep", "top", "ps", "seq", "hostname", "id", "cat", "true"):
        assert members[f"bin/{applet}"].islnk(), applet
    assert members["bin/nc"].isfile() and members["bin/nc"].mode & 0o111
    assert members["tmp"].mode == 0o1777


def test_registry_serves_the_stand_ins(catalogue: standins.Catalogue, tmp_path: Path) -> None:
    need_binary("docker-registry")
    with Registry(tmp_path / "registry") as reg:
        reg.push(catalogue)
        assert sorted(reg.catalog()) == sorted(r.name for r in catalogue.repositories)
        r, tag = repo(catalogue, "ghcr.io/containerd/busybox:1.32")
        status, headers, body = reg.request(
            "GET", f"/v2/{r.name}/manifests/{tag}", headers={"Accept": standins.DOCKER_LIST}
        )
        assert status == 200 and headers["content-type"] == standins.DOCKER_LIST
        assert body == next(m.data for m in r.manifests if m.reference == tag)
        # a pinned schema 1 stand-in, fetched by the digest the redirect substitutes
        pinned = "sha256:0d093c962a6c2dd8bb8727b661e2b5f13e9df884af9945b4cc7088d9350cd3ee"
        r, _ = repo(catalogue, "gcr.io/google_containers/pause")
        status, _, body = reg.request(
            "GET",
            f"/v2/{r.name}/manifests/{catalogue.pins[pinned]}",
            headers={"Accept": schema1.MEDIA_TYPE},
        )
        assert status == 200
        assert standins.digest_of(strip_signature(body)) == catalogue.pins[pinned]


GO_TEST = textwrap.dedent(
    """\
    package sample

    import "testing"

    func TestOk(t *testing.T) {}
    func TestBad(t *testing.T) {
        t.Log("noise")
        t.Fatalf("went wrong: %d", 7)
    }
    func TestSkipped(t *testing.T) { t.Skip("not here") }
    func TestParent(t *testing.T) {
        t.Run("A", func(t *testing.T) {})
        t.Run("B", func(t *testing.T) { t.Error("b failed") })
    }
    """
)


@pytest.mark.slow
def test_results_of_a_real_go_test_binary(tmp_path: Path) -> None:
    need_binary("go")
    tc = gobuild.toolchain()
    pkg = tmp_path / "gopath/src/sample"
    pkg.mkdir(parents=True)
    (pkg / "sample_test.go").write_text(GO_TEST)
    env = gobuild.go_env(tmp_path / "gopath")
    subprocess.run(
        [tc.go, "test", "-c", "-o", str(tmp_path / "t.test"), "."], cwd=pkg, env=env, check=True
    )
    run = results.run_binary(
        tc.go,
        tmp_path / "t.test",
        [],
        cwd=pkg,
        env=env,
        log=tmp_path / "log",
        target="x",
        timeout=60,
    )
    status = {n: r.status for n, r in run.results.items()}
    assert status == {
        "TestOk": "PASS",
        "TestBad": "FAIL",
        "TestSkipped": "SKIP",
        "TestParent": "FAIL",
        "TestParent/A": "PASS",
        "TestParent/B": "FAIL",
    }
    assert "went wrong: 7" in run.results["TestBad"].message()
    assert "not here" in run.results["TestSkipped"].message()
    assert run.results["TestParent"].message() == "(failed subtests: 1)"
    assert run.exit_code == 1
    assert results.list_tests(tmp_path / "t.test", pkg, env) == [
        "TestOk",
        "TestBad",
        "TestSkipped",
        "TestParent",
    ]


def test_select_leaves_out_what_needs_its_own_daemon() -> None:
    names = ["TestA", "TestShimOOMScore", "TestDaemonRestart", "BenchmarkX", "TestB"]
    chosen, left_out = main.select(names, None)
    assert chosen == ["TestA", "TestB"]
    assert set(left_out) == {"TestShimOOMScore", "TestDaemonRestart"}
    assert main.select(names, "B$") == (["TestB"], {})
    assert main.select(names, "Restart") == ([], {"TestDaemonRestart": main._RESTART})


def test_missing_compares_passes_only() -> None:
    def run(target: str, **status: str) -> results.Run:
        return results.Run(target, {n: results.Result(n, s) for n, s in status.items()}, 0, "")

    ref = run("ref", TestA="PASS", TestB="PASS", TestC="SKIP", TestRestartMonitor="PASS")
    other = run("other", TestA="PASS", TestB="FAIL", TestC="FAIL", TestRestartMonitor="FAIL")
    assert results.missing(ref, other) == ["TestB", "TestRestartMonitor"]
    assert results.missing(ref, other, main.OWN_CONTAINERD) == ["TestB"]
