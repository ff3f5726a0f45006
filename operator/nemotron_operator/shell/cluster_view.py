"""What a person's kubeconfig lets the command line read about NemotronDeployments: the same
picture the operator's watches keep (world.World), listed once instead of watched.

Read-only: `kubectl nemotron` and `nemotron-operator render --kubeconfig` use it; the operator
itself never does (its indexes are Kopf's, kept by watches, see handlers.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from nemotron_operator.api import names
from nemotron_operator.core.inventory import gpus_requested_by_node
from nemotron_operator.core.render import ChildNames
from nemotron_operator.shell.world import Key, World, packed

CHILD_SELECTOR = f"{names.DEPLOYMENT_LABEL},{names.MANAGED_BY_LABEL}={names.MANAGED_BY_VALUE}"
LWS_GROUP, LWS_VERSION = names.LWS_API_VERSION.split("/")


class CannotAsk(Exception):
    """The question cannot be answered: no cluster, no such object, no such API."""


@dataclass(frozen=True)
class Connection:
    api: client.ApiClient
    context: str
    namespace: str  # the context's namespace, "default" when it names none


def connect(kubeconfig: str | None, context: str | None) -> Connection:
    """A client for `context` (default: the current one) of the kubeconfig `kubeconfig` (default:
    $KUBECONFIG, else ~/.kube/config), as kubectl picks them."""
    where = kubeconfig or "the kubeconfig"
    try:
        contexts, current = config.list_kube_config_contexts(config_file=kubeconfig)
        chosen = next((c for c in contexts if c["name"] == context), None) if context else current
        if chosen is None:
            raise CannotAsk(f'{where} has no context "{context}"')
        api = config.new_client_from_config(config_file=kubeconfig, context=chosen["name"])
    except (config.ConfigException, OSError) as error:
        raise CannotAsk(f"{where}: {error}".splitlines()[0]) from None
    namespace = (chosen.get("context") or {}).get("namespace") or "default"
    return Connection(api, chosen["name"], namespace)


def _plain(api: client.ApiClient, items: Iterable[Any], kind: str) -> list[dict[str, Any]]:
    """API objects as the dicts a watch delivers (list items carry no kind: it is set here)."""
    return [{**api.sanitize_for_serialization(item), "kind": kind} for item in items]


def _unreachable(error: Exception) -> CannotAsk:
    if isinstance(error, ApiException):
        return CannotAsk(f"the API server answered {error.status} {error.reason}")
    return CannotAsk(f"cannot reach the API server: {error}".splitlines()[0])


def _crd_missing(api: client.ApiClient) -> bool:
    try:
        client.ApiextensionsV1Api(api).read_custom_resource_definition(names.CRD_NAME)
    except ApiException as error:
        if error.status == 404:
            return True
        raise
    return False


def deployments(api: client.ApiClient, namespace: str | None) -> list[dict[str, Any]]:
    """The NemotronDeployments of `namespace` (None: of every namespace)."""
    objects = client.CustomObjectsApi(api)
    found: Any
    try:
        if namespace is None:
            found = objects.list_cluster_custom_object(names.GROUP, names.VERSION, names.PLURAL)
        else:
            found = objects.list_namespaced_custom_object(
                names.GROUP, names.VERSION, namespace, names.PLURAL
            )
    except ApiException as error:
        if error.status == 404 and _crd_missing(api):
            raise _no_api() from None
        raise _unreachable(error) from None
    except Exception as error:  # the connection: refused, timed out, TLS
        raise _unreachable(error) from None
    return [dict(item) for item in found.get("items") or ()]


def deployment(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    """The NemotronDeployment `namespace`/`name`, or CannotAsk saying what is missing."""
    objects = client.CustomObjectsApi(api)
    try:
        found: Any = objects.get_namespaced_custom_object(
            names.GROUP, names.VERSION, namespace, names.PLURAL, name
        )
        return dict(found)
    except ApiException as error:
        if error.status != 404:
            raise _unreachable(error) from None
        if _crd_missing(api):
            raise _no_api() from None
        raise CannotAsk(
            f'NemotronDeployment "{name}" not found in namespace "{namespace}"'
        ) from None
    except Exception as error:
        raise _unreachable(error) from None


def _no_api() -> CannotAsk:
    return CannotAsk(
        f"the cluster has no NemotronDeployment API (CustomResourceDefinition {names.CRD_NAME} "
        "not found): install the operator's CRD (kubectl apply --server-side -f crds/)"
    )


def config_map_value(api: client.ApiClient, namespace: str, name: str, key: str) -> str | None:
    """A ConfigMap's value (a custom model's config.json), None when it or the key is missing."""
    try:
        found = client.CoreV1Api(api).read_namespaced_config_map(name, namespace)
    except ApiException as error:
        if error.status == 404:
            return None
        raise _unreachable(error) from None
    return (found.data or {}).get(key)


@dataclass(frozen=True)
class ClusterView:
    world: World
    warnings: list[dict[str, Any]]  # every Warning event of the namespaces read


def gpu_world(api: client.ApiClient) -> World:
    """Only the GPU nodes and what every bound pod holds on them (World.snapshot(key).pools: the
    GPUs a NemotronDeployment `key` may plan on, its own pods' counted free)."""
    core = client.CoreV1Api(api)
    try:
        nodes = _plain(api, core.list_node().items, "Node")
        every_pod = _plain(api, core.list_pod_for_all_namespaces().items, "Pod")
    except Exception as error:  # ApiException, or the connection: refused, timed out, TLS
        raise _unreachable(error) from None
    return world_of((), nodes, every_pod, (), ())


def read(
    api: client.ApiClient, bodies: Iterable[Mapping[str, Any]], namespace: str | None
) -> ClusterView:
    """The operator's picture of the NemotronDeployments `bodies` of `namespace` (None: every
    namespace): their pods, the Warning events, their children, and the GPU nodes with what
    every bound pod holds on them, indexed as the operator's watches index them."""
    core, apps, batch = client.CoreV1Api(api), client.AppsV1Api(api), client.BatchV1Api(api)
    scoped: dict[str, Any] = {"label_selector": CHILD_SELECTOR}
    everywhere = namespace is None
    lists: list[tuple[str, Any, Any]] = [
        ("Deployment", apps.list_deployment_for_all_namespaces, apps.list_namespaced_deployment),
        (
            "StatefulSet",
            apps.list_stateful_set_for_all_namespaces,
            apps.list_namespaced_stateful_set,
        ),
        ("DaemonSet", apps.list_daemon_set_for_all_namespaces, apps.list_namespaced_daemon_set),
        ("Service", core.list_service_for_all_namespaces, core.list_namespaced_service),
        (
            "PersistentVolumeClaim",
            core.list_persistent_volume_claim_for_all_namespaces,
            core.list_namespaced_persistent_volume_claim,
        ),
        ("Job", batch.list_job_for_all_namespaces, batch.list_namespaced_job),
    ]
    try:
        nodes = _plain(api, core.list_node().items, "Node")
        every_pod = _plain(api, core.list_pod_for_all_namespaces().items, "Pod")
        children: list[dict[str, Any]] = []
        for kind, list_all, list_namespaced in lists:
            found = list_all(**scoped) if everywhere else list_namespaced(namespace, **scoped)
            children += _plain(api, found.items, kind)
        children += _leaderworkersets(api, namespace)
        if namespace is None:
            warnings = core.list_event_for_all_namespaces(field_selector="type=Warning")
        else:
            warnings = core.list_namespaced_event(namespace, field_selector="type=Warning")
    except Exception as error:  # ApiException, or the connection: refused, timed out, TLS
        raise _unreachable(error) from None
    events = _plain(api, warnings.items, "Event")
    return ClusterView(world_of(bodies, nodes, every_pod, events, children), events)


def _leaderworkersets(api: client.ApiClient, namespace: str | None) -> list[dict[str, Any]]:
    objects = client.CustomObjectsApi(api)
    found: Any
    try:
        if namespace is None:
            found = objects.list_cluster_custom_object(
                LWS_GROUP, LWS_VERSION, "leaderworkersets", label_selector=CHILD_SELECTOR
            )
        else:
            found = objects.list_namespaced_custom_object(
                LWS_GROUP,
                LWS_VERSION,
                namespace,
                "leaderworkersets",
                label_selector=CHILD_SELECTOR,
            )
    except ApiException as error:
        if error.status == 404:  # the LeaderWorkerSet API is not installed
            return []
        raise
    return [dict(item) for item in found.get("items") or ()]


def world_of(
    bodies: Iterable[Mapping[str, Any]],
    nodes: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    warnings: Iterable[Mapping[str, Any]],
    children: Iterable[Mapping[str, Any]],
) -> World:
    """A World from listed objects, indexed as the operator's watches index them (handlers.py):
    every pod counts for the GPUs it holds, the pods and children carrying a NemotronDeployment's
    label are its own (of the claims, only the shared cache claim the operator creates)."""
    index: dict[str, dict[Any, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for body in bodies:
        meta = body["metadata"]
        index["deployments"][(meta["namespace"], meta["name"])].append(body)
    for node in nodes:
        if names.GPU_PRODUCT_LABEL in ((node.get("metadata") or {}).get("labels") or {}):
            index["gpu_nodes"][node["metadata"]["name"]].append(node)
    for pod in pods:
        meta = pod["metadata"]
        if (pod.get("spec") or {}).get("nodeName"):
            for node_name, gpus in gpus_requested_by_node([pod]).items():
                if gpus:
                    index["gpu_requests"][node_name].append((meta["namespace"], meta["name"], gpus))
        owner = _owner(pod)
        if owner is not None:
            index["owned_pods"][(meta["namespace"], owner)].append(packed(pod))
        filling = _owner(pod, names.CACHE_DOWNLOAD_LABEL)
        if filling is not None:
            index["download_pods"][(meta["namespace"], filling)].append(packed(pod))
    for event in warnings:
        about = event.get("involvedObject") or {}
        if about.get("kind") == "Pod" and event.get("type") == "Warning":
            key = (event["metadata"]["namespace"], about.get("name"))
            index["pod_warnings"][key].append(packed(event))
    for child in children:
        owner = _owner(child)
        meta = child["metadata"]
        if owner is None or (
            child["kind"] == "PersistentVolumeClaim" and meta["name"] != ChildNames.of(owner).cache
        ):
            continue
        index["children"][(meta["namespace"], owner, child["kind"])].append(packed(child))
    return World(
        deployments=index["deployments"],
        gpu_nodes=index["gpu_nodes"],
        gpu_requests=index["gpu_requests"],
        owned_pods=index["owned_pods"],
        pod_warnings=index["pod_warnings"],
        children=[index["children"]],
        download_pods=index["download_pods"],
    )


def _owner(obj: Mapping[str, Any], label: str = names.DEPLOYMENT_LABEL) -> str | None:
    """The NemotronDeployment a pod or child belongs to, by the labels the operator puts on it
    (`label`: the deployment label, or the download pods' own)."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if labels.get(names.MANAGED_BY_LABEL) != names.MANAGED_BY_VALUE:
        return None
    owner = labels.get(label)
    return str(owner) if owner else None


def warnings_about(
    events: Iterable[Mapping[str, Any]], key: Key, objects: Iterable[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """The Warning events about the NemotronDeployment `key` itself or one of `objects` (its
    pods and children)."""
    namespace, name = key
    concerned = {(names.KIND, name)} | {
        (o.get("kind"), (o.get("metadata") or {}).get("name")) for o in objects
    }
    return [
        e
        for e in events
        if e.get("type") == "Warning"
        and (e.get("metadata") or {}).get("namespace") == namespace
        and ((e.get("involvedObject") or {}).get("kind"), e["involvedObject"].get("name"))
        in concerned
    ]
