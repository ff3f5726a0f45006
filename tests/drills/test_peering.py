"""Drill 3: two operators at once with Kopf peering (`run --peering NAME --priority N`): only the
one of higher priority acts; when it dies the other takes over. On a cluster of the drill's own,
serving the whole cluster as the chart does, with the peering CRDs Kopf ships (kopf.dev).
"""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest
import yaml
from kubernetes import client

from nemotron_operator.api import names
from tests.e2e.fake_kubelet import FakeKubelet

from .conftest import OwnCluster, condition, list_nds, nd_body, poll, report, wait_until

PEERING = "nemotron-drill"
ALLOWANCE = 20  # seconds a NIM may start before StartupTimeout (a clock the resync loop reads)
# Kopf's peering CRDs (https://github.com/nolar/kopf/blob/main/peering.yaml) and the
# cluster-wide peering object the operators of this drill share.
PEERING_CRDS = [
    {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.kopf.dev"},
        "spec": {
            "scope": scope,
            "group": "kopf.dev",
            "names": {"kind": kind, "plural": plural, "singular": plural[:-1]},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "status": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    for kind, plural, scope in (
        ("ClusterKopfPeering", "clusterkopfpeerings", "Cluster"),
        ("KopfPeering", "kopfpeerings", "Namespaced"),
    )
]
PEERING_OBJECT = {
    "apiVersion": "kopf.dev/v1",
    "kind": "ClusterKopfPeering",
    "metadata": {"name": PEERING},
}


def writes_in(log: str) -> list[str]:
    """The operator's own writes, from its --verbose log (urllib3 logs every request line;
    Kopf's own requests, such as peering keep-alives, go through aiohttp and are not there)."""
    return [
        line
        for line in log.splitlines()
        if '"PATCH ' in line or '"POST ' in line or '"PUT ' in line or '"DELETE ' in line
    ]


def reason(own: OwnCluster, namespace: str, name: str) -> str | None:
    body = next((b for b in list_nds(own.api, namespace) if b["metadata"]["name"] == name), None)
    ready = condition(body, "Ready") if body else None
    return ready["reason"] if ready else None


def poll_value(read: Any, what: str, timeout: float = 60) -> Any:
    return wait_until(read, what, timeout, 0.5)


def planned(own: OwnCluster, namespace: str, name: str) -> bool:
    body = next((b for b in list_nds(own.api, namespace) if b["metadata"]["name"] == name), None)
    found = condition(body, "Planned") if body else None
    return bool(
        found
        and found["status"] == "True"
        and found.get("observedGeneration") == body["metadata"]["generation"]  # type: ignore[index]
    )


@pytest.mark.timeout(900)
def test_one_operator_acts_and_the_other_takes_over_when_it_dies(
    own_cluster: OwnCluster, drill_namespaces, operators
) -> None:
    own = own_cluster
    own.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(PEERING_CRDS))
    own.kubectl("wait", "--for=condition=Established", "crd/clusterkopfpeerings.kopf.dev")
    own.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(PEERING_OBJECT))
    namespace = drill_namespaces("peering", api=own.api)
    objects = client.CustomObjectsApi(own.api)

    def run(priority: int, name: str) -> Any:
        return operators(
            kubeconfig=own.kubeconfig,
            namespaces=("*",),
            args=("--peering", PEERING, "--priority", str(priority), "--verbose"),
            name=name,
            env={"NEMOTRON_STARTUP_ALLOWANCE_SECONDS": str(ALLOWANCE)},
        )

    high = run(100, "high")
    low = run(50, "low")
    time.sleep(5)  # both have seen the peering object
    low_writes_before = len(writes_in(low.logs()))

    # objects the active one converges; half of them wait for GPUs no node has, so the resync
    # loop visits them every round, in both processes
    waiting = {"model": "nemotron-3-nano", "gpu": {"product": "NVIDIA-GB300"}, "replicas": 0}
    fitting = {"model": "nemotron-3-nano", "gpu": {"product": "NVIDIA-H100-80GB-HBM3"}}
    for i in range(6):
        spec = waiting if i % 2 else {**fitting, "replicas": 0}
        objects.create_namespaced_custom_object(
            names.GROUP, names.VERSION, namespace, names.PLURAL, nd_body(f"nd-{i}", spec)
        )
    poll(
        lambda: (
            all(condition(b, "Planned") for b in list_nds(own.api, namespace))
            and len(list_nds(own.api, namespace)) == 6
        ),
        "the active operator to plan every object",
        60,
    )
    # a spec change the passive one must not see, let alone undo from what it saw before
    move = {"spec": {"gpu": fitting["gpu"]}}
    objects.patch_namespaced_custom_object(
        names.GROUP, names.VERSION, namespace, names.PLURAL, "nd-1", move
    )
    poll(lambda: planned(own, namespace, "nd-1"), "nd-1 planned on H100", 60)
    time.sleep(70)  # more than two resync rounds of the passive operator
    low_writes_passive = writes_in(low.logs())[low_writes_before:]
    high_writes = len(writes_in(high.logs()))
    still_planned = planned(own, namespace, "nd-1")

    # the active one dies without a word: the passive one takes over when its lease runs out
    high.stop(signal.SIGKILL)
    killed_at = time.monotonic()
    objects.create_namespaced_custom_object(
        names.GROUP, names.VERSION, namespace, names.PLURAL, nd_body("after-kill", fitting)
    )
    takeover_kill_s = poll(
        lambda: planned(own, namespace, "after-kill"), "the passive operator to take over", 180, 0.5
    )
    takeover_kill_s = time.monotonic() - killed_at

    # The low one, active now, sees a NIM that is still starting...
    objects.create_namespaced_custom_object(
        names.GROUP, names.VERSION, namespace, names.PLURAL, nd_body("slow", fitting)
    )
    core = client.CoreV1Api(own.api)
    pod = poll_value(
        lambda: next(
            iter(
                core.list_namespaced_pod(
                    namespace, label_selector=f"{names.DEPLOYMENT_LABEL}=slow"
                ).items
            ),
            None,
        ),
        "the pod of slow",
    )
    kubelet = FakeKubelet(own.api, namespace)
    kubelet.not_ready(pod.metadata.name)
    poll(lambda: reason(own, namespace, "slow") == "Starting", "slow Starting", 60)
    # ...then a higher one comes back, and the low one steps aside with that picture frozen
    high_again = run(100, "high-again")
    time.sleep(10)
    low_mark = len(writes_in(low.logs()))
    objects.create_namespaced_custom_object(
        names.GROUP, names.VERSION, namespace, names.PLURAL, nd_body("after-return", fitting)
    )
    poll(lambda: planned(own, namespace, "after-return"), "the returning operator to act", 60)
    kubelet.ready(pod.metadata.name)  # the NIM is ready: only the active one sees it
    poll(lambda: reason(own, namespace, "slow") == "Ready", "slow Ready", 60)
    time.sleep(ALLOWANCE + 2 * 30 + 5)  # the frozen picture's allowance runs out; two rounds
    low_writes_after_return = writes_in(low.logs())[low_mark:]
    slow_reason = reason(own, namespace, "slow")
    high_again.stop(signal.SIGTERM)
    stopped_at = time.monotonic()
    objects.create_namespaced_custom_object(
        names.GROUP, names.VERSION, namespace, names.PLURAL, nd_body("after-term", fitting)
    )
    poll(lambda: planned(own, namespace, "after-term"), "takeover after SIGTERM", 180, 0.5)
    takeover_term_s = time.monotonic() - stopped_at

    report(
        "two operators with Kopf peering",
        {
            "writes of the active one (priority 100)": high_writes,
            "writes of the passive one (priority 50) over 70 s and a spec change": len(
                low_writes_passive
            ),
            "the change the passive one did not see is kept": still_planned,
            "takeover after SIGKILL of the active one (s)": takeover_kill_s,
            "writes of the low one once a higher one returned (90 s)": len(low_writes_after_return),
            "slow (ready since the return) says": slow_reason,
            "takeover after SIGTERM (s)": takeover_term_s,
        },
    )
    assert low_writes_passive == [], low_writes_passive[:5]
    assert high_writes > 0 and still_planned
    assert low_writes_after_return == [], low_writes_after_return[:5]
    assert slow_reason == "Ready"
    low.assert_never_crashed()
