"""What the children's own watches keep, when a namespace counts as listed, and whom a change
converges (owned_children)."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from nemotron_operator.api import names
from nemotron_operator.shell import namespace_watches
from nemotron_operator.shell.namespace_watches import ALL_NAMESPACES, NamespaceWatches
from nemotron_operator.shell.owned_children import CHILD_KINDS, OwnedChildren, watched
from nemotron_operator.shell.world import World

LABELS = {names.DEPLOYMENT_LABEL: "nano", names.MANAGED_BY_LABEL: "nemotron-operator"}


def child(kind: str, namespace: str = "a", name: str = "nano", **meta: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "apiVersion": CHILD_KINDS[kind],
        "metadata": {"name": name, "namespace": namespace, "labels": dict(LABELS), **meta},
    }


def listed_item(kind: str, namespace: str = "a", name: str = "nano") -> dict[str, Any]:
    """As a list answers: the items name neither their kind nor their API version."""
    item = child(kind, namespace, name)
    del item["kind"], item["apiVersion"]
    return item


def owned(
    clusterwide: bool = False,
    deployments: frozenset[str] = frozenset(),
) -> tuple[OwnedChildren, list[tuple[str, str | None]], dict[str, Any]]:
    told: list[tuple[str, str | None]] = []
    kept = OwnedChildren(
        lambda ns, owner: told.append((ns, owner)), lambda ns: ns in deployments, clusterwide
    )
    listeners = {kind: w._listener for kind, w in zip(CHILD_KINDS, kept._watches, strict=True)}
    return kept, told, listeners


def list_everything(listeners: dict[str, Any], namespace: str, **items: list[Any]) -> None:
    for kind, listener in listeners.items():
        listener.listed(namespace, items.get(kind, []))


def test_a_namespace_counts_as_listed_once_every_kind_was_and_that_converges_it_all() -> None:
    kept, told, listeners = owned()
    for kind in list(CHILD_KINDS)[:-1]:
        listeners[kind].listed("a", [])
    assert not kept.listed("a") and told == []  # one kind still to list: nothing converges
    listeners["PersistentVolumeClaim"].listed("a", [])
    assert kept.listed("a") and not kept.listed("b")
    assert told == [("a", None)]


def test_a_list_keeps_the_items_with_their_kind_and_replaces_what_was_known() -> None:
    kept, _, listeners = owned()
    list_everything(
        listeners, "a", StatefulSet=[listed_item("StatefulSet")], Service=[listed_item("Service")]
    )
    world = World({}, {}, {}, {}, {}, children=[kept.index])
    assert world.snapshot(("a", "nano")).children == {
        "StatefulSet": child("StatefulSet"),
        "Service": child("Service"),
    }
    listeners["Service"].listed("a", [])  # listed again after a gap: it went meanwhile
    assert world.snapshot(("a", "nano")).children == {"StatefulSet": child("StatefulSet")}


def test_events_update_the_child_and_converge_its_owner() -> None:
    kept, told, listeners = owned()
    world = World({}, {}, {}, {}, {}, children=[kept.index])
    listeners["Deployment"].changed("a", "ADDED", child("Deployment"))
    assert world.snapshot(("a", "nano")).children == {"Deployment": child("Deployment")}
    listeners["Deployment"].changed("a", "DELETED", child("Deployment"))
    assert world.snapshot(("a", "nano")).children == {}
    assert told == [("a", "nano")] * 2


def test_only_the_shared_cache_claim_is_a_child_and_strays_are_not() -> None:
    kept, told, listeners = owned()
    # a claim the StatefulSet made for one pod carries the same labels
    listeners["PersistentVolumeClaim"].changed(
        "a", "ADDED", child("PersistentVolumeClaim", name="model-cache-nano-0")
    )
    stray = child("Service")
    stray["metadata"]["labels"] = {}
    listeners["Service"].changed("a", "ADDED", stray)
    assert list(kept.index) == [] and told == []
    listeners["PersistentVolumeClaim"].changed(
        "a", "ADDED", child("PersistentVolumeClaim", name="nano-cache")
    )
    assert list(kept.index) == [("a", "nano", "PersistentVolumeClaim")]


def test_serving_the_whole_cluster_one_watch_per_kind_lists_every_namespace() -> None:
    kept, told, listeners = owned(clusterwide=True)
    list_everything(
        listeners,
        ALL_NAMESPACES,
        StatefulSet=[listed_item("StatefulSet", "a"), listed_item("StatefulSet", "b")],
    )
    assert kept.listed("a") and kept.listed("any-namespace")
    assert sorted(kept.index) == [("a", "nano", "StatefulSet"), ("b", "nano", "StatefulSet")]
    assert told == [(ALL_NAMESPACES, None)]
    assert kept.needed(ALL_NAMESPACES)
    listeners["StatefulSet"].listed(ALL_NAMESPACES, [listed_item("StatefulSet", "b")])
    assert list(kept.index) == [("b", "nano", "StatefulSet")]


def test_a_named_namespace_is_watched_while_it_has_a_deployment_or_a_child() -> None:
    kept, _, listeners = owned(deployments=frozenset({"a"}))
    assert kept.needed("a") and not kept.needed("b")
    listeners["Job"].changed("b", "ADDED", child("Job", "b"))
    assert kept.needed("b")  # until its children are gone too
    listeners["Job"].changed("b", "DELETED", child("Job", "b"))
    assert not kept.needed("b")


def test_a_gap_forgets_nothing() -> None:
    kept, _, listeners = owned()
    list_everything(listeners, "a", Service=[listed_item("Service")])
    listeners["Service"].lost("a")
    assert kept.listed("a") and list(kept.index) == [("a", "nano", "Service")]


def test_a_kind_the_operator_may_not_watch_counts_as_listed_empty(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RBAC without list or watch on a kind: the namespace's deployments are converged all the
    same (their writes meet the same 403 and say so in their status), not held back for good."""
    kept, told, listeners = owned(deployments=frozenset({"a"}))
    for kind in CHILD_KINDS:
        if kind != "Job":
            listeners[kind].listed("a", [])
    watches = NamespaceWatches(watched("Job"), listeners["Job"])

    def forbidden(*_: Any, **__: Any) -> Any:
        watches.stop()  # one round
        raise ApiException(status=403, reason="Forbidden")

    monkeypatch.setattr(watches, "_request", forbidden)
    monkeypatch.setattr(namespace_watches, "FORBIDDEN_RETRY_SECONDS", 0)
    watches._watch("a")
    assert kept.listed("a") and told == [("a", None)]


