"""The Kopf shell: what the operator watches, and which NemotronDeployment a change is about.

Level-based: every trigger (the object itself, its pods, their Events, a GPU node joining)
enqueues the NemotronDeployment concerned in the controller's work queue; a worker converges it
from the indexes below and those of the controller's own watches (its children's: controller.py).
The handlers are coroutines: they run on Kopf's event loop, where the indexes change, so what they
read of them cannot race.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Mapping
from typing import Any

import kopf

from nemotron_operator.api import names
from nemotron_operator.core.catalog import load_catalog
from nemotron_operator.core.inventory import gpus_requested_by_node
from nemotron_operator.core.render import compile_templates
from nemotron_operator.shell import kopf_workarounds, kube, metrics, ngc, runner
from nemotron_operator.shell.controller import Controller, KopfIndexes
from nemotron_operator.shell.converge import Converger
from nemotron_operator.shell.credentials import Credentials, NgcRegistry
from nemotron_operator.shell.key_secrets import KeySecretWatches
from nemotron_operator.shell.owned_children import OwnedChildren
from nemotron_operator.shell.peering import PeeringGate
from nemotron_operator.shell.settings import Settings
from nemotron_operator.shell.world import EventLoopReads, kept_copy, kept_deployment, packed

log = logging.getLogger(__name__)
ND = (names.GROUP, names.VERSION, names.PLURAL)
MANAGED = {names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE}
# What marks a child (and a pod) of a NemotronDeployment.
CHILD_LABELS: dict[str, Any] = {names.DEPLOYMENT_LABEL: kopf.PRESENT, **MANAGED}
# What marks the pod of a download Job (no deployment label: the Service must not select it).
DOWNLOAD_POD_LABELS: dict[str, Any] = {names.CACHE_DOWNLOAD_LABEL: kopf.PRESENT, **MANAGED}


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **indexes: Any) -> None:
    """Kopf's settings, and the controller (kept in Kopf's memo for the handlers below)."""
    settings.persistence.finalizer = names.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=names.GROUP)
    settings.persistence.diffbase_storage = kopf_workarounds.NoDiffBase()
    settings.posting.level = logging.WARNING  # our own Events say what matters
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    settings.execution.max_workers = 8
    # Kopf holds each object's event for 0.1 s by default, waiting for a newer one to fold in.
    # The handlers below only enqueue a key (the work queue folds repeats), so the wait bought
    # nothing and was most of the time from a NemotronDeployment created to its children.
    settings.batching.batch_window = 0.0
    filter_on_the_server(settings, kopf.get_default_registry())
    memo.controller = operator_controller(memo.settings, indexes, asyncio.get_running_loop())
    memo.controller.start()
    # the namespaces served: named ones now, those matching globs as Kopf finds them
    named = kopf_workarounds.named_namespaces(memo.settings.namespaces)
    memo.controller.served_namespaces(named)
    kopf_workarounds.served_namespaces_revised[:] = [
        lambda found: memo.controller.served_namespaces(named | found)
    ]
    metrics.follow(memo.controller)
    compile_templates()  # what the first NemotronDeployment would wait for
    kube.connect()
    runner.settle_heap()


def operator_controller(
    operator_settings: Settings, indexes: Mapping[str, Any], loop: asyncio.AbstractEventLoop
) -> Controller:
    """The controller on the cluster, fed by the indexes declared below."""
    catalog = load_catalog(operator_settings.catalog_overrides)
    key_secrets: list[KeySecretWatches] = []  # the controller makes the watch; credentials ask it

    def secret_version(namespace: str, name: str) -> str | None:
        return key_secrets[0].version(namespace, name) if key_secrets else None

    def key_secret_watches(on_change: Any, needed: Any) -> KeySecretWatches:
        key_secrets.append(KeySecretWatches(on_change, needed))
        return key_secrets[0]

    credentials = Credentials(
        NgcRegistry(operator_settings.registry_url),
        kube.read_secret_value,
        secret_version,
        operator_settings.credentials_recheck_seconds,
    )
    converger = Converger(
        catalog,
        credentials,
        kube,
        published_profiles=ngc.PublishedProfileCache(operator_settings.metadata_api_url)
        if operator_settings.live_catalog
        else None,
        startup_allowance_seconds=operator_settings.startup_allowance_seconds,
        pause_image=operator_settings.pause_image,
    )
    controller = Controller(
        KopfIndexes(
            deployments=indexes["nemotron_deployments"],
            gpu_nodes=indexes["gpu_nodes"],
            gpu_requests=indexes["gpu_requests"],
            owned_pods=indexes["owned_pods"],
            pod_warnings=indexes["pod_warnings"],
            download_pods=indexes["download_pods"],
        ),
        converger,
        EventLoopReads(loop),
        PeeringGate(operator_settings.peering),
        workers=operator_settings.workers,
        resync_seconds=operator_settings.resync_seconds,
        key_secret_watches=key_secret_watches,
        owned_children=functools.partial(OwnedChildren, clusterwide=operator_settings.clusterwide),
    )
    return controller


@kopf.on.cleanup()
def stop_background_work(memo: kopf.Memo, **_: Any) -> None:
    if getattr(memo, "controller", None) is not None:
        memo.controller.stop()


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
# The indexers are coroutines though they never wait: Kopf runs a plain function in its thread
# pool, a hop to another thread and back for every indexer and every watch event.


@kopf.index(*ND)
async def nemotron_deployments(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict:
    return {(namespace, name): kept_deployment(body)}


@kopf.index("v1", "nodes", labels={names.GPU_PRODUCT_LABEL: kopf.PRESENT})
async def gpu_nodes(body: kopf.Body, name: str, **_: Any) -> dict:
    return {name: kept_copy(body)}


@kopf.index("v1", "pods", when=lambda spec, **_: bool(spec.get("nodeName")))
async def gpu_requests(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict | None:
    """node name -> (namespace, pod, GPUs) for every bound, unfinished pod holding GPUs."""
    held = gpus_requested_by_node([body])
    return {node: (namespace, name, gpus) for node, gpus in held.items() if gpus} or None


@kopf.index("v1", "pods", labels=CHILD_LABELS)
async def owned_pods(body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any) -> dict:
    return {(namespace, labels[names.DEPLOYMENT_LABEL]): packed(body)}


@kopf.index("v1", "pods", labels=CHILD_LABELS)
async def pod_owners(namespace: str | None, name: str, labels: kopf.Labels, **_: Any) -> dict:
    """(namespace, pod) -> the NemotronDeployment it belongs to (for Events about pods)."""
    return {(namespace, name): labels[names.DEPLOYMENT_LABEL]}


@kopf.index("v1", "pods", labels=DOWNLOAD_POD_LABELS)
async def download_pods(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict:
    """The pods of a download Job, by the NemotronDeployment whose cache they fill: diagnosed
    like its NIM pods, for CacheReady."""
    return {(namespace, labels[names.CACHE_DOWNLOAD_LABEL]): packed(body)}


@kopf.index("v1", "pods", labels=DOWNLOAD_POD_LABELS)
async def download_pod_owners(
    namespace: str | None, name: str, labels: kopf.Labels, **_: Any
) -> dict:
    """(namespace, pod) -> the NemotronDeployment a download pod fills the cache of."""
    return {(namespace, name): labels[names.CACHE_DOWNLOAD_LABEL]}


# The Events the handlers below take, as the API server selects them (and as they check again)
POD_WARNINGS = "type=Warning,involvedObject.kind=Pod"


def _warning_about_a_pod(body: kopf.Body, **_: Any) -> bool:
    return body.get("involvedObject", {}).get("kind") == "Pod" and body.get("type") == "Warning"


@kopf.index("v1", "events", when=_warning_about_a_pod)
async def pod_warnings(body: kopf.Body, namespace: str | None, **_: Any) -> dict:
    return {(namespace, body["involvedObject"]["name"]): packed(body)}


# The children (Deployments, StatefulSets, Services, Jobs, DaemonSets, the shared cache claim)
# and the LeaderWorkerSets are not watched by Kopf: the controller follows them with watches of its
# own (owned_children, leaderworkersets), whose indexes join those above.


def filter_on_the_server(settings: kopf.OperatorSettings, registry: kopf.OperatorRegistry) -> None:
    """Kopf filters by label in the operator: without this, the API server sends (and the
    operator decodes) every Deployment, Service, ... and Event of the namespaces it serves,
    whoever's it is (bench_bystanders measures what that costs)."""
    for resource, selector in kopf_workarounds.server_label_selectors(registry).items():
        settings.watching.label_selectors[resource] = selector
    settings.watching.field_selectors["v1", "events"] = POD_WARNINGS


