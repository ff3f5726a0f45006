"""What the operator keeps per NemotronDeployment, and where it was made (issue 17, item 4).

    .venv/bin/python bench/bench_memory.py [--objects 400] [--settle 60] [--top 25]

On a cluster of its own (as bench_scale: 50 namespaces, its specs, kwok GPU pools that hold every
GPU pod), starts the operator with tracemalloc on (memory_probe/sitecustomize.py), takes a
snapshot before the first object and one after all are planned with children, their pods Ready,
and --settle quiet seconds; prints the traced growth per object, grouped by where it was
allocated: the operator's own line that made it (world.py's recursive copies are named by their
caller), else Kopf's, else the innermost line. Tracing makes the operator several times slower:
a few hundred objects say what each one keeps.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path

import yaml
from bench_load import (
    Operator,
    kubeconfig_of,
    namespaces_with_key,
    own_cluster,
    registry_env,
    remove_cluster,
    spec_for,
)
from bench_scale import PREFIX, node_pools_for
from benchkit import REPO, ClusterWatch, create_nemotron_deployment
from tests.standins.registry import RegistryStandin, catalog_config

PROBE = REPO / "bench" / "memory_probe"


def snapshot(directory: Path, tag: str) -> tracemalloc.Snapshot:
    (directory / f"{tag}.wanted").touch()
    while not (directory / f"{tag}.pickle").exists():
        time.sleep(0.5)
    return tracemalloc.Snapshot.load(str(directory / f"{tag}.pickle"))


def made_by(traceback: tracemalloc.Traceback) -> str:
    """The line an allocation is put down to (see the module's doc)."""
    frames = list(traceback)[::-1]  # the most recent first

    def where(frame: tracemalloc.Frame) -> str:
        return f"{frame.filename.split('site-packages/')[-1].split('operator/')[-1]}:{frame.lineno}"

    for frame in frames:
        if "nemotron_operator" in frame.filename and not frame.filename.endswith("world.py"):
            return where(frame)
    for frame in frames:
        if "/kopf/" in frame.filename:
            return where(frame)
    return where(frames[0])


def kept_per_object(
    before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, objects: int
) -> tuple[float, list[tuple[str, float]]]:
    """(bytes kept per object in all, [(where, bytes per object)] largest first)."""
    grouped: dict[str, int] = defaultdict(int)
    for stat in after.compare_to(before, "traceback"):
        grouped[made_by(stat.traceback)] += stat.size_diff
    ranked = sorted(grouped.items(), key=lambda item: -item[1])
    return sum(grouped.values()) / objects, [(k, v / objects) for k, v in ranked]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=400)
    parser.add_argument("--namespaces", type=int, default=50)
    parser.add_argument("--settle", type=float, default=60)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    probe = work / "snapshots"
    probe.mkdir()
    nodes = work / "nodes.yaml"
    nodes.write_text(yaml.safe_dump(node_pools_for(args.objects)))
    state, api = own_cluster(work, nodes)
    registry = RegistryStandin(catalog_config()).start()
    path = os.pathsep.join(p for p in (str(PROBE), os.environ.get("PYTHONPATH")) if p)
    env = registry_env(registry) | {"MEMORY_PROBE_DIR": str(probe), "PYTHONPATH": path}
    operator = Operator(kubeconfig_of(state), work / "operator.log", env, ("*",))
    watch = ClusterWatch(api)
    try:
        spaces = namespaces_with_key(api, PREFIX, args.namespaces)
        operator.start()
        watch.start()
        time.sleep(10)  # the operator's watches listed what there is
        before = snapshot(probe, "before")
        for index in range(args.objects):
            name = f"nd-{index:04d}"
            create_nemotron_deployment(api, spaces[index % len(spaces)], name, spec_for(index))
        with_pods = sum(1 for i in range(args.objects) if spec_for(i)["replicas"] > 0)
        if not watch.wait(lambda: len(watch.converged) >= args.objects, 3600) or not watch.wait(
            lambda: watch.count(lambda o: o.replicas > 0 and o.ready) >= with_pods, 900
        ):
            raise RuntimeError("not all converged (or Ready) in time")
        time.sleep(args.settle)
        rss = operator.rss_mib()
        after = snapshot(probe, "after")
    finally:
        log = remove_cluster(
            work,
            state,
            "bench-memory-operator.log",
            (watch.stop, operator.stop, registry.stop, api.close),
        )
    total, ranked = kept_per_object(before, after, args.objects)
    print(f"{args.objects} objects: {total / 1024:.1f} KiB traced per object kept")
    print(f"(the operator's RSS, traced, was {rss:.0f} MiB; its log: {log})")
    for where, size in ranked[: args.top]:
        print(f"{size:8.0f} B/object  {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