def test_the_watches_ask_for_the_operators_children_of_each_kind() -> None:
    paths = {kind: watched(kind).path("a") for kind in CHILD_KINDS}
    assert paths["StatefulSet"] == "/apis/apps/v1/namespaces/a/statefulsets"
    assert paths["Job"] == "/apis/batch/v1/namespaces/a/jobs"
    assert paths["PersistentVolumeClaim"] == "/api/v1/namespaces/a/persistentvolumeclaims"
    assert watched("Service").path(ALL_NAMESPACES) == "/api/v1/services"
    selector = watched("Deployment").label_selector
    assert selector == f"{names.DEPLOYMENT_LABEL},{names.MANAGED_BY_LABEL}=nemotron-operator"


def test_only_urllib3s_pool_full_lines_are_dropped_from_the_log() -> None:
    """The watches of many namespaces listing at once close connections beyond the pool's size,
    a line each; a retry or a broken connection is still said."""
    from nemotron_operator.shell.runner import _no_pool_full_lines

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord(
            "urllib3.connectionpool", logging.WARNING, "", 0, message, (), None
        )

    pool_full = "Connection pool is full, discarding connection: %s. Connection pool size: %s"
    assert not _no_pool_full_lines(record(pool_full % ("127.0.0.1", 64)))
    assert _no_pool_full_lines(record("Retrying (Retry(total=2)) after connection broken"))


def test_following_never_waits_for_a_watch_asking_whether_it_is_still_needed() -> None:
    """A watch asks its listener, which asks Kopf's loop, while the loop may be following the
    namespace (a NemotronDeployment's event): neither waits for the other, and a follow that
    comes meanwhile keeps the watch."""
    follows_meanwhile: list[int] = [1]

    class Listener:
        def needed(self, namespace: str) -> bool:
            for _ in range(follows_meanwhile[0]):  # as the loop would, while we wait for it
                loop = threading.Thread(target=watches.follow, args=(namespace,))
                loop.start()
                loop.join(5)
                assert not loop.is_alive(), "follow() waited for the watch"
            return False

    watches = NamespaceWatches(watched("Job"), Listener())  # type: ignore[arg-type]
    watches._followed.add("a")  # its watch runs (this test plays it)
    assert watches._still_needed("a") and watches.followed == {"a"}
    follows_meanwhile[0] = 0
    assert not watches._still_needed("a") and watches.followed == set()


def test_the_namespaces_served_are_watched_before_their_first_deployment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Else a namespace's first NemotronDeployment waits for the listing of six kinds."""
    kept, _, _ = owned()
    followed: list[tuple[str, str]] = []
    for watches in kept._watches:
        kind = watches.kind.resource
        monkeypatch.setattr(watches, "follow", lambda ns, kind=kind: followed.append((kind, ns)))
    kept.serve({"a", "b"})
    assert kept.needed("a") and kept.needed("b")  # no deployment there yet
    assert sorted({ns for _, ns in followed}) == ["a", "b"] and len(followed) == 12
    followed.clear()
    kept.serve({"b"})  # "a" no longer served: watched while it has objects
    assert followed == [] and not kept.needed("a") and kept.needed("b")
    everywhere, _, _ = owned(clusterwide=True)
    everywhere.serve({"a"})  # one watch per kind serves the whole cluster already
    assert not everywhere.needed("a")
