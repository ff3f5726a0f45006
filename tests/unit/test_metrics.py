"""The operator's metrics (shell/metrics.py), counted through the controller and converge built
with fakes (test_controller.py), the real API client with a fake connection, and the watches.

The metrics live in one process-wide registry, as in the operator: each test reads what its own
steps added (`Delta`), never totals other tests may have raised."""

from __future__ import annotations

import io
import json
import socket
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from nemotron_operator.api import names
from nemotron_operator.shell import kube, metrics
from nemotron_operator.shell.namespace_watches import NamespaceWatches, WatchedKind
from nemotron_operator.shell.settings import DEFAULT_METRICS_PORT, Settings

from .test_controller import deployment, rig, work

P = "nemotron_operator_"


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(P + name, labels) or 0.0


class Delta:
    """What the samples named gained between construction and `__call__`."""

    def __init__(self, *series: tuple[str, Mapping[str, str]]) -> None:
        self.series = series
        self.before = [sample(name, **labels) for name, labels in series]

    def __call__(self) -> list[float]:
        return [sample(n, **lb) - b for (n, lb), b in zip(self.series, self.before, strict=True)]


def converges(outcome: str) -> tuple[str, Mapping[str, str]]:
    return "converges_total", {"outcome": outcome}


CONVERGE_COUNT = ("converge_duration_seconds_count", {})


# --- converges, plans, NGC checks, retries ------------------------------------------------------


def test_a_converge_is_timed_and_counted_as_requeued_when_it_is_due_again() -> None:
    r = rig(deployment("nano"))  # keyless: the anonymous pull answer is asked again in 600 s
    delta = Delta(converges("ok"), converges("requeued"), converges("error"), CONVERGE_COUNT)
    r.controller.enqueue(("team-a", "nano"))
    work(r)
    assert delta() == [0, 1, 0, 1]


def test_a_converge_with_nothing_due_later_counts_as_ok() -> None:
    r = rig(deployment("big", gpu={"product": "NVIDIA-H100-80GB-HBM3"}))  # no such GPU here
    delta = Delta(converges("ok"), converges("requeued"))
    r.controller.enqueue(("team-a", "big"))
    work(r)
    assert delta() == [1, 0]


def test_a_failed_converge_counts_as_an_error_and_a_retry() -> None:
    r = rig(deployment("nano"))
    r.cluster.fail_with = RuntimeError("the API server is away")
    delta = Delta(converges("error"), ("workqueue_retries_total", {}), CONVERGE_COUNT)
    r.controller.enqueue(("team-a", "nano"))
    work(r)
    assert delta() == [1, 1, 1]


def test_plans_are_counted_by_outcome() -> None:
    r = rig(deployment("nano"), deployment("big", gpu={"product": "NVIDIA-H100-80GB-HBM3"}))
    delta = Delta(
        ("plans_total", {"outcome": "Fits"}),
        ("plans_total", {"outcome": names.PlanReason.GPU_PRODUCT_NOT_FOUND}),
    )
    r.controller.enqueue(("team-a", "nano"))
    r.controller.enqueue(("team-a", "big"))
    work(r)
    assert delta() == [1, 1]


def test_ngc_checks_count_the_registrys_answers_not_the_ones_kept() -> None:
    r = rig(deployment("nano"))
    allowed = ("ngc_checks_total", {"answer": names.NimReason.ANONYMOUS_PULL_ALLOWED})
    delta = Delta(allowed)
    for _ in range(3):
        r.controller.enqueue(("team-a", "nano"))
        work(r)
    assert len(r.registry.asked) == 1
    assert delta() == [1]


def test_a_reason_the_operator_does_not_write_counts_as_other() -> None:
    delta = Delta(("plans_total", {"outcome": "Other"}))
    metrics.plan_made("SomethingAPersonWrote")
    assert delta() == [1]
    assert sample("plans_total", outcome="SomethingAPersonWrote") == 0


# --- what the controller holds, at scrape time --------------------------------------------------


@pytest.fixture
def followed() -> Iterator[None]:
    yield
    metrics.CONTROLLER_STATE.controller = None


def with_conditions(name: str, *conditions: tuple[str, str, str]) -> dict[str, Any]:
    body = deployment(name)
    body["status"] = {
        "conditions": [{"type": t, "status": s, "reason": why} for t, s, why in conditions]
    }
    return body


