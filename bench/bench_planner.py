"""Plans per second, on demand: `.venv/bin/python bench/bench_planner.py [--seconds S]`.

Plans a mix of specs (fitting, refused with suggestions, pinned, custom) against the demo
cluster's inventory (hack/cluster/nodes.yaml) and a large synthetic one, and prints figures.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import yaml

from nemotron_operator.api import names
from nemotron_operator.api.types import NemotronDeploymentSpec
from nemotron_operator.core.catalog import load_catalog
from nemotron_operator.core.inventory import GpuPool, gpu_pools
from nemotron_operator.core.planner import plan

REPO = Path(__file__).resolve().parents[1]
SPECS = [
    {"model": "nemotron-3-nano"},
    {"model": "nemotron-3-super"},
    {"model": "nemotron-3-ultra", "precision": "bf16"},
    {"model": "nemotron-3-ultra", "precision": "bf16", "gpu": {"count": 4}},  # refused
    {"model": "nemotron-3-super", "precision": "fp8", "gpu": {"product": "NVIDIA-L40S"}},
    {"model": "llama-3.2-nv-embedqa-1b-v2"},
    {
        "model": "custom",
        "customModel": {
            "image": "nvcr.io/nim/nvidia/llm-nim:2.1.6",
            "parameters": 70_600_000_000,
            "attentionLayers": 80,
            "kvHeads": 8,
            "headDim": 128,
            "nativeContextLength": 131072,
            "precisions": ["bf16", "fp8"],
        },
    },
]


def node(name: str, gpu: dict) -> dict:
    return {
        "metadata": {
            "name": name,
            "labels": {
                names.GPU_PRODUCT_LABEL: gpu["product"],
                names.GPU_MEMORY_LABEL: str(gpu["memoryMiB"]),
                names.GPU_COMPUTE_MAJOR_LABEL: str(gpu["computeMajor"]),
                names.GPU_COMPUTE_MINOR_LABEL: str(gpu["computeMinor"]),
            },
        },
        "status": {"allocatable": {names.GPU_RESOURCE: str(gpu["count"])}},
    }


def demo_nodes(scale: int) -> list[dict]:
    document = yaml.safe_load((REPO / "hack/cluster/nodes.yaml").read_text())
    return [
        node(f"{pool['name']}-{copy}-{index}", pool["gpu"])
        for copy in range(scale)
        for pool in document["pools"]
        if "gpu" in pool
        for index in range(pool["count"])
    ]


def measure(label: str, inventory: list[GpuPool], seconds: float) -> None:
    catalog = load_catalog()
    specs = [NemotronDeploymentSpec.model_validate(s) for s in SPECS]
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for spec in specs:
            plan(spec, catalog, inventory)
        count += len(specs)
    elapsed = time.perf_counter() - start
    print(f"{label:<44} {count / elapsed:>9.0f} plans/s  ({elapsed / count * 1e3:.2f} ms/plan)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    seconds = parser.parse_args().seconds
    for scale in (1, 100):
        nodes = demo_nodes(scale)
        start = time.perf_counter()
        inventory = gpu_pools(nodes)
        pooling_ms = (time.perf_counter() - start) * 1e3
        print(
            f"inventory of {len(nodes)} GPU nodes -> {len(inventory)} pools in {pooling_ms:.1f} ms"
        )
        measure(f"  plan against {len(nodes)} nodes", inventory, seconds)


if __name__ == "__main__":
    main()
