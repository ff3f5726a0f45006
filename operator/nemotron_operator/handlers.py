"""The Kopf shell: what the operator watches, and what makes it converge a NemotronDeployment.

Level-based: every trigger (the object itself, its children, its pods, their Events, a GPU node
joining, a periodic check) calls `reconcile.converge` for the NemotronDeployment concerned, which
reads the indexes below, calls the pure core, and writes only what differs. Handlers here only
find which NemotronDeployment a change is about.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from . import kopf_workarounds, names, reconcile
from .inventory import gpus_requested_by_node

log = logging.getLogger(__name__)
ND = (names.GROUP, names.VERSION, names.PLURAL)
MANAGED = {names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE}
# What marks a child (and a pod) of a NemotronDeployment.
CHILD_LABELS: dict[str, Any] = {names.DEPLOYMENT_LABEL: kopf.PRESENT, **MANAGED}


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = names.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=names.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=names.GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING  # our own Events say what matters
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    settings.execution.max_workers = 8
    reconcile.configure_from_environment()
    reconcile.start_resync()


@kopf.on.cleanup()
def stop_background_work(**_: Any) -> None:
    reconcile.stop_background_work()


@kopf.on.probe(id="handlers")
async def handlers_not_held_back(**_: Any) -> str:
    """Liveness: fails when Kopf has held every handler back for minutes (kopf_workarounds), so
    that Kubernetes restarts an operator that would otherwise look alive and do nothing."""
    held = kopf_workarounds.oldest_hold_seconds(time.monotonic())
    if held > kopf_workarounds.HOLD_LIMIT_SECONDS:
        message = (
            f"every handler has waited {held:.0f} s for an index listing that never ended: "
            "the operator needs a restart"
        )
        log.error(message)
        raise kopf.PermanentError(message)
    return "running"


# --- indexes: the operator's picture of the cluster, kept current by watches -----------------


def plain(body: Mapping[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(dict(body))


@kopf.index(*ND)
def nemotron_deployments(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict:
    return {(namespace, name): plain(body)}


@kopf.index("v1", "nodes", labels={names.GPU_PRODUCT_LABEL: kopf.PRESENT})
def gpu_nodes(body: kopf.Body, name: str, **_: Any) -> dict:
    return {name: plain(body)}


@kopf.index("v1", "pods", when=lambda spec, **_: bool(spec.get("nodeName")))
def gpu_requests(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict | None:
    """node name -> (namespace, pod, GPUs) for every bound, unfinished pod holding GPUs."""
    held = gpus_requested_by_node([body])
    return {node: (namespace, name, gpus) for node, gpus in held.items() if gpus} or None


@kopf.index("v1", "pods", labels=CHILD_LABELS)
def owned_pods(body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any) -> dict:
    return {(namespace, labels[names.DEPLOYMENT_LABEL]): plain(body)}


@kopf.index("v1", "pods", labels=CHILD_LABELS)
def pod_owners(namespace: str | None, name: str, labels: kopf.Labels, **_: Any) -> dict:
    """(namespace, pod) -> the NemotronDeployment it belongs to (for Events about pods)."""
    return {(namespace, name): labels[names.DEPLOYMENT_LABEL]}


def _warning_about_a_pod(body: kopf.Body, **_: Any) -> bool:
    return body.get("involvedObject", {}).get("kind") == "Pod" and body.get("type") == "Warning"


@kopf.index("v1", "events", when=_warning_about_a_pod)
def pod_warnings(body: kopf.Body, namespace: str | None, **_: Any) -> dict:
    return {(namespace, body["involvedObject"]["name"]): plain(body)}


def _child_index(body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any) -> dict:
    return {(namespace, labels[names.DEPLOYMENT_LABEL], body["kind"]): plain(body)}


kopf.index("apps", "v1", "deployments", labels=CHILD_LABELS, id="children_deployments")(
    _child_index
)
kopf.index("v1", "services", labels=CHILD_LABELS, id="children_services")(_child_index)
kopf.index("v1", "persistentvolumeclaims", labels=CHILD_LABELS, id="children_claims")(_child_index)

# LeaderWorkerSets are not watched by Kopf: their API comes and goes with its CRD, which Kopf
# handles badly (namespace_watches says how). reconcile follows them with a watch of its own,
# and its LEADERWORKERSET_INDEX joins the children below.


def _world(kwargs: Mapping[str, Any]) -> reconcile.World:
    """The indexes as the core's World; also handed to the resync loop (they are live views)."""
    return reconcile.remember_world(
        reconcile.World(
            deployments=kwargs["nemotron_deployments"],
            gpu_nodes=kwargs["gpu_nodes"],
            gpu_requests=kwargs["gpu_requests"],
            owned_pods=kwargs["owned_pods"],
            pod_warnings=kwargs["pod_warnings"],
            children=[
                kwargs["children_deployments"],
                kwargs["children_services"],
                kwargs["children_claims"],
                reconcile.LEADERWORKERSET_INDEX,
            ],
        )
    )


# --- triggers --------------------------------------------------------------------------------


@kopf.on.event(*ND)
def nemotron_deployment_changed(
    body: kopf.Body, namespace: str | None, name: str, type: str | None, **kwargs: Any
) -> None:
    if namespace is None:
        return
    if type == "DELETED":
        reconcile.forget(namespace, name)
    else:
        reconcile.converge(namespace, name, _world(kwargs), body=plain(body))


@kopf.on.event("v1", "pods", labels=CHILD_LABELS)
@kopf.on.event("apps", "v1", "deployments", labels=CHILD_LABELS)
@kopf.on.event("v1", "services", labels=CHILD_LABELS)
@kopf.on.event("v1", "persistentvolumeclaims", labels=CHILD_LABELS)
def owned_object_changed(namespace: str | None, labels: kopf.Labels, **kwargs: Any) -> None:
    if namespace is not None:  # always: every kind here is namespaced
        reconcile.converge(namespace, labels[names.DEPLOYMENT_LABEL], _world(kwargs))


@kopf.on.event("v1", "events", when=_warning_about_a_pod)
def pod_warning_posted(body: kopf.Body, namespace: str | None, **kwargs: Any) -> None:
    for deployment in kwargs["pod_owners"].get((namespace, body["involvedObject"]["name"]), ()):
        reconcile.converge(str(namespace), deployment, _world(kwargs))


@kopf.on.event("v1", "nodes", labels={names.GPU_PRODUCT_LABEL: kopf.PRESENT})
def gpu_node_changed(**kwargs: Any) -> None:
    """A GPU node joined, left or changed: re-plan what waits for GPUs."""
    world = _world(kwargs)
    if not reconcile.inventory_changed(world):
        return
    for namespace, name in waiting_for_gpus(world.entries(world.deployments)):
        reconcile.converge(namespace, name, world)


def waiting_for_gpus(deployments: Iterable[tuple[tuple[str, str], Any]]) -> list[tuple[str, str]]:
    waiting = []
    for key, bodies in deployments:
        for body in bodies:
            conditions = (body.get("status") or {}).get("conditions") or []
            planned = next(
                (c for c in conditions if c.get("type") == names.ConditionType.PLANNED), None
            )
            if planned is None or planned.get("status") != "True":
                waiting.append(key)
    return waiting
