"""Watch the Secrets that hold NGC keys: a key created, fixed, rotated or deleted is acted on
within a second, not at the next resync.

One watch runs per namespace whose NemotronDeployments name a key Secret (namespace_watches),
and it asks the API server for metadata only (PartialObjectMetadata): names and
resourceVersions, never a Secret's data. What changed is then read the usual way
(`kube.read_secret_value`) by the converge it triggers. While a namespace's watch runs, it also
knows each Secret's resourceVersion (`version`): a converge that finds the key's version
unchanged uses the registry's answer it has for that version, and reads nothing.

Where the operator may not list or watch Secrets (RBAC: the chart grants it in secretNamespaces
only), the watch says so once in the log and tries again every few minutes; the resync loop
still picks a changed key up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from nemotron_operator.shell.namespace_watches import NamespaceWatches, WatchedKind

SECRETS = WatchedKind(
    plural="Secrets",
    api="api/v1",
    resource="secrets",
    metadata_only=True,
    list_limit=500,  # one beyond has no known version and is read at each converge
    when_forbidden="a changed NGC key there is seen at the next resync, not at once",
)

# Called with (namespace, secret name), or (namespace, None) when the watch may have missed
# changes (it listed again) and every key Secret of the namespace should be looked at.
OnChange = Callable[[str, str | None], None]
# Whether a namespace still has a NemotronDeployment that reads its key from a Secret.
Needed = Callable[[str], bool]


class KeySecretWatches:
    """One metadata-only watch of Secrets per namespace it is asked to follow, for as long as the
    namespace needs it."""

    def __init__(self, on_change: OnChange, needed: Needed) -> None:
        self._on_change = on_change
        self._needed = needed
        self._versions: dict[str, dict[str, str]] = {}  # namespace -> Secret -> resourceVersion
        self._guard = threading.Lock()
        self._watches = NamespaceWatches(SECRETS, self)

    def follow(self, namespace: str) -> None:
        self._watches.follow(namespace)

    def stop(self) -> None:
        self._watches.stop()

    @property
    def followed(self) -> set[str]:
        return self._watches.followed

    def version(self, namespace: str, name: str) -> str | None:
        """The Secret's resourceVersion as the running watch last saw it; None when unknown (not
        watched, the watch interrupted, the Secret not seen: read it)."""
        with self._guard:
            return self._versions.get(namespace, {}).get(name)

    # --- namespace_watches.Listener ---

    def needed(self, namespace: str) -> bool:
        return self._needed(namespace)

    def listed(self, namespace: str, items: list[dict[str, Any]]) -> None:
        with self._guard:
            self._versions[namespace] = {
                str(item["metadata"]["name"]): str(item["metadata"]["resourceVersion"])
                for item in items
            }
        # what changed before the list (since the converge that asked to follow this
        # namespace, or in a gap of the watch) was not seen: look at it all
        self._on_change(namespace, None)

    def changed(self, namespace: str, event: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        name = str(meta.get("name") or "")
        if not name:
            return
        with self._guard:
            known = self._versions.get(namespace)
            if known is not None:
                if event == "DELETED":
                    known.pop(name, None)
                else:
                    known[name] = str(meta.get("resourceVersion"))
        self._on_change(namespace, name)

    def lost(self, namespace: str) -> None:
        with self._guard:
            self._versions.pop(namespace, None)
