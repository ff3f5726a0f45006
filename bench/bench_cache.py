"""Time to N ready replicas under each model cache mode: a model, and the operator's own latency.

    .venv/bin/python bench/bench_cache.py [--objects 20] [--model-only] [--egress-gbps 5] ...

1. The model (cache_model.py) for Nemotron 3 Nano, Super (fp8) and Ultra (bf16, nvfp4), with the
   download sizes the planner gives (status.plan.downloadGiB, planned against the local
   cluster's inventory), from the figures FIGURES lists with their sources: minutes to N ready
   replicas per mode, the ratio shared / per replica, and from which N the shared claim wins.
   Printed for two shared file systems, a fast and a slow one.
2. On the local cluster (started when it is not running; kwok completes a download Job's pod at
   once), with its own operator serving only the namespaces it creates, one object at a time:
   for a shared claim, NemotronDeployment created -> download Job, download Job complete ->
   Deployment, -> its pod; for a claim per replica, NemotronDeployment created -> StatefulSet,
   -> its pod. p50/p99 of client-observed watch events.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench_planner import demo_nodes
from benchkit import (
    create_nemotron_deployment,
    local_cluster_with_crd,
    percentile,
    started_operator,
)
from cache_model import (
    EXISTING,
    GBIT,
    GIB,
    MB,
    MIB,
    PER_REPLICA,
    SHARED,
    Assumptions,
    Storage,
    break_even,
    time_to_ready,
)
from kubernetes import client, watch

from nemotron_operator.api import names
from nemotron_operator.api.types import NemotronDeploymentSpec
from nemotron_operator.core import render
from nemotron_operator.core.catalog import load_catalog
from nemotron_operator.core.inventory import gpu_pools
from nemotron_operator.core.planner import plan

REPLICAS = (1, 2, 4, 8, 16)
MODELS = (
    {"model": "nemotron-3-nano", "precision": "fp8"},
    {"model": "nemotron-3-super", "precision": "fp8"},
    {"model": "nemotron-3-ultra", "precision": "nvfp4"},
    {"model": "nemotron-3-ultra", "precision": "bf16"},
)

EBS_GP3 = "https://docs.aws.amazon.com/sdk-for-kotlin/api/latest/ec2/aws.sdk.kotlin.services.ec2.model/-create-volume-request/throughput.html"
EFS = "https://docs.aws.amazon.com/efs/latest/ug/performance.html"
NAT_GATEWAY = "https://docs.aws.amazon.com/vpc/latest/userguide/nat-gateway-basics.html"
BLOCK = Storage("EBS gp3, 1000 MiB/s provisioned", 1000 * MIB, None)
SHARED_FILE_SYSTEMS = (
    Storage("EFS Elastic: 1500 MiB/s per client, 20 GiB/s in all", 1500 * MIB, 20 * GIB),
    Storage("EFS Provisioned: 500 MiB/s per client, 3 GiB/s in all", 500 * MIB, 3 * GIB),
)

# What each figure is and where it comes from; "assumed" where no public source gives it.
FIGURES = (
    (
        "NIM image",
        "20 GB (--image-gb)",
        "assumed, within public reports: NIM images are 10-25 GB+ "
        "(https://github.com/nebius/serverless-ai-cookbook/pull/5); llama3-8b's NIM ~12.5 GB, its "
        "air-gap image ~29 GB (https://github.com/NVIDIA/nim-deploy/pull/58)",
    ),
    ("image pull per node", "100 MB/s (--pull-mbps)", "assumed (pull and unpack); no source"),
    (
        "model download per pod",
        f"{render.ASSUMED_DOWNLOAD_MB_PER_SECOND} MB/s",
        "assumed: the rate the operator's startup probe allows for (core/render.py); NVIDIA "
        "publishes no NGC download rate",
    ),
    (
        "egress of all pods together",
        "5 Gbit/s (--egress-gbps)",
        f"an AWS NAT gateway's bandwidth before it scales (up to 100 Gbit/s) ({NAT_GATEWAY}); "
        "assumed that it binds (an on-premises uplink would be similar)",
    ),
    (
        "block storage read (a claim per replica)",
        "1000 MiB/s per volume",
        f"EBS gp3 at its most (125 MiB/s unless provisioned) ({EBS_GP3})",
    ),
    (
        "shared file system read",
        "fast: 1500 MiB/s per pod, 20 GiB/s in all; slow: 500 MiB/s, 3 GiB/s",
        f"EFS Regional Elastic and Provisioned, per client and per file system ({EFS}); "
        "a pod reading at the per-client limit is assumed",
    ),
    (
        "engine start",
        f"{render.ENGINE_START_SECONDS // 60} min",
        "assumed: the operator's startup allowance (core/render.py); a public report: "
        "llama3-8b NIM pods took 5+ minutes to be ready from an EFS cache "
        "(https://github.com/NVIDIA/nim-deploy/issues/24)",
    ),
)


def planned_downloads() -> list[tuple[str, float, int]]:
    """(label, download GiB, pods per replica) of each model of MODELS, as planned against the
    local cluster's inventory."""
    catalog, inventory = load_catalog(), gpu_pools(demo_nodes(1))
    planned = []
    for spec in MODELS:
        status = plan(NemotronDeploymentSpec.model_validate(spec), catalog, inventory)
        if not status.fits or status.download_gib is None:
            raise RuntimeError(f"{spec} does not fit the local inventory: {status.reason}")
        label = f"{spec['model'].removeprefix('nemotron-3-')} {status.precision}"
        planned.append((label, status.download_gib, status.nodes_per_replica or 1))
    return planned