def test_deployments_are_counted_by_condition_from_the_controllers_index(followed: None) -> None:
    r = rig(
        with_conditions("a", ("Ready", "True", "Ready"), ("Planned", "True", "Fits")),
        with_conditions("b", ("Ready", "True", "Ready")),
        with_conditions("c", ("Ready", "False", "NGCNotEntitled"), ("Shiny", "True", "Yes")),
        with_conditions("d", ("Ready", "False", "HandWritten")),
    )
    metrics.follow(r.controller)

    def deployments(condition: str, status: str, reason: str) -> float | None:
        return metrics.REGISTRY.get_sample_value(
            P + "deployments", {"condition": condition, "status": status, "reason": reason}
        )

    assert deployments("Ready", "True", "Ready") == 2
    assert deployments("Planned", "True", "Fits") == 1
    assert deployments("Ready", "False", "NGCNotEntitled") == 1
    assert deployments("Ready", "False", "Other") == 1
    assert deployments("Shiny", "True", "Yes") is None  # a type the operator does not write
    r.deployments.pop(("team-a", "a"))  # deleted: the next scrape no longer counts it
    assert deployments("Ready", "True", "Ready") == 1
    assert deployments("Planned", "True", "Fits") is None


def test_the_work_queue_depth_is_read_at_scrape_time(followed: None) -> None:
    h100 = {"product": "NVIDIA-H100-80GB-HBM3"}  # none here: converged once, not due again
    r = rig(deployment("a", gpu=h100), deployment("b", gpu=h100))
    assert metrics.REGISTRY.get_sample_value(P + "workqueue_depth") is None  # no controller yet
    metrics.follow(r.controller)
    assert sample("workqueue_depth") == 0
    r.controller.enqueue(("team-a", "a"))
    r.controller.enqueue(("team-a", "b"))
    r.controller.queue.add_after(("team-a", "c"), 30)
    assert sample("workqueue_depth") == 3
    work(r)
    assert sample("workqueue_depth") == 1  # the one due in 30 s


# --- API writes, where every request of the operator's API client goes -------------------------


class FakeConnection:
    """Stands in for urllib3's pool under the real API client: records each request and answers
    `status` with `body`."""

    def __init__(self) -> None:
        self.status = 200
        self.body: Mapping[str, Any] | bytes = {}  # bytes: a text answer (a log)
        self.requests: list[tuple[str, str]] = []

    def request(self, method: str, url: str, **_: Any) -> urllib3.HTTPResponse:
        self.requests.append((method, url))
        data = self.body if isinstance(self.body, bytes) else json.dumps(self.body).encode()
        return urllib3.HTTPResponse(
            body=io.BytesIO(data), status=self.status, preload_content=False, reason="x"
        )


@pytest.fixture
def connection(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeConnection]:
    fake = FakeConnection()
    monkeypatch.setattr(config, "load_incluster_config", lambda: None)
    monkeypatch.setattr(
        client.Configuration, "get_default_copy", lambda: client.Configuration(host="http://api")
    )
    kube.api.cache_clear()
    kube.api().rest_client.pool_manager = fake
    yield fake
    kube.api.cache_clear()


def writes(kind: str, verb: str, dry_run: str = "false", code: str = "200") -> tuple[str, Any]:
    return "api_writes_total", {"kind": kind, "verb": verb, "dry_run": dry_run, "code": code}


CHILD = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"namespace": "team-a", "name": "nano"},
    "spec": {"replicas": 1},
}
OWNER = {"metadata": {"namespace": "team-a", "name": "nano", "uid": "u-1"}}


def test_each_write_is_counted_by_kind_and_verb_and_dry_runs_apart(
    connection: FakeConnection,
) -> None:
    delta = Delta(
        writes("Deployment", "apply"),
        writes("Deployment", "apply", dry_run="true"),
        writes("Deployment", "patch"),
        writes("Job", "delete"),
        writes(names.KIND, "status"),
        writes("Event", "create"),
    )
    kube.apply(CHILD)
    kube.apply(CHILD, dry_run=True)
    kube.apply(CHILD, dry_run=True)
    kube.merge_patch(CHILD)
    kube.delete_child("Job", "team-a", "nano-download")
    kube.patch_status("team-a", "nano", {"observedGeneration": 1})
    kube.post_event(OWNER, "Normal", "Ready", "serving")
    assert delta() == [1, 2, 1, 1, 1, 1]
    assert len(connection.requests) == 7


def test_a_refused_write_is_counted_with_its_code_and_reads_are_not_counted(
    connection: FakeConnection,
) -> None:
    delta = Delta(writes("Deployment", "apply", code="422"), writes("Deployment", "apply"))
    connection.status, connection.body = 422, {"message": "spec.replicas: Invalid value"}
    with pytest.raises(kube.ChildRejected):
        kube.apply(CHILD)
    connection.status, connection.body = 200, {"data": {}}
    before = sum(
        s.value for m in metrics.API_WRITES.collect() for s in m.samples if s.name.endswith("total")
    )
    kube.read_config_map_value("team-a", "config", "config.json")
    after = sum(
        s.value for m in metrics.API_WRITES.collect() for s in m.samples if s.name.endswith("total")
    )
    assert delta() == [1, 0]
    assert after == before
    assert connection.requests[-1][0] == "GET"