# --- triggers: each finds the NemotronDeployment a change is about, and enqueues it -----------


@kopf.on.event(*ND)
async def nemotron_deployment_changed(
    body: kopf.Body,
    namespace: str | None,
    name: str,
    type: str | None,
    memo: kopf.Memo,
    **indexes: Any,
) -> None:
    if namespace is None:
        return
    if type == "DELETED":
        memo.controller.deployment_deleted((namespace, name))
        return
    # the copy the index took of this very body (Kopf indexes an event before handling it)
    uid = body["metadata"].get("uid")
    kept = [
        b
        for b in indexes["nemotron_deployments"].get((namespace, name), ())
        if b["metadata"]["uid"] == uid
    ]
    memo.controller.deployment_changed(
        (namespace, name), kept[0] if kept else kept_deployment(body)
    )


@kopf.on.event("v1", "pods", labels=CHILD_LABELS)
async def owned_pod_changed(
    namespace: str | None, labels: kopf.Labels, memo: kopf.Memo, **_: Any
) -> None:
    if namespace is not None:  # always: every kind here is namespaced
        memo.controller.enqueue((namespace, labels[names.DEPLOYMENT_LABEL]))


@kopf.on.event("v1", "pods", labels=DOWNLOAD_POD_LABELS)
async def download_pod_changed(
    namespace: str | None, labels: kopf.Labels, memo: kopf.Memo, **_: Any
) -> None:
    """A download pod pulls, runs or fails while its Job says nothing new."""
    if namespace is not None:
        memo.controller.enqueue((namespace, labels[names.CACHE_DOWNLOAD_LABEL]))


@kopf.on.event("v1", "events", when=_warning_about_a_pod)
async def pod_warning_posted(
    body: kopf.Body, namespace: str | None, memo: kopf.Memo, **kwargs: Any
) -> None:
    pod = (namespace, body["involvedObject"]["name"])
    for owners in (kwargs["pod_owners"], kwargs["download_pod_owners"]):
        for deployment in owners.get(pod, ()):
            memo.controller.enqueue((str(namespace), deployment))


@kopf.on.event("v1", "nodes", labels={names.GPU_PRODUCT_LABEL: kopf.PRESENT})
async def gpu_node_changed(memo: kopf.Memo, **_: Any) -> None:
    """A GPU node joined, left or changed: re-plan what waits for GPUs."""
    memo.controller.gpu_nodes_changed()
