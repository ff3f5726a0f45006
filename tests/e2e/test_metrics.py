"""The operator's /metrics as an SRE reads it: scraped over HTTP from the operator the suite runs,
while it brings a NemotronDeployment with an NGC key to Ready and another, which fits no GPU
here, to Stalled."""

from __future__ import annotations

import base64
import urllib.request
from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families

from nemotron_operator.api import names
from tests.standins.registry import VALID_KEY

from .conftest import Cluster, OperatorProcess, wait_until
from .nemotron import NemotronDeployments
from .observed import KEY_SECRET, put_key_secret

NANO_WITH_KEY = {
    "model": "nemotron-3-nano",
    "gpu": {"product": "NVIDIA-H100-80GB-HBM3"},
    "ngc": {"apiKeySecret": {"name": KEY_SECRET}},
}
NO_SUCH_GPU = names.PlanReason.GPU_PRODUCT_NOT_FOUND
NOWHERE = {"model": "nemotron-3-nano", "gpu": {"product": "NVIDIA-B300"}}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> tuple[str, Samples]:
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return text, samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, lb), v in samples.items() if n == name and wanted <= lb)


def gained(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return total(after, name, **labels) - total(before, name, **labels)


def test_metrics_show_the_converges_plans_writes_and_ready_deployment(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    _, before = scrape(operator.metrics_url)
    put_key_secret(cluster, namespace, VALID_KEY)
    nds = NemotronDeployments(cluster, namespace)
    nds.create("nano", NANO_WITH_KEY)
    nds.create("nowhere", NOWHERE)  # no such GPU: Stalled, what the alert fires on
    nds.wait_condition("nano", "Ready", "True", timeout=60)
    nds.wait_condition("nowhere", "Stalled", "True", NO_SUCH_GPU, timeout=60)
    ready = {"condition": "Ready", "status": "True", "reason": "Ready"}
    stalled = {"condition": "Stalled", "status": "True", "reason": NO_SUCH_GPU}

    def counted() -> tuple[str, Samples] | None:
        text, after = scrape(operator.metrics_url)
        if all(
            gained(before, after, "nemotron_operator_deployments", **labels) >= 1
            for labels in (ready, stalled)
        ):
            return text, after
        return None

    text, after = wait_until(counted, "the Ready and the Stalled deployment on /metrics", 30)

    def rose(name: str, **labels: str) -> float:
        return gained(before, after, name, **labels)

    assert rose("nemotron_operator_converges_total") >= 2  # created, then its pods got ready
    assert rose("nemotron_operator_converge_duration_seconds_count") >= 2
    assert rose("nemotron_operator_plans_total", outcome="Fits") >= 1
    assert rose("nemotron_operator_plans_total", outcome=NO_SUCH_GPU) >= 1
    # the registry is asked once per key and image (the session's operator may have asked
    # already for another test): counted under its answer, never once per converge
    assert rose("nemotron_operator_ngc_checks_total") <= 1
    assert total(after, "nemotron_operator_ngc_checks_total", answer="NGCEntitled") >= 1
    new_child = {"verb": "apply", "dry_run": "false", "code": "201"}  # an apply that creates
    assert rose("nemotron_operator_api_writes_total", kind="StatefulSet", **new_child) == 1
    assert rose("nemotron_operator_api_writes_total", kind="Service", **new_child) == 1
    # one write per new child: no dry run first
    assert rose("nemotron_operator_api_writes_total", kind="StatefulSet") == 1
    assert rose("nemotron_operator_api_writes_total", dry_run="true") == 0
    assert rose("nemotron_operator_api_writes_total", kind="NemotronDeployment", verb="status") >= 1
    assert rose("nemotron_operator_api_writes_total", kind="Event", verb="create") >= 1
    assert total(after, "nemotron_operator_workqueue_depth") >= 0
    assert total(after, "process_resident_memory_bytes") > 0
    for secret in (VALID_KEY, base64.b64encode(VALID_KEY.encode()).decode()):
        assert secret not in text
    assert not [line for line in text.splitlines() if namespace in line]  # no per-object series
    assert_bounded(after)


def assert_bounded(samples: Mapping[tuple[str, frozenset[tuple[str, str]]], float]) -> None:
    """Every label of the operator's series is one of a few known names."""
    allowed = {"outcome", "kind", "verb", "dry_run", "code", "answer", "resource", "le"}
    allowed |= {"condition", "status", "reason"}
    for name, labels in samples:
        if name.startswith("nemotron_operator_"):
            assert {key for key, _ in labels} <= allowed, (name, labels)
