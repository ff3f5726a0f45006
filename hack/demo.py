#!/usr/bin/env python3
"""`make demo`: the local cluster with fake GPU nodes, shown as a person would want to see it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "hack" / "cluster"))

import cluster as local_cluster  # noqa: E402


def main() -> int:
    local_cluster.up(local_cluster.DEFAULT_STATE, local_cluster.DEFAULT_NODES)
    kubectl = str(local_cluster.binaries()["kubectl"])
    kubeconfig = str(local_cluster.DEFAULT_STATE / "kubeconfig")
    print("\nGPU nodes of the local cluster (kwok plays their kubelets):\n", flush=True)
    subprocess.run(
        [
            kubectl,
            "--kubeconfig",
            kubeconfig,
            "get",
            "nodes",
            "-L",
            "nvidia.com/gpu.product,nvidia.com/gpu.count,nvidia.com/gpu.memory",
        ],
        check=True,
    )
    print(
        f"\nLook further:  export KUBECONFIG={kubeconfig}; kubectl get nodes\n"
        "Stop it:       make cluster-down"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
