"""Drill 1: the operator is SIGKILLed in the middle of creating 200 NemotronDeployments.

After a restart every object converges (Planned=True, Ready=True where replicas are asked for),
each has exactly one Deployment, Service and claim, no child is left without its owner, and no
condition describes an older generation.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import pytest
from kubernetes import client

from nemotron_operator.api import names

from .conftest import (
    Cluster,
    census,
    converged,
    list_nds,
    nd_body,
    ngc_secret,
    poll,
    report,
    stale_conditions,
)

OBJECTS = 200
KILL_AFTER = 100  # the operator is killed once this many objects exist...
KILL_AT_CHILDREN = 60  # ...and it has created this many Deployments
CREATE_INTERVAL = 0.1  # seconds between two creates: about 20 s to create them all
PRODUCTS = (
    "NVIDIA-H100-80GB-HBM3",
    "NVIDIA-L40S",
    "NVIDIA-H200",
    "NVIDIA-B200",
    "NVIDIA-A100-SXM4-40GB",
)
MODELS = ("nemotron-3-nano", "llama-3.2-nv-embedqa-1b-v2", "llama-3.2-nv-rerankqa-1b-v2")


def spec_for(index: int) -> dict[str, Any]:
    """Spread over products and models; one in 20 asks for a pod (one GPU), the rest for none,
    so that the GPUs of the shared cluster do not run out. All use the NGC key of a Secret."""
    spec: dict[str, Any] = {
        "model": MODELS[index % len(MODELS)],
        "gpu": {"product": PRODUCTS[index % len(PRODUCTS)]},
        "replicas": 0,
        "ngc": {"apiKeySecret": {"name": "ngc-api"}},
    }
    if index % 20 == 0:
        spec |= {"model": "llama-3.2-nv-embedqa-1b-v2", "replicas": 1}
    return spec


@pytest.mark.timeout(1200)
def test_sigkill_while_creating_200_then_restart_converges_without_duplicates(
    cluster: Cluster, drill_namespaces, operators
) -> None:
    spaces = [drill_namespaces("killed-a"), drill_namespaces("killed-b")]
    for namespace in spaces:
        ngc_secret(cluster.api, namespace)
    operator = operators()
    objects = client.CustomObjectsApi(cluster.api)
    created = threading.Event()
    half = threading.Event()
    names_by_ns: dict[str, list[str]] = {ns: [] for ns in spaces}

    def create_all() -> None:
        for index in range(OBJECTS):
            namespace = spaces[index % len(spaces)]
            name = f"nd-{index:03d}"
            objects.create_namespaced_custom_object(
                names.GROUP, names.VERSION, namespace, names.PLURAL, nd_body(name, spec_for(index))
            )
            names_by_ns[namespace].append(name)
            if index + 1 == KILL_AFTER:
                half.set()
            time.sleep(CREATE_INTERVAL)
        created.set()

    started = time.monotonic()
    creator = threading.Thread(target=create_all)
    creator.start()
    assert half.wait(120)
    apps = client.AppsV1Api(cluster.api)
    poll(
        lambda: (
            sum(len(apps.list_namespaced_deployment(ns).items) for ns in spaces) >= KILL_AT_CHILDREN
        ),
        f"{KILL_AT_CHILDREN} Deployments",
        120,
        0.05,
    )
    before_kill = census(cluster.api, spaces)
    existing_at_kill = sum(len(v) for v in names_by_ns.values())
    assert existing_at_kill < OBJECTS, "the objects were all created before the kill"
    operator.stop(signal.SIGKILL)
    killed_at = time.monotonic()
    creator.join(300)
    assert created.is_set()
    operator.start()
    restarted_at = time.monotonic()

    last_said = [0.0]

    def all_converged() -> bool:
        bodies = [b for ns in spaces for b in list_nds(cluster.api, ns)]
        done = sum(1 for b in bodies if converged(b))
        if time.monotonic() - last_said[0] > 30:
            last_said[0] = time.monotonic()
            print(f"  {time.monotonic() - restarted_at:5.0f} s: {done}/{OBJECTS} converged")
        return len(bodies) == OBJECTS and done == OBJECTS

    try:
        converge_s = poll(all_converged, f"all {OBJECTS} NemotronDeployments converged", 600, 2)
    finally:
        bodies = [b for ns in spaces for b in list_nds(cluster.api, ns)]
        laggards = [
            (b["metadata"]["name"], stale_conditions(b), (b.get("status") or {}).get("conditions"))
            for b in bodies
            if not converged(b)
        ]
        if laggards:
            print(f"not converged ({len(laggards)}): {laggards[:3]}")

    after = census(cluster.api, spaces)
    pods = sum(
        len(
            client.CoreV1Api(cluster.api)
            .list_namespaced_pod(ns, label_selector=f"{names.DEPLOYMENT_LABEL}")
            .items
        )
        for ns in spaces
    )
    wanted_pods = sum(1 for i in range(OBJECTS) if spec_for(i)["replicas"])
    report(
        "operator SIGKILLed while creating 200 NemotronDeployments",
        {
            "objects": OBJECTS,
            "killed after (s since first create)": killed_at - started,
            "objects existing when killed": existing_at_kill,
            "children before the kill (Deployments/Services/PVCs)": (
                f"{before_kill.count('Deployment')}/{before_kill.count('Service')}/"
                f"{before_kill.count('PersistentVolumeClaim')}"
            ),
            "converged after restart (s)": converge_s,
            "since restart incl. startup (s)": time.monotonic() - restarted_at,
            "Deployments / Services / PVCs": (
                f"{after.count('Deployment')}/{after.count('Service')}/"
                f"{after.count('PersistentVolumeClaim')}"
            ),
            "duplicates": len(after.duplicates()),
            "orphans (owner gone)": len(after.orphans),
            "children without owner reference": len(after.unowned),
            "pods (wanted)": f"{pods} ({wanted_pods})",
            "objects with a stale condition": sum(1 for b in bodies if stale_conditions(b)),
        },
    )
    assert after.duplicates() == {}
    assert after.orphans == [] and after.unowned == []
    for kind in ("Deployment", "Service", "PersistentVolumeClaim"):
        assert after.count(kind) == OBJECTS, kind
    assert all(not stale_conditions(b) for b in bodies)
    assert pods == wanted_pods
    operator.assert_never_crashed()
