"""The operator's LeaderWorkerSet children, kept by a watch of its own (namespace_watches says
why not Kopf's): one per namespace where a NemotronDeployment spans nodes or did.

A change to one converges its NemotronDeployment (its status, a hand edit undone); a namespace
listed again converges every NemotronDeployment there that has or may have one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from nemotron_operator.api import names
from nemotron_operator.shell.namespace_watches import NamespaceWatches, WatchedKind
from nemotron_operator.shell.world import LiveIndex, packed

KIND = "LeaderWorkerSet"
LEADERWORKERSETS = WatchedKind(
    plural="LeaderWorkerSets",
    api=f"apis/{names.LWS_API_VERSION}",
    resource="leaderworkersets",
    label_selector=(f"{names.DEPLOYMENT_LABEL},{names.MANAGED_BY_LABEL}={names.MANAGED_BY_VALUE}"),
    when_forbidden="changes to the LeaderWorkerSets there are seen only when pods change",
)

# Called with (namespace, NemotronDeployment), or (namespace, None) for all of the namespace's.
OnChange = Callable[[str, str | None], None]
# Whether a namespace has a NemotronDeployment that spans nodes (or did, at its last status).
Needed = Callable[[str], bool]


class LeaderWorkerSetChildren:
    def __init__(self, on_change: OnChange, needed: Needed) -> None:
        self._on_change = on_change
        self._needed = needed
        self._objects: dict[tuple[str, str], bytes] = {}  # packed, as World reads children
        self._guard = threading.Lock()
        self._watches = NamespaceWatches(LEADERWORKERSETS, self)
        # shaped like the other children's indexes: (namespace, NemotronDeployment, kind)
        self.index = LiveIndex(self._get_child, self._child_keys)

    def follow(self, namespace: str) -> None:
        self._watches.follow(namespace)

    def stop(self) -> None:
        self._watches.stop()

    def get(self, namespace: str, deployment: str) -> bytes | None:
        """The NemotronDeployment's LeaderWorkerSet as last seen, packed (None: none seen)."""
        with self._guard:
            return self._objects.get((namespace, deployment))

    def _get_child(self, key: tuple[str, str, str]) -> bytes | None:
        namespace, deployment, kind = key
        return self.get(namespace, deployment) if kind == KIND else None

    def _child_keys(self) -> list[tuple[str, str, str]]:
        return [(namespace, name, KIND) for namespace, name in self.all_owners()]

    def forget(self, namespace: str, deployment: str) -> None:
        """It was deleted (its DELETED event may never come: its CRD gone with it)."""
        with self._guard:
            self._objects.pop((namespace, deployment), None)

    def owners(self, namespace: str) -> list[str]:
        return [name for ns, name in self.all_owners() if ns == namespace]

    def all_owners(self) -> list[tuple[str, str]]:
        """(namespace, NemotronDeployment) of every LeaderWorkerSet seen."""
        with self._guard:
            return list(self._objects)

    # --- namespace_watches.Listener ---

    def needed(self, namespace: str) -> bool:
        return self._needed(namespace) or bool(self.owners(namespace))

    def listed(self, namespace: str, items: list[dict[str, Any]]) -> None:
        with self._guard:
            for key in [key for key in self._objects if key[0] == namespace]:
                del self._objects[key]
            for item in items:
                owner = _owner(item)
                if owner:
                    self._objects[(namespace, owner)] = packed(item)
        self._on_change(namespace, None)

    def changed(self, namespace: str, event: str, obj: dict[str, Any]) -> None:
        owner = _owner(obj)
        if not owner:
            return
        with self._guard:
            if event == "DELETED":
                self._objects.pop((namespace, owner), None)
            else:
                self._objects[(namespace, owner)] = packed(obj)
        self._on_change(namespace, owner)

    def lost(self, namespace: str) -> None:
        """Keep what was seen: the objects rarely change in a gap, and the next list corrects
        them (forgetting them would report a running NIM as being created)."""


def _owner(obj: dict[str, Any]) -> str | None:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    owner = labels.get(names.DEPLOYMENT_LABEL)
    return str(owner) if owner else None
