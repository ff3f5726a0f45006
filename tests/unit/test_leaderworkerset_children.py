"""What the LeaderWorkerSet watch keeps, and whom it converges (leaderworkersets)."""

from __future__ import annotations

from typing import Any

from nemotron_operator.api import names
from nemotron_operator.shell.leaderworkersets import LeaderWorkerSetChildren
from nemotron_operator.shell.world import World, packed, unpacked


def lws(owner: str, generation: int = 1) -> dict[str, Any]:
    return {
        "kind": "LeaderWorkerSet",
        "metadata": {
            "name": owner,
            "generation": generation,
            "labels": {names.DEPLOYMENT_LABEL: owner, names.MANAGED_BY_LABEL: "nemotron-operator"},
        },
    }


def children() -> tuple[LeaderWorkerSetChildren, list[tuple[str, str | None]]]:
    told: list[tuple[str, str | None]] = []
    kept = LeaderWorkerSetChildren(lambda ns, owner: told.append((ns, owner)), lambda ns: False)
    return kept, told


def test_a_list_replaces_what_was_known_of_the_namespace_and_converges_it_all() -> None:
    kept, told = children()
    kept.listed("a", [lws("ultra"), lws("other")])
    kept.listed("b", [lws("ultra")])
    kept.listed("a", [lws("ultra", generation=2)])
    assert unpacked(kept.get("a", "ultra")) == lws("ultra", generation=2)
    assert kept.get("a", "other") is None
    assert kept.owners("b") == ["ultra"]
    assert told == [("a", None), ("b", None), ("a", None)]


def test_events_update_the_child_and_converge_its_owner() -> None:
    kept, told = children()
    kept.changed("a", "ADDED", lws("ultra"))
    kept.changed("a", "MODIFIED", lws("ultra", generation=3))
    assert unpacked(kept.get("a", "ultra")) == lws("ultra", generation=3)
    kept.changed("a", "DELETED", lws("ultra", generation=3))
    assert kept.get("a", "ultra") is None
    assert told == [("a", "ultra")] * 3


def test_a_namespace_with_a_child_keeps_its_watch_and_a_gap_forgets_nothing() -> None:
    kept, _ = children()
    assert not kept.needed("a")
    kept.changed("a", "ADDED", lws("ultra"))
    assert kept.needed("a")  # until it is gone, even when no deployment spans nodes any more
    kept.lost("a")
    assert kept.get("a", "ultra") is not None
    kept.forget("a", "ultra")
    assert not kept.needed("a")


def test_an_object_without_the_owner_label_is_not_a_child() -> None:
    kept, told = children()
    stray = lws("x")
    stray["metadata"]["labels"] = {}
    kept.changed("a", "ADDED", stray)
    assert kept.owners("a") == [] and told == []


def test_the_world_finds_them_among_the_children_like_any_other_kind() -> None:
    kept, _ = children()
    kept.listed("a", [lws("ultra")])
    deployment = {"kind": "Deployment", "metadata": {"name": "nano"}}
    world = World(
        {},
        {},
        {},
        {},
        {},
        children=[{("a", "nano", "Deployment"): [packed(deployment)]}, kept.index],
    )
    assert world.snapshot(("a", "ultra")).children == {"LeaderWorkerSet": lws("ultra")}
    assert world.snapshot(("a", "nano")).children == {"Deployment": deployment}
    assert world.snapshot(("b", "ultra")).children == {}
    kept.forget("a", "ultra")
    assert world.snapshot(("a", "ultra")).children == {}  # a live view, not a copy
