"""Is this operator the active one of its Kopf peering? For what runs beside Kopf's handlers.

With `run --peering NAME --priority N`, Kopf pauses its watches while a peer of higher (or the
same) priority lives, and its handlers stop. The resync loop is a thread of ours: paused, it
would go on converging from indexes that no longer change, and overwrite what the active
operator writes (a NIM ready since the pause would get StartupTimeout from the frozen picture).
So it asks here first, with Kopf's own rule, read from the peering objects Kopf keeps: paused
when a live peer other than this process has a priority >= this one's, or when the peering
object cannot be read (Kopf pauses then too, until it can).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from . import kube

log = logging.getLogger(__name__)
GROUP, VERSION = "kopf.dev", "v1"


@dataclass(frozen=True)
class Peering:
    name: str
    priority: int
    identity: str  # as handed to kopf.run(identity=...): how this process shows in the status
    clusterwide: bool


_peering: list[Peering] = []
ANSWER_SECONDS = 5.0  # how long a peering object's answer is used (Kopf's keep-alive: 60 s)
_answers: dict[str | None, tuple[float, bool]] = {}  # namespace (None: cluster) -> (when, allowed)
_answers_guard = threading.Lock()


def configure(name: str, priority: int, clusterwide: bool) -> str:
    """Remember this process's peering; returns the identity to give Kopf."""
    identity = os.environ.get("POD_ID") or (
        f"nemotron-operator@{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:6]}"
    )
    _peering[:] = [Peering(name, priority, identity, clusterwide)]
    with _answers_guard:
        _answers.clear()
    return identity


def peers_allow(
    status: Mapping[str, Any] | None, identity: str, priority: int, now: dt.datetime
) -> bool:
    """Kopf's rule on one peering object's status ({identity: {priority, lifetime, lastseen}}):
    no live peer but this one with a priority at least this one's."""
    for peer, info in (status or {}).items():
        if peer == identity or not isinstance(info, Mapping):
            continue
        try:
            seen = dt.datetime.fromisoformat(str(info["lastseen"]))
            lifetime = dt.timedelta(seconds=int(info.get("lifetime", 60)))
            other = int(info.get("priority", 0))
        except (KeyError, TypeError, ValueError):
            continue  # Kopf skips what it cannot read as well
        if seen.tzinfo is None:
            seen = seen.replace(tzinfo=dt.UTC)
        if seen + lifetime > now and other >= priority:
            return False
    return True


def acting_in(namespaces: Iterable[str]) -> set[str]:
    """The namespaces, among `namespaces`, where this process may act now: all of them without
    peering (standalone). With namespaced peering each has a peering object of its own, so one
    that cannot be read holds back only its namespace."""
    wanted = set(namespaces)
    if not _peering:
        return wanted
    peering = _peering[0]
    if peering.clusterwide:
        return wanted if _allowed(peering, None) else set()
    return {namespace for namespace in wanted if _allowed(peering, namespace)}


def acts_in(namespace: str) -> bool:
    """May this process act in `namespace` now (acting_in, for one namespace)?"""
    return namespace in acting_in([namespace])


def _allowed(peering: Peering, namespace: str | None) -> bool:
    """The answer for one peering object (None: the cluster-wide one), read at most every
    ANSWER_SECONDS: the resync loop and the watches ask on every round and every change."""
    now = time.monotonic()
    with _answers_guard:
        asked = _answers.get(namespace)
        if asked is not None and now - asked[0] < ANSWER_SECONDS:
            return asked[1]
    answer = _read_allowed(peering, namespace)
    with _answers_guard:
        _answers[namespace] = (now, answer)
    return answer


def _read_allowed(peering: Peering, namespace: str | None) -> bool:
    objects = client.CustomObjectsApi(kube.api())
    body: Any
    try:
        if namespace is None:
            body = objects.get_cluster_custom_object(
                GROUP, VERSION, "clusterkopfpeerings", peering.name
            )
        else:
            body = objects.get_namespaced_custom_object(
                GROUP, VERSION, namespace, "kopfpeerings", peering.name
            )
    except Exception as error:  # no peering object, or no answer: Kopf is paused too
        log.debug("peering %s unreadable (%s): the operator waits", peering.name, error)
        return False
    now = dt.datetime.now(dt.UTC)
    return peers_allow(body.get("status"), peering.identity, peering.priority, now)
