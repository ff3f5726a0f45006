"""Node objects -> GPU pools: what counts, what is skipped, what is free."""

from __future__ import annotations

from typing import Any

from nemotron_operator.api import names
from nemotron_operator.core.inventory import gpu_pools, gpus_requested_by_node, restrict_pools


def node(
    name: str,
    product: str | None = "NVIDIA-H100-80GB-HBM3",
    gpus: int | None = 8,
    memory_mib: int | None = 81559,
    **spec: Any,
) -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": name}
    if product is not None:
        labels[names.GPU_PRODUCT_LABEL] = product
    if memory_mib is not None:
        labels[names.GPU_MEMORY_LABEL] = str(memory_mib)
    labels[names.GPU_COMPUTE_MAJOR_LABEL] = "9"
    labels[names.GPU_COMPUTE_MINOR_LABEL] = "0"
    allocatable = {"cpu": "64"} | ({names.GPU_RESOURCE: str(gpus)} if gpus is not None else {})
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
        "status": {"allocatable": allocatable},
    }


def pod(node_name: str | None, gpus: int, phase: str = "Running") -> dict[str, Any]:
    resources = {"limits": {names.GPU_RESOURCE: str(gpus)}}
    return {
        "spec": {"nodeName": node_name, "containers": [{"name": "nim", "resources": resources}]},
        "status": {"phase": phase},
    }


def test_like_nodes_form_one_pool() -> None:
    pools = gpu_pools([node("b"), node("a"), node("c", gpus=4)])
    assert [(p.product, p.gpus_per_node, p.node_count) for p in pools] == [
        ("NVIDIA-H100-80GB-HBM3", 4, 1),
        ("NVIDIA-H100-80GB-HBM3", 8, 2),
    ]
    eight = pools[1]
    assert [n.name for n in eight.nodes] == ["a", "b"]
    assert (eight.memory_mib, eight.compute_capability) == (81559, (9, 0))


def test_cpu_only_cordoned_and_unlabelled_nodes_are_skipped() -> None:
    pools = gpu_pools(
        [
            node("cpu", product=None, gpus=None),
            node("zero", gpus=0),
            node("cordoned", unschedulable=True),
            node("no-gfd", product=None),
            node("ok"),
        ]
    )
    assert [n.name for p in pools for n in p.nodes] == ["ok"]


def test_missing_memory_label_is_left_for_the_catalog() -> None:
    (pool,) = gpu_pools([node("n", memory_mib=None)])
    assert pool.memory_mib is None


def test_mig_and_time_sliced_products_are_marked() -> None:
    mig, shared = gpu_pools(
        [
            node("mig", product="NVIDIA-A100-SXM4-40GB-MIG-1g.5gb", gpus=7, memory_mib=40960),
            node("ts", product="NVIDIA-L40S-SHARED", gpus=16, memory_mib=46068),
        ]
    )
    assert (mig.base_product, mig.mig, mig.memory_mib, mig.partitioned) == (
        "NVIDIA-A100-SXM4-40GB",
        True,
        5 * 1024,
        True,
    )
    assert (shared.base_product, shared.shared, shared.partitioned) == ("NVIDIA-L40S", True, True)


def test_free_gpus_subtract_bound_unfinished_pods() -> None:
    in_use = gpus_requested_by_node(
        [
            pod("a", 2),
            pod("a", 4),
            pod("a", 8, phase="Succeeded"),
            pod("b", 1, phase="Failed"),
            pod(None, 8, phase="Pending"),
        ]
    )
    assert in_use == {"a": 6}
    (pool,) = gpu_pools([node("a"), node("b")], in_use)
    assert [n.free_gpus for n in pool.nodes] == [2, 8]


def test_gpu_requests_count_init_containers_as_the_scheduler_does() -> None:
    busy = pod("a", 1)
    busy["spec"]["initContainers"] = [
        {"name": "warm", "resources": {"requests": {names.GPU_RESOURCE: "4"}}}
    ]
    assert gpus_requested_by_node([busy]) == {"a": 4}


def test_restrict_by_node_selector_and_taints() -> None:
    gpu_taint = {"key": names.GPU_TAINT_KEY, "value": "present", "effect": "NoSchedule"}
    team_taint = {"key": "team", "value": "a", "effect": "NoSchedule"}
    soft_taint = {"key": "spot", "effect": "PreferNoSchedule"}
    pools = gpu_pools(
        [
            node("plain", taints=[gpu_taint, soft_taint]),
            node("team-a", taints=[gpu_taint, team_taint]),
        ]
    )
    assert [n.name for p in restrict_pools(pools) for n in p.nodes] == ["plain"]
    tolerate = [{"key": "team", "operator": "Exists"}]
    assert [n.name for p in restrict_pools(pools, None, tolerate) for n in p.nodes] == [
        "plain",
        "team-a",
    ]
    wrong_value = [{"key": "team", "operator": "Equal", "value": "b"}]
    assert [n.name for p in restrict_pools(pools, None, wrong_value) for n in p.nodes] == ["plain"]
    selected = restrict_pools(pools, {"kubernetes.io/hostname": "team-a"}, [{"operator": "Exists"}])
    assert [n.name for p in selected for n in p.nodes] == ["team-a"]
    assert restrict_pools(pools, {"kubernetes.io/hostname": "nowhere"}) == []
