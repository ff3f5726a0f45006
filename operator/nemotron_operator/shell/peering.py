"""Is this operator the active one of its Kopf peering? The one gate for what runs beside
Kopf's handlers (the controller's workers, whatever triggered them).

With `run --peering NAME --priority N`, Kopf pauses its watches while a peer of higher (or the
same) priority lives, and its handlers stop. The controller's own triggers (the safety resync,
the watches of key Secrets and LeaderWorkerSets, requeues) would go on converging from indexes
that no longer change, and overwrite what the active operator writes (a NIM ready since the
pause would get StartupTimeout from the frozen picture). So every key is passed through this
gate first, with Kopf's own rule, read from the peering objects Kopf keeps: paused when a live
peer other than this process has a priority >= this one's, or when the peering object cannot be
read (Kopf pauses then too, until it can).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from cachetools import TTLCache
from kubernetes import client

from nemotron_operator.shell import kube
from nemotron_operator.shell.settings import PeeringSettings

log = logging.getLogger(__name__)
GROUP, VERSION = "kopf.dev", "v1"
ANSWER_SECONDS = 5.0  # how long a peering object's answer is used (Kopf's keep-alive: 60 s)

ReadAllowed = Callable[[PeeringSettings, "str | None"], bool]


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


class PeeringGate:
    """Where this process may act now. Without peering (standalone): everywhere, reading
    nothing. With namespaced peering each namespace has a peering object of its own, so one that
    cannot be read holds back only its namespace. Each answer is used for ANSWER_SECONDS."""

    def __init__(
        self,
        peering: PeeringSettings | None,
        read_allowed: ReadAllowed | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._peering = peering
        self._read_allowed = read_allowed or _read_allowed
        options: dict[str, Any] = {"timer": clock} if clock else {}
        self._answers: TTLCache[str | None, bool] = TTLCache(4096, ANSWER_SECONDS, **options)
        self._guard = threading.Lock()

    def acting_in(self, namespaces: Iterable[str]) -> set[str]:
        wanted = set(namespaces)
        peering = self._peering
        if peering is None:
            return wanted
        if peering.clusterwide:
            return wanted if self._allowed(peering, None) else set()
        return {namespace for namespace in wanted if self._allowed(peering, namespace)}

    def acts_in(self, namespace: str) -> bool:
        return namespace in self.acting_in([namespace])

    def _allowed(self, peering: PeeringSettings, namespace: str | None) -> bool:
        with self._guard:
            answer = self._answers.get(namespace)
        if answer is None:
            answer = self._read_allowed(peering, namespace)
            with self._guard:
                self._answers[namespace] = answer
        return answer


def _read_allowed(peering: PeeringSettings, namespace: str | None) -> bool:
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
