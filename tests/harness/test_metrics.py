"""The gRPC metric families a process serves, counted by ``MethodCounts``."""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.harness.metrics import HANDLING_BUCKETS, GrpcServerMetrics


def _samples(registry: CollectorRegistry) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def test_counts_show_as_go_grpc_prometheus_families() -> None:
    registry = CollectorRegistry()
    metrics = GrpcServerMetrics(registry)
    before = time.time()
    get = metrics.method("unary", "containerd.services.images.v1.Images", "Get")
    metrics.method("unary", "containerd.services.images.v1.Images", "List")  # never called
    for elapsed, code in [(0.001, "OK"), (0.004, "NotFound"), (0.03, "OK"), (20.0, "OK")]:
        get.started += 1
        get.received += 1
        get.sent += code == "OK"
        get.done(code, elapsed)
    s = _samples(registry)
    labels = {
        "grpc_type": "unary",
        "grpc_service": "containerd.services.images.v1.Images",
        "grpc_method": "Get",
    }
    assert s["grpc_server_started_total"] == [(labels, 4.0)]
    assert s["grpc_server_msg_received_total"] == [(labels, 4.0)]
    assert s["grpc_server_msg_sent_total"] == [(labels, 3.0)]
    assert sorted((x["grpc_code"], v) for x, v in s["grpc_server_handled_total"]) == [
        ("NotFound", 1.0),
        ("OK", 3.0),
    ]
    buckets = {x["le"]: v for x, v in s["grpc_server_handling_seconds_bucket"]}
    assert len(buckets) == len(HANDLING_BUCKETS) + 1
    assert buckets["0.005"] == 2.0  # cumulative: 0.001 and 0.004
    assert buckets["0.025"] == 2.0
    assert buckets["0.05"] == 3.0
    assert buckets["10.0"] == 3.0
    assert buckets["+Inf"] == 4.0
    assert s["grpc_server_handling_seconds_count"] == [(labels, 4.0)]
    assert s["grpc_server_handling_seconds_sum"][0][1] == pytest.approx(20.035)
    # Every series says when it began; the method never called has none.
    for name in (
        "grpc_server_started_created",
        "grpc_server_handled_created",
        "grpc_server_msg_received_created",
        "grpc_server_msg_sent_created",
        "grpc_server_handling_seconds_created",
    ):
        assert s[name], name
        for x, when in s[name]:
            assert x["grpc_method"] == "Get"
            assert before - 1 <= when <= time.time()


def test_a_method_is_counted_in_one_place() -> None:
    metrics = GrpcServerMetrics(CollectorRegistry())
    first = metrics.method("unary", "s", "M")
    assert metrics.method("unary", "s", "M") is first
    assert metrics.method("server_stream", "s", "M") is not first
