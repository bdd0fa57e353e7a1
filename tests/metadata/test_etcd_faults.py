"""berthd on etcd when etcd fails: a 3-member cluster losing one member, then
its quorum, then getting it back; etcd down when berthd starts; a config
that cannot work; TLS.  Real etcd members (killed by pid), real ``ctr``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from api.grpc.health.v1 import health_pb2, health_pb2_grpc
from daemon.metadata import records
from daemon.metadata.etcd.settings import resolve
from daemon.metadata.store import NAMESPACES
from tests.metadata.berthd import config_toml, etcd_toml, metadata_berthd, metadata_exports
from tests.metadata.stores import open_etcd
from tests.support import PYTHON, REPO, need_root, short_tmpdir
from tests.support.berthd import Berthd, wait_until
from tests.support.containerd import need_containerd
from tests.support.etcd import EtcdCluster, etcd_cluster, need_etcd
from tests.support.oci import build_image_tar
from tests.support.tls import make_pki

pytestmark = [pytest.mark.etcd]

SN = ("--snapshotter", "native")
IMAGES = "containerd.services.images.v1.Images"


def rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines()[1:] if line.strip()]


def health(b: Berthd, service: str) -> int:
    with b.channel() as ch:
        resp = health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
    return int(resp.status)


def ctr_works(b: Berthd) -> bool:
    return b.ctr("namespaces", "ls", check=False).returncode == 0


def assert_etcd_unavailable(out: subprocess.CompletedProcess[str]) -> None:
    assert out.returncode != 0, out.stdout
    err = out.stderr.lower()
    assert "etcd" in err and "unavailable" in err, out.stderr


@pytest.fixture
def tools() -> None:
    need_etcd()
    need_containerd()
    need_root()


@pytest.mark.slow
@pytest.mark.containerd
@pytest.mark.root
def test_one_member_lost_serves_quorum_lost_fails_and_recovers(tools: None) -> None:
    with short_tmpdir("bq") as d, etcd_cluster(d / "etcd", 3) as cluster:
        extra = etcd_toml(cluster.endpoints, "/q", "q", request_timeout="2s")
        tar = build_image_tar(d / "img.tar", "docker.io/library/q:1", layers=[{"a": b"a"}])
        tar2 = build_image_tar(d / "img2.tar", "docker.io/library/q:2", layers=[{"b": b"b"}])
        with metadata_berthd(d / "node", extra) as b:
            b.ctr("images", "import", *SN, str(tar))
            b.ctr("namespaces", "create", "before")

            cluster.kill(0)  # the cluster keeps its quorum: berthd serves on
            b.ctr("namespaces", "create", "one-down")
            b.ctr("images", "import", *SN, str(tar2))
            b.ctr("containers", "create", *SN, "docker.io/library/q:2", "c1")
            assert [r[0] for r in rows(b.ctr("images", "ls").stdout)] == [
                "docker.io/library/q:1",
                "docker.io/library/q:2",
            ]

            cluster.kill(1)  # quorum lost
            assert_etcd_unavailable(b.ctr("namespaces", "create", "no-quorum", check=False))
            assert_etcd_unavailable(b.ctr("images", "ls", check=False))
            assert_etcd_unavailable(b.ctr("containers", "create", *SN, "x", "c2", check=False))
            # The daemon itself stays up and says what is wrong.
            assert b.ctr("version").returncode == 0
            assert "io.containerd.metadata.v1" in b.ctr("plugins", "ls").stdout
            wait_until(lambda: metadata_exports(b)["state"].startswith("unavailable"), 20, "state")
            assert health(b, IMAGES) == health_pb2.HealthCheckResponse.NOT_SERVING

            cluster.start_member(0)
            cluster.start_member(1)
            cluster.wait_healthy()
            wait_until(lambda: ctr_works(b), 30, "berthd working again")
            wait_until(lambda: metadata_exports(b)["state"] == "ok", 20, "state ok")
            assert health(b, IMAGES) == health_pb2.HealthCheckResponse.SERVING
            # Nothing acknowledged earlier is lost.
            names = b.ctr("namespaces", "ls", "-q").stdout.split()
            assert {"before", "one-down"} <= set(names) and "no-quorum" not in names
            assert len(rows(b.ctr("images", "ls").stdout)) == 2
            assert [r[0] for r in rows(b.ctr("containers", "ls").stdout)] == ["c1"]
            b.ctr("namespaces", "create", "after")
            check = rows(b.ctr("images", "check", *SN).stdout)
            assert all("complete" in r for r in check)


@pytest.mark.containerd
@pytest.mark.root
def test_started_while_etcd_is_down_it_reports_and_recovers(tools: None) -> None:
    with short_tmpdir("bd") as d:
        cluster = EtcdCluster(d / "etcd", 1)  # ports chosen, nothing started
        extra = etcd_toml(cluster.endpoints, "/down", "down", request_timeout="1s")
        try:
            with metadata_berthd(d / "node", extra) as b:
                exports = metadata_exports(b)
                assert exports["state"].startswith("unavailable"), exports
                assert_etcd_unavailable(b.ctr("namespaces", "ls", check=False))
                assert health(b, IMAGES) == health_pb2.HealthCheckResponse.NOT_SERVING
                cluster.start()
                wait_until(lambda: ctr_works(b), 30, "berthd to reach etcd")
                wait_until(lambda: metadata_exports(b)["state"] == "ok", 20, "state ok")
                assert metadata_exports(b)["nodes"] == "down"
                b.ctr("namespaces", "create", "up-now")
                assert "up-now" in b.ctr("namespaces", "ls", "-q").stdout.split()
        finally:
            cluster.stop()


def _config_error(tmp: Path, section: str) -> str:
    """``berthd config dump`` on a config whose metadata section is ``section``;
    the one-line error (the daemon fails the same way before serving)."""
    path = tmp / "config.toml"
    path.write_text(config_toml(tmp, section))
    out = subprocess.run(
        [PYTHON, "-m", "daemon.cli", "--config", str(path), "config", "dump"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert out.returncode != 0, out.stdout
    return out.stderr


KEY = 'plugins."io.containerd.metadata.v1.berthd"'
SECTION = f'[{KEY}]\n  backend = "etcd"\n'


@pytest.mark.parametrize(
    ("body", "key", "says"),
    [
        ("", "endpoints", "at least one etcd endpoint"),
        ('endpoints = ["http://etcd.invalid:2379"]', "endpoints", "does not resolve"),
        ('endpoints = ["http://127.0.0.1:70000"]', "endpoints", "invalid port"),
        ('endpoints = ["ftp://127.0.0.1:2379"]', "endpoints", "scheme"),
        (
            'endpoints = ["https://127.0.0.1:2379"]\n  ca = "/nonexistent/ca.pem"',
            "ca",
            "cannot read",
        ),
    ],
)
def test_a_config_that_cannot_work_names_the_key(
    tmp_path: Path, body: str, key: str, says: str
) -> None:
    err = _config_error(tmp_path, SECTION + "  " + body + "\n")
    assert f"{KEY}.{key}:" in err and says in err, err


def test_bad_tls_files_name_their_key(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    eps = 'endpoints = ["https://127.0.0.1:2379"]'
    cc, other = pki.client_cert, pki.other_key
    cases = [
        (f'{eps}\n  ca = "{junk}"', "ca", "no PEM CA certificate"),
        (f'{eps}\n  ca = "{pki.ca}"\n  cert = "{junk}"\n  key = "{pki.client_key}"', "cert", "PEM"),
        (f'{eps}\n  cert = "{cc}"\n  key = "{other}"', "key", "not the private key"),
        (f'{eps}\n  cert = "{pki.client_cert}"', "key", "needs its key"),
        ('endpoints = ["http://127.0.0.1:2379"]\n  ca = "' + str(pki.ca) + '"', "endpoints", "TLS"),
    ]  # fmt: skip
    for body, key, says in cases:
        err = _config_error(tmp_path, SECTION + "  " + body + "\n")
        assert f"{KEY}.{key}:" in err and says in err, (body, err)


@pytest.mark.containerd
@pytest.mark.root
def test_the_daemon_refuses_to_start_on_a_bad_config(tools: None) -> None:
    with short_tmpdir("bb") as d:
        b = metadata_berthd(d, SECTION)
        with pytest.raises(RuntimeError, match=r"endpoints: .*at least one etcd endpoint"):
            b.start(timeout=30)
        b.stop()


async def test_tls_with_client_certificates(tmp_path: Path) -> None:
    need_etcd()
    pki = make_pki(tmp_path / "pki")
    with short_tmpdir("et") as d, etcd_cluster(d, 1, tls=pki) as cluster:
        good = resolve(
            endpoints=cluster.endpoints,
            ca=str(pki.ca),
            cert=str(pki.client_cert),
            key=str(pki.client_key),
            prefix="/tls",
            node="t",
            dial_timeout="3s",
            request_timeout="3s",
            lease_ttl="3s",
            max_txn_ops=128,
        )
        store = await open_etcd(good, tmp_path / "n")
        try:
            await store.update(lambda tx: tx.put(NAMESPACES, records.Namespace("over-tls")))
            names = await store.view(lambda tx: [n.name for n in tx.scan(NAMESPACES)])
            assert names == ["over-tls"] and store.up
        finally:
            await store.close()
        no_cert = resolve(
            endpoints=cluster.endpoints,
            ca=str(pki.ca),
            cert="",
            key="",
            prefix="/tls",
            node="u",
            dial_timeout="1s",
            request_timeout="1s",
            lease_ttl="3s",
            max_txn_ops=128,
        )
        refused = await open_etcd(no_cert, tmp_path / "u")
        try:
            assert not refused.up
        finally:
            await refused.close()
