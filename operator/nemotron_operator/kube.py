"""The operator's own writes and reads against the API server (Kopf does the watching).

Every child is written with server-side apply under one field manager; status with a merge
patch of the status subresource; Events as core/v1 Events on the NemotronDeployment.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import logging
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from . import names

FIELD_MANAGER = names.FIELD_MANAGER
APPLY = "application/apply-patch+yaml"
log = logging.getLogger(__name__)


@functools.cache
def api() -> client.ApiClient:
    """One API client for the process: in-cluster credentials, else the kubeconfig."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    configuration = client.Configuration.get_default_copy()
    configuration.retries = 3
    api_client = client.ApiClient(configuration)
    # the API server's audit log and metrics tell the operator's requests apart by this
    api_client.user_agent = f"{names.FIELD_MANAGER}/{metadata.version('nemotron-operator')}"
    return api_client


class NamespaceTerminating(Exception):
    """The namespace is being deleted: nothing may be created in it any more."""


def apply(child: Mapping[str, Any]) -> None:
    """Server-side apply of a child object, taking over fields a person edited by hand."""
    try:
        _apply(child)
    except ApiException as error:
        if error.status == 403 and "NamespaceTerminating" in str(error.body):
            raise NamespaceTerminating(child["metadata"]["namespace"]) from None
        raise


def _apply(child: Mapping[str, Any]) -> None:
    meta = child["metadata"]
    name, namespace, body = meta["name"], meta["namespace"], dict(child)
    # the answer is not needed: skip turning it into client models (most of a write's CPU)
    common: dict[str, Any] = {
        "field_manager": FIELD_MANAGER,
        "force": True,
        "_content_type": APPLY,
        "_preload_content": False,
    }
    kind = child["kind"]
    response: Any  # undecoded (urllib3) whatever the kind
    if kind == "Deployment":
        response = client.AppsV1Api(api()).patch_namespaced_deployment(
            name, namespace, body, **common
        )
    elif kind == "Service":
        response = client.CoreV1Api(api()).patch_namespaced_service(name, namespace, body, **common)
    elif kind == "PersistentVolumeClaim":
        response = client.CoreV1Api(api()).patch_namespaced_persistent_volume_claim(
            name, namespace, body, **common
        )
    elif kind == "LeaderWorkerSet":
        group, version = child["apiVersion"].split("/")
        response = client.CustomObjectsApi(api()).patch_namespaced_custom_object(
            group, version, namespace, "leaderworkersets", name, body, **common
        )
    else:
        raise ValueError(f"the operator does not manage {kind} objects")
    _done(response)


def _done(response: Any) -> None:
    """Drain an undecoded response so its connection goes back to the pool (a new TLS
    handshake per request would cost more than the request)."""
    response.read()
    response.release_conn()


def delete_workload(kind: str, namespace: str, name: str) -> None:
    """Remove a workload of the kind the plan no longer uses (Deployment <-> LeaderWorkerSet)."""
    try:
        if kind == "Deployment":
            client.AppsV1Api(api()).delete_namespaced_deployment(name, namespace)
        else:
            group, version = names.LWS_API_VERSION.split("/")
            client.CustomObjectsApi(api()).delete_namespaced_custom_object(
                group, version, namespace, "leaderworkersets", name
            )
    except ApiException as error:
        if error.status != 404:
            raise


def patch_status(namespace: str, name: str, status: Mapping[str, Any]) -> None:
    response = client.CustomObjectsApi(api()).patch_namespaced_custom_object_status(
        names.GROUP,
        names.VERSION,
        namespace,
        names.PLURAL,
        name,
        {"status": dict(status)},
        _preload_content=False,
    )
    _done(response)


def post_event(owner: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    """An Event on the NemotronDeployment (`kubectl describe` shows it)."""
    meta = owner["metadata"]
    now = dt.datetime.now(dt.UTC)
    event = client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name=f"{meta['name']}.", namespace=meta["namespace"]),
        involved_object=client.V1ObjectReference(
            api_version=names.API_VERSION,
            kind=names.KIND,
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta["uid"],
            resource_version=meta.get("resourceVersion"),
        ),
        type=type_,
        reason=reason,
        message=message[:1024],
        count=1,
        first_timestamp=now,
        last_timestamp=now,
        source=client.V1EventSource(component=FIELD_MANAGER),
        reporting_component=FIELD_MANAGER,
        reporting_instance=FIELD_MANAGER,
    )
    try:
        _done(
            client.CoreV1Api(api()).create_namespaced_event(
                meta["namespace"], event, _preload_content=False
            )
        )
    except ApiException as error:  # an Event is news, not state: never fail a reconcile on it
        log.warning(
            "could not post event %s on %s/%s: %s",
            reason,
            meta["namespace"],
            meta["name"],
            error.reason,
        )


def read_secret_value(namespace: str, name: str, key: str) -> tuple[str | None, str]:
    """(value, why-not): the value of one key of a Secret in the object's own namespace."""
    try:
        secret = client.CoreV1Api(api()).read_namespaced_secret(name, namespace)
    except ApiException as error:
        if error.status == 404:
            return None, f'Secret "{name}" does not exist in namespace "{namespace}"'
        if error.status == 403:
            return None, f'the operator may not read Secret "{name}" in namespace "{namespace}"'
        raise
    data = secret.data or {}
    if key not in data:
        return None, f'Secret "{name}" has no key "{key}"'

    return base64.b64decode(data[key]).decode("utf-8", "replace").strip(), ""


def leaderworkerset_installed() -> bool:
    """Is the LeaderWorkerSet API served? (Asked only for replicas that span nodes.)"""
    group, version = names.LWS_API_VERSION.split("/")
    try:
        resources = client.CustomObjectsApi(api()).get_api_resources(group, version)
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return any(r.name == "leaderworkersets" for r in resources.resources or ())
