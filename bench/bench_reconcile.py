"""How fast the operator turns NemotronDeployments into Deployments, beside the cluster's own
kube-controller-manager turning those Deployments into ReplicaSets, measured in one run.

    .venv/bin/python bench/bench_reconcile.py [--objects 100] [--burst 300]

Uses the local cluster (started when it is not running) and its own operator process serving
only the namespaces it creates. One at a time means the next object is created once the operator
has written the status of the one before and kube-controller-manager the status of its
Deployment. Prints p50/p99 of both latencies (client-observed watch events),
the CPU seconds per object of the operator and of kube-controller-manager over the same phase,
the time for a burst of objects to all reach Planned=True, the operator's CPU per object in the
burst and per minute idle after it, and its peak memory.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

from benchkit import (
    cluster_cpu_seconds,
    converges,
    cpu_seconds,
    create_nemotron_deployment,
    delete_namespaces,
    local_cluster_with_crd,
    memory_mib,
    percentile,
    started_operator,
    watch_events,
)
from kubernetes import client

from nemotron_operator.api import names

# A preloaded claim: the workload is a Deployment (as kube-controller-manager's input on the other
# side) and is created at once (a shared claim of the operator's own waits for its download Job).
SPEC = {
    "model": "nemotron-3-nano",
    "gpu": {"product": "NVIDIA-H100-80GB-HBM3"},
    "replicas": 0,
    "cache": {"existingClaim": "preloaded-models", "accessMode": "ReadOnlyMany"},
}


# What the benchmark watches in its namespace, and when it records an object of that kind: by the
# name of the NemotronDeployment it belongs to, the first time it is seen with this test passing.
WATCHED = {
    # created by the operator
    "Deployment": ("apis/apps/v1", "deployments", lambda obj: True),
    # created by kube-controller-manager
    "ReplicaSet": ("apis/apps/v1", "replicasets", lambda obj: True),
    # the operator is done: its status says Planned for this generation
    "settled": (
        f"apis/{names.GROUP}/{names.VERSION}",
        names.PLURAL,
        lambda obj: (
            (obj.get("status") or {}).get("observedGeneration") == obj["metadata"].get("generation")
            and any(
                c["type"] == "Planned" and c["status"] == "True"
                for c in (obj.get("status") or {}).get("conditions") or ()
            )
        ),
    ),
    # kube-controller-manager is done: the Deployment's status counts its ReplicaSet
    "rolled out": (
        "apis/apps/v1",
        "deployments",
        lambda obj: (
            (obj.get("status") or {}).get("observedGeneration") == obj["metadata"].get("generation")
        ),
    ),
}


def watch_first_seen(
    api: client.ApiClient,
    namespace: str,
    what: str,
    seen: dict[str, float],
    arrived: threading.Condition,
    stop: threading.Event,
) -> None:
    """Record when each NemotronDeployment's object of WATCHED[what] is first seen passing its
    test (a ReplicaSet by its owner's name, the others by their own)."""
    group_version, plural, test = WATCHED[what]
    url = (
        f"{api.configuration.host}/{group_version}/namespaces/{namespace}/{plural}"
        "?watch=true&timeoutSeconds=900"
    )
    for event in watch_events(api.rest_client.pool_manager, url, 960):
        obj = event["object"]
        if event["type"] in ("ADDED", "MODIFIED") and test(obj):
            meta = obj["metadata"]
            owners = meta.get("ownerReferences") or [{}]
            name = owners[0].get("name") if what == "ReplicaSet" else meta["name"]
            if name:
                with arrived:
                    seen.setdefault(name, time.monotonic())
                    arrived.notify_all()
        if stop.is_set():
            return


def controller_manager_cpu(kubeconfig: Path) -> float:
    """CPU seconds used so far by the kube-controller-manager of the local cluster whose
    kubeconfig this is."""
    return cluster_cpu_seconds(kubeconfig.parent)["kube-controller-manager"]


def created_once_done(
    api: client.ApiClient,
    namespace: str,
    name: str,
    seen: dict[str, dict[str, float]],
    arrived: threading.Condition,
) -> float:
    """Create NemotronDeployment `name` and return when; return once both controllers are done
    with it (`seen` by watch_first_seen for every WATCHED entry): each one's writes after its
    first would otherwise slow the next object's first."""
    create_nemotron_deployment(api, namespace, name, SPEC)
    at = time.monotonic()
    with arrived:
        if not arrived.wait_for(lambda: all(name in times for times in seen.values()), 30):
            missing = [what for what, times in seen.items() if name not in times]
            raise RuntimeError(f"{namespace}/{name}: not seen within 30 s: {missing}")
    return at


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=100)
    parser.add_argument("--burst", type=int, default=300)
    parser.add_argument("--idle", type=float, default=30, help="idle seconds measured")
    args = parser.parse_args()

    kubeconfig, api = local_cluster_with_crd()
    core, objects = client.CoreV1Api(api), client.CustomObjectsApi(api)
    prefix = f"bench{uuid.uuid4().hex[:4]}"
    operator = started_operator(kubeconfig, prefix)
    try:

        def create(namespace: str, name: str) -> None:
            create_nemotron_deployment(api, namespace, name, SPEC)

        # 1. one at a time: NemotronDeployment -> Deployment, and Deployment -> ReplicaSet
        namespace = f"{prefix}-latency"
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        seen: dict[str, dict[str, float]] = {what: {} for what in WATCHED}
        arrived = threading.Condition()
        stop = threading.Event()
        for what in WATCHED:
            threading.Thread(
                target=watch_first_seen,
                args=(api, namespace, what, seen[what], arrived, stop),
                daemon=True,
            ).start()
        time.sleep(1)
        pid = operator.process.pid
        cpu_before = cpu_seconds(pid), controller_manager_cpu(kubeconfig)
        converges_before = converges(operator)
        created: dict[str, float] = {}
        for i in range(args.objects):
            name = f"nd-{i}"
            created[name] = created_once_done(api, namespace, name, seen, arrived)
        stop.set()
        time.sleep(1)  # the status writes after each Deployment
        cpu_one_at_a_time = (
            (cpu_seconds(pid) - cpu_before[0]) / args.objects,
            (controller_manager_cpu(kubeconfig) - cpu_before[1]) / args.objects,
        )
        converges_one_at_a_time = (converges(operator) - converges_before) / args.objects
        deployments, replicasets = seen["Deployment"], seen["ReplicaSet"]
        operator_ms = [(deployments[n] - created[n]) * 1000 for n in created]
        controller_ms = [(replicasets[n] - deployments[n]) * 1000 for n in created]

        # 2. a burst: N objects at once, until every one is Planned=True
        burst_ns = f"{prefix}-burst"
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=burst_ns)))
        start = time.monotonic()
        burst_cpu_before = cpu_seconds(pid)
        burst_converges_before = converges(operator)
        for i in range(args.burst):
            create(burst_ns, f"nd-{i}")
        created_s = time.monotonic() - start
        while True:
            items = objects.list_namespaced_custom_object(
                names.GROUP, names.VERSION, burst_ns, names.PLURAL
            )["items"]
            planned = sum(
                any(
                    c["type"] == "Planned" and c["status"] == "True"
                    for c in (i.get("status") or {}).get("conditions") or []
                )
                for i in items
            )
            if planned == args.burst:
                break
            if time.monotonic() - start > 600:
                raise RuntimeError(f"only {planned}/{args.burst} Planned after 600 s")
            time.sleep(0.5)
        burst_s = time.monotonic() - start
        time.sleep(2)  # the last status writes
        burst_cpu = (cpu_seconds(pid) - burst_cpu_before) / args.burst
        burst_converges = (converges(operator) - burst_converges_before) / args.burst
        idle_cpu_before = cpu_seconds(pid)
        time.sleep(args.idle)
        idle_cpu = (cpu_seconds(pid) - idle_cpu_before) * 60 / args.idle
        peak_mib = memory_mib(pid, "VmHWM")
    finally:
        operator.stop()
        delete_namespaces(api, [f"{prefix}-latency", f"{prefix}-burst"])

    print(f"objects measured one at a time: {args.objects}")
    for label, values in (
        ("NemotronDeployment -> Deployment (operator)", operator_ms),
        ("Deployment -> ReplicaSet (kube-controller-manager)", controller_ms),
    ):
        print(
            f"  {label:52s} p50 {percentile(values, 0.5):7.1f} ms   "
            f"p99 {percentile(values, 0.99):7.1f} ms   mean {statistics.mean(values):7.1f} ms"
        )
    ratio = percentile(operator_ms, 0.5) / max(percentile(controller_ms, 0.5), 0.001)
    print(f"  ratio operator/controller-manager at p50: {ratio:.2f}")
    print(
        f"  CPU per object: operator {cpu_one_at_a_time[0]:.3f} s, kube-controller-manager "
        f"{cpu_one_at_a_time[1]:.3f} s (all its controllers, same phase); ratio "
        f"{cpu_one_at_a_time[0] / max(cpu_one_at_a_time[1], 0.001):.1f}; "
        f"{converges_one_at_a_time:.1f} converges per object"
    )
    print(
        f"burst of {args.burst}: created in {created_s:.1f} s, all Planned=True after "
        f"{burst_s:.1f} s ({args.burst / burst_s:.1f} objects/s), operator CPU "
        f"{burst_cpu:.3f} s per object, {burst_converges:.1f} converges per object"
    )
    print(f"operator CPU while idle for {args.idle:.0f} s after it: {idle_cpu:.2f} s per minute")
    print(f"operator peak memory (VmHWM): {peak_mib:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
