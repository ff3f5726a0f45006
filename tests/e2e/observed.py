"""What a user looks at besides the conditions: the NIM pods, the Events on a
NemotronDeployment, the children, and the Secret holding the NGC key."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from nemotron_operator.api import names

from .conftest import Cluster, wait_until
from .nemotron import NemotronDeployments

KEY_SECRET = "ngc-api"


def put_key_secret(cluster: Cluster, namespace: str, key: str, name: str = KEY_SECRET) -> None:
    """Create or replace the Secret holding an NGC API key (under NGC_API_KEY)."""
    core = client.CoreV1Api(cluster.api)
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(name=name), string_data={"NGC_API_KEY": key}
    )
    try:
        core.create_namespaced_secret(namespace, body)
    except ApiException as error:
        if error.status != 409:
            raise
        core.replace_namespaced_secret(name, namespace, body)


def pods_of(cluster: Cluster, namespace: str, deployment: str) -> list[client.V1Pod]:
    pods = client.CoreV1Api(cluster.api).list_namespaced_pod(
        namespace, label_selector=f"{names.DEPLOYMENT_LABEL}={deployment}"
    )
    return [p for p in pods.items if p.metadata.deletion_timestamp is None]


def nim_pod(cluster: Cluster, namespace: str, deployment: str) -> client.V1Pod:
    """The one live pod of a NemotronDeployment, once it runs."""

    def running() -> client.V1Pod | None:
        live = pods_of(cluster, namespace, deployment)
        return live[0] if len(live) == 1 and live[0].status.phase == "Running" else None

    return wait_until(running, f"the running pod of {deployment}")


def nim_env(pod: client.V1Pod) -> dict[str, client.V1EnvVar]:
    return {e.name: e for e in pod.spec.containers[0].env or ()}


def workload(
    cluster: Cluster, namespace: str, name: str
) -> client.V1StatefulSet | client.V1Deployment | None:
    """The NIM pods' workload: a StatefulSet (a cache claim per replica, the default), or a
    Deployment (a shared or existing cache claim)."""
    apps = client.AppsV1Api(cluster.api)
    for read in (apps.read_namespaced_stateful_set, apps.read_namespaced_deployment):
        try:
            return read(name, namespace)
        except ApiException as error:
            if error.status != 404:
                raise
    return None


def gone(read: Callable[[], Any]) -> bool:
    """Whether `read` finds nothing (404)."""
    try:
        read()
    except ApiException as error:
        return error.status == 404
    return False


def create_claim(
    cluster: Cluster, namespace: str, name: str, access_mode: str, size: str
) -> client.V1PersistentVolumeClaim:
    """A PersistentVolumeClaim of the cluster's default StorageClass, as a user makes one."""
    return client.CoreV1Api(cluster.api).create_namespaced_persistent_volume_claim(
        namespace,
        client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1PersistentVolumeClaimSpec(
                access_modes=[access_mode],
                resources=client.V1VolumeResourceRequirements(requests={"storage": size}),
            ),
        ),
    )


def events_about(
    cluster: Cluster, namespace: str, name: str, reason: str | None = None
) -> list[client.CoreV1Event]:
    """Events on the NemotronDeployment (with `reason`, when given)."""
    found = client.CoreV1Api(cluster.api).list_namespaced_event(
        namespace,
        field_selector=f"involvedObject.kind={names.KIND},involvedObject.name={name}",
    )
    return [e for e in found.items if reason is None or e.reason == reason]


def posted_once(cluster: Cluster, namespace: str, name: str, reason: str) -> None:
    """Exactly one Event with `reason` on the NemotronDeployment (all of them shown if not).
    The operator posts it just after the status write, so it may be a moment behind."""
    wait_until(lambda: events_about(cluster, namespace, name, reason), f"a {reason} Event", 10)
    events = events_about(cluster, namespace, name)
    shown = [
        f"{e.metadata.creation_timestamp:%H:%M:%S} {e.type} {e.reason}: {e.message[:100]}"
        for e in sorted(events, key=lambda e: e.metadata.creation_timestamp)
    ]
    assert sum(e.reason == reason for e in events) == 1, "\n".join(shown)


# How long a cause or a recovery may take to reach the status: well under the resync period
# (settings.DEFAULT_RESYNC_SECONDS, 300 s), so that it must come through the watches.
EVENT_WAIT = 10.0


def failing(
    nds: NemotronDeployments, name: str, reason: str, timeout: float = EVENT_WAIT
) -> dict[str, Any]:
    """Wait for Degraded=True with `reason`; Ready must then be False with the same reason and
    message. Returns the Degraded condition."""
    nds.wait_condition(name, "Degraded", "True", reason, timeout=timeout)
    # one read of both: the message may change meanwhile (a pod count "(1 of 2 pods)")
    status = nds.get(name).get("status") or {}
    conditions = {c["type"]: c for c in status.get("conditions") or []}
    degraded, ready = conditions["Degraded"], conditions["Ready"]
    assert (degraded["status"], degraded["reason"]) == ("True", reason)
    assert (ready["status"], ready["reason"]) == ("False", reason)
    assert ready["message"] == degraded["message"]
    return dict(degraded)


def recovered(nds: NemotronDeployments, name: str, timeout: float = EVENT_WAIT) -> None:
    nds.wait_condition(name, "Ready", "True", "Ready", timeout=timeout)
    degraded = nds.condition(name, "Degraded")
    assert degraded is not None and degraded["status"] == "False", degraded


def everything_in(cluster: Cluster, namespace: str) -> dict[str, str]:
    """Every object a user can read in the namespace, except Secrets and pod statuses (which
    the kubelet writes), as JSON text by kind: where a leaked key would show."""
    api = cluster.api
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    objects = client.CustomObjectsApi(api)
    pods = [api.sanitize_for_serialization(p) for p in core.list_namespaced_pod(namespace).items]
    for pod in pods:
        pod.pop("status", None)
    listed = {
        "NemotronDeployment": objects.list_namespaced_custom_object(
            names.GROUP, names.VERSION, namespace, names.PLURAL
        ),
        "Event": api.sanitize_for_serialization(core.list_namespaced_event(namespace)),
        "Deployment": api.sanitize_for_serialization(apps.list_namespaced_deployment(namespace)),
        "StatefulSet": api.sanitize_for_serialization(apps.list_namespaced_stateful_set(namespace)),
        "ReplicaSet": api.sanitize_for_serialization(apps.list_namespaced_replica_set(namespace)),
        "Pod": pods,
        "Service": api.sanitize_for_serialization(core.list_namespaced_service(namespace)),
        "PersistentVolumeClaim": api.sanitize_for_serialization(
            core.list_namespaced_persistent_volume_claim(namespace)
        ),
        "ConfigMap": api.sanitize_for_serialization(core.list_namespaced_config_map(namespace)),
    }
    return {kind: json.dumps(found) for kind, found in listed.items()}
