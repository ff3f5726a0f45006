"""The operator's own writes and reads against the API server (Kopf does the watching).

Every child is written with server-side apply under one field manager; status with a merge
patch of the status subresource; Events as core/v1 Events on the NemotronDeployment.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import logging
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from nemotron_operator.api import names
from nemotron_operator.core.cache_size import SizeLog
from nemotron_operator.core.render import json_for_yaml
from nemotron_operator.shell import metrics

FIELD_MANAGER = names.FIELD_MANAGER
REQUEST_TIMEOUT = (10, 60)  # seconds to connect, seconds to wait for the answer
APPLY = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
# The API server decodes a body a second time, strictly, to warn of unknown or duplicate fields
# (fieldValidation=Warn, its default): the operator's bodies are its own encoded dicts (no
# duplicates), unknown fields are refused by server-side apply whatever the setting, and nobody
# reads the warnings. Skipping the second decode saves the API server a YAML parse per apply.
NO_STRICT_DECODING = ("fieldValidation", "Ignore")
log = logging.getLogger(__name__)


CONNECTIONS_KEPT = 64


@functools.cache
def api() -> client.ApiClient:
    """One API client for the process: in-cluster credentials, else the kubeconfig."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    configuration = client.Configuration.get_default_copy()
    configuration.retries = 3
    # Connections kept open for the next request. The watches (six per namespace served by name
    # or glob, for the children) hold one each while they run and give it back when they list
    # or end; each worker's write takes one. A connection given back to a full pool is closed.
    configuration.connection_pool_maxsize = CONNECTIONS_KEPT
    api_client = client.ApiClient(configuration)
    # the API server's audit log and metrics tell the operator's requests apart by this
    api_client.user_agent = f"{names.FIELD_MANAGER}/{metadata.version('nemotron-operator')}"
    # The client waits forever unless told otherwise: one answer that never comes would hold a
    # handler thread for good, and a few such would stop the operator. Every request gets a
    # deadline; a timed-out converge is retried by the resync loop.
    send: Any = api_client.rest_client.request

    def request_with_deadline(*args: Any, **kwargs: Any) -> Any:
        kwargs["_request_timeout"] = kwargs.get("_request_timeout") or REQUEST_TIMEOUT
        return send(*args, **kwargs)

    counted = metrics.counting_writes(request_with_deadline, _KINDS)  # writes, by kind and verb
    api_client.rest_client.request = counted  # type: ignore[method-assign]
    return api_client


class NamespaceTerminating(Exception):
    """The namespace is being deleted: nothing may be created in it any more."""


class ChildRejected(Exception):
    """The API server refused a child: invalid (400, 422) or forbidden (403: RBAC, a quota).
    Trying again changes nothing until the spec (or the namespace's limits) change."""

    def __init__(self, child: Mapping[str, Any], status: int, message: str) -> None:
        what = f'{child["kind"]} "{child["metadata"]["name"]}"'
        advice = (
            "the operator may not create it here (RBAC or a ResourceQuota)"
            if status == 403
            else "fix the spec"
        )
        super().__init__(f"the API server refused the {what} (HTTP {status}): {message}: {advice}")


def apply(
    child: Mapping[str, Any], *, dry_run: bool = False, answer: bool = False
) -> dict[str, Any] | None:
    """Server-side apply of a child object, taking over fields a person edited by hand
    (dry_run: only ask whether the API server would take it; answer: return the object as the
    API server now has it)."""
    query = [("fieldManager", FIELD_MANAGER), ("force", "true"), NO_STRICT_DECODING]
    if dry_run:
        query.append(("dryRun", "All"))
    return _write(child, APPLY, apply_body(child), query, answer)


def merge_patch(child: Mapping[str, Any]) -> None:
    """A JSON merge patch of the whole child: it replaces every list the child has (containers,
    env, ports, ...) whole. Server-side apply cannot remove the list entries another field
    manager added (a container, a port of another number), so a hand edit of that kind is undone
    with this."""
    query = [("fieldManager", FIELD_MANAGER), NO_STRICT_DECODING]
    _write(child, MERGE_PATCH, child, query, answer=False)


def _write(
    child: Mapping[str, Any], content_type: str, body: Body, query: Query, answer: bool
) -> dict[str, Any] | None:
    try:
        return _patch(child, content_type, body, query, answer)
    except ApiException as error:
        if error.status == 403 and "NamespaceTerminating" in str(error.body):
            raise NamespaceTerminating(child["metadata"]["namespace"]) from None
        if error.status in (400, 403, 422) or (
            # a field the schema does not know (in a free-form part of the spec such as
            # affinity or env valueFrom): server-side apply answers 500 for it, every time
            error.status == 500 and "failed to create typed patch object" in str(error.body)
        ):
            raise ChildRejected(child, error.status, _message(error)) from None
        raise


def _message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "")["message"])
    except (TypeError, ValueError, KeyError):
        return str(error.reason)


def apply_body(child: Mapping[str, Any]) -> str:
    """The child as JSON that the API server's YAML reader takes back unchanged."""
    return json_for_yaml(child)


Query = list[tuple[str, str]]
Body = str | Mapping[str, Any]  # text for YAML (apply), a mapping for JSON (merge patch)

# Where each kind of child lives: {api} is "api/v1" or "apis/<group>/<version>".
_PLURALS = {
    "Deployment": "deployments",
    "StatefulSet": "statefulsets",
    "DaemonSet": "daemonsets",
    "Job": "jobs",
    "Service": "services",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "LeaderWorkerSet": "leaderworkersets",
}
# The kinds the operator writes, by the plural its URLs name them with (for the metrics).
_KINDS = {plural: kind for kind, plural in _PLURALS.items()} | {
    "events": "Event",
    names.PLURAL: names.KIND,
}