def test_a_write_that_gets_no_answer_is_counted_as_none(connection: FakeConnection) -> None:
    def unreachable(method: str, url: str, **_: Any) -> Any:
        raise urllib3.exceptions.MaxRetryError(None, url, "connection refused")  # type: ignore[arg-type]

    connection.request = unreachable  # type: ignore[method-assign]
    delta = Delta(writes(names.KIND, "status", code="none"))
    with pytest.raises(urllib3.exceptions.MaxRetryError):
        kube.patch_status("team-a", "nano", {"observedGeneration": 1})
    assert delta() == [1]


# --- watch restarts -------------------------------------------------------------------------


class Listener:
    def __init__(self, rounds: int) -> None:
        self.rounds = rounds

    def needed(self, namespace: str) -> bool:
        self.rounds -= 1
        return self.rounds >= 0

    def listed(self, namespace: str, items: list[dict[str, Any]]) -> None:
        pass

    def changed(self, namespace: str, event: str, obj: dict[str, Any]) -> None:
        pass

    def lost(self, namespace: str) -> None:
        pass


def test_the_operators_own_watches_count_each_new_list_after_a_gap() -> None:
    watches = NamespaceWatches(WatchedKind("Secrets", "api/v1", "secrets"), Listener(rounds=3))
    lists = iter([ApiException(status=410), ("5", []), ("9", [])])
    streams = iter([[{"type": "ERROR", "object": {"code": 410}}], []])

    def list_(namespace: str) -> tuple[str, list[Any]]:
        answer = next(lists)
        if isinstance(answer, Exception):
            raise answer
        return answer

    watches._list = list_  # type: ignore[method-assign]
    watches._events = lambda namespace, version: iter(next(streams))  # type: ignore[method-assign]
    delta = Delta(("watch_restarts_total", {"resource": "secrets"}))
    watches._watch("team-a")  # a 410 at the list, a 410 in the stream, then a quiet watch
    assert delta() == [2]


def test_kopfs_watch_restarts_are_the_lists_after_a_streams_first() -> None:
    class Resource:
        def __init__(self, plural: str) -> None:
            self.plural = plural

    started: list[tuple[str, str]] = []

    def continuous_watch(*, resource: Resource, namespace: str, **_: Any) -> Iterator[None]:
        started.append((resource.plural, namespace))
        return iter(())

    watch = metrics.counting_kopf_restarts(continuous_watch)
    delta = Delta(
        ("watch_restarts_total", {"resource": "pods"}),
        ("watch_restarts_total", {"resource": "nodes"}),
    )
    watch(resource=Resource("pods"), namespace="team-a")
    watch(resource=Resource("pods"), namespace="team-b")
    watch(resource=Resource("nodes"), namespace=None)
    assert delta() == [0, 0]
    watch(resource=Resource("pods"), namespace="team-a")
    assert delta() == [1, 0]
    assert len(started) == 4


# --- settings ---------------------------------------------------------------------------------


def test_the_metrics_port_comes_from_the_environment_and_0_turns_it_off() -> None:
    assert Settings.build({}).metrics_port == DEFAULT_METRICS_PORT
    assert Settings.build({"NEMOTRON_METRICS_PORT": "9100"}).metrics_port == 9100
    assert Settings.build({"NEMOTRON_METRICS_PORT": "0"}).metrics_port == 0


@pytest.mark.parametrize("value", ["http", "-1", "70000"])
def test_a_metrics_port_that_is_no_port_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="NEMOTRON_METRICS_PORT must be a port number"):
        Settings.build({"NEMOTRON_METRICS_PORT": value})


def test_the_metrics_port_may_not_be_the_liveness_endpoints() -> None:
    with pytest.raises(ValueError, match="is the port of the liveness endpoint"):
        Settings.build(
            {"NEMOTRON_METRICS_PORT": "8080"}, liveness_endpoint="http://0.0.0.0:8080/healthz"
        )
    settings = Settings.build({}, liveness_endpoint="http://0.0.0.0:8080/healthz")
    assert settings.metrics_port == DEFAULT_METRICS_PORT != 8080


# --- serving ------------------------------------------------------------------------------------


def test_metrics_are_served_over_http_and_a_taken_port_leaves_the_operator_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        port = taken.getsockname()[1]
        taken.listen()
        assert metrics.serve(port) is None  # logs, does not raise
        assert f"cannot serve metrics on port {port}" in caplog.text
    server = metrics.serve(port)  # free now
    assert server is not None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert "# TYPE nemotron_operator_converges_total counter" in text
    assert "# TYPE nemotron_operator_converge_duration_seconds histogram" in text
