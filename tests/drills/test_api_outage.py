"""Drill 2: the API server is stopped for 30 s while the operator works, then started again;
separately etcd is restarted. The operator (never restarted) recovers on its own and converges.

Runs on a cluster of its own (`own_cluster`): the shared one must never lose its API server.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from typing import Any

import pytest
from kubernetes import client

from nemotron_operator.api import names
from tests.e2e.fake_kubelet import FakeKubelet
from tests.e2e.harness import local_cluster

from .conftest import (
    OwnCluster,
    census,
    condition,
    converged,
    handled_errors,
    list_nds,
    nd_body,
    ngc_secret,
    poll,
    report,
    stale_conditions,
)

OUTAGE_SECONDS = float(os.environ.get("DRILL_OUTAGE_SECONDS", "30"))
BATCH = 40


def spec_for(index: int) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": ("nemotron-3-nano", "llama-3.2-nv-embedqa-1b-v2")[index % 2],
        "gpu": {"product": ("NVIDIA-H100-80GB-HBM3", "NVIDIA-L40S", "NVIDIA-H200")[index % 3]},
        "replicas": 1 if index % 10 == 0 else 0,
        "ngc": {"apiKeySecret": {"name": "ngc-api"}},
    }
    return spec


def create_batch(own: OwnCluster, namespace: str, start: int) -> list[str]:
    objects = client.CustomObjectsApi(own.api)
    made = []
    for index in range(start, start + BATCH):
        name = f"nd-{index:03d}"
        objects.create_namespaced_custom_object(
            names.GROUP, names.VERSION, namespace, names.PLURAL, nd_body(name, spec_for(index))
        )
        made.append(name)
    return made


def all_converged(own: OwnCluster, namespace: str, expected: int) -> bool:
    bodies = list_nds(own.api, namespace)
    return len(bodies) == expected and all(converged(b) for b in bodies)


def kubelets_report_ready_again(own: OwnCluster, namespace: str) -> int:
    """Without heartbeats the node controller marks the pods of the fake nodes NotReady; a real
    kubelet reports them Ready again on its next status sync, kwok does not: play that part.
    Returns how many pods were re-reported."""
    core = client.CoreV1Api(own.api)
    ready_nodes = {
        n.metadata.name
        for n in core.list_node().items
        if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or ())
    }
    kubelet = FakeKubelet(own.api, namespace)
    played = 0
    for pod in core.list_namespaced_pod(namespace).items:
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or ())
        if pod.status.phase == "Running" and not ready and pod.spec.node_name in ready_nodes:
            kubelet.ready(pod.metadata.name)
            played += 1
    return played


def operator_part_of_ready(own: OwnCluster, namespace: str, api_back: float) -> str:
    """Over the NemotronDeployments with pods: the longest wait from the last of its pods
    becoming Ready (or from `api_back`, epoch seconds, when the operator could write again, if
    later) to its own Ready condition (timestamps in whole seconds), what the operator adds once
    the cluster has done its part; and how many were Ready since before that pod."""
    pods = client.CoreV1Api(own.api).list_namespaced_pod(namespace).items
    pods_ready: dict[str, float] = {}
    for pod in pods:
        owner = (pod.metadata.labels or {}).get(names.DEPLOYMENT_LABEL)
        for c in pod.status.conditions or ():
            if owner and c.type == "Ready" and c.status == "True":
                at = c.last_transition_time.timestamp()
                pods_ready[owner] = max(pods_ready.get(owner, at), at)
    waits = []
    for body in list_nds(own.api, namespace):
        ready = condition(body, "Ready") or {}
        name = body["metadata"]["name"]
        if name in pods_ready and ready.get("status") == "True":
            at = dt.datetime.fromisoformat(ready["lastTransitionTime"].replace("Z", "+00:00"))
            waits.append(at.timestamp() - max(pods_ready[name], api_back))
    earlier = sum(1 for wait in waits if wait < 0)
    most = max(waits, default=0.0)
    return f"{most:.0f} s at most, over {len(waits)} ({earlier} Ready since before)"


def repaired_after_a_hand_deletion(own: OwnCluster, namespace: str, name: str) -> float:
    """Delete a child Service by hand: the repair proves the watches are live again."""
    core = client.CoreV1Api(own.api)
    core.delete_namespaced_service(name, namespace)

    def back() -> bool:
        try:
            service = core.read_namespaced_service(name, namespace)
        except client.ApiException:
            return False
        return service.metadata.deletion_timestamp is None

    return poll(back, f"Service {name} recreated", 60, 0.2)


def outage_drill(
    own: OwnCluster, drill_namespaces, operators, component: str, stem: str, down_for: float
) -> dict[str, Any]:
    namespace = drill_namespaces(stem, api=own.api)
    ngc_secret(own.api, namespace)
    operator = operators(kubeconfig=own.kubeconfig)
    pid = operator.pid
    create_batch(own, namespace, 0)
    poll(lambda: all_converged(own, namespace, BATCH), "the first batch converged", 300)

    create_batch(own, namespace, BATCH)  # the operator is busy with these when the API goes
    time.sleep(0.3)
    done_before = sum(1 for b in list_nds(own.api, namespace) if converged(b))
    stopped_at = time.monotonic()
    own.stop_component(component)
    assert local_cluster.running_pid(own.state, component) is None, f"{component} still runs"
    if component == "kube-apiserver":  # (with etcd away it may answer from its cache a while)
        assert not own.api_ready(), "the API still answers with kube-apiserver stopped"
    time.sleep(max(0.0, down_for - (time.monotonic() - stopped_at)))
    own.start_component(component)
    restarted_at = time.monotonic()
    poll(lambda: own.api_ready(), f"the API to answer after {component} restarted", 120, 0.2)
    api_back_at, api_back_epoch = time.monotonic(), time.time()

    def planned_with_children() -> bool:
        bodies = list_nds(own.api, namespace)
        planned = [b for b in bodies if (condition(b, "Planned") or {}).get("status") == "True"]
        children = census(own.api, [namespace])
        return (
            len(planned) == len(bodies) == 2 * BATCH
            and not any(stale_conditions(b) for b in bodies)
            and all(children.count(k) == 2 * BATCH for k in ("Deployment", "Service"))
        )

    planned_s = poll(planned_with_children, "every object planned, with children", 600, 0.5)
    replayed = [0]

    def recovered() -> bool:
        replayed[0] += kubelets_report_ready_again(own, namespace)
        return all_converged(own, namespace, 2 * BATCH)

    converge_s = poll(recovered, "every object converged", 600, 0.5)
    repair_s = repaired_after_a_hand_deletion(own, namespace, "nd-001")
    bodies = list_nds(own.api, namespace)
    children = census(own.api, [namespace])
    figures = {
        f"{component} down (s)": restarted_at - stopped_at,
        "API answering again after restart (s)": api_back_at - restarted_at,
        "objects converged when it went down": f"{done_before}/{2 * BATCH}",
        "planned, children there, after the API returned (s)": planned_s,
        "converged (Ready where replicas > 0) after the API returned (s)": planned_s + converge_s,
        "of which the operator's part (Ready after its last pod's Ready, or the API's return)": (
            operator_part_of_ready(own, namespace, api_back_epoch)
        ),
        "a hand-deleted Service recreated after (s)": repair_s,
        "pods the drill re-reported Ready (kubelet's part)": replayed[0],
        "duplicates / orphans": f"{len(children.duplicates())} / {len(children.orphans)}",
        "stale conditions": sum(1 for b in bodies if stale_conditions(b)),
        "operator restarted": operator.pid != pid or not operator.alive(),
        "handler errors logged (kinds)": dict(handled_errors(operator.logs())),
    }
    assert operator.alive() and operator.pid == pid
    operator.assert_never_crashed()
    assert children.duplicates() == {} and children.orphans == []
    for kind in ("Deployment", "Service", "PersistentVolumeClaim"):
        assert children.count(kind) == 2 * BATCH, kind
    return figures


@pytest.mark.timeout(1500)
def test_api_server_stopped_for_30s_the_operator_recovers_without_a_restart(
    own_cluster: OwnCluster, drill_namespaces, operators
) -> None:
    figures = outage_drill(
        own_cluster, drill_namespaces, operators, "kube-apiserver", "apistop", OUTAGE_SECONDS
    )
    report(f"kube-apiserver stopped for {OUTAGE_SECONDS} s", figures)


@pytest.mark.timeout(1500)
def test_etcd_restarted_the_operator_recovers_without_a_restart(
    own_cluster: OwnCluster, drill_namespaces, operators
) -> None:
    figures = outage_drill(own_cluster, drill_namespaces, operators, "etcd", "etcdstop", 10)
    report("etcd stopped for 10 s and restarted", figures)