def _patch(
    child: Mapping[str, Any], content_type: str, body: Body, query: Query, answer: bool
) -> dict[str, Any] | None:
    meta, kind = child["metadata"], child["kind"]
    if kind not in _PLURALS:
        raise ValueError(f"the operator does not manage {kind} objects")
    group_version = child["apiVersion"]
    prefix = "api/v1" if group_version == "v1" else f"apis/{group_version}"
    path = f"/{prefix}/namespaces/{meta['namespace']}/{_PLURALS[kind]}/{meta['name']}"
    data = _send("PATCH", path, content_type, body, query)
    return dict(json.loads(data)) if answer else None


def _send(method: str, path: str, content_type: str, body: Body | None, query: Query) -> bytes:
    """One request, its answer undecoded. The generated API methods take a body as a dict and
    encode it with json.dumps (surrogate pairs), and decode every answer into client models (most
    of a write's CPU): an apply body goes as text (the client encodes a JSON body itself, text or
    not), and the answer is decoded only by the caller that reads it."""
    method, url, headers, _, _ = api().param_serialize(
        method,
        path,
        query_params=query,
        header_params={"Content-Type": content_type, "Accept": "application/json"},
        auth_settings=["BearerToken"],
    )
    response = api().call_api(method, url, headers, body=body)
    data: bytes = response.read()
    response.response.release_conn()  # back to the pool: no TLS handshake per write
    if not 200 <= response.status <= 299:
        raise ApiException.from_response(http_resp=response, body=data.decode(), data=None)
    return data


def connect() -> None:
    """Make the API client and open a pooled connection now (at start-up), not on the first
    NemotronDeployment's way to its children (27 ms from its render to its first request reaching
    the API server, against 1.5 ms for the next ones). A failure here is left to the first write
    to meet."""
    try:
        _send("GET", "/version", "application/json", None, [])
    except Exception as error:  # the API server away: Kopf's own start meets it too
        log.debug("no connection to the API server yet: %s", error)


def _done(response: Any) -> None:
    """Drain an undecoded response so its connection goes back to the pool (a new TLS
    handshake per request would cost more than the request)."""
    response.read()
    response.release_conn()


def delete_child(kind: str, namespace: str, name: str) -> None:
    """Remove a child the NemotronDeployment no longer uses: a workload of another kind
    (Deployment, StatefulSet, LeaderWorkerSet), a download Job for other files (with its pods),
    the image pre-pull DaemonSet once turned off, or one created just before a sibling was
    refused (a Service, a claim)."""
    try:
        if kind == "Deployment":
            client.AppsV1Api(api()).delete_namespaced_deployment(name, namespace)
        elif kind == "StatefulSet":
            client.AppsV1Api(api()).delete_namespaced_stateful_set(name, namespace)
        elif kind == "DaemonSet":
            client.AppsV1Api(api()).delete_namespaced_daemon_set(name, namespace)
        elif kind == "Job":
            client.BatchV1Api(api()).delete_namespaced_job(
                name, namespace, propagation_policy="Background"
            )
        elif kind == "Service":
            client.CoreV1Api(api()).delete_namespaced_service(name, namespace)
        elif kind == "PersistentVolumeClaim":
            client.CoreV1Api(api()).delete_namespaced_persistent_volume_claim(name, namespace)
        else:
            group, version = names.LWS_API_VERSION.split("/")
            client.CustomObjectsApi(api()).delete_namespaced_custom_object(
                group, version, namespace, "leaderworkersets", name
            )
    except ApiException as error:
        if error.status != 404:
            raise


def patch_status(namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
    """Write the status; returns it as the API server stored it (a CRD older than the operator
    prunes the fields it does not know)."""
    path = (
        f"/apis/{names.GROUP}/{names.VERSION}/namespaces/{namespace}/{names.PLURAL}/{name}/status"
    )
    data = _send("PATCH", path, MERGE_PATCH, {"status": dict(status)}, [NO_STRICT_DECODING])
    return dict(json.loads(data).get("status") or {})


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


def read_config_map_value(namespace: str, name: str, key: str) -> str | None:
    """The text of one key of a ConfigMap in the object's own namespace (None: no such
    ConfigMap or key, or the operator may not read it)."""
    try:
        config_map = client.CoreV1Api(api()).read_namespaced_config_map(name, namespace)
    except ApiException as error:
        if error.status in (403, 404):
            return None
        raise
    value = (config_map.data or {}).get(key)
    return str(value) if value is not None else None


def read_log_tail(namespace: str, pod: str, container: str, limit_bytes: int) -> SizeLog:
    """The last line of a container's log (at most `limit_bytes` of it), or why it could not be
    read, in a few words of the operator's own (the answer's text is not passed on)."""
    try:
        response: Any = client.CoreV1Api(api()).read_namespaced_pod_log(
            pod,
            namespace,
            container=container,
            tail_lines=1,
            limit_bytes=limit_bytes,
            _preload_content=False,
        )
        text = response.data.decode("utf-8", "replace")
        response.release_conn()
    except ApiException as error:
        if error.status == 403:
            return SizeLog(unreadable="the operator may not read pod logs (RBAC: get pods/log)")
        if error.status in (400, 404):
            return SizeLog(unreadable=f"its log is not available (HTTP {error.status})")
        return SizeLog(unreadable=f"the API server answered HTTP {error.status}")
    except Exception as error:  # the connection: refused, timed out, TLS
        log.debug("could not read the log of %s/%s: %s", namespace, pod, error)
        return SizeLog(unreadable="the API server did not answer")
    lines = text.strip().splitlines()
    return SizeLog(line=lines[-1] if lines else None)


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
