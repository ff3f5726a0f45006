"""Zero writes on a no-op converge, proven against the API server (issue 16): every child the
operator renders, for every example and for specs with non-canonical quantities and empty env
values, matches (drift.matches) the object the API server would store from it, so converging it
again finds no drift and writes nothing.

Each child goes through a server-side apply dry run in a test namespace: the answer is what the
API server would store (defaults, canonical quantities, empty fields dropped). LeaderWorkerSets
are left out (their API is not installed in this cluster by default); their pod template is the
Deployment's, which is checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nemotron_operator.api.types import NemotronDeploymentSpec
from nemotron_operator.core import render
from nemotron_operator.core.catalog import load_catalog
from nemotron_operator.core.drift import matches
from nemotron_operator.core.inventory import gpu_pools
from nemotron_operator.core.planner import plan
from nemotron_operator.shell import kube

from .conftest import Cluster

pytestmark = pytest.mark.e2e
EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
CATALOG = load_catalog()
BIG_NODES = [
    {
        "metadata": {
            "name": f"b200-{i}",
            "labels": {
                "nvidia.com/gpu.product": "NVIDIA-B200",
                "nvidia.com/gpu.memory": "183359",
                "nvidia.com/gpu.compute.major": "10",
                "nvidia.com/gpu.compute.minor": "0",
            },
        },
        "spec": {},
        "status": {"allocatable": {"nvidia.com/gpu": "8"}},
    }
    for i in range(8)
]


@pytest.fixture
def api_server(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kube, "api", lambda: cluster.api)


def stored_children(spec: dict[str, Any], namespace: str) -> list[tuple[dict, dict]]:
    """(rendered, as the API server would store it) for each child of `spec`."""
    validated = NemotronDeploymentSpec.model_validate(spec)
    planned = plan(validated, CATALOG, gpu_pools(BIG_NODES))
    assert planned.fits, planned.message
    owner = render.Owner(name="nd", namespace=namespace, uid="0f1e2d3c-0000-4000-8000-000000000000")
    children = render.render_children(
        owner, validated.model_dump(by_alias=True, mode="json"), planned, key_given=True
    )
    return [
        (child, kube.apply(child, dry_run=True, answer=True) or {})
        for child in children
        if child["kind"] != "LeaderWorkerSet"
    ]


def example_specs() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in EXAMPLES:
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") == "NemotronDeployment":
                found.append((f"{path.stem}/{document['metadata']['name']}", document["spec"]))
    return found


@pytest.mark.parametrize(("name", "spec"), example_specs(), ids=[n for n, _ in example_specs()])
def test_every_examples_children_match_what_the_api_server_stores(
    api_server: None, namespace: str, name: str, spec: dict[str, Any]
) -> None:
    # examples pin GPUs (one on purpose too few to fit): plan each on the B200 nodes instead
    spec = {key: value for key, value in spec.items() if key != "gpu"}
    for rendered, stored in stored_children(spec, namespace):
        assert matches(rendered, stored), f"{name}: {rendered['kind']} would be written again"


CPU = st.sampled_from([1, 8, "8", "0.5", "500m", "1.5", "2000m", "100m", "0.1"])
MEMORY = st.sampled_from(["1024Mi", "1Gi", "64G", "1.5Gi", "100000Ki", 1073741824, "2e9", "1Ti"])
ENV_VALUE = st.sampled_from(["", "x", "0", " "])


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    # apart, so that no request exceeds its limit (which the API server refuses)
    limits=st.fixed_dictionaries({}, optional={"memory": MEMORY}),
    requests=st.fixed_dictionaries({}, optional={"cpu": CPU, "ephemeral-storage": MEMORY}),
    env=st.lists(
        st.tuples(st.sampled_from(["A", "B", "EMPTY", "NIM_LOG_LEVEL"]), ENV_VALUE),
        max_size=4,
        unique_by=lambda e: e[0],
    ),
    cache_size=st.sampled_from([None, "100Gi", "102400Mi", "0.5Ti", "200G"]),
)
def test_non_canonical_quantities_and_empty_env_values_are_not_drift(
    api_server: None,
    namespace: str,
    limits: dict[str, Any],
    requests: dict[str, Any],
    env: list[tuple[str, str]],
    cache_size: str | None,
) -> None:
    spec: dict[str, Any] = {
        "model": "nemotron-3-nano",
        "resources": {"limits": limits, "requests": requests},
        "env": [{"name": name, "value": value} for name, value in env],
    }
    if cache_size:
        spec["cache"] = {"size": cache_size}
    for rendered, stored in stored_children(spec, namespace):
        assert matches(rendered, stored), f"{rendered['kind']} would be written again"
