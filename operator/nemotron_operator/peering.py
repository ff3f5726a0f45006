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


def configure(name: str, priority: int, clusterwide: bool) -> str:
    """Remember this process's peering; returns the identity to give Kopf."""
    identity = os.environ.get("POD_ID") or (
        f"nemotron-operator@{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:6]}"
    )
    _peering[:] = [Peering(name, priority, identity, clusterwide)]
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


def active(namespaces: Iterable[str]) -> bool:
    """May this process act now? Always, without peering (standalone)."""
    if not _peering:
        return True
    peering = _peering[0]
    objects = client.CustomObjectsApi(kube.api())
    now = dt.datetime.now(dt.UTC)
    bodies: list[Any]
    try:
        if peering.clusterwide:
            bodies = [
                objects.get_cluster_custom_object(
                    GROUP, VERSION, "clusterkopfpeerings", peering.name
                )
            ]
        else:  # Kopf keeps one peering object per served namespace
            bodies = [
                objects.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, "kopfpeerings", peering.name
                )
                for namespace in sorted(set(namespaces))
            ]
    except Exception as error:  # no peering object, or no answer: Kopf is paused too
        log.debug("peering %s unreadable (%s): the resync loop waits", peering.name, error)
        return False
    return all(
        peers_allow(body.get("status"), peering.identity, peering.priority, now) for body in bodies
    )