def print_model(assumptions: Assumptions) -> None:
    downloads = planned_downloads()
    print("Assumed figures:")
    for what, value, source in FIGURES:
        print(f"  {what}: {value}\n      {source}")
    for shared in SHARED_FILE_SYSTEMS:
        a = Assumptions(**{**assumptions.__dict__, "shared": shared})
        print(f"\nMinutes to N ready replicas; shared and existing claims on {shared.name}")
        print(
            f"{'model':<12} {'GiB':>6} {'N':>3} {'per replica':>12} {'shared':>8} "
            f"{'existing':>9} {'shared/per replica':>19}"
        )
        for label, gib, pods_per_replica in downloads:
            for n in REPLICAS:
                per_replica, shared_claim, existing = (
                    time_to_ready(mode, gib * GIB, n, pods_per_replica, a).seconds / 60
                    for mode in (PER_REPLICA, SHARED, EXISTING)
                )
                print(
                    f"{label:<12} {gib:>6.0f} {n:>3} {per_replica:>12.0f} {shared_claim:>8.0f} "
                    f"{existing:>9.0f} {shared_claim / per_replica:>19.2f}"
                )
            wins = break_even(gib * GIB, pods_per_replica, a)
            print(
                f"{'':<12} shared claim sooner from N = {wins}"
                if wins
                else f"{'':<12} shared claim never sooner up to N = 64"
            )
            # a replica added once the others serve: its own download, or none from the filled
            # shared claim (which is then as an existing one)
            own, filled = (
                time_to_ready(mode, gib * GIB, 1, pods_per_replica, a).seconds / 60
                for mode in (PER_REPLICA, EXISTING)
            )
            print(
                f"{'':<12} one replica added later: {own:.0f} min on its own claim, "
                f"{filled:.0f} min from the filled shared claim"
            )


# --- the operator's latency on the local cluster --------------------------------------------

SHARED_SPEC = {
    "model": "nemotron-3-nano",
    "gpu": {"product": "NVIDIA-H100-80GB-HBM3"},
    "version": "2.0.12",
    "profile": "vllm-fp8-tp1-pp1-h100",  # exact: the download Job runs
    "cache": {"accessMode": "ReadWriteMany"},
}
PER_REPLICA_SPEC = {"model": "nemotron-3-nano", "gpu": {"product": "NVIDIA-H100-80GB-HBM3"}}


def record(
    lister: Callable[..., Any],
    namespace: str,
    key: Callable[[Any], str | None],
    seen: dict[str, float],
    stop: threading.Event,
) -> None:
    """Record when each object of `lister` is first seen with a `key` (None: not yet)."""
    stream = watch.Watch()
    for event in stream.stream(lister, namespace, timeout_seconds=600):
        name = key(event["object"])
        if name is not None and name not in seen:
            seen[name] = time.monotonic()
        if stop.is_set():
            stream.stop()


def owner_of_workload(obj: Any) -> str:
    return str(obj.metadata.name)


def owner_of_serving_pod(pod: Any) -> str | None:
    labels = pod.metadata.labels or {}
    return None if names.CACHE_DOWNLOAD_LABEL in labels else labels.get(names.DEPLOYMENT_LABEL)


def owner_of_job(job: Any) -> str:
    return str(job.metadata.name).removesuffix("-download")


def owner_of_complete_job(job: Any) -> str | None:
    complete = any(
        c.type == "Complete" and c.status == "True" for c in (job.status.conditions or [])
    )
    return owner_of_job(job) if complete else None


