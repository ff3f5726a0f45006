"""Two builds of the operator side by side on one cluster, in one run: which is faster from a
NemotronDeployment's creation to its Deployment, and which spends less CPU per object.

    git worktree add /tmp/before <commit>
    .venv/bin/python bench/bench_side_by_side.py /tmp/before/operator operator [--objects 150]

Each argument is a directory holding a `nemotron_operator` package; each build runs as its own
operator process serving its own namespace. Objects are created alternately, A then B, then B
then A, each once both controllers are done with the one before (bench_reconcile's pacing), so
both builds meet the same machine at the same moments. This machine's speed drifts by a third
from one run to the next: runs one after the other cannot tell a change of a few percent.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

from bench_reconcile import WATCHED, created_once_done, watch_first_seen
from benchkit import (
    REPO,
    OperatorProcess,
    cpu_seconds,
    delete_namespaces,
    load_average,
    local_cluster_with_crd,
    percentile,
)
from kubernetes import client


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    tree = str(REPO / "operator")
    for side in ("a", "b"):
        parser.add_argument(
            side,
            nargs="?",
            default=tree,
            help=f"directory holding build {side.upper()}'s nemotron_operator package (default: "
            "this tree's; with neither given, an A/A run: the difference it shows is the noise)",
        )
    parser.add_argument("--objects", type=int, default=150, help="objects per build")
    args = parser.parse_args()
    builds = {"A": str(Path(args.a).resolve()), "B": str(Path(args.b).resolve())}

    kubeconfig, api = local_cluster_with_crd()
    core = client.CoreV1Api(api)
    prefix = f"sbs{uuid.uuid4().hex[:4]}"
    namespaces = {side: f"{prefix}{side.lower()}-latency" for side in builds}
    operators = {
        side: OperatorProcess(
            kubeconfig,
            REPO / ".cluster" / f"{prefix}-{side}-operator.log",
            {"NEMOTRON_NGC_REGISTRY_URL": "http://127.0.0.1:9", "PYTHONPATH": path},
            namespaces=(namespaces[side],),
        )
        for side, path in builds.items()
    }
    seen: dict[str, dict[str, dict[str, float]]] = {s: {w: {} for w in WATCHED} for s in builds}
    arrived = threading.Condition()
    stop = threading.Event()
    print(f"load average at the start: {load_average()}")
    try:
        for side, operator in operators.items():
            operator.start()
            core.create_namespace(
                client.V1Namespace(metadata=client.V1ObjectMeta(name=namespaces[side]))
            )
            for what in WATCHED:
                threading.Thread(
                    target=watch_first_seen,
                    args=(api, namespaces[side], what, seen[side][what], arrived, stop),
                    daemon=True,
                ).start()
        time.sleep(2)
        cpu_before = {side: cpu_seconds(o.process.pid) for side, o in operators.items()}
        created: dict[str, dict[str, float]] = {side: {} for side in builds}
        for i in range(args.objects):
            name = f"nd-{i}"
            for side in ("A", "B") if i % 2 == 0 else ("B", "A"):
                created[side][name] = created_once_done(
                    api, namespaces[side], name, seen[side], arrived
                )
        time.sleep(1)  # the writes after each object's last one seen
        cpu = {
            side: (cpu_seconds(o.process.pid) - cpu_before[side]) / args.objects
            for side, o in operators.items()
        }
    finally:
        stop.set()
        for operator in operators.values():
            operator.stop()
        delete_namespaces(api, list(namespaces.values()))

    for side, path in builds.items():
        deployments, replicasets = seen[side]["Deployment"], seen[side]["ReplicaSet"]
        operator_ms = [(deployments[n] - t) * 1000 for n, t in created[side].items()]
        controller_ms = [(replicasets[n] - deployments[n]) * 1000 for n in created[side]]
        print(
            f"{side} {path}\n"
            f"  NemotronDeployment -> Deployment  p50 {percentile(operator_ms, 0.5):5.1f} ms  "
            f"p90 {percentile(operator_ms, 0.9):5.1f}  p99 {percentile(operator_ms, 0.99):5.1f}  "
            f"mean {statistics.mean(operator_ms):5.1f}\n"
            f"  Deployment -> ReplicaSet (kube-controller-manager)  "
            f"p50 {percentile(controller_ms, 0.5):5.1f} ms; ratio at p50 "
            f"{percentile(operator_ms, 0.5) / percentile(controller_ms, 0.5):.2f}\n"
            f"  operator CPU per object {cpu[side]:.4f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
