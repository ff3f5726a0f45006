"""GPU inventory: Node objects (as the API returns them, plain dicts) -> pools of like GPUs.

A pool is a set of schedulable nodes with the same GPU product, memory, compute capability and
GPUs per node; the planner places a replica inside one pool (tensor parallel within a node,
pipeline parallel across the pool's nodes). Pure: no cluster access.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from nemotron_operator.api import names

_BLOCKING_EFFECTS = frozenset({"NoSchedule", "NoExecute"})
_MIG_MEMORY = re.compile(r"\.(\d+)gb$")
_FINISHED_POD_PHASES = frozenset({"Succeeded", "Failed"})


@dataclass(frozen=True)
class GpuNode:
    name: str
    labels: Mapping[str, str]
    blocking_taints: tuple[Mapping[str, Any], ...]
    free_gpus: int


@dataclass(frozen=True)
class GpuPool:
    product: str  # the gpu.product label as the nodes carry it
    base_product: str  # without the -SHARED / -MIG-... suffix: the catalog's key
    memory_mib: int | None  # of one GPU (or one MIG slice); None when unlabelled
    compute_capability: tuple[int, int] | None
    gpus_per_node: int
    mig: bool  # MIG slices: NIM LLM containers cannot use them
    shared: bool  # time-sliced GPUs: memory is shared with other pods
    nodes: tuple[GpuNode, ...]

    @property
    def node_count(self) -> int:
        return len(self.nodes)

    @property
    def partitioned(self) -> bool:
        return self.mig or self.shared

    @functools.cached_property
    def untainted(self) -> bool:
        """No node has a taint (other than the GPU taint) that keeps pods off."""
        return not any(node.blocking_taints for node in self.nodes)


def _int(value: Any) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def _gpu_request(resources: Mapping[str, Any] | None) -> int:
    resources = resources or {}
    for section in ("limits", "requests"):
        count = _int((resources.get(section) or {}).get(names.GPU_RESOURCE))
        if count and count > 0:
            return count
    return 0


def gpus_requested_by_node(pods: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """GPUs that bound, unfinished pods hold on each node (node name -> GPUs)."""
    in_use: dict[str, int] = {}
    for pod in pods:
        spec = pod.get("spec") or {}
        node = spec.get("nodeName")
        if not node or (pod.get("status") or {}).get("phase") in _FINISHED_POD_PHASES:
            continue
        containers = sum(_gpu_request(c.get("resources")) for c in spec.get("containers") or [])
        init = max(
            (_gpu_request(c.get("resources")) for c in spec.get("initContainers") or []), default=0
        )
        in_use[node] = in_use.get(node, 0) + max(containers, init)
    return in_use


def _split_product(product: str) -> tuple[str, bool, bool, int | None]:
    """(base product, mig, shared, MIG slice memory in MiB) of a gpu.product label."""
    shared = product.endswith(names.SHARED_PRODUCT_SUFFIX)
    if shared:
        product = product.removesuffix(names.SHARED_PRODUCT_SUFFIX)
    base, marker, slice_name = product.partition(names.MIG_PRODUCT_MARKER)
    if not marker:
        return product, False, shared, None
    slice_memory = _MIG_MEMORY.search(slice_name)
    return base, True, shared, int(slice_memory.group(1)) * 1024 if slice_memory else None


def _gpu_node(
    node: Mapping[str, Any], in_use: Mapping[str, int]
) -> tuple[tuple[Any, ...], GpuNode] | None:
    metadata = node.get("metadata") or {}
    spec = node.get("spec") or {}
    labels = metadata.get("labels") or {}
    gpus = _int((node.get("status") or {}).get("allocatable", {}).get(names.GPU_RESOURCE))
    product = labels.get(names.GPU_PRODUCT_LABEL)
    if spec.get("unschedulable") or not gpus or gpus < 0 or not product:
        return None
    base, mig, shared, slice_mib = _split_product(product)
    major = _int(labels.get(names.GPU_COMPUTE_MAJOR_LABEL))
    minor = _int(labels.get(names.GPU_COMPUTE_MINOR_LABEL))
    compute_capability = (major, minor) if major is not None and minor is not None else None
    memory_mib = slice_mib or _int(labels.get(names.GPU_MEMORY_LABEL))
    if memory_mib is not None and memory_mib <= 0:
        memory_mib = None  # a label that says nothing: as if unlabelled
    name = metadata.get("name", "")
    taints = tuple(
        taint
        for taint in spec.get("taints") or []
        if taint.get("effect") in _BLOCKING_EFFECTS and taint.get("key") != names.GPU_TAINT_KEY
    )
    key = (product, base, memory_mib, compute_capability, gpus, mig, shared)
    return key, GpuNode(name, labels, taints, max(gpus - in_use.get(name, 0), 0))


def gpu_pools(
    nodes: Iterable[Mapping[str, Any]], gpus_in_use: Mapping[str, int] | None = None
) -> list[GpuPool]:
    """Pools of schedulable GPU nodes. Nodes without GPUs or without the gpu.product label,
    and cordoned nodes, are left out; `gpus_in_use` (node name -> GPUs, see
    gpus_requested_by_node) sets the free GPUs per node."""
    grouped: dict[tuple[Any, ...], list[GpuNode]] = {}
    for node in nodes:
        entry = _gpu_node(node, gpus_in_use or {})
        if entry is not None:
            grouped.setdefault(entry[0], []).append(entry[1])
    pools = [
        GpuPool(
            product=product,
            base_product=base,
            memory_mib=memory_mib,
            compute_capability=compute_capability,
            gpus_per_node=gpus,
            mig=mig,
            shared=shared,
            nodes=tuple(sorted(members, key=lambda n: n.name)),
        )
        for (product, base, memory_mib, compute_capability, gpus, mig, shared), members in (
            grouped.items()
        )
    ]
    return sorted(pools, key=lambda p: (p.product, p.gpus_per_node, p.memory_mib or 0))


def _tolerates(tolerations: Sequence[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    for toleration in tolerations:
        if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
            continue
        if toleration.get("operator") == "Exists":
            if not toleration.get("key") or toleration["key"] == taint.get("key"):
                return True
        elif toleration.get("key") == taint.get("key") and (toleration.get("value") or "") == (
            taint.get("value") or ""
        ):
            return True
    return False


def restrict_pools(
    pools: Sequence[GpuPool],
    node_selector: Mapping[str, str] | None = None,
    tolerations: Sequence[Mapping[str, Any]] = (),
) -> list[GpuPool]:
    """The pools limited to nodes that match `node_selector` and whose blocking taints
    (other than the GPU taint) are all tolerated; empty pools are dropped."""
    selector = node_selector or {}
    restricted = []
    for pool in pools:
        if not selector and pool.untainted:
            restricted.append(pool)  # every node matches: the pool as it is
            continue
        nodes = tuple(
            node
            for node in pool.nodes
            if (not selector or all(node.labels.get(k) == v for k, v in selector.items()))
            and all(_tolerates(tolerations, taint) for taint in node.blocking_taints)
        )
        if len(nodes) == len(pool.nodes):
            restricted.append(pool)  # every node matches: the pool as it is
        elif nodes:
            restricted.append(replace(pool, nodes=nodes))
    return restricted