def measure(
    api: client.ApiClient,
    namespace: str,
    spec: dict[str, Any],
    watched: dict[str, tuple[Callable[..., Any], Callable[[Any], str | None]]],
    objects: int,
) -> dict[str, dict[str, float]]:
    """Create `objects` NemotronDeployments one at a time (each deleted once all of `watched`
    has seen it) and return when each was created and first seen by each watch."""
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace))
    )
    seen: dict[str, dict[str, float]] = {label: {} for label in [*watched, "created"]}
    stop = threading.Event()
    for label, (lister, key) in watched.items():
        threading.Thread(
            target=record, args=(lister, namespace, key, seen[label], stop), daemon=True
        ).start()
    time.sleep(1)
    objects_api = client.CustomObjectsApi(api)
    for i in range(objects):
        name = f"nd-{i}"
        create_nemotron_deployment(api, namespace, name, spec)
        seen["created"][name] = time.monotonic()
        deadline = time.monotonic() + 60
        while not all(name in seen[label] for label in watched):
            if time.monotonic() > deadline:
                missing = [label for label in watched if name not in seen[label]]
                raise RuntimeError(f"{namespace}/{name}: no {missing} within 60 s")
            time.sleep(0.005)
        objects_api.delete_namespaced_custom_object(
            names.GROUP, names.VERSION, namespace, names.PLURAL, name
        )
    stop.set()
    return seen


def print_latency(label: str, seen: dict[str, dict[str, float]], since: str, until: str) -> None:
    values = [(seen[until][n] - seen[since][n]) * 1000 for n in seen["created"]]
    print(
        f"  {label:<52} p50 {percentile(values, 0.5):7.0f} ms   "
        f"p99 {percentile(values, 0.99):7.0f} ms   (n={len(values)})"
    )


def measure_cluster(objects: int) -> None:
    kubeconfig, api = local_cluster_with_crd()
    core, apps, batch = client.CoreV1Api(api), client.AppsV1Api(api), client.BatchV1Api(api)
    prefix = f"bcache{uuid.uuid4().hex[:4]}"
    operator = started_operator(kubeconfig, prefix)
    try:
        shared = measure(
            api,
            f"{prefix}-shared",
            SHARED_SPEC,
            {
                "job": (batch.list_namespaced_job, owner_of_job),
                "job complete": (batch.list_namespaced_job, owner_of_complete_job),
                "workload": (apps.list_namespaced_deployment, owner_of_workload),
                "pod": (core.list_namespaced_pod, owner_of_serving_pod),
            },
            objects,
        )
        per_replica = measure(
            api,
            f"{prefix}-per-replica",
            PER_REPLICA_SPEC,
            {
                "workload": (apps.list_namespaced_stateful_set, owner_of_workload),
                "pod": (core.list_namespaced_pod, owner_of_serving_pod),
            },
            objects,
        )
    finally:
        operator.stop()
        for suffix in ("shared", "per-replica"):
            with contextlib.suppress(client.ApiException):
                core.delete_namespace(f"{prefix}-{suffix}")
    print(f"\nThe operator on the local cluster, {objects} objects one at a time:")
    print(" shared claim (ReadWriteMany, exact profile):")
    print_latency("NemotronDeployment created -> download Job", shared, "created", "job")
    print_latency(
        "download Job -> complete (kwok, the Job controller)", shared, "job", "job complete"
    )
    print_latency("download Job complete -> Deployment", shared, "job complete", "workload")
    print_latency("download Job complete -> its pod", shared, "job complete", "pod")
    print(" a claim per replica (ReadWriteOnce):")
    print_latency("NemotronDeployment created -> StatefulSet", per_replica, "created", "workload")
    print_latency("NemotronDeployment created -> its pod", per_replica, "created", "pod")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=20, help="per cache mode, on the cluster")
    parser.add_argument("--model-only", action="store_true", help="no cluster")
    parser.add_argument("--image-gb", type=float, default=20)
    parser.add_argument("--pull-mbps", type=float, default=100, help="MB/s per node")
    parser.add_argument("--egress-gbps", type=float, default=5, help="Gbit/s, all pods")
    args = parser.parse_args()
    print_model(
        Assumptions(
            image_bytes=args.image_gb * 1e9,
            pull_per_node=args.pull_mbps * MB,
            download_per_pod=render.ASSUMED_DOWNLOAD_MB_PER_SECOND * MB,
            egress_total=args.egress_gbps * GBIT,
            block=BLOCK,
            shared=SHARED_FILE_SYSTEMS[0],
            engine_start_seconds=render.ENGINE_START_SECONDS,
        )
    )
    if not args.model_only:
        measure_cluster(args.objects)
    return 0


if __name__ == "__main__":
    sys.exit(main())
