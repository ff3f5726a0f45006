"""The local cluster harness (hack/cluster/cluster.py), importable from the tests."""

import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack" / "cluster"))

import cluster as local_cluster

__all__ = ["gpu_node_manifest", "local_cluster"]


def gpu_node_manifest(
    directory: Path, pool: str, gpu: dict[str, Any], cpu: str, memory: str
) -> dict[str, Any]:
    """One fake GPU node of a pool of its own, as hack/cluster/nodes.yaml describes pools
    (labelled as GPU Feature Discovery labels, with the GPU taint); not created yet."""
    pools = directory / f"{pool}.yaml"
    pools.write_text(
        yaml.safe_dump(
            {
                "gpuTaint": {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},
                "pools": [{"name": pool, "count": 1, "cpu": cpu, "memory": memory, "gpu": gpu}],
            }
        )
    )
    return dict(local_cluster.node_manifests(pools)[0])
