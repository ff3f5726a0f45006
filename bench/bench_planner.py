"""Plans per second, on demand: `.venv/bin/python bench/bench_planner.py [--seconds S]
[--baseline REV]`.

Plans a mix of specs (fitting, refused with suggestions, pinned, custom) against the demo
cluster's inventory (hack/cluster/nodes.yaml) and a large synthetic one, and prints figures.
Rates are plans per second of the process's CPU time. With --baseline, core/planner.py as of
git revision REV is loaded into the same process (it imports the rest of the package as it is
now) and timed in alternation with the current one, so a loaded machine slows both alike: the
ratio is the figure to compare.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

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


def rate(planner: Callable[..., object], inventory: list[GpuPool], seconds: float) -> float:
    """Plans per second of this process's CPU time, of `planner` over the spec mix for about
    `seconds` of it: other processes on a shared machine change it less than wall time."""
    catalog = load_catalog()
    specs = [NemotronDeploymentSpec.model_validate(s) for s in SPECS]
    count, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        for spec in specs:
            planner(spec, catalog, inventory)
        count += len(specs)
    return count / (time.process_time() - start)


def planner_at(revision: str) -> ModuleType:
    """core/planner.py as of a git revision, loaded beside the current one."""
    source = subprocess.run(
        ["git", "show", f"{revision}:operator/nemotron_operator/core/planner.py"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    name = "nemotron_operator.core.planner_baseline"
    spec = importlib.util.spec_from_loader(name, loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the code runs
    exec(compile(source, f"planner.py@{revision}", "exec"), module.__dict__)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--baseline", metavar="REV", help="also time the planner at git REV")
    parser.add_argument("--rounds", type=int, default=3, help="alternations with --baseline")
    args = parser.parse_args()
    baseline = planner_at(args.baseline).plan if args.baseline else None
    for scale in (1, 100):
        nodes = demo_nodes(scale)
        start = time.perf_counter()
        inventory = gpu_pools(nodes)
        pooling_ms = (time.perf_counter() - start) * 1e3
        print(
            f"inventory of {len(nodes)} GPU nodes -> {len(inventory)} pools in {pooling_ms:.1f} ms"
        )
        label = f"  plan against {len(nodes)} nodes"
        if baseline is None:
            current = rate(plan, inventory, args.seconds)
            print(f"{label:<44} {current:>9.0f} plans/s  ({1e3 / current:.2f} ms/plan)")
            continue
        ratios = []
        for _ in range(args.rounds):
            before = rate(baseline, inventory, args.seconds)
            after = rate(plan, inventory, args.seconds)
            ratios.append(after / before)
            print(
                f"{label:<44} {args.baseline}: {before:>7.0f} plans/s, now: {after:>7.0f} "
                f"plans/s, ratio {after / before:.2f}"
            )
        print(f"{label:<44} median ratio {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
