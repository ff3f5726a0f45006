"""Watch the Secrets that hold NGC keys: a key created, fixed, rotated or deleted is acted on
within a second, not at the next resync.

Kopf is not used for this: it would list and watch every Secret of every served namespace, data
and all, and keep them in memory. Here one watch runs per namespace whose NemotronDeployments
name a key Secret, and it asks the API server for metadata only (PartialObjectMetadata): names
and resourceVersions, never a Secret's data. What changed is then read the usual way
(`kube.read_secret_value`) by the converge it triggers. While a namespace's watch runs, it also
knows each Secret's resourceVersion (`version`): a converge that finds the key's version
unchanged uses the registry's answer it has for that version, and reads nothing.

Where the operator may not list or watch Secrets (RBAC: the chart grants it in secretNamespaces
only), the watch says so once in the log and tries again every few minutes; the resync loop
still picks a changed key up.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes.client.rest import ApiException

from . import kube

log = logging.getLogger(__name__)

WATCH_SECONDS = 60  # the API server ends each watch after this; it is resumed if still needed
RETRY_SECONDS = 5  # after a lost connection
FORBIDDEN_RETRY_SECONDS = 300  # after a 403: RBAC changes rarely
METADATA_ONLY = "application/json;as=PartialObjectMetadata{list};g=meta.k8s.io;v=v1"
LIST_LIMIT = 500  # Secrets listed at most; one beyond has no known version and is read each time

# Called with (namespace, secret name), or (namespace, None) when the watch may have missed
# changes (it resumed after a gap) and every key Secret of the namespace should be looked at.
OnChange = Callable[[str, str | None], None]
# Whether a namespace still has a NemotronDeployment that reads its key from a Secret.
Needed = Callable[[str], bool]


class KeySecretWatches:
    """One metadata-only watch of Secrets per namespace it is asked to follow, for as long as the
    namespace needs it (a watch ends within WATCH_SECONDS of the last such deployment going)."""

    def __init__(self, on_change: OnChange, needed: Needed) -> None:
        self._on_change = on_change
        self._needed = needed
        self._followed: set[str] = set()
        self._versions: dict[str, dict[str, str]] = {}  # namespace -> Secret -> resourceVersion
        self._guard = threading.Lock()
        self._stop = threading.Event()

    def follow(self, namespace: str) -> None:
        """Watch the Secrets of this namespace from now on (again: nothing happens)."""
        with self._guard:
            if namespace in self._followed or self._stop.is_set():
                return
            self._followed.add(namespace)
        threading.Thread(
            target=self._watch, args=(namespace,), name=f"key-secrets/{namespace}", daemon=True
        ).start()

    def stop(self) -> None:
        self._stop.set()

    def version(self, namespace: str, name: str) -> str | None:
        """The Secret's resourceVersion as the running watch last saw it; None when unknown (not
        watched, the watch interrupted, the Secret not seen: read it)."""
        with self._guard:
            return self._versions.get(namespace, {}).get(name)

    def _seen(self, namespace: str, versions: dict[str, str] | None) -> None:
        """Replace what is known of the namespace's Secrets (None: nothing is known now)."""
        with self._guard:
            if versions is None:
                self._versions.pop(namespace, None)
            else:
                self._versions[namespace] = versions

    def _changed(self, namespace: str, name: str, version: str | None) -> None:
        with self._guard:
            known = self._versions.get(namespace)
            if known is None:
                return
            if version is None:
                known.pop(name, None)
            else:
                known[name] = version

    def _watch(self, namespace: str) -> None:
        version: str | None = None  # where the watch resumes; None: list first
        told_forbidden = False
        while not self._stop.is_set() and self._still_needed(namespace):
            try:
                if version is None:
                    version, versions = _list(namespace)
                    self._seen(namespace, versions)
                    # what changed before the list (since the converge that asked to follow
                    # this namespace, or in a gap of the watch) was not seen: look at it all
                    self._on_change(namespace, None)
                version = self._follow_events(namespace, version)
                told_forbidden = False
            except ApiException as error:
                self._seen(namespace, None)
                if error.status == 410:  # too old to resume from
                    version = None
                    continue
                if error.status == 403:
                    if not told_forbidden:
                        log.warning(
                            "the operator may not watch Secrets in namespace %s: a changed NGC "
                            "key there is seen at the next resync, not at once",
                            namespace,
                        )
                        told_forbidden = True
                    self._stop.wait(FORBIDDEN_RETRY_SECONDS)
                    continue
                log.debug("Secret watch in %s: HTTP %s; resuming", namespace, error.status)
                self._stop.wait(RETRY_SECONDS)
            except Exception as error:  # the API server away, a connection cut
                self._seen(namespace, None)
                log.debug("Secret watch in %s: %s; resuming", namespace, type(error).__name__)
                self._stop.wait(RETRY_SECONDS)
        self._seen(namespace, None)

    def _still_needed(self, namespace: str) -> bool:
        with self._guard:  # follow() decides under the same lock: no request falls between
            if self._needed(namespace):
                return True
            self._followed.discard(namespace)
            return False

    @property
    def followed(self) -> set[str]:
        with self._guard:
            return set(self._followed)

    def _follow_events(self, namespace: str, version: str) -> str | None:
        """Follow the watch until the API server ends it; the version to resume from (None:
        too old to resume, list again)."""
        for event in _watch_events(namespace, version):
            if self._stop.is_set():
                return version
            kind, meta = event.get("type"), (event.get("object") or {}).get("metadata") or {}
            if kind == "ERROR":  # 410 Gone: the version was compacted away
                self._seen(namespace, None)
                return None
            version = meta.get("resourceVersion") or version
            if kind in ("ADDED", "MODIFIED", "DELETED") and meta.get("name"):
                name = str(meta["name"])
                self._changed(namespace, name, version if kind != "DELETED" else None)
                self._on_change(namespace, name)
        return version


def _list(namespace: str) -> tuple[str, dict[str, str]]:
    """The resourceVersion to watch from, and each Secret's (metadata only, LIST_LIMIT at most)."""
    query = {"limit": str(LIST_LIMIT)}
    answer = _request(namespace, query, METADATA_ONLY.format(list="List"), None)
    try:
        body = json.loads(answer.read())
    finally:
        answer.release_conn()
    versions = {
        str(item["metadata"]["name"]): str(item["metadata"]["resourceVersion"])
        for item in body.get("items") or ()
    }
    return str(body["metadata"]["resourceVersion"]), versions


def _watch_events(namespace: str, version: str) -> Iterator[dict[str, Any]]:
    query = {
        "watch": "true",
        "resourceVersion": version,
        "allowWatchBookmarks": "true",
        "timeoutSeconds": str(WATCH_SECONDS),
    }
    answer = _request(namespace, query, METADATA_ONLY.format(list=""), (10, WATCH_SECONDS + 30))
    try:
        for line in answer:
            if line.strip():
                yield json.loads(line)
    finally:
        answer.release_conn()


def _request(
    namespace: str, query: dict[str, str], accept: str, timeout: tuple[int, int] | None
) -> Any:
    """The urllib3 response of a GET of this namespace's Secrets (metadata only), unread."""
    method, url, headers, _, _ = kube.api().param_serialize(
        "GET",
        f"/api/v1/namespaces/{namespace}/secrets",
        query_params=list(query.items()),
        header_params={"Accept": accept},
        auth_settings=["BearerToken"],
    )
    response = kube.api().call_api(method, url, headers, _request_timeout=timeout)
    if not 200 <= response.status <= 299:
        data = response.read()
        raise ApiException.from_response(http_resp=response, body=data.decode(), data=None)
    return response.response
