"""Property fuzzing of what the operator reads from the cluster and writes back (issue 7, drill 7),
beside test_planner.py's and test_diagnose.py's properties: nodes and pods with any labels and
quantities a cluster may hold, the plan's children as rendered, and the status written.

No exception for any input, and every output valid: pools of whole numbers, children the API
would take in shape, a status the CRD's schema accepts.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nemotron_operator.api import names
from nemotron_operator.api.types import NemotronDeploymentStatus
from nemotron_operator.core import render
from nemotron_operator.core.catalog import load_catalog
from nemotron_operator.core.inventory import gpu_pools, gpus_requested_by_node
from nemotron_operator.core.planner import plan
from nemotron_operator.core.render import json_for_yaml
from nemotron_operator.core.status import Blocker, Observed, desired_status

from .test_planner import PRODUCTS, specs

CATALOG = load_catalog()
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

# what a label or quantity may hold on a real (or misconfigured) cluster
label_value = st.one_of(
    st.sampled_from(["", "0", "-1", "8", "80GB", "1e3", "9", "x", "undefined", "81559", "  8 "]),
    st.text(max_size=12),
    st.integers(-(10**6), 10**7).map(str),
)
quantity = st.one_of(label_value, st.integers(-5, 10**6), st.none(), st.floats(-1, 1e6))


@st.composite
def nodes(draw: st.DrawFn, index: int = 0) -> dict[str, Any]:
    labels: dict[str, Any] = {}
    for label in (
        names.GPU_PRODUCT_LABEL,
        names.GPU_MEMORY_LABEL,
        names.GPU_COUNT_LABEL,
        names.GPU_COMPUTE_MAJOR_LABEL,
        names.GPU_COMPUTE_MINOR_LABEL,
        names.GPU_FAMILY_LABEL,
    ):
        if draw(st.booleans()):
            labels[label] = draw(
                st.sampled_from(PRODUCTS) if label == names.GPU_PRODUCT_LABEL else label_value
            )
    node: dict[str, Any] = {"metadata": {"name": f"n{index}", "labels": labels}}
    if draw(st.booleans()):
        node["status"] = {"allocatable": {names.GPU_RESOURCE: draw(quantity)}}
    if draw(st.booleans()):
        node["spec"] = {
            "unschedulable": draw(st.booleans()),
            "taints": draw(
                st.lists(
                    st.fixed_dictionaries(
                        {"key": st.sampled_from([names.GPU_TAINT_KEY, "other", ""])},
                        optional={
                            "effect": st.sampled_from(["NoSchedule", "NoExecute", "Other"]),
                            "value": label_value,
                        },
                    ),
                    max_size=2,
                )
            ),
        }
    return node


@st.composite
def pods(draw: st.DrawFn) -> dict[str, Any]:
    resources = {"limits": {names.GPU_RESOURCE: draw(quantity)}}
    if draw(st.booleans()):
        resources["requests"] = {names.GPU_RESOURCE: draw(quantity)}
    return {
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {
            "nodeName": draw(st.sampled_from(["n0", "n1", "n2", None])),
            "containers": [{"name": "c", "resources": resources}],
        },
        "status": {"phase": draw(st.sampled_from(["Running", "Pending", "Succeeded", "Failed"]))},
    }


@st.composite
def clusters(draw: st.DrawFn) -> list[Any]:
    found = [draw(nodes(i)) for i in range(draw(st.integers(0, 4)))]
    in_use = gpus_requested_by_node(draw(st.lists(pods(), max_size=4)))
    return gpu_pools(found, in_use)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(nodes(), max_size=4), st.lists(pods(), max_size=4))
def test_nodes_and_pods_with_any_labels_and_quantities_give_valid_pools(
    found: list[dict[str, Any]], running: list[dict[str, Any]]
) -> None:
    in_use = gpus_requested_by_node(running)
    assert all(isinstance(n, int) and n >= 0 for n in in_use.values())
    for pool in gpu_pools(found, in_use):
        assert pool.gpus_per_node > 0
        assert pool.memory_mib is None or pool.memory_mib > 0
        assert pool.nodes and all(0 <= n.free_gpus <= pool.gpus_per_node for n in pool.nodes)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs(), clusters())
def test_any_spec_on_any_cluster_is_planned_and_rendered_into_valid_children(
    spec_: Any, pools: list[Any]
) -> None:
    result = plan(spec_, CATALOG, pools)
    assert result.reason and result.message
    if not result.fits:
        return
    spec = spec_.model_dump(by_alias=True, mode="json")
    owner = render.Owner(name="nd", namespace="ns", uid="0000")
    try:
        children = render.render_children(owner, spec, result, key_given=True)
    except render.RenderError:
        return  # a reason the status reports (RenderFailed)
    kinds = [c["kind"] for c in children]
    assert kinds.count("Service") == 1
    assert sum(kinds.count(kind) for kind in render.WORKLOAD_KINDS) == 1
    for child in children:
        meta = child["metadata"]
        assert meta["namespace"] == "ns" and meta["name"].startswith("nd")
        assert meta["labels"][names.DEPLOYMENT_LABEL] == "nd"
        assert child.get("kind") == "PersistentVolumeClaim" or meta["ownerReferences"]
        assert json_for_yaml(child)  # the apply body can be written
    workload = next(c for c in children if c["kind"] in render.WORKLOAD_KINDS)
    text = json_for_yaml(workload)
    per_node = str((result.gpus_per_replica or 0) // (result.nodes_per_replica or 1))
    assert f'"{names.GPU_RESOURCE}": "{per_node}"' in text


workload_status = st.none() | st.fixed_dictionaries(
    {},
    optional={
        "status": st.fixed_dictionaries(
            {},
            optional={
                "replicas": st.integers(0, 5) | st.none(),
                "readyReplicas": st.integers(0, 5) | st.none(),
                "updatedReplicas": st.integers(0, 5) | st.none(),
            },
        )
    },
)


@settings(max_examples=300, deadline=None)
@given(
    specs(),
    clusters(),
    workload_status,
    st.integers(0, 4),
    st.sampled_from([None, "Planned", "CredentialsValid", "Progressing"]),
    st.integers(1, 10**6),
)
def test_the_status_written_is_one_the_crd_accepts(
    spec_: Any,
    pools: list[Any],
    workload: Any,
    replicas: int,
    blocked_by: str | None,
    generation: int,
) -> None:
    result = plan(spec_, CATALOG, pools)
    blocker = None
    if not result.fits:
        blocker = Blocker(names.ConditionType.PLANNED, result.reason, result.message)
    elif blocked_by is not None:
        blocker = Blocker(blocked_by, "ChildRejected", "refused")
    observed = Observed(
        generation=generation,
        plan=result,
        blocker=blocker,
        credentials=None,
        replicas=replicas,
        workload=workload,
        diagnosis=None,
        endpoint="http://nd.ns.svc:8000/v1",
        selector=f"{names.DEPLOYMENT_LABEL}=nd",
    )
    first = desired_status(observed, None, NOW)
    again = desired_status(observed, first, NOW + dt.timedelta(minutes=5))
    NemotronDeploymentStatus.model_validate(first)
    assert again["conditions"] == first["conditions"]  # unchanged facts keep their times
    types = [c["type"] for c in first["conditions"]]
    assert len(types) == len(set(types)) and "Ready" in types and "Planned" in types
    assert all(c["observedGeneration"] == generation for c in first["conditions"])
