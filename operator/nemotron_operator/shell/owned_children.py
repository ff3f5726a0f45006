"""The operator's children, kept by watches of its own (not Kopf's): its Deployments,
StatefulSets, Services, Jobs, DaemonSets and shared cache claims.

Kopf handled about seven watch events per new NemotronDeployment at about 1.7 ms of CPU each, most
of them its children's (a StatefulSet added, its status written by its controller, a Service
added), and its event loop sat on the way to every request. Here an event costs a JSON decode and
a pack (world.packed). When the operator serves the whole cluster, one watch per kind serves it
all; when it serves namespaces by name or glob, one per kind and namespace served (started as
Kopf finds the namespace), and in a namespace no longer served while it still has objects there.

A namespace's NemotronDeployments are not converged until every kind has been listed there: a
converge that saw no children would apply them all again (Kopf's indexes gave the same
guarantee). Each listing converges every NemotronDeployment of its namespace. One never converged
goes at once: it has no children to miss.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from nemotron_operator.api import names
from nemotron_operator.core.render import ChildNames
from nemotron_operator.shell.namespace_watches import ALL_NAMESPACES, NamespaceWatches, WatchedKind
from nemotron_operator.shell.world import LiveIndex, packed

# The labels every child carries, as the API server selects them
CHILD_SELECTOR = f"{names.DEPLOYMENT_LABEL},{names.MANAGED_BY_LABEL}={names.MANAGED_BY_VALUE}"
FORBIDDEN = "its NemotronDeployments there are converged without knowing their children"


# kind -> API version: what the operator creates, and watches
CHILD_KINDS = {
    "Deployment": "apps/v1",
    "StatefulSet": "apps/v1",
    "DaemonSet": "apps/v1",
    "Job": "batch/v1",
    "Service": "v1",
    "PersistentVolumeClaim": "v1",
}


def watched(kind: str) -> WatchedKind:
    api_version = CHILD_KINDS[kind]
    return WatchedKind(
        plural=f"{kind}s",
        api="api/v1" if api_version == "v1" else f"apis/{api_version}",
        resource=f"{kind.lower()}s",
        label_selector=CHILD_SELECTOR,
        listed_when_forbidden=True,
        when_forbidden=FORBIDDEN,
    )


# Called with (namespace, NemotronDeployment), or (namespace, None) for all of the namespace's
# (ALL_NAMESPACES: of every namespace).
OnChange = Callable[[str, str | None], None]
# Whether a namespace has a NemotronDeployment (asked of named namespaces only).
Needed = Callable[[str], bool]
ChildKey = tuple[str, str, str]  # (namespace, NemotronDeployment, kind), as world.World reads


class OwnedChildren:
    def __init__(self, on_change: OnChange, needed: Needed, clusterwide: bool) -> None:
        self._on_change = on_change
        self._needed = needed
        self._clusterwide = clusterwide
        self._served: set[str] = set()  # namespaces served by name or glob (not the whole cluster)
        self._objects: dict[ChildKey, bytes] = {}  # packed, as world.World reads children
        self._listed: dict[str, set[str]] = {kind: set() for kind in CHILD_KINDS}
        self._guard = threading.Lock()
        self._watches = [
            NamespaceWatches(watched(kind), _KindListener(self, kind)) for kind in CHILD_KINDS
        ]
        self.index: Mapping[ChildKey, list[bytes]] = LiveIndex(self.get, self.keys)

    def start(self) -> None:
        if self._clusterwide:
            self.follow(ALL_NAMESPACES)

    def follow(self, namespace: str) -> None:
        """Watch the namespace's children from now on (serving the whole cluster: they are)."""
        for watches in self._watches:
            watches.follow(ALL_NAMESPACES if self._clusterwide else namespace)

    def serve(self, namespaces: set[str]) -> None:
        """The namespaces the operator serves now: watched from now on, before their first
        NemotronDeployment (else it would wait for the listing of six kinds, 55-82 ms here);
        one no longer served is watched while it still has objects or children."""
        if self._clusterwide:
            return
        with self._guard:
            new = namespaces - self._served
            self._served = set(namespaces)
        for namespace in sorted(new):
            self.follow(namespace)

    def stop(self) -> None:
        for watches in self._watches:
            watches.stop()

    def listed(self, namespace: str) -> bool:
        """Whether every kind has been listed in the namespace: its converges may start."""
        with self._guard:
            return all(
                namespace in listed or ALL_NAMESPACES in listed for listed in self._listed.values()
            )

    def get(self, key: ChildKey) -> bytes | None:
        with self._guard:
            return self._objects.get(key)

    def keys(self) -> list[ChildKey]:
        with self._guard:
            return list(self._objects)

    # --- what the watches of one kind report (_KindListener) ---

    def needed(self, namespace: str) -> bool:
        if namespace == ALL_NAMESPACES:
            return True
        with self._guard:
            if namespace in self._served:
                return True
        if self._needed(namespace):
            return True
        with self._guard:
            return any(key[0] == namespace for key in self._objects)

    def replace(self, kind: str, namespace: str, items: list[tuple[ChildKey, bytes]]) -> None:
        with self._guard:
            for key in [
                k for k in self._objects if k[2] == kind and namespace in (ALL_NAMESPACES, k[0])
            ]:
                del self._objects[key]
            self._objects.update(items)
            self._listed[kind].add(namespace)
        if self.listed(namespace):
            self._on_change(namespace, None)

    def changed(self, key: ChildKey, value: bytes | None) -> None:
        with self._guard:
            if value is None:
                self._objects.pop(key, None)
            else:
                self._objects[key] = value
        self._on_change(key[0], key[1])


class _KindListener:
    """namespace_watches.Listener for the watches of one kind."""

    def __init__(self, children: OwnedChildren, kind: str) -> None:
        self._children = children
        self._kind = kind

    def needed(self, namespace: str) -> bool:
        return self._children.needed(namespace)

    def listed(self, namespace: str, items: list[dict[str, Any]]) -> None:
        kept = []
        for item in items:  # a list's items name neither their kind nor their API version
            item.setdefault("kind", self._kind)
            item.setdefault("apiVersion", CHILD_KINDS[self._kind])
            key = self._key(item)
            if key is not None:
                kept.append((key, packed(item)))
        self._children.replace(self._kind, namespace, kept)

    def changed(self, namespace: str, event: str, obj: dict[str, Any]) -> None:
        key = self._key(obj)
        if key is not None:
            self._children.changed(key, None if event == "DELETED" else packed(obj))

    def lost(self, namespace: str) -> None:
        """Keep what was seen: the objects rarely change in a gap, and the next list corrects
        them (forgetting them would have the next converge apply them again)."""

    def _key(self, obj: Mapping[str, Any]) -> ChildKey | None:
        meta = obj.get("metadata") or {}
        owner = (meta.get("labels") or {}).get(names.DEPLOYMENT_LABEL)
        if not owner:
            return None
        # the shared cache claim the operator creates; not the claims a StatefulSet makes per
        # pod (they carry the same labels, and are the StatefulSet's to create)
        if self._kind == "PersistentVolumeClaim" and meta.get("name") != ChildNames.of(owner).cache:
            return None
        return (str(meta.get("namespace")), str(owner), self._kind)
