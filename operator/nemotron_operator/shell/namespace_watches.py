"""Watches of one namespaced kind, one per namespace that needs it, kept outside Kopf.

Kopf is the wrong tool for two kinds the operator follows:

- Secrets: Kopf would list and watch every Secret of every served namespace, data and all.
  Here the API server sends metadata only (key_secrets).
- LeaderWorkerSets: their API comes and goes with its CRD, and Kopf 1.45 handles that badly.
  An index on it holds back every handler for good when the CRD is removed before Kopf's first
  list is answered. A watcher that meets a 404 there stops Kopf's orchestrator, after which no
  namespace made later is served (both seen in the e2e suite). Here a missing API is waited for
  (leaderworkersets).

A watch lists, then follows the events from the list's resourceVersion. It lists again after a
410 or a lost connection, says once in the log when RBAC forbids it, and waits while the API is
not served. It ends within WATCH_SECONDS[1] once the namespace no longer needs it.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from kubernetes.client.rest import ApiException

from nemotron_operator.shell import kube, metrics

log = logging.getLogger(__name__)

# The API server ends each watch after a time drawn from these bounds (client-go's reflectors
# draw from the same 5-10 minutes), so the watches of many namespaces are not renewed in step; the
# watch then resumes from its last resourceVersion, without a list. The length is not a latency:
# events arrive as they happen. It bounds how long a watch no namespace needs lingers, and how
# long a connection that died without a word goes unnoticed (Kopf's own watches: 5 minutes).
WATCH_SECONDS = (300, 600)
RETRY_SECONDS = 5  # after a lost connection
ABSENT_RETRY_SECONDS = 30  # the API is not served (404): its CRD may be installed later
FORBIDDEN_RETRY_SECONDS = 300  # after a 403: RBAC changes rarely
METADATA_ONLY = "application/json;as=PartialObjectMetadata{list};g=meta.k8s.io;v=v1"
ALL_NAMESPACES = ""  # a namespace to follow: one watch of the whole cluster


@dataclass(frozen=True)
class WatchedKind:
    plural: str  # as log lines name it: "Secrets"
    api: str  # "api/v1" or "apis/<group>/<version>"
    resource: str  # "secrets"
    label_selector: str | None = None
    metadata_only: bool = False  # names and versions, never the objects' content
    list_limit: int | None = None  # objects listed at most (None: all)
    when_forbidden: str = ""  # what the log says a 403 costs
    # a 403 counts as a list of nothing (else: what was seen is kept, and nothing is listed)
    listed_when_forbidden: bool = False

    def path(self, namespace: str) -> str:
        if namespace == ALL_NAMESPACES:
            return f"/{self.api}/{self.resource}"
        return f"/{self.api}/namespaces/{namespace}/{self.resource}"


class Listener(Protocol):
    def needed(self, namespace: str) -> bool:
        """Whether the namespace still needs its watch (asked before each list and watch)."""

    def listed(self, namespace: str, items: list[dict[str, Any]]) -> None:
        """What the namespace holds now: replaces whatever was known of it."""

    def changed(self, namespace: str, event: str, obj: dict[str, Any]) -> None:
        """ADDED, MODIFIED or DELETED, after the list."""

    def lost(self, namespace: str) -> None:
        """The watch has a gap (a lost connection, a 403, the watch ended): what is known of
        the namespace may be out of date until its next list."""


class NamespaceWatches:
    def __init__(self, kind: WatchedKind, listener: Listener) -> None:
        self.kind = kind
        self._listener = listener
        self._followed: set[str] = set()
        self._asked: dict[str, int] = {}  # namespace -> how often follow() was called for it
        self._guard = threading.Lock()
        self._stop = threading.Event()

    def follow(self, namespace: str) -> None:
        """Watch this namespace from now on, while it needs it (again: nothing happens). May be
        called from Kopf's loop: it never waits for the listener."""
        with self._guard:
            self._asked[namespace] = self._asked.get(namespace, 0) + 1
            if namespace in self._followed or self._stop.is_set():
                return
            self._followed.add(namespace)
        threading.Thread(
            target=self._watch,
            args=(namespace,),
            name=f"{self.kind.resource} in {where(namespace)}",
            daemon=True,
        ).start()

    def stop(self) -> None:
        self._stop.set()

    @property
    def followed(self) -> set[str]:
        with self._guard:
            return set(self._followed)

    def _still_needed(self, namespace: str) -> bool:
        # The listener is asked without the lock (it may wait for Kopf's loop, which may be
        # calling follow()); a follow() meanwhile keeps the watch, so no request falls between.
        with self._guard:
            asked = self._asked.get(namespace, 0)
        if self._listener.needed(namespace):
            return True
        with self._guard:
            if self._asked.get(namespace, 0) != asked:
                return True
            self._followed.discard(namespace)
            return False

    def _watch(self, namespace: str) -> None:
        version: str | None = None  # where the watch resumes; None: list first
        told_forbidden = told_absent = False
        # every failure below is a gap: the listener hears of it, and the next round lists
        while not self._stop.is_set() and self._still_needed(namespace):
            try:
                if version is None:
                    version, items = self._list(namespace)
                    self._listener.listed(namespace, items)
                    told_absent = False
                version = self._follow_events(namespace, version)
                told_forbidden = False
            except ApiException as error:
                self._listener.lost(namespace)
                metrics.watch_restarted(self.kind.resource)
                version = None
                if error.status == 410:  # too old to resume from: list again
                    continue
                if error.status == 404:  # the API is not served (no CRD): none exist
                    if not told_absent:  # once, not at every retry
                        self._listener.listed(namespace, [])
                        told_absent = True
                    self._stop.wait(ABSENT_RETRY_SECONDS)
                    continue
                if error.status == 403:
                    if not told_forbidden:
                        if self.kind.listed_when_forbidden:
                            self._listener.listed(namespace, [])
                        log.warning(
                            "the operator may not watch %s in %s: %s",
                            self.kind.plural,
                            where(namespace),
                            self.kind.when_forbidden,
                        )
                        told_forbidden = True
                    self._stop.wait(FORBIDDEN_RETRY_SECONDS)
                    continue
                log.debug(
                    "%s watch in %s: HTTP %s", self.kind.plural, where(namespace), error.status
                )
                self._stop.wait(RETRY_SECONDS)
            except Exception as error:  # the API server away, a connection cut
                self._listener.lost(namespace)
                metrics.watch_restarted(self.kind.resource)
                version = None
                log.debug(
                    "%s watch in %s: %s", self.kind.plural, where(namespace), type(error).__name__
                )
                self._stop.wait(RETRY_SECONDS)
        self._listener.lost(namespace)

    def _follow_events(self, namespace: str, version: str) -> str | None:
        """Follow the watch until the API server ends it; the version to resume from (None:
        too old to resume, list again)."""
        for event in self._events(namespace, version):
            if self._stop.is_set():
                return version
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":  # 410 Gone: the version was compacted away
                self._listener.lost(namespace)
                metrics.watch_restarted(self.kind.resource)
                return None
            version = (obj.get("metadata") or {}).get("resourceVersion") or version
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                self._listener.changed(namespace, str(kind), obj)
        return version

    def _list(self, namespace: str) -> tuple[str, list[dict[str, Any]]]:
        query = {"limit": str(self.kind.list_limit)} if self.kind.list_limit else {}
        answer = self._request(namespace, query, "List", None)
        try:
            body = json.loads(answer.read())
        finally:
            answer.release_conn()
        return str(body["metadata"]["resourceVersion"]), list(body.get("items") or ())

    def _events(self, namespace: str, version: str) -> Iterator[dict[str, Any]]:
        seconds = random.randint(*WATCH_SECONDS)
        query = {
            "watch": "true",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(seconds),
        }
        answer = self._request(namespace, query, "", (10, seconds + 30))
        try:
            for line in answer:
                if line.strip():
                    yield json.loads(line)
        finally:
            answer.release_conn()

    def _request(
        self, namespace: str, query: dict[str, str], list_suffix: str, timeout: Any
    ) -> Any:
        """The urllib3 response of a GET of the namespace's objects of this kind, unread."""
        if self.kind.label_selector:
            query = {**query, "labelSelector": self.kind.label_selector}
        accept = (
            METADATA_ONLY.format(list=list_suffix)
            if self.kind.metadata_only
            else "application/json"
        )
        method, url, headers, _, _ = kube.api().param_serialize(
            "GET",
            self.kind.path(namespace),
            query_params=list(query.items()),
            header_params={"Accept": accept},
            auth_settings=["BearerToken"],
        )
        response = kube.api().call_api(method, url, headers, _request_timeout=timeout)
        if not 200 <= response.status <= 299:
            data = response.read()
            raise ApiException.from_response(http_resp=response, body=data.decode(), data=None)
        return response.response


def where(namespace: str) -> str:
    return "every namespace" if namespace == ALL_NAMESPACES else f"namespace {namespace}"
